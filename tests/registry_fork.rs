//! A broker that rewrites or forks the registry is caught: by the broker itself at start
//! (tampered database), by a regulator holding a saved head, and by a node that keeps the
//! heads it has seen. A node that requires a regulator cosignature never accepts a head
//! the regulator did not witness.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use alpr_broker::regulator::{self, SavedHead};
use alpr_federation::{Federation, admin_of, demo_agencies, open_policy};
use alpr_node::client;
use alpr_runtime::client::Target;
use alpr_runtime::tls::TlsIdentity;

const VENTURA: &str = "CA0560100";
const SACRAMENTO: &str = "CA0340000";
const FRESNO: &str = "CA0100500";

/// Start a second broker (same certificate) from a snapshot of the first one's database.
async fn fork_from(
    fed: &Federation,
    snapshot: &std::path::Path,
    dir: &std::path::Path,
) -> alpr_broker::RunningBroker {
    let mut cfg =
        alpr_broker::BrokerConfig::load(&fed.dir.join("broker").join("broker.toml")).unwrap();
    cfg.data_dir = dir.to_path_buf();
    cfg.listen = "127.0.0.1:0".parse().unwrap();
    std::fs::create_dir_all(dir).unwrap();
    std::fs::copy(snapshot, cfg.db_path()).unwrap();
    alpr_broker::start(&cfg).await.unwrap()
}

fn snapshot(fed: &Federation, to: &std::path::Path) {
    fed.broker
        .broker
        .db()
        .connection()
        .expect("a SQLite broker")
        .execute("VACUUM INTO ?1", [to.to_str().unwrap()])
        .unwrap();
}

fn node_client_to(
    fed: &Federation,
    ori: &str,
    addr: std::net::SocketAddr,
) -> alpr_proto::pb::broker_client::BrokerClient<tonic::transport::Channel> {
    let (c, k) = fed.pki.node(ori);
    let tls = TlsIdentity::load(&c, &k).unwrap();
    client::broker_client(
        &Target {
            addr: addr.to_string(),
            server_name: "localhost".into(),
        },
        &fed.trust,
        &tls,
        Duration::from_secs(10),
    )
    .unwrap()
}

#[tokio::test]
async fn nodes_and_regulators_detect_a_forked_registry() {
    let tmp = tempfile::tempdir().unwrap();
    let fed = Federation::start(None, &demo_agencies()[..3], |_| open_policy())
        .await
        .unwrap();
    let id = fed
        .agree(Federation::terms(VENTURA, SACRAMENTO, &["240"], 30, 86_400))
        .await
        .unwrap();
    let (mut reg, reg_signer) = fed.broker_client_as(fed.pki.regulator("reg-ca")).unwrap();
    let saved_path = tmp.path().join("reg-ca.head.json");
    regulator::cosign(&mut reg, &fed.trust, &reg_signer, &saved_path)
        .await
        .unwrap();
    let saved = SavedHead::load(&saved_path).unwrap().unwrap();
    // The log so far: each node's sealing key, then the registration.
    assert_eq!(saved.size, fed.broker.broker.entries(0, 1000).len() as u64);

    // Snapshot the log at size 1, then the real history goes on: Ventura revokes.
    let snap = tmp.path().join("snap.db");
    snapshot(&fed, &snap);
    let (mut adm, s) = fed
        .broker_client_as(fed.pki.person(VENTURA, &admin_of(VENTURA)))
        .unwrap();
    regulator::act(&mut adm, &s, &id, "revoke", "ended by Ventura")
        .await
        .unwrap();
    fed.sync(&[VENTURA, SACRAMENTO]).await.unwrap();

    // A forked broker hides the revocation and shows a different entry 1 instead.
    let fork = fork_from(&fed, &snap, &tmp.path().join("fork")).await;
    let terms = Federation::terms(FRESNO, SACRAMENTO, &["240"], 30, 86_400);
    let mut sa = client::draft_agreement(&terms).unwrap();
    for ori in [FRESNO, SACRAMENTO] {
        let (c, k) = fed.pki.person(ori, &admin_of(ori));
        client::sign_agreement(
            &mut sa,
            &alpr_pki::Signer::load(&c, &k).unwrap(),
            &fed.trust,
        )
        .unwrap();
    }
    let mut fork_as_fresno = {
        let (c, k) = fed.pki.person(FRESNO, &admin_of(FRESNO));
        let tls = TlsIdentity::load(&c, &k).unwrap();
        client::broker_client(
            &Target {
                addr: fork.addr.to_string(),
                server_name: "localhost".into(),
            },
            &fed.trust,
            &tls,
            Duration::from_secs(10),
        )
        .unwrap()
    };
    client::submit_agreement(&mut fork_as_fresno, &sa)
        .await
        .unwrap();

    // Sacramento's node saw size 2 from the real broker; the fork's size 2 has another root.
    let node = fed.nodes[SACRAMENTO].node.clone();
    let err = node
        .sync_registry_with(node_client_to(&fed, SACRAMENTO, fork.addr))
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("fork"), "{err}");
    let alerts = fed.audit(SACRAMENTO, Some("registry_fork")).unwrap();
    assert_eq!(alerts.len(), 1);
    // The node keeps enforcing its own copy: the revocation stands.
    let views = node.agreements();
    assert!(
        views
            .iter()
            .all(|v| v.id != id || v.status == alpr_proto::agreement::AgreementStatus::Revoked)
    );

    // A regulator who verified the real log at size 2 finds the fork's size-2 head has a
    // different root (size 1 alone is a prefix of both histories).
    let (c, k) = fed.pki.regulator("reg-ca");
    let tls = TlsIdentity::load(&c, &k).unwrap();
    let mut reg_fork = client::broker_client(
        &Target {
            addr: fork.addr.to_string(),
            server_name: "localhost".into(),
        },
        &fed.trust,
        &tls,
        Duration::from_secs(10),
    )
    .unwrap();
    let real = regulator::fetch_verified(&mut reg, &fed.trust, Some(&saved))
        .await
        .unwrap();
    let real_head = SavedHead {
        size: real.head.size,
        root: hex::encode(real.head.root),
    };
    let err = regulator::fetch_verified(&mut reg_fork, &fed.trust, Some(&real_head))
        .await
        .err()
        .expect("fork must fail")
        .to_string();
    assert!(
        err.contains("different roots") || err.contains("consistent"),
        "{err}"
    );
    fork.stop().await.unwrap();
    fed.stop().await.unwrap();
}

#[tokio::test]
async fn a_node_requiring_cosignatures_trusts_only_witnessed_heads() {
    let tmp = tempfile::tempdir().unwrap();
    let fed = Federation::start(None, &demo_agencies()[..2], |_| open_policy())
        .await
        .unwrap();
    fed.agree(Federation::terms(VENTURA, SACRAMENTO, &["240"], 30, 86_400))
        .await
        .unwrap();
    // A second view of Ventura's node that requires a US-CA regulator cosignature.
    let mut cfg = fed.node_configs[VENTURA].clone();
    cfg.data_dir = tmp.path().join("strict");
    cfg.registry.require_cosignature = true;
    let strict = alpr_node::Node::open(&cfg).unwrap();
    let err = strict.sync_registry().await.unwrap_err().to_string();
    assert!(err.contains("cosignature"), "{err}");
    assert!(strict.agreements().is_empty());

    let (mut reg, s) = fed.broker_client_as(fed.pki.regulator("reg-ca")).unwrap();
    regulator::cosign(&mut reg, &fed.trust, &s, &tmp.path().join("head.json"))
        .await
        .unwrap();
    let report = strict.sync_registry().await.unwrap();
    assert_eq!(report.to, fed.broker.broker.entries(0, 1000).len() as u64);
    assert_eq!(strict.agreements().len(), 1);
    // A Nevada regulator's cosignature does not satisfy a California node.
    let (mut adm, a) = fed
        .broker_client_as(fed.pki.person(VENTURA, &admin_of(VENTURA)))
        .unwrap();
    regulator::act(&mut adm, &a, &strict.agreements()[0].id, "revoke", "ended")
        .await
        .unwrap();
    let (mut nv, nvs) = fed.broker_client_as(fed.pki.regulator("reg-nv")).unwrap();
    regulator::cosign(&mut nv, &fed.trust, &nvs, &tmp.path().join("nv.json"))
        .await
        .unwrap();
    assert!(strict.sync_registry().await.is_err());
    fed.stop().await.unwrap();
}

#[tokio::test]
async fn a_tampered_registry_database_is_refused_at_broker_start() {
    let tmp = tempfile::tempdir().unwrap();
    let fed = Federation::start(None, &demo_agencies()[..2], |_| open_policy())
        .await
        .unwrap();
    fed.agree(Federation::terms(VENTURA, SACRAMENTO, &["240"], 30, 86_400))
        .await
        .unwrap();
    let snap = tmp.path().join("snap.db");
    snapshot(&fed, &snap);
    // Widen the agreement's purposes in place, as an insider with database access might.
    let c = rusqlite::Connection::open(&snap).unwrap();
    let leaf: Vec<u8> = c
        .query_row(
            "SELECT leaf FROM registry WHERE idx = (SELECT MAX(idx) FROM registry)",
            [],
            |r| r.get(0),
        )
        .unwrap();
    let pos = leaf.windows(3).position(|w| w == b"240").unwrap();
    let mut bad = leaf.clone();
    bad[pos..pos + 3].copy_from_slice(b"30A");
    c.execute(
        "UPDATE registry SET leaf = ?1 WHERE idx = (SELECT MAX(idx) FROM registry)",
        [bad],
    )
    .unwrap();
    drop(c);
    let mut cfg =
        alpr_broker::BrokerConfig::load(&fed.dir.join("broker").join("broker.toml")).unwrap();
    cfg.data_dir = tmp.path().join("tampered");
    cfg.listen = "127.0.0.1:0".parse().unwrap();
    std::fs::create_dir_all(&cfg.data_dir).unwrap();
    std::fs::copy(&snap, cfg.db_path()).unwrap();
    let err = alpr_broker::start(&cfg)
        .await
        .err()
        .expect("tampered registry must be refused")
        .to_string();
    let last = fed.broker.broker.entries(0, 1000).len() - 1;
    assert!(
        err.contains(&format!("entry {last} does not verify")),
        "{err}"
    );
    fed.stop().await.unwrap();
}
