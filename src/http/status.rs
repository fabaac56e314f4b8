//! `GET /v1/status`: the JSON behind `pythond status`, and the small probes
//! (`/v1/ping`, `/health`).
//!
//! The body is the stats snapshot (inputs, their plugins, point counters) plus what
//! only the HTTP side knows: the address it serves on, its request counters and the
//! last errors inputs reported through `/v1/lasterror`.

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::Json;
use serde_json::json;

use super::AppState;

/// `?input=&plugin=&all=` filter the inputs and plugins shown (src/status_filter.rs).
pub async fn status(
    State(state): State<Arc<AppState>>,
    Query(query): Query<Vec<(String, String)>>,
) -> Json<serde_json::Value> {
    let snapshot = state.stats.snapshot();
    let requests: Vec<serde_json::Value> = state
        .http_stats
        .snapshot()
        .into_iter()
        .map(|(route, status, count)| json!({"route": route, "status": status, "count": count}))
        .collect();
    let mut body = serde_json::to_value(&snapshot).unwrap_or_else(|_| json!({}));
    if let Some(object) = body.as_object_mut() {
        object.insert("version".into(), json!(env!("CARGO_PKG_VERSION")));
        object.insert(
            "uptime_seconds".into(),
            json!(state.started.elapsed().as_secs()),
        );
        object.insert(
            "http".into(),
            json!({"listen": state.listen.to_string(), "requests": requests}),
        );
        object.insert("lasterrors".into(), json!(state.lasterrors.snapshot()));
    }
    let filter = crate::status_filter::StatusFilter::from_pairs(
        query.iter().map(|(k, v)| (k.as_str(), v.as_str())),
    );
    crate::status_filter::apply(&mut body, &filter);
    Json(body)
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
