//! Sealed queries and answers (DESIGN §5): the broker routes what it cannot read.
//!
//! * A recording broker (every byte its server and its node channels carried, its
//!   database files and its logs) holds none of a query's plate, case number or reason,
//!   nor any returned camera id or coordinate, after an answered and a refused query;
//!   the investigator still gets every read.
//! * Boxes moved to another target, query or requester, changed, malformed, naming an
//!   unknown key, missing, or whose query differs from its routing copy are refused with
//!   a stable reason code and an audit entry at the target; so is a clear query.
//! * No box is sealed to a target without a usable published key (none, or its node
//!   certificate revoked); a key signed by another agency's node is never accepted; a
//!   broker that hides a rotation forks the log, which the node detects, and the node
//!   keeps sealing to the key of its own verified view.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::{Arc, Mutex, OnceLock};

use alpr_federation::{
    Federation, demo_agencies, investigator_of, open_policy, params, synthetic_csv,
};
use alpr_proto::RefusalReason;
use alpr_proto::pb::{Answer, Query, SealedReply, Signed, TargetStatus};
use alpr_runtime::wiretap::Wiretap;
use prost::Message;

const VENTURA: &str = "CA0560100";
const SACRAMENTO: &str = "CA0340000";
const FRESNO: &str = "CA0100500";
const PLATE: &str = "8ABC123";

/// Logs of the broker crate at every level, spans included, kept in memory.
fn broker_logs() -> Arc<Mutex<Vec<u8>>> {
    static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOGS.get_or_init(|| {
        let buf = Arc::new(Mutex::new(Vec::new()));
        let w = buf.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_env_filter("alpr_broker=trace")
            .with_span_events(tracing_subscriber::fmt::format::FmtSpan::FULL)
            .with_ansi(false)
            .with_writer(move || Writer(w.clone()))
            .finish();
        tracing::subscriber::set_global_default(subscriber).unwrap();
        buf
    })
    .clone()
}

struct Writer(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Writer {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

async fn sealed_federation(tap: Option<Wiretap>) -> Federation {
    let fed = Federation::start_recorded(
        None,
        &demo_agencies()[..3],
        |ori| {
            let mut p = open_policy();
            if ori == VENTURA {
                p.blocked_terms = vec!["protest".into()];
            }
            p
        },
        &[],
        &Federation::sealed,
        tap,
    )
    .await
    .unwrap();
    fed.ingest_csv(VENTURA, &synthetic_csv(VENTURA, &[PLATE], 5))
        .unwrap();
    fed.agree(Federation::terms(VENTURA, SACRAMENTO, &["240"], 30, 86_400))
        .await
        .unwrap();
    fed.sync(&[VENTURA, SACRAMENTO, FRESNO]).await.unwrap();
    fed
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && hay.windows(needle.len()).any(|w| w == needle)
}

fn reason_of(r: &SealedReply) -> RefusalReason {
    RefusalReason::try_from(r.reason).unwrap()
}

#[tokio::test]
async fn the_broker_routes_sealed_queries_it_cannot_read_and_the_investigator_gets_every_read() {
    let logs = broker_logs();
    let tap = Wiretap::new();
    let fed = sealed_federation(Some(tap.clone())).await;

    // Allowed: Sacramento asks Ventura, under their agreement.
    let allowed = params(PLATE, &[VENTURA], "240", 3);
    let (q, resp) = fed.search(SACRAMENTO, &allowed).await.unwrap();
    let r = &resp.results[0];
    assert_eq!(r.status, TargetStatus::Answered as i32, "{r:?}");
    assert!(
        r.sealed_reply.is_none(),
        "the investigator gets the opened reply"
    );
    let answer = Answer::decode(r.reply.as_ref().unwrap().payload.as_slice()).unwrap();
    assert!(!answer.reads.is_empty());
    assert!(answer.reads.iter().all(|x| x.plate == PLATE));
    // Every read Ventura found is what the investigator got.
    let inbound = fed.audit(VENTURA, Some("inbound_query")).unwrap();
    let answered = inbound
        .iter()
        .find(|e| e.entry.query_id.as_deref() == Some(hex::encode(&q.query_id).as_str()))
        .unwrap();
    assert_eq!(answered.entry.count, Some(answer.reads.len() as u64));
    assert_eq!(answered.entry.plate.as_deref(), Some(PLATE));
    // Ventura logged what it decrypted: the investigator's own signed query, which proves
    // the plate, case number and reason it logged are what the investigator signed.
    let evidence = Signed::decode(
        hex::decode(answered.entry.sealed_query.as_ref().unwrap())
            .unwrap()
            .as_slice(),
    )
    .unwrap();
    let (signer, signed_q): (_, Query) = alpr_proto::envelope::open_as(
        &fed.trust,
        &evidence,
        alpr_proto::envelope::QUERY,
        alpr_pki::now_unix(),
    )
    .unwrap();
    assert_eq!(
        signer.user.as_deref(),
        Some(investigator_of(SACRAMENTO).as_str())
    );
    assert_eq!(signed_q, q);
    assert_eq!(
        answered.entry.case_number.as_deref(),
        Some(q.case_number.as_str())
    );
    assert_eq!(answered.entry.reason.as_deref(), Some(q.reason.as_str()));

    // Refused by the target after opening its box: a term Ventura blocks, in the reason.
    let mut blocked = params(PLATE, &[VENTURA], "240", 3);
    blocked.reason =
        "Vehicle filmed at the protest outside city hall matches the carjacking suspect's".into();
    blocked.case_number = "SSD-2026-777123".into();
    let (q2, resp) = fed.search(SACRAMENTO, &blocked).await.unwrap();
    let r = &resp.results[0];
    assert_eq!(r.status, TargetStatus::Refused as i32, "{r:?}");
    assert_eq!(r.reason, RefusalReason::ProhibitedTerm as i32);
    assert_eq!(r.decided_by, VENTURA);
    assert!(
        r.detail.contains("protest"),
        "the investigator reads the detail: {r:?}"
    );
    // Refused by the broker from metadata alone: no agreement with Fresno.
    let (_, resp) = fed
        .search(SACRAMENTO, &params(PLATE, &[FRESNO], "240", 3))
        .await
        .unwrap();
    assert_eq!(resp.results[0].reason, RefusalReason::NoAgreement as i32);
    assert_eq!(resp.results[0].decided_by, "broker");

    fed.broker.broker.flush_log().await.unwrap();
    // What the broker saw: the wire, its database files, its routing log and its logs.
    let mut seen = tap.contents();
    let wire = seen.len();
    for f in ["broker.db", "broker.db-wal"] {
        if let Ok(b) = std::fs::read(fed.dir.join("broker").join(f)) {
            seen.extend(b);
        }
    }
    seen.extend(format!("{:?}", fed.broker_log().unwrap()).into_bytes());
    seen.extend(logs.lock().unwrap().clone());
    assert!(wire > 10_000, "the tap recorded the traffic ({wire} bytes)");
    // It did see the metadata it routes on (the recording is not empty of meaning).
    assert!(contains(&seen, &q.query_id));
    assert!(contains(&seen, hex::encode(&q2.query_id).as_bytes()));
    assert!(contains(&seen, VENTURA.as_bytes()));
    assert!(contains(&seen, "PROHIBITED_TERM".as_bytes()));

    let mut needles: Vec<(String, Vec<u8>)> = vec![
        ("plate".into(), PLATE.into()),
        ("case number".into(), q.case_number.clone().into()),
        ("case number 2".into(), q2.case_number.clone().into()),
        ("reason".into(), "Fair Oaks driveway".into()),
        ("reason 2".into(), "protest outside city hall".into()),
        ("blocked term".into(), "protest".into()),
    ];
    for read in &answer.reads {
        needles.push(("camera id".into(), read.camera_id.clone().into()));
        for (what, v) in [("latitude", read.latitude), ("longitude", read.longitude)] {
            needles.push((format!("{what} (binary)"), v.to_le_bytes().to_vec()));
            needles.push((format!("{what} (text)"), format!("{v}").into_bytes()));
            needles.push((format!("{what} (5 places)"), format!("{v:.5}").into_bytes()));
        }
    }
    for (what, n) in &needles {
        assert!(
            !contains(&seen, n),
            "the broker's recording holds the {what} {:?}",
            String::from_utf8_lossy(n)
        );
    }
    fed.stop().await.unwrap();
}

/// Sacramento's investigator's signed query to Ventura (and its parameters).
fn signed_query(fed: &Federation) -> (Query, Signed) {
    fed.sign_query(SACRAMENTO, &params(PLATE, &[VENTURA], "240", 3))
        .unwrap()
}

/// A genuine box of a fresh query from Sacramento to Ventura.
fn genuine_box(fed: &Federation) -> (Query, Signed, alpr_proto::pb::SealedBox) {
    let (q, s) = signed_query(fed);
    let (b, _) = fed
        .seal_box(SACRAMENTO, VENTURA, VENTURA, &q, &requester(&q), &s)
        .unwrap();
    (q, s, b)
}

/// Ventura's refusal of `q` endorsed by Sacramento with the one box `b`.
async fn refusal_of_box(
    fed: &Federation,
    q: &Query,
    b: alpr_proto::pb::SealedBox,
) -> RefusalReason {
    let e = fed.endorse_sealed(SACRAMENTO, q, vec![b]).unwrap();
    refusal_at_ventura(fed, e, q).await
}

fn requester(q: &Query) -> String {
    alpr_proto::admission::requester_label(q)
}

/// Ventura's refusal of one hand-made sealed endorsement: the reason, and its audit entry.
async fn refusal_at_ventura(fed: &Federation, endorsed: Signed, q: &Query) -> RefusalReason {
    let reply = fed.rogue_forward_sealed(VENTURA, endorsed).await.unwrap();
    assert_eq!(reply.status, TargetStatus::Refused as i32, "{reply:?}");
    let reason = reason_of(&reply);
    let logged = fed.audit(VENTURA, Some("inbound_query")).unwrap();
    let e = logged
        .iter()
        .rev()
        .find(|e| e.entry.query_id.as_deref() == Some(hex::encode(&q.query_id).as_str()))
        .expect("the refusal is logged");
    assert_eq!(e.entry.reason_code.as_deref(), Some(reason.as_str_name()));
    reason
}

#[tokio::test]
async fn moved_changed_malformed_and_unknown_boxes_are_refused_and_logged() {
    let fed = sealed_federation(None).await;

    // The genuine box opens: answered, under a reply key only the sealer holds.
    let (q, s) = signed_query(&fed);
    let (b, key) = fed
        .seal_box(SACRAMENTO, VENTURA, VENTURA, &q, &requester(&q), &s)
        .unwrap();
    let reply = fed
        .rogue_forward_sealed(
            VENTURA,
            fed.endorse_sealed(SACRAMENTO, &q, vec![b]).unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(reply.status, TargetStatus::Answered as i32, "{reply:?}");
    let aad = alpr_proto::seal::reply_aad(&reply.query_id, &reply.provider_ori);
    let inner = key.open(&aad, &reply.nonce, &reply.ciphertext).unwrap();
    let inner = Signed::decode(inner.as_slice()).unwrap();
    assert!(matches!(
        alpr_proto::reply::verify(&fed.trust, VENTURA, &inner, &q, alpr_pki::now_unix()),
        Ok(alpr_proto::reply::VerifiedReply::Answer { .. })
    ));
    // The harness's endorse seals in a sealed federation, and rogue_forward opens the
    // sealed reply: the same adversarial helpers serve both modes.
    let (q2, s2) = signed_query(&fed);
    let reply = fed
        .rogue_forward(VENTURA, fed.endorse(SACRAMENTO, &s2).unwrap())
        .await
        .unwrap();
    assert!(matches!(
        alpr_proto::reply::verify(&fed.trust, VENTURA, &reply, &q2, alpr_pki::now_unix()),
        Ok(alpr_proto::reply::VerifiedReply::Answer { .. })
    ));
    // Replayed by the broker: refused, under a fresh nonce (never the answer's).
    let again = fed
        .rogue_forward_sealed(
            VENTURA,
            fed.endorse_sealed(
                SACRAMENTO,
                &q,
                vec![
                    fed.seal_box(SACRAMENTO, VENTURA, VENTURA, &q, &requester(&q), &s)
                        .unwrap()
                        .0,
                ],
            )
            .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(reason_of(&again), RefusalReason::Replay);

    // Moved to another query: the box of query A inside the endorsement of query B.
    let (a, sa) = signed_query(&fed);
    let (qb, _) = signed_query(&fed);
    let (box_a, _) = fed
        .seal_box(SACRAMENTO, VENTURA, VENTURA, &a, &requester(&a), &sa)
        .unwrap();
    let moved = fed.endorse_sealed(SACRAMENTO, &qb, vec![box_a]).unwrap();
    assert_eq!(
        refusal_at_ventura(&fed, moved, &qb).await,
        RefusalReason::SealInvalid
    );

    // A genuine box, but the query's ciphertext (signed by Sacramento's node) made under
    // another query key: the key in the box does not open it.
    let (q, s, b) = genuine_box(&fed);
    let other = alpr_proto::seal::QueryKey::generate().unwrap();
    let body = other
        .seal(
            &alpr_proto::seal::sealed_query_aad(&q.query_id, &requester(&q)),
            &s.encode_to_vec(),
        )
        .unwrap();
    let e = alpr_proto::envelope::endorse_sealed(
        &fed.node_signer(SACRAMENTO).unwrap(),
        SACRAMENTO,
        alpr_proto::admission::routing_copy(&q),
        body,
        vec![b],
        alpr_pki::now_unix(),
    )
    .unwrap();
    assert_eq!(
        refusal_at_ventura(&fed, e, &q).await,
        RefusalReason::SealInvalid
    );
    let logged = fed.audit(VENTURA, Some("inbound_query")).unwrap();
    let last = logged.last().unwrap();
    assert!(
        last.entry
            .detail
            .as_deref()
            .is_some_and(|d| d.contains("sealed query does not open")),
        "{:?}",
        last.entry.detail
    );

    // Sealed for another target (Fresno named in its context) and given to Ventura.
    let (q, s) = signed_query(&fed);
    let (b, _) = fed
        .seal_box(SACRAMENTO, VENTURA, FRESNO, &q, &requester(&q), &s)
        .unwrap();
    assert_eq!(
        refusal_of_box(&fed, &q, b).await,
        RefusalReason::SealInvalid
    );

    // Sealed for another requester.
    let (q, s) = signed_query(&fed);
    let (b, _) = fed
        .seal_box(
            SACRAMENTO,
            VENTURA,
            VENTURA,
            &q,
            "someone-else@CA0340000",
            &s,
        )
        .unwrap();
    assert_eq!(
        refusal_of_box(&fed, &q, b).await,
        RefusalReason::SealInvalid
    );

    // Moved to another target: Ventura's box relabelled for Fresno (Fresno holds no such key).
    let (q, _, mut b) = genuine_box(&fed);
    b.recipient_ori = FRESNO.into();
    let reply = fed
        .rogue_forward_sealed(FRESNO, fed.endorse_sealed(SACRAMENTO, &q, vec![b]).unwrap())
        .await
        .unwrap();
    assert_eq!(reason_of(&reply), RefusalReason::SealKeyUnknown);
    assert!(
        reply.clear_refusal.is_some(),
        "no reply key: refused in the clear"
    );

    // Changed in one bit.
    let (q, _, mut b) = genuine_box(&fed);
    let last = b.ciphertext.len() - 1;
    b.ciphertext[last] ^= 1;
    assert_eq!(
        refusal_of_box(&fed, &q, b).await,
        RefusalReason::SealInvalid
    );

    // Malformed: a key id of 3 bytes, an unknown suite, an encapsulated key cut short.
    for spoil in [
        (|b: &mut alpr_proto::pb::SealedBox| b.key_id.truncate(3)) as fn(&mut _),
        |b| b.suite = 9,
        |b| b.enc.truncate(5),
    ] {
        let (q, _, mut b) = genuine_box(&fed);
        spoil(&mut b);
        assert_eq!(
            refusal_of_box(&fed, &q, b).await,
            RefusalReason::SealInvalid
        );
    }

    // Naming a key Ventura does not hold.
    let (q, _, mut b) = genuine_box(&fed);
    b.key_id = vec![0x5A; 16];
    assert_eq!(
        refusal_of_box(&fed, &q, b).await,
        RefusalReason::SealKeyUnknown
    );

    // No box for Ventura at all.
    let (q, _) = signed_query(&fed);
    let e = fed.endorse_sealed(SACRAMENTO, &q, vec![]).unwrap();
    assert_eq!(
        refusal_at_ventura(&fed, e, &q).await,
        RefusalReason::SealRequired
    );

    // The routing copy the broker decides on differs from the query in the box (a wider
    // window, endorsed by Sacramento's node): the target refuses.
    let (q, _, b) = genuine_box(&fed);
    let mut wider = q.clone();
    wider.window_start -= 86_400;
    let e = fed.endorse_sealed(SACRAMENTO, &wider, vec![b]).unwrap();
    assert_eq!(
        refusal_at_ventura(&fed, e, &q).await,
        RefusalReason::SealInvalid
    );

    // A clear query to a node that requires sealing.
    let (q, s) = signed_query(&fed);
    let clear = alpr_proto::envelope::endorse(
        &fed.node_signer(SACRAMENTO).unwrap(),
        SACRAMENTO,
        s.encode_to_vec(),
        alpr_pki::now_unix(),
    )
    .unwrap();
    let refusal = fed.rogue_forward(VENTURA, clear).await.unwrap();
    let refusal: alpr_proto::pb::Refusal =
        alpr_proto::pb::Refusal::decode(refusal.payload.as_slice()).unwrap();
    assert_eq!(refusal.reason, RefusalReason::SealRequired as i32);
    let logged = fed.audit(VENTURA, Some("inbound_query")).unwrap();
    assert!(logged.iter().any(|e| {
        e.entry.query_id.as_deref() == Some(hex::encode(&q.query_id).as_str())
            && e.entry.reason_code.as_deref() == Some("SEAL_REQUIRED")
    }));
    fed.stop().await.unwrap();
}

#[tokio::test]
async fn nothing_is_sealed_to_a_target_without_a_usable_published_key() {
    let fed = sealed_federation(None).await;
    fed.agree(Federation::terms(FRESNO, SACRAMENTO, &["240"], 30, 86_400))
        .await
        .unwrap();
    fed.sync(&[SACRAMENTO, FRESNO]).await.unwrap();
    // Fresno answers while its key's certificate is good.
    let (_, resp) = fed
        .search(SACRAMENTO, &params(PLATE, &[FRESNO], "240", 3))
        .await
        .unwrap();
    assert_eq!(resp.results[0].status, TargetStatus::Answered as i32);

    // An ORI that has published no key: refused by the requesting node, never sent.
    let (q, resp) = fed
        .search(
            SACRAMENTO,
            &params(PLATE, &[VENTURA, "CA9999999"], "240", 3),
        )
        .await
        .unwrap();
    assert_eq!(resp.results[0].status, TargetStatus::Answered as i32);
    assert_eq!(resp.results[1].reason, RefusalReason::SealKeyUnknown as i32);
    assert_eq!(resp.results[1].decided_by, SACRAMENTO);
    let results = fed.audit(SACRAMENTO, Some("outbound_result")).unwrap();
    assert!(results.iter().any(|e| {
        e.entry.query_id.as_deref() == Some(hex::encode(&q.query_id).as_str())
            && e.entry.target.as_deref() == Some("CA9999999")
            && e.entry.reason_code.as_deref() == Some("SEAL_KEY_UNKNOWN")
    }));

    // Fresno's node certificate revoked: its key is no longer used, whatever the registry.
    let (cert, _) = fed.pki.node(FRESNO);
    fed.revoke(&cert).unwrap();
    fed.reload_crls().unwrap();
    let (_, resp) = fed
        .search(SACRAMENTO, &params(PLATE, &[FRESNO], "240", 3))
        .await
        .unwrap();
    let r = &resp.results[0];
    assert_eq!(r.reason, RefusalReason::SealKeyUnknown as i32, "{r:?}");
    assert!(r.detail.contains("no longer valid"), "{r:?}");
    fed.stop().await.unwrap();
}

#[tokio::test]
async fn a_key_signed_by_another_agency_is_refused_and_a_hidden_rotation_forks_the_log() {
    let fed = sealed_federation(None).await;
    // Fresno's node signs a "sealing key of Ventura": the broker refuses it, logged.
    let fake = alpr_proto::seal::KeyPair::generate(alpr_proto::seal::Suite::X25519ChaCha20);
    let signed = alpr_proto::envelope::seal(
        &fed.node_signer(FRESNO).unwrap(),
        alpr_proto::registry::SEALING_KEY,
        &alpr_proto::pb::SealingKey {
            ori: VENTURA.into(),
            suite: 1,
            public_key: fake.public.clone(),
            published_at: alpr_pki::now_unix(),
            ..Default::default()
        },
    )
    .unwrap();
    let (mut c, _) = fed.broker_client_as(fed.pki.node(FRESNO)).unwrap();
    let err = c.publish_sealing_key(signed.clone()).await.unwrap_err();
    assert_eq!(
        alpr_proto::reason_of(&err),
        Some(RefusalReason::CertInvalid),
        "{err:?}"
    );
    assert!(fed.broker_log().unwrap().iter().any(|e| {
        e.event == alpr_broker::vocabulary::Event::SealingKey
            && e.decision == alpr_broker::vocabulary::Decision::Refused
    }));
    // Nor does any party replaying a log that holds one.
    let leaf = alpr_proto::pb::RegistryEvent {
        kind: alpr_proto::registry::SEALING_KEY_KIND.into(),
        sealing_key: Some(signed),
        logged_at: alpr_pki::now_unix(),
        provider_ori: VENTURA.into(),
        ..Default::default()
    }
    .encode_to_vec();
    let e = alpr_proto::registry::replay(&fed.trust, &[leaf]).unwrap_err();
    assert!(e.to_string().contains("only that agency's node"), "{e}");

    // A box sealed to a key the attacker made, labelled for Ventura: refused.
    let (q, _) = signed_query(&fed);
    let who = requester(&q);
    let ctx = alpr_proto::admission::box_context(&q, VENTURA, &who);
    let b = alpr_proto::seal::seal_query_key(
        fake.suite,
        &fake.public,
        &ctx,
        &alpr_proto::seal::QueryKey::generate().unwrap(),
    )
    .unwrap()
    .0
    .to_wire(VENTURA);
    assert_eq!(
        refusal_of_box(&fed, &q, b).await,
        RefusalReason::SealKeyUnknown
    );

    // Ventura rotates; a broker that shows Sacramento a log without the rotation must
    // fork it. Sacramento detects the fork and keeps sealing to the rotated key.
    let dir = tempfile::tempdir().unwrap();
    let snap = dir.path().join("before-rotation.db");
    fed.broker
        .broker
        .db()
        .connection()
        .expect("a SQLite broker")
        .execute("VACUUM INTO ?1", [snap.to_str().unwrap()])
        .unwrap();
    let ventura = &fed.nodes[VENTURA].node;
    let old = ventura.own_sealing_keys()[0].pair.key_id();
    ventura.rotate_sealing_key().unwrap();
    ventura.publish_sealing_key().await.unwrap();
    fed.sync(&[SACRAMENTO, VENTURA]).await.unwrap();
    let new = ventura.own_sealing_keys()[0].pair.key_id();
    assert_ne!(old, new);
    let sac = &fed.nodes[SACRAMENTO].node;
    assert_eq!(sac.published_key(VENTURA).unwrap().key_id, new);

    let mut cfg =
        alpr_broker::BrokerConfig::load(&fed.dir.join("broker").join("broker.toml")).unwrap();
    cfg.data_dir = dir.path().join("fork");
    cfg.listen = "127.0.0.1:0".parse().unwrap();
    std::fs::create_dir_all(&cfg.data_dir).unwrap();
    std::fs::copy(&snap, cfg.db_path()).unwrap();
    let fork = alpr_broker::start(&cfg).await.unwrap();
    // The fork grows differently: Fresno publishes its key again there.
    let (c, k) = fed.pki.node(FRESNO);
    let fresno_tls = alpr_runtime::tls::TlsIdentity::load(&c, &k).unwrap();
    let mut to_fork = alpr_node::client::broker_client(
        &alpr_runtime::client::Target {
            addr: fork.addr.to_string(),
            server_name: "localhost".into(),
        },
        &fed.trust,
        &fresno_tls,
        std::time::Duration::from_secs(10),
    )
    .unwrap();
    let fresno = &fed.nodes[FRESNO].node;
    let republish = alpr_proto::envelope::seal(
        &fed.node_signer(FRESNO).unwrap(),
        alpr_proto::registry::SEALING_KEY,
        &alpr_proto::pb::SealingKey {
            ori: FRESNO.into(),
            suite: 1,
            public_key: fresno.own_sealing_keys()[0].pair.public.clone(),
            published_at: alpr_pki::now_unix(),
            ..Default::default()
        },
    )
    .unwrap();
    to_fork
        .publish_sealing_key(republish.clone())
        .await
        .unwrap();
    to_fork.publish_sealing_key(republish).await.unwrap();
    let (c, k) = fed.pki.node(SACRAMENTO);
    let sac_tls = alpr_runtime::tls::TlsIdentity::load(&c, &k).unwrap();
    let sac_to_fork = alpr_node::client::broker_client(
        &alpr_runtime::client::Target {
            addr: fork.addr.to_string(),
            server_name: "localhost".into(),
        },
        &fed.trust,
        &sac_tls,
        std::time::Duration::from_secs(10),
    )
    .unwrap();
    let err = sac.sync_registry_with(sac_to_fork).await.unwrap_err();
    assert!(err.to_string().contains("fork"), "{err}");
    assert!(
        !fed.audit(SACRAMENTO, Some("registry_fork"))
            .unwrap()
            .is_empty()
    );
    assert_eq!(sac.published_key(VENTURA).unwrap().key_id, new);
    let (_, resp) = fed
        .search(SACRAMENTO, &params(PLATE, &[VENTURA], "240", 3))
        .await
        .unwrap();
    assert_eq!(resp.results[0].status, TargetStatus::Answered as i32);
    fork.stop().await.unwrap();
    fed.stop().await.unwrap();
}

#[tokio::test]
async fn the_same_recording_of_a_clear_federation_holds_the_plate_and_the_reason() {
    // The control for the blindness test: the tap and the search do find what a clear
    // query shows the broker.
    let tap = Wiretap::new();
    let fed = Federation::start_recorded(
        None,
        &demo_agencies()[..2],
        |_| open_policy(),
        &[],
        &Federation::clear,
        Some(tap.clone()),
    )
    .await
    .unwrap();
    fed.ingest_csv(VENTURA, &synthetic_csv(VENTURA, &[PLATE], 5))
        .unwrap();
    fed.agree(Federation::terms(VENTURA, SACRAMENTO, &["240"], 30, 86_400))
        .await
        .unwrap();
    fed.sync(&[VENTURA, SACRAMENTO]).await.unwrap();
    let (_, resp) = fed
        .search(SACRAMENTO, &params(PLATE, &[VENTURA], "240", 3))
        .await
        .unwrap();
    let answer =
        Answer::decode(resp.results[0].reply.as_ref().unwrap().payload.as_slice()).unwrap();
    let seen = tap.contents();
    assert!(contains(&seen, PLATE.as_bytes()));
    assert!(contains(&seen, "Fair Oaks driveway".as_bytes()));
    assert!(contains(&seen, answer.reads[0].camera_id.as_bytes()));
    assert!(contains(&seen, &answer.reads[0].latitude.to_le_bytes()));
    fed.stop().await.unwrap();
}

/// `from`'s search is refused by the broker itself with `want`.
async fn refused_by_broker(
    fed: &Federation,
    from: &str,
    p: &alpr_node::client::SearchParams,
    want: RefusalReason,
) {
    let (_, resp) = fed.search(from, p).await.unwrap();
    let r = &resp.results[0];
    assert_eq!(
        (r.reason, r.decided_by.as_str()),
        (want as i32, "broker"),
        "{r:?}"
    );
}

#[tokio::test]
async fn the_broker_still_refuses_from_the_routing_copy_alone() {
    const LAS_VEGAS: &str = "NV0020100";
    let fed = Federation::start_tuned(
        None,
        &demo_agencies()[..4],
        |_| open_policy(),
        &[],
        &Federation::sealed,
    )
    .await
    .unwrap();
    let v2s = fed
        .agree(Federation::terms(
            VENTURA,
            SACRAMENTO,
            &["240", "30A"],
            30,
            86_400,
        ))
        .await
        .unwrap();
    let f2s = fed
        .agree(Federation::terms(FRESNO, SACRAMENTO, &["240"], 30, 86_400))
        .await
        .unwrap();
    fed.sync(&[VENTURA, SACRAMENTO, FRESNO, LAS_VEGAS])
        .await
        .unwrap();
    // An out-of-state requester.
    refused_by_broker(
        &fed,
        LAS_VEGAS,
        &params(PLATE, &[VENTURA], "240", 3),
        RefusalReason::RequesterJurisdictionNotPermitted,
    )
    .await;
    // A purpose California prohibits, though the agreement lists it.
    refused_by_broker(
        &fed,
        SACRAMENTO,
        &params(PLATE, &[VENTURA], "30A", 3),
        RefusalReason::PurposeProhibited,
    )
    .await;
    // A look-back past the agreement's 30 days.
    refused_by_broker(
        &fed,
        SACRAMENTO,
        &params(PLATE, &[VENTURA], "240", 45),
        RefusalReason::LookbackExceeded,
    )
    .await;
    // A revoked and a suspended agreement.
    let (mut adm, s) = fed
        .broker_client_as(fed.pki.person(VENTURA, &alpr_federation::admin_of(VENTURA)))
        .unwrap();
    alpr_broker::regulator::act(&mut adm, &s, &v2s, "revoke", "task force ended")
        .await
        .unwrap();
    let (mut reg, s) = fed.broker_client_as(fed.pki.regulator("reg-ca")).unwrap();
    alpr_broker::regulator::act(&mut reg, &s, &f2s, "suspend", "complaint under review")
        .await
        .unwrap();
    refused_by_broker(
        &fed,
        SACRAMENTO,
        &params(PLATE, &[VENTURA], "240", 3),
        RefusalReason::AgreementRevoked,
    )
    .await;
    refused_by_broker(
        &fed,
        SACRAMENTO,
        &params(PLATE, &[FRESNO], "240", 3),
        RefusalReason::AgreementSuspended,
    )
    .await;
    // Each logged by the broker with its reason.
    let log = fed.broker_log().unwrap();
    for want in [
        "REQUESTER_JURISDICTION_NOT_PERMITTED",
        "PURPOSE_PROHIBITED",
        "LOOKBACK_EXCEEDED",
        "AGREEMENT_REVOKED",
        "AGREEMENT_SUSPENDED",
    ] {
        assert!(
            log.iter().any(|e| e.reason_code.as_deref() == Some(want)),
            "{want} logged"
        );
    }
    fed.stop().await.unwrap();
}

#[tokio::test]
async fn a_federation_on_the_post_quantum_suite_answers_sealed() {
    let fed = Federation::start_tuned(None, &demo_agencies()[..2], |_| open_policy(), &[], &|c| {
        c.sealing.require = true;
        c.sealing.suite = "xwing".into();
    })
    .await
    .unwrap();
    fed.ingest_csv(VENTURA, &synthetic_csv(VENTURA, &[PLATE], 5))
        .unwrap();
    fed.agree(Federation::terms(VENTURA, SACRAMENTO, &["240"], 30, 86_400))
        .await
        .unwrap();
    fed.sync(&[VENTURA, SACRAMENTO]).await.unwrap();
    let k = fed.nodes[SACRAMENTO].node.published_key(VENTURA).unwrap();
    assert_eq!(k.suite, alpr_proto::seal::Suite::XWingChaCha20);
    assert_eq!(k.public.len(), 1216, "an X-Wing public key");
    let (_, resp) = fed
        .search(SACRAMENTO, &params(PLATE, &[VENTURA], "240", 3))
        .await
        .unwrap();
    assert_eq!(resp.results[0].status, TargetStatus::Answered as i32);
    fed.stop().await.unwrap();
}

#[tokio::test]
async fn a_rotated_key_opens_boxes_for_its_grace_period_then_is_deleted() {
    let fed = Federation::start_tuned(None, &demo_agencies()[..2], |_| open_policy(), &[], &|c| {
        c.sealing.require = true;
        c.sealing.grace_secs = 2;
    })
    .await
    .unwrap();
    fed.agree(Federation::terms(VENTURA, SACRAMENTO, &["240"], 30, 86_400))
        .await
        .unwrap();
    fed.sync(&[VENTURA, SACRAMENTO]).await.unwrap();
    let ventura = &fed.nodes[VENTURA].node;
    let old = ventura.own_sealing_keys()[0].pair.key_id();
    ventura.rotate_sealing_key().unwrap();
    assert!(ventura.needs_publication().unwrap());
    // Sacramento has not synced: it still seals to the old key, which still opens.
    let sac = &fed.nodes[SACRAMENTO].node;
    assert_eq!(sac.published_key(VENTURA).unwrap().key_id, old);
    let (_, resp) = fed
        .search(SACRAMENTO, &params(PLATE, &[VENTURA], "240", 3))
        .await
        .unwrap();
    assert_eq!(
        resp.results[0].status,
        TargetStatus::Answered as i32,
        "{:?}",
        resp.results[0]
    );
    // Past the grace period the old key opens nothing...
    tokio::time::sleep(std::time::Duration::from_millis(3_100)).await;
    let (_, resp) = fed
        .search(SACRAMENTO, &params(PLATE, &[VENTURA], "240", 3))
        .await
        .unwrap();
    assert_eq!(resp.results[0].reason, RefusalReason::SealKeyUnknown as i32);
    assert_eq!(resp.results[0].decided_by, VENTURA);
    // ... and is deleted (logged); once published and synced the new key is used.
    assert_eq!(
        ventura
            .drop_expired_sealing_keys(alpr_pki::now_unix())
            .unwrap(),
        1
    );
    assert_eq!(ventura.own_sealing_keys().len(), 1);
    assert!(
        fed.audit(VENTURA, Some("sealing_key"))
            .unwrap()
            .iter()
            .any(|e| { e.entry.decision == alpr_node::audit::Decision::Deleted })
    );
    ventura.sync_registry_and_key().await.unwrap();
    assert!(!ventura.needs_publication().unwrap());
    fed.sync(&[SACRAMENTO]).await.unwrap();
    let (_, resp) = fed
        .search(SACRAMENTO, &params(PLATE, &[VENTURA], "240", 3))
        .await
        .unwrap();
    assert_eq!(resp.results[0].status, TargetStatus::Answered as i32);
    fed.stop().await.unwrap();
}

#[tokio::test]
async fn each_target_is_sent_only_its_own_box() {
    let tap = Wiretap::new();
    let fed = sealed_federation(Some(tap.clone())).await;
    // A query to Ventura (agreed) and Fresno (no agreement with Sacramento): the broker
    // forwards to Ventura alone, with Ventura's box alone attached.
    let (_, signed) = fed
        .sign_query(SACRAMENTO, &params(PLATE, &[VENTURA, FRESNO], "240", 3))
        .unwrap();
    let endorsed = fed.endorse(SACRAMENTO, &signed).unwrap();
    assert_eq!(endorsed.sealed_boxes.len(), 2);
    let before = tap.contents().len();
    let resp = fed
        .route_at(fed.broker.addr, SACRAMENTO, endorsed.clone())
        .await
        .unwrap();
    let by: std::collections::BTreeMap<_, _> = resp
        .results
        .iter()
        .map(|r| (r.ori.as_str(), r.status))
        .collect();
    assert_eq!(by[VENTURA], TargetStatus::Answered as i32);
    assert_eq!(by[FRESNO], TargetStatus::Refused as i32);
    let seen = tap.contents()[before..].to_vec();
    let count = |needle: &[u8]| seen.windows(needle.len()).filter(|w| *w == needle).count();
    for bytes in &endorsed.sealed_boxes {
        let b = alpr_proto::pb::SealedBox::decode(bytes.as_slice()).unwrap();
        // Received once from Sacramento's node; sent on once, to its own recipient only.
        let want = if b.recipient_ori == VENTURA { 2 } else { 1 };
        assert_eq!(count(bytes), want, "box for {}", b.recipient_ori);
    }
    fed.stop().await.unwrap();
}

#[tokio::test]
async fn a_box_the_endorsing_node_did_not_list_is_refused_and_logged() {
    let fed = sealed_federation(None).await;
    // The broker swaps the attached box for another genuine box of the same query (sealed
    // again: other bytes): not the leaf of the box tree the node's signature names.
    let (q, s, b) = genuine_box(&fed);
    let mut e = fed.endorse_sealed(SACRAMENTO, &q, vec![b]).unwrap();
    let (other, _) = fed
        .seal_box(SACRAMENTO, VENTURA, VENTURA, &q, &requester(&q), &s)
        .unwrap();
    e.sealed_boxes = vec![other.encode_to_vec()];
    assert_eq!(
        refusal_at_ventura(&fed, e, &q).await,
        RefusalReason::InvalidInput
    );
    // The boxes inside the signed endorsement (every target receiving all of them): the
    // form before box digests and the box tree, refused.
    let (q, _, b) = genuine_box(&fed);
    let inline = alpr_proto::envelope::seal(
        &fed.node_signer(SACRAMENTO).unwrap(),
        alpr_proto::envelope::ENDORSEMENT,
        &alpr_proto::pb::Endorsement {
            node_ori: SACRAMENTO.into(),
            endorsed_at: alpr_pki::now_unix(),
            routing: Some(alpr_proto::admission::routing_copy(&q)),
            boxes: vec![b],
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(
        refusal_at_ventura(&fed, inline, &q).await,
        RefusalReason::InvalidInput
    );
    fed.stop().await.unwrap();
}
