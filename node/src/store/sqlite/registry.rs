//! This node's verified copy of the registry log: leaf hashes and the tree heads seen.

use alpr_proto::merkle::{self, Hash};
use alpr_proto::subjects;
use rusqlite::{OptionalExtension, params};

use super::Db;
use crate::Error;

/// The leaf hashes of this node's copy of the registry log, in order.
pub fn stored_hashes(db: &Db) -> Result<Vec<Hash>, Error> {
    let mut st = db
        .conn
        .prepare("SELECT hash FROM registry_leaves ORDER BY idx")?;
    let rows = st.query_map([], |r| r.get::<_, Vec<u8>>(0))?;
    let mut out = Vec::new();
    for r in rows {
        out.push(
            merkle::hash_from_slice(&r?).map_err(|e| Error::corrupt("registry leaf hash", e))?,
        );
    }
    Ok(out)
}

/// The size and root of the newest verified tree head this node kept.
pub fn last_head(db: &Db) -> Result<Option<(u64, Hash)>, Error> {
    let row: Option<(i64, Vec<u8>)> = db
        .conn
        .query_row(
            "SELECT size, root FROM registry_heads ORDER BY size DESC LIMIT 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?;
    row.map(|(s, r)| {
        Ok((
            s as u64,
            merkle::hash_from_slice(&r).map_err(|e| Error::corrupt("registry root", e))?,
        ))
    })
    .transpose()
}

/// Keep the hash of registry leaf `index`.
/// How many leaf hashes are kept (the next leaf's index).
pub fn leaf_count(db: &Db) -> Result<u64, Error> {
    let n: Option<i64> = db
        .conn
        .query_row("SELECT MAX(idx) FROM registry_leaves", [], |r| r.get(0))?;
    Ok(n.map_or(0, |n| n as u64 + 1))
}

/// Append a leaf hash at `index`.
pub fn append_leaf(db: &Db, index: u64, hash: &Hash) -> Result<(), Error> {
    db.conn.execute(
        "INSERT INTO registry_leaves (idx, hash) VALUES (?1, ?2)",
        params![index as i64, hash.to_vec()],
    )?;
    Ok(())
}

/// Keep a verified tree head (`sth`: the signed head, encoded).
pub fn put_head(db: &Db, size: u64, root: &Hash, sth: &[u8], now: i64) -> Result<(), Error> {
    db.conn.execute(
        "INSERT OR REPLACE INTO registry_heads (size, root, sth, seen_at) VALUES (?1, ?2, ?3, ?4)",
        params![size as i64, root.to_vec(), sth, now],
    )?;
    Ok(())
}

/// What this node holds of each registry subject it follows by subject
/// (`[registry] sync = "subjects"`).
pub fn subjects(db: &Db) -> Result<Vec<(String, subjects::Record)>, Error> {
    let mut st = db
        .conn
        .prepare("SELECT subject, count, last_index, chain FROM registry_subjects")?;
    let rows = st.query_map([], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, i64>(1)?,
            r.get::<_, i64>(2)?,
            r.get::<_, Vec<u8>>(3)?,
        ))
    })?;
    let mut out = Vec::new();
    for r in rows {
        let (s, count, last, chain) = r?;
        out.push((
            s,
            subjects::Record {
                count: count as u64,
                last_index: last as u64,
                chain: merkle::hash_from_slice(&chain)
                    .map_err(|e| Error::corrupt("registry subject chain", e))?,
            },
        ));
    }
    Ok(out)
}

/// Keep what this node holds of `subject`.
pub fn put_subject(db: &Db, subject: &str, r: &subjects::Record) -> Result<(), Error> {
    db.conn.execute(
        "INSERT OR REPLACE INTO registry_subjects (subject, count, last_index, chain) VALUES (?1, ?2, ?3, ?4)",
        params![subject, r.count as i64, r.last_index as i64, r.chain.to_vec()],
    )?;
    Ok(())
}

/// The agencies this node holds an agreement with (either side): whose sealing keys it
/// follows.
pub fn counterparts(db: &Db, me: &str) -> Result<Vec<String>, Error> {
    let mut st = db.conn.prepare(
        "SELECT provider_ori FROM agreements WHERE requester_ori = ?1
         UNION SELECT requester_ori FROM agreements WHERE provider_ori = ?1",
    )?;
    let rows = st.query_map(params![me], |r| r.get::<_, String>(0))?;
    Ok(rows.collect::<Result<Vec<_>, _>>()?)
}
