//! The admin's agreement pages: propose an agreement or open one the other agency's admin
//! sent, read its terms exactly as they will be signed, sign it in the browser with the
//! admin's own key (the node never holds it), then download the file for the other side
//! or, once both have signed, register it at the broker; and revoke an agreement in force,
//! with a reason, signed the same way. An out-of-state requester's admin writes and signs
//! the declaration the provider's state asks for (Illinois, Connecticut, …) on the same
//! page, told what the law requires and its exact words. The node relays to the broker what
//! the admin signed; the broker checks every signature itself.

use std::sync::Arc;

use alpr_pki::Jurisdiction;
use alpr_proto::agreement::{DECLARATION, DECLARATION_MIN_CHARS, agreement_id, declaration_says};
use alpr_proto::envelope::{self, AGREEMENT};
use alpr_proto::pb::{Agreement, AgreementAction, Declaration, Signed, SignedAgreement};
use alpr_proto::rules::StateRules;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use maud::html;
use prost::Message;
use serde::Deserialize;

use super::auth::{self, Form, read_form};
use super::pages::{self, Page, layout, message, respond};
use super::state::{AgreementWork as Pending, Console, Session, random_token};

/// How long a drafted or opened agreement, or a revocation, waits for its signature, and a
/// signed file for its download, seconds.
const PENDING_SECS: i64 = 1800;

fn keep(c: &Console, s: &Session, p: Pending) -> Result<String, Response> {
    let now = alpr_pki::now_unix();
    let id = random_token(16).map_err(|e| pages::internal(c.node.ori(), e))?;
    let mut m = c.agreements.lock().unwrap_or_else(|p| p.into_inner());
    m.retain(|_, (_, _, until)| *until > now);
    m.insert(id.clone(), (s.user.clone(), p, now + PENDING_SECS));
    Ok(id)
}

fn take(c: &Console, s: &Session, id: &str) -> Option<Pending> {
    let now = alpr_pki::now_unix();
    let mut m = c.agreements.lock().unwrap_or_else(|p| p.into_inner());
    match m.remove(id) {
        Some((user, p, until)) if user == s.user && until > now => Some(p),
        _ => None,
    }
}

/// `GET /admin/agreements`.
pub async fn list(State(c): State<Arc<Console>>, headers: HeaderMap) -> Page {
    let s = auth::session(&c, &headers).await?;
    auth::admins_only(&c, &s, "Agreements", "sign and revoke agreements")?;
    let ori = c.node.ori().to_owned();
    let now = alpr_pki::now_unix();
    let views = c.node.agreements();
    Ok(respond(
        StatusCode::OK,
        layout(
            &ori,
            "Agreements",
            Some(&s),
            html! {
                table {
                    caption { "Agreements of this agency (from the node's verified registry view)" }
                    thead { tr { th scope="col" { "Id" } th scope="col" { "Provider → requester" } th scope="col" { "Status" } th scope="col" { "Valid until" } th scope="col" { "Action" } } }
                    tbody { @for v in views.iter() {
                        tr {
                            td { code { (v.id) } }
                            td { (v.terms.provider_ori) " → " (v.terms.requester_ori) }
                            td { (v.status.as_str()) @if v.terms.valid_until <= now { " (expired)" } }
                            td { (pages::time(v.terms.valid_until)) }
                            td {
                                a href=(format!("/admin/agreements/proof/{}", v.id)) aria-label=(format!("Registration proof of {}", v.id)) { "Proof" }
                                @if v.status == alpr_proto::agreement::AgreementStatus::Active && v.terms.valid_until > now {
                                    " " a href=(format!("/admin/agreements/revoke?id={}", v.id)) aria-label=(format!("Revoke {}", v.id)) { "Revoke" }
                                }
                            }
                        }
                    } }
                }
                h2 { "Propose an agreement" }
                form #draft-form method="post" action="/admin/agreements/draft" {
                    input type="hidden" name="csrf" value=(s.csrf);
                    fieldset {
                        legend { "This agency is" }
                        input #side-provider type="radio" name="side" value="provider" checked;
                        label for="side-provider" { "the provider (shares its reads)" }
                        input #side-requester type="radio" name="side" value="requester";
                        label for="side-requester" { "the requester (searches the other's reads)" }
                    }
                    label for="other" { "The other agency (ORI)" } input #other name="other" required;
                    label for="purposes" { "Purpose codes (separated by spaces)" } input #purposes name="purposes" required;
                    label for="lookback" { "Look-back, days" } input #lookback name="lookback" type="number" min="1" value="30" required;
                    label for="days" { "Valid for, days" } input #days name="days" type="number" min="1" value="365" required;
                    input #hotlists type="checkbox" name="hotlists" value="yes";
                    label for="hotlists" { "Hot lists too (the requester may share hot lists the provider's cameras watch for)" }
                    label for="justification" { "Why the requester needs and has a right to this data" }
                    textarea #justification name="justification" rows="3" required {}
                    button type="submit" { "Review the terms" }
                }
                h2 { "Sign an agreement file from the other agency" }
                p #key-status role="status" {}
                form #upload-form method="post" action="/admin/agreements/open" {
                    input type="hidden" name="csrf" value=(s.csrf);
                    input type="hidden" name="file_hex" value="";
                    label for="agreement-file" { "Agreement file (from alpr-node agreement draft or sign, or this page)" }
                    input #agreement-file type="file";
                    button type="submit" { "Review the terms" }
                }
            },
        ),
    ))
}

/// What the provider's state asks of this agency as an out-of-state requester.
struct Declaring {
    /// The provider's state.
    state: Jurisdiction,
    /// Whether the state is known from the provider admin's signature (else from its ORI).
    from_signature: bool,
    /// The provider state's rules.
    rules: &'static StateRules,
    /// Whether the rules require a declaration from this agency.
    required: bool,
    /// The words they require of this agency's state, word for word, if any.
    words: Option<String>,
}

/// `None` unless this node is the agreement's requester and the provider is in another
/// state.
fn declaring(c: &Console, terms: &Agreement, sa: &SignedAgreement) -> Option<Declaring> {
    let own = &c.node.agency.jurisdiction;
    if terms.requester_ori != c.node.ori() {
        return None;
    }
    let signed = sa
        .provider
        .as_ref()
        .filter(|p| !p.signature.is_empty())
        .and_then(|p| envelope::open(&c.node.trust(), p, AGREEMENT, alpr_pki::now_unix()).ok())
        .and_then(|(id, _)| id.jurisdiction);
    let from_signature = signed.is_some();
    let state = signed.or_else(|| {
        terms
            .provider_ori
            .get(..2)
            .and_then(|st| format!("US-{st}").parse().ok())
    })?;
    if &state == own {
        return None;
    }
    let rules = StateRules::for_jurisdiction(&state).ok()?;
    let words = rules.declaration_for(own).map(str::to_owned);
    Some(Declaring {
        required: rules.out_of_state_declaration || words.is_some(),
        state,
        from_signature,
        rules,
        words,
    })
}

/// The text of an attached declaration, if it decodes.
fn declared_text(sa: &SignedAgreement) -> Option<String> {
    let d = sa.declaration.as_ref()?;
    Declaration::decode(d.payload.as_slice())
        .ok()
        .map(|d| d.text)
}

fn review(c: &Console, s: &Session, sa: SignedAgreement) -> Page {
    review_with(c, s, sa, None, "")
}

/// The review page, with a notice or error about the declaration and its draft text.
fn review_with(
    c: &Console,
    s: &Session,
    sa: SignedAgreement,
    note: Option<(bool, &str)>,
    draft: &str,
) -> Page {
    let ori = c.node.ori().to_owned();
    let text = crate::client::describe_agreement(&sa).map_err(|e| {
        message(
            &ori,
            StatusCode::BAD_REQUEST,
            "Agreements",
            &e.to_string(),
            Some(s),
        )
    })?;
    let payload = sa
        .provider
        .as_ref()
        .or(sa.requester.as_ref())
        .map(|p| p.payload.clone())
        .unwrap_or_default();
    let terms = Agreement::decode(payload.as_slice()).map_err(|e| {
        message(
            &ori,
            StatusCode::BAD_REQUEST,
            "Agreements",
            &e.to_string(),
            Some(s),
        )
    })?;
    if terms.provider_ori != ori && terms.requester_ori != ori {
        return Err(message(
            &ori,
            StatusCode::BAD_REQUEST,
            "Agreements",
            &format!("{ori} is not a party to this agreement."),
            Some(s),
        ));
    }
    let input = envelope::signing_input(AGREEMENT, &payload);
    let need = declaring(c, &terms, &sa);
    let attached = declared_text(&sa);
    let declare_pending = match (&need, &attached) {
        (Some(_), None) => Some(keep(c, s, Pending::Agreement(Box::new(sa.clone())))?),
        _ => None,
    };
    let pending = keep(c, s, Pending::Agreement(Box::new(sa)))?;
    Ok(respond(
        match note {
            Some((false, _)) => StatusCode::BAD_REQUEST,
            _ => StatusCode::OK,
        },
        layout(
            &ori,
            "Review the agreement",
            Some(s),
            html! {
                @if let Some((ok, text)) = note {
                    p class=(if ok { "notice" } else { "error" }) role=(if ok { "status" } else { "alert" }) { (text) }
                }
                p { "These are the terms exactly as they are signed. Read them before signing: your signature binds " (ori) "." }
                pre.report #terms { (text) }
                @if let (None, Some(t)) = (&need, &attached) {
                    section #declaration aria-labelledby="declaration-title" {
                        h2 #declaration-title { "The requester's declaration" }
                        p { "Signed by the requesting agency's admin, and checked by the broker at registration:" }
                        blockquote #declaration-attached { (t) }
                    }
                }
                @if let Some(d) = &need {
                    section #declaration aria-labelledby="declaration-title" {
                        h2 #declaration-title { "Declaration to " (d.state) }
                        @if d.required {
                            p { (d.state) " rules (" (d.rules.version) ") require the out-of-state requester's signed written declaration of how the data will and will not be used ("
                                (DECLARATION_MIN_CHARS) " characters or more), signed by " (ori) "'s admin. The broker refuses to register the agreement without it." }
                        } @else {
                            p { (d.state) " rules (" (d.rules.version) ") do not ask " (ori) " for a declaration; you may attach one." }
                        }
                        @if !d.from_signature {
                            p { "(" (d.state) " is read from the provider's ORI; its admin has not signed yet.)" }
                        }
                        @if let Some(w) = &d.words {
                            p { "They require requesters in " (c.node.agency.jurisdiction) " to declare these words, word for word:" }
                            blockquote #declaration-words { (w) }
                        }
                        @if let Some(t) = &attached {
                            p.notice role="status" { "A declaration is attached: " q #declaration-attached { (t) } }
                        } @else if let Some(dp) = &declare_pending {
                            form #declaration-form method="post" action="/admin/agreements/declare" {
                                input type="hidden" name="csrf" value=(s.csrf);
                                input type="hidden" name="pending" value=(dp);
                                label for="declaration-text" { "The declaration (what " (ori) " will and will not do with the data)" }
                                textarea #declaration-text name="text" rows="5" required minlength=(DECLARATION_MIN_CHARS) {
                                    @if !draft.is_empty() { (draft) } @else if let Some(w) = &d.words { (w) }
                                }
                                button type="submit" { "Review the declaration" }
                            }
                        }
                    }
                }
                p #key-status role="status" {}
                form #agreement-form method="post" action="/admin/agreements/sign" data-user=(s.user) data-signing-input=(hex::encode(&input)) {
                    input type="hidden" name="csrf" value=(s.csrf);
                    input type="hidden" name="pending" value=(pending);
                    input type="hidden" name="sig" value="";
                    button type="submit" { "Sign as " (ori) "'s admin" }
                }
            },
        ),
    ))
}

/// `POST /admin/agreements/draft`: terms from the form.
pub async fn draft(State(c): State<Arc<Console>>, headers: HeaderMap, body: Body) -> Page {
    let f = read_form(&c, body).await?;
    let s = auth::session_post(&c, &headers, &f).await?;
    auth::admins_only(&c, &s, "Agreements", "sign and revoke agreements")?;
    let ori = c.node.ori().to_owned();
    let now = alpr_pki::now_unix();
    let other = f.get("other").trim().to_ascii_uppercase();
    let (provider, requester) = if f.get("side") == "requester" {
        (other, ori.clone())
    } else {
        (ori.clone(), other)
    };
    let days = |k: &str| f.get(k).trim().parse::<u32>().unwrap_or(0);
    let mut data_types = vec!["reads".to_owned()];
    if f.get("hotlists") == "yes" {
        data_types.push("hotlists".into());
    }
    let terms = Agreement {
        provider_ori: provider,
        requester_ori: requester,
        purposes: f
            .get("purposes")
            .split([' ', ','])
            .filter(|p| !p.is_empty())
            .map(str::to_owned)
            .collect(),
        data_types,
        max_lookback_days: days("lookback"),
        valid_from: now,
        valid_until: now + i64::from(days("days")) * 86_400,
        justification: f.get("justification").trim().to_owned(),
        drafted_at: now,
        query_shapes: vec![],
    };
    let sa = crate::client::draft_agreement(&terms).map_err(|e| {
        message(
            &ori,
            StatusCode::BAD_REQUEST,
            "Agreements",
            &format!("Not a valid agreement: {e}"),
            Some(&s),
        )
    })?;
    review(&c, &s, sa)
}

/// `POST /admin/agreements/open`: an agreement file from the other agency.
pub async fn open(State(c): State<Arc<Console>>, headers: HeaderMap, body: Body) -> Page {
    let f = read_form(&c, body).await?;
    let s = auth::session_post(&c, &headers, &f).await?;
    auth::admins_only(&c, &s, "Agreements", "sign and revoke agreements")?;
    let ori = c.node.ori().to_owned();
    let sa = hex::decode(f.get("file_hex").trim())
        .ok()
        .and_then(|b| SignedAgreement::decode(b.as_slice()).ok())
        .ok_or_else(|| {
            message(
                &ori,
                StatusCode::BAD_REQUEST,
                "Agreements",
                "That file is not an agreement file.",
                Some(&s),
            )
        })?;
    review(&c, &s, sa)
}

fn signed_by_browser(
    s: &Session,
    f: &Form,
    payload_type: &str,
    payload: Vec<u8>,
) -> Option<Signed> {
    let signature = hex::decode(f.get("sig"))
        .ok()
        .and_then(|b| alpr_pki::p1363_to_der(&b))?;
    Some(Signed {
        payload_type: payload_type.into(),
        payload,
        signature,
        cert_chain: s.chain.iter().map(|c| c.to_vec()).collect(),
        sealed_boxes: vec![],
        sealed_box_proofs: vec![],
    })
}

/// `POST /admin/agreements/sign`: the admin's signature; registered when both have signed.
pub async fn sign(State(c): State<Arc<Console>>, headers: HeaderMap, body: Body) -> Page {
    let f = read_form(&c, body).await?;
    let s = auth::session_post(&c, &headers, &f).await?;
    auth::admins_only(&c, &s, "Agreements", "sign and revoke agreements")?;
    let ori = c.node.ori().to_owned();
    let gone = || {
        message(
            &ori,
            StatusCode::CONFLICT,
            "Agreements",
            "This page was used already or expired; nothing was signed again.",
            Some(&s),
        )
    };
    let Some(Pending::Agreement(sa)) = take(&c, &s, f.get("pending")) else {
        return Err(gone());
    };
    let mut sa = *sa;
    let payload = sa
        .provider
        .as_ref()
        .or(sa.requester.as_ref())
        .map(|p| p.payload.clone())
        .unwrap_or_default();
    let terms = Agreement::decode(payload.as_slice()).map_err(|e| pages::internal(&ori, e))?;
    let Some(signed) = signed_by_browser(&s, &f, AGREEMENT, payload) else {
        return Err(message(
            &ori,
            StatusCode::BAD_REQUEST,
            "Agreements",
            "Your browser sent no signature; nothing was signed.",
            Some(&s),
        ));
    };
    // The signature must verify as this admin's, like every signature the broker checks.
    if let Err(e) = envelope::open(&c.node.trust(), &signed, AGREEMENT, alpr_pki::now_unix()) {
        return Err(message(
            &ori,
            StatusCode::FORBIDDEN,
            "Agreements",
            &format!("The signature does not verify: {e}"),
            Some(&s),
        ));
    }
    if terms.provider_ori == ori {
        sa.provider = Some(signed);
    } else {
        sa.requester = Some(signed);
    }
    let both = [&sa.provider, &sa.requester]
        .iter()
        .all(|x| x.as_ref().is_some_and(|x| !x.signature.is_empty()));
    if !both {
        let file = keep(&c, &s, Pending::File(sa.encode_to_vec()))?;
        return Ok(respond(
            StatusCode::OK,
            layout(
                &ori,
                "Signed",
                Some(&s),
                html! {
                    p.notice role="status" { "Signed as " (ori) "'s admin. The other agency's admin signs the same file (here, or with alpr-node agreement sign); then it is registered." }
                    p { a #agreement-download href=(format!("/admin/agreements/file/{file}")) download="agreement.bin" { "Download the signed agreement file" } }
                },
            ),
        ));
    }
    let Some((mut broker, timeout)) = c.node.broker.clone() else {
        return Err(message(
            &ori,
            StatusCode::SERVICE_UNAVAILABLE,
            "Agreements",
            "This node has no broker to register agreements with.",
            Some(&s),
        ));
    };
    let mut req = tonic::Request::new(sa);
    req.set_timeout(timeout);
    match broker.submit_agreement(req).await {
        Ok(r) => {
            let id = r.into_inner().agreement_id;
            let _ = c.node.sync_registry().await;
            Ok(message(
                &ori,
                StatusCode::OK,
                "Registered",
                &format!("Both admins signed; the broker registered agreement {id}."),
                Some(&s),
            ))
        }
        Err(e) => Err(message(
            &ori,
            StatusCode::FORBIDDEN,
            "Not registered",
            &format!("The broker refused the agreement: {}", e.message()),
            Some(&s),
        )),
    }
}

/// `GET /admin/agreements/file/{id}`: a signed agreement file, once.
pub async fn file(
    State(c): State<Arc<Console>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Page {
    let s = auth::session(&c, &headers).await?;
    auth::admins_only(&c, &s, "Agreements", "sign and revoke agreements")?;
    let Some(Pending::File(bytes)) = take(&c, &s, &id) else {
        return Err(message(
            c.node.ori(),
            StatusCode::NOT_FOUND,
            "Agreements",
            "That file is not available any more.",
            Some(&s),
        ));
    };
    let mut r = (StatusCode::OK, bytes).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    r.headers_mut().insert(
        header::CONTENT_DISPOSITION,
        HeaderValue::from_static("attachment; filename=\"agreement.bin\""),
    );
    Ok(r)
}

/// The agreement a revocation names.
#[derive(Deserialize)]
pub struct RevokeParams {
    id: String,
}

/// `POST /admin/agreements/declare`: the declaration's text, to sign.
pub async fn declare(State(c): State<Arc<Console>>, headers: HeaderMap, body: Body) -> Page {
    let f = read_form(&c, body).await?;
    let s = auth::session_post(&c, &headers, &f).await?;
    auth::admins_only(&c, &s, "Agreements", "sign and revoke agreements")?;
    let ori = c.node.ori().to_owned();
    let Some(Pending::Agreement(sa)) = take(&c, &s, f.get("pending")) else {
        return Err(message(
            &ori,
            StatusCode::CONFLICT,
            "Agreements",
            "This page was used already or expired; open the agreement again.",
            Some(&s),
        ));
    };
    let sa = *sa;
    let payload = sa
        .provider
        .as_ref()
        .or(sa.requester.as_ref())
        .map(|p| p.payload.clone())
        .unwrap_or_default();
    let terms = Agreement::decode(payload.as_slice()).map_err(|e| pages::internal(&ori, e))?;
    let Some(need) = declaring(&c, &terms, &sa) else {
        return review_with(
            &c,
            &s,
            sa,
            Some((
                false,
                "Only the requester of another state's data declares anything here.",
            )),
            "",
        );
    };
    let text = f.get("text").trim().to_owned();
    if text.len() < DECLARATION_MIN_CHARS {
        return review_with(
            &c,
            &s,
            sa,
            Some((
                false,
                &format!(
                    "The declaration must say in writing how the data will and will not be used: {} characters or more (this one has {}). Nothing was signed.",
                    DECLARATION_MIN_CHARS,
                    text.chars().count()
                ),
            )),
            &text,
        );
    }
    if let Some(w) = &need.words
        && !declaration_says(&text, w)
    {
        return review_with(
            &c,
            &s,
            sa,
            Some((
                false,
                &format!(
                    "{} rules require these words, word for word (white space and case aside), which the declaration does not contain: \"{w}\". Nothing was signed.",
                    need.state
                ),
            )),
            &text,
        );
    }
    let d = Declaration {
        agreement_id: agreement_id(&payload),
        text: text.clone(),
        signed_at: alpr_pki::now_unix(),
    };
    let bytes = d.encode_to_vec();
    let input = envelope::signing_input(DECLARATION, &bytes);
    let pending = keep(&c, &s, Pending::Declaration(Box::new(sa), bytes))?;
    Ok(respond(
        StatusCode::OK,
        layout(
            &ori,
            "Sign the declaration",
            Some(&s),
            html! {
                p { "This is the declaration exactly as it is signed, for agreement " code { (d.agreement_id) } " with " (terms.provider_ori) ". Your signature binds " (ori) "; " (need.state) "'s agencies and regulators read it in the registry." }
                blockquote #declaration-review { (text) }
                p #key-status role="status" {}
                form #agreement-form method="post" action="/admin/agreements/declare/sign" data-user=(s.user) data-signing-input=(hex::encode(&input)) {
                    input type="hidden" name="csrf" value=(s.csrf);
                    input type="hidden" name="pending" value=(pending);
                    input type="hidden" name="sig" value="";
                    button type="submit" { "Sign the declaration as " (ori) "'s admin" }
                }
            },
        ),
    ))
}

/// `POST /admin/agreements/declare/sign`: the admin's signature over the declaration; it
/// is attached to the agreement, which is shown again for its own signature.
pub async fn declare_sign(State(c): State<Arc<Console>>, headers: HeaderMap, body: Body) -> Page {
    let f = read_form(&c, body).await?;
    let s = auth::session_post(&c, &headers, &f).await?;
    auth::admins_only(&c, &s, "Agreements", "sign and revoke agreements")?;
    let ori = c.node.ori().to_owned();
    let Some(Pending::Declaration(sa, bytes)) = take(&c, &s, f.get("pending")) else {
        return Err(message(
            &ori,
            StatusCode::CONFLICT,
            "Agreements",
            "This page was used already or expired; nothing was signed again.",
            Some(&s),
        ));
    };
    let mut sa = *sa;
    // On a failure the agreement is shown again with the declaration's text to sign anew.
    let text = Declaration::decode(bytes.as_slice())
        .map(|d| d.text)
        .unwrap_or_default();
    let Some(signed) = signed_by_browser(&s, &f, DECLARATION, bytes) else {
        return review_with(
            &c,
            &s,
            sa,
            Some((
                false,
                "Your browser sent no signature; nothing was attached.",
            )),
            &text,
        );
    };
    let refused = match envelope::open(&c.node.trust(), &signed, DECLARATION, alpr_pki::now_unix())
    {
        Ok((id, _)) if id.role == alpr_pki::Role::Admin && id.ori() == Some(ori.as_str()) => None,
        Ok((id, _)) => Some(format!(
            "The declaration must be signed by {ori}'s admin, not {}; nothing was attached.",
            id.describe()
        )),
        Err(e) => Some(format!(
            "The declaration's signature does not verify: {e}. Nothing was attached."
        )),
    };
    if let Some(why) = refused {
        let page = review_with(&c, &s, sa, Some((false, &why)), &text)?;
        let mut page = page;
        *page.status_mut() = StatusCode::FORBIDDEN;
        return Ok(page);
    }
    sa.declaration = Some(signed);
    review_with(
        &c,
        &s,
        sa,
        Some((
            true,
            "Declaration signed and attached. Now sign the agreement (or download it for the other agency once signed).",
        )),
        "",
    )
}

/// `GET /admin/agreements/revoke?id=…`: the reason.
pub async fn revoke_form(
    State(c): State<Arc<Console>>,
    headers: HeaderMap,
    Query(p): Query<RevokeParams>,
) -> Page {
    let s = auth::session(&c, &headers).await?;
    auth::admins_only(&c, &s, "Agreements", "sign and revoke agreements")?;
    Ok(respond(
        StatusCode::OK,
        layout(
            c.node.ori(),
            "Revoke an agreement",
            Some(&s),
            html! {
                p { "Agreement " code { (p.id) } ". Revocation takes effect at every node at its next registry sync; the reason is recorded in the registry." }
                form #revoke-form method="post" action="/admin/agreements/revoke" {
                    input type="hidden" name="csrf" value=(s.csrf);
                    input type="hidden" name="id" value=(p.id);
                    label for="reason" { "Reason" }
                    textarea #reason name="reason" rows="3" required {}
                    button type="submit" { "Review" }
                }
            },
        ),
    ))
}

/// `POST /admin/agreements/revoke`: the revocation to sign.
pub async fn revoke_prepare(State(c): State<Arc<Console>>, headers: HeaderMap, body: Body) -> Page {
    let f = read_form(&c, body).await?;
    let s = auth::session_post(&c, &headers, &f).await?;
    auth::admins_only(&c, &s, "Agreements", "sign and revoke agreements")?;
    let ori = c.node.ori().to_owned();
    let (id, reason) = (
        f.get("id").trim().to_owned(),
        f.get("reason").trim().to_owned(),
    );
    if reason.is_empty() {
        return Err(message(
            &ori,
            StatusCode::BAD_REQUEST,
            "Revoke an agreement",
            "Give a reason; it is recorded with the revocation.",
            Some(&s),
        ));
    }
    let payload = AgreementAction {
        agreement_id: id.clone(),
        action: "revoke".into(),
        reason: reason.clone(),
        signed_at: alpr_pki::now_unix(),
    }
    .encode_to_vec();
    let input = envelope::signing_input(alpr_proto::registry::ACTION, &payload);
    let pending = keep(&c, &s, Pending::Revoke(payload))?;
    Ok(respond(
        StatusCode::OK,
        layout(
            &ori,
            "Revoke an agreement",
            Some(&s),
            html! {
                p { "Revoke " code { (id) } ": " q { (reason) } }
                p #key-status role="status" {}
                form #agreement-form method="post" action="/admin/agreements/revoke/send" data-user=(s.user) data-signing-input=(hex::encode(&input)) {
                    input type="hidden" name="csrf" value=(s.csrf);
                    input type="hidden" name="pending" value=(pending);
                    input type="hidden" name="sig" value="";
                    button type="submit" { "Sign and revoke" }
                }
            },
        ),
    ))
}

/// `POST /admin/agreements/revoke/send`: the signed revocation, relayed to the broker.
pub async fn revoke_send(State(c): State<Arc<Console>>, headers: HeaderMap, body: Body) -> Page {
    let f = read_form(&c, body).await?;
    let s = auth::session_post(&c, &headers, &f).await?;
    auth::admins_only(&c, &s, "Agreements", "sign and revoke agreements")?;
    let ori = c.node.ori().to_owned();
    let Some(Pending::Revoke(payload)) = take(&c, &s, f.get("pending")) else {
        return Err(message(
            &ori,
            StatusCode::CONFLICT,
            "Revoke an agreement",
            "This revocation was sent already or expired; nothing was sent again.",
            Some(&s),
        ));
    };
    let Some(signed) = signed_by_browser(&s, &f, alpr_proto::registry::ACTION, payload) else {
        return Err(message(
            &ori,
            StatusCode::BAD_REQUEST,
            "Revoke an agreement",
            "Your browser sent no signature; nothing was sent.",
            Some(&s),
        ));
    };
    let Some((mut broker, timeout)) = c.node.broker.clone() else {
        return Err(message(
            &ori,
            StatusCode::SERVICE_UNAVAILABLE,
            "Revoke an agreement",
            "This node has no broker.",
            Some(&s),
        ));
    };
    let mut req = tonic::Request::new(signed);
    req.set_timeout(timeout);
    match broker.act_on_agreement(req).await {
        Ok(r) => {
            let index = r.into_inner().index;
            let _ = c.node.sync_registry().await;
            Ok(message(
                &ori,
                StatusCode::OK,
                "Revoked",
                &format!("The registry recorded the revocation as entry {index}."),
                Some(&s),
            ))
        }
        Err(e) => Err(message(
            &ori,
            StatusCode::FORBIDDEN,
            "Not revoked",
            &format!("The broker refused the revocation: {}", e.message()),
            Some(&s),
        )),
    }
}
