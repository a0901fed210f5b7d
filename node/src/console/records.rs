//! The auditor's page: the audit log, read-only, filtered by event, user and requesting
//! agency.

use std::sync::Arc;

use alpr_pki::Role;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use maud::html;
use serde::Deserialize;

use super::auth::{self, on_node};
use super::pages::{self, Page, layout, message, respond};
use super::state::Console;
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

/// Auditors and supervisors only: the log and reports are theirs to read.
fn readers_only(
    c: &Console,
    s: &super::state::Session,
    what: &str,
) -> Result<(), axum::response::Response> {
    if matches!(s.role, Role::Auditor | Role::Supervisor) {
        return Ok(());
    }
    Err(message(
        c.node.ori(),
        StatusCode::FORBIDDEN,
        what,
        "Only auditors and supervisors read the audit log and its reports.",
        Some(s),
    ))
}

fn filter_of(q: &LogFilter) -> Result<Filter, String> {
    let nonempty = |v: &Option<String>| {
        v.as_deref()
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .map(str::to_owned)
    };
    let event = match nonempty(&q.event) {
        Some(e) => Some(e.parse::<Event>().map_err(|e| e.to_string())?),
        None => None,
    };
    Ok(Filter {
        event,
        user: nonempty(&q.user),
        requester_ori: nonempty(&q.requester),
        ..Default::default()
    })
}

/// `GET /audit`: auditors and supervisors.
pub async fn audit_log(
    State(c): State<Arc<Console>>,
    headers: HeaderMap,
    Query(q): Query<LogFilter>,
) -> Page {
    let s = auth::session(&c, &headers).await?;
    let ori = c.node.ori().to_owned();
    readers_only(&c, &s, "Audit log")?;
    let filter = filter_of(&q)
        .map_err(|e| message(&ori, StatusCode::BAD_REQUEST, "Audit log", &e, Some(&s)))?;
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
                p { a #audit-export href=(format!("/audit/export.csv?event={}&user={}&requester={}",
                        filter.event.map(|e| e.as_str()).unwrap_or(""),
                        form_urlencoded::byte_serialize(filter.user.as_deref().unwrap_or("").as_bytes()).collect::<String>(),
                        form_urlencoded::byte_serialize(filter.requester_ori.as_deref().unwrap_or("").as_bytes()).collect::<String>()))
                    { "Export these entries as CSV" } " (the export is logged)" }
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
                                td { (pages::time(e.entry.at)) }
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

/// `GET /audit/reports`: the transparency report, the search-age table and its chart
/// (the State Auditor's Table 2), and the anomaly flags, over the whole log.
pub async fn reports(State(c): State<Arc<Console>>, headers: HeaderMap) -> Page {
    let s = auth::session(&c, &headers).await?;
    let ori = c.node.ori().to_owned();
    readers_only(&c, &s, "Reports")?;
    let now = alpr_pki::now_unix();
    let (transparency, ages, anomalies) = on_node(&c, move |n| {
        let entries = crate::store::audit::list(&n.audit_db()?, None)?;
        Ok((
            crate::reports::transparency(n, &entries, now)?,
            crate::reports::search_age_counts(&entries),
            crate::reports::anomalies(&entries, 5),
        ))
    })
    .await
    .map_err(|e| pages::internal(&ori, e))?;
    let flags: Vec<&str> = anomalies.lines().skip(1).map(str::trim).collect();
    let pct = |n: u64, t: u64| {
        if t == 0 {
            0.0
        } else {
            100.0 * n as f64 / t as f64
        }
    };
    Ok(respond(
        StatusCode::OK,
        layout(
            &ori,
            "Reports",
            Some(&s),
            html! {
                h2 #age { "How far back searches reached" }
                p { "The age of the oldest read each search asked for, at the time of the search (searches not refused). The State Auditor's Table 2." }
                table {
                    caption { "Searches by age of the reads asked for" }
                    thead { tr {
                        th scope="col" { "Age" }
                        @for (event, _, total) in &ages { th scope="col" { (event_label(*event)) " (" (total) ")" } th scope="col" { "%" } }
                    } }
                    tbody {
                        @for (i, (_, label)) in crate::reports::AGE_BUCKETS.iter().enumerate() {
                            tr {
                                th scope="row" { (label) }
                                @for (_, counts, total) in &ages {
                                    td { (counts[i]) }
                                    td { (format!("{:.1}", pct(counts[i], *total))) }
                                }
                            }
                        }
                    }
                }
                (age_chart(&ages))
                h2 #anomalies { "Anomaly flags" }
                @if flags.is_empty() { p { "None." } }
                @else { ul { @for f in &flags { li { (f) } } } }
                h2 #transparency { "Transparency report" }
                pre.report { (transparency) }
            },
        ),
    ))
}

fn event_label(e: Event) -> &'static str {
    match e {
        Event::InboundQuery => "Other agencies' searches of ours",
        Event::OutboundQuery => "Our searches of others",
        _ => e.as_str(),
    }
}

/// Grouped bars per age bucket, inbound and outbound (server-rendered SVG).
fn age_chart(ages: &[(Event, [u64; 6], u64)]) -> maud::Markup {
    let max = ages
        .iter()
        .flat_map(|(_, c, _)| c.iter().copied())
        .max()
        .unwrap_or(0)
        .max(1);
    let (w, h, left, bottom) = (640.0_f64, 260.0_f64, 40.0_f64, 50.0_f64);
    let group = (w - left) / crate::reports::AGE_BUCKETS.len() as f64;
    let bar = group / (ages.len() as f64 + 1.0);
    let y = |n: u64| (h - bottom) * (1.0 - n as f64 / max as f64);
    html! {
        figure {
            svg.chart xmlns="http://www.w3.org/2000/svg" viewBox=(format!("0 0 {w} {h}")) role="img" aria-labelledby="age-chart-title" {
                title #age-chart-title { "Searches by age of the reads asked for: dark bars are other agencies' searches of ours, light bars ours of others" }
                line x1=(left) y1=(h - bottom) x2=(w) y2=(h - bottom) class="axis" {}
                text x="2" y="12" class="tick" { (max) }
                text x="2" y=(h - bottom) class="tick" { "0" }
                @for (i, (_, label)) in crate::reports::AGE_BUCKETS.iter().enumerate() {
                    @for (k, (_, counts, _)) in ages.iter().enumerate() {
                        rect x=(format!("{:.1}", left + i as f64 * group + (k as f64 + 0.5) * bar))
                             y=(format!("{:.1}", y(counts[i])))
                             width=(format!("{:.1}", bar * 0.9))
                             height=(format!("{:.1}", (h - bottom) - y(counts[i])))
                             class=(format!("bar bar-{k}")) {
                            title { (label) ": " (counts[i]) }
                        }
                    }
                    text x=(format!("{:.1}", left + i as f64 * group + group / 2.0)) y=(h - bottom + 18.0) class="label" text-anchor="middle" { (label) }
                }
            }
            figcaption { "Dark: other agencies' searches of our reads. Light: our searches of others." }
        }
    }
}

/// `GET /audit/export.csv`: the entries the filters select, as CSV; logged as an export.
pub async fn export(
    State(c): State<Arc<Console>>,
    headers: HeaderMap,
    Query(q): Query<LogFilter>,
) -> Page {
    let s = auth::session(&c, &headers).await?;
    let ori = c.node.ori().to_owned();
    readers_only(&c, &s, "Audit export")?;
    let filter = filter_of(&q)
        .map_err(|e| message(&ori, StatusCode::BAD_REQUEST, "Audit export", &e, Some(&s)))?;
    let user = s.user.clone();
    let f = filter.clone();
    let csv = on_node(&c, move |n| {
        let entries = crate::store::audit::query(&n.audit_db()?, &f)?;
        let text = crate::audit::to_csv(&entries);
        n.audit(&[crate::audit::AuditEntry {
            requester_user: Some(user),
            count: Some(entries.len() as u64),
            detail: Some(format!("csv export from the web console with filter {f}")),
            ..crate::audit::AuditEntry::new(
                alpr_pki::now_unix(),
                Event::Export,
                crate::audit::Decision::Ok,
            )
        }])?;
        Ok(text)
    })
    .await
    .map_err(|e| pages::internal(&ori, e))?;
    let mut r = axum::response::IntoResponse::into_response(csv);
    r.headers_mut().insert(
        axum::http::header::CONTENT_TYPE,
        axum::http::HeaderValue::from_static("text/csv; charset=utf-8"),
    );
    r.headers_mut().insert(
        axum::http::header::CONTENT_DISPOSITION,
        axum::http::HeaderValue::from_static("attachment; filename=\"audit.csv\""),
    );
    Ok(r)
}
