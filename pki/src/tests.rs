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

mod directory {
    use super::*;
    use crate::PkiLayout;
    use crate::issue::Overwrite;

    fn claims(ori: &str, name: &str) -> AgencyClaims {
        AgencyClaims::new(ori, name, "US-IL".parse().unwrap(), AgencyKind::Local).unwrap()
    }

    fn pki(dir: &std::path::Path) -> PkiLayout {
        let l = PkiLayout::new(dir);
        l.create_root("Test Root", 30, Overwrite::Refuse).unwrap();
        l
    }

    #[test]
    fn nothing_is_overwritten_without_force_and_force_keeps_the_old_files() {
        let d = tempfile::tempdir().unwrap();
        let l = pki(d.path());
        let before = std::fs::read(l.root_key()).unwrap();
        let e = l
            .create_root("Test Root", 30, Overwrite::Refuse)
            .unwrap_err();
        assert!(matches!(e, Error::Exists(_)), "{e}");
        assert!(e.to_string().contains("--force"), "{e}");
        assert_eq!(
            std::fs::read(l.root_key()).unwrap(),
            before,
            "root.key untouched"
        );
        l.create_agency(
            &claims("IL0000100", "Springfield PD"),
            30,
            Overwrite::Refuse,
        )
        .unwrap();
        assert!(
            l.create_agency(
                &claims("IL0000100", "Springfield PD"),
                30,
                Overwrite::Refuse
            )
            .is_err()
        );
        l.issue_node("IL0000100", vec![], 30, Overwrite::Refuse)
            .unwrap();
        assert!(
            l.issue_node("IL0000100", vec![], 30, Overwrite::Refuse)
                .is_err()
        );
        // --force: the new key replaces the old, which is kept beside it.
        l.create_root("Test Root", 30, Overwrite::KeepOld).unwrap();
        assert_ne!(std::fs::read(l.root_key()).unwrap(), before);
        let kept: Vec<_> = std::fs::read_dir(d.path())
            .unwrap()
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with("root.key.old-"))
            .collect();
        assert_eq!(kept.len(), 1, "{kept:?}");
        assert_eq!(std::fs::read(d.path().join(&kept[0])).unwrap(), before);
    }

    #[cfg(unix)]
    /// A PKI with one agency (IL0000100) and its investigator `inv-1`.
    fn springfield() -> (tempfile::TempDir, PkiLayout) {
        let d = tempfile::tempdir().unwrap();
        let l = pki(d.path());
        l.create_agency(
            &claims("IL0000100", "Springfield PD"),
            30,
            Overwrite::Refuse,
        )
        .unwrap();
        l.issue_person(
            "IL0000100",
            Role::Investigator,
            "inv-1",
            30,
            Overwrite::Refuse,
        )
        .unwrap();
        (d, l)
    }

    #[test]
    fn every_key_is_written_0600() {
        use std::os::unix::fs::PermissionsExt;
        let (_d, l) = springfield();
        for key in [
            l.root_key(),
            l.agency_ca_key("IL0000100"),
            l.person("IL0000100", "inv-1").1,
        ] {
            let mode = std::fs::metadata(&key).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{}", key.display());
        }
    }

    #[test]
    fn a_key_other_users_can_read_is_refused_with_the_fix() {
        use std::os::unix::fs::PermissionsExt;
        let (_d, l) = springfield();
        let (cert, key) = l.person("IL0000100", "inv-1");
        assert!(crate::Signer::load(&cert, &key).is_ok());
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = crate::Signer::load(&cert, &key).err().unwrap();
        assert!(
            matches!(e, crate::Error::KeyExposed { mode: 0o644, .. }),
            "{e}"
        );
        let m = e.to_string();
        assert!(m.contains("mode 0644") && m.contains("chmod 600"), "{m}");
        assert!(crate::read_private_key(&key).is_err());
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o640)).unwrap();
        assert!(
            crate::Signer::load(&cert, &key).is_err(),
            "group-readable too"
        );
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o400)).unwrap();
        assert!(
            crate::Signer::load(&cert, &key).is_ok(),
            "owner-only is fine"
        );
    }

    #[test]
    fn revoke_finds_the_issuer_itself_is_idempotent_and_refuses_what_it_cannot_revoke() {
        let d = tempfile::tempdir().unwrap();
        let l = pki(d.path());
        l.create_agency(
            &claims("IL0000100", "Springfield PD"),
            30,
            Overwrite::Refuse,
        )
        .unwrap();
        let cert = l
            .issue_person(
                "IL0000100",
                Role::Investigator,
                "inv-1",
                30,
                Overwrite::Refuse,
            )
            .unwrap();
        // Without naming the agency.
        let r = l.revoke(&cert, None).unwrap();
        assert!(!r.already);
        assert_eq!(r.issuer, "agency CA IL0000100");
        let trust = TrustStore::load(&l.root_cert(), &l.all_crls()).unwrap();
        let chain = crate::read_cert_chain(&cert).unwrap();
        assert!(matches!(
            trust.verify(&chain, now_unix()),
            Err(Error::CertRevoked)
        ));
        // Twice: nothing changes, no duplicate line.
        let list = l.agency_dir("IL0000100").join("revoked.txt");
        let text = std::fs::read_to_string(&list).unwrap();
        assert!(l.revoke(&cert, None).unwrap().already);
        assert_eq!(std::fs::read_to_string(&list).unwrap(), text);
        assert_eq!(text.lines().count(), 1);
        // Naming the wrong agency is refused.
        l.create_agency(&claims("IL0000200", "Peoria PD"), 30, Overwrite::Refuse)
            .unwrap();
        let other = l
            .issue_person(
                "IL0000200",
                Role::Investigator,
                "inv-2",
                30,
                Overwrite::Refuse,
            )
            .unwrap();
        let e = l.revoke(&other, Some("IL0000100")).unwrap_err();
        assert!(
            e.to_string().contains("issued by agency CA IL0000200"),
            "{e}"
        );
        // A certificate from another PKI cannot be revoked here.
        let d2 = tempfile::tempdir().unwrap();
        let l2 = pki(d2.path());
        l2.create_agency(
            &claims("IL0000100", "Springfield PD"),
            30,
            Overwrite::Refuse,
        )
        .unwrap();
        let foreign = l2
            .issue_person(
                "IL0000100",
                Role::Investigator,
                "inv-9",
                30,
                Overwrite::Refuse,
            )
            .unwrap();
        let e = l.revoke(&foreign, None).unwrap_err();
        assert!(matches!(e, Error::CannotRevoke(_)), "{e}");
    }

    #[test]
    fn two_agencies_with_one_name_keep_their_crls_apart() {
        let d = tempfile::tempdir().unwrap();
        let l = pki(d.path());
        // Springfield, Illinois and Springfield, Missouri: the same agency name.
        l.create_agency(
            &claims("IL0840100", "Springfield Police Department"),
            30,
            Overwrite::Refuse,
        )
        .unwrap();
        let mo = AgencyClaims::new(
            "MO0390200",
            "Springfield Police Department",
            "US-MO".parse().unwrap(),
            AgencyKind::Local,
        )
        .unwrap();
        l.create_agency(&mo, 30, Overwrite::Refuse).unwrap();
        let il = l
            .issue_person(
                "IL0840100",
                Role::Investigator,
                "inv-il",
                30,
                Overwrite::Refuse,
            )
            .unwrap();
        let mo_cert = l
            .issue_person(
                "MO0390200",
                Role::Investigator,
                "inv-mo",
                30,
                Overwrite::Refuse,
            )
            .unwrap();
        l.revoke(&il, None).unwrap();
        let trust = TrustStore::load(&l.root_cert(), &l.all_crls()).unwrap();
        let now = now_unix();
        assert!(matches!(
            trust.verify(&crate::read_cert_chain(&il).unwrap(), now),
            Err(Error::CertRevoked)
        ));
        let id = trust
            .verify(&crate::read_cert_chain(&mo_cert).unwrap(), now)
            .unwrap();
        assert_eq!(id.ori(), Some("MO0390200"));
    }

    #[test]
    fn the_cli_is_a_thin_layer_over_the_directory_functions() {
        use clap::Parser;
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().to_str().unwrap();
        let run = |args: &[&str]| {
            let mut argv = vec!["alpr-pki", "--dir", dir];
            argv.extend_from_slice(args);
            crate::cli::run(crate::cli::Cli::try_parse_from(argv).unwrap())
        };
        run(&["root", "--name", "CLI Root"]).unwrap();
        assert!(run(&["root", "--name", "CLI Root"]).is_err());
        run(&["--force", "root", "--name", "CLI Root"]).unwrap();
        run(&[
            "agency",
            "--ori",
            "IL0000100",
            "--name",
            "Springfield PD",
            "--jurisdiction",
            "US-IL",
            "--kind",
            "local",
        ])
        .unwrap();
        let out = run(&[
            "person",
            "--ori",
            "IL0000100",
            "--role",
            "admin",
            "--user",
            "a1",
        ])
        .unwrap();
        let cert = out[0].trim_start_matches("wrote ").to_owned();
        let out = run(&["revoke", &cert]).unwrap();
        assert!(out[0].contains("revoked serial"), "{out:?}");
        let out = run(&["revoke", &cert]).unwrap();
        assert!(out[0].contains("already revoked"), "{out:?}");
        let out = run(&["inspect", &cert]).unwrap();
        assert!(out.iter().any(|l| l.contains("REVOKED")), "{out:?}");
    }
}

#[test]
fn crl_files_that_cannot_be_used_are_refused_naming_the_file() {
    use crate::issue::Overwrite;
    let d = tempfile::tempdir().unwrap();
    let l = crate::PkiLayout::new(d.path());
    l.create_root("Test Root", 30, Overwrite::Refuse).unwrap();
    let now = now_unix();
    crate::read_checked_crls(&l.root_crl(), now).unwrap();
    // Garbage, a file with no CRL in it, a CRL past its nextUpdate.
    let garbage = d.path().join("garbage.crl");
    std::fs::write(
        &garbage,
        "-----BEGIN X509 CRL-----\nbm90IGEgQ1JM\n-----END X509 CRL-----\n",
    )
    .unwrap();
    let e = crate::read_checked_crls(&garbage, now)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("garbage.crl") && e.contains("does not parse"),
        "{e}"
    );
    let empty = d.path().join("empty.crl");
    std::fs::write(&empty, "nothing here\n").unwrap();
    let e = crate::read_checked_crls(&empty, now)
        .unwrap_err()
        .to_string();
    assert!(e.contains("empty.crl") && e.contains("holds no CRL"), "{e}");
    let e = crate::read_checked_crls(&l.root_crl(), now + 31 * 86_400)
        .unwrap_err()
        .to_string();
    assert!(e.contains("root.crl") && e.contains("expired"), "{e}");
    // A trust store will not load with any of them.
    assert!(TrustStore::load(&l.root_cert(), &[&garbage]).is_err());
    assert!(TrustStore::load(&l.root_cert(), &[&empty]).is_err());
}

#[test]
fn a_key_that_does_not_belong_to_its_certificate_is_named() {
    use crate::issue::Overwrite;
    let d = tempfile::tempdir().unwrap();
    let l = crate::PkiLayout::new(d.path());
    l.create_root("Test Root", 30, Overwrite::Refuse).unwrap();
    let claims = AgencyClaims::new(
        "CA0560100",
        "Ventura PD",
        "US-CA".parse().unwrap(),
        AgencyKind::Local,
    )
    .unwrap();
    l.create_agency(&claims, 30, Overwrite::Refuse).unwrap();
    l.issue_person("CA0560100", Role::Admin, "a1", 30, Overwrite::Refuse)
        .unwrap();
    l.issue_person("CA0560100", Role::Admin, "a2", 30, Overwrite::Refuse)
        .unwrap();
    let (c1, k1) = l.person("CA0560100", "a1");
    let (_, k2) = l.person("CA0560100", "a2");
    Signer::load(&c1, &k1).unwrap();
    let e = Signer::load(&c1, &k2).unwrap_err().to_string();
    assert!(
        e.contains("a2.key")
            && e.contains("does not belong to the certificate")
            && e.contains("a1.crt"),
        "{e}"
    );
}

#[test]
fn a_crl_not_signed_by_its_ca_is_refused_at_load() {
    use crate::issue::Overwrite;
    let make = || {
        let d = tempfile::tempdir().unwrap();
        let l = crate::PkiLayout::new(d.path());
        l.create_root("Test Root", 30, Overwrite::Refuse).unwrap();
        let claims = AgencyClaims::new(
            "CA0560100",
            "Ventura PD",
            "US-CA".parse().unwrap(),
            AgencyKind::Local,
        )
        .unwrap();
        l.create_agency(&claims, 30, Overwrite::Refuse).unwrap();
        (d, l)
    };
    let (_d1, real) = make();
    let (_d2, other) = make();
    TrustStore::load(&real.root_cert(), &real.all_crls()).unwrap();
    // Same issuer name, another key: a forged CRL (or another CA's of the same name).
    std::fs::copy(other.agency_crl("CA0560100"), real.agency_crl("CA0560100")).unwrap();
    let e = TrustStore::load(&real.root_cert(), &real.all_crls())
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("ca.crl") && e.contains("not signed by that CA's key"),
        "{e}"
    );
    // A root CRL claiming this root's name but signed by another root: refused too.
    std::fs::copy(other.root_crl(), real.root_crl()).unwrap();
    let e = TrustStore::load(&real.root_cert(), &[real.root_crl()])
        .unwrap_err()
        .to_string();
    assert!(e.contains("root.crl"), "{e}");
}

/// Keys born where they are used: a node and a person make their own key and request; the
/// agency CA issues from its own records; the key never leaves its holder.
mod requests {
    use crate::claims::Role;
    use crate::issue::{self, Overwrite, Request};
    use crate::{CertificateDer, PkiLayout, Signer, TrustStore, now_unix};

    fn layout(dir: &std::path::Path) -> PkiLayout {
        let l = PkiLayout::new(dir);
        l.create_root("Test Root", 30, Overwrite::Refuse).unwrap();
        l.create_agency(
            &super::agency("CA0560100", "US-CA", crate::claims::AgencyKind::Local),
            30,
            Overwrite::Refuse,
        )
        .unwrap();
        l
    }

    #[test]
    fn a_node_and_a_person_get_certificates_for_keys_they_made_themselves() {
        let d = tempfile::tempdir().unwrap();
        let l = layout(d.path());
        let trust = TrustStore::load(&l.root_cert(), &l.all_crls()).unwrap();
        // On the node's host: key and request; only the request travels.
        let (csr, key) = issue::new_request("Ventura node").unwrap();
        let key_path = d.path().join("holder").join("node.key");
        issue::write_new(&key_path, key.as_bytes(), true, Overwrite::Refuse).unwrap();
        let out = d.path().join("holder").join("node.crt");
        let request = Request::from_pem(&csr).unwrap();
        l.node_cert_for("CA0560100", vec!["localhost".into()], 30, &request)
            .unwrap()
            .write_cert(&out, Overwrite::Refuse)
            .unwrap();
        let signer = Signer::load(&out, &key_path).unwrap();
        let id = trust.verify(signer.chain(), now_unix()).unwrap();
        assert_eq!((id.role, id.ori()), (Role::Node, Some("CA0560100")));
        // No key was written beside the layout's own node certificate.
        assert!(!l.node("CA0560100").1.exists());
        // A person, into the layout's place.
        let (csr, key) = issue::new_request("inv-7").unwrap();
        let key_path = d.path().join("inv-7.key");
        issue::write_new(&key_path, key.as_bytes(), true, Overwrite::Refuse).unwrap();
        let c = l.person("CA0560100", "inv-7").0;
        let issue = || {
            l.person_cert_for(
                "CA0560100",
                Role::Investigator,
                "inv-7",
                30,
                &Request::from_pem(&csr).unwrap(),
            )
            .unwrap()
            .write_cert(&c, Overwrite::Refuse)
        };
        issue().unwrap();
        let signer = Signer::load(&c, &key_path).unwrap();
        let id = trust.verify(signer.chain(), now_unix()).unwrap();
        assert_eq!(
            (id.role, id.user.as_deref()),
            (Role::Investigator, Some("inv-7"))
        );
        // A repeated issue never overwrites.
        let again = issue();
        assert!(matches!(again, Err(crate::Error::Exists(_))), "{again:?}");
    }

    #[test]
    fn the_claims_come_from_the_issuer_never_from_the_request() {
        let d = tempfile::tempdir().unwrap();
        let l = layout(d.path());
        let trust = TrustStore::load(&l.root_cert(), &l.all_crls()).unwrap();
        // A request asking to be another agency's admin.
        let key = rcgen::KeyPair::generate().unwrap();
        let mut p = rcgen::CertificateParams::new(vec!["evil.example".to_string()]).unwrap();
        p.subject_alt_names.push(rcgen::SanType::URI(
            "urn:alpr:role:admin".to_string().try_into().unwrap(),
        ));
        p.subject_alt_names.push(rcgen::SanType::URI(
            "urn:alpr:ori:NV0020100".to_string().try_into().unwrap(),
        ));
        p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let csr = p.serialize_request(&key).unwrap().pem().unwrap();
        let c = d.path().join("inv-8.crt");
        l.person_cert_for(
            "CA0560100",
            Role::Investigator,
            "inv-8",
            30,
            &Request::from_pem(&csr).unwrap(),
        )
        .unwrap()
        .write_cert(&c, Overwrite::Refuse)
        .unwrap();
        let chain = crate::pem::certs_from_pem(std::fs::read(&c).unwrap().as_slice()).unwrap();
        let id = trust.verify(&chain, now_unix()).unwrap();
        assert_eq!(id.role, Role::Investigator);
        assert_eq!(id.ori(), Some("CA0560100"));
        let text = String::from_utf8_lossy(chain[0].as_ref()).to_string();
        assert!(!text.contains("NV0020100") && !text.contains("evil.example"));
        let _: &CertificateDer<'_> = &chain[0];
    }

    #[test]
    fn a_changed_request_or_a_key_of_another_kind_is_refused_with_a_clear_error() {
        let (csr, _) = issue::new_request("node").unwrap();
        // Flip one byte inside the base64 body: the signature no longer verifies (or it
        // no longer parses); either way a one-line error, never a certificate.
        let mut lines: Vec<String> = csr.lines().map(str::to_owned).collect();
        let body = &mut lines[2];
        let flipped = if body.starts_with('A') { "B" } else { "A" };
        body.replace_range(0..1, flipped);
        let e = Request::from_pem(&lines.join("\n"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("certificate signing request"), "{e}");
        assert!(!e.contains('\n'));
        // An Ed25519 key: refused, naming the kind this federation accepts.
        let ed = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
        let csr = rcgen::CertificateParams::default()
            .serialize_request(&ed)
            .unwrap()
            .pem()
            .unwrap();
        let e = Request::from_pem(&csr).unwrap_err().to_string();
        assert!(e.contains("ECDSA P-256"), "{e}");
        // Not a request at all.
        assert!(Request::from_pem("hello").is_err());
    }

    #[test]
    fn an_agency_ca_key_born_at_the_agency_issues_and_revokes_there() {
        // The root's machine and the agency's machine are two directories.
        let root_dir = tempfile::tempdir().unwrap();
        let root = PkiLayout::new(root_dir.path());
        root.create_root("Test Root", 30, Overwrite::Refuse)
            .unwrap();
        let agency_dir = tempfile::tempdir().unwrap();
        let agency = PkiLayout::new(agency_dir.path());
        let ori = "CA0560100";
        let (csr, key) = issue::new_request("Ventura CA").unwrap();
        issue::write_new(
            &agency.agency_ca_key(ori),
            key.as_bytes(),
            true,
            Overwrite::Refuse,
        )
        .unwrap();
        // The root issues from its records; it never holds the agency's key.
        let claims = super::agency(ori, "US-CA", crate::claims::AgencyKind::Local);
        root.agency_cert_for(&claims, 30, &Request::from_pem(&csr).unwrap())
            .unwrap()
            .write_cert(&agency.agency_ca_cert(ori), Overwrite::Refuse)
            .unwrap();
        assert!(!root.agency_ca_key(ori).exists());
        std::fs::copy(root.root_cert(), agency.root_cert()).unwrap();
        std::fs::copy(root.root_crl(), agency.root_crl()).unwrap();
        // The agency writes its first CRL and issues and revokes on its own machine.
        agency.write_agency_crl(ori).unwrap();
        agency
            .issue_person(ori, Role::Investigator, "inv-1", 30, Overwrite::Refuse)
            .unwrap();
        let trust = TrustStore::load(&agency.root_cert(), &agency.all_crls()).unwrap();
        let (c, k) = agency.person(ori, "inv-1");
        let signer = Signer::load(&c, &k).unwrap();
        let id = trust.verify(signer.chain(), now_unix()).unwrap();
        assert_eq!((id.role, id.ori()), (Role::Investigator, Some(ori)));
        agency.revoke(&c, Some(ori)).unwrap();
        let trust = TrustStore::load(&agency.root_cert(), &agency.all_crls()).unwrap();
        assert!(matches!(
            trust.verify(signer.chain(), now_unix()),
            Err(crate::Error::CertRevoked)
        ));
        // Writing the CRL again keeps the revocation.
        agency.write_agency_crl(ori).unwrap();
        let trust = TrustStore::load(&agency.root_cert(), &agency.all_crls()).unwrap();
        assert!(trust.verify(signer.chain(), now_unix()).is_err());
    }
}
