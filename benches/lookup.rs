//! Plate lookup latency at scale (DESIGN §9, issue 7).
//!
//! Fills a node database (`alpr_node::store`, day partitions, WAL, `synchronous=FULL`) with
//! `ALPR_BENCH_READS` reads (default 50,000,000) spread in capture order over the last 90
//! days, through `store::insert_reads` in batches of 10,000, compacts the closed days as the
//! node's hourly maintenance does (`store::compact_one_closed`), then times
//! `alpr_node::store::lookup` for random plates that exist, over the last 7 and the last 30
//! days. Half of all reads come from a "frequent" twentieth of the plates (commuters), the
//! other half from all plates, so answers range from one read to a few hundred.
//!
//! The same reads are stored three times, in a plain database, in one encrypted at rest
//! (`store::open_with` and data keys: a blind plate index per day, each read sealed with
//! AES-256-GCM) and in PostgreSQL (`store::open_at` with `store::PgReads`: native day
//! partitions, on a server of its own in a temporary directory, Debian's package with its
//! default settings), and all are measured in the same run; the others' figures, fill
//! rates included, are also given as ratios to the plain ones.
//!
//! Budget: p99 <= 2 ms at 50 million stored reads, plain and encrypted. Lookups run through
//! `store::Readers` exactly as the node reads (a window longer than 8 days is read on up to 4
//! connections in parallel): a first pass (after 500 untimed lookups), then a second pass. Each series reports how many
//! bytes the kernel had to read from the disk, i.e. how much of it missed the OS page cache
//! (the database is larger than what this VM keeps cached), so first-pass (partly cold) and
//! second-pass (cached, steady state) figures are told apart; both are judged.
//!
//! The machine is shared: a series during which other processes used more than 10% of the
//! CPU is repeated (up to three times) and the cleanest is reported, with that share.
//!
//! Knobs: `ALPR_BENCH_BACKENDS` (default `plain,encrypted,postgres`; plain always runs),
//! `ALPR_BENCH_READS` (default 50_000_000), `ALPR_BENCH_LOOKUPS` (per window, default
//! 20_000), `ALPR_BENCH_DB` (a path: reuse that database, and the encrypted one beside it
//! at `<path>.encrypted`, if each holds the requested count, else build it there and keep
//! it; default: a temporary directory, deleted), `ALPR_BENCH_COLD=1` (drop the OS page cache
//! before measuring each database, so the first pass starts cold: needs root, as it writes
//! `/proc/sys/vm/drop_caches`; with a kept database this measures a node just restarted
//! after its cache was evicted).
//!
//! Run: `cargo bench --bench lookup` (or `ALPR_BENCH_READS=5_000_000 cargo bench --bench lookup`).

#[path = "common/mod.rs"]
mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use alpr_node::store::PgReads;
use alpr_node::store::encryption::DataKeys;
use alpr_proto::pb::Read;
use anyhow::{Context, Result, bail};
use common::{Rng, env_or, ms, pct, plate};
use rusqlite::OptionalExtension;

const DAYS: i64 = 90;
const DAY: i64 = 86_400;

/// Deterministic population: plate ids 0..plates; the first twentieth are frequent.
fn pick_plate(rng: &mut Rng, plates: u64) -> u64 {
    let hot = (plates / 20).max(1);
    if rng.below(2) == 0 {
        rng.below(hot)
    } else {
        rng.below(plates)
    }
}

fn fill(conn: &mut alpr_node::store::Db, n: u64, now: i64) -> Result<()> {
    let mut rng = Rng::new(0x5EED_0001);
    let plates = (n / 25).max(10_000);
    let start = now - DAYS * DAY;
    let span = (DAYS * DAY) as f64;
    let batch = alpr_node::ingest::BATCH as u64;
    let t = Instant::now();
    let mut last_print = Instant::now();
    let mut buf: Vec<Read> = Vec::with_capacity(batch as usize);
    let mut i = 0u64;
    while i < n {
        buf.clear();
        let end = (i + batch).min(n);
        for j in i..end {
            let t = start + (span * (j as f64 / n as f64)) as i64;
            buf.push(Read {
                plate: plate(pick_plate(&mut rng, plates)),
                captured_at: t,
                camera_id: format!("CA05601-CAM-{:03}", rng.below(120)),
                latitude: 34.1 + rng.unit() * 0.4,
                longitude: -119.4 + rng.unit() * 0.4,
                plate_state: "CA".into(),
            });
        }
        alpr_node::store::insert_reads(conn, &buf)?;
        i = end;
        if last_print.elapsed() > Duration::from_secs(30) {
            last_print = Instant::now();
            let el = t.elapsed().as_secs_f64();
            println!(
                "  ... {i} of {n} reads stored ({:.0} reads/s, {:.0} s)",
                i as f64 / el,
                el
            );
        }
    }
    conn.connection()
        .execute_batch("PRAGMA wal_checkpoint(TRUNCATE);")?;
    let el = t.elapsed().as_secs_f64();
    println!(
        "filled {n} reads in {el:.0} s ({:.0} reads/s), {plates} distinct plates",
        n as f64 / el
    );
    Ok(())
}

/// (plate, capture time) of about 500 random stored reads per day, to query plates that
/// exist. Rows are appended, so each day's rowids run from 1 to its row count.
fn samples(db: &alpr_node::store::Db) -> Result<Vec<(String, i64)>> {
    let conn = db.connection();
    let mut rng = Rng::new(0x05A3_F1E5);
    let mut out = Vec::new();
    for (d, rows) in alpr_node::store::partitions(db)? {
        let mut st = conn.prepare(&format!(
            "SELECT plate, captured_at FROM reads_{d} WHERE rowid = ?1"
        ))?;
        for _ in 0..500.min(rows) {
            let id = 1 + rng.below(rows.max(1) as u64) as i64;
            if let Some(r) = st
                .query_row([id], |r| Ok((r.get(0)?, r.get(1)?)))
                .optional()?
            {
                out.push(r);
            }
        }
    }
    Ok(out)
}

/// Bytes this process has made the kernel read from the disk (not from the page cache).
fn disk_read_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/io")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("read_bytes: "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

struct Stats {
    lat: Vec<Duration>,
    results: u64,
    /// Other processes' share of the CPU while this series ran.
    others: f64,
    /// Bytes read from the disk during the series (pages not in the OS page cache).
    disk_read: u64,
}

/// Other processes' CPU share above which a series is repeated (the machine is shared).
const NOISY: f64 = 0.10;

/// `run_lookups`, repeated up to three times while other processes loaded the CPU; the
/// cleanest series.
fn clean_lookups(
    readers: &alpr_node::store::Readers,
    samples: &[(String, i64)],
    window_days: i64,
    now: i64,
    count: usize,
    noisy: f64,
) -> Result<Stats> {
    let mut best: Option<Stats> = None;
    for attempt in 0..3u64 {
        let s = run_lookups(
            readers,
            samples,
            window_days,
            now,
            count,
            window_days as u64 + attempt,
        )?;
        let quiet = s.others <= noisy;
        if best.as_ref().is_none_or(|b| s.others < b.others) {
            best = Some(s);
        }
        if quiet {
            break;
        }
    }
    best.context("no series ran")
}

fn run_lookups(
    readers: &alpr_node::store::Readers,
    samples: &[(String, i64)],
    window_days: i64,
    now: i64,
    count: usize,
    seed: u64,
) -> Result<Stats> {
    let from = now - window_days * DAY;
    // A few seconds inside the window: a reused encrypted database was filled from the plain
    // one's newest read, which can shift capture times by a second.
    let eligible: Vec<&(String, i64)> = samples.iter().filter(|(_, t)| *t >= from + 5).collect();
    if eligible.is_empty() {
        bail!("no stored read in the last {window_days} days");
    }
    let mut rng = Rng::new(seed);
    let mut lat = Vec::with_capacity(count);
    let mut results = 0u64;
    let meter = common::CpuMeter::start();
    let read0 = disk_read_bytes();
    for _ in 0..count {
        let (p, _) = eligible[rng.below(eligible.len() as u64) as usize];
        let t = Instant::now();
        let key = alpr_node::store::PlateKey {
            plate: p,
            state: "CA",
        };
        let reads = readers.lookup(key, from, now)?;
        lat.push(t.elapsed());
        if reads.is_empty() {
            bail!("plate {p} stored in the window but not found");
        }
        results += reads.len() as u64;
    }
    let others = meter.stop().others;
    let disk_read = disk_read_bytes() - read0;
    lat.sort();
    Ok(Stats {
        lat,
        results,
        others,
        disk_read,
    })
}

fn report(label: &str, s: &Stats, budget: bool, server: bool) -> bool {
    let p99 = pct(&s.lat, 99.0);
    let pass = p99 <= Duration::from_millis(2);
    println!(
        "{label}: p50 {}, p90 {}, p99 {}, max {}, mean {:.1} reads returned, {}, {} {:.0}%{}",
        ms(pct(&s.lat, 50.0)),
        ms(pct(&s.lat, 90.0)),
        ms(p99),
        ms(s.lat.last().copied().unwrap_or_default()),
        s.results as f64 / s.lat.len() as f64,
        if server {
            "disk reads are the server's (not counted)".to_owned()
        } else {
            format!("{:.1} MB read from disk", s.disk_read as f64 / 1e6)
        },
        if server {
            "others' CPU (the PostgreSQL server's included)"
        } else {
            "others' CPU"
        },
        s.others * 100.0,
        if budget {
            format!(
                "  budget p99 <= 2 ms: {}",
                if pass { "PASS" } else { "FAIL" }
            )
        } else {
            String::new()
        }
    );
    pass
}

/// The fixed data keys of the encrypted database (so that a kept one can be reused).
fn bench_keys() -> Arc<DataKeys> {
    Arc::new(DataKeys::new(&[0x5a; 32]))
}

/// Open (filling it if new) the database at `path`, its reads in `pg` if given; returns
/// the fill rate (reads/s), if it was filled.
fn prepare(
    path: &Path,
    keys: Option<Arc<DataKeys>>,
    pg: Option<Arc<PgReads>>,
    n: u64,
    now: i64,
) -> Result<Option<f64>> {
    let label = match (&keys, &pg) {
        (Some(_), _) => "encrypted",
        (None, Some(_)) => "postgres",
        (None, None) => "plain",
    };
    let mut conn = alpr_node::store::open_at(path, keys.clone(), pg.clone())?;
    let have = alpr_node::store::count_reads(&conn)? as u64;
    if have == n && n > 0 {
        println!("reusing {label} {} ({have} reads)", path.display());
        compact(&mut conn, label, path, now)?;
        return Ok(None);
    }
    if have != 0 {
        bail!(
            "{} holds {have} reads, not {n}; remove it or choose another path",
            path.display()
        );
    }
    match &pg {
        Some(pg) => println!("filling the {label} database ({})", pg.label()),
        None => println!("filling the {label} database {}", path.display()),
    }
    let t = Instant::now();
    fill(&mut conn, n, now)?;
    let rate = n as f64 / t.elapsed().as_secs_f64();
    let stored = alpr_node::store::count_reads(&conn)?;
    let parts = alpr_node::store::partitions(&conn)?.len();
    let size = match &pg {
        Some(pg) => pg.size_bytes()?,
        None => std::fs::metadata(path).map(|m| m.len()).unwrap_or(0),
    };
    println!(
        "{label} database: {stored} reads in {parts} day partitions, {:.2} GB",
        size as f64 / 1e9
    );
    compact(&mut conn, label, path, now)?;
    Ok(Some(rate))
}

/// Compact every closed day as the node's hourly maintenance does
/// (`store::compact_one_closed`, a no-op for days already compacted).
fn compact(conn: &mut alpr_node::store::Db, label: &str, path: &Path, now: i64) -> Result<()> {
    let t = Instant::now();
    let mut days = 0;
    while alpr_node::store::compact_one_closed(conn, now)?.is_some() {
        days += 1;
    }
    if days > 0 && conn.postgres_reads().is_some() {
        println!(
            "{label} database: {days} closed day partitions vacuumed and analyzed in {:.1} s",
            t.elapsed().as_secs_f64()
        );
    } else if days > 0 {
        let _ = conn
            .connection()
            .execute_batch("PRAGMA wal_checkpoint(TRUNCATE)");
        println!(
            "{label} database: {days} closed day partitions compacted in {:.1} s ({:.2} GB file, free pages reused by later days)",
            t.elapsed().as_secs_f64(),
            std::fs::metadata(path).map(|m| m.len()).unwrap_or(0) as f64 / 1e9
        );
    }
    Ok(())
}

/// Both passes over one database; returns (7-day first, 30-day first, 7-day second,
/// 30-day second) and whether each met the budget.
fn measure(
    label: &str,
    readers: &alpr_node::store::Readers,
    samples: &[(String, i64)],
    now: i64,
    lookups: usize,
) -> Result<([Stats; 4], bool, bool)> {
    // The PostgreSQL server's own CPU counts as "others'": it is part of the work, so its
    // series are not repeated for it.
    let server = label == "postgres";
    let noisy = if server { f64::INFINITY } else { NOISY };
    // Warm the connection and the page cache a little (not timed).
    run_lookups(readers, samples, 30, now, 500, 1)?;
    println!("\n== {label}: lookups ({lookups} per window) ==");
    let s7 = clean_lookups(readers, samples, 7, now, lookups, noisy)?;
    let s30 = clean_lookups(readers, samples, 30, now, lookups, noisy)?;
    let first7 = report("Readers::lookup, last 7 days ", &s7, true, server);
    let first30 = report("Readers::lookup, last 30 days", &s30, true, server);
    // The same connections again, now that the pages are cached: steady state.
    let a7 = clean_lookups(readers, samples, 7, now, lookups, noisy)?;
    let a30 = clean_lookups(readers, samples, 30, now, lookups, noisy)?;
    println!("second pass:");
    let warm7 = report("  last 7 days ", &a7, true, server);
    let warm30 = report("  last 30 days", &a30, true, server);
    Ok(([s7, s30, a7, a30], first7 && first30, warm7 && warm30))
}

/// Write dirty pages out and drop the page cache, so the next reads come from the disk.
fn drop_page_cache() -> Result<()> {
    let synced = std::process::Command::new("sync").status()?;
    if !synced.success() {
        bail!("sync failed: {synced}");
    }
    std::fs::write("/proc/sys/vm/drop_caches", "3\n").context(
        "ALPR_BENCH_COLD=1: cannot write /proc/sys/vm/drop_caches (run as root, or unset it)",
    )?;
    println!("page cache dropped");
    Ok(())
}

fn main() -> Result<()> {
    common::print_machine();
    let cold = std::env::var("ALPR_BENCH_COLD").is_ok_and(|v| v == "1");
    let n: u64 = env_or("ALPR_BENCH_READS", 50_000_000);
    let lookups: usize = env_or("ALPR_BENCH_LOOKUPS", 20_000);
    let now = alpr_pki::now_unix();
    let (path, _tmp): (PathBuf, Option<tempfile::TempDir>) = match std::env::var("ALPR_BENCH_DB") {
        Ok(p) => (PathBuf::from(p), None),
        Err(_) => {
            let d = tempfile::tempdir()?;
            (d.path().join("node.db"), Some(d))
        }
    };
    let enc_path = PathBuf::from(format!("{}.encrypted", path.display()));
    println!("stored reads requested: {n} (ALPR_BENCH_READS), over the last {DAYS} days");
    // A reused plain database was filled relative to its own "now": query relative to its
    // newest read, and fill a new encrypted one from the same "now".
    let now = {
        let conn = alpr_node::store::open(&path)?;
        let have = alpr_node::store::count_reads(&conn)? as u64;
        if have == n && n > 0 {
            let last_day = alpr_node::store::partitions(&conn)?
                .last()
                .map(|(d, _)| *d)
                .unwrap_or(now / DAY);
            let newest: i64 = conn.connection().query_row(
                &format!("SELECT MAX(captured_at) FROM reads_{last_day}"),
                [],
                |r| r.get(0),
            )?;
            newest + 1
        } else {
            now
        }
    };
    let backends =
        std::env::var("ALPR_BENCH_BACKENDS").unwrap_or_else(|_| "plain,encrypted,postgres".into());
    let want = |b: &str| backends.split(',').any(|x| x.trim() == b);
    // The plain database is always filled: the baseline, and where the samples come from.
    let mut fills = vec![("plain", prepare(&path, None, None, n, now)?)];
    if want("encrypted") {
        fills.push((
            "encrypted",
            prepare(&enc_path, Some(bench_keys()), None, n, now)?,
        ));
    }
    // The same reads in PostgreSQL (a server of its own in a temporary directory, Debian's
    // package, default settings, fsync on), filled from the same "now".
    let pg_server;
    let mut pg_reads = None;
    let pg_dir = tempfile::tempdir()?;
    if want("postgres") {
        pg_server = alpr_runtime::pgserver::LocalPostgres::start()?;
        let url = pg_server.create_database("reads")?;
        let pg = Arc::new(PgReads::open(&url, None, "CA0560100")?);
        let node_db = pg_dir.path().join("node.db");
        fills.push((
            "postgres",
            prepare(&node_db, None, Some(pg.clone()), n, now)?,
        ));
        pg_reads = Some((node_db, pg));
    }
    let conn = alpr_node::store::open(&path)?;
    let stored = alpr_node::store::count_reads(&conn)?;
    let samples = samples(&conn)?;
    drop(conn);

    // Lookups go through the node's read connections, exactly as `answer_forwarded` does.
    let mut results = Vec::new();
    let plain = alpr_node::store::Readers::new(&path, None);
    if cold {
        drop_page_cache()?;
    }
    results.push(("plain", measure("plain", &plain, &samples, now, lookups)?));
    drop(plain);
    if want("encrypted") {
        let encrypted = alpr_node::store::Readers::new(&enc_path, Some(bench_keys()));
        if cold {
            drop_page_cache()?;
        }
        results.push((
            "encrypted",
            measure("encrypted", &encrypted, &samples, now, lookups)?,
        ));
    }
    if let Some((node_db, pg)) = &pg_reads {
        let readers = alpr_node::store::Readers::of(node_db, None, Some(pg.clone()));
        if cold {
            drop_page_cache()?;
        }
        results.push((
            "postgres",
            measure("postgres", &readers, &samples, now, lookups)?,
        ));
    }

    println!("\n== lookup results at {stored} stored reads ==");
    let base_fill = fills[0].1;
    for (name, rate) in &fills {
        match (rate, base_fill) {
            (Some(r), Some(b)) => println!(
                "fill (store::insert_reads, batches of {}): {name} {r:.0} reads/s ({:.0}% of plain)",
                alpr_node::ingest::BATCH,
                100.0 * r / b
            ),
            (Some(r), None) => println!("fill: {name} {r:.0} reads/s"),
            (None, _) => println!("fill: {name} reused, not filled in this run"),
        }
    }
    let names = [
        "7 d first pass",
        "30 d first pass",
        "7 d second pass",
        "30 d second pass",
    ];
    let plain_stats = &results[0].1.0;
    for (i, name) in names.iter().enumerate() {
        let pp = pct(&plain_stats[i].lat, 99.0);
        let mut line = format!(
            "{name}: p99 plain {} (p50 {})",
            ms(pp),
            ms(pct(&plain_stats[i].lat, 50.0))
        );
        for (label, (stats, _, _)) in &results[1..] {
            let p = pct(&stats[i].lat, 99.0);
            line.push_str(&format!(
                "; {label} {} ({:.2}x, p50 {})",
                ms(p),
                p.as_secs_f64() / pp.as_secs_f64().max(1e-9),
                ms(pct(&stats[i].lat, 50.0))
            ));
        }
        println!("{line}");
    }
    let verdict = |ok: bool| if ok { "PASS" } else { "FAIL" };
    let verdicts: Vec<String> = results
        .iter()
        .map(|(label, (_, first, warm))| {
            format!(
                "{label} first pass {}, second pass {}",
                verdict(*first),
                verdict(*warm)
            )
        })
        .collect();
    println!(
        "budget p99 <= 2 ms at {stored} reads: {}",
        verdicts.join("; ")
    );
    Ok(())
}
