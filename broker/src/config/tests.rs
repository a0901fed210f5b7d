use std::path::Path;

use super::*;

const MINIMAL: &str = r#"
listen = "127.0.0.1:7443"
data_dir = "data"

[tls]
root = "pki/root.crt"
cert = "pki/broker.crt"
key = "pki/broker.key"
"#;

/// [`MINIMAL`] with `extra` among its top-level keys.
fn with(extra: &str) -> String {
    let (listen, rest) = MINIMAL.split_at(MINIMAL.find("data_dir").unwrap());
    format!("{listen}{extra}\n{rest}")
}

/// Write `text` as `broker.toml` in a fresh directory and load it.
fn load(text: &str) -> (tempfile::TempDir, Result<BrokerConfig, Error>) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("broker.toml");
    std::fs::write(&path, text).unwrap();
    let cfg = BrokerConfig::load(&path);
    (dir, cfg)
}

/// The one-line reason of a config error, checking it names the file.
fn reason(dir: &Path, r: Result<BrokerConfig, Error>) -> String {
    match r {
        Err(Error::Config { path, reason }) => {
            assert_eq!(path, dir.join("broker.toml"));
            assert!(!reason.contains('\n'), "not one line: {reason}");
            reason
        }
        other => panic!("expected a config error, got {other:?}"),
    }
}

#[test]
fn a_minimal_config_gets_the_defaults_and_paths_beside_the_file() {
    let (dir, cfg) = load(MINIMAL);
    let cfg = cfg.unwrap();
    assert_eq!(cfg.listen, "127.0.0.1:7443".parse().unwrap());
    assert_eq!(cfg.data_dir, dir.path().join("data"));
    assert_eq!(cfg.db_path(), dir.path().join("data").join("broker.db"));
    assert_eq!(cfg.tls.root, dir.path().join("pki/root.crt"));
    assert_eq!(cfg.tls.cert, dir.path().join("pki/broker.crt"));
    assert_eq!(cfg.tls.key, dir.path().join("pki/broker.key"));
    assert_eq!(cfg.deadline_ms, 3000);
    assert_eq!(cfg.max_agreement_days, 365);
    assert!(cfg.nodes.is_empty());
    assert!(cfg.regulator_page.is_none());
    assert!(cfg.metrics_listen.is_none());
    assert!(cfg.telemetry.otlp_endpoint.is_none());
}

#[test]
fn absolute_paths_and_node_routes_are_kept() {
    let text = MINIMAL.replace("data_dir = \"data\"", "data_dir = \"/var/lib/alpr-broker\"")
        + r#"
[[nodes]]
ori = "CA0560100"
addr = "ventura.example:7444"

[[nodes]]
ori = "CA0340000"
addr = "10.0.0.2:7444"
server_name = "sacramento.example"
"#;
    let (_dir, cfg) = load(&text);
    let cfg = cfg.unwrap();
    assert_eq!(cfg.data_dir, Path::new("/var/lib/alpr-broker"));
    let routes: Vec<(&str, &str, &str)> = cfg
        .nodes
        .iter()
        .map(|n| (n.ori.as_str(), n.addr.as_str(), n.server_name.as_str()))
        .collect();
    assert_eq!(
        routes,
        vec![
            ("CA0560100", "ventura.example:7444", "localhost"),
            ("CA0340000", "10.0.0.2:7444", "sacramento.example"),
        ]
    );
}

#[test]
fn broken_toml_is_one_line_naming_the_line_and_column() {
    let (dir, r) = load(&format!("{MINIMAL}[nodes\n"));
    let m = reason(dir.path(), r);
    let line = MINIMAL.lines().count() + 1;
    assert!(m.starts_with(&format!("line {line}, column ")), "{m}");
    assert!(m.ends_with("(in `[nodes`)"), "{m}");
}

#[test]
fn a_value_of_the_wrong_type_names_its_line_column_and_key() {
    let (dir, r) = load(&with("deadline_ms = \"ten\""));
    let m = reason(dir.path(), r);
    assert!(m.starts_with("line 3, column 15: "), "{m}");
    assert!(m.contains("invalid type: string \"ten\""), "{m}");
    assert!(m.ends_with("(in `deadline_ms = \"ten\"`)"), "{m}");
}

#[test]
fn unknown_and_missing_keys_are_refused_by_name() {
    let (dir, r) = load(&with("deadline = 5"));
    let m = reason(dir.path(), r);
    assert!(m.contains("unknown field `deadline`"), "{m}");
    assert!(m.starts_with("line 3, column 1: "), "{m}");
    // In a table too.
    let (dir, r) = load(&format!("{MINIMAL}crl = \"x.crl\"\n"));
    let m = reason(dir.path(), r);
    assert!(m.contains("unknown field `crl`"), "{m}");
    let (dir, r) = load(&MINIMAL.replace("listen = \"127.0.0.1:7443\"\n", ""));
    let m = reason(dir.path(), r);
    assert!(m.contains("missing field `listen`"), "{m}");
}

#[test]
fn values_toml_cannot_check_are_validated() {
    for (extra, want) in [
        ("deadline_ms = 0", "deadline_ms must be positive"),
        (
            "max_agreement_days = 0",
            "max_agreement_days must be 1..366",
        ),
        (
            "max_agreement_days = 367",
            "max_agreement_days must be 1..366",
        ),
    ] {
        let (dir, r) = load(&with(extra));
        assert_eq!(reason(dir.path(), r), want, "{extra}");
    }
    let (_dir, ok) = load(&with("max_agreement_days = 366"));
    assert_eq!(ok.unwrap().max_agreement_days, 366);
    let twice = format!(
        "{MINIMAL}{}",
        "[[nodes]]\nori = \"CA0560100\"\naddr = \"a:1\"\n".repeat(2)
    );
    let (dir, r) = load(&twice);
    assert_eq!(reason(dir.path(), r), "nodes: CA0560100 listed twice");
    let (dir, r) = load(&format!(
        "{MINIMAL}[[nodes]]\nori = \"not an ori\"\naddr = \"a:1\"\n"
    ));
    assert!(reason(dir.path(), r).starts_with("nodes: "));
}

#[test]
fn a_missing_file_is_an_io_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("absent.toml");
    match BrokerConfig::load(&path) {
        Err(Error::Io { path: p, source }) => {
            assert_eq!(p, path);
            assert_eq!(source.kind(), std::io::ErrorKind::NotFound);
        }
        other => panic!("expected an io error, got {other:?}"),
    }
}
