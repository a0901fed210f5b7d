//! Evidence holds (`holds`, `held_reads`) and hot lists (`hotlists`, `hotlist_entries`).

use std::collections::HashMap;

use alpr_proto::pb::Read;
use rusqlite::{Connection, params};

use super::Db;
use crate::Error;
use crate::store::HoldRow;

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

/// Copy reads covered by active holds out of the partitions about to be dropped.
pub(super) fn preserve_held(
    conn: &Connection,
    partition_days: &[i64],
    now: i64,
) -> Result<u64, Error> {
    let mut st = conn
        .prepare("SELECT id, plate, window_start, window_end FROM holds WHERE expires_at > ?1")?;
    let holds: Vec<(i64, String, i64, i64)> = st
        .query_map([now], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?
        .collect::<Result<_, _>>()?;
    let mut kept = 0u64;
    for day in partition_days {
        for (id, plate, start, end) in &holds {
            kept += conn.execute(
                &format!(
                    "INSERT INTO held_reads (hold_id, plate, captured_at, camera_id, latitude, longitude, plate_state)
                     SELECT ?1, plate, captured_at, camera_id, latitude, longitude, plate_state FROM reads_{day}
                     WHERE plate = ?2 AND captured_at BETWEEN ?3 AND ?4"
                ),
                params![id, plate, start, end],
            )? as u64;
        }
    }
    Ok(kept)
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
    let mut st = db.conn.prepare("SELECT plate, captured_at, camera_id, latitude, longitude, plate_state FROM held_reads WHERE hold_id = ?1 ORDER BY captured_at")?;
    let rows = st.query_map([hold_id], super::read_from_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// The plates of every active hot list: plate -> (list name, note).
pub fn active_hotlist(db: &Db, now: i64) -> Result<HashMap<String, (String, String)>, Error> {
    let mut st = db.conn.prepare(
        "SELECT e.plate, l.name, e.note FROM hotlist_entries e JOIN hotlists l ON l.id = e.list_id WHERE l.expires_at > ?1",
    )?;
    let rows = st.query_map([now], |r| {
        Ok((r.get::<_, String>(0)?, (r.get(1)?, r.get(2)?)))
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
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
        Ok(HoldRow {
            id: r.get(0)?,
            case_number: r.get(1)?,
            plate: r.get(2)?,
            window_start: r.get(3)?,
            window_end: r.get(4)?,
            expires_at: r.get(5)?,
            approved_by: r.get(6)?,
            kept_reads: r.get(7)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
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
    let tx = db.conn.transaction()?;
    tx.execute(
        "INSERT INTO hotlists (name, source, topic, expires_at, loaded_at) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![name, source, topic, expires_at, now],
    )?;
    let id = tx.last_insert_rowid();
    for (p, n) in entries {
        tx.execute(
            "INSERT INTO hotlist_entries (list_id, plate, note) VALUES (?1, ?2, ?3)",
            params![id, p, n],
        )?;
    }
    tx.commit()?;
    Ok(())
}
