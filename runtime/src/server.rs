//! Serving gRPC over mTLS: servers accept TCP, complete the TLS handshake off the accept
//! loop (with a timeout) and hand the streams to tonic's `serve_with_incoming`; every server
//! refuses undecodable requests ([`crate::undecodable`]) and offers gRPC health checking
//! and reflection.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use alpr_pki::{TrustStore, VerifiedIdentity};
use alpr_proto::RefusalReason;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tonic::transport::server::{TcpConnectInfo, TlsConnectInfo};

use crate::Error;
use crate::tls::{HANDSHAKE_TIMEOUT, SharedServerConfig};
use crate::undecodable::{RefuseUndecodable, UndecodableHook};

/// Accept TCP connections and yield completed TLS streams for `serve_with_incoming`.
/// Handshakes run in their own tasks so a slow client cannot stall the accept loop.
pub fn tls_incoming(
    listener: TcpListener,
    cfg: SharedServerConfig,
) -> tokio_stream::wrappers::ReceiverStream<Result<TlsStream<TcpStream>, std::io::Error>> {
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    tokio::spawn(async move {
        loop {
            // Stop accepting (and release the port) as soon as the server drops the stream.
            let accepted = tokio::select! {
                a = listener.accept() => a,
                _ = tx.closed() => break,
            };
            let (tcp, peer) = match accepted {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let _ = tcp.set_nodelay(true);
            if tx.is_closed() {
                break;
            }
            // The config in force now (CRLs may have been reloaded since the last accept).
            let acceptor = TlsAcceptor::from(
                cfg.read()
                    .map(|c| c.clone())
                    .unwrap_or_else(|p| p.into_inner().clone()),
            );
            let tx = tx.clone();
            tokio::spawn(async move {
                match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                    Ok(Ok(tls)) => {
                        let _ = tx.send(Ok(tls)).await;
                    }
                    Ok(Err(e)) => tracing::info!(%peer, error = %e, "TLS handshake refused"),
                    Err(_) => tracing::info!(%peer, "TLS handshake timed out"),
                }
            });
        }
    });
    tokio_stream::wrappers::ReceiverStream::new(rx)
}

type Layers = tower::layer::util::Stack<
    crate::wiretap::Tap,
    tower::layer::util::Stack<RefuseUndecodable, tower::layer::util::Identity>,
>;

/// A server whose undecodable requests are refused and logged ([`RefuseUndecodable`]),
/// optionally tapped ([`crate::wiretap`]).
pub type GuardedServer = tonic::transport::Server<Layers>;

/// The router of a [`GuardedServer`].
pub type GuardedRouter = tonic::transport::server::Router<Layers>;

/// A server builder whose undecodable requests go to `hook` before they are refused.
pub fn guarded_server(hook: UndecodableHook) -> GuardedServer {
    tapped_server(hook, None)
}

/// [`guarded_server`] whose every request and response is recorded through `tap`.
pub fn tapped_server(hook: UndecodableHook, tap: Option<crate::wiretap::Wiretap>) -> GuardedServer {
    tonic::transport::Server::builder()
        .layer(RefuseUndecodable::new(hook))
        .layer(crate::wiretap::Tap(tap))
}

/// Serve `router` on `listener` over mTLS until `shutdown` resolves.
pub async fn serve<F>(
    router: GuardedRouter,
    listener: TcpListener,
    cfg: SharedServerConfig,
    shutdown: F,
) -> Result<(), tonic::transport::Error>
where
    F: Future<Output = ()> + Send,
{
    router
        .serve_with_incoming_shutdown(tls_incoming(listener, cfg), shutdown)
        .await
}

/// What a server reports through gRPC health checking; cheap to clone.
#[derive(Clone)]
pub struct Health {
    reporter: tonic_health::server::HealthReporter,
    services: Arc<Vec<String>>,
    serving: Arc<std::sync::atomic::AtomicBool>,
}

impl std::fmt::Debug for Health {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Health")
            .field("services", &self.services)
            .field("serving", &self.is_serving())
            .finish()
    }
}

impl Health {
    /// Report every service, and the server as a whole (`""`), as SERVING or NOT_SERVING.
    /// Callable from any thread; the change is applied on the server's runtime (outside a
    /// runtime only the local flag changes).
    pub fn set_serving(&self, serving: bool) {
        use std::sync::atomic::Ordering;
        if self.serving.swap(serving, Ordering::SeqCst) == serving {
            return;
        }
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let me = self.clone();
        rt.spawn(async move {
            // Apply the latest wish, whatever order these tasks run in.
            let status = if me.serving.load(Ordering::SeqCst) {
                tonic_health::ServingStatus::Serving
            } else {
                tonic_health::ServingStatus::NotServing
            };
            for s in me.services.iter().map(String::as_str).chain([""]) {
                me.reporter.set_service_status(s, status).await;
            }
        });
    }

    /// What the server currently wants to report.
    pub fn is_serving(&self) -> bool {
        self.serving.load(std::sync::atomic::Ordering::SeqCst)
    }
}

/// Add gRPC health checking (`grpc.health.v1`, every named service reported SERVING until
/// the returned [`Health`] says otherwise) and server reflection (v1 and v1alpha) to a
/// server, so standard gRPC tools work.
pub async fn with_standard_services(
    builder: &mut GuardedServer,
    services: &[&str],
) -> Result<(GuardedRouter, Health), Error> {
    let (reporter, health) = tonic_health::server::health_reporter();
    for s in services {
        reporter
            .set_service_status(*s, tonic_health::ServingStatus::Serving)
            .await;
    }
    reporter
        .set_service_status("", tonic_health::ServingStatus::Serving)
        .await;
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(alpr_proto::FILE_DESCRIPTOR_SET)
        .build_v1()
        .map_err(Error::Reflection)?;
    let reflection_alpha = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(alpr_proto::FILE_DESCRIPTOR_SET)
        .build_v1alpha()
        .map_err(Error::Reflection)?;
    let router = builder
        .add_service(health)
        .add_service(reflection)
        .add_service(reflection_alpha);
    Ok((
        router,
        Health {
            reporter,
            services: Arc::new(services.iter().map(|s| (*s).to_owned()).collect()),
            serving: Arc::new(std::sync::atomic::AtomicBool::new(true)),
        },
    ))
}

/// The verified identity of the TLS peer of a request.
pub fn peer_identity<T>(
    req: &tonic::Request<T>,
    trust: &TrustStore,
    now: i64,
) -> Result<VerifiedIdentity, alpr_proto::Error> {
    let certs = req
        .extensions()
        .get::<TlsConnectInfo<TcpConnectInfo>>()
        .and_then(|i| i.peer_certs())
        .ok_or_else(|| {
            alpr_proto::Error::refused(
                RefusalReason::CertInvalid,
                "no client certificate on the connection",
            )
        })?;
    Ok(trust.verify(&certs, now)?)
}

/// The remote address of a request, if known.
pub fn peer_addr<T>(req: &tonic::Request<T>) -> Option<SocketAddr> {
    req.extensions()
        .get::<TlsConnectInfo<TcpConnectInfo>>()
        .and_then(|i| i.get_ref().remote_addr())
}

/// Resolve on SIGTERM or Ctrl-C (graceful shutdown of the daemons).
pub async fn shutdown_signal() {
    #[cfg(unix)]
    {
        if let Ok(mut term) =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}
