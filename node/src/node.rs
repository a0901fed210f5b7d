//! The node: its identity, database, own agreements and own policy.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::Duration;

use alpr_pki::{AgencyClaims, Role, Signer, TrustStore};
use alpr_proto::RefusalReason;
use alpr_proto::admission::NodePolicy;
use alpr_proto::agreement::{self, AgreementView};
use alpr_proto::pb::SignedAgreement;
use alpr_proto::pb::broker_client::BrokerClient;
use alpr_proto::replay::ReplayMemory;
use alpr_proto::rules::StateRules;
use alpr_runtime::tls::TlsIdentity;
use tonic::transport::Channel;

use crate::audit::AuditEntry;
use crate::audit::{Decision, Event};
use crate::config::NodeConfig;
use crate::store::AuditLog;
use crate::{Error, store};

/// A running agency node's state, shared by its services.
pub struct Node {
    /// This agency's claims (from its verified node certificate).
    pub agency: AgencyClaims,
    /// Trust store and TLS server config, reloaded when CRLs change.
    pub(crate) tls: alpr_runtime::tls::ReloadableTls,
    pub(crate) signer: Arc<Signer>,
    /// The group-commit audit log.
    pub audit_log: AuditLog,
    db: Mutex<store::Db>,
    /// Read-only connections for lookups (parallel per-day reads, no write lock).
    pub(crate) readers: store::Readers,
    /// The data keys of `node.db` and `audit.db`, when they are encrypted.
    keys: Option<Arc<store::encryption::DataKeys>>,
    agreements: RwLock<Arc<Vec<AgreementView>>>,
    pub(crate) cfg: NodeConfig,
    pub(crate) rules: &'static StateRules,
    rate: Mutex<HashMap<String, (i64, u32)>>,
    /// Query ids already presented, made durable by the audit log and rebuilt from it.
    pub(crate) replay: ReplayMemory,
    pub(crate) broker: Option<(BrokerClient<Channel>, Duration)>,
    /// Counters and latency histograms.
    pub metrics: Arc<crate::metrics::NodeMetrics>,
    /// gRPC health of the running server (set once it serves).
    health: std::sync::OnceLock<alpr_runtime::server::Health>,
    /// The last CRL reload refusal alerted (each distinct one is alerted once).
    crl_refusal: Mutex<Option<String>>,
    /// Signing time of the newest verified registry head (0: none yet).
    pub(crate) head_time: std::sync::atomic::AtomicI64,
    /// Whether the current stale-registry episode has been alerted.
    pub(crate) stale_alerted: std::sync::atomic::AtomicBool,
    /// The admins' alert sinks.
    pub(crate) alerts: crate::alerts::Alerts,
    /// Whether the current audit-failure episode has been alerted.
    audit_failing: std::sync::atomic::AtomicBool,
    /// Held while a state change and its entry are written, and while the state is checked.
    pub(crate) state_lock: Mutex<()>,
    /// The digest of a state found edited outside the log, until an admin acknowledges.
    pub(crate) state_edited: Mutex<Option<String>>,
    /// The state digest the audit log last recorded (kept as entries are written, read
    /// from the log once at start).
    pub(crate) recorded_state: Mutex<Option<String>>,
    /// This node's sealing keys and the published keys of the others.
    pub(crate) sealing: crate::sealing::Keys,
    /// Held for the whole of one registry sync: two syncs at once (the daemon's and an
    /// operator's) would fetch and append the same leaves.
    pub(crate) sync_lock: tokio::sync::Mutex<()>,
    /// Held while this node checks whether to publish its sealing key and does.
    pub(crate) publish_lock: tokio::sync::Mutex<()>,
    /// One audit anchoring at a time (the daemon's round, shutdown, an operator's command).
    pub(crate) anchor_lock: tokio::sync::Mutex<()>,
    /// The audit entries checked so far by anchoring (a frontier of the tree they give).
    pub(crate) audit_checker: Mutex<Option<alpr_proto::auditlog::LogChecker>>,
    /// Woken when ingest queues hit reports of shared hot lists ([`crate::shares`]).
    pub(crate) hits_queued: tokio::sync::Notify,
    /// The right edge of the registry tree this node verified (built from its stored leaf
    /// hashes on the first sync), so a sync hashes only the new leaves.
    pub(crate) registry_frontier: Mutex<Option<alpr_proto::merkle::Frontier>>,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node")
            .field("agency", &self.agency)
            .finish_non_exhaustive()
    }
}

impl Node {
    /// Check everything a start checks short of opening the databases — the config, the
    /// root and every CRL file, the node certificate (chain, revocation, role, ORI), that
    /// the key belongs to it, the state rules, a peer address for the broker — and say
    /// what was found, one line each.
    pub fn check_config(cfg: &NodeConfig) -> Result<Vec<String>, Error> {
        let (trust, signer, _, agency, rules) = Self::identity(cfg)?;
        let id = trust.verify(signer.chain(), alpr_pki::now_unix())?;
        let mut out = vec![
            format!(
                "node certificate {}: {} ({}), valid until {}",
                cfg.tls.cert.display(),
                agency.ori,
                agency.name,
                alpr_pki::fmt_time(id.not_after)
            ),
            format!(
                "trust: root {} and {} CRL file(s), each parsed and current",
                cfg.tls.root.display(),
                cfg.tls.crls.len()
            ),
            format!(
                "state rules {}; retention {} days{}{}",
                rules.version,
                retention_in_force(cfg.policy.retention_days, rules),
                match StateRules::audit_retention_floor([rules]) {
                    Some((days, _)) => format!("; audit log kept at least {days} days"),
                    None => String::new(),
                },
                match &rules.report {
                    Some(r) => format!(
                        "; public report of {} searches {} within {} days of each period",
                        r.covers.replace('_', "-"),
                        r.every,
                        r.publish_within_days
                    ),
                    None => String::new(),
                }
            ),
            format!(
                "system {} {}{}",
                alpr_proto::rules::SYSTEM_PRODUCT,
                alpr_proto::rules::SYSTEM_VERSION,
                match rules.check_system(
                    alpr_proto::rules::SYSTEM_PRODUCT,
                    alpr_proto::rules::SYSTEM_VERSION
                ) {
                    Ok(()) if rules.system_approval_required =>
                        " (approved by the state)".to_owned(),
                    Ok(()) => String::new(),
                    Err(e) => format!(": {} (every query will be refused)", e.detail()),
                }
            ),
        ];
        match &cfg.broker {
            Some(b) => out.push(format!("broker {} (TLS name {})", b.addr, b.server_name)),
            None => out.push("no [broker]: this node cannot send or sync".into()),
        }
        let missing = cfg.usage_policy.missing();
        out.push(if missing.is_empty() {
            "usage and privacy policy complete: sharing can be turned on".into()
        } else {
            format!(
                "usage and privacy policy incomplete (sharing stays off): {}",
                missing.join(", ")
            )
        });
        out.push(format!(
            "data_dir {} ({})",
            cfg.data_dir.display(),
            if cfg.db_path().exists() {
                "node database present"
            } else {
                "no database yet: `serve` creates it"
            }
        ));
        out.push(match crate::keyring::KekSource::from_config(&cfg.storage) {
            None => "storage: plain — no [storage] KEK, so node.db and audit.db are not encrypted at rest".into(),
            Some(source) => {
                let kek = source.load()?;
                let ring = cfg.keyring_path();
                if ring.exists() {
                    let keys = crate::keyring::open(&ring, &kek)?;
                    format!(
                        "storage: encrypted at rest, data key {} (keyring {}, opened by the {source})",
                        keys.key_id(),
                        ring.display()
                    )
                } else {
                    format!(
                        "storage: encrypted at rest; the {source} (fingerprint {}) loads; the keyring {} is made at first start",
                        kek.id(),
                        ring.display()
                    )
                }
            }
        });
        if let Some(pg) = cfg.postgres_reads()? {
            let days = pg.partitions()?;
            out.push(format!(
                "reads: in {} ({} reads in {} day partitions; {})",
                pg.label(),
                days.iter().map(|(_, n)| n).sum::<i64>(),
                days.len(),
                match &cfg.storage.postgres_ca {
                    Some(ca) => format!("TLS, server verified against {}", ca.display()),
                    None => "connection NOT encrypted: set storage.postgres_ca".into(),
                }
            ));
        }
        if let Some(c) = &cfg.console {
            c.person_ca(&cfg.ori)?;
            if let (Some(cert), Some(key)) = (&c.cert, &c.key) {
                alpr_runtime::tls::TlsIdentity::load(cert, key)?;
            }
            out.push(format!(
                "web console on https://{} (person certificates from {}, {} days; idle lock {} s; sign-in locks after {} failures in {} s)",
                c.listen,
                c.person_ca_cert.display(),
                c.person_cert_days,
                c.idle_lock_secs,
                c.lockout_attempts,
                c.lockout_window_secs
            ));
        } else {
            out.push("no [console]: the web console is off".into());
        }
        Ok(out)
    }

    #[allow(clippy::type_complexity)]
    fn identity(
        cfg: &NodeConfig,
    ) -> Result<
        (
            TrustStore,
            Signer,
            TlsIdentity,
            AgencyClaims,
            &'static StateRules,
        ),
        Error,
    > {
        let trust = TrustStore::load(&cfg.tls.root, &cfg.tls.crls)?;
        let signer = Signer::load(&cfg.tls.cert, &cfg.tls.key)?;
        let tls = TlsIdentity::load(&cfg.tls.cert, &cfg.tls.key)?;
        let id = trust.verify(signer.chain(), alpr_pki::now_unix())?;
        if id.role != Role::Node {
            return Err(Error::Identity(format!(
                "{} is {} certificate, not a node certificate",
                cfg.tls.cert.display(),
                id.role.with_article()
            )));
        }
        let agency = id
            .agency
            .ok_or_else(|| Error::Identity("node certificate has no agency claims".into()))?;
        if agency.ori != cfg.ori {
            return Err(Error::Identity(format!(
                "node certificate is for {} but the config says ori = {}",
                agency.ori, cfg.ori
            )));
        }
        let rules = StateRules::for_jurisdiction(&agency.jurisdiction)?;
        Ok((trust, signer, tls, agency, rules))
    }

    /// Open a node from its config: load and verify its certificate, open its database.
    pub fn open(cfg: &NodeConfig) -> Result<Arc<Self>, Error> {
        let (trust, signer, tls, agency, rules) = Self::identity(cfg)?;
        let keys = crate::keyring::data_keys(cfg)?;
        let pg = cfg.postgres_reads()?;
        let conn = store::open_at(&cfg.db_path(), keys.clone(), pg.clone())?;
        let signer = Arc::new(signer);
        let audit_log = AuditLog::open_with(
            &cfg.audit_path(),
            Some(crate::audit::HeadSigner {
                signer: signer.clone(),
                ori: agency.ori.clone(),
            }),
            keys.clone(),
        )?;
        // What the node rebuilds from its own log at start: replay memory (every inbound
        // query id young enough to matter) and the state digest it last recorded.
        let log = store::AuditDb::open_with(&cfg.audit_path(), keys.clone())?;
        let replay = ReplayMemory::new();
        let since = alpr_pki::now_unix() - ReplayMemory::HORIZON_SECS;
        for (id, at) in store::audit::inbound_ids_since(&log, since)? {
            replay.remember(&id, &agency.ori, at);
        }
        let recorded_state = store::audit::latest_state_digest(&log)?;
        drop(log);
        let agreements = store::registered_agreements(&conn)?;
        let head_time = crate::registry::stored_head_time(&conn)?;
        let tls = alpr_runtime::tls::ReloadableTls::new(trust, tls, cfg.tls.crls.clone())?;
        let broker = match &cfg.broker {
            Some(b) => {
                // Checked against the CRLs in force at each connection (reloaded without a
                // restart).
                let client_cfg = tls.client_config()?;
                let target = alpr_runtime::client::Target {
                    addr: b.addr.clone(),
                    server_name: b.server_name.clone(),
                };
                let timeout = Duration::from_millis(b.timeout_ms);
                let ch = alpr_runtime::client::channel(&target, client_cfg, timeout)?;
                Some((BrokerClient::new(ch), timeout))
            }
            None => None,
        };
        let node = Arc::new(Self {
            agency,
            tls,
            signer,
            audit_log,
            db: Mutex::new(conn),
            readers: store::Readers::of(&cfg.db_path(), keys.clone(), pg),
            keys,
            agreements: RwLock::new(Arc::new(agreements)),
            cfg: cfg.clone(),
            rules,
            rate: Mutex::new(HashMap::new()),
            replay,
            metrics: Arc::default(),
            broker,
            health: std::sync::OnceLock::new(),
            crl_refusal: Mutex::new(None),
            head_time: std::sync::atomic::AtomicI64::new(head_time),
            stale_alerted: std::sync::atomic::AtomicBool::new(false),
            alerts: crate::alerts::Alerts::start(&cfg.alerts),
            audit_failing: std::sync::atomic::AtomicBool::new(false),
            state_lock: Mutex::new(()),
            state_edited: Mutex::new(None),
            recorded_state: Mutex::new(recorded_state),
            sealing: Default::default(),
            sync_lock: tokio::sync::Mutex::new(()),
            publish_lock: tokio::sync::Mutex::new(()),
            anchor_lock: tokio::sync::Mutex::new(()),
            hits_queued: tokio::sync::Notify::new(),
            registry_frontier: Mutex::new(None),
            audit_checker: Mutex::new(None),
        });
        // An edit made while the node was down is found before it serves.
        node.check_state()?;
        node.ensure_sealing_key()?;
        Ok(node)
    }

    /// Report through `health` (the server's gRPC health): NOT_SERVING while audit entries
    /// cannot be written, SERVING again after the next durable append.
    pub fn set_health(&self, health: alpr_runtime::server::Health) {
        let _ = self.health.set(health);
    }

    /// The policy in force: the config's rules plus the current runtime switches.
    pub fn policy(&self, conn: &store::Db) -> Result<NodePolicy, Error> {
        let mut p = self
            .cfg
            .policy
            .to_node_policy(&store::settings::load(conn)?);
        p.require_sealed = self.cfg.sealing.require;
        Ok(p)
    }

    /// Count one query from `requester`; false once it exceeds the per-minute limit.
    pub fn rate_ok(&self, requester: &str, now: i64) -> bool {
        let mut m = self.rate.lock().unwrap_or_else(|p| p.into_inner());
        let minute = now / 60;
        let e = m.entry(requester.to_owned()).or_insert((minute, 0));
        if e.0 != minute {
            *e = (minute, 0);
        }
        e.1 += 1;
        e.1 <= self.cfg.policy.max_queries_per_minute
    }

    /// Retention in force, days: the node's policy capped by its state's rules.
    pub fn retention_days(&self) -> u32 {
        retention_in_force(self.cfg.policy.retention_days, self.rules)
    }

    /// Drop every day of reads older than retention and log the purge.
    pub fn purge(&self) -> Result<(Vec<i64>, i64), Error> {
        let now = alpr_pki::now_unix();
        let days = self.retention_days();
        let (dropped, reads) =
            store::purge_before(&mut self.db(), now - i64::from(days) * 86_400, now)?;
        self.replay.sweep(now);
        store::shares::purge(&self.db(), now, crate::shares::KEEP_SECS)?;
        // Closed days are rewritten packed, one per lock hold (ingest waits for one day's
        // rewrite at most).
        while let Some(day) = store::compact_one_closed(&mut self.db(), now)? {
            tracing::debug!(day, "day partition compacted");
        }
        if !dropped.is_empty() {
            self.audit(&[AuditEntry {
                count: Some(reads as u64),
                rule_version: Some(self.rules.version.clone()),
                detail: Some(format!(
                    "retention {days} days: dropped {} day partition(s) ({} .. {}) holding {reads} reads",
                    dropped.len(),
                    alpr_pki::fmt_time(dropped[0] * 86_400),
                    alpr_pki::fmt_time(dropped[dropped.len() - 1] * 86_400)
                )),
                ..AuditEntry::new(now, Event::Purge, Decision::Ok)
            }])?;
        }
        Ok((dropped, reads))
    }

    /// Log a request the transport could not decode (refused with `INVALID_INPUT`) as the
    /// kind of entry its method would have made. Blocking.
    pub fn log_undecodable(&self, u: alpr_runtime::undecodable::Undecodable) {
        let now = alpr_pki::now_unix();
        let peer = match &u.peer_certs {
            Some(c) => self.trust().verify(c, now).ok(),
            None => None,
        };
        let event = match u.method.rsplit('/').next().unwrap_or_default() {
            "AnswerQuery" => Event::InboundQuery,
            "Search" => Event::OutboundQuery,
            "Admin" => Event::AdminCommand,
            "Ingest" => Event::Ingest,
            _ => Event::Request,
        };
        let entry = AuditEntry {
            requester_user: peer.as_ref().and_then(|p| p.user.clone()),
            requester_ori: peer.as_ref().and_then(|p| p.ori().map(str::to_owned)),
            reason_code: Some(RefusalReason::InvalidInput.as_str_name().into()),
            peer: Some(match (&peer, u.peer_addr) {
                (Some(p), Some(a)) => format!("{} from {a}", p.describe()),
                (Some(p), None) => p.describe(),
                (None, Some(a)) => format!("unverified peer from {a}"),
                (None, None) => "unverified peer".into(),
            }),
            detail: Some(u.detail),
            ..AuditEntry::new(now, event, Decision::Refused)
        };
        if let Err(e) = self.audit(&[entry]) {
            tracing::error!(error = %e, "ALERT: could not log an undecodable request");
        }
    }

    /// Sign a checkpoint of the audit log's current head.
    pub fn checkpoint(&self) -> Result<Option<i64>, Error> {
        let mut log = self.audit_db()?;
        store::audit::checkpoint_now(&mut log, &self.head_signer())
    }

    /// Open this node's audit database for reading (with its data keys, if encrypted).
    pub fn audit_db(&self) -> Result<store::AuditDb, Error> {
        store::AuditDb::open_with(&self.cfg.audit_path(), self.keys.clone())
    }

    /// The data keys its databases are encrypted with, if they are.
    pub fn data_keys(&self) -> Option<&Arc<store::encryption::DataKeys>> {
        self.keys.as_ref()
    }

    /// What signs this node's audit tree heads.
    pub fn head_signer(&self) -> crate::audit::HeadSigner {
        crate::audit::HeadSigner {
            signer: self.signer.clone(),
            ori: self.agency.ori.clone(),
        }
    }

    /// This agency's ORI.
    pub fn ori(&self) -> &str {
        &self.agency.ori
    }

    /// The trust store in force (root and the CRLs loaded last).
    pub fn trust(&self) -> TrustStore {
        self.tls.trust()
    }

    /// Re-read the CRL files; if they changed, enforce them at once for signatures and for
    /// new TLS handshakes, and log it. Returns whether anything changed.
    pub fn reload_crls(&self) -> Result<bool, Error> {
        let changed = match self.tls.reload() {
            Ok(c) => c,
            Err(e) => {
                // Fail closed: the CRLs in force stay in force, and the admins are told
                // (once per distinct problem, not at every reload).
                tracing::error!(error = %e, "ALERT: CRL reload refused; keeping the CRLs in force");
                let mut last = self.crl_refusal.lock().unwrap_or_else(|p| p.into_inner());
                let said = e.to_string();
                if last.as_deref() == Some(said.as_str()) {
                    return Err(e.into());
                }
                *last = Some(said);
                drop(last);
                self.audit(&[AuditEntry {
                    detail: Some(format!(
                        "a CRL file could not be used; the previous CRLs stay in force: {e}"
                    )),
                    ..AuditEntry::new(
                        alpr_pki::now_unix(),
                        Event::Alert,
                        Decision::CrlReloadRefused,
                    )
                }])?;
                return Err(e.into());
            }
        };
        *self.crl_refusal.lock().unwrap_or_else(|p| p.into_inner()) = None;
        if !changed {
            return Ok(false);
        }
        self.audit(&[AuditEntry {
            detail: Some("certificate revocation lists reloaded".into()),
            ..AuditEntry::new(alpr_pki::now_unix(), Event::ConfigChange, Decision::Ok)
        }])?;
        Ok(true)
    }

    /// Lock the database. A poisoned lock means a thread panicked mid-write; SQLite's
    /// transaction rolled back, so the connection itself is still consistent.
    pub fn db(&self) -> MutexGuard<'_, store::Db> {
        self.db.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The node's own copy of its agreements.
    pub fn agreements(&self) -> Arc<Vec<AgreementView>> {
        self.agreements
            .read()
            .map(|a| a.clone())
            .unwrap_or_else(|p| p.into_inner().clone())
    }

    pub(crate) fn reload_agreements(&self, conn: &store::Db) -> Result<(), Error> {
        let fresh = Arc::new(store::registered_agreements(conn)?);
        match self.agreements.write() {
            Ok(mut a) => *a = fresh,
            Err(p) => *p.into_inner() = fresh,
        }
        Ok(())
    }

    /// Append audit entries durably (blocking until the group commit holding them is done).
    pub fn audit(&self, entries: &[AuditEntry]) -> Result<(), Error> {
        let started = std::time::Instant::now();
        let r = self.audit_log.append(entries.to_vec()).map(|_| ());
        {
            use std::sync::atomic::Ordering;
            match &r {
                Ok(()) => {
                    self.audit_failing.store(false, Ordering::SeqCst);
                    if let Some(d) = entries.iter().rev().find_map(|e| e.state_digest.clone()) {
                        *self
                            .recorded_state
                            .lock()
                            .unwrap_or_else(|p| p.into_inner()) = Some(d);
                    }
                    for a in entries
                        .iter()
                        .filter_map(|e| crate::alerts::Alert::of(self.ori(), e))
                    {
                        self.alerts.raise(a);
                    }
                }
                // Once per failure episode, straight to the sinks: it cannot be logged.
                Err(e) if !self.audit_failing.swap(true, Ordering::SeqCst) => {
                    self.alerts.raise(crate::alerts::Alert {
                        ori: self.ori().to_owned(),
                        at: alpr_pki::fmt_time(alpr_pki::now_unix()),
                        event: Event::Alert.to_string(),
                        decision: Decision::AuditUnavailable.to_string(),
                        detail: format!(
                            "the audit log cannot be written; every request is refused until it can: {e}"
                        ),
                    });
                }
                Err(_) => {}
            }
        }
        if let Some(h) = self.health.get() {
            if r.is_err() && h.is_serving() {
                tracing::error!("ALERT: the audit log cannot be written; reporting NOT_SERVING");
            }
            h.set_serving(r.is_ok());
        }
        self.metrics
            .audit_commit_seconds
            .observe(started.elapsed().as_secs_f64());
        self.metrics.audit_entries.inc_by(entries.len() as u64);
        r
    }

    /// Verify both admin signatures of an agreement this agency is party to and keep a copy.
    pub fn import_agreement(&self, sa: &SignedAgreement) -> Result<String, Error> {
        let now = alpr_pki::now_unix();
        let v = agreement::verify(&self.trust(), sa, now)?;
        if v.terms.provider_ori != self.ori() && v.terms.requester_ori != self.ori() {
            return Err(Error::Usage(format!(
                "agreement {} does not involve {}",
                v.id,
                self.ori()
            )));
        }
        let _state = self.state_lock.lock().unwrap_or_else(|p| p.into_inner());
        let conn = self.db();
        let new = store::put_agreement(&conn, &v.id, sa, &v.terms, now)?;
        let state_digest = Some(crate::state::digest(&conn)?);
        self.audit(
            &[AuditEntry {
                state_digest,
                agreement_id: Some(v.id.clone()),
                detail: Some(format!(
                    "{} shares with {}; purposes {}; look-back {} days; valid until {}; signed by {} and {}",
                    v.terms.provider_ori,
                    v.terms.requester_ori,
                    v.terms.purposes.join(","),
                    v.terms.max_lookback_days,
                    v.terms.valid_until,
                    v.provider_admin.describe(),
                    v.requester_admin.describe()
                )),
                ..AuditEntry::new(now, Event::AgreementImport, if new {
                    Decision::Ok
                } else {
                    Decision::AlreadyPresent
                })
            }],
        )?;
        self.reload_agreements(&conn)?;
        Ok(v.id)
    }
}

/// Retention in force, days: the node's policy capped by its state's rules (0: no cap).
fn retention_in_force(policy_days: u32, rules: &StateRules) -> u32 {
    match rules.retention_cap_days {
        0 => policy_days,
        cap => policy_days.min(cap),
    }
}
