//! Every refusal of the demo, end to end over mutual TLS. Each case is checked twice:
//! through the honest broker (refused there, logged in its routing log and in the
//! requester's outbound log) and through a misbehaving broker that forwards the query
//! straight to the owner's node (refused by the node itself, with a signed refusal and an
//! audit row at the node). No read is returned in either path.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use alpr_federation::{
    Federation, SearchParams, demo_agencies, open_policy, params, refusals, synthetic_csv,
};
use alpr_proto::RefusalReason;
use alpr_proto::envelope::{self, REFUSAL};
use alpr_proto::pb::{Refusal, TargetStatus};

const VENTURA: &str = "CA0560100";
const SACRAMENTO: &str = "CA0340000";
const FRESNO: &str = "CA0100500";
const LAS_VEGAS: &str = "NV0020100";
const FEDERAL: &str = "USDHS0100";

async fn federation() -> Federation {
    federation_tuned(&|_| {}).await
}

async fn federation_tuned(tune: &dyn Fn(&mut alpr_node::NodeConfig)) -> Federation {
    let fed = Federation::start_tuned(None, &demo_agencies(), |_| open_policy(), &[], tune)
        .await
        .unwrap();
    for a in demo_agencies() {
        fed.ingest_csv(a.ori, &synthetic_csv(a.ori, &["8ABC123"], 10))
            .unwrap();
    }
    fed.agree(Federation::terms(
        VENTURA,
        SACRAMENTO,
        &["240", "30A"],
        30,
        86_400,
    ))
    .await
    .unwrap();
    fed
}

async fn refused_by_broker(
    fed: &Federation,
    requester: &str,
    target: &str,
    p: &SearchParams,
    want: RefusalReason,
) {
    refusals::by_broker(fed, requester, target, p, want)
        .await
        .unwrap();
}

async fn refused_by_node(
    fed: &Federation,
    requester: &str,
    target: &str,
    p: &SearchParams,
    want: RefusalReason,
) {
    refusals::by_node(fed, requester, target, p, want)
        .await
        .unwrap();
}

async fn refused_locally(fed: &Federation, requester: &str, p: &SearchParams, want: RefusalReason) {
    refusals::locally(fed, requester, p, want).await.unwrap();
}

#[tokio::test]
async fn no_agreement() {
    let fed = federation().await;
    refused_by_broker(
        &fed,
        SACRAMENTO,
        LAS_VEGAS,
        &params("8ABC123", &[LAS_VEGAS], "240", 3),
        RefusalReason::NoAgreement,
    )
    .await;
    refused_by_node(
        &fed,
        SACRAMENTO,
        LAS_VEGAS,
        &params("8ABC123", &[LAS_VEGAS], "240", 3),
        RefusalReason::NoAgreement,
    )
    .await;
    // The demo's misbehaving-broker case: Fresno has no agreement with Sacramento.
    refused_by_node(
        &fed,
        FRESNO,
        SACRAMENTO,
        &params("8ABC123", &[SACRAMENTO], "240", 3),
        RefusalReason::NoAgreement,
    )
    .await;
    fed.stop().await.unwrap();
}

#[tokio::test]
async fn out_of_state_requester() {
    let fed = federation().await;
    let p = params("8ABC123", &[VENTURA], "240", 3);
    refused_by_broker(
        &fed,
        LAS_VEGAS,
        VENTURA,
        &p,
        RefusalReason::RequesterJurisdictionNotPermitted,
    )
    .await;
    refused_by_node(
        &fed,
        LAS_VEGAS,
        VENTURA,
        &p,
        RefusalReason::RequesterJurisdictionNotPermitted,
    )
    .await;
    fed.stop().await.unwrap();
}

#[tokio::test]
async fn federal_requester() {
    let fed = federation().await;
    let p = params("8ABC123", &[VENTURA], "240", 3);
    refused_by_broker(
        &fed,
        FEDERAL,
        VENTURA,
        &p,
        RefusalReason::RequesterKindNotPermitted,
    )
    .await;
    refused_by_node(
        &fed,
        FEDERAL,
        VENTURA,
        &p,
        RefusalReason::RequesterKindNotPermitted,
    )
    .await;
    fed.stop().await.unwrap();
}

#[tokio::test]
async fn immigration_purpose_even_when_the_agreement_lists_it() {
    let fed = federation().await;
    let p = params("8ABC123", &[VENTURA], "30A", 3);
    refused_by_broker(
        &fed,
        SACRAMENTO,
        VENTURA,
        &p,
        RefusalReason::PurposeProhibited,
    )
    .await;
    refused_by_node(
        &fed,
        SACRAMENTO,
        VENTURA,
        &p,
        RefusalReason::PurposeProhibited,
    )
    .await;
    fed.stop().await.unwrap();
}

#[tokio::test]
async fn generic_reason() {
    let fed = federation().await;
    let mut p = params("8ABC123", &[VENTURA], "240", 3);
    p.reason = "investigation".into();
    refused_locally(&fed, SACRAMENTO, &p, RefusalReason::ReasonInsufficient).await;
    refused_by_node(
        &fed,
        SACRAMENTO,
        VENTURA,
        &p,
        RefusalReason::ReasonInsufficient,
    )
    .await;
    fed.stop().await.unwrap();
}

#[tokio::test]
async fn missing_case_number() {
    let fed = federation().await;
    let mut p = params("8ABC123", &[VENTURA], "240", 3);
    p.case_number = String::new();
    refused_locally(&fed, SACRAMENTO, &p, RefusalReason::CaseNumberMissing).await;
    refused_by_node(
        &fed,
        SACRAMENTO,
        VENTURA,
        &p,
        RefusalReason::CaseNumberMissing,
    )
    .await;
    fed.stop().await.unwrap();
}

#[tokio::test]
async fn expired_agreement() {
    let fed = federation().await;
    fed.agree(Federation::terms(VENTURA, FRESNO, &["240"], 30, 2))
        .await
        .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
    let p = params("8ABC123", &[VENTURA], "240", 3);
    refused_by_broker(&fed, FRESNO, VENTURA, &p, RefusalReason::AgreementExpired).await;
    refused_by_node(&fed, FRESNO, VENTURA, &p, RefusalReason::AgreementExpired).await;
    fed.stop().await.unwrap();
}

#[tokio::test]
async fn look_back_and_warrant_limits_are_the_owners() {
    let fed = federation().await;
    // The agreement allows 30 days; the node's no-warrant limit is 180 days by default,
    // so a 45-day window is refused by the agreement's look-back at both parties.
    let p = params("8ABC123", &[VENTURA], "240", 45);
    refused_by_broker(
        &fed,
        SACRAMENTO,
        VENTURA,
        &p,
        RefusalReason::LookbackExceeded,
    )
    .await;
    refused_by_node(
        &fed,
        SACRAMENTO,
        VENTURA,
        &p,
        RefusalReason::LookbackExceeded,
    )
    .await;
    fed.stop().await.unwrap();
}

#[tokio::test]
async fn replayed_query_is_refused_by_the_node() {
    let fed = federation().await;
    let (_, signed) = fed
        .sign_query(SACRAMENTO, &params("8ABC123", &[VENTURA], "240", 3))
        .unwrap();
    let endorsed = fed.endorse(SACRAMENTO, &signed).unwrap();
    let first = fed.rogue_forward(VENTURA, endorsed.clone()).await.unwrap();
    assert_eq!(first.payload_type, envelope::ANSWER);
    let second = fed.rogue_forward(VENTURA, endorsed).await.unwrap();
    let (_, r): (_, Refusal) =
        envelope::open_as(&fed.trust, &second, REFUSAL, alpr_pki::now_unix()).unwrap();
    assert_eq!(r.reason, RefusalReason::Replay as i32);
    let rows = fed.audit(VENTURA, Some("inbound_query")).unwrap();
    assert_eq!(
        rows.last().unwrap().entry.reason_code.as_deref(),
        Some("REPLAY")
    );
    fed.stop().await.unwrap();
}

#[tokio::test]
async fn a_closed_node_refuses_even_with_an_agreement() {
    let agencies = demo_agencies();
    // Ventura's node is new and closed: its admin has not turned sharing on.
    let fed = Federation::start_with(None, &agencies, |_| open_policy(), &[VENTURA])
        .await
        .unwrap();
    fed.agree(Federation::terms(VENTURA, SACRAMENTO, &["240"], 30, 86_400))
        .await
        .unwrap();
    let (_, resp) = fed
        .search(SACRAMENTO, &params("8ABC123", &[VENTURA], "240", 3))
        .await
        .unwrap();
    let r = &resp.results[0];
    assert_eq!(
        (r.status, r.reason, r.decided_by.as_str()),
        (
            TargetStatus::Refused as i32,
            RefusalReason::NodeRefusing as i32,
            VENTURA
        )
    );
    let rows = fed.audit(VENTURA, Some("inbound_query")).unwrap();
    assert_eq!(rows[0].entry.reason_code.as_deref(), Some("NODE_REFUSING"));
    fed.stop().await.unwrap();
}

#[tokio::test]
async fn only_the_broker_may_forward_to_a_node() {
    let fed = federation().await;
    let (_, signed) = fed
        .sign_query(SACRAMENTO, &params("8ABC123", &[VENTURA], "240", 3))
        .unwrap();
    let endorsed = fed.endorse(SACRAMENTO, &signed).unwrap();
    // Sacramento's own node calls Ventura's inbound side directly, bypassing the broker.
    let (c, k) = fed.pki.node(SACRAMENTO);
    let tls = alpr_runtime::tls::TlsIdentity::load(&c, &k).unwrap();
    let reply = fed.forward_as(&tls, VENTURA, endorsed).await.unwrap();
    let (_, r): (_, Refusal) =
        envelope::open_as(&fed.trust, &reply, REFUSAL, alpr_pki::now_unix()).unwrap();
    assert_eq!(r.reason, RefusalReason::CertInvalid as i32, "{}", r.detail);
    let rows = fed.audit(VENTURA, Some("inbound_query")).unwrap();
    assert_eq!(
        rows.last().unwrap().entry.reason_code.as_deref(),
        Some("CERT_INVALID")
    );
    fed.stop().await.unwrap();
}

#[tokio::test]
async fn an_unknown_agency_is_named_as_such_not_as_no_agreement() {
    // Clear: a sealing node refuses an agency with no published key itself
    // (`SEAL_KEY_UNKNOWN`, tests/sealed_queries.rs); here the broker names it.
    let fed = federation_tuned(&Federation::clear).await;
    // A mistyped ORI: no route, no registered agreement.
    let (q, resp) = fed
        .search(SACRAMENTO, &params("8ABC123", &["CA0560199"], "240", 3))
        .await
        .unwrap();
    let r = &resp.results[0];
    assert_eq!(
        (r.status, r.reason, r.decided_by.as_str()),
        (
            TargetStatus::Refused as i32,
            RefusalReason::UnknownAgency as i32,
            "broker"
        ),
        "{}",
        r.detail
    );
    assert!(r.detail.contains("check the ORI"), "{}", r.detail);
    let qid = hex::encode(&q.query_id);
    assert!(
        fed.broker_log()
            .unwrap()
            .iter()
            .any(|l| l.query_id.as_deref() == Some(qid.as_str())
                && l.reason_code.as_deref() == Some("UNKNOWN_AGENCY"))
    );
    // A known agency without an agreement is still NO_AGREEMENT.
    refused_by_broker(
        &fed,
        SACRAMENTO,
        LAS_VEGAS,
        &params("8ABC123", &[LAS_VEGAS], "240", 3),
        RefusalReason::NoAgreement,
    )
    .await;
    fed.stop().await.unwrap();
}

#[tokio::test]
async fn a_query_naming_more_agencies_than_the_owner_allows_is_refused_and_logged() {
    // Ventura lets one query name at most two agencies ([policy] max_query_targets).
    let fed = federation_tuned(&|c| {
        if c.ori == VENTURA {
            c.policy.max_query_targets = 2;
        }
    })
    .await;
    let wide = params("8ABC123", &[VENTURA, FRESNO, LAS_VEGAS], "240", 3);
    refused_by_node(&fed, SACRAMENTO, VENTURA, &wide, RefusalReason::FanOutLimit).await;
    // Within its cap Ventura answers as before.
    let narrow = params("8ABC123", &[VENTURA, FRESNO], "240", 3);
    let (_, resp) = fed.search(SACRAMENTO, &narrow).await.unwrap();
    let r = resp.results.iter().find(|r| r.ori == VENTURA).unwrap();
    assert_eq!(r.status, TargetStatus::Answered as i32, "{}", r.detail);
    fed.stop().await.unwrap();
}
