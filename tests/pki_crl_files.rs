//! Trust inputs fail closed: a node does not start with a CRL it cannot use, and a CRL
//! that turns bad while it runs is refused on reload — the CRLs in force stay in force and
//! the refusal is an alert entry, once per distinct problem.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use alpr_federation::{Federation, demo_agencies, investigator_of, open_policy, params};

const VENTURA: &str = "CA0560100";
const SACRAMENTO: &str = "CA0340000";

#[tokio::test]
async fn unusable_crls_stop_a_start_and_are_refused_on_reload() {
    let fed = Federation::start(None, &demo_agencies()[..2], |_| open_policy())
        .await
        .unwrap();
    let garbage = fed.dir.join("garbage.crl");
    std::fs::write(
        &garbage,
        "-----BEGIN X509 CRL-----\nbm90IGEgQ1JM\n-----END X509 CRL-----\n",
    )
    .unwrap();

    // A start with it: refused, naming the file.
    let mut cfg = fed.node_configs[VENTURA].clone();
    cfg.tls.crls.push(garbage.clone());
    cfg.data_dir = fed.dir.join("another-ventura");
    let e = alpr_node::Node::open(&cfg).unwrap_err().to_string();
    assert!(e.contains("garbage.crl"), "{e}");

    // A running node whose CRL file turns to garbage keeps the CRLs in force and alerts.
    let crl = fed.pki.agency_crl(SACRAMENTO);
    let good = std::fs::read(&crl).unwrap();
    std::fs::copy(&garbage, &crl).unwrap();
    let node = &fed.nodes[VENTURA].node;
    for _ in 0..3 {
        assert!(node.reload_crls().is_err());
    }
    let alerts = fed.audit(VENTURA, Some("alert")).unwrap();
    assert_eq!(alerts.len(), 1, "one alert per distinct problem");
    assert_eq!(alerts[0].entry.decision, "crl_reload_refused");
    assert!(
        alerts[0]
            .entry
            .detail
            .as_deref()
            .unwrap()
            .contains("ca.crl")
    );
    // Queries still work under the CRLs in force.
    fed.agree(Federation::terms(VENTURA, SACRAMENTO, &["240"], 30, 86_400))
        .await
        .unwrap();
    let (_, resp) = fed
        .search(SACRAMENTO, &params("8ABC123", &[VENTURA], "240", 3))
        .await
        .unwrap();
    assert_eq!(resp.results[0].reason, 0, "{:?}", resp.results[0]);
    // The file repaired: reloads succeed again.
    std::fs::write(&crl, good).unwrap();
    node.reload_crls().unwrap();
    let _ = investigator_of;
    fed.stop().await.unwrap();
}
