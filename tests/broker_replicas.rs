//! Broker replicas on PostgreSQL: two brokers share one database (a real server of its own,
//! Debian's PostgreSQL started in a temporary directory) behind a TCP load balancer, the
//! second an `alpr-broker serve` process of this build. What one registers the other
//! enforces; a query replayed to the other is refused as a replay; registrations at both at
//! once make one registry, never a fork; and a replica killed under load loses no admitted
//! query and lets none be admitted twice.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;

use alpr_broker::store::{self, Db, Location};
use alpr_federation::replicas::bin_dir;
use alpr_federation::{Federation, demo_agencies, open_policy, params, synthetic_csv};
use alpr_proto::RefusalReason;
use alpr_proto::pb::{TargetStatus, TreeHead};
use alpr_runtime::pgserver::LocalPostgres;
use futures::StreamExt;
use prost::Message;

const VENTURA: &str = "CA0560100";
const SACRAMENTO: &str = "CA0340000";
const FRESNO: &str = "CA0100500";

async fn replicated() -> (LocalPostgres, Federation) {
    let pg = LocalPostgres::start().unwrap();
    let url = pg.create_database("broker").unwrap();
    let fed = Federation::start_replicated(&demo_agencies()[..3], |_| open_policy(), &url)
        .await
        .unwrap();
    fed.ingest_csv(VENTURA, &synthetic_csv(VENTURA, &["8ABC123"], 10))
        .unwrap();
    (pg, fed)
}

/// The routing-log rows of `event` for a query id (hex), as (decision, reason).
fn rows_of(fed: &Federation, qid: &str) -> Vec<(String, Option<String>)> {
    fed.broker_log()
        .unwrap()
        .into_iter()
        .filter(|e| e.query_id.as_deref() == Some(qid) && e.event.as_str() == "route")
        .map(|e| (e.decision.as_str().to_owned(), e.reason_code))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_one_replica_registers_the_other_enforces_and_a_replay_there_is_refused() {
    let (_pg, fed) = replicated().await;
    let b = fed.start_replica(&bin_dir().unwrap(), 1).await.unwrap();
    assert_eq!(fed.balancer.as_ref().unwrap().backends().len(), 2);

    // Registered at replica B; the nodes sync through the balancer, and replica A (in this
    // process) routes on it.
    fed.agree_at(
        b.addr,
        Federation::terms(VENTURA, SACRAMENTO, &["240"], 30, 86_400),
    )
    .await
    .unwrap();
    let (_, signed) = fed
        .sign_query(SACRAMENTO, &params("8ABC123", &[VENTURA], "240", 3))
        .unwrap();
    let endorsed = fed.endorse(SACRAMENTO, &signed).unwrap();
    let first = fed
        .route_at(fed.broker.addr, SACRAMENTO, endorsed.clone())
        .await
        .unwrap();
    assert_eq!(
        first.results[0].status,
        TargetStatus::Answered as i32,
        "{}",
        first.results[0].detail
    );

    // The same endorsed query replayed to replica B: refused there, by the broker, and
    // logged, though B's own memory never saw it.
    let again = fed.route_at(b.addr, SACRAMENTO, endorsed).await.unwrap();
    let r = &again.results[0];
    assert_eq!(r.status, TargetStatus::Refused as i32);
    assert_eq!(r.reason, RefusalReason::Replay as i32, "{}", r.detail);
    assert_eq!(r.decided_by, "broker");
    assert!(r.detail.contains("another broker replica"), "{}", r.detail);
    fed.broker.broker.flush_log().await.unwrap();
    let qid = hex::encode(&first.query_id);
    assert_eq!(
        rows_of(&fed, &qid),
        vec![
            ("forwarded".to_owned(), None),
            ("refused".to_owned(), Some("REPLAY".to_owned()))
        ]
    );
    // Ventura's node answered once.
    let inbound = fed.audit(VENTURA, Some("inbound_query")).unwrap();
    assert_eq!(inbound.len(), 1);
    fed.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registrations_at_two_replicas_at_once_make_one_registry() {
    let (pg, fed) = replicated().await;
    let b = fed.start_replica(&bin_dir().unwrap(), 1).await.unwrap();
    let a = fed.broker.addr;
    let pairs = [
        (VENTURA, SACRAMENTO, a),
        (SACRAMENTO, VENTURA, b.addr),
        (VENTURA, FRESNO, a),
        (FRESNO, VENTURA, b.addr),
        (SACRAMENTO, FRESNO, a),
        (FRESNO, SACRAMENTO, b.addr),
    ];
    let ids = futures::future::join_all(
        pairs
            .iter()
            .map(|(p, r, at)| fed.agree_at(*at, Federation::terms(p, r, &["240"], 30, 86_400))),
    )
    .await;
    let ids: Vec<String> = ids.into_iter().map(Result::unwrap).collect();

    // One registry: every leaf verified in order from the shared database, each agreement
    // in it once, and every signed head the root of the leaves before it.
    let db = Db::open_at(&Location::postgres(pg.url("broker"))).unwrap();
    let reg = alpr_broker::registry::Registry::load(&db, &fed.trust).unwrap();
    for id in &ids {
        assert!(reg.records().contains_key(id), "{id} registered");
    }
    assert_eq!(reg.records().len(), 6);
    let leaves = store::registry_leaves(&db).unwrap();
    let hashes: Vec<_> = leaves
        .iter()
        .map(|(_, l)| alpr_proto::merkle::leaf_hash(l))
        .collect();
    for size in 1..=leaves.len() as u64 {
        let sth = alpr_broker::registry::head_of_size(&db, size)
            .unwrap()
            .unwrap();
        let th = TreeHead::decode(sth.head.unwrap().payload.as_slice()).unwrap();
        assert_eq!(th.size, size);
        assert_eq!(
            th.root,
            alpr_proto::merkle::root(&hashes[..size as usize]).to_vec(),
            "head {size}"
        );
    }
    // The replica in this process serves the head of every leaf, its own and B's.
    let head_a = fed.broker.broker.head().unwrap();
    let size_a = TreeHead::decode(head_a.head.unwrap().payload.as_slice())
        .unwrap()
        .size;
    assert_eq!(size_a, leaves.len() as u64);

    // The operator's check of the shared routing log, from the second replica's config.
    let out = std::process::Command::new(bin_dir().unwrap().join("alpr-broker"))
        .args(["log", "--verify", "--config"])
        .arg(&b.config)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("routing log intact"), "{text}");
    fed.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_killed_under_load_loses_no_admitted_query_and_admits_none_twice() {
    let (_pg, fed) = replicated().await;
    let mut b = fed.start_replica(&bin_dir().unwrap(), 1).await.unwrap();
    fed.agree(Federation::terms(VENTURA, SACRAMENTO, &["240"], 30, 86_400))
        .await
        .unwrap();
    let queries: Vec<_> = (0..40)
        .map(|_| {
            let (q, signed) = fed
                .sign_query(SACRAMENTO, &params("8ABC123", &[VENTURA], "240", 3))
                .unwrap();
            (
                hex::encode(&q.query_id),
                fed.endorse(SACRAMENTO, &signed).unwrap(),
            )
        })
        .collect();

    // Four at a time to replica B; after the tenth answer B is killed (SIGKILL), and every
    // query that did not get its answer from B is sent again, unchanged, to replica A, as
    // a client retries through the balancer.
    let done = std::sync::atomic::AtomicUsize::new(0);
    let b_addr = b.addr;
    let killed = tokio::sync::Notify::new();
    let fed_ref = &fed;
    let send = futures::stream::iter(queries.iter().cloned())
        .map(|(qid, endorsed)| {
            let done = &done;
            let killed = &killed;
            async move {
                let at_b = fed_ref.route_at(b_addr, SACRAMENTO, endorsed.clone()).await;
                if at_b.is_ok() && done.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1 == 10
                {
                    killed.notify_one();
                }
                match at_b {
                    Ok(r) => (qid, "b", r),
                    Err(_) => {
                        let r = fed_ref
                            .route_at(fed_ref.broker.addr, SACRAMENTO, endorsed)
                            .await
                            .unwrap();
                        (qid, "a", r)
                    }
                }
            }
        })
        .buffer_unordered(4)
        .collect::<Vec<_>>();
    let kill = async {
        killed.notified().await;
        b.kill().unwrap();
    };
    let (results, ()) = tokio::join!(send, kill);
    fed.broker.broker.flush_log().await.unwrap();

    assert_eq!(
        results.len(),
        40,
        "every query got an answer from a replica"
    );
    let by_b = results.iter().filter(|(_, at, _)| *at == "b").count();
    assert!(
        (10..40).contains(&by_b),
        "{by_b} answered by B before it was killed"
    );
    let mut forwarded: BTreeMap<String, usize> = BTreeMap::new();
    for e in fed.broker_log().unwrap() {
        if e.event.as_str() == "route" && e.decision.as_str() == "forwarded" {
            *forwarded.entry(e.query_id.unwrap()).or_default() += 1;
        }
    }
    let mut replayed = 0;
    for (qid, at, r) in &results {
        let t = &r.results[0];
        let n = forwarded.get(qid).copied().unwrap_or(0);
        // Never admitted twice, by either replica.
        assert!(n <= 1, "{qid} forwarded {n} times");
        if t.status == TargetStatus::Answered as i32 {
            // Not lost: an answered query's admission is in the shared log.
            assert_eq!(n, 1, "{qid} answered by {at} but not logged as forwarded");
        } else {
            // Refused at A only as a replay of what B had admitted before it died (whose
            // answer died with it: the investigator runs a new query).
            assert_eq!(*at, "a");
            assert_eq!(t.reason, RefusalReason::Replay as i32, "{}", t.detail);
            assert_eq!(n, 1, "{qid} refused as a replay but never admitted");
            replayed += 1;
        }
    }
    eprintln!(
        "{by_b} answered through B before it was killed, {} through A, {replayed} refused at A as replays of B's admissions",
        40 - by_b - replayed
    );
    // Ventura's node answered each query at most once.
    let mut answered: BTreeMap<String, usize> = BTreeMap::new();
    for row in fed.audit(VENTURA, Some("inbound_query")).unwrap() {
        if row.entry.decision == "answered" {
            *answered
                .entry(row.entry.query_id.clone().unwrap())
                .or_default() += 1;
        }
    }
    assert!(answered.values().all(|n| *n == 1), "{answered:?}");
    for (qid, _, r) in &results {
        if r.results[0].status == TargetStatus::Answered as i32 {
            assert!(
                answered.contains_key(qid),
                "{qid} answered but not in Ventura's log"
            );
        }
    }
    // The shared routing log is one intact chain whoever wrote it.
    store::verify_log(&fed.broker.broker.db()).unwrap();
    fed.stop().await.unwrap();
}
