//! ECDSA P-256 / SHA-256 signing with a key and its certificate chain.

use std::path::Path;

use ring::rand::SystemRandom;
use ring::signature::{ECDSA_P256_SHA256_ASN1_SIGNING, EcdsaKeyPair};
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::Error;

/// A private key and the certificate chain that vouches for it.
pub struct Signer {
    key: EcdsaKeyPair,
    chain: Vec<CertificateDer<'static>>,
    rng: SystemRandom,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer")
            .field("chain_len", &self.chain.len())
            .finish_non_exhaustive()
    }
}

impl Signer {
    /// Load from a certificate chain file and a PKCS#8 key file.
    pub fn load(cert: &Path, key: &Path) -> Result<Self, Error> {
        let chain = crate::pem::read_cert_chain(cert)?;
        let key_der = crate::pem::read_private_key(key)?;
        let signer = Self::new(chain, &key_der).map_err(|e| Error::Pem {
            path: key.into(),
            reason: e.to_string(),
        })?;
        if !signer.key_matches_certificate()? {
            return Err(Error::Pem {
                path: key.into(),
                reason: format!(
                    "this key does not belong to the certificate {} (their public keys differ)",
                    cert.display()
                ),
            });
        }
        Ok(signer)
    }

    /// Whether the key's public key is the leaf certificate's.
    pub fn key_matches_certificate(&self) -> Result<bool, Error> {
        use ring::signature::KeyPair as _;
        use x509_parser::prelude::{FromDer, X509Certificate};
        let Some(leaf) = self.chain.first() else {
            return Ok(false);
        };
        let (_, x509) = X509Certificate::from_der(leaf)
            .map_err(|e| Error::CertInvalid(format!("certificate: {e}")))?;
        Ok(x509.public_key().subject_public_key.data.as_ref() == self.key.public_key().as_ref())
    }

    /// Build from DER parts.
    pub fn new(
        chain: Vec<CertificateDer<'static>>,
        key: &PrivateKeyDer<'_>,
    ) -> Result<Self, Error> {
        let PrivateKeyDer::Pkcs8(pkcs8) = key else {
            return Err(Error::CertInvalid("private key is not PKCS#8".into()));
        };
        let rng = SystemRandom::new();
        let key = EcdsaKeyPair::from_pkcs8(
            &ECDSA_P256_SHA256_ASN1_SIGNING,
            pkcs8.secret_pkcs8_der(),
            &rng,
        )
        .map_err(|e| Error::CertInvalid(format!("not an ECDSA P-256 key: {e}")))?;
        Ok(Self { key, chain, rng })
    }

    /// Sign `message`; the signature is ASN.1 DER ECDSA.
    pub fn sign(&self, message: &[u8]) -> Result<Vec<u8>, Error> {
        self.key
            .sign(&self.rng, message)
            .map(|s| s.as_ref().to_vec())
            .map_err(|_| Error::CertInvalid("signing failed".into()))
    }

    /// The certificate chain (leaf first).
    pub fn chain(&self) -> &[CertificateDer<'static>] {
        &self.chain
    }
}

/// A WebCrypto ECDSA P-256 signature (r ‖ s, IEEE P1363) in the DER form every signature
/// of this federation takes (browsers sign this way; the node's console and the
/// regulator page re-encode).
pub fn p1363_to_der(sig: &[u8]) -> Option<Vec<u8>> {
    if sig.len() != 64 {
        return None;
    }
    fn int(v: &[u8]) -> Vec<u8> {
        let mut v = v;
        while v.len() > 1 && v[0] == 0 && v[1] & 0x80 == 0 {
            v = &v[1..];
        }
        let mut out = vec![0x02];
        if v[0] & 0x80 != 0 {
            out.push(v.len() as u8 + 1);
            out.push(0);
        } else {
            out.push(v.len() as u8);
        }
        out.extend_from_slice(v);
        out
    }
    let (r, s) = (int(&sig[..32]), int(&sig[32..]));
    let mut der = vec![0x30, (r.len() + s.len()) as u8];
    der.extend(r);
    der.extend(s);
    Some(der)
}
