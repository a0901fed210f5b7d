//! The broker's persistence seam. Everything the broker keeps on disk goes through the
//! functions and types here, and nothing else in the crate names a database type:
//!
//! - the **routing log**: one [`LogEntry`] per routing decision, registration, lifecycle
//!   action and undecodable request, appended in a transaction ([`log`]) or through the
//!   group-commit [`LogWriter`], read back in order ([`read_log`]) and counted for
//!   regulators ([`routing_stats`]);
//!   The routing log is also an RFC 6962 tree (leaf `seq - 1`), whose signed heads the
//!   broker keeps with the regulators' cosignatures ([`routing_tree_head`],
//!   [`routing_consistency`], [`put_routing_head`], [`latest_routing_head`],
//!   [`routing_head_of_size`], [`put_routing_cosignature`], [`routing_cosignatures`]);
//! - the **agencies** seen at registration ([`put_agency`], [`agency_jurisdiction`]);
//! - the **registry log**: the agreement registry's leaves and the signed tree heads over
//!   them, stored as opaque encoded bytes ([`registry_leaves`], [`append_registry_leaf`],
//!   [`latest_tree_head`], [`tree_head_of_size`], [`put_tree_head`]); the Merkle tree and
//!   the verification of every leaf stay in [`crate::registry`];
//! - the **audit anchors**: each node's accepted audit tree heads and the ones refused as
//!   forks ([`latest_audit_anchor`], [`put_audit_anchor`], [`put_audit_fork`],
//!   [`audit_forks`]); their verification is [`crate::anchors`]';
//! - the **replay rebuild**: the routing decisions logged since a time, which a restarting
//!   broker feeds its replay memory ([`routed_ids_since`]);
//! - the **regulator page's sign-in codes**: each enrolled regulator's TOTP secret, the
//!   last code step spent, the failed attempts that lock sign-in and the sign-in tokens
//!   spent ([`enroll_regulator_code`], [`regulator_code`], [`confirm_regulator_code`],
//!   [`use_regulator_step`], [`put_regulator_failure`], [`regulator_failure_times`],
//!   [`spend_signin_token`]). They are in the clear: the second factor guards a stolen
//!   regulator key, not a stolen database.
//!
//! Two backends implement every operation: SQLite (`store/sqlite.rs`, one file `broker.db`
//! opened through [`alpr_runtime::sqlite`]), the default for one broker, and PostgreSQL
//! (`store/postgres.rs`), shared by any number of broker replicas ([`Location`]). All SQL
//! lives in those two modules; the hash chain and its verification are the same for both
//! (`store/chain.rs`), as is the group-commit writer (`store/writer.rs`). The handle is
//! [`Db`]; it says whether other replicas share it ([`Db::is_shared`]), and then the broker
//! catches its registry up before deciding and the writer claims each route it forwards
//! ([`LogWriter::append_claimed`]). The
//! database holds no reads and no answers.

use std::path::PathBuf;

use serde::Serialize;

use crate::Error;
use crate::vocabulary::{Decision, Event};

mod chain;
mod postgres;
mod sqlite;
mod writer;

#[cfg(test)]
mod tests;

pub use postgres::Pg;
pub use sqlite::DbError;
pub use writer::{Claim, LogWriter, mark_replays, replay_detail};

/// Where a broker keeps its store.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Location {
    /// One SQLite file, for a broker of its own.
    Sqlite(PathBuf),
    /// A PostgreSQL database, shared by broker replicas.
    Postgres {
        /// The connection string.
        url: String,
        /// PEM file of the CA that issued the server's certificate: connect over TLS,
        /// verifying the server. `None`: not encrypted.
        ca: Option<PathBuf>,
    },
}

impl Location {
    /// The PostgreSQL database of `url`, not encrypted.
    pub fn postgres(url: impl Into<String>) -> Self {
        Self::Postgres {
            url: url.into(),
            ca: None,
        }
    }
}

impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Sqlite(p) => write!(f, "SQLite file {}", p.display()),
            Self::Postgres { url, ca } => match postgres::parse(url) {
                Ok(c) => write!(
                    f,
                    "{} as {}, {}",
                    alpr_runtime::pgpool::describe(&c),
                    c.get_user().unwrap_or("(default)"),
                    match ca {
                        Some(ca) => format!("over TLS (server verified against {})", ca.display()),
                        None => "NOT encrypted (no postgres_ca)".into(),
                    }
                ),
                Err(_) => write!(f, "PostgreSQL (connection string does not parse)"),
            },
        }
    }
}

enum Backend {
    Sqlite(rusqlite::Connection),
    Postgres(Pg),
}

/// An open broker store.
pub struct Db {
    backend: Backend,
}

impl std::fmt::Debug for Db {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self.backend {
            Backend::Sqlite(_) => "Db(SQLite)",
            Backend::Postgres(_) => "Db(PostgreSQL)",
        })
    }
}

impl Db {
    /// Open (creating if needed) the SQLite database at `path`; the same as [`open`].
    pub fn open(path: &std::path::Path) -> Result<Self, Error> {
        Ok(Self {
            backend: Backend::Sqlite(sqlite::open_conn(path)?),
        })
    }

    /// Open the store at `location`, creating its schema if needed.
    pub fn open_at(location: &Location) -> Result<Self, Error> {
        match location {
            Location::Sqlite(p) => Self::open(p),
            Location::Postgres { url, ca } => Ok(Self {
                backend: Backend::Postgres(postgres::open(url, ca.as_deref())?),
            }),
        }
    }

    /// True when other broker replicas may write to this store too (PostgreSQL).
    pub fn is_shared(&self) -> bool {
        matches!(self.backend, Backend::Postgres(_))
    }

    /// The SQLite connection underneath, for tests and tools that inspect the file (or
    /// tamper with it, as an attacker would); `None` on PostgreSQL. The broker itself goes
    /// through the store's functions.
    pub fn connection(&self) -> Option<&rusqlite::Connection> {
        match &self.backend {
            Backend::Sqlite(c) => Some(c),
            Backend::Postgres(_) => None,
        }
    }
}

/// Open (creating if needed) the SQLite broker database.
pub fn open(path: &std::path::Path) -> Result<Db, Error> {
    Db::open(path)
}

impl LogWriter {
    /// Open the store at `location` for writing and start the writer thread.
    pub fn open_at(location: &Location) -> Result<Self, Error> {
        match location {
            Location::Sqlite(p) => Self::open(p),
            Location::Postgres { url, ca } => {
                // The schema first (and a clear error now if the database is unreachable).
                drop(postgres::open(url, ca.as_deref())?);
                Self::start(postgres::group_writer_for(
                    postgres::parse(url)?,
                    postgres::connector(ca.as_deref())?,
                ))
            }
        }
    }

    /// Open the SQLite database at `path` for writing and start the writer thread.
    pub fn open(path: &std::path::Path) -> Result<Self, Error> {
        Self::start(sqlite::group_writer(path)?)
    }
}

/// The same operation on whichever backend `db` is.
macro_rules! on {
    ($db:expr, $f:ident ( $($a:expr),* )) => {
        match &$db.backend {
            Backend::Sqlite(c) => sqlite::$f(c $(, $a)*),
            Backend::Postgres(p) => postgres::$f(p $(, $a)*),
        }
    };
    (mut $db:expr, $f:ident ( $($a:expr),* )) => {
        match &mut $db.backend {
            Backend::Sqlite(c) => sqlite::$f(c $(, $a)*),
            Backend::Postgres(p) => postgres::$f(p $(, $a)*),
        }
    };
}

/// Append log rows in one transaction.
pub fn log(db: &mut Db, entries: &[LogEntry]) -> Result<(), Error> {
    on!(mut db, log(entries))
}

/// Read the log in order.
pub fn read_log(db: &Db) -> Result<Vec<LogEntry>, Error> {
    on!(db, read_log())
}

/// Verify the routing log's chain: no row missing, each row's previous hash its
/// predecessor's hash, each hash recomputed over the row, every signed head kept matched.
/// Errors name the first bad row.
pub fn verify_log(db: &Db) -> Result<ChainReport, Error> {
    on!(db, verify_log())
}

/// The routing log's size and tree root, read in one snapshot.
pub fn routing_tree_head(db: &Db) -> Result<(u64, alpr_proto::merkle::Hash), Error> {
    on!(db, routing_tree_head())
}

/// Consistency proof between the routing log's trees of `old` and `new` rows.
pub fn routing_consistency(
    db: &Db,
    old: u64,
    new: u64,
) -> Result<Vec<alpr_proto::merkle::Hash>, Error> {
    on!(db, routing_consistency(old, new))
}

/// The newest signed routing-log head kept, as `(size, encoded Signed)`.
pub fn latest_routing_head(db: &Db) -> Result<Option<(u64, Vec<u8>)>, Error> {
    on!(db, latest_routing_head())
}

/// Keep a signed routing-log head (replacing one of the same size: a fresher signature).
pub fn put_routing_head(db: &Db, size: u64, head: &[u8]) -> Result<(), Error> {
    on!(db, put_routing_head(size, head))
}

/// The signed routing-log head kept for `size`.
pub fn routing_head_of_size(db: &Db, size: u64) -> Result<Option<Vec<u8>>, Error> {
    on!(db, routing_head_of_size(size))
}

/// Keep a regulator's cosignature of the routing-log head of `size`.
pub fn put_routing_cosignature(
    db: &Db,
    size: u64,
    cosigner: &str,
    cosig: &[u8],
) -> Result<(), Error> {
    on!(db, put_routing_cosignature(size, cosigner, cosig))
}

/// The cosignatures kept for the routing-log head of `size` (encoded `Signed`s).
pub fn routing_cosignatures(db: &Db, size: u64) -> Result<Vec<Vec<u8>>, Error> {
    on!(db, routing_cosignatures(size))
}

/// Refusal counts by (reason, target) and the number of forwarded queries.
pub fn routing_stats(db: &Db) -> Result<(RefusalCounts, u64), Error> {
    on!(db, routing_stats())
}

/// The routing log week by week, oldest first: at most the newest `weeks` weeks.
pub fn routing_weeks(db: &Db, weeks: usize) -> Result<Vec<RoutingWeek>, Error> {
    on!(db, routing_weeks(weeks))
}

/// A regulator's sign-in code for the regulator page.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RegulatorCode {
    /// Who: `name@JURISDICTION` of the regulator's certificate.
    pub regulator: String,
    /// The TOTP secret: empty until the regulator sets it up (and in listings).
    pub secret: Vec<u8>,
    /// When the broker's operator enrolled it, Unix seconds.
    pub enrolled_at: i64,
    /// Which enrollment: each `--replace` is the next one, so a setup page of an earlier
    /// one cannot set up the new one.
    pub generation: i64,
    /// When the regulator set it up (their first code); `None` until then.
    pub confirmed_at: Option<i64>,
}

/// Enroll `regulator` for a sign-in code (to be set up at their first sign-in): `false`
/// (nothing changed) when enrolled already and `replace` is not set. A replacement must be
/// set up again.
pub fn enroll_regulator_code(
    db: &Db,
    regulator: &str,
    now: i64,
    replace: bool,
) -> Result<bool, Error> {
    on!(db, enroll_regulator_code(regulator, now, replace))
}

/// `regulator`'s enrolled sign-in code, if any.
pub fn regulator_code(db: &Db, regulator: &str) -> Result<Option<RegulatorCode>, Error> {
    on!(db, regulator_code(regulator))
}

/// Every regulator with an enrolled code (secrets left out).
pub fn regulator_codes(db: &Db) -> Result<Vec<RegulatorCode>, Error> {
    on!(db, regulator_codes())
}

/// Remove `regulator`'s sign-in code: `false` when none was enrolled.
pub fn remove_regulator_code(db: &Db, regulator: &str) -> Result<bool, Error> {
    on!(db, remove_regulator_code(regulator))
}

/// Set up `regulator`'s code with `secret`, spending its first code's `step`: only while
/// enrollment `generation` is not set up (`false` when replaced, removed or set up
/// meanwhile).
pub fn confirm_regulator_code(
    db: &Db,
    regulator: &str,
    generation: i64,
    secret: &[u8],
    step: u64,
    now: i64,
) -> Result<bool, Error> {
    on!(
        db,
        confirm_regulator_code(regulator, generation, secret, step, now)
    )
}

/// Spend code step `step` of `regulator`'s set-up code: `false` when that step or a later
/// one was spent already (a code is good once, at any replica), or none is set up.
pub fn use_regulator_step(db: &Db, regulator: &str, step: u64) -> Result<bool, Error> {
    on!(db, use_regulator_step(regulator, step))
}

/// Record a failed sign-in attempt of `regulator`.
pub fn put_regulator_failure(db: &Db, regulator: &str, at: i64) -> Result<(), Error> {
    on!(db, put_regulator_failure(regulator, at))
}

/// How many failed sign-in attempts `regulator` made at or after `since`.
pub fn regulator_failures_since(db: &Db, regulator: &str, since: i64) -> Result<u32, Error> {
    on!(db, regulator_failures_since(regulator, since))
}

/// The times of `regulator`'s newest `limit` failed sign-in attempts, newest first.
pub fn regulator_failure_times(db: &Db, regulator: &str, limit: u32) -> Result<Vec<i64>, Error> {
    on!(db, regulator_failure_times(regulator, limit))
}

/// Forget `regulator`'s failed sign-in attempts.
pub fn clear_regulator_failures(db: &Db, regulator: &str) -> Result<(), Error> {
    on!(db, clear_regulator_failures(regulator))
}

/// Spend a regulator-page sign-in token by its digest, remembered until `until`: `false`
/// when it was spent already (at any replica).
pub fn spend_signin_token(db: &Db, digest: &[u8], until: i64, now: i64) -> Result<bool, Error> {
    on!(db, spend_signin_token(digest, until, now))
}

/// Remember an agency's verified claims.
pub fn put_agency(db: &Db, a: &alpr_pki::AgencyClaims) -> Result<(), Error> {
    on!(db, put_agency(a))
}

/// Every agency known from a registration, as `(ORI, jurisdiction)`.
pub fn agencies(db: &Db) -> Result<Vec<(String, String)>, Error> {
    on!(db, agencies())
}

/// An agency's jurisdiction, if known from a registration.
pub fn agency_jurisdiction(db: &Db, ori: &str) -> Result<Option<String>, Error> {
    on!(db, agency_jurisdiction(ori))
}

/// `(query id, target, logged at)` of the routes decided at or after `since`: what a
/// starting broker feeds its replay memory (on PostgreSQL, every replica's claims).
pub fn routed_ids_since(db: &Db, since: i64) -> Result<Vec<(Vec<u8>, String, i64)>, Error> {
    on!(db, routed_ids_since(since))
}

/// Claim `query_id` for each of `targets` on its own (the writer claims routes with their
/// decisions, [`LogWriter::append_claimed`]): the targets another broker replica already
/// routed it to. A store of one broker's own (SQLite) has no other replica: its replay
/// memory decides alone, and this returns none.
pub fn claim_routes(
    db: &Db,
    query_id: &[u8],
    targets: &[String],
    now: i64,
) -> Result<Vec<String>, Error> {
    match &db.backend {
        Backend::Sqlite(_) => Ok(Vec::new()),
        Backend::Postgres(p) => postgres::claim_routes(p, query_id, targets, now),
    }
}

/// Every stored registry leaf as `(index, leaf)`, in index order. Indexes are as stored:
/// a gap is the caller's to detect.
pub fn registry_leaves(db: &Db) -> Result<Vec<(u64, Vec<u8>)>, Error> {
    on!(db, registry_leaves())
}

/// The stored registry leaves from index `start` on, in index order.
pub fn registry_leaves_from(db: &Db, start: u64) -> Result<Vec<(u64, Vec<u8>)>, Error> {
    on!(db, registry_leaves_from(start))
}

/// Durably append leaf `index` together with the encoded signed tree head over the
/// `index + 1` leaves, in one transaction: both are stored or neither is. `false` (and
/// nothing stored) when another replica stored a leaf `index` first: the log never forks.
pub fn append_registry_leaf(
    db: &mut Db,
    index: u64,
    leaf: &[u8],
    head: &[u8],
) -> Result<bool, Error> {
    on!(mut db, append_registry_leaf(index, leaf, head))
}

/// The encoded signed tree head of the largest size stored, if any.
pub fn latest_tree_head(db: &Db) -> Result<Option<Vec<u8>>, Error> {
    on!(db, latest_tree_head())
}

/// The encoded signed tree head of one size, if stored.
pub fn tree_head_of_size(db: &Db, size: u64) -> Result<Option<Vec<u8>>, Error> {
    on!(db, tree_head_of_size(size))
}

/// Store (or replace) the encoded signed tree head of one size (to add cosignatures).
pub fn put_tree_head(db: &Db, size: u64, head: &[u8]) -> Result<(), Error> {
    on!(db, put_tree_head(size, head))
}

/// The newest anchor of `ori`'s audit log.
pub fn latest_audit_anchor(db: &Db, ori: &str) -> Result<Option<StoredAnchor>, Error> {
    on!(db, latest_audit_anchor(ori))
}

/// Keep an accepted anchor, with the consistency proof (32-byte hashes) from the size
/// anchored before.
pub fn put_audit_anchor(
    db: &Db,
    a: &StoredAnchor,
    ori: &str,
    anchored_at: i64,
) -> Result<(), Error> {
    on!(db, put_audit_anchor(a, ori, anchored_at))
}

/// `ori`'s anchors larger than `after`, oldest first, at most `limit`.
pub fn audit_anchor_chain(
    db: &Db,
    ori: &str,
    after: u64,
    limit: u64,
) -> Result<Vec<StoredAnchor>, Error> {
    on!(db, audit_anchor_chain(ori, after, limit))
}

/// Keep a regulator's cosignature of `ori`'s anchor of `size`.
pub fn put_audit_cosignature(
    db: &Db,
    ori: &str,
    size: u64,
    cosigner: &str,
    cosig: &[u8],
) -> Result<(), Error> {
    on!(db, put_audit_cosignature(ori, size, cosigner, cosig))
}

/// The cosignatures kept for `ori`'s anchor of `size` (encoded `Signed`s).
pub fn audit_cosignatures(db: &Db, ori: &str, size: u64) -> Result<Vec<Vec<u8>>, Error> {
    on!(db, audit_cosignatures(ori, size))
}

/// Keep a head refused as a fork, with why.
pub fn put_audit_fork(
    db: &Db,
    ori: &str,
    at: i64,
    offered: &[u8],
    detail: &str,
) -> Result<(), Error> {
    on!(db, put_audit_fork(ori, at, offered, detail))
}

/// Heads refused as forks, oldest first.
pub fn audit_forks(db: &Db) -> Result<Vec<AuditFork>, Error> {
    on!(db, audit_forks())
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

/// One week of routing (weeks of 7 days from the Unix epoch): when it starts, the targets
/// forwarded to, and the refusals by reason.
pub type RoutingWeek = (i64, u64, Vec<(String, u64)>);

/// Rows of `(week number, decision, reason, count)` in week order, as weeks: at most the
/// newest `weeks`.
fn weeks_of(rows: Vec<(i64, String, String, u64)>, weeks: usize) -> Vec<RoutingWeek> {
    const WEEK: i64 = 7 * 86_400;
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
    out.split_off(skip)
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

/// An anchored audit tree head as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredAnchor {
    /// Entries the head covers.
    pub size: u64,
    /// The head's root.
    pub root: Vec<u8>,
    /// The encoded `AuditAnchor` (the node's signed head and the broker's receipt).
    pub anchor: Vec<u8>,
    /// The size anchored before it (0 for the first).
    pub from_size: u64,
    /// The node's consistency proof from `from_size` (32-byte hashes).
    pub consistency: Vec<Vec<u8>>,
}

/// An audit tree head refused as a fork, kept as evidence.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditFork {
    /// The agency whose node offered it.
    pub ori: String,
    /// When, Unix seconds.
    pub at: i64,
    /// The encoded `Signed` head offered.
    pub offered: Vec<u8>,
    /// Why it was refused.
    pub detail: String,
}

/// Refusals counted by (reason, target).
pub type RefusalCounts = Vec<(String, String, u64)>;
