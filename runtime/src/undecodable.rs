//! Requests the transport cannot decode are refused as `INVALID_INPUT` and logged by the
//! party, like every other refusal.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use alpr_pki::CertificateDer;
use alpr_proto::RefusalReason;
use tonic::transport::server::{TcpConnectInfo, TlsConnectInfo};

/// A request that the transport could not decode (malformed protobuf, or larger than
/// [`alpr_proto::limits::TRANSPORT_MAX_MESSAGE`]), refused before any handler saw it.
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
            let status = alpr_proto::refusal_status(
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
