//! Hot lists shared between agencies (`Query.shape = "hotlist"`, see `HotlistShare` in the
//! wire contract): what a shared list may hold, the checks of its text against a
//! provider's prohibited terms, and matching reads against its entries — the same code
//! where the list is shared, where it is kept, and where its hits are verified.

use std::collections::HashMap;

use crate::pb::{HotlistEntry, HotlistShare, Read};
use crate::{Error, RefusalReason, input};

/// The shape of a hot-list share (see `Query.shape`).
pub const SHAPE_HOTLIST: &str = "hotlist";
/// The only kind of list that may be shared: plates to be told about.
pub const KIND_ALERT: &str = "alert";
/// Not a list but its withdrawal: a share of this kind, with no entries, stops every list
/// of the same name its owner shared with the target before it.
pub const KIND_WITHDRAW: &str = "withdraw";
/// Most entries of one shared list.
pub const MAX_ENTRIES: usize = 10_000;
/// Most wildcard entries of one shared list.
pub const MAX_WILDCARD_ENTRIES: usize = 5;
/// The longest a shared list stays in force, days.
pub const MAX_DAYS: i64 = 30;
/// Longest name of a list.
const MAX_NAME: usize = 100;
/// Longest source, topic or note.
const MAX_TEXT: usize = 200;

fn invalid(m: String) -> Error {
    Error::refused(RefusalReason::InvalidInput, m)
}

/// Check a shared list's own fields: kind, texts, entry count, each entry's plate and
/// state normalized, the wildcard cap, no entry twice. A withdrawal names its list and
/// holds no entry.
pub fn check_share(share: &HotlistShare) -> Result<(), Error> {
    if share.kind != KIND_ALERT && share.kind != KIND_WITHDRAW {
        return Err(invalid(format!(
            "hot list kind {:?} cannot be shared: only {KIND_ALERT:?} lists (plates to be told about); lists of plates to ignore are never shared",
            share.kind
        )));
    }
    for (field, text, max) in [
        ("hot list name", &share.name, MAX_NAME),
        ("hot list source", &share.source, MAX_TEXT),
        ("hot list topic", &share.topic, MAX_TEXT),
    ] {
        input::check_text(field, text)?;
        let n = text.trim().chars().count();
        if n == 0 || n > max {
            return Err(invalid(format!("{field} must be 1..{max} characters")));
        }
    }
    if share.kind == KIND_WITHDRAW {
        return if share.entries.is_empty() {
            Ok(())
        } else {
            Err(invalid(format!(
                "a withdrawal of hot list {:?} holds no entries (it has {}); to change a list, share it again under its name",
                share.name,
                share.entries.len()
            )))
        };
    }
    if share.entries.is_empty() || share.entries.len() > MAX_ENTRIES {
        return Err(invalid(format!(
            "a shared hot list holds 1..{MAX_ENTRIES} entries, not {}",
            share.entries.len()
        )));
    }
    let mut wildcards = 0;
    let mut seen = std::collections::HashSet::new();
    for (i, e) in share.entries.iter().enumerate() {
        let at = |m: String| invalid(format!("hot list entry {}: {m}", i + 1));
        input::check_text("hot list note", &e.note).map_err(|x| at(x.detail()))?;
        if e.note.chars().count() > MAX_TEXT {
            return Err(at(format!("note longer than {MAX_TEXT} characters")));
        }
        let plate = if e.plate.contains(input::WILDCARD) {
            wildcards += 1;
            input::normalize_wildcard_plate(&e.plate)
        } else {
            input::normalize_plate(&e.plate)
        }
        .map_err(|x| at(x.detail()))?;
        if plate != e.plate {
            return Err(at("plate is not normalized".into()));
        }
        let state = input::normalize_read_state(&e.plate_state).map_err(|x| at(x.detail()))?;
        if state != e.plate_state {
            return Err(at("plate_state is not normalized (upper-case)".into()));
        }
        if !seen.insert((e.plate.as_str(), e.plate_state.as_str())) {
            return Err(at(format!("{} listed twice", e.plate)));
        }
    }
    if wildcards > MAX_WILDCARD_ENTRIES {
        return Err(invalid(format!(
            "a shared hot list holds at most {MAX_WILDCARD_ENTRIES} wildcard entries, not {wildcards}"
        )));
    }
    Ok(())
}

/// Refuse a list whose name, source, topic or any note holds one of `terms`
/// (`PROHIBITED_TERM`, naming the entry).
pub fn check_terms(share: &HotlistShare, terms: &[String]) -> Result<(), Error> {
    input::check_terms("hot list name", &share.name, terms)?;
    input::check_terms("hot list source", &share.source, terms)?;
    input::check_terms("hot list topic", &share.topic, terms)?;
    for (i, e) in share.entries.iter().enumerate() {
        input::check_terms(&format!("hot list entry {} note", i + 1), &e.note, terms)?;
    }
    Ok(())
}

/// A list's entries ready to match reads: exact plates by hash, the few wildcards in turn.
#[derive(Clone, Debug, Default)]
pub struct Matcher {
    exact: HashMap<String, Vec<usize>>,
    wildcards: Vec<usize>,
    entries: Vec<HotlistEntry>,
}

impl Matcher {
    /// Compile `entries`.
    pub fn new(entries: Vec<HotlistEntry>) -> Self {
        let mut m = Self::default();
        for (i, e) in entries.iter().enumerate() {
            if e.plate.contains(input::WILDCARD) {
                m.wildcards.push(i);
            } else {
                m.exact.entry(e.plate.clone()).or_default().push(i);
            }
        }
        m.entries = entries;
        m
    }

    /// The entry `read` matches: same plate (or matching a wildcard entry) and, when the
    /// entry names a state, the same state.
    pub fn find(&self, read: &Read) -> Option<&HotlistEntry> {
        let state_ok =
            |e: &HotlistEntry| e.plate_state.is_empty() || e.plate_state == read.plate_state;
        self.exact
            .get(&read.plate)
            .into_iter()
            .flatten()
            .chain(self.wildcards.iter())
            .map(|i| &self.entries[*i])
            .find(|e| {
                state_ok(e)
                    && (e.plate == read.plate || input::matches_wildcard(&e.plate, &read.plate))
            })
    }

    /// How many entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(plate: &str, state: &str) -> HotlistEntry {
        HotlistEntry {
            plate: plate.into(),
            plate_state: state.into(),
            note: "stolen 2026-11-30".into(),
        }
    }

    fn share(entries: Vec<HotlistEntry>) -> HotlistShare {
        HotlistShare {
            name: "stolen vehicles".into(),
            source: "Sacramento PD".into(),
            topic: "stolen vehicles".into(),
            kind: KIND_ALERT.into(),
            entries,
        }
    }

    fn read(plate: &str, state: &str) -> Read {
        Read {
            plate: plate.into(),
            plate_state: state.into(),
            ..Default::default()
        }
    }

    #[test]
    fn only_alert_lists_with_normalized_entries_and_few_wildcards_are_shared() {
        assert!(check_share(&share(vec![entry("8ABC123", "CA")])).is_ok());
        let whitelist = HotlistShare {
            kind: "exempt".into(),
            ..share(vec![entry("8ABC123", "CA")])
        };
        let e = check_share(&whitelist).unwrap_err();
        assert_eq!(e.reason(), RefusalReason::InvalidInput);
        assert!(e.detail().contains("never shared"), "{}", e.detail());
        assert!(check_share(&share(vec![])).is_err());
        // A withdrawal names its list and holds nothing.
        let withdraw = HotlistShare {
            kind: KIND_WITHDRAW.into(),
            ..share(vec![])
        };
        assert!(check_share(&withdraw).is_ok());
        let e = check_share(&HotlistShare {
            entries: vec![entry("8ABC123", "CA")],
            ..withdraw.clone()
        })
        .unwrap_err();
        assert!(e.detail().contains("holds no entries"), "{}", e.detail());
        assert!(
            check_share(&HotlistShare {
                name: " ".into(),
                ..withdraw
            })
            .is_err()
        );
        let e = check_share(&share(vec![entry("8abc123", "CA")])).unwrap_err();
        assert!(e.detail().contains("entry 1") && e.detail().contains("normalized"));
        assert!(check_share(&share(vec![entry("8ABC123", "ca")])).is_err());
        assert!(check_share(&share(vec![entry("8ABC123", "CA"), entry("8ABC123", "CA")])).is_err());
        let many: Vec<_> = (0..6).map(|i| entry(&format!("8AB?12{i}"), "")).collect();
        let e = check_share(&share(many.clone())).unwrap_err();
        assert!(e.detail().contains("at most 5 wildcard"), "{}", e.detail());
        assert!(check_share(&share(many[..5].to_vec())).is_ok());
        assert!(
            check_share(&share(vec![entry("8A??", "")])).is_err(),
            "too few known"
        );
    }

    #[test]
    fn terms_are_checked_in_every_text_and_reads_match_plate_state_and_wildcards() {
        let mut s = share(vec![entry("8ABC123", "CA"), entry("7XY?999", "")]);
        let terms = vec!["immigration".to_string()];
        assert!(check_terms(&s, &terms).is_ok());
        s.entries[1].note = "Immigration hold".into();
        let e = check_terms(&s, &terms).unwrap_err();
        assert_eq!(e.reason(), RefusalReason::ProhibitedTerm);
        let m = Matcher::new(s.entries);
        assert_eq!(m.find(&read("8ABC123", "CA")).unwrap().plate, "8ABC123");
        assert!(
            m.find(&read("8ABC123", "NV")).is_none(),
            "another state's plate"
        );
        assert!(
            m.find(&read("7XYZ999", "NV")).is_some(),
            "wildcard, any state"
        );
        assert!(m.find(&read("7XYZ998", "NV")).is_none());
    }
}
