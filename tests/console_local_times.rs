//! The console in a browser whose clock is in California: times the server writes in UTC
//! are shown in the browser's own zone (the UTC text kept as the tooltip), date-time fields
//! are filled and read in local time, and the search the server builds covers the window
//! the investigator typed in local time.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use alpr_federation::{Federation, admin_of, demo_agencies, open_policy, supervisor_of};
use alpr_node::client::user_cmd;
use browser::{click, fill, wait_page};
use fantoccini::Locator;

mod browser;

const VENTURA: &str = "CA0560100";
const SACRAMENTO: &str = "CA0340000";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_browser_in_california_reads_and_types_times_in_pacific_time() {
    let fed = Federation::start(None, &demo_agencies()[..2], |_| open_policy())
        .await
        .unwrap();
    fed.agree(Federation::terms(VENTURA, SACRAMENTO, &["240"], 30, 86_400))
        .await
        .unwrap();
    let ori = SACRAMENTO;
    let (admin, sup) = (admin_of(ori), supervisor_of(ori));
    fed.admin(
        ori,
        &admin,
        user_cmd("add", "det-pst", "investigator", 0, ""),
    )
    .await
    .unwrap();
    let reply = fed
        .admin(ori, &admin, user_cmd("invite", "det-pst", "", 0, ""))
        .await
        .unwrap();
    let code = reply
        .lines()
        .find_map(|l| l.strip_prefix("enrollment code: "))
        .unwrap()
        .to_owned();
    let base = format!(
        "https://127.0.0.1:{}",
        fed.nodes[ori].console_addr.unwrap().port()
    );
    let profile = tempfile::tempdir().unwrap();
    let (_driver, c) =
        browser::browser_with(profile.path(), &[("TZ", "America/Los_Angeles")]).await;
    // The investigator enrolls this browser, is approved and trained, and signs in.
    c.goto(&format!("{base}/enroll")).await.unwrap();
    fill(&c, "user", "det-pst").await;
    fill(&c, "code", &code).await;
    click(&c, "#enroll-form button").await;
    wait_page(&c, "Enrolled").await;
    fed.admin(ori, &sup, user_cmd("approve-key", "det-pst", "", 0, ""))
        .await
        .unwrap();
    let trained = alpr_pki::now_unix() - 86_400;
    fed.admin(ori, &sup, user_cmd("training", "det-pst", "", trained, ""))
        .await
        .unwrap();
    c.goto(&format!("{base}/signin")).await.unwrap();
    fill(&c, "user", "det-pst").await;
    click(&c, "main form button").await;
    click(&c, "#signin-form button").await;
    wait_page(&c, "Set up your sign-in code").await;
    let secret = c
        .find(Locator::Id("totp-secret"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let totp = totp_rs::Builder::new()
        .with_secret(totp_rs::Secret::try_from_base32(secret.trim()).unwrap())
        .build()
        .unwrap();
    fill(&c, "code", &totp.generate_current().to_string()).await;
    click(&c, "main form button").await;
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;

    c.goto(&format!("{base}/search")).await.unwrap();
    wait_page(&c, "Search").await;
    let zone = c
        .find(Locator::Css("label[for=from] span.tz"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(zone, "America/Los_Angeles");
    // Window: from 2026-11-30 08:00 to 2026-12-01 09:30, Pacific time (UTC-8 in winter).
    c.execute(
        "document.getElementById('from').value = '2026-11-30T08:00';
         document.getElementById('to').value = '2026-12-01T09:30';",
        vec![],
    )
    .await
    .unwrap();
    fill(&c, "purpose", "240").await;
    fill(&c, "case_number", "24-001234").await;
    fill(
        &c,
        "reason",
        "Stolen white Honda Civic reported by its owner on Main Street overnight",
    )
    .await;
    fill(&c, "plate", "8ABC123").await;
    click(&c, &format!("#t-{VENTURA}")).await;
    click(&c, "#search-form > button").await;
    let page = browser::wait_text(&c, "Review and sign", "Window").await;
    // The server built the window in UTC from the local times typed.
    let times = c.find_all(Locator::Css("time[datetime]")).await.unwrap();
    let mut seen = Vec::new();
    for t in &times {
        seen.push((
            t.attr("datetime").await.unwrap().unwrap_or_default(),
            t.attr("title").await.unwrap().unwrap_or_default(),
            t.text().await.unwrap(),
        ));
    }
    assert!(
        seen.contains(&(
            "2026-11-30T16:00:00Z".into(),
            "2026-11-30 16:00 UTC".into(),
            "2026-11-30 08:00 PST".into()
        )),
        "{seen:?}\n{page}"
    );
    assert!(
        seen.iter()
            .any(|(iso, _, text)| iso == "2026-12-01T17:30:00Z" && text == "2026-12-01 09:30 PST"),
        "{seen:?}"
    );
    fed.stop().await.unwrap();
}
