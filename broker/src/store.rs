//! The broker's database: agencies seen at registration, the
//! routing log and replay memory. It holds no reads and no answers.

use std::path::Path;

use alpr_proto::admission::ReplayGuard;
use rusqlite::{Connection, params};
use serde::Serialize;

use crate::Error;

const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS agencies (
    ori TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    jurisdiction TEXT NOT NULL,
    kind TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS log (
    seq INTEGER PRIMARY KEY,
    at INTEGER NOT NULL,
    event TEXT NOT NULL,
    query_id TEXT,
    requester TEXT,
    target TEXT,
    decision TEXT NOT NULL,
    reason_code TEXT,
    detail TEXT,
    agreement_id TEXT,
    rule_version TEXT
);
CREATE TABLE IF NOT EXISTS seen_queries (
    query_id BLOB NOT NULL,
    provider TEXT NOT NULL,
    expires_at INTEGER NOT NULL,
    PRIMARY KEY (query_id, provider)
);
"#;

/// Open (creating if needed) the broker database.
pub fn open(path: &Path) -> Result<Connection, Error> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    }
    let conn = Connection::open(path)?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    conn.execute_batch(SCHEMA)?;
    Ok(conn)
}

/// One routing-log row.
#[derive(Clone, Debug, Default, Serialize, PartialEq, Eq)]
pub struct LogEntry {
    /// Sequence number (0 before insertion).
    pub seq: i64,
    /// Unix seconds.
    pub at: i64,
    /// `route`, `register`, ...
    pub event: String,
    /// Query id, hex.
    pub query_id: Option<String>,
    /// `user@ORI` of the requester.
    pub requester: Option<String>,
    /// Target agency.
    pub target: Option<String>,
    /// `forwarded`, `refused`, `answered`, `unavailable`, `registered`.
    pub decision: String,
    /// Refusal reason code.
    pub reason_code: Option<String>,
    /// Detail.
    pub detail: Option<String>,
    /// Agreement id.
    pub agreement_id: Option<String>,
    /// State rule version.
    pub rule_version: Option<String>,
}

/// Append log rows in one transaction.
pub fn log(conn: &mut Connection, entries: &[LogEntry]) -> Result<(), Error> {
    let tx = conn.transaction()?;
    log_in(&tx, entries)?;
    tx.commit()?;
    Ok(())
}

/// Insert log rows inside a caller's transaction.
pub fn log_in(tx: &Connection, entries: &[LogEntry]) -> Result<(), Error> {
    {
        let mut st = tx.prepare_cached(
            "INSERT INTO log (at, event, query_id, requester, target, decision, reason_code, detail, agreement_id, rule_version)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
        )?;
        for e in entries {
            st.execute(params![
                e.at,
                e.event,
                e.query_id,
                e.requester,
                e.target,
                e.decision,
                e.reason_code,
                e.detail,
                e.agreement_id,
                e.rule_version
            ])?;
        }
    }
    Ok(())
}

/// Read the log in order.
pub fn read_log(conn: &Connection) -> Result<Vec<LogEntry>, Error> {
    let mut st = conn.prepare(
        "SELECT seq, at, event, query_id, requester, target, decision, reason_code, detail, agreement_id, rule_version FROM log ORDER BY seq",
    )?;
    let rows = st.query_map([], |r| {
        Ok(LogEntry {
            seq: r.get(0)?,
            at: r.get(1)?,
            event: r.get(2)?,
            query_id: r.get(3)?,
            requester: r.get(4)?,
            target: r.get(5)?,
            decision: r.get(6)?,
            reason_code: r.get(7)?,
            detail: r.get(8)?,
            agreement_id: r.get(9)?,
            rule_version: r.get(10)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Remember an agency's verified claims.
pub fn put_agency(conn: &Connection, a: &alpr_pki::AgencyClaims) -> Result<(), Error> {
    conn.execute(
        "INSERT OR REPLACE INTO agencies (ori, name, jurisdiction, kind) VALUES (?1, ?2, ?3, ?4)",
        params![a.ori, a.name, a.jurisdiction.as_str(), a.kind.as_str()],
    )?;
    Ok(())
}

/// An agency's jurisdiction, if known from a registration.
pub fn agency_jurisdiction(conn: &Connection, ori: &str) -> Result<Option<String>, Error> {
    use rusqlite::OptionalExtension;
    Ok(conn
        .query_row(
            "SELECT jurisdiction FROM agencies WHERE ori = ?1",
            [ori],
            |r| r.get(0),
        )
        .optional()?)
}

/// Replay memory in the `seen_queries` table.
pub struct DbReplay<'a>(pub &'a Connection);

impl ReplayGuard for DbReplay<'_> {
    fn first_sight(&self, query_id: &[u8], provider_ori: &str, expires_at: i64) -> bool {
        // A database error counts as "seen": fail closed.
        self.0
            .execute(
                "INSERT OR IGNORE INTO seen_queries (query_id, provider, expires_at) VALUES (?1, ?2, ?3)",
                params![query_id, provider_ori, expires_at],
            )
            .map(|n| n == 1)
            .unwrap_or(false)
    }
}

/// Refusals counted by (reason, target).
pub type RefusalCounts = Vec<(String, String, u64)>;

/// Refusal counts by (reason, target) and the number of forwarded queries.
pub fn routing_stats(conn: &Connection) -> Result<(RefusalCounts, u64), Error> {
    let mut st = conn.prepare(
        "SELECT reason_code, COALESCE(target, '-'), COUNT(*) FROM log WHERE decision = 'refused' AND event LIKE 'route%'
         GROUP BY reason_code, target ORDER BY COUNT(*) DESC, reason_code",
    )?;
    let rows = st
        .query_map([], |r| {
            Ok((
                r.get::<_, Option<String>>(0)?.unwrap_or_default(),
                r.get(1)?,
                r.get::<_, i64>(2)? as u64,
            ))
        })?
        .collect::<Result<Vec<_>, _>>()?;
    let forwarded: i64 = conn.query_row(
        "SELECT COUNT(*) FROM log WHERE decision = 'forwarded'",
        [],
        |r| r.get(0),
    )?;
    Ok((rows, forwarded as u64))
}
