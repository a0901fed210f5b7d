//! The admin's page: the node at a glance (switches, agreements with their terms and
//! expiry, the registry view, the SB 34 policy elements, reads held, recent ingests, the
//! rows they rejected and why, and alerts) and the switches (sharing, refuse-all, refuse
//! one requester), each flipped through the node's logged admin path like `alpr-node admin`.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use maud::html;

use super::auth::{self, on_node, read_form};
use super::pages::{self, Page, layout, message, respond};
use super::state::Console;
use crate::audit::{Event, Filter};
use crate::settings::Switch;

/// `GET /admin`.
pub async fn page(State(c): State<Arc<Console>>, headers: HeaderMap) -> Page {
    let s = auth::session(&c, &headers).await?;
    let ori = c.node.ori().to_owned();
    auth::admins_only(&c, &s, "Node", "use this page")?;
    let (st, ingests, rejects) = on_node(&c, |n| {
        let f = Filter {
            event: Some(Event::Ingest),
            ..Default::default()
        };
        let rejects = crate::store::sqlite::rejects::recent(&n.db(), 20)?;
        Ok((
            n.status()?,
            crate::store::audit::recent(&n.audit_db()?, &f, 5, 5).map(|(e, _)| e)?,
            rejects,
        ))
    })
    .await
    .map_err(|e| pages::internal(&ori, e))?;
    let now = alpr_pki::now_unix();
    let policy = &c.node.cfg.usage_policy;
    let elements = [
        ("Authorized purposes", &policy.authorized_purposes),
        ("Authorized users", &policy.authorized_users),
        ("Monitoring", &policy.monitoring),
        ("Sharing", &policy.sharing),
        ("Custodian", &policy.custodian),
        ("Accuracy", &policy.accuracy),
        ("Retention", &policy.retention),
    ];
    let views = c.node.agreements();
    let switch_form = |name: Switch, on: bool, label: &str| {
        html! {
            form.inline method="post" action="/admin/switch" {
                input type="hidden" name="csrf" value=(s.csrf);
                input type="hidden" name="switch" value=(name.as_str());
                input type="hidden" name="on" value=(if on { "yes" } else { "no" });
                label for=(format!("note-{}-{on}", name.as_str())) { "Note" }
                input id=(format!("note-{}-{on}", name.as_str())) name="note" required;
                button type="submit" { (label) }
            }
        }
    };
    Ok(respond(
        StatusCode::OK,
        layout(
            &ori,
            "Node",
            Some(&s),
            html! {
                h2 { "Switches" }
                table {
                    caption { "Who may query this node" }
                    tbody {
                        tr {
                            th scope="row" { "Sharing" }
                            td { @if st.switches.sharing_enabled { "on: other agencies' searches are answered under agreements" } @else { span.error { "off: every search is refused" } } }
                            td { @if st.switches.sharing_enabled { (switch_form(Switch::Sharing, false, "Turn sharing off")) } @else { (switch_form(Switch::Sharing, true, "Turn sharing on")) } }
                        }
                        tr {
                            th scope="row" { "Refuse all" }
                            td { @if st.switches.refuse_all { span.error { "on: every search is refused" } } @else { "off" } }
                            td { @if st.switches.refuse_all { (switch_form(Switch::RefuseAll, false, "Stop refusing all")) } @else { (switch_form(Switch::RefuseAll, true, "Refuse all")) } }
                        }
                    }
                }
                h3 { "Refused requesters" }
                @if st.switches.refused_requesters.is_empty() { p { "None." } }
                ul { @for r in &st.switches.refused_requesters {
                    li {
                        (r) " "
                        form.inline method="post" action="/admin/switch" {
                            input type="hidden" name="csrf" value=(s.csrf);
                            input type="hidden" name="switch" value="refuse_requester";
                            input type="hidden" name="on" value="no";
                            input type="hidden" name="ori" value=(r);
                            input type="hidden" name="note" value="allowed again from the web console";
                            button type="submit" aria-label=(format!("Allow {r} again")) { "Allow again" }
                        }
                    }
                } }
                form #refuse-form method="post" action="/admin/switch" {
                    input type="hidden" name="csrf" value=(s.csrf);
                    input type="hidden" name="switch" value="refuse_requester";
                    input type="hidden" name="on" value="yes";
                    label for="refuse-ori" { "Refuse one requesting agency (ORI)" }
                    input #refuse-ori name="ori" required;
                    label for="refuse-note" { "Why" }
                    input #refuse-note name="note" required;
                    button type="submit" { "Refuse this agency" }
                }
                h2 { "Agreements" }
                table {
                    caption { "Agreements this node holds (from its verified registry view)" }
                    thead { tr { th scope="col" { "Id" } th scope="col" { "Provider" } th scope="col" { "Requester" } th scope="col" { "Purposes" } th scope="col" { "Data" } th scope="col" { "Look-back" } th scope="col" { "Status" } th scope="col" { "Valid until" } } }
                    tbody { @for v in views.iter() {
                        tr {
                            td { code { (v.id) } }
                            td { (v.terms.provider_ori) } td { (v.terms.requester_ori) }
                            td { (v.terms.purposes.iter().map(|p| match alpr_proto::purpose::lookup(p) { Ok(x) => format!("{p} {}", x.name), Err(_) => p.clone() }).collect::<Vec<_>>().join("; ")) }
                            td { (v.terms.data_types.join(", ")) }
                            td { (v.terms.max_lookback_days) " days" }
                            td { (v.status.as_str()) @if v.terms.valid_until <= now { " (expired)" } }
                            td { (pages::time(v.terms.valid_until))
                                 @if v.terms.valid_until > now { " (" ((v.terms.valid_until - now) / 86_400) " days left)" } }
                        }
                    } }
                }
                p { "Registry: "
                    @match st.registry_head {
                        Some((size, seen, cosigned)) => { (size) " events, head seen " (pages::time(seen)) @if cosigned { ", cosigned by the state's regulator" } @else { ", not cosigned" } }
                        None => { "no head accepted yet" }
                    }
                    @if st.require_cosignature { " (only cosigned heads are trusted)" } }
                h2 { "Usage and privacy policy (SB 34)" }
                table { tbody { @for (k, v) in &elements {
                    tr { th scope="row" { (k) } td { @if v.trim().is_empty() { span.error { "missing: sharing cannot be turned on" } } @else { (v) } } }
                } } }
                h2 { "Data" }
                p { (st.reads) " reads held"
                    @if let Some((a, b)) = st.days { ", capture days " (pages::time(a)) " to " (pages::time(b)) }
                    "; retention " (st.retention_days) " days; audit log " (st.audit_head.0) " entries." }
                @if !st.shared_lists.is_empty() {
                    p { "Hot lists shared with this agency: "
                        (st.shared_lists.iter().map(|(o, n, e, u)| format!("{n} from {o} ({e} entries, until {})", pages::when(*u))).collect::<Vec<_>>().join("; ")) }
                }
                h3 { "Latest ingests" }
                p { a href="/admin/ingest" { "Ingest a CSV file of reads" } }
                @if ingests.is_empty() { p { "None yet." } }
                ul { @for e in &ingests { li { (pages::time(e.entry.at)) ": " (e.entry.decision.as_str()) " — " (e.entry.detail.as_deref().unwrap_or("")) } } }
                h3 { "Latest rejected rows" }
                @if rejects.is_empty() { p { "None." } } @else {
                    table {
                        caption { "Rows recent ingests rejected, newest first (fix them in the file and ingest it again: stored reads are skipped)" }
                        thead { tr { th scope="col" { "Ingest" } th scope="col" { "File" } th scope="col" { "Line" } th scope="col" { "Why" } } }
                        tbody { @for r in &rejects {
                            tr { td { (pages::time(r.at)) } td { (r.source) } td { (r.line) } td { (r.reason) } }
                        } }
                    }
                }
                h3 { "Latest alerts" }
                @if st.alerts.is_empty() { p { "None." } }
                ul { @for (at, kind, detail) in st.alerts.iter().take(10) { li { (pages::time(*at)) " " (kind) ": " (detail) } } }
            },
        ),
    ))
}

/// `POST /admin/switch`.
pub async fn switch(State(c): State<Arc<Console>>, headers: HeaderMap, body: Body) -> Page {
    let f = read_form(&c, body).await?;
    let s = auth::session_post(&c, &headers, &f).await?;
    let ori = c.node.ori().to_owned();
    auth::admins_only(&c, &s, "Node", "flip switches")?;
    let Ok(name) = f.get("switch").parse::<Switch>() else {
        return Err(message(
            &ori,
            StatusCode::BAD_REQUEST,
            "Node",
            "No such switch.",
            Some(&s),
        ));
    };
    let req = crate::client::switch(
        name,
        f.get("on") == "yes",
        f.get("ori").trim(),
        f.get("note"),
    );
    auth::admin_action(&c, &s, req, "/admin").await
}
