//! Signing in to the regulator page with two factors, as at the agencies' consoles:
//! something the regulator has — their key, which signs a short-lived token
//! (`alpr-broker registry signin-link`, payload type [`SIGNIN`], verified against the state
//! root, valid at most [`MAX_TOKEN_SECS`], good once at any replica) — and a 6-digit code
//! from their authenticator app (RFC 6238). The broker's operator enrolls a regulator
//! (`alpr-broker regulator-code enroll`); at their first sign-in with their key the page
//! makes a fresh secret, shows it to them alone and keeps it only once its first code
//! proves it was added to an app (a secret shown to a key thief who never confirms it is
//! never used; one the thief confirms shows as set up to the real regulator). A code is
//! good once, at whichever replica. Every attempt with a valid token counts as a failure
//! until its code is proven right, so parallel guesses get no more than
//! [`LOCKOUT_ATTEMPTS`]: that many failures within [`LOCKOUT_WINDOW_SECS`] lock the
//! regulator's sign-in until [`LOCKOUT_WINDOW_SECS`] after the last of them. Every sign-in,
//! refusal, lockout and setup page shown is a routing-log row (`page_sign_in`).

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
/// The lockout's window, and how long it lasts after the last failure, seconds.
pub const LOCKOUT_WINDOW_SECS: i64 = 15 * 60;
/// How long a setup page (a fresh secret, awaiting its first code) stays good, seconds.
const SETUP_SECS: i64 = 600;
/// Bytes of a code secret (160 bits, RFC 4226's recommendation).
const SECRET_BYTES: usize = 20;

/// A regulator who proved their key and was shown a fresh secret: who, the chain their
/// token carried, the secret, the enrollment it sets up, until when.
pub(super) struct Setup {
    id: VerifiedIdentity,
    chain: Vec<Vec<u8>>,
    secret: Vec<u8>,
    generation: i64,
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

/// Enroll the regulator whose certificate chain is `chain` (verified against `trust`; only
/// a regulator's is taken) for a sign-in code, which they set up at their next sign-in with
/// their key. Refused when enrolled already, unless `replace` (then the old code stops
/// working for new sign-ins at once). Logged (`page_sign_in`, `logged`) before it is
/// changed, so no change goes unlogged. Returns the regulator's name.
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
    if !store::enroll_regulator_code(db, &name, now, replace)? {
        return Err(Error::Usage(format!(
            "{name} was enrolled meanwhile by someone else; nothing changed"
        )));
    }
    Ok(name)
}

/// Remove `regulator`'s sign-in code: no new sign-in until they are enrolled again (open
/// sessions end at sign-out or their idle lock). Logged first. `false` when none was
/// enrolled.
pub fn remove_code(db: &mut store::Db, regulator: &str, now: i64) -> Result<bool, Error> {
    if store::regulator_code(db, regulator)?.is_none() {
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
    store::remove_regulator_code(db, regulator)
}

/// Verify a sign-in token: who signed it, and the signed envelope.
pub(super) fn check_token(
    trust: &TrustStore,
    token: &str,
    now: i64,
) -> Result<(VerifiedIdentity, Signed), (StatusCode, String)> {
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
    Ok((id, signed))
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

/// The form's fields; a cross-site or oversized form is refused here (and logged).
async fn read_fields(
    st: &PageState,
    headers: &HeaderMap,
    body: Body,
) -> Result<HashMap<String, String>, Response> {
    let now = alpr_pki::now_unix();
    if cross_site(headers) {
        let msg = "Sign in from this page.";
        log_refusal(
            st,
            vec![row(
                now,
                Decision::Refused,
                None,
                Some("CROSS_SITE"),
                "a sign-in form sent from another site".into(),
            )],
        )
        .await;
        return Err(signin_page(StatusCode::FORBIDDEN, Some(msg)));
    }
    let Ok(bytes) = axum::body::to_bytes(body, MAX_FORM).await else {
        log_refusal(
            st,
            vec![row(
                now,
                Decision::Refused,
                None,
                Some("FORM_TOO_LARGE"),
                format!("a sign-in form over {MAX_FORM} bytes"),
            )],
        )
        .await;
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

/// A refusal whose logged detail is the message shown: one `page_sign_in` row, then the
/// sign-in page with `msg`.
async fn refuse(
    st: &PageState,
    now: i64,
    who: Option<&str>,
    reason: &str,
    status: StatusCode,
    msg: &str,
) -> Response {
    log_refusal(
        st,
        vec![row(
            now,
            Decision::Refused,
            who,
            Some(reason),
            msg.to_owned(),
        )],
    )
    .await;
    signin_page(status, Some(msg))
}

/// `name`'s enrolled code, if any, and until when its sign-in is locked, if it is.
async fn enrollment(
    st: &PageState,
    name: &str,
    now: i64,
) -> Result<(Option<store::RegulatorCode>, Option<i64>), Response> {
    let n = name.to_owned();
    on_store(st, move |db| {
        Ok((store::regulator_code(db, &n)?, locked_until(db, &n, now)?))
    })
    .await
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

/// Until when failures at `times` (newest first) lock sign-in: [`LOCKOUT_ATTEMPTS`] of
/// them within [`LOCKOUT_WINDOW_SECS`] lock it until that long after the last.
pub fn lock_end(times: &[i64]) -> Option<i64> {
    let n = LOCKOUT_ATTEMPTS as usize;
    (times.len() >= n && times[0] - times[n - 1] <= LOCKOUT_WINDOW_SECS)
        .then(|| times[0] + LOCKOUT_WINDOW_SECS)
}

/// Until when `name`'s sign-in is locked at `now`, if it is.
fn locked_until(db: &store::Db, name: &str, now: i64) -> Result<Option<i64>, Error> {
    let times = store::regulator_failure_times(db, name, LOCKOUT_ATTEMPTS)?;
    Ok(lock_end(&times).filter(|&until| until > now))
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

/// The refusal of an attempt while locked (logged).
async fn refuse_locked(st: &PageState, name: &str, until: i64, now: i64, what: &str) -> Response {
    log_refusal(
        st,
        vec![row(
            now,
            Decision::LockedOut,
            Some(name),
            Some("LOCKED_OUT"),
            format!("{what} refused: locked until {}", alpr_pki::fmt_time(until)),
        )],
    )
    .await;
    locked_page(name, until)
}

/// `POST /signin`: the key's token, then the code (or, the first time, the code's setup).
pub(super) async fn signin(
    State(st): State<Arc<PageState>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let now = alpr_pki::now_unix();
    let form = match read_fields(&st, &headers, body).await {
        Ok(f) => f,
        Err(r) => return r,
    };
    let field = |k: &str| form.get(k).map(|v| v.trim().to_owned()).unwrap_or_default();
    let (token, code) = (field("token"), field("code"));
    let (id, signed) = match check_token(&st.broker.trust(), &token, now) {
        Ok(v) => v,
        Err((status, msg)) => {
            let reason = if status == StatusCode::FORBIDDEN {
                "NOT_REGULATOR"
            } else {
                "BAD_TOKEN"
            };
            return refuse(&st, now, None, reason, status, &msg).await;
        }
    };
    let Some(name) = regulator_name(&id) else {
        let msg = format!(
            "{} names no person or no state; it cannot sign in here",
            id.describe()
        );
        return refuse(&st, now, None, "NOT_REGULATOR", StatusCode::FORBIDDEN, &msg).await;
    };
    // Good once, whatever its encoding: by its signature, at every replica.
    let digest = ring::digest::digest(&ring::digest::SHA256, &signed.signature)
        .as_ref()
        .to_vec();
    let until = now + MAX_TOKEN_SECS + 120;
    if !match on_store(&st, move |db| {
        store::spend_signin_token(db, &digest, until, now)
    })
    .await
    {
        Ok(fresh) => fresh,
        Err(r) => return r,
    } {
        let msg = "This sign-in token was used already; make a new one.";
        return refuse(
            &st,
            now,
            Some(&name),
            "TOKEN_REUSED",
            StatusCode::UNAUTHORIZED,
            msg,
        )
        .await;
    }
    let chain = signed.cert_chain;
    let (enrolled, locked) = match enrollment(&st, &name, now).await {
        Ok(f) => f,
        Err(r) => return r,
    };
    if let Some(until) = locked {
        return refuse_locked(&st, &name, until, now, "sign-in").await;
    }
    let Some(enrolled) = enrolled else {
        let msg = format!(
            "No sign-in code is enrolled for {name} at this broker. Its operator enrolls one (alpr-broker regulator-code --config broker.toml enroll --cert <your certificate>); then sign in again."
        );
        return refuse(
            &st,
            now,
            Some(&name),
            "NOT_ENROLLED",
            StatusCode::FORBIDDEN,
            &msg,
        )
        .await;
    };
    if enrolled.confirmed_at.is_none() {
        let mut secret = vec![0u8; SECRET_BYTES];
        if ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut secret).is_err() {
            return signin_page(
                StatusCode::SERVICE_UNAVAILABLE,
                Some("No randomness for a code secret; try again."),
            );
        }
        let setup = Setup {
            id,
            chain,
            secret,
            generation: enrolled.generation,
            expires: now + SETUP_SECS,
        };
        return setup_page(&st, setup, now, None).await;
    }
    if code.is_empty() {
        let msg = "Type the 6-digit code your authenticator app shows for this page; nothing was signed in (this did not count as a failed code).";
        log_refusal(
            &st,
            vec![row(
                now,
                Decision::Refused,
                Some(&name),
                Some("NO_CODE"),
                "no code was typed".into(),
            )],
        )
        .await;
        return signin_page(StatusCode::UNAUTHORIZED, Some(msg));
    }
    match attempt(&st, &name, &enrolled.secret, &code, None, now).await {
        Ok(()) => start_session(&st, id, chain, now, "signed in (key token and code)").await,
        Err(Attempt::Failed { why, left }) => signin_page(
            StatusCode::UNAUTHORIZED,
            Some(&format!(
                "Sign-in refused: {why}. {left} more failed code(s) lock sign-in for {} minutes.",
                LOCKOUT_WINDOW_SECS / 60
            )),
        ),
        Err(Attempt::Stopped(r)) => r,
    }
}

/// Why an attempt did not sign in.
enum Attempt {
    /// A wrong, reused or stale code: why, and how many failures are left before lockout.
    Failed { why: String, left: u32 },
    /// Locked (now or already), or the store failed: the page to show.
    Stopped(Response),
}

/// One attempt of `name` with `code`: recorded as a failure first (so parallel attempts
/// cannot outrun the lockout), then checked against `secret`; for a setup, `setup` is the
/// enrollment's generation it sets up with `secret`. On success the failures are cleared.
async fn attempt(
    st: &Arc<PageState>,
    name: &str,
    secret: &[u8],
    code: &str,
    setup: Option<i64>,
    now: i64,
) -> Result<(), Attempt> {
    let (n, secret_owned, code_owned) = (name.to_owned(), secret.to_vec(), code.to_owned());
    let outcome = on_store(st, move |db| {
        store::put_regulator_failure(db, &n, now)?;
        // Counting this attempt: more than the limit means it was locked before it.
        let recent = store::regulator_failures_since(db, &n, now - LOCKOUT_WINDOW_SECS)?;
        if recent > LOCKOUT_ATTEMPTS {
            let times = store::regulator_failure_times(db, &n, LOCKOUT_ATTEMPTS)?;
            return Ok(Err((
                None,
                lock_end(&times).unwrap_or(now + LOCKOUT_WINDOW_SECS),
                recent,
            )));
        }
        let why = match alpr_runtime::codes::check(&secret_owned, &code_owned, now) {
            Ok(step) => {
                let spent = match setup {
                    Some(generation) => {
                        store::confirm_regulator_code(db, &n, generation, &secret_owned, step, now)?
                    }
                    None => store::use_regulator_step(db, &n, step)?,
                };
                if spent {
                    store::clear_regulator_failures(db, &n)?;
                    return Ok(Ok(()));
                }
                if setup.is_some() {
                    "the code was set up, replaced or removed meanwhile".to_owned()
                } else {
                    "this code was already used; wait for the next one".to_owned()
                }
            }
            Err(why) => why,
        };
        let times = store::regulator_failure_times(db, &n, LOCKOUT_ATTEMPTS)?;
        Ok(Err((Some(why), lock_end(&times).unwrap_or(0), recent)))
    })
    .await
    .map_err(Attempt::Stopped)?;
    let (why, until, recent) = match outcome {
        Ok(()) => return Ok(()),
        Err(e) => e,
    };
    let Some(why) = why else {
        return Err(Attempt::Stopped(
            refuse_locked(st, name, until, now, "sign-in").await,
        ));
    };
    let mut rows = vec![row(
        now,
        Decision::Refused,
        Some(name),
        Some("SIGN_IN_FAILED"),
        why.clone(),
    )];
    if until > now {
        let text = format!(
            "regulator page sign-in of {name} locked until {} after {LOCKOUT_ATTEMPTS} failed codes within {} minutes",
            alpr_pki::fmt_time(until),
            LOCKOUT_WINDOW_SECS / 60
        );
        tracing::error!(regulator = %name, "ALERT: {text}");
        rows.push(row(now, Decision::LockedOut, Some(name), None, text));
        log_refusal(st, rows).await;
        return Err(Attempt::Stopped(locked_page(name, until)));
    }
    log_refusal(st, rows).await;
    Err(Attempt::Failed {
        why,
        left: LOCKOUT_ATTEMPTS.saturating_sub(recent),
    })
}

/// The page that shows a regulator whose key proved itself a fresh secret (logged: the
/// secret was shown to whoever holds that key), and asks for its first code.
async fn setup_page(st: &PageState, setup: Setup, now: i64, error: Option<&str>) -> Response {
    let Some(token) = random_hex() else {
        return signin_page(
            StatusCode::SERVICE_UNAVAILABLE,
            Some("No randomness for a setup page; try again."),
        );
    };
    let name = regulator_name(&setup.id).unwrap_or_default();
    if error.is_none()
        && let Err(e) = st
            .broker
            .record(vec![row(
                now,
                Decision::Logged,
                Some(&name),
                None,
                "a new code secret shown for setup (kept only once its first code is typed)".into(),
            )])
            .await
    {
        tracing::error!(error = %e, "ALERT: could not log a regulator page code setup");
        return signin_page(
            StatusCode::SERVICE_UNAVAILABLE,
            Some("The setup could not be recorded; nothing was shown. Try again."),
        );
    }
    let secret = setup.secret.clone();
    {
        let mut m = st.setups.lock().unwrap_or_else(|p| p.into_inner());
        m.retain(|_, s| s.expires > now);
        m.insert(token.clone(), setup);
    }
    let uri = alpr_runtime::codes::otpauth_uri("ALPR registry", &name, &secret);
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
                p { "Secret: " code #totp-secret { (alpr_runtime::codes::base32(&secret)) } }
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
    let form = match read_fields(&st, &headers, body).await {
        Ok(f) => f,
        Err(r) => return r,
    };
    let key = form.get("setup").cloned().unwrap_or_default();
    let code = form
        .get("code")
        .map(|c| c.trim().to_owned())
        .unwrap_or_default();
    let taken = st
        .setups
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .remove(&key)
        .filter(|s| s.expires > now);
    let Some(setup) = taken else {
        log_refusal(
            &st,
            vec![row(
                now,
                Decision::Refused,
                None,
                Some("SETUP_EXPIRED"),
                "a code setup page that expired, was used already or is unknown here".into(),
            )],
        )
        .await;
        return signin_page(
            StatusCode::UNAUTHORIZED,
            Some("This setup page expired or was used already; sign in again with a new token."),
        );
    };
    let name = regulator_name(&setup.id).unwrap_or_default();
    let (enrolled, locked) = match enrollment(&st, &name, now).await {
        Ok(f) => f,
        Err(r) => return r,
    };
    if let Some(until) = locked {
        return refuse_locked(&st, &name, until, now, "code setup").await;
    }
    let current = enrolled
        .as_ref()
        .is_some_and(|e| e.generation == setup.generation && e.confirmed_at.is_none());
    if !current {
        let msg = format!(
            "The sign-in code of {name} was set up, replaced or removed since this page was shown; nothing was signed in. Sign in again with a new token."
        );
        return refuse(
            &st,
            now,
            Some(&name),
            "SETUP_STALE",
            StatusCode::CONFLICT,
            &msg,
        )
        .await;
    }
    if code.is_empty() {
        return setup_page(
            &st,
            setup,
            now,
            Some("Type the 6-digit code your app shows (this did not count as a failed code)."),
        )
        .await;
    }
    let secret = setup.secret.clone();
    match attempt(&st, &name, &secret, &code, Some(setup.generation), now).await {
        Ok(()) => {
            start_session(
                &st,
                setup.id,
                setup.chain,
                now,
                "code set up; signed in (key token and code)",
            )
            .await
        }
        Err(Attempt::Failed { why, left }) => {
            let msg = format!(
                "That code is not right ({why}); type the code your app shows now. {left} more failed code(s) lock sign-in for {} minutes.",
                LOCKOUT_WINDOW_SECS / 60
            );
            setup_page(&st, setup, now, Some(&msg)).await
        }
        Err(Attempt::Stopped(r)) => r,
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
