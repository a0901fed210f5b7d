//! Sealed boxes: HPKE (RFC 9180, base mode) from the `hpke` crate, so that a party routing a
//! message — the broker — cannot read it. A box opens only with the recipient's key and
//! only for the context it was sealed in: its purpose (query or answer), the target agency,
//! the query id and the requester are HPKE `info`, and the box's header (suite, key id)
//! is its associated data, so a box moved to another target, query or requester, re-labelled,
//! or changed in one bit does not open ([`SealError::DoesNotOpen`]).
//!
//! Suites ([`Suite`]): DHKEM(X25519, HKDF-SHA256) / HKDF-SHA256 / ChaCha20-Poly1305, and
//! the X-Wing hybrid KEM (X25519 + ML-KEM-768) with HKDF-SHA256 / ChaCha20-Poly1305, so that
//! reads recorded today are not readable by a quantum computer later. This module is the
//! building block of sealed queries and answers; no message uses it yet.

use hpke::aead::ChaCha20Poly1305;
use hpke::kdf::HkdfSha256;
use hpke::kem::{X25519HkdfSha256, XWing};
use hpke::{Deserializable, Kem, OpModeR, OpModeS, Serializable};

/// An HPKE suite of this federation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Suite {
    /// DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, ChaCha20-Poly1305 (RFC 9180 A.2).
    X25519ChaCha20 = 1,
    /// X-Wing (X25519 + ML-KEM-768), HKDF-SHA256, ChaCha20-Poly1305: post-quantum hybrid.
    XWingChaCha20 = 2,
}

impl Suite {
    /// The suite numbered `id` on the wire.
    pub fn from_id(id: u32) -> Result<Self, SealError> {
        match id {
            1 => Ok(Self::X25519ChaCha20),
            2 => Ok(Self::XWingChaCha20),
            other => Err(SealError::UnknownSuite(other)),
        }
    }

    /// Its number on the wire.
    pub fn id(self) -> u32 {
        self as u32
    }
}

/// Why a box could not be sealed or opened.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SealError {
    /// The suite number is not one of [`Suite`].
    #[error("unknown sealing suite {0}")]
    UnknownSuite(u32),
    /// A key or encapsulation of the wrong size or shape for its suite.
    #[error("malformed {what} for {suite:?}: {len} bytes")]
    Malformed {
        /// `public key`, `secret key` or `encapsulated key`.
        what: &'static str,
        /// The suite.
        suite: Suite,
        /// Its length.
        len: usize,
    },
    /// The box is not for this key and context, or was changed.
    #[error(
        "the sealed box does not open for this key, target, query and requester (moved, changed, or sealed to another key)"
    )]
    DoesNotOpen,
    /// Sealing failed (the system's randomness, or a key the KEM refuses).
    #[error("sealing failed: {0}")]
    Seal(String),
}

/// What a box was sealed for: it opens for exactly this.
#[derive(Clone, Copy, Debug)]
pub struct Context<'a> {
    /// `query` (sealed by the requesting side to a target) or `answer` (by a target to the
    /// requesting side).
    pub purpose: &'a str,
    /// The target agency's ORI.
    pub target_ori: &'a str,
    /// The query id.
    pub query_id: &'a [u8],
    /// The requester, `user@ORI`.
    pub requester: &'a str,
}

impl Context<'_> {
    /// HPKE `info`: domain-separated, each field length-prefixed.
    fn info(&self) -> Vec<u8> {
        let mut out = b"alpr-fed/v1 sealed box\n".to_vec();
        for f in [
            self.purpose.as_bytes(),
            self.target_ori.as_bytes(),
            self.query_id,
            self.requester.as_bytes(),
        ] {
            out.extend_from_slice(&(f.len() as u32).to_be_bytes());
            out.extend_from_slice(f);
        }
        out
    }
}

/// A recipient's key pair.
#[derive(Clone)]
pub struct KeyPair {
    /// The suite.
    pub suite: Suite,
    /// The public key (published).
    pub public: Vec<u8>,
    secret: Vec<u8>,
}

impl std::fmt::Debug for KeyPair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyPair")
            .field("suite", &self.suite)
            .field("key_id", &hex::encode(key_id(&self.public)))
            .finish()
    }
}

impl KeyPair {
    /// A fresh key pair from the system's randomness.
    pub fn generate(suite: Suite) -> Self {
        let (secret, public) = match suite {
            Suite::X25519ChaCha20 => generate_with::<X25519HkdfSha256>(),
            Suite::XWingChaCha20 => generate_with::<XWing>(),
        };
        Self {
            suite,
            public,
            secret,
        }
    }

    /// A key pair from its secret key bytes (as [`KeyPair::secret_bytes`] gave them).
    pub fn from_secret(suite: Suite, secret: &[u8]) -> Result<Self, SealError> {
        let bad = || SealError::Malformed {
            what: "secret key",
            suite,
            len: secret.len(),
        };
        let public = match suite {
            Suite::X25519ChaCha20 => public_of::<X25519HkdfSha256>(secret),
            Suite::XWingChaCha20 => public_of::<XWing>(secret),
        }
        .ok_or_else(bad)?;
        Ok(Self {
            suite,
            public,
            secret: secret.to_vec(),
        })
    }

    /// The secret key, for the key file (keep it 0600).
    pub fn secret_bytes(&self) -> &[u8] {
        &self.secret
    }

    /// The id a box names this key by.
    pub fn key_id(&self) -> [u8; 16] {
        key_id(&self.public)
    }
}

/// A public key's id: the first 16 bytes of its SHA-256.
pub fn key_id(public: &[u8]) -> [u8; 16] {
    let d = ring::digest::digest(&ring::digest::SHA256, public);
    let mut out = [0u8; 16];
    out.copy_from_slice(&d.as_ref()[..16]);
    out
}

/// A sealed box.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SealedBox {
    /// The suite it was sealed with.
    pub suite: Suite,
    /// The recipient key's id ([`key_id`]).
    pub key_id: [u8; 16],
    /// The HPKE encapsulated key.
    pub enc: Vec<u8>,
    /// The ciphertext (with its tag).
    pub ciphertext: Vec<u8>,
}

impl SealedBox {
    /// The associated data: the header, so a box cannot be re-labelled.
    fn aad(suite: Suite, key_id: &[u8; 16]) -> Vec<u8> {
        let mut out = b"alpr-fed/v1 box header\n".to_vec();
        out.extend_from_slice(&suite.id().to_be_bytes());
        out.extend_from_slice(key_id);
        out
    }
}

/// Seal `plaintext` to the recipient's `public` key for `ctx`.
pub fn seal(
    suite: Suite,
    public: &[u8],
    ctx: &Context<'_>,
    plaintext: &[u8],
) -> Result<SealedBox, SealError> {
    let key_id = key_id(public);
    let aad = SealedBox::aad(suite, &key_id);
    let info = ctx.info();
    let (enc, ciphertext) = match suite {
        Suite::X25519ChaCha20 => {
            seal_with::<X25519HkdfSha256>(suite, public, &info, plaintext, &aad)
        }
        Suite::XWingChaCha20 => seal_with::<XWing>(suite, public, &info, plaintext, &aad),
    }?;
    Ok(SealedBox {
        suite,
        key_id,
        enc,
        ciphertext,
    })
}

/// Open `sealed` with `key` for `ctx`.
pub fn open(key: &KeyPair, ctx: &Context<'_>, sealed: &SealedBox) -> Result<Vec<u8>, SealError> {
    if sealed.suite != key.suite || sealed.key_id != key.key_id() {
        return Err(SealError::DoesNotOpen);
    }
    open_raw(
        key.suite,
        &key.secret,
        &sealed.enc,
        &ctx.info(),
        &SealedBox::aad(sealed.suite, &sealed.key_id),
        &sealed.ciphertext,
    )
}

/// HPKE base-mode open with explicit `info` and `aad` (what [`open`] does after building
/// them; exposed for the RFC 9180 test vectors).
pub fn open_raw(
    suite: Suite,
    secret: &[u8],
    enc: &[u8],
    info: &[u8],
    aad: &[u8],
    ciphertext: &[u8],
) -> Result<Vec<u8>, SealError> {
    match suite {
        Suite::X25519ChaCha20 => {
            open_with::<X25519HkdfSha256>(suite, secret, enc, info, aad, ciphertext)
        }
        Suite::XWingChaCha20 => open_with::<XWing>(suite, secret, enc, info, aad, ciphertext),
    }
}

fn generate_with<K: Kem>() -> (Vec<u8>, Vec<u8>) {
    let (sk, pk) = K::gen_keypair();
    (sk.to_bytes().to_vec(), pk.to_bytes().to_vec())
}

fn public_of<K: Kem>(secret: &[u8]) -> Option<Vec<u8>> {
    let sk = K::PrivateKey::from_bytes(secret).ok()?;
    Some(K::sk_to_pk(&sk).to_bytes().to_vec())
}

fn seal_with<K: Kem>(
    suite: Suite,
    public: &[u8],
    info: &[u8],
    plaintext: &[u8],
    aad: &[u8],
) -> Result<(Vec<u8>, Vec<u8>), SealError> {
    let pk = K::PublicKey::from_bytes(public).map_err(|_| SealError::Malformed {
        what: "public key",
        suite,
        len: public.len(),
    })?;
    let (enc, ct) = hpke::single_shot_seal::<ChaCha20Poly1305, HkdfSha256, K>(
        &OpModeS::Base,
        &pk,
        info,
        plaintext,
        aad,
    )
    .map_err(|e| SealError::Seal(e.to_string()))?;
    Ok((enc.to_bytes().to_vec(), ct))
}

fn open_with<K: Kem>(
    suite: Suite,
    secret: &[u8],
    enc: &[u8],
    info: &[u8],
    aad: &[u8],
    ciphertext: &[u8],
) -> Result<Vec<u8>, SealError> {
    let malformed = |what, len| SealError::Malformed { what, suite, len };
    let sk =
        K::PrivateKey::from_bytes(secret).map_err(|_| malformed("secret key", secret.len()))?;
    let enc =
        K::EncappedKey::from_bytes(enc).map_err(|_| malformed("encapsulated key", enc.len()))?;
    hpke::single_shot_open::<ChaCha20Poly1305, HkdfSha256, K>(
        &OpModeR::Base,
        &sk,
        &enc,
        info,
        ciphertext,
        aad,
    )
    .map_err(|_| SealError::DoesNotOpen)
}

#[cfg(test)]
mod tests;
