//! A local federation in one command: a fresh state PKI, a broker and five agency nodes
//! over mutual TLS on loopback, synthetic reads, agreements, and a narrated sequence of
//! one allowed query and eight refusals, then a hot list shared under an agreement and its
//! hit reported back. Exits 0 only if every step behaved as narrated.
//!
//! ```text
//! cargo run --example federation                 # files in a temporary directory
//! cargo run --example federation -- --keep DIR   # keep PKI, configs and databases in DIR
//! cargo run --example federation -- --replicas    # two broker replicas on PostgreSQL
//! ```

use std::path::PathBuf;

use alpr_federation::{
    Federation, admin_of, demo_agencies, investigator_of, open_policy, params, supervisor_of,
    synthetic_csv,
};
use alpr_node::client::{self, Reply};
use alpr_proto::RefusalReason;
use alpr_proto::pb::{RouteResponse, TargetStatus};
use anyhow::{Result, bail};
use clap::Parser;
use prost::Message;

const VENTURA: &str = "CA0560100";
const SACRAMENTO: &str = "CA0340000";
const FRESNO: &str = "CA0100500";
const LAS_VEGAS: &str = "NV0020100";
const FEDERAL: &str = "USDHS0100";
const STOLEN: &str = "8ABC123";
/// A car on the hot list Sacramento shares.
const WANTED: &str = "6TRK482";

/// Run the demo federation.
#[derive(Parser)]
struct Args {
    /// Keep the federation's files (PKI, configs, databases) in this new directory.
    #[arg(long)]
    keep: Option<PathBuf>,
    /// After the story, keep the federation running (until SIGTERM or Ctrl-C) for outside
    /// clients such as examples/python/; writes `ready` in the --keep directory once up.
    #[arg(long, requires = "keep")]
    serve: bool,
    /// Run the broker as two replicas sharing a PostgreSQL database (a server of the demo's
    /// own in a temporary directory, from Debian's postgresql package), the nodes reaching
    /// them through a TCP load balancer.
    #[arg(long)]
    replicas: bool,
}

struct Demo {
    fed: Federation,
    failures: Vec<String>,
    step: usize,
}

impl Demo {
    fn title(&mut self, text: &str) {
        self.step += 1;
        println!("\n── Step {}: {text}", self.step);
    }

    fn check(&mut self, ok: bool, what: String) {
        if ok {
            println!("   ✔ {what}");
        } else {
            println!("   ✘ UNEXPECTED: {what}");
            self.failures.push(format!("step {}: {what}", self.step));
        }
    }

    /// Print each target's outcome.
    fn show(&self, resp: &RouteResponse) {
        for r in &resp.results {
            let reason = RefusalReason::try_from(r.reason)
                .map(|x| x.as_str_name())
                .unwrap_or("?");
            match TargetStatus::try_from(r.status) {
                Ok(TargetStatus::Answered) => {
                    println!("   → {}: ANSWERED (decided by {})", r.ori, r.decided_by)
                }
                Ok(TargetStatus::Refused) => println!(
                    "   → {}: REFUSED {reason} (decided by {}): {}",
                    r.ori, r.decided_by, r.detail
                ),
                _ => println!("   → {}: UNAVAILABLE: {}", r.ori, r.detail),
            }
        }
    }

    /// Check one target's outcome.
    fn expect(
        &mut self,
        resp: &RouteResponse,
        target: &str,
        want: Option<RefusalReason>,
        by: &str,
    ) {
        let got = resp.results.iter().find(|r| r.ori == target);
        let ok = match (got, want) {
            (Some(r), None) => r.status == TargetStatus::Answered as i32,
            (Some(r), Some(w)) => {
                r.status == TargetStatus::Refused as i32
                    && r.reason == w as i32
                    && r.decided_by == by
            }
            (None, _) => false,
        };
        let want_s = want
            .map(|w| format!("refused {} by {by}", w.as_str_name()))
            .unwrap_or_else(|| "answered".into());
        self.check(ok, format!("{target} {want_s}"));
    }
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    match run(args).await {
        Ok(()) => {}
        Err(e) => {
            eprintln!("demo failed: {e:#}");
            std::process::exit(1);
        }
    }
}

async fn run(args: Args) -> Result<()> {
    println!("Federated ALPR demo: no central pool — each agency keeps its own reads.");
    let agencies = demo_agencies();
    // Every byte the broker receives and sends is recorded, to show what it saw.
    let tap = alpr_runtime::wiretap::Wiretap::new();
    let postgres = if args.replicas {
        Some(alpr_runtime::pgserver::LocalPostgres::start()?)
    } else {
        None
    };
    let url = postgres
        .as_ref()
        .map(|pg| pg.create_database("broker"))
        .transpose()?;
    let fed = Federation::start_full(
        args.keep.clone(),
        &agencies,
        |_| open_policy(),
        &[],
        &Federation::sealed,
        alpr_federation::Extras {
            tap: Some(tap.clone()),
            postgres: url,
            ..Default::default()
        },
    )
    .await?;
    let mut second = None;
    if args.replicas {
        let r = fed.start_replica_in_process(2).await?;
        println!(
            "Broker replicas on PostgreSQL (port {}), behind a TCP load balancer at {}:",
            postgres.as_ref().map_or(0, |p| p.port()),
            fed.balancer
                .as_ref()
                .map_or("?".into(), |b| b.addr.to_string())
        );
        println!(
            "   replica 1   {}\n   replica 2   {}",
            fed.broker.addr, r.addr
        );
        second = Some(r);
    }
    println!(
        "State PKI, broker and {} agency nodes started on loopback (mutual TLS everywhere):",
        agencies.len()
    );
    println!("   broker      {}", fed.broker.addr);
    for a in &agencies {
        println!(
            "   {} {:<40} {:<6} {:<8} node {}",
            a.ori, a.name, a.jurisdiction, a.kind, fed.nodes[a.ori].addr
        );
    }
    let mut d = Demo {
        fed,
        failures: vec![],
        step: 0,
    };

    d.title("each agency ingests its own reads (bad rows are reported with their line numbers)");
    for a in &agencies {
        let mut csv = synthetic_csv(a.ori, &[STOLEN, "5XYZ987"], 20);
        // A Nevada car with the same characters as the stolen California one.
        let extra = if a.ori == VENTURA {
            csv.push_str(&format!(
                "{STOLEN},{},VENTU-CAM-99,34.3,-119.3,NV\n",
                alpr_node::cli::fmt_time(alpr_pki::now_unix() - 7_200)
            ));
            1
        } else {
            0
        };
        csv.push_str("BAD*PLATE,2026-11-01T10:00:00Z,CAM-9,34.1,-119.1,CA\n7QRS555,not-a-time,CAM-9,34.1,-119.1,CA\n");
        let report = d.fed.ingest_csv(a.ori, &csv)?;
        let lines: Vec<String> = report
            .rejects
            .iter()
            .map(|r| format!("line {}: {}", r.line, r.reason))
            .collect();
        println!(
            "   {}: {} reads stored; rejected {}",
            a.ori,
            report.accepted,
            lines.join("; ")
        );
        d.check(
            report.accepted == 240 + extra && report.rejects.len() == 2,
            format!("{} kept every good row", a.ori),
        );
    }

    d.title(
        "admins sign agreements; the broker registers them only if the owner's state rules allow",
    );
    let mut v2s_terms = Federation::terms(
        VENTURA,
        SACRAMENTO,
        &["240", "120", "13A", "30A", "X-MISSING"],
        90,
        90 * 86_400,
    );
    v2s_terms.data_types.push("hotlists".into());
    let v2s = d.fed.agree(v2s_terms).await?;
    println!(
        "   {VENTURA} → {SACRAMENTO}: {v2s} (auto theft, robbery, assault, missing persons; 90-day look-back; Ventura's cameras also watch Sacramento's shared hot lists)"
    );
    let f2s = d
        .fed
        .agree(Federation::terms(
            FRESNO,
            SACRAMENTO,
            &["240"],
            30,
            90 * 86_400,
        ))
        .await?;
    println!("   {FRESNO} → {SACRAMENTO}: {f2s}");
    let short = d
        .fed
        .agree(Federation::terms(VENTURA, FRESNO, &["240"], 30, 2))
        .await?;
    println!("   {VENTURA} → {FRESNO}: {short} (valid for 2 seconds only)");
    for (req, want) in [
        (LAS_VEGAS, "REQUESTER_JURISDICTION_NOT_PERMITTED"),
        (FEDERAL, "REQUESTER_KIND_NOT_PERMITTED"),
    ] {
        let terms = Federation::terms(VENTURA, req, &["240"], 30, 30 * 86_400);
        let mut sa = client::draft_agreement(&terms)?;
        let (p, _) = d.fed.person(VENTURA, &alpr_federation::admin_of(VENTURA))?;
        let (r, _) = d.fed.person(req, &alpr_federation::admin_of(req))?;
        client::sign_agreement(&mut sa, &p, &d.fed.trust)?;
        client::sign_agreement(&mut sa, &r, &d.fed.trust)?;
        let res = d.fed.submit(VENTURA, &sa).await;
        let msg = res
            .as_ref()
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        println!("   {VENTURA} → {req}: registration refused: {msg}");
        d.check(
            res.is_err() && msg.contains(want),
            format!("registration {VENTURA} → {req} refused with {want}"),
        );
    }

    d.title(&format!("ALLOWED: a Sacramento investigator searches {STOLEN} at Ventura and Fresno (stolen vehicle, 240)"));
    let before = tap.contents().len();
    let (q, resp) = d
        .fed
        .search(SACRAMENTO, &params(STOLEN, &[VENTURA, FRESNO], "240", 14))
        .await?;
    let seen = tap.contents()[before..].to_vec();
    d.show(&resp);
    d.expect(&resp, VENTURA, None, VENTURA);
    d.expect(&resp, FRESNO, None, FRESNO);
    for r in &resp.results {
        if let Ok(Some(Reply::Answer { signer, answer: a })) =
            client::verify_reply(&d.fed.trust, r, &q, alpr_pki::now_unix())
        {
            println!(
                "   {} signed {} read(s) for {}@{} (verified; not for re-dissemination: {}), e.g.:",
                signer.describe(),
                a.reads.len(),
                a.requester_user,
                a.requester_ori,
                a.not_for_redissemination
            );
            for read in a.reads.iter().take(2) {
                println!(
                    "      {} ({}) at {} camera {} ({:.4}, {:.4})",
                    read.plate,
                    read.plate_state,
                    alpr_node::cli::fmt_time(read.captured_at),
                    read.camera_id,
                    read.latitude,
                    read.longitude
                );
            }
            d.check(
                a.reads.len() >= 14
                    && a.reads
                        .iter()
                        .all(|x| x.plate == STOLEN && x.plate_state == "CA"),
                format!(
                    "{} returned only California {STOLEN} reads (not the Nevada car with the same characters)",
                    a.provider_ori
                ),
            );
        }
    }

    d.title("WHAT THE BROKER SAW of that query: metadata only (the query and the answers traveled sealed)");
    d.fed.broker.broker.flush_log().await?;
    for e in d
        .fed
        .broker_log()?
        .iter()
        .filter(|e| e.query_id.as_deref() == Some(hex::encode(&q.query_id).as_str()))
    {
        println!(
            "   routing log: {} {} target={} requester={} agreement={} {}",
            e.event,
            e.decision,
            e.target.as_deref().unwrap_or("-"),
            e.requester.as_deref().unwrap_or("-"),
            e.agreement_id.as_deref().unwrap_or("-"),
            e.reason_code.as_deref().unwrap_or("")
        );
    }
    println!(
        "   routing copy: purpose {}, window {} .. {}, targets {}; plate, state, case number and reason emptied",
        q.purpose_code,
        alpr_node::cli::fmt_time(q.window_start),
        alpr_node::cli::fmt_time(q.window_end),
        q.targets.join(",")
    );
    let mut secrets = vec![
        ("plate", q.plate.clone()),
        ("case number", q.case_number.clone()),
        ("reason", q.reason.clone()),
    ];
    for r in &resp.results {
        if let Ok(Some(Reply::Answer { answer: a, .. })) =
            client::verify_reply(&d.fed.trust, r, &q, alpr_pki::now_unix())
        {
            for read in &a.reads {
                secrets.push(("camera id", read.camera_id.clone()));
            }
        }
    }
    let found: Vec<&str> = secrets
        .iter()
        .filter(|(_, v)| !v.is_empty() && seen.windows(v.len()).any(|w| w == v.as_bytes()))
        .map(|(what, _)| *what)
        .collect();
    println!(
        "   the broker received and sent {} bytes for this query; in them: plate {}, case number, reason and {} camera id(s) looked for — found: {}",
        seen.len(),
        q.plate,
        secrets.len() - 3,
        if found.is_empty() {
            "none".to_owned()
        } else {
            found.join(", ")
        }
    );
    d.check(
        found.is_empty() && seen.len() > 1000,
        "the broker saw none of the plate, case number, reason or returned camera ids".into(),
    );

    d.title("REFUSED: no agreement — Sacramento searches Las Vegas, which never agreed to share with it");
    let (_, resp) = d
        .fed
        .search(SACRAMENTO, &params(STOLEN, &[LAS_VEGAS], "240", 7))
        .await?;
    d.show(&resp);
    d.expect(&resp, LAS_VEGAS, Some(RefusalReason::NoAgreement), "broker");

    d.title("REFUSED: out-of-state requester — Las Vegas searches Ventura (California shares only in-state)");
    let (_, resp) = d
        .fed
        .search(LAS_VEGAS, &params(STOLEN, &[VENTURA], "240", 7))
        .await?;
    d.show(&resp);
    d.expect(
        &resp,
        VENTURA,
        Some(RefusalReason::RequesterJurisdictionNotPermitted),
        "broker",
    );

    d.title("REFUSED: federal requester — a federal office searches Ventura (no federal access to California reads)");
    let (_, resp) = d
        .fed
        .search(FEDERAL, &params(STOLEN, &[VENTURA], "240", 7))
        .await?;
    d.show(&resp);
    d.expect(
        &resp,
        VENTURA,
        Some(RefusalReason::RequesterKindNotPermitted),
        "broker",
    );

    d.title("REFUSED: immigration purpose — Sacramento searches Ventura for 30A (Illegal Entry), even though the agreement lists it");
    let (_, resp) = d
        .fed
        .search(SACRAMENTO, &params(STOLEN, &[VENTURA], "30A", 7))
        .await?;
    d.show(&resp);
    d.expect(
        &resp,
        VENTURA,
        Some(RefusalReason::PurposeProhibited),
        "broker",
    );

    d.title("REFUSED: the reason \"investigation\" — refused by the investigator's own node before it leaves");
    let mut p = params(STOLEN, &[VENTURA], "240", 7);
    p.reason = "investigation".into();
    let r = d.fed.search(SACRAMENTO, &p).await;
    report_local(&mut d, r, "REASON_INSUFFICIENT");

    d.title("REFUSED: missing case number — refused by the investigator's own node");
    let mut p = params(STOLEN, &[VENTURA], "240", 7);
    p.case_number = String::new();
    let r = d.fed.search(SACRAMENTO, &p).await;
    report_local(&mut d, r, "CASE_NUMBER_MISSING");

    d.title(
        "REFUSED: expired agreement — Fresno searches Ventura after the 2-second agreement ran out",
    );
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
    let (_, resp) = d
        .fed
        .search(FRESNO, &params(STOLEN, &[VENTURA], "240", 7))
        .await?;
    d.show(&resp);
    d.expect(
        &resp,
        VENTURA,
        Some(RefusalReason::AgreementExpired),
        "broker",
    );

    d.title("REFUSED BY THE NODE ITSELF: a misbehaving broker forwards Fresno's query to Sacramento, which has no agreement with Fresno");
    let (fq, signed) = d
        .fed
        .sign_query(FRESNO, &params(STOLEN, &[SACRAMENTO], "240", 7))?;
    let who = alpr_proto::admission::requester_label(&fq);
    let (b, key) = d
        .fed
        .seal_box(FRESNO, SACRAMENTO, SACRAMENTO, &fq, &who, &signed)?;
    let endorsed = d.fed.endorse_sealed(FRESNO, &fq, vec![b])?;
    let sealed = d.fed.rogue_forward_sealed(SACRAMENTO, endorsed).await?;
    let aad = alpr_proto::seal::reply_aad(&sealed.query_id, &sealed.provider_ori);
    let reply = alpr_proto::pb::Signed::decode(
        key.open(&aad, &sealed.nonce, &sealed.ciphertext)?
            .as_slice(),
    )?;
    let (signer, refusal): (_, alpr_proto::pb::Refusal) = alpr_proto::envelope::open_as(
        &d.fed.trust,
        &reply,
        alpr_proto::envelope::REFUSAL,
        alpr_pki::now_unix(),
    )?;
    let reason = RefusalReason::try_from(refusal.reason).unwrap_or(RefusalReason::Unspecified);
    println!(
        "   → {SACRAMENTO}: REFUSED {} (signed by {}): {}",
        reason.as_str_name(),
        signer.describe(),
        refusal.detail
    );
    d.check(
        reason == RefusalReason::NoAgreement && signer.ori() == Some(SACRAMENTO),
        format!("{SACRAMENTO} refused on its own: NO_AGREEMENT"),
    );

    d.title(
        "HOT LIST shared only under agreements: Sacramento shares a stolen-vehicle list with Ventura (its agreement covers hot lists) and Fresno (reads only)",
    );
    let list = client::hotlist_from_csv(
        "stolen vehicles",
        "Sacramento PD stolen-vehicle reports",
        "stolen vehicles",
        &format!(
            "plate,state,note\n{WANTED},CA,grey pickup stolen 2026-11-30 from a Sacramento lot\n"
        ),
    )?;
    let share = client::SearchParams {
        window_end: alpr_pki::now_unix() + 7 * 86_400,
        purpose: "240".into(),
        case_number: "SAC-26-004417".into(),
        reason: "grey pickup stolen overnight from a Sacramento lot, owner reported it at 06:10"
            .into(),
        targets: vec![VENTURA.into(), FRESNO.into()],
        ttl_secs: 300,
        shape: alpr_proto::hotlist::SHAPE_HOTLIST.into(),
        hotlist: Some(list),
        ..Default::default()
    };
    let (_, resp) = d.fed.search(SACRAMENTO, &share).await?;
    d.show(&resp);
    let status = |ori: &str| {
        resp.results
            .iter()
            .find(|r| r.ori == ori)
            .map(|r| (r.status, r.reason))
    };
    d.check(
        status(VENTURA) == Some((TargetStatus::Answered as i32, 0)),
        format!("{VENTURA} keeps the list (agreement covers hot lists)"),
    );
    d.check(
        status(FRESNO)
            == Some((
                TargetStatus::Refused as i32,
                RefusalReason::NoAgreement as i32,
            )),
        format!("{FRESNO} refused it: its agreement covers reads only"),
    );
    // A Ventura camera reads the wanted car a moment later.
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    d.fed.ingest_csv(
        VENTURA,
        &format!(
            "plate,captured_at,camera_id,latitude,longitude,plate_state\n{WANTED},{},CA056-CAM-03,34.27800,-119.29300,CA\n",
            alpr_node::cli::fmt_time(alpr_pki::now_unix())
        ),
    )?;
    let logged = d.fed.audit(VENTURA, Some("hotlist_hit"))?;
    if let Some(h) = logged.last() {
        println!(
            "   {VENTURA} logs the hit: {}",
            h.entry.detail.as_deref().unwrap_or("")
        );
    }
    d.check(
        logged
            .iter()
            .any(|h| h.entry.requester_ori.as_deref() == Some(SACRAMENTO)),
        format!("{VENTURA} logged the hit with the list's owner ({SACRAMENTO}), purpose and case"),
    );
    let mut reported = Vec::new();
    for _ in 0..100 {
        reported = d.fed.audit(SACRAMENTO, Some("hotlist_hit"))?;
        if !reported.is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    if let Some(h) = reported.last() {
        println!(
            "   {SACRAMENTO} receives it, sealed and signed by {VENTURA}'s node: {}",
            h.entry.detail.as_deref().unwrap_or("")
        );
    }
    d.check(
        reported.iter().any(|h| {
            h.entry.plate.as_deref() == Some(WANTED) && h.entry.target.as_deref() == Some(VENTURA)
        }),
        format!("{SACRAMENTO} got the hit report through the broker, which could read none of it"),
    );

    d.title("each node's inbound log: who asked, for what plate, purpose, case, and the decision");
    for a in &agencies {
        let entries = d.fed.audit(a.ori, Some("inbound_query"))?;
        println!(
            "   {} ({}): {} inbound request(s)",
            a.ori,
            a.name,
            entries.len()
        );
        for e in entries {
            let x = &e.entry;
            println!(
                "      #{} {} {}@{} plate={} purpose={} case={} → {}{}",
                e.seq,
                alpr_node::cli::fmt_time(x.at),
                x.requester_user.as_deref().unwrap_or("?"),
                x.requester_ori.as_deref().unwrap_or("?"),
                x.plate
                    .as_deref()
                    .filter(|p| !p.is_empty())
                    .unwrap_or("(a hot list)"),
                x.purpose.as_deref().unwrap_or("-"),
                x.case_number.as_deref().unwrap_or("-"),
                x.decision,
                x.reason_code
                    .as_deref()
                    .map(|r| format!(" {r}"))
                    .or(x.count.map(|c| format!(" ({c} reads)")))
                    .unwrap_or_default()
            );
        }
    }
    let sac_out = d.fed.audit(SACRAMENTO, Some("outbound_result"))?;
    println!(
        "   {SACRAMENTO} also logged {} outbound result(s) for its own investigators' searches",
        sac_out.len()
    );
    let broker_refusals = d
        .fed
        .broker_log()?
        .iter()
        .filter(|e| e.decision == "refused")
        .count();
    println!(
        "   the broker logged {broker_refusals} refused routing decision(s); it holds no reads and no answers"
    );
    for a in &agencies {
        let r = d.fed.verify_audit(a.ori)?;
        d.check(
            r.entries > 0,
            format!(
                "{} audit log verifies: {} hash-chained entries, {} signed checkpoint(s)",
                a.ori, r.entries, r.checkpoints
            ),
        );
    }
    let _ = investigator_of;

    d.title(
        "ANCHORED EVIDENCE: each node anchors its audit log at the broker; the regulator checks Ventura's exported log and Sacramento's proof of what it asked, from its own desk",
    );
    for a in &agencies {
        match d.fed.nodes[a.ori].node.anchor_audit().await? {
            Some(v) => println!(
                "   {} anchored {} entries (root {}…), receipt signed by {}",
                a.ori,
                v.head.size,
                &hex::encode(v.head.root)[..16],
                v.broker
            ),
            None => println!("   {} has nothing to anchor", a.ori),
        }
    }
    // What one anchoring round moves (protobuf bytes; TLS and HTTP/2 framing aside): the
    // broker's newest anchor fetched, a signed head with its consistency proof offered, the
    // new anchor returned.
    if let Some(latest) = d.fed.broker.broker.audit_anchor(VENTURA)? {
        let head = latest.head.as_ref().map_or(0, Message::encoded_len);
        let anchored = alpr_proto::auditlog::verify_anchor(&d.fed.trust, &latest, VENTURA)?;
        let proof = 34 * (64 - anchored.head.size.leading_zeros() as usize);
        let round = 2 * latest.encoded_len() + head + proof + 32;
        println!(
            "   one anchoring round moves about {round} bytes of messages (anchor {} B, signed head {head} B, proof <= {proof} B): {:.0} KB a day per node at one round every 5 minutes",
            latest.encoded_len(),
            (round * 288) as f64 / 1000.0
        );
    }
    let exported = d.fed.dir.join("ventura-audit.log");
    alpr_node::export::export_audit(
        &d.fed.node_configs[VENTURA].audit_path(),
        d.fed.nodes[VENTURA].node.data_keys().cloned(),
        &Default::default(),
        alpr_node::export::Format::Log,
        &exported,
        "demo",
    )?;
    let (mut reg, _) = d.fed.broker_client_as(d.fed.pki.regulator("reg-ca"))?;
    let verdict =
        alpr_broker::regulator::verify_audit_log(&mut reg, &d.fed.trust, VENTURA, &exported, None)
            .await;
    d.check(
        verdict.is_ok(),
        verdict.unwrap_or_else(|e| format!("Ventura's exported log: {e}")),
    );
    // The same export with one entry reworded (re-chained, as an insider with node.key
    // would) no longer matches the anchor.
    let text = std::fs::read_to_string(&exported)?;
    let mut forged = String::new();
    let mut prev = alpr_node::audit::GENESIS.to_owned();
    for (i, line) in text.lines().enumerate() {
        let mut e: alpr_proto::auditlog::LoggedEntry = serde_json::from_str(line)?;
        if i == 2 {
            e.entry = e.entry.replacen("\"at\":", "\"at\": ", 1);
        }
        e.prev_hash = prev;
        e.hash = alpr_node::audit::chain_hash(&e.prev_hash, &e.entry);
        prev = e.hash.clone();
        forged.push_str(&serde_json::to_string(&e)?);
        forged.push('\n');
    }
    let forged_path = d.fed.dir.join("ventura-audit-rewritten.log");
    std::fs::write(&forged_path, forged)?;
    let refused = alpr_broker::regulator::verify_audit_log(
        &mut reg,
        &d.fed.trust,
        VENTURA,
        &forged_path,
        None,
    )
    .await;
    d.check(
        refused
            .as_ref()
            .is_err_and(|e| e.to_string().contains("not the ones anchored")),
        match &refused {
            Err(e) => format!("a rewritten, re-chained copy is refused: {e}"),
            Ok(v) => format!("a rewritten copy verified: {v}"),
        },
    );
    let asked = d
        .fed
        .audit(SACRAMENTO, Some("outbound_query"))?
        .into_iter()
        .find_map(|e| e.entry.query_id);
    if let Some(qid) = asked {
        let bundle = alpr_node::anchoring::prove(&d.fed.node_configs[SACRAMENTO], &qid)?;
        let file = d.fed.dir.join("sacramento-asked.json");
        std::fs::write(&file, serde_json::to_string_pretty(&bundle)?)?;
        let verdict = alpr_broker::regulator::verify_proof_file(&d.fed.trust, &file);
        d.check(
            verdict.is_ok(),
            verdict.unwrap_or_else(|e| format!("Sacramento's proof: {e}")),
        );
    }

    d.title(
        "AT REST: a copy of each node's disk taken now (databases and WAL files) holds none of the demo's plates, camera ids or places without the node's key-encryption key",
    );
    for a in &agencies {
        let cfg = &d.fed.node_configs[a.ori];
        // The stored doubles of every coordinate the agency ingested, as SQLite writes them.
        let coords: std::collections::HashSet<[u8; 8]> =
            synthetic_csv(a.ori, &[STOLEN, "5XYZ987"], 20)
                .lines()
                .skip(1)
                .flat_map(|l| {
                    l.split(',')
                        .skip(3)
                        .take(2)
                        .map(str::to_owned)
                        .collect::<Vec<_>>()
                })
                .filter_map(|v| v.parse::<f64>().ok())
                .map(f64::to_be_bytes)
                .collect();
        let (mut size, mut found) = (0usize, Vec::new());
        // Copied by a child process, as a thief would: reading the running nodes' files in
        // this process would drop its SQLite locks on them.
        let files: Vec<PathBuf> = std::fs::read_dir(&cfg.data_dir)?
            .map(|f| f.map(|f| f.path()))
            .collect::<Result<Vec<_>, _>>()?
            .into_iter()
            .filter(|p| p.to_string_lossy().contains(".db"))
            .collect();
        let copies =
            alpr_federation::copy_out_of_process(&files, &d.fed.dir.join("disk-copy").join(a.ori))?;
        for path in copies {
            let bytes = std::fs::read(&path)?;
            size += bytes.len();
            for needle in [STOLEN, "5XYZ987", WANTED, "-CAM-"] {
                if bytes.windows(needle.len()).any(|w| w == needle.as_bytes()) {
                    found.push(format!("{needle} in {}", path.display()));
                }
            }
            if bytes
                .windows(8)
                .any(|w| <[u8; 8]>::try_from(w).is_ok_and(|w| coords.contains(&w)))
            {
                found.push(format!("a coordinate in {}", path.display()));
            }
        }
        let key = d.fed.nodes[a.ori]
            .node
            .data_keys()
            .map(|k| k.key_id().to_owned())
            .unwrap_or_else(|| "none: plain".into());
        d.check(
            found.is_empty(),
            if found.is_empty() {
                format!(
                    "{}: {:.1} MB of node.db, audit.db and WAL hold no plate, camera id or coordinate (data key {key}, wrapped by the KEK in {})",
                    a.ori,
                    size as f64 / 1e6,
                    cfg.storage
                        .kek_file
                        .as_ref()
                        .map_or("?".into(), |p| p.display().to_string())
                )
            } else {
                format!("{}: a copy of its disk reveals {}", a.ori, found.join(", "))
            },
        );
    }

    if let Some(mut second) = second.take() {
        replicas(&mut d, &mut second).await?;
    }

    let dir = d.fed.dir.clone();
    let failures = std::mem::take(&mut d.failures);
    if args.serve && failures.is_empty() {
        println!("\nServing for outside clients (stop with SIGTERM or Ctrl-C):");
        for a in &agencies {
            let n = &d.fed.nodes[a.ori];
            match n.console_addr {
                Some(c) => println!(
                    "   {} node {}   web console https://127.0.0.1:{}/",
                    a.ori,
                    n.addr,
                    c.port()
                ),
                None => println!("   {} node {}", a.ori, n.addr),
            }
        }
        if let Some(page) = d.fed.broker.page_addr {
            // The demo's broker operator enrolls the demo regulator's sign-in code; the
            // page shows its secret to reg-ca at the first sign-in with reg-ca's key.
            let (cert, key) = d.fed.pki.regulator("reg-ca");
            let chain = alpr_pki::read_cert_chain(&cert)?;
            let now = alpr_pki::now_unix();
            let mut db = d.fed.broker.broker.db();
            if alpr_broker::store::regulator_code(&db, "reg-ca@US-CA")?.is_none() {
                alpr_broker::page::enroll_code(&mut db, &d.fed.trust, &chain, false, now)?;
            }
            drop(db);
            println!(
                "   regulator page https://127.0.0.1:{port}/ (reg-ca: make a token, paste it, and leave the code empty the first time; the page shows the code's secret):\n      cargo run -q -p alpr-broker -- registry --broker {broker} --root {root} --cert {cert} --key {key} signin-link --page https://127.0.0.1:{port}/",
                port = page.port(),
                broker = d.fed.broker.addr,
                root = d.fed.pki.root_cert().display(),
                cert = cert.display(),
                key = key.display(),
            );
        }
        console_person(&d.fed).await?;
        std::fs::write(dir.join("ready"), format!("broker {}\n", d.fed.broker.addr))?;
        alpr_runtime::server::shutdown_signal().await;
        let _ = std::fs::remove_file(dir.join("ready"));
    }
    d.fed.stop().await?;
    if let Some(k) = args.keep {
        println!(
            "\nFiles kept in {} (try: cargo run -p alpr-node -- audit list --config {}/{VENTURA}/node.toml)",
            k.display(),
            dir.display()
        );
    }
    if failures.is_empty() {
        println!("\nEvery step behaved as narrated.");
        Ok(())
    } else {
        bail!(
            "{} step(s) misbehaved:\n  {}",
            failures.len(),
            failures.join("\n  ")
        )
    }
}

fn report_local(d: &mut Demo, r: Result<(alpr_proto::pb::Query, RouteResponse)>, code: &str) {
    match r {
        Ok((_, resp)) => {
            d.check(
                false,
                format!(
                    "expected a local refusal {code}, got {} result(s)",
                    resp.results.len()
                ),
            );
        }
        Err(e) => {
            let msg = e.to_string();
            println!("   → refused by {SACRAMENTO}: {msg}");
            d.check(
                msg.contains(code),
                format!("refused {code} by {SACRAMENTO} itself"),
            );
        }
    }
}

/// A person to try Sacramento's web console with: an investigator account with training
/// recorded, and its one-time enrollment code; printed with the command a supervisor runs
/// to approve the browser's key (README, "The web console").
async fn console_person(fed: &Federation) -> Result<()> {
    let user = "det-demo";
    let (admin, sup) = (admin_of(SACRAMENTO), supervisor_of(SACRAMENTO));
    fed.admin(
        SACRAMENTO,
        &admin,
        client::user_cmd("add", user, "investigator", 0, ""),
    )
    .await?;
    let trained = alpr_pki::now_unix() - 86_400;
    fed.admin(
        SACRAMENTO,
        &sup,
        client::user_cmd("training", user, "", trained, ""),
    )
    .await?;
    let reply = fed
        .admin(
            SACRAMENTO,
            &admin,
            client::user_cmd("invite", user, "", 0, ""),
        )
        .await?;
    let code = reply
        .lines()
        .find_map(|l| l.strip_prefix("enrollment code: "))
        .unwrap_or("?");
    let (cert, key) = fed.pki.person(SACRAMENTO, &sup);
    println!(
        "\nWeb console: enroll {user} at Sacramento's /enroll with code {code}, then approve the key:\n   \
         cargo run -p alpr-node -- admin --node {} --root {} --cert {} --key {} approve-key {user}",
        fed.nodes[SACRAMENTO].addr,
        fed.pki.root_cert().display(),
        cert.display(),
        key.display()
    );
    Ok(())
}

/// The broker as two replicas sharing one PostgreSQL database: a query replayed to the
/// second is refused, and with the second stopped, searches still go through the first.
async fn replicas(d: &mut Demo, second: &mut alpr_broker::RunningBroker) -> Result<()> {
    d.title("Two broker replicas share one database: no replay, no single point of failure");
    let (_, signed) = d
        .fed
        .sign_query(SACRAMENTO, &params(STOLEN, &[VENTURA], "240", 7))?;
    let endorsed = d.fed.endorse(SACRAMENTO, &signed)?;
    let first = d
        .fed
        .route_at(d.fed.broker.addr, SACRAMENTO, endorsed.clone())
        .await?;
    let at_first = first.results.first().map(|r| r.status);
    d.check(
        at_first == Some(TargetStatus::Answered as i32),
        format!("replica 1 routes {SACRAMENTO}'s query to {VENTURA}: answered"),
    );
    let again = d.fed.route_at(second.addr, SACRAMENTO, endorsed).await?;
    let r = again.results.first();
    d.check(
        r.is_some_and(|r| r.reason == RefusalReason::Replay as i32),
        format!(
            "the same query replayed to replica 2: refused ({})",
            r.map_or(String::new(), |r| r.detail.clone())
        ),
    );
    second.halt().await?;
    let (_, after) = d
        .fed
        .search(SACRAMENTO, &params(STOLEN, &[VENTURA], "240", 7))
        .await?;
    d.check(
        after.results.first().map(|r| r.status) == Some(TargetStatus::Answered as i32),
        "replica 2 stopped: a new search still answered through the balancer".into(),
    );
    Ok(())
}
