//! Regulators' sign-in codes for the regulator page: each enrolled regulator's TOTP
//! secret (empty until they set it up), the last code step each spent (a code is good
//! once, at whichever replica), their failed attempts (for lockout) and the sign-in tokens
//! already used.

use rusqlite::{Connection, OptionalExtension, params};

use crate::Error;
use crate::store::RegulatorCode;

pub(super) const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS regulator_codes (
    regulator TEXT PRIMARY KEY,
    secret BLOB NOT NULL,
    enrolled_at INTEGER NOT NULL,
    generation INTEGER NOT NULL DEFAULT 1,
    confirmed_at INTEGER,
    last_step INTEGER NOT NULL DEFAULT -1
);
CREATE TABLE IF NOT EXISTS regulator_failures (
    regulator TEXT NOT NULL,
    at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS regulator_failures_by ON regulator_failures (regulator, at);
CREATE TABLE IF NOT EXISTS regulator_tokens (
    digest BLOB PRIMARY KEY,
    until INTEGER NOT NULL
);
"#;

/// Enroll `regulator` (not set up yet); `false` (nothing changed) when one is enrolled
/// and `replace` is not set. A replacement is a new generation, to be set up again, and
/// forgets past failures.
pub fn enroll_regulator_code(
    conn: &Connection,
    regulator: &str,
    now: i64,
    replace: bool,
) -> Result<bool, Error> {
    let tx = conn.unchecked_transaction()?;
    let stored = if replace {
        tx.execute(
            "INSERT INTO regulator_codes (regulator, secret, enrolled_at) VALUES (?1, x'', ?2)
             ON CONFLICT (regulator) DO UPDATE SET secret = x'', enrolled_at = excluded.enrolled_at,
               generation = regulator_codes.generation + 1, confirmed_at = NULL, last_step = -1",
            params![regulator, now],
        )?
    } else {
        tx.execute(
            "INSERT INTO regulator_codes (regulator, secret, enrolled_at) VALUES (?1, x'', ?2)
             ON CONFLICT (regulator) DO NOTHING",
            params![regulator, now],
        )?
    };
    if stored == 0 {
        return Ok(false);
    }
    tx.execute(
        "DELETE FROM regulator_failures WHERE regulator = ?1",
        [regulator],
    )?;
    tx.commit()?;
    Ok(true)
}

fn code(r: &rusqlite::Row<'_>) -> rusqlite::Result<RegulatorCode> {
    Ok(RegulatorCode {
        regulator: r.get(0)?,
        secret: r.get(1)?,
        enrolled_at: r.get(2)?,
        generation: r.get(3)?,
        confirmed_at: r.get(4)?,
    })
}

/// `regulator`'s enrolled code, if any.
pub fn regulator_code(conn: &Connection, regulator: &str) -> Result<Option<RegulatorCode>, Error> {
    Ok(conn
        .query_row(
            "SELECT regulator, secret, enrolled_at, generation, confirmed_at FROM regulator_codes WHERE regulator = ?1",
            [regulator],
            code,
        )
        .optional()?)
}

/// Every enrolled regulator (secrets left out), by name.
pub fn regulator_codes(conn: &Connection) -> Result<Vec<RegulatorCode>, Error> {
    let mut st = conn.prepare(
        "SELECT regulator, x'', enrolled_at, generation, confirmed_at FROM regulator_codes ORDER BY regulator",
    )?;
    let rows = st.query_map([], code)?.collect::<Result<_, _>>()?;
    Ok(rows)
}

/// Remove `regulator`'s code; `false` when none was enrolled.
pub fn remove_regulator_code(conn: &Connection, regulator: &str) -> Result<bool, Error> {
    let tx = conn.unchecked_transaction()?;
    tx.execute(
        "DELETE FROM regulator_failures WHERE regulator = ?1",
        [regulator],
    )?;
    let n = tx.execute(
        "DELETE FROM regulator_codes WHERE regulator = ?1",
        [regulator],
    )?;
    tx.commit()?;
    Ok(n == 1)
}

/// Set up `regulator`'s code with `secret`, spending its first step: only while the
/// enrollment of `generation` is not set up yet (`false` otherwise: replaced, removed or
/// set up meanwhile).
pub fn confirm_regulator_code(
    conn: &Connection,
    regulator: &str,
    generation: i64,
    secret: &[u8],
    step: u64,
    now: i64,
) -> Result<bool, Error> {
    Ok(conn.execute(
        "UPDATE regulator_codes SET secret = ?3, last_step = ?4, confirmed_at = ?5
         WHERE regulator = ?1 AND generation = ?2 AND confirmed_at IS NULL",
        params![regulator, generation, secret, step as i64, now],
    )? == 1)
}

/// Spend code step `step` of `regulator`'s set-up code: `false` when that step or a later
/// one was spent already (or there is no set-up code).
pub fn use_regulator_step(conn: &Connection, regulator: &str, step: u64) -> Result<bool, Error> {
    Ok(conn.execute(
        "UPDATE regulator_codes SET last_step = ?2
         WHERE regulator = ?1 AND confirmed_at IS NOT NULL AND last_step < ?2",
        params![regulator, step as i64],
    )? == 1)
}

/// Record a failed attempt of `regulator` at `at` (forgetting attempts a day older).
pub fn put_regulator_failure(conn: &Connection, regulator: &str, at: i64) -> Result<(), Error> {
    let tx = conn.unchecked_transaction()?;
    tx.execute(
        "DELETE FROM regulator_failures WHERE regulator = ?1 AND at < ?2",
        params![regulator, at - 86_400],
    )?;
    tx.execute(
        "INSERT INTO regulator_failures (regulator, at) VALUES (?1, ?2)",
        params![regulator, at],
    )?;
    tx.commit()?;
    Ok(())
}

/// How many failed attempts `regulator` made at or after `since`.
pub fn regulator_failures_since(
    conn: &Connection,
    regulator: &str,
    since: i64,
) -> Result<u32, Error> {
    Ok(conn.query_row(
        "SELECT COUNT(*) FROM regulator_failures WHERE regulator = ?1 AND at >= ?2",
        params![regulator, since],
        |r| Ok(r.get::<_, i64>(0)? as u32),
    )?)
}

/// The times of `regulator`'s newest `limit` failed attempts, newest first.
pub fn regulator_failure_times(
    conn: &Connection,
    regulator: &str,
    limit: u32,
) -> Result<Vec<i64>, Error> {
    let mut st = conn.prepare(
        "SELECT at FROM regulator_failures WHERE regulator = ?1 ORDER BY at DESC LIMIT ?2",
    )?;
    let rows = st
        .query_map(params![regulator, limit], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    Ok(rows)
}

/// Forget `regulator`'s failed attempts (after a sign-in).
pub fn clear_regulator_failures(conn: &Connection, regulator: &str) -> Result<(), Error> {
    conn.execute(
        "DELETE FROM regulator_failures WHERE regulator = ?1",
        [regulator],
    )?;
    Ok(())
}

/// Spend a sign-in token (by its digest), remembered until `until`: `false` when it was
/// spent already.
pub fn spend_signin_token(
    conn: &Connection,
    digest: &[u8],
    until: i64,
    now: i64,
) -> Result<bool, Error> {
    let tx = conn.unchecked_transaction()?;
    tx.execute("DELETE FROM regulator_tokens WHERE until < ?1", [now])?;
    let n = tx.execute(
        "INSERT INTO regulator_tokens (digest, until) VALUES (?1, ?2) ON CONFLICT (digest) DO NOTHING",
        params![digest, until],
    )?;
    tx.commit()?;
    Ok(n == 1)
}
