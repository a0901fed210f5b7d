//! Regulators' sign-in code secrets on PostgreSQL: shared by every replica, so a code step
//! spent at one replica is spent at all, and failed attempts count towards one lockout.

use crate::Error;
use crate::store::RegulatorCode;

use super::Pg;

/// See the SQLite backend's `enroll_regulator_code`.
pub fn enroll_regulator_code(
    pg: &Pg,
    regulator: &str,
    secret: &[u8],
    now: i64,
    replace: bool,
) -> Result<bool, Error> {
    let (regulator, secret) = (regulator.to_owned(), secret.to_vec());
    pg.call(move |c| {
        let mut tx = c.transaction()?;
        let stored = if replace {
            tx.execute(
                "INSERT INTO regulator_codes (regulator, secret, enrolled_at) VALUES ($1, $2, $3)
                 ON CONFLICT (regulator) DO UPDATE SET secret = EXCLUDED.secret, enrolled_at = EXCLUDED.enrolled_at, confirmed_at = NULL, last_step = -1",
                &[&regulator, &secret, &now],
            )?
        } else {
            tx.execute(
                "INSERT INTO regulator_codes (regulator, secret, enrolled_at) VALUES ($1, $2, $3)
                 ON CONFLICT (regulator) DO NOTHING",
                &[&regulator, &secret, &now],
            )?
        };
        if stored == 0 {
            return Ok(false);
        }
        tx.execute(
            "DELETE FROM regulator_failures WHERE regulator = $1",
            &[&regulator],
        )?;
        tx.commit()?;
        Ok(true)
    })
}

fn code(r: &postgres::Row, with_secret: bool) -> RegulatorCode {
    RegulatorCode {
        regulator: r.get(0),
        secret: if with_secret { r.get(3) } else { Vec::new() },
        enrolled_at: r.get(1),
        confirmed_at: r.get(2),
    }
}

/// `regulator`'s enrolled code, if any.
pub fn regulator_code(pg: &Pg, regulator: &str) -> Result<Option<RegulatorCode>, Error> {
    let regulator = regulator.to_owned();
    pg.call(move |c| {
        Ok(c.query_opt(
            "SELECT regulator, enrolled_at, confirmed_at, secret FROM regulator_codes WHERE regulator = $1",
            &[&regulator],
        )?
        .map(|r| code(&r, true)))
    })
}

/// Every enrolled regulator (secrets left out), by name.
pub fn regulator_codes(pg: &Pg) -> Result<Vec<RegulatorCode>, Error> {
    pg.call(|c| {
        Ok(c.query(
            "SELECT regulator, enrolled_at, confirmed_at FROM regulator_codes ORDER BY regulator",
            &[],
        )?
        .iter()
        .map(|r| code(r, false))
        .collect())
    })
}

/// Remove `regulator`'s code; `false` when none was enrolled.
pub fn remove_regulator_code(pg: &Pg, regulator: &str) -> Result<bool, Error> {
    let regulator = regulator.to_owned();
    pg.call(move |c| {
        let mut tx = c.transaction()?;
        tx.execute(
            "DELETE FROM regulator_failures WHERE regulator = $1",
            &[&regulator],
        )?;
        let n = tx.execute(
            "DELETE FROM regulator_codes WHERE regulator = $1",
            &[&regulator],
        )?;
        tx.commit()?;
        Ok(n == 1)
    })
}

/// Spend code step `step` of `regulator` (one statement: of two replicas spending the same
/// step, one wins).
pub fn use_regulator_step(pg: &Pg, regulator: &str, step: u64, now: i64) -> Result<bool, Error> {
    let regulator = regulator.to_owned();
    pg.call(move |c| {
        Ok(c.execute(
            "UPDATE regulator_codes SET last_step = $2, confirmed_at = COALESCE(confirmed_at, $3)
             WHERE regulator = $1 AND last_step < $2",
            &[&regulator, &(step as i64), &now],
        )? == 1)
    })
}

/// Record a failed attempt of `regulator` at `at` (forgetting attempts a day older).
pub fn put_regulator_failure(pg: &Pg, regulator: &str, at: i64) -> Result<(), Error> {
    let regulator = regulator.to_owned();
    pg.call(move |c| {
        let mut tx = c.transaction()?;
        tx.execute(
            "DELETE FROM regulator_failures WHERE regulator = $1 AND at < $2",
            &[&regulator, &(at - 86_400)],
        )?;
        tx.execute(
            "INSERT INTO regulator_failures (regulator, at) VALUES ($1, $2)",
            &[&regulator, &at],
        )?;
        tx.commit()?;
        Ok(())
    })
}

/// `regulator`'s failed attempts at or after `since`: how many, and the latest.
pub fn regulator_failures_since(
    pg: &Pg,
    regulator: &str,
    since: i64,
) -> Result<(u32, Option<i64>), Error> {
    let regulator = regulator.to_owned();
    pg.call(move |c| {
        let r = c.query_one(
            "SELECT COUNT(*), MAX(at) FROM regulator_failures WHERE regulator = $1 AND at >= $2",
            &[&regulator, &since],
        )?;
        Ok((r.get::<_, i64>(0) as u32, r.get(1)))
    })
}

/// Forget `regulator`'s failed attempts (after a sign-in).
pub fn clear_regulator_failures(pg: &Pg, regulator: &str) -> Result<(), Error> {
    let regulator = regulator.to_owned();
    pg.call(move |c| {
        c.execute(
            "DELETE FROM regulator_failures WHERE regulator = $1",
            &[&regulator],
        )?;
        Ok(())
    })
}
