//! Prometheus metrics: what an operator watches. Counted where the work
//! happens (requests in the HTTP layer, bytes and janitor work in the
//! service, calls in the metadata engine), read at each scrape where they
//! are states (the process, free space, the work waiting), and rendered at
//! `/metrics` in the format the scraper asked for.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use ferry_meta::{Access, Observer, Workload};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};

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

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AccessLabels {
    pub access: &'static str,
}

pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    rejected: Family<RejectedLabels, Counter>,
    latency: Family<RequestLabels, Histogram>,
    metadata_latency: Family<AccessLabels, Histogram>,
    pub bytes_received: Counter,
    pub bytes_sent: Counter,
    uploads_in_progress: Gauge,
    deletions_due: Gauge,
    files_to_ingest: Gauge,
    webhooks_pending: Gauge,
    webhooks_failed: Gauge,
    pub webhooks_delivered: Counter,
    pub webhook_attempts_failed: Counter,
    /// From the event's second to its delivery's 2xx.
    pub webhook_latency: Histogram,
    storage_free_bytes: Arc<FreeSpace>,
    pub expired_uploads: Counter,
    pub deleted_blobs: Counter,
    pub failed_deletions: Counter,
    pub ingested_files: Counter,
}

/// 0.25 ms to about 16 s.
fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.000_25, 2.0, 17))
}

impl Default for Metrics {
    fn default() -> Self {
        // The process's figures keep the names every dashboard knows;
        // ferry's own carry its prefix.
        let mut root = Registry::default();
        root.register_collector(Box::new(ProcessCollector));
        let storage_free_bytes = Arc::new(FreeSpace(AtomicU64::new(UNKNOWN)));
        root.register_collector(Box::new(storage_free_bytes.clone()));
        let registry = root.sub_registry_with_prefix("ferry");
        let requests = Family::<RequestLabels, Counter>::default();
        let latency = Family::<RequestLabels, Histogram>::new_with_constructor(latency_histogram);
        let metadata_latency = Family::<AccessLabels, Histogram>::new_with_constructor(latency_histogram);
        let rejected = Family::<RejectedLabels, Counter>::default();
        let metrics = Self {
            requests: requests.clone(),
            rejected: rejected.clone(),
            latency: latency.clone(),
            metadata_latency: metadata_latency.clone(),
            bytes_received: Counter::default(),
            bytes_sent: Counter::default(),
            uploads_in_progress: Gauge::default(),
            deletions_due: Gauge::default(),
            files_to_ingest: Gauge::default(),
            webhooks_pending: Gauge::default(),
            webhooks_failed: Gauge::default(),
            webhooks_delivered: Counter::default(),
            webhook_attempts_failed: Counter::default(),
            // 1 s to about 3 days: a delivery may wait out retries, and
            // events are timed to the second (the store's clock).
            webhook_latency: Histogram::new(exponential_buckets(1.0, 2.0, 19)),
            storage_free_bytes,
            expired_uploads: Counter::default(),
            deleted_blobs: Counter::default(),
            failed_deletions: Counter::default(),
            ingested_files: Counter::default(),
            registry: Registry::default(),
        };
        registry.register("http_requests", "HTTP requests answered, by route and status", requests);
        registry.register("http_request_duration_seconds", "Time to answer (to the response head)", latency);
        registry.register(
            "metadata_duration_seconds",
            "Time of metadata store calls, waiting for a connection or the writer included, by kind of call",
            metadata_latency,
        );
        registry.register(
            "http_rejected",
            "Connections and requests refused before any route: by the HTTP parser (malformed framing, a head \
             too large), a header timeout, or --max-connections",
            rejected,
        );
        let counters = [
            ("bytes_received", "File bytes received (parts and simple uploads)", &metrics.bytes_received),
            ("bytes_sent", "File bytes sent by downloads", &metrics.bytes_sent),
            ("janitor_expired_uploads", "Idle uploads the janitor expired", &metrics.expired_uploads),
            ("janitor_deleted_blobs", "Blobs the janitor deleted", &metrics.deleted_blobs),
            (
                "janitor_failed_deletions",
                "Blob deletions that failed and wait to be retried",
                &metrics.failed_deletions,
            ),
            ("janitor_ingested_files", "Files whose attributes the janitor's sweep extracted", &metrics.ingested_files),
            ("webhooks_delivered", "Webhook deliveries a receiver took (2xx)", &metrics.webhooks_delivered),
            (
                "webhook_attempts_failed",
                "Webhook delivery attempts that failed (an error status, a timeout, no connection, a refused address)",
                &metrics.webhook_attempts_failed,
            ),
        ];
        for (name, help, counter) in counters {
            registry.register(name, help, counter.clone());
        }
        let gauges = [
            ("uploads_in_progress", "Direct-to-cloud uploads active", &metrics.uploads_in_progress),
            ("janitor_deletions_due", "Blob deletions due that no janitor has taken yet", &metrics.deletions_due),
            (
                "janitor_files_to_ingest",
                "Registered files whose attributes wait to be extracted",
                &metrics.files_to_ingest,
            ),
            ("webhooks_pending", "Webhook deliveries not yet made, due or waiting to retry", &metrics.webhooks_pending),
            (
                "webhooks_failed",
                "Webhook deliveries given up on (`ferry admin webhook failed`)",
                &metrics.webhooks_failed,
            ),
        ];
        for (name, help, gauge) in gauges {
            registry.register(name, help, gauge.clone());
        }
        registry.register(
            "webhook_delivery_seconds",
            "From the second an event happened to its delivery, retries included",
            metrics.webhook_latency.clone(),
        );
        Self { registry: root, ..metrics }
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

    /// What the metadata engine calls with each call's time.
    pub fn metadata_observer(self: &Arc<Self>) -> Observer {
        let latency = self.metadata_latency.clone();
        Arc::new(move |access: Access, took: Duration| {
            latency.get_or_create(&AccessLabels { access: access.as_str() }).observe(took.as_secs_f64());
        })
    }

    /// The states read at a scrape.
    pub fn set_states(&self, workload: Workload, storage_free_bytes: Option<u64>) {
        let gauge = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
        self.uploads_in_progress.set(gauge(workload.active_uploads));
        self.deletions_due.set(gauge(workload.deletions_due));
        self.files_to_ingest.set(gauge(workload.files_to_ingest));
        self.webhooks_pending.set(gauge(workload.deliveries_pending));
        self.webhooks_failed.set(gauge(workload.deliveries_failed));
        self.storage_free_bytes.0.store(storage_free_bytes.unwrap_or(UNKNOWN), Ordering::Relaxed);
    }

    /// The metrics in `format`.
    pub fn render(&self, format: Format) -> String {
        let mut text = String::new();
        let written = match format {
            Format::OpenMetrics => prometheus_client::encoding::text::encode(&mut text, &self.registry),
            Format::Prometheus => prometheus_client::encoding::prometheus_text::encode(&mut text, &self.registry),
        };
        written.expect("writing to a String cannot fail");
        text
    }
}

/// The two text formats a Prometheus scrapes. Its classic parser reads an
/// OpenMetrics body sent as `text/plain` with every type `unknown`, so the
/// content type must name the body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    OpenMetrics,
    Prometheus,
}

impl Format {
    /// OpenMetrics when the scraper's `Accept` names it (Prometheus' does,
    /// first), else the classic text format every scraper and `curl` reads.
    pub fn negotiate(accept: Option<&str>) -> Self {
        let wants_openmetrics = accept.is_some_and(|accept| {
            accept.split(',').any(|range| {
                let mut params = range.split(';').map(str::trim);
                let media_type = params.next().unwrap_or_default();
                let refused = params.any(|p| p.strip_prefix("q=").and_then(|q| q.parse::<f32>().ok()) == Some(0.0));
                media_type.eq_ignore_ascii_case("application/openmetrics-text") && !refused
            })
        });
        if wants_openmetrics { Format::OpenMetrics } else { Format::Prometheus }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Format::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
            Format::Prometheus => "text/plain; version=0.0.4; charset=utf-8",
        }
    }
}

/// Free bytes under the files, when they are on a local disk: an S3
/// store's space is not ferry's to know, and a 0 would read as a full disk.
#[derive(Debug)]
struct FreeSpace(AtomicU64);

const UNKNOWN: u64 = u64::MAX;

impl Collector for FreeSpace {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let free = self.0.load(Ordering::Relaxed);
        if free == UNKNOWN {
            return Ok(());
        }
        let gauge = ConstGauge::new(i64::try_from(free).unwrap_or(i64::MAX));
        let help = "Bytes free for ferry on the local disk that holds the files";
        gauge.encode(encoder.encode_descriptor("ferry_storage_free_bytes", help, None, gauge.metric_type())?)
    }
}

/// The process's own figures under the standard `process_*` names, read
/// from `/proc` at each scrape (Linux, where ferry is deployed; elsewhere
/// they are left out).
#[derive(Debug)]
struct ProcessCollector;

/// What `/proc/self/stat` says, in its own units.
struct ProcessStat {
    cpu_ticks: u64,
    start_ticks: u64,
    virtual_bytes: u64,
    resident_pages: u64,
}

impl ProcessStat {
    fn read() -> Option<Self> {
        let text = std::fs::read_to_string("/proc/self/stat").ok()?;
        // The command name (field 2) may hold spaces and parentheses: the
        // fields are counted from its last `)`, the state being field 3.
        let fields: Vec<&str> = text.get(text.rfind(')')? + 1..)?.split_whitespace().collect();
        let field = |n: usize| fields.get(n - 3)?.parse::<u64>().ok();
        Some(Self {
            cpu_ticks: field(14)? + field(15)?,
            start_ticks: field(22)?,
            virtual_bytes: field(23)?,
            resident_pages: field(24)?,
        })
    }
}

/// When the machine booted, in Unix seconds.
fn boot_time() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/stat").ok()?;
    text.lines().find_map(|line| line.strip_prefix("btime ")?.trim().parse().ok())
}

impl Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let Some(stat) = ProcessStat::read() else { return Ok(()) };
        let ticks = rustix::param::clock_ticks_per_second().max(1) as f64;
        let page_size = rustix::param::page_size() as u64;
        let open_fds = std::fs::read_dir("/proc/self/fd").map(|dir| dir.count()).unwrap_or(0);
        let max_fds = rustix::process::getrlimit(rustix::process::Resource::Nofile).current;

        let cpu = ConstCounter::new(stat.cpu_ticks as f64 / ticks);
        cpu.encode(encoder.encode_descriptor(
            "process_cpu",
            "User and system CPU time spent",
            Some(&Unit::Seconds),
            cpu.metric_type(),
        )?)?;
        let gauges = [
            ("process_resident_memory_bytes", "Resident memory size", Some(stat.resident_pages * page_size)),
            ("process_virtual_memory_bytes", "Virtual memory size", Some(stat.virtual_bytes)),
            ("process_open_fds", "Open file descriptors", Some(open_fds as u64)),
            ("process_max_fds", "The limit on open file descriptors", max_fds),
        ];
        for (name, help, value) in gauges {
            let Some(value) = value else { continue };
            let gauge = ConstGauge::new(i64::try_from(value).unwrap_or(i64::MAX));
            gauge.encode(encoder.encode_descriptor(name, help, None, gauge.metric_type())?)?;
        }
        if let Some(boot) = boot_time() {
            let started = ConstGauge::new(boot as f64 + stat.start_ticks as f64 / ticks);
            started.encode(encoder.encode_descriptor(
                "process_start_time_seconds",
                "Start time of the process since the Unix epoch",
                None,
                started.metric_type(),
            )?)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn openmetrics_only_when_asked_for() {
        let prometheus = "application/openmetrics-text;version=1.0.0;q=0.5,text/plain;version=0.0.4;q=0.4,*/*;q=0.1";
        assert_eq!(Format::negotiate(Some(prometheus)), Format::OpenMetrics);
        assert_eq!(Format::negotiate(Some("*/*")), Format::Prometheus);
        assert_eq!(Format::negotiate(None), Format::Prometheus);
        assert_eq!(Format::negotiate(Some("application/openmetrics-text; q=0")), Format::Prometheus);
    }

    #[test]
    fn the_process_reads_its_own_figures() {
        let stat = ProcessStat::read().expect("/proc/self/stat parses");
        assert!(stat.resident_pages > 0 && stat.virtual_bytes > 0);
        let text = Metrics::default().render(Format::Prometheus);
        for name in ["process_cpu_seconds_total", "process_resident_memory_bytes", "process_open_fds"] {
            assert!(text.contains(&format!("# TYPE {name} ")), "{name} missing:\n{text}");
        }
        assert!(text.contains("# TYPE ferry_bytes_received_total counter"), "{text}");
    }
}
