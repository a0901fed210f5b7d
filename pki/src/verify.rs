//! Verifying certificate chains to the state root and parsing their claims once.

use std::path::Path;
use std::sync::Arc;

use rustls_pki_types::{CertificateDer, CertificateRevocationListDer, UnixTime};
use webpki::{
    EndEntityCert, KeyUsage, RevocationCheckDepth, RevocationOptionsBuilder, UnknownStatusPolicy,
};
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::Error;
use crate::claims::{AgencyClaims, Jurisdiction, RawClaims, Role};

/// Longest certificate chain accepted (leaf, agency CA, and slack for cross-signing).
const MAX_CHAIN: usize = 4;

/// Signature algorithms accepted in certificates.
static ALGS: &[&dyn rustls_pki_types::SignatureVerificationAlgorithm] = &[
    webpki::ring::ECDSA_P256_SHA256,
    webpki::ring::ECDSA_P384_SHA384,
    webpki::ring::ED25519,
];

/// Who a verified certificate says its holder is. Built only by [`TrustStore::verify`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifiedIdentity {
    /// The role the certificate was issued for.
    pub role: Role,
    /// The agency (for node and agency person certificates).
    pub agency: Option<AgencyClaims>,
    /// The person (for person roles).
    pub user: Option<String>,
    /// The jurisdiction: the agency's, or a regulator's own.
    pub jurisdiction: Option<Jurisdiction>,
    /// Leaf serial number, hex.
    pub serial: String,
    /// Leaf expiry, Unix seconds.
    pub not_after: i64,
}

impl VerifiedIdentity {
    /// The agency ORI, if any.
    pub fn ori(&self) -> Option<&str> {
        self.agency.as_ref().map(|a| a.ori.as_str())
    }

    /// `user@ORI (role)` for logs.
    pub fn describe(&self) -> String {
        match (&self.user, &self.agency) {
            (Some(u), Some(a)) => format!("{u}@{} ({})", a.ori, self.role),
            (None, Some(a)) => format!("{} ({})", a.ori, self.role),
            (Some(u), None) => format!("{u} ({})", self.role),
            (None, None) => self.role.to_string(),
        }
    }
}

/// Most chains remembered as verified.
const CACHE_MAX: usize = 10_000;

/// Chains already verified under this store's CRLs: SHA-256 of the chain -> (identity,
/// latest not_before, earliest not_after across the chain).
type ChainCache =
    std::sync::Mutex<std::collections::HashMap<[u8; 32], (VerifiedIdentity, i64, i64)>>;

/// The trust anchors of one state (never merged with another state's) and the CRLs in force.
///
/// Chain verification results are cached per store: a chain verified once is not
/// re-verified while every certificate in it is within its validity period. The cache
/// belongs to one CRL set ([`TrustStore::with_crls`] starts an empty one), so a new
/// revocation takes effect at once. Message signatures are always checked.
#[derive(Clone, Debug)]
pub struct TrustStore {
    root: CertificateDer<'static>,
    crls: Arc<Vec<CertificateRevocationListDer<'static>>>,
    cache: Arc<ChainCache>,
}

impl TrustStore {
    /// A store trusting `root`, with the given CRLs.
    pub fn new(
        root: CertificateDer<'static>,
        crls: Vec<CertificateRevocationListDer<'static>>,
    ) -> Self {
        Self {
            root,
            crls: Arc::new(crls),
            cache: Arc::default(),
        }
    }

    /// Load the root certificate and any CRL files.
    pub fn load(root: &Path, crl_files: &[impl AsRef<Path>]) -> Result<Self, Error> {
        let root_der = crate::pem::read_cert_chain(root)?
            .into_iter()
            .next()
            .ok_or_else(|| Error::Pem {
                path: root.into(),
                reason: "no certificate".into(),
            })?;
        let mut crls = Vec::new();
        let now = crate::now_unix();
        for f in crl_files {
            crls.extend(load_crl_file(f.as_ref(), &root_der, now)?);
        }
        Ok(Self::new(root_der, crls))
    }

    /// The root certificate.
    pub fn root(&self) -> &CertificateDer<'static> {
        &self.root
    }

    /// The CRLs in force.
    pub fn crls(&self) -> &[CertificateRevocationListDer<'static>] {
        &self.crls
    }

    /// Replace the CRLs (reload without restart).
    pub fn with_crls(&self, crls: Vec<CertificateRevocationListDer<'static>>) -> Self {
        Self {
            root: self.root.clone(),
            crls: Arc::new(crls),
            cache: Arc::default(),
        }
    }

    /// Verify `chain` (leaf first) at time `now` (Unix seconds) and return the holder's identity.
    ///
    /// Checks: the chain reaches the root; nothing in it is revoked; the leaf is not a CA
    /// and has a critical `digitalSignature`-only key usage; the claims are complete for
    /// the role; an agency leaf's claims equal its issuing agency CA's; broker and
    /// regulator certificates are issued by the root itself.
    pub fn verify(
        &self,
        chain: &[CertificateDer<'_>],
        now: i64,
    ) -> Result<VerifiedIdentity, Error> {
        self.verify_inner(chain, now).map(|(id, _)| id)
    }

    /// Verify the chain, then `signature` over `message` with the leaf's key.
    pub fn verify_signature(
        &self,
        chain: &[CertificateDer<'_>],
        message: &[u8],
        signature: &[u8],
        now: i64,
    ) -> Result<VerifiedIdentity, Error> {
        let (id, leaf) = self.verify_inner(chain, now)?;
        let ee = EndEntityCert::try_from(&leaf).map_err(|e| Error::CertInvalid(e.to_string()))?;
        ee.verify_signature(webpki::ring::ECDSA_P256_SHA256, message, signature)
            .map_err(|_| Error::BadSignature)?;
        Ok(id)
    }

    fn verify_inner<'c>(
        &self,
        chain: &'c [CertificateDer<'c>],
        now: i64,
    ) -> Result<(VerifiedIdentity, CertificateDer<'c>), Error> {
        let (leaf, intermediates) = chain
            .split_first()
            .ok_or_else(|| Error::CertInvalid("empty chain".into()))?;
        if chain.len() > MAX_CHAIN {
            return Err(Error::CertInvalid(format!(
                "chain of {} certificates is too long",
                chain.len()
            )));
        }
        let key = chain_key(chain);
        if let Ok(cache) = self.cache.lock()
            && let Some((id, not_before, not_after)) = cache.get(&key)
            && *not_before <= now
            && now < *not_after
        {
            return Ok((id.clone(), leaf.clone()));
        }
        let (id, leaf) = self.verify_uncached(leaf, intermediates, now)?;
        let (mut nb, mut na) = (i64::MIN, i64::MAX);
        for c in chain {
            if let Ok((_, x)) = X509Certificate::from_der(c) {
                nb = nb.max(x.validity().not_before.timestamp());
                na = na.min(x.validity().not_after.timestamp());
            }
        }
        if let Ok(mut cache) = self.cache.lock() {
            if cache.len() >= CACHE_MAX {
                cache.clear();
            }
            cache.insert(key, (id.clone(), nb, na));
        }
        Ok((id, leaf))
    }

    fn verify_uncached<'c>(
        &self,
        leaf: &'c CertificateDer<'c>,
        intermediates: &'c [CertificateDer<'c>],
        now: i64,
    ) -> Result<(VerifiedIdentity, CertificateDer<'c>), Error> {
        let anchor = webpki::anchor_from_trusted_cert(&self.root)
            .map_err(|e| Error::CertInvalid(format!("root certificate: {e}")))?;
        let anchors = [anchor];
        let ee =
            EndEntityCert::try_from(leaf).map_err(|e| Error::CertInvalid(format!("leaf: {e}")))?;
        let crl_objs: Vec<webpki::CertRevocationList<'_>> = self
            .crls
            .iter()
            .map(|c| webpki::BorrowedCertRevocationList::from_der(c).map(Into::into))
            .collect::<Result<_, _>>()
            .map_err(|e| Error::CertInvalid(format!("CRL: {e}")))?;
        let crl_refs: Vec<&webpki::CertRevocationList<'_>> = crl_objs.iter().collect();
        let revocation = match RevocationOptionsBuilder::new(&crl_refs) {
            Ok(b) => Some(
                b.with_depth(RevocationCheckDepth::Chain)
                    .with_status_policy(UnknownStatusPolicy::Allow)
                    .build(),
            ),
            Err(_) => None,
        };
        let time = UnixTime::since_unix_epoch(std::time::Duration::from_secs(now.max(0) as u64));
        let path = ee
            .verify_for_usage(
                ALGS,
                &anchors,
                intermediates,
                time,
                KeyUsage::client_auth(),
                revocation,
                None,
            )
            .map_err(|e| match e {
                webpki::Error::CertRevoked => Error::CertRevoked,
                other => {
                    Error::CertInvalid(format!("chain does not verify to the state root: {other}"))
                }
            })?;
        let issuer_der: Option<CertificateDer<'static>> = path
            .intermediate_certificates()
            .next()
            .map(|c| c.der().into_owned());

        let (_, x509) = X509Certificate::from_der(leaf)
            .map_err(|e| Error::CertInvalid(format!("leaf: {e}")))?;
        check_leaf_profile(&x509)?;
        let raw = raw_claims(&x509)?;
        let role = raw
            .role
            .ok_or_else(|| Error::CertInvalid("leaf has no role claim".into()))?;
        let agency = raw.agency()?;
        let mut jurisdiction = agency.as_ref().map(|a| a.jurisdiction.clone());

        if role.is_agency_role() {
            let agency = agency.as_ref().ok_or_else(|| {
                Error::CertInvalid(format!("{role} certificate has no agency claims"))
            })?;
            let issuer_der = issuer_der.as_ref().ok_or_else(|| {
                Error::CertInvalid(format!("{role} certificate must be issued by an agency CA"))
            })?;
            let ca_claims = raw_claims_of(issuer_der)?
                .agency()?
                .ok_or_else(|| Error::CertInvalid("issuing CA carries no agency claims".into()))?;
            if &ca_claims != agency {
                return Err(Error::ClaimMismatch(format!(
                    "leaf claims {agency} but its CA is {ca_claims}"
                )));
            }
        } else {
            if issuer_der.is_some() {
                return Err(Error::CertInvalid(format!(
                    "{role} certificate must be issued by the state root"
                )));
            }
            if agency.is_some() {
                return Err(Error::CertInvalid(format!(
                    "{role} certificate must not carry agency claims"
                )));
            }
            if role == Role::Regulator {
                jurisdiction = Some(raw.jurisdiction.clone().ok_or_else(|| {
                    Error::CertInvalid("regulator certificate has no jurisdiction".into())
                })?);
            }
        }
        if role.is_person() && raw.user.is_none() {
            return Err(Error::CertInvalid(format!(
                "{role} certificate names no user"
            )));
        }
        if !role.is_person() && raw.user.is_some() {
            return Err(Error::CertInvalid(format!(
                "{role} certificate must not name a user"
            )));
        }
        let id = VerifiedIdentity {
            role,
            agency,
            user: raw.user,
            jurisdiction,
            serial: hex_lower(x509.raw_serial()),
            not_after: x509.validity().not_after.timestamp(),
        };
        Ok((id, leaf.clone()))
    }
}

fn chain_key(chain: &[CertificateDer<'_>]) -> [u8; 32] {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    for c in chain {
        ctx.update(&(c.len() as u64).to_be_bytes());
        ctx.update(c);
    }
    let mut out = [0u8; 32];
    out.copy_from_slice(ctx.finish().as_ref());
    out
}

fn hex_lower(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// SPIFFE X509-SVID leaf hygiene.
fn check_leaf_profile(x509: &X509Certificate<'_>) -> Result<(), Error> {
    let bad = |m: &str| Error::CertInvalid(m.to_owned());
    let bc = x509
        .basic_constraints()
        .map_err(|e| bad(&format!("basic constraints: {e}")))?;
    if bc.is_some_and(|bc| bc.value.ca) {
        return Err(bad("leaf certificate has cA=true"));
    }
    let ku = x509
        .key_usage()
        .map_err(|e| bad(&format!("key usage: {e}")))?
        .ok_or_else(|| bad("leaf certificate has no key usage extension"))?;
    if !ku.critical {
        return Err(bad("leaf key usage extension is not critical"));
    }
    if !ku.value.digital_signature() {
        return Err(bad("leaf key usage lacks digitalSignature"));
    }
    if ku.value.key_cert_sign() || ku.value.crl_sign() {
        return Err(bad("leaf key usage allows certificate or CRL signing"));
    }
    Ok(())
}

fn raw_claims(x509: &X509Certificate<'_>) -> Result<RawClaims, Error> {
    let san = x509
        .subject_alternative_name()
        .map_err(|e| Error::CertInvalid(format!("subject alternative names: {e}")))?;
    let uris: Vec<&str> = san
        .map(|s| {
            s.value
                .general_names
                .iter()
                .filter_map(|g| {
                    if let GeneralName::URI(u) = g {
                        Some(*u)
                    } else {
                        None
                    }
                })
                .collect()
        })
        .unwrap_or_default();
    RawClaims::from_uris(uris)
}

/// Parse the claim URIs of one certificate (no chain verification).
pub(crate) fn raw_claims_of(der: &CertificateDer<'_>) -> Result<RawClaims, Error> {
    let (_, x509) = X509Certificate::from_der(der)
        .map_err(|e| Error::CertInvalid(format!("certificate: {e}")))?;
    raw_claims(&x509)
}

/// Parse the identity claims of a certificate without verifying it (for display only).
pub fn inspect(der: &CertificateDer<'_>) -> Result<(RawClaims, String, i64, i64), Error> {
    let (_, x509) = X509Certificate::from_der(der)
        .map_err(|e| Error::CertInvalid(format!("certificate: {e}")))?;
    Ok((
        raw_claims(&x509)?,
        hex_lower(x509.raw_serial()),
        x509.validity().not_before.timestamp(),
        x509.validity().not_after.timestamp(),
    ))
}

/// Read a CRL file for a trust store under `root`: every CRL parsed, current at `now`
/// ([`crate::read_checked_crls`]) and signed by its issuer where that issuer is at hand
/// (the state root, or the agency CA certificate beside the file). Used at start and on
/// every reload.
pub fn load_crl_file(
    path: &Path,
    root: &CertificateDer<'_>,
    now: i64,
) -> Result<Vec<CertificateRevocationListDer<'static>>, Error> {
    let found = crate::pem::read_checked_crls(path, now)?;
    for crl in &found {
        check_crl_signature(path, crl, root)?;
    }
    Ok(found)
}

/// A CRL must be signed by the CA that it names as its issuer. The issuer is the state root
/// or an agency CA whose certificate sits beside the CRL file (`agencies/<ORI>/ca.crt`, as
/// `alpr-pki` lays them out). A CRL that names one of them as issuer but does not verify
/// under its key is refused (fail closed, naming the file); one whose issuing CA is not
/// beside it is checked by rustls-webpki when it is used.
fn check_crl_signature(
    path: &Path,
    crl_der: &[u8],
    root_der: &CertificateDer<'_>,
) -> Result<(), Error> {
    use x509_parser::revocation_list::CertificateRevocationList;
    let bad = |reason: String| Error::Pem {
        path: path.into(),
        reason,
    };
    let (_, crl) = CertificateRevocationList::from_der(crl_der)
        .map_err(|e| bad(format!("CRL does not parse: {e}")))?;
    let mut candidates: Vec<Vec<u8>> = vec![root_der.to_vec()];
    if let Some(ca) = path.parent().map(|d| d.join("ca.crt"))
        && let Ok(chain) = crate::pem::read_cert_chain(&ca)
        && let Some(first) = chain.into_iter().next()
    {
        candidates.push(first.to_vec());
    }
    for der in &candidates {
        let Ok((_, ca)) = X509Certificate::from_der(der) else {
            continue;
        };
        if ca.subject().as_raw() != crl.issuer().as_raw() {
            continue;
        }
        let key = ring::signature::UnparsedPublicKey::new(
            &ring::signature::ECDSA_P256_SHA256_ASN1,
            ca.public_key().subject_public_key.data.as_ref(),
        );
        return key
            .verify(crl.tbs_cert_list.as_ref(), crl.signature_value.data.as_ref())
            .map_err(|_| {
                bad(format!(
                    "the CRL of {} is not signed by that CA's key; it may be forged or belong to another CA of the same name",
                    crl.issuer()
                ))
            });
    }
    Ok(())
}
