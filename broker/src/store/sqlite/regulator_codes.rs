//! Regulators' sign-in code secrets for the regulator page, the last code step each used
//! (a code is good once, at whichever replica) and their failed attempts (for lockout).

use rusqlite::{Connection, OptionalExtension, params};

use crate::Error;
use crate::store::RegulatorCode;

pub(super) const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS regulator_codes (
    regulator TEXT PRIMARY KEY,
    secret BLOB NOT NULL,
    enrolled_at INTEGER NOT NULL,
    confirmed_at INTEGER,
    last_step INTEGER NOT NULL DEFAULT -1
);
CREATE TABLE IF NOT EXISTS regulator_failures (
    regulator TEXT NOT NULL,
    at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS regulator_failures_by ON regulator_failures (regulator, at);
"#;

/// Enroll `regulator`'s code secret; `false` (nothing changed) when one is enrolled and
/// `replace` is not set. A replaced secret must be set up again and forgets past failures.
pub fn enroll_regulator_code(
    conn: &Connection,
    regulator: &str,
    secret: &[u8],
    now: i64,
    replace: bool,
) -> Result<bool, Error> {
    let tx = conn.unchecked_transaction()?;
    let exists = tx
        .query_row(
            "SELECT 1 FROM regulator_codes WHERE regulator = ?1",
            [regulator],
            |_| Ok(()),
        )
        .optional()?
        .is_some();
    if exists && !replace {
        return Ok(false);
    }
    tx.execute(
        "INSERT INTO regulator_codes (regulator, secret, enrolled_at) VALUES (?1, ?2, ?3)
         ON CONFLICT (regulator) DO UPDATE SET secret = excluded.secret, enrolled_at = excluded.enrolled_at, confirmed_at = NULL, last_step = -1",
        params![regulator, secret, now],
    )?;
    tx.execute(
        "DELETE FROM regulator_failures WHERE regulator = ?1",
        [regulator],
    )?;
    tx.commit()?;
    Ok(true)
}

/// `regulator`'s enrolled code, if any.
pub fn regulator_code(conn: &Connection, regulator: &str) -> Result<Option<RegulatorCode>, Error> {
    Ok(conn
        .query_row(
            "SELECT regulator, secret, enrolled_at, confirmed_at FROM regulator_codes WHERE regulator = ?1",
            [regulator],
            |r| {
                Ok(RegulatorCode {
                    regulator: r.get(0)?,
                    secret: r.get(1)?,
                    enrolled_at: r.get(2)?,
                    confirmed_at: r.get(3)?,
                })
            },
        )
        .optional()?)
}

/// Every enrolled regulator (secrets left out), by name.
pub fn regulator_codes(conn: &Connection) -> Result<Vec<RegulatorCode>, Error> {
    let mut st = conn.prepare(
        "SELECT regulator, enrolled_at, confirmed_at FROM regulator_codes ORDER BY regulator",
    )?;
    let rows = st
        .query_map([], |r| {
            Ok(RegulatorCode {
                regulator: r.get(0)?,
                secret: Vec::new(),
                enrolled_at: r.get(1)?,
                confirmed_at: r.get(2)?,
            })
        })?
        .collect::<Result<_, _>>()?;
    Ok(rows)
}

/// Remove `regulator`'s code; `false` when none was enrolled.
pub fn remove_regulator_code(conn: &Connection, regulator: &str) -> Result<bool, Error> {
    conn.execute(
        "DELETE FROM regulator_failures WHERE regulator = ?1",
        [regulator],
    )?;
    Ok(conn.execute(
        "DELETE FROM regulator_codes WHERE regulator = ?1",
        [regulator],
    )? == 1)
}

/// Spend code step `step` of `regulator` (marking the code set up, the first time):
/// `false` when that step or a later one was spent already.
pub fn use_regulator_step(
    conn: &Connection,
    regulator: &str,
    step: u64,
    now: i64,
) -> Result<bool, Error> {
    Ok(conn.execute(
        "UPDATE regulator_codes SET last_step = ?2, confirmed_at = COALESCE(confirmed_at, ?3)
         WHERE regulator = ?1 AND last_step < ?2",
        params![regulator, step as i64, now],
    )? == 1)
}

/// Record a failed attempt of `regulator` at `at` (forgetting attempts a day older).
pub fn put_regulator_failure(conn: &Connection, regulator: &str, at: i64) -> Result<(), Error> {
    conn.execute(
        "DELETE FROM regulator_failures WHERE regulator = ?1 AND at < ?2",
        params![regulator, at - 86_400],
    )?;
    conn.execute(
        "INSERT INTO regulator_failures (regulator, at) VALUES (?1, ?2)",
        params![regulator, at],
    )?;
    Ok(())
}

/// `regulator`'s failed attempts at or after `since`: how many, and the latest.
pub fn regulator_failures_since(
    conn: &Connection,
    regulator: &str,
    since: i64,
) -> Result<(u32, Option<i64>), Error> {
    Ok(conn.query_row(
        "SELECT COUNT(*), MAX(at) FROM regulator_failures WHERE regulator = ?1 AND at >= ?2",
        params![regulator, since],
        |r| Ok((r.get::<_, i64>(0)? as u32, r.get(1)?)),
    )?)
}

/// Forget `regulator`'s failed attempts (after a sign-in).
pub fn clear_regulator_failures(conn: &Connection, regulator: &str) -> Result<(), Error> {
    conn.execute(
        "DELETE FROM regulator_failures WHERE regulator = ?1",
        [regulator],
    )?;
    Ok(())
}
