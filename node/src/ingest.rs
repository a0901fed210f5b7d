//! Ingest of reads from CSV (`plate,captured_at,camera_id,latitude,longitude`).
//!
//! Every row is validated; a bad row is reported with its line number and reason and the
//! good rows are kept. Rows are inserted in batched transactions.

use std::io::BufRead;

use alpr_proto::input::normalize_plate;
use alpr_proto::pb::Read;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::Error;
#[cfg(test)]
use crate::store;

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
    /// Rows stored.
    pub accepted: u64,
    /// Rows rejected, with line numbers.
    pub rejects: Vec<Reject>,
}

/// Validate one read (used by CSV and streaming ingest alike).
pub fn validate_read(mut r: Read) -> Result<Read, String> {
    r.plate = normalize_plate(&r.plate).map_err(|e| format!("plate: {}", e.detail()))?;
    if r.camera_id.trim().is_empty()
        || r.camera_id.len() > 64
        || r.camera_id.chars().any(char::is_control)
    {
        return Err("camera_id must be 1..64 printable characters".into());
    }
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

/// Parse one CSV row.
pub fn parse_row(line: &str) -> Result<Read, String> {
    let f: Vec<&str> = line.split(',').map(str::trim).collect();
    if f.len() != 5 {
        return Err(format!(
            "expected 5 fields (plate,captured_at,camera_id,latitude,longitude), found {}",
            f.len()
        ));
    }
    let captured_at = OffsetDateTime::parse(f[1], &Rfc3339)
        .map_err(|e| format!("captured_at {:?} is not RFC 3339: {e}", f[1]))?
        .unix_timestamp();
    let latitude = f[3]
        .parse::<f64>()
        .map_err(|_| format!("latitude {:?} is not a number", f[3]))?;
    let longitude = f[4]
        .parse::<f64>()
        .map_err(|_| format!("longitude {:?} is not a number", f[4]))?;
    validate_read(Read {
        plate: f[0].to_owned(),
        captured_at,
        camera_id: f[2].to_owned(),
        latitude,
        longitude,
    })
}

/// Ingest CSV from `input` into the database. `progress` is called after each batch with
/// the number of lines read so far.
pub fn ingest_csv(
    sink: &mut dyn FnMut(&[Read]) -> Result<(), Error>,
    input: impl BufRead,
    mut progress: impl FnMut(u64),
) -> Result<IngestReport, Error> {
    let mut report = IngestReport::default();
    let mut batch = Vec::with_capacity(BATCH);
    let mut line_no = 0u64;
    for line in input.lines() {
        line_no += 1;
        let line = match line {
            Ok(l) => l,
            Err(e) => {
                report.rejects.push(Reject {
                    line: line_no,
                    reason: format!("unreadable line: {e}"),
                });
                continue;
            }
        };
        let trimmed = line.trim();
        if trimmed.is_empty()
            || (line_no == 1 && trimmed.to_ascii_lowercase().starts_with("plate,"))
        {
            continue;
        }
        match parse_row(trimmed) {
            Ok(r) => batch.push(r),
            Err(reason) => report.rejects.push(Reject {
                line: line_no,
                reason,
            }),
        }
        if batch.len() >= BATCH {
            sink(&batch)?;
            report.accepted += batch.len() as u64;
            batch.clear();
            progress(line_no);
        }
    }
    if !batch.is_empty() {
        sink(&batch)?;
        report.accepted += batch.len() as u64;
    }
    progress(line_no);
    Ok(report)
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
        )
        .unwrap();
        assert_eq!(report.accepted, 2);
        let lines: Vec<u64> = report.rejects.iter().map(|r| r.line).collect();
        assert_eq!(lines, vec![3, 4, 5, 6]);
        assert!(report.rejects[0].reason.contains("plate"));
        let got = store::lookup(&conn, "7ABC123", 0, i64::MAX).unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].camera_id, "CAM-1");
    }
}
