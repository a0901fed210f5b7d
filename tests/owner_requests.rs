//! A registered owner's request (issue 16, item 5): every read held of their vehicle and
//! every search of it by another agency, answered by an operator who verified ownership,
//! logged and counted; refused where neither the state nor the agency grants the right.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use alpr_federation::{Federation, demo_agencies, open_policy, params, synthetic_csv};

const VENTURA: &str = "CA0560100";
const SACRAMENTO: &str = "CA0340000";

#[tokio::test]
async fn an_owner_sees_every_read_of_their_car_and_every_search_of_it() {
    let fed = Federation::start(None, &demo_agencies()[..2], |ori| {
        let mut p = open_policy();
        p.owner_requests = ori == VENTURA;
        p
    })
    .await
    .unwrap();
    fed.ingest_csv(
        VENTURA,
        &synthetic_csv(VENTURA, &["8ABC123", "5XYZ987"], 10),
    )
    .unwrap();
    // The same characters on a Nevada plate: another vehicle, not disclosed.
    fed.ingest_csv(
        VENTURA,
        &format!(
            "8ABC123,{},VENTU-CAM-99,34.3,-119.3,NV\n",
            alpr_node::cli::fmt_time(alpr_pki::now_unix() - 7_200)
        ),
    )
    .unwrap();
    fed.agree(Federation::terms(VENTURA, SACRAMENTO, &["240"], 30, 86_400))
        .await
        .unwrap();
    fed.sync(&[VENTURA, SACRAMENTO]).await.unwrap();
    for plate in ["8ABC123", "8ABC123", "5XYZ987"] {
        fed.search(SACRAMENTO, &params(plate, &[VENTURA], "240", 20))
            .await
            .unwrap();
    }
    let node = fed.nodes[VENTURA].node.clone();
    let a = node
        .owner_request(
            "8abc-123",
            "ca",
            "Records clerk J. Ortiz",
            "DMV registration and the owner's driver's license checked at the counter",
        )
        .unwrap();
    assert_eq!(
        (a.plate.as_str(), a.plate_state.as_str()),
        ("8ABC123", "CA")
    );
    assert_eq!(
        a.reads.len(),
        10,
        "every CA read of the car, not the NV one"
    );
    assert!(
        a.reads
            .windows(2)
            .all(|w| w[0].captured_at <= w[1].captured_at)
    );
    assert!(a.reads.iter().all(|r| r.camera_id != "VENTU-CAM-99"));
    assert_eq!(a.searches.len(), 2, "{:?}", a.searches);
    for s in &a.searches {
        assert_eq!(s.requester_ori, SACRAMENTO);
        assert_eq!(s.purpose, "240 Motor Vehicle Theft");
        assert_eq!(s.decision, "answered");
        assert!(s.reads >= 10);
    }
    // Investigative detail stays undisclosed.
    let json = serde_json::to_string(&a).unwrap();
    assert!(
        !json.contains("SSD-2026") && !json.contains("Fair Oaks"),
        "{json}"
    );
    // Logged with who verified it, and counted in the transparency report.
    let logged = fed.audit(VENTURA, Some("owner_request")).unwrap();
    assert_eq!(logged.len(), 1);
    assert!(
        logged[0]
            .entry
            .detail
            .as_deref()
            .unwrap()
            .contains("verified by Records clerk J. Ortiz")
    );
    let entries = fed.audit(VENTURA, None).unwrap();
    let report = alpr_node::reports::transparency(&node, &entries, alpr_pki::now_unix()).unwrap();
    assert!(
        report.contains("Registered owners' requests for their vehicle's data answered: 1."),
        "{report}"
    );
    // Bad input: no verification, or no issuing state.
    for (state, how) in [("CA", "ok"), ("ANY", "DMV registration checked in person")] {
        let e = node
            .owner_request("8ABC123", state, "J. Ortiz", how)
            .unwrap_err()
            .to_string();
        assert!(e.contains("verified") || e.contains("issuing state"), "{e}");
    }
    // Where neither the state nor the agency grants the right: refused, nothing disclosed.
    let e = fed.nodes[SACRAMENTO]
        .node
        .owner_request(
            "8ABC123",
            "CA",
            "J. Doe",
            "registration card seen at the desk",
        )
        .unwrap_err()
        .to_string();
    assert!(e.contains("grant owners no right"), "{e}");
    assert!(
        fed.audit(SACRAMENTO, Some("owner_request"))
            .unwrap()
            .is_empty()
    );
    fed.stop().await.unwrap();
}
