//! SQLite files as every party opens them, and background WAL checkpoints.
//!
//! Every database (a node's `node.db` and `audit.db`, the broker's `broker.db`) is opened
//! by [`open`]: WAL, `synchronous=FULL` (a commit is on disk when it returns), a busy
//! timeout, and query-planner stability (QPSG). Without QPSG, SQLite marks a statement to be
//! re-prepared whenever a bound value could change its plan and its bindings are cleared,
//! which rusqlite's statement cache does on every reuse, so "cached" statements were parsed
//! again on nearly every lookup.
//!
//! A group-commit writer hands WAL checkpoints to a [`Checkpointer`] thread: copying the WAL
//! back into the database (and its fsync) then never stalls the queries waiting on a commit.

use std::path::Path;
use std::sync::mpsc::{self, RecvTimeoutError, Sender};
use std::time::Duration;

use rusqlite::Connection;

/// A database failure, opaque to the callers' public APIs (which never name a `rusqlite`
/// type): it displays SQLite's own message and keeps it as its source.
#[derive(Debug)]
pub struct DbError(rusqlite::Error);

impl std::fmt::Display for DbError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for DbError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.0)
    }
}

impl From<rusqlite::Error> for DbError {
    fn from(e: rusqlite::Error) -> Self {
        Self(e)
    }
}

/// WAL pages after which a writer checkpoints by itself, should its checkpointer fall
/// behind (SQLite's default is 1,000; the checkpointer normally keeps the WAL far smaller).
const WRITER_AUTOCHECKPOINT_PAGES: i64 = 20_000;

/// Open (creating if needed) a database file with the settings every party uses.
pub fn open(path: &Path, busy_timeout: Duration) -> rusqlite::Result<Connection> {
    let conn = Connection::open(path)?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.busy_timeout(busy_timeout)?;
    conn.set_db_config(
        rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG,
        true,
    )?;
    Ok(conn)
}

/// Rows of an append-only log whose time (column 0 of `sql`, Unix seconds) is at or after
/// `since`, newest first, each mapped by `keep` (which may skip a row with `None`). `sql`
/// must order rows newest first; the scan stops a minute before `since`, since rows are
/// appended in time order give or take one group commit. For rebuilding in-memory state
/// (replay memory) from a log at start without an index on time.
pub fn newest_since<T>(
    conn: &Connection,
    sql: &str,
    since: i64,
    mut keep: impl FnMut(&rusqlite::Row<'_>) -> rusqlite::Result<Option<T>>,
) -> rusqlite::Result<Vec<T>> {
    let mut st = conn.prepare(sql)?;
    let mut rows = st.query([])?;
    let mut out = Vec::new();
    while let Some(r) = rows.next()? {
        let at: i64 = r.get(0)?;
        if at < since - 60 {
            break;
        }
        if at >= since
            && let Some(v) = keep(r)?
        {
            out.push(v);
        }
    }
    Ok(out)
}

/// How often a writer's WAL is copied back into its database by its [`Checkpointer`] (on
/// average; each wait is jittered).
pub const CHECKPOINT_INTERVAL: Duration = Duration::from_secs(1);

/// The next group for a group-commit writer thread: waits for the first job, then takes
/// whatever else is already queued until the group holds `max` items (as counted by
/// `size`). `None` once every sender is gone.
pub fn next_group<J>(
    rx: &mpsc::Receiver<J>,
    max: usize,
    size: impl Fn(&J) -> usize,
) -> Option<Vec<J>> {
    let first = rx.recv().ok()?;
    let mut n = size(&first);
    let mut jobs = vec![first];
    while n < max {
        match rx.try_recv() {
            Ok(j) => {
                n += size(&j);
                jobs.push(j);
            }
            Err(_) => break,
        }
    }
    Some(jobs)
}

/// Checkpoints one database file from a thread of its own until dropped.
#[derive(Debug)]
pub struct Checkpointer {
    _stop: Sender<()>,
}

impl Checkpointer {
    /// Leave checkpoints of `writer`'s file to a new thread that runs a passive checkpoint
    /// every `every` (passive: it never blocks the writer or readers). The writer still
    /// checkpoints by itself if the WAL grows past a safety limit. The thread ends when the
    /// returned value is dropped.
    pub fn start(writer: &Connection, path: &Path, every: Duration) -> rusqlite::Result<Self> {
        let conn = open(path, Duration::from_secs(5))?;
        writer.pragma_update(None, "wal_autocheckpoint", WRITER_AUTOCHECKPOINT_PAGES)?;
        let (stop, stopped) = mpsc::channel::<()>();
        let name = format!(
            "checkpoint-{}",
            path.file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default()
        );
        let spawned = std::thread::Builder::new().name(name).spawn(move || {
            // Each wait is drawn from [every/2, 3*every/2] so that databases sharing a disk
            // (several parties on one host) do not all flush at the same instant.
            let mut jitter = Jitter::seeded();
            // Until stopped (or the owner is gone): a timeout means "checkpoint now".
            while let Err(RecvTimeoutError::Timeout) = stopped.recv_timeout(jitter.around(every)) {
                if let Err(e) = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
                    tracing::warn!(error = %e, "background WAL checkpoint failed; the writer will checkpoint by itself");
                }
            }
        });
        if let Err(e) = spawned {
            // No thread: let the writer checkpoint as SQLite normally does.
            tracing::warn!(error = %e, "cannot start the checkpoint thread");
            writer.pragma_update(None, "wal_autocheckpoint", 1000)?;
        }
        Ok(Self { _stop: stop })
    }
}

/// A small xorshift generator for spreading timer deadlines (not for anything secret).
struct Jitter(u64);

impl Jitter {
    fn seeded() -> Self {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        let tid = format!("{:?}", std::thread::current().id());
        let mix = tid
            .bytes()
            .fold(nanos, |h, b| h.rotate_left(5) ^ u64::from(b));
        Self(mix | 1)
    }

    /// A duration drawn uniformly from `[d/2, 3d/2]`.
    fn around(&mut self, d: Duration) -> Duration {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        let unit = (self.0 >> 11) as f64 / (1u64 << 53) as f64;
        d.mul_f64(0.5 + unit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_checkpointer_copies_the_wal_into_the_database_instead_of_the_writer() {
        let dir = std::env::temp_dir().join(format!("alpr-ckpt-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("t.db");
        let w = open(&path, Duration::from_secs(5)).unwrap();
        w.execute_batch("CREATE TABLE t (x BLOB)").unwrap();
        let ck = Checkpointer::start(&w, &path, Duration::from_millis(20)).unwrap();
        // About 1,200 pages: past SQLite's default autocheckpoint (1,000) but far below
        // the writer's own limit now, so only the checkpointer moves them into the file.
        for _ in 0..300 {
            w.execute("INSERT INTO t VALUES (zeroblob(16000))", [])
                .unwrap();
        }
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while std::fs::metadata(&path).unwrap().len() < 4_500_000 {
            assert!(
                std::time::Instant::now() < deadline,
                "the database file never received the WAL's pages"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        let n: i64 = w
            .query_row("SELECT COUNT(*) FROM t", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 300);
        drop(ck);
        drop(w);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn jitter_stays_within_half_to_one_and_a_half_times_and_varies() {
        let mut j = Jitter::seeded();
        let d = Duration::from_secs(1);
        let draws: Vec<Duration> = (0..1000).map(|_| j.around(d)).collect();
        assert!(draws.iter().all(|x| *x >= d / 2 && *x <= d * 3 / 2));
        let below = draws.iter().filter(|x| **x < d).count();
        assert!(
            (300..700).contains(&below),
            "{below} of 1000 below the mean"
        );
    }
}
