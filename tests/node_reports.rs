//! Oversight and transparency reports from the node's own log: every inbound search and
//! partner appears; search ages, anomalies and supervisor reviews are recorded.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use alpr_federation::{Federation, demo_agencies, open_policy, params, supervisor_of};
use alpr_node::reports;

const VENTURA: &str = "CA0560100";
const SACRAMENTO: &str = "CA0340000";
const LAS_VEGAS: &str = "NV0020100";

#[tokio::test]
async fn reports_cover_every_search_and_partner() {
    let agencies = demo_agencies();
    let fed = Federation::start(None, &agencies, |_| open_policy())
        .await
        .unwrap();
    fed.ingest_csv(
        VENTURA,
        &alpr_federation::synthetic_csv(VENTURA, &["8ABC123"], 40),
    )
    .unwrap();
    fed.agree(Federation::terms(
        VENTURA,
        SACRAMENTO,
        &["240", "90Z"],
        60,
        86_400,
    ))
    .await
    .unwrap();
    for days in [3, 3, 3, 3, 3, 20, 45] {
        fed.search(SACRAMENTO, &params("8ABC123", &[VENTURA], "240", days))
            .await
            .unwrap();
    }
    // Refused at Ventura's node itself (a misbehaving broker forwards an out-of-state query).
    let (_, signed) = fed
        .sign_query(LAS_VEGAS, &params("8ABC123", &[VENTURA], "240", 3))
        .unwrap();
    fed.rogue_forward(VENTURA, fed.endorse(LAS_VEGAS, &signed).unwrap())
        .await
        .unwrap();

    let entries = fed.audit(VENTURA, None).unwrap();
    let node = &fed.nodes[VENTURA].node;
    let t = reports::transparency(node, &entries, alpr_pki::now_unix()).unwrap();
    assert!(t.contains("shares with CA0340000"), "{t}");
    assert!(
        t.contains("Inbound queries (other agencies searching our data): 8"),
        "{t}"
    );
    assert!(
        t.contains("NV0020100"),
        "a refused out-of-state search is not left out:\n{t}"
    );
    assert!(t.contains("REQUESTER_JURISDICTION_NOT_PERMITTED"), "{t}");
    assert!(t.contains("Custodian: Chief of Police"), "{t}");
    assert!(
        !t.contains("Fair Oaks"),
        "free-text reasons are not published"
    );

    let ages = reports::search_age(&entries);
    assert!(ages.contains("inbound_query (7 searches)"), "{ages}");
    assert!(ages.contains("up to 1 week            5  71.4%"), "{ages}");
    let anomalies = reports::anomalies(&fed.audit(SACRAMENTO, None).unwrap(), 5);
    assert!(
        anomalies.contains("searched 8ABC123 7 times"),
        "{anomalies}"
    );
    assert!(reports::inbound_summary(&entries).contains("CA0340000"));

    // A supervisor reviews a sampled search; the review is logged. Investigators cannot.
    let sample = reports::review_sample(&entries, 3);
    assert_eq!(sample.len(), 3);
    let seq = sample[0].seq;
    let cmd = |justified| alpr_proto::pb::AdminRequest {
        command: Some(alpr_proto::pb::admin_request::Command::Review(
            alpr_proto::pb::ReviewCommand {
                seq,
                justified,
                note: "case file checked".into(),
            },
        )),
    };
    fed.admin(VENTURA, &supervisor_of(VENTURA), cmd(true))
        .await
        .unwrap();
    assert!(
        fed.admin(VENTURA, &alpr_federation::admin_of(VENTURA), cmd(false))
            .await
            .is_err()
    );
    let reviews = fed.audit(VENTURA, Some("search_review")).unwrap();
    assert_eq!(reviews.len(), 2, "the admin's attempt is logged as refused");
    assert_eq!(reviews[0].entry.decision, "justified");
    assert_eq!(reviews[1].entry.decision, "refused");
    assert_eq!(
        reviews[1].entry.reason_code.as_deref(),
        Some("NOT_AUTHORIZED")
    );
    fed.stop().await.unwrap();
}
