use std::cell::RefCell;
use std::collections::HashSet;

use alpr_pki::{AgencyKind, Role, Signer};
use prost::Message;

use super::*;
use crate::agreement::{AgreementStatus, AgreementView};
use crate::envelope;
use crate::pb::{Agreement, Query};
use crate::testkit::Kit;

const PROVIDER: &str = "CA0560100";
const REQUESTER: &str = "CA0190000";

#[derive(Default)]
struct Seen(RefCell<HashSet<(Vec<u8>, String)>>);
impl ReplayGuard for Seen {
    fn first_sight(&self, id: &[u8], p: &str, _: i64) -> bool {
        self.0.borrow_mut().insert((id.to_vec(), p.to_owned()))
    }
}

struct World {
    kit: Kit,
    inv: Signer,
    node: Signer,
    agreements: Vec<AgreementView>,
    policy: NodePolicy,
    now: i64,
}

fn world() -> World {
    let mut kit = Kit::new();
    kit.agency(PROVIDER, "US-CA", AgencyKind::Local);
    kit.agency(REQUESTER, "US-CA", AgencyKind::Local);
    kit.agency("NV0020000", "US-NV", AgencyKind::Local);
    kit.agency("DCFBI0000", "US", AgencyKind::Federal);
    let inv = kit.signer(REQUESTER, Role::Investigator, Some("b77"));
    let node = kit.signer(REQUESTER, Role::Node, None);
    let now = alpr_pki::now_unix();
    let agreements = vec![agreement(PROVIDER, REQUESTER, now, AgreementStatus::Active)];
    let policy = NodePolicy {
        sharing_enabled: true,
        no_warrant_lookback_days: 30,
        retention_days: 365,
        ..Default::default()
    };
    World {
        kit,
        inv,
        node,
        agreements,
        policy,
        now,
    }
}

fn agreement(p: &str, r: &str, now: i64, status: AgreementStatus) -> AgreementView {
    AgreementView {
        id: format!("agr-{p}-{r}"),
        terms: Agreement {
            provider_ori: p.into(),
            requester_ori: r.into(),
            purposes: vec!["240".into(), "120".into(), "90Z".into()],
            data_types: vec!["reads".into()],
            max_lookback_days: 90,
            valid_from: now - 86_400,
            valid_until: now + 86_400 * 30,
            justification: "Neighbouring city; shared auto-theft task force".into(),
            drafted_at: now,
            query_shapes: vec![],
        },
        status,
    }
}

fn query(w: &World, requester_ori: &str, user: &str) -> Query {
    Query {
        query_id: (0u8..16).map(|i| i.wrapping_add(w.now as u8)).collect(),
        requester_user: user.into(),
        requester_ori: requester_ori.into(),
        plate: "7ABC123".into(),
        plate_state: "CA".into(),
        window_start: w.now - 86_400 * 7,
        window_end: w.now,
        purpose_code: "240".into(),
        case_number: "SPD-2026-004411".into(),
        reason: "Stolen silver Civic taken from Oak Street lot on Monday night".into(),
        targets: vec![PROVIDER.into()],
        issued_at: w.now,
        expires_at: w.now + 300,
        ..Default::default()
    }
}

fn endorse(inv: &Signer, node: &Signer, node_ori: &str, q: &Query, now: i64) -> Signed {
    let signed_q = envelope::seal(inv, envelope::QUERY, q).unwrap();
    envelope::endorse(node, node_ori, signed_q.encode_to_vec(), now).unwrap()
}

fn decide(w: &World, env: &Signed, policy: Option<&NodePolicy>, seen: &Seen) -> AdmissionDecision {
    let rules = StateRules::for_jurisdiction(&"US-CA".parse().unwrap()).unwrap();
    let ctx = AdmissionContext {
        trust: &w.kit.trust,
        provider_ori: PROVIDER,
        rules,
        policy,
        agreements: &w.agreements,
        replay: seen,
        now: w.now,
        provider_system: None,
    };
    admit(&ctx, env)
}

fn refusal(w: &World, q: &Query) -> Option<RefusalReason> {
    let env = endorse(&w.inv, &w.node, REQUESTER, q, w.now);
    decide(w, &env, Some(&w.policy), &Seen::default()).reason()
}

#[test]
fn a_covered_query_is_admitted_under_its_agreement() {
    let w = world();
    let env = endorse(
        &w.inv,
        &w.node,
        REQUESTER,
        &query(&w, REQUESTER, "b77"),
        w.now,
    );
    match decide(&w, &env, Some(&w.policy), &Seen::default()) {
        AdmissionDecision::Admitted(a) => {
            assert_eq!(a.agreement_id, "agr-CA0560100-CA0190000");
            assert_eq!(a.rule_version, "US-CA/2026.1");
            assert_eq!(
                a.investigator.as_ref().and_then(|i| i.user.as_deref()),
                Some("b77")
            );
        }
        AdmissionDecision::Refused(r) => panic!("refused: {:?} {}", r.reason, r.detail),
    }
    // The broker (no node policy) admits it too.
    assert_eq!(decide(&w, &env, None, &Seen::default()).reason(), None);
}

#[test]
fn the_same_query_twice_is_a_replay() {
    let w = world();
    let env = endorse(
        &w.inv,
        &w.node,
        REQUESTER,
        &query(&w, REQUESTER, "b77"),
        w.now,
    );
    let seen = Seen::default();
    assert_eq!(decide(&w, &env, Some(&w.policy), &seen).reason(), None);
    assert_eq!(
        decide(&w, &env, Some(&w.policy), &seen).reason(),
        Some(RefusalReason::Replay)
    );
}

#[test]
fn each_field_rule_refuses_with_its_code() {
    let w = world();
    let base = query(&w, REQUESTER, "b77");
    type Mutation = Box<dyn Fn(&mut Query)>;
    let cases: Vec<(RefusalReason, Mutation)> = vec![
        (
            RefusalReason::ReasonInsufficient,
            Box::new(|q| q.reason = "investigation".into()),
        ),
        (
            RefusalReason::CaseNumberMissing,
            Box::new(|q| q.case_number = String::new()),
        ),
        (
            RefusalReason::PurposeProhibited,
            Box::new(|q| q.purpose_code = "30A".into()),
        ),
        (
            RefusalReason::InvalidInput,
            Box::new(|q| q.purpose_code = "90I".into()),
        ),
        (
            RefusalReason::PurposeNotCovered,
            Box::new(|q| q.purpose_code = "13A".into()),
        ),
        (
            RefusalReason::ProhibitedTerm,
            Box::new(|q| q.reason = "Vehicle seen near abortion clinic after the assault".into()),
        ),
        (
            RefusalReason::LookbackExceeded,
            Box::new(|q| {
                q.window_start = q.issued_at - 86_400 * 100;
                q.warrant_ref = "W-1".into()
            }),
        ),
        (
            RefusalReason::WarrantRequired,
            Box::new(|q| q.window_start = q.issued_at - 86_400 * 60),
        ),
        (
            RefusalReason::QueryExpired,
            Box::new(|q| q.expires_at = q.issued_at - 1),
        ),
        (
            RefusalReason::QueryExpired,
            Box::new(|q| {
                q.issued_at += 3600;
                q.expires_at = q.issued_at + 60
            }),
        ),
        (
            RefusalReason::InvalidInput,
            Box::new(|q| q.plate = "7ABC%".into()),
        ),
        (
            RefusalReason::InvalidInput,
            Box::new(|q| q.targets = vec![]),
        ),
        (
            RefusalReason::InvalidInput,
            Box::new(|q| q.targets = vec!["CA0190000".into()]),
        ),
        (
            RefusalReason::NoAgreement,
            Box::new(|q| q.on_behalf_of_ori = "CA0370000".into()),
        ),
        (
            RefusalReason::ClaimMismatch,
            Box::new(|q| q.requester_user = "someone-else".into()),
        ),
        // Invisible characters and non-NFC text in any field.
        (
            RefusalReason::InvalidInput,
            Box::new(|q| q.case_number = "SPD-2026\u{200B}-004411".into()),
        ),
        (
            RefusalReason::InvalidInput,
            Box::new(|q| q.reason.push_str(" at the Cafe\u{301}")),
        ),
        (
            RefusalReason::InvalidInput,
            Box::new(|q| q.warrant_ref = "W-1\u{2066}".into()),
        ),
        // The reason rule counts distinct words.
        (
            RefusalReason::ReasonInsufficient,
            Box::new(|q| q.reason = "blorp blorp blorp blorp blorp blorp blorp".into()),
        ),
        // A plate is characters plus its issuing state; "any state" only when asked.
        (
            RefusalReason::InvalidInput,
            Box::new(|q| q.plate_state = String::new()),
        ),
        (
            RefusalReason::InvalidInput,
            Box::new(|q| q.plate_state = "ZZ".into()),
        ),
        (
            RefusalReason::InvalidInput,
            Box::new(|q| q.plate_state = "ca".into()),
        ),
        (
            RefusalReason::InvalidInput,
            Box::new(|q| q.window_start = -1_000_000_000_000),
        ),
    ];
    for (want, mutate) in cases {
        let mut q = base.clone();
        mutate(&mut q);
        assert_eq!(refusal(&w, &q), Some(want), "query {q:?}");
    }
}

#[test]
fn a_negative_window_start_is_named_as_such() {
    let w = world();
    let mut q = query(&w, REQUESTER, "b77");
    q.window_start = -1_000_000_000_000;
    let e = check_query(&q, w.now).unwrap_err();
    assert!(e.detail().contains("before 1970"), "{e}");
}

#[test]
fn endorsements_dated_off_the_clock_or_before_the_query_are_refused() {
    let w = world();
    let q = query(&w, REQUESTER, "b77");
    // An hour in the future, an hour in the past, and before the query was issued.
    for (at, needle) in [(w.now + 3_600, "after now"), (w.now - 3_600, "before now")] {
        let env = endorse(&w.inv, &w.node, REQUESTER, &q, at);
        match decide(&w, &env, Some(&w.policy), &Seen::default()) {
            AdmissionDecision::Refused(r) => {
                assert_eq!(r.reason, RefusalReason::InvalidInput);
                assert!(r.detail.contains(needle), "{}", r.detail);
            }
            AdmissionDecision::Admitted(_) => panic!("endorsed at {at} admitted"),
        }
    }
    let mut late = q.clone();
    late.issued_at = w.now + 100;
    late.expires_at = late.issued_at + 300;
    let env = endorse(&w.inv, &w.node, REQUESTER, &late, w.now - 100);
    match decide(&w, &env, Some(&w.policy), &Seen::default()) {
        AdmissionDecision::Refused(r) => {
            assert_eq!(r.reason, RefusalReason::InvalidInput);
            assert!(
                r.detail.contains("before the query was issued"),
                "{}",
                r.detail
            );
        }
        AdmissionDecision::Admitted(_) => panic!("endorsement before issue admitted"),
    }
    // Within the skew tolerance it is admitted.
    let env = endorse(&w.inv, &w.node, REQUESTER, &q, w.now - 30);
    assert_eq!(
        decide(&w, &env, Some(&w.policy), &Seen::default()).reason(),
        None
    );
}

#[test]
fn agreement_status_and_expiry_refuse() {
    let mut w = world();
    let q = query(&w, REQUESTER, "b77");
    w.agreements[0].status = AgreementStatus::Revoked;
    assert_eq!(refusal(&w, &q), Some(RefusalReason::AgreementRevoked));
    w.agreements[0].status = AgreementStatus::Suspended;
    assert_eq!(refusal(&w, &q), Some(RefusalReason::AgreementSuspended));
    w.agreements[0].status = AgreementStatus::Active;
    w.agreements[0].terms.valid_until = w.now - 1;
    assert_eq!(refusal(&w, &q), Some(RefusalReason::AgreementExpired));
    w.agreements.clear();
    assert_eq!(refusal(&w, &q), Some(RefusalReason::NoAgreement));
}

#[test]
fn node_switches_refuse() {
    let mut w = world();
    let q = query(&w, REQUESTER, "b77");
    w.policy.sharing_enabled = false;
    assert_eq!(refusal(&w, &q), Some(RefusalReason::NodeRefusing));
    w.policy.sharing_enabled = true;
    w.policy.refuse_all = true;
    assert_eq!(refusal(&w, &q), Some(RefusalReason::NodeRefusing));
    w.policy.refuse_all = false;
    w.policy.refused_requesters = vec![REQUESTER.into()];
    assert_eq!(refusal(&w, &q), Some(RefusalReason::NodeRefusing));
}

#[test]
fn out_of_state_and_federal_requesters_are_refused_by_california_rules() {
    let mut w = world();
    for (ori, want) in [
        (
            "NV0020000",
            RefusalReason::RequesterJurisdictionNotPermitted,
        ),
        ("DCFBI0000", RefusalReason::RequesterKindNotPermitted),
    ] {
        w.agreements
            .push(agreement(PROVIDER, ori, w.now, AgreementStatus::Active));
        let inv = w.kit.signer(ori, Role::Investigator, Some("x1"));
        let node = w.kit.signer(ori, Role::Node, None);
        let env = endorse(&inv, &node, ori, &query(&w, ori, "x1"), w.now);
        assert_eq!(
            decide(&w, &env, Some(&w.policy), &Seen::default()).reason(),
            Some(want),
            "{ori}"
        );
    }
}

#[test]
fn forged_endorsements_and_wrong_roles_are_refused() {
    let w = world();
    let q = query(&w, REQUESTER, "b77");
    // A node endorsing another agency's investigator.
    let prov_node = w.kit.signer(PROVIDER, Role::Node, None);
    let env = endorse(&w.inv, &prov_node, PROVIDER, &q, w.now);
    assert_eq!(
        decide(&w, &env, Some(&w.policy), &Seen::default()).reason(),
        Some(RefusalReason::ClaimMismatch)
    );
    // An investigator certificate used to endorse.
    let env = endorse(&w.inv, &w.inv, REQUESTER, &q, w.now);
    assert_eq!(
        decide(&w, &env, Some(&w.policy), &Seen::default()).reason(),
        Some(RefusalReason::CertInvalid)
    );
    // A node certificate used to sign as an investigator.
    let node_as_inv = endorse(&w.node, &w.node, REQUESTER, &q, w.now);
    assert_eq!(
        decide(&w, &node_as_inv, Some(&w.policy), &Seen::default()).reason(),
        Some(RefusalReason::CertInvalid)
    );
    // The endorsement's payload altered after signing.
    let mut env = endorse(&w.inv, &w.node, REQUESTER, &q, w.now);
    env.payload[3] ^= 0x40;
    assert_eq!(
        decide(&w, &env, Some(&w.policy), &Seen::default()).reason(),
        Some(RefusalReason::BadSignature)
    );
}

fn ctx_for<'a>(w: &'a World, provider: &'a str, seen: &'a Seen, now: i64) -> AdmissionContext<'a> {
    AdmissionContext {
        trust: &w.kit.trust,
        provider_ori: provider,
        rules: StateRules::for_jurisdiction(&"US-CA".parse().unwrap()).unwrap(),
        policy: None,
        agreements: &w.agreements,
        replay: seen,
        now,
        provider_system: None,
    }
}

#[test]
fn one_opened_query_is_admitted_per_target_like_admit() {
    let mut w = world();
    let second = "CA0010000";
    w.kit.agency(second, "US-CA", AgencyKind::Local);
    w.agreements
        .push(agreement(second, REQUESTER, w.now, AgreementStatus::Active));
    let mut q = query(&w, REQUESTER, "b77");
    q.targets = vec![PROVIDER.into(), second.into(), "CA0020000".into()];
    let env = endorse(&w.inv, &w.node, REQUESTER, &q, w.now);
    let opened = open(&w.kit.trust, &env, w.now);
    assert!(opened.refusal().is_none());
    assert_eq!(opened.facts().query.as_ref(), Some(&q));
    let seen = Seen::default();
    let a = admit_opened(&ctx_for(&w, PROVIDER, &seen, w.now), &opened);
    let b = admit_opened(&ctx_for(&w, second, &seen, w.now), &opened);
    let c = admit_opened(&ctx_for(&w, "CA0020000", &seen, w.now), &opened);
    match (a, b) {
        (AdmissionDecision::Admitted(a), AdmissionDecision::Admitted(b)) => {
            assert_eq!(a.agreement_id, format!("agr-{PROVIDER}-{REQUESTER}"));
            assert_eq!(b.agreement_id, format!("agr-{second}-{REQUESTER}"));
        }
        other => panic!("expected two admissions, got {other:?}"),
    }
    // No agreement with the third target: refused like `admit` would.
    assert_eq!(c.reason(), Some(RefusalReason::NoAgreement));
    assert_eq!(
        decide(&w, &env, None, &Seen::default()).reason(),
        None,
        "admit agrees"
    );
    // Replay memory is per target and still applies.
    assert_eq!(
        admit_opened(&ctx_for(&w, PROVIDER, &seen, w.now), &opened).reason(),
        Some(RefusalReason::Replay)
    );
}

#[test]
fn a_refusal_found_while_opening_refuses_every_target_and_a_stale_open_is_refused() {
    let w = world();
    let q = query(&w, REQUESTER, "b77");
    let mut env = endorse(&w.inv, &w.node, REQUESTER, &q, w.now);
    env.payload[3] ^= 0x40;
    let opened = open(&w.kit.trust, &env, w.now);
    assert_eq!(
        opened.refusal().map(|e| e.reason()),
        Some(RefusalReason::BadSignature)
    );
    let seen = Seen::default();
    assert_eq!(
        admit_opened(&ctx_for(&w, PROVIDER, &seen, w.now), &opened).reason(),
        Some(RefusalReason::BadSignature)
    );
    // Verified long before the decision: fail closed rather than trust an old check.
    let mut q = q;
    q.issued_at -= CLOCK_SKEW_SECS + 1;
    let env = endorse(&w.inv, &w.node, REQUESTER, &q, w.now - CLOCK_SKEW_SECS - 1);
    let opened = open(&w.kit.trust, &env, w.now - CLOCK_SKEW_SECS - 1);
    assert_eq!(
        admit_opened(&ctx_for(&w, PROVIDER, &seen, w.now), &opened).reason(),
        Some(RefusalReason::QueryExpired)
    );
    assert!(seen.0.borrow().is_empty(), "a stale open records nothing");
}

#[test]
fn a_query_naming_more_agencies_than_the_state_or_the_agency_allows_is_refused() {
    let w = world();
    let mut q = query(&w, REQUESTER, "b77");
    q.targets = vec![PROVIDER.into(), "CA0100500".into(), "CA0340000".into()];
    // The bundled rules set no cap: three targets are fine.
    assert_eq!(refusal(&w, &q), None);
    // The agency's own policy caps one query at two agencies.
    let mut w2 = world();
    w2.policy.max_targets = 2;
    let env = endorse(&w2.inv, &w2.node, REQUESTER, &q, w2.now);
    match decide(&w2, &env, Some(&w2.policy), &Seen::default()) {
        AdmissionDecision::Refused(r) => {
            assert_eq!(r.reason, RefusalReason::FanOutLimit);
            assert!(r.detail.contains("names 3 agencies"), "{}", r.detail);
            assert!(r.detail.contains("this agency's policy"), "{}", r.detail);
        }
        AdmissionDecision::Admitted(_) => panic!("admitted past the cap"),
    }
    // A state's cap applies at the broker too (no node policy there).
    let mut rules = StateRules::for_jurisdiction(&"US-CA".parse().unwrap())
        .unwrap()
        .clone();
    rules.max_targets = 2;
    let seen = Seen::default();
    let ctx = AdmissionContext {
        trust: &w.kit.trust,
        provider_ori: PROVIDER,
        rules: &rules,
        policy: None,
        agreements: &w.agreements,
        replay: &seen,
        now: w.now,
        provider_system: None,
    };
    let env = endorse(&w.inv, &w.node, REQUESTER, &q, w.now);
    match admit(&ctx, &env) {
        AdmissionDecision::Refused(r) => {
            assert_eq!(r.reason, RefusalReason::FanOutLimit);
            assert!(
                r.detail
                    .contains("US-CA/2026.1 lets one query name at most 2"),
                "{}",
                r.detail
            );
        }
        AdmissionDecision::Admitted(_) => panic!("admitted past the state's cap"),
    }
    // At the cap, admitted.
    q.targets.truncate(2);
    assert_eq!(refusal(&w2, &q), None);
}

/// A state that counts a warrant trigger from the incident and from any out-of-state
/// transfer (the pending New York and Massachusetts bills): the broker (clear query) and
/// the node decide alike.
#[test]
fn warrant_triggers_of_the_state_decide_at_broker_and_node_alike() {
    let mut w = world();
    w.agreements.push(agreement(
        PROVIDER,
        "NV0020000",
        w.now,
        AgreementStatus::Active,
    ));
    let mut rules = StateRules::for_jurisdiction(&"US-CA".parse().unwrap())
        .unwrap()
        .clone();
    rules.requester_jurisdictions.clear();
    rules.warrant_after_incident_days = 30;
    rules.warrant_out_of_state = true;
    let nv_inv = w.kit.signer("NV0020000", Role::Investigator, Some("nv7"));
    let nv_node = w.kit.signer("NV0020000", Role::Node, None);
    let decide_with = |q: &Query, inv: &Signer, node: &Signer, ori: &str, policy| {
        let env = endorse(inv, node, ori, q, w.now);
        let seen = Seen::default();
        let ctx = AdmissionContext {
            trust: &w.kit.trust,
            provider_ori: PROVIDER,
            rules: &rules,
            policy,
            agreements: &w.agreements,
            replay: &seen,
            now: w.now,
            provider_system: None,
        };
        admit(&ctx, &env).reason()
    };
    let both = |q: &Query, inv: &Signer, node: &Signer, ori: &str| {
        (
            decide_with(q, inv, node, ori, None),
            decide_with(q, inv, node, ori, Some(&w.policy)),
        )
    };
    let need = Some(RefusalReason::WarrantRequired);
    // In state, without an incident date, and with an old incident: a warrant is needed.
    let mut q = query(&w, REQUESTER, "b77");
    assert_eq!(both(&q, &w.inv, &w.node, REQUESTER), (need, need));
    q.incident_reported_at = w.now - 45 * 86_400;
    assert_eq!(both(&q, &w.inv, &w.node, REQUESTER), (need, need));
    q.incident_reported_at = w.now - 5 * 86_400;
    assert_eq!(both(&q, &w.inv, &w.node, REQUESTER), (None, None));
    // From outside the state: always.
    let mut out = query(&w, "NV0020000", "nv7");
    out.incident_reported_at = w.now - 5 * 86_400;
    assert_eq!(both(&out, &nv_inv, &nv_node, "NV0020000"), (need, need));
    out.warrant_ref = "CCDC 26-SW-0042".into();
    assert_eq!(both(&out, &nv_inv, &nv_node, "NV0020000"), (None, None));
    // An incident date in the future is malformed.
    q.incident_reported_at = w.now + 3_600;
    assert_eq!(
        both(&q, &w.inv, &w.node, REQUESTER),
        (
            Some(RefusalReason::InvalidInput),
            Some(RefusalReason::InvalidInput)
        )
    );
}

/// Wildcard plates: a shape the agreement and the node's policy must both allow, within a
/// bounded window; the same code decides at the broker (agreement, window) and the node
/// (and its policy).
#[test]
fn wildcard_plates_need_the_agreement_and_the_node_and_stay_bounded() {
    let mut w = world();
    let both = |w: &World, q: &Query, policy: &NodePolicy| {
        let env = endorse(&w.inv, &w.node, REQUESTER, q, w.now);
        (
            decide(w, &env, None, &Seen::default()).reason(),
            decide(w, &env, Some(policy), &Seen::default()).reason(),
        )
    };
    let mut q = query(&w, REQUESTER, "b77");
    q.shape = "wildcard".into();
    q.plate = "7AB?123".into();
    q.window_start = w.now - 3 * 86_400;
    let shape = Some(RefusalReason::ShapeNotAllowed);
    // The agreement lists full plates only.
    let mut open = w.policy.clone();
    open.allow_wildcard = true;
    assert_eq!(both(&w, &q, &open), (shape, shape));
    w.agreements[0].terms.query_shapes = vec!["wildcard".into()];
    // The agreement allows it, the node's policy does not: the node refuses, the broker
    // (which cannot know the policy) lets it through.
    assert_eq!(both(&w, &q, &w.policy), (None, shape));
    assert_eq!(both(&w, &q, &open), (None, None));
    let invalid = Some(RefusalReason::InvalidInput);
    // Bounded: at most 7 days, at least 5 known characters, at most 2 unknown.
    let mut wide = q.clone();
    wide.window_start = w.now - 8 * 86_400;
    assert_eq!(both(&w, &wide, &open), (invalid, invalid));
    for bad in ["7A??1?3", "7A???", "7ABC123", "7ab?123"] {
        let mut b = q.clone();
        b.plate = bad.into();
        assert_eq!(both(&w, &b, &open).1, invalid, "{bad}");
    }
    // A full-plate query may not carry a wildcard, and unknown shapes are refused.
    let mut full = q.clone();
    full.shape.clear();
    assert_eq!(both(&w, &full, &open), (invalid, invalid));
    let mut odd = q.clone();
    odd.shape = "area".into();
    assert_eq!(both(&w, &odd, &open), (invalid, invalid));
    assert!(crate::input::matches_wildcard("7AB?123", "7ABX123"));
    assert!(!crate::input::matches_wildcard("7AB?123", "7ABX1234"));
    assert!(!crate::input::matches_wildcard("7AB?123", "8ABX123"));
}

#[test]
fn the_broker_checks_the_system_the_provider_published_where_the_state_approves_systems() {
    let w = world();
    let env = endorse(
        &w.inv,
        &w.node,
        REQUESTER,
        &query(&w, REQUESTER, "b77"),
        w.now,
    );
    let mut rules = StateRules::for_jurisdiction(&"US-CA".parse().unwrap())
        .unwrap()
        .clone();
    rules.system_approval_required = true;
    rules.approved_systems = vec![crate::rules::ApprovedSystem {
        product: "alpr-fed".into(),
        versions: vec!["0.1.*".into()],
    }];
    let at_broker = |system: (&str, &str)| {
        // A fresh replay memory each time: the same query is decided again.
        let seen = Seen::default();
        let ctx = AdmissionContext {
            rules: &rules,
            provider_system: Some(system),
            ..ctx_for(&w, PROVIDER, &seen, w.now)
        };
        admit(&ctx, &env)
    };
    assert_eq!(
        at_broker(("alpr-fed", "0.1.0")).reason(),
        None,
        "an approved system"
    );
    for unapproved in [("alpr-fed", "0.0.9"), ("other-alpr", "0.1.0"), ("", "")] {
        assert_eq!(
            at_broker(unapproved).reason(),
            Some(RefusalReason::SystemNotApproved),
            "{unapproved:?}"
        );
    }
}
