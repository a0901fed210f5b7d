//! The audit log in `audit.db` (WAL, `synchronous=FULL`): the `audit` table of chained
//! entries and the `checkpoints` table of signed chain heads.
//!
//! [`AuditLog`] is a group-commit writer: one thread owns the write connection; callers
//! hand it entries and block until the transaction holding them is durable, so concurrent
//! queries share one fsync instead of each paying for their own.

use std::path::Path;
use std::sync::Arc;
use std::sync::mpsc::{self, Receiver, Sender, SyncSender};

use alpr_pki::Signer;
use rusqlite::{Connection, OptionalExtension, params};

use crate::Error;
use crate::audit::{
    AuditEntry, Break, CHECKPOINT_EVERY, CHECKPOINT_SECS, Event, Filter, GENESIS, StoredEntry,
    VerifyReport, chain_hash, checkpoint_message, decode_chain, encode_chain,
};

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
"#;

/// An open `audit.db`, for reading, verifying and exporting (writes go through
/// [`AuditLog`]).
pub struct AuditDb {
    conn: Connection,
}

impl std::fmt::Debug for AuditDb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AuditDb")
    }
}

impl AuditDb {
    /// Open the audit database (creating it if needed).
    pub fn open(path: &Path) -> Result<Self, Error> {
        Ok(Self {
            conn: open_connection(path)?,
        })
    }

    /// The SQLite connection itself, for tools and tests that inspect or alter the file
    /// as an outsider would.
    pub fn connection(&self) -> &Connection {
        &self.conn
    }
}

fn open_connection(path: &Path) -> Result<Connection, Error> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    }
    let conn = alpr_runtime::sqlite::open(path, std::time::Duration::from_secs(30))
        .map_err(|e| Error::AuditUnavailable(format!("{}: {e}", path.display())))?;
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
        let conn = open_connection(path)?;
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
                let json =
                    serde_json::to_string(e).map_err(|e| Error::corrupt("audit entry", e))?;
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
                .map_err(|e| Error::AuditUnavailable(format!("signing checkpoint: {e}")))?;
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

/// Query ids of the `inbound_query` entries logged at or after `since`, with the time each
/// was logged: what a restarting node feeds its replay memory. Reads back from the newest
/// entry and stops a minute before `since` (entries are appended in time order, give or
/// take one group commit).
pub fn inbound_ids_since(db: &AuditDb, since: i64) -> Result<Vec<(Vec<u8>, i64)>, Error> {
    let conn = &db.conn;
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
        Some(e) => Err(Error::corrupt("audit entry", e)),
        None => Ok(ids),
    }
}

/// Force a signed checkpoint of the current head (e.g. at shutdown).
pub fn checkpoint_now(db: &mut AuditDb, signer: &Signer) -> Result<Option<i64>, Error> {
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
    let now = alpr_pki::now_unix();
    let sig = signer
        .sign(&checkpoint_message(seq, &hash, now))
        .map_err(|e| Error::AuditUnavailable(format!("signing checkpoint: {e}")))?;
    tx.execute(
        "INSERT OR IGNORE INTO checkpoints (size, at, head_hash, signature, cert_chain) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![seq, now, hash, sig, encode_chain(signer.chain())],
    )?;
    tx.commit()?;
    Ok(Some(seq))
}

/// Read entries, optionally only one event kind, in order.
pub fn list(db: &AuditDb, event: Option<Event>) -> Result<Vec<StoredEntry>, Error> {
    let mut st = db.conn.prepare(
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

/// Verify the whole chain: sequence without gaps, each `prev_hash` the previous `hash`,
/// each `hash` recomputed; and every checkpoint's signature (by a node certificate of
/// `ori` under `trust`) over the chain head it names. Errors name the first bad entry.
pub fn verify(
    db: &AuditDb,
    trust: Option<(&alpr_pki::TrustStore, &str)>,
) -> Result<VerifyReport, Error> {
    let mut heads = std::collections::HashMap::new();
    let conn = &db.conn;
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
            return Err(Break::HeadChanged(size).into());
        }
        if let Some((trust, ori)) = trust {
            let chain = decode_chain(&chain).ok_or(Break::BadChain(size))?;
            let id = trust
                .verify_signature(&chain, &checkpoint_message(size, &head, at), &sig, at)
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
        c += 1;
    }
    Ok(VerifyReport {
        entries: n,
        checkpoints: c,
    })
}

/// The state digest the newest entry that carries one recorded, if any entry does.
pub fn latest_state_digest(db: &AuditDb) -> Result<Option<String>, Error> {
    let row: Option<(i64, String)> = db
        .conn
        .query_row(
            "SELECT seq, entry FROM audit WHERE entry LIKE '%\"state_digest\"%' ORDER BY seq DESC LIMIT 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?;
    row.map(|(seq, json)| {
        serde_json::from_str::<AuditEntry>(&json)
            .map(|e| e.state_digest)
            .map_err(|e| Error::corrupt(format!("audit entry {seq}"), e))
    })
    .transpose()
    .map(Option::flatten)
}
