//! The broker's Prometheus metrics, exposed at `/metrics` when `metrics_listen` is set.

use std::sync::Arc;

use alpr_runtime::metrics::{Counter, EncodeLabelSet, Family, Histogram, Registry, latency};

/// A routing decision and its refusal reason (empty when forwarded).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DecisionReason {
    /// `forwarded` or `refused`.
    pub decision: String,
    /// The refusal reason's stable name, or empty.
    pub reason: String,
}

/// Every metric the broker keeps.
#[derive(Debug)]
pub struct BrokerMetrics {
    /// `alpr_routing_decisions_total`: per-target routing decisions.
    pub routing_decisions: Family<DecisionReason, Counter>,
    /// `alpr_forward_seconds`: round trip to a target node.
    pub forward_seconds: Histogram,
    /// The registry they are exposed from.
    pub registry: Arc<Registry>,
}

impl Default for BrokerMetrics {
    fn default() -> Self {
        let routing_decisions = Family::<DecisionReason, Counter>::default();
        let forward_seconds = latency();
        let mut r = Registry::default();
        r.register(
            "alpr_routing_decisions",
            "Routing decisions per target by decision and reason",
            routing_decisions.clone(),
        );
        r.register(
            "alpr_forward_seconds",
            "Round trip to a target node",
            forward_seconds.clone(),
        );
        Self {
            routing_decisions,
            forward_seconds,
            registry: Arc::new(r),
        }
    }
}
