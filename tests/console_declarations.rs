//! The admin's console writes and signs the declaration an out-of-state requester owes the
//! provider's state (Connecticut names Massachusetts and its exact words): the review page
//! says what the law requires; a declaration too short or without the words is refused with
//! the reason and the draft kept; the signed declaration is attached, the agreement signed in
//! the browser's key and registered, and a search answered. A declaration the browser did
//! not sign, or one page used twice, attaches nothing; an in-state agreement asks for none.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use alpr_federation::web::attr;
use alpr_federation::{AgencySpec, Federation, admin_of, open_policy, params, synthetic_csv};
use alpr_node::client;
use alpr_proto::pb::{SignedAgreement, TargetStatus};
use prost::Message;

const HARTFORD: &str = "CT0006400";
const NEW_HAVEN: &str = "CT0009300";
const BOSTON: &str = "MA0130100";

fn agency(ori: &'static str, name: &'static str, jurisdiction: &'static str) -> AgencySpec {
    AgencySpec {
        ori,
        name,
        jurisdiction,
        kind: "local",
    }
}

/// The hex signing input of the form `#id` on `page`, signed by `key`.
fn sign_form(key: &alpr_federation::web::BrowserKey, page: &str, id: &str) -> String {
    let input = attr(page, &format!("id=\"{id}\""), "data-signing-input").unwrap();
    key.sign(&hex::decode(input).unwrap()).unwrap()
}

fn csrf(page: &str) -> String {
    attr(page, "name=\"csrf\"", "value").unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_out_of_state_requesters_admin_declares_in_the_console_what_the_law_requires() {
    let agencies = [
        agency(HARTFORD, "Hartford Police Department", "US-CT"),
        agency(NEW_HAVEN, "New Haven Police Department", "US-CT"),
        agency(BOSTON, "Boston Police Department", "US-MA"),
    ];
    let fed = Federation::start(None, &agencies, |_| open_policy())
        .await
        .unwrap();
    fed.ingest_csv(HARTFORD, &synthetic_csv(HARTFORD, &["8ABC123"], 5))
        .unwrap();
    let required = alpr_proto::rules::StateRules::for_jurisdiction(&"US-CT".parse().unwrap())
        .unwrap()
        .declaration_for(&"US-MA".parse().unwrap())
        .unwrap()
        .to_owned();

    // Hartford's admin signs with the CLI's library; Boston's opens the file in the console.
    let terms = Federation::terms(HARTFORD, BOSTON, &["240"], 30, 86_400);
    let mut sa = client::draft_agreement(&terms).unwrap();
    let (hartford_admin, _) = fed.person(HARTFORD, &admin_of(HARTFORD)).unwrap();
    client::sign_agreement(&mut sa, &hartford_admin, &fed.trust).unwrap();
    let (mut web, key, _) = fed
        .console_person(BOSTON, "adm-web", "admin")
        .await
        .unwrap();
    let list = web.request("GET", "/admin/agreements", &[]).await.unwrap();
    let token = csrf(&list.body);
    let file = hex::encode(sa.encode_to_vec());
    let r = web
        .request(
            "POST",
            "/admin/agreements/open",
            &[("csrf", &token), ("file_hex", &file)],
        )
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body.contains("Declaration to US-CT"), "{}", r.body);
    assert!(
        r.body
            .contains("require the out-of-state requester&#39;s signed written declaration")
            || r.body
                .contains("require the out-of-state requester's signed written declaration"),
        "{}",
        r.body
    );
    assert!(r.body.contains("word for word"), "{}", r.body);
    let form_at = r.body.find("id=\"declaration-form\"").unwrap();
    let pending = attr(&r.body[form_at..], "name=\"pending\"", "value").unwrap();

    // Too short: refused with the reason; the draft is kept on the page, nothing signed.
    let r = web
        .request(
            "POST",
            "/admin/agreements/declare",
            &[
                ("csrf", &token),
                ("pending", &pending),
                ("text", "We promise."),
            ],
        )
        .await
        .unwrap();
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(r.body.contains("80 characters or more"), "{}", r.body);
    assert!(
        r.body.contains("We promise."),
        "the draft is kept: {}",
        r.body
    );
    // Long enough but without Connecticut's words.
    let generic = "The Boston Police Department declares that ALPR data it receives will be used only for the investigation of the crimes named in the agreement.";
    let form_at = r.body.find("id=\"declaration-form\"").unwrap();
    let pending = attr(&r.body[form_at..], "name=\"pending\"", "value").unwrap();
    let r = web
        .request(
            "POST",
            "/admin/agreements/declare",
            &[("csrf", &token), ("pending", &pending), ("text", generic)],
        )
        .await
        .unwrap();
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(r.body.contains("word for word"), "{}", r.body);
    assert!(r.body.contains("Nothing was signed"), "{}", r.body);

    // With the words: the declaration to sign, then signed in the browser's key.
    let declared = format!(
        "The Boston Police Department declares that ALPR data received from Connecticut agencies {required}, nor shared onward."
    );
    let form_at = r.body.find("id=\"declaration-form\"").unwrap();
    let pending = attr(&r.body[form_at..], "name=\"pending\"", "value").unwrap();
    let r = web
        .request(
            "POST",
            "/admin/agreements/declare",
            &[("csrf", &token), ("pending", &pending), ("text", &declared)],
        )
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body.contains("Sign the declaration"), "{}", r.body);
    let to_sign = r.body.clone();
    let form_at = to_sign.find("id=\"agreement-form\"").unwrap();
    let sign_pending = attr(&to_sign[form_at..], "name=\"pending\"", "value").unwrap();
    // A signature by another key attaches nothing, and uses the page up.
    let other = alpr_federation::web::BrowserKey::new().unwrap();
    let r = web
        .request(
            "POST",
            "/admin/agreements/declare/sign",
            &[
                ("csrf", &token),
                ("pending", &sign_pending),
                ("sig", &sign_form(&other, &to_sign, "agreement-form")),
            ],
        )
        .await
        .unwrap();
    assert_eq!(r.status, 403, "{}", r.body);
    assert!(r.body.contains("does not verify"), "{}", r.body);
    assert!(
        r.body
            .contains("declares that ALPR data received from Connecticut agencies"),
        "the declaration's text is kept to sign again: {}",
        r.body
    );
    let r = web
        .request(
            "POST",
            "/admin/agreements/declare/sign",
            &[
                ("csrf", &token),
                ("pending", &sign_pending),
                ("sig", &sign_form(&key, &to_sign, "agreement-form")),
            ],
        )
        .await
        .unwrap();
    assert_eq!(r.status, 409, "a page is good once: {}", r.body);

    // Again, signed by the admin's own key: attached, and the agreement to sign.
    let r = web
        .request(
            "POST",
            "/admin/agreements/declare",
            &[("csrf", &token), ("pending", &pending), ("text", &declared)],
        )
        .await
        .unwrap();
    assert_eq!(
        r.status, 409,
        "the review's declaration form is good once: {}",
        r.body
    );
    let r = web
        .request(
            "POST",
            "/admin/agreements/open",
            &[("csrf", &token), ("file_hex", &file)],
        )
        .await
        .unwrap();
    let form_at = r.body.find("id=\"declaration-form\"").unwrap();
    let pending = attr(&r.body[form_at..], "name=\"pending\"", "value").unwrap();
    let r = web
        .request(
            "POST",
            "/admin/agreements/declare",
            &[("csrf", &token), ("pending", &pending), ("text", &declared)],
        )
        .await
        .unwrap();
    let to_sign = r.body.clone();
    let form_at = to_sign.find("id=\"agreement-form\"").unwrap();
    let sign_pending = attr(&to_sign[form_at..], "name=\"pending\"", "value").unwrap();
    let r = web
        .request(
            "POST",
            "/admin/agreements/declare/sign",
            &[
                ("csrf", &token),
                ("pending", &sign_pending),
                ("sig", &sign_form(&key, &to_sign, "agreement-form")),
            ],
        )
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(
        r.body.contains("Declaration signed and attached"),
        "{}",
        r.body
    );
    assert!(r.body.contains("id=\"declaration-attached\""), "{}", r.body);
    assert!(r.body.contains("declaration: attached"), "{}", r.body);
    let reviewed = r.body.clone();
    let form_at = reviewed.find("id=\"agreement-form\"").unwrap();
    let agreement_pending = attr(&reviewed[form_at..], "name=\"pending\"", "value").unwrap();
    let r = web
        .request(
            "POST",
            "/admin/agreements/sign",
            &[
                ("csrf", &token),
                ("pending", &agreement_pending),
                ("sig", &sign_form(&key, &reviewed, "agreement-form")),
            ],
        )
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(
        r.body.contains("the broker registered agreement"),
        "{}",
        r.body
    );
    // Hartford's admin, opening a declared file at Hartford's console, reads the declaration.
    let (mut hw, _, _) = fed
        .console_person(HARTFORD, "adm-hw", "admin")
        .await
        .unwrap();
    let mut with_declaration = sa.clone();
    let (boston_admin, _) = fed.person(BOSTON, &admin_of(BOSTON)).unwrap();
    client::declare(&mut with_declaration, &boston_admin, &declared).unwrap();
    let list = hw.request("GET", "/admin/agreements", &[]).await.unwrap();
    let r = hw
        .request(
            "POST",
            "/admin/agreements/open",
            &[
                ("csrf", &csrf(&list.body)),
                ("file_hex", &hex::encode(with_declaration.encode_to_vec())),
            ],
        )
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body.contains("declaration</h2>"), "{}", r.body);
    assert!(
        r.body
            .contains("declares that ALPR data received from Connecticut agencies"),
        "{}",
        r.body
    );
    assert!(
        !r.body.contains("declaration-form"),
        "the provider declares nothing"
    );
    fed.sync(&[HARTFORD, BOSTON]).await.unwrap();
    let mut p = params("8ABC123", &[HARTFORD], "240", 3);
    p.plate_state = "CT".into();
    let (_, reply) = fed.search(BOSTON, &p).await.unwrap();
    assert_eq!(
        reply.results[0].status,
        TargetStatus::Answered as i32,
        "{}",
        reply.results[0].detail
    );

    // An in-state agreement asks for no declaration.
    let terms = Federation::terms(HARTFORD, NEW_HAVEN, &["240"], 30, 86_400);
    let sa = client::draft_agreement(&terms).unwrap();
    let (mut nh, _, _) = fed
        .console_person(NEW_HAVEN, "adm-nh", "admin")
        .await
        .unwrap();
    let list = nh.request("GET", "/admin/agreements", &[]).await.unwrap();
    let r = nh
        .request(
            "POST",
            "/admin/agreements/open",
            &[
                ("csrf", &csrf(&list.body)),
                (
                    "file_hex",
                    &hex::encode(SignedAgreement::encode_to_vec(&sa)),
                ),
            ],
        )
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(!r.body.contains("Declaration to"), "{}", r.body);
    fed.stop().await.unwrap();
}
