//! Encryption at rest (issue 18): a copied disk reveals no plate, camera or place; wrong,
//! missing or exposed keys are one-line errors that lose nothing; altered rows and entries
//! are refused; the KEK rotates without re-encrypting anything.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};

use alpr_federation::{
    Federation, demo_agencies, open_policy, params, supervisor_of, synthetic_csv,
};
use alpr_proto::pb::{AdminRequest, HoldCommand, admin_request::Command};

const VENTURA: &str = "CA0560100";
const SACRAMENTO: &str = "CA0340000";
const DAY: i64 = 86_400;

/// The distinctive plates of the scenario (the synthetic filler plates, `CA0000`…, are left
/// out: some are also ORIs, which are stored in the clear by design).
const PLATES: [&str; 3] = ["8ABC123", "5XYZ987", "7HOT777"];

/// Every database file of a node's data directory, WAL and shared-memory files included,
/// copied as a thief would find them (the node still running).
fn copied_files(data_dir: &Path, to: &Path) -> Vec<PathBuf> {
    let files: Vec<PathBuf> = std::fs::read_dir(data_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().unwrap().to_string_lossy().contains(".db"))
        .collect();
    alpr_federation::copy_out_of_process(&files, to).unwrap()
}

/// What of the scenario's reads shows in `bytes`: plates, camera ids, coordinates (as text
/// and as the 8-byte doubles SQLite stores).
fn revealed(bytes: &[u8], coords: &[f64]) -> Vec<String> {
    let has = |needle: &[u8]| bytes.windows(needle.len()).any(|w| w == needle);
    let mut found = Vec::new();
    for p in PLATES {
        if has(p.as_bytes()) {
            found.push(format!("plate {p}"));
        }
    }
    if has(b"-CAM-") {
        found.push("a camera id".into());
    }
    for c in coords {
        if has(&c.to_be_bytes()) || has(&c.to_le_bytes()) || has(format!("{c:.5}").as_bytes()) {
            found.push(format!("coordinate {c}"));
        }
    }
    found
}

/// The coordinates of the scenario's CSV reads.
fn coordinates(csv: &str) -> Vec<f64> {
    let mut out: Vec<f64> = csv
        .lines()
        .skip(1)
        .flat_map(|l| {
            l.split(',')
                .skip(3)
                .take(2)
                .map(|v| v.parse::<f64>().unwrap())
        })
        .collect();
    out.sort_by(f64::total_cmp);
    out.dedup();
    out
}

#[tokio::test]
async fn a_copied_disk_reveals_no_plate_camera_or_place() {
    // Ventura encrypted (every node's default); Sacramento kept plain, as the control that
    // shows the scan finds what a plain disk gives away.
    let fed = Federation::start_tuned(
        None,
        &demo_agencies()[..2],
        |_| {
            let mut p = open_policy();
            p.retention_days = 5;
            p
        },
        &[],
        &|c| {
            alpr_federation::on_encrypted_sqlite(c);
            if c.ori == SACRAMENTO {
                c.storage = Default::default();
            }
        },
    )
    .await
    .unwrap();
    let csv = synthetic_csv(VENTURA, &["8ABC123", "5XYZ987"], 10);
    fed.ingest_csv(VENTURA, &csv).unwrap();
    fed.ingest_csv(SACRAMENTO, &synthetic_csv(SACRAMENTO, &["8ABC123"], 3))
        .unwrap();
    let node = fed.nodes[VENTURA].node.clone();
    let now = alpr_pki::now_unix();
    // A hot list and a hit on it; an evidence hold over days the purge then drops.
    node.load_hotlist(
        "Stolen vehicles",
        "NCIC",
        "stolen-vehicle",
        now + DAY,
        "plate,note\n7HOT777,stolen 11/20 Fair Oaks\n",
        "op1",
    )
    .unwrap();
    fed.ingest_csv(
        VENTURA,
        &format!(
            "plate,captured_at,camera_id,latitude,longitude,plate_state\n7HOT777,{},CA056-CAM-05,34.27100,-119.23300,CA\n",
            alpr_node::cli::fmt_time(now - 300)
        ),
    )
    .unwrap();
    fed.admin(
        VENTURA,
        &supervisor_of(VENTURA),
        AdminRequest {
            command: Some(Command::Hold(HoldCommand {
                case_number: "VPD-2026-0777".into(),
                plate: "8ABC123".into(),
                window_start: now - 10 * DAY,
                window_end: now - 6 * DAY,
                expires_at: now + 10 * DAY,
                note: "homicide investigation evidence".into(),
            })),
        },
    )
    .await
    .unwrap();
    let (dropped, _) = node.purge().unwrap();
    assert!(!dropped.is_empty(), "the purge dropped days");
    let held = alpr_node::store::held_reads(&node.db(), 1).unwrap();
    assert!(!held.is_empty() && held.iter().all(|r| r.plate == "8ABC123"));
    // A search across agencies: the encrypted node answers from its sealed partitions, and
    // both logs record the plate (sealed at Ventura).
    fed.agree(Federation::terms(VENTURA, SACRAMENTO, &["240"], 30, DAY))
        .await
        .unwrap();
    fed.sync(&[VENTURA, SACRAMENTO]).await.unwrap();
    let (q, resp) = fed
        .search(SACRAMENTO, &params("8ABC123", &[VENTURA], "240", 4))
        .await
        .unwrap();
    let reply = alpr_node::client::verify_reply(&fed.trust, &resp.results[0], &q, now + 5)
        .unwrap()
        .unwrap();
    let alpr_node::client::Reply::Answer { answer, .. } = reply else {
        panic!("expected an answer: {reply:?}");
    };
    assert!(answer.reads.len() >= 4, "{} reads", answer.reads.len());
    assert!(answer.reads.iter().all(|r| r.plate == "8ABC123"));
    let logged = fed.audit(VENTURA, Some("inbound_query")).unwrap();
    assert_eq!(
        logged.last().unwrap().entry.plate.as_deref(),
        Some("8ABC123")
    );

    // The thief's copy, taken while the node runs (WAL files included).
    let coords = coordinates(&csv);
    let stolen = fed.dir.join("stolen");
    let files = copied_files(&fed.node_configs[VENTURA].data_dir, &stolen.join("v"));
    let names: Vec<_> = files
        .iter()
        .map(|f| f.file_name().unwrap().to_string_lossy().to_string())
        .collect();
    assert!(names.contains(&"node.db".to_string()) && names.contains(&"audit.db".to_string()));
    for f in &files {
        let bytes = std::fs::read(f).unwrap();
        let found = revealed(&bytes, &coords);
        assert!(found.is_empty(), "{} reveals {found:?}", f.display());
    }
    // The control: the same scan on the plain node finds its plate and places.
    let plain = copied_files(&fed.node_configs[SACRAMENTO].data_dir, &stolen.join("s"));
    let found: Vec<String> = plain
        .iter()
        .flat_map(|f| {
            revealed(
                &std::fs::read(f).unwrap(),
                &coordinates(&synthetic_csv(SACRAMENTO, &["8ABC123"], 3)),
            )
        })
        .collect();
    assert!(found.iter().any(|f| f == "plate 8ABC123"), "{found:?}");
    assert!(found.iter().any(|f| f == "a camera id"), "{found:?}");
    // The regulator's view needs no key: the encrypted log's anchors and heads verify.
    assert!(fed.verify_audit(VENTURA).unwrap().entries > 5);
    fed.stop().await.unwrap();
}

/// A one-agency federation kept on disk, stopped; its config.
async fn stopped_node(dir: &Path) -> alpr_node::NodeConfig {
    let fed = Federation::start_tuned(
        Some(dir.join("fed")),
        &demo_agencies()[..1],
        |_| open_policy(),
        &[],
        &alpr_federation::on_encrypted_sqlite,
    )
    .await
    .unwrap();
    fed.ingest_csv(VENTURA, &synthetic_csv(VENTURA, &["8ABC123"], 3))
        .unwrap();
    let cfg = fed.node_configs[VENTURA].clone();
    fed.stop().await.unwrap();
    cfg
}

fn open_error(cfg: &alpr_node::NodeConfig) -> String {
    let e = alpr_node::Node::open(cfg).unwrap_err().to_string();
    assert!(!e.contains('\n'), "one line: {e}");
    e
}

#[cfg(unix)]
fn chmod(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

#[tokio::test]
async fn wrong_missing_or_exposed_keys_are_one_line_errors_that_lose_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = stopped_node(dir.path()).await;
    let reads = {
        let db = cfg.open_db().unwrap();
        alpr_node::store::count_reads(&db).unwrap()
    };
    assert!(reads > 200);
    let kek = cfg.storage.kek_file.clone().unwrap();

    // A KEK file others can read.
    #[cfg(unix)]
    {
        chmod(&kek, 0o640);
        let e = open_error(&cfg);
        assert!(
            e.contains("readable by others (mode 0640)") && e.contains("chmod 600"),
            "{e}"
        );
        chmod(&kek, 0o600);
    }
    // Another KEK.
    let other = dir.path().join("other.kek");
    alpr_node::keyring::write_new_kek(&other).unwrap();
    let mut wrong = cfg.clone();
    wrong.storage.kek_file = Some(other.clone());
    let e = open_error(&wrong);
    assert!(
        e.contains("is wrapped by KEK") && e.contains("wrong key"),
        "{e}"
    );
    // A KEK from an environment variable that is not set; from a failing command.
    let mut env = cfg.clone();
    env.storage.kek_file = None;
    env.storage.kek_env = Some("ALPR_TEST_KEK_NEVER_SET".into());
    assert!(open_error(&env).contains("ALPR_TEST_KEK_NEVER_SET is not set"));
    let mut cmd = cfg.clone();
    cmd.storage.kek_file = None;
    cmd.storage.kek_command = Some(vec!["false".into()]);
    assert!(open_error(&cmd).contains("KEK command `false` failed"));
    // A KEK from a command that prints it: opens.
    let mut by_cmd = cfg.clone();
    by_cmd.storage.kek_file = None;
    by_cmd.storage.kek_command = Some(vec!["cat".into(), kek.display().to_string()]);
    drop(alpr_node::Node::open(&by_cmd).unwrap());
    // No KEK configured at all: the encrypted database is not mistaken for a new one.
    let mut none = cfg.clone();
    none.storage = Default::default();
    let e = open_error(&none);
    assert!(
        e.contains("is encrypted (data key") && e.contains("[storage]"),
        "{e}"
    );
    // The keyring missing: never a new key for an existing database.
    let ring = cfg.keyring_path();
    let aside = dir.path().join("keyring.aside");
    std::fs::rename(&ring, &aside).unwrap();
    let e = open_error(&cfg);
    assert!(
        e.contains("is missing") && e.contains("restore the keyring"),
        "{e}"
    );
    assert!(!ring.exists(), "no new keyring was made");
    // Another node's keyring: named as such.
    std::fs::copy(&aside, &ring).unwrap();
    let other_dir = dir.path().join("other");
    let mut stranger = cfg.clone();
    stranger.data_dir = other_dir.clone();
    stranger.storage.keyring = None;
    drop(alpr_node::Node::open(&stranger).unwrap());
    std::fs::copy(other_dir.join("keyring.json"), &ring).unwrap();
    let e = open_error(&cfg);
    assert!(e.contains("but the keyring holds data key"), "{e}");
    std::fs::copy(&aside, &ring).unwrap();

    // Nothing was lost: with the right key everything is there and the log verifies.
    let node = alpr_node::Node::open(&cfg).unwrap();
    assert_eq!(node.status().unwrap().reads, reads);
    let trust = alpr_pki::TrustStore::load(&cfg.tls.root, &cfg.tls.crls).unwrap();
    alpr_node::store::audit::verify(&node.audit_db().unwrap(), Some((&trust, VENTURA))).unwrap();
    drop(node);

    // An altered read is refused by name, not returned; the other reads still are. (Byte 6
    // is always changed: set to 0, or to 1 where the random salt already held 0.)
    let db = cfg.open_db().unwrap();
    let key = alpr_node::store::PlateKey {
        plate: "8ABC123",
        state: "CA",
    };
    let now = alpr_pki::now_unix();
    // The day of the plate's newest read (not the newest partition: just after midnight UTC
    // that is today's, holding other plates only).
    let newest = alpr_node::store::lookup(&db, key, now - 5 * DAY, now).unwrap();
    let day = newest.iter().map(|r| r.captured_at).max().unwrap() / DAY;
    db.connection()
        .execute_batch(&format!(
            "UPDATE reads_{day} SET sealed = CAST(substr(sealed, 1, 5) || CASE WHEN substr(sealed, 6, 1) = X'00' THEN X'01' ELSE X'00' END || substr(sealed, 7) AS BLOB)"
        ))
        .unwrap();
    let e = alpr_node::store::lookup(&db, key, now - 5 * DAY, now)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains(&format!("reads_{day}")) && e.contains("does not open"),
        "{e}"
    );
    let earlier = alpr_node::store::lookup(&db, key, now - 5 * DAY, day * DAY - 1).unwrap();
    assert!(!earlier.is_empty());
    drop(db);
    // An altered audit entry: the log no longer verifies, and says which entry.
    let log = cfg.open_audit().unwrap();
    log.connection()
        .execute_batch(
            "UPDATE audit SET entry = CAST(X'00' || substr(entry, 2) AS BLOB) WHERE seq = 3",
        )
        .unwrap();
    let e = alpr_node::store::audit::verify(&log, Some((&trust, VENTURA)))
        .unwrap_err()
        .to_string();
    assert!(e.contains("entry 3"), "{e}");
}

fn cli(args: &[&str]) -> std::process::ExitCode {
    use clap::Parser as _;
    let mut argv = vec!["alpr-node"];
    argv.extend_from_slice(args);
    alpr_node::cli::main(alpr_node::cli::Cli::try_parse_from(argv).unwrap())
}

#[test]
fn the_kek_rotates_without_re_encrypting_and_the_rotation_is_logged() {
    let dir = tempfile::tempdir().unwrap();
    // The CLI runs its own runtime: the federation's is gone before it does.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let cfg = rt.block_on(stopped_node(dir.path()));
    let config = cfg.data_dir.join("node.toml");
    let before = std::fs::read(cfg.db_path()).unwrap();
    let new = dir.path().join("new.kek");
    let ok = std::process::ExitCode::SUCCESS;
    assert_eq!(
        cli(&["keys", "new-kek", "--out", new.to_str().unwrap()]),
        ok
    );
    assert_ne!(
        cli(&["keys", "new-kek", "--out", new.to_str().unwrap()]),
        ok,
        "a KEK file is never overwritten"
    );
    assert_eq!(
        cli(&["keys", "status", "--config", config.to_str().unwrap()]),
        ok
    );
    assert_eq!(
        cli(&[
            "keys",
            "rotate",
            "--config",
            config.to_str().unwrap(),
            "--to-file",
            new.to_str().unwrap()
        ]),
        ok
    );
    // The databases were not rewritten: only the keyring changed.
    assert_eq!(std::fs::read(cfg.db_path()).unwrap(), before);
    let e = open_error(&cfg);
    assert!(
        e.contains("is wrapped by KEK"),
        "the old KEK no longer opens it: {e}"
    );
    let mut rotated = cfg.clone();
    rotated.storage.kek_file = Some(new.clone());
    // Rotating "to" the KEK in use is refused.
    std::fs::write(&config, toml::to_string(&rotated).unwrap()).unwrap();
    assert_ne!(
        cli(&[
            "keys",
            "rotate",
            "--config",
            config.to_str().unwrap(),
            "--to-file",
            new.to_str().unwrap()
        ]),
        ok
    );
    // The node opens with the new KEK (a node needs a runtime for its broker channel).
    let _rt = rt.enter();
    let node = alpr_node::Node::open(&rotated).unwrap();
    assert!(node.status().unwrap().reads > 200);
    let log = alpr_node::store::audit::list(
        &node.audit_db().unwrap(),
        Some(alpr_node::audit::Event::DataKey),
    )
    .unwrap();
    assert_eq!(log.len(), 1);
    assert!(
        log[0]
            .entry
            .detail
            .as_deref()
            .unwrap()
            .contains("re-wrapped")
    );
}
