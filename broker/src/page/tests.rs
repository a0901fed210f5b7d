use axum::http::StatusCode;

use super::signin::check_token;
use super::*;
use crate::testkit::{Kit, PROVIDER};
use alpr_pki::Role;

#[test]
fn a_regulator_sign_in_link_admits_its_regulator_until_it_expires() {
    let kit = Kit::new();
    let now = alpr_pki::now_unix();
    let token = sign_in_token(&kit.regulator(), 600, now).unwrap();
    let (id, _) = check_token(&kit.trust, &token, now).unwrap();
    assert_eq!(id.role, Role::Regulator);
    assert_eq!(id.user.as_deref(), Some("reg-ca"));
    assert!(check_token(&kit.trust, &token, now + 599).is_ok());
    let (code, m) = check_token(&kit.trust, &token, now + 600).unwrap_err();
    assert_eq!(code, StatusCode::UNAUTHORIZED);
    assert_eq!(m, "sign-in link expired; make a new one");
}

#[test]
fn a_link_lives_at_most_fifteen_minutes_and_at_least_one_second() {
    let kit = Kit::new();
    let now = alpr_pki::now_unix();
    let long = sign_in_token(&kit.regulator(), 86_400, now).unwrap();
    assert!(check_token(&kit.trust, &long, now + MAX_TOKEN_SECS - 1).is_ok());
    assert!(check_token(&kit.trust, &long, now + MAX_TOKEN_SECS).is_err());
    let none = sign_in_token(&kit.regulator(), -5, now).unwrap();
    assert!(check_token(&kit.trust, &none, now).is_ok());
    assert!(check_token(&kit.trust, &none, now + 1).is_err());
}

#[test]
fn a_link_from_the_future_is_refused() {
    let kit = Kit::new();
    let now = alpr_pki::now_unix();
    let token = sign_in_token(&kit.regulator(), 600, now).unwrap();
    // Two minutes of clock skew are tolerated, not more.
    assert!(check_token(&kit.trust, &token, now - 120).is_ok());
    let (code, _) = check_token(&kit.trust, &token, now - 121).unwrap_err();
    assert_eq!(code, StatusCode::UNAUTHORIZED);
}

#[test]
fn a_link_signed_by_someone_else_than_a_regulator_is_forbidden() {
    let kit = Kit::new();
    let now = alpr_pki::now_unix();
    let token = sign_in_token(&kit.admin(PROVIDER), 600, now).unwrap();
    let (code, m) = check_token(&kit.trust, &token, now).unwrap_err();
    assert_eq!(code, StatusCode::FORBIDDEN);
    assert_eq!(m, format!("adm@{PROVIDER} (admin) is not a regulator"));
}

#[test]
fn malformed_or_tampered_links_are_unauthorized() {
    let kit = Kit::new();
    let now = alpr_pki::now_unix();
    for bad in ["zz", "00ff"] {
        let (code, m) = check_token(&kit.trust, bad, now).unwrap_err();
        assert_eq!(code, StatusCode::UNAUTHORIZED, "{bad:?}");
        assert_eq!(m, "malformed sign-in link", "{bad:?}");
    }
    // No token at all decodes to an empty envelope, which no signature check passes.
    let (code, m) = check_token(&kit.trust, "", now).unwrap_err();
    assert_eq!(code, StatusCode::UNAUTHORIZED);
    assert!(m.starts_with("sign-in link refused: "), "{m}");
    let token = sign_in_token(&kit.regulator(), 600, now).unwrap();
    let mut signed = Signed::decode(hex::decode(&token).unwrap().as_slice()).unwrap();
    signed.payload = format!("regulator-page\n{now}\n{}", now + 10_000).into_bytes();
    let forged = hex::encode(signed.encode_to_vec());
    let (code, m) = check_token(&kit.trust, &forged, now).unwrap_err();
    assert_eq!(code, StatusCode::UNAUTHORIZED);
    assert!(m.starts_with("sign-in link refused: "), "{m}");
    // A correctly signed payload of another shape.
    let other = envelope::seal_bytes(&kit.regulator(), SIGNIN, b"something else".to_vec()).unwrap();
    let (code, m) = check_token(&kit.trust, &hex::encode(other.encode_to_vec()), now).unwrap_err();
    assert_eq!(
        (code, m.as_str()),
        (StatusCode::UNAUTHORIZED, "malformed sign-in link")
    );
}

#[test]
fn five_failures_within_fifteen_minutes_lock_until_fifteen_minutes_after_the_last() {
    assert_eq!(LOCKOUT_ATTEMPTS, 5);
    assert_eq!(LOCKOUT_WINDOW_SECS, 900);
    // Newest first.
    assert_eq!(
        lock_end(&[1000, 900, 800, 700]),
        None,
        "four are not enough"
    );
    assert_eq!(lock_end(&[1000, 900, 800, 700, 100]), Some(1900));
    assert_eq!(
        lock_end(&[1000, 900, 800, 700, 99]),
        None,
        "the fifth is older than the window"
    );
    assert_eq!(lock_end(&[893, 892, 891, 890, 0]), Some(1793));
    assert_eq!(lock_end(&[]), None);
}

#[test]
fn the_page_templates_escape_markup_from_the_registry() {
    // A justification (typed by agencies' admins) holding markup is shown, never run.
    let hostile = r#"<a href="x">Tom & Jerry</a><script>alert(1)</script>"#;
    let html = page("Registry", None, maud::html! { td { (hostile) } }).into_string();
    assert!(
        html.contains("&lt;a href=&quot;x&quot;&gt;Tom &amp; Jerry&lt;/a&gt;&lt;script&gt;"),
        "{html}"
    );
    assert!(!html.contains("<script>"), "{html}");
}

#[test]
fn purposes_are_shown_with_their_names_and_dates_as_dates() {
    assert_eq!(purposes("240 120"), "240 Motor Vehicle Theft; 120 Robbery");
    assert_eq!(purposes("ZZZ"), "ZZZ");
    assert_eq!(date(365 * 86_400 + 3_660), "1971-01-01 01:01 UTC");
}
