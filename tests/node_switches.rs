//! The node's own say: closed until its admin opens it, which needs the complete SB 34
//! usage and privacy policy; refuse-all and refuse-one-requester switches; a per-requester
//! rate limit. Every switch change and every refusal is logged at the node.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use alpr_federation::{Federation, admin_of, demo_agencies, open_policy, params};
use alpr_node::client::switch;
use alpr_proto::RefusalReason;
use alpr_proto::pb::TargetStatus;

const VENTURA: &str = "CA0560100";
const SACRAMENTO: &str = "CA0340000";
const FRESNO: &str = "CA0100500";

fn last_inbound(fed: &Federation, ori: &str) -> (String, Option<String>) {
    let rows = fed.audit(ori, Some("inbound_query")).unwrap();
    let e = &rows.last().unwrap().entry;
    (e.decision.to_string(), e.reason_code.clone())
}

#[tokio::test]
async fn refuse_all_and_refuse_one_requester() {
    let fed = Federation::start(None, &demo_agencies()[..3], |_| open_policy())
        .await
        .unwrap();
    fed.agree(Federation::terms(VENTURA, SACRAMENTO, &["240"], 30, 86_400))
        .await
        .unwrap();
    fed.agree(Federation::terms(VENTURA, FRESNO, &["240"], 30, 86_400))
        .await
        .unwrap();
    let p = |_: &str| params("8ABC123", &[VENTURA], "240", 3);

    fed.admin(
        VENTURA,
        &admin_of(VENTURA),
        switch(
            alpr_node::settings::Switch::RefuseRequester,
            true,
            SACRAMENTO,
            "pending audit",
        ),
    )
    .await
    .unwrap();
    let (_, r) = fed.search(SACRAMENTO, &p(SACRAMENTO)).await.unwrap();
    assert_eq!(
        (r.results[0].reason, r.results[0].decided_by.as_str()),
        (RefusalReason::NodeRefusing as i32, VENTURA)
    );
    assert_eq!(
        last_inbound(&fed, VENTURA),
        ("refused".into(), Some("NODE_REFUSING".into()))
    );
    let (_, r) = fed.search(FRESNO, &p(FRESNO)).await.unwrap();
    assert_eq!(
        r.results[0].status,
        TargetStatus::Answered as i32,
        "other requesters unaffected"
    );

    fed.admin(
        VENTURA,
        &admin_of(VENTURA),
        switch(alpr_node::settings::Switch::RefuseAll, true, "", ""),
    )
    .await
    .unwrap();
    let (_, r) = fed.search(FRESNO, &p(FRESNO)).await.unwrap();
    assert_eq!(r.results[0].reason, RefusalReason::NodeRefusing as i32);
    fed.admin(
        VENTURA,
        &admin_of(VENTURA),
        switch(alpr_node::settings::Switch::RefuseAll, false, "", ""),
    )
    .await
    .unwrap();
    let (_, r) = fed.search(FRESNO, &p(FRESNO)).await.unwrap();
    assert_eq!(r.results[0].status, TargetStatus::Answered as i32);

    let changes = fed.audit(VENTURA, Some("config_change")).unwrap();
    let details: Vec<String> = changes
        .iter()
        .filter_map(|e| e.entry.detail.clone())
        .collect();
    assert!(
        details.iter().any(|d| d.contains("refusing CA0340000")),
        "{details:?}"
    );
    assert!(
        details.iter().any(|d| d.contains("refuse-all ON")),
        "{details:?}"
    );
    fed.stop().await.unwrap();
}

#[tokio::test]
async fn sharing_cannot_be_turned_on_without_the_usage_and_privacy_policy() {
    let mut fed =
        Federation::start_with(None, &demo_agencies()[..2], |_| open_policy(), &[VENTURA])
            .await
            .unwrap();
    // Restart Ventura's node with an incomplete usage and privacy policy.
    let mut cfg = fed.node_configs[VENTURA].clone();
    fed.nodes.remove(VENTURA).unwrap().stop().await.unwrap();
    cfg.usage_policy.custodian.clear();
    cfg.usage_policy.retention.clear();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    fed.nodes.insert(
        VENTURA.into(),
        alpr_node::start_on(&cfg, listener).await.unwrap(),
    );
    let err = fed
        .admin(
            VENTURA,
            &admin_of(VENTURA),
            switch(alpr_node::settings::Switch::Sharing, true, "", ""),
        )
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("custodian") && err.contains("retention"),
        "{err}"
    );
    // Only an admin may open it; the supervisor is refused even with a complete policy.
    let err = fed
        .admin(
            VENTURA,
            &alpr_federation::supervisor_of(VENTURA),
            switch(alpr_node::settings::Switch::Sharing, true, "", ""),
        )
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("only an admin"), "{err}");
    let changes = fed.audit(VENTURA, Some("config_change")).unwrap();
    assert!(changes.iter().all(|e| e.entry.decision == "refused"));
    assert_eq!(changes.len(), 2);
    fed.stop().await.unwrap();
}

#[tokio::test]
async fn per_requester_rate_limit() {
    let fed = Federation::start(None, &demo_agencies()[..2], |ori| {
        let mut p = open_policy();
        if ori == VENTURA {
            p.max_queries_per_minute = 2;
        }
        p
    })
    .await
    .unwrap();
    fed.agree(Federation::terms(VENTURA, SACRAMENTO, &["240"], 30, 86_400))
        .await
        .unwrap();
    let mut reasons = Vec::new();
    for _ in 0..4 {
        let (_, r) = fed
            .search(SACRAMENTO, &params("8ABC123", &[VENTURA], "240", 3))
            .await
            .unwrap();
        reasons.push(r.results[0].reason);
    }
    // At most two answered within a minute (a minute boundary may reset the window once).
    let limited = reasons
        .iter()
        .filter(|r| **r == RefusalReason::RateLimited as i32)
        .count();
    assert!(limited >= 1, "{reasons:?}");
    let rows = fed.audit(VENTURA, Some("inbound_query")).unwrap();
    assert!(
        rows.iter()
            .any(|e| e.entry.reason_code.as_deref() == Some("RATE_LIMITED"))
    );
    fed.stop().await.unwrap();
}
