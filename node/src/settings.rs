//! The node's runtime switches: sharing on/off, refuse-all, refused requesters.
//!
//! They live in the database (not the config file) so that only an admin's
//! authenticated, logged command changes them, and a running node sees the change at once.

use alpr_runtime::vocabulary;
use rusqlite::{Connection, params};

use crate::Error;

vocabulary! {
    /// A switch an admin sets (the `name` of a `SetSwitch` command).
    Switch {
        /// Refuse every inbound query while on.
        RefuseAll = "refuse_all",
        /// Refuse (on) or stop refusing (off) one requesting agency.
        RefuseRequester = "refuse_requester",
        /// Answer inbound queries at all.
        Sharing = "sharing",
    }
}

vocabulary! {
    /// A boolean setting as stored in the `settings` table.
    Flag {
        /// Refuse every inbound query.
        RefuseAll = "refuse_all",
        /// Answer inbound queries at all.
        SharingEnabled = "sharing_enabled",
    }
}

const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS settings (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS refused_requesters (ori TEXT PRIMARY KEY, since INTEGER NOT NULL, by TEXT NOT NULL, note TEXT NOT NULL);
"#;

/// The switches in force.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Switches {
    /// Answer inbound queries at all (a new node is closed).
    pub sharing_enabled: bool,
    /// Refuse every inbound query.
    pub refuse_all: bool,
    /// ORIs whose queries are refused.
    pub refused_requesters: Vec<String>,
}

/// Create the tables.
pub fn init(conn: &Connection) -> Result<(), Error> {
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
pub fn load(conn: &Connection) -> Result<Switches, Error> {
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
pub fn set_flag(conn: &Connection, key: Flag, on: bool) -> Result<(), Error> {
    conn.execute(
        "INSERT INTO settings (key, value) VALUES (?1, ?2) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
        params![key.as_str(), if on { "1" } else { "0" }],
    )?;
    Ok(())
}

/// Add or remove a refused requester.
pub fn set_refused(
    conn: &Connection,
    ori: &str,
    refused: bool,
    by: &str,
    note: &str,
    now: i64,
) -> Result<(), Error> {
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
