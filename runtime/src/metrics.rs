//! Prometheus metrics with the Prometheus project's own client library
//! (`prometheus-client`): each daemon declares its metrics as typed families in a
//! [`Registry`], and [`serve`] exposes them at `/metrics` in the OpenMetrics text format
//! when the daemon configures a `metrics_listen` address.

use std::sync::Arc;

pub use prometheus_client::encoding::EncodeLabelSet;
pub use prometheus_client::metrics::counter::Counter;
pub use prometheus_client::metrics::family::Family;
pub use prometheus_client::metrics::histogram::Histogram;
pub use prometheus_client::registry::Registry;

/// Latency histogram bucket upper bounds, seconds (0.5 ms to 5 s).
pub const LATENCY_BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 5.0,
];

/// A latency histogram with [`LATENCY_BUCKETS`].
pub fn latency() -> Histogram {
    Histogram::new(LATENCY_BUCKETS)
}

/// A family of latency histograms, one per label set.
pub type LatencyFamily<L> = Family<L, Histogram, fn() -> Histogram>;

/// An empty [`LatencyFamily`].
pub fn latency_family<L>() -> LatencyFamily<L>
where
    L: Clone + std::hash::Hash + Eq,
{
    Family::new_with_constructor(latency as fn() -> Histogram)
}

/// The OpenMetrics text exposition of `registry`.
pub fn render(registry: &Registry) -> String {
    let mut out = String::new();
    if prometheus_client::encoding::text::encode(&mut out, registry).is_err() {
        tracing::warn!("metrics could not be rendered");
    }
    out
}

/// Serve `/metrics` on `listener` until the process ends.
pub fn serve(listener: tokio::net::TcpListener, registry: Arc<Registry>) {
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = listener.accept().await else {
                continue;
            };
            let r = registry.clone();
            tokio::spawn(async move {
                use tokio::io::{AsyncReadExt, AsyncWriteExt};
                let mut buf = [0u8; 1024];
                let n = s.read(&mut buf).await.unwrap_or(0);
                let req = String::from_utf8_lossy(&buf[..n]);
                let (status, body) = if req.starts_with("GET /metrics") {
                    ("200 OK", render(&r))
                } else {
                    ("404 Not Found", "not found\n".to_owned())
                };
                let resp = format!(
                    "HTTP/1.1 {status}\r\nContent-Type: application/openmetrics-text; version=1.0.0; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = s.write_all(resp.as_bytes()).await;
            });
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
    struct Outcome {
        outcome: String,
        reason: String,
    }

    #[test]
    fn renders_counters_and_histograms() {
        let mut registry = Registry::default();
        let queries = Family::<Outcome, Counter>::default();
        let latency = latency();
        registry.register("alpr_q", "queries", queries.clone());
        registry.register("alpr_lat_seconds", "latency", latency.clone());
        queries
            .get_or_create(&Outcome {
                outcome: "refused".into(),
                reason: "NO_AGREEMENT".into(),
            })
            .inc_by(2);
        latency.observe(0.003);
        let t = render(&registry);
        assert!(
            t.contains("alpr_q_total{outcome=\"refused\",reason=\"NO_AGREEMENT\"} 2"),
            "{t}"
        );
        assert!(t.contains("alpr_lat_seconds_bucket{le=\"0.005\"} 1"), "{t}");
        assert!(t.contains("alpr_lat_seconds_bucket{le=\"0.002\"} 0"), "{t}");
        assert!(t.contains("# TYPE alpr_lat_seconds histogram"), "{t}");
        assert!(t.ends_with("# EOF\n"), "{t}");
    }
}
