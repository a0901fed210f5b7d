//! The auditor's page: the audit log, read-only, filtered by event, user and requesting
//! agency.

use std::sync::Arc;

use alpr_pki::Role;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use maud::html;
use serde::Deserialize;

use super::Console;
use super::auth::{self, on_node};
use super::pages::{self, Page, layout, message, respond};
use crate::audit::{Event, Filter};

/// Most entries shown on one page.
const SHOWN: usize = 500;
/// Most of the newest entries one page reads (the log has no size bound).
const SCANNED: usize = 100_000;

/// The page's filters.
#[derive(Debug, Default, Deserialize)]
pub struct LogFilter {
    event: Option<String>,
    user: Option<String>,
    requester: Option<String>,
}

/// `GET /audit`: auditors and supervisors.
pub async fn audit_log(
    State(c): State<Arc<Console>>,
    headers: HeaderMap,
    Query(q): Query<LogFilter>,
) -> Page {
    let s = auth::session(&c, &headers).await?;
    let ori = c.node.ori().to_owned();
    if !matches!(s.role, Role::Auditor | Role::Supervisor) {
        return Err(message(
            &ori,
            StatusCode::FORBIDDEN,
            "Audit log",
            "Only auditors and supervisors read the audit log here.",
            Some(&s),
        ));
    }
    let nonempty = |v: &Option<String>| {
        v.as_deref()
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .map(str::to_owned)
    };
    let event = match nonempty(&q.event) {
        Some(e) => match e.parse::<Event>() {
            Ok(e) => Some(e),
            Err(err) => {
                return Err(message(
                    &ori,
                    StatusCode::BAD_REQUEST,
                    "Audit log",
                    &err.to_string(),
                    Some(&s),
                ));
            }
        },
        None => None,
    };
    let filter = Filter {
        event,
        user: nonempty(&q.user),
        requester_ori: nonempty(&q.requester),
        ..Default::default()
    };
    let f = filter.clone();
    let (entries, more) = on_node(&c, move |n| {
        crate::store::audit::recent(&n.audit_db()?, &f, SHOWN, SCANNED)
    })
    .await
    .map_err(|e| pages::internal(&ori, e))?;
    Ok(respond(
        StatusCode::OK,
        layout(
            &ori,
            "Audit log",
            Some(&s),
            html! {
                form method="get" action="/audit" {
                    label for="event" { "Event" }
                    select #event name="event" {
                        option value="" { "every event" }
                        @for e in Event::ALL {
                            option value=(e.as_str()) selected[filter.event == Some(*e)] { (e.as_str()) }
                        }
                    }
                    label for="fuser" { "User" }
                    input #fuser name="user" value=(filter.user.clone().unwrap_or_default());
                    label for="frequester" { "Requesting agency (ORI)" }
                    input #frequester name="requester" value=(filter.requester_ori.clone().unwrap_or_default());
                    button type="submit" { "Filter" }
                }
                p {
                    "The newest " (entries.len()) " entries matching " (filter.to_string())
                    @if more { " among the newest " (SCANNED) " of the log (for older ones, use alpr-node audit export)" }
                    ". Read-only: nothing here changes the log."
                }
                table #audit {
                    caption { "Audit entries, newest first" }
                    thead { tr { th scope="col" { "#" } th scope="col" { "When" } th scope="col" { "Event" } th scope="col" { "Decision" } th scope="col" { "User" } th scope="col" { "Requester" } th scope="col" { "Purpose" } th scope="col" { "Reason code" } th scope="col" { "Detail" } } }
                    tbody {
                        @for e in &entries {
                            tr {
                                td { (e.seq) }
                                td { (pages::when(e.entry.at)) }
                                td { (e.entry.event.as_str()) }
                                td { (e.entry.decision.as_str()) }
                                td { (e.entry.requester_user.as_deref().unwrap_or("")) }
                                td { (e.entry.requester_ori.as_deref().unwrap_or("")) }
                                td { (e.entry.purpose.as_deref().unwrap_or("")) }
                                td { (e.entry.reason_code.as_deref().unwrap_or("")) }
                                td { (e.entry.detail.as_deref().unwrap_or("")) }
                            }
                        }
                    }
                }
            },
        ),
    ))
}
