//! Evidence holds (`holds`, `held_reads`) and hot lists (`hotlists`, `hotlist_entries`).
//!
//! In an encrypted database the plates (`holds.plate`, `hotlist_entries.plate`), the
//! hot-list notes and the held reads are sealed values (blobs): a held read is sealed whole
//! into `held_reads.plate`, and its other columns hold zeros.

use std::collections::HashMap;

use alpr_proto::pb::Read;
use prost::Message;
use rusqlite::types::Value;
use rusqlite::{Connection, OptionalExtension, params};

use super::{Db, open_text, seal_text};
use crate::Error;
use crate::store::HoldRow;
use crate::store::encryption::DataKeys;

pub(super) const HOLD_PLATE: &str = "holds.plate";
pub(super) const HELD_READ: &str = "held_reads";
pub(super) const HOT_PLATE: &str = "hotlist_entries.plate";
pub(super) const HOT_NOTE: &str = "hotlist_entries.note";

const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS holds (
    id INTEGER PRIMARY KEY,
    case_number TEXT NOT NULL,
    plate TEXT NOT NULL,
    window_start INTEGER NOT NULL,
    window_end INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    approved_by TEXT NOT NULL,
    placed_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS held_reads (
    hold_id INTEGER NOT NULL,
    plate TEXT NOT NULL,
    captured_at INTEGER NOT NULL,
    camera_id TEXT NOT NULL,
    latitude REAL NOT NULL,
    longitude REAL NOT NULL,
    plate_state TEXT NOT NULL DEFAULT ''
);
CREATE TABLE IF NOT EXISTS hotlists (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    source TEXT NOT NULL,
    topic TEXT NOT NULL,
    expires_at INTEGER NOT NULL,
    loaded_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS hotlist_entries (list_id INTEGER NOT NULL, plate TEXT NOT NULL, note TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS hotlist_plate ON hotlist_entries (plate);
"#;

/// Create the tables.
pub(super) fn init(conn: &Connection) -> Result<(), Error> {
    conn.execute_batch(SCHEMA)?;
    Ok(())
}

/// An evidence hold in force: which plate's reads of which window it keeps.
pub(super) struct ActiveHold {
    /// Hold id.
    pub id: i64,
    /// The plate (opened, in an encrypted database).
    pub plate: String,
    /// Window start.
    pub start: i64,
    /// Window end.
    pub end: i64,
}

/// The holds in force at `now`.
pub(super) fn active(
    conn: &Connection,
    keys: Option<&DataKeys>,
    now: i64,
) -> Result<Vec<ActiveHold>, Error> {
    let mut st = conn.prepare(
        "SELECT id, case_number, plate, window_start, window_end FROM holds WHERE expires_at > ?1",
    )?;
    let rows: Vec<(i64, String, Value, i64, i64)> = st
        .query_map([now], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
        })?
        .collect::<Result<_, _>>()?;
    rows.into_iter()
        .map(|(id, case, plate, start, end)| {
            Ok(ActiveHold {
                id,
                plate: open_text(keys, HOLD_PLATE, case.as_bytes(), plate)?,
                start,
                end,
            })
        })
        .collect()
}

/// Keep `hold`'s reads of the plain day partition `table` (about to be dropped).
pub(super) fn keep_plain(conn: &Connection, hold: &ActiveHold, table: &str) -> Result<u64, Error> {
    Ok(conn.execute(
        &format!(
            "INSERT INTO held_reads (hold_id, plate, captured_at, camera_id, latitude, longitude, plate_state)
             SELECT ?1, plate, captured_at, camera_id, latitude, longitude, plate_state FROM {table}
             WHERE plate = ?2 AND captured_at BETWEEN ?3 AND ?4"
        ),
        params![hold.id, hold.plate, hold.start, hold.end],
    )? as u64)
}

/// Keep `reads` under hold `hold_id` in the clear (reads from a PostgreSQL read store,
/// about to be dropped), each unless the hold keeps it already. Returns how many it kept.
pub(super) fn keep_plain_reads(
    conn: &Connection,
    hold_id: i64,
    reads: &[Read],
) -> Result<u64, Error> {
    let mut st = conn.prepare_cached(
        "INSERT INTO held_reads (hold_id, plate, captured_at, camera_id, latitude, longitude, plate_state)
         SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?7 WHERE NOT EXISTS (SELECT 1 FROM held_reads
           WHERE hold_id = ?1 AND plate = ?2 AND captured_at = ?3 AND camera_id = ?4 AND latitude = ?5 AND longitude = ?6 AND plate_state = ?7)",
    )?;
    let mut kept = 0;
    for r in reads {
        kept += st.execute(params![
            hold_id,
            r.plate,
            r.captured_at,
            r.camera_id,
            r.latitude,
            r.longitude,
            r.plate_state
        ])? as u64;
    }
    Ok(kept)
}

/// Keep `reads` under hold `hold_id`, each sealed whole (an encrypted database).
pub(super) fn keep_sealed(
    conn: &Connection,
    keys: &DataKeys,
    hold_id: i64,
    reads: &[Read],
) -> Result<u64, Error> {
    for r in reads {
        let sealed = keys.seal_field(HELD_READ, &hold_id.to_be_bytes(), &r.encode_to_vec())?;
        conn.execute(
            "INSERT INTO held_reads (hold_id, plate, captured_at, camera_id, latitude, longitude, plate_state) VALUES (?1, ?2, 0, '', 0, 0, '')",
            params![hold_id, sealed],
        )?;
    }
    Ok(reads.len() as u64)
}

/// Release the reads of expired holds.
pub(super) fn release_expired(conn: &Connection, now: i64) -> Result<u64, Error> {
    let n = conn.execute(
        "DELETE FROM held_reads WHERE hold_id IN (SELECT id FROM holds WHERE expires_at <= ?1)",
        [now],
    )?;
    conn.execute("DELETE FROM hotlist_entries WHERE list_id IN (SELECT id FROM hotlists WHERE expires_at <= ?1)", [now])?;
    Ok(n as u64)
}

/// Reads kept under a hold.
pub fn held_reads(db: &Db, hold_id: i64) -> Result<Vec<Read>, Error> {
    if let Some(keys) = &db.keys {
        let mut st = db
            .conn
            .prepare("SELECT plate FROM held_reads WHERE hold_id = ?1")?;
        let mut out = Vec::new();
        for sealed in st.query_map([hold_id], |r| r.get::<_, Vec<u8>>(0))? {
            let body = keys.open_field(HELD_READ, &hold_id.to_be_bytes(), &sealed?)?;
            out.push(Read::decode(&*body).map_err(|e| Error::corrupt("held read", e))?);
        }
        out.sort_by_key(|r| r.captured_at);
        return Ok(out);
    }
    let mut st = db.conn.prepare("SELECT plate, captured_at, camera_id, latitude, longitude, plate_state FROM held_reads WHERE hold_id = ?1 ORDER BY captured_at")?;
    let rows = st.query_map([hold_id], super::read_from_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// The plates of every active hot list: plate -> (list name, note).
pub fn active_hotlist(db: &Db, now: i64) -> Result<HashMap<String, (String, String)>, Error> {
    let mut st = db.conn.prepare(
        "SELECT e.list_id, e.plate, l.name, e.note FROM hotlist_entries e JOIN hotlists l ON l.id = e.list_id WHERE l.expires_at > ?1",
    )?;
    let rows = st.query_map([now], |r| {
        Ok((
            r.get::<_, i64>(0)?,
            r.get::<_, Value>(1)?,
            r.get::<_, String>(2)?,
            r.get::<_, Value>(3)?,
        ))
    })?;
    let keys = db.keys.as_deref();
    let mut out = HashMap::new();
    for row in rows {
        let (list, plate, name, note) = row?;
        let at = list.to_be_bytes();
        out.insert(
            open_text(keys, HOT_PLATE, &at, plate)?,
            (name, open_text(keys, HOT_NOTE, &at, note)?),
        );
    }
    Ok(out)
}

/// Record an evidence hold; returns its id.
pub fn place(
    db: &Db,
    case_number: &str,
    plate: &str,
    (window_start, window_end): (i64, i64),
    expires_at: i64,
    approved_by: &str,
    now: i64,
) -> Result<i64, Error> {
    let plate = seal_text(
        db.keys.as_deref(),
        HOLD_PLATE,
        case_number.as_bytes(),
        plate,
    )?;
    db.conn.execute(
        "INSERT INTO holds (case_number, plate, window_start, window_end, expires_at, approved_by, placed_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        params![case_number, plate, window_start, window_end, expires_at, approved_by, now],
    )?;
    Ok(db.conn.last_insert_rowid())
}

/// Every hold, oldest first, with the reads kept under it.
pub fn list(db: &Db) -> Result<Vec<HoldRow>, Error> {
    let mut st = db.conn.prepare(
        "SELECT h.id, h.case_number, h.plate, h.window_start, h.window_end, h.expires_at, h.approved_by,
                (SELECT COUNT(*) FROM held_reads r WHERE r.hold_id = h.id) FROM holds h ORDER BY h.id",
    )?;
    let rows = st.query_map([], |r| {
        Ok((
            r.get::<_, Value>(2)?,
            HoldRow {
                id: r.get(0)?,
                case_number: r.get(1)?,
                plate: String::new(),
                window_start: r.get(3)?,
                window_end: r.get(4)?,
                expires_at: r.get(5)?,
                approved_by: r.get(6)?,
                kept_reads: r.get(7)?,
            },
        ))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (plate, mut hold) = row?;
        hold.plate = open_text(
            db.keys.as_deref(),
            HOLD_PLATE,
            hold.case_number.as_bytes(),
            plate,
        )?;
        out.push(hold);
    }
    Ok(out)
}

/// One of this agency's own hot lists, as the admin's page lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HotlistSummary {
    /// Its number at this node.
    pub id: i64,
    /// List name.
    pub name: String,
    /// Where it comes from.
    pub source: String,
    /// Its topic.
    pub topic: String,
    /// When it lapses, Unix seconds.
    pub expires_at: i64,
    /// When it was loaded, Unix seconds.
    pub loaded_at: i64,
    /// Plates it holds (none once it lapsed: its entries are deleted).
    pub entries: u64,
}

/// This agency's own hot lists, newest first (at most `limit`).
pub fn hotlists(db: &Db, limit: usize) -> Result<Vec<HotlistSummary>, Error> {
    let mut st = db.conn.prepare(
        "SELECT l.id, l.name, l.source, l.topic, l.expires_at, l.loaded_at,
                (SELECT COUNT(*) FROM hotlist_entries e WHERE e.list_id = l.id)
         FROM hotlists l ORDER BY l.id DESC LIMIT ?1",
    )?;
    let rows = st.query_map([limit as i64], |r| {
        Ok(HotlistSummary {
            id: r.get(0)?,
            name: r.get(1)?,
            source: r.get(2)?,
            topic: r.get(3)?,
            expires_at: r.get(4)?,
            loaded_at: r.get(5)?,
            entries: r.get::<_, i64>(6)? as u64,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// End hot list `id` now, before its expiry: it lapses and its plates are deleted. Returns
/// its name and how many plates it held, or `None` if no list `id` is in force.
pub fn withdraw_hotlist(db: &mut Db, id: i64, now: i64) -> Result<Option<(String, u64)>, Error> {
    let tx = db.conn.transaction()?;
    let name: Option<String> = tx
        .query_row(
            "SELECT name FROM hotlists WHERE id = ?1 AND expires_at > ?2",
            params![id, now],
            |r| r.get(0),
        )
        .optional()?;
    let Some(name) = name else {
        return Ok(None);
    };
    tx.execute(
        "UPDATE hotlists SET expires_at = ?2 WHERE id = ?1",
        params![id, now],
    )?;
    let n = tx.execute("DELETE FROM hotlist_entries WHERE list_id = ?1", [id])?;
    tx.commit()?;
    Ok(Some((name, n as u64)))
}

/// Store a hot list `(name, source, topic)` and its `(plate, note)` entries in one
/// transaction.
pub fn load_hotlist(
    db: &mut Db,
    (name, source, topic): (&str, &str, &str),
    expires_at: i64,
    entries: &[(String, String)],
    now: i64,
) -> Result<(), Error> {
    let keys = db.keys.clone();
    let keys = keys.as_deref();
    let tx = db.conn.transaction()?;
    tx.execute(
        "INSERT INTO hotlists (name, source, topic, expires_at, loaded_at) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![name, source, topic, expires_at, now],
    )?;
    let id = tx.last_insert_rowid();
    let at = id.to_be_bytes();
    for (p, n) in entries {
        tx.execute(
            "INSERT INTO hotlist_entries (list_id, plate, note) VALUES (?1, ?2, ?3)",
            params![
                id,
                seal_text(keys, HOT_PLATE, &at, p)?,
                seal_text(keys, HOT_NOTE, &at, n)?
            ],
        )?;
    }
    tx.commit()?;
    Ok(())
}
