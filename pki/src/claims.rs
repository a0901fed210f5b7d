//! Typed identity claims carried in certificate URI SANs.
//!
//! Claims are written as `urn:alpr:<name>:<value>` URIs so that any X.509 tool can read
//! them. They are parsed once, right after chain verification, into these types; nothing
//! downstream looks at raw certificates.

use std::fmt;
use std::str::FromStr;

use crate::Error;

/// URI prefix shared by every claim.
pub const CLAIM_PREFIX: &str = "urn:alpr:";

/// An ISO 3166-2 jurisdiction such as `US-CA`, or `US` for federal agencies.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Jurisdiction(String);

impl Jurisdiction {
    /// The jurisdiction code as written in certificates (`US-CA`).
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The country part (`US` of `US-CA`).
    pub fn country(&self) -> &str {
        self.0.split('-').next().unwrap_or(&self.0)
    }

    /// True for a whole-country jurisdiction such as `US` (federal agencies).
    pub fn is_national(&self) -> bool {
        !self.0.contains('-')
    }
}

impl FromStr for Jurisdiction {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        let bad = || {
            Error::InvalidClaim(format!(
                "jurisdiction {s:?} is not ISO 3166-2 (e.g. US-CA) or a country code (US)"
            ))
        };
        let mut parts = s.split('-');
        let country = parts.next().ok_or_else(bad)?;
        if country.len() != 2 || !country.bytes().all(|b| b.is_ascii_uppercase()) {
            return Err(bad());
        }
        if let Some(sub) = parts.next()
            && (sub.is_empty()
                || sub.len() > 3
                || !sub
                    .bytes()
                    .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit()))
        {
            return Err(bad());
        }
        if parts.next().is_some() {
            return Err(bad());
        }
        Ok(Self(s.to_owned()))
    }
}

impl fmt::Display for Jurisdiction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What kind of body an agency is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AgencyKind {
    /// A city or county agency.
    Local,
    /// A state agency.
    State,
    /// A federal agency.
    Federal,
    /// A tribal agency.
    Tribal,
    /// A private entity (never a public agency).
    Private,
}

impl AgencyKind {
    /// The claim value (`local`, `state`, ...).
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Local => "local",
            Self::State => "state",
            Self::Federal => "federal",
            Self::Tribal => "tribal",
            Self::Private => "private",
        }
    }
}

impl FromStr for AgencyKind {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        Ok(match s {
            "local" => Self::Local,
            "state" => Self::State,
            "federal" => Self::Federal,
            "tribal" => Self::Tribal,
            "private" => Self::Private,
            other => {
                return Err(Error::InvalidClaim(format!(
                    "agency kind {other:?} is not one of local, state, federal, tribal, private"
                )));
            }
        })
    }
}

impl fmt::Display for AgencyKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The role a leaf certificate is issued for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    /// An agency's node daemon (server and client).
    Node,
    /// A person who searches.
    Investigator,
    /// A person who approves accounts and evidence holds.
    Supervisor,
    /// An agency administrator (signs agreements, configures the node).
    Admin,
    /// A person who reads logs and never searches.
    Auditor,
    /// The broker daemon.
    Broker,
    /// A state regulator.
    Regulator,
}

impl Role {
    /// The claim value (`node`, `investigator`, ...).
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Node => "node",
            Self::Investigator => "investigator",
            Self::Supervisor => "supervisor",
            Self::Admin => "admin",
            Self::Auditor => "auditor",
            Self::Broker => "broker",
            Self::Regulator => "regulator",
        }
    }

    /// True for roles held by a person (which name a user).
    pub fn is_person(&self) -> bool {
        matches!(
            self,
            Self::Investigator | Self::Supervisor | Self::Admin | Self::Auditor | Self::Regulator
        )
    }

    /// True for roles issued under an agency CA.
    pub fn is_agency_role(&self) -> bool {
        matches!(
            self,
            Self::Node | Self::Investigator | Self::Supervisor | Self::Admin | Self::Auditor
        )
    }

    /// True for daemons that serve TLS.
    pub fn is_server(&self) -> bool {
        matches!(self, Self::Node | Self::Broker)
    }
}

impl FromStr for Role {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        Ok(match s {
            "node" => Self::Node,
            "investigator" => Self::Investigator,
            "supervisor" => Self::Supervisor,
            "admin" => Self::Admin,
            "auditor" => Self::Auditor,
            "broker" => Self::Broker,
            "regulator" => Self::Regulator,
            other => return Err(Error::InvalidClaim(format!("unknown role {other:?}"))),
        })
    }
}

impl Role {
    /// The role with its indefinite article, for messages: "an admin", "a node".
    pub fn with_article(self) -> String {
        let name = self.as_str();
        let article = if name.starts_with(['a', 'e', 'i', 'o', 'u']) {
            "an"
        } else {
            "a"
        };
        format!("{article} {name}")
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The claims that identify an agency, carried by its CA and by every leaf it issues.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct AgencyClaims {
    /// The agency's ORI (NCIC originating agency identifier), e.g. `CA0560100`.
    pub ori: String,
    /// Human-readable agency name.
    pub name: String,
    /// Where the agency has jurisdiction.
    pub jurisdiction: Jurisdiction,
    /// What kind of agency it is.
    pub kind: AgencyKind,
}

impl AgencyClaims {
    /// Build claims, validating the ORI shape.
    pub fn new(
        ori: &str,
        name: &str,
        jurisdiction: Jurisdiction,
        kind: AgencyKind,
    ) -> Result<Self, Error> {
        validate_ori(ori)?;
        if name.trim().is_empty() || name.len() > 200 {
            return Err(Error::InvalidClaim(
                "agency name must be 1..200 characters".into(),
            ));
        }
        Ok(Self {
            ori: ori.to_owned(),
            name: name.to_owned(),
            jurisdiction,
            kind,
        })
    }

    /// The URI SANs that carry these claims.
    pub fn to_uris(&self) -> Vec<String> {
        vec![
            format!("{CLAIM_PREFIX}ori:{}", self.ori),
            format!("{CLAIM_PREFIX}agency:{}", encode_component(&self.name)),
            format!("{CLAIM_PREFIX}jurisdiction:{}", self.jurisdiction),
            format!("{CLAIM_PREFIX}kind:{}", self.kind),
        ]
    }
}

impl fmt::Display for AgencyClaims {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} ({}, {}, {})",
            self.ori, self.name, self.jurisdiction, self.kind
        )
    }
}

/// Check that an ORI is 9 upper-case letters and digits.
pub fn validate_ori(ori: &str) -> Result<(), Error> {
    if ori.len() != 9
        || !ori
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
    {
        return Err(Error::InvalidClaim(format!(
            "ORI {ori:?} must be 9 upper-case letters or digits"
        )));
    }
    Ok(())
}

/// Check a user id (badge number or login): 1..64 of `[A-Za-z0-9._@-]`.
pub fn validate_user(user: &str) -> Result<(), Error> {
    if user.is_empty()
        || user.len() > 64
        || !user
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._@-".contains(&b))
    {
        return Err(Error::InvalidClaim(format!(
            "user id {user:?} must be 1..64 of A-Z a-z 0-9 . _ @ -"
        )));
    }
    Ok(())
}

/// Claims as read from one certificate's URI SANs, before they are checked against a role.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RawClaims {
    /// `urn:alpr:ori:`
    pub ori: Option<String>,
    /// `urn:alpr:agency:`
    pub name: Option<String>,
    /// `urn:alpr:jurisdiction:`
    pub jurisdiction: Option<Jurisdiction>,
    /// `urn:alpr:kind:`
    pub kind: Option<AgencyKind>,
    /// `urn:alpr:role:`
    pub role: Option<Role>,
    /// `urn:alpr:user:`
    pub user: Option<String>,
}

impl RawClaims {
    /// Parse claim URIs; a repeated or malformed claim is an error.
    pub fn from_uris<'a>(uris: impl IntoIterator<Item = &'a str>) -> Result<Self, Error> {
        let mut out = Self::default();
        for uri in uris {
            let Some(rest) = uri.strip_prefix(CLAIM_PREFIX) else {
                continue;
            };
            let (key, value) = rest
                .split_once(':')
                .ok_or_else(|| Error::InvalidClaim(format!("claim {uri:?} has no value")))?;
            fn set<T>(slot: &mut Option<T>, v: T, key: &str) -> Result<(), Error> {
                if slot.is_some() {
                    return Err(Error::InvalidClaim(format!("claim {key} appears twice")));
                }
                *slot = Some(v);
                Ok(())
            }
            match key {
                "ori" => {
                    validate_ori(value)?;
                    set(&mut out.ori, value.to_owned(), key)?
                }
                "agency" => set(&mut out.name, decode_component(value)?, key)?,
                "jurisdiction" => set(&mut out.jurisdiction, value.parse()?, key)?,
                "kind" => set(&mut out.kind, value.parse()?, key)?,
                "role" => set(&mut out.role, value.parse()?, key)?,
                "user" => {
                    validate_user(value)?;
                    set(&mut out.user, value.to_owned(), key)?
                }
                other => return Err(Error::InvalidClaim(format!("unknown claim {other:?}"))),
            }
        }
        Ok(out)
    }

    /// The agency claims, if all four are present; `None` if none are; an error if some are.
    pub fn agency(&self) -> Result<Option<AgencyClaims>, Error> {
        match (&self.ori, &self.name, &self.jurisdiction, &self.kind) {
            (Some(ori), Some(name), Some(j), Some(k)) => Ok(Some(AgencyClaims {
                ori: ori.clone(),
                name: name.clone(),
                jurisdiction: j.clone(),
                kind: *k,
            })),
            (None, None, _, None) => Ok(None),
            _ => Err(Error::InvalidClaim(
                "incomplete agency claims (need ori, agency, jurisdiction, kind)".into(),
            )),
        }
    }
}

/// Percent-encode what a URI path component cannot carry (spaces, `%`, non-ASCII).
fn encode_component(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn decode_component(s: &str) -> Result<String, Error> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s
                .get(i + 1..i + 3)
                .ok_or_else(|| Error::InvalidClaim(format!("bad escape in {s:?}")))?;
            let v = u8::from_str_radix(hex, 16)
                .map_err(|_| Error::InvalidClaim(format!("bad escape in {s:?}")))?;
            out.push(v);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| Error::InvalidClaim(format!("claim {s:?} is not UTF-8")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agency_claims_round_trip_through_uris() {
        let c = AgencyClaims::new(
            "CA0560100",
            "Ventura Police Dept.",
            "US-CA".parse().unwrap(),
            AgencyKind::Local,
        )
        .unwrap();
        let uris = c.to_uris();
        let raw = RawClaims::from_uris(uris.iter().map(String::as_str)).unwrap();
        assert_eq!(raw.agency().unwrap(), Some(c));
    }

    #[test]
    fn bad_claims_are_refused() {
        assert!("California".parse::<Jurisdiction>().is_err());
        assert!("us-ca".parse::<Jurisdiction>().is_err());
        assert!("US".parse::<Jurisdiction>().unwrap().is_national());
        assert!(
            AgencyClaims::new("CA05", "x", "US-CA".parse().unwrap(), AgencyKind::Local).is_err()
        );
        assert!(RawClaims::from_uris(["urn:alpr:role:janitor"]).is_err());
        assert!(
            RawClaims::from_uris(["urn:alpr:ori:CA0560100", "urn:alpr:ori:CA0560101"]).is_err()
        );
        let partial = RawClaims::from_uris(["urn:alpr:ori:CA0560100"]).unwrap();
        assert!(partial.agency().is_err());
    }
}
