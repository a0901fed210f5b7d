//! The agreement registry: every lifecycle transition, who may make it, and that nodes
//! and the broker enforce the result; nothing revives a revoked agreement.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use alpr_broker::regulator::{self, ListFilter};
use alpr_federation::{Federation, admin_of, demo_agencies, open_policy, params};
use alpr_proto::RefusalReason;
use alpr_proto::envelope::{self, REFUSAL};
use alpr_proto::pb::{Refusal, TargetStatus};

const VENTURA: &str = "CA0560100";
const SACRAMENTO: &str = "CA0340000";

async fn reason_now(fed: &Federation) -> (i32, String) {
    let (_, r) = fed
        .search(SACRAMENTO, &params("8ABC123", &[VENTURA], "240", 3))
        .await
        .unwrap();
    (r.results[0].reason, r.results[0].decided_by.clone())
}

/// What Ventura's node itself decides (a misbehaving broker forwarding anyway).
async fn node_reason(fed: &Federation) -> i32 {
    let (_, signed) = fed
        .sign_query(SACRAMENTO, &params("8ABC123", &[VENTURA], "240", 3))
        .unwrap();
    let reply = fed
        .rogue_forward(VENTURA, fed.endorse(SACRAMENTO, &signed).unwrap())
        .await
        .unwrap();
    if reply.payload_type == envelope::ANSWER {
        return 0;
    }
    let (_, r): (_, Refusal) =
        envelope::open_as(&fed.trust, &reply, REFUSAL, alpr_pki::now_unix()).unwrap();
    r.reason
}

#[tokio::test]
async fn suspend_lift_revoke_and_nothing_revives() {
    let fed = Federation::start(None, &demo_agencies()[..2], |_| open_policy())
        .await
        .unwrap();
    let id = fed
        .agree(Federation::terms(VENTURA, SACRAMENTO, &["240"], 30, 86_400))
        .await
        .unwrap();
    assert_eq!(reason_now(&fed).await.0, 0);

    let (mut reg_ca, reg_ca_signer) = fed.broker_client_as(fed.pki.regulator("reg-ca")).unwrap();
    let (mut reg_nv, reg_nv_signer) = fed.broker_client_as(fed.pki.regulator("reg-nv")).unwrap();
    // Another state's regulator cannot suspend a California agency's agreement.
    let err = regulator::act(&mut reg_nv, &reg_nv_signer, &id, "suspend", "not my state")
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("CERT_INVALID"), "{err}");

    regulator::act(
        &mut reg_ca,
        &reg_ca_signer,
        &id,
        "suspend",
        "complaint under review",
    )
    .await
    .unwrap();
    fed.sync(&[VENTURA, SACRAMENTO]).await.unwrap();
    assert_eq!(
        reason_now(&fed).await,
        (RefusalReason::AgreementSuspended as i32, "broker".into())
    );
    assert_eq!(
        node_reason(&fed).await,
        RefusalReason::AgreementSuspended as i32,
        "the node applied the suspension itself"
    );

    regulator::act(
        &mut reg_ca,
        &reg_ca_signer,
        &id,
        "lift",
        "review closed, no violation",
    )
    .await
    .unwrap();
    fed.sync(&[VENTURA, SACRAMENTO]).await.unwrap();
    assert_eq!(reason_now(&fed).await.0, 0);

    // Either party revokes alone; an investigator cannot.
    let (mut inv, inv_signer) = fed
        .broker_client_as(
            fed.pki
                .person(SACRAMENTO, &alpr_federation::investigator_of(SACRAMENTO)),
        )
        .unwrap();
    assert!(
        regulator::act(&mut inv, &inv_signer, &id, "revoke", "I want it gone")
            .await
            .is_err()
    );
    let (mut adm, adm_signer) = fed
        .broker_client_as(fed.pki.person(SACRAMENTO, &admin_of(SACRAMENTO)))
        .unwrap();
    regulator::act(&mut adm, &adm_signer, &id, "revoke", "task force disbanded")
        .await
        .unwrap();
    fed.sync(&[VENTURA, SACRAMENTO]).await.unwrap();
    assert_eq!(
        reason_now(&fed).await,
        (RefusalReason::AgreementRevoked as i32, "broker".into())
    );
    assert_eq!(
        node_reason(&fed).await,
        RefusalReason::AgreementRevoked as i32
    );

    // Nothing revives it: lifting, suspending or revoking again are refused.
    for act in ["lift", "suspend", "revoke"] {
        let (mut c, s) = if act == "revoke" {
            fed.broker_client_as(fed.pki.person(VENTURA, &admin_of(VENTURA)))
                .unwrap()
        } else {
            fed.broker_client_as(fed.pki.regulator("reg-ca")).unwrap()
        };
        let err = regulator::act(&mut c, &s, &id, act, "try to revive it")
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("revoked"), "{act}: {err}");
    }
    // Re-submitting the same signed agreement does not revive it either.
    let sa = fed
        .broker
        .broker
        .list(None)
        .unwrap()
        .into_iter()
        .find(|(v, _)| v.id == id)
        .unwrap()
        .1;
    assert!(fed.submit(VENTURA, &sa).await.is_err());

    // The regulator sees the full, verified history.
    let view = regulator::fetch_verified(&mut reg_ca, &fed.trust, None)
        .await
        .unwrap();
    let kinds: Vec<_> = view.records[&id]
        .history
        .iter()
        .map(|h| h.kind.as_str())
        .collect();
    assert_eq!(kinds, ["register", "suspend", "lift", "revoke"]);
    let rows = regulator::rows(
        &view,
        &ListFilter {
            status: Some("revoked".into()),
            ..Default::default()
        },
        alpr_pki::now_unix(),
    );
    assert_eq!(rows.len(), 1);
    // Nodes logged each event that concerned them.
    let events = fed.audit(VENTURA, Some("registry_event")).unwrap();
    assert_eq!(events.len(), 4, "{events:?}");
    fed.stop().await.unwrap();
}

#[tokio::test]
async fn a_new_agreement_supersedes_and_expired_ones_are_not_registered() {
    let fed = Federation::start(None, &demo_agencies()[..2], |_| open_policy())
        .await
        .unwrap();
    let id1 = fed
        .agree(Federation::terms(VENTURA, SACRAMENTO, &["240"], 30, 86_400))
        .await
        .unwrap();
    let (mut adm, s) = fed
        .broker_client_as(fed.pki.person(VENTURA, &admin_of(VENTURA)))
        .unwrap();
    regulator::act(
        &mut adm,
        &s,
        &id1,
        "revoke",
        "replaced by a narrower agreement",
    )
    .await
    .unwrap();
    let id2 = fed
        .agree(Federation::terms(
            VENTURA,
            SACRAMENTO,
            &["240", "120"],
            14,
            86_400,
        ))
        .await
        .unwrap();
    assert_ne!(id1, id2);
    let (_, r) = fed
        .search(SACRAMENTO, &params("8ABC123", &[VENTURA], "120", 3))
        .await
        .unwrap();
    assert_eq!(r.results[0].status, TargetStatus::Answered as i32);
    // An agreement whose term already ended is refused at registration.
    let mut terms = Federation::terms(VENTURA, SACRAMENTO, &["240"], 30, 86_400);
    terms.valid_from -= 10 * 86_400;
    terms.valid_until = alpr_pki::now_unix() - 60;
    let err = fed.agree(terms).await.unwrap_err().to_string();
    assert!(err.contains("AGREEMENT_EXPIRED"), "{err}");
    // Mandatory term limit: more than a year is refused.
    let err = fed
        .agree(Federation::terms(
            VENTURA,
            SACRAMENTO,
            &["240"],
            30,
            400 * 86_400,
        ))
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("renewed"), "{err}");
    fed.stop().await.unwrap();
}
