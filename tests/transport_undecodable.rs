//! A request the transport cannot decode — malformed protobuf, or bigger than the
//! transport's 16 MiB limit — is refused with INVALID_INPUT (the reason in the
//! `alpr-refusal-reason` trailer) and leaves an entry in the refusing party's log.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use alpr_federation::{Federation, demo_agencies, open_policy};
use alpr_proto::RefusalReason;
use alpr_proto::pb::{Proof, Signed};
use alpr_runtime::client::Target;
use alpr_runtime::tls::TlsIdentity;
use tonic::codegen::http::uri::PathAndQuery;

const VENTURA: &str = "CA0560100";
const SACRAMENTO: &str = "CA0340000";

/// Send `msg` to `method` at `addr` as `tls`, whatever type the method expects.
async fn call<M: prost::Message + Default + Send + Sync + 'static>(
    fed: &Federation,
    addr: std::net::SocketAddr,
    tls: &TlsIdentity,
    method: &'static str,
    msg: M,
) -> tonic::Status {
    let cfg = alpr_runtime::tls::client_config(&fed.trust, tls).unwrap();
    let target = Target {
        addr: addr.to_string(),
        server_name: "localhost".into(),
    };
    let ch = alpr_runtime::client::channel(&target, cfg, Duration::from_secs(20)).unwrap();
    let mut grpc = tonic::client::Grpc::new(ch);
    grpc.ready().await.unwrap();
    let codec = tonic_prost::ProstCodec::<M, Signed>::default();
    grpc.unary(
        tonic::Request::new(msg),
        PathAndQuery::from_static(method),
        codec,
    )
    .await
    .expect_err("an undecodable request must be refused")
}

#[tokio::test]
async fn undecodable_and_huge_requests_are_refused_and_logged() {
    let fed = Federation::start(None, &demo_agencies()[..2], |_| open_policy())
        .await
        .unwrap();
    // A `Proof` is not a `Signed`: its field 1 (bytes, here not UTF-8) lands on
    // `Signed.payload_type` (a string), which does not decode.
    let garbage = Proof {
        hashes: vec![vec![0xFF, 0xFE, 0xFD]],
    };
    let (c, k) = fed.pki.broker();
    let broker_tls = TlsIdentity::load(&c, &k).unwrap();
    let status = call(
        &fed,
        fed.nodes[VENTURA].addr,
        &broker_tls,
        "/alpr.v1.NodeInbound/AnswerQuery",
        garbage.clone(),
    )
    .await;
    assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
    assert_eq!(
        alpr_proto::reason_of(&status),
        Some(RefusalReason::InvalidInput)
    );
    assert!(
        status.message().contains("does not decode"),
        "{}",
        status.message()
    );
    let last = fed.audit(VENTURA, Some("inbound_query")).unwrap();
    let e = &last.last().expect("an audit entry").entry;
    assert_eq!(e.decision, "refused");
    assert_eq!(e.reason_code.as_deref(), Some("INVALID_INPUT"));
    assert!(
        e.peer.as_deref().unwrap().contains("broker"),
        "{:?}",
        e.peer
    );

    // Larger than the transport's limit: refused and logged the same way.
    let huge = Signed {
        payload_type: "alpr.v1.Endorsement".into(),
        payload: vec![0u8; alpr_proto::limits::TRANSPORT_MAX_MESSAGE + 1024],
        ..Default::default()
    };
    let before = fed.audit(VENTURA, Some("inbound_query")).unwrap().len();
    let status = call(
        &fed,
        fed.nodes[VENTURA].addr,
        &broker_tls,
        "/alpr.v1.NodeInbound/AnswerQuery",
        huge,
    )
    .await;
    assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
    assert_eq!(
        alpr_proto::reason_of(&status),
        Some(RefusalReason::InvalidInput)
    );
    let after = fed.audit(VENTURA, Some("inbound_query")).unwrap();
    assert_eq!(after.len(), before + 1);
    assert!(
        after
            .last()
            .unwrap()
            .entry
            .detail
            .as_deref()
            .unwrap()
            .contains("too large"),
        "{:?}",
        after.last().unwrap().entry.detail
    );

    // The broker: an undecodable RouteQuery from a node is a refused routing-log row.
    let (c, k) = fed.pki.node(SACRAMENTO);
    let node_tls = TlsIdentity::load(&c, &k).unwrap();
    let status = call(
        &fed,
        fed.broker.addr,
        &node_tls,
        "/alpr.v1.Broker/RouteQuery",
        garbage,
    )
    .await;
    assert_eq!(
        alpr_proto::reason_of(&status),
        Some(RefusalReason::InvalidInput)
    );
    let row = fed
        .broker_log()
        .unwrap()
        .into_iter()
        .rev()
        .find(|e| e.event == "route")
        .unwrap();
    assert_eq!(row.decision, "refused");
    assert_eq!(row.reason_code.as_deref(), Some("INVALID_INPUT"));
    assert!(row.requester.as_deref().unwrap().contains(SACRAMENTO));

    // Handler errors pass unchanged and the node still answers.
    fed.stop().await.unwrap();
}
