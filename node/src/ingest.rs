//! Ingest of reads from CSV.
//!
//! A file starts with a header naming its columns (`plate`, `captured_at`, `camera_id`,
//! `latitude`, `longitude`, and optionally `plate_state`); columns are matched by name, in
//! any order, and columns the node does not use are ignored, so a vendor's export loads
//! unchanged. A file without a header is read in that order (the state column last and
//! optional). Fields are parsed as CSV (RFC 4180: quoted fields may hold commas). Every
//! row is validated; a bad row is reported with its line number and reason and the good
//! rows are kept. Rows are inserted in batched transactions.

use alpr_proto::input::{normalize_plate, normalize_read_state};
use alpr_proto::pb::Read;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use alpr_proto::pb::IngestSummary;

use crate::audit::{AuditEntry, Decision, Event};
use crate::node::Node;
use crate::{Error, store};

/// Rows per transaction.
pub const BATCH: usize = 10_000;

/// A rejected row.
#[derive(Clone, Debug, PartialEq)]
pub struct Reject {
    /// 1-based line number in the file.
    pub line: u64,
    /// Why it was rejected.
    pub reason: String,
}

/// Outcome of an ingest.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct IngestReport {
    /// Valid rows (stored now, or already stored before).
    pub accepted: u64,
    /// Of those, rows newly stored.
    pub stored: u64,
    /// Of those, exact duplicates of reads already stored (skipped).
    pub duplicates: u64,
    /// Rows rejected, with line numbers.
    pub rejects: Vec<Reject>,
    /// Lines read.
    pub lines: u64,
    /// Stopped on request before the end of the input (everything up to `lines` is
    /// stored; running the same ingest again resumes, skipping what is already there).
    pub interrupted: bool,
}

impl IngestReport {
    fn add(&mut self, stored: u64, batch: usize) {
        self.accepted += batch as u64;
        self.stored += stored;
        self.duplicates += batch as u64 - stored;
    }
}

/// Validate one read (used by CSV and streaming ingest alike).
pub fn validate_read(mut r: Read) -> Result<Read, String> {
    r.plate = normalize_plate(&r.plate).map_err(|e| format!("plate: {}", e.detail()))?;
    r.plate_state =
        normalize_read_state(&r.plate_state).map_err(|e| format!("plate_state: {}", e.detail()))?;
    if r.camera_id.trim().is_empty()
        || r.camera_id.len() > 64
        || r.camera_id.chars().any(char::is_control)
    {
        return Err("camera_id must be 1..64 printable characters".into());
    }
    alpr_proto::input::check_text("camera_id", &r.camera_id).map_err(|e| e.detail())?;
    if !(-90.0..=90.0).contains(&r.latitude) || !r.latitude.is_finite() {
        return Err(format!("latitude {} out of range", r.latitude));
    }
    if !(-180.0..=180.0).contains(&r.longitude) || !r.longitude.is_finite() {
        return Err(format!("longitude {} out of range", r.longitude));
    }
    if r.captured_at <= 0 || r.captured_at > alpr_pki::now_unix() + 86_400 {
        return Err("captured_at is not a plausible capture time".into());
    }
    Ok(r)
}

/// The columns a CSV file holds reads in.
const REQUIRED: [&str; 5] = ["plate", "captured_at", "camera_id", "latitude", "longitude"];
/// The optional column: the plate's issuing state (NCIC code).
const STATE: &str = "plate_state";

/// Where each field of a read sits in a record.
#[derive(Clone, Copy, Debug)]
struct Columns {
    at: [usize; 5],
    state: Option<usize>,
    /// No header: the fixed order, and no extra columns.
    positional: bool,
}

impl Columns {
    /// The order of a file without a header.
    const POSITIONAL: Self = Self {
        at: [0, 1, 2, 3, 4],
        state: Some(5),
        positional: true,
    };

    /// Columns named by a header record (names compared case-insensitively), or `None` if
    /// the record is not a header.
    fn from_header(rec: &csv::StringRecord) -> Result<Option<Self>, String> {
        let names: Vec<String> = rec.iter().map(|f| f.trim().to_ascii_lowercase()).collect();
        let find = |n: &str| names.iter().position(|x| x == n);
        // A first record with a field named "plate" is a header (no read's plate field
        // holds the word, and its time would not parse); a header must then name every
        // column a read needs.
        if find("plate").is_none() {
            return Ok(None);
        }
        let mut at = [0; 5];
        let mut missing = Vec::new();
        for (i, n) in REQUIRED.iter().enumerate() {
            match find(n) {
                Some(p) => at[i] = p,
                None => missing.push(*n),
            }
        }
        if !missing.is_empty() {
            return Err(format!(
                "the header lacks column(s) {} (needs {}, optionally {STATE}; found {})",
                missing.join(", "),
                REQUIRED.join(","),
                names.join(",")
            ));
        }
        Ok(Some(Self {
            at,
            state: find(STATE),
            positional: false,
        }))
    }
}

/// Parse one CSV row in the header-less order
/// (`plate,captured_at,camera_id,latitude,longitude[,plate_state]`).
pub fn parse_row(line: &str) -> Result<Read, String> {
    let mut rdr = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .trim(csv::Trim::All)
        .from_reader(line.as_bytes());
    let mut rec = csv::StringRecord::new();
    match rdr.read_record(&mut rec) {
        Ok(true) => parse_record(&rec, Columns::POSITIONAL),
        Ok(false) => Err("empty row".into()),
        Err(e) => Err(format!("not CSV: {e}")),
    }
}

fn parse_record(rec: &csv::StringRecord, cols: Columns) -> Result<Read, String> {
    let needed = cols.at.iter().max().map_or(0, |m| m + 1);
    let positional = cols.positional;
    if rec.len() < needed || (positional && rec.len() > 6) {
        return Err(format!(
            "expected {} fields ({},{STATE}), found {}",
            if positional { "5 or 6" } else { "every named" },
            REQUIRED.join(","),
            rec.len()
        ));
    }
    let f = |i: usize| rec.get(cols.at[i]).unwrap_or_default();
    let captured_at = OffsetDateTime::parse(f(1), &Rfc3339)
        .map_err(|e| format!("captured_at {:?} is not RFC 3339: {e}", f(1)))?
        .unix_timestamp();
    let latitude = f(3)
        .parse::<f64>()
        .map_err(|_| format!("latitude {:?} is not a number", f(3)))?;
    let longitude = f(4)
        .parse::<f64>()
        .map_err(|_| format!("longitude {:?} is not a number", f(4)))?;
    validate_read(Read {
        plate: f(0).to_owned(),
        captured_at,
        camera_id: f(2).to_owned(),
        latitude,
        longitude,
        plate_state: cols
            .state
            .and_then(|i| rec.get(i))
            .unwrap_or_default()
            .to_owned(),
    })
}

/// Ingest CSV from `input` through `sink`, which stores a batch and returns how many of
/// its reads were new. `progress` is called after each batch with the number of lines read
/// so far. A header that lacks a needed column is an error before anything is stored.
/// When `stop` becomes true the ingest ends after the batch in hand (reported as
/// interrupted).
pub fn ingest_csv(
    sink: &mut dyn FnMut(&[Read]) -> Result<u64, Error>,
    input: impl std::io::BufRead,
    mut progress: impl FnMut(u64),
    stop: Option<&std::sync::atomic::AtomicBool>,
) -> Result<IngestReport, Error> {
    let mut report = IngestReport::default();
    let mut batch = Vec::with_capacity(BATCH);
    let mut rdr = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .trim(csv::Trim::All)
        .from_reader(input);
    let mut rec = csv::StringRecord::new();
    let mut cols: Option<Columns> = None;
    let mut line_no = 0u64;
    loop {
        match rdr.read_record(&mut rec) {
            Ok(false) => break,
            Ok(true) => {}
            Err(e) => {
                let line = e.position().map_or(line_no + 1, |p| p.line());
                line_no = line;
                report.rejects.push(Reject {
                    line,
                    reason: format!("unreadable row: {e}"),
                });
                continue;
            }
        }
        line_no = rec.position().map_or(line_no + 1, |p| p.line());
        let columns = match cols {
            Some(c) => c,
            None => {
                let c = Columns::from_header(&rec)
                    .map_err(|m| Error::Usage(format!("line {line_no}: {m}")))?;
                cols = Some(c.unwrap_or(Columns::POSITIONAL));
                if c.is_some() {
                    continue;
                }
                Columns::POSITIONAL
            }
        };
        if rec.iter().all(str::is_empty) {
            continue;
        }
        match parse_record(&rec, columns) {
            Ok(r) => batch.push(r),
            Err(reason) => report.rejects.push(Reject {
                line: line_no,
                reason,
            }),
        }
        if batch.len() >= BATCH {
            report.add(sink(&batch)?, batch.len());
            batch.clear();
            progress(line_no);
            if stop.is_some_and(|s| s.load(std::sync::atomic::Ordering::SeqCst)) {
                report.interrupted = true;
                break;
            }
        }
    }
    if !batch.is_empty() {
        report.add(sink(&batch)?, batch.len());
    }
    report.lines = line_no;
    progress(line_no);
    Ok(report)
}

/// What ingesting one file did, as logged.
#[derive(Clone, Debug)]
pub struct FileIngest {
    /// Rows read, stored, skipped and rejected.
    pub report: IngestReport,
    /// Hot-list hits among the stored reads, as text.
    pub hits: Vec<String>,
    /// The outcome logged: ok, partial, nothing_accepted or interrupted.
    pub decision: Decision,
    /// The one-line summary logged with it.
    pub summary: String,
}

/// The outcome of an ingest.
pub fn outcome(report: &IngestReport) -> Decision {
    if report.interrupted {
        Decision::Interrupted
    } else if report.accepted == 0 {
        Decision::NothingAccepted
    } else if !report.rejects.is_empty() {
        Decision::Partial
    } else {
        Decision::Ok
    }
}

impl Node {
    /// Ingest a CSV file's reads (`source` names it in the log), raising hot-list alerts,
    /// and log the outcome — or the error that stopped it. Blocking.
    pub fn ingest_file<R: std::io::BufRead>(
        &self,
        source: &str,
        input: R,
        progress: impl FnMut(u64),
        stop: Option<&std::sync::atomic::AtomicBool>,
    ) -> Result<FileIngest, Error> {
        self.ingest_file_by(None, source, input, progress, stop)
    }

    /// [`Node::ingest_file`] on behalf of `by` (a console user of this agency), named in
    /// the log's `ingest` entry as its requester.
    pub fn ingest_file_by<R: std::io::BufRead>(
        &self,
        by: Option<&str>,
        source: &str,
        input: R,
        progress: impl FnMut(u64),
        stop: Option<&std::sync::atomic::AtomicBool>,
    ) -> Result<FileIngest, Error> {
        let who = by.map(|u| (u.to_owned(), self.ori().to_owned()));
        let mut hits: Vec<String> = Vec::new();
        let result = ingest_csv(
            &mut |b| {
                let s = self.store_reads(b)?;
                hits.extend(s.hits);
                Ok(s.stored)
            },
            input,
            progress,
            stop,
        );
        let report = match result {
            Ok(r) => r,
            Err(e) => {
                self.audit(&[AuditEntry {
                    requester_user: who.as_ref().map(|w| w.0.clone()),
                    requester_ori: who.as_ref().map(|w| w.1.clone()),
                    detail: Some(format!("{source}: {e}")),
                    ..AuditEntry::new(alpr_pki::now_unix(), Event::Ingest, Decision::Error)
                }])?;
                return Err(e);
            }
        };
        let decision = outcome(&report);
        let summary = format!(
            "{source}: {} lines read; {} reads stored, {} already stored (skipped), {} rows rejected, {} hot-list hit(s){}",
            report.lines,
            report.stored,
            report.duplicates,
            report.rejects.len(),
            hits.len(),
            if report.interrupted {
                format!(
                    "; stopped after line {} — run the same command again to resume (stored reads are skipped)",
                    report.lines
                )
            } else {
                String::new()
            }
        );
        let at = alpr_pki::now_unix();
        self.audit(&[AuditEntry {
            requester_user: who.as_ref().map(|w| w.0.clone()),
            requester_ori: who.as_ref().map(|w| w.1.clone()),
            count: Some(report.stored),
            detail: Some(summary.clone()),
            ..AuditEntry::new(at, Event::Ingest, decision)
        }])?;
        if !report.rejects.is_empty() {
            // For the admin's page; the ingest itself is done and logged either way.
            let rows: Vec<(u64, &str)> = report
                .rejects
                .iter()
                .map(|r| (r.line, r.reason.as_str()))
                .collect();
            if let Err(e) = store::sqlite::rejects::put(&mut self.db(), at, source, &rows) {
                tracing::warn!(error = %e, "could not keep the rejected rows for the console");
            }
        }
        Ok(FileIngest {
            report,
            hits,
            decision,
            summary,
        })
    }
}

/// What storing a batch of reads did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stored {
    /// Reads newly stored.
    pub stored: u64,
    /// Reads already stored (exact duplicates), skipped.
    pub duplicates: u64,
    /// Hot-list hits among the reads (each also an `alert` audit entry), as text.
    pub hits: Vec<String>,
}

impl Node {
    /// Store validated reads and raise hot-list alerts for matches (used by every ingest path).
    pub fn store_reads(&self, reads: &[Read]) -> Result<Stored, Error> {
        let now = alpr_pki::now_unix();
        let (stored, alerts, reports) = {
            let mut db = self.db();
            let stored = store::insert_reads(&mut db, reads)?;
            let mut alerts =
                crate::holds::hits(&store::holds::active_hotlist(&db, now)?, reads, now);
            // Lists other agencies shared under agreements: logged here, reported to them.
            let (foreign, reports) = self.foreign_hits(&db, reads, now)?;
            alerts.extend(foreign);
            if !reports.is_empty() {
                store::shares::queue_hits(&mut db, &reports, now)?;
            }
            (stored, alerts, reports.len())
        };
        if reports > 0 {
            self.hits_queued.notify_one();
        }
        self.metrics.ingested_reads.inc_by(stored);
        if !alerts.is_empty() {
            self.metrics.hotlist_hits.inc_by(alerts.len() as u64);
            tracing::warn!(hits = alerts.len(), "hot-list hits");
            self.audit(&alerts)?;
        }
        Ok(Stored {
            stored,
            duplicates: reads.len() as u64 - stored,
            hits: alerts.into_iter().filter_map(|a| a.detail).collect(),
        })
    }

    /// Validate and store streamed reads; returns the summary.
    pub fn ingest_reads(&self, reads: Vec<Read>, by: &str) -> Result<IngestSummary, Error> {
        let mut ok = Vec::with_capacity(reads.len());
        let mut errors = Vec::new();
        let mut rejected = 0u64;
        for (i, r) in reads.into_iter().enumerate() {
            match crate::ingest::validate_read(r) {
                Ok(r) => ok.push(r),
                Err(e) => {
                    rejected += 1;
                    if errors.len() < 100 {
                        errors.push(format!("read {}: {e}", i + 1));
                    }
                }
            }
        }
        let mut stored = 0;
        for chunk in ok.chunks(crate::ingest::BATCH) {
            stored += self.store_reads(chunk)?.stored;
        }
        self.audit(&[AuditEntry {
            count: Some(stored),
            requester_user: Some(by.into()),
            detail: Some(format!(
                "stream ingest: {} accepted ({stored} new, {} already stored), {rejected} rejected",
                ok.len(),
                ok.len() as u64 - stored
            )),
            ..AuditEntry::new(
                alpr_pki::now_unix(),
                Event::Ingest,
                if rejected == 0 {
                    Decision::Ok
                } else {
                    Decision::Partial
                },
            )
        }])?;
        Ok(IngestSummary {
            accepted: ok.len() as u64,
            rejected,
            errors,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_rows_are_reported_by_line_and_good_rows_kept() {
        let dir = tempfile::tempdir().unwrap();
        let mut conn = store::open(&dir.path().join("t.db")).unwrap();
        let csv = "plate,captured_at,camera_id,latitude,longitude\n\
                   7abc-123,2026-11-01T10:00:00Z,CAM-1,34.27,-119.23\n\
                   BAD*,2026-11-01T10:00:00Z,CAM-1,34.27,-119.23\n\
                   8XYZ999,yesterday,CAM-1,34.27,-119.23\n\
                   8XYZ999,2026-11-01T10:00:00Z,CAM-1,134.27,-119.23\n\
                   only,three,fields\n\
                   8XYZ999,2026-11-02T10:00:00-08:00,CAM-2,34.28,-119.22\n";
        let report = ingest_csv(
            &mut |b| store::insert_reads(&mut conn, b),
            csv.as_bytes(),
            |_| {},
            None,
        )
        .unwrap();
        assert_eq!(report.accepted, 2);
        let lines: Vec<u64> = report.rejects.iter().map(|r| r.line).collect();
        assert_eq!(lines, vec![3, 4, 5, 6]);
        assert!(report.rejects[0].reason.contains("plate"));
        let any = store::PlateKey {
            plate: "7ABC123",
            state: alpr_proto::input::ANY_STATE,
        };
        let got = store::lookup(&conn, any, 0, i64::MAX).unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].camera_id, "CAM-1");
        assert_eq!(
            got[0].plate_state, "",
            "no state column: the state is unknown"
        );
    }

    #[test]
    fn columns_are_found_by_name_quoted_fields_hold_commas_and_extras_are_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let mut conn = store::open(&dir.path().join("t.db")).unwrap();
        // A vendor export: other column order, extra columns, a quoted camera name.
        let csv = "Read ID,Longitude,Latitude,Plate,Plate_State,Camera_ID,Captured_At,Confidence\n\
                   r1,-119.23,34.27,7ABC123,ca,\"Main St, northbound\",2026-11-01T10:00:00Z,0.97\n\
                   r2,-119.23,34.27,7ABC123,NV,CAM-2,2026-11-01T11:00:00Z,0.91\n\
                   r3,-119.23,34.27,7ABC123,ZZ,CAM-2,2026-11-01T12:00:00Z,0.91\n";
        let report = ingest_csv(
            &mut |b| store::insert_reads(&mut conn, b),
            csv.as_bytes(),
            |_| {},
            None,
        )
        .unwrap();
        assert_eq!(report.accepted, 2);
        assert_eq!(report.rejects.len(), 1);
        assert_eq!(report.rejects[0].line, 4);
        assert!(
            report.rejects[0].reason.contains("plate_state"),
            "{:?}",
            report.rejects
        );
        let ca = store::PlateKey {
            plate: "7ABC123",
            state: "CA",
        };
        let got = store::lookup(&conn, ca, 0, i64::MAX).unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].camera_id, "Main St, northbound");
        assert_eq!(got[0].plate_state, "CA");
    }

    #[test]
    fn a_header_missing_a_needed_column_stores_nothing() {
        let mut stored = 0;
        let csv = "plate,captured_at,camera,latitude,longitude\n\
                   7ABC123,2026-11-01T10:00:00Z,CAM-1,34.27,-119.23\n";
        let e = ingest_csv(
            &mut |b| {
                stored += b.len();
                Ok(b.len() as u64)
            },
            csv.as_bytes(),
            |_| {},
            None,
        )
        .unwrap_err();
        assert!(
            e.to_string()
                .contains("line 1: the header lacks column(s) camera_id"),
            "{e}"
        );
        assert_eq!(stored, 0);
    }

    #[test]
    fn an_ingest_is_named_by_how_it_ended() {
        let mut r = IngestReport {
            accepted: 10,
            ..IngestReport::default()
        };
        assert_eq!(outcome(&r), Decision::Ok);
        r.rejects.push(Reject {
            line: 3,
            reason: "bad plate".into(),
        });
        assert_eq!(outcome(&r), Decision::Partial);
        r.accepted = 0;
        assert_eq!(outcome(&r), Decision::NothingAccepted);
        r.interrupted = true;
        assert_eq!(outcome(&r), Decision::Interrupted);
    }
}
