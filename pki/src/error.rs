use std::path::PathBuf;

/// Everything that can go wrong issuing, loading or verifying certificates and signatures.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A claim value is malformed or a claim set is incomplete.
    #[error("invalid claim: {0}")]
    InvalidClaim(String),
    /// The certificate chain does not verify to the state root, or a certificate breaks
    /// the profile (key usage, basic constraints, role, validity).
    #[error("certificate invalid: {0}")]
    CertInvalid(String),
    /// A certificate in the chain is listed on a loaded CRL.
    #[error("certificate revoked")]
    CertRevoked,
    /// A leaf's agency claims differ from its issuing agency CA's claims.
    #[error("claim mismatch: {0}")]
    ClaimMismatch(String),
    /// A signature does not verify with the signer's certificate.
    #[error("bad signature")]
    BadSignature,
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A PEM file holds nothing usable.
    #[error("{path}: {reason}")]
    Pem {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// A certificate or key file already exists; nothing was overwritten.
    #[error("{} already exists; refusing to overwrite it (pass --force to replace it, keeping the old file as <name>.old-<time>)", .0.display())]
    Exists(PathBuf),
    /// A private key file other users can read: refused until its mode is 0600.
    #[error("{}: the private key can be read by other users (mode {mode:04o}); run `chmod 600 {}` (and check who copied it)", .path.display(), .path.display())]
    KeyExposed {
        /// The key file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// A certificate cannot be revoked from this PKI directory.
    #[error("cannot revoke: {0}")]
    CannotRevoke(String),
    /// rcgen failed to generate a key, certificate or CRL.
    #[error("generating certificate: {0}")]
    Generate(#[from] rcgen::Error),
}

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }
}
