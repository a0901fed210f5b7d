//! More broker replicas for a federation whose broker store is in PostgreSQL
//! ([`Federation::start_replicated`]): each an `alpr-broker serve` process of this build, on
//! a config of its own that shares the first broker's certificates, routes and database,
//! put behind the federation's load balancer once it accepts connections. Killing one
//! (`SIGKILL`) is a crash: nothing it held in memory survives.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::Federation;

/// A broker replica process; killed when dropped.
#[derive(Debug)]
pub struct ReplicaProcess {
    /// Where it serves.
    pub addr: SocketAddr,
    /// Its config file.
    pub config: PathBuf,
    /// What it printed.
    pub log: PathBuf,
    child: Child,
}

impl ReplicaProcess {
    /// Kill it with `SIGKILL`, as a crash or a pulled plug would, and reap it.
    pub fn kill(&mut self) -> Result<()> {
        self.child.kill()?;
        self.child.wait()?;
        Ok(())
    }
}

impl Drop for ReplicaProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Where cargo put this build's binaries (`target/<profile>/`, beside `deps/` where test
/// and example executables live).
pub fn bin_dir() -> Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let mut dir = exe.parent().context("executable has no directory")?;
    if dir.ends_with("deps") || dir.ends_with("examples") {
        dir = dir.parent().context("no target directory")?;
    }
    Ok(dir.to_path_buf())
}

fn free_addr() -> Result<SocketAddr> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?)
}

impl Federation {
    /// The first broker's config with what replica `n` needs of its own: a free port, a
    /// data directory (`broker-n`), no regulator page or metrics; written to its directory.
    fn replica_config(&self, n: usize) -> Result<(alpr_broker::BrokerConfig, PathBuf)> {
        if self.balancer.is_none() {
            bail!("replicas need a broker store in PostgreSQL (Federation::start_replicated)");
        }
        let first = self.dir.join("broker").join("broker.toml");
        let mut cfg = alpr_broker::BrokerConfig::load(&first)?;
        let dir = self.dir.join(format!("broker-{n}"));
        std::fs::create_dir_all(&dir)?;
        cfg.listen = free_addr()?;
        cfg.data_dir = dir.clone();
        cfg.regulator_page = None;
        cfg.metrics_listen = None;
        let config = dir.join("broker.toml");
        std::fs::write(&config, toml::to_string(&cfg)?)?;
        Ok((cfg, config))
    }

    /// Start broker replica number `n` in this process (the demo's second replica) and put
    /// it behind the load balancer.
    pub async fn start_replica_in_process(&self, n: usize) -> Result<alpr_broker::RunningBroker> {
        let (cfg, _) = self.replica_config(n)?;
        let running = alpr_broker::start(&cfg).await?;
        if let Some(b) = &self.balancer {
            b.add(running.addr);
        }
        Ok(running)
    }

    /// Start broker replica number `n` (1, 2, …) as an `alpr-broker serve` process from
    /// `bin` (a directory holding this build's `alpr-broker`), wait until it accepts
    /// connections, and put it behind the load balancer.
    pub async fn start_replica(&self, bin: &Path, n: usize) -> Result<ReplicaProcess> {
        let exe = bin.join("alpr-broker");
        if !exe.exists() {
            bail!(
                "{} missing: build the workspace (cargo test --workspace builds it)",
                exe.display()
            );
        }
        let (cfg, config) = self.replica_config(n)?;
        let dir = cfg.data_dir.clone();
        let log = dir.join("broker.log");
        let out = std::fs::File::create(&log)?;
        let mut child = Command::new(&exe)
            .arg("serve")
            .arg("--config")
            .arg(&config)
            .stdout(out.try_clone()?)
            .stderr(out)
            .stdin(Stdio::null())
            .spawn()
            .with_context(|| format!("starting {}", exe.display()))?;
        let started = Instant::now();
        loop {
            if tokio::net::TcpStream::connect(cfg.listen).await.is_ok() {
                break;
            }
            if let Some(status) = child.try_wait()? {
                bail!(
                    "replica {n} exited ({status}): {}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                );
            }
            if started.elapsed() > Duration::from_secs(30) {
                let _ = child.kill();
                bail!("replica {n} did not start listening within 30 s");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        if let Some(b) = &self.balancer {
            b.add(cfg.listen);
        }
        Ok(ReplicaProcess {
            addr: cfg.listen,
            config,
            log,
            child,
        })
    }
}
