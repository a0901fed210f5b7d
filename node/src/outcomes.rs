//! What came of hot-list hits (Virginia, HB 2724: the outcome of each hit that led to a
//! stop is recorded). A supervisor or admin records, for one `hotlist_hit` entry, whether
//! it led to a stop and what came of it; the record is a `hit_outcome` entry that refers
//! to the hit. Where the state sets `hit_outcome_days`, hits older than that without an
//! outcome are counted in the transparency report and alerted by the daily self-audit.

use std::collections::BTreeMap;

use alpr_proto::RefusalReason;
use alpr_proto::pb::HitOutcome;

use crate::audit::{Decision, Event, StoredEntry};
use crate::node::Node;
use crate::{Error, store};

/// Outcomes of a stop.
pub const STOP_OUTCOMES: &[&str] = &["arrest", "citation", "warning", "released", "misread"];
/// The outcome of a hit that led to no stop.
pub const NO_STOP: &str = "no_stop";

/// Hits and what came of them, from the audit log.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Outcomes {
    /// Hot-list hits (on this agency's cameras, of its own or shared lists; not the hits
    /// other agencies report of this agency's shared lists).
    pub hits: u64,
    /// Hits with an outcome recorded.
    pub recorded: u64,
    /// Hits that led to a stop.
    pub stops: u64,
    /// Latest outcome per hit, counted by outcome.
    pub by_outcome: BTreeMap<String, u64>,
    /// Hits older than the state's limit with no outcome: (entry number, when).
    pub overdue: Vec<(i64, i64)>,
}

/// Whether an entry is a hit on this agency's own cameras.
fn own_hit(e: &StoredEntry) -> bool {
    e.entry.event == Event::HotlistHit && e.entry.target.is_none()
}

/// Count hits and outcomes in `entries`; a hit older than `days` (if not 0) at `now`
/// without an outcome is overdue.
pub fn summarize(entries: &[StoredEntry], days: u32, now: i64) -> Outcomes {
    let mut latest: BTreeMap<i64, (bool, String)> = BTreeMap::new();
    for e in entries
        .iter()
        .filter(|e| e.entry.event == Event::HitOutcome)
    {
        if let (Some(hit), Some(o)) = (e.entry.refers_to, &e.entry.outcome) {
            latest.insert(hit, (e.entry.decision == Decision::Stopped, o.clone()));
        }
    }
    let mut out = Outcomes::default();
    for h in entries.iter().filter(|e| own_hit(e)) {
        out.hits += 1;
        match latest.get(&h.seq) {
            Some((stopped, o)) => {
                out.recorded += 1;
                if *stopped {
                    out.stops += 1;
                }
                *out.by_outcome.entry(o.clone()).or_default() += 1;
            }
            None if days > 0 && h.entry.at < now - i64::from(days) * 86_400 => {
                out.overdue.push((h.seq, h.entry.at));
            }
            None => {}
        }
    }
    out
}

impl Node {
    /// Record what came of hit `h.hit_seq` (called by [`Node::admin`], which checks the
    /// role and logs the result as a `hit_outcome` entry referring to the hit).
    pub(crate) fn check_hit_outcome(&self, h: &HitOutcome) -> Result<(i64, String), Error> {
        let bad =
            |m: String| Error::from(alpr_proto::Error::refused(RefusalReason::InvalidInput, m));
        let outcome = h.outcome.trim();
        let fits = if h.stopped {
            STOP_OUTCOMES.contains(&outcome)
        } else {
            outcome == NO_STOP
        };
        if !fits {
            return Err(bad(if h.stopped {
                format!(
                    "a stop's outcome is one of {}, not {outcome:?}",
                    STOP_OUTCOMES.join(", ")
                )
            } else {
                format!("a hit that led to no stop has the outcome {NO_STOP:?}, not {outcome:?}")
            }));
        }
        if h.note.trim().chars().count() < 10 {
            return Err(bad("say what happened (a note of 10+ characters)".into()));
        }
        let seq = i64::try_from(h.hit_seq).map_err(|_| bad(format!("no entry #{}", h.hit_seq)))?;
        let db = self.audit_db()?;
        let hit = store::audit::list(&db, Some(Event::HotlistHit))?
            .into_iter()
            .find(|e| e.seq == seq && own_hit(e))
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
