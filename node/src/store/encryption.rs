//! Encryption at rest: what a copied `node.db` or `audit.db` reveals without the node's
//! data key. Storage-neutral (the SQLite store uses it; a PostgreSQL store would too).
//!
//! One random 256-bit data key per node (kept wrapped in the keyring, see
//! [`crate::keyring`]) is expanded with HKDF-SHA-256 into keys of their own:
//!
//! - **plate index**: a read is found by its *bucket*, the first 40 bits of
//!   `HMAC(index key, day ‖ plate)`: a blind index that differs per capture day, so a stolen
//!   file does not even link one vehicle's reads across days. A bucket is the high bits of
//!   the 64-bit row key ([`row_key`]); the low [`SLOT_BITS`] tell a bucket's reads apart, so
//!   a store can keep a day's reads in one integer-keyed B-tree (small interior pages, one
//!   leaf per lookup). Different plates may share a bucket: a lookup checks the plate;
//! - **read identity**: `HMAC(identity key, day ‖ read)`, which picks the read's first slot
//!   in its bucket and a 32-bit salt. It is not stored: an exact duplicate seals to the same
//!   bytes at the same row key, which is how a store tells it apart;
//! - **read sealing**: one AES-256-GCM key per capture day (derived, never stored), so no
//!   key seals more than one day of reads. The nonce is the row key and the salt (stored in
//!   front of the ciphertext): unique, since a row key holds one read for the life of its
//!   partition and a partition made again for the same day (after a purge) gives a
//!   different read at that key a different salt but for a 2^-32 chance. The associated
//!   data binds the sealed read to its day and bucket: a row moved to another day, bucket
//!   or slot does not open. Each row is its key and `salt ‖ ciphertext ‖ tag`, nothing
//!   else, so that a day's B-tree stays small;
//! - **audit sealing**: each audit entry's text, with its sequence number and chain hash as
//!   associated data and the chain hash as its nonce. The chain hash itself stays in the
//!   clear, so a regulator without the key still checks the tree heads and proofs;
//! - **fields**: small values elsewhere (held plates, hot-list plates and notes, sealing
//!   private keys), each with a random nonce and its table and row as associated data.
//!
//! What stays visible, by design: each partition's capture day and read count, how many
//! reads share a plate within one day, audit event kinds and times, and row counts.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use alpr_proto::pb::Read;
use prost::Message;
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};
use ring::{hkdf, hmac};

use crate::Error;

/// Length of a data key.
pub const DATA_KEY_LEN: usize = 32;
/// Bits of a bucket (the blind plate index kept in a row key).
const BUCKET_BITS: u32 = 40;
/// Low bits of a row key that tell apart the reads of one bucket.
pub const SLOT_BITS: u32 = 23;
/// Mask of a row key's slot bits.
pub const SLOT_MASK: i64 = (1 << SLOT_BITS) - 1;
/// Most per-day keys kept expanded in memory.
const MAX_CACHED_DAYS: usize = 4096;

/// A node's data keys, expanded from its data key. Cheap to share behind an `Arc`.
pub struct DataKeys {
    id: String,
    index: hmac::Key,
    identity: hmac::Key,
    days: hkdf::Prk,
    day_keys: RwLock<HashMap<i64, Arc<LessSafeKey>>>,
    audit: LessSafeKey,
    fields: LessSafeKey,
    rng: SystemRandom,
}

impl std::fmt::Debug for DataKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "DataKeys({})", self.id)
    }
}

/// Where a read is stored encrypted, before it is sealed: its bucket, the slot it tries
/// first, its salt, and its encoded body.
#[derive(Clone, Debug)]
pub struct ReadSpot {
    /// The blind plate index: the row key of the bucket's first slot (slot bits zero).
    pub bucket: i64,
    /// The slot this read tries first in its bucket; a store that finds it taken by
    /// another read tries the next one ([`row_key`]).
    pub first_slot: i64,
    salt: [u8; SALT_LEN],
    body: Vec<u8>,
}

impl ReadSpot {
    /// The row key the read tries first.
    pub fn first_key(&self) -> i64 {
        row_key(self.bucket, self.first_slot)
    }
}

/// Length of a sealed read's salt.
const SALT_LEN: usize = 4;

/// The row key of `slot` in `bucket`: the bucket's bits above [`SLOT_BITS`] slot bits
/// (slots wrap around within the bucket). Always non-negative.
pub fn row_key(bucket: i64, slot: i64) -> i64 {
    (bucket & !SLOT_MASK) | (slot & SLOT_MASK)
}

/// The row keys of `bucket`, first to last: a lookup's range.
pub fn bucket_keys(bucket: i64) -> std::ops::RangeInclusive<i64> {
    row_key(bucket, 0)..=row_key(bucket, SLOT_MASK)
}

/// A read's body as sealed: `0x01`, then the plate, its state and the camera id each as
/// one length byte and UTF-8, the capture time as 3 bytes of seconds into its day
/// (big-endian), and latitude and longitude as 8-byte IEEE doubles — 47 bytes for a typical
/// read where protobuf takes 54, which keeps a day's B-tree smaller. A read that does not
/// fit (a text over 255 bytes, a time outside `day`) is `0x00` and its protobuf encoding.
fn encode_body(day: i64, r: &Read) -> Vec<u8> {
    let secs = r.captured_at - day * 86_400;
    let fits = (0..86_400).contains(&secs)
        && [&r.plate, &r.plate_state, &r.camera_id]
            .iter()
            .all(|t| t.len() <= usize::from(u8::MAX));
    if !fits {
        let mut out = vec![0u8];
        out.extend_from_slice(&r.encode_to_vec());
        return out;
    }
    let mut out =
        Vec::with_capacity(4 + r.plate.len() + r.plate_state.len() + r.camera_id.len() + 19);
    out.push(1);
    for t in [&r.plate, &r.plate_state] {
        out.push(t.len() as u8);
        out.extend_from_slice(t.as_bytes());
    }
    out.extend_from_slice(&(secs as u32).to_be_bytes()[1..]);
    out.push(r.camera_id.len() as u8);
    out.extend_from_slice(r.camera_id.as_bytes());
    out.extend_from_slice(&r.latitude.to_be_bytes());
    out.extend_from_slice(&r.longitude.to_be_bytes());
    out
}

/// The read of a body written by [`encode_body`]; `None` if it is malformed.
fn decode_body(day: i64, b: &[u8]) -> Option<Read> {
    match b.split_first()? {
        (0, rest) => Read::decode(rest).ok(),
        (1, mut rest) => {
            let mut text = || -> Option<String> {
                let (&n, tail) = rest.split_first()?;
                let (t, tail) = tail.split_at_checked(usize::from(n))?;
                rest = tail;
                String::from_utf8(t.to_vec()).ok()
            };
            let plate = text()?;
            let plate_state = text()?;
            let (t, tail) = rest.split_at_checked(3)?;
            rest = tail;
            let secs = u32::from_be_bytes([0, t[0], t[1], t[2]]);
            let camera_id = {
                let (&n, tail) = rest.split_first()?;
                let (c, tail) = tail.split_at_checked(usize::from(n))?;
                rest = tail;
                String::from_utf8(c.to_vec()).ok()?
            };
            let (lat, lon) = rest.split_at_checked(8)?;
            Some(Read {
                plate,
                plate_state,
                captured_at: day * 86_400 + i64::from(secs),
                camera_id,
                latitude: f64::from_be_bytes(lat.try_into().ok()?),
                longitude: f64::from_be_bytes(lon.try_into().ok()?),
            })
        }
        _ => None,
    }
}

struct Len(usize);

impl hkdf::KeyType for Len {
    fn len(&self) -> usize {
        self.0
    }
}

fn expand(prk: &hkdf::Prk, label: &[u8], out: &mut [u8]) {
    // `expand` fails only for outputs longer than 255 hash lengths; ours are 32 bytes.
    if let Ok(okm) = prk.expand(&[label], Len(out.len())) {
        let _ = okm.fill(out);
    }
}

fn aead_key(bytes: &[u8; 32]) -> LessSafeKey {
    // AES-256-GCM takes any 32-byte key.
    LessSafeKey::new(UnboundKey::new(&AES_256_GCM, bytes).unwrap_or_else(|_| unreachable!()))
}

fn damaged(what: impl Into<String>) -> Error {
    Error::Corrupt {
        what: what.into(),
        detail: "it does not open with this node's data key (altered, moved, or sealed under another key)".into(),
    }
}

impl DataKeys {
    /// Expand a data key.
    pub fn new(data_key: &[u8; DATA_KEY_LEN]) -> Self {
        let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, b"alpr.data-key.v1").extract(data_key);
        let mut k = [0u8; 32];
        let mut id = [0u8; 8];
        expand(&prk, b"alpr.key-id", &mut id);
        expand(&prk, b"alpr.reads.index", &mut k);
        let index = hmac::Key::new(hmac::HMAC_SHA256, &k);
        expand(&prk, b"alpr.reads.identity", &mut k);
        let identity = hmac::Key::new(hmac::HMAC_SHA256, &k);
        expand(&prk, b"alpr.reads.days", &mut k);
        let days = hkdf::Prk::new_less_safe(hkdf::HKDF_SHA256, &k);
        expand(&prk, b"alpr.audit", &mut k);
        let audit = aead_key(&k);
        expand(&prk, b"alpr.fields", &mut k);
        let fields = aead_key(&k);
        k.fill(0);
        Self {
            id: hex::encode(id),
            index,
            identity,
            days,
            day_keys: RwLock::default(),
            audit,
            fields,
            rng: SystemRandom::new(),
        }
    }

    /// The data key's public fingerprint, recorded in each database it encrypts, so a
    /// database opened with another key is refused at once rather than row by row.
    pub fn key_id(&self) -> &str {
        &self.id
    }

    /// The bucket (blind index) of `plate` on capture day `day` (a UTC day number): a row
    /// key with its slot bits zero.
    pub fn plate_bucket(&self, day: i64, plate: &str) -> i64 {
        let mut cx = hmac::Context::with_key(&self.index);
        cx.update(&day.to_be_bytes());
        cx.update(plate.as_bytes());
        let tag = cx.sign();
        let mut b = [0u8; 8];
        b[3..].copy_from_slice(&tag.as_ref()[..(BUCKET_BITS / 8) as usize]);
        (u64::from_be_bytes(b) as i64) << SLOT_BITS
    }

    fn day_key(&self, day: i64) -> Arc<LessSafeKey> {
        if let Some(k) = self
            .day_keys
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&day)
        {
            return k.clone();
        }
        let mut bytes = [0u8; 32];
        let mut label = *b"alpr.reads.day.\0\0\0\0\0\0\0\0";
        label[15..].copy_from_slice(&day.to_be_bytes());
        expand(&self.days, &label, &mut bytes);
        let key = Arc::new(aead_key(&bytes));
        bytes.fill(0);
        let mut cache = self.day_keys.write().unwrap_or_else(|p| p.into_inner());
        if cache.len() >= MAX_CACHED_DAYS {
            cache.clear();
        }
        cache.insert(day, key.clone());
        key
    }

    fn read_aad(day: i64, key: i64) -> Vec<u8> {
        let mut aad = Vec::with_capacity(12 + 8 + 8);
        aad.extend_from_slice(b"alpr.read.v3");
        aad.extend_from_slice(&day.to_be_bytes());
        aad.extend_from_slice(&(key & !SLOT_MASK).to_be_bytes());
        aad
    }

    fn read_nonce(key: i64, salt: &[u8]) -> Option<Nonce> {
        let mut n = [0u8; NONCE_LEN];
        n[..8].copy_from_slice(&key.to_be_bytes());
        n[8..].copy_from_slice(salt.get(..SALT_LEN)?);
        Some(Nonce::assume_unique_for_key(n))
    }

    /// Where a read captured on `day` is stored: bucket, first slot and salt.
    pub fn read_spot(&self, day: i64, read: &Read) -> ReadSpot {
        let body = encode_body(day, read);
        let mut cx = hmac::Context::with_key(&self.identity);
        cx.update(&day.to_be_bytes());
        cx.update(&body);
        let id = cx.sign();
        let id = id.as_ref();
        let mut salt = [0u8; SALT_LEN];
        salt.copy_from_slice(&id[..SALT_LEN]);
        ReadSpot {
            bucket: self.plate_bucket(day, &read.plate),
            first_slot: i64::from(u32::from_be_bytes([0, id[4], id[5], id[6]])) & SLOT_MASK,
            salt,
            body,
        }
    }

    /// Seal a read for row key `key` of its bucket: `salt ‖ ciphertext ‖ tag`. The same read
    /// at the same key always seals to the same bytes.
    pub fn seal_read_at(&self, day: i64, spot: &ReadSpot, key: i64) -> Vec<u8> {
        let mut out = spot.salt.to_vec();
        let mut body = spot.body.clone();
        if let Some(nonce) = Self::read_nonce(key, &spot.salt) {
            // Sealing in place fails only past GCM's 64 GiB message limit.
            let _ = self.day_key(day).seal_in_place_append_tag(
                nonce,
                Aad::from(Self::read_aad(day, key)),
                &mut body,
            );
        }
        out.extend_from_slice(&body);
        out
    }

    /// Open a read stored for `day` at row key `key`; `table` names it in errors.
    pub fn open_read(
        &self,
        table: &str,
        day: i64,
        key: i64,
        sealed: Vec<u8>,
    ) -> Result<Read, Error> {
        let nonce =
            Self::read_nonce(key, &sealed).ok_or_else(|| damaged(format!("read in {table}")))?;
        let mut body = sealed[SALT_LEN..].to_vec();
        let body = self
            .day_key(day)
            .open_in_place(nonce, Aad::from(Self::read_aad(day, key)), &mut body)
            .map_err(|_| damaged(format!("read in {table}")))?;
        decode_body(day, body).ok_or_else(|| Error::Corrupt {
            what: format!("read in {table}"),
            detail: "its body does not decode".into(),
        })
    }

    /// Open a read stored by schema version 2 (a `(tag, id, sealed)` row: 128-bit blind
    /// index and identity, version-1 associated data), to move it to the current layout.
    pub fn open_read_v2_layout(
        &self,
        table: &str,
        day: i64,
        tag: &[u8],
        id: &[u8],
        mut sealed: Vec<u8>,
    ) -> Result<Read, Error> {
        let nonce = id
            .get(..NONCE_LEN)
            .filter(|_| id.len() == LEGACY_TAG_LEN && tag.len() == LEGACY_TAG_LEN)
            .and_then(|n| Nonce::try_assume_unique_for_key(n).ok())
            .ok_or_else(|| damaged(format!("read in {table}")))?;
        let mut aad = Vec::with_capacity(12 + 8 + 2 * LEGACY_TAG_LEN);
        aad.extend_from_slice(b"alpr.read.v1");
        aad.extend_from_slice(&day.to_be_bytes());
        aad.extend_from_slice(tag);
        aad.extend_from_slice(id);
        let body = self
            .day_key(day)
            .open_in_place(nonce, Aad::from(aad), &mut sealed)
            .map_err(|_| damaged(format!("read in {table}")))?;
        Read::decode(&*body).map_err(|e| Error::corrupt(format!("read in {table}"), e))
    }

    /// Seal a read in the schema-version-2 layout (tests of the migration only).
    #[cfg(test)]
    pub fn seal_read_v2_layout(&self, day: i64, read: &Read) -> ([u8; 16], [u8; 16], Vec<u8>) {
        let mut body = read.encode_to_vec();
        let mut cx = hmac::Context::with_key(&self.index);
        cx.update(&day.to_be_bytes());
        cx.update(read.plate.as_bytes());
        let mut tag = [0u8; 16];
        tag.copy_from_slice(&cx.sign().as_ref()[..16]);
        let mut cx = hmac::Context::with_key(&self.identity);
        cx.update(&day.to_be_bytes());
        cx.update(&body);
        let mut id = [0u8; 16];
        id.copy_from_slice(&cx.sign().as_ref()[..16]);
        let mut aad = b"alpr.read.v1".to_vec();
        aad.extend_from_slice(&day.to_be_bytes());
        aad.extend_from_slice(&tag);
        aad.extend_from_slice(&id);
        let mut n = [0u8; NONCE_LEN];
        n.copy_from_slice(&id[..NONCE_LEN]);
        let _ = self.day_key(day).seal_in_place_append_tag(
            Nonce::assume_unique_for_key(n),
            Aad::from(aad),
            &mut body,
        );
        (tag, id, body)
    }

    fn audit_aad(seq: i64, chain: &[u8]) -> Vec<u8> {
        let mut aad = Vec::with_capacity(13 + 8 + chain.len());
        aad.extend_from_slice(b"alpr.audit.v1");
        aad.extend_from_slice(&seq.to_be_bytes());
        aad.extend_from_slice(chain);
        aad
    }

    /// Seal audit entry `seq`'s text; `chain` is its chain hash (hex, as stored).
    pub fn seal_audit(&self, seq: i64, chain: &str, text: &str) -> Result<Vec<u8>, Error> {
        let chain = hex::decode(chain).map_err(|e| Error::corrupt("audit chain hash", e))?;
        let nonce = chain
            .get(..NONCE_LEN)
            .and_then(|n| Nonce::try_assume_unique_for_key(n).ok())
            .ok_or_else(|| Error::corrupt("audit chain hash", "too short"))?;
        let mut body = text.as_bytes().to_vec();
        let _ = self.audit.seal_in_place_append_tag(
            nonce,
            Aad::from(Self::audit_aad(seq, &chain)),
            &mut body,
        );
        Ok(body)
    }

    /// Open audit entry `seq`'s sealed text.
    pub fn open_audit(&self, seq: i64, chain: &str, mut sealed: Vec<u8>) -> Result<String, Error> {
        let what = || format!("audit entry {seq}");
        let chain = hex::decode(chain).map_err(|e| Error::corrupt(what(), e))?;
        let nonce = chain
            .get(..NONCE_LEN)
            .and_then(|n| Nonce::try_assume_unique_for_key(n).ok())
            .ok_or_else(|| Error::corrupt(what(), "chain hash too short"))?;
        let body = self
            .audit
            .open_in_place(nonce, Aad::from(Self::audit_aad(seq, &chain)), &mut sealed)
            .map_err(|_| damaged(what()))?;
        String::from_utf8(body.to_vec()).map_err(|e| Error::corrupt(what(), e))
    }

    fn field_aad(place: &str, row: &[u8]) -> Vec<u8> {
        let mut aad = Vec::with_capacity(14 + place.len() + row.len());
        aad.extend_from_slice(b"alpr.field.v1\0");
        aad.extend_from_slice(place.as_bytes());
        aad.push(0);
        aad.extend_from_slice(row);
        aad
    }

    /// Seal a small value kept at `place` (table and column) for `row`: a random nonce
    /// followed by the ciphertext.
    pub fn seal_field(&self, place: &str, row: &[u8], value: &[u8]) -> Result<Vec<u8>, Error> {
        let mut nonce = [0u8; NONCE_LEN];
        self.rng
            .fill(&mut nonce)
            .map_err(|_| Error::Keys("the system random generator failed".into()))?;
        let mut out = nonce.to_vec();
        let mut body = value.to_vec();
        let _ = self.fields.seal_in_place_append_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(Self::field_aad(place, row)),
            &mut body,
        );
        out.extend_from_slice(&body);
        Ok(out)
    }

    /// Open a value sealed by [`DataKeys::seal_field`].
    pub fn open_field(&self, place: &str, row: &[u8], sealed: &[u8]) -> Result<Vec<u8>, Error> {
        let (nonce, body) = sealed
            .split_at_checked(NONCE_LEN)
            .ok_or_else(|| damaged(place.to_string()))?;
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| damaged(place))?;
        let mut body = body.to_vec();
        let plain = self
            .fields
            .open_in_place(nonce, Aad::from(Self::field_aad(place, row)), &mut body)
            .map_err(|_| damaged(place))?;
        Ok(plain.to_vec())
    }

    /// [`DataKeys::open_field`] for text.
    pub fn open_text(&self, place: &str, row: &[u8], sealed: &[u8]) -> Result<String, Error> {
        String::from_utf8(self.open_field(place, row, sealed)?)
            .map_err(|e| Error::corrupt(place, e))
    }
}

/// Length of the blind index and identity in schema version 2's layout.
const LEGACY_TAG_LEN: usize = 16;

#[cfg(test)]
mod tests {
    use super::*;

    fn read(plate: &str, at: i64) -> Read {
        Read {
            plate: plate.into(),
            captured_at: at,
            camera_id: "cam-1".into(),
            latitude: 34.1,
            longitude: -118.2,
            plate_state: "CA".into(),
        }
    }

    #[test]
    fn reads_round_trip_and_refuse_being_moved_or_altered() {
        let keys = DataKeys::new(&[7; 32]);
        let r = read("8ABC123", 20_000 * 86_400 + 5);
        let spot = keys.read_spot(20_000, &r);
        let at = spot.first_key();
        assert!(bucket_keys(spot.bucket).contains(&at) && at >= 0);
        let sealed = keys.seal_read_at(20_000, &spot, at);
        assert!(!sealed.windows(7).any(|w| w == b"8ABC123"));
        let open =
            |day, key: i64, sealed: &Vec<u8>| keys.open_read("reads_t", day, key, sealed.clone());
        assert_eq!(open(20_000, at, &sealed).unwrap(), r);
        // The same read at the same key seals to the same bytes (the store keeps it once);
        // at another key, or another read, to other bytes.
        let again = keys.read_spot(20_000, &r);
        assert_eq!(keys.seal_read_at(20_000, &again, at), sealed);
        let next = row_key(spot.bucket, spot.first_slot + 1);
        assert_ne!(keys.seal_read_at(20_000, &spot, next), sealed);
        let other = keys.read_spot(20_000, &read("8ABC123", 20_000 * 86_400 + 6));
        assert_eq!(other.bucket, spot.bucket);
        assert_ne!(other.first_slot, spot.first_slot);
        // The blind index differs per day and per plate.
        assert_ne!(keys.plate_bucket(20_001, "8ABC123"), spot.bucket);
        assert_ne!(keys.plate_bucket(20_000, "8ABC124"), spot.bucket);
        // Moved to another day, bucket or slot, cut short, or altered: refused.
        assert!(open(20_001, at, &sealed).is_err());
        assert!(open(20_000, at ^ (1 << SLOT_BITS), &sealed).is_err());
        assert!(open(20_000, next, &sealed).is_err());
        assert!(open(20_000, at, &sealed[..3].to_vec()).is_err());
        let mut bent = sealed.clone();
        bent[6] ^= 1;
        let e = open(20_000, at, &bent).unwrap_err().to_string();
        assert!(e.contains("reads_t") && e.contains("does not open"), "{e}");
        let mut salted = sealed.clone();
        salted[0] ^= 1;
        assert!(
            open(20_000, at, &salted).is_err(),
            "the salt is part of the nonce"
        );
        // Another data key opens nothing.
        let stranger = DataKeys::new(&[8; 32]);
        assert_ne!(stranger.key_id(), keys.key_id());
        assert!(
            stranger
                .open_read("reads_t", 20_000, at, sealed.clone())
                .is_err()
        );
        // A row of the version-2 layout opens with the legacy reader only.
        let (tag, id, sealed) = keys.seal_read_v2_layout(20_000, &r);
        assert_eq!(
            keys.open_read_v2_layout("reads_t", 20_000, &tag, &id, sealed.clone())
                .unwrap(),
            r
        );
        assert!(
            keys.open_read_v2_layout("reads_t", 20_001, &tag, &id, sealed)
                .is_err()
        );
    }

    #[test]
    fn read_bodies_are_compact_and_round_trip_and_odd_reads_fall_back_to_protobuf() {
        let day = 20_000;
        let r = Read {
            camera_id: "CA05601-CAM-017".into(),
            ..read("8ABC123", day * 86_400 + 86_399)
        };
        let b = encode_body(day, &r);
        assert_eq!(b[0], 1);
        assert!(b.len() < r.encode_to_vec().len(), "{} bytes", b.len());
        assert_eq!(decode_body(day, &b), Some(r.clone()));
        // A time outside the day, or a long text: protobuf, still exact.
        for odd in [
            Read {
                captured_at: day * 86_400 - 1,
                ..r.clone()
            },
            Read {
                camera_id: "C".repeat(300),
                ..r.clone()
            },
        ] {
            let b = encode_body(day, &odd);
            assert_eq!(b[0], 0);
            assert_eq!(decode_body(day, &b), Some(odd));
        }
        // Truncated or unknown bodies are refused, never misread.
        for n in 0..b.len() {
            assert!(decode_body(day, &b[..n]).is_none(), "cut at {n}");
        }
        assert!(decode_body(day, &[9, 1, 2]).is_none());
    }

    #[test]
    fn audit_text_and_fields_are_bound_to_their_place() {
        let keys = DataKeys::new(&[9; 32]);
        let chain = "ab".repeat(32);
        let sealed = keys
            .seal_audit(5, &chain, "{\"plate\":\"8ABC123\"}")
            .unwrap();
        assert_eq!(
            keys.open_audit(5, &chain, sealed.clone()).unwrap(),
            "{\"plate\":\"8ABC123\"}"
        );
        assert!(keys.open_audit(6, &chain, sealed.clone()).is_err());
        assert!(keys.open_audit(5, &"cd".repeat(32), sealed).is_err());
        let f = keys.seal_field("holds.plate", b"1", b"8ABC123").unwrap();
        let g = keys.seal_field("holds.plate", b"1", b"8ABC123").unwrap();
        assert_ne!(f, g, "random nonces");
        assert_eq!(keys.open_text("holds.plate", b"1", &f).unwrap(), "8ABC123");
        assert!(keys.open_field("holds.plate", b"2", &f).is_err());
        assert!(keys.open_field("hotlist_entries.plate", b"1", &f).is_err());
        assert!(keys.open_field("holds.plate", b"1", &f[..5]).is_err());
    }
}
