//! Administration: switches, accounts, search reviews and evidence holds, each a command
//! from a verified person of this agency, checked for role and input, carried out and
//! logged — refused attempts included.

use alpr_pki::Role;
use alpr_proto::RefusalReason;

use crate::Error;
use crate::audit::{AuditEntry, Decision, Event};
use crate::node::Node;
use crate::settings::{Flag, Switch};
use crate::store;

impl Node {
    /// Run an administrative command from `by` (a verified person of this agency) and log it.
    pub fn admin(
        &self,
        by: &alpr_pki::VerifiedIdentity,
        req: alpr_proto::pb::AdminRequest,
    ) -> Result<String, Error> {
        use alpr_proto::pb::admin_request::Command;
        let now = alpr_pki::now_unix();
        let event = match &req.command {
            Some(Command::SetSwitch(_)) => Event::ConfigChange,
            Some(Command::User(_)) => Event::AccountChange,
            Some(Command::Review(_)) => Event::SearchReview,
            Some(Command::Hold(_)) => Event::EvidenceHold,
            Some(Command::AcknowledgeState(_)) => Event::ConfigChange,
            Some(Command::RequestDecision(_)) => Event::RequestApproval,
            Some(Command::HitOutcome(_)) => Event::HitOutcome,
            None => Event::AdminCommand,
        };
        let refused_entry = |detail: String, reason: RefusalReason| AuditEntry {
            requester_user: by.user.clone(),
            requester_ori: by.ori().map(str::to_owned),
            requester_agency: by
                .agency
                .as_ref()
                .map(|a| format!("{} ({}, {})", a.name, a.jurisdiction, a.kind)),
            reason_code: Some(reason.as_str_name().into()),
            detail: Some(detail),
            ..AuditEntry::new(now, event, Decision::Refused)
        };
        // Every attempt is an entry, from any role or agency: the refusal too.
        if by.ori() != Some(self.ori()) || !matches!(by.role, Role::Admin | Role::Supervisor) {
            let detail = format!(
                "only this agency's admins and supervisors administer this node; you are {}",
                by.describe()
            );
            self.audit(&[refused_entry(detail.clone(), RefusalReason::NotAuthorized)])?;
            return Err(Error::NotPermitted(detail));
        }
        if let Err(e) =
            alpr_proto::limits::check_size("the admin command", prost::Message::encoded_len(&req))
                .and_then(|()| check_admin_text(&req))
        {
            self.audit(&[refused_entry(e.detail(), e.reason())])?;
            return Err(e.into());
        }
        // The change and its entry (with the state digest after it) go together: a state
        // check never sees one without the other.
        let _state = self.state_lock.lock().unwrap_or_else(|p| p.into_inner());
        let mut reveal = None;
        let conn = self.db();
        let result = match req.command {
            Some(Command::SetSwitch(s)) => self.set_switch(&conn, by, &s, now),
            Some(Command::AcknowledgeState(a)) => self.acknowledge_state(by, &a.note),
            Some(Command::RequestDecision(d)) => decide_request(&conn, by, &d, now),
            // A console enrollment code goes back to the caller only: the log says one
            // was issued, never what it is.
            Some(Command::User(u)) if u.action == "invite" => {
                crate::enrollment::invite(&conn, by, &u.user, now).map(|(logged, code)| {
                    reveal = Some(code);
                    logged
                })
            }
            Some(Command::User(u)) if u.action == "approve-key" => {
                self.approve_console_key(&conn, by, &u.user, now)
            }
            Some(Command::User(u)) => {
                crate::accounts::apply(&conn, by, &u.action, &u.user, &u.role, u.trained_at, now)
                    .map(|m| {
                        if u.note.is_empty() {
                            m
                        } else {
                            format!("{m}: {}", u.note)
                        }
                    })
            }
            // Holds and reviews log their own entry when they succeed; a refusal is logged here.
            Some(Command::Hold(h)) => {
                drop(conn);
                return self.place_hold(by, &h).or_else(|e| {
                    self.audit(&[refused_entry(e.to_string(), refusal_reason(&e))])?;
                    Err(e)
                });
            }
            Some(Command::HitOutcome(h)) => {
                drop(conn);
                return match self.check_hit_outcome(&h) {
                    Ok((seq, message)) => {
                        self.audit(&[AuditEntry {
                            requester_user: by.user.clone(),
                            requester_ori: by.ori().map(str::to_owned),
                            refers_to: Some(seq),
                            outcome: Some(h.outcome.trim().to_owned()),
                            detail: Some(message.clone()),
                            ..AuditEntry::new(
                                now,
                                Event::HitOutcome,
                                if h.stopped {
                                    Decision::Stopped
                                } else {
                                    Decision::NotStopped
                                },
                            )
                        }])?;
                        Ok(message)
                    }
                    Err(e) => {
                        self.audit(&[refused_entry(e.to_string(), refusal_reason(&e))])?;
                        Err(e)
                    }
                };
            }
            Some(Command::Review(r)) => {
                drop(conn);
                return match self.record_review(by, r.seq, r.justified, &r.note) {
                    Ok(()) => Ok(format!("recorded review of entry #{}", r.seq)),
                    Err(e) => {
                        self.audit(&[refused_entry(e.to_string(), refusal_reason(&e))])?;
                        Err(e)
                    }
                };
            }
            None => {
                Err(alpr_proto::Error::refused(RefusalReason::InvalidInput, "empty command").into())
            }
        };
        let state_digest = match &result {
            Ok(_) => Some(crate::state::digest(&conn)?),
            Err(_) => None,
        };
        drop(conn);
        let mut entries = vec![AuditEntry {
            state_digest,
            requester_user: by.user.clone(),
            requester_ori: by.ori().map(str::to_owned),
            reason_code: result
                .as_ref()
                .err()
                .and_then(Error::reason)
                .map(|r| r.as_str_name().into()),
            detail: Some(match &result {
                Ok(m) => m.clone(),
                Err(e) => e.to_string(),
            }),
            ..AuditEntry::new(
                now,
                event,
                if result.is_ok() {
                    Decision::Ok
                } else {
                    Decision::Refused
                },
            )
        }];
        if let (Event::ConfigChange, Ok(what)) = (event, &result) {
            // A switch decides who may query this node: the admins hear of every flip.
            entries.push(AuditEntry {
                requester_user: by.user.clone(),
                detail: Some(format!("who may query this node changed: {what}")),
                ..AuditEntry::new(now, Event::ScopeChange, Decision::Alert)
            });
        }
        self.audit(&entries)?;
        result.map(|m| match reveal {
            Some(code) => format!("{m}\nenrollment code: {code}"),
            None => m,
        })
    }

    fn set_switch(
        &self,
        conn: &store::Db,
        by: &alpr_pki::VerifiedIdentity,
        s: &alpr_proto::pb::SetSwitch,
        now: i64,
    ) -> Result<String, Error> {
        if by.role != Role::Admin {
            return Err(Error::NotPermitted(format!(
                "only an admin changes sharing switches; you are {}",
                by.describe()
            )));
        }
        let who = by.describe();
        let switch = s.name.parse::<Switch>().map_err(Error::Usage)?;
        match switch {
            Switch::Sharing => {
                if s.on {
                    let missing = self.cfg.usage_policy.missing();
                    if !missing.is_empty() {
                        return Err(Error::PolicyIncomplete(
                            missing.into_iter().map(str::to_owned).collect(),
                        ));
                    }
                }
                store::settings::set_flag(conn, Flag::SharingEnabled, s.on)?;
                Ok(format!(
                    "sharing {} by {who}",
                    if s.on { "turned ON" } else { "turned OFF" }
                ))
            }
            Switch::RefuseAll => {
                store::settings::set_flag(conn, Flag::RefuseAll, s.on)?;
                Ok(format!(
                    "refuse-all {} by {who}",
                    if s.on { "ON" } else { "OFF" }
                ))
            }
            Switch::RefuseRequester => {
                alpr_pki::claims::validate_ori(&s.ori).map_err(|e| Error::Usage(e.to_string()))?;
                store::settings::set_refused(conn, &s.ori, s.on, &who, &s.note, now)?;
                Ok(format!(
                    "{} {} by {who}",
                    if s.on {
                        "refusing"
                    } else {
                        "no longer refusing"
                    },
                    s.ori
                ))
            }
        }
    }
}

/// Every free-text field of an admin command follows the wire's text rule
/// ([`alpr_proto::input::check_text`]).
fn check_admin_text(req: &alpr_proto::pb::AdminRequest) -> Result<(), alpr_proto::Error> {
    use alpr_proto::input::check_text;
    use alpr_proto::pb::admin_request::Command;
    match &req.command {
        Some(Command::SetSwitch(s)) => {
            check_text("switch name", &s.name)?;
            check_text("ORI", &s.ori)?;
            check_text("note", &s.note)
        }
        Some(Command::User(u)) => {
            check_text("action", &u.action)?;
            check_text("user", &u.user)?;
            check_text("role", &u.role)?;
            check_text("note", &u.note)
        }
        Some(Command::Review(r)) => check_text("note", &r.note),
        Some(Command::AcknowledgeState(a)) => check_text("note", &a.note),
        Some(Command::RequestDecision(d)) => check_text("note", &d.note),
        Some(Command::HitOutcome(h)) => {
            check_text("outcome", &h.outcome)?;
            check_text("note", &h.note)
        }
        Some(Command::Hold(h)) => {
            check_text("case number", &h.case_number)?;
            check_text("plate", &h.plate)?;
            check_text("note", &h.note)
        }
        None => Ok(()),
    }
}

/// A named person's decision on a queued out-of-state request.
fn decide_request(
    conn: &store::Db,
    by: &alpr_pki::VerifiedIdentity,
    d: &alpr_proto::pb::RequestDecision,
    now: i64,
) -> Result<String, Error> {
    if d.note.trim().len() < 10 {
        return Err(alpr_proto::Error::refused(
            RefusalReason::InvalidInput,
            "say why the request is approved or denied (a note of 10+ characters)",
        )
        .into());
    }
    let id =
        i64::try_from(d.id).map_err(|_| Error::Usage(format!("no queued request #{}", d.id)))?;
    let r = store::approvals::decide(conn, id, d.approve, &by.describe(), d.note.trim(), now)?;
    Ok(format!(
        "request #{id} from {}@{} for {} ({}) under case {} {} by {}: {}{}",
        r.requester_user,
        r.requester_ori,
        r.asked.plate,
        r.asked.purpose,
        r.asked.case_number,
        if d.approve { "approved" } else { "denied" },
        by.describe(),
        d.note.trim(),
        if d.approve {
            "; the same search sent again is answered once, within a day"
        } else {
            ""
        }
    ))
}

/// The reason code of a refused admin command (`INVALID_INPUT` when it was not a rule).
fn refusal_reason(e: &Error) -> RefusalReason {
    e.reason().unwrap_or(RefusalReason::InvalidInput)
}

impl Node {
    /// Check a record of what came of hit `h.hit_seq` ([`crate::outcomes`]); [`Node::admin`]
    /// has checked the role and logs the result as a `hit_outcome` entry naming the hit.
    fn check_hit_outcome(&self, h: &alpr_proto::pb::HitOutcome) -> Result<(i64, String), Error> {
        let bad =
            |m: String| Error::from(alpr_proto::Error::refused(RefusalReason::InvalidInput, m));
        let outcome = h.outcome.trim();
        let fits = if h.stopped {
            crate::outcomes::STOP_OUTCOMES.contains(&outcome)
        } else {
            outcome == crate::outcomes::NO_STOP
        };
        if !fits {
            return Err(bad(if h.stopped {
                format!(
                    "a stop's outcome is one of {}, not {outcome:?}",
                    crate::outcomes::STOP_OUTCOMES.join(", ")
                )
            } else {
                format!(
                    "a hit that led to no stop has the outcome {:?}, not {outcome:?}",
                    crate::outcomes::NO_STOP
                )
            }));
        }
        if h.note.trim().chars().count() < 10 {
            return Err(bad("say what happened (a note of 10+ characters)".into()));
        }
        let seq = i64::try_from(h.hit_seq).map_err(|_| bad(format!("no entry #{}", h.hit_seq)))?;
        let db = self.audit_db()?;
        let hit = store::audit::list(&db, Some(Event::HotlistHit))?
            .into_iter()
            .find(|e| e.seq == seq && crate::outcomes::own_hit(e))
            .ok_or_else(|| {
                bad(format!(
                    "entry #{seq} is not a hot-list hit on this agency's cameras (alpr-node hits lists them)"
                ))
            })?;
        Ok((
            seq,
            format!(
                "hit #{seq} ({} at {}): {}, {outcome}: {}",
                hit.entry.plate.as_deref().unwrap_or("?"),
                alpr_pki::fmt_time(hit.entry.at),
                if h.stopped { "stopped" } else { "not stopped" },
                h.note.trim()
            ),
        ))
    }
}
