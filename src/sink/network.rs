//! Delivery for every network sink type (`datakit`, `influxdb`,
//! `prometheus_remote_write`, `otlp`): from the disk buffer to the backend.
//!
//! One delivery task per sink reads batches from its [`DiskBuffer`] (by size: up to
//! `batch_points`; by age: a partial batch waits at most `flush_interval`; it reads
//! again only once the buffer's commit watch says enough is committed to fill the
//! batch, not at every commit), turns them
//! into requests with the sink type's [`Protocol`] and POSTs them, up to
//! `concurrency` batches at once, each on its own task with its own retries; batches
//! are acknowledged in the buffer strictly in the order they were read, a batch only
//! once it and every earlier one are delivered or dead-lettered, so a crash re-sends
//! at most the batches in flight and never skips one (docs/BUFFER.md, "Delivery"). Refused
//! connections, timeouts, 408, 429 and 5xx are retried with capped exponential
//! backoff and jitter, forever, waiting at least as long as a `Retry-After` answer
//! asks (up to [`MAX_RETRY_AFTER`]): the buffer (bounded by `max_bytes`) holds the
//! points meanwhile. Any other 4xx cannot be fixed by retrying: the backend's message
//! is logged and the request is written to the dead-letter file
//! `data_dir/deadletter/<sink>.ndjson`, so nothing disappears without a trace; such a
//! batch counts as done. Buffered records in another body
//! format than the sink's (left by a sink of another type with the same name) are
//! never sent: they are written to `data_dir/foreign/<sink>.ndjson`, counted and
//! acknowledged (docs/BUFFER.md).

use std::collections::VecDeque;
use std::future::Future;
use std::io::Write;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::body_format::BodyFormat;
use super::buffer::{DiskBuffer, Foreign, ReadBatch};
use super::protocol::{DeadLetterBody, Protocol, Request, MAX_REQUEST_BYTES};
use crate::config::{redact_query, NetworkSinkConfig};
use crate::point::Category;
use crate::stats::SinkStats;

/// First retry delay; doubled per failure up to `retry_max_interval`.
const FIRST_RETRY: Duration = Duration::from_millis(500);
/// Longest wait a backend's `Retry-After` can impose.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(300);
/// How much of a backend's error answer is kept for logs and the dead-letter file.
const MAX_MESSAGE: usize = 2048;

/// Why a request did not succeed.
enum Failure {
    /// Worth retrying: the backend may accept it later (not before `after`, if the
    /// backend said so with `Retry-After`).
    Retry {
        message: String,
        after: Option<Duration>,
    },
    /// The backend refused it for good.
    Reject { status: u16, message: String },
}

/// One batch being sent on its own task: it resolves to the batch once delivered
/// (or dead-lettered), to `None` if `stop` came while it was retrying. Dropping it
/// aborts the task, so no request outlives the delivery that started it.
struct InFlight(JoinHandle<Option<ReadBatch>>);

impl Future for InFlight {
    type Output = Option<ReadBatch>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.0).poll(cx).map(|joined| match joined {
            Ok(sent) => sent,
            Err(error) => {
                tracing::error!(%error, "send task failed; delivery stops until restart");
                None
            }
        })
    }
}

/// The oldest batch in flight, once done (never, if there is none).
async fn oldest(in_flight: &mut VecDeque<InFlight>) -> Option<ReadBatch> {
    match in_flight.front_mut() {
        Some(first) => first.await,
        None => std::future::pending().await,
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// A network sink's delivery side.
pub struct Delivery {
    pub name: String,
    pub protocol: Arc<dyn Protocol>,
    pub net: NetworkSinkConfig,
    pub buffer: Arc<DiskBuffer>,
    pub stats: Arc<SinkStats>,
    pub deadletter: PathBuf,
    /// Where records in another body format are set aside.
    pub foreign: PathBuf,
}

impl Delivery {
    /// Delivers until `stop` is cancelled; then sends what is queued and returns once
    /// the buffer is empty or the backend fails (the rest waits for the next start).
    pub async fn run(self: Arc<Self>, stop: CancellationToken) {
        let client = match http_client(&self.net) {
            Ok(client) => client,
            Err(error) => {
                tracing::error!(sink = %self.name, %error, "cannot create the HTTP client; this sink delivers nothing");
                self.stats.set_last_error(format!("HTTP client: {error}"));
                return;
            }
        };
        let format = self.protocol.body_format();
        for queued in self.buffer.foreign_at_open() {
            tracing::warn!(sink = %self.name, format = %BodyFormat::name_of(queued.format), sink_format = format.name(),
                records = queued.records, points = queued.points, bytes = queued.bytes, file = %self.foreign.display(),
                "disk buffer: records queued in another body format than this sink's (a sink of another type had this name); they are not sent but moved to the foreign file");
        }
        // Batches being sent, oldest first; acknowledged strictly in this order
        // (docs/BUFFER.md, "Delivery").
        let mut in_flight = VecDeque::new();
        self.deliver(&client, &stop, &mut in_flight).await;
        // What is still in flight stays in the buffer, sent again at the next start;
        // its tasks end before this one, so no request outlives the delivery.
        for mut rest in in_flight {
            rest.0.abort();
            let _ = (&mut rest.0).await;
        }
    }

    /// [`Delivery::run`]'s loop: reads batches and keeps up to `concurrency` of them
    /// in `in_flight`, oldest first, acknowledging them strictly in that order.
    async fn deliver(
        self: &Arc<Self>,
        client: &reqwest::Client,
        stop: &CancellationToken,
        in_flight: &mut VecDeque<InFlight>,
    ) {
        let mut committed = self.buffer.watch();
        let mut stopping = false;
        let failing = Arc::new(AtomicBool::new(false));
        let concurrency = self.net.concurrency.max(1);
        'batches: loop {
            while in_flight.len() >= concurrency {
                if !self.ack_next(in_flight).await {
                    return;
                }
            }
            let mut batch = ReadBatch::default();
            // Whether something may have been committed that the batch can use:
            // reading costs a trip to a blocking thread, so it waits for that.
            let mut read = true;
            loop {
                if read {
                    batch = match self.read_more(batch).await {
                        Some(batch) => batch,
                        None => return,
                    };
                    if !batch.foreign.is_empty() {
                        self.set_aside(std::mem::take(&mut batch.foreign));
                        if batch.records.is_empty() {
                            // Nothing to send, but acknowledged after the batches before it.
                            in_flight.push_back(self.start(client, batch, stop, &failing));
                            continue 'batches;
                        }
                    }
                }
                read = true;
                let full =
                    batch.points() >= self.net.batch_points || batch.bytes() >= MAX_REQUEST_BYTES;
                let age = batch.oldest_ms().map(|ms| now_ms().saturating_sub(ms));
                let wait = match age {
                    _ if full => break,
                    Some(_) if stopping => break,
                    None if stopping => break 'batches,
                    Some(age) => {
                        let left = (self.net.flush_interval.as_millis() as u64).saturating_sub(age);
                        if left == 0 {
                            break;
                        }
                        Duration::from_millis(left)
                    }
                    None => Duration::from_secs(3600),
                };
                // Woken by a commit only once enough is committed to fill the batch
                // (to start it, when it is empty); a partial batch goes when its
                // oldest record has waited `flush_interval`.
                let Some(target) = batch.full_at(self.net.batch_points, MAX_REQUEST_BYTES) else {
                    // The read stopped short of what is committed: read on.
                    continue;
                };
                self.buffer.wake_when(target);
                if committed.borrow_and_update().reached(&target) {
                    continue;
                }
                tokio::select! {
                    changed = committed.changed() => if changed.is_err() { stopping = true },
                    _ = tokio::time::sleep(wait) => {}
                    _ = stop.cancelled(), if !stopping => stopping = true,
                    done = oldest(in_flight), if !in_flight.is_empty() => {
                        in_flight.pop_front();
                        match done {
                            Some(sent) => self.ack(sent).await,
                            None => return,
                        }
                        // Nothing new to read unless the target was reached meanwhile.
                        read = false;
                    }
                }
            }
            in_flight.push_back(self.start(client, batch, stop, &failing));
        }
        while !in_flight.is_empty() {
            if !self.ack_next(in_flight).await {
                return;
            }
        }
    }

    /// Starts sending `batch` on its own task, which retries it independently of
    /// the others in flight.
    fn start(
        self: &Arc<Self>,
        client: &reqwest::Client,
        mut batch: ReadBatch,
        stop: &CancellationToken,
        failing: &Arc<AtomicBool>,
    ) -> InFlight {
        let (this, client, stop, failing) =
            (self.clone(), client.clone(), stop.clone(), failing.clone());
        InFlight(tokio::spawn(async move {
            let sent = this.send(&client, &mut batch, &stop, &failing).await;
            sent.then_some(batch)
        }))
    }

    /// Waits for the oldest batch in flight and acknowledges it. False when it was
    /// not delivered (`stop` came while it was retrying): delivery ends there, and it
    /// and every later batch stay in the buffer.
    async fn ack_next(&self, in_flight: &mut VecDeque<InFlight>) -> bool {
        let done = oldest(in_flight).await;
        in_flight.pop_front();
        match done {
            Some(sent) => {
                self.ack(sent).await;
                true
            }
            None => false,
        }
    }

    /// Records what `batch` held as delivered in the buffer.
    async fn ack(&self, batch: ReadBatch) {
        let buffer = self.buffer.clone();
        let acked = tokio::task::spawn_blocking(move || buffer.ack(&batch)).await;
        match acked {
            Ok(Ok(())) => {}
            Ok(Err(error)) => {
                tracing::error!(sink = %self.name, %error, "cannot record delivery in the disk buffer; these points may be sent again after a restart");
                self.stats.set_last_error(error.to_string());
            }
            Err(error) => {
                tracing::error!(sink = %self.name, %error, "ack task failed");
            }
        }
    }

    /// Writes records in another body format to the foreign file (one JSON object
    /// per line) and counts them; they are never sent. A crash before the batch is
    /// acknowledged writes them again at the next start.
    fn set_aside(&self, foreign: Vec<Foreign>) {
        let points: u64 = foreign.iter().map(|f| u64::from(f.record.points)).sum();
        self.stats.add_foreign(points);
        let mut text = String::new();
        for Foreign { record, format } in &foreign {
            let mut line = serde_json::json!({
                "unix_ms": now_ms(),
                "sink": self.name,
                "format": BodyFormat::name_of(*format),
                "format_code": format,
                "sink_format": self.protocol.body_format().name(),
                "category": record.category.name(),
                "points": record.points,
                "enqueued_ms": record.enqueued_ms,
            });
            // Snappy-compressed records are kept decompressed, as protobuf.
            let body = BodyFormat::plain_body(*format, &record.body).unwrap_or_else(|error| {
                tracing::error!(sink = %self.name, %error, "a foreign record is not the snappy block its format says; kept as stored");
                std::borrow::Cow::Borrowed(&record.body)
            });
            body_field(
                &mut line,
                &body,
                BodyFormat::from_code(*format).is_some_and(BodyFormat::is_text),
            );
            text.push_str(&line.to_string());
            text.push('\n');
        }
        tracing::debug!(sink = %self.name, records = foreign.len(), points, file = %self.foreign.display(), "records in another body format set aside");
        if let Err(error) = append_synced(&self.foreign, text.as_bytes()) {
            tracing::error!(sink = %self.name, points, file = %self.foreign.display(), %error,
                "cannot write the foreign file; these points, in another body format than this sink's, are lost");
            self.stats
                .set_last_error(format!("foreign file {}: {error}", self.foreign.display()));
        }
    }

    /// Reads more committed records into `batch` off the async threads; `None` when
    /// the buffer cannot be read (logged).
    async fn read_more(&self, mut batch: ReadBatch) -> Option<ReadBatch> {
        let buffer = self.buffer.clone();
        let max_points = self.net.batch_points;
        let result = tokio::task::spawn_blocking(move || {
            let result = buffer.read_more(&mut batch, max_points, MAX_REQUEST_BYTES);
            result.map(|()| batch)
        })
        .await;
        match result {
            Ok(Ok(batch)) => Some(batch),
            Ok(Err(error)) => {
                tracing::error!(sink = %self.name, %error, "cannot read the disk buffer; delivery stops until restart");
                self.stats.set_last_error(error.to_string());
                None
            }
            Err(error) => {
                tracing::error!(sink = %self.name, %error, "buffer read task failed");
                None
            }
        }
    }

    /// Sends every request of `batch`, retrying as needed. False if `stop` came while
    /// retrying (the batch stays in the buffer).
    async fn send(
        &self,
        client: &reqwest::Client,
        batch: &mut ReadBatch,
        stop: &CancellationToken,
        failing: &AtomicBool,
    ) -> bool {
        let mut requests = self.protocol.requests(&batch.records);
        let mut next = 0;
        'requests: while next < requests.len() {
            let request = &requests[next];
            next += 1;
            let body = match self.protocol.wire(&request.body) {
                Ok(body) => bytes::Bytes::from(body),
                Err(error) => {
                    // Compressing into memory does not fail short of a bug; keep the
                    // points rather than send something the backend cannot read.
                    let message = format!("cannot compress the request: {error}");
                    tracing::error!(sink = %self.name, points = request.points, %error, "cannot compress a request; written to the dead-letter file");
                    self.stats.set_last_error(message.clone());
                    self.dead_letter(request, 0, &message);
                    continue 'requests;
                }
            };
            let mut delay = FIRST_RETRY;
            loop {
                match self.post(client, request, body.clone()).await {
                    Ok(partly) => {
                        let rejected = partly.as_ref().map_or(0, |p| p.points.min(request.points));
                        self.stats.add_sent(request.points - rejected);
                        if let Some(partly) = partly.filter(|_| rejected > 0) {
                            let message = self.without_secret(&format!(
                                "partial success: {rejected} of {} points rejected: {}",
                                request.points, partly.message
                            ));
                            tracing::error!(sink = %self.name, points = rejected, backend_message = %message,
                                deadletter = %self.deadletter.display(),
                                "backend accepted the request but refused some of its points for good; the request is written to the dead-letter file");
                            self.stats.set_last_error(message.clone());
                            self.dead_letter_counted(request, rejected, 200, &message);
                        }
                        if failing.swap(false, Ordering::Relaxed) {
                            tracing::info!(sink = %self.name, "backend accepts points again");
                        }
                        break;
                    }
                    Err(Failure::Retry { message, after }) => {
                        self.stats.add_retry();
                        self.stats.set_last_error(message.clone());
                        if failing.swap(true, Ordering::Relaxed) {
                            tracing::debug!(sink = %self.name, error = %message, "still failing; retrying");
                        } else {
                            tracing::warn!(sink = %self.name, error = %message, queued = self.buffer.queued_points(),
                                "backend unavailable; retrying with backoff, points wait in the disk buffer");
                        }
                        if stop.is_cancelled() {
                            return false;
                        }
                        let jittered = retry_wait(delay, after);
                        tokio::select! {
                            _ = tokio::time::sleep(jittered) => {}
                            _ = stop.cancelled() => return false,
                        }
                        delay = (delay * 2).min(self.net.retry_max_interval);
                        // While we waited, a full buffer may have dropped (and counted)
                        // the oldest of these points: do not deliver them after all.
                        if self.buffer.prune_dropped(batch) > 0 {
                            requests = self.protocol.requests(&batch.records);
                            next = 0;
                            continue 'requests;
                        }
                    }
                    Err(Failure::Reject { status, message }) => {
                        tracing::error!(sink = %self.name, status, points = request.points, backend_message = %message,
                            deadletter = %self.deadletter.display(),
                            "backend refused the points for good; written to the dead-letter file");
                        self.stats
                            .set_last_error(format!("HTTP {status}: {message}"));
                        self.dead_letter(request, status, &message);
                        break;
                    }
                }
            }
        }
        true
    }

    async fn post(
        &self,
        client: &reqwest::Client,
        request: &Request,
        wire: bytes::Bytes,
    ) -> Result<Option<super::protocol::PartlyRejected>, Failure> {
        let response = client
            .post(&request.url)
            .headers(self.protocol.headers().clone())
            .body(wire)
            .send()
            .await
            .map_err(|e| {
                // reqwest's message repeats the whole URL, query (a Dataway token) included.
                Failure::Retry {
                    message: format!(
                        "POST {}: {}",
                        redact_query(&request.url),
                        error_chain(&e.without_url())
                    ),
                    after: None,
                }
            })?;
        let status = response.status();
        if status.is_success() {
            if !self.protocol.reads_success_body() {
                return Ok(None);
            }
            let body = response.bytes().await.unwrap_or_default();
            return Ok(self.protocol.rejected_in_success(request, &body));
        }
        let after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(parse_retry_after);
        let mut message = response.text().await.unwrap_or_default();
        if message.len() > MAX_MESSAGE {
            let mut end = MAX_MESSAGE;
            while !message.is_char_boundary(end) {
                end -= 1;
            }
            message.truncate(end);
        }
        let message = self.without_secret(message.trim());
        let code = status.as_u16();
        if code == 408 || code == 429 || status.is_server_error() {
            Err(Failure::Retry {
                message: format!(
                    "POST {}: HTTP {code}: {message}",
                    redact_query(&request.url)
                ),
                after,
            })
        } else {
            Err(Failure::Reject {
                status: code,
                message,
            })
        }
    }

    /// `message` (a backend's answer) without the sink's credentials, which some
    /// backends repeat when they refuse them.
    fn without_secret(&self, message: &str) -> String {
        let secret = self
            .protocol
            .headers()
            .get(reqwest::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split_once(' '))
            .map(|(_, secret)| secret.trim())
            .filter(|secret| !secret.is_empty());
        match secret {
            Some(secret) => message.replace(secret, "<redacted>"),
            None => message.to_string(),
        }
    }

    /// Appends a refused request to the dead-letter file (one JSON object per line).
    fn dead_letter(&self, request: &Request, status: u16, message: &str) {
        self.dead_letter_counted(request, request.points, status, message);
    }

    /// [`Delivery::dead_letter`], counting `points` of the request as refused (a
    /// partial success refuses only some).
    fn dead_letter_counted(&self, request: &Request, points: u64, status: u16, message: &str) {
        self.stats.add_dead_lettered(points);
        let line = serde_json::json!({
            "unix_ms": now_ms(),
            "sink": self.name,
            "url": redact_query(&request.url),
            "category": request.category.map(Category::name),
            "status": status,
            "message": message,
            "points": request.points,
        });
        let mut line = line;
        let text = matches!(self.protocol.dead_letter_body(), DeadLetterBody::Text);
        // A body stored compressed is kept as the plain request, as for foreign records.
        match BodyFormat::plain_body(self.protocol.body_format().code(), &request.body) {
            Ok(body) => body_field(&mut line, &body, text),
            Err(error) => {
                // Only a body this sink did not make could fail; keep it as sent.
                tracing::error!(sink = %self.name, %error, "cannot decompress a refused request; its body is kept as sent (body_snappy_base64)");
                use base64::Engine;
                line["body_snappy_base64"] = base64::engine::general_purpose::STANDARD
                    .encode(&request.body)
                    .into();
            }
        }
        let mut text = line.to_string();
        text.push('\n');
        if let Err(error) = append_synced(&self.deadletter, text.as_bytes()) {
            tracing::error!(sink = %self.name, points = request.points, deadletter = %self.deadletter.display(), %error,
                "cannot write the dead-letter file; these refused points are lost");
        }
    }
}

/// Puts a body into a dead-letter or foreign line: `lines` for text (line
/// protocol), `body_base64` for binary (protobuf).
fn body_field(line: &mut serde_json::Value, body: &[u8], text: bool) {
    if text {
        line["lines"] = String::from_utf8_lossy(body).into();
    } else {
        use base64::Engine;
        line["body_base64"] = base64::engine::general_purpose::STANDARD
            .encode(body)
            .into();
    }
}

/// Appends `text` to the file at `path` (created with its directory) and syncs it.
fn append_synced(path: &std::path::Path, text: &[u8]) -> std::io::Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    file.write_all(text)?;
    file.sync_data()
}

/// How long to wait before the next attempt: the backoff `delay` with jitter (half
/// to all of it), or longer if the backend asked for it with `Retry-After`.
fn retry_wait(delay: Duration, after: Option<Duration>) -> Duration {
    let jittered = delay.mul_f64(0.5 + fastrand::f64() * 0.5);
    match after {
        Some(after) => jittered.max(after.min(MAX_RETRY_AFTER)),
        None => jittered,
    }
}

/// `Retry-After`: seconds, or an HTTP date (RFC 9110 section 10.2.3).
fn parse_retry_after(text: &str) -> Option<Duration> {
    let text = text.trim();
    if let Ok(seconds) = text.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let when = httpdate_to_system_time(text)?;
    Some(
        when.duration_since(SystemTime::now())
            .unwrap_or(Duration::ZERO),
    )
}

/// Parses the IMF-fixdate form, `Sun, 06 Nov 1994 08:49:37 GMT` (the only form
/// servers may send).
fn httpdate_to_system_time(text: &str) -> Option<SystemTime> {
    let parts: Vec<&str> = text.split_ascii_whitespace().collect();
    let [_, day, month, year, time, "GMT"] = parts.as_slice() else {
        return None;
    };
    let day: u64 = day.parse().ok()?;
    let month = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ]
    .iter()
    .position(|m| m == month)? as u64
        + 1;
    let year: u64 = year.parse().ok()?;
    let mut hms = time.split(':').map(|p| p.parse::<u64>().ok());
    let (h, m, s) = (hms.next()??, hms.next()??, hms.next()??);
    if !(1..=31).contains(&day) || year < 1970 || h > 23 || m > 59 || s > 60 {
        return None;
    }
    // Days from the civil date (Howard Hinnant's algorithm).
    let (y, mo) = if month <= 2 {
        (year - 1, month + 9)
    } else {
        (year, month - 3)
    };
    let era = y / 400;
    let yoe = y - era * 400;
    let doy = (153 * mo + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(SystemTime::UNIX_EPOCH + Duration::from_secs(days * 86_400 + h * 3600 + m * 60 + s))
}

/// The sink's HTTP client: its request timeout, and the extra certificate authorities
/// of `ca_file` trusted beside the system's (TLS is the platform's, OpenSSL on Linux).
fn http_client(net: &NetworkSinkConfig) -> Result<reqwest::Client, String> {
    let mut builder = reqwest::Client::builder().timeout(net.timeout);
    if let Some(path) = &net.ca_file {
        let pem = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let authorities = reqwest::Certificate::from_pem_bundle(&pem)
            .map_err(|e| format!("{}: not a PEM certificate bundle: {e}", path.display()))?;
        for authority in authorities {
            builder = builder.add_root_certificate(authority);
        }
    }
    builder.build().map_err(|e| e.to_string())
}

/// An error and its sources, joined (reqwest's top-level message is terse).
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_takes_seconds_or_an_http_date() {
        assert_eq!(parse_retry_after("120"), Some(Duration::from_secs(120)));
        assert_eq!(parse_retry_after(" 0 "), Some(Duration::ZERO));
        // A date in the past means "now".
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT"),
            Some(Duration::ZERO)
        );
        assert_eq!(
            httpdate_to_system_time("Sun, 06 Nov 1994 08:49:37 GMT"),
            Some(SystemTime::UNIX_EPOCH + Duration::from_secs(784_111_777))
        );
        assert_eq!(
            httpdate_to_system_time("Thu, 01 Jan 1970 00:00:00 GMT"),
            Some(SystemTime::UNIX_EPOCH)
        );
        for bad in [
            "soon",
            "-5",
            "Sun, 06 Nov 1994 08:49:37 CET",
            "Sun, 32 Nov 1994 08:49:37 GMT",
            "",
        ] {
            assert_eq!(parse_retry_after(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn the_wait_is_the_jittered_backoff_or_longer_when_the_backend_asks() {
        let delay = Duration::from_secs(2);
        for _ in 0..100 {
            let plain = retry_wait(delay, None);
            assert!(
                plain >= Duration::from_secs(1) && plain <= delay,
                "{plain:?}"
            );
            assert!(retry_wait(delay, Some(Duration::from_secs(10))) >= Duration::from_secs(10));
            assert_eq!(
                retry_wait(delay, Some(Duration::from_secs(86_400))),
                MAX_RETRY_AFTER
            );
        }
    }
}
