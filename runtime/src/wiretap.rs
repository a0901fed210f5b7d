//! A wiretap: every byte a party's gRPC server receives and sends (request and response
//! headers, bodies and trailers, after TLS), and, on a client channel, every byte it sends
//! and receives. Off unless a [`Wiretap`] is given; then each call's bodies are buffered
//! whole so that they can be recorded.
//!
//! This exists to prove claims about what a party can see: the sealed-query tests run the
//! broker tapped and search everything it handled for the plate, case number, reason and
//! every returned read. It is not an audit mechanism (nothing is signed or kept).

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use http_body_util::BodyExt;
use tonic::body::Body;
use tonic::codegen::http::{HeaderMap, Request, Response};

/// Where recorded bytes go; cheap to clone.
#[derive(Clone, Default)]
pub struct Wiretap {
    bytes: Arc<Mutex<Vec<u8>>>,
}

impl std::fmt::Debug for Wiretap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Wiretap")
    }
}

impl Wiretap {
    /// An empty recording.
    pub fn new() -> Self {
        Self::default()
    }

    /// Append `bytes` to the recording.
    pub fn record(&self, bytes: &[u8]) {
        self.bytes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend_from_slice(bytes);
    }

    /// Everything recorded so far.
    pub fn contents(&self) -> Vec<u8> {
        self.bytes.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn record_headers(&self, h: &HeaderMap) {
        for (k, v) in h {
            self.record(k.as_str().as_bytes());
            self.record(b": ");
            self.record(v.as_bytes());
            self.record(b"\n");
        }
    }
}

/// A layer that records through an optional [`Wiretap`] (passes everything through
/// untouched when `None`).
#[derive(Clone, Debug, Default)]
pub struct Tap(pub Option<Wiretap>);

impl<S> tower::Layer<S> for Tap {
    type Service = Tapped<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Tapped {
            inner,
            tap: self.0.clone(),
        }
    }
}

/// A service recorded by [`Tap`].
#[derive(Clone, Debug)]
pub struct Tapped<S> {
    inner: S,
    tap: Option<Wiretap>,
}

impl<S> Tapped<S> {
    /// Wrap `inner` (a client channel, say).
    pub fn new(inner: S, tap: Option<Wiretap>) -> Self {
        Self { inner, tap }
    }
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Collect a body whole: its data and its trailers (an unreadable body records nothing
/// and continues empty).
async fn collect<B>(body: B) -> (tonic::codegen::Bytes, Option<HeaderMap>)
where
    B: http_body::Body<Data = tonic::codegen::Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    match body.collect().await {
        Ok(c) => {
            let trailers = c.trailers().cloned();
            (c.to_bytes(), trailers)
        }
        Err(_) => (tonic::codegen::Bytes::new(), None),
    }
}

fn rebuild(data: tonic::codegen::Bytes, trailers: Option<HeaderMap>) -> Body {
    let mut frames = vec![Ok::<_, std::convert::Infallible>(http_body::Frame::data(
        data,
    ))];
    if let Some(t) = trailers {
        frames.push(Ok(http_body::Frame::trailers(t)));
    }
    Body::new(http_body_util::StreamBody::new(tokio_stream::iter(frames)))
}

impl<S, B, RB> tower::Service<Request<B>> for Tapped<S>
where
    S: tower::Service<Request<Body>, Response = Response<RB>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    B: http_body::Body<Data = tonic::codegen::Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
    RB: http_body::Body<Data = tonic::codegen::Bytes> + Send + 'static,
    RB::Error: Into<BoxError>,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        // The ready service is the one called; a fresh clone takes its place.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let Some(tap) = self.tap.clone() else {
            let fut = inner.call(req.map(Body::new));
            return Box::pin(async move { Ok(fut.await?.map(Body::new)) });
        };
        Box::pin(async move {
            let (parts, body) = req.into_parts();
            tap.record(parts.uri.path().as_bytes());
            tap.record(b"\n");
            tap.record_headers(&parts.headers);
            let (data, trailers) = collect(body).await;
            tap.record(&data);
            if let Some(t) = &trailers {
                tap.record_headers(t);
            }
            let resp = inner
                .call(Request::from_parts(parts, rebuild(data, trailers)))
                .await?;
            let (parts, body) = resp.into_parts();
            tap.record_headers(&parts.headers);
            let (data, trailers) = collect(body).await;
            tap.record(&data);
            if let Some(t) = &trailers {
                tap.record_headers(t);
            }
            Ok(Response::from_parts(parts, rebuild(data, trailers)))
        })
    }
}
