//! Prometheus metrics: what an operator watches. Counted where the work
//! happens (requests in the HTTP layer, bytes and janitor work in the
//! service) and rendered in the text format at `/metrics`.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub method: String,
    pub route: String,
    pub status: u16,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RejectedLabels {
    pub reason: &'static str,
}

pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    rejected: Family<RejectedLabels, Counter>,
    latency: Family<RequestLabels, Histogram>,
    pub bytes_received: Counter,
    pub bytes_sent: Counter,
    pub uploads_in_progress: Gauge,
    pub expired_uploads: Counter,
    pub deleted_blobs: Counter,
    pub failed_deletions: Counter,
    pub ingested_files: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("ferry");
        let requests = Family::<RequestLabels, Counter>::default();
        // 0.25 ms to about 16 s.
        let latency = Family::<RequestLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.000_25, 2.0, 17))
        });
        let rejected = Family::<RejectedLabels, Counter>::default();
        let metrics = Self {
            requests: requests.clone(),
            rejected: rejected.clone(),
            latency: latency.clone(),
            bytes_received: Counter::default(),
            bytes_sent: Counter::default(),
            uploads_in_progress: Gauge::default(),
            expired_uploads: Counter::default(),
            deleted_blobs: Counter::default(),
            failed_deletions: Counter::default(),
            ingested_files: Counter::default(),
            registry: Registry::default(),
        };
        registry.register("http_requests", "HTTP requests answered, by route and status", requests);
        registry.register("http_request_duration_seconds", "Time to answer (to the response head)", latency);
        registry.register(
            "http_rejected",
            "Connections and requests refused before any route: by the HTTP parser (malformed framing, a head \
             too large), a header timeout, or --max-connections",
            rejected,
        );
        registry.register(
            "bytes_received",
            "File bytes received (parts and simple uploads)",
            metrics.bytes_received.clone(),
        );
        registry.register("bytes_sent", "File bytes sent by downloads", metrics.bytes_sent.clone());
        registry.register("uploads_in_progress", "Direct-to-cloud uploads active", metrics.uploads_in_progress.clone());
        registry.register(
            "janitor_expired_uploads",
            "Idle uploads the janitor expired",
            metrics.expired_uploads.clone(),
        );
        registry.register("janitor_deleted_blobs", "Blobs the janitor deleted", metrics.deleted_blobs.clone());
        registry.register(
            "janitor_failed_deletions",
            "Blob deletions that failed and wait to be retried",
            metrics.failed_deletions.clone(),
        );
        registry.register(
            "janitor_ingested_files",
            "Files whose attributes the janitor's sweep extracted",
            metrics.ingested_files.clone(),
        );
        Self { registry, ..metrics }
    }
}

impl Metrics {
    pub fn record_request(&self, labels: RequestLabels, seconds: f64) {
        self.requests.get_or_create(&labels).inc();
        self.latency.get_or_create(&labels).observe(seconds);
    }

    /// A connection or request refused before it reached a route.
    pub fn record_rejected(&self, reason: &'static str) {
        self.rejected.get_or_create(&RejectedLabels { reason }).inc();
    }

    /// The metrics in the Prometheus text format.
    pub fn render(&self) -> String {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry).expect("writing to a String cannot fail");
        text
    }
}
