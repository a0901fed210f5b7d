//! Published reports (issue 16, item 4): the public audit of other agencies' searches of
//! this agency's data, for one calendar period, as a signed, dated JSON file (the record)
//! and an HTML page (for people), generated on the schedule the state's rules set
//! (`[state.report]`; Oregon: quarterly, within 2 days) or by hand (`alpr-node report
//! publish`).
//!
//! No omission is possible unnoticed: the report lists every inbound search of the period
//! with its audit entry number, and carries the signed tree head of the audit log it was
//! read from, so whoever holds the log (or an anchored copy) can check that each entry of
//! the period is in the report and nothing else is.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use alpr_proto::envelope;
use serde::{Deserialize, Serialize};
use time::{Date, Month, OffsetDateTime};

use crate::audit::{AuditEntry, Decision, Event, StoredEntry};
use crate::{Error, Node, store};

/// The payload type of a signed published report.
pub const REPORT_TYPE: &str = "alpr.v1.PublicReport";
/// The report format tag.
pub const FORMAT: &str = "alpr-public-report-v1";

/// A calendar period, UTC.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Period {
    /// `2026-Q3`, `2026-11` or `2026`.
    pub label: String,
    /// First second, Unix seconds.
    pub start: i64,
    /// First second after it.
    pub end: i64,
}

fn month_start(year: i32, month: u8) -> Result<i64, Error> {
    let m = Month::try_from(month).map_err(|e| Error::Usage(e.to_string()))?;
    let d = Date::from_calendar_date(year, m, 1).map_err(|e| Error::Usage(e.to_string()))?;
    Ok(d.midnight().assume_utc().unix_timestamp())
}

impl Period {
    /// Parse `YYYY`, `YYYY-Qn` or `YYYY-MM`.
    pub fn parse(label: &str) -> Result<Self, Error> {
        let bad = || {
            Error::Usage(format!(
                "period {label:?} is not YYYY, YYYY-Qn (1-4) or YYYY-MM"
            ))
        };
        let (year, rest) = match label.split_once('-') {
            Some((y, r)) => (y, Some(r)),
            None => (label, None),
        };
        if year.len() != 4 {
            return Err(bad());
        }
        let year: i32 = year.parse().map_err(|_| bad())?;
        let (first, months) = match rest {
            None => (1, 12),
            Some(q) if q.starts_with('Q') => {
                let n: u8 = q[1..].parse().map_err(|_| bad())?;
                if !(1..=4).contains(&n) {
                    return Err(bad());
                }
                (3 * (n - 1) + 1, 3)
            }
            Some(m) => {
                let n: u8 = m.parse().map_err(|_| bad())?;
                if !(1..=12).contains(&n) || m.len() != 2 {
                    return Err(bad());
                }
                (n, 1)
            }
        };
        let start = month_start(year, first)?;
        let next = first + months;
        let end = if next > 12 {
            month_start(year + 1, next - 12)?
        } else {
            month_start(year, next)?
        };
        Ok(Self {
            label: label.to_owned(),
            start,
            end,
        })
    }

    /// The period of kind `every` (`monthly`, `quarterly`, `yearly`) that contains `t`.
    pub fn containing(every: &str, t: i64) -> Result<Self, Error> {
        let d = OffsetDateTime::from_unix_timestamp(t).map_err(|e| Error::Usage(e.to_string()))?;
        let (y, m) = (d.year(), u8::from(d.month()));
        Self::parse(&match every {
            "monthly" => format!("{y}-{m:02}"),
            "quarterly" => format!("{y}-Q{}", (m - 1) / 3 + 1),
            "yearly" => format!("{y}"),
            other => return Err(Error::Usage(format!("report period {other:?}"))),
        })
    }

    /// The last period of kind `every` that ended at or before `t`.
    pub fn last_complete(every: &str, t: i64) -> Result<Self, Error> {
        let current = Self::containing(every, t)?;
        Self::containing(every, current.start - 1)
    }
}

/// One search of the period, as published (no plate, case number or reason: those stay
/// in the audit log, for auditors).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublishedSearch {
    /// The audit entry's number.
    pub seq: i64,
    /// When, Unix seconds.
    pub at: i64,
    /// The requesting agency.
    pub requester_ori: String,
    /// Its name, jurisdiction and kind.
    pub requester_agency: String,
    /// The purpose code.
    pub purpose: String,
    /// `answered` or `refused`.
    pub decision: String,
    /// The refusal reason, if refused.
    pub reason_code: Option<String>,
    /// Reads returned.
    pub reads: u64,
}

/// A published report.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PublicReport {
    /// [`FORMAT`].
    pub format: String,
    /// The agency.
    pub ori: String,
    /// Its name.
    pub agency: String,
    /// The state rules in force when it was generated.
    pub rules: String,
    /// The system that generated it.
    pub system: String,
    /// The period.
    pub period: Period,
    /// When generated.
    pub generated_at: i64,
    /// Audit entries the log held when it was read.
    pub audit_size: u64,
    /// The audit tree root (hex) at `audit_size`: the report is about that log.
    pub audit_root: String,
    /// Searches of the period: answered, refused, reads returned.
    pub totals: BTreeMap<String, u64>,
    /// Searches per requesting agency.
    pub by_requester: BTreeMap<String, u64>,
    /// Searches per purpose code.
    pub by_purpose: BTreeMap<String, u64>,
    /// Every search of the period, in log order.
    pub searches: Vec<PublishedSearch>,
}

/// The files a publication wrote.
#[derive(Clone, Debug)]
pub struct Published {
    /// The report.
    pub report: PublicReport,
    /// `<ori>-<period>.json`, `.signed` and `.html`.
    pub files: Vec<PathBuf>,
}

/// The report of `entries` (the whole log, `size` entries with tree root `root`) for
/// `period`.
pub fn build(
    node: &Node,
    entries: &[StoredEntry],
    (size, root): (u64, &str),
    period: &Period,
    now: i64,
) -> PublicReport {
    let mut searches = Vec::new();
    let mut totals = BTreeMap::new();
    let mut by_requester = BTreeMap::new();
    let mut by_purpose = BTreeMap::new();
    for s in entries {
        let e = &s.entry;
        if e.event != Event::InboundQuery || e.at < period.start || e.at >= period.end {
            continue;
        }
        let decision = e.decision.as_str().to_owned();
        let ori = e.requester_ori.clone().unwrap_or_default();
        *totals.entry("searches".to_owned()).or_insert(0) += 1;
        *totals.entry(decision.clone()).or_insert(0) += 1;
        *totals.entry("reads returned".to_owned()).or_insert(0) += e.count.unwrap_or(0);
        *by_requester.entry(ori.clone()).or_insert(0) += 1;
        *by_purpose
            .entry(e.purpose.clone().unwrap_or_default())
            .or_insert(0) += 1;
        searches.push(PublishedSearch {
            seq: s.seq,
            at: e.at,
            requester_ori: ori,
            requester_agency: e.requester_agency.clone().unwrap_or_default(),
            purpose: e.purpose.clone().unwrap_or_default(),
            decision,
            reason_code: e.reason_code.clone(),
            reads: e.count.unwrap_or(0),
        });
    }
    PublicReport {
        format: FORMAT.into(),
        ori: node.ori().to_owned(),
        agency: node.agency.name.clone(),
        rules: node.rules.version.clone(),
        system: format!(
            "{} {}",
            alpr_proto::rules::SYSTEM_PRODUCT,
            alpr_proto::rules::SYSTEM_VERSION
        ),
        period: period.clone(),
        generated_at: now,
        audit_size: size,
        audit_root: root.to_owned(),
        totals,
        by_requester,
        by_purpose,
        searches,
    }
}

/// Escape text for HTML.
fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The report as an HTML page (every value escaped; no script, no outside resource).
pub fn html(r: &PublicReport) -> String {
    let mut h = String::new();
    let t = |v: i64| esc(&alpr_pki::fmt_time(v));
    let _ = write!(
        h,
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>ALPR searches of {agency} data, {label}</title></head><body>\n<h1>ALPR searches of {agency} ({ori}) data by other agencies, {label}</h1>\n<p>{start} to {end}. Generated {generated} from the audit log of {size} entries (tree root <code>{root}</code>), under {rules}, by {system}. The signed record is the JSON file of the same name.</p>\n<h2>Totals</h2><table>",
        agency = esc(&r.agency),
        ori = esc(&r.ori),
        label = esc(&r.period.label),
        start = t(r.period.start),
        end = t(r.period.end),
        generated = t(r.generated_at),
        size = r.audit_size,
        root = esc(&r.audit_root),
        rules = esc(&r.rules),
        system = esc(&r.system),
    );
    for (k, v) in &r.totals {
        let _ = write!(h, "<tr><th>{}</th><td>{v}</td></tr>", esc(k));
    }
    h.push_str("</table>\n<h2>By requesting agency</h2><table>");
    for (k, v) in &r.by_requester {
        let _ = write!(h, "<tr><th>{}</th><td>{v}</td></tr>", esc(k));
    }
    h.push_str("</table>\n<h2>By purpose</h2><table>");
    for (k, v) in &r.by_purpose {
        let name = alpr_proto::purpose::lookup(k)
            .map(|p| p.name.as_str())
            .unwrap_or("");
        let _ = write!(h, "<tr><th>{} {}</th><td>{v}</td></tr>", esc(k), esc(name));
    }
    h.push_str("</table>\n<h2>Every search</h2><table><tr><th>entry</th><th>time</th><th>agency</th><th>purpose</th><th>decision</th><th>reads</th></tr>");
    for s in &r.searches {
        let _ = write!(
            h,
            "<tr><td>{}</td><td>{}</td><td>{} {}</td><td>{}</td><td>{}{}</td><td>{}</td></tr>",
            s.seq,
            t(s.at),
            esc(&s.requester_ori),
            esc(&s.requester_agency),
            esc(&s.purpose),
            esc(&s.decision),
            s.reason_code
                .as_deref()
                .map(|c| format!(" ({})", esc(c)))
                .unwrap_or_default(),
            s.reads
        );
    }
    h.push_str("</table>\n</body></html>\n");
    h
}

impl Node {
    /// Publish the report for `period` into `dir` (made if needed): the JSON record, the
    /// same bytes signed by the node certificate, and the HTML page. An existing report of
    /// the period is never overwritten. Logged.
    pub fn publish_report(&self, period: &Period, dir: &Path) -> Result<Published, Error> {
        let now = alpr_pki::now_unix();
        let log = self.audit_db()?;
        let size = store::audit::size(&log)?;
        let root = hex::encode(store::audit::root_at(&log, size)?);
        let entries = store::audit::list(&log, None)?;
        drop(log);
        let report = build(self, &entries, (size, &root), period, now);
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let stem = format!("{}-{}", self.ori(), period.label);
        let json =
            serde_json::to_string_pretty(&report).map_err(|e| Error::Usage(e.to_string()))?;
        let signed = envelope::seal_bytes(&self.signer, REPORT_TYPE, json.clone().into_bytes())?;
        let mut files = Vec::new();
        for (ext, bytes) in [
            ("json", json.into_bytes()),
            ("signed", prost::Message::encode_to_vec(&signed)),
            ("html", html(&report).into_bytes()),
        ] {
            let path = dir.join(format!("{stem}.{ext}"));
            crate::export::write_new(&path, &bytes, "a published report")?;
            files.push(path);
        }
        self.audit(&[AuditEntry {
            count: Some(report.searches.len() as u64),
            detail: Some(format!(
                "public report {} published to {}: {} searches of this agency's data",
                period.label,
                dir.display(),
                report.searches.len()
            )),
            ..AuditEntry::new(now, Event::PublicReport, Decision::Ok)
        }])?;
        Ok(Published { report, files })
    }

    /// On the state's schedule: publish the last complete period's report into
    /// `data_dir/reports` if it is not there yet. `None` when the rules set no schedule or
    /// it is published already.
    pub fn publish_scheduled(&self, now: i64) -> Result<Option<Published>, Error> {
        let Some(schedule) = &self.rules.report else {
            return Ok(None);
        };
        let period = Period::last_complete(&schedule.every, now)?;
        let dir = self.cfg.data_dir.join("reports");
        if dir
            .join(format!("{}-{}.json", self.ori(), period.label))
            .exists()
        {
            return Ok(None);
        }
        self.publish_report(&period, &dir).map(Some)
    }
}

/// Check a published report: its signature (a node certificate of the agency it names)
/// and that the JSON beside it is exactly what was signed.
pub fn verify(
    json: &[u8],
    signed: &[u8],
    trust: &alpr_pki::TrustStore,
) -> Result<PublicReport, Error> {
    let bad = |d: String| Error::Corrupt {
        what: "published report".into(),
        detail: d,
    };
    let signed: alpr_proto::pb::Signed =
        prost::Message::decode(signed).map_err(|e| bad(format!("signature file: {e}")))?;
    let (signer, payload) = envelope::open(trust, &signed, REPORT_TYPE, alpr_pki::now_unix())?;
    if payload != json {
        return Err(bad("the JSON is not the report that was signed".into()));
    }
    let r: PublicReport = serde_json::from_slice(json).map_err(|e| bad(e.to_string()))?;
    if signer.role != alpr_pki::Role::Node || signer.ori() != Some(r.ori.as_str()) {
        return Err(bad(format!(
            "signed by {}, not by a node of {}",
            signer.describe(),
            r.ori
        )));
    }
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn periods_are_calendar_periods() {
        let q = Period::parse("2026-Q4").unwrap();
        assert_eq!(q.start, 1_790_812_800); // 2026-10-01T00:00:00Z
        assert_eq!(q.end, 1_798_761_600); // 2027-01-01T00:00:00Z
        let m = Period::parse("2026-02").unwrap();
        assert_eq!(m.end - m.start, 28 * 86_400);
        assert_eq!(Period::containing("quarterly", q.start + 5).unwrap(), q);
        assert_eq!(
            Period::last_complete("quarterly", q.start + 5)
                .unwrap()
                .label,
            "2026-Q3"
        );
        assert_eq!(
            Period::last_complete("yearly", q.start).unwrap().label,
            "2025"
        );
        assert_eq!(
            Period::last_complete("monthly", q.start).unwrap().label,
            "2026-09"
        );
        for bad in ["2026-Q5", "2026-13", "26", "2026-1", "x"] {
            assert!(Period::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn html_escapes_every_value() {
        assert_eq!(esc("<script>&\"'"), "&lt;script&gt;&amp;&quot;&#39;");
    }
}
