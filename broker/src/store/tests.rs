use super::*;
use crate::Error;

/// Cases every backend passes: each is a test on SQLite here, and runs on PostgreSQL in
/// `postgres.rs`'s tests, each on a database of its own.
macro_rules! every_backend {
    ($($case:ident),* $(,)?) => {
        $(
            #[test]
            fn $case() {
                let (_dir, db) = fresh();
                super::$case(db);
            }
        )*
        /// The cases, by name.
        pub(super) const CASES: &[(&str, fn(Db))] = &[$((stringify!($case), super::$case)),*];
    };
}

pub(super) mod on_sqlite {
    use super::*;
    every_backend!(
        the_routing_log_reads_back_every_field_in_order,
        routing_stats_count_route_refusals_by_reason_and_target_and_forwarded_rows,
        agencies_keep_the_latest_claims_per_ori,
        registry_leaves_and_heads_are_stored_together_or_not_at_all,
        routing_weeks_count_forwarded_targets_and_refusals_by_reason_week_by_week,
        a_regulator_code_is_enrolled_once_spent_once_per_step_and_counts_failures,
    );
}

mod postgres;

fn fresh() -> (tempfile::TempDir, Db) {
    let dir = tempfile::tempdir().unwrap();
    // The directory is created as needed.
    let db = open(&dir.path().join("data").join("broker.db")).unwrap();
    (dir, db)
}

fn route(at: i64, id: &str, target: Option<&str>, decision: Decision) -> LogEntry {
    LogEntry {
        query_id: Some(id.into()),
        target: target.map(Into::into),
        ..LogEntry::new(at, Event::Route, decision)
    }
}

fn refused(event: Event, reason: &str, target: Option<&str>) -> LogEntry {
    LogEntry {
        reason_code: Some(reason.into()),
        target: target.map(Into::into),
        ..LogEntry::new(100, event, Decision::Refused)
    }
}

fn the_routing_log_reads_back_every_field_in_order(mut db: Db) {
    assert!(read_log(&db).unwrap().is_empty());
    let full = LogEntry {
        query_id: Some("00ff".into()),
        requester: Some("inv@CA0340000 (investigator)".into()),
        target: Some("CA0560100".into()),
        reason_code: Some("NO_AGREEMENT".into()),
        detail: Some("no agreement; \"quoted\" and\nnewline".into()),
        agreement_id: Some("agr-1".into()),
        rule_version: Some("US-CA/2026.1".into()),
        ..LogEntry::new(1_700_000_000, Event::Route, Decision::Refused)
    };
    let bare = LogEntry::new(1_700_000_001, Event::Register, Decision::Registered);
    log(&mut db, &[full.clone(), bare.clone()]).unwrap();
    log(&mut db, &[]).unwrap();
    let third = LogEntry::new(1_700_000_002, Event::RouteResult, Decision::Answered);
    log(&mut db, std::slice::from_ref(&third)).unwrap();
    let got = read_log(&db).unwrap();
    let want: Vec<LogEntry> = [full, bare, third]
        .into_iter()
        .enumerate()
        .map(|(i, e)| LogEntry {
            seq: i as i64 + 1,
            ..e
        })
        .collect();
    assert_eq!(got, want);
}

#[test]
fn the_routing_log_survives_reopening_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("broker.db");
    let mut db = open(&path).unwrap();
    log(&mut db, &[LogEntry::new(5, Event::Lift, Decision::Logged)]).unwrap();
    drop(db);
    let db = Db::open(&path).unwrap();
    let got = read_log(&db).unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(
        (got[0].event, got[0].decision),
        (Event::Lift, Decision::Logged)
    );
}

#[test]
fn an_unknown_word_in_the_log_is_a_read_error_that_names_it() {
    let (_dir, db) = fresh();
    db.connection()
        .unwrap()
        .execute(
            "INSERT INTO log (at, event, decision) VALUES (1, 'route', 'routed')",
            [],
        )
        .unwrap();
    let e = read_log(&db).unwrap_err();
    assert!(matches!(e, Error::Db(_)), "{e}");
    let m = e.to_string();
    assert!(m.starts_with("database: "), "{m}");
    assert!(m.contains("unknown decision \"routed\""), "{m}");
}

#[test]
fn a_database_failure_is_a_db_error_with_the_backend_message() {
    let (_dir, db) = fresh();
    db.connection()
        .unwrap()
        .execute_batch("ALTER TABLE log RENAME TO moved")
        .unwrap();
    let e = read_log(&db).unwrap_err();
    let Error::Db(inner) = &e else {
        panic!("not a database error: {e}");
    };
    assert_eq!(e.to_string(), format!("database: {inner}"));
    assert!(inner.to_string().contains("no such table: log"), "{inner}");
    // The crate error's source is the opaque database error.
    let source = std::error::Error::source(&e).unwrap();
    assert_eq!(source.to_string(), inner.to_string());
}

fn routing_stats_count_route_refusals_by_reason_and_target_and_forwarded_rows(mut db: Db) {
    assert_eq!(routing_stats(&db).unwrap(), (vec![], 0));
    let mut rows = vec![
        refused(Event::Route, "NO_AGREEMENT", Some("CA0560100")),
        refused(Event::Route, "NO_AGREEMENT", Some("CA0560100")),
        refused(Event::Route, "NO_AGREEMENT", Some("CA0340000")),
        refused(Event::Route, "UNKNOWN_AGENCY", None),
        // A refusal reported by the target counts as a route refusal too.
        refused(Event::RouteResult, "PURPOSE_NOT_ALLOWED", Some("CA0560100")),
        // Refusals of registrations and requests are not routing refusals.
        refused(Event::Register, "INVALID_INPUT", None),
        refused(Event::Request, "INVALID_INPUT", None),
        // A refusal without a reason code counts under the empty reason.
        LogEntry::new(100, Event::Route, Decision::Refused),
    ];
    for _ in 0..3 {
        rows.push(route(100, "aa", Some("CA0560100"), Decision::Forwarded));
    }
    rows.push(route(100, "bb", Some("CA0560100"), Decision::Unavailable));
    log(&mut db, &rows).unwrap();
    let (refusals, forwarded) = routing_stats(&db).unwrap();
    assert_eq!(forwarded, 3);
    let s = |r: &str, t: &str, n: u64| (r.to_owned(), t.to_owned(), n);
    assert_eq!(
        refusals,
        vec![
            s("NO_AGREEMENT", "CA0560100", 2),
            s("", "-", 1),
            s("NO_AGREEMENT", "CA0340000", 1),
            s("PURPOSE_NOT_ALLOWED", "CA0560100", 1),
            s("UNKNOWN_AGENCY", "-", 1),
        ]
    );
}

fn a_regulator_code_is_enrolled_once_spent_once_per_step_and_counts_failures(db: Db) {
    let (reg, other) = ("reg-ca@US-CA", "reg-nv@US-NV");
    assert_eq!(regulator_code(&db, reg).unwrap(), None);
    assert!(enroll_regulator_code(&db, reg, 100, false).unwrap());
    // A second enrollment without `replace` changes nothing.
    assert!(!enroll_regulator_code(&db, reg, 200, false).unwrap());
    let c = regulator_code(&db, reg).unwrap().unwrap();
    assert_eq!(
        (c.secret.len(), c.enrolled_at, c.generation, c.confirmed_at),
        (0, 100, 1, None),
        "enrolled, no secret until set up"
    );
    // No step is spent before the code is set up; setting up needs the current generation.
    assert!(!use_regulator_step(&db, reg, 1000).unwrap());
    assert!(!confirm_regulator_code(&db, reg, 2, b"first-secret-20bytes", 1000, 300).unwrap());
    assert!(confirm_regulator_code(&db, reg, 1, b"first-secret-20bytes", 1000, 300).unwrap());
    assert!(
        !confirm_regulator_code(&db, reg, 1, b"thief-secret-20bytes", 1001, 301).unwrap(),
        "set up once"
    );
    let c = regulator_code(&db, reg).unwrap().unwrap();
    assert_eq!(
        (c.secret.as_slice(), c.confirmed_at),
        (&b"first-secret-20bytes"[..], Some(300))
    );
    // A step is spent once; an older one never.
    assert!(
        !use_regulator_step(&db, reg, 1000).unwrap(),
        "spent by the setup"
    );
    assert!(!use_regulator_step(&db, reg, 999).unwrap());
    assert!(use_regulator_step(&db, reg, 1001).unwrap());
    assert!(!use_regulator_step(&db, reg, 1001).unwrap());
    assert!(!use_regulator_step(&db, other, 1).unwrap(), "not enrolled");
    // Failures count within a window, per regulator, newest first, and are cleared.
    for at in [400, 500, 600] {
        put_regulator_failure(&db, reg, at).unwrap();
    }
    put_regulator_failure(&db, other, 600).unwrap();
    assert_eq!(regulator_failures_since(&db, reg, 450).unwrap(), 2);
    assert_eq!(regulator_failures_since(&db, reg, 700).unwrap(), 0);
    assert_eq!(regulator_failure_times(&db, reg, 2).unwrap(), [600, 500]);
    clear_regulator_failures(&db, reg).unwrap();
    assert_eq!(regulator_failures_since(&db, reg, 0).unwrap(), 0);
    assert_eq!(regulator_failures_since(&db, other, 0).unwrap(), 1);
    // Replacing starts over: the next generation, not set up, no secret, no failures.
    put_regulator_failure(&db, reg, 700).unwrap();
    assert!(enroll_regulator_code(&db, reg, 800, true).unwrap());
    let c = regulator_code(&db, reg).unwrap().unwrap();
    assert_eq!((c.secret.len(), c.generation, c.confirmed_at), (0, 2, None));
    assert_eq!(regulator_failures_since(&db, reg, 0).unwrap(), 0);
    assert!(!confirm_regulator_code(&db, reg, 1, b"stale-secret-20bytes", 5, 900).unwrap());
    assert!(confirm_regulator_code(&db, reg, 2, b"third-secret-20bytes", 5, 900).unwrap());
    // Listings leave secrets out; removal is once.
    enroll_regulator_code(&db, other, 900, false).unwrap();
    let listed = regulator_codes(&db).unwrap();
    assert_eq!(
        listed
            .iter()
            .map(|c| c.regulator.as_str())
            .collect::<Vec<_>>(),
        [reg, other]
    );
    assert!(listed.iter().all(|c| c.secret.is_empty()));
    assert!(remove_regulator_code(&db, reg).unwrap());
    assert!(!remove_regulator_code(&db, reg).unwrap());
    assert_eq!(regulator_code(&db, reg).unwrap(), None);
    // A sign-in token is spent once until it is forgotten.
    assert!(spend_signin_token(&db, b"digest-1", 2000, 1000).unwrap());
    assert!(!spend_signin_token(&db, b"digest-1", 2000, 1500).unwrap());
    assert!(spend_signin_token(&db, b"digest-2", 2000, 1500).unwrap());
    assert!(
        spend_signin_token(&db, b"digest-1", 4000, 2001).unwrap(),
        "forgotten after its time (the token itself has expired by then)"
    );
}

fn agencies_keep_the_latest_claims_per_ori(db: Db) {
    assert_eq!(agency_jurisdiction(&db, "CA0560100").unwrap(), None);
    let claims = |j: &str| {
        alpr_pki::AgencyClaims::new(
            "CA0560100",
            "Ventura County",
            j.parse().unwrap(),
            alpr_pki::AgencyKind::Local,
        )
        .unwrap()
    };
    put_agency(&db, &claims("US-NV")).unwrap();
    put_agency(&db, &claims("US-CA")).unwrap();
    assert_eq!(
        agency_jurisdiction(&db, "CA0560100").unwrap().as_deref(),
        Some("US-CA")
    );
    assert_eq!(agency_jurisdiction(&db, "CA0340000").unwrap(), None);
}

#[test]
fn the_replay_rebuild_returns_routed_ids_and_targets_since_newest_first() {
    let (_dir, mut db) = fresh();
    let since = 10_000;
    log(
        &mut db,
        &[
            // Too old.
            route(since - 1, "01", Some("CA0560100"), Decision::Forwarded),
            // Routed (forwarded or refused: both were decided for this id and target).
            route(since, "02", Some("CA0560100"), Decision::Forwarded),
            route(since + 5, "03", Some("CA0340000"), Decision::Refused),
            // No target, no id, an id that is not hex, or not a routing decision.
            route(since + 6, "04", None, Decision::Refused),
            LogEntry::new(since + 7, Event::Route, Decision::Refused),
            route(since + 8, "zz", Some("CA0560100"), Decision::Forwarded),
            LogEntry {
                event: Event::RouteResult,
                ..route(since + 9, "05", Some("CA0560100"), Decision::Answered)
            },
            route(since + 10, "06", Some("CA0560100"), Decision::Unavailable),
        ],
    )
    .unwrap();
    let got = routed_ids_since(&db, since).unwrap();
    assert_eq!(
        got,
        vec![
            (vec![0x06], "CA0560100".to_owned(), since + 10),
            (vec![0x03], "CA0340000".to_owned(), since + 5),
            (vec![0x02], "CA0560100".to_owned(), since),
        ]
    );
}

#[test]
fn the_replay_rebuild_stops_at_a_row_a_minute_older_than_since() {
    let (_dir, mut db) = fresh();
    let since = 10_000;
    log(
        &mut db,
        &[
            // Hidden behind the older row below: never reached.
            route(since + 1, "01", Some("CA0560100"), Decision::Forwarded),
            // More than a minute before `since`: the scan stops here.
            route(since - 61, "02", Some("CA0560100"), Decision::Forwarded),
            route(since + 2, "03", Some("CA0560100"), Decision::Forwarded),
            // Out of order by a minute at most: skipped, the scan goes on.
            route(since - 60, "04", Some("CA0560100"), Decision::Forwarded),
            route(since + 3, "05", Some("CA0560100"), Decision::Forwarded),
        ],
    )
    .unwrap();
    let ids: Vec<Vec<u8>> = routed_ids_since(&db, since)
        .unwrap()
        .into_iter()
        .map(|(id, _, _)| id)
        .collect();
    assert_eq!(ids, vec![vec![0x05], vec![0x03]]);
}

fn registry_leaves_and_heads_are_stored_together_or_not_at_all(mut db: Db) {
    assert!(registry_leaves(&db).unwrap().is_empty());
    assert_eq!(latest_tree_head(&db).unwrap(), None);
    append_registry_leaf(&mut db, 0, b"leaf 0", b"head 1").unwrap();
    append_registry_leaf(&mut db, 1, b"leaf 1", b"head 2").unwrap();
    assert_eq!(
        registry_leaves(&db).unwrap(),
        vec![(0, b"leaf 0".to_vec()), (1, b"leaf 1".to_vec())]
    );
    assert_eq!(
        latest_tree_head(&db).unwrap().as_deref(),
        Some(&b"head 2"[..])
    );
    assert_eq!(
        tree_head_of_size(&db, 1).unwrap().as_deref(),
        Some(&b"head 1"[..])
    );
    assert_eq!(tree_head_of_size(&db, 3).unwrap(), None);
    // A leaf index already taken (by another replica) is not stored again: the caller
    // catches up and retries; the log never forks.
    assert!(!append_registry_leaf(&mut db, 1, b"again", b"head 2'").unwrap());
    assert_eq!(registry_leaves(&db).unwrap()[1].1, b"leaf 1");
    assert_eq!(
        tree_head_of_size(&db, 2).unwrap().as_deref(),
        Some(&b"head 2"[..])
    );
    // A head already stored for the new size makes the leaf roll back with it.
    put_tree_head(&db, 3, b"head 3").unwrap();
    assert!(append_registry_leaf(&mut db, 2, b"leaf 2", b"head 3'").is_err());
    assert_eq!(registry_leaves(&db).unwrap().len(), 2);
    assert_eq!(
        tree_head_of_size(&db, 3).unwrap().as_deref(),
        Some(&b"head 3"[..])
    );
    // Replacing a head keeps one per size.
    put_tree_head(&db, 1, b"head 1 cosigned").unwrap();
    assert_eq!(
        tree_head_of_size(&db, 1).unwrap().as_deref(),
        Some(&b"head 1 cosigned"[..])
    );
    assert_eq!(
        latest_tree_head(&db).unwrap().as_deref(),
        Some(&b"head 3"[..])
    );
}

#[tokio::test]
async fn the_log_writer_makes_rows_durable_before_it_answers() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("broker.db");
    let writer = LogWriter::open(&path).unwrap();
    let reader = open(&path).unwrap();
    let rows: Vec<LogEntry> = (0..3)
        .map(|i| route(i, &format!("0{i}"), Some("CA0560100"), Decision::Forwarded))
        .collect();
    // Concurrent appends share the writer; each resolves once its rows are committed.
    let (a, b) = tokio::join!(
        writer.append(rows[..2].to_vec()),
        writer.append(rows[2..].to_vec())
    );
    a.unwrap();
    b.unwrap();
    let mut got = read_log(&reader).unwrap();
    got.sort_by_key(|e| e.at);
    assert_eq!(got.len(), 3);
    for (g, w) in got.iter().zip(&rows) {
        assert_eq!(
            LogEntry {
                seq: 0,
                ..g.clone()
            },
            *w
        );
    }
    // Unawaited rows are in once a later flush resolves.
    writer.append_unawaited(vec![LogEntry::new(
        9,
        Event::RouteResult,
        Decision::Answered,
    )]);
    writer.flush().await.unwrap();
    let got = read_log(&reader).unwrap();
    assert_eq!(got.len(), 4);
    assert_eq!(got[3].event, Event::RouteResult);
}

#[tokio::test]
async fn a_failed_group_commit_is_reported_to_the_waiting_caller() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("broker.db");
    let writer = LogWriter::open(&path).unwrap();
    open(&path)
        .unwrap()
        .connection()
        .unwrap()
        .execute_batch("ALTER TABLE log RENAME TO moved")
        .unwrap();
    let e = writer
        .append(vec![LogEntry::new(1, Event::Route, Decision::Refused)])
        .await
        .unwrap_err();
    assert!(
        matches!(&e, Error::Log(m) if m.contains("no such table: log")),
        "{e}"
    );
}

#[tokio::test]
async fn the_routing_log_is_a_hash_chain_whoever_writes_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("broker.db");
    let mut db = open(&path).unwrap();
    log(
        &mut db,
        &[route(1, "aa", Some("CA0560100"), Decision::Forwarded)],
    )
    .unwrap();
    let writer = LogWriter::open(&path).unwrap();
    writer
        .append(vec![
            route(2, "bb", Some("CA0560100"), Decision::Refused),
            route(3, "cc", None, Decision::Forwarded),
        ])
        .await
        .unwrap();
    log(
        &mut db,
        &[route(4, "dd", Some("CA0100500"), Decision::Answered)],
    )
    .unwrap();
    let r = verify_log(&db).unwrap();
    assert_eq!(
        r,
        ChainReport {
            chained: 4,
            unchained_before: 0,
            heads: 0
        }
    );
    assert_eq!(read_log(&db).unwrap().len(), 4);
}

#[test]
fn an_edited_deleted_or_unchained_row_is_named() {
    let edit = |sql: &str| {
        let (_dir, mut db) = fresh();
        for i in 1..=4 {
            log(
                &mut db,
                &[route(i, &format!("{i:02x}"), None, Decision::Forwarded)],
            )
            .unwrap();
        }
        db.connection().unwrap().execute_batch(sql).unwrap();
        verify_log(&db).unwrap_err().to_string()
    };
    let e = edit("UPDATE log SET decision = 'refused' WHERE seq = 2");
    assert!(e.contains("row 2: content does not match its hash"), "{e}");
    let e = edit("DELETE FROM log WHERE seq = 3");
    assert!(e.contains("row 3 is missing (next is 4)"), "{e}");
    let e = edit("UPDATE log SET hash = NULL, prev_hash = NULL WHERE seq = 4");
    assert!(e.contains("row 4 is not chained"), "{e}");
    let e = edit("UPDATE log SET prev_hash = hash WHERE seq = 3");
    assert!(e.contains("row 3: previous-hash link broken"), "{e}");
}

#[test]
fn a_log_from_before_the_chain_keeps_its_rows_and_chains_the_next() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("broker.db");
    {
        let c = rusqlite::Connection::open(&path).unwrap();
        c.execute_batch(
            "CREATE TABLE log (seq INTEGER PRIMARY KEY, at INTEGER NOT NULL, event TEXT NOT NULL, query_id TEXT, requester TEXT, target TEXT, decision TEXT NOT NULL, reason_code TEXT, detail TEXT, agreement_id TEXT, rule_version TEXT);
             INSERT INTO log (at, event, decision) VALUES (1, 'route', 'forwarded');
             INSERT INTO log (at, event, decision) VALUES (2, 'route', 'refused');",
        )
        .unwrap();
    }
    let mut db = open(&path).unwrap();
    log(&mut db, &[route(3, "ee", None, Decision::Forwarded)]).unwrap();
    assert_eq!(
        verify_log(&db).unwrap(),
        ChainReport {
            chained: 1,
            unchained_before: 2,
            heads: 0
        }
    );
    assert_eq!(read_log(&db).unwrap().len(), 3);
}

fn routing_weeks_count_forwarded_targets_and_refusals_by_reason_week_by_week(mut db: Db) {
    assert!(routing_weeks(&db, 12).unwrap().is_empty());
    const WEEK: i64 = 7 * 86_400;
    let at = |week: i64, mut e: LogEntry| {
        e.at = week * WEEK + 3_600;
        e
    };
    let rows = vec![
        at(2, route(0, "aa", Some("CA0560100"), Decision::Forwarded)),
        at(2, route(0, "bb", Some("CA0560100"), Decision::Forwarded)),
        at(2, refused(Event::Route, "NO_AGREEMENT", Some("CA0100500"))),
        at(5, refused(Event::Route, "NO_AGREEMENT", Some("CA0100500"))),
        at(
            5,
            refused(Event::RouteResult, "PURPOSE_PROHIBITED", Some("CA0560100")),
        ),
        // Not routing: not counted.
        at(5, refused(Event::Register, "INVALID_INPUT", None)),
        at(9, route(0, "cc", Some("CA0560100"), Decision::Forwarded)),
    ];
    log(&mut db, &rows).unwrap();
    let weeks = routing_weeks(&db, 12).unwrap();
    let s = |r: &str, n: u64| (r.to_owned(), n);
    assert_eq!(
        weeks,
        vec![
            (2 * WEEK, 2, vec![s("NO_AGREEMENT", 1)]),
            (
                5 * WEEK,
                0,
                vec![s("NO_AGREEMENT", 1), s("PURPOSE_PROHIBITED", 1)]
            ),
            (9 * WEEK, 1, vec![]),
        ]
    );
    // Only the newest weeks asked for.
    assert_eq!(routing_weeks(&db, 1).unwrap(), vec![(9 * WEEK, 1, vec![])]);
}
