//! Standard operations: every server answers gRPC health checks and server reflection
//! (over the same mutual TLS), so grpcurl, grpc_health_probe and any-language clients work.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use alpr_federation::{Federation, demo_agencies, open_policy};
use alpr_proto::transport::{self, Target, TlsIdentity};
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
    let cfg = transport::client_config(&fed.trust, &me).unwrap();
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
        let ch = transport::channel(
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
