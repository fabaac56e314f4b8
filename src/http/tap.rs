//! `GET /v1/tap`: the points the agent accepts, streamed live as NDJSON
//! (docs/HTTP.md), for `pythond tap`. Filters `input`, `category`; `format=json`
//! (default) gives each point's tags and fields, `format=lp` its line protocol.
//!
//! Line shapes: first `{"tap":{...filters...}}`; then one line per point,
//! `{"input","plugin","category","measurement","tags","fields","time"}` or
//! `{"input","plugin","category","lp"}`; `{"dropped":N}` before the next point when
//! this subscriber was too slow and missed N points; `{"heartbeat":true}` after
//! [`HEARTBEAT`] without points (so a client that went away is noticed).

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;

use super::{ApiError, AppState};
use crate::point::Category;
use crate::tap::{Subscription, TapEvent, TapFilter};

/// Longest quiet time before a heartbeat line.
const HEARTBEAT: Duration = Duration::from_secs(5);
/// Points written in one chunk at most (the rest follow in the next).
const CHUNK_POINTS: usize = 512;

#[derive(Deserialize)]
pub struct TapQuery {
    input: Option<String>,
    category: Option<String>,
    format: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum TapFormat {
    Json,
    LineProtocol,
}

pub async fn tap(State(state): State<Arc<AppState>>, Query(query): Query<TapQuery>) -> Response {
    let format = match query.format.as_deref() {
        None | Some("json") => TapFormat::Json,
        Some("lp") => TapFormat::LineProtocol,
        Some(other) => {
            return bad_request(format!("unknown format {other:?} (expected json or lp)"))
        }
    };
    let category = match query.category.as_deref() {
        None => None,
        Some(name) => match Category::from_name(name).or_else(|| Category::from_code(name)) {
            Some(category) => Some(category),
            None => {
                return bad_request(format!(
                    "unknown category {name:?} (expected metric, logging, object, custom_object, keyevent or rum)"
                ))
            }
        },
    };
    let filter = TapFilter {
        input: query.input.clone(),
        category,
    };
    let subscription = match state.ingest.tap().subscribe(filter) {
        Ok(subscription) => subscription,
        Err(error) => {
            return ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "datakit.tooManyTaps",
                error.to_string(),
            )
            .into_response()
        }
    };
    let first = json!({"tap": {
        "input": query.input,
        "category": category.map(Category::name),
        "format": match format { TapFormat::Json => "json", TapFormat::LineProtocol => "lp" },
    }});
    tracing::info!(input = ?query.input, category = ?category.map(Category::name), "tap opened");
    let logs = state.clone();
    let stream = futures_util::stream::unfold(
        (subscription, Some(format!("{first}\n"))),
        move |(mut subscription, first)| {
            let logs = logs.clone();
            async move {
                if let Some(first) = first {
                    return Some((
                        Ok::<_, std::convert::Infallible>(first),
                        (subscription, None),
                    ));
                }
                let chunk = next_chunk(&mut subscription, format, &logs).await?;
                Some((Ok(chunk), (subscription, None)))
            }
        },
    );
    (
        [
            (header::CONTENT_TYPE, "application/x-ndjson"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        Body::from_stream(stream),
    )
        .into_response()
}

/// The tap's families for `/metrics`: open taps and the points they missed.
pub fn metrics(tap: &crate::tap::Tap) -> String {
    let mut w = super::prom_text::PromWriter::default();
    w.gauge(
        "pythond_tap_subscribers",
        "Open taps (GET /v1/tap, pythond tap).",
        [(vec![], tap.subscribers() as f64)],
    );
    w.counter(
        "pythond_tap_dropped_points_total",
        "Points taps missed because their reader was too slow (the sinks got them).",
        [(vec![], tap.dropped_total())],
    );
    w.finish()
}

fn bad_request(message: String) -> Response {
    ApiError::new(StatusCode::BAD_REQUEST, "datakit.badRequest", message).into_response()
}

/// The next lines for the subscriber: the points waiting (after a `dropped` notice if
/// it missed some), or a heartbeat. `None` once the tap is closed (agent stopping).
async fn next_chunk(
    subscription: &mut Subscription,
    format: TapFormat,
    state: &AppState,
) -> Option<String> {
    let first = match tokio::time::timeout(HEARTBEAT, subscription.events.recv()).await {
        Ok(Some(event)) => Some(event),
        Ok(None) => return None,
        Err(_) => None,
    };
    let mut out = String::new();
    let dropped = subscription.take_dropped();
    if dropped > 0 {
        if state.log_throttle.allow("tap_dropped") {
            tracing::info!(dropped, "a tap's reader is too slow: it missed points (the sinks got them; counted in pythond_tap_dropped_points_total; repeats within 10 s are logged at debug level)");
        } else {
            tracing::debug!(dropped, "a tap's reader is too slow: it missed points");
        }
        out.push_str(&format!("{}\n", json!({"dropped": dropped})));
    }
    let Some(first) = first else {
        if out.is_empty() {
            out.push_str("{\"heartbeat\":true}\n");
        }
        return Some(out);
    };
    write_event(&mut out, &first, format);
    for _ in 1..CHUNK_POINTS {
        match subscription.events.try_recv() {
            Ok(event) => write_event(&mut out, &event, format),
            Err(_) => break,
        }
    }
    Some(out)
}

fn write_event(out: &mut String, event: &TapEvent, format: TapFormat) {
    let mut line = serde_json::Map::new();
    line.insert("input".into(), json!(&*event.input));
    line.insert("plugin".into(), json!(&*event.plugin));
    line.insert("category".into(), json!(event.point.category.name()));
    match format {
        TapFormat::Json => {
            // The same object the file sink and `pythond check` write for the point.
            let mut point = Vec::new();
            event.point.write_json(&mut point);
            if let Ok(serde_json::Value::Object(fields)) =
                serde_json::from_slice::<serde_json::Value>(&point)
            {
                line.extend(fields);
            }
        }
        TapFormat::LineProtocol => {
            let mut text = String::new();
            event.point.write_line_protocol(&mut text);
            line.insert("lp".into(), json!(text.trim_end()));
        }
    }
    out.push_str(&serde_json::Value::Object(line).to_string());
    out.push('\n');
}
