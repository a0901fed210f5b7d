//! Proof that an agreement is registered: its registration entry in the agreement
//! registry log, with the entry's inclusion proof against a broker-signed tree head (and the
//! regulators' cosignatures on it). A node makes one from its own verified view of the log
//! (the console's agreements page, `alpr-node agreement prove`); anyone holding the state
//! root verifies it offline (`alpr-node agreement verify-proof`): the head's signatures,
//! the entry's place in that tree, and both admins' signatures on the agreement inside it.

use alpr_pki::TrustStore;
use prost::Message;
use serde::{Deserialize, Serialize};

use crate::agreement::{self, VerifiedAgreement};
use crate::merkle::{self, Hash};
use crate::pb::{RegistryEvent, SignedTreeHead};
use crate::registry::{self, VerifiedHead};
use crate::{Error, RefusalReason};

/// [`RegistrationProof::format`] of this version.
pub const FORMAT: &str = "alpr-registration-proof/1";

/// An agreement's registration entry with its inclusion proof, as a JSON file.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RegistrationProof {
    /// [`FORMAT`].
    pub format: String,
    /// The agreement proved.
    pub agreement_id: String,
    /// The entry's index in the registry log (from 0).
    pub index: u64,
    /// The registration entry (`RegistryEvent`, protobuf), hex.
    pub entry: String,
    /// Audit path from the entry's leaf to the head's root, hex hashes.
    pub proof: Vec<String>,
    /// The signed tree head the proof is against (`SignedTreeHead`, protobuf), hex.
    pub head: String,
}

/// What [`verify`] established.
#[derive(Clone, Debug)]
pub struct Proven {
    /// The head, with the regulators whose cosignatures verified.
    pub head: VerifiedHead,
    /// The entry's index.
    pub index: u64,
    /// When the broker logged the registration.
    pub logged_at: i64,
    /// The agreement, both admins' signatures verified.
    pub agreement: VerifiedAgreement,
}

impl Proven {
    /// The verdict in one paragraph, for people.
    pub fn verdict(&self) -> String {
        let cosigned = if self.head.cosigners.is_empty() {
            ", not cosigned by a regulator".to_owned()
        } else {
            format!(
                ", cosigned by {}",
                self.head
                    .cosigners
                    .iter()
                    .map(|c| c.describe())
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        };
        format!(
            "proof verified: agreement {} ({} shares with {}, signed by {} and {}) is entry {} of the agreement registry, logged on {}, in the log of {} entries the broker signed on {}{cosigned}",
            self.agreement.id,
            self.agreement.terms.provider_ori,
            self.agreement.terms.requester_ori,
            self.agreement.provider_admin.describe(),
            self.agreement.requester_admin.describe(),
            self.index,
            alpr_pki::fmt_time(self.logged_at),
            self.head.size,
            alpr_pki::fmt_time(self.head.timestamp),
        )
    }
}

fn bad(detail: impl Into<String>) -> Error {
    Error::refused(RefusalReason::InvalidInput, detail)
}

/// Make the proof of `entry` (an encoded registration event) at `index` in the tree of
/// `head`, with the audit path `path`, checking it first: a node never hands out a proof
/// that does not verify against the head it holds.
pub fn prove(
    head: &VerifiedHead,
    index: u64,
    entry: &[u8],
    path: &[Hash],
) -> Result<RegistrationProof, Error> {
    let ev = RegistryEvent::decode(entry).map_err(|e| bad(format!("entry {index}: {e}")))?;
    merkle::verify_inclusion(
        &merkle::leaf_hash(entry),
        index,
        head.size,
        path,
        &head.root,
    )
    .map_err(|e| {
        Error::refused(
            RefusalReason::AuditFork,
            format!(
                "entry {index} is not in the registry of {} entries: {e}",
                head.size
            ),
        )
    })?;
    Ok(RegistrationProof {
        format: FORMAT.into(),
        agreement_id: ev.agreement_id,
        index,
        entry: hex::encode(entry),
        proof: path.iter().map(hex::encode).collect(),
        head: hex::encode(head.signed.encode_to_vec()),
    })
}

/// Verify a registration proof: the head is the broker's (cosignatures counted where they
/// verify), the entry is leaf `index` of its tree, the entry registers `agreement_id`, and
/// the agreement in it carries both admins' signatures.
pub fn verify(trust: &TrustStore, p: &RegistrationProof, now: i64) -> Result<Proven, Error> {
    if p.format != FORMAT {
        return Err(bad(format!("format {:?}, expected {FORMAT:?}", p.format)));
    }
    let unhex =
        |what: &str, h: &str| hex::decode(h).map_err(|e| bad(format!("{what} is not hex: {e}")));
    let sth = SignedTreeHead::decode(unhex("head", &p.head)?.as_slice())
        .map_err(|e| bad(format!("head: {e}")))?;
    let head = registry::verify_head(trust, &sth, now)?;
    let entry = unhex("entry", &p.entry)?;
    let path = p
        .proof
        .iter()
        .map(|h| {
            hex::decode(h)
                .ok()
                .and_then(|b| merkle::hash_from_slice(&b).ok())
                .ok_or_else(|| bad(format!("proof hash {h:?} is not 32 bytes of hex")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    merkle::verify_inclusion(
        &merkle::leaf_hash(&entry),
        p.index,
        head.size,
        &path,
        &head.root,
    )
    .map_err(|e| {
        Error::refused(
            RefusalReason::AuditFork,
            format!(
                "entry {} is not in the registry of {} entries the head names: {e}",
                p.index, head.size
            ),
        )
    })?;
    let ev = RegistryEvent::decode(entry.as_slice())
        .map_err(|e| bad(format!("entry {}: {e}", p.index)))?;
    if ev.kind != "register" || ev.agreement_id != p.agreement_id {
        return Err(bad(format!(
            "entry {} is a {:?} of {:?}, not the registration of {}",
            p.index, ev.kind, ev.agreement_id, p.agreement_id
        )));
    }
    let sa = ev
        .agreement
        .as_ref()
        .ok_or_else(|| bad(format!("entry {} carries no agreement", p.index)))?;
    let agreement = agreement::verify(trust, sa, ev.logged_at)?;
    if agreement.id != p.agreement_id {
        return Err(bad(format!(
            "entry {} holds agreement {}, not {}",
            p.index, agreement.id, p.agreement_id
        )));
    }
    Ok(Proven {
        head,
        index: p.index,
        logged_at: ev.logged_at,
        agreement,
    })
}
