//! The routing log in PostgreSQL: rows appended under one advisory lock (so the chain and
//! the tree are one sequence whichever replica writes), the RFC 6962 tree over them (the
//! same layout as SQLite's: every perfect subtree of `STORED_LEVEL` or more levels), the
//! agencies seen at registration, and the replay claims of table `routed`.

use alpr_proto::merkle::{self, Hash};
use alpr_runtime::tree::STORED_LEVEL;
use postgres::{Client, GenericClient};

use super::{Pg, u};
use crate::Error;
use crate::store::chain::{self, GENESIS, row_hash};
use crate::store::writer::{GroupCommit, Pending, mark_replays};
use crate::store::{ChainReport, LogEntry, RefusalCounts, RoutingWeek};

/// Advisory lock serializing routing-log appends between replicas.
const LOG_LOCK: i64 = 0x616c_7072_0000_0002;

const COLUMNS: &str = "seq, at, event, query_id, requester, target, decision, reason_code, detail, agreement_id, rule_version";

fn vocab<T: std::str::FromStr<Err = String>>(r: &postgres::Row, i: usize) -> Result<T, Error> {
    let text: String = r.get(i);
    text.parse().map_err(|e: String| Error::Corrupt {
        what: "routing log row".into(),
        detail: e,
    })
}

fn entry_of(r: &postgres::Row) -> Result<LogEntry, Error> {
    Ok(LogEntry {
        seq: r.get(0),
        at: r.get(1),
        event: vocab(r, 2)?,
        query_id: r.get(3),
        requester: r.get(4),
        target: r.get(5),
        decision: vocab(r, 6)?,
        reason_code: r.get(7),
        detail: r.get(8),
        agreement_id: r.get(9),
        rule_version: r.get(10),
    })
}

fn tree_err(detail: impl std::fmt::Display) -> Error {
    Error::Corrupt {
        what: "routing tree".into(),
        detail: detail.to_string(),
    }
}

impl From<merkle::ProofError> for Error {
    fn from(e: merkle::ProofError) -> Self {
        tree_err(e)
    }
}

/// The leaf hashes of leaves `[start, end)`: all of them, or an error.
fn leaves(c: &mut impl GenericClient, start: u64, end: u64) -> Result<Vec<Hash>, Error> {
    let rows = c.query_typed(
        "SELECT hash FROM log WHERE seq > $1 AND seq <= $2 ORDER BY seq",
        &[
            (&(start as i64), postgres::types::Type::INT8),
            (&(end as i64), postgres::types::Type::INT8),
        ],
    )?;
    if rows.len() as u64 != end - start {
        return Err(tree_err(format!(
            "entries {}..={end} are not all in the log ({} found)",
            start + 1,
            rows.len()
        )));
    }
    rows.iter()
        .map(|r| {
            let h: String = r.get(0);
            hex::decode(&h)
                .ok()
                .and_then(|b| merkle::hash_from_slice(&b).ok())
                .map(|raw| merkle::leaf_hash(&raw))
                .ok_or_else(|| tree_err("a row's hash is not 32 bytes of hex"))
        })
        .collect()
}

/// The subtree at `(level, idx)`: stored, or recomputed from its leaves.
fn node(c: &mut impl GenericClient, level: u32, idx: u64) -> Result<Hash, Error> {
    if level < STORED_LEVEL {
        return Ok(merkle::root(&leaves(c, idx << level, (idx + 1) << level)?));
    }
    let row = c.query_typed_opt(
        "SELECT hash FROM routing_tree WHERE level = $1 AND idx = $2",
        &[
            (&(level as i32), postgres::types::Type::INT4),
            (&(idx as i64), postgres::types::Type::INT8),
        ],
    )?;
    row.and_then(|r| merkle::hash_from_slice(&r.get::<_, Vec<u8>>(0)).ok())
        .ok_or_else(|| tree_err(format!("node ({level}, {idx}) is missing")))
}

/// Leaf `index` was just added: store the subtrees it completes.
fn tree_append(c: &mut impl GenericClient, index: u64) -> Result<(), Error> {
    let n = index + 1;
    if !n.is_multiple_of(1 << STORED_LEVEL) {
        return Ok(());
    }
    let bottom = merkle::root(&leaves(c, n - (1 << STORED_LEVEL), n)?);
    let done =
        merkle::completed_nodes(STORED_LEVEL, index >> STORED_LEVEL, bottom, &mut |l, i| {
            node(c, l, i)
        })?;
    for (level, idx, h) in done {
        c.execute_typed(
            "INSERT INTO routing_tree (level, idx, hash) VALUES ($1, $2, $3)
             ON CONFLICT (level, idx) DO UPDATE SET hash = EXCLUDED.hash",
            &[
                (&(level as i32), postgres::types::Type::INT4),
                (&(idx as i64), postgres::types::Type::INT8),
                (&h.as_slice(), postgres::types::Type::BYTEA),
            ],
        )?;
    }
    Ok(())
}

/// Insert rows inside a caller's transaction, after taking the append lock: each chained to
/// the newest row in the database, whichever replica wrote it. Every row of the group goes
/// in one statement (arrays unnested), each statement in one round trip (typed, not
/// prepared first).
fn log_in(tx: &mut postgres::Transaction<'_>, entries: &[LogEntry]) -> Result<(), Error> {
    if entries.is_empty() {
        return Ok(());
    }
    tx.batch_execute(&format!("SELECT pg_advisory_xact_lock({LOG_LOCK})"))?;
    let (first, mut prev): (i64, String) = tx
        .query_typed_opt("SELECT seq, hash FROM log ORDER BY seq DESC LIMIT 1", &[])?
        .map(|r| (r.get::<_, i64>(0) + 1, r.get(1)))
        .unwrap_or((1, GENESIS.to_owned()));
    let n = entries.len();
    let (mut seqs, mut ats) = (Vec::with_capacity(n), Vec::with_capacity(n));
    let (mut events, mut decisions) = (Vec::with_capacity(n), Vec::with_capacity(n));
    let (mut prevs, mut hashes) = (Vec::with_capacity(n), Vec::with_capacity(n));
    for (i, e) in entries.iter().enumerate() {
        let seq = first + i as i64;
        let hash = row_hash(&prev, &LogEntry { seq, ..e.clone() })?;
        seqs.push(seq);
        ats.push(e.at);
        events.push(e.event.as_str());
        decisions.push(e.decision.as_str());
        prevs.push(std::mem::replace(&mut prev, hash.clone()));
        hashes.push(hash);
    }
    let col = |f: fn(&LogEntry) -> &Option<String>| -> Vec<Option<&str>> {
        entries.iter().map(|e| f(e).as_deref()).collect()
    };
    let (query_ids, requesters, targets) = (
        col(|e| &e.query_id),
        col(|e| &e.requester),
        col(|e| &e.target),
    );
    let (reasons, details, agreements, rules) = (
        col(|e| &e.reason_code),
        col(|e| &e.detail),
        col(|e| &e.agreement_id),
        col(|e| &e.rule_version),
    );
    use postgres::types::Type;
    tx.execute_typed(
        &format!(
            "INSERT INTO log ({COLUMNS}, prev_hash, hash) SELECT * FROM unnest($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)"
        ),
        &[
            (&seqs, Type::INT8_ARRAY),
            (&ats, Type::INT8_ARRAY),
            (&events, Type::TEXT_ARRAY),
            (&query_ids, Type::TEXT_ARRAY),
            (&requesters, Type::TEXT_ARRAY),
            (&targets, Type::TEXT_ARRAY),
            (&decisions, Type::TEXT_ARRAY),
            (&reasons, Type::TEXT_ARRAY),
            (&details, Type::TEXT_ARRAY),
            (&agreements, Type::TEXT_ARRAY),
            (&rules, Type::TEXT_ARRAY),
            (&prevs, Type::TEXT_ARRAY),
            (&hashes, Type::TEXT_ARRAY),
        ],
    )?;
    for seq in &seqs {
        tree_append(tx, *seq as u64 - 1)?;
    }
    Ok(())
}

/// Append log rows in one transaction.
pub fn log(pg: &Pg, entries: &[LogEntry]) -> Result<(), Error> {
    let entries = entries.to_vec();
    pg.call(move |c| super::in_transaction(c, |tx| log_in(tx, &entries)))
}

/// The routing-log writer's own connection (made on the writer's thread, and again after
/// it breaks): every group one transaction, each claim made in it ([`claim_in`]) with the
/// rows it decides.
pub fn group_writer_for(config: postgres::Config, tls: super::Connector) -> GroupCommit {
    let mut client: Option<Client> = None;
    let mut commits: u64 = 0;
    Box::new(move |groups: &mut [Pending]| {
        if client.as_ref().is_none_or(Client::is_closed) {
            client = Some(super::connect(&config, &tls)?);
        }
        let c = client
            .as_mut()
            .ok_or_else(|| Error::Postgres("database unreachable".into()))?;
        // Expired claims are pruned every 1,000th commit.
        commits += 1;
        let prune = commits.is_multiple_of(1000);
        super::in_transaction(c, |tx| {
            let mut all = Vec::with_capacity(groups.len());
            for g in groups.iter_mut() {
                let replays = match &g.claim {
                    Some(claim) => {
                        let targets: Vec<String> = g
                            .entries
                            .iter()
                            .filter(|e| e.decision == crate::vocabulary::Decision::Forwarded)
                            .filter_map(|e| e.target.clone())
                            .collect();
                        let replays = claim_in(tx, &claim.query_id, &targets, claim.now)?;
                        mark_replays(&mut g.entries, &replays);
                        replays
                    }
                    None => Vec::new(),
                };
                log_in(tx, &g.entries)?;
                all.push(replays);
            }
            if prune {
                let now = groups
                    .iter()
                    .filter_map(|g| g.claim.as_ref())
                    .map(|c| c.now)
                    .max();
                if let Some(now) = now {
                    tx.execute(
                        "DELETE FROM routed WHERE at < $1",
                        &[&(now - alpr_proto::replay::ReplayMemory::HORIZON_SECS)],
                    )?;
                }
            }
            Ok(all)
        })
    })
}

/// The routing log's size and tree root, read in one snapshot.
pub fn routing_tree_head(pg: &Pg) -> Result<(u64, Hash), Error> {
    pg.call(|c| {
        let mut tx = c
            .build_transaction()
            .isolation_level(postgres::IsolationLevel::RepeatableRead)
            .start()?;
        let size = u(tx
            .query_one("SELECT coalesce(max(seq), 0) FROM log", &[])?
            .get(0));
        let root = merkle::subtree_root(0, size, &mut |l, i| node(&mut tx, l, i))?;
        tx.commit()?;
        Ok((size, root))
    })
}

/// Consistency proof between the routing log's trees of `old` and `new` rows.
pub fn routing_consistency(pg: &Pg, old: u64, new: u64) -> Result<Vec<Hash>, Error> {
    pg.call(move |c| merkle::consistency_proof_with(old, new, &mut |l, i| node(c, l, i)))
}

/// The newest signed routing-log head kept, as `(size, encoded Signed)`.
pub fn latest_routing_head(pg: &Pg) -> Result<Option<(u64, Vec<u8>)>, Error> {
    pg.call(|c| {
        Ok(c.query_opt(
            "SELECT size, head FROM routing_heads ORDER BY size DESC LIMIT 1",
            &[],
        )?
        .map(|r| (u(r.get(0)), r.get(1))))
    })
}

/// Keep a signed routing-log head (replacing one of the same size).
pub fn put_routing_head(pg: &Pg, size: u64, head: &[u8]) -> Result<(), Error> {
    let head = head.to_vec();
    pg.call(move |c| {
        c.execute(
            "INSERT INTO routing_heads (size, head) VALUES ($1, $2) ON CONFLICT (size) DO UPDATE SET head = EXCLUDED.head",
            &[&(size as i64), &head],
        )?;
        Ok(())
    })
}

/// The signed routing-log head kept for `size`.
pub fn routing_head_of_size(pg: &Pg, size: u64) -> Result<Option<Vec<u8>>, Error> {
    pg.call(move |c| {
        Ok(c.query_opt(
            "SELECT head FROM routing_heads WHERE size = $1",
            &[&(size as i64)],
        )?
        .map(|r| r.get(0)))
    })
}

/// Keep a regulator's cosignature of the routing-log head of `size`.
pub fn put_routing_cosignature(
    pg: &Pg,
    size: u64,
    cosigner: &str,
    cosig: &[u8],
) -> Result<(), Error> {
    let (cosigner, cosig) = (cosigner.to_owned(), cosig.to_vec());
    pg.call(move |c| {
        c.execute(
            "INSERT INTO routing_cosignatures (size, cosigner, cosignature) VALUES ($1, $2, $3)
             ON CONFLICT (size, cosigner) DO UPDATE SET cosignature = EXCLUDED.cosignature",
            &[&(size as i64), &cosigner, &cosig],
        )?;
        Ok(())
    })
}

/// The cosignatures kept for the routing-log head of `size`.
pub fn routing_cosignatures(pg: &Pg, size: u64) -> Result<Vec<Vec<u8>>, Error> {
    pg.call(move |c| {
        Ok(c.query(
            "SELECT cosignature FROM routing_cosignatures WHERE size = $1 ORDER BY cosigner",
            &[&(size as i64)],
        )?
        .iter()
        .map(|r| r.get(0))
        .collect())
    })
}

/// Verify the routing log's chain ([`chain::ChainCheck`]), in one snapshot.
pub fn verify_log(pg: &Pg) -> Result<ChainReport, Error> {
    pg.call(|c| {
        let mut tx = c
            .build_transaction()
            .isolation_level(postgres::IsolationLevel::RepeatableRead)
            .read_only(true)
            .start()?;
        let heads = tx
            .query("SELECT size, head FROM routing_heads ORDER BY size", &[])?
            .iter()
            .map(|r| (u(r.get(0)), r.get(1)))
            .collect();
        let mut check = chain::ChainCheck::new(heads);
        for r in tx.query(
            &format!("SELECT {COLUMNS}, prev_hash, hash FROM log ORDER BY seq"),
            &[],
        )? {
            check.push(&entry_of(&r)?, r.get(11), r.get(12))?;
        }
        let report =
            check.finish(|size| merkle::subtree_root(0, size, &mut |l, i| node(&mut tx, l, i)))?;
        tx.commit()?;
        Ok(report)
    })
}

/// Read the log in order.
pub fn read_log(pg: &Pg) -> Result<Vec<LogEntry>, Error> {
    pg.call(|c| {
        c.query(&format!("SELECT {COLUMNS} FROM log ORDER BY seq"), &[])?
            .iter()
            .map(entry_of)
            .collect()
    })
}

/// Remember an agency's verified claims.
pub fn put_agency(pg: &Pg, a: &alpr_pki::AgencyClaims) -> Result<(), Error> {
    let (ori, name, j, kind) = (
        a.ori.clone(),
        a.name.clone(),
        a.jurisdiction.as_str().to_owned(),
        a.kind.as_str().to_owned(),
    );
    pg.call(move |c| {
        c.execute(
            "INSERT INTO agencies (ori, name, jurisdiction, kind) VALUES ($1, $2, $3, $4)
             ON CONFLICT (ori) DO UPDATE SET name = EXCLUDED.name, jurisdiction = EXCLUDED.jurisdiction, kind = EXCLUDED.kind",
            &[&ori, &name, &j, &kind],
        )?;
        Ok(())
    })
}

/// Every agency known from a registration, as `(ORI, jurisdiction)`.
pub fn agencies(pg: &Pg) -> Result<Vec<(String, String)>, Error> {
    pg.call(|c| {
        Ok(
            c.query("SELECT ori, jurisdiction FROM agencies ORDER BY ori", &[])?
                .iter()
                .map(|r| (r.get(0), r.get(1)))
                .collect(),
        )
    })
}

/// An agency's jurisdiction, if known from a registration.
pub fn agency_jurisdiction(pg: &Pg, ori: &str) -> Result<Option<String>, Error> {
    let ori = ori.to_owned();
    pg.call(move |c| {
        Ok(
            c.query_opt("SELECT jurisdiction FROM agencies WHERE ori = $1", &[&ori])?
                .map(|r| r.get(0)),
        )
    })
}

/// `(query id, target, claimed at)` of the claims made at or after `since`, by any replica.
pub fn routed_ids_since(pg: &Pg, since: i64) -> Result<Vec<(Vec<u8>, String, i64)>, Error> {
    pg.call(move |c| {
        Ok(c.query(
            "SELECT query_id, target, at FROM routed WHERE at >= $1",
            &[&since],
        )?
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect())
    })
}

/// Claim `query_id` for each of `targets` at `now`, in one statement, inside the caller's
/// transaction; returns the targets some replica had already claimed it for (replays).
fn claim_in(
    c: &mut impl GenericClient,
    query_id: &[u8],
    targets: &[String],
    now: i64,
) -> Result<Vec<String>, Error> {
    if targets.is_empty() {
        return Ok(Vec::new());
    }
    use postgres::types::Type;
    let claimed: std::collections::HashSet<String> = c
        .query_typed(
            "INSERT INTO routed (query_id, target, at) SELECT $1, t, $3 FROM unnest($2) AS t
             ON CONFLICT (query_id, target) DO NOTHING RETURNING target",
            &[
                (&query_id, Type::BYTEA),
                (&targets, Type::TEXT_ARRAY),
                (&now, Type::INT8),
            ],
        )?
        .iter()
        .map(|r| r.get(0))
        .collect();
    Ok(targets
        .iter()
        .filter(|t| !claimed.contains(*t))
        .cloned()
        .collect())
}

/// [`claim_in`] on its own.
pub fn claim_routes(
    pg: &Pg,
    query_id: &[u8],
    targets: &[String],
    now: i64,
) -> Result<Vec<String>, Error> {
    let (id, targets) = (query_id.to_vec(), targets.to_vec());
    pg.call(move |c| claim_in(c, &id, &targets, now))
}

/// Refusal counts by (reason, target) and the number of forwarded queries.
pub fn routing_stats(pg: &Pg) -> Result<(RefusalCounts, u64), Error> {
    pg.call(|c| {
        let rows = c
            .query(
                "SELECT reason_code, COALESCE(target, '-'), COUNT(*) FROM log WHERE decision = 'refused' AND event LIKE 'route%'
                 GROUP BY reason_code, target ORDER BY COUNT(*) DESC, reason_code NULLS FIRST",
                &[],
            )?
            .iter()
            .map(|r| {
                (
                    r.get::<_, Option<String>>(0).unwrap_or_default(),
                    r.get(1),
                    u(r.get(2)),
                )
            })
            .collect();
        let forwarded = u(c
            .query_one("SELECT COUNT(*) FROM log WHERE decision = 'forwarded'", &[])?
            .get(0));
        Ok((rows, forwarded))
    })
}

/// The routing log week by week, oldest first: at most the newest `weeks` weeks.
pub fn routing_weeks(pg: &Pg, weeks: usize) -> Result<Vec<RoutingWeek>, Error> {
    let rows = pg.call(|c| {
        Ok(c.query(
            "SELECT at / 604800 AS w, decision, COALESCE(reason_code, ''), COUNT(*) FROM log
             WHERE (decision = 'refused' AND event LIKE 'route%') OR decision = 'forwarded'
             GROUP BY w, decision, reason_code ORDER BY w",
            &[],
        )?
        .iter()
        .map(|r| {
            (
                r.get::<_, i64>(0),
                r.get::<_, String>(1),
                r.get::<_, String>(2),
                u(r.get(3)),
            )
        })
        .collect::<Vec<_>>())
    })?;
    Ok(crate::store::weeks_of(rows, weeks))
}
