//! Retrying with exponential backoff and jitter (backon), honouring the
//! server's `Retry-After`.

use std::future::Future;
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};

use crate::error::{ClientError, Result};

/// What a retrying call tells whoever watches it.
#[derive(Debug)]
pub enum RetryEvent<'a> {
    /// This failure will be retried after `wait`.
    Waiting { error: &'a ClientError, wait: Duration },
    /// A call that had to wait has succeeded.
    Recovered,
}

/// Told of each failure that will be retried, and of the success after.
pub type OnRetry = Option<std::sync::Arc<dyn Fn(RetryEvent<'_>) + Send + Sync>>;

/// How hard to try before giving up.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    pub min_delay: Duration,
    pub max_delay: Duration,
    /// Give up once the waits add up to this (a server restart or a network
    /// outage shorter than this is survived without the user noticing).
    pub give_up_after: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            min_delay: Duration::from_millis(200),
            max_delay: Duration::from_secs(15),
            give_up_after: Duration::from_secs(300),
        }
    }
}

impl RetryPolicy {
    fn backoff(&self) -> ExponentialBuilder {
        ExponentialBuilder::default()
            .with_jitter()
            .with_min_delay(self.min_delay)
            .with_max_delay(self.max_delay)
            .with_total_delay(Some(self.give_up_after))
            .without_max_times()
    }

    /// Runs `attempt` until it succeeds, fails for good, or the policy gives
    /// up; `on_retry` hears of each failure that will be retried.
    pub async fn run<T, F, Fut>(&self, attempt: F, on_retry: &OnRetry) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        let waited = std::sync::atomic::AtomicBool::new(false);
        let outcome = attempt
            .retry(self.backoff())
            .sleep(tokio::time::sleep)
            .when(ClientError::is_retryable)
            .notify(|error, wait| {
                waited.store(true, std::sync::atomic::Ordering::Relaxed);
                if let Some(on_retry) = on_retry {
                    on_retry(RetryEvent::Waiting { error, wait });
                }
            })
            // The server knows best how long it needs (429, 503).
            .adjust(|e, delay| match (e.retry_after(), delay) {
                (Some(asked), Some(_)) => Some(asked),
                (_, delay) => delay,
            })
            .await;
        if outcome.is_ok()
            && waited.into_inner()
            && let Some(on_retry) = on_retry
        {
            on_retry(RetryEvent::Recovered);
        }
        outcome
    }
}
