//! Host commands as an operator runs them: they never create a missing database (a
//! mistyped `data_dir` is an error, not an empty log that "verifies"), and one data
//! directory is served by one daemon.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::Command;

use alpr_node::config::{NodeConfig, PolicyConfig, TlsConfig};
use alpr_pki::issue::Overwrite;
use alpr_pki::{AgencyClaims, AgencyKind, PkiLayout};

const ORI: &str = "CA0560100";

fn config(dir: &Path) -> NodeConfig {
    let l = PkiLayout::new(dir.join("pki"));
    l.create_root("Host Test Root", 30, Overwrite::Refuse)
        .unwrap();
    let claims = AgencyClaims::new(
        ORI,
        "Ventura PD",
        "US-CA".parse().unwrap(),
        AgencyKind::Local,
    )
    .unwrap();
    l.create_agency(&claims, 30, Overwrite::Refuse).unwrap();
    l.issue_node(ORI, vec!["localhost".into()], 30, Overwrite::Refuse)
        .unwrap();
    let (cert, key) = l.node(ORI);
    NodeConfig {
        ori: ORI.into(),
        listen: "127.0.0.1:0".parse().unwrap(),
        data_dir: dir.join("node"),
        tls: TlsConfig {
            root: l.root_cert(),
            cert,
            key,
            crls: l.all_crls(),
            crl_reload_secs: 30,
        },
        broker: None,
        policy: PolicyConfig::default(),
        usage_policy: Default::default(),
        accounts: Default::default(),
        registry: Default::default(),
        telemetry: Default::default(),
        metrics_listen: None,
    }
}

#[test]
fn host_commands_never_create_a_missing_database() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.data_dir = dir.path().join("mistyped");
    let toml_path = dir.path().join("node.toml");
    std::fs::write(&toml_path, toml::to_string(&cfg).unwrap()).unwrap();
    for args in [
        vec!["audit", "verify"],
        vec!["audit", "list"],
        vec!["users"],
        vec!["purge"],
        vec!["report", "transparency"],
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_alpr-node"))
            .args(&args)
            .arg("--config")
            .arg(&toml_path)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
        assert!(
            err.contains("no node database at") && err.contains("mistyped"),
            "{args:?}: {err}"
        );
        assert!(
            !cfg.data_dir.exists(),
            "{args:?} created {}",
            cfg.data_dir.display()
        );
    }
}

#[tokio::test]
async fn one_data_directory_is_served_by_one_daemon() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path());
    let first = alpr_node::start(&cfg).await.unwrap();
    let e = alpr_node::start(&cfg)
        .await
        .err()
        .expect("a second daemon is refused");
    assert!(
        e.to_string()
            .contains("already served by another alpr-node"),
        "{e}"
    );
    first.stop().await.unwrap();
    // Released at stop: it can be served again.
    let again = alpr_node::start(&cfg).await.unwrap();
    again.stop().await.unwrap();
}
