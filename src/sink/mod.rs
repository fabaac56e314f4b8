//! Where accepted points go: one task per configured sink, fed by a bounded queue
//! (stdout, file) or by a disk buffer (the network sinks: datakit, influxdb,
//! prometheus_remote_write, otlp). The sink types are listed in [`registry`]; what
//! differs between network types is their [`protocol::Protocol`].
//!
//! The ingest path hands every accepted batch to [`Sinks::send`], which waits for room
//! in each local sink's queue and until every network sink's disk buffer has durably
//! appended the batch. Those waits are the backpressure: a slow sink or disk slows the
//! workers' readers (and so the workers) instead of growing memory or dropping points;
//! and when `send` returns, the points are on disk (this is what "acknowledged" means
//! for the HTTP write API). A network sink's delivery task then drains its buffer to
//! the backend ([`network`]).

pub mod body_format;
pub mod buffer;
mod file;
mod line_protocol;
mod local_queue;
pub mod network;
pub mod otlp;
pub mod prometheus_remote_write;
pub mod protocol;
pub mod read_context;
pub mod registry;
pub mod snappy_block;
mod stdout;
mod text;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::config::SinkConfig;
use crate::point::{Category, Point, PointBatch, PointRef};
use crate::stats::Stats;

pub use crate::stats::{SinkSnapshot, SinkStats};
use buffer::{BufferLimits, DiskBuffer, Record};
use network::Delivery;
use protocol::{Protocol, Skipped};
use registry::Built;

/// Points accepted together, shared by every sink.
pub type Batch = Arc<Vec<Point>>;

/// A sink could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error("file sink {path}: {source}")]
    File {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("sink {name}: {source}")]
    Buffer {
        name: String,
        source: buffer::BufferError,
    },
    #[error("sink {0} needs a data directory for its disk buffer")]
    NoDataDir(String),
    #[error("sink {name}: {message}")]
    Setup { name: String, message: String },
}

/// How long shutdown lets network sinks deliver what is queued before leaving the rest
/// in their buffers for the next start.
const DRAIN_GRACE: Duration = Duration::from_secs(5);

/// A network sink as the send path sees it.
struct Buffered {
    name: String,
    categories: Option<Vec<Category>>,
    protocol: Arc<dyn Protocol>,
    buffer: Arc<DiskBuffer>,
    stats: Arc<SinkStats>,
    /// Categories whose skipped points were logged already.
    skip_logged: Mutex<Vec<Category>>,
}

/// The running sinks.
pub struct Sinks {
    // Behind locks so that shutdown can close the queues while senders still hold a
    // shared reference (a worker's channel reader may outlive its session briefly).
    outlets: RwLock<Vec<local_queue::Sender>>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
    buffered: Vec<Buffered>,
    deliveries: Mutex<Vec<JoinHandle<()>>>,
    stop: CancellationToken,
}

impl Sinks {
    /// Opens every configured sink and starts its task. Network sinks are refused:
    /// they need [`Sinks::open`] with a data directory.
    pub fn start(configs: &[SinkConfig]) -> Result<Self, SinkError> {
        Self::start_in(configs, None, None)
    }

    /// Opens every configured sink, network sinks with their disk buffer under
    /// `data_dir/buffers/<name>/` and their state registered in `stats`.
    pub fn open(configs: &[SinkConfig], data_dir: &Path, stats: &Stats) -> Result<Self, SinkError> {
        Self::start_in(configs, Some(data_dir), Some(stats))
    }

    fn start_in(
        configs: &[SinkConfig],
        data_dir: Option<&Path>,
        stats: Option<&Stats>,
    ) -> Result<Self, SinkError> {
        let mut outlets = Vec::new();
        let mut tasks = Vec::new();
        let mut buffered = Vec::new();
        let mut deliveries = Vec::new();
        let stop = CancellationToken::new();
        for config in configs {
            let built = registry::build(&config.kind)?;
            let writer = match (built, config.kind.network()) {
                (Built::Local(writer), _) => writer,
                (Built::Network(protocol), Some(net)) => {
                    let data_dir =
                        data_dir.ok_or_else(|| SinkError::NoDataDir(net.name.clone()))?;
                    let sink_stats = match stats {
                        Some(stats) => stats.sink(&net.name, config.kind.type_name()),
                        None => Arc::new(SinkStats::new(&net.name, config.kind.type_name())),
                    };
                    let buffer = DiskBuffer::open(
                        &data_dir.join("buffers").join(&net.name),
                        &net.name,
                        protocol.body_format(),
                        BufferLimits {
                            max_bytes: net.max_bytes,
                            sync_every: net.fsync_every,
                        },
                        sink_stats.clone(),
                    )
                    .map_err(|source| SinkError::Buffer {
                        name: net.name.clone(),
                        source,
                    })?;
                    let buffer = Arc::new(buffer);
                    let delivery = Arc::new(Delivery {
                        name: net.name.clone(),
                        protocol: protocol.clone(),
                        net: net.clone(),
                        buffer: buffer.clone(),
                        stats: sink_stats.clone(),
                        deadletter: deadletter_path(data_dir, &net.name),
                        foreign: foreign_path(data_dir, &net.name),
                    });
                    tracing::info!(sink = %net.name, r#type = config.kind.type_name(), url = %crate::config::redact_query(&net.url), "network sink started");
                    deliveries.push(tokio::spawn(delivery.run(stop.clone())));
                    buffered.push(Buffered {
                        name: net.name.clone(),
                        categories: config.categories.clone(),
                        protocol,
                        buffer,
                        stats: sink_stats,
                        skip_logged: Mutex::new(Vec::new()),
                    });
                    continue;
                }
                (Built::Network(_), None) => {
                    return Err(SinkError::Setup {
                        name: config.kind.type_name().to_string(),
                        message: "a network sink without network settings".to_string(),
                    })
                }
            };
            let (tx, rx) =
                local_queue::channel(local_queue::QUEUE_BATCHES, local_queue::QUEUE_BYTES);
            tasks.push(tokio::spawn(drive(writer, config.categories.clone(), rx)));
            outlets.push(tx);
        }
        Ok(Self {
            outlets: RwLock::new(outlets),
            tasks: Mutex::new(tasks),
            buffered,
            deliveries: Mutex::new(deliveries),
            stop,
        })
    }

    /// Hands a batch to every sink, waiting while a sink's queue is full; returns once
    /// every network sink's disk buffer has durably appended its share.
    pub async fn send(&self, batch: Batch) {
        self.send_points(&PointBatch::borrowing(&batch), Some(&batch))
            .await;
    }

    /// Whether a sink keeps points in memory (a queue of owned [`Point`]s): then
    /// [`Sinks::send_points`] needs them as a [`Batch`] too.
    pub fn keeps_points(&self) -> bool {
        !self
            .outlets
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .is_empty()
    }

    /// Like [`Sinks::send`] for points still borrowed from where they were decoded:
    /// the network sinks encode them as they are; `owned`, the same points as a
    /// [`Batch`], goes to the sinks that keep points (required if
    /// [`Sinks::keeps_points`]).
    pub async fn send_points(&self, points: &PointBatch<'_>, owned: Option<&Batch>) {
        let mut pending = Vec::new();
        for sink in &self.buffered {
            let records = sink.records_for(points);
            if records.is_empty() {
                continue;
            }
            let points: u64 = records.iter().map(|r| u64::from(r.points)).sum();
            match sink.buffer.start_append(records).await {
                Ok(done) => pending.push((sink, done, points)),
                Err(error) => sink.lost(points, &error),
            }
        }
        for (sink, done, points) in pending {
            if let Err(error) = sink.buffer.finish_append(done).await {
                sink.lost(points, &error);
            }
        }
        let outlets = self
            .outlets
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let Some(batch) = owned else {
            debug_assert!(outlets.is_empty(), "points for in-memory sinks missing");
            return;
        };
        for outlet in &outlets {
            // A closed queue means that sink's task ended; it logged why.
            let _ = outlet.send(batch.clone()).await;
        }
    }

    /// Closes the queues and waits until every sink has written and flushed what it had.
    /// Points sent after this are dropped (and logged by the caller's shutdown path).
    pub async fn shutdown(&self) {
        self.outlets
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
        let tasks = std::mem::take(&mut *self.tasks.lock().unwrap_or_else(|p| p.into_inner()));
        for task in tasks {
            let _ = task.await;
        }
        // Everything accepted is on disk once the writers have stopped; then the
        // deliveries get a short grace to send what is queued.
        for sink in &self.buffered {
            let buffer = sink.buffer.clone();
            let _ = tokio::task::spawn_blocking(move || buffer.close()).await;
        }
        self.stop.cancel();
        let deliveries =
            std::mem::take(&mut *self.deliveries.lock().unwrap_or_else(|p| p.into_inner()));
        for mut delivery in deliveries {
            if tokio::time::timeout(DRAIN_GRACE, &mut delivery)
                .await
                .is_err()
            {
                delivery.abort();
                // Once aborted it has let go of its buffer (and so have its sends).
                let _ = delivery.await;
            }
        }
        for sink in &self.buffered {
            let queued = sink.buffer.queued_points();
            if queued > 0 {
                tracing::info!(sink = %sink.name, points = queued, "points stay in the disk buffer until the next start");
            }
        }
    }
}

impl Buffered {
    /// Logs and counts points this sink could not buffer.
    fn lost(&self, points: u64, error: &buffer::BufferError) {
        self.stats.add_dropped(points);
        self.stats.set_last_error(error.to_string());
        tracing::error!(sink = %self.name, points, %error, "cannot buffer points for this sink; they are dropped");
    }
}

impl Buffered {
    /// The records this sink stores for `batch`: its categories only, one record per
    /// category in the sink type's encoding, stamped now. What the type cannot carry
    /// is counted (and logged the first time per category).
    fn records_for(&self, batch: &PointBatch<'_>) -> Vec<Record> {
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        // The points this sink takes, grouped by category (categories in order of
        // first appearance, points in order within each): one allocation for the
        // whole batch, and no sorting in the common case of a single category.
        let mut selected: Vec<PointRef<'_>> = Vec::with_capacity(batch.len());
        let mut order: Vec<Category> = Vec::new();
        for point in batch.iter() {
            if self
                .categories
                .as_ref()
                .is_some_and(|c| !c.contains(&point.category))
            {
                continue;
            }
            if !order.contains(&point.category) {
                order.push(point.category);
            }
            selected.push(point);
        }
        if order.len() > 1 {
            selected.sort_by_key(|p| order.iter().position(|c| *c == p.category));
        }
        let groups = selected.chunk_by(|a, b| a.category == b.category);
        let mut records = Vec::with_capacity(order.len());
        for points in groups {
            let category = points[0].category;
            let mut skipped = Skipped::default();
            let mut body = Vec::new();
            let encoded = self
                .protocol
                .encode(category, points, &mut body, &mut skipped);
            if skipped != Skipped::default() {
                self.skipped(category, skipped);
            }
            if encoded > 0 {
                records.push(Record {
                    category,
                    points: encoded,
                    enqueued_ms: now_ms,
                    body,
                });
            }
        }
        records
    }

    /// Counts what the sink's type left out; logs it once per category.
    fn skipped(&self, category: Category, skipped: Skipped) {
        self.stats.add_skipped(skipped.points, skipped.fields);
        let mut logged = self.skip_logged.lock().unwrap_or_else(|p| p.into_inner());
        if !logged.contains(&category) {
            logged.push(category);
            tracing::warn!(sink = %self.name, category = category.name(), points = skipped.points, string_fields = skipped.fields,
                "this sink's backend cannot hold these points or fields; they are left out and counted (skipped_points, skipped_fields; logged once per category)");
        }
    }
}

/// `data_dir/deadletter/<sink>.ndjson`: requests a backend refused for good.
pub fn deadletter_path(data_dir: &Path, sink: &str) -> PathBuf {
    data_dir.join("deadletter").join(format!("{sink}.ndjson"))
}

/// `data_dir/foreign/<sink>.ndjson`: buffered records in another body format than
/// the sink's, set aside unsent (docs/BUFFER.md).
pub fn foreign_path(data_dir: &Path, sink: &str) -> PathBuf {
    data_dir.join("foreign").join(format!("{sink}.ndjson"))
}

/// One local sink's way of writing points.
pub(crate) enum Writer {
    Stdout(stdout::StdoutSink),
    File(file::FileSink),
}

impl Writer {
    fn name(&self) -> String {
        match self {
            Writer::Stdout(_) => "stdout".to_string(),
            Writer::File(f) => format!("file {}", f.path().display()),
        }
    }

    async fn write(&mut self, points: &[&Point]) -> std::io::Result<()> {
        match self {
            Writer::Stdout(s) => s.write(points).await,
            Writer::File(f) => f.write(points).await,
        }
    }

    async fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Writer::Stdout(s) => s.flush().await,
            Writer::File(f) => f.flush().await,
        }
    }
}

/// A sink's task: write batches as they come, flush whenever the queue runs dry.
async fn drive(
    mut writer: Writer,
    categories: Option<Vec<Category>>,
    mut rx: local_queue::Receiver,
) {
    let name = writer.name();
    let mut failing = false;
    while let Some(queued) = rx.recv().await {
        // Each batch keeps its share of the queue's byte budget until written.
        let mut pending = vec![queued];
        while let Some(more) = rx.try_recv() {
            pending.push(more);
        }
        let points: Vec<&Point> = pending
            .iter()
            .flat_map(|q| q.batch.iter())
            .filter(|p| {
                categories
                    .as_ref()
                    .map_or(true, |c| c.contains(&p.category))
            })
            .collect();
        let result = match writer.write(&points).await {
            Ok(()) => writer.flush().await,
            Err(e) => Err(e),
        };
        match result {
            Ok(()) if failing => {
                tracing::info!(sink = %name, "sink writes again");
                failing = false;
            }
            Ok(()) => {}
            Err(error) => {
                tracing::error!(sink = %name, points = points.len(), %error, "sink write failed; these points are lost");
                failing = true;
            }
        }
    }
}

/// Settings for the unit tests of sink types.
#[cfg(test)]
pub(crate) mod tests_support {
    use crate::config::NetworkSinkConfig;
    use std::time::Duration;

    /// A network sink's settings with short intervals.
    pub fn net(name: &str, url: &str) -> NetworkSinkConfig {
        NetworkSinkConfig {
            name: name.into(),
            url: url.into(),
            max_bytes: 1 << 20,
            batch_points: 100,
            flush_interval: Duration::from_millis(20),
            timeout: Duration::from_secs(5),
            retry_max_interval: Duration::from_millis(200),
            concurrency: crate::config::network_sink::DEFAULT_SINK_CONCURRENCY,
            fsync_every: None,
            ca_file: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{InfluxApi, NetworkSinkConfig, SinkKind};
    use std::collections::BTreeMap;
    use std::time::Duration;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A loopback HTTP backend: answers each request with the status `status` picks
    /// for its body, records the bodies it accepted (2xx) and the most requests it
    /// saw open at once.
    struct Backend {
        url: String,
        accepted: Arc<Mutex<Vec<String>>>,
        /// (open now, most open at once).
        open: tokio::sync::watch::Receiver<(usize, usize)>,
    }

    /// A line protocol request body as text (these sinks send it gzipped).
    fn gunzipped(body: &[u8]) -> String {
        use std::io::Read;
        let mut text = String::new();
        flate2::read::GzDecoder::new(body)
            .read_to_string(&mut text)
            .expect("a gzipped text body");
        text
    }

    impl Backend {
        async fn answering(status: u16) -> Self {
            Self::start(None, move |_| status).await
        }

        /// With `hold`, a request is answered only once two were open at once (or
        /// after `hold`, if that never happens).
        async fn start(
            hold: Option<Duration>,
            status: impl Fn(&str) -> u16 + Send + Sync + 'static,
        ) -> Self {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind");
            let addr = listener.local_addr().expect("addr");
            let accepted = Arc::new(Mutex::new(Vec::new()));
            let (open_tx, open) = tokio::sync::watch::channel((0, 0));
            let open_tx = Arc::new(open_tx);
            let status = Arc::new(status);
            let (kept, opened) = (accepted.clone(), open.clone());
            tokio::spawn(async move {
                // Holding a receiver keeps the watch open while the server runs.
                let _opened = opened;
                while let Ok((mut conn, _)) = listener.accept().await {
                    let (accepted, open_tx, status) =
                        (kept.clone(), open_tx.clone(), status.clone());
                    tokio::spawn(async move {
                        let mut buf = Vec::new();
                        let mut chunk = [0u8; 8192];
                        loop {
                            let Ok(n) = conn.read(&mut chunk).await else {
                                return;
                            };
                            if n == 0 {
                                return;
                            }
                            buf.extend_from_slice(&chunk[..n]);
                            let text = String::from_utf8_lossy(&buf).to_ascii_lowercase();
                            let Some(end) = text.find("\r\n\r\n") else {
                                continue;
                            };
                            let length = text[..end]
                                .lines()
                                .find_map(|l| l.strip_prefix("content-length:"))
                                .and_then(|v| v.trim().parse::<usize>().ok())
                                .unwrap_or(0);
                            if buf.len() < end + 4 + length {
                                continue;
                            }
                            let body = gunzipped(&buf[end + 4..end + 4 + length]);
                            open_tx.send_modify(|(now, most)| {
                                *now += 1;
                                *most = (*most).max(*now);
                            });
                            if let Some(hold) = hold {
                                let mut seen = open_tx.subscribe();
                                let _ = tokio::time::timeout(
                                    hold,
                                    seen.wait_for(|(_, most)| *most >= 2),
                                )
                                .await;
                            }
                            let code = status(&body);
                            if (200..300).contains(&code) {
                                accepted.lock().expect("accepted").push(body);
                            }
                            let answer = "{\"error\":\"nope\"}";
                            let answer = format!(
                                "HTTP/1.1 {code} X\r\ncontent-length: {}\r\n\r\n{answer}",
                                answer.len()
                            );
                            let _ = conn.write_all(answer.as_bytes()).await;
                            open_tx.send_modify(|(now, _)| *now -= 1);
                            buf.drain(..end + 4 + length);
                        }
                    });
                }
            });
            Self {
                url: format!("http://{addr}"),
                accepted,
                open,
            }
        }

        fn most_open(&self) -> usize {
            self.open.borrow().1
        }

        /// How many times the backend accepted each point (by its field `v`).
        fn accepted_values(&self) -> BTreeMap<i64, usize> {
            let mut counts = BTreeMap::new();
            for body in self.accepted.lock().expect("accepted").iter() {
                for line in body.lines() {
                    let v = line
                        .split_once(" v=")
                        .and_then(|(_, rest)| rest.split_once('i'))
                        .and_then(|(v, _)| v.parse::<i64>().ok());
                    *counts.entry(v.expect("a point with v")).or_default() += 1;
                }
            }
            counts
        }
    }

    fn influx(url: String) -> SinkConfig {
        influx_with(url, 100, 1)
    }

    fn influx_with(url: String, batch_points: u64, concurrency: usize) -> SinkConfig {
        SinkConfig {
            kind: SinkKind::Influxdb {
                net: NetworkSinkConfig {
                    name: "t".into(),
                    url,
                    max_bytes: 1 << 20,
                    batch_points,
                    flush_interval: Duration::from_millis(20),
                    timeout: Duration::from_secs(5),
                    retry_max_interval: Duration::from_millis(200),
                    concurrency,
                    fsync_every: None,
                    ca_file: None,
                },
                api: InfluxApi::V1 { db: "d".into() },
            },
            categories: None,
        }
    }

    fn points(n: i64) -> Batch {
        numbered(0..n)
    }

    /// Points whose field `v` runs over `values`.
    fn numbered(values: std::ops::Range<i64>) -> Batch {
        Arc::new(
            values
                .map(|i| Point {
                    category: Category::Metric,
                    measurement: "m".into(),
                    tags: BTreeMap::new(),
                    fields: [("v".to_string(), crate::point::FieldValue::Int(i))]
                        .into_iter()
                        .collect(),
                    time_ns: 1_700_000_000_000_000_000 + i,
                })
                .collect(),
        )
    }

    async fn until(mut f: impl FnMut() -> bool) -> bool {
        for _ in 0..600 {
            if f() {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        false
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_snapshot_shows_what_a_sink_sent_and_what_it_dead_lettered() {
        let dir = tempfile::tempdir().expect("tempdir");
        let stats = Stats::new();
        let ok = Sinks::open(
            &[influx(Backend::answering(204).await.url)],
            dir.path(),
            &stats,
        )
        .expect("open");
        ok.send(points(250)).await;
        let sent = until(|| {
            let s = &stats.snapshot().sinks[0];
            s.sent_points == 250 && s.queued_points == 0
        })
        .await;
        assert!(sent, "{:?}", stats.snapshot().sinks);
        let snap = &stats.snapshot().sinks[0];
        assert_eq!((snap.buffered_points, snap.dropped_points), (250, 0));
        assert_eq!(snap.oldest_queued_age_ms, None);
        ok.shutdown().await;

        let dir = tempfile::tempdir().expect("tempdir");
        let stats = Stats::new();
        let refusing = Sinks::open(
            &[influx(Backend::answering(400).await.url)],
            dir.path(),
            &stats,
        )
        .expect("open");
        refusing.send(points(10)).await;
        let dead = until(|| stats.snapshot().sinks[0].dead_lettered_points == 10).await;
        assert!(dead, "{:?}", stats.snapshot().sinks);
        let snap = &stats.snapshot().sinks[0];
        assert_eq!(snap.sent_points, 0);
        assert_eq!(
            snap.last_error.as_deref(),
            Some("HTTP 400: {\"error\":\"nope\"}")
        );
        assert!(deadletter_path(dir.path(), "t").exists());
        refusing.shutdown().await;

        let dir = tempfile::tempdir().expect("tempdir");
        let stats = Stats::new();
        let failing = Sinks::open(
            &[influx(Backend::answering(503).await.url)],
            dir.path(),
            &stats,
        )
        .expect("open");
        failing.send(points(5)).await;
        let retried = until(|| stats.snapshot().sinks[0].retries >= 2).await;
        assert!(retried, "{:?}", stats.snapshot().sinks);
        let snap = &stats.snapshot().sinks[0];
        assert_eq!(snap.queued_points, 5);
        assert!(snap.oldest_queued_age_ms.is_some());
        assert!(snap
            .last_error
            .as_deref()
            .unwrap_or_default()
            .contains("HTTP 503"));
        failing.shutdown().await;
    }

    /// `concurrency` batches are in flight at once: a backend that answers only
    /// once two requests are open sees two with `concurrency = 2`, one with 1, and
    /// every point is delivered either way (docs/BUFFER.md, "Delivery").
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn up_to_concurrency_batches_are_in_flight_at_once() {
        for concurrency in [2, 1] {
            let dir = tempfile::tempdir().expect("tempdir");
            let stats = Stats::new();
            let backend = Backend::start(Some(Duration::from_secs(1)), |_| 204).await;
            let sink = influx_with(backend.url.clone(), 20, concurrency);
            let sinks = Sinks::open(&[sink], dir.path(), &stats).expect("open");
            sinks.send(numbered(0..20)).await;
            sinks.send(numbered(20..40)).await;
            let sent = until(|| {
                let s = &stats.snapshot().sinks[0];
                s.sent_points == 40 && s.queued_points == 0
            })
            .await;
            assert!(
                sent,
                "concurrency {concurrency}: {:?}",
                stats.snapshot().sinks
            );
            assert_eq!(stats.snapshot().sinks[0].sent_batches, 2);
            assert_eq!(
                backend.most_open(),
                concurrency,
                "most requests open at once"
            );
            let values = backend.accepted_values();
            assert_eq!(values.len(), 40);
            assert!(values.values().all(|n| *n == 1), "{values:?}");
            sinks.shutdown().await;
        }
    }

    /// With a request out, a batch filling up one small append at a time is not read
    /// again at every commit: delivery reads once a full batch is committed
    /// (docs/BUFFER.md, "Delivery").
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_batch_filling_behind_a_request_is_read_once_it_is_full() {
        let dir = tempfile::tempdir().expect("tempdir");
        let stats = Stats::new();
        // The first request is answered once the second one is out.
        let backend = Backend::start(Some(Duration::from_secs(120)), |_| 204).await;
        let mut sink = influx_with(backend.url.clone(), 20, 2);
        if let SinkKind::Influxdb { net, .. } = &mut sink.kind {
            // Only full batches go: no partial one on a timer.
            net.flush_interval = Duration::from_secs(3600);
        }
        let sinks = Sinks::open(&[sink], dir.path(), &stats).expect("open");
        let buffer = sinks.buffered[0].buffer.clone();
        // Forty appends of one point, each its own commit, each made once delivery
        // has taken in the one before: it read again, or it waits for more.
        for v in 0..40 {
            let before = buffer.reads();
            sinks.send(numbered(v..v + 1)).await;
            let taken_in = until(|| {
                let (target, committed) = buffer.wake_target();
                buffer.reads() > before || !committed.reached(&target)
            })
            .await;
            assert!(taken_in, "append {v}");
        }
        let sent = until(|| stats.snapshot().sinks[0].sent_points == 40).await;
        assert!(sent, "{:?}", stats.snapshot().sinks);
        let snap = &stats.snapshot().sinks[0];
        assert_eq!(snap.sent_batches, 2, "{snap:?}");
        let reads = buffer.reads();
        // Per batch: the read that finds it empty, the one after its first commit,
        // the one once it is full; and the one that starts the next batch.
        assert!(reads <= 2 * 3 + 1, "{reads} reads for two batches");
        sinks.shutdown().await;
    }

    /// While an earlier batch is retried, a later one is delivered but not
    /// acknowledged before it: after a restart the earlier one is sent (once), the
    /// later one at most again, and nothing is lost (docs/BUFFER.md, "Delivery").
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn batches_are_acknowledged_in_order_while_an_earlier_one_is_retried() {
        let dir = tempfile::tempdir().expect("tempdir");
        let stats = Stats::new();
        // The batch holding point 0 is refused for now; the others are accepted.
        let first =
            Backend::start(None, |body| if body.contains(" v=0i ") { 503 } else { 204 }).await;
        let sinks = Sinks::open(&[influx_with(first.url.clone(), 20, 2)], dir.path(), &stats)
            .expect("open");
        for start in [0, 20, 40] {
            sinks.send(numbered(start..start + 20)).await;
        }
        let later_sent = until(|| {
            let s = &stats.snapshot().sinks[0];
            s.sent_points == 20 && s.retries >= 2
        })
        .await;
        assert!(later_sent, "{:?}", stats.snapshot().sinks);
        let snap = &stats.snapshot().sinks[0];
        // Nothing is acknowledged past the batch being retried, and the window of
        // two is full: the third batch waits.
        assert_eq!((snap.queued_points, snap.sent_points), (60, 20));
        assert_eq!(
            first.accepted_values().keys().copied().collect::<Vec<_>>(),
            (20..40).collect::<Vec<_>>()
        );
        sinks.shutdown().await;
        drop(sinks);

        let stats = Stats::new();
        let second = Backend::answering(204).await;
        let sinks = Sinks::open(
            &[influx_with(second.url.clone(), 20, 2)],
            dir.path(),
            &stats,
        )
        .expect("reopen");
        let delivered = until(|| {
            let s = &stats.snapshot().sinks[0];
            s.queued_points == 0 && s.sent_points == 60
        })
        .await;
        assert!(delivered, "{:?}", stats.snapshot().sinks);
        sinks.shutdown().await;
        drop(sinks);
        let mut total = first.accepted_values();
        for (v, n) in second.accepted_values() {
            *total.entry(v).or_default() += n;
        }
        assert_eq!(
            total.keys().copied().collect::<Vec<_>>(),
            (0..60).collect::<Vec<_>>()
        );
        for (v, n) in &total {
            // Only the batch in flight beside the refused one is sent twice.
            let most = if (20..40).contains(v) { 2 } else { 1 };
            assert!(*n <= most, "point {v} delivered {n} times");
        }

        let stats = Stats::new();
        let third = Backend::answering(204).await;
        let sinks = Sinks::open(&[influx_with(third.url.clone(), 20, 2)], dir.path(), &stats)
            .expect("reopen");
        assert_eq!(
            stats.snapshot().sinks[0].queued_points,
            0,
            "everything was acknowledged"
        );
        sinks.shutdown().await;
    }

    /// Remote write records stored compressed, left in the buffer of a sink whose
    /// type became `influxdb`, are not sent but set aside, their bodies as the
    /// uncompressed `WriteRequest` (docs/BUFFER.md, "Records in another format").
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn compressed_remote_write_records_are_set_aside_decompressed_by_another_type() {
        use crate::sink::body_format::BodyFormat;
        use crate::sink::prometheus_remote_write::proto::{
            Label, Sample, TimeSeries, WriteRequest,
        };
        use base64::Engine;
        use prost::Message;
        let dir = tempfile::tempdir().expect("tempdir");
        let request = WriteRequest {
            timeseries: (0..50)
                .map(|i| TimeSeries {
                    labels: vec![Label {
                        name: "__name__".into(),
                        value: "m_v".into(),
                    }],
                    samples: vec![Sample {
                        value: f64::from(i),
                        timestamp: 1_700_000_000_000 + i64::from(i),
                    }],
                })
                .collect(),
        };
        let plain = request.encode_to_vec();
        {
            let stats = Arc::new(SinkStats::new("t", "prometheus_remote_write"));
            let limits = buffer::BufferLimits {
                max_bytes: 1 << 20,
                sync_every: None,
            };
            let buffers = dir.path().join("buffers").join("t");
            let format = BodyFormat::RemoteWriteSnappy;
            let old = DiskBuffer::open(&buffers, "t", format, limits, stats).expect("open");
            let mut body = Vec::new();
            snappy_block::Compressor::default()
                .compress(&plain, &mut body)
                .expect("compress");
            assert!(body.len() < plain.len());
            let record = Record {
                category: Category::Metric,
                points: 50,
                enqueued_ms: 1,
                body,
            };
            old.append(vec![record]).await.expect("append");
            old.close();
        }
        let stats = Stats::new();
        let backend = Backend::answering(204).await;
        let sinks = Sinks::open(&[influx(backend.url.clone())], dir.path(), &stats).expect("open");
        let aside = until(|| stats.snapshot().sinks[0].foreign_points == 50).await;
        assert!(aside, "{:?}", stats.snapshot().sinks);
        sinks.shutdown().await;
        assert!(backend.accepted_values().is_empty(), "nothing was sent");
        let text = std::fs::read_to_string(foreign_path(dir.path(), "t")).expect("foreign file");
        let line: serde_json::Value =
            serde_json::from_str(text.lines().next().expect("a line")).expect("JSON");
        assert_eq!(line["format_code"], 4, "{line}");
        assert_eq!(line["format"], "prometheus_remote_write_snappy");
        assert_eq!(line["sink_format"], "line_protocol");
        let body = base64::engine::general_purpose::STANDARD
            .decode(line["body_base64"].as_str().expect("body_base64"))
            .expect("base64");
        assert_eq!(
            WriteRequest::decode(body.as_slice()).expect("protobuf"),
            request
        );
    }
}
