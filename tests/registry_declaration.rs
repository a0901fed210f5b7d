//! State rules as data at registration: Illinois demands an out-of-state requester's
//! signed written declaration; without it (or with one signed by the wrong party, or an
//! empty one) the agreement is not registered. Illinois still refuses immigration purposes.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use alpr_federation::{AgencySpec, Federation, admin_of, open_policy, params};
use alpr_node::client;
use alpr_proto::RefusalReason;
use alpr_proto::pb::TargetStatus;

const CHICAGO: &str = "IL0160000";
const GARY: &str = "IN0450100";

const TEXT: &str = "Gary PD declares that ALPR data received from Illinois agencies will not be used for immigration \
enforcement or to investigate lawful reproductive or gender-affirming health care, nor shared onward.";

fn agencies() -> Vec<AgencySpec> {
    vec![
        AgencySpec {
            ori: CHICAGO,
            name: "Chicago Police Department",
            jurisdiction: "US-IL",
            kind: "local",
        },
        AgencySpec {
            ori: GARY,
            name: "Gary Police Department",
            jurisdiction: "US-IN",
            kind: "local",
        },
    ]
}

fn signed(fed: &Federation, declaration: Option<(&str, &str)>) -> alpr_proto::pb::SignedAgreement {
    let terms = Federation::terms(CHICAGO, GARY, &["240", "30A"], 30, 86_400);
    let mut sa = client::draft_agreement(&terms).unwrap();
    for ori in [CHICAGO, GARY] {
        let (s, _) = fed.person(ori, &admin_of(ori)).unwrap();
        client::sign_agreement(&mut sa, &s, &fed.trust).unwrap();
    }
    if let Some((by, text)) = declaration {
        let (s, _) = fed.person(by, &admin_of(by)).unwrap();
        client::declare(&mut sa, &s, text).unwrap();
    }
    sa
}

#[tokio::test]
async fn illinois_requires_a_declaration_from_out_of_state_requesters() {
    let fed = Federation::start(None, &agencies(), |_| open_policy())
        .await
        .unwrap();
    fed.ingest_csv(
        CHICAGO,
        &alpr_federation::synthetic_csv(CHICAGO, &["8ABC123"], 5),
    )
    .unwrap();
    for (decl, why) in [
        (None, "declaration"),
        (Some((CHICAGO, TEXT)), "must be signed by"),
        (Some((GARY, "ok")), "80+"),
    ] {
        let err = fed
            .submit(CHICAGO, &signed(&fed, decl))
            .await
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("REQUESTER_JURISDICTION_NOT_PERMITTED") && err.contains(why),
            "{err}"
        );
    }
    let log = fed.broker_log().unwrap();
    assert_eq!(
        log.iter()
            .filter(|l| l.event == "register" && l.decision == "refused")
            .count(),
        3
    );

    let sa = signed(&fed, Some((GARY, TEXT)));
    fed.submit(CHICAGO, &sa).await.unwrap();
    fed.sync(&[CHICAGO, GARY]).await.unwrap();
    let (_, r) = fed
        .search(GARY, &params("8ABC123", &[CHICAGO], "240", 3))
        .await
        .unwrap();
    assert_eq!(
        r.results[0].status,
        TargetStatus::Answered as i32,
        "{}",
        r.results[0].detail
    );
    // Illinois refuses immigration purposes even though the agreement lists 30A.
    let (_, r) = fed
        .search(GARY, &params("8ABC123", &[CHICAGO], "30A", 3))
        .await
        .unwrap();
    assert_eq!(r.results[0].reason, RefusalReason::PurposeProhibited as i32);
    fed.stop().await.unwrap();
}
