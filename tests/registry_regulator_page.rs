//! The regulator web page over HTTPS, tested in headless Chromium over WebDriver: a signed
//! sign-in token pasted into the form and a code from the secret the page shows at the
//! first sign-in open the registry and the compliance report (names, purpose names, dates,
//! tables, a chart, filters); a token in the address, a forged, an expired, a
//! non-regulator's or a used token is refused, and so is the key alone before a code is
//! enrolled. (The code's rules: `tests/registry_regulator_signin.rs`.)

#![allow(clippy::unwrap_used, clippy::expect_used)]

use alpr_broker::page;
use alpr_federation::{Federation, admin_of, demo_agencies, open_policy, params};
use browser::{click, fill, wait_page, wait_text};
use fantoccini::{Client, Locator};

const VENTURA: &str = "CA0560100";
const SACRAMENTO: &str = "CA0340000";

mod browser;

/// Paste `token` into the sign-in form; the text of the page that follows.
async fn sign_in(c: &Client, base: &str, token: &str) -> String {
    c.goto(base).await.unwrap();
    fill(c, "token", token).await;
    click(c, "main form button").await;
    for _ in 0..100 {
        if let Ok(b) = c.find(Locator::Css("body")).await
            && let Ok(t) = b.text().await
            && (t.contains("Tree head")
                || t.contains("Set up your sign-in code")
                || t.contains("No sign-in code")
                || t.contains("refused")
                || t.contains("expired")
                || t.contains("not a regulator")
                || t.contains("used already")
                || t.contains("malformed"))
        {
            return t;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    c.source().await.unwrap()
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
    let base = format!("https://127.0.0.1:{}/", addr.port());
    let now = alpr_pki::now_unix();
    let token = page::sign_in_token(&reg_signer, 600, now).unwrap();
    let profile = tempfile::tempdir().unwrap();
    // A regulator's browser in New York: dates are shown in its zone.
    let (_driver, c) = browser::browser_with(profile.path(), &[("TZ", "America/New_York")]).await;

    // No session: the sign-in form. A token in the address is refused, not used.
    c.goto(&base).await.unwrap();
    wait_page(&c, "Sign in").await;
    c.goto(&format!("{base}?token={token}")).await.unwrap();
    wait_text(&c, "Sign in", "never in the address").await;

    // Refusals: a forged, an expired and a non-regulator's token.
    let mut forged = hex::decode(&token).unwrap();
    let n = forged.len();
    forged[n / 3] ^= 1;
    assert!(
        sign_in(&c, &base, &hex::encode(forged))
            .await
            .contains("sign-in link refused")
    );
    let expired = page::sign_in_token(&reg_signer, 60, now - 3600).unwrap();
    assert!(sign_in(&c, &base, &expired).await.contains("expired"));
    let (_, admin_signer) = fed
        .broker_client_as(fed.pki.person(VENTURA, &admin_of(VENTURA)))
        .unwrap();
    let not_regulator = page::sign_in_token(&admin_signer, 600, now).unwrap();
    assert!(
        sign_in(&c, &base, &not_regulator)
            .await
            .contains("is not a regulator")
    );

    // The key alone does not sign in before the broker's operator enrolls a code; then the
    // first sign-in shows the code's secret, and its first code opens the page.
    let first = page::sign_in_token(&reg_signer, 600, now).unwrap();
    assert!(
        sign_in(&c, &base, &first)
            .await
            .contains("No sign-in code is enrolled for reg-ca@US-CA")
    );
    let (reg_cert, _) = fed.pki.regulator("reg-ca");
    page::enroll_code(
        &mut fed.broker.broker.db(),
        &fed.trust,
        &alpr_pki::read_cert_chain(&reg_cert).unwrap(),
        false,
        now,
    )
    .unwrap();
    let setup_text = sign_in(&c, &base, &token).await;
    assert!(
        setup_text.contains("Set up your sign-in code"),
        "{setup_text}"
    );
    browser::shot(&c, "regulator-code-setup").await;
    let secret = browser::element(&c, "#totp-secret")
        .await
        .text()
        .await
        .unwrap();
    let code = totp_rs::Builder::new()
        .with_secret(totp_rs::Secret::try_from_base32(secret.trim()).unwrap())
        .build()
        .unwrap()
        .generate_current()
        .to_string();
    fill(&c, "code", &code).await;
    click(&c, "main form button").await;
    wait_text(&c, "ALPR agreement registry", "Tree head").await;
    let page_text = c
        .find(Locator::Css("body"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page_text.contains("Tree head"), "{page_text}");
    assert!(
        page_text.contains("Signed in as reg-ca (regulator)"),
        "{page_text}"
    );
    assert!(page_text.contains(&id), "agreement listed");
    assert!(
        page_text.contains("1 regulator cosignature(s)"),
        "{page_text}"
    );
    assert!(
        page_text.contains("Ventura County Sheriff") || page_text.contains("Ventura"),
        "agency names beside ORIs: {page_text}"
    );
    assert!(
        page_text.contains("240 Motor Vehicle Theft"),
        "purpose names: {page_text}"
    );
    assert!(
        page_text.contains(" EST"),
        "dates, not Unix seconds, in the browser's zone: {page_text}"
    );
    let head_time = c.find(Locator::Css("time[datetime]")).await.unwrap();
    assert!(
        head_time
            .attr("title")
            .await
            .unwrap()
            .unwrap_or_default()
            .ends_with(" UTC"),
        "the UTC time is the tooltip"
    );
    assert!(
        page_text.contains("PURPOSE_PROHIBITED"),
        "refusals by reason in the report"
    );
    assert!(c.find(Locator::Css("svg.chart rect.bar")).await.is_ok());
    assert!(
        page_text.contains("Searches and refusals per week"),
        "{page_text}"
    );
    assert!(
        c.find(Locator::Css("svg.chart rect.week")).await.is_ok(),
        "the weekly chart"
    );
    browser::shot(&c, "regulator-page").await;
    // The regulator suspends the agreement from the page, signing with their own key file
    // in the browser; a key that is not theirs is refused by the registry.
    c.goto(&format!("{base}action?id={id}&do=suspend"))
        .await
        .unwrap();
    fill(&c, "reason", "Requester has not filed its annual audit").await;
    click(&c, "#reason-form button").await;
    wait_page(&c, "Suspend agreement").await;
    let (_, wrong_key) = fed.pki.person(VENTURA, &admin_of(VENTURA));
    browser::element(&c, "#keyfile")
        .await
        .send_keys(&wrong_key.display().to_string())
        .await
        .unwrap();
    click(&c, "#act-form button").await;
    wait_text(&c, "Refused", "refused the action").await;
    c.goto(&format!("{base}action?id={id}&do=suspend"))
        .await
        .unwrap();
    fill(&c, "reason", "Requester has not filed its annual audit").await;
    click(&c, "#reason-form button").await;
    wait_page(&c, "Suspend agreement").await;
    let (_, reg_key) = fed.pki.regulator("reg-ca");
    browser::element(&c, "#keyfile")
        .await
        .send_keys(&reg_key.display().to_string())
        .await
        .unwrap();
    click(&c, "#act-form button").await;
    wait_text(&c, "Done", "Recorded in the registry as entry").await;
    c.goto(&format!("{base}?status=suspended")).await.unwrap();
    wait_text(&c, "ALPR agreement registry", "1 of 1 agreements").await;
    assert!(
        c.find(Locator::Css(&format!(
            "a[aria-label='Lift the suspension of {id}']"
        )))
        .await
        .is_ok()
    );
    // Filters: another state's agreements only.
    c.goto(&format!("{base}?state=US-NV")).await.unwrap();
    wait_text(&c, "ALPR agreement registry", "0 of 1 agreements").await;
    // Signed out, the same token does not sign in again.
    click(&c, "header form button").await;
    wait_page(&c, "Sign in").await;
    assert!(sign_in(&c, &base, &token).await.contains("used already"));
    fed.stop().await.unwrap();
}
