//! What an operator needs to see at a glance: `alpr-node status`.

use std::fmt;

use alpr_pki::fmt_time;
use alpr_proto::pb::SignedTreeHead;
use prost::Message;

use crate::node::Node;
use crate::{Error, audit, settings, store};

/// A node's state, read from its databases.
#[derive(Clone, Debug)]
pub struct Status {
    /// This agency's ORI.
    pub ori: String,
    /// The state rules in force.
    pub rule_version: String,
    /// The node database's schema version.
    pub schema_version: i64,
    /// The data key `node.db` and `audit.db` are encrypted with (`None`: plain).
    pub data_key: Option<String>,
    /// The runtime switches.
    pub switches: settings::Switches,
    /// Retention in force, days.
    pub retention_days: u32,
    /// The newest registry head this node accepted: (size, when seen, cosigned by this
    /// state's regulator).
    pub registry_head: Option<(u64, i64, bool)>,
    /// Whether this node trusts only cosigned heads.
    pub require_cosignature: bool,
    /// Agreements this node has and uses: (id, provider, requester, status, valid until).
    pub agreements: Vec<(String, String, String, String, i64)>,
    /// Reads held and the days they span.
    pub reads: i64,
    /// Oldest and newest capture day held (Unix seconds of the day's start).
    pub days: Option<(i64, i64)>,
    /// Where the reads are kept when not in `node.db`: the PostgreSQL database.
    pub reads_in: Option<String>,
    /// The audit log's head: (entries, last hash, entries covered by the last signed
    /// checkpoint, when it was signed).
    pub audit_head: (i64, String, i64, i64),
    /// The most recent alerts (time, kind, detail), newest first.
    pub alerts: Vec<(i64, String, String)>,
    /// Hot lists other agencies shared with this one, in force: (owner, list name, entries,
    /// until).
    pub shared_lists: Vec<(String, String, usize, i64)>,
    /// Hit reports waiting to reach their lists' owners.
    pub hits_waiting: u64,
}

impl Node {
    /// The node's state as `alpr-node status` shows it.
    pub fn status(&self) -> Result<Status, Error> {
        let now = alpr_pki::now_unix();
        let conn = self.db();
        let schema_version = store::maintenance::schema_version(&conn)?;
        let switches = store::settings::load(&conn)?;
        let head = store::maintenance::newest_registry_head(&conn)?;
        let registry_head = head.map(|(size, seen, sth)| {
            let cosigned = SignedTreeHead::decode(sth.as_slice())
                .ok()
                .and_then(|h| alpr_proto::registry::verify_head(&self.trust(), &h, now).ok())
                .is_some_and(|h| h.cosigned_by(self.agency.jurisdiction.as_str()));
            (size as u64, seen, cosigned)
        });
        let agreements = store::agreements(&conn)?
            .into_iter()
            .map(|a| {
                let status = if a.status == alpr_proto::agreement::AgreementStatus::Active
                    && a.terms.valid_until <= now
                {
                    "expired".to_owned()
                } else {
                    a.status.as_str().to_owned()
                };
                (
                    a.id,
                    a.terms.provider_ori,
                    a.terms.requester_ori,
                    status,
                    a.terms.valid_until,
                )
            })
            .collect();
        let parts = store::partitions(&conn)?;
        let reads = parts.iter().map(|(_, n)| n).sum();
        let days = match (parts.first(), parts.last()) {
            (Some((a, _)), Some((b, _))) => Some((a * 86_400, b * 86_400)),
            _ => None,
        };
        let shared_lists = store::shares::active_in(&conn, now)?
            .into_iter()
            .map(|s| {
                let list = s.query.hotlist.unwrap_or_default();
                (
                    s.owner_ori,
                    list.name,
                    list.entries.len(),
                    s.query.window_end,
                )
            })
            .collect();
        let hits_waiting = store::shares::pending_count(&conn)?;
        drop(conn);
        let log = self.audit_db()?;
        let (entries, hash) = store::maintenance::audit_head(&log)?;
        let (covered, signed_at) = store::maintenance::newest_checkpoint(&log)?;
        let mut alerts: Vec<(i64, String, String)> = [
            audit::Event::Alert,
            audit::Event::RegistryFork,
            audit::Event::HotlistHit,
            audit::Event::ScopeChange,
        ]
        .iter()
        .map(|e| store::audit::list(&log, Some(*e)))
        .collect::<Result<Vec<_>, _>>()?
        .into_iter()
        .flatten()
        .map(|e| {
            (
                e.entry.at,
                format!("{} {}", e.entry.event, e.entry.decision),
                e.entry.detail.unwrap_or_default(),
            )
        })
        .collect();
        alerts.sort_by_key(|a| std::cmp::Reverse(a.0));
        alerts.truncate(10);
        Ok(Status {
            ori: self.ori().to_owned(),
            rule_version: self.rules.version.clone(),
            schema_version,
            data_key: self.data_keys().map(|k| k.key_id().to_owned()),
            switches,
            retention_days: self.retention_days(),
            registry_head,
            require_cosignature: self.cfg.registry.require_cosignature,
            agreements,
            reads,
            days,
            reads_in: self.db().postgres_reads().map(|p| p.label().to_owned()),
            audit_head: (entries, hash, covered, signed_at),
            alerts,
            shared_lists,
            hits_waiting,
        })
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let on = |b: bool| if b { "ON" } else { "off" };
        writeln!(
            f,
            "node {}  rules {}  schema {}  storage {}",
            self.ori,
            self.rule_version,
            self.schema_version,
            match &self.data_key {
                Some(k) => format!("encrypted at rest (data key {k})"),
                None => "PLAIN (not encrypted at rest)".into(),
            }
        )?;
        writeln!(
            f,
            "sharing {}  refuse-all {}  refused requesters: {}",
            on(self.switches.sharing_enabled),
            on(self.switches.refuse_all),
            if self.switches.refused_requesters.is_empty() {
                "none".to_owned()
            } else {
                self.switches.refused_requesters.join(", ")
            }
        )?;
        match &self.registry_head {
            Some((size, seen, cosigned)) => writeln!(
                f,
                "registry head: {size} events, accepted {}; {}{}",
                fmt_time(*seen),
                if *cosigned {
                    "cosigned by this state's regulator"
                } else {
                    "NOT cosigned by this state's regulator"
                },
                if self.require_cosignature {
                    " (cosignature required)"
                } else {
                    ""
                }
            )?,
            None => writeln!(
                f,
                "registry head: none accepted yet{}",
                if self.require_cosignature {
                    " (cosignature required: is the regulator cosigning?)"
                } else {
                    ""
                }
            )?,
        }
        writeln!(f, "agreements: {}", self.agreements.len())?;
        for (id, p, r, status, until) in &self.agreements {
            writeln!(f, "   {id} {p} -> {r} {status} until {}", fmt_time(*until))?;
        }
        let place = match &self.reads_in {
            Some(db) => format!(" in {db}"),
            None => String::new(),
        };
        match self.days {
            Some((a, b)) => writeln!(
                f,
                "reads: {} held{place}, {} .. {} (retention {} days)",
                self.reads,
                &fmt_time(a)[..10],
                &fmt_time(b)[..10],
                self.retention_days
            )?,
            None => writeln!(
                f,
                "reads: none{place} (retention {} days)",
                self.retention_days
            )?,
        }
        writeln!(
            f,
            "hot lists shared with this agency: {}; hit reports waiting to be sent: {}",
            self.shared_lists.len(),
            self.hits_waiting
        )?;
        for (owner, name, n, until) in &self.shared_lists {
            writeln!(
                f,
                "   {owner}: {name:?} ({n} entries) until {}",
                fmt_time(*until)
            )?;
        }
        let (n, hash, covered, at) = &self.audit_head;
        writeln!(
            f,
            "audit log: {n} entries, head {}; last signed checkpoint covers {covered}{}",
            if hash.is_empty() {
                "-"
            } else {
                &hash[..hash.len().min(16)]
            },
            if *at > 0 {
                format!(" (signed {})", fmt_time(*at))
            } else {
                String::new()
            }
        )?;
        if self.alerts.is_empty() {
            write!(f, "alerts: none")
        } else {
            writeln!(f, "alerts (newest first):")?;
            for (i, (at, kind, detail)) in self.alerts.iter().enumerate() {
                if i > 0 {
                    writeln!(f)?;
                }
                write!(f, "   {} {kind}: {detail}", fmt_time(*at))?;
            }
            Ok(())
        }
    }
}
