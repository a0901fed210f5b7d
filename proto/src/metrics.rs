//! A small metrics registry rendered in the Prometheus text format: counters with labels
//! and fixed-bucket latency histograms. Served at `/metrics` when a daemon configures a
//! `metrics_listen` address.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::time::Duration;

/// Histogram bucket upper bounds, seconds.
const BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 5.0,
];

#[derive(Default)]
struct Hist {
    counts: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

/// Counters and histograms, keyed by name and label set.
#[derive(Default)]
pub struct Metrics {
    counters: Mutex<BTreeMap<(String, String), u64>>,
    hists: Mutex<BTreeMap<(String, String), Hist>>,
    help: Mutex<BTreeMap<String, &'static str>>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

fn labels(l: &[(&str, &str)]) -> String {
    l.iter()
        .map(|(k, v)| format!("{k}=\"{}\"", v.replace('\\', "\\\\").replace('"', "\\\"")))
        .collect::<Vec<_>>()
        .join(",")
}

impl Metrics {
    /// Add `n` to a counter.
    pub fn add(&self, name: &str, help: &'static str, l: &[(&str, &str)], n: u64) {
        if let Ok(mut h) = self.help.lock() {
            h.entry(name.to_owned()).or_insert(help);
        }
        if let Ok(mut c) = self.counters.lock() {
            *c.entry((name.to_owned(), labels(l))).or_default() += n;
        }
    }

    /// Record one observation in a histogram.
    pub fn observe(&self, name: &str, help: &'static str, l: &[(&str, &str)], d: Duration) {
        if let Ok(mut h) = self.help.lock() {
            h.entry(name.to_owned()).or_insert(help);
        }
        let secs = d.as_secs_f64();
        if let Ok(mut hs) = self.hists.lock() {
            let h = hs.entry((name.to_owned(), labels(l))).or_default();
            for (i, b) in BUCKETS.iter().enumerate() {
                if secs <= *b {
                    h.counts[i] += 1;
                }
            }
            h.count += 1;
            h.sum += secs;
        }
    }

    /// A counter's value (for tests and reports).
    pub fn get(&self, name: &str, l: &[(&str, &str)]) -> u64 {
        self.counters
            .lock()
            .map(|c| c.get(&(name.to_owned(), labels(l))).copied().unwrap_or(0))
            .unwrap_or(0)
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let help = self.help.lock().map(|h| h.clone()).unwrap_or_default();
        let mut typed = std::collections::BTreeSet::new();
        if let Ok(c) = self.counters.lock() {
            for ((name, l), v) in c.iter() {
                if typed.insert(name.clone()) {
                    let _ = writeln!(
                        out,
                        "# HELP {name} {}\n# TYPE {name} counter",
                        help.get(name).unwrap_or(&"")
                    );
                }
                let _ = writeln!(out, "{name}{{{l}}} {v}");
            }
        }
        if let Ok(hs) = self.hists.lock() {
            for ((name, l), h) in hs.iter() {
                if typed.insert(name.clone()) {
                    let _ = writeln!(
                        out,
                        "# HELP {name} {}\n# TYPE {name} histogram",
                        help.get(name).unwrap_or(&"")
                    );
                }
                let sep = if l.is_empty() { "" } else { "," };
                for (i, b) in BUCKETS.iter().enumerate() {
                    let _ = writeln!(out, "{name}_bucket{{{l}{sep}le=\"{b}\"}} {}", h.counts[i]);
                }
                let _ = writeln!(out, "{name}_bucket{{{l}{sep}le=\"+Inf\"}} {}", h.count);
                let _ = writeln!(out, "{name}_sum{{{l}}} {}", h.sum);
                let _ = writeln!(out, "{name}_count{{{l}}} {}", h.count);
            }
        }
        out
    }
}

/// Serve `/metrics` on `listener` until the process ends.
pub fn serve(listener: tokio::net::TcpListener, metrics: std::sync::Arc<Metrics>) {
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = listener.accept().await else {
                continue;
            };
            let m = metrics.clone();
            tokio::spawn(async move {
                use tokio::io::{AsyncReadExt, AsyncWriteExt};
                let mut buf = [0u8; 1024];
                let n = s.read(&mut buf).await.unwrap_or(0);
                let req = String::from_utf8_lossy(&buf[..n]);
                let (status, body) = if req.starts_with("GET /metrics") {
                    ("200 OK", m.render())
                } else {
                    ("404 Not Found", "not found\n".to_owned())
                };
                let resp = format!(
                    "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
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

    #[test]
    fn renders_counters_and_histograms() {
        let m = Metrics::default();
        m.add(
            "alpr_q_total",
            "queries",
            &[("outcome", "refused"), ("reason", "NO_AGREEMENT")],
            2,
        );
        m.observe("alpr_lat_seconds", "latency", &[], Duration::from_millis(3));
        let t = m.render();
        assert!(
            t.contains("alpr_q_total{outcome=\"refused\",reason=\"NO_AGREEMENT\"} 2"),
            "{t}"
        );
        assert!(t.contains("alpr_lat_seconds_bucket{le=\"0.005\"} 1"), "{t}");
        assert!(t.contains("alpr_lat_seconds_bucket{le=\"0.002\"} 0"), "{t}");
        assert!(t.contains("# TYPE alpr_lat_seconds histogram"));
        assert_eq!(
            m.get(
                "alpr_q_total",
                &[("outcome", "refused"), ("reason", "NO_AGREEMENT")]
            ),
            2
        );
    }
}
