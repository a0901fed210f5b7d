//! Replay memory survives a restart. Nodes and the broker keep the ids of recent queries in
//! memory and rebuild them at start from their own durable logs (the node's audit log, the
//! broker's routing log). A query answered before a restart is refused as a replay after
//! it, and the refusal is logged.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use alpr_federation::{Federation, demo_agencies, params, synthetic_csv};
use alpr_proto::RefusalReason;
use alpr_proto::envelope::{self, ANSWER, REFUSAL};
use alpr_proto::pb::{Refusal, TargetStatus};

const VENTURA: &str = "CA0560100";
const SACRAMENTO: &str = "CA0340000";

async fn federation() -> Federation {
    let fed = Federation::start_clear(&demo_agencies()).await.unwrap();
    fed.ingest_csv(VENTURA, &synthetic_csv(VENTURA, &["8ABC123"], 10))
        .unwrap();
    fed.agree(Federation::terms(VENTURA, SACRAMENTO, &["240"], 30, 86_400))
        .await
        .unwrap();
    fed
}

#[tokio::test]
async fn a_node_restarted_after_answering_refuses_the_same_query_as_a_replay() {
    let fed = federation().await;
    let (_, signed) = fed
        .sign_query(SACRAMENTO, &params("8ABC123", &[VENTURA], "240", 3))
        .unwrap();
    let endorsed = fed.endorse(SACRAMENTO, &signed).unwrap();
    let first = fed.rogue_forward(VENTURA, endorsed.clone()).await.unwrap();
    assert_eq!(first.payload_type, ANSWER);

    // A second process on the same files, as after a restart: its memory comes from the
    // audit log alone.
    let restarted = alpr_node::Node::open(&fed.node_configs[VENTURA]).unwrap();
    let now = alpr_pki::now_unix();
    let broker_id = fed
        .trust
        .verify(
            &alpr_pki::read_cert_chain(&fed.pki.broker().0).unwrap(),
            now,
        )
        .unwrap();
    let reply = restarted
        .answer_forwarded(Ok(broker_id), &endorsed)
        .unwrap();
    let (_, r): (_, Refusal) = envelope::open_as(&fed.trust, &reply, REFUSAL, now).unwrap();
    assert_eq!(r.reason, RefusalReason::Replay as i32, "{}", r.detail);
    let rows = fed.audit(VENTURA, Some("inbound_query")).unwrap();
    let last = &rows.last().unwrap().entry;
    assert_eq!(last.reason_code.as_deref(), Some("REPLAY"));
    assert_eq!(last.decision, "refused");
    assert_eq!(rows.len(), 2, "one answered, one refused");
    fed.stop().await.unwrap();
}

#[tokio::test]
async fn a_broker_restarted_after_routing_refuses_the_same_query_as_a_replay() {
    let fed = federation().await;
    let (_, signed) = fed
        .sign_query(SACRAMENTO, &params("8ABC123", &[VENTURA], "240", 3))
        .unwrap();
    let resp = fed.send_signed(SACRAMENTO, &signed).await.unwrap();
    assert_eq!(resp.results[0].status, TargetStatus::Answered as i32);

    let cfg = alpr_broker::BrokerConfig::load(&fed.dir.join("broker").join("broker.toml")).unwrap();
    let restarted = alpr_broker::Broker::open(&cfg).unwrap();
    let endorser = fed
        .trust
        .verify(
            fed.node_signer(SACRAMENTO).unwrap().chain(),
            alpr_pki::now_unix(),
        )
        .unwrap();
    let endorsed = fed.endorse(SACRAMENTO, &signed).unwrap();
    let again = restarted.route(Ok(endorser), endorsed).await.unwrap();
    let r = &again.results[0];
    assert_eq!(r.status, TargetStatus::Refused as i32);
    assert_eq!(r.reason, RefusalReason::Replay as i32, "{}", r.detail);
    assert_eq!(r.decided_by, "broker");
    let log = restarted.log().unwrap();
    let last = log.iter().rev().find(|e| e.event == "route").unwrap();
    assert_eq!(last.reason_code.as_deref(), Some("REPLAY"));
    assert_eq!(last.target.as_deref(), Some(VENTURA));
    fed.stop().await.unwrap();
}
