//! The audit log in `audit.db` (WAL, `synchronous=FULL`): the `audit` table of chained
//! entries and the `checkpoints` table of signed chain heads.
//!
//! [`AuditLog`] is a group-commit writer: one thread owns the write connection; callers
//! hand it entries and block until the transaction holding them is durable, so concurrent
//! queries share one fsync instead of each paying for their own.
//!
//! In an encrypted log each entry's text is sealed ([`DataKeys::seal_audit`]); the chain
//! hashes, the tree and the signed heads stay in the clear and are computed over the text,
//! so a regulator without the key checks heads, anchors and proofs, and an auditor with the
//! key reads and exports the entries.

use std::path::Path;
use std::sync::Arc;
use std::sync::mpsc::{self, Receiver, Sender, SyncSender};

use alpr_proto::auditlog::{self, LoggedEntry};
use alpr_proto::merkle::{Frontier, Hash};
use alpr_proto::pb::{AuditAnchor, Signed};
use alpr_runtime::tree::{LeafSource, StoredTree};
use prost::Message;
use rusqlite::types::Value;
use rusqlite::{Connection, OptionalExtension, params};

use crate::Error;
use crate::audit::{
    AuditEntry, Break, CHECKPOINT_EVERY, CHECKPOINT_SECS, Event, Filter, GENESIS, HeadSigner,
    StoredEntry, VerifyReport, chain_hash, checkpoint_message, decode_chain, encode_chain,
};
use crate::store::encryption::DataKeys;

/// Most entries written in one group commit.
const MAX_GROUP: usize = 4096;
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
CREATE TABLE IF NOT EXISTS anchors (
    size INTEGER PRIMARY KEY,
    anchored_at INTEGER NOT NULL,
    anchor BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS digested (seq INTEGER PRIMARY KEY);
"#;

/// The RFC 6962 tree over the entries' chain hashes (leaf `seq - 1`).
const TREE: StoredTree<AuditLeaves> = StoredTree::new("audit_tree", AuditLeaves);

/// The audit tree's leaves: each entry's chain hash.
#[derive(Clone, Copy, Debug)]
struct AuditLeaves;

impl LeafSource for AuditLeaves {
    fn leaves(
        &self,
        conn: &Connection,
        start: u64,
        end: u64,
    ) -> Result<Vec<Hash>, alpr_runtime::Error> {
        let tree_err = |detail: String| alpr_runtime::Error::Tree {
            table: "audit_tree",
            detail,
        };
        let mut st = conn
            .prepare_cached("SELECT seq, hash FROM audit WHERE seq > ?1 AND seq <= ?2 ORDER BY seq")
            .map_err(|e| tree_err(e.to_string()))?;
        let rows = st
            .query_map([start as i64, end as i64], |r| {
                Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?))
            })
            .map_err(|e| tree_err(e.to_string()))?;
        let mut out = Vec::new();
        for (expected, row) in (start as i64 + 1..).zip(rows) {
            let (seq, hash) = row.map_err(|e| tree_err(e.to_string()))?;
            if seq != expected {
                break;
            }
            out.push(auditlog::leaf(&hash).map_err(|e| tree_err(format!("entry {seq}: {e}")))?);
        }
        Ok(out)
    }
}

/// Columns added to `checkpoints` when checkpoints became signed tree heads: the root and
/// the signed `AuditTreeHead` payload (both NULL in checkpoints written before).
const CHECKPOINT_COLUMNS: [(&str, &str); 2] = [("root", "BLOB"), ("payload", "BLOB")];

/// An open `audit.db`, for reading, verifying and exporting (writes go through
/// [`AuditLog`]).
pub struct AuditDb {
    conn: Connection,
    keys: Option<Arc<DataKeys>>,
}

impl std::fmt::Debug for AuditDb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AuditDb")
    }
}

impl AuditDb {
    /// Open a plain audit database (creating it if needed); an encrypted one is refused.
    pub fn open(path: &Path) -> Result<Self, Error> {
        Self::open_with(path, None)
    }

    /// Open the audit database (creating it if needed), encrypted with `keys` or plain.
    pub fn open_with(path: &Path, keys: Option<Arc<DataKeys>>) -> Result<Self, Error> {
        Ok(Self {
            conn: open_connection(path, keys.as_deref())?,
            keys,
        })
    }

    /// The SQLite connection itself, for tools and tests that inspect or alter the file
    /// as an outsider would.
    pub fn connection(&self) -> &Connection {
        &self.conn
    }
}

fn open_connection(path: &Path, keys: Option<&DataKeys>) -> Result<Connection, Error> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    }
    let mut conn = alpr_runtime::sqlite::open(path, std::time::Duration::from_secs(30))
        .map_err(|e| Error::AuditUnavailable(format!("{}: {e}", path.display())))?;
    conn.execute_batch(SCHEMA)?;
    TREE.create(&conn)?;
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    for (col, ty) in CHECKPOINT_COLUMNS {
        let present: bool = tx.query_row(
            "SELECT count(*) FROM pragma_table_info('checkpoints') WHERE name = ?1",
            [col],
            |r| r.get::<_, i64>(0).map(|n| n > 0),
        )?;
        if !present {
            tx.execute_batch(&format!("ALTER TABLE checkpoints ADD COLUMN {col} {ty}"))?;
        }
    }
    catch_up_tree(&tx)?;
    let empty: bool = tx.query_row("SELECT NOT EXISTS (SELECT 1 FROM audit)", [], |r| r.get(0))?;
    super::check_encryption(&tx, keys, empty, path)?;
    tx.commit()?;
    Ok(conn)
}

/// An entry's text as stored: plain, or sealed under the data keys.
fn entry_text(keys: Option<&DataKeys>, seq: i64, hash: &str, v: Value) -> Result<String, Error> {
    match (v, keys) {
        (Value::Text(t), None) => Ok(t),
        (Value::Blob(b), Some(k)) => k.open_audit(seq, hash, b),
        (Value::Text(_), Some(_)) => Err(Error::corrupt(
            format!("audit entry {seq}"),
            "stored in the clear in an encrypted log",
        )),
        (_, _) => Err(Error::corrupt(format!("audit entry {seq}"), "not text")),
    }
}

/// Entry `seq` was just written: store the subtrees it completes.
fn add_leaf(conn: &Connection, seq: i64) -> Result<(), Error> {
    Ok(TREE.append(conn, seq as u64 - 1)?)
}

/// Build the tree over entries written before it existed (a log from an older alpr-node),
/// up to the first gap. A no-op when the tree is current.
fn catch_up_tree(conn: &Connection) -> Result<(), Error> {
    let size: i64 = conn.query_row("SELECT coalesce(max(seq), 0) FROM audit", [], |r| r.get(0))?;
    Ok(TREE.catch_up(conn, size as u64)?)
}

/// The stored tree's root over the first `size` entries.
pub fn root_at(db: &AuditDb, size: u64) -> Result<Hash, Error> {
    Ok(TREE.root(&db.conn, size)?)
}

/// Inclusion proof of entry `seq` in the tree of `size` entries.
pub fn inclusion_proof(db: &AuditDb, seq: u64, size: u64) -> Result<Vec<Hash>, Error> {
    Ok(TREE.inclusion_proof(&db.conn, seq.saturating_sub(1), size)?)
}

/// Consistency proof between the trees of `old` and `new` entries.
pub fn consistency_proof(db: &AuditDb, old: u64, new: u64) -> Result<Vec<Hash>, Error> {
    Ok(TREE.consistency_proof(&db.conn, old, new)?)
}

type Ack = SyncSender<Result<Vec<i64>, String>>;

/// The group-commit audit writer.
#[derive(Clone, Debug)]
pub struct AuditLog {
    tx: Sender<(Vec<AuditEntry>, Ack)>,
}

impl AuditLog {
    /// Open `path` and start the writer thread. With a signer, checkpoints are signed.
    pub fn open(path: &Path, signer: Option<HeadSigner>) -> Result<Self, Error> {
        Self::open_with(path, signer, None)
    }

    /// [`AuditLog::open`] for a log encrypted with `keys` (or plain, without).
    pub fn open_with(
        path: &Path,
        signer: Option<HeadSigner>,
        keys: Option<Arc<DataKeys>>,
    ) -> Result<Self, Error> {
        let conn = open_connection(path, keys.as_deref())?;
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
                writer(conn, rx, signer, keys);
                drop(checkpointer);
            })
            .map_err(|e| Error::AuditUnavailable(format!("cannot start audit writer: {e}")))?;
        Ok(Self { tx })
    }

    /// Append entries; returns once they are durable (or the error that kept them out).
    pub fn append(&self, entries: Vec<AuditEntry>) -> Result<Vec<i64>, Error> {
        let (ack_tx, ack_rx) = mpsc::sync_channel(1);
        self.tx
            .send((entries, ack_tx))
            .map_err(|_| Error::AuditUnavailable("audit writer stopped".into()))?;
        ack_rx
            .recv()
            .map_err(|_| Error::AuditUnavailable("audit writer stopped".into()))?
            .map_err(Error::AuditUnavailable)
    }
}

fn writer(
    mut conn: Connection,
    rx: Receiver<(Vec<AuditEntry>, Ack)>,
    signer: Option<HeadSigner>,
    keys: Option<Arc<DataKeys>>,
) {
    while let Some(jobs) = alpr_runtime::sqlite::next_group(&rx, MAX_GROUP, |j| j.0.len()) {
        let result = write_group(&mut conn, &jobs, signer.as_ref(), keys.as_deref());
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
    signer: Option<&HeadSigner>,
    keys: Option<&DataKeys>,
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
                let json =
                    serde_json::to_string(e).map_err(|e| Error::corrupt("audit entry", e))?;
                let hash = chain_hash(&prev, &json);
                last_seq += 1;
                let stored = match keys {
                    Some(k) => Value::Blob(k.seal_audit(last_seq, &hash, &json)?),
                    None => Value::Text(json),
                };
                st.execute(params![
                    last_seq,
                    e.at,
                    e.event.as_str(),
                    stored,
                    prev,
                    hash
                ])?;
                add_leaf(&tx, last_seq)?;
                if e.state_digest.is_some() {
                    tx.prepare_cached("INSERT INTO digested (seq) VALUES (?1)")?
                        .execute([last_seq])?;
                }
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
            put_checkpoint(&tx, signer, last_seq, &prev, now)?;
        }
    }
    tx.commit()?;
    Ok(out)
}

/// Query ids of the `inbound_query` entries logged at or after `since`, with the time each
/// was logged: what a restarting node feeds its replay memory. Reads back from the newest
/// entry and stops a minute before `since` (entries are appended in time order, give or
/// take one group commit).
pub fn inbound_ids_since(db: &AuditDb, since: i64) -> Result<Vec<(Vec<u8>, i64)>, Error> {
    let conn = &db.conn;
    let mut unreadable = None;
    let mut opened = None;
    let ids = alpr_runtime::sqlite::newest_since(
        conn,
        "SELECT at, event, entry, seq, hash FROM audit ORDER BY seq DESC",
        since,
        |r| {
            if r.get_ref(1)?.as_str().ok() != Some("inbound_query") {
                return Ok(None);
            }
            let text = match entry_text(
                db.keys.as_deref(),
                r.get(3)?,
                &r.get::<_, String>(4)?,
                r.get(2)?,
            ) {
                Ok(t) => t,
                Err(e) => {
                    opened.get_or_insert(e);
                    return Ok(None);
                }
            };
            match serde_json::from_str::<AuditEntry>(&text) {
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
    if let Some(e) = opened {
        return Err(e);
    }
    match unreadable {
        Some(e) => Err(Error::corrupt("audit entry", e)),
        None => Ok(ids),
    }
}

/// Sign the tree head of the first `size` entries (chain head `head`) and keep it as the
/// checkpoint of that size, replacing one in the older format (a chain head only).
fn put_checkpoint(
    conn: &Connection,
    signer: &HeadSigner,
    size: i64,
    head: &str,
    now: i64,
) -> Result<(), Error> {
    let root = TREE.root(conn, size as u64)?;
    let signed = signer.sign(size as u64, &root, head, now)?;
    conn.execute(
        "INSERT INTO checkpoints (size, at, head_hash, signature, cert_chain, root, payload) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
         ON CONFLICT (size) DO UPDATE SET at = ?2, head_hash = ?3, signature = ?4, cert_chain = ?5, root = ?6, payload = ?7
         WHERE payload IS NULL",
        params![
            size,
            now,
            head,
            signed.signature,
            encode_chain(signer.signer.chain()),
            root.as_slice(),
            signed.payload
        ],
    )?;
    Ok(())
}

/// The signed tree head kept as the checkpoint of `size`, if that checkpoint is one.
pub fn signed_head(db: &AuditDb, size: u64) -> Result<Option<Signed>, Error> {
    let row: Option<(Vec<u8>, Vec<u8>, Vec<u8>)> = db
        .conn
        .query_row(
            "SELECT payload, signature, cert_chain FROM checkpoints WHERE size = ?1 AND payload IS NOT NULL",
            [size as i64],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .optional()?;
    row.map(|(payload, signature, chain)| {
        let chain = decode_chain(&chain).ok_or_else(|| {
            Error::corrupt(format!("audit checkpoint {size}"), "bad certificate chain")
        })?;
        Ok(Signed {
            payload_type: auditlog::AUDIT_TREE_HEAD.into(),
            payload,
            signature,
            cert_chain: chain.into_iter().map(|c| c.to_vec()).collect(),
            sealed_boxes: vec![],
            sealed_box_proofs: vec![],
        })
    })
    .transpose()
}

/// Keep an anchor the broker returned.
pub fn put_anchor(db: &AuditDb, size: u64, anchored_at: i64, a: &AuditAnchor) -> Result<(), Error> {
    db.conn.execute(
        "INSERT OR REPLACE INTO anchors (size, anchored_at, anchor) VALUES (?1, ?2, ?3)",
        params![size as i64, anchored_at, a.encode_to_vec()],
    )?;
    Ok(())
}

/// Every anchor kept, with the size it was kept under, oldest first.
pub fn anchors(db: &AuditDb) -> Result<Vec<(i64, AuditAnchor)>, Error> {
    let mut st = db
        .conn
        .prepare("SELECT size, anchor FROM anchors ORDER BY size")?;
    let rows = st.query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, Vec<u8>>(1)?)))?;
    rows.map(|row| {
        let (size, b) = row?;
        AuditAnchor::decode(b.as_slice())
            .map(|a| (size, a))
            .map_err(|e| Error::corrupt(format!("audit anchor {size}"), e))
    })
    .collect()
}

/// Entries `[from, to]` exactly as stored.
pub fn logged_entries(db: &AuditDb, from: i64, to: i64) -> Result<Vec<LoggedEntry>, Error> {
    let mut st = db.conn.prepare_cached(
        "SELECT seq, entry, prev_hash, hash FROM audit WHERE seq BETWEEN ?1 AND ?2 ORDER BY seq",
    )?;
    let rows = st.query_map([from, to], |r| {
        Ok((
            r.get::<_, i64>(0)?,
            r.get::<_, Value>(1)?,
            r.get::<_, String>(2)?,
            r.get::<_, String>(3)?,
        ))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (seq, v, prev_hash, hash) = row?;
        out.push(LoggedEntry {
            seq: seq as u64,
            entry: entry_text(db.keys.as_deref(), seq, &hash, v)?,
            prev_hash,
            hash,
        });
    }
    Ok(out)
}

/// Sequence numbers of the entries about query `query_id` (hex).
pub fn seqs_of_query(db: &AuditDb, query_id: &str) -> Result<Vec<i64>, Error> {
    // A plain log narrows the scan in SQL; an encrypted one opens every entry.
    let mut st = db.conn.prepare(
        "SELECT seq, entry, hash FROM audit WHERE typeof(entry) = 'blob' OR entry LIKE '%' || ?1 || '%' ORDER BY seq",
    )?;
    let rows = st.query_map([query_id], |r| {
        Ok((
            r.get::<_, i64>(0)?,
            r.get::<_, Value>(1)?,
            r.get::<_, String>(2)?,
        ))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (seq, v, hash) = row?;
        let json = entry_text(db.keys.as_deref(), seq, &hash, v)?;
        let e: AuditEntry = serde_json::from_str(&json)
            .map_err(|e| Error::corrupt(format!("audit entry {seq}"), e))?;
        if e.query_id.as_deref() == Some(query_id) {
            out.push(seq);
        }
    }
    Ok(out)
}

/// The number of entries.
pub fn size(db: &AuditDb) -> Result<u64, Error> {
    Ok(db
        .conn
        .query_row("SELECT coalesce(max(seq), 0) FROM audit", [], |r| {
            r.get::<_, i64>(0)
        })? as u64)
}

/// Force a signed checkpoint of the current head (e.g. at shutdown); returns its size.
pub fn checkpoint_now(db: &mut AuditDb, signer: &HeadSigner) -> Result<Option<i64>, Error> {
    let tx = db
        .conn
        .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
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
    put_checkpoint(&tx, signer, seq, &hash, alpr_pki::now_unix())?;
    tx.commit()?;
    Ok(Some(seq))
}

/// Read entries, optionally only one event kind, in order.
pub fn list(db: &AuditDb, event: Option<Event>) -> Result<Vec<StoredEntry>, Error> {
    read_entries(
        db,
        "SELECT seq, entry, prev_hash, hash FROM audit WHERE (?1 IS NULL OR event = ?1) ORDER BY seq",
        rusqlite::params![event.map(Event::as_str)],
    )
}

/// The newest entries matching `f`, newest first: at most `keep`, among the newest `scan`
/// entries of `f`'s event kind (of every kind without one). Pages read this instead of the
/// whole log, whose size has no bound. The flag says whether older entries were left
/// unread.
pub fn recent(
    db: &AuditDb,
    f: &Filter,
    keep: usize,
    scan: usize,
) -> Result<(Vec<StoredEntry>, bool), Error> {
    let read = read_entries(
        db,
        "SELECT seq, entry, prev_hash, hash FROM audit WHERE (?1 IS NULL OR event = ?1) ORDER BY seq DESC LIMIT ?2",
        rusqlite::params![f.event.map(Event::as_str), scan as i64],
    )?;
    let more = read.len() == scan;
    Ok((
        read.into_iter()
            .filter(|e| f.matches(&e.entry))
            .take(keep)
            .collect(),
        more,
    ))
}

fn read_entries(
    db: &AuditDb,
    sql: &str,
    params: impl rusqlite::Params,
) -> Result<Vec<StoredEntry>, Error> {
    let mut st = db.conn.prepare(sql)?;
    let rows = st.query_map(params, |r| {
        Ok((
            r.get::<_, i64>(0)?,
            r.get::<_, Value>(1)?,
            r.get::<_, String>(2)?,
            r.get::<_, String>(3)?,
        ))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (seq, v, prev_hash, hash) = row?;
        let json = entry_text(db.keys.as_deref(), seq, &hash, v)?;
        let entry = serde_json::from_str(&json)
            .map_err(|e| Error::corrupt(format!("audit entry {seq}"), e))?;
        out.push(StoredEntry {
            seq,
            entry,
            prev_hash,
            hash,
        });
    }
    Ok(out)
}

/// Entries matching `f`, in order.
pub fn query(db: &AuditDb, f: &Filter) -> Result<Vec<StoredEntry>, Error> {
    Ok(list(db, f.event)?
        .into_iter()
        .filter(|e| f.matches(&e.entry))
        .collect())
}

/// One stored checkpoint.
struct Checkpoint {
    size: i64,
    at: i64,
    head: String,
    signature: Vec<u8>,
    chain: Vec<u8>,
    root: Option<Vec<u8>>,
    payload: Option<Vec<u8>>,
}

/// Verify the whole log: sequence without gaps, each `prev_hash` the previous `hash`, each
/// `hash` recomputed; the stored tree's root equal to the one the entries give; every
/// checkpoint's chain head and root equal to the entries' at its size and its signature (by
/// a node certificate of `ori` under `trust`) valid; and every anchor kept (a head the
/// broker accepted) verified and matching the entries. Errors name the first bad entry,
/// checkpoint or anchor.
pub fn verify(
    db: &AuditDb,
    trust: Option<(&alpr_pki::TrustStore, &str)>,
) -> Result<VerifyReport, Error> {
    let conn = &db.conn;
    let checkpoints: Vec<Checkpoint> = conn
        .prepare(
            "SELECT size, at, head_hash, signature, cert_chain, root, payload FROM checkpoints ORDER BY size",
        )?
        .query_map([], |r| {
            Ok(Checkpoint {
                size: r.get(0)?,
                at: r.get(1)?,
                head: r.get(2)?,
                signature: r.get(3)?,
                chain: r.get(4)?,
                root: r.get(5)?,
                payload: r.get(6)?,
            })
        })?
        .collect::<Result<_, _>>()?;
    let anchors = anchors(db)?;
    // The chain head and root at every size a checkpoint or an anchor names.
    let wanted: std::collections::BTreeSet<i64> = checkpoints
        .iter()
        .map(|c| c.size)
        .chain(anchors.iter().map(|a| a.0))
        .collect();
    let mut at_size = std::collections::HashMap::new();
    let mut st = conn.prepare("SELECT seq, entry, prev_hash, hash FROM audit ORDER BY seq")?;
    let mut rows = st.query([])?;
    let mut prev = GENESIS.to_owned();
    let mut expected_seq = 1i64;
    let mut tree = Frontier::new();
    // Every stored subtree must be the one the entries give (proofs are built from them).
    let mut tree_differs = false;
    while let Some(r) = rows.next()? {
        let seq: i64 = r.get(0)?;
        let prev_hash: String = r.get(2)?;
        let hash: String = r.get(3)?;
        // An entry that does not open (altered ciphertext) is a changed entry.
        let json = entry_text(db.keys.as_deref(), seq, &hash, r.get(1)?)
            .map_err(|_| Break::ContentChanged(seq))?;
        if seq != expected_seq {
            return Err(Break::Missing {
                expected: expected_seq,
                next: seq,
            }
            .into());
        }
        if prev_hash != prev {
            return Err(Break::LinkBroken(seq).into());
        }
        if chain_hash(&prev_hash, &json) != hash {
            return Err(Break::ContentChanged(seq).into());
        }
        let mut stored_differs = None;
        tree.push_reporting(
            auditlog::leaf(&hash).map_err(|_| Break::ContentChanged(seq))?,
            |level, idx, h| {
                if level >= alpr_runtime::tree::STORED_LEVEL
                    && stored_differs.is_none()
                    && TREE.stored(conn, level, idx).ok().flatten().as_ref() != Some(h)
                {
                    stored_differs = Some(());
                }
            },
        );
        if stored_differs.is_some() {
            tree_differs = true;
        }
        if wanted.contains(&seq) {
            at_size.insert(seq, (hash.clone(), tree.root()));
        }
        prev = hash;
        expected_seq += 1;
    }
    let n = tree.size();
    for c in &checkpoints {
        let size = c.size;
        let Some((head, root)) = at_size.get(&size) else {
            return Err(Break::HeadChanged(size).into());
        };
        if *head != c.head || c.root.as_deref().is_some_and(|r| r != root.as_slice()) {
            return Err(Break::HeadChanged(size).into());
        }
        let Some((trust, ori)) = trust else {
            continue;
        };
        match &c.payload {
            Some(payload) => {
                let chain = decode_chain(&c.chain).ok_or(Break::BadChain(size))?;
                let signed = Signed {
                    payload_type: auditlog::AUDIT_TREE_HEAD.into(),
                    payload: payload.clone(),
                    signature: c.signature.clone(),
                    cert_chain: chain.into_iter().map(|c| c.to_vec()).collect(),
                    sealed_boxes: vec![],
                    sealed_box_proofs: vec![],
                };
                let h = auditlog::verify_head(trust, &signed, ori).map_err(|e| {
                    Break::BadSignature {
                        size,
                        detail: e.detail(),
                    }
                })?;
                if h.size != size as u64 || h.root != *root || hex::encode(h.chain_head) != *head {
                    return Err(Break::HeadChanged(size).into());
                }
            }
            None => {
                // A checkpoint from before tree heads: a signature over the chain head.
                let chain = decode_chain(&c.chain).ok_or(Break::BadChain(size))?;
                let id = trust
                    .verify_signature(
                        &chain,
                        &checkpoint_message(size, head, c.at),
                        &c.signature,
                        c.at,
                    )
                    .map_err(|e| Break::BadSignature {
                        size,
                        detail: e.to_string(),
                    })?;
                if id.role != alpr_pki::Role::Node || id.ori() != Some(ori) {
                    return Err(Break::WrongSigner {
                        size,
                        signer: id.describe(),
                    }
                    .into());
                }
            }
        }
    }
    for (size, a) in &anchors {
        let size = *size;
        let Some((_, root)) = at_size.get(&size) else {
            return Err(Break::AnchorLost {
                anchored: size,
                entries: n as i64,
            }
            .into());
        };
        if let Some((trust, ori)) = trust {
            let v = auditlog::verify_anchor(trust, a, ori).map_err(|e| Break::BadAnchor {
                size,
                detail: e.detail(),
            })?;
            if v.head.size != size as u64 {
                return Err(Break::BadAnchor {
                    size,
                    detail: format!("it anchors size {}", v.head.size),
                }
                .into());
            }
            if v.head.root != *root {
                return Err(Break::AnchorDiffers(size).into());
            }
        }
    }
    // Last, the stored tree the node proves from (derived data; the signed evidence above
    // names what was changed first).
    if tree_differs || (n > 0 && root_at(db, n).ok() != Some(tree.root())) {
        return Err(Break::TreeDiffers.into());
    }
    Ok(VerifyReport {
        entries: n,
        checkpoints: checkpoints.len() as u64,
        anchors: anchors.len() as u64,
    })
}

/// The state digest the newest entry that carries one recorded, if any entry does.
pub fn latest_state_digest(db: &AuditDb) -> Result<Option<String>, Error> {
    // Entries that carry a digest are listed in `digested`; a log from before that table
    // is searched (plain logs only: an encrypted log always had it).
    let row: Option<(i64, Value, String)> = db
        .conn
        .query_row(
            "SELECT seq, entry, hash FROM audit WHERE seq = (SELECT max(seq) FROM digested)
             UNION ALL SELECT * FROM (SELECT seq, entry, hash FROM audit WHERE NOT EXISTS (SELECT 1 FROM digested)
                 AND typeof(entry) = 'text' AND entry LIKE '%\"state_digest\"%' ORDER BY seq DESC LIMIT 1)",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .optional()?;
    let row = row
        .map(|(seq, v, hash)| entry_text(db.keys.as_deref(), seq, &hash, v).map(|t| (seq, t)))
        .transpose()?;
    row.map(|(seq, json)| {
        serde_json::from_str::<AuditEntry>(&json)
            .map(|e| e.state_digest)
            .map_err(|e| Error::corrupt(format!("audit entry {seq}"), e))
    })
    .transpose()
    .map(Option::flatten)
}
