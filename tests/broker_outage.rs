//! Nodes ride out a broker outage (issue 19, item 5). With the broker down, an
//! investigator's search comes back at once with every target "unavailable" (the broker
//! unreachable, logged as such), a broker that accepts connections and never answers is cut
//! off at the node's deadline, and a provider node keeps enforcing its last verified
//! registry for its freshness bound (a query a broker replica still forwards is answered),
//! then fails closed (`REGISTRY_STALE`) until a fresh head arrives.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use alpr_federation::{Federation, demo_agencies, params, synthetic_csv};
use alpr_proto::RefusalReason;
use alpr_proto::envelope::{ANSWER, REFUSAL};
use alpr_proto::pb::TargetStatus;
use prost::Message;

const VENTURA: &str = "CA0560100";
const SACRAMENTO: &str = "CA0340000";
/// The freshness bound of the second Ventura process, seconds.
const BOUND: u64 = 3;

async fn federation() -> Federation {
    let fed = Federation::start_clear(&demo_agencies()[..3])
        .await
        .unwrap();
    fed.ingest_csv(VENTURA, &synthetic_csv(VENTURA, &["8ABC123"], 10))
        .unwrap();
    fed.agree(Federation::terms(VENTURA, SACRAMENTO, &["240"], 30, 86_400))
        .await
        .unwrap();
    fed
}

/// A query from Sacramento delivered to `node` as a surviving broker replica would.
fn forwarded(fed: &Federation, node: &alpr_node::Node) -> (String, Option<RefusalReason>) {
    let (kind, refusal) = fed
        .forward_as_broker(SACRAMENTO, &params("8ABC123", &[VENTURA], "240", 3), node)
        .unwrap();
    (kind, refusal.map(|(r, _)| r))
}

#[tokio::test]
async fn with_the_broker_down_searches_say_so_at_once_and_providers_hold_their_view_for_the_bound()
{
    let mut fed = federation().await;
    let (_, before) = fed
        .search(SACRAMENTO, &params("8ABC123", &[VENTURA], "240", 3))
        .await
        .unwrap();
    assert_eq!(before.results[0].status, TargetStatus::Answered as i32);

    // A second Ventura process on the same files, with a short bound, freshly synced.
    let mut cfg = fed.node_configs[VENTURA].clone();
    cfg.registry.max_head_age_secs = BOUND;
    let ventura: Arc<alpr_node::Node> = alpr_node::Node::open(&cfg).unwrap();
    ventura.sync_registry().await.unwrap();

    fed.broker.halt().await.unwrap();

    // The investigator: every target unavailable, the broker named as the cause, logged.
    let (_, resp) = fed
        .search(SACRAMENTO, &params("8ABC123", &[VENTURA], "240", 3))
        .await
        .unwrap();
    let r = &resp.results[0];
    assert_eq!(r.status, TargetStatus::Unavailable as i32, "{}", r.detail);
    assert_eq!(r.reason, RefusalReason::Unavailable as i32);
    assert!(r.detail.starts_with("broker unreachable"), "{}", r.detail);
    assert_eq!(
        r.decided_by, SACRAMENTO,
        "the requester's node says it, not a broker"
    );
    let results = fed.audit(SACRAMENTO, Some("outbound_result")).unwrap();
    let last = &results.last().unwrap().entry;
    assert_eq!(last.decision, "unavailable");
    assert_eq!(last.reason_code.as_deref(), Some("UNAVAILABLE"));
    assert!(
        last.detail
            .as_deref()
            .unwrap()
            .contains("broker unreachable")
    );

    // Ventura cannot sync (a clear error, nothing lost) but keeps its verified view: a
    // query a surviving replica forwards is answered within the bound.
    let e = ventura.sync_registry().await.unwrap_err().to_string();
    assert!(e.contains("Unavailable") && e.contains("refused"), "{e}");
    assert_eq!(forwarded(&fed, &ventura).0, ANSWER);
    assert_eq!(ventura.status().unwrap().agreements.len(), 1);

    // Past the bound it fails closed, each refusal logged.
    tokio::time::sleep(Duration::from_secs(BOUND + 1)).await;
    let (kind, reason) = forwarded(&fed, &ventura);
    assert_eq!(kind, REFUSAL);
    assert_eq!(reason, Some(RefusalReason::RegistryStale));
    let stale = fed
        .audit(VENTURA, Some("inbound_query"))
        .unwrap()
        .into_iter()
        .filter(|e| e.entry.reason_code.as_deref() == Some("REGISTRY_STALE"))
        .count();
    assert_eq!(stale, 1);
    fed.stop().await.unwrap();
}

#[tokio::test]
async fn a_broker_that_accepts_and_never_answers_is_cut_off_at_the_deadline() {
    let fed = federation().await;
    // A "broker" that takes the connection and says nothing.
    let hole = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = hole.local_addr().unwrap();
    let held = tokio::spawn(async move {
        let mut conns = Vec::new();
        while let Ok((c, _)) = hole.accept().await {
            conns.push(c);
        }
    });
    // Sacramento's node as a second process pointed at it, with a 700 ms deadline.
    let mut cfg = fed.node_configs[SACRAMENTO].clone();
    let broker = cfg.broker.as_mut().unwrap();
    broker.addr = addr.to_string();
    broker.timeout_ms = 700;
    let sacramento = alpr_node::Node::open(&cfg).unwrap();

    let (_, signed) = fed
        .sign_query(SACRAMENTO, &params("8ABC123", &[VENTURA], "240", 3))
        .unwrap();
    let (signer, _) = fed
        .person(SACRAMENTO, &alpr_federation::investigator_of(SACRAMENTO))
        .unwrap();
    let peer = fed
        .trust
        .verify(signer.chain(), alpr_pki::now_unix())
        .map_err(alpr_node::Error::from);
    // Bounded by the deadline: without it this would wait forever (the outer limit only
    // turns such a hang into a failure instead of a stuck test run).
    let resp = tokio::time::timeout(
        Duration::from_secs(60),
        sacramento.search(peer, signed.encode_to_vec()),
    )
    .await
    .expect("the search must not hang on a silent broker")
    .unwrap();
    let r = &resp.results[0];
    assert_eq!(r.status, TargetStatus::Unavailable as i32, "{}", r.detail);
    assert!(r.detail.starts_with("broker unreachable"), "{}", r.detail);
    let logged = fed.audit(SACRAMENTO, Some("outbound_result")).unwrap();
    assert_eq!(logged.last().unwrap().entry.decision, "unavailable");
    held.abort();
    fed.stop().await.unwrap();
}
