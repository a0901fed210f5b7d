//! The node's persistence seam.
//!
//! Everything the node keeps — reads and their day partitions, agreements and its copy of
//! the registry log, accounts, switches, evidence holds, hot lists, and the audit log —
//! is reached through the functions and types re-exported here. SQLite ([`sqlite`]) keeps
//! all of it by default; for the largest agencies the reads can live in PostgreSQL instead
//! ([`postgres`]: native partitions by capture day, batched ingest, retention by dropping
//! whole days), behind the same functions. These two modules are the only ones that know
//! SQL.
//! Domain modules never see a database type other than [`Db`] and [`AuditDb`].

pub mod encryption;
pub mod postgres;
pub mod sqlite;

pub use postgres::PgReads;
pub use sqlite::agreements::{
    agreement_status, agreements, put_agreement, registered_agreements, registration,
    set_agreement_status, set_registered, signed_agreement,
};
pub use sqlite::audit::{AuditDb, AuditLog};
pub use sqlite::holds::held_reads;
pub use sqlite::reads::{
    MAX_RESULTS, Readers, compact_one_closed, count_reads, day_reads, insert_reads, lookup,
    partitions, purge_before,
};
pub use sqlite::{Db, DbError, SCHEMA_VERSION, encryption_marker, open, open_at, open_with};
pub use sqlite::{
    accounts, approvals, audit, console, holds, maintenance, registry, sealing, settings, shares,
};

/// Which plate a lookup is for: its characters and its issuing state, or any state.
#[derive(Clone, Copy, Debug)]
pub struct PlateKey<'a> {
    /// Normalized plate characters.
    pub plate: &'a str,
    /// An NCIC state code, or [`alpr_proto::input::ANY_STATE`] for every state (including
    /// reads whose state is unknown). A specific state never matches an unknown one: the
    /// same characters in two states are two different vehicles.
    pub state: &'a str,
}

impl PlateKey<'_> {
    /// Whether the key matches every issuing state.
    pub fn any_state(&self) -> bool {
        self.state == alpr_proto::input::ANY_STATE
    }
}

/// One searcher's account.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Account {
    /// User id (the certificate's user claim).
    pub user: String,
    /// investigator, supervisor or auditor.
    pub role: String,
    /// Who approved it.
    pub approved_by: Option<String>,
    /// When approved.
    pub approved_at: Option<i64>,
    /// Last training.
    pub trained_at: Option<i64>,
    /// When disabled.
    pub disabled_at: Option<i64>,
    /// Last search.
    pub last_active_at: Option<i64>,
}

/// One evidence hold as listed for operators.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HoldRow {
    /// Hold id.
    pub id: i64,
    /// Case number.
    pub case_number: String,
    /// Plate held.
    pub plate: String,
    /// Window start, Unix seconds.
    pub window_start: i64,
    /// Window end, Unix seconds.
    pub window_end: i64,
    /// When the hold expires.
    pub expires_at: i64,
    /// The supervisor who approved it.
    pub approved_by: String,
    /// Reads kept under it so far.
    pub kept_reads: i64,
}
