//! The node's hash-chained audit log.
//!
//! Every inbound and outbound query, answer and refusal, ingest and agreement change is an
//! entry. Each entry holds the hash of the previous one: `hash = SHA-256(prev_hash || entry)`
//! where `entry` is the stored JSON text. Entries are committed (WAL, `synchronous=FULL`)
//! before any answer leaves the node.

use rusqlite::{Connection, OptionalExtension, params};
use serde::{Deserialize, Serialize};

use crate::Error;

/// Hash of the (empty) predecessor of the first entry.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// One audit entry. Fields not relevant to an event are omitted.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AuditEntry {
    /// Unix seconds.
    pub at: i64,
    /// `inbound_query`, `outbound_query`, `outbound_result`, `ingest`, `agreement_import`, ...
    pub event: String,
    /// `answered`, `refused`, `endorsed`, `unavailable`, `ok`.
    pub decision: String,
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

fn chain_hash(prev: &str, entry_json: &str) -> String {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    ctx.update(prev.as_bytes());
    ctx.update(b"\n");
    ctx.update(entry_json.as_bytes());
    hex::encode(ctx.finish().as_ref())
}

/// Append entries in one durable transaction; returns their sequence numbers.
pub fn append(conn: &mut Connection, entries: &[AuditEntry]) -> Result<Vec<i64>, Error> {
    let tx = conn
        .transaction()
        .map_err(|e| Error::Audit(e.to_string()))?;
    let mut prev: String = tx
        .query_row(
            "SELECT hash FROM audit ORDER BY seq DESC LIMIT 1",
            [],
            |r| r.get(0),
        )
        .optional()
        .map_err(|e| Error::Audit(e.to_string()))?
        .unwrap_or_else(|| GENESIS.to_owned());
    let mut seqs = Vec::with_capacity(entries.len());
    for e in entries {
        let json = serde_json::to_string(e).map_err(|e| Error::Audit(e.to_string()))?;
        let hash = chain_hash(&prev, &json);
        tx.execute(
            "INSERT INTO audit (at, event, entry, prev_hash, hash) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![e.at, e.event, json, prev, hash],
        )
        .map_err(|e| Error::Audit(e.to_string()))?;
        seqs.push(tx.last_insert_rowid());
        prev = hash;
    }
    tx.commit().map_err(|e| Error::Audit(e.to_string()))?;
    Ok(seqs)
}

/// Read entries, optionally only one event kind, in order.
pub fn list(conn: &Connection, event: Option<&str>) -> Result<Vec<StoredEntry>, Error> {
    let mut st = conn.prepare(
        "SELECT seq, entry, prev_hash, hash FROM audit WHERE (?1 IS NULL OR event = ?1) ORDER BY seq",
    )?;
    let rows = st.query_map([event], |r| {
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

/// Verify the whole chain: sequence without gaps, each `prev_hash` the previous `hash`,
/// each `hash` recomputed. Returns the number of entries, or the first bad sequence number.
pub fn verify(conn: &Connection) -> Result<u64, Error> {
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
        prev = hash;
        expected_seq += 1;
        n += 1;
    }
    Ok(n)
}
