//! The `alpr-pki` binary as an operator runs it: a repeated command never destroys a key.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

#[test]
fn running_root_twice_refuses_and_keeps_the_trust_anchor() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_alpr-pki"))
            .args(["--dir", d])
            .args(args)
            .output()
            .unwrap()
    };
    assert!(run(&["root", "--name", "R"]).status.success());
    let key = std::fs::read(dir.path().join("root.key")).unwrap();
    let again = run(&["root", "--name", "R"]);
    assert_eq!(again.status.code(), Some(1));
    let err = String::from_utf8_lossy(&again.stderr);
    assert!(
        err.contains("already exists") && err.contains("--force"),
        "{err}"
    );
    assert_eq!(std::fs::read(dir.path().join("root.key")).unwrap(), key);
}
