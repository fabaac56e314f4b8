//! The network sinks, `datakit` and `influxdb`: from the disk buffer to the backend.
//!
//! One delivery task per sink reads batches from its [`DiskBuffer`] (by size: up to
//! `batch_points`; by age: a partial batch waits at most `flush_interval`), gzips them
//! and POSTs them. Refused connections, timeouts, 408, 429 and 5xx are retried with
//! capped exponential backoff and jitter, forever: the buffer (bounded by `max_bytes`)
//! holds the points meanwhile. Any other 4xx cannot be fixed by retrying: the backend's
//! message is logged and the request is written to the dead-letter file
//! `data_dir/deadletter/<sink>.ndjson`, so nothing disappears without a trace. Only
//! then is the batch acknowledged in the buffer.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use flate2::write::GzEncoder;
use tokio_util::sync::CancellationToken;

use super::buffer::{DiskBuffer, ReadBatch, Record};
use super::state::SinkStats;
use crate::config::{redact_query, InfluxApi, NetworkSinkConfig};
use crate::point::Category;

/// First retry delay; doubled per failure up to `retry_max_interval`.
const FIRST_RETRY: Duration = Duration::from_millis(500);
/// Largest uncompressed body per request, whatever `batch_points` says.
const MAX_REQUEST_BYTES: usize = 8 << 20;
/// How much of a backend's error answer is kept for logs and the dead-letter file.
const MAX_MESSAGE: usize = 2048;

/// Where and how a sink POSTs.
#[derive(Clone, Debug)]
pub enum Endpoint {
    /// `<base>/v1/write/<category>?<query>`; one request per category.
    Datakit { base: String, query: Option<String> },
    /// One URL for every category, with an optional `Authorization` header.
    Influx {
        url: String,
        authorization: Option<String>,
    },
}

impl Endpoint {
    pub fn datakit(url: &str) -> Self {
        let (base, query) = match url.split_once('?') {
            Some((base, query)) => (base, Some(query.to_string())),
            None => (url, None),
        };
        Endpoint::Datakit {
            base: base.trim_end_matches('/').to_string(),
            query: query.filter(|q| !q.is_empty()),
        }
    }

    pub fn influx(url: &str, api: &InfluxApi) -> Self {
        let base = url.trim_end_matches('/');
        match api {
            InfluxApi::V1 { db } => Endpoint::Influx {
                url: format!("{base}/write?db={}&precision=ns", encode_query(db)),
                authorization: None,
            },
            InfluxApi::V2 { org, bucket, token } => {
                let mut url = format!("{base}/api/v2/write?bucket={}", encode_query(bucket));
                if let Some(org) = org {
                    url.push_str(&format!("&org={}", encode_query(org)));
                }
                url.push_str("&precision=ns");
                Endpoint::Influx {
                    url,
                    authorization: token.as_ref().map(|t| format!("Token {t}")),
                }
            }
        }
    }

    /// The requests that deliver `records`, in order.
    fn requests(&self, records: &[Record]) -> Vec<Request> {
        match self {
            Endpoint::Influx { url, .. } => chunk(records, |_| url.clone(), None),
            Endpoint::Datakit { base, query } => {
                let mut order: Vec<Category> = Vec::new();
                for record in records {
                    if !order.contains(&record.category) {
                        order.push(record.category);
                    }
                }
                order
                    .into_iter()
                    .flat_map(|category| {
                        let mut url = format!("{base}/v1/write/{}", category.name());
                        match query {
                            Some(q) => url.push_str(&format!("?{q}&precision=n")),
                            None => url.push_str("?precision=n"),
                        }
                        let same: Vec<&Record> =
                            records.iter().filter(|r| r.category == category).collect();
                        chunk_refs(&same, &url, Some(category))
                    })
                    .collect()
            }
        }
    }

    fn authorization(&self) -> Option<&str> {
        match self {
            Endpoint::Influx { authorization, .. } => authorization.as_deref(),
            Endpoint::Datakit { .. } => None,
        }
    }
}

/// One POST: its URL, its line protocol and how many points that is.
struct Request {
    url: String,
    category: Option<Category>,
    body: Vec<u8>,
    points: u64,
}

fn chunk(
    records: &[Record],
    url: impl Fn(&Record) -> String,
    category: Option<Category>,
) -> Vec<Request> {
    let refs: Vec<&Record> = records.iter().collect();
    match records.first() {
        Some(first) => chunk_refs(&refs, &url(first), category),
        None => Vec::new(),
    }
}

/// Concatenates records into requests of at most [`MAX_REQUEST_BYTES`].
fn chunk_refs(records: &[&Record], url: &str, category: Option<Category>) -> Vec<Request> {
    let mut requests = Vec::new();
    let mut current = Request {
        url: url.to_string(),
        category,
        body: Vec::new(),
        points: 0,
    };
    for record in records {
        if !current.body.is_empty() && current.body.len() + record.body.len() > MAX_REQUEST_BYTES {
            let next = Request {
                url: url.to_string(),
                category,
                body: Vec::new(),
                points: 0,
            };
            requests.push(std::mem::replace(&mut current, next));
        }
        current.body.extend_from_slice(&record.body);
        current.points += u64::from(record.points);
    }
    if !current.body.is_empty() {
        requests.push(current);
    }
    requests
}

/// Percent-encodes a query value (database, bucket and org names are usually plain).
fn encode_query(value: &str) -> String {
    let mut out = String::new();
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// Why a request did not succeed.
enum Failure {
    /// Worth retrying: the backend may accept it later.
    Retry(String),
    /// The backend refused it for good.
    Reject { status: u16, message: String },
}

/// A network sink's delivery side.
pub struct Delivery {
    pub name: String,
    pub endpoint: Endpoint,
    pub net: NetworkSinkConfig,
    pub buffer: Arc<DiskBuffer>,
    pub stats: Arc<SinkStats>,
    pub deadletter: PathBuf,
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
        let mut committed = self.buffer.watch();
        let mut stopping = false;
        let mut failing = false;
        loop {
            let mut batch = ReadBatch::default();
            loop {
                batch = match self.read_more(batch).await {
                    Some(batch) => batch,
                    None => return,
                };
                let full =
                    batch.points() >= self.net.batch_points || batch.bytes() >= MAX_REQUEST_BYTES;
                let age = batch.oldest_ms().map(|ms| now_ms().saturating_sub(ms));
                let wait = match age {
                    _ if full => break,
                    Some(_) if stopping => break,
                    None if stopping => return,
                    Some(age) => {
                        let left = (self.net.flush_interval.as_millis() as u64).saturating_sub(age);
                        if left == 0 {
                            break;
                        }
                        Duration::from_millis(left)
                    }
                    None => Duration::from_secs(3600),
                };
                tokio::select! {
                    changed = committed.changed() => if changed.is_err() { stopping = true },
                    _ = tokio::time::sleep(wait) => {}
                    _ = stop.cancelled(), if !stopping => stopping = true,
                }
            }
            if !self.send(&client, &mut batch, &stop, &mut failing).await {
                return;
            }
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
        failing: &mut bool,
    ) -> bool {
        let mut requests = self.endpoint.requests(&batch.records);
        let mut next = 0;
        'requests: while next < requests.len() {
            let request = &requests[next];
            next += 1;
            let body = match gzip(&request.body) {
                Ok(body) => body,
                Err(error) => {
                    tracing::error!(sink = %self.name, %error, "gzip failed; sending uncompressed");
                    Vec::new()
                }
            };
            let mut delay = FIRST_RETRY;
            loop {
                match self.post(client, request, &body).await {
                    Ok(()) => {
                        self.stats.add_sent(request.points);
                        if *failing {
                            tracing::info!(sink = %self.name, "backend accepts points again");
                            *failing = false;
                        }
                        break;
                    }
                    Err(Failure::Retry(message)) => {
                        self.stats.add_retry();
                        self.stats.set_last_error(message.clone());
                        if *failing {
                            tracing::debug!(sink = %self.name, error = %message, "still failing; retrying");
                        } else {
                            tracing::warn!(sink = %self.name, error = %message, queued = self.buffer.queued_points(),
                                "backend unavailable; retrying with backoff, points wait in the disk buffer");
                            *failing = true;
                        }
                        if stop.is_cancelled() {
                            return false;
                        }
                        let jittered = delay.mul_f64(0.5 + fastrand::f64() * 0.5);
                        tokio::select! {
                            _ = tokio::time::sleep(jittered) => {}
                            _ = stop.cancelled() => return false,
                        }
                        delay = (delay * 2).min(self.net.retry_max_interval);
                        // While we waited, a full buffer may have dropped (and counted)
                        // the oldest of these points: do not deliver them after all.
                        if self.buffer.prune_dropped(batch) > 0 {
                            requests = self.endpoint.requests(&batch.records);
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
        gz: &[u8],
    ) -> Result<(), Failure> {
        let mut builder = client
            .post(&request.url)
            .header(reqwest::header::CONTENT_TYPE, "text/plain; charset=utf-8");
        builder = if gz.is_empty() {
            builder.body(request.body.clone())
        } else {
            builder
                .header(reqwest::header::CONTENT_ENCODING, "gzip")
                .body(gz.to_vec())
        };
        if let Some(auth) = self.endpoint.authorization() {
            builder = builder.header(reqwest::header::AUTHORIZATION, auth);
        }
        let response = builder.send().await.map_err(|e| {
            // reqwest's message repeats the whole URL, query (a Dataway token) included.
            Failure::Retry(format!(
                "POST {}: {}",
                redact_query(&request.url),
                error_chain(&e.without_url())
            ))
        })?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        let mut message = response.text().await.unwrap_or_default();
        if message.len() > MAX_MESSAGE {
            let mut end = MAX_MESSAGE;
            while !message.is_char_boundary(end) {
                end -= 1;
            }
            message.truncate(end);
        }
        let message = message.trim().to_string();
        let code = status.as_u16();
        if code == 408 || code == 429 || status.is_server_error() {
            Err(Failure::Retry(format!(
                "POST {}: HTTP {code}: {message}",
                redact_query(&request.url)
            )))
        } else {
            Err(Failure::Reject {
                status: code,
                message,
            })
        }
    }

    /// Appends a refused request to the dead-letter file (one JSON object per line).
    fn dead_letter(&self, request: &Request, status: u16, message: &str) {
        self.stats.add_dead_lettered(request.points);
        let line = serde_json::json!({
            "unix_ms": now_ms(),
            "sink": self.name,
            "url": redact_query(&request.url),
            "category": request.category.map(Category::name),
            "status": status,
            "message": message,
            "points": request.points,
            "lines": String::from_utf8_lossy(&request.body),
        });
        let result = (|| {
            if let Some(parent) = self.deadletter.parent() {
                std::fs::create_dir_all(parent)?;
            }
            let mut file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.deadletter)?;
            let mut text = line.to_string();
            text.push('\n');
            file.write_all(text.as_bytes())?;
            file.sync_data()
        })();
        if let Err(error) = result {
            tracing::error!(sink = %self.name, points = request.points, deadletter = %self.deadletter.display(), %error,
                "cannot write the dead-letter file; these refused points are lost");
        }
    }
}

fn gzip(body: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut encoder = GzEncoder::new(
        Vec::with_capacity(body.len() / 4),
        flate2::Compression::fast(),
    );
    encoder.write_all(body)?;
    encoder.finish()
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

    fn record(category: Category, line: &str) -> Record {
        Record {
            category,
            points: 1,
            enqueued_ms: 0,
            body: format!("{line}\n").into_bytes(),
        }
    }

    #[test]
    fn datakit_requests_go_per_category_and_keep_the_token() {
        let endpoint = Endpoint::datakit("http://127.0.0.1:9529/?token=tkn_x");
        let records = [
            record(Category::Metric, "cpu v=1i 1"),
            record(Category::Logging, "log message=\"a\" 2"),
            record(Category::Metric, "cpu v=2i 3"),
        ];
        let requests = endpoint.requests(&records);
        let urls: Vec<&str> = requests.iter().map(|r| r.url.as_str()).collect();
        assert_eq!(
            urls,
            [
                "http://127.0.0.1:9529/v1/write/metric?token=tkn_x&precision=n",
                "http://127.0.0.1:9529/v1/write/logging?token=tkn_x&precision=n"
            ]
        );
        assert_eq!(requests[0].body, b"cpu v=1i 1\ncpu v=2i 3\n");
        assert_eq!(requests[0].points, 2);
    }

    #[test]
    fn influx_urls_for_both_apis() {
        let v1 = Endpoint::influx("http://h:8086/", &InfluxApi::V1 { db: "my db".into() });
        let Endpoint::Influx { url, authorization } = v1 else {
            panic!("influx endpoint")
        };
        assert_eq!(url, "http://h:8086/write?db=my%20db&precision=ns");
        assert_eq!(authorization, None);
        let v2 = Endpoint::influx(
            "http://h:8086",
            &InfluxApi::V2 {
                org: Some("o".into()),
                bucket: "b".into(),
                token: Some("t".into()),
            },
        );
        let Endpoint::Influx { url, authorization } = v2 else {
            panic!("influx endpoint")
        };
        assert_eq!(
            url,
            "http://h:8086/api/v2/write?bucket=b&org=o&precision=ns"
        );
        assert_eq!(authorization.as_deref(), Some("Token t"));
    }
}
