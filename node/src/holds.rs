//! Evidence holds and hot lists.
//!
//! * An **evidence hold** (case number, plate, window, expiry) is placed by a supervisor.
//!   Before the retention purge drops a day, the held reads are copied aside and kept until
//!   the hold expires. Holds never widen what other agencies can query: admission still
//!   stops every window at retention.
//! * A **hot list** (name, source, topic, expiry) is loaded by an operator. Lists whose
//!   topic or source the node's state rules prohibit (a California node will not load an
//!   immigration-violator list) are refused. Ingested reads that match an active list raise
//!   a `hotlist_hit` alert entry.

use std::collections::HashMap;

use alpr_pki::{Role, VerifiedIdentity};
use alpr_proto::pb::Read;

use crate::audit::AuditEntry;
use crate::audit::{Decision, Event};
use crate::node::Node;
use crate::{Error, store};

/// Alert entries for ingested reads that match an active hot list.
pub fn hits(list: &HashMap<String, (String, String)>, reads: &[Read], now: i64) -> Vec<AuditEntry> {
    reads
        .iter()
        .filter_map(|r| {
            list.get(&r.plate).map(|(name, note)| AuditEntry {
                plate: Some(r.plate.clone()),
                detail: Some(format!(
                    "{} seen by camera {} at {} ({:.5}, {:.5}); on hot list {name:?}: {note}",
                    r.plate,
                    r.camera_id,
                    alpr_pki::fmt_time(r.captured_at),
                    r.latitude,
                    r.longitude
                )),
                ..AuditEntry::new(now, Event::HotlistHit, Decision::Alert)
            })
        })
        .collect()
}

impl Node {
    /// Place an evidence hold (a supervisor of this agency), logged with the state digest.
    /// Called by [`Node::admin`], which holds the state lock.
    pub(crate) fn place_hold(
        &self,
        by: &VerifiedIdentity,
        h: &alpr_proto::pb::HoldCommand,
    ) -> Result<String, Error> {
        let now = alpr_pki::now_unix();
        if by.role != Role::Supervisor {
            return Err(Error::NotPermitted(format!(
                "evidence holds need a supervisor's approval; you are {}",
                by.describe()
            )));
        }
        alpr_proto::input::check_case_number(&h.case_number)?;
        let plate = alpr_proto::input::normalize_plate(&h.plate)?;
        if h.window_start >= h.window_end || h.expires_at <= now {
            return Err(Error::Usage(
                "a hold needs a window and an expiry in the future".into(),
            ));
        }
        let db = self.db();
        let id = store::holds::place(
            &db,
            &h.case_number,
            &plate,
            (h.window_start, h.window_end),
            h.expires_at,
            &by.describe(),
            now,
        )?;
        let msg = format!(
            "evidence hold {id} on {plate} for case {} ({} .. {}) until {}, approved by {}",
            h.case_number,
            alpr_pki::fmt_time(h.window_start),
            alpr_pki::fmt_time(h.window_end),
            alpr_pki::fmt_time(h.expires_at),
            by.describe()
        );
        let state_digest = Some(crate::state::digest(&db)?);
        drop(db);
        self.audit(&[AuditEntry {
            state_digest,
            plate: Some(plate),
            case_number: Some(h.case_number.clone()),
            requester_user: by.user.clone(),
            detail: Some(format!("{msg}: {}", h.note)),
            ..AuditEntry::new(now, Event::EvidenceHold, Decision::Ok)
        }])?;
        Ok(msg)
    }

    /// Withdraw this agency's hot list `id` before its expiry (a recovered car, a list sent
    /// in error): it lapses at once and its plates are deleted; reads ingested afterwards
    /// match nothing of it. Logged (`hotlist_load`, `deleted`) with `by` and the reason.
    pub fn withdraw_hotlist(&self, id: i64, reason: &str, by: &str) -> Result<String, Error> {
        if reason.trim().is_empty() {
            return Err(Error::Usage(
                "say why the hot list is withdrawn (a reason is logged)".into(),
            ));
        }
        let now = alpr_pki::now_unix();
        let _state = self.state_lock.lock().unwrap_or_else(|p| p.into_inner());
        let mut db = self.db();
        let Some((name, plates)) = store::holds::withdraw_hotlist(&mut db, id, now)? else {
            return Err(Error::Usage(format!("no hot list {id} is in force")));
        };
        let state_digest = Some(crate::state::digest(&db)?);
        drop(db);
        let msg =
            format!("hot list {name} ({id}) withdrawn before its expiry, {plates} plates deleted");
        self.audit(&[AuditEntry {
            state_digest,
            count: Some(plates),
            requester_user: Some(by.into()),
            detail: Some(format!("{msg}: {}", reason.trim())),
            ..AuditEntry::new(now, Event::HotlistLoad, Decision::Deleted)
        }])?;
        Ok(msg)
    }

    /// Load a hot list from CSV text (`plate,note` per line), refused if the state rules
    /// prohibit its topic or source. Logged.
    pub fn load_hotlist(
        &self,
        name: &str,
        source: &str,
        topic: &str,
        expires_at: i64,
        csv: &str,
        by: &str,
    ) -> Result<u64, Error> {
        let now = alpr_pki::now_unix();
        for (what, v) in [("name", name), ("source", source), ("topic", topic)] {
            if v.trim().is_empty() {
                return Err(Error::Usage(format!("a hot list needs a {what}")));
            }
        }
        let label = format!("{name} {source} {topic}");
        let blocked = (self.rules.refuse_immigration && label.to_lowercase().contains("immigra"))
            || alpr_proto::input::check_terms("hot list", &label, &self.rules.prohibited_terms)
                .is_err()
            || alpr_proto::input::check_terms("hot list", &label, &self.cfg.policy.blocked_terms)
                .is_err();
        if blocked || expires_at <= now {
            let why = if blocked {
                format!(
                    "{} rules prohibit this hot list's topic or source",
                    self.rules.version
                )
            } else {
                "a hot list must carry a future expiry".into()
            };
            self.audit(&[AuditEntry {
                requester_user: Some(by.into()),
                detail: Some(format!("{label}: {why}")),
                ..AuditEntry::new(now, Event::HotlistLoad, Decision::Refused)
            }])?;
            return Err(Error::Usage(why));
        }
        let mut entries = Vec::new();
        for (i, line) in csv
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
        {
            let (plate, note) = line.split_once(',').unwrap_or((line, ""));
            if i == 0 && plate.trim().eq_ignore_ascii_case("plate") {
                continue;
            }
            let plate = alpr_proto::input::normalize_plate(plate)
                .map_err(|e| Error::Usage(format!("hot list line {}: {}", i + 1, e.detail())))?;
            entries.push((plate, note.trim().to_owned()));
        }
        if entries.is_empty() {
            return Err(Error::Usage(
                "the hot list holds no plate (CSV: plate,note, one per line)".into(),
            ));
        }
        let _state = self.state_lock.lock().unwrap_or_else(|p| p.into_inner());
        let mut db = self.db();
        store::holds::load_hotlist(&mut db, (name, source, topic), expires_at, &entries, now)?;
        let state_digest = Some(crate::state::digest(&db)?);
        drop(db);
        self.audit(&[AuditEntry {
            state_digest,
            count: Some(entries.len() as u64),
            requester_user: Some(by.into()),
            detail: Some(format!(
                "{label}: {} plates, until {}",
                entries.len(),
                alpr_pki::fmt_time(expires_at)
            )),
            ..AuditEntry::new(now, Event::HotlistLoad, Decision::Ok)
        }])?;
        Ok(entries.len() as u64)
    }
}
