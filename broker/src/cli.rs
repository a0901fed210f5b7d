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
    },
}

/// Run the CLI and return the exit code.
pub fn main(cli: Cli) -> std::process::ExitCode {
    let filter =
        tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
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

async fn run(cli: Cli) -> Result<(), Error> {
    match cli.command {
        Command::Serve { config } => {
            let cfg = BrokerConfig::load(&config)?;
            let running = crate::start(&cfg).await?;
            println!("alpr-broker serving on {}", running.addr);
            shutdown_signal().await;
            eprintln!("alpr-broker: shutting down");
            running.stop().await
        }
        Command::Agreements { config } => {
            let cfg = BrokerConfig::load(&config)?;
            let conn = store::open(&cfg.db_path())?;
            let trust = alpr_pki::TrustStore::load(&cfg.tls.root, &cfg.tls.crls)?;
            let reg = crate::registry::Registry::load(&conn, &trust)?;
            for a in reg.views() {
                println!(
                    "{} {} -> {} status={} purposes={} look-back={}d valid_until={}",
                    a.id,
                    a.terms.provider_ori,
                    a.terms.requester_ori,
                    a.status.as_str(),
                    a.terms.purposes.join(","),
                    a.terms.max_lookback_days,
                    a.terms.valid_until
                );
            }
            Ok(())
        }
        Command::Log { config } => {
            let cfg = BrokerConfig::load(&config)?;
            let conn = store::open(&cfg.db_path())?;
            for e in store::read_log(&conn)? {
                println!(
                    "{}",
                    serde_json::to_string(&e).map_err(|e| Error::Usage(e.to_string()))?
                );
            }
            Ok(())
        }
    }
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        if let Ok(mut term) =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}
