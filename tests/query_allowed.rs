//! An allowed query over real mutual TLS: reads come back signed by the owner, bound to
//! the requester, and every party logs it; the broker keeps no reads.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use alpr_federation::{
    Federation, demo_agencies, investigator_of, open_policy, params, synthetic_csv,
};
use alpr_node::client::{self, Reply};
use alpr_proto::pb::TargetStatus;

const VENTURA: &str = "CA0560100";
const SACRAMENTO: &str = "CA0340000";
const FRESNO: &str = "CA0100500";

#[tokio::test]
async fn allowed_query_returns_signed_reads_and_is_logged_by_every_party() {
    let fed = Federation::start(None, &demo_agencies(), |_| open_policy())
        .await
        .unwrap();
    for ori in [VENTURA, FRESNO] {
        fed.ingest_csv(ori, &synthetic_csv(ori, &["8ABC123", "5XYZ987"], 10))
            .unwrap();
    }
    fed.agree(Federation::terms(VENTURA, SACRAMENTO, &["240"], 30, 86_400))
        .await
        .unwrap();

    let (q, resp) = fed
        .search(
            SACRAMENTO,
            &params("8abc 123", &[VENTURA, FRESNO], "240", 5),
        )
        .await
        .unwrap();
    assert_eq!(q.plate, "8ABC123", "plate normalized before signing");
    let ventura = resp.results.iter().find(|r| r.ori == VENTURA).unwrap();
    assert_eq!(ventura.status, TargetStatus::Answered as i32);
    let Some(Reply::Answer { answer: a, .. }) =
        client::verify_reply(&fed.trust, ventura, &q, alpr_pki::now_unix()).unwrap()
    else {
        panic!("expected an answer");
    };
    assert_eq!(a.reads.len(), 5, "one read per day in a 5-day window");
    assert!(
        a.reads
            .iter()
            .all(|r| r.plate == "8ABC123" && r.captured_at >= q.window_start)
    );
    assert!(a.not_for_redissemination);
    assert_eq!(
        (a.requester_ori.as_str(), a.requester_user.as_str()),
        (SACRAMENTO, investigator_of(SACRAMENTO).as_str())
    );

    // Partial results: Fresno has no agreement with Sacramento; Ventura still answered.
    let fresno = resp.results.iter().find(|r| r.ori == FRESNO).unwrap();
    assert_eq!(fresno.status, TargetStatus::Refused as i32);

    // The owner logged the full requester identity, plate, purpose and case.
    let inbound = fed.audit(VENTURA, Some("inbound_query")).unwrap();
    assert_eq!(inbound.len(), 1);
    let e = &inbound[0].entry;
    assert_eq!(e.decision, "answered");
    assert_eq!(
        e.requester_user.as_deref(),
        Some(investigator_of(SACRAMENTO).as_str())
    );
    assert_eq!(e.requester_ori.as_deref(), Some(SACRAMENTO));
    assert_eq!(
        (e.plate.as_deref(), e.purpose.as_deref(), e.count),
        (Some("8ABC123"), Some("240"), Some(5))
    );
    assert!(e.peer.as_deref().unwrap().contains("broker"));

    // The requester logged the outbound query and one result per target.
    assert_eq!(
        fed.audit(SACRAMENTO, Some("outbound_query")).unwrap().len(),
        1
    );
    assert_eq!(
        fed.audit(SACRAMENTO, Some("outbound_result"))
            .unwrap()
            .len(),
        2
    );

    // The broker logged routing decisions but holds no reads: the plate never touches its disk.
    let log = fed.broker_log().unwrap();
    assert!(
        log.iter()
            .any(|l| l.decision == "forwarded" && l.target.as_deref() == Some(VENTURA))
    );
    // The outcome is recorded too: queued after the reply, durable once flushed.
    fed.broker.broker.flush_log().await.unwrap();
    let log = fed.broker_log().unwrap();
    assert!(log.iter().any(|l| l.event == "route_result"
        && l.decision == "answered"
        && l.target.as_deref() == Some(VENTURA)
        && l.query_id.as_deref() == Some(hex::encode(&q.query_id).as_str())));
    let broker_dir = fed.dir.join("broker");
    fed.broker
        .broker
        .db()
        .connection()
        .expect("a SQLite broker")
        .execute_batch("PRAGMA wal_checkpoint(TRUNCATE);")
        .unwrap();
    for f in std::fs::read_dir(&broker_dir).unwrap() {
        let bytes = std::fs::read(f.unwrap().path()).unwrap();
        assert!(
            !bytes.windows(7).any(|w| w == b"8ABC123"),
            "broker stored a plate"
        );
    }
    fed.stop().await.unwrap();
}

#[tokio::test]
async fn a_dead_target_is_unavailable_without_failing_the_query() {
    // Files kept in a directory of the test's own, to read the broker's log after it stops.
    let tmp = tempfile::tempdir().unwrap();
    let mut fed = Federation::start(Some(tmp.path().join("fed")), &demo_agencies(), |_| {
        open_policy()
    })
    .await
    .unwrap();
    fed.ingest_csv(VENTURA, &synthetic_csv(VENTURA, &["8ABC123"], 3))
        .unwrap();
    fed.agree(Federation::terms(VENTURA, SACRAMENTO, &["240"], 30, 86_400))
        .await
        .unwrap();
    fed.agree(Federation::terms(FRESNO, SACRAMENTO, &["240"], 30, 86_400))
        .await
        .unwrap();
    // Fresno's node goes down.
    fed.nodes.remove(FRESNO).unwrap().stop().await.unwrap();
    let (_, resp) = fed
        .search(SACRAMENTO, &params("8ABC123", &[VENTURA, FRESNO], "240", 2))
        .await
        .unwrap();
    let status = |ori: &str| resp.results.iter().find(|r| r.ori == ori).unwrap().status;
    assert_eq!(status(VENTURA), TargetStatus::Answered as i32);
    assert_eq!(status(FRESNO), TargetStatus::Unavailable as i32);
    let results = fed.audit(SACRAMENTO, Some("outbound_result")).unwrap();
    assert!(results.iter().any(|e| e.entry.target.as_deref() == Some(FRESNO) && e.entry.decision == "unavailable"));
    // Stopping the broker flushes the outcome rows queued by the last query.
    let db = fed.dir.join("broker").join("broker.db");
    fed.stop().await.unwrap();
    let log = alpr_broker::store::read_log(&alpr_broker::store::open(&db).unwrap()).unwrap();
    let outcome = |ori: &str| {
        log.iter()
            .find(|l| l.event == "route_result" && l.target.as_deref() == Some(ori))
            .map(|l| l.decision.to_string())
    };
    assert_eq!(outcome(VENTURA).as_deref(), Some("answered"));
    assert_eq!(outcome(FRESNO).as_deref(), Some("unavailable"));
}

/// A plate is its characters plus its issuing state: a California query never returns the
/// Nevada car with the same characters, nor reads whose state is unknown; "any state" must
/// be asked for, returns all of them, and is logged as such by both parties.
#[tokio::test]
async fn a_plate_is_its_characters_and_its_issuing_state() {
    let fed = Federation::start(None, &demo_agencies()[..2], |_| open_policy())
        .await
        .unwrap();
    let now = alpr_pki::now_unix();
    let t = |h: i64| alpr_node::cli::fmt_time(now - h * 3_600);
    // A vendor export: columns by name, extra columns, one read without a state.
    let csv = format!(
        "plate,plate_state,captured_at,camera_id,latitude,longitude,confidence\n\
         8ABC123,CA,{},CAM-1,34.2,-119.2,0.98\n\
         8ABC123,NV,{},CAM-2,34.2,-119.2,0.95\n\
         8ABC123,,{},CAM-3,34.2,-119.2,0.60\n",
        t(1),
        t(2),
        t(3)
    );
    let report = fed.ingest_csv(VENTURA, &csv).unwrap();
    assert_eq!((report.accepted, report.rejects.len()), (3, 0));
    fed.agree(Federation::terms(VENTURA, SACRAMENTO, &["240"], 30, 86_400))
        .await
        .unwrap();
    let states = |resp: &alpr_proto::pb::RouteResponse, q: &alpr_proto::pb::Query| {
        let Some(Reply::Answer { answer, .. }) =
            client::verify_reply(&fed.trust, &resp.results[0], q, alpr_pki::now_unix()).unwrap()
        else {
            panic!("expected an answer: {:?}", resp.results[0]);
        };
        answer
            .reads
            .iter()
            .map(|r| r.plate_state.clone())
            .collect::<Vec<_>>()
    };
    let (q, resp) = fed
        .search(SACRAMENTO, &params("8ABC123", &[VENTURA], "240", 2))
        .await
        .unwrap();
    assert_eq!(states(&resp, &q), vec!["CA"]);
    let mut any = params("8ABC123", &[VENTURA], "240", 2);
    any.plate_state = "any".into();
    let (q, resp) = fed.search(SACRAMENTO, &any).await.unwrap();
    assert_eq!(q.plate_state, "ANY");
    let mut got = states(&resp, &q);
    got.sort();
    assert_eq!(got, vec!["", "CA", "NV"]);
    // Both parties logged which state was asked for.
    for (ori, event) in [(VENTURA, "inbound_query"), (SACRAMENTO, "outbound_query")] {
        let logged: Vec<_> = fed
            .audit(ori, Some(event))
            .unwrap()
            .into_iter()
            .filter_map(|e| e.entry.plate_state)
            .collect();
        assert!(logged.contains(&"CA".to_string()), "{ori}: {logged:?}");
        assert!(logged.contains(&"ANY".to_string()), "{ori}: {logged:?}");
    }
    // A query that names no state is refused before it leaves.
    let mut none = params("8ABC123", &[VENTURA], "240", 2);
    none.plate_state = String::new();
    assert!(fed.sign_query(SACRAMENTO, &none).is_err());
    fed.stop().await.unwrap();
}
