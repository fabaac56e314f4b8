//! `GET /v1/status`: the JSON behind `pythond status`, and the small probes
//! (`/v1/ping`, `/health`).
//!
//! The body is the stats snapshot (inputs, their plugins, point counters), taken with
//! the request's filters (src/status_filter.rs), plus what only the HTTP side knows:
//! the address it serves on, its request counters and the last errors inputs reported
//! through `/v1/lasterror`.

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::Json;
use serde::Serialize;
use serde_json::json;

use super::AppState;

/// The `/v1/status` document: the snapshot's keys, then the HTTP side's.
#[derive(Serialize)]
pub struct StatusBody {
    #[serde(flatten)]
    stats: crate::stats::StatsSnapshot,
    version: &'static str,
    uptime_seconds: u64,
    http: HttpSide,
    lasterrors: Vec<serde_json::Value>,
}

#[derive(Serialize)]
pub struct HttpSide {
    listen: String,
    requests: Vec<serde_json::Value>,
}

/// `?input=&plugin=&all=` filter the inputs and plugins shown (src/status_filter.rs).
/// The body is serialized straight from the snapshot: at 10,000 instances with `all`,
/// a JSON tree of it would take ten times the memory of the text.
pub async fn status(
    State(state): State<Arc<AppState>>,
    Query(query): Query<Vec<(String, String)>>,
) -> Json<StatusBody> {
    let filter = crate::status_filter::StatusFilter::from_pairs(
        query.iter().map(|(k, v)| (k.as_str(), v.as_str())),
    );
    let requests = state
        .http_stats
        .snapshot()
        .into_iter()
        .map(|(route, status, count)| json!({"route": route, "status": status, "count": count}))
        .collect();
    Json(StatusBody {
        stats: state.stats.snapshot_with(&filter),
        version: env!("CARGO_PKG_VERSION"),
        uptime_seconds: state.started.elapsed().as_secs(),
        http: HttpSide {
            listen: state.listen.to_string(),
            requests,
        },
        lasterrors: state.lasterrors.snapshot(),
    })
}

/// DataKit's ping answer shape: `{"content": {"version", "uptime", "host"}}`.
pub async fn ping(State(state): State<Arc<AppState>>) -> Json<serde_json::Value> {
    Json(json!({
        "content": {
            "version": env!("CARGO_PKG_VERSION"),
            "uptime": format!("{:?}", state.started.elapsed()),
            "host": state.hostname,
        }
    }))
}

pub async fn health() -> Json<serde_json::Value> {
    Json(json!({"status": "ok"}))
}
