//! The read store's behaviours, each checked on both backends: SQLite (`node.db`) and a
//! real PostgreSQL server of its own ([`LocalPostgres`], Debian's `postgresql` package), so
//! the two answer every lookup alike. Then what is refused when the two are mixed up.

use std::sync::Arc;

use alpr_proto::pb::Read;
use alpr_runtime::pgserver::LocalPostgres;

use super::PgReads;
use crate::store::{self, Db, PlateKey, Readers};

const DAY: i64 = 86_400;
const DAY0: i64 = 20_000 * DAY;

fn read(plate: &str, state: &str, at: i64) -> Read {
    Read {
        plate: plate.into(),
        captured_at: at,
        camera_id: "cam-1".into(),
        latitude: 34.1,
        longitude: -118.2,
        plate_state: state.into(),
    }
}

fn ca(plate: &str) -> PlateKey<'_> {
    PlateKey { plate, state: "CA" }
}

fn any(plate: &str) -> PlateKey<'_> {
    PlateKey {
        plate,
        state: alpr_proto::input::ANY_STATE,
    }
}

fn server() -> LocalPostgres {
    LocalPostgres::start().expect("a local PostgreSQL server (Debian's postgresql package)")
}

/// One store of each kind: `(name, dir, db, readers)`.
struct Stores {
    _pg: LocalPostgres,
    both: Vec<(&'static str, tempfile::TempDir, Db, Readers)>,
}

fn stores() -> Stores {
    let pg = server();
    let url = pg.create_database("reads").unwrap();
    let mut both = Vec::new();
    for kind in ["sqlite", "postgres"] {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("node.db");
        let reads =
            (kind == "postgres").then(|| Arc::new(PgReads::open(&url, None, "CA0000001").unwrap()));
        let db = store::open_at(&path, None, reads.clone()).unwrap();
        let readers = Readers::of(&path, None, reads);
        both.push((kind, dir, db, readers));
    }
    Stores { _pg: pg, both }
}

#[test]
fn both_backends_store_each_read_once_and_answer_lookups_alike() {
    let mut s = stores();
    let mut answers = Vec::new();
    for (kind, _dir, db, readers) in &mut s.both {
        // 600 reads of one plate on each of 3 days, one in Nevada, another plate.
        let mut reads = Vec::new();
        for d in 0..3 {
            for i in 0..600 {
                reads.push(read("7ABC123", "CA", DAY0 + d * DAY + i * 60));
            }
            reads.push(read("7ABC123", "NV", DAY0 + d * DAY + 7));
            reads.push(read("8XYZ999", "CA", DAY0 + d * DAY + 30));
        }
        assert_eq!(store::insert_reads(db, &reads).unwrap(), 1806, "{kind}");
        // The same batch again (a file ingested twice) stores nothing.
        assert_eq!(store::insert_reads(db, &reads).unwrap(), 0, "{kind}");
        assert_eq!(store::count_reads(db).unwrap(), 1806, "{kind}");
        assert_eq!(
            store::partitions(db).unwrap(),
            vec![(20_000, 602), (20_001, 602), (20_002, 602)],
            "{kind}"
        );
        // The hourly maintenance compacts (SQLite) or vacuums (PostgreSQL) each closed day
        // once; lookups find the same reads after it.
        let mut compacted = Vec::new();
        while let Some(day) = store::compact_one_closed(db, DAY0 + 10 * DAY).unwrap() {
            compacted.push(day);
        }
        assert_eq!(compacted, vec![20_000, 20_001, 20_002], "{kind}");
        // Capped at MAX_RESULTS, oldest first, only the plate and state asked for.
        let capped = readers.lookup(ca("7ABC123"), DAY0, DAY0 + 3 * DAY).unwrap();
        assert_eq!(capped.len(), store::MAX_RESULTS, "{kind}");
        assert!(
            capped
                .windows(2)
                .all(|w| w[0].captured_at < w[1].captured_at)
        );
        assert!(
            capped
                .iter()
                .all(|r| r.plate == "7ABC123" && r.plate_state == "CA")
        );
        // A long window (read on several connections on SQLite, in one statement over
        // its partitions on PostgreSQL) gives the same oldest reads, and all of a rarer
        // plate.
        let long = readers
            .lookup(ca("7ABC123"), DAY0 - 12 * DAY, DAY0 + 12 * DAY)
            .unwrap();
        assert_eq!(long, capped, "{kind}");
        let long_nv = readers
            .lookup(
                PlateKey {
                    plate: "7ABC123",
                    state: "NV",
                },
                DAY0 - 20 * DAY,
                DAY0 + 20 * DAY,
            )
            .unwrap();
        assert_eq!(long_nv.len(), 3, "{kind}");
        assert!(
            long_nv
                .windows(2)
                .all(|w| w[0].captured_at < w[1].captured_at)
        );
        // Inclusive bounds; the same through the writer's connection.
        let part = readers
            .lookup(ca("7ABC123"), DAY0 + DAY + 60, DAY0 + 2 * DAY + 120)
            .unwrap();
        assert_eq!(part.len(), 599 + 3, "{kind}");
        assert_eq!(part[0].captured_at, DAY0 + DAY + 60);
        assert_eq!(
            store::lookup(db, ca("7ABC123"), DAY0 + DAY + 60, DAY0 + 2 * DAY + 120).unwrap(),
            part
        );
        // Any state finds Nevada's too; Nevada alone finds only it.
        let nv = readers
            .lookup(
                PlateKey {
                    plate: "7ABC123",
                    state: "NV",
                },
                DAY0,
                DAY0 + 3 * DAY,
            )
            .unwrap();
        assert_eq!(nv.len(), 3, "{kind}");
        let early = readers.lookup(any("7ABC123"), DAY0, DAY0 + 100).unwrap();
        assert_eq!(early.len(), 2 + 1, "{kind}: 0 s, 7 s (NV) and 60 s");
        // A wildcard finds the plate and not its neighbours.
        let pattern = readers
            .lookup_pattern(any("8XY?999"), DAY0, DAY0 + 3 * DAY)
            .unwrap();
        assert_eq!(pattern.len(), 3, "{kind}");
        assert!(pattern.iter().all(|r| r.plate == "8XYZ999"));
        assert!(
            readers
                .lookup_pattern(any("8XY?99"), DAY0, DAY0 + 3 * DAY)
                .unwrap()
                .is_empty()
        );
        // An export reads a whole day.
        assert_eq!(store::day_reads(db, 20_001).unwrap().len(), 602, "{kind}");
        assert!(store::day_reads(db, 19_000).unwrap().is_empty(), "{kind}");
        answers.push((capped, part, nv, early, pattern));
    }
    assert_eq!(answers[0], answers[1], "SQLite and PostgreSQL answer alike");
}

#[test]
fn both_backends_drop_whole_days_at_retention_and_keep_what_a_hold_covers() {
    let mut s = stores();
    for (kind, _dir, db, readers) in &mut s.both {
        let mut reads = Vec::new();
        for d in 0..4 {
            reads.push(read("7HELD01", "CA", DAY0 + d * DAY + 100));
            reads.push(read("7FREE01", "CA", DAY0 + d * DAY + 100));
        }
        store::insert_reads(db, &reads).unwrap();
        let hold = store::holds::place(
            db,
            "24-0001",
            "7HELD01",
            (DAY0, DAY0 + 4 * DAY),
            DAY0 + 400 * DAY,
            "sup",
            DAY0,
        )
        .unwrap();
        // A cutoff in the middle of day 2: days 0 and 1 go, day 2 stays whole.
        let (days, n) = store::purge_before(db, DAY0 + 2 * DAY + 500, DAY0 + 3 * DAY).unwrap();
        assert_eq!(days, vec![20_000, 20_001], "{kind}");
        assert_eq!(n, 4, "{kind}");
        assert_eq!(store::count_reads(db).unwrap(), 4, "{kind}");
        assert_eq!(
            store::partitions(db)
                .unwrap()
                .iter()
                .map(|p| p.0)
                .collect::<Vec<_>>(),
            vec![20_002, 20_003]
        );
        assert!(
            readers
                .lookup(ca("7FREE01"), DAY0, DAY0 + 2 * DAY - 1)
                .unwrap()
                .is_empty()
        );
        // The held plate's reads of the dropped days are kept, once each, even when the
        // purge runs again.
        store::purge_before(db, DAY0 + 2 * DAY + 500, DAY0 + 3 * DAY).unwrap();
        let held = store::held_reads(db, hold).unwrap();
        assert_eq!(held.len(), 2, "{kind}: {held:?}");
        assert!(held.iter().all(|r| r.plate == "7HELD01"));
        // Reads arriving again for a dropped day are stored in a new partition.
        store::insert_reads(db, &[read("7LATE01", "CA", DAY0 + 10)]).unwrap();
        assert_eq!(
            readers
                .lookup(ca("7LATE01"), DAY0, DAY0 + DAY)
                .unwrap()
                .len(),
            1
        );
    }
}

#[test]
fn a_store_opened_on_the_wrong_backend_or_another_agencys_database_is_refused() {
    let pg = server();
    let url = pg.create_database("reads").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("node.db");
    let reads = Arc::new(PgReads::open(&url, None, "CA0000001").unwrap());
    let mut db = store::open_at(&path, None, Some(reads.clone())).unwrap();
    store::insert_reads(&mut db, &[read("7ABC123", "CA", DAY0)]).unwrap();
    drop(db);
    // Without PostgreSQL, the file that keeps its reads there refuses to open, naming it.
    let e = store::open_with(&path, None).unwrap_err().to_string();
    assert!(
        e.contains("keeps its reads in PostgreSQL") && e.contains("reads"),
        "{e}"
    );
    // Another agency's node cannot claim the database.
    let e = PgReads::open(&url, None, "NV0000002")
        .unwrap_err()
        .to_string();
    assert!(e.contains("holds the reads of agency CA0000001"), "{e}");
    // A node file with reads of its own is not silently switched to PostgreSQL.
    let other = tempfile::tempdir().unwrap();
    let own = other.path().join("node.db");
    let mut plain = store::open(&own).unwrap();
    store::insert_reads(&mut plain, &[read("7ABC123", "CA", DAY0)]).unwrap();
    drop(plain);
    let url2 = pg.create_database("reads2").unwrap();
    let fresh = Arc::new(PgReads::open(&url2, None, "CA0000003").unwrap());
    let e = store::open_at(&own, None, Some(fresh))
        .unwrap_err()
        .to_string();
    assert!(e.contains("holds 1 reads of its own"), "{e}");
    // Encryption at rest and PostgreSQL together are refused.
    let keys = Arc::new(crate::store::encryption::DataKeys::new(&[7; 32]));
    let e = store::open_at(&own, Some(keys), Some(reads))
        .unwrap_err()
        .to_string();
    assert!(e.contains("cannot be encrypted by the node"), "{e}");
    // A database that is not there is one line naming the failure, not a panic.
    pg.stop().unwrap();
    let e = PgReads::open(&url, None, "CA0000001")
        .unwrap_err()
        .to_string();
    assert!(e.starts_with("postgres: cannot connect"), "{e}");
    assert!(!e.contains('\n'));
}
