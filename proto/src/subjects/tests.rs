use super::*;

fn event(kind: &str, provider: &str, requester: &str) -> Vec<u8> {
    RegistryEvent {
        kind: kind.into(),
        provider_ori: provider.into(),
        requester_ori: requester.into(),
        logged_at: 7,
        ..Default::default()
    }
    .encode_to_vec()
}

/// The tree's definition, computed the slow way: recursion over the sorted records.
fn reference_root(records: &[(Hash, Hash)], depth: usize) -> Hash {
    match records {
        [] => EMPTY,
        [(_, leaf)] => *leaf,
        _ => {
            let split = records.partition_point(|(k, _)| !bit(k, depth));
            node_hash(
                &reference_root(&records[..split], depth + 1),
                &reference_root(&records[split..], depth + 1),
            )
        }
    }
}

fn sample_log(n: usize) -> Vec<Vec<u8>> {
    (0..n)
        .map(|i| match i % 3 {
            0 => event("sealing_key", &format!("CA{:07}", i % 17), ""),
            1 => event(
                "register",
                &format!("CA{:07}", i % 11),
                &format!("NV{:07}", i % 5),
            ),
            _ => event(
                "revoke",
                &format!("CA{:07}", i % 11),
                &format!("CA{:07}", i % 11),
            ),
        })
        .collect()
}

#[test]
fn events_concern_their_parties_or_their_publisher() {
    let ev = |k: &str, p: &str, r: &str| RegistryEvent::decode(event(k, p, r).as_slice()).unwrap();
    assert_eq!(of_event(&ev("sealing_key", "CA1", "")), vec!["key:CA1"]);
    assert_eq!(
        of_event(&ev("register", "CA1", "NV2")),
        vec!["agency:CA1", "agency:NV2"]
    );
    assert_eq!(of_event(&ev("revoke", "CA1", "CA1")), vec!["agency:CA1"]);
    assert!(of_leaf(b"\xff\xff not an event").is_empty());
}

#[test]
fn the_index_root_is_the_tree_the_module_defines_at_every_size() {
    let log = sample_log(120);
    let mut index = Index::new();
    assert_eq!(index.root(), EMPTY);
    for (i, leaf) in log.iter().enumerate() {
        index.push(i as u64, leaf);
        // Records recomputed from scratch for the log so far.
        let mut records: BTreeMap<String, Record> = BTreeMap::new();
        for (j, l) in log[..=i].iter().enumerate() {
            for s in of_leaf(l) {
                let r = records.entry(s).or_default();
                *r = r.next(j as u64, &merkle::leaf_hash(l));
            }
        }
        let mut sorted: Vec<(Hash, Hash)> = records
            .iter()
            .map(|(s, r)| (key(s), r.leaf_hash(&key(s))))
            .collect();
        sorted.sort();
        assert_eq!(index.root(), reference_root(&sorted, 0), "size {}", i + 1);
        assert_eq!(index.len(), records.len());
        for (s, r) in &records {
            assert_eq!(index.record(s), Some(*r));
        }
    }
    assert_eq!(root_of(&log), index.root());
}

#[test]
fn a_subjects_record_and_an_absence_are_proved_and_a_doctored_one_is_not() {
    let log = sample_log(90);
    let mut index = Index::new();
    for (i, leaf) in log.iter().enumerate() {
        index.push(i as u64, leaf);
    }
    let root = index.root();
    for s in ["agency:CA0000003", "agency:NV0000004", "key:CA0000016"] {
        let r = index.record(s).unwrap();
        let path = index.path(s);
        path.verify(&root, s, Some(&r)).unwrap();
        // One leaf fewer (a hidden newest event) does not verify.
        let hidden = Record {
            count: r.count - 1,
            ..r
        };
        let doctored = Path {
            end: End::Leaf {
                key: key(s),
                leaf: hidden.leaf_hash(&key(s)),
            },
            ..path.clone()
        };
        assert!(doctored.verify(&root, s, Some(&hidden)).is_err());
        // Nor does claiming the subject has no record.
        assert!(path.verify(&root, s, None).is_err());
        // Nor a changed sibling.
        let mut bent = path.clone();
        if let Some(h) = bent.siblings.first_mut() {
            h[0] ^= 1;
            assert!(bent.verify(&root, s, Some(&r)).is_err());
        }
        // Nor the record against another root.
        assert!(path.verify(&EMPTY, s, Some(&r)).is_err());
        // The wire form round-trips.
        let (siblings, other_key, other_leaf) = path.to_pb();
        let pb = crate::pb::SubjectProof {
            subject: s.into(),
            record: Some(r.to_pb()),
            siblings,
            other_key,
            other_leaf,
            entries: vec![],
        };
        let back = Path::from_pb(s, &pb, Some(&Record::from_pb(&r.to_pb()).unwrap())).unwrap();
        back.verify(&root, s, Some(&r)).unwrap();
    }
    for absent in ["agency:TX0000001", "key:NV0000004", "agency:"] {
        assert!(index.record(absent).is_none());
        let path = index.path(absent);
        path.verify(&root, absent, None).unwrap();
        // A made-up record for it does not verify.
        let made_up = Record::default().next(3, &merkle::leaf_hash(b"x"));
        assert!(path.verify(&root, absent, Some(&made_up)).is_err());
    }
}

#[test]
fn an_undone_push_gives_back_the_earlier_index() {
    let log = sample_log(40);
    let mut index = Index::new();
    for (i, leaf) in log.iter().enumerate() {
        index.push(i as u64, leaf);
    }
    let before = index.root();
    let records: Vec<_> = ["agency:CA0000001", "agency:TX0000001", "key:TX0000001"]
        .iter()
        .map(|s| index.record(s))
        .collect();
    for extra in [
        event("register", "CA0000001", "TX0000001"),
        event("sealing_key", "TX0000001", ""),
    ] {
        let undo = index.push(40, &extra);
        assert_ne!(index.root(), before);
        index.undo(undo);
        assert_eq!(index.root(), before);
    }
    let after: Vec<_> = ["agency:CA0000001", "agency:TX0000001", "key:TX0000001"]
        .iter()
        .map(|s| index.record(s))
        .collect();
    assert_eq!(records, after);
    let kept = index.record("agency:CA0000001").unwrap();
    assert_eq!(
        index.indexes("agency:CA0000001").last(),
        Some(&kept.last_index)
    );
    assert_eq!(index.indexes("agency:CA0000001").len() as u64, kept.count);
}

#[test]
fn an_empty_index_proves_every_absence() {
    let mut index = Index::new();
    let root = index.root();
    let path = index.path("agency:CA0000001");
    assert!(path.siblings.is_empty());
    path.verify(&root, "agency:CA0000001", None).unwrap();
}

/// A broker's reply for `subject` to a node holding its first `held` leaves.
fn reply(
    log: &[Vec<u8>],
    tree: &merkle::Tree,
    index: &mut Index,
    subject: &str,
    held: usize,
) -> crate::pb::SubjectProof {
    proof(
        index,
        tree,
        |i| log[i as usize].clone(),
        subject,
        held as u64,
        usize::MAX,
    )
    .unwrap()
}

#[test]
fn a_node_verifies_its_own_entries_and_catches_a_broker_that_hides_or_forges_one() {
    let log = sample_log(150);
    let mut tree = merkle::Tree::new();
    let mut index = Index::new();
    for (i, leaf) in log.iter().enumerate() {
        tree.push(merkle::leaf_hash(leaf));
        index.push(i as u64, leaf);
    }
    let (size, root, sroot) = (tree.size(), tree.root(), index.root());
    let head = (size, &root, &sroot);
    let s = "agency:CA0000002";
    let all = index.indexes(s).to_vec();
    assert!(all.len() > 4);

    // Honest, from nothing and from part way.
    let full = verify_proof(
        head,
        &Record::default(),
        &reply(&log, &tree, &mut index, s, 0),
    )
    .unwrap();
    assert!(full.complete);
    assert_eq!(full.held, index.record(s).unwrap());
    assert_eq!(full.leaves.iter().map(|(i, _)| *i).collect::<Vec<_>>(), all);
    let mut part = Record::default();
    for &i in &all[..3] {
        part = part.next(i, &merkle::leaf_hash(&log[i as usize]));
    }
    let rest = verify_proof(head, &part, &reply(&log, &tree, &mut index, s, 3)).unwrap();
    assert_eq!(rest.held, full.held);
    assert_eq!(rest.leaves.len(), all.len() - 3);
    // A subject nothing concerns.
    let none = verify_proof(
        head,
        &Record::default(),
        &reply(&log, &tree, &mut index, "agency:TX0000009", 0),
    )
    .unwrap();
    assert!(none.complete && none.leaves.is_empty());

    // A hidden entry in the middle: the reply falls short, and asking again from what it
    // gave brings an entry the node already passed.
    let mut hidden = reply(&log, &tree, &mut index, s, 0);
    hidden.entries.remove(2);
    let short = verify_proof(head, &Record::default(), &hidden).unwrap();
    assert!(!short.complete);
    let again = reply(&log, &tree, &mut index, s, short.held.count as usize);
    let err = verify_proof(head, &short.held, &again).unwrap_err();
    assert!(err.detail().contains("is not after"), "{err}");

    // The newest entry hidden behind a record that counts one fewer: not the signed index.
    let mut stale = reply(&log, &tree, &mut index, s, 0);
    stale.entries.pop();
    let r = index.record(s).unwrap();
    let mut fewer = Record::default();
    for e in &stale.entries {
        fewer = fewer.next(e.index, &merkle::leaf_hash(&e.leaf));
    }
    assert_eq!(fewer.count, r.count - 1);
    stale.record = Some(fewer.to_pb());
    let err = verify_proof(head, &Record::default(), &stale).unwrap_err();
    assert!(err.detail().contains("subjects"), "{err}");

    // A changed entry is not in the log.
    let mut forged = reply(&log, &tree, &mut index, s, 0);
    forged.entries[1].leaf = event("revoke", "CA0000002", "NV0000001");
    let err = verify_proof(head, &Record::default(), &forged).unwrap_err();
    assert!(err.detail().contains("not in the signed log"), "{err}");

    // Another agency's real entry (inclusion proof and all) is refused.
    let mut foreign = reply(&log, &tree, &mut index, s, 0);
    let other = index.indexes("key:CA0000005")[0];
    foreign.entries[1] = reply(&log, &tree, &mut index, "key:CA0000005", 0)
        .entries
        .into_iter()
        .find(|e| e.index == other)
        .unwrap();
    assert!(verify_proof(head, &Record::default(), &foreign).is_err());

    // Entries out of order.
    let mut swapped = reply(&log, &tree, &mut index, s, 0);
    swapped.entries.swap(0, 1);
    let err = verify_proof(head, &Record::default(), &swapped).unwrap_err();
    assert!(err.detail().contains("is not after"), "{err}");

    // A node that holds more than the index counts (the history was cut).
    let err = verify_proof(
        head,
        &full.held.next(size + 5, &EMPTY),
        &reply(&log, &tree, &mut index, s, 0),
    )
    .unwrap_err();
    assert!(err.detail().contains("fewer than"), "{err}");
}
