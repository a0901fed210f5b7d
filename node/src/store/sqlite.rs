//! The SQLite implementation of the node's store: `node.db` (WAL, `synchronous=FULL`)
//! holds reads, agreements and the registry copy, accounts, switches, holds and hot lists;
//! `audit.db` holds the audit log. This module and its children are the only place that
//! knows SQL or `rusqlite`.
//!
//! The schema is versioned (`PRAGMA user_version`, [`SCHEMA_VERSION`]); [`open`] migrates
//! an older database in one transaction.

use std::path::Path;
use std::sync::Arc;

use rusqlite::types::Value;
use rusqlite::{Connection, OptionalExtension, params};

use super::encryption::DataKeys;
use super::postgres::PgReads;
use crate::Error;

pub mod accounts;
pub mod agreements;
pub mod approvals;
pub mod audit;
pub mod console;
pub mod holds;
pub mod maintenance;
pub mod reads;
pub mod registry;
pub mod rejects;
pub mod sealing;
pub mod settings;
pub mod shares;

/// An open `node.db`: one connection. Callers share it behind the node's mutex; every
/// function of the store takes it as `&Db` (reads, single statements) or `&mut Db`
/// (transactions).
pub struct Db {
    conn: Connection,
    keys: Option<Arc<DataKeys>>,
    /// Where the reads are when they are not in this file: a PostgreSQL database.
    pg: Option<Arc<PgReads>>,
}

impl std::fmt::Debug for Db {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Db")
    }
}

impl Db {
    /// Run `f` in one transaction: committed when it returns `Ok`, rolled back when it
    /// returns an error (or panics). Store functions called inside with the `&Db` it gets
    /// take part in the transaction.
    pub fn transaction<T>(&mut self, f: impl FnOnce(&Db) -> Result<T, Error>) -> Result<T, Error> {
        let tx = self.conn.unchecked_transaction()?;
        let value = f(self)?;
        tx.commit()?;
        Ok(value)
    }

    /// The SQLite connection itself, for tools and tests that inspect or alter the file
    /// as an outsider would (nothing in the node goes around the store functions).
    pub fn connection(&self) -> &Connection {
        &self.conn
    }

    /// The data keys it is encrypted with, if it is encrypted.
    pub fn keys(&self) -> Option<&Arc<DataKeys>> {
        self.keys.as_ref()
    }

    /// The PostgreSQL database holding the reads, when they are not in this file.
    pub fn postgres_reads(&self) -> Option<&Arc<PgReads>> {
        self.pg.as_ref()
    }
}

/// The table that records, in an encrypted database, which data key encrypts it.
const ENCRYPTION_TABLE: &str = "CREATE TABLE IF NOT EXISTS encryption (key_id TEXT NOT NULL);";

/// The data key id recorded in the database at `path`, if it exists and is encrypted.
pub fn encryption_marker(path: &Path) -> Result<Option<String>, Error> {
    if !path.exists() {
        return Ok(None);
    }
    let conn = Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    marker(&conn)
}

fn marker(conn: &Connection) -> Result<Option<String>, Error> {
    let exists: bool = conn.query_row(
        "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'encryption'",
        [],
        |r| r.get::<_, i64>(0).map(|n| n > 0),
    )?;
    if !exists {
        return Ok(None);
    }
    Ok(conn
        .query_row("SELECT key_id FROM encryption LIMIT 1", [], |r| r.get(0))
        .optional()?)
}

/// Check that a database opened with `keys` (or none) was encrypted with them (or is
/// plain); record them in a database that holds nothing yet (`empty`). `file` names the
/// database in errors.
fn check_encryption(
    conn: &Connection,
    keys: Option<&DataKeys>,
    empty: bool,
    file: &Path,
) -> Result<(), Error> {
    let file = file.display();
    match (marker(conn)?, keys) {
        (None, None) => Ok(()),
        (Some(id), None) => Err(Error::Keys(format!(
            "{file} is encrypted (data key {id}); configure its key-encryption key in [storage] (kek_file, kek_env or kek_command)"
        ))),
        (Some(id), Some(k)) if id == k.key_id() => Ok(()),
        (Some(id), Some(k)) => Err(Error::Keys(format!(
            "{file} is encrypted under data key {id}, but the keyring holds data key {} (another node's keyring?)",
            k.key_id()
        ))),
        (None, Some(k)) if empty => {
            conn.execute_batch(ENCRYPTION_TABLE)?;
            conn.execute("INSERT INTO encryption (key_id) VALUES (?1)", [k.key_id()])?;
            Ok(())
        }
        (None, Some(_)) => Err(Error::Keys(format!(
            "{file} already holds unencrypted data and cannot be encrypted in place; remove [storage] kek_* from the config to keep using it as it is, or move its data to a new node (export, then ingest)"
        ))),
    }
}

/// A value for a sensitive text column: sealed (a blob) when `keys` are given, else the
/// text itself. `place` and `row` bind it where it is stored.
fn seal_text(keys: Option<&DataKeys>, place: &str, row: &[u8], text: &str) -> Result<Value, Error> {
    Ok(match keys {
        Some(k) => Value::Blob(k.seal_field(place, row, text.as_bytes())?),
        None => Value::Text(text.to_owned()),
    })
}

/// The text of a value written by [`seal_text`].
fn open_text(keys: Option<&DataKeys>, place: &str, row: &[u8], v: Value) -> Result<String, Error> {
    match (v, keys) {
        (Value::Text(t), None) => Ok(t),
        (Value::Blob(b), Some(k)) => k.open_text(place, row, &b),
        (Value::Text(_), Some(_)) => Err(Error::corrupt(
            place,
            "stored in the clear in an encrypted database",
        )),
        (_, _) => Err(Error::corrupt(place, "not text")),
    }
}

/// A read from a row of `plate, captured_at, camera_id, latitude, longitude, plate_state`.
fn read_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<alpr_proto::pb::Read> {
    Ok(alpr_proto::pb::Read {
        plate: r.get(0)?,
        captured_at: r.get(1)?,
        camera_id: r.get(2)?,
        latitude: r.get(3)?,
        longitude: r.get(4)?,
        plate_state: r.get(5)?,
    })
}

/// A database failure (opaque; SQLite's own message).
pub use alpr_runtime::sqlite::DbError;

impl From<rusqlite::Error> for Error {
    fn from(e: rusqlite::Error) -> Self {
        Error::Db(DbError::from(e))
    }
}

const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS partitions (
    day INTEGER PRIMARY KEY,
    rows INTEGER NOT NULL DEFAULT 0,
    compacted INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS agreements (
    id TEXT PRIMARY KEY,
    provider_ori TEXT NOT NULL,
    requester_ori TEXT NOT NULL,
    status TEXT NOT NULL,
    signed BLOB NOT NULL,
    imported_at INTEGER NOT NULL,
    registered_index INTEGER,
    registered_at INTEGER
);
CREATE TABLE IF NOT EXISTS registry_leaves (idx INTEGER PRIMARY KEY, hash BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS registry_heads (size INTEGER PRIMARY KEY, root BLOB NOT NULL, sth BLOB NOT NULL, seen_at INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS registry_subjects (subject TEXT PRIMARY KEY, count INTEGER NOT NULL, last_index INTEGER NOT NULL, chain BLOB NOT NULL);
"#;

/// The schema version this code writes. 1: reads carry their plate's issuing state, and
/// an exact duplicate read is stored once. 2: a database may be encrypted at rest (its
/// partitions and sealed columns are then unreadable to code of version 1, which therefore
/// refuses it; a plain database moves from 1 to 2 unchanged). 3: an encrypted partition is
/// keyed by an integer row key (blind-index bucket and slot) instead of a `(tag, id)` blob
/// key, so that lookups that miss the page cache read one page a day; opening a version-2
/// encrypted database with its keys moves its reads (a plain one moves unchanged).
pub const SCHEMA_VERSION: i64 = 3;

/// Open (creating if needed) a plain node database in WAL mode with full durability. An
/// encrypted one is refused: open it with [`open_with`] and its keys.
pub fn open(path: &Path) -> Result<Db, Error> {
    open_with(path, None)
}

/// Open (creating if needed) the node database, encrypted with `keys` or plain, with its
/// reads in the file itself. One whose reads are in PostgreSQL is refused: open it with
/// [`open_at`].
pub fn open_with(path: &Path, keys: Option<Arc<DataKeys>>) -> Result<Db, Error> {
    open_at(path, keys, None)
}

/// Open (creating if needed) the node database, encrypted with `keys` or plain, its reads
/// in PostgreSQL (`pg`) or in the file. Refused: reads in PostgreSQL with encryption at
/// rest (the node does not encrypt what it keeps there), a file that records its reads
/// in PostgreSQL opened without it (it would answer every query from an empty store), and
/// a file that holds reads of its own opened with PostgreSQL (those reads would vanish
/// from every answer).
pub fn open_at(
    path: &Path,
    keys: Option<Arc<DataKeys>>,
    pg: Option<Arc<PgReads>>,
) -> Result<Db, Error> {
    if pg.is_some() && keys.is_some() {
        return Err(Error::Keys(
            "reads in PostgreSQL ([storage] postgres) cannot be encrypted by the node: configure either a key-encryption key or PostgreSQL, not both".into(),
        ));
    }
    let mut db = open_file(path, keys)?;
    reads::place_reads(&db, pg.as_deref(), path)?;
    db.pg = pg;
    Ok(db)
}

/// Open the file itself, its reads wherever they are.
fn open_file(path: &Path, keys: Option<Arc<DataKeys>>) -> Result<Db, Error> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    }
    let conn = alpr_runtime::sqlite::open(path, std::time::Duration::from_secs(10))?;
    // One cached statement per day partition a lookup touches (rusqlite's default of 16
    // thrashes on 30-day windows and re-prepares every statement).
    conn.set_prepared_statement_cache_capacity(512);
    conn.execute_batch(SCHEMA)?;
    // Databases from before day partitions were compacted ([`reads::compact_one_closed`]).
    if !has_column(&conn, "partitions", "compacted")? {
        conn.execute_batch(
            "ALTER TABLE partitions ADD COLUMN compacted INTEGER NOT NULL DEFAULT 0",
        )?;
    }
    settings::init(&conn)?;
    accounts::init(&conn)?;
    holds::init(&conn)?;
    sealing::init(&conn)?;
    approvals::init(&conn)?;
    shares::init(&conn)?;
    console::init(&conn)?;
    rejects::init(&conn)?;
    migrate(&conn)?;
    let empty: bool = conn.query_row(
        "SELECT NOT EXISTS (SELECT 1 FROM partitions) AND NOT EXISTS (SELECT 1 FROM holds)
            AND NOT EXISTS (SELECT 1 FROM hotlist_entries) AND NOT EXISTS (SELECT 1 FROM own_sealing_keys)
            AND NOT EXISTS (SELECT 1 FROM shares_in) AND NOT EXISTS (SELECT 1 FROM shares_out)
            AND NOT EXISTS (SELECT 1 FROM hit_outbox)",
        [],
        |r| r.get(0),
    )?;
    check_encryption(&conn, keys.as_deref(), empty, path)?;
    if let Some(keys) = keys.as_deref() {
        reads::move_to_row_keys(&conn, keys)?;
    }
    Ok(Db {
        conn,
        keys,
        pg: None,
    })
}

/// Bring a database written by older code up to [`SCHEMA_VERSION`] (except the move of
/// encrypted reads from version 2, which needs the keys: [`reads::move_to_row_keys`]);
/// refuse one written by newer code.
fn migrate(conn: &Connection) -> Result<(), Error> {
    let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if version > SCHEMA_VERSION {
        return Err(Error::SchemaTooNew {
            found: version,
            supported: SCHEMA_VERSION,
        });
    }
    if version == SCHEMA_VERSION {
        return Ok(());
    }
    let tx = conn.unchecked_transaction()?;
    if version < 1 {
        // Reads stored before plates carried their issuing state keep an unknown state
        // (''): only "any state" queries find them. Exact duplicates (a file ingested
        // twice) are removed, so that the identity index can be unique.
        let days: Vec<i64> = tx
            .prepare("SELECT day FROM partitions")?
            .query_map([], |r| r.get(0))?
            .collect::<Result<_, _>>()?;
        for day in days {
            let t = reads::table(day);
            if !has_column(&tx, &t, "plate_state")? {
                tx.execute_batch(&format!(
                    "ALTER TABLE {t} ADD COLUMN plate_state TEXT NOT NULL DEFAULT '';
                     DROP INDEX IF EXISTS {t}_plate_cover;
                     DROP INDEX IF EXISTS {t}_plate_time;"
                ))?;
            }
            let removed = tx.execute(
                &format!(
                    "DELETE FROM {t} WHERE rowid NOT IN (SELECT MIN(rowid) FROM {t} GROUP BY plate, plate_state, captured_at, camera_id, latitude, longitude)"
                ),
                [],
            )?;
            tx.execute(
                "UPDATE partitions SET rows = rows - ?2 WHERE day = ?1",
                params![day, removed as i64],
            )?;
            tx.execute_batch(&reads::partition_index(&t))?;
        }
        if !has_column(&tx, "held_reads", "plate_state")? {
            tx.execute_batch(
                "ALTER TABLE held_reads ADD COLUMN plate_state TEXT NOT NULL DEFAULT ''",
            )?;
        }
    }
    tx.pragma_update(None, "user_version", SCHEMA_VERSION)?;
    tx.commit()?;
    Ok(())
}

fn has_column(conn: &Connection, table: &str, column: &str) -> Result<bool, Error> {
    let mut st = conn.prepare(&format!("PRAGMA table_info({table})"))?;
    let names = st.query_map([], |r| r.get::<_, String>(1))?;
    for n in names {
        if n? == column {
            return Ok(true);
        }
    }
    Ok(false)
}

#[cfg(test)]
mod tests;
