//! The read-only web page for regulators: the registry, its verified tree head and
//! cosignatures, and the compliance report.
//!
//! Browsers cannot conveniently present a client certificate, so access uses a
//! short-lived sign-in link: a token signed with the regulator's own key (payload type
//! `alpr.v1.SignIn`, verified against the state root like every other signature, valid at
//! most [`MAX_TOKEN_SECS`]). The page is served over plain HTTP on its own listener; bind
//! it to loopback or a regulator-only network and put TLS in front in production.

use std::sync::Arc;

use alpr_pki::{Role, Signer, TrustStore, VerifiedIdentity};
use alpr_proto::envelope;
use alpr_proto::pb::Signed;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use prost::Message;
use serde::Deserialize;

use crate::Error;
use crate::broker::Broker;
use crate::regulator::{self, ListFilter};

/// Payload type of a sign-in token.
pub const SIGNIN: &str = "alpr.v1.SignIn";
/// Longest validity of a sign-in link, seconds.
pub const MAX_TOKEN_SECS: i64 = 15 * 60;

/// Make a sign-in token (hex) valid for `ttl_secs` (capped at [`MAX_TOKEN_SECS`]).
pub fn sign_in_token(me: &Signer, ttl_secs: i64, now: i64) -> Result<String, Error> {
    let expires = now + ttl_secs.clamp(1, MAX_TOKEN_SECS);
    let signed = envelope::seal_bytes(
        me,
        SIGNIN,
        format!("regulator-page\n{now}\n{expires}").into_bytes(),
    )?;
    Ok(hex::encode(signed.encode_to_vec()))
}

fn check_token(
    trust: &TrustStore,
    token: &str,
    now: i64,
) -> Result<VerifiedIdentity, (StatusCode, String)> {
    let unauthorized = |m: &str| (StatusCode::UNAUTHORIZED, m.to_owned());
    let bytes = hex::decode(token).map_err(|_| unauthorized("malformed sign-in link"))?;
    let signed =
        Signed::decode(bytes.as_slice()).map_err(|_| unauthorized("malformed sign-in link"))?;
    let (id, payload) = envelope::open(trust, &signed, SIGNIN, now)
        .map_err(|e| unauthorized(&format!("sign-in link refused: {e}")))?;
    let text = std::str::from_utf8(payload).map_err(|_| unauthorized("malformed sign-in link"))?;
    let mut parts = text.split('\n');
    let (Some("regulator-page"), Some(issued), Some(expires), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(unauthorized("malformed sign-in link"));
    };
    let (issued, expires): (i64, i64) = (
        issued.parse().map_err(|_| unauthorized("malformed"))?,
        expires.parse().map_err(|_| unauthorized("malformed"))?,
    );
    if expires <= now || expires - issued > MAX_TOKEN_SECS || issued > now + 120 {
        return Err(unauthorized("sign-in link expired; make a new one"));
    }
    if id.role != Role::Regulator {
        return Err((
            StatusCode::FORBIDDEN,
            format!("{} is not a regulator", id.describe()),
        ));
    }
    Ok(id)
}

#[derive(Deserialize)]
struct Params {
    token: Option<String>,
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

async fn index(State(broker): State<Arc<Broker>>, Query(p): Query<Params>) -> Response {
    let now = alpr_pki::now_unix();
    let who = match check_token(&broker.trust(), p.token.as_deref().unwrap_or(""), now) {
        Ok(id) => id,
        Err((code, msg)) => {
            return (
                code,
                Html(format!(
                    "<!doctype html><title>Refused</title><h1>{}</h1><p>{}</p>",
                    code,
                    esc(&msg)
                )),
            )
                .into_response();
        }
    };
    let b = broker.clone();
    let built = tokio::task::spawn_blocking(move || {
        b.regulator_view()
            .map(|v| (v, crate::store::routing_stats(&b.db())))
    })
    .await;
    let (view, stats) = match built {
        Ok(Ok((v, Ok((s, _))))) => (v, s),
        _ => return (StatusCode::INTERNAL_SERVER_ERROR, "registry unavailable").into_response(),
    };
    let rows = regulator::rows(&view, &ListFilter::default(), now);
    let report = regulator::report(&view, now, &stats);
    let mut html = String::from(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>ALPR agreement registry</title><style>\
         body{font-family:sans-serif;margin:2em;color:#222}table{border-collapse:collapse;font-size:13px}\
         th,td{border:1px solid #bbb;padding:4px 8px;text-align:left}th{background:#eef}\
         .revoked,.expired{color:#888}.suspended{color:#b60}pre{background:#f6f6f6;padding:1em}</style></head><body>",
    );
    html.push_str(&format!(
        "<h1>ALPR agreement registry</h1><p>Signed in as <b>{}</b> ({}). Read-only view.</p>",
        esc(&who.describe()),
        esc(&who
            .jurisdiction
            .as_ref()
            .map(|j| j.to_string())
            .unwrap_or_default())
    ));
    html.push_str(&format!(
        "<h2>Tree head</h2><p id=\"head\">{} entries, root <code>{}</code>, signed by the broker at {}; {} regulator cosignature(s): {}</p>",
        view.head.size,
        hex::encode(view.head.root),
        regulator::fmt_time(view.head.timestamp),
        view.head.cosigners.len(),
        esc(&view.head.cosigners.iter().map(|c| c.describe()).collect::<Vec<_>>().join(", "))
    ));
    html.push_str("<h2>Agreements</h2><table id=\"agreements\"><tr><th>Id</th><th>Provider</th><th>Requester</th><th>Kind</th><th>Status</th><th>Purposes</th><th>Look-back</th><th>Valid until</th><th>Justification</th></tr>");
    for r in &rows {
        html.push_str(&format!(
            "<tr class=\"{}\"><td><code>{}</code></td><td>{} ({})</td><td>{} ({})</td><td>{}</td><td>{}</td><td>{}</td><td>{} d</td><td>{}</td><td>{}</td></tr>",
            esc(&r.status),
            esc(&r.id),
            esc(&r.provider),
            esc(&r.provider_state),
            esc(&r.requester),
            esc(&r.requester_state),
            esc(&r.requester_kind),
            esc(&r.status),
            esc(&r.purposes),
            r.lookback_days,
            regulator::fmt_time(r.valid_until),
            esc(&r.justification)
        ));
    }
    html.push_str("</table><h2>Compliance report</h2><pre id=\"report\">");
    html.push_str(&esc(&report));
    html.push_str("</pre></body></html>");
    Html(html).into_response()
}

/// The page's router.
pub fn router(broker: Arc<Broker>) -> axum::Router {
    axum::Router::new()
        .route("/", axum::routing::get(index))
        .with_state(broker)
}

#[cfg(test)]
mod tests;
