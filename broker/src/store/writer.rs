//! The group-commit writer of the routing log, whichever database holds it: one thread
//! owns a write connection; callers hand it rows and wait until the transaction holding
//! them is durable, so concurrent queries share one commit.

use crate::Error;
use crate::store::LogEntry;

/// Most rows written in one group commit.
const MAX_GROUP: usize = 4096;

type LogAck = tokio::sync::oneshot::Sender<Result<(), String>>;

/// A backend's commit of groups of rows, in order, in one transaction.
pub(super) type GroupCommit = Box<dyn FnMut(&[&[LogEntry]]) -> Result<(), Error> + Send>;

/// Group-commit writer for the routing log.
#[derive(Clone, Debug)]
pub struct LogWriter {
    tx: std::sync::mpsc::Sender<(Vec<LogEntry>, LogAck)>,
}

impl LogWriter {
    /// Start the writer thread over `commit`.
    pub(super) fn start(mut commit: GroupCommit) -> Result<Self, Error> {
        let (tx, rx) = std::sync::mpsc::channel::<(Vec<LogEntry>, LogAck)>();
        std::thread::Builder::new()
            .name("routing-log-writer".into())
            .spawn(move || {
                while let Some(jobs) =
                    alpr_runtime::sqlite::next_group(&rx, MAX_GROUP, |j| j.0.len())
                {
                    let groups: Vec<&[LogEntry]> = jobs.iter().map(|j| j.0.as_slice()).collect();
                    let result = commit(&groups);
                    if let Err(e) = &result {
                        tracing::error!(error = %e, "ALERT: routing log write failed");
                    }
                    for (_, ack) in jobs {
                        let _ = ack.send(result.as_ref().map(|_| ()).map_err(ToString::to_string));
                    }
                }
            })
            .map_err(|e| Error::Log(format!("cannot start the writer: {e}")))?;
        Ok(Self { tx })
    }

    /// Queue rows without waiting for them: for outcomes recorded after the fact (a crash
    /// can lose the last group of these, never a routing decision). A failed write is
    /// logged as an alert by the writer.
    pub fn append_unawaited(&self, entries: Vec<LogEntry>) {
        let (ack_tx, _) = tokio::sync::oneshot::channel();
        if self.tx.send((entries, ack_tx)).is_err() {
            tracing::error!("ALERT: routing log writer stopped; outcome rows lost");
        }
    }

    /// Resolves once every row queued before it is durable.
    pub async fn flush(&self) -> Result<(), Error> {
        self.append(Vec::new()).await
    }

    /// Append rows; resolves once they are durable (or with the error that kept them out).
    pub async fn append(&self, entries: Vec<LogEntry>) -> Result<(), Error> {
        let (ack_tx, ack_rx) = tokio::sync::oneshot::channel();
        self.tx
            .send((entries, ack_tx))
            .map_err(|_| Error::Log("writer stopped".into()))?;
        ack_rx
            .await
            .map_err(|_| Error::Log("writer stopped".into()))?
            .map_err(Error::Log)
    }
}
