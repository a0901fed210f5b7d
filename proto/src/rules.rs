//! State rules as versioned data, applied to every agreement and every query.

use std::collections::BTreeMap;
use std::sync::LazyLock;

use alpr_pki::{AgencyKind, Jurisdiction};
use serde::Deserialize;

pub use crate::purpose::Severity;
use crate::{Error, RefusalReason};

const BUNDLED: &str = include_str!("../data/state_rules.toml");

/// The product name this system carries in node identity, status and transparency pages,
/// checked against a state's list of approved systems.
pub const SYSTEM_PRODUCT: &str = "alpr-fed";
/// This system's version (the crate version).
pub const SYSTEM_VERSION: &str = env!("CARGO_PKG_VERSION");

/// The rules one state applies to sharing its agencies' data. Every field after
/// `out_of_state_declaration` is optional in the data file (its default changes nothing).
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct StateRules {
    /// The provider jurisdiction these rules govern (`US-CA`), or `DEFAULT`.
    pub jurisdiction: String,
    /// Version logged with every decision, e.g. `US-CA/2026.1`.
    pub version: String,
    /// The statutes and guidance behind the rules.
    pub citation: String,
    /// Requester jurisdictions allowed; empty means any (those of `requester_state` are
    /// allowed too).
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
    /// `admission::MAX_TARGETS`).
    #[serde(default)]
    pub max_targets: u32,
    /// Out-of-state requester states allowed by name, each with the text its agencies'
    /// signed declaration must contain (Connecticut: Massachusetts, New York and Rhode
    /// Island agencies that declare the data will not serve immigration enforcement or
    /// reproductive or gender-affirming care cases).
    #[serde(default)]
    pub requester_state: Vec<RequesterState>,
    /// The lowest offense severity served (Washington: gross misdemeanor); purposes below
    /// it are refused (`PURPOSE_PROHIBITED`) unless they are non-crime purposes listed in
    /// `allowed_non_crime`. Absent: every severity.
    #[serde(default)]
    pub min_severity: Option<Severity>,
    /// Non-crime purposes served despite `min_severity` (a missing person).
    #[serde(default)]
    pub allowed_non_crime: Vec<String>,
    /// This state's own class for codes its criminal code classes differently from the
    /// table's usual class.
    #[serde(default)]
    pub severity_overrides: BTreeMap<String, Severity>,
    /// A warrant reference is needed when the window reaches back more than this many days
    /// (0: no state trigger; the agency's own `no_warrant_lookback_days` applies as well).
    #[serde(default)]
    pub warrant_after_days: u32,
    /// A warrant reference is needed once this many days have passed since the incident was
    /// reported (the query's `incident_reported_at`; a query without it needs one too).
    #[serde(default)]
    pub warrant_after_incident_days: u32,
    /// Every transfer to a requester outside the state needs a warrant reference.
    #[serde(default)]
    pub warrant_out_of_state: bool,
    /// Out-of-state requesters are served one request at a time, each approved by a named
    /// person at the provider, never by standing access (Oregon). Until a request carries
    /// such an approval it is refused (`APPROVAL_REQUIRED`).
    #[serde(default)]
    pub per_request_out_of_state: bool,
    /// The audit log must be kept at least this many days (the node keeps the largest floor
    /// of every state whose rules apply to it).
    #[serde(default)]
    pub audit_retention_days: u32,
    /// When the transparency report must be published.
    #[serde(default)]
    pub report: Option<ReportSchedule>,
    /// Only ALPR systems the state approved may share (Virginia since 1 July 2026); with
    /// `approved_systems` empty nothing is approved yet and every query is refused
    /// (`SYSTEM_NOT_APPROVED`).
    #[serde(default)]
    pub system_approval_required: bool,
    /// The systems (product and versions) the state approved.
    #[serde(default)]
    pub approved_systems: Vec<ApprovedSystem>,
    /// A vehicle's registered owner may see the reads held of it and every search that
    /// touched them (pending bills in New York, Massachusetts, California and Illinois).
    #[serde(default)]
    pub owner_access: bool,
    /// Every hot-list hit must have its outcome recorded (whether it led to a stop, and
    /// what came of the stop) within this many days; 0 = not required. Hits past it
    /// without one are alerted by the daily self-audit and counted in the transparency
    /// report (Virginia, HB 2724).
    #[serde(default)]
    pub hit_outcome_days: u32,
}

/// An out-of-state requester state allowed by name.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RequesterState {
    /// The state (`US-MA`).
    pub jurisdiction: String,
    /// Text the requester's signed declaration must contain (white space and case aside).
    pub declaration: String,
}

/// A public-report schedule.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ReportSchedule {
    /// `monthly`, `quarterly` or `yearly`.
    pub every: String,
    /// Days after the period ends by which the report must be published.
    pub publish_within_days: u32,
    /// Whose searches the report covers: `third_party` (other agencies' searches of this
    /// agency's data) or `all`.
    pub covers: String,
}

/// A state-approved ALPR system.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ApprovedSystem {
    /// Product name ([`SYSTEM_PRODUCT`] for this one).
    pub product: String,
    /// Approved versions: exact (`0.1.0`) or a prefix ending in `.` or `*` (`0.1.*`).
    pub versions: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RulesFile {
    state: Vec<StateRules>,
}

static RULES: LazyLock<Result<Vec<StateRules>, String>> =
    LazyLock::new(|| parse("state_rules.toml", BUNDLED));

/// Parse and validate a state-rules file; errors name the file, the line and the field.
pub fn parse(name: &str, text: &str) -> Result<Vec<StateRules>, String> {
    let file: RulesFile = toml::from_str(text).map_err(|e| {
        let line = e
            .span()
            .map(|s| text[..s.start.min(text.len())].matches('\n').count() + 1)
            .unwrap_or(0);
        format!("{name} line {line}: {}", e.message())
    })?;
    let line_of = |j: &str| {
        let needle = format!("jurisdiction = \"{j}\"");
        text.lines()
            .position(|l| l.trim() == needle)
            .map_or(0, |i| i + 1)
    };
    let mut seen = std::collections::HashSet::new();
    for r in &file.state {
        let at = |what: String| {
            format!(
                "{name} line {} ({}): {what}",
                line_of(&r.jurisdiction),
                r.jurisdiction
            )
        };
        if !seen.insert(r.jurisdiction.clone()) {
            return Err(at("this jurisdiction has two stanzas".into()));
        }
        if r.jurisdiction != "DEFAULT" && !is_us_state(&r.jurisdiction) {
            return Err(at(format!(
                "jurisdiction {:?} is not a US state, DC or territory (US-CA, US-DC, US-PR, ...)",
                r.jurisdiction
            )));
        }
        if !r.version.starts_with(&format!("{}/", r.jurisdiction)) {
            return Err(at(format!(
                "version {:?} must start with {:?}",
                r.version,
                format!("{}/", r.jurisdiction)
            )));
        }
        for j in r
            .requester_jurisdictions
            .iter()
            .chain(r.requester_state.iter().map(|s| &s.jurisdiction))
        {
            if j != "US" && !is_us_state(j) {
                return Err(at(format!(
                    "requester jurisdiction {j:?} is not US or a US state, DC or territory"
                )));
            }
        }
        for s in &r.requester_state {
            if s.jurisdiction == r.jurisdiction {
                return Err(at(format!(
                    "requester_state {} is this state itself",
                    s.jurisdiction
                )));
            }
            if s.declaration.trim().len() < 40 {
                return Err(at(format!(
                    "requester_state {}: the declaration text must say what is declared (40+ characters)",
                    s.jurisdiction
                )));
            }
        }
        for k in &r.requester_kinds {
            if !["local", "state", "federal", "tribal", "private"].contains(&k.as_str()) {
                return Err(at(format!(
                    "requester kind {k:?} is not local, state, federal, tribal or private"
                )));
            }
        }
        for c in r
            .blocked_purposes
            .iter()
            .chain(&r.allowed_non_crime)
            .chain(r.severity_overrides.keys())
        {
            crate::purpose::lookup(c).map_err(|_| at(format!("{c:?} is not a purpose code")))?;
        }
        for c in &r.allowed_non_crime {
            if crate::purpose::lookup(c).is_ok_and(|p| p.severity != Severity::NonCrime) {
                return Err(at(format!(
                    "allowed_non_crime lists {c}, which is not a non-crime purpose"
                )));
            }
        }
        if let Some(s) = &r.report {
            if !["monthly", "quarterly", "yearly"].contains(&s.every.as_str()) {
                return Err(at(format!(
                    "report.every {:?} is not monthly, quarterly or yearly",
                    s.every
                )));
            }
            if !["third_party", "all"].contains(&s.covers.as_str()) {
                return Err(at(format!(
                    "report.covers {:?} is not third_party or all",
                    s.covers
                )));
            }
        }
    }
    if !seen.contains("DEFAULT") {
        return Err(format!("{name}: no DEFAULT stanza"));
    }
    Ok(file.state)
}

/// `US-` and a state, DC or territory code of the NCIC table (before `US`, which ends the
/// US part of [`crate::input::PLATE_STATES`]).
fn is_us_state(j: &str) -> bool {
    let us = crate::input::PLATE_STATES
        .iter()
        .take_while(|c| **c != "US")
        .copied()
        .collect::<Vec<_>>();
    j.strip_prefix("US-").is_some_and(|c| us.contains(&c))
}

impl StateRules {
    /// The rules for a provider in `jurisdiction` (falls back to `DEFAULT`).
    pub fn for_jurisdiction(jurisdiction: &Jurisdiction) -> Result<&'static StateRules, Error> {
        let rules = RULES.as_ref().map_err(|e| Error::Data(e.clone()))?;
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

    /// Whether a requester in `jurisdiction` is outside this state (never for `DEFAULT`,
    /// which governs no particular state).
    pub fn is_out_of_state(&self, jurisdiction: &Jurisdiction) -> bool {
        self.jurisdiction != "DEFAULT" && jurisdiction.as_str() != self.jurisdiction
    }

    /// The declaration text required of requesters from `jurisdiction`, if named.
    pub fn declaration_for(&self, jurisdiction: &Jurisdiction) -> Option<&str> {
        self.requester_state
            .iter()
            .find(|s| s.jurisdiction == jurisdiction.as_str())
            .map(|s| s.declaration.as_str())
    }

    /// The severity this state gives `purpose`.
    pub fn severity_of(&self, purpose: &crate::purpose::Purpose) -> Severity {
        self.severity_overrides
            .get(&purpose.code)
            .copied()
            .unwrap_or(purpose.severity)
    }

    /// Whether this system may share under these rules.
    pub fn check_system(&self, product: &str, version: &str) -> Result<(), Error> {
        if !self.system_approval_required {
            return Ok(());
        }
        let approved = self.approved_systems.iter().any(|s| {
            s.product == product
                && s.versions.iter().any(|v| match v.strip_suffix('*') {
                    Some(prefix) => version.starts_with(prefix),
                    None => v == version,
                })
        });
        if approved {
            return Ok(());
        }
        Err(Error::refused(
            RefusalReason::SystemNotApproved,
            format!(
                "{} rules ({}) allow only state-approved ALPR systems; {product} {version} is not on the list{}",
                self.jurisdiction,
                self.version,
                if self.approved_systems.is_empty() {
                    " (no system is listed yet)".to_owned()
                } else {
                    format!(
                        " ({})",
                        self.approved_systems
                            .iter()
                            .map(|s| format!("{} {}", s.product, s.versions.join("/")))
                            .collect::<Vec<_>>()
                            .join(", ")
                    )
                }
            ),
        ))
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
        let named = self.declaration_for(jurisdiction).is_some();
        if !self.requester_jurisdictions.is_empty()
            && !named
            && !self
                .requester_jurisdictions
                .iter()
                .any(|j| j == jurisdiction.as_str())
        {
            let mut allowed = self.requester_jurisdictions.clone();
            allowed.extend(self.requester_state.iter().map(|s| s.jurisdiction.clone()));
            return Err(Error::refused(
                RefusalReason::RequesterJurisdictionNotPermitted,
                format!(
                    "{} rules ({}) permit only requesters in {}; requester is in {jurisdiction}",
                    self.jurisdiction,
                    self.version,
                    allowed.join(", ")
                ),
            ));
        }
        Ok(())
    }

    /// Where these rules serve out-of-state requesters one request at a time: refuse a
    /// request from `jurisdiction` that no named person at the provider `approved`.
    pub fn check_per_request(
        &self,
        jurisdiction: &Jurisdiction,
        approved: bool,
    ) -> Result<(), Error> {
        if self.per_request_out_of_state && self.is_out_of_state(jurisdiction) && !approved {
            return Err(Error::refused(
                RefusalReason::ApprovalRequired,
                format!(
                    "{} rules ({}) serve requesters outside the state one request at a time, each approved by a named person at the provider; this request carries no such approval",
                    self.jurisdiction, self.version
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
        if let Some(min) = self.min_severity {
            let class = self.severity_of(purpose);
            let listed = self.allowed_non_crime.iter().any(|c| c == &purpose.code);
            if class < min && !listed {
                return Err(Error::refused(
                    RefusalReason::PurposeProhibited,
                    format!(
                        "{} rules ({}) serve offenses of class {min} or above{}; {} ({}) is {}",
                        self.jurisdiction,
                        self.version,
                        if self.allowed_non_crime.is_empty() {
                            String::new()
                        } else {
                            format!(
                                " and the non-crime purposes {}",
                                self.allowed_non_crime.join(", ")
                            )
                        },
                        purpose.code,
                        purpose.name,
                        if class == Severity::NonCrime {
                            "a non-crime purpose".to_owned()
                        } else {
                            format!("a {class}")
                        }
                    ),
                ));
            }
        }
        Ok(())
    }

    /// Warrant triggers of these rules for a query from a requester in `requester` (data
    /// age, time since the incident was reported, out-of-state transfer): the refusal when
    /// the query needs a warrant reference and has none.
    pub fn check_warrant(
        &self,
        query: &crate::pb::Query,
        requester: &Jurisdiction,
        now: i64,
    ) -> Result<(), Error> {
        if !query.warrant_ref.trim().is_empty() {
            return Ok(());
        }
        let need = |why: String| {
            Err(Error::refused(
                RefusalReason::WarrantRequired,
                format!(
                    "{} rules ({}): {why}; a warrant reference is required",
                    self.jurisdiction, self.version
                ),
            ))
        };
        const DAY: i64 = 86_400;
        if self.warrant_after_days > 0
            && query.window_start < now - i64::from(self.warrant_after_days) * DAY
        {
            return need(format!(
                "the window reaches back more than {} days",
                self.warrant_after_days
            ));
        }
        if self.warrant_after_incident_days > 0 {
            if query.incident_reported_at <= 0 {
                return need(format!(
                    "a warrant is needed {} days after the incident was reported, and the query gives no incident date",
                    self.warrant_after_incident_days
                ));
            }
            if query.incident_reported_at < now - i64::from(self.warrant_after_incident_days) * DAY
            {
                return need(format!(
                    "the incident was reported more than {} days ago",
                    self.warrant_after_incident_days
                ));
            }
        }
        if self.warrant_out_of_state && self.is_out_of_state(requester) {
            return need(format!(
                "every transfer outside {} needs one",
                self.jurisdiction
            ));
        }
        Ok(())
    }

    /// The largest audit-log retention floor of `rules`, days, and whose it is.
    pub fn audit_retention_floor<'a>(
        rules: impl IntoIterator<Item = &'a StateRules>,
    ) -> Option<(u32, &'a str)> {
        rules
            .into_iter()
            .filter(|r| r.audit_retention_days > 0)
            .max_by_key(|r| r.audit_retention_days)
            .map(|r| (r.audit_retention_days, r.version.as_str()))
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

    fn read_query(purpose: &str) -> crate::pb::Query {
        let now = alpr_pki::now_unix();
        crate::pb::Query {
            window_start: now - 5 * 86_400,
            window_end: now,
            purpose_code: purpose.into(),
            ..Default::default()
        }
    }

    #[test]
    fn the_2026_stanzas_load_with_their_versions() {
        for (state, v) in [
            ("US-WA", "US-WA/2026.1"),
            ("US-OR", "US-OR/2026.1"),
            ("US-CT", "US-CT/2026.1"),
            ("US-VA", "US-VA/2026.3"),
        ] {
            assert_eq!(StateRules::for_jurisdiction(&j(state)).unwrap().version, v);
        }
        let or = StateRules::for_jurisdiction(&j("US-OR")).unwrap();
        assert_eq!(or.report.as_ref().unwrap().every, "quarterly");
        let wa = StateRules::for_jurisdiction(&j("US-WA")).unwrap();
        let ca = StateRules::for_jurisdiction(&j("US-CA")).unwrap();
        assert_eq!(
            StateRules::audit_retention_floor([ca, wa]),
            Some((1826, "US-WA/2026.1"))
        );
        assert_eq!(StateRules::audit_retention_floor([ca]), None);
    }

    #[test]
    fn washington_serves_only_felonies_gross_misdemeanors_and_missing_persons() {
        let wa = StateRules::for_jurisdiction(&j("US-WA")).unwrap();
        let p = |c| crate::purpose::lookup(c).unwrap();
        for ok in ["240", "13A", "90D", "X-MISSING", "X-AMBER"] {
            wa.check_purpose(p(ok))
                .unwrap_or_else(|e| panic!("{ok}: {e}"));
        }
        for refused in ["13B", "23C", "90Z", "X-HOTLIST"] {
            let e = wa.check_purpose(p(refused)).unwrap_err();
            assert_eq!(e.reason(), RefusalReason::PurposeProhibited, "{refused}");
            assert!(e.detail().contains("gross misdemeanor or above"), "{e}");
        }
        assert!(
            wa.check_purpose(p("13B"))
                .unwrap_err()
                .detail()
                .contains("13B (Simple Assault) is a misdemeanor")
        );
        // A state whose code classes an offense higher says so, and is served.
        let mut stricter = wa.clone();
        stricter
            .severity_overrides
            .insert("13B".into(), Severity::GrossMisdemeanor);
        stricter.check_purpose(p("13B")).unwrap();
        // Immigration stays refused whatever its class.
        assert_eq!(
            wa.check_purpose(p("30C")).unwrap_err().reason(),
            RefusalReason::PurposeProhibited
        );
    }

    #[test]
    fn oregon_refuses_standing_out_of_state_access_and_connecticut_names_its_partners() {
        let or = StateRules::for_jurisdiction(&j("US-OR")).unwrap();
        or.check_requester(&j("US-OR"), AgencyKind::Local).unwrap();
        or.check_requester(&j("US-WA"), AgencyKind::Local).unwrap();
        or.check_per_request(&j("US-OR"), false).unwrap();
        let e = or.check_per_request(&j("US-WA"), false).unwrap_err();
        assert_eq!(e.reason(), RefusalReason::ApprovalRequired);
        assert!(e.detail().contains("one request at a time"), "{e}");
        or.check_per_request(&j("US-WA"), true).unwrap();
        let ct = StateRules::for_jurisdiction(&j("US-CT")).unwrap();
        for ok in ["US-CT", "US-MA", "US-NY", "US-RI"] {
            ct.check_requester(&j(ok), AgencyKind::Local).unwrap();
        }
        let e = ct
            .check_requester(&j("US-NV"), AgencyKind::Local)
            .unwrap_err();
        assert_eq!(e.reason(), RefusalReason::RequesterJurisdictionNotPermitted);
        assert!(e.detail().contains("US-CT, US-MA, US-NY, US-RI"), "{e}");
        assert!(
            ct.declaration_for(&j("US-MA"))
                .unwrap()
                .contains("immigration")
        );
        assert!(ct.declaration_for(&j("US-NV")).is_none());
        assert_eq!(
            ct.check_requester(&j("US-MA"), AgencyKind::Federal)
                .unwrap_err()
                .reason(),
            RefusalReason::RequesterKindNotPermitted
        );
    }

    #[test]
    fn virginia_serves_only_from_a_state_approved_system() {
        let va = StateRules::for_jurisdiction(&j("US-VA")).unwrap();
        let e = va.check_system(SYSTEM_PRODUCT, SYSTEM_VERSION).unwrap_err();
        assert_eq!(e.reason(), RefusalReason::SystemNotApproved);
        assert!(e.detail().contains("no system is listed yet"), "{e}");
        let mut listed = va.clone();
        listed.approved_systems = vec![ApprovedSystem {
            product: SYSTEM_PRODUCT.into(),
            versions: vec!["0.0.9".into(), format!("{}*", &SYSTEM_VERSION[..2])],
        }];
        listed.check_system(SYSTEM_PRODUCT, SYSTEM_VERSION).unwrap();
        assert_eq!(
            listed
                .check_system(SYSTEM_PRODUCT, "9.0.0")
                .unwrap_err()
                .reason(),
            RefusalReason::SystemNotApproved
        );
        assert!(listed.check_system("other-alpr", SYSTEM_VERSION).is_err());
        // Everywhere else no approval is needed.
        StateRules::for_jurisdiction(&j("US-CA"))
            .unwrap()
            .check_system(SYSTEM_PRODUCT, SYSTEM_VERSION)
            .unwrap();
    }

    #[test]
    fn warrant_triggers_by_data_age_incident_age_and_out_of_state_transfer() {
        let now = alpr_pki::now_unix();
        let mut r = StateRules::for_jurisdiction(&j("US-WA")).unwrap().clone();
        let wa = j("US-WA");
        let nv = j("US-NV");
        // No trigger: no warrant needed.
        r.check_warrant(&read_query("240"), &nv, now).unwrap();
        let need = |r: &StateRules, q: &crate::pb::Query, who: &Jurisdiction| {
            let e = r.check_warrant(q, who, now).unwrap_err();
            assert_eq!(e.reason(), RefusalReason::WarrantRequired, "{e}");
            e.detail().to_owned()
        };
        r.warrant_after_days = 3;
        assert!(need(&r, &read_query("240"), &wa).contains("more than 3 days"));
        r.warrant_after_days = 0;
        r.warrant_after_incident_days = 30;
        let mut q = read_query("240");
        assert!(need(&r, &q, &wa).contains("no incident date"));
        q.incident_reported_at = now - 40 * 86_400;
        assert!(need(&r, &q, &wa).contains("more than 30 days ago"));
        q.incident_reported_at = now - 10 * 86_400;
        r.check_warrant(&q, &wa, now).unwrap();
        r.warrant_out_of_state = true;
        r.check_warrant(&q, &wa, now).unwrap();
        assert!(need(&r, &q, &nv).contains("outside US-WA"));
        // A warrant reference satisfies every trigger.
        q.warrant_ref = "KCSC 26-2-01234-5".into();
        q.incident_reported_at = 0;
        r.warrant_after_days = 1;
        r.check_warrant(&q, &nv, now).unwrap();
    }

    #[test]
    fn a_bad_rules_file_is_a_clear_error_naming_the_line() {
        let good = r#"
[[state]]
jurisdiction = "DEFAULT"
version = "DEFAULT/1"
citation = "x"
requester_jurisdictions = []
requester_kinds = ["local"]
refuse_immigration = false
blocked_purposes = []
prohibited_terms = []
retention_cap_days = 0
out_of_state_declaration = false
"#;
        assert_eq!(parse("t.toml", good).unwrap().len(), 1);
        let stanza = |extra: &str, j: &str| {
            format!(
                "{good}\n[[state]]\njurisdiction = \"{j}\"\nversion = \"{j}/1\"\ncitation = \"x\"\nrequester_jurisdictions = []\nrequester_kinds = [\"local\"]\nrefuse_immigration = false\nblocked_purposes = []\nprohibited_terms = []\nretention_cap_days = 0\nout_of_state_declaration = false\n{extra}\n"
            )
        };
        for (text, want) in [
            (
                stanza("retention_days = 3", "US-WA"),
                "line 25: unknown field `retention_days`",
            ),
            (
                stanza("min_severity = \"capital\"", "US-WA"),
                "line 25: unknown variant `capital`",
            ),
            (stanza("", "US-XX"), "line 15 (US-XX): jurisdiction"),
            (
                stanza("allowed_non_crime = [\"240\"]", "US-WA"),
                "240, which is not a non-crime purpose",
            ),
            (
                stanza("blocked_purposes = [\"ZZZ\"]", "US-WA"),
                "line 25: duplicate key",
            ),
            (
                stanza("allowed_non_crime = [\"ZZZ\"]", "US-WA"),
                "line 15 (US-WA): \"ZZZ\" is not a purpose code",
            ),
            (stanza("warrant_after_days = -1", "US-WA"), "line 25"),
            (stanza("", "DEFAULT"), "two stanzas"),
        ] {
            let e = parse("t.toml", &text).unwrap_err();
            assert!(e.contains(want), "want {want:?} in: {e}");
            assert!(e.starts_with("t.toml"), "{e}");
        }
        let e = parse("t.toml", &good.replace("DEFAULT", "US-CA")).unwrap_err();
        assert!(e.contains("no DEFAULT"), "{e}");
        let e = parse("t.toml", &stanza("", "US-WA").replace("US-WA/1", "WA/1")).unwrap_err();
        assert!(e.contains("must start with \"US-WA/\""), "{e}");
        let e = parse(
            "t.toml",
            &stanza(
                "[[state.requester_state]]\njurisdiction = \"US-MA\"\ndeclaration = \"ok\"",
                "US-CT",
            ),
        )
        .unwrap_err();
        assert!(e.contains("40+ characters"), "{e}");
    }
}
