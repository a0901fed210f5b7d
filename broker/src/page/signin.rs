//! Signing in to the regulator page with two factors, as at the agencies' consoles:
//! something the regulator has — their key, which signs a short-lived token
//! (`alpr-broker registry signin-link`, payload type [`SIGNIN`], verified against the state
//! root, valid at most [`MAX_TOKEN_SECS`], good once) — and a 6-digit code from their
//! authenticator app (RFC 6238), whose secret the broker's operator enrolls
//! (`alpr-broker regulator-code enroll`) and the page shows only to the key's holder, at
//! their first sign-in. A code is good once, at whichever replica; five failed codes in 15
//! minutes lock that regulator's sign-in for 15 minutes. Every sign-in, refusal and lockout
//! is a routing-log row (`page_sign_in`).

use std::sync::Arc;

use alpr_pki::{Role, Signer, TrustStore, VerifiedIdentity};
use alpr_proto::envelope;
use alpr_proto::pb::Signed;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use maud::{PreEscaped, html};
use prost::Message;
use std::collections::HashMap;

use super::{MAX_FORM, PageState, Regulator, page, random_hex, respond};
use crate::Error;
use crate::store::{self, LogEntry};
use crate::vocabulary::{Decision, Event};

/// Payload type of a sign-in token.
pub const SIGNIN: &str = "alpr.v1.SignIn";
/// Longest validity of a sign-in link, seconds.
pub const MAX_TOKEN_SECS: i64 = 15 * 60;
/// The session cookie.
pub(super) const COOKIE: &str = "__Host-alpr_regulator";
/// A session locks after this long without a request, seconds.
pub(super) const IDLE_SECS: i64 = 1800;
/// Failed codes within [`LOCKOUT_WINDOW_SECS`] that lock a regulator's sign-in.
pub const LOCKOUT_ATTEMPTS: u32 = 5;
/// The lockout's window and length, seconds.
pub const LOCKOUT_WINDOW_SECS: i64 = 15 * 60;
/// How long a setup page (the code's secret, awaiting its first code) stays good, seconds.
const SETUP_SECS: i64 = 600;

/// A regulator who proved their key and is shown their code's secret: who, the chain
/// their token carried, until when.
pub(super) struct Setup {
    id: VerifiedIdentity,
    chain: Vec<Vec<u8>>,
    expires: i64,
}

/// Make a sign-in token (hex) valid for `ttl_secs` (capped at [`MAX_TOKEN_SECS`]).
pub fn sign_in_token(me: &Signer, ttl_secs: i64, now: i64) -> Result<String, Error> {
    let expires = now + ttl_secs.clamp(1, MAX_TOKEN_SECS);
    let signed = envelope::seal_bytes(
        me,
        SIGNIN,
        format!("regulator-page\n{now}\n{expires}").into_bytes(),
    )?;
    Ok(hex::encode(signed.encode_to_vec()))
}

/// The name a regulator's sign-in code is enrolled under: `name@JURISDICTION` of their
/// certificate; `None` for a certificate that names no person or no state.
pub fn regulator_name(id: &VerifiedIdentity) -> Option<String> {
    Some(format!(
        "{}@{}",
        id.user.as_deref()?,
        id.jurisdiction.as_ref()?
    ))
}

/// Enroll a sign-in code for the regulator whose certificate chain is `chain` (verified
/// against `trust`; only a regulator's is taken): a new random secret, which the page shows
/// to that regulator at their first sign-in. Refused when one is enrolled already, unless
/// `replace` (then the old secret stops working at once). Logged (`page_sign_in`, `logged`).
/// Returns the regulator's name.
pub fn enroll_code(
    db: &mut store::Db,
    trust: &TrustStore,
    chain: &[alpr_pki::CertificateDer<'static>],
    replace: bool,
    now: i64,
) -> Result<String, Error> {
    let id = trust.verify(chain, now)?;
    if id.role != Role::Regulator {
        return Err(Error::Usage(format!(
            "{} is not a regulator: only regulators sign in to the regulator page",
            id.describe()
        )));
    }
    let name = regulator_name(&id).ok_or_else(|| {
        Error::Usage(format!(
            "{} names no person or no state: it cannot hold a sign-in code",
            id.describe()
        ))
    })?;
    let mut secret = [0u8; 20];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut secret)
        .map_err(|_| Error::Unavailable("no randomness for a code secret".into()))?;
    if let Some(old) = store::regulator_code(db, &name)?
        && !replace
    {
        return Err(Error::Usage(format!(
            "{name} already has a sign-in code (enrolled {}, {}); --replace makes a new one (the regulator then sets it up again at their next sign-in)",
            alpr_pki::fmt_time(old.enrolled_at),
            match old.confirmed_at {
                Some(t) => format!("set up {}", alpr_pki::fmt_time(t)),
                None => "not set up yet".into(),
            }
        )));
    }
    if !store::enroll_regulator_code(db, &name, &secret, now, replace)? {
        return Err(Error::Usage(format!(
            "{name} was enrolled meanwhile by someone else; nothing changed"
        )));
    }
    store::log(
        db,
        &[row(
            now,
            Decision::Logged,
            Some(&name),
            None,
            if replace {
                "sign-in code enrolled (any earlier one replaced) by the broker's operator".into()
            } else {
                "sign-in code enrolled by the broker's operator".into()
            },
        )],
    )?;
    Ok(name)
}

/// Remove `regulator`'s sign-in code (they cannot sign in until one is enrolled again).
/// Logged. `false` when none was enrolled.
pub fn remove_code(db: &mut store::Db, regulator: &str, now: i64) -> Result<bool, Error> {
    if !store::remove_regulator_code(db, regulator)? {
        return Ok(false);
    }
    store::log(
        db,
        &[row(
            now,
            Decision::Logged,
            Some(regulator),
            None,
            "sign-in code removed by the broker's operator".into(),
        )],
    )?;
    Ok(true)
}

pub(super) fn check_token(
    trust: &TrustStore,
    token: &str,
    now: i64,
) -> Result<VerifiedIdentity, (StatusCode, String)> {
    let unauthorized = |m: &str| (StatusCode::UNAUTHORIZED, m.to_owned());
    let bytes = hex::decode(token).map_err(|_| unauthorized("malformed sign-in link"))?;
    let signed =
        Signed::decode(bytes.as_slice()).map_err(|_| unauthorized("malformed sign-in link"))?;
    let (id, payload) = envelope::open(trust, &signed, SIGNIN, now)
        .map_err(|e| unauthorized(&format!("sign-in link refused: {e}")))?;
    let text = std::str::from_utf8(payload).map_err(|_| unauthorized("malformed sign-in link"))?;
    let mut parts = text.split('\n');
    let (Some("regulator-page"), Some(issued), Some(expires), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(unauthorized("malformed sign-in link"));
    };
    let (issued, expires): (i64, i64) = (
        issued.parse().map_err(|_| unauthorized("malformed"))?,
        expires.parse().map_err(|_| unauthorized("malformed"))?,
    );
    if expires <= now || expires - issued > MAX_TOKEN_SECS || issued > now + 120 {
        return Err(unauthorized("sign-in link expired; make a new one"));
    }
    if id.role != Role::Regulator {
        return Err((
            StatusCode::FORBIDDEN,
            format!("{} is not a regulator", id.describe()),
        ));
    }
    Ok(id)
}

pub(super) fn signin_page(status: StatusCode, error: Option<&str>) -> Response {
    respond(
        status,
        page(
            "Sign in",
            None,
            html! {
                @if let Some(e) = error { p.error role="alert" { (e) } }
                p { "Sign in with your regulator key and the code of your authenticator app. Make a sign-in token with your key (a token is good once, for at most 15 minutes):" }
                pre { "alpr-broker registry --broker H:P --root root.crt --cert reg.crt --key reg.key signin-link --page https://this-page/" }
                form method="post" action="/signin" {
                    label for="token" { "Sign-in token" }
                    textarea #token name="token" rows="4" required autocomplete="off" {}
                    label for="code" { "6-digit code (leave it empty at your first sign-in: the page then shows the code's secret)" }
                    input #code name="code" inputmode="numeric" autocomplete="one-time-code" pattern="[0-9]{6}" maxlength="6";
                    button type="submit" { "Sign in" }
                }
            },
        ),
    )
}

pub(super) fn session(st: &PageState, headers: &HeaderMap, now: i64) -> Option<Regulator> {
    let token = alpr_runtime::web::cookie(headers, COOKIE)?;
    let mut m = st.sessions.lock().unwrap_or_else(|p| p.into_inner());
    match m.get_mut(&token) {
        Some(r) if now - r.seen <= IDLE_SECS => {
            r.seen = now;
            Some(r.clone())
        }
        Some(_) => {
            m.remove(&token);
            None
        }
        None => None,
    }
}

fn cross_site(headers: &HeaderMap) -> bool {
    headers
        .get("sec-fetch-site")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v == "cross-site" || v == "same-site")
}

async fn read_fields(body: Body) -> Result<HashMap<String, String>, Response> {
    let Ok(bytes) = axum::body::to_bytes(body, MAX_FORM).await else {
        return Err(signin_page(
            StatusCode::PAYLOAD_TOO_LARGE,
            Some("That is not a sign-in token (too long)."),
        ));
    };
    Ok(form_urlencoded::parse(&bytes).into_owned().collect())
}

/// One `page_sign_in` row.
fn row(
    now: i64,
    decision: Decision,
    who: Option<&str>,
    reason: Option<&str>,
    detail: String,
) -> LogEntry {
    LogEntry {
        requester: who.map(str::to_owned),
        reason_code: reason.map(str::to_owned),
        detail: Some(detail),
        ..LogEntry::new(now, Event::PageSignIn, decision)
    }
}

/// Log rows of a refusal (a failure to log is an alert; the refusal stands).
async fn log_refusal(st: &PageState, rows: Vec<LogEntry>) {
    if let Err(e) = st.broker.record(rows).await {
        tracing::error!(error = %e, "ALERT: could not log a refused regulator page sign-in");
    }
}

/// Run `f` on the store off the async threads.
async fn on_store<R: Send + 'static>(
    st: &PageState,
    f: impl FnOnce(&store::Db) -> Result<R, Error> + Send + 'static,
) -> Result<R, Response> {
    let b = st.broker.clone();
    match tokio::task::spawn_blocking(move || f(&b.db())).await {
        Ok(Ok(r)) => Ok(r),
        Ok(Err(e)) => {
            tracing::error!(error = %e, "regulator page: the broker's store failed");
            Err(signin_page(
                StatusCode::SERVICE_UNAVAILABLE,
                Some("The broker's store could not be read; nothing was signed in. Try again."),
            ))
        }
        Err(_) => Err(signin_page(
            StatusCode::SERVICE_UNAVAILABLE,
            Some("The sign-in was interrupted; nothing was signed in. Try again."),
        )),
    }
}

/// Until when `name`'s sign-in is locked, if it is.
fn locked_until(db: &store::Db, name: &str, now: i64) -> Result<Option<i64>, Error> {
    let (count, last) = store::regulator_failures_since(db, name, now - LOCKOUT_WINDOW_SECS)?;
    Ok((count >= LOCKOUT_ATTEMPTS).then(|| last.unwrap_or(now) + LOCKOUT_WINDOW_SECS))
}

fn locked_page(name: &str, until: i64) -> Response {
    signin_page(
        StatusCode::FORBIDDEN,
        Some(&format!(
            "Sign-in for {name} is locked until {} after {LOCKOUT_ATTEMPTS} failed codes.",
            alpr_pki::fmt_time(until)
        )),
    )
}

/// `POST /signin`: the key's token, then the code (or, the first time, the code's setup).
pub(super) async fn signin(
    State(st): State<Arc<PageState>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let now = alpr_pki::now_unix();
    if cross_site(&headers) {
        return signin_page(StatusCode::FORBIDDEN, Some("Sign in from this page."));
    }
    let form = match read_fields(body).await {
        Ok(f) => f,
        Err(r) => return r,
    };
    let field = |k: &str| form.get(k).map(|v| v.trim().to_owned()).unwrap_or_default();
    let (token, code) = (field("token"), field("code"));
    let id = match check_token(&st.broker.trust(), &token, now) {
        Ok(id) => id,
        Err((status, msg)) => {
            let reason = if status == StatusCode::FORBIDDEN {
                "NOT_REGULATOR"
            } else {
                "BAD_TOKEN"
            };
            log_refusal(
                &st,
                vec![row(now, Decision::Refused, None, Some(reason), msg.clone())],
            )
            .await;
            return signin_page(status, Some(&msg));
        }
    };
    let Some(name) = regulator_name(&id) else {
        let msg = format!("{} names no state; it cannot sign in here", id.describe());
        log_refusal(
            &st,
            vec![row(
                now,
                Decision::Refused,
                None,
                Some("NOT_REGULATOR"),
                msg.clone(),
            )],
        )
        .await;
        return signin_page(StatusCode::FORBIDDEN, Some(&msg));
    };
    let digest = ring::digest::digest(&ring::digest::SHA256, token.as_bytes())
        .as_ref()
        .to_vec();
    let reused = {
        let mut used = st.used.lock().unwrap_or_else(|p| p.into_inner());
        used.retain(|_, until| *until > now);
        used.insert(digest, now + MAX_TOKEN_SECS + 120).is_some()
    };
    if reused {
        let msg = "This sign-in token was used already; make a new one.";
        log_refusal(
            &st,
            vec![row(
                now,
                Decision::Refused,
                Some(&name),
                Some("TOKEN_REUSED"),
                msg.into(),
            )],
        )
        .await;
        return signin_page(StatusCode::UNAUTHORIZED, Some(msg));
    }
    // The chain the token carried (verified above with it).
    let chain = hex::decode(&token)
        .ok()
        .and_then(|b| Signed::decode(b.as_slice()).ok())
        .map(|s| s.cert_chain)
        .unwrap_or_default();
    let n = name.clone();
    let found = on_store(&st, move |db| {
        Ok((store::regulator_code(db, &n)?, locked_until(db, &n, now)?))
    })
    .await;
    let (enrolled, locked) = match found {
        Ok(f) => f,
        Err(r) => return r,
    };
    if let Some(until) = locked {
        log_refusal(
            &st,
            vec![row(
                now,
                Decision::LockedOut,
                Some(&name),
                Some("LOCKED_OUT"),
                format!(
                    "sign-in refused: locked until {}",
                    alpr_pki::fmt_time(until)
                ),
            )],
        )
        .await;
        return locked_page(&name, until);
    }
    let Some(enrolled) = enrolled else {
        let msg = format!(
            "No sign-in code is enrolled for {name} at this broker. Its operator enrolls one (alpr-broker regulator-code --config broker.toml enroll --cert <your certificate>); then sign in again."
        );
        log_refusal(
            &st,
            vec![row(
                now,
                Decision::Refused,
                Some(&name),
                Some("NOT_ENROLLED"),
                msg.clone(),
            )],
        )
        .await;
        return signin_page(StatusCode::FORBIDDEN, Some(&msg));
    };
    if enrolled.confirmed_at.is_none() {
        return setup_page(&st, id, chain, &enrolled.secret, now, None);
    }
    match spend_code(&st, &name, &enrolled.secret, &code, now).await {
        Ok(()) => start_session(&st, id, chain, now, "signed in (key token and code)").await,
        Err(r) => r,
    }
}

/// Check `code` and spend its step; on failure, count it (locking at the limit), log it
/// and say so.
async fn spend_code(
    st: &Arc<PageState>,
    name: &str,
    secret: &[u8],
    code: &str,
    now: i64,
) -> Result<(), Response> {
    let why = match alpr_runtime::codes::check(secret, code, now) {
        Ok(step) => {
            let n = name.to_owned();
            if on_store(st, move |db| store::use_regulator_step(db, &n, step, now)).await? {
                return Ok(());
            }
            "this code was already used; wait for the next one".to_owned()
        }
        Err(why) => why,
    };
    let n = name.to_owned();
    let count = on_store(st, move |db| {
        store::put_regulator_failure(db, &n, now)?;
        Ok(store::regulator_failures_since(db, &n, now - LOCKOUT_WINDOW_SECS)?.0)
    })
    .await?;
    let mut rows = vec![row(
        now,
        Decision::Refused,
        Some(name),
        Some("SIGN_IN_FAILED"),
        why.clone(),
    )];
    if count >= LOCKOUT_ATTEMPTS {
        let text = format!(
            "regulator page sign-in of {name} locked for {} minutes after {LOCKOUT_ATTEMPTS} failed codes",
            LOCKOUT_WINDOW_SECS / 60
        );
        tracing::error!(regulator = %name, "ALERT: {text}");
        rows.push(row(now, Decision::LockedOut, Some(name), None, text));
        log_refusal(st, rows).await;
        return Err(locked_page(name, now + LOCKOUT_WINDOW_SECS));
    }
    log_refusal(st, rows).await;
    Err(signin_page(
        StatusCode::UNAUTHORIZED,
        Some(&format!(
            "Sign-in refused: {why}. {} more failed code(s) lock sign-in for {} minutes.",
            LOCKOUT_ATTEMPTS - count,
            LOCKOUT_WINDOW_SECS / 60
        )),
    ))
}

/// The page that shows a regulator whose key proved itself their code's secret, and asks
/// for its first code.
fn setup_page(
    st: &PageState,
    id: VerifiedIdentity,
    chain: Vec<Vec<u8>>,
    secret: &[u8],
    now: i64,
    error: Option<&str>,
) -> Response {
    let Some(token) = random_hex() else {
        return signin_page(
            StatusCode::SERVICE_UNAVAILABLE,
            Some("No randomness for a setup page; try again."),
        );
    };
    let name = regulator_name(&id).unwrap_or_default();
    {
        let mut m = st.setups.lock().unwrap_or_else(|p| p.into_inner());
        m.retain(|_, s| s.expires > now);
        m.insert(
            token.clone(),
            Setup {
                id,
                chain,
                expires: now + SETUP_SECS,
            },
        );
    }
    let uri = alpr_runtime::codes::otpauth_uri("ALPR registry", &name, secret);
    let qr = match alpr_runtime::codes::qr_svg(&uri) {
        // Numbers and fixed attributes only (see `alpr_runtime::codes::qr_svg`).
        Some(svg) => html! { (PreEscaped(svg)) },
        None => html! { p { "(no QR code: type the secret)" } },
    };
    respond(
        if error.is_some() {
            StatusCode::UNAUTHORIZED
        } else {
            StatusCode::OK
        },
        page(
            "Set up your sign-in code",
            None,
            html! {
                @if let Some(e) = error { p.error role="alert" { (e) } }
                p { "Your key is recognised as " b { (name) } ". Add this account to your authenticator app (scan the code, or type the secret), then type the 6-digit code it shows. From now on you sign in with your key's token and a code." }
                figure { (qr) figcaption { "QR code of the secret" } }
                p { "Secret: " code #totp-secret { (alpr_runtime::codes::base32(secret)) } }
                form method="post" action="/signin/setup" {
                    input type="hidden" name="setup" value=(token);
                    label for="code" { "6-digit code" }
                    input #code name="code" inputmode="numeric" autocomplete="one-time-code" pattern="[0-9]{6}" maxlength="6" required autofocus;
                    button type="submit" { "Confirm and sign in" }
                }
            },
        ),
    )
}

/// `POST /signin/setup`: the first code of the secret just shown.
pub(super) async fn signin_setup(
    State(st): State<Arc<PageState>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let now = alpr_pki::now_unix();
    if cross_site(&headers) {
        return signin_page(StatusCode::FORBIDDEN, Some("Sign in from this page."));
    }
    let form = match read_fields(body).await {
        Ok(f) => f,
        Err(r) => return r,
    };
    let setup = form.get("setup").cloned().unwrap_or_default();
    let code = form
        .get("code")
        .map(|c| c.trim().to_owned())
        .unwrap_or_default();
    let taken = st
        .setups
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .remove(&setup)
        .filter(|s| s.expires > now);
    let Some(Setup { id, chain, .. }) = taken else {
        return signin_page(
            StatusCode::UNAUTHORIZED,
            Some("This setup page expired or was used already; sign in again with a new token."),
        );
    };
    let name = regulator_name(&id).unwrap_or_default();
    let n = name.clone();
    let found = on_store(&st, move |db| {
        Ok((store::regulator_code(db, &n)?, locked_until(db, &n, now)?))
    })
    .await;
    let (enrolled, locked) = match found {
        Ok(f) => f,
        Err(r) => return r,
    };
    if let Some(until) = locked {
        log_refusal(
            &st,
            vec![row(
                now,
                Decision::LockedOut,
                Some(&name),
                Some("LOCKED_OUT"),
                format!(
                    "code setup refused: locked until {}",
                    alpr_pki::fmt_time(until)
                ),
            )],
        )
        .await;
        return locked_page(&name, until);
    }
    let Some(enrolled) = enrolled else {
        return signin_page(
            StatusCode::FORBIDDEN,
            Some(&format!(
                "The sign-in code of {name} was removed by the broker's operator meanwhile; nothing was signed in."
            )),
        );
    };
    match spend_code(&st, &name, &enrolled.secret, &code, now).await {
        Ok(()) => {
            start_session(
                &st,
                id,
                chain,
                now,
                "code set up; signed in (key token and code)",
            )
            .await
        }
        Err(r) if r.status() == StatusCode::UNAUTHORIZED => {
            // A wrong first code: the same secret again, with the reason.
            let msg =
                "That code is not right (or was used already); type the code your app shows now.";
            setup_page(&st, id, chain, &enrolled.secret, now, Some(msg))
        }
        Err(r) => r,
    }
}

/// Log the sign-in (refusing it if that fails) and open the session.
async fn start_session(
    st: &Arc<PageState>,
    id: VerifiedIdentity,
    chain: Vec<Vec<u8>>,
    now: i64,
    detail: &str,
) -> Response {
    let name = regulator_name(&id).unwrap_or_default();
    let n = name.clone();
    if let Err(r) = on_store(st, move |db| store::clear_regulator_failures(db, &n)).await {
        return r;
    }
    if let Err(e) = st
        .broker
        .record(vec![row(
            now,
            Decision::SignedIn,
            Some(&name),
            None,
            detail.into(),
        )])
        .await
    {
        tracing::error!(error = %e, "ALERT: could not log a regulator page sign-in");
        return signin_page(
            StatusCode::SERVICE_UNAVAILABLE,
            Some("The sign-in could not be recorded; nothing was signed in. Try again."),
        );
    }
    let (Some(sid), Some(csrf)) = (random_hex(), random_hex()) else {
        return signin_page(
            StatusCode::SERVICE_UNAVAILABLE,
            Some("No randomness for a session; try again."),
        );
    };
    tracing::info!(regulator = %id.describe(), "regulator page sign-in");
    {
        let mut m = st.sessions.lock().unwrap_or_else(|p| p.into_inner());
        m.retain(|_, r| now - r.seen <= IDLE_SECS);
        m.insert(
            sid.clone(),
            Regulator {
                id,
                chain,
                csrf,
                seen: now,
            },
        );
    }
    let mut r = Redirect::to("/").into_response();
    if let Ok(v) = HeaderValue::from_str(&format!(
        "{COOKIE}={sid}; Path=/; Secure; HttpOnly; SameSite=Strict"
    )) {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    r
}

/// `POST /signout`.
pub(super) async fn signout(State(st): State<Arc<PageState>>, headers: HeaderMap) -> Response {
    if let Some(t) = alpr_runtime::web::cookie(&headers, COOKIE) {
        st.sessions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&t);
    }
    let mut r = Redirect::to("/").into_response();
    r.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_static(
            "__Host-alpr_regulator=; Path=/; Secure; HttpOnly; SameSite=Strict; Max-Age=0",
        ),
    );
    r
}
