//! `alpr-node seal-key`: this node's sealing key (DESIGN §5, sealed queries and answers).

use std::path::PathBuf;

use clap::Subcommand;

use crate::{Error, Node, store};

/// Sealing-key commands.
#[derive(Subcommand, Debug)]
pub enum SealKeyCmd {
    /// Create this node's first sealing key (refused if it has one: use `rotate`). A node
    /// also creates one when it first opens its database.
    Create {
        /// Node config file.
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Show this node's keys (the current one and those still in their grace period) and
    /// whether its own verified registry view shows the current one published.
    Show {
        /// Node config file.
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Publish the current key to the registry now, signed with the node certificate (the
    /// daemon also does this after a registry sync whenever its view lacks the key).
    Publish {
        /// Node config file.
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Make a new current key and publish it. The previous key still opens boxes for
    /// `[sealing] grace_secs` (senders with an older registry view), then it is deleted.
    Rotate {
        /// Node config file.
        #[arg(long, short)]
        config: PathBuf,
        /// Only create the key; the daemon publishes it after its next registry sync.
        #[arg(long)]
        no_publish: bool,
    },
}

/// Run one sealing-key command.
pub async fn run(cmd: SealKeyCmd) -> Result<(), Error> {
    match cmd {
        SealKeyCmd::Create { config } => {
            let cfg = super::load_existing(&config)?;
            if let Some(k) = store::sealing::own_keys(&cfg.open_db()?)?.first() {
                return Err(Error::Usage(format!(
                    "this node already has sealing key {} (created {}); `alpr-node seal-key rotate` replaces it",
                    hex::encode(&k.key_id),
                    alpr_pki::fmt_time(k.created_at)
                )));
            }
            let node = Node::open(&cfg)?;
            show(&node)
        }
        SealKeyCmd::Show { config } => {
            let node = Node::open(&super::load_existing(&config)?)?;
            show(&node)
        }
        SealKeyCmd::Publish { config } => {
            let node = Node::open(&super::load_existing(&config)?)?;
            publish(&node).await
        }
        SealKeyCmd::Rotate { config, no_publish } => {
            let node = Node::open(&super::load_existing(&config)?)?;
            let id = node.rotate_sealing_key()?;
            println!(
                "new current sealing key {id}; the previous one opens boxes for another {} s",
                node.cfg.sealing.grace_secs
            );
            if no_publish {
                println!("not published: the daemon publishes it after its next registry sync");
                return Ok(());
            }
            publish(&node).await
        }
    }
}

async fn publish(node: &std::sync::Arc<Node>) -> Result<(), Error> {
    let index = node.publish_sealing_key().await?;
    let report = node.sync_registry().await?;
    println!(
        "published as registry entry {index}; registry synced to {} entries",
        report.to
    );
    Ok(())
}

fn show(node: &Node) -> Result<(), Error> {
    let in_view = node.published_key(node.ori());
    let published = node.published_index()?;
    for (i, h) in node.own_sealing_keys().iter().enumerate() {
        let id = h.pair.key_id();
        let mut line = format!("{} {:?}", hex::encode(id), h.pair.suite);
        match (i, h.retired_at) {
            (0, _) => {
                line.push_str(" current");
                match published {
                    Some(idx) => line.push_str(&format!(", published as registry entry {idx}")),
                    None => line.push_str(", NOT published yet (`alpr-node seal-key publish`, or the daemon's next sync)"),
                }
                match &in_view {
                    Some(p) if p.key_id == id => line.push_str(&format!(
                        ", in this node's verified registry view since {}",
                        alpr_pki::fmt_time(p.published_at)
                    )),
                    _ => line.push_str(", not yet in this node's verified registry view (next sync; with require_cosignature, once the regulator cosigns)"),
                }
            }
            (_, Some(r)) => line.push_str(&format!(
                " retired {}; opens boxes until {}",
                alpr_pki::fmt_time(r),
                alpr_pki::fmt_time(r + node.cfg.sealing.grace_secs as i64)
            )),
            (_, None) => line.push_str(" retired"),
        }
        println!("{line}");
    }
    Ok(())
}
