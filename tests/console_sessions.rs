//! The web console's sessions and forms over HTTPS, without a browser (the browser flows
//! are `console_browser.rs`): an unknown purpose is refused with a clear page and an audit
//! entry; a form without the session's token does nothing and is logged; an idle session
//! locks (logged) and its cookie no longer opens any page; a disabled account's session
//! searches nothing; cookies are `__Host-`, HttpOnly, Secure and SameSite=Strict.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use alpr_federation::web::attr;
use alpr_federation::{Federation, demo_agencies, open_policy};

const VENTURA: &str = "CA0560100";
const SACRAMENTO: &str = "CA0340000";

fn short_idle(cfg: &mut alpr_node::NodeConfig) {
    if let Some(c) = cfg.console.as_mut() {
        c.idle_lock_secs = 5;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_forms_are_refused_on_the_page_and_idle_sessions_lock() {
    let fed = Federation::start_tuned(
        None,
        &demo_agencies()[..2],
        |_| open_policy(),
        &[],
        &short_idle,
    )
    .await
    .unwrap();
    fed.agree(Federation::terms(VENTURA, SACRAMENTO, &["240"], 30, 86_400))
        .await
        .unwrap();
    let (mut b, _key, _) = fed
        .console_person(SACRAMENTO, "det-lee", "investigator")
        .await
        .unwrap();

    // The cookie a browser keeps.
    let console = fed.nodes[SACRAMENTO].console_addr.unwrap();
    let mut fresh = alpr_federation::web::WebClient::connect(console, &fed.pki.root_cert())
        .await
        .unwrap();
    let r = fresh.request("GET", "/search", &[]).await.unwrap();
    assert_eq!(
        (r.status, r.location.as_deref()),
        (303, Some("/signin")),
        "no session, no page"
    );

    let form = b.request("GET", "/search", &[]).await.unwrap();
    assert_eq!(form.status, 200);
    let csrf = attr(&form.body, "search-form", "value").unwrap();
    let fields = |purpose: &'static str, csrf: String| {
        vec![
            ("csrf", csrf),
            ("purpose", purpose.to_owned()),
            ("case_number", "24-001234".to_owned()),
            (
                "reason",
                "Stolen Honda seen leaving the burglary at 12 Main St".to_owned(),
            ),
            ("plate", "8ABC123".to_owned()),
            ("from", "2026-11-01T00:00".to_owned()),
            ("to", "2026-11-02T00:00".to_owned()),
            ("target", VENTURA.to_owned()),
        ]
    };
    let as_refs = |v: &[(&'static str, String)]| -> Vec<(&'static str, String)> { v.to_vec() };

    // An unknown purpose: the form again, saying why; logged as a refusal.
    let f = as_refs(&fields("999", csrf.clone()));
    let f: Vec<(&str, &str)> = f.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let r = b.request("POST", "/search/prepare", &f).await.unwrap();
    assert_eq!(r.status, 400);
    assert!(r.body.contains("is not a purpose code"), "{}", r.body);
    let out = fed.audit(SACRAMENTO, Some("outbound_query")).unwrap();
    let last = &out.last().unwrap().entry;
    assert_eq!(
        (
            last.decision.as_str(),
            last.reason_code.as_deref(),
            last.requester_user.as_deref()
        ),
        ("refused", Some("INVALID_INPUT"), Some("det-lee"))
    );

    // A form without this session's token (another site's, an old tab's): nothing done,
    // logged.
    let f = as_refs(&fields("240", "forged".into()));
    let f: Vec<(&str, &str)> = f.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let r = b.request("POST", "/search/prepare", &f).await.unwrap();
    assert_eq!(r.status, 403);
    assert!(
        r.body
            .contains("not sent from a page of your current session"),
        "{}",
        r.body
    );
    let signins = fed.audit(SACRAMENTO, Some("console_sign_in")).unwrap();
    assert_eq!(
        signins.last().unwrap().entry.reason_code.as_deref(),
        Some("FORM_TOKEN")
    );

    // Idle past the lock: the session is gone, logged; the old cookie opens nothing.
    tokio::time::sleep(std::time::Duration::from_secs(6)).await;
    let r = b.request("GET", "/search", &[]).await.unwrap();
    assert_eq!(r.status, 401);
    assert!(r.body.contains("Your session locked"), "{}", r.body);
    let signins = fed.audit(SACRAMENTO, Some("console_sign_in")).unwrap();
    let last = &signins.last().unwrap().entry;
    assert_eq!(last.decision.as_str(), "withheld");
    assert!(last.detail.as_deref().unwrap().contains("session locked"));
    let r = b.request("GET", "/history", &[]).await.unwrap();
    assert_eq!((r.status, r.location.as_deref()), (303, Some("/signin")));
    fed.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_cookies_are_host_only_and_a_disabled_account_searches_nothing() {
    let fed = Federation::start(None, &demo_agencies()[..2], |_| open_policy())
        .await
        .unwrap();
    fed.agree(Federation::terms(VENTURA, SACRAMENTO, &["240"], 30, 86_400))
        .await
        .unwrap();
    let (mut b, _, _) = fed
        .console_person(SACRAMENTO, "det-kay", "investigator")
        .await
        .unwrap();
    // Signing in set the session cookie with every protection.
    let set = b.last_set_cookie().to_owned();
    for part in [
        "__Host-alpr_console=",
        "Path=/",
        "Secure",
        "HttpOnly",
        "SameSite=Strict",
    ] {
        assert!(set.contains(part), "{set}");
    }
    assert!(!set.contains("Domain"), "{set}");
    let form = b.request("GET", "/search", &[]).await.unwrap();
    let csrf = attr(&form.body, "search-form", "value").unwrap();
    // Disabled while signed in: the next search is refused by the node itself.
    fed.admin(
        SACRAMENTO,
        &alpr_federation::supervisor_of(SACRAMENTO),
        alpr_node::client::user_cmd("disable", "det-kay", "", 0, "left the unit"),
    )
    .await
    .unwrap();
    let r = b
        .request(
            "POST",
            "/search/prepare",
            &[
                ("csrf", &csrf),
                ("purpose", "240"),
                ("case_number", "24-001234"),
                (
                    "reason",
                    "Stolen Honda seen leaving the burglary at 12 Main St",
                ),
                ("plate", "8ABC123"),
                ("from", "2026-11-01T00:00"),
                ("to", "2026-11-02T00:00"),
                ("target", VENTURA),
            ],
        )
        .await
        .unwrap();
    assert_eq!(r.status, 400);
    assert!(r.body.contains("account det-kay is disabled"), "{}", r.body);
    let out = fed.audit(SACRAMENTO, Some("outbound_query")).unwrap();
    assert_eq!(
        out.last().unwrap().entry.reason_code.as_deref(),
        Some("ACCOUNT_INACTIVE")
    );
    fed.stop().await.unwrap();
}
