//! Input rules shared by every party: plate normalization, case numbers, reasons, terms.

use unicode_normalization::{IsNormalized, is_nfc_quick};
use unicode_properties::{GeneralCategory, UnicodeGeneralCategory};

use crate::{Error, RefusalReason};

/// Longest plate accepted.
pub const MAX_PLATE: usize = 10;

/// The query's `plate_state` that asks for plates of every issuing state, explicitly.
pub const ANY_STATE: &str = "ANY";

/// Plate issuing jurisdictions as NCIC codes them (the "LIS" field): the states, the
/// District of Columbia, the territories, US government plates, Canada's provinces and
/// territories (NCIC spells Newfoundland `NF` and Quebec `PQ`) and Mexico.
pub const PLATE_STATES: &[&str] = &[
    "AL", "AK", "AZ", "AR", "CA", "CO", "CT", "DE", "DC", "FL", "GA", "HI", "ID", "IL", "IN", "IA",
    "KS", "KY", "LA", "ME", "MD", "MA", "MI", "MN", "MS", "MO", "MT", "NE", "NV", "NH", "NJ", "NM",
    "NY", "NC", "ND", "OH", "OK", "OR", "PA", "RI", "SC", "SD", "TN", "TX", "UT", "VT", "VA", "WA",
    "WV", "WI", "WY", "AS", "GU", "MP", "PR", "VI", "US", "AB", "BC", "MB", "NB", "NF", "NS", "NT",
    "NU", "ON", "PE", "PQ", "SK", "YT", "MX",
];

/// Normalize a plate's issuing state as a read carries it: upper-case NCIC code, or empty
/// when the camera did not report one. `ANY` is a query word, never a read's state.
pub fn normalize_read_state(raw: &str) -> Result<String, Error> {
    let s = raw.trim().to_ascii_uppercase();
    if s.is_empty() || PLATE_STATES.contains(&s.as_str()) {
        return Ok(s);
    }
    Err(Error::refused(
        RefusalReason::InvalidInput,
        format!(
            "plate state {:?} is not an NCIC state code (two letters such as CA, NV, DC, PR, ON)",
            truncate(raw, 12)
        ),
    ))
}

/// Normalize a query's plate state: an NCIC code, or [`ANY_STATE`] to ask for every state.
/// A query must say which: empty is refused.
pub fn normalize_query_state(raw: &str) -> Result<String, Error> {
    let s = raw.trim().to_ascii_uppercase();
    if s == ANY_STATE {
        return Ok(s);
    }
    if s.is_empty() {
        return Err(Error::refused(
            RefusalReason::InvalidInput,
            "name the plate's issuing state (e.g. CA) or ANY to search plates of every state",
        ));
    }
    normalize_read_state(&s)
}

/// Every text field on the wire: Unicode NFC, and no control (Cc), format (Cf, such as
/// zero-width spaces and bidi overrides), private-use (Co) or unassigned (Cn) characters,
/// which can make two different texts look alike to a reviewer.
pub fn check_text(field: &str, text: &str) -> Result<(), Error> {
    for (i, c) in text.chars().enumerate() {
        let cat = c.general_category();
        if matches!(
            cat,
            GeneralCategory::Control
                | GeneralCategory::Format
                | GeneralCategory::PrivateUse
                | GeneralCategory::Unassigned
        ) {
            return Err(Error::refused(
                RefusalReason::InvalidInput,
                format!(
                    "{field} contains the invisible or control character U+{:04X} at position {}",
                    c as u32,
                    i + 1
                ),
            ));
        }
    }
    if is_nfc_quick(text.chars()) != IsNormalized::Yes && !unicode_normalization::is_nfc(text) {
        return Err(Error::refused(
            RefusalReason::InvalidInput,
            format!("{field} is not in Unicode normalization form C (normalize it before signing)"),
        ));
    }
    Ok(())
}

/// Text normalized to NFC, for clients to apply before they sign.
pub fn nfc(text: &str) -> String {
    use unicode_normalization::UnicodeNormalization;
    text.nfc().collect()
}

/// The shape of a wildcard query (see `Query.shape`).
pub const SHAPE_WILDCARD: &str = "wildcard";
/// A wildcard plate's mark for one unknown character.
pub const WILDCARD: char = '?';
/// Known characters a wildcard plate must have, at least.
pub const WILDCARD_MIN_KNOWN: usize = 5;
/// Unknown characters a wildcard plate may have, at most.
pub const WILDCARD_MAX_UNKNOWN: usize = 2;
/// The longest window a wildcard search may cover, days.
pub const WILDCARD_MAX_WINDOW_DAYS: i64 = 7;

/// Normalize a wildcard plate as typed (spaces and dashes dropped, upper-cased, `?` for
/// each unknown character): at least [`WILDCARD_MIN_KNOWN`] known characters, 1 to
/// [`WILDCARD_MAX_UNKNOWN`] unknown ones.
pub fn normalize_wildcard_plate(raw: &str) -> Result<String, Error> {
    let bad = |m: String| Error::refused(RefusalReason::InvalidInput, m);
    let mut out = String::with_capacity(raw.len());
    for c in raw.chars() {
        match c {
            ' ' | '-' => {}
            'a'..='z' | 'A'..='Z' | '0'..='9' => out.push(c.to_ascii_uppercase()),
            WILDCARD => out.push(WILDCARD),
            other => {
                return Err(bad(format!(
                    "wildcard plate contains {other:?}; only letters, digits and '?' (one unknown character) are allowed"
                )));
            }
        }
    }
    let unknown = out.chars().filter(|c| *c == WILDCARD).count();
    let known = out.len() - unknown;
    if out.len() > MAX_PLATE
        || unknown == 0
        || unknown > WILDCARD_MAX_UNKNOWN
        || known < WILDCARD_MIN_KNOWN
    {
        return Err(bad(format!(
            "a wildcard plate has at least {WILDCARD_MIN_KNOWN} known characters and 1 to {WILDCARD_MAX_UNKNOWN} '?', at most {MAX_PLATE} in all; {out:?} has {known} known and {unknown} unknown"
        )));
    }
    Ok(out)
}

/// Whether `plate` matches the wildcard `pattern` (same length; `?` matches any one
/// character).
pub fn matches_wildcard(pattern: &str, plate: &str) -> bool {
    pattern.len() == plate.len()
        && pattern
            .bytes()
            .zip(plate.bytes())
            .all(|(p, c)| p == WILDCARD as u8 || p == c)
}

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

/// A reason must be specific: at least [`MIN_REASON_CHARS`] characters (or
/// [`MIN_JUSTIFICATION_CHARS`] for catch-all purposes), at least three *distinct* words of
/// three or more characters that are not generic filler ("investigation" alone is
/// refused), and no one word making up more than a third of all its words (a word repeated
/// over and over is no reason).
pub fn check_reason(reason: &str, needs_justification: bool) -> Result<(), Error> {
    let r = reason.trim();
    let all: Vec<String> = words(r).collect();
    let mut specific: Vec<&str> = all
        .iter()
        .map(String::as_str)
        .filter(|w| w.chars().count() >= 3 && !GENERIC_WORDS.contains(w))
        .collect();
    specific.sort_unstable();
    specific.dedup();
    let most_repeated = all
        .iter()
        .map(|w| all.iter().filter(|x| *x == w).count())
        .max()
        .unwrap_or(0);
    let repetitive = all.len() >= 4 && most_repeated * 3 > all.len();
    let min = if needs_justification {
        MIN_JUSTIFICATION_CHARS
    } else {
        MIN_REASON_CHARS
    };
    if r.chars().count() < min || specific.len() < 3 || repetitive {
        return Err(Error::refused(
            RefusalReason::ReasonInsufficient,
            format!(
                "reason {:?} is not specific: give at least {min} characters and three different words naming what happened and why this plate, without repeating one word over and over{}",
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
        // One nonsense word repeated: long enough, "specific", and still no reason.
        for bad in [
            "blorp blorp blorp blorp blorp blorp blorp",
            "robbery robbery robbery robbery downtown",
        ] {
            assert_eq!(
                check_reason(bad, false).unwrap_err().reason(),
                RefusalReason::ReasonInsufficient,
                "{bad}"
            );
        }
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
    fn text_must_be_nfc_without_invisible_characters() {
        check_text("case number", "SSD-2026-018832").unwrap();
        check_text("reason", "Café owner saw the car — 3 a.m.").unwrap();
        for (bad, what) in [
            ("SSD-2026\u{200B}-018832", "U+200B"),
            ("abc\u{202E}def", "U+202E"),
            ("line\nbreak", "U+000A"),
            ("private \u{E000}", "U+E000"),
            ("Cafe\u{301}", "normalization form C"),
        ] {
            let e = check_text("case number", bad).unwrap_err();
            assert_eq!(e.reason(), RefusalReason::InvalidInput);
            assert!(e.detail().contains(what), "{what:?} not in {e}");
        }
        assert_eq!(nfc("Cafe\u{301}"), "Caf\u{e9}");
    }

    #[test]
    fn plate_states_are_ncic_codes_and_queries_must_name_one() {
        assert_eq!(normalize_read_state(" ca ").unwrap(), "CA");
        assert_eq!(normalize_read_state("").unwrap(), "");
        assert_eq!(normalize_query_state("any").unwrap(), ANY_STATE);
        assert_eq!(normalize_query_state("nv").unwrap(), "NV");
        for bad in ["ZZ", "California", "ANYX"] {
            assert_eq!(
                normalize_query_state(bad).unwrap_err().reason(),
                RefusalReason::InvalidInput,
                "{bad}"
            );
        }
        assert!(normalize_query_state("").is_err());
        assert!(normalize_read_state(ANY_STATE).is_err());
    }

    #[test]
    fn prohibited_terms_match_words_not_substrings() {
        let terms = vec!["abortion".to_string(), "gender affirming".to_string()];
        assert!(check_terms("reason", "Travel to an ABORTION clinic", &terms).is_err());
        assert!(check_terms("reason", "gender-affirming care visit", &terms).is_err());
        assert!(check_terms("reason", "Stolen Honda from the clinic lot", &terms).is_ok());
    }
}
