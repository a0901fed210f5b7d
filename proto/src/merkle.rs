//! RFC 6962 (Certificate Transparency) Merkle tree hashing and proofs.
//!
//! Hashing follows [RFC 6962 §2.1](https://datatracker.ietf.org/doc/html/rfc6962#section-2.1)
//! with SHA-256:
//!
//! * leaf hash: `SHA-256(0x00 || data)`,
//! * interior node hash: `SHA-256(0x01 || left || right)`,
//! * the root of an empty tree: `SHA-256("")`,
//! * a tree with `n > 1` leaves is split at the largest power of two strictly
//!   smaller than `n`.
//!
//! Proof generation ([`inclusion_proof`], [`consistency_proof`]) implements the
//! recursive `PATH` and `PROOF`/`SUBPROOF` definitions of RFC 6962 §2.1.1 and
//! §2.1.2 over an in-memory slice of leaf hashes. Proof verification
//! ([`verify_inclusion`], [`verify_consistency`]) is a port of
//! `proof.VerifyInclusion` / `proof.VerifyConsistency` from
//! <https://github.com/transparency-dev/merkle> (`proof/verify.go`), including
//! its exact proof-length checks, so that a proof with missing, extra or
//! reordered hashes is always rejected.
//!
//! All functions are panic-free for arbitrary inputs (including sizes close
//! to `u64::MAX`).

#![forbid(unsafe_code)]
#![deny(missing_docs, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::fmt;

use ring::digest;

/// Size in bytes of a [`Hash`](type@Hash) (SHA-256 output).
pub const HASH_SIZE: usize = 32;

/// A SHA-256 hash: a leaf hash, an interior node hash or a tree root.
pub type Hash = [u8; HASH_SIZE];

/// Domain-separation prefix for leaf hashes (RFC 6962 §2.1).
const LEAF_PREFIX: u8 = 0x00;
/// Domain-separation prefix for interior node hashes (RFC 6962 §2.1).
const NODE_PREFIX: u8 = 0x01;

/// Errors returned by proof generation and verification.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProofError {
    /// The leaf index is not smaller than the tree size.
    IndexOutOfRange {
        /// The requested leaf index.
        index: u64,
        /// The tree size the index was checked against.
        size: u64,
    },
    /// The proof does not have the number of hashes required by the
    /// index and tree size(s).
    WrongProofSize {
        /// Number of hashes in the supplied proof.
        got: usize,
        /// Number of hashes the proof must have.
        want: usize,
    },
    /// A root recomputed from the proof differs from the expected root.
    RootMismatch {
        /// The root the caller expected.
        expected: Hash,
        /// The root recomputed from the proof.
        calculated: Hash,
    },
    /// The pair of tree sizes is unusable: the new size is smaller than the
    /// old one, the old size is zero (a consistency proof from an empty tree
    /// is meaningless), or the old size exceeds the available leaves.
    InvalidSizes {
        /// The old (first) tree size.
        size1: u64,
        /// The new (second) tree size.
        size2: u64,
    },
    /// A byte string given to [`hash_from_slice`] is not [`HASH_SIZE`] bytes.
    InvalidHashLength {
        /// Length of the rejected byte string.
        got: usize,
    },
}

impl fmt::Display for ProofError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::IndexOutOfRange { index, size } => {
                write!(f, "leaf index {index} out of range for tree size {size}")
            }
            Self::WrongProofSize { got, want } => {
                write!(f, "wrong proof size: got {got} hashes, want {want}")
            }
            Self::RootMismatch {
                expected,
                calculated,
            } => {
                f.write_str("calculated root ")?;
                write_hex(f, calculated)?;
                f.write_str(" does not match expected root ")?;
                write_hex(f, expected)
            }
            Self::InvalidSizes { size1, size2 } => {
                write!(f, "invalid tree sizes: size1={size1}, size2={size2}")
            }
            Self::InvalidHashLength { got } => {
                write!(f, "invalid hash length: got {got} bytes, want {HASH_SIZE}")
            }
        }
    }
}

impl std::error::Error for ProofError {}

fn write_hex(f: &mut fmt::Formatter<'_>, bytes: &[u8]) -> fmt::Result {
    bytes.iter().try_for_each(|b| write!(f, "{b:02x}"))
}

fn finish(ctx: digest::Context) -> Hash {
    let mut out = [0u8; HASH_SIZE];
    // SHA-256 always yields exactly HASH_SIZE bytes.
    out.copy_from_slice(ctx.finish().as_ref());
    out
}

/// Hashes a leaf: `SHA-256(0x00 || data)`.
#[must_use]
pub fn leaf_hash(data: &[u8]) -> Hash {
    let mut ctx = digest::Context::new(&digest::SHA256);
    ctx.update(&[LEAF_PREFIX]);
    ctx.update(data);
    finish(ctx)
}

/// Hashes an interior node: `SHA-256(0x01 || left || right)`.
#[must_use]
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut ctx = digest::Context::new(&digest::SHA256);
    ctx.update(&[NODE_PREFIX]);
    ctx.update(left);
    ctx.update(right);
    finish(ctx)
}

/// Root hash of the empty tree: `SHA-256("")`.
#[must_use]
pub fn empty_root() -> Hash {
    finish(digest::Context::new(&digest::SHA256))
}

/// Converts an untrusted byte string (e.g. a decoded proof element received
/// over the network) into a [`Hash`](type@Hash).
///
/// # Errors
///
/// [`ProofError::InvalidHashLength`] if `bytes` is not exactly [`HASH_SIZE`]
/// bytes long.
pub fn hash_from_slice(bytes: &[u8]) -> Result<Hash, ProofError> {
    Hash::try_from(bytes).map_err(|_| ProofError::InvalidHashLength { got: bytes.len() })
}

/// Largest power of two strictly smaller than `n`. Requires `n >= 2`.
fn split_point(n: usize) -> usize {
    debug_assert!(n >= 2);
    1 << (usize::BITS - 1 - (n - 1).leading_zeros())
}

/// Merkle Tree Hash (RFC 6962 §2.1) of a list of leaf hashes.
///
/// `leaves` are leaf hashes as produced by [`leaf_hash`], not raw entries.
/// An empty list yields [`empty_root`].
#[must_use]
pub fn root(leaves: &[Hash]) -> Hash {
    match leaves {
        [] => empty_root(),
        [single] => *single,
        _ => {
            // len >= 2, so 1 <= k < len and both halves are non-empty.
            let (left, right) = leaves.split_at(split_point(leaves.len()));
            node_hash(&root(left), &root(right))
        }
    }
}

fn len_u64(leaves: &[Hash]) -> u64 {
    u64::try_from(leaves.len()).unwrap_or(u64::MAX)
}

/// A tree given as a slice of leaf hashes, seen as the [`Nodes`] of its perfect subtrees.
fn slice_nodes(leaves: &[Hash]) -> impl FnMut(u32, u64) -> Result<Hash, ProofError> + '_ {
    let size = len_u64(leaves);
    move |level, index| {
        let range = index
            .checked_shl(level)
            .zip((index + 1).checked_shl(level))
            .and_then(|(a, b)| Some(usize::try_from(a).ok()?..usize::try_from(b).ok()?));
        range
            .and_then(|r| leaves.get(r))
            .map(root)
            .ok_or(ProofError::IndexOutOfRange { index, size })
    }
}

/// Audit path (RFC 6962 §2.1.1 `PATH`) proving that the leaf at `index` is
/// included in the tree made of `leaves` (leaf hashes).
///
/// The proof is ordered from the leaf level upwards, as expected by
/// [`verify_inclusion`] against `root(leaves)`.
///
/// # Errors
///
/// [`ProofError::IndexOutOfRange`] if `index >= leaves.len()`.
pub fn inclusion_proof(leaves: &[Hash], index: u64) -> Result<Vec<Hash>, ProofError> {
    inclusion_proof_with(len_u64(leaves), index, &mut slice_nodes(leaves))
}

/// Consistency proof (RFC 6962 §2.1.2 `PROOF`) between the tree made of the
/// first `old_size` leaves and the tree made of all `leaves` (leaf hashes).
///
/// If `old_size == leaves.len()` the proof is empty.
///
/// # Errors
///
/// [`ProofError::InvalidSizes`] if `old_size == 0` (such a proof is
/// meaningless and [`verify_consistency`] rejects it) or
/// `old_size > leaves.len()`.
pub fn consistency_proof(leaves: &[Hash], old_size: u64) -> Result<Vec<Hash>, ProofError> {
    consistency_proof_with(old_size, len_u64(leaves), &mut slice_nodes(leaves))
}

// ---------------------------------------------------------------------------------------
// Trees kept as their perfect subtrees.
//
// A log too large to hold in memory (a node's audit log) keeps, for every perfect subtree
// it has completed, the subtree's hash at (level, index): level 0 holds the leaf hashes,
// level `l` index `i` covers leaves `[i << l, (i + 1) << l)`. Appending a leaf completes
// at most one node per level ([`completed_nodes`]); the root of any size and every proof
// need only O(log² n) of them, looked up through a `Nodes` function the store provides.

/// Looks up the hash of the perfect subtree at `(level, index)`; an error aborts the
/// computation (a missing or unreadable node in the store).
pub trait Nodes<E>: FnMut(u32, u64) -> Result<Hash, E> {}
impl<E, F: FnMut(u32, u64) -> Result<Hash, E>> Nodes<E> for F {}

/// The perfect subtree at `(level, index)`, with hash `hash`, was just completed (at
/// level 0: a leaf appended): it and every ancestor it completes, bottom up — what a store
/// writes. `nodes` must answer for the subtrees completed before (the left siblings).
///
/// # Errors
///
/// Whatever `nodes` returns.
pub fn completed_nodes<E>(
    level: u32,
    index: u64,
    hash: Hash,
    nodes: &mut impl Nodes<E>,
) -> Result<Vec<(u32, u64, Hash)>, E> {
    let mut out = vec![(level, index, hash)];
    let (mut level, mut i, mut h) = (level, index, hash);
    while i % 2 == 1 {
        h = node_hash(&nodes(level, i - 1)?, &h);
        level += 1;
        i /= 2;
        out.push((level, i, h));
    }
    Ok(out)
}

/// Merkle Tree Hash of leaves `[start, end)` of a stored tree, where `start` is a multiple
/// of the largest power of two not above `end - start` (true of every subtree the RFC 6962
/// recursions visit, and of `start = 0`). The empty range hashes to [`empty_root`].
///
/// # Errors
///
/// Whatever `nodes` returns.
pub fn subtree_root<E>(start: u64, end: u64, nodes: &mut impl Nodes<E>) -> Result<Hash, E> {
    let n = end.saturating_sub(start);
    if n == 0 {
        return Ok(empty_root());
    }
    if n.is_power_of_two() {
        let level = n.trailing_zeros();
        return nodes(level, start >> level);
    }
    let k = split_point_u64(n);
    let left = subtree_root(start, start + k, nodes)?;
    let right = subtree_root(start + k, end, nodes)?;
    Ok(node_hash(&left, &right))
}

/// Largest power of two strictly smaller than `n`. Requires `n >= 2`.
fn split_point_u64(n: u64) -> u64 {
    1 << (u64::BITS - 1 - (n - 1).leading_zeros())
}

/// The right edge of a tree being built leaf by leaf: its perfect subtrees, largest first,
/// O(log n) hashes in all. What a verifier keeps while it reads a whole log in order, to
/// know the root at every size without keeping the leaves.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Frontier {
    nodes: Vec<(u32, Hash)>,
    size: u64,
}

impl Frontier {
    /// The empty tree.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Append the leaf with hash `leaf`.
    pub fn push(&mut self, leaf: Hash) {
        self.push_reporting(leaf, |_, _, _| {});
    }

    /// Append the leaf with hash `leaf`, calling `completed(level, index, hash)` for each
    /// perfect subtree above the leaves that it completes, bottom up: what a verifier
    /// compares with a store's rows.
    pub fn push_reporting(&mut self, leaf: Hash, mut completed: impl FnMut(u32, u64, &Hash)) {
        let index = self.size;
        let mut node = (0u32, leaf);
        while let Some(&(level, left)) = self.nodes.last() {
            if level != node.0 {
                break;
            }
            self.nodes.pop();
            node = (level + 1, node_hash(&left, &node.1));
            completed(node.0, index >> node.0, &node.1);
        }
        self.nodes.push(node);
        self.size += 1;
    }

    /// Leaves appended.
    #[must_use]
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The Merkle Tree Hash of the leaves appended so far.
    #[must_use]
    pub fn root(&self) -> Hash {
        let mut it = self.nodes.iter().rev();
        let Some(&(_, mut acc)) = it.next() else {
            return empty_root();
        };
        for (_, left) in it {
            acc = node_hash(left, &acc);
        }
        acc
    }
}

/// A whole tree held in memory: every perfect subtree's hash, level by level, so the root
/// and any proof cost O(log² n) hashes at any size (the broker's registry at a million
/// leaves), never a pass over the leaves.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Tree {
    /// `levels[l][i]`: the perfect subtree of `2^l` leaves starting at leaf `i * 2^l`.
    levels: Vec<Vec<Hash>>,
}

impl Tree {
    /// The empty tree.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Leaves appended.
    #[must_use]
    pub fn size(&self) -> u64 {
        self.levels.first().map_or(0, |l| l.len() as u64)
    }

    /// Append the leaf with hash `leaf`.
    pub fn push(&mut self, leaf: Hash) {
        let mut level = 0;
        let mut h = leaf;
        loop {
            if self.levels.len() == level {
                self.levels.push(Vec::new());
            }
            let row = &mut self.levels[level];
            row.push(h);
            if row.len() % 2 == 1 {
                return;
            }
            h = node_hash(&row[row.len() - 2], &row[row.len() - 1]);
            level += 1;
        }
    }

    /// Remove the last leaf (undo a [`Tree::push`] whose leaf could not be stored).
    pub fn pop(&mut self) {
        let Some(size) = self.size().checked_sub(1) else {
            return;
        };
        for (l, row) in self.levels.iter_mut().enumerate() {
            row.truncate((size >> l) as usize);
        }
        while self.levels.last().is_some_and(Vec::is_empty) && self.levels.len() > 1 {
            self.levels.pop();
        }
    }

    /// The leaf hashes, in order.
    #[must_use]
    pub fn leaves(&self) -> &[Hash] {
        self.levels.first().map_or(&[], Vec::as_slice)
    }

    fn node(&self, level: u32, index: u64) -> Result<Hash, ProofError> {
        self.levels
            .get(level as usize)
            .and_then(|row| row.get(index as usize))
            .copied()
            .ok_or(ProofError::IndexOutOfRange {
                index,
                size: self.size(),
            })
    }

    /// The Merkle Tree Hash of the first `size` leaves (`size` at most [`Tree::size`]).
    ///
    /// # Errors
    ///
    /// [`ProofError::IndexOutOfRange`] if `size` exceeds the tree.
    pub fn root_at(&self, size: u64) -> Result<Hash, ProofError> {
        if size > self.size() {
            return Err(ProofError::IndexOutOfRange {
                index: size,
                size: self.size(),
            });
        }
        subtree_root(0, size, &mut |l, i| self.node(l, i))
    }

    /// The Merkle Tree Hash of every leaf.
    #[must_use]
    pub fn root(&self) -> Hash {
        // The whole tree's nodes are all present.
        self.root_at(self.size()).unwrap_or_else(|_| empty_root())
    }

    /// Inclusion proof of leaf `index` in the tree of the first `size` leaves.
    ///
    /// # Errors
    ///
    /// [`ProofError::IndexOutOfRange`] unless `index < size <= self.size()`.
    pub fn inclusion_proof(&self, index: u64, size: u64) -> Result<Vec<Hash>, ProofError> {
        if size > self.size() {
            return Err(ProofError::IndexOutOfRange {
                index: size,
                size: self.size(),
            });
        }
        inclusion_proof_with(size, index, &mut |l, i| self.node(l, i))
    }

    /// Consistency proof from the first `old_size` leaves to the first `size`.
    ///
    /// # Errors
    ///
    /// [`ProofError::InvalidSizes`] unless `1 <= old_size <= size <= self.size()`.
    pub fn consistency_proof(&self, old_size: u64, size: u64) -> Result<Vec<Hash>, ProofError> {
        if size > self.size() {
            return Err(ProofError::InvalidSizes {
                size1: old_size,
                size2: size,
            });
        }
        consistency_proof_with(old_size, size, &mut |l, i| self.node(l, i))
    }
}

/// [`inclusion_proof`] over a stored tree of `size` leaves.
///
/// # Errors
///
/// [`ProofError::IndexOutOfRange`] (converted) if `index >= size`; whatever `nodes`
/// returns.
pub fn inclusion_proof_with<E: From<ProofError>>(
    size: u64,
    index: u64,
    nodes: &mut impl Nodes<E>,
) -> Result<Vec<Hash>, E> {
    if index >= size {
        return Err(ProofError::IndexOutOfRange { index, size }.into());
    }
    let mut proof = Vec::new();
    path(index, 0, size, nodes, &mut proof)?;
    Ok(proof)
}

/// RFC 6962 `PATH(m, D[start:end])`; requires `start + m < end`.
fn path<E>(
    m: u64,
    start: u64,
    end: u64,
    nodes: &mut impl Nodes<E>,
    out: &mut Vec<Hash>,
) -> Result<(), E> {
    let n = end - start;
    if n <= 1 {
        return Ok(());
    }
    let k = split_point_u64(n);
    if m < k {
        path(m, start, start + k, nodes, out)?;
        out.push(subtree_root(start + k, end, nodes)?);
    } else {
        path(m - k, start + k, end, nodes, out)?;
        out.push(subtree_root(start, start + k, nodes)?);
    }
    Ok(())
}

/// [`consistency_proof`] between sizes `old_size` and `size` of a stored tree.
///
/// # Errors
///
/// [`ProofError::InvalidSizes`] (converted) unless `1 <= old_size <= size`; whatever
/// `nodes` returns.
pub fn consistency_proof_with<E: From<ProofError>>(
    old_size: u64,
    size: u64,
    nodes: &mut impl Nodes<E>,
) -> Result<Vec<Hash>, E> {
    if old_size == 0 || old_size > size {
        return Err(ProofError::InvalidSizes {
            size1: old_size,
            size2: size,
        }
        .into());
    }
    let mut proof = Vec::new();
    subproof(old_size, 0, size, true, nodes, &mut proof)?;
    Ok(proof)
}

/// RFC 6962 `SUBPROOF(m, D[start:end], b)`; requires `1 <= m <= end - start`.
fn subproof<E>(
    m: u64,
    start: u64,
    end: u64,
    complete: bool,
    nodes: &mut impl Nodes<E>,
    out: &mut Vec<Hash>,
) -> Result<(), E> {
    let n = end - start;
    if m == n {
        if !complete {
            out.push(subtree_root(start, end, nodes)?);
        }
        return Ok(());
    }
    // 1 <= m < n, so n >= 2.
    let k = split_point_u64(n);
    if m <= k {
        subproof(m, start, start + k, complete, nodes, out)?;
        out.push(subtree_root(start + k, end, nodes)?);
    } else {
        subproof(m - k, start + k, end, false, nodes, out)?;
        out.push(subtree_root(start, start + k, nodes)?);
    }
    Ok(())
}

/// Verifies that `leaf_hash` is the leaf at `index` in the tree of `size`
/// leaves whose root is `root`, using the audit path `proof`.
///
/// # Errors
///
/// * [`ProofError::IndexOutOfRange`] if `index >= size`,
/// * [`ProofError::WrongProofSize`] if `proof` does not have exactly the
///   length implied by `index` and `size`,
/// * [`ProofError::RootMismatch`] if the recomputed root differs from `root`.
pub fn verify_inclusion(
    leaf_hash: &Hash,
    index: u64,
    size: u64,
    proof: &[Hash],
    root: &Hash,
) -> Result<(), ProofError> {
    let calculated = root_from_inclusion_proof(leaf_hash, index, size, proof)?;
    verify_match(&calculated, root)
}

/// Recomputes the root of the tree of `size` leaves from the leaf at
/// `index` (with hash `leaf_hash`) and its audit path `proof`.
///
/// Port of `proof.RootFromInclusionProof` (transparency-dev/merkle).
///
/// # Errors
///
/// [`ProofError::IndexOutOfRange`] if `index >= size`;
/// [`ProofError::WrongProofSize`] if `proof` has the wrong length.
pub fn root_from_inclusion_proof(
    leaf_hash: &Hash,
    index: u64,
    size: u64,
    proof: &[Hash],
) -> Result<Hash, ProofError> {
    if index >= size {
        return Err(ProofError::IndexOutOfRange { index, size });
    }
    let (inner, border) = decomp_incl_proof(index, size);
    check_len(proof, inner + border)?;
    let (inner_proof, border_proof) = proof.split_at(inner);
    let res = chain_inner(*leaf_hash, inner_proof, index);
    Ok(chain_border_right(res, border_proof))
}

/// Verifies that the tree of `size2` leaves with root `root2` is an
/// append-only extension of the tree of `size1` leaves with root `root1`,
/// using the consistency proof `proof`.
///
/// Port of `proof.VerifyConsistency` (transparency-dev/merkle):
///
/// * `size1 == size2` requires an empty proof and `root1 == root2`;
/// * `size1 == 0` is always rejected (nothing to prove);
/// * otherwise the proof must have exactly the expected length and must
///   reproduce both `root1` and `root2`.
///
/// # Errors
///
/// * [`ProofError::InvalidSizes`] if `size2 < size1` or `size1 == 0`,
/// * [`ProofError::WrongProofSize`] if `proof` has the wrong length
///   (including a non-empty proof for `size1 == size2`),
/// * [`ProofError::RootMismatch`] if either root is not reproduced.
pub fn verify_consistency(
    size1: u64,
    size2: u64,
    proof: &[Hash],
    root1: &Hash,
    root2: &Hash,
) -> Result<(), ProofError> {
    let calculated = root_from_consistency_proof(size1, size2, proof, root1)?;
    verify_match(&calculated, root2)
}

/// Recomputes the root of the tree of `size2` leaves from the root `root1`
/// of its prefix of `size1` leaves and the consistency proof `proof`,
/// checking on the way that `proof` is consistent with `root1`.
///
/// Port of `proof.RootFromConsistencyProof` (transparency-dev/merkle).
///
/// # Errors
///
/// As for [`verify_consistency`], except that the final comparison with the
/// new root is left to the caller.
pub fn root_from_consistency_proof(
    size1: u64,
    size2: u64,
    proof: &[Hash],
    root1: &Hash,
) -> Result<Hash, ProofError> {
    if size2 < size1 || size1 == 0 {
        return Err(ProofError::InvalidSizes { size1, size2 });
    }
    if size1 == size2 {
        check_len(proof, 0)?;
        return Ok(*root1);
    }
    // Now 0 < size1 < size2.

    // Split the proof where the paths to leaves size1-1 and size2-1 diverge.
    let (fork_level, border) = decomp_incl_proof(size1 - 1, size2);
    // Height of the largest perfect subtree at the right edge of the old
    // tree; the proof starts at this level. size1 > 0, so shift <= 63.
    let shift = size1.trailing_zeros();
    // fork_level > shift whenever size1 < size2, so this cannot fail.
    let inner = fork_level
        .checked_sub(shift as usize)
        .ok_or(ProofError::InvalidSizes { size1, size2 })?;

    // If the old tree is itself perfect, its root is the starting node and is
    // not repeated in the proof; otherwise the proof starts with the root of
    // that rightmost perfect subtree.
    let old_is_perfect = size1 == 1u64 << shift;
    let start = usize::from(!old_is_perfect);
    check_len(proof, start + inner + border)?;
    let (seed, rest) = if old_is_perfect {
        (*root1, proof)
    } else {
        match proof.split_first() {
            Some((first, rest)) => (*first, rest),
            // Unreachable: the length check above guarantees len >= 1.
            None => return Err(ProofError::WrongProofSize { got: 0, want: 1 }),
        }
    };
    // Now rest is a suffix of the inclusion proof of leaf size1-1 in the
    // tree of size2, starting at level `shift`.
    let (inner_proof, border_proof) = rest.split_at(inner);
    let mask = (size1 - 1) >> shift;

    if !old_is_perfect {
        // Verify the old root. Go's decompSubtreeProof restricts the inner part
        // to min(h, forkLevel) - shift nodes, but chain_inner_right ignores
        // the nodes above that anyway (their mask bits are zero), and for a
        // prefix subtree (start = 0) the whole border part is used.
        let hash1 = chain_inner_right(seed, inner_proof, mask);
        let hash1 = chain_border_right(hash1, border_proof);
        verify_match(&hash1, root1)?;
    }

    // Compute the new root.
    let hash2 = chain_inner(seed, inner_proof, mask);
    Ok(chain_border_right(hash2, border_proof))
}

fn check_len(proof: &[Hash], want: usize) -> Result<(), ProofError> {
    if proof.len() == want {
        Ok(())
    } else {
        Err(ProofError::WrongProofSize {
            got: proof.len(),
            want,
        })
    }
}

fn verify_match(calculated: &Hash, expected: &Hash) -> Result<(), ProofError> {
    if calculated == expected {
        Ok(())
    } else {
        Err(ProofError::RootMismatch {
            expected: *expected,
            calculated: *calculated,
        })
    }
}

/// Number of significant bits of `x` (Go's `bits.Len64`).
fn bit_len(x: u64) -> usize {
    (u64::BITS - x.leading_zeros()) as usize
}

/// Bit `i` of `x`; `false` for `i >= 64`.
fn bit(x: u64, i: usize) -> bool {
    u32::try_from(i)
        .ok()
        .and_then(|s| x.checked_shr(s))
        .is_some_and(|v| v & 1 == 1)
}

/// Splits the inclusion proof for leaf `index` in a tree of `size` (> index)
/// leaves into the lengths of its inner part (below the point where the
/// paths to `index` and `size - 1` diverge) and its border part (left
/// siblings above that point). Their sum is the exact proof length.
fn decomp_incl_proof(index: u64, size: u64) -> (usize, usize) {
    let inner = bit_len(index ^ (size - 1));
    // inner may be 64, where Go's shift yields 0 but Rust's would overflow.
    let above = u32::try_from(inner)
        .ok()
        .and_then(|s| index.checked_shr(s))
        .unwrap_or(0);
    (inner, above.count_ones() as usize)
}

/// Chains `proof` hashes (lowest level first) upwards from `seed`, which sits
/// at position `index` on its level.
fn chain_inner(mut seed: Hash, proof: &[Hash], index: u64) -> Hash {
    for (i, h) in proof.iter().enumerate() {
        seed = if bit(index, i) {
            node_hash(h, &seed)
        } else {
            node_hash(&seed, h)
        };
    }
    seed
}

/// Like [`chain_inner`] but only uses left siblings, which yields the hash of
/// the corresponding earlier (smaller) version of the subtree.
fn chain_inner_right(mut seed: Hash, proof: &[Hash], index: u64) -> Hash {
    for (i, h) in proof.iter().enumerate() {
        if bit(index, i) {
            seed = node_hash(h, &seed);
        }
    }
    seed
}

/// Chains border hashes, which are all left siblings, upwards from `seed`.
fn chain_border_right(seed: Hash, proof: &[Hash]) -> Hash {
    proof.iter().fold(seed, |acc, h| node_hash(h, &acc))
}

#[cfg(test)]
mod tests;
