//! Anchoring nodes' audit logs: the broker accepts a node's signed audit tree head only if
//! it extends the head anchored before for that agency (an RFC 6962 consistency proof),
//! keeps it, and returns its signed receipt. A head that does not extend it (a rewritten
//! log, a shorter one, a second log shown to someone else) is refused as `AUDIT_FORK`,
//! logged, and kept beside the anchored one as evidence.
//!
//! Accepted anchors are the record of themselves (`audit_anchors`); refusals also go to
//! the routing log, like every refused request.
//!
//! The broker's own routing log is anchored the same way, with the regulators as its
//! witnesses: it is an RFC 6962 tree too, the broker signs heads of it on request
//! ([`Broker::routing_head`], with a consistency proof from the size the caller saw
//! last), and a regulator that checked a head extends the one it cosigned before cosigns
//! it ([`Broker::cosign_routing`], `alpr-broker registry cosign-routing`). A broker that
//! rewrites its routing log, even re-signing every head, cannot show it to that regulator.

use alpr_pki::{Role, VerifiedIdentity};
use alpr_proto::auditlog::{
    self, ANCHOR_RECEIPT, AUDIT_COSIGNATURE, ROUTING_COSIGNATURE, ROUTING_TREE_HEAD,
};
use alpr_proto::merkle;
use alpr_proto::pb::{
    AnchorLink, AnchorReceipt, AnchorRequest, AuditAnchor, Cosignature, RoutingHead,
    RoutingTreeHead, Signed,
};
use alpr_proto::{Error as ProtoError, RefusalReason};
use prost::Message;

use crate::store::{self, LogEntry};
use crate::vocabulary::{Decision, Event};
use crate::{Broker, Error};

impl Broker {
    /// Anchor the audit tree head `req` offers for the connected node's agency.
    pub fn anchor_audit(
        &self,
        peer: &VerifiedIdentity,
        req: &AnchorRequest,
    ) -> Result<AuditAnchor, Error> {
        let now = alpr_pki::now_unix();
        let mut db = self.db();
        let result = self.check_anchor(&db, peer, req);
        if let Err(e) = &result {
            if let (Error::Refused(p), Some(head)) = (e, &req.head)
                && p.reason() == RefusalReason::AuditFork
            {
                store::put_audit_fork(
                    &db,
                    peer.ori().unwrap_or(""),
                    now,
                    &head.encode_to_vec(),
                    &p.detail(),
                )?;
            }
            let mut entry = LogEntry {
                requester: Some(peer.describe()),
                reason_code: Some(match e {
                    Error::Refused(r) => r.reason().as_str_name().to_owned(),
                    _ => "INVALID_INPUT".to_owned(),
                }),
                detail: Some(e.to_string()),
                ..LogEntry::new(now, Event::AuditAnchor, Decision::Refused)
            };
            entry.target = peer.ori().map(str::to_owned);
            store::log(&mut db, &[entry])?;
            tracing::warn!(peer = %peer.describe(), error = %e, "audit anchor refused");
        }
        let (head, existing) = result?;
        if let Some(a) = existing {
            return Ok(a);
        }
        let signed = req.head.clone().unwrap_or_default();
        let receipt = AnchorReceipt {
            audit_tree_head: signed.payload.clone(),
            anchored_at: now,
        };
        let anchor = AuditAnchor {
            receipt: Some(alpr_proto::envelope::seal(
                &self.signer,
                ANCHOR_RECEIPT,
                &receipt,
            )?),
            head: Some(signed),
            cosignatures: vec![],
        };
        store::put_audit_anchor(
            &db,
            &store::StoredAnchor {
                size: head.size,
                root: head.root.to_vec(),
                anchor: anchor.encode_to_vec(),
                from_size: req.from_size,
                consistency: req.consistency.clone(),
            },
            &head.ori,
            now,
        )?;
        Ok(anchor)
    }

    /// Check an offered head against the newest anchor. `Ok((head, Some(anchor)))` when
    /// that exact size and root are anchored already.
    fn check_anchor(
        &self,
        db: &store::Db,
        peer: &VerifiedIdentity,
        req: &AnchorRequest,
    ) -> Result<(auditlog::VerifiedAuditHead, Option<AuditAnchor>), Error> {
        let Some(ori) = peer.ori().filter(|_| peer.role == Role::Node) else {
            return Err(ProtoError::refused(
                RefusalReason::ClaimMismatch,
                format!(
                    "an audit log is anchored by its node; connection from {}",
                    peer.describe()
                ),
            )
            .into());
        };
        let signed = req.head.as_ref().ok_or_else(|| {
            ProtoError::refused(RefusalReason::InvalidInput, "no audit tree head offered")
        })?;
        let head = auditlog::verify_head(&self.trust(), signed, ori)?;
        if head.size == 0 {
            return Err(ProtoError::refused(
                RefusalReason::InvalidInput,
                "an empty audit log has nothing to anchor",
            )
            .into());
        }
        let Some(store::StoredAnchor {
            size,
            root,
            anchor: bytes,
            ..
        }) = store::latest_audit_anchor(db, ori)?
        else {
            if req.from_size != 0 || !req.consistency.is_empty() {
                return Err(ProtoError::refused(
                    RefusalReason::InvalidInput,
                    format!(
                        "{ori} has no anchor yet: the first one comes without a consistency proof"
                    ),
                )
                .into());
            }
            return Ok((head, None));
        };
        let fork = |detail: String| -> Error {
            ProtoError::refused(RefusalReason::AuditFork, detail).into()
        };
        let root = merkle::hash_from_slice(&root).map_err(|e| Error::Corrupt {
            what: format!("audit anchor of {ori} at {size}"),
            detail: e.to_string(),
        })?;
        if head.size < size {
            return Err(fork(format!(
                "{ori} offers an audit log of {} entries; {size} were anchored before",
                head.size
            )));
        }
        if head.size == size {
            if head.root != root {
                return Err(fork(format!(
                    "{ori} offers a different audit log of {size} entries than the one anchored"
                )));
            }
            return Ok((head, Some(decode_anchor(ori, size, &bytes)?)));
        }
        if req.from_size != size {
            return Err(ProtoError::refused(
                RefusalReason::InvalidInput,
                format!(
                    "the consistency proof starts at {} entries; the newest anchor of {ori} has {size}",
                    req.from_size
                ),
            )
            .into());
        }
        let proof = alpr_proto::registry::proof_hashes(&req.consistency)?;
        merkle::verify_consistency(size, head.size, &proof, &root, &head.root).map_err(|e| {
            fork(format!(
                "{ori}'s audit log of {} entries does not extend the {size} anchored before: {e}",
                head.size
            ))
        })?;
        Ok((head, None))
    }

    /// The newest anchor of `ori`'s audit log, if it ever anchored, with the regulators'
    /// cosignatures of it.
    pub fn audit_anchor(&self, ori: &str) -> Result<Option<AuditAnchor>, Error> {
        let db = self.db();
        store::latest_audit_anchor(&db, ori)?
            .map(|a| with_cosignatures(&db, ori, &a))
            .transpose()
    }

    /// `ori`'s anchors after `after` (at most 1000), each with the node's consistency proof
    /// from the one before.
    pub fn audit_anchor_chain(&self, ori: &str, after: u64) -> Result<Vec<AnchorLink>, Error> {
        let db = self.db();
        store::audit_anchor_chain(&db, ori, after, 1000)?
            .iter()
            .map(|a| {
                Ok(AnchorLink {
                    anchor: Some(with_cosignatures(&db, ori, a)?),
                    from_size: a.from_size,
                    consistency: a.consistency.clone(),
                })
            })
            .collect()
    }

    /// Keep a regulator's cosignature of an agency's anchored audit head.
    pub fn cosign_audit(
        &self,
        peer: &VerifiedIdentity,
        cosig: &Signed,
    ) -> Result<AuditAnchor, Error> {
        let now = alpr_pki::now_unix();
        let (id, cs): (_, Cosignature) =
            alpr_proto::envelope::open_as(&self.trust(), cosig, AUDIT_COSIGNATURE, now)?;
        if id.role != Role::Regulator || id.serial != peer.serial {
            return Err(ProtoError::refused(
                RefusalReason::CertInvalid,
                "cosignatures come from the connected regulator",
            )
            .into());
        }
        let th = alpr_proto::pb::AuditTreeHead::decode(cs.tree_head.as_slice())
            .map_err(|e| Error::Usage(format!("cosigned audit head does not decode: {e}")))?;
        let db = self.db();
        let kept = store::audit_anchor_chain(&db, &th.ori, th.size.saturating_sub(1), 1)?
            .into_iter()
            .find(|a| a.size == th.size)
            .ok_or_else(|| {
                Error::Usage(format!("no anchor of {} at {} entries", th.ori, th.size))
            })?;
        let mut anchor = decode_anchor(&th.ori, th.size, &kept.anchor)?;
        if anchor.head.as_ref().map(|h| &h.payload) != Some(&cs.tree_head) {
            return Err(Error::Usage(
                "cosignature is over an audit head this broker did not anchor".into(),
            ));
        }
        store::put_audit_cosignature(
            &db,
            &th.ori,
            th.size,
            &id.describe(),
            &cosig.encode_to_vec(),
        )?;
        anchor.cosignatures = signed_rows(store::audit_cosignatures(&db, &th.ori, th.size)?);
        Ok(anchor)
    }
}

/// A stored anchor, decoded.
fn decode_anchor(ori: &str, size: u64, bytes: &[u8]) -> Result<AuditAnchor, Error> {
    AuditAnchor::decode(bytes).map_err(|e| Error::Corrupt {
        what: format!("audit anchor of {ori} at {size}"),
        detail: e.to_string(),
    })
}

/// A stored anchor, decoded, with the cosignatures kept for it.
fn with_cosignatures(
    db: &store::Db,
    ori: &str,
    a: &store::StoredAnchor,
) -> Result<AuditAnchor, Error> {
    let mut anchor = decode_anchor(ori, a.size, &a.anchor)?;
    anchor.cosignatures = signed_rows(store::audit_cosignatures(db, ori, a.size)?);
    Ok(anchor)
}

/// Stored encoded `Signed`s (cosignatures), decoded; a row that does not decode is left out
/// (a cosignature only counts once a verifier has checked it anyway).
fn signed_rows(rows: Vec<Vec<u8>>) -> Vec<Signed> {
    rows.iter()
        .filter_map(|b| Signed::decode(b.as_slice()).ok())
        .collect()
}

/// A routing-log head is signed again when asked for if the newest one kept is older than
/// this, seconds, or covers fewer rows than the log has.
const ROUTING_HEAD_REFRESH_SECS: i64 = 60;

impl Broker {
    /// A signed head of the routing log as it is now (reusing the newest kept when it
    /// covers every row and is fresh), with a consistency proof from `from_size` and the
    /// regulators' cosignatures of its size.
    pub fn routing_head(&self, from_size: u64) -> Result<RoutingHead, Error> {
        let now = alpr_pki::now_unix();
        let db = self.db();
        let (size, root) = store::routing_tree_head(&db)?;
        let kept = store::latest_routing_head(&db)?
            .map(|(s, b)| Signed::decode(b.as_slice()).map(|h| (s, h)))
            .transpose()
            .map_err(|e| Error::Corrupt {
                what: "routing head".into(),
                detail: e.to_string(),
            })?;
        let fresh = kept.and_then(|(s, h)| {
            let th = RoutingTreeHead::decode(h.payload.as_slice()).ok()?;
            (s == size && th.root == root && now - th.timestamp < ROUTING_HEAD_REFRESH_SECS)
                .then_some(h)
        });
        let head = match fresh {
            Some(h) => h,
            None => {
                let th = RoutingTreeHead {
                    size,
                    root: root.to_vec(),
                    timestamp: now,
                };
                let h = alpr_proto::envelope::seal(&self.signer, ROUTING_TREE_HEAD, &th)?;
                store::put_routing_head(&db, size, &h.encode_to_vec())?;
                h
            }
        };
        let consistency = if from_size > 0 && from_size < size {
            store::routing_consistency(&db, from_size, size)?
                .iter()
                .map(|h| h.to_vec())
                .collect()
        } else if from_size > size {
            return Err(ProtoError::refused(
                RefusalReason::AuditFork,
                format!(
                    "the routing log has {size} rows; a head of {from_size} was seen before (rows deleted)"
                ),
            )
            .into());
        } else {
            vec![]
        };
        let cosignatures = signed_rows(store::routing_cosignatures(&db, size)?);
        Ok(RoutingHead {
            head: Some(head),
            consistency,
            cosignatures,
        })
    }

    /// Keep a regulator's cosignature of a routing-log head this broker signed.
    pub fn cosign_routing(
        &self,
        peer: &VerifiedIdentity,
        cosig: &Signed,
    ) -> Result<RoutingHead, Error> {
        let now = alpr_pki::now_unix();
        let (id, cs): (_, Cosignature) =
            alpr_proto::envelope::open_as(&self.trust(), cosig, ROUTING_COSIGNATURE, now)?;
        if id.role != Role::Regulator || id.serial != peer.serial {
            return Err(ProtoError::refused(
                RefusalReason::CertInvalid,
                "cosignatures come from the connected regulator",
            )
            .into());
        }
        let th = RoutingTreeHead::decode(cs.tree_head.as_slice())
            .map_err(|e| Error::Usage(format!("cosigned routing head does not decode: {e}")))?;
        let db = self.db();
        let head = store::routing_head_of_size(&db, th.size)?
            .and_then(|b| Signed::decode(b.as_slice()).ok());
        let kept = head
            .as_ref()
            .and_then(|h| RoutingTreeHead::decode(h.payload.as_slice()).ok());
        if kept.is_none_or(|k| k.root != th.root) {
            return Err(Error::Usage(
                "cosignature is over a routing head this broker did not sign".into(),
            ));
        }
        store::put_routing_cosignature(&db, th.size, &id.describe(), &cosig.encode_to_vec())?;
        // The head cosigned, with every cosignature of it (the log may have grown since).
        let cosignatures = signed_rows(store::routing_cosignatures(&db, th.size)?);
        Ok(RoutingHead {
            head,
            consistency: vec![],
            cosignatures,
        })
    }
}
