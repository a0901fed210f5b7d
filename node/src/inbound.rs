//! The inbound path: a query another agency sent, forwarded by the broker. The node
//! re-runs admission against its own agreements, policy and switches, logs the decision
//! durably, and only then signs an answer or a refusal.

use alpr_pki::{Role, VerifiedIdentity};
use alpr_proto::RefusalReason;
use alpr_proto::admission::{self, AdmissionContext, AdmissionDecision, QueryFacts};
use alpr_proto::envelope::{self, ANSWER, REFUSAL};
use alpr_proto::pb::{Answer, Refusal, Signed};
use prost::Message;

use crate::Error;
use crate::audit::{AuditEntry, Decision, Event};
use crate::node::Node;

impl Node {
    /// Decide on a forwarded query, log it durably, and sign the answer or refusal.
    /// Blocking (database and signing); call from `spawn_blocking`.
    pub fn answer_forwarded(
        &self,
        peer: Result<VerifiedIdentity, Error>,
        endorsed: &Signed,
    ) -> Result<Signed, Error> {
        let now = alpr_pki::now_unix();
        let started = std::time::Instant::now();
        let agreements = self.agreements();
        let trust = self.trust();
        // Size first (the transport lets up to 16 MiB through so that this refusal is
        // logged), then signatures and chains, without holding the database.
        let size = alpr_proto::limits::check_size("the endorsed query", endorsed.encoded_len());
        let opened = admission::open(&trust, endorsed, now);
        let policy = self.policy(&self.db())?;
        let decision = admission::admit_opened(
            &AdmissionContext {
                trust: &trust,
                provider_ori: self.ori(),
                rules: self.rules,
                policy: Some(&policy),
                agreements: &agreements,
                replay: &self.replay,
                now,
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
                    AdmissionDecision::Admitted(a) => QueryFacts {
                        endorser: Some(a.endorser),
                        investigator: Some(a.investigator),
                        query: Some(a.query),
                    },
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
        let (mut entry, reply) = match decision {
            AdmissionDecision::Admitted(a) => {
                let q = &a.query;
                let floor = now - i64::from(self.retention_days()) * 86_400;
                let reads = self.readers.lookup(
                    crate::store::PlateKey {
                        plate: &q.plate,
                        state: &q.plate_state,
                    },
                    q.window_start.max(floor),
                    q.window_end,
                )?;
                let facts = QueryFacts {
                    endorser: Some(a.endorser.clone()),
                    investigator: Some(a.investigator.clone()),
                    query: Some(a.query.clone()),
                };
                let mut e =
                    AuditEntry::for_query(Event::InboundQuery, Decision::Answered, now, &facts);
                e.count = Some(reads.len() as u64);
                e.agreement_id = Some(a.agreement_id.clone());
                e.rule_version = Some(a.rule_version.clone());
                if a.flagged_for_review {
                    e.detail = Some("catch-all purpose: flagged for audit review".into());
                }
                let answer = Answer {
                    query_id: q.query_id.clone(),
                    provider_ori: self.ori().to_owned(),
                    requester_ori: q.requester_ori.clone(),
                    requester_user: q.requester_user.clone(),
                    reads,
                    not_for_redissemination: true,
                    answered_at: now,
                    agreement_id: a.agreement_id.clone(),
                    rule_version: a.rule_version.clone(),
                };
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
        let signed = match reply {
            Ok(answer) => envelope::seal(&self.signer, ANSWER, &answer)?,
            Err(refusal) => envelope::seal(&self.signer, REFUSAL, &refusal)?,
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
        Ok(signed)
    }
}

impl Node {
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

/// Refuse an admitted query with `reason`, keeping its facts for the log.
fn refuse(a: admission::Admitted, reason: RefusalReason, detail: String) -> AdmissionDecision {
    AdmissionDecision::Refused(Box::new(admission::Refused {
        reason,
        detail,
        facts: QueryFacts {
            endorser: Some(a.endorser),
            investigator: Some(a.investigator),
            query: Some(a.query),
        },
        rule_version: a.rule_version,
    }))
}
