//! OpenTelemetry: one query's spans at the investigator's node, the broker (routing and
//! each forward) and the target node share one trace id, carried in gRPC metadata.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use alpr_federation::{Federation, demo_agencies, open_policy, params};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

const VENTURA: &str = "CA0560100";
const SACRAMENTO: &str = "CA0340000";
const FRESNO: &str = "CA0100500";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_query_one_trace_across_all_parties() {
    let exporter = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(exporter.clone())
        .build();
    tracing_subscriber::registry()
        .with(tracing_subscriber::filter::LevelFilter::INFO)
        .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")))
        .try_init()
        .unwrap();

    let fed = Federation::start(None, &demo_agencies()[..3], |_| open_policy())
        .await
        .unwrap();
    fed.agree(Federation::terms(VENTURA, SACRAMENTO, &["240"], 30, 86_400))
        .await
        .unwrap();
    fed.agree(Federation::terms(FRESNO, SACRAMENTO, &["240"], 30, 86_400))
        .await
        .unwrap();
    exporter.reset();
    fed.search(SACRAMENTO, &params("8ABC123", &[VENTURA, FRESNO], "240", 3))
        .await
        .unwrap();
    let _ = provider.force_flush();
    let spans = exporter.get_finished_spans().unwrap();
    let named = |n: &str| spans.iter().filter(|s| s.name == n).collect::<Vec<_>>();
    let search = named("node.search");
    assert_eq!(
        search.len(),
        1,
        "{:?}",
        spans.iter().map(|s| s.name.to_string()).collect::<Vec<_>>()
    );
    let trace = search[0].span_context.trace_id();
    let route = named("broker.route");
    let forwards = named("broker.forward");
    let answers = named("node.answer");
    assert_eq!(route.len(), 1);
    assert_eq!(forwards.len(), 2, "one forward per target");
    assert_eq!(answers.len(), 2, "both target nodes answered");
    for s in route.iter().chain(&forwards).chain(&answers) {
        assert_eq!(
            s.span_context.trace_id(),
            trace,
            "{} is in another trace",
            s.name
        );
    }
    // Parent links: route under search, forwards under route, answers under forwards.
    assert_eq!(route[0].parent_span_id, search[0].span_context.span_id());
    for f in &forwards {
        assert_eq!(f.parent_span_id, route[0].span_context.span_id());
    }
    let forward_ids: Vec<_> = forwards.iter().map(|f| f.span_context.span_id()).collect();
    for a in &answers {
        assert!(forward_ids.contains(&a.parent_span_id));
    }
    fed.stop().await.unwrap();
}
