//! Evidence holds keep named reads past retention (supervisor-approved, until expiry);
//! hot lists raise alerts on ingest; a California node refuses an immigration hot list.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use alpr_federation::{
    Federation, admin_of, demo_agencies, investigator_of, open_policy, supervisor_of,
};
use alpr_proto::pb::{AdminRequest, HoldCommand, admin_request::Command};

const VENTURA: &str = "CA0560100";

fn csv(plates: &[&str], days: std::ops::Range<i64>) -> String {
    let now = alpr_pki::now_unix();
    let mut s = String::new();
    for p in plates {
        for d in days.clone() {
            s.push_str(&format!(
                "{p},{},CAM-7,34.2,-119.2,CA\n",
                alpr_node::cli::fmt_time(now - d * 86_400 - 120)
            ));
        }
    }
    s
}

#[tokio::test]
async fn evidence_holds_survive_the_purge_until_they_expire() {
    let fed = Federation::start(None, &demo_agencies()[..1], |_| {
        let mut p = open_policy();
        p.retention_days = 30;
        p
    })
    .await
    .unwrap();
    let node = fed.nodes[VENTURA].node.clone();
    fed.ingest_csv(VENTURA, &csv(&["8ABC123", "5XYZ987"], 0..45))
        .unwrap();
    let now = alpr_pki::now_unix();
    let hold = |by: &str| {
        let by = by.to_owned();
        let fed = &fed;
        async move {
            fed.admin(
                VENTURA,
                &by,
                AdminRequest {
                    command: Some(Command::Hold(HoldCommand {
                        case_number: "VPD-2026-0777".into(),
                        plate: "8abc-123".into(),
                        window_start: now - 45 * 86_400,
                        window_end: now - 35 * 86_400,
                        expires_at: now + 10 * 86_400,
                        note: "homicide investigation evidence".into(),
                    })),
                },
            )
            .await
        }
    };
    assert!(hold(&investigator_of(VENTURA)).await.is_err());
    assert!(
        hold(&admin_of(VENTURA))
            .await
            .unwrap_err()
            .to_string()
            .contains("supervisor")
    );
    let msg = hold(&supervisor_of(VENTURA)).await.unwrap();
    assert!(msg.contains("8ABC123"), "{msg}");
    let (days, reads) = node.purge().unwrap();
    assert!(days.len() >= 14);
    assert!(reads >= 28);
    let kept = alpr_node::store::held_reads(&node.db(), 1).unwrap();
    assert!((9..=11).contains(&kept.len()), "held reads: {}", kept.len());
    assert!(kept.iter().all(|r| r.plate == "8ABC123"));
    let all = fed.audit(VENTURA, Some("evidence_hold")).unwrap();
    // The investigator's and the admin's attempts are logged as refused.
    let refused: Vec<_> = all
        .iter()
        .filter(|e| e.entry.decision == "refused")
        .collect();
    assert_eq!(refused.len(), 2);
    assert!(
        refused
            .iter()
            .all(|e| e.entry.reason_code.as_deref() == Some("NOT_AUTHORIZED"))
    );
    let holds: Vec<_> = all.iter().filter(|e| e.entry.decision == "ok").collect();
    assert_eq!(holds.len(), 1);
    assert_eq!(holds[0].entry.case_number.as_deref(), Some("VPD-2026-0777"));
    fed.stop().await.unwrap();
}

#[tokio::test]
async fn hot_lists_alert_on_ingest_and_blocked_topics_are_refused() {
    let fed = Federation::start(None, &demo_agencies()[..1], |_| open_policy())
        .await
        .unwrap();
    let node = fed.nodes[VENTURA].node.clone();
    let now = alpr_pki::now_unix();
    let n = node
        .load_hotlist(
            "Stolen vehicles",
            "NCIC",
            "stolen-vehicle",
            now + 86_400,
            "plate,note\n8ABC-123,stolen 11/20 Fair Oaks\n",
            "op1",
        )
        .unwrap();
    assert_eq!(n, 1);
    node.load_hotlist(
        "Old list",
        "NCIC",
        "stolen-vehicle",
        now + 1,
        "5XYZ987,expired soon\n",
        "op1",
    )
    .unwrap();
    let err = node
        .load_hotlist(
            "ICE immigration violators",
            "DHS",
            "immigration",
            now + 86_400,
            "7QRS555,x\n",
            "op1",
        )
        .unwrap_err();
    assert!(err.to_string().contains("prohibit"), "{err}");
    std::thread::sleep(std::time::Duration::from_millis(1100));
    fed.ingest_csv(VENTURA, &csv(&["8ABC123", "5XYZ987", "7QRS555"], 0..3))
        .unwrap();
    let hits = fed.audit(VENTURA, Some("hotlist_hit")).unwrap();
    assert_eq!(
        hits.len(),
        3,
        "three reads of the stolen plate; none of the expired list's plate"
    );
    assert!(
        hits.iter()
            .all(|h| h.entry.plate.as_deref() == Some("8ABC123"))
    );
    let loads = fed.audit(VENTURA, Some("hotlist_load")).unwrap();
    assert_eq!(
        loads
            .iter()
            .filter(|e| e.entry.decision == "refused")
            .count(),
        1
    );
    fed.stop().await.unwrap();
}
