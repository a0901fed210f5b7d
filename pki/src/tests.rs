//! Unit tests of issuing and verification.
use rustls_pki_types::pem::PemObject;

use crate::claims::{AgencyClaims, AgencyKind, Role};
use crate::issue::{self, Authority, LeafSpec, Revoked};
use crate::{Error, Signer, TrustStore, now_unix};

fn agency(ori: &str, j: &str, kind: AgencyKind) -> AgencyClaims {
    AgencyClaims::new(ori, &format!("Agency {ori}"), j.parse().unwrap(), kind).unwrap()
}

fn leaf(
    ca: &Authority,
    role: Role,
    user: Option<&str>,
    claims: Option<AgencyClaims>,
) -> issue::Issued {
    let spec = LeafSpec {
        role,
        user: user.map(str::to_owned),
        agency: claims,
        jurisdiction: None,
        hosts: vec!["localhost".into()],
        days: 30,
    };
    issue::new_leaf(ca, &spec).unwrap()
}

fn chain(i: &issue::Issued) -> Vec<crate::CertificateDer<'static>> {
    crate::pem::certs_from_pem(i.chain_pem.as_bytes()).unwrap()
}

#[test]
fn issued_person_certificate_verifies_with_claims_and_signs() {
    let root = issue::new_root("Test Root", 10).unwrap();
    let ra = Authority::from_issued(&root).unwrap();
    let claims = agency("CA0560100", "US-CA", AgencyKind::Local);
    let ca = Authority::from_issued(&issue::new_agency_ca(&ra, &claims, 10).unwrap()).unwrap();
    let inv = leaf(&ca, Role::Investigator, Some("b1234"), Some(claims.clone()));
    let trust = TrustStore::new(root.cert_der.clone(), vec![]);
    let id = trust.verify(&chain(&inv), now_unix()).unwrap();
    assert_eq!(id.role, Role::Investigator);
    assert_eq!(id.user.as_deref(), Some("b1234"));
    assert_eq!(id.agency.as_ref(), Some(&claims));

    let key = rustls_pki_types::PrivateKeyDer::Pkcs8(
        rustls_pki_types::pem::PemObject::from_pem_slice(inv.key_pem.as_bytes()).unwrap(),
    );
    let signer = Signer::new(chain(&inv), &key).unwrap();
    let sig = signer.sign(b"hello").unwrap();
    assert!(
        trust
            .verify_signature(signer.chain(), b"hello", &sig, now_unix())
            .is_ok()
    );
    assert!(matches!(
        trust.verify_signature(signer.chain(), b"hellO", &sig, now_unix()),
        Err(Error::BadSignature)
    ));
}

#[test]
fn agency_ca_cannot_mint_another_agencys_identity() {
    let root = issue::new_root("Test Root", 10).unwrap();
    let ra = Authority::from_issued(&root).unwrap();
    let mine = agency("NV0020000", "US-NV", AgencyKind::Local);
    let ca = Authority::from_issued(&issue::new_agency_ca(&ra, &mine, 10).unwrap()).unwrap();
    let trust = TrustStore::new(root.cert_der.clone(), vec![]);
    let forged = leaf(
        &ca,
        Role::Node,
        None,
        Some(agency("CA0560100", "US-CA", AgencyKind::Local)),
    );
    assert!(matches!(
        trust.verify(&chain(&forged), now_unix()),
        Err(Error::ClaimMismatch(_))
    ));
    let other_j = leaf(
        &ca,
        Role::Node,
        None,
        Some(agency("NV0020000", "US-CA", AgencyKind::Local)),
    );
    assert!(matches!(
        trust.verify(&chain(&other_j), now_unix()),
        Err(Error::ClaimMismatch(_))
    ));
}

#[test]
fn foreign_root_and_revoked_leaf_are_refused() {
    let root = issue::new_root("Test Root", 10).unwrap();
    let other = issue::new_root("Other Root", 10).unwrap();
    let ra = Authority::from_issued(&root).unwrap();
    let claims = agency("CA0560100", "US-CA", AgencyKind::Local);
    let ca = Authority::from_issued(&issue::new_agency_ca(&ra, &claims, 10).unwrap()).unwrap();
    let inv = leaf(&ca, Role::Investigator, Some("b1"), Some(claims));
    let foreign = TrustStore::new(other.cert_der.clone(), vec![]);
    assert!(matches!(
        foreign.verify(&chain(&inv), now_unix()),
        Err(Error::CertInvalid(_))
    ));

    let (_, serial, _, _) = crate::verify::inspect(&inv.cert_der).unwrap();
    let serial: Vec<u8> = (0..serial.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&serial[i..i + 2], 16).unwrap())
        .collect();
    let crl_pem = issue::new_crl(
        &ca,
        &[Revoked {
            serial,
            revoked_at: now_unix(),
        }],
        2,
        10,
    )
    .unwrap();
    let crls = rustls_pki_types::CertificateRevocationListDer::pem_slice_iter(crl_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let trust = TrustStore::new(root.cert_der.clone(), crls);
    assert!(matches!(
        trust.verify(&chain(&inv), now_unix()),
        Err(Error::CertRevoked)
    ));
}

#[test]
fn expired_and_root_issued_agency_roles_are_refused() {
    let root = issue::new_root("Test Root", 10).unwrap();
    let ra = Authority::from_issued(&root).unwrap();
    let trust = TrustStore::new(root.cert_der.clone(), vec![]);
    let claims = agency("CA0560100", "US-CA", AgencyKind::Local);
    // A node certificate issued directly by the root (no agency CA) is refused.
    let direct = leaf(&ra, Role::Node, None, Some(claims.clone()));
    assert!(matches!(
        trust.verify(&chain(&direct), now_unix()),
        Err(Error::CertInvalid(_))
    ));
    // A valid leaf checked 40 days in the future has expired.
    let ca = Authority::from_issued(&issue::new_agency_ca(&ra, &claims, 10).unwrap()).unwrap();
    let node = leaf(&ca, Role::Node, None, Some(claims));
    assert!(trust.verify(&chain(&node), now_unix()).is_ok());
    assert!(matches!(
        trust.verify(&chain(&node), now_unix() + 40 * 86400),
        Err(Error::CertInvalid(_))
    ));
}

#[test]
fn issued_certificates_verify_with_openssl_and_inspect_reports_revocation() {
    use clap::Parser;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap().to_owned();
    let run = |args: &[&str]| {
        let mut argv = vec!["alpr-pki", "--dir", &d];
        argv.extend_from_slice(args);
        crate::cli::run(crate::cli::Cli::try_parse_from(argv).unwrap()).unwrap()
    };
    run(&["root", "--name", "Test Root"]);
    run(&[
        "agency",
        "--ori",
        "CA0560100",
        "--name",
        "Ventura PD",
        "--jurisdiction",
        "US-CA",
        "--kind",
        "local",
    ]);
    run(&["node", "--ori", "CA0560100"]);
    run(&[
        "person",
        "--ori",
        "CA0560100",
        "--role",
        "investigator",
        "--user",
        "b1",
    ]);
    let l = crate::PkiLayout::new(dir.path());
    let (node, _) = l.node("CA0560100");
    let (person, _) = l.person("CA0560100", "b1");
    // The system openssl accepts the chains (standard X.509, readable by any tool).
    if let Ok(out) = std::process::Command::new("openssl")
        .args(["verify", "-CAfile"])
        .arg(l.root_cert())
        .arg("-untrusted")
        .arg(l.agency_ca_cert("CA0560100"))
        .arg(&node)
        .arg(&person)
        .output()
    {
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "openssl verify: {text} {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(text.matches(": OK").count(), 2, "{text}");
        let x = std::process::Command::new("openssl")
            .args(["x509", "-noout", "-text", "-in"])
            .arg(&person)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&x.stdout);
        assert!(
            text.contains("urn:alpr:ori:CA0560100") && text.contains("urn:alpr:role:investigator"),
            "{text}"
        );
    } else {
        assert!(std::env::var("CI").is_err(), "CI must provide openssl");
    }
    let status = run(&["inspect", person.to_str().unwrap()]).join("\n");
    assert!(status.contains("status: valid"), "{status}");
    assert!(
        !status.contains("WARNING"),
        "a 365-day leaf is not near expiry:\n{status}"
    );
    run(&[
        "person",
        "--ori",
        "CA0560100",
        "--role",
        "investigator",
        "--user",
        "b2",
        "--days",
        "10",
    ]);
    let (short, _) = l.person("CA0560100", "b2");
    let status = run(&["inspect", short.to_str().unwrap()]).join("\n");
    assert!(
        status.contains("WARNING: expires in 9 days")
            || status.contains("WARNING: expires in 10 days"),
        "{status}"
    );
    run(&["revoke", person.to_str().unwrap(), "--ori", "CA0560100"]);
    let status = run(&["inspect", person.to_str().unwrap()]).join("\n");
    assert!(status.contains("REVOKED"), "{status}");
}

#[test]
fn rotation_with_overlap_then_revocation_of_the_old_certificate() {
    let root = issue::new_root("Test Root", 10).unwrap();
    let ra = Authority::from_issued(&root).unwrap();
    let claims = agency("CA0560100", "US-CA", AgencyKind::Local);
    let ca = Authority::from_issued(&issue::new_agency_ca(&ra, &claims, 10).unwrap()).unwrap();
    let old = leaf(&ca, Role::Node, None, Some(claims.clone()));
    let new = leaf(&ca, Role::Node, None, Some(claims));
    let trust = TrustStore::new(root.cert_der.clone(), vec![]);
    // During the overlap both certificates are valid for the same identity.
    let (a, b) = (
        trust.verify(&chain(&old), now_unix()).unwrap(),
        trust.verify(&chain(&new), now_unix()).unwrap(),
    );
    assert_eq!(a.agency, b.agency);
    assert_ne!(a.serial, b.serial);
    // Retiring the old one: revoke it; the new one keeps working.
    let (_, serial, _, _) = crate::verify::inspect(&old.cert_der).unwrap();
    let serial: Vec<u8> = (0..serial.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&serial[i..i + 2], 16).unwrap())
        .collect();
    let crl = issue::new_crl(
        &ca,
        &[Revoked {
            serial,
            revoked_at: now_unix(),
        }],
        2,
        10,
    )
    .unwrap();
    let crls = rustls_pki_types::CertificateRevocationListDer::pem_slice_iter(crl.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let trust = trust.with_crls(crls);
    assert!(matches!(
        trust.verify(&chain(&old), now_unix()),
        Err(Error::CertRevoked)
    ));
    assert!(trust.verify(&chain(&new), now_unix()).is_ok());
}

#[test]
fn roles_take_the_right_article_in_messages() {
    assert_eq!(Role::Admin.with_article(), "an admin");
    assert_eq!(Role::Investigator.with_article(), "an investigator");
    assert_eq!(Role::Auditor.with_article(), "an auditor");
    assert_eq!(Role::Node.with_article(), "a node");
    assert_eq!(Role::Supervisor.with_article(), "a supervisor");
}
