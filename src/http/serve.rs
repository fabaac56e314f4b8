//! The accept loop: HTTP/1 connections served by hyper with the bounds axum's own
//! `serve` does not set.
//!
//! - a client must send a request's headers within [`HEADER_READ_TIMEOUT`] (also
//!   closes idle keep-alive connections), so a slow-headers client cannot pin a
//!   connection forever — `[http] request_timeout` only starts once headers are in;
//! - at most [`MAX_CONNECTIONS`] connections at once; beyond that new ones are closed
//!   on accept (and counted in the log), so a flood cannot exhaust file descriptors.
//!
//! On stop, the listener closes and every connection finishes its request in flight.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// Longest a client may take to send a request's headers.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Most connections served at once.
pub const MAX_CONNECTIONS: usize = 1024;

/// Serves `router` on `listener` until `stop` is cancelled, then lets each connection
/// finish its request in flight.
pub async fn serve(listener: TcpListener, router: Router, stop: CancellationToken) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let throttle = super::LogThrottle::default();
    let mut connections = JoinSet::new();
    loop {
        let accepted = tokio::select! {
            _ = stop.cancelled() => break,
            accepted = listener.accept() => accepted,
            // Reap finished connection tasks as we go.
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
        };
        let (stream, peer) = match accepted {
            Ok(conn) => conn,
            Err(error) => {
                // EMFILE and friends: back off a little instead of spinning.
                if throttle.allow("accept") {
                    tracing::warn!("HTTP API: accept failed: {error}");
                } else {
                    tracing::debug!("HTTP API: accept failed: {error}");
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            if throttle.allow("connections") {
                tracing::warn!(%peer, "HTTP API: {MAX_CONNECTIONS} connections open; closing new ones (repeats within 10 s are logged at debug level)");
            } else {
                tracing::debug!(%peer, "HTTP API: {MAX_CONNECTIONS} connections open; closing a new one");
            }
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let router = router.clone();
        let stop = stop.clone();
        connections.spawn(async move {
            let _slot = slot;
            let service = hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
                let mut router = router.clone();
                async move { tower_service::Service::call(&mut router, request).await }
            });
            let connection = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_READ_TIMEOUT)
                .serve_connection(TokioIo::new(stream), service);
            tokio::pin!(connection);
            tokio::select! {
                result = connection.as_mut() => {
                    if let Err(error) = result {
                        tracing::debug!(%peer, "HTTP connection ended: {error}");
                    }
                }
                _ = stop.cancelled() => {
                    connection.as_mut().graceful_shutdown();
                    let _ = connection.await;
                }
            }
        });
    }
    drop(listener);
    while connections.join_next().await.is_some() {}
}
