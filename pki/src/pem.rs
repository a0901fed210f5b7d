//! Reading PEM files with errors that name the file.

use std::path::Path;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, CertificateRevocationListDer, PrivateKeyDer};

use crate::Error;

/// Read every certificate in a PEM file (leaf first, then its issuers).
pub fn read_cert_chain(path: &Path) -> Result<Vec<CertificateDer<'static>>, Error> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| Error::Pem {
            path: path.into(),
            reason: format!("not a PEM certificate file: {e}"),
        })?;
    if certs.is_empty() {
        return Err(Error::Pem {
            path: path.into(),
            reason: "no CERTIFICATE block found".into(),
        });
    }
    Ok(certs)
}

/// Read a PKCS#8 private key from a PEM file.
pub fn read_private_key(path: &Path) -> Result<PrivateKeyDer<'static>, Error> {
    refuse_exposed_key(path)?;
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    PrivateKeyDer::from_pem_slice(&bytes).map_err(|e| Error::Pem {
        path: path.into(),
        reason: format!("no usable private key: {e}"),
    })
}

/// A private key that other users may read is refused before it is used: whoever else
/// can read it can sign as its holder.
#[cfg(unix)]
fn refuse_exposed_key(path: &Path) -> Result<(), Error> {
    use std::os::unix::fs::PermissionsExt as _;
    let mode = std::fs::metadata(path)
        .map_err(|e| Error::io(path, e))?
        .permissions()
        .mode()
        & 0o777;
    if mode & 0o077 != 0 {
        return Err(Error::KeyExposed {
            path: path.into(),
            mode,
        });
    }
    Ok(())
}

#[cfg(not(unix))]
fn refuse_exposed_key(_path: &Path) -> Result<(), Error> {
    Ok(())
}

/// Read every CRL in a PEM file.
pub fn read_crls(path: &Path) -> Result<Vec<CertificateRevocationListDer<'static>>, Error> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    CertificateRevocationListDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| Error::Pem {
            path: path.into(),
            reason: format!("not a PEM CRL file: {e}"),
        })
}

/// Read a CRL file for use: it must hold at least one CRL, each must parse, and none may
/// be past its `nextUpdate` at `now`. A CRL that fails any of these is an error naming the
/// file (fail closed: a daemon does not start, and a reload keeps the CRLs in force). The
/// signature of each CRL is checked by rustls-webpki against its issuing CA when it is used.
pub fn read_checked_crls(
    path: &Path,
    now: i64,
) -> Result<Vec<CertificateRevocationListDer<'static>>, Error> {
    use x509_parser::prelude::FromDer;
    use x509_parser::revocation_list::CertificateRevocationList;
    let crls = read_crls(path)?;
    let bad = |reason: String| Error::Pem {
        path: path.into(),
        reason,
    };
    if crls.is_empty() {
        return Err(bad(
            "holds no CRL (expected a PEM \"X509 CRL\" block)".into()
        ));
    }
    for (i, der) in crls.iter().enumerate() {
        let (_, crl) = CertificateRevocationList::from_der(der)
            .map_err(|e| bad(format!("CRL {} does not parse: {e}", i + 1)))?;
        let next = crl
            .next_update()
            .ok_or_else(|| bad(format!("CRL {} has no nextUpdate", i + 1)))?
            .timestamp();
        if next < now {
            return Err(bad(format!(
                "CRL {} of {} expired at {} (nextUpdate); reissue it with `alpr-pki revoke` or a new CRL before relying on it",
                i + 1,
                crl.issuer(),
                crate::fmt_time(next)
            )));
        }
    }
    Ok(crls)
}

/// Parse every certificate in PEM text.
pub(crate) fn certs_from_pem(bytes: &[u8]) -> Result<Vec<CertificateDer<'static>>, Error> {
    CertificateDer::pem_slice_iter(bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| Error::CertInvalid(format!("not PEM certificates: {e}")))
}
