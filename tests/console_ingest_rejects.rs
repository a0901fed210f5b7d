//! The admin sees what recent ingests rejected (issue 17, admin pages: "ingest status and
//! last rejects"): each rejected row's file, line and reason on the node's page, newest
//! first, sealed at rest on an encrypted node (a reason may quote the field), and the good
//! rows of the same file stored.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use alpr_federation::{Federation, demo_agencies, on_encrypted_sqlite, open_policy};

const VENTURA: &str = "CA0560100";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_page_shows_each_rejected_row_with_its_file_line_and_reason() {
    let fed = Federation::start_tuned(
        None,
        &demo_agencies()[..1],
        |_| open_policy(),
        &[],
        &on_encrypted_sqlite,
    )
    .await
    .unwrap();
    let (mut admin, _, _) = fed
        .console_person(VENTURA, "adm-ruiz", "admin")
        .await
        .unwrap();
    let page = admin.request("GET", "/admin", &[]).await.unwrap();
    assert!(
        page.body.contains("Latest rejected rows</h3><p>None.</p>"),
        "{}",
        page.body
    );

    let t = alpr_node::cli::fmt_time(alpr_pki::now_unix() - 3_600);
    let csv = format!(
        "plate,captured_at,camera_id,latitude,longitude,plate_state\n\
         8ABC123,{t},VPD-CAM-07,34.27,-119.22,CA\n\
         7XYZ999,yesterday,VPD-CAM-07,34.27,-119.22,CA\n\
         6DEF456,{t},VPD-CAM-12,north,-119.20,CA\n\
         5GHI789,{t},VPD-CAM-12,34.28,-119.20,CA\n"
    );
    let node = fed.nodes[VENTURA].node.clone();
    let done = tokio::task::spawn_blocking(move || {
        node.ingest_file("camera-export-1201.csv", csv.as_bytes(), |_| {}, None)
    })
    .await
    .unwrap()
    .unwrap();
    assert_eq!((done.report.stored, done.report.rejects.len()), (2, 2));

    let page = admin.request("GET", "/admin", &[]).await.unwrap();
    let body = &page.body;
    let at = body.find("Latest rejected rows").expect("the section");
    let section = &body[at..];
    for want in [
        "<td>camera-export-1201.csv</td><td>3</td><td>captured_at &quot;yesterday&quot; is not RFC 3339",
        "<td>camera-export-1201.csv</td><td>4</td><td>latitude &quot;north&quot; is not a number",
    ] {
        assert!(section.contains(want), "{want}: {section}");
    }
    // Newest first: line 4 (kept after line 3) comes first.
    assert!(section.find("<td>4</td>").unwrap() < section.find("<td>3</td>").unwrap());

    // On disk the reasons are sealed: the quoted field is not in node.db in the clear.
    let db =
        rusqlite::Connection::open(fed.node_configs[VENTURA].data_dir.join("node.db")).unwrap();
    let kinds: Vec<String> = db
        .prepare("SELECT typeof(reason) FROM ingest_rejects")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(kinds, ["blob", "blob"]);
    fed.stop().await.unwrap();
}
