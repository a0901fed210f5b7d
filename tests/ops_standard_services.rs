//! Standard operations: every server answers gRPC health checks and server reflection
//! (over the same mutual TLS), so grpcurl, grpc_health_probe and any-language clients work.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use alpr_federation::{Federation, demo_agencies, open_policy};
use alpr_runtime::client::Target;
use alpr_runtime::tls::TlsIdentity;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;
use tonic_reflection::pb::v1::ServerReflectionRequest;
use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;

#[tokio::test]
async fn health_and_reflection_on_node_and_broker() {
    let fed = Federation::start(None, &demo_agencies()[..1], |_| open_policy())
        .await
        .unwrap();
    let ori = demo_agencies()[0].ori;
    let (c, k) = fed.pki.node(ori);
    let me = TlsIdentity::load(&c, &k).unwrap();
    let cfg = alpr_runtime::tls::client_config(&fed.trust, &me).unwrap();
    let servers = [
        (
            fed.nodes[ori].addr,
            vec![
                "alpr.v1.NodeInbound",
                "alpr.v1.NodeLocal",
                "alpr.v1.NodeAdmin",
            ],
        ),
        (fed.broker.addr, vec!["alpr.v1.Broker"]),
    ];
    for (addr, services) in servers {
        let ch = alpr_runtime::client::channel(
            &Target {
                addr: addr.to_string(),
                server_name: "localhost".into(),
            },
            cfg.clone(),
            Duration::from_secs(5),
        )
        .unwrap();
        let mut health = HealthClient::new(ch.clone());
        for s in services.iter().chain([&""]) {
            let r = health
                .check(HealthCheckRequest {
                    service: s.to_string(),
                })
                .await
                .unwrap()
                .into_inner();
            assert_eq!(r.status, 1, "{s} SERVING");
        }
        assert!(
            health
                .check(HealthCheckRequest {
                    service: "no.such.Service".into()
                })
                .await
                .is_err()
        );

        let mut refl = ServerReflectionClient::new(ch);
        let req = ServerReflectionRequest {
            host: String::new(),
            message_request: Some(MessageRequest::ListServices(String::new())),
        };
        let mut stream = refl
            .server_reflection_info(tokio_stream::iter([req]))
            .await
            .unwrap()
            .into_inner();
        let resp = stream.message().await.unwrap().unwrap();
        let Some(MessageResponse::ListServicesResponse(list)) = resp.message_response else {
            panic!("no service list")
        };
        let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
        for s in services {
            assert!(names.iter().any(|n| n == s), "{s} missing from {names:?}");
        }
    }
    fed.stop().await.unwrap();
}

#[tokio::test]
async fn prometheus_metrics_count_outcomes_and_latencies() {
    use std::io::{Read, Write};
    let agencies = demo_agencies();
    let fed = Federation::start(None, &agencies[..2], |_| open_policy())
        .await
        .unwrap();
    let (v, s) = (agencies[0].ori, agencies[1].ori);
    fed.agree(Federation::terms(v, s, &["240"], 30, 86_400))
        .await
        .unwrap();
    fed.search(s, &alpr_federation::params("8ABC123", &[v], "240", 3))
        .await
        .unwrap();
    fed.search(s, &alpr_federation::params("8ABC123", &[v], "13A", 3))
        .await
        .unwrap();
    let addr = fed.nodes[v].metrics_addr.unwrap();
    let text = tokio::task::spawn_blocking(move || {
        let mut c = std::net::TcpStream::connect(addr).unwrap();
        c.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
        let mut t = String::new();
        c.read_to_string(&mut t).unwrap();
        t
    })
    .await
    .unwrap();
    assert!(
        text.contains("alpr_inbound_queries_total{decision=\"answered\",reason=\"\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("alpr_inbound_answer_seconds_count{decision=\"answered\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("# TYPE alpr_audit_commit_seconds histogram"),
        "{text}"
    );
    let broker = &fed.broker.broker.metrics;
    assert_eq!(
        broker
            .routing_decisions
            .get_or_create(&alpr_broker::metrics::DecisionReason {
                decision: "refused".into(),
                reason: "PURPOSE_NOT_COVERED".into(),
            })
            .get(),
        1
    );
    assert_eq!(
        fed.nodes[s]
            .node
            .metrics
            .outbound_results
            .get_or_create(&alpr_node::metrics::StatusReason {
                status: "TARGET_STATUS_ANSWERED".into(),
                reason: "REFUSAL_REASON_UNSPECIFIED".into(),
            })
            .get(),
        1
    );
    fed.stop().await.unwrap();
}

/// Health of a node's services and of the server as a whole (1 SERVING, 2 NOT_SERVING).
async fn node_health(fed: &Federation, ori: &str) -> Vec<i32> {
    let (c, k) = fed.pki.node(ori);
    let me = TlsIdentity::load(&c, &k).unwrap();
    let ch = alpr_runtime::client::channel(
        &Target {
            addr: fed.nodes[ori].addr.to_string(),
            server_name: "localhost".into(),
        },
        alpr_runtime::tls::client_config(&fed.trust, &me).unwrap(),
        Duration::from_secs(5),
    )
    .unwrap();
    let mut health = HealthClient::new(ch);
    let mut out = Vec::new();
    for s in ["alpr.v1.NodeInbound", "alpr.v1.NodeLocal", ""] {
        let r = health
            .check(HealthCheckRequest { service: s.into() })
            .await
            .unwrap()
            .into_inner();
        out.push(r.status);
    }
    out
}

async fn wait_for_health(fed: &Federation, ori: &str, want: i32) {
    for _ in 0..100 {
        if node_health(fed, ori).await.iter().all(|s| *s == want) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("{ori} never reported health status {want}");
}

#[tokio::test]
async fn a_node_that_cannot_write_its_audit_log_answers_nothing_and_reports_not_serving() {
    let agencies = demo_agencies();
    let fed = Federation::start(None, &agencies[..2], |_| open_policy())
        .await
        .unwrap();
    let (v, s) = (agencies[0].ori, agencies[1].ori);
    fed.ingest_csv(v, &alpr_federation::synthetic_csv(v, &["8ABC123"], 5))
        .unwrap();
    fed.agree(Federation::terms(v, s, &["240"], 30, 86_400))
        .await
        .unwrap();
    wait_for_health(&fed, v, 1).await;
    let before = fed.audit(v, None).unwrap().len();

    // The audit store breaks under the running node (here: its table is moved away).
    let conn = fed.node_configs[v].open_audit().unwrap();
    conn.connection()
        .execute_batch("ALTER TABLE audit RENAME TO audit_moved")
        .unwrap();
    let p = alpr_federation::params("8ABC123", &[v], "240", 3);
    let (_, signed) = fed.sign_query(s, &p).unwrap();
    let forwarded = fed.rogue_forward(v, fed.endorse(s, &signed).unwrap()).await;
    assert!(
        forwarded.is_err(),
        "a node that cannot log must not answer: {forwarded:?}"
    );
    wait_for_health(&fed, v, 2).await;

    // Repaired: the next query is logged and answered, and health recovers.
    conn.connection()
        .execute_batch("ALTER TABLE audit_moved RENAME TO audit")
        .unwrap();
    let (_, signed) = fed.sign_query(s, &p).unwrap();
    let reply = fed
        .rogue_forward(v, fed.endorse(s, &signed).unwrap())
        .await
        .unwrap();
    assert_eq!(reply.payload_type, alpr_proto::envelope::ANSWER);
    wait_for_health(&fed, v, 1).await;
    let after = fed.audit(v, Some("inbound_query")).unwrap();
    assert_eq!(after.last().unwrap().entry.decision, "answered");
    assert_eq!(
        fed.audit(v, None).unwrap().len(),
        before + 1,
        "the failed query left no entry"
    );
    let report = fed.verify_audit(v).unwrap();
    assert_eq!(report.entries as usize, before + 1, "the chain is intact");
    fed.stop().await.unwrap();
}

/// Health of the broker's service and of its server as a whole (1 SERVING, 2 NOT_SERVING).
async fn broker_health(fed: &Federation) -> Vec<i32> {
    let (c, k) = fed.pki.node(demo_agencies()[0].ori);
    let me = TlsIdentity::load(&c, &k).unwrap();
    let ch = alpr_runtime::client::channel(
        &Target {
            addr: fed.broker.addr.to_string(),
            server_name: "localhost".into(),
        },
        alpr_runtime::tls::client_config(&fed.trust, &me).unwrap(),
        Duration::from_secs(5),
    )
    .unwrap();
    let mut health = HealthClient::new(ch);
    let mut out = Vec::new();
    for s in ["alpr.v1.Broker", ""] {
        let r = health
            .check(HealthCheckRequest { service: s.into() })
            .await
            .unwrap()
            .into_inner();
        out.push(r.status);
    }
    out
}

async fn wait_for_broker_health(fed: &Federation, want: i32) {
    for _ in 0..250 {
        if broker_health(fed).await.iter().all(|s| *s == want) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("the broker never reported health status {want}");
}

#[tokio::test]
async fn a_broker_that_cannot_write_its_routing_log_forwards_nothing_and_reports_not_serving() {
    let agencies = demo_agencies();
    let fed = Federation::start(None, &agencies[..2], |_| open_policy())
        .await
        .unwrap();
    let (v, s) = (agencies[0].ori, agencies[1].ori);
    fed.ingest_csv(v, &alpr_federation::synthetic_csv(v, &["8ABC123"], 5))
        .unwrap();
    fed.agree(Federation::terms(v, s, &["240"], 30, 86_400))
        .await
        .unwrap();
    wait_for_broker_health(&fed, 1).await;
    let p = alpr_federation::params("8ABC123", &[v], "240", 3);
    let answered_before = fed.audit(v, Some("inbound_query")).unwrap().len();

    // The routing log breaks under the running broker (its table moved away).
    let rename = |from: &str, to: &str| {
        let db = fed.broker.broker.db();
        db.connection()
            .unwrap()
            .execute_batch(&format!("ALTER TABLE {from} RENAME TO {to}"))
            .unwrap();
    };
    rename("log", "log_moved");
    let broken = fed.search(s, &p).await;
    assert!(
        broken.is_err()
            || broken.as_ref().is_ok_and(
                |(_, r)| r.results[0].status != alpr_proto::pb::TargetStatus::Answered as i32
            ),
        "a broker that cannot log must not forward: {broken:?}"
    );
    wait_for_broker_health(&fed, 2).await;
    assert_eq!(
        fed.audit(v, Some("inbound_query")).unwrap().len(),
        answered_before,
        "nothing reached the target"
    );

    // Repaired: health recovers without a query arriving (a load balancer sends none to a
    // replica it took out), and the next query is logged and forwarded.
    rename("log_moved", "log");
    wait_for_broker_health(&fed, 1).await;
    let (_, reply) = fed.search(s, &p).await.unwrap();
    assert_eq!(
        reply.results[0].status,
        alpr_proto::pb::TargetStatus::Answered as i32,
        "{}",
        reply.results[0].detail
    );
    fed.stop().await.unwrap();
}
