//! A node for the largest agencies, its reads in PostgreSQL (a real server of its own,
//! Debian's `postgresql` package, in a temporary directory): ingest, a sealed query
//! answered from native day partitions, the purge dropping whole partitions and logging
//! it, status, check-config and backup saying where the reads are, a query refused
//! `UNAVAILABLE` and logged when the database is lost, and a node started without its
//! PostgreSQL settings refusing to start rather than answer from an empty store; and its
//! decommission exporting every read from the partitions, then dropping them all.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use alpr_federation::{Federation, demo_agencies, open_policy, params};
use alpr_node::client::Reply;
use alpr_runtime::pgserver::LocalPostgres;

const VENTURA: &str = "CA0560100";
const SACRAMENTO: &str = "CA0340000";

/// One read a day of `plate`, `days` days before `now` (a minute earlier each).
fn csv_days(plate: &str, days: std::ops::Range<i64>, now: i64) -> String {
    let mut s = String::new();
    for d in days {
        s.push_str(&format!(
            "{plate},{},CAM-1,34.2,-119.2,CA\n",
            alpr_node::cli::fmt_time(now - d * 86_400 - 60)
        ));
    }
    s
}

/// Day partitions of table `reads` in the database, counted by the server (on a thread of
/// its own: the synchronous client cannot block the test's async task).
fn partitions_in(url: &str) -> i64 {
    let url = url.to_owned();
    std::thread::spawn(move || {
        let mut c = postgres::Client::connect(&url, postgres::NoTls).unwrap();
        c.query_one(
            "SELECT count(*) FROM pg_inherits WHERE inhparent = 'reads'::regclass",
            &[],
        )
        .unwrap()
        .get::<_, i64>(0)
    })
    .join()
    .unwrap()
}

#[tokio::test]
async fn a_node_with_its_reads_in_postgres_answers_purges_by_partition_and_refuses_to_start_without_it()
 {
    let server = LocalPostgres::start().expect("Debian's postgresql package");
    let url = server.create_database("ventura_reads").unwrap();
    let pg = url.clone();
    let fed = Federation::start_tuned(
        None,
        &demo_agencies()[..2],
        |ori| {
            let mut p = open_policy();
            if ori == VENTURA {
                p.retention_days = 30;
            }
            p
        },
        &[],
        &move |cfg| {
            if cfg.ori == VENTURA {
                // Plain: the node does not encrypt what it keeps in PostgreSQL.
                cfg.storage = alpr_node::config::StorageConfig {
                    postgres: Some(pg.clone()),
                    ..Default::default()
                };
            }
        },
    )
    .await
    .unwrap();
    let node = &fed.nodes[VENTURA].node;
    let now = alpr_pki::now_unix();

    // 40 days of one plate, another plate today: in PostgreSQL, one partition a day, and
    // none of it in node.db.
    let report = fed
        .ingest_csv(VENTURA, &csv_days("8ABC123", 0..40, now))
        .unwrap();
    assert_eq!(report.accepted, 40);
    fed.ingest_csv(VENTURA, &csv_days("7XYZ999", 0..1, now))
        .unwrap();
    // The same file again stores nothing new.
    fed.ingest_csv(VENTURA, &csv_days("8ABC123", 0..40, now))
        .unwrap();
    assert_eq!(alpr_node::store::count_reads(&node.db()).unwrap(), 41);
    let in_pg = partitions_in(&url);
    assert!((40..=42).contains(&in_pg), "{in_pg} partitions");
    let tables: i64 = node
        .db()
        .connection()
        .query_row(
            "SELECT count(*) FROM sqlite_master WHERE name GLOB 'reads_[0-9-]*'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(tables, 0, "no read partition in node.db");

    // A sealed query from another agency is answered from PostgreSQL.
    fed.agree(Federation::terms(VENTURA, SACRAMENTO, &["240"], 90, 86_400))
        .await
        .unwrap();
    let (q, resp) = fed
        .search(SACRAMENTO, &params("8ABC123", &[VENTURA], "240", 7))
        .await
        .unwrap();
    let Some(Reply::Answer { answer, .. }) =
        alpr_node::client::verify_reply(&fed.trust, &resp.results[0], &q, alpr_pki::now_unix())
            .unwrap()
    else {
        panic!("not answered: {:?}", resp.results[0]);
    };
    assert!(
        (7..=8).contains(&answer.reads.len()),
        "{} reads",
        answer.reads.len()
    );
    assert!(answer.reads.iter().all(|r| r.plate == "8ABC123"));

    // Retention drops whole partitions in PostgreSQL, logged like any purge.
    let (days, reads) = node.purge().unwrap();
    assert!(
        (9..=11).contains(&days.len()),
        "dropped {} days",
        days.len()
    );
    assert_eq!(reads as usize, days.len());
    assert_eq!(partitions_in(&url), in_pg - days.len() as i64);
    let purges = fed.audit(VENTURA, Some("purge")).unwrap();
    assert_eq!(purges.len(), 1);
    assert!(
        purges[0]
            .entry
            .detail
            .as_deref()
            .unwrap()
            .contains("retention 30 days"),
        "{:?}",
        purges[0].entry.detail
    );

    // status, check-config and backup say where the reads are.
    let status = node.status().unwrap().to_string();
    assert!(
        status.contains("held in PostgreSQL database ventura_reads"),
        "{status}"
    );
    let cfg = fed.node_configs[VENTURA].clone();
    let lines = alpr_node::Node::check_config(&cfg).unwrap();
    assert!(
        lines.iter().any(
            |l| l.starts_with("reads: in PostgreSQL database ventura_reads")
                && l.contains("NOT encrypted")
        ),
        "{lines:?}"
    );
    let b = node.backup(&fed.dir.join("backup")).unwrap();
    assert_eq!(b.reads, alpr_node::store::count_reads(&node.db()).unwrap());
    let manifest = std::fs::read_to_string(&b.manifest).unwrap();
    assert!(
        manifest.contains("which this backup does not copy"),
        "{manifest}"
    );

    // The database goes away (its primary lost): a query is refused, not answered from
    // nothing, and the refusal is logged; ingest fails with one line and can be run again.
    server.stop().unwrap();
    let (q, resp) = fed
        .search(SACRAMENTO, &params("8ABC123", &[VENTURA], "240", 7))
        .await
        .unwrap();
    let r = &resp.results[0];
    assert_eq!(r.status(), alpr_proto::pb::TargetStatus::Refused, "{r:?}");
    assert_eq!(r.reason(), alpr_proto::RefusalReason::Unavailable, "{r:?}");
    let Some(Reply::Refusal { refusal, .. }) =
        alpr_node::client::verify_reply(&fed.trust, r, &q, alpr_pki::now_unix()).unwrap()
    else {
        panic!("not a signed refusal: {r:?}");
    };
    assert!(
        refusal.detail.contains("cannot read its store now"),
        "{}",
        refusal.detail
    );
    let logged = fed.audit(VENTURA, Some("inbound_query")).unwrap();
    let last = &logged.last().unwrap().entry;
    assert_eq!(
        last.query_id.as_deref(),
        Some(hex::encode(&q.query_id).as_str())
    );
    assert_eq!(last.reason_code.as_deref(), Some("UNAVAILABLE"));
    assert!(
        last.detail
            .as_deref()
            .unwrap_or_default()
            .starts_with("the node cannot read its store now: postgres: "),
        "{last:?}"
    );
    let e = fed
        .ingest_csv(VENTURA, &csv_days("8ABC123", 0..2, now))
        .unwrap_err()
        .to_string();
    assert!(e.starts_with("postgres: ") && !e.contains('\n'), "{e}");

    // Started without its PostgreSQL settings, the node refuses, naming them; with a
    // key-encryption key as well, the config is refused.
    let mut without = cfg.clone();
    without.storage.postgres = None;
    let e = alpr_node::Node::open(&without).unwrap_err().to_string();
    assert!(
        e.contains("keeps its reads in PostgreSQL") && e.contains("[storage] postgres"),
        "{e}"
    );
    let mut both = cfg.clone();
    both.storage.kek_env = Some("ALPR_KEK".into());
    let text = toml::to_string(&both).unwrap();
    let path = fed.dir.join("both.toml");
    std::fs::write(&path, text).unwrap();
    let e = alpr_node::config::NodeConfig::load(&path)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("storage.postgres cannot be used with a key-encryption key"),
        "{e}"
    );
    // A connection string that does not parse, and a CA without a database: one line each,
    // naming the setting.
    for (storage, want) in [
        (
            alpr_node::config::StorageConfig {
                postgres: Some("host=127.0.0.1 port=nope".into()),
                ..Default::default()
            },
            "storage.postgres connection string",
        ),
        (
            alpr_node::config::StorageConfig {
                postgres_ca: Some(fed.dir.join("ca.pem")),
                ..Default::default()
            },
            "storage.postgres_ca is set but storage.postgres is not",
        ),
    ] {
        let mut bad = cfg.clone();
        bad.storage = storage;
        std::fs::write(&path, toml::to_string(&bad).unwrap()).unwrap();
        let e = alpr_node::config::NodeConfig::load(&path)
            .unwrap_err()
            .to_string();
        assert!(e.contains(want) && !e.contains('\n'), "{e}");
    }
    fed.stop().await.unwrap();
}

/// Decommission of a node whose reads are in PostgreSQL: every read is exported from the
/// partitions (and verifies), then every partition is dropped and the agency's claim on the
/// database released, and the certificate of destruction says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_on_postgres_leaves_with_its_reads_exported_and_every_partition_dropped() {
    let server = LocalPostgres::start().expect("Debian's postgresql package");
    let url = server.create_database("leaving_reads").unwrap();
    let pg = url.clone();
    let mut fed = Federation::start_tuned(
        None,
        &demo_agencies()[..1],
        |_| open_policy(),
        &[],
        &move |cfg| {
            cfg.storage = alpr_node::config::StorageConfig {
                postgres: Some(pg.clone()),
                ..Default::default()
            };
        },
    )
    .await
    .unwrap();
    let now = alpr_pki::now_unix();
    let report = fed
        .ingest_csv(VENTURA, &csv_days("8ABC123", 0..5, now))
        .unwrap();
    assert_eq!(report.accepted, 5);
    assert!(partitions_in(&url) >= 5);
    let cfg = fed.node_configs[VENTURA].clone();
    fed.nodes.remove(VENTURA).unwrap().stop().await.unwrap();
    let (admin, _) = fed
        .person(VENTURA, &alpr_federation::admin_of(VENTURA))
        .unwrap();
    let out = fed.dir.join("export");
    let d = {
        let node = alpr_node::Node::open(&cfg).unwrap();
        node.decommission(&out, &admin).await.unwrap()
    };
    assert_eq!(d.manifest.data_key_destroyed, None);
    let (m, _) = alpr_node::decommission::verify_export(&out, &fed.trust).unwrap();
    let reads = m.files.iter().find(|f| f.name == "reads.csv").unwrap();
    assert_eq!(reads.records, 5, "{m:?}");
    let exported = std::fs::read_to_string(out.join("reads.csv")).unwrap();
    assert_eq!(exported.matches("8ABC123").count(), 5, "{exported}");
    // Nothing of the agency's is left in the database: no partition, no claim on it.
    assert_eq!(partitions_in(&url), 0);
    let owners = {
        let url = url.clone();
        std::thread::spawn(move || {
            let mut c = postgres::Client::connect(&url, postgres::NoTls).unwrap();
            c.query_one("SELECT count(*) FROM owner", &[])
                .unwrap()
                .get::<_, i64>(0)
        })
        .join()
        .unwrap()
    };
    assert_eq!(owners, 0, "the agency's claim on the database released");
    let log = std::fs::read_to_string(out.join("audit.log")).unwrap();
    let last: alpr_proto::auditlog::LoggedEntry =
        serde_json::from_str(log.lines().last().unwrap()).unwrap();
    assert!(
        last.entry.contains("certificate of destruction")
            && last
                .entry
                .contains("every read partition in PostgreSQL database leaving_reads"),
        "{}",
        last.entry
    );
    for f in ["node.db", "audit.db"] {
        assert!(!cfg.data_dir.join(f).exists(), "{f} removed");
    }
    fed.stop().await.unwrap();
}
