//! Signing in and sessions: a signature by the person's browser key over a fresh
//! challenge, then an RFC 6238 code (set up at the first sign-in after approval); the
//! lockout; sessions with an idle lock; form tokens; the `__Host-` session cookie.

use std::collections::HashMap;
use std::sync::Arc;

use alpr_pki::{CertificateDer, Role, VerifiedIdentity};
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use maud::{Markup, PreEscaped, html};

use super::pages::{self, Page, layout, message, respond};
use super::state::{Console, Session, Ticket, random_token};
use crate::Error;
use crate::audit::{AuditEntry, Decision, Event};
use crate::node::Node;
use crate::store;

/// The session cookie (`__Host-`: Secure, path `/`, no domain).
pub const COOKIE: &str = "__Host-alpr_console";
/// Largest form body accepted, bytes.
pub const MAX_FORM: usize = 64 * 1024;
/// How long a sign-in challenge or code set-up stays usable, seconds.
const CHALLENGE_SECS: i64 = 300;
/// Most sessions, challenges or prepared searches kept at once.
const MAX_ENTRIES: usize = 10_000;

/// Issue a fresh ticket for `user` in `tickets`.
fn issue(
    c: &Console,
    tickets: &std::sync::Mutex<HashMap<String, Ticket>>,
    user: &str,
    now: i64,
) -> Result<String, Response> {
    let ori = c.node.ori();
    let token = random_token(32).map_err(|e| pages::internal(ori, e))?;
    let mut m = tickets.lock().unwrap_or_else(|p| p.into_inner());
    m.retain(|_, t| t.expires > now);
    if m.len() >= MAX_ENTRIES {
        return Err(pages::internal(ori, "too many sign-ins in progress"));
    }
    m.insert(
        token.clone(),
        Ticket {
            user: user.to_owned(),
            expires: now + CHALLENGE_SECS,
        },
    );
    Ok(token)
}

/// What the browser signs to enroll its key.
pub fn enroll_message(ori: &str, user: &str, code: &str) -> Vec<u8> {
    format!("alpr-console/v1 enroll\0{ori}\0{user}\0{code}").into_bytes()
}

/// What the browser signs to sign in.
pub fn signin_message(ori: &str, user: &str, challenge: &str) -> Vec<u8> {
    format!("alpr-console/v1 sign-in\0{ori}\0{user}\0{challenge}").into_bytes()
}

/// The DER prefix of every P-256 SubjectPublicKeyInfo (the 65-byte point follows).
const P256_SPKI_PREFIX: [u8; 26] = [
    0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a,
    0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
];

/// Whether `spki` is a P-256 public key.
pub fn is_p256_spki(spki: &[u8]) -> bool {
    spki.len() == P256_SPKI_PREFIX.len() + 65 && spki.starts_with(&P256_SPKI_PREFIX)
}

/// Verify a WebCrypto ECDSA P-256 / SHA-256 signature (r ‖ s, 64 bytes) by `spki`.
pub fn browser_signature_ok(spki: &[u8], msg: &[u8], sig: &[u8]) -> bool {
    if !is_p256_spki(spki) {
        return false;
    }
    ring::signature::UnparsedPublicKey::new(
        &ring::signature::ECDSA_P256_SHA256_FIXED,
        &spki[P256_SPKI_PREFIX.len()..],
    )
    .verify(msg, sig)
    .is_ok()
}

pub use alpr_pki::p1363_to_der;

/// A parsed form.
#[derive(Debug, Default)]
pub struct Form(HashMap<String, Vec<String>>);

impl Form {
    /// Parse an `application/x-www-form-urlencoded` body.
    pub fn parse(bytes: &[u8]) -> Self {
        let mut m: HashMap<String, Vec<String>> = HashMap::new();
        for (k, v) in form_urlencoded::parse(bytes) {
            m.entry(k.into_owned()).or_default().push(v.into_owned());
        }
        Form(m)
    }

    /// The first value of `k` (empty when absent).
    pub fn get(&self, k: &str) -> &str {
        self.0
            .get(k)
            .and_then(|v| v.first())
            .map(String::as_str)
            .unwrap_or("")
    }

    /// Every value of `k`.
    pub fn all(&self, k: &str) -> &[String] {
        self.0.get(k).map(Vec::as_slice).unwrap_or(&[])
    }
}

/// Refuse anyone but an admin: the page of `title` says "Only admins {what}.".
pub fn admins_only(c: &Console, s: &Session, title: &str, what: &str) -> Result<(), Response> {
    if s.role == Role::Admin {
        return Ok(());
    }
    Err(message(
        c.node.ori(),
        StatusCode::FORBIDDEN,
        title,
        &format!("Only admins {what}."),
        Some(s),
    ))
}

/// Read a form body (at most [`MAX_FORM`] bytes).
pub async fn read_form(c: &Console, body: Body) -> Result<Form, Response> {
    read_form_up_to(c, body, MAX_FORM).await
}

/// Read a form body of at most `limit` bytes (a page that takes a file's text, such as a
/// hot list, allows more than [`MAX_FORM`]).
pub async fn read_form_up_to(c: &Console, body: Body, limit: usize) -> Result<Form, Response> {
    let bytes = axum::body::to_bytes(body, limit).await.map_err(|_| {
        message(
            c.node.ori(),
            StatusCode::PAYLOAD_TOO_LARGE,
            "Form too large",
            &format!(
                "This form holds more than {} KiB; nothing was done. Shorten the longest field and send it again.",
                limit / 1024
            ),
            None,
        )
    })?;
    Ok(Form::parse(&bytes))
}

/// A request that did not come from a page of this console (another site's form).
fn cross_site(headers: &HeaderMap) -> bool {
    matches!(
        headers.get("sec-fetch-site").and_then(|v| v.to_str().ok()),
        Some("cross-site" | "same-site")
    )
}

fn cookie_token(headers: &HeaderMap) -> Option<String> {
    alpr_runtime::web::cookie(headers, COOKIE)
}

/// Run `f` on the node off the async workers (database and signature work).
pub async fn on_node<T: Send + 'static>(
    c: &Arc<Console>,
    f: impl FnOnce(&Node) -> Result<T, Error> + Send + 'static,
) -> Result<T, Error> {
    let node = c.node.clone();
    tokio::task::spawn_blocking(move || f(&node)).await?
}

/// Log `entries` (the node's audit log).
pub async fn log(c: &Arc<Console>, entries: Vec<AuditEntry>) -> Result<(), Response> {
    let ori = c.node.ori().to_owned();
    on_node(c, move |n| n.audit(&entries))
        .await
        .map_err(|e| pages::internal(&ori, e))
}

/// A console entry about `user`.
pub fn entry(now: i64, event: Event, decision: Decision, user: &str, detail: String) -> AuditEntry {
    AuditEntry {
        requester_user: Some(user.to_owned()),
        detail: Some(detail),
        ..AuditEntry::new(now, event, decision)
    }
}

/// `secs` as people say it: "30 minutes", "5 seconds".
fn span(secs: i64) -> String {
    match secs {
        s if s >= 120 && s % 60 == 0 => format!("{} minutes", s / 60),
        1 => "1 second".into(),
        s => format!("{s} seconds"),
    }
}

/// The signed-in person of this request; otherwise a redirect to sign in (or the page
/// saying the session locked while idle, logged).
pub async fn session(c: &Arc<Console>, headers: &HeaderMap) -> Result<Session, Response> {
    let now = alpr_pki::now_unix();
    let Some(token) = cookie_token(headers) else {
        return Err(Redirect::to("/signin").into_response());
    };
    let idle = c.cfg.idle_lock_secs as i64;
    let found = {
        let mut m = c.sessions.lock().unwrap_or_else(|p| p.into_inner());
        match m.get_mut(&token) {
            Some(s) if now - s.last_seen <= idle => {
                s.last_seen = now;
                Ok(s.clone())
            }
            Some(_) => Err(m.remove(&token)),
            None => Err(None),
        }
    };
    match found {
        Ok(s) => Ok(s),
        Err(Some(s)) => {
            log(
                c,
                vec![entry(
                    now,
                    Event::ConsoleSignIn,
                    Decision::Withheld,
                    &s.user,
                    format!("session locked after {} without activity", span(idle)),
                )],
            )
            .await?;
            Err(with_cleared_cookie(message(
                c.node.ori(),
                StatusCode::UNAUTHORIZED,
                "Session locked",
                &format!(
                    "Your session locked after {} without activity. Sign in again.",
                    span(idle)
                ),
                None,
            )))
        }
        Err(None) => Err(Redirect::to("/signin").into_response()),
    }
}

/// [`session`] for a state-changing form: its token must be this session's (a form from
/// another site, or from an earlier session, does nothing; the refusal is logged).
pub async fn session_post(
    c: &Arc<Console>,
    headers: &HeaderMap,
    form: &Form,
) -> Result<Session, Response> {
    let s = session(c, headers).await?;
    let sent = form.get("csrf");
    let good = !cross_site(headers)
        && sent.len() == s.csrf.len()
        && sent
            .bytes()
            .zip(s.csrf.bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0;
    if !good {
        let now = alpr_pki::now_unix();
        let mut e = entry(
            now,
            Event::ConsoleSignIn,
            Decision::Refused,
            &s.user,
            "a form without this session's token (from another site or an older page) was refused"
                .into(),
        );
        e.reason_code = Some("FORM_TOKEN".into());
        log(c, vec![e]).await?;
        return Err(message(
            c.node.ori(),
            StatusCode::FORBIDDEN,
            "Form refused",
            "This form was not sent from a page of your current session (an old tab, or another site). Nothing was done; open the page again and resend it.",
            Some(&s),
        ));
    }
    Ok(s)
}

/// The verified identity of a session's certificate now (expired or revoked: refused).
pub fn identity(c: &Console, s: &Session) -> Result<VerifiedIdentity, Response> {
    c.node
        .trust()
        .verify(&s.chain, alpr_pki::now_unix())
        .map_err(|e| {
            message(
                c.node.ori(),
                StatusCode::FORBIDDEN,
                "Certificate not valid",
                &format!("Your certificate is no longer valid ({e}). Ask your supervisor to approve a new enrollment."),
                Some(s),
            )
        })
}

fn with_cleared_cookie(mut r: Response) -> Response {
    r.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_static(
            "__Host-alpr_console=; Path=/; Secure; HttpOnly; SameSite=Strict; Max-Age=0",
        ),
    );
    r
}

/// Carry out `req` through the node's logged admin path as the signed-in person (the same
/// role checks and audit entries as `alpr-node admin`), and say what came of it.
pub async fn admin_action(
    c: &Arc<Console>,
    s: &Session,
    req: alpr_proto::pb::AdminRequest,
    back: &str,
) -> Page {
    let id = identity(c, s)?;
    let ori = c.node.ori().to_owned();
    let done = on_node(c, move |n| Ok(n.admin(&id, req)))
        .await
        .map_err(|e| pages::internal(&ori, e))?;
    let (status, title, text) = match done {
        Ok(m) => (StatusCode::OK, "Done", m),
        Err(e) => (StatusCode::FORBIDDEN, "Not done", e.to_string()),
    };
    Ok(respond(
        status,
        layout(
            &ori,
            title,
            Some(s),
            html! {
                p class=(if status.is_success() { "notice" } else { "error" }) role="alert" { (text) }
                p { a href=(back) { "Back" } }
            },
        ),
    ))
}

/// `/`: the page of the signed-in person's role, or sign-in.
pub async fn home(State(c): State<Arc<Console>>, headers: HeaderMap) -> Response {
    match session(&c, &headers).await {
        Ok(s) => Redirect::to(match s.role {
            Role::Investigator => "/search",
            Role::Supervisor => "/supervisor",
            Role::Admin => "/admin",
            _ => "/audit",
        })
        .into_response(),
        Err(r) => r,
    }
}

/// `GET /signin`.
pub async fn signin_form(State(c): State<Arc<Console>>) -> Response {
    respond(
        StatusCode::OK,
        layout(
            c.node.ori(),
            "Sign in",
            None,
            html! {
                p { "Sign in on the browser you enrolled: it holds your key. New here? "
                    a href="/enroll" { "Enroll this browser" } " with the code your administrator gave you." }
                form method="post" action="/signin/start" {
                    label for="user" { "User ID" }
                    input #user name="user" required autocomplete="username" autofocus;
                    button type="submit" { "Continue" }
                }
            },
        ),
    )
}

/// `POST /signin/start`: a challenge for the browser key.
pub async fn signin_start(State(c): State<Arc<Console>>, headers: HeaderMap, body: Body) -> Page {
    let ori = c.node.ori().to_owned();
    let form = read_form(&c, body).await?;
    let user = form.get("user").trim().to_owned();
    if cross_site(&headers) || alpr_pki::claims::validate_user(&user).is_err() {
        return Err(message(
            &ori,
            StatusCode::BAD_REQUEST,
            "Sign in",
            "That is not a user ID (letters, digits, '.', '_' and '-').",
            None,
        ));
    }
    let now = alpr_pki::now_unix();
    let challenge = issue(&c, &c.challenges, &user, now)?;
    Ok(respond(
        StatusCode::OK,
        layout(
            &ori,
            "Sign in",
            None,
            html! {
                p { "Signing in as " strong { (user) } ". Your browser signs a fresh challenge with your key; then type the code your authenticator app shows." }
                p #key-status role="status" {}
                form #signin-form method="post" action="/signin/finish" data-user=(user) data-challenge=(challenge) {
                    input type="hidden" name="user" value=(user);
                    input type="hidden" name="challenge" value=(challenge);
                    input type="hidden" name="sig" value="";
                    label for="code" { "6-digit code (leave empty at your first sign-in)" }
                    input #code name="code" inputmode="numeric" autocomplete="one-time-code" pattern="[0-9]{6}" maxlength="6";
                    button type="submit" { "Sign in" }
                }
            },
        ),
    ))
}

/// Count a failed sign-in: logged, and at the limit the lockout is logged and alerted.
async fn failed(c: &Arc<Console>, user: &str, why: String) -> Response {
    let now = alpr_pki::now_unix();
    let ori = c.node.ori().to_owned();
    let attempts = c.cfg.lockout_attempts;
    let window = c.cfg.lockout_window_secs as i64;
    let u = user.to_owned();
    let detail = why.clone();
    let counted = on_node(c, move |n| {
        let db = n.db();
        store::console::fail(&db, &u, now)?;
        let (count, _) = store::console::failures_since(&db, &u, now - window)?;
        drop(db);
        let mut e = entry(now, Event::ConsoleSignIn, Decision::Refused, &u, detail);
        e.reason_code = Some("SIGN_IN_FAILED".into());
        let mut entries = vec![e];
        if count == attempts {
            let text = format!(
                "console sign-in of {u} locked for {} minutes after {attempts} failed attempts",
                window / 60
            );
            entries.push(entry(
                now,
                Event::ConsoleSignIn,
                Decision::LockedOut,
                &u,
                text.clone(),
            ));
            entries.push(entry(now, Event::Alert, Decision::Alert, &u, text));
        }
        n.audit(&entries)?;
        Ok(count)
    })
    .await;
    match counted {
        Ok(n) if n >= attempts => message(
            &ori,
            StatusCode::FORBIDDEN,
            "Sign-in locked",
            &format!(
                "{why}. Sign-in for {user} is now locked for {} minutes after {attempts} failed attempts; your administrators were alerted.",
                window / 60
            ),
            None,
        ),
        Ok(_) => message(
            &ori,
            StatusCode::UNAUTHORIZED,
            "Sign-in failed",
            &format!("{why}. Nothing was signed in; try again."),
            None,
        ),
        Err(e) => pages::internal(&ori, e),
    }
}

/// What sign-in found about a person's key.
struct KeyState {
    key: store::console::ConsoleKey,
    secret: Vec<u8>,
}

/// `POST /signin/finish`: check the key's signature and the code.
pub async fn signin_finish(State(c): State<Arc<Console>>, headers: HeaderMap, body: Body) -> Page {
    let ori = c.node.ori().to_owned();
    let form = read_form(&c, body).await?;
    if cross_site(&headers) {
        return Err(message(
            &ori,
            StatusCode::FORBIDDEN,
            "Sign in",
            "Sign in from this console's own page.",
            None,
        ));
    }
    let now = alpr_pki::now_unix();
    let user = form.get("user").to_owned();
    let challenge = form.get("challenge").to_owned();
    let fresh = {
        let mut m = c.challenges.lock().unwrap_or_else(|p| p.into_inner());
        m.remove(&challenge)
            .is_some_and(|ch| ch.user == user && ch.expires > now)
    };
    if !fresh {
        return Err(message(
            &ori,
            StatusCode::UNAUTHORIZED,
            "Sign in",
            "This sign-in page expired or was already used. Start again.",
            None,
        ));
    }
    let u = user.clone();
    let state = on_node(&c, move |n| {
        let db = n.db();
        let locked = locked_until(n, &db, &u, now)?;
        let key = store::console::get_key(&db, &u)?;
        let secret = store::console::totp_secret(&db, &u)?;
        Ok((locked, key, secret))
    })
    .await
    .map_err(|e| pages::internal(&ori, e))?;
    let (locked, key, secret) = state;
    if let Some(until) = locked {
        let mut e = entry(
            now,
            Event::ConsoleSignIn,
            Decision::LockedOut,
            &user,
            format!("sign-in refused: locked until {}", pages::when(until)),
        );
        e.reason_code = Some("LOCKED_OUT".into());
        log(&c, vec![e]).await?;
        return Err(message(
            &ori,
            StatusCode::FORBIDDEN,
            "Sign-in locked",
            &format!(
                "Sign-in for {user} is locked until {} after repeated failed attempts.",
                pages::when(until)
            ),
            None,
        ));
    }
    let ks = match (key, secret) {
        (Some(key), Some(secret)) if key.cert_pem.is_some() => KeyState { key, secret },
        (Some(_), _) => {
            return Err(failed(
                &c,
                &user,
                "this browser key has not been approved by a supervisor yet".into(),
            )
            .await);
        }
        (None, _) => {
            return Err(failed(&c, &user, format!("{user} has no enrolled browser key")).await);
        }
    };
    let sig = hex::decode(form.get("sig")).unwrap_or_default();
    if !browser_signature_ok(&ks.key.spki, &signin_message(&ori, &user, &challenge), &sig) {
        return Err(failed(
            &c,
            &user,
            "the browser's key signature does not verify (a different browser or key?)".into(),
        )
        .await);
    }
    let chain = chain_of(ks.key.cert_pem.as_deref().unwrap_or_default());
    let id = match c.node.trust().verify(&chain, now) {
        Ok(id) => id,
        Err(e) => {
            return Err(failed(
                &c,
                &user,
                format!("the certificate of this key is not valid ({e})"),
            )
            .await);
        }
    };
    let u = user.clone();
    let account = on_node(&c, move |n| store::accounts::get(&n.db(), &u))
        .await
        .map_err(|e| pages::internal(&ori, e))?;
    match account {
        Some(a) if a.disabled_at.is_none() => {}
        _ => return Err(failed(&c, &user, format!("account {user} is disabled or gone")).await),
    }
    if ks.key.totp_confirmed_at.is_none() {
        return setup_page(&c, &user, &ks.secret, None).await;
    }
    if let Err(why) = check_code(&c, &user, &ks.secret, form.get("code"), now) {
        return Err(failed(&c, &user, why).await);
    }
    start_session(
        &c,
        &user,
        id.role,
        chain,
        now,
        "signed in (browser key and code)",
    )
    .await
}

/// Whether `user`'s sign-in (and enrollment) is locked at `now`: until when.
pub(super) fn locked_until(
    n: &Node,
    db: &store::Db,
    user: &str,
    now: i64,
) -> Result<Option<i64>, Error> {
    let Some(cfg) = n.cfg.console.as_ref() else {
        return Ok(None);
    };
    let window = cfg.lockout_window_secs as i64;
    let (count, last) = store::console::failures_since(db, user, now - window)?;
    Ok((count >= cfg.lockout_attempts).then(|| last.unwrap_or(now) + window))
}

/// The certificates of a PEM chain.
pub fn chain_of(pem: &str) -> Vec<CertificateDer<'static>> {
    rustls_pemfile_chain(pem)
}

fn rustls_pemfile_chain(pem: &str) -> Vec<CertificateDer<'static>> {
    use rustls::pki_types::pem::PemObject;
    CertificateDer::pem_slice_iter(pem.as_bytes())
        .filter_map(Result::ok)
        .collect()
}

/// Check a code: right for now (one step either side) and not used before.
fn check_code(c: &Console, user: &str, secret: &[u8], code: &str, now: i64) -> Result<(), String> {
    let step = alpr_runtime::codes::check(secret, code, now)?;
    let mut used = c.used_steps.lock().unwrap_or_else(|p| p.into_inner());
    if used.get(user).is_some_and(|&s| s >= step) {
        return Err("this code was already used; wait for the next one".into());
    }
    used.insert(user.to_owned(), step);
    Ok(())
}

/// The page that shows a newly approved person their code secret, once their key proved
/// itself, and asks for the first code.
async fn setup_page(c: &Arc<Console>, user: &str, secret: &[u8], error: Option<&str>) -> Page {
    let ori = c.node.ori().to_owned();
    let now = alpr_pki::now_unix();
    let token = issue(c, &c.setups, user, now)?;
    let b32 = alpr_runtime::codes::base32(secret);
    let uri = alpr_runtime::codes::otpauth_uri(&format!("ALPR {ori}"), user, secret);
    Ok(respond(
        if error.is_some() {
            StatusCode::UNAUTHORIZED
        } else {
            StatusCode::OK
        },
        layout(
            &ori,
            "Set up your sign-in code",
            None,
            html! {
                @if let Some(e) = error { p.error role="alert" { (e) } }
                p { "Your key is approved. Add this account to your authenticator app (scan the code, or type the secret), then type the 6-digit code it shows. The secret is shown only now." }
                figure { (qr_svg(&uri)) figcaption { "QR code of the secret" } }
                p { "Secret: " code #totp-secret { (b32) } }
                form method="post" action="/signin/setup" {
                    input type="hidden" name="token" value=(token);
                    label for="code" { "6-digit code" }
                    input #code name="code" inputmode="numeric" autocomplete="one-time-code" pattern="[0-9]{6}" maxlength="6" required autofocus;
                    button type="submit" { "Confirm and sign in" }
                }
            },
        ),
    ))
}

/// A QR code as SVG (server-rendered; no script).
fn qr_svg(text: &str) -> Markup {
    match alpr_runtime::codes::qr_svg(text) {
        // Numbers and fixed attributes only (see `alpr_runtime::codes::qr_svg`).
        Some(svg) => PreEscaped(svg),
        None => html! { p { "(no QR code: type the secret)" } },
    }
}

/// `POST /signin/setup`: the first code from the secret just shown.
pub async fn signin_setup(State(c): State<Arc<Console>>, headers: HeaderMap, body: Body) -> Page {
    let ori = c.node.ori().to_owned();
    let form = read_form(&c, body).await?;
    let now = alpr_pki::now_unix();
    let user = {
        let m = c.setups.lock().unwrap_or_else(|p| p.into_inner());
        m.get(form.get("token"))
            .filter(|s| s.expires > now && !cross_site(&headers))
            .map(|s| s.user.clone())
    };
    let Some(user) = user else {
        return Err(message(
            &ori,
            StatusCode::UNAUTHORIZED,
            "Set up your code",
            "This page expired. Sign in again to see your secret.",
            None,
        ));
    };
    let u = user.clone();
    let (key, secret, locked) = on_node(&c, move |n| {
        let db = n.db();
        Ok((
            store::console::get_key(&db, &u)?,
            store::console::totp_secret(&db, &u)?,
            locked_until(n, &db, &u, now)?,
        ))
    })
    .await
    .map_err(|e| pages::internal(&ori, e))?;
    let (Some(key), Some(secret)) = (key, secret) else {
        return Err(message(
            &ori,
            StatusCode::UNAUTHORIZED,
            "Set up your code",
            "Your enrollment changed; sign in again.",
            None,
        ));
    };
    if locked.is_some() {
        return Err(message(
            &ori,
            StatusCode::FORBIDDEN,
            "Sign-in locked",
            "Sign-in is locked after repeated failed attempts.",
            None,
        ));
    }
    if let Err(why) = check_code(&c, &user, &secret, form.get("code"), now) {
        let r = failed(&c, &user, why.clone()).await;
        if r.status() == StatusCode::FORBIDDEN {
            return Err(r);
        }
        return Err(setup_page(&c, &user, &secret, Some(&format!("{why}; try again."))).await?);
    }
    c.setups
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .remove(form.get("token"));
    let chain = chain_of(key.cert_pem.as_deref().unwrap_or_default());
    let id = c.node.trust().verify(&chain, now).map_err(|e| {
        message(
            &ori,
            StatusCode::FORBIDDEN,
            "Certificate not valid",
            &e.to_string(),
            None,
        )
    })?;
    let u = user.clone();
    on_node(&c, move |n| store::console::confirm_totp(&n.db(), &u, now))
        .await
        .map_err(|e| pages::internal(&ori, e))?;
    start_session(
        &c,
        &user,
        id.role,
        chain,
        now,
        "signed in for the first time: code set up (browser key and code)",
    )
    .await
}

async fn start_session(
    c: &Arc<Console>,
    user: &str,
    role: Role,
    chain: Vec<CertificateDer<'static>>,
    now: i64,
    what: &str,
) -> Page {
    let ori = c.node.ori().to_owned();
    let token = random_token(32).map_err(|e| pages::internal(&ori, e))?;
    let csrf = random_token(32).map_err(|e| pages::internal(&ori, e))?;
    let u = user.to_owned();
    let window = c.cfg.lockout_window_secs as i64;
    on_node(c, move |n| {
        store::console::clear_failures(&n.db(), &u, now - window)
    })
    .await
    .map_err(|e| pages::internal(&ori, e))?;
    {
        let idle = c.cfg.idle_lock_secs as i64;
        let mut m = c.sessions.lock().unwrap_or_else(|p| p.into_inner());
        m.retain(|_, s| now - s.last_seen <= idle);
        if m.len() >= MAX_ENTRIES {
            return Err(pages::internal(&ori, "too many sessions"));
        }
        m.insert(
            token.clone(),
            Session {
                user: user.to_owned(),
                role,
                csrf,
                chain,
                last_seen: now,
            },
        );
    }
    log(
        c,
        vec![entry(
            now,
            Event::ConsoleSignIn,
            Decision::Ok,
            user,
            what.into(),
        )],
    )
    .await?;
    let mut r = Redirect::to("/").into_response();
    let cookie = format!("{COOKIE}={token}; Path=/; Secure; HttpOnly; SameSite=Strict");
    r.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_str(&cookie).map_err(|e| pages::internal(&ori, e))?,
    );
    Ok(r)
}

/// `POST /signout`.
pub async fn signout(State(c): State<Arc<Console>>, headers: HeaderMap, body: Body) -> Page {
    let form = read_form(&c, body).await?;
    let s = session_post(&c, &headers, &form).await?;
    if let Some(t) = cookie_token(&headers) {
        c.sessions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&t);
    }
    log(
        &c,
        vec![entry(
            alpr_pki::now_unix(),
            Event::ConsoleSignIn,
            Decision::Ok,
            &s.user,
            "signed out".into(),
        )],
    )
    .await?;
    Ok(with_cleared_cookie(Redirect::to("/signin").into_response()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_typed_in_local_time_arrive_in_utc_and_without_the_script_are_read_as_utc() {
        use super::super::pages::{datetime_again, form_datetime};
        // The script's twin (the browser in UTC-8: 13:16 local is 21:16 UTC) wins.
        let f = Form::parse(b"from=2026-12-06T13%3A16&from_utc=2026-12-06T21%3A16%3A00.000Z");
        assert_eq!(form_datetime(&f, "from", "From"), Ok(1_796_591_760));
        assert_eq!(
            datetime_again(&f, "from", 0),
            "2026-12-06T21:16",
            "shown again in UTC"
        );
        // No script: the field is UTC, as its label says.
        let f = Form::parse(b"from=2026-12-06T21%3A16");
        assert_eq!(form_datetime(&f, "from", "From"), Ok(1_796_591_760));
        // Nothing sent: the default; garbage: a clear error naming the field.
        assert_eq!(
            datetime_again(&Form::parse(b""), "from", 1_796_591_760),
            "2026-12-06T21:16"
        );
        let f = Form::parse(b"from=x&from_utc=yesterday");
        assert_eq!(
            form_datetime(&f, "from", "From"),
            Err("From: \"yesterday\" is not a date and time".into())
        );
        assert_eq!(datetime_again(&f, "from", 0), "x", "what was typed is kept");
        assert!(form_datetime(&Form::parse(b"from=soon"), "from", "From").is_err());
    }

    #[test]
    fn p1363_signatures_become_der_that_ring_verifies() {
        use ring::signature::{
            ECDSA_P256_SHA256_ASN1, ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair,
        };
        let rng = ring::rand::SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
        let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng)
            .unwrap();
        let mut spki = P256_SPKI_PREFIX.to_vec();
        spki.extend_from_slice(key.public_key().as_ref());
        for i in 0..50u8 {
            let msg = [i; 40];
            let sig = key.sign(&rng, &msg).unwrap();
            assert!(browser_signature_ok(&spki, &msg, sig.as_ref()));
            assert!(!browser_signature_ok(&spki, &[i ^ 1; 40], sig.as_ref()));
            let der = p1363_to_der(sig.as_ref()).unwrap();
            ring::signature::UnparsedPublicKey::new(
                &ECDSA_P256_SHA256_ASN1,
                key.public_key().as_ref(),
            )
            .verify(&msg, &der)
            .unwrap();
        }
        assert!(p1363_to_der(&[0; 63]).is_none());
        assert!(!is_p256_spki(&spki[1..]));
    }
}
