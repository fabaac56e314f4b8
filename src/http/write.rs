//! `POST /v1/write/<category>` and `POST /v1/lasterror`: DataKit's write API.
//!
//! A JSON body (Content-Type `application/json`, what DataKit's shim sends with
//! `requests.post(url, json=points)`) is an array of `{measurement, tags, fields,
//! time}`; anything else is line protocol. Points go through [`Ingest::write_blocking`] like
//! points from workers: same rules, counters, logs and sinks. A rejected point gets
//! the request a 400 naming it and saying why, but never drops its valid neighbours.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use axum::body::Body;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::Deserialize;

use super::body::{read_body, read_raw_body, BodyLimits};
use super::error::ApiError;
use super::{AppState, Deadline};
use crate::ingest::{
    precheck_write_body, InputTags, Origin, Outcome, WriteBody, WriteBodyError, WriteLimits,
    WriteOutcome, WriteRequest,
};
use crate::percent::percent_decode;
use crate::point::{Category, Precision};

/// How many rejection messages a 400 answer lists (the rest are counted).
const REJECTIONS_SHOWN: usize = 5;

/// The query parameters DataKit's write API takes (others, like `version`, are ignored).
#[derive(Debug, Default, Deserialize)]
pub struct WriteQuery {
    input: Option<String>,
    precision: Option<String>,
    ignore_global_tags: Option<String>,
}

pub async fn write(
    State(state): State<Arc<AppState>>,
    Path(category): Path<String>,
    query: Result<Query<WriteQuery>, QueryRejection>,
    deadline: Option<Extension<Deadline>>,
    request: Request,
) -> Result<Response, ApiError> {
    // The request's own headers, not a copy of them.
    let (parts, body) = request.into_parts();
    let headers = &parts.headers;
    let Query(query) = query
        .map_err(|e| ApiError::bad_request("datakit.badQuery", format!("bad query string: {e}")))?;
    let category = Category::from_name(&category).ok_or_else(|| {
        let names: Vec<&str> = Category::ALL.iter().map(|c| c.name()).collect();
        ApiError::bad_request(
            "datakit.invalidCategory",
            format!(
                "unknown category {category:?} in /v1/write/{category} (expected one of: {})",
                names.join(", ")
            ),
        )
    })?;
    let precision = match query.precision.as_deref().filter(|p| !p.is_empty()) {
        None => None,
        Some(p) => Some(
            p.parse::<Precision>()
                .map_err(|e| ApiError::bad_request("datakit.invalidPrecision", e.to_string()))?,
        ),
    };
    let ignore_global_tags = query
        .ignore_global_tags
        .as_deref()
        .is_some_and(|v| matches!(v.to_ascii_lowercase().as_str(), "true" | "1" | "yes"));
    let limits = body_limits(&state, deadline);
    let raw = read_raw_body(headers, body, &limits).await?;

    let is_json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.to_ascii_lowercase().contains("json"));

    let claimed = worker_identity(&state, headers);
    // Only the agent's own workers report the points their shim could not send.
    let shim_rejected = claimed
        .is_some()
        .then(|| shim_rejections(headers))
        .flatten();
    let (input, plugin, tags, plugin_stats) = match claimed {
        Some((input, plugin, tags, stats)) => {
            (input, plugin.unwrap_or_else(|| "-".into()), tags, stats)
        }
        None => (
            query
                .input
                .filter(|i| !i.is_empty())
                .unwrap_or_else(|| "http".into()),
            "-".into(),
            state.tags.clone(),
            None,
        ),
    };
    let job = WriteJob {
        ingest: state.ingest.clone(),
        is_json,
        category,
        precision,
        ignore_global_tags,
        input,
        plugin,
        tags,
        plugin_stats,
        max_points: state.max_points,
        deadline: limits.deadline.into_std(),
        shim_rejected,
    };
    // Inflating and decoding a large body take a while: off the runtime's threads (one
    // hop for both), so /health and the other requests stay responsive. If this
    // handler is dropped (the middleware's timeout, a closed connection), the decoder
    // stops at its next check.
    let abandoned = Arc::new(AtomicBool::new(false));
    let _abandon_on_drop = AbandonOnDrop(abandoned.clone());
    let runtime = tokio::runtime::Handle::current();
    let outcome = tokio::task::spawn_blocking(move || {
        let bytes = raw.inflate()?;
        let large = bytes.len() >= TRIM_AFTER_BYTES;
        let outcome = job.run(&bytes, &abandoned, &runtime);
        drop(bytes);
        drop(job);
        if large {
            crate::heap::give_back();
        }
        outcome
    })
    .await
    .map_err(|e| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "datakit.internal",
            format!("decoding failed: {e}"),
        )
    })?;
    let (result, looks_json) = outcome?;
    answer(category, is_json, looks_json, result)
}

/// Bodies at least this large are followed by [`crate::heap::give_back`]
/// (docs/HTTP.md); smaller ones leave their freed memory for the next request.
const TRIM_AFTER_BYTES: usize = 1 << 20;

/// Sets its flag when dropped: tells a decoding thread nobody waits for it any more.
struct AbandonOnDrop(Arc<AtomicBool>);

impl Drop for AbandonOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// Everything a write request's decoding needs but its body, owned, for a blocking
/// thread.
struct WriteJob {
    ingest: Arc<crate::ingest::Ingest>,
    is_json: bool,
    category: Category,
    precision: Option<Precision>,
    ignore_global_tags: bool,
    input: String,
    plugin: String,
    tags: InputTags,
    plugin_stats: Option<Arc<crate::stats::PluginStats>>,
    max_points: usize,
    deadline: std::time::Instant,
    shim_rejected: Option<ShimRejected>,
}

/// `X-Pythond-Rejected` of a `transport = "http"` worker: the points of this category
/// its shim could not send (docs/PROTOCOL.md), counted like the pipe's `rejected`.
#[derive(Debug, Deserialize)]
struct ShimRejected {
    count: u64,
    #[serde(default)]
    first: Vec<ShimRejectedPoint>,
}

#[derive(Debug, Deserialize)]
struct ShimRejectedPoint {
    #[serde(default)]
    measurement: Option<String>,
    #[serde(default)]
    reason: String,
    /// The shim's reason label (see `Ingest::reject_from_shim`).
    #[serde(default)]
    label: Option<String>,
}

/// Reads `X-Pythond-Rejected` (percent-encoded JSON); a malformed one counts as
/// nothing but is logged.
fn shim_rejections(headers: &HeaderMap) -> Option<ShimRejected> {
    let value = headers.get("x-pythond-rejected")?.to_str().ok()?;
    match serde_json::from_str(&percent_decode(value)) {
        Ok(parsed) => Some(parsed),
        Err(e) => {
            tracing::warn!("ignoring a malformed X-Pythond-Rejected header: {e}");
            None
        }
    }
}

impl WriteJob {
    /// Checks the body as a whole (syntax, point count), then decodes and forwards its
    /// points. Also says whether a line-protocol body looks like JSON (for the hint).
    fn run(
        &self,
        bytes: &[u8],
        abandoned: &AtomicBool,
        runtime: &tokio::runtime::Handle,
    ) -> Result<(WriteOutcome, bool), ApiError> {
        let body = if self.is_json {
            if !looks_like_json(bytes) {
                let value: serde_json::Value = serde_json::from_slice(bytes).unwrap_or_default();
                return Err(ApiError::bad_request(
                    "datakit.badBody",
                    format!(
                        "expected a JSON array of points, found {}",
                        json_kind(&value)
                    ),
                ));
            }
            WriteBody::Json(bytes)
        } else {
            let text = std::str::from_utf8(bytes).map_err(|e| {
                ApiError::bad_request(
                    "datakit.badBody",
                    format!("line protocol body is not UTF-8: {e}"),
                )
            })?;
            WriteBody::LineProtocol(text)
        };
        let limits = WriteLimits {
            deadline: self.deadline,
            abandoned,
        };
        precheck_write_body(&body, self.max_points, &limits).map_err(|e| match e {
            WriteBodyError::Json(_) => ApiError::bad_request(
                "datakit.badBody",
                format!("{e}; expected an array of points like [{{\"measurement\": \"m\", \"tags\": {{}}, \"fields\": {{\"f\": 1}}, \"time\": null}}]"),
            ),
            WriteBodyError::TooManyPoints { .. } => ApiError::too_large(format!(
                "{e}: nothing was written; split the body into smaller requests"
            )),
            WriteBodyError::Timeout { .. } => ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                "datakit.requestTimeout",
                format!("{e}; nothing was written"),
            ),
        })?;
        let origin = Origin {
            input: &self.input,
            plugin: &self.plugin,
            tags: &self.tags,
            plugin_stats: self.plugin_stats.as_deref(),
        };
        if let Some(shim) = &self.shim_rejected {
            let detailed = shim.first.len() as u64;
            for point in shim.first.iter().take(shim.count as usize) {
                self.ingest.reject_from_shim(
                    &origin,
                    self.category,
                    point.measurement.as_deref(),
                    point.label.as_deref(),
                    &escape_control(&point.reason),
                );
            }
            for _ in detailed..shim.count.min(self.max_points as u64) {
                self.ingest.reject_from_shim(
                    &origin,
                    self.category,
                    None,
                    None,
                    "not serializable",
                );
            }
        }
        let request = WriteRequest {
            category: self.category,
            precision: self.precision,
            ignore_global_tags: self.ignore_global_tags,
            body,
        };
        let result = self
            .ingest
            .write_blocking(&origin, request, &limits, runtime);
        let looks_json = !self.is_json && looks_like_json(bytes);
        Ok((result, looks_json))
    }
}

/// The answer to a decoded write: 200 when every point was accepted, 408 when
/// decoding ran out of time (saying what was done), 400 naming the rejected points.
fn answer(
    category: Category,
    is_json: bool,
    looks_json: bool,
    result: WriteOutcome,
) -> Result<Response, ApiError> {
    let total = result.outcome.accepted + result.outcome.rejected;
    if let Some(at) = &result.stopped_at {
        return Err(ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            "datakit.requestTimeout",
            format!(
                "request not completed within [http] request_timeout: decoding stopped at {at}; the {total} point(s) before it were handled ({} accepted, {} rejected), the rest was not read",
                result.outcome.accepted, result.outcome.rejected
            ),
        ));
    }
    if result.rejections.is_empty() {
        return Ok(accepted_answer(result.outcome));
    }
    let mut message = format!(
        "{} of {total} {} point(s) rejected ({} accepted): {}",
        result.outcome.rejected,
        category.name(),
        result.outcome.accepted,
        result.rejections[..result.rejections.len().min(REJECTIONS_SHOWN)].join("; ")
    );
    let shown = result.rejections.len().min(REJECTIONS_SHOWN) as u64;
    if result.outcome.rejected > shown {
        message.push_str(&format!("; and {} more", result.outcome.rejected - shown));
    }
    if !is_json && looks_json {
        message.push_str(
            " (the body looks like JSON: send it with `Content-Type: application/json`, or it is read as line protocol)",
        );
    }
    Err(ApiError::bad_request("datakit.invalidPoint", message))
}

/// `200 {"accepted": N, "fixed": N}`: the bytes `Json(json!(...))` would give, written
/// straight out instead of building a JSON map for every request.
fn accepted_answer(outcome: Outcome) -> Response {
    let body = format!(
        "{{\"accepted\":{},\"fixed\":{}}}",
        outcome.accepted, outcome.fixed
    );
    let content_type = HeaderValue::from_static("application/json");
    ([(header::CONTENT_TYPE, content_type)], body).into_response()
}

/// The bounds of a request's body: `[http] max_body`, `min_body_rate` and the
/// request's deadline (`request_timeout` from when its headers were read).
fn body_limits(state: &AppState, deadline: Option<Extension<Deadline>>) -> BodyLimits {
    BodyLimits {
        max: state.max_body,
        min_rate: state.min_body_rate,
        deadline: deadline
            .map(|Extension(Deadline(at))| at)
            .unwrap_or_else(|| tokio::time::Instant::now() + state.request_timeout),
    }
}

fn looks_like_json(bytes: &[u8]) -> bool {
    matches!(
        bytes.iter().find(|b| !b.is_ascii_whitespace()),
        Some(b'[' | b'{')
    )
}

/// A worker of a `transport = "http"` input names its input and plugin in
/// `X-Pythond-Input` / `X-Pythond-Plugin` (percent-encoded). For a registered input,
/// its name, plugin, tags and (existing) plugin stats; otherwise `None`.
type Identity = (
    String,
    Option<String>,
    InputTags,
    Option<Arc<crate::stats::PluginStats>>,
);

fn worker_identity(state: &AppState, headers: &HeaderMap) -> Option<Identity> {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(percent_decode)
    };
    let input = header("x-pythond-input")?;
    let tags = state
        .http_inputs
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .get(&input)?
        .clone();
    let plugin = header("x-pythond-plugin");
    let stats = plugin.as_deref().and_then(|id| {
        state
            .stats
            .existing_input(&input)
            .and_then(|i| i.existing_plugin(id))
    });
    Some((input, plugin, tags, stats))
}

/// Decodes `%XX` escapes (invalid ones are kept as they are).
fn json_kind(value: &serde_json::Value) -> &'static str {
    match value {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

/// `POST /v1/lasterror` body, as DataKit's `set_lasterror` sends it.
#[derive(Debug, Deserialize)]
pub struct LastErrorBody {
    input: String,
    #[serde(default)]
    err_content: String,
}

/// The last error each input reported through `/v1/lasterror`, shown by status.
#[derive(Default)]
pub struct LastErrors {
    by_input: std::sync::Mutex<BTreeMap<String, (String, u64)>>,
    /// Per input: when its report was last logged, and how many were not logged since.
    logged: std::sync::Mutex<std::collections::HashMap<String, (std::time::Instant, u64)>>,
}

/// At most this many inputs are remembered; later new names are logged, not kept.
const MAX_LASTERROR_INPUTS: usize = 1000;
/// Largest `/v1/lasterror` body; a larger one gets 413 (docs/HTTP.md).
pub const MAX_LASTERROR_BODY: u64 = 64 << 10;
/// How much of a reported error is kept and logged; the rest is cut (and says so).
pub const MAX_LASTERROR_MESSAGE: usize = 4 << 10;
/// An input's reports are logged at most once per this period; the others are counted
/// and the next logged line says how many there were.
const LASTERROR_LOG_EVERY: std::time::Duration = std::time::Duration::from_secs(10);

impl LastErrors {
    fn set(&self, input: String, message: String) -> bool {
        let mut map = self.by_input.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= MAX_LASTERROR_INPUTS && !map.contains_key(&input) {
            return false;
        }
        map.insert(input, (message, crate::ingest::now_ns() as u64 / 1_000_000));
        true
    }

    /// Whether to log this report of `input`: `Some(n)` with the number of its reports
    /// not logged since the last one, `None` to keep quiet.
    fn should_log(&self, input: &str) -> Option<u64> {
        let mut logged = self.logged.lock().unwrap_or_else(|p| p.into_inner());
        let now = std::time::Instant::now();
        if logged.len() >= MAX_LASTERROR_INPUTS && !logged.contains_key(input) {
            logged.retain(|_, (at, _)| now.duration_since(*at) < LASTERROR_LOG_EVERY);
        }
        let room = logged.len() < MAX_LASTERROR_INPUTS;
        match logged.get_mut(input) {
            Some((at, quiet)) if now.duration_since(*at) < LASTERROR_LOG_EVERY => {
                *quiet += 1;
                None
            }
            Some((at, quiet)) => {
                let since = *quiet;
                *at = now;
                *quiet = 0;
                Some(since)
            }
            None if room => {
                logged.insert(input.to_string(), (now, 0));
                Some(0)
            }
            // More inputs reporting within the period than are tracked: a flood of
            // names; the caller logs those under one shared throttle.
            None => Some(u64::MAX),
        }
    }

    /// `[{input, message, unix_ms}]`, by input name.
    pub fn snapshot(&self) -> Vec<serde_json::Value> {
        let map = self.by_input.lock().unwrap_or_else(|p| p.into_inner());
        map.iter()
            .map(|(input, (message, unix_ms))| {
                serde_json::json!({"input": input, "message": message, "unix_ms": unix_ms})
            })
            .collect()
    }
}

pub async fn lasterror(
    State(state): State<Arc<AppState>>,
    deadline: Option<Extension<Deadline>>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<serde_json::Value>, ApiError> {
    let mut limits = body_limits(&state, deadline);
    limits.max = limits.max.min(MAX_LASTERROR_BODY);
    let bytes = read_body(&headers, body, &limits).await?;
    let parsed: LastErrorBody = serde_json::from_slice(&bytes).map_err(|e| {
        ApiError::bad_request(
            "datakit.badBody",
            format!("expected {{\"input\": \"...\", \"err_content\": \"...\"}}: {e}"),
        )
    })?;
    // Both come from outside: control characters are escaped so they cannot forge
    // log lines or garble a terminal, and the content is cut to a bounded size.
    let input = escape_control(&parsed.input);
    let message = truncate_message(&escape_control(&parsed.err_content), MAX_LASTERROR_MESSAGE);
    let decision = match state.lasterrors.should_log(&input) {
        Some(u64::MAX) => state.log_throttle.allow("lasterror_flood").then_some(0),
        other => other,
    };
    if let Some(quiet) = decision {
        if quiet > 0 {
            tracing::warn!(input = %input, "last error reported: {message} ({quiet} more reports of this input in the last {LASTERROR_LOG_EVERY:?} not logged)");
        } else {
            tracing::warn!(input = %input, "last error reported: {message}");
        }
    }
    if !state.lasterrors.set(input, message) && state.log_throttle.allow("lasterror_inputs") {
        tracing::warn!("too many inputs reported a last error; this one is not kept for status (repeats within 10 s are logged at debug level)");
    }
    Ok(Json(serde_json::json!({})))
}

/// `text` with every control character escaped (`\n`, `\r`, `\t`, `\u{1b}`, ...), so
/// text from outside stays on one log line and cannot forge another.
pub fn escape_control(text: &str) -> String {
    if !text.chars().any(char::is_control) {
        return text.to_string();
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

/// `text` cut to at most `max` bytes (on a character boundary), saying how much was cut.
fn truncate_message(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… ({} more bytes cut)", &text[..end], text.len() - end)
}

#[cfg(test)]
mod tests {
    use super::{accepted_answer, escape_control, truncate_message};
    use crate::ingest::Outcome;
    use axum::response::IntoResponse;

    #[tokio::test]
    async fn the_accepted_answer_is_what_json_would_say() {
        let outcome = Outcome {
            accepted: 1000,
            fixed: 3,
            rejected: 0,
        };
        let expected =
            axum::Json(serde_json::json!({"accepted": 1000, "fixed": 3})).into_response();
        let answer = accepted_answer(outcome);
        assert_eq!(answer.status(), expected.status());
        assert_eq!(answer.headers(), expected.headers());
        assert_eq!(body_of(answer).await, body_of(expected).await);
    }

    async fn body_of(response: axum::response::Response) -> axum::body::Bytes {
        axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .expect("in-memory body")
    }

    #[test]
    fn control_characters_are_escaped_and_long_messages_cut() {
        assert_eq!(escape_control("plain é"), "plain é");
        assert_eq!(
            escape_control("oops\n2026 ERROR x\r\u{1b}[31m"),
            "oops\\n2026 ERROR x\\r\\u{1b}[31m"
        );
        assert_eq!(truncate_message("abc", 3), "abc");
        assert_eq!(truncate_message("aéb", 2), "a… (3 more bytes cut)");
    }
}
