//! The routing log (appended in a transaction or by the group-commit [`LogWriter`], read
//! back, counted), the agencies seen at registration, and the replay rebuild query.

use std::path::Path;

use alpr_proto::merkle::Hash;
use alpr_runtime::tree::{LeafSource, StoredTree};
use rusqlite::{Connection, OptionalExtension, params};

use crate::Error;
use crate::store::chain::{self, GENESIS, row_hash, row_leaf};
use crate::store::writer::{GroupCommit, Pending};
use crate::store::{ChainReport, LogEntry, RefusalCounts, RoutingWeek};

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

/// Create the tree and head tables, and build the tree over rows written before it
/// existed (a database from an older broker), up to the first gap.
pub(super) fn add_tree(conn: &Connection) -> Result<(), Error> {
    TREE.create(conn)?;
    conn.execute_batch(HEADS)?;
    let size: i64 = conn.query_row("SELECT coalesce(max(seq), 0) FROM log", [], |r| r.get(0))?;
    Ok(TREE.catch_up(conn, size as u64)?)
}

/// The routing log's size and tree root, read in one snapshot.
pub fn routing_tree_head(conn: &Connection) -> Result<(u64, Hash), Error> {
    let tx = conn.unchecked_transaction()?;
    let size: i64 = tx.query_row("SELECT coalesce(max(seq), 0) FROM log", [], |r| r.get(0))?;
    let root = TREE.root(&tx, size as u64)?;
    tx.commit()?;
    Ok((size as u64, root))
}

/// Consistency proof between the routing log's trees of `old` and `new` rows.
pub fn routing_consistency(conn: &Connection, old: u64, new: u64) -> Result<Vec<Hash>, Error> {
    Ok(TREE.consistency_proof(conn, old, new)?)
}

/// The newest signed routing-log head kept, as `(size, encoded Signed)`.
pub fn latest_routing_head(conn: &Connection) -> Result<Option<(u64, Vec<u8>)>, Error> {
    Ok(conn
        .query_row(
            "SELECT size, head FROM routing_heads ORDER BY size DESC LIMIT 1",
            [],
            |r| Ok((r.get::<_, i64>(0)? as u64, r.get(1)?)),
        )
        .optional()?)
}

/// Keep a signed routing-log head (replacing one of the same size: a fresher signature).
pub fn put_routing_head(conn: &Connection, size: u64, head: &[u8]) -> Result<(), Error> {
    conn.execute(
        "INSERT OR REPLACE INTO routing_heads (size, head) VALUES (?1, ?2)",
        params![size as i64, head],
    )?;
    Ok(())
}

/// The signed routing-log head kept for `size`.
pub fn routing_head_of_size(conn: &Connection, size: u64) -> Result<Option<Vec<u8>>, Error> {
    Ok(conn
        .query_row(
            "SELECT head FROM routing_heads WHERE size = ?1",
            [size as i64],
            |r| r.get(0),
        )
        .optional()?)
}

/// Keep a regulator's cosignature of the routing-log head of `size`.
pub fn put_routing_cosignature(
    conn: &Connection,
    size: u64,
    cosigner: &str,
    cosig: &[u8],
) -> Result<(), Error> {
    conn.execute(
        "INSERT OR REPLACE INTO routing_cosignatures (size, cosigner, cosignature) VALUES (?1, ?2, ?3)",
        params![size as i64, cosigner, cosig],
    )?;
    Ok(())
}

/// The cosignatures kept for the routing-log head of `size` (encoded `Signed`s).
pub fn routing_cosignatures(conn: &Connection, size: u64) -> Result<Vec<Vec<u8>>, Error> {
    let mut st = conn.prepare(
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

/// Append log rows in one transaction.
pub fn log(conn: &mut Connection, entries: &[LogEntry]) -> Result<(), Error> {
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
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

/// Verify the routing log's chain ([`chain::ChainCheck`]).
pub fn verify_log(conn: &Connection) -> Result<ChainReport, Error> {
    let heads: std::collections::BTreeMap<u64, Vec<u8>> = conn
        .prepare("SELECT size, head FROM routing_heads ORDER BY size")?
        .query_map([], |r| Ok((r.get::<_, i64>(0)? as u64, r.get(1)?)))?
        .collect::<Result<_, _>>()?;
    let mut check = chain::ChainCheck::new(heads);
    let mut st = conn.prepare(
        "SELECT seq, at, event, query_id, requester, target, decision, reason_code, detail, agreement_id, rule_version, prev_hash, hash FROM log ORDER BY seq",
    )?;
    let mut rows = st.query([])?;
    while let Some(r) = rows.next()? {
        check.push(&entry_of(r)?, r.get(11)?, r.get(12)?)?;
    }
    check.finish(|size| Ok(TREE.root(conn, size)?))
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
pub fn read_log(conn: &Connection) -> Result<Vec<LogEntry>, Error> {
    let mut st = conn.prepare(
        "SELECT seq, at, event, query_id, requester, target, decision, reason_code, detail, agreement_id, rule_version FROM log ORDER BY seq",
    )?;
    let rows = st.query_map([], entry_of)?;
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

/// Every agency known from a registration, as `(ORI, jurisdiction)`.
pub fn agencies(conn: &Connection) -> Result<Vec<(String, String)>, Error> {
    let mut st = conn.prepare("SELECT ori, jurisdiction FROM agencies ORDER BY ori")?;
    let rows = st
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<Result<_, _>>()?;
    Ok(rows)
}

/// An agency's jurisdiction, if known from a registration.
pub fn agency_jurisdiction(conn: &Connection, ori: &str) -> Result<Option<String>, Error> {
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

/// The writer thread's connection to `path`: every group one immediate transaction, and
/// WAL checkpoints beside it, not inside a commit someone waits on. A broker of its own has
/// no other replica to claim against: its replay memory decides, and claims find nothing.
pub(in crate::store) fn group_writer(path: &Path) -> Result<GroupCommit, Error> {
    let mut conn = super::open_conn(path)?;
    let checkpointer = alpr_runtime::sqlite::Checkpointer::start(
        &conn,
        path,
        alpr_runtime::sqlite::CHECKPOINT_INTERVAL,
    )?;
    Ok(Box::new(move |groups: &mut [Pending]| {
        let _keep = &checkpointer;
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        for g in groups.iter() {
            log_in(&tx, &g.entries)?;
        }
        tx.commit()?;
        Ok(vec![Vec::new(); groups.len()])
    }))
}

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

/// The routing log week by week, oldest first: at most the newest `weeks` weeks.
pub fn routing_weeks(conn: &Connection, weeks: usize) -> Result<Vec<RoutingWeek>, Error> {
    let mut st = conn.prepare(
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
    Ok(crate::store::weeks_of(rows, weeks))
}
