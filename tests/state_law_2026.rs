//! The 2026 state laws end to end (issue 16): each rule refuses at the honest broker and,
//! when a misbehaving broker forwards the query anyway, at the owner's node — with the
//! right reason, in every log — and allows what the law allows.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use alpr_federation::{
    AgencySpec, Federation, admin_of, open_policy, params, refusals, synthetic_csv,
};
use alpr_node::client;
use alpr_proto::RefusalReason;
use alpr_proto::pb::TargetStatus;

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
async fn oregon_gives_no_standing_access_across_its_border() {
    let fed = federation(&[
        agency(PORTLAND, "Portland Police Bureau", "US-OR"),
        agency(SALEM, "Salem Police Department", "US-OR"),
        agency(LAS_VEGAS, "Las Vegas Metropolitan Police", "US-NV"),
    ])
    .await;
    agree(&fed, PORTLAND, SALEM, &["240"], None).await.unwrap();
    answered(&fed, SALEM, &search("OR", PORTLAND, "240")).await;
    // A standing agreement across the border is "ongoing access": not registered, logged.
    let e = agree(&fed, PORTLAND, LAS_VEGAS, &["240"], Some(GENERIC))
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("APPROVAL_REQUIRED"), "{e}");
    assert_registration_refused(&fed, "APPROVAL_REQUIRED");
    // Nor is a query (a broker that forwards it anyway is refused by the node too).
    refused_everywhere(
        &fed,
        LAS_VEGAS,
        PORTLAND,
        &search("OR", PORTLAND, "240"),
        RefusalReason::ApprovalRequired,
    )
    .await;
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
