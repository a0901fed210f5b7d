//! The supervisor's pages beyond enrollments: accounts (record training, disable), the
//! sampled search-review queue and evidence holds. Every action goes through the node's
//! logged admin path ([`Node::admin`](crate::node::Node::admin)), exactly as the CLI's
//! `admin` commands: the same role checks, the same audit entries, refusals included.

use std::sync::Arc;

use alpr_pki::Role;
use alpr_proto::pb::{AdminRequest, HoldCommand, ReviewCommand, admin_request::Command};
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use maud::html;

use super::auth::{self, on_node, read_form};
use super::pages::{self, Page, layout, message, respond};
use super::state::Console;
use super::state::Session;
use crate::audit::{Decision, Event};
use crate::store;

/// How many searches one review page samples.
const SAMPLE: usize = 10;

async fn supervisors_only(
    c: &Console,
    s: &Session,
    what: &str,
) -> Result<(), axum::response::Response> {
    if s.role == Role::Supervisor {
        return Ok(());
    }
    Err(message(
        c.node.ori(),
        StatusCode::FORBIDDEN,
        what,
        "Only supervisors use these pages.",
        Some(s),
    ))
}

/// `GET /supervisor/accounts`.
pub async fn accounts(State(c): State<Arc<Console>>, headers: HeaderMap) -> Page {
    let s = auth::session(&c, &headers).await?;
    supervisors_only(&c, &s, "Accounts").await?;
    let ori = c.node.ori().to_owned();
    let list = on_node(&c, |n| store::accounts::list(&n.db()))
        .await
        .map_err(|e| pages::internal(&ori, e))?;
    let valid_days = i64::from(c.node.cfg.accounts.training_valid_days);
    let now = alpr_pki::now_unix();
    Ok(respond(
        StatusCode::OK,
        layout(
            &ori,
            "Accounts",
            Some(&s),
            html! {
                p { "Training is valid " (valid_days) " days. A disabled account never searches again; its person enrolls anew under a new account." }
                table {
                    caption { "This agency's accounts" }
                    thead { tr { th scope="col" { "User" } th scope="col" { "Role" } th scope="col" { "Approved" } th scope="col" { "Training" } th scope="col" { "State" } th scope="col" { "Actions" } } }
                    tbody {
                        @for a in &list {
                            tr {
                                td { (a.user) }
                                td { (a.role) }
                                td { (a.approved_at.map(pages::when).unwrap_or_else(|| "not yet".into())) @if let Some(b) = &a.approved_by { " by " (b) } }
                                td {
                                    @match a.trained_at {
                                        Some(t) if t >= now - valid_days * 86_400 => { (pages::time(t)) }
                                        Some(t) => { span.error { "expired (" (pages::time(t)) ")" } }
                                        None => { span.error { "none recorded" } }
                                    }
                                }
                                td { @if a.disabled_at.is_some() { "disabled" } @else { "active" } }
                                td {
                                    @if a.disabled_at.is_none() {
                                        form method="post" action="/supervisor/account" {
                                            input type="hidden" name="csrf" value=(s.csrf);
                                            input type="hidden" name="user" value=(a.user);
                                            input type="hidden" name="action" value="training";
                                            button type="submit" aria-label=(format!("Record training of {} today", a.user)) { "Training done today" }
                                        }
                                        form method="post" action="/supervisor/account" {
                                            input type="hidden" name="csrf" value=(s.csrf);
                                            input type="hidden" name="user" value=(a.user);
                                            input type="hidden" name="action" value="disable";
                                            label for=(format!("why-{}", a.user)) { "Why disable" }
                                            input id=(format!("why-{}", a.user)) name="note" required;
                                            button type="submit" aria-label=(format!("Disable {}", a.user)) { "Disable" }
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

/// `POST /supervisor/account`: training today, or disable.
pub async fn account(State(c): State<Arc<Console>>, headers: HeaderMap, body: Body) -> Page {
    let f = read_form(&c, body).await?;
    let s = auth::session_post(&c, &headers, &f).await?;
    supervisors_only(&c, &s, "Accounts").await?;
    let user = f.get("user");
    let req = match f.get("action") {
        "training" => crate::client::user_cmd("training", user, "", alpr_pki::now_unix(), ""),
        "disable" => crate::client::user_cmd("disable", user, "", 0, f.get("note")),
        other => {
            return Err(message(
                c.node.ori(),
                StatusCode::BAD_REQUEST,
                "Accounts",
                &format!("{other:?} is not an account action"),
                Some(&s),
            ));
        }
    };
    auth::admin_action(&c, &s, req, "/supervisor/accounts").await
}

/// `GET /supervisor/reviews`: a random sample of answered and endorsed searches, with
/// the reviews recorded so far.
pub async fn reviews(State(c): State<Arc<Console>>, headers: HeaderMap) -> Page {
    let s = auth::session(&c, &headers).await?;
    supervisors_only(&c, &s, "Search reviews").await?;
    let ori = c.node.ori().to_owned();
    let (sample, done) = on_node(&c, |n| {
        let entries = store::audit::list(&n.audit_db()?, None)?;
        let reviewed: Vec<_> = entries
            .iter()
            .filter(|e| e.entry.event == Event::SearchReview)
            .rev()
            .take(20)
            .cloned()
            .collect();
        let sample: Vec<_> = crate::reports::review_sample(&entries, SAMPLE)
            .into_iter()
            .cloned()
            .collect();
        Ok((sample, reviewed))
    })
    .await
    .map_err(|e| pages::internal(&ori, e))?;
    Ok(respond(
        StatusCode::OK,
        layout(
            &ori,
            "Search reviews",
            Some(&s),
            html! {
                p { "A random sample of " (SAMPLE) " searches (ours of others and others' of ours). Was each justified by its purpose, case and reason? Reload for a new sample." }
                @if sample.is_empty() { p { "No search to review yet." } }
                @for e in &sample {
                    section.review aria-labelledby=(format!("r-{}", e.seq)) {
                        h2 id=(format!("r-{}", e.seq)) { "Entry #" (e.seq) ", " (pages::time(e.entry.at)) }
                        p {
                            (e.entry.requester_user.as_deref().unwrap_or("?")) " of " (e.entry.requester_ori.as_deref().unwrap_or("?"))
                            " searched " (e.entry.plate.as_deref().unwrap_or("-"))
                            " for purpose " (e.entry.purpose.as_deref().unwrap_or("-"))
                            ", case " (e.entry.case_number.as_deref().unwrap_or("-")) ": "
                            q { (e.entry.reason.as_deref().unwrap_or("")) }
                        }
                        form method="post" action="/supervisor/review" {
                            input type="hidden" name="csrf" value=(s.csrf);
                            input type="hidden" name="seq" value=(e.seq);
                            label for=(format!("note-{}", e.seq)) { "Note" }
                            input id=(format!("note-{}", e.seq)) name="note" required;
                            button type="submit" name="justified" value="yes" { "Justified" }
                            " "
                            button type="submit" name="justified" value="no" { "Not justified" }
                        }
                    }
                }
                h2 { "Latest reviews" }
                @if done.is_empty() { p { "None yet." } }
                @else {
                    ul { @for r in &done {
                        li { (pages::time(r.entry.at)) " — " (r.entry.requester_user.as_deref().unwrap_or("?")) ": "
                             (if r.entry.decision == Decision::Justified { "justified" } else { "not justified" }) ", "
                             (r.entry.detail.as_deref().unwrap_or("")) }
                    } }
                }
            },
        ),
    ))
}

/// `POST /supervisor/review`.
pub async fn review(State(c): State<Arc<Console>>, headers: HeaderMap, body: Body) -> Page {
    let f = read_form(&c, body).await?;
    let s = auth::session_post(&c, &headers, &f).await?;
    supervisors_only(&c, &s, "Search reviews").await?;
    let Ok(seq) = f.get("seq").parse::<i64>() else {
        return Err(message(
            c.node.ori(),
            StatusCode::BAD_REQUEST,
            "Search reviews",
            "No entry was named.",
            Some(&s),
        ));
    };
    let req = AdminRequest {
        command: Some(Command::Review(ReviewCommand {
            seq,
            justified: f.get("justified") == "yes",
            note: f.get("note").to_owned(),
        })),
    };
    auth::admin_action(&c, &s, req, "/supervisor/reviews").await
}

/// `GET /supervisor/holds`: holds in force and a form to place one.
pub async fn holds(State(c): State<Arc<Console>>, headers: HeaderMap) -> Page {
    let s = auth::session(&c, &headers).await?;
    supervisors_only(&c, &s, "Evidence holds").await?;
    let ori = c.node.ori().to_owned();
    let list = on_node(&c, |n| store::holds::list(&n.db()))
        .await
        .map_err(|e| pages::internal(&ori, e))?;
    let now = alpr_pki::now_unix();
    Ok(respond(
        StatusCode::OK,
        layout(
            &ori,
            "Evidence holds",
            Some(&s),
            html! {
                p { "A hold keeps one plate's reads in a window past retention, for a case, until it lapses." }
                table {
                    caption { "Holds" }
                    thead { tr { th scope="col" { "Case" } th scope="col" { "Plate" } th scope="col" { "Window" } th scope="col" { "Until" } th scope="col" { "Approved by" } } }
                    tbody { @for h in &list { tr {
                        td { (h.case_number) } td { (h.plate) }
                        td { (pages::time(h.window_start)) " to " (pages::time(h.window_end)) }
                        td { (pages::time(h.expires_at)) @if h.expires_at <= now { " (lapsed)" } }
                        td { (h.approved_by) }
                    } } }
                }
                h2 { "Place a hold" }
                form #hold-form method="post" action="/supervisor/hold" {
                    input type="hidden" name="csrf" value=(s.csrf);
                    label for="case" { "Case number" } input #case name="case" required;
                    label for="plate" { "Plate" } input #plate name="plate" required;
                    label for="from" { "Reads from (" span.tz { "UTC" } ")" } input #from name="from" type="datetime-local" required;
                    label for="to" { "Reads to (" span.tz { "UTC" } ")" } input #to name="to" type="datetime-local" required;
                    label for="until" { "Hold until (" span.tz { "UTC" } ")" } input #until name="until" type="datetime-local" required;
                    label for="note" { "Why" } input #note name="note" required;
                    button type="submit" { "Place the hold" }
                }
            },
        ),
    ))
}

/// `POST /supervisor/hold`.
pub async fn hold(State(c): State<Arc<Console>>, headers: HeaderMap, body: Body) -> Page {
    let f = read_form(&c, body).await?;
    let s = auth::session_post(&c, &headers, &f).await?;
    supervisors_only(&c, &s, "Evidence holds").await?;
    let times = (|| {
        Ok::<_, String>((
            pages::form_datetime(&f, "from", "Reads from")?,
            pages::form_datetime(&f, "to", "Reads to")?,
            pages::form_datetime(&f, "until", "Hold until")?,
        ))
    })();
    let (from, to, until) = match times {
        Ok(t) => t,
        Err(e) => {
            return Err(message(
                c.node.ori(),
                StatusCode::BAD_REQUEST,
                "Evidence holds",
                &e,
                Some(&s),
            ));
        }
    };
    let req = AdminRequest {
        command: Some(Command::Hold(HoldCommand {
            case_number: f.get("case").to_owned(),
            plate: f.get("plate").to_owned(),
            window_start: from,
            window_end: to,
            expires_at: until,
            note: f.get("note").to_owned(),
        })),
    };
    auth::admin_action(&c, &s, req, "/supervisor/holds").await
}
