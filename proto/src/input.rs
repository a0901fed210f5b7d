//! Input rules shared by every party: plate normalization, case numbers, reasons, terms.

use crate::{Error, RefusalReason};

/// Longest plate accepted.
pub const MAX_PLATE: usize = 10;

/// Normalize a plate: upper-case, spaces and dashes removed; only `A-Z0-9` remain.
///
/// This is the one normalization rule, used at ingest, in queries and in lookups.
/// Wildcards and every other character are refused (`INVALID_INPUT`).
pub fn normalize_plate(raw: &str) -> Result<String, Error> {
    let mut out = String::with_capacity(raw.len());
    for c in raw.chars() {
        match c {
            ' ' | '-' => {}
            'a'..='z' | 'A'..='Z' | '0'..='9' => out.push(c.to_ascii_uppercase()),
            '*' | '?' | '%' | '_' => {
                return Err(Error::refused(
                    RefusalReason::InvalidInput,
                    "partial plates (wildcards) are not allowed",
                ));
            }
            other => {
                return Err(Error::refused(
                    RefusalReason::InvalidInput,
                    format!(
                        "plate contains {:?}; only letters, digits, spaces and dashes are allowed",
                        other
                    ),
                ));
            }
        }
    }
    if out.is_empty() || out.len() > MAX_PLATE {
        return Err(Error::refused(
            RefusalReason::InvalidInput,
            format!("plate must have 1..{MAX_PLATE} letters or digits"),
        ));
    }
    Ok(out)
}

/// Words that say nothing about why a search is needed.
const GENERIC_WORDS: &[&str] = &[
    "investigation",
    "investigations",
    "investigate",
    "investigative",
    "inv",
    "case",
    "cases",
    "search",
    "searching",
    "lookup",
    "look",
    "up",
    "check",
    "query",
    "crime",
    "criminal",
    "police",
    "law",
    "enforcement",
    "official",
    "business",
    "purpose",
    "purposes",
    "suspect",
    "suspicious",
    "info",
    "information",
    "intel",
    "intelligence",
    "na",
    "n/a",
    "none",
    "test",
    "testing",
    "other",
    "misc",
    "general",
    "routine",
    "follow",
    "followup",
    "lead",
    "leads",
    "the",
    "a",
    "an",
    "for",
    "of",
    "and",
    "or",
    "to",
    "in",
    "on",
    "re",
    "per",
    "ongoing",
    "active",
    "open",
    "vehicle",
    "plate",
    "alpr",
    "lpr",
];

/// Shortest acceptable reason, characters.
pub const MIN_REASON_CHARS: usize = 20;
/// Shortest reason for catch-all purposes that need justification.
pub const MIN_JUSTIFICATION_CHARS: usize = 60;

fn words(s: &str) -> impl Iterator<Item = String> + '_ {
    s.split(|c: char| !(c.is_alphanumeric() || c == '/'))
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
}

/// A reason must be specific: at least [`MIN_REASON_CHARS`] characters and at least three
/// words that are not generic filler ("investigation" alone is refused).
pub fn check_reason(reason: &str, needs_justification: bool) -> Result<(), Error> {
    let r = reason.trim();
    let specific = words(r)
        .filter(|w| w.len() >= 3 && !GENERIC_WORDS.contains(&w.as_str()))
        .count();
    let min = if needs_justification {
        MIN_JUSTIFICATION_CHARS
    } else {
        MIN_REASON_CHARS
    };
    if r.chars().count() < min || specific < 3 {
        return Err(Error::refused(
            RefusalReason::ReasonInsufficient,
            format!(
                "reason {:?} is not specific: give at least {min} characters naming what happened and why this plate{}",
                truncate(r, 40),
                if needs_justification {
                    " (catch-all purpose: a full justification is required)"
                } else {
                    ""
                }
            ),
        ));
    }
    if r.chars().count() > 1000 {
        return Err(Error::refused(
            RefusalReason::InvalidInput,
            "reason longer than 1000 characters",
        ));
    }
    Ok(())
}

/// A case number is mandatory: 3..64 printable characters including a digit, not a generic word.
pub fn check_case_number(case: &str) -> Result<(), Error> {
    let c = case.trim();
    if c.is_empty() {
        return Err(Error::refused(
            RefusalReason::CaseNumberMissing,
            "case number is missing",
        ));
    }
    let generic = words(c).all(|w| GENERIC_WORDS.contains(&w.as_str()));
    if c.len() < 3
        || c.len() > 64
        || !c.bytes().any(|b| b.is_ascii_digit())
        || generic
        || c.chars().any(char::is_control)
    {
        return Err(Error::refused(
            RefusalReason::CaseNumberMissing,
            format!(
                "case number {:?} is not a case number (3..64 characters with at least one digit)",
                truncate(c, 40)
            ),
        ));
    }
    Ok(())
}

/// Refuse text containing any of `terms` (case-insensitive, whole words or phrases).
pub fn check_terms(field: &str, text: &str, terms: &[String]) -> Result<(), Error> {
    let normalized: String = format!(
        " {} ",
        text.to_lowercase()
            .chars()
            .map(|c| if c.is_alphanumeric() { c } else { ' ' })
            .collect::<String>()
    );
    let normalized = normalized.split_whitespace().collect::<Vec<_>>().join(" ");
    let normalized = format!(" {normalized} ");
    for t in terms {
        let t_norm: String = t
            .to_lowercase()
            .chars()
            .map(|c| if c.is_alphanumeric() { c } else { ' ' })
            .collect();
        let t_norm = t_norm.split_whitespace().collect::<Vec<_>>().join(" ");
        if !t_norm.is_empty() && normalized.contains(&format!(" {t_norm} ")) {
            return Err(Error::refused(
                RefusalReason::ProhibitedTerm,
                format!("{field} contains the prohibited term {t:?}"),
            ));
        }
    }
    Ok(())
}

fn truncate(s: &str, n: usize) -> String {
    s.chars().take(n).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plates_normalize_one_way() {
        assert_eq!(normalize_plate(" 7abc-123 ").unwrap(), "7ABC123");
        for bad in [
            "7AB*",
            "'; DROP TABLE reads;--",
            "AB\u{0}C",
            "",
            "ABCDEFGHIJKL",
            "AB%",
        ] {
            assert_eq!(
                normalize_plate(bad).unwrap_err().reason(),
                RefusalReason::InvalidInput,
                "{bad:?}"
            );
        }
    }

    #[test]
    fn generic_reasons_are_refused_and_specific_ones_pass() {
        for bad in [
            "investigation",
            "Investigation.",
            "law enforcement investigation purpose",
            "",
            "suspect vehicle check",
        ] {
            assert_eq!(
                check_reason(bad, false).unwrap_err().reason(),
                RefusalReason::ReasonInsufficient,
                "{bad}"
            );
        }
        check_reason(
            "Armed robbery at 5th and Main; witness reported this plate leaving",
            false,
        )
        .unwrap();
        assert!(check_reason("Armed robbery at 5th and Main; witness saw plate", true).is_err());
    }

    #[test]
    fn case_numbers_must_look_like_case_numbers() {
        assert_eq!(
            check_case_number("").unwrap_err().reason(),
            RefusalReason::CaseNumberMissing
        );
        assert_eq!(
            check_case_number("investigation").unwrap_err().reason(),
            RefusalReason::CaseNumberMissing
        );
        check_case_number("VPD-2026-001234").unwrap();
    }

    #[test]
    fn prohibited_terms_match_words_not_substrings() {
        let terms = vec!["abortion".to_string(), "gender affirming".to_string()];
        assert!(check_terms("reason", "Travel to an ABORTION clinic", &terms).is_err());
        assert!(check_terms("reason", "gender-affirming care visit", &terms).is_err());
        assert!(check_terms("reason", "Stolen Honda from the clinic lot", &terms).is_ok());
    }
}
