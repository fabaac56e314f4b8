//! The `[http] token` check: `Authorization: Bearer <token>` or `?token=<token>`.
//!
//! Liveness probes (`/health`, `/v1/ping`) stay open so a load balancer can check the
//! agent without the secret; everything else needs the token when one is configured.
//! The comparison takes the same time wherever the first differing byte is, and the
//! token never appears in a log line or an answer.

use std::sync::Arc;

use axum::extract::{Query, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::error::ApiError;
use super::AppState;

/// Paths served without a token.
const OPEN_PATHS: &[&str] = &["/health", "/v1/ping"];

/// Middleware: lets the request through only with the right token (or none configured).
pub async fn require_token(
    State(state): State<Arc<AppState>>,
    request: Request,
    next: Next,
) -> Response {
    let Some(expected) = state.token.as_deref() else {
        return next.run(request).await;
    };
    if OPEN_PATHS.contains(&request.uri().path()) {
        return next.run(request).await;
    }
    match presented_token(&request) {
        // The agent's own workers present the worker key (see `pools.rs`).
        Some(given)
            if constant_time_eq(given.as_bytes(), expected.as_bytes())
                || constant_time_eq(given.as_bytes(), state.worker_key.as_str().as_bytes()) =>
        {
            next.run(request).await
        }
        Some(_) => {
            if state.log_throttle.allow("wrong_token") {
                tracing::warn!(
                    path = request.uri().path(),
                    "HTTP request with a wrong token refused (repeats within 10 s are logged at debug level)"
                );
            } else {
                tracing::debug!(
                    path = request.uri().path(),
                    "HTTP request with a wrong token refused"
                );
            }
            unauthorized("wrong token")
        }
        None => {
            tracing::debug!(
                path = request.uri().path(),
                "HTTP request without a token refused"
            );
            unauthorized("a token is required: send `Authorization: Bearer <token>` or the query parameter `token=<token>`")
        }
    }
}

fn unauthorized(message: &str) -> Response {
    ApiError::new(StatusCode::UNAUTHORIZED, "datakit.authFailed", message).into_response()
}

/// The token the client sent: the Bearer header first, else the `token` query parameter.
pub(super) fn presented_token(request: &Request) -> Option<String> {
    if let Some(value) = request.headers().get(header::AUTHORIZATION) {
        let value = value.to_str().ok()?;
        let (scheme, token) = value.trim().split_once(' ')?;
        return scheme
            .eq_ignore_ascii_case("bearer")
            .then(|| token.trim().to_string());
    }
    let Query(pairs) = Query::<Vec<(String, String)>>::try_from_uri(request.uri()).ok()?;
    pairs
        .into_iter()
        .find(|(k, _)| k == "token")
        .map(|(_, v)| v)
}

/// Compares without an early exit, so the time taken does not tell an attacker how many
/// leading bytes were right (only whether the lengths match).
pub(super) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

#[cfg(test)]
mod tests {
    use super::constant_time_eq;

    #[test]
    fn compares_whole_tokens() {
        assert!(constant_time_eq(b"s3cret", b"s3cret"));
        assert!(!constant_time_eq(b"s3cret", b"s3creT"));
        assert!(!constant_time_eq(b"s3cret", b"s3cre"));
        assert!(!constant_time_eq(b"", b"x"));
    }
}
