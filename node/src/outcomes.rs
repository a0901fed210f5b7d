//! What came of hot-list hits (Virginia, HB 2724: the outcome of each hit that led to a
//! stop is recorded). A supervisor or admin records, for one `hotlist_hit` entry, whether
//! it led to a stop and what came of it; the record is a `hit_outcome` entry that refers
//! to the hit. Where the state sets `hit_outcome_days`, hits older than that without an
//! outcome are counted in the transparency report and alerted by the daily self-audit.

use std::collections::BTreeMap;

use crate::audit::{Decision, Event, StoredEntry};

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
pub fn own_hit(e: &StoredEntry) -> bool {
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
