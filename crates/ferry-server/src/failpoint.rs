//! Named places in the server where a test makes something happen at an
//! exact moment: hold a request there until the test lets it go, or crash
//! the process as a power cut would. This is how races and crashes are
//! tested deterministically instead of by luck.
//!
//! Compiled in only with the `failpoints` feature (the test build that
//! scripts/test makes); without it every point is an empty function. The
//! `fail` crate keeps the configuration: `FAILPOINTS="name=return(crash)"`
//! at start, or `PUT /_failpoints/{name}` with the same action text at run
//! time (counts and probabilities included: `1*return(pause)`). The action's
//! argument says what ferry does there:
//!
//! - `pause`: the request waits at the point until
//!   `POST /_failpoints/{name}/release`; `GET /_failpoints/{name}/held`
//!   answers once a request waits there, so a test knows it arrived;
//! - `crash`: the process aborts on the spot, no destructor, no flush.

/// Runs the point `name`: returns at once unless a test configured it.
pub async fn point(name: &'static str) {
    #[cfg(feature = "failpoints")]
    enabled::point(name).await;
    #[cfg(not(feature = "failpoints"))]
    let _ = name;
}

/// Configures the points named in `FAILPOINTS` (`name=actions;…`).
pub fn setup_from_env() {
    #[cfg(feature = "failpoints")]
    enabled::setup_from_env();
}

#[cfg(feature = "failpoints")]
pub use enabled::routes;

#[cfg(feature = "failpoints")]
mod enabled {
    use std::collections::HashMap;
    use std::sync::{LazyLock, Mutex};
    use std::time::Duration;

    use axum::Router;
    use axum::extract::Path;
    use axum::http::StatusCode;
    use axum::routing::{get, post, put};
    use tokio::sync::watch;

    /// Per point: how many requests wait there, and how many times it was
    /// released (a waiter leaves when that count moves past the one it saw).
    #[derive(Default, Clone, Copy)]
    struct Holding {
        held: usize,
        releases: u64,
    }

    static HOLDING: LazyLock<Mutex<HashMap<String, Holding>>> = LazyLock::new(Mutex::default);
    /// Bumped on every change of `HOLDING`, so waiters never miss one.
    static CHANGED: LazyLock<watch::Sender<u64>> = LazyLock::new(|| watch::channel(0).0);

    fn holding() -> std::sync::MutexGuard<'static, HashMap<String, Holding>> {
        HOLDING.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn changed() {
        CHANGED.send_modify(|n| *n += 1);
    }

    pub async fn point(name: &'static str) {
        match fail::eval(name, |arg| arg.unwrap_or_default()).as_deref() {
            None => {}
            Some("pause") => hold(name).await,
            Some("crash") => {
                eprintln!("failpoint {name}: crashing");
                std::process::abort()
            }
            Some(other) => tracing::warn!(name, action = other, "unknown failpoint action"),
        }
    }

    async fn hold(name: &str) {
        let mut seen = CHANGED.subscribe();
        let released_at = {
            let mut map = holding();
            let entry = map.entry(name.to_owned()).or_default();
            entry.held += 1;
            entry.releases
        };
        changed();
        tracing::info!(name, "failpoint: holding a request");
        while holding().get(name).is_some_and(|h| h.releases == released_at) {
            if seen.changed().await.is_err() {
                break;
            }
        }
        if let Some(entry) = holding().get_mut(name) {
            entry.held -= 1;
        }
        changed();
    }

    pub fn setup_from_env() {
        let Ok(spec) = std::env::var("FAILPOINTS") else { return };
        for entry in spec.split(';').filter(|e| !e.trim().is_empty()) {
            let (name, actions) = entry.split_once('=').unwrap_or((entry, ""));
            if let Err(e) = fail::cfg(name.trim(), actions.trim()) {
                panic!("FAILPOINTS: `{entry}`: {e}");
            }
        }
    }

    /// The test-only control routes. They need no key: this build is never
    /// shipped.
    pub fn routes() -> Router {
        Router::new()
            .route("/_failpoints/{name}", put(configure))
            .route("/_failpoints/{name}/held", get(wait_held))
            .route("/_failpoints/{name}/release", post(release))
    }

    async fn configure(Path(name): Path<String>, actions: String) -> (StatusCode, String) {
        match fail::cfg(name, actions.trim()) {
            Ok(()) => (StatusCode::OK, String::new()),
            Err(e) => (StatusCode::BAD_REQUEST, e),
        }
    }

    /// Answers once a request is held at the point (or after a minute, 408).
    async fn wait_held(Path(name): Path<String>) -> (StatusCode, String) {
        let mut seen = CHANGED.subscribe();
        let waited = tokio::time::timeout(Duration::from_secs(60), async {
            loop {
                let held = holding().get(&name).map_or(0, |h| h.held);
                if held > 0 {
                    return held;
                }
                if seen.changed().await.is_err() {
                    return 0;
                }
            }
        })
        .await;
        match waited {
            Ok(held) if held > 0 => (StatusCode::OK, held.to_string()),
            _ => (StatusCode::REQUEST_TIMEOUT, "nothing is held there".into()),
        }
    }

    /// Turns the point off and lets every request held there go on.
    async fn release(Path(name): Path<String>) -> StatusCode {
        fail::remove(&name);
        holding().entry(name).or_default().releases += 1;
        changed();
        StatusCode::OK
    }
}
