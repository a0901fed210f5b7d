//! The node's hash-chained audit log.
//!
//! Every inbound and outbound query, answer and refusal, ingest, configuration, account
//! and agreement change, export and purge is an entry. Each entry holds the hash of the
//! previous one: `hash = SHA-256(prev_hash || "\n" || entry)` where `entry` is the stored
//! JSON text. The log is its own SQLite file (`audit.db`, WAL, `synchronous=FULL`).
//!
//! [`AuditLog`] is a group-commit writer: one thread owns the write connection; callers
//! hand it entries and block until the transaction holding them is durable, so concurrent
//! queries share one fsync instead of each paying for their own. Every
//! [`CHECKPOINT_EVERY`] entries (and at least once a minute while entries arrive) the node
//! signs a checkpoint of the chain head.

use std::path::Path;
use std::sync::Arc;
use std::sync::mpsc::{self, Receiver, Sender, SyncSender};

use alpr_pki::Signer;
use rusqlite::{Connection, OptionalExtension, params};
use serde::{Deserialize, Serialize};

use crate::Error;

mod vocabulary;
pub use vocabulary::{Decision, Event};

/// Entries between signed checkpoints.
pub const CHECKPOINT_EVERY: i64 = 256;
/// Most seconds between checkpoints while entries arrive.
pub const CHECKPOINT_SECS: i64 = 60;
/// Most entries written in one group commit.
const MAX_GROUP: usize = 4096;
/// Payload type of a signed checkpoint.
pub const CHECKPOINT_TYPE: &str = "alpr.v1.AuditCheckpoint";

const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS audit (
    seq INTEGER PRIMARY KEY,
    at INTEGER NOT NULL,
    event TEXT NOT NULL,
    entry TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS checkpoints (
    size INTEGER PRIMARY KEY,
    at INTEGER NOT NULL,
    head_hash TEXT NOT NULL,
    signature BLOB NOT NULL,
    cert_chain BLOB NOT NULL
);
"#;

/// Open the audit database (creating it if needed).
pub fn open_db(path: &Path) -> Result<Connection, Error> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    }
    let conn = alpr_runtime::sqlite::open(path, std::time::Duration::from_secs(30))
        .map_err(|e| Error::Audit(format!("{}: {e}", path.display())))?;
    conn.execute_batch(SCHEMA)?;
    Ok(conn)
}

type Ack = SyncSender<Result<Vec<i64>, String>>;

/// The group-commit audit writer.
#[derive(Clone, Debug)]
pub struct AuditLog {
    tx: Sender<(Vec<AuditEntry>, Ack)>,
}

impl AuditLog {
    /// Open `path` and start the writer thread. With a signer, checkpoints are signed.
    pub fn open(path: &Path, signer: Option<Arc<Signer>>) -> Result<Self, Error> {
        let conn = open_db(path)?;
        // WAL checkpoints run beside the writer, not inside a commit someone waits on.
        let checkpointer = alpr_runtime::sqlite::Checkpointer::start(
            &conn,
            path,
            alpr_runtime::sqlite::CHECKPOINT_INTERVAL,
        )?;
        let (tx, rx) = mpsc::channel();
        std::thread::Builder::new()
            .name("audit-writer".into())
            .spawn(move || {
                writer(conn, rx, signer);
                drop(checkpointer);
            })
            .map_err(|e| Error::Audit(format!("cannot start audit writer: {e}")))?;
        Ok(Self { tx })
    }

    /// Append entries; returns once they are durable (or the error that kept them out).
    pub fn append(&self, entries: Vec<AuditEntry>) -> Result<Vec<i64>, Error> {
        let (ack_tx, ack_rx) = mpsc::sync_channel(1);
        self.tx
            .send((entries, ack_tx))
            .map_err(|_| Error::Audit("audit writer stopped".into()))?;
        ack_rx
            .recv()
            .map_err(|_| Error::Audit("audit writer stopped".into()))?
            .map_err(Error::Audit)
    }
}

fn writer(mut conn: Connection, rx: Receiver<(Vec<AuditEntry>, Ack)>, signer: Option<Arc<Signer>>) {
    while let Some(jobs) = alpr_runtime::sqlite::next_group(&rx, MAX_GROUP, |j| j.0.len()) {
        let result = write_group(&mut conn, &jobs, signer.as_deref());
        match result {
            Ok(seqs) => {
                for ((_, ack), s) in jobs.into_iter().zip(seqs) {
                    let _ = ack.send(Ok(s));
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "ALERT: audit log write failed");
                for (_, ack) in jobs {
                    let _ = ack.send(Err(e.to_string()));
                }
            }
        }
    }
}

fn write_group(
    conn: &mut Connection,
    jobs: &[(Vec<AuditEntry>, Ack)],
    signer: Option<&Signer>,
) -> Result<Vec<Vec<i64>>, Error> {
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let mut out = Vec::with_capacity(jobs.len());
    let (mut prev, mut last_seq): (String, i64) = tx
        .prepare_cached("SELECT hash, seq FROM audit ORDER BY seq DESC LIMIT 1")?
        .query_row([], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?
        .unwrap_or_else(|| (GENESIS.to_owned(), 0));
    {
        let mut st = tx.prepare_cached("INSERT INTO audit (seq, at, event, entry, prev_hash, hash) VALUES (?1, ?2, ?3, ?4, ?5, ?6)")?;
        for (entries, _) in jobs {
            let mut seqs = Vec::with_capacity(entries.len());
            for e in entries {
                let json = serde_json::to_string(e).map_err(|e| Error::Audit(e.to_string()))?;
                let hash = chain_hash(&prev, &json);
                last_seq += 1;
                st.execute(params![last_seq, e.at, e.event.as_str(), json, prev, hash])?;
                seqs.push(last_seq);
                prev = hash;
            }
            out.push(seqs);
        }
    }
    if let Some(signer) = signer {
        let (last_size, last_at): (i64, i64) = tx
            .prepare_cached("SELECT size, at FROM checkpoints ORDER BY size DESC LIMIT 1")?
            .query_row([], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?
            .unwrap_or((0, 0));
        let now = alpr_pki::now_unix();
        if last_seq > last_size
            && (last_seq - last_size >= CHECKPOINT_EVERY || now - last_at >= CHECKPOINT_SECS)
        {
            let sig = signer
                .sign(&checkpoint_message(last_seq, &prev, now))
                .map_err(|e| Error::Audit(format!("signing checkpoint: {e}")))?;
            let chain: Vec<u8> = encode_chain(signer.chain());
            tx.execute(
                "INSERT INTO checkpoints (size, at, head_hash, signature, cert_chain) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![last_seq, now, prev, sig, chain],
            )?;
        }
    }
    tx.commit()?;
    Ok(out)
}

/// The bytes a checkpoint signature covers (domain-separated like every envelope).
pub fn checkpoint_message(size: i64, head_hash: &str, at: i64) -> Vec<u8> {
    alpr_proto::envelope::signing_input(
        CHECKPOINT_TYPE,
        format!("{size}\n{head_hash}\n{at}").as_bytes(),
    )
}

fn encode_chain(chain: &[alpr_pki::CertificateDer<'static>]) -> Vec<u8> {
    let mut out = Vec::new();
    for c in chain {
        out.extend_from_slice(&(c.len() as u32).to_be_bytes());
        out.extend_from_slice(c);
    }
    out
}

fn decode_chain(mut b: &[u8]) -> Option<Vec<alpr_pki::CertificateDer<'static>>> {
    let mut out = Vec::new();
    while !b.is_empty() {
        let len = u32::from_be_bytes(b.get(..4)?.try_into().ok()?) as usize;
        out.push(alpr_pki::CertificateDer::from(b.get(4..4 + len)?.to_vec()));
        b = &b[4 + len..];
    }
    Some(out)
}

/// Query ids of the `inbound_query` entries logged at or after `since`, with the time each
/// was logged: what a restarting node feeds its replay memory. Reads back from the newest
/// entry and stops a minute before `since` (entries are appended in time order, give or
/// take one group commit).
pub fn inbound_ids_since(conn: &Connection, since: i64) -> Result<Vec<(Vec<u8>, i64)>, Error> {
    let mut unreadable = None;
    let ids = alpr_runtime::sqlite::newest_since(
        conn,
        "SELECT at, event, entry FROM audit ORDER BY seq DESC",
        since,
        |r| {
            if r.get_ref(1)?.as_str().ok() != Some("inbound_query") {
                return Ok(None);
            }
            match serde_json::from_str::<AuditEntry>(r.get_ref(2)?.as_str().unwrap_or("")) {
                Ok(e) => Ok(e
                    .query_id
                    .and_then(|h| hex::decode(h).ok())
                    .map(|id| (id, e.at))),
                Err(e) => {
                    unreadable.get_or_insert(e);
                    Ok(None)
                }
            }
        },
    )?;
    match unreadable {
        Some(e) => Err(Error::Audit(format!("audit entry does not parse: {e}"))),
        None => Ok(ids),
    }
}

/// Force a signed checkpoint of the current head (e.g. at shutdown).
pub fn checkpoint_now(conn: &mut Connection, signer: &Signer) -> Result<Option<i64>, Error> {
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let head: Option<(String, i64)> = tx
        .query_row(
            "SELECT hash, seq FROM audit ORDER BY seq DESC LIMIT 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?;
    let Some((hash, seq)) = head else {
        return Ok(None);
    };
    let now = alpr_pki::now_unix();
    let sig = signer
        .sign(&checkpoint_message(seq, &hash, now))
        .map_err(|e| Error::Audit(e.to_string()))?;
    tx.execute(
        "INSERT OR IGNORE INTO checkpoints (size, at, head_hash, signature, cert_chain) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![seq, now, hash, sig, encode_chain(signer.chain())],
    )?;
    tx.commit()?;
    Ok(Some(seq))
}

/// Hash of the (empty) predecessor of the first entry.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// One audit entry. Fields not relevant to an event are omitted.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AuditEntry {
    /// Unix seconds.
    pub at: i64,
    /// What the entry records.
    pub event: Event,
    /// What was decided.
    pub decision: Decision,
    /// Query id, hex.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query_id: Option<String>,
    /// Requesting agency ORI.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requester_ori: Option<String>,
    /// Requesting agency name, jurisdiction and kind.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requester_agency: Option<String>,
    /// Requesting person.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requester_user: Option<String>,
    /// The TLS peer that delivered the request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer: Option<String>,
    /// Plate searched.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plate: Option<String>,
    /// The plate's issuing state as the query named it (`ANY` for every state).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plate_state: Option<String>,
    /// Purpose code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub purpose: Option<String>,
    /// Case number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub case_number: Option<String>,
    /// Free-text reason.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Warrant reference.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warrant_ref: Option<String>,
    /// On-behalf-of agency.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_behalf_of: Option<String>,
    /// Window start, Unix seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window_start: Option<i64>,
    /// Window end, Unix seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window_end: Option<i64>,
    /// Target agency (outbound results) or targets (outbound queries).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// Refusal reason code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason_code: Option<String>,
    /// Detail text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// Agreement id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agreement_id: Option<String>,
    /// State rule version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule_version: Option<String>,
    /// Reads returned or ingested.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<u64>,
    /// Who decided (`broker` or an ORI) for outbound results.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decided_by: Option<String>,
}

impl AuditEntry {
    /// An entry of `event` with `decision` at `at` (Unix seconds), every other field empty.
    pub fn new(at: i64, event: Event, decision: Decision) -> Self {
        Self {
            at,
            event,
            decision,
            query_id: None,
            requester_ori: None,
            requester_agency: None,
            requester_user: None,
            peer: None,
            plate: None,
            plate_state: None,
            purpose: None,
            case_number: None,
            reason: None,
            warrant_ref: None,
            on_behalf_of: None,
            window_start: None,
            window_end: None,
            target: None,
            reason_code: None,
            detail: None,
            agreement_id: None,
            rule_version: None,
            count: None,
            decided_by: None,
        }
    }
}

/// A stored entry with its chain fields.
#[derive(Clone, Debug, Serialize)]
pub struct StoredEntry {
    /// Sequence number, from 1.
    pub seq: i64,
    /// The entry.
    #[serde(flatten)]
    pub entry: AuditEntry,
    /// Hash of the previous entry.
    pub prev_hash: String,
    /// This entry's hash.
    pub hash: String,
}

/// SHA-256 of `b`.
pub fn sha256(b: &[u8]) -> [u8; 32] {
    let d = ring::digest::digest(&ring::digest::SHA256, b);
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

fn chain_hash(prev: &str, entry_json: &str) -> String {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    ctx.update(prev.as_bytes());
    ctx.update(b"\n");
    ctx.update(entry_json.as_bytes());
    hex::encode(ctx.finish().as_ref())
}

/// Read entries, optionally only one event kind, in order.
pub fn list(conn: &Connection, event: Option<Event>) -> Result<Vec<StoredEntry>, Error> {
    let mut st = conn.prepare(
        "SELECT seq, entry, prev_hash, hash FROM audit WHERE (?1 IS NULL OR event = ?1) ORDER BY seq",
    )?;
    let rows = st.query_map([event.map(Event::as_str)], |r| {
        Ok((
            r.get::<_, i64>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, String>(2)?,
            r.get::<_, String>(3)?,
        ))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (seq, json, prev_hash, hash) = row?;
        let entry = serde_json::from_str(&json)
            .map_err(|e| Error::Audit(format!("entry {seq} does not parse: {e}")))?;
        out.push(StoredEntry {
            seq,
            entry,
            prev_hash,
            hash,
        });
    }
    Ok(out)
}

/// Which entries to read.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Filter {
    /// Event kind.
    pub event: Option<Event>,
    /// At or after (Unix seconds).
    pub since: Option<i64>,
    /// Before (Unix seconds).
    pub until: Option<i64>,
    /// Requesting agency.
    pub requester_ori: Option<String>,
    /// User.
    pub user: Option<String>,
    /// Purpose code.
    pub purpose: Option<String>,
}

impl std::fmt::Display for Filter {
    /// The filter as an operator would type it (`event=inbound_query since=… user=…`).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut parts = Vec::new();
        if let Some(v) = &self.event {
            parts.push(format!("event={v}"));
        }
        if let Some(v) = self.since {
            parts.push(format!("since={}", alpr_pki::fmt_time(v)));
        }
        if let Some(v) = self.until {
            parts.push(format!("until={}", alpr_pki::fmt_time(v)));
        }
        if let Some(v) = &self.requester_ori {
            parts.push(format!("requester={v}"));
        }
        if let Some(v) = &self.user {
            parts.push(format!("user={v}"));
        }
        if let Some(v) = &self.purpose {
            parts.push(format!("purpose={v}"));
        }
        if parts.is_empty() {
            f.write_str("none (every entry)")
        } else {
            f.write_str(&parts.join(" "))
        }
    }
}

impl Filter {
    fn matches(&self, e: &AuditEntry) -> bool {
        self.event.is_none_or(|v| e.event == v)
            && self.since.is_none_or(|t| e.at >= t)
            && self.until.is_none_or(|t| e.at < t)
            && self
                .requester_ori
                .as_ref()
                .is_none_or(|v| e.requester_ori.as_ref() == Some(v))
            && self
                .user
                .as_ref()
                .is_none_or(|v| e.requester_user.as_ref() == Some(v))
            && self
                .purpose
                .as_ref()
                .is_none_or(|v| e.purpose.as_ref() == Some(v))
    }
}

/// Entries matching `f`, in order.
pub fn query(conn: &Connection, f: &Filter) -> Result<Vec<StoredEntry>, Error> {
    Ok(list(conn, f.event)?
        .into_iter()
        .filter(|e| f.matches(&e.entry))
        .collect())
}

/// JSON lines.
pub fn to_jsonl(entries: &[StoredEntry]) -> Result<String, Error> {
    let mut out = String::new();
    for e in entries {
        out.push_str(&to_json_line(e)?);
        out.push('\n');
    }
    Ok(out)
}

/// One entry as a JSON line for people and exports: times (`at`, `window_start`,
/// `window_end`) in RFC 3339. The stored entry, which the hash chain covers, keeps Unix
/// seconds.
pub fn to_json_line(e: &StoredEntry) -> Result<String, Error> {
    let mut v = serde_json::to_value(e).map_err(|e| Error::Audit(e.to_string()))?;
    if let Some(obj) = v.as_object_mut() {
        for key in ["at", "window_start", "window_end"] {
            if let Some(t) = obj.get(key).and_then(serde_json::Value::as_i64) {
                obj.insert(key.into(), alpr_pki::fmt_time(t).into());
            }
        }
    }
    serde_json::to_string(&v).map_err(|e| Error::Audit(e.to_string()))
}

/// CSV with a fixed header.
pub fn to_csv(entries: &[StoredEntry]) -> String {
    const COLS: [&str; 21] = [
        "seq",
        "at",
        "event",
        "decision",
        "query_id",
        "requester_ori",
        "requester_agency",
        "requester_user",
        "peer",
        "plate",
        "plate_state",
        "purpose",
        "case_number",
        "reason",
        "warrant_ref",
        "target",
        "reason_code",
        "detail",
        "agreement_id",
        "count",
        "hash",
    ];
    let q = |s: &str| {
        if s.contains([',', '"', '\n', '\r']) {
            format!("\"{}\"", s.replace('"', "\"\""))
        } else {
            s.to_owned()
        }
    };
    let mut out = COLS.join(",");
    out.push('\n');
    for s in entries {
        let e = &s.entry;
        let o = |v: &Option<String>| q(v.as_deref().unwrap_or(""));
        let row = [
            s.seq.to_string(),
            alpr_pki::fmt_time(e.at),
            q(e.event.as_str()),
            q(e.decision.as_str()),
            o(&e.query_id),
            o(&e.requester_ori),
            o(&e.requester_agency),
            o(&e.requester_user),
            o(&e.peer),
            o(&e.plate),
            o(&e.plate_state),
            o(&e.purpose),
            o(&e.case_number),
            o(&e.reason),
            o(&e.warrant_ref),
            o(&e.target),
            o(&e.reason_code),
            o(&e.detail),
            o(&e.agreement_id),
            e.count.map(|c| c.to_string()).unwrap_or_default(),
            s.hash.clone(),
        ];
        out.push_str(&row.join(","));
        out.push('\n');
    }
    out
}

/// What `verify` found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifyReport {
    /// Entries checked.
    pub entries: u64,
    /// Signed checkpoints checked.
    pub checkpoints: u64,
}

/// Verify the whole chain: sequence without gaps, each `prev_hash` the previous `hash`,
/// each `hash` recomputed; and every checkpoint's signature (by a node certificate of
/// `ori` under `trust`) over the chain head it names. Errors name the first bad entry.
pub fn verify(
    conn: &Connection,
    trust: Option<(&alpr_pki::TrustStore, &str)>,
) -> Result<VerifyReport, Error> {
    let mut heads = std::collections::HashMap::new();
    let mut st = conn.prepare("SELECT seq, entry, prev_hash, hash FROM audit ORDER BY seq")?;
    let mut rows = st.query([])?;
    let mut prev = GENESIS.to_owned();
    let mut expected_seq = 1i64;
    let mut n = 0u64;
    while let Some(r) = rows.next()? {
        let seq: i64 = r.get(0)?;
        let json: String = r.get(1)?;
        let prev_hash: String = r.get(2)?;
        let hash: String = r.get(3)?;
        if seq != expected_seq {
            return Err(Error::Audit(format!(
                "entry {expected_seq} is missing (next is {seq})"
            )));
        }
        if prev_hash != prev {
            return Err(Error::Audit(format!(
                "entry {seq}: previous-hash link broken"
            )));
        }
        if chain_hash(&prev_hash, &json) != hash {
            return Err(Error::Audit(format!(
                "entry {seq}: content does not match its hash"
            )));
        }
        heads.insert(seq, hash.clone());
        prev = hash;
        expected_seq += 1;
        n += 1;
    }
    let mut st = conn.prepare(
        "SELECT size, at, head_hash, signature, cert_chain FROM checkpoints ORDER BY size",
    )?;
    let mut rows = st.query([])?;
    let mut c = 0u64;
    while let Some(r) = rows.next()? {
        let size: i64 = r.get(0)?;
        let at: i64 = r.get(1)?;
        let head: String = r.get(2)?;
        let sig: Vec<u8> = r.get(3)?;
        let chain: Vec<u8> = r.get(4)?;
        if heads.get(&size) != Some(&head) {
            return Err(Error::Audit(format!(
                "checkpoint at entry {size}: the chain head differs from the signed one (entries rewritten or truncated)"
            )));
        }
        if let Some((trust, ori)) = trust {
            let chain = decode_chain(&chain).ok_or_else(|| {
                Error::Audit(format!("checkpoint at entry {size}: bad certificate chain"))
            })?;
            let id = trust
                .verify_signature(&chain, &checkpoint_message(size, &head, at), &sig, at)
                .map_err(|e| Error::Audit(format!("checkpoint at entry {size}: {e}")))?;
            if id.role != alpr_pki::Role::Node || id.ori() != Some(ori) {
                return Err(Error::Audit(format!(
                    "checkpoint at entry {size} signed by {}",
                    id.describe()
                )));
            }
        }
        c += 1;
    }
    Ok(VerifyReport {
        entries: n,
        checkpoints: c,
    })
}
