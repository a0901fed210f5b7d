//! The broker's database: agencies seen at registration and the routing log (written by a
//! group-commit [`LogWriter`]). It holds no reads and no answers.

use std::path::Path;

use rusqlite::{Connection, params};
use serde::Serialize;

use crate::Error;
use crate::vocabulary::{Decision, Event};

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
"#;

/// Open (creating if needed) the broker database.
pub fn open(path: &Path) -> Result<Connection, Error> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    }
    let conn = alpr_runtime::sqlite::open(path, std::time::Duration::from_secs(10))?;
    conn.execute_batch(SCHEMA)?;
    Ok(conn)
}

/// One routing-log row.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct LogEntry {
    /// Sequence number (0 before insertion).
    pub seq: i64,
    /// Unix seconds.
    pub at: i64,
    /// What the row records.
    pub event: Event,
    /// Query id, hex.
    pub query_id: Option<String>,
    /// `user@ORI` of the requester.
    pub requester: Option<String>,
    /// Target agency.
    pub target: Option<String>,
    /// What was decided.
    pub decision: Decision,
    /// Refusal reason code.
    pub reason_code: Option<String>,
    /// Detail.
    pub detail: Option<String>,
    /// Agreement id.
    pub agreement_id: Option<String>,
    /// State rule version.
    pub rule_version: Option<String>,
}

impl LogEntry {
    /// A row of `event` with `decision` at `at` (Unix seconds), every other field empty.
    pub fn new(at: i64, event: Event, decision: Decision) -> Self {
        Self {
            seq: 0,
            at,
            event,
            query_id: None,
            requester: None,
            target: None,
            decision,
            reason_code: None,
            detail: None,
            agreement_id: None,
            rule_version: None,
        }
    }
}

/// Column `i` of `r` as a vocabulary value (an unknown name is a conversion error that
/// names the column and the value).
fn vocab<T: std::str::FromStr<Err = String>>(
    r: &rusqlite::Row<'_>,
    i: usize,
) -> rusqlite::Result<T> {
    let text: String = r.get(i)?;
    text.parse().map_err(|e: String| {
        rusqlite::Error::FromSqlConversionFailure(i, rusqlite::types::Type::Text, e.into())
    })
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
                e.event.as_str(),
                e.query_id,
                e.requester,
                e.target,
                e.decision.as_str(),
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
            event: vocab(r, 2)?,
            query_id: r.get(3)?,
            requester: r.get(4)?,
            target: r.get(5)?,
            decision: vocab(r, 6)?,
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
        .prepare_cached("SELECT jurisdiction FROM agencies WHERE ori = ?1")?
        .query_row([ori], |r| r.get(0))
        .optional()?)
}

/// `(query id, target, logged at)` of the routing decisions logged at or after `since`:
/// what a restarting broker feeds its replay memory. Reads back from the newest row and
/// stops a minute before `since` (rows are appended in time order, give or take one group
/// commit).
pub fn routed_ids_since(
    conn: &Connection,
    since: i64,
) -> Result<Vec<(Vec<u8>, String, i64)>, Error> {
    Ok(alpr_runtime::sqlite::newest_since(
        conn,
        "SELECT at, event, query_id, target FROM log ORDER BY seq DESC",
        since,
        |r| {
            let (event, id, target): (String, Option<String>, Option<String>) =
                (r.get(1)?, r.get(2)?, r.get(3)?);
            Ok(
                match (event.as_str(), id.and_then(|h| hex::decode(h).ok()), target) {
                    ("route", Some(id), Some(target)) => Some((id, target, r.get(0)?)),
                    _ => None,
                },
            )
        },
    )?)
}

/// Most rows written in one group commit.
const MAX_GROUP: usize = 4096;

type LogAck = tokio::sync::oneshot::Sender<Result<(), String>>;

/// Group-commit writer for the routing log: one thread owns a write connection; callers
/// hand it rows and wait until the transaction holding them is durable, so concurrent
/// queries share one fsync.
#[derive(Clone, Debug)]
pub struct LogWriter {
    tx: std::sync::mpsc::Sender<(Vec<LogEntry>, LogAck)>,
}

impl LogWriter {
    /// Open the database at `path` for writing and start the writer thread.
    pub fn open(path: &Path) -> Result<Self, Error> {
        let conn = open(path)?;
        // WAL checkpoints run beside the writer, not inside a commit someone waits on.
        let checkpointer = alpr_runtime::sqlite::Checkpointer::start(
            &conn,
            path,
            alpr_runtime::sqlite::CHECKPOINT_INTERVAL,
        )?;
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::Builder::new()
            .name("routing-log-writer".into())
            .spawn(move || {
                log_writer(conn, rx);
                drop(checkpointer);
            })
            .map_err(|e| Error::Log(format!("cannot start the writer: {e}")))?;
        Ok(Self { tx })
    }

    /// Queue rows without waiting for them: for outcomes recorded after the fact (a crash
    /// can lose the last group of these, never a routing decision). A failed write is
    /// logged as an alert by the writer.
    pub fn append_unawaited(&self, entries: Vec<LogEntry>) {
        let (ack_tx, _) = tokio::sync::oneshot::channel();
        if self.tx.send((entries, ack_tx)).is_err() {
            tracing::error!("ALERT: routing log writer stopped; outcome rows lost");
        }
    }

    /// Resolves once every row queued before it is durable.
    pub async fn flush(&self) -> Result<(), Error> {
        self.append(Vec::new()).await
    }

    /// Append rows; resolves once they are durable (or with the error that kept them out).
    pub async fn append(&self, entries: Vec<LogEntry>) -> Result<(), Error> {
        let (ack_tx, ack_rx) = tokio::sync::oneshot::channel();
        self.tx
            .send((entries, ack_tx))
            .map_err(|_| Error::Log("writer stopped".into()))?;
        ack_rx
            .await
            .map_err(|_| Error::Log("writer stopped".into()))?
            .map_err(Error::Log)
    }
}

fn log_writer(mut conn: Connection, rx: std::sync::mpsc::Receiver<(Vec<LogEntry>, LogAck)>) {
    while let Some(jobs) = alpr_runtime::sqlite::next_group(&rx, MAX_GROUP, |j| j.0.len()) {
        let result = (|| -> Result<(), Error> {
            let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            for (entries, _) in &jobs {
                log_in(&tx, entries)?;
            }
            tx.commit()?;
            Ok(())
        })();
        if let Err(e) = &result {
            tracing::error!(error = %e, "ALERT: routing log write failed");
        }
        for (_, ack) in jobs {
            let _ = ack.send(result.as_ref().map(|_| ()).map_err(ToString::to_string));
        }
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
