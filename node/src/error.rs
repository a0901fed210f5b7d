use std::path::PathBuf;

/// Everything that can go wrong in a node.
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
    Db(crate::store::DbError),
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// TLS, serving or connection setup failed.
    #[error(transparent)]
    Runtime(#[from] alpr_runtime::Error),
    /// Work handed to a blocking or background task panicked or was cancelled.
    #[error("background task: {0}")]
    Task(#[from] tokio::task::JoinError),
    /// A remote call failed or was refused.
    #[error("{}", rpc_message(.0))]
    Rpc(tonic::Status),
    /// The audit log could not be written or does not verify.
    #[error("audit log: {0}")]
    Audit(String),
    /// Bad command-line input.
    #[error("{0}")]
    Usage(String),
    /// A query got no answer from any target (each refused, was unavailable or sent a bad
    /// reply), or the own node refused it.
    #[error("{0}")]
    NothingAnswered(String),
    /// A command finished without doing all it was asked (its own exit code).
    #[error("{message}")]
    Incomplete {
        /// The process exit code.
        exit: u8,
        /// What is incomplete.
        message: String,
    },
}

fn rpc_message(s: &tonic::Status) -> String {
    match s.code() {
        tonic::Code::PermissionDenied => format!("refused: {}", s.message()),
        code => format!(
            "remote call failed ({code:?}): {}",
            alpr_runtime::client::explain_connect_error(s.message())
        ),
    }
}

impl From<tonic::Status> for Error {
    fn from(s: tonic::Status) -> Self {
        Self::Rpc(s)
    }
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
            Self::Rpc(s) => s.clone(),
            Self::Audit(_) => {
                tonic::Status::unavailable("audit log unavailable; refusing (fail closed)")
            }
            other => {
                tracing::error!(error = %other, "internal error");
                tonic::Status::internal("internal error")
            }
        }
    }
}
