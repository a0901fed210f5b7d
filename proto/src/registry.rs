//! The agreement registry: an append-only Merkle log (RFC 6962 hashing) of agreement
//! lifecycle events, with broker-signed tree heads and regulator cosignatures.
//!
//! Everything here is verification that any party can run for itself: the broker, each
//! node (over the events that concern it) and each regulator (over the whole log).

use std::collections::BTreeMap;

use alpr_pki::{Role, TrustStore, VerifiedIdentity};
use prost::Message;

use crate::agreement::{self, AgreementStatus, VerifiedAgreement};
use crate::envelope;
use crate::merkle::{self, Hash};
use crate::pb::{AgreementAction, Cosignature, RegistryEvent, Signed, SignedTreeHead, TreeHead};
use crate::{Error, RefusalReason};

/// Payload type of a broker-signed tree head.
pub const TREE_HEAD: &str = "alpr.v1.TreeHead";
/// Payload type of a regulator cosignature.
pub const COSIGNATURE: &str = "alpr.v1.Cosignature";
/// Payload type of an agreement action.
pub const ACTION: &str = "alpr.v1.AgreementAction";
/// Payload type of a node's sealing key.
pub const SEALING_KEY: &str = "alpr.v1.SealingKey";
/// Registry event kind of a published sealing key.
pub const SEALING_KEY_KIND: &str = "sealing_key";

/// Everything the registry log establishes: each agreement's story and each node's
/// published sealing keys.
#[derive(Clone, Debug, Default)]
pub struct RegistryState {
    /// Agreements by id.
    pub agreements: BTreeMap<String, AgreementRecord>,
    /// Agreement ids by (provider, requester): what admission of one target looks up, so
    /// its cost does not grow with the registry (national size: ~100,000 agreements).
    pub by_parties: std::collections::HashMap<(String, String), Vec<String>>,
    /// Published sealing keys by ORI, oldest first (the last is the one to seal to).
    pub sealing_keys: BTreeMap<String, Vec<PublishedKey>>,
}

impl AgreementRecord {
    /// The agreement as admission sees it.
    pub fn view(&self) -> crate::agreement::AgreementView {
        crate::agreement::AgreementView {
            id: self.agreement.id.clone(),
            terms: self.agreement.terms.clone(),
            status: self.status,
        }
    }
}

impl RegistryState {
    /// Every agreement as admission sees it (for listings: admitting a query needs only
    /// [`RegistryState::views_between`]).
    pub fn views(&self) -> Vec<crate::agreement::AgreementView> {
        self.agreements
            .values()
            .map(AgreementRecord::view)
            .collect()
    }

    /// The agreements between any of `providers` and any of `requesters`, as admission
    /// sees them: found through [`RegistryState::by_parties`], so the cost is that of the
    /// few agreements the parties hold, not of the registry.
    pub fn views_between(
        &self,
        providers: &[String],
        requesters: &[&str],
    ) -> Vec<crate::agreement::AgreementView> {
        let mut out = Vec::new();
        for p in providers {
            for r in requesters {
                let Some(ids) = self.by_parties.get(&(p.clone(), (*r).to_owned())) else {
                    continue;
                };
                out.extend(
                    ids.iter()
                        .filter_map(|id| self.agreements.get(id))
                        .map(AgreementRecord::view),
                );
            }
        }
        out
    }
}

/// A sealing key as published in the registry and verified.
#[derive(Clone, Debug)]
pub struct PublishedKey {
    /// The node's agency.
    pub ori: String,
    /// The suite.
    pub suite: crate::seal::Suite,
    /// The public key.
    pub public: Vec<u8>,
    /// Its id ([`crate::seal::key_id`]).
    pub key_id: [u8; 16],
    /// When the node published it.
    pub published_at: i64,
    /// Leaf index of its publication.
    pub index: u64,
    /// The node certificate that signed it.
    pub signer: VerifiedIdentity,
    /// The signed publication, as logged.
    pub signed: Signed,
    /// The system the node said it runs (empty if it did not say).
    pub product: String,
    /// Its version.
    pub product_version: String,
}

/// Verify a node's signed sealing key at `at`: a node certificate of the key's own agency
/// signed it, the suite is known and the key well formed.
pub fn verify_sealing_key(
    trust: &TrustStore,
    signed: &Signed,
    index: u64,
    at: i64,
) -> Result<PublishedKey, Error> {
    let (signer, k): (_, crate::pb::SealingKey) =
        envelope::open_as(trust, signed, SEALING_KEY, at)?;
    if signer.role != Role::Node || signer.ori() != Some(k.ori.as_str()) {
        return Err(Error::refused(
            RefusalReason::CertInvalid,
            format!(
                "sealing key of {:?} signed by {}; only that agency's node may publish it",
                k.ori,
                signer.describe()
            ),
        ));
    }
    let suite = crate::seal::Suite::from_id(k.suite).map_err(|e| invalid(e.to_string()))?;
    crate::seal::check_public(suite, &k.public_key).map_err(|e| invalid(e.to_string()))?;
    Ok(PublishedKey {
        key_id: crate::seal::key_id(&k.public_key),
        ori: k.ori,
        suite,
        public: k.public_key,
        published_at: k.published_at,
        index,
        signer,
        signed: signed.clone(),
        product: k.product,
        product_version: k.product_version,
    })
}

fn invalid(m: impl Into<String>) -> Error {
    Error::refused(RefusalReason::InvalidInput, m)
}

/// A tree head whose broker signature (and any cosignatures) verified.
#[derive(Clone, Debug)]
pub struct VerifiedHead {
    /// Leaves in the tree.
    pub size: u64,
    /// Root hash.
    pub root: Hash,
    /// When the broker signed it.
    pub timestamp: i64,
    /// Root of the subjects index ([`crate::subjects`]); `None` in a head signed before the
    /// index existed.
    pub subjects_root: Option<Hash>,
    /// Regulators whose cosignatures verified.
    pub cosigners: Vec<VerifiedIdentity>,
    /// The signed form.
    pub signed: SignedTreeHead,
}

impl VerifiedHead {
    /// True if a regulator of `jurisdiction` cosigned this head.
    pub fn cosigned_by(&self, jurisdiction: &str) -> bool {
        self.cosigners
            .iter()
            .any(|c| c.jurisdiction.as_ref().map(|j| j.as_str()) == Some(jurisdiction))
    }
}

/// Verify a signed tree head: broker signature, and each cosignature that verifies (a
/// regulator certificate over the identical head bytes). Invalid cosignatures are ignored.
pub fn verify_head(
    trust: &TrustStore,
    sth: &SignedTreeHead,
    now: i64,
) -> Result<VerifiedHead, Error> {
    let head = sth
        .head
        .as_ref()
        .ok_or_else(|| invalid("tree head missing"))?;
    let (signer, th): (_, TreeHead) = envelope::open_as(trust, head, TREE_HEAD, now)?;
    if signer.role != Role::Broker {
        return Err(Error::refused(
            RefusalReason::CertInvalid,
            format!("tree head signed by {}, not the broker", signer.describe()),
        ));
    }
    let root =
        merkle::hash_from_slice(&th.root).map_err(|e| invalid(format!("tree head root: {e}")))?;
    let subjects_root = if th.subjects_root.is_empty() {
        None
    } else {
        Some(
            merkle::hash_from_slice(&th.subjects_root)
                .map_err(|e| invalid(format!("tree head subjects root: {e}")))?,
        )
    };
    let mut cosigners = Vec::new();
    if th.timestamp > now + crate::admission::CLOCK_SKEW_SECS {
        // A head dated ahead would stay "fresh" for as long as the broker liked.
        return Err(invalid(format!(
            "tree head of size {} is dated {} s ahead of this clock",
            th.size,
            th.timestamp - now
        )));
    }
    for c in &sth.cosignatures {
        if let Ok((id, cs)) = envelope::open_as::<Cosignature>(trust, c, COSIGNATURE, now)
            && id.role == Role::Regulator
            && same_tree(&cs.tree_head, &th)
        {
            cosigners.push(id);
        }
    }
    Ok(VerifiedHead {
        size: th.size,
        root,
        timestamp: th.timestamp,
        subjects_root,
        cosigners,
        signed: sth.clone(),
    })
}

/// Whether `cosigned` (an encoded tree head) names the same size, root and subjects root
/// as `head`: a cosignature vouches for a tree and its index, whichever time the broker
/// signed it at.
fn same_tree(cosigned: &[u8], head: &TreeHead) -> bool {
    TreeHead::decode(cosigned).is_ok_and(|c| {
        c.size == head.size && c.root == head.root && c.subjects_root == head.subjects_root
    })
}

/// Decode proof hashes.
pub fn proof_hashes(hashes: &[Vec<u8>]) -> Result<Vec<Hash>, Error> {
    hashes
        .iter()
        .map(|h| merkle::hash_from_slice(h).map_err(|e| invalid(format!("proof: {e}"))))
        .collect()
}

/// Check that `newer` extends `older` (same history) with a consistency proof.
pub fn check_consistency(
    older: (u64, &Hash),
    newer: (u64, &Hash),
    proof: &[Hash],
) -> Result<(), Error> {
    if newer.0 < older.0 {
        return Err(invalid(format!(
            "registry shrank from {} to {} entries",
            older.0, newer.0
        )));
    }
    if older.0 == 0 {
        return Ok(());
    }
    if older.0 == newer.0 {
        return if older.1 == newer.1 {
            Ok(())
        } else {
            Err(invalid(format!("two different roots for size {}", older.0)))
        };
    }
    merkle::verify_consistency(older.0, newer.0, proof, older.1, newer.1).map_err(|e| {
        invalid(format!(
            "tree head of size {} is not consistent with size {}: {e}",
            newer.0, older.0
        ))
    })
}

/// One agreement as the log tells its story.
#[derive(Clone, Debug)]
pub struct AgreementRecord {
    /// The verified agreement.
    pub agreement: VerifiedAgreement,
    /// Where its registration sits in the log.
    pub registered_index: u64,
    /// Current status.
    pub status: AgreementStatus,
    /// Every event: (index, kind, who, reason, logged_at).
    pub history: Vec<HistoryItem>,
}

/// One lifecycle event of an agreement.
#[derive(Clone, Debug)]
pub struct HistoryItem {
    /// Leaf index.
    pub index: u64,
    /// register, revoke, suspend, lift.
    pub kind: String,
    /// Who signed it.
    pub by: String,
    /// Reason (actions) or justification (registration).
    pub reason: String,
    /// When logged.
    pub at: i64,
}

/// Verify an action against the agreement it concerns and its current status; returns
/// the new status and the signer.
pub fn verify_action(
    trust: &TrustStore,
    action: &Signed,
    record: &AgreementRecord,
    now: i64,
) -> Result<(AgreementAction, VerifiedIdentity, AgreementStatus), Error> {
    let (id, a): (_, AgreementAction) = envelope::open_as(trust, action, ACTION, now)?;
    if a.agreement_id != record.agreement.id {
        return Err(invalid("action names another agreement"));
    }
    if a.reason.trim().len() < 5 {
        return Err(invalid("an action must give its reason"));
    }
    let terms = &record.agreement.terms;
    match a.action.as_str() {
        "revoke" => {
            if id.role != Role::Admin
                || (id.ori() != Some(&terms.provider_ori) && id.ori() != Some(&terms.requester_ori))
            {
                return Err(Error::refused(
                    RefusalReason::CertInvalid,
                    format!(
                        "{} may not revoke this agreement; a party's admin may",
                        id.describe()
                    ),
                ));
            }
        }
        "suspend" | "lift" => {
            let provider_state = record
                .agreement
                .provider_admin
                .jurisdiction
                .as_ref()
                .map(|j| j.as_str().to_owned());
            if id.role != Role::Regulator
                || id.jurisdiction.as_ref().map(|j| j.as_str().to_owned()) != provider_state
            {
                return Err(Error::refused(
                    RefusalReason::CertInvalid,
                    format!(
                        "{} may not {} this agreement; the provider state's regulator may",
                        id.describe(),
                        a.action
                    ),
                ));
            }
        }
        other => {
            return Err(invalid(format!(
                "unknown action {other:?} (revoke, suspend, lift)"
            )));
        }
    }
    let next = match (a.action.as_str(), record.status) {
        ("revoke", AgreementStatus::Active | AgreementStatus::Suspended) => {
            AgreementStatus::Revoked
        }
        ("suspend", AgreementStatus::Active) => AgreementStatus::Suspended,
        ("lift", AgreementStatus::Suspended) => AgreementStatus::Active,
        (act, st) => {
            return Err(invalid(format!(
                "cannot {act} an agreement that is {}",
                st.as_str()
            )));
        }
    };
    Ok((a, id, next))
}

/// Replay leaves in order, verifying every event, and return each agreement's record.
/// Signatures are checked as of each event's `logged_at`.
pub fn replay(trust: &TrustStore, leaves: &[Vec<u8>]) -> Result<RegistryState, Error> {
    let mut out = RegistryState::default();
    for (i, leaf) in leaves.iter().enumerate() {
        apply_leaf(trust, &mut out, i as u64, leaf)
            .map_err(|e| invalid(format!("registry entry {i}: {e}")))?;
    }
    Ok(out)
}

/// Verify one leaf and apply it to `state`.
pub fn apply_leaf(
    trust: &TrustStore,
    state: &mut RegistryState,
    index: u64,
    leaf: &[u8],
) -> Result<(), Error> {
    let change = check_leaf(trust, state, index, leaf)?;
    state.apply(change);
    Ok(())
}

/// What one verified leaf changes in a [`RegistryState`] ([`check_leaf`]).
#[derive(Debug)]
pub enum Change {
    /// A node published a sealing key.
    SealingKey(Box<PublishedKey>),
    /// An agreement was registered.
    Register(Box<AgreementRecord>),
    /// An action moved an agreement to a new status.
    Action {
        /// The agreement.
        id: String,
        /// Its status after.
        status: AgreementStatus,
        /// The event in its history.
        item: HistoryItem,
    },
}

impl RegistryState {
    /// Apply a change [`check_leaf`] verified against this state.
    pub fn apply(&mut self, change: Change) {
        match change {
            Change::SealingKey(k) => self.sealing_keys.entry(k.ori.clone()).or_default().push(*k),
            Change::Register(rec) => {
                let terms = &rec.agreement.terms;
                self.by_parties
                    .entry((terms.provider_ori.clone(), terms.requester_ori.clone()))
                    .or_default()
                    .push(rec.agreement.id.clone());
                self.agreements.insert(rec.agreement.id.clone(), *rec);
            }
            Change::Action { id, status, item } => {
                if let Some(rec) = self.agreements.get_mut(&id) {
                    rec.status = status;
                    rec.history.push(item);
                }
            }
        }
    }
}

/// Verify one leaf against `state` (unchanged) and say what it changes: what an appender
/// checks before the leaf is stored, and applies ([`RegistryState::apply`]) after.
pub fn check_leaf(
    trust: &TrustStore,
    state: &RegistryState,
    index: u64,
    leaf: &[u8],
) -> Result<Change, Error> {
    let ev = RegistryEvent::decode(leaf).map_err(|e| invalid(format!("does not decode: {e}")))?;
    let records = &state.agreements;
    match ev.kind.as_str() {
        SEALING_KEY_KIND => {
            let signed = ev
                .sealing_key
                .as_ref()
                .ok_or_else(|| invalid("sealing-key event without its signed key"))?;
            let k = verify_sealing_key(trust, signed, index, ev.logged_at)?;
            if ev.provider_ori != k.ori
                || !ev.requester_ori.is_empty()
                || !ev.agreement_id.is_empty()
            {
                return Err(invalid(
                    "the sealing-key event's ORI differs from the signed key's",
                ));
            }
            if (k.published_at - ev.logged_at).abs() > crate::admission::CLOCK_SKEW_SECS {
                return Err(invalid(
                    "sealing key published at a time far from when it was logged",
                ));
            }
            Ok(Change::SealingKey(Box::new(k)))
        }
        "register" => {
            let sa = ev
                .agreement
                .as_ref()
                .ok_or_else(|| invalid("registration without agreement"))?;
            let v = agreement::verify(trust, sa, ev.logged_at)?;
            if let Some(j) = &v.provider_admin.jurisdiction {
                agreement::check_declaration(
                    trust,
                    sa,
                    &v,
                    crate::rules::StateRules::for_jurisdiction(j)?,
                    ev.logged_at,
                )?;
            }
            if v.id != ev.agreement_id || records.contains_key(&v.id) {
                return Err(invalid("registration id mismatch or duplicate"));
            }
            // The leaf's parties are read by whoever filters the log: they must be the
            // signed agreement's.
            if ev.provider_ori != v.terms.provider_ori || ev.requester_ori != v.terms.requester_ori
            {
                return Err(invalid(
                    "the event's provider or requester differs from the signed agreement's",
                ));
            }
            let by = format!(
                "{} and {}",
                v.provider_admin.describe(),
                v.requester_admin.describe()
            );
            let reason = v.terms.justification.clone();
            Ok(Change::Register(Box::new(AgreementRecord {
                agreement: v,
                registered_index: index,
                status: AgreementStatus::Active,
                history: vec![HistoryItem {
                    index,
                    kind: "register".into(),
                    by,
                    reason,
                    at: ev.logged_at,
                }],
            })))
        }
        _ => {
            let action = ev
                .action
                .as_ref()
                .ok_or_else(|| invalid("action event without action"))?;
            let rec = records
                .get(&ev.agreement_id)
                .ok_or_else(|| invalid("action on an unregistered agreement"))?;
            let (a, who, next) = verify_action(trust, action, rec, ev.logged_at)?;
            if a.action != ev.kind {
                return Err(invalid("event kind differs from the signed action"));
            }
            if ev.provider_ori != rec.agreement.terms.provider_ori
                || ev.requester_ori != rec.agreement.terms.requester_ori
            {
                return Err(invalid(
                    "the event's provider or requester differs from the signed agreement's",
                ));
            }
            Ok(Change::Action {
                id: ev.agreement_id.clone(),
                status: next,
                item: HistoryItem {
                    index,
                    kind: a.action,
                    by: who.describe(),
                    reason: a.reason,
                    at: ev.logged_at,
                },
            })
        }
    }
}
