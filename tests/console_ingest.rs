//! The admin ingests a CSV file of reads from the console, through the same code as
//! `alpr-node ingest`: good rows stored (a second upload skips them), each rejected row
//! listed with its line and reason, the outcome logged as an `ingest` entry naming the
//! admin and the file; an empty upload stores nothing; other roles get no page.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use alpr_federation::web::attr;
use alpr_federation::{Federation, demo_agencies, open_policy};

const VENTURA: &str = "CA0560100";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_ingests_a_csv_file_from_the_console_and_reads_what_was_rejected() {
    let fed = Federation::start(None, &demo_agencies()[..1], |_| open_policy())
        .await
        .unwrap();
    let (mut admin, _, _) = fed
        .console_person(VENTURA, "adm-ruiz", "admin")
        .await
        .unwrap();
    let page = admin.request("GET", "/admin", &[]).await.unwrap();
    assert!(
        page.body.contains("href=\"/admin/ingest\""),
        "{}",
        page.body
    );
    let form = admin.request("GET", "/admin/ingest", &[]).await.unwrap();
    assert_eq!(form.status, 200, "{}", form.body);
    let csrf = attr(&form.body, "name=\"csrf\"", "value").unwrap();

    let t = alpr_node::cli::fmt_time(alpr_pki::now_unix() - 3_600);
    let csv = format!(
        "plate,captured_at,camera_id,latitude,longitude,plate_state\n\
         8ABC123,{t},VPD-CAM-07,34.27,-119.22,CA\n\
         7XYZ999,yesterday,VPD-CAM-07,34.27,-119.22,CA\n\
         5GHI789,{t},VPD-CAM-12,34.28,-119.20,CA\n"
    );
    let before = fed.nodes[VENTURA].node.status().unwrap().reads;
    let r = admin
        .request(
            "POST",
            "/admin/ingest",
            &[
                ("csrf", &csrf),
                ("filename", "cams-2026-12-06.csv"),
                ("csv", &csv),
            ],
        )
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body.contains("2 reads stored"), "{}", r.body);
    assert!(r.body.contains("1 rows rejected"), "{}", r.body);
    assert!(
        r.body.contains("<td>3</td><td>captured_at"),
        "the rejected row by its line: {}",
        r.body
    );
    assert_eq!(fed.nodes[VENTURA].node.status().unwrap().reads, before + 2);
    let logged = fed.audit(VENTURA, Some("ingest")).unwrap();
    let e = &logged.last().unwrap().entry;
    assert_eq!(e.decision, "partial");
    assert_eq!(e.requester_user.as_deref(), Some("adm-ruiz"), "{e:?}");
    let detail = e.detail.as_deref().unwrap();
    assert!(
        detail.contains("cams-2026-12-06.csv (web console upload by adm-ruiz@CA0560100)"),
        "{detail}"
    );
    // The same file again: stored rows are skipped.
    let r = admin
        .request(
            "POST",
            "/admin/ingest",
            &[("csrf", &csrf), ("filename", "again.csv"), ("csv", &csv)],
        )
        .await
        .unwrap();
    assert!(
        r.body.contains("0 reads stored, 2 already stored"),
        "{}",
        r.body
    );
    assert_eq!(fed.nodes[VENTURA].node.status().unwrap().reads, before + 2);
    // Empty, or without the session's form token: nothing.
    let r = admin
        .request("POST", "/admin/ingest", &[("csrf", &csrf), ("csv", "  ")])
        .await
        .unwrap();
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(r.body.contains("nothing was ingested"), "{}", r.body);
    let r = admin
        .request(
            "POST",
            "/admin/ingest",
            &[("csrf", "forged"), ("csv", &csv)],
        )
        .await
        .unwrap();
    assert_ne!(r.status, 200, "{}", r.body);
    // Not an admin: no page, nothing stored.
    let (mut inv, _, _) = fed
        .console_person(VENTURA, "det-kim", "investigator")
        .await
        .unwrap();
    let r = inv.request("GET", "/admin/ingest", &[]).await.unwrap();
    assert_eq!(r.status, 403, "{}", r.body);
    assert_eq!(fed.nodes[VENTURA].node.status().unwrap().reads, before + 2);
    fed.stop().await.unwrap();
}
