//! The agreement registry's leaves and signed tree heads, as opaque encoded bytes: the
//! Merkle tree and the verification of every leaf are [`crate::registry`]'s.

use rusqlite::{OptionalExtension, params};

use super::Db;
use crate::Error;

const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS registry (idx INTEGER PRIMARY KEY, leaf BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS tree_heads (size INTEGER PRIMARY KEY, sth BLOB NOT NULL);
"#;

/// Every stored registry leaf as `(index, leaf)`, in index order (creating the registry
/// tables first if this database has none yet). Indexes are as stored: a gap is the
/// caller's to detect.
pub fn registry_leaves(db: &Db) -> Result<Vec<(u64, Vec<u8>)>, Error> {
    db.conn.execute_batch(SCHEMA)?;
    let mut st = db
        .conn
        .prepare("SELECT idx, leaf FROM registry ORDER BY idx")?;
    let rows = st
        .query_map([], |r| Ok((r.get::<_, i64>(0)? as u64, r.get(1)?)))?
        .collect::<Result<_, _>>()?;
    Ok(rows)
}

/// Durably append leaf `index` together with the encoded signed tree head over the
/// `index + 1` leaves, in one transaction: both are stored or neither is.
pub fn append_registry_leaf(
    db: &mut Db,
    index: u64,
    leaf: &[u8],
    head: &[u8],
) -> Result<(), Error> {
    let tx = db.conn.transaction()?;
    tx.execute(
        "INSERT INTO registry (idx, leaf) VALUES (?1, ?2)",
        params![index as i64, leaf],
    )?;
    tx.execute(
        "INSERT INTO tree_heads (size, sth) VALUES (?1, ?2)",
        params![(index + 1) as i64, head],
    )?;
    tx.commit()?;
    Ok(())
}

/// The encoded signed tree head of the largest size stored, if any.
pub fn latest_tree_head(db: &Db) -> Result<Option<Vec<u8>>, Error> {
    Ok(db
        .conn
        .query_row(
            "SELECT sth FROM tree_heads ORDER BY size DESC LIMIT 1",
            [],
            |r| r.get(0),
        )
        .optional()?)
}

/// The encoded signed tree head of one size, if stored.
pub fn tree_head_of_size(db: &Db, size: u64) -> Result<Option<Vec<u8>>, Error> {
    Ok(db
        .conn
        .query_row(
            "SELECT sth FROM tree_heads WHERE size = ?1",
            [size as i64],
            |r| r.get(0),
        )
        .optional()?)
}

/// Store (or replace) the encoded signed tree head of one size (to add cosignatures).
pub fn put_tree_head(db: &Db, size: u64, head: &[u8]) -> Result<(), Error> {
    db.conn.execute(
        "INSERT OR REPLACE INTO tree_heads (size, sth) VALUES (?1, ?2)",
        params![size as i64, head],
    )?;
    Ok(())
}
