//! The investigator's pages: a search form that teaches the rules, the review of the
//! exact query the browser then signs, the results per agency (a sortable table and a plot
//! of positions), the export of one search (logged) and the person's own history.
//!
//! The node builds the query from the form (normalized exactly as the CLI's
//! [`crate::client::build_query`]), the browser signs `signing_input(QUERY, bytes)` with
//! the person's key, and the node hands the signed envelope to [`Node::search`] — the
//! same checks, endorsement, sealing, routing and logging as a search from the CLI.

use std::sync::Arc;

use alpr_pki::Role;
use alpr_proto::RefusalReason;
use alpr_proto::admission::QueryFacts;
use alpr_proto::agreement::AgreementStatus;
use alpr_proto::envelope::{self, QUERY};
use alpr_proto::pb::{Answer, Query, Read, Signed, TargetResult, TargetStatus};
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use maud::{Markup, html};
use prost::Message;

use super::auth::{self, Form, log, on_node, read_form};
use super::pages::{self, Page, layout, message, respond};
use super::state::Session;
use super::state::{Console, Done, Pending, random_token};
use crate::audit::{AuditEntry, Decision, Event};
use crate::client::SearchParams;

/// How long a reviewed query waits for its signature, seconds.
const PENDING_SECS: i64 = 600;
/// How long a search's results stay available to its investigator, seconds.
const DONE_SECS: i64 = 3600;
/// The lifetime of a query from the console, seconds (as the CLI's default).
const QUERY_TTL: i64 = 300;

/// Refuse a non-investigator's attempt at the search pages (logged).
async fn investigators_only(c: &Arc<Console>, s: &Session, what: &str) -> Result<(), Response> {
    if s.role == Role::Investigator {
        return Ok(());
    }
    let now = alpr_pki::now_unix();
    let mut e = auth::entry(
        now,
        Event::OutboundQuery,
        Decision::Refused,
        &s.user,
        format!("{what} refused: a {} cannot search", s.role),
    );
    e.reason_code = Some(RefusalReason::NotAuthorized.as_str_name().into());
    e.decided_by = Some(c.node.ori().to_owned());
    log(c, vec![e]).await?;
    Err(message(
        c.node.ori(),
        StatusCode::FORBIDDEN,
        "Search not permitted",
        &format!(
            "Your account is a {} account. Only investigators search; the attempt was logged.",
            s.role
        ),
        Some(s),
    ))
}

/// One agency this agency's investigators may ask, and why (not).
struct Reachable {
    ori: String,
    usable: bool,
    note: String,
    purposes: Vec<String>,
}

fn reachable(c: &Console, now: i64) -> Vec<Reachable> {
    let me = c.node.ori();
    let mut by: std::collections::BTreeMap<String, Reachable> = Default::default();
    for v in c.node.agreements().iter() {
        let t = &v.terms;
        if t.requester_ori != me {
            continue;
        }
        let (usable, note) = match v.status {
            AgreementStatus::Revoked => (false, "agreement revoked".to_string()),
            AgreementStatus::Suspended => (false, "agreement suspended by a regulator".into()),
            _ if t.valid_until <= now => (
                false,
                format!("agreement expired {}", pages::when(t.valid_until)),
            ),
            _ if t.valid_from > now => (
                false,
                format!("agreement in force from {}", pages::when(t.valid_from)),
            ),
            _ if !t.data_types.iter().any(|d| d == "reads") => {
                (false, "agreement covers hot lists only".into())
            }
            _ => (
                true,
                format!(
                    "agreement in force until {}; look-back {} days",
                    pages::when(t.valid_until),
                    t.max_lookback_days
                ),
            ),
        };
        let r = Reachable {
            ori: t.provider_ori.clone(),
            usable,
            note,
            purposes: t.purposes.clone(),
        };
        match by.get(&r.ori) {
            Some(old) if old.usable || !r.usable => {}
            _ => {
                by.insert(r.ori.clone(), r);
            }
        }
    }
    by.into_values().collect()
}

fn purpose_label(code: &str) -> String {
    match alpr_proto::purpose::lookup(code) {
        Ok(p) => format!("{code} — {}", p.name),
        Err(_) => code.to_owned(),
    }
}

fn search_page(c: &Console, s: &Session, f: &Form, error: Option<&str>) -> Markup {
    let now = alpr_pki::now_unix();
    let or = |k: &str, d: String| {
        let v = f.get(k);
        if v.is_empty() { d } else { v.to_owned() }
    };
    let targets = reachable(c, now);
    let chosen: Vec<&String> = f.all("target").iter().collect();
    let lookback = c.node.cfg.policy.no_warrant_lookback_days;
    layout(
        c.node.ori(),
        "Search",
        Some(s),
        html! {
            @if let Some(e) = error { p.error role="alert" { (e) } }
            form #search-form method="post" action="/search/prepare" {
                input type="hidden" name="csrf" value=(s.csrf);
                fieldset {
                    legend { "Why you are searching" }
                    label for="purpose" { "Purpose (offense or non-crime purpose; type a code or words)" }
                    input #purpose name="purpose" list="purposes" required value=(f.get("purpose")) aria-describedby="purpose-help";
                    datalist #purposes {
                        @for p in alpr_proto::purpose::all() {
                            option value=(p.code) { (p.code) " — " (p.name) }
                        }
                    }
                    p #purpose-help.help { "The purpose table (NIBRS offenses and the non-crime purposes) decides which agencies' agreements cover the search." }
                    label for="case_number" { "Case number" }
                    input #case_number name="case_number" required value=(f.get("case_number"));
                    label for="reason" { "Reason" }
                    textarea #reason name="reason" required rows="3" aria-describedby="reason-help" { (f.get("reason")) }
                    p #reason-help.help { "Say what happened and why this plate: \"investigation\" or \"follow-up\" alone is refused by every node, as the state's auditor asks." }
                    label for="warrant_ref" { "Warrant reference (if the window needs one)" }
                    input #warrant_ref name="warrant_ref" value=(f.get("warrant_ref")) aria-describedby="warrant-help";
                    p #warrant-help.help { "Without a warrant a search may reach back at most " (lookback) " days here; other agencies' rules may be stricter." }
                }
                fieldset {
                    legend { "What you are looking for" }
                    label for="plate" { "Plate (use ? for one unknown character)" }
                    input #plate name="plate" required autocomplete="off" value=(f.get("plate"));
                    label for="plate_state" { "Plate state (two letters, or ANY)" }
                    input #plate_state name="plate_state" value=(or("plate_state", "ANY".into())) maxlength="3";
                    label for="from" { "From (" span.tz { "UTC" } ")" }
                    input #from name="from" type="datetime-local" required data-utc value=(pages::datetime_again(f, "from", now - 7 * 86_400));
                    label for="to" { "To (" span.tz { "UTC" } ")" }
                    input #to name="to" type="datetime-local" required data-utc value=(pages::datetime_again(f, "to", now));
                }
                fieldset #targets {
                    legend { "Agencies to ask" }
                    @if targets.is_empty() {
                        p { "No agreement names this agency as a requester yet: no agency can be searched." }
                    }
                    ul.targets {
                        @for t in &targets {
                            li data-purposes=(t.purposes.join(" ")) {
                                input type="checkbox" name="target" value=(t.ori) id=(format!("t-{}", t.ori)) disabled[!t.usable] checked[chosen.contains(&&t.ori)];
                                label for=(format!("t-{}", t.ori)) { (t.ori) }
                                " "
                                span.note { (t.note) "; purposes " (t.purposes.join(", ")) }
                                span.purpose-note aria-live="polite" {}
                            }
                        }
                    }
                    label for="other" { "Other agencies (ORIs, separated by commas)" }
                    input #other name="other" value=(f.get("other")) aria-describedby="other-help";
                    p #other-help.help { "An agency without an agreement with yours refuses; the refusal is shown with its reason." }
                }
                button type="submit" { "Review the query" }
            }
        },
    )
}

/// `GET /search`.
pub async fn form(State(c): State<Arc<Console>>, headers: HeaderMap) -> Page {
    let s = auth::session(&c, &headers).await?;
    investigators_only(&c, &s, "the search page").await?;
    Ok(respond(
        StatusCode::OK,
        search_page(&c, &s, &Form::default(), None),
    ))
}

fn params_of(f: &Form) -> Result<SearchParams, String> {
    let mut targets: Vec<String> = f.all("target").to_vec();
    for t in f.get("other").split([',', ' ', ';']) {
        let t = t.trim().to_ascii_uppercase();
        if !t.is_empty() && !targets.contains(&t) {
            targets.push(t);
        }
    }
    if targets.is_empty() {
        return Err("Choose at least one agency to ask.".into());
    }
    let plate = f.get("plate").trim().to_owned();
    let state = f.get("plate_state").trim();
    Ok(SearchParams {
        shape: if plate.contains('?') {
            alpr_proto::input::SHAPE_WILDCARD.into()
        } else {
            String::new()
        },
        plate,
        plate_state: if state.is_empty() {
            "ANY".into()
        } else {
            state.to_owned()
        },
        window_start: pages::form_datetime(f, "from", "From")?,
        window_end: pages::form_datetime(f, "to", "To")?,
        purpose: f
            .get("purpose")
            .split_whitespace()
            .next()
            .unwrap_or("")
            .to_owned(),
        case_number: f.get("case_number").to_owned(),
        reason: f.get("reason").to_owned(),
        warrant_ref: f.get("warrant_ref").to_owned(),
        targets,
        ttl_secs: QUERY_TTL,
        ..SearchParams::default()
    })
}

/// `POST /search/prepare`: build the query, check it as the node will, show it for
/// signing. A query the rules refuse is refused here, logged, with the reason on the form.
pub async fn prepare(State(c): State<Arc<Console>>, headers: HeaderMap, body: Body) -> Page {
    let f = read_form(&c, body).await?;
    let s = auth::session_post(&c, &headers, &f).await?;
    investigators_only(&c, &s, "a search").await?;
    let id = auth::identity(&c, &s)?;
    let ori = c.node.ori().to_owned();
    let now = alpr_pki::now_unix();
    let mut facts = QueryFacts {
        investigator: Some(id.clone()),
        ..QueryFacts::default()
    };
    let user = s.user.clone();
    let account = on_node(&c, move |n| {
        Ok(crate::accounts::check_can_search(
            &n.db(),
            &user,
            &n.cfg.accounts,
            now,
        ))
    })
    .await
    .map_err(|e| pages::internal(&ori, e))?;
    let checked: Result<Query, (RefusalReason, String)> = (|| {
        let p = params_of(&f).map_err(|m| (RefusalReason::InvalidInput, m))?;
        if alpr_proto::purpose::lookup(&p.purpose).is_err() {
            return Err((
                RefusalReason::InvalidInput,
                format!(
                    "{:?} is not a purpose code; choose one from the list.",
                    p.purpose
                ),
            ));
        }
        if p.window_end > now + 60 {
            return Err((
                RefusalReason::InvalidInput,
                "The window ends in the future: reads cannot be searched before they exist.".into(),
            ));
        }
        let q = crate::client::build_query(&id, &p, now).map_err(|e| {
            (
                e.reason().unwrap_or(RefusalReason::InvalidInput),
                e.to_string(),
            )
        })?;
        facts.query = Some(q.clone());
        alpr_proto::admission::check_query(&q, now).map_err(|e| (e.reason(), e.detail()))?;
        account.map_err(|e| (e.reason(), e.detail()))?;
        Ok(q)
    })();
    let query = match checked {
        Ok(q) => q,
        Err((reason, detail)) => {
            let mut e = AuditEntry::for_query(Event::OutboundQuery, Decision::Refused, now, &facts);
            e.reason_code = Some(reason.as_str_name().into());
            e.detail = Some(format!("refused before signing (web console): {detail}"));
            e.decided_by = Some(ori.clone());
            log(&c, vec![e]).await?;
            return Err(respond(
                StatusCode::BAD_REQUEST,
                search_page(&c, &s, &f, Some(&format!("Not sent: {detail}"))),
            ));
        }
    };
    let payload = query.encode_to_vec();
    let signing_input = envelope::signing_input(QUERY, &payload);
    let pending_id = random_token(16).map_err(|e| pages::internal(&ori, e))?;
    {
        let mut m = c.pending.lock().unwrap_or_else(|p| p.into_inner());
        m.retain(|_, p| p.expires > now);
        m.insert(
            pending_id.clone(),
            Pending {
                user: s.user.clone(),
                payload,
                expires: now + PENDING_SECS,
            },
        );
    }
    Ok(respond(
        StatusCode::OK,
        layout(
            &ori,
            "Review and sign",
            Some(&s),
            html! {
                p { "This is the query your browser will sign with your key. Each agency checks your signature, the agreement and its own rules, and logs your search." }
                (query_summary(&query))
                section #signed-view hidden aria-labelledby="signed-view-title" {
                    h2 #signed-view-title { "What your browser will sign (read by your browser from the bytes)" }
                }
                p #key-status role="status" {}
                form #sign-form method="post" action="/search/send" data-user=(s.user) data-signing-input=(hex::encode(&signing_input)) {
                    input type="hidden" name="csrf" value=(s.csrf);
                    input type="hidden" name="pending" value=(pending_id);
                    input type="hidden" name="sig" value="";
                    button type="submit" { "Sign and send" }
                }
                p { a href="/search" { "Start over" } }
            },
        ),
    ))
}

fn query_summary(q: &Query) -> Markup {
    html! {
        table.summary {
            caption { "Query " (hex::encode(&q.query_id)) }
            tbody {
                tr { th scope="row" { "Plate" } td { (q.plate) " (" (q.plate_state) ")" @if !q.shape.is_empty() { " — " (q.shape) } } }
                tr { th scope="row" { "Window" } td { (pages::time(q.window_start)) " to " (pages::time(q.window_end)) } }
                tr { th scope="row" { "Purpose" } td { (purpose_label(&q.purpose_code)) } }
                tr { th scope="row" { "Case" } td { (q.case_number) } }
                tr { th scope="row" { "Reason" } td { (q.reason) } }
                @if !q.warrant_ref.is_empty() { tr { th scope="row" { "Warrant" } td { (q.warrant_ref) } } }
                tr { th scope="row" { "Agencies" } td { (q.targets.join(", ")) } }
                tr { th scope="row" { "Signed by" } td { (q.requester_user) " of " (q.requester_ori) } }
            }
        }
    }
}

/// `POST /search/send`: the browser's signature over the reviewed query; the node's own
/// search path from here on.
pub async fn send(State(c): State<Arc<Console>>, headers: HeaderMap, body: Body) -> Page {
    let f = read_form(&c, body).await?;
    let s = auth::session_post(&c, &headers, &f).await?;
    investigators_only(&c, &s, "a search").await?;
    let id = auth::identity(&c, &s)?;
    let ori = c.node.ori().to_owned();
    let now = alpr_pki::now_unix();
    let pending = {
        let mut m = c.pending.lock().unwrap_or_else(|p| p.into_inner());
        match m.remove(f.get("pending")) {
            Some(p) if p.user == s.user && p.expires > now => Some(p),
            _ => None,
        }
    };
    let Some(pending) = pending else {
        let mut e = auth::entry(
            now,
            Event::OutboundQuery,
            Decision::Refused,
            &s.user,
            "a signed search form sent again, or after it expired, was refused (web console)"
                .into(),
        );
        e.reason_code = Some(RefusalReason::Replay.as_str_name().into());
        e.decided_by = Some(ori.clone());
        log(&c, vec![e]).await?;
        return Err(message(
            &ori,
            StatusCode::CONFLICT,
            "Already sent",
            "This search was already sent, or its review page expired. Nothing was sent again; see My searches, or start a new search.",
            Some(&s),
        ));
    };
    let Some(signature) = hex::decode(f.get("sig"))
        .ok()
        .and_then(|b| auth::p1363_to_der(&b))
    else {
        return Err(message(
            &ori,
            StatusCode::BAD_REQUEST,
            "Not signed",
            "Your browser sent no signature (is this the browser you enrolled?). Nothing was sent.",
            Some(&s),
        ));
    };
    let signed = Signed {
        payload_type: QUERY.into(),
        payload: pending.payload,
        signature,
        cert_chain: s.chain.iter().map(|c| c.to_vec()).collect(),
        sealed_boxes: vec![],
        sealed_box_proofs: vec![],
    };
    match c.node.search(Ok(id), signed.encode_to_vec()).await {
        Ok(resp) => {
            let query =
                Query::decode(signed.payload.as_slice()).map_err(|e| pages::internal(&ori, e))?;
            let key = hex::encode(&resp.query_id);
            {
                let mut m = c.done.lock().unwrap_or_else(|p| p.into_inner());
                m.retain(|_, d| d.at > now - DONE_SECS);
                m.insert(
                    key.clone(),
                    Done {
                        user: s.user.clone(),
                        query,
                        results: resp.results,
                        at: now,
                    },
                );
            }
            Ok(Redirect::to(&format!("/search/result/{key}")).into_response())
        }
        Err(e) => Err(message(
            &ori,
            StatusCode::FORBIDDEN,
            "Search refused by this node",
            &format!("{e}. Nothing was sent; the refusal was logged."),
            Some(&s),
        )),
    }
}

/// A refusal reason in plain words.
fn plain(reason: i32) -> &'static str {
    use RefusalReason as R;
    match R::try_from(reason).unwrap_or(R::Unspecified) {
        R::NoAgreement => "No agreement between your agency and this one covers this search.",
        R::AgreementExpired => "The agreement has expired.",
        R::AgreementRevoked => "The agreement was revoked.",
        R::AgreementSuspended => "A regulator suspended the agreement.",
        R::PurposeNotCovered => "The agreement does not cover this purpose.",
        R::PurposeProhibited => "This agency's state or policy forbids searches for this purpose.",
        R::LookbackExceeded => "The window reaches back further than the agreement allows.",
        R::WarrantRequired => "This window needs a warrant reference.",
        R::RequesterJurisdictionNotPermitted => {
            "This agency's state does not share with agencies of yours."
        }
        R::RequesterKindNotPermitted => {
            "This agency's state does not share with your kind of agency."
        }
        R::ReasonInsufficient => "The reason is not specific enough.",
        R::CaseNumberMissing => "A case number is required.",
        R::ProhibitedTerm => {
            "The query uses a term this agency refuses (for example immigration enforcement)."
        }
        R::NodeRefusing => "This agency has stopped answering searches (its sharing is off).",
        R::AccountInactive => "Your account may not search now.",
        R::RateLimited => "Too many searches in a short time; wait a minute.",
        R::Unavailable => "The agency's node did not answer in time.",
        R::BadReply => "The reply did not verify, so it was discarded.",
        R::RegistryStale => "The agreement registry view is too old to decide; try again shortly.",
        R::UnknownAgency => "No such agency in the federation.",
        _ => "Refused.",
    }
}

fn reads_of(r: &TargetResult) -> Vec<Read> {
    r.reply
        .as_ref()
        .filter(|_| r.status == TargetStatus::Answered as i32)
        .and_then(|s| Answer::decode(s.payload.as_slice()).ok())
        .map(|a| a.reads)
        .unwrap_or_default()
}

/// The reads on a plot of their positions (server-rendered SVG, camera labels).
fn plot(reads: &[(String, Read)]) -> Markup {
    if reads.is_empty() {
        return html! {};
    }
    let (w, h, m) = (640.0_f64, 360.0_f64, 40.0_f64);
    let lat = |r: &Read| r.latitude;
    let lon = |r: &Read| r.longitude;
    let (mut lo_lat, mut hi_lat, mut lo_lon, mut hi_lon) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
    for (_, r) in reads {
        lo_lat = lo_lat.min(lat(r));
        hi_lat = hi_lat.max(lat(r));
        lo_lon = lo_lon.min(lon(r));
        hi_lon = hi_lon.max(lon(r));
    }
    let span_lat = (hi_lat - lo_lat).max(0.01);
    let span_lon = (hi_lon - lo_lon).max(0.01);
    let x = |r: &Read| m + (lon(r) - lo_lon) / span_lon * (w - 2.0 * m);
    let y = |r: &Read| h - m - (lat(r) - lo_lat) / span_lat * (h - 2.0 * m);
    let mut cameras: Vec<&Read> = Vec::new();
    for (_, r) in reads {
        if !cameras.iter().any(|c| c.camera_id == r.camera_id) {
            cameras.push(r);
        }
    }
    html! {
        figure {
            svg.plot xmlns="http://www.w3.org/2000/svg" viewBox=(format!("0 0 {w} {h}")) role="img" aria-labelledby="plot-title" {
                title #plot-title { "Positions of the reads (" (reads.len()) "), north up" }
                rect x="0" y="0" width=(w) height=(h) class="plot-bg" {}
                @for (ori, r) in reads {
                    circle cx=(format!("{:.1}", x(r))) cy=(format!("{:.1}", y(r))) r="5" class="read" {
                        title { (r.plate) " at " (r.camera_id) " (" (ori) "), " (pages::when(r.captured_at)) }
                    }
                }
                @for r in &cameras {
                    text x=(format!("{:.1}", x(r) + 8.0)) y=(format!("{:.1}", y(r) - 6.0)) class="camera" { (r.camera_id) }
                }
            }
            figcaption { "Latitude " (format!("{lo_lat:.4}")) "–" (format!("{hi_lat:.4}")) ", longitude " (format!("{lo_lon:.4}")) "–" (format!("{hi_lon:.4}")) }
        }
    }
}

/// `GET /search/result/{id}`.
pub async fn result(
    State(c): State<Arc<Console>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Page {
    let s = auth::session(&c, &headers).await?;
    let ori = c.node.ori().to_owned();
    let m = c.done.lock().unwrap_or_else(|p| p.into_inner());
    let Some(d) = m.get(&id).filter(|d| d.user == s.user) else {
        return Err(message(
            &ori,
            StatusCode::NOT_FOUND,
            "Search results",
            "These results are not available (older than an hour, or not your search). Your search history lists every search.",
            Some(&s),
        ));
    };
    let mut all: Vec<(String, Read)> = Vec::new();
    for r in &d.results {
        for read in reads_of(r) {
            all.push((r.ori.clone(), read));
        }
    }
    all.sort_by_key(|(_, r)| r.captured_at);
    let page = layout(
        &ori,
        "Search results",
        Some(&s),
        html! {
            (query_summary(&d.query))
            table #results {
                caption { "Each agency's answer (every reply verified by this node)" }
                thead { tr { th scope="col" { "Agency" } th scope="col" { "Result" } th scope="col" { "Why" } } }
                tbody {
                    @for r in &d.results {
                        tr class=(format!("status-{}", r.status)) {
                            td { (r.ori) }
                            td {
                                @match TargetStatus::try_from(r.status).unwrap_or(TargetStatus::Unspecified) {
                                    TargetStatus::Answered => { "Answered with " (reads_of(r).len()) " reads" }
                                    TargetStatus::Refused => { "Refused" }
                                    TargetStatus::Unavailable => { "Unavailable" }
                                    TargetStatus::BadReply => { "Discarded (bad reply)" }
                                    _ => { "Unknown" }
                                }
                            }
                            td {
                                @if r.status != TargetStatus::Answered as i32 {
                                    (plain(r.reason)) " "
                                    span.detail { "(" (RefusalReason::try_from(r.reason).map(|x| x.as_str_name()).unwrap_or("?")) ", decided by " (r.decided_by) ": " (r.detail) ")" }
                                }
                            }
                        }
                    }
                }
            }
            @if all.is_empty() {
                p { "No reads were returned." }
            } @else {
                (plot(&all))
                table.sortable #reads {
                    caption { (all.len()) " reads (choose a column heading to sort)" }
                    thead { tr {
                        th scope="col" { button type="button" { "Time (" span.tz { "UTC" } ")" } }
                        th scope="col" { button type="button" { "Agency" } }
                        th scope="col" { button type="button" { "Plate" } }
                        th scope="col" { button type="button" { "State" } }
                        th scope="col" { button type="button" { "Camera" } }
                        th scope="col" { button type="button" { "Latitude" } }
                        th scope="col" { button type="button" { "Longitude" } }
                    } }
                    tbody {
                        @for (o, r) in &all {
                            tr {
                                td data-sort=(r.captured_at) { (pages::time(r.captured_at)) }
                                td { (o) } td { (r.plate) } td { (r.plate_state) } td { (r.camera_id) }
                                td data-sort=(r.latitude) { (format!("{:.5}", r.latitude)) }
                                td data-sort=(r.longitude) { (format!("{:.5}", r.longitude)) }
                            }
                        }
                    }
                }
                p { a #export href=(format!("/search/result/{id}/export.csv")) download { "Export these reads as CSV" } " (the export is logged)" }
            }
            p { a href="/search" { "New search" } }
        },
    );
    Ok(respond(StatusCode::OK, page))
}

/// `GET /search/result/{id}/export.csv`: one search's reads, logged as an export.
pub async fn export(
    State(c): State<Arc<Console>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Page {
    let s = auth::session(&c, &headers).await?;
    let ori = c.node.ori().to_owned();
    let (csv_text, n) = {
        let m = c.done.lock().unwrap_or_else(|p| p.into_inner());
        let Some(d) = m.get(&id).filter(|d| d.user == s.user) else {
            return Err(message(
                &ori,
                StatusCode::NOT_FOUND,
                "Export",
                "These results are not available any more.",
                Some(&s),
            ));
        };
        let mut w = csv::Writer::from_writer(Vec::new());
        let mut n = 0;
        let header = [
            "agency",
            "captured_at_utc",
            "plate",
            "plate_state",
            "camera_id",
            "latitude",
            "longitude",
            "query_id",
            "purpose",
            "case_number",
        ];
        w.write_record(header)
            .map_err(|e| pages::internal(&ori, e))?;
        for r in &d.results {
            for read in reads_of(r) {
                n += 1;
                w.write_record([
                    r.ori.clone(),
                    alpr_pki::fmt_time(read.captured_at),
                    read.plate,
                    read.plate_state,
                    read.camera_id,
                    read.latitude.to_string(),
                    read.longitude.to_string(),
                    id.clone(),
                    d.query.purpose_code.clone(),
                    d.query.case_number.clone(),
                ])
                .map_err(|e| pages::internal(&ori, e))?;
            }
        }
        (w.into_inner().map_err(|e| pages::internal(&ori, e))?, n)
    };
    let now = alpr_pki::now_unix();
    let mut e = auth::entry(
        now,
        Event::Export,
        Decision::Ok,
        &s.user,
        format!("exported {n} reads of search {id} as CSV (web console)"),
    );
    e.query_id = Some(id.clone());
    e.count = Some(n);
    log(&c, vec![e]).await?;
    let mut r = (StatusCode::OK, csv_text).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/csv; charset=utf-8"),
    );
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"search-{id}.csv\"")) {
        r.headers_mut().insert(header::CONTENT_DISPOSITION, v);
    }
    Ok(r)
}

/// `GET /history`: this person's own searches, newest first (from the audit log).
pub async fn history(State(c): State<Arc<Console>>, headers: HeaderMap) -> Page {
    let s = auth::session(&c, &headers).await?;
    let ori = c.node.ori().to_owned();
    let user = s.user.clone();
    let entries = on_node(&c, move |n| {
        let f = crate::audit::Filter {
            event: Some(Event::OutboundQuery),
            user: Some(user),
            ..Default::default()
        };
        crate::store::audit::recent(&n.audit_db()?, &f, 200, 50_000).map(|(e, _)| e)
    })
    .await
    .map_err(|e| pages::internal(&ori, e))?;
    let done: std::collections::HashSet<String> = c
        .done
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .iter()
        .filter(|(_, d)| d.user == s.user)
        .map(|(k, _)| k.clone())
        .collect();
    Ok(respond(
        StatusCode::OK,
        layout(
            &ori,
            "My searches",
            Some(&s),
            html! {
                @if entries.is_empty() { p { "You have not searched yet." } }
                @else {
                    table {
                        caption { "Your latest searches as this node logged them (newest first)" }
                        thead { tr { th scope="col" { "When" } th scope="col" { "Decision" } th scope="col" { "Purpose" } th scope="col" { "Case" } th scope="col" { "Plate" } th scope="col" { "Details" } } }
                        tbody {
                            @for e in &entries {
                                tr {
                                    td { (pages::time(e.entry.at)) }
                                    td { (e.entry.decision.as_str()) }
                                    td { (e.entry.purpose.as_deref().map(purpose_label).unwrap_or_default()) }
                                    td { (e.entry.case_number.as_deref().unwrap_or("")) }
                                    td { (e.entry.plate.as_deref().unwrap_or("")) }
                                    td {
                                        @if let Some(q) = e.entry.query_id.as_deref().filter(|q| done.contains(*q)) {
                                            a href=(format!("/search/result/{q}")) { "Results" }
                                        } @else {
                                            (e.entry.detail.as_deref().unwrap_or(""))
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
