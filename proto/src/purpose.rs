//! Purpose codes: the 84 NIBRS offense codes plus listed non-crime purposes.
//!
//! The table is the project's own copy of `purpose_codes.csv`, compiled into the binary.
//! Retired codes (`90I` Runaway, `23*`) are absent and therefore invalid.

use std::collections::BTreeMap;
use std::sync::LazyLock;

use crate::Error;

/// The bundled CSV.
const CSV: &str = include_str!("../data/purpose_codes.csv");

/// One purpose code.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Purpose {
    /// The code, e.g. `13A` or `X-AMBER`.
    pub code: String,
    /// Its name.
    pub name: String,
    /// `NIBRS` or `non-crime`.
    pub source: String,
    /// NIBRS category (may be empty).
    pub category: String,
    /// Reported only by federal or tribal agencies.
    pub federal_offense: bool,
    /// A civil or criminal immigration offense.
    pub immigration: bool,
    /// A catch-all: the query needs a specific justification and is flagged for review.
    pub needs_justification: bool,
}

static TABLE: LazyLock<Result<BTreeMap<String, Purpose>, String>> = LazyLock::new(|| parse(CSV));

/// Look up a purpose code. Unknown and retired codes are `INVALID_INPUT`.
pub fn lookup(code: &str) -> Result<&'static Purpose, Error> {
    let table = TABLE.as_ref().map_err(|e| Error::Data(e.clone()))?;
    table.get(code).ok_or_else(|| {
        Error::refused(
            crate::RefusalReason::InvalidInput,
            format!("{code:?} is not a valid purpose code"),
        )
    })
}

/// Every purpose code, sorted by code.
pub fn all() -> Vec<&'static Purpose> {
    match TABLE.as_ref() {
        Ok(t) => t.values().collect(),
        Err(_) => Vec::new(),
    }
}

fn parse(csv: &str) -> Result<BTreeMap<String, Purpose>, String> {
    let mut lines = csv.lines().enumerate();
    let header = lines.next().map(|(_, l)| l).unwrap_or_default();
    if split_csv(header)?.len() != 9 {
        return Err("purpose_codes.csv: header must have 9 columns".into());
    }
    let mut out = BTreeMap::new();
    for (i, line) in lines {
        if line.trim().is_empty() {
            continue;
        }
        let f = split_csv(line).map_err(|e| format!("purpose_codes.csv line {}: {e}", i + 1))?;
        if f.len() != 9 {
            return Err(format!(
                "purpose_codes.csv line {}: {} columns, expected 9",
                i + 1,
                f.len()
            ));
        }
        let yes = |s: &str| s == "yes";
        let p = Purpose {
            code: f[0].clone(),
            name: f[1].clone(),
            source: f[2].clone(),
            category: f[5].clone(),
            federal_offense: yes(&f[6]),
            immigration: yes(&f[7]),
            needs_justification: yes(&f[8]),
        };
        out.insert(p.code.clone(), p);
    }
    Ok(out)
}

/// Split one CSV line (RFC 4180 quoting).
pub(crate) fn split_csv(line: &str) -> Result<Vec<String>, String> {
    let mut fields = Vec::new();
    let mut cur = String::new();
    let mut chars = line.chars().peekable();
    let mut in_quotes = false;
    while let Some(c) = chars.next() {
        match (c, in_quotes) {
            ('"', true) if chars.peek() == Some(&'"') => {
                cur.push('"');
                chars.next();
            }
            ('"', true) => in_quotes = false,
            ('"', false) if cur.is_empty() => in_quotes = true,
            (',', false) => fields.push(std::mem::take(&mut cur)),
            (c, _) => cur.push(c),
        }
    }
    if in_quotes {
        return Err("unterminated quoted field".into());
    }
    fields.push(cur);
    Ok(fields)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_has_84_nibrs_codes_and_non_crime_purposes() {
        let all = all();
        assert_eq!(all.iter().filter(|p| p.source == "NIBRS").count(), 84);
        assert!(all.iter().any(|p| p.code == "X-AMBER"));
        assert_eq!(
            lookup("64A").unwrap().name,
            "Human Trafficking, Commercial Sex Acts"
        );
        assert!(lookup("30A").unwrap().immigration);
        assert!(lookup("90Z").unwrap().needs_justification);
    }

    #[test]
    fn retired_and_unknown_codes_are_invalid() {
        for bad in ["90I", "23*", "", "13a", "ZZZ"] {
            assert_eq!(
                lookup(bad).unwrap_err().reason(),
                crate::RefusalReason::InvalidInput,
                "{bad}"
            );
        }
    }
}
