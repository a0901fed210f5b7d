//! The switches, in the `settings` and `refused_requesters` tables.

use rusqlite::{Connection, params};

use super::Db;
use crate::Error;
use crate::settings::{Flag, Switches};

const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS settings (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS refused_requesters (ori TEXT PRIMARY KEY, since INTEGER NOT NULL, by TEXT NOT NULL, note TEXT NOT NULL);
"#;

/// Create the tables.
pub(super) fn init(conn: &Connection) -> Result<(), Error> {
    conn.execute_batch(SCHEMA)?;
    Ok(())
}

fn flag(conn: &Connection, key: Flag) -> Result<bool, Error> {
    use rusqlite::OptionalExtension;
    let v: Option<String> = conn
        .prepare_cached("SELECT value FROM settings WHERE key = ?1")?
        .query_row([key.as_str()], |r| r.get(0))
        .optional()?;
    Ok(v.as_deref() == Some("1"))
}

/// Read the switches.
pub fn load(db: &Db) -> Result<Switches, Error> {
    let conn = &db.conn;
    let mut st = conn.prepare_cached("SELECT ori FROM refused_requesters ORDER BY ori")?;
    let refused = st
        .query_map([], |r| r.get(0))?
        .collect::<Result<Vec<String>, _>>()?;
    Ok(Switches {
        sharing_enabled: flag(conn, Flag::SharingEnabled)?,
        refuse_all: flag(conn, Flag::RefuseAll)?,
        refused_requesters: refused,
    })
}

/// Set a boolean switch.
pub fn set_flag(db: &Db, key: Flag, on: bool) -> Result<(), Error> {
    let conn = &db.conn;
    conn.execute(
        "INSERT INTO settings (key, value) VALUES (?1, ?2) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
        params![key.as_str(), if on { "1" } else { "0" }],
    )?;
    Ok(())
}

/// Add or remove a refused requester.
pub fn set_refused(
    db: &Db,
    ori: &str,
    refused: bool,
    by: &str,
    note: &str,
    now: i64,
) -> Result<(), Error> {
    let conn = &db.conn;
    if refused {
        conn.execute(
            "INSERT OR REPLACE INTO refused_requesters (ori, since, by, note) VALUES (?1, ?2, ?3, ?4)",
            params![ori, now, by, note],
        )?;
    } else {
        conn.execute("DELETE FROM refused_requesters WHERE ori = ?1", [ori])?;
    }
    Ok(())
}
