//! The PostgreSQL backend of the store, for broker replicas: any number of brokers share
//! one database, and everything that must not fork or repeat is decided there. The one
//! place the broker speaks PostgreSQL's SQL or names a `postgres` type.
//!
//! - registry appends: leaf `index` is a primary key, so of two replicas appending at once
//!   one stores it and the other is told to catch up and try again ([`append_registry_leaf`]);
//! - the routing log: each group is appended under one advisory lock, so the hash chain and
//!   the tree are one sequence whichever replica writes ([`routing_log`]);
//! - replay memory: each admitted (query id, target) is claimed in table `routed` in the
//!   transaction that makes its routing decision durable, before it is forwarded (see
//!   `store/writer.rs`), so a query replayed to a second replica is refused.
//!
//! The connections are a pool of worker threads ([`alpr_runtime::pgpool`]), since the
//! broker calls its store from async tasks, where the synchronous client cannot block.

use postgres::Client;

use crate::Error;
use crate::store::{AuditFork, StoredAnchor};

mod regulator_codes;
mod routing_log;

pub use regulator_codes::{
    clear_regulator_failures, confirm_regulator_code, enroll_regulator_code, put_regulator_failure,
    regulator_code, regulator_codes, regulator_failure_times, regulator_failures_since,
    remove_regulator_code, spend_signin_token, use_regulator_step,
};

pub use routing_log::{
    agencies, agency_jurisdiction, claim_routes, group_writer_for, latest_routing_head, log,
    put_agency, put_routing_cosignature, put_routing_head, read_log, routed_ids_since,
    routing_consistency, routing_cosignatures, routing_head_of_size, routing_stats,
    routing_tree_head, routing_weeks, verify_log,
};

/// Connections each broker process keeps open (its calls are serialized by the broker's own
/// database lock; the routing-log writer has one more of its own).
const WORKERS: usize = 2;

/// Advisory lock serializing schema creation between replicas starting together.
const SCHEMA_LOCK: i64 = 0x616c_7072_0000_0001;

const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS agencies (
    ori TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    jurisdiction TEXT NOT NULL,
    kind TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS log (
    seq BIGINT PRIMARY KEY,
    at BIGINT NOT NULL,
    event TEXT NOT NULL,
    query_id TEXT,
    requester TEXT,
    target TEXT,
    decision TEXT NOT NULL,
    reason_code TEXT,
    detail TEXT,
    agreement_id TEXT,
    rule_version TEXT,
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS routing_tree (
    level INTEGER NOT NULL,
    idx BIGINT NOT NULL,
    hash BYTEA NOT NULL,
    PRIMARY KEY (level, idx)
);
CREATE TABLE IF NOT EXISTS routing_heads (size BIGINT PRIMARY KEY, head BYTEA NOT NULL);
CREATE TABLE IF NOT EXISTS routing_cosignatures (
    size BIGINT NOT NULL,
    cosigner TEXT NOT NULL,
    cosignature BYTEA NOT NULL,
    PRIMARY KEY (size, cosigner)
);
CREATE TABLE IF NOT EXISTS routed (
    query_id BYTEA NOT NULL,
    target TEXT NOT NULL,
    at BIGINT NOT NULL,
    PRIMARY KEY (query_id, target)
);
CREATE INDEX IF NOT EXISTS routed_at ON routed (at);
CREATE TABLE IF NOT EXISTS registry (idx BIGINT PRIMARY KEY, leaf BYTEA NOT NULL);
CREATE TABLE IF NOT EXISTS tree_heads (size BIGINT PRIMARY KEY, sth BYTEA NOT NULL);
CREATE TABLE IF NOT EXISTS audit_anchors (
    ori TEXT NOT NULL,
    size BIGINT NOT NULL,
    root BYTEA NOT NULL,
    anchored_at BIGINT NOT NULL,
    anchor BYTEA NOT NULL,
    from_size BIGINT NOT NULL,
    consistency BYTEA NOT NULL,
    PRIMARY KEY (ori, size)
);
CREATE TABLE IF NOT EXISTS audit_cosignatures (
    ori TEXT NOT NULL,
    size BIGINT NOT NULL,
    cosigner TEXT NOT NULL,
    cosignature BYTEA NOT NULL,
    PRIMARY KEY (ori, size, cosigner)
);
CREATE TABLE IF NOT EXISTS audit_forks (
    seq BIGSERIAL PRIMARY KEY,
    ori TEXT NOT NULL,
    at BIGINT NOT NULL,
    offered BYTEA NOT NULL,
    detail TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS regulator_codes (
    regulator TEXT PRIMARY KEY,
    secret BYTEA NOT NULL,
    enrolled_at BIGINT NOT NULL,
    generation BIGINT NOT NULL DEFAULT 1,
    confirmed_at BIGINT,
    last_step BIGINT NOT NULL DEFAULT -1
);
CREATE TABLE IF NOT EXISTS regulator_failures (
    regulator TEXT NOT NULL,
    at BIGINT NOT NULL
);
CREATE INDEX IF NOT EXISTS regulator_failures_by ON regulator_failures (regulator, at);
CREATE TABLE IF NOT EXISTS regulator_tokens (
    digest BYTEA PRIMARY KEY,
    until BIGINT NOT NULL
);
"#;

impl From<postgres::Error> for Error {
    fn from(e: postgres::Error) -> Self {
        Self::Postgres(alpr_runtime::pgpool::message(&e))
    }
}

pub use alpr_runtime::pgpool::{Connector, connector, parse};

/// The pool's and the connector's failures to reach the database are the store's
/// failures, as the server's own are: `Error::Postgres` either way.
fn store_err(e: Error) -> Error {
    match e {
        Error::Runtime(alpr_runtime::Error::Postgres(m)) => Error::Postgres(m),
        e => e,
    }
}

/// Connect (from a thread that is not running async tasks); see
/// [`alpr_runtime::pgpool::connect`].
pub fn connect(config: &postgres::Config, tls: &Connector) -> Result<Client, Error> {
    alpr_runtime::pgpool::connect(config, tls).map_err(|e| store_err(e.into()))
}

/// The broker's pool of connections to its PostgreSQL database.
#[derive(Debug)]
pub struct Pg(alpr_runtime::pgpool::Pool);

impl Pg {
    /// Run `f` on one of the pool's connections and wait for its result.
    pub(super) fn call<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Client) -> Result<R, Error> + Send + 'static,
    ) -> Result<R, Error> {
        self.0
            .call(|c: &mut alpr_runtime::pgpool::Conn| f(c))
            .map_err(store_err)
    }
}

/// Connect to the database of `url`, create the schema if it is not there, and start the
/// pool's workers. Fails (with the server's reason) when the database cannot be reached.
pub fn open(url: &str, ca: Option<&std::path::Path>) -> Result<Pg, Error> {
    let pool = alpr_runtime::pgpool::Pool::open(url, ca, WORKERS, "broker")
        .map_err(|e| store_err(e.into()))?;
    let pg = Pg(pool);
    pg.call(|c| {
        let mut tx = c.transaction()?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&SCHEMA_LOCK])?;
        tx.batch_execute(SCHEMA)?;
        tx.commit()?;
        Ok(())
    })?;
    Ok(pg)
}

fn u(n: i64) -> u64 {
    n.max(0) as u64
}

/// Every stored registry leaf as `(index, leaf)`, in index order.
pub fn registry_leaves(pg: &Pg) -> Result<Vec<(u64, Vec<u8>)>, Error> {
    registry_leaves_from(pg, 0)
}

/// The stored registry leaves from index `start` on, in index order.
pub fn registry_leaves_from(pg: &Pg, start: u64) -> Result<Vec<(u64, Vec<u8>)>, Error> {
    pg.call(move |c| {
        Ok(c.query_typed(
            "SELECT idx, leaf FROM registry WHERE idx >= $1 ORDER BY idx",
            &[(&(start as i64), postgres::types::Type::INT8)],
        )?
        .iter()
        .map(|r| (u(r.get(0)), r.get(1)))
        .collect())
    })
}

/// Append leaf `index` and the head over `index + 1` leaves in one transaction; `false`
/// (nothing stored) when another replica stored leaf `index` first.
pub fn append_registry_leaf(pg: &Pg, index: u64, leaf: &[u8], head: &[u8]) -> Result<bool, Error> {
    let (leaf, head) = (leaf.to_vec(), head.to_vec());
    pg.call(move |c| {
        let mut tx = c.transaction()?;
        let stored = tx.execute(
            "INSERT INTO registry (idx, leaf) VALUES ($1, $2) ON CONFLICT (idx) DO NOTHING",
            &[&(index as i64), &leaf],
        )?;
        if stored == 0 {
            return Ok(false);
        }
        tx.execute(
            "INSERT INTO tree_heads (size, sth) VALUES ($1, $2)",
            &[&((index + 1) as i64), &head],
        )?;
        tx.commit()?;
        Ok(true)
    })
}

/// The encoded signed tree head of the largest size stored, if any.
pub fn latest_tree_head(pg: &Pg) -> Result<Option<Vec<u8>>, Error> {
    pg.call(|c| {
        Ok(
            c.query_opt("SELECT sth FROM tree_heads ORDER BY size DESC LIMIT 1", &[])?
                .map(|r| r.get(0)),
        )
    })
}

/// The encoded signed tree head of one size, if stored.
pub fn tree_head_of_size(pg: &Pg, size: u64) -> Result<Option<Vec<u8>>, Error> {
    pg.call(move |c| {
        Ok(c.query_opt(
            "SELECT sth FROM tree_heads WHERE size = $1",
            &[&(size as i64)],
        )?
        .map(|r| r.get(0)))
    })
}

/// Store (or replace) the encoded signed tree head of one size.
pub fn put_tree_head(pg: &Pg, size: u64, head: &[u8]) -> Result<(), Error> {
    let head = head.to_vec();
    pg.call(move |c| {
        c.execute(
            "INSERT INTO tree_heads (size, sth) VALUES ($1, $2) ON CONFLICT (size) DO UPDATE SET sth = EXCLUDED.sth",
            &[&(size as i64), &head],
        )?;
        Ok(())
    })
}

fn stored_anchor(r: &postgres::Row) -> StoredAnchor {
    let proof: Vec<u8> = r.get(4);
    StoredAnchor {
        size: u(r.get(0)),
        root: r.get(1),
        anchor: r.get(2),
        from_size: u(r.get(3)),
        consistency: proof.chunks(32).map(<[u8]>::to_vec).collect(),
    }
}

/// The newest anchor of `ori`'s audit log.
pub fn latest_audit_anchor(pg: &Pg, ori: &str) -> Result<Option<StoredAnchor>, Error> {
    let ori = ori.to_owned();
    pg.call(move |c| {
        Ok(c.query_opt(
            "SELECT size, root, anchor, from_size, consistency FROM audit_anchors WHERE ori = $1 ORDER BY size DESC LIMIT 1",
            &[&ori],
        )?
        .as_ref()
        .map(stored_anchor))
    })
}

/// Keep an accepted anchor.
pub fn put_audit_anchor(
    pg: &Pg,
    a: &StoredAnchor,
    ori: &str,
    anchored_at: i64,
) -> Result<(), Error> {
    let (a, ori) = (a.clone(), ori.to_owned());
    pg.call(move |c| {
        c.execute(
            "INSERT INTO audit_anchors (ori, size, root, anchored_at, anchor, from_size, consistency) VALUES ($1, $2, $3, $4, $5, $6, $7)",
            &[
                &ori,
                &(a.size as i64),
                &a.root,
                &anchored_at,
                &a.anchor,
                &(a.from_size as i64),
                &a.consistency.concat(),
            ],
        )?;
        Ok(())
    })
}

/// `ori`'s anchors larger than `after`, oldest first, at most `limit`.
pub fn audit_anchor_chain(
    pg: &Pg,
    ori: &str,
    after: u64,
    limit: u64,
) -> Result<Vec<StoredAnchor>, Error> {
    let ori = ori.to_owned();
    pg.call(move |c| {
        Ok(c.query(
            "SELECT size, root, anchor, from_size, consistency FROM audit_anchors WHERE ori = $1 AND size > $2 ORDER BY size LIMIT $3",
            &[&ori, &(after as i64), &(limit as i64)],
        )?
        .iter()
        .map(stored_anchor)
        .collect())
    })
}

/// Keep a regulator's cosignature of `ori`'s anchor of `size`.
pub fn put_audit_cosignature(
    pg: &Pg,
    ori: &str,
    size: u64,
    cosigner: &str,
    cosig: &[u8],
) -> Result<(), Error> {
    let (ori, cosigner, cosig) = (ori.to_owned(), cosigner.to_owned(), cosig.to_vec());
    pg.call(move |c| {
        c.execute(
            "INSERT INTO audit_cosignatures (ori, size, cosigner, cosignature) VALUES ($1, $2, $3, $4)
             ON CONFLICT (ori, size, cosigner) DO UPDATE SET cosignature = EXCLUDED.cosignature",
            &[&ori, &(size as i64), &cosigner, &cosig],
        )?;
        Ok(())
    })
}

/// The cosignatures kept for `ori`'s anchor of `size`.
pub fn audit_cosignatures(pg: &Pg, ori: &str, size: u64) -> Result<Vec<Vec<u8>>, Error> {
    let ori = ori.to_owned();
    pg.call(move |c| {
        Ok(c.query(
            "SELECT cosignature FROM audit_cosignatures WHERE ori = $1 AND size = $2 ORDER BY cosigner",
            &[&ori, &(size as i64)],
        )?
        .iter()
        .map(|r| r.get(0))
        .collect())
    })
}

/// Keep a head refused as a fork, with why.
pub fn put_audit_fork(
    pg: &Pg,
    ori: &str,
    at: i64,
    offered: &[u8],
    detail: &str,
) -> Result<(), Error> {
    let (ori, offered, detail) = (ori.to_owned(), offered.to_vec(), detail.to_owned());
    pg.call(move |c| {
        c.execute(
            "INSERT INTO audit_forks (ori, at, offered, detail) VALUES ($1, $2, $3, $4)",
            &[&ori, &at, &offered, &detail],
        )?;
        Ok(())
    })
}

/// Heads refused as forks, oldest first.
pub fn audit_forks(pg: &Pg) -> Result<Vec<AuditFork>, Error> {
    pg.call(|c| {
        Ok(c.query(
            "SELECT ori, at, offered, detail FROM audit_forks ORDER BY seq",
            &[],
        )?
        .iter()
        .map(|r| AuditFork {
            ori: r.get(0),
            at: r.get(1),
            offered: r.get(2),
            detail: r.get(3),
        })
        .collect())
    })
}

/// Run `f` inside a transaction of `c` and commit it.
pub(super) fn in_transaction<R>(
    c: &mut Client,
    f: impl FnOnce(&mut postgres::Transaction<'_>) -> Result<R, Error>,
) -> Result<R, Error> {
    let mut tx = c.transaction()?;
    let r = f(&mut tx)?;
    tx.commit()?;
    Ok(r)
}
