//! Directional sharing agreements, signed by both agencies' admins.
//!
//! Both admins sign the **same payload bytes**; the agreement id is derived from those
//! bytes, so a changed agreement is a different agreement that needs new signatures.

use alpr_pki::{Role, TrustStore, VerifiedIdentity};
use prost::Message;

use crate::envelope::{self, AGREEMENT};
use crate::pb::{Agreement, SignedAgreement};
use crate::{Error, RefusalReason};

/// Longest agreement term allowed by default (one year).
pub const DEFAULT_MAX_TERM_DAYS: i64 = 366;

/// Where an agreement stands. Nothing moves an agreement back to `Active`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AgreementStatus {
    /// Registered and not revoked or suspended (it may still have expired).
    Active,
    /// Revoked by a party.
    Revoked,
    /// Suspended by a regulator.
    Suspended,
}

impl AgreementStatus {
    /// `active`, `revoked`, `suspended`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Revoked => "revoked",
            Self::Suspended => "suspended",
        }
    }

    /// Parse the stored form.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "active" => Self::Active,
            "revoked" => Self::Revoked,
            "suspended" => Self::Suspended,
            _ => return None,
        })
    }
}

/// An agreement whose two signatures have been verified.
#[derive(Clone, Debug)]
pub struct VerifiedAgreement {
    /// Content-derived id (`agr-` + 32 hex digits of SHA-256 of the payload).
    pub id: String,
    /// The agreement terms.
    pub terms: Agreement,
    /// The provider admin who signed.
    pub provider_admin: VerifiedIdentity,
    /// The requester admin who countersigned.
    pub requester_admin: VerifiedIdentity,
}

/// An agreement as the admission rules see it: terms plus current status.
#[derive(Clone, Debug)]
pub struct AgreementView {
    /// Agreement id.
    pub id: String,
    /// Terms.
    pub terms: Agreement,
    /// Current status.
    pub status: AgreementStatus,
}

/// The id of an agreement payload.
pub fn agreement_id(payload: &[u8]) -> String {
    let d = ring::digest::digest(&ring::digest::SHA256, payload);
    format!("agr-{}", hex::encode(&d.as_ref()[..16]))
}

/// Verify both signatures of a submitted agreement and validate its terms.
///
/// The provider's admin must belong to the provider agency and the requester's admin to
/// the requester agency; both must have signed the identical bytes.
pub fn verify(
    trust: &TrustStore,
    sa: &SignedAgreement,
    now: i64,
) -> Result<VerifiedAgreement, Error> {
    let p = sa
        .provider
        .as_ref()
        .ok_or_else(|| Error::refused(RefusalReason::InvalidInput, "provider signature missing"))?;
    let r = sa.requester.as_ref().ok_or_else(|| {
        Error::refused(
            RefusalReason::InvalidInput,
            "requester countersignature missing",
        )
    })?;
    for (who, env) in [("provider's", p), ("requester's", r)] {
        if env.payload_type != AGREEMENT {
            return Err(Error::refused(
                RefusalReason::BadSignature,
                format!(
                    "the {who} signature is over payload type {:?}, not {AGREEMENT:?}",
                    env.payload_type
                ),
            ));
        }
    }
    if p.payload != r.payload {
        return Err(Error::refused(
            RefusalReason::BadSignature,
            "provider and requester signed different agreement bytes",
        ));
    }
    let (provider_admin, bytes) = envelope::open(trust, p, AGREEMENT, now)?;
    let (requester_admin, _) = envelope::open(trust, r, AGREEMENT, now)?;
    let terms = Agreement::decode(bytes).map_err(|e| {
        Error::refused(
            RefusalReason::InvalidInput,
            format!("agreement does not decode: {e}"),
        )
    })?;
    for (who, id, ori) in [
        ("provider", &provider_admin, &terms.provider_ori),
        ("requester", &requester_admin, &terms.requester_ori),
    ] {
        if id.role != Role::Admin {
            return Err(Error::refused(
                RefusalReason::CertInvalid,
                format!(
                    "{who} signature is by {} certificate, not an admin",
                    id.role.with_article()
                ),
            ));
        }
        if id.ori() != Some(ori.as_str()) {
            return Err(Error::refused(
                RefusalReason::ClaimMismatch,
                format!(
                    "{who} signature is by an admin of {}, not of {ori}",
                    id.ori().unwrap_or("-")
                ),
            ));
        }
    }
    validate_terms(&terms)?;
    Ok(VerifiedAgreement {
        id: agreement_id(bytes),
        terms,
        provider_admin,
        requester_admin,
    })
}

/// Check an agreement's terms are complete and sane.
pub fn validate_terms(a: &Agreement) -> Result<(), Error> {
    let bad = |m: String| Err(Error::refused(RefusalReason::InvalidInput, m));
    alpr_pki::claims::validate_ori(&a.provider_ori)
        .map_err(|e| Error::refused(RefusalReason::InvalidInput, e.to_string()))?;
    alpr_pki::claims::validate_ori(&a.requester_ori)
        .map_err(|e| Error::refused(RefusalReason::InvalidInput, e.to_string()))?;
    if a.provider_ori == a.requester_ori {
        return bad("an agency does not need an agreement with itself".into());
    }
    if a.purposes.is_empty() {
        return bad("an agreement must name its allowed purposes".into());
    }
    for p in &a.purposes {
        crate::purpose::lookup(p)?;
    }
    if a.data_types.is_empty() || a.data_types.iter().any(|d| d != "reads" && d != "hotlists") {
        return bad("data_types must be a non-empty list of \"reads\" and/or \"hotlists\"".into());
    }
    if a.max_lookback_days == 0 {
        return bad("max_lookback_days must be at least 1".into());
    }
    if a.valid_until <= a.valid_from {
        return bad("valid_until is mandatory and must be after valid_from".into());
    }
    if a.valid_until - a.valid_from > DEFAULT_MAX_TERM_DAYS * 86_400 {
        return bad(format!(
            "term longer than {DEFAULT_MAX_TERM_DAYS} days; agreements must be renewed"
        ));
    }
    if a.justification.trim().len() < 20 {
        return bad(
            "justification must record the requester's right and need to know (20+ characters)"
                .into(),
        );
    }
    Ok(())
}

/// Payload type of a requester's declaration.
pub const DECLARATION: &str = "alpr.v1.Declaration";

/// Shortest declaration a state that asks for one accepts, characters (trimmed).
pub const DECLARATION_MIN_CHARS: usize = 80;

/// Whether a declaration's `text` says the `required` words, word for word (white space
/// and case aside).
pub fn declaration_says(text: &str, required: &str) -> bool {
    let words = |s: &str| {
        s.split_whitespace()
            .map(str::to_lowercase)
            .collect::<Vec<_>>()
            .join(" ")
    };
    words(text).contains(&words(required))
}

/// Where the provider's state rules demand it, check the out-of-state requester's signed
/// written declaration: by the requester's admin, for this agreement, with substance.
pub fn check_declaration(
    trust: &TrustStore,
    sa: &SignedAgreement,
    v: &VerifiedAgreement,
    rules: &crate::rules::StateRules,
    at: i64,
) -> Result<(), Error> {
    let (Some(p), Some(r)) = (
        &v.provider_admin.jurisdiction,
        &v.requester_admin.jurisdiction,
    ) else {
        return Ok(());
    };
    let required = rules.declaration_for(r);
    if (!rules.out_of_state_declaration && required.is_none()) || p == r {
        return Ok(());
    }
    let refuse = |m: String| Error::refused(RefusalReason::RequesterJurisdictionNotPermitted, m);
    let d = sa.declaration.as_ref().ok_or_else(|| {
        refuse(format!(
            "{} rules ({}) require the out-of-state requester's signed written declaration",
            rules.jurisdiction, rules.version
        ))
    })?;
    let (id, decl): (_, crate::pb::Declaration) = envelope::open_as(trust, d, DECLARATION, at)?;
    if id.role != Role::Admin || id.ori() != Some(v.terms.requester_ori.as_str()) {
        return Err(refuse(format!(
            "the declaration must be signed by {}'s admin, not {}",
            v.terms.requester_ori,
            id.describe()
        )));
    }
    if decl.agreement_id != v.id {
        return Err(refuse("the declaration names another agreement".into()));
    }
    if decl.text.trim().len() < DECLARATION_MIN_CHARS {
        return Err(refuse("the declaration must state in writing how the data will and will not be used (80+ characters)".into()));
    }
    if let Some(text) = required
        && !declaration_says(&decl.text, text)
    {
        return Err(refuse(format!(
            "{} rules ({}) require requesters in {r} to declare, word for word: \"{text}\"",
            rules.jurisdiction, rules.version
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use alpr_pki::{AgencyKind, Role};
    use prost::Message;

    use super::*;
    use crate::pb::{Signed, SignedAgreement};
    use crate::testkit::Kit;

    fn signed_both(kit: &Kit, requester_type: &str) -> SignedAgreement {
        let now = alpr_pki::now_unix();
        let terms = Agreement {
            provider_ori: "CA0560100".into(),
            requester_ori: "CA0340000".into(),
            purposes: vec!["240".into()],
            data_types: vec!["reads".into()],
            max_lookback_days: 30,
            valid_from: now - 60,
            valid_until: now + 86_400,
            justification: "Neighbouring county; shared auto-theft task force".into(),
            drafted_at: now,
            query_shapes: vec![],
        };
        let p = kit.signer("CA0560100", Role::Admin, Some("adm-p"));
        let r = kit.signer("CA0340000", Role::Admin, Some("adm-r"));
        let payload = terms.encode_to_vec();
        let sign = |s: &alpr_pki::Signer, ty: &str| -> Signed {
            envelope::seal_bytes(s, ty, payload.clone()).unwrap()
        };
        SignedAgreement {
            provider: Some(sign(&p, AGREEMENT)),
            requester: Some(sign(&r, requester_type)),
            declaration: None,
        }
    }

    #[test]
    fn both_signatures_verify_and_a_relabelled_one_is_named_as_such() {
        let mut kit = Kit::new();
        kit.agency("CA0560100", "US-CA", AgencyKind::Local);
        kit.agency("CA0340000", "US-CA", AgencyKind::Local);
        let now = alpr_pki::now_unix();
        verify(&kit.trust, &signed_both(&kit, AGREEMENT), now).unwrap();
        // The same bytes signed under another payload type: the message says that, not
        // that the two admins signed different bytes.
        let e = verify(&kit.trust, &signed_both(&kit, "alpr.v1.Query"), now).unwrap_err();
        assert_eq!(e.reason(), RefusalReason::BadSignature);
        assert!(
            e.detail()
                .contains("the requester's signature is over payload type \"alpr.v1.Query\""),
            "{e}"
        );
        // One side missing.
        let mut one = signed_both(&kit, AGREEMENT);
        one.requester = None;
        assert!(
            verify(&kit.trust, &one, now)
                .unwrap_err()
                .detail()
                .contains("countersignature missing")
        );
    }
}
