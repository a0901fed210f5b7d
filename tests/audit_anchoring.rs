//! Audit logs anchored outside the node (DESIGN §7). Each node's log is an RFC 6962 tree
//! whose signed heads are anchored at the broker, which accepts only a head that extends
//! the one before. So whoever holds `node.key` and `audit.db` can still rewrite the log
//! and sign it again — and every such log is caught by comparing it with the anchor:
//!
//! - a rewritten log, re-signed with the node's key, passes every local check but not the
//!   anchor, and the broker refuses its head as a fork (`AUDIT_FORK`, logged, kept);
//! - a tail deleted below the anchored size is named as such;
//! - a second log shown to someone else (a regulator given an export) does not verify;
//! - both sides of a query prove with an inclusion proof that they logged it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};

use alpr_broker::regulator;
use alpr_federation::{Federation, demo_agencies, open_policy, params, synthetic_csv};
use alpr_node::audit::{Break, HeadSigner};
use alpr_node::store::{self, AuditDb};
use alpr_node::{Error, anchoring};
use alpr_proto::RefusalReason;
use alpr_proto::auditlog;
use alpr_proto::pb::AnchorRequest;
use rusqlite::Connection;

const VENTURA: &str = "CA0560100";
const SACRAMENTO: &str = "CA0340000";

/// Three agencies; Sacramento searched Ventura once; both logs anchored since. Stored
/// plain: these tests edit entries as an insider who holds the data key would (an
/// encrypted log's own tampering is in tests/encryption_at_rest.rs).
async fn federation() -> (Federation, String) {
    let fed = Federation::start_tuned(None, &demo_agencies()[..3], |_| open_policy(), &[], &|c| {
        c.storage = Default::default()
    })
    .await
    .unwrap();
    fed.ingest_csv(VENTURA, &synthetic_csv(VENTURA, &["8ABC123"], 10))
        .unwrap();
    fed.agree(Federation::terms(VENTURA, SACRAMENTO, &["240"], 30, 86_400))
        .await
        .unwrap();
    fed.sync(&[VENTURA, SACRAMENTO]).await.unwrap();
    let (q, r) = fed
        .search(SACRAMENTO, &params("8ABC123", &[VENTURA], "240", 3))
        .await
        .unwrap();
    assert_eq!(
        r.results[0].status,
        alpr_proto::pb::TargetStatus::Answered as i32
    );
    for ori in [VENTURA, SACRAMENTO] {
        let a = fed.nodes[ori].node.anchor_audit().await.unwrap().unwrap();
        assert_eq!(a.head.ori, ori);
    }
    (fed, hex::encode(q.query_id))
}

/// The broker's newest anchor of `ori`, verified.
fn broker_anchor(fed: &Federation, ori: &str) -> auditlog::VerifiedAnchor {
    let a = fed.broker.broker.audit_anchor(ori).unwrap().unwrap();
    auditlog::verify_anchor(&fed.trust, &a, ori).unwrap()
}

/// A copy of `ori`'s audit.db to tamper with.
fn copy_log(fed: &Federation, ori: &str, name: &str) -> PathBuf {
    let src = fed.node_configs[ori].audit_path();
    let dst = fed.dir.join(format!("{name}.db"));
    let db = AuditDb::open(&src).unwrap();
    db.connection()
        .execute("VACUUM INTO ?1", [dst.to_str().unwrap()])
        .unwrap();
    dst
}

/// Recompute every entry's chain hash after an edit, as anyone with the file can.
fn rechain(c: &Connection) {
    let rows: Vec<(i64, String)> = c
        .prepare("SELECT seq, entry FROM audit ORDER BY seq")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let mut prev = alpr_node::audit::GENESIS.to_owned();
    for (seq, entry) in rows {
        let h = alpr_node::audit::chain_hash(&prev, &entry);
        c.execute(
            "UPDATE audit SET prev_hash = ?2, hash = ?3 WHERE seq = ?1",
            rusqlite::params![seq, prev, h],
        )
        .unwrap();
        prev = h;
    }
}

/// What an insider with `node.key` does after editing entries: recompute every chain hash,
/// let the tree be rebuilt, sign fresh checkpoints with the node's own key, and drop the
/// anchors kept locally.
fn reseal(fed: &Federation, ori: &str, path: &Path) {
    {
        let c = Connection::open(path).unwrap();
        rechain(&c);
        c.execute_batch("DELETE FROM audit_tree; DELETE FROM checkpoints; DELETE FROM anchors;")
            .unwrap();
    }
    // Reopening rebuilds the tree from the entries; the node's key signs the new head.
    let mut db = AuditDb::open(path).unwrap();
    let signer = HeadSigner {
        signer: std::sync::Arc::new(fed.node_signer(ori).unwrap()),
        ori: ori.into(),
    };
    store::audit::checkpoint_now(&mut db, &signer).unwrap();
}

/// An entry that grows a log (what any logged event does).
fn note() -> alpr_node::audit::AuditEntry {
    alpr_node::audit::AuditEntry::new(
        alpr_pki::now_unix(),
        alpr_node::audit::Event::Alert,
        alpr_node::audit::Decision::Ok,
    )
}

fn export_log(path: &Path, out: &Path) {
    alpr_node::export::export_audit(
        path,
        None,
        &Default::default(),
        alpr_node::export::Format::Log,
        out,
        "test",
    )
    .unwrap();
}

#[tokio::test]
async fn both_sides_prove_the_query_and_the_regulator_verifies_the_exported_log() {
    let (fed, qid) = federation().await;
    // Each side proves what it logged about the query, against its own anchor.
    for (ori, event) in [(SACRAMENTO, "outbound_query"), (VENTURA, "inbound_query")] {
        let bundle = anchoring::prove(&fed.node_configs[ori], &qid).unwrap();
        let p = auditlog::verify_proof(&fed.trust, &bundle).unwrap();
        assert_eq!(p.anchor.head.ori, ori);
        let events: Vec<String> = bundle
            .entries
            .iter()
            .map(|e| {
                let v: serde_json::Value = serde_json::from_str(&e.entry.entry).unwrap();
                v["event"].as_str().unwrap().to_owned()
            })
            .collect();
        assert!(events.iter().any(|e| e == event), "{ori}: {events:?}");
        // The bundle goes through a file and the regulator's command.
        let file = fed.dir.join(format!("proof-{ori}.json"));
        std::fs::write(&file, serde_json::to_string(&bundle).unwrap()).unwrap();
        let verdict = regulator::verify_proof_file(&fed.trust, &file).unwrap();
        assert!(verdict.starts_with("proof verified"), "{verdict}");
        assert!(verdict.contains(&qid), "{verdict}");
    }
    // An unknown query id and a malformed one are clear errors.
    let e = anchoring::prove(&fed.node_configs[VENTURA], &"ab".repeat(16)).unwrap_err();
    assert!(e.to_string().contains("no entry"), "{e}");
    let e = anchoring::prove(&fed.node_configs[VENTURA], "xyz").unwrap_err();
    assert!(e.to_string().contains("32 hex digits"), "{e}");

    // The regulator checks Ventura's exported log against the broker's anchor, from its
    // own desk: no access to Ventura's host beyond the export.
    let out = fed.dir.join("ventura.log");
    export_log(&fed.node_configs[VENTURA].audit_path(), &out);
    let (mut reg, _) = fed.broker_client_as(fed.pki.regulator("reg-ca")).unwrap();
    let verdict = regulator::verify_audit_log(&mut reg, &fed.trust, VENTURA, &out, None)
        .await
        .unwrap();
    assert!(verdict.contains("audit log verified"), "{verdict}");
    // The same export offered as Sacramento's is another log.
    let e = regulator::verify_audit_log(&mut reg, &fed.trust, SACRAMENTO, &out, None)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("not the ones anchored") || e.contains("entries deleted"),
        "{e}"
    );
    // A filtered export cannot be verified, and says so.
    let f = alpr_node::audit::Filter {
        purpose: Some("240".into()),
        ..Default::default()
    };
    let e = alpr_node::export::export_audit(
        &fed.node_configs[VENTURA].audit_path(),
        None,
        &f,
        alpr_node::export::Format::Log,
        &out,
        "test",
    )
    .unwrap_err();
    assert!(e.to_string().contains("whole log"), "{e}");
    // A file that is not an export names its line.
    std::fs::write(&out, "{\"seq\":1}\n").unwrap();
    let e = regulator::verify_audit_log(&mut reg, &fed.trust, VENTURA, &out, None)
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("ventura.log:1: not an entry"), "{e}");
    // A corrupt proof file is a clear error.
    let file = fed.dir.join("proof-CA0560100.json");
    std::fs::write(&file, "{not json").unwrap();
    let e = regulator::verify_proof_file(&fed.trust, &file)
        .unwrap_err()
        .to_string();
    assert!(e.contains("not a proof bundle"), "{e}");
    fed.stop().await.unwrap();
}

#[tokio::test]
async fn a_log_rewritten_and_resigned_with_the_node_key_is_caught_by_its_anchor() {
    let (fed, _) = federation().await;
    let anchor = broker_anchor(&fed, VENTURA);
    let path = copy_log(&fed, VENTURA, "rewritten");
    // The insider changes the plate in the inbound query's entry and reseals everything.
    let c = Connection::open(&path).unwrap();
    let n = c
        .execute(
            "UPDATE audit SET entry = replace(entry, '8ABC123', '8ABC124') WHERE event = 'inbound_query'",
            [],
        )
        .unwrap();
    assert!(n >= 1);
    drop(c);
    reseal(&fed, VENTURA, &path);
    // Every check on the host passes: chain, tree, checkpoints signed by node.key.
    let db = AuditDb::open(&path).unwrap();
    let r = store::audit::verify(&db, Some((&fed.trust, VENTURA))).unwrap();
    assert_eq!(r.anchors, 0);
    // The anchor does not.
    match anchoring::compare(&db, &anchor.head).unwrap_err() {
        Error::AuditBroken(Break::AnchorDiffers(n)) => assert_eq!(n as u64, anchor.head.size),
        e => panic!("{e}"),
    }
    // Had the insider left the anchors kept on the host, the local check finds it too.
    let kept = copy_log(&fed, VENTURA, "kept");
    let c = Connection::open(&kept).unwrap();
    c.execute(
        "UPDATE audit SET entry = replace(entry, '8ABC123', '8ABC124') WHERE event = 'inbound_query'",
        [],
    )
    .unwrap();
    let anchors: Vec<(i64, i64, Vec<u8>)> = c
        .prepare("SELECT size, anchored_at, anchor FROM anchors")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    drop(c);
    reseal(&fed, VENTURA, &kept);
    let c = Connection::open(&kept).unwrap();
    for (s, at, a) in anchors {
        c.execute(
            "INSERT INTO anchors (size, anchored_at, anchor) VALUES (?1, ?2, ?3)",
            rusqlite::params![s, at, a],
        )
        .unwrap();
    }
    drop(c);
    let e = store::audit::verify(&AuditDb::open(&kept).unwrap(), Some((&fed.trust, VENTURA)))
        .unwrap_err()
        .to_string();
    assert!(e.contains("not the ones anchored at the broker"), "{e}");

    // The forged log's head, offered to the broker by Ventura's own node certificate with a
    // consistency proof from the forged tree, is refused as a fork, logged and kept.
    let size = store::audit::size(&db).unwrap();
    let head = store::audit::signed_head(&db, size).unwrap().unwrap();
    let proof = store::audit::consistency_proof(&db, anchor.head.size, size).unwrap();
    let (mut as_node, _) = fed.broker_client_as(fed.pki.node(VENTURA)).unwrap();
    let s = as_node
        .anchor_audit(AnchorRequest {
            head: Some(head),
            consistency: proof.iter().map(|h| h.to_vec()).collect(),
            from_size: anchor.head.size,
        })
        .await
        .unwrap_err();
    assert_eq!(
        alpr_proto::reason_of(&s),
        Some(RefusalReason::AuditFork),
        "{s:?}"
    );
    let log = fed.broker_log().unwrap();
    let row = log
        .iter()
        .rev()
        .find(|e| e.event.as_str() == "audit_anchor")
        .expect("the refusal is in the routing log");
    assert_eq!(row.reason_code.as_deref(), Some("AUDIT_FORK"));
    assert_eq!(row.target.as_deref(), Some(VENTURA));
    let forks = alpr_broker::store::audit_forks(&fed.broker.broker.db()).unwrap();
    assert_eq!(forks.len(), 1);
    assert_eq!(forks[0].ori, VENTURA);
    // The anchor in force is still the honest one.
    assert_eq!(broker_anchor(&fed, VENTURA).head, anchor.head);

    // Ventura's node run on the rewritten files: its next round finds the divergence,
    // logs it and alerts, and anchors nothing.
    let dir = fed.dir.join("ventura-forged");
    std::fs::create_dir_all(&dir).unwrap();
    let mut cfg = fed.node_configs[VENTURA].clone();
    let db_copy = dir.join("node.db");
    Connection::open(cfg.db_path())
        .unwrap()
        .execute("VACUUM INTO ?1", [db_copy.to_str().unwrap()])
        .unwrap();
    std::fs::copy(&path, dir.join("audit.db")).unwrap();
    cfg.data_dir = dir;
    let forged = alpr_node::Node::open(&cfg).unwrap();
    assert!(forged.anchor_audit_logged().await.is_none());
    let entries = store::audit::list(
        &AuditDb::open(&cfg.audit_path()).unwrap(),
        Some(alpr_node::audit::Event::AuditAnchor),
    )
    .unwrap();
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].entry.decision.as_str(), "diverged");
    assert!(
        alpr_node::alerts::Alert::of(VENTURA, &entries[0].entry).is_some(),
        "a divergence is an alert"
    );
    assert_eq!(broker_anchor(&fed, VENTURA).head, anchor.head);
    fed.stop().await.unwrap();
}

#[tokio::test]
async fn a_deleted_tail_and_a_second_log_are_caught_by_the_anchor() {
    let (fed, _) = federation().await;
    let anchor = broker_anchor(&fed, VENTURA);
    assert!(anchor.head.size > 4);
    let (mut reg, _) = fed.broker_client_as(fed.pki.regulator("reg-ca")).unwrap();
    // The tail deleted below the anchored size, the rest resealed.
    let path = copy_log(&fed, VENTURA, "truncated");
    Connection::open(&path)
        .unwrap()
        .execute(
            "DELETE FROM audit WHERE seq > ?1",
            [anchor.head.size as i64 - 3],
        )
        .unwrap();
    reseal(&fed, VENTURA, &path);
    let db = AuditDb::open(&path).unwrap();
    store::audit::verify(&db, Some((&fed.trust, VENTURA))).unwrap();
    match anchoring::compare(&db, &anchor.head).unwrap_err() {
        Error::AuditBroken(Break::AnchorLost { anchored, entries }) => {
            assert_eq!(anchored as u64, anchor.head.size);
            assert_eq!(entries as u64, anchor.head.size - 3);
        }
        e => panic!("{e}"),
    }
    let out = fed.dir.join("truncated.log");
    export_log(&path, &out);
    let e = regulator::verify_audit_log(&mut reg, &fed.trust, VENTURA, &out, None)
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("entries deleted"), "{e}");
    // A second log: the same entries, one of them reworded, shown to the regulator while
    // the broker holds the first.
    let path = copy_log(&fed, VENTURA, "second");
    let n = Connection::open(&path)
        .unwrap()
        .execute(
            "UPDATE audit SET entry = replace(entry, '\"decision\":', '\"decision\": ') WHERE seq = 2",
            [],
        )
        .unwrap();
    assert_eq!(n, 1);
    reseal(&fed, VENTURA, &path);
    let out = fed.dir.join("second.log");
    export_log(&path, &out);
    let e = regulator::verify_audit_log(&mut reg, &fed.trust, VENTURA, &out, None)
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("not the ones anchored"), "{e}");
    fed.stop().await.unwrap();
}

#[tokio::test]
async fn a_head_from_another_node_or_signed_by_another_key_is_refused() {
    let (fed, _) = federation().await;
    let db = AuditDb::open(&fed.node_configs[VENTURA].audit_path()).unwrap();
    let size = store::audit::size(&db).unwrap();
    let anchored = broker_anchor(&fed, VENTURA).head.size;
    let head = store::audit::signed_head(&db, anchored).unwrap().unwrap();
    // Sacramento's node offers Ventura's head as its own.
    let (mut sac, _) = fed.broker_client_as(fed.pki.node(SACRAMENTO)).unwrap();
    let s = sac
        .anchor_audit(AnchorRequest {
            head: Some(head.clone()),
            consistency: vec![],
            from_size: 0,
        })
        .await
        .unwrap_err();
    assert_eq!(
        alpr_proto::reason_of(&s),
        Some(RefusalReason::ClaimMismatch),
        "{s:?}"
    );
    assert!(
        s.message().contains("where one of CA0340000 was expected"),
        "{}",
        s.message()
    );
    // An admin (a person) cannot anchor a node's log.
    let (mut admin, _) = fed
        .broker_client_as(fed.pki.person(VENTURA, &alpr_federation::admin_of(VENTURA)))
        .unwrap();
    let s = admin
        .anchor_audit(AnchorRequest {
            head: Some(head.clone()),
            consistency: vec![],
            from_size: 0,
        })
        .await
        .unwrap_err();
    assert!(
        s.message().contains("anchored by its node"),
        "{}",
        s.message()
    );
    // A head of Ventura's signed with Sacramento's node key.
    let signer = HeadSigner {
        signer: std::sync::Arc::new(fed.node_signer(SACRAMENTO).unwrap()),
        ori: VENTURA.into(),
    };
    let root = store::audit::root_at(&db, size).unwrap();
    let chain_head = store::audit::logged_entries(&db, size as i64, size as i64).unwrap()[0]
        .hash
        .clone();
    let forged = signer
        .sign(size, &root, &chain_head, alpr_pki::now_unix())
        .unwrap();
    let (mut ven, _) = fed.broker_client_as(fed.pki.node(VENTURA)).unwrap();
    let s = ven
        .anchor_audit(AnchorRequest {
            head: Some(forged),
            consistency: vec![],
            from_size: anchored,
        })
        .await
        .unwrap_err();
    assert!(
        s.message().contains("not by a node of CA0560100"),
        "{}",
        s.message()
    );
    // A corrupt consistency proof for an honest, larger head is a fork, not a panic.
    fed.nodes[VENTURA].node.audit(&[note(), note()]).unwrap();
    let size = fed.nodes[VENTURA].node.checkpoint().unwrap().unwrap() as u64;
    let head = store::audit::signed_head(&db, size).unwrap().unwrap();
    let s = ven
        .anchor_audit(AnchorRequest {
            head: Some(head),
            consistency: vec![vec![7u8; 32]; 3],
            from_size: anchored,
        })
        .await
        .unwrap_err();
    assert_eq!(
        alpr_proto::reason_of(&s),
        Some(RefusalReason::AuditFork),
        "{s:?}"
    );
    // The honest round still anchors (the refused heads changed nothing).
    let a = fed.nodes[VENTURA]
        .node
        .anchor_audit()
        .await
        .unwrap()
        .unwrap();
    assert_eq!(a.head.size, size);
    assert_eq!(broker_anchor(&fed, VENTURA).head.size, size);
    fed.stop().await.unwrap();
}

#[tokio::test]
async fn a_stopping_node_anchors_its_final_head() {
    let (mut fed, _) = federation().await;
    fed.nodes[SACRAMENTO].node.audit(&[note()]).unwrap();
    let anchored = broker_anchor(&fed, SACRAMENTO).head.size;
    let node = fed.nodes.remove(SACRAMENTO).unwrap();
    node.stop().await.unwrap();
    let db = AuditDb::open(&fed.node_configs[SACRAMENTO].audit_path()).unwrap();
    let size = store::audit::size(&db).unwrap();
    assert!(size > anchored);
    assert_eq!(broker_anchor(&fed, SACRAMENTO).head.size, size);
    let v = store::audit::verify(&db, Some((&fed.trust, SACRAMENTO))).unwrap();
    assert!(v.anchors >= 2, "{v:?}");
    fed.stop().await.unwrap();
}

#[tokio::test]
async fn the_regulator_witnesses_anchors_and_catches_a_broker_that_replaces_one() {
    use alpr_broker::regulator::AuditWitnessed;
    let (fed, qid) = federation().await;
    let (mut reg, signer) = fed.broker_client_as(fed.pki.regulator("reg-ca")).unwrap();
    let dir = fed.dir.join("reg-audit");
    let first = regulator::cosign_audit(&mut reg, &fed.trust, &signer, &dir, VENTURA)
        .await
        .unwrap();
    // (The daemon anchored at start too: one or two links.)
    let AuditWitnessed::Cosigned {
        size,
        from: 0,
        links,
    } = first
    else {
        panic!("{first:?}")
    };
    assert!(links >= 1);
    assert_eq!(
        regulator::cosign_audit(&mut reg, &fed.trust, &signer, &dir, VENTURA)
            .await
            .unwrap(),
        AuditWitnessed::Unchanged { size }
    );
    // The log grows and is anchored twice; the regulator checks both links.
    let node = &fed.nodes[VENTURA].node;
    for _ in 0..2 {
        node.audit(&[note()]).unwrap();
        node.anchor_audit().await.unwrap();
    }
    let again = regulator::cosign_audit(&mut reg, &fed.trust, &signer, &dir, VENTURA)
        .await
        .unwrap();
    let AuditWitnessed::Cosigned {
        size: now,
        from,
        links: 2,
    } = again
    else {
        panic!("{again:?}")
    };
    assert_eq!(from, size);
    assert_eq!(now, broker_anchor(&fed, VENTURA).head.size);
    assert_eq!(broker_anchor(&fed, VENTURA).cosigned_by.len(), 1);
    // The node keeps the cosigned anchor; its proofs name the witness.
    node.anchor_audit().await.unwrap();
    let bundle = anchoring::prove(&fed.node_configs[VENTURA], &qid).unwrap();
    let p = auditlog::verify_proof(&fed.trust, &bundle).unwrap();
    assert!(
        p.verdict(&bundle).contains("cosigned by"),
        "{}",
        p.verdict(&bundle)
    );
    // An agency that never anchored.
    assert_eq!(
        regulator::cosign_audit(&mut reg, &fed.trust, &signer, &dir, "CA9999999")
            .await
            .unwrap(),
        AuditWitnessed::NoAnchor
    );

    // A broker colluding with Ventura's insider swaps the newest anchor for one of a
    // rewritten log: a head signed with Ventura's node key, a receipt with the broker's.
    let path = copy_log(&fed, VENTURA, "swapped");
    rusqlite::Connection::open(&path)
        .unwrap()
        .execute(
            "UPDATE audit SET entry = replace(entry, '8ABC123', '8ABC999') WHERE event = 'inbound_query'",
            [],
        )
        .unwrap();
    reseal(&fed, VENTURA, &path);
    let db = AuditDb::open(&path).unwrap();
    assert_eq!(store::audit::size(&db).unwrap(), now);
    let head = store::audit::signed_head(&db, now).unwrap().unwrap();
    let (bc, bk) = fed.pki.broker();
    let broker_key = alpr_pki::Signer::load(&bc, &bk).unwrap();
    let receipt = alpr_proto::envelope::seal(
        &broker_key,
        auditlog::ANCHOR_RECEIPT,
        &alpr_proto::pb::AnchorReceipt {
            audit_tree_head: head.payload.clone(),
            anchored_at: alpr_pki::now_unix(),
        },
    )
    .unwrap();
    let forged = alpr_proto::pb::AuditAnchor {
        head: Some(head),
        receipt: Some(receipt),
        cosignatures: vec![],
    };
    let root = store::audit::root_at(&db, now).unwrap();
    fed.broker
        .broker
        .db()
        .connection()
        .expect("a SQLite broker")
        .execute(
            "UPDATE audit_anchors SET anchor = ?1, root = ?2 WHERE ori = ?3 AND size = ?4",
            rusqlite::params![
                prost::Message::encode_to_vec(&forged),
                root.to_vec(),
                VENTURA,
                now as i64
            ],
        )
        .unwrap();
    // The rewritten log's export matches the swapped anchor; only the regulator's own
    // cosigned head tells them apart.
    let out = fed.dir.join("swapped.log");
    export_log(&path, &out);
    regulator::verify_audit_log(&mut reg, &fed.trust, VENTURA, &out, None)
        .await
        .unwrap();
    let e = regulator::verify_audit_log(&mut reg, &fed.trust, VENTURA, &out, Some(&dir))
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("not the ones you cosigned"), "{e}");
    // The swapped anchor verifies on its own (both signatures are real) …
    auditlog::verify_anchor(&fed.trust, &forged, VENTURA).unwrap();
    // … but it is not the head the regulator cosigned.
    let e = regulator::cosign_audit(&mut reg, &fed.trust, &signer, &dir, VENTURA)
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("is not the head of"), "{e}");
    // And a swapped anchor listed as a new, larger one: its head is no larger than the one
    // cosigned, which anchors never are.
    fed.broker
        .broker
        .db()
        .connection()
        .expect("a SQLite broker")
        .execute(
            "UPDATE audit_anchors SET size = size + 1000, from_size = ?2 WHERE ori = ?1 AND size = ?2",
            rusqlite::params![VENTURA, now as i64],
        )
        .unwrap();
    let e = regulator::cosign_audit(&mut reg, &fed.trust, &signer, &dir, VENTURA)
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("anchors only grow"), "{e}");
    fed.stop().await.unwrap();
}

#[tokio::test]
async fn entries_edited_under_an_untouched_tree_stop_the_next_anchoring_round() {
    let (fed, _) = federation().await;
    let before = broker_anchor(&fed, VENTURA).head;
    // An insider edits an entry and rechains, leaving the stored tree as it was.
    let path = fed.node_configs[VENTURA].audit_path();
    {
        let c = Connection::open(&path).unwrap();
        c.execute(
            "UPDATE audit SET entry = replace(entry, '8ABC123', '8ABC124') WHERE event = 'inbound_query'",
            [],
        )
        .unwrap();
        rechain(&c);
    }
    // A fresh node process reads every entry before it signs: it finds the difference,
    // logs and alerts it, and anchors nothing.
    let again = alpr_node::Node::open(&fed.node_configs[VENTURA]).unwrap();
    assert!(again.anchor_audit_logged().await.is_none());
    let diverged = store::audit::list(
        &AuditDb::open(&path).unwrap(),
        Some(alpr_node::audit::Event::AuditAnchor),
    )
    .unwrap();
    assert_eq!(diverged.last().unwrap().entry.decision.as_str(), "diverged");
    assert_eq!(broker_anchor(&fed, VENTURA).head, before);
    fed.stop().await.unwrap();
}
