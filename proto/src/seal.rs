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
//! building block of sealed queries (one ciphertext under a [`QueryKey`], that key sealed to
//! each target in a [`crate::pb::SealedBox`]), sealed replies ([`ReplyKey`],
//! [`crate::pb::SealedReply`]) and shared hot lists ([`seal_with_reply`]).

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
        /// `public key`, `secret key`, `encapsulated key` or `key id`.
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
    /// The opened plaintext is not padded as this federation pads.
    #[error("the sealed plaintext is not padded as alpr_proto::seal::pad pads")]
    BadPadding,
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

impl SealedBox {
    /// The wire form, addressed to `recipient_ori`.
    pub fn to_wire(&self, recipient_ori: &str) -> crate::pb::SealedBox {
        crate::pb::SealedBox {
            recipient_ori: recipient_ori.to_owned(),
            suite: self.suite.id(),
            key_id: self.key_id.to_vec(),
            enc: self.enc.clone(),
            ciphertext: self.ciphertext.clone(),
        }
    }

    /// A box from its wire form (suite known, key id 16 bytes).
    pub fn from_wire(b: &crate::pb::SealedBox) -> Result<Self, SealError> {
        let suite = Suite::from_id(b.suite)?;
        let key_id: [u8; 16] =
            b.key_id
                .as_slice()
                .try_into()
                .map_err(|_| SealError::Malformed {
                    what: "key id",
                    suite,
                    len: b.key_id.len(),
                })?;
        Ok(Self {
            suite,
            key_id,
            enc: b.enc.clone(),
            ciphertext: b.ciphertext.clone(),
        })
    }
}

/// The associated data of a sealed reply: it is bound to its query and its provider.
pub fn reply_aad(query_id: &[u8], provider_ori: &str) -> Vec<u8> {
    let mut out = b"alpr-fed/v1 sealed reply\n".to_vec();
    out.extend_from_slice(query_id);
    out.extend_from_slice(provider_ori.as_bytes());
    out
}

/// Seal `plaintext` to the recipient's `public` key for `ctx`.
pub fn seal(
    suite: Suite,
    public: &[u8],
    ctx: &Context<'_>,
    plaintext: &[u8],
) -> Result<SealedBox, SealError> {
    seal_with_reply(suite, public, ctx, plaintext).map(|(b, _)| b)
}

/// Seal `plaintext` to the recipient's `public` key for `ctx`, and return with the box the
/// [`ReplyKey`] both ends export from its HPKE context: the recipient answers under it.
pub fn seal_with_reply(
    suite: Suite,
    public: &[u8],
    ctx: &Context<'_>,
    plaintext: &[u8],
) -> Result<(SealedBox, ReplyKey), SealError> {
    seal_raw(suite, public, ctx, &pad(plaintext))
}

/// Seal exactly `plaintext` (not padded) to `public` for `ctx`.
fn seal_raw(
    suite: Suite,
    public: &[u8],
    ctx: &Context<'_>,
    plaintext: &[u8],
) -> Result<(SealedBox, ReplyKey), SealError> {
    let key_id = key_id(public);
    let aad = SealedBox::aad(suite, &key_id);
    let info = ctx.info();
    let (enc, ciphertext, reply) = match suite {
        Suite::X25519ChaCha20 => {
            seal_with::<X25519HkdfSha256>(suite, public, &info, plaintext, &aad)
        }
        Suite::XWingChaCha20 => seal_with::<XWing>(suite, public, &info, plaintext, &aad),
    }?;
    Ok((
        SealedBox {
            suite,
            key_id,
            enc,
            ciphertext,
        },
        reply,
    ))
}

/// Open `sealed` with `key` for `ctx`.
pub fn open(key: &KeyPair, ctx: &Context<'_>, sealed: &SealedBox) -> Result<Vec<u8>, SealError> {
    open_with_reply(key, ctx, sealed).map(|(p, _)| p)
}

/// Open `sealed` with `key` for `ctx`, with the [`ReplyKey`] exported from its context.
pub fn open_with_reply(
    key: &KeyPair,
    ctx: &Context<'_>,
    sealed: &SealedBox,
) -> Result<(Vec<u8>, ReplyKey), SealError> {
    let (padded, reply) = open_raw_with_reply(key, ctx, sealed)?;
    Ok((unpad(&padded)?, reply))
}

/// Open `sealed` with `key` for `ctx`: exactly its plaintext (not unpadded).
fn open_raw_with_reply(
    key: &KeyPair,
    ctx: &Context<'_>,
    sealed: &SealedBox,
) -> Result<(Vec<u8>, ReplyKey), SealError> {
    if sealed.suite != key.suite || sealed.key_id != key.key_id() {
        return Err(SealError::DoesNotOpen);
    }
    let info = ctx.info();
    let aad = SealedBox::aad(sealed.suite, &sealed.key_id);
    let (padded, reply) = match key.suite {
        Suite::X25519ChaCha20 => open_with::<X25519HkdfSha256>(
            key.suite,
            &key.secret,
            &sealed.enc,
            &info,
            &aad,
            &sealed.ciphertext,
        ),
        Suite::XWingChaCha20 => open_with::<XWing>(
            key.suite,
            &key.secret,
            &sealed.enc,
            &info,
            &aad,
            &sealed.ciphertext,
        ),
    }?;
    Ok((padded, reply))
}

/// Smallest padded size: every box and sealed reply is at least this long.
pub const PAD_MIN: usize = 1024;

/// Pad what is sealed so that its length shows only a power of two: a 4-byte big-endian
/// length, the bytes, then zeros up to the next power of two of at least [`PAD_MIN`]. A
/// query's box then does not tell the length of its reason, nor a reply how many reads
/// it holds, beyond that bucket.
pub fn pad(plaintext: &[u8]) -> Vec<u8> {
    let want = (plaintext.len() + 4).max(PAD_MIN).next_power_of_two();
    let mut out = Vec::with_capacity(want);
    out.extend_from_slice(&(plaintext.len() as u32).to_be_bytes());
    out.extend_from_slice(plaintext);
    out.resize(want, 0);
    out
}

/// What [`pad`] padded; a length that does not fit, or padding that is not zeros, is an
/// error (the box was made by something else).
pub fn unpad(padded: &[u8]) -> Result<Vec<u8>, SealError> {
    let len = padded
        .get(..4)
        .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize)
        .ok_or(SealError::BadPadding)?;
    let body = padded.get(4..4 + len).ok_or(SealError::BadPadding)?;
    if padded[4 + len..].iter().any(|&b| b != 0) {
        return Err(SealError::BadPadding);
    }
    Ok(body.to_vec())
}

/// HPKE exporter context of the reply key.
pub const REPLY_KEY_CONTEXT: &[u8] = b"alpr-fed/v1 reply key";

/// The key a target's reply to one box is encrypted under: 32 bytes exported from the
/// box's HPKE context (RFC 9180 §5.3), so only the sealer and the opener know it. It is
/// never stored; the requesting node drops it when the query is done.
///
/// Why not a fresh KEM per reply: the sealer already holds a secret shared with exactly
/// this target for exactly this query, and the reply must reach exactly that sealer. A
/// second KEM would cost another encapsulation per target and add nothing: whoever could
/// open the query box (the target's sealing key) holds the answered reads anyway.
/// Retired sealing keys are deleted after their grace period, which bounds how long a
/// recorded box and its reply stay openable at all.
#[derive(Clone)]
pub struct ReplyKey([u8; 32]);

impl std::fmt::Debug for ReplyKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ReplyKey(..)")
    }
}

impl ReplyKey {
    /// Encrypt `plaintext` bound to `aad` (ChaCha20-Poly1305, ring) under a fresh random
    /// 12-byte nonce, returned with the ciphertext. A random nonce per reply matters: a
    /// broker that replays a box gets a second reply (a refusal) under the same key, and
    /// must not get it under the same nonce.
    pub fn seal(&self, aad: &[u8], plaintext: &[u8]) -> Result<([u8; 12], Vec<u8>), SealError> {
        aead_seal(&self.0, aad, plaintext)
    }

    /// Decrypt what [`ReplyKey::seal`] made.
    pub fn open(&self, aad: &[u8], nonce: &[u8], ciphertext: &[u8]) -> Result<Vec<u8>, SealError> {
        aead_open(&self.0, aad, nonce, ciphertext)
    }
}

/// ChaCha20-Poly1305 (ring) under `key`: pad `plaintext`, encrypt it bound to `aad` under a
/// fresh random 12-byte nonce; the nonce and the ciphertext with its tag.
fn aead_seal(
    key: &[u8; 32],
    aad: &[u8],
    plaintext: &[u8],
) -> Result<([u8; 12], Vec<u8>), SealError> {
    use ring::aead::{Aad, Nonce};
    use ring::rand::SecureRandom;
    let mut nonce = [0u8; 12];
    ring::rand::SystemRandom::new()
        .fill(&mut nonce)
        .map_err(|_| SealError::Seal("no randomness for a nonce".into()))?;
    let key = ring::aead::UnboundKey::new(&ring::aead::CHACHA20_POLY1305, key)
        .map(ring::aead::LessSafeKey::new)
        .map_err(|_| SealError::Seal("symmetric key".into()))?;
    let mut buf = pad(plaintext);
    key.seal_in_place_append_tag(
        Nonce::assume_unique_for_key(nonce),
        Aad::from(aad),
        &mut buf,
    )
    .map_err(|_| SealError::Seal("symmetric encryption".into()))?;
    Ok((nonce, buf))
}

/// Decrypt and unpad what [`aead_seal`] made.
fn aead_open(
    key: &[u8; 32],
    aad: &[u8],
    nonce: &[u8],
    ciphertext: &[u8],
) -> Result<Vec<u8>, SealError> {
    use ring::aead::{Aad, Nonce};
    let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| SealError::DoesNotOpen)?;
    let key = ring::aead::UnboundKey::new(&ring::aead::CHACHA20_POLY1305, key)
        .map(ring::aead::LessSafeKey::new)
        .map_err(|_| SealError::DoesNotOpen)?;
    let mut buf = ciphertext.to_vec();
    let plain = key
        .open_in_place(nonce, Aad::from(aad), &mut buf)
        .map_err(|_| SealError::DoesNotOpen)?;
    unpad(plain)
}

/// The key one sealed query is encrypted under, once for all its targets: 32 random bytes,
/// each target's box carries it (sealed to that target's key), so a query to N targets
/// costs one ciphertext of the query plus N small boxes, not N copies of the query. It
/// is never stored.
///
/// Every target already reads the whole signed query (it must verify the investigator's
/// signature over it, target list included), so sharing one ciphertext among them shows
/// no target anything it did not see before; the reply key stays per target (exported
/// from that target's own box).
#[derive(Clone)]
pub struct QueryKey([u8; 32]);

impl std::fmt::Debug for QueryKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("QueryKey(..)")
    }
}

/// The associated data of a sealed query's one ciphertext (`Endorsement.sealed_query`):
/// it is bound to its query id and its requester, each length-prefixed.
pub fn sealed_query_aad(query_id: &[u8], requester: &str) -> Vec<u8> {
    let mut out = b"alpr-fed/v1 sealed query\n".to_vec();
    for f in [query_id, requester.as_bytes()] {
        out.extend_from_slice(&(f.len() as u32).to_be_bytes());
        out.extend_from_slice(f);
    }
    out
}

impl QueryKey {
    /// A fresh key from the system's randomness.
    pub fn generate() -> Result<Self, SealError> {
        use ring::rand::SecureRandom;
        let mut k = [0u8; 32];
        ring::rand::SystemRandom::new()
            .fill(&mut k)
            .map_err(|_| SealError::Seal("no randomness for a query key".into()))?;
        Ok(Self(k))
    }

    /// Encrypt (padded, ChaCha20-Poly1305) `plaintext` bound to `aad`
    /// ([`sealed_query_aad`]): the 12-byte nonce followed by the ciphertext and its tag.
    pub fn seal(&self, aad: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, SealError> {
        let (nonce, ct) = aead_seal(&self.0, aad, plaintext)?;
        let mut out = Vec::with_capacity(12 + ct.len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ct);
        Ok(out)
    }

    /// Decrypt what [`QueryKey::seal`] made.
    pub fn open(&self, aad: &[u8], sealed: &[u8]) -> Result<Vec<u8>, SealError> {
        if sealed.len() < 12 {
            return Err(SealError::DoesNotOpen);
        }
        let (nonce, ct) = sealed.split_at(12);
        aead_open(&self.0, aad, nonce, ct)
    }
}

/// Seal a [`QueryKey`] to the recipient's `public` key for `ctx`: the box (its plaintext
/// is the 32-byte key, not padded: a fixed length shows nothing) and the [`ReplyKey`].
pub fn seal_query_key(
    suite: Suite,
    public: &[u8],
    ctx: &Context<'_>,
    key: &QueryKey,
) -> Result<(SealedBox, ReplyKey), SealError> {
    seal_raw(suite, public, ctx, &key.0)
}

/// Open a box [`seal_query_key`] made: the query key and the reply key.
pub fn open_query_key(
    key: &KeyPair,
    ctx: &Context<'_>,
    sealed: &SealedBox,
) -> Result<(QueryKey, ReplyKey), SealError> {
    let (plain, reply) = open_raw_with_reply(key, ctx, sealed)?;
    let k: [u8; 32] = plain
        .as_slice()
        .try_into()
        .map_err(|_| SealError::BadPadding)?;
    Ok((QueryKey(k), reply))
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
    .map(|(p, _)| p)
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
) -> Result<(Vec<u8>, Vec<u8>, ReplyKey), SealError> {
    let pk = K::PublicKey::from_bytes(public).map_err(|_| SealError::Malformed {
        what: "public key",
        suite,
        len: public.len(),
    })?;
    let (enc, mut ctx) =
        hpke::setup_sender::<ChaCha20Poly1305, HkdfSha256, K>(&OpModeS::Base, &pk, info)
            .map_err(|e| SealError::Seal(e.to_string()))?;
    let ct = ctx
        .seal(plaintext, aad)
        .map_err(|e| SealError::Seal(e.to_string()))?;
    let mut reply = [0u8; 32];
    ctx.export(REPLY_KEY_CONTEXT, &mut reply)
        .map_err(|e| SealError::Seal(e.to_string()))?;
    Ok((enc.to_bytes().to_vec(), ct, ReplyKey(reply)))
}

fn open_with<K: Kem>(
    suite: Suite,
    secret: &[u8],
    enc: &[u8],
    info: &[u8],
    aad: &[u8],
    ciphertext: &[u8],
) -> Result<(Vec<u8>, ReplyKey), SealError> {
    let malformed = |what, len| SealError::Malformed { what, suite, len };
    let sk =
        K::PrivateKey::from_bytes(secret).map_err(|_| malformed("secret key", secret.len()))?;
    let enc =
        K::EncappedKey::from_bytes(enc).map_err(|_| malformed("encapsulated key", enc.len()))?;
    let mut ctx =
        hpke::setup_receiver::<ChaCha20Poly1305, HkdfSha256, K>(&OpModeR::Base, &sk, &enc, info)
            .map_err(|_| SealError::DoesNotOpen)?;
    let plain = ctx
        .open(ciphertext, aad)
        .map_err(|_| SealError::DoesNotOpen)?;
    let mut reply = [0u8; 32];
    ctx.export(REPLY_KEY_CONTEXT, &mut reply)
        .map_err(|_| SealError::DoesNotOpen)?;
    Ok((plain, ReplyKey(reply)))
}

/// Check that `public` is a well-formed public key of `suite`.
pub fn check_public(suite: Suite, public: &[u8]) -> Result<(), SealError> {
    let ok = match suite {
        Suite::X25519ChaCha20 => <X25519HkdfSha256 as Kem>::PublicKey::from_bytes(public).is_ok(),
        Suite::XWingChaCha20 => <XWing as Kem>::PublicKey::from_bytes(public).is_ok(),
    };
    if ok {
        Ok(())
    } else {
        Err(SealError::Malformed {
            what: "public key",
            suite,
            len: public.len(),
        })
    }
}

#[cfg(test)]
mod tests;
