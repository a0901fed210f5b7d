//! The broker's routing log is anchored the way nodes' audit logs are (DESIGN §7), with the
//! state's regulator as its witness: the log is an RFC 6962 tree, the broker signs heads of
//! it, and the regulator cosigns a head only after checking it extends the one it cosigned
//! before. So the broker's operator can rewrite the log and recompute its chain, tree and
//! heads, and the host's own check (`alpr-broker log --verify`) passes once the old heads
//! are gone — but the regulator's next `cosign-routing` refuses the rewritten log.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use alpr_broker::regulator::{self, SavedHead};
use alpr_broker::store;
use alpr_federation::{Federation, demo_agencies, open_policy, params, synthetic_csv};

const VENTURA: &str = "CA0560100";
const SACRAMENTO: &str = "CA0340000";

/// Recompute every row's chain hash after an edit, as the broker's operator could.
fn rechain(db: &store::Db) {
    let c = db.connection().expect("a SQLite broker");
    let mut prev = alpr_node::audit::GENESIS.to_owned();
    for e in store::read_log(db).unwrap() {
        let h = alpr_node::audit::chain_hash(&prev, &serde_json::to_string(&e).unwrap());
        c.execute(
            "UPDATE log SET prev_hash = ?2, hash = ?3 WHERE seq = ?1",
            rusqlite::params![e.seq, prev, h],
        )
        .unwrap();
        prev = h;
    }
    // The tree is rebuilt from the rows when the database is next opened.
    c.execute_batch("DELETE FROM routing_tree").unwrap();
}

#[tokio::test]
async fn a_rewritten_routing_log_cannot_be_shown_to_the_regulator_that_witnessed_it() {
    let fed = Federation::start(None, &demo_agencies()[..3], |_| open_policy())
        .await
        .unwrap();
    fed.ingest_csv(VENTURA, &synthetic_csv(VENTURA, &["8ABC123"], 10))
        .unwrap();
    fed.agree(Federation::terms(VENTURA, SACRAMENTO, &["240"], 30, 86_400))
        .await
        .unwrap();
    fed.sync(&[VENTURA, SACRAMENTO]).await.unwrap();
    fed.search(SACRAMENTO, &params("8ABC123", &[VENTURA], "240", 3))
        .await
        .unwrap();
    fed.broker.broker.flush_log().await.unwrap();
    let (mut reg, signer) = fed.broker_client_as(fed.pki.regulator("reg-ca")).unwrap();
    let state = fed.dir.join("reg-routing.json");
    let first = regulator::cosign_routing(&mut reg, &fed.trust, &signer, &state)
        .await
        .unwrap();
    assert_eq!(first.from, 0);
    assert!(first.size > 0);
    assert_eq!(first.cosignatures, 1);
    // More traffic; the next cosignature proves the log only grew.
    fed.search(SACRAMENTO, &params("8ABC123", &[VENTURA], "240", 3))
        .await
        .unwrap();
    fed.broker.broker.flush_log().await.unwrap();
    let second = regulator::cosign_routing(&mut reg, &fed.trust, &signer, &state)
        .await
        .unwrap();
    assert_eq!(second.from, first.size);
    assert!(second.size > first.size, "{second:?}");
    let r = store::verify_log(&fed.broker.broker.db()).unwrap();
    assert!(r.heads >= 2, "{r:?}");

    // The operator rewrites a routing decision and rechains the log.
    let path = fed.dir.join("broker").join("broker.db");
    {
        let db = fed.broker.broker.db();
        let n = db
            .connection()
            .expect("a SQLite broker")
            .execute("UPDATE log SET detail = 'nothing to see' WHERE seq = 2", [])
            .unwrap();
        assert_eq!(n, 1);
        rechain(&db);
    }
    drop(store::open(&path).unwrap());
    // With the signed heads still on the host, its own check names the rewrite.
    let e = store::verify_log(&fed.broker.broker.db())
        .unwrap_err()
        .to_string();
    assert!(e.contains("not the ones the broker signed"), "{e}");
    // The operator deletes those heads too: now the host's check passes…
    fed.broker
        .broker
        .db()
        .connection()
        .expect("a SQLite broker")
        .execute_batch("DELETE FROM routing_heads; DELETE FROM routing_cosignatures;")
        .unwrap();
    store::verify_log(&fed.broker.broker.db()).unwrap();
    // …but the regulator's witness does not: the new log does not extend the old.
    let e = regulator::cosign_routing(&mut reg, &fed.trust, &signer, &state)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("does not extend") && e.contains("rewritten or forked"),
        "{e}"
    );
    let saved = SavedHead::load(&state).unwrap().unwrap();
    assert_eq!(saved.size, second.size, "the witnessed head is kept");

    // Rows deleted from the end are named as such.
    {
        let db = fed.broker.broker.db();
        db.connection()
            .expect("a SQLite broker")
            .execute("DELETE FROM log WHERE seq > ?1", [first.size as i64 - 1])
            .unwrap();
        rechain(&db);
    }
    drop(store::open(&path).unwrap());
    let e = regulator::cosign_routing(&mut reg, &fed.trust, &signer, &state)
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("deleted"), "{e}");
    fed.stop().await.unwrap();
}

#[tokio::test]
async fn only_a_regulator_cosigns_and_only_a_head_the_broker_signed() {
    let fed = Federation::start(None, &demo_agencies()[..2], |_| open_policy())
        .await
        .unwrap();
    let (mut admin, admin_signer) = fed
        .broker_client_as(fed.pki.person(VENTURA, &alpr_federation::admin_of(VENTURA)))
        .unwrap();
    let head = admin
        .get_routing_head(alpr_proto::pb::RoutingHeadRequest { from_size: 0 })
        .await
        .unwrap()
        .into_inner();
    let signed = head.head.unwrap();
    alpr_proto::auditlog::verify_routing_head(&fed.trust, &signed).unwrap();
    let cs = alpr_proto::pb::Cosignature {
        tree_head: signed.payload.clone(),
        cosigned_at: alpr_pki::now_unix(),
    };
    // An admin's cosignature is refused.
    let by_admin = alpr_proto::envelope::seal(
        &admin_signer,
        alpr_proto::auditlog::ROUTING_COSIGNATURE,
        &cs,
    )
    .unwrap();
    let s = admin.cosign_routing(by_admin).await.unwrap_err();
    assert!(
        s.message().contains("connected regulator"),
        "{}",
        s.message()
    );
    // A regulator's cosignature of a head the broker never signed is refused.
    let (mut reg, signer) = fed.broker_client_as(fed.pki.regulator("reg-ca")).unwrap();
    let forged = alpr_proto::pb::RoutingTreeHead {
        size: 1,
        root: vec![9; 32],
        timestamp: alpr_pki::now_unix(),
    };
    let cs = alpr_proto::pb::Cosignature {
        tree_head: prost::Message::encode_to_vec(&forged),
        cosigned_at: alpr_pki::now_unix(),
    };
    let c = alpr_proto::envelope::seal(&signer, alpr_proto::auditlog::ROUTING_COSIGNATURE, &cs)
        .unwrap();
    let s = reg.cosign_routing(c).await.unwrap_err();
    assert!(s.message().contains("did not sign"), "{}", s.message());
    // A registry cosignature type is not accepted for the routing log.
    let c = alpr_proto::envelope::seal(&signer, alpr_proto::registry::COSIGNATURE, &cs).unwrap();
    assert!(reg.cosign_routing(c).await.is_err());
    fed.stop().await.unwrap();
}
