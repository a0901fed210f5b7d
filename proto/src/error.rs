use crate::RefusalReason;

/// Errors of this crate. Every variant maps onto a stable [`RefusalReason`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A refusal with its stable reason code and a human-readable detail.
    #[error("{}: {detail}", .reason.as_str_name())]
    Refused {
        /// The reason code.
        reason: RefusalReason,
        /// What exactly was wrong.
        detail: String,
    },
    /// Bundled data (purpose codes, state rules) failed to load; a build defect.
    #[error("bundled data: {0}")]
    Data(String),
}

impl Error {
    /// A refusal.
    pub fn refused(reason: RefusalReason, detail: impl Into<String>) -> Self {
        Self::Refused {
            reason,
            detail: detail.into(),
        }
    }

    /// The reason code (`INVALID_INPUT` for data errors).
    pub fn reason(&self) -> RefusalReason {
        match self {
            Self::Refused { reason, .. } => *reason,
            Self::Data(_) => RefusalReason::InvalidInput,
        }
    }

    /// The detail text.
    pub fn detail(&self) -> String {
        match self {
            Self::Refused { detail, .. } => detail.clone(),
            Self::Data(d) => d.clone(),
        }
    }
}

impl From<alpr_pki::Error> for Error {
    fn from(e: alpr_pki::Error) -> Self {
        let reason = match &e {
            alpr_pki::Error::BadSignature => RefusalReason::BadSignature,
            alpr_pki::Error::CertRevoked => RefusalReason::CertRevoked,
            alpr_pki::Error::ClaimMismatch(_) => RefusalReason::ClaimMismatch,
            _ => RefusalReason::CertInvalid,
        };
        Self::refused(reason, e.to_string())
    }
}

/// The response-trailer key that carries a refusal's stable reason code (the
/// [`RefusalReason`] name, ASCII) on every gRPC error a party returns for a refusal.
pub const REASON_METADATA: &str = "alpr-refusal-reason";

impl Error {
    /// The gRPC status for this refusal: `INVALID_ARGUMENT` for `INVALID_INPUT`,
    /// `PERMISSION_DENIED` for every other reason, with the reason code in the
    /// [`REASON_METADATA`] trailer so a client never parses the message text.
    pub fn to_status(&self) -> tonic::Status {
        refusal_status(self.reason(), &self.to_string())
    }
}

/// A gRPC status refusing with `reason` (see [`Error::to_status`]).
pub fn refusal_status(reason: RefusalReason, message: &str) -> tonic::Status {
    let code = if reason == RefusalReason::InvalidInput {
        tonic::Code::InvalidArgument
    } else {
        tonic::Code::PermissionDenied
    };
    let mut status = tonic::Status::new(code, message);
    if let Ok(v) = reason.as_str_name().parse() {
        status.metadata_mut().insert(REASON_METADATA, v);
    }
    status
}

/// The refusal reason a status carries in its [`REASON_METADATA`] trailer, if any.
pub fn reason_of(status: &tonic::Status) -> Option<RefusalReason> {
    status
        .metadata()
        .get(REASON_METADATA)
        .and_then(|v| v.to_str().ok())
        .and_then(RefusalReason::from_str_name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_carry_their_reason_as_a_trailer() {
        let s = Error::refused(RefusalReason::ReasonInsufficient, "too vague").to_status();
        assert_eq!(s.code(), tonic::Code::PermissionDenied);
        assert_eq!(reason_of(&s), Some(RefusalReason::ReasonInsufficient));
        assert_eq!(
            s.metadata().get(REASON_METADATA).unwrap(),
            "REASON_INSUFFICIENT"
        );
        let s = Error::refused(RefusalReason::InvalidInput, "bad").to_status();
        assert_eq!(s.code(), tonic::Code::InvalidArgument);
        assert_eq!(reason_of(&s), Some(RefusalReason::InvalidInput));
        assert_eq!(reason_of(&tonic::Status::internal("x")), None);
    }
}
