//! What one sink is doing, for status and metrics: queue depth (points, bytes, age of
//! the oldest queued point) and delivery counters (sent, retried, dropped,
//! dead-lettered, set aside in another format, skipped, last error).
//!
//! The buffer and the delivery task (src/sink/) write here; [`crate::stats::Stats`]
//! holds one per sink and copies them into its snapshot. The type lives with the
//! stats, not with the sinks, so that the stats depend on no sink code. Counters are
//! atomics; the last error sits behind a short mutex never held across an await.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::SystemTime;

use serde::Serialize;

/// Live counters of one sink.
#[derive(Debug, Default)]
pub struct SinkStats {
    name: String,
    kind: String,
    queued_points: AtomicU64,
    queued_bytes: AtomicU64,
    /// Enqueue time (Unix ms) of the oldest undelivered point; 0 when none.
    oldest_queued_ms: AtomicU64,
    buffered_points: AtomicU64,
    sent_points: AtomicU64,
    sent_batches: AtomicU64,
    retries: AtomicU64,
    dropped_points: AtomicU64,
    dead_lettered_points: AtomicU64,
    corrupt_bytes: AtomicU64,
    skipped_points: AtomicU64,
    skipped_fields: AtomicU64,
    corrupt_points: AtomicU64,
    foreign_points: AtomicU64,
    last_error: Mutex<Option<String>>,
}

impl SinkStats {
    /// Counters for sink `name` of type `kind` (`"influxdb"`, `"datakit"`, ...).
    pub fn new(name: &str, kind: &str) -> Self {
        Self {
            name: name.to_string(),
            kind: kind.to_string(),
            ..Self::default()
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub(crate) fn set_queue(&self, points: u64, bytes: u64, oldest_ms: Option<u64>) {
        self.queued_points.store(points, Ordering::Relaxed);
        self.queued_bytes.store(bytes, Ordering::Relaxed);
        self.oldest_queued_ms
            .store(oldest_ms.unwrap_or(0), Ordering::Relaxed);
    }

    pub(crate) fn add_buffered(&self, points: u64) {
        self.buffered_points.fetch_add(points, Ordering::Relaxed);
    }

    /// A delivery the backend accepted: the sink has recovered, so its last error
    /// (shown by `pythond status`) is cleared.
    pub(crate) fn add_sent(&self, points: u64) {
        self.sent_points.fetch_add(points, Ordering::Relaxed);
        self.sent_batches.fetch_add(1, Ordering::Relaxed);
        *self.last_error.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }

    pub(crate) fn add_retry(&self) {
        self.retries.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn add_dropped(&self, points: u64) {
        self.dropped_points.fetch_add(points, Ordering::Relaxed);
    }

    pub(crate) fn add_dead_lettered(&self, points: u64) {
        self.dead_lettered_points
            .fetch_add(points, Ordering::Relaxed);
    }

    pub(crate) fn add_corrupt_bytes(&self, bytes: u64) {
        self.corrupt_bytes.fetch_add(bytes, Ordering::Relaxed);
    }

    /// Counts points and fields the sink's backend has no place for (never buffered).
    pub(crate) fn add_skipped(&self, points: u64, fields: u64) {
        self.skipped_points.fetch_add(points, Ordering::Relaxed);
        self.skipped_fields.fetch_add(fields, Ordering::Relaxed);
    }

    pub(crate) fn add_corrupt_points(&self, points: u64) {
        self.corrupt_points.fetch_add(points, Ordering::Relaxed);
    }

    /// Points of records in another body format, set aside unsent.
    pub(crate) fn add_foreign(&self, points: u64) {
        self.foreign_points.fetch_add(points, Ordering::Relaxed);
    }

    pub(crate) fn set_last_error(&self, error: String) {
        *self.last_error.lock().unwrap_or_else(|p| p.into_inner()) = Some(error);
    }

    pub fn snapshot(&self) -> SinkSnapshot {
        let oldest = self.oldest_queued_ms.load(Ordering::Relaxed);
        let now_ms = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        SinkSnapshot {
            name: self.name.clone(),
            kind: self.kind.clone(),
            queued_points: self.queued_points.load(Ordering::Relaxed),
            queued_bytes: self.queued_bytes.load(Ordering::Relaxed),
            oldest_queued_age_ms: (oldest > 0).then(|| now_ms.saturating_sub(oldest)),
            buffered_points: self.buffered_points.load(Ordering::Relaxed),
            sent_points: self.sent_points.load(Ordering::Relaxed),
            sent_batches: self.sent_batches.load(Ordering::Relaxed),
            retries: self.retries.load(Ordering::Relaxed),
            dropped_points: self.dropped_points.load(Ordering::Relaxed),
            dead_lettered_points: self.dead_lettered_points.load(Ordering::Relaxed),
            corrupt_bytes: self.corrupt_bytes.load(Ordering::Relaxed),
            skipped_points: self.skipped_points.load(Ordering::Relaxed),
            skipped_fields: self.skipped_fields.load(Ordering::Relaxed),
            corrupt_points: self.corrupt_points.load(Ordering::Relaxed),
            foreign_points: self.foreign_points.load(Ordering::Relaxed),
            last_error: self
                .last_error
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
        }
    }
}

/// A serializable copy of one sink's state (in `StatsSnapshot::sinks`).
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct SinkSnapshot {
    /// The sink's `name` (also its buffer directory under `data_dir/buffers/`).
    pub name: String,
    /// Its `type`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Points in the disk buffer not yet accepted by the backend.
    pub queued_points: u64,
    /// Bytes those points take in the buffer.
    pub queued_bytes: u64,
    /// How long the oldest queued point has waited; absent when the queue is empty.
    pub oldest_queued_age_ms: Option<u64>,
    /// Points durably appended to the buffer since start.
    pub buffered_points: u64,
    /// Points the backend accepted since start.
    pub sent_points: u64,
    /// Requests the backend accepted since start.
    pub sent_batches: u64,
    /// Failed attempts that will be (or were) retried.
    pub retries: u64,
    /// Points dropped because the buffer was full (oldest first).
    pub dropped_points: u64,
    /// Points the backend refused for good, written to the dead-letter file.
    pub dead_lettered_points: u64,
    /// Bytes of damaged or torn buffer data skipped, when the buffer was opened or
    /// while delivering (docs/BUFFER.md).
    pub corrupt_bytes: u64,
    /// Points not sent because the sink's backend has no place for them (a category
    /// a `prometheus_remote_write` or `otlp` sink does not carry, or a metric point
    /// whose fields are all strings). Never buffered.
    pub skipped_points: u64,
    /// String fields left out of metric points sent to a `prometheus_remote_write`
    /// or `otlp` sink.
    pub skipped_fields: u64,
    /// Points lost in that damaged data (counted where the frames around the damage
    /// tell exactly how many; docs/BUFFER.md).
    pub corrupt_points: u64,
    /// Points found in the buffer in another body format than the sink's (written
    /// by a sink of another type under the same name), not sent but written to
    /// `data_dir/foreign/<name>.ndjson` (docs/BUFFER.md).
    pub foreign_points: u64,
    /// The last delivery or buffer error, if any.
    pub last_error: Option<String>,
}
