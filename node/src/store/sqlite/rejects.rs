//! The rows recent ingests rejected (`ingest_rejects`): when, which file, which line and
//! why, for the admin's page. A reason may quote the field it rejects, so on an encrypted
//! node it is sealed at rest like every other text. Only the newest [`KEPT`] are kept, and
//! none past the reads' retention (they go with the purge).

use rusqlite::{Connection, params};

use super::{Db, open_text, seal_text};
use crate::Error;

const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS ingest_rejects (
    id INTEGER PRIMARY KEY,
    at INTEGER NOT NULL,
    source TEXT NOT NULL,
    line INTEGER NOT NULL,
    reason NOT NULL
);
"#;

const PLACE: &str = "ingest_rejects.reason";
/// Rejected rows kept, newest first; older ones are deleted as new ones come.
pub const KEPT: i64 = 200;
/// Rejected rows kept of one ingest (the CLI's `--rejects` file holds them all).
pub const PER_INGEST: usize = 50;

/// Create the table.
pub(super) fn init(conn: &Connection) -> Result<(), Error> {
    conn.execute_batch(SCHEMA)?;
    Ok(())
}

/// One rejected row.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RejectedRow {
    /// When the ingest ran, Unix seconds.
    pub at: i64,
    /// The file (as the ingest named it).
    pub source: String,
    /// 1-based line in the file.
    pub line: u64,
    /// Why it was rejected.
    pub reason: String,
}

fn row_key(at: i64, line: u64) -> [u8; 16] {
    let mut k = [0u8; 16];
    k[..8].copy_from_slice(&at.to_be_bytes());
    k[8..].copy_from_slice(&line.to_be_bytes());
    k
}

/// Keep the first [`PER_INGEST`] rejected rows `(line, reason)` of one ingest of `source`
/// at `at`, and drop all but the newest [`KEPT`].
pub fn put(db: &mut Db, at: i64, source: &str, rows: &[(u64, &str)]) -> Result<(), Error> {
    let keys = db.keys.clone();
    let tx = db.conn.transaction()?;
    for (line, reason) in rows.iter().take(PER_INGEST) {
        let sealed = seal_text(keys.as_deref(), PLACE, &row_key(at, *line), reason)?;
        tx.execute(
            "INSERT INTO ingest_rejects (at, source, line, reason) VALUES (?1, ?2, ?3, ?4)",
            params![at, source, *line as i64, sealed],
        )?;
    }
    tx.execute(
        "DELETE FROM ingest_rejects WHERE id <= (SELECT MAX(id) FROM ingest_rejects) - ?1",
        [KEPT],
    )?;
    tx.commit()?;
    Ok(())
}

/// Forget the rejected rows of ingests before `cutoff` (with the reads' retention: a reason
/// may quote a time or place from the row).
pub(super) fn purge_before(conn: &Connection, cutoff: i64) -> Result<(), Error> {
    conn.execute("DELETE FROM ingest_rejects WHERE at < ?1", [cutoff])?;
    Ok(())
}

/// The newest rejected rows, newest first (at most `limit`).
pub fn recent(db: &Db, limit: usize) -> Result<Vec<RejectedRow>, Error> {
    let mut st = db
        .conn
        .prepare("SELECT at, source, line, reason FROM ingest_rejects ORDER BY id DESC LIMIT ?1")?;
    let rows = st.query_map([limit as i64], |r| {
        Ok((
            r.get::<_, i64>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, i64>(2)?,
            r.get::<_, rusqlite::types::Value>(3)?,
        ))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (at, source, line, v) = row?;
        let line = line as u64;
        let reason = open_text(db.keys.as_deref(), PLACE, &row_key(at, line), v)?;
        out.push(RejectedRow {
            at,
            source,
            line,
            reason,
        });
    }
    Ok(out)
}
