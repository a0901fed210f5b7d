//! Enrollment: an admin issues a one-time code for an account (`user invite`); the
//! person's browser makes its key and proves it with the code; a supervisor (never the
//! person) approves the key, which issues the person certificate under the agency CA and
//! the code secret shown at the first sign-in.

use std::sync::Arc;

use alpr_pki::issue::LeafSpec;
use alpr_pki::{Role, VerifiedIdentity};
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use maud::html;

use super::auth::{self, Form, entry, log, on_node, read_form};
use super::pages::{self, Page, layout, message, respond};
use super::{Console, random_token};
use crate::Error;
use crate::audit::{Decision, Event};
use crate::node::Node;
use crate::store;

/// How long an enrollment code stays valid, seconds.
pub const INVITE_SECS: i64 = 72 * 3600;

fn code_hash(code: &str) -> Vec<u8> {
    let norm: String = code
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .map(|c| c.to_ascii_uppercase())
        .collect();
    ring::digest::digest(&ring::digest::SHA256, norm.as_bytes())
        .as_ref()
        .to_vec()
}

/// Issue a one-time enrollment code for `user` (by an admin or supervisor of this
/// agency): `(what is logged, the code)`. The code is never logged.
pub fn invite(
    db: &store::Db,
    by: &VerifiedIdentity,
    user: &str,
    now: i64,
) -> Result<(String, String), Error> {
    if !matches!(by.role, Role::Admin | Role::Supervisor) {
        return Err(Error::NotPermitted(
            "only an admin or supervisor issues enrollment codes".into(),
        ));
    }
    let refused = |m: String| -> Error {
        alpr_proto::Error::refused(alpr_proto::RefusalReason::InvalidInput, m).into()
    };
    let a = store::accounts::get(db, user)?.ok_or_else(|| refused(format!("no account {user}")))?;
    if a.disabled_at.is_some() {
        return Err(refused(format!("account {user} is disabled")));
    }
    // 60 bits from an alphabet without look-alikes, in groups of four.
    const ALPHABET: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    let raw = hex::decode(random_token(15)?).map_err(|e| Error::Usage(e.to_string()))?;
    let chars: Vec<char> = raw
        .iter()
        .take(12)
        .map(|b| ALPHABET[(*b as usize) % ALPHABET.len()] as char)
        .collect();
    let code = chars
        .chunks(4)
        .map(|c| c.iter().collect::<String>())
        .collect::<Vec<_>>()
        .join("-");
    let expires = now + INVITE_SECS;
    store::console::invite(db, user, &code_hash(&code), expires, &by.describe())?;
    Ok((
        format!(
            "issued a console enrollment code for {user} (one use, valid until {})",
            alpr_pki::fmt_time(expires)
        ),
        code,
    ))
}

impl Node {
    /// Approve `user`'s enrolled browser key (by a supervisor of this agency, never the
    /// person): the person certificate for it under the agency CA, the code secret; the
    /// account is approved too if it was not. Returns what was done.
    pub fn approve_console_key(
        &self,
        db: &store::Db,
        by: &VerifiedIdentity,
        user: &str,
        now: i64,
    ) -> Result<String, Error> {
        let deny = |m: String| -> Error {
            alpr_proto::Error::refused(alpr_proto::RefusalReason::InvalidInput, m).into()
        };
        if by.role != Role::Supervisor {
            return Err(Error::NotPermitted(
                "only a supervisor approves browser keys".into(),
            ));
        }
        if by.user.as_deref() == Some(user) {
            return Err(Error::NotPermitted(
                "nobody approves their own browser key".into(),
            ));
        }
        let cfg = self
            .cfg
            .console
            .as_ref()
            .ok_or_else(|| deny("this node has no [console]".into()))?;
        let account =
            store::accounts::get(db, user)?.ok_or_else(|| deny(format!("no account {user}")))?;
        if account.disabled_at.is_some() {
            return Err(deny(format!("account {user} is disabled")));
        }
        let key = store::console::get_key(db, user)?
            .ok_or_else(|| deny(format!("{user} has enrolled no browser key")))?;
        if key.approved_at.is_some() {
            return Err(deny(format!("{user}'s browser key is approved already")));
        }
        let role = match account.role.as_str() {
            "investigator" => Role::Investigator,
            "supervisor" => Role::Supervisor,
            "auditor" => Role::Auditor,
            "admin" => Role::Admin,
            other => return Err(deny(format!("account role {other:?} has no console"))),
        };
        let ca = super::person_ca(self.ori(), cfg)?;
        let spec = LeafSpec {
            role,
            user: Some(user.to_owned()),
            agency: ca.agency()?,
            jurisdiction: None,
            hosts: vec![],
            days: cfg.person_cert_days,
        };
        let issued = alpr_pki::issue::new_leaf_for_key(&ca, &spec, &key.spki)?;
        let secret = hex::decode(random_token(20)?).map_err(|e| Error::Usage(e.to_string()))?;
        let me = by.user.clone().unwrap_or_default();
        store::console::approve_key(db, user, &me, now, &issued.chain_pem, &secret)?;
        let mut done = format!(
            "approved {user}'s browser key: {role} certificate valid {} days",
            cfg.person_cert_days
        );
        if account.approved_at.is_none() {
            store::accounts::approve(db, user, &me, now)?;
            done.push_str(", account approved");
        }
        Ok(done)
    }
}

/// `GET /enroll`.
pub async fn form(State(c): State<Arc<Console>>) -> Response {
    enroll_page(&c, StatusCode::OK, None, "")
}

fn enroll_page(c: &Console, status: StatusCode, error: Option<&str>, user: &str) -> Response {
    respond(
        status,
        layout(
            c.node.ori(),
            "Enroll this browser",
            None,
            html! {
                @if let Some(e) = error { p.error role="alert" { (e) } }
                p { "Your browser makes a key that never leaves it and signs your searches. Enroll on the computer you will search from, with the one-time code your administrator gave you. A supervisor then approves the key." }
                p #key-status role="status" {}
                form #enroll-form method="post" action="/enroll" {
                    label for="user" { "User ID" }
                    input #user name="user" required autocomplete="username" value=(user);
                    label for="code" { "Enrollment code" }
                    input #code name="code" required autocomplete="off" placeholder="XXXX-XXXX-XXXX";
                    input type="hidden" name="spki" value="";
                    input type="hidden" name="proof" value="";
                    button type="submit" { "Make my key and enroll" }
                }
            },
        ),
    )
}

/// `POST /enroll`: the browser's public key, proved with the code.
pub async fn submit(State(c): State<Arc<Console>>, headers: HeaderMap, body: Body) -> Page {
    let form = read_form(&c, body).await?;
    let ori = c.node.ori().to_owned();
    let user = form.get("user").trim().to_owned();
    let code = form.get("code").trim().to_owned();
    let now = alpr_pki::now_unix();
    if headers
        .get("sec-fetch-site")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v == "cross-site" || v == "same-site")
    {
        return Err(enroll_page(
            &c,
            StatusCode::FORBIDDEN,
            Some("Enroll from this console's own page."),
            "",
        ));
    }
    if alpr_pki::claims::validate_user(&user).is_err() || code.is_empty() {
        return Err(enroll_page(
            &c,
            StatusCode::BAD_REQUEST,
            Some("Type your user ID and the enrollment code."),
            &user,
        ));
    }
    let spki = hex::decode(form.get("spki")).unwrap_or_default();
    let proof = hex::decode(form.get("proof")).unwrap_or_default();
    if spki.is_empty() {
        return Err(enroll_page(
            &c,
            StatusCode::BAD_REQUEST,
            Some(
                "Your browser sent no key: it needs JavaScript and WebCrypto (a current Chromium or Firefox, over HTTPS).",
            ),
            &user,
        ));
    }
    let refuse = |why: String| {
        let mut e = entry(
            now,
            Event::ConsoleEnrollment,
            Decision::Refused,
            &user,
            why.clone(),
        );
        e.reason_code = Some("ENROLLMENT_REFUSED".into());
        e
    };
    if !auth::is_p256_spki(&spki)
        || !auth::browser_signature_ok(&spki, &auth::enroll_message(&ori, &user, &code), &proof)
    {
        log(
            &c,
            vec![refuse("the browser's key proof does not verify".into())],
        )
        .await?;
        return Err(enroll_page(
            &c,
            StatusCode::BAD_REQUEST,
            Some("Your browser's key proof did not verify; reload the page and try again."),
            &user,
        ));
    }
    let (u, hash, key) = (user.clone(), code_hash(&code), spki.clone());
    let window = c.cfg.lockout_window_secs as i64;
    let attempts = c.cfg.lockout_attempts;
    let taken = on_node(&c, move |n| {
        let db = n.db();
        // Codes are guessed no faster than sign-ins: the same lockout counts both.
        let (fails, _) = store::console::failures_since(&db, &u, now - window)?;
        if fails >= attempts {
            return Ok(Err("locked"));
        }
        if !store::console::take_invite(&db, &u, &hash, now)? {
            store::console::fail(&db, &u, now)?;
            return Ok(Err("code"));
        }
        store::console::put_key(&db, &u, &key, now)?;
        Ok(Ok(()))
    })
    .await
    .map_err(|e| pages::internal(&ori, e))?;
    match taken {
        Ok(()) => {
            log(
                &c,
                vec![entry(
                    now,
                    Event::ConsoleEnrollment,
                    Decision::Ok,
                    &user,
                    "browser key enrolled with a one-time code; awaiting a supervisor's approval"
                        .into(),
                )],
            )
            .await?;
            Ok(respond(
                StatusCode::OK,
                layout(
                    &ori,
                    "Enrolled",
                    None,
                    html! {
                        // The script keeps the new key only now that the node took it.
                        p #enrolled.notice role="status" data-user=(user) {
                            "Your browser's key is enrolled. A supervisor must approve it; then sign in on this browser. Your authenticator app is set up at that first sign-in."
                        }
                        p { a href="/signin" { "Sign in" } }
                    },
                ),
            ))
        }
        Err(why) => {
            let text = if why == "locked" {
                "enrollment refused: sign-in and enrollment for this account are locked after repeated failures"
            } else {
                "enrollment refused: the code is wrong, used or expired"
            };
            log(&c, vec![refuse(text.into())]).await?;
            Err(enroll_page(
                &c,
                StatusCode::FORBIDDEN,
                Some(&format!(
                    "{}. Ask your administrator for a new code.",
                    capitalize(text)
                )),
                &user,
            ))
        }
    }
}

fn capitalize(s: &str) -> String {
    let mut c = s.chars();
    c.next()
        .map(|f| f.to_uppercase().collect::<String>() + c.as_str())
        .unwrap_or_default()
}

/// `GET /supervisor`: browser keys awaiting approval.
pub async fn supervisor(State(c): State<Arc<Console>>, headers: HeaderMap) -> Page {
    let s = auth::session(&c, &headers).await?;
    let ori = c.node.ori().to_owned();
    if s.role != Role::Supervisor {
        return Err(message(
            &ori,
            StatusCode::FORBIDDEN,
            "Enrollments",
            "Only supervisors approve enrollments.",
            Some(&s),
        ));
    }
    let pending = on_node(&c, |n| {
        let db = n.db();
        let keys = store::console::pending_keys(&db)?;
        let mut out = Vec::new();
        for k in keys {
            let a = store::accounts::get(&db, &k.user)?;
            out.push((k, a));
        }
        Ok(out)
    })
    .await
    .map_err(|e| pages::internal(&ori, e))?;
    Ok(respond(
        StatusCode::OK,
        layout(
            &ori,
            "Enrollments awaiting approval",
            Some(&s),
            html! {
                @if pending.is_empty() {
                    p { "No browser key is waiting for approval." }
                } @else {
                    table {
                        caption { "Browser keys enrolled with a one-time code" }
                        thead { tr { th scope="col" { "User" } th scope="col" { "Role" } th scope="col" { "Account" } th scope="col" { "Enrolled" } th scope="col" { "Decision" } } }
                        tbody {
                            @for (k, a) in &pending {
                                tr {
                                    td { (k.user) }
                                    td { (a.as_ref().map(|a| a.role.as_str()).unwrap_or("no account")) }
                                    td { (match a { Some(a) if a.disabled_at.is_some() => "disabled", Some(a) if a.approved_at.is_some() => "approved", Some(_) => "awaiting approval", None => "none" }) }
                                    td { (pages::when(k.requested_at)) }
                                    td {
                                        @if k.user == s.user {
                                            "Your own: another supervisor approves it"
                                        } @else {
                                            form method="post" action="/supervisor/approve" {
                                                input type="hidden" name="csrf" value=(s.csrf);
                                                input type="hidden" name="user" value=(k.user);
                                                button type="submit" aria-label=(format!("Approve {}", k.user)) { "Approve" }
                                            }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            },
        ),
    ))
}

/// `POST /supervisor/approve`: through the node's logged admin path, like the CLI's
/// `user approve-key`.
pub async fn approve(State(c): State<Arc<Console>>, headers: HeaderMap, body: Body) -> Page {
    let form: Form = read_form(&c, body).await?;
    let s = auth::session_post(&c, &headers, &form).await?;
    let id = auth::identity(&c, &s)?;
    let ori = c.node.ori().to_owned();
    let user = form.get("user").to_owned();
    let req = crate::client::user_cmd("approve-key", &user, "", 0, "");
    let done = on_node(&c, move |n| Ok(n.admin(&id, req)))
        .await
        .map_err(|e| pages::internal(&ori, e))?;
    match done {
        Ok(m) => Ok(message(&ori, StatusCode::OK, "Approved", &m, Some(&s))),
        Err(e) => Err(message(
            &ori,
            StatusCode::FORBIDDEN,
            "Not approved",
            &e.to_string(),
            Some(&s),
        )),
    }
}
