//! The broker's TOML configuration. These doc comments are the reference documentation.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::Error;

/// `broker.toml`.
#[derive(Clone, Debug, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct BrokerConfig {
    /// Address to serve on.
    pub listen: SocketAddr,
    /// Directory for the broker's SQLite database (registry and routing log; never reads),
    /// used unless `postgres` is set.
    pub data_dir: PathBuf,
    /// PostgreSQL connection string (`host=db1 port=5432 user=alpr_broker dbname=registry
    /// password=…`, or a `postgresql://` URL). When set, the broker keeps its registry log,
    /// replay claims, routing log and anchors in that database instead of
    /// `data_dir/broker.db`, and any number of brokers with the same setting run as
    /// replicas of one broker behind an ordinary TCP load balancer: registry appends never
    /// fork, a query replayed to another replica is refused, every replica sees the others'
    /// registrations before deciding. The connection is not encrypted: keep the database on
    /// the brokers' own network (see docs/DEPLOYMENT.md).
    #[serde(default)]
    pub postgres: Option<String>,
    /// PEM file of the certificate authority that issued the PostgreSQL server's
    /// certificate. With it the broker reaches `postgres` only over TLS (rustls), the
    /// server's certificate and host name verified, whatever the connection string's
    /// `sslmode` says; without it the connection is not encrypted (`check-config` says so).
    #[serde(default)]
    pub postgres_ca: Option<PathBuf>,
    /// Certificates.
    pub tls: TlsConfig,
    /// Deadline for the target nodes' answers, milliseconds, counted from when the query
    /// reaches the broker (capped by the query's remaining lifetime).
    #[serde(default = "default_deadline")]
    pub deadline_ms: u64,
    /// Address of the read-only regulator web page (HTTPS with the broker's certificate;
    /// bind it to a regulator-only network). Access needs a short-lived sign-in token signed
    /// with a regulator's key (`alpr-broker registry signin-link`), pasted into the page's
    /// sign-in form. Off when absent.
    #[serde(default)]
    pub regulator_page: Option<SocketAddr>,
    /// Longest agreement term accepted at registration, days (a change is a new agreement).
    #[serde(default = "default_max_term")]
    pub max_agreement_days: u32,
    /// How often to sign the registry's current tree head again, seconds, even when
    /// nothing changed: nodes refuse to answer once their newest head is older than their
    /// own bound (`max_head_age_secs`, default 600), so keep this well below it.
    #[serde(default = "default_head_interval")]
    pub head_interval_secs: u64,
    /// Where each agency's node is reached.
    #[serde(default)]
    pub nodes: Vec<NodeRoute>,
    /// Tracing export.
    #[serde(default)]
    pub telemetry: TelemetryConfig,
    /// Where to serve Prometheus metrics at `/metrics` (plain HTTP; bind to loopback or a
    /// monitoring network). Off when absent.
    #[serde(default)]
    pub metrics_listen: Option<SocketAddr>,
}

/// Tracing export. Spans leave the machine only when an endpoint is set.
#[derive(Clone, Debug, Default, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct TelemetryConfig {
    /// OTLP/gRPC collector endpoint, e.g. `http://127.0.0.1:4317`. Unset: no export
    /// (`OTEL_EXPORTER_OTLP_ENDPOINT` is honoured too).
    #[serde(default)]
    pub otlp_endpoint: Option<String>,
}

fn default_head_interval() -> u64 {
    60
}

fn default_max_term() -> u32 {
    365
}

fn default_deadline() -> u64 {
    3000
}

/// Certificate files (shared with the other daemon).
pub use alpr_runtime::config::TlsConfig;

/// How to reach one agency's node.
#[derive(Clone, Debug, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct NodeRoute {
    /// The agency's ORI.
    pub ori: String,
    /// `host:port`.
    pub addr: String,
    /// Name the node's certificate must carry.
    #[serde(default = "default_server_name")]
    pub server_name: String,
}

fn default_server_name() -> String {
    "localhost".into()
}

impl BrokerConfig {
    /// Read and validate a config file. Relative paths are resolved against its directory.
    pub fn load(path: &Path) -> Result<Self, Error> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        let mut cfg: Self = toml::from_str(&text).map_err(|e| Error::Config {
            path: path.into(),
            reason: alpr_runtime::config::describe_toml_error(&text, &e),
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        alpr_runtime::config::resolve_path(&mut cfg.data_dir, base);
        if let Some(ca) = cfg.postgres_ca.as_mut() {
            alpr_runtime::config::resolve_path(ca, base);
        }
        cfg.tls.resolve_paths(base);
        cfg.validate().map_err(|reason| Error::Config {
            path: path.into(),
            reason,
        })?;
        Ok(cfg)
    }

    /// Check values that TOML types cannot.
    pub fn validate(&self) -> Result<(), String> {
        let mut seen = std::collections::HashSet::new();
        for n in &self.nodes {
            alpr_pki::claims::validate_ori(&n.ori).map_err(|e| format!("nodes: {e}"))?;
            if !seen.insert(&n.ori) {
                return Err(format!("nodes: {} listed twice", n.ori));
            }
        }
        if self.max_agreement_days == 0 || self.max_agreement_days > 366 {
            return Err("max_agreement_days must be 1..366".into());
        }
        if self.postgres_ca.is_some() && self.postgres.is_none() {
            return Err("postgres_ca is set but postgres is not".into());
        }
        if let Some(url) = &self.postgres {
            url.parse::<postgres::Config>()
                .map_err(|e| format!("postgres: the connection string does not parse: {e}"))?;
        }
        if self.deadline_ms == 0 {
            return Err("deadline_ms must be positive".into());
        }
        if self.head_interval_secs == 0 || self.head_interval_secs > 3600 {
            return Err("head_interval_secs must be 1..3600".into());
        }
        Ok(())
    }

    /// Path of the SQLite database.
    pub fn db_path(&self) -> PathBuf {
        self.data_dir.join("broker.db")
    }

    /// Where the store is: PostgreSQL when `postgres` is set, else the SQLite file.
    pub fn store_location(&self) -> crate::store::Location {
        match &self.postgres {
            Some(url) => crate::store::Location::Postgres {
                url: url.clone(),
                ca: self.postgres_ca.clone(),
            },
            None => crate::store::Location::Sqlite(self.db_path()),
        }
    }
}

#[cfg(test)]
mod tests;
