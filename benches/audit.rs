//! Audit append under concurrent queries: group commit vs one transaction per entry
//! (DESIGN §9, issue 7).
//!
//! N threads (query handlers) each append single `inbound_query` entries as fast as they
//! can for a fixed time:
//!
//! * **group commit**: `alpr_node::store::AuditLog` — one writer thread, one transaction
//!   (one fsync) for everything queued, signed checkpoints every 256 entries;
//! * **per-entry transaction** (baseline): the same schema, hash chain and pragmas (WAL,
//!   `synchronous=FULL`) through one shared connection, one `BEGIN IMMEDIATE ... COMMIT`
//!   per entry, i.e. one fsync per query.
//!
//! Printed per thread count: entries/s, device cache flushes per entry (the fsync barriers
//! the disk actually received, from /sys/block/<dev>/stat, machine-wide, so other activity
//! on the disk adds a little), commits per entry (baseline: 1 by construction; group
//! commit: estimated as flushes per entry divided by the baseline's flushes per commit),
//! and the fsyncs saved. Both logs are verified (hash chain, checkpoint signatures) after.
//!
//! The two alternate in `ALPR_BENCH_SLICES` slices (default 4) so that drift in the disk's
//! fsync latency (other writers on the machine) hits both alike.
//!
//! Knobs: `ALPR_BENCH_THREADS` (default `1,2,4,8,16,32,64`), `ALPR_BENCH_SECS` (seconds per
//! side and thread count, default 4), `ALPR_BENCH_SLICES`.
//! Run: `cargo bench --bench audit`.

#[path = "common/mod.rs"]
mod common;

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use alpr_node::audit::{AuditEntry, Decision, Event, GENESIS};
use alpr_node::store::{AuditDb, AuditLog};
use alpr_pki::{PkiLayout, Signer, TrustStore};
use anyhow::{Context, Result, bail};
use common::{env_list, env_or};
use rusqlite::{Connection, OptionalExtension, params};

const ORI: &str = "CA0560100";

fn entry(i: u64) -> AuditEntry {
    AuditEntry {
        query_id: Some(format!("{i:032x}")),
        requester_ori: Some("CA0340000".into()),
        requester_agency: Some("Sacramento County Sheriff (US-CA, local)".into()),
        requester_user: Some("inv-ca0340000".into()),
        peer: Some("CA-BROKER (broker)".into()),
        plate: Some("8ABC123".into()),
        purpose: Some("240".into()),
        case_number: Some("SSD-2026-018832".into()),
        reason: Some(
            "Silver Honda Civic stolen from Fair Oaks driveway; owner reported this plate on 11/20"
                .into(),
        ),
        window_start: Some(alpr_pki::now_unix() - 5 * 86_400),
        window_end: Some(alpr_pki::now_unix()),
        target: Some("CA0560100,CA0100500,CA0190000".into()),
        agreement_id: Some("a1b2c3d4e5f60718293a4b5c6d7e8f90".into()),
        rule_version: Some("US-CA/2026.1".into()),
        count: Some(5),
        ..AuditEntry::new(
            alpr_pki::now_unix(),
            Event::InboundQuery,
            Decision::Answered,
        )
    }
}

/// A node signer from a fresh state PKI (for checkpoint signatures).
fn make_pki(dir: &Path) -> Result<(Arc<Signer>, TrustStore)> {
    use alpr_pki::issue::Overwrite;
    let layout = PkiLayout::new(dir);
    layout.create_root("Bench Root", 3650, Overwrite::Refuse)?;
    let claims = alpr_pki::AgencyClaims::new(
        ORI,
        "Ventura Police Department",
        "US-CA".parse()?,
        alpr_pki::AgencyKind::Local,
    )?;
    layout.create_agency(&claims, 1825, Overwrite::Refuse)?;
    layout.issue_node(ORI, vec!["localhost".into()], 365, Overwrite::Refuse)?;
    let (cert, key) = layout.node(ORI);
    let trust = TrustStore::load(&layout.root_cert(), &layout.all_crls())?;
    Ok((Arc::new(Signer::load(&cert, &key)?), trust))
}

type Appender = Arc<dyn Fn(u64) -> Result<()> + Send + Sync>;

#[derive(Default)]
struct Outcome {
    entries: u64,
    secs: f64,
    flushes: Option<u64>,
}

impl Outcome {
    fn add(&mut self, o: Outcome) {
        self.entries += o.entries;
        self.secs += o.secs;
        self.flushes = self.flushes.zip(o.flushes).map(|(a, b)| a + b);
    }
}

/// Run `threads` appenders for `secs`, each calling `append(i)` once per entry.
fn drive(threads: usize, secs: f64, dev: Option<&str>, append: Appender) -> Result<Outcome> {
    let stop = Arc::new(AtomicBool::new(false));
    let count = Arc::new(AtomicU64::new(0));
    let f0 = dev.and_then(common::device_flushes);
    let t0 = Instant::now();
    let mut hs = Vec::new();
    for th in 0..threads {
        let (stop, count, append) = (stop.clone(), count.clone(), append.clone());
        hs.push(std::thread::spawn(move || -> Result<()> {
            let mut i = (th as u64) << 40;
            while !stop.load(Ordering::Relaxed) {
                append(i)?;
                i += 1;
                count.fetch_add(1, Ordering::Relaxed);
            }
            Ok(())
        }));
    }
    std::thread::sleep(Duration::from_secs_f64(secs));
    stop.store(true, Ordering::Relaxed);
    for h in hs {
        h.join()
            .map_err(|_| anyhow::anyhow!("appender panicked"))??;
    }
    let secs = t0.elapsed().as_secs_f64();
    let f1 = dev.and_then(common::device_flushes);
    Ok(Outcome {
        entries: count.load(Ordering::Relaxed),
        secs,
        flushes: f0.zip(f1).map(|(a, b)| b - a),
    })
}

fn chain_hash(prev: &str, json: &str) -> String {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    ctx.update(prev.as_bytes());
    ctx.update(b"\n");
    ctx.update(json.as_bytes());
    hex::encode(ctx.finish().as_ref())
}

/// The baseline: one transaction (one fsync) per entry, same schema and chain.
fn per_entry_append(conn: &Mutex<Connection>, e: &AuditEntry) -> Result<()> {
    let mut conn = conn.lock().unwrap_or_else(|p| p.into_inner());
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let (prev, seq): (String, i64) = tx
        .query_row(
            "SELECT hash, seq FROM audit ORDER BY seq DESC LIMIT 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?
        .unwrap_or_else(|| (GENESIS.to_owned(), 0));
    let json = serde_json::to_string(e)?;
    let hash = chain_hash(&prev, &json);
    tx.prepare_cached(
        "INSERT INTO audit (seq, at, event, entry, prev_hash, hash) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?
    .execute(params![seq + 1, e.at, e.event.as_str(), json, prev, hash])?;
    tx.commit()?;
    Ok(())
}

fn main() -> Result<()> {
    common::print_machine();
    let threads = env_list("ALPR_BENCH_THREADS", &[1, 2, 4, 8, 16, 32, 64]);
    let secs: f64 = env_or("ALPR_BENCH_SECS", 4.0);
    let slices: usize = env_or("ALPR_BENCH_SLICES", 4);
    let tmp = tempfile::tempdir()?;
    let dev = common::block_device_of(tmp.path());
    println!(
        "audit databases in {} (block device {}), WAL, synchronous=FULL",
        tmp.path().display(),
        dev.as_deref().unwrap_or("unknown: flushes not counted")
    );
    let (signer, trust) = make_pki(&tmp.path().join("pki"))?;

    // Idle flush rate of the disk (other activity on the machine), to judge the counts.
    let idle = {
        let f0 = dev.as_deref().and_then(common::device_flushes);
        std::thread::sleep(Duration::from_secs(1));
        let f1 = dev.as_deref().and_then(common::device_flushes);
        f0.zip(f1).map(|(a, b)| b - a)
    };
    if let Some(i) = idle {
        println!("idle disk flushes: {i} in 1 s (background noise in the counts below)");
    }

    println!(
        "\n threads | group commit: entries/s  flushes/entry  commits/entry | per-entry tx: entries/s  flushes/entry | speedup  fsyncs saved"
    );
    let mut rows = Vec::new();
    let mut checkpoints = 0;
    for &n in &threads {
        // Each in its own database; slices alternate so drift in the disk hits both.
        let bpath = tmp.path().join(format!("per_entry_{n}.db"));
        // The baseline writes through its own connection, as a naive node would; the
        // schema is the node's.
        drop(AuditDb::open(&bpath)?);
        let bconn = Arc::new(Mutex::new(alpr_runtime::sqlite::open(
            &bpath,
            Duration::from_secs(30),
        )?));
        let gpath = tmp.path().join(format!("group_{n}.db"));
        let log = AuditLog::open(
            &gpath,
            Some(alpr_node::audit::HeadSigner {
                signer: signer.clone(),
                ori: ORI.into(),
            }),
        )?;
        let template = entry(0);
        let bc = bconn.clone();
        let base_fn: Appender = Arc::new(move |i| {
            let mut e = template.clone();
            e.query_id = Some(format!("{i:032x}"));
            per_entry_append(&bc, &e)
        });
        let template = entry(0);
        let lg = log.clone();
        let group_fn: Appender = Arc::new(move |i| {
            let mut e = template.clone();
            e.query_id = Some(format!("{i:032x}"));
            lg.append(vec![e])?;
            Ok(())
        });
        let zero = || Outcome {
            flushes: Some(0),
            ..Default::default()
        };
        let (mut base, mut group) = (zero(), zero());
        for _ in 0..slices {
            base.add(drive(
                n,
                secs / slices as f64,
                dev.as_deref(),
                base_fn.clone(),
            )?);
            group.add(drive(
                n,
                secs / slices as f64,
                dev.as_deref(),
                group_fn.clone(),
            )?);
        }
        drop((base_fn, group_fn, log));
        let bv = alpr_node::store::audit::verify(&AuditDb::open(&bpath)?, None)
            .context("per-entry log does not verify")?;
        if bv.entries != base.entries {
            bail!(
                "per-entry log holds {} entries, appended {}",
                bv.entries,
                base.entries
            );
        }
        let gconn = alpr_node::store::AuditDb::open(&gpath)?;
        let v = alpr_node::store::audit::verify(&gconn, Some((&trust, ORI)))
            .context("group-commit log does not verify")?;
        if v.entries != group.entries {
            bail!(
                "group-commit log holds {} entries, appended {}",
                v.entries,
                group.entries
            );
        }
        checkpoints += v.checkpoints;

        let g_rate = group.entries as f64 / group.secs;
        let b_rate = base.entries as f64 / base.secs;
        let per = |o: &Outcome| o.flushes.map(|f| f as f64 / o.entries.max(1) as f64);
        let (gf, bf) = (per(&group), per(&base));
        let commits = gf.zip(bf).map(|(g, b)| (g / b).min(1.0));
        println!(
            " {n:>7} | {g_rate:>22.0} {:>14} {:>14} | {b_rate:>22.0} {:>14} | {:>6.1}x  {}",
            gf.map(|v| format!("{v:.3}")).unwrap_or_else(|| "-".into()),
            commits
                .map(|v| format!("{v:.3}"))
                .unwrap_or_else(|| "-".into()),
            bf.map(|v| format!("{v:.3}")).unwrap_or_else(|| "-".into()),
            g_rate / b_rate,
            commits
                .map(|c| format!("{:.0}%", (1.0 - c) * 100.0))
                .unwrap_or_else(|| "-".into()),
        );
        rows.push((n, g_rate, b_rate, commits));
        std::fs::remove_file(&bpath).ok();
        std::fs::remove_file(&gpath).ok();
    }
    println!(
        "both logs verified after every run (hash chain; {checkpoints} signed checkpoints in the group-commit logs)"
    );
    println!("\n== audit results ==");
    for (n, g, b, c) in &rows {
        println!(
            "{n} threads: group commit {g:.0} entries/s vs per-entry transaction {b:.0} entries/s ({:.1}x); commits per entry ~{}",
            g / b,
            c.map(|v| format!("{v:.3}")).unwrap_or_else(|| "n/a".into())
        );
    }
    let storm = rows
        .iter()
        .filter(|(n, ..)| *n >= 4)
        .all(|(_, _, _, c)| c.is_none_or(|c| c < 0.5));
    println!(
        "budget (group commit, no per-query fsync storm: < 0.5 commits per entry at >= 4 threads): {}",
        if storm { "PASS" } else { "FAIL" }
    );
    Ok(())
}
