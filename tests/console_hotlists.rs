//! The admin loads a hot list from the web console (issue 17, admin pages): the list is in
//! force at once (a matching read raises a `hotlist_hit` alert), logged as `hotlist_load`
//! with the admin who loaded it, and listed with its plates and expiry. A prohibited topic
//! is refused and the refusal logged; an expired date, an empty list, a bad plate, a missing
//! field or an oversized form get a clear page and load nothing; other roles get no page.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use alpr_federation::web::attr;
use alpr_federation::{Federation, demo_agencies, open_policy};

const VENTURA: &str = "CA0560100";

async fn send(
    client: &mut alpr_federation::web::WebClient,
    f: Vec<(String, String)>,
) -> alpr_federation::web::WebReply {
    let refs: Vec<(&str, &str)> = f.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    client
        .request("POST", "/admin/hotlists/load", &refs)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_loads_a_hot_list_in_force_at_once_and_bad_lists_load_nothing() {
    let fed = Federation::start(None, &demo_agencies()[..1], |_| open_policy())
        .await
        .unwrap();
    let (mut admin, _, _) = fed
        .console_person(VENTURA, "adm-ruiz", "admin")
        .await
        .unwrap();
    let page = admin.request("GET", "/admin/hotlists", &[]).await.unwrap();
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.body.contains("None loaded."), "{}", page.body);
    let csrf = attr(&page.body, "hotlist-form", "value").unwrap();
    let until = alpr_node::cli::fmt_time(alpr_pki::now_unix() + 7 * 86_400);
    let until = until[..16].to_owned(); // YYYY-MM-DDTHH:MM, as the browser sends it
    let form = |name: &str, topic: &str, until: &str, plates: &str| {
        vec![
            ("csrf".to_owned(), csrf.clone()),
            ("name".to_owned(), name.to_owned()),
            ("source".to_owned(), "NCIC stolen vehicles".to_owned()),
            ("topic".to_owned(), topic.to_owned()),
            ("until".to_owned(), until.to_owned()),
            ("plates".to_owned(), plates.to_owned()),
        ]
    };
    let r = send(
        &mut admin,
        form(
            "stolen vehicles",
            "stolen-vehicle",
            &until,
            "plate,note\n8ABC123,stolen 2026-11-28\n7xyz999,stolen 2026-11-30\n",
        ),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(
        r.body.contains("Loaded hot list stolen vehicles: 2 plates"),
        "{}",
        r.body
    );
    let loads = fed.audit(VENTURA, Some("hotlist_load")).unwrap();
    let last = &loads.last().unwrap().entry;
    assert_eq!(last.decision.as_str(), "ok");
    assert_eq!(last.count, Some(2));
    assert_eq!(
        last.requester_user.as_deref(),
        Some("adm-ruiz@CA0560100 (web console)")
    );
    let page = admin.request("GET", "/admin/hotlists", &[]).await.unwrap();
    assert!(
        page.body.contains("<td>stolen vehicles</td>"),
        "{}",
        page.body
    );
    assert!(page.body.contains("<td>2</td>"), "{}", page.body);

    // In force at once: a read of a listed plate is a hit.
    let t = alpr_node::cli::fmt_time(alpr_pki::now_unix() - 60);
    fed.ingest_csv(
        VENTURA,
        &format!(
            "plate,captured_at,camera_id,latitude,longitude,plate_state\n7XYZ999,{t},VPD-CAM-07,34.27,-119.22,CA\n"
        ),
    )
    .unwrap();
    let hits = fed.audit(VENTURA, Some("hotlist_hit")).unwrap();
    assert_eq!(hits.len(), 1, "{hits:?}");

    // A topic the state's rules prohibit: refused on the page and in the log.
    let r = send(
        &mut admin,
        form(
            "ice requests",
            "immigration enforcement",
            &until,
            "8ABC123,x\n",
        ),
    )
    .await;
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(r.body.contains("prohibit"), "{}", r.body);
    assert!(r.body.contains("Nothing was loaded."), "{}", r.body);
    let loads = fed.audit(VENTURA, Some("hotlist_load")).unwrap();
    let last = &loads.last().unwrap().entry;
    assert_eq!(last.decision.as_str(), "refused");
    assert!(
        last.detail
            .as_deref()
            .unwrap_or("")
            .contains("ice requests"),
        "{last:?}"
    );

    // Bad input: a clear page each, nothing loaded.
    let past = alpr_node::cli::fmt_time(alpr_pki::now_unix() - 86_400)[..16].to_owned();
    for (f, says) in [
        (
            form("old", "stolen-vehicle", &past, "8ABC123,x\n"),
            "future expiry",
        ),
        (
            form("empty", "stolen-vehicle", &until, "plate,note\n\n"),
            "holds no plate",
        ),
        (
            form(
                "bad plate",
                "stolen-vehicle",
                &until,
                "8ABC123,x\n8AB C12!,y\n",
            ),
            "hot list line 2",
        ),
        (
            form("", "stolen-vehicle", &until, "8ABC123,x\n"),
            "needs a name",
        ),
        (
            form("no date", "stolen-vehicle", "soon", "8ABC123,x\n"),
            "is not a date and time",
        ),
    ] {
        let r = send(&mut admin, f).await;
        assert_eq!(r.status, 400, "{says}: {}", r.body);
        assert!(r.body.contains(says), "{says}: {}", r.body);
    }
    // Just over the 1 MiB a hot-list form may hold (the test client writes the whole body
    // before it reads the reply, so not much over).
    let big = "8ABC123,".to_owned() + &"x".repeat(1024 * 1024 + 16 * 1024);
    let r = send(&mut admin, form("big", "stolen-vehicle", &until, &big)).await;
    assert_eq!(r.status, 413, "{}", r.body);
    let page = admin.request("GET", "/admin/hotlists", &[]).await.unwrap();
    for name in [
        "old",
        "empty",
        "bad plate",
        "no date",
        "big",
        "ice requests",
    ] {
        assert!(
            !page.body.contains(&format!("<td>{name}</td>")),
            "{name} was not loaded: {}",
            page.body
        );
    }

    // Withdrawn before its expiry (the car was recovered): a reason is required; then the
    // list lapses, its plates are gone, a new read of a listed plate is no hit, and the
    // withdrawal is logged with the admin and the reason.
    let page = admin.request("GET", "/admin/hotlists", &[]).await.unwrap();
    let form_at = page
        .body
        .find("action=\"/admin/hotlists/withdraw\"")
        .unwrap();
    let id = attr(&page.body[form_at..], "name=\"id\"", "value").unwrap();
    let withdraw = |reason: &str, id: &str| {
        vec![
            ("csrf".to_owned(), csrf.clone()),
            ("id".to_owned(), id.to_owned()),
            ("reason".to_owned(), reason.to_owned()),
        ]
    };
    let post_withdraw = async |client: &mut alpr_federation::web::WebClient,
                               f: Vec<(String, String)>| {
        let refs: Vec<(&str, &str)> = f.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        client
            .request("POST", "/admin/hotlists/withdraw", &refs)
            .await
            .unwrap()
    };
    let r = post_withdraw(&mut admin, withdraw("  ", &id)).await;
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(r.body.contains("say why"), "{}", r.body);
    let r = post_withdraw(&mut admin, withdraw("7XYZ999 recovered 2026-12-02", &id)).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(
        r.body
            .contains("withdrawn before its expiry, 2 plates deleted"),
        "{}",
        r.body
    );
    let r = post_withdraw(&mut admin, withdraw("again", &id)).await;
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(r.body.contains("is in force"), "{}", r.body);
    let last = fed.audit(VENTURA, Some("hotlist_load")).unwrap();
    let last = &last.last().unwrap().entry;
    assert_eq!(last.decision.as_str(), "deleted");
    assert!(
        last.detail.as_deref().unwrap_or("").contains("recovered"),
        "{last:?}"
    );
    let t = alpr_node::cli::fmt_time(alpr_pki::now_unix() - 30);
    fed.ingest_csv(
        VENTURA,
        &format!(
            "plate,captured_at,camera_id,latitude,longitude,plate_state\n7XYZ999,{t},VPD-CAM-12,34.28,-119.20,CA\n"
        ),
    )
    .unwrap();
    assert_eq!(fed.audit(VENTURA, Some("hotlist_hit")).unwrap().len(), 1);
    let page = admin.request("GET", "/admin/hotlists", &[]).await.unwrap();
    assert!(page.body.contains("(lapsed)"), "{}", page.body);

    // Other roles: no page, no loading.
    let (mut inv, _, _) = fed
        .console_person(VENTURA, "det-kim", "investigator")
        .await
        .unwrap();
    let r = inv.request("GET", "/admin/hotlists", &[]).await.unwrap();
    assert_eq!(r.status, 403);
    let search = inv.request("GET", "/search", &[]).await.unwrap();
    let mut f = form("mine", "stolen-vehicle", &until, "8ABC123,x\n");
    f[0].1 = attr(&search.body, "search-form", "value").unwrap();
    let inv_csrf = f[0].1.clone();
    let r = send(&mut inv, f).await;
    assert_eq!(r.status, 403, "{}", r.body);
    let mut w = withdraw("not mine", &id);
    w[0].1 = inv_csrf;
    let r = post_withdraw(&mut inv, w).await;
    assert_eq!(r.status, 403, "{}", r.body);
    fed.stop().await.unwrap();
}
