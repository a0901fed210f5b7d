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
