//! The regulator page's two-factor sign-in over HTTPS: the regulator's key (a signed token)
//! and a code from an authenticator app whose secret the broker's operator enrolls and the
//! page shows only to the key's holder. A regulator without a code, a wrong, missing or
//! reused code, five failures (lockout), a forged or a non-regulator's token are refused,
//! and every sign-in, refusal and lockout is a row of the broker's routing log.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use alpr_broker::page;
use alpr_federation::web::WebClient;
use alpr_federation::{Federation, admin_of, demo_agencies, open_policy};

const VENTURA: &str = "CA0560100";
const REGULATOR: &str = "reg-ca@US-CA";

/// The code of `secret` (base32) for `at`.
fn code(secret: &str, at: i64) -> String {
    let s = totp_rs::Secret::try_from_base32(secret).unwrap();
    totp_rs::Builder::new()
        .with_secret(s)
        .build()
        .unwrap()
        .generate(at as u64)
        .to_string()
}

/// A code that is none of the codes of the steps around `at`.
fn wrong_code(secret: &str, at: i64) -> String {
    let near: Vec<String> = (-2..=2).map(|d| code(secret, at + d * 30)).collect();
    (0..1_000_000)
        .map(|n| format!("{n:06}"))
        .find(|c| !near.contains(c))
        .unwrap()
}

/// The page-sign-in rows of the broker's routing log, as (decision, reason, requester).
fn sign_in_rows(fed: &Federation) -> Vec<(String, Option<String>, Option<String>)> {
    fed.broker
        .broker
        .log()
        .unwrap()
        .into_iter()
        .filter(|e| e.event.as_str() == "page_sign_in")
        .map(|e| (e.decision.as_str().to_owned(), e.reason_code, e.requester))
        .collect()
}

fn has_row(fed: &Federation, decision: &str, reason: Option<&str>) -> bool {
    sign_in_rows(fed)
        .iter()
        .any(|(d, r, _)| d == decision && r.as_deref() == reason)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_regulator_signs_in_with_key_and_code_and_every_attempt_is_logged() {
    let fed = Federation::start(None, &demo_agencies()[..2], |_| open_policy())
        .await
        .unwrap();
    let (_, reg) = fed.broker_client_as(fed.pki.regulator("reg-ca")).unwrap();
    let addr = fed.broker.page_addr.unwrap();
    let mut web = WebClient::connect(addr, &fed.pki.root_cert())
        .await
        .unwrap();
    let token = || page::sign_in_token(&reg, 600, alpr_pki::now_unix()).unwrap();

    // No code enrolled: the key alone does not sign in.
    let r = web
        .request("POST", "/signin", &[("token", &token()), ("code", "")])
        .await
        .unwrap();
    assert_eq!(r.status, 403, "{}", r.body);
    assert!(
        r.body
            .contains("No sign-in code is enrolled for reg-ca@US-CA"),
        "{}",
        r.body
    );
    assert!(r.cookie.is_none());
    assert!(has_row(&fed, "refused", Some("NOT_ENROLLED")));

    // The operator enrolls a code for the regulator's certificate, once; not for an admin.
    let (reg_cert, _) = fed.pki.regulator("reg-ca");
    let chain = alpr_pki::read_cert_chain(&reg_cert).unwrap();
    let now = alpr_pki::now_unix();
    let name =
        page::enroll_code(&mut fed.broker.broker.db(), &fed.trust, &chain, false, now).unwrap();
    assert_eq!(name, REGULATOR);
    let again = page::enroll_code(&mut fed.broker.broker.db(), &fed.trust, &chain, false, now)
        .unwrap_err()
        .to_string();
    assert!(again.contains("already has a sign-in code"), "{again}");
    let (admin_cert, _) = fed.pki.person(VENTURA, &admin_of(VENTURA));
    let admin_chain = alpr_pki::read_cert_chain(&admin_cert).unwrap();
    let not_reg = page::enroll_code(
        &mut fed.broker.broker.db(),
        &fed.trust,
        &admin_chain,
        false,
        now,
    )
    .unwrap_err()
    .to_string();
    assert!(not_reg.contains("is not a regulator"), "{not_reg}");
    assert!(has_row(&fed, "logged", None), "the enrollment is logged");

    // First sign-in with the key: a fresh secret is shown, and a first code asked for. A
    // second sign-in before it is set up shows another secret: a secret is kept only once
    // its first code comes back.
    let setup_of = |body: &str| {
        let marker = "id=\"totp-secret\">";
        let at = body.find(marker).unwrap() + marker.len();
        let secret = body[at..at + body[at..].find('<').unwrap()].to_owned();
        let setup = alpr_federation::web::attr(body, "name=\"setup\"", "value").unwrap();
        (secret, setup)
    };
    let r = web
        .request("POST", "/signin", &[("token", &token()), ("code", "")])
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body.contains("Set up your sign-in code"), "{}", r.body);
    assert!(r.cookie.is_none(), "no session before the first code");
    let (secret1, setup1) = setup_of(&r.body);
    let r = web
        .request("POST", "/signin", &[("token", &token()), ("code", "")])
        .await
        .unwrap();
    let (secret, setup2) = setup_of(&r.body);
    assert_ne!(secret1, secret, "each setup page shows a fresh secret");
    let shown = sign_in_rows(&fed)
        .iter()
        .filter(|(d, _, who)| d == "logged" && who.as_deref() == Some(REGULATOR))
        .count();
    assert_eq!(shown, 3, "the enrollment and each secret shown are logged");

    // A wrong first code shows the same secret again; a setup page is good once.
    let now = alpr_pki::now_unix();
    let r = web
        .request(
            "POST",
            "/signin/setup",
            &[("setup", &setup1), ("code", &wrong_code(&secret1, now))],
        )
        .await
        .unwrap();
    assert_eq!(r.status, 401, "{}", r.body);
    assert!(r.body.contains("That code is not right"), "{}", r.body);
    assert!(r.body.contains("4 more failed code(s)"), "{}", r.body);
    let (again, setup1b) = setup_of(&r.body);
    assert_eq!(again, secret1);
    let r = web
        .request(
            "POST",
            "/signin/setup",
            &[("setup", &setup1), ("code", &code(&secret1, now))],
        )
        .await
        .unwrap();
    assert_eq!(r.status, 401, "{}", r.body);
    assert!(r.body.contains("expired or was used already"), "{}", r.body);
    assert!(has_row(&fed, "refused", Some("SETUP_EXPIRED")));

    // The second page's code sets the code up and signs in.
    let first = code(&secret, now);
    let r = web
        .request(
            "POST",
            "/signin/setup",
            &[("setup", &setup2), ("code", &first)],
        )
        .await
        .unwrap();
    assert_eq!(r.status, 303, "{}", r.body);
    assert!(r.cookie.is_some());
    let r = web.request("GET", "/", &[]).await.unwrap();
    assert_eq!(r.status, 200);
    assert!(r.body.contains("Signed in as"), "{}", r.body);
    assert!(has_row(&fed, "signed_in", None));
    let codes = alpr_broker::store::regulator_codes(&fed.broker.broker.db()).unwrap();
    assert!(codes[0].confirmed_at.is_some(), "set up");
    // The other page, still open, can no longer set anything up.
    let r = web
        .request(
            "POST",
            "/signin/setup",
            &[("setup", &setup1b), ("code", &code(&secret1, now))],
        )
        .await
        .unwrap();
    assert_eq!(r.status, 409, "{}", r.body);
    assert!(has_row(&fed, "refused", Some("SETUP_STALE")));

    // Signed out: the secret shown first is worth nothing, a code is good once, and no
    // code is no sign-in (without counting as a failure).
    let r = web.request("POST", "/signout", &[]).await.unwrap();
    assert_eq!(r.status, 303);
    web.forget_cookie();
    let r = web
        .request(
            "POST",
            "/signin",
            &[("token", &token()), ("code", &code(&secret1, now))],
        )
        .await
        .unwrap();
    assert_eq!(r.status, 401, "{}", r.body);
    assert!(r.body.contains("4 more failed code(s)"), "{}", r.body);
    let r = web
        .request("POST", "/signin", &[("token", &token()), ("code", &first)])
        .await
        .unwrap();
    assert_eq!(r.status, 401, "{}", r.body);
    assert!(r.body.contains("already used"), "{}", r.body);
    assert!(r.body.contains("3 more failed code(s)"), "{}", r.body);
    assert!(r.cookie.is_none());
    let empty = token();
    let r = web
        .request("POST", "/signin", &[("token", &empty), ("code", "")])
        .await
        .unwrap();
    assert_eq!(r.status, 401, "{}", r.body);
    assert!(r.body.contains("did not count"), "{}", r.body);
    assert!(has_row(&fed, "refused", Some("NO_CODE")));
    // The same token in capitals is the same token.
    let r = web
        .request(
            "POST",
            "/signin",
            &[
                ("token", &empty.to_uppercase()),
                ("code", &code(&secret, now + 30)),
            ],
        )
        .await
        .unwrap();
    assert_eq!(r.status, 401, "{}", r.body);
    assert!(r.body.contains("used already"), "{}", r.body);
    assert!(has_row(&fed, "refused", Some("TOKEN_REUSED")));

    // Wrong codes: the fifth failure in 15 minutes locks sign-in, even with a right code.
    for i in 0..3 {
        let now = alpr_pki::now_unix();
        let r = web
            .request(
                "POST",
                "/signin",
                &[("token", &token()), ("code", &wrong_code(&secret, now))],
            )
            .await
            .unwrap();
        if i < 2 {
            assert_eq!(r.status, 401, "{}", r.body);
        } else {
            assert_eq!(r.status, 403, "{}", r.body);
            assert!(r.body.contains("is locked until"), "{}", r.body);
        }
    }
    assert!(has_row(&fed, "locked_out", None), "the lockout itself");
    let later = alpr_pki::now_unix() + 30;
    let r = web
        .request(
            "POST",
            "/signin",
            &[("token", &token()), ("code", &code(&secret, later))],
        )
        .await
        .unwrap();
    assert_eq!(r.status, 403, "{}", r.body);
    assert!(r.body.contains("is locked until"), "{}", r.body);
    assert!(has_row(&fed, "locked_out", Some("LOCKED_OUT")));
    let failed = sign_in_rows(&fed)
        .iter()
        .filter(|(d, r, who)| {
            d == "refused"
                && r.as_deref() == Some("SIGN_IN_FAILED")
                && who.as_deref() == Some(REGULATOR)
        })
        .count();
    assert_eq!(failed, 6, "one wrong first code, then five failures");

    // Tokens that prove no regulator's key are refused and logged.
    let mut forged = hex::decode(token()).unwrap();
    let n = forged.len();
    forged[n / 3] ^= 1;
    let r = web
        .request(
            "POST",
            "/signin",
            &[("token", &hex::encode(forged)), ("code", "123456")],
        )
        .await
        .unwrap();
    assert_eq!(r.status, 401, "{}", r.body);
    assert!(has_row(&fed, "refused", Some("BAD_TOKEN")));
    let (_, admin) = fed
        .broker_client_as(fed.pki.person(VENTURA, &admin_of(VENTURA)))
        .unwrap();
    let admin_token = page::sign_in_token(&admin, 600, alpr_pki::now_unix()).unwrap();
    let r = web
        .request(
            "POST",
            "/signin",
            &[("token", &admin_token), ("code", "123456")],
        )
        .await
        .unwrap();
    assert_eq!(r.status, 403, "{}", r.body);
    assert!(has_row(&fed, "refused", Some("NOT_REGULATOR")));

    // Removed by the operator: the regulator cannot sign in until enrolled again.
    assert!(
        page::remove_code(&mut fed.broker.broker.db(), REGULATOR, alpr_pki::now_unix()).unwrap()
    );
    assert!(
        !page::remove_code(&mut fed.broker.broker.db(), REGULATOR, alpr_pki::now_unix()).unwrap()
    );
    let r = web
        .request("POST", "/signin", &[("token", &token()), ("code", "")])
        .await
        .unwrap();
    assert_eq!(r.status, 403, "{}", r.body);
    assert!(r.body.contains("No sign-in code is enrolled"), "{}", r.body);

    // The sign-in rows are chained into the routing log like every other row.
    alpr_broker::store::verify_log(&fed.broker.broker.db()).unwrap();
    fed.stop().await.unwrap();
}
