//! Query shapes (issue 16, item 2): full plates only across agencies by default; a
//! wildcard plate is answered only where the agreement lists the shape and the provider's
//! policy allows it, within a short window, from plain and encrypted stores alike.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use alpr_federation::{Federation, demo_agencies, open_policy, params, refusals};
use alpr_node::client::{self, Reply};
use alpr_proto::RefusalReason;
use alpr_proto::pb::TargetStatus;

const VENTURA: &str = "CA0560100";
const SACRAMENTO: &str = "CA0340000";
const FRESNO: &str = "CA0100500";

fn reads(plates: &[&str]) -> String {
    let now = alpr_pki::now_unix();
    let mut csv = String::from("plate,captured_at,camera_id,latitude,longitude,plate_state\n");
    for (i, p) in plates.iter().enumerate() {
        csv.push_str(&format!(
            "{p},{},CAM-{i},34.2,-119.2,CA\n",
            alpr_node::cli::fmt_time(now - 3_600 * (i as i64 + 1))
        ));
    }
    csv
}

fn wildcard(plate: &str, target: &str) -> alpr_node::client::SearchParams {
    let mut p = params(plate, &[target], "240", 3);
    p.shape = "wildcard".into();
    p
}

#[tokio::test]
async fn a_wildcard_is_answered_only_where_agreement_and_policy_allow_it() {
    // Ventura encrypted (the default) and allowing wildcards; Fresno plain, allowing them
    // too; Sacramento asks.
    let fed = Federation::start_tuned(
        None,
        &demo_agencies()[..3],
        |ori| {
            let mut p = open_policy();
            p.partner_wildcards = ori != SACRAMENTO;
            p
        },
        &[],
        &|c| {
            if c.ori == FRESNO {
                c.storage = Default::default();
            }
        },
    )
    .await
    .unwrap();
    for ori in [VENTURA, FRESNO] {
        fed.ingest_csv(
            ori,
            &reads(&["8ABC123", "8ABD123", "8ABC124", "9ABC123", "8ABC12"]),
        )
        .unwrap();
    }
    // Ventura's agreement lists the shape; Fresno's does not.
    let mut terms = Federation::terms(VENTURA, SACRAMENTO, &["240"], 30, 86_400);
    terms.query_shapes = vec!["wildcard".into()];
    fed.agree(terms).await.unwrap();
    fed.agree(Federation::terms(FRESNO, SACRAMENTO, &["240"], 30, 86_400))
        .await
        .unwrap();
    fed.sync(&[VENTURA, FRESNO, SACRAMENTO]).await.unwrap();

    let (q, resp) = fed
        .search(SACRAMENTO, &wildcard("8AB?123", VENTURA))
        .await
        .unwrap();
    let Some(Reply::Answer { answer, .. }) =
        client::verify_reply(&fed.trust, &resp.results[0], &q, alpr_pki::now_unix()).unwrap()
    else {
        panic!("expected an answer: {:?}", resp.results[0]);
    };
    let mut plates: Vec<_> = answer.reads.iter().map(|r| r.plate.as_str()).collect();
    plates.sort();
    assert_eq!(
        plates,
        vec!["8ABC123", "8ABD123"],
        "only plates matching the pattern"
    );
    // Fresno's agreement covers full plates only: the broker refuses, and so does Fresno's
    // node if a broker forwards anyway.
    refusals::by_broker(
        &fed,
        SACRAMENTO,
        FRESNO,
        &wildcard("8AB?123", FRESNO),
        RefusalReason::ShapeNotAllowed,
    )
    .await
    .unwrap();
    refusals::by_node(
        &fed,
        SACRAMENTO,
        FRESNO,
        &wildcard("8AB?123", FRESNO),
        RefusalReason::ShapeNotAllowed,
    )
    .await
    .unwrap();
    // A full plate still works everywhere.
    let (_, r) = fed
        .search(SACRAMENTO, &params("8ABC123", &[FRESNO], "240", 3))
        .await
        .unwrap();
    assert_eq!(r.results[0].status, TargetStatus::Answered as i32);
    // Too loose, or too long a window: refused before anything is sent.
    for (plate, days) in [("8A??1?3", 3), ("8AB?123", 8)] {
        let mut p = wildcard(plate, VENTURA);
        p.window_start = alpr_pki::now_unix() - days * 86_400;
        let e = fed.search(SACRAMENTO, &p).await.unwrap_err().to_string();
        assert!(e.contains("INVALID_INPUT") || e.contains("wildcard"), "{e}");
    }
    // Both sides logged the shape's query.
    let inbound = fed.audit(VENTURA, Some("inbound_query")).unwrap();
    assert!(
        inbound
            .iter()
            .any(|e| e.entry.plate.as_deref() == Some("8AB?123") && e.entry.decision == "answered")
    );
    fed.stop().await.unwrap();
}

#[tokio::test]
async fn a_provider_whose_policy_is_off_answers_full_plates_only() {
    let fed = Federation::start(None, &demo_agencies()[..2], |_| open_policy())
        .await
        .unwrap();
    fed.ingest_csv(VENTURA, &reads(&["8ABC123"])).unwrap();
    let mut terms = Federation::terms(VENTURA, SACRAMENTO, &["240"], 30, 86_400);
    terms.query_shapes = vec!["wildcard".into()];
    fed.agree(terms).await.unwrap();
    fed.sync(&[VENTURA, SACRAMENTO]).await.unwrap();
    // The agreement lists the shape; Ventura's policy (the default) does not allow it.
    let (_, r) = fed
        .search(SACRAMENTO, &wildcard("8AB?123", VENTURA))
        .await
        .unwrap();
    assert_eq!(
        (r.results[0].status, r.results[0].reason),
        (
            TargetStatus::Refused as i32,
            RefusalReason::ShapeNotAllowed as i32
        ),
        "{}",
        r.results[0].detail
    );
    refusals::by_node(
        &fed,
        SACRAMENTO,
        VENTURA,
        &wildcard("8AB?123", VENTURA),
        RefusalReason::ShapeNotAllowed,
    )
    .await
    .unwrap();
    fed.stop().await.unwrap();
}
