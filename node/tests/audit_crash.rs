//! Crash safety of the audit log, tested the way transparency logs test theirs: run the
//! real `alpr-node` daemon, stream queries at it from several clients, kill -9 it at
//! different points, restart it, and check that the chain verifies and that every query
//! that received a reply has its audit entry.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashSet;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use alpr_node::client::{self, SearchParams};
use alpr_node::config::{NodeConfig, PolicyConfig, TlsConfig, UsagePolicy};
use alpr_pki::issue::Overwrite;
use alpr_pki::{AgencyClaims, AgencyKind, PkiLayout, Role, Signer, TrustStore};
use alpr_proto::pb::Agreement;
use alpr_proto::pb::node_inbound_client::NodeInboundClient;
use alpr_runtime::client::Target;
use alpr_runtime::tls::TlsIdentity;
use prost::Message;

const PROVIDER: &str = "CA0560100";
const REQUESTER: &str = "CA0340000";

fn setup(dir: &Path) -> (NodeConfig, TrustStore, PkiLayout) {
    let p = dir.join("pki");
    let l = PkiLayout::new(&p);
    let ow = Overwrite::Refuse;
    let hosts = || vec!["localhost".to_string(), "127.0.0.1".to_string()];
    l.create_root("Crash Test Root", 3650, ow).unwrap();
    l.issue_broker(hosts(), 365, ow).unwrap();
    for (ori, name) in [(PROVIDER, "Ventura PD"), (REQUESTER, "Sacramento SO")] {
        let claims =
            AgencyClaims::new(ori, name, "US-CA".parse().unwrap(), AgencyKind::Local).unwrap();
        l.create_agency(&claims, 1825, ow).unwrap();
        l.issue_node(ori, hosts(), 365, ow).unwrap();
        l.issue_person(ori, Role::Admin, "adm", 365, ow).unwrap();
    }
    l.issue_person(REQUESTER, Role::Investigator, "inv", 365, ow)
        .unwrap();
    let (cert, key) = l.node(PROVIDER);
    let cfg = NodeConfig {
        ori: PROVIDER.into(),
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
        policy: PolicyConfig {
            max_queries_per_minute: 1_000_000,
            ..PolicyConfig::default()
        },
        usage_policy: UsagePolicy {
            authorized_purposes: "Stolen vehicles and listed offenses".into(),
            authorized_users: "Sworn investigators after training".into(),
            monitoring: "Audit log reviewed monthly".into(),
            sharing: "California public agencies under agreements".into(),
            custodian: "Chief of Police".into(),
            accuracy: "Visual confirmation of every hit".into(),
            retention: "365 days then purged by day".into(),
        },
        accounts: Default::default(),
        registry: Default::default(),
        telemetry: Default::default(),
        metrics_listen: None,
        alerts: Default::default(),
        sealing: Default::default(),
        audit: Default::default(),
        // Encrypted at rest: what survives a kill -9 is sealed entries.
        storage: alpr_node::config::StorageConfig {
            kek_file: Some(dir.join("node.kek")),
            ..Default::default()
        },
        console: None,
    };
    alpr_node::keyring::write_new_kek(&dir.join("node.kek")).unwrap();
    std::fs::create_dir_all(&cfg.data_dir).unwrap();
    std::fs::write(dir.join("node.toml"), toml::to_string(&cfg).unwrap()).unwrap();
    let trust = TrustStore::load(&l.root_cert(), &l.all_crls()).unwrap();

    // Agreement and sharing, through the library, before the daemon starts.
    let node = alpr_node::Node::open(&cfg).unwrap();
    let now = alpr_pki::now_unix();
    let terms = Agreement {
        provider_ori: PROVIDER.into(),
        requester_ori: REQUESTER.into(),
        purposes: vec!["240".into()],
        data_types: vec!["reads".into()],
        max_lookback_days: 30,
        valid_from: now - 60,
        valid_until: now + 86_400,
        justification: "Regional auto-theft task force agreement".into(),
        drafted_at: now,
        query_shapes: vec![],
    };
    let mut sa = client::draft_agreement(&terms).unwrap();
    for ori in [PROVIDER, REQUESTER] {
        let (c, k) = l.person(ori, "adm");
        client::sign_agreement(&mut sa, &Signer::load(&c, &k).unwrap(), &trust).unwrap();
    }
    node.import_agreement(&sa).unwrap();
    let (c, k) = l.person(PROVIDER, "adm");
    let admin = trust
        .verify(&alpr_pki::read_cert_chain(&c).unwrap(), now)
        .unwrap();
    let _ = k;
    node.admin(
        &admin,
        client::switch(alpr_node::settings::Switch::Sharing, true, "", ""),
    )
    .unwrap();
    drop(node);
    (cfg, trust, l)
}

/// Start the daemon; return it and the address it printed.
fn spawn(dir: &Path) -> (Child, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_alpr-node"))
        .args(["serve", "--config", dir.join("node.toml").to_str().unwrap()])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line.trim().rsplit(' ').next().unwrap().to_string();
    assert!(line.contains("serving on"), "{line}");
    (child, addr)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_dash_nine_loses_no_acknowledged_entry() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let (cfg, trust, l) = setup(dir);
    let inv = {
        let (c, k) = l.person(REQUESTER, "inv");
        Signer::load(&c, &k).unwrap()
    };
    let req_node = {
        let (c, k) = l.node(REQUESTER);
        Signer::load(&c, &k).unwrap()
    };
    let broker_tls = {
        let (c, k) = l.broker();
        TlsIdentity::load(&c, &k).unwrap()
    };
    let client_cfg = alpr_runtime::tls::client_config(&trust, &broker_tls).unwrap();
    let inv = Arc::new(inv);
    let req_node = Arc::new(req_node);
    let acknowledged: Arc<Mutex<HashSet<String>>> = Arc::default();

    // Kill after different numbers of replies, so the kill lands at different points.
    for (round, kill_after) in [7usize, 23, 41].into_iter().enumerate() {
        let (mut child, addr) = spawn(dir);
        let target = Target {
            addr,
            server_name: "localhost".into(),
        };
        let replies = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for _ in 0..6 {
            let (inv, req_node, acked, replies, trust) = (
                inv.clone(),
                req_node.clone(),
                acknowledged.clone(),
                replies.clone(),
                trust.clone(),
            );
            let ch =
                alpr_runtime::client::channel(&target, client_cfg.clone(), Duration::from_secs(5))
                    .unwrap();
            tasks.push(tokio::spawn(async move {
                let mut c = NodeInboundClient::new(ch);
                for _ in 0..200 {
                    let now = alpr_pki::now_unix();
                    let p = SearchParams {
                        plate: "8ABC123".into(),
                        plate_state: "CA".into(),
                        window_start: now - 86_400,
                        window_end: now,
                        purpose: "240".into(),
                        case_number: "VPD-2026-000111".into(),
                        reason: "Stolen grey Tacoma from the harbor lot, plate seen by witness"
                            .into(),
                        targets: vec![PROVIDER.into()],
                        ttl_secs: 300,
                        ..Default::default()
                    };
                    let (q, signed) = client::sign_query(&inv, &trust, &p, now).unwrap();
                    let endorsed = alpr_proto::envelope::endorse(
                        &req_node,
                        REQUESTER,
                        signed.encode_to_vec(),
                        now,
                    )
                    .unwrap();
                    match c.answer_query(endorsed).await {
                        Ok(_) => {
                            acked.lock().unwrap().insert(hex::encode(&q.query_id));
                            replies.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        }
                        Err(_) => return, // the daemon died
                    }
                }
            }));
        }
        while replies.load(std::sync::atomic::Ordering::SeqCst) < kill_after {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        for t in tasks {
            t.await.unwrap();
        }

        // Restart: the daemon comes back on the same data, and the log is whole.
        let (mut again, _) = spawn(dir);
        let conn = cfg.open_audit().unwrap();
        let report = alpr_node::store::audit::verify(&conn, Some((&trust, PROVIDER))).unwrap();
        let logged: HashSet<String> =
            alpr_node::store::audit::list(&conn, Some(alpr_node::audit::Event::InboundQuery))
                .unwrap()
                .into_iter()
                .filter_map(|e| e.entry.query_id)
                .collect();
        let acked = acknowledged.lock().unwrap().clone();
        let missing: Vec<_> = acked.difference(&logged).collect();
        assert!(
            missing.is_empty(),
            "round {round}: {} acknowledged queries have no audit entry",
            missing.len()
        );
        assert!(report.entries as usize >= acked.len());
        again.kill().unwrap();
        again.wait().unwrap();
    }
    assert!(acknowledged.lock().unwrap().len() >= 71);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_finishes_in_flight_work_and_seals_the_log() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let (cfg, trust, l) = setup(dir);
    let inv = {
        let (c, k) = l.person(REQUESTER, "inv");
        Signer::load(&c, &k).unwrap()
    };
    let req_node = {
        let (c, k) = l.node(REQUESTER);
        Signer::load(&c, &k).unwrap()
    };
    let broker_tls = {
        let (c, k) = l.broker();
        TlsIdentity::load(&c, &k).unwrap()
    };
    let (mut child, addr) = spawn(dir);
    let ch = alpr_runtime::client::channel(
        &Target {
            addr,
            server_name: "localhost".into(),
        },
        alpr_runtime::tls::client_config(&trust, &broker_tls).unwrap(),
        Duration::from_secs(5),
    )
    .unwrap();
    let mut c = NodeInboundClient::new(ch);
    let mut replied = 0;
    for _ in 0..5 {
        let now = alpr_pki::now_unix();
        let p = SearchParams {
            plate: "8ABC123".into(),
            plate_state: "CA".into(),
            window_start: now - 86_400,
            window_end: now,
            purpose: "240".into(),
            case_number: "VPD-2026-000111".into(),
            reason: "Stolen grey Tacoma from the harbor lot, plate seen by witness".into(),
            targets: vec![PROVIDER.into()],
            ttl_secs: 300,
            ..Default::default()
        };
        let (_, signed) = client::sign_query(&inv, &trust, &p, now).unwrap();
        let endorsed =
            alpr_proto::envelope::endorse(&req_node, REQUESTER, signed.encode_to_vec(), now)
                .unwrap();
        c.answer_query(endorsed).await.unwrap();
        replied += 1;
    }
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let exit = child.wait().unwrap();
    assert!(exit.success(), "graceful exit, got {exit:?}");
    // Every reply is logged and the final head carries a signed checkpoint.
    let conn = cfg.open_audit().unwrap();
    let report = alpr_node::store::audit::verify(&conn, Some((&trust, PROVIDER))).unwrap();
    let inbound =
        alpr_node::store::audit::list(&conn, Some(alpr_node::audit::Event::InboundQuery)).unwrap();
    assert_eq!(inbound.len(), replied);
    let last_checkpoint: i64 = conn
        .connection()
        .query_row("SELECT MAX(size) FROM checkpoints", [], |r| r.get(0))
        .unwrap();
    assert_eq!(
        last_checkpoint as u64, report.entries,
        "the log is sealed at its final entry"
    );
}
