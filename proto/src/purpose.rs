//! Purpose codes: the 84 NIBRS offense codes plus listed non-crime purposes.
//!
//! The table is the project's own copy of `purpose_codes.csv`, compiled into the binary.
//! Retired codes (`90I` Runaway, `23*`) are absent and therefore invalid.
//!
//! Each code also has a severity class (`purpose_severity.csv`, one row per code): the class
//! the offense most often carries in state criminal codes (theft and assault classes vary
//! with value and injury; a state whose code differs says so in its rules'
//! `severity_overrides`). States that allow sharing only for serious offenses name the
//! lowest class they allow (`min_severity`).

use std::collections::BTreeMap;
use std::sync::LazyLock;

use crate::Error;

/// The bundled CSV.
const CSV: &str = include_str!("../data/purpose_codes.csv");
/// The severity class of every code.
const SEVERITY_CSV: &str = include_str!("../data/purpose_severity.csv");

/// How serious an offense is, lowest first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// No crime is alleged (a missing person, an alert).
    NonCrime,
    /// A misdemeanor.
    Misdemeanor,
    /// A gross misdemeanor (Washington, Minnesota) or the highest misdemeanor class.
    GrossMisdemeanor,
    /// A felony.
    Felony,
}

impl Severity {
    /// The form used in the data files.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NonCrime => "non_crime",
            Self::Misdemeanor => "misdemeanor",
            Self::GrossMisdemeanor => "gross_misdemeanor",
            Self::Felony => "felony",
        }
    }

    /// Parse the data-file form.
    pub fn parse(s: &str) -> Option<Self> {
        [
            Self::NonCrime,
            Self::Misdemeanor,
            Self::GrossMisdemeanor,
            Self::Felony,
        ]
        .into_iter()
        .find(|v| v.as_str() == s)
    }
}

impl std::fmt::Display for Severity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::NonCrime => "non-crime",
            Self::Misdemeanor => "misdemeanor",
            Self::GrossMisdemeanor => "gross misdemeanor",
            Self::Felony => "felony",
        })
    }
}

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
    /// The offense's usual severity class.
    pub severity: Severity,
}

static TABLE: LazyLock<Result<BTreeMap<String, Purpose>, String>> =
    LazyLock::new(|| parse(CSV, SEVERITY_CSV));

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

fn parse(csv: &str, severity_csv: &str) -> Result<BTreeMap<String, Purpose>, String> {
    let mut severity = BTreeMap::new();
    for (i, line) in severity_csv.lines().enumerate().skip(1) {
        if line.trim().is_empty() {
            continue;
        }
        let f = split_csv(line).map_err(|e| format!("purpose_severity.csv line {}: {e}", i + 1))?;
        let [code, class] = f.as_slice() else {
            return Err(format!(
                "purpose_severity.csv line {}: {} columns, expected 2 (code,severity)",
                i + 1,
                f.len()
            ));
        };
        let class = Severity::parse(class).ok_or_else(|| {
            format!(
                "purpose_severity.csv line {}: severity {class:?} is not one of felony, gross_misdemeanor, misdemeanor, non_crime",
                i + 1
            )
        })?;
        if severity.insert(code.clone(), class).is_some() {
            return Err(format!(
                "purpose_severity.csv line {}: {code} is listed twice",
                i + 1
            ));
        }
    }
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
        let class = severity
            .remove(&f[0])
            .ok_or_else(|| format!("purpose_severity.csv has no severity class for {}", f[0]))?;
        let p = Purpose {
            code: f[0].clone(),
            name: f[1].clone(),
            source: f[2].clone(),
            category: f[5].clone(),
            federal_offense: yes(&f[6]),
            immigration: yes(&f[7]),
            needs_justification: yes(&f[8]),
            severity: class,
        };
        out.insert(p.code.clone(), p);
    }
    if let Some(code) = severity.keys().next() {
        return Err(format!(
            "purpose_severity.csv lists {code}, which is not a purpose code"
        ));
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
    fn every_code_has_a_severity_and_a_bad_table_is_named() {
        assert_eq!(lookup("240").unwrap().severity, Severity::Felony);
        assert_eq!(lookup("13B").unwrap().severity, Severity::Misdemeanor);
        assert_eq!(lookup("X-MISSING").unwrap().severity, Severity::NonCrime);
        assert!(Severity::Felony > Severity::GrossMisdemeanor);
        let head = "code,name,source,group,crime_against,category,federal_offense,immigration,needs_justification\n240,Motor Vehicle Theft,NIBRS,A,Property,Motor Vehicle Theft,no,no,no\n";
        let e = parse(head, "code,severity\n240,capital\n").unwrap_err();
        assert!(e.contains("line 2") && e.contains("\"capital\""), "{e}");
        let e = parse(head, "code,severity\n").unwrap_err();
        assert!(e.contains("no severity class for 240"), "{e}");
        let e = parse(head, "code,severity\n240,felony\n999,felony\n").unwrap_err();
        assert!(e.contains("999, which is not a purpose code"), "{e}");
        parse(head, "code,severity\n240,felony\n").unwrap();
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
