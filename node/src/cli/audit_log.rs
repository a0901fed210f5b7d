//! `alpr-node audit …`: read, export and verify the audit log, anchor it, and prove what it
//! holds to people who do not trust this node.

use alpr_pki::TrustStore;
use alpr_proto::auditlog::{self, PROOF_FORMAT, ProofBundle, ProvenEntry};
use alpr_proto::pb::AuditAnchorRequest;

use super::{AuditCmd, load_existing};
use crate::{Error, Node, audit, store};

pub(super) async fn run(cmd: AuditCmd) -> Result<(), Error> {
    match cmd {
        AuditCmd::List { config, filter } => {
            let cfg = load_existing(&config)?;
            let conn = store::AuditDb::open(&cfg.audit_path())?;
            for e in store::audit::query(&conn, &filter.to_filter()?)? {
                println!("{}", audit::to_json_line(&e)?);
            }
            Ok(())
        }
        AuditCmd::Export {
            config,
            filter,
            format,
            out,
            by,
        } => {
            let cfg = load_existing(&config)?;
            let format: crate::export::Format = format.parse()?;
            let n = crate::export::export_audit(
                &cfg.audit_path(),
                &filter.to_filter()?,
                format,
                &out,
                &by,
            )?;
            println!("exported {n} entries to {}", out.display());
            Ok(())
        }
        AuditCmd::Verify { config, offline } => {
            let cfg = load_existing(&config)?;
            let trust = TrustStore::load(&cfg.tls.root, &cfg.tls.crls)?;
            let db = store::AuditDb::open(&cfg.audit_path())?;
            let r = store::audit::verify(&db, Some((&trust, &cfg.ori)))?;
            let remote = match (&cfg.broker, offline) {
                (Some(_), false) => {
                    let node = Node::open(&cfg)?;
                    let (mut broker, _) = node.broker.clone().ok_or(Error::NoBroker)?;
                    let latest = broker
                        .get_audit_anchor(AuditAnchorRequest {
                            ori: cfg.ori.clone(),
                        })
                        .await
                        .map_err(|e| {
                            Error::Usage(format!(
                                "cannot compare with the broker's anchor ({}); --offline checks only this host",
                                Error::from(e)
                            ))
                        })?
                        .into_inner()
                        .latest;
                    match latest {
                        None => ", the broker holds no anchor of it yet".to_owned(),
                        Some(a) => {
                            let v = auditlog::verify_anchor(&trust, &a, &cfg.ori)?;
                            if v.head.size > r.entries {
                                return Err(audit::Break::AnchorLost {
                                    anchored: v.head.size as i64,
                                    entries: r.entries as i64,
                                }
                                .into());
                            }
                            if store::audit::root_at(&db, v.head.size)? != v.head.root {
                                return Err(audit::Break::AnchorDiffers(v.head.size as i64).into());
                            }
                            format!(
                                ", its first {} entries match the broker's newest anchor ({})",
                                v.head.size,
                                alpr_pki::fmt_time(v.anchored_at)
                            )
                        }
                    }
                }
                (None, _) => ", no broker configured to compare with".to_owned(),
                (Some(_), true) => ", not compared with the broker (--offline)".to_owned(),
            };
            println!(
                "audit log intact: {} entries, {} signed checkpoints, {} anchors kept{remote}",
                r.entries, r.checkpoints, r.anchors
            );
            Ok(())
        }
        AuditCmd::Anchor { config } => {
            let node = Node::open(&load_existing(&config)?)?;
            match node.anchor_audit().await? {
                Some(v) => println!(
                    "anchored the audit log of {} at {} entries (root {}), receipt by {}",
                    v.head.ori,
                    v.head.size,
                    hex::encode(v.head.root),
                    v.broker
                ),
                None => println!("the audit log is empty; nothing to anchor"),
            }
            Ok(())
        }
        AuditCmd::Prove {
            config,
            query_id,
            out,
        } => {
            let cfg = load_existing(&config)?;
            let bundle = prove(&cfg, &query_id)?;
            let text = serde_json::to_string_pretty(&bundle)
                .map_err(|e| Error::Usage(format!("proof bundle: {e}")))?;
            match &out {
                Some(p) => {
                    std::fs::write(p, text + "\n").map_err(|e| Error::io(p, e))?;
                    println!(
                        "wrote the proof of {} entr{} about query {query_id} to {}",
                        bundle.entries.len(),
                        if bundle.entries.len() == 1 {
                            "y"
                        } else {
                            "ies"
                        },
                        p.display()
                    );
                }
                None => println!("{text}"),
            }
            Ok(())
        }
        AuditCmd::VerifyProof { config, file } => {
            let cfg = load_existing(&config)?;
            let trust = TrustStore::load(&cfg.tls.root, &cfg.tls.crls)?;
            let text = std::fs::read_to_string(&file).map_err(|e| Error::io(&file, e))?;
            println!(
                "{}",
                verify_proof_text(&trust, &text, &file.display().to_string())?
            );
            Ok(())
        }
    }
}

/// The proof bundle of the entries about `query_id`, against the newest anchor kept that
/// covers them all.
pub fn prove(cfg: &crate::NodeConfig, query_id: &str) -> Result<ProofBundle, Error> {
    let query_id = query_id.trim().to_ascii_lowercase();
    if query_id.len() != 32 || hex::decode(&query_id).is_err() {
        return Err(Error::Usage(format!(
            "query id {query_id:?} must be 32 hex digits (16 bytes), as the audit log shows it"
        )));
    }
    let db = store::AuditDb::open(&cfg.audit_path())?;
    let seqs = store::audit::seqs_of_query(&db, &query_id)?;
    let Some(&last) = seqs.last() else {
        return Err(Error::Usage(format!(
            "no entry of this node's audit log is about query {query_id}"
        )));
    };
    let anchors = store::audit::anchors(&db)?;
    let trust = TrustStore::load(&cfg.tls.root, &cfg.tls.crls)?;
    let mut newest = 0;
    let mut chosen = None;
    for a in anchors.iter().rev() {
        let v = auditlog::verify_anchor(&trust, a, &cfg.ori)?;
        newest = newest.max(v.head.size);
        if v.head.size >= last as u64 {
            chosen = Some((a, v));
            break;
        }
    }
    let Some((anchor, v)) = chosen else {
        return Err(Error::Usage(format!(
            "entry {last} is not anchored yet (the newest anchor covers {newest} entries); \
             run `alpr-node audit anchor` or wait for the daemon's next round (every {} s)",
            cfg.audit.anchor_interval_secs
        )));
    };
    let mut entries = Vec::new();
    for seq in seqs {
        let entry = store::audit::logged_entries(&db, seq, seq)?
            .pop()
            .ok_or_else(|| Error::corrupt(format!("audit entry {seq}"), "missing"))?;
        let proof = store::audit::inclusion_proof(&db, seq as u64, v.head.size)?;
        entries.push(ProvenEntry {
            entry,
            proof: proof.iter().map(hex::encode).collect(),
        });
    }
    let bundle = ProofBundle {
        format: PROOF_FORMAT.into(),
        ori: cfg.ori.clone(),
        query_id: Some(query_id),
        entries,
        anchor: auditlog::anchor_to_hex(anchor),
    };
    // What this node hands out must verify.
    auditlog::verify_proof(&trust, &bundle)?;
    Ok(bundle)
}

/// Verify a proof bundle's text; the one-paragraph verdict, or an error naming what failed
/// and in which file.
pub fn verify_proof_text(trust: &TrustStore, text: &str, name: &str) -> Result<String, Error> {
    let bundle: ProofBundle = serde_json::from_str(text)
        .map_err(|e| Error::Usage(format!("{name}: not a proof bundle: {e}")))?;
    let p = auditlog::verify_proof(trust, &bundle)
        .map_err(|e| Error::Usage(format!("{name}: the proof does not verify: {e}")))?;
    Ok(p.verdict(&bundle))
}
