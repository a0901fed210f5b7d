//! The broker's gRPC service.

use std::sync::Arc;

use alpr_proto::pb::broker_server::Broker as BrokerRpc;
use alpr_proto::pb::{
    AgreementEntry, AgreementList, ListAgreementsRequest, RouteResponse, Signed, SignedAgreement,
    SubmitAgreementResponse,
};
use alpr_proto::transport;
use tonic::{Request, Response, Status};

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
        let peer = transport::peer_identity(&request, &self.broker.trust, alpr_pki::now_unix())
            .map_err(Error::from);
        let endorsed = request.into_inner();
        self.broker
            .route(peer, endorsed)
            .await
            .map(Response::new)
            .map_err(|e| e.to_status())
    }

    async fn submit_agreement(
        &self,
        request: Request<SignedAgreement>,
    ) -> Result<Response<SubmitAgreementResponse>, Status> {
        let peer = transport::peer_identity(&request, &self.broker.trust, alpr_pki::now_unix())
            .map_err(|e| Status::unauthenticated(e.to_string()))?;
        let sa = request.into_inner();
        let broker = self.broker.clone();
        let id = tokio::task::spawn_blocking(move || broker.register(&peer, &sa))
            .await
            .map_err(|e| Status::internal(e.to_string()))?
            .map_err(|e| e.to_status())?;
        Ok(Response::new(SubmitAgreementResponse { agreement_id: id }))
    }

    async fn list_agreements(
        &self,
        request: Request<ListAgreementsRequest>,
    ) -> Result<Response<AgreementList>, Status> {
        transport::peer_identity(&request, &self.broker.trust, alpr_pki::now_unix())
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
}
