//! Audit exports for auditors and regulators: the entries a filter selects, as JSON lines
//! or CSV, written to a file; every export is itself an audit entry (who, how many, which
//! filter, where to).

use std::path::Path;

use crate::audit::{self, AuditEntry, Decision, Event, Filter};
use crate::{Error, store};

/// An export format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// One JSON object per line, times in RFC 3339.
    Jsonl,
    /// CSV with a fixed header.
    Csv,
}

impl std::str::FromStr for Format {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        match s {
            "jsonl" => Ok(Self::Jsonl),
            "csv" => Ok(Self::Csv),
            other => Err(Error::Usage(format!(
                "format {other:?} must be jsonl or csv"
            ))),
        }
    }
}

impl std::fmt::Display for Format {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Jsonl => "jsonl",
            Self::Csv => "csv",
        })
    }
}

/// Write the entries of the audit log at `audit_path` that `filter` selects to `out` in
/// `format`, and log the export as done by `by`. Returns how many entries were written.
pub fn export_audit(
    audit_path: &Path,
    filter: &Filter,
    format: Format,
    out: &Path,
    by: &str,
) -> Result<usize, Error> {
    let log = store::AuditDb::open(audit_path)?;
    let entries = store::audit::query(&log, filter)?;
    let text = match format {
        Format::Jsonl => audit::to_jsonl(&entries)?,
        Format::Csv => audit::to_csv(&entries),
    };
    std::fs::write(out, text).map_err(|e| Error::io(out, e))?;
    store::AuditLog::open(audit_path, None)?.append(vec![AuditEntry {
        requester_user: Some(by.to_owned()),
        count: Some(entries.len() as u64),
        detail: Some(format!(
            "{format} export to {} with filter {filter}",
            out.display()
        )),
        ..AuditEntry::new(alpr_pki::now_unix(), Event::Export, Decision::Ok)
    }])?;
    Ok(entries.len())
}

#[cfg(test)]
mod tests;
