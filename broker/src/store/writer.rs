//! The group-commit writer of the routing log, whichever database holds it: one thread
//! owns a write connection; callers hand it rows and wait until the transaction holding
//! them is durable, so concurrent queries share one commit.
//!
//! A query's routing decisions can come with a [`Claim`]: on a store shared by replicas,
//! the writer claims the query id for each target decided `forwarded`, in the same
//! transaction as the rows, and writes a target some replica claimed before as a refused
//! replay instead. So a claim exists exactly when its decision is durable: a replica that
//! dies before its commit leaves neither, and the query can still be routed elsewhere.

use crate::Error;
use crate::store::LogEntry;
use crate::vocabulary::Decision;

/// Most rows written in one group commit.
const MAX_GROUP: usize = 4096;

/// What the writer answers a caller: the targets its claim found routed already.
type LogAck = tokio::sync::oneshot::Sender<Result<Vec<String>, String>>;

/// A query's claim on its forwarded targets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Claim {
    /// The query id.
    pub query_id: Vec<u8>,
    /// When it is made, Unix seconds.
    pub now: i64,
}

/// Rows waiting for the writer, with their claim.
#[derive(Debug)]
pub(super) struct Pending {
    /// The rows.
    pub entries: Vec<LogEntry>,
    /// The claim, if any.
    pub claim: Option<Claim>,
}

/// A backend's commit of groups of rows, in order, in one transaction: for each group,
/// the targets of its claim found routed already (none on a store of one broker's own).
pub(super) type GroupCommit =
    Box<dyn FnMut(&mut [Pending]) -> Result<Vec<Vec<String>>, Error> + Send>;

/// Rewrite the `forwarded` rows of `replays` as refused replays, as the writer stores them.
pub fn mark_replays(entries: &mut [LogEntry], replays: &[String]) {
    for e in entries {
        if e.decision == Decision::Forwarded
            && e.target.as_ref().is_some_and(|t| replays.contains(t))
        {
            e.decision = Decision::Refused;
            e.reason_code = Some(alpr_proto::RefusalReason::Replay.as_str_name().into());
            e.detail = Some(replay_detail(
                e.query_id.as_deref().unwrap_or("?"),
                e.target.as_deref().unwrap_or("?"),
            ));
        }
    }
}

/// Why a target another replica had routed the query to is refused (`query_id` in hex).
pub fn replay_detail(query_id: &str, target: &str) -> String {
    format!("query {query_id} was already routed to {target} by another broker replica")
}

/// Group-commit writer for the routing log.
#[derive(Clone, Debug)]
pub struct LogWriter {
    tx: std::sync::mpsc::Sender<(Pending, LogAck)>,
}

impl LogWriter {
    /// Start the writer thread over `commit`.
    pub(super) fn start(mut commit: GroupCommit) -> Result<Self, Error> {
        let (tx, rx) = std::sync::mpsc::channel::<(Pending, LogAck)>();
        std::thread::Builder::new()
            .name("routing-log-writer".into())
            .spawn(move || {
                while let Some(jobs) =
                    alpr_runtime::sqlite::next_group(&rx, MAX_GROUP, |j| j.0.entries.len())
                {
                    let (mut pending, acks): (Vec<Pending>, Vec<LogAck>) = jobs.into_iter().unzip();
                    let result = commit(&mut pending);
                    if let Err(e) = &result {
                        tracing::error!(error = %e, "ALERT: routing log write failed");
                    }
                    for (i, ack) in acks.into_iter().enumerate() {
                        let _ = ack.send(match &result {
                            Ok(replays) => Ok(replays.get(i).cloned().unwrap_or_default()),
                            Err(e) => Err(e.to_string()),
                        });
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
        let job = Pending {
            entries,
            claim: None,
        };
        if self.tx.send((job, ack_tx)).is_err() {
            tracing::error!("ALERT: routing log writer stopped; outcome rows lost");
        }
    }

    /// Resolves once every row queued before it is durable.
    pub async fn flush(&self) -> Result<(), Error> {
        self.append(Vec::new()).await
    }

    /// Append rows; resolves once they are durable (or with the error that kept them out).
    pub async fn append(&self, entries: Vec<LogEntry>) -> Result<(), Error> {
        self.send(entries, None).await.map(|_| ())
    }

    /// Append a query's routing decisions with its claim; resolves once they are durable,
    /// with the targets written as refused replays because another replica had routed the
    /// query to them (see [`mark_replays`]).
    pub async fn append_claimed(
        &self,
        entries: Vec<LogEntry>,
        claim: Claim,
    ) -> Result<Vec<String>, Error> {
        self.send(entries, Some(claim)).await
    }

    async fn send(
        &self,
        entries: Vec<LogEntry>,
        claim: Option<Claim>,
    ) -> Result<Vec<String>, Error> {
        let (ack_tx, ack_rx) = tokio::sync::oneshot::channel();
        self.tx
            .send((Pending { entries, claim }, ack_tx))
            .map_err(|_| Error::Log("writer stopped".into()))?;
        ack_rx
            .await
            .map_err(|_| Error::Log("writer stopped".into()))?
            .map_err(Error::Log)
    }
}
