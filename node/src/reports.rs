//! Reports computed from the node's own audit log and agreements.
//!
//! * [`transparency`]: the agency's public transparency report — partners, inbound and
//!   outbound query counts by purpose, refusals by reason, retention, and the usage and
//!   privacy policy. Free text is left out; no inbound search or partner is.
//! * [`search_age`]: how old the reads were that searches asked for (the State Auditor's
//!   Table 2), for inbound and outbound searches.
//! * [`inbound_summary`]: inbound queries by requester and purpose, with decisions.
//! * [`anomalies`]: the same plate searched repeatedly by one user, vague reasons, and
//!   searches at unusual hours.
//! * [`review_sample`]: a random sample of searches for a supervisor to mark justified or
//!   not; each marking is an audit entry.

use std::collections::BTreeMap;
use std::fmt::Write;

use ring::rand::SecureRandom;

use crate::audit::StoredEntry;
use crate::audit::{Decision, Event};
use crate::node::Node;
use crate::{Error, store};

const DAY: i64 = 86_400;

fn w(out: &mut String, line: String) {
    let _ = writeln!(out, "{line}");
}

/// The agency's public transparency report.
pub fn transparency(node: &Node, entries: &[StoredEntry], now: i64) -> Result<String, Error> {
    let mut out = String::new();
    let a = &node.agency;
    w(
        &mut out,
        format!(
            "ALPR transparency report — {} ({}, {} {} agency)",
            a.name, a.ori, a.jurisdiction, a.kind
        ),
    );
    w(
        &mut out,
        format!(
            "Generated {} from the node's hash-chained audit log ({} entries).",
            alpr_pki::fmt_time(now),
            entries.len()
        ),
    );
    w(
        &mut out,
        format!(
            "State rules: {} ({})",
            node.rules.version, node.rules.citation
        ),
    );
    w(
        &mut out,
        format!(
            "System: {} {}{}",
            alpr_proto::rules::SYSTEM_PRODUCT,
            alpr_proto::rules::SYSTEM_VERSION,
            match node.rules.check_system(
                alpr_proto::rules::SYSTEM_PRODUCT,
                alpr_proto::rules::SYSTEM_VERSION
            ) {
                Ok(()) if node.rules.system_approval_required => ", approved by the state",
                Ok(()) => "",
                Err(_) => ", NOT on the state's list of approved systems: it shares nothing",
            }
        ),
    );
    w(
        &mut out,
        format!(
            "Retention: {} days; searches beyond {} days need a warrant.",
            node.retention_days(),
            node.cfg.policy.no_warrant_lookback_days
        ),
    );
    if node.rules.owner_access || node.cfg.policy.owner_requests {
        w(
            &mut out,
            format!(
                "Registered owners' requests for their vehicle's data answered: {}.",
                entries
                    .iter()
                    .filter(|e| e.entry.event == crate::audit::Event::OwnerRequest)
                    .count()
            ),
        );
    }
    let agreements = store::agreements(&node.db())?;
    w(&mut out, String::new());
    w(
        &mut out,
        "Sharing partners (agreements registered in the public registry):".into(),
    );
    if agreements.is_empty() {
        w(&mut out, "  none".into());
    }
    for g in &agreements {
        let t = &g.terms;
        let (dir, other) = if t.provider_ori == a.ori {
            ("shares with", &t.requester_ori)
        } else {
            ("receives from", &t.provider_ori)
        };
        w(
            &mut out,
            format!(
                "  {dir} {other}: {}; purposes {}; look-back {} days; until {}; {}",
                t.data_types.join(" and "),
                t.purposes.join(","),
                t.max_lookback_days,
                alpr_pki::fmt_time(t.valid_until),
                if t.valid_until <= now && g.status.as_str() == "active" {
                    "expired"
                } else {
                    g.status.as_str()
                }
            ),
        );
    }
    for (title, event) in [
        (
            "Inbound queries (other agencies searching our data)",
            Event::InboundQuery,
        ),
        (
            "Outbound queries (our investigators searching others)",
            Event::OutboundQuery,
        ),
    ] {
        let mut by: BTreeMap<(String, String, String), u64> = BTreeMap::new();
        for e in entries.iter().filter(|e| e.entry.event == event) {
            let x = &e.entry;
            let who = if event == Event::InboundQuery {
                x.requester_ori
                    .clone()
                    .unwrap_or_else(|| "unverified".into())
            } else {
                x.target.clone().unwrap_or_default()
            };
            *by.entry((
                who,
                x.purpose.clone().unwrap_or_else(|| "-".into()),
                x.decision.to_string(),
            ))
            .or_default() += 1;
        }
        w(&mut out, String::new());
        w(&mut out, format!("{title}: {}", by.values().sum::<u64>()));
        for ((who, purpose, decision), n) in by {
            let pname = alpr_proto::purpose::lookup(&purpose)
                .map(|p| p.name.clone())
                .unwrap_or_default();
            w(
                &mut out,
                format!("  {who:<22} purpose {purpose:<9} {pname:<40} {decision:<9} {n}"),
            );
        }
    }
    // Hot lists: other agencies' lists hitting our cameras (each reported to the owner),
    // and our own shared lists hitting theirs.
    for (title, foreign) in [
        (
            "Hot-list hits on our cameras for other agencies' shared lists",
            true,
        ),
        (
            "Hits of our shared hot lists reported by other agencies",
            false,
        ),
    ] {
        let mut by: BTreeMap<(String, String), u64> = BTreeMap::new();
        for e in entries
            .iter()
            .filter(|e| e.entry.event == Event::HotlistHit)
        {
            let x = &e.entry;
            let who = if foreign {
                x.requester_ori.clone()
            } else {
                x.target.clone()
            };
            if let Some(who) = who {
                *by.entry((who, x.purpose.clone().unwrap_or_else(|| "-".into())))
                    .or_default() += 1;
            }
        }
        w(&mut out, String::new());
        w(&mut out, format!("{title}: {}", by.values().sum::<u64>()));
        for ((who, purpose), n) in by {
            w(&mut out, format!("  {who:<22} purpose {purpose:<9} {n}"));
        }
    }
    // What came of hits on our cameras (required in some states).
    let o = crate::outcomes::summarize(entries, node.rules.hit_outcome_days, now);
    w(&mut out, String::new());
    w(
        &mut out,
        format!(
            "Hot-list hits on our cameras: {}; outcome recorded for {}; led to a stop: {}",
            o.hits, o.recorded, o.stops
        ),
    );
    for (outcome, n) in &o.by_outcome {
        w(&mut out, format!("  {outcome:<22} {n}"));
    }
    if node.rules.hit_outcome_days > 0 {
        w(
            &mut out,
            format!(
                "  without an outcome after {} days ({} requires one): {}",
                node.rules.hit_outcome_days,
                node.rules.version,
                o.overdue.len()
            ),
        );
    }
    let mut refusals: BTreeMap<String, u64> = BTreeMap::new();
    for e in entries
        .iter()
        .filter(|e| e.entry.event == Event::InboundQuery && e.entry.decision == Decision::Refused)
    {
        *refusals
            .entry(e.entry.reason_code.clone().unwrap_or_default())
            .or_default() += 1;
    }
    w(&mut out, String::new());
    w(&mut out, "Inbound refusals by reason:".into());
    if refusals.is_empty() {
        w(&mut out, "  none".into());
    }
    for (r, n) in refusals {
        w(&mut out, format!("  {r:<40} {n}"));
    }
    let purges: u64 = entries
        .iter()
        .filter(|e| e.entry.event == Event::Purge)
        .filter_map(|e| e.entry.count)
        .sum();
    w(
        &mut out,
        format!("\nReads purged under retention: {purges}"),
    );
    let p = &node.cfg.usage_policy;
    w(
        &mut out,
        "\nUsage and privacy policy (Civil Code 1798.90.51):".into(),
    );
    for (k, v) in [
        ("Authorized purposes", &p.authorized_purposes),
        ("Authorized users and training", &p.authorized_users),
        ("Monitoring", &p.monitoring),
        ("Sharing", &p.sharing),
        ("Custodian", &p.custodian),
        ("Accuracy", &p.accuracy),
        ("Retention", &p.retention),
    ] {
        w(
            &mut out,
            format!(
                "  {k}: {}",
                if v.trim().is_empty() {
                    "(not yet written)"
                } else {
                    v
                }
            ),
        );
    }
    Ok(out)
}

/// The age buckets of [`search_age`]: up to how many days, and their label.
pub const AGE_BUCKETS: [(i64, &str); 6] = [
    (7, "up to 1 week"),
    (30, "1 week - 1 month"),
    (90, "1 - 3 months"),
    (180, "3 - 6 months"),
    (365, "6 - 12 months"),
    (i64::MAX, "over 1 year"),
];

/// How far back searches reached, by [`AGE_BUCKETS`], for inbound then outbound searches
/// that were not refused: `(event, counts, total)`.
pub fn search_age_counts(entries: &[StoredEntry]) -> Vec<(Event, [u64; 6], u64)> {
    let mut out = Vec::new();
    for event in [Event::InboundQuery, Event::OutboundQuery] {
        let mut counts = [0u64; AGE_BUCKETS.len()];
        let mut total = 0u64;
        for e in entries
            .iter()
            .filter(|e| e.entry.event == event && e.entry.decision != Decision::Refused)
        {
            let Some(start) = e.entry.window_start else {
                continue;
            };
            let age_days = (e.entry.at - start).max(0) / DAY;
            let i = AGE_BUCKETS
                .iter()
                .position(|(d, _)| age_days <= *d)
                .unwrap_or(AGE_BUCKETS.len() - 1);
            counts[i] += 1;
            total += 1;
        }
        out.push((event, counts, total));
    }
    out
}

/// Age buckets of search windows (the State Auditor's Table 2).
pub fn search_age(entries: &[StoredEntry]) -> String {
    let mut out = String::new();
    w(
        &mut out,
        "How far back searches reached (age of the oldest read asked for, at search time):".into(),
    );
    for (event, counts, total) in search_age_counts(entries) {
        w(&mut out, format!("  {event} ({total} searches)"));
        for (i, (_, label)) in AGE_BUCKETS.iter().enumerate() {
            let pct = if total == 0 {
                0.0
            } else {
                100.0 * counts[i] as f64 / total as f64
            };
            w(
                &mut out,
                format!("    {label:<18} {:>6} {pct:>5.1}%", counts[i]),
            );
        }
    }
    out
}

/// Inbound queries by requester and purpose.
pub fn inbound_summary(entries: &[StoredEntry]) -> String {
    let mut by: BTreeMap<(String, String), (u64, u64, u64)> = BTreeMap::new();
    for e in entries
        .iter()
        .filter(|e| e.entry.event == Event::InboundQuery)
    {
        let x = &e.entry;
        let k = (
            format!(
                "{} {}",
                x.requester_ori.as_deref().unwrap_or("?"),
                x.requester_agency.as_deref().unwrap_or("")
            ),
            x.purpose.clone().unwrap_or_else(|| "-".into()),
        );
        let v = by.entry(k).or_default();
        v.0 += 1;
        if x.decision == Decision::Answered {
            v.1 += 1;
            v.2 += x.count.unwrap_or(0);
        }
    }
    let mut out = String::from(
        "Inbound queries by requester and purpose (queries / answered / reads returned):\n",
    );
    for ((who, purpose), (n, a, reads)) in by {
        w(
            &mut out,
            format!("  {who:<60} {purpose:<9} {n:>5} {a:>5} {reads:>7}"),
        );
    }
    out
}

/// Anomaly flags.
pub fn anomalies(entries: &[StoredEntry], repeat_threshold: u64) -> String {
    let mut out = String::from("Anomalies:\n");
    let mut per_user_plate: BTreeMap<(String, String), u64> = BTreeMap::new();
    for e in entries
        .iter()
        .filter(|e| e.entry.event == Event::InboundQuery || e.entry.event == Event::OutboundQuery)
    {
        let x = &e.entry;
        if let (Some(u), Some(o), Some(p)) = (&x.requester_user, &x.requester_ori, &x.plate) {
            *per_user_plate
                .entry((format!("{u}@{o}"), p.clone()))
                .or_default() += 1;
        }
        if let Some(r) = &x.reason
            && alpr_proto::input::check_reason(r, false).is_err()
        {
            w(
                &mut out,
                format!(
                    "  vague reason: entry #{} {} {:?}",
                    e.seq,
                    x.requester_user.as_deref().unwrap_or("?"),
                    r
                ),
            );
        }
        if x.detail
            .as_deref()
            .unwrap_or("")
            .contains("flagged for audit review")
        {
            w(
                &mut out,
                format!("  catch-all purpose needing review: entry #{}", e.seq),
            );
        }
        let hour = (x.at.rem_euclid(DAY)) / 3600;
        if (1..5).contains(&hour) {
            w(
                &mut out,
                format!(
                    "  unusual hour ({hour:02}:00 UTC): entry #{} by {}",
                    e.seq,
                    x.requester_user.as_deref().unwrap_or("?")
                ),
            );
        }
    }
    for ((user, plate), n) in per_user_plate {
        if n >= repeat_threshold {
            w(
                &mut out,
                format!("  same plate searched repeatedly: {user} searched {plate} {n} times"),
            );
        }
    }
    out
}

/// Pick up to `n` random answered searches (inbound and outbound) for supervisor review.
pub fn review_sample(entries: &[StoredEntry], n: usize) -> Vec<&StoredEntry> {
    let mut pool: Vec<&StoredEntry> = entries
        .iter()
        .filter(|e| {
            (e.entry.event == Event::InboundQuery && e.entry.decision == Decision::Answered)
                || (e.entry.event == Event::OutboundQuery && e.entry.decision == Decision::Endorsed)
        })
        .collect();
    let rng = ring::rand::SystemRandom::new();
    // Fisher-Yates with OS randomness; with no randomness the sample is the newest entries.
    for i in (1..pool.len()).rev() {
        let mut b = [0u8; 8];
        let j = if rng.fill(&mut b).is_ok() {
            (u64::from_le_bytes(b) % (i as u64 + 1)) as usize
        } else {
            i
        };
        pool.swap(i, j);
    }
    pool.truncate(n);
    pool.sort_by_key(|e| e.seq);
    pool
}

impl Node {
    /// Record a supervisor's review of one search (justified or not) in the audit log.
    pub fn record_review(
        &self,
        by: &alpr_pki::VerifiedIdentity,
        seq: i64,
        justified: bool,
        note: &str,
    ) -> Result<(), Error> {
        if by.role != alpr_pki::Role::Supervisor || by.ori() != Some(self.ori()) {
            return Err(Error::NotPermitted(format!(
                "only this agency's supervisors review searches; you are {}",
                by.describe()
            )));
        }
        self.audit(&[crate::audit::AuditEntry {
            requester_user: by.user.clone(),
            detail: Some(format!("review of audit entry #{seq}: {note}")),
            ..crate::audit::AuditEntry::new(
                alpr_pki::now_unix(),
                Event::SearchReview,
                if justified {
                    Decision::Justified
                } else {
                    Decision::NotJustified
                },
            )
        }])
    }
}
