//! Sealing: this node's HPKE key pairs, the published keys of every other node, and the
//! boxes made and opened with them (DESIGN §5, "Sealed queries and answers").
//!
//! * **Own keys.** The node creates its first key pair when it first opens its database
//!   (suite from `[sealing] suite`), keeps it in `node.db`, and publishes the public key to
//!   the registry log signed with its node certificate (the daemon does so after each
//!   registry sync while its current key is not in its own verified view;
//!   `alpr-node seal-key publish` at once). `alpr-node seal-key rotate` makes a new
//!   current key; the old one still opens boxes for `[sealing] grace_secs`, then it is
//!   deleted, so recorded traffic sealed to it can no longer be opened by anyone.
//! * **Others' keys.** Taken only from this node's own verified copy of the registry
//!   (the broker cannot name a key without forking the log, which the node detects), the
//!   newest publication per agency, and never one whose signing certificate is revoked or
//!   expired now: such a target is refused locally (`SEAL_KEY_UNKNOWN`).

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use alpr_proto::RefusalReason;
use alpr_proto::pb::{SealingKey, Signed};
use alpr_proto::registry::{self, PublishedKey};
use alpr_proto::seal::{self, KeyPair, QueryKey, ReplyKey, Suite};
use prost::Message;

use crate::audit::{AuditEntry, Decision, Event};
use crate::node::Node;
use crate::store::sealing::{self as db, OwnKey};
use crate::{Error, store};

/// One of this node's key pairs in memory.
#[derive(Clone, Debug)]
pub struct Held {
    /// The pair.
    pub pair: KeyPair,
    /// When a newer key replaced it.
    pub retired_at: Option<i64>,
}

/// The node's sealing keys in memory.
#[derive(Default)]
pub struct Keys {
    own: RwLock<Arc<Vec<Held>>>,
    published: RwLock<Arc<HashMap<String, PublishedKey>>>,
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Keys(..)")
    }
}

fn seal_error(reason: RefusalReason, detail: impl Into<String>) -> alpr_proto::Error {
    alpr_proto::Error::refused(reason, detail)
}

fn chain_of(signed: &Signed) -> Vec<alpr_pki::CertificateDer<'static>> {
    signed
        .cert_chain
        .iter()
        .map(|c| alpr_pki::CertificateDer::from(c.clone()))
        .collect()
}

fn held_of(k: &OwnKey) -> Result<Held, Error> {
    let suite = Suite::from_id(k.suite).map_err(|e| Error::corrupt("own sealing key", e))?;
    let pair =
        KeyPair::from_secret(suite, &k.secret).map_err(|e| Error::corrupt("own sealing key", e))?;
    Ok(Held {
        pair,
        retired_at: k.retired_at,
    })
}

impl Node {
    /// Create this node's first sealing key if it has none (logged).
    pub(crate) fn ensure_sealing_key(&self) -> Result<(), Error> {
        if !db::own_keys(&self.db())?.is_empty() {
            return self.load_sealing();
        }
        self.new_sealing_key("first sealing key").map(|_| ())
    }

    /// Make a new current key; the previous one still opens boxes for the grace period.
    /// Returns the new key's id, hex.
    pub fn rotate_sealing_key(&self) -> Result<String, Error> {
        self.new_sealing_key("rotation: the previous key opens boxes until its grace period ends")
    }

    fn new_sealing_key(&self, why: &str) -> Result<String, Error> {
        let suite = self.cfg.sealing.suite().map_err(Error::Usage)?;
        let pair = KeyPair::generate(suite);
        let now = alpr_pki::now_unix();
        let id = hex::encode(pair.key_id());
        db::add_own_key(
            &self.db(),
            &OwnKey {
                key_id: pair.key_id().to_vec(),
                suite: suite.id(),
                secret: pair.secret_bytes().to_vec(),
                public: pair.public.clone(),
                created_at: now,
                retired_at: None,
                published_index: None,
                published_cert: None,
            },
            now,
        )?;
        self.load_sealing()?;
        self.audit(&[AuditEntry {
            detail: Some(format!("sealing key {id} ({suite:?}): {why}")),
            ..AuditEntry::new(now, Event::SealingKey, Decision::Created)
        }])?;
        Ok(id)
    }

    /// Read own and published keys from the database into memory.
    pub(crate) fn load_sealing(&self) -> Result<(), Error> {
        let conn = self.db();
        let own = db::own_keys(&conn)?
            .iter()
            .map(held_of)
            .collect::<Result<Vec<_>, _>>()?;
        let mut published = HashMap::new();
        for p in db::newest_published(&conn)? {
            let signed = Signed::decode(p.signed.as_slice())
                .map_err(|e| Error::corrupt("published sealing key", e))?;
            // Verified when applied from the registry; re-checked (certificate validity)
            // each time a box is sealed to it.
            if let Ok(k) =
                registry::verify_sealing_key(&self.trust(), &signed, p.index, p.published_at)
            {
                published.insert(p.ori, k);
            }
        }
        drop(conn);
        *self.sealing.own.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(own);
        *self
            .sealing
            .published
            .write()
            .unwrap_or_else(|p| p.into_inner()) = Arc::new(published);
        Ok(())
    }

    /// This node's keys, newest first.
    pub fn own_sealing_keys(&self) -> Arc<Vec<Held>> {
        self.sealing
            .own
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The newest published key of `ori` in this node's verified registry copy.
    pub fn published_key(&self, ori: &str) -> Option<PublishedKey> {
        self.sealing
            .published
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(ori)
            .cloned()
    }

    /// Whether this node must publish its current key: it never did, did under a node
    /// certificate other than the one it runs with now (renewed, or revoked and replaced),
    /// or did while it ran another version of this system.
    /// Judged from this node's own record, not from its registry view, which cannot
    /// advance while it waits for a regulator's cosignature.
    pub fn needs_publication(&self) -> Result<bool, Error> {
        let own = db::own_keys(&self.db())?;
        let Some(current) = own.first() else {
            return Ok(false);
        };
        if current.published_cert.as_deref() != Some(self.cert_fingerprint().as_str()) {
            return Ok(true);
        }
        // Published by an older version of this system (or before keys named it): the
        // registry's record of what this node runs is stale.
        Ok(self.published_key(self.ori()).is_some_and(|k| {
            k.key_id[..] == current.key_id[..]
                && k.product_version != alpr_proto::rules::SYSTEM_VERSION
        }))
    }

    /// SHA-256 (hex) of this node's certificate.
    fn cert_fingerprint(&self) -> String {
        let leaf = self
            .signer
            .chain()
            .first()
            .map(|c| c.to_vec())
            .unwrap_or_default();
        hex::encode(ring::digest::digest(&ring::digest::SHA256, &leaf))
    }

    /// Where this node's current key was last published (registry index), if it was.
    pub fn published_index(&self) -> Result<Option<u64>, Error> {
        Ok(db::own_keys(&self.db())?
            .first()
            .and_then(|k| k.published_index))
    }

    /// Sign this node's current key and append it to the registry through the broker;
    /// returns the leaf index. (It counts once this node's next sync has verified it.)
    pub async fn publish_sealing_key(&self) -> Result<u64, Error> {
        let (mut broker, _) = self.broker.clone().ok_or(Error::NoBroker)?;
        let own = self.own_sealing_keys();
        let current = own
            .first()
            .ok_or_else(|| Error::Usage("this node has no sealing key".into()))?;
        let now = alpr_pki::now_unix();
        let key = SealingKey {
            ori: self.ori().to_owned(),
            suite: current.pair.suite.id(),
            public_key: current.pair.public.clone(),
            published_at: now,
            product: alpr_proto::rules::SYSTEM_PRODUCT.into(),
            product_version: alpr_proto::rules::SYSTEM_VERSION.into(),
        };
        let signed = alpr_proto::envelope::seal(&self.signer, registry::SEALING_KEY, &key)?;
        let index = broker.publish_sealing_key(signed).await?.into_inner().index;
        db::set_published(
            &self.db(),
            &current.pair.key_id(),
            index,
            &self.cert_fingerprint(),
        )?;
        self.audit(&[AuditEntry {
            detail: Some(format!(
                "sealing key {} published as registry entry {index}",
                hex::encode(current.pair.key_id())
            )),
            ..AuditEntry::new(now, Event::SealingKey, Decision::Published)
        }])?;
        Ok(index)
    }

    /// Delete own keys retired longer ago than the grace period (logged when any).
    pub fn drop_expired_sealing_keys(&self, now: i64) -> Result<usize, Error> {
        let cutoff = now - self.cfg.sealing.grace_secs as i64;
        let n = db::drop_retired_before(&self.db(), cutoff)?;
        if n > 0 {
            self.load_sealing()?;
            self.audit(&[AuditEntry {
                count: Some(n as u64),
                detail: Some(format!(
                    "{n} retired sealing key(s) deleted after the {} s grace period: boxes sealed to them no longer open",
                    self.cfg.sealing.grace_secs
                )),
                ..AuditEntry::new(now, Event::SealingKey, Decision::Deleted)
            }])?;
        }
        Ok(n)
    }

    /// Record a verified sealing-key publication from registry leaf `index`.
    pub(crate) fn apply_sealing_key(
        &self,
        conn: &store::Db,
        index: u64,
        ev: &alpr_proto::pb::RegistryEvent,
    ) -> Result<String, Error> {
        let signed = ev
            .sealing_key
            .as_ref()
            .ok_or_else(|| Error::Usage("sealing-key event without its key".into()))?;
        let k = registry::verify_sealing_key(&self.trust(), signed, index, ev.logged_at)?;
        if ev.provider_ori != k.ori {
            return Err(Error::Usage(
                "the event's ORI differs from the signed key's".into(),
            ));
        }
        db::put_published(
            conn,
            index,
            &k.ori,
            &k.key_id,
            &signed.encode_to_vec(),
            k.published_at,
        )?;
        Ok(format!(
            "sealing key {} of {} published",
            hex::encode(k.key_id),
            k.ori
        ))
    }

    /// Seal a sealed query's `key` to `target`'s published key: its box and reply key.
    pub(crate) fn seal_for(
        &self,
        target: &str,
        query: &alpr_proto::pb::Query,
        key: &QueryKey,
        now: i64,
    ) -> Result<(alpr_proto::pb::SealedBox, ReplyKey), alpr_proto::Error> {
        let requester = alpr_proto::admission::requester_label(query);
        let ctx = alpr_proto::admission::box_context(query, target, &requester);
        let k = self.usable_key(target, now)?;
        let (sealed, reply) = seal::seal_query_key(k.suite, &k.public, &ctx, key)
            .map_err(|e| seal_error(RefusalReason::SealKeyUnknown, e.to_string()))?;
        Ok((sealed.to_wire(target), reply))
    }

    /// Seal `plaintext` for `ctx` to `target`'s newest sealing key in this node's verified
    /// registry view (refused when it has none, or its publishing certificate is no longer
    /// valid).
    pub(crate) fn seal_to(
        &self,
        target: &str,
        ctx: &seal::Context<'_>,
        plaintext: &[u8],
        now: i64,
    ) -> Result<(seal::SealedBox, ReplyKey), alpr_proto::Error> {
        let k = self.usable_key(target, now)?;
        seal::seal_with_reply(k.suite, &k.public, ctx, plaintext)
            .map_err(|e| seal_error(RefusalReason::SealKeyUnknown, e.to_string()))
    }

    /// `target`'s newest sealing key in this node's verified registry view, refused
    /// (`SEAL_KEY_UNKNOWN`) when it has none or its publishing certificate is no longer
    /// valid at `now`.
    fn usable_key(&self, target: &str, now: i64) -> Result<PublishedKey, alpr_proto::Error> {
        let Some(k) = self.published_key(target) else {
            return Err(seal_error(
                RefusalReason::SealKeyUnknown,
                format!(
                    "{target} has published no sealing key in this node's registry view; nothing was sent to it"
                ),
            ));
        };
        if let Err(e) = self.trust().verify(&chain_of(&k.signed), now) {
            return Err(seal_error(
                RefusalReason::SealKeyUnknown,
                format!(
                    "{target}'s sealing key {} was published under a certificate no longer valid ({e}); nothing was sent to it",
                    hex::encode(k.key_id)
                ),
            ));
        }
        Ok(k)
    }

    /// Open `wire`, a box sealed to one of this node's own sealing keys for `ctx`.
    pub(crate) fn open_own(
        &self,
        wire: &alpr_proto::pb::SealedBox,
        ctx: &seal::Context<'_>,
        now: i64,
    ) -> Result<(Vec<u8>, ReplyKey), alpr_proto::Error> {
        let (held, sealed) = self.own_key_for(wire, now)?;
        seal::open_with_reply(&held.pair, ctx, &sealed)
            .map_err(|e| seal_error(RefusalReason::SealInvalid, e.to_string()))
    }

    /// The box `wire` decoded, and the own key it names (refused when this node does not
    /// hold it, or holds it retired past its grace period).
    fn own_key_for(
        &self,
        wire: &alpr_proto::pb::SealedBox,
        now: i64,
    ) -> Result<(Held, seal::SealedBox), alpr_proto::Error> {
        let me = self.ori();
        let sealed = seal::SealedBox::from_wire(wire)
            .map_err(|e| seal_error(RefusalReason::SealInvalid, format!("malformed box: {e}")))?;
        let find = |keys: &[Held]| {
            keys.iter()
                .find(|h| h.pair.key_id() == sealed.key_id)
                .cloned()
        };
        // A key created by `seal-key rotate` while the daemon runs is read on first use.
        let held = match find(&self.own_sealing_keys()) {
            Some(h) => Some(h),
            None => {
                if let Err(e) = self.load_sealing() {
                    tracing::warn!(error = %e, "could not reload sealing keys");
                }
                find(&self.own_sealing_keys())
            }
        };
        let grace = self.cfg.sealing.grace_secs as i64;
        let Some(held) = held.filter(|h| h.retired_at.is_none_or(|r| now - r <= grace)) else {
            return Err(seal_error(
                RefusalReason::SealKeyUnknown,
                format!(
                    "the box names sealing key {}, which {me} does not hold (never its own, or rotated out past its grace period)",
                    hex::encode(sealed.key_id)
                ),
            ));
        };
        Ok((held, sealed))
    }

    /// Open this node's box of a sealed query and, with the query key inside, the query's
    /// one ciphertext: the investigator's signed query (encoded) and the reply key.
    pub(crate) fn open_box(
        &self,
        opened: &alpr_proto::admission::OpenedQuery,
        now: i64,
    ) -> Result<(Vec<u8>, ReplyKey), alpr_proto::Error> {
        let me = self.ori();
        let Some(wire) = opened.box_for(me) else {
            return Err(seal_error(
                RefusalReason::SealRequired,
                format!("the sealed query holds no box (or more than one) for {me}"),
            ));
        };
        let Some(query) = opened.facts().query.as_ref() else {
            return Err(seal_error(RefusalReason::InvalidInput, "query not decoded"));
        };
        let requester = alpr_proto::admission::requester_label(query);
        let ctx = alpr_proto::admission::box_context(query, me, &requester);
        let (held, sealed) = self.own_key_for(wire, now)?;
        let (key, reply) = seal::open_query_key(&held.pair, &ctx, &sealed)
            .map_err(|e| seal_error(RefusalReason::SealInvalid, e.to_string()))?;
        let aad = seal::sealed_query_aad(&query.query_id, &requester);
        let plaintext = key.open(&aad, &opened.facts().sealed_query).map_err(|e| {
            seal_error(
                RefusalReason::SealInvalid,
                format!("the sealed query does not open with the key in {me}'s box: {e}"),
            )
        })?;
        Ok((plaintext, reply))
    }
}
