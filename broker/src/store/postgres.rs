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
//! The client is the synchronous `postgres` crate (rust-postgres over tokio-postgres). The
//! broker calls its store from async tasks, where that client cannot block, so a small pool
//! of worker threads owns the connections and runs each call ([`Pg::call`]); a worker whose
//! connection broke reconnects before its next call.

use std::sync::{Arc, Mutex, mpsc};

use postgres::{Client, NoTls};
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::Error;
use crate::store::{AuditFork, StoredAnchor};

mod routing_log;

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
"#;

impl From<postgres::Error> for Error {
    fn from(e: postgres::Error) -> Self {
        // The server's own message (with its detail) where there is one.
        match e.as_db_error() {
            Some(d) => Self::Postgres(match d.detail() {
                Some(detail) => format!("{}: {detail}", d.message()),
                None => d.message().to_owned(),
            }),
            None => Self::Postgres(e.to_string()),
        }
    }
}

type Job = Box<dyn FnOnce(Result<&mut Client, Error>) + Send>;

/// A pool of connections to one PostgreSQL database, each owned by a worker thread.
#[derive(Debug)]
pub struct Pg {
    jobs: mpsc::Sender<Job>,
}

/// Parse a connection string (libpq `key=value` form or a `postgresql://` URL), naming
/// what is wrong with it.
pub(super) fn parse(url: &str) -> Result<postgres::Config, Error> {
    url.parse::<postgres::Config>()
        .map_err(|e| Error::Usage(format!("postgres connection string: {e}")))
}

/// How connections are made: in the clear, or over TLS with the server verified.
#[derive(Clone)]
pub(super) enum Connector {
    /// Not encrypted.
    Plain,
    /// TLS (rustls, ring), the server's certificate and host name verified.
    Tls(MakeRustlsConnect),
}

/// The connector for a server whose certificate `ca` (a PEM file) issued; plain without.
pub(super) fn connector(ca: Option<&std::path::Path>) -> Result<Connector, Error> {
    let Some(ca) = ca else {
        return Ok(Connector::Plain);
    };
    let mut roots = rustls::RootCertStore::empty();
    let certs = alpr_pki::read_cert_chain(ca)?;
    if certs.is_empty() {
        return Err(Error::Usage(format!(
            "postgres_ca {}: no certificate in it",
            ca.display()
        )));
    }
    for c in certs {
        roots
            .add(c)
            .map_err(|e| Error::Usage(format!("postgres_ca {}: {e}", ca.display())))?;
    }
    let cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| Error::Postgres(format!("TLS: {e}")))?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(Connector::Tls(MakeRustlsConnect::new(cfg)))
}

/// Connect (from a thread that is not running async tasks). With TLS the connection is
/// encrypted or not made, whatever the connection string's `sslmode` says.
pub(super) fn connect(config: &postgres::Config, tls: &Connector) -> Result<Client, Error> {
    let made = match tls {
        Connector::Plain => config.connect(NoTls),
        Connector::Tls(t) => {
            let mut c = config.clone();
            c.ssl_mode(postgres::config::SslMode::Require);
            c.connect(t.clone())
        }
    };
    made.map_err(|e| Error::Postgres(format!("cannot connect: {}", one_line(&e))))
}

/// An error and its causes on one line.
fn one_line(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let text = c.to_string();
        if !s.contains(&text) {
            s.push_str(": ");
            s.push_str(&text);
        }
        cause = c.source();
    }
    s.replace('\n', " ")
}

impl Pg {
    /// Connect to the database of `url`, create the schema if it is not there, and start
    /// the workers. Fails (with the server's reason) when the database cannot be reached.
    pub fn open(url: &str, ca: Option<&std::path::Path>) -> Result<Self, Error> {
        let config = parse(url)?;
        let tls = connector(ca)?;
        let (jobs, rx) = mpsc::channel::<Job>();
        let rx = Arc::new(Mutex::new(rx));
        let (ready_tx, ready_rx) = mpsc::channel();
        for i in 0..WORKERS {
            let rx = rx.clone();
            let config = config.clone();
            let tls = tls.clone();
            let ready = ready_tx.clone();
            std::thread::Builder::new()
                .name(format!("postgres-{i}"))
                .spawn(move || worker(&config, &tls, &rx, &ready))
                .map_err(|e| Error::Postgres(format!("cannot start a worker: {e}")))?;
        }
        drop(ready_tx);
        for _ in 0..WORKERS {
            ready_rx
                .recv()
                .map_err(|_| Error::Postgres("a worker stopped while connecting".into()))??;
        }
        let pg = Self { jobs };
        pg.call(|c| {
            let mut tx = c.transaction()?;
            tx.execute("SELECT pg_advisory_xact_lock($1)", &[&SCHEMA_LOCK])?;
            tx.batch_execute(SCHEMA)?;
            tx.commit()?;
            Ok(())
        })?;
        Ok(pg)
    }

    /// Run `f` on one of the pool's connections and wait for its result.
    pub(super) fn call<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Client) -> Result<R, Error> + Send + 'static,
    ) -> Result<R, Error> {
        let (tx, rx) = mpsc::sync_channel(1);
        self.jobs
            .send(Box::new(move |c| {
                let _ = tx.send(c.and_then(f));
            }))
            .map_err(|_| Error::Postgres("the connection pool stopped".into()))?;
        rx.recv()
            .map_err(|_| Error::Postgres("a connection worker stopped".into()))?
    }
}

fn worker(
    config: &postgres::Config,
    tls: &Connector,
    rx: &Mutex<mpsc::Receiver<Job>>,
    ready: &mpsc::Sender<Result<(), Error>>,
) {
    let mut client = match connect(config, tls) {
        Ok(c) => {
            let _ = ready.send(Ok(()));
            Some(c)
        }
        Err(e) => {
            let _ = ready.send(Err(e));
            return;
        }
    };
    loop {
        let job = {
            let Ok(rx) = rx.lock() else { return };
            match rx.recv() {
                Ok(j) => j,
                Err(_) => return,
            }
        };
        if client.as_ref().is_none_or(Client::is_closed) {
            client = match connect(config, tls) {
                Ok(c) => Some(c),
                Err(e) => {
                    tracing::error!(error = %e, "ALERT: broker database unreachable");
                    None
                }
            };
        }
        match client.as_mut() {
            Some(c) => job(Ok(c)),
            None => job(Err(Error::Postgres("database unreachable".into()))),
        }
    }
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
