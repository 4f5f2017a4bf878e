//! Webhook deliveries. The metadata store records each event, with one
//! delivery per endpoint that wants it, in the transaction of the change
//! it reports; here every node runs a worker that leases due deliveries
//! from the store (so nodes share the work, and a dead node's leases run
//! out and return), signs each one in the Standard Webhooks form and POSTs
//! it. Nothing on a request's path waits for a receiver.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use ferry_core::webhook::{is_public, retry_delay_ms};
use ferry_meta::events::{Attempt, Delivery, Subject};
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use serde_json::json;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use super::files::metadata;
use super::{Service, now_ms, rfc3339};

/// How long one attempt may take, connection to answer.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);
/// A lease outlives any attempt, so a live worker never loses one.
const LEASE_MS: i64 = 20_000;
/// Deliveries claimed in one poll, and made at once by one node.
const BATCH: usize = 32;
/// How often a node looks for due deliveries.
const POLL: Duration = Duration::from_millis(200);
/// Delivered events are forgotten after a week.
const KEEP_DELIVERED_MS: i64 = 7 * 24 * 3600 * 1000;

/// Why a URL may not be an endpoint.
#[derive(Debug, thiserror::Error)]
pub enum EndpointUrlError {
    #[error("`{0}` is not a URL")]
    NotUrl(String),
    #[error("a webhook URL is http:// or https://, not {0}://")]
    Scheme(String),
    #[error("{0} is a loopback, private or reserved address; start ferry with --webhook-allow-private to allow it")]
    Private(IpAddr),
}

/// Checks an endpoint's URL before it is stored. A host name is checked
/// again at each delivery, when it is resolved (it may change).
pub fn check_endpoint_url(url: &str, allow_private: bool) -> Result<(), EndpointUrlError> {
    let parsed = reqwest::Url::parse(url).map_err(|_| EndpointUrlError::NotUrl(url.to_owned()))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(EndpointUrlError::Scheme(parsed.scheme().to_owned()));
    }
    match parsed.host() {
        Some(url::Host::Ipv4(ip)) if !allow_private && !is_public(ip.into()) => {
            Err(EndpointUrlError::Private(ip.into()))
        }
        Some(url::Host::Ipv6(ip)) if !allow_private && !is_public(ip.into()) => {
            Err(EndpointUrlError::Private(ip.into()))
        }
        Some(_) => Ok(()),
        None => Err(EndpointUrlError::NotUrl(url.to_owned())),
    }
}

/// Resolves names for deliveries, keeping only the addresses a delivery may
/// go to: the guard applies to the address actually connected to, so a
/// name that resolves elsewhere later cannot slip past it.
struct GuardedResolver {
    allow_private: bool,
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let allow_private = self.allow_private;
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let found: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let allowed: Vec<SocketAddr> =
                found.iter().copied().filter(|a| allow_private || is_public(a.ip())).collect();
            if allowed.is_empty() && !found.is_empty() {
                let refused = EndpointUrlError::Private(found[0].ip());
                return Err(Box::new(refused) as Box<dyn std::error::Error + Send + Sync>);
            }
            Ok(Box::new(allowed.into_iter()) as Addrs)
        })
    }
}

/// The client deliveries use: no redirects (a receiver cannot send ferry
/// elsewhere), no proxy from the environment (the guard must see the
/// address it connects to), a timeout per attempt, and the address guard.
/// It trusts the system's CA certificates or, on a system with none (the
/// `FROM scratch` image), Mozilla's, as the webpki-root-certs crate bundles them.
pub fn webhook_client(allow_private: bool) -> reqwest::Result<reqwest::Client> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let builder = || {
        reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .timeout(ATTEMPT_TIMEOUT)
            .dns_resolver(Arc::new(GuardedResolver { allow_private }))
            .user_agent(concat!("ferry-webhooks/", env!("CARGO_PKG_VERSION")))
    };
    builder().build().or_else(|e| {
        tracing::info!(error = %e, "no system CA certificates for webhook deliveries; using the bundled Mozilla roots");
        let roots =
            webpki_root_certs::TLS_SERVER_ROOT_CERTS.iter().filter_map(|c| reqwest::Certificate::from_der(c).ok());
        builder().tls_certs_only(roots).build()
    })
}

/// The body a receiver gets: `{"type", "timestamp", "data"}`, with a file's
/// record as `GET /files/metadata/{id}` gives it.
fn body(delivery: &Delivery) -> Vec<u8> {
    let event = &delivery.event;
    let data = match &event.subject {
        Subject::File(file) => json!(metadata(file)),
        Subject::DepartedFile(file, why) => {
            let mut data = json!(metadata(file));
            data["reason"] = json!(why.as_str());
            data
        }
        Subject::Upload(upload) => json!({
            "upload_id": upload.upload_id.to_string(),
            "file_uid": upload.file_uid.to_string(),
            "file_name": upload.file_name,
            "file_type": upload.file_type,
            "num_bytes": upload.num_bytes,
        }),
    };
    let timestamp = rfc3339((event.created_at / 1000).max(0) as u64);
    json!({"type": event.event_type.as_str(), "timestamp": timestamp, "data": data}).to_string().into_bytes()
}

impl Service {
    /// Delivers due events until `stop`: every node runs one.
    pub async fn run_webhooks(self: Arc<Self>, client: reqwest::Client, stop: CancellationToken) {
        let in_flight = Arc::new(Semaphore::new(BATCH));
        let mut ticks = tokio::time::interval(POLL);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_prune = 0;
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                _ = ticks.tick() => {}
            }
            let now = now_ms() as i64;
            if now - last_prune > 3600 * 1000 {
                last_prune = now;
                if let Err(e) = self.meta.prune_deliveries(now - KEEP_DELIVERED_MS).await {
                    tracing::warn!(error = %e, "pruning delivered webhooks failed");
                }
            }
            // Claim no more than there is room to send now.
            let room = in_flight.available_permits();
            if room == 0 {
                continue;
            }
            let due = match self.meta.claim_deliveries(now, LEASE_MS, room).await {
                Ok(due) => due,
                Err(e) => {
                    tracing::warn!(error = %e, "claiming webhook deliveries failed");
                    continue;
                }
            };
            for delivery in due {
                let permit = in_flight.clone().acquire_owned().await.expect("the semaphore is never closed");
                let (service, client) = (self.clone(), client.clone());
                tokio::spawn(async move {
                    service.attempt(&client, delivery).await;
                    drop(permit);
                });
            }
        }
    }

    /// One attempt at one delivery, and its outcome recorded.
    async fn attempt(&self, client: &reqwest::Client, delivery: Delivery) {
        let (event, endpoint) = (&delivery.event, &delivery.endpoint);
        let id = event.event_id.to_string();
        let body = body(&delivery);
        let timestamp = now_ms() as i64 / 1000;
        let signature = endpoint.secret.sign(&id, timestamp, &body);
        let status = match check_endpoint_url(&endpoint.url, self.settings.webhook_allow_private) {
            Err(refused) => Err(refused.to_string()),
            Ok(()) => client
                .post(&endpoint.url)
                .header("content-type", "application/json")
                .header("webhook-id", &id)
                .header("webhook-timestamp", timestamp.to_string())
                .header("webhook-signature", signature)
                .body(body)
                .send()
                .await
                .map(|response| response.status())
                .map_err(|e| describe(&e)),
        };
        let now = now_ms() as i64;
        let attempts = delivery.attempts + 1;
        let outcome = match status {
            Ok(code) if code.is_success() => {
                self.metrics.webhooks_delivered.inc();
                self.metrics.webhook_latency.observe((now - event.created_at).max(0) as f64 / 1000.0);
                Attempt::Delivered { status: code.as_u16().to_string() }
            }
            failed => {
                self.metrics.webhook_attempts_failed.inc();
                let status = failed.map_or_else(|e| e, |code| code.as_u16().to_string());
                let first = self.settings.webhook_first_retry.get().as_millis() as u64;
                let at = now + retry_delay_ms(attempts, first, jitter()) as i64;
                let retry_for = self.settings.webhook_retry_for.get().as_millis() as i64;
                if at - event.created_at > retry_for {
                    Attempt::GaveUp { status }
                } else {
                    Attempt::RetryAt { at, status }
                }
            }
        };
        let (result, status) = match &outcome {
            Attempt::Delivered { status } => ("delivered", status.clone()),
            Attempt::RetryAt { status, .. } => ("will retry", status.clone()),
            Attempt::GaveUp { status } => ("given up", status.clone()),
        };
        tracing::info!(
            target: "ferry::webhook",
            event_id = %event.event_id,
            event_type = %event.event_type,
            endpoint_id = %endpoint.endpoint_id,
            attempt = attempts,
            status,
            result,
            "webhook attempt"
        );
        if let Err(e) = self.meta.finish_attempt(&event.event_id, &endpoint.endpoint_id, outcome, now).await {
            // The lease runs out and the delivery is made again: at least once.
            tracing::warn!(error = %e, event_id = %event.event_id, "recording a webhook attempt failed");
        }
    }
}

/// A failed attempt in a few words, without the URL (it may carry a token).
fn describe(error: &reqwest::Error) -> String {
    let kind = if error.is_timeout() {
        "timed out"
    } else if error.is_connect() {
        "could not connect"
    } else if error.is_redirect() {
        "redirected"
    } else {
        "failed"
    };
    let mut cause = String::new();
    let mut source = std::error::Error::source(error);
    while let Some(e) = source {
        cause = e.to_string();
        source = e.source();
    }
    if cause.is_empty() { kind.to_owned() } else { format!("{kind}: {cause}") }
}

/// A number in [0, 1) from the system's randomness, for retry jitter.
fn jitter() -> f64 {
    let mut bytes = [0u8; 4];
    let _ = getrandom::fill(&mut bytes);
    f64::from(u32::from_le_bytes(bytes)) / (f64::from(u32::MAX) + 1.0)
}
