//! Nodes that sync the registry by subject (`[registry] sync = "subjects"`, issue 19 item
//! 1): each fetches only the entries concerning its agency and the sealing keys of the
//! agencies it holds agreements with, with proofs against the signed head — and still
//! answers sealed queries, enforces a revocation itself, and never sees other agencies'
//! agreements. (A broker hiding, forging or reordering an entry:
//! `proto/src/subjects/tests.rs`; one whose subjects root lies: the regulator's check,
//! `broker/src/registry/tests.rs`.)

#![allow(clippy::unwrap_used, clippy::expect_used)]

use alpr_broker::regulator;
use alpr_federation::{Federation, admin_of, demo_agencies, open_policy, params, synthetic_csv};
use alpr_node::config::{NodeConfig, SyncMode};
use alpr_proto::RefusalReason;
use alpr_proto::envelope::{self, REFUSAL};
use alpr_proto::pb::{Refusal, TargetStatus};

const VENTURA: &str = "CA0560100";
const SACRAMENTO: &str = "CA0340000";
const FRESNO: &str = "CA0100500";
const PLATE: &str = "8ABC123";

fn by_subject(cfg: &mut NodeConfig) {
    Federation::sealed(cfg);
    cfg.registry.sync = SyncMode::Subjects;
}

/// The registry entries a node applied, by the detail it logged.
fn applied(fed: &Federation, ori: &str) -> Vec<String> {
    let mut out = Vec::new();
    for event in ["registry_event", "sealing_key"] {
        out.extend(
            fed.audit(ori, Some(event))
                .unwrap()
                .into_iter()
                .filter_map(|e| e.entry.detail),
        );
    }
    out
}

#[tokio::test]
async fn a_node_syncing_by_subject_gets_its_own_part_answers_sealed_and_enforces_a_revocation() {
    let fed = Federation::start_tuned(
        None,
        &demo_agencies()[..3],
        |_| open_policy(),
        &[],
        &by_subject,
    )
    .await
    .unwrap();
    fed.ingest_csv(VENTURA, &synthetic_csv(VENTURA, &[PLATE], 5))
        .unwrap();
    let ours = fed
        .agree(Federation::terms(VENTURA, SACRAMENTO, &["240"], 30, 86_400))
        .await
        .unwrap();
    // Other agencies' churn: an agreement Ventura is no party to.
    let theirs = fed
        .agree(Federation::terms(FRESNO, SACRAMENTO, &["240"], 30, 86_400))
        .await
        .unwrap();
    fed.sync(&[VENTURA, SACRAMENTO, FRESNO]).await.unwrap();

    // Sealed end to end: each node followed the other's sealing key by subject.
    let (_, resp) = fed
        .search(SACRAMENTO, &params(PLATE, &[VENTURA], "240", 3))
        .await
        .unwrap();
    let r = &resp.results[0];
    assert_eq!(r.status, TargetStatus::Answered as i32, "{r:?}");

    // Ventura applied its own agreement and its counterpart's key, nothing of Fresno's.
    let v = applied(&fed, VENTURA);
    assert!(v.iter().any(|d| d.contains(&ours)), "{v:?}");
    assert!(!v.iter().any(|d| d.contains(&theirs)), "{v:?}");
    assert!(
        v.iter()
            .any(|d| d.contains("sealing key") && d.contains(SACRAMENTO)),
        "{v:?}"
    );
    assert!(
        !v.iter()
            .any(|d| d.contains("sealing key") && d.contains(FRESNO)),
        "Fresno's key does not concern Ventura: {v:?}"
    );
    // Sacramento, party to both, applied both.
    let s = applied(&fed, SACRAMENTO);
    assert!(s.iter().any(|d| d.contains(&ours)) && s.iter().any(|d| d.contains(&theirs)));

    // Ventura's admin revokes; Ventura's node applies it by subject and refuses a query the
    // broker forwards anyway.
    let (mut adm, adm_signer) = fed
        .broker_client_as(fed.pki.person(VENTURA, &admin_of(VENTURA)))
        .unwrap();
    regulator::act(&mut adm, &adm_signer, &ours, "revoke", "case closed")
        .await
        .unwrap();
    fed.sync(&[VENTURA, SACRAMENTO]).await.unwrap();
    let (_, signed) = fed
        .sign_query(SACRAMENTO, &params(PLATE, &[VENTURA], "240", 3))
        .unwrap();
    let reply = fed
        .rogue_forward(VENTURA, fed.endorse(SACRAMENTO, &signed).unwrap())
        .await
        .unwrap();
    assert_eq!(reply.payload_type, REFUSAL);
    let (_, refusal): (_, Refusal) =
        envelope::open_as(&fed.trust, &reply, REFUSAL, alpr_pki::now_unix()).unwrap();
    assert_eq!(
        refusal.reason,
        RefusalReason::AgreementRevoked as i32,
        "{refusal:?}"
    );
    assert!(
        applied(&fed, VENTURA)
            .iter()
            .any(|d| d.contains(&ours) && d.contains("revoke")),
        "the revocation was applied by subject"
    );

    // A sync with nothing new changes nothing, and a second one after others' churn brings
    // Ventura nothing to apply.
    let before = applied(&fed, VENTURA).len();
    fed.agree(Federation::terms(SACRAMENTO, FRESNO, &["240"], 30, 86_400))
        .await
        .unwrap();
    fed.sync(&[VENTURA]).await.unwrap();
    fed.sync(&[VENTURA]).await.unwrap();
    assert_eq!(applied(&fed, VENTURA).len(), before);
}

#[tokio::test]
async fn the_broker_bounds_a_subjects_request_and_proves_an_unknown_subject_absent() {
    let fed = Federation::start(None, &demo_agencies()[..2], |_| open_policy())
        .await
        .unwrap();
    fed.agree(Federation::terms(VENTURA, SACRAMENTO, &["240"], 30, 86_400))
        .await
        .unwrap();
    let (mut c, _) = fed
        .broker_client_as(fed.pki.person(VENTURA, &admin_of(VENTURA)))
        .unwrap();
    let ask = |n: usize| alpr_proto::pb::SubjectsRequest {
        subjects: (0..n)
            .map(|i| alpr_proto::pb::SubjectCursor {
                subject: alpr_proto::subjects::agency(&format!("XX{i:07}")),
                held: 0,
            })
            .collect(),
    };
    let err = c
        .get_subjects(ask(alpr_proto::subjects::MAX_SUBJECTS_PER_REQUEST + 1))
        .await
        .unwrap_err();
    assert!(err.message().contains("at most 4096"), "{err:?}");
    // Agencies nothing concerns: each absence proved against the signed head.
    let reply = c.get_subjects(ask(3)).await.unwrap().into_inner();
    let head = alpr_proto::registry::verify_head(
        &fed.trust,
        reply.head.as_ref().unwrap(),
        alpr_pki::now_unix(),
    )
    .unwrap();
    let sroot = head
        .subjects_root
        .expect("the head signs its subjects index");
    for p in &reply.subjects {
        assert!(p.record.is_none() && p.entries.is_empty());
        let v = alpr_proto::subjects::verify_proof(
            (head.size, &head.root, &sroot),
            &Default::default(),
            p,
        )
        .unwrap();
        assert!(v.complete);
    }
}
