//! State that cannot be edited around the log. Switches, refused requesters, accounts and
//! agreement states decide who may query this node, and evidence holds and hot lists what
//! it keeps and whom it watches for; each logged change records their digest ([`digest`])
//! in its audit entry, and the node compares the stored state with the
//! newest recorded digest at start and on every sync tick ([`Node::check_state`]). An edit
//! made with `sqlite3` around the logged admin path is then detected, alerted
//! (`alert` / `state_edited`), and the node refuses every inbound query (`NODE_REFUSING`)
//! until an admin acknowledges the state through the logged admin command.

use crate::Error;
use crate::audit::{AuditEntry, Decision, Event};
use crate::node::Node;
use crate::store;

/// The prefix of a digest that covers holds and hot lists too. A digest without it was
/// recorded by an older node, over the access-deciding state alone.
const V2: &str = "v2:";

/// The digest of the node's access-deciding state, holds and hot lists, in canonical
/// order: `v2:` and a SHA-256 in hex.
pub fn digest(db: &store::Db) -> Result<String, Error> {
    let mut lines = store::maintenance::state_lines(db)?;
    lines.extend(store::maintenance::held_state_lines(db)?);
    Ok(format!("{V2}{}", digest_of(&lines)))
}

/// The digest in the form `recorded` was made in: [`digest`], or for a digest recorded
/// by an older node (or none), the access-deciding state alone. The next logged change
/// records the full form.
fn digest_like(db: &store::Db, recorded: &str) -> Result<String, Error> {
    if recorded.starts_with(V2) {
        digest(db)
    } else {
        Ok(digest_of(&store::maintenance::state_lines(db)?))
    }
}

/// The digest of state `lines` (none: a node that has never changed its state, which is
/// what a log with no recorded digest stands for).
fn digest_of(lines: &[String]) -> String {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    ctx.update(b"alpr.v1.NodeState\n");
    for line in lines {
        ctx.update(line.as_bytes());
        ctx.update(b"\n");
    }
    hex::encode(ctx.finish().as_ref())
}

impl Node {
    /// Compare the stored state with the digest the audit log last recorded. Returns
    /// whether they agree; the first disagreement of an episode is an alert, and the node
    /// refuses inbound queries until an admin acknowledges. Blocking.
    pub fn check_state(&self) -> Result<bool, Error> {
        let _state = self.state_lock.lock().unwrap_or_else(|p| p.into_inner());
        let now = alpr_pki::now_unix();
        let recorded = self
            .recorded_state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .unwrap_or_else(|| digest_of(&[]));
        let current = digest_like(&self.db(), &recorded)?;
        if current == recorded {
            return Ok(true);
        }
        let mut edited = self.state_edited.lock().unwrap_or_else(|p| p.into_inner());
        if edited.as_deref() != Some(current.as_str()) {
            let detail = format!(
                "switches, accounts, agreement states, evidence holds or hot lists were changed outside the logged admin path (state {current}, the log last recorded {recorded}); sharing stops until an admin acknowledges (`alpr-node admin acknowledge-state`)"
            );
            *edited = Some(current);
            drop(edited);
            self.audit(&[AuditEntry {
                detail: Some(detail),
                ..AuditEntry::new(now, Event::Alert, Decision::StateEdited)
            }])?;
        }
        Ok(false)
    }

    /// Whether a state edit found outside the log awaits an admin's acknowledgement.
    pub fn state_edited(&self) -> bool {
        self.state_refusal().is_some()
    }

    /// Why inbound queries are refused because of an unacknowledged state edit, if they are.
    pub(crate) fn state_refusal(&self) -> Option<String> {
        self.state_edited
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .map(|_| {
                "this node's switches, accounts or agreement states were changed outside its logged admin path; it answers nothing until an admin acknowledges".to_owned()
            })
    }

    /// An admin accepts the current state (after checking it); sharing resumes. The
    /// caller logs the entry that records the digest.
    pub(crate) fn acknowledge_state(
        &self,
        by: &alpr_pki::VerifiedIdentity,
        note: &str,
    ) -> Result<String, Error> {
        if by.role != alpr_pki::Role::Admin {
            return Err(Error::NotPermitted(format!(
                "only an admin acknowledges the node's state; you are {}",
                by.describe()
            )));
        }
        if note.trim().len() < 10 {
            return Err(Error::Usage(
                "say what was checked (a note of at least 10 characters)".into(),
            ));
        }
        let was = self
            .state_edited
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        Ok(match was {
            Some(d) => format!("state {d} acknowledged by {}: {note}", by.describe()),
            None => format!(
                "state acknowledged by {} (no edit was pending): {note}",
                by.describe()
            ),
        })
    }
}

/// The node's configuration and the rules compiled in, as sorted `key = value` lines
/// (paths as written after resolution; no secrets live in `node.toml`).
pub fn config_lines(node: &Node) -> Vec<String> {
    fn walk(prefix: &str, v: &toml::Value, out: &mut Vec<String>) {
        match v {
            toml::Value::Table(t) => {
                for (k, v) in t {
                    let key = if prefix.is_empty() {
                        k.clone()
                    } else {
                        format!("{prefix}.{k}")
                    };
                    walk(&key, v, out);
                }
            }
            other => out.push(format!("{prefix} = {other}")),
        }
    }
    let mut out = Vec::new();
    match toml::Value::try_from(&node.cfg) {
        Ok(v) => walk("", &v, &mut out),
        Err(e) => out.push(format!("config = <not encodable: {e}>")),
    }
    out.push(format!("rules.version = {:?}", node.rules.version));
    out.push(format!("binary.version = {:?}", env!("CARGO_PKG_VERSION")));
    out.sort();
    out
}

impl Node {
    /// Log the daemon's start with its configuration and rules, naming every key that
    /// changed since the last start; a new rules version is also a `scope_change` alert.
    /// Returns the changed keys. Blocking.
    pub fn log_start(&self) -> Result<Vec<String>, Error> {
        let now = alpr_pki::now_unix();
        let lines = config_lines(self);
        let log = self.audit_db()?;
        let last = store::audit::list(&log, Some(Event::NodeStart))?
            .pop()
            .and_then(|e| e.entry.detail);
        let before: Vec<String> = last
            .as_deref()
            .and_then(|d| d.split_once("\nconfig:\n"))
            .map(|(_, c)| c.lines().map(str::to_owned).collect())
            .unwrap_or_default();
        let key = |l: &str| l.split(" = ").next().unwrap_or(l).to_owned();
        let mut changed: Vec<String> = Vec::new();
        if last.is_some() {
            for l in &lines {
                if !before.contains(l) {
                    let was = before
                        .iter()
                        .find(|b| key(b) == key(l))
                        .map(|b| b.split_once(" = ").map_or("", |x| x.1).to_owned());
                    changed.push(match was {
                        Some(w) => format!("{l} (was {w})"),
                        None => format!("{l} (new)"),
                    });
                }
            }
            for b in &before {
                if !lines.iter().any(|l| key(l) == key(b)) {
                    changed.push(format!("{} removed", key(b)));
                }
            }
        }
        let summary = match (&last, changed.is_empty()) {
            (None, _) => "first start".to_owned(),
            (Some(_), true) => "configuration unchanged since the last start".to_owned(),
            (Some(_), false) => format!("changed since the last start: {}", changed.join("; ")),
        };
        let mut entries = vec![AuditEntry {
            rule_version: Some(self.rules.version.clone()),
            detail: Some(format!("{summary}\nconfig:\n{}", lines.join("\n"))),
            ..AuditEntry::new(now, Event::NodeStart, Decision::Ok)
        }];
        if let Some(c) = changed.iter().find(|c| c.starts_with("rules.version")) {
            entries.push(AuditEntry {
                rule_version: Some(self.rules.version.clone()),
                detail: Some(format!("who may query this node may have changed: {c}")),
                ..AuditEntry::new(now, Event::ScopeChange, Decision::Alert)
            });
        }
        self.audit(&entries)?;
        Ok(changed)
    }
}
