//! The node's gRPC services: inbound (from the broker) and local (its own people).

use std::sync::Arc;

use alpr_pki::Role;
use alpr_proto::pb::node_admin_server::NodeAdmin;
use alpr_proto::pb::node_inbound_server::NodeInbound;
use alpr_proto::pb::node_local_server::NodeLocal;
use alpr_proto::pb::{
    AdminRequest, AdminResponse, HitReceipt, HitReport, IngestSummary, Read, RouteResponse,
    SealedReply, SearchRequest, Signed,
};
use tonic::{Request, Response, Status, Streaming};
use tracing::Instrument;

use crate::Error;
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

/// How the node answers one forwarded query ([`Node::answer_forwarded`],
/// [`Node::answer_sealed`]).
type Answerer<T> =
    fn(&Node, Result<alpr_pki::VerifiedIdentity, Error>, &Signed) -> Result<T, Error>;

impl NodeService {
    /// One forwarded query, clear or sealed: the broker's identity from TLS, then `answer`
    /// (blocking: signatures, database, signing) on the blocking pool inside the
    /// `node.answer` span.
    async fn answer<T: Send + 'static>(
        &self,
        request: Request<Signed>,
        answer: Answerer<T>,
    ) -> Result<Response<T>, Status> {
        let span = alpr_runtime::telemetry::server_span("node.answer", request.metadata());
        let peer =
            alpr_runtime::server::peer_identity(&request, &self.node.trust(), alpr_pki::now_unix())
                .map_err(Error::from);
        let node = self.node.clone();
        let endorsed = request.into_inner();
        let reply =
            tokio::task::spawn_blocking(move || span.in_scope(|| answer(&node, peer, &endorsed)))
                .await
                .map_err(|e| Status::internal(e.to_string()))?
                .map_err(|e| e.to_status())?;
        Ok(Response::new(reply))
    }
}

#[tonic::async_trait]
impl NodeInbound for NodeService {
    async fn answer_query(&self, request: Request<Signed>) -> Result<Response<Signed>, Status> {
        self.answer(request, Node::answer_forwarded).await
    }

    async fn answer_sealed(
        &self,
        request: Request<Signed>,
    ) -> Result<Response<SealedReply>, Status> {
        self.answer(request, Node::answer_sealed).await
    }

    async fn receive_hit(
        &self,
        request: Request<HitReport>,
    ) -> Result<Response<HitReceipt>, Status> {
        let peer =
            alpr_runtime::server::peer_identity(&request, &self.node.trust(), alpr_pki::now_unix())
                .map_err(Error::from);
        let node = self.node.clone();
        let report = request.into_inner();
        tokio::task::spawn_blocking(move || node.receive_hit(peer, &report))
            .await
            .map_err(|e| Status::internal(e.to_string()))?
            .map(Response::new)
            .map_err(|e| e.to_status())
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
