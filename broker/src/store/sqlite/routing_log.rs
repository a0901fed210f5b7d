//! The routing log (appended in a transaction or by the group-commit [`LogWriter`], read
//! back, counted), the agencies seen at registration, and the replay rebuild query.

use std::path::Path;

use rusqlite::{Connection, params};

use super::Db;
use crate::Error;
use crate::store::{LogEntry, RefusalCounts};

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

/// Hash of the (empty) predecessor of the first chained row.
const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// A database from before the routing log was chained gets the chain columns; its old
/// rows stay unchained, and the chain starts with the next row.
pub(super) fn add_chain_columns(conn: &Connection) -> Result<(), Error> {
    let mut st = conn.prepare("PRAGMA table_info(log)")?;
    let names = st
        .query_map([], |r| r.get::<_, String>(1))?
        .collect::<Result<Vec<_>, _>>()?;
    if !names.iter().any(|n| n == "hash") {
        conn.execute_batch(
            "ALTER TABLE log ADD COLUMN prev_hash TEXT; ALTER TABLE log ADD COLUMN hash TEXT;",
        )?;
    }
    Ok(())
}

/// The chain hash of a row: SHA-256 of the previous row's hash, a newline and the row as
/// JSON (with its sequence number), hex.
fn row_hash(prev: &str, e: &LogEntry) -> Result<String, Error> {
    let json = serde_json::to_string(e).map_err(|e| Error::Corrupt {
        what: "routing log row".into(),
        detail: e.to_string(),
    })?;
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    ctx.update(prev.as_bytes());
    ctx.update(b"\n");
    ctx.update(json.as_bytes());
    Ok(hex::encode(ctx.finish().as_ref()))
}

/// Append log rows in one transaction.
pub fn log(db: &mut Db, entries: &[LogEntry]) -> Result<(), Error> {
    let tx = db
        .conn
        .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    log_in(&tx, entries)?;
    tx.commit()?;
    Ok(())
}

/// Insert log rows inside a caller's (immediate) transaction, each chained to the one
/// before it.
fn log_in(tx: &Connection, entries: &[LogEntry]) -> Result<(), Error> {
    use rusqlite::OptionalExtension;
    let (mut seq, mut prev): (i64, String) = tx
        .prepare_cached("SELECT seq, COALESCE(hash, ?1) FROM log ORDER BY seq DESC LIMIT 1")?
        .query_row([GENESIS], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?
        .unwrap_or((0, GENESIS.to_owned()));
    let mut st = tx.prepare_cached(
        "INSERT INTO log (seq, at, event, query_id, requester, target, decision, reason_code, detail, agreement_id, rule_version, prev_hash, hash)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
    )?;
    for e in entries {
        seq += 1;
        let row = LogEntry { seq, ..e.clone() };
        let hash = row_hash(&prev, &row)?;
        st.execute(params![
            seq,
            e.at,
            e.event.as_str(),
            e.query_id,
            e.requester,
            e.target,
            e.decision.as_str(),
            e.reason_code,
            e.detail,
            e.agreement_id,
            e.rule_version,
            prev,
            hash
        ])?;
        prev = hash;
    }
    Ok(())
}

/// What [`verify_log`] found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChainReport {
    /// Rows whose chain verified.
    pub chained: u64,
    /// Rows written before the log was chained (a database from an older broker).
    pub unchained_before: u64,
}

/// Verify the routing log's chain: no row missing, each row's previous hash its
/// predecessor's hash, each hash recomputed over the row. Errors name the first bad row.
pub fn verify_log(db: &Db) -> Result<ChainReport, Error> {
    let corrupt = |detail: String| Error::Corrupt {
        what: "routing log".into(),
        detail,
    };
    let mut st = db.conn.prepare(
        "SELECT seq, at, event, query_id, requester, target, decision, reason_code, detail, agreement_id, rule_version, prev_hash, hash FROM log ORDER BY seq",
    )?;
    let mut rows = st.query([])?;
    let mut report = ChainReport {
        chained: 0,
        unchained_before: 0,
    };
    let mut prev: Option<String> = None;
    let mut expected = 1i64;
    while let Some(r) = rows.next()? {
        let e = entry_of(r)?;
        let (row_prev, hash): (Option<String>, Option<String>) = (r.get(11)?, r.get(12)?);
        if e.seq != expected {
            return Err(corrupt(format!(
                "row {expected} is missing (next is {})",
                e.seq
            )));
        }
        expected += 1;
        match (hash, &prev) {
            (None, None) => report.unchained_before += 1,
            (None, Some(_)) => return Err(corrupt(format!("row {} is not chained", e.seq))),
            (Some(h), _) => {
                let want_prev = prev.clone().unwrap_or_else(|| {
                    if report.unchained_before == 0 {
                        GENESIS.to_owned()
                    } else {
                        row_prev.clone().unwrap_or_default()
                    }
                });
                if row_prev.as_deref() != Some(want_prev.as_str()) {
                    return Err(corrupt(format!("row {}: previous-hash link broken", e.seq)));
                }
                if row_hash(&want_prev, &e)? != h {
                    return Err(corrupt(format!(
                        "row {}: content does not match its hash",
                        e.seq
                    )));
                }
                report.chained += 1;
                prev = Some(h);
            }
        }
    }
    Ok(report)
}

/// A row of `seq, at, event, query_id, requester, target, decision, reason_code, detail,
/// agreement_id, rule_version` (and anything after).
fn entry_of(r: &rusqlite::Row<'_>) -> rusqlite::Result<LogEntry> {
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
}

/// Read the log in order.
pub fn read_log(db: &Db) -> Result<Vec<LogEntry>, Error> {
    let mut st = db.conn.prepare(
        "SELECT seq, at, event, query_id, requester, target, decision, reason_code, detail, agreement_id, rule_version FROM log ORDER BY seq",
    )?;
    let rows = st.query_map([], entry_of)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Remember an agency's verified claims.
pub fn put_agency(db: &Db, a: &alpr_pki::AgencyClaims) -> Result<(), Error> {
    db.conn.execute(
        "INSERT OR REPLACE INTO agencies (ori, name, jurisdiction, kind) VALUES (?1, ?2, ?3, ?4)",
        params![a.ori, a.name, a.jurisdiction.as_str(), a.kind.as_str()],
    )?;
    Ok(())
}

/// An agency's jurisdiction, if known from a registration.
pub fn agency_jurisdiction(db: &Db, ori: &str) -> Result<Option<String>, Error> {
    use rusqlite::OptionalExtension;
    Ok(db
        .conn
        .prepare_cached("SELECT jurisdiction FROM agencies WHERE ori = ?1")?
        .query_row([ori], |r| r.get(0))
        .optional()?)
}

/// `(query id, target, logged at)` of the routing decisions logged at or after `since`:
/// what a restarting broker feeds its replay memory. Reads back from the newest row and
/// stops a minute before `since` (rows are appended in time order, give or take one group
/// commit).
pub fn routed_ids_since(db: &Db, since: i64) -> Result<Vec<(Vec<u8>, String, i64)>, Error> {
    Ok(alpr_runtime::sqlite::newest_since(
        &db.conn,
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
        let db = Db::open(path)?;
        // WAL checkpoints run beside the writer, not inside a commit someone waits on.
        let checkpointer = alpr_runtime::sqlite::Checkpointer::start(
            &db.conn,
            path,
            alpr_runtime::sqlite::CHECKPOINT_INTERVAL,
        )?;
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::Builder::new()
            .name("routing-log-writer".into())
            .spawn(move || {
                log_writer(db.conn, rx);
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

/// Refusal counts by (reason, target) and the number of forwarded queries.
pub fn routing_stats(db: &Db) -> Result<(RefusalCounts, u64), Error> {
    let mut st = db.conn.prepare(
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
    let forwarded: i64 = db.conn.query_row(
        "SELECT COUNT(*) FROM log WHERE decision = 'forwarded'",
        [],
        |r| r.get(0),
    )?;
    Ok((rows, forwarded as u64))
}
