//! Adversarial cases around identity: a revoked investigator, an agency CA minting another
//! agency's identity, plates carrying SQL metacharacters and control characters, and an
//! oversized message. Each is refused with its reason code and an audit entry at the
//! refusing party, and no read is returned.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use alpr_federation::{Federation, demo_agencies, investigator_of, params};
use alpr_node::client;
use alpr_pki::issue::{self, Authority, LeafSpec};
use alpr_pki::{AgencyClaims, Role, Signer};
use alpr_proto::RefusalReason;
use alpr_proto::envelope::{self, QUERY, REFUSAL};
use alpr_proto::pb::{Query, Refusal, Signed};
use alpr_runtime::client::Target;
use alpr_runtime::tls::TlsIdentity;
use prost::Message;

const VENTURA: &str = "CA0560100";
const SACRAMENTO: &str = "CA0340000";
const LAS_VEGAS: &str = "NV0020100";

async fn fed() -> Federation {
    let fed = Federation::start_clear(&demo_agencies()).await.unwrap();
    fed.ingest_csv(
        VENTURA,
        &alpr_federation::synthetic_csv(VENTURA, &["8ABC123"], 5),
    )
    .unwrap();
    fed.agree(Federation::terms(VENTURA, SACRAMENTO, &["240"], 30, 86_400))
        .await
        .unwrap();
    fed
}

fn refusal_of(fed: &Federation, reply: &Signed) -> Refusal {
    assert_eq!(
        reply.payload_type, REFUSAL,
        "expected a refusal, not an answer"
    );
    envelope::open_as::<Refusal>(&fed.trust, reply, REFUSAL, alpr_pki::now_unix())
        .unwrap()
        .1
}

fn last_inbound_code(fed: &Federation, ori: &str) -> Option<String> {
    fed.audit(ori, Some("inbound_query"))
        .unwrap()
        .last()
        .and_then(|e| e.entry.reason_code.clone())
}

#[tokio::test]
async fn a_revoked_investigator_is_refused_everywhere_without_a_restart() {
    let fed = fed().await;
    let p = params("8ABC123", &[VENTURA], "240", 3);
    // A query signed before the revocation, to be replayed later by a misbehaving broker.
    let (_, old_signed) = fed.sign_query(SACRAMENTO, &p).unwrap();
    fed.search(SACRAMENTO, &p).await.unwrap();

    let (cert, _) = fed.pki.person(SACRAMENTO, &investigator_of(SACRAMENTO));
    let r = fed.revoke(&cert).unwrap();
    assert!(!r.already && r.issuer.contains(SACRAMENTO), "{r:?}");
    fed.reload_crls().unwrap();

    // TLS: the revoked certificate no longer connects to its own node.
    let err = fed.search(SACRAMENTO, &p).await.unwrap_err();
    assert!(
        format!("{err:?}").to_lowercase().contains("revoked")
            || err.to_string().contains("transport"),
        "{err:?}"
    );
    // Signature: the owner's node refuses the old query with CERT_REVOKED and logs it.
    let reply = fed
        .rogue_forward(VENTURA, fed.endorse(SACRAMENTO, &old_signed).unwrap())
        .await
        .unwrap();
    assert_eq!(
        refusal_of(&fed, &reply).reason,
        RefusalReason::CertRevoked as i32
    );
    assert_eq!(
        last_inbound_code(&fed, VENTURA).as_deref(),
        Some("CERT_REVOKED")
    );
    // The broker refuses it too, and logs it.
    let (c, k) = fed.pki.node(SACRAMENTO);
    let tls = TlsIdentity::load(&c, &k).unwrap();
    let mut b = client::broker_client(
        &Target {
            addr: fed.broker.addr.to_string(),
            server_name: "localhost".into(),
        },
        &fed.trust,
        &tls,
        Duration::from_secs(5),
    )
    .unwrap();
    let (_, fresh) = {
        // Signed with the revoked key after revocation.
        let (s, _) = fed
            .person(SACRAMENTO, &investigator_of(SACRAMENTO))
            .unwrap();
        client::sign_query(
            &s,
            &alpr_pki::TrustStore::new(fed.trust.root().clone(), vec![]),
            &p,
            alpr_pki::now_unix(),
        )
        .unwrap()
    };
    let err = b
        .route_query(fed.endorse(SACRAMENTO, &fresh).unwrap())
        .await
        .unwrap_err();
    assert!(err.message().contains("CERT_REVOKED"), "{err}");
    assert!(
        fed.broker_log()
            .unwrap()
            .iter()
            .any(|l| l.reason_code.as_deref() == Some("CERT_REVOKED"))
    );
    fed.stop().await.unwrap();
}

#[tokio::test]
async fn after_a_crl_reload_the_broker_connects_to_no_node_whose_certificate_is_revoked() {
    const FRESNO: &str = "CA0100500";
    // Clear queries, so that the broker itself forwards to Fresno (a sealing node already
    // refuses to seal to a key published under a revoked certificate).
    let fed = Federation::start_clear(&demo_agencies()).await.unwrap();
    for ori in [VENTURA, FRESNO] {
        fed.ingest_csv(ori, &alpr_federation::synthetic_csv(ori, &["8ABC123"], 5))
            .unwrap();
        fed.agree(Federation::terms(ori, SACRAMENTO, &["240"], 30, 86_400))
            .await
            .unwrap();
    }
    // No query has gone to Fresno yet, so the broker has no connection to it. Fresno's node
    // certificate is revoked and the CRLs are reloaded, without a restart.
    let (fresno_cert, _) = fed.pki.node(FRESNO);
    fed.revoke(&fresno_cert).unwrap();
    fed.reload_crls().unwrap();
    let (_, resp) = fed
        .search(SACRAMENTO, &params("8ABC123", &[VENTURA, FRESNO], "240", 3))
        .await
        .unwrap();
    let status = |ori: &str| {
        let r = resp.results.iter().find(|r| r.ori == ori).unwrap();
        (
            alpr_proto::pb::TargetStatus::try_from(r.status).unwrap(),
            r.detail.clone(),
        )
    };
    assert_eq!(
        status(VENTURA).0,
        alpr_proto::pb::TargetStatus::Answered,
        "{}",
        status(VENTURA).1
    );
    // The broker's handshake refuses Fresno's revoked certificate: nothing is sent to it.
    let (fresno, detail) = status(FRESNO);
    assert_eq!(
        fresno,
        alpr_proto::pb::TargetStatus::Unavailable,
        "{detail}"
    );
    assert!(
        fed.audit(FRESNO, Some("inbound_query")).unwrap().is_empty(),
        "Fresno's node never received the query"
    );
    let log = fed.broker_log().unwrap();
    assert!(
        log.iter().any(|l| l.event == "route_result"
            && l.target.as_deref() == Some(FRESNO)
            && l.decision == "unavailable"),
        "{log:?}"
    );
    fed.stop().await.unwrap();
}

/// Run `alpr-node` with `args`: its exit code.
async fn node_cli(args: Vec<String>) -> std::process::ExitCode {
    use clap::Parser as _;
    let mut argv = vec!["alpr-node".to_owned()];
    argv.extend(args);
    tokio::task::spawn_blocking(move || {
        alpr_node::cli::main(alpr_node::cli::Cli::try_parse_from(argv).unwrap())
    })
    .await
    .unwrap()
}

#[tokio::test]
async fn disabling_a_separated_investigator_revokes_their_certificate_in_the_same_command() {
    let fed = fed().await;
    let p = params("8ABC123", &[VENTURA], "240", 3);
    fed.search(SACRAMENTO, &p).await.unwrap();
    let inv = investigator_of(SACRAMENTO);
    let (inv_cert, _) = fed.pki.person(SACRAMENTO, &inv);
    let admin = alpr_federation::admin_of(SACRAMENTO);
    let (admin_cert, admin_key) = fed.pki.person(SACRAMENTO, &admin);
    let s = |p: &std::path::Path| p.display().to_string();
    let disable = |cert: &std::path::Path| {
        [
            "admin",
            "--node",
            &fed.nodes[SACRAMENTO].addr.to_string(),
            "--root",
            &s(&fed.pki.root_cert()),
            "--cert",
            &s(&admin_cert),
            "--key",
            &s(&admin_key),
            "disable",
            &inv,
            "--note",
            "left the agency on 2026-12-05",
            "--revoke-cert",
            &s(cert),
            "--pki-dir",
            &s(fed.pki.dir()),
        ]
        .map(str::to_owned)
        .to_vec()
    };
    // Someone else's certificate: refused before anything is revoked or disabled.
    assert_eq!(
        node_cli(disable(&admin_cert)).await,
        std::process::ExitCode::FAILURE
    );
    fed.reload_crls().unwrap();
    fed.search(SACRAMENTO, &p)
        .await
        .expect("nothing was revoked or disabled");
    // The investigator's own: revoked at the agency CA and the account disabled, logged.
    assert_eq!(
        node_cli(disable(&inv_cert)).await,
        std::process::ExitCode::SUCCESS
    );
    let changes = fed.audit(SACRAMENTO, Some("account_change")).unwrap();
    let last = &changes.last().unwrap().entry;
    assert_eq!(
        last.requester_user.as_deref(),
        Some(admin.as_str()),
        "{last:?}"
    );
    assert!(
        last.detail.as_deref().unwrap_or("").contains(&inv),
        "{last:?}"
    );
    let crl = alpr_pki::read_crls(&fed.pki.agency_crl(SACRAMENTO)).unwrap();
    assert!(
        !crl.is_empty(),
        "the agency's CRL now lists the certificate"
    );
    // Without a restart, the revoked certificate no longer reaches its own node.
    fed.reload_crls().unwrap();
    let err = fed.search(SACRAMENTO, &p).await.unwrap_err();
    assert!(
        format!("{err:?}").to_lowercase().contains("revoked")
            || err.to_string().contains("transport"),
        "{err:?}"
    );
    fed.stop().await.unwrap();
}

#[tokio::test]
async fn an_agency_ca_cannot_mint_another_agencys_identity() {
    let fed = fed().await;
    // Las Vegas's CA issues an investigator and a node certificate claiming to be Sacramento.
    let nv_ca = Authority::load(
        &fed.pki.agency_ca_cert(LAS_VEGAS),
        &fed.pki.agency_ca_key(LAS_VEGAS),
    )
    .unwrap();
    let fake = AgencyClaims::new(
        SACRAMENTO,
        "Sacramento County Sheriff",
        "US-CA".parse().unwrap(),
        alpr_pki::AgencyKind::Local,
    )
    .unwrap();
    let mint = |role, user: Option<&str>| {
        let spec = LeafSpec {
            role,
            user: user.map(Into::into),
            agency: Some(fake.clone()),
            jurisdiction: None,
            hosts: vec!["localhost".into()],
            days: 5,
        };
        let i = issue::new_leaf(&nv_ca, &spec).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let (c, k) = (dir.path().join("c.pem"), dir.path().join("k.pem"));
        i.write(&c, &k, issue::Overwrite::Refuse).unwrap();
        (
            Signer::load(&c, &k).unwrap(),
            TlsIdentity::load(&c, &k).unwrap(),
        )
    };
    let (inv, _) = mint(Role::Investigator, Some(&investigator_of(SACRAMENTO)));
    let (node, node_tls) = mint(Role::Node, None);
    let now = alpr_pki::now_unix();
    let q = Query {
        query_id: vec![7; 16],
        requester_user: investigator_of(SACRAMENTO),
        requester_ori: SACRAMENTO.into(),
        plate: "8ABC123".into(),
        window_start: now - 86_400,
        window_end: now,
        purpose_code: "240".into(),
        case_number: "SSD-2026-018832".into(),
        reason: "Silver Honda Civic stolen from Fair Oaks driveway on Monday night".into(),
        targets: vec![VENTURA.into()],
        issued_at: now,
        expires_at: now + 300,
        ..Default::default()
    };
    let signed = envelope::seal(&inv, QUERY, &q).unwrap();
    let endorsed = envelope::endorse(&node, SACRAMENTO, signed.encode_to_vec(), now).unwrap();
    // Straight to Ventura's node: refused CLAIM_MISMATCH, logged.
    let reply = fed.rogue_forward(VENTURA, endorsed.clone()).await.unwrap();
    assert_eq!(
        refusal_of(&fed, &reply).reason,
        RefusalReason::ClaimMismatch as i32
    );
    assert_eq!(
        last_inbound_code(&fed, VENTURA).as_deref(),
        Some("CLAIM_MISMATCH")
    );
    // Through the broker with the forged node certificate: refused and logged there.
    let mut b = client::broker_client(
        &Target {
            addr: fed.broker.addr.to_string(),
            server_name: "localhost".into(),
        },
        &fed.trust,
        &node_tls,
        Duration::from_secs(5),
    )
    .unwrap();
    let err = b.route_query(endorsed).await.unwrap_err();
    assert!(err.message().contains("CLAIM_MISMATCH"), "{err}");
    assert!(
        fed.broker_log()
            .unwrap()
            .iter()
            .any(|l| l.reason_code.as_deref() == Some("CLAIM_MISMATCH"))
    );
    fed.stop().await.unwrap();
}

#[tokio::test]
async fn hostile_plates_and_oversized_messages_are_refused() {
    let fed = fed().await;
    let (inv, _) = fed
        .person(SACRAMENTO, &investigator_of(SACRAMENTO))
        .unwrap();
    let now = alpr_pki::now_unix();
    for (i, plate) in [
        "8ABC'; DROP TABLE reads;--",
        "8ABC\u{0}123",
        "8ABC%",
        "8AB\n123",
        "' OR 1=1 --",
    ]
    .into_iter()
    .enumerate()
    {
        let q = Query {
            query_id: vec![i as u8 + 1; 16],
            requester_user: investigator_of(SACRAMENTO),
            requester_ori: SACRAMENTO.into(),
            plate: plate.into(),
            window_start: now - 86_400,
            window_end: now,
            purpose_code: "240".into(),
            case_number: "SSD-2026-018832".into(),
            reason: "Silver Honda Civic stolen from Fair Oaks driveway on Monday night".into(),
            targets: vec![VENTURA.into()],
            issued_at: now,
            expires_at: now + 300,
            ..Default::default()
        };
        let signed = envelope::seal(&inv, QUERY, &q).unwrap();
        // The investigator's own node refuses it before it leaves.
        let err = fed
            .send_signed(SACRAMENTO, &signed)
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("INVALID_INPUT"), "{plate:?}: {err}");
        // A misbehaving broker forwards it anyway: the owner refuses it too.
        let reply = fed
            .rogue_forward(VENTURA, fed.endorse(SACRAMENTO, &signed).unwrap())
            .await
            .unwrap();
        assert_eq!(
            refusal_of(&fed, &reply).reason,
            RefusalReason::InvalidInput as i32,
            "{plate:?}"
        );
        assert_eq!(
            last_inbound_code(&fed, VENTURA).as_deref(),
            Some("INVALID_INPUT")
        );
    }
    // The reads are all still there.
    assert_eq!(
        alpr_node::store::count_reads(&fed.nodes[VENTURA].node.db()).unwrap(),
        205
    );

    // An oversized message (over the 4 MiB application limit, under the transport's
    // 16 MiB) is refused by the node itself with INVALID_INPUT and an audit entry; the
    // node keeps serving.
    let mut q = fed
        .sign_query(SACRAMENTO, &params("8ABC123", &[VENTURA], "240", 3))
        .unwrap()
        .0;
    q.reason = "x".repeat(5 << 20);
    let big = envelope::seal(&inv, QUERY, &q).unwrap();
    let reply = fed
        .rogue_forward(VENTURA, fed.endorse(SACRAMENTO, &big).unwrap())
        .await
        .unwrap();
    let refusal = refusal_of(&fed, &reply);
    assert_eq!(refusal.reason, RefusalReason::InvalidInput as i32);
    assert!(refusal.detail.contains("4 MiB"), "{}", refusal.detail);
    assert_eq!(
        refusal.query_id, q.query_id,
        "the refusal is bound to the query"
    );
    assert_eq!(
        last_inbound_code(&fed, VENTURA).as_deref(),
        Some("INVALID_INPUT")
    );
    // Sent to the own node, it is refused there and logged as an outbound refusal.
    let err = fed.send_signed(SACRAMENTO, &big).await.unwrap_err();
    assert!(err.to_string().contains("4 MiB"), "{err}");
    let out = fed.audit(SACRAMENTO, Some("outbound_query")).unwrap();
    assert_eq!(
        out.last().unwrap().entry.reason_code.as_deref(),
        Some("INVALID_INPUT")
    );
    let (_, ok) = fed
        .search(SACRAMENTO, &params("8ABC123", &[VENTURA], "240", 3))
        .await
        .unwrap();
    assert_eq!(ok.results[0].reason, 0);
    fed.stop().await.unwrap();
}

#[tokio::test]
async fn clock_skew_and_ineligible_proxies_are_refused() {
    let fed = fed().await;
    // Issued an hour in the future (beyond the clock-skew tolerance).
    let (inv, _) = fed
        .person(SACRAMENTO, &investigator_of(SACRAMENTO))
        .unwrap();
    let later = alpr_pki::now_unix() + 3600;
    let (_, skewed) = client::sign_query(
        &inv,
        &fed.trust,
        &params("8ABC123", &[VENTURA], "240", 3),
        later,
    )
    .unwrap();
    let err = fed
        .send_signed(SACRAMENTO, &skewed)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("QUERY_EXPIRED") && err.contains("clock-skew"),
        "{err}"
    );
    let reply = fed
        .rogue_forward(VENTURA, fed.endorse(SACRAMENTO, &skewed).unwrap())
        .await
        .unwrap();
    assert_eq!(
        refusal_of(&fed, &reply).reason,
        RefusalReason::QueryExpired as i32
    );
    assert_eq!(
        last_inbound_code(&fed, VENTURA).as_deref(),
        Some("QUERY_EXPIRED")
    );

    // On behalf of an agency the owner never agreed to share with.
    let mut p = params("8ABC123", &[VENTURA], "240", 3);
    p.on_behalf_of = LAS_VEGAS.into();
    let (_, resp) = fed.search(SACRAMENTO, &p).await.unwrap();
    let r = &resp.results[0];
    assert_eq!(
        (r.reason, r.decided_by.as_str()),
        (RefusalReason::NoAgreement as i32, "broker")
    );
    assert!(r.detail.contains("on-behalf-of"), "{}", r.detail);
    let (_, signed) = fed.sign_query(SACRAMENTO, &p).unwrap();
    let reply = fed
        .rogue_forward(VENTURA, fed.endorse(SACRAMENTO, &signed).unwrap())
        .await
        .unwrap();
    assert_eq!(
        refusal_of(&fed, &reply).reason,
        RefusalReason::NoAgreement as i32
    );
    fed.stop().await.unwrap();
}

#[tokio::test]
async fn a_slow_client_cannot_stall_the_node() {
    use tokio::io::AsyncReadExt;
    let fed = fed().await;
    // A client opens TCP connections and never starts the TLS handshake.
    let mut idle = Vec::new();
    for _ in 0..20 {
        idle.push(
            tokio::net::TcpStream::connect(fed.nodes[VENTURA].addr)
                .await
                .unwrap(),
        );
    }
    // Meanwhile real queries are answered at once.
    let (_, r) = fed
        .search(SACRAMENTO, &params("8ABC123", &[VENTURA], "240", 3))
        .await
        .unwrap();
    assert_eq!(r.results[0].reason, 0);
    // And the idle connections are closed after the handshake deadline.
    let mut buf = [0u8; 1];
    let n = tokio::time::timeout(
        alpr_runtime::tls::HANDSHAKE_TIMEOUT + Duration::from_secs(5),
        idle[0].read(&mut buf),
    )
    .await
    .expect("the node closes a connection that never handshakes")
    .unwrap_or(0);
    assert_eq!(n, 0, "connection closed");
    fed.stop().await.unwrap();
}
