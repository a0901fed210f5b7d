//! The PostgreSQL backend, on a real server of its own ([`LocalPostgres`]): every backend
//! case, and what replicas sharing one database rely on: one chain and one tree whoever
//! writes, claims made once, registry appends that never fork, and clear errors when the
//! database is wrong or gone.

use super::*;
use crate::store::Claim;
use alpr_proto::merkle;
use alpr_runtime::pgserver::LocalPostgres;

fn server() -> LocalPostgres {
    LocalPostgres::start().expect("a local PostgreSQL server (Debian's postgresql package)")
}

fn replica(pg: &LocalPostgres, db: &str) -> Db {
    Db::open_at(&Location::postgres(pg.url(db))).unwrap()
}

#[test]
fn postgres_passes_every_backend_case() {
    let pg = server();
    for (i, (name, case)) in on_sqlite::CASES.iter().enumerate() {
        let url = pg.create_database(&format!("case{i}")).unwrap();
        let db = Db::open_at(&Location::postgres(url)).unwrap();
        assert!(db.is_shared());
        eprintln!("case {name} on PostgreSQL");
        case(db);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_writing_at_once_make_one_chain_and_one_tree() {
    let pg = server();
    let url = pg.create_database("broker").unwrap();
    let loc = Location::postgres(url);
    let (a, b) = (Db::open_at(&loc).unwrap(), Db::open_at(&loc).unwrap());
    let (wa, wb) = (
        LogWriter::open_at(&loc).unwrap(),
        LogWriter::open_at(&loc).unwrap(),
    );
    let rows = |who: &str| -> Vec<LogEntry> {
        (0..5)
            .map(|i| {
                route(
                    i,
                    &format!("{who}{i:02}"),
                    Some("CA0560100"),
                    Decision::Forwarded,
                )
            })
            .collect()
    };
    // 17 rows first, through one replica: a tree head to be consistent with later.
    wa.append(
        (0..17)
            .map(|i| route(i, "aa", None, Decision::Refused))
            .collect(),
    )
    .await
    .unwrap();
    let (old_size, old_root) = routing_tree_head(&b).unwrap();
    assert_eq!(old_size, 17);
    // Then both at once, 40 groups each, from tasks on both worker threads.
    let mut tasks = Vec::new();
    for n in 0..40 {
        for (w, who) in [(wa.clone(), "a"), (wb.clone(), "b")] {
            let r = rows(&format!("{who}{n:02}"));
            tasks.push(tokio::spawn(async move { w.append(r).await }));
        }
    }
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    let report = verify_log(&a).unwrap();
    assert_eq!(report.chained, 17 + 2 * 40 * 5);
    assert_eq!(read_log(&b).unwrap().len(), 417);
    // Either replica's view of the tree is the same, and consistent with the earlier head.
    let (size, root) = routing_tree_head(&a).unwrap();
    assert_eq!((size, root), routing_tree_head(&b).unwrap());
    let proof = routing_consistency(&b, old_size, size).unwrap();
    merkle::verify_consistency(old_size, size, &proof, &old_root, &root).unwrap();
}

#[test]
fn a_query_is_claimed_once_for_each_target_whichever_replica_asks() {
    let pg = server();
    pg.create_database("broker").unwrap();
    let (a, b) = (replica(&pg, "broker"), replica(&pg, "broker"));
    let t = |s: &[&str]| s.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    assert!(
        claim_routes(&a, b"q1", &t(&["CA0560100", "CA0340000"]), 100)
            .unwrap()
            .is_empty()
    );
    // The same query at the other replica: the target already routed is a replay, the new
    // one is claimed.
    assert_eq!(
        claim_routes(&b, b"q1", &t(&["CA0340000", "NV0020000"]), 101).unwrap(),
        t(&["CA0340000"])
    );
    assert_eq!(
        claim_routes(&a, b"q1", &t(&["NV0020000"]), 102).unwrap(),
        t(&["NV0020000"])
    );
    assert!(
        claim_routes(&b, b"q2", &t(&["CA0340000"]), 103)
            .unwrap()
            .is_empty()
    );
    // What a starting replica feeds its replay memory: every replica's claims.
    let mut since = routed_ids_since(&b, 101).unwrap();
    since.sort();
    assert_eq!(
        since,
        vec![
            (b"q1".to_vec(), "NV0020000".into(), 101),
            (b"q2".to_vec(), "CA0340000".into(), 103)
        ]
    );
}

#[test]
fn registry_appends_from_two_replicas_never_fork() {
    let pg = server();
    pg.create_database("broker").unwrap();
    let url = pg.url("broker");
    // Each replica appends at the index its own view says is next, and on losing the race
    // (false) looks again, as `Registry::append` does.
    let appender = |who: &'static str| {
        let url = url.clone();
        std::thread::spawn(move || {
            let mut db = Db::open_at(&Location::postgres(url)).unwrap();
            let (mut won, mut lost) = (0, 0);
            while won < 30 {
                let next = registry_leaves(&db).unwrap().len() as u64;
                let leaf = format!("{who} {won}");
                let head = format!("head {} by {who}", next + 1);
                if append_registry_leaf(&mut db, next, leaf.as_bytes(), head.as_bytes()).unwrap() {
                    won += 1;
                } else {
                    lost += 1;
                }
            }
            lost
        })
    };
    let (a, b) = (appender("a"), appender("b"));
    let lost = a.join().unwrap() + b.join().unwrap();
    let db = replica(&pg, "broker");
    let leaves = registry_leaves(&db).unwrap();
    assert_eq!(
        leaves.len(),
        60,
        "every append stored once ({lost} races lost)"
    );
    for (i, (idx, leaf)) in leaves.iter().enumerate() {
        assert_eq!(*idx, i as u64);
        // The head of each size was written by the replica whose leaf ends it.
        let who = &String::from_utf8_lossy(leaf)[..1];
        let head = tree_head_of_size(&db, i as u64 + 1).unwrap().unwrap();
        assert_eq!(
            String::from_utf8_lossy(&head),
            format!("head {} by {who}", i + 1)
        );
    }
    for who in ["a", "b"] {
        let n = leaves
            .iter()
            .filter(|(_, l)| l.starts_with(who.as_bytes()))
            .count();
        assert_eq!(n, 30, "{who}'s leaves");
    }
}

#[test]
fn a_wrong_or_lost_database_is_a_one_line_error_never_a_panic() {
    let e = Db::open_at(&Location::postgres("host=127.0.0.1 port=nope")).unwrap_err();
    assert!(
        matches!(e, Error::Runtime(alpr_runtime::Error::PostgresConfig(_))),
        "{e}"
    );
    assert!(e.to_string().contains("postgres connection string"), "{e}");
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let e = Db::open_at(&Location::postgres(format!(
        "host=127.0.0.1 port={port} user=alpr dbname=broker connect_timeout=2"
    )))
    .unwrap_err();
    assert!(e.to_string().starts_with("postgres: cannot connect"), "{e}");
    assert!(!e.to_string().contains('\n'), "{e}");

    let pg = server();
    pg.create_database("broker").unwrap();
    let mut db = replica(&pg, "broker");
    log(
        &mut db,
        &[LogEntry::new(1, Event::Route, Decision::Refused)],
    )
    .unwrap();
    // The server goes away under a running broker: each call fails with the reason.
    pg.stop().unwrap();
    let e = log(
        &mut db,
        &[LogEntry::new(2, Event::Route, Decision::Refused)],
    )
    .unwrap_err();
    assert!(matches!(e, Error::Postgres(_)), "{e}");
    let e = claim_routes(&db, b"q", &["CA0560100".into()], 3).unwrap_err();
    assert!(matches!(e, Error::Postgres(_)), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_writer_claims_a_route_in_the_transaction_that_decides_it() {
    let pg = server();
    pg.create_database("broker").unwrap();
    let loc = Location::postgres(pg.url("broker"));
    let (wa, wb) = (
        LogWriter::open_at(&loc).unwrap(),
        LogWriter::open_at(&loc).unwrap(),
    );
    let decided = |target: &str| {
        vec![
            route(7, "0a0b", Some(target), Decision::Forwarded),
            // Refused rows claim nothing.
            route(7, "0a0b", Some("CA0100500"), Decision::Refused),
        ]
    };
    let claim = Claim {
        query_id: vec![0x0a, 0x0b],
        now: 7,
    };
    assert!(
        wa.append_claimed(decided("CA0560100"), claim.clone())
            .await
            .unwrap()
            .is_empty()
    );
    // The same query decided at the other replica: written as a refused replay.
    assert_eq!(
        wb.append_claimed(decided("CA0560100"), claim.clone())
            .await
            .unwrap(),
        vec!["CA0560100".to_owned()]
    );
    // A target not routed before is claimed as usual.
    assert!(
        wb.append_claimed(decided("CA0340000"), claim)
            .await
            .unwrap()
            .is_empty()
    );
    let db = replica(&pg, "broker");
    let rows: Vec<_> = read_log(&db)
        .unwrap()
        .into_iter()
        .map(|e| (e.target.unwrap(), e.decision, e.reason_code))
        .collect();
    let r = |t: &str, d, why: Option<&str>| (t.to_owned(), d, why.map(Into::into));
    assert_eq!(
        rows,
        vec![
            r("CA0560100", Decision::Forwarded, None),
            r("CA0100500", Decision::Refused, None),
            r("CA0560100", Decision::Refused, Some("REPLAY")),
            r("CA0100500", Decision::Refused, None),
            r("CA0340000", Decision::Forwarded, None),
            r("CA0100500", Decision::Refused, None),
        ]
    );
    // No claim for the refused target, one for each forwarded.
    let mut claims = routed_ids_since(&db, 0).unwrap();
    claims.sort();
    assert_eq!(
        claims,
        vec![
            (vec![0x0a, 0x0b], "CA0340000".into(), 7),
            (vec![0x0a, 0x0b], "CA0560100".into(), 7)
        ]
    );
}

/// A CA and a server certificate for 127.0.0.1 it issued, PEM: (CA, server chain, key).
fn server_certificate() -> (String, String, String) {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = Issuer::from_ca_cert_der(ca_cert.der(), &ca_key).unwrap();
    let key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec!["127.0.0.1".to_owned()])
        .unwrap()
        .signed_by(&key, &issuer)
        .unwrap();
    (ca_cert.pem(), leaf.pem(), key.serialize_pem())
}

#[test]
fn over_tls_the_server_is_verified_and_nothing_travels_in_the_clear() {
    let (ca, chain, key) = server_certificate();
    let pg = LocalPostgres::start_tls(&chain, &key).unwrap();
    pg.create_database("broker").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("db-ca.pem");
    std::fs::write(&ca_file, &ca).unwrap();
    let over_tls = |ca: &std::path::Path| {
        Db::open_at(&Location::Postgres {
            url: pg.url("broker"),
            ca: Some(ca.to_path_buf()),
        })
    };
    // With the server's CA: connected, and the writer's own connection too.
    let mut db = over_tls(&ca_file).unwrap();
    log(
        &mut db,
        &[LogEntry::new(1, Event::Route, Decision::Refused)],
    )
    .unwrap();
    assert_eq!(read_log(&db).unwrap().len(), 1);
    // In the clear: the server refuses (it accepts TLS only).
    let e = Db::open_at(&Location::postgres(pg.url("broker"))).unwrap_err();
    assert!(e.to_string().contains("cannot connect"), "{e}");
    // A CA that did not issue the server's certificate: refused by the broker, one line.
    let (other, _, _) = server_certificate();
    let other_file = dir.path().join("other-ca.pem");
    std::fs::write(&other_file, &other).unwrap();
    let e = over_tls(&other_file).unwrap_err().to_string();
    assert!(e.starts_with("postgres: cannot connect"), "{e}");
    assert!(e.to_lowercase().contains("certificate"), "{e}");
    assert!(!e.contains('\n'), "{e}");
    // A CA file with no certificate in it.
    let empty = dir.path().join("empty.pem");
    std::fs::write(&empty, "").unwrap();
    assert!(over_tls(&empty).is_err());
}
