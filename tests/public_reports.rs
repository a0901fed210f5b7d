//! Published reports (issue 16, item 4): the public audit of other agencies' searches, for
//! one period, signed and complete — compared here, search by search, with the audit log.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use alpr_federation::{AgencySpec, Federation, admin_of, open_policy, params, synthetic_csv};
use alpr_node::publish::{self, Period};

const PORTLAND: &str = "OR0260200";
const SALEM: &str = "OR0240100";
const LAS_VEGAS: &str = "NV0020100";

fn agencies() -> Vec<AgencySpec> {
    vec![
        AgencySpec {
            ori: PORTLAND,
            name: "Portland Police Bureau <Central & North>",
            jurisdiction: "US-OR",
            kind: "local",
        },
        AgencySpec {
            ori: SALEM,
            name: "Salem Police Department",
            jurisdiction: "US-OR",
            kind: "local",
        },
        AgencySpec {
            ori: LAS_VEGAS,
            name: "Las Vegas Metropolitan Police",
            jurisdiction: "US-NV",
            kind: "local",
        },
    ]
}

#[tokio::test]
async fn the_published_report_lists_every_search_of_the_period_and_is_signed() {
    let fed = Federation::start(None, &agencies(), |_| open_policy())
        .await
        .unwrap();
    fed.ingest_csv(PORTLAND, &synthetic_csv(PORTLAND, &["8ABC123"], 5))
        .unwrap();
    fed.agree(Federation::terms(PORTLAND, SALEM, &["240"], 30, 86_400))
        .await
        .unwrap();
    let terms = Federation::terms(PORTLAND, LAS_VEGAS, &["240"], 30, 86_400);
    let mut sa = alpr_node::client::draft_agreement(&terms).unwrap();
    for ori in [PORTLAND, LAS_VEGAS] {
        let (s, _) = fed.person(ori, &admin_of(ori)).unwrap();
        alpr_node::client::sign_agreement(&mut sa, &s, &fed.trust).unwrap();
    }
    let (s, _) = fed.person(LAS_VEGAS, &admin_of(LAS_VEGAS)).unwrap();
    alpr_node::client::declare(
        &mut sa,
        &s,
        "Las Vegas Metropolitan Police declares that ALPR data from Oregon agencies serves only the investigation named in each request.",
    )
    .unwrap();
    fed.submit(PORTLAND, &sa).await.unwrap();
    fed.sync(&[PORTLAND, SALEM, LAS_VEGAS]).await.unwrap();
    let mut p = params("8ABC123", &[PORTLAND], "240", 3);
    p.plate_state = "OR".into();
    for _ in 0..2 {
        fed.search(SALEM, &p).await.unwrap();
    }
    // Refused ones count too: a Nevada request without the approval Oregon requires, and
    // a purpose the agreement does not cover that a misbehaving broker forwards anyway.
    fed.search(LAS_VEGAS, &p).await.unwrap();
    let mut robbery = p.clone();
    robbery.purpose = "120".into();
    alpr_federation::refusals::by_node(
        &fed,
        SALEM,
        PORTLAND,
        &robbery,
        alpr_proto::RefusalReason::PurposeNotCovered,
    )
    .await
    .unwrap();

    let node = fed.nodes[PORTLAND].node.clone();
    let now = alpr_pki::now_unix();
    let period = Period::containing("quarterly", now).unwrap();
    let dir = fed.dir.join("published");
    let published = node.publish_report(&period, &dir).unwrap();
    let report = &published.report;

    // Search by search against the log: every inbound query of the period, nothing else.
    let log = fed.audit(PORTLAND, Some("inbound_query")).unwrap();
    let in_period: Vec<_> = log
        .iter()
        .filter(|e| e.entry.at >= period.start && e.entry.at < period.end)
        .collect();
    assert_eq!(in_period.len(), 4);
    assert_eq!(report.searches.len(), in_period.len());
    for (s, e) in report.searches.iter().zip(&in_period) {
        assert_eq!(s.seq, e.seq);
        assert_eq!(s.decision, e.entry.decision.as_str());
        assert_eq!(
            Some(s.requester_ori.as_str()),
            e.entry.requester_ori.as_deref()
        );
        assert_eq!(s.reason_code, e.entry.reason_code);
        assert_eq!(s.reads, e.entry.count.unwrap_or(0));
    }
    assert_eq!(report.totals["searches"], 4);
    assert_eq!(report.totals["answered"], 2);
    assert_eq!(report.totals["refused"], 2);
    assert_eq!(report.by_requester[LAS_VEGAS], 1);
    assert_eq!(report.by_requester[SALEM], 3);
    assert_eq!(report.by_purpose["120"], 1);
    // The report is about this log: its size and root are the tree's.
    let db = fed.node_configs[PORTLAND].open_audit().unwrap();
    assert_eq!(
        report.audit_root,
        hex::encode(alpr_node::store::audit::root_at(&db, report.audit_size).unwrap())
    );
    // Nothing published names a plate or case number.
    let json = std::fs::read(&published.files[0]).unwrap();
    let text = String::from_utf8_lossy(&json);
    assert!(
        !text.contains("8ABC123") && !text.contains("SSD-2026"),
        "{text}"
    );

    // Signed, and verifiable by anyone with the root; an altered copy is not.
    let signed = std::fs::read(&published.files[1]).unwrap();
    let checked = publish::verify(&json, &signed, &fed.trust).unwrap();
    assert_eq!(checked.searches, report.searches);
    let altered = text.replacen("\"refused\"", "\"answered\"", 1);
    let e = publish::verify(altered.as_bytes(), &signed, &fed.trust)
        .unwrap_err()
        .to_string();
    assert!(e.contains("not the report that was signed"), "{e}");
    // The page escapes what it shows and lists every entry.
    let html = std::fs::read_to_string(&published.files[2]).unwrap();
    assert!(html.contains("Portland Police Bureau &lt;Central &amp; North&gt;"));
    assert!(!html.contains("<Central"));
    for s in &report.searches {
        assert!(html.contains(&format!("<tr><td>{}</td>", s.seq)));
    }
    // Never overwritten; logged.
    let e = node.publish_report(&period, &dir).unwrap_err().to_string();
    assert!(e.contains("never overwritten"), "{e}");
    // On the state's schedule (Oregon: quarterly) the daemon published the last complete
    // quarter by itself when it started, once; both publications are logged.
    let last = Period::last_complete("quarterly", now).unwrap();
    let scheduled = fed.node_configs[PORTLAND]
        .data_dir
        .join("reports")
        .join(format!("{PORTLAND}-{}.json", last.label));
    let r = publish::verify(
        &std::fs::read(&scheduled).unwrap(),
        &std::fs::read(scheduled.with_extension("signed")).unwrap(),
        &fed.trust,
    )
    .unwrap();
    assert_eq!(r.period, last);
    assert!(node.publish_scheduled(now).unwrap().is_none());
    let entries = fed.audit(PORTLAND, Some("public_report")).unwrap();
    assert_eq!(entries.len(), 2);
    // A state without a schedule publishes nothing by itself.
    assert!(
        fed.nodes[LAS_VEGAS]
            .node
            .publish_scheduled(now)
            .unwrap()
            .is_none()
    );
    fed.stop().await.unwrap();
}
