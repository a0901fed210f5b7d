//! `alpr-broker check-config` as an operator runs it: a broken config is one line naming
//! the file, the line and the key.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

/// `alpr-broker check-config` on a `broker.toml` holding `text`: its exit code and stderr.
fn check_config(text: &str) -> (Option<i32>, String) {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("broker.toml");
    std::fs::write(&cfg, text).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_alpr-broker"))
        .args(["check-config", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_broken_config_is_one_line_naming_where() {
    let (code, err) = check_config("listen = \"127.0.0.1:7000\"\ndata_dir = 7\n");
    assert_eq!(code, Some(1));
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(
        err.contains("broker.toml") && err.contains("line 2") && err.contains("data_dir = 7"),
        "{err}"
    );
    let missing = Command::new(env!("CARGO_BIN_EXE_alpr-broker"))
        .args(["check-config", "--config", "/nonexistent/broker.toml"])
        .output()
        .unwrap();
    assert_eq!(missing.status.code(), Some(1));
}

#[test]
fn a_postgres_connection_string_that_does_not_parse_is_named() {
    let (code, err) = check_config(
        "listen = \"127.0.0.1:7000\"\ndata_dir = \"data\"\npostgres = \"host=db port=nope\"\n[tls]\nroot = \"root.crt\"\ncert = \"broker.crt\"\nkey = \"broker.key\"\n",
    );
    assert_eq!(code, Some(1));
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(
        err.contains("broker.toml") && err.contains("postgres") && err.contains("does not parse"),
        "{err}"
    );
}

#[test]
fn a_postgres_ca_without_postgres_is_named() {
    let (code, err) = check_config(
        "listen = \"127.0.0.1:7000\"\ndata_dir = \"data\"\npostgres_ca = \"db-ca.pem\"\n[tls]\nroot = \"root.crt\"\ncert = \"broker.crt\"\nkey = \"broker.key\"\n",
    );
    assert_eq!(code, Some(1));
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(
        err.contains("postgres_ca is set but postgres is not"),
        "{err}"
    );
}
