//! Mutual TLS for every connection: rustls with the ring provider only, client
//! certificates required and verified against the state root and its CRLs, ALPN `h2`.
//!
//! Servers accept TCP, complete the TLS handshake off the accept loop (with a timeout) and
//! hand the streams to tonic's `serve_with_incoming`. Clients connect through a custom
//! connector so the same verifier (with CRLs) checks the server.

use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use alpr_pki::{CertificateDer, TrustStore, VerifiedIdentity};
use hyper_util::rt::TokioIo;
use rustls::client::WebPkiServerVerifier;
use rustls::pki_types::{PrivateKeyDer, ServerName};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::server::TlsStream;
use tokio_rustls::{TlsAcceptor, TlsConnector};
use tonic::transport::server::{TcpConnectInfo, TlsConnectInfo};
use tonic::transport::{Channel, Endpoint};

use crate::{Error, RefusalReason};

/// How long a client has to finish the TLS handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// A daemon's or person's TLS identity: certificate chain and key.
pub struct TlsIdentity {
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
}

impl Clone for TlsIdentity {
    fn clone(&self) -> Self {
        Self {
            chain: self.chain.clone(),
            key: self.key.clone_key(),
        }
    }
}

impl TlsIdentity {
    /// Load a certificate chain and key.
    pub fn load(cert: &Path, key: &Path) -> Result<Self, alpr_pki::Error> {
        // The key must belong to the certificate: say so, naming both files, rather than
        // fail later inside TLS with "keys may not be consistent".
        alpr_pki::Signer::load(cert, key)?;
        Ok(Self {
            chain: alpr_pki::read_cert_chain(cert)?,
            key: alpr_pki::read_private_key(key)?,
        })
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn roots(trust: &TrustStore) -> Result<Arc<RootCertStore>, String> {
    let mut roots = RootCertStore::empty();
    roots
        .add(trust.root().clone())
        .map_err(|e| format!("root certificate: {e}"))?;
    Ok(Arc::new(roots))
}

/// Server config: TLS 1.3, client certificate required and checked against root + CRLs.
pub fn server_config(trust: &TrustStore, id: &TlsIdentity) -> Result<Arc<ServerConfig>, String> {
    let verifier = WebPkiClientVerifier::builder_with_provider(roots(trust)?, provider())
        .with_crls(trust.crls().iter().cloned())
        .build()
        .map_err(|e| format!("client verifier: {e}"))?;
    let mut cfg = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| e.to_string())?
        .with_client_cert_verifier(verifier)
        .with_single_cert(id.chain.clone(), id.key.clone_key())
        .map_err(|e| format!("server certificate: {e}"))?;
    cfg.alpn_protocols = vec![b"h2".to_vec()];
    Ok(Arc::new(cfg))
}

/// Client config: TLS 1.3, presenting `id`, verifying the server against root + CRLs.
pub fn client_config(trust: &TrustStore, id: &TlsIdentity) -> Result<Arc<ClientConfig>, String> {
    let verifier = WebPkiServerVerifier::builder_with_provider(roots(trust)?, provider())
        .with_crls(trust.crls().iter().cloned())
        .build()
        .map_err(|e| format!("server verifier: {e}"))?;
    let mut cfg = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| e.to_string())?
        .with_webpki_verifier(verifier)
        .with_client_auth_cert(id.chain.clone(), id.key.clone_key())
        .map_err(|e| format!("client certificate: {e}"))?;
    cfg.alpn_protocols = vec![b"h2".to_vec()];
    Ok(Arc::new(cfg))
}

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

/// A server config that can be swapped while serving (CRL reload without restart).
pub type SharedServerConfig = Arc<std::sync::RwLock<Arc<ServerConfig>>>;

/// A daemon's certificate files (the `[tls]` section of `node.toml` and `broker.toml`).
#[derive(Clone, Debug, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// The state root certificate (the only trust anchor).
    pub root: std::path::PathBuf,
    /// This daemon's certificate chain (a node's: leaf, agency CA).
    pub cert: std::path::PathBuf,
    /// This daemon's private key.
    pub key: std::path::PathBuf,
    /// CRL files to enforce (the root's and every agency CA's).
    #[serde(default)]
    pub crls: Vec<std::path::PathBuf>,
    /// How often to re-read the CRL files, seconds; a changed CRL takes effect without a
    /// restart, for new TLS handshakes and for signature checks.
    #[serde(default = "default_crl_reload")]
    pub crl_reload_secs: u64,
}

fn default_crl_reload() -> u64 {
    30
}

/// Make a relative path relative to `base` (the config file's directory).
pub fn resolve_path(p: &mut std::path::PathBuf, base: &Path) {
    if p.is_relative() {
        *p = base.join(&*p);
    }
}

/// A connection error in words an operator can act on, for the ones that rustls reports
/// in Rust's own terms: a server certificate issued for other names (the names it does
/// carry, without `DnsName(..)` wrappers), or one not from this state's root.
pub fn explain_connect_error(message: &str) -> String {
    if let Some(rest) = message.split("certificate not valid for name \"").nth(1) {
        let wanted = rest.split('"').next().unwrap_or("");
        let mut names = Vec::new();
        for part in rest.split(['(', ')']) {
            let p = part.trim_matches('"');
            let a_name = part.starts_with('"') || p.parse::<std::net::IpAddr>().is_ok();
            if a_name && !p.starts_with("urn:") && !p.is_empty() && p != wanted {
                names.push(p.to_owned());
            }
        }
        names.dedup();
        return format!(
            "the server's certificate is not issued for {wanted:?}; it names {} (give one of them as --server-name)",
            if names.is_empty() {
                "no host".to_owned()
            } else {
                names.join(", ")
            }
        );
    }
    if message.contains("UnknownIssuer") {
        return "the server's certificate is not from this state's root (check --root)".into();
    }
    if message.contains("invalid peer certificate: Revoked") {
        return "the server's certificate is revoked".into();
    }
    message.to_owned()
}

/// A TOML error as one line: where (line and column, and the line's text, which names
/// the key) and what (`invalid type: string "ten", expected u32`).
pub fn describe_toml_error(text: &str, e: &toml::de::Error) -> String {
    let Some(span) = e.span() else {
        return e.message().to_owned();
    };
    let before = text.get(..span.start).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    let source = text.lines().nth(line - 1).unwrap_or("").trim();
    format!(
        "line {line}, column {column}: {} (in `{source}`)",
        e.message()
    )
}

impl TlsConfig {
    /// Resolve every relative path against `base`.
    pub fn resolve_paths(&mut self, base: &Path) {
        for p in [&mut self.root, &mut self.cert, &mut self.key]
            .into_iter()
            .chain(self.crls.iter_mut())
        {
            resolve_path(p, base);
        }
    }
}

/// The trust store and TLS server config in force, swapped together when the CRL files
/// change, so a revocation takes effect without a restart for new handshakes and for
/// signature checks alike.
pub struct ReloadableTls {
    identity: TlsIdentity,
    crl_files: Vec<std::path::PathBuf>,
    trust: std::sync::RwLock<TrustStore>,
    server: SharedServerConfig,
}

impl ReloadableTls {
    /// Serve as `identity` under `trust`, whose CRLs were read from `crl_files`.
    pub fn new(
        trust: TrustStore,
        identity: TlsIdentity,
        crl_files: Vec<std::path::PathBuf>,
    ) -> Result<Self, String> {
        let server = Arc::new(std::sync::RwLock::new(server_config(&trust, &identity)?));
        Ok(Self {
            identity,
            crl_files,
            trust: std::sync::RwLock::new(trust),
            server,
        })
    }

    /// The trust store in force.
    pub fn trust(&self) -> TrustStore {
        self.trust
            .read()
            .map(|t| t.clone())
            .unwrap_or_else(|p| p.into_inner().clone())
    }

    /// The server config in force, shared with the accept loop.
    pub fn server_config(&self) -> SharedServerConfig {
        self.server.clone()
    }

    /// Re-read the CRL files; if they changed, swap in the new trust store and server
    /// config. Returns whether anything changed.
    pub fn reload(&self) -> Result<bool, String> {
        let mut crls = Vec::new();
        let now = alpr_pki::now_unix();
        let current = self.trust();
        for f in &self.crl_files {
            crls.extend(
                alpr_pki::load_crl_file(f, current.root(), now).map_err(|e| e.to_string())?,
            );
        }
        if current.crls() == crls.as_slice() {
            return Ok(false);
        }
        let fresh = current.with_crls(crls);
        let server = server_config(&fresh, &self.identity)?;
        match self.trust.write() {
            Ok(mut t) => *t = fresh,
            Err(p) => *p.into_inner() = fresh,
        }
        match self.server.write() {
            Ok(mut c) => *c = server,
            Err(p) => *p.into_inner() = server,
        }
        tracing::info!("CRLs reloaded");
        Ok(true)
    }
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

/// Where and how to reach a server.
#[derive(Clone, Debug)]
pub struct Target {
    /// `host:port`.
    pub addr: String,
    /// The name the server's certificate must carry (`localhost`, a DNS name, or an IP).
    pub server_name: String,
}

/// A lazily connecting mTLS channel to `target`.
pub fn channel(
    target: &Target,
    cfg: Arc<ClientConfig>,
    timeout: Duration,
) -> Result<Channel, String> {
    let endpoint = Endpoint::from_shared(format!("http://{}", target.addr))
        .map_err(|e| format!("bad address {:?}: {e}", target.addr))?
        .connect_timeout(timeout)
        .timeout(timeout)
        .tcp_nodelay(true);
    let server_name = ServerName::try_from(target.server_name.clone())
        .map_err(|e| format!("bad server name {:?}: {e}", target.server_name))?;
    let addr = target.addr.clone();
    let connector = TlsConnector::from(cfg);
    let svc = tower::service_fn(move |_uri: tonic::codegen::http::Uri| {
        let connector = connector.clone();
        let server_name = server_name.clone();
        let addr = addr.clone();
        async move {
            let tcp = TcpStream::connect(&addr).await?;
            tcp.set_nodelay(true)?;
            let tls = connector.connect(server_name, tcp).await?;
            Ok::<_, std::io::Error>(TokioIo::new(tls))
        }
    });
    Ok(endpoint.connect_with_connector_lazy(svc))
}

/// The verified identity of the TLS peer of a request.
pub fn peer_identity<T>(
    req: &tonic::Request<T>,
    trust: &TrustStore,
    now: i64,
) -> Result<VerifiedIdentity, Error> {
    let certs = req
        .extensions()
        .get::<TlsConnectInfo<TcpConnectInfo>>()
        .and_then(|i| i.peer_certs())
        .ok_or_else(|| {
            Error::refused(
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

/// Largest request message any party accepts, encoded (4 MiB). Larger messages are refused
/// by the application (`INVALID_INPUT`, with an audit entry), not cut by the transport.
pub const MAX_MESSAGE: usize = 4 << 20;

/// The transport's own decoding limit (16 MiB), set above [`MAX_MESSAGE`] on every server
/// so that the application sees, refuses and logs an oversized message.
pub const TRANSPORT_MAX_MESSAGE: usize = 16 << 20;

/// The refusal of a message larger than [`MAX_MESSAGE`], if `len` is one.
pub fn check_size(what: &str, len: usize) -> Result<(), crate::Error> {
    if len > MAX_MESSAGE {
        return Err(crate::Error::refused(
            crate::RefusalReason::InvalidInput,
            format!("{what} of {len} bytes exceeds the {MAX_MESSAGE}-byte (4 MiB) message limit"),
        ));
    }
    Ok(())
}

/// A server whose undecodable requests are refused and logged ([`RefuseUndecodable`]).
pub type GuardedServer = tonic::transport::Server<
    tower::layer::util::Stack<RefuseUndecodable, tower::layer::util::Identity>,
>;

/// The router of a [`GuardedServer`].
pub type GuardedRouter = tonic::transport::server::Router<
    tower::layer::util::Stack<RefuseUndecodable, tower::layer::util::Identity>,
>;

/// A server builder whose undecodable requests go to `hook` before they are refused.
pub fn guarded_server(hook: UndecodableHook) -> GuardedServer {
    tonic::transport::Server::builder().layer(RefuseUndecodable::new(hook))
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
) -> Result<(GuardedRouter, Health), String> {
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
        .register_encoded_file_descriptor_set(crate::FILE_DESCRIPTOR_SET)
        .build_v1()
        .map_err(|e| format!("reflection: {e}"))?;
    let reflection_alpha = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(crate::FILE_DESCRIPTOR_SET)
        .build_v1alpha()
        .map_err(|e| format!("reflection: {e}"))?;
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

/// A request that the transport could not decode (malformed protobuf, or larger than
/// [`TRANSPORT_MAX_MESSAGE`]), refused before any handler saw it.
#[derive(Clone, Debug)]
pub struct Undecodable {
    /// The gRPC method, e.g. `/alpr.v1.NodeInbound/AnswerQuery`.
    pub method: String,
    /// The client's certificate chain (verified by the TLS handshake), if any.
    pub peer_certs: Option<Arc<Vec<CertificateDer<'static>>>>,
    /// The client's address.
    pub peer_addr: Option<SocketAddr>,
    /// What the transport said.
    pub detail: String,
}

/// Called, and awaited, for each undecodable request before its refusal is sent: the
/// place where a party writes the refusal to its log.
pub type UndecodableHook =
    Arc<dyn Fn(Undecodable) -> std::pin::Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync>;

/// A server layer that turns the transport's own refusal of an undecodable request
/// (`INTERNAL` "failed to decode…", or `OUT_OF_RANGE` for a message over the transport
/// limit) into an application refusal: `INVALID_ARGUMENT` with the `INVALID_INPUT` reason
/// trailer, after `hook` has logged it. Responses from handlers pass unchanged.
#[derive(Clone)]
pub struct RefuseUndecodable {
    hook: UndecodableHook,
}

impl RefuseUndecodable {
    /// The layer, logging through `hook`.
    pub fn new(hook: UndecodableHook) -> Self {
        Self { hook }
    }

    /// A hook that only writes a warning to the process log (for tools and tests that
    /// keep no audit log).
    pub fn warn_only() -> UndecodableHook {
        Arc::new(|u: Undecodable| {
            tracing::warn!(method = %u.method, detail = %u.detail, "undecodable request refused");
            Box::pin(async {})
        })
    }
}

impl std::fmt::Debug for RefuseUndecodable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RefuseUndecodable")
    }
}

impl<S> tower::Layer<S> for RefuseUndecodable {
    type Service = RefuseUndecodableService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RefuseUndecodableService {
            inner,
            hook: self.hook.clone(),
        }
    }
}

/// The service made by [`RefuseUndecodable`].
#[derive(Clone)]
pub struct RefuseUndecodableService<S> {
    inner: S,
    hook: UndecodableHook,
}

impl<S> std::fmt::Debug for RefuseUndecodableService<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RefuseUndecodableService")
    }
}

type HttpRequest<B> = tonic::codegen::http::Request<B>;
type HttpResponse<B> = tonic::codegen::http::Response<B>;

impl<S, B, RB> tower::Service<HttpRequest<B>> for RefuseUndecodableService<S>
where
    S: tower::Service<HttpRequest<B>, Response = HttpResponse<RB>> + Send,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    RB: Send + 'static,
{
    type Response = HttpResponse<RB>;
    type Error = S::Error;
    type Future =
        std::pin::Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: HttpRequest<B>) -> Self::Future {
        let method = req.uri().path().to_owned();
        let info = req.extensions().get::<TlsConnectInfo<TcpConnectInfo>>();
        // An Arc clone per request; the chain is read only if the request is refused.
        let peer_certs = info.and_then(|i| i.peer_certs());
        let peer_addr = info.and_then(|i| i.get_ref().remote_addr());
        let hook = self.hook.clone();
        let fut = self.inner.call(req);
        Box::pin(async move {
            let mut resp = fut.await?;
            let Some(detail) = transport_refusal(resp.headers()) else {
                return Ok(resp);
            };
            let detail = format!("request to {method} does not decode: {detail}");
            hook(Undecodable {
                method,
                peer_certs,
                peer_addr,
                detail: detail.clone(),
            })
            .await;
            let status = crate::refusal_status(
                RefusalReason::InvalidInput,
                &format!("INVALID_INPUT: {detail}"),
            );
            let headers = resp.headers_mut();
            headers.remove("grpc-status");
            headers.remove("grpc-message");
            headers.remove("grpc-status-details-bin");
            if status.add_header(headers).is_err() {
                tracing::warn!("could not rewrite the refusal of an undecodable request");
            }
            Ok(resp)
        })
    }
}

/// The transport's message, if these response headers are its refusal of a request it
/// could not decode.
fn transport_refusal(h: &tonic::codegen::http::HeaderMap) -> Option<String> {
    let code = h.get("grpc-status")?.to_str().ok()?.parse::<i32>().ok()?;
    let message = h
        .get("grpc-message")
        .and_then(|v| v.to_str().ok())
        .map(percent_decode)
        .unwrap_or_default();
    let undecodable = (code == tonic::Code::Internal as i32
        && message.starts_with("failed to decode"))
        || (code == tonic::Code::OutOfRange as i32 && message.contains("message length too large"));
    undecodable.then_some(message)
}

/// `grpc-message` is percent-encoded (gRPC over HTTP/2).
fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        match (
            b[i],
            b.get(i + 1).copied().and_then(hex),
            b.get(i + 2).copied().and_then(hex),
        ) {
            (b'%', Some(h), Some(l)) => {
                out.push((h * 16 + l) as u8);
                i += 3;
            }
            (c, _, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_wrong_server_name_is_explained_without_rust_types() {
        let m = "invalid peer certificate: certificate not valid for name \"wrong.example\"; certificate is only valid for DnsName(\"localhost\"), IpAddress(127.0.0.1), UniformResourceIdentifier(\"urn:alpr:role:node\") or UniformResourceIdentifier(\"urn:alpr:kind:local\")";
        let e = super::explain_connect_error(m);
        assert_eq!(
            e,
            "the server's certificate is not issued for \"wrong.example\"; it names localhost, 127.0.0.1 (give one of them as --server-name)"
        );
        assert!(!e.contains("DnsName"));
        assert_eq!(super::explain_connect_error("other"), "other");
    }

    #[test]
    fn toml_errors_name_the_line_column_and_key() {
        #[derive(Debug, serde::Deserialize)]
        #[allow(dead_code)]
        struct C {
            name: String,
            days: u32,
        }
        let text = "name = \"x\"\ndays = \"ten\"\n";
        let e = toml::from_str::<C>(text).unwrap_err();
        let m = super::describe_toml_error(text, &e);
        assert!(m.starts_with("line 2, column 8:"), "{m}");
        assert!(m.contains("(in `days = \"ten\"`)"), "{m}");
        let text = "name = \"x\ndays = 1\n";
        let e = toml::from_str::<C>(text).unwrap_err();
        assert!(super::describe_toml_error(text, &e).starts_with("line 1,"));
    }
}
