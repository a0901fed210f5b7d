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
//!   broker feeds its replay memory ([`routed_ids_since`]).
//!
//! Today the one backend is SQLite (`store/sqlite.rs`, one file `broker.db` opened through
//! [`alpr_runtime::sqlite`]); all SQL lives there. A PostgreSQL backend will implement the
//! same operations later. The handle is [`Db`] and its failures are [`DbError`], both
//! opaque outside the backend. The database holds no reads and no answers.

use serde::Serialize;

use crate::vocabulary::{Decision, Event};

mod sqlite;

#[cfg(test)]
mod tests;

pub use sqlite::{
    ChainReport, Db, DbError, LogWriter, RoutingWeek, agency_jurisdiction, append_registry_leaf,
    audit_anchor_chain, audit_cosignatures, audit_forks, latest_audit_anchor, latest_routing_head,
    latest_tree_head, log, open, put_agency, put_audit_anchor, put_audit_cosignature,
    put_audit_fork, put_routing_cosignature, put_routing_head, put_tree_head, read_log,
    registry_leaves, routed_ids_since, routing_consistency, routing_cosignatures,
    routing_head_of_size, routing_stats, routing_tree_head, routing_weeks, tree_head_of_size,
    verify_log,
};

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
