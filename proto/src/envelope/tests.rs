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
