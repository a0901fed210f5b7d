//! Anchoring this node's audit log at the broker (DESIGN §7).
//!
//! Every `[audit] anchor_interval_secs` (and at start and shutdown) the node signs a tree
//! head of its log and offers it to the broker with a consistency proof from the newest
//! head anchored before. Before offering, it checks the broker's newest anchor against its
//! own log: a log shorter than what was anchored (entries deleted) or different from it
//! (entries rewritten, even re-signed with `node.key`) is an `audit_anchor` / `diverged`
//! entry and an alert, and nothing new is anchored. A head the broker refuses as a fork is
//! an `audit_anchor` / `refused` entry and an alert. Successful anchors are kept in
//! `audit.db` (`anchors`), not logged as entries: an entry per anchor would make the log
//! grow by itself.

use std::sync::Arc;

use alpr_proto::auditlog::{
    self, PROOF_FORMAT, ProofBundle, ProvenEntry, VerifiedAnchor, VerifiedAuditHead,
};
use alpr_proto::pb::{AnchorRequest, AuditAnchorRequest};

use crate::audit::{AuditEntry, Break, Decision, Event};
use crate::store::{self, AuditDb};
use crate::{Error, Node};

impl Node {
    /// Anchor the audit log now: check the broker's newest anchor against the log, then
    /// offer a signed head of the current log if it grew. Returns the anchor in force
    /// (`None` while the log is empty).
    pub async fn anchor_audit(self: &Arc<Self>) -> Result<Option<VerifiedAnchor>, Error> {
        let (mut broker, _) = self.broker.clone().ok_or(Error::NoBroker)?;
        let _one = self.anchor_lock.lock().await;
        let trust = self.trust();
        let ori = self.ori().to_owned();
        let latest = broker
            .get_audit_anchor(AuditAnchorRequest { ori: ori.clone() })
            .await?
            .into_inner()
            .latest;
        let prior = latest
            .map(|a| auditlog::verify_anchor(&trust, &a, &ori).map(|v| (a, v)))
            .transpose()?;
        let me = self.clone();
        let prior_head = prior.as_ref().map(|(_, v)| v.head.clone());
        let offer = tokio::task::spawn_blocking(move || -> Result<_, Error> {
            let mut db = me.audit_db()?;
            let Some(size) = store::audit::checkpoint_now(&mut db, &me.head_signer())? else {
                return Ok(None);
            };
            let size = size as u64;
            // What is signed and offered must be what the entries give: read the entries
            // not checked yet (all of them at the first round) and compare the stored tree.
            let root = me.check_entries(&db, size)?;
            let from = match &prior_head {
                Some(h) => {
                    compare(&db, h)?;
                    h.size
                }
                None => 0,
            };
            let head = store::audit::signed_head(&db, size)?.ok_or_else(|| {
                Error::corrupt(format!("audit checkpoint {size}"), "not a signed tree head")
            })?;
            let proof = match &prior_head {
                Some(h) if h.size < size => {
                    let p = store::audit::consistency_proof(&db, h.size, size)?;
                    alpr_proto::merkle::verify_consistency(h.size, size, &p, &h.root, &root)
                        .map_err(|_| Break::TreeDiffers)?;
                    p
                }
                _ => vec![],
            };
            Ok(Some((size, from, root, head, proof)))
        })
        .await??;
        let Some((size, from, root, head, proof)) = offer else {
            return Ok(None);
        };
        if let Some((a, v)) = prior.filter(|(_, v)| v.head.size == size) {
            self.keep_anchor(size, v.anchored_at, a).await?;
            return Ok(Some(v));
        }
        let anchor = broker
            .anchor_audit(AnchorRequest {
                head: Some(head),
                consistency: proof.iter().map(|h| h.to_vec()).collect(),
                from_size: from,
            })
            .await?
            .into_inner();
        let v = auditlog::verify_anchor(&trust, &anchor, &ori)?;
        if v.head.size != size || v.head.root != root {
            return Err(Error::Usage(format!(
                "the broker returned an anchor of {} entries that is not the head this node offered ({size} entries)",
                v.head.size
            )));
        }
        self.keep_anchor(size, v.anchored_at, anchor).await?;
        Ok(Some(v))
    }

    /// Check the entries this node has not checked yet (all of them, the first time), then
    /// that the stored tree's root at `size` is the one the entries give; returns it.
    fn check_entries(&self, db: &AuditDb, size: u64) -> Result<alpr_proto::merkle::Hash, Error> {
        let mut guard = self.audit_checker.lock().unwrap_or_else(|p| p.into_inner());
        let checker = guard.get_or_insert_with(auditlog::LogChecker::new);
        let from = checker.size();
        let result = (|| {
            const BATCH: u64 = 10_000;
            let mut next = from + 1;
            while next <= size {
                let to = (next + BATCH - 1).min(size);
                for e in store::audit::logged_entries(db, next as i64, to as i64)? {
                    checker
                        .push(&e)
                        .map_err(|e| Error::from(Break::EntriesBroken(e.detail())))?;
                }
                next = to + 1;
            }
            if checker.size() != size {
                return Err(Break::EntriesBroken(format!(
                    "{} entries read, {size} expected",
                    checker.size()
                ))
                .into());
            }
            if store::audit::root_at(db, size)? != checker.root() {
                return Err(Break::TreeDiffers.into());
            }
            Ok(checker.root())
        })();
        if result.is_err() {
            // Read everything again next round.
            *guard = None;
        }
        result
    }

    async fn keep_anchor(
        self: &Arc<Self>,
        size: u64,
        at: i64,
        a: alpr_proto::pb::AuditAnchor,
    ) -> Result<(), Error> {
        let me = self.clone();
        tokio::task::spawn_blocking(move || store::audit::put_anchor(&me.audit_db()?, size, at, &a))
            .await?
    }

    /// [`Node::anchor_audit`] as the daemon runs it: a log that differs from its anchor, or
    /// a head the broker refuses as a fork, is an entry and an alert; an unreachable
    /// broker is a warning (the next round tries again).
    pub async fn anchor_audit_logged(self: &Arc<Self>) -> Option<VerifiedAnchor> {
        let e = match self.anchor_audit().await {
            Ok(v) => return v,
            Err(e) => e,
        };
        let decision = match &e {
            Error::AuditBroken(_) => Decision::Diverged,
            Error::Rpc(s)
                if alpr_proto::reason_of(s) == Some(alpr_proto::RefusalReason::AuditFork) =>
            {
                Decision::Refused
            }
            _ => {
                tracing::warn!(error = %e, "audit anchoring failed; retrying next round");
                return None;
            }
        };
        tracing::error!(error = %e, "ALERT: the audit log and its anchor at the broker disagree");
        let entry = AuditEntry {
            detail: Some(format!("audit anchoring: {e}")),
            ..AuditEntry::new(alpr_pki::now_unix(), Event::AuditAnchor, decision)
        };
        if let Err(e) = self.audit(&[entry]) {
            tracing::error!(error = %e, "ALERT: could not log an audit anchoring failure");
        }
        None
    }
}

/// Compare the log with an anchored head: the log reaches its size and has its root there.
pub fn compare(db: &AuditDb, head: &VerifiedAuditHead) -> Result<(), Error> {
    let entries = store::audit::size(db)?;
    if head.size > entries {
        return Err(Break::AnchorLost {
            anchored: head.size as i64,
            entries: entries as i64,
        }
        .into());
    }
    if head.size > 0 && store::audit::root_at(db, head.size)? != head.root {
        return Err(Break::AnchorDiffers(head.size as i64).into());
    }
    Ok(())
}

/// The proof bundle of the entries about `query_id`, against the newest anchor kept that
/// covers them all.
pub fn prove(cfg: &crate::NodeConfig, query_id: &str) -> Result<ProofBundle, Error> {
    let query_id = query_id.trim().to_ascii_lowercase();
    if query_id.len() != 32 || hex::decode(&query_id).is_err() {
        return Err(Error::Usage(format!(
            "query id {query_id:?} must be 32 hex digits (16 bytes), as the audit log shows it"
        )));
    }
    let db = cfg.open_audit()?;
    let seqs = store::audit::seqs_of_query(&db, &query_id)?;
    let Some(&last) = seqs.last() else {
        return Err(Error::Usage(format!(
            "no entry of this node's audit log is about query {query_id}"
        )));
    };
    let anchors = store::audit::anchors(&db)?;
    let trust = alpr_pki::TrustStore::load(&cfg.tls.root, &cfg.tls.crls)?;
    let mut newest = 0;
    let mut chosen = None;
    for (_, a) in anchors.iter().rev() {
        let v = auditlog::verify_anchor(&trust, a, &cfg.ori)?;
        newest = newest.max(v.head.size);
        if v.head.size >= last as u64 {
            chosen = Some((a, v));
            break;
        }
    }
    let Some((anchor, v)) = chosen else {
        return Err(Error::Usage(format!(
            "entry {last} is not anchored yet (the newest anchor covers {newest} entries); \
             run `alpr-node audit anchor` or wait for the daemon's next round (every {} s)",
            cfg.audit.anchor_interval_secs
        )));
    };
    let mut entries = Vec::new();
    for seq in seqs {
        let entry = store::audit::logged_entries(&db, seq, seq)?
            .pop()
            .ok_or_else(|| Error::corrupt(format!("audit entry {seq}"), "missing"))?;
        let proof = store::audit::inclusion_proof(&db, seq as u64, v.head.size)?;
        entries.push(ProvenEntry {
            entry,
            proof: proof.iter().map(hex::encode).collect(),
        });
    }
    let bundle = ProofBundle {
        format: PROOF_FORMAT.into(),
        ori: cfg.ori.clone(),
        query_id: Some(query_id),
        entries,
        anchor: auditlog::anchor_to_hex(anchor),
    };
    // What this node hands out must verify.
    auditlog::verify_proof(&trust, &bundle)?;
    Ok(bundle)
}
