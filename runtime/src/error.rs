/// Everything that can go wrong starting, serving or connecting a party.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// rustls refused a certificate, key or protocol setting.
    #[error("{what}: {source}")]
    Tls {
        /// Which part of the TLS configuration.
        what: &'static str,
        /// What rustls said.
        source: rustls::Error,
    },
    /// A certificate verifier (with the CRLs in force) could not be built.
    #[error("{what}: {source}")]
    Verifier {
        /// Which verifier.
        what: &'static str,
        /// What rustls said.
        source: rustls::server::VerifierBuilderError,
    },
    /// A certificate, key or CRL file could not be loaded or verified.
    #[error(transparent)]
    Pki(#[from] alpr_pki::Error),
    /// An address or server name that cannot be used.
    #[error("bad {what} {value:?}: {detail}")]
    Address {
        /// `address` or `server name`.
        what: &'static str,
        /// The value given.
        value: String,
        /// Why it cannot be used.
        detail: String,
    },
    /// gRPC server reflection could not be built from the descriptor set (a build defect).
    #[error("reflection: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
    /// The gRPC server failed or its task ended abnormally.
    #[error("server: {0}")]
    Serve(String),
    /// A socket or file could not be opened.
    #[error("{what}: {source}")]
    Io {
        /// What was being opened (`listen 127.0.0.1:7443`, a file).
        what: String,
        /// The underlying error.
        source: std::io::Error,
    },
    /// Logging or span export could not be installed.
    #[error("telemetry: {0}")]
    Telemetry(String),
    /// A PostgreSQL database cannot be reached or refused a statement (the server's own
    /// message).
    #[error("postgres: {0}")]
    Postgres(String),
    /// A PostgreSQL connection string or CA file that cannot be used.
    #[error("{0}")]
    PostgresConfig(String),
    /// A local PostgreSQL server ([`crate::pgserver`]) could not be set up or started.
    #[error("local postgres: {0}")]
    LocalPostgres(String),
    /// A Merkle tree kept in a table cannot be read or written, or a proof is asked for
    /// sizes it cannot give.
    #[error("merkle tree {table}: {detail}")]
    Tree {
        /// The table (or `proof`).
        table: &'static str,
        /// What went wrong.
        detail: String,
    },
}
