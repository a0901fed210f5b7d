//! The admin's proof that an agreement is registered: its registration entry, where it
//! sits in the registry log, the registry head it is proved against (who signed and
//! cosigned it) and the audit path, checked by the node before the page shows it, with the
//! proof file to hand to anyone who holds the state root (`alpr-node agreement
//! verify-proof`).

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::IntoResponse;
use maud::html;

use super::auth;
use super::pages::{self, Page, layout, message, respond};
use super::state::{Console, Session};
use crate::Error;

/// The proof of `id`, or the page that says why there is none.
async fn prove(
    c: &Console,
    s: &Session,
    id: &str,
) -> Result<
    (
        alpr_proto::registration::RegistrationProof,
        alpr_proto::registration::Proven,
    ),
    axum::response::Response,
> {
    let ori = c.node.ori();
    auth::admins_only(c, s, "Registration proof", "use the agreement pages")?;
    match c.node.clone().registration_proof(id).await {
        Ok(p) => Ok(p),
        Err(e @ Error::Usage(_)) => Err(message(
            ori,
            StatusCode::NOT_FOUND,
            "Registration proof",
            &format!("No proof: {e}."),
            Some(s),
        )),
        Err(e @ Error::Refused(_)) => Err(message(
            ori,
            StatusCode::BAD_GATEWAY,
            "Registration proof",
            &format!(
                "The registration of {id} could not be proved against the registry head this node verified ({e}). Tell your administrator; where the broker's audit path was at fault, it is logged as an alert."
            ),
            Some(s),
        )),
        Err(e) => Err(pages::internal(ori, e)),
    }
}

/// `GET /admin/agreements/proof/{id}`.
pub async fn page(
    State(c): State<Arc<Console>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Page {
    let s = auth::session(&c, &headers).await?;
    let (proof, proven) = prove(&c, &s, &id).await?;
    let a = &proven.agreement;
    let h = &proven.head;
    Ok(respond(
        StatusCode::OK,
        layout(
            c.node.ori(),
            "Registration proof",
            Some(&s),
            html! {
                p.notice role="status" { "Verified: " (proven.verdict()) "." }
                table {
                    caption { "The registration of " code { (a.id) } }
                    tbody {
                        tr { th scope="row" { "Provider → requester" } td { (a.terms.provider_ori) " → " (a.terms.requester_ori) } }
                        tr { th scope="row" { "Signed by" } td { (a.provider_admin.describe()) "; " (a.requester_admin.describe()) } }
                        tr { th scope="row" { "Registry entry" } td { "number " (proven.index) " (from 0), logged " (pages::time(proven.logged_at)) } }
                        tr { th scope="row" { "Registry head" } td { (h.size) " entries, signed by the broker " (pages::time(h.timestamp)) } }
                        tr { th scope="row" { "Root" } td { code { (hex::encode(h.root)) } } }
                        tr { th scope="row" { "Cosigned by" } td {
                            @if h.cosigners.is_empty() { span.error { "no regulator yet" } }
                            @else { (h.cosigners.iter().map(|c| c.describe()).collect::<Vec<_>>().join("; ")) }
                        } }
                        tr { th scope="row" { "Audit path" } td {
                            (proof.proof.len()) " hashes from the entry to the root"
                            ol { @for p in &proof.proof { li { code { (p) } } } }
                        } }
                    }
                }
                p { a href=(format!("/admin/agreements/proof/{id}/proof.json")) { "Download the proof" } }
                p { "Anyone who holds the state root checks it without this node or the broker: "
                    code { "alpr-node agreement verify-proof -c node.toml proof.json" } "." }
                p { a href="/admin/agreements" { "Back to the agreements" } }
            },
        ),
    ))
}

/// `GET /admin/agreements/proof/{id}/proof.json`.
pub async fn download(
    State(c): State<Arc<Console>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Page {
    let s = auth::session(&c, &headers).await?;
    let (proof, _) = prove(&c, &s, &id).await?;
    let text =
        serde_json::to_string_pretty(&proof).map_err(|e| pages::internal(c.node.ori(), e))?;
    let mut r = (StatusCode::OK, text + "\n").into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r.headers_mut().insert(
        header::CONTENT_DISPOSITION,
        HeaderValue::from_static("attachment; filename=\"registration-proof.json\""),
    );
    Ok(r)
}
