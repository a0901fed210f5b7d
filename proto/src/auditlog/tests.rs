//! Anchors, proofs and whole-log checks, each against its forgeries.

use super::*;
use crate::testkit::{Kit, to_signer};
use alpr_pki::issue::{self, LeafSpec};
use alpr_pki::{AgencyKind, Signer};

fn kit() -> (Kit, Signer, Signer, Signer) {
    let mut k = Kit::new();
    k.agency("CA0000001", "CA", AgencyKind::Local);
    k.agency("CA0000002", "CA", AgencyKind::Local);
    let node = k.signer("CA0000001", Role::Node, None);
    let other = k.signer("CA0000002", Role::Node, None);
    let spec = LeafSpec {
        role: Role::Broker,
        user: None,
        agency: None,
        jurisdiction: None,
        hosts: vec!["broker".into()],
        days: 10,
    };
    let broker = to_signer(&issue::new_leaf(&k.root, &spec).unwrap());
    (k, node, other, broker)
}

/// A log of `n` entries as stored.
fn log(n: u64, salt: &str) -> Vec<LoggedEntry> {
    let mut prev = GENESIS.to_owned();
    (1..=n)
        .map(|seq| {
            let entry = format!("{{\"at\":{seq},\"event\":\"ingest\",\"detail\":\"{salt}\"}}");
            let hash = chain_hash(&prev, &entry);
            let e = LoggedEntry {
                seq,
                entry,
                prev_hash: prev.clone(),
                hash: hash.clone(),
            };
            prev = hash;
            e
        })
        .collect()
}

fn leaves(entries: &[LoggedEntry]) -> Vec<Hash> {
    entries.iter().map(|e| leaf(&e.hash).unwrap()).collect()
}

fn head(signer: &Signer, ori: &str, entries: &[LoggedEntry]) -> Signed {
    let th = AuditTreeHead {
        ori: ori.into(),
        size: entries.len() as u64,
        root: merkle::root(&leaves(entries)).to_vec(),
        chain_head: entries
            .last()
            .map(|e| hex::decode(&e.hash).unwrap())
            .unwrap_or_default(),
        timestamp: alpr_pki::now_unix(),
    };
    envelope::seal(signer, AUDIT_TREE_HEAD, &th).unwrap()
}

fn anchor(broker: &Signer, head: Signed) -> AuditAnchor {
    let r = AnchorReceipt {
        audit_tree_head: head.payload.clone(),
        anchored_at: alpr_pki::now_unix(),
    };
    AuditAnchor {
        receipt: Some(envelope::seal(broker, ANCHOR_RECEIPT, &r).unwrap()),
        head: Some(head),
        cosignatures: vec![],
    }
}

fn bundle(entries: &[LoggedEntry], pick: &[u64], a: &AuditAnchor) -> ProofBundle {
    let l = leaves(entries);
    ProofBundle {
        format: PROOF_FORMAT.into(),
        ori: "CA0000001".into(),
        query_id: None,
        entries: pick
            .iter()
            .map(|&s| ProvenEntry {
                entry: entries[s as usize - 1].clone(),
                proof: merkle::inclusion_proof(&l, s - 1)
                    .unwrap()
                    .iter()
                    .map(hex::encode)
                    .collect(),
            })
            .collect(),
        anchor: anchor_to_hex(a),
    }
}

#[test]
fn an_anchored_entry_proves_and_every_forgery_names_what_failed() {
    let (k, node, other, broker) = kit();
    let entries = log(37, "a");
    let a = anchor(&broker, head(&node, "CA0000001", &entries));
    let good = bundle(&entries, &[1, 20, 37], &a);
    let p = verify_proof(&k.trust, &good).unwrap();
    assert_eq!(p.seqs, vec![1, 20, 37]);
    assert_eq!(p.anchor.head.size, 37);

    // A corrupt proof: one hash flipped.
    let mut b = good.clone();
    b.entries[1].proof[0] = "00".repeat(32);
    let e = verify_proof(&k.trust, &b).unwrap_err().to_string();
    assert!(
        e.contains("entry 20 is not in the log anchored at size 37"),
        "{e}"
    );
    // A proof hash that is not a hash.
    let mut b = good.clone();
    b.entries[0].proof[0] = "xyz".into();
    let e = verify_proof(&k.trust, &b).unwrap_err().to_string();
    assert!(e.contains("entry 1: proof hash \"xyz\""), "{e}");
    // An edited entry.
    let mut b = good.clone();
    b.entries[2].entry.entry = b.entries[2].entry.entry.replace("ingest", "export");
    let e = verify_proof(&k.trust, &b).unwrap_err().to_string();
    assert!(e.contains("entry 37: its content does not match"), "{e}");
    // A tree head signed by the wrong key: another agency's node signs CA0000001's head.
    let b = bundle(
        &entries,
        &[5],
        &anchor(&broker, head(&other, "CA0000001", &entries)),
    );
    let e = verify_proof(&k.trust, &b).unwrap_err().to_string();
    assert!(
        e.contains("signed by") && e.contains("not by a node of CA0000001"),
        "{e}"
    );
    // An anchor from another node, offered as CA0000001's.
    let b = bundle(
        &entries,
        &[5],
        &anchor(&broker, head(&other, "CA0000002", &entries)),
    );
    let e = verify_proof(&k.trust, &b).unwrap_err().to_string();
    assert!(
        e.contains("an audit tree head of CA0000002 where one of CA0000001 was expected"),
        "{e}"
    );
    // A receipt signed by the node itself instead of the broker.
    let b = bundle(
        &entries,
        &[5],
        &anchor(&node, head(&node, "CA0000001", &entries)),
    );
    let e = verify_proof(&k.trust, &b).unwrap_err().to_string();
    assert!(e.contains("not by a broker"), "{e}");
    // A receipt for another head.
    let mut a2 = a.clone();
    a2.receipt = anchor(&broker, head(&node, "CA0000001", &entries[..30])).receipt;
    let e = verify_proof(&k.trust, &bundle(&entries, &[5], &a2))
        .unwrap_err()
        .to_string();
    assert!(e.contains("receipt is for another tree head"), "{e}");
    // A bundle that says it is about a query its entries do not name.
    let mut b = good.clone();
    b.query_id = Some("ab".repeat(16));
    let e = verify_proof(&k.trust, &b).unwrap_err().to_string();
    assert!(e.contains("entry 1 is not about query abab"), "{e}");
    // A previous hash that is not a hash.
    let mut b = good.clone();
    b.entries[0].entry.prev_hash = "zz".into();
    let e = verify_proof(&k.trust, &b).unwrap_err().to_string();
    assert!(e.contains("previous hash is not 32 bytes"), "{e}");
    // A head of an empty log anchors nothing.
    let e = verify_proof(
        &k.trust,
        &bundle(
            &entries,
            &[5],
            &anchor(&broker, head(&node, "CA0000001", &[])),
        ),
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("empty log"), "{e}");
    // Garbage anchor.
    let mut b = good.clone();
    b.anchor = "zz".into();
    let e = verify_proof(&k.trust, &b).unwrap_err().to_string();
    assert!(e.contains("anchor is not hex"), "{e}");
    b.anchor = "0102".into();
    assert!(verify_proof(&k.trust, &b).is_err());
}

#[test]
fn a_whole_log_matches_its_anchor_and_a_rewritten_deleted_or_second_log_does_not() {
    let (k, node, _, broker) = kit();
    let entries = log(40, "a");
    let a = verify_anchor(
        &k.trust,
        &anchor(&broker, head(&node, "CA0000001", &entries[..32])),
        "CA0000001",
    )
    .unwrap();
    let check = |log: &[LoggedEntry]| -> Result<(), Error> {
        let mut c = LogChecker::new();
        for e in log {
            c.push(e)?;
            if c.size() == a.head.size {
                c.matches(&a.head)?;
            }
        }
        c.finish(&a.head)
    };
    check(&entries).unwrap();
    // Rewritten from entry 10 and re-chained: every link holds, but not the anchored root.
    let mut forged = entries[..9].to_vec();
    let mut prev = forged[8].hash.clone();
    for e in &entries[9..] {
        let entry = e.entry.replace("ingest", "export");
        let hash = chain_hash(&prev, &entry);
        forged.push(LoggedEntry {
            seq: e.seq,
            entry,
            prev_hash: prev.clone(),
            hash: hash.clone(),
        });
        prev = hash;
    }
    let e = check(&forged).unwrap_err().to_string();
    assert!(e.contains("not the ones anchored"), "{e}");
    // A second log altogether.
    let e = check(&log(40, "b")).unwrap_err().to_string();
    assert!(e.contains("not the ones anchored"), "{e}");
    // The tail deleted down to 20 entries.
    let e = check(&entries[..20]).unwrap_err().to_string();
    assert!(e.contains("has 20 entries but 32 were anchored"), "{e}");
    // A gap and a broken link.
    let mut gap = entries.clone();
    gap.remove(4);
    assert!(
        check(&gap)
            .unwrap_err()
            .to_string()
            .contains("entry 5 is missing")
    );
    let mut swapped = entries.clone();
    swapped[6].prev_hash = swapped[4].hash.clone();
    assert!(check(&swapped).is_err());
}

#[test]
fn leaves_are_32_byte_hashes() {
    assert!(leaf("00").is_err());
    assert!(leaf(&"g".repeat(64)).is_err());
    assert_eq!(
        leaf(GENESIS).unwrap(),
        merkle::leaf_hash(&[0u8; 32]),
        "the leaf is over the raw hash, not its hex"
    );
}
