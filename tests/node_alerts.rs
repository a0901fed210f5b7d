//! The admins hear of every change of who may query their node and of a failing audit
//! log (seed 000, CJIS 5.4): each is an audit entry and goes to the configured sinks — a
//! webhook (a real HTTP receiver on loopback here) and a command — and the scheduled
//! self-audit verifies the log and warns of agreements about to expire.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use alpr_federation::{Federation, admin_of, demo_agencies, open_policy};
use alpr_node::client;
use alpr_node::settings::Switch;

const VENTURA: &str = "CA0560100";
const SACRAMENTO: &str = "CA0340000";

/// A one-route HTTP server on 127.0.0.1:0 that keeps each POSTed body; it stops by itself
/// after a minute.
fn receiver() -> (String, Arc<Mutex<Vec<serde_json::Value>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let url = format!("http://{}/alerts", listener.local_addr().unwrap());
    let got = Arc::new(Mutex::new(Vec::new()));
    let keep = got.clone();
    std::thread::spawn(move || {
        let until = Instant::now() + Duration::from_secs(60);
        while Instant::now() < until {
            let Ok((stream, _)) = listener.accept() else {
                std::thread::sleep(Duration::from_millis(10));
                continue;
            };
            stream.set_nonblocking(false).unwrap();
            let mut r = BufReader::new(stream);
            let mut len = 0usize;
            let mut line = String::new();
            loop {
                line.clear();
                r.read_line(&mut line).unwrap();
                if line == "\r\n" || line.is_empty() {
                    break;
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    len = v.trim().parse().unwrap();
                }
            }
            let mut body = vec![0; len];
            r.read_exact(&mut body).unwrap();
            keep.lock()
                .unwrap()
                .push(serde_json::from_slice(&body).unwrap());
            r.get_mut()
                .write_all(b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n")
                .unwrap();
        }
    });
    (url, got)
}

/// A federation of three agencies whose Ventura node sends its alerts to `url` (and to
/// `command`, if given).
async fn with_sinks(url: &str, command: Option<Vec<String>>) -> Federation {
    Federation::start_tuned(
        None,
        &demo_agencies()[..3],
        |_| open_policy(),
        &[],
        &|cfg| {
            // Stored plain: one test edits an entry's text as a key-holding insider would.
            cfg.storage = Default::default();
            if cfg.ori == VENTURA {
                cfg.alerts.webhook = Some(url.to_owned());
                cfg.alerts.command = command.clone();
            }
        },
    )
    .await
    .unwrap()
}

/// Wait (at most 10 s) until `got` holds an alert of `kind` whose detail contains `text`.
fn wait_for(got: &Mutex<Vec<serde_json::Value>>, event: &str, text: &str) -> serde_json::Value {
    let until = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(a) =
            got.lock().unwrap().iter().find(|a| {
                a["event"] == event && a["detail"].as_str().is_some_and(|d| d.contains(text))
            })
        {
            return a.clone();
        }
        assert!(
            Instant::now() < until,
            "no {event} alert with {text:?}: {got:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[tokio::test]
async fn scope_changes_reach_the_webhook_and_the_command_and_are_logged() {
    let (url, got) = receiver();
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("alerts.jsonl");
    let script = format!("cat >> '{}'; echo >> '{}'", file.display(), file.display());
    let fed = with_sinks(&url, Some(vec!["sh".into(), "-c".into(), script])).await;
    // The harness turned sharing on: the first change of scope.
    let on = wait_for(&got, "scope_change", "sharing turned ON");
    assert_eq!(on["ori"], VENTURA);
    assert_eq!(on["decision"], "alert");

    // An agreement that lets Sacramento query Ventura: Ventura's admins hear of it.
    let id = fed
        .agree(Federation::terms(VENTURA, SACRAMENTO, &["240"], 30, 86_400))
        .await
        .unwrap();
    let a = wait_for(&got, "scope_change", &format!("{id} registered"));
    assert!(a["at"].as_str().unwrap().ends_with('Z'), "{a}");
    // A switch flipped by an admin.
    fed.admin(
        VENTURA,
        &admin_of(VENTURA),
        client::switch(Switch::RefuseRequester, true, SACRAMENTO, "pending review"),
    )
    .await
    .unwrap();
    wait_for(&got, "scope_change", "refusing CA0340000");
    // Revocation.
    let (mut adm, s) = fed
        .broker_client_as(fed.pki.person(VENTURA, &admin_of(VENTURA)))
        .unwrap();
    alpr_broker::regulator::act(&mut adm, &s, &id, "revoke", "ended by Ventura today")
        .await
        .unwrap();
    fed.sync(&[VENTURA]).await.unwrap();
    wait_for(&got, "scope_change", &format!("{id} revoke"));

    // Each alert is an audit entry too; Sacramento (the requester) raised none of these.
    let logged = fed.audit(VENTURA, Some("scope_change")).unwrap();
    assert_eq!(logged.len(), 4, "{logged:?}");
    assert!(fed.audit(SACRAMENTO, Some("scope_change")).unwrap().len() <= 1);
    // The command sink got the same alerts, one JSON object per line.
    let until = Instant::now() + Duration::from_secs(10);
    loop {
        let text = std::fs::read_to_string(&file).unwrap_or_default();
        if text.lines().filter(|l| l.contains("scope_change")).count() >= 4 {
            break;
        }
        assert!(Instant::now() < until, "command sink got: {text}");
        std::thread::sleep(Duration::from_millis(20));
    }
    fed.stop().await.unwrap();
}

#[tokio::test]
async fn the_self_audit_verifies_the_log_warns_of_expiry_and_alerts_when_the_log_is_broken() {
    let (url, got) = receiver();
    let fed = with_sinks(&url, None).await;
    // An agreement that ends in 3 days: inside the 7-day warning window.
    let id = fed
        .agree(Federation::terms(
            VENTURA,
            SACRAMENTO,
            &["240"],
            30,
            3 * 86_400,
        ))
        .await
        .unwrap();
    let node = fed.nodes[VENTURA].node.clone();
    let r = tokio::task::spawn_blocking(move || node.self_audit())
        .await
        .unwrap()
        .unwrap();
    assert!(r.broken.is_none(), "{r:?}");
    assert!(r.entries > 0);
    assert_eq!(r.expiring.len(), 1);
    wait_for(
        &got,
        "scope_change",
        &format!("{id} ({SACRAMENTO} may query this node) expires"),
    );
    let daily = fed.audit(VENTURA, Some("daily_audit")).unwrap();
    assert_eq!(daily.len(), 1);
    assert_eq!(daily[0].entry.decision, "ok");
    assert!(
        got.lock()
            .unwrap()
            .iter()
            .all(|a| a["event"] != "daily_audit"),
        "a passing self-audit is no alert"
    );

    // Someone edits an entry around the node: the next self-audit alerts.
    let path = fed.node_configs[VENTURA].audit_path();
    alpr_node::store::AuditDb::open(&path)
        .unwrap()
        .connection()
        .execute(
            "UPDATE audit SET entry = replace(entry, 'sharing', 'SHARING') WHERE seq = (SELECT MIN(seq) FROM audit WHERE entry LIKE '%sharing%')",
            [],
        )
        .unwrap();
    let node = fed.nodes[VENTURA].node.clone();
    let r = tokio::task::spawn_blocking(move || node.self_audit())
        .await
        .unwrap()
        .unwrap();
    let why = r.broken.unwrap();
    assert!(why.contains("content does not match its hash"), "{why}");
    let alert = wait_for(&got, "daily_audit", "does not verify");
    assert_eq!(alert["decision"], "error");
    fed.stop().await.unwrap();
}

#[tokio::test]
async fn a_failing_audit_log_is_alerted_at_once_though_it_cannot_be_logged() {
    let (url, got) = receiver();
    let fed = with_sinks(&url, None).await;
    fed.agree(Federation::terms(VENTURA, SACRAMENTO, &["240"], 30, 86_400))
        .await
        .unwrap();
    let log = alpr_node::store::AuditDb::open(&fed.node_configs[VENTURA].audit_path()).unwrap();
    log.connection()
        .execute_batch("ALTER TABLE audit RENAME TO audit_moved")
        .unwrap();
    let p = alpr_federation::params("8ABC123", &[VENTURA], "240", 3);
    for _ in 0..2 {
        let (_, signed) = fed.sign_query(SACRAMENTO, &p).unwrap();
        let r = fed
            .rogue_forward(VENTURA, fed.endorse(SACRAMENTO, &signed).unwrap())
            .await;
        assert!(r.is_err(), "a node that cannot log answers nothing");
    }
    let a = wait_for(&got, "alert", "the audit log cannot be written");
    assert_eq!(a["decision"], "audit_unavailable");
    let n = got
        .lock()
        .unwrap()
        .iter()
        .filter(|a| a["decision"] == "audit_unavailable")
        .count();
    assert_eq!(n, 1, "one alert per failure episode");
    log.connection()
        .execute_batch("ALTER TABLE audit_moved RENAME TO audit")
        .unwrap();
    fed.stop().await.unwrap();
}
