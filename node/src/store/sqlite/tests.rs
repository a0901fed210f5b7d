use alpr_proto::pb::Read;

use super::*;
use crate::settings::Flag;
use crate::store::{HoldRow, count_reads, insert_reads};

fn read(plate: &str, at: i64) -> Read {
    Read {
        plate: plate.into(),
        captured_at: at,
        camera_id: "cam-1".into(),
        latitude: 34.0,
        longitude: -119.0,
        plate_state: "CA".into(),
    }
}

fn db() -> (tempfile::TempDir, Db) {
    let dir = tempfile::tempdir().unwrap();
    let db = open(&dir.path().join("node.db")).unwrap();
    (dir, db)
}

#[test]
fn a_transaction_commits_what_succeeded_and_rolls_back_what_failed() {
    let (_d, mut db) = db();
    let day = 20_000 * 86_400;
    db.transaction(|tx| {
        settings::set_flag(tx, Flag::SharingEnabled, true)?;
        holds::place(
            tx,
            "24-1",
            "8ABC123",
            (day, day + 60),
            day + 86_400,
            "sup",
            day,
        )
    })
    .unwrap();
    let failed: Result<(), Error> = db.transaction(|tx| {
        settings::set_flag(tx, Flag::RefuseAll, true)?;
        holds::place(
            tx,
            "24-2",
            "7XYZ000",
            (day, day + 60),
            day + 86_400,
            "sup",
            day,
        )?;
        Err(Error::Usage("stop".into()))
    });
    assert!(failed.is_err());
    let s = settings::load(&db).unwrap();
    assert!(s.sharing_enabled, "the first transaction committed");
    assert!(!s.refuse_all, "the second rolled back");
    let held: Vec<HoldRow> = holds::list(&db).unwrap();
    assert_eq!(held.len(), 1);
    assert_eq!(held[0].case_number, "24-1");
}

#[test]
fn reopening_keeps_everything_and_a_newer_schema_is_refused_by_type() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("node.db");
    let mut db = open(&path).unwrap();
    assert_eq!(
        insert_reads(&mut db, &[read("8ABC123", 20_000 * 86_400)]).unwrap(),
        1
    );
    drop(db);
    let db = open(&path).unwrap();
    assert_eq!(count_reads(&db).unwrap(), 1);
    assert_eq!(maintenance::schema_version(&db).unwrap(), SCHEMA_VERSION);
    db.connection()
        .pragma_update(None, "user_version", SCHEMA_VERSION + 1)
        .unwrap();
    drop(db);
    match open(&path) {
        Err(Error::SchemaTooNew { found, supported }) => {
            assert_eq!((found, supported), (SCHEMA_VERSION + 1, SCHEMA_VERSION));
        }
        other => panic!("expected SchemaTooNew, got {other:?}"),
    }
}

#[test]
fn a_database_error_keeps_sqlites_message() {
    let (_d, db) = db();
    let e: Error = db
        .connection()
        .execute("INSERT INTO no_such_table VALUES (1)", [])
        .unwrap_err()
        .into();
    assert!(matches!(e, Error::Db(_)));
    assert!(
        e.to_string().contains("no such table: no_such_table"),
        "{e}"
    );
}

#[test]
fn two_writers_interleaving_keep_the_audit_tree_equal_to_the_entries() {
    use crate::audit::{AuditEntry, Decision, Event};
    use crate::store::{AuditDb, AuditLog, audit};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.db");
    // The daemon's writer and a host command's (an export) append to one file.
    let daemon = AuditLog::open(&path, None).unwrap();
    let entry = |i: u64| AuditEntry {
        count: Some(i),
        ..AuditEntry::new(i as i64, Event::Ingest, Decision::Ok)
    };
    let mut n = 0u64;
    for round in 0..9u64 {
        let group: Vec<_> = (0..round * 3 + 1).map(|i| entry(n + i)).collect();
        n += group.len() as u64;
        daemon.append(group).unwrap();
        if round % 3 == 1 {
            AuditLog::open(&path, None)
                .unwrap()
                .append(vec![entry(n)])
                .unwrap();
            n += 1;
        }
    }
    let db = AuditDb::open(&path).unwrap();
    assert_eq!(audit::size(&db).unwrap(), n);
    assert!(n > 100, "{n}");
    // verify() recomputes the tree from the entries and compares the stored one.
    assert_eq!(audit::verify(&db, None).unwrap().entries, n);
    for size in [1, 16, 17, 63, 64, n] {
        let p = audit::consistency_proof(&db, 1, size).unwrap();
        let first = alpr_proto::merkle::leaf_hash(
            &hex::decode(&audit::logged_entries(&db, 1, 1).unwrap()[0].hash).unwrap(),
        );
        alpr_proto::merkle::verify_consistency(
            1,
            size,
            &p,
            &first,
            &audit::root_at(&db, size).unwrap(),
        )
        .unwrap();
    }
    // A stored subtree edited (proofs would be built from it): verify names it.
    db.connection()
        .execute(
            "UPDATE audit_tree SET hash = zeroblob(32) WHERE level = 4 AND idx = 1",
            [],
        )
        .unwrap();
    let e = audit::verify(&db, None).unwrap_err().to_string();
    assert!(e.contains("stored audit tree does not match"), "{e}");
}

#[test]
fn recent_reads_only_the_newest_entries_newest_first() {
    use crate::audit::{AuditEntry, Decision, Event, Filter};
    use crate::store::{AuditDb, AuditLog, audit};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.db");
    let log = AuditLog::open(&path, None).unwrap();
    let entry = |i: i64, user: &str, event: Event| AuditEntry {
        requester_user: Some(user.into()),
        ..AuditEntry::new(i, event, Decision::Ok)
    };
    let mut group = Vec::new();
    for i in 0..60 {
        let user = if i % 3 == 0 { "ann" } else { "bob" };
        let event = if i % 2 == 0 {
            Event::OutboundQuery
        } else {
            Event::Export
        };
        group.push(entry(i, user, event));
    }
    log.append(group).unwrap();
    let db = AuditDb::open(&path).unwrap();
    let f = Filter {
        event: Some(Event::OutboundQuery),
        user: Some("ann".into()),
        ..Default::default()
    };
    // Every outbound entry read: ann's are the even multiples of 3, newest first.
    let (all, more) = audit::recent(&db, &f, 100, 1000).unwrap();
    let at: Vec<i64> = all.iter().map(|e| e.entry.at).collect();
    assert_eq!(at, vec![54, 48, 42, 36, 30, 24, 18, 12, 6, 0]);
    assert!(!more);
    // Kept to `keep`, and only the newest `scan` outbound entries read (58 down to 32).
    let (kept, _) = audit::recent(&db, &f, 3, 1000).unwrap();
    assert_eq!(kept.len(), 3);
    let (scanned, more) = audit::recent(&db, &f, 100, 14).unwrap();
    assert_eq!(
        scanned.iter().map(|e| e.entry.at).collect::<Vec<_>>(),
        vec![54, 48, 42, 36]
    );
    assert!(more, "older entries were left unread");
}

#[test]
fn rejected_rows_keep_the_newest_and_go_with_the_reads_retention() {
    let (_d, mut db) = db();
    let day = 20_000 * 86_400;
    let many: Vec<(u64, String)> = (1..=120).map(|l| (l, format!("row {l} bad"))).collect();
    let rows: Vec<(u64, &str)> = many.iter().map(|(l, r)| (*l, r.as_str())).collect();
    // 50 of each ingest are kept, 200 in all, newest first.
    for i in 0..5 {
        rejects::put(&mut db, day + i, &format!("f{i}.csv"), &rows).unwrap();
    }
    let kept = rejects::recent(&db, 1_000).unwrap();
    assert_eq!(kept.len(), 200);
    assert_eq!((kept[0].source.as_str(), kept[0].line), ("f4.csv", 50));
    assert_eq!(kept[199].source, "f1.csv");
    // The purge of the days before day + 3 takes the rejects of the ingests before it.
    let tx = db.conn.transaction().unwrap();
    rejects::purge_before(&tx, day + 3).unwrap();
    tx.commit().unwrap();
    let left = rejects::recent(&db, 1_000).unwrap();
    assert!(left.iter().all(|r| r.at >= day + 3), "{left:?}");
    assert_eq!(left.len(), 100);
}

#[test]
fn a_withdrawn_list_stops_matching_at_once_but_stays_until_its_queued_hits_are_reported() {
    use alpr_proto::pb::{HotlistShare, Query};
    let (_d, mut db) = db();
    let now = 1_800_000_000;
    let share = |id: u8, owner: &str, name: &str, issued: i64| Query {
        query_id: vec![id; 16],
        requester_ori: owner.into(),
        issued_at: issued,
        window_start: issued,
        window_end: now + 86_400,
        hotlist: Some(HotlistShare {
            name: name.into(),
            ..Default::default()
        }),
        ..Default::default()
    };
    shares::record_in(
        &db,
        "agr-1",
        &share(1, "CA0340000", "stolen", now - 100),
        now,
    )
    .unwrap();
    shares::record_in(
        &db,
        "agr-2",
        &share(2, "CA0100500", "stolen", now - 100),
        now,
    )
    .unwrap();
    shares::record_in(
        &db,
        "agr-1",
        &share(3, "CA0340000", "stolen", now + 50),
        now,
    )
    .unwrap();
    shares::queue_hits(&mut db, &[(vec![1; 16], read("8ABC123", now - 10))], now).unwrap();
    // A withdrawal signed at `now` stops the owner's older list of the name only: not
    // another owner's, not a newer one of its own.
    assert_eq!(
        shares::withdraw_in(&db, "CA0340000", "stolen", None, now, now).unwrap(),
        1
    );
    let active: Vec<_> = shares::active_in(&db, now)
        .unwrap()
        .into_iter()
        .map(|s| s.query.query_id[0])
        .collect();
    assert_eq!(active, [2, 3]);
    // Purged once lapsed, except while a hit of it waits to reach its owner.
    shares::purge(&db, now + 1, 7 * 86_400).unwrap();
    assert!(
        shares::find_in(&db, &[1; 16]).unwrap().is_some(),
        "its hit is queued"
    );
    let pending = shares::pending_hits(&db, 10).unwrap();
    let ids: Vec<i64> = pending.iter().map(|p| p.id).collect();
    shares::settle_hits(&mut db, &ids, Some("delivered"), now + 2).unwrap();
    shares::purge(&db, now + 3, 7 * 86_400).unwrap();
    assert!(shares::find_in(&db, &[1; 16]).unwrap().is_none());
}
