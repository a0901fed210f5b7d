//! The SQLite backend of the store: the one place the broker speaks SQLite's SQL or names a
//! `rusqlite` type. `broker.db` holds the agencies seen at registration, the routing log
//! ([`routing_log`]), the agreement registry's leaves and tree heads ([`registry_log`]) and
//! regulators' sign-in code secrets for the regulator page ([`regulator_codes`]).

use std::path::Path;

use rusqlite::Connection;

use crate::Error;

mod audit_anchors;
mod registry_log;
mod regulator_codes;
mod routing_log;

pub use audit_anchors::{
    audit_anchor_chain, audit_cosignatures, audit_forks, latest_audit_anchor, put_audit_anchor,
    put_audit_cosignature, put_audit_fork,
};
pub use registry_log::{
    append_registry_leaf, latest_tree_head, put_tree_head, registry_leaves, registry_leaves_from,
    tree_head_of_size,
};
pub use regulator_codes::{
    clear_regulator_failures, confirm_regulator_code, enroll_regulator_code, put_regulator_failure,
    regulator_code, regulator_codes, regulator_failure_times, regulator_failures_since,
    remove_regulator_code, spend_signin_token, use_regulator_step,
};
pub(super) use routing_log::group_writer;
pub use routing_log::{
    agencies, agency_jurisdiction, latest_routing_head, log, put_agency, put_routing_cosignature,
    put_routing_head, read_log, routed_ids_since, routing_consistency, routing_cosignatures,
    routing_head_of_size, routing_stats, routing_tree_head, routing_weeks, verify_log,
};

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
    rule_version TEXT,
    prev_hash TEXT,
    hash TEXT
);
"#;

/// Open (creating if needed) the broker database at `path`, its schema current.
pub(super) fn open_conn(path: &Path) -> Result<Connection, Error> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    }
    let conn = alpr_runtime::sqlite::open(path, std::time::Duration::from_secs(10))?;
    conn.execute_batch(SCHEMA)?;
    conn.execute_batch(audit_anchors::SCHEMA)?;
    conn.execute_batch(registry_log::SCHEMA)?;
    conn.execute_batch(regulator_codes::SCHEMA)?;
    routing_log::add_chain_columns(&conn)?;
    routing_log::add_tree(&conn)?;
    Ok(conn)
}

/// A database failure (opaque; SQLite's own message).
pub use alpr_runtime::sqlite::DbError;

impl From<rusqlite::Error> for Error {
    fn from(e: rusqlite::Error) -> Self {
        Self::Db(DbError::from(e))
    }
}
