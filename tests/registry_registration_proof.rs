//! An agreement's registration proved from a node's own verified view of the registry
//! (issue 17, the admin's "inclusion proofs"): the registration entry and its audit path
//! against a broker-signed, regulator-cosigned head, in a file anyone holding the state root
//! verifies (`alpr-node agreement prove` / `verify-proof`, the console's proof page). A
//! node syncing the whole log proves it offline; one syncing by subject asks the broker for
//! the path and checks it. A changed file does not verify.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::ExitCode;

use prost::Message;

use alpr_broker::regulator;
use alpr_federation::{Federation, demo_agencies, open_policy};
use alpr_node::config::{NodeConfig, SyncMode};
use alpr_proto::RefusalReason;
use alpr_proto::pb::SignedTreeHead;
use alpr_proto::registration::{self, RegistrationProof};

const VENTURA: &str = "CA0560100";
const SACRAMENTO: &str = "CA0340000";
const FRESNO: &str = "CA0100500";

/// Run `alpr-node ARGS` as a person at the host would (its own runtime, on a thread of
/// its own).
async fn cli(args: &[&str]) -> ExitCode {
    use clap::Parser as _;
    let mut argv = vec!["alpr-node".to_owned()];
    argv.extend(args.iter().map(|a| (*a).to_owned()));
    tokio::task::spawn_blocking(move || {
        alpr_node::cli::main(alpr_node::cli::Cli::try_parse_from(argv).unwrap())
    })
    .await
    .unwrap()
}

fn refusal(fed: &Federation, p: &RegistrationProof) -> RefusalReason {
    registration::verify(&fed.trust, p, alpr_pki::now_unix())
        .map(|_| ())
        .unwrap_err()
        .reason()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registration_is_proved_against_the_cosigned_head_and_a_changed_proof_fails() {
    // Ventura syncs the whole log, Sacramento by subject.
    let fed = Federation::start_tuned(
        None,
        &demo_agencies()[..3],
        |_| open_policy(),
        &[],
        &|c: &mut NodeConfig| {
            if c.ori == SACRAMENTO {
                c.registry.sync = SyncMode::Subjects;
            }
        },
    )
    .await
    .unwrap();
    let ours = fed
        .agree(Federation::terms(VENTURA, SACRAMENTO, &["240"], 30, 86_400))
        .await
        .unwrap();
    let theirs = fed
        .agree(Federation::terms(FRESNO, VENTURA, &["240"], 30, 86_400))
        .await
        .unwrap();
    let (mut reg, reg_signer) = fed.broker_client_as(fed.pki.regulator("reg-ca")).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    regulator::cosign(
        &mut reg,
        &fed.trust,
        &reg_signer,
        &tmp.path().join("head.json"),
    )
    .await
    .unwrap();
    fed.sync(&[VENTURA, SACRAMENTO, FRESNO]).await.unwrap();

    let mut witnessed = None;
    for ori in [VENTURA, SACRAMENTO] {
        let node = fed.nodes[ori].node.clone();
        let (proof, proven) = node.registration_proof(&ours).await.unwrap();
        witnessed.get_or_insert_with(|| proof.clone());
        assert_eq!(proof.agreement_id, ours);
        assert_eq!(proven.agreement.terms.provider_ori, VENTURA);
        assert!(
            proven.head.cosigned_by("US-CA"),
            "{ori}: the regulator's cosignature travels with the proof"
        );
        let v = registration::verify(&fed.trust, &proof, alpr_pki::now_unix()).unwrap();
        assert!(v.verdict().contains(&ours), "{}", v.verdict());
        assert!(v.verdict().contains("cosigned by"), "{}", v.verdict());

        // Another entry's index, an altered entry, path or head: none verifies.
        let mut p = proof.clone();
        p.index += 1;
        assert_eq!(refusal(&fed, &p), RefusalReason::AuditFork, "{ori}: index");
        let mut p = proof.clone();
        let mut entry = hex::decode(&p.entry).unwrap();
        let last = entry.len() - 1;
        entry[last] ^= 1;
        p.entry = hex::encode(entry);
        assert_eq!(refusal(&fed, &p), RefusalReason::AuditFork, "{ori}: entry");
        let mut p = proof.clone();
        p.proof[0] = hex::encode([0u8; 32]);
        assert_eq!(refusal(&fed, &p), RefusalReason::AuditFork, "{ori}: path");
        let mut p = proof.clone();
        p.proof.pop();
        assert_eq!(refusal(&fed, &p), RefusalReason::AuditFork, "{ori}: short");
        let mut p = proof.clone();
        let mut sth = SignedTreeHead::decode(hex::decode(&p.head).unwrap().as_slice()).unwrap();
        let signed = sth.head.as_mut().unwrap();
        let last = signed.payload.len() - 1;
        signed.payload[last] ^= 1;
        p.head = hex::encode(sth.encode_to_vec());
        assert_eq!(
            refusal(&fed, &p),
            RefusalReason::BadSignature,
            "{ori}: head"
        );
        // The right entry and path, claimed for another agreement.
        let mut p = proof.clone();
        p.agreement_id = theirs.clone();
        assert_eq!(refusal(&fed, &p), RefusalReason::InvalidInput, "{ori}: id");
        let mut p = proof.clone();
        p.format = "alpr-registration-proof/0".into();
        assert_eq!(
            refusal(&fed, &p),
            RefusalReason::InvalidInput,
            "{ori}: format"
        );
    }

    // Sacramento is no party to Fresno's agreement with Ventura, and holds no proof of it.
    let e = fed.nodes[SACRAMENTO]
        .node
        .clone()
        .registration_proof(&theirs)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("not registered"), "{e}");

    // The admin's console shows the proof, checked, and hands out the same file; other
    // roles get no page, an unknown agreement a clear one.
    let (mut admin, _, _) = fed
        .console_person(VENTURA, "adm-ruiz", "admin")
        .await
        .unwrap();
    let list = admin
        .request("GET", "/admin/agreements", &[])
        .await
        .unwrap();
    assert!(
        list.body
            .contains(&format!("href=\"/admin/agreements/proof/{ours}\"")),
        "{}",
        list.body
    );
    let page = admin
        .request("GET", &format!("/admin/agreements/proof/{ours}"), &[])
        .await
        .unwrap();
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(
        page.body.contains("Verified: proof verified"),
        "{}",
        page.body
    );
    assert!(page.body.contains("Cosigned by"), "{}", page.body);
    let file = admin
        .request(
            "GET",
            &format!("/admin/agreements/proof/{ours}/proof.json"),
            &[],
        )
        .await
        .unwrap();
    assert_eq!(file.status, 200);
    let downloaded: RegistrationProof = serde_json::from_str(&file.body).unwrap();
    let v = registration::verify(&fed.trust, &downloaded, alpr_pki::now_unix()).unwrap();
    assert_eq!(v.agreement.id, ours);
    let none = admin
        .request("GET", "/admin/agreements/proof/agr-nothing", &[])
        .await
        .unwrap();
    assert_eq!(none.status, 404);
    assert!(none.body.contains("not registered"), "{}", none.body);
    let (mut inv, _, _) = fed
        .console_person(VENTURA, "det-kim", "investigator")
        .await
        .unwrap();
    let r = inv
        .request("GET", &format!("/admin/agreements/proof/{ours}"), &[])
        .await
        .unwrap();
    assert_eq!(r.status, 403);
    let r = inv
        .request(
            "GET",
            &format!("/admin/agreements/proof/{ours}/proof.json"),
            &[],
        )
        .await
        .unwrap();
    assert_eq!(r.status, 403);

    // The CLI writes the file and verifies it; a changed file fails with a clear error.
    let cfg = fed.node_configs[VENTURA].data_dir.join("node.toml");
    let cfg = cfg.to_str().unwrap();
    let file = tmp.path().join("proof.json");
    let file_s = file.to_str().unwrap();
    assert_eq!(
        cli(&["agreement", "prove", "-c", cfg, &ours, "--out", file_s]).await,
        ExitCode::SUCCESS
    );
    assert_eq!(
        cli(&["agreement", "verify-proof", "-c", cfg, file_s]).await,
        ExitCode::SUCCESS
    );
    let mut p: RegistrationProof =
        serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    p.index += 1;
    std::fs::write(&file, serde_json::to_string(&p).unwrap()).unwrap();
    assert_eq!(
        cli(&["agreement", "verify-proof", "-c", cfg, file_s]).await,
        ExitCode::FAILURE
    );
    std::fs::write(&file, "{}").unwrap();
    assert_eq!(
        cli(&["agreement", "verify-proof", "-c", cfg, file_s]).await,
        ExitCode::FAILURE
    );
    assert_eq!(
        cli(&[
            "agreement",
            "prove",
            "-c",
            cfg,
            "agr-00000000000000000000000000000000"
        ])
        .await,
        ExitCode::FAILURE
    );

    // A node that trusts only cosigned heads refuses a proof against a head the broker alone
    // signed (a new registration, not yet witnessed), and takes the cosigned one.
    let later = fed
        .agree(Federation::terms(VENTURA, FRESNO, &["240"], 30, 86_400))
        .await
        .unwrap();
    fed.sync(&[VENTURA]).await.unwrap();
    let unwitnessed = tmp.path().join("unwitnessed.json");
    let unwitnessed_s = unwitnessed.to_str().unwrap();
    assert_eq!(
        cli(&[
            "agreement",
            "prove",
            "-c",
            cfg,
            &later,
            "--out",
            unwitnessed_s
        ])
        .await,
        ExitCode::SUCCESS
    );
    let mut strict: toml::Value = toml::from_str(&std::fs::read_to_string(cfg).unwrap()).unwrap();
    strict
        .as_table_mut()
        .unwrap()
        .entry("registry")
        .or_insert_with(|| toml::Value::Table(Default::default()))
        .as_table_mut()
        .unwrap()
        .insert("require_cosignature".into(), toml::Value::Boolean(true));
    let strict_cfg = fed.node_configs[VENTURA].data_dir.join("strict.toml");
    std::fs::write(&strict_cfg, toml::to_string(&strict).unwrap()).unwrap();
    let strict_s = strict_cfg.to_str().unwrap();
    assert_eq!(
        cli(&["agreement", "verify-proof", "-c", cfg, unwitnessed_s]).await,
        ExitCode::SUCCESS
    );
    assert_eq!(
        cli(&["agreement", "verify-proof", "-c", strict_s, unwitnessed_s]).await,
        ExitCode::FAILURE
    );
    let witnessed_file = tmp.path().join("witnessed.json");
    std::fs::write(
        &witnessed_file,
        serde_json::to_string(&witnessed.unwrap()).unwrap(),
    )
    .unwrap();
    assert_eq!(
        cli(&[
            "agreement",
            "verify-proof",
            "-c",
            strict_s,
            witnessed_file.to_str().unwrap()
        ])
        .await,
        ExitCode::SUCCESS,
        "the strict node takes a proof against the cosigned head"
    );
    fed.stop().await.unwrap();
}
