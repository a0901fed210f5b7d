//! The 2026 state laws end to end (issue 16): each rule refuses at the honest broker and,
//! when a misbehaving broker forwards the query anyway, at the owner's node — with the
//! right reason, in every log — and allows what the law allows.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use alpr_federation::{
    AgencySpec, Federation, admin_of, investigator_of, open_policy, params, refusals,
    supervisor_of, synthetic_csv,
};
use alpr_node::client;
use alpr_proto::RefusalReason;
use alpr_proto::pb::admin_request::Command;
use alpr_proto::pb::{AdminRequest, RequestDecision, TargetStatus};

const KING_COUNTY: &str = "WA0170000";
const SPOKANE: &str = "WA0320000";
const PORTLAND: &str = "OR0260200";
const SALEM: &str = "OR0240100";
const HARTFORD: &str = "CT0006400";
const BOSTON: &str = "MA0130100";
const LAS_VEGAS: &str = "NV0020100";
const RICHMOND: &str = "VA1220000";
const FAIRFAX: &str = "VA0290000";

fn agency(ori: &'static str, name: &'static str, jurisdiction: &'static str) -> AgencySpec {
    AgencySpec {
        ori,
        name,
        jurisdiction,
        kind: "local",
    }
}

/// A federation of `agencies`, each holding reads of 8ABC123 in its own state's plates.
async fn federation(agencies: &[AgencySpec]) -> Federation {
    let fed = Federation::start(None, agencies, |_| open_policy())
        .await
        .unwrap();
    for a in agencies {
        fed.ingest_csv(a.ori, &synthetic_csv(a.ori, &["8ABC123"], 5))
            .unwrap();
    }
    fed
}

/// Register an agreement from `provider` to `requester` for `purposes`, with the
/// requester admin's declaration `text` when given.
async fn agree(
    fed: &Federation,
    provider: &str,
    requester: &str,
    purposes: &[&str],
    declaration: Option<&str>,
) -> anyhow::Result<String> {
    let terms = Federation::terms(provider, requester, purposes, 30, 86_400);
    let mut sa = client::draft_agreement(&terms)?;
    for ori in [provider, requester] {
        let (s, _) = fed.person(ori, &admin_of(ori))?;
        client::sign_agreement(&mut sa, &s, &fed.trust)?;
    }
    if let Some(text) = declaration {
        let (s, _) = fed.person(requester, &admin_of(requester))?;
        client::declare(&mut sa, &s, text)?;
    }
    let id = fed.submit(provider, &sa).await?;
    fed.sync(&[provider, requester]).await?;
    Ok(id)
}

/// The state's plates of `requester`'s search.
fn search(plate_state: &str, target: &str, purpose: &str) -> alpr_node::client::SearchParams {
    let mut p = params("8ABC123", &[target], purpose, 3);
    p.plate_state = plate_state.into();
    p
}

/// The broker's routing log holds a refused registration with `reason`.
fn assert_registration_refused(fed: &Federation, reason: &str) {
    let log = fed.broker_log().unwrap();
    assert!(
        log.iter().any(|l| l.event == "register"
            && l.decision == "refused"
            && l.reason_code.as_deref() == Some(reason)),
        "no refused registration with {reason}: {log:?}"
    );
}

async fn answered(fed: &Federation, requester: &str, p: &alpr_node::client::SearchParams) {
    let (_, r) = fed.search(requester, p).await.unwrap();
    assert_eq!(
        r.results[0].status,
        TargetStatus::Answered as i32,
        "{}",
        r.results[0].detail
    );
}

async fn refused_everywhere(
    fed: &Federation,
    requester: &str,
    target: &str,
    p: &alpr_node::client::SearchParams,
    want: RefusalReason,
) {
    refusals::by_broker(fed, requester, target, p, want)
        .await
        .unwrap();
    refusals::by_node(fed, requester, target, p, want)
        .await
        .unwrap();
}

const GENERIC: &str = "The requesting agency declares that ALPR data it receives will be used only for the \
investigation named in each request and will not be shared onward.";

#[tokio::test]
async fn washington_serves_felonies_gross_misdemeanors_and_missing_persons_only() {
    let fed = federation(&[
        agency(KING_COUNTY, "King County Sheriff", "US-WA"),
        agency(SPOKANE, "Spokane Police Department", "US-WA"),
    ])
    .await;
    agree(
        &fed,
        KING_COUNTY,
        SPOKANE,
        &["240", "13B", "90D", "X-MISSING", "X-HOTLIST"],
        None,
    )
    .await
    .unwrap();
    for purpose in ["240", "90D", "X-MISSING"] {
        let mut p = search("WA", KING_COUNTY, purpose);
        if purpose == "X-MISSING" {
            p.reason =
                "Welfare check: the owner's elderly father drove off confused on Tuesday night"
                    .into();
        }
        answered(&fed, SPOKANE, &p).await;
    }
    // A misdemeanor and a non-crime purpose the law does not list: refused, though the
    // agreement lists both.
    for purpose in ["13B", "X-HOTLIST"] {
        refused_everywhere(
            &fed,
            SPOKANE,
            KING_COUNTY,
            &search("WA", KING_COUNTY, purpose),
            RefusalReason::PurposeProhibited,
        )
        .await;
    }
    let rows = fed.audit(KING_COUNTY, Some("inbound_query")).unwrap();
    let refused = rows
        .iter()
        .rev()
        .find(|e| e.entry.decision == "refused")
        .unwrap();
    assert_eq!(refused.entry.rule_version.as_deref(), Some("US-WA/2026.1"));
    assert!(
        refused
            .entry
            .detail
            .as_deref()
            .unwrap()
            .contains("gross misdemeanor or above"),
        "{:?}",
        refused.entry.detail
    );
    fed.stop().await.unwrap();
}

#[tokio::test]
async fn oregon_serves_across_its_border_one_approved_request_at_a_time() {
    let fed = federation(&[
        agency(PORTLAND, "Portland Police Bureau", "US-OR"),
        agency(SALEM, "Salem Police Department", "US-OR"),
        agency(LAS_VEGAS, "Las Vegas Metropolitan Police", "US-NV"),
    ])
    .await;
    agree(&fed, PORTLAND, SALEM, &["240"], None).await.unwrap();
    agree(&fed, PORTLAND, LAS_VEGAS, &["240"], Some(GENERIC))
        .await
        .unwrap();
    // In state: answered as usual.
    answered(&fed, SALEM, &search("OR", PORTLAND, "240")).await;
    // From Nevada: the broker lets it through (the node holds the approvals); Portland's
    // node refuses it, logged, and queues it for a named person's decision.
    let p = search("OR", PORTLAND, "240");
    let refused = || {
        let p = p.clone();
        let fed = &fed;
        async move {
            let (_, r) = fed.search(LAS_VEGAS, &p).await.unwrap();
            let t = &r.results[0];
            assert_eq!(
                (t.status, t.reason),
                (
                    TargetStatus::Refused as i32,
                    RefusalReason::ApprovalRequired as i32
                ),
                "{}",
                t.detail
            );
            t.detail.clone()
        }
    };
    let detail = refused().await;
    assert!(detail.contains("queued as request #1"), "{detail}");
    refusals::by_node(
        &fed,
        LAS_VEGAS,
        PORTLAND,
        &p,
        RefusalReason::ApprovalRequired,
    )
    .await
    .unwrap();
    let node = fed.nodes[PORTLAND].node.clone();
    let queued = alpr_node::store::approvals::list(&node.db()).unwrap();
    assert_eq!(
        queued.len(),
        1,
        "the same request is queued once: {queued:?}"
    );
    assert_eq!(queued[0].status, "pending");
    assert_eq!(queued[0].asked.plate, "8ABC123");
    // Only a supervisor or admin of Portland decides, with a reason.
    let decide = |user: String, ori: &'static str, approve: bool, note: &str| {
        let req = AdminRequest {
            command: Some(Command::RequestDecision(RequestDecision {
                id: 1,
                approve,
                note: note.into(),
            })),
        };
        let fed = &fed;
        async move { fed.admin_as(PORTLAND, ori, &user, req).await }
    };
    assert!(
        decide(
            investigator_of(PORTLAND),
            PORTLAND,
            true,
            "looks fine to me"
        )
        .await
        .is_err()
    );
    assert!(
        decide(
            supervisor_of(LAS_VEGAS),
            LAS_VEGAS,
            true,
            "approving my own request"
        )
        .await
        .is_err()
    );
    assert!(
        decide(supervisor_of(PORTLAND), PORTLAND, true, "ok")
            .await
            .is_err()
    );
    let msg = decide(
        supervisor_of(PORTLAND),
        PORTLAND,
        true,
        "Stolen Civic seen crossing into Oregon; Las Vegas case checked by phone",
    )
    .await
    .unwrap();
    assert!(
        msg.contains("request #1") && msg.contains("approved"),
        "{msg}"
    );
    // The same search again: answered, once.
    answered(&fed, LAS_VEGAS, &p).await;
    let detail = refused().await;
    assert!(detail.contains("queued as request #2"), "{detail}");
    let log = fed.audit(PORTLAND, Some("request_approval")).unwrap();
    assert!(
        log.iter().filter(|e| e.entry.decision == "refused").count() >= 3,
        "the refused attempts are logged: {log:?}"
    );
    assert_eq!(log.iter().filter(|e| e.entry.decision == "ok").count(), 1);
    // A decision is logged state: the node's state check holds.
    assert!(node.check_state().unwrap());
    fed.stop().await.unwrap();
}

#[tokio::test]
async fn connecticut_shares_only_with_its_named_neighbours_under_their_declaration() {
    let fed = federation(&[
        agency(HARTFORD, "Hartford Police Department", "US-CT"),
        agency(BOSTON, "Boston Police Department", "US-MA"),
        agency(LAS_VEGAS, "Las Vegas Metropolitan Police", "US-NV"),
    ])
    .await;
    // A declaration without the words the law requires is not registered.
    let e = agree(&fed, HARTFORD, BOSTON, &["240"], Some(GENERIC))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("REQUESTER_JURISDICTION_NOT_PERMITTED") && e.contains("word for word"),
        "{e}"
    );
    let required = alpr_proto::rules::StateRules::for_jurisdiction(&"US-CT".parse().unwrap())
        .unwrap()
        .declaration_for(&"US-MA".parse().unwrap())
        .unwrap()
        .to_owned();
    let declared = format!(
        "The Boston Police Department declares that ALPR data received from Connecticut agencies {required}, nor shared onward."
    );
    agree(&fed, HARTFORD, BOSTON, &["240"], Some(&declared))
        .await
        .unwrap();
    answered(&fed, BOSTON, &search("CT", HARTFORD, "240")).await;
    // Nevada is not one of the named states, whatever it declares: no agreement, no query.
    let e = agree(&fed, HARTFORD, LAS_VEGAS, &["240"], Some(GENERIC))
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("REQUESTER_JURISDICTION_NOT_PERMITTED"), "{e}");
    assert_registration_refused(&fed, "REQUESTER_JURISDICTION_NOT_PERMITTED");
    refused_everywhere(
        &fed,
        LAS_VEGAS,
        HARTFORD,
        &search("CT", HARTFORD, "240"),
        RefusalReason::RequesterJurisdictionNotPermitted,
    )
    .await;
    fed.stop().await.unwrap();
}

#[tokio::test]
async fn virginia_shares_only_from_a_state_approved_system() {
    let fed = federation(&[
        agency(RICHMOND, "Richmond Police Department", "US-VA"),
        agency(FAIRFAX, "Fairfax County Police", "US-VA"),
    ])
    .await;
    agree(&fed, RICHMOND, FAIRFAX, &["240"], None)
        .await
        .unwrap();
    refused_everywhere(
        &fed,
        FAIRFAX,
        RICHMOND,
        &search("VA", RICHMOND, "240"),
        RefusalReason::SystemNotApproved,
    )
    .await;
    fed.stop().await.unwrap();
}
