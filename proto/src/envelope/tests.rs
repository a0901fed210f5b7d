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
    let own = endorsed
        .sealed_boxes
        .iter()
        .filter(|b| {
            crate::pb::SealedBox::decode(b.as_slice())
                .unwrap()
                .recipient_ori
                == targets[pick]
        })
        .cloned()
        .collect();
    let forwarded = Signed {
        sealed_boxes: own,
        ..endorsed.clone()
    };
    assert!(
        forwarded.encoded_len() < total / 10,
        "{} B",
        forwarded.encoded_len()
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
