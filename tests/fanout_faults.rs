//! A wide query meets the ways a state's nodes fail (issue 19, item 2): one investigator's
//! sealed query names two answering nodes, one node behind a slow link, one agency whose
//! node is down (connections closed at once) and one whose host accepts connections and
//! never answers. Every target gets a status within the broker's deadline: the slow node's
//! answer arrives, the down one is reported unavailable without waiting, the silent one at
//! the deadline; the broker's routing log and the requesting node's audit log record each
//! target's outcome.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use alpr_federation::faults::Fault;
use alpr_federation::{AgencySpec, Extras, Federation, open_policy, params, synthetic_csv};
use alpr_proto::RefusalReason;
use alpr_proto::pb::TargetStatus;

const REQUESTER: &str = "CA0340000";
const PLATE: &str = "8ABC123";
/// The broker's deadline for one target's answer in this federation, ms.
const DEADLINE_MS: u64 = 1_500;

fn agency(ori: &'static str, name: &'static str) -> AgencySpec {
    AgencySpec {
        ori,
        name,
        jurisdiction: "US-CA",
        kind: "local",
    }
}

#[tokio::test]
async fn every_target_of_a_wide_query_gets_a_status_within_the_deadline_down_silent_and_slow_among_them()
 {
    let real = [
        agency(REQUESTER, "Sacramento County Sheriff"),
        agency("CA0560100", "Ventura Police"),
        agency("CA0190000", "Los Angeles Sheriff"),
        agency("CA0010000", "Alameda Sheriff"),
    ];
    let slow = "CA0010000";
    let down = agency("CA0370000", "San Diego Sheriff");
    let silent = agency("CA0430000", "Santa Clara Sheriff");
    let fed = Federation::start_full(
        None,
        &real,
        |_| open_policy(),
        &[],
        &|_| {},
        Extras {
            failing: vec![(down.clone(), Fault::Down), (silent.clone(), Fault::Silent)],
            slow: vec![(slow.into(), Duration::from_millis(100))],
            deadline_ms: Some(DEADLINE_MS),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let owners = ["CA0560100", "CA0190000", slow, down.ori, silent.ori];
    let mut terms = Vec::new();
    for o in owners {
        if fed.nodes.contains_key(o) {
            fed.ingest_csv(o, &synthetic_csv(o, &[PLATE], 4)).unwrap();
        }
        terms.push(Federation::terms(o, REQUESTER, &["240"], 30, 86_400));
    }
    let ids = fed.agree_many(&terms).await.unwrap();
    assert_eq!(ids.len(), owners.len(), "every agreement registered");

    let (_, resp) = fed
        .search(REQUESTER, &params(PLATE, &owners, "240", 3))
        .await
        .unwrap();
    assert_eq!(
        resp.results.len(),
        owners.len(),
        "a status for every target"
    );
    let status = |ori: &str| {
        resp.results
            .iter()
            .find(|r| r.ori == ori)
            .unwrap_or_else(|| panic!("no status for {ori}"))
    };
    for o in ["CA0560100", "CA0190000", slow] {
        let r = status(o);
        assert_eq!(r.status, TargetStatus::Answered as i32, "{o}: {}", r.detail);
        assert_eq!(r.decided_by, o);
    }
    let d = status(down.ori);
    assert_eq!(d.status, TargetStatus::Unavailable as i32, "{}", d.detail);
    assert_eq!(d.reason, RefusalReason::Unavailable as i32);
    assert!(d.detail.starts_with("node error"), "down: {}", d.detail);
    assert_eq!(d.decided_by, "broker");
    let s = status(silent.ori);
    assert_eq!(s.status, TargetStatus::Unavailable as i32, "{}", s.detail);
    assert_eq!(
        s.detail,
        format!("no answer within {DEADLINE_MS} ms"),
        "the silent host is cut off at the broker's deadline"
    );

    // The broker's routing log: a forward decision and an outcome for every target (the
    // outcomes are written after the reply, without holding it up: wait for them).
    let mut log = fed.broker_log().unwrap();
    for _ in 0..100 {
        let results = log
            .iter()
            .filter(|e| e.event.as_str() == "route_result")
            .count();
        if results >= owners.len() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        log = fed.broker_log().unwrap();
    }
    for o in owners {
        let of = |event: &str| {
            log.iter()
                .filter(|e| e.target.as_deref() == Some(o) && e.event.as_str() == event)
                .count()
        };
        assert_eq!(of("route"), 1, "{o}: one forward decision");
        assert_eq!(of("route_result"), 1, "{o}: one outcome");
    }
    let outcome = |o: &str| {
        log.iter()
            .find(|e| e.target.as_deref() == Some(o) && e.event.as_str() == "route_result")
            .unwrap()
            .clone()
    };
    assert_eq!(outcome(slow).decision.as_str(), "answered");
    for o in [down.ori, silent.ori] {
        let e = outcome(o);
        assert_eq!(e.decision.as_str(), "unavailable", "{o}");
        assert_eq!(e.reason_code.as_deref(), Some("UNAVAILABLE"), "{o}");
    }

    // The requesting node's audit log: one outcome per target, as the investigator saw it.
    let results = fed.audit(REQUESTER, Some("outbound_result")).unwrap();
    for o in owners {
        let e = results
            .iter()
            .rev()
            .find(|r| r.entry.target.as_deref() == Some(o))
            .unwrap_or_else(|| panic!("no outbound_result for {o}"));
        let want = if o == down.ori || o == silent.ori {
            "unavailable"
        } else {
            "answered"
        };
        assert_eq!(e.entry.decision, want, "{o}");
    }
    // The owners that answered logged the query they answered; the slow one too.
    let inbound = fed.audit(slow, Some("inbound_query")).unwrap();
    assert!(
        inbound.iter().any(|r| r.entry.decision == "answered"),
        "the slow node logged its answer"
    );
    fed.stop().await.unwrap();
}
