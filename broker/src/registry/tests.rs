use alpr_proto::agreement::AgreementStatus;
use alpr_proto::merkle;

use super::*;
use crate::store;
use crate::testkit::{Kit, NEVADA, PROVIDER, REQUESTER};

/// A registry of `n` registrations (alternating requesters), its database, and the leaves.
fn registry_of(kit: &Kit, n: usize) -> (Registry, Db, Vec<Vec<u8>>) {
    let mut db = store::open(&kit.dir().join("broker.db")).unwrap();
    let mut reg = Registry::load(&db, &kit.trust).unwrap();
    let now = alpr_pki::now_unix();
    let mut leaves = Vec::new();
    for i in 0..n {
        let requester = if i % 2 == 0 { REQUESTER } else { NEVADA };
        let sa = kit.agreement(
            PROVIDER,
            requester,
            &format!("number {i}"),
            now,
            now + 86_400,
        );
        let (leaf, _) = kit.registration(&sa, now);
        let (index, _) = reg
            .append(&mut db, &kit.trust, &kit.broker, leaf.clone(), now)
            .unwrap();
        assert_eq!(index, i as u64);
        leaves.push(leaf);
    }
    (reg, db, leaves)
}

fn hashes(leaves: &[Vec<u8>]) -> Vec<merkle::Hash> {
    leaves.iter().map(|l| merkle::leaf_hash(l)).collect()
}

#[test]
fn an_empty_registry_has_the_empty_root_and_no_stored_head() {
    let kit = Kit::new();
    let (reg, db, _) = registry_of(&kit, 0);
    assert_eq!(reg.size(), 0);
    assert_eq!(reg.root(), merkle::empty_root());
    assert!(latest_head(&db).unwrap().is_none());
    assert!(reg.entries(0, 10).is_empty());
}

#[test]
fn each_append_signs_a_head_over_the_proto_merkle_root() {
    let kit = Kit::new();
    let (reg, db, leaves) = registry_of(&kit, 3);
    assert_eq!(reg.size(), 3);
    assert_eq!(reg.root(), merkle::root(&hashes(&leaves)));
    let now = alpr_pki::now_unix();
    let latest = latest_head(&db).unwrap().unwrap();
    let head = alpr_proto::registry::verify_head(&kit.trust, &latest, now).unwrap();
    assert_eq!((head.size, head.root), (3, reg.root()));
    for size in 1..=3u64 {
        let sth = head_of_size(&db, size).unwrap().unwrap();
        let head = alpr_proto::registry::verify_head(&kit.trust, &sth, now).unwrap();
        assert_eq!(head.size, size);
        assert_eq!(head.root, merkle::root(&hashes(&leaves[..size as usize])));
    }
    assert!(head_of_size(&db, 4).unwrap().is_none());
    assert_eq!(reg.entries(1, 99), leaves[1..].to_vec());
    assert!(reg.entries(3, 5).is_empty());
}

#[test]
fn inclusion_and_consistency_proofs_verify_with_proto_merkle() {
    let kit = Kit::new();
    let (reg, _db, leaves) = registry_of(&kit, 5);
    let h = hashes(&leaves);
    for size in 1..=5u64 {
        let root = merkle::root(&h[..size as usize]);
        for index in 0..size {
            let proof = reg.inclusion(index, size).unwrap();
            merkle::verify_inclusion(&h[index as usize], index, size, &proof, &root).unwrap();
        }
        for first in 1..size {
            let proof = reg.consistency(first, size).unwrap();
            let old = merkle::root(&h[..first as usize]);
            merkle::verify_consistency(first, size, &proof, &old, &root).unwrap();
        }
    }
    // A proof for another leaf does not verify.
    let proof = reg.inclusion(1, 5).unwrap();
    assert!(merkle::verify_inclusion(&h[2], 1, 5, &proof, &reg.root()).is_err());
    // Nothing to prove from an empty tree or to the same size.
    assert!(reg.consistency(0, 5).unwrap().is_empty());
    assert!(reg.consistency(3, 3).unwrap().is_empty());
}

#[test]
fn proofs_beyond_the_log_are_refused_as_bad_input() {
    let kit = Kit::new();
    let (reg, _db, _) = registry_of(&kit, 2);
    let e = reg.inclusion(0, 3).unwrap_err();
    assert!(
        matches!(&e, Error::Usage(m) if m == "tree size 3 exceeds the log (2)"),
        "{e}"
    );
    assert!(matches!(reg.inclusion(2, 2), Err(Error::Usage(_))));
    let e = reg.consistency(1, 3).unwrap_err();
    assert!(
        matches!(&e, Error::Usage(m) if m == "bad sizes 1..3 (log has 2)"),
        "{e}"
    );
    assert!(matches!(reg.consistency(2, 1), Err(Error::Usage(_))));
}

#[test]
fn a_reload_replays_the_same_registry() {
    let kit = Kit::new();
    let (reg, db, _) = registry_of(&kit, 3);
    drop(db);
    let db = store::open(&kit.dir().join("broker.db")).unwrap();
    let again = Registry::load(&db, &kit.trust).unwrap();
    assert_eq!(again.size(), 3);
    assert_eq!(again.root(), reg.root());
    assert_eq!(
        again.records().keys().collect::<Vec<_>>(),
        reg.records().keys().collect::<Vec<_>>()
    );
    for v in again.views() {
        assert_eq!(v.status, AgreementStatus::Active);
        assert_eq!(again.status(&v.id), Some(AgreementStatus::Active));
        let sa = again.signed(&v.id).unwrap();
        assert_eq!(
            alpr_proto::agreement::verify(&kit.trust, &sa, alpr_pki::now_unix())
                .unwrap()
                .id,
            v.id
        );
    }
    assert!(again.signed("agr-none").is_none());
    assert!(again.status("agr-none").is_none());
}

#[test]
fn actions_change_the_status_they_sign_and_no_other() {
    let kit = Kit::new();
    let (mut reg, mut db, _) = registry_of(&kit, 2);
    let now = alpr_pki::now_unix();
    let ids: Vec<String> = reg.records().keys().cloned().collect();
    let (p, r) = {
        let t = &reg.records()[&ids[0]].agreement.terms;
        (t.provider_ori.clone(), t.requester_ori.clone())
    };
    let suspend = kit.action(&kit.regulator(), &ids[0], "suspend", (&p, &r), now);
    let (index, head) = reg
        .append(&mut db, &kit.trust, &kit.broker, suspend, now)
        .unwrap();
    assert_eq!(index, 2);
    assert_eq!(reg.status(&ids[0]), Some(AgreementStatus::Suspended));
    assert_eq!(reg.status(&ids[1]), Some(AgreementStatus::Active));
    let h = alpr_proto::registry::verify_head(&kit.trust, &head, now).unwrap();
    assert_eq!((h.size, h.root), (3, reg.root()));
    // A regulator may not revoke: refused, and nothing is stored.
    let revoke = kit.action(&kit.regulator(), &ids[1], "revoke", (&p, &r), now);
    let e = reg
        .append(&mut db, &kit.trust, &kit.broker, revoke, now)
        .unwrap_err();
    assert!(matches!(e, Error::Refused(_)), "{e}");
    assert_eq!(reg.size(), 3);
    assert_eq!(store::registry_leaves(&db).unwrap().len(), 3);
    assert_eq!(
        Registry::load(&db, &kit.trust).unwrap().status(&ids[0]),
        Some(AgreementStatus::Suspended)
    );
}

#[test]
fn a_leaf_that_does_not_verify_is_neither_appended_nor_stored() {
    let kit = Kit::new();
    let (mut reg, mut db, leaves) = registry_of(&kit, 1);
    let root = reg.root();
    let now = alpr_pki::now_unix();
    for bad in [b"not a registry event".to_vec(), leaves[0].clone()] {
        // Garbage, and a duplicate registration.
        assert!(
            reg.append(&mut db, &kit.trust, &kit.broker, bad, now)
                .is_err()
        );
    }
    assert_eq!((reg.size(), reg.root()), (1, root));
    assert_eq!(store::registry_leaves(&db).unwrap().len(), 1);
    assert!(head_of_size(&db, 2).unwrap().is_none());
}

#[test]
fn a_tampered_leaf_in_the_database_is_refused_at_load() {
    let kit = Kit::new();
    let (_, db, leaves) = registry_of(&kit, 2);
    // The provider admin's signature over the agreement, one bit off.
    let mut ev = alpr_proto::pb::RegistryEvent::decode(leaves[1].as_slice()).unwrap();
    let sig = &mut ev
        .agreement
        .as_mut()
        .unwrap()
        .provider
        .as_mut()
        .unwrap()
        .signature;
    sig[0] ^= 1;
    let forged = ev.encode_to_vec();
    db.connection()
        .unwrap()
        .execute("UPDATE registry SET leaf = ?1 WHERE idx = 1", [forged])
        .unwrap();
    let e = Registry::load(&db, &kit.trust).err().unwrap();
    assert!(
        e.to_string()
            .starts_with("registry database: entry 1 does not verify: "),
        "{e}"
    );
}

#[test]
fn a_leaf_naming_other_parties_than_its_signed_agreement_is_refused() {
    let kit = Kit::new();
    let (mut reg, mut db, _) = registry_of(&kit, 1);
    let now = alpr_pki::now_unix();
    let sa = kit.agreement(PROVIDER, REQUESTER, "other parties", now, now + 86_400);
    let (leaf, _) = kit.registration(&sa, now);
    let mut ev = alpr_proto::pb::RegistryEvent::decode(leaf.as_slice()).unwrap();
    ev.requester_ori = NEVADA.into();
    let e = reg
        .append(&mut db, &kit.trust, &kit.broker, ev.encode_to_vec(), now)
        .unwrap_err()
        .to_string();
    assert!(e.contains("differs from the signed agreement's"), "{e}");
    assert_eq!(reg.size(), 1);
}

#[test]
fn a_missing_leaf_in_the_database_is_refused_at_load() {
    let kit = Kit::new();
    let (_, db, _) = registry_of(&kit, 3);
    db.connection()
        .unwrap()
        .execute("DELETE FROM registry WHERE idx = 1", [])
        .unwrap();
    let e = Registry::load(&db, &kit.trust).err().unwrap();
    assert_eq!(e.to_string(), "registry database: entry 1 is missing");
}

#[test]
fn put_head_replaces_the_stored_head_of_its_size() {
    let kit = Kit::new();
    let (_, db, _) = registry_of(&kit, 2);
    let mut sth = head_of_size(&db, 1).unwrap().unwrap();
    let extra = sth.head.clone().unwrap();
    sth.cosignatures.push(extra);
    put_head(&db, 1, &sth).unwrap();
    assert_eq!(head_of_size(&db, 1).unwrap().unwrap(), sth);
    // The latest head is still the largest one.
    assert_eq!(
        alpr_proto::registry::verify_head(
            &kit.trust,
            &latest_head(&db).unwrap().unwrap(),
            alpr_pki::now_unix()
        )
        .unwrap()
        .size,
        2
    );
}

#[test]
fn a_stored_head_that_does_not_decode_is_reported() {
    let kit = Kit::new();
    let (_, db, _) = registry_of(&kit, 1);
    store::put_tree_head(&db, 1, b"\xff\xff\xff").unwrap();
    let e = head_of_size(&db, 1).unwrap_err();
    assert!(e.to_string().starts_with("stored tree head: "), "{e}");
    assert!(latest_head(&db).is_err());
}
