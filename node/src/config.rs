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
    /// The written usage and privacy policy (Civil Code 1798.90.51 / SB 34). All seven
    /// elements must be filled in before sharing can be turned on.
    #[serde(default)]
    pub usage_policy: UsagePolicy,
    /// Account rules for the agency's searchers.
    #[serde(default)]
    pub accounts: AccountsConfig,
    /// How this node follows the agreement registry.
    #[serde(default)]
    pub registry: RegistryConfig,
    /// Tracing export.
    #[serde(default)]
    pub telemetry: TelemetryConfig,
    /// Where to serve Prometheus metrics at `/metrics` (plain HTTP; bind to loopback or a
    /// monitoring network). Off when absent.
    #[serde(default)]
    pub metrics_listen: Option<SocketAddr>,
    /// Where the admins' alerts go, and the scheduled self-audit.
    #[serde(default)]
    pub alerts: AlertsConfig,
    /// Sealed queries and answers: the broker routes what it cannot read.
    #[serde(default)]
    pub sealing: SealingConfig,
    /// Anchoring the audit log outside this node.
    #[serde(default)]
    pub audit: AuditConfig,
    /// Encryption of `node.db` and `audit.db` at rest.
    #[serde(default)]
    pub storage: StorageConfig,
    /// The web console for the agency's people (investigators, supervisors, auditors),
    /// on its own HTTPS listener. Off when absent.
    #[serde(default)]
    pub console: Option<ConsoleConfig>,
}

/// The web console (`[console]`): server-rendered pages over HTTPS (HTTP/1.1 and HTTP/2).
/// People sign in with a key their browser made and never lets out (WebCrypto, P-256)
/// plus an RFC 6238 code, and sign their own searches in the browser.
#[derive(Clone, Debug, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct ConsoleConfig {
    /// Address of the HTTPS listener.
    pub listen: SocketAddr,
    /// The web server's certificate chain (PEM). Absent: the node's own certificate
    /// (`[tls] cert`); browsers must then trust the state root (see DEPLOYMENT.md).
    #[serde(default)]
    pub cert: Option<PathBuf>,
    /// The web certificate's key (PEM); with `cert`.
    #[serde(default)]
    pub key: Option<PathBuf>,
    /// The agency CA certificate that issues people's certificates when a supervisor
    /// approves a browser's enrollment.
    pub person_ca_cert: PathBuf,
    /// The agency CA's key. The node holds it to issue person certificates only for
    /// keys a supervisor approved; keep the file readable by the node's user alone.
    pub person_ca_key: PathBuf,
    /// Validity of a person certificate issued at enrollment, days.
    #[serde(default = "default_person_days")]
    pub person_cert_days: u32,
    /// A signed-in session locks after this long without a request, seconds (CJIS: 30
    /// minutes at most).
    #[serde(default = "default_idle_lock")]
    pub idle_lock_secs: u64,
    /// Failed sign-ins (bad key proof or code) that lock an account's sign-in.
    #[serde(default = "default_lockout_attempts")]
    pub lockout_attempts: u32,
    /// The window in which those failures count, and how long the lock lasts, seconds.
    #[serde(default = "default_lockout_window")]
    pub lockout_window_secs: u64,
}

fn default_person_days() -> u32 {
    90
}
fn default_idle_lock() -> u64 {
    1800
}
fn default_lockout_attempts() -> u32 {
    5
}
fn default_lockout_window() -> u64 {
    900
}

impl ConsoleConfig {
    /// Load the agency CA that certifies people's browser keys, checking it is `ori`'s.
    pub fn person_ca(&self, ori: &str) -> Result<alpr_pki::issue::Authority, Error> {
        let ca = alpr_pki::issue::Authority::load(&self.person_ca_cert, &self.person_ca_key)?;
        match ca.agency()? {
            Some(a) if a.ori == ori => Ok(ca),
            _ => Err(Error::Config {
                path: self.person_ca_cert.clone(),
                reason: format!("[console] person_ca_cert is not {ori}'s agency CA"),
            }),
        }
    }

    /// A console on `listen` whose person certificates come from the given agency CA,
    /// every other setting at its default.
    pub fn new(listen: SocketAddr, person_ca_cert: PathBuf, person_ca_key: PathBuf) -> Self {
        Self {
            listen,
            cert: None,
            key: None,
            person_ca_cert,
            person_ca_key,
            person_cert_days: default_person_days(),
            idle_lock_secs: default_idle_lock(),
            lockout_attempts: default_lockout_attempts(),
            lockout_window_secs: default_lockout_window(),
        }
    }
}

/// Encryption at rest (CJIS 5.10.1.2). With a key-encryption key (KEK) configured, reads,
/// audit entries, held and hot-listed plates and sealing keys are stored encrypted under a
/// random data key; the data key is kept in the keyring file, wrapped by the KEK. The KEK
/// comes from exactly one of a file, an environment variable or a command (an HSM or KMS
/// client), and is never written by the node. Without a KEK the databases are plain.
#[derive(Clone, Debug, Default, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct StorageConfig {
    /// A file holding the KEK: 64 hexadecimal characters. It must not be readable by group
    /// or others (mode 0600 or stricter).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kek_file: Option<PathBuf>,
    /// An environment variable holding the KEK (64 hexadecimal characters).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kek_env: Option<String>,
    /// A command (program and arguments, no shell) that prints the KEK (64 hexadecimal
    /// characters) on its standard output and exits 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kek_command: Option<Vec<String>>,
    /// The keyring file: the data key wrapped by the KEK. Default `data_dir/keyring.json`.
    /// Back it up with the databases (it is useless without the KEK); losing it loses the
    /// data.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keyring: Option<PathBuf>,
    /// Keep the reads in this PostgreSQL database instead of `node.db` (for the largest
    /// agencies): a libpq connection string or `postgresql://` URL. Reads are partitioned
    /// there by capture day and retention drops whole days; everything else, the audit log
    /// included, stays in `data_dir`. One database per node. Not with a KEK: the node does
    /// not encrypt what it keeps in PostgreSQL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub postgres: Option<String>,
    /// The CA certificate (PEM) that issued the PostgreSQL server's certificate: with it,
    /// the connection is TLS and the server is verified; without it, it is not encrypted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub postgres_ca: Option<PathBuf>,
}

/// The audit log's anchoring (DESIGN §7): signed tree heads of the log are anchored at the
/// broker, which accepts only a head that extends the one anchored before, so a rewritten
/// log, a deleted tail or a second log shown to someone else is detected by anyone who
/// compares the log with the anchor.
#[derive(Clone, Debug, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct AuditConfig {
    /// How often to anchor while the log grows, seconds (also at start and at shutdown).
    /// Entries younger than the last anchor are the only ones whose deletion goes unseen.
    #[serde(default = "default_anchor_interval")]
    pub anchor_interval_secs: u64,
}

fn default_anchor_interval() -> u64 {
    300
}

impl Default for AuditConfig {
    fn default() -> Self {
        Self {
            anchor_interval_secs: default_anchor_interval(),
        }
    }
}

/// Sealing (DESIGN §5): queries leave this node sealed to each target's published key and
/// answers come back sealed to this node; inbound queries in the clear are refused.
#[derive(Clone, Debug, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct SealingConfig {
    /// Send sealed and answer only sealed queries (`SEAL_REQUIRED` for a clear one). Off
    /// only to measure what sealing costs, or while a federation moves to sealing: a clear
    /// query shows its plate, case number and reason to the broker.
    #[serde(default = "default_true")]
    pub require: bool,
    /// The suite of keys this node creates: `x25519` (DHKEM X25519, ChaCha20-Poly1305) or
    /// `xwing` (X-Wing: X25519 + ML-KEM-768, post-quantum hybrid).
    #[serde(default = "default_suite")]
    pub suite: String,
    /// How long a rotated-out key still opens boxes, seconds (senders whose registry view
    /// is older still seal to it); then it is deleted.
    #[serde(default = "default_grace")]
    pub grace_secs: u64,
}

fn default_true() -> bool {
    true
}

fn default_suite() -> String {
    "x25519".into()
}

fn default_grace() -> u64 {
    86_400
}

impl Default for SealingConfig {
    fn default() -> Self {
        Self {
            require: true,
            suite: default_suite(),
            grace_secs: default_grace(),
        }
    }
}

impl SealingConfig {
    /// The configured suite.
    pub fn suite(&self) -> Result<alpr_proto::seal::Suite, String> {
        match self.suite.as_str() {
            "x25519" => Ok(alpr_proto::seal::Suite::X25519ChaCha20),
            "xwing" => Ok(alpr_proto::seal::Suite::XWingChaCha20),
            other => Err(format!(
                "[sealing] suite {other:?} is not one of \"x25519\", \"xwing\""
            )),
        }
    }
}

/// The admins' alerts (every `alert`, `registry_fork` and `hot-list hit` entry, each change
/// of who can query this node, and a failing audit log) and the scheduled self-audit.
/// Alerts always go to the node's log; these sinks are added.
#[derive(Clone, Debug, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct AlertsConfig {
    /// POST each alert as JSON to this URL (plain `http://`; put a relay in front for
    /// anything else).
    #[serde(default)]
    pub webhook: Option<String>,
    /// Run this command (program and arguments) for each alert, the JSON on its stdin.
    #[serde(default)]
    pub command: Option<Vec<String>>,
    /// How long one delivery may take, milliseconds.
    #[serde(default = "default_alert_timeout")]
    pub timeout_ms: u64,
    /// How often the node audits itself (chain, checkpoints, agreements about to expire),
    /// seconds; daily by default.
    #[serde(default = "default_audit_interval")]
    pub audit_interval_secs: u64,
    /// Alert this many days before an agreement this node shares under expires.
    #[serde(default = "default_expiry_warning")]
    pub expiry_warning_days: u32,
}

fn default_alert_timeout() -> u64 {
    5_000
}

fn default_audit_interval() -> u64 {
    86_400
}

fn default_expiry_warning() -> u32 {
    7
}

impl Default for AlertsConfig {
    fn default() -> Self {
        Self {
            webhook: None,
            command: None,
            timeout_ms: default_alert_timeout(),
            audit_interval_secs: default_audit_interval(),
            expiry_warning_days: default_expiry_warning(),
        }
    }
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

/// How the node follows the broker's agreement registry.
#[derive(Clone, Debug, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct RegistryConfig {
    /// Trust only tree heads cosigned by a regulator of this agency's state, so the broker
    /// cannot show this node a different history than the regulator saw.
    #[serde(default)]
    pub require_cosignature: bool,
    /// How often to sync the registry, seconds (also at start).
    #[serde(default = "default_sync")]
    pub sync_interval_secs: u64,
    /// Refuse to answer (`REGISTRY_STALE`, logged and alerted) while the newest verified
    /// registry head is older than this, seconds: a broker that freezes this node's view
    /// — withholding a revocation or a regulator's suspension — stops every answer within
    /// this bound. Answering resumes by itself with the next fresh, consistent head.
    #[serde(default = "default_max_head_age")]
    pub max_head_age_secs: u64,
    /// What a sync fetches: `"full"` (default) every registry entry, verified against the
    /// signed root; `"subjects"` only the entries concerning this agency and the sealing
    /// keys of the agencies it holds agreements with, each with its proof against the
    /// signed head and subjects index — the cost of a sync then does not grow with other
    /// agencies' churn (a national registry). Both check the new head extends the last.
    #[serde(default)]
    pub sync: SyncMode,
}

/// What a registry sync fetches ([`RegistryConfig::sync`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SyncMode {
    /// Every entry.
    #[default]
    Full,
    /// This agency's own subjects, with proofs.
    Subjects,
}

fn default_sync() -> u64 {
    30
}

fn default_max_head_age() -> u64 {
    600
}

impl Default for RegistryConfig {
    fn default() -> Self {
        Self {
            require_cosignature: false,
            sync_interval_secs: default_sync(),
            max_head_age_secs: default_max_head_age(),
            sync: SyncMode::Full,
        }
    }
}

/// The seven elements of a usage and privacy policy (Civil Code 1798.90.51(b), SB 34).
#[derive(Clone, Debug, Default, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct UsagePolicy {
    /// The authorized purposes for using the ALPR system and collecting ALPR information.
    #[serde(default)]
    pub authorized_purposes: String,
    /// Job titles of the people authorized to use or access the system, and their training.
    #[serde(default)]
    pub authorized_users: String,
    /// How the system is monitored for security and compliance with privacy laws.
    #[serde(default)]
    pub monitoring: String,
    /// Purposes of, process for, and restrictions on sharing or transferring ALPR information.
    #[serde(default)]
    pub sharing: String,
    /// Title of the official custodian of the system.
    #[serde(default)]
    pub custodian: String,
    /// Measures that ensure accuracy and correct data errors.
    #[serde(default)]
    pub accuracy: String,
    /// How long ALPR information is kept and how it is destroyed.
    #[serde(default)]
    pub retention: String,
}

impl UsagePolicy {
    /// Names of the elements that are still empty.
    pub fn missing(&self) -> Vec<&'static str> {
        [
            ("authorized_purposes", &self.authorized_purposes),
            ("authorized_users", &self.authorized_users),
            ("monitoring", &self.monitoring),
            ("sharing", &self.sharing),
            ("custodian", &self.custodian),
            ("accuracy", &self.accuracy),
            ("retention", &self.retention),
        ]
        .into_iter()
        .filter(|(_, v)| v.trim().len() < 10)
        .map(|(k, _)| k)
        .collect()
    }
}

/// Who may search, and for how long an approval and a training stay good.
#[derive(Clone, Debug, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct AccountsConfig {
    /// Training must have been completed within this many days (refresher interval).
    #[serde(default = "default_training_days")]
    pub training_valid_days: u32,
    /// An account not used for this many days is inactive until re-approved.
    #[serde(default = "default_idle_days")]
    pub idle_days: u32,
}

fn default_training_days() -> u32 {
    365
}
fn default_idle_days() -> u32 {
    90
}

impl Default for AccountsConfig {
    fn default() -> Self {
        Self {
            training_valid_days: default_training_days(),
            idle_days: default_idle_days(),
        }
    }
}

/// Certificate files (shared with the other daemon).
pub use alpr_runtime::config::TlsConfig;

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

/// The agency's own rules for its data. The runtime switches (sharing on, refuse-all,
/// refused requesters) are not here: they live in the node's database and change only by
/// an admin's logged command (`alpr-node admin ...`). A new node is closed.
#[derive(Clone, Debug, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyConfig {
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
    /// How often the retention purge runs, seconds (it also runs at start).
    #[serde(default = "default_purge_interval")]
    pub purge_interval_secs: u64,
    /// Most agencies one inbound query may name (a wide "national lookup" fans out to
    /// hundreds); more is refused (`FAN_OUT_LIMIT`, logged). 0: the state's cap only.
    #[serde(default)]
    pub max_query_targets: u32,
    /// Most inbound queries accepted per requesting agency per minute.
    #[serde(default = "default_rate")]
    pub max_queries_per_minute: u32,
    /// Answer registered owners' requests for the data held about their own vehicle
    /// (`alpr-node owner-request`) even where the state's rules do not grant the right
    /// (`owner_access`); where they do, requests are answered whatever this says.
    #[serde(default)]
    pub owner_requests: bool,
    /// Answer partners' wildcard-plate searches (up to 2 unknown characters among at least 5
    /// known, over at most 7 days) where their agreement lists the `wildcard` shape. Off:
    /// full plates only (`SHAPE_NOT_ALLOWED`).
    #[serde(default)]
    pub partner_wildcards: bool,
}

fn default_purge_interval() -> u64 {
    3600
}

fn default_rate() -> u32 {
    120
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
            blocked_purposes: vec![],
            blocked_terms: vec![],
            retention_days: default_retention(),
            no_warrant_lookback_days: default_no_warrant(),
            purge_interval_secs: default_purge_interval(),
            max_queries_per_minute: default_rate(),
            max_query_targets: 0,
            owner_requests: false,
            partner_wildcards: false,
        }
    }
}

impl PolicyConfig {
    /// The policy as admission sees it, with the current runtime switches.
    pub fn to_node_policy(&self, switches: &crate::settings::Switches) -> NodePolicy {
        NodePolicy {
            sharing_enabled: switches.sharing_enabled,
            refuse_all: switches.refuse_all,
            refused_requesters: switches.refused_requesters.clone(),
            blocked_purposes: self.blocked_purposes.clone(),
            blocked_terms: self.blocked_terms.clone(),
            retention_days: self.retention_days,
            no_warrant_lookback_days: self.no_warrant_lookback_days,
            require_sealed: false,
            max_targets: self.max_query_targets,
            request_approved: false,
            allow_wildcard: self.partner_wildcards,
        }
    }
}

impl NodeConfig {
    /// Read and validate a config file. Relative paths are resolved against its directory.
    pub fn load(path: &Path) -> Result<Self, Error> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        let mut cfg: Self = toml::from_str(&text).map_err(|e| Error::Config {
            path: path.into(),
            reason: alpr_runtime::config::describe_toml_error(&text, &e),
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
        alpr_runtime::config::resolve_path(&mut self.data_dir, base);
        self.tls.resolve_paths(base);
        for p in [
            &mut self.storage.kek_file,
            &mut self.storage.keyring,
            &mut self.storage.postgres_ca,
        ]
        .into_iter()
        .flatten()
        {
            alpr_runtime::config::resolve_path(p, base);
        }
        if let Some(c) = &mut self.console {
            alpr_runtime::config::resolve_path(&mut c.person_ca_cert, base);
            alpr_runtime::config::resolve_path(&mut c.person_ca_key, base);
            for p in [&mut c.cert, &mut c.key].into_iter().flatten() {
                alpr_runtime::config::resolve_path(p, base);
            }
        }
    }

    /// Check values that TOML types cannot.
    pub fn validate(&self) -> Result<(), String> {
        alpr_pki::claims::validate_ori(&self.ori).map_err(|e| e.to_string())?;
        if self.policy.max_queries_per_minute == 0 {
            return Err("policy.max_queries_per_minute must be at least 1".into());
        }
        for p in &self.policy.blocked_purposes {
            alpr_proto::purpose::lookup(p).map_err(|e| format!("policy.blocked_purposes: {e}"))?;
        }
        if let Some(c) = &self.console {
            if c.cert.is_some() != c.key.is_some() {
                return Err("console.cert and console.key go together: set both or neither".into());
            }
            if c.idle_lock_secs == 0 || c.idle_lock_secs > 1800 {
                return Err("console.idle_lock_secs must be 1 to 1800 (CJIS: a session locks after at most 30 minutes idle)".into());
            }
            if c.lockout_attempts == 0 || c.lockout_attempts > 5 {
                return Err("console.lockout_attempts must be 1 to 5".into());
            }
            if c.person_cert_days == 0 || c.person_cert_days > 397 {
                return Err("console.person_cert_days must be 1 to 397".into());
            }
        }
        if self.policy.retention_days == 0 {
            return Err("policy.retention_days must be at least 1".into());
        }
        if let Some(w) = &self.alerts.webhook
            && !w.starts_with("http://")
        {
            return Err(format!(
                "alerts.webhook {w:?} must be an http:// URL (put a relay in front for https)"
            ));
        }
        if self.alerts.command.as_ref().is_some_and(Vec::is_empty) {
            return Err("alerts.command must name a program".into());
        }
        if self.registry.max_head_age_secs <= self.registry.sync_interval_secs {
            return Err(format!(
                "registry.max_head_age_secs ({}) must exceed registry.sync_interval_secs ({}), or the view goes stale between syncs",
                self.registry.max_head_age_secs, self.registry.sync_interval_secs
            ));
        }
        if self.audit.anchor_interval_secs == 0 {
            return Err("audit.anchor_interval_secs must be at least 1".into());
        }
        self.sealing.suite()?;
        let s = &self.storage;
        let sources =
            s.kek_file.is_some() as u8 + s.kek_env.is_some() as u8 + s.kek_command.is_some() as u8;
        if sources > 1 {
            return Err("storage: set only one of kek_file, kek_env and kek_command".into());
        }
        if s.kek_command.as_ref().is_some_and(Vec::is_empty) {
            return Err("storage.kek_command must name a program".into());
        }
        if s.kek_env.as_ref().is_some_and(String::is_empty) {
            return Err("storage.kek_env must name an environment variable".into());
        }
        if let Some(url) = &s.postgres {
            if sources > 0 {
                return Err("storage.postgres cannot be used with a key-encryption key (kek_file, kek_env or kek_command): the node does not encrypt reads kept in PostgreSQL; choose one".into());
            }
            alpr_runtime::pgpool::parse(url).map_err(|e| format!("storage.{e}"))?;
        } else if s.postgres_ca.is_some() {
            return Err("storage.postgres_ca is set but storage.postgres is not".into());
        }
        if sources == 0 && s.keyring.is_some() {
            return Err(
                "storage.keyring is set but no kek_file, kek_env or kek_command: the keyring cannot be opened"
                    .into(),
            );
        }
        Ok(())
    }

    /// Path of the SQLite database of reads, agreements and accounts.
    pub fn db_path(&self) -> PathBuf {
        self.data_dir.join("node.db")
    }

    /// Path of the audit log database.
    pub fn audit_path(&self) -> PathBuf {
        self.data_dir.join("audit.db")
    }

    /// Path of the keyring (the wrapped data key).
    pub fn keyring_path(&self) -> PathBuf {
        self.storage
            .keyring
            .clone()
            .unwrap_or_else(|| self.data_dir.join("keyring.json"))
    }
}
