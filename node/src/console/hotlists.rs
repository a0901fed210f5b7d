//! The admin's hot lists: this agency's own lists (source, topic, plates, expiry), the
//! lists other agencies shared with it under agreements, and loading a new list, as
//! `alpr-node hotlist` does — with its mandatory expiry, refused (and logged) when the
//! state rules prohibit its topic or source, logged with the admin who loaded it — and
//! withdrawing one before its expiry, with a reason (logged).

use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use maud::html;

use super::auth::{self, on_node, read_form_up_to};
use super::pages::{self, Page, layout, message, respond};
use super::state::Console;
use crate::Error;

/// Largest hot-list form, bytes (about 40,000 plates with short notes).
const MAX_LIST_FORM: usize = 1024 * 1024;
/// Lists shown.
const SHOWN: usize = 100;

/// `GET /admin/hotlists`.
pub async fn page(State(c): State<Arc<Console>>, headers: HeaderMap) -> Page {
    let s = auth::session(&c, &headers).await?;
    auth::admins_only(&c, &s, "Hot lists", "load hot lists")?;
    let ori = c.node.ori().to_owned();
    let (own, shared) = on_node(&c, |n| {
        // One database guard at a time: `status` takes its own.
        let own = crate::store::holds::hotlists(&n.db(), SHOWN)?;
        Ok((own, n.status()?.shared_lists))
    })
    .await
    .map_err(|e| pages::internal(&ori, e))?;
    let now = alpr_pki::now_unix();
    Ok(respond(
        StatusCode::OK,
        layout(
            &ori,
            "Hot lists",
            Some(&s),
            html! {
                p { "Reads ingested while a list is in force and whose plate it names raise a "
                    code { "hotlist_hit" } " alert. Every list lapses on its expiry; a list whose topic or source the state rules prohibit is refused and the refusal logged." }
                table {
                    caption { "This agency's hot lists (newest first)" }
                    thead { tr { th scope="col" { "Name" } th scope="col" { "Source" } th scope="col" { "Topic" } th scope="col" { "Plates" } th scope="col" { "Loaded" } th scope="col" { "Until" } th scope="col" { "Withdraw" } } }
                    tbody {
                        @if own.is_empty() { tr { td colspan="7" { "None loaded." } } }
                        @for l in &own {
                            tr {
                                td { (l.name) } td { (l.source) } td { (l.topic) }
                                td { (l.entries) }
                                td { (pages::time(l.loaded_at)) }
                                td { (pages::time(l.expires_at)) @if l.expires_at <= now { " (lapsed)" } }
                                td { @if l.expires_at > now {
                                    form.inline method="post" action="/admin/hotlists/withdraw" {
                                        input type="hidden" name="csrf" value=(s.csrf);
                                        input type="hidden" name="id" value=(l.id);
                                        label for=(format!("why-{}", l.id)) { "Why" }
                                        input id=(format!("why-{}", l.id)) name="reason" required;
                                        button type="submit" aria-label=(format!("Withdraw {}", l.name)) { "Withdraw" }
                                    }
                                } }
                            }
                        }
                    }
                }
                table {
                    caption { "Lists other agencies shared with this one, in force" }
                    thead { tr { th scope="col" { "Owner" } th scope="col" { "Name" } th scope="col" { "Plates" } th scope="col" { "Until" } } }
                    tbody {
                        @if shared.is_empty() { tr { td colspan="4" { "None." } } }
                        @for (owner, name, n, until) in &shared {
                            tr { td { (owner) } td { (name) } td { (n) } td { (pages::time(*until)) } }
                        }
                    }
                }
                h2 { "Load a hot list" }
                form #hotlist-form method="post" action="/admin/hotlists/load" {
                    input type="hidden" name="csrf" value=(s.csrf);
                    label for="hl-name" { "Name" } input #hl-name name="name" required;
                    label for="hl-source" { "Source (where it comes from, e.g. NCIC stolen vehicles)" } input #hl-source name="source" required;
                    label for="hl-topic" { "Topic (e.g. stolen-vehicle, wanted-person, amber-alert)" } input #hl-topic name="topic" required;
                    label for="hl-until" { "In force until (" span.tz { "UTC" } ")" }
                    input #hl-until name="until" type="datetime-local" required data-utc value=(pages::datetime_value(now + 30 * 86_400));
                    label for="hl-plates" { "Plates: one per line, " code { "plate,note" } " (a header line " code { "plate,note" } " is skipped)" }
                    textarea #hl-plates name="plates" rows="8" required {}
                    button type="submit" { "Load this list" }
                }
            },
        ),
    ))
}

/// `POST /admin/hotlists/load`.
pub async fn load(State(c): State<Arc<Console>>, headers: HeaderMap, body: Body) -> Page {
    // Signed in as an admin before a body of up to 1 MiB is read.
    let s = auth::session(&c, &headers).await?;
    auth::admins_only(&c, &s, "Hot lists", "load hot lists")?;
    let f = read_form_up_to(&c, body, MAX_LIST_FORM).await?;
    let s = auth::session_post(&c, &headers, &f).await?;
    auth::admins_only(&c, &s, "Hot lists", "load hot lists")?;
    let ori = c.node.ori().to_owned();
    let bad = |status: StatusCode, text: &str| {
        message(
            &ori,
            status,
            "Hot lists",
            &format!("{text} Nothing was loaded."),
            Some(&s),
        )
    };
    let until = pages::form_datetime(&f, "until", "In force until")
        .map_err(|e| bad(StatusCode::BAD_REQUEST, &format!("{e}.")))?;
    let (name, source, topic) = (
        f.get("name").trim().to_owned(),
        f.get("source").trim().to_owned(),
        f.get("topic").trim().to_owned(),
    );
    let plates = f.get("plates").to_owned();
    let by = format!("{}@{} (web console)", s.user, ori);
    let shown = name.clone();
    let done = on_node(&c, move |n| {
        Ok(n.load_hotlist(&name, &source, &topic, until, &plates, &by))
    })
    .await
    .map_err(|e| pages::internal(&ori, e))?;
    match done {
        Ok(count) => Ok(respond(
            StatusCode::OK,
            layout(
                &ori,
                "Hot list loaded",
                Some(&s),
                html! {
                    p.notice role="status" { "Loaded hot list " (shown) ": " (count) " plates, in force until " (pages::time(until)) "." }
                    p { a href="/admin/hotlists" { "Back to the hot lists" } }
                },
            ),
        )),
        Err(e @ Error::Usage(_)) => Err(bad(StatusCode::BAD_REQUEST, &format!("{e}."))),
        Err(e) => Err(pages::internal(&ori, e)),
    }
}

/// `POST /admin/hotlists/withdraw`.
pub async fn withdraw(State(c): State<Arc<Console>>, headers: HeaderMap, body: Body) -> Page {
    let f = auth::read_form(&c, body).await?;
    let s = auth::session_post(&c, &headers, &f).await?;
    auth::admins_only(&c, &s, "Hot lists", "withdraw hot lists")?;
    let ori = c.node.ori().to_owned();
    let Ok(id) = f.get("id").trim().parse::<i64>() else {
        return Err(message(
            &ori,
            StatusCode::BAD_REQUEST,
            "Hot lists",
            "No such hot list. Nothing was withdrawn.",
            Some(&s),
        ));
    };
    let reason = f.get("reason").to_owned();
    let by = format!("{}@{} (web console)", s.user, ori);
    let done = on_node(&c, move |n| Ok(n.withdraw_hotlist(id, &reason, &by)))
        .await
        .map_err(|e| pages::internal(&ori, e))?;
    match done {
        Ok(msg) => Ok(respond(
            StatusCode::OK,
            layout(
                &ori,
                "Hot list withdrawn",
                Some(&s),
                html! {
                    p.notice role="status" { (msg) "." }
                    p { a href="/admin/hotlists" { "Back to the hot lists" } }
                },
            ),
        )),
        Err(e @ Error::Usage(_)) => Err(message(
            &ori,
            StatusCode::BAD_REQUEST,
            "Hot lists",
            &format!("{e}. Nothing was withdrawn."),
            Some(&s),
        )),
        Err(e) => Err(pages::internal(&ori, e)),
    }
}
