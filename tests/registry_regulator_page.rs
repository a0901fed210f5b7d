//! The regulator web page, tested in headless Chromium: a signed sign-in link opens the
//! registry and the compliance report; no link, a forged link, an expired link or a
//! non-regulator's link is refused. A screenshot is kept in the test output directory.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

use alpr_broker::page;
use alpr_federation::{Federation, admin_of, demo_agencies, open_policy, params};

const VENTURA: &str = "CA0560100";
const SACRAMENTO: &str = "CA0340000";

fn chromium() -> Option<&'static str> {
    ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
}

fn headless(bin: &str, args: &[&str], url: &str) -> String {
    let profile = tempfile::tempdir().unwrap();
    let out = Command::new(bin)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(args)
        .arg(url)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Plain HTTP GET returning (status line, body), for the refusal cases.
fn get(addr: std::net::SocketAddr, path: &str) -> (String, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut buf = String::new();
    s.read_to_string(&mut buf).unwrap();
    let status = buf.lines().next().unwrap_or_default().to_owned();
    (status, buf)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_registry_page_in_a_real_browser() {
    let fed = Federation::start(None, &demo_agencies()[..2], |_| open_policy())
        .await
        .unwrap();
    let id = fed
        .agree(Federation::terms(
            VENTURA,
            SACRAMENTO,
            &["240", "120"],
            30,
            86_400,
        ))
        .await
        .unwrap();
    let _ = fed
        .search(SACRAMENTO, &params("8ABC123", &[VENTURA], "30A", 3))
        .await
        .unwrap();
    let (mut reg, reg_signer) = fed.broker_client_as(fed.pki.regulator("reg-ca")).unwrap();
    let state = tempfile::tempdir().unwrap();
    alpr_broker::regulator::cosign(
        &mut reg,
        &fed.trust,
        &reg_signer,
        &state.path().join("h.json"),
    )
    .await
    .unwrap();
    let addr = fed.broker.page_addr.unwrap();
    let now = alpr_pki::now_unix();
    let token = page::sign_in_token(&reg_signer, 600, now).unwrap();

    // Refusals, checked over plain HTTP.
    assert!(get(addr, "/").0.contains("401"));
    let mut forged = hex::decode(&token).unwrap();
    let n = forged.len();
    forged[n / 3] ^= 1;
    assert!(
        get(addr, &format!("/?token={}", hex::encode(forged)))
            .0
            .contains("401")
    );
    let expired = page::sign_in_token(&reg_signer, 60, now - 3600).unwrap();
    assert!(get(addr, &format!("/?token={expired}")).0.contains("401"));
    let (_, admin_signer) = fed
        .broker_client_as(fed.pki.person(VENTURA, &admin_of(VENTURA)))
        .unwrap();
    let not_regulator = page::sign_in_token(&admin_signer, 600, now).unwrap();
    assert!(
        get(addr, &format!("/?token={not_regulator}"))
            .0
            .contains("403")
    );

    let url = format!("http://{addr}/?token={token}");
    let Some(bin) = chromium() else {
        assert!(
            std::env::var("CI").is_err(),
            "CI must install Debian's chromium (see .ci/run)"
        );
        eprintln!("chromium not installed: skipping the browser part (the HTTP checks above ran)");
        fed.stop().await.unwrap();
        return;
    };
    let dom = tokio::task::spawn_blocking({
        let url = url.clone();
        move || headless(bin, &["--dump-dom"], &url)
    })
    .await
    .unwrap();
    assert!(dom.contains("ALPR agreement registry"), "{dom}");
    assert!(dom.contains(&id), "agreement listed");
    assert!(
        dom.contains("Signed in as <b>reg-ca (regulator)</b>"),
        "{dom}"
    );
    assert!(dom.contains("1 regulator cosignature(s)"), "{dom}");
    assert!(
        dom.contains("PURPOSE_PROHIBITED"),
        "refusals by reason in the report"
    );
    let shot = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("regulator_page.png");
    let _ = std::fs::remove_file(&shot);
    tokio::task::spawn_blocking({
        let shot = shot.clone();
        move || {
            headless(
                bin,
                &[
                    &format!("--screenshot={}", shot.display()),
                    "--window-size=1280,900",
                ],
                &url,
            )
        }
    })
    .await
    .unwrap();
    assert!(
        std::fs::metadata(&shot)
            .map(|m| m.len() > 10_000)
            .unwrap_or(false),
        "screenshot written"
    );
    println!("screenshot: {}", shot.display());
    fed.stop().await.unwrap();
}
