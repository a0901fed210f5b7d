//! Sealing keys: this node's own key pairs (`own_sealing_keys`) and every node's published
//! keys as this node's verified copy of the registry shows them (`sealing_keys`). In an
//! encrypted database each secret key is sealed under the data keys, bound to its key id.

use rusqlite::{Connection, OptionalExtension, params};

use super::Db;
use crate::Error;

const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS own_sealing_keys (
    key_id BLOB PRIMARY KEY,
    suite INTEGER NOT NULL,
    secret BLOB NOT NULL,
    public BLOB NOT NULL,
    created_at INTEGER NOT NULL,
    retired_at INTEGER,
    published_index INTEGER,
    published_cert TEXT
);
CREATE TABLE IF NOT EXISTS sealing_keys (
    idx INTEGER PRIMARY KEY,
    ori TEXT NOT NULL,
    key_id BLOB NOT NULL,
    signed BLOB NOT NULL,
    published_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS sealing_keys_ori ON sealing_keys (ori, idx);
"#;

/// Create the tables.
pub(super) fn init(conn: &Connection) -> Result<(), Error> {
    conn.execute_batch(SCHEMA)?;
    Ok(())
}

/// One of this node's own key pairs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OwnKey {
    /// Its id (16 bytes).
    pub key_id: Vec<u8>,
    /// Suite number.
    pub suite: u32,
    /// Secret key bytes.
    pub secret: Vec<u8>,
    /// Public key bytes.
    pub public: Vec<u8>,
    /// When created.
    pub created_at: i64,
    /// When a newer key replaced it (it still opens boxes for the grace period).
    pub retired_at: Option<i64>,
    /// The registry index of this node's last publication of it.
    pub published_index: Option<u64>,
    /// SHA-256 (hex) of the node certificate it was last published under.
    pub published_cert: Option<String>,
}

const SECRET: &str = "own_sealing_keys.secret";

/// This node's key pairs, newest first.
pub fn own_keys(db: &Db) -> Result<Vec<OwnKey>, Error> {
    let mut st = db.conn.prepare_cached(
        "SELECT key_id, suite, secret, public, created_at, retired_at, published_index, published_cert FROM own_sealing_keys ORDER BY created_at DESC, rowid DESC",
    )?;
    let rows = st.query_map([], |r| {
        Ok(OwnKey {
            key_id: r.get(0)?,
            suite: r.get(1)?,
            secret: r.get(2)?,
            public: r.get(3)?,
            created_at: r.get(4)?,
            retired_at: r.get(5)?,
            published_index: r.get::<_, Option<i64>>(6)?.map(|i| i as u64),
            published_cert: r.get(7)?,
        })
    })?;
    let mut keys: Vec<OwnKey> = rows.collect::<Result<_, _>>()?;
    if let Some(k) = &db.keys {
        for key in &mut keys {
            key.secret = k.open_field(SECRET, &key.key_id, &key.secret)?;
        }
    }
    Ok(keys)
}

/// Add a new current key and retire every other one at `now`.
pub fn add_own_key(db: &Db, key: &OwnKey, now: i64) -> Result<(), Error> {
    db.conn.execute(
        "UPDATE own_sealing_keys SET retired_at = ?1 WHERE retired_at IS NULL",
        [now],
    )?;
    let secret = match &db.keys {
        Some(k) => k.seal_field(SECRET, &key.key_id, &key.secret)?,
        None => key.secret.clone(),
    };
    db.conn.execute(
        "INSERT INTO own_sealing_keys (key_id, suite, secret, public, created_at, retired_at) VALUES (?1, ?2, ?3, ?4, ?5, NULL)",
        params![key.key_id, key.suite, secret, key.public, key.created_at],
    )?;
    Ok(())
}

/// Record that `key_id` was published at registry `index` under the certificate `cert`.
pub fn set_published(db: &Db, key_id: &[u8], index: u64, cert: &str) -> Result<(), Error> {
    db.conn.execute(
        "UPDATE own_sealing_keys SET published_index = ?2, published_cert = ?3 WHERE key_id = ?1",
        params![key_id, index as i64, cert],
    )?;
    Ok(())
}

/// Delete the keys retired before `cutoff` (their boxes no longer open); returns how many.
pub fn drop_retired_before(db: &Db, cutoff: i64) -> Result<usize, Error> {
    Ok(db.conn.execute(
        "DELETE FROM own_sealing_keys WHERE retired_at IS NOT NULL AND retired_at < ?1",
        [cutoff],
    )?)
}

/// A published key as this node's registry copy holds it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredPublishedKey {
    /// Registry leaf index.
    pub index: u64,
    /// The node's agency.
    pub ori: String,
    /// The signed publication (encoded `Signed`).
    pub signed: Vec<u8>,
    /// When published.
    pub published_at: i64,
}

/// Record a verified publication from registry leaf `index`.
pub fn put_published(
    db: &Db,
    index: u64,
    ori: &str,
    key_id: &[u8],
    signed: &[u8],
    published_at: i64,
) -> Result<(), Error> {
    db.conn.execute(
        "INSERT OR REPLACE INTO sealing_keys (idx, ori, key_id, signed, published_at) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![index as i64, ori, key_id, signed, published_at],
    )?;
    Ok(())
}

/// The newest publication of each agency.
pub fn newest_published(db: &Db) -> Result<Vec<StoredPublishedKey>, Error> {
    let mut st = db.conn.prepare_cached(
        "SELECT idx, ori, signed, published_at FROM sealing_keys s WHERE idx = (SELECT MAX(idx) FROM sealing_keys t WHERE t.ori = s.ori) ORDER BY ori",
    )?;
    let rows = st.query_map([], |r| {
        Ok(StoredPublishedKey {
            index: r.get::<_, i64>(0)? as u64,
            ori: r.get(1)?,
            signed: r.get(2)?,
            published_at: r.get(3)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// The registry index at which `key_id` was last published by `ori`, if it was.
pub fn published_index(db: &Db, ori: &str, key_id: &[u8]) -> Result<Option<u64>, Error> {
    Ok(db
        .conn
        .query_row(
            "SELECT MAX(idx) FROM sealing_keys WHERE ori = ?1 AND key_id = ?2",
            params![ori, key_id],
            |r| r.get::<_, Option<i64>>(0),
        )
        .optional()?
        .flatten()
        .map(|i| i as u64))
}
