//! The read-only web page for regulators: the registry (agencies by name and ORI, purposes
//! by code and name, dates), its verified tree head and cosignatures, and the compliance
//! report as tables with a chart of refusals by reason; filters by state, agency and status.
//!
//! Served over HTTPS (the broker's certificate; HTTP/1.1 and HTTP/2). Browsers cannot
//! conveniently present a client certificate, so a regulator signs in with two factors
//! (see [`signin`](mod@signin)): a short-lived token signed with their own key, pasted into
//! the sign-in form — never put in an address — and good once, and a code from their
//! authenticator app. The session is an `__Host-` cookie (HttpOnly, Secure,
//! SameSite=Strict) that locks after 30 minutes idle. HTML comes from maud templates,
//! escaped by default.

use std::sync::Arc;

use alpr_pki::VerifiedIdentity;
use alpr_proto::envelope;
use alpr_proto::pb::Signed;
use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use maud::{DOCTYPE, Markup, html};
use prost::Message;
use serde::Deserialize;
use std::collections::HashMap;
use std::sync::Mutex;

use crate::broker::Broker;
use crate::regulator::{self, ListFilter};

mod signin;

pub use signin::{
    LOCKOUT_ATTEMPTS, LOCKOUT_WINDOW_SECS, MAX_TOKEN_SECS, SIGNIN, enroll_code, lock_end,
    regulator_name, remove_code, sign_in_token,
};
use signin::{session, signin_page};

/// Largest sign-in form, bytes.
const MAX_FORM: usize = 16 * 1024;

/// The page's state: the broker, who is signed in, and the work awaiting a signature or a
/// first code.
pub struct PageState {
    broker: Arc<Broker>,
    sessions: Mutex<HashMap<String, Regulator>>,
    /// Suspensions and lifts awaiting the regulator's signature, by id.
    pending: Mutex<HashMap<String, PendingAction>>,
    /// Code setups awaiting their first code, by id.
    setups: Mutex<HashMap<String, signin::Setup>>,
}

/// A suspension or lift awaiting its signature: who asked, the action's bytes, until when.
type PendingAction = (String, Vec<u8>, i64);

/// A signed-in regulator: who, the certificate chain their sign-in token carried (their
/// signed actions carry it too), the session's form token, the last request.
#[derive(Clone)]
struct Regulator {
    id: VerifiedIdentity,
    chain: Vec<Vec<u8>>,
    csrf: String,
    seen: i64,
}

fn random_hex() -> Option<String> {
    let mut b = [0u8; 32];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut b).ok()?;
    Some(hex::encode(b))
}

#[derive(Deserialize, Default)]
struct Params {
    token: Option<String>,
    state: Option<String>,
    agency: Option<String>,
    status: Option<String>,
}

fn page(title: &str, who: Option<&VerifiedIdentity>, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) }
                link rel="stylesheet" href="/page.css";
                script src="/page.js" defer {}
            }
            body {
                a.skip href="#main" { "Skip to content" }
                header {
                    strong { "ALPR agreement registry" }
                    @if let Some(w) = who {
                        span { "Signed in as " b { (w.describe()) } " (" (w.jurisdiction.as_ref().map(|j| j.to_string()).unwrap_or_default()) ")" }
                        form method="post" action="/signout" { button type="submit" { "Sign out" } }
                    }
                }
                main #main tabindex="-1" { h1 { (title) } (body) }
            }
        }
    }
}

fn respond(status: StatusCode, m: Markup) -> Response {
    let mut r = (status, Html(m.into_string())).into_response();
    alpr_runtime::web::secure_headers(
        r.headers_mut(),
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    );
    r
}

fn purposes(codes: &str) -> String {
    codes
        .split_whitespace()
        .map(|c| match alpr_proto::purpose::lookup(c) {
            Ok(p) => format!("{c} {}", p.name),
            Err(_) => c.to_owned(),
        })
        .collect::<Vec<_>>()
        .join("; ")
}

use alpr_pki::fmt_when as date;

/// A time as an HTML `<time>` element: its UTC text, which the page's script shows in the
/// browser's own time zone (the UTC text kept as its tooltip).
fn time_el(t: i64) -> Markup {
    html! { time datetime=(alpr_pki::fmt_time(t)) { (date(t)) } }
}

/// Each week's targets forwarded (grey) and refusals stacked by reason (one colour per
/// reason, named in the legend), server-rendered SVG.
fn weekly_chart(weeks: &[crate::store::RoutingWeek]) -> Markup {
    let mut reasons: Vec<&str> = weeks
        .iter()
        .flat_map(|w| w.2.iter().map(|(r, _)| r.as_str()))
        .collect();
    reasons.sort_unstable();
    reasons.dedup();
    let max = weeks
        .iter()
        .map(|w| w.1.max(w.2.iter().map(|(_, n)| n).sum()))
        .max()
        .unwrap_or(1)
        .max(1);
    let (w, h, left, bottom) = (640.0_f64, 220.0_f64, 30.0_f64, 40.0_f64);
    let slot = (w - left) / weeks.len() as f64;
    let scale = |n: u64| (h - bottom) * n as f64 / max as f64;
    const COLOURS: [&str; 8] = [
        "#a40e26", "#d9730d", "#b8860b", "#6b8e23", "#2f6f8f", "#6a3d9a", "#8b4513", "#c71585",
    ];
    let colour =
        |r: &str| COLOURS[reasons.iter().position(|x| *x == r).unwrap_or(0) % COLOURS.len()];
    // Every bar: x, y, width, height, fill, what it counts.
    let mut bars: Vec<(f64, f64, f64, f64, &str, String)> = Vec::new();
    for (i, (start, forwarded, refused)) in weeks.iter().enumerate() {
        let x = left + i as f64 * slot;
        let week = format!("week of {}", date(*start));
        bars.push((
            x + slot * 0.1,
            h - bottom - scale(*forwarded),
            slot * 0.35,
            scale(*forwarded),
            "#9aa5b1",
            format!("{week}: {forwarded} forwarded"),
        ));
        let mut y = h - bottom;
        for (reason, n) in refused {
            y -= scale(*n);
            bars.push((
                x + slot * 0.5,
                y,
                slot * 0.35,
                scale(*n),
                colour(reason),
                format!("{week}: {n} refused, {reason}"),
            ));
        }
    }
    html! {
        figure {
            svg.chart xmlns="http://www.w3.org/2000/svg" viewBox=(format!("0 0 {w} {h}")) role="img" aria-labelledby="weekly-chart" {
                title #weekly-chart { "Per week: targets forwarded (grey) and refusals stacked by reason" }
                text x="0" y="12" class="label" { (max) }
                @for (x, y, bw, bh, fill, what) in &bars {
                    rect.week x=(format!("{x:.1}")) y=(format!("{y:.1}")) width=(format!("{bw:.1}")) height=(format!("{bh:.1}")) fill=(fill) { title { (what) } }
                }
                @for (i, (start, _, _)) in weeks.iter().enumerate() {
                    text x=(format!("{:.1}", left + i as f64 * slot + slot / 2.0)) y=(h - bottom + 14.0) class="label" text-anchor="middle" { (date(*start).get(5..10).unwrap_or("")) }
                }
            }
            figcaption {
                "Grey: targets forwarded. Refused, by reason: "
                @for (i, r) in reasons.iter().enumerate() {
                    @if i > 0 { ", " }
                    svg width="10" height="10" aria-hidden="true" { rect width="10" height="10" fill=(colour(r)) {} }
                    " " (r)
                }
            }
        }
    }
}

/// Refusals per reason, as bars (server-rendered SVG).
fn refusal_chart(by_reason: &[(String, u64)]) -> Markup {
    let max = by_reason.iter().map(|(_, n)| *n).max().unwrap_or(1).max(1);
    let row = 22.0_f64;
    let (w, left) = (640.0_f64, 300.0_f64);
    let h = row * by_reason.len() as f64 + 10.0;
    html! {
        svg.chart xmlns="http://www.w3.org/2000/svg" viewBox=(format!("0 0 {w} {h}")) role="img" aria-labelledby="refusal-chart" {
            title #refusal-chart { "Refusals by reason" }
            @for (i, (reason, n)) in by_reason.iter().enumerate() {
                text x="0" y=(format!("{:.0}", 16.0 + i as f64 * row)) class="label" { (reason) }
                rect x=(left) y=(format!("{:.0}", 4.0 + i as f64 * row)) height="16"
                     width=(format!("{:.1}", (w - left - 40.0) * *n as f64 / max as f64)) class="bar" {}
                text x=(format!("{:.1}", left + 6.0 + (w - left - 40.0) * *n as f64 / max as f64)) y=(format!("{:.0}", 16.0 + i as f64 * row)) class="label" { (n) }
            }
        }
    }
}

async fn index(
    State(st): State<Arc<PageState>>,
    headers: HeaderMap,
    Query(p): Query<Params>,
) -> Response {
    let now = alpr_pki::now_unix();
    if p.token.is_some() {
        return signin_page(
            StatusCode::BAD_REQUEST,
            Some(
                "Sign-in tokens go in the form below, never in the address (an address ends up in histories and logs). Nothing was signed in.",
            ),
        );
    }
    let Some(reg) = session(&st, &headers, now) else {
        return signin_page(StatusCode::UNAUTHORIZED, None);
    };
    let who = reg.id.clone();
    let my_state = who.jurisdiction.as_ref().map(|j| j.to_string());
    let b = st.broker.clone();
    let built = tokio::task::spawn_blocking(move || {
        let db = b.db();
        let weeks = crate::store::routing_weeks(&db, 12);
        let stats = crate::store::routing_stats(&db);
        drop(db);
        b.regulator_view().map(|v| (v, stats, weeks))
    })
    .await;
    let (view, stats, weeks) = match built {
        Ok(Ok((v, Ok((s, _)), Ok(w)))) => (v, s, w),
        _ => {
            return respond(
                StatusCode::SERVICE_UNAVAILABLE,
                page(
                    "Not available",
                    Some(&who),
                    html! { p.error { "The registry could not be read; try again." } },
                ),
            );
        }
    };
    let nonempty = |v: &Option<String>| {
        v.as_deref()
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .map(str::to_owned)
    };
    let filter = ListFilter {
        agency: nonempty(&p.agency).map(|a| a.to_ascii_uppercase()),
        state: nonempty(&p.state).map(|s| s.to_ascii_uppercase()),
        status: nonempty(&p.status),
        expiring_within_days: None,
    };
    let rows = regulator::rows(&view, &filter, now);
    let all = regulator::rows(&view, &ListFilter::default(), now);
    let mut by_status: std::collections::BTreeMap<&str, usize> = Default::default();
    for r in &all {
        *by_status.entry(r.status.as_str()).or_default() += 1;
    }
    let active: Vec<_> = all.iter().filter(|r| r.status == "active").collect();
    let soon: Vec<_> = active
        .iter()
        .filter(|r| r.valid_until <= now + 30 * 86_400)
        .collect();
    let mut by_reason: std::collections::BTreeMap<String, u64> = Default::default();
    for (reason, _, n) in &stats {
        *by_reason.entry(reason.clone()).or_default() += n;
    }
    let by_reason: Vec<(String, u64)> = by_reason.into_iter().collect();
    let states: std::collections::BTreeSet<&str> = all
        .iter()
        .flat_map(|r| [r.provider_state.as_str(), r.requester_state.as_str()])
        .filter(|s| !s.is_empty())
        .collect();
    respond(
        StatusCode::OK,
        page(
            "ALPR agreement registry",
            Some(&who),
            html! {
                h2 { "Tree head" }
                p #head {
                    (view.head.size) " entries, root " code { (hex::encode(view.head.root)) }
                    ", signed by the broker " (time_el(view.head.timestamp)) "; "
                    (view.head.cosigners.len()) " regulator cosignature(s)"
                    @if !view.head.cosigners.is_empty() { ": " (view.head.cosigners.iter().map(|c| c.describe()).collect::<Vec<_>>().join(", ")) }
                    ". Every signature and the tree were verified by this page."
                }
                h2 { "Agreements" }
                form.filters method="get" action="/" {
                    label for="state" { "State" }
                    select #state name="state" {
                        option value="" { "every state" }
                        @for s in &states { option value=(s) selected[filter.state.as_deref() == Some(*s)] { (s) } }
                    }
                    label for="agency" { "Agency (ORI)" }
                    input #agency name="agency" value=(filter.agency.clone().unwrap_or_default());
                    label for="status" { "Status" }
                    select #status name="status" {
                        option value="" { "every status" }
                        @for s in ["active", "expired", "revoked", "suspended"] { option value=(s) selected[filter.status.as_deref() == Some(s)] { (s) } }
                    }
                    button type="submit" { "Filter" }
                }
                table #agreements {
                    caption { (rows.len()) " of " (all.len()) " agreements" }
                    thead { tr { th scope="col" { "Id" } th scope="col" { "Provider" } th scope="col" { "Requester" } th scope="col" { "Kind" } th scope="col" { "Status" } th scope="col" { "Purposes" } th scope="col" { "Look-back" } th scope="col" { "Valid until" } th scope="col" { "Justification" } th scope="col" { "Action" } } }
                    tbody { @for r in &rows {
                        tr class=(r.status) {
                            td { code { (r.id) } }
                            td { (r.provider_name) br; (r.provider) " (" (r.provider_state) ")" }
                            td { (r.requester_name) br; (r.requester) " (" (r.requester_state) ")" }
                            td { (r.requester_kind) }
                            td { (r.status) }
                            td { (purposes(&r.purposes)) }
                            td { (r.lookback_days) " days" }
                            td { (time_el(r.valid_until)) }
                            td { (r.justification) }
                            td {
                                // The provider's state's regulator suspends and lifts.
                                @if my_state.as_deref() == Some(r.provider_state.as_str()) {
                                    @if r.status == "active" {
                                        a href=(format!("/action?id={}&do=suspend", r.id)) aria-label=(format!("Suspend {}", r.id)) { "Suspend" }
                                    } @else if r.status == "suspended" {
                                        a href=(format!("/action?id={}&do=lift", r.id)) aria-label=(format!("Lift the suspension of {}", r.id)) { "Lift" }
                                    }
                                }
                            }
                        }
                    } }
                }
                h2 { "Compliance report" }
                section #report {
                    p { (all.len()) " agreements: " (by_status.iter().map(|(k, v)| format!("{v} {k}")).collect::<Vec<_>>().join(", ")) "." }
                    table {
                        caption { "Active sharing by provider" }
                        thead { tr { th scope="col" { "Provider" } th scope="col" { "State" } th scope="col" { "Shares with" } } }
                        tbody { @for r in &active { tr { td { (r.provider_name) " (" (r.provider) ")" } td { (r.provider_state) } td { (r.requester_name) " (" (r.requester) ", " (r.requester_state) ", " (r.requester_kind) ")" } } } }
                    }
                    table {
                        caption { "Out-of-state or federal partners" }
                        thead { tr { th scope="col" { "Provider" } th scope="col" { "Requester" } th scope="col" { "Requester's state and kind" } } }
                        tbody { @for r in active.iter().filter(|r| r.provider_state != r.requester_state) {
                            tr { td { (r.provider_name) " (" (r.provider) ")" } td { (r.requester_name) " (" (r.requester) ")" } td { (r.requester_state) ", " (r.requester_kind) } }
                        } }
                    }
                    table {
                        caption { "Expiring within 30 days" }
                        thead { tr { th scope="col" { "Agreement" } th scope="col" { "Parties" } th scope="col" { "Until" } } }
                        tbody { @for r in &soon { tr { td { code { (r.id) } } td { (r.provider) " → " (r.requester) } td { (time_el(r.valid_until)) } } } }
                    }
                    table {
                        caption { "Systems in use (each node's newest published key)" }
                        thead { tr { th scope="col" { "Agency" } th scope="col" { "System" } th scope="col" { "Published" } } }
                        tbody { @for (ori, keys) in &view.sealing_keys { @if let Some(k) = keys.last() {
                            tr { td { (ori) } td { @if k.product.is_empty() { "not stated" } @else { (k.product) " " (k.product_version) } } td { (time_el(k.published_at)) } }
                        } } }
                    }
                    h3 { "Searches and refusals per week (the broker's routing log)" }
                    @if weeks.is_empty() { p { "Nothing routed yet." } } @else { (weekly_chart(&weeks)) }
                    h3 { "Refusals by reason (the broker's routing log)" }
                    @if stats.is_empty() { p { "None recorded." } } @else {
                        (refusal_chart(&by_reason))
                        table {
                            caption { "Refusals by reason and agency" }
                            thead { tr { th scope="col" { "Reason" } th scope="col" { "Agency asked" } th scope="col" { "Refusals" } } }
                            tbody { @for (reason, target, n) in &stats { tr { td { (reason) } td { (target) } td { (n) } } } }
                        }
                    }
                }
            },
        ),
    )
}

const STYLE: &str = "body{font:15px/1.45 system-ui,sans-serif;margin:0;color:#1b1f24;background:#f6f8fa}header{display:flex;gap:1rem;align-items:center;padding:.6rem 1rem;background:#0d2238;color:#fff}header form{margin-left:auto}main{max-width:80rem;margin:1rem auto;padding:1rem 1.5rem;background:#fff;border:1px solid #d0d7de}table{border-collapse:collapse;width:100%;margin:1rem 0;font-size:14px}caption{text-align:left;font-weight:700}th,td{border-bottom:1px solid #d0d7de;padding:4px 8px;text-align:left;vertical-align:top}.revoked,.expired{color:#777}.suspended{color:#b35900}.error{color:#a40e26;font-weight:600}label{display:block;margin-top:.5rem;font-weight:600}textarea,input,select{font:inherit;width:min(100%,40rem)}.filters{display:flex;gap:.6rem;flex-wrap:wrap;align-items:end}.filters label{margin:0}.filters input,.filters select{width:auto}button{font:inherit;margin-top:.6rem}:focus-visible{outline:3px solid #f0b400}.skip{position:absolute;left:-999px}.skip:focus{left:8px}svg.chart{width:100%;max-width:640px}svg .bar{fill:#a40e26}svg .label{font-size:12px}pre{background:#f6f8fa;padding:.5rem;overflow-x:auto}";

async fn style() -> Response {
    let mut r = STYLE.into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/css; charset=utf-8"),
    );
    r
}

/// The page's one script: signs a suspension or lift with the regulator's own key, read
/// from the key file they choose, imported into WebCrypto as non-extractable and used once
/// in this browser; only the signature is sent.
const SCRIPT: &str = r#"'use strict';
// Times: written in UTC by the broker, shown here in this browser's time zone (the UTC
// text stays as the tooltip).
(function () {
  const pad = (n) => String(n).padStart(2, '0');
  document.querySelectorAll('time[datetime]').forEach((t) => {
    const d = new Date(t.getAttribute('datetime'));
    if (isNaN(d.getTime())) return;
    const part = new Intl.DateTimeFormat(undefined, { timeZoneName: 'short' })
      .formatToParts(d).find((x) => x.type === 'timeZoneName');
    t.title = t.textContent;
    t.textContent = d.getFullYear() + '-' + pad(d.getMonth() + 1) + '-' + pad(d.getDate()) + ' ' +
      pad(d.getHours()) + ':' + pad(d.getMinutes()) + (part ? ' ' + part.value : '');
  });
})();
(function () {
  const form = document.getElementById('act-form');
  if (!form) return;
  const status = (t) => { const s = document.getElementById('act-status'); s.textContent = t; };
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    try {
      const file = document.getElementById('keyfile').files[0];
      if (!file) { status('Choose your regulator key file.'); return; }
      const pem = await file.text();
      const b64 = pem.replace(/-----[^-]+-----/g, '').replace(/\s+/g, '');
      const der = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
      const key = await crypto.subtle.importKey('pkcs8', der, { name: 'ECDSA', namedCurve: 'P-256' }, false, ['sign']);
      const input = new Uint8Array((form.dataset.signingInput.match(/../g) || []).map((h) => parseInt(h, 16)));
      const sig = await crypto.subtle.sign({ name: 'ECDSA', hash: 'SHA-256' }, key, input);
      form.elements.sig.value = Array.from(new Uint8Array(sig), (b) => b.toString(16).padStart(2, '0')).join('');
      form.submit();
    } catch (e) {
      status('That file is not a P-256 key in PEM (PKCS#8): ' + e);
    }
  });
})();
"#;

async fn script() -> Response {
    let mut r = SCRIPT.into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/javascript; charset=utf-8"),
    );
    r
}

#[derive(Deserialize)]
struct ActionParams {
    id: String,
    r#do: String,
}

fn action_word(a: &str) -> Option<(&'static str, &'static str)> {
    match a {
        "suspend" => Some(("suspend", "Suspend")),
        "lift" => Some(("lift", "Lift the suspension of")),
        _ => None,
    }
}

fn notice(who: &VerifiedIdentity, status: StatusCode, title: &str, text: &str) -> Response {
    respond(
        status,
        page(
            title,
            Some(who),
            html! {
                p class=(if status.is_success() { "notice" } else { "error" }) role="alert" { (text) }
                p { a href="/" { "Back to the registry" } }
            },
        ),
    )
}

/// `GET /action?id=…&do=suspend|lift`: the reason, before anything is signed.
async fn action_form(
    State(st): State<Arc<PageState>>,
    headers: HeaderMap,
    Query(p): Query<ActionParams>,
) -> Response {
    let now = alpr_pki::now_unix();
    let Some(reg) = session(&st, &headers, now) else {
        return signin_page(StatusCode::UNAUTHORIZED, None);
    };
    let Some((action, label)) = action_word(&p.r#do) else {
        return notice(
            &reg.id,
            StatusCode::BAD_REQUEST,
            "Registry action",
            "Only suspend and lift are done here.",
        );
    };
    respond(
        StatusCode::OK,
        page(
            &format!("{label} agreement"),
            Some(&reg.id),
            html! {
                p { "Agreement " code { (p.id) } ". The reason is signed with your key and recorded in the registry, where both agencies and every regulator see it." }
                form #reason-form method="post" action="/action/prepare" {
                    input type="hidden" name="csrf" value=(reg.csrf);
                    input type="hidden" name="id" value=(p.id);
                    input type="hidden" name="do" value=(action);
                    label for="reason" { "Reason" }
                    textarea #reason name="reason" rows="3" required {}
                    button type="submit" { "Continue" }
                }
            },
        ),
    )
}

async fn read_form(body: Body) -> Option<HashMap<String, String>> {
    let bytes = axum::body::to_bytes(body, MAX_FORM).await.ok()?;
    Some(form_urlencoded::parse(&bytes).into_owned().collect())
}

fn form_ok(reg: &Regulator, headers: &HeaderMap, f: &HashMap<String, String>) -> bool {
    let cross = headers
        .get("sec-fetch-site")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v == "cross-site" || v == "same-site");
    let sent = f.get("csrf").map(String::as_str).unwrap_or("");
    !cross
        && sent.len() == reg.csrf.len()
        && sent
            .bytes()
            .zip(reg.csrf.bytes())
            .fold(0u8, |a, (x, y)| a | (x ^ y))
            == 0
}

/// `POST /action/prepare`: the exact action the regulator's key will sign.
async fn action_prepare(
    State(st): State<Arc<PageState>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let now = alpr_pki::now_unix();
    let Some(reg) = session(&st, &headers, now) else {
        return signin_page(StatusCode::UNAUTHORIZED, None);
    };
    let Some(f) = read_form(body).await.filter(|f| form_ok(&reg, &headers, f)) else {
        return notice(
            &reg.id,
            StatusCode::FORBIDDEN,
            "Registry action",
            "This form was not sent from a page of your current session; nothing was done.",
        );
    };
    let field = |k: &str| f.get(k).map(|v| v.trim().to_owned()).unwrap_or_default();
    let (id, reason) = (field("id"), field("reason"));
    let Some((action, label)) = action_word(&field("do")) else {
        return notice(
            &reg.id,
            StatusCode::BAD_REQUEST,
            "Registry action",
            "Only suspend and lift are done here.",
        );
    };
    if reason.is_empty() {
        return notice(
            &reg.id,
            StatusCode::BAD_REQUEST,
            "Registry action",
            "Give a reason; it is recorded with the action.",
        );
    }
    let payload = alpr_proto::pb::AgreementAction {
        agreement_id: id.clone(),
        action: action.into(),
        reason: reason.clone(),
        signed_at: now,
    }
    .encode_to_vec();
    let input = envelope::signing_input(alpr_proto::registry::ACTION, &payload);
    let Some(pending) = random_hex() else {
        return notice(
            &reg.id,
            StatusCode::SERVICE_UNAVAILABLE,
            "Registry action",
            "No randomness; try again.",
        );
    };
    {
        let mut m = st.pending.lock().unwrap_or_else(|p| p.into_inner());
        m.retain(|_, (_, _, until)| *until > now);
        m.insert(pending.clone(), (reg.id.describe(), payload, now + 600));
    }
    respond(
        StatusCode::OK,
        page(
            &format!("{label} agreement"),
            Some(&reg.id),
            html! {
                table { tbody {
                    tr { th scope="row" { "Agreement" } td { code { (id) } } }
                    tr { th scope="row" { "Action" } td { (action) } }
                    tr { th scope="row" { "Reason" } td { (reason) } }
                    tr { th scope="row" { "Signed by" } td { (reg.id.describe()) } }
                } }
                p { "Your key signs this action in this browser: the page's script reads the key file you choose, imports it into the browser's crypto as a key that cannot be read back, signs, and sends only the signature." }
                p #act-status role="alert" {}
                form #act-form method="post" action="/action/send" data-signing-input=(hex::encode(&input)) {
                    input type="hidden" name="csrf" value=(reg.csrf);
                    input type="hidden" name="pending" value=(pending);
                    input type="hidden" name="sig" value="";
                    label for="keyfile" { "Your regulator key file (PEM)" }
                    input #keyfile type="file" accept=".key,.pem";
                    button type="submit" { "Sign and " (action) }
                }
            },
        ),
    )
}

/// `POST /action/send`: the signed action, applied as the CLI's `registry suspend|lift`
/// (the registry checks that its signer is the provider state's regulator).
async fn action_send(State(st): State<Arc<PageState>>, headers: HeaderMap, body: Body) -> Response {
    let now = alpr_pki::now_unix();
    let Some(reg) = session(&st, &headers, now) else {
        return signin_page(StatusCode::UNAUTHORIZED, None);
    };
    let Some(f) = read_form(body).await.filter(|f| form_ok(&reg, &headers, f)) else {
        return notice(
            &reg.id,
            StatusCode::FORBIDDEN,
            "Registry action",
            "This form was not sent from a page of your current session; nothing was done.",
        );
    };
    let pending = f.get("pending").cloned().unwrap_or_default();
    let taken = {
        let mut m = st.pending.lock().unwrap_or_else(|p| p.into_inner());
        m.remove(&pending)
            .filter(|(who, _, until)| *who == reg.id.describe() && *until > now)
    };
    let Some((_, payload, _)) = taken else {
        return notice(
            &reg.id,
            StatusCode::CONFLICT,
            "Registry action",
            "This action was sent already, or its page expired; nothing was done again.",
        );
    };
    let Some(signature) = f
        .get("sig")
        .and_then(|h| hex::decode(h).ok())
        .and_then(|b| alpr_pki::p1363_to_der(&b))
    else {
        return notice(
            &reg.id,
            StatusCode::BAD_REQUEST,
            "Registry action",
            "No signature came from your browser; nothing was done.",
        );
    };
    let signed = Signed {
        payload_type: alpr_proto::registry::ACTION.into(),
        payload,
        signature,
        cert_chain: reg.chain.clone(),
        sealed_boxes: vec![],
        sealed_box_proofs: vec![],
    };
    let b = st.broker.clone();
    let id = reg.id.clone();
    match tokio::task::spawn_blocking(move || b.act(&id, &signed)).await {
        Ok(Ok((index, _))) => notice(
            &reg.id,
            StatusCode::OK,
            "Done",
            &format!(
                "Recorded in the registry as entry {index}. Both agencies' nodes apply it at their next sync."
            ),
        ),
        Ok(Err(e)) => notice(
            &reg.id,
            StatusCode::FORBIDDEN,
            "Refused",
            &format!("The registry refused the action: {e}"),
        ),
        Err(e) => notice(
            &reg.id,
            StatusCode::SERVICE_UNAVAILABLE,
            "Not done",
            &e.to_string(),
        ),
    }
}

/// The page's router.
pub fn router(broker: Arc<Broker>) -> axum::Router {
    let st = Arc::new(PageState {
        broker,
        sessions: Default::default(),
        pending: Default::default(),
        setups: Default::default(),
    });
    axum::Router::new()
        .route("/", axum::routing::get(index))
        .route("/signin", axum::routing::post(signin::signin))
        .route("/signin/setup", axum::routing::post(signin::signin_setup))
        .route("/signout", axum::routing::post(signin::signout))
        .route("/page.css", axum::routing::get(style))
        .route("/page.js", axum::routing::get(script))
        .route("/action", axum::routing::get(action_form))
        .route("/action/prepare", axum::routing::post(action_prepare))
        .route("/action/send", axum::routing::post(action_send))
        .with_state(st)
}

#[cfg(test)]
mod tests;
