use std::path::PathBuf;

/// Everything that can go wrong in the broker.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The configuration file is missing, unreadable or invalid.
    #[error("config {path}: {reason}")]
    Config {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A certificate or key could not be loaded or verified.
    #[error(transparent)]
    Pki(#[from] alpr_pki::Error),
    /// A protocol rule refused something.
    #[error(transparent)]
    Refused(#[from] alpr_proto::Error),
    /// The database failed.
    #[error("database: {0}")]
    Db(#[from] crate::store::DbError),
    /// The PostgreSQL store failed or cannot be reached (the server's own message).
    #[error("postgres: {0}")]
    Postgres(String),
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The routing-log writer failed or stopped; nothing is routed without its log entry.
    #[error("routing log: {0}")]
    Log(String),
    /// TLS, serving or connection setup failed.
    #[error(transparent)]
    Runtime(#[from] alpr_runtime::Error),
    /// Work handed to a blocking or background task panicked or was cancelled.
    #[error("background task: {0}")]
    Task(#[from] tokio::task::JoinError),
    /// Bad input from a caller or operator.
    #[error("{0}")]
    Usage(String),
    /// Not possible right now; asking again may work (the registry moved mid-request).
    #[error("{0}")]
    Unavailable(String),
    /// Stored data does not decode or verify (damaged, or written by something else).
    #[error("{what}: {detail}")]
    Corrupt {
        /// What was read.
        what: String,
        /// What is wrong with it.
        detail: String,
    },
}

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }

    /// The gRPC status for this error (the one place errors become statuses).
    pub fn to_status(&self) -> tonic::Status {
        match self {
            Self::Refused(e) => e.to_status(),
            Self::Usage(m) => tonic::Status::invalid_argument(m.clone()),
            Self::Unavailable(m) => tonic::Status::unavailable(m.clone()),
            other => {
                tracing::error!(error = %other, "internal error");
                tonic::Status::internal("internal error")
            }
        }
    }
}
