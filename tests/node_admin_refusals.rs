//! Every refused administrative attempt is an audit entry naming who tried and the rule
//! that refused it, from any role and any agency; the refusal reaches the caller with its
//! reason code in the `alpr-refusal-reason` trailer.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use alpr_federation::{
    Federation, admin_of, demo_agencies, investigator_of, open_policy, supervisor_of,
};
use alpr_node::client;
use alpr_proto::RefusalReason;

const VENTURA: &str = "CA0560100";
const SACRAMENTO: &str = "CA0340000";

/// The reason code in the trailer of a refused admin call.
fn trailer_reason(e: &anyhow::Error) -> Option<RefusalReason> {
    e.chain()
        .find_map(|c| c.downcast_ref::<tonic::Status>())
        .and_then(alpr_proto::reason_of)
}

#[tokio::test]
async fn each_role_and_agency_refused_is_logged_with_the_rule() {
    let fed = Federation::start(None, &demo_agencies()[..2], |_| open_policy())
        .await
        .unwrap();
    let inv = investigator_of(SACRAMENTO);
    let cases: Vec<(
        &str,
        &str,
        String,
        alpr_proto::pb::AdminRequest,
        &str,
        RefusalReason,
    )> = vec![
        // An investigator flips a switch on their own node.
        (
            SACRAMENTO,
            SACRAMENTO,
            inv.clone(),
            client::switch(alpr_node::settings::Switch::RefuseAll, true, "", ""),
            "config_change",
            RefusalReason::NotAuthorized,
        ),
        // Another agency's admin turns this node's sharing off.
        (
            SACRAMENTO,
            VENTURA,
            admin_of(VENTURA),
            client::switch(alpr_node::settings::Switch::Sharing, false, "", ""),
            "config_change",
            RefusalReason::NotAuthorized,
        ),
        // An investigator adds an account.
        (
            SACRAMENTO,
            SACRAMENTO,
            inv.clone(),
            client::user_cmd("add", "inv-new-1", "investigator", 0, ""),
            "account_change",
            RefusalReason::NotAuthorized,
        ),
        // Another agency's admin adds an account.
        (
            SACRAMENTO,
            VENTURA,
            admin_of(VENTURA),
            client::user_cmd("add", "inv-new-2", "investigator", 0, ""),
            "account_change",
            RefusalReason::NotAuthorized,
        ),
        // A supervisor flips a switch (admins only).
        (
            SACRAMENTO,
            SACRAMENTO,
            supervisor_of(SACRAMENTO),
            client::switch(alpr_node::settings::Switch::RefuseAll, true, "", ""),
            "config_change",
            RefusalReason::NotAuthorized,
        ),
        // A supervisor approves their own account.
        (
            SACRAMENTO,
            SACRAMENTO,
            supervisor_of(SACRAMENTO),
            client::user_cmd("approve", &supervisor_of(SACRAMENTO), "", 0, ""),
            "account_change",
            RefusalReason::NotAuthorized,
        ),
        // An admin's note with a zero-width space.
        (
            SACRAMENTO,
            SACRAMENTO,
            admin_of(SACRAMENTO),
            client::switch(
                alpr_node::settings::Switch::RefuseRequester,
                true,
                VENTURA,
                "dispute\u{200B}",
            ),
            "config_change",
            RefusalReason::InvalidInput,
        ),
    ];
    for (node, person_ori, user, req, event, want) in cases {
        let before = fed.audit(node, Some(event)).unwrap().len();
        let e = fed
            .admin_as(node, person_ori, &user, req)
            .await
            .expect_err(&format!("{user} at {node}: {event} must be refused"));
        assert_eq!(trailer_reason(&e), Some(want), "{user}: {e:#}");
        let entries = fed.audit(node, Some(event)).unwrap();
        assert_eq!(
            entries.len(),
            before + 1,
            "{user}: one entry for the attempt"
        );
        let last = &entries.last().unwrap().entry;
        assert_eq!(last.decision, "refused", "{user}");
        assert_eq!(
            last.reason_code.as_deref(),
            Some(want.as_str_name()),
            "{user}"
        );
        assert_eq!(last.requester_user.as_deref(), Some(user.as_str()));
        assert_eq!(last.requester_ori.as_deref(), Some(person_ori));
    }
    // Nothing changed: sharing is still on and no account was added.
    let status = fed.nodes[SACRAMENTO]
        .node
        .policy(&fed.nodes[SACRAMENTO].node.db())
        .unwrap();
    assert!(status.sharing_enabled && !status.refuse_all);
    fed.stop().await.unwrap();
}
