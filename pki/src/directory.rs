//! A PKI directory as functions: create the root and agency CAs, issue leaves, revoke.
//!
//! The `alpr-pki` command is a thin layer over these; the harness, benches and tests call
//! them directly. Every function writes into the [`PkiLayout`] and never overwrites a
//! certificate or key unless asked to ([`Overwrite::KeepOld`] keeps the old files).

use std::path::{Path, PathBuf};

use x509_parser::extensions::ParsedExtension;
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::claims::{AgencyClaims, Jurisdiction, Role};
use crate::issue::{self, Authority, LeafSpec, Overwrite, Revoked};
use crate::{CertificateDer, Error, PkiLayout, TrustStore};

/// Days a freshly written CRL is valid (its `nextUpdate`).
pub const CRL_DAYS: u32 = 30;

/// What a revocation did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Revocation {
    /// The certificate's serial, hex.
    pub serial: String,
    /// Who issued it: "the state root" or "agency CA <ORI>".
    pub issuer: String,
    /// The CRL written (or already listing it).
    pub crl: PathBuf,
    /// It was already revoked; nothing changed.
    pub already: bool,
}

/// Which CA of the directory issued a certificate.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Issuer {
    Root,
    Agency(String),
}

impl PkiLayout {
    /// Create the state root CA (`root.crt`, `root.key`) and its empty CRL.
    pub fn create_root(
        &self,
        name: &str,
        days: u32,
        overwrite: Overwrite,
    ) -> Result<PathBuf, Error> {
        let root = issue::new_root(name, days)?;
        root.write(&self.root_cert(), &self.root_key(), overwrite)?;
        let a = Authority::from_issued(&root)?;
        issue::replace_file(
            &self.root_crl(),
            issue::new_crl(&a, &[], 1, CRL_DAYS)?.as_bytes(),
        )?;
        // A new root starts a new revocation history.
        let _ = std::fs::remove_file(self.revoked_list(&Issuer::Root));
        Ok(self.root_cert())
    }

    /// Create an agency CA under the root, carrying the agency's claims, and its empty CRL.
    pub fn create_agency(
        &self,
        claims: &AgencyClaims,
        days: u32,
        overwrite: Overwrite,
    ) -> Result<PathBuf, Error> {
        let root = Authority::load(&self.root_cert(), &self.root_key())?;
        let ca = issue::new_agency_ca(&root, claims, days)?;
        let ori = &claims.ori;
        ca.write(
            &self.agency_ca_cert(ori),
            &self.agency_ca_key(ori),
            overwrite,
        )?;
        let a = Authority::from_issued(&ca)?;
        issue::replace_file(
            &self.agency_crl(ori),
            issue::new_crl(&a, &[], 1, CRL_DAYS)?.as_bytes(),
        )?;
        let _ = std::fs::remove_file(self.revoked_list(&Issuer::Agency(ori.clone())));
        Ok(self.agency_ca_cert(ori))
    }

    /// An agency CA certificate, from the root, for the key of the agency's own signing
    /// request, not yet written. The agency then places it beside its key
    /// (`agencies/<ORI>/ca.crt` and `ca.key` in its own directory) and writes its CRL with
    /// [`PkiLayout::write_agency_crl`].
    pub fn agency_cert_for(
        &self,
        claims: &AgencyClaims,
        days: u32,
        request: &issue::Request,
    ) -> Result<issue::Issued, Error> {
        let root = Authority::load(&self.root_cert(), &self.root_key())?;
        issue::new_agency_ca_for(&root, claims, days, request)
    }

    /// Write (again) an agency CA's CRL from its revocation list, signed with its own key:
    /// how an agency whose CA key was born on its own machine publishes its first CRL.
    pub fn write_agency_crl(&self, ori: &str) -> Result<PathBuf, Error> {
        let ca = Authority::load(&self.agency_ca_cert(ori), &self.agency_ca_key(ori))?;
        let issuer = Issuer::Agency(ori.to_owned());
        let list = self.revoked_list(&issuer);
        let text = match std::fs::read_to_string(&list) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => return Err(Error::io(&list, e)),
        };
        let revoked = parse_revoked(&text, &list)?;
        let pem = issue::new_crl(&ca, &revoked, revoked.len() as u64 + 1, CRL_DAYS)?;
        let crl = self.agency_crl(ori);
        issue::replace_file(&crl, pem.as_bytes())?;
        Ok(crl)
    }

    /// Issue an agency's node certificate for `hosts` (DNS names or IP addresses).
    pub fn issue_node(
        &self,
        ori: &str,
        hosts: Vec<String>,
        days: u32,
        overwrite: Overwrite,
    ) -> Result<PathBuf, Error> {
        let (ca, spec) = self.node_spec(ori, hosts, days)?;
        let (c, k) = self.node(ori);
        issue::new_leaf(&ca, &spec)?.write(&c, &k, overwrite)?;
        Ok(c)
    }

    /// An agency's node certificate for the key of a signing request the node made itself
    /// (`alpr-pki request`), not yet written (see [`issue::Issued::write_cert`]). The claims
    /// are the agency CA's, never the request's.
    pub fn node_cert_for(
        &self,
        ori: &str,
        hosts: Vec<String>,
        days: u32,
        request: &issue::Request,
    ) -> Result<issue::Issued, Error> {
        let (ca, spec) = self.node_spec(ori, hosts, days)?;
        issue::new_leaf_for(&ca, &spec, request)
    }

    fn node_spec(
        &self,
        ori: &str,
        hosts: Vec<String>,
        days: u32,
    ) -> Result<(Authority, LeafSpec), Error> {
        let ca = Authority::load(&self.agency_ca_cert(ori), &self.agency_ca_key(ori))?;
        let spec = LeafSpec {
            role: Role::Node,
            user: None,
            agency: ca.agency()?,
            jurisdiction: None,
            hosts,
            days,
        };
        Ok((ca, spec))
    }

    /// Issue a person certificate (investigator, supervisor, admin or auditor).
    pub fn issue_person(
        &self,
        ori: &str,
        role: Role,
        user: &str,
        days: u32,
        overwrite: Overwrite,
    ) -> Result<PathBuf, Error> {
        let (ca, spec) = self.person_spec(ori, role, user, days)?;
        let (c, k) = self.person(ori, user);
        issue::new_leaf(&ca, &spec)?.write(&c, &k, overwrite)?;
        Ok(c)
    }

    /// A person certificate for the key of the person's own signing request, not yet
    /// written.
    pub fn person_cert_for(
        &self,
        ori: &str,
        role: Role,
        user: &str,
        days: u32,
        request: &issue::Request,
    ) -> Result<issue::Issued, Error> {
        let (ca, spec) = self.person_spec(ori, role, user, days)?;
        issue::new_leaf_for(&ca, &spec, request)
    }

    fn person_spec(
        &self,
        ori: &str,
        role: Role,
        user: &str,
        days: u32,
    ) -> Result<(Authority, LeafSpec), Error> {
        if !role.is_person() || role == Role::Regulator {
            return Err(Error::InvalidClaim(format!(
                "{role} is not an agency person role (investigator, supervisor, admin, auditor)"
            )));
        }
        crate::claims::validate_user(user)?;
        let ca = Authority::load(&self.agency_ca_cert(ori), &self.agency_ca_key(ori))?;
        let spec = LeafSpec {
            role,
            user: Some(user.to_owned()),
            agency: ca.agency()?,
            jurisdiction: None,
            hosts: vec![],
            days,
        };
        Ok((ca, spec))
    }

    /// Issue the broker certificate (signed by the root).
    pub fn issue_broker(
        &self,
        hosts: Vec<String>,
        days: u32,
        overwrite: Overwrite,
    ) -> Result<PathBuf, Error> {
        let root = Authority::load(&self.root_cert(), &self.root_key())?;
        let spec = LeafSpec {
            role: Role::Broker,
            user: None,
            agency: None,
            jurisdiction: None,
            hosts,
            days,
        };
        let (c, k) = self.broker();
        issue::new_leaf(&root, &spec)?.write(&c, &k, overwrite)?;
        Ok(c)
    }

    /// Issue a regulator certificate for one state (signed by the root).
    pub fn issue_regulator(
        &self,
        user: &str,
        jurisdiction: Jurisdiction,
        days: u32,
        overwrite: Overwrite,
    ) -> Result<PathBuf, Error> {
        crate::claims::validate_user(user)?;
        let root = Authority::load(&self.root_cert(), &self.root_key())?;
        let spec = LeafSpec {
            role: Role::Regulator,
            user: Some(user.to_owned()),
            agency: None,
            jurisdiction: Some(jurisdiction),
            hosts: vec![],
            days,
        };
        let (c, k) = self.regulator(user);
        issue::new_leaf(&root, &spec)?.write(&c, &k, overwrite)?;
        Ok(c)
    }

    /// Revoke the certificate in `cert` and reissue its CA's CRL. The issuing CA is found
    /// from the certificate itself (its authority key identifier against the subject key
    /// identifiers of the root and every agency CA here); `expect_ori`, when given, must be
    /// that CA's agency. Revoking twice changes nothing. Afterwards the certificate is
    /// checked to be refused as revoked by a trust store loading this directory's CRLs.
    pub fn revoke(&self, cert: &Path, expect_ori: Option<&str>) -> Result<Revocation, Error> {
        let chain = crate::read_cert_chain(cert)?;
        let leaf = chain.first().ok_or_else(|| Error::Pem {
            path: cert.into(),
            reason: "no certificate in the file".into(),
        })?;
        let (_, serial, _, _) = crate::verify::inspect(leaf)?;
        let issuer = self.issuer_of(leaf, cert)?;
        let issuer_name = match &issuer {
            Issuer::Root => "the state root".to_owned(),
            Issuer::Agency(o) => format!("agency CA {o}"),
        };
        if let Some(want) = expect_ori
            && issuer != Issuer::Agency(want.to_owned())
        {
            return Err(Error::CannotRevoke(format!(
                "{} was issued by {issuer_name}, not by agency CA {want}",
                cert.display()
            )));
        }
        let (ca_cert, ca_key, crl) = match &issuer {
            Issuer::Root => (self.root_cert(), self.root_key(), self.root_crl()),
            Issuer::Agency(o) => (
                self.agency_ca_cert(o),
                self.agency_ca_key(o),
                self.agency_crl(o),
            ),
        };
        let list = self.revoked_list(&issuer);
        let text = match std::fs::read_to_string(&list) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => return Err(Error::io(&list, e)),
        };
        let mut revoked = parse_revoked(&text, &list)?;
        let serial_bytes = hex_bytes(&serial).ok_or_else(|| {
            Error::CannotRevoke(format!("serial {serial} of {} is not hex", cert.display()))
        })?;
        if revoked.iter().any(|r| r.serial == serial_bytes) {
            return Ok(Revocation {
                serial,
                issuer: issuer_name,
                crl,
                already: true,
            });
        }
        let ca = Authority::load(&ca_cert, &ca_key)?;
        revoked.push(Revoked {
            serial: serial_bytes,
            revoked_at: crate::now_unix(),
        });
        let pem = issue::new_crl(&ca, &revoked, revoked.len() as u64 + 1, CRL_DAYS)?;
        let mut new_text = text;
        new_text.push_str(&format!("{serial} {}\n", crate::now_unix()));
        issue::replace_file(&list, new_text.as_bytes())?;
        issue::replace_file(&crl, pem.as_bytes())?;
        // Check what a verifier will now see.
        let trust = TrustStore::load(&self.root_cert(), &self.all_crls())?;
        if !matches!(
            trust.verify(&chain, crate::now_unix()),
            Err(Error::CertRevoked)
        ) && issuer != Issuer::Root
        {
            return Err(Error::CannotRevoke(format!(
                "wrote {} but {} still does not verify as revoked; check the CRL list",
                crl.display(),
                cert.display()
            )));
        }
        Ok(Revocation {
            serial,
            issuer: issuer_name,
            crl,
            already: false,
        })
    }

    /// The revocation list (`<serial hex> <unix time>` per line) kept beside a CA.
    fn revoked_list(&self, issuer: &Issuer) -> PathBuf {
        match issuer {
            Issuer::Root => self.dir().join("revoked.txt"),
            Issuer::Agency(o) => self.agency_dir(o).join("revoked.txt"),
        }
    }

    /// The CA of this directory whose subject key identifier is `leaf`'s authority key
    /// identifier.
    fn issuer_of(&self, leaf: &CertificateDer<'_>, path: &Path) -> Result<Issuer, Error> {
        let aki = key_ids(leaf)?.authority.ok_or_else(|| {
            Error::CannotRevoke(format!(
                "{} has no authority key identifier, so its issuer cannot be found",
                path.display()
            ))
        })?;
        let mut candidates = vec![(Issuer::Root, self.root_cert())];
        if let Ok(entries) = std::fs::read_dir(self.dir().join("agencies")) {
            for e in entries.filter_map(Result::ok) {
                let ori = e.file_name().to_string_lossy().into_owned();
                candidates.push((Issuer::Agency(ori.clone()), self.agency_ca_cert(&ori)));
            }
        }
        for (issuer, ca_path) in candidates {
            let Ok(ca_chain) = crate::read_cert_chain(&ca_path) else {
                continue;
            };
            let Some(ca) = ca_chain.first() else { continue };
            if key_ids(ca)?.subject.as_deref() == Some(aki.as_slice()) {
                return Ok(issuer);
            }
        }
        Err(Error::CannotRevoke(format!(
            "no CA under {} issued {} (its issuer is neither this root nor any agency CA here)",
            self.dir().display(),
            path.display()
        )))
    }
}

/// A certificate's key identifiers.
struct KeyIds {
    subject: Option<Vec<u8>>,
    authority: Option<Vec<u8>>,
}

fn key_ids(der: &CertificateDer<'_>) -> Result<KeyIds, Error> {
    let (_, x509) = X509Certificate::from_der(der)
        .map_err(|e| Error::CertInvalid(format!("certificate: {e}")))?;
    let mut ski = None;
    let mut aki = None;
    for ext in x509.extensions() {
        match ext.parsed_extension() {
            ParsedExtension::SubjectKeyIdentifier(k) => ski = Some(k.0.to_vec()),
            ParsedExtension::AuthorityKeyIdentifier(a) => {
                aki = a.key_identifier.as_ref().map(|k| k.0.to_vec())
            }
            _ => {}
        }
    }
    Ok(KeyIds {
        subject: ski,
        authority: aki,
    })
}

fn hex_bytes(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|j| s.get(j..j + 2).and_then(|h| u8::from_str_radix(h, 16).ok()))
        .collect()
}

/// Parse a revocation list (`<serial hex> <unix time>` per line).
pub(crate) fn parse_revoked(text: &str, path: &Path) -> Result<Vec<Revoked>, Error> {
    let mut out = Vec::new();
    for (i, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let bad = || Error::Pem {
            path: path.into(),
            reason: format!("line {}: expected `<serial-hex> <unix-time>`", i + 1),
        };
        let (s, t) = line.split_once(' ').ok_or_else(bad)?;
        out.push(Revoked {
            serial: hex_bytes(s).ok_or_else(bad)?,
            revoked_at: t.trim().parse().map_err(|_| bad())?,
        });
    }
    Ok(out)
}
