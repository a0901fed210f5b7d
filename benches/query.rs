//! End-to-end query throughput and latency (DESIGN §9, issue 7).
//!
//! A broker, the requesting agency's node and three target nodes run in this process over
//! real mutual TLS on 127.0.0.1, with their databases in a temporary directory (durable:
//! WAL, `synchronous=FULL`). Investigators (tokio tasks, one mTLS connection each) sign a
//! query to all three targets and send it through their own node; every target answers.
//!
//! Figures printed:
//! * the **crypto floor**: the same number of ECDSA P-256 signs and verifies that one routed
//!   query costs, alone, on all cores, timed in the same run (before and after the load);
//! * closed-loop throughput at rising concurrency, the **peak**, and peak / floor
//!   (budget >= 50%);
//! * the **hops floor** (issue 19): a raw tonic echo over the same five mTLS hops
//!   (investigator → node → broker → each target) with the message sizes of a real query
//!   and the same signs and verifies at each party (`common/echo.rs`), its best closed
//!   loop; peak / hops floor (budget >= 50%);
//! * open-loop latency p50 / p99 at **half of the peak rate** (budget p99 <= 10 ms),
//!   measured from each query's scheduled start, so queueing delay counts.
//!
//! ECDSA operations per routed query with three answering targets, counted in the code and
//! confirmed under gdb (hits on ring's verify and sign: a 30-query run minus a 10-query run
//! gives exactly 15.0 and 5.0 per query, session 3: 120-query minus 20-query run). Verified certificate chains are cached per CRL
//! set (`alpr_pki::TrustStore`), so after the first query a chain costs nothing and
//! `envelope::open` costs the one message signature:
//!
//! | party | signs | verifies |
//! |---|---|---|
//! | investigator: `client::sign_query` (own chain: cached; sign) | 1 | 0 |
//! | requesting node: TLS peer identity (cached), `check_local` opens the query 1; endorse; every relayed reply verified again (`alpr_proto::reply::verify`: a compromised broker cannot pass off a reply) 3 x 1 | 1 | 4 |
//! | broker: peer identity (cached), `admission::open` 2 (endorsement, nested query), `admit_opened` per target 0, each reply opened 3 x 1 | 0 | 5 |
//! | each target: peer identity (cached), `admission::open` 2; sign answer | 3 x 1 | 3 x 2 |
//! | **total** | **5** | **15** |
//!
//! (Audit checkpoints add one sign per 256 entries, ~7 entries per query: ~0.03 signs, not
//! counted. TLS handshakes happen once per connection, not per query.)
//!
//! The machine is shared: each measurement records other processes' CPU use and is repeated
//! (up to `ALPR_BENCH_TRIES`, default 3) while that exceeds 10%, keeping the cleanest.
//!
//! Knobs: `ALPR_BENCH_SECS` (seconds per load level, default 5), `ALPR_BENCH_CONCURRENCY`
//! (default `1,2,4,8,16,32,64`), `ALPR_BENCH_PROFILE_QUERIES=N` (only run N queries from
//! `ALPR_BENCH_PROFILE_CLIENTS` clients, default 1, for profilers),
//! `ALPR_BENCH_VERIFIES_PER_QUERY` / `ALPR_BENCH_SIGNS_PER_QUERY` (override the counts
//! above), `ALPR_BENCH_ECHO_CONCURRENCY` (the hops floor's sweep, default `8,16,32,64`).
//!
//! Run: `cargo bench --bench query`.

#[path = "common/mod.rs"]
mod common;
#[path = "common/echo.rs"]
mod echo;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use alpr_federation::{
    AgencySpec, Federation, investigator_of, open_policy, params, synthetic_csv,
};
use alpr_node::client;
use alpr_node::config::PolicyConfig;
use alpr_pki::{Signer, TrustStore};
use alpr_proto::pb::TargetStatus;
use alpr_proto::pb::node_local_client::NodeLocalClient;
use alpr_runtime::client::Target;
use alpr_runtime::tls::TlsIdentity;
use anyhow::{Context, Result, bail};
use common::{env_list, env_or, ms, pct};
use prost::Message;
use ring::signature::{
    ECDSA_P256_SHA256_ASN1, ECDSA_P256_SHA256_ASN1_SIGNING, EcdsaKeyPair, KeyPair,
    UnparsedPublicKey,
};
use tonic::transport::Channel;

const REQUESTER: &str = "CA0340000";
const TARGETS: [&str; 3] = ["CA0560100", "CA0100500", "CA0190000"];
const PLATES: [&str; 4] = ["8ABC123", "5XYZ987", "7LMN456", "6QRS321"];
/// ECDSA P-256 signatures per routed query (see the table above).
const SIGNS_PER_QUERY: u64 = 5;
/// ECDSA P-256 verifications per routed query (see the table above).
const VERIFIES_PER_QUERY: u64 = 15;

fn agencies() -> Vec<AgencySpec> {
    vec![
        AgencySpec {
            ori: REQUESTER,
            name: "Sacramento County Sheriff",
            jurisdiction: "US-CA",
            kind: "local",
        },
        AgencySpec {
            ori: TARGETS[0],
            name: "Ventura Police Department",
            jurisdiction: "US-CA",
            kind: "local",
        },
        AgencySpec {
            ori: TARGETS[1],
            name: "Fresno Police Department",
            jurisdiction: "US-CA",
            kind: "local",
        },
        AgencySpec {
            ori: TARGETS[2],
            name: "Los Angeles County Sheriff",
            jurisdiction: "US-CA",
            kind: "local",
        },
    ]
}

/// What one query through the federation needs: the investigator's key and connection.
#[derive(Clone)]
struct Investigator {
    signer: Arc<Signer>,
    trust: TrustStore,
    client: NodeLocalClient<Channel>,
}

impl Investigator {
    /// Sign and send one query to all three targets; error unless every target answered.
    async fn query(&mut self, n: u64) -> Result<()> {
        let plate = PLATES[(n % PLATES.len() as u64) as usize];
        let p = params(plate, &TARGETS, "240", 5);
        let (_, signed) = client::sign_query(&self.signer, &self.trust, &p, alpr_pki::now_unix())?;
        let resp = client::search(&mut self.client, &signed).await?;
        if resp.results.len() != TARGETS.len() {
            bail!(
                "{} results for {} targets",
                resp.results.len(),
                TARGETS.len()
            );
        }
        for r in &resp.results {
            if r.status != TargetStatus::Answered as i32 {
                bail!("{} did not answer: status {} {}", r.ori, r.status, r.detail);
            }
        }
        Ok(())
    }
}

struct Setup {
    fed: Federation,
    signer: Arc<Signer>,
    tls: TlsIdentity,
    node: Target,
}

impl Setup {
    async fn investigator(&self) -> Result<Investigator> {
        let client = client::node_client(
            &self.node,
            &self.fed.trust,
            &self.tls,
            Duration::from_secs(30),
        )?;
        Ok(Investigator {
            signer: self.signer.clone(),
            trust: self.fed.trust.clone(),
            client,
        })
    }
}

/// A federation whose nodes seal (the product's default) or send in the clear.
async fn setup(sealed: bool) -> Result<Setup> {
    setup_on(sealed, None).await
}

/// [`setup`] with the broker's store in the PostgreSQL database of `postgres` (a replica's
/// store), when given.
async fn setup_on(sealed: bool, postgres: Option<String>) -> Result<Setup> {
    let fed = Federation::start_full(
        None,
        &agencies(),
        |_| PolicyConfig {
            // The benchmark is one requester flooding three owners: lift the per-minute limit.
            max_queries_per_minute: 1_000_000_000,
            ..open_policy()
        },
        &[],
        &|c| c.sealing.require = sealed,
        alpr_federation::Extras {
            postgres,
            ..Default::default()
        },
    )
    .await?;
    for t in TARGETS {
        fed.ingest_csv(t, &synthetic_csv(t, &PLATES, 30))?;
        fed.agree(Federation::terms(t, REQUESTER, &["240"], 30, 86_400))
            .await?;
    }
    let (signer, tls) = fed.person(REQUESTER, &investigator_of(REQUESTER))?;
    let node = Target {
        addr: fed
            .nodes
            .get(REQUESTER)
            .context("requester node")?
            .addr
            .to_string(),
        server_name: "localhost".into(),
    };
    Ok(Setup {
        fed,
        signer: Arc::new(signer),
        tls,
        node,
    })
}

/// The crypto floor: `threads` threads each repeat "SIGNS signs + VERIFIES verifies" (one
/// query's worth) for `secs`; returns query-equivalents per second.
fn crypto_floor(
    threads: usize,
    secs: f64,
    signs: u64,
    verifies: u64,
) -> Result<(f64, common::CpuUse)> {
    let rng = ring::rand::SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &rng)
        .map_err(|_| anyhow::anyhow!("keygen"))?;
    let pkcs8 = Arc::new(pkcs8.as_ref().to_vec());
    // A message the size of a signed query's signing input.
    let msg = Arc::new(alpr_proto::envelope::signing_input(
        alpr_proto::envelope::QUERY,
        &[0x5a; 400],
    ));
    let done = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let mut handles = Vec::new();
    for _ in 0..threads {
        let (pkcs8, msg, done, stop) = (pkcs8.clone(), msg.clone(), done.clone(), stop.clone());
        handles.push(std::thread::spawn(move || -> Result<()> {
            let rng = ring::rand::SystemRandom::new();
            let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &pkcs8, &rng)
                .map_err(|_| anyhow::anyhow!("key"))?;
            let sig = key.sign(&rng, &msg).map_err(|_| anyhow::anyhow!("sign"))?;
            let public =
                UnparsedPublicKey::new(&ECDSA_P256_SHA256_ASN1, key.public_key().as_ref().to_vec());
            while !stop.load(Ordering::Relaxed) {
                for _ in 0..signs {
                    std::hint::black_box(
                        key.sign(&rng, &msg).map_err(|_| anyhow::anyhow!("sign"))?,
                    );
                }
                for _ in 0..verifies {
                    public
                        .verify(std::hint::black_box(&msg), sig.as_ref())
                        .map_err(|_| anyhow::anyhow!("verify"))?;
                }
                done.fetch_add(1, Ordering::Relaxed);
            }
            Ok(())
        }));
    }
    let meter = common::CpuMeter::start();
    let t0 = Instant::now();
    std::thread::sleep(Duration::from_secs_f64(secs));
    let n0 = done.load(Ordering::Relaxed);
    let el = t0.elapsed().as_secs_f64();
    let cpu = meter.stop();
    stop.store(true, Ordering::Relaxed);
    for h in handles {
        h.join()
            .map_err(|_| anyhow::anyhow!("floor thread panicked"))??;
    }
    Ok((n0 as f64 / el, cpu))
}

/// Other processes' share of the CPU above which a measurement is repeated.
const NOISY: f64 = 0.10;

/// The crypto floor, repeated (up to `tries`) while other processes used the CPU; the best.
async fn clean_floor(
    threads: usize,
    signs: u64,
    verifies: u64,
    tries: usize,
) -> Result<(f64, f64)> {
    let mut best: Option<(f64, f64)> = None;
    for _ in 0..tries.max(1) {
        let (q, cpu) =
            tokio::task::spawn_blocking(move || crypto_floor(threads, 3.0, signs, verifies))
                .await??;
        if best.is_none_or(|(b, _)| q > b) {
            best = Some((q, cpu.others));
        }
        if cpu.others <= NOISY {
            break;
        }
    }
    best.context("no floor measured")
}

/// Microseconds to seal and to open one 1 KiB box with `suite` (median of 5 rounds of 50).
fn seal_costs(suite: alpr_proto::seal::Suite) -> (f64, f64) {
    use alpr_proto::seal::{Context, KeyPair, open, seal};
    let key = KeyPair::generate(suite);
    let ctx = Context {
        purpose: "query",
        target_ori: "CA0560100",
        query_id: &[7u8; 16],
        requester: "inv-1@CA0340000",
    };
    let pt = vec![0x42u8; 1024];
    let mut seals = Vec::new();
    let mut opens = Vec::new();
    for _ in 0..5 {
        let t = Instant::now();
        let boxes: Vec<_> = (0..50)
            .filter_map(|_| seal(suite, &key.public, &ctx, &pt).ok())
            .collect();
        seals.push(t.elapsed().as_secs_f64() * 1e6 / 50.0);
        let t = Instant::now();
        let opened = boxes.iter().filter(|b| open(&key, &ctx, b).is_ok()).count();
        opens.push(t.elapsed().as_secs_f64() * 1e6 / opened.max(1) as f64);
    }
    seals.sort_by(f64::total_cmp);
    opens.sort_by(f64::total_cmp);
    (seals[2], opens[2])
}

/// Single-thread cost of one sign and one verify, microseconds.
fn op_costs() -> Result<(f64, f64)> {
    let rng = ring::rand::SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &rng)
        .map_err(|_| anyhow::anyhow!("keygen"))?;
    let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, pkcs8.as_ref(), &rng)
        .map_err(|_| anyhow::anyhow!("key"))?;
    let msg = alpr_proto::envelope::signing_input(alpr_proto::envelope::QUERY, &[0x5a; 400]);
    let sig = key.sign(&rng, &msg).map_err(|_| anyhow::anyhow!("sign"))?;
    let public = UnparsedPublicKey::new(&ECDSA_P256_SHA256_ASN1, key.public_key().as_ref());
    let n = 2000;
    let t = Instant::now();
    for _ in 0..n {
        std::hint::black_box(key.sign(&rng, &msg).map_err(|_| anyhow::anyhow!("sign"))?);
    }
    let sign_us = t.elapsed().as_secs_f64() * 1e6 / f64::from(n);
    let t = Instant::now();
    for _ in 0..n {
        public
            .verify(std::hint::black_box(&msg), sig.as_ref())
            .map_err(|_| anyhow::anyhow!("verify"))?;
    }
    let verify_us = t.elapsed().as_secs_f64() * 1e6 / f64::from(n);
    Ok((sign_us, verify_us))
}

struct Level {
    concurrency: usize,
    qps: f64,
    cpu: common::CpuUse,
    lat: Vec<Duration>,
    errors: u64,
    first_error: Option<String>,
}

/// Closed loop: `c` investigators, each with its own connection, query back to back.
async fn closed_loop(s: &Setup, c: usize, secs: f64) -> Result<Level> {
    let mut invs = Vec::with_capacity(c);
    for _ in 0..c {
        let mut inv = s.investigator().await?;
        inv.query(0).await.context("warm-up query")?; // TLS handshake outside the window
        invs.push(inv);
    }
    let start = Instant::now() + Duration::from_millis(20);
    let end = start + Duration::from_secs_f64(secs);
    let meter = common::CpuMeter::start();
    let mut tasks = Vec::with_capacity(c);
    for (i, mut inv) in invs.into_iter().enumerate() {
        tasks.push(tokio::spawn(async move {
            tokio::time::sleep_until(start.into()).await;
            let mut lat = Vec::new();
            let mut errors = 0u64;
            let mut first_error = None;
            let mut n = i as u64;
            while Instant::now() < end {
                let t0 = Instant::now();
                let r = inv.query(n).await;
                let t1 = Instant::now();
                n += 1;
                if t1 > end {
                    break;
                }
                match r {
                    Ok(()) => lat.push(t1 - t0),
                    Err(e) => {
                        errors += 1;
                        first_error.get_or_insert(format!("{e:#}"));
                    }
                }
            }
            (lat, errors, first_error)
        }));
    }
    let mut lat = Vec::new();
    let mut errors = 0;
    let mut first_error = None;
    for t in tasks {
        let (l, e, f) = t.await?;
        lat.extend(l);
        errors += e;
        if first_error.is_none() {
            first_error = f;
        }
    }
    let cpu = meter.stop();
    lat.sort();
    Ok(Level {
        concurrency: c,
        qps: lat.len() as f64 / secs,
        cpu,
        lat,
        errors,
        first_error,
    })
}

/// The encoded sizes of one routed query's messages on `s`'s federation, for the hops floor.
async fn message_sizes(s: &Setup) -> Result<echo::Sizes> {
    let p = params(PLATES[0], &TARGETS, "240", 5);
    let (_, signed) = s.fed.sign_query(REQUESTER, &p)?;
    let endorsed = s.fed.endorse(REQUESTER, &signed)?;
    let mut one_box = endorsed.clone();
    one_box.sealed_boxes.truncate(1);
    let resp = s.fed.send_signed(REQUESTER, &signed).await?;
    let answers: usize = resp.results.iter().map(|r| r.encoded_len()).sum();
    Ok(echo::Sizes {
        query: signed.encoded_len(),
        endorsed: endorsed.encoded_len(),
        forwarded: one_box.encoded_len(),
        answer: answers / resp.results.len().max(1),
        response: resp.encoded_len(),
    })
}

/// The hops floor ([`echo`]) with `s`'s certificates and message sizes.
async fn hops_floor(s: &Setup, sizes: echo::Sizes) -> Result<echo::Floor> {
    let load = |(c, k): (std::path::PathBuf, std::path::PathBuf)| TlsIdentity::load(&c, &k);
    let parties = echo::Parties {
        investigator: s.tls.clone(),
        node: load(s.fed.pki.node(REQUESTER))?,
        broker: load(s.fed.pki.broker())?,
        targets: TARGETS
            .iter()
            .map(|t| load(s.fed.pki.node(t)))
            .collect::<Result<_, _>>()?,
    };
    echo::Floor::start(&s.fed.trust, parties, sizes).await
}

/// Closed loop on the hops floor: `c` investigators back to back for `secs`; queries per
/// second and the CPU used.
async fn echo_loop(f: &echo::Floor, c: usize, secs: f64) -> Result<(f64, common::CpuUse)> {
    let mut invs = Vec::with_capacity(c);
    for _ in 0..c {
        let mut inv = f.investigator()?;
        inv.query().await.context("hops floor warm-up")?;
        invs.push(inv);
    }
    let end = Instant::now() + Duration::from_secs_f64(secs);
    let meter = common::CpuMeter::start();
    let mut tasks = Vec::with_capacity(c);
    for mut inv in invs {
        tasks.push(tokio::spawn(async move {
            let mut n = 0u64;
            while Instant::now() < end {
                inv.query().await?;
                if Instant::now() <= end {
                    n += 1;
                }
            }
            anyhow::Ok(n)
        }));
    }
    let mut n = 0;
    for t in tasks {
        n += t.await??;
    }
    Ok((n as f64 / secs, meter.stop()))
}

/// Open loop at `rate` queries/s for `secs`: query i is due at start + i/rate, whatever
/// the earlier ones are doing; latency counts from that due time.
async fn open_loop(
    s: &Setup,
    rate: f64,
    secs: f64,
) -> Result<(Vec<Duration>, u64, f64, common::CpuUse, Vec<Burst>)> {
    let pool_size = 32;
    let mut pool = Vec::with_capacity(pool_size);
    for _ in 0..pool_size {
        let mut inv = s.investigator().await?;
        inv.query(0).await.context("warm-up query")?;
        pool.push(inv);
    }
    let n = (rate * secs).round() as u64;
    let meter = common::CpuMeter::start();
    let start = Instant::now() + Duration::from_millis(20);
    let mut tasks = Vec::with_capacity(n as usize);
    for i in 0..n {
        let due = start + Duration::from_secs_f64(i as f64 / rate);
        tokio::time::sleep_until(due.into()).await;
        let mut inv = pool[(i as usize) % pool_size].clone();
        tasks.push(tokio::spawn(async move {
            let r = inv.query(i).await;
            (Instant::now() - due, r.is_ok())
        }));
    }
    let mut lat = Vec::with_capacity(tasks.len());
    let mut timeline = Vec::with_capacity(tasks.len());
    let mut errors = 0;
    for (i, t) in tasks.into_iter().enumerate() {
        let (d, ok) = t.await?;
        if ok {
            lat.push(d);
            timeline.push((i as f64 / rate, d));
        } else {
            errors += 1;
        }
    }
    let achieved = n as f64 / (Instant::now() - start).as_secs_f64();
    lat.sort();
    let slow = (pct(&lat, 50.0) * 4).max(Duration::from_millis(20));
    Ok((lat, errors, achieved, meter.stop(), bursts(&timeline, slow)))
}

/// A run of slow queries in the open loop: when the first was due (seconds into the run),
/// how many, and the slowest.
type Burst = (f64, usize, Duration);

/// Group queries slower than `slow` whose due times lie within 100 ms of each other, to
/// tell isolated slow queries from stalls that hold up everything behind them.
fn bursts(timeline: &[(f64, Duration)], slow: Duration) -> Vec<Burst> {
    let mut out: Vec<Burst> = Vec::new();
    let mut last_due = f64::NEG_INFINITY;
    for &(due, d) in timeline.iter().filter(|(_, d)| *d > slow) {
        match out.last_mut() {
            Some(b) if due - last_due <= 0.1 => {
                b.1 += 1;
                b.2 = b.2.max(d);
            }
            _ => out.push((due, 1, d)),
        }
        last_due = due;
    }
    out
}

async fn run() -> Result<()> {
    common::print_machine();
    let secs: f64 = env_or("ALPR_BENCH_SECS", 5.0);
    let signs: u64 = env_or("ALPR_BENCH_SIGNS_PER_QUERY", SIGNS_PER_QUERY);
    let verifies: u64 = env_or("ALPR_BENCH_VERIFIES_PER_QUERY", VERIFIES_PER_QUERY);
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let tries: usize = env_or("ALPR_BENCH_TRIES", 3);

    let t = Instant::now();
    let s = setup(true).await?;
    let clear = setup(false).await?;
    println!(
        "federations: broker + requester {REQUESTER} + targets {} on 127.0.0.1 over mTLS, one sealed (the default) and one in the clear (set up in {:.1} s)",
        TARGETS.join(", "),
        t.elapsed().as_secs_f64()
    );

    // Sanity: a query answers, and the answers verify as the owners' signed reads.
    for fed in [&s.fed, &clear.fed] {
        let (q, resp) = fed
            .search(REQUESTER, &params(PLATES[0], &TARGETS, "240", 5))
            .await?;
        for r in &resp.results {
            match client::verify_reply(&fed.trust, r, &q, alpr_pki::now_unix())? {
                Some(client::Reply::Answer { answer: a, .. }) if !a.reads.is_empty() => {}
                other => bail!("{}: expected an answer with reads, got {other:?}", r.ori),
            }
        }
    }

    if let Some(n) = std::env::var("ALPR_BENCH_PROFILE_QUERIES")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
    {
        let clients: u64 = env_or("ALPR_BENCH_PROFILE_CLIENTS", 1);
        // ALPR_BENCH_PROFILE_CLEAR=1 profiles the clear federation instead of the sealed.
        let profiled = if env_or("ALPR_BENCH_PROFILE_CLEAR", 0u8) == 1 {
            &clear
        } else {
            &s
        };
        let mut tasks = Vec::new();
        let mut invs = Vec::new();
        for _ in 0..clients {
            let mut inv = profiled.investigator().await?;
            inv.query(0).await?;
            invs.push(inv);
        }
        let t = Instant::now();
        for (c, mut inv) in invs.into_iter().enumerate() {
            tasks.push(tokio::spawn(async move {
                let mut i = c as u64;
                while i < n {
                    inv.query(i).await?;
                    i += clients;
                }
                anyhow::Ok(())
            }));
        }
        for task in tasks {
            task.await??;
        }
        println!(
            "profile mode: {n} queries from {clients} clients in {:.3} s ({:.1} q/s)",
            t.elapsed().as_secs_f64(),
            n as f64 / t.elapsed().as_secs_f64()
        );
        s.fed.stop().await?;
        clear.fed.stop().await?;
        return Ok(());
    }

    let (sign_us, verify_us) = tokio::task::spawn_blocking(op_costs).await??;
    let (floor_1, _) = clean_floor(1, signs, verifies, tries).await?;
    let (floor_before, noise_before) = clean_floor(cores, signs, verifies, tries).await?;
    println!(
        "crypto: one ECDSA P-256 sign {sign_us:.1} us, one verify {verify_us:.1} us (1 thread)"
    );
    // What sealing costs (issue 14): one box sealed (requesting node) and opened (target)
    // per target; the reply travels under a key exported from that box, no second KEM.
    for (name, suite) in [
        ("X25519", alpr_proto::seal::Suite::X25519ChaCha20),
        ("X-Wing", alpr_proto::seal::Suite::XWingChaCha20),
    ] {
        let (seal_us, open_us) = tokio::task::spawn_blocking(move || seal_costs(suite)).await?;
        println!(
            "sealing ({name} HPKE, ChaCha20-Poly1305, 1 KiB): seal {seal_us:.1} us, open {open_us:.1} us (1 thread); a query to 3 targets adds about {:.0} us of HPKE CPU (3 boxes sealed, 3 opened)",
            3.0 * (seal_us + open_us)
        );
    }
    println!(
        "crypto floor ({signs} signs + {verifies} verifies per query): {floor_1:.1} q/s on 1 thread, {floor_before:.1} q/s on {cores} threads (others' CPU {:.0}%)",
        noise_before * 100.0
    );

    println!("\nclosed loop, {secs} s per level (latency from send to reply):");
    println!(
        "  clients      q/s       p50         p99         max  errors | CPU: ours  others  iowait  ours/query"
    );
    let mut best: Option<Level> = None;
    for c in env_list("ALPR_BENCH_CONCURRENCY", &[1, 2, 4, 8, 16, 32, 64]) {
        // Repeat a level disturbed by other processes on the machine; keep the cleanest.
        let mut l = closed_loop(&s, c, secs).await?;
        for _ in 1..tries {
            if l.cpu.others <= NOISY {
                break;
            }
            let again = closed_loop(&s, c, secs).await?;
            if again.cpu.others < l.cpu.others {
                l = again;
            }
        }
        println!(
            "  {:>7} {:>8.1} {:>11} {:>11} {:>11} {:>6} | {:>8.0}% {:>6.0}% {:>6.0}% {:>8.2} ms",
            l.concurrency,
            l.qps,
            ms(pct(&l.lat, 50.0)),
            ms(pct(&l.lat, 99.0)),
            ms(l.lat.last().copied().unwrap_or_default()),
            l.errors,
            l.cpu.own * 100.0,
            l.cpu.others * 100.0,
            l.cpu.iowait * 100.0,
            l.cpu.own_secs * 1e3 / l.lat.len().max(1) as f64
        );
        if let Some(e) = &l.first_error {
            println!("          first error: {e}");
        }
        if best.as_ref().is_none_or(|b| l.qps > b.qps) {
            best = Some(l);
        }
    }
    let best = best.context("no load level ran")?;

    // Sealed against clear at the peak's concurrency, alternating so that both see the
    // same machine: the budget is sealed >= 90% of clear.
    let rounds: usize = env_or("ALPR_BENCH_SEAL_ROUNDS", 5);
    let (mut sealed_qps, mut clear_qps, mut sealed_cpu, mut clear_cpu) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for _ in 0..rounds {
        let c = closed_loop(&clear, best.concurrency, secs).await?;
        clear_cpu.push(c.cpu.own_secs * 1e3 / c.lat.len().max(1) as f64);
        clear_qps.push(c.qps);
        let l = closed_loop(&s, best.concurrency, secs).await?;
        sealed_cpu.push(l.cpu.own_secs * 1e3 / l.lat.len().max(1) as f64);
        sealed_qps.push(l.qps);
    }
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len().max(1) as f64;
    let seal_ratio = mean(&sealed_qps) / mean(&clear_qps);

    // The hops floor (issue 19): a raw tonic echo over the same five mTLS hops with the
    // same message sizes and the same signs and verifies at each party; its best closed
    // loop over a sweep of its own.
    let sizes = message_sizes(&s).await?;
    let floor_hops = hops_floor(&s, sizes).await?;
    println!(
        "\nhops floor (raw tonic echo: investigator -> node -> broker -> {} targets over mTLS; messages {} / {} / {} / {} / {} bytes: query, endorsed, forwarded, answer, response; {signs} signs + {verifies} verifies at the same parties):",
        TARGETS.len(),
        sizes.query,
        sizes.endorsed,
        sizes.forwarded,
        sizes.answer,
        sizes.response
    );
    let mut echo_best: Option<(usize, f64, common::CpuUse)> = None;
    for c in env_list("ALPR_BENCH_ECHO_CONCURRENCY", &[8, 16, 32, 64]) {
        let mut r = echo_loop(&floor_hops, c, secs).await?;
        for _ in 1..tries {
            if r.1.others <= NOISY {
                break;
            }
            let again = echo_loop(&floor_hops, c, secs).await?;
            if again.1.others < r.1.others {
                r = again;
            }
        }
        println!(
            "  {c:>7} clients {:>8.1} q/s | CPU ours {:>3.0}%, others {:>3.0}%, {:.2} ms/query",
            r.0,
            r.1.own * 100.0,
            r.1.others * 100.0,
            r.1.own_secs * 1e3 / (r.0 * secs).max(1.0)
        );
        if echo_best.as_ref().is_none_or(|b| r.0 > b.1) {
            echo_best = Some((c, r.0, r.1));
        }
    }
    drop(floor_hops);
    let (echo_c, echo_qps, echo_cpu) = echo_best.context("no hops-floor level ran")?;

    // The broker's store in PostgreSQL (as broker replicas keep it: every routing decision
    // and its replay claim in one transaction, under the log's advisory lock) against
    // SQLite, both sealed, alternating at the peak's concurrency. The server is Debian's
    // PostgreSQL in a temporary directory; its CPU is another process's ("others").
    let on_postgres = async {
        let pg = alpr_runtime::pgserver::LocalPostgres::start()?;
        let url = pg.create_database("broker")?;
        let setup = setup_on(true, Some(url)).await?;
        let mut rows = Vec::new();
        for _ in 0..rounds {
            let l = closed_loop(&s, best.concurrency, secs).await?;
            let p = closed_loop(&setup, best.concurrency, secs).await?;
            rows.push((l, p));
        }
        setup.fed.stop().await?;
        drop(pg);
        anyhow::Ok(rows)
    };
    let postgres_line = match on_postgres.await {
        Ok(rows) => {
            let q =
                |f: &dyn Fn(&(Level, Level)) -> f64| mean(&rows.iter().map(f).collect::<Vec<_>>());
            let (lite, pgq) = (q(&|r| r.0.qps), q(&|r| r.1.qps));
            let (lite_p99, pg_p99) = (
                q(&|r| pct(&r.0.lat, 99.0).as_secs_f64() * 1e3),
                q(&|r| pct(&r.1.lat, 99.0).as_secs_f64() * 1e3),
            );
            let pg_others = q(&|r| r.1.cpu.others * 100.0);
            let errors: u64 = rows.iter().map(|r| r.1.errors).sum();
            format!(
                "broker store PostgreSQL vs SQLite (sealed) at {} clients, {rounds} alternating rounds: PostgreSQL {pgq:.1} q/s (p99 {pg_p99:.1} ms, {errors} errors, others' CPU {pg_others:.0}% incl. the server), SQLite {lite:.1} q/s (p99 {lite_p99:.1} ms); ratio {:.1}%",
                best.concurrency,
                pgq / lite * 100.0
            )
        }
        Err(e) => format!("broker store PostgreSQL: skipped ({e:#})"),
    };
    let (floor_after, noise_after) = clean_floor(cores, signs, verifies, tries).await?;
    let floor = floor_before.max(floor_after);
    println!(
        "crypto floor again after the load: {floor_after:.1} q/s on {cores} threads (others' CPU {:.0}%); baseline = the higher, {floor:.1} q/s",
        noise_after * 100.0
    );

    let half = best.qps / 2.0;
    let open_secs = secs.max(10.0);
    let (mut lat, mut errors, mut achieved, mut cpu, mut stalls) =
        open_loop(&s, half, open_secs).await?;
    for _ in 1..tries {
        if cpu.others <= NOISY {
            break;
        }
        let again = open_loop(&s, half, open_secs).await?;
        if again.3.others < cpu.others {
            (lat, errors, achieved, cpu, stalls) = again;
        }
    }
    let p99 = pct(&lat, 99.0);
    // The same offered rate on the clear federation: what half-load latency sealing costs.
    let (clear_lat, clear_errors, _, clear_open_cpu, _) =
        open_loop(&clear, half, open_secs).await?;

    let ratio = best.qps / floor;
    println!("\n== query results ==");
    println!(
        "peak throughput: {:.1} q/s at {} clients (p50 {}, p99 {})",
        best.qps,
        best.concurrency,
        ms(pct(&best.lat, 50.0)),
        ms(pct(&best.lat, 99.0))
    );
    println!(
        "crypto floor (baseline, same run): {floor:.1} q/s on {cores} threads ({signs} signs + {verifies} verifies per query)"
    );
    println!(
        "sealed vs clear at {} clients, {rounds} alternating rounds: sealed {} q/s (mean {:.1}, {:.2} ms CPU/query), clear {} q/s (mean {:.1}, {:.2} ms CPU/query); ratio {:.1}%  budget >= 90%: {}",
        best.concurrency,
        sealed_qps
            .iter()
            .map(|q| format!("{q:.0}"))
            .collect::<Vec<_>>()
            .join("/"),
        mean(&sealed_qps),
        mean(&sealed_cpu),
        clear_qps
            .iter()
            .map(|q| format!("{q:.0}"))
            .collect::<Vec<_>>()
            .join("/"),
        mean(&clear_qps),
        mean(&clear_cpu),
        seal_ratio * 100.0,
        if seal_ratio >= 0.9 { "PASS" } else { "FAIL" }
    );
    let hops_ratio = best.qps / echo_qps;
    println!(
        "hops floor (baseline, same run): {echo_qps:.1} q/s at {echo_c} clients ({:.2} ms CPU/query; the product's peak {:.2} ms CPU/query)",
        echo_cpu.own_secs * 1e3 / (echo_qps * secs).max(1.0),
        best.cpu.own_secs * 1e3 / best.lat.len().max(1) as f64
    );
    println!(
        "ratio peak / hops floor: {:.1}% sealed (clear, the alternating rounds' mean: {:.1}%)  budget >= 50%: {}",
        hops_ratio * 100.0,
        mean(&clear_qps) / echo_qps * 100.0,
        if hops_ratio >= 0.5 { "PASS" } else { "FAIL" }
    );
    println!("{postgres_line}");
    println!(
        "ratio peak / floor: {:.1}%  budget >= 50%: {}",
        ratio * 100.0,
        if ratio >= 0.5 { "PASS" } else { "FAIL" }
    );
    println!(
        "open loop at half of peak: offered {half:.1} q/s, achieved {achieved:.1} q/s, {} ok, {errors} errors; CPU ours {:.0}%, others {:.0}%, iowait {:.0}%",
        lat.len(),
        cpu.own * 100.0,
        cpu.others * 100.0,
        cpu.iowait * 100.0
    );
    println!(
        "latency at half of peak: p50 {}, p90 {}, p99 {}, max {}  budget p99 <= 10 ms: {}",
        ms(pct(&lat, 50.0)),
        ms(pct(&lat, 90.0)),
        ms(p99),
        ms(lat.last().copied().unwrap_or_default()),
        if p99 <= Duration::from_millis(10) && errors == 0 {
            "PASS"
        } else {
            "FAIL"
        }
    );
    println!(
        "latency at the same rate in the clear: p50 {}, p90 {}, p99 {}, max {}, {clear_errors} errors (CPU ours {:.0}%, others {:.0}%)",
        ms(pct(&clear_lat, 50.0)),
        ms(pct(&clear_lat, 90.0)),
        ms(pct(&clear_lat, 99.0)),
        ms(clear_lat.last().copied().unwrap_or_default()),
        clear_open_cpu.own * 100.0,
        clear_open_cpu.others * 100.0
    );
    println!(
        "slow queries at half of peak (> max(4 x p50, 20 ms)): {} in {} burst(s){}",
        stalls.iter().map(|b| b.1).sum::<usize>(),
        stalls.len(),
        stalls
            .iter()
            .take(8)
            .map(|(t, n, max)| format!("; t={t:.2}s {n} queries, max {}", ms(*max)))
            .collect::<String>()
    );
    s.fed.stop().await?;
    clear.fed.stop().await?;
    Ok(())
}

fn main() -> Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(run())
}
