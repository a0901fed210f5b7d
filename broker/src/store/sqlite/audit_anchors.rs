//! Nodes' anchored audit tree heads, as opaque encoded anchors, and the heads refused as
//! forks (kept as evidence: two heads signed by one node that no log can both match). The
//! verification is [`crate::anchors`]'.

use rusqlite::{Connection, OptionalExtension, params};

use crate::Error;
use crate::store::{AuditFork, StoredAnchor};

pub(super) const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS audit_anchors (
    ori TEXT NOT NULL,
    size INTEGER NOT NULL,
    root BLOB NOT NULL,
    anchored_at INTEGER NOT NULL,
    anchor BLOB NOT NULL,
    from_size INTEGER NOT NULL,
    consistency BLOB NOT NULL,
    PRIMARY KEY (ori, size)
);
CREATE TABLE IF NOT EXISTS audit_cosignatures (
    ori TEXT NOT NULL,
    size INTEGER NOT NULL,
    cosigner TEXT NOT NULL,
    cosignature BLOB NOT NULL,
    PRIMARY KEY (ori, size, cosigner)
);
CREATE TABLE IF NOT EXISTS audit_forks (
    seq INTEGER PRIMARY KEY,
    ori TEXT NOT NULL,
    at INTEGER NOT NULL,
    offered BLOB NOT NULL,
    detail TEXT NOT NULL
);
"#;

/// The newest anchor of `ori`'s audit log.
pub fn latest_audit_anchor(conn: &Connection, ori: &str) -> Result<Option<StoredAnchor>, Error> {
    Ok(conn
        .query_row(
            "SELECT size, root, anchor, from_size, consistency FROM audit_anchors WHERE ori = ?1 ORDER BY size DESC LIMIT 1",
            [ori],
            stored_anchor,
        )
        .optional()?)
}

/// Keep an accepted anchor, with the consistency proof (32-byte hashes) from the size
/// anchored before.
pub fn put_audit_anchor(
    conn: &Connection,
    a: &StoredAnchor,
    ori: &str,
    anchored_at: i64,
) -> Result<(), Error> {
    conn.execute(
        "INSERT INTO audit_anchors (ori, size, root, anchored_at, anchor, from_size, consistency) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        params![
            ori,
            a.size as i64,
            a.root,
            anchored_at,
            a.anchor,
            a.from_size as i64,
            a.consistency.concat()
        ],
    )?;
    Ok(())
}

/// `ori`'s anchors larger than `after`, oldest first, at most `limit`.
pub fn audit_anchor_chain(
    conn: &Connection,
    ori: &str,
    after: u64,
    limit: u64,
) -> Result<Vec<StoredAnchor>, Error> {
    let mut st = conn.prepare(
        "SELECT size, root, anchor, from_size, consistency FROM audit_anchors WHERE ori = ?1 AND size > ?2 ORDER BY size LIMIT ?3",
    )?;
    let rows = st
        .query_map(params![ori, after as i64, limit as i64], stored_anchor)?
        .collect::<Result<_, _>>()?;
    Ok(rows)
}

fn stored_anchor(r: &rusqlite::Row<'_>) -> rusqlite::Result<StoredAnchor> {
    let proof: Vec<u8> = r.get(4)?;
    Ok(StoredAnchor {
        size: r.get::<_, i64>(0)? as u64,
        root: r.get(1)?,
        anchor: r.get(2)?,
        from_size: r.get::<_, i64>(3)? as u64,
        consistency: proof.chunks(32).map(<[u8]>::to_vec).collect(),
    })
}

/// Keep a regulator's cosignature of `ori`'s anchor of `size`.
pub fn put_audit_cosignature(
    conn: &Connection,
    ori: &str,
    size: u64,
    cosigner: &str,
    cosig: &[u8],
) -> Result<(), Error> {
    conn.execute(
        "INSERT OR REPLACE INTO audit_cosignatures (ori, size, cosigner, cosignature) VALUES (?1, ?2, ?3, ?4)",
        params![ori, size as i64, cosigner, cosig],
    )?;
    Ok(())
}

/// The cosignatures kept for `ori`'s anchor of `size` (encoded `Signed`s).
pub fn audit_cosignatures(conn: &Connection, ori: &str, size: u64) -> Result<Vec<Vec<u8>>, Error> {
    let mut st = conn.prepare(
        "SELECT cosignature FROM audit_cosignatures WHERE ori = ?1 AND size = ?2 ORDER BY cosigner",
    )?;
    let rows = st
        .query_map(params![ori, size as i64], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    Ok(rows)
}

/// Keep a head refused as a fork, with why.
pub fn put_audit_fork(
    conn: &Connection,
    ori: &str,
    at: i64,
    offered: &[u8],
    detail: &str,
) -> Result<(), Error> {
    conn.execute(
        "INSERT INTO audit_forks (ori, at, offered, detail) VALUES (?1, ?2, ?3, ?4)",
        params![ori, at, offered, detail],
    )?;
    Ok(())
}

/// Heads refused as forks, oldest first.
pub fn audit_forks(conn: &Connection) -> Result<Vec<AuditFork>, Error> {
    let mut st = conn.prepare("SELECT ori, at, offered, detail FROM audit_forks ORDER BY seq")?;
    let rows = st
        .query_map([], |r| {
            Ok(AuditFork {
                ori: r.get(0)?,
                at: r.get(1)?,
                offered: r.get(2)?,
                detail: r.get(3)?,
            })
        })?
        .collect::<Result<_, _>>()?;
    Ok(rows)
}
