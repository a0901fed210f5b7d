//! The node's gRPC services: inbound (from the broker) and local (its own people).

use std::sync::Arc;

use alpr_pki::{Role, VerifiedIdentity};
use alpr_proto::RefusalReason;
use alpr_proto::admission::{self, AdmissionContext, AdmissionDecision, QueryFacts};
use alpr_proto::envelope::{self, ANSWER, QUERY, REFUSAL};
use alpr_proto::pb::node_admin_server::NodeAdmin;
use alpr_proto::pb::node_inbound_server::NodeInbound;
use alpr_proto::pb::node_local_server::NodeLocal;
use alpr_proto::pb::{
    AdminRequest, AdminResponse, Answer, IngestSummary, Query, Read, Refusal, RouteResponse,
    SearchRequest, Signed, TargetResult, TargetStatus,
};
use prost::Message;
use tonic::{Request, Response, Status, Streaming};
use tracing::Instrument;

use crate::Error;
use crate::audit::AuditEntry;
use crate::audit::{Decision, Event};
use crate::node::Node;

/// The gRPC services of one node.
#[derive(Clone, Debug)]
pub struct NodeService {
    node: Arc<Node>,
}

impl NodeService {
    /// Services over `node`.
    pub fn new(node: Arc<Node>) -> Self {
        Self { node }
    }
}

fn facts_entry(event: Event, decision: Decision, now: i64, facts: &QueryFacts) -> AuditEntry {
    let mut e = AuditEntry {
        ..AuditEntry::new(now, event, decision)
    };
    if let Some(inv) = &facts.investigator {
        e.requester_user = inv.user.clone();
        e.requester_ori = inv.ori().map(str::to_owned);
        e.requester_agency = inv
            .agency
            .as_ref()
            .map(|a| format!("{} ({}, {})", a.name, a.jurisdiction, a.kind));
    } else if let Some(end) = &facts.endorser {
        e.requester_ori = end.ori().map(str::to_owned);
        e.requester_agency = end
            .agency
            .as_ref()
            .map(|a| format!("{} ({}, {})", a.name, a.jurisdiction, a.kind));
    }
    if let Some(q) = &facts.query {
        e.query_id = Some(hex::encode(&q.query_id));
        e.plate = Some(q.plate.clone());
        e.plate_state = (!q.plate_state.is_empty()).then(|| q.plate_state.clone());
        e.purpose = Some(q.purpose_code.clone());
        e.case_number = Some(q.case_number.clone());
        e.reason = Some(q.reason.clone());
        e.warrant_ref = (!q.warrant_ref.is_empty()).then(|| q.warrant_ref.clone());
        e.on_behalf_of = (!q.on_behalf_of_ori.is_empty()).then(|| q.on_behalf_of_ori.clone());
        e.window_start = Some(q.window_start);
        e.window_end = Some(q.window_end);
        e.target = Some(q.targets.join(","));
    }
    e
}

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
            (_, AdmissionDecision::Admitted(a)) => {
                AdmissionDecision::Refused(Box::new(admission::Refused {
                    reason: RefusalReason::CertInvalid,
                    detail: format!("only the broker may forward queries; peer is {peer_desc}"),
                    facts: QueryFacts {
                        endorser: Some(a.endorser),
                        investigator: Some(a.investigator),
                        query: Some(a.query),
                    },
                    rule_version: a.rule_version,
                }))
            }
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
        // Per-requester rate limit, counted on every authenticated request.
        let decision = match decision {
            AdmissionDecision::Admitted(a) if !self.rate_ok(&a.query.requester_ori, now) => {
                AdmissionDecision::Refused(Box::new(admission::Refused {
                    reason: RefusalReason::RateLimited,
                    detail: format!(
                        "more than {} queries per minute from {}",
                        self.cfg.policy.max_queries_per_minute, a.query.requester_ori
                    ),
                    facts: QueryFacts {
                        endorser: Some(a.endorser),
                        investigator: Some(a.investigator),
                        query: Some(a.query),
                    },
                    rule_version: a.rule_version,
                }))
            }
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
                let mut e = facts_entry(Event::InboundQuery, Decision::Answered, now, &facts);
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
                let mut e = facts_entry(Event::InboundQuery, Decision::Refused, now, &r.facts);
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

    /// Verify an investigator's query from this agency, endorse it and route it through the
    /// broker; log outbound query and per-target results. Signature checks, signing and
    /// database work run on the blocking pool, never on the async workers.
    pub async fn search(
        self: &Arc<Self>,
        peer: Result<VerifiedIdentity, Error>,
        signed_query: Vec<u8>,
    ) -> Result<RouteResponse, Error> {
        let (broker, timeout) = self.broker.clone().ok_or_else(|| {
            Error::Usage("this node has no [broker] configured; it cannot send queries".into())
        })?;
        let node = self.clone();
        let (query, facts, endorsed) =
            tokio::task::spawn_blocking(move || node.endorse_outbound(peer, signed_query))
                .await??;

        let mut req = Request::new(endorsed);
        req.set_timeout(timeout);
        alpr_runtime::telemetry::inject_current(req.metadata_mut());
        let response = match broker.clone().route_query(req).await {
            Ok(r) => r.into_inner(),
            Err(status) => RouteResponse {
                query_id: query.query_id.clone(),
                results: query
                    .targets
                    .iter()
                    .map(|t| TargetResult {
                        ori: t.clone(),
                        status: TargetStatus::Unavailable as i32,
                        reason: RefusalReason::Unavailable as i32,
                        detail: format!("broker unreachable: {}", status.message()),
                        reply: None,
                        decided_by: self.ori().to_owned(),
                    })
                    .collect(),
            },
        };
        let node = self.clone();
        tokio::task::spawn_blocking(move || node.deliver_outbound(&query, &facts, response)).await?
    }

    /// Check an investigator's signed query, log it and endorse it (or log the refusal).
    fn endorse_outbound(
        &self,
        peer: Result<VerifiedIdentity, Error>,
        signed_query: Vec<u8>,
    ) -> Result<(Query, QueryFacts, Signed), Error> {
        let now = alpr_pki::now_unix();
        let (query, investigator) = match self.check_local(peer, &signed_query, now) {
            Ok(v) => v,
            Err((e, facts)) => {
                let mut entry = facts_entry(Event::OutboundQuery, Decision::Refused, now, &facts);
                entry.reason_code = Some(e.reason().as_str_name().into());
                entry.detail = Some(e.detail());
                entry.decided_by = Some(self.ori().to_owned());
                self.audit(&[entry])?;
                return Err(Error::Refused(e));
            }
        };
        let endorsed = envelope::endorse(&self.signer, self.ori(), signed_query, now)?;
        let facts = QueryFacts {
            endorser: None,
            investigator: Some(investigator),
            query: Some(query.clone()),
        };
        let sent = facts_entry(Event::OutboundQuery, Decision::Endorsed, now, &facts);
        // Nothing is sent before the outbound entry is durable.
        self.audit(&[sent])?;
        Ok((query, facts, endorsed))
    }

    /// Log the per-target results and hand them over, unless the account was disabled
    /// while the query was in flight.
    fn deliver_outbound(
        &self,
        query: &Query,
        facts: &QueryFacts,
        mut response: RouteResponse,
    ) -> Result<RouteResponse, Error> {
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
            let mut entry = facts_entry(Event::OutboundResult, Decision::Withheld, done, facts);
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
        let mut signers: Vec<Option<String>> = Vec::with_capacity(query.targets.len());
        for t in &query.targets {
            let r = by_target.remove(t).unwrap_or_else(|| TargetResult {
                ori: t.clone(),
                status: TargetStatus::BadReply as i32,
                reason: RefusalReason::BadReply as i32,
                detail: "the broker returned no result for this target".into(),
                reply: None,
                decided_by: "broker".into(),
            });
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

    /// Validate and store streamed reads; returns the summary.
    pub fn ingest_reads(&self, reads: Vec<Read>, by: &str) -> Result<IngestSummary, Error> {
        let mut ok = Vec::with_capacity(reads.len());
        let mut errors = Vec::new();
        let mut rejected = 0u64;
        for (i, r) in reads.into_iter().enumerate() {
            match crate::ingest::validate_read(r) {
                Ok(r) => ok.push(r),
                Err(e) => {
                    rejected += 1;
                    if errors.len() < 100 {
                        errors.push(format!("read {}: {e}", i + 1));
                    }
                }
            }
        }
        let mut stored = 0;
        for chunk in ok.chunks(crate::ingest::BATCH) {
            stored += self.store_reads(chunk)?.stored;
        }
        self.audit(&[AuditEntry {
            count: Some(stored),
            requester_user: Some(by.into()),
            detail: Some(format!(
                "stream ingest: {} accepted ({stored} new, {} already stored), {rejected} rejected",
                ok.len(),
                ok.len() as u64 - stored
            )),
            ..AuditEntry::new(
                alpr_pki::now_unix(),
                Event::Ingest,
                if rejected == 0 {
                    Decision::Ok
                } else {
                    Decision::Partial
                },
            )
        }])?;
        Ok(IngestSummary {
            accepted: ok.len() as u64,
            rejected,
            errors,
        })
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

#[tonic::async_trait]
impl NodeInbound for NodeService {
    async fn answer_query(&self, request: Request<Signed>) -> Result<Response<Signed>, Status> {
        let span = alpr_runtime::telemetry::server_span("node.answer", request.metadata());
        let peer =
            alpr_runtime::server::peer_identity(&request, &self.node.trust(), alpr_pki::now_unix())
                .map_err(Error::from);
        let node = self.node.clone();
        let endorsed = request.into_inner();
        let reply = tokio::task::spawn_blocking(move || {
            span.in_scope(|| node.answer_forwarded(peer, &endorsed))
        })
        .await
        .map_err(|e| Status::internal(e.to_string()))?
        .map_err(|e| e.to_status())?;
        Ok(Response::new(reply))
    }
}

#[tonic::async_trait]
impl NodeLocal for NodeService {
    async fn search(
        &self,
        request: Request<SearchRequest>,
    ) -> Result<Response<RouteResponse>, Status> {
        let peer =
            alpr_runtime::server::peer_identity(&request, &self.node.trust(), alpr_pki::now_unix())
                .map_err(Error::from);
        let span = alpr_runtime::telemetry::server_span("node.search", request.metadata());
        let bytes = request.into_inner().signed_query;
        self.node
            .search(peer, bytes)
            .instrument(span)
            .await
            .map(Response::new)
            .map_err(|e| e.to_status())
    }

    async fn ingest(
        &self,
        request: Request<Streaming<Read>>,
    ) -> Result<Response<IngestSummary>, Status> {
        let peer =
            alpr_runtime::server::peer_identity(&request, &self.node.trust(), alpr_pki::now_unix())
                .map_err(|e| Status::unauthenticated(e.to_string()))?;
        if !matches!(peer.role, Role::Admin | Role::Node) || peer.ori() != Some(self.node.ori()) {
            return Err(Status::permission_denied(format!(
                "only this agency's admin or node may ingest; peer is {}",
                peer.describe()
            )));
        }
        let mut stream = request.into_inner();
        let mut reads = Vec::new();
        while let Some(r) = stream.message().await? {
            reads.push(r);
            if reads.len() > 5_000_000 {
                return Err(Status::resource_exhausted(
                    "stream at most 5,000,000 reads per call",
                ));
            }
        }
        let node = self.node.clone();
        let by = peer.describe();
        let summary = tokio::task::spawn_blocking(move || node.ingest_reads(reads, &by))
            .await
            .map_err(|e| Status::internal(e.to_string()))?
            .map_err(|e| e.to_status())?;
        Ok(Response::new(summary))
    }
}

#[tonic::async_trait]
impl NodeAdmin for NodeService {
    async fn admin(
        &self,
        request: Request<AdminRequest>,
    ) -> Result<Response<AdminResponse>, Status> {
        let peer =
            alpr_runtime::server::peer_identity(&request, &self.node.trust(), alpr_pki::now_unix())
                .map_err(|e| Status::unauthenticated(e.to_string()))?;
        let node = self.node.clone();
        let req = request.into_inner();
        let message = tokio::task::spawn_blocking(move || node.admin(&peer, req))
            .await
            .map_err(|e| Status::internal(e.to_string()))?
            .map_err(|e| e.to_status())?;
        Ok(Response::new(AdminResponse { message }))
    }
}
