//! Mutual TLS: no certificate from the state root, no connection; the TLS peer must be
//! the party the message claims.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use alpr_federation::{Federation, demo_agencies, open_policy, params};
use alpr_node::client;
use alpr_proto::pb::SearchRequest;
use alpr_runtime::client::Target;
use alpr_runtime::tls::TlsIdentity;
use prost::Message;

const VENTURA: &str = "CA0560100";
const SACRAMENTO: &str = "CA0340000";

#[tokio::test]
async fn a_client_from_another_root_cannot_connect() {
    let fed = Federation::start(None, &demo_agencies()[..2], |_| open_policy())
        .await
        .unwrap();
    let other = Federation::start(None, &demo_agencies()[..2], |_| open_policy())
        .await
        .unwrap();
    // Sacramento's investigator from the *other* federation (another root) talks to this node.
    let (signer, tls) = other
        .person(SACRAMENTO, &alpr_federation::investigator_of(SACRAMENTO))
        .unwrap();
    let (_, signed) = client::sign_query(
        &signer,
        &other.trust,
        &params("8ABC123", &[VENTURA], "240", 3),
        alpr_pki::now_unix(),
    )
    .unwrap();
    let target = Target {
        addr: fed.nodes[SACRAMENTO].addr.to_string(),
        server_name: "localhost".into(),
    };
    // Trusting this federation's root, presenting the foreign certificate: the server refuses the handshake.
    let mut c = client::node_client(&target, &fed.trust, &tls, Duration::from_secs(5)).unwrap();
    let err = c
        .search(SearchRequest {
            signed_query: signed.encode_to_vec(),
        })
        .await
        .unwrap_err();
    // The TLS handshake fails: the request never reaches the service.
    assert!(
        matches!(err.code(), tonic::Code::Unavailable | tonic::Code::Unknown),
        "{err}"
    );
    assert!(
        format!("{err:?}").contains("alert") || err.code() == tonic::Code::Unavailable,
        "{err:?}"
    );
    assert!(
        fed.audit(SACRAMENTO, Some("outbound_query"))
            .unwrap()
            .is_empty()
    );
    other.stop().await.unwrap();
    fed.stop().await.unwrap();
}

#[tokio::test]
async fn an_investigator_cannot_send_through_another_agencys_node() {
    let fed = Federation::start(None, &demo_agencies()[..2], |_| open_policy())
        .await
        .unwrap();
    let (signer, tls) = fed
        .person(SACRAMENTO, &alpr_federation::investigator_of(SACRAMENTO))
        .unwrap();
    let (_, signed) = client::sign_query(
        &signer,
        &fed.trust,
        &params("8ABC123", &[SACRAMENTO], "240", 3),
        alpr_pki::now_unix(),
    )
    .unwrap();
    let target = Target {
        addr: fed.nodes[VENTURA].addr.to_string(),
        server_name: "localhost".into(),
    };
    let mut c = client::node_client(&target, &fed.trust, &tls, Duration::from_secs(5)).unwrap();
    let err = c
        .search(SearchRequest {
            signed_query: signed.encode_to_vec(),
        })
        .await
        .unwrap_err();
    assert!(err.message().contains("CERT_INVALID"), "{err}");
    let rows = fed.audit(VENTURA, Some("outbound_query")).unwrap();
    assert_eq!(rows[0].entry.reason_code.as_deref(), Some("CERT_INVALID"));
    fed.stop().await.unwrap();
}

#[tokio::test]
async fn the_broker_refuses_an_endorsement_relayed_by_another_node() {
    let fed = Federation::start(None, &demo_agencies()[..2], |_| open_policy())
        .await
        .unwrap();
    let (_, signed) = fed
        .sign_query(SACRAMENTO, &params("8ABC123", &[VENTURA], "240", 3))
        .unwrap();
    let endorsed = fed.endorse(SACRAMENTO, &signed).unwrap();
    // Ventura's node (TLS peer) presents Sacramento's endorsement to the broker.
    let (c, k) = fed.pki.node(VENTURA);
    let tls = TlsIdentity::load(&c, &k).unwrap();
    let target = Target {
        addr: fed.broker.addr.to_string(),
        server_name: "localhost".into(),
    };
    let mut b = client::broker_client(&target, &fed.trust, &tls, Duration::from_secs(5)).unwrap();
    let err = b.route_query(endorsed).await.unwrap_err();
    assert!(err.message().contains("CLAIM_MISMATCH"), "{err}");
    assert!(
        fed.broker_log()
            .unwrap()
            .iter()
            .any(|l| l.reason_code.as_deref() == Some("CLAIM_MISMATCH"))
    );
    fed.stop().await.unwrap();
}

/// Demo node certificates name `127.0.0.1` as an IP SAN, so a client reaches a node at its
/// loopback address without overriding the TLS name.
#[tokio::test]
async fn a_client_can_name_the_node_by_its_loopback_ip() {
    let fed = Federation::start(None, &demo_agencies()[..2], |_| open_policy())
        .await
        .unwrap();
    let (_, tls) = fed
        .person(SACRAMENTO, &alpr_federation::investigator_of(SACRAMENTO))
        .unwrap();
    let (signer, _) = fed
        .person(SACRAMENTO, &alpr_federation::investigator_of(SACRAMENTO))
        .unwrap();
    let (_, signed) = client::sign_query(
        &signer,
        &fed.trust,
        &params("8ABC123", &[VENTURA], "240", 3),
        alpr_pki::now_unix(),
    )
    .unwrap();
    let addr = fed.nodes[SACRAMENTO].addr;
    assert_eq!(addr.ip().to_string(), "127.0.0.1");
    let target = Target {
        addr: addr.to_string(),
        server_name: "127.0.0.1".into(),
    };
    let mut c = client::node_client(&target, &fed.trust, &tls, Duration::from_secs(5)).unwrap();
    let resp = c
        .search(SearchRequest {
            signed_query: signed.encode_to_vec(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        resp.results.len(),
        1,
        "the handshake succeeded and the query was routed"
    );
    fed.stop().await.unwrap();
}
