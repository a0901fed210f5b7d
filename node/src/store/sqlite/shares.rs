//! Hot lists shared between agencies: the lists this agency shared (`shares_out`, one row
//! per target that accepted, to verify the hit reports that come back), the lists others
//! shared with it (`shares_in`, matched against every ingested read while in force), and the
//! hit reports waiting to reach their list's owner (`hit_outbox`).
//!
//! The shared query (which holds the list's plates) and each reported read are sealed
//! values in an encrypted database.

use alpr_proto::pb::{Query, Read};
use prost::Message;
use rusqlite::types::Value;
use rusqlite::{Connection, OptionalExtension, params};

use super::Db;
use crate::Error;
use crate::store::encryption::DataKeys;

const SHARE_OUT: &str = "shares_out.query";
const SHARE_IN: &str = "shares_in.query";
const HIT_READ: &str = "hit_outbox.read";

const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS shares_out (
    share_id BLOB NOT NULL,
    target TEXT NOT NULL,
    query BLOB NOT NULL,
    expires_at INTEGER NOT NULL,
    shared_at INTEGER NOT NULL,
    PRIMARY KEY (share_id, target)
);
CREATE TABLE IF NOT EXISTS shares_in (
    share_id BLOB PRIMARY KEY,
    owner_ori TEXT NOT NULL,
    agreement_id TEXT NOT NULL,
    query BLOB NOT NULL,
    expires_at INTEGER NOT NULL,
    received_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS hit_outbox (
    id INTEGER PRIMARY KEY,
    share_id BLOB NOT NULL,
    read BLOB NOT NULL,
    created_at INTEGER NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    done_at INTEGER,
    outcome TEXT
);
CREATE INDEX IF NOT EXISTS hit_outbox_pending ON hit_outbox (done_at, id);
"#;

/// Create the tables.
pub(super) fn init(conn: &Connection) -> Result<(), Error> {
    conn.execute_batch(SCHEMA)?;
    Ok(())
}

fn seal(
    keys: Option<&DataKeys>,
    place: &str,
    row: &[u8],
    bytes: Vec<u8>,
) -> Result<Vec<u8>, Error> {
    match keys {
        Some(k) => k.seal_field(place, row, &bytes),
        None => Ok(bytes),
    }
}

fn open(
    keys: Option<&DataKeys>,
    place: &str,
    row: &[u8],
    bytes: Vec<u8>,
) -> Result<Vec<u8>, Error> {
    match keys {
        Some(k) => k.open_field(place, row, &bytes),
        None => Ok(bytes),
    }
}

fn decode_query(place: &str, bytes: &[u8]) -> Result<Query, Error> {
    Query::decode(bytes).map_err(|e| Error::corrupt(place, e))
}

/// A hot list another agency shared with this one.
#[derive(Clone, Debug)]
pub struct SharedIn {
    /// The list's owner.
    pub owner_ori: String,
    /// The agreement it was admitted under.
    pub agreement_id: String,
    /// The share as signed by the owner's investigator (its list in `hotlist`).
    pub query: Query,
}

/// Record that `target` accepted this agency's share `query`.
pub fn record_out(db: &Db, target: &str, query: &Query, now: i64) -> Result<(), Error> {
    let sealed = seal(
        db.keys.as_deref(),
        SHARE_OUT,
        &query.query_id,
        query.encode_to_vec(),
    )?;
    db.conn.execute(
        "INSERT OR REPLACE INTO shares_out (share_id, target, query, expires_at, shared_at) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![query.query_id, target, sealed, query.window_end, now],
    )?;
    Ok(())
}

/// This agency's share `share_id` as `target` accepted it.
pub fn find_out(db: &Db, share_id: &[u8], target: &str) -> Result<Option<Query>, Error> {
    let row: Option<Vec<u8>> = db
        .conn
        .query_row(
            "SELECT query FROM shares_out WHERE share_id = ?1 AND target = ?2",
            params![share_id, target],
            |r| r.get(0),
        )
        .optional()?;
    row.map(|b| {
        let b = open(db.keys.as_deref(), SHARE_OUT, share_id, b)?;
        decode_query(SHARE_OUT, &b)
    })
    .transpose()
}

/// Keep a list `owner_ori` shared with this agency under `agreement_id`.
pub fn record_in(db: &Db, agreement_id: &str, query: &Query, now: i64) -> Result<(), Error> {
    let sealed = seal(
        db.keys.as_deref(),
        SHARE_IN,
        &query.query_id,
        query.encode_to_vec(),
    )?;
    db.conn.execute(
        "INSERT OR REPLACE INTO shares_in (share_id, owner_ori, agreement_id, query, expires_at, received_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![
            query.query_id,
            query.requester_ori,
            agreement_id,
            sealed,
            query.window_end,
            now
        ],
    )?;
    Ok(())
}

/// The shared lists still in force at `now` (by their own expiry; the caller checks the
/// agreements).
pub fn active_in(db: &Db, now: i64) -> Result<Vec<SharedIn>, Error> {
    let mut st = db.conn.prepare_cached(
        "SELECT share_id, owner_ori, agreement_id, query FROM shares_in WHERE expires_at > ?1 ORDER BY received_at",
    )?;
    let rows = st.query_map([now], |r| {
        Ok((
            r.get::<_, Vec<u8>>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, String>(2)?,
            r.get::<_, Vec<u8>>(3)?,
        ))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (id, owner_ori, agreement_id, q) = row?;
        let q = open(db.keys.as_deref(), SHARE_IN, &id, q)?;
        out.push(SharedIn {
            owner_ori,
            agreement_id,
            query: decode_query(SHARE_IN, &q)?,
        });
    }
    Ok(out)
}

/// End now the kept lists `owner_ori` shared under `name` before `before` (their signing
/// time), all but the share `keep`: their owner withdrew them, or shared the list again.
/// How many were in force. (Their rows stay until their hits are reported: see [`purge`].)
pub fn withdraw_in(
    db: &Db,
    owner_ori: &str,
    name: &str,
    keep: Option<&[u8]>,
    before: i64,
    now: i64,
) -> Result<u64, Error> {
    let mut n = 0;
    for s in active_in(db, now)? {
        let same = s.owner_ori == owner_ori
            && s.query.hotlist.as_ref().is_some_and(|h| h.name == name)
            && s.query.issued_at <= before
            && keep != Some(s.query.query_id.as_slice());
        if same {
            n += db.conn.execute(
                "UPDATE shares_in SET expires_at = ?2 WHERE share_id = ?1 AND expires_at > ?2",
                params![s.query.query_id, now],
            )? as u64;
        }
    }
    Ok(n)
}

/// A shared list this agency keeps, by id.
pub fn find_in(db: &Db, share_id: &[u8]) -> Result<Option<SharedIn>, Error> {
    let row: Option<(String, String, Vec<u8>)> = db
        .conn
        .query_row(
            "SELECT owner_ori, agreement_id, query FROM shares_in WHERE share_id = ?1",
            [share_id],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .optional()?;
    row.map(|(owner_ori, agreement_id, q)| {
        let q = open(db.keys.as_deref(), SHARE_IN, share_id, q)?;
        Ok(SharedIn {
            owner_ori,
            agreement_id,
            query: decode_query(SHARE_IN, &q)?,
        })
    })
    .transpose()
}

/// Drop shared lists past their expiry (both directions; a kept list only once no hit
/// of it waits to be reported) and hit reports settled more than `keep_secs` ago.
pub fn purge(db: &Db, now: i64, keep_secs: i64) -> Result<u64, Error> {
    let mut n = db.conn.execute(
        "DELETE FROM shares_in WHERE expires_at <= ?1
         AND share_id NOT IN (SELECT share_id FROM hit_outbox WHERE done_at IS NULL)",
        [now],
    )?;
    n += db.conn.execute(
        "DELETE FROM shares_out WHERE expires_at <= ?1",
        [now - keep_secs],
    )?;
    n += db.conn.execute(
        "DELETE FROM hit_outbox WHERE done_at IS NOT NULL AND done_at <= ?1",
        [now - keep_secs],
    )?;
    Ok(n as u64)
}

/// Queue hit reports: `(share id, read)` each.
pub fn queue_hits(db: &mut Db, hits: &[(Vec<u8>, Read)], now: i64) -> Result<(), Error> {
    let keys = db.keys.clone();
    let tx = db.conn.transaction()?;
    for (share, read) in hits {
        let sealed = seal(keys.as_deref(), HIT_READ, share, read.encode_to_vec())?;
        tx.execute(
            "INSERT INTO hit_outbox (share_id, read, created_at) VALUES (?1, ?2, ?3)",
            params![share, sealed, now],
        )?;
    }
    tx.commit()?;
    Ok(())
}

/// A queued hit report.
#[derive(Clone, Debug)]
pub struct PendingHit {
    /// Its row.
    pub id: i64,
    /// The share it is a hit of.
    pub share_id: Vec<u8>,
    /// The read.
    pub read: Read,
    /// Attempts so far.
    pub attempts: i64,
}

/// How many hit reports are not yet settled.
pub fn pending_count(db: &Db) -> Result<u64, Error> {
    let n: i64 = db.conn.query_row(
        "SELECT COUNT(*) FROM hit_outbox WHERE done_at IS NULL",
        [],
        |r| r.get(0),
    )?;
    Ok(n as u64)
}

/// Up to `limit` hit reports not yet settled, oldest first.
pub fn pending_hits(db: &Db, limit: usize) -> Result<Vec<PendingHit>, Error> {
    let mut st = db.conn.prepare_cached(
        "SELECT id, share_id, read, attempts FROM hit_outbox WHERE done_at IS NULL ORDER BY id LIMIT ?1",
    )?;
    let rows = st.query_map([limit as i64], |r| {
        Ok((
            r.get::<_, i64>(0)?,
            r.get::<_, Vec<u8>>(1)?,
            r.get::<_, Value>(2)?,
            r.get::<_, i64>(3)?,
        ))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (id, share_id, read, attempts) = row?;
        let Value::Blob(read) = read else {
            return Err(Error::corrupt(HIT_READ, "not a blob"));
        };
        let read = open(db.keys.as_deref(), HIT_READ, &share_id, read)?;
        out.push(PendingHit {
            id,
            share_id,
            read: Read::decode(read.as_slice()).map_err(|e| Error::corrupt(HIT_READ, e))?,
            attempts,
        });
    }
    Ok(out)
}

/// Settle hit reports `ids` with `outcome` (`delivered`, or the refusal), or count one
/// more attempt when `outcome` is `None` (they stay queued).
pub fn settle_hits(db: &mut Db, ids: &[i64], outcome: Option<&str>, now: i64) -> Result<(), Error> {
    let tx = db.conn.transaction()?;
    for id in ids {
        match outcome {
            Some(o) => tx.execute(
                "UPDATE hit_outbox SET done_at = ?2, outcome = ?3, attempts = attempts + 1 WHERE id = ?1",
                params![id, now, o],
            )?,
            None => tx.execute(
                "UPDATE hit_outbox SET attempts = attempts + 1 WHERE id = ?1",
                [id],
            )?,
        };
    }
    tx.commit()?;
    Ok(())
}
