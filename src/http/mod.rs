//! The DataKit-compatible HTTP API (DESIGN §3): write, lasterror, ping, health,
//! status and metrics, served by axum.
//!
//! Safe by default: loopback unless configured, and a non-loopback address is refused
//! without `[http] token`; requests are bounded in body size (before and after gzip),
//! in time (`request_timeout`, 408; `min_body_rate`, 408) and in number (per request
//! pool, 503: see `pools.rs`).
//! Every answer is counted by route and status. The agent logs the address actually
//! bound as `HTTP API listening on http://ADDR` (with `listen = "127.0.0.1:0"` that is
//! how to learn the port).
//!
//! Files: `serve.rs` the accept loop (header timeout, connection cap), `pools.rs` the
//! request pools (503), `auth.rs` token check, `body.rs` size limits and gzip, `error.rs` DataKit's
//! error shape, `write.rs` write/lasterror, `status.rs` status/ping/health,
//! `metrics.rs` the `/metrics` families, `process_metrics.rs` the agent's own
//! `process_*` families, `prom_text.rs` the Prometheus text writer they share.

mod auth;
mod body;
mod error;
mod metrics;
mod pools;
mod process_metrics;
mod prom_text;
mod serve;
mod status;
mod tap;
mod write;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use error::ApiError;
pub use metrics::HttpStats;
pub use prom_text::PromWriter;

use crate::config::HttpConfig;
use crate::ingest::{Ingest, InputTags};
use crate::stats::Stats;
use write::LastErrors;

/// How long a graceful stop waits for requests in flight.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// Lets a kind of refusal be logged at warn level at most once per [`LOG_EVERY`]; the
/// repeats go to debug (every refusal is still counted in `/metrics`). A flood of bad
/// requests must not become a flood of log lines.
#[derive(Default)]
pub(crate) struct LogThrottle {
    last: std::sync::Mutex<std::collections::HashMap<&'static str, Instant>>,
}

/// See [`LogThrottle`].
const LOG_EVERY: Duration = Duration::from_secs(10);

impl LogThrottle {
    pub(crate) fn allow(&self, what: &'static str) -> bool {
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        match last.get(what) {
            Some(at) if now.duration_since(*at) < LOG_EVERY => false,
            _ => {
                last.insert(what, now);
                true
            }
        }
    }
}

/// What every handler shares.
pub struct AppState {
    ingest: Arc<Ingest>,
    stats: Arc<Stats>,
    http_stats: HttpStats,
    lasterrors: LastErrors,
    /// Global tags (an HTTP write has no input of its own to add tags).
    tags: InputTags,
    token: Option<String>,
    max_body: u64,
    request_timeout: Duration,
    /// `[http] min_body_rate`, bytes per second (0: off).
    min_body_rate: u64,
    /// `[http] max_points_per_request`.
    max_points: usize,
    pools: pools::Pools,
    /// The bearer token of the agent's own workers (see `pools.rs`).
    worker_key: pools::WorkerKey,
    listen: SocketAddr,
    hostname: String,
    started: Instant,
    log_throttle: LogThrottle,
    /// Inputs with `transport = "http"`: their tags, by input name.
    http_inputs: std::sync::Mutex<std::collections::HashMap<String, InputTags>>,
}

/// Points inputs with `transport = "http"` at the running API. Cheap to clone: the
/// input set keeps one to configure every worker it starts, on every reload.
#[derive(Clone)]
pub struct HttpTransport {
    url: String,
    state: Arc<AppState>,
}

impl HttpTransport {
    /// The transport that makes a worker's `report()` post to the write API (its URL,
    /// and the per-agent worker key, accepted like `[http] token`, which puts the
    /// worker's requests in their own pool), after the API learnt the tags the points
    /// of `input` get. The launch renders both (src/worker/launch.rs).
    pub fn configure(&self, input: &str, tags: InputTags) -> crate::worker::launch::Transport {
        self.state
            .http_inputs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(input.to_string(), tags);
        crate::worker::launch::Transport::Http {
            url: self.url.clone(),
            token: self.state.worker_key.as_str().into(),
        }
    }
}

/// A running HTTP API.
pub struct HttpServer {
    addr: SocketAddr,
    stop: CancellationToken,
    task: JoinHandle<()>,
    state: Arc<AppState>,
}

impl HttpServer {
    /// Binds `config.listen` and serves in the background.
    ///
    /// Refuses (with an error saying why) to serve a non-loopback address without a
    /// token, whatever the configuration check let through.
    pub async fn start(
        config: &HttpConfig,
        ingest: Arc<Ingest>,
        stats: Arc<Stats>,
        hostname: String,
    ) -> anyhow::Result<HttpServer> {
        let listener = tokio::net::TcpListener::bind(&config.listen)
            .await
            .with_context(|| format!("cannot listen on {} ([http] listen)", config.listen))?;
        let addr = listener
            .local_addr()
            .context("cannot read the bound address")?;
        if !addr.ip().is_loopback() && config.token.is_none() {
            anyhow::bail!(
                "refusing to serve the HTTP API on {addr}: it is not a loopback address and [http] token is not set"
            );
        }
        let state = Arc::new(AppState {
            tags: ingest.input_tags(&Default::default()),
            ingest,
            stats,
            http_stats: HttpStats::default(),
            lasterrors: LastErrors::default(),
            token: config.token.clone(),
            max_body: config.max_body_bytes,
            request_timeout: config.request_timeout,
            min_body_rate: config.min_body_rate,
            max_points: config.max_points_per_request,
            pools: pools::Pools::new(config.max_concurrent_requests),
            worker_key: pools::WorkerKey::generate(),
            listen: addr,
            hostname,
            started: Instant::now(),
            http_inputs: Default::default(),
            log_throttle: LogThrottle::default(),
        });
        let app = router(state.clone());
        let stop = CancellationToken::new();
        let stopped = stop.clone();
        let task = tokio::spawn(serve::serve(listener, app, stopped));
        tracing::info!(
            addr = %addr,
            auth = config.token.is_some(),
            "HTTP API listening on http://{addr}"
        );
        Ok(HttpServer {
            addr,
            stop,
            task,
            state,
        })
    }

    /// What inputs with `transport = "http"` need from this server. Their workers
    /// authenticate with the server's worker key, never with `[http] token`.
    pub fn transport(&self) -> HttpTransport {
        HttpTransport {
            url: self.local_url(),
            state: self.state.clone(),
        }
    }

    /// The address actually bound.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The base URL local clients (workers with `transport = "http"`) should use: the
    /// bound address, with an unspecified IP (0.0.0.0, ::) replaced by loopback.
    pub fn local_url(&self) -> String {
        let mut addr = self.addr;
        if addr.ip().is_unspecified() {
            addr.set_ip(match addr {
                SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
                SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
            });
        }
        format!("http://{addr}")
    }

    /// Stops accepting, lets requests in flight finish (a few seconds at most).
    pub async fn stop(self) {
        self.stop.cancel();
        let mut task = self.task;
        if tokio::time::timeout(STOP_GRACE, &mut task).await.is_err() {
            tracing::warn!(
                "HTTP API: requests still in flight after {STOP_GRACE:?}; dropping them"
            );
            task.abort();
        }
    }
}

fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/v1/write/:category", post(write::write))
        .route("/v1/lasterror", post(write::lasterror))
        .route("/v1/ping", get(status::ping))
        .route("/health", get(status::health))
        .route("/v1/status", get(status::status))
        .route("/metrics", get(metrics_handler))
        .route("/v1/tap", get(tap::tap))
        .fallback(not_found)
        // Layers run outside in: count, then limit, then time, then authenticate.
        .layer(middleware::from_fn_with_state(
            state.clone(),
            auth::require_token,
        ))
        .layer(middleware::from_fn_with_state(state.clone(), time_limit))
        .layer(middleware::from_fn_with_state(state.clone(), pools::limit))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            count_requests,
        ))
        .with_state(state)
}

async fn metrics_handler(State(state): State<Arc<AppState>>) -> Response {
    let mut text = metrics::render(
        &state.stats.snapshot_with(&metrics::MetricsView),
        &state.http_stats,
    );
    text.push_str(&tap::metrics(state.ingest.tap()));
    let mut in_flight = PromWriter::default();
    in_flight.gauge(
        "pythond_http_requests_in_flight",
        "HTTP requests being served, by request pool (docs/HTTP.md).",
        state
            .pools
            .in_flight()
            .into_iter()
            .map(|(pool, n)| (vec![("pool", pool)], n as f64)),
    );
    text.push_str(&in_flight.finish());
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
        .into_response()
}

async fn not_found(request: Request) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "datakit.notFound",
        format!("no route for {} {}", request.method(), request.uri().path()),
    )
}

/// Route label for metrics: the route pattern, never the raw path (bounded cardinality).
fn route_label(path: &str) -> &'static str {
    match path {
        p if p.starts_with("/v1/write/") => "/v1/write/{category}",
        "/v1/lasterror" => "/v1/lasterror",
        "/v1/ping" => "/v1/ping",
        "/health" => "/health",
        "/v1/status" => "/v1/status",
        "/metrics" => "/metrics",
        "/v1/tap" => "/v1/tap",
        _ => "other",
    }
}

async fn count_requests(
    State(state): State<Arc<AppState>>,
    request: Request,
    next: Next,
) -> Response {
    let route = route_label(request.uri().path());
    let response = next.run(request).await;
    state.http_stats.add(route, response.status().as_u16());
    response
}

/// When a request's `request_timeout` runs out. Handlers that stream (body upload,
/// decoding) stop at it themselves and answer 408 with what they did; the middleware
/// answers for the others, [`HANDLER_GRACE`] later.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Deadline(pub tokio::time::Instant);

/// How much longer than `request_timeout` the middleware waits for a handler that
/// watches its [`Deadline`] itself, so that handler's more precise 408 wins.
const HANDLER_GRACE: Duration = Duration::from_secs(1);

async fn time_limit(
    State(state): State<Arc<AppState>>,
    mut request: Request,
    next: Next,
) -> Response {
    // Only a timeout logs it; cloning the URI shares its bytes instead of copying.
    let uri = request.uri().clone();
    let started = tokio::time::Instant::now();
    request
        .extensions_mut()
        .insert(Deadline(started + state.request_timeout));
    let backstop = state.request_timeout + HANDLER_GRACE;
    match tokio::time::timeout(backstop, next.run(request)).await {
        Ok(response) => response,
        Err(_) => {
            if state.log_throttle.allow("timeout") {
                tracing::warn!(path = uri.path(), timeout = ?state.request_timeout, "HTTP request timed out (repeats within 10 s are logged at debug level)");
            } else {
                tracing::debug!(path = uri.path(), timeout = ?state.request_timeout, "HTTP request timed out");
            }
            ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                "datakit.requestTimeout",
                format!(
                    "request not completed within {:?} ([http] request_timeout)",
                    state.request_timeout
                ),
            )
            .into_response()
        }
    }
}
