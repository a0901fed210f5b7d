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
        alerts: Default::default(),
        sealing: Default::default(),
        audit: Default::default(),
        storage: Default::default(),
        console: None,
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

/// Run `alpr-node` with `args`; (exit code, stdout, stderr).
fn alpr_node(args: &[&str], config: &Path) -> (Option<i32>, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_alpr-node"))
        .args(args)
        .arg("--config")
        .arg(config)
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn csv_rows(n: usize) -> String {
    let now = alpr_pki::now_unix();
    let mut s = String::from("plate,captured_at,camera_id,latitude,longitude,plate_state\n");
    for i in 0..n {
        s.push_str(&format!(
            "{}{:05},{},CAM-{},34.2,-119.2,CA\n",
            (b'A' + (i % 26) as u8) as char,
            i % 100_000,
            alpr_pki::fmt_time(now - 60 - (i as i64 % 86_400)),
            i % 7
        ));
    }
    s
}

#[test]
fn ingest_is_idempotent_audited_and_says_how_it_ended() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path());
    let toml_path = dir.path().join("node.toml");
    std::fs::write(&toml_path, toml::to_string(&cfg).unwrap()).unwrap();
    drop(alpr_node::Node::open(&cfg).unwrap()); // the node exists
    let good = dir.path().join("good.csv");
    std::fs::write(&good, csv_rows(50)).unwrap();
    let g = good.to_str().unwrap();

    let (code, out, _) = alpr_node(&["ingest", g], &toml_path);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("50 reads stored, 0 already stored"), "{out}");
    // The same file again stores nothing twice.
    let (code, out, _) = alpr_node(&["ingest", g], &toml_path);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("0 reads stored, 50 already stored"), "{out}");

    // Some rows rejected: 4; nothing accepted (empty, or all bad): 5; wrong header: 1.
    let partial = dir.path().join("partial.csv");
    std::fs::write(&partial, format!("{}BAD*,x,y,1,2,CA\n", csv_rows(60))).unwrap();
    let (code, _, err) = alpr_node(&["ingest", partial.to_str().unwrap()], &toml_path);
    assert_eq!(code, Some(4), "{err}");
    assert!(err.contains("partial.csv:62:"), "{err}");
    let empty = dir.path().join("empty.csv");
    std::fs::write(&empty, "").unwrap();
    assert_eq!(
        alpr_node(&["ingest", empty.to_str().unwrap()], &toml_path).0,
        Some(5)
    );
    let header = dir.path().join("header.csv");
    std::fs::write(&header, "plate,time,camera,lat,lon\nA1,x,y,1,2\n").unwrap();
    let (code, _, err) = alpr_node(&["ingest", header.to_str().unwrap()], &toml_path);
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("line 1: the header lacks column(s) captured_at"),
        "{err}"
    );

    // Every ingest is an audit entry with its counts and outcome.
    let conn = alpr_node::store::AuditDb::open(&cfg.audit_path()).unwrap();
    let decisions: Vec<String> =
        alpr_node::store::audit::list(&conn, Some(alpr_node::audit::Event::Ingest))
            .unwrap()
            .into_iter()
            .map(|e| e.entry.decision.to_string())
            .collect();
    assert_eq!(
        decisions,
        ["ok", "ok", "partial", "nothing_accepted", "error"]
    );
}

#[test]
fn a_stopped_ingest_is_logged_and_resumes_where_it_stopped() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path());
    let toml_path = dir.path().join("node.toml");
    std::fs::write(&toml_path, toml::to_string(&cfg).unwrap()).unwrap();
    drop(alpr_node::Node::open(&cfg).unwrap());
    let big = dir.path().join("big.csv");
    let rows = 400_000;
    std::fs::write(&big, csv_rows(rows)).unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_alpr-node"))
        .args(["ingest", big.to_str().unwrap(), "--config"])
        .arg(&toml_path)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Stop it once it has stored something.
    let db = cfg.db_path();
    let started = std::time::Instant::now();
    loop {
        std::thread::sleep(std::time::Duration::from_millis(50));
        let n: i64 = rusqlite::Connection::open(&db)
            .and_then(|c| {
                c.query_row("SELECT COALESCE(SUM(rows),0) FROM partitions", [], |r| {
                    r.get(0)
                })
            })
            .unwrap_or(0);
        if n > 0 || started.elapsed().as_secs() > 60 {
            break;
        }
    }
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(6), "{stdout}");
    assert!(
        stdout.contains("run the same command again to resume"),
        "{stdout}"
    );
    let conn = alpr_node::store::AuditDb::open(&cfg.audit_path()).unwrap();
    let last = alpr_node::store::audit::list(&conn, Some(alpr_node::audit::Event::Ingest)).unwrap();
    let e = &last.last().unwrap().entry;
    assert_eq!(e.decision, "interrupted");
    let first_part = e.count.unwrap();
    assert!(first_part > 0 && first_part < rows as u64, "{first_part}");
    // Running it again stores the rest and nothing twice.
    let (code, out, _) = alpr_node(&["ingest", big.to_str().unwrap()], &toml_path);
    assert_eq!(code, Some(0), "{out}");
    let node = alpr_node::Node::open(&cfg).unwrap();
    let total = alpr_node::store::count_reads(&node.db()).unwrap() as u64;
    let distinct = {
        let mut set = std::collections::HashSet::new();
        for line in csv_rows(rows).lines().skip(1) {
            set.insert(line.to_owned());
        }
        set.len() as u64
    };
    assert_eq!(total, distinct, "{out}");
}

#[test]
fn a_misspelled_event_is_an_error_and_exports_log_a_readable_filter() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path());
    let toml_path = dir.path().join("node.toml");
    std::fs::write(&toml_path, toml::to_string(&cfg).unwrap()).unwrap();
    drop(alpr_node::Node::open(&cfg).unwrap());
    let (code, _, err) = alpr_node(&["audit", "list", "--event", "inbound_querry"], &toml_path);
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("is not an audit event") && err.contains("inbound_query"),
        "{err}"
    );
    let out = dir.path().join("x.jsonl");
    let (code, _, err) = alpr_node(
        &[
            "audit",
            "export",
            "--format",
            "jsonl",
            "--out",
            out.to_str().unwrap(),
            "--by",
            "aud-1",
            "--event",
            "ingest",
        ],
        &toml_path,
    );
    assert_eq!(code, Some(0), "{err}");
    let conn = alpr_node::store::AuditDb::open(&cfg.audit_path()).unwrap();
    let export =
        alpr_node::store::audit::list(&conn, Some(alpr_node::audit::Event::Export)).unwrap();
    let detail = export.last().unwrap().entry.detail.clone().unwrap();
    assert!(detail.contains("with filter event=ingest"), "{detail}");
    assert!(!detail.contains("Filter {"), "no Rust Debug dump: {detail}");
    // One time format in every human output and export: RFC 3339.
    let (code, listed, _) = alpr_node(&["audit", "list"], &toml_path);
    assert_eq!(code, Some(0));
    assert!(listed.contains("\"at\":\"20"), "{listed}");
    let exported = std::fs::read_to_string(&out).unwrap();
    assert!(!exported.contains("\"at\":17"), "{exported}");
}

#[test]
fn config_errors_name_the_line_and_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path());
    let text = toml::to_string(&cfg)
        .unwrap()
        .replace("retention_days = 365", "retention_days = \"a year\"");
    let toml_path = dir.path().join("node.toml");
    std::fs::write(&toml_path, &text).unwrap();
    let (code, _, err) = alpr_node(&["audit", "verify"], &toml_path);
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("node.toml: line ") && err.contains("retention_days = \"a year\""),
        "{err}"
    );
}

#[test]
fn agreement_terms_are_shown_and_signing_asks_first() {
    use alpr_node::client;
    use alpr_pki::Role;
    use prost::Message;
    let dir = tempfile::tempdir().unwrap();
    let _ = config(dir.path());
    let l = PkiLayout::new(dir.path().join("pki"));
    l.issue_person(ORI, Role::Admin, "adm", 30, Overwrite::Refuse)
        .unwrap();
    let now = alpr_pki::now_unix();
    let sa = client::draft_agreement(&alpr_proto::pb::Agreement {
        provider_ori: ORI.into(),
        requester_ori: "CA0340000".into(),
        purposes: vec!["240".into(), "X-MISSING".into()],
        data_types: vec!["reads".into()],
        max_lookback_days: 30,
        valid_from: now,
        valid_until: now + 86_400 * 90,
        justification: "Neighbouring county; shared auto-theft task force".into(),
        drafted_at: now,
        query_shapes: vec![],
    })
    .unwrap();
    let file = dir.path().join("draft.agr");
    std::fs::write(&file, sa.encode_to_vec()).unwrap();
    let f = file.to_str().unwrap();
    let bin = env!("CARGO_BIN_EXE_alpr-node");
    let show = Command::new(bin)
        .args(["agreement", "show", f])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&show.stdout);
    assert!(show.status.success(), "{text}");
    for want in [
        "CA0560100 shares its data with CA0340000",
        "240  Motor Vehicle Theft",
        "X-MISSING",
        "look-back: at most 30 days",
        "provider admin: not signed",
    ] {
        assert!(text.contains(want), "{want:?} not in:\n{text}");
    }
    let (cert, key) = l.person(ORI, "adm");
    let sign = |answer: &str, extra: &[&str]| {
        use std::io::Write;
        let mut child = Command::new(bin)
            .args(["agreement", "sign", f, "--root"])
            .arg(l.root_cert())
            .arg("--cert")
            .arg(&cert)
            .arg("--key")
            .arg(&key)
            .args(extra)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(answer.as_bytes())
            .unwrap();
        child.wait_with_output().unwrap()
    };
    let before = std::fs::read(&file).unwrap();
    let no = sign("n\n", &[]);
    assert_eq!(no.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&no.stderr).contains("not signed"));
    assert_eq!(std::fs::read(&file).unwrap(), before, "unchanged");
    let silent = sign("", &[]);
    assert_eq!(silent.status.code(), Some(1), "silence never signs");
    let yes = sign("y\n", &[]);
    assert!(
        yes.status.success(),
        "{}",
        String::from_utf8_lossy(&yes.stderr)
    );
    assert!(String::from_utf8_lossy(&yes.stdout).contains("240  Motor Vehicle Theft"));
    assert_ne!(std::fs::read(&file).unwrap(), before);
    let show = Command::new(bin)
        .args(["agreement", "show", f])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&show.stdout).contains("provider admin: signed"));
}

#[test]
fn purpose_codes_are_listed_with_names_and_state_refusals() {
    let out = Command::new(env!("CARGO_BIN_EXE_alpr-node"))
        .args(["purposes", "--state", "US-CA"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.lines()
            .any(|l| l.starts_with("240 ") && l.contains("Motor Vehicle Theft"))
    );
    assert!(
        text.lines()
            .any(|l| l.starts_with("30A ") && l.contains("REFUSED in US-CA/")),
        "{text}"
    );
    let bad = Command::new(env!("CARGO_BIN_EXE_alpr-node"))
        .args(["purposes", "--state", "California"])
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(1));
}
