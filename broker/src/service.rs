//! The broker's gRPC service.

use std::sync::Arc;

use alpr_proto::pb::broker_server::Broker as BrokerRpc;
use alpr_proto::pb::{
    AgreementEntry, AgreementList, AnchorRequest, AppendResponse, AuditAnchor, AuditAnchorChain,
    AuditAnchorChainRequest, AuditAnchorRequest, AuditAnchorState, ConsistencyRequest, Entries,
    EntriesRequest, InclusionRequest, ListAgreementsRequest, Proof, RefusalCount, RouteResponse,
    RoutingHead, RoutingHeadRequest, RoutingStats, RoutingStatsRequest, Signed, SignedAgreement,
    SignedTreeHead, Subjects, SubjectsRequest, SubmitAgreementResponse, TreeHeadRequest,
};
use tonic::{Request, Response, Status};
use tracing::Instrument;

use crate::Error;
use crate::broker::Broker;

/// gRPC front of the broker.
#[derive(Clone, Debug)]
pub struct BrokerService {
    broker: Arc<Broker>,
}

impl BrokerService {
    /// A service over `broker`.
    pub fn new(broker: Arc<Broker>) -> Self {
        Self { broker }
    }
}

#[tonic::async_trait]
impl BrokerRpc for BrokerService {
    async fn route_query(
        &self,
        request: Request<Signed>,
    ) -> Result<Response<RouteResponse>, Status> {
        let peer = alpr_runtime::server::peer_identity(
            &request,
            &self.broker.trust(),
            alpr_pki::now_unix(),
        )
        .map_err(Error::from);
        let span = alpr_runtime::telemetry::server_span("broker.route", request.metadata());
        let endorsed = request.into_inner();
        self.broker
            .route(peer, endorsed)
            .instrument(span)
            .await
            .map(Response::new)
            .map_err(|e| e.to_status())
    }

    async fn report_hit(
        &self,
        request: Request<alpr_proto::pb::HitReport>,
    ) -> Result<Response<alpr_proto::pb::HitReceipt>, Status> {
        let peer = alpr_runtime::server::peer_identity(
            &request,
            &self.broker.trust(),
            alpr_pki::now_unix(),
        )
        .map_err(Error::from);
        let span = alpr_runtime::telemetry::server_span("broker.report_hit", request.metadata());
        self.broker
            .report_hit(peer, request.into_inner())
            .instrument(span)
            .await
            .map(Response::new)
            .map_err(|e| e.to_status())
    }

    async fn submit_agreement(
        &self,
        request: Request<SignedAgreement>,
    ) -> Result<Response<SubmitAgreementResponse>, Status> {
        let peer = alpr_runtime::server::peer_identity(
            &request,
            &self.broker.trust(),
            alpr_pki::now_unix(),
        )
        .map_err(|e| Status::unauthenticated(e.to_string()))?;
        let sa = request.into_inner();
        let broker = self.broker.clone();
        let (id, index, head) = tokio::task::spawn_blocking(move || broker.register(&peer, &sa))
            .await
            .map_err(|e| Status::internal(e.to_string()))?
            .map_err(|e| e.to_status())?;
        Ok(Response::new(SubmitAgreementResponse {
            agreement_id: id,
            index,
            head: Some(head),
        }))
    }

    async fn list_agreements(
        &self,
        request: Request<ListAgreementsRequest>,
    ) -> Result<Response<AgreementList>, Status> {
        alpr_runtime::server::peer_identity(&request, &self.broker.trust(), alpr_pki::now_unix())
            .map_err(|e| Status::unauthenticated(e.to_string()))?;
        let ori = request.into_inner().ori;
        let list = self
            .broker
            .list((!ori.is_empty()).then_some(ori.as_str()))
            .map_err(|e| e.to_status())?
            .into_iter()
            .map(|(v, sa)| AgreementEntry {
                agreement_id: v.id,
                agreement: Some(sa),
                status: v.status.as_str().into(),
            })
            .collect();
        Ok(Response::new(AgreementList { agreements: list }))
    }

    async fn act_on_agreement(
        &self,
        request: Request<Signed>,
    ) -> Result<Response<AppendResponse>, Status> {
        let peer = self.peer(&request)?;
        let action = request.into_inner();
        let broker = self.broker.clone();
        let (index, head) = tokio::task::spawn_blocking(move || broker.act(&peer, &action))
            .await
            .map_err(|e| Status::internal(e.to_string()))?
            .map_err(|e| e.to_status())?;
        Ok(Response::new(AppendResponse {
            index,
            head: Some(head),
        }))
    }

    async fn get_tree_head(
        &self,
        request: Request<TreeHeadRequest>,
    ) -> Result<Response<SignedTreeHead>, Status> {
        self.peer(&request)?;
        self.broker
            .head()
            .map(Response::new)
            .map_err(|e| e.to_status())
    }

    async fn get_entries(
        &self,
        request: Request<EntriesRequest>,
    ) -> Result<Response<Entries>, Status> {
        self.peer(&request)?;
        let r = request.into_inner();
        Ok(Response::new(Entries {
            leaves: self.broker.entries(r.start, r.end),
        }))
    }

    async fn get_inclusion_proof(
        &self,
        request: Request<InclusionRequest>,
    ) -> Result<Response<Proof>, Status> {
        self.peer(&request)?;
        let r = request.into_inner();
        let hashes = self
            .broker
            .inclusion(r.index, r.tree_size)
            .map_err(|e| e.to_status())?;
        Ok(Response::new(Proof {
            hashes: hashes.iter().map(|h| h.to_vec()).collect(),
        }))
    }

    async fn get_consistency_proof(
        &self,
        request: Request<ConsistencyRequest>,
    ) -> Result<Response<Proof>, Status> {
        self.peer(&request)?;
        let r = request.into_inner();
        let hashes = self
            .broker
            .consistency(r.first, r.second)
            .map_err(|e| e.to_status())?;
        Ok(Response::new(Proof {
            hashes: hashes.iter().map(|h| h.to_vec()).collect(),
        }))
    }

    async fn get_subjects(
        &self,
        request: Request<SubjectsRequest>,
    ) -> Result<Response<Subjects>, Status> {
        self.peer(&request)?;
        let r = request.into_inner();
        let broker = self.broker.clone();
        tokio::task::spawn_blocking(move || broker.subjects(&r))
            .await
            .map_err(|e| Status::internal(e.to_string()))?
            .map(Response::new)
            .map_err(|e| e.to_status())
    }

    async fn cosign(&self, request: Request<Signed>) -> Result<Response<SignedTreeHead>, Status> {
        let peer = self.peer(&request)?;
        let cosig = request.into_inner();
        let broker = self.broker.clone();
        let sth = tokio::task::spawn_blocking(move || broker.cosign(&peer, &cosig))
            .await
            .map_err(|e| Status::internal(e.to_string()))?
            .map_err(|e| e.to_status())?;
        Ok(Response::new(sth))
    }

    async fn get_routing_stats(
        &self,
        request: Request<RoutingStatsRequest>,
    ) -> Result<Response<RoutingStats>, Status> {
        self.routing_stats_inner(request).await
    }

    async fn publish_sealing_key(
        &self,
        request: Request<Signed>,
    ) -> Result<Response<AppendResponse>, Status> {
        let peer = self.peer(&request)?;
        let key = request.into_inner();
        let broker = self.broker.clone();
        let (index, head) =
            tokio::task::spawn_blocking(move || broker.publish_sealing_key(&peer, &key))
                .await
                .map_err(|e| Status::internal(e.to_string()))?
                .map_err(|e| e.to_status())?;
        Ok(Response::new(AppendResponse {
            index,
            head: Some(head),
        }))
    }

    async fn anchor_audit(
        &self,
        request: Request<AnchorRequest>,
    ) -> Result<Response<AuditAnchor>, Status> {
        let peer = self.peer(&request)?;
        let req = request.into_inner();
        let broker = self.broker.clone();
        let anchor = tokio::task::spawn_blocking(move || broker.anchor_audit(&peer, &req))
            .await
            .map_err(|e| Status::internal(e.to_string()))?
            .map_err(|e| e.to_status())?;
        Ok(Response::new(anchor))
    }

    async fn get_audit_anchor_chain(
        &self,
        request: Request<AuditAnchorChainRequest>,
    ) -> Result<Response<AuditAnchorChain>, Status> {
        self.peer(&request)?;
        let r = request.into_inner();
        let broker = self.broker.clone();
        let links =
            tokio::task::spawn_blocking(move || broker.audit_anchor_chain(&r.ori, r.after_size))
                .await
                .map_err(|e| Status::internal(e.to_string()))?
                .map_err(|e| e.to_status())?;
        Ok(Response::new(AuditAnchorChain { links }))
    }

    async fn cosign_audit(
        &self,
        request: Request<Signed>,
    ) -> Result<Response<AuditAnchor>, Status> {
        let peer = self.peer(&request)?;
        let cosig = request.into_inner();
        let broker = self.broker.clone();
        let a = tokio::task::spawn_blocking(move || broker.cosign_audit(&peer, &cosig))
            .await
            .map_err(|e| Status::internal(e.to_string()))?
            .map_err(|e| e.to_status())?;
        Ok(Response::new(a))
    }

    async fn get_routing_head(
        &self,
        request: Request<RoutingHeadRequest>,
    ) -> Result<Response<RoutingHead>, Status> {
        self.peer(&request)?;
        let from = request.into_inner().from_size;
        let broker = self.broker.clone();
        let head = tokio::task::spawn_blocking(move || broker.routing_head(from))
            .await
            .map_err(|e| Status::internal(e.to_string()))?
            .map_err(|e| e.to_status())?;
        Ok(Response::new(head))
    }

    async fn cosign_routing(
        &self,
        request: Request<Signed>,
    ) -> Result<Response<RoutingHead>, Status> {
        let peer = self.peer(&request)?;
        let cosig = request.into_inner();
        let broker = self.broker.clone();
        let head = tokio::task::spawn_blocking(move || broker.cosign_routing(&peer, &cosig))
            .await
            .map_err(|e| Status::internal(e.to_string()))?
            .map_err(|e| e.to_status())?;
        Ok(Response::new(head))
    }

    async fn get_audit_anchor(
        &self,
        request: Request<AuditAnchorRequest>,
    ) -> Result<Response<AuditAnchorState>, Status> {
        self.peer(&request)?;
        let ori = request.into_inner().ori;
        let broker = self.broker.clone();
        let latest = tokio::task::spawn_blocking(move || broker.audit_anchor(&ori))
            .await
            .map_err(|e| Status::internal(e.to_string()))?
            .map_err(|e| e.to_status())?;
        Ok(Response::new(AuditAnchorState { latest }))
    }
}

impl BrokerService {
    async fn routing_stats_inner(
        &self,
        request: Request<RoutingStatsRequest>,
    ) -> Result<Response<RoutingStats>, Status> {
        let peer = self.peer(&request)?;
        if peer.role != alpr_pki::Role::Regulator {
            return Err(Status::permission_denied(
                "routing statistics are for regulators",
            ));
        }
        let (rows, forwarded) =
            crate::store::routing_stats(&self.broker.db()).map_err(|e| e.to_status())?;
        Ok(Response::new(RoutingStats {
            refusals: rows
                .into_iter()
                .map(|(reason, target, count)| RefusalCount {
                    reason,
                    target,
                    count,
                })
                .collect(),
            forwarded,
        }))
    }

    fn peer<T>(&self, request: &Request<T>) -> Result<alpr_pki::VerifiedIdentity, Status> {
        alpr_runtime::server::peer_identity(request, &self.broker.trust(), alpr_pki::now_unix())
            .map_err(|e| Status::unauthenticated(e.to_string()))
    }
}
