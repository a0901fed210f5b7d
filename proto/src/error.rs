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
