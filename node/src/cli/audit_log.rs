//! `alpr-node audit …`: read, export and verify the audit log, anchor it, and prove what it
//! holds to people who do not trust this node.

use std::io::Write;

use alpr_pki::TrustStore;
use alpr_proto::auditlog::{self, ProofBundle};
use alpr_proto::pb::AuditAnchorRequest;

use super::{AuditCmd, load_existing};
use crate::{Error, Node, audit, store};

pub(super) async fn run(cmd: AuditCmd) -> Result<(), Error> {
    match cmd {
        AuditCmd::List { config, filter } => {
            let cfg = load_existing(&config)?;
            let conn = cfg.open_audit()?;
            // Written line by line; a reader that stops early (`| head`) ends the listing,
            // not the process with a panic.
            let mut out = std::io::stdout().lock();
            for e in store::audit::query(&conn, &filter.to_filter()?)? {
                match writeln!(out, "{}", audit::to_json_line(&e)?) {
                    Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => return Ok(()),
                    r => r.map_err(|e| Error::io("standard output", e))?,
                }
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
                crate::keyring::data_keys(&cfg)?,
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
            let db = cfg.open_audit()?;
            let r = store::audit::verify(&db, Some((&trust, &cfg.ori)))?;
            let remote = match (&cfg.broker, offline) {
                (Some(b), false) => {
                    // Only a connection as this node: nothing of the node is opened.
                    let mut broker = crate::client::broker_client(
                        &alpr_runtime::client::Target {
                            addr: b.addr.clone(),
                            server_name: b.server_name.clone(),
                        },
                        &trust,
                        &alpr_runtime::tls::TlsIdentity::load(&cfg.tls.cert, &cfg.tls.key)?,
                        std::time::Duration::from_millis(b.timeout_ms),
                    )?;
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
                            crate::anchoring::compare(&db, &v.head)?;
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
            let bundle = crate::anchoring::prove(&cfg, &query_id)?;
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

/// Verify a proof bundle's text; the one-paragraph verdict, or an error naming what failed
/// and in which file.
pub fn verify_proof_text(trust: &TrustStore, text: &str, name: &str) -> Result<String, Error> {
    let bundle: ProofBundle = serde_json::from_str(text)
        .map_err(|e| Error::Usage(format!("{name}: not a proof bundle: {e}")))?;
    let p = auditlog::verify_proof(trust, &bundle)
        .map_err(|e| Error::Usage(format!("{name}: the proof does not verify: {e}")))?;
    Ok(p.verdict(&bundle))
}
