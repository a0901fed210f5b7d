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
    /// The audit log cannot take entries (writer stopped, file unusable, checkpoint not
    /// signed): the node refuses every request meanwhile (fail closed).
    #[error("audit log: {0}")]
    AuditUnavailable(String),
    /// The audit log does not verify: the first bad entry or checkpoint.
    #[error("audit log: {0}")]
    AuditBroken(#[from] crate::audit::Break),
    /// Stored data does not decode (damaged, or written by something else).
    #[error("stored {what} is damaged: {detail}")]
    Corrupt {
        /// What was read (`agreement <id>`, `audit entry 12`, ...).
        what: String,
        /// Why it does not decode.
        detail: String,
    },
    /// A person tried what their role or agency may not do; refused as `NOT_AUTHORIZED`.
    #[error("NOT_AUTHORIZED: {0}")]
    NotPermitted(String),
    /// Bad command-line or operator input (a malformed time, an unknown format, a missing
    /// flag, a command that cannot be carried out as given).
    #[error("{0}")]
    Usage(String),
    /// The data keys or the key-encryption key: missing, wrong, unreadable or exposed.
    #[error("encryption at rest: {0}")]
    Keys(String),
    /// The node's certificate does not fit its config (not a node certificate, no agency
    /// claims, another ORI).
    #[error("{0}")]
    Identity(String),
    /// Sending queries or syncing the registry needs a `[broker]` section in `node.toml`.
    #[error("this node has no [broker] configured; it cannot send queries or sync the registry")]
    NoBroker,
    /// The registry the broker showed cannot be trusted (fork, mismatch, no cosignature);
    /// this node keeps its last verified view.
    #[error("{0}")]
    RegistryUntrusted(String),
    /// Another daemon serves this data directory.
    #[error("data_dir {} is already served by another alpr-node (it holds {}); stop that one first", .dir.display(), .lock.display())]
    DataDirBusy {
        /// The data directory.
        dir: PathBuf,
        /// The lock file the other daemon holds.
        lock: PathBuf,
    },
    /// The node database was written by a newer alpr-node.
    #[error(
        "the node database has schema version {found}, newer than this alpr-node ({supported}); upgrade alpr-node"
    )]
    SchemaTooNew {
        /// The version found in the file.
        found: i64,
        /// The newest version this build reads.
        supported: i64,
    },
    /// Sharing cannot be turned on while the SB 34 usage and privacy policy is incomplete.
    #[error("sharing stays off: the usage and privacy policy (SB 34) is missing: {}", .0.join(", "))]
    PolicyIncomplete(Vec<String>),
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
    /// Stored `what` that does not decode.
    pub(crate) fn corrupt(what: impl Into<String>, detail: impl std::fmt::Display) -> Self {
        Self::Corrupt {
            what: what.into(),
            detail: detail.to_string(),
        }
    }

    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }

    /// The refusal reason this error stands for, if it is a refusal.
    pub fn reason(&self) -> Option<alpr_proto::RefusalReason> {
        match self {
            Self::Refused(e) => Some(e.reason()),
            Self::NotPermitted(_) => Some(alpr_proto::RefusalReason::NotAuthorized),
            _ => None,
        }
    }

    /// The gRPC status for this error (the one place errors become statuses).
    pub fn to_status(&self) -> tonic::Status {
        match self {
            Self::Refused(e) => e.to_status(),
            Self::Usage(_)
            | Self::Identity(_)
            | Self::NoBroker
            | Self::RegistryUntrusted(_)
            | Self::DataDirBusy { .. }
            | Self::SchemaTooNew { .. }
            | Self::PolicyIncomplete(_) => tonic::Status::invalid_argument(self.to_string()),
            Self::Rpc(s) => s.clone(),
            Self::AuditUnavailable(_) | Self::AuditBroken(_) => {
                tonic::Status::unavailable("audit log unavailable; refusing (fail closed)")
            }
            Self::NotPermitted(m) => alpr_proto::refusal_status(
                alpr_proto::RefusalReason::NotAuthorized,
                &format!("NOT_AUTHORIZED: {m}"),
            ),
            other => {
                tracing::error!(error = %other, "internal error");
                tonic::Status::internal("internal error")
            }
        }
    }
}
