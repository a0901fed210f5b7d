//! The broker's copy of the agreement registry: the leaves, their hashes and the state
//! they replay to. Every leaf is verified when appended and again when the broker starts,
//! so a tampered database is refused rather than served.

use std::collections::BTreeMap;

use alpr_pki::{Signer, TrustStore};
use alpr_proto::agreement::{AgreementStatus, AgreementView};
use alpr_proto::envelope;
use alpr_proto::merkle::{self, Hash};
use alpr_proto::pb::{SignedAgreement, SignedTreeHead, TreeHead};
use alpr_proto::registry::{self, AgreementRecord, PublishedKey, RegistryState, TREE_HEAD};
use alpr_proto::subjects;
use prost::Message;

use crate::Error;
use crate::store::{self, Db};

/// The registry as the broker holds it.
#[derive(Default)]
pub struct Registry {
    leaves: Vec<Vec<u8>>,
    tree: merkle::Tree,
    subjects: subjects::Index,
    state: RegistryState,
}

impl Registry {
    /// Load and verify the whole log.
    pub fn load(db: &Db, trust: &TrustStore) -> Result<Self, Error> {
        let mut reg = Self::default();
        reg.take(store::registry_leaves(db)?, trust)?;
        Ok(reg)
    }

    /// Take in the leaves stored after this copy's last (appended by another broker
    /// replica sharing the store), verifying each as at load.
    pub fn catch_up(&mut self, db: &Db, trust: &TrustStore) -> Result<(), Error> {
        let rows = store::registry_leaves_from(db, self.size())?;
        self.take(rows, trust)
    }

    fn take(&mut self, rows: Vec<(u64, Vec<u8>)>, trust: &TrustStore) -> Result<(), Error> {
        for (idx, leaf) in rows {
            let i = self.size();
            if idx != i {
                return Err(Error::Corrupt {
                    what: "registry database".into(),
                    detail: format!("entry {i} is missing"),
                });
            }
            registry::apply_leaf(trust, &mut self.state, i, &leaf).map_err(|e| Error::Corrupt {
                what: "registry database".into(),
                detail: format!("entry {i} does not verify: {e}"),
            })?;
            self.tree.push(merkle::leaf_hash(&leaf));
            self.subjects.push(i, &leaf);
            self.leaves.push(leaf);
        }
        Ok(())
    }

    /// Number of leaves.
    pub fn size(&self) -> u64 {
        self.leaves.len() as u64
    }

    /// Current root.
    pub fn root(&self) -> Hash {
        self.tree.root()
    }

    /// Current root of the subjects index.
    pub fn subjects_root(&mut self) -> Hash {
        self.subjects.root()
    }

    /// `subject`'s part of a `GetSubjects` reply against the current tree
    /// ([`subjects::proof`]).
    pub fn subject_proof(
        &mut self,
        subject: &str,
        held: u64,
        budget: usize,
    ) -> Result<alpr_proto::pb::SubjectProof, Error> {
        let leaves = &self.leaves;
        subjects::proof(
            &mut self.subjects,
            &self.tree,
            |i| leaves[i as usize].clone(),
            subject,
            held,
            budget,
        )
        .map_err(|e| Error::Usage(e.to_string()))
    }

    /// Agreement records.
    pub fn records(&self) -> &BTreeMap<String, AgreementRecord> {
        &self.state.agreements
    }

    /// The newest published sealing key of `ori`, if any.
    pub fn sealing_key(&self, ori: &str) -> Option<&PublishedKey> {
        self.state.sealing_keys.get(ori).and_then(|k| k.last())
    }

    /// Everything the log establishes.
    pub fn state(&self) -> &RegistryState {
        &self.state
    }

    /// Every agreement as admission sees it ([`RegistryState::views`]).
    pub fn views(&self) -> Vec<AgreementView> {
        self.state.views()
    }

    /// The agreements between any of `providers` and any of `requesters`
    /// ([`RegistryState::views_between`]).
    pub fn views_between(&self, providers: &[String], requesters: &[&str]) -> Vec<AgreementView> {
        self.state.views_between(providers, requesters)
    }

    /// The doubly signed form of an agreement.
    pub fn signed(&self, id: &str) -> Option<SignedAgreement> {
        let rec = self.state.agreements.get(id)?;
        let leaf = self.leaves.get(rec.registered_index as usize)?;
        alpr_proto::pb::RegistryEvent::decode(leaf.as_slice())
            .ok()?
            .agreement
    }

    /// Status of an agreement.
    pub fn status(&self, id: &str) -> Option<AgreementStatus> {
        self.state.agreements.get(id).map(|r| r.status)
    }

    /// Verify and append a leaf durably, sign the new tree head; returns (index, head).
    /// When another replica sharing the store appended first, catch up with its leaves and
    /// try again (the leaf verified against the registry as it now stands): the log never
    /// forks.
    pub fn append(
        &mut self,
        db: &mut Db,
        trust: &TrustStore,
        signer: &Signer,
        leaf: Vec<u8>,
        now: i64,
    ) -> Result<(u64, SignedTreeHead), Error> {
        const ATTEMPTS: usize = 8;
        for _ in 0..ATTEMPTS {
            if let Some(done) = self.try_append(db, trust, signer, &leaf, now)? {
                return Ok(done);
            }
            self.catch_up(db, trust)?;
        }
        Err(Error::Postgres(format!(
            "registry append lost the race to other replicas {ATTEMPTS} times; try again"
        )))
    }

    fn try_append(
        &mut self,
        db: &mut Db,
        trust: &TrustStore,
        signer: &Signer,
        leaf: &[u8],
        now: i64,
    ) -> Result<Option<(u64, SignedTreeHead)>, Error> {
        let index = self.size();
        // Verified against the state as it stands, applied once stored: nothing is copied,
        // so an append costs the same at a million leaves as at ten.
        let change = registry::check_leaf(trust, &self.state, index, leaf)?;
        self.tree.push(merkle::leaf_hash(leaf));
        let undo = self.subjects.push(index, leaf);
        let stored = self.sign_and_store(db, signer, leaf, now);
        match stored {
            Ok(Some(sth)) => {
                self.state.apply(change);
                self.leaves.push(leaf.to_vec());
                Ok(Some((index, sth)))
            }
            other => {
                self.tree.pop();
                self.subjects.undo(undo);
                other.map(|_| None)
            }
        }
    }

    /// Sign the head including the leaf just pushed, and store both (`None`: another
    /// replica stored its leaf at this index first).
    fn sign_and_store(
        &mut self,
        db: &mut Db,
        signer: &Signer,
        leaf: &[u8],
        now: i64,
    ) -> Result<Option<SignedTreeHead>, Error> {
        let th = TreeHead {
            size: self.tree.size(),
            root: self.tree.root().to_vec(),
            timestamp: now,
            subjects_root: self.subjects.root().to_vec(),
        };
        let sth = SignedTreeHead {
            head: Some(envelope::seal(signer, TREE_HEAD, &th)?),
            cosignatures: vec![],
        };
        let index = th.size - 1;
        if !store::append_registry_leaf(db, index, leaf, &sth.encode_to_vec())? {
            return Ok(None);
        }
        Ok(Some(sth))
    }

    /// Leaves `[start, end)`.
    pub fn entries(&self, start: u64, end: u64) -> Vec<Vec<u8>> {
        let end = end.min(self.size());
        if start >= end {
            return vec![];
        }
        self.leaves[start as usize..end as usize].to_vec()
    }

    /// Inclusion proof of `index` in the tree of `size` leaves.
    pub fn inclusion(&self, index: u64, size: u64) -> Result<Vec<Hash>, Error> {
        if size > self.size() {
            return Err(Error::Usage(format!(
                "tree size {size} exceeds the log ({})",
                self.size()
            )));
        }
        self.tree
            .inclusion_proof(index, size)
            .map_err(|e| Error::Usage(e.to_string()))
    }

    /// Consistency proof from `first` to `second` leaves.
    pub fn consistency(&self, first: u64, second: u64) -> Result<Vec<Hash>, Error> {
        if second > self.size() || first > second {
            return Err(Error::Usage(format!(
                "bad sizes {first}..{second} (log has {})",
                self.size()
            )));
        }
        if first == 0 || first == second {
            return Ok(vec![]);
        }
        self.tree
            .consistency_proof(first, second)
            .map_err(|e| Error::Usage(e.to_string()))
    }
}

/// The latest stored signed tree head (with cosignatures), if any.
pub fn latest_head(db: &Db) -> Result<Option<SignedTreeHead>, Error> {
    store::latest_tree_head(db)?.map(decode_head).transpose()
}

/// The stored signed tree head of one size.
pub fn head_of_size(db: &Db, size: u64) -> Result<Option<SignedTreeHead>, Error> {
    store::tree_head_of_size(db, size)?
        .map(decode_head)
        .transpose()
}

/// Replace a stored head (to add cosignatures).
pub fn put_head(db: &Db, size: u64, sth: &SignedTreeHead) -> Result<(), Error> {
    store::put_tree_head(db, size, &sth.encode_to_vec())
}

fn decode_head(bytes: Vec<u8>) -> Result<SignedTreeHead, Error> {
    SignedTreeHead::decode(bytes.as_slice()).map_err(|e| Error::Corrupt {
        what: "stored tree head".into(),
        detail: e.to_string(),
    })
}

#[cfg(test)]
mod tests;
