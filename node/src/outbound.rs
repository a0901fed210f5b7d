//! The outbound path: this agency's investigator's signed query. The node checks the
//! person and their account, logs and endorses the query, routes it through the broker,
//! re-verifies every target's reply itself ([`check_result`]), logs each result and hands
//! the checked results over.

use std::collections::HashMap;
use std::sync::Arc;

use alpr_pki::{Role, VerifiedIdentity};
use alpr_proto::RefusalReason;
use alpr_proto::admission::{self, QueryFacts};
use alpr_proto::envelope::{self, QUERY};
use alpr_proto::pb::{Answer, Query, RouteResponse, Signed, TargetResult, TargetStatus};
use alpr_proto::seal::ReplyKey;
use prost::Message;
use tonic::Request;

use crate::Error;
use crate::audit::{AuditEntry, Decision, Event};
use crate::node::Node;

impl Node {
    /// Verify an investigator's query from this agency, endorse it and route it through the
    /// broker; log outbound query and per-target results. Signature checks, signing and
    /// database work run on the blocking pool, never on the async workers.
    pub async fn search(
        self: &Arc<Self>,
        peer: Result<VerifiedIdentity, Error>,
        signed_query: Vec<u8>,
    ) -> Result<RouteResponse, Error> {
        let (broker, timeout) = self.broker.clone().ok_or(Error::NoBroker)?;
        let node = self.clone();
        let out = tokio::task::spawn_blocking(move || node.endorse_outbound(peer, signed_query))
            .await??;
        let query = &out.query;
        let response = match &out.endorsed {
            // Every target was refused here (no usable sealing key): nothing to send.
            None => RouteResponse {
                query_id: query.query_id.clone(),
                results: vec![],
            },
            Some(endorsed) => {
                let mut req = Request::new(endorsed.clone());
                req.set_timeout(timeout);
                alpr_runtime::telemetry::inject_current(req.metadata_mut());
                match broker.clone().route_query(req).await {
                    Ok(r) => r.into_inner(),
                    Err(status) => {
                        // A refusal by the broker (its reason in the status trailer) is
                        // a refusal decided by the broker; anything else is an outage.
                        let (status_code, reason, detail, decided_by) =
                            match alpr_proto::reason_of(&status) {
                                Some(reason) => (
                                    TargetStatus::Refused,
                                    reason,
                                    format!("refused by the broker: {}", status.message()),
                                    "broker".to_owned(),
                                ),
                                None => (
                                    TargetStatus::Unavailable,
                                    RefusalReason::Unavailable,
                                    format!("broker unreachable: {}", status.message()),
                                    self.ori().to_owned(),
                                ),
                            };
                        RouteResponse {
                            query_id: query.query_id.clone(),
                            results: query
                                .targets
                                .iter()
                                .map(|t| TargetResult {
                                    ori: t.clone(),
                                    status: status_code as i32,
                                    reason: reason as i32,
                                    detail: detail.clone(),
                                    reply: None,
                                    decided_by: decided_by.clone(),
                                    sealed_reply: None,
                                })
                                .collect(),
                        }
                    }
                }
            }
        };
        let node = self.clone();
        tokio::task::spawn_blocking(move || node.deliver_outbound(out, response)).await?
    }

    /// Check an investigator's signed query, log it and endorse it — sealed to each
    /// target's published key unless `[sealing] require` is off — or log the refusal.
    fn endorse_outbound(
        &self,
        peer: Result<VerifiedIdentity, Error>,
        signed_query: Vec<u8>,
    ) -> Result<Outbound, Error> {
        let now = alpr_pki::now_unix();
        let (query, investigator) = match self.check_local(peer, &signed_query, now) {
            Ok(v) => v,
            Err((e, facts)) => {
                let mut entry =
                    AuditEntry::for_query(Event::OutboundQuery, Decision::Refused, now, &facts);
                entry.reason_code = Some(e.reason().as_str_name().into());
                entry.detail = Some(e.detail());
                entry.decided_by = Some(self.ori().to_owned());
                self.audit(&[entry])?;
                return Err(Error::Refused(e));
            }
        };
        let mut keys = HashMap::new();
        let mut local = Vec::new();
        let endorsed = if self.cfg.sealing.require {
            // The investigator's signed query, byte for byte, is encrypted once under a
            // fresh query key; each target's box seals that key; the broker gets the
            // routing copy. A target without a usable published key is refused here and
            // gets nothing.
            let query_key = alpr_proto::seal::QueryKey::generate()
                .map_err(|e| Error::Usage(format!("cannot seal the query: {e}")))?;
            let requester = admission::requester_label(&query);
            let sealed_query = query_key
                .seal(
                    &alpr_proto::seal::sealed_query_aad(&query.query_id, &requester),
                    &signed_query,
                )
                .map_err(|e| Error::Usage(format!("cannot seal the query: {e}")))?;
            let mut boxes = Vec::with_capacity(query.targets.len());
            for t in &query.targets {
                if keys.contains_key(t) {
                    continue;
                }
                match self.seal_for(t, &query, &query_key, now) {
                    Ok((b, k)) => {
                        boxes.push(b);
                        keys.insert(t.clone(), k);
                    }
                    Err(e) => local.push(TargetResult {
                        ori: t.clone(),
                        status: TargetStatus::Refused as i32,
                        reason: e.reason() as i32,
                        detail: e.detail(),
                        reply: None,
                        decided_by: self.ori().to_owned(),
                        sealed_reply: None,
                    }),
                }
            }
            (!boxes.is_empty())
                .then(|| {
                    envelope::endorse_sealed(
                        &self.signer,
                        self.ori(),
                        admission::routing_copy(&query),
                        sealed_query,
                        boxes,
                        now,
                    )
                })
                .transpose()?
        } else {
            Some(envelope::endorse(
                &self.signer,
                self.ori(),
                signed_query,
                now,
            )?)
        };
        let facts = QueryFacts {
            investigator: Some(investigator),
            query: Some(query.clone()),
            sealed: self.cfg.sealing.require,
            revealed: self.cfg.sealing.require,
            ..QueryFacts::default()
        };
        let sent = AuditEntry::for_query(Event::OutboundQuery, Decision::Endorsed, now, &facts);
        // Nothing is sent before the outbound entry is durable.
        self.audit(&[sent])?;
        Ok(Outbound {
            query,
            facts,
            endorsed,
            local,
            keys,
        })
    }

    /// Log the per-target results and hand them over, unless the account was disabled
    /// while the query was in flight.
    fn deliver_outbound(
        &self,
        out: Outbound,
        mut response: RouteResponse,
    ) -> Result<RouteResponse, Error> {
        let query = &out.query;
        let facts = &out.facts;
        let done = alpr_pki::now_unix();
        // An account disabled while the query was in flight gets no results.
        let user = query.requester_user.clone();
        let still_active = {
            let conn = self.db();
            let r = crate::accounts::check_can_search(&conn, &user, &self.cfg.accounts, done);
            if let Ok(account) = &r {
                crate::accounts::touch(&conn, account, done)?;
            }
            r
        };
        if let Err(e) = still_active {
            let mut entry =
                AuditEntry::for_query(Event::OutboundResult, Decision::Withheld, done, facts);
            entry.reason_code = Some(e.reason().as_str_name().into());
            entry.detail = Some(format!("results withheld: {}", e.detail()));
            self.audit(&[entry])?;
            return Err(Error::Refused(e));
        }
        // The broker is not trusted with replies: every one is verified here again, and a
        // target whose reply fails is a bad reply, never an answer. Results are put in the
        // query's own target order, one per target, whatever the broker sent.
        let trust = self.trust();
        let mut by_target: std::collections::HashMap<String, TargetResult> = response
            .results
            .drain(..)
            .map(|r| (r.ori.clone(), r))
            .collect();
        // This node's own refusals (no usable sealing key) stand for their targets.
        for r in out.local {
            by_target.insert(r.ori.clone(), r);
        }
        let mut signers: Vec<Option<String>> = Vec::with_capacity(query.targets.len());
        for t in &query.targets {
            let r = by_target.remove(t).unwrap_or_else(|| TargetResult {
                ori: t.clone(),
                status: TargetStatus::BadReply as i32,
                reason: RefusalReason::BadReply as i32,
                detail: "the broker returned no result for this target".into(),
                reply: None,
                decided_by: "broker".into(),
                sealed_reply: None,
            });
            let r = unseal_result(r, out.keys.get(t), query);
            let (checked, signer) = check_result(&trust, query, r, done);
            signers.push(signer);
            response.results.push(checked);
        }
        response.query_id = query.query_id.clone();
        for r in &response.results {
            let status = TargetStatus::try_from(r.status)
                .map(|s| s.as_str_name())
                .unwrap_or("?");
            let reason = RefusalReason::try_from(r.reason)
                .map(|x| x.as_str_name())
                .unwrap_or("?");
            self.metrics
                .outbound_results
                .get_or_create(&crate::metrics::StatusReason {
                    status: status.into(),
                    reason: reason.into(),
                })
                .inc();
        }
        let entries: Vec<AuditEntry> = response
            .results
            .iter()
            .zip(&signers)
            .map(|(r, signer)| {
                let mut e = AuditEntry {
                    query_id: Some(hex::encode(&query.query_id)),
                    requester_user: Some(query.requester_user.clone()),
                    target: Some(r.ori.clone()),
                    decided_by: Some(r.decided_by.clone()),
                    peer: signer.clone(),
                    ..AuditEntry::new(
                        done,
                        Event::OutboundResult,
                        Decision::of_target_status(r.status),
                    )
                };
                if r.status != TargetStatus::Answered as i32 {
                    e.reason_code = RefusalReason::try_from(r.reason)
                        .ok()
                        .map(|x| x.as_str_name().to_owned());
                    e.detail = Some(r.detail.clone());
                } else if let Some(reply) = &r.reply {
                    e.count = Answer::decode(reply.payload.as_slice())
                        .ok()
                        .map(|a| a.reads.len() as u64);
                }
                e
            })
            .collect();
        self.audit(&entries)?;
        let accepted: Vec<String> = response
            .results
            .iter()
            .filter(|r| r.status == TargetStatus::Answered as i32)
            .map(|r| r.ori.clone())
            .collect();
        self.record_shares(query, &accepted, done)?;
        Ok(response)
    }

    #[allow(clippy::result_large_err)]
    fn check_local(
        &self,
        peer: Result<VerifiedIdentity, Error>,
        signed_query: &[u8],
        now: i64,
    ) -> Result<(Query, VerifiedIdentity), (alpr_proto::Error, QueryFacts)> {
        let mut facts = QueryFacts::default();
        let refuse = |r: RefusalReason, m: String, f: &QueryFacts| {
            (alpr_proto::Error::refused(r, m), f.clone())
        };
        alpr_proto::limits::check_size("the search request", signed_query.len())
            .map_err(|e| (e, facts.clone()))?;
        let peer = match peer {
            Ok(p) => p,
            Err(Error::Refused(e)) => return Err((e, facts)),
            Err(e) => return Err(refuse(RefusalReason::CertInvalid, e.to_string(), &facts)),
        };
        if peer.role != Role::Investigator || peer.ori() != Some(self.ori()) {
            return Err(refuse(
                RefusalReason::CertInvalid,
                format!(
                    "only this agency's investigators may search; peer is {}",
                    peer.describe()
                ),
                &facts,
            ));
        }
        let inner = Signed::decode(signed_query).map_err(|e| {
            refuse(
                RefusalReason::InvalidInput,
                format!("query envelope does not decode: {e}"),
                &facts,
            )
        })?;
        let (inv, query) = envelope::open_as::<Query>(&self.trust(), &inner, QUERY, now)
            .map_err(|e| (e, facts.clone()))?;
        facts.investigator = Some(inv.clone());
        facts.query = Some(query.clone());
        if inv.serial != peer.serial {
            return Err(refuse(
                RefusalReason::ClaimMismatch,
                "query signed by someone other than the connected person".into(),
                &facts,
            ));
        }
        if query.requester_ori != self.ori() || Some(&query.requester_user) != inv.user.as_ref() {
            return Err(refuse(
                RefusalReason::ClaimMismatch,
                "query names a requester other than its signer".into(),
                &facts,
            ));
        }
        admission::check_query(&query, now).map_err(|e| (e, facts.clone()))?;
        let user = inv.user.clone().unwrap_or_default();
        crate::accounts::check_can_search(&self.db(), &user, &self.cfg.accounts, now)
            .map_err(|e| (e, facts.clone()))?;
        Ok((query, inv))
    }
}

/// A query on its way out: what was checked and sent, this node's own per-target
/// refusals, and the reply key of each target's box.
struct Outbound {
    query: Query,
    facts: QueryFacts,
    /// `None` when no target could be sealed to (nothing is sent).
    endorsed: Option<Signed>,
    local: Vec<TargetResult>,
    keys: HashMap<String, ReplyKey>,
}

/// Open a sealed reply with the reply key of this node's box for that target, putting
/// the signed reply inside into `reply` for [`check_result`]. A sealed reply this node
/// has no key for, bound to another query or provider, or that does not open, is a bad
/// reply.
pub fn unseal_result(mut r: TargetResult, key: Option<&ReplyKey>, query: &Query) -> TargetResult {
    let Some(sealed) = r.sealed_reply.take() else {
        return r;
    };
    let bad = |r: TargetResult, detail: String| TargetResult {
        status: TargetStatus::BadReply as i32,
        reason: RefusalReason::BadReply as i32,
        detail,
        reply: None,
        ..r
    };
    let Some(key) = key else {
        let d = format!(
            "a sealed reply for {}, which this node sealed no box to",
            r.ori
        );
        return bad(r, d);
    };
    if sealed.provider_ori != r.ori || sealed.query_id != query.query_id {
        let d = format!(
            "the sealed reply for {} names another provider or query",
            r.ori
        );
        return bad(r, d);
    }
    let aad = alpr_proto::seal::reply_aad(&sealed.query_id, &sealed.provider_ori);
    match key
        .open(&aad, &sealed.nonce, &sealed.ciphertext)
        .ok()
        .and_then(|b| Signed::decode(b.as_slice()).ok())
    {
        Some(signed) => TargetResult {
            reply: Some(signed),
            ..r
        },
        None => {
            let d = format!(
                "the sealed reply for {} does not open under this query's reply key (changed in transit, or not from the target)",
                r.ori
            );
            bad(r, d)
        }
    }
}

/// Check one target's result as the broker relayed it: a reply must verify
/// ([`alpr_proto::reply::verify`]) and agree with the status the broker claims; the status
/// and reason then come from the signed reply, not from the broker. Returns the result as
/// it is handed to the investigator and the verified signer (or whoever signed a bad reply).
pub fn check_result(
    trust: &alpr_pki::TrustStore,
    query: &Query,
    r: TargetResult,
    now: i64,
) -> (TargetResult, Option<String>) {
    use alpr_proto::reply::{self, VerifiedReply};
    let bad = |r: &TargetResult, detail: String| TargetResult {
        ori: r.ori.clone(),
        status: TargetStatus::BadReply as i32,
        reason: RefusalReason::BadReply as i32,
        detail,
        reply: None,
        decided_by: r.decided_by.clone(),
        sealed_reply: None,
    };
    let claimed = TargetStatus::try_from(r.status).unwrap_or(TargetStatus::Unspecified);
    let Some(signed) = &r.reply else {
        // Only the broker's own decisions come without a reply.
        return match claimed {
            TargetStatus::Refused | TargetStatus::Unavailable | TargetStatus::BadReply => (r, None),
            _ => {
                let b = bad(
                    &r,
                    format!(
                        "reported as {} without a signed reply",
                        claimed.as_str_name()
                    ),
                );
                (b, None)
            }
        };
    };
    match reply::verify(trust, &r.ori, signed, query, now) {
        Ok(VerifiedReply::Answer { signer, .. }) => {
            let who = signer.describe();
            if claimed != TargetStatus::Answered {
                return (
                    bad(
                        &r,
                        format!(
                            "a signed answer from {who} relayed as {}",
                            claimed.as_str_name()
                        ),
                    ),
                    Some(who),
                );
            }
            (
                TargetResult {
                    reason: 0,
                    detail: String::new(),
                    decided_by: r.ori.clone(),
                    ..r
                },
                Some(who),
            )
        }
        Ok(VerifiedReply::Refusal { signer, refusal }) => (
            TargetResult {
                status: TargetStatus::Refused as i32,
                reason: refusal.reason,
                detail: refusal.detail,
                decided_by: r.ori.clone(),
                ..r
            },
            Some(signer.describe()),
        ),
        Err(e) => {
            // Name the signer of a bad reply when its signature at least verified.
            let signer = alpr_proto::envelope::open(trust, signed, &signed.payload_type, now)
                .ok()
                .map(|(id, _)| id.describe());
            (bad(&r, e.detail()), signer)
        }
    }
}
