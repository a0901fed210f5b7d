//! Nodes' anchored audit tree heads, as opaque encoded anchors, and the heads refused as
//! forks (kept as evidence: two heads signed by one node that no log can both match). The
//! verification is [`crate::anchors`]'.

use rusqlite::{OptionalExtension, params};

use super::Db;
use crate::Error;
use crate::store::{AuditFork, StoredAnchor};

pub(super) const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS audit_anchors (
    ori TEXT NOT NULL,
    size INTEGER NOT NULL,
    root BLOB NOT NULL,
    anchored_at INTEGER NOT NULL,
    anchor BLOB NOT NULL,
    PRIMARY KEY (ori, size)
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
pub fn latest_audit_anchor(db: &Db, ori: &str) -> Result<Option<StoredAnchor>, Error> {
    Ok(db
        .conn
        .query_row(
            "SELECT size, root, anchor FROM audit_anchors WHERE ori = ?1 ORDER BY size DESC LIMIT 1",
            [ori],
            |r| {
                Ok(StoredAnchor {
                    size: r.get::<_, i64>(0)? as u64,
                    root: r.get(1)?,
                    anchor: r.get(2)?,
                })
            },
        )
        .optional()?)
}

/// Keep an accepted anchor.
pub fn put_audit_anchor(
    db: &Db,
    ori: &str,
    size: u64,
    root: &[u8],
    anchored_at: i64,
    anchor: &[u8],
) -> Result<(), Error> {
    db.conn.execute(
        "INSERT INTO audit_anchors (ori, size, root, anchored_at, anchor) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![ori, size as i64, root, anchored_at, anchor],
    )?;
    Ok(())
}

/// Keep a head refused as a fork, with why.
pub fn put_audit_fork(
    db: &Db,
    ori: &str,
    at: i64,
    offered: &[u8],
    detail: &str,
) -> Result<(), Error> {
    db.conn.execute(
        "INSERT INTO audit_forks (ori, at, offered, detail) VALUES (?1, ?2, ?3, ?4)",
        params![ori, at, offered, detail],
    )?;
    Ok(())
}

/// Heads refused as forks, oldest first.
pub fn audit_forks(db: &Db) -> Result<Vec<AuditFork>, Error> {
    let mut st = db
        .conn
        .prepare("SELECT ori, at, offered, detail FROM audit_forks ORDER BY seq")?;
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
