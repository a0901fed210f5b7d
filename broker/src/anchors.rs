//! Anchoring nodes' audit logs: the broker accepts a node's signed audit tree head only if
//! it extends the head anchored before for that agency (an RFC 6962 consistency proof),
//! keeps it, and returns its signed receipt. A head that does not extend it (a rewritten
//! log, a shorter one, a second log shown to someone else) is refused as `AUDIT_FORK`,
//! logged, and kept beside the anchored one as evidence.
//!
//! Accepted anchors are the record of themselves (`audit_anchors`); refusals also go to
//! the routing log, like every refused request.

use alpr_pki::{Role, VerifiedIdentity};
use alpr_proto::auditlog::{self, ANCHOR_RECEIPT};
use alpr_proto::merkle;
use alpr_proto::pb::{AnchorReceipt, AnchorRequest, AuditAnchor};
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
        };
        store::put_audit_anchor(
            &db,
            &head.ori,
            head.size,
            &head.root,
            now,
            &anchor.encode_to_vec(),
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
        let Some(store::StoredAnchor {
            size,
            root,
            anchor: bytes,
        }) = store::latest_audit_anchor(db, ori)?
        else {
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
            let a = AuditAnchor::decode(bytes.as_slice()).map_err(|e| Error::Corrupt {
                what: format!("audit anchor of {ori} at {size}"),
                detail: e.to_string(),
            })?;
            return Ok((head, Some(a)));
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

    /// The newest anchor of `ori`'s audit log, if it ever anchored.
    pub fn audit_anchor(&self, ori: &str) -> Result<Option<AuditAnchor>, Error> {
        store::latest_audit_anchor(&self.db(), ori)?
            .map(|a| {
                AuditAnchor::decode(a.anchor.as_slice()).map_err(|e| Error::Corrupt {
                    what: format!("audit anchor of {ori} at {}", a.size),
                    detail: e.to_string(),
                })
            })
            .transpose()
    }
}
