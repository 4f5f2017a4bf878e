//! A shared cap on upload speed (`--limit-rate`), across all parts in flight.

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

pub struct RateLimit {
    bytes_per_second: u64,
    state: Mutex<(Instant, u64)>,
}

impl RateLimit {
    pub fn new(bytes_per_second: u64) -> Self {
        Self { bytes_per_second: bytes_per_second.max(1), state: Mutex::new((Instant::now(), 0)) }
    }

    /// Accounts for `bytes` about to be sent and waits until sending them
    /// keeps the average at the cap.
    pub async fn take(&self, bytes: u64) {
        let due = {
            let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
            state.1 += bytes;
            state.0 + Duration::from_secs_f64(state.1 as f64 / self.bytes_per_second as f64)
        };
        tokio::time::sleep_until(due).await;
    }
}
