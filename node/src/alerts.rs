//! Alerts for the node's admins (seed 000: admins must learn of any change of inbound
//! access scope; CJIS 5.4: alert on audit failure). Every alert is an audit entry first
//! (where one can still be written) and always a line in the node's log; the configured
//! sinks — a webhook (HTTP POST of JSON) and a command (the JSON on its stdin) — get it from
//! a background thread, so no query ever waits on an alert.

use std::io::Write;
use std::sync::mpsc::{self, Sender};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::audit::{AuditEntry, Event};
use crate::config::AlertsConfig;

/// One alert as the sinks receive it.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct Alert {
    /// The node's agency.
    pub ori: String,
    /// When, RFC 3339.
    pub at: String,
    /// The audit event (`alert`, `registry_fork`, `hotlist_hit`).
    pub event: String,
    /// What kind (`scope_change`, `registry_stale`, `audit_failed`, ...).
    pub decision: String,
    /// What happened, in words.
    pub detail: String,
}

impl Alert {
    /// The alert an entry raises, if it is one.
    pub fn of(ori: &str, e: &AuditEntry) -> Option<Self> {
        matches!(
            e.event,
            Event::Alert
                | Event::AuditAnchor
                | Event::RegistryFork
                | Event::HotlistHit
                | Event::ScopeChange
                | Event::DailyAudit
        )
        .then(|| Self {
            ori: ori.to_owned(),
            at: alpr_pki::fmt_time(e.at),
            event: e.event.to_string(),
            decision: e.decision.to_string(),
            detail: e.detail.clone().unwrap_or_default(),
        })
        .filter(|a| e.event != Event::DailyAudit || a.decision != "ok")
    }
}

/// The sinks of one node.
#[derive(Debug)]
pub struct Alerts {
    tx: Option<Sender<Alert>>,
}

impl Alerts {
    /// Start delivering to the sinks `cfg` names (none: alerts only go to the log).
    pub fn start(cfg: &AlertsConfig) -> Self {
        if cfg.webhook.is_none() && cfg.command.is_none() {
            return Self { tx: None };
        }
        let (tx, rx) = mpsc::channel::<Alert>();
        let cfg = cfg.clone();
        let spawned = std::thread::Builder::new()
            .name("alert-sender".into())
            .spawn(move || {
                for a in rx {
                    deliver(&cfg, &a);
                }
            });
        match spawned {
            Ok(_) => Self { tx: Some(tx) },
            Err(e) => {
                tracing::error!(error = %e, "ALERT: cannot start the alert sender; alerts go to the log only");
                Self { tx: None }
            }
        }
    }

    /// Raise `a`: to the log now, to the sinks in the background.
    pub fn raise(&self, a: Alert) {
        tracing::error!(event = %a.event, kind = %a.decision, detail = %a.detail, "ALERT");
        if let Some(tx) = &self.tx
            && tx.send(a).is_err()
        {
            tracing::error!("the alert sender stopped; alerts go to the log only");
        }
    }
}

fn deliver(cfg: &AlertsConfig, a: &Alert) {
    let body = match serde_json::to_string(a) {
        Ok(b) => b,
        Err(e) => {
            tracing::error!(error = %e, "alert not encoded");
            return;
        }
    };
    let timeout = Duration::from_millis(cfg.timeout_ms.max(1));
    if let Some(url) = &cfg.webhook
        && let Err(e) = post(url, &body, timeout)
    {
        tracing::error!(%url, error = %e, "alert webhook failed");
    }
    if let Some(argv) = &cfg.command
        && let Err(e) = run(argv, &body, timeout)
    {
        tracing::error!(command = ?argv, error = %e, "alert command failed");
    }
}

fn post(url: &str, body: &str, timeout: Duration) -> Result<(), String> {
    let agent = ureq::Agent::config_builder()
        .timeout_global(Some(timeout))
        .build()
        .new_agent();
    agent
        .post(url)
        .header("Content-Type", "application/json")
        .send(body)
        .map(|_| ())
        .map_err(|e| e.to_string())
}

fn run(argv: &[String], body: &str, timeout: Duration) -> Result<(), String> {
    let (program, args) = argv.split_first().ok_or("no program")?;
    let mut child = std::process::Command::new(program)
        .args(args)
        .stdin(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run {program}: {e}"))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(body.as_bytes())
            .map_err(|e| format!("writing to {program}: {e}"))?;
    }
    let started = Instant::now();
    loop {
        match child.try_wait() {
            Ok(Some(status)) if status.success() => return Ok(()),
            Ok(Some(status)) => return Err(format!("{program} exited with {status}")),
            Ok(None) if started.elapsed() > timeout => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("{program} took longer than {timeout:?}; killed"));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => return Err(e.to_string()),
        }
    }
}

/// What the scheduled self-audit found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SelfAudit {
    /// Audit entries whose chain verified (0 when it did not).
    pub entries: u64,
    /// Signed checkpoints that verified.
    pub checkpoints: u64,
    /// Why the log does not verify, if it does not.
    pub broken: Option<String>,
    /// Agreements this node shares under that expire within the warning window.
    pub expiring: Vec<String>,
    /// Hot-list hits past the state's `hit_outcome_days` with no recorded outcome (entry
    /// numbers).
    pub overdue_outcomes: Vec<i64>,
}

impl crate::node::Node {
    /// The scheduled self-audit (daily by default): verify the audit log's chain and signed
    /// checkpoints, and look for agreements this node shares under that are about to expire
    /// (each a `scope_change` alert). Its outcome is itself an entry (`daily_audit`), an
    /// alert when the log does not verify. Blocking.
    pub fn self_audit(&self) -> Result<SelfAudit, crate::Error> {
        use crate::audit::Decision;
        let now = alpr_pki::now_unix();
        // State edited around the log is alerted (once) by the check itself.
        let state_intact = self.check_state()?;
        let log = self.audit_db()?;
        let verified = crate::store::audit::verify(&log, Some((&self.trust(), self.ori())));
        let warn_until = now + i64::from(self.cfg.alerts.expiry_warning_days) * 86_400;
        let expiring: Vec<_> = self
            .agreements()
            .iter()
            .filter(|a| {
                a.status == alpr_proto::agreement::AgreementStatus::Active
                    && a.terms.provider_ori == self.ori()
                    && a.terms.valid_until > now
                    && a.terms.valid_until <= warn_until
            })
            .map(|a| {
                format!(
                    "{} ({} may query this node) expires {}",
                    a.id,
                    a.terms.requester_ori,
                    alpr_pki::fmt_time(a.terms.valid_until)
                )
            })
            .collect();
        let mut entries: Vec<AuditEntry> = expiring
            .iter()
            .map(|what| AuditEntry {
                detail: Some(format!("who may query this node changes soon: {what}")),
                ..AuditEntry::new(now, Event::ScopeChange, Decision::Alert)
            })
            .collect();
        // Where the state requires each hit's outcome, the hits still without one.
        let days = self.rules.hit_outcome_days;
        let overdue: Vec<i64> = if days > 0 {
            let all = crate::store::audit::list(&log, None)?;
            crate::outcomes::summarize(&all, days, now)
                .overdue
                .into_iter()
                .map(|(seq, _)| seq)
                .collect()
        } else {
            Vec::new()
        };
        if !overdue.is_empty() {
            let shown: Vec<String> = overdue.iter().take(20).map(|s| format!("#{s}")).collect();
            entries.push(AuditEntry {
                count: Some(overdue.len() as u64),
                detail: Some(format!(
                    "{} hot-list hit(s) older than {days} days have no recorded outcome, which {} requires ({}{}): record each with `alpr-node admin … hit-outcome`",
                    overdue.len(),
                    self.rules.version,
                    shown.join(", "),
                    if overdue.len() > 20 { ", ..." } else { "" }
                )),
                ..AuditEntry::new(now, Event::Alert, Decision::Alert)
            });
        }
        let report = match &verified {
            Ok(r) => SelfAudit {
                entries: r.entries,
                checkpoints: r.checkpoints,
                broken: None,
                expiring: expiring.clone(),
                overdue_outcomes: overdue.clone(),
            },
            Err(e) => SelfAudit {
                entries: 0,
                checkpoints: 0,
                broken: Some(e.to_string()),
                expiring: expiring.clone(),
                overdue_outcomes: overdue.clone(),
            },
        };
        entries.push(AuditEntry {
            count: Some(report.entries),
            detail: Some(match &report.broken {
                None => format!(
                    "audit log verified: {} entries, {} signed checkpoints; state {}; {} agreement(s) expiring within {} days",
                    report.entries,
                    report.checkpoints,
                    if state_intact {
                        "as logged"
                    } else {
                        "EDITED outside the log (alerted)"
                    },
                    expiring.len(),
                    self.cfg.alerts.expiry_warning_days
                ),
                Some(why) => format!("the audit log does not verify: {why}"),
            }),
            ..AuditEntry::new(
                now,
                Event::DailyAudit,
                if report.broken.is_none() {
                    Decision::Ok
                } else {
                    Decision::Error
                },
            )
        });
        self.audit(&entries)?;
        Ok(report)
    }
}
