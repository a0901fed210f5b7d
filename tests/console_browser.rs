//! The web console in a real browser: Debian's Chromium, driven over WebDriver
//! (ChromeDriver) by fantoccini. People enroll with a key their browser makes and keeps,
//! a supervisor approves in the console, people sign in with that key and an RFC 6238
//! code, an investigator's search is signed in the browser and answered by another node,
//! a refusal is explained, results are exported (logged), a replayed form is refused, an
//! auditor cannot search, and five bad codes lock sign-in.
//!
//! Set `ALPR_CONSOLE_SCREENSHOTS=DIR` to keep screenshots of the main pages there (the
//! ones in `docs/` were made so).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use alpr_federation::{
    Federation, admin_of, demo_agencies, open_policy, supervisor_of, synthetic_csv,
};
use alpr_node::client::user_cmd;
use browser::{browser, click, element, fill, shot, wait_page, wait_text};
use fantoccini::{Client, Locator};
use serde_json::json;

mod browser;

const VENTURA: &str = "CA0560100";
const SACRAMENTO: &str = "CA0340000";
const FRESNO: &str = "CA0100500";

fn code_of(secret_b32: &str) -> String {
    let secret = totp_rs::Secret::try_from_base32(secret_b32.trim()).unwrap();
    let totp = totp_rs::Builder::new().with_secret(secret).build().unwrap();
    totp.generate_current().to_string()
}

async fn enroll(c: &Client, base: &str, user: &str, code: &str) {
    c.goto(&format!("{base}/enroll")).await.unwrap();
    fill(c, "user", user).await;
    fill(c, "code", code).await;
    click(c, "#enroll-form button").await;
    wait_page(c, "Enrolled").await;
}

/// First sign-in after approval: the key's signature, then the secret shown once and
/// the first code. Returns the secret.
async fn first_sign_in(c: &Client, base: &str, user: &str) -> String {
    c.goto(&format!("{base}/signin")).await.unwrap();
    fill(c, "user", user).await;
    click(c, "main form button").await;
    click(c, "#signin-form button").await;
    wait_page(c, "Set up your sign-in code").await;
    shot(c, "console-code-setup").await;
    let secret = c
        .find(Locator::Id("totp-secret"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    fill(c, "code", &code_of(&secret)).await;
    click(c, "main form button").await;
    secret
}

async fn sign_out(c: &Client) {
    click(c, "form.signout button").await;
    wait_page(c, "Sign in").await;
}

fn invite_code(reply: &str) -> String {
    reply
        .lines()
        .find_map(|l| l.strip_prefix("enrollment code: "))
        .expect("the invite's reply carries the code")
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn people_enroll_sign_in_and_search_from_a_browser() {
    let fed = Federation::start(None, &demo_agencies()[..3], |_| open_policy())
        .await
        .unwrap();
    fed.ingest_csv(
        VENTURA,
        &synthetic_csv(VENTURA, &["8ABC123", "5XYZ987"], 10),
    )
    .unwrap();
    fed.agree(Federation::terms(VENTURA, SACRAMENTO, &["240"], 30, 86_400))
        .await
        .unwrap();
    let base = format!(
        "https://127.0.0.1:{}",
        fed.nodes[SACRAMENTO].console_addr.unwrap().port()
    );

    // One search from the CLI, for the supervisor's review sample.
    fed.search(
        SACRAMENTO,
        &alpr_federation::params("8ABC123", &[VENTURA], "240", 5),
    )
    .await
    .unwrap();
    let cli_search_seq = fed
        .audit(SACRAMENTO, Some("outbound_query"))
        .unwrap()
        .last()
        .unwrap()
        .seq;

    // The agency's admin adds three people and gives each a one-time enrollment code.
    let admin = admin_of(SACRAMENTO);
    let mut codes = std::collections::HashMap::new();
    for (user, role) in [
        ("sgt-roe", "supervisor"),
        ("det-lee", "investigator"),
        ("aud-kim", "auditor"),
        ("adm-park", "admin"),
    ] {
        fed.admin(SACRAMENTO, &admin, user_cmd("add", user, role, 0, ""))
            .await
            .unwrap();
        let reply = fed
            .admin(SACRAMENTO, &admin, user_cmd("invite", user, "", 0, ""))
            .await
            .unwrap();
        codes.insert(user, invite_code(&reply));
    }
    // The code is the caller's alone: the log says one was issued, never what it is.
    let changes = fed.audit(SACRAMENTO, Some("account_change")).unwrap();
    let logged = serde_json::to_string(&changes).unwrap();
    assert!(logged.contains("issued a console enrollment code for det-lee"));
    for code in codes.values() {
        assert!(!logged.contains(code.as_str()), "a code reached the log");
    }

    let profile = tempfile::tempdir().unwrap();
    let (_driver, c) = browser(profile.path()).await;

    // A wrong code enrolls nothing, and says so.
    c.goto(&format!("{base}/enroll")).await.unwrap();
    fill(&c, "user", "det-lee").await;
    fill(&c, "code", "AAAA-BBBB-CCCC").await;
    click(&c, "#enroll-form button").await;
    wait_text(
        &c,
        "Enroll this browser",
        "the code is wrong, used or expired",
    )
    .await;

    // Each person enrolls this browser's key with their code; a code works once.
    shot(&c, "console-enroll").await;
    for user in ["sgt-roe", "det-lee", "aud-kim", "adm-park"] {
        enroll(&c, &base, user, &codes[user]).await;
    }
    c.goto(&format!("{base}/enroll")).await.unwrap();
    fill(&c, "user", "det-lee").await;
    fill(&c, "code", &codes["det-lee"]).await;
    click(&c, "#enroll-form button").await;
    wait_text(&c, "Enroll this browser", "wrong, used or expired").await;

    // Not approved yet: the key alone does not sign in.
    c.goto(&format!("{base}/signin")).await.unwrap();
    fill(&c, "user", "sgt-roe").await;
    click(&c, "main form button").await;
    click(&c, "#signin-form button").await;
    wait_text(&c, "Sign-in failed", "not been approved").await;

    // The first supervisor's key is approved by a supervisor with the CLI's certificate;
    // so is the auditor's.
    let sup = supervisor_of(SACRAMENTO);
    for user in ["sgt-roe", "aud-kim", "adm-park"] {
        let m = fed
            .admin(SACRAMENTO, &sup, user_cmd("approve-key", user, "", 0, ""))
            .await
            .unwrap();
        assert!(m.contains("certificate valid 90 days"), "{m}");
    }

    // The supervisor signs in (key, then the secret shown once and a first code) and
    // approves the investigator's key in the console.
    first_sign_in(&c, &base, "sgt-roe").await;
    let page = wait_page(&c, "Enrollments awaiting approval").await;
    assert!(page.contains("det-lee"), "{page}");
    shot(&c, "console-enrollments").await;
    click(&c, "button[aria-label='Approve det-lee']").await;
    let page = wait_page(&c, "Done").await;
    assert!(page.contains("approved det-lee's browser key"), "{page}");

    // The supervisor records det-lee's training, reviews the one search in the sample (made
    // from the CLI before) and places an evidence hold, each through the logged admin path.
    c.goto(&format!("{base}/supervisor/accounts"))
        .await
        .unwrap();
    wait_text(&c, "Accounts", "none recorded").await;
    click(&c, "button[aria-label='Record training of det-lee today']").await;
    wait_text(&c, "Done", "recorded training for det-lee").await;
    c.goto(&format!("{base}/supervisor/reviews")).await.unwrap();
    let page = wait_text(&c, "Search reviews", "Entry #").await;
    assert!(
        page.contains(&alpr_federation::investigator_of(SACRAMENTO)),
        "{page}"
    );
    fill(
        &c,
        &format!("note-{cli_search_seq}"),
        "Case 24-0042 theft report on file",
    )
    .await;
    click(&c, "section.review button[value=yes]").await;
    wait_text(
        &c,
        "Done",
        &format!("recorded review of entry #{cli_search_seq}"),
    )
    .await;
    let reviews = fed.audit(SACRAMENTO, Some("search_review")).unwrap();
    assert_eq!(
        (
            reviews[0].entry.decision.as_str(),
            reviews[0].entry.requester_user.as_deref()
        ),
        ("justified", Some("sgt-roe"))
    );
    c.goto(&format!("{base}/supervisor/holds")).await.unwrap();
    wait_page(&c, "Evidence holds").await;
    fill(&c, "case", "24-0042").await;
    fill(&c, "plate", "8ABC123").await;
    c.execute(
        "document.getElementById('from').value = '2026-01-01T00:00';\
         document.getElementById('to').value = '2026-01-02T00:00';\
         document.getElementById('until').value = '2099-01-01T00:00';",
        vec![],
    )
    .await
    .unwrap();
    fill(&c, "note", "Evidence for the prosecution").await;
    click(&c, "#hold-form button").await;
    let page = wait_page(&c, "Done").await;
    assert!(page.to_lowercase().contains("hold"), "{page}");
    assert_eq!(
        fed.audit(SACRAMENTO, Some("evidence_hold")).unwrap().len(),
        1
    );
    sign_out(&c).await;

    // The investigator signs in and searches: Ventura (agreement) and Fresno (none).
    let secret = first_sign_in(&c, &base, "det-lee").await;
    wait_page(&c, "Search").await;
    let page = c
        .find(Locator::Id("targets"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        page.contains(VENTURA) && page.contains("agreement in force"),
        "{page}"
    );
    fill(&c, "purpose", "240").await;
    fill(&c, "case_number", "24-001234").await;
    fill(
        &c,
        "reason",
        "Stolen Honda seen leaving the burglary at 12 Main St",
    )
    .await;
    fill(&c, "plate", "8abc 123").await;
    fill(&c, "other", FRESNO).await;
    click(&c, &format!("#t-{VENTURA}")).await;
    shot(&c, "console-search").await;
    click(&c, "#search-form > button").await;
    let page = wait_page(&c, "Review and sign").await;
    let seen = element(&c, "#signed-view dl").await.text().await.unwrap();
    assert!(
        seen.contains("8ABC123") && seen.contains("det-lee of CA0340000") && seen.contains(VENTURA),
        "the browser reads the query from the bytes it signs: {seen}"
    );
    assert!(
        page.contains("8ABC123"),
        "the plate is shown as it will be signed: {page}"
    );
    let pending = c
        .find(Locator::Css("#sign-form input[name=pending]"))
        .await
        .unwrap()
        .attr("value")
        .await
        .unwrap()
        .unwrap();
    let csrf = c
        .find(Locator::Css("#sign-form input[name=csrf]"))
        .await
        .unwrap()
        .attr("value")
        .await
        .unwrap()
        .unwrap();
    click(&c, "#sign-form button").await;
    let page = wait_page(&c, "Search results").await;
    shot(&c, "console-results").await;
    assert!(page.contains("Answered with 7 reads"), "{page}");
    assert!(
        page.contains("No agreement between your agency and this one covers this search"),
        "Fresno's refusal is explained: {page}"
    );
    assert!(c.find(Locator::Css("svg.plot circle.read")).await.is_ok());

    // The query Ventura answered was signed by det-lee's browser key: the certificate
    // issued at approval, not one of the CLI's files.
    let inbound = fed.audit(VENTURA, Some("inbound_query")).unwrap();
    let e = &inbound.last().unwrap().entry;
    assert_eq!(
        (e.decision.as_str(), e.requester_user.as_deref()),
        ("answered", Some("det-lee"))
    );
    assert_eq!(
        e.count,
        Some(7),
        "a read a day in the form's default 7-day window"
    );

    // Export: the CSV, logged as an export.
    let csv = c
        .execute_async(
            "const done = arguments[arguments.length - 1];\
             fetch(document.getElementById('export').href).then(r => r.text()).then(done);",
            vec![],
        )
        .await
        .unwrap();
    let csv = csv.as_str().unwrap();
    assert_eq!(csv.lines().count(), 8, "header and 7 reads: {csv}");
    assert!(csv.lines().nth(1).unwrap().contains("8ABC123"));
    let exports = fed.audit(SACRAMENTO, Some("export")).unwrap();
    assert_eq!(exports.last().unwrap().entry.count, Some(7));

    // The signed form sent again: refused, logged, nothing sent.
    let status = c
        .execute_async(
            "const done = arguments[arguments.length - 1];\
             const body = new URLSearchParams({csrf: arguments[1], pending: arguments[0], sig: '00'});\
             fetch('/search/send', {method: 'POST', body}).then(r => done(r.status));",
            vec![json!(pending), json!(csrf)],
        )
        .await
        .unwrap();
    assert_eq!(status, json!(409));
    let outbound = fed.audit(SACRAMENTO, Some("outbound_query")).unwrap();
    assert!(
        outbound
            .iter()
            .any(|e| e.entry.reason_code.as_deref() == Some("REPLAY"))
    );
    assert_eq!(
        fed.audit(VENTURA, Some("inbound_query")).unwrap().len(),
        inbound.len(),
        "the replay reached nobody"
    );

    // A window that ends in the future: a clear message on the form and a refusal logged.
    c.goto(&format!("{base}/search")).await.unwrap();
    fill(&c, "purpose", "240").await;
    fill(&c, "case_number", "24-001234").await;
    fill(
        &c,
        "reason",
        "Stolen Honda seen leaving the burglary at 12 Main St",
    )
    .await;
    fill(&c, "plate", "8ABC123").await;
    click(&c, &format!("#t-{VENTURA}")).await;
    c.execute(
        "document.getElementById('to').value = '2099-01-01T00:00';",
        vec![],
    )
    .await
    .unwrap();
    click(&c, "#search-form > button").await;
    wait_text(&c, "Search", "The window ends in the future").await;
    let outbound = fed.audit(SACRAMENTO, Some("outbound_query")).unwrap();
    assert!(
        outbound
            .last()
            .unwrap()
            .entry
            .detail
            .as_deref()
            .unwrap()
            .contains("window ends in the future")
    );
    // An oversized field: a page that says so, not a server error.
    let status = c
        .execute_async(
            "const done = arguments[arguments.length - 1];\
             const body = new URLSearchParams({csrf: 'x', reason: 'a'.repeat(10 * 1024 * 1024)});\
             fetch('/search/prepare', {method: 'POST', body}).then(r => r.text().then(t => done([r.status, t])));",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(status[0], json!(413));
    assert!(status[1].as_str().unwrap().contains("Form too large"));
    sign_out(&c).await;

    // The auditor reads the log and cannot search; the attempt is logged.
    first_sign_in(&c, &base, "aud-kim").await;
    let page = wait_page(&c, "Audit log").await;
    assert!(page.contains("console_sign_in"), "{page}");
    shot(&c, "console-audit").await;
    let csv = c
        .execute_async(
            "const done = arguments[arguments.length - 1];\
             fetch(document.getElementById('audit-export').href).then(r => r.text()).then(done);",
            vec![],
        )
        .await
        .unwrap();
    assert!(csv.as_str().unwrap().lines().count() > 10);
    let exports = fed.audit(SACRAMENTO, Some("export")).unwrap();
    assert_eq!(
        exports.last().unwrap().entry.requester_user.as_deref(),
        Some("aud-kim")
    );
    c.goto(&format!("{base}/audit/reports")).await.unwrap();
    let page = wait_page(&c, "Reports").await;
    assert!(
        page.contains("up to 1 week") && page.contains("Transparency report"),
        "{page}"
    );
    assert!(c.find(Locator::Css("svg.chart rect.bar-1")).await.is_ok());
    shot(&c, "console-reports").await;
    c.goto(&format!("{base}/search")).await.unwrap();
    let page = wait_page(&c, "Search not permitted").await;
    assert!(page.contains("Only investigators search"), "{page}");
    let refused = fed.audit(SACRAMENTO, Some("outbound_query")).unwrap();
    let last = &refused.last().unwrap().entry;
    assert_eq!(
        (last.requester_user.as_deref(), last.reason_code.as_deref()),
        (Some("aud-kim"), Some("NOT_AUTHORIZED"))
    );
    sign_out(&c).await;

    // The admin sees the node at a glance and refuses one requesting agency, logged.
    first_sign_in(&c, &base, "adm-park").await;
    let page = wait_page(&c, "Node").await;
    assert!(page.contains("Sharing") && page.contains(VENTURA), "{page}");
    fill(&c, "refuse-ori", "NV0020100").await;
    fill(
        &c,
        "refuse-note",
        "No agreement; refused while the MOU is reviewed",
    )
    .await;
    click(&c, "#refuse-form button").await;
    wait_page(&c, "Done").await;
    shot(&c, "console-admin").await;
    let changes = fed.audit(SACRAMENTO, Some("config_change")).unwrap();
    let last = &changes.last().unwrap().entry;
    assert_eq!(last.requester_user.as_deref(), Some("adm-park"));
    assert!(
        last.detail.as_deref().unwrap().contains("NV0020100"),
        "{last:?}"
    );
    // The admin proposes an agreement and signs it in the browser: a file for the other
    // side to sign.
    c.goto(&format!("{base}/admin/agreements")).await.unwrap();
    wait_page(&c, "Agreements").await;
    fill(&c, "other", FRESNO).await;
    fill(&c, "purposes", "240 120").await;
    fill(
        &c,
        "justification",
        "Mutual aid between Sacramento and Fresno on auto theft",
    )
    .await;
    click(&c, "#draft-form > button").await;
    let page = wait_page(&c, "Review the agreement").await;
    assert!(
        page.contains(&format!("{SACRAMENTO} shares its data with {FRESNO}")),
        "{page}"
    );
    assert!(page.contains("240  Motor Vehicle Theft"), "{page}");
    click(&c, "#agreement-form button").await;
    wait_text(&c, "Signed", "Download the signed agreement file").await;
    // A file Fresno's admin drafted and signed (with the CLI's code), opened and
    // countersigned in the console: both signed, it is registered.
    let mut sa = alpr_node::client::draft_agreement(&Federation::terms(
        FRESNO,
        SACRAMENTO,
        &["240"],
        30,
        86_400,
    ))
    .unwrap();
    let (fresno_admin, _) = fed.person(FRESNO, &admin_of(FRESNO)).unwrap();
    alpr_node::client::sign_agreement(&mut sa, &fresno_admin, &fed.trust).unwrap();
    let file = profile.path().join("from-fresno.agreement");
    std::fs::write(&file, prost::Message::encode_to_vec(&sa)).unwrap();
    c.goto(&format!("{base}/admin/agreements")).await.unwrap();
    wait_page(&c, "Agreements").await;
    element(&c, "#agreement-file")
        .await
        .send_keys(&file.display().to_string())
        .await
        .unwrap();
    click(&c, "#upload-form button").await;
    let page = wait_page(&c, "Review the agreement").await;
    assert!(
        page.contains("provider admin: signed; requester admin: not signed"),
        "{page}"
    );
    click(&c, "#agreement-form button").await;
    let page = wait_page(&c, "Registered").await;
    let id = page
        .split("registered agreement ")
        .nth(1)
        .and_then(|t| t.split('.').next())
        .unwrap()
        .to_owned();
    // And revoked from the console, signed the same way.
    c.goto(&format!("{base}/admin/agreements")).await.unwrap();
    click(&c, &format!("a[aria-label='Revoke {id}']")).await;
    fill(&c, "reason", "The task force was disbanded").await;
    click(&c, "#revoke-form button").await;
    wait_page(&c, "Revoke an agreement").await;
    click(&c, "#agreement-form button").await;
    wait_text(&c, "Revoked", "recorded the revocation").await;
    fed.sync(&[FRESNO, SACRAMENTO]).await.unwrap();
    let view = fed.nodes[FRESNO].node.agreements();
    let revoked = view.iter().find(|v| v.id == id).unwrap();
    assert_eq!(
        revoked.status,
        alpr_proto::agreement::AgreementStatus::Revoked
    );
    c.goto(&format!("{base}/search")).await.unwrap();
    wait_page(&c, "Search not permitted").await;
    sign_out(&c).await;

    // Five bad codes lock det-lee's sign-in: logged and alerted; the right code then
    // does not sign in either.
    for attempt in 1..=5 {
        c.goto(&format!("{base}/signin")).await.unwrap();
        fill(&c, "user", "det-lee").await;
        click(&c, "main form button").await;
        element(&c, "#signin-form").await;
        fill(&c, "code", "000000").await;
        click(&c, "#signin-form button").await;
        let want = if attempt < 5 {
            "Sign-in failed"
        } else {
            "Sign-in locked"
        };
        wait_page(&c, want).await;
    }
    c.goto(&format!("{base}/signin")).await.unwrap();
    fill(&c, "user", "det-lee").await;
    click(&c, "main form button").await;
    element(&c, "#signin-form").await;
    fill(&c, "code", &code_of(&secret)).await;
    click(&c, "#signin-form button").await;
    wait_page(&c, "Sign-in locked").await;
    let signins = fed.audit(SACRAMENTO, Some("console_sign_in")).unwrap();
    assert!(signins.iter().any(|e| e.entry.decision == "locked_out"
        && e.entry.requester_user.as_deref() == Some("det-lee")));
    let alerts = fed.audit(SACRAMENTO, Some("alert")).unwrap();
    assert!(alerts.iter().any(|e| {
        e.entry
            .detail
            .as_deref()
            .is_some_and(|d| d.contains("console sign-in of det-lee locked"))
    }));

    c.close().await.unwrap();
    fed.stop().await.unwrap();
}
