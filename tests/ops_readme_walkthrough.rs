//! The README's walkthrough, run exactly as written: the `sh walkthrough` block of
//! README.md, with the binaries this build made, in a fresh directory, on free loopback
//! ports. It must reach an answered query, two verified audit logs and the regulator's
//! report.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Read;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The fenced block tagged `sh walkthrough`.
fn walkthrough() -> String {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let start = readme
        .find("```sh walkthrough\n")
        .expect("README.md has a ```sh walkthrough block");
    let body = &readme[start + "```sh walkthrough\n".len()..];
    body[..body.find("\n```").unwrap()].to_owned()
}

/// Where cargo put this build's binaries (target/<profile>/, beside deps/).
fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().unwrap().parent().unwrap().to_path_buf();
    for b in ["alpr-pki", "alpr-node", "alpr-broker"] {
        assert!(
            dir.join(b).exists(),
            "{} missing: build the workspace (cargo test --workspace builds it)",
            dir.join(b).display()
        );
    }
    dir
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn the_readme_walkthrough_works_as_written() {
    let script = walkthrough();
    let dir = tempfile::tempdir().unwrap();
    let path = format!(
        "{}:{}",
        bin_dir().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut child = Command::new("bash")
        .args(["-euo", "pipefail", "-c", &script])
        .current_dir(dir.path())
        .env("PATH", path)
        .env("BROKER_PORT", free_port().to_string())
        .env("VENTURA_PORT", free_port().to_string())
        .env("SACRAMENTO_PORT", free_port().to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if started.elapsed() > Duration::from_secs(180) {
            let _ = child.kill();
            panic!("the walkthrough did not finish in 180 s");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let (mut out, mut err) = (String::new(), String::new());
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert!(
        status.success(),
        "walkthrough failed ({status}):\n{out}\n{err}"
    );
    for want in [
        "OK, the broker would start",
        "OK, the node would start",
        "cosigned tree head",
        "cosigned the broker's routing log at",
        "CA0560100: cosigned the audit anchor at",
        "3 reads stored",
        "node.db: encrypted, data key",
        "opened by the KEK file",
        "ANSWERED, 2 read(s), verified, signed by CA0560100 (node)",
        "audit log intact",
        "match the broker's newest anchor",
        "proof verified: entr",
        "about query",
        "CA0560100's audit log verified",
        "cosigned by this state's regulator",
        "Agreement registry:",
    ] {
        assert!(
            out.contains(want),
            "{want:?} not in the walkthrough's output:\n{out}\n{err}"
        );
    }
    assert!(
        !out.contains("(NV)"),
        "the Nevada car is not the California plate"
    );
}
