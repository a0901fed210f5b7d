//! The PostgreSQL home of a node's reads, for the largest agencies (one stores 320 million
//! images): table `reads` is natively partitioned by UTC capture day (`PARTITION BY RANGE
//! (captured_at)`, one partition `reads_<day>` per day, created at the first read of the
//! day), with one unique index on a read's identity, so an exact duplicate is stored once,
//! and a lookup is pruned to the days its window covers. Retention drops whole partitions.
//! Table `partitions` counts each day's reads in the transaction that stores them.
//!
//! Only the reads move: agreements, the registry copy, accounts, switches, holds, hot lists
//! and the audit log stay in `node.db` and `audit.db` beside the node, where the audit
//! log's durability is its own (`synchronous=FULL`). `node.db` records that its reads are
//! in PostgreSQL and the database records which agency's reads it holds, so a node started
//! without its PostgreSQL settings, or against another agency's database, refuses to start
//! rather than answer from an empty store. The node does not encrypt what it keeps here: a
//! node with a key-encryption key is refused a PostgreSQL read store (the server's disk
//! encryption and TLS are the operator's).
//!
//! The one place the node speaks PostgreSQL's SQL or names a `postgres` type.

use alpr_proto::pb::Read;
use alpr_runtime::pgpool::Pool;
use postgres::types::Type;

use crate::Error;
use crate::store::PlateKey;

/// Connections one node keeps open: lookups run in parallel on them (the writer is one).
const WORKERS: usize = 4;

/// Advisory lock serializing schema creation.
const SCHEMA_LOCK: i64 = 0x616c_7072_0000_0101;

/// Every connection plans its prepared lookups once, generically: a lookup's partitions
/// are then pruned when it runs, where planning it afresh for its own window (PostgreSQL's
/// default for the first executions, and whenever a generic plan looks costlier, which it
/// always does over many partitions) cost more than the lookup itself.
const SESSION: &str = "SET plan_cache_mode = force_generic_plan";

/// Seconds per day.
const DAY: i64 = 86_400;

const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS reads (
    plate TEXT NOT NULL,
    captured_at BIGINT NOT NULL,
    camera_id TEXT NOT NULL,
    latitude DOUBLE PRECISION NOT NULL,
    longitude DOUBLE PRECISION NOT NULL,
    plate_state TEXT NOT NULL DEFAULT ''
) PARTITION BY RANGE (captured_at);
CREATE UNIQUE INDEX IF NOT EXISTS reads_identity
    ON reads (plate, plate_state, captured_at, camera_id, latitude, longitude);
CREATE TABLE IF NOT EXISTS partitions (
    day BIGINT PRIMARY KEY,
    rows BIGINT NOT NULL DEFAULT 0,
    vacuumed BOOLEAN NOT NULL DEFAULT false
);
CREATE TABLE IF NOT EXISTS owner (ori TEXT NOT NULL);
"#;

impl From<postgres::Error> for Error {
    fn from(e: postgres::Error) -> Self {
        Error::Runtime(alpr_runtime::Error::Postgres(
            alpr_runtime::pgpool::message(&e),
        ))
    }
}

/// A node's reads in PostgreSQL: a pool of connections to one database.
#[derive(Debug)]
pub struct PgReads {
    pool: Pool,
    /// The database, as the operator named it (for status and errors).
    label: String,
}

fn table(day: i64) -> String {
    format!("\"reads_{day}\"")
}

fn read_of(r: &postgres::Row) -> Read {
    Read {
        plate: r.get(0),
        captured_at: r.get(1),
        camera_id: r.get(2),
        latitude: r.get(3),
        longitude: r.get(4),
        plate_state: r.get(5),
    }
}

const COLUMNS: &str = "plate, captured_at, camera_id, latitude, longitude, plate_state";

impl PgReads {
    /// Connect to the database of `url` (TLS with the server's CA `ca`), create the schema
    /// if it is not there, and claim it for agency `ori`: a database that holds another
    /// agency's reads is refused.
    pub fn open(url: &str, ca: Option<&std::path::Path>, ori: &str) -> Result<Self, Error> {
        let label = alpr_runtime::pgpool::describe(&alpr_runtime::pgpool::parse(url)?);
        let me = Self {
            pool: Pool::open_with(url, ca, WORKERS, "reads", SESSION)?,
            label,
        };
        let ori = ori.to_owned();
        let held_by = me.call(move |c| {
            let mut tx = c.transaction()?;
            tx.execute("SELECT pg_advisory_xact_lock($1)", &[&SCHEMA_LOCK])?;
            tx.batch_execute(SCHEMA)?;
            let owner: Option<String> = tx
                .query_opt("SELECT ori FROM owner LIMIT 1", &[])?
                .map(|r| r.get(0));
            if owner.is_none() {
                tx.execute("INSERT INTO owner (ori) VALUES ($1)", &[&ori])?;
            }
            tx.commit()?;
            Ok(owner.filter(|o| *o != ori))
        })?;
        if let Some(other) = held_by {
            return Err(Error::Usage(format!(
                "{} holds the reads of agency {other}, not this node's: give each node its own database",
                me.label
            )));
        }
        Ok(me)
    }

    /// Run `f` on one of the pool's connections and wait for its result.
    fn call<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut alpr_runtime::pgpool::Conn) -> Result<R, Error> + Send + 'static,
    ) -> Result<R, Error> {
        self.pool.call(f)
    }

    /// The database, for status lines and errors.
    pub fn label(&self) -> &str {
        &self.label
    }

    /// Store `reads` in one transaction, each in its capture day's partition (created if
    /// needed); an exact duplicate of a stored read is skipped. Returns how many were new.
    pub fn insert(&self, reads: &[Read]) -> Result<u64, Error> {
        let mut by_day: std::collections::BTreeMap<i64, Vec<&Read>> = Default::default();
        for r in reads {
            by_day
                .entry(r.captured_at.div_euclid(DAY))
                .or_default()
                .push(r);
        }
        // Columns, one array each, per day.
        type Columns = (
            Vec<String>,
            Vec<i64>,
            Vec<String>,
            Vec<f64>,
            Vec<f64>,
            Vec<String>,
        );
        let days: Vec<(i64, Columns)> = by_day
            .into_iter()
            .map(|(day, rows)| {
                let mut c: Columns = Default::default();
                for r in rows {
                    c.0.push(r.plate.clone());
                    c.1.push(r.captured_at);
                    c.2.push(r.camera_id.clone());
                    c.3.push(r.latitude);
                    c.4.push(r.longitude);
                    c.5.push(r.plate_state.clone());
                }
                (day, c)
            })
            .collect();
        self.call(move |c| {
            let mut tx = c.transaction()?;
            let mut stored = 0u64;
            for (day, cols) in &days {
                let fresh = tx.execute(
                    "INSERT INTO partitions (day) VALUES ($1) ON CONFLICT DO NOTHING",
                    &[day],
                )?;
                if fresh == 1 {
                    tx.batch_execute(&format!(
                        "CREATE TABLE IF NOT EXISTS {} PARTITION OF reads FOR VALUES FROM ({}) TO ({})",
                        table(*day),
                        day * DAY,
                        (day + 1) * DAY
                    ))?;
                }
                let new = tx.execute(
                    &format!(
                        "INSERT INTO reads ({COLUMNS})
                         SELECT * FROM unnest($1::text[], $2::int8[], $3::text[], $4::float8[], $5::float8[], $6::text[])
                         ON CONFLICT DO NOTHING"
                    ),
                    &[&cols.0, &cols.1, &cols.2, &cols.3, &cols.4, &cols.5],
                )?;
                tx.execute(
                    "UPDATE partitions SET rows = rows + $2 WHERE day = $1",
                    &[day, &(new as i64)],
                )?;
                stored += new;
            }
            tx.commit()?;
            Ok(stored)
        })
    }

    /// Day partitions that exist and their reads, oldest first.
    pub fn partitions(&self) -> Result<Vec<(i64, i64)>, Error> {
        self.call(|c| {
            Ok(
                c.query("SELECT day, rows FROM partitions ORDER BY day", &[])?
                    .iter()
                    .map(|r| (r.get(0), r.get(1)))
                    .collect(),
            )
        })
    }

    /// Bytes the reads take in the database: every day partition's table and indexes.
    pub fn size_bytes(&self) -> Result<u64, Error> {
        self.call(|c| {
            let bytes: i64 = c
                .query_one(
                    "SELECT COALESCE(SUM(pg_total_relation_size(inhrelid)), 0)::int8 FROM pg_inherits WHERE inhparent = 'reads'::regclass",
                    &[],
                )?
                .get(0);
            Ok(bytes.max(0) as u64)
        })
    }

    /// Reads stored.
    pub fn count(&self) -> Result<i64, Error> {
        self.call(|c| {
            Ok(
                c.query_one("SELECT COALESCE(SUM(rows), 0)::int8 FROM partitions", &[])?
                    .get(0),
            )
        })
    }

    /// Reads of one plate in `[start, end]`, oldest first, at most `limit`; only the days
    /// in the window are read (partition pruning on `captured_at`).
    pub fn lookup(
        &self,
        key: PlateKey<'_>,
        start: i64,
        end: i64,
        limit: usize,
    ) -> Result<Vec<Read>, Error> {
        self.select("=", key.plate.to_owned(), key, (start, end), limit)
    }

    /// Reads whose plate matches the wildcard `key.plate` (`?`: one unknown character) in
    /// `[start, end]`, oldest first, at most `limit`.
    pub fn lookup_pattern(
        &self,
        key: PlateKey<'_>,
        start: i64,
        end: i64,
        limit: usize,
    ) -> Result<Vec<Read>, Error> {
        // Normalized plates and patterns hold only A-Z, 0-9 and `?`, so LIKE's own `%`, `_`
        // and `\` cannot occur in them; a pattern that holds anything else is refused.
        if !key.plate.bytes().all(|b| {
            b.is_ascii_uppercase() || b.is_ascii_digit() || b == alpr_proto::input::WILDCARD as u8
        }) {
            return Err(Error::Usage(format!(
                "not a plate pattern: {:?}",
                key.plate
            )));
        }
        let pattern = key.plate.replace(alpr_proto::input::WILDCARD, "_");
        let found = self.select("LIKE", pattern, key, (start, end), limit)?;
        Ok(found
            .into_iter()
            .filter(|r| alpr_proto::input::matches_wildcard(key.plate, &r.plate))
            .collect())
    }

    /// Reads whose plate is `op` (`=` or `LIKE`) `plate`, of `key`'s state (or any), in the
    /// window, oldest first, at most `limit`.
    fn select(
        &self,
        op: &'static str,
        plate: String,
        key: PlateKey<'_>,
        (start, end): (i64, i64),
        limit: usize,
    ) -> Result<Vec<Read>, Error> {
        let (state, any) = (key.state.to_owned(), key.any_state());
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.call(move |c| {
            // One statement for each shape (any state or one), prepared once a connection.
            let state_test = if any { "$5 = $5" } else { "plate_state = $5" };
            let st = c.prepared(
                &format!(
                    "SELECT {COLUMNS} FROM reads
                     WHERE plate {op} $1 AND {state_test} AND captured_at BETWEEN $2 AND $3
                     ORDER BY captured_at LIMIT $4"
                ),
                &[Type::TEXT, Type::INT8, Type::INT8, Type::INT8, Type::TEXT],
            )?;
            let rows = c.query(&st, &[&plate, &start, &end, &limit, &state])?;
            Ok(rows.iter().map(read_of).collect())
        })
    }

    /// Every read of day `day` (unordered): what an export reads.
    pub fn day_reads(&self, day: i64) -> Result<Vec<Read>, Error> {
        self.call(move |c| {
            let present = c
                .query_opt("SELECT 1 FROM partitions WHERE day = $1", &[&day])?
                .is_some();
            if !present {
                return Ok(Vec::new());
            }
            Ok(
                c.query(&format!("SELECT {COLUMNS} FROM {}", table(day)), &[])?
                    .iter()
                    .map(read_of)
                    .collect(),
            )
        })
    }

    /// Reads of `plate` (any state) captured in `[start, end]` on day `day`: what an
    /// evidence hold keeps of a day about to be dropped.
    pub fn held_of_day(
        &self,
        day: i64,
        plate: &str,
        start: i64,
        end: i64,
    ) -> Result<Vec<Read>, Error> {
        let (from, to) = (start.max(day * DAY), end.min((day + 1) * DAY - 1));
        if from > to {
            return Ok(Vec::new());
        }
        let key = PlateKey {
            plate,
            state: alpr_proto::input::ANY_STATE,
        };
        self.lookup(key, from, to, i32::MAX as usize)
    }

    /// The days (and their reads) whose partitions lie wholly before day `first_kept`.
    pub fn days_before(&self, first_kept: i64) -> Result<Vec<(i64, i64)>, Error> {
        self.call(move |c| {
            Ok(c.query(
                "SELECT day, rows FROM partitions WHERE day < $1 ORDER BY day",
                &[&first_kept],
            )?
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect())
        })
    }

    /// Drop the partitions of `days` (retention: whole days, no row deletes), in one
    /// transaction.
    pub fn drop_days(&self, days: &[i64]) -> Result<(), Error> {
        let days = days.to_vec();
        self.call(move |c| {
            let mut tx = c.transaction()?;
            for day in &days {
                tx.batch_execute(&format!("DROP TABLE IF EXISTS {}", table(*day)))?;
                tx.execute("DELETE FROM partitions WHERE day = $1", &[day])?;
            }
            tx.commit()?;
            Ok(())
        })
    }

    /// Vacuum and analyze one closed day partition (a day before `now`'s, not yet done),
    /// the oldest: its rows become visible to index-only scans, so a lookup reads the
    /// identity index and not the table, and the planner has the day's statistics. What the
    /// node's hourly maintenance does for SQLite by rewriting the day
    /// ([`crate::store::compact_one_closed`]). Returns the day, if any.
    pub fn vacuum_one_closed(&self, now: i64) -> Result<Option<i64>, Error> {
        let today = now.div_euclid(DAY);
        self.call(move |c| {
            let day: Option<i64> = c
                .query_opt(
                    "SELECT day FROM partitions WHERE day < $1 AND NOT vacuumed ORDER BY day LIMIT 1",
                    &[&today],
                )?
                .map(|r| r.get(0));
            let Some(day) = day else {
                return Ok(None);
            };
            // VACUUM runs outside a transaction.
            c.batch_execute(&format!("VACUUM (ANALYZE) {}", table(day)))?;
            c.execute("UPDATE partitions SET vacuumed = true WHERE day = $1", &[&day])?;
            Ok(Some(day))
        })
    }

    /// Drop every read, partition and the owner mark: what decommissioning leaves.
    pub fn destroy(&self) -> Result<u64, Error> {
        let days: Vec<i64> = self.partitions()?.into_iter().map(|(d, _)| d).collect();
        let n = days.len() as u64;
        self.drop_days(&days)?;
        self.call(|c| {
            c.batch_execute("DELETE FROM owner")?;
            Ok(())
        })?;
        Ok(n)
    }
}

#[cfg(test)]
mod tests;
