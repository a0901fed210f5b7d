//! Hot lists shared between agencies, only under agreements (issue 16, item 3).
//!
//! A share is a query of shape `hotlist` (see `HotlistShare` in the wire contract): signed
//! by an investigator, checked and logged by the owner's node, sealed to each target and
//! admitted at the broker and at each target like any query — an agreement in force that
//! covers the `hotlists` data type and the purpose, the target's state rules, switches and
//! prohibited terms (checked in the list's name, source, topic and notes). A target that
//! admits it keeps the list ([`store::shares`]) until the list expires, the agreement
//! stops being in force, or its owner withdraws it or shares it again: a share of kind
//! `withdraw` under the list's name (`alpr-node withdraw-share`), admitted like any share,
//! stops the lists of that name the same owner shared with the target before, and a new
//! share of the name replaces them.
//!
//! Every ingested read that matches a kept list is a `hotlist_hit` entry in the target's
//! own audit log, naming the list's owner, investigator, purpose and case (and counted in
//! its transparency report), and is reported to the owner: the target's node signs an
//! Answer to the share holding the read, seals it to the owner's published key and sends it
//! through the broker (`HitReport`), which checks the agreement again and sees nothing of
//! it. Reports wait in a durable outbox while the broker or the owner is unreachable. The
//! owner verifies a report exactly as an answer to the share it sent, logs each read as a
//! `hotlist_hit` alert and raises it to its alert sinks.

use std::sync::Arc;

use alpr_pki::{Role, VerifiedIdentity};
use alpr_proto::agreement::AgreementStatus;
use alpr_proto::envelope::{self, ANSWER};
use alpr_proto::hotlist::{KIND_WITHDRAW, Matcher, SHAPE_HOTLIST};
use alpr_proto::pb::{HitReceipt, HitReport, Read, Signed};
use alpr_proto::{RefusalReason, seal};
use prost::Message;

use crate::audit::{AuditEntry, Decision, Event};
use crate::node::Node;
use crate::store::shares::SharedIn;
use crate::{Error, store};

/// Hit entries for the audit log and the `(share id, read)` reports to queue.
type Hits = (Vec<AuditEntry>, Vec<(Vec<u8>, Read)>);

/// Box purpose of a sealed hit report.
const HIT_PURPOSE: &str = "hit";
/// Hit reports sent per delivery round, at most.
const BATCH: usize = 500;
/// Attempts after which an undeliverable hit report is given up (and logged as such).
const MAX_ATTEMPTS: i64 = 1000;
/// How long settled hit reports and expired shares are kept, seconds.
pub(crate) const KEEP_SECS: i64 = 7 * 86_400;

/// The requester label of a hit report's box: the reporting node.
fn reporter(provider_ori: &str) -> String {
    format!("node@{provider_ori}")
}

fn hit_context<'a>(owner: &'a str, share_id: &'a [u8], requester: &'a str) -> seal::Context<'a> {
    seal::Context {
        purpose: HIT_PURPOSE,
        target_ori: owner,
        query_id: share_id,
        requester,
    }
}

fn hit_detail(r: &Read, list: &str, note: &str, whose: &str) -> String {
    format!(
        "{} ({}) seen by camera {} at {} ({:.5}, {:.5}); on hot list {list:?} {whose}: {note}",
        r.plate,
        if r.plate_state.is_empty() {
            "state unknown"
        } else {
            &r.plate_state
        },
        r.camera_id,
        alpr_pki::fmt_time(r.captured_at),
        r.latitude,
        r.longitude
    )
}

/// One queued batch of hit reports for one share, ready to send.
struct Outgoing {
    ids: Vec<i64>,
    /// The most attempts any of them had.
    attempts: i64,
    owner: String,
    share_id: Vec<u8>,
    reads: u64,
    report: Result<HitReport, alpr_proto::Error>,
}

impl Node {
    /// Whether the agreement a kept list was admitted under is still in force for hot
    /// lists and its purpose, in this node's verified registry view.
    fn share_in_force(&self, s: &SharedIn, now: i64) -> bool {
        self.agreements().iter().any(|a| {
            a.id == s.agreement_id
                && a.status == AgreementStatus::Active
                && a.terms.valid_from <= now
                && now < a.terms.valid_until
                && a.terms.data_types.iter().any(|d| d == "hotlists")
                && a.terms.purposes.iter().any(|p| p == &s.query.purpose_code)
        })
    }

    /// Hits of the lists other agencies shared with this one among `reads` (captured while
    /// the list and its agreement are in force): a `hotlist_hit` entry each, and the
    /// `(share id, read)` reports to queue.
    pub(crate) fn foreign_hits(
        &self,
        db: &store::Db,
        reads: &[Read],
        now: i64,
    ) -> Result<Hits, Error> {
        let mut entries = Vec::new();
        let mut queued = Vec::new();
        // The switches hold for kept lists as for queries: sharing off, refuse-all or a
        // refused owner stops watching for its lists at once.
        let switches = store::settings::load(db)?;
        for s in store::shares::active_in(db, now)? {
            if !self.share_in_force(&s, now)
                || !switches.sharing_enabled
                || switches.refuse_all
                || switches.refused_requesters.contains(&s.owner_ori)
            {
                continue;
            }
            let q = &s.query;
            let Some(list) = &q.hotlist else { continue };
            let m = Matcher::new(list.entries.clone());
            for r in reads {
                if r.captured_at < q.window_start || r.captured_at > q.window_end {
                    continue;
                }
                let Some(e) = m.find(r) else { continue };
                entries.push(AuditEntry {
                    query_id: Some(hex::encode(&q.query_id)),
                    requester_ori: Some(s.owner_ori.clone()),
                    requester_user: Some(q.requester_user.clone()),
                    plate: Some(r.plate.clone()),
                    plate_state: Some(r.plate_state.clone()),
                    purpose: Some(q.purpose_code.clone()),
                    case_number: Some(q.case_number.clone()),
                    agreement_id: Some(s.agreement_id.clone()),
                    detail: Some(hit_detail(
                        r,
                        &list.name,
                        &e.note,
                        &format!("shared by {}", s.owner_ori),
                    )),
                    ..AuditEntry::new(now, Event::HotlistHit, Decision::Alert)
                });
                queued.push((q.query_id.clone(), r.clone()));
            }
        }
        Ok((entries, queued))
    }

    /// Keep a hot list an admitted share carries (called when the share is answered), in
    /// place of the lists of its name its owner shared before; or, for a withdrawal, stop
    /// those. Returns what was done, for the `inbound_query` entry and the answer.
    pub(crate) fn keep_share(
        &self,
        agreement_id: &str,
        q: &alpr_proto::pb::Query,
        now: i64,
    ) -> Result<String, Error> {
        let n = q.hotlist.as_ref().map_or(0, |h| h.entries.len());
        let name = q.hotlist.as_ref().map_or("", |h| h.name.as_str());
        let owner = &q.requester_ori;
        let db = self.db();
        if q.hotlist.as_ref().is_some_and(|h| h.kind == KIND_WITHDRAW) {
            // Only lists shared before the withdrawal was signed: a newer list of the name,
            // arrived first, stays.
            let stopped = store::shares::withdraw_in(&db, owner, name, None, q.issued_at, now)?;
            if stopped == 0 {
                return Err(alpr_proto::Error::refused(
                    RefusalReason::InvalidInput,
                    format!(
                        "{} keeps no hot list {name:?} of {owner} in force (never kept, expired, or withdrawn already): nothing to withdraw",
                        self.ori()
                    ),
                )
                .into());
            }
            return Ok(format!(
                "hot list {name:?} of {owner} withdrawn: {stopped} kept list(s) of that name stopped now; no further hits are reported"
            ));
        }
        store::shares::record_in(&db, agreement_id, q, now)?;
        let replaced =
            store::shares::withdraw_in(&db, owner, name, Some(&q.query_id), q.issued_at, now)?;
        Ok(format!(
            "hot list {name:?} of {owner} ({n} entries) kept until {}{}: its hits on this agency's cameras are logged here and reported to {owner}",
            alpr_pki::fmt_time(q.window_end),
            if replaced > 0 {
                format!(", replacing the {replaced} list(s) of that name {owner} shared before")
            } else {
                String::new()
            }
        ))
    }

    /// Send the queued hit reports through the broker (one report per share per round);
    /// returns how many reads were delivered. Reports the broker or owner cannot take now
    /// stay queued; refused ones are settled with the refusal. Each outcome is logged
    /// (`hotlist_report`), a retry only the first time.
    pub async fn deliver_hits(self: &Arc<Self>) -> Result<u64, Error> {
        let Some((broker, timeout)) = self.broker.clone() else {
            return Ok(0);
        };
        let node = self.clone();
        let batches = tokio::task::spawn_blocking(move || node.outgoing_hits()).await??;
        let mut delivered = 0;
        for b in batches {
            let outcome = match &b.report {
                Err(e) => Err((e.reason(), e.detail(), false)),
                Ok(report) => {
                    let mut req = tonic::Request::new(report.clone());
                    req.set_timeout(timeout);
                    match broker.clone().report_hit(req).await {
                        Ok(r) => {
                            let r = r.into_inner();
                            if r.accepted {
                                Ok(())
                            } else {
                                let reason = RefusalReason::try_from(r.reason)
                                    .unwrap_or(RefusalReason::Unspecified);
                                // Unreachable owners are tried again; refusals are final.
                                let retry = reason == RefusalReason::Unavailable;
                                Err((reason, format!("{}: {}", r.decided_by, r.detail), retry))
                            }
                        }
                        Err(status) => Err((
                            RefusalReason::Unavailable,
                            format!("broker unreachable: {}", status.message()),
                            true,
                        )),
                    }
                }
            };
            if outcome.is_ok() {
                delivered += b.reads;
            }
            let node = self.clone();
            tokio::task::spawn_blocking(move || node.settle_hits(b, outcome)).await??;
        }
        Ok(delivered)
    }

    fn outgoing_hits(&self) -> Result<Vec<Outgoing>, Error> {
        let now = alpr_pki::now_unix();
        let db = self.db();
        let pending = store::shares::pending_hits(&db, BATCH)?;
        let mut by_share: Vec<(Vec<u8>, Vec<store::shares::PendingHit>)> = Vec::new();
        for p in pending {
            match by_share.iter_mut().find(|(s, _)| *s == p.share_id) {
                Some((_, v)) => v.push(p),
                None => by_share.push((p.share_id.clone(), vec![p])),
            }
        }
        let mut out = Vec::new();
        for (share_id, hits) in by_share {
            let ids: Vec<i64> = hits.iter().map(|h| h.id).collect();
            let attempts = hits.iter().map(|h| h.attempts).max().unwrap_or(0);
            let reads: Vec<Read> = hits.into_iter().map(|h| h.read).collect();
            let shared = store::shares::find_in(&db, &share_id)?;
            let (owner, report) = match shared {
                None => (
                    String::new(),
                    Err(alpr_proto::Error::refused(
                        RefusalReason::AgreementExpired,
                        "the shared list expired before its hits were reported",
                    )),
                ),
                Some(s) => {
                    let report = self.hit_report(&s, reads.clone(), now);
                    (s.owner_ori, report)
                }
            };
            out.push(Outgoing {
                ids,
                attempts,
                owner,
                share_id,
                reads: reads.len() as u64,
                report,
            });
        }
        Ok(out)
    }

    /// The sealed, signed report of `reads` for the share `s`.
    fn hit_report(
        &self,
        s: &SharedIn,
        reads: Vec<Read>,
        now: i64,
    ) -> Result<HitReport, alpr_proto::Error> {
        let q = &s.query;
        let answer = self.answer_to(q, reads, &s.agreement_id, &self.rules.version, now);
        let signed = envelope::seal(&self.signer, ANSWER, &answer)?;
        let me = reporter(self.ori());
        let ctx = hit_context(&s.owner_ori, &q.query_id, &me);
        let (sealed, _) = self.seal_to(&s.owner_ori, &ctx, &signed.encode_to_vec(), now)?;
        Ok(HitReport {
            share_id: q.query_id.clone(),
            provider_ori: self.ori().to_owned(),
            owner_ori: s.owner_ori.clone(),
            sealed: Some(sealed.to_wire(&s.owner_ori)),
            reported_at: now,
        })
    }

    fn settle_hits(
        &self,
        b: Outgoing,
        outcome: Result<(), (RefusalReason, String, bool)>,
    ) -> Result<(), Error> {
        let now = alpr_pki::now_unix();
        let mut entry = AuditEntry {
            query_id: Some(hex::encode(&b.share_id)),
            target: (!b.owner.is_empty()).then(|| b.owner.clone()),
            count: Some(b.reads),
            ..AuditEntry::new(now, Event::HotlistReport, Decision::Ok)
        };
        let attempts_left = b.attempts + 1 < MAX_ATTEMPTS;
        let mut db = self.db();
        let log = match &outcome {
            Ok(()) => {
                store::shares::settle_hits(&mut db, &b.ids, Some("delivered"), now)?;
                entry.detail = Some(format!("{} hit(s) reported to {}", b.reads, b.owner));
                true
            }
            Err((reason, detail, true)) if attempts_left => {
                store::shares::settle_hits(&mut db, &b.ids, None, now)?;
                entry.decision = Decision::Unavailable;
                entry.reason_code = Some(reason.as_str_name().into());
                entry.detail = Some(format!("{detail}; kept to be sent again"));
                b.attempts == 0
            }
            Err((reason, detail, _)) => {
                store::shares::settle_hits(&mut db, &b.ids, Some(reason.as_str_name()), now)?;
                entry.decision = Decision::Refused;
                entry.reason_code = Some(reason.as_str_name().into());
                entry.detail = Some(detail.clone());
                true
            }
        };
        drop(db);
        if log {
            self.audit(&[entry])?;
        }
        Ok(())
    }

    /// A hit report of a list this agency shared, relayed by the broker: verified as an
    /// answer to the share, each read logged as a `hotlist_hit` alert; a report that fails
    /// any check is refused and logged (`hotlist_report`). Blocking.
    pub fn receive_hit(
        &self,
        peer: Result<VerifiedIdentity, Error>,
        report: &HitReport,
    ) -> Result<HitReceipt, Error> {
        let now = alpr_pki::now_unix();
        let peer_desc = peer
            .as_ref()
            .map(VerifiedIdentity::describe)
            .unwrap_or_else(|e| format!("unverified peer ({e})"));
        match self.check_hit(peer, report, now) {
            Ok((entries, reads)) => {
                self.metrics.hotlist_hits.inc_by(reads);
                tracing::warn!(hits = reads, from = %report.provider_ori, "shared hot-list hits");
                let mut entries = entries;
                for e in &mut entries {
                    e.decided_by = Some(peer_desc.clone());
                }
                self.audit(&entries)?;
                Ok(HitReceipt {
                    accepted: true,
                    reason: 0,
                    detail: String::new(),
                    decided_by: self.ori().to_owned(),
                })
            }
            Err(e) => {
                self.audit(&[AuditEntry {
                    query_id: Some(hex::encode(&report.share_id)),
                    target: Some(report.provider_ori.clone()),
                    peer: Some(peer_desc),
                    reason_code: Some(e.reason().as_str_name().into()),
                    detail: Some(e.detail()),
                    ..AuditEntry::new(now, Event::HotlistReport, Decision::Refused)
                }])?;
                Ok(HitReceipt {
                    accepted: false,
                    reason: e.reason() as i32,
                    detail: e.detail(),
                    decided_by: self.ori().to_owned(),
                })
            }
        }
    }

    #[allow(clippy::result_large_err)]
    fn check_hit(
        &self,
        peer: Result<VerifiedIdentity, Error>,
        report: &HitReport,
        now: i64,
    ) -> Result<(Vec<AuditEntry>, u64), alpr_proto::Error> {
        match &peer {
            Ok(p) if p.role == Role::Broker => {}
            _ => {
                return Err(alpr_proto::Error::refused(
                    RefusalReason::CertInvalid,
                    "only the broker may relay hit reports",
                ));
            }
        }
        if report.owner_ori != self.ori() {
            return Err(alpr_proto::Error::refused(
                RefusalReason::InvalidInput,
                format!("a hit report for {}, not this agency", report.owner_ori),
            ));
        }
        let share = store::shares::find_out(&self.db(), &report.share_id, &report.provider_ori)
            .map_err(|e| alpr_proto::Error::refused(RefusalReason::Unavailable, e.to_string()))?
            .ok_or_else(|| {
                alpr_proto::Error::refused(
                    RefusalReason::NoAgreement,
                    format!(
                        "this agency shared no hot list {} with {}",
                        hex::encode(&report.share_id),
                        report.provider_ori
                    ),
                )
            })?;
        // The agreement must still be in force here too.
        let in_force = self.agreements().iter().any(|a| {
            a.terms.provider_ori == report.provider_ori
                && a.terms.requester_ori == self.ori()
                && a.status == AgreementStatus::Active
                && a.terms.valid_from <= now
                && now < a.terms.valid_until
                && a.terms.data_types.iter().any(|d| d == "hotlists")
        });
        if !in_force {
            return Err(alpr_proto::Error::refused(
                RefusalReason::NoAgreement,
                format!(
                    "no agreement from {} covering hot lists is in force",
                    report.provider_ori
                ),
            ));
        }
        let wire = report.sealed.as_ref().ok_or_else(|| {
            alpr_proto::Error::refused(RefusalReason::SealRequired, "the hit report holds no box")
        })?;
        let label = reporter(&report.provider_ori);
        let ctx = hit_context(self.ori(), &report.share_id, &label);
        let (plain, _) = self.open_own(wire, &ctx, now)?;
        let signed = Signed::decode(plain.as_slice()).map_err(|e| {
            alpr_proto::Error::refused(RefusalReason::InvalidInput, format!("sealed report: {e}"))
        })?;
        let answer = match alpr_proto::reply::verify(
            &self.trust(),
            &report.provider_ori,
            &signed,
            &share,
            now,
        )? {
            alpr_proto::reply::VerifiedReply::Answer { answer, .. } => answer,
            alpr_proto::reply::VerifiedReply::Refusal { .. } => {
                return Err(alpr_proto::Error::refused(
                    RefusalReason::BadReply,
                    "a hit report must hold an answer, not a refusal",
                ));
            }
        };
        let list = share.hotlist.clone().unwrap_or_default();
        let m = Matcher::new(list.entries.clone());
        let entries = answer
            .reads
            .iter()
            .map(|r| {
                let note = m.find(r).map(|e| e.note.clone()).unwrap_or_default();
                AuditEntry {
                    query_id: Some(hex::encode(&share.query_id)),
                    requester_user: Some(share.requester_user.clone()),
                    target: Some(report.provider_ori.clone()),
                    plate: Some(r.plate.clone()),
                    plate_state: Some(r.plate_state.clone()),
                    purpose: Some(share.purpose_code.clone()),
                    case_number: Some(share.case_number.clone()),
                    agreement_id: Some(answer.agreement_id.clone()),
                    detail: Some(hit_detail(
                        r,
                        &list.name,
                        &note,
                        &format!("(this agency's, shared with {})", report.provider_ori),
                    )),
                    ..AuditEntry::new(now, Event::HotlistHit, Decision::Alert)
                }
            })
            .collect();
        Ok((entries, answer.reads.len() as u64))
    }

    /// Remember which targets accepted this agency's share (to verify their hit reports).
    pub(crate) fn record_shares(
        &self,
        q: &alpr_proto::pb::Query,
        accepted: &[String],
        now: i64,
    ) -> Result<(), Error> {
        if q.shape != SHAPE_HOTLIST || q.hotlist.as_ref().is_some_and(|h| h.kind == KIND_WITHDRAW) {
            // A withdrawal leaves nothing to report hits of.
            return Ok(());
        }
        let db = self.db();
        for t in accepted {
            store::shares::record_out(&db, t, q, now)?;
        }
        Ok(())
    }
}
