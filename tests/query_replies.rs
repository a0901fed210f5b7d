//! Replies are verified on the way back: a target node that signs a misleading answer
//! (another requester, another provider, another plate or state, outside the window, no
//! re-dissemination mark) is reported as BAD_REPLY, never as answered, and logged as such
//! by the broker and by the requesting node, naming the signer.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::{Arc, Mutex};

use alpr_federation::{Federation, demo_agencies, params, synthetic_csv};
use alpr_pki::Signer;
use alpr_proto::RefusalReason;
use alpr_proto::envelope::{self, ANSWER, REFUSAL};
use alpr_proto::pb::node_inbound_server::{NodeInbound, NodeInboundServer};
use alpr_proto::pb::{
    Answer, Endorsement, Query, Read, Refusal, Signed, TargetResult, TargetStatus,
};
use alpr_runtime::tls::TlsIdentity;
use prost::Message;
use tonic::{Request, Response, Status};

const VENTURA: &str = "CA0560100";
const SACRAMENTO: &str = "CA0340000";
const FRESNO: &str = "CA0100500";

/// How the compromised node bends its answer.
#[derive(Clone, Copy, Debug)]
enum Lie {
    Honest,
    OtherUser,
    OtherProvider,
    OtherPlate,
    OtherState,
    OutsideWindow,
    MayRedisseminate,
    OtherQueryId,
}

/// A node inbound service holding Ventura's real node key, answering as told.
struct Compromised {
    signer: Signer,
    lie: Arc<Mutex<Lie>>,
}

fn nested_query(endorsed: &Signed) -> Query {
    let e = Endorsement::decode(endorsed.payload.as_slice()).unwrap();
    let inner = Signed::decode(e.signed_query.as_slice()).unwrap();
    Query::decode(inner.payload.as_slice()).unwrap()
}

#[tonic::async_trait]
impl NodeInbound for Compromised {
    async fn answer_query(&self, request: Request<Signed>) -> Result<Response<Signed>, Status> {
        let q = nested_query(request.get_ref());
        let lie = *self.lie.lock().unwrap();
        let mut read = Read {
            plate: q.plate.clone(),
            plate_state: q.plate_state.clone(),
            captured_at: q.window_end - 3_600,
            camera_id: "VENTU-CAM-01".into(),
            latitude: 34.27,
            longitude: -119.23,
        };
        let mut a = Answer {
            query_id: q.query_id.clone(),
            provider_ori: VENTURA.into(),
            requester_ori: q.requester_ori.clone(),
            requester_user: q.requester_user.clone(),
            reads: vec![],
            not_for_redissemination: true,
            answered_at: alpr_pki::now_unix(),
            ..Default::default()
        };
        match lie {
            Lie::Honest => {}
            Lie::OtherUser => a.requester_user = "inv-somebody-else".into(),
            Lie::OtherProvider => a.provider_ori = FRESNO.into(),
            Lie::OtherPlate => read.plate = "7ZZZ999".into(),
            Lie::OtherState => read.plate_state = "NV".into(),
            Lie::OutsideWindow => read.captured_at = q.window_start - 86_400,
            Lie::MayRedisseminate => a.not_for_redissemination = false,
            Lie::OtherQueryId => a.query_id = vec![0xAB; 16],
        }
        a.reads.push(read);
        Ok(Response::new(
            envelope::seal(&self.signer, ANSWER, &a).unwrap(),
        ))
    }

    async fn answer_sealed(
        &self,
        _request: Request<Signed>,
    ) -> Result<Response<alpr_proto::pb::SealedReply>, Status> {
        // This federation sends in the clear (the harness default).
        Err(Status::unimplemented("clear queries only"))
    }

    async fn receive_hit(
        &self,
        _request: Request<alpr_proto::pb::HitReport>,
    ) -> Result<Response<alpr_proto::pb::HitReceipt>, Status> {
        Err(Status::unimplemented("shares no hot lists"))
    }
}

/// Replace Ventura's real node with the compromised one on the same address.
async fn compromise_ventura(fed: &mut Federation) -> Arc<Mutex<Lie>> {
    let running = fed.nodes.remove(VENTURA).unwrap();
    let addr = running.addr;
    running.stop().await.unwrap();
    let (cert, key) = fed.pki.node(VENTURA);
    let tls = TlsIdentity::load(&cert, &key).unwrap();
    let cfg = alpr_runtime::tls::server_config(&fed.trust, &tls).unwrap();
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_reuseaddr(true).unwrap();
    socket.bind(addr).unwrap();
    let listener = socket.listen(64).unwrap();
    let lie = Arc::new(Mutex::new(Lie::Honest));
    let svc = Compromised {
        signer: fed.node_signer(VENTURA).unwrap(),
        lie: lie.clone(),
    };
    let router = alpr_runtime::server::guarded_server(
        alpr_runtime::undecodable::RefuseUndecodable::warn_only(),
    )
    .add_service(NodeInboundServer::new(svc));
    let shared = Arc::new(std::sync::RwLock::new(cfg));
    tokio::spawn(alpr_runtime::server::serve(
        router,
        listener,
        shared,
        std::future::pending(),
    ));
    lie
}

#[tokio::test]
async fn misleading_answers_are_bad_replies_logged_with_their_signer() {
    let mut fed = Federation::start_clear(&demo_agencies()[..3])
        .await
        .unwrap();
    fed.ingest_csv(FRESNO, &synthetic_csv(FRESNO, &["8ABC123"], 5))
        .unwrap();
    for provider in [VENTURA, FRESNO] {
        fed.agree(Federation::terms(
            provider,
            SACRAMENTO,
            &["240"],
            30,
            86_400,
        ))
        .await
        .unwrap();
    }
    fed.sync(&[SACRAMENTO]).await.unwrap();
    let lie = compromise_ventura(&mut fed).await;

    // Honest first: the fake node is reachable and its correct answer passes.
    let (_, resp) = fed
        .search(SACRAMENTO, &params("8ABC123", &[VENTURA, FRESNO], "240", 3))
        .await
        .unwrap();
    assert_eq!(
        resp.results[0].status,
        TargetStatus::Answered as i32,
        "{:?}",
        resp.results[0]
    );

    for (l, needle) in [
        (Lie::OtherUser, "bound to requester inv-somebody-else@"),
        (Lie::OtherProvider, "claims to come from \"CA0100500\""),
        (Lie::OtherPlate, "of plate \"7ZZZ999\""),
        (Lie::OtherState, "issued by \"NV\""),
        (Lie::OutsideWindow, "outside the query's window"),
        (Lie::MayRedisseminate, "not-for-redissemination"),
        (Lie::OtherQueryId, "another query"),
    ] {
        *lie.lock().unwrap() = l;
        let (q, resp) = fed
            .search(SACRAMENTO, &params("8ABC123", &[VENTURA, FRESNO], "240", 3))
            .await
            .unwrap();
        let v = &resp.results[0];
        assert_eq!(v.ori, VENTURA);
        assert_eq!(v.status, TargetStatus::BadReply as i32, "{l:?}: {v:?}");
        assert_eq!(v.reason, RefusalReason::BadReply as i32, "{l:?}");
        assert!(v.detail.contains(needle), "{l:?}: {}", v.detail);
        assert!(
            v.detail.contains("CA0560100 (node)"),
            "names the signer: {}",
            v.detail
        );
        assert!(
            v.reply.is_none(),
            "a bad reply is not passed on as if it were one"
        );
        // The honest target still answered: partial results keep working.
        assert_eq!(resp.results[1].status, TargetStatus::Answered as i32);
        // The requesting node logged it as a bad reply, not as answered.
        let qid = hex::encode(&q.query_id);
        let logged: Vec<_> = fed
            .audit(SACRAMENTO, Some("outbound_result"))
            .unwrap()
            .into_iter()
            .filter(|e| e.entry.query_id.as_deref() == Some(qid.as_str()))
            .collect();
        let bad = logged
            .iter()
            .find(|e| e.entry.target.as_deref() == Some(VENTURA))
            .unwrap();
        assert_eq!(bad.entry.decision, "bad_reply", "{l:?}");
        assert_eq!(bad.entry.reason_code.as_deref(), Some("BAD_REPLY"));
        assert!(
            bad.entry
                .detail
                .as_deref()
                .unwrap()
                .contains("CA0560100 (node)")
        );
        // So did the broker.
        let routed = fed.broker.broker.flush_log().await;
        routed.unwrap();
        assert!(
            fed.broker_log()
                .unwrap()
                .iter()
                .any(|e| e.event == "route_result"
                    && e.query_id.as_deref() == Some(qid.as_str())
                    && e.decision == "bad_reply"),
            "{l:?}: broker route_result"
        );
    }
    fed.stop().await.unwrap();
}

/// The requesting node re-checks what the broker relays: a compromised broker that
/// relays a misleading answer as ANSWERED, or claims ANSWERED with nothing signed, or
/// passes a signed answer off as a refusal, is caught there.
#[tokio::test]
async fn the_requesting_node_rechecks_whatever_the_broker_relays() {
    let fed = Federation::start_clear(&demo_agencies()[..2])
        .await
        .unwrap();
    let (q, _) = fed
        .sign_query(SACRAMENTO, &params("8ABC123", &[VENTURA], "240", 3))
        .unwrap();
    let ventura = fed.node_signer(VENTURA).unwrap();
    let now = alpr_pki::now_unix();
    let answer = |user: &str| Answer {
        query_id: q.query_id.clone(),
        provider_ori: VENTURA.into(),
        requester_ori: q.requester_ori.clone(),
        requester_user: user.into(),
        not_for_redissemination: true,
        ..Default::default()
    };
    let relayed = |status: TargetStatus, reply: Option<Signed>| TargetResult {
        ori: VENTURA.into(),
        status: status as i32,
        reply,
        decided_by: VENTURA.into(),
        ..Default::default()
    };
    let check = |r| alpr_node::outbound::check_result(&fed.trust, &q, r, now);

    let good = envelope::seal(&ventura, ANSWER, &answer(&q.requester_user)).unwrap();
    let (r, signer) = check(relayed(TargetStatus::Answered, Some(good.clone())));
    assert_eq!(r.status, TargetStatus::Answered as i32);
    assert_eq!(signer.as_deref(), Some("CA0560100 (node)"));

    let wrong_user = envelope::seal(&ventura, ANSWER, &answer("inv-other")).unwrap();
    let (r, signer) = check(relayed(TargetStatus::Answered, Some(wrong_user)));
    assert_eq!(r.status, TargetStatus::BadReply as i32);
    assert_eq!(r.reason, RefusalReason::BadReply as i32);
    assert!(r.reply.is_none());
    assert_eq!(
        signer.as_deref(),
        Some("CA0560100 (node)"),
        "the signer is named"
    );

    let (r, _) = check(relayed(TargetStatus::Answered, None));
    assert_eq!(r.status, TargetStatus::BadReply as i32);
    assert!(r.detail.contains("without a signed reply"), "{}", r.detail);

    let (r, _) = check(relayed(TargetStatus::Refused, Some(good)));
    assert_eq!(r.status, TargetStatus::BadReply as i32);
    assert!(
        r.detail.contains("relayed as TARGET_STATUS_REFUSED"),
        "{}",
        r.detail
    );

    // A signed refusal's own reason wins over what the broker says it was.
    let refusal = Refusal {
        query_id: q.query_id.clone(),
        provider_ori: VENTURA.into(),
        reason: RefusalReason::NodeRefusing as i32,
        detail: "refusing all".into(),
        ..Default::default()
    };
    let signed = envelope::seal(&ventura, REFUSAL, &refusal).unwrap();
    let mut claimed = relayed(TargetStatus::Answered, Some(signed));
    claimed.reason = RefusalReason::NoAgreement as i32;
    let (r, _) = check(claimed);
    assert_eq!(r.status, TargetStatus::Refused as i32);
    assert_eq!(r.reason, RefusalReason::NodeRefusing as i32);
    fed.stop().await.unwrap();
}
