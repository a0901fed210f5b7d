//! The routing log (appended in a transaction or by the group-commit [`LogWriter`], read
//! back, counted), the agencies seen at registration, and the replay rebuild query.

use std::path::Path;

use alpr_proto::merkle::{self, Frontier, Hash};
use alpr_runtime::tree::{LeafSource, StoredTree};
use rusqlite::{Connection, OptionalExtension, params};

use super::Db;
use crate::Error;
use crate::store::{LogEntry, RefusalCounts};

/// The RFC 6962 tree over the routing log (leaf `seq - 1`, see [`row_leaf`]).
const TREE: StoredTree<RoutingLeaves> = StoredTree::new("routing_tree", RoutingLeaves);

/// The routing tree's leaves: each row's [`row_leaf`].
#[derive(Clone, Copy, Debug)]
struct RoutingLeaves;

impl LeafSource for RoutingLeaves {
    fn leaves(
        &self,
        conn: &Connection,
        start: u64,
        end: u64,
    ) -> Result<Vec<Hash>, alpr_runtime::Error> {
        let tree_err = |detail: String| alpr_runtime::Error::Tree {
            table: "routing_tree",
            detail,
        };
        let mut st = conn
            .prepare_cached(
                "SELECT seq, at, event, query_id, requester, target, decision, reason_code, detail, agreement_id, rule_version, hash FROM log WHERE seq > ?1 AND seq <= ?2 ORDER BY seq",
            )
            .map_err(|e| tree_err(e.to_string()))?;
        let mut rows = st
            .query([start as i64, end as i64])
            .map_err(|e| tree_err(e.to_string()))?;
        let mut out = Vec::new();
        let mut expected = start as i64 + 1;
        while let Some(r) = rows.next().map_err(|e| tree_err(e.to_string()))? {
            let e = entry_of(r).map_err(|e| tree_err(e.to_string()))?;
            if e.seq != expected {
                break;
            }
            let hash: Option<String> = r.get(11).map_err(|e| tree_err(e.to_string()))?;
            out.push(row_leaf(&e, hash.as_deref()).map_err(|e| tree_err(e.to_string()))?);
            expected += 1;
        }
        Ok(out)
    }
}

const HEADS: &str = r#"
CREATE TABLE IF NOT EXISTS routing_heads (size INTEGER PRIMARY KEY, head BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS routing_cosignatures (
    size INTEGER NOT NULL,
    cosigner TEXT NOT NULL,
    cosignature BLOB NOT NULL,
    PRIMARY KEY (size, cosigner)
);
"#;

/// A row's tree leaf: the leaf hash of its raw 32-byte chain hash, or, for a row from
/// before the log was chained, of the SHA-256 of its JSON.
fn row_leaf(e: &LogEntry, hash: Option<&str>) -> Result<Hash, Error> {
    let raw = match hash {
        Some(h) => hex::decode(h)
            .ok()
            .and_then(|b| merkle::hash_from_slice(&b).ok()),
        None => hex::decode(row_hash("", e)?)
            .ok()
            .and_then(|b| merkle::hash_from_slice(&b).ok()),
    };
    raw.map(|r| merkle::leaf_hash(&r))
        .ok_or_else(|| Error::Corrupt {
            what: format!("routing log row {}", e.seq),
            detail: "its hash is not 32 bytes of hex".into(),
        })
}

/// Create the tree and head tables, and build the tree over rows written before it
/// existed (a database from an older broker), up to the first gap.
pub(super) fn add_tree(conn: &Connection) -> Result<(), Error> {
    TREE.create(conn)?;
    conn.execute_batch(HEADS)?;
    let size: i64 = conn.query_row("SELECT coalesce(max(seq), 0) FROM log", [], |r| r.get(0))?;
    Ok(TREE.catch_up(conn, size as u64)?)
}

/// The routing log's size and tree root, read in one snapshot.
pub fn routing_tree_head(db: &Db) -> Result<(u64, Hash), Error> {
    let tx = db.conn.unchecked_transaction()?;
    let size: i64 = tx.query_row("SELECT coalesce(max(seq), 0) FROM log", [], |r| r.get(0))?;
    let root = TREE.root(&tx, size as u64)?;
    tx.commit()?;
    Ok((size as u64, root))
}

/// Consistency proof between the routing log's trees of `old` and `new` rows.
pub fn routing_consistency(db: &Db, old: u64, new: u64) -> Result<Vec<Hash>, Error> {
    Ok(TREE.consistency_proof(&db.conn, old, new)?)
}

/// The newest signed routing-log head kept, as `(size, encoded Signed)`.
pub fn latest_routing_head(db: &Db) -> Result<Option<(u64, Vec<u8>)>, Error> {
    Ok(db
        .conn
        .query_row(
            "SELECT size, head FROM routing_heads ORDER BY size DESC LIMIT 1",
            [],
            |r| Ok((r.get::<_, i64>(0)? as u64, r.get(1)?)),
        )
        .optional()?)
}

/// Keep a signed routing-log head (replacing one of the same size: a fresher signature).
pub fn put_routing_head(db: &Db, size: u64, head: &[u8]) -> Result<(), Error> {
    db.conn.execute(
        "INSERT OR REPLACE INTO routing_heads (size, head) VALUES (?1, ?2)",
        params![size as i64, head],
    )?;
    Ok(())
}

/// The signed routing-log head kept for `size`.
pub fn routing_head_of_size(db: &Db, size: u64) -> Result<Option<Vec<u8>>, Error> {
    Ok(db
        .conn
        .query_row(
            "SELECT head FROM routing_heads WHERE size = ?1",
            [size as i64],
            |r| r.get(0),
        )
        .optional()?)
}

/// Keep a regulator's cosignature of the routing-log head of `size`.
pub fn put_routing_cosignature(
    db: &Db,
    size: u64,
    cosigner: &str,
    cosig: &[u8],
) -> Result<(), Error> {
    db.conn.execute(
        "INSERT OR REPLACE INTO routing_cosignatures (size, cosigner, cosignature) VALUES (?1, ?2, ?3)",
        params![size as i64, cosigner, cosig],
    )?;
    Ok(())
}

/// The cosignatures kept for the routing-log head of `size` (encoded `Signed`s).
pub fn routing_cosignatures(db: &Db, size: u64) -> Result<Vec<Vec<u8>>, Error> {
    let mut st = db.conn.prepare(
        "SELECT cosignature FROM routing_cosignatures WHERE size = ?1 ORDER BY cosigner",
    )?;
    let rows = st
        .query_map([size as i64], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    Ok(rows)
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
        TREE.append(tx, seq as u64 - 1)?;
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
    /// Signed routing-log heads kept whose root the rows reproduce.
    pub heads: u64,
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
        heads: 0,
    };
    let heads: std::collections::BTreeMap<u64, Vec<u8>> = db
        .conn
        .prepare("SELECT size, head FROM routing_heads ORDER BY size")?
        .query_map([], |r| Ok((r.get::<_, i64>(0)? as u64, r.get(1)?)))?
        .collect::<Result<_, _>>()?;
    let mut tree = Frontier::new();
    let check_head = |size: u64, root: &Hash, report: &mut ChainReport| -> Result<(), Error> {
        if let Some(b) = heads.get(&size) {
            let signed = <alpr_proto::pb::Signed as prost::Message>::decode(b.as_slice())
                .map_err(|e| corrupt(format!("signed head {size}: {e}")))?;
            let th = <alpr_proto::pb::RoutingTreeHead as prost::Message>::decode(
                signed.payload.as_slice(),
            )
            .map_err(|e| corrupt(format!("signed head {size}: {e}")))?;
            if th.root != root.as_slice() {
                return Err(corrupt(format!(
                    "the rows up to {size} are not the ones the broker signed a head of (rewritten)"
                )));
            }
            report.heads += 1;
        }
        Ok(())
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
        let hash: Option<String> = r.get(12)?;
        tree.push(row_leaf(&e, hash.as_deref())?);
        check_head(tree.size(), &tree.root(), &mut report)?;
    }
    if let Some((&size, _)) = heads.iter().next_back()
        && size > tree.size()
    {
        return Err(corrupt(format!(
            "the broker signed a head of {size} rows but the log has {} (rows deleted)",
            tree.size()
        )));
    }
    if tree.size() > 0 && TREE.root(&db.conn, tree.size()).ok() != Some(tree.root()) {
        return Err(corrupt(
            "the stored routing tree does not match the rows".into(),
        ));
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

/// One week of routing (weeks of 7 days from the Unix epoch): when it starts, the targets
/// forwarded to, and the refusals by reason.
pub type RoutingWeek = (i64, u64, Vec<(String, u64)>);

/// The routing log week by week, oldest first: at most the newest `weeks` weeks.
pub fn routing_weeks(db: &Db, weeks: usize) -> Result<Vec<RoutingWeek>, Error> {
    const WEEK: i64 = 7 * 86_400;
    let mut st = db.conn.prepare(
        "SELECT at / 604800 AS w, decision, COALESCE(reason_code, ''), COUNT(*) FROM log
         WHERE (decision = 'refused' AND event LIKE 'route%') OR decision = 'forwarded'
         GROUP BY w, decision, reason_code ORDER BY w",
    )?;
    let rows = st
        .query_map([], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, i64>(3)? as u64,
            ))
        })?
        .collect::<Result<Vec<_>, _>>()?;
    let mut out: Vec<RoutingWeek> = Vec::new();
    for (w, decision, reason, n) in rows {
        if out.last().is_none_or(|x| x.0 != w * WEEK) {
            out.push((w * WEEK, 0, Vec::new()));
        }
        if let Some(x) = out.last_mut() {
            if decision == "forwarded" {
                x.1 += n;
            } else {
                x.2.push((reason, n));
            }
        }
    }
    let skip = out.len().saturating_sub(weeks);
    Ok(out.split_off(skip))
}
