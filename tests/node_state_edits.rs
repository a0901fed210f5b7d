//! State that cannot be edited around the log: switches, refused requesters, accounts and
//! agreement states are bound to the audit log by a digest in every entry that changes
//! them. An edit made with SQL behind the node's back — while it runs or while it is down —
//! is detected, alerted, and the node answers nothing until an admin acknowledges through
//! the logged admin path.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use alpr_federation::{Federation, admin_of, demo_agencies, open_policy, params, synthetic_csv};
use alpr_node::client;
use alpr_proto::RefusalReason;
use alpr_proto::envelope::{self, ANSWER, REFUSAL};
use alpr_proto::pb::Refusal;

const VENTURA: &str = "CA0560100";
const SACRAMENTO: &str = "CA0340000";

async fn federation() -> Federation {
    let fed = Federation::start(None, &demo_agencies()[..3], |_| open_policy())
        .await
        .unwrap();
    fed.ingest_csv(VENTURA, &synthetic_csv(VENTURA, &["8ABC123"], 10))
        .unwrap();
    fed.agree(Federation::terms(VENTURA, SACRAMENTO, &["240"], 30, 86_400))
        .await
        .unwrap();
    fed
}

/// Forward a fresh query from Sacramento to Ventura as the broker would.
async fn ask(fed: &Federation) -> (String, Option<RefusalReason>) {
    let (_, signed) = fed
        .sign_query(SACRAMENTO, &params("8ABC123", &[VENTURA], "240", 3))
        .unwrap();
    let reply = fed
        .rogue_forward(VENTURA, fed.endorse(SACRAMENTO, &signed).unwrap())
        .await
        .unwrap();
    let reason = (reply.payload_type == REFUSAL).then(|| {
        let (_, r): (_, Refusal) =
            envelope::open_as(&fed.trust, &reply, REFUSAL, alpr_pki::now_unix()).unwrap();
        RefusalReason::try_from(r.reason).unwrap()
    });
    (reply.payload_type, reason)
}

fn sql(fed: &Federation, statement: &str) {
    let db = fed.node_configs[VENTURA].open_db().unwrap();
    db.connection().execute_batch(statement).unwrap();
}

fn edited_alerts(fed: &Federation) -> usize {
    fed.audit(VENTURA, Some("alert"))
        .unwrap()
        .iter()
        .filter(|e| e.entry.decision == "state_edited")
        .count()
}

#[tokio::test]
async fn a_switch_changed_with_sql_stops_sharing_until_an_admin_acknowledges() {
    let fed = federation().await;
    assert_eq!(ask(&fed).await.0, ANSWER);
    let node = fed.nodes[VENTURA].node.clone();
    assert!(node.check_state().unwrap(), "logged changes only: intact");

    // An insider changes the refused-requester list behind the node's back.
    sql(
        &fed,
        "INSERT INTO refused_requesters (ori, since, by, note) VALUES ('NV0020100', 0, 'sqlite3', 'edited by hand')",
    );
    assert!(!node.check_state().unwrap(), "the edit is found");
    assert!(!node.check_state().unwrap());
    assert_eq!(edited_alerts(&fed), 1, "alerted once per edit");
    let (kind, reason) = ask(&fed).await;
    assert_eq!(kind, REFUSAL);
    assert_eq!(reason, Some(RefusalReason::NodeRefusing));

    // Only an admin acknowledges, with a note; then sharing resumes and the log records
    // the accepted state.
    let supervisor = fed
        .admin(
            VENTURA,
            &alpr_federation::supervisor_of(VENTURA),
            client::acknowledge_state("checked the refused list by hand"),
        )
        .await
        .unwrap_err();
    assert!(
        supervisor.to_string().contains("only an admin"),
        "{supervisor}"
    );
    let said = fed
        .admin(
            VENTURA,
            &admin_of(VENTURA),
            client::acknowledge_state("checked: NV0020100 is refused on purpose"),
        )
        .await
        .unwrap();
    assert!(said.contains("acknowledged"), "{said}");
    assert!(node.check_state().unwrap());
    assert_eq!(ask(&fed).await.0, ANSWER);
    let acks = fed.audit(VENTURA, Some("config_change")).unwrap();
    let last = &acks.last().unwrap().entry;
    assert!(last.state_digest.is_some());
    assert!(last.detail.as_deref().unwrap().contains("acknowledged"));
    fed.stop().await.unwrap();
}

#[tokio::test]
async fn an_account_or_agreement_edited_while_the_node_was_down_is_found_at_start() {
    let fed = federation().await;
    // A backdoor account, approved and trained, added with SQL.
    sql(
        &fed,
        "INSERT INTO accounts (user, role, added_by, added_at, approved_by, approved_at, trained_at) VALUES ('ghost', 'investigator', 'nobody', 0, 'nobody', 1, 1)",
    );
    // Opening the node (as at a restart) finds it before serving.
    let restarted = alpr_node::Node::open(&fed.node_configs[VENTURA]).unwrap();
    assert!(restarted.state_edited());
    assert_eq!(edited_alerts(&fed), 1);

    // Changing an agreement's state with SQL is found the same way.
    let fed2 = federation().await;
    let id = fed2.nodes[VENTURA]
        .node
        .agreements()
        .first()
        .unwrap()
        .id
        .clone();
    let db = fed2.node_configs[VENTURA].open_db().unwrap();
    db.connection()
        .execute(
            "UPDATE agreements SET status = 'suspended' WHERE id = ?1",
            [&id],
        )
        .unwrap();
    assert!(!fed2.nodes[VENTURA].node.check_state().unwrap());
    fed.stop().await.unwrap();
    fed2.stop().await.unwrap();
}

#[tokio::test]
async fn every_start_is_logged_with_what_changed_in_the_config_since_the_last_one() {
    let fed = federation().await;
    let starts = fed.audit(VENTURA, Some("node_start")).unwrap();
    assert_eq!(starts.len(), 1);
    let first = starts[0].entry.detail.as_deref().unwrap();
    assert!(first.starts_with("first start\nconfig:\n"), "{first}");
    assert!(first.contains("\nrules.version = \"US-CA/"), "{first}");
    assert!(first.contains("policy.retention_days = "), "{first}");

    // The same config again: unchanged. Then an operator edits node.toml.
    let cfg = fed.node_configs[VENTURA].clone();
    let same = alpr_node::Node::open(&cfg).unwrap();
    assert!(same.log_start().unwrap().is_empty());
    let mut edited = cfg.clone();
    edited.policy.retention_days = cfg.policy.retention_days - 1;
    edited.registry.max_head_age_secs = 900;
    let restarted = alpr_node::Node::open(&edited).unwrap();
    let changed = restarted.log_start().unwrap();
    assert_eq!(changed.len(), 2, "{changed:?}");
    assert!(
        changed.iter().any(|c| c
            == &format!(
                "policy.retention_days = {} (was {})",
                edited.policy.retention_days, cfg.policy.retention_days
            )),
        "{changed:?}"
    );
    assert!(
        changed
            .iter()
            .any(|c| c.starts_with("registry.max_head_age_secs = 900 (was 600)")),
        "{changed:?}"
    );
    let last = fed.audit(VENTURA, Some("node_start")).unwrap();
    assert_eq!(last.len(), 3);
    let detail = last[2].entry.detail.as_deref().unwrap();
    assert!(
        detail.starts_with("changed since the last start: "),
        "{detail}"
    );
    assert!(
        detail.contains("max_head_age_secs = 900 (was 600)"),
        "{detail}"
    );
    fed.stop().await.unwrap();
}

#[tokio::test]
async fn holds_and_hot_lists_are_bound_to_the_log_too() {
    use alpr_proto::pb::admin_request::Command;
    use alpr_proto::pb::{AdminRequest, HoldCommand};
    let fed = federation().await;
    let node = fed.nodes[VENTURA].node.clone();
    let now = alpr_pki::now_unix();
    // Placed and loaded through the logged paths: the state stays as logged.
    fed.admin(
        VENTURA,
        &alpr_federation::supervisor_of(VENTURA),
        AdminRequest {
            command: Some(Command::Hold(HoldCommand {
                case_number: "VPD-2026-0777".into(),
                plate: "8ABC123".into(),
                window_start: now - 5 * 86_400,
                window_end: now,
                expires_at: now + 10 * 86_400,
                note: "evidence".into(),
            })),
        },
    )
    .await
    .unwrap();
    node.load_hotlist(
        "Stolen vehicles",
        "NCIC",
        "stolen-vehicle",
        now + 86_400,
        "plate,note\n7XYZ999,stolen in Oxnard\n",
        "ops",
    )
    .unwrap();
    assert!(node.check_state().unwrap(), "logged changes only: intact");
    // A hold extended by hand keeps reads past retention unlogged: found.
    sql(
        &fed,
        "UPDATE holds SET expires_at = expires_at + 365 * 86400",
    );
    assert!(!node.check_state().unwrap(), "an extended hold is found");
    assert_eq!(edited_alerts(&fed), 1);
    assert_eq!(ask(&fed).await.1, Some(RefusalReason::NodeRefusing));
    sql(
        &fed,
        "UPDATE holds SET expires_at = expires_at - 365 * 86400",
    );
    assert!(node.check_state().unwrap(), "undone: as logged again");
    // A plate slipped into a hot list by hand (a tracking channel no search audit shows).
    sql(
        &fed,
        "INSERT INTO hotlist_entries (list_id, plate, note) VALUES (1, '6ABC000', 'by hand')",
    );
    assert!(
        !node.check_state().unwrap(),
        "a hot-list entry added by hand is found"
    );
    fed.stop().await.unwrap();
}
