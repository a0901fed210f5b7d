//! The enrollment pages: the person's browser makes its key and proves it with the
//! one-time code (`crate::enrollment`); supervisors see the keys awaiting approval and
//! approve them through the logged admin path.

use std::sync::Arc;

use alpr_pki::Role;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use maud::html;

use super::auth::{self, Form, entry, log, on_node, read_form};
use super::pages::{self, Page, layout, message, respond};
use super::state::Console;
use crate::audit::{Decision, Event};
use crate::store;

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
    let (u, hash, key) = (
        user.clone(),
        crate::enrollment::code_hash(&code),
        spki.clone(),
    );
    let taken = on_node(&c, move |n| {
        let db = n.db();
        // Codes are guessed no faster than sign-ins: the same lockout counts both.
        if auth::locked_until(n, &db, &u, now)?.is_some() {
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
                                    td { (pages::time(k.requested_at)) }
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
    let req = crate::client::user_cmd("approve-key", form.get("user"), "", 0, "");
    auth::admin_action(&c, &s, req, "/supervisor").await
}
