//! Leaving the federation (issue 18, seed 004): `alpr-node decommission` revokes the
//! agency's agreements, exports everything it owns with a signed manifest, destroys the
//! data key and anchors a final, logged certificate of destruction; the old database files
//! then reveal nothing even with the old config, and the export verifies elsewhere.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::ExitCode;

use alpr_federation::{
    Federation, admin_of, demo_agencies, investigator_of, open_policy, params, synthetic_csv,
};
use alpr_proto::pb::RefusalReason;

const VENTURA: &str = "CA0560100";
const SACRAMENTO: &str = "CA0340000";

fn cli(args: Vec<String>) -> ExitCode {
    use clap::Parser as _;
    let mut argv = vec!["alpr-node".to_string()];
    argv.extend(args);
    alpr_node::cli::main(alpr_node::cli::Cli::try_parse_from(argv).unwrap())
}

fn s(p: &std::path::Path) -> String {
    p.display().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agency_leaves_with_its_data_and_leaves_nothing_readable_behind() {
    let mut fed = Federation::start_tuned(
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
    let agreement = fed
        .agree(Federation::terms(VENTURA, SACRAMENTO, &["240"], 30, 86_400))
        .await
        .unwrap();
    fed.sync(&[VENTURA, SACRAMENTO]).await.unwrap();
    let (_, resp) = fed
        .search(SACRAMENTO, &params("8ABC123", &[VENTURA], "240", 3))
        .await
        .unwrap();
    assert!(resp.results[0].reply.is_some(), "answered before");
    let reads = alpr_node::store::count_reads(&fed.nodes[VENTURA].node.db()).unwrap();

    // The daemon stops; the admin runs the command.
    let cfg = fed.node_configs[VENTURA].clone();
    fed.nodes.remove(VENTURA).unwrap().stop().await.unwrap();
    let config = cfg.data_dir.join("node.toml");
    let out = fed.dir.join("ventura-leaves");
    let (cert, key) = fed.pki.person(VENTURA, &admin_of(VENTURA));
    let (icert, ikey) = fed.pki.person(VENTURA, &investigator_of(VENTURA));
    let args = move |cert: &std::path::Path, key: &std::path::Path, yes: bool| {
        let mut a = vec![
            "decommission".to_string(),
            "--config".into(),
            s(&config),
            "--out".into(),
            s(&out),
            "--cert".into(),
            s(cert),
            "--key".into(),
            s(key),
        ];
        if yes {
            a.push("--yes".into());
        }
        a
    };
    let run = |a: Vec<String>| tokio::task::spawn_blocking(move || cli(a));
    // Without --yes, or by someone not the agency's admin: nothing happens.
    assert_ne!(
        run(args(&cert, &key, false)).await.unwrap(),
        ExitCode::SUCCESS
    );
    assert_ne!(
        run(args(&icert, &ikey, true)).await.unwrap(),
        ExitCode::SUCCESS
    );
    let out = fed.dir.join("ventura-leaves");
    assert!(!out.exists() && cfg.keyring_path().exists());
    assert_eq!(
        run(args(&cert, &key, true)).await.unwrap(),
        ExitCode::SUCCESS
    );

    // The old files reveal nothing, even with the old config.
    assert!(!cfg.keyring_path().exists());
    let e = match alpr_node::Node::open(&cfg) {
        Ok(_) => panic!("the node opened after its data key was destroyed"),
        Err(e) => e.to_string(),
    };
    assert!(e.contains("keyring") && e.contains("is missing"), "{e}");
    assert!(cfg.open_db().is_err() && cfg.open_audit().is_err());
    for f in ["node.db", "audit.db"] {
        let bytes = std::fs::read(cfg.data_dir.join(f)).unwrap();
        assert!(!bytes.windows(7).any(|w| w == b"8ABC123"), "{f}");
        assert!(!bytes.windows(5).any(|w| w == b"-CAM-"), "{f}");
    }

    // The agreement is revoked in the registry: the partner's search is refused there.
    fed.sync(&[SACRAMENTO]).await.unwrap();
    let statuses: Vec<_> = alpr_node::store::agreements(&fed.nodes[SACRAMENTO].node.db())
        .unwrap()
        .into_iter()
        .map(|a| (a.id, a.status))
        .collect();
    assert_eq!(
        statuses,
        vec![(
            agreement.clone(),
            alpr_proto::agreement::AgreementStatus::Revoked
        )]
    );
    let (_, r) = fed
        .search(SACRAMENTO, &params("8ABC123", &[VENTURA], "240", 3))
        .await
        .unwrap();
    assert_eq!(
        (r.results[0].reason, r.results[0].decided_by.as_str()),
        (RefusalReason::AgreementRevoked as i32, "broker"),
        "{:?}",
        r.results[0]
    );

    // The export verifies on another machine, with only the federation's root and CRLs.
    let elsewhere = tempfile::tempdir().unwrap();
    let copy = elsewhere.path().join("export");
    std::fs::create_dir(&copy).unwrap();
    for e in std::fs::read_dir(&out).unwrap() {
        let p = e.unwrap().path();
        std::fs::copy(&p, copy.join(p.file_name().unwrap())).unwrap();
    }
    let root = elsewhere.path().join("root.crt");
    std::fs::copy(fed.pki.root_cert(), &root).unwrap();
    let trust = alpr_pki::TrustStore::load(&root, &fed.pki.all_crls()).unwrap();
    let (manifest, lines) = alpr_node::decommission::verify_export(&copy, &trust).unwrap();
    assert_eq!(manifest.ori, VENTURA);
    assert_eq!(manifest.revoked_agreements, vec![agreement]);
    assert!(manifest.data_key_destroyed.is_some());
    assert_eq!(manifest.anchored_size, manifest.audit_entries);
    assert!(lines.iter().any(|l| l.contains("anchored")), "{lines:?}");
    let exported = std::fs::read_to_string(copy.join("reads.csv")).unwrap();
    assert_eq!(exported.lines().count() as i64 - 1, reads);
    assert!(exported.contains("8ABC123"));
    // The last entry of the exported log is the certificate of destruction.
    let log = std::fs::read_to_string(copy.join("audit.log")).unwrap();
    let last: alpr_proto::auditlog::LoggedEntry =
        serde_json::from_str(log.lines().last().unwrap()).unwrap();
    assert!(
        last.entry.contains("certificate of destruction"),
        "{}",
        last.entry
    );
    assert!(
        last.entry
            .contains(manifest.data_key_destroyed.as_deref().unwrap())
    );
    // The regulator's copy of the anchor is the same final head.
    let anchored = fed
        .broker
        .broker
        .audit_anchor(VENTURA)
        .unwrap()
        .expect("anchored");
    assert_eq!(
        alpr_proto::auditlog::verify_anchor(&fed.trust, &anchored, VENTURA)
            .unwrap()
            .head
            .size,
        manifest.anchored_size
    );

    // An altered export does not verify, and says what is wrong.
    std::fs::write(
        copy.join("reads.csv"),
        exported.replace("8ABC123", "8ABC124"),
    )
    .unwrap();
    let e = alpr_node::decommission::verify_export(&copy, &trust)
        .unwrap_err()
        .to_string();
    assert!(e.contains("reads.csv does not match"), "{e}");
    fed.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plain_node_leaves_with_its_files_overwritten_and_removed() {
    let mut fed =
        Federation::start_tuned(None, &demo_agencies()[..1], |_| open_policy(), &[], &|c| {
            c.storage = Default::default()
        })
        .await
        .unwrap();
    fed.ingest_csv(VENTURA, &synthetic_csv(VENTURA, &["8ABC123"], 2))
        .unwrap();
    let cfg = fed.node_configs[VENTURA].clone();
    fed.nodes.remove(VENTURA).unwrap().stop().await.unwrap();
    let (admin, _) = fed.person(VENTURA, &admin_of(VENTURA)).unwrap();
    let out = fed.dir.join("export");
    let d = {
        let node = alpr_node::Node::open(&cfg).unwrap();
        node.decommission(&out, &admin).await.unwrap()
    };
    assert_eq!(d.manifest.data_key_destroyed, None);
    assert!(d.manifest.revoked_agreements.is_empty());
    for f in ["node.db", "node.db-wal", "audit.db", "audit.db-wal"] {
        assert!(!cfg.data_dir.join(f).exists(), "{f} removed");
    }
    let (m, _) = alpr_node::decommission::verify_export(&out, &fed.trust).unwrap();
    assert!(
        m.files
            .iter()
            .any(|f| f.name == "reads.csv" && f.records > 200)
    );
    // An export whose manifest is signed by someone else than a node of the agency is refused.
    let json = std::fs::read(out.join("MANIFEST.json")).unwrap();
    let forged =
        alpr_proto::envelope::seal_bytes(&admin, alpr_node::decommission::MANIFEST_TYPE, json)
            .unwrap();
    std::fs::write(
        out.join("MANIFEST.signed"),
        prost::Message::encode_to_vec(&forged),
    )
    .unwrap();
    let e = alpr_node::decommission::verify_export(&out, &fed.trust)
        .unwrap_err()
        .to_string();
    assert!(e.contains("not by a node of that agency"), "{e}");
    fed.stop().await.unwrap();
}
