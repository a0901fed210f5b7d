//! The node's TOML configuration. These doc comments are the reference documentation.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use alpr_proto::admission::NodePolicy;
use serde::Deserialize;

use crate::Error;

/// `node.toml`.
#[derive(Clone, Debug, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct NodeConfig {
    /// This agency's ORI; must equal the ORI claim of the node certificate.
    pub ori: String,
    /// Address to serve on (inbound queries from the broker and local searches).
    pub listen: SocketAddr,
    /// Directory for the node's SQLite database (reads, audit log, agreements).
    pub data_dir: PathBuf,
    /// Certificates.
    pub tls: TlsConfig,
    /// The broker this node sends its investigators' queries through.
    pub broker: Option<PeerConfig>,
    /// The agency's sharing policy.
    #[serde(default)]
    pub policy: PolicyConfig,
}

/// Certificate files.
#[derive(Clone, Debug, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// The state root certificate (the only trust anchor).
    pub root: PathBuf,
    /// This node's certificate chain (leaf, agency CA).
    pub cert: PathBuf,
    /// This node's private key.
    pub key: PathBuf,
    /// CRL files to enforce (root's and every agency CA's).
    #[serde(default)]
    pub crls: Vec<PathBuf>,
}

/// How to reach a peer over mTLS.
#[derive(Clone, Debug, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct PeerConfig {
    /// `host:port`.
    pub addr: String,
    /// Name the peer's certificate must carry.
    #[serde(default = "default_server_name")]
    pub server_name: String,
    /// Deadline for one call, milliseconds.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
}

fn default_server_name() -> String {
    "localhost".into()
}
fn default_timeout_ms() -> u64 {
    5000
}

/// The agency's own say over its data. A new node is closed (`sharing_enabled = false`).
#[derive(Clone, Debug, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyConfig {
    /// Answer inbound queries at all. Off until the agency's admin turns it on.
    #[serde(default)]
    pub sharing_enabled: bool,
    /// Refuse every inbound query (an emergency stop).
    #[serde(default)]
    pub refuse_all: bool,
    /// ORIs whose queries are always refused.
    #[serde(default)]
    pub refused_requesters: Vec<String>,
    /// Purpose codes refused in addition to the state's rules.
    #[serde(default)]
    pub blocked_purposes: Vec<String>,
    /// Terms refused in reasons and case numbers in addition to the state's rules.
    #[serde(default)]
    pub blocked_terms: Vec<String>,
    /// Retention of reads, days; queries never reach further back.
    #[serde(default = "default_retention")]
    pub retention_days: u32,
    /// Windows reaching further back than this need a warrant reference (0: never).
    #[serde(default = "default_no_warrant")]
    pub no_warrant_lookback_days: u32,
}

fn default_retention() -> u32 {
    365
}
fn default_no_warrant() -> u32 {
    180
}

impl Default for PolicyConfig {
    fn default() -> Self {
        Self {
            sharing_enabled: false,
            refuse_all: false,
            refused_requesters: vec![],
            blocked_purposes: vec![],
            blocked_terms: vec![],
            retention_days: default_retention(),
            no_warrant_lookback_days: default_no_warrant(),
        }
    }
}

impl PolicyConfig {
    /// The policy as admission sees it.
    pub fn to_node_policy(&self) -> NodePolicy {
        NodePolicy {
            sharing_enabled: self.sharing_enabled,
            refuse_all: self.refuse_all,
            refused_requesters: self.refused_requesters.clone(),
            blocked_purposes: self.blocked_purposes.clone(),
            blocked_terms: self.blocked_terms.clone(),
            retention_days: self.retention_days,
            no_warrant_lookback_days: self.no_warrant_lookback_days,
        }
    }
}

impl NodeConfig {
    /// Read and validate a config file. Relative paths are resolved against its directory.
    pub fn load(path: &Path) -> Result<Self, Error> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        let mut cfg: Self = toml::from_str(&text).map_err(|e| Error::Config {
            path: path.into(),
            reason: e.message().to_owned(),
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        cfg.resolve(base);
        cfg.validate().map_err(|reason| Error::Config {
            path: path.into(),
            reason,
        })?;
        Ok(cfg)
    }

    fn resolve(&mut self, base: &Path) {
        let fix = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        fix(&mut self.data_dir);
        fix(&mut self.tls.root);
        fix(&mut self.tls.cert);
        fix(&mut self.tls.key);
        self.tls.crls.iter_mut().for_each(fix);
    }

    /// Check values that TOML types cannot.
    pub fn validate(&self) -> Result<(), String> {
        alpr_pki::claims::validate_ori(&self.ori).map_err(|e| e.to_string())?;
        for o in &self.policy.refused_requesters {
            alpr_pki::claims::validate_ori(o)
                .map_err(|e| format!("policy.refused_requesters: {e}"))?;
        }
        for p in &self.policy.blocked_purposes {
            alpr_proto::purpose::lookup(p).map_err(|e| format!("policy.blocked_purposes: {e}"))?;
        }
        if self.policy.retention_days == 0 {
            return Err("policy.retention_days must be at least 1".into());
        }
        Ok(())
    }

    /// Path of the SQLite database.
    pub fn db_path(&self) -> PathBuf {
        self.data_dir.join("node.db")
    }
}
