//! A broker cannot freeze a node's view of the registry. The broker signs its tree head
//! again at a fixed interval; a node whose newest verified head is older than its bound
//! refuses every inbound query (`REGISTRY_STALE`, an audit entry each, one alert per
//! episode) — so a revocation the broker withholds stops being enforced-by-omission within
//! the bound — and resumes by itself when a fresh, consistent head arrives.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use alpr_broker::regulator;
use alpr_federation::{Federation, admin_of, demo_agencies, params, synthetic_csv};
use alpr_proto::RefusalReason;
use alpr_proto::envelope::{ANSWER, REFUSAL};
use alpr_proto::pb::TreeHeadRequest;

const VENTURA: &str = "CA0560100";
const SACRAMENTO: &str = "CA0340000";
/// The bound the test node runs with, seconds.
const BOUND: u64 = 2;

async fn federation() -> (Federation, String) {
    let fed = Federation::start_clear(&demo_agencies()[..3])
        .await
        .unwrap();
    fed.ingest_csv(VENTURA, &synthetic_csv(VENTURA, &["8ABC123"], 10))
        .unwrap();
    let id = fed
        .agree(Federation::terms(VENTURA, SACRAMENTO, &["240"], 30, 86_400))
        .await
        .unwrap();
    (fed, id)
}

/// Ventura's node as a second process on the same files, with a short bound and no
/// syncing of its own: its view moves only when the test syncs it.
fn frozen_ventura(fed: &Federation) -> Arc<alpr_node::Node> {
    let mut cfg = fed.node_configs[VENTURA].clone();
    cfg.registry.max_head_age_secs = BOUND;
    cfg.registry.sync_interval_secs = 1;
    alpr_node::Node::open(&cfg).unwrap()
}

/// A fresh query from Sacramento, endorsed by its node, delivered to `node` as the
/// broker would; the reply's payload type and, for a refusal, its reason.
fn ask(fed: &Federation, node: &alpr_node::Node) -> (String, Option<(RefusalReason, String)>) {
    fed.forward_as_broker(SACRAMENTO, &params("8ABC123", &[VENTURA], "240", 3), node)
        .unwrap()
}

#[tokio::test]
async fn a_frozen_view_stops_every_answer_within_the_bound_even_with_a_revocation_withheld() {
    let (fed, id) = federation().await;
    let node = frozen_ventura(&fed);
    let (kind, _) = ask(&fed, &node);
    assert_eq!(kind, ANSWER, "a current view answers");

    // Ventura's admin revokes; the broker keeps it from this node (the node does not sync).
    let (mut adm, s) = fed
        .broker_client_as(fed.pki.person(VENTURA, &admin_of(VENTURA)))
        .unwrap();
    regulator::act(
        &mut adm,
        &s,
        &id,
        "revoke",
        "ended by Ventura, hidden from the node",
    )
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_secs(BOUND + 1)).await;

    // Past the bound: refused, logged, alerted — whatever the broker forwards.
    let (kind, refusal) = ask(&fed, &node);
    assert_eq!(kind, REFUSAL);
    let (reason, detail) = refusal.unwrap();
    assert_eq!(reason, RefusalReason::RegistryStale, "{detail}");
    assert!(detail.contains("past its 2 s bound"), "{detail}");
    let (_, again) = ask(&fed, &node);
    assert_eq!(again.unwrap().0, RefusalReason::RegistryStale);
    let inbound = fed.audit(VENTURA, Some("inbound_query")).unwrap();
    let stale: Vec<_> = inbound
        .iter()
        .filter(|e| e.entry.reason_code.as_deref() == Some("REGISTRY_STALE"))
        .collect();
    assert_eq!(stale.len(), 2, "each refusal is an entry");
    assert!(stale.iter().all(|e| e.entry.decision == "refused"));
    let alerts: Vec<_> = fed
        .audit(VENTURA, Some("alert"))
        .unwrap()
        .into_iter()
        .filter(|e| e.entry.decision == "registry_stale")
        .collect();
    assert_eq!(alerts.len(), 1, "one alert per stale episode");

    // A fresh, consistent head carries the revocation: it is enforced, not the staleness.
    node.sync_registry().await.unwrap();
    let (kind, refusal) = ask(&fed, &node);
    assert_eq!(kind, REFUSAL);
    let (reason, detail) = refusal.unwrap();
    assert_ne!(reason, RefusalReason::RegistryStale, "{detail}");
    fed.stop().await.unwrap();
}

#[tokio::test]
async fn answering_resumes_by_itself_with_a_fresh_head_and_cosignatures_carry_over() {
    let (fed, _) = federation().await;
    // The state regulator cosigns the current head.
    let (mut reg, reg_signer) = fed.broker_client_as(fed.pki.regulator("reg-ca")).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    regulator::cosign(
        &mut reg,
        &fed.trust,
        &reg_signer,
        &tmp.path().join("head.json"),
    )
    .await
    .unwrap();
    let node = frozen_ventura(&fed);
    assert_eq!(ask(&fed, &node).0, ANSWER);
    tokio::time::sleep(Duration::from_secs(BOUND + 1)).await;
    assert_eq!(ask(&fed, &node).1.unwrap().0, RefusalReason::RegistryStale);

    // The broker signs the same tree again (as its timer does every head_interval_secs):
    // a newer timestamp, the same size and root, the regulator's cosignature kept.
    let before = fed.broker.broker.head().unwrap();
    let now = alpr_pki::now_unix();
    assert_eq!(fed.broker.broker.refresh_head(now).unwrap(), Some(now));
    let after = fed.broker.broker.head().unwrap();
    let (b, a) = (
        alpr_proto::registry::verify_head(&fed.trust, &before, now).unwrap(),
        alpr_proto::registry::verify_head(&fed.trust, &after, now).unwrap(),
    );
    assert_eq!((a.size, a.root), (b.size, b.root));
    assert!(a.timestamp > b.timestamp);
    assert!(
        a.cosigned_by("US-CA"),
        "the cosignature still vouches for the tree"
    );

    // The node syncs (as its timer does) and answers again; no new alert.
    node.sync_registry().await.unwrap();
    assert_eq!(ask(&fed, &node).0, ANSWER);
    let alerts = fed
        .audit(VENTURA, Some("alert"))
        .unwrap()
        .into_iter()
        .filter(|e| e.entry.decision == "registry_stale")
        .count();
    assert_eq!(alerts, 1);
    fed.stop().await.unwrap();
}

#[tokio::test]
async fn a_head_dated_ahead_of_the_clock_is_refused() {
    let (fed, _) = federation().await;
    let future = alpr_pki::now_unix() + 3600;
    fed.broker.broker.refresh_head(future).unwrap();
    let mut client = fed.broker_client_as(fed.pki.node(VENTURA)).unwrap().0;
    let sth = client
        .get_tree_head(TreeHeadRequest {})
        .await
        .unwrap()
        .into_inner();
    let e = alpr_proto::registry::verify_head(&fed.trust, &sth, alpr_pki::now_unix()).unwrap_err();
    assert!(e.to_string().contains("ahead of this clock"), "{e}");
    // A node syncing it keeps its last view and reports why.
    let err = fed.nodes[VENTURA].node.sync_registry().await.unwrap_err();
    assert!(err.to_string().contains("ahead of this clock"), "{err}");
    fed.stop().await.unwrap();
}
