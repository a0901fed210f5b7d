use alpr_pki::{AgencyKind, Role, Signer};

use super::*;
use crate::pb::Read;
use crate::testkit::Kit;

const TARGET: &str = "CA0560100";
const OTHER: &str = "CA0100500";
const REQUESTER: &str = "CA0340000";

struct World {
    kit: Kit,
    node: Signer,
    query: Query,
}

fn now() -> i64 {
    alpr_pki::now_unix()
}

fn world() -> World {
    let mut kit = Kit::new();
    kit.agency(TARGET, "US-CA", AgencyKind::Local);
    kit.agency(OTHER, "US-CA", AgencyKind::Local);
    kit.agency(REQUESTER, "US-CA", AgencyKind::Local);
    let node = kit.signer(TARGET, Role::Node, None);
    let query = Query {
        query_id: vec![7; 16],
        requester_user: "b77".into(),
        requester_ori: REQUESTER.into(),
        plate: "8ABC123".into(),
        plate_state: "CA".into(),
        window_start: now() - 7 * 86_400,
        window_end: now(),
        targets: vec![TARGET.into()],
        ..Default::default()
    };
    World { kit, node, query }
}

fn answer(q: &Query) -> Answer {
    Answer {
        query_id: q.query_id.clone(),
        provider_ori: TARGET.into(),
        requester_ori: q.requester_ori.clone(),
        requester_user: q.requester_user.clone(),
        reads: vec![Read {
            plate: q.plate.clone(),
            plate_state: q.plate_state.clone(),
            captured_at: now() - 3_600,
            camera_id: "CAM-1".into(),
            latitude: 34.2,
            longitude: -119.2,
        }],
        not_for_redissemination: true,
        answered_at: now(),
        ..Default::default()
    }
}

fn check(w: &World, signer: &Signer, a: &Answer) -> Result<VerifiedReply, Error> {
    let signed = envelope::seal(signer, ANSWER, a).unwrap();
    verify(&w.kit.trust, TARGET, &signed, &w.query, now())
}

fn refused_with(w: &World, signer: &Signer, a: &Answer, needle: &str) {
    let e = check(w, signer, a).unwrap_err();
    assert_eq!(e.reason(), RefusalReason::BadReply, "{e}");
    assert!(e.detail().contains(needle), "{needle:?} not in {e}");
}

#[test]
fn a_correct_answer_verifies_and_names_its_signer() {
    let w = world();
    let v = check(&w, &w.node, &answer(&w.query)).unwrap();
    assert_eq!(v.signer().ori(), Some(TARGET));
    assert!(matches!(v, VerifiedReply::Answer { .. }));
}

#[test]
fn answers_signed_by_anyone_but_the_targets_node_are_bad() {
    let w = world();
    let other_node = w.kit.signer(OTHER, Role::Node, None);
    refused_with(&w, &other_node, &answer(&w.query), "CA0100500 (node)");
    let person = w.kit.signer(TARGET, Role::Admin, Some("adm"));
    refused_with(&w, &person, &answer(&w.query), "(admin)");
}

#[test]
fn provider_ori_must_be_the_signers() {
    let w = world();
    let mut a = answer(&w.query);
    a.provider_ori = OTHER.into();
    refused_with(&w, &w.node, &a, "claims to come from \"CA0100500\"");
}

#[test]
fn answers_bound_to_another_query_or_requester_are_bad() {
    let w = world();
    let mut a = answer(&w.query);
    a.query_id = vec![8; 16];
    refused_with(&w, &w.node, &a, "another query");
    let mut a = answer(&w.query);
    a.requester_user = "someone-else".into();
    refused_with(&w, &w.node, &a, "bound to requester someone-else@");
    let mut a = answer(&w.query);
    a.requester_ori = OTHER.into();
    refused_with(&w, &w.node, &a, "bound to requester");
}

#[test]
fn reads_of_another_plate_state_or_time_are_bad() {
    let w = world();
    let mut a = answer(&w.query);
    a.reads[0].plate = "8ABC124".into();
    refused_with(&w, &w.node, &a, "of plate \"8ABC124\"");
    let mut a = answer(&w.query);
    a.reads[0].plate_state = "NV".into();
    refused_with(&w, &w.node, &a, "issued by \"NV\"");
    let mut a = answer(&w.query);
    a.reads[0].captured_at = w.query.window_start - 1;
    refused_with(&w, &w.node, &a, "outside the query's window");
    let mut a = answer(&w.query);
    a.reads[0].captured_at = w.query.window_end + 1;
    refused_with(&w, &w.node, &a, "outside the query's window");
}

#[test]
fn any_state_queries_accept_reads_of_every_state() {
    let mut w = world();
    w.query.plate_state = ANY_STATE.into();
    let mut a = answer(&w.query);
    a.reads[0].plate_state = "NV".into();
    a.reads.push(Read {
        plate_state: String::new(),
        ..a.reads[0].clone()
    });
    check(&w, &w.node, &a).unwrap();
}

#[test]
fn answers_without_the_redissemination_mark_are_bad() {
    let w = world();
    let mut a = answer(&w.query);
    a.not_for_redissemination = false;
    refused_with(&w, &w.node, &a, "not-for-redissemination");
}

#[test]
fn tampered_answers_are_bad() {
    let w = world();
    let mut signed = envelope::seal(&w.node, ANSWER, &answer(&w.query)).unwrap();
    let last = signed.payload.len() - 1;
    signed.payload[last] ^= 1;
    let e = verify(&w.kit.trust, TARGET, &signed, &w.query, now()).unwrap_err();
    assert_eq!(e.reason(), RefusalReason::BadReply);
    assert!(e.detail().contains("does not verify"), "{e}");
}

#[test]
fn refusals_must_be_the_targets_and_bound_to_the_query() {
    let w = world();
    let refusal = |qid: Vec<u8>, provider: &str| Refusal {
        query_id: qid,
        provider_ori: provider.into(),
        reason: RefusalReason::NoAgreement as i32,
        ..Default::default()
    };
    let ok = envelope::seal(&w.node, REFUSAL, &refusal(w.query.query_id.clone(), TARGET)).unwrap();
    assert!(matches!(
        verify(&w.kit.trust, TARGET, &ok, &w.query, now()).unwrap(),
        VerifiedReply::Refusal { .. }
    ));
    for (r, needle) in [
        (refusal(vec![9; 16], TARGET), "another query"),
        (refusal(vec![], TARGET), "another query"),
        (
            refusal(w.query.query_id.clone(), OTHER),
            "claims to come from",
        ),
    ] {
        let s = envelope::seal(&w.node, REFUSAL, &r).unwrap();
        let e = verify(&w.kit.trust, TARGET, &s, &w.query, now()).unwrap_err();
        assert_eq!(e.reason(), RefusalReason::BadReply);
        assert!(e.detail().contains(needle), "{needle:?} not in {e}");
    }
    let other = w.kit.signer(OTHER, Role::Node, None);
    let s = envelope::seal(&other, REFUSAL, &refusal(w.query.query_id.clone(), TARGET)).unwrap();
    assert!(verify(&w.kit.trust, TARGET, &s, &w.query, now()).is_err());
}

#[test]
fn other_payload_types_are_bad() {
    let w = world();
    let s = envelope::seal(&w.node, crate::envelope::QUERY, &w.query).unwrap();
    let e = verify(&w.kit.trust, TARGET, &s, &w.query, now()).unwrap_err();
    assert_eq!(e.reason(), RefusalReason::BadReply);
}
