//! The web console's people: one-time enrollment codes (`console_invites`), each person's
//! browser key and the certificate and code secret issued for it (`console_keys`), and
//! failed sign-ins (`console_failures`, for the lockout). The code secret is sealed at
//! rest like every other secret of an encrypted node.

use rusqlite::{Connection, OptionalExtension, params};

use super::Db;
use crate::Error;

const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS console_invites (
    user TEXT PRIMARY KEY,
    code_hash BLOB NOT NULL,
    expires_at INTEGER NOT NULL,
    invited_by TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS console_keys (
    user TEXT PRIMARY KEY,
    spki BLOB NOT NULL,
    requested_at INTEGER NOT NULL,
    approved_by TEXT,
    approved_at INTEGER,
    cert_pem TEXT,
    totp BLOB,
    totp_confirmed_at INTEGER
);
CREATE TABLE IF NOT EXISTS console_failures (user TEXT NOT NULL, at INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS console_failures_user ON console_failures (user, at);
"#;

const TOTP_PLACE: &str = "console_keys.totp";

/// Create the tables.
pub(super) fn init(conn: &Connection) -> Result<(), Error> {
    conn.execute_batch(SCHEMA)?;
    Ok(())
}

/// A person's browser key and what was issued for it.
#[derive(Clone, Debug)]
pub struct ConsoleKey {
    /// The account.
    pub user: String,
    /// The browser key's SubjectPublicKeyInfo (DER).
    pub spki: Vec<u8>,
    /// When the browser enrolled it.
    pub requested_at: i64,
    /// The supervisor who approved it.
    pub approved_by: Option<String>,
    /// When.
    pub approved_at: Option<i64>,
    /// The person certificate chain issued for the key (PEM).
    pub cert_pem: Option<String>,
    /// When the person first proved a code from the secret.
    pub totp_confirmed_at: Option<i64>,
}

/// Record a one-time enrollment code (its hash) for `user`, replacing an earlier one.
pub fn invite(
    db: &Db,
    user: &str,
    code_hash: &[u8],
    expires_at: i64,
    by: &str,
) -> Result<(), Error> {
    db.conn.execute(
        "INSERT OR REPLACE INTO console_invites (user, code_hash, expires_at, invited_by) VALUES (?1, ?2, ?3, ?4)",
        params![user, code_hash, expires_at, by],
    )?;
    Ok(())
}

/// Use `user`'s enrollment code: true (and the code is gone) when `code_hash` is the
/// code's and it has not expired.
pub fn take_invite(db: &Db, user: &str, code_hash: &[u8], now: i64) -> Result<bool, Error> {
    let n = db.conn.execute(
        "DELETE FROM console_invites WHERE user = ?1 AND code_hash = ?2 AND expires_at > ?3",
        params![user, code_hash, now],
    )?;
    Ok(n == 1)
}

/// Store `user`'s new browser key, awaiting approval (any earlier key and its
/// certificate and code are replaced: a new browser is a new enrollment).
pub fn put_key(db: &Db, user: &str, spki: &[u8], now: i64) -> Result<(), Error> {
    db.conn.execute(
        "INSERT OR REPLACE INTO console_keys (user, spki, requested_at) VALUES (?1, ?2, ?3)",
        params![user, spki, now],
    )?;
    Ok(())
}

fn key_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<ConsoleKey> {
    Ok(ConsoleKey {
        user: r.get(0)?,
        spki: r.get(1)?,
        requested_at: r.get(2)?,
        approved_by: r.get(3)?,
        approved_at: r.get(4)?,
        cert_pem: r.get(5)?,
        totp_confirmed_at: r.get(6)?,
    })
}

const KEY_COLUMNS: &str =
    "user, spki, requested_at, approved_by, approved_at, cert_pem, totp_confirmed_at";

/// `user`'s browser key, if one is enrolled.
pub fn get_key(db: &Db, user: &str) -> Result<Option<ConsoleKey>, Error> {
    Ok(db
        .conn
        .query_row(
            &format!("SELECT {KEY_COLUMNS} FROM console_keys WHERE user = ?1"),
            [user],
            key_row,
        )
        .optional()?)
}

/// Keys awaiting a supervisor's approval, oldest first.
pub fn pending_keys(db: &Db) -> Result<Vec<ConsoleKey>, Error> {
    let mut st = db.conn.prepare(&format!(
        "SELECT {KEY_COLUMNS} FROM console_keys WHERE approved_at IS NULL ORDER BY requested_at"
    ))?;
    let rows = st.query_map([], key_row)?;
    Ok(rows.collect::<Result<Vec<_>, _>>()?)
}

/// Approve `user`'s key: its certificate and its (sealed) code secret.
pub fn approve_key(
    db: &Db,
    user: &str,
    by: &str,
    now: i64,
    cert_pem: &str,
    totp_secret: &[u8],
) -> Result<(), Error> {
    let sealed = match db.keys.as_deref() {
        Some(k) => k.seal_field(TOTP_PLACE, user.as_bytes(), totp_secret)?,
        None => totp_secret.to_vec(),
    };
    db.conn.execute(
        "UPDATE console_keys SET approved_by = ?2, approved_at = ?3, cert_pem = ?4, totp = ?5, totp_confirmed_at = NULL WHERE user = ?1",
        params![user, by, now, cert_pem, sealed],
    )?;
    Ok(())
}

/// `user`'s code secret, if their key was approved.
pub fn totp_secret(db: &Db, user: &str) -> Result<Option<Vec<u8>>, Error> {
    let sealed: Option<Option<Vec<u8>>> = db
        .conn
        .query_row(
            "SELECT totp FROM console_keys WHERE user = ?1",
            [user],
            |r| r.get(0),
        )
        .optional()?;
    match (sealed.flatten(), db.keys.as_deref()) {
        (None, _) => Ok(None),
        (Some(s), Some(k)) => Ok(Some(k.open_field(TOTP_PLACE, user.as_bytes(), &s)?)),
        (Some(s), None) => Ok(Some(s)),
    }
}

/// The person proved a first code from their secret.
pub fn confirm_totp(db: &Db, user: &str, now: i64) -> Result<(), Error> {
    db.conn.execute(
        "UPDATE console_keys SET totp_confirmed_at = ?2 WHERE user = ?1",
        params![user, now],
    )?;
    Ok(())
}

/// Count a failed sign-in of `user`.
pub fn fail(db: &Db, user: &str, now: i64) -> Result<(), Error> {
    db.conn.execute(
        "INSERT INTO console_failures (user, at) VALUES (?1, ?2)",
        params![user, now],
    )?;
    Ok(())
}

/// `user`'s failed sign-ins since `since`: how many, and the latest.
pub fn failures_since(db: &Db, user: &str, since: i64) -> Result<(u32, Option<i64>), Error> {
    Ok(db.conn.query_row(
        "SELECT COUNT(*), MAX(at) FROM console_failures WHERE user = ?1 AND at > ?2",
        params![user, since],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?)
}

/// Forget `user`'s failed sign-ins (after a good one) and any older than `before`.
pub fn clear_failures(db: &Db, user: &str, before: i64) -> Result<(), Error> {
    db.conn.execute(
        "DELETE FROM console_failures WHERE user = ?1 OR at < ?2",
        params![user, before],
    )?;
    Ok(())
}
