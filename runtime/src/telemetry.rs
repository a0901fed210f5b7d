//! Tracing and OpenTelemetry.
//!
//! Every daemon logs with `tracing` to stderr. When an OTLP endpoint is configured (or
//! `OTEL_EXPORTER_OTLP_ENDPOINT` is set), spans are also exported over OTLP/gRPC; otherwise
//! nothing leaves the machine. The W3C trace context travels in gRPC metadata
//! (`traceparent`), so one query's spans at the investigator's node, the broker and every
//! target node share one trace id.

use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tonic::metadata::{KeyRef, MetadataKey, MetadataMap, MetadataValue};
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

struct MetaInjector<'a>(&'a mut MetadataMap);

impl Injector for MetaInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(k), Ok(v)) = (
            MetadataKey::from_bytes(key.as_bytes()),
            MetadataValue::try_from(value.as_str()),
        ) {
            self.0.insert(k, v);
        }
    }
}

struct MetaExtractor<'a>(&'a MetadataMap);

impl Extractor for MetaExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0
            .keys()
            .filter_map(|k| match k {
                KeyRef::Ascii(k) => Some(k.as_str()),
                KeyRef::Binary(_) => None,
            })
            .collect()
    }
}

/// Put the current span's trace context into outgoing request metadata.
pub fn inject_current(meta: &mut MetadataMap) {
    let cx = tracing::Span::current().context();
    TraceContextPropagator::new().inject_context(&cx, &mut MetaInjector(meta));
}

/// A server-side span named `name` that continues the caller's trace, if it sent one.
pub fn server_span(name: &'static str, meta: &MetadataMap) -> tracing::Span {
    let span = tracing::info_span!("rpc", otel.name = name, otel.kind = "server");
    let parent = TraceContextPropagator::new().extract(&MetaExtractor(meta));
    let _ = span.set_parent(parent);
    span
}

/// Keeps the exporter alive; flushes spans when dropped.
pub struct TelemetryGuard(Option<SdkTracerProvider>);

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        if let Some(p) = self.0.take() {
            let _ = p.shutdown();
        }
    }
}

/// Install logging to stderr (`RUST_LOG`, default `info`) and, when `otlp_endpoint` (or
/// `OTEL_EXPORTER_OTLP_ENDPOINT`) is set, OTLP span export as `service`.
pub fn init(service: &str, otlp_endpoint: Option<&str>) -> Result<TelemetryGuard, crate::Error> {
    let filter =
        tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    // Colour codes only on a terminal: log files and journald get plain text.
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    let endpoint = otlp_endpoint
        .map(str::to_owned)
        .or_else(|| std::env::var("OTEL_EXPORTER_OTLP_ENDPOINT").ok());
    let Some(endpoint) = endpoint else {
        // A process that already installed a subscriber (a test, a bench, an embedding
        // program) keeps its own.
        let _ = tracing_subscriber::registry()
            .with(filter)
            .with(fmt)
            .try_init();
        return Ok(TelemetryGuard(None));
    };
    use opentelemetry_otlp::WithExportConfig;
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .with_endpoint(endpoint.clone())
        .build()
        .map_err(|e| crate::Error::Telemetry(format!("OTLP exporter for {endpoint}: {e}")))?;
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(
            opentelemetry_sdk::Resource::builder()
                .with_service_name(service.to_owned())
                .build(),
        )
        .build();
    let layer = tracing_opentelemetry::layer().with_tracer(provider.tracer(service.to_owned()));
    tracing_subscriber::registry()
        .with(filter)
        .with(fmt)
        .with(layer)
        .try_init()
        .map_err(|e| crate::Error::Telemetry(e.to_string()))?;
    Ok(TelemetryGuard(Some(provider)))
}
