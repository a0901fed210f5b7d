use alpr_pki::{AgencyKind, Role};

use super::*;
use crate::pb::Query;
use crate::testkit::Kit;

fn setup() -> (Kit, Signer) {
    let mut kit = Kit::new();
    kit.agency("CA0560100", "US-CA", AgencyKind::Local);
    let inv = kit.signer("CA0560100", Role::Investigator, Some("b1"));
    (kit, inv)
}

fn now() -> i64 {
    alpr_pki::now_unix()
}

#[test]
fn sealed_envelope_opens_with_signer_identity() {
    let (kit, inv) = setup();
    let q = Query {
        plate: "ABC123".into(),
        ..Default::default()
    };
    let env = seal(&inv, QUERY, &q).unwrap();
    let (id, back): (_, Query) = open_as(&kit.trust, &env, QUERY, now()).unwrap();
    assert_eq!(id.user.as_deref(), Some("b1"));
    assert_eq!(back, q);
}

#[test]
fn tampered_payload_is_bad_signature() {
    let (kit, inv) = setup();
    let mut env = seal(
        &inv,
        QUERY,
        &Query {
            plate: "ABC123".into(),
            ..Default::default()
        },
    )
    .unwrap();
    let last = env.payload.len() - 1;
    env.payload[last] ^= 1;
    assert_eq!(
        open(&kit.trust, &env, QUERY, now()).unwrap_err().reason(),
        RefusalReason::BadSignature
    );
}

#[test]
fn wrong_payload_type_is_refused_even_if_relabelled() {
    let (kit, inv) = setup();
    let env = seal(&inv, QUERY, &Query::default()).unwrap();
    // Presented where an answer is expected.
    assert_eq!(
        open(&kit.trust, &env, ANSWER, now()).unwrap_err().reason(),
        RefusalReason::BadSignature
    );
    // Relabelled to pass the type check: the domain-separated signature no longer matches.
    let mut relabelled = env.clone();
    relabelled.payload_type = ANSWER.into();
    assert_eq!(
        open(&kit.trust, &relabelled, ANSWER, now())
            .unwrap_err()
            .reason(),
        RefusalReason::BadSignature
    );
}

#[test]
fn signature_without_domain_separation_is_refused() {
    let (kit, inv) = setup();
    let payload = Query::default().encode_to_vec();
    // A signature over the bare payload (no domain prefix) must not verify.
    let sig = inv.sign(&payload).unwrap();
    let env = Signed {
        payload_type: QUERY.into(),
        payload,
        signature: sig,
        cert_chain: inv.chain().iter().map(|c| c.to_vec()).collect(),
        sealed_boxes: vec![],
        sealed_box_proofs: vec![],
    };
    assert_eq!(
        open(&kit.trust, &env, QUERY, now()).unwrap_err().reason(),
        RefusalReason::BadSignature
    );
}

#[test]
fn wrong_key_is_refused() {
    let (mut kit, inv) = setup();
    kit.agency("CA0190000", "US-CA", AgencyKind::Local);
    let other = kit.signer("CA0190000", Role::Investigator, Some("b2"));
    let mut env = seal(&inv, QUERY, &Query::default()).unwrap();
    // Signature by `other`, certificate of `inv`.
    env.signature = other.sign(&signing_input(QUERY, &env.payload)).unwrap();
    assert_eq!(
        open(&kit.trust, &env, QUERY, now()).unwrap_err().reason(),
        RefusalReason::BadSignature
    );
}

#[test]
fn certificate_from_another_root_is_cert_invalid() {
    let (_, inv) = setup();
    let (other_kit, _) = setup();
    let env = seal(&inv, QUERY, &Query::default()).unwrap();
    assert_eq!(
        open(&other_kit.trust, &env, QUERY, now())
            .unwrap_err()
            .reason(),
        RefusalReason::CertInvalid
    );
}

/// A sealed query to the widest fan-out a query may name (`admission::MAX_TARGETS`) on the
/// post-quantum suite: one ciphertext of the query and one fixed-size box per target, so
/// What the broker sends a target: `endorsed` with only box `index` attached, and its proof.
fn forward(endorsed: &Signed, index: usize) -> Signed {
    let tree = box_tree(&endorsed.sealed_boxes);
    Signed {
        sealed_boxes: vec![endorsed.sealed_boxes[index].clone()],
        sealed_box_proofs: vec![box_proof(&tree, index).unwrap()],
        ..endorsed.clone()
    }
}

/// the node's endorsement stays within the message limit and each target is forwarded the
/// endorsement plus its own box — not every target's copy of the query (16.5 MB before).
#[test]
fn a_sealed_query_to_the_widest_fan_out_fits_and_each_target_opens_it() {
    use crate::seal::{self, KeyPair, QueryKey, Suite};
    let (kit, inv) = setup();
    let node = kit.signer("CA0560100", Role::Node, None);
    let n = crate::admission::MAX_TARGETS;
    let targets: Vec<String> = (0..n).map(|i| format!("CA{i:07}")).collect();
    let q = Query {
        query_id: vec![9; 16],
        requester_user: "b1".into(),
        requester_ori: "CA0560100".into(),
        plate: "ABC123".into(),
        targets: targets.clone(),
        issued_at: now(),
        expires_at: now() + 60,
        ..Default::default()
    };
    let signed_query = seal(&inv, QUERY, &q).unwrap().encode_to_vec();
    let requester = crate::admission::requester_label(&q);
    let key = QueryKey::generate().unwrap();
    let body = key
        .seal(
            &seal::sealed_query_aad(&q.query_id, &requester),
            &signed_query,
        )
        .unwrap();
    let pairs: Vec<KeyPair> = (0..n)
        .map(|_| KeyPair::generate(Suite::XWingChaCha20))
        .collect();
    let boxes = targets
        .iter()
        .zip(&pairs)
        .map(|(t, k)| {
            let ctx = crate::admission::box_context(&q, t, &requester);
            seal::seal_query_key(k.suite, &k.public, &ctx, &key)
                .unwrap()
                .0
                .to_wire(t)
        })
        .collect();
    let routing = crate::admission::routing_copy(&q);
    let endorsed = endorse_sealed(&node, "CA0560100", routing, body, boxes, now()).unwrap();
    let total = endorsed.encoded_len();
    assert!(
        total < crate::limits::MAX_MESSAGE,
        "{total} B for {n} targets"
    );
    assert!(total < signed_query.len() * 2 + n * 1_300, "{total} B");
    // The broker opens it once and sees every box; a target is forwarded its own.
    let opened = crate::admission::open(&kit.trust, &endorsed, now());
    assert!(opened.refusal().is_none(), "{:?}", opened.refusal());
    assert_eq!(opened.facts().boxes.len(), n);
    let pick = 617;
    let index = opened.box_index(&targets[pick]).unwrap();
    let forwarded = forward(&endorsed, index);
    // One box and its log2(N) hashes: the endorsement the target gets does not grow with
    // the other targets' boxes (what still grows is the routing copy's target list).
    let bare = Signed {
        sealed_boxes: vec![],
        sealed_box_proofs: vec![],
        ..endorsed.clone()
    };
    assert!(
        forwarded.encoded_len() < bare.encoded_len() + 1_300 + 11 * 34,
        "{} B forwarded, {} B without the box",
        forwarded.encoded_len(),
        bare.encoded_len()
    );
    // The rest is the routing copy, the query's one (padded) ciphertext, the signature and
    // the node's chain: no per-box digest list (44 KB at 1,000 targets before the tree).
    assert!(
        bare.encoded_len() < signed_query.len() * 3,
        "{} B for a {} B query",
        bare.encoded_len(),
        signed_query.len()
    );
    let at_target = crate::admission::open(&kit.trust, &forwarded, now());
    assert!(at_target.refusal().is_none());
    let wire = at_target.box_for(&targets[pick]).unwrap();
    let ctx = crate::admission::box_context(&q, &targets[pick], &requester);
    let (k, _) = seal::open_query_key(
        &pairs[pick],
        &ctx,
        &seal::SealedBox::from_wire(wire).unwrap(),
    )
    .unwrap();
    let plain = k
        .open(
            &seal::sealed_query_aad(&q.query_id, &requester),
            &at_target.facts().sealed_query,
        )
        .unwrap();
    assert_eq!(
        plain, signed_query,
        "the investigator's query, byte for byte"
    );
}

/// A sealed query to `n` targets, endorsed, with every box attached (as the requesting node
/// sends it): the kit, the endorsement and the target names. The boxes are stand-ins (the
/// box tree is what is tested here, not HPKE).
fn endorsed_to(n: usize) -> (Kit, Signed, Vec<String>) {
    let (kit, _) = setup();
    let node = kit.signer("CA0560100", Role::Node, None);
    let targets: Vec<String> = (0..n).map(|i| format!("CA{i:07}")).collect();
    let q = Query {
        query_id: vec![9; 16],
        requester_user: "b1".into(),
        requester_ori: "CA0560100".into(),
        targets: targets.clone(),
        issued_at: now(),
        expires_at: now() + 60,
        ..Default::default()
    };
    let boxes = targets
        .iter()
        .enumerate()
        .map(|(i, t)| crate::pb::SealedBox {
            recipient_ori: t.clone(),
            suite: 1,
            enc: vec![i as u8; 32],
            ciphertext: vec![7; 48],
            ..Default::default()
        })
        .collect();
    let routing = crate::admission::routing_copy(&q);
    let endorsed = endorse_sealed(&node, "CA0560100", routing, vec![1; 64], boxes, now()).unwrap();
    (kit, endorsed, targets)
}

fn refusal(kit: &Kit, endorsed: &Signed) -> Option<String> {
    crate::admission::open(&kit.trust, endorsed, now())
        .refusal()
        .map(|e| format!("{:?}: {}", e.reason(), e.detail()))
}

/// Every box attached without proofs, or any one with its proof, opens; each target's box
/// is found at every tree size, including odd ones.
#[test]
fn boxes_open_all_together_or_each_with_its_proof() {
    for n in [1, 2, 3, 7, 64, 100] {
        let (kit, endorsed, targets) = endorsed_to(n);
        assert_eq!(refusal(&kit, &endorsed), None, "all {n}");
        // Opening every box keeps the tree it checked (the broker proves each box from
        // it, hashing the boxes once); it is the tree over the boxes as sent.
        let all = crate::admission::open(&kit.trust, &endorsed, now());
        let kept = all.facts().box_tree.as_deref().expect("the tree is kept");
        assert_eq!(kept, &box_tree(&endorsed.sealed_boxes), "{n}");
        for (i, t) in targets.iter().enumerate() {
            let one = Signed {
                sealed_boxes: vec![endorsed.sealed_boxes[i].clone()],
                sealed_box_proofs: vec![box_proof(kept, i).unwrap()],
                ..endorsed.clone()
            };
            assert_eq!(one, forward(&endorsed, i));
            let opened = crate::admission::open(&kit.trust, &one, now());
            assert!(opened.facts().box_tree.is_none(), "a box with its proof");
            assert!(
                opened.refusal().is_none(),
                "{n}: {i}: {:?}",
                opened.refusal()
            );
            assert_eq!(opened.box_for(t).map(|b| &b.recipient_ori), Some(t));
            assert_eq!(opened.box_index(t), Some(0));
        }
    }
}

/// A broker cannot pass a target a box the endorsing node did not sign into its tree, nor
/// hide or add boxes when it forwards all of them, nor reuse one box's proof for another.
#[test]
fn a_box_outside_the_signed_tree_is_invalid_input() {
    let (kit, endorsed, _) = endorsed_to(10);
    let invalid = |e: &Signed, what: &str| {
        let r = refusal(&kit, e).unwrap_or_else(|| panic!("{what}: not refused"));
        assert!(r.starts_with("InvalidInput"), "{what}: {r}");
    };
    // A box alone without its proof.
    let mut e = forward(&endorsed, 3);
    e.sealed_box_proofs.clear();
    invalid(&e, "one box, no proof");
    // Another box's proof.
    let mut e = forward(&endorsed, 3);
    e.sealed_box_proofs = forward(&endorsed, 4).sealed_box_proofs;
    invalid(&e, "the proof of another box");
    // The right index, a changed box.
    let mut e = forward(&endorsed, 3);
    e.sealed_boxes[0][5] ^= 1;
    invalid(&e, "a changed box");
    // A proof one hash short, or with a hash of the wrong size.
    let mut e = forward(&endorsed, 3);
    e.sealed_box_proofs[0].path.pop();
    invalid(&e, "a short path");
    let mut e = forward(&endorsed, 3);
    e.sealed_box_proofs[0].path[0].push(0);
    invalid(&e, "a 33-byte hash");
    // The same box twice, and boxes with fewer proofs.
    let one = forward(&endorsed, 3);
    let mut e = one.clone();
    e.sealed_boxes.push(one.sealed_boxes[0].clone());
    e.sealed_box_proofs.push(one.sealed_box_proofs[0].clone());
    invalid(&e, "one box twice");
    let mut e = one.clone();
    e.sealed_boxes.push(endorsed.sealed_boxes[4].clone());
    invalid(&e, "two boxes, one proof");
    // Every box but one, or one more, or two swapped, without proofs.
    let mut e = endorsed.clone();
    e.sealed_boxes.pop();
    invalid(&e, "a box hidden");
    let mut e = endorsed.clone();
    e.sealed_boxes.push(endorsed.sealed_boxes[0].clone());
    invalid(&e, "a box added");
    let mut e = endorsed.clone();
    e.sealed_boxes.swap(1, 2);
    invalid(&e, "two boxes swapped");
}

/// The signed tree itself must be well formed: a root of 32 bytes, at most 1,000 boxes, and
/// no digest list of the earlier form.
#[test]
fn a_sealed_endorsement_without_a_well_formed_box_tree_is_invalid_input() {
    let (kit, _) = setup();
    let node = kit.signer("CA0560100", Role::Node, None);
    let q = Query {
        query_id: vec![9; 16],
        requester_user: "b1".into(),
        requester_ori: "CA0560100".into(),
        targets: vec!["CA0000001".into()],
        issued_at: now(),
        expires_at: now() + 60,
        ..Default::default()
    };
    let good = crate::pb::Endorsement {
        node_ori: "CA0560100".into(),
        endorsed_at: now(),
        routing: Some(q),
        sealed_query: vec![1; 64],
        boxes_root: crate::merkle::leaf_hash(b"box").to_vec(),
        box_count: 1,
        ..Default::default()
    };
    let attach = |e: crate::pb::Endorsement| {
        let mut s = seal(&node, ENDORSEMENT, &e).unwrap();
        s.sealed_boxes = vec![b"box".to_vec()];
        s
    };
    // The good one gets as far as decoding its box (which these bytes are not).
    let r = refusal(&kit, &attach(good.clone())).unwrap();
    assert!(r.contains("does not decode"), "{r}");
    for (what, bad) in [
        (
            "no box, with a one-box root",
            crate::pb::Endorsement {
                box_count: 0,
                ..good.clone()
            },
        ),
        (
            "1,001 boxes",
            crate::pb::Endorsement {
                box_count: 1_001,
                ..good.clone()
            },
        ),
        (
            "a 31-byte root",
            crate::pb::Endorsement {
                boxes_root: vec![0; 31],
                ..good.clone()
            },
        ),
        (
            "digests of the earlier form",
            crate::pb::Endorsement {
                box_digests: vec![crate::pb::BoxDigest {
                    recipient_ori: "CA0000001".into(),
                    sha256: vec![0; 32],
                }],
                ..good.clone()
            },
        ),
    ] {
        let r = refusal(&kit, &attach(bad)).unwrap_or_else(|| panic!("{what}: not refused"));
        assert!(r.starts_with("InvalidInput"), "{what}: {r}");
        assert!(!r.contains("does not decode"), "{what}: {r}");
    }
}
