//! Request pools: which requests may wait for which slots, so that anonymous writers
//! cannot starve the agent's own traffic (docs/HTTP.md, "Request pools").
//!
//! - `/health` and `/v1/ping` take no slot: they are cheap and must always answer;
//! - requests from the agent's own `transport = "http"` workers (they present the
//!   per-agent worker key, see [`WorkerKey`]) share [`WORKER_SLOTS`];
//! - `/v1/status`, `/metrics` and `/v1/tap` share [`CONTROL_SLOTS`] (a tap holds its
//!   slot only until its stream starts);
//! - everything else (writes, lasterror, unknown routes) shares
//!   `[http] max_concurrent_requests`.
//!
//! A request finding its pool full gets 503 at once (no queueing). The number of
//! requests in flight per pool is exported as `pythond_http_requests_in_flight`.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tokio::sync::Semaphore;

use super::error::ApiError;
use super::AppState;

/// Slots for the agent's own `transport = "http"` workers.
pub const WORKER_SLOTS: usize = 64;
/// Slots for `/v1/status` and `/metrics`.
pub const CONTROL_SLOTS: usize = 16;

/// Paths served without taking a slot.
const OPEN_PATHS: &[&str] = &["/health", "/v1/ping"];
/// Paths served from the control pool.
const CONTROL_PATHS: &[&str] = &["/v1/status", "/metrics", "/v1/tap"];

/// A secret made at start-up and handed only to the agent's own workers (as their
/// bearer token): it tells their requests apart from anonymous ones. It is accepted
/// wherever the `[http] token` is, and never logged.
#[derive(Clone)]
pub struct WorkerKey(String);

impl WorkerKey {
    /// 32 random bytes from the kernel, as hex.
    pub fn generate() -> WorkerKey {
        use std::io::Read;
        let mut bytes = [0u8; 32];
        let from_kernel = std::fs::File::open("/dev/urandom")
            .and_then(|mut f| f.read_exact(&mut bytes))
            .is_ok();
        if !from_kernel {
            // Without /dev/urandom (a bare chroot): a seeded PRNG, still unguessable
            // enough for a key that only sorts requests into pools.
            bytes.iter_mut().for_each(|b| *b = fastrand::u8(..));
        }
        WorkerKey(bytes.iter().map(|b| format!("{b:02x}")).collect())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The request pools of one server.
pub struct Pools {
    write: Arc<Semaphore>,
    write_size: usize,
    worker: Arc<Semaphore>,
    control: Arc<Semaphore>,
}

/// Which pool a request draws from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pool {
    Open,
    Worker,
    Control,
    Write,
}

impl Pool {
    pub fn label(self) -> &'static str {
        match self {
            Pool::Open => "open",
            Pool::Worker => "worker",
            Pool::Control => "control",
            Pool::Write => "write",
        }
    }
}

impl Pools {
    /// `write_size` is `[http] max_concurrent_requests`.
    pub fn new(write_size: usize) -> Pools {
        Pools {
            write: Arc::new(Semaphore::new(write_size)),
            write_size,
            worker: Arc::new(Semaphore::new(WORKER_SLOTS)),
            control: Arc::new(Semaphore::new(CONTROL_SLOTS)),
        }
    }

    fn semaphore(&self, pool: Pool) -> Option<(&Arc<Semaphore>, usize)> {
        match pool {
            Pool::Open => None,
            Pool::Worker => Some((&self.worker, WORKER_SLOTS)),
            Pool::Control => Some((&self.control, CONTROL_SLOTS)),
            Pool::Write => Some((&self.write, self.write_size)),
        }
    }

    /// Requests in flight per pool (open requests are not tracked), for `/metrics`.
    pub fn in_flight(&self) -> Vec<(&'static str, usize)> {
        [Pool::Worker, Pool::Control, Pool::Write]
            .into_iter()
            .filter_map(|pool| {
                let (semaphore, size) = self.semaphore(pool)?;
                Some((
                    pool.label(),
                    size.saturating_sub(semaphore.available_permits()),
                ))
            })
            .collect()
    }
}

/// The pool `request` belongs to.
fn classify(state: &AppState, request: &Request) -> Pool {
    let path = request.uri().path();
    if OPEN_PATHS.contains(&path) {
        return Pool::Open;
    }
    let from_worker = super::auth::presented_token(request).is_some_and(|given| {
        super::auth::constant_time_eq(given.as_bytes(), state.worker_key.as_str().as_bytes())
    });
    if from_worker {
        Pool::Worker
    } else if CONTROL_PATHS.contains(&path) {
        Pool::Control
    } else {
        Pool::Write
    }
}

/// Middleware: holds a slot of the request's pool while it is served, or answers 503
/// when that pool is full.
pub async fn limit(State(state): State<Arc<AppState>>, request: Request, next: Next) -> Response {
    let pool = classify(&state, &request);
    let Some((semaphore, _)) = state.pools.semaphore(pool) else {
        return next.run(request).await;
    };
    let Ok(_slot) = semaphore.clone().try_acquire_owned() else {
        if state.log_throttle.allow("busy") {
            tracing::warn!(
                path = request.uri().path(),
                pool = pool.label(),
                "HTTP request refused: too many requests in flight (repeats within 10 s are logged at debug level)"
            );
        } else {
            tracing::debug!(
                path = request.uri().path(),
                pool = pool.label(),
                "HTTP request refused: too many requests in flight"
            );
        }
        let which = match pool {
            Pool::Write => "[http] max_concurrent_requests",
            Pool::Worker => "the pool of the agent's own workers",
            _ => "the pool of /v1/status and /metrics",
        };
        return ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "datakit.tooManyRequests",
            format!("too many requests in flight ({which}); retry later"),
        )
        .into_response();
    };
    next.run(request).await
}
