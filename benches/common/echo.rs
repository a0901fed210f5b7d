//! The hops floor of the query benchmark (issue 19): a raw tonic echo over the same
//! mandatory mutual-TLS hops as one routed query — investigator → requesting node →
//! broker → every target, and back — with the same message sizes (measured on the real
//! federation in the same run), the same certificates, and the same ECDSA P-256 signs and
//! verifies at each party as the product makes (see the table in `benches/query.rs`), and
//! nothing else: no database, no audit log, no admission, no sealing, no policy. What the
//! product does on top of this floor is what DESIGN requires besides moving and signing
//! bytes; the budget is the product's throughput >= 50% of the floor's.

use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use alpr_pki::TrustStore;
use alpr_proto::pb::Signed;
use alpr_runtime::client::Target;
use alpr_runtime::tls::{TlsIdentity, client_config, server_config};
use anyhow::{Result, anyhow};
use ring::rand::SystemRandom;
use ring::signature::{
    ECDSA_P256_SHA256_ASN1, ECDSA_P256_SHA256_ASN1_SIGNING, EcdsaKeyPair, KeyPair,
    UnparsedPublicKey,
};
use tokio::net::TcpListener;
use tonic::Status;
use tonic::codegen::{BoxFuture, Service, http};
use tonic::transport::Channel;

/// The one method every hop serves.
const PATH: &str = "/alpr.bench.Echo/Hop";

/// The encoded sizes of one routed query's messages, bytes.
#[derive(Clone, Copy, Debug)]
pub struct Sizes {
    /// The investigator's signed query (investigator → node).
    pub query: usize,
    /// The node's endorsement with every box attached (node → broker).
    pub endorsed: usize,
    /// What the broker sends one target (the endorsement with that target's box).
    pub forwarded: usize,
    /// One target's signed answer (target → broker).
    pub answer: usize,
    /// The whole route response (broker → node → investigator).
    pub response: usize,
}

/// One party's key, and a signature of the same size as the product's to verify.
struct Crypto {
    key: EcdsaKeyPair,
    rng: SystemRandom,
    public: UnparsedPublicKey<Vec<u8>>,
    msg: Vec<u8>,
    sig: Vec<u8>,
}

impl Crypto {
    fn new() -> Result<Self> {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &rng)
            .map_err(|_| anyhow!("keygen"))?;
        let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, pkcs8.as_ref(), &rng)
            .map_err(|_| anyhow!("key"))?;
        // A message the size of a signed query's signing input, as in the crypto floor.
        let msg = alpr_proto::envelope::signing_input(alpr_proto::envelope::QUERY, &[0x5a; 400]);
        let sig = key
            .sign(&rng, &msg)
            .map_err(|_| anyhow!("sign"))?
            .as_ref()
            .to_vec();
        let public =
            UnparsedPublicKey::new(&ECDSA_P256_SHA256_ASN1, key.public_key().as_ref().to_vec());
        Ok(Self {
            key,
            rng,
            public,
            msg,
            sig,
        })
    }

    fn sign(&self, n: usize) -> Result<(), Status> {
        for _ in 0..n {
            std::hint::black_box(
                self.key
                    .sign(&self.rng, &self.msg)
                    .map_err(|_| Status::internal("sign"))?,
            );
        }
        Ok(())
    }

    fn verify(&self, n: usize) -> Result<(), Status> {
        for _ in 0..n {
            self.public
                .verify(std::hint::black_box(&self.msg), &self.sig)
                .map_err(|_| Status::internal("verify"))?;
        }
        Ok(())
    }
}

/// A message of `len` encoded bytes (near enough: the payload is `len` less the framing).
fn message(len: usize) -> Signed {
    Signed {
        payload_type: "alpr.bench.Echo".into(),
        payload: vec![0x5a; len.saturating_sub(24)],
        ..Default::default()
    }
}

/// One unary call of the hop method.
async fn call(ch: &Channel, len: usize) -> Result<Signed, Status> {
    let mut g = tonic::client::Grpc::new(ch.clone());
    g.ready()
        .await
        .map_err(|e| Status::unavailable(e.to_string()))?;
    let reply = g
        .unary(
            tonic::Request::new(message(len)),
            http::uri::PathAndQuery::from_static(PATH),
            tonic_prost::ProstCodec::<Signed, Signed>::default(),
        )
        .await?;
    Ok(reply.into_inner())
}

/// What a hop does with a request, by the party it stands in for.
enum Role {
    /// The requesting node: opens the query (1 verify), endorses it (1 sign), sends it to
    /// the broker, verifies every target's relayed answer again (1 verify each).
    Node { broker: Channel, targets: usize },
    /// The broker: opens the endorsement and the nested query (2 verifies), forwards to
    /// every target at once, opens each answer (1 verify each).
    Broker { targets: Vec<Channel> },
    /// A target: opens the endorsement and the nested query (2 verifies), signs its answer.
    Target,
}

struct HopInner {
    role: Role,
    crypto: Crypto,
    sizes: Sizes,
}

impl HopInner {
    async fn handle(&self, _req: Signed) -> Result<Signed, Status> {
        let s = self.sizes;
        match &self.role {
            Role::Target => {
                self.crypto.verify(2)?;
                self.crypto.sign(1)?;
                Ok(message(s.answer))
            }
            Role::Broker { targets } => {
                self.crypto.verify(2)?;
                let replies =
                    futures::future::join_all(targets.iter().map(|t| call(t, s.forwarded))).await;
                for r in replies {
                    r?;
                    self.crypto.verify(1)?;
                }
                Ok(message(s.response))
            }
            Role::Node { broker, targets } => {
                self.crypto.verify(1)?;
                self.crypto.sign(1)?;
                call(broker, s.endorsed).await?;
                self.crypto.verify(*targets)?;
                Ok(message(s.response))
            }
        }
    }
}

/// A hop as a tonic service (what `tonic-build` generates for one unary method).
#[derive(Clone)]
struct Hop(Arc<HopInner>);

impl tonic::server::NamedService for Hop {
    const NAME: &'static str = "alpr.bench.Echo";
}

struct Unary(Arc<HopInner>);

impl tonic::server::UnaryService<Signed> for Unary {
    type Response = Signed;
    type Future = BoxFuture<tonic::Response<Signed>, Status>;

    fn call(&mut self, req: tonic::Request<Signed>) -> Self::Future {
        let inner = self.0.clone();
        Box::pin(async move {
            inner
                .handle(req.into_inner())
                .await
                .map(tonic::Response::new)
        })
    }
}

impl Service<http::Request<tonic::body::Body>> for Hop {
    type Response = http::Response<tonic::body::Body>;
    type Error = std::convert::Infallible;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<tonic::body::Body>) -> Self::Future {
        let inner = self.0.clone();
        Box::pin(async move {
            let mut grpc =
                tonic::server::Grpc::new(tonic_prost::ProstCodec::<Signed, Signed>::default());
            Ok(grpc.unary(Unary(inner), req).await)
        })
    }
}

/// The running hops; dropping it stops every server.
pub struct Floor {
    trust: TrustStore,
    investigator: TlsIdentity,
    node: Target,
    sizes: Sizes,
    _stop: Vec<tokio::sync::oneshot::Sender<()>>,
}

/// The identities of the parties, as in the real federation.
pub struct Parties {
    pub investigator: TlsIdentity,
    pub node: TlsIdentity,
    pub broker: TlsIdentity,
    pub targets: Vec<TlsIdentity>,
}

async fn serve(
    trust: &TrustStore,
    id: &TlsIdentity,
    hop: HopInner,
    stops: &mut Vec<tokio::sync::oneshot::Sender<()>>,
) -> Result<Target> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let cfg = Arc::new(std::sync::RwLock::new(server_config(trust, id)?));
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    stops.push(tx);
    let router = tonic::transport::Server::builder().add_service(Hop(Arc::new(hop)));
    tokio::spawn(async move {
        let _ = router
            .serve_with_incoming_shutdown(
                alpr_runtime::server::tls_incoming(listener, cfg),
                async move {
                    let _ = rx.await;
                },
            )
            .await;
    });
    Ok(Target {
        addr: addr.to_string(),
        server_name: "localhost".into(),
    })
}

fn channel(trust: &TrustStore, id: &TlsIdentity, to: &Target) -> Result<Channel> {
    Ok(alpr_runtime::client::channel(
        to,
        client_config(trust, id)?,
        Duration::from_secs(30),
    )?)
}

impl Floor {
    /// Start every hop on loopback, each serving with its party's certificate.
    pub async fn start(trust: &TrustStore, parties: Parties, sizes: Sizes) -> Result<Self> {
        let mut stops = Vec::new();
        let mut targets = Vec::new();
        for id in &parties.targets {
            let hop = HopInner {
                role: Role::Target,
                crypto: Crypto::new()?,
                sizes,
            };
            let at = serve(trust, id, hop, &mut stops).await?;
            targets.push(channel(trust, &parties.broker, &at)?);
        }
        let n = targets.len();
        let broker = HopInner {
            role: Role::Broker { targets },
            crypto: Crypto::new()?,
            sizes,
        };
        let broker_at = serve(trust, &parties.broker, broker, &mut stops).await?;
        let node = HopInner {
            role: Role::Node {
                broker: channel(trust, &parties.node, &broker_at)?,
                targets: n,
            },
            crypto: Crypto::new()?,
            sizes,
        };
        let node_at = serve(trust, &parties.node, node, &mut stops).await?;
        Ok(Self {
            trust: trust.clone(),
            investigator: parties.investigator,
            node: node_at,
            sizes,
            _stop: stops,
        })
    }

    /// An investigator with a connection of its own (1 sign per query, as `sign_query`).
    pub fn investigator(&self) -> Result<Investigator> {
        Ok(Investigator {
            ch: channel(&self.trust, &self.investigator, &self.node)?,
            crypto: Crypto::new()?,
            len: self.sizes.query,
        })
    }
}

/// One investigator of the floor.
pub struct Investigator {
    ch: Channel,
    crypto: Crypto,
    len: usize,
}

impl Investigator {
    /// Sign and send one query through every hop; the reply is the route response's size.
    pub async fn query(&mut self) -> Result<()> {
        self.crypto.sign(1)?;
        call(&self.ch, self.len).await?;
        Ok(())
    }
}
