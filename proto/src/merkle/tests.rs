//! Tests for the RFC 6962 Merkle module.
//!
//! Vectors under `testdata/` come verbatim from
//! <https://github.com/transparency-dev/merkle> (`testdata/inclusion`,
//! `testdata/consistency`; see `testdata/README.md`). Reference leaves and
//! roots are ported from its `testonly/constants.go`; the corruption helpers
//! are ported from its `cmd/proofgen/main.go`, which generated those vectors.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use super::*;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde::de::DeserializeOwned;

// ---------------------------------------------------------------------------
// Reference data (transparency-dev/merkle testonly/constants.go and
// cmd/proofgen/main.go).
// ---------------------------------------------------------------------------

/// `testonly.LeafInputs()`: the 8 raw entries of the RFC 6962 test tree.
const LEAF_INPUTS: [&str; 8] = [
    "",
    "00",
    "10",
    "2021",
    "3031",
    "40414243",
    "5051525354555657",
    "606162636465666768696a6b6c6d6e6f",
];

/// `testonly.RootHashes()`: roots of the trees of size 0..=8.
const ROOT_HASHES: [&str; 9] = [
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
];

/// `testonly.NodeHashes()`: hashes of all perfect subtrees of the 8-leaf
/// tree, by level (0 = leaves) and index within the level.
const NODE_HASHES: [&[&str]; 4] = [
    &[
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
        "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
        "0298d122906dcfc10892cb53a73992fc5b9f493ea4c9badb27b791b4127a7fe7",
        "07506a85fd9dd2f120eb694f86011e5bb4662e5c415a62917033d4a9624487e7",
        "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        "4271a26be0d8a84f0bd54c8c302e7cb3a3b5d1fa6780a40bcce2873477dab658",
        "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
        "46f6ffadd3d06a09ff3c5860d2755c8b9819db7df44251788c7d8e3180de8eb1",
    ],
    &[
        "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
        "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
        "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
        "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
    ],
    &[
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
    ],
    &["5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328"],
];

/// `sha256SomeHash` from cmd/proofgen.
const SOME_HASH: &str = "abacaba000000000000000000000000000000000000000000060061e00123456";

/// The one vector whose semantics cannot be expressed with the typed
/// `&Hash` API: Go accepts equal 12-byte "roots" for size1 == size2 == 1.
const TYPED_API_DEVIATION: &str =
    "consistency/additional/sizes-are-equal-one-and-proof-is-empty.json";

// ---------------------------------------------------------------------------
// Small helpers.
// ---------------------------------------------------------------------------

fn hx(s: &str) -> Vec<u8> {
    assert!(s.len().is_multiple_of(2), "odd hex length: {s}");
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

fn h32(s: &str) -> Hash {
    hash_from_slice(&hx(s)).unwrap()
}

fn to_hex(h: &[u8]) -> String {
    h.iter().map(|b| format!("{b:02x}")).collect()
}

/// Standard (RFC 4648 §4, padded) base64 decoder, as used by Go's JSON
/// encoding of `[]byte`.
fn b64(s: &str) -> Vec<u8> {
    fn val(c: u8) -> u32 {
        u32::from(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => panic!("invalid base64 character {:?}", c as char),
        })
    }
    let bytes = s.as_bytes();
    assert!(
        bytes.len().is_multiple_of(4),
        "base64 length not a multiple of 4: {s:?}"
    );
    let chunks = bytes.len() / 4;
    let mut out = Vec::with_capacity(chunks * 3);
    for (i, chunk) in bytes.chunks(4).enumerate() {
        let pad = chunk.iter().rev().take_while(|&&c| c == b'=').count();
        assert!(
            pad <= 2 && (pad == 0 || i + 1 == chunks),
            "bad padding: {s:?}"
        );
        let n = chunk[..4 - pad]
            .iter()
            .fold(0u32, |acc, &c| (acc << 6) | val(c))
            << (6 * pad);
        out.extend_from_slice(&n.to_be_bytes()[1..4 - pad]);
    }
    out
}

fn reference_leaves() -> Vec<Hash> {
    LEAF_INPUTS.iter().map(|s| leaf_hash(&hx(s))).collect()
}

fn flip_bit(h: &Hash, bit: usize) -> Hash {
    let mut out = *h;
    out[bit / 8] ^= 1 << (bit % 8);
    out
}

/// `extend(proof, hashes...)` from cmd/proofgen.
fn extend(proof: &[Hash], tail: &[Hash]) -> Vec<Hash> {
    proof.iter().chain(tail).copied().collect()
}

/// `prepend(proof, hashes...)` from cmd/proofgen: `hashes` go first.
fn prepend(proof: &[Hash], head: &[Hash]) -> Vec<Hash> {
    head.iter().chain(proof).copied().collect()
}

/// `fileName(desc)` from cmd/proofgen.
fn file_name(desc: &str) -> String {
    desc.replace(" - ", "-")
        .replace(['(', ')'], "")
        .replace(' ', "-")
        + ".json"
}

// ---------------------------------------------------------------------------
// Vector files.
// ---------------------------------------------------------------------------

fn testdata_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata")
}

fn collect_json(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        if path.is_dir() {
            collect_json(&path, out);
        } else if path.extension().is_some_and(|e| e == "json") {
            out.push(path);
        }
    }
}

/// Loads every probe under `testdata/<kind>`, keyed by its path relative to
/// `testdata/` (with `/` separators).
fn load<P: DeserializeOwned>(kind: &str) -> BTreeMap<String, P> {
    let root = testdata_root();
    let mut files = Vec::new();
    collect_json(&root.join(kind), &mut files);
    files
        .into_iter()
        .map(|path| {
            let rel = path
                .strip_prefix(&root)
                .unwrap()
                .components()
                .map(|c| c.as_os_str().to_str().unwrap())
                .collect::<Vec<_>>()
                .join("/");
            let text = std::fs::read_to_string(&path).unwrap();
            let probe = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{rel}: {e}"));
            (rel, probe)
        })
        .collect()
}

fn decode_hashes(list: &Option<Vec<String>>) -> Result<Vec<Hash>, ProofError> {
    list.iter()
        .flatten()
        .map(|s| hash_from_slice(&b64(s)))
        .collect()
}

/// JSON form of a Go `inclusionProbe` (hashes are base64 strings).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct InclusionProbe {
    leaf_idx: u64,
    tree_size: u64,
    root: String,
    leaf_hash: String,
    proof: Option<Vec<String>>,
    desc: String,
    want_err: bool,
}

/// JSON form of a Go `consistencyProbe`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConsistencyProbe {
    size1: u64,
    size2: u64,
    root1: String,
    root2: String,
    proof: Option<Vec<String>>,
    desc: String,
    #[serde(rename = "wantErr")]
    want_err: bool,
}

/// A typed inclusion probe.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Incl {
    index: u64,
    size: u64,
    root: Hash,
    leaf: Hash,
    proof: Vec<Hash>,
}

/// A typed consistency probe.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Cons {
    size1: u64,
    size2: u64,
    root1: Hash,
    root2: Hash,
    proof: Vec<Hash>,
}

impl InclusionProbe {
    /// Converts through the public `hash_from_slice`, which rejects any
    /// hash that is not 32 bytes (e.g. the vectors' `""` and `"WrongLeaf"`).
    fn typed(&self) -> Result<Incl, ProofError> {
        Ok(Incl {
            index: self.leaf_idx,
            size: self.tree_size,
            root: hash_from_slice(&b64(&self.root))?,
            leaf: hash_from_slice(&b64(&self.leaf_hash))?,
            proof: decode_hashes(&self.proof)?,
        })
    }
}

impl ConsistencyProbe {
    fn typed(&self) -> Result<Cons, ProofError> {
        Ok(Cons {
            size1: self.size1,
            size2: self.size2,
            root1: hash_from_slice(&b64(&self.root1))?,
            root2: hash_from_slice(&b64(&self.root2))?,
            proof: decode_hashes(&self.proof)?,
        })
    }
}

impl Incl {
    fn verify(&self) -> Result<(), ProofError> {
        verify_inclusion(&self.leaf, self.index, self.size, &self.proof, &self.root)
    }
}

impl Cons {
    fn verify(&self) -> Result<(), ProofError> {
        verify_consistency(
            self.size1,
            self.size2,
            &self.proof,
            &self.root1,
            &self.root2,
        )
    }
}

#[derive(Debug)]
enum Outcome {
    Accepted,
    /// Rejected by `verify_*` itself.
    RejectedByVerifier(ProofError),
    /// Rejected by `hash_from_slice` (a hash field is not 32 bytes).
    RejectedHashLength(ProofError),
}

fn run<T>(typed: Result<T, ProofError>, verify: impl Fn(&T) -> Result<(), ProofError>) -> Outcome {
    match typed {
        Err(e) => Outcome::RejectedHashLength(e),
        Ok(t) => match verify(&t) {
            Ok(()) => Outcome::Accepted,
            Err(e) => Outcome::RejectedByVerifier(e),
        },
    }
}

fn variant(e: &ProofError) -> &'static str {
    match e {
        ProofError::IndexOutOfRange { .. } => "IndexOutOfRange",
        ProofError::WrongProofSize { .. } => "WrongProofSize",
        ProofError::RootMismatch { .. } => "RootMismatch",
        ProofError::InvalidSizes { .. } => "InvalidSizes",
        ProofError::InvalidHashLength { .. } => "InvalidHashLength",
    }
}

#[derive(Debug, Default)]
struct Tally {
    accepted: usize,
    rejected_by_verifier: usize,
    rejected_hash_length: usize,
    by_variant: BTreeMap<&'static str, usize>,
    failures: Vec<String>,
}

impl Tally {
    fn record(&mut self, name: &str, want_err: bool, outcome: Outcome) {
        match (want_err, outcome) {
            (false, Outcome::Accepted) => self.accepted += 1,
            (true, Outcome::RejectedByVerifier(e)) => {
                self.rejected_by_verifier += 1;
                *self.by_variant.entry(variant(&e)).or_default() += 1;
            }
            (true, Outcome::RejectedHashLength(e)) => {
                assert!(
                    matches!(e, ProofError::InvalidHashLength { .. }),
                    "{name}: {e}"
                );
                self.rejected_hash_length += 1;
            }
            (want_err, outcome) => self
                .failures
                .push(format!("{name}: wantErr={want_err} but got {outcome:?}")),
        }
    }
}

/// Happy-path probes of the numbered directories (`<kind>/<n>/happy-path.json`).
fn numbered_happy_paths<P>(probes: &BTreeMap<String, P>, kind: &str) -> Vec<(String, String)> {
    probes
        .keys()
        .filter_map(|name| {
            let rest = name.strip_prefix(kind)?.strip_prefix('/')?;
            let (dir, file) = rest.split_once('/')?;
            (dir.parse::<u32>().is_ok() && file == "happy-path.json")
                .then(|| (name.clone(), format!("{kind}/{dir}")))
        })
        .collect()
}

// ---------------------------------------------------------------------------
// Hashing.
// ---------------------------------------------------------------------------

#[test]
fn rfc6962_hasher_vectors() {
    // transparency-dev/merkle rfc6962/rfc6962_test.go.
    assert_eq!(
        to_hex(&empty_root()),
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    );
    assert_eq!(
        to_hex(&leaf_hash(b"")),
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"
    );
    assert_eq!(
        to_hex(&leaf_hash(b"L123456")),
        "395aa064aa4c29f7010acfe3f25db9485bbd4b91897b6ad7ad547639252b4d56"
    );
    // The Go "RFC6962 Node" vector hashes 4-byte children, which a typed
    // `Hash` cannot hold; check the 0x01 framing directly instead.
    let (l, r) = (leaf_hash(b"N123"), leaf_hash(b"N456"));
    let mut pre = vec![0x01];
    pre.extend_from_slice(&l);
    pre.extend_from_slice(&r);
    assert_eq!(
        node_hash(&l, &r).as_slice(),
        ring::digest::digest(&ring::digest::SHA256, &pre).as_ref()
    );
}

#[test]
fn rfc6962_hasher_collisions() {
    // Port of TestRFC6962HasherCollisions.
    let (h1, h2) = (leaf_hash(b"Hello"), leaf_hash(b"World"));
    assert_ne!(h1, h2);
    let sub1 = node_hash(&h1, &h2);
    assert_ne!(
        sub1,
        leaf_hash(&[h1, h2].concat()),
        "not second-preimage resistant"
    );
    assert_ne!(sub1, node_hash(&h2, &h1), "node hash ignores child order");
}

#[test]
fn reference_tree_roots_and_nodes() {
    // testonly.RootHashes(): MTH of every prefix of the 8-leaf RFC tree.
    let leaves = reference_leaves();
    for (n, want) in ROOT_HASHES.iter().enumerate() {
        assert_eq!(to_hex(&root(&leaves[..n])), *want, "root of size {n}");
    }
    assert_eq!(root(&[]), empty_root());
    // testonly.NodeHashes(): every perfect subtree.
    for (level, row) in NODE_HASHES.iter().enumerate() {
        let width = 1 << level;
        assert_eq!(row.len(), 8 / width);
        for (i, want) in row.iter().enumerate() {
            let got = root(&leaves[i * width..(i + 1) * width]);
            assert_eq!(to_hex(&got), *want, "node level {level} index {i}");
        }
    }
}

// ---------------------------------------------------------------------------
// The transparency-dev/merkle vector files.
// ---------------------------------------------------------------------------

#[test]
fn inclusion_vector_files() {
    let probes = load::<InclusionProbe>("inclusion");
    assert_eq!(probes.len(), 98, "inclusion vector files");
    let mut tally = Tally::default();
    for (name, p) in &probes {
        assert!(
            name.ends_with(&format!("/{}", file_name(&p.desc))),
            "{name}"
        );
        tally.record(name, p.want_err, run(p.typed(), Incl::verify));
    }
    eprintln!("inclusion vectors: {tally:?}");
    assert!(tally.failures.is_empty(), "{:#?}", tally.failures);
    assert_eq!(tally.accepted, 6);
    assert_eq!(tally.rejected_by_verifier, 66);
    assert_eq!(tally.rejected_hash_length, 26);
}

#[test]
fn consistency_vector_files() {
    let probes = load::<ConsistencyProbe>("consistency");
    assert_eq!(probes.len(), 98, "consistency vector files");
    let mut tally = Tally::default();
    for (name, p) in &probes {
        assert!(
            name.ends_with(&format!("/{}", file_name(&p.desc))),
            "{name}"
        );
        let outcome = run(p.typed(), Cons::verify);
        if name == TYPED_API_DEVIATION {
            // Go accepts any equal byte strings as roots when size1 == size2;
            // our roots are typed `[u8; 32]`, so the 12-byte "don't care 2"
            // is refused at conversion. Check the same situation with
            // 32-byte roots instead.
            assert!(!p.want_err && p.root1 == p.root2 && p.size1 == p.size2);
            assert!(
                matches!(outcome, Outcome::RejectedHashLength(_)),
                "{outcome:?}"
            );
            let r = leaf_hash(&b64(&p.root1));
            assert_eq!(verify_consistency(p.size1, p.size2, &[], &r, &r), Ok(()));
            continue;
        }
        tally.record(name, p.want_err, outcome);
    }
    eprintln!("consistency vectors: {tally:?}");
    assert!(tally.failures.is_empty(), "{:#?}", tally.failures);
    assert_eq!(tally.accepted, 5);
    assert_eq!(tally.rejected_by_verifier, 66);
    assert_eq!(tally.rejected_hash_length, 26);
}

/// Proofs and roots computed from the reference tree equal those in every
/// happy-path vector.
#[test]
fn generated_proofs_match_vectors() {
    let leaves = reference_leaves();
    let mut checked = 0;

    let incl = load::<InclusionProbe>("inclusion");
    for (name, dir) in numbered_happy_paths(&incl, "inclusion") {
        let t = incl[&name].typed().unwrap();
        let idx = usize::try_from(t.index).unwrap();
        let size = usize::try_from(t.size).unwrap();
        assert_eq!(t.leaf, leaves[idx], "{dir}: leaf hash");
        assert_eq!(t.root, root(&leaves[..size]), "{dir}: root");
        assert_eq!(
            inclusion_proof(&leaves[..size], t.index).unwrap(),
            t.proof,
            "{dir}"
        );
        assert_eq!(
            root_from_inclusion_proof(&t.leaf, t.index, t.size, &t.proof),
            Ok(t.root)
        );
        checked += 1;
    }
    let single = incl["inclusion/single-entry/matching-root-and-leaf.json"]
        .typed()
        .unwrap();
    let data_leaf = leaf_hash(b"data");
    assert_eq!((single.leaf, single.root), (data_leaf, root(&[data_leaf])));
    assert_eq!(inclusion_proof(&[data_leaf], 0).unwrap(), single.proof);
    checked += 1;

    let cons = load::<ConsistencyProbe>("consistency");
    for (name, dir) in numbered_happy_paths(&cons, "consistency") {
        let t = cons[&name].typed().unwrap();
        let (s1, s2) = (
            usize::try_from(t.size1).unwrap(),
            usize::try_from(t.size2).unwrap(),
        );
        assert_eq!(t.root1, root(&leaves[..s1]), "{dir}: root1");
        assert_eq!(t.root2, root(&leaves[..s2]), "{dir}: root2");
        assert_eq!(
            consistency_proof(&leaves[..s2], t.size1).unwrap(),
            t.proof,
            "{dir}"
        );
        assert_eq!(
            root_from_consistency_proof(t.size1, t.size2, &t.proof, &t.root1),
            Ok(t.root2)
        );
        checked += 1;
    }
    assert_eq!(checked, 5 + 1 + 5);
}

// ---------------------------------------------------------------------------
// Corruptions, ported from cmd/proofgen (which generated the vector files).
// Where Go uses a byte string that is not 32 bytes long ("WrongLeaf",
// "WrongRoot", the empty garbage element), a 32-byte stand-in is used so the
// corruption reaches the verifier instead of stopping at `hash_from_slice`.
// ---------------------------------------------------------------------------

fn garbage() -> Hash {
    [0u8; HASH_SIZE]
}

/// Port of `invalidInclusionProof`.
fn corrupt_inclusion(p: &Incl) -> Vec<(String, Incl)> {
    let some = h32(SOME_HASH);
    let with = |desc: &str, f: &dyn Fn(&mut Incl)| {
        let mut q = p.clone();
        f(&mut q);
        (desc.to_string(), q)
    };
    let mut ret = vec![
        with("leafIdx sub @1", &|q| q.index = q.index.wrapping_sub(1)),
        with("leafIdx plus @1", &|q| q.index = q.index.wrapping_add(1)),
        with("leafIdx XOR @2", &|q| q.index ^= 2),
        with("treeSize mul @2", &|q| q.size = q.size.wrapping_mul(2)),
        with("treeSize div @2", &|q| q.size /= 2),
        with("wrong leaf", &|q| q.leaf = leaf_hash(b"WrongLeaf")),
        with("empty root", &|q| q.root = empty_root()),
        with("random root", &|q| q.root = some),
        with("trailing garbage", &|q| {
            q.proof = extend(&q.proof, &[garbage()])
        }),
        with("trailing root", &|q| q.proof = extend(&q.proof, &[q.root])),
        with("preceding garbage", &|q| {
            q.proof = prepend(&q.proof, &[garbage()])
        }),
        with("preceding root", &|q| {
            q.proof = prepend(&q.proof, &[q.root])
        }),
    ];
    let ln = p.proof.len();
    for i in 0..ln {
        ret.push(with(&format!("modified proof[{i}] bit @3"), &|q| {
            q.proof[i][0] ^= 8;
        }));
    }
    if ln > 0 {
        ret.push(with("removed component", &|q| q.proof.truncate(ln - 1)));
    }
    if ln > 1 {
        ret.push(with("inserted component", &|q| {
            q.proof = prepend(&q.proof[1..], &[q.proof[0], some]);
        }));
    }
    ret
}

/// Port of `invalidConsistencyProof`.
fn corrupt_consistency(p: &Cons) -> Vec<(String, Cons)> {
    let wrong_root = leaf_hash(b"WrongRoot");
    let with = |desc: &str, f: &dyn Fn(&mut Cons)| {
        let mut q = p.clone();
        f(&mut q);
        (desc.to_string(), q)
    };
    let mut ret = vec![
        with("size1 sub @1", &|q| q.size1 = q.size1.wrapping_sub(1)),
        with("size1 plus @1", &|q| q.size1 = q.size1.wrapping_add(1)),
        with("size1 XOR @2", &|q| q.size1 ^= 2),
        with("size2 mul @2", &|q| q.size2 = q.size2.wrapping_mul(2)),
        with("size2 div @2", &|q| q.size2 /= 2),
        with("wrong root1", &|q| q.root1 = wrong_root),
        with("wrong root2", &|q| q.root2 = wrong_root),
        with("swapped roots", &|q| {
            std::mem::swap(&mut q.root1, &mut q.root2)
        }),
        with("empty proof", &|q| q.proof.clear()),
        with("trailing garbage", &|q| {
            q.proof = extend(&q.proof, &[garbage()])
        }),
        with("trailing root1", &|q| {
            q.proof = extend(&q.proof, &[q.root1])
        }),
        with("trailing root2", &|q| {
            q.proof = extend(&q.proof, &[q.root2])
        }),
        with("preceding garbage", &|q| {
            q.proof = prepend(&q.proof, &[garbage()])
        }),
        with("preceding root1", &|q| {
            q.proof = prepend(&q.proof, &[q.root1])
        }),
        with("preceding root2", &|q| {
            q.proof = prepend(&q.proof, &[q.root2])
        }),
        with("preceding proof @0", &|q| {
            q.proof = prepend(&q.proof, &[q.proof[0]])
        }),
    ];
    let ln = p.proof.len();
    if ln > 0 {
        ret.push(with("truncated proof", &|q| q.proof.truncate(ln - 1)));
    }
    for i in 0..ln {
        ret.push(with(&format!("modified proof@{i} bit @4"), &|q| {
            q.proof[i][0] ^= 16;
        }));
    }
    ret
}

#[derive(Debug, Default)]
struct CorruptionTally {
    generated: usize,
    identical_to_file: usize,
    stand_in: usize,
}

/// Checks one generated corruption: it must be rejected, its vector file
/// must exist, and (unless Go used a non-32-byte value) it must be
/// byte-for-byte the probe stored in that file.
fn check_generated<T: PartialEq + std::fmt::Debug>(
    tally: &mut CorruptionTally,
    covered: &mut BTreeSet<String>,
    file: &str,
    probe: &T,
    file_probe: Option<Result<T, ProofError>>,
    verdict: Result<(), ProofError>,
) {
    assert!(
        verdict.is_err(),
        "{file}: corrupted proof accepted: {probe:?}"
    );
    tally.generated += 1;
    match file_probe {
        None => panic!("{file}: generated corruption has no vector file"),
        Some(Ok(from_file)) => {
            assert_eq!(&from_file, probe, "{file}: port differs from vector");
            tally.identical_to_file += 1;
        }
        Some(Err(ProofError::InvalidHashLength { .. })) => tally.stand_in += 1,
        Some(Err(e)) => panic!("{file}: {e}"),
    }
    covered.insert(file.to_string());
}

#[test]
fn ported_inclusion_corruptions_are_rejected() {
    let probes = load::<InclusionProbe>("inclusion");
    let mut tally = CorruptionTally::default();
    let mut covered = BTreeSet::new();
    let happy = numbered_happy_paths(&probes, "inclusion");
    assert_eq!(happy.len(), 5);
    for (name, dir) in &happy {
        let base = probes[name].typed().unwrap();
        for (desc, q) in corrupt_inclusion(&base) {
            let file = format!("{dir}/{}", file_name(&desc));
            let from_file = probes.get(&file).map(InclusionProbe::typed);
            check_generated(&mut tally, &mut covered, &file, &q, from_file, q.verify());
        }
        covered.insert(name.clone());
    }
    // Every file of the numbered directories is reproduced by the port.
    let numbered: BTreeSet<_> = probes
        .keys()
        .filter(|k| happy.iter().any(|(_, d)| k.starts_with(&format!("{d}/"))))
        .cloned()
        .collect();
    assert_eq!(numbered, covered);
    eprintln!("inclusion corruptions: {tally:?}");
    assert_eq!(
        (tally.generated, tally.identical_to_file, tally.stand_in),
        (77, 62, 15)
    );
}

#[test]
fn ported_consistency_corruptions_are_rejected() {
    let probes = load::<ConsistencyProbe>("consistency");
    let mut tally = CorruptionTally::default();
    let mut covered = BTreeSet::new();
    let happy = numbered_happy_paths(&probes, "consistency");
    assert_eq!(happy.len(), 5);
    for (name, dir) in &happy {
        let base = probes[name].typed().unwrap();
        covered.insert(name.clone());
        // proofgen only corrupts non-trivial proofs.
        if base.proof.is_empty() {
            continue;
        }
        for (desc, q) in corrupt_consistency(&base) {
            let file = format!("{dir}/{}", file_name(&desc));
            let from_file = probes.get(&file).map(ConsistencyProbe::typed);
            check_generated(&mut tally, &mut covered, &file, &q, from_file, q.verify());
        }
    }
    let numbered: BTreeSet<_> = probes
        .keys()
        .filter(|k| happy.iter().any(|(_, d)| k.starts_with(&format!("{d}/"))))
        .cloned()
        .collect();
    assert_eq!(numbered, covered);
    eprintln!("consistency corruptions: {tally:?}");
    assert_eq!(
        (tally.generated, tally.identical_to_file, tally.stand_in),
        (79, 63, 16)
    );
}

/// Beyond the Go vectors: every single-bit flip of every proof element, leaf
/// hash and root of every accepted vector must be rejected.
#[test]
fn every_single_bit_flip_is_rejected() {
    let mut flips = 0usize;
    let bits = HASH_SIZE * 8;

    let incl = load::<InclusionProbe>("inclusion");
    let mut bases = 0;
    for p in incl.values().filter(|p| !p.want_err) {
        let base = p.typed().unwrap();
        assert_eq!(base.verify(), Ok(()));
        bases += 1;
        for bit in 0..bits {
            let mut variants = vec![
                Incl {
                    leaf: flip_bit(&base.leaf, bit),
                    ..base.clone()
                },
                Incl {
                    root: flip_bit(&base.root, bit),
                    ..base.clone()
                },
            ];
            for i in 0..base.proof.len() {
                let mut q = base.clone();
                q.proof[i] = flip_bit(&q.proof[i], bit);
                variants.push(q);
            }
            for q in variants {
                assert!(q.verify().is_err(), "accepted bit flip {bit}: {q:?}");
                flips += 1;
            }
        }
    }
    assert_eq!(bases, 6);

    let cons = load::<ConsistencyProbe>("consistency");
    let mut bases = 0;
    for p in cons.values().filter(|p| !p.want_err) {
        let Ok(base) = p.typed() else { continue }; // TYPED_API_DEVIATION
        assert_eq!(base.verify(), Ok(()));
        bases += 1;
        for bit in 0..bits {
            let mut variants = vec![
                Cons {
                    root1: flip_bit(&base.root1, bit),
                    ..base.clone()
                },
                Cons {
                    root2: flip_bit(&base.root2, bit),
                    ..base.clone()
                },
            ];
            for i in 0..base.proof.len() {
                let mut q = base.clone();
                q.proof[i] = flip_bit(&q.proof[i], bit);
                variants.push(q);
            }
            for q in variants {
                assert!(q.verify().is_err(), "accepted bit flip {bit}: {q:?}");
                flips += 1;
            }
        }
    }
    assert_eq!(bases, 5);
    eprintln!("single-bit flips rejected: {flips}");
    // Inclusion: 6 probes x (leaf + root) + 10 proof hashes = 22 hashes;
    // consistency: 5 probes x 2 roots + 11 proof hashes = 21 hashes.
    assert_eq!(flips, (22 + 21) * bits);
}

// ---------------------------------------------------------------------------
// Round trips and edge cases.
// ---------------------------------------------------------------------------

fn numbered_leaves(n: usize) -> Vec<Hash> {
    (0..n as u64).map(|i| leaf_hash(&i.to_be_bytes())).collect()
}

/// RFC 6962 generation and the Go-ported verification agree for every
/// index and size pair of every tree up to 70 leaves.
#[test]
fn round_trip_all_small_trees() {
    let all = numbered_leaves(70);
    let roots: Vec<Hash> = (0..=all.len()).map(|n| root(&all[..n])).collect();
    for n in 1..=all.len() {
        let (leaves, size) = (&all[..n], n as u64);
        for i in 0..size {
            let proof = inclusion_proof(leaves, i).unwrap();
            let leaf = &leaves[i as usize];
            assert_eq!(
                verify_inclusion(leaf, i, size, &proof, &roots[n]),
                Ok(()),
                "{i}/{n}"
            );
            // The same proof does not verify for the neighbouring leaf.
            if i + 1 < size {
                assert!(
                    verify_inclusion(&leaves[i as usize + 1], i, size, &proof, &roots[n]).is_err()
                );
            }
        }
        for m in 1..=n {
            let proof = consistency_proof(leaves, m as u64).unwrap();
            assert_eq!(proof.is_empty(), m == n);
            assert_eq!(
                verify_consistency(m as u64, size, &proof, &roots[m], &roots[n]),
                Ok(()),
                "{m}->{n}"
            );
            if m < n {
                assert!(
                    verify_consistency(m as u64, size, &proof, &roots[m - 1], &roots[n]).is_err()
                );
            }
        }
    }
}

#[test]
fn generation_errors() {
    let leaves = numbered_leaves(5);
    assert_eq!(
        inclusion_proof(&[], 0),
        Err(ProofError::IndexOutOfRange { index: 0, size: 0 })
    );
    assert_eq!(
        inclusion_proof(&leaves, 5),
        Err(ProofError::IndexOutOfRange { index: 5, size: 5 })
    );
    assert!(inclusion_proof(&leaves, u64::MAX).is_err());
    assert_eq!(
        consistency_proof(&leaves, 0),
        Err(ProofError::InvalidSizes { size1: 0, size2: 5 })
    );
    assert_eq!(
        consistency_proof(&leaves, 6),
        Err(ProofError::InvalidSizes { size1: 6, size2: 5 })
    );
    assert_eq!(consistency_proof(&leaves, 5), Ok(vec![]));
    assert_eq!(inclusion_proof(&leaves[..1], 0), Ok(vec![]));
}

#[test]
fn verification_edge_cases() {
    let leaves = numbered_leaves(8);
    let (r4, r8) = (root(&leaves[..4]), root(&leaves));
    let e = empty_root();
    // Equal sizes: empty proof and equal roots required.
    assert_eq!(verify_consistency(4, 4, &[], &r4, &r4), Ok(()));
    assert!(matches!(
        verify_consistency(4, 4, &[], &r4, &r8),
        Err(ProofError::RootMismatch { .. })
    ));
    assert_eq!(
        verify_consistency(4, 4, &[r4], &r4, &r4),
        Err(ProofError::WrongProofSize { got: 1, want: 0 })
    );
    // size1 == 0 is always rejected, even against the empty tree.
    for s2 in [0, 1, 8] {
        assert_eq!(
            verify_consistency(0, s2, &[], &e, &e),
            Err(ProofError::InvalidSizes {
                size1: 0,
                size2: s2
            })
        );
    }
    assert_eq!(
        verify_consistency(8, 4, &[], &r8, &r4),
        Err(ProofError::InvalidSizes { size1: 8, size2: 4 })
    );
    // Power-of-two old size: the old root is not repeated in the proof.
    let proof = consistency_proof(&leaves, 4).unwrap();
    assert_eq!(proof, vec![root(&leaves[4..])]);
    assert_eq!(verify_consistency(4, 8, &proof, &r4, &r8), Ok(()));
    assert_eq!(
        verify_consistency(4, 8, &[], &r4, &r8),
        Err(ProofError::WrongProofSize { got: 0, want: 1 })
    );
    // Inclusion index checks.
    assert_eq!(
        verify_inclusion(&leaves[0], 0, 0, &[], &e),
        Err(ProofError::IndexOutOfRange { index: 0, size: 0 })
    );
    assert_eq!(verify_inclusion(&leaves[0], 0, 1, &[], &leaves[0]), Ok(()));
}

/// Sizes near `u64::MAX` (where Go relies on shifts by 64 yielding 0) must
/// produce errors, never panics or overflows.
#[test]
fn huge_sizes_do_not_panic() {
    let h = leaf_hash(b"x");
    let big = [
        0u64,
        1,
        2,
        (1 << 63) - 1,
        1 << 63,
        (1 << 63) + 1,
        u64::MAX - 1,
        u64::MAX,
    ];
    for proof_len in [0usize, 1, 63, 64, 65, 66, 130] {
        let proof = vec![h; proof_len];
        for &a in &big {
            for &b in &big {
                let _ = verify_inclusion(&h, a, b, &proof, &h);
                let _ = root_from_inclusion_proof(&h, a, b, &proof);
                let _ = verify_consistency(a, b, &proof, &h, &h);
                let _ = root_from_consistency_proof(a, b, &proof, &h);
            }
        }
    }
    // Index 0 in a tree of 2^63 + 1 leaves: 63 siblings inside the left
    // perfect subtree plus the last leaf. The paths diverge at level 64 (the
    // Go shift-by-64 case, giving 0 border hashes).
    assert_eq!(
        root_from_inclusion_proof(&h, 0, (1 << 63) + 1, &[]),
        Err(ProofError::WrongProofSize { got: 0, want: 64 })
    );
    assert_eq!(
        root_from_inclusion_proof(&h, u64::MAX - 1, u64::MAX, &[]),
        Err(ProofError::WrongProofSize { got: 0, want: 63 })
    );
    // A perfect old tree of 2^63 leaves inside one of 2^64 - 1: the proof is
    // just the root of the right subtree of 2^63 - 1 leaves.
    assert_eq!(
        root_from_consistency_proof(1 << 63, u64::MAX, &[], &h),
        Err(ProofError::WrongProofSize { got: 0, want: 1 })
    );
    assert_eq!(
        root_from_consistency_proof(1 << 63, u64::MAX, &[h], &h),
        Ok(node_hash(&h, &h))
    );
}

#[test]
fn hash_from_slice_and_errors() {
    assert_eq!(hash_from_slice(&[7u8; 32]), Ok([7u8; 32]));
    for len in [0usize, 9, 31, 33, 64] {
        assert_eq!(
            hash_from_slice(&vec![0u8; len]),
            Err(ProofError::InvalidHashLength { got: len })
        );
    }
    let err: Box<dyn std::error::Error> = Box::new(ProofError::RootMismatch {
        expected: [0xab; 32],
        calculated: [0x01; 32],
    });
    let msg = err.to_string();
    assert!(
        msg.contains(&"ab".repeat(32)) && msg.contains(&"01".repeat(32)),
        "{msg}"
    );
    assert_eq!(
        ProofError::WrongProofSize { got: 2, want: 3 }.to_string(),
        "wrong proof size: got 2 hashes, want 3"
    );
}

#[test]
fn base64_decoder() {
    assert_eq!(b64(""), b"");
    assert_eq!(b64("V3JvbmdSb290"), b"WrongRoot");
    assert_eq!(b64("V3JvbmdMZWFm"), b"WrongLeaf");
    assert_eq!(b64("ZG9uJ3QgY2FyZSAx"), b"don't care 1");
    assert_eq!(b64("YQ=="), b"a");
    assert_eq!(b64("YWI="), b"ab");
    // Cross-check against the hex constants of the Go sources.
    assert_eq!(
        b64("bjQLnP+zepicpUTmu3gKLHiQHT+zNzh2hRGjBhevoB0="),
        hx(ROOT_HASHES[1])
    );
    assert_eq!(
        b64("q6yroAAAAAAAAAAAAAAAAAAAAAAAAAAAAGAGHgASNFY="),
        hx(SOME_HASH)
    );
}

// ---------------------------------------------------------------------------
// Stored trees: perfect subtrees kept by (level, index), as a database keeps them.
// ---------------------------------------------------------------------------

#[test]
fn stored_tree_matches_in_memory_tree() {
    let leaves: Vec<Hash> = (0u32..70).map(|i| leaf_hash(&i.to_be_bytes())).collect();
    let mut store: BTreeMap<(u32, u64), Hash> = BTreeMap::new();
    for (i, leaf) in leaves.iter().enumerate() {
        let mut get = |l: u32, x: u64| -> Result<Hash, ProofError> {
            store
                .get(&(l, x))
                .copied()
                .ok_or(ProofError::IndexOutOfRange { index: x, size: 0 })
        };
        let done = completed_nodes(0, i as u64, *leaf, &mut get).unwrap();
        // Appending leaf i completes one node per trailing one bit of i, plus the leaf.
        assert_eq!(done.len() as u32, 1 + (i as u64).trailing_ones());
        store.extend(done.into_iter().map(|(l, x, h)| ((l, x), h)));
    }
    // Every perfect subtree of 70 leaves: 70 leaves, 35 pairs, 17 quads, and so on.
    assert_eq!(store.len(), 70 + 35 + 17 + 8 + 4 + 2 + 1);
    let mut get = |l: u32, x: u64| -> Result<Hash, ProofError> {
        store
            .get(&(l, x))
            .copied()
            .ok_or(ProofError::IndexOutOfRange { index: x, size: 0 })
    };
    for n in 1..=70u64 {
        let r = subtree_root(0, n, &mut get).unwrap();
        assert_eq!(r, root(&leaves[..n as usize]), "root of {n}");
        for i in [0, n / 2, n - 1] {
            let p = inclusion_proof_with(n, i, &mut get).unwrap();
            assert_eq!(p, inclusion_proof(&leaves[..n as usize], i).unwrap());
            verify_inclusion(&leaves[i as usize], i, n, &p, &r).unwrap();
        }
        for m in [1, n / 2 + 1, n] {
            let p = consistency_proof_with(m, n, &mut get).unwrap();
            let old = root(&leaves[..m as usize]);
            verify_consistency(m, n, &p, &old, &r).unwrap();
        }
    }
    assert_eq!(subtree_root(0, 0, &mut get).unwrap(), empty_root());
    assert!(matches!(
        inclusion_proof_with(5, 5, &mut get),
        Err(ProofError::IndexOutOfRange { index: 5, size: 5 })
    ));
    assert!(matches!(
        consistency_proof_with(0, 5, &mut get),
        Err(ProofError::InvalidSizes { .. })
    ));
    // A tree larger than the store: the missing node is the store's error, not a panic.
    assert!(subtree_root(0, 71, &mut get).is_err());
}

#[test]
fn the_frontier_knows_the_root_at_every_size() {
    let leaves: Vec<Hash> = (0u32..100).map(|i| leaf_hash(&i.to_be_bytes())).collect();
    let mut f = Frontier::new();
    assert_eq!(f.root(), empty_root());
    for (i, l) in leaves.iter().enumerate() {
        f.push(*l);
        assert_eq!(f.size(), i as u64 + 1);
        assert_eq!(f.root(), root(&leaves[..=i]), "size {}", i + 1);
    }
}

#[test]
fn the_in_memory_tree_agrees_with_the_slice_functions_at_every_size() {
    let leaves: Vec<Hash> = (0..70u32).map(|i| leaf_hash(&i.to_be_bytes())).collect();
    let mut tree = Tree::new();
    assert_eq!(tree.root(), empty_root());
    for (n, l) in leaves.iter().enumerate() {
        tree.push(*l);
        let size = n as u64 + 1;
        assert_eq!(tree.size(), size);
        assert_eq!(tree.root(), root(&leaves[..=n]), "root at {size}");
        for index in [0, size / 2, size - 1] {
            assert_eq!(
                tree.inclusion_proof(index, size).unwrap(),
                inclusion_proof(&leaves[..=n], index).unwrap()
            );
        }
        for old in [1, size / 2 + 1, size] {
            assert_eq!(
                tree.consistency_proof(old, size).unwrap(),
                consistency_proof(&leaves[..=n], old).unwrap()
            );
            assert_eq!(tree.root_at(old).unwrap(), root(&leaves[..old as usize]));
        }
    }
    assert!(tree.inclusion_proof(0, 71).is_err());
    assert!(tree.consistency_proof(3, 71).is_err());
    // Undoing pushes gives back each earlier tree, down to the empty one.
    for n in (0..70).rev() {
        tree.pop();
        assert_eq!(tree.size(), n as u64);
        assert_eq!(tree.root(), root(&leaves[..n]), "root after pop to {n}");
    }
    tree.pop();
    assert_eq!(tree.size(), 0);
}
