//! Prometheus metrics (`GET /metrics`, text exposition format).
//!
//! Routes are labelled by their pattern (`/collections/{name}/search`), never the raw path, so
//! the number of series stays bounded whatever clients send.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    route: String,
    method: String,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabel {
    route: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ModelLabel {
    model: &'static str,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    latency: HistogramFamily<RouteLabel>,
    queue_depth: Family<ModelLabel, Gauge>,
    batch_inputs: HistogramFamily<ModelLabel>,
    tokens: Family<ModelLabel, Counter>,
    rejected: Family<ModelLabel, Counter>,
}

fn latency_histogram() -> Histogram {
    // 1 ms .. ~33 s
    Histogram::new(exponential_buckets(0.001, 2.0, 16))
}

fn batch_histogram() -> Histogram {
    // 1 .. 2048 inputs
    Histogram::new(exponential_buckets(1.0, 2.0, 12))
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("sift");
        let requests = Family::<RequestLabels, Counter>::default();
        let latency = HistogramFamily::<RouteLabel>::new_with_constructor(latency_histogram);
        let queue_depth = Family::<ModelLabel, Gauge>::default();
        let batch_inputs = HistogramFamily::<ModelLabel>::new_with_constructor(batch_histogram);
        let tokens = Family::<ModelLabel, Counter>::default();
        let rejected = Family::<ModelLabel, Counter>::default();
        registry.register(
            "http_requests",
            "HTTP requests by route pattern, method and status",
            requests.clone(),
        );
        registry.register(
            "http_request_duration_seconds",
            "Time from request to response, by route pattern",
            latency.clone(),
        );
        registry.register(
            "queue_depth",
            "Inputs waiting for the model's batching worker",
            queue_depth.clone(),
        );
        registry.register(
            "batch_inputs",
            "Inputs per forward pass of the batching worker",
            batch_inputs.clone(),
        );
        registry.register(
            "tokens_processed",
            "Tokens run through the model (special tokens included, padding excluded)",
            tokens.clone(),
        );
        registry.register(
            "queue_rejections",
            "Requests refused with 429 because the model's queue was full",
            rejected.clone(),
        );
        Metrics {
            registry,
            requests,
            latency,
            queue_depth,
            batch_inputs,
            tokens,
            rejected,
        }
    }
}

impl Metrics {
    /// Counts one request. `route` is a matched route template (or `unmatched`) and `method`
    /// is folded to the standard methods, so no client can create series at will.
    pub fn request(&self, route: &str, method: &str, status: u16, seconds: f64) {
        const METHODS: [&str; 7] = ["GET", "POST", "PUT", "DELETE", "HEAD", "OPTIONS", "PATCH"];
        let method = METHODS
            .iter()
            .find(|m| **m == method)
            .copied()
            .unwrap_or("other");
        self.requests
            .get_or_create(&RequestLabels {
                route: route.to_owned(),
                method: method.to_owned(),
                status,
            })
            .inc();
        self.latency
            .get_or_create(&RouteLabel {
                route: route.to_owned(),
            })
            .observe(seconds);
    }

    pub fn queue_depth(&self, model: &'static str, depth: usize) {
        self.queue_depth
            .get_or_create(&ModelLabel { model })
            .set(depth as i64);
    }

    pub fn batch(&self, model: &'static str, inputs: usize, tokens: usize) {
        self.batch_inputs
            .get_or_create(&ModelLabel { model })
            .observe(inputs as f64);
        self.tokens
            .get_or_create(&ModelLabel { model })
            .inc_by(tokens as u64);
    }

    pub fn rejected(&self, model: &'static str) {
        self.rejected.get_or_create(&ModelLabel { model }).inc();
    }

    /// The text exposition format (version 0.0.4 compatible, OpenMetrics EOF marker included).
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}
