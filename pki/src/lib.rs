//! Public-key infrastructure for the federated ALPR broker.
//!
//! * [`issue`]: make the state root, agency CAs, node, person, broker and regulator
//!   certificates, and CRLs (rcgen).
//! * [`TrustStore`]: verify a certificate chain to the state root, check revocation, and
//!   return the parsed [`VerifiedIdentity`] (rustls-webpki + x509-parser). A leaf whose
//!   agency claims differ from its issuing agency CA's is refused ([`Error::ClaimMismatch`]).
//! * [`Signer`] and [`TrustStore::verify_signature`]: ECDSA P-256/SHA-256 (ring).
//! * [`PkiLayout`]: where the `alpr-pki` command writes its files; [`directory`] issues
//!   into and revokes from such a directory (the functions the CLI calls).
#![forbid(unsafe_code)]
#![warn(missing_docs)]
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]

pub mod claims;
pub mod cli;
pub mod directory;
mod error;
pub mod issue;
mod layout;
mod pem;
mod sign;
mod verify;

pub use claims::{AgencyClaims, AgencyKind, Jurisdiction, Role};
pub use error::Error;
pub use layout::PkiLayout;
pub use pem::{read_cert_chain, read_checked_crls, read_crls, read_private_key};
pub use rustls_pki_types::{CertificateDer, CertificateRevocationListDer};
pub use sign::{Signer, p1363_to_der};
pub use verify::{TrustStore, VerifiedIdentity, load_crl_file};

/// Unix seconds as an RFC 3339 date-time (the number itself if out of range).
pub fn fmt_time(t: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(t)
        .ok()
        .and_then(|d| {
            d.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| t.to_string())
}

/// A time as people read it, to the minute: `2026-12-01 22:45 UTC` (web pages).
pub fn fmt_when(t: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(t)
        .ok()
        .and_then(|d| {
            d.format(time::macros::format_description!(
                "[year]-[month]-[day] [hour]:[minute] UTC"
            ))
            .ok()
        })
        .unwrap_or_else(|| t.to_string())
}

/// Seconds since the Unix epoch, now.
pub fn now_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests;
