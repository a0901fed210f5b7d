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
    /// The whole log exactly as stored, one entry per line (`seq`, `entry` — the stored
    /// text —, `prev_hash`, `hash`): what a regulator checks against the anchors
    /// (`alpr-broker registry verify-audit`). Takes no filter.
    Log,
}

impl std::str::FromStr for Format {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        match s {
            "jsonl" => Ok(Self::Jsonl),
            "csv" => Ok(Self::Csv),
            "log" => Ok(Self::Log),
            other => Err(Error::Usage(format!(
                "format {other:?} must be jsonl, csv or log"
            ))),
        }
    }
}

impl std::fmt::Display for Format {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Jsonl => "jsonl",
            Self::Csv => "csv",
            Self::Log => "log",
        })
    }
}

/// Write `bytes` into a new file and flush it; an existing file is never replaced
/// (`what` names such files in that error).
pub(crate) fn write_new(path: &Path, bytes: &[u8], what: &str) -> Result<(), Error> {
    use std::io::Write as _;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .map_err(|e| {
            if e.kind() == std::io::ErrorKind::AlreadyExists {
                Error::Usage(format!(
                    "{} exists; {what} is never overwritten",
                    path.display()
                ))
            } else {
                Error::io(path, e)
            }
        })?;
    f.write_all(bytes)
        .and_then(|()| f.sync_all())
        .map_err(|e| Error::io(path, e))
}

/// The whole log exactly as stored, one `LoggedEntry` JSON object a line (`--format log`:
/// what `alpr-broker registry verify-audit` and `alpr-node verify-export` read), and its
/// entry count.
pub fn log_text(log: &store::AuditDb) -> Result<(String, u64), Error> {
    let size = store::audit::size(log)?;
    let mut text = String::new();
    for e in store::audit::logged_entries(log, 1, size as i64)? {
        text.push_str(&serde_json::to_string(&e).map_err(|e| Error::corrupt("audit entry", e))?);
        text.push('\n');
    }
    Ok((text, size))
}

/// Write the entries of the audit log at `audit_path` (encrypted with `keys`, or plain)
/// that `filter` selects to `out` in `format`, and log the export as done by `by`. Returns
/// how many entries were written.
pub fn export_audit(
    audit_path: &Path,
    keys: Option<std::sync::Arc<crate::store::encryption::DataKeys>>,
    filter: &Filter,
    format: Format,
    out: &Path,
    by: &str,
) -> Result<usize, Error> {
    let log = store::AuditDb::open_with(audit_path, keys.clone())?;
    let (text, n) = match format {
        Format::Log => {
            if *filter != Filter::default() {
                return Err(Error::Usage(format!(
                    "--format log exports the whole log (a filtered log cannot be verified); drop the filter {filter}"
                )));
            }
            let (text, size) = log_text(&log)?;
            (text, size as usize)
        }
        _ => {
            let entries = store::audit::query(&log, filter)?;
            let text = match format {
                Format::Csv => audit::to_csv(&entries),
                _ => audit::to_jsonl(&entries)?,
            };
            (text, entries.len())
        }
    };
    std::fs::write(out, text).map_err(|e| Error::io(out, e))?;
    store::AuditLog::open_with(audit_path, None, keys)?.append(vec![AuditEntry {
        requester_user: Some(by.to_owned()),
        count: Some(n as u64),
        detail: Some(format!(
            "{format} export to {} with filter {filter}",
            out.display()
        )),
        ..AuditEntry::new(alpr_pki::now_unix(), Event::Export, Decision::Ok)
    }])?;
    Ok(n)
}

#[cfg(test)]
mod tests;
