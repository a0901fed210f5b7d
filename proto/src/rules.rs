//! State rules as versioned data, applied to every agreement and every query.

use std::sync::LazyLock;

use alpr_pki::{AgencyKind, Jurisdiction};
use serde::Deserialize;

use crate::{Error, RefusalReason};

const BUNDLED: &str = include_str!("../data/state_rules.toml");

/// The rules one state applies to sharing its agencies' data.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct StateRules {
    /// The provider jurisdiction these rules govern (`US-CA`), or `DEFAULT`.
    pub jurisdiction: String,
    /// Version logged with every decision, e.g. `US-CA/2026.1`.
    pub version: String,
    /// The statutes and guidance behind the rules.
    pub citation: String,
    /// Requester jurisdictions allowed; empty means any.
    pub requester_jurisdictions: Vec<String>,
    /// Requester agency kinds allowed (`local`, `state`, `federal`, `tribal`, `private`).
    pub requester_kinds: Vec<String>,
    /// Refuse purposes flagged `immigration=yes`.
    pub refuse_immigration: bool,
    /// Purpose codes refused outright.
    pub blocked_purposes: Vec<String>,
    /// Terms refused in reasons and case numbers.
    pub prohibited_terms: Vec<String>,
    /// Maximum retention, days; 0 means the agency's own policy applies.
    pub retention_cap_days: u32,
    /// Out-of-state requesters must attach a signed written declaration.
    pub out_of_state_declaration: bool,
    /// Most agencies one query to this state's providers may name (0: only the wire limit,
    /// `admission::MAX_TARGETS`). Absent from a stanza: 0.
    #[serde(default)]
    pub max_targets: u32,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RulesFile {
    state: Vec<StateRules>,
}

static RULES: LazyLock<Result<Vec<StateRules>, String>> = LazyLock::new(|| {
    toml::from_str::<RulesFile>(BUNDLED)
        .map(|f| f.state)
        .map_err(|e| e.to_string())
});

impl StateRules {
    /// The rules for a provider in `jurisdiction` (falls back to `DEFAULT`).
    pub fn for_jurisdiction(jurisdiction: &Jurisdiction) -> Result<&'static StateRules, Error> {
        let rules = RULES
            .as_ref()
            .map_err(|e| Error::Data(format!("state_rules.toml: {e}")))?;
        rules
            .iter()
            .find(|r| r.jurisdiction == jurisdiction.as_str())
            .or_else(|| rules.iter().find(|r| r.jurisdiction == "DEFAULT"))
            .ok_or_else(|| Error::Data("state_rules.toml has no DEFAULT entry".into()))
    }

    /// Every bundled rule set.
    pub fn all() -> Vec<&'static StateRules> {
        RULES
            .as_ref()
            .map(|r| r.iter().collect())
            .unwrap_or_default()
    }

    /// Check that a requester of this jurisdiction and kind may receive this state's data.
    pub fn check_requester(
        &self,
        jurisdiction: &Jurisdiction,
        kind: AgencyKind,
    ) -> Result<(), Error> {
        if !self.requester_kinds.iter().any(|k| k == kind.as_str()) {
            return Err(Error::refused(
                RefusalReason::RequesterKindNotPermitted,
                format!(
                    "{} rules ({}) do not permit {kind} agencies",
                    self.jurisdiction, self.version
                ),
            ));
        }
        if !self.requester_jurisdictions.is_empty()
            && !self
                .requester_jurisdictions
                .iter()
                .any(|j| j == jurisdiction.as_str())
        {
            return Err(Error::refused(
                RefusalReason::RequesterJurisdictionNotPermitted,
                format!(
                    "{} rules ({}) permit only requesters in {}; requester is in {jurisdiction}",
                    self.jurisdiction,
                    self.version,
                    self.requester_jurisdictions.join(", ")
                ),
            ));
        }
        Ok(())
    }

    /// Check that this purpose may be served under these rules.
    pub fn check_purpose(&self, purpose: &crate::purpose::Purpose) -> Result<(), Error> {
        if self.refuse_immigration && purpose.immigration {
            return Err(Error::refused(
                RefusalReason::PurposeProhibited,
                format!(
                    "{} ({}) is an immigration purpose; {} rules refuse it",
                    purpose.code, purpose.name, self.jurisdiction
                ),
            ));
        }
        if self.blocked_purposes.iter().any(|p| p == &purpose.code) {
            return Err(Error::refused(
                RefusalReason::PurposeProhibited,
                format!(
                    "{} rules refuse purpose {}",
                    self.jurisdiction, purpose.code
                ),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn j(s: &str) -> Jurisdiction {
        s.parse().unwrap()
    }

    #[test]
    fn california_allows_only_in_state_public_agencies() {
        let ca = StateRules::for_jurisdiction(&j("US-CA")).unwrap();
        assert_eq!(ca.version, "US-CA/2026.1");
        ca.check_requester(&j("US-CA"), AgencyKind::Local).unwrap();
        ca.check_requester(&j("US-CA"), AgencyKind::State).unwrap();
        let r = |jj: &str, k| ca.check_requester(&j(jj), k).unwrap_err().reason();
        assert_eq!(
            r("US-NV", AgencyKind::Local),
            RefusalReason::RequesterJurisdictionNotPermitted
        );
        assert_eq!(
            r("US", AgencyKind::Federal),
            RefusalReason::RequesterKindNotPermitted
        );
        assert_eq!(
            r("US-CA", AgencyKind::Private),
            RefusalReason::RequesterKindNotPermitted
        );
        let imm = crate::purpose::lookup("30A").unwrap();
        assert_eq!(
            ca.check_purpose(imm).unwrap_err().reason(),
            RefusalReason::PurposeProhibited
        );
    }

    #[test]
    fn other_states_fall_back_to_default_and_presets_load() {
        assert!(StateRules::all().len() >= 4);
        let nv = StateRules::for_jurisdiction(&j("US-NV")).unwrap();
        assert_eq!(nv.jurisdiction, "DEFAULT");
        assert!(
            nv.check_requester(&j("US-CA"), AgencyKind::Private)
                .is_err()
        );
        assert_eq!(
            StateRules::for_jurisdiction(&j("US-VA"))
                .unwrap()
                .retention_cap_days,
            21
        );
    }
}
