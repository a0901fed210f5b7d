//! The inbound path: a query another agency sent, forwarded by the broker. The node
//! re-runs admission against its own agreements, policy and switches, logs the decision
//! durably, and only then signs an answer or a refusal.

use alpr_pki::{Role, VerifiedIdentity};
use alpr_proto::RefusalReason;
use alpr_proto::admission::{self, AdmissionContext, AdmissionDecision};
use alpr_proto::envelope::{self, ANSWER, REFUSAL};
use alpr_proto::pb::{Answer, Refusal, SealedReply, Signed, TargetStatus};
use prost::Message;

use crate::Error;
use crate::audit::{AuditEntry, Decision, Event};
use crate::node::Node;
use crate::store;

/// What the node decided about one forwarded query, before it is signed.
struct Decided {
    reply: Result<Answer, Refusal>,
    /// The key a sealed query's reply is encrypted under (its box opened).
    reply_key: Option<alpr_proto::seal::ReplyKey>,
}

impl Node {
    /// Decide on a forwarded clear query, log it durably, and sign the answer or refusal.
    /// A sealed endorsement sent here is refused (`SEAL_REQUIRED`: it has to come through
    /// `AnswerSealed`). Blocking (database and signing); call from `spawn_blocking`.
    pub fn answer_forwarded(
        &self,
        peer: Result<VerifiedIdentity, Error>,
        endorsed: &Signed,
    ) -> Result<Signed, Error> {
        let d = self.decide(peer, endorsed, false)?;
        Ok(match d.reply {
            Ok(answer) => envelope::seal(&self.signer, ANSWER, &answer)?,
            Err(refusal) => envelope::seal(&self.signer, REFUSAL, &refusal)?,
        })
    }

    /// Decide on a forwarded sealed query: open this node's box, reveal and check the query
    /// inside exactly as a clear one, log the decision durably, and return the signed
    /// answer or refusal encrypted under the box's reply key — or, when the box could not
    /// be opened, the signed refusal in the clear (it holds nothing the node did not see).
    pub fn answer_sealed(
        &self,
        peer: Result<VerifiedIdentity, Error>,
        endorsed: &Signed,
    ) -> Result<SealedReply, Error> {
        let d = self.decide(peer, endorsed, true)?;
        let (status, reason, signed) = match &d.reply {
            Ok(answer) => (
                TargetStatus::Answered,
                RefusalReason::Unspecified,
                envelope::seal(&self.signer, ANSWER, answer)?,
            ),
            Err(refusal) => (
                TargetStatus::Refused,
                RefusalReason::try_from(refusal.reason).unwrap_or(RefusalReason::Unspecified),
                envelope::seal(&self.signer, REFUSAL, refusal)?,
            ),
        };
        let query_id = match &d.reply {
            Ok(a) => a.query_id.clone(),
            Err(r) => r.query_id.clone(),
        };
        let mut out = SealedReply {
            query_id,
            provider_ori: self.ori().to_owned(),
            status: status as i32,
            reason: reason as i32,
            ..Default::default()
        };
        match &d.reply_key {
            Some(key) => {
                let aad = alpr_proto::seal::reply_aad(&out.query_id, &out.provider_ori);
                let (nonce, ct) = key
                    .seal(&aad, &signed.encode_to_vec())
                    .map_err(|e| Error::Usage(e.to_string()))?;
                out.nonce = nonce.to_vec();
                out.ciphertext = ct;
            }
            None => match d.reply {
                // Without a reply key only a refusal can exist (the box never opened).
                Err(_) => out.clear_refusal = Some(signed),
                Ok(_) => {
                    return Err(Error::Usage(
                        "internal: an answer without a reply key".into(),
                    ));
                }
            },
        }
        Ok(out)
    }

    /// The reads an admitted query is answered with, within retention, and for a shared
    /// hot list the note of what was kept.
    fn read_for(
        &self,
        a: &admission::Admitted,
        now: i64,
    ) -> Result<(Vec<alpr_proto::pb::Read>, Option<String>), Error> {
        let q = &a.query;
        let floor = now - i64::from(self.retention_days()) * 86_400;
        let key = crate::store::PlateKey {
            plate: &q.plate,
            state: &q.plate_state,
        };
        let start = q.window_start.max(floor);
        if q.shape == alpr_proto::hotlist::SHAPE_HOTLIST {
            Ok((Vec::new(), Some(self.keep_share(&a.agreement_id, q, now)?)))
        } else if q.shape == alpr_proto::input::SHAPE_WILDCARD {
            Ok((self.readers.lookup_pattern(key, start, q.window_end)?, None))
        } else {
            Ok((self.readers.lookup(key, start, q.window_end)?, None))
        }
    }

    fn decide(
        &self,
        peer: Result<VerifiedIdentity, Error>,
        endorsed: &Signed,
        sealed_call: bool,
    ) -> Result<Decided, Error> {
        let now = alpr_pki::now_unix();
        let started = std::time::Instant::now();
        let agreements = self.agreements();
        let trust = self.trust();
        // Size first (the transport lets up to 16 MiB through so that this refusal is
        // logged), then signatures and chains, without holding the database.
        let size = alpr_proto::limits::check_size("the endorsed query", endorsed.encoded_len());
        let mut opened = admission::open(&trust, endorsed, now);
        // A sealed query: open this node's box and reveal the query inside (its
        // investigator's signature, chain and claims, and that the routing copy the broker
        // decided on is exactly it). Any failure is recorded in `opened` and refused below.
        let mut reply_key = None;
        let mut plaintext = None;
        if sealed_call && !opened.is_sealed() && opened.refusal().is_none() {
            opened.refuse(&alpr_proto::Error::refused(
                RefusalReason::SealRequired,
                "AnswerSealed takes a sealed endorsement; this one is in the clear",
            ));
        }
        if opened.is_sealed() && sealed_call && opened.refusal().is_none() {
            match self.open_box(&opened, now) {
                Ok((pt, key)) => {
                    admission::reveal(&trust, &mut opened, &pt);
                    reply_key = Some(key);
                    plaintext = Some(pt);
                }
                Err(e) => opened.refuse(&e),
            }
        }
        let mut policy = self.policy(&self.db())?;
        // One request at a time from outside the state: does a named person's approval
        // cover this one?
        let approval = self.approval_for(&opened, now)?;
        policy.request_approved = approval.is_some();
        let decision = admission::admit_opened(
            &AdmissionContext {
                trust: &trust,
                provider_ori: self.ori(),
                rules: self.rules,
                policy: Some(&policy),
                agreements: &agreements,
                replay: &self.replay,
                now,
                provider_system: None,
            },
            &opened,
        );
        // Only the broker forwards queries to a node's inbound side.
        let peer_desc = peer
            .as_ref()
            .map(VerifiedIdentity::describe)
            .unwrap_or_else(|e| format!("unverified peer ({e})"));
        let decision = match (&peer, decision) {
            (Ok(p), d) if p.role == Role::Broker => d,
            (_, AdmissionDecision::Admitted(a)) => refuse(
                *a,
                RefusalReason::CertInvalid,
                format!("only the broker may forward queries; peer is {peer_desc}"),
            ),
            (_, refused) => refused,
        };
        let decision = match (size, decision) {
            (Err(e), d) => {
                let facts = match d {
                    AdmissionDecision::Admitted(a) => a.facts,
                    AdmissionDecision::Refused(r) => r.facts,
                };
                AdmissionDecision::Refused(Box::new(admission::Refused {
                    reason: e.reason(),
                    detail: e.detail(),
                    facts,
                    rule_version: self.rules.version.clone(),
                }))
            }
            (Ok(()), d) => d,
        };
        // The node's own last word on an admitted query: the per-requester rate limit,
        // state edited around the logged admin path (nothing is answered until an admin
        // acknowledges), and a registry view older than its bound (it may hide a revocation
        // the broker withholds).
        let decision = match decision {
            AdmissionDecision::Admitted(a) => match self.own_refusal(&a, now) {
                Some((reason, detail)) => refuse(*a, reason, detail),
                None => AdmissionDecision::Admitted(a),
            },
            d => d,
        };
        let decision = self.settle_approval(decision, approval, now)?;
        // What an admitted query asks for, read from the store; a store that cannot be read
        // (its PostgreSQL server lost, a disk error) refuses the query `UNAVAILABLE`, and
        // the refusal is logged like any other.
        let (decision, found) = match decision {
            AdmissionDecision::Admitted(a) => match self.read_for(&a, now) {
                Ok(found) => (AdmissionDecision::Admitted(a), Some(found)),
                // A share this node cannot act on (a withdrawal of a list it does not keep).
                Err(Error::Refused(e)) => {
                    let detail = e.detail();
                    (refuse(*a, e.reason(), detail), None)
                }
                Err(e) => {
                    tracing::error!(error = %e, "ALERT: the read store cannot be read; refusing query");
                    let detail = format!("the node cannot read its store now: {e}");
                    (refuse(*a, RefusalReason::Unavailable, detail), None)
                }
            },
            d => (d, None),
        };
        let (mut entry, reply) = match decision {
            AdmissionDecision::Admitted(a) => {
                let q = &a.query;
                let (reads, kept) = found.unwrap_or_default();
                let mut e =
                    AuditEntry::for_query(Event::InboundQuery, Decision::Answered, now, &a.facts);
                e.count = Some(reads.len() as u64);
                e.agreement_id = Some(a.agreement_id.clone());
                e.rule_version = Some(a.rule_version.clone());
                if a.flagged_for_review {
                    e.detail = Some("catch-all purpose: flagged for audit review".into());
                }
                if let Some(kept) = kept {
                    e.detail = Some(match e.detail.take() {
                        Some(flag) => format!("{flag}; {kept}"),
                        None => kept,
                    });
                }
                let answer = self.answer_to(q, reads, &a.agreement_id, &a.rule_version, now);
                (e, Ok(answer))
            }
            AdmissionDecision::Refused(r) => {
                let mut e =
                    AuditEntry::for_query(Event::InboundQuery, Decision::Refused, now, &r.facts);
                e.reason_code = Some(r.reason.as_str_name().into());
                e.detail = Some(r.detail.clone());
                e.rule_version = Some(r.rule_version.clone());
                let refusal = Refusal {
                    // Bound to the query even when it did not verify, so the requester
                    // can tell this refusal is about its query.
                    query_id: r
                        .facts
                        .query
                        .as_ref()
                        .map(|q| q.query_id.clone())
                        .unwrap_or_else(|| admission::claimed_query_id(endorsed)),
                    provider_ori: self.ori().to_owned(),
                    reason: r.reason as i32,
                    detail: r.detail.clone(),
                    refused_at: now,
                    rule_version: r.rule_version.clone(),
                };
                (e, Err(refusal))
            }
        };
        entry.peer = Some(peer_desc);
        if let Some(pt) = &plaintext {
            entry.sealed_query = Some(hex::encode(pt));
        }
        // Fail closed: nothing leaves unless the audit entry is durable.
        self.audit(&[entry]).map_err(|e| {
            tracing::error!(error = %e, "ALERT: audit append failed; refusing query");
            e
        })?;
        let (decision, reason) = match &reply {
            Ok(_) => ("answered", String::new()),
            Err(r) => (
                "refused",
                RefusalReason::try_from(r.reason)
                    .map(|x| x.as_str_name().to_owned())
                    .unwrap_or_default(),
            ),
        };
        self.metrics
            .inbound_queries
            .get_or_create(&crate::metrics::DecisionReason {
                decision: decision.into(),
                reason,
            })
            .inc();
        self.metrics
            .inbound_answer_seconds
            .get_or_create(&crate::metrics::DecisionLabel {
                decision: decision.into(),
            })
            .observe(started.elapsed().as_secs_f64());
        Ok(Decided { reply, reply_key })
    }
}

impl Node {
    /// This node's answer to `q` with `reads`, bound to the query, its requester and the
    /// agreement and rules it was given under (a hit report of a shared hot list is one
    /// too, see [`crate::shares`]).
    pub(crate) fn answer_to(
        &self,
        q: &alpr_proto::pb::Query,
        reads: Vec<alpr_proto::pb::Read>,
        agreement_id: &str,
        rule_version: &str,
        now: i64,
    ) -> Answer {
        Answer {
            query_id: q.query_id.clone(),
            provider_ori: self.ori().to_owned(),
            requester_ori: q.requester_ori.clone(),
            requester_user: q.requester_user.clone(),
            reads,
            not_for_redissemination: true,
            answered_at: now,
            agreement_id: agreement_id.to_owned(),
            rule_version: rule_version.to_owned(),
        }
    }

    /// The approval (its number) a named person gave that covers this request, where the
    /// state's rules serve out-of-state requesters one request at a time.
    fn approval_for(
        &self,
        opened: &admission::OpenedQuery,
        now: i64,
    ) -> Result<Option<i64>, Error> {
        let facts = opened.facts();
        let (Some(q), Some(inv)) = (&facts.query, &facts.investigator) else {
            return Ok(None);
        };
        let out_of_state = inv
            .agency
            .as_ref()
            .is_some_and(|a| self.rules.is_out_of_state(&a.jurisdiction));
        if !self.rules.per_request_out_of_state || !out_of_state {
            return Ok(None);
        }
        store::approvals::approved_for(
            &self.db(),
            &q.requester_ori,
            &q.requester_user,
            &asked(q),
            now,
        )
    }

    /// An admitted query under an approval uses it (once: a second use is refused); a query
    /// refused for want of one is queued for a named person's decision, and its refusal
    /// says under which number.
    fn settle_approval(
        &self,
        decision: AdmissionDecision,
        approval: Option<i64>,
        now: i64,
    ) -> Result<AdmissionDecision, Error> {
        Ok(match decision {
            AdmissionDecision::Admitted(a) => match approval {
                Some(id) if !store::approvals::mark_used(&self.db(), id, now)? => refuse(
                    *a,
                    RefusalReason::ApprovalRequired,
                    format!("approval #{id} was used by another request meanwhile"),
                ),
                _ => AdmissionDecision::Admitted(a),
            },
            AdmissionDecision::Refused(mut r) if r.reason == RefusalReason::ApprovalRequired => {
                if let (Some(q), Some(_)) = (&r.facts.query, &r.facts.investigator) {
                    let id = store::approvals::queue(
                        &self.db(),
                        &q.requester_ori,
                        &q.requester_user,
                        &asked(q),
                        now,
                    )?;
                    r.detail = format!(
                        "{}; queued as request #{id} at {} for a supervisor's decision — once approved, send the same search again (answered once, within a day)",
                        r.detail,
                        self.ori()
                    );
                }
                AdmissionDecision::Refused(r)
            }
            d => d,
        })
    }

    /// Why this node refuses a query admission let through, if it does (in this order:
    /// rate limit, unacknowledged state edit, stale registry view).
    fn own_refusal(&self, a: &admission::Admitted, now: i64) -> Option<(RefusalReason, String)> {
        if !self.rate_ok(&a.query.requester_ori, now) {
            return Some((
                RefusalReason::RateLimited,
                format!(
                    "more than {} queries per minute from {}",
                    self.cfg.policy.max_queries_per_minute, a.query.requester_ori
                ),
            ));
        }
        if let Some(detail) = self.state_refusal() {
            return Some((RefusalReason::NodeRefusing, detail));
        }
        self.stale_view(now)
            .map(|detail| (RefusalReason::RegistryStale, detail))
    }
}

/// What a query asks, as an approval records and matches it.
fn asked(q: &alpr_proto::pb::Query) -> store::approvals::Asked {
    store::approvals::Asked {
        plate: q.plate.clone(),
        plate_state: q.plate_state.clone(),
        purpose: q.purpose_code.clone(),
        case_number: q.case_number.clone(),
        reason: q.reason.clone(),
        window_start: q.window_start,
        window_end: q.window_end,
    }
}

/// Refuse an admitted query with `reason`, keeping its facts for the log.
fn refuse(a: admission::Admitted, reason: RefusalReason, detail: String) -> AdmissionDecision {
    AdmissionDecision::Refused(Box::new(admission::Refused {
        reason,
        detail,
        facts: a.facts,
        rule_version: a.rule_version,
    }))
}
