//! The `alpr-broker` command line.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::{BrokerConfig, Error, store};

/// The broker of a federated ALPR network: routes signed queries between agencies' nodes
/// where a registered agreement, the requester's certificate claims and the purpose all
/// check out. It never stores reads or answers.
#[derive(Parser, Debug)]
#[command(name = "alpr-broker", version)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// `alpr-broker` subcommands.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the broker daemon.
    Serve {
        /// Broker config file (TOML).
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Check everything a start would (config, certificate, key, CRLs, node routes),
    /// print what was found, and exit: 0 if the broker would start.
    CheckConfig {
        /// Broker config file (TOML).
        #[arg(long, short)]
        config: PathBuf,
    },
    /// List registered agreements.
    Agreements {
        /// Broker config file.
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Print the routing log (JSON lines).
    Log {
        /// Broker config file.
        #[arg(long, short)]
        config: PathBuf,
        /// Verify the log's hash chain instead of printing it (exit 1 naming the first bad
        /// row).
        #[arg(long)]
        verify: bool,
    },
    /// Sign-in codes for the regulator page, the second factor beside a regulator's key:
    /// enroll one for a regulator's certificate, list or remove them. Run on the broker's
    /// host; each change is a routing-log row. The secret is shown only to the regulator, on
    /// the page, at their first sign-in with their key.
    RegulatorCode {
        /// Broker config file.
        #[arg(long, short)]
        config: PathBuf,
        /// The command.
        #[command(subcommand)]
        cmd: CodeCmd,
    },
    /// Inspect and act on the agreement registry from anywhere, as a regulator (or, for
    /// `revoke`, a party's admin). Everything fetched is verified locally: every signature,
    /// the Merkle root, and consistency with a saved head.
    Registry {
        /// Who you are and where the broker is.
        #[command(flatten)]
        conn: ClientArgs,
        /// The command.
        #[command(subcommand)]
        cmd: RegistryCmd,
    },
}

/// `regulator-code` commands.
#[derive(Subcommand, Debug)]
pub enum CodeCmd {
    /// Enroll a code for the regulator of this certificate (PEM, the chain to the root).
    Enroll {
        /// The regulator's certificate.
        #[arg(long)]
        cert: PathBuf,
        /// Replace a code enrolled already (the old one stops working at once).
        #[arg(long)]
        replace: bool,
    },
    /// List the regulators with a code, and whether each has set it up.
    List,
    /// Remove a regulator's code (`name@STATE`, as `list` prints it).
    Remove {
        /// The regulator.
        regulator: String,
    },
}

/// Connection to the broker as a person.
#[derive(clap::Args, Debug)]
pub struct ClientArgs {
    /// The broker's address (host:port).
    #[arg(long)]
    pub broker: String,
    /// Certificates (a regulator's, or an admin's for revoke).
    #[command(flatten)]
    pub tls: alpr_runtime::client::PersonTls,
}

/// Registry commands.
#[derive(Subcommand, Debug)]
pub enum RegistryCmd {
    /// List agreements (filter by agency, state, status, expiry).
    List {
        /// Only agreements where this ORI is a party.
        #[arg(long)]
        agency: Option<String>,
        /// Only agreements with a party in this jurisdiction (e.g. US-CA).
        #[arg(long)]
        state: Option<String>,
        /// active, revoked, suspended or expired.
        #[arg(long)]
        status: Option<String>,
        /// Only active agreements expiring within this many days.
        #[arg(long)]
        expiring_within_days: Option<i64>,
    },
    /// Show one agreement with its full history.
    Show {
        /// Agreement id.
        id: String,
    },
    /// Verify the whole log; with --from, prove it extends a saved head, then save the new one.
    Verify {
        /// A saved head (JSON); created if missing, updated after a successful check.
        #[arg(long)]
        from: Option<PathBuf>,
    },
    /// Export all agreements as JSON or CSV.
    Export {
        /// json or csv.
        #[arg(long, default_value = "json")]
        format: String,
        /// Output file.
        #[arg(long)]
        out: PathBuf,
    },
    /// The compliance report.
    Report,
    /// Suspend an agreement (the provider state's regulator).
    Suspend {
        /// Agreement id.
        id: String,
        /// Why.
        #[arg(long)]
        reason: String,
    },
    /// Lift a suspension (the provider state's regulator).
    Lift {
        /// Agreement id.
        id: String,
        /// Why.
        #[arg(long)]
        reason: String,
    },
    /// Revoke an agreement (either party's admin, alone).
    Revoke {
        /// Agreement id.
        id: String,
        /// Why.
        #[arg(long)]
        reason: String,
    },
    /// Print a short-lived sign-in token for the regulator web page (signed with your key,
    /// good once): paste it into the page's sign-in form.
    SigninLink {
        /// The page's base URL, e.g. https://127.0.0.1:7080/
        #[arg(long)]
        page: String,
        /// Validity in seconds (at most 900).
        #[arg(long, default_value_t = 600)]
        ttl: i64,
    },
    /// Check an agency's exported audit log (`alpr-node audit export --format log`) against
    /// the newest anchor the broker holds for it.
    VerifyAudit {
        /// The agency whose log it is.
        #[arg(long)]
        ori: String,
        /// The exported log.
        #[arg(long)]
        log: PathBuf,
        /// Your `cosign-audit --state-dir`: the log must also match the head you cosigned.
        #[arg(long)]
        cosigned_dir: Option<PathBuf>,
    },
    /// Verify a proof bundle from `alpr-node audit prove`: the entries, byte for byte, are
    /// in the agency's anchored audit log.
    VerifyProof {
        /// The bundle.
        file: PathBuf,
    },
    /// Witness the broker's routing log: check its current head extends the one you
    /// cosigned last (kept in --state), then cosign it. Run on a schedule, like `cosign`.
    CosignRouting {
        /// File keeping the last cosigned routing-log head.
        #[arg(long)]
        state: PathBuf,
    },
    /// Witness agencies' audit anchors: for each agency, check every anchor since the one
    /// you cosigned last (kept in --state-dir) extends it, then cosign the newest. Without
    /// --ori, every agency that published a sealing key in the registry. Run on a schedule.
    CosignAudit {
        /// Directory keeping the last cosigned head of each agency (`<ORI>.json`).
        #[arg(long)]
        state_dir: PathBuf,
        /// Only these agencies.
        #[arg(long)]
        ori: Vec<String>,
    },
    /// Witness: check the current head is consistent with the last one you cosigned
    /// (kept in --state), then cosign it.
    Cosign {
        /// File keeping the last cosigned head.
        #[arg(long)]
        state: PathBuf,
    },
}

/// Run the CLI and return the exit code.
pub fn main(cli: Cli) -> std::process::ExitCode {
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("alpr-broker: cannot start runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(cli)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("alpr-broker: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn registry(conn: ClientArgs, cmd: RegistryCmd) -> Result<(), Error> {
    use crate::regulator::{self, ListFilter, SavedHead};
    let alpr_runtime::client::Person {
        trust,
        signer,
        tls: me,
    } = conn.tls.load()?;
    let cfg = alpr_runtime::tls::client_config(&trust, &me)?;
    let target = conn.tls.target(&conn.broker);
    let ch = alpr_runtime::client::channel(&target, cfg, std::time::Duration::from_secs(30))?;
    let mut client = alpr_proto::pb::broker_client::BrokerClient::new(ch);
    let now = alpr_pki::now_unix();
    match cmd {
        RegistryCmd::List {
            agency,
            state,
            status,
            expiring_within_days,
        } => {
            let view = regulator::fetch_verified(&mut client, &trust, None).await?;
            let f = ListFilter {
                agency,
                state,
                status,
                expiring_within_days,
            };
            for r in regulator::rows(&view, &f, now) {
                println!(
                    "{} {} ({}) -> {} ({} {}) {} purposes={} look-back={}d until={}",
                    r.id,
                    r.provider,
                    r.provider_state,
                    r.requester,
                    r.requester_state,
                    r.requester_kind,
                    r.status,
                    r.purposes,
                    r.lookback_days,
                    crate::regulator::fmt_time(r.valid_until)
                );
            }
        }
        RegistryCmd::Show { id } => {
            let view = regulator::fetch_verified(&mut client, &trust, None).await?;
            let rec = view
                .records
                .get(&id)
                .ok_or_else(|| Error::Usage(format!("no agreement {id} in the registry")))?;
            let t = &rec.agreement.terms;
            println!(
                "{id}: {} shares with {}; status {}",
                t.provider_ori,
                t.requester_ori,
                rec.status.as_str()
            );
            println!(
                "  purposes {}; data {}; look-back {} days; valid {} .. {}",
                t.purposes.join(","),
                t.data_types.join(","),
                t.max_lookback_days,
                crate::regulator::fmt_time(t.valid_from),
                crate::regulator::fmt_time(t.valid_until)
            );
            println!("  justification: {}", t.justification);
            for h in &rec.history {
                println!(
                    "  #{} {} at {} by {}: {}",
                    h.index,
                    h.kind,
                    alpr_pki::fmt_time(h.at),
                    h.by,
                    h.reason
                );
            }
        }
        RegistryCmd::Verify { from } => {
            let saved = match &from {
                Some(p) => SavedHead::load(p)?,
                None => None,
            };
            let view = regulator::fetch_verified(&mut client, &trust, saved.as_ref()).await?;
            println!(
                "registry verified: {} entries, {} agreements, root {}{}",
                view.head.size,
                view.records.len(),
                hex::encode(view.head.root),
                saved
                    .map(|s| format!(", consistent with the saved head of size {}", s.size))
                    .unwrap_or_default()
            );
            if let Some(p) = from {
                SavedHead {
                    size: view.head.size,
                    root: hex::encode(view.head.root),
                }
                .save(&p)?;
            }
        }
        RegistryCmd::Export { format, out } => {
            let view = regulator::fetch_verified(&mut client, &trust, None).await?;
            let rows = regulator::rows(&view, &ListFilter::default(), now);
            let text = match format.as_str() {
                "json" => {
                    serde_json::to_string_pretty(&rows).map_err(|e| Error::Usage(e.to_string()))?
                }
                "csv" => regulator::to_csv(&rows),
                other => {
                    return Err(Error::Usage(format!(
                        "format {other:?} must be json or csv"
                    )));
                }
            };
            std::fs::write(&out, text).map_err(|e| Error::io(&out, e))?;
            println!("exported {} agreements to {}", rows.len(), out.display());
        }
        RegistryCmd::Report => {
            let view = regulator::fetch_verified(&mut client, &trust, None).await?;
            let stats: Vec<(String, String, u64)> = client
                .get_routing_stats(alpr_proto::pb::RoutingStatsRequest {})
                .await
                .map(|r| {
                    r.into_inner()
                        .refusals
                        .into_iter()
                        .map(|c| (c.reason, c.target, c.count))
                        .collect()
                })
                .unwrap_or_default();
            print!("{}", regulator::report(&view, now, &stats));
        }
        RegistryCmd::Suspend { id, reason } => {
            let i = regulator::act(&mut client, &signer, &id, "suspend", &reason).await?;
            println!("suspended {id} (registry entry {i})");
        }
        RegistryCmd::Lift { id, reason } => {
            let i = regulator::act(&mut client, &signer, &id, "lift", &reason).await?;
            println!("lifted the suspension of {id} (registry entry {i})");
        }
        RegistryCmd::Revoke { id, reason } => {
            let i = regulator::act(&mut client, &signer, &id, "revoke", &reason).await?;
            println!("revoked {id} (registry entry {i})");
        }
        RegistryCmd::SigninLink { page, ttl } => {
            let token = crate::page::sign_in_token(&signer, ttl, now)?;
            println!(
                "Open {} and paste this sign-in token (good once, for {} s):\n{token}",
                page.trim_end_matches('/').to_owned() + "/",
                ttl.clamp(1, crate::page::MAX_TOKEN_SECS)
            );
        }
        RegistryCmd::VerifyAudit {
            ori,
            log,
            cosigned_dir,
        } => {
            println!(
                "{}",
                regulator::verify_audit_log(
                    &mut client,
                    &trust,
                    &ori,
                    &log,
                    cosigned_dir.as_deref()
                )
                .await?
            );
        }
        RegistryCmd::VerifyProof { file } => {
            println!("{}", regulator::verify_proof_file(&trust, &file)?);
        }
        RegistryCmd::CosignAudit { state_dir, ori } => {
            let oris = if ori.is_empty() {
                let view = regulator::fetch_verified(&mut client, &trust, None).await?;
                view.sealing_keys.keys().cloned().collect()
            } else {
                ori
            };
            let mut failed = 0;
            for o in &oris {
                match regulator::cosign_audit(&mut client, &trust, &signer, &state_dir, o).await {
                    Ok(regulator::AuditWitnessed::NoAnchor) => {
                        println!("{o}: no audit anchor yet")
                    }
                    Ok(regulator::AuditWitnessed::Unchanged { size }) => {
                        println!("{o}: unchanged since the {size} entries you cosigned")
                    }
                    Ok(regulator::AuditWitnessed::Cosigned { size, from, links }) => println!(
                        "{o}: cosigned the audit anchor at {size} entries ({links} anchor(s) checked{})",
                        if from == 0 {
                            String::new()
                        } else {
                            format!(", consistent with the {from} you cosigned before")
                        }
                    ),
                    Err(e) => {
                        failed += 1;
                        println!("{o}: REFUSED: {e}");
                    }
                }
            }
            if failed > 0 {
                return Err(Error::Usage(format!(
                    "{failed} of {} agencies' audit anchors did not check out (see above)",
                    oris.len()
                )));
            }
        }
        RegistryCmd::CosignRouting { state } => {
            let c = regulator::cosign_routing(&mut client, &trust, &signer, &state).await?;
            println!(
                "cosigned the broker's routing log at {} rows ({}; now {} cosignature(s))",
                c.size,
                if c.from == 0 {
                    "the first head you cosign".to_owned()
                } else {
                    format!("consistent with the {} rows you cosigned before", c.from)
                },
                c.cosignatures
            );
        }
        RegistryCmd::Cosign { state } => {
            let sth = regulator::cosign(&mut client, &trust, &signer, &state).await?;
            let head = alpr_proto::registry::verify_head(&trust, &sth, now)?;
            println!(
                "cosigned tree head of size {} (now {} cosignature(s))",
                head.size,
                head.cosigners.len()
            );
        }
    }
    Ok(())
}

/// The broker database of a broker that exists: host commands never create it.
fn open_existing(cfg: &BrokerConfig, config: &std::path::Path) -> Result<store::Db, Error> {
    if cfg.postgres.is_some() {
        return store::Db::open_at(&cfg.store_location());
    }
    let path = cfg.db_path();
    if !path.exists() {
        return Err(Error::Usage(format!(
            "no broker database at {}: is data_dir in {} right? (`alpr-broker serve` creates it)",
            path.display(),
            config.display()
        )));
    }
    store::open(&path)
}

async fn run(cli: Cli) -> Result<(), Error> {
    let otlp = match &cli.command {
        Command::Serve { config } => BrokerConfig::load(config)?.telemetry.otlp_endpoint,
        _ => None,
    };
    let _telemetry = alpr_runtime::telemetry::init("alpr-broker", otlp.as_deref())?;
    match cli.command {
        Command::Registry { conn, cmd } => registry(conn, cmd).await,
        Command::CheckConfig { config } => {
            let cfg = BrokerConfig::load(&config)?;
            for line in crate::Broker::check_config(&cfg)? {
                println!("{line}");
            }
            println!("{}: OK, the broker would start", config.display());
            Ok(())
        }
        Command::Serve { config } => {
            let cfg = BrokerConfig::load(&config)?;
            let running = crate::start(&cfg).await?;
            println!("alpr-broker serving on {}", running.addr);
            alpr_runtime::server::shutdown_signal().await;
            eprintln!("alpr-broker: shutting down");
            running.stop().await
        }
        Command::Agreements { config } => {
            let cfg = BrokerConfig::load(&config)?;
            let db = open_existing(&cfg, &config)?;
            let trust = alpr_pki::TrustStore::load(&cfg.tls.root, &cfg.tls.crls)?;
            let reg = crate::registry::Registry::load(&db, &trust)?;
            let now = alpr_pki::now_unix();
            for a in reg.views() {
                let status = if a.status == alpr_proto::agreement::AgreementStatus::Active
                    && a.terms.valid_until <= now
                {
                    "expired"
                } else {
                    a.status.as_str()
                };
                println!(
                    "{} {} -> {} registry-status={status} purposes={} look-back={}d valid_until={}",
                    a.id,
                    a.terms.provider_ori,
                    a.terms.requester_ori,
                    a.terms.purposes.join(","),
                    a.terms.max_lookback_days,
                    alpr_pki::fmt_time(a.terms.valid_until)
                );
            }
            println!(
                "(the registry's view; an agreement takes effect at a node once that node has synced a head that includes it, and where it requires one, a regulator's cosignature: see `alpr-node status` there)"
            );
            Ok(())
        }
        Command::RegulatorCode { config, cmd } => {
            let cfg = BrokerConfig::load(&config)?;
            let mut db = open_existing(&cfg, &config)?;
            let now = alpr_pki::now_unix();
            match cmd {
                CodeCmd::Enroll { cert, replace } => {
                    let trust = alpr_pki::TrustStore::load(&cfg.tls.root, &cfg.tls.crls)?;
                    let chain = alpr_pki::read_cert_chain(&cert)?;
                    let name = crate::page::enroll_code(&mut db, &trust, &chain, replace, now)?;
                    println!(
                        "enrolled a sign-in code for {name}: the regulator page shows its secret to {name} at their next sign-in with their key (never here)"
                    );
                }
                CodeCmd::List => {
                    let codes = store::regulator_codes(&db)?;
                    if codes.is_empty() {
                        println!(
                            "no regulator has a sign-in code (enroll one: alpr-broker regulator-code --config … enroll --cert reg.crt)"
                        );
                    }
                    for c in codes {
                        println!(
                            "{} enrolled {} {}",
                            c.regulator,
                            alpr_pki::fmt_time(c.enrolled_at),
                            match c.confirmed_at {
                                Some(t) => format!("set up {}", alpr_pki::fmt_time(t)),
                                None => "not set up yet".into(),
                            }
                        );
                    }
                }
                CodeCmd::Remove { regulator } => {
                    if !crate::page::remove_code(&mut db, &regulator, now)? {
                        return Err(Error::Usage(format!(
                            "{regulator} has no sign-in code (see `regulator-code list`)"
                        )));
                    }
                    println!("removed the sign-in code of {regulator}");
                }
            }
            Ok(())
        }
        Command::Log { config, verify } => {
            let cfg = BrokerConfig::load(&config)?;
            let db = open_existing(&cfg, &config)?;
            if verify {
                let r = store::verify_log(&db)?;
                println!(
                    "routing log intact: {} rows chained, the tree matching {} signed head(s){}",
                    r.chained,
                    r.heads,
                    if r.unchained_before > 0 {
                        format!(
                            " ({} older rows from before the log was chained)",
                            r.unchained_before
                        )
                    } else {
                        String::new()
                    }
                );
                return Ok(());
            }
            for e in store::read_log(&db)? {
                let mut v = serde_json::to_value(&e).map_err(|e| Error::Usage(e.to_string()))?;
                if let Some(t) = v.get("at").and_then(serde_json::Value::as_i64) {
                    v["at"] = alpr_pki::fmt_time(t).into();
                }
                println!(
                    "{}",
                    serde_json::to_string(&v).map_err(|e| Error::Usage(e.to_string()))?
                );
            }
            Ok(())
        }
    }
}
