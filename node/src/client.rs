//! Client side: an investigator's search through their own node, and agreement helpers
//! for admins. Used by the CLI, the demo and the tests.

use std::time::Duration;

use alpr_pki::{Signer, TrustStore};
use alpr_proto::envelope::{self, AGREEMENT, ANSWER, QUERY, REFUSAL};
use alpr_proto::pb::broker_client::BrokerClient;
use alpr_proto::pb::node_local_client::NodeLocalClient;
use alpr_proto::pb::{
    Agreement, Answer, Query, Refusal, RouteResponse, SearchRequest, Signed, SignedAgreement,
    TargetResult,
};
use alpr_proto::transport::{self, Target, TlsIdentity};
use prost::Message;
use ring::rand::SecureRandom;

use crate::Error;

/// What an investigator asks for.
#[derive(Clone, Debug, Default)]
pub struct SearchParams {
    /// Plate as typed; normalized before signing.
    pub plate: String,
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
}

/// Build and sign a query as `investigator` (whose certificate names user and agency).
pub fn sign_query(
    investigator: &Signer,
    trust: &TrustStore,
    p: &SearchParams,
    now: i64,
) -> Result<(Query, Signed), Error> {
    let id = trust.verify(investigator.chain(), now)?;
    let mut query_id = vec![0u8; 16];
    ring::rand::SystemRandom::new()
        .fill(&mut query_id)
        .map_err(|_| Error::Usage("no system randomness for a query id".into()))?;
    let q = Query {
        query_id,
        requester_user: id.user.clone().unwrap_or_default(),
        requester_ori: id.ori().unwrap_or_default().to_owned(),
        plate: alpr_proto::input::normalize_plate(&p.plate)?,
        window_start: p.window_start,
        window_end: p.window_end,
        purpose_code: p.purpose.clone(),
        case_number: p.case_number.clone(),
        reason: p.reason.clone(),
        warrant_ref: p.warrant_ref.clone(),
        on_behalf_of_ori: p.on_behalf_of.clone(),
        targets: p.targets.clone(),
        issued_at: now,
        expires_at: now + if p.ttl_secs > 0 { p.ttl_secs } else { 300 },
    };
    let signed = envelope::seal(investigator, QUERY, &q)?;
    Ok((q, signed))
}

/// Connect to a node's local side as a person.
pub fn node_client(
    node: &Target,
    trust: &TrustStore,
    me: &TlsIdentity,
    timeout: Duration,
) -> Result<NodeLocalClient<tonic::transport::Channel>, Error> {
    let cfg = transport::client_config(trust, me).map_err(Error::Transport)?;
    Ok(NodeLocalClient::new(
        transport::channel(node, cfg, timeout).map_err(Error::Transport)?,
    ))
}

/// Connect to the broker.
pub fn broker_client(
    broker: &Target,
    trust: &TrustStore,
    me: &TlsIdentity,
    timeout: Duration,
) -> Result<BrokerClient<tonic::transport::Channel>, Error> {
    let cfg = transport::client_config(trust, me).map_err(Error::Transport)?;
    Ok(BrokerClient::new(
        transport::channel(broker, cfg, timeout).map_err(Error::Transport)?,
    ))
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

/// A target's verified reply.
#[derive(Clone, Debug)]
pub enum Reply {
    /// Reads, signed by the owner.
    Answer(Answer),
    /// A refusal signed by the owner.
    Refusal(Refusal),
}

/// Verify a target's signed reply: signed by that agency's node, bound to this query.
pub fn verify_reply(
    trust: &TrustStore,
    result: &TargetResult,
    query: &Query,
    now: i64,
) -> Result<Option<Reply>, Error> {
    let Some(reply) = &result.reply else {
        return Ok(None);
    };
    let check_signer = |id: &alpr_pki::VerifiedIdentity| {
        if id.role != alpr_pki::Role::Node || id.ori() != Some(result.ori.as_str()) {
            return Err(Error::Usage(format!(
                "reply for {} signed by {}",
                result.ori,
                id.describe()
            )));
        }
        Ok(())
    };
    if reply.payload_type == ANSWER {
        let (id, a): (_, Answer) = envelope::open_as(trust, reply, ANSWER, now)?;
        check_signer(&id)?;
        if a.query_id != query.query_id
            || a.requester_user != query.requester_user
            || a.requester_ori != query.requester_ori
        {
            return Err(Error::Usage(format!(
                "answer from {} is bound to another query or requester",
                result.ori
            )));
        }
        Ok(Some(Reply::Answer(a)))
    } else {
        let (id, r): (_, Refusal) = envelope::open_as(trust, reply, REFUSAL, now)?;
        check_signer(&id)?;
        Ok(Some(Reply::Refusal(r)))
    }
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
            "agreements are signed by admins; this is a {} certificate",
            id.role
        )));
    }
    let payload = sa
        .provider
        .as_ref()
        .or(sa.requester.as_ref())
        .map(|s| s.payload.clone())
        .ok_or_else(|| Error::Usage("agreement file holds no terms".into()))?;
    let terms = Agreement::decode(payload.as_slice())
        .map_err(|e| Error::Usage(format!("agreement does not decode: {e}")))?;
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
    let cfg = transport::client_config(trust, me).map_err(Error::Transport)?;
    Ok(alpr_proto::pb::node_admin_client::NodeAdminClient::new(
        transport::channel(node, cfg, timeout).map_err(Error::Transport)?,
    ))
}

/// Build a switch command.
pub fn switch(name: &str, on: bool, ori: &str, note: &str) -> alpr_proto::pb::AdminRequest {
    alpr_proto::pb::AdminRequest {
        command: Some(alpr_proto::pb::admin_request::Command::SetSwitch(
            alpr_proto::pb::SetSwitch {
                name: name.into(),
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
