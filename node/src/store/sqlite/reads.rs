//! Reads, partitioned by UTC capture day: one table `reads_<day>` per day, each with
//! its own unique covering index on the read's identity. B-trees stay small, a lookup
//! touches only the days its window covers, and retention drops whole tables instead of
//! deleting rows.
//!
//! In an encrypted database a partition is one table keyed by an integer row key: the
//! read's blind plate index for that day (its bucket) in the high bits and a slot in the low
//! ones, with the sealed read (salt, ciphertext, tag) its only other column
//! ([`super::super::encryption`]). A lookup reads its plate's bucket, a range of row keys
//! that sits in one leaf page, opens the rows, and checks plate, state and time in memory.
//! An integer key keeps the B-tree's interior pages small (about 300 children a page, where
//! a key of blobs gave fewer than 40), so they stay cached and a lookup that misses the
//! cache costs one disk read per day.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use alpr_proto::pb::Read;
use rusqlite::{Connection, OptionalExtension, params};

use super::Db;
use crate::Error;
use crate::store::PlateKey;
use crate::store::encryption::{DataKeys, ReadSpot, SLOT_MASK, bucket_keys, row_key};
use crate::store::postgres::PgReads;

/// The table recording that this file's reads are kept in PostgreSQL (one row), and which
/// database it named when it was first opened so.
const READS_LOCATION: &str =
    "CREATE TABLE IF NOT EXISTS reads_location (kind TEXT NOT NULL, detail TEXT NOT NULL);";

/// Check where the reads of the file at `path` are against where they are being opened
/// (`pg`, or the file itself), and record PostgreSQL the first time it is used: a file
/// whose reads are in PostgreSQL is refused without it, and one that holds reads of its
/// own is refused with it.
pub(super) fn place_reads(db: &Db, pg: Option<&PgReads>, path: &Path) -> Result<(), Error> {
    let conn = &db.conn;
    conn.execute_batch(READS_LOCATION)?;
    let recorded: Option<String> = conn
        .query_row("SELECT detail FROM reads_location LIMIT 1", [], |r| {
            r.get(0)
        })
        .optional()?;
    let file = path.display();
    match (recorded, pg) {
        (None, None) | (Some(_), Some(_)) => Ok(()),
        (Some(db), None) => Err(Error::Usage(format!(
            "{file} keeps its reads in PostgreSQL ({db}): configure [storage] postgres to open it"
        ))),
        (None, Some(pg)) => {
            // `db` is not yet attached to `pg`: this counts the file's own reads.
            let own = count_reads(db)?;
            if own > 0 {
                return Err(Error::Usage(format!(
                    "{file} holds {own} reads of its own; a node does not move them to PostgreSQL in place: export them (decommission --export) and ingest them into a node started on PostgreSQL"
                )));
            }
            conn.execute(
                "INSERT INTO reads_location (kind, detail) VALUES ('postgres', ?1)",
                [pg.label()],
            )?;
            Ok(())
        }
    }
}

/// The covering index of a day partition: one plate's reads of a day, by issuing state,
/// sit together in one or two index pages and a lookup never visits the table. It is
/// unique: it is also a read's identity (plate, issuing state, capture time, camera and
/// position), so an exact duplicate read — the same file ingested twice, or an ingest
/// run again after it was stopped — is stored once.
pub(super) fn partition_index(t: &str) -> String {
    format!(
        "CREATE UNIQUE INDEX IF NOT EXISTS {t}_read_identity ON {t} (plate, plate_state, captured_at, camera_id, latitude, longitude);"
    )
}

/// Seconds per day.
const DAY: i64 = 86_400;

pub(super) fn table(day: i64) -> String {
    format!("reads_{day}")
}

/// The columns of an encrypted day partition: row key (bucket and slot) and sealed read.
pub(super) const SEALED_COLUMNS: &str = "k INTEGER PRIMARY KEY, sealed BLOB NOT NULL";

/// Create a day's partition if needed: plain, with its covering index
/// ([`partition_index`]), or encrypted.
fn ensure_partition(
    tx: &rusqlite::Transaction<'_>,
    day: i64,
    encrypted: bool,
) -> Result<(), Error> {
    let t = table(day);
    if encrypted {
        tx.execute_batch(&format!(
            "CREATE TABLE IF NOT EXISTS {t} ({SEALED_COLUMNS});"
        ))?;
    } else {
        tx.execute_batch(&format!(
            "CREATE TABLE IF NOT EXISTS {t} (plate TEXT NOT NULL, captured_at INTEGER NOT NULL, camera_id TEXT NOT NULL, latitude REAL NOT NULL, longitude REAL NOT NULL, plate_state TEXT NOT NULL DEFAULT '');
             {}",
            partition_index(&t)
        ))?;
    }
    tx.execute("INSERT OR IGNORE INTO partitions (day) VALUES (?1)", [day])?;
    Ok(())
}

/// Insert reads in one transaction, each into its capture day's partition; a read already
/// stored (same identity, see [`partition_index`]) is skipped. Reads must already be
/// validated. Returns how many were new.
pub fn insert_reads(db: &mut Db, reads: &[Read]) -> Result<u64, Error> {
    if let Some(pg) = &db.pg {
        return pg.insert(reads);
    }
    let tx = db.conn.transaction()?;
    let mut by_day: std::collections::BTreeMap<i64, Vec<&Read>> = std::collections::BTreeMap::new();
    for r in reads {
        by_day
            .entry(r.captured_at.div_euclid(DAY))
            .or_default()
            .push(r);
    }
    let mut stored = 0u64;
    for (day, rows) in by_day {
        ensure_partition(&tx, day, db.keys.is_some())?;
        let mut new = 0i64;
        if let Some(keys) = &db.keys {
            // Sealed first and inserted in key order: each insert lands next to the last
            // one in the partition's B-tree instead of at a random page.
            let mut spots: Vec<_> = rows.iter().map(|r| keys.read_spot(day, r)).collect();
            spots.sort_unstable_by_key(ReadSpot::first_key);
            for spot in &spots {
                new += insert_sealed(&tx, &table(day), keys, day, spot)?;
            }
        } else {
            let mut st = tx.prepare_cached(&format!(
                "INSERT OR IGNORE INTO {} (plate, captured_at, camera_id, latitude, longitude, plate_state) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                table(day)
            ))?;
            for r in &rows {
                new += st.execute(params![
                    r.plate,
                    r.captured_at,
                    r.camera_id,
                    r.latitude,
                    r.longitude,
                    r.plate_state
                ])? as i64;
            }
        }
        tx.execute(
            "UPDATE partitions SET rows = rows + ?2 WHERE day = ?1",
            params![day, new],
        )?;
        stored += new as u64;
    }
    tx.commit()?;
    Ok(stored)
}

/// Seal and store one read in partition `t` (of `day`) at the first free slot of its
/// bucket from its first slot on, unless the read is already there: an exact duplicate
/// seals to the same bytes at the same key. Returns 1 if stored.
fn insert_sealed(
    tx: &Connection,
    t: &str,
    keys: &DataKeys,
    day: i64,
    spot: &ReadSpot,
) -> Result<i64, Error> {
    let mut insert = tx.prepare_cached(&format!(
        "INSERT OR IGNORE INTO {t} (k, sealed) VALUES (?1, ?2)"
    ))?;
    for slot in (spot.first_slot..).take(SLOT_MASK as usize + 1) {
        let k = row_key(spot.bucket, slot);
        let sealed = keys.seal_read_at(day, spot, k);
        if insert.execute(params![k, &sealed])? == 1 {
            return Ok(1);
        }
        let taken: Vec<u8> = tx
            .prepare_cached(&format!("SELECT sealed FROM {t} WHERE k = ?1"))?
            .query_row([k], |r| r.get(0))?;
        if taken == sealed {
            return Ok(0);
        }
    }
    Err(Error::Corrupt {
        what: format!("partition {t}"),
        detail: "a blind-index bucket has no free slot left".into(),
    })
}

/// Move the reads of encrypted partitions written by schema version 2 (`(tag, id)` blob
/// keys) to the current row keys, each day in place, in one transaction: every row is
/// opened with the version-2 layout's associated data and sealed again. Runs whenever an
/// encrypted database is opened with its keys (one schema query when nothing is left to
/// move), so a move interrupted part way is finished at the next open.
pub(super) fn move_to_row_keys(conn: &Connection, keys: &DataKeys) -> Result<(), Error> {
    let pending: bool = conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM sqlite_schema WHERE type = 'table' AND name GLOB 'reads_*' AND sql GLOB '*tag BLOB*')",
        [],
        |r| r.get(0),
    )?;
    if !pending {
        return Ok(());
    }
    let tx = conn.unchecked_transaction()?;
    let days: Vec<i64> = tx
        .prepare("SELECT day FROM partitions")?
        .query_map([], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    for day in days {
        let t = table(day);
        if !super::has_column(&tx, &t, "tag")? {
            continue;
        }
        let old = format!("{t}_v2");
        tx.execute_batch(&format!(
            "ALTER TABLE {t} RENAME TO {old}; CREATE TABLE {t} ({SEALED_COLUMNS});"
        ))?;
        let mut moved = 0;
        {
            let mut st = tx.prepare(&format!("SELECT tag, id, sealed FROM {old}"))?;
            let mut rows = st.query([])?;
            while let Some(row) = rows.next()? {
                let (tag, id): (Vec<u8>, Vec<u8>) = (row.get(0)?, row.get(1)?);
                let read = keys.open_read_v2_layout(&old, day, &tag, &id, row.get(2)?)?;
                moved += insert_sealed(&tx, &t, keys, day, &keys.read_spot(day, &read))?;
            }
        }
        tx.execute_batch(&format!("DROP TABLE {old};"))?;
        tx.execute(
            "UPDATE partitions SET rows = ?2 WHERE day = ?1",
            params![day, moved],
        )?;
    }
    tx.commit()?;
    Ok(())
}

/// Rewrite one closed day partition (a day before `now`'s, not yet compacted), the oldest:
/// an encrypted partition's rows are copied into a new table in key order, a plain
/// partition's identity index is rebuilt. Random inserts leave B-tree pages about
/// two-thirds full; rewritten in order they sit full, so the day takes a third less disk
/// and page cache and a lookup that misses the cache finds more of what it needs per page
/// read. One transaction (lookups keep reading their snapshot meanwhile); a read arriving
/// later for the day is stored as usual. Returns the day compacted, if any. With the reads
/// in PostgreSQL, the day is vacuumed and analyzed instead ([`PgReads::vacuum_one_closed`]).
pub fn compact_one_closed(db: &mut Db, now: i64) -> Result<Option<i64>, Error> {
    if let Some(pg) = &db.pg {
        return pg.vacuum_one_closed(now);
    }
    let encrypted = db.keys.is_some();
    let tx = db.conn.transaction()?;
    let day: Option<i64> = tx
        .query_row(
            "SELECT day FROM partitions WHERE day < ?1 AND compacted = 0 ORDER BY day LIMIT 1",
            [now.div_euclid(DAY)],
            |r| r.get(0),
        )
        .optional()?;
    let Some(day) = day else {
        return Ok(None);
    };
    let t = table(day);
    if encrypted {
        tx.execute_batch(&format!(
            "CREATE TABLE {t}_packed ({SEALED_COLUMNS});
             INSERT INTO {t}_packed (k, sealed) SELECT k, sealed FROM {t} ORDER BY k;
             DROP TABLE {t};
             ALTER TABLE {t}_packed RENAME TO {t};"
        ))?;
    } else {
        tx.execute_batch(&format!("REINDEX {t}_read_identity;"))?;
    }
    tx.execute("UPDATE partitions SET compacted = 1 WHERE day = ?1", [day])?;
    tx.commit()?;
    Ok(Some(day))
}

/// Most reads returned for one plate lookup.
pub const MAX_RESULTS: usize = 1000;

/// Day partitions that exist, oldest first.
pub fn partitions(db: &Db) -> Result<Vec<(i64, i64)>, Error> {
    if let Some(pg) = &db.pg {
        return pg.partitions();
    }
    let conn = &db.conn;
    let mut st = conn.prepare_cached("SELECT day, rows FROM partitions ORDER BY day")?;
    Ok(st
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<Result<_, _>>()?)
}

/// Reads of one plate in `[start, end]`, oldest first, touching only the days in range.
pub fn lookup(db: &Db, key: PlateKey<'_>, start: i64, end: i64) -> Result<Vec<Read>, Error> {
    if let Some(pg) = &db.pg {
        return pg.lookup(key, start, end, MAX_RESULTS);
    }
    lookup_days(
        &db.conn,
        db.keys.as_deref(),
        window_days(start, end),
        key,
        start,
        end,
    )
}

/// The calendar days (UTC day numbers) that `[start, end]` touches.
fn window_days(start: i64, end: i64) -> std::ops::RangeInclusive<i64> {
    start.div_euclid(DAY)..=end.div_euclid(DAY)
}

/// The day partitions of `days` that exist, oldest first.
fn present_days(
    conn: &Connection,
    days: &std::ops::RangeInclusive<i64>,
) -> Result<Vec<i64>, Error> {
    Ok(conn
        .prepare_cached("SELECT day FROM partitions WHERE day BETWEEN ?1 AND ?2 ORDER BY day")?
        .query_map([days.start(), days.end()], |r| r.get(0))?
        .collect::<Result<_, _>>()?)
}

/// Reads of one plate in `[start, end]` from the partitions of `days`, oldest first, at
/// most [`MAX_RESULTS`]. Lists the partitions and reads them in one snapshot, so a day
/// purged meanwhile is either wholly there or not listed.
fn lookup_days(
    conn: &Connection,
    keys: Option<&DataKeys>,
    days: std::ops::RangeInclusive<i64>,
    key: PlateKey<'_>,
    start: i64,
    end: i64,
) -> Result<Vec<Read>, Error> {
    let snapshot = conn.unchecked_transaction()?;
    let present = present_days(&snapshot, &days)?;
    let mut out = Vec::new();
    if let Some(keys) = keys {
        for day in &present {
            let found = lookup_day_sealed(&snapshot, keys, *day, key, start, end)?;
            out.extend(found.into_iter().take(MAX_RESULTS - out.len()));
            if out.len() >= MAX_RESULTS {
                break;
            }
        }
        return Ok(out);
    }
    for day in &present {
        // The limit is a literal: SQLite re-prepares a statement whenever a bound LIMIT
        // value changes, which would re-parse it on nearly every lookup.
        let state = if key.any_state() {
            "?4 = ?4"
        } else {
            "plate_state = ?4"
        };
        let mut q = snapshot.prepare_cached(&format!(
            "SELECT plate, captured_at, camera_id, latitude, longitude, plate_state FROM {}
             WHERE plate = ?1 AND {state} AND captured_at BETWEEN ?2 AND ?3 ORDER BY captured_at LIMIT {MAX_RESULTS}",
            table(*day)
        ))?;
        let rows = q.query_map(
            params![key.plate, start, end, key.state],
            super::read_from_row,
        )?;
        for r in rows {
            if out.len() >= MAX_RESULTS {
                break;
            }
            out.push(r?);
        }
        if out.len() >= MAX_RESULTS {
            break;
        }
    }
    Ok(out)
}

/// Copy the reads covered by holds in force at `now` out of the partitions of `days`
/// (about to be dropped) into the holds' keeping.
fn preserve_held(
    conn: &Connection,
    keys: Option<&DataKeys>,
    days: &[i64],
    now: i64,
) -> Result<u64, Error> {
    let holds = super::holds::active(conn, keys, now)?;
    let mut kept = 0;
    for day in days {
        for h in &holds {
            kept += match keys {
                None => super::holds::keep_plain(conn, h, &table(*day))?,
                Some(k) => {
                    let key = PlateKey {
                        plate: &h.plate,
                        state: alpr_proto::input::ANY_STATE,
                    };
                    let reads = lookup_day_sealed(conn, k, *day, key, h.start, h.end)?;
                    super::holds::keep_sealed(conn, k, h.id, &reads)?
                }
            };
        }
    }
    Ok(kept)
}

/// Reads of one plate in `[start, end]` from encrypted day partition `day`, oldest first
/// (all of them: a plate has few reads a day).
fn lookup_day_sealed(
    conn: &Connection,
    keys: &DataKeys,
    day: i64,
    key: PlateKey<'_>,
    start: i64,
    end: i64,
) -> Result<Vec<Read>, Error> {
    let t = table(day);
    let keys_of = bucket_keys(keys.plate_bucket(day, key.plate));
    let mut q = conn.prepare_cached(&format!(
        "SELECT k, sealed FROM {t} WHERE k BETWEEN ?1 AND ?2"
    ))?;
    let mut rows = q.query([keys_of.start(), keys_of.end()])?;
    let mut found = Vec::new();
    while let Some(row) = rows.next()? {
        let r = keys.open_read(&t, day, row.get(0)?, row.get(1)?)?;
        // The plate is checked too: other plates may share the bucket.
        if r.plate == key.plate
            && (key.any_state() || r.plate_state == key.state)
            && (start..=end).contains(&r.captured_at)
        {
            found.push(r);
        }
    }
    found.sort_by_key(|r| r.captured_at);
    Ok(found)
}

/// Reads whose plate matches the wildcard `key.plate` (`?`: one unknown character) in
/// `[start, end]`, oldest first, at most [`MAX_RESULTS`]. A plain partition is searched with
/// SQLite's `GLOB` (the same `?`); an encrypted one has no index a pattern can use, so every
/// read of each day in the window is opened and matched — which is why wildcard windows
/// are short (`input::WILDCARD_MAX_WINDOW_DAYS`).
fn lookup_pattern_days(
    conn: &Connection,
    keys: Option<&DataKeys>,
    key: PlateKey<'_>,
    start: i64,
    end: i64,
) -> Result<Vec<Read>, Error> {
    let snapshot = conn.unchecked_transaction()?;
    let days = window_days(start, end);
    let present = present_days(&snapshot, &days)?;
    let state_ok = |s: &str| key.any_state() || s == key.state;
    let mut out = Vec::new();
    for day in present {
        let t = table(day);
        let mut found = Vec::new();
        match keys {
            Some(keys) => {
                let mut q = snapshot.prepare_cached(&format!("SELECT k, sealed FROM {t}"))?;
                let mut rows = q.query([])?;
                while let Some(row) = rows.next()? {
                    let r = keys.open_read(&t, day, row.get(0)?, row.get(1)?)?;
                    if alpr_proto::input::matches_wildcard(key.plate, &r.plate)
                        && state_ok(&r.plate_state)
                        && (start..=end).contains(&r.captured_at)
                    {
                        found.push(r);
                    }
                }
            }
            None => {
                let mut q = snapshot.prepare_cached(&format!(
                    "SELECT plate, captured_at, camera_id, latitude, longitude, plate_state FROM {t}
                     WHERE plate GLOB ?1 AND captured_at BETWEEN ?2 AND ?3"
                ))?;
                for r in q.query_map(params![key.plate, start, end], super::read_from_row)? {
                    let r = r?;
                    if state_ok(&r.plate_state) {
                        found.push(r);
                    }
                }
            }
        }
        found.sort_by_key(|r| r.captured_at);
        out.extend(found.into_iter().take(MAX_RESULTS - out.len()));
        if out.len() >= MAX_RESULTS {
            break;
        }
    }
    Ok(out)
}

/// Days one connection reads before a lookup splits its window across threads.
const DAYS_PER_READER: usize = 8;
/// Days each connection reads, at least, once a window is split.
const MIN_DAYS_PER_SPLIT: usize = 4;
/// Most connections (and threads) one lookup reads with: a day not in the page cache is
/// one random disk read, and 8 in flight at once halve a cold 30-day lookup's wait against
/// 4 (the disk serves them in parallel; the threads mostly wait).
const MAX_READERS_PER_LOOKUP: usize = 8;
/// Idle read connections kept open.
const MAX_IDLE_READERS: usize = 16;

/// Read-only connections to the node database, for lookups. A long window's days are read
/// in parallel: a day whose index page is not cached costs one random disk read, and 30 of
/// those in a row were what made cold 30-day lookups slow. The parallel parts run on a few
/// worker threads started on first use and kept (spawning threads per lookup cost more
/// than a cached lookup takes). Lookups also stop waiting on the node's write lock. Each
/// connection reads its days from one snapshot; days purged meanwhile are skipped.
pub struct Readers {
    shared: Arc<Shared>,
    jobs: Mutex<Option<std::sync::mpsc::Sender<Job>>>,
}

/// What the workers of one [`Readers`] share with it.
struct Shared {
    path: PathBuf,
    keys: Option<Arc<DataKeys>>,
    pg: Option<Arc<PgReads>>,
    idle: Mutex<Vec<Connection>>,
}

/// A part of a lookup, run by a worker.
type Job = Box<dyn FnOnce(&Shared) + Send>;

impl std::fmt::Debug for Readers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Readers({})", self.shared.path.display())
    }
}

impl Shared {
    fn take(&self) -> Result<Connection, Error> {
        let idle = self.idle.lock().unwrap_or_else(|p| p.into_inner()).pop();
        match idle {
            Some(c) => Ok(c),
            None => {
                let c = alpr_runtime::sqlite::open(&self.path, std::time::Duration::from_secs(10))?;
                c.pragma_update(None, "query_only", true)?;
                c.set_prepared_statement_cache_capacity(512);
                Ok(c)
            }
        }
    }

    fn give(&self, c: Connection) {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        if idle.len() < MAX_IDLE_READERS {
            idle.push(c);
        }
    }

    /// One run of days on a connection of its own.
    fn lookup_part(
        &self,
        days: std::ops::RangeInclusive<i64>,
        key: PlateKey<'_>,
        start: i64,
        end: i64,
    ) -> Result<Vec<Read>, Error> {
        let c = self.take()?;
        let r = lookup_days(&c, self.keys.as_deref(), days, key, start, end);
        self.give(c);
        r
    }
}

impl Readers {
    /// Readers of the database at `path` (opened on first use), encrypted with `keys` or
    /// plain (as [`Db::keys`] says of the open database).
    pub fn new(path: &Path, keys: Option<Arc<DataKeys>>) -> Self {
        Self::of(path, keys, None)
    }

    /// Readers of the reads a [`Db`] opened with [`super::open_at`] keeps: in PostgreSQL
    /// when `pg` is given, else in the file at `path`.
    pub fn of(path: &Path, keys: Option<Arc<DataKeys>>, pg: Option<Arc<PgReads>>) -> Self {
        Self {
            shared: Arc::new(Shared {
                path: path.to_owned(),
                keys,
                pg,
                idle: Mutex::new(Vec::new()),
            }),
            jobs: Mutex::new(None),
        }
    }

    /// Reads of one plate in `[start, end]`, oldest first, at most [`MAX_RESULTS`].
    pub fn lookup(&self, key: PlateKey<'_>, start: i64, end: i64) -> Result<Vec<Read>, Error> {
        if let Some(pg) = &self.shared.pg {
            return pg.lookup(key, start, end, MAX_RESULTS);
        }
        let days = window_days(start, end);
        let n = usize::try_from(days.end() - days.start() + 1).unwrap_or(0);
        if n <= DAYS_PER_READER {
            return self.shared.lookup_part(days, key, start, end);
        }
        let readers = n.div_ceil(MIN_DAYS_PER_SPLIT).min(MAX_READERS_PER_LOOKUP);
        // Split the window into `readers` runs of consecutive days, oldest first; all but
        // the first go to the workers.
        let per = n.div_ceil(readers) as i64;
        let mut chunks = (*days.start()..=*days.end())
            .step_by(per as usize)
            .map(|first| first..=(first + per - 1).min(*days.end()));
        let mine = chunks.next().unwrap_or(days.clone());
        let mut waiting = Vec::new();
        for chunk in chunks {
            let (tx, rx) = std::sync::mpsc::channel();
            let (plate, state) = (key.plate.to_owned(), key.state.to_owned());
            self.submit(Box::new(move |sh: &Shared| {
                let key = PlateKey {
                    plate: &plate,
                    state: &state,
                };
                let _ = tx.send(sh.lookup_part(chunk, key, start, end));
            }))?;
            waiting.push(rx);
        }
        let mut out = self.shared.lookup_part(mine, key, start, end)?;
        for rx in waiting {
            let part = rx
                .recv()
                .map_err(|_| Error::Usage("a lookup worker stopped".into()))??;
            out.extend(part);
        }
        out.truncate(MAX_RESULTS);
        Ok(out)
    }

    /// Hand `job` to the workers, starting them on first use.
    fn submit(&self, job: Job) -> Result<(), Error> {
        let mut jobs = self.jobs.lock().unwrap_or_else(|p| p.into_inner());
        if jobs.is_none() {
            let (tx, rx) = std::sync::mpsc::channel::<Job>();
            let rx = Arc::new(Mutex::new(rx));
            for i in 0..MAX_READERS_PER_LOOKUP - 1 {
                let (rx, shared) = (rx.clone(), self.shared.clone());
                std::thread::Builder::new()
                    .name(format!("lookup-{i}"))
                    .spawn(move || {
                        loop {
                            let next = rx.lock().unwrap_or_else(|p| p.into_inner()).recv();
                            match next {
                                Ok(job) => job(&shared),
                                // The readers are gone.
                                Err(_) => return,
                            }
                        }
                    })
                    .map_err(|e| Error::io("a lookup worker thread", e))?;
            }
            *jobs = Some(tx);
        }
        jobs.as_ref()
            .and_then(|tx| tx.send(job).ok())
            .ok_or_else(|| Error::Usage("the lookup workers stopped".into()))
    }

    /// Reads whose plate matches the wildcard `key.plate` in `[start, end]`, oldest first,
    /// at most [`MAX_RESULTS`].
    pub fn lookup_pattern(
        &self,
        key: PlateKey<'_>,
        start: i64,
        end: i64,
    ) -> Result<Vec<Read>, Error> {
        if let Some(pg) = &self.shared.pg {
            return pg.lookup_pattern(key, start, end, MAX_RESULTS);
        }
        let conn = self.shared.take()?;
        let result = lookup_pattern_days(&conn, self.shared.keys.as_deref(), key, start, end);
        self.shared.give(conn);
        result
    }
}

/// Every read of day partition `day` (unordered), opened if the database is encrypted:
/// what an export of the agency's data reads. None for a day that is not stored.
pub fn day_reads(db: &Db, day: i64) -> Result<Vec<Read>, Error> {
    if let Some(pg) = &db.pg {
        return pg.day_reads(day);
    }
    // A day not stored (or purged since it was listed) has no reads.
    if present_days(&db.conn, &(day..=day))?.is_empty() {
        return Ok(Vec::new());
    }
    let t = table(day);
    if let Some(keys) = &db.keys {
        let mut st = db.conn.prepare(&format!("SELECT k, sealed FROM {t}"))?;
        let mut rows = st.query([])?;
        let mut out = Vec::new();
        while let Some(r) = rows.next()? {
            out.push(keys.open_read(&t, day, r.get(0)?, r.get(1)?)?);
        }
        return Ok(out);
    }
    let mut st = db.conn.prepare(&format!(
        "SELECT plate, captured_at, camera_id, latitude, longitude, plate_state FROM {t}"
    ))?;
    let rows = st.query_map([], super::read_from_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Count stored reads.
pub fn count_reads(db: &Db) -> Result<i64, Error> {
    if let Some(pg) = &db.pg {
        return pg.count();
    }
    let conn = &db.conn;
    Ok(
        conn.query_row("SELECT COALESCE(SUM(rows), 0) FROM partitions", [], |r| {
            r.get(0)
        })?,
    )
}

/// Drop every day partition entirely older than `cutoff` (Unix seconds), first copying aside
/// the reads under evidence holds active at `now`. Returns the days dropped and the reads
/// they held.
pub fn purge_before(db: &mut Db, cutoff: i64, now: i64) -> Result<(Vec<i64>, i64), Error> {
    // A day is dropped only when all of it lies before the cutoff.
    let last_whole_day = cutoff.div_euclid(DAY) - 1;
    if let Some(pg) = db.pg.clone() {
        return purge_postgres(db, &pg, last_whole_day, now);
    }
    let tx = db.conn.transaction()?;
    let doomed: Vec<(i64, i64)> = {
        let mut st = tx.prepare("SELECT day, rows FROM partitions WHERE day <= ?1 ORDER BY day")?;
        st.query_map([last_whole_day], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<Result<_, _>>()?
    };
    let days: Vec<i64> = doomed.iter().map(|(d, _)| *d).collect();
    preserve_held(&tx, db.keys.as_deref(), &days, now)?;
    super::holds::release_expired(&tx, now)?;
    super::rejects::purge_before(&tx, cutoff)?;
    let mut reads = 0;
    for (day, rows) in &doomed {
        tx.execute_batch(&format!("DROP TABLE IF EXISTS {}", table(*day)))?;
        tx.execute("DELETE FROM partitions WHERE day = ?1", [day])?;
        reads += rows;
    }
    tx.commit()?;
    Ok((doomed.into_iter().map(|(d, _)| d).collect(), reads))
}

/// [`purge_before`] for reads in PostgreSQL: the reads under holds in force are copied into
/// `node.db` (committed) before the days are dropped there, so a crash between the two
/// loses none of them, and the purge run again keeps each once
/// ([`super::holds::keep_plain_reads`] skips a read a hold already keeps).
fn purge_postgres(
    db: &mut Db,
    pg: &PgReads,
    last_whole_day: i64,
    now: i64,
) -> Result<(Vec<i64>, i64), Error> {
    let doomed = pg.days_before(last_whole_day + 1)?;
    let tx = db.conn.transaction()?;
    let holds = super::holds::active(&tx, None, now)?;
    for (day, _) in &doomed {
        for h in &holds {
            let reads = pg.held_of_day(*day, &h.plate, h.start, h.end)?;
            super::holds::keep_plain_reads(&tx, h.id, &reads)?;
        }
    }
    super::holds::release_expired(&tx, now)?;
    super::rejects::purge_before(&tx, (last_whole_day + 1) * DAY)?;
    tx.commit()?;
    let days: Vec<i64> = doomed.iter().map(|(d, _)| *d).collect();
    pg.drop_days(&days)?;
    Ok((days, doomed.iter().map(|(_, n)| n).sum()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::sqlite::{SCHEMA, SCHEMA_VERSION, has_column, open};

    fn read(plate: &str, at: i64) -> Read {
        Read {
            plate: plate.into(),
            captured_at: at,
            camera_id: "cam-1".into(),
            latitude: 34.1,
            longitude: -118.2,
            plate_state: "CA".into(),
        }
    }

    fn ca(plate: &str) -> PlateKey<'_> {
        PlateKey { plate, state: "CA" }
    }

    #[test]
    fn lookup_returns_the_oldest_reads_in_window_capped_across_days() {
        let dir = tempfile::tempdir().unwrap();
        let mut conn = open(&dir.path().join("node.db")).unwrap();
        let day0 = 20_000 * DAY;
        // 500 reads of the plate on each of 3 days, plus another plate.
        let mut reads = Vec::new();
        for d in 0..3 {
            for i in 0..500 {
                reads.push(read("7ABC123", day0 + d * DAY + i * 60));
            }
            reads.push(read("8XYZ999", day0 + d * DAY + 30));
        }
        insert_reads(&mut conn, &reads).unwrap();
        let all = lookup(&conn, ca("7ABC123"), day0, day0 + 3 * DAY).unwrap();
        assert_eq!(all.len(), MAX_RESULTS);
        assert!(all.windows(2).all(|w| w[0].captured_at < w[1].captured_at));
        assert_eq!(all[0].captured_at, day0);
        assert!(all.iter().all(|r| r.plate == "7ABC123"));
        // The window bounds are inclusive and respected; repeated lookups with different
        // remaining counts give the same answers.
        for _ in 0..3 {
            let part = lookup(&conn, ca("7ABC123"), day0 + DAY + 60, day0 + 2 * DAY + 120).unwrap();
            assert_eq!(part.len(), 499 + 3);
            assert_eq!(part[0].captured_at, day0 + DAY + 60);
            assert_eq!(part.last().unwrap().captured_at, day0 + 2 * DAY + 120);
        }
        assert_eq!(
            lookup(&conn, ca("8XYZ999"), day0, day0 + 3 * DAY)
                .unwrap()
                .len(),
            3
        );
        assert!(
            lookup(&conn, ca("0NONE00"), day0, day0 + 3 * DAY)
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn readers_split_a_long_window_across_days_and_agree_with_one_connection() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("node.db");
        let mut conn = open(&path).unwrap();
        let day0 = 20_100 * DAY;
        // 40 days, 30 reads of the plate a day (1,200 in all: past the cap), plus noise.
        let mut reads = Vec::new();
        for d in 0..40 {
            for i in 0..30 {
                reads.push(read("7ABC123", day0 + d * DAY + 3600 + i * 60));
            }
            reads.push(read("8XYZ999", day0 + d * DAY + 7200));
        }
        insert_reads(&mut conn, &reads).unwrap();
        let readers = Readers::new(&path, None);
        for (start, end) in [
            (day0, day0 + 40 * DAY),
            (day0 + 5 * DAY + 3900, day0 + 29 * DAY + 3700),
            (day0 + 2 * DAY, day0 + 4 * DAY),
            (day0 - 10 * DAY, day0 - DAY),
        ] {
            let one = lookup(&conn, ca("7ABC123"), start, end).unwrap();
            let many = readers.lookup(ca("7ABC123"), start, end).unwrap();
            assert_eq!(one, many, "window {start}..{end}");
            assert!(many.windows(2).all(|w| w[0].captured_at < w[1].captured_at));
            assert!(many.len() <= MAX_RESULTS);
        }
        let all = readers
            .lookup(ca("7ABC123"), day0, day0 + 40 * DAY)
            .unwrap();
        assert_eq!(all.len(), MAX_RESULTS);
        assert_eq!(all[0].captured_at, day0 + 3600);
        assert_eq!(
            readers
                .lookup(ca("8XYZ999"), day0, day0 + 40 * DAY)
                .unwrap()
                .len(),
            40
        );
        // Connections are reused, not opened per lookup.
        assert!(readers.shared.idle.lock().unwrap().len() <= MAX_READERS_PER_LOOKUP);
    }

    #[test]
    fn a_purged_day_is_skipped_not_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("node.db");
        let mut conn = open(&path).unwrap();
        let day0 = 20_200 * DAY;
        let reads: Vec<Read> = (0..3)
            .map(|d| read("7ABC123", day0 + d * DAY + 60))
            .collect();
        insert_reads(&mut conn, &reads).unwrap();
        let days = window_days(day0, day0 + 3 * DAY);
        assert_eq!(partitions(&conn).unwrap().len(), 3);
        // Purge the first day, as the retention task may while a lookup is under way.
        purge_before(&mut conn, day0 + DAY, day0 + DAY).unwrap();
        let got = lookup_days(&conn.conn, None, days, ca("7ABC123"), day0, day0 + 3 * DAY).unwrap();
        assert_eq!(
            got.iter().map(|r| r.captured_at).collect::<Vec<_>>(),
            vec![day0 + DAY + 60, day0 + 2 * DAY + 60]
        );
    }

    #[test]
    fn the_same_characters_in_two_states_are_two_vehicles() {
        let dir = tempfile::tempdir().unwrap();
        let mut conn = open(&dir.path().join("node.db")).unwrap();
        let day0 = 20_300 * DAY;
        let nv = Read {
            plate_state: "NV".into(),
            ..read("8ABC123", day0 + 120)
        };
        let unknown = Read {
            plate_state: String::new(),
            ..read("8ABC123", day0 + 180)
        };
        insert_reads(&mut conn, &[read("8ABC123", day0 + 60), nv, unknown]).unwrap();
        let states = |key| {
            lookup(&conn, key, day0, day0 + DAY)
                .unwrap()
                .into_iter()
                .map(|r| r.plate_state)
                .collect::<Vec<_>>()
        };
        assert_eq!(states(ca("8ABC123")), vec!["CA"]);
        assert_eq!(
            states(PlateKey {
                plate: "8ABC123",
                state: "NV"
            }),
            vec!["NV"]
        );
        // "Any state" is the only way to reach reads whose state is unknown.
        assert_eq!(
            states(PlateKey {
                plate: "8ABC123",
                state: alpr_proto::input::ANY_STATE
            }),
            vec!["CA", "NV", ""]
        );
    }

    #[test]
    fn a_database_from_before_plate_states_migrates_with_the_state_unknown() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("node.db");
        let day = 20_400;
        {
            // The version-0 layout: no plate_state, the old covering index.
            let c = Connection::open(&path).unwrap();
            c.execute_batch(&format!(
                "{SCHEMA}
                 CREATE TABLE reads_{day} (plate TEXT NOT NULL, captured_at INTEGER NOT NULL, camera_id TEXT NOT NULL, latitude REAL NOT NULL, longitude REAL NOT NULL);
                 CREATE INDEX reads_{day}_plate_cover ON reads_{day} (plate, captured_at, camera_id, latitude, longitude);
                 INSERT INTO reads_{day} VALUES ('8ABC123', {t}, 'cam-9', 34.0, -119.0);
                 INSERT INTO reads_{day} VALUES ('8ABC123', {t}, 'cam-9', 34.0, -119.0);
                 INSERT INTO partitions (day, rows) VALUES ({day}, 2);
                 CREATE TABLE held_reads (hold_id INTEGER NOT NULL, plate TEXT NOT NULL, captured_at INTEGER NOT NULL, camera_id TEXT NOT NULL, latitude REAL NOT NULL, longitude REAL NOT NULL);",
                t = day * DAY + 60
            ))
            .unwrap();
        }
        let conn = open(&path).unwrap();
        let v: i64 = conn
            .conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(v, SCHEMA_VERSION);
        assert!(has_column(&conn.conn, "held_reads", "plate_state").unwrap());
        let any = PlateKey {
            plate: "8ABC123",
            state: alpr_proto::input::ANY_STATE,
        };
        let got = lookup(&conn, any, day * DAY, (day + 1) * DAY).unwrap();
        assert_eq!(got.len(), 1, "the exact duplicate was removed");
        assert_eq!(count_reads(&conn).unwrap(), 1);
        assert_eq!(got[0].plate_state, "");
        assert!(
            lookup(&conn, ca("8ABC123"), day * DAY, (day + 1) * DAY)
                .unwrap()
                .is_empty()
        );
        drop(conn);
        // Opening again is a no-op; a database from newer code is refused.
        open(&path).unwrap();
        let c = Connection::open(&path).unwrap();
        c.pragma_update(None, "user_version", SCHEMA_VERSION + 1)
            .unwrap();
        drop(c);
        let e = open(&path).unwrap_err().to_string();
        assert!(e.contains("newer than this alpr-node"), "{e}");
    }

    #[test]
    fn an_exact_duplicate_read_is_stored_once() {
        let dir = tempfile::tempdir().unwrap();
        let mut conn = open(&dir.path().join("node.db")).unwrap();
        let day0 = 20_500 * DAY;
        let reads = vec![read("8ABC123", day0 + 60), read("8ABC123", day0 + 120)];
        assert_eq!(insert_reads(&mut conn, &reads).unwrap(), 2);
        assert_eq!(
            insert_reads(&mut conn, &reads).unwrap(),
            0,
            "the same reads again"
        );
        // Differing in any part of its identity, it is another read.
        let other = Read {
            camera_id: "cam-2".into(),
            ..read("8ABC123", day0 + 60)
        };
        assert_eq!(insert_reads(&mut conn, &[other]).unwrap(), 1);
        assert_eq!(count_reads(&conn).unwrap(), 3);
        assert_eq!(
            lookup(&conn, ca("8ABC123"), day0, day0 + DAY)
                .unwrap()
                .len(),
            3
        );
    }

    #[test]
    fn a_wildcard_finds_the_same_reads_in_plain_and_encrypted_stores() {
        let dir = tempfile::tempdir().unwrap();
        let day0 = 20_600 * DAY;
        let mut reads = Vec::new();
        for (i, p) in ["7ABC123", "7ABD123", "7ABC124", "8ABC123", "7ABC12"]
            .iter()
            .enumerate()
        {
            reads.push(read(p, day0 + 60 * i as i64));
            reads.push(read(p, day0 + DAY + 60 * i as i64));
        }
        let nv = Read {
            plate_state: "NV".into(),
            ..read("7ABE123", day0 + 30)
        };
        reads.push(nv);
        let keys = std::sync::Arc::new(crate::store::encryption::DataKeys::new(&[3; 32]));
        for (name, keys) in [("plain.db", None), ("sealed.db", Some(keys))] {
            let path = dir.path().join(name);
            let mut db = crate::store::open_with(&path, keys.clone()).unwrap();
            insert_reads(&mut db, &reads).unwrap();
            let readers = Readers::new(&path, keys);
            let key = |state| PlateKey {
                plate: "7AB?123",
                state,
            };
            let got = readers
                .lookup_pattern(key("CA"), day0, day0 + 2 * DAY)
                .unwrap();
            let plates: Vec<_> = got.iter().map(|r| r.plate.as_str()).collect();
            assert_eq!(
                plates,
                vec!["7ABC123", "7ABD123", "7ABC123", "7ABD123"],
                "{name}: oldest first, matching plates only"
            );
            let any = readers
                .lookup_pattern(key(alpr_proto::input::ANY_STATE), day0, day0 + DAY - 1)
                .unwrap();
            assert_eq!(any.len(), 3, "{name}: the NV plate too, any state");
        }
    }

    #[test]
    fn encrypted_reads_sharing_a_slot_are_both_kept_and_each_stored_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sealed.db");
        let keys = std::sync::Arc::new(DataKeys::new(&[4; 32]));
        let mut db = crate::store::open_with(&path, Some(keys.clone())).unwrap();
        let day = 20_700;
        let (a, b) = (
            read("8ABC123", day * DAY + 60),
            read("8ABC123", day * DAY + 90),
        );
        // `b` is put by hand at the slot `a` tries first, as if their slots collided.
        let (sa, sb) = (keys.read_spot(day, &a), keys.read_spot(day, &b));
        assert_ne!(sa.first_slot, sb.first_slot);
        insert_reads(&mut db, &[read("8ABC123", day * DAY + 30)]).unwrap();
        let k = sa.first_key();
        db.conn
            .execute(
                &format!("INSERT INTO {} (k, sealed) VALUES (?1, ?2)", table(day)),
                params![k, keys.seal_read_at(day, &sb, k)],
            )
            .unwrap();
        assert_eq!(
            insert_reads(&mut db, std::slice::from_ref(&a)).unwrap(),
            1,
            "a: next slot"
        );
        assert_eq!(
            insert_reads(&mut db, std::slice::from_ref(&a)).unwrap(),
            0,
            "a found past b"
        );
        assert_eq!(
            insert_reads(&mut db, &[a, b]).unwrap(),
            1,
            "b at its own slot"
        );
        let found = lookup(&db, ca("8ABC123"), day * DAY, day * DAY + DAY - 1).unwrap();
        let times: Vec<_> = found.iter().map(|r| r.captured_at - day * DAY).collect();
        assert_eq!(
            times,
            vec![30, 60, 90, 90],
            "the hand-put row is a read too"
        );
        assert!(
            lookup(&db, ca("8ABC124"), day * DAY, day * DAY + DAY)
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn an_encrypted_database_of_schema_2_moves_to_row_keys_when_opened_with_its_keys() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sealed.db");
        let keys = std::sync::Arc::new(DataKeys::new(&[5; 32]));
        let day = 20_800;
        let reads = [
            read("8ABC123", day * DAY + 10),
            read("8ABC123", day * DAY + 20),
            read("7XYZ999", day * DAY + 30),
        ];
        {
            let db = crate::store::open_with(&path, Some(keys.clone())).unwrap();
            let t = table(day);
            db.conn
                .execute_batch(&format!(
                    "CREATE TABLE {t} (tag BLOB NOT NULL, id BLOB NOT NULL, sealed BLOB NOT NULL, PRIMARY KEY (tag, id)) WITHOUT ROWID;
                     INSERT INTO partitions (day, rows) VALUES ({day}, 3);
                     PRAGMA user_version = 2;"
                ))
                .unwrap();
            for r in &reads {
                let (tag, id, sealed) = keys.seal_read_v2_layout(day, r);
                db.conn
                    .execute(
                        &format!("INSERT INTO {t} (tag, id, sealed) VALUES (?1, ?2, ?3)"),
                        params![&tag[..], &id[..], sealed],
                    )
                    .unwrap();
            }
        }
        // Without the keys it is refused, and nothing is moved.
        assert!(open(&path).is_err());
        let db = crate::store::open_with(&path, Some(keys.clone())).unwrap();
        assert!(has_column(&db.conn, &table(day), "k").unwrap());
        assert_eq!(
            super::super::maintenance::schema_version(&db).unwrap(),
            SCHEMA_VERSION
        );
        assert_eq!(count_reads(&db).unwrap(), 3);
        let found = lookup(&db, ca("8ABC123"), day * DAY, day * DAY + DAY - 1).unwrap();
        assert_eq!(found, reads[..2].to_vec());
        drop(db);
        // Opening again moves nothing more.
        let db = crate::store::open_with(&path, Some(keys)).unwrap();
        assert_eq!(day_reads(&db, day).unwrap().len(), 3);
    }

    #[test]
    fn closed_days_are_compacted_once_and_keep_every_read_plain_and_encrypted() {
        let dir = tempfile::tempdir().unwrap();
        let keys = std::sync::Arc::new(DataKeys::new(&[6; 32]));
        let day0 = 20_900;
        let reads: Vec<Read> = (0..300)
            .map(|i| read(&format!("8AB{:04}", i % 50), day0 * DAY + i * 200))
            .collect();
        for (name, keys) in [("plain.db", None), ("sealed.db", Some(keys))] {
            let path = dir.path().join(name);
            let mut db = crate::store::open_with(&path, keys).unwrap();
            insert_reads(&mut db, &reads).unwrap();
            let before = lookup(&db, ca("8AB0007"), day0 * DAY, day0 * DAY + 2 * DAY).unwrap();
            // Today's partition (day0 + 1 is "now") stays open; day0 is compacted, once.
            let now = (day0 + 1) * DAY + 10;
            assert_eq!(
                compact_one_closed(&mut db, now).unwrap(),
                Some(day0),
                "{name}"
            );
            assert_eq!(
                compact_one_closed(&mut db, now).unwrap(),
                None,
                "{name}: once"
            );
            assert_eq!(
                lookup(&db, ca("8AB0007"), day0 * DAY, day0 * DAY + 2 * DAY).unwrap(),
                before,
                "{name}"
            );
            assert_eq!(count_reads(&db).unwrap(), 300);
            // A late read of the compacted day is stored, a duplicate still is not.
            let late = read("8AB0007", day0 * DAY + 86_000);
            assert_eq!(
                insert_reads(&mut db, &[late.clone(), reads[7].clone()]).unwrap(),
                1,
                "{name}"
            );
            let after = lookup(&db, ca("8AB0007"), day0 * DAY, day0 * DAY + DAY - 1).unwrap();
            assert_eq!(after.len(), before.len() + 1, "{name}");
            assert_eq!(after.last(), Some(&late));
        }
    }
}
