//! Hot lists shared only under agreements (issue 16, item 3). A list is shared as a query
//! of shape "hotlist": the broker and the receiving node each admit it only under an
//! agreement in force covering the "hotlists" data type and the purpose, and the receiving
//! node checks the list's texts against its prohibited terms. A kept list's hits on the
//! receiving node's cameras are logged there with the owner's identity and purpose, and
//! reported to the owner sealed and signed, where each is an alert; a revoked agreement
//! stops the watching, and no other node can report hits in the provider's name.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use alpr_federation::{Federation, admin_of, demo_agencies, open_policy};
use alpr_node::client::{SearchParams, hotlist_from_csv};
use alpr_proto::pb::{HitReport, TargetStatus};

const VENTURA: &str = "CA0560100";
const SACRAMENTO: &str = "CA0340000";
const FRESNO: &str = "CA0100500";

/// The list Sacramento shares: a stolen car (California plates only) and a robbery
/// suspect's car known by 6 of its 7 characters, of any state.
const LIST: &str = "plate,state,note\n8ABC123,CA,stolen 2026-11-29 from Folsom Blvd\n7XY?999,,robbery 2026-11-30: dark sedan\n";

fn share(expires_in: i64, list: alpr_proto::pb::HotlistShare, targets: &[&str]) -> SearchParams {
    SearchParams {
        window_end: alpr_pki::now_unix() + expires_in,
        purpose: "240".into(),
        case_number: "SAC-26-004417".into(),
        reason: "stolen Honda Civic taken from Folsom Blvd lot, owner reported overnight".into(),
        targets: targets.iter().map(|t| t.to_string()).collect(),
        ttl_secs: 300,
        shape: alpr_proto::hotlist::SHAPE_HOTLIST.into(),
        hotlist: Some(list),
        ..Default::default()
    }
}

fn list() -> alpr_proto::pb::HotlistShare {
    hotlist_from_csv(
        "stolen and robbery",
        "Sacramento PD",
        "stolen vehicles",
        LIST,
    )
    .unwrap()
}

/// Reads of one of Ventura's cameras, each captured `ago` seconds before now.
fn reads_csv(rows: &[(&str, &str, i64)]) -> String {
    let now = alpr_pki::now_unix();
    let mut out = String::from("plate,captured_at,camera_id,latitude,longitude,plate_state\n");
    for (plate, state, ago) in rows {
        out.push_str(&format!(
            "{plate},{},CA056-CAM-07,34.27000,-119.22000,{state}\n",
            alpr_node::cli::fmt_time(now - ago)
        ));
    }
    out
}

async fn federation(hotlists: bool) -> (Federation, String) {
    let fed = Federation::start(None, &demo_agencies()[..3], |_| open_policy())
        .await
        .unwrap();
    let mut terms = Federation::terms(VENTURA, SACRAMENTO, &["240"], 30, 86_400);
    if hotlists {
        terms.data_types.push("hotlists".into());
    }
    let id = fed.agree(terms).await.unwrap();
    (fed, id)
}

/// Wait (up to 30 s) until `ori`'s audit log has `n` entries of `event`.
async fn entries(
    fed: &Federation,
    ori: &str,
    event: &str,
    n: usize,
) -> Vec<alpr_node::audit::StoredEntry> {
    for _ in 0..300 {
        let e = fed.audit(ori, Some(event)).unwrap();
        if e.len() >= n {
            return e;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    fed.audit(ori, Some(event)).unwrap()
}

#[tokio::test]
async fn a_shared_list_is_kept_under_its_agreement_and_its_hits_reach_the_owner_sealed() {
    let (fed, agreement) = federation(true).await;
    let (q, resp) = fed
        .search(SACRAMENTO, &share(7 * 86_400, list(), &[VENTURA]))
        .await
        .unwrap();
    let r = &resp.results[0];
    assert_eq!(r.status, TargetStatus::Answered as i32, "{}", r.detail);
    let kept = fed.audit(VENTURA, Some("inbound_query")).unwrap();
    let kept = &kept.last().unwrap().entry;
    assert_eq!(kept.decision, "answered");
    assert_eq!(kept.agreement_id.as_deref(), Some(agreement.as_str()));
    let detail = kept.detail.as_deref().unwrap();
    assert!(
        detail.contains("hot list \"stolen and robbery\"") && detail.contains("2 entries"),
        "{detail}"
    );

    // Ventura's cameras, after the list was shared: the stolen car, the partial plate
    // (another state), the same characters on a Nevada plate (another vehicle); and the
    // stolen car seen an hour before the list was shared.
    tokio::time::sleep(Duration::from_secs(2)).await;
    fed.ingest_csv(
        VENTURA,
        &reads_csv(&[
            ("8ABC123", "CA", 0),
            ("7XYZ999", "NV", 0),
            ("8ABC123", "NV", 0),
            ("8ABC123", "CA", 3600),
        ]),
    )
    .unwrap();
    let hits = fed.audit(VENTURA, Some("hotlist_hit")).unwrap();
    assert_eq!(hits.len(), 2, "two reads match the list in its window");
    for h in &hits {
        let e = &h.entry;
        assert_eq!(e.decision, "alert");
        assert_eq!(e.requester_ori.as_deref(), Some(SACRAMENTO));
        assert_eq!(e.purpose.as_deref(), Some("240"));
        assert_eq!(e.case_number.as_deref(), Some("SAC-26-004417"));
        assert_eq!(
            e.query_id.as_deref(),
            Some(hex::encode(&q.query_id).as_str())
        );
        assert!(e.detail.as_deref().unwrap().contains("shared by CA0340000"));
    }

    // The owner's node: each hit an alert, from Ventura, verified as an answer to the share.
    let got = entries(&fed, SACRAMENTO, "hotlist_hit", 2).await;
    assert_eq!(got.len(), 2, "both hits reported to the owner");
    let mut plates: Vec<_> = got.iter().map(|h| h.entry.plate.clone().unwrap()).collect();
    plates.sort();
    assert_eq!(plates, vec!["7XYZ999", "8ABC123"]);
    for h in &got {
        assert_eq!(h.entry.decision, "alert");
        assert_eq!(h.entry.target.as_deref(), Some(VENTURA));
        assert!(h.entry.decided_by.as_deref().unwrap().contains("broker"));
    }
    let sent = entries(&fed, VENTURA, "hotlist_report", 1).await;
    assert!(sent.iter().all(|e| e.entry.decision == "ok"));
    assert_eq!(sent.iter().map(|e| e.entry.count.unwrap()).sum::<u64>(), 2);
    // The broker relayed it (and could read none of it).
    let log = fed.broker_log().unwrap();
    assert!(
        log.iter()
            .any(|e| e.event.as_str() == "hit_report" && e.decision.as_str() == "forwarded")
    );
    assert!(
        !log.iter()
            .any(|e| e.detail.as_deref().unwrap_or("").contains("8ABC123"))
    );

    // Ventura's status shows the list it keeps for Sacramento.
    let st = fed.nodes[VENTURA].node.status().unwrap();
    assert_eq!(st.shared_lists.len(), 1);
    assert_eq!(st.shared_lists[0].0, SACRAMENTO);
    assert!(
        st.to_string()
            .contains("hot lists shared with this agency: 1"),
        "{st}"
    );

    // Both transparency reports count them.
    let report = |ori: &str| {
        let entries = fed.audit(ori, None).unwrap();
        alpr_node::reports::transparency(&fed.nodes[ori].node, &entries, alpr_pki::now_unix())
            .unwrap()
    };
    let v = report(VENTURA);
    assert!(
        v.contains("Hot-list hits on our cameras for other agencies' shared lists: 2"),
        "{v}"
    );
    assert!(
        v.contains("shares with CA0340000: reads and hotlists"),
        "{v}"
    );
    let s = report(SACRAMENTO);
    assert!(
        s.contains("Hits of our shared hot lists reported by other agencies: 2"),
        "{s}"
    );

    // Revoked: Ventura stops watching at once.
    let (mut adm, s) = fed
        .broker_client_as(fed.pki.person(VENTURA, &admin_of(VENTURA)))
        .unwrap();
    alpr_broker::regulator::act(
        &mut adm,
        &s,
        &agreement,
        "revoke",
        "hot-list sharing ended by Ventura",
    )
    .await
    .unwrap();
    fed.sync(&[VENTURA, SACRAMENTO]).await.unwrap();
    fed.ingest_csv(VENTURA, &reads_csv(&[("8ABC123", "CA", 1)]))
        .unwrap();
    assert_eq!(
        fed.audit(VENTURA, Some("hotlist_hit")).unwrap().len(),
        2,
        "no hit after revocation"
    );
    fed.stop().await.unwrap();
}

#[tokio::test]
async fn shares_are_refused_without_a_hot_list_agreement_with_prohibited_topics_or_as_whitelists() {
    let (fed, _) = federation(false).await;
    // The agreement covers reads only: the broker refuses, as Ventura would.
    let (_, resp) = fed
        .search(SACRAMENTO, &share(86_400, list(), &[VENTURA]))
        .await
        .unwrap();
    let r = &resp.results[0];
    assert_eq!(r.status, TargetStatus::Refused as i32);
    assert!(r.detail.contains("does not cover hotlists"), "{}", r.detail);
    let outbound = fed.audit(SACRAMENTO, Some("outbound_result")).unwrap();
    assert_eq!(
        outbound.last().unwrap().entry.reason_code.as_deref(),
        Some("NO_AGREEMENT")
    );

    // With hot lists covered, a topic California prohibits is refused by Ventura itself
    // (the broker cannot read the sealed list), logged there.
    let mut terms = Federation::terms(VENTURA, SACRAMENTO, &["240"], 30, 86_400);
    terms.data_types.push("hotlists".into());
    fed.agree(terms).await.unwrap();
    let bad = hotlist_from_csv("wanted", "Sacramento PD", "immigration enforcement", LIST).unwrap();
    let (_, resp) = fed
        .search(SACRAMENTO, &share(86_400, bad, &[VENTURA]))
        .await
        .unwrap();
    let r = &resp.results[0];
    assert_eq!(r.status, TargetStatus::Refused as i32, "{}", r.detail);
    assert_eq!(r.decided_by, VENTURA);
    let inbound = fed.audit(VENTURA, Some("inbound_query")).unwrap();
    assert_eq!(
        inbound.last().unwrap().entry.reason_code.as_deref(),
        Some("PROHIBITED_TERM")
    );
    assert!(fed.nodes[VENTURA].node.status().is_ok());

    // A whitelist (plates to ignore) is never shared: refused by the owner's own node.
    let mut white = list();
    white.kind = "exempt".into();
    let e = fed
        .search(SACRAMENTO, &share(86_400, white, &[VENTURA]))
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("never shared"), "{e}");
    // Longer than 30 days: refused.
    let e = fed
        .search(SACRAMENTO, &share(31 * 86_400, list(), &[VENTURA]))
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("at most 30 days"), "{e}");
    // Bad list files: one line named.
    let e = hotlist_from_csv("x", "y", "z", "8ABC123,CA,ok\n8-A B,QQ,bad\n")
        .unwrap_err()
        .to_string();
    assert!(e.contains("line 2"), "{e}");
    fed.stop().await.unwrap();
}

/// A report in Ventura's name of a hit of a list Sacramento never shared (nothing sealed).
fn unsealed_report() -> HitReport {
    HitReport {
        share_id: vec![7; 16],
        provider_ori: VENTURA.into(),
        owner_ori: SACRAMENTO.into(),
        sealed: None,
        reported_at: alpr_pki::now_unix(),
    }
}

#[tokio::test]
async fn only_the_providers_node_can_report_its_hits() {
    let (fed, _) = federation(true).await;
    // Fresno's node claims to report a hit seen by Ventura's cameras.
    let (c, k) = fed.pki.node(FRESNO);
    let (mut broker, _) = fed.broker_client_as((c, k)).unwrap();
    let receipt = broker
        .report_hit(unsealed_report())
        .await
        .unwrap()
        .into_inner();
    assert!(!receipt.accepted);
    assert_eq!(
        receipt.reason,
        alpr_proto::RefusalReason::CertInvalid as i32
    );
    assert_eq!(receipt.decided_by, "broker");
    // Ventura's own node, for a list Sacramento never shared: the owner refuses and logs it.
    let (c, k) = fed.pki.node(VENTURA);
    let (mut broker, _) = fed.broker_client_as((c, k)).unwrap();
    let receipt = broker
        .report_hit(unsealed_report())
        .await
        .unwrap()
        .into_inner();
    assert!(!receipt.accepted);
    assert_eq!(receipt.decided_by, SACRAMENTO);
    assert_eq!(
        receipt.reason,
        alpr_proto::RefusalReason::NoAgreement as i32,
        "{}",
        receipt.detail
    );
    let refused = fed.audit(SACRAMENTO, Some("hotlist_report")).unwrap();
    assert_eq!(refused.last().unwrap().entry.decision, "refused");
    let log = fed.broker_log().unwrap();
    assert!(
        log.iter().any(|e| e.event.as_str() == "hit_report"
            && e.reason_code.as_deref() == Some("CERT_INVALID"))
    );
    fed.stop().await.unwrap();
}

#[tokio::test]
async fn hits_stored_by_a_host_command_are_sent_by_the_daemon_once() {
    let (fed, _) = federation(true).await;
    let (_, resp) = fed
        .search(SACRAMENTO, &share(86_400, list(), &[VENTURA]))
        .await
        .unwrap();
    assert_eq!(resp.results[0].status, TargetStatus::Answered as i32);
    tokio::time::sleep(Duration::from_secs(1)).await;
    // `alpr-node ingest` opens the node's files in a process of its own.
    let host = alpr_node::Node::open(&fed.node_configs[VENTURA]).unwrap();
    host.store_reads(&[alpr_proto::pb::Read {
        plate: "8ABC123".into(),
        captured_at: alpr_pki::now_unix(),
        camera_id: "CA056-CAM-07".into(),
        latitude: 34.27,
        longitude: -119.22,
        plate_state: "CA".into(),
    }])
    .unwrap();
    let got = entries(&fed, SACRAMENTO, "hotlist_hit", 1).await;
    assert_eq!(got.len(), 1);
    // Settled: nothing waits, and nothing is sent twice.
    tokio::time::sleep(Duration::from_secs(7)).await;
    assert_eq!(fed.audit(SACRAMENTO, Some("hotlist_hit")).unwrap().len(), 1);
    assert_eq!(fed.nodes[VENTURA].node.status().unwrap().hits_waiting, 0);
    assert_eq!(host.status().unwrap().hits_waiting, 0);
    fed.stop().await.unwrap();
}

/// Run `alpr-node` with `args`.
async fn cli(args: Vec<String>) -> std::process::ExitCode {
    use clap::Parser as _;
    let mut argv = vec!["alpr-node".to_owned()];
    argv.extend(args);
    tokio::task::spawn_blocking(move || {
        alpr_node::cli::main(alpr_node::cli::Cli::try_parse_from(argv).unwrap())
    })
    .await
    .unwrap()
}

/// The detail of `ori`'s newest `inbound_query` entry.
fn last_inbound(fed: &Federation, ori: &str) -> String {
    fed.audit(ori, Some("inbound_query"))
        .unwrap()
        .last()
        .unwrap()
        .entry
        .detail
        .clone()
        .unwrap_or_default()
}

#[tokio::test]
async fn an_owner_replaces_or_withdraws_a_shared_list_and_the_target_stops_watching_for_it() {
    let (fed, _) = federation(true).await;
    let mut fresno = Federation::terms(VENTURA, FRESNO, &["240"], 30, 86_400);
    fresno.data_types.push("hotlists".into());
    fed.agree(fresno).await.unwrap();
    let hits = |fed: &Federation| fed.audit(VENTURA, Some("hotlist_hit")).unwrap().len();
    let (_, resp) = fed
        .search(SACRAMENTO, &share(7 * 86_400, list(), &[VENTURA]))
        .await
        .unwrap();
    assert_eq!(resp.results[0].status, TargetStatus::Answered as i32);
    tokio::time::sleep(Duration::from_secs(2)).await;
    fed.ingest_csv(VENTURA, &reads_csv(&[("8ABC123", "CA", 0)]))
        .unwrap();
    assert_eq!(hits(&fed), 1);

    // Shared again under its name with another plate: the new list replaces the old.
    let amended = hotlist_from_csv(
        "stolen and robbery",
        "Sacramento PD",
        "stolen vehicles",
        "plate,state,note\n5XYZ987,CA,stolen 2026-12-01 from J Street\n",
    )
    .unwrap();
    let (_, resp) = fed
        .search(SACRAMENTO, &share(7 * 86_400, amended, &[VENTURA]))
        .await
        .unwrap();
    assert_eq!(resp.results[0].status, TargetStatus::Answered as i32);
    let detail = last_inbound(&fed, VENTURA);
    assert!(
        detail.contains("replacing the 1 list(s) of that name CA0340000 shared before"),
        "{detail}"
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    fed.ingest_csv(
        VENTURA,
        &reads_csv(&[("8ABC123", "CA", 0), ("5XYZ987", "CA", 0)]),
    )
    .unwrap();
    assert_eq!(hits(&fed), 2, "only the amended list's plate hits");
    assert_eq!(
        fed.nodes[VENTURA].node.status().unwrap().shared_lists.len(),
        1
    );

    // Another agency's withdrawal under the same name stops nothing of Sacramento's.
    let mut w = share(
        3600,
        alpr_node::client::hotlist_withdrawal("stolen and robbery"),
        &[VENTURA],
    );
    w.reason = "no longer needed: the car of this case was recovered yesterday".into();
    w.case_number = "FRE-26-000123".into();
    let (_, resp) = fed.search(FRESNO, &w).await.unwrap();
    assert_eq!(
        resp.results[0].status,
        TargetStatus::Refused as i32,
        "{}",
        resp.results[0].detail
    );
    assert!(
        resp.results[0]
            .detail
            .contains("keeps no hot list \"stolen and robbery\" of CA0100500"),
        "{}",
        resp.results[0].detail
    );
    assert_eq!(
        fed.nodes[VENTURA].node.status().unwrap().shared_lists.len(),
        1
    );

    // Ventura's switches hold for kept lists as for queries: refusing Sacramento stops
    // watching for its list until it is allowed again.
    let refuse = |on: bool| {
        alpr_node::client::switch(
            alpr_node::settings::Switch::RefuseRequester,
            on,
            SACRAMENTO,
            "paused while the audit of its searches runs",
        )
    };
    fed.admin(VENTURA, &admin_of(VENTURA), refuse(true))
        .await
        .unwrap();
    fed.ingest_csv(VENTURA, &reads_csv(&[("5XYZ987", "CA", 0)]))
        .unwrap();
    assert_eq!(hits(&fed), 2, "no hit while Sacramento is refused");
    fed.admin(VENTURA, &admin_of(VENTURA), refuse(false))
        .await
        .unwrap();
    fed.ingest_csv(VENTURA, &reads_csv(&[("5XYZ987", "CA", 0)]))
        .unwrap();
    assert_eq!(hits(&fed), 3, "watching again once allowed");

    // A withdrawal that carries plates is not one.
    let mut bad = alpr_node::client::hotlist_withdrawal("stolen and robbery");
    bad.entries = list().entries;
    let refused = fed
        .search(SACRAMENTO, &share(3600, bad, &[VENTURA]))
        .await
        .map(|(_, r)| (r.results[0].status, r.results[0].detail.clone()));
    match refused {
        Ok((status, detail)) => {
            assert_ne!(status, TargetStatus::Answered as i32);
            assert!(detail.contains("holds no entries"), "{detail}");
        }
        Err(e) => assert!(e.to_string().contains("holds no entries"), "{e}"),
    }

    // Sacramento's investigator withdraws it with the CLI: Ventura stops watching at once.
    let (cert, key) = fed
        .pki
        .person(SACRAMENTO, &alpr_federation::investigator_of(SACRAMENTO));
    let s = |p: &std::path::Path| p.display().to_string();
    let code = cli([
        "withdraw-share",
        "--node",
        &fed.nodes[SACRAMENTO].addr.to_string(),
        "--root",
        &s(&fed.pki.root_cert()),
        "--cert",
        &s(&cert),
        "--key",
        &s(&key),
        "--name",
        "stolen and robbery",
        "--purpose",
        "240",
        "--case",
        "SAC-26-004417",
        "--reason",
        "the Honda Civic of this case was recovered on J Street this morning",
        "--target",
        VENTURA,
    ]
    .map(str::to_owned)
    .to_vec())
    .await;
    assert_eq!(code, std::process::ExitCode::SUCCESS);
    let detail = last_inbound(&fed, VENTURA);
    assert!(
        detail.contains("withdrawn: 1 kept list(s) of that name stopped now"),
        "{detail}"
    );
    assert!(
        fed.nodes[VENTURA]
            .node
            .status()
            .unwrap()
            .shared_lists
            .is_empty()
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    fed.ingest_csv(VENTURA, &reads_csv(&[("5XYZ987", "CA", 0)]))
        .unwrap();
    assert_eq!(hits(&fed), 3, "no hit after the withdrawal");
    // A withdrawal some target does not confirm is a failure the investigator sees.
    let code = cli([
        "withdraw-share",
        "--node",
        &fed.nodes[SACRAMENTO].addr.to_string(),
        "--root",
        &s(&fed.pki.root_cert()),
        "--cert",
        &s(&cert),
        "--key",
        &s(&key),
        "--name",
        "stolen and robbery",
        "--purpose",
        "240",
        "--case",
        "SAC-26-004417",
        "--reason",
        "the Honda Civic of this case was recovered on J Street this morning",
        "--target",
        VENTURA,
        "--target",
        FRESNO,
    ]
    .map(str::to_owned)
    .to_vec())
    .await;
    assert_ne!(
        code,
        std::process::ExitCode::SUCCESS,
        "Fresno holds no agreement with Sacramento: not confirmed"
    );
    fed.stop().await.unwrap();
}
