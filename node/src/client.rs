//! Client side: an investigator's search through their own node, and agreement helpers
//! for admins. Used by the CLI, the demo and the tests.

use std::time::Duration;

use alpr_pki::{Signer, TrustStore, VerifiedIdentity};
use alpr_proto::envelope::{self, AGREEMENT, QUERY};
use alpr_proto::pb::broker_client::BrokerClient;
use alpr_proto::pb::node_local_client::NodeLocalClient;
use alpr_proto::pb::{
    Agreement, Query, RouteResponse, SearchRequest, Signed, SignedAgreement, TargetResult,
};
use alpr_runtime::client::Target;
use alpr_runtime::tls::TlsIdentity;
use prost::Message;
use ring::rand::SecureRandom;

use crate::Error;

/// What an investigator asks for.
#[derive(Clone, Debug, Default)]
pub struct SearchParams {
    /// Plate as typed; normalized before signing.
    pub plate: String,
    /// The plate's issuing state (NCIC code such as `CA`), or `ANY` for every state.
    pub plate_state: String,
    /// Window start, Unix seconds.
    pub window_start: i64,
    /// Window end, Unix seconds.
    pub window_end: i64,
    /// Purpose code.
    pub purpose: String,
    /// Case number.
    pub case_number: String,
    /// Specific reason.
    pub reason: String,
    /// Warrant reference, if any.
    pub warrant_ref: String,
    /// On-behalf-of agency ORI, if any.
    pub on_behalf_of: String,
    /// Target agencies.
    pub targets: Vec<String>,
    /// Query lifetime, seconds.
    pub ttl_secs: i64,
    /// When the incident was reported to the agency, Unix seconds (0: not given); some
    /// states count a warrant trigger from it.
    pub incident_reported_at: i64,
    /// The query's shape: empty for the full plate, `wildcard` for a plate with `?` for
    /// unknown characters, `hotlist` to share `hotlist` with the targets.
    pub shape: String,
    /// Shape `hotlist`: the list shared (see [`hotlist_from_csv`]); `window_end` is its
    /// expiry, and the plate fields are unused.
    pub hotlist: Option<alpr_proto::pb::HotlistShare>,
}

/// The withdrawal of the hot list `name` this agency shared (a share of kind
/// `withdraw`, with no entries).
pub fn hotlist_withdrawal(name: &str) -> alpr_proto::pb::HotlistShare {
    alpr_proto::pb::HotlistShare {
        name: alpr_proto::input::nfc(name.trim()),
        source: "its owner".into(),
        topic: "withdrawal of the list".into(),
        kind: alpr_proto::hotlist::KIND_WITHDRAW.into(),
        entries: Vec::new(),
    }
}

/// A hot list to share, from CSV text: `plate,state,note` per line (state may be empty
/// for any state; a `?` in a plate is one unknown character; a header line
/// `plate,state,note` is allowed). Plates and states are normalized and texts put in NFC;
/// a bad line is an error naming it.
pub fn hotlist_from_csv(
    name: &str,
    source: &str,
    topic: &str,
    csv_text: &str,
) -> Result<alpr_proto::pb::HotlistShare, Error> {
    use alpr_proto::input;
    let mut entries = Vec::new();
    for (i, line) in csv_text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || (i == 0 && line.eq_ignore_ascii_case("plate,state,note")) {
            continue;
        }
        let at = |m: String| Error::Usage(format!("hot list line {}: {m}", i + 1));
        let mut cols = line.splitn(3, ',');
        let plate = cols.next().unwrap_or_default().trim();
        let state = cols.next().unwrap_or_default().trim();
        let note = cols.next().unwrap_or_default().trim();
        let plate = if plate.contains(input::WILDCARD) {
            input::normalize_wildcard_plate(plate)
        } else {
            input::normalize_plate(plate)
        }
        .map_err(|e| at(e.detail()))?;
        let plate_state = input::normalize_read_state(state).map_err(|e| at(e.detail()))?;
        entries.push(alpr_proto::pb::HotlistEntry {
            plate,
            plate_state,
            note: input::nfc(note),
        });
    }
    let share = alpr_proto::pb::HotlistShare {
        name: input::nfc(name.trim()),
        source: input::nfc(source.trim()),
        topic: input::nfc(topic.trim()),
        kind: alpr_proto::hotlist::KIND_ALERT.into(),
        entries,
    };
    alpr_proto::hotlist::check_share(&share)?;
    Ok(share)
}

/// Build and sign a query as `investigator` (whose certificate names user and agency).
pub fn sign_query(
    investigator: &Signer,
    trust: &TrustStore,
    p: &SearchParams,
    now: i64,
) -> Result<(Query, Signed), Error> {
    let id = trust.verify(investigator.chain(), now)?;
    let q = build_query(&id, p, now)?;
    let signed = envelope::seal(investigator, QUERY, &q)?;
    Ok((q, signed))
}

/// The query `id` (a verified investigator) would sign for `p`: normalized, with a fresh
/// id, issued `now`. Signing is the caller's ([`sign_query`] here, the browser in the web
/// console).
pub fn build_query(id: &VerifiedIdentity, p: &SearchParams, now: i64) -> Result<Query, Error> {
    let share = p.shape == alpr_proto::hotlist::SHAPE_HOTLIST;
    if share && p.hotlist.is_none() {
        return Err(Error::Usage("a hot-list share needs its list".into()));
    }
    let mut query_id = vec![0u8; 16];
    ring::rand::SystemRandom::new()
        .fill(&mut query_id)
        .map_err(|_| Error::Usage("no system randomness for a query id".into()))?;
    Ok(Query {
        query_id,
        requester_user: id.user.clone().unwrap_or_default(),
        requester_ori: id.ori().unwrap_or_default().to_owned(),
        plate: if share {
            String::new()
        } else if p.shape == alpr_proto::input::SHAPE_WILDCARD {
            alpr_proto::input::normalize_wildcard_plate(&p.plate)?
        } else {
            alpr_proto::input::normalize_plate(&p.plate)?
        },
        plate_state: if share {
            String::new()
        } else {
            alpr_proto::input::normalize_query_state(&p.plate_state)?
        },
        // A shared list is in force from when it is signed.
        window_start: if share { now } else { p.window_start },
        window_end: p.window_end,
        purpose_code: p.purpose.trim().to_owned(),
        // Text is signed in NFC: nobody downstream may re-encode a signed query.
        case_number: alpr_proto::input::nfc(p.case_number.trim()),
        reason: alpr_proto::input::nfc(p.reason.trim()),
        warrant_ref: alpr_proto::input::nfc(p.warrant_ref.trim()),
        on_behalf_of_ori: p.on_behalf_of.clone(),
        targets: p.targets.clone(),
        issued_at: now,
        expires_at: now + if p.ttl_secs > 0 { p.ttl_secs } else { 300 },
        incident_reported_at: p.incident_reported_at,
        shape: p.shape.clone(),
        hotlist: if share { p.hotlist.clone() } else { None },
    })
}

/// Connect to a node's local side as a person.
pub fn node_client(
    node: &Target,
    trust: &TrustStore,
    me: &TlsIdentity,
    timeout: Duration,
) -> Result<NodeLocalClient<tonic::transport::Channel>, Error> {
    let cfg = alpr_runtime::tls::client_config(trust, me)?;
    Ok(NodeLocalClient::new(alpr_runtime::client::channel(
        node, cfg, timeout,
    )?))
}

/// Connect to the broker.
pub fn broker_client(
    broker: &Target,
    trust: &TrustStore,
    me: &TlsIdentity,
    timeout: Duration,
) -> Result<BrokerClient<tonic::transport::Channel>, Error> {
    let cfg = alpr_runtime::tls::client_config(trust, me)?;
    Ok(BrokerClient::new(alpr_runtime::client::channel(
        broker, cfg, timeout,
    )?))
}

/// Send a signed query through the investigator's own node.
pub async fn search(
    client: &mut NodeLocalClient<tonic::transport::Channel>,
    signed: &Signed,
) -> Result<RouteResponse, Error> {
    Ok(client
        .search(SearchRequest {
            signed_query: signed.encode_to_vec(),
        })
        .await?
        .into_inner())
}

/// A target's verified reply, with the node that signed it.
pub use alpr_proto::reply::VerifiedReply as Reply;

/// Verify a target's signed reply (the one check of [`alpr_proto::reply::verify`]):
/// `Ok(None)` when the result carries no reply (a broker's own decision).
pub fn verify_reply(
    trust: &TrustStore,
    result: &TargetResult,
    query: &Query,
    now: i64,
) -> Result<Option<Reply>, Error> {
    let Some(reply) = &result.reply else {
        return Ok(None);
    };
    Ok(Some(alpr_proto::reply::verify(
        trust,
        &result.ori,
        reply,
        query,
        now,
    )?))
}

/// The payload bytes both admins sign, and the terms they encode.
fn agreement_terms(sa: &SignedAgreement) -> Result<(Vec<u8>, Agreement), Error> {
    let payload = sa
        .provider
        .as_ref()
        .or(sa.requester.as_ref())
        .map(|s| s.payload.clone())
        .ok_or_else(|| Error::Usage("agreement file holds no terms".into()))?;
    let terms = Agreement::decode(payload.as_slice())
        .map_err(|e| Error::Usage(format!("agreement does not decode: {e}")))?;
    Ok((payload, terms))
}

/// An agreement file's terms, exactly as they are (or will be) signed, for a person to
/// read before signing: parties, purposes by code and name, data types, look-back,
/// validity, justification, and who has signed so far.
pub fn describe_agreement(sa: &SignedAgreement) -> Result<String, Error> {
    let (payload, t) = agreement_terms(sa)?;
    let fmt = alpr_pki::fmt_time;
    let mut out = vec![
        format!(
            "agreement {}",
            alpr_proto::agreement::agreement_id(&payload)
        ),
        format!(
            "  {} shares its data with {} (directional: not the other way round)",
            t.provider_ori, t.requester_ori
        ),
        "  purposes:".to_owned(),
    ];
    for p in &t.purposes {
        let name = alpr_proto::purpose::lookup(p)
            .map(|x| x.name.clone())
            .unwrap_or_else(|_| "UNKNOWN CODE".into());
        out.push(format!("    {p}  {name}"));
    }
    out.push(format!("  data types: {}", t.data_types.join(", ")));
    out.push(format!("  look-back: at most {} days", t.max_lookback_days));
    out.push(format!(
        "  valid: {} .. {}",
        fmt(t.valid_from),
        fmt(t.valid_until)
    ));
    out.push(format!("  justification: {}", t.justification));
    out.push(format!("  drafted: {}", fmt(t.drafted_at)));
    let signed = |s: &Option<Signed>| match s {
        Some(s) if !s.signature.is_empty() => "signed",
        _ => "not signed",
    };
    out.push(format!(
        "  provider admin: {}; requester admin: {}; declaration: {}",
        signed(&sa.provider),
        signed(&sa.requester),
        if sa.declaration.is_some() {
            "attached"
        } else {
            "none"
        }
    ));
    Ok(out.join("\n"))
}

/// Start an unsigned agreement draft.
pub fn draft_agreement(terms: &Agreement) -> Result<SignedAgreement, Error> {
    alpr_proto::agreement::validate_terms(terms)?;
    Ok(SignedAgreement {
        provider: Some(Signed {
            payload_type: AGREEMENT.into(),
            payload: terms.encode_to_vec(),
            signature: vec![],
            cert_chain: vec![],
            sealed_boxes: vec![],
            sealed_box_proofs: vec![],
        }),
        requester: None,
        declaration: None,
    })
}

/// Sign an agreement as `admin`: the provider's admin fills the provider signature, the
/// requester's admin the countersignature. Both sign the identical bytes.
pub fn sign_agreement(
    sa: &mut SignedAgreement,
    admin: &Signer,
    trust: &TrustStore,
) -> Result<&'static str, Error> {
    let id = trust.verify(admin.chain(), alpr_pki::now_unix())?;
    if id.role != alpr_pki::Role::Admin {
        return Err(Error::Usage(format!(
            "agreements are signed by admins; this is {} certificate",
            id.role.with_article()
        )));
    }
    let (payload, terms) = agreement_terms(sa)?;
    let sealed = envelope::seal_bytes(admin, AGREEMENT, payload)?;
    if id.ori() == Some(terms.provider_ori.as_str()) {
        sa.provider = Some(sealed);
        Ok("provider")
    } else if id.ori() == Some(terms.requester_ori.as_str()) {
        sa.requester = Some(sealed);
        Ok("requester")
    } else {
        Err(Error::Usage(format!(
            "{} is not a party to this agreement",
            id.describe()
        )))
    }
}

/// Attach the requester admin's signed written declaration (needed where the provider's
/// state demands one from out-of-state requesters).
pub fn declare(
    sa: &mut SignedAgreement,
    requester_admin: &Signer,
    text: &str,
) -> Result<(), Error> {
    let payload = sa
        .provider
        .as_ref()
        .or(sa.requester.as_ref())
        .map(|s| s.payload.clone())
        .unwrap_or_default();
    let d = alpr_proto::pb::Declaration {
        agreement_id: alpr_proto::agreement::agreement_id(&payload),
        text: text.into(),
        signed_at: alpr_pki::now_unix(),
    };
    sa.declaration = Some(envelope::seal(
        requester_admin,
        alpr_proto::agreement::DECLARATION,
        &d,
    )?);
    Ok(())
}

/// Register a doubly signed agreement at the broker; returns its id.
pub async fn submit_agreement(
    client: &mut BrokerClient<tonic::transport::Channel>,
    sa: &SignedAgreement,
) -> Result<String, Error> {
    Ok(client
        .submit_agreement(sa.clone())
        .await?
        .into_inner()
        .agreement_id)
}

/// Connect to a node's admin side as an admin or supervisor.
pub fn admin_client(
    node: &Target,
    trust: &TrustStore,
    me: &TlsIdentity,
    timeout: Duration,
) -> Result<alpr_proto::pb::node_admin_client::NodeAdminClient<tonic::transport::Channel>, Error> {
    let cfg = alpr_runtime::tls::client_config(trust, me)?;
    Ok(alpr_proto::pb::node_admin_client::NodeAdminClient::new(
        alpr_runtime::client::channel(node, cfg, timeout)?,
    ))
}

/// Build the acknowledgement of the node's current state (after it was found edited
/// outside the logged admin path).
pub fn acknowledge_state(note: &str) -> alpr_proto::pb::AdminRequest {
    alpr_proto::pb::AdminRequest {
        command: Some(alpr_proto::pb::admin_request::Command::AcknowledgeState(
            alpr_proto::pb::AcknowledgeState { note: note.into() },
        )),
    }
}

/// Build a switch command.
pub fn switch(
    name: crate::settings::Switch,
    on: bool,
    ori: &str,
    note: &str,
) -> alpr_proto::pb::AdminRequest {
    alpr_proto::pb::AdminRequest {
        command: Some(alpr_proto::pb::admin_request::Command::SetSwitch(
            alpr_proto::pb::SetSwitch {
                name: name.as_str().into(),
                on,
                ori: ori.into(),
                note: note.into(),
            },
        )),
    }
}

/// Build an account command.
pub fn user_cmd(
    action: &str,
    user: &str,
    role: &str,
    trained_at: i64,
    note: &str,
) -> alpr_proto::pb::AdminRequest {
    alpr_proto::pb::AdminRequest {
        command: Some(alpr_proto::pb::admin_request::Command::User(
            alpr_proto::pb::UserCommand {
                action: action.into(),
                user: user.into(),
                role: role.into(),
                trained_at,
                note: note.into(),
            },
        )),
    }
}
