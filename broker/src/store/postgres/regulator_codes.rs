//! Regulators' sign-in codes on PostgreSQL: shared by every replica, so a code step or a
//! sign-in token spent at one replica is spent at all, and failed attempts count towards
//! one lockout. The same operations as the SQLite backend's `regulator_codes`.

use crate::Error;
use crate::store::RegulatorCode;

use super::Pg;

/// See the SQLite backend's `enroll_regulator_code`.
pub fn enroll_regulator_code(
    pg: &Pg,
    regulator: &str,
    now: i64,
    replace: bool,
) -> Result<bool, Error> {
    let regulator = regulator.to_owned();
    pg.call(move |c| {
        let mut tx = c.transaction()?;
        let stored = if replace {
            tx.execute(
                "INSERT INTO regulator_codes (regulator, secret, enrolled_at) VALUES ($1, '', $2)
                 ON CONFLICT (regulator) DO UPDATE SET secret = '', enrolled_at = EXCLUDED.enrolled_at,
                   generation = regulator_codes.generation + 1, confirmed_at = NULL, last_step = -1",
                &[&regulator, &now],
            )?
        } else {
            tx.execute(
                "INSERT INTO regulator_codes (regulator, secret, enrolled_at) VALUES ($1, '', $2)
                 ON CONFLICT (regulator) DO NOTHING",
                &[&regulator, &now],
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

fn code(r: &postgres::Row) -> RegulatorCode {
    RegulatorCode {
        regulator: r.get(0),
        secret: r.get(1),
        enrolled_at: r.get(2),
        generation: r.get(3),
        confirmed_at: r.get(4),
    }
}

/// `regulator`'s enrolled code, if any.
pub fn regulator_code(pg: &Pg, regulator: &str) -> Result<Option<RegulatorCode>, Error> {
    let regulator = regulator.to_owned();
    pg.call(move |c| {
        Ok(c.query_opt(
            "SELECT regulator, secret, enrolled_at, generation, confirmed_at FROM regulator_codes WHERE regulator = $1",
            &[&regulator],
        )?
        .as_ref()
        .map(code))
    })
}

/// Every enrolled regulator (secrets left out), by name.
pub fn regulator_codes(pg: &Pg) -> Result<Vec<RegulatorCode>, Error> {
    pg.call(|c| {
        Ok(c.query(
            "SELECT regulator, ''::bytea, enrolled_at, generation, confirmed_at FROM regulator_codes ORDER BY regulator",
            &[],
        )?
        .iter()
        .map(code)
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

/// See the SQLite backend's `confirm_regulator_code` (one statement: of two replicas
/// setting up at once, one wins).
pub fn confirm_regulator_code(
    pg: &Pg,
    regulator: &str,
    generation: i64,
    secret: &[u8],
    step: u64,
    now: i64,
) -> Result<bool, Error> {
    let (regulator, secret) = (regulator.to_owned(), secret.to_vec());
    pg.call(move |c| {
        Ok(c.execute(
            "UPDATE regulator_codes SET secret = $3, last_step = $4, confirmed_at = $5
             WHERE regulator = $1 AND generation = $2 AND confirmed_at IS NULL",
            &[&regulator, &generation, &secret, &(step as i64), &now],
        )? == 1)
    })
}

/// See the SQLite backend's `use_regulator_step`.
pub fn use_regulator_step(pg: &Pg, regulator: &str, step: u64) -> Result<bool, Error> {
    let regulator = regulator.to_owned();
    pg.call(move |c| {
        Ok(c.execute(
            "UPDATE regulator_codes SET last_step = $2
             WHERE regulator = $1 AND confirmed_at IS NOT NULL AND last_step < $2",
            &[&regulator, &(step as i64)],
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

/// How many failed attempts `regulator` made at or after `since`.
pub fn regulator_failures_since(pg: &Pg, regulator: &str, since: i64) -> Result<u32, Error> {
    let regulator = regulator.to_owned();
    pg.call(move |c| {
        let r = c.query_one(
            "SELECT COUNT(*) FROM regulator_failures WHERE regulator = $1 AND at >= $2",
            &[&regulator, &since],
        )?;
        Ok(r.get::<_, i64>(0) as u32)
    })
}

/// The times of `regulator`'s newest `limit` failed attempts, newest first.
pub fn regulator_failure_times(pg: &Pg, regulator: &str, limit: u32) -> Result<Vec<i64>, Error> {
    let regulator = regulator.to_owned();
    pg.call(move |c| {
        Ok(c.query(
            "SELECT at FROM regulator_failures WHERE regulator = $1 ORDER BY at DESC LIMIT $2",
            &[&regulator, &i64::from(limit)],
        )?
        .iter()
        .map(|r| r.get(0))
        .collect())
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

/// See the SQLite backend's `spend_signin_token`.
pub fn spend_signin_token(pg: &Pg, digest: &[u8], until: i64, now: i64) -> Result<bool, Error> {
    let digest = digest.to_vec();
    pg.call(move |c| {
        let mut tx = c.transaction()?;
        tx.execute("DELETE FROM regulator_tokens WHERE until < $1", &[&now])?;
        let n = tx.execute(
            "INSERT INTO regulator_tokens (digest, until) VALUES ($1, $2) ON CONFLICT (digest) DO NOTHING",
            &[&digest, &until],
        )?;
        tx.commit()?;
        Ok(n == 1)
    })
}
