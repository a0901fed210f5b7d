//! Wide fan-out (issue 19, item 2): one investigator's query naming `ALPR_BENCH_TARGETS`
//! agencies (default 100), every one a real node of its own over mutual TLS on loopback,
//! all in this process, sealed (the product's default): the requesting node seals one box
//! per target, the broker admits and forwards to each, each owner's node opens, decides,
//! logs and answers, and the requesting node opens every sealed reply.
//!
//! Printed, in one run:
//! * wide-query latency (send to the last target's reply) over `ALPR_BENCH_QUERIES`
//!   sequential queries, against a baseline measured the same way: the same query to one
//!   target. Budget: p99 <= 50 ms for 100 targets;
//! * the investigator's CPU to verify the N signed answers it receives (µs per answer);
//! * the federation's CPU per wide query (every party is in this process), and the share of
//!   the requesting node and of the broker: each runs again on a tokio runtime of its own
//!   whose threads are named (`req-node`, `broker`), and its CPU is those threads' user +
//!   system time (`/proc/self/task/*/stat`, 10 ms ticks). In a deployment each owner runs
//!   on its own machine: the requester's and the broker's CPU plus one owner's answer is
//!   the estimate of a wide query's latency printed beside the measured one;
//! * the broker's memory per in-flight wide query: the process's resident-set high-water
//!   mark while `ALPR_BENCH_INFLIGHT` wide queries run at once, over the idle level, per
//!   query. Each target is sent the endorsement (which signs one root over every box) with
//!   only its own box and that box's log2(N)-hash inclusion proof attached, so what grows
//!   with N per target is only the routing copy's target list (about 11 bytes per target).
//!
//! Then the widest query the wire allows, with failures among its targets: one query naming
//! `ALPR_BENCH_WIDE` agencies (default 1,000): the `ALPR_BENCH_TARGETS` nodes above,
//! `ALPR_BENCH_SLOW` more real nodes (default 100) that the broker reaches over a slow link
//! (`ALPR_BENCH_SLOW_MS` each way per chunk, default 100 ms), and the rest agencies with
//! certificates, a published sealing key and agreements but no working node: half of them
//! down (connections closed at once), half silent (a host that accepts TCP and never
//! answers). The broker's deadline is `ALPR_BENCH_DEADLINE_MS` (default 3,000). Printed:
//! every target's status (counts by outcome), the latency against the deadline, the
//! requesting node's and the broker's CPU and the broker's memory per such query.
//!
//! Run: `cargo bench --bench fanout`.

#[path = "common/mod.rs"]
mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use alpr_federation::faults::Fault;
use alpr_federation::{
    AgencySpec, Extras, Federation, investigator_of, open_policy, params, synthetic_csv,
};
use alpr_node::client;
use alpr_node::config::PolicyConfig;
use alpr_proto::pb::TargetStatus;
use alpr_runtime::client::Target;
use anyhow::{Context, Result, bail};
use common::{env_or, ms, pct};
use prost::Message;

const REQUESTER: &str = "CA0340000";
const PLATE: &str = "8ABC123";

/// The requester and `n` owner agencies, all California local agencies.
fn agencies(n: usize) -> Vec<AgencySpec> {
    let mut v = vec![AgencySpec {
        ori: REQUESTER,
        name: "Sacramento County Sheriff",
        jurisdiction: "US-CA",
        kind: "local",
    }];
    for i in 0..n {
        v.push(AgencySpec {
            ori: Box::leak(format!("CA9{i:05}0").into_boxed_str()),
            name: Box::leak(format!("Agency {i}").into_boxed_str()),
            jurisdiction: "US-CA",
            kind: "local",
        });
    }
    v
}

/// `n` agencies with no node here (their routes lead to stand-ins), ORIs after the first
/// `first` owners'.
fn failing(first: usize, n: usize) -> Vec<AgencySpec> {
    (first..first + n)
        .map(|i| AgencySpec {
            ori: Box::leak(format!("CA9{i:05}0").into_boxed_str()),
            name: Box::leak(format!("Agency {i}").into_boxed_str()),
            jurisdiction: "US-CA",
            kind: "local",
        })
        .collect()
}

/// Resident set size of this process, bytes (`VmRSS`).
fn rss() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

/// User + system CPU of this process's threads whose name starts with `prefix`.
fn thread_cpu(prefix: &str) -> Duration {
    let mut ticks = 0u64;
    for t in std::fs::read_dir("/proc/self/task")
        .into_iter()
        .flatten()
        .flatten()
    {
        let comm = std::fs::read_to_string(t.path().join("comm")).unwrap_or_default();
        if !comm.starts_with(prefix) {
            continue;
        }
        let stat = std::fs::read_to_string(t.path().join("stat")).unwrap_or_default();
        // Fields after the ")" that closes the name: utime and stime are the 12th and 13th.
        let Some(close) = stat.rfind(')') else {
            continue;
        };
        let f: Vec<&str> = stat[close + 2..].split(' ').collect();
        ticks += f.get(11).and_then(|x| x.parse::<u64>().ok()).unwrap_or(0)
            + f.get(12).and_then(|x| x.parse::<u64>().ok()).unwrap_or(0);
    }
    Duration::from_secs_f64(ticks as f64 / 100.0)
}

/// A runtime of its own, its threads named `name`.
fn runtime(name: &str) -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .worker_threads(2)
        .thread_name(name)
        .thread_keep_alive(Duration::from_secs(3600))
        .build()?)
}

async fn run(req_rt: &tokio::runtime::Runtime, broker_rt: &tokio::runtime::Runtime) -> Result<()> {
    common::print_machine();
    let n: usize = env_or("ALPR_BENCH_TARGETS", 100);
    let queries: usize = env_or("ALPR_BENCH_QUERIES", 30);
    let inflight: usize = env_or("ALPR_BENCH_INFLIGHT", 4);

    let widest: usize = env_or("ALPR_BENCH_WIDE", 1000);
    let slow_n: usize = env_or("ALPR_BENCH_SLOW", 100);
    let slow_ms: u64 = env_or("ALPR_BENCH_SLOW_MS", 100);
    let deadline_ms: u64 = env_or("ALPR_BENCH_DEADLINE_MS", 3000);
    let wide_queries: usize = env_or("ALPR_BENCH_WIDE_QUERIES", 5);
    if widest > alpr_proto::admission::MAX_TARGETS || widest < n + slow_n {
        bail!(
            "ALPR_BENCH_WIDE must be between TARGETS + SLOW ({}) and {}",
            n + slow_n,
            alpr_proto::admission::MAX_TARGETS
        );
    }
    let broken = widest - n - slow_n;
    let (down_n, silent_n) = (broken / 2, broken - broken / 2);

    let t = Instant::now();
    let all = agencies(n + slow_n);
    let gone = failing(n + slow_n, broken);
    let slow: Vec<(String, Duration)> = all[1 + n..]
        .iter()
        .map(|a| (a.ori.to_string(), Duration::from_millis(slow_ms)))
        .collect();
    let stand_ins = gone
        .iter()
        .enumerate()
        .map(|(i, a)| {
            let fault = if i < down_n {
                Fault::Down
            } else {
                Fault::Silent
            };
            (a.clone(), fault)
        })
        .collect();
    let mut fed = Federation::start_full(
        None,
        &all,
        |_| PolicyConfig {
            max_queries_per_minute: 1_000_000_000,
            ..open_policy()
        },
        &[],
        // Owners serve no console and no metrics here: two listeners fewer per node.
        &|c| {
            c.console = None;
            c.metrics_listen = None;
        },
        Extras {
            failing: stand_ins,
            slow,
            deadline_ms: Some(deadline_ms),
            ..Default::default()
        },
    )
    .await?;
    let owners: Vec<&str> = all[1..].iter().map(|a| a.ori).collect();
    let targets: Vec<&str> = owners[..n].to_vec();
    let mut terms = Vec::new();
    for t in owners.iter().chain(gone.iter().map(|a| &a.ori)) {
        if fed.nodes.contains_key(*t) {
            fed.ingest_csv(t, &synthetic_csv(t, &[PLATE], 3))?;
        }
        terms.push(Federation::terms(t, REQUESTER, &["240"], 30, 86_400));
    }
    fed.agree_many(&terms).await?;
    println!(
        "federation: broker + requester {REQUESTER} + {} owner nodes ({slow_n} of them behind a {slow_ms} ms link) + {broken} agencies without a working node ({down_n} down, {silent_n} silent) on 127.0.0.1 over mTLS, sealed, in one process (set up in {:.1} s, {:.0} MB resident)",
        n + slow_n,
        t.elapsed().as_secs_f64(),
        rss() as f64 / 1e6
    );
    // The requesting node and the broker again, each on its runtime of its own (same
    // configs, same addresses), so that their CPU can be told apart.
    let cfg = fed.node_configs[REQUESTER].clone();
    fed.nodes
        .remove(REQUESTER)
        .context("requester")?
        .stop()
        .await?;
    let node = req_rt
        .spawn(async move { alpr_node::start(&cfg).await })
        .await??;
    fed.nodes.insert(REQUESTER.into(), node);
    let bcfg = alpr_broker::BrokerConfig::load(&fed.dir.join("broker").join("broker.toml"))?;
    fed.broker.halt().await?;
    let broker = broker_rt
        .spawn(async move { alpr_broker::start(&bcfg).await })
        .await??;
    let old = std::mem::replace(&mut fed.broker, broker);
    drop(old);

    let (signer, tls) = fed.person(REQUESTER, &investigator_of(REQUESTER))?;
    let node = Target {
        addr: fed
            .nodes
            .get(REQUESTER)
            .context("requester")?
            .addr
            .to_string(),
        server_name: "localhost".into(),
    };
    let mut c = client::node_client(&node, &fed.trust, &tls, Duration::from_secs(60))?;

    // One query, timed, with every target's status checked and every answer verified.
    let mut verify_secs = 0.0;
    let mut verified = 0u64;
    let mut endorsed_len = 0usize;
    let one = |to: &[&str]| {
        let p = params(PLATE, to, "240", 3);
        client::sign_query(&signer, &fed.trust, &p, alpr_pki::now_unix())
    };
    let mut query = async |to: &[&str], verify: bool| -> Result<Duration> {
        let (q, signed) = one(to)?;
        let t0 = Instant::now();
        let resp = client::search(&mut c, &signed).await?;
        let took = t0.elapsed();
        if resp.results.len() != to.len() {
            bail!("{} results for {} targets", resp.results.len(), to.len());
        }
        if let Some(r) = resp
            .results
            .iter()
            .find(|r| r.status != TargetStatus::Answered as i32)
        {
            bail!("{} did not answer: {} {}", r.ori, r.status, r.detail);
        }
        if verify {
            let now = alpr_pki::now_unix();
            let v0 = Instant::now();
            for r in &resp.results {
                client::verify_reply(&fed.trust, r, &q, now)?;
            }
            verify_secs += v0.elapsed().as_secs_f64();
            verified += resp.results.len() as u64;
            endorsed_len = endorsed_len.max(q.encoded_len());
        }
        Ok(took)
    };
    // Warm-up: connections to every node opened outside the timed window.
    query(&targets, false).await?;
    query(&targets[..1], false).await?;

    let single_meter = common::CpuMeter::start();
    let mut single = Vec::with_capacity(queries);
    for _ in 0..queries {
        single.push(query(&targets[..1], false).await?);
    }
    let single_cpu = single_meter.stop();
    single.sort();
    let meter = common::CpuMeter::start();
    let (req0, broker0) = (thread_cpu("req-node"), thread_cpu("broker"));
    let mut wide = Vec::with_capacity(queries);
    for _ in 0..queries {
        wide.push(query(&targets, true).await?);
    }
    let cpu = meter.stop();
    let req_cpu = (thread_cpu("req-node") - req0).as_secs_f64() * 1e3 / queries as f64;
    let broker_cpu = (thread_cpu("broker") - broker0).as_secs_f64() * 1e3 / queries as f64;
    wide.sort();

    // Memory per in-flight wide query: the RSS high-water mark over the idle level while
    // `inflight` wide queries run at once (a sampler thread reads VmRSS every millisecond).
    let idle = rss();
    let peak = Arc::new(AtomicU64::new(idle));
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (peak, stop) = (peak.clone(), stop.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                peak.fetch_max(rss(), Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(1));
            }
        })
    };
    let mut tasks = Vec::new();
    for _ in 0..inflight {
        let mut c = client::node_client(&node, &fed.trust, &tls, Duration::from_secs(60))?;
        let p = params(PLATE, &targets, "240", 3);
        let (_, signed) = client::sign_query(&signer, &fed.trust, &p, alpr_pki::now_unix())?;
        tasks.push(tokio::spawn(async move {
            client::search(&mut c, &signed).await
        }));
    }
    for t in tasks {
        t.await??;
    }
    stop.store(true, Ordering::Relaxed);
    let _ = sampler.join();
    let per_query = peak.load(Ordering::Relaxed).saturating_sub(idle) / inflight as u64;

    let p99 = pct(&wide, 99.0);
    println!("\n== fan-out results ==");
    println!(
        "query to {n} targets, {queries} sequential: p50 {}, p90 {}, p99 {}, max {}  budget p99 <= 50 ms: {}",
        ms(pct(&wide, 50.0)),
        ms(pct(&wide, 90.0)),
        ms(p99),
        ms(wide.last().copied().unwrap_or_default()),
        if p99 <= Duration::from_millis(50) {
            "PASS"
        } else {
            "FAIL"
        }
    );
    println!(
        "baseline, the same query to 1 target: p50 {}, p99 {}; wide / single p50 = {:.1}x for {n}x the targets",
        ms(pct(&single, 50.0)),
        ms(pct(&single, 99.0)),
        pct(&wide, 50.0).as_secs_f64() / pct(&single, 50.0).as_secs_f64().max(1e-9)
    );
    println!(
        "federation CPU per wide query (every party in this process): {:.1} ms ({:.0} us per target; a 1-target query: {:.0} us); machine: ours {:.0}%, others {:.0}%",
        cpu.own_secs * 1e3 / queries as f64,
        cpu.own_secs * 1e6 / (queries * n) as f64,
        single_cpu.own_secs * 1e6 / queries as f64,
        cpu.own * 100.0,
        cpu.others * 100.0
    );
    let estimate = req_cpu + broker_cpu + pct(&single, 50.0).as_secs_f64() * 1e3;
    println!(
        "of which the requesting node {req_cpu:.1} ms and the broker {broker_cpu:.1} ms per wide query; with each owner on a machine of its own: about {estimate:.1} ms (theirs + one owner's answer, the 1-target p50)  budget <= 50 ms: {}",
        if estimate <= 50.0 {
            "PASS (estimate)"
        } else {
            "FAIL (estimate)"
        }
    );
    println!(
        "investigator's verification of the signed answers: {:.0} us per answer, {:.1} ms for {n}",
        verify_secs * 1e6 / verified.max(1) as f64,
        verify_secs * 1e3 / (verified.max(1) as f64 / n as f64)
    );
    println!(
        "memory per in-flight wide query ({inflight} at once): {:.1} MB of resident set over idle ({:.1} MB)",
        per_query as f64 / 1e6,
        idle as f64 / 1e6
    );
    println!(
        "the investigator's signed query: {:.1} KB; each target is sent the endorsement (one root over the {n} boxes) with its own box and a {}-hash proof only",
        endorsed_len as f64 / 1e3,
        (n as f64).log2().ceil()
    );

    // The widest query, failures among its targets.
    let everyone: Vec<&str> = owners
        .iter()
        .copied()
        .chain(gone.iter().map(|a| a.ori))
        .collect();
    let mut c = client::node_client(&node, &fed.trust, &tls, Duration::from_secs(120))?;
    let mut latencies = Vec::with_capacity(wide_queries);
    let mut counts: std::collections::BTreeMap<String, usize> = Default::default();
    let mut wrong = 0usize;
    let (mut verify_wide, mut verified_wide) = (0.0f64, 0u64);
    let idle = rss();
    let peak = Arc::new(AtomicU64::new(idle));
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (peak, stop) = (peak.clone(), stop.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                peak.fetch_max(rss(), Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(1));
            }
        })
    };
    let (req0, broker0) = (thread_cpu("req-node"), thread_cpu("broker"));
    for _ in 0..wide_queries {
        let p = params(PLATE, &everyone, "240", 3);
        let (q, signed) = client::sign_query(&signer, &fed.trust, &p, alpr_pki::now_unix())?;
        let t0 = Instant::now();
        let resp = client::search(&mut c, &signed).await?;
        latencies.push(t0.elapsed());
        for ori in &everyone {
            let Some(r) = resp.results.iter().find(|r| r.ori == *ori) else {
                bail!("no status for {ori} among {} results", resp.results.len());
            };
            let outcome = match TargetStatus::try_from(r.status) {
                Ok(TargetStatus::Answered) => "answered".to_string(),
                Ok(TargetStatus::Unavailable) if r.detail.starts_with("no answer within") => {
                    "unavailable: deadline".to_string()
                }
                Ok(TargetStatus::Unavailable) => {
                    format!(
                        "unavailable: {}",
                        r.detail.chars().take(60).collect::<String>()
                    )
                }
                _ => format!("{} ({})", r.status, r.detail),
            };
            let expected = if fed.nodes.contains_key(*ori) {
                "answered"
            } else {
                "unavailable"
            };
            if !outcome.starts_with(expected) {
                wrong += 1;
            }
            *counts.entry(outcome).or_default() += 1;
        }
        let now = alpr_pki::now_unix();
        let v0 = Instant::now();
        for r in resp
            .results
            .iter()
            .filter(|r| r.status == TargetStatus::Answered as i32)
        {
            client::verify_reply(&fed.trust, r, &q, now)?;
            verified_wide += 1;
        }
        verify_wide += v0.elapsed().as_secs_f64();
    }
    let req_wide = (thread_cpu("req-node") - req0).as_secs_f64() * 1e3 / wide_queries as f64;
    let broker_wide = (thread_cpu("broker") - broker0).as_secs_f64() * 1e3 / wide_queries as f64;
    stop.store(true, Ordering::Relaxed);
    let _ = sampler.join();
    latencies.sort();
    let deadline = Duration::from_millis(deadline_ms);
    let worst = latencies.last().copied().unwrap_or_default();
    println!(
        "\nquery to {widest} targets ({} real, {slow_n} of them slow; {down_n} down, {silent_n} silent), {wide_queries} sequential: p50 {}, max {}; the broker's deadline {deadline_ms} ms: {}",
        n + slow_n,
        ms(pct(&latencies, 50.0)),
        ms(worst),
        if worst <= deadline + Duration::from_secs(1) {
            "every status returned by deadline + 1 s: PASS"
        } else {
            "FAIL (later than deadline + 1 s)"
        }
    );
    let per_query: Vec<String> = counts
        .iter()
        .map(|(k, v)| format!("{k} {:.0}", *v as f64 / wide_queries as f64))
        .collect();
    println!(
        "per-target status, per query: {}; statuses not as expected (a real node not answered, a stand-in not unavailable): {}",
        per_query.join(", "),
        wrong as f64 / wide_queries as f64
    );
    println!(
        "the requesting node {req_wide:.1} ms and the broker {broker_wide:.1} ms of CPU per {widest}-target query; the investigator's check of its {:.0} answers: {:.1} ms",
        verified_wide as f64 / wide_queries as f64,
        verify_wide * 1e3 / wide_queries as f64
    );
    println!(
        "memory while {widest}-target queries run one at a time: {:.1} MB of resident set over idle ({:.1} MB)",
        peak.load(Ordering::Relaxed).saturating_sub(idle) as f64 / 1e6,
        idle as f64 / 1e6
    );
    fed.stop().await?;
    Ok(())
}

fn main() -> Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("bench")
        .build()?;
    let (req_rt, broker_rt) = (runtime("req-node")?, runtime("broker")?);
    rt.block_on(run(&req_rt, &broker_rt))
}
