//! A node's audit log as a verifiable log, checked by people who do not trust the node.
//!
//! Each node's audit log is a hash chain (`hash = SHA-256(prev_hash || "\n" || entry)`, see
//! [`chain_hash`]) and, over the same entries, an RFC 6962 tree whose leaf `i` is the raw
//! 32-byte chain hash of entry `i + 1` ([`leaf`]). The node signs checkpoints of that tree
//! ([`pb::AuditTreeHead`](crate::pb::AuditTreeHead)) and anchors them at the broker, which
//! accepts a head only if it extends the one anchored before for that agency and returns
//! a signed receipt ([`pb::AuditAnchor`](crate::pb::AuditAnchor)).
//!
//! What a third party (a regulator, a court, the other agency) checks here, with nothing
//! but the state's trust store:
//!
//! - [`verify_head`]: a tree head is signed by a node certificate of the agency it names;
//! - [`verify_anchor`]: an anchor is that, plus the broker's receipt of exactly that head;
//! - [`verify_proof`]: a [`ProofBundle`] (from `alpr-node audit prove`) shows that given
//!   entries, byte for byte, are in the anchored log;
//! - [`LogChecker`]: a whole exported log, read in order, is the one anchored: the same
//!   root at the anchored size, so no entry was rewritten (even re-signed with the node's
//!   key), none deleted up to the anchor, and no second log exists that also matches.

use alpr_pki::{Role, TrustStore};
use prost::Message;
use serde::{Deserialize, Serialize};

use crate::merkle::{self, Frontier, Hash};
use crate::pb::{AnchorReceipt, AuditAnchor, AuditTreeHead, RoutingTreeHead, Signed};
use crate::{Error, RefusalReason, envelope};

/// Payload type of a node's signed audit tree head.
pub const AUDIT_TREE_HEAD: &str = "alpr.v1.AuditTreeHead";
/// Payload type of the broker's signed anchor receipt.
pub const ANCHOR_RECEIPT: &str = "alpr.v1.AnchorReceipt";
/// Payload type of the broker's signed routing-log head.
pub const ROUTING_TREE_HEAD: &str = "alpr.v1.RoutingTreeHead";
/// Payload type of a regulator's cosignature of a routing-log head (a `Cosignature` whose
/// `tree_head` is an encoded `RoutingTreeHead`; its own type, so that it can never be taken
/// for a cosignature of a registry head).
pub const ROUTING_COSIGNATURE: &str = "alpr.v1.RoutingCosignature";
/// Payload type of a regulator's cosignature of a node's audit tree head (a
/// `Cosignature` whose `tree_head` is an encoded `AuditTreeHead`).
pub const AUDIT_COSIGNATURE: &str = "alpr.v1.AuditCosignature";
/// Format name of a [`ProofBundle`].
pub const PROOF_FORMAT: &str = "alpr-audit-proof/1";
/// Hash of the (empty) predecessor of the first entry.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";
/// Seconds a signed time may lie ahead of the verifier's clock.
const SKEW_SECS: i64 = 120;

/// The chain hash of an entry: SHA-256 of the previous hash (hex), a newline and the
/// stored entry text, hex.
pub fn chain_hash(prev: &str, entry_json: &str) -> String {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    ctx.update(prev.as_bytes());
    ctx.update(b"\n");
    ctx.update(entry_json.as_bytes());
    hex::encode(ctx.finish().as_ref())
}

/// The tree leaf of an entry: the RFC 6962 leaf hash of its raw 32-byte chain hash.
pub fn leaf(chain_hash_hex: &str) -> Result<Hash, Error> {
    let raw = hex::decode(chain_hash_hex)
        .ok()
        .and_then(|b| merkle::hash_from_slice(&b).ok())
        .ok_or_else(|| {
            bad(format!(
                "{chain_hash_hex:?} is not a 32-byte hex chain hash"
            ))
        })?;
    Ok(merkle::leaf_hash(&raw))
}

fn bad(detail: impl Into<String>) -> Error {
    Error::refused(RefusalReason::InvalidInput, detail)
}

fn fork(detail: impl Into<String>) -> Error {
    Error::refused(RefusalReason::AuditFork, detail)
}

/// A tree head whose signature checked out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifiedAuditHead {
    /// The agency whose log it is.
    pub ori: String,
    /// Entries.
    pub size: u64,
    /// Root.
    pub root: Hash,
    /// Chain hash of entry `size`.
    pub chain_head: Hash,
    /// When signed.
    pub timestamp: i64,
    /// Who signed (always a node certificate of `ori`).
    pub signer: String,
}

/// Verify a node's signed audit tree head: signed by a node certificate of `ori` valid when
/// the head was signed, not dated in the future, hashes of the right length.
pub fn verify_head(
    trust: &TrustStore,
    signed: &Signed,
    ori: &str,
) -> Result<VerifiedAuditHead, Error> {
    let th = AuditTreeHead::decode(signed.payload.as_slice())
        .map_err(|e| bad(format!("audit tree head does not decode: {e}")))?;
    if th.timestamp > alpr_pki::now_unix() + SKEW_SECS {
        return Err(bad(format!(
            "audit tree head of {} is dated in the future ({})",
            th.ori,
            alpr_pki::fmt_time(th.timestamp)
        )));
    }
    let (id, _) = envelope::open(trust, signed, AUDIT_TREE_HEAD, th.timestamp).map_err(|e| {
        Error::refused(
            e.reason(),
            format!(
                "audit tree head of {} (size {}): {}",
                th.ori,
                th.size,
                e.detail()
            ),
        )
    })?;
    if th.ori != ori {
        return Err(Error::refused(
            RefusalReason::ClaimMismatch,
            format!(
                "an audit tree head of {} where one of {ori} was expected",
                th.ori
            ),
        ));
    }
    if id.role != Role::Node || id.ori() != Some(ori) {
        return Err(Error::refused(
            RefusalReason::ClaimMismatch,
            format!(
                "the audit tree head of {ori} is signed by {}, not by a node of {ori}",
                id.describe()
            ),
        ));
    }
    if th.size == 0 {
        return Err(bad(format!(
            "an audit tree head of {ori} of an empty log: nothing is anchored by it"
        )));
    }
    let root = merkle::hash_from_slice(&th.root).map_err(|e| bad(format!("audit root: {e}")))?;
    let chain_head = merkle::hash_from_slice(&th.chain_head)
        .map_err(|e| bad(format!("audit chain head: {e}")))?;
    Ok(VerifiedAuditHead {
        ori: th.ori,
        size: th.size,
        root,
        chain_head,
        timestamp: th.timestamp,
        signer: id.describe(),
    })
}

/// An anchor whose head and receipt checked out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifiedAnchor {
    /// The anchored head.
    pub head: VerifiedAuditHead,
    /// When the broker anchored it.
    pub anchored_at: i64,
    /// Who signed the receipt (a broker certificate).
    pub broker: String,
    /// The regulators whose cosignatures of this head verified (others are ignored).
    pub cosigned_by: Vec<String>,
}

/// Verify an anchor of `ori`'s audit log: the node's head ([`verify_head`]) and the
/// broker's receipt of exactly those bytes, signed by a broker certificate.
pub fn verify_anchor(
    trust: &TrustStore,
    anchor: &AuditAnchor,
    ori: &str,
) -> Result<VerifiedAnchor, Error> {
    let signed = anchor
        .head
        .as_ref()
        .ok_or_else(|| bad("anchor without a tree head"))?;
    let head = verify_head(trust, signed, ori)?;
    let receipt = anchor
        .receipt
        .as_ref()
        .ok_or_else(|| bad("anchor without a receipt"))?;
    let r = AnchorReceipt::decode(receipt.payload.as_slice())
        .map_err(|e| bad(format!("anchor receipt does not decode: {e}")))?;
    let (id, _) = envelope::open(trust, receipt, ANCHOR_RECEIPT, r.anchored_at).map_err(|e| {
        Error::refused(
            e.reason(),
            format!("anchor receipt of {ori}: {}", e.detail()),
        )
    })?;
    if id.role != Role::Broker {
        return Err(Error::refused(
            RefusalReason::ClaimMismatch,
            format!(
                "the anchor receipt is signed by {}, not by a broker",
                id.describe()
            ),
        ));
    }
    if r.audit_tree_head != signed.payload {
        return Err(Error::refused(
            RefusalReason::ClaimMismatch,
            "the anchor receipt is for another tree head than the one it is attached to",
        ));
    }
    let cosigned_by = anchor
        .cosignatures
        .iter()
        .filter_map(|c| {
            let (id, cs) = envelope::open_as::<crate::pb::Cosignature>(
                trust,
                c,
                AUDIT_COSIGNATURE,
                alpr_pki::now_unix(),
            )
            .ok()?;
            (id.role == Role::Regulator && cs.tree_head == signed.payload).then(|| id.describe())
        })
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    Ok(VerifiedAnchor {
        head,
        anchored_at: r.anchored_at,
        broker: id.describe(),
        cosigned_by,
    })
}

/// A routing-log head whose signature checked out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifiedRoutingHead {
    /// Rows.
    pub size: u64,
    /// Root.
    pub root: Hash,
    /// When signed.
    pub timestamp: i64,
}

/// Verify the broker's signed routing-log head: signed by a broker certificate, not dated in
/// the future, a 32-byte root.
pub fn verify_routing_head(
    trust: &TrustStore,
    signed: &Signed,
) -> Result<VerifiedRoutingHead, Error> {
    let th = RoutingTreeHead::decode(signed.payload.as_slice())
        .map_err(|e| bad(format!("routing tree head does not decode: {e}")))?;
    if th.timestamp > alpr_pki::now_unix() + SKEW_SECS {
        return Err(bad(format!(
            "routing tree head dated in the future ({})",
            alpr_pki::fmt_time(th.timestamp)
        )));
    }
    let (id, _) = envelope::open(trust, signed, ROUTING_TREE_HEAD, th.timestamp)?;
    if id.role != Role::Broker {
        return Err(Error::refused(
            RefusalReason::ClaimMismatch,
            format!(
                "the routing tree head is signed by {}, not by a broker",
                id.describe()
            ),
        ));
    }
    Ok(VerifiedRoutingHead {
        size: th.size,
        root: merkle::hash_from_slice(&th.root).map_err(|e| bad(format!("routing root: {e}")))?,
        timestamp: th.timestamp,
    })
}

/// Check that a log of `new_size` entries with root `new_root` extends the one of
/// `old_size` with `old_root` (an RFC 6962 consistency proof of raw 32-byte hashes); a
/// log that does not is a fork (`AUDIT_FORK`), named with `what`.
pub fn check_extends(
    what: &str,
    (old_size, old_root): (u64, &Hash),
    (new_size, new_root): (u64, &Hash),
    proof: &[Vec<u8>],
) -> Result<(), Error> {
    if new_size < old_size {
        return Err(fork(format!(
            "{what} has {new_size} entries; {old_size} were seen before (entries deleted)"
        )));
    }
    if old_size == 0 {
        return Ok(());
    }
    let proof = crate::registry::proof_hashes(proof)?;
    merkle::verify_consistency(old_size, new_size, &proof, old_root, new_root).map_err(|e| {
        fork(format!(
            "{what} of {new_size} entries does not extend the {old_size} seen before \
             (rewritten or forked): {e}"
        ))
    })
}

/// An anchor as text (hex of the encoded [`AuditAnchor`]), for JSON files.
pub fn anchor_to_hex(a: &AuditAnchor) -> String {
    hex::encode(a.encode_to_vec())
}

/// The anchor [`anchor_to_hex`] wrote.
pub fn anchor_from_hex(s: &str) -> Result<AuditAnchor, Error> {
    let b = hex::decode(s).map_err(|e| bad(format!("anchor is not hex: {e}")))?;
    AuditAnchor::decode(b.as_slice()).map_err(|e| bad(format!("anchor does not decode: {e}")))
}

/// One audit entry exactly as stored: what the chain and the tree cover.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct LoggedEntry {
    /// Sequence number, from 1 (leaf `seq - 1`).
    pub seq: u64,
    /// The entry's stored JSON text, byte for byte.
    pub entry: String,
    /// Chain hash of the previous entry.
    pub prev_hash: String,
    /// This entry's chain hash.
    pub hash: String,
}

impl LoggedEntry {
    /// Check the entry's text hashes to its chain hash; return its tree leaf.
    pub fn check(&self) -> Result<Hash, Error> {
        if self.prev_hash.len() != 64 || hex::decode(&self.prev_hash).is_err() {
            return Err(bad(format!(
                "entry {}: its previous hash is not 32 bytes of hex",
                self.seq
            )));
        }
        if chain_hash(&self.prev_hash, &self.entry) != self.hash {
            return Err(fork(format!(
                "entry {}: its content does not match its chain hash",
                self.seq
            )));
        }
        leaf(&self.hash)
    }
}

/// An entry with its inclusion proof.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ProvenEntry {
    /// The entry.
    #[serde(flatten)]
    pub entry: LoggedEntry,
    /// Audit path from its leaf to the anchored root, hex hashes.
    pub proof: Vec<String>,
}

/// What `alpr-node audit prove` writes: entries of one agency's audit log, each with its
/// inclusion proof against one anchored tree head. It proves that these entries are in the
/// log (and, with `query_id`, that each names that query); not that no other entry names it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ProofBundle {
    /// [`PROOF_FORMAT`].
    pub format: String,
    /// The agency whose log it is.
    pub ori: String,
    /// The query the entries are about, if the bundle was made for one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query_id: Option<String>,
    /// The entries.
    pub entries: Vec<ProvenEntry>,
    /// The anchor the proofs are against ([`anchor_to_hex`]).
    pub anchor: String,
}

/// What [`verify_proof`] established.
#[derive(Clone, Debug)]
pub struct ProvenBundle {
    /// The anchor the entries are proven against.
    pub anchor: VerifiedAnchor,
    /// The entries' sequence numbers.
    pub seqs: Vec<u64>,
}

impl ProvenBundle {
    /// The verdict in one paragraph, for people.
    pub fn verdict(&self, bundle: &ProofBundle) -> String {
        let what = bundle
            .query_id
            .as_deref()
            .map(|q| format!(" about query {q}"))
            .unwrap_or_default();
        let one = self.seqs.len() == 1;
        let witnessed = if self.anchor.cosigned_by.is_empty() {
            String::new()
        } else {
            format!(", cosigned by {}", self.anchor.cosigned_by.join(", "))
        };
        format!(
            "proof verified: entr{} {} of {}'s audit log{what} {} in the log of {} entries that {} signed on {} and {} anchored on {}{witnessed}",
            if one { "y" } else { "ies" },
            self.seqs
                .iter()
                .map(u64::to_string)
                .collect::<Vec<_>>()
                .join(", "),
            bundle.ori,
            if one { "is" } else { "are" },
            self.anchor.head.size,
            self.anchor.head.signer,
            alpr_pki::fmt_time(self.anchor.head.timestamp),
            self.anchor.broker,
            alpr_pki::fmt_time(self.anchor.anchored_at)
        )
    }
}

/// Verify a proof bundle: the anchor is `bundle.ori`'s, each entry's text matches its
/// chain hash, and each entry's inclusion proof leads to the anchored root.
pub fn verify_proof(trust: &TrustStore, bundle: &ProofBundle) -> Result<ProvenBundle, Error> {
    if bundle.format != PROOF_FORMAT {
        return Err(bad(format!(
            "format {:?}, expected {PROOF_FORMAT:?}",
            bundle.format
        )));
    }
    if bundle.entries.is_empty() {
        return Err(bad("the bundle proves no entry"));
    }
    let anchor = verify_anchor(trust, &anchor_from_hex(&bundle.anchor)?, &bundle.ori)?;
    let mut seqs = Vec::new();
    for p in &bundle.entries {
        let seq = p.entry.seq;
        let l = p.entry.check()?;
        let proof = p
            .proof
            .iter()
            .map(|h| {
                hex::decode(h)
                    .ok()
                    .and_then(|b| merkle::hash_from_slice(&b).ok())
                    .ok_or_else(|| {
                        bad(format!(
                            "entry {seq}: proof hash {h:?} is not 32 bytes of hex"
                        ))
                    })
            })
            .collect::<Result<Vec<_>, _>>()?;
        if seq == 0 {
            return Err(bad("entry 0: sequence numbers start at 1"));
        }
        if let Some(q) = &bundle.query_id {
            let logged: Option<String> = serde_json::from_str::<serde_json::Value>(&p.entry.entry)
                .ok()
                .and_then(|v| v.get("query_id")?.as_str().map(str::to_owned));
            if logged.as_deref() != Some(q.as_str()) {
                return Err(bad(format!(
                    "entry {seq} is not about query {q} (it names {})",
                    logged.as_deref().unwrap_or("no query")
                )));
            }
        }
        merkle::verify_inclusion(&l, seq - 1, anchor.head.size, &proof, &anchor.head.root)
            .map_err(|e| {
                fork(format!(
                    "entry {seq} is not in the log anchored at size {}: {e}",
                    anchor.head.size
                ))
            })?;
        seqs.push(seq);
    }
    Ok(ProvenBundle { anchor, seqs })
}

/// Reads a whole log in order, checking the chain and computing the tree, and compares it
/// with anchored heads along the way.
#[derive(Clone, Debug)]
pub struct LogChecker {
    frontier: Frontier,
    prev: String,
}

impl Default for LogChecker {
    fn default() -> Self {
        Self::new()
    }
}

impl LogChecker {
    /// Before the first entry.
    pub fn new() -> Self {
        Self {
            frontier: Frontier::new(),
            prev: GENESIS.to_owned(),
        }
    }

    /// Entries read.
    pub fn size(&self) -> u64 {
        self.frontier.size()
    }

    /// The tree root over the entries read.
    pub fn root(&self) -> Hash {
        self.frontier.root()
    }

    /// Read the next entry: numbered in turn, linked to its predecessor, its content
    /// matching its chain hash.
    pub fn push(&mut self, e: &LoggedEntry) -> Result<(), Error> {
        let expected = self.size() + 1;
        if e.seq != expected {
            return Err(fork(format!(
                "entry {expected} is missing (next is {})",
                e.seq
            )));
        }
        if e.prev_hash != self.prev {
            return Err(fork(format!("entry {}: previous-hash link broken", e.seq)));
        }
        self.frontier.push(e.check()?);
        self.prev.clone_from(&e.hash);
        Ok(())
    }

    /// Compare the entries read so far with an anchored head of exactly this size.
    pub fn matches(&self, head: &VerifiedAuditHead) -> Result<(), Error> {
        if head.size != self.size() {
            return Err(bad(format!(
                "compared {} entries with a head of size {}",
                self.size(),
                head.size
            )));
        }
        if self.root() != head.root {
            return Err(fork(format!(
                "the log's first {} entries are not the ones anchored for {} on {} \
                 (a rewritten or different log)",
                head.size,
                head.ori,
                alpr_pki::fmt_time(head.timestamp)
            )));
        }
        Ok(())
    }

    /// After the last entry: a log shorter than the anchored head lost entries.
    pub fn finish(&self, head: &VerifiedAuditHead) -> Result<(), Error> {
        if self.size() < head.size {
            return Err(fork(format!(
                "the log has {} entries but {} were anchored for {} on {} (entries deleted)",
                self.size(),
                head.size,
                head.ori,
                alpr_pki::fmt_time(head.timestamp)
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
