//! What came of hot-list hits (Virginia, HB 2724): a supervisor records whether a hit led
//! to a stop and the stop's outcome, logged as a `hit_outcome` entry naming the hit; the
//! transparency report counts hits, outcomes and stops, and where the state requires an
//! outcome within a number of days, the hits still without one.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use alpr_federation::{
    AgencySpec, Federation, admin_of, investigator_of, open_policy, supervisor_of,
};
use alpr_proto::pb::{AdminRequest, HitOutcome, admin_request::Command};

const FAIRFAX: &str = "VA0290000";

fn outcome(seq: i64, stopped: bool, outcome: &str, note: &str) -> AdminRequest {
    AdminRequest {
        command: Some(Command::HitOutcome(HitOutcome {
            hit_seq: seq as u64,
            stopped,
            outcome: outcome.into(),
            note: note.into(),
        })),
    }
}

#[tokio::test]
async fn each_hit_gets_its_outcome_recorded_and_virginia_counts_the_missing_ones() {
    let va = AgencySpec {
        ori: FAIRFAX,
        name: "Fairfax County Police Department",
        jurisdiction: "US-VA",
        kind: "local",
    };
    let fed = Federation::start(None, &[va], |_| open_policy())
        .await
        .unwrap();
    let node = &fed.nodes[FAIRFAX].node;
    let now = alpr_pki::now_unix();
    node.load_hotlist(
        "stolen vehicles",
        "NCIC stolen vehicles",
        "stolen vehicles",
        now + 86_400,
        "8ABC123,stolen 2026-11-28\n7XYZ999,stolen 2026-11-30\n",
        "ops",
    )
    .unwrap();
    let csv = format!(
        "plate,captured_at,camera_id,latitude,longitude,plate_state\n8ABC123,{t},VA029-CAM-01,38.85,-77.30,VA\n7XYZ999,{t},VA029-CAM-02,38.86,-77.31,VA\n",
        t = alpr_node::cli::fmt_time(now - 60)
    );
    fed.ingest_csv(FAIRFAX, &csv).unwrap();
    let hits = fed.audit(FAIRFAX, Some("hotlist_hit")).unwrap();
    assert_eq!(hits.len(), 2);
    let (first, second) = (hits[0].seq, hits[1].seq);

    // Refused, each logged: an outcome that does not fit, a note too short, an entry that
    // is not a hit, and an investigator (not a supervisor or admin).
    let sup = supervisor_of(FAIRFAX);
    for (req, why) in [
        (
            outcome(first, false, "arrest", "driver arrested on the warrant"),
            "no_stop",
        ),
        (outcome(first, true, "arrest", "ok"), "10+ characters"),
        (
            outcome(1, true, "warning", "warned about the stolen plate"),
            "not a hot-list hit",
        ),
    ] {
        let e = fed.admin(FAIRFAX, &sup, req).await.unwrap_err().to_string();
        assert!(e.contains(why), "{e}");
    }
    let e = fed
        .admin(
            FAIRFAX,
            &investigator_of(FAIRFAX),
            outcome(first, true, "arrest", "driver arrested on the warrant"),
        )
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("admins and supervisors"), "{e}");
    let refused = fed.audit(FAIRFAX, Some("hit_outcome")).unwrap();
    assert_eq!(refused.len(), 4);
    assert!(refused.iter().all(|e| e.entry.decision == "refused"));

    // Recorded: the first hit led to an arrest.
    let msg = fed
        .admin(
            FAIRFAX,
            &sup,
            outcome(
                first,
                true,
                "arrest",
                "driver arrested, vehicle returned to owner",
            ),
        )
        .await
        .unwrap();
    assert!(
        msg.contains(&format!("hit #{first}")) && msg.contains("8ABC123"),
        "{msg}"
    );
    let recorded = fed.audit(FAIRFAX, Some("hit_outcome")).unwrap();
    let last = &recorded.last().unwrap().entry;
    assert_eq!(last.decision, "stopped");
    assert_eq!(last.refers_to, Some(first));
    assert_eq!(last.outcome.as_deref(), Some("arrest"));

    // Eight days on, the second hit has no outcome: Virginia's report says so.
    let report = |at: i64| {
        let entries = fed.audit(FAIRFAX, None).unwrap();
        alpr_node::reports::transparency(node, &entries, at).unwrap()
    };
    let later = report(now + 8 * 86_400);
    assert!(
        later.contains("Hot-list hits on our cameras: 2; outcome recorded for 1; led to a stop: 1"),
        "{later}"
    );
    assert!(
        later.contains("without an outcome after 7 days (US-VA/2026.3 requires one): 1"),
        "{later}"
    );
    let entries = fed.audit(FAIRFAX, None).unwrap();
    let o = alpr_node::outcomes::summarize(&entries, 7, now + 8 * 86_400);
    assert_eq!(
        o.overdue.iter().map(|(s, _)| *s).collect::<Vec<_>>(),
        vec![second]
    );
    assert!(
        alpr_node::outcomes::summarize(&entries, 7, now)
            .overdue
            .is_empty(),
        "not yet due"
    );

    // Recorded as no stop (by an admin): nothing is missing any more.
    fed.admin(
        FAIRFAX,
        &admin_of(FAIRFAX),
        outcome(
            second,
            false,
            "no_stop",
            "unit could not reach the camera site in time",
        ),
    )
    .await
    .unwrap();
    let done = report(now + 8 * 86_400);
    assert!(
        done.contains("without an outcome after 7 days (US-VA/2026.3 requires one): 0"),
        "{done}"
    );
    assert!(done.contains("no_stop"), "{done}");
    fed.stop().await.unwrap();
}
