//! Issuing certificates and CRLs.
//!
//! Profiles: the state root and agency CAs are CAs (`keyCertSign`, `cRLSign`); an agency
//! CA may issue only leaves (path length 0). Leaves follow SPIFFE X509-SVID hygiene:
//! `cA=false`, critical key usage `digitalSignature` only, and extended key usage by role
//! (`serverAuth`+`clientAuth` for daemons, `clientAuth` for people).

use std::path::Path;

use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, DnType,
    ExtendedKeyUsagePurpose, IsCa, Issuer, KeyIdMethod, KeyPair, KeyUsagePurpose,
    RevokedCertParams, SanType, SerialNumber,
};
use ring::rand::{SecureRandom, SystemRandom};
use rustls_pki_types::CertificateDer;
use time::{Duration, OffsetDateTime};

use crate::Error;
use crate::claims::{AgencyClaims, Jurisdiction, RawClaims, Role};

/// A freshly issued certificate and its private key, both PEM.
#[derive(Clone, Debug)]
pub struct Issued {
    /// The certificate followed by its issuing chain up to (not including) the root.
    pub chain_pem: String,
    /// The PKCS#8 private key.
    pub key_pem: String,
    /// The certificate alone, DER.
    pub cert_der: CertificateDer<'static>,
}

impl Issued {
    /// Write `<cert>` (chain) and `<key>` (mode 0600) files, creating directories. Refuses
    /// if either exists ([`Overwrite::Refuse`]) or first moves the old files aside
    /// ([`Overwrite::KeepOld`]); nothing is written unless both can be.
    pub fn write(&self, cert: &Path, key: &Path, overwrite: Overwrite) -> Result<(), Error> {
        if overwrite == Overwrite::Refuse {
            for p in [cert, key] {
                if p.exists() {
                    return Err(Error::Exists(p.into()));
                }
            }
        }
        write_new(cert, self.chain_pem.as_bytes(), false, overwrite)?;
        write_new(key, self.key_pem.as_bytes(), true, overwrite)?;
        Ok(())
    }

    /// Write only the certificate (chain): issued for a signing request, the key stays
    /// with its holder.
    pub fn write_cert(&self, cert: &Path, overwrite: Overwrite) -> Result<(), Error> {
        write_new(cert, self.chain_pem.as_bytes(), false, overwrite).map(|_| ())
    }
}

/// What to do when a certificate or key file already exists.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Overwrite {
    /// Refuse ([`Error::Exists`]): a repeated command never destroys a key.
    Refuse,
    /// Move the old file aside to `<name>.old-<unix time>` first, then write the new one.
    KeepOld,
}

/// Write a new file (creating its parent directory), mode 0600 when `secret`. An existing
/// file is refused or moved aside as `overwrite` says; returns where the old one went.
pub fn write_new(
    path: &Path,
    bytes: &[u8],
    secret: bool,
    overwrite: Overwrite,
) -> Result<Option<std::path::PathBuf>, Error> {
    use std::io::Write as _;
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
    }
    let mut kept = None;
    if path.exists() {
        if overwrite == Overwrite::Refuse {
            return Err(Error::Exists(path.into()));
        }
        let mut old = path.as_os_str().to_owned();
        old.push(format!(".old-{}", crate::now_unix()));
        let old = std::path::PathBuf::from(old);
        std::fs::rename(path, &old).map_err(|e| Error::io(path, e))?;
        kept = Some(old);
    }
    let mut f = open_new(path, secret).map_err(|e| Error::io(path, e))?;
    f.write_all(bytes)
        .and_then(|()| f.sync_all())
        .map_err(|e| Error::io(path, e))?;
    Ok(kept)
}

#[cfg(unix)]
fn open_new(path: &Path, secret: bool) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt as _;
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(if secret { 0o600 } else { 0o644 })
        .open(path)
}

#[cfg(not(unix))]
fn open_new(path: &Path, _secret: bool) -> std::io::Result<std::fs::File> {
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
}

/// Replace a file that is meant to change (a CRL, the revocation list) atomically: write
/// a temporary file beside it, then rename it over the old one.
pub fn replace_file(path: &Path, bytes: &[u8]) -> Result<(), Error> {
    use std::io::Write as _;
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
    }
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = std::path::PathBuf::from(tmp);
    let _ = std::fs::remove_file(&tmp);
    let mut f = open_new(&tmp, false).map_err(|e| Error::io(&tmp, e))?;
    f.write_all(bytes)
        .and_then(|()| f.sync_all())
        .map_err(|e| Error::io(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| Error::io(path, e))
}

/// A CA that can issue: its certificate chain (PEM) and key.
pub struct Authority {
    chain_pem: String,
    cert_der: CertificateDer<'static>,
    key: KeyPair,
    claims: RawClaims,
}

impl Authority {
    /// Load a CA from its certificate and key files.
    pub fn load(cert: &Path, key: &Path) -> Result<Self, Error> {
        let chain_pem = std::fs::read_to_string(cert).map_err(|e| Error::io(cert, e))?;
        let key_pem = std::fs::read_to_string(key).map_err(|e| Error::io(key, e))?;
        Self::from_pem(&chain_pem, &key_pem).map_err(|e| Error::Pem {
            path: cert.into(),
            reason: e.to_string(),
        })
    }

    /// Build from an [`Issued`] CA.
    pub fn from_issued(issued: &Issued) -> Result<Self, Error> {
        Self::from_pem(&issued.chain_pem, &issued.key_pem)
    }

    fn from_pem(chain_pem: &str, key_pem: &str) -> Result<Self, Error> {
        let chain = crate::pem::certs_from_pem(chain_pem.as_bytes())?;
        let cert_der = chain
            .into_iter()
            .next()
            .ok_or_else(|| Error::CertInvalid("empty CA certificate file".into()))?;
        let key = KeyPair::from_pem(key_pem)?;
        let claims = crate::verify::raw_claims_of(&cert_der)?;
        Ok(Self {
            chain_pem: chain_pem.to_owned(),
            cert_der,
            key,
            claims,
        })
    }

    /// The agency claims of this CA (for an agency CA).
    pub fn agency(&self) -> Result<Option<AgencyClaims>, Error> {
        self.claims.agency()
    }

    /// The CA certificate, DER.
    pub fn cert_der(&self) -> &CertificateDer<'static> {
        &self.cert_der
    }

    fn issuer(&self) -> Result<Issuer<'_, &KeyPair>, Error> {
        Ok(Issuer::from_ca_cert_der(&self.cert_der, &self.key)?)
    }

    /// True when this authority is a self-signed root (its chain is one certificate).
    fn is_root(&self) -> bool {
        self.chain_pem.matches("BEGIN CERTIFICATE").count() == 1 && self.claims.ori.is_none()
    }
}

fn random_serial() -> SerialNumber {
    let mut bytes = [0u8; 16];
    // SystemRandom only fails if the OS has no entropy source; fall back to the clock so
    // issuance still yields distinct serials rather than panicking.
    if SystemRandom::new().fill(&mut bytes).is_err() {
        let t = OffsetDateTime::now_utc()
            .unix_timestamp_nanos()
            .to_be_bytes();
        bytes.copy_from_slice(&t);
    }
    bytes[0] &= 0x7f;
    bytes[0] |= 0x01;
    SerialNumber::from_slice(&bytes)
}

fn base_params(common_name: &str, org: Option<&str>, days: u32) -> CertificateParams {
    let mut p = CertificateParams::default();
    let now = OffsetDateTime::now_utc();
    p.not_before = now - Duration::minutes(5);
    p.not_after = now + Duration::days(i64::from(days));
    p.serial_number = Some(random_serial());
    p.distinguished_name = rcgen::DistinguishedName::new();
    p.distinguished_name.push(DnType::CommonName, common_name);
    if let Some(o) = org {
        p.distinguished_name.push(DnType::OrganizationName, o);
    }
    p.key_identifier_method = KeyIdMethod::Sha256;
    p.use_authority_key_identifier_extension = true;
    p
}

fn uri(s: String) -> Result<SanType, Error> {
    Ok(SanType::URI(s.try_into()?))
}

/// Make a new self-signed state root CA.
pub fn new_root(common_name: &str, days: u32) -> Result<Issued, Error> {
    let mut p = base_params(common_name, None, days);
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    p.use_authority_key_identifier_extension = false;
    let key = KeyPair::generate()?;
    let cert = p.self_signed(&key)?;
    Ok(Issued {
        chain_pem: cert.pem(),
        key_pem: key.serialize_pem(),
        cert_der: cert.der().clone(),
    })
}

/// Make an agency CA under the state root, carrying the agency's claims.
pub fn new_agency_ca(root: &Authority, agency: &AgencyClaims, days: u32) -> Result<Issued, Error> {
    let key = KeyPair::generate()?;
    let mut issued = sign_agency_ca(root, agency, days, &key)?;
    issued.key_pem = key.serialize_pem();
    Ok(issued)
}

/// Make an agency CA certificate for the key of the agency's own signing request (the CA
/// key never leaves the agency); the claims are `agency`, from the root's records.
pub fn new_agency_ca_for(
    root: &Authority,
    agency: &AgencyClaims,
    days: u32,
    request: &Request,
) -> Result<Issued, Error> {
    sign_agency_ca(root, agency, days, &request.key)
}

fn sign_agency_ca(
    root: &Authority,
    agency: &AgencyClaims,
    days: u32,
    key: &impl rcgen::PublicKeyData,
) -> Result<Issued, Error> {
    // The ORI in the subject keeps two agencies of one name (there are Springfield Police
    // Departments in many states) apart wherever a CA is found by name, as CRLs are.
    let mut p = base_params(
        &format!("{} CA ({})", agency.name, agency.ori),
        Some(&agency.name),
        days,
    );
    p.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    p.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    p.subject_alt_names = agency
        .to_uris()
        .into_iter()
        .map(uri)
        .collect::<Result<_, _>>()?;
    let cert = p.signed_by(key, &root.issuer()?)?;
    Ok(Issued {
        chain_pem: cert.pem(),
        key_pem: String::new(),
        cert_der: cert.der().clone(),
    })
}

/// What a leaf certificate says.
#[derive(Clone, Debug)]
pub struct LeafSpec {
    /// The role.
    pub role: Role,
    /// The person (badge or login) for person roles.
    pub user: Option<String>,
    /// The agency claims; for a leaf under an agency CA these must equal the CA's (a
    /// verifier refuses a mismatch). `None` for broker and regulator certificates.
    pub agency: Option<AgencyClaims>,
    /// A regulator's jurisdiction.
    pub jurisdiction: Option<Jurisdiction>,
    /// DNS names or IP addresses for servers (node, broker).
    pub hosts: Vec<String>,
    /// Validity in days.
    pub days: u32,
}

/// Issue a leaf certificate under `issuer` with a key generated here. The returned chain
/// is the leaf followed by the issuer's chain (the root is not included for agency leaves;
/// the issuer's own PEM is appended unless the issuer is the root).
pub fn new_leaf(issuer: &Authority, spec: &LeafSpec) -> Result<Issued, Error> {
    let key = KeyPair::generate()?;
    let mut issued = sign_leaf(issuer, spec, &key)?;
    issued.key_pem = key.serialize_pem();
    Ok(issued)
}

/// Issue a leaf certificate under `issuer` for the key of a verified signing request: the
/// key was born where it is used and never travels. Only the request's public key is
/// taken; every claim comes from `spec` (the issuer's own records), never from the
/// request. The returned [`Issued`] has no key (`key_pem` empty).
pub fn new_leaf_for(
    issuer: &Authority,
    spec: &LeafSpec,
    request: &Request,
) -> Result<Issued, Error> {
    sign_leaf(issuer, spec, &request.key)
}

/// Issue a leaf certificate under `issuer` for a bare public key (SubjectPublicKeyInfo,
/// DER) whose holder proved possession some other way — a browser's non-extractable
/// WebCrypto key, which can sign but not make a PKCS#10 request. Only ECDSA P-256 keys are
/// accepted; every claim comes from `spec`.
pub fn new_leaf_for_key(
    issuer: &Authority,
    spec: &LeafSpec,
    spki_der: &[u8],
) -> Result<Issued, Error> {
    use rcgen::PublicKeyData;
    let key = rcgen::SubjectPublicKeyInfo::from_der(spki_der)
        .map_err(|e| Error::CertInvalid(format!("public key does not parse ({e})")))?;
    if key.algorithm() != &rcgen::PKCS_ECDSA_P256_SHA256 {
        return Err(Error::CertInvalid("the key is not ECDSA P-256".into()));
    }
    sign_leaf(issuer, spec, &key)
}

fn sign_leaf(
    issuer: &Authority,
    spec: &LeafSpec,
    key: &impl rcgen::PublicKeyData,
) -> Result<Issued, Error> {
    let cn = match (&spec.user, &spec.agency) {
        (Some(u), _) => format!("{u} ({})", spec.role),
        (None, Some(a)) => format!("{} {}", a.name, spec.role),
        (None, None) => format!("ALPR {}", spec.role),
    };
    let mut p = base_params(
        &cn,
        spec.agency.as_ref().map(|a| a.name.as_str()),
        spec.days,
    );
    p.is_ca = IsCa::ExplicitNoCa;
    p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    p.extended_key_usages = if spec.role.is_server() {
        vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ]
    } else {
        vec![ExtendedKeyUsagePurpose::ClientAuth]
    };
    let mut sans = Vec::new();
    for h in &spec.hosts {
        sans.push(match h.parse::<std::net::IpAddr>() {
            Ok(ip) => SanType::IpAddress(ip),
            Err(_) => SanType::DnsName(h.clone().try_into()?),
        });
    }
    sans.push(uri(format!(
        "{}role:{}",
        crate::claims::CLAIM_PREFIX,
        spec.role
    ))?);
    if let Some(u) = &spec.user {
        crate::claims::validate_user(u)?;
        sans.push(uri(format!("{}user:{u}", crate::claims::CLAIM_PREFIX))?);
    }
    if let Some(a) = &spec.agency {
        for u in a.to_uris() {
            sans.push(uri(u)?);
        }
    } else if let Some(j) = &spec.jurisdiction {
        sans.push(uri(format!(
            "{}jurisdiction:{j}",
            crate::claims::CLAIM_PREFIX
        ))?);
    }
    p.subject_alt_names = sans;
    let cert = p.signed_by(key, &issuer.issuer()?)?;
    let mut chain_pem = cert.pem();
    if !issuer.is_root() {
        chain_pem.push_str(&issuer.chain_pem);
    }
    Ok(Issued {
        chain_pem,
        key_pem: String::new(),
        cert_der: cert.der().clone(),
    })
}

/// A certificate signing request (PKCS#10) whose self-signature verified, for an ECDSA
/// P-256 key (the only kind this federation's verifiers accept). Only its public key is
/// ever used: the subject and extensions it asks for are ignored.
pub struct Request {
    key: rcgen::PublicKey,
}

impl std::fmt::Debug for Request {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Request(ECDSA P-256)")
    }
}

impl Request {
    /// Parse a PEM request and verify its signature and key type.
    pub fn from_pem(text: &str) -> Result<Self, Error> {
        let bad = |m: String| Error::CertInvalid(format!("certificate signing request: {m}"));
        let params = rcgen::CertificateSigningRequestParams::from_pem(text).map_err(|e| {
            bad(match e {
                rcgen::Error::InvalidCertificationRequestSignature => {
                    "its signature does not verify (changed after it was signed?)".into()
                }
                other => format!("does not parse ({other})"),
            })
        })?;
        if params.public_key.algorithm() != &rcgen::PKCS_ECDSA_P256_SHA256 {
            return Err(bad(
                "the key is not ECDSA P-256 (make it with `alpr-pki request`)".into(),
            ));
        }
        Ok(Self {
            key: params.public_key,
        })
    }

    /// Read and check a PEM request file.
    pub fn load(path: &Path) -> Result<Self, Error> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        Self::from_pem(&text).map_err(|e| Error::Pem {
            path: path.into(),
            reason: e.to_string(),
        })
    }
}

/// A new ECDSA P-256 key and a signing request for it: `(request PEM, key PEM)`. The
/// request names `common_name` for the issuer's eyes only (it issues from its own records).
pub fn new_request(common_name: &str) -> Result<(String, String), Error> {
    let key = KeyPair::generate()?;
    let mut p = CertificateParams::default();
    p.distinguished_name = rcgen::DistinguishedName::new();
    p.distinguished_name.push(DnType::CommonName, common_name);
    let csr = p.serialize_request(&key)?;
    Ok((csr.pem()?, key.serialize_pem()))
}

/// One revoked certificate.
#[derive(Clone, Debug)]
pub struct Revoked {
    /// The certificate's serial number, big-endian bytes.
    pub serial: Vec<u8>,
    /// When it was revoked (Unix seconds).
    pub revoked_at: i64,
}

/// Issue a CRL signed by `issuer`, valid for `days`.
pub fn new_crl(
    issuer: &Authority,
    revoked: &[Revoked],
    crl_number: u64,
    days: u32,
) -> Result<String, Error> {
    let now = OffsetDateTime::now_utc();
    let params = CertificateRevocationListParams {
        this_update: now - Duration::minutes(5),
        next_update: now + Duration::days(i64::from(days)),
        crl_number: SerialNumber::from_slice(&crl_number.to_be_bytes()),
        issuing_distribution_point: None,
        revoked_certs: revoked
            .iter()
            .map(|r| RevokedCertParams {
                serial_number: SerialNumber::from_slice(&r.serial),
                revocation_time: OffsetDateTime::from_unix_timestamp(r.revoked_at).unwrap_or(now),
                reason_code: None,
                invalidity_date: None,
            })
            .collect(),
        key_identifier_method: KeyIdMethod::Sha256,
    };
    Ok(params.signed_by(&issuer.issuer()?)?.pem()?)
}
