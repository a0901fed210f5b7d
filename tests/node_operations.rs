//! The operator's view: `status` shows what is in force, `check-config` checks what a
//! start checks without touching the databases, and `backup` makes a verified online copy
//! that a node can be restored from.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use alpr_federation::{Federation, admin_of, demo_agencies, open_policy, params, synthetic_csv};
use alpr_node::client;

const VENTURA: &str = "CA0560100";
const SACRAMENTO: &str = "CA0340000";

#[tokio::test]
async fn status_check_config_and_a_verified_backup_that_restores() {
    let fed = Federation::start_tuned(
        None,
        &demo_agencies()[..2],
        |_| open_policy(),
        &[],
        &alpr_federation::on_encrypted_sqlite,
    )
    .await
    .unwrap();
    fed.ingest_csv(VENTURA, &synthetic_csv(VENTURA, &["8ABC123"], 5))
        .unwrap();
    let id = fed
        .agree(Federation::terms(VENTURA, SACRAMENTO, &["240"], 30, 86_400))
        .await
        .unwrap();
    fed.admin(
        VENTURA,
        &admin_of(VENTURA),
        client::switch(
            alpr_node::settings::Switch::RefuseRequester,
            true,
            "NV0020100",
            "pending review",
        ),
    )
    .await
    .unwrap();
    fed.search(SACRAMENTO, &params("8ABC123", &[VENTURA], "240", 3))
        .await
        .unwrap();
    let node = &fed.nodes[VENTURA].node;

    let s = node.status().unwrap();
    assert!(s.switches.sharing_enabled && !s.switches.refuse_all);
    assert_eq!(s.switches.refused_requesters, ["NV0020100"]);
    assert_eq!(s.schema_version, alpr_node::store::SCHEMA_VERSION);
    assert!(s.data_key.is_some(), "the harness encrypts every node");
    assert!(
        s.to_string()
            .contains("storage encrypted at rest (data key"),
        "{s}"
    );
    assert!(s.registry_head.is_some(), "synced a head");
    assert!(s.agreements.iter().any(|a| a.0 == id && a.3 == "active"));
    assert!(s.reads >= 200 && s.days.is_some());
    assert!(s.audit_head.0 > 0);
    let text = s.to_string();
    for want in [
        "sharing ON",
        "refused requesters: NV0020100",
        "registry head:",
        &id,
        "reads:",
        "audit log:",
    ] {
        assert!(text.contains(want), "{want:?} not in:\n{text}");
    }

    // check-config: the same checks as a start, nothing opened.
    let cfg = fed.node_configs[VENTURA].clone();
    let lines = alpr_node::Node::check_config(&cfg).unwrap();
    assert!(lines.iter().any(|l| l.contains("US-CA/")), "{lines:?}");
    let mut wrong = cfg.clone();
    wrong.tls.key = fed.pki.person(VENTURA, &admin_of(VENTURA)).1;
    let e = alpr_node::Node::check_config(&wrong)
        .unwrap_err()
        .to_string();
    assert!(e.contains("does not belong to the certificate"), "{e}");

    // Backup, online and verified.
    let out = fed.dir.join("backup-1");
    let b = node.backup(&out).unwrap();
    assert_eq!(b.reads, s.reads);
    assert!(b.audit_entries >= s.audit_head.0 as u64);
    let manifest = std::fs::read_to_string(&b.manifest).unwrap();
    assert!(manifest.contains("audit.db sha256") && manifest.contains("verified"));
    assert!(node.backup(&out).is_err(), "a backup never overwrites one");
    assert_eq!(
        fed.audit(VENTURA, Some("backup")).unwrap().len(),
        1,
        "the backup is logged"
    );

    // Restore into a fresh data_dir: the node opens, its log verifies, its reads are there.
    let mut restored = cfg.clone();
    restored.data_dir = fed.dir.join("restored");
    std::fs::create_dir_all(&restored.data_dir).unwrap();
    // Without the keyring the encrypted copies do not open, and the error says why.
    for f in ["node.db", "audit.db"] {
        std::fs::copy(out.join(f), restored.data_dir.join(f)).unwrap();
    }
    let e = alpr_node::Node::open(&restored).unwrap_err().to_string();
    assert!(e.contains("keyring") && e.contains("is missing"), "{e}");
    assert!(manifest.contains("keyring.json sha256"), "{manifest}");
    std::fs::copy(out.join("keyring.json"), restored.keyring_path()).unwrap();
    let again = alpr_node::Node::open(&restored).unwrap();
    assert_eq!(again.status().unwrap().reads, s.reads);
    let conn = restored.open_audit().unwrap();
    alpr_node::store::audit::verify(&conn, Some((&fed.trust, VENTURA))).unwrap();
    fed.stop().await.unwrap();
}
