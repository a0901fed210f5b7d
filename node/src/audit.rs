//! The node's hash-chained audit log.
//!
//! Every inbound and outbound query, answer and refusal, ingest, configuration, account
//! and agreement change, export and purge is an entry. Each entry holds the hash of the
//! previous one: `hash = SHA-256(prev_hash || "\n" || entry)` where `entry` is the stored
//! JSON text. The log is its own SQLite file (`audit.db`, WAL, `synchronous=FULL`).
//!
//! This module holds what an entry is and how the chain is computed; where entries are
//! kept is the store's ([`crate::store::AuditLog`], [`crate::store::AuditDb`]).
//!
//! [`crate::store::AuditLog`] is a group-commit writer: one thread owns the write connection; callers
//! hand it entries and block until the transaction holding them is durable, so concurrent
//! queries share one fsync instead of each paying for their own. Every
//! [`CHECKPOINT_EVERY`] entries (and at least once a minute while entries arrive) the node
//! signs a checkpoint of the chain head.

use alpr_proto::admission::QueryFacts;
use serde::{Deserialize, Serialize};

use crate::Error;

mod vocabulary;
pub use vocabulary::{Decision, Event};

/// Entries between signed checkpoints.
pub const CHECKPOINT_EVERY: i64 = 256;
/// Most seconds between checkpoints while entries arrive.
pub const CHECKPOINT_SECS: i64 = 60;
/// Payload type of a signed checkpoint.
pub const CHECKPOINT_TYPE: &str = "alpr.v1.AuditCheckpoint";

/// The bytes a checkpoint signature covers (domain-separated like every envelope).
pub fn checkpoint_message(size: i64, head_hash: &str, at: i64) -> Vec<u8> {
    alpr_proto::envelope::signing_input(
        CHECKPOINT_TYPE,
        format!("{size}\n{head_hash}\n{at}").as_bytes(),
    )
}

/// A certificate chain as stored beside a checkpoint (length-prefixed DER).
pub fn encode_chain(chain: &[alpr_pki::CertificateDer<'static>]) -> Vec<u8> {
    let mut out = Vec::new();
    for c in chain {
        out.extend_from_slice(&(c.len() as u32).to_be_bytes());
        out.extend_from_slice(c);
    }
    out
}

/// The chain [`encode_chain`] wrote, or `None` if the bytes are malformed.
pub fn decode_chain(mut b: &[u8]) -> Option<Vec<alpr_pki::CertificateDer<'static>>> {
    let mut out = Vec::new();
    while !b.is_empty() {
        let len = u32::from_be_bytes(b.get(..4)?.try_into().ok()?) as usize;
        out.push(alpr_pki::CertificateDer::from(b.get(4..4 + len)?.to_vec()));
        b = &b[4 + len..];
    }
    Some(out)
}

pub use alpr_proto::auditlog::{GENESIS, chain_hash};

/// What signs the audit log's checkpoints: the node's certificate, for its agency.
#[derive(Clone, Debug)]
pub struct HeadSigner {
    /// The node's signer.
    pub signer: std::sync::Arc<alpr_pki::Signer>,
    /// The node's agency.
    pub ori: String,
}

impl HeadSigner {
    /// Sign the tree head of `size` entries with root `root` and chain head `chain_head`
    /// (hex) at `at`.
    pub fn sign(
        &self,
        size: u64,
        root: &alpr_proto::merkle::Hash,
        chain_head: &str,
        at: i64,
    ) -> Result<alpr_proto::pb::Signed, Error> {
        let th = alpr_proto::pb::AuditTreeHead {
            ori: self.ori.clone(),
            size,
            root: root.to_vec(),
            chain_head: hex::decode(chain_head)
                .map_err(|e| Error::corrupt("audit chain head", e))?,
            timestamp: at,
        };
        alpr_proto::envelope::seal(&self.signer, alpr_proto::auditlog::AUDIT_TREE_HEAD, &th)
            .map_err(|e| Error::AuditUnavailable(format!("signing checkpoint: {e}")))
    }
}

/// One audit entry. Fields not relevant to an event are omitted.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AuditEntry {
    /// Unix seconds.
    pub at: i64,
    /// What the entry records.
    pub event: Event,
    /// What was decided.
    pub decision: Decision,
    /// Query id, hex.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query_id: Option<String>,
    /// Requesting agency ORI.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requester_ori: Option<String>,
    /// Requesting agency name, jurisdiction and kind.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requester_agency: Option<String>,
    /// Requesting person.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requester_user: Option<String>,
    /// The TLS peer that delivered the request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer: Option<String>,
    /// Plate searched.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plate: Option<String>,
    /// The plate's issuing state as the query named it (`ANY` for every state).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plate_state: Option<String>,
    /// Purpose code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub purpose: Option<String>,
    /// Case number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub case_number: Option<String>,
    /// Free-text reason.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Warrant reference.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warrant_ref: Option<String>,
    /// On-behalf-of agency.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_behalf_of: Option<String>,
    /// Window start, Unix seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window_start: Option<i64>,
    /// Window end, Unix seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window_end: Option<i64>,
    /// Target agency (outbound results) or targets (outbound queries).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// Refusal reason code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason_code: Option<String>,
    /// Detail text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// Agreement id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agreement_id: Option<String>,
    /// State rule version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule_version: Option<String>,
    /// Reads returned or ingested.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<u64>,
    /// Who decided (`broker` or an ORI) for outbound results.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decided_by: Option<String>,
    /// A sealed inbound query: the investigator's `Signed` query envelope as it came out
    /// of this node's box, encoded, hex. With it anyone holding the state root can check
    /// that the plate, case number and reason logged here are exactly what the
    /// investigator signed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sealed_query: Option<String>,
    /// The digest of the node's switches, accounts and agreement states after the change
    /// this entry records (see `Node::check_state`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state_digest: Option<String>,
    /// The audit entry this one is about (a hit's recorded outcome names the hit's entry).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refers_to: Option<i64>,
    /// What came of a hot-list hit (`arrest`, `citation`, ..., `no_stop`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<String>,
}

impl AuditEntry {
    /// An entry of `event` with `decision` at `at` (Unix seconds), every other field empty.
    pub fn new(at: i64, event: Event, decision: Decision) -> Self {
        Self {
            at,
            event,
            decision,
            query_id: None,
            requester_ori: None,
            requester_agency: None,
            requester_user: None,
            peer: None,
            plate: None,
            plate_state: None,
            purpose: None,
            case_number: None,
            reason: None,
            warrant_ref: None,
            on_behalf_of: None,
            window_start: None,
            window_end: None,
            target: None,
            reason_code: None,
            detail: None,
            agreement_id: None,
            rule_version: None,
            count: None,
            decided_by: None,
            sealed_query: None,
            state_digest: None,
            refers_to: None,
            outcome: None,
        }
    }
}

impl AuditEntry {
    /// An entry of `event` with `decision` at `now` that records a query's facts: who asked
    /// (investigator, or the endorsing node), and the query's plate, purpose, case, reason,
    /// window and targets.
    pub fn for_query(event: Event, decision: Decision, now: i64, facts: &QueryFacts) -> Self {
        let mut e = AuditEntry::new(now, event, decision);
        if let Some(inv) = &facts.investigator {
            e.requester_user = inv.user.clone();
            e.requester_ori = inv.ori().map(str::to_owned);
            e.requester_agency = inv
                .agency
                .as_ref()
                .map(|a| format!("{} ({}, {})", a.name, a.jurisdiction, a.kind));
        } else if let Some(end) = &facts.endorser {
            e.requester_ori = end.ori().map(str::to_owned);
            e.requester_agency = end
                .agency
                .as_ref()
                .map(|a| format!("{} ({}, {})", a.name, a.jurisdiction, a.kind));
        }
        if let Some(q) = &facts.query {
            e.query_id = Some(hex::encode(&q.query_id));
            e.plate = Some(q.plate.clone());
            e.plate_state = (!q.plate_state.is_empty()).then(|| q.plate_state.clone());
            e.purpose = Some(q.purpose_code.clone());
            e.case_number = Some(q.case_number.clone());
            e.reason = Some(q.reason.clone());
            e.warrant_ref = (!q.warrant_ref.is_empty()).then(|| q.warrant_ref.clone());
            e.on_behalf_of = (!q.on_behalf_of_ori.is_empty()).then(|| q.on_behalf_of_ori.clone());
            e.window_start = Some(q.window_start);
            e.window_end = Some(q.window_end);
            e.target = Some(q.targets.join(","));
        }
        e
    }
}

/// A stored entry with its chain fields.
#[derive(Clone, Debug, Serialize)]
pub struct StoredEntry {
    /// Sequence number, from 1.
    pub seq: i64,
    /// The entry.
    #[serde(flatten)]
    pub entry: AuditEntry,
    /// Hash of the previous entry.
    pub prev_hash: String,
    /// This entry's hash.
    pub hash: String,
}

/// SHA-256 of `b`.
pub fn sha256(b: &[u8]) -> [u8; 32] {
    let d = ring::digest::digest(&ring::digest::SHA256, b);
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

/// Which entries to read.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Filter {
    /// Event kind.
    pub event: Option<Event>,
    /// At or after (Unix seconds).
    pub since: Option<i64>,
    /// Before (Unix seconds).
    pub until: Option<i64>,
    /// Requesting agency.
    pub requester_ori: Option<String>,
    /// User.
    pub user: Option<String>,
    /// Purpose code.
    pub purpose: Option<String>,
}

impl std::fmt::Display for Filter {
    /// The filter as an operator would type it (`event=inbound_query since=… user=…`).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut parts = Vec::new();
        if let Some(v) = &self.event {
            parts.push(format!("event={v}"));
        }
        if let Some(v) = self.since {
            parts.push(format!("since={}", alpr_pki::fmt_time(v)));
        }
        if let Some(v) = self.until {
            parts.push(format!("until={}", alpr_pki::fmt_time(v)));
        }
        if let Some(v) = &self.requester_ori {
            parts.push(format!("requester={v}"));
        }
        if let Some(v) = &self.user {
            parts.push(format!("user={v}"));
        }
        if let Some(v) = &self.purpose {
            parts.push(format!("purpose={v}"));
        }
        if parts.is_empty() {
            f.write_str("none (every entry)")
        } else {
            f.write_str(&parts.join(" "))
        }
    }
}

impl Filter {
    /// Whether `e` passes the filter.
    pub fn matches(&self, e: &AuditEntry) -> bool {
        self.event.is_none_or(|v| e.event == v)
            && self.since.is_none_or(|t| e.at >= t)
            && self.until.is_none_or(|t| e.at < t)
            && self
                .requester_ori
                .as_ref()
                .is_none_or(|v| e.requester_ori.as_ref() == Some(v))
            && self
                .user
                .as_ref()
                .is_none_or(|v| e.requester_user.as_ref() == Some(v))
            && self
                .purpose
                .as_ref()
                .is_none_or(|v| e.purpose.as_ref() == Some(v))
    }
}

/// JSON lines.
pub fn to_jsonl(entries: &[StoredEntry]) -> Result<String, Error> {
    let mut out = String::new();
    for e in entries {
        out.push_str(&to_json_line(e)?);
        out.push('\n');
    }
    Ok(out)
}

/// One entry as a JSON line for people and exports: times (`at`, `window_start`,
/// `window_end`) in RFC 3339. The stored entry, which the hash chain covers, keeps Unix
/// seconds.
pub fn to_json_line(e: &StoredEntry) -> Result<String, Error> {
    let mut v = serde_json::to_value(e).map_err(|e| Error::corrupt("audit entry", e))?;
    if let Some(obj) = v.as_object_mut() {
        for key in ["at", "window_start", "window_end"] {
            if let Some(t) = obj.get(key).and_then(serde_json::Value::as_i64) {
                obj.insert(key.into(), alpr_pki::fmt_time(t).into());
            }
        }
    }
    serde_json::to_string(&v).map_err(|e| Error::corrupt("audit entry", e))
}

/// CSV with a fixed header.
pub fn to_csv(entries: &[StoredEntry]) -> String {
    const COLS: [&str; 21] = [
        "seq",
        "at",
        "event",
        "decision",
        "query_id",
        "requester_ori",
        "requester_agency",
        "requester_user",
        "peer",
        "plate",
        "plate_state",
        "purpose",
        "case_number",
        "reason",
        "warrant_ref",
        "target",
        "reason_code",
        "detail",
        "agreement_id",
        "count",
        "hash",
    ];
    let q = |s: &str| {
        if s.contains([',', '"', '\n', '\r']) {
            format!("\"{}\"", s.replace('"', "\"\""))
        } else {
            s.to_owned()
        }
    };
    let mut out = COLS.join(",");
    out.push('\n');
    for s in entries {
        let e = &s.entry;
        let o = |v: &Option<String>| q(v.as_deref().unwrap_or(""));
        let row = [
            s.seq.to_string(),
            alpr_pki::fmt_time(e.at),
            q(e.event.as_str()),
            q(e.decision.as_str()),
            o(&e.query_id),
            o(&e.requester_ori),
            o(&e.requester_agency),
            o(&e.requester_user),
            o(&e.peer),
            o(&e.plate),
            o(&e.plate_state),
            o(&e.purpose),
            o(&e.case_number),
            o(&e.reason),
            o(&e.warrant_ref),
            o(&e.target),
            o(&e.reason_code),
            o(&e.detail),
            o(&e.agreement_id),
            e.count.map(|c| c.to_string()).unwrap_or_default(),
            s.hash.clone(),
        ];
        out.push_str(&row.join(","));
        out.push('\n');
    }
    out
}

/// What `verify` found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifyReport {
    /// Entries checked.
    pub entries: u64,
    /// Signed checkpoints checked.
    pub checkpoints: u64,
    /// Anchors (heads the broker accepted) checked.
    pub anchors: u64,
}

/// Where and how an audit log fails to verify: the first bad entry or checkpoint.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Break {
    /// A sequence number is missing (an entry was deleted).
    #[error("entry {expected} is missing (next is {next})")]
    Missing {
        /// The sequence number expected.
        expected: i64,
        /// The one found instead.
        next: i64,
    },
    /// An entry's previous-hash is not its predecessor's hash (entries reordered or
    /// replaced).
    #[error("entry {0}: previous-hash link broken")]
    LinkBroken(i64),
    /// An entry's content does not hash to its stored hash (the entry was edited).
    #[error("entry {0}: content does not match its hash")]
    ContentChanged(i64),
    /// A signed checkpoint names a chain head the log no longer has.
    #[error(
        "checkpoint at entry {0}: the chain head differs from the signed one (entries rewritten or truncated)"
    )]
    HeadChanged(i64),
    /// A checkpoint's certificate chain does not decode.
    #[error("checkpoint at entry {0}: bad certificate chain")]
    BadChain(i64),
    /// A checkpoint's signature does not verify.
    #[error("checkpoint at entry {size}: {detail}")]
    BadSignature {
        /// The checkpoint's size.
        size: i64,
        /// Why.
        detail: String,
    },
    /// The entries do not verify on their own (checked before anchoring).
    #[error("the audit entries do not verify: {0}")]
    EntriesBroken(String),
    /// The stored Merkle tree does not match the entries (the `audit_tree` table was edited).
    #[error("the stored audit tree does not match the entries")]
    TreeDiffers,
    /// An anchored size is beyond the log's end: entries the broker anchored are gone.
    #[error(
        "{anchored} entries were anchored at the broker but the log has {entries} (entries deleted)"
    )]
    AnchorLost {
        /// The anchored size.
        anchored: i64,
        /// Entries in the log.
        entries: i64,
    },
    /// The log's first entries differ from the ones anchored.
    #[error("the log's first {0} entries are not the ones anchored at the broker (rewritten)")]
    AnchorDiffers(i64),
    /// A kept anchor does not verify.
    #[error("anchor at entry {size}: {detail}")]
    BadAnchor {
        /// The anchored size.
        size: i64,
        /// Why.
        detail: String,
    },
    /// A checkpoint is signed by someone else than this node.
    #[error("checkpoint at entry {size} signed by {signer}")]
    WrongSigner {
        /// The checkpoint's size.
        size: i64,
        /// Who signed it.
        signer: String,
    },
}

#[cfg(test)]
mod tests;
