//! The node's Prometheus metrics (names as in docs/OPERATIONS.md), exposed at `/metrics`
//! when `metrics_listen` is set.

use std::sync::Arc;

use alpr_runtime::metrics::{
    Counter, EncodeLabelSet, Family, Histogram, LatencyFamily, Registry, latency, latency_family,
};

/// A decision (`answered`, `refused`) and the refusal reason (empty when answered).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DecisionReason {
    /// `answered` or `refused`.
    pub decision: String,
    /// The refusal reason's stable name, or empty.
    pub reason: String,
}

/// A decision alone.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DecisionLabel {
    /// `answered` or `refused`.
    pub decision: String,
}

/// A target's status and reason in an outbound query's result.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StatusReason {
    /// The `TargetStatus` name.
    pub status: String,
    /// The `RefusalReason` name.
    pub reason: String,
}

/// Every metric a node keeps.
#[derive(Debug)]
pub struct NodeMetrics {
    /// `alpr_inbound_queries_total`: inbound queries by decision and reason.
    pub inbound_queries: Family<DecisionReason, Counter>,
    /// `alpr_inbound_answer_seconds`: time to decide, log and sign an inbound query.
    pub inbound_answer_seconds: LatencyFamily<DecisionLabel>,
    /// `alpr_outbound_results_total`: outbound results by target status and reason.
    pub outbound_results: Family<StatusReason, Counter>,
    /// `alpr_audit_commit_seconds`: time until audit entries are durable.
    pub audit_commit_seconds: Histogram,
    /// `alpr_audit_entries_total`: audit entries written.
    pub audit_entries: Counter,
    /// `alpr_ingested_reads_total`: reads stored.
    pub ingested_reads: Counter,
    /// `alpr_hotlist_hits_total`: ingested reads matching an active hot list.
    pub hotlist_hits: Counter,
    /// The registry they are exposed from.
    pub registry: Arc<Registry>,
}

impl Default for NodeMetrics {
    fn default() -> Self {
        let m = (
            Family::<DecisionReason, Counter>::default(),
            latency_family::<DecisionLabel>(),
            Family::<StatusReason, Counter>::default(),
            latency(),
            Counter::default(),
            Counter::default(),
            Counter::default(),
        );
        let mut r = Registry::default();
        r.register(
            "alpr_inbound_queries",
            "Inbound queries by decision and reason",
            m.0.clone(),
        );
        r.register(
            "alpr_inbound_answer_seconds",
            "Time to decide, log and sign an inbound query",
            m.1.clone(),
        );
        r.register(
            "alpr_outbound_results",
            "Outbound query results by target status and reason",
            m.2.clone(),
        );
        r.register(
            "alpr_audit_commit_seconds",
            "Time until audit entries are durable (audit lag)",
            m.3.clone(),
        );
        r.register("alpr_audit_entries", "Audit entries written", m.4.clone());
        r.register("alpr_ingested_reads", "Reads stored", m.5.clone());
        r.register(
            "alpr_hotlist_hits",
            "Ingested reads matching an active hot list",
            m.6.clone(),
        );
        Self {
            inbound_queries: m.0,
            inbound_answer_seconds: m.1,
            outbound_results: m.2,
            audit_commit_seconds: m.3,
            audit_entries: m.4,
            ingested_reads: m.5,
            hotlist_hits: m.6,
            registry: Arc::new(r),
        }
    }
}
