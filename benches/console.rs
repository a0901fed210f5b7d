//! What a search from the web console costs the requesting node, against the same search
//! from the CLI (issue 17: at most 10% more CPU).
//!
//! A broker and three nodes run in this process over real mutual TLS on loopback. The
//! requesting agency's node (Sacramento) is restarted on a tokio runtime of its own whose
//! threads (workers and blocking pool) are named `sac-node`, so its CPU time is read
//! apart from everything else's (`/proc/self/task/*/stat`: user + system time of those
//! threads). Both paths search one target (Ventura, 7 reads answered) for the same plate:
//!
//! * **CLI**: what `alpr-node query` does: the investigator's key signs the query; a new
//!   mTLS connection to the node (a CLI run is one process, one handshake); `Search`.
//! * **Console**: what a browser does, with the browser's key (a P-256 key the node never
//!   sees): over one kept HTTPS connection, `GET /search` (the form), `POST
//!   /search/prepare` (the node builds and checks the query, renders the review), the
//!   signature over the bytes it shows, `POST /search/send` (the node's `search`, as for
//!   the CLI) and `GET` of the results page it redirects to.
//!
//! * **CLI, kept connection**: the cheapest a command-line client could be: one mTLS
//!   connection kept for every search (no handshake per search), the same signed queries.
//!
//! Rounds alternate between the paths so drift cancels. Knobs: `ALPR_BENCH_SEARCHES`
//! (per path per round, default 50), `ALPR_BENCH_ROUNDS` (default 4).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use alpr_federation::web::{BrowserKey, WebClient, attr};
use alpr_federation::{Federation, demo_agencies, open_policy, params, synthetic_csv};

const VENTURA: &str = "CA0560100";
const SACRAMENTO: &str = "CA0340000";

/// User + system CPU of this process's threads whose name starts with `prefix`.
fn thread_cpu(prefix: &str) -> Duration {
    let tick = 100.0; // USER_HZ on Linux
    let mut ticks = 0u64;
    for t in std::fs::read_dir("/proc/self/task").unwrap().flatten() {
        let comm = std::fs::read_to_string(t.path().join("comm")).unwrap_or_default();
        if !comm.starts_with(prefix) {
            continue;
        }
        let stat = std::fs::read_to_string(t.path().join("stat")).unwrap_or_default();
        // Fields after the ")" that closes the name: state is field 3; utime 14, stime 15.
        let rest = &stat[stat.rfind(')').unwrap() + 2..];
        let f: Vec<&str> = rest.split(' ').collect();
        ticks += f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap();
    }
    Duration::from_secs_f64(ticks as f64 / tick)
}

async fn console_search(b: &mut WebClient, me: &BrowserKey) -> usize {
    let form = b.request("GET", "/search", &[]).await.unwrap();
    assert_eq!(form.status, 200);
    let csrf = attr(&form.body, "search-form", "value").unwrap();
    let now = alpr_pki::now_unix();
    let fmt = |t: i64| {
        time::OffsetDateTime::from_unix_timestamp(t)
            .unwrap()
            .format(time::macros::format_description!(
                "[year]-[month]-[day]T[hour]:[minute]"
            ))
            .unwrap()
    };
    let (from, to) = (fmt(now - 7 * 86_400), fmt(now));
    let review = b
        .request(
            "POST",
            "/search/prepare",
            &[
                ("csrf", &csrf),
                ("purpose", "240"),
                ("case_number", "24-001234"),
                (
                    "reason",
                    "Stolen Honda seen leaving the burglary at 12 Main St",
                ),
                ("plate", "8ABC123"),
                ("plate_state", "ANY"),
                ("from", &from),
                ("to", &to),
                ("target", VENTURA),
            ],
        )
        .await
        .unwrap();
    assert_eq!(review.status, 200, "{}", review.body);
    let input =
        hex::decode(attr(&review.body, "sign-form", "data-signing-input").unwrap()).unwrap();
    let pending = attr(&review.body, "name=\"pending\"", "value").unwrap();
    let sent = b
        .request(
            "POST",
            "/search/send",
            &[
                ("csrf", &csrf),
                ("pending", &pending),
                ("sig", &me.sign(&input).unwrap()),
            ],
        )
        .await
        .unwrap();
    assert_eq!(sent.status, 303, "{}", sent.body);
    let page = b
        .request("GET", &sent.location.unwrap(), &[])
        .await
        .unwrap();
    assert!(page.body.contains("Answered with 7 reads"), "{}", page.body);
    page.body.len()
}

fn main() {
    let main_rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("bench")
        .build()
        .unwrap();
    let sac_rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .worker_threads(2)
        .thread_name("sac-node")
        .thread_keep_alive(Duration::from_secs(3600))
        .build()
        .unwrap();
    let per: usize = std::env::var("ALPR_BENCH_SEARCHES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100);
    let rounds: usize = std::env::var("ALPR_BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5);
    main_rt.block_on(async {
        let mut fed = Federation::start(None, &demo_agencies()[..3], |_| {
            let mut p = open_policy();
            p.max_queries_per_minute = 1_000_000;
            p
        })
        .await
        .unwrap();
        fed.ingest_csv(VENTURA, &synthetic_csv(VENTURA, &["8ABC123", "5XYZ987"], 10))
            .unwrap();
        fed.agree(Federation::terms(VENTURA, SACRAMENTO, &["240"], 30, 86_400))
            .await
            .unwrap();
        // Sacramento's node again, on its own runtime (same config, same address).
        let cfg = fed.node_configs[SACRAMENTO].clone();
        fed.nodes.remove(SACRAMENTO).unwrap().stop().await.unwrap();
        let running = sac_rt
            .spawn(async move { alpr_node::start(&cfg).await.unwrap() })
            .await
            .unwrap();
        fed.nodes.insert(SACRAMENTO.into(), running);

        let (mut browser, me, _) = fed
            .console_person(SACRAMENTO, "det-bench", "investigator")
            .await
            .unwrap();
        let p = params("8ABC123", &[VENTURA], "240", 7);
        // Warm both paths (chains cached, connections open, pages compiled in).
        for _ in 0..10 {
            let (_, r) = fed.search(SACRAMENTO, &p).await.unwrap();
            assert_eq!(r.results[0].status, 1);
            console_search(&mut browser, &me).await;
        }
        let (_, tls) = fed
            .person(SACRAMENTO, &alpr_federation::investigator_of(SACRAMENTO))
            .unwrap();
        let target = alpr_runtime::client::Target {
            addr: fed.nodes[SACRAMENTO].addr.to_string(),
            server_name: "localhost".into(),
        };
        let mut kept =
            alpr_node::client::node_client(&target, &fed.trust, &tls, Duration::from_secs(10))
                .unwrap();
        let (mut cli_cpu, mut web_cpu, mut kept_cpu) = (Duration::ZERO, Duration::ZERO, Duration::ZERO);
        let (mut cli_wall, mut web_wall, mut kept_wall) = (Duration::ZERO, Duration::ZERO, Duration::ZERO);
        let mut page_bytes = 0;
        for _ in 0..rounds {
            let (c0, t0) = (thread_cpu("sac-node"), Instant::now());
            for _ in 0..per {
                let (_, r) = fed.search(SACRAMENTO, &p).await.unwrap();
                assert_eq!(r.results[0].status, 1, "answered");
            }
            cli_wall += t0.elapsed();
            cli_cpu += thread_cpu("sac-node") - c0;
            let (c0, t0) = (thread_cpu("sac-node"), Instant::now());
            for _ in 0..per {
                page_bytes = console_search(&mut browser, &me).await;
            }
            web_wall += t0.elapsed();
            web_cpu += thread_cpu("sac-node") - c0;
            let (c0, t0) = (thread_cpu("sac-node"), Instant::now());
            for _ in 0..per {
                let (_, signed) = fed.sign_query(SACRAMENTO, &p).unwrap();
                let r = alpr_node::client::search(&mut kept, &signed).await.unwrap();
                assert_eq!(r.results[0].status, 1, "answered");
            }
            kept_wall += t0.elapsed();
            kept_cpu += thread_cpu("sac-node") - c0;
        }
        let n = (per * rounds) as f64;
        let ms = |d: Duration| d.as_secs_f64() * 1000.0 / n;
        println!("console vs CLI: {} searches each, one target answering 7 reads", n);
        println!(
            "  CLI (a connection per search, as one command run)  node CPU {:.3} ms/search   wall {:.2} ms/search",
            ms(cli_cpu),
            ms(cli_wall)
        );
        println!(
            "  CLI, kept connection  node CPU {:.3} ms/search   wall {:.2} ms/search",
            ms(kept_cpu),
            ms(kept_wall)
        );
        println!(
            "  console  node CPU {:.3} ms/search   wall {:.2} ms/search   (4 requests; results page {} bytes)",
            ms(web_cpu),
            ms(web_wall),
            page_bytes
        );
        println!(
            "  console / CLI node CPU: {:.3} (budget <= 1.10); console / CLI with a kept connection: {:.3}",
            web_cpu.as_secs_f64() / cli_cpu.as_secs_f64(),
            web_cpu.as_secs_f64() / kept_cpu.as_secs_f64()
        );
        fed.stop().await.unwrap();
    });
}
