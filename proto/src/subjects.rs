//! The registry's subjects index: which leaves concern whom, committed in every signed
//! tree head, so a node fetches only its own part of a national registry, with proofs,
//! and its sync does not grow with other agencies' churn.
//!
//! A **subject** is `agency:<ORI>` (the agreements an agency is party to: registrations
//! and every action on them) or `key:<ORI>` (a node's sealing-key publications). Each
//! registry leaf concerns one or two subjects, read from the event itself
//! ([`of_event`]; the broker and every replayer check the event's ORIs are the signed
//! ones). For each subject the index keeps a [`Record`]: how many leaves concern it, the
//! newest one's index, and a hash chain over all of them in order ([`chain_next`]).
//!
//! The records are the leaves of a sparse Merkle tree keyed by `SHA-256(0x20 ||
//! subject)`: a subtree with no record hashes to 32 zero bytes, a subtree with exactly one
//! record hashes to that record's leaf hash (`SHA-256(0x22 || key || count || last_index
//! || chain)`, the record lifted to where it is alone), any other subtree to `SHA-256(0x23
//! || left || right)`, splitting on the key's bits from the most significant. Each key
//! has exactly one place, so a proof shows a subject's record, or that it has none, with
//! about log2(subjects) hashes. Prefixes 0x20–0x23 keep these hashes apart from RFC 6962's
//! 0x00/0x01.
//!
//! Who checks the index: a node checks its records against the signed root, each leaf's
//! inclusion in the log, that each leaf concerns the subject, and that the chain over the
//! leaves it holds gives the record's — so a broker can hide a leaf from a node only by
//! signing a root that does not match the log, which any regulator recomputing the index
//! from the whole log ([`Index`]) sees before it cosigns.

use std::collections::{BTreeMap, HashMap};

use prost::Message;
use ring::digest;

use crate::merkle::{self, Hash};
use crate::pb::RegistryEvent;
use crate::{Error, RefusalReason};

/// Hash of an empty subtree.
pub const EMPTY: Hash = [0u8; 32];
/// Most subjects one `GetSubjects` request may name.
pub const MAX_SUBJECTS_PER_REQUEST: usize = 4096;
/// Most leaves one `GetSubjects` reply carries over all its subjects.
pub const MAX_ENTRIES_PER_REPLY: usize = 1000;

const KEY_PREFIX: u8 = 0x20;
const CHAIN_PREFIX: u8 = 0x21;
const LEAF_PREFIX: u8 = 0x22;
const NODE_PREFIX: u8 = 0x23;
const BITS: usize = 256;

/// The subject of the agreements `ori` is party to.
#[must_use]
pub fn agency(ori: &str) -> String {
    format!("agency:{ori}")
}

/// The subject of `ori`'s sealing-key publications.
#[must_use]
pub fn sealing_key(ori: &str) -> String {
    format!("key:{ori}")
}

/// The subjects a registry event concerns: a sealing key its publisher's `key:`, anything
/// else its provider's and requester's `agency:` (one if they are the same agency).
#[must_use]
pub fn of_event(ev: &RegistryEvent) -> Vec<String> {
    if ev.kind == crate::registry::SEALING_KEY_KIND {
        return if ev.provider_ori.is_empty() {
            vec![]
        } else {
            vec![sealing_key(&ev.provider_ori)]
        };
    }
    let mut out = Vec::with_capacity(2);
    for ori in [&ev.provider_ori, &ev.requester_ori] {
        let s = agency(ori);
        if !ori.is_empty() && !out.contains(&s) {
            out.push(s);
        }
    }
    out
}

/// The subjects of an encoded leaf (none if it does not decode).
#[must_use]
pub fn of_leaf(leaf: &[u8]) -> Vec<String> {
    RegistryEvent::decode(leaf).map_or_else(|_| vec![], |ev| of_event(&ev))
}

/// A subject's place in the tree: `SHA-256(0x20 || subject)`.
#[must_use]
pub fn key(subject: &str) -> Hash {
    sha(&[&[KEY_PREFIX], subject.as_bytes()])
}

/// The chain after one more leaf: `SHA-256(0x21 || previous || index (8 bytes, big
/// endian) || RFC 6962 leaf hash)`; the chain of no leaves is [`EMPTY`].
#[must_use]
pub fn chain_next(previous: &Hash, index: u64, leaf_hash: &Hash) -> Hash {
    sha(&[&[CHAIN_PREFIX], previous, &index.to_be_bytes(), leaf_hash])
}

fn sha(parts: &[&[u8]]) -> Hash {
    let mut ctx = digest::Context::new(&digest::SHA256);
    for p in parts {
        ctx.update(p);
    }
    let mut out = [0u8; 32];
    out.copy_from_slice(ctx.finish().as_ref());
    out
}

fn node_hash(left: &Hash, right: &Hash) -> Hash {
    sha(&[&[NODE_PREFIX], left, right])
}

fn bit(key: &Hash, depth: usize) -> bool {
    key[depth / 8] & (0x80 >> (depth % 8)) != 0
}

/// `key` with every bit from `depth` on set to `ones`.
fn fill(key: &Hash, depth: usize, ones: bool) -> Hash {
    let mut out = *key;
    let (byte, rest) = (depth / 8, depth % 8);
    if byte >= out.len() {
        return out;
    }
    let low = 0xffu8 >> rest;
    out[byte] = if ones {
        out[byte] | low
    } else {
        out[byte] & !low
    };
    for b in &mut out[byte + 1..] {
        *b = if ones { 0xff } else { 0 };
    }
    out
}

/// What the index holds of one subject.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Record {
    /// Leaves concerning the subject.
    pub count: u64,
    /// Index of the newest of them (0 when `count` is 0).
    pub last_index: u64,
    /// Chain over them all ([`chain_next`]).
    pub chain: Hash,
}

impl Record {
    /// The record after one more leaf, at `index`, with RFC 6962 leaf hash `leaf_hash`.
    #[must_use]
    pub fn next(&self, index: u64, leaf_hash: &Hash) -> Self {
        Self {
            count: self.count + 1,
            last_index: index,
            chain: chain_next(&self.chain, index, leaf_hash),
        }
    }

    /// This record's leaf hash in the tree, under `key`.
    #[must_use]
    pub fn leaf_hash(&self, key: &Hash) -> Hash {
        sha(&[
            &[LEAF_PREFIX],
            key,
            &self.count.to_be_bytes(),
            &self.last_index.to_be_bytes(),
            &self.chain,
        ])
    }

    /// The wire form.
    #[must_use]
    pub fn to_pb(&self) -> crate::pb::SubjectRecord {
        crate::pb::SubjectRecord {
            count: self.count,
            last_index: self.last_index,
            chain: self.chain.to_vec(),
        }
    }

    /// From the wire form.
    ///
    /// # Errors
    ///
    /// `INVALID_INPUT` if the chain is not 32 bytes.
    pub fn from_pb(pb: &crate::pb::SubjectRecord) -> Result<Self, Error> {
        Ok(Self {
            count: pb.count,
            last_index: pb.last_index,
            chain: hash(&pb.chain, "subject record chain")?,
        })
    }
}

fn hash(bytes: &[u8], what: &str) -> Result<Hash, Error> {
    merkle::hash_from_slice(bytes).map_err(|e| invalid(format!("{what}: {e}")))
}

fn invalid(m: impl Into<String>) -> Error {
    Error::refused(RefusalReason::InvalidInput, m)
}

/// How a subject's path through the tree ends.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum End {
    /// An empty subtree: the subject has no record.
    Empty,
    /// A subtree holding one record, under `key` with leaf hash `leaf`: the subject's own
    /// when `key` is its key, otherwise proof it has none.
    Leaf {
        /// The record's key.
        key: Hash,
        /// Its leaf hash.
        leaf: Hash,
    },
}

/// A subject's path: sibling hashes top down, and how it ends.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Path {
    /// Siblings, from the root's children down.
    pub siblings: Vec<Hash>,
    /// The end of the path.
    pub end: End,
}

impl Path {
    /// Check that `record` (or, with `None`, the absence of any) is what the tree of root
    /// `root` holds for `subject`.
    ///
    /// # Errors
    ///
    /// `INVALID_INPUT` saying what does not match.
    pub fn verify(&self, root: &Hash, subject: &str, record: Option<&Record>) -> Result<(), Error> {
        let k = key(subject);
        let depth = self.siblings.len();
        if depth >= BITS {
            return Err(invalid(format!("subjects path for {subject} is too long")));
        }
        let mut h = match (&self.end, record) {
            (End::Empty, None) => EMPTY,
            (End::Empty, Some(_)) => {
                return Err(invalid(format!(
                    "subjects path for {subject} ends empty but a record was given"
                )));
            }
            (End::Leaf { key: other, leaf }, None) => {
                if *other == k {
                    return Err(invalid(format!(
                        "subjects path for {subject} ends at its own record, not shown"
                    )));
                }
                if (0..depth).any(|d| bit(other, d) != bit(&k, d)) {
                    return Err(invalid(format!(
                        "subjects path for {subject} ends at a record off its path"
                    )));
                }
                *leaf
            }
            (End::Leaf { key: other, leaf }, Some(r)) => {
                if *other != k || *leaf != r.leaf_hash(&k) {
                    return Err(invalid(format!(
                        "subjects path for {subject} ends at another record"
                    )));
                }
                *leaf
            }
        };
        for d in (0..depth).rev() {
            let s = &self.siblings[d];
            h = if bit(&k, d) {
                node_hash(s, &h)
            } else {
                node_hash(&h, s)
            };
        }
        if h != *root {
            return Err(invalid(format!(
                "subjects proof for {subject} does not lead to the signed subjects root"
            )));
        }
        Ok(())
    }

    /// The wire form's path fields: (siblings, other_key, other_leaf).
    #[must_use]
    pub fn to_pb(&self) -> (Vec<Vec<u8>>, Vec<u8>, Vec<u8>) {
        let siblings = self.siblings.iter().map(|h| h.to_vec()).collect();
        match &self.end {
            End::Empty => (siblings, vec![], vec![]),
            End::Leaf { key, leaf } => (siblings, key.to_vec(), leaf.to_vec()),
        }
    }

    /// From the wire form of a proof whose record is `record` (the subject's own leaf ends
    /// the path when there is one).
    ///
    /// # Errors
    ///
    /// `INVALID_INPUT` if a hash is not 32 bytes or the path is too long.
    pub fn from_pb(
        subject: &str,
        pb: &crate::pb::SubjectProof,
        record: Option<&Record>,
    ) -> Result<Self, Error> {
        if pb.siblings.len() >= BITS {
            return Err(invalid(format!("subjects path for {subject} is too long")));
        }
        let siblings = pb
            .siblings
            .iter()
            .map(|h| hash(h, "subjects path"))
            .collect::<Result<Vec<_>, _>>()?;
        let end = match record {
            Some(r) => {
                let k = key(subject);
                End::Leaf {
                    key: k,
                    leaf: r.leaf_hash(&k),
                }
            }
            None if pb.other_key.is_empty() && pb.other_leaf.is_empty() => End::Empty,
            None => End::Leaf {
                key: hash(&pb.other_key, "subjects path key")?,
                leaf: hash(&pb.other_leaf, "subjects path leaf")?,
            },
        };
        Ok(Self { siblings, end })
    }
}

/// The whole index, as the broker and a regulator hold it: every subject's record and the
/// leaves concerning it, and the sparse Merkle tree over the records (interior hashes kept,
/// so an update rehashes one path: about log2(subjects) hashes).
#[derive(Clone, Debug, Default)]
pub struct Index {
    subjects: HashMap<String, (Record, Vec<u64>)>,
    /// Leaf hash by key: the tree's records, in key order.
    leaves: BTreeMap<Hash, Hash>,
    /// Interior hashes by (depth, key prefix with the rest zero).
    interior: HashMap<(u16, Hash), Hash>,
}

/// What [`Index::push`] changed, to undo it if the leaf could not be stored.
#[derive(Debug)]
pub struct Undo {
    subjects: Vec<(String, Option<Record>)>,
}

impl Index {
    /// The empty index.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Subjects with a record.
    #[must_use]
    pub fn len(&self) -> usize {
        self.subjects.len()
    }

    /// True if no leaf concerns anyone yet.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.subjects.is_empty()
    }

    /// Take in leaf `index` (its encoded bytes).
    pub fn push(&mut self, index: u64, leaf: &[u8]) -> Undo {
        let lh = merkle::leaf_hash(leaf);
        let mut undo = Undo { subjects: vec![] };
        for s in of_leaf(leaf) {
            let (before, after) = {
                let entry = self.subjects.entry(s.clone()).or_default();
                let before = (entry.0.count > 0).then_some(entry.0);
                entry.0 = entry.0.next(index, &lh);
                entry.1.push(index);
                (before, entry.0)
            };
            let k = key(&s);
            self.leaves.insert(k, after.leaf_hash(&k));
            self.invalidate(&k);
            undo.subjects.push((s, before));
        }
        undo
    }

    /// Undo a [`Index::push`] (the newest).
    pub fn undo(&mut self, undo: Undo) {
        for (s, before) in undo.subjects.into_iter().rev() {
            let k = key(&s);
            self.invalidate(&k);
            match before {
                None => {
                    self.subjects.remove(&s);
                    self.leaves.remove(&k);
                }
                Some(r) => {
                    if let Some(e) = self.subjects.get_mut(&s) {
                        e.0 = r;
                        e.1.pop();
                    }
                    self.leaves.insert(k, r.leaf_hash(&k));
                }
            }
        }
    }

    /// Forget the interior hashes on `k`'s path (down to where it is alone).
    fn invalidate(&mut self, k: &Hash) {
        for d in 0..BITS {
            if self.count_under(k, d) < 2 {
                break;
            }
            self.interior.remove(&(d as u16, fill(k, d, false)));
        }
    }

    /// How many records (0, 1 or 2 meaning "two or more") sit under the subtree of `k`'s
    /// first `depth` bits.
    fn count_under(&self, k: &Hash, depth: usize) -> usize {
        self.leaves
            .range(fill(k, depth, false)..=fill(k, depth, true))
            .take(2)
            .count()
    }

    fn subtree(&mut self, prefix: &Hash, depth: usize) -> Hash {
        let mut under = self
            .leaves
            .range(fill(prefix, depth, false)..=fill(prefix, depth, true))
            .take(2);
        let first = under.next().map(|(_, l)| *l);
        let many = under.next().is_some();
        match (first, many) {
            (None, _) => EMPTY,
            (Some(l), false) => l,
            (Some(_), true) => {
                let at = (depth as u16, fill(prefix, depth, false));
                if let Some(h) = self.interior.get(&at) {
                    return *h;
                }
                let left = fill(prefix, depth, false);
                let mut right = left;
                right[depth / 8] |= 0x80 >> (depth % 8);
                let h = node_hash(
                    &self.subtree(&left, depth + 1),
                    &self.subtree(&right, depth + 1),
                );
                self.interior.insert(at, h);
                h
            }
        }
    }

    /// The root (hashes only what changed since the last call).
    pub fn root(&mut self) -> Hash {
        self.subtree(&EMPTY, 0)
    }

    /// `subject`'s record, if any leaf concerns it.
    #[must_use]
    pub fn record(&self, subject: &str) -> Option<Record> {
        self.subjects.get(subject).map(|(r, _)| *r)
    }

    /// The indexes of the leaves concerning `subject`, oldest first.
    #[must_use]
    pub fn indexes(&self, subject: &str) -> &[u64] {
        self.subjects
            .get(subject)
            .map_or(&[], |(_, v)| v.as_slice())
    }

    /// `subject`'s path through the current tree.
    pub fn path(&mut self, subject: &str) -> Path {
        let k = key(subject);
        let mut siblings = Vec::new();
        for d in 0..BITS {
            let mut under = self
                .leaves
                .range(fill(&k, d, false)..=fill(&k, d, true))
                .take(2);
            let first = under.next().map(|(key, l)| (*key, *l));
            let many = under.next().is_some();
            match (first, many) {
                (None, _) => {
                    return Path {
                        siblings,
                        end: End::Empty,
                    };
                }
                (Some((key, leaf)), false) => {
                    return Path {
                        siblings,
                        end: End::Leaf { key, leaf },
                    };
                }
                (Some(_), true) => {
                    let mut other = fill(&k, d + 1, false);
                    other[d / 8] ^= 0x80 >> (d % 8);
                    siblings.push(self.subtree(&other, d + 1));
                }
            }
        }
        // Unreachable for distinct keys: a path of 256 bits holds one key at most.
        Path {
            siblings,
            end: End::Empty,
        }
    }
}

/// The subjects root of a whole log, recomputed from its leaves (what a regulator checks a
/// tree head's `subjects_root` against).
#[must_use]
pub fn root_of(leaves: &[Vec<u8>]) -> Hash {
    let mut index = Index::new();
    for (i, l) in leaves.iter().enumerate() {
        index.push(i as u64, l);
    }
    index.root()
}

#[cfg(test)]
mod tests;

/// What a node verified of one subject in a `GetSubjects` reply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verified {
    /// What it holds of the subject after: `held` advanced by the entries.
    pub held: Record,
    /// The new leaves, `(index, encoded event)`, oldest first.
    pub leaves: Vec<(u64, Vec<u8>)>,
    /// True once `held` is the signed record (false: more entries to ask for).
    pub complete: bool,
}

/// Check one subject of a `GetSubjects` reply against a verified head of `size` leaves,
/// root `root` and subjects root `subjects_root`, for a node that holds `held` of it: the
/// record (or its absence) is the signed index's, every entry is in the log, concerns the
/// subject and comes after the last held, and — once all are there — the chain over them
/// gives the signed record, so no entry was left out. A reply may stop short (its budget
/// of entries spent): the asker asks again from `held`, and must refuse a round that
/// brings no entry while a subject is incomplete.
///
/// # Errors
///
/// `INVALID_INPUT` saying which check failed (a broker hiding, reordering or inventing
/// entries, or a record that is not the signed one).
pub fn verify_proof(
    (size, root, subjects_root): (u64, &Hash, &Hash),
    held: &Record,
    pb: &crate::pb::SubjectProof,
) -> Result<Verified, Error> {
    let subject = pb.subject.as_str();
    let record = pb.record.as_ref().map(Record::from_pb).transpose()?;
    Path::from_pb(subject, pb, record.as_ref())?.verify(subjects_root, subject, record.as_ref())?;
    let signed = record.unwrap_or_default();
    if signed.count < held.count {
        return Err(invalid(format!(
            "{subject}: the signed index counts {} entries, fewer than the {} this node holds",
            signed.count, held.count
        )));
    }
    if signed.count == held.count && signed != *held {
        return Err(invalid(format!(
            "{subject}: the signed index's chain differs from the entries this node holds"
        )));
    }
    let mut now = *held;
    let mut leaves = Vec::with_capacity(pb.entries.len());
    for e in &pb.entries {
        if now.count >= signed.count {
            return Err(invalid(format!(
                "{subject}: more entries than the signed index counts"
            )));
        }
        if now.count > 0 && e.index <= now.last_index {
            return Err(invalid(format!(
                "{subject}: entry {} is not after entry {}",
                e.index, now.last_index
            )));
        }
        let lh = merkle::leaf_hash(&e.leaf);
        let proof = e
            .inclusion
            .iter()
            .map(|h| hash(h, "inclusion proof"))
            .collect::<Result<Vec<_>, _>>()?;
        merkle::verify_inclusion(&lh, e.index, size, &proof, root).map_err(|err| {
            invalid(format!(
                "{subject}: entry {} is not in the signed log: {err}",
                e.index
            ))
        })?;
        if !of_leaf(&e.leaf).iter().any(|s| s == subject) {
            return Err(invalid(format!(
                "{subject}: entry {} does not concern it",
                e.index
            )));
        }
        now = now.next(e.index, &lh);
        leaves.push((e.index, e.leaf.clone()));
    }
    let complete = now.count == signed.count;
    if complete && now != signed {
        return Err(invalid(format!(
            "{subject}: the entries do not chain to the signed record (one was left out or changed)"
        )));
    }
    Ok(Verified {
        held: now,
        leaves,
        complete,
    })
}

/// One subject's part of a `GetSubjects` reply, as a broker makes it: the subject's record
/// and path in `index`, and the leaves concerning it after the first `held` (at most
/// `budget`), each with its inclusion proof in the whole of `tree`; `leaf(i)` gives leaf
/// `i`'s encoded bytes.
///
/// # Errors
///
/// [`merkle::ProofError`] if `index` names a leaf `tree` does not hold.
pub fn proof(
    index: &mut Index,
    tree: &merkle::Tree,
    leaf: impl Fn(u64) -> Vec<u8>,
    subject: &str,
    held: u64,
    budget: usize,
) -> Result<crate::pb::SubjectProof, merkle::ProofError> {
    let (siblings, other_key, other_leaf) = index.path(subject).to_pb();
    let entries = index
        .indexes(subject)
        .iter()
        .skip(held as usize)
        .take(budget)
        .map(|&i| {
            Ok(crate::pb::ProvenLeaf {
                index: i,
                leaf: leaf(i),
                inclusion: tree
                    .inclusion_proof(i, tree.size())?
                    .iter()
                    .map(|h| h.to_vec())
                    .collect(),
            })
        })
        .collect::<Result<_, merkle::ProofError>>()?;
    Ok(crate::pb::SubjectProof {
        subject: subject.to_owned(),
        record: index.record(subject).map(|r| r.to_pb()),
        siblings,
        other_key,
        other_leaf,
        entries,
    })
}
