//! Reads are partitioned by capture day; the purge drops whole days past retention and
//! logs it; queries never reach past retention (`LOOKBACK_EXCEEDED`) and need a warrant
//! past the no-warrant limit (`WARRANT_REQUIRED`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use alpr_federation::{Federation, demo_agencies, open_policy, params};
use alpr_node::client::Reply;
use alpr_proto::RefusalReason;

const VENTURA: &str = "CA0560100";
const SACRAMENTO: &str = "CA0340000";

fn csv_days(days: std::ops::Range<i64>) -> String {
    let now = alpr_pki::now_unix();
    let mut s = String::new();
    for d in days {
        s.push_str(&format!(
            "8ABC123,{},CAM-1,34.2,-119.2,CA\n",
            alpr_node::cli::fmt_time(now - d * 86_400 - 60)
        ));
    }
    s
}

#[tokio::test]
async fn purge_drops_whole_days_and_queries_stop_at_retention() {
    let fed = Federation::start(None, &demo_agencies()[..2], |ori| {
        let mut p = open_policy();
        if ori == VENTURA {
            p.retention_days = 30;
            p.no_warrant_lookback_days = 10;
        }
        p
    })
    .await
    .unwrap();
    let node = &fed.nodes[VENTURA].node;
    // 45 days of reads, one a day (older ones as a migration might bring in).
    let report = fed.ingest_csv(VENTURA, &csv_days(0..45)).unwrap();
    assert_eq!(report.accepted, 45);
    let parts = alpr_node::store::partitions(&node.db()).unwrap();
    assert!(
        parts.len() >= 45,
        "one partition per capture day: {}",
        parts.len()
    );

    let (days, reads) = node.purge().unwrap();
    assert!(
        (14..=16).contains(&days.len()),
        "dropped {} days",
        days.len()
    );
    assert_eq!(reads as usize, days.len());
    assert!(alpr_node::store::count_reads(&node.db()).unwrap() <= 31);
    let purges = fed.audit(VENTURA, Some("purge")).unwrap();
    assert_eq!(purges.len(), 1);
    assert!(
        purges[0]
            .entry
            .detail
            .as_deref()
            .unwrap()
            .contains("retention 30 days")
    );
    // A second purge finds nothing and logs nothing.
    assert!(node.purge().unwrap().0.is_empty());
    assert_eq!(fed.audit(VENTURA, Some("purge")).unwrap().len(), 1);

    fed.agree(Federation::terms(VENTURA, SACRAMENTO, &["240"], 90, 86_400))
        .await
        .unwrap();
    // Within the no-warrant limit: answered from several day partitions.
    let (q, resp) = fed
        .search(SACRAMENTO, &params("8ABC123", &[VENTURA], "240", 7))
        .await
        .unwrap();
    let Some(Reply::Answer { answer: a, .. }) =
        alpr_node::client::verify_reply(&fed.trust, &resp.results[0], &q, alpr_pki::now_unix())
            .unwrap()
    else {
        panic!("expected an answer: {:?}", resp.results[0].detail);
    };
    assert_eq!(a.reads.len(), 7);
    // Past the no-warrant limit without a warrant: refused by the owner's node.
    let (_, resp) = fed
        .search(SACRAMENTO, &params("8ABC123", &[VENTURA], "240", 20))
        .await
        .unwrap();
    assert_eq!(
        (resp.results[0].reason, resp.results[0].decided_by.as_str()),
        (RefusalReason::WarrantRequired as i32, VENTURA)
    );
    // With a warrant: answered.
    let mut p = params("8ABC123", &[VENTURA], "240", 20);
    p.warrant_ref = "SW-2026-4411 (Ventura Superior Court)".into();
    let (_, resp) = fed.search(SACRAMENTO, &p).await.unwrap();
    assert_eq!(resp.results[0].reason, 0, "{}", resp.results[0].detail);
    // Past retention: refused, warrant or not.
    let mut p = params("8ABC123", &[VENTURA], "240", 40);
    p.warrant_ref = "SW-2026-4411".into();
    let (_, resp) = fed.search(SACRAMENTO, &p).await.unwrap();
    assert_eq!(
        resp.results[0].reason,
        RefusalReason::LookbackExceeded as i32
    );
    let rows = fed.audit(VENTURA, Some("inbound_query")).unwrap();
    let codes: Vec<_> = rows
        .iter()
        .filter_map(|e| e.entry.reason_code.clone())
        .collect();
    assert_eq!(codes, vec!["WARRANT_REQUIRED", "LOOKBACK_EXCEEDED"]);
    fed.stop().await.unwrap();
}

#[tokio::test]
async fn streaming_ingest_keeps_good_reads_reports_bad_ones_and_checks_the_caller() {
    use alpr_proto::pb::Read;
    let fed = Federation::start(None, &demo_agencies()[..2], |_| open_policy())
        .await
        .unwrap();
    let now = alpr_pki::now_unix();
    let read = |plate: &str, lat: f64| Read {
        plate: plate.into(),
        captured_at: now - 60,
        camera_id: "CAM-3".into(),
        latitude: lat,
        longitude: -119.2,
        plate_state: "ca".into(),
    };
    let reads = vec![
        read("8abc 123", 34.2),
        read("BAD*", 34.2),
        read("5XYZ987", 134.0),
        read("5XYZ987", 34.2),
    ];
    let target = alpr_runtime::client::Target {
        addr: fed.nodes[VENTURA].addr.to_string(),
        server_name: "localhost".into(),
    };
    let (_, admin_tls) = fed
        .person(VENTURA, &alpr_federation::admin_of(VENTURA))
        .unwrap();
    let mut c = alpr_node::client::node_client(
        &target,
        &fed.trust,
        &admin_tls,
        std::time::Duration::from_secs(5),
    )
    .unwrap();
    let summary = c
        .ingest(tokio_stream::iter(reads.clone()))
        .await
        .unwrap()
        .into_inner();
    assert_eq!((summary.accepted, summary.rejected), (2, 2));
    assert!(
        summary.errors[0].starts_with("read 2:"),
        "{:?}",
        summary.errors
    );
    assert_eq!(
        alpr_node::store::count_reads(&fed.nodes[VENTURA].node.db()).unwrap(),
        2
    );
    // Another agency's admin, or an investigator, may not feed this node.
    let (_, other) = fed
        .person(SACRAMENTO, &alpr_federation::admin_of(SACRAMENTO))
        .unwrap();
    let mut c = alpr_node::client::node_client(
        &target,
        &fed.trust,
        &other,
        std::time::Duration::from_secs(5),
    )
    .unwrap();
    assert_eq!(
        c.ingest(tokio_stream::iter(reads))
            .await
            .unwrap_err()
            .code(),
        tonic::Code::PermissionDenied
    );
    let ingests = fed.audit(VENTURA, Some("ingest")).unwrap();
    assert_eq!(ingests.len(), 1);
    fed.stop().await.unwrap();
}
