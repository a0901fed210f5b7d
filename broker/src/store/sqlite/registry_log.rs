//! The agreement registry's leaves and signed tree heads, as opaque encoded bytes: the
//! Merkle tree and the verification of every leaf are [`crate::registry`]'s.

use rusqlite::{Connection, OptionalExtension, params};

use crate::Error;

pub(super) const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS registry (idx INTEGER PRIMARY KEY, leaf BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS tree_heads (size INTEGER PRIMARY KEY, sth BLOB NOT NULL);
"#;

/// Every stored registry leaf as `(index, leaf)`, in index order.
pub fn registry_leaves(conn: &Connection) -> Result<Vec<(u64, Vec<u8>)>, Error> {
    registry_leaves_from(conn, 0)
}

/// The stored registry leaves from index `start` on as `(index, leaf)`, in index order.
/// Indexes are as stored: a gap is the caller's to detect.
pub fn registry_leaves_from(conn: &Connection, start: u64) -> Result<Vec<(u64, Vec<u8>)>, Error> {
    let mut st =
        conn.prepare_cached("SELECT idx, leaf FROM registry WHERE idx >= ?1 ORDER BY idx")?;
    let rows = st
        .query_map([start as i64], |r| {
            Ok((r.get::<_, i64>(0)? as u64, r.get(1)?))
        })?
        .collect::<Result<_, _>>()?;
    Ok(rows)
}

/// Durably append leaf `index` together with the encoded signed tree head over the
/// `index + 1` leaves, in one transaction: both are stored or neither is. `false` (and
/// nothing stored) when another writer stored a leaf `index` first.
pub fn append_registry_leaf(
    conn: &mut Connection,
    index: u64,
    leaf: &[u8],
    head: &[u8],
) -> Result<bool, Error> {
    let tx = conn.transaction()?;
    let taken = tx.execute(
        "INSERT OR IGNORE INTO registry (idx, leaf) VALUES (?1, ?2)",
        params![index as i64, leaf],
    )? == 0;
    if taken {
        return Ok(false);
    }
    tx.execute(
        "INSERT INTO tree_heads (size, sth) VALUES (?1, ?2)",
        params![(index + 1) as i64, head],
    )?;
    tx.commit()?;
    Ok(true)
}

/// The encoded signed tree head of the largest size stored, if any.
pub fn latest_tree_head(conn: &Connection) -> Result<Option<Vec<u8>>, Error> {
    Ok(conn
        .query_row(
            "SELECT sth FROM tree_heads ORDER BY size DESC LIMIT 1",
            [],
            |r| r.get(0),
        )
        .optional()?)
}

/// The encoded signed tree head of one size, if stored.
pub fn tree_head_of_size(conn: &Connection, size: u64) -> Result<Option<Vec<u8>>, Error> {
    Ok(conn
        .query_row(
            "SELECT sth FROM tree_heads WHERE size = ?1",
            [size as i64],
            |r| r.get(0),
        )
        .optional()?)
}

/// Store (or replace) the encoded signed tree head of one size (to add cosignatures).
pub fn put_tree_head(conn: &Connection, size: u64, head: &[u8]) -> Result<(), Error> {
    conn.execute(
        "INSERT OR REPLACE INTO tree_heads (size, sth) VALUES (?1, ?2)",
        params![size as i64, head],
    )?;
    Ok(())
}
