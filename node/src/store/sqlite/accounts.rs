//! Accounts, in the `accounts` table.

use rusqlite::{Connection, OptionalExtension, params};

use super::Db;
use crate::Error;
use crate::store::Account;

const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS accounts (
    user TEXT PRIMARY KEY,
    role TEXT NOT NULL,
    added_by TEXT NOT NULL,
    added_at INTEGER NOT NULL,
    approved_by TEXT,
    approved_at INTEGER,
    trained_at INTEGER,
    disabled_at INTEGER,
    disabled_reason TEXT,
    last_active_at INTEGER
);
"#;

/// Create the table.
pub(super) fn init(conn: &Connection) -> Result<(), Error> {
    conn.execute_batch(SCHEMA)?;
    Ok(())
}

/// Read an account.
pub fn get(db: &Db, user: &str) -> Result<Option<Account>, Error> {
    Ok(db
        .conn
        .prepare_cached(
            "SELECT user, role, approved_by, approved_at, trained_at, disabled_at, last_active_at FROM accounts WHERE user = ?1",
        )?
        .query_row(
            [user],
            |r| {
                Ok(Account {
                    user: r.get(0)?,
                    role: r.get(1)?,
                    approved_by: r.get(2)?,
                    approved_at: r.get(3)?,
                    trained_at: r.get(4)?,
                    disabled_at: r.get(5)?,
                    last_active_at: r.get(6)?,
                })
            },
        )
        .optional()?)
}

/// Every account.
pub fn list(db: &Db) -> Result<Vec<Account>, Error> {
    let mut st = db.conn.prepare("SELECT user FROM accounts ORDER BY user")?;
    let users = st
        .query_map([], |r| r.get::<_, String>(0))?
        .collect::<Result<Vec<_>, _>>()?;
    users
        .iter()
        .filter_map(|u| get(db, u).transpose())
        .collect()
}

/// Add an account, awaiting approval and training.
pub fn insert(db: &Db, user: &str, role: &str, added_by: &str, now: i64) -> Result<(), Error> {
    db.conn.execute(
        "INSERT INTO accounts (user, role, added_by, added_at) VALUES (?1, ?2, ?3, ?4)",
        params![user, role, added_by, now],
    )?;
    Ok(())
}

/// Record a supervisor's approval (which also counts as activity).
pub fn approve(db: &Db, user: &str, by: &str, now: i64) -> Result<(), Error> {
    db.conn.execute(
        "UPDATE accounts SET approved_by = ?2, approved_at = ?3, last_active_at = ?3 WHERE user = ?1",
        params![user, by, now],
    )?;
    Ok(())
}

/// Record training.
pub fn set_trained(db: &Db, user: &str, trained_at: i64) -> Result<(), Error> {
    db.conn.execute(
        "UPDATE accounts SET trained_at = ?2 WHERE user = ?1",
        params![user, trained_at],
    )?;
    Ok(())
}

/// Disable an account for good (a disabled account stays disabled).
pub fn disable(db: &Db, user: &str, now: i64, reason: &str) -> Result<(), Error> {
    db.conn.execute(
        "UPDATE accounts SET disabled_at = ?2, disabled_reason = ?3 WHERE user = ?1 AND disabled_at IS NULL",
        params![user, now, reason],
    )?;
    Ok(())
}

/// Record a search at `now`.
pub fn set_last_active(db: &Db, user: &str, now: i64) -> Result<(), Error> {
    db.conn
        .prepare_cached("UPDATE accounts SET last_active_at = ?2 WHERE user = ?1")?
        .execute(params![user, now])?;
    Ok(())
}
