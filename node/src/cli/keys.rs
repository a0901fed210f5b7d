//! `alpr-node keys`: encryption at rest — a new key-encryption key (KEK), the keyring's
//! status, and rotation of the KEK (the data key is re-wrapped; no data is re-encrypted).

use std::path::PathBuf;

use clap::{Args, Subcommand};

use crate::audit::{AuditEntry, Decision, Event};
use crate::keyring::{self, KekSource};
use crate::{Error, store};

/// Key commands.
#[derive(Subcommand, Debug)]
pub enum KeysCmd {
    /// Write a new random KEK (64 hexadecimal characters) into a new file, mode 0600. An
    /// existing file is never overwritten. Name it in `[storage] kek_file`, or load it into
    /// your KMS and name the command that fetches it in `kek_command`.
    NewKek {
        /// The file to create.
        #[arg(long)]
        out: PathBuf,
    },
    /// Show whether the databases are encrypted, under which data key, and whether the
    /// configured KEK opens the keyring.
    Status {
        /// Node config file.
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Re-wrap the data key under a new KEK. Afterwards point `[storage]` at the new KEK
    /// (the old one no longer opens the keyring) and restart the daemon. Logged.
    Rotate {
        /// Node config file (its `[storage]` names the current KEK).
        #[arg(long, short)]
        config: PathBuf,
        /// Where the new KEK comes from.
        #[command(flatten)]
        to: NewKek,
    },
}

/// The new KEK of a rotation: exactly one source.
#[derive(Args, Debug)]
#[group(required = true, multiple = false)]
pub struct NewKek {
    /// A file holding the new KEK (mode 0600).
    #[arg(long)]
    to_file: Option<PathBuf>,
    /// An environment variable holding the new KEK.
    #[arg(long)]
    to_env: Option<String>,
    /// A command printing the new KEK (program and arguments, split on white space).
    #[arg(long)]
    to_command: Option<String>,
}

impl NewKek {
    fn source(&self) -> Result<KekSource, Error> {
        if let Some(p) = &self.to_file {
            return Ok(KekSource::File(p.clone()));
        }
        if let Some(v) = &self.to_env {
            return Ok(KekSource::Env(v.clone()));
        }
        let argv: Vec<String> = self
            .to_command
            .as_deref()
            .unwrap_or("")
            .split_whitespace()
            .map(str::to_owned)
            .collect();
        if argv.is_empty() {
            return Err(Error::Usage(
                "name the new KEK with --to-file, --to-env or --to-command".into(),
            ));
        }
        Ok(KekSource::Command(argv))
    }
}

/// Run a key command.
pub fn run(cmd: KeysCmd) -> Result<(), Error> {
    match cmd {
        KeysCmd::NewKek { out } => {
            let id = keyring::write_new_kek(&out)?;
            println!(
                "wrote a new KEK to {} (mode 0600), fingerprint {id}; keep it apart from the data and its backups",
                out.display()
            );
            Ok(())
        }
        KeysCmd::Status { config } => {
            let cfg = super::load_existing(&config)?;
            for db in [cfg.db_path(), cfg.audit_path()] {
                match store::encryption_marker(&db)? {
                    Some(id) => println!("{}: encrypted, data key {id}", db.display()),
                    None => println!("{}: plain (not encrypted)", db.display()),
                }
            }
            match KekSource::from_config(&cfg.storage) {
                None => println!("[storage]: no KEK configured; the databases are kept plain"),
                Some(source) => {
                    let kek = source.load()?;
                    let keys = keyring::open(&cfg.keyring_path(), &kek)?;
                    println!(
                        "keyring {}: data key {}, opened by the {source} (fingerprint {})",
                        cfg.keyring_path().display(),
                        keys.key_id(),
                        kek.id()
                    );
                }
            }
            Ok(())
        }
        KeysCmd::Rotate { config, to } => {
            let cfg = super::load_existing(&config)?;
            let Some(old_source) = KekSource::from_config(&cfg.storage) else {
                return Err(Error::Usage(format!(
                    "{} configures no KEK: the databases are plain and there is nothing to re-wrap",
                    config.display()
                )));
            };
            let old = old_source.load()?;
            let new_source = to.source()?;
            let new = new_source.load()?;
            if new.id() == old.id() {
                return Err(Error::Usage(format!(
                    "the new KEK ({new_source}) is the current one (fingerprint {}); nothing to do",
                    old.id()
                )));
            }
            let path = cfg.keyring_path();
            let now = alpr_pki::now_unix();
            let data_key = keyring::rewrap(&path, &old, &new, now)?;
            let keys = keyring::open(&path, &new)?;
            store::AuditLog::open_with(&cfg.audit_path(), None, Some(std::sync::Arc::new(keys)))?
                .append(vec![AuditEntry {
                detail: Some(format!(
                    "data key {data_key} re-wrapped from KEK {} to KEK {} ({new_source})",
                    old.id(),
                    new.id()
                )),
                ..AuditEntry::new(now, Event::DataKey, Decision::Ok)
            }])?;
            println!(
                "keyring {} re-wrapped: data key {data_key} now opens with KEK {} only. Point [storage] in {} at the {new_source}, then restart the daemon.",
                path.display(),
                new.id(),
                config.display()
            );
            Ok(())
        }
    }
}
