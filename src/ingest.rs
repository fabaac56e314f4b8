//! From reports to accepted points: validation, tags, counting, and hand-off to sinks.
//!
//! Points from every source (worker pipes, the HTTP write API) pass through
//! [`Ingest`], so they get the same rules, the same counters and the same sinks. A bad
//! point is counted, logged with its input, plugin and reason, and dropped on its own;
//! its neighbours go on.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime};

use crate::live_sinks::LiveSinks;
use crate::point::{
    self, BatchPool, Category, DecodeContext, Fix, Point, PointBatch, Precision, RejectReason,
};
use crate::stats::{PluginStats, Stats};
use crate::tap::Tap;
use crate::worker::protocol::Report;

/// How often the same (input, plugin, reason) may be logged at warn/info level; the
/// repeats in between go to debug level and are still counted.
const LOG_REPEAT_EVERY: Duration = Duration::from_secs(60);

/// `[global_tags]` (plus `host`) as they are now: a reload of pythond.toml replaces
/// them, and every point decoded from then on carries the new set (docs/RELOAD.md).
#[derive(Debug, Default)]
pub struct GlobalTags {
    current: RwLock<Arc<BTreeMap<String, String>>>,
}

impl GlobalTags {
    fn get(&self) -> Arc<BTreeMap<String, String>> {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn set(&self, tags: BTreeMap<String, String>) {
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(tags);
    }
}

/// The tags an input adds to its points: its own, and the agent's global ones as they
/// are when a point is decoded.
#[derive(Clone, Debug, Default)]
pub struct InputTags {
    own: BTreeMap<String, String>,
    global: Arc<GlobalTags>,
    /// The last merge, and the global set it was made from: merging again only when
    /// a reload replaced the global tags keeps the hot path to a pointer comparison.
    merged: Arc<Mutex<Option<MergedTags>>>,
}

type MergedTags = (Arc<BTreeMap<String, String>>, Arc<BTreeMap<String, String>>);

impl InputTags {
    /// The global tags overlaid with the input's own (the input's win).
    fn with_global(&self) -> Arc<BTreeMap<String, String>> {
        let global = self.global.get();
        if self.own.is_empty() {
            return global;
        }
        let mut merged = self.merged.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((from, tags)) = merged.as_ref() {
            if Arc::ptr_eq(from, &global) {
                return tags.clone();
            }
        }
        let mut tags = (*global).clone();
        tags.extend(self.own.iter().map(|(k, v)| (k.clone(), v.clone())));
        let tags = Arc::new(tags);
        *merged = Some((global, tags.clone()));
        tags
    }
}

/// Where a report came from.
pub struct Origin<'a> {
    pub input: &'a str,
    /// The plugin id, or "-" when unknown.
    pub plugin: &'a str,
    pub tags: &'a InputTags,
    pub plugin_stats: Option<&'a PluginStats>,
}

/// What became of one report's points.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Outcome {
    pub accepted: u64,
    pub fixed: u64,
    pub rejected: u64,
}

/// One write request of the HTTP API, its body already read and decompressed.
pub struct WriteRequest<'a> {
    pub category: Category,
    /// The `precision` query parameter; `None` auto-detects the time unit.
    pub precision: Option<Precision>,
    pub ignore_global_tags: bool,
    pub body: WriteBody<'a>,
}

/// A write request's points: a JSON array (what the shim sends; visited one point at a
/// time, a body that is not valid JSON refused before any point is taken) or line
/// protocol.
pub enum WriteBody<'a> {
    Json(&'a [u8]),
    LineProtocol(&'a str),
}

/// How many rejection messages a [`WriteOutcome`] keeps (the rest are only counted, so a
/// body of a million bad points does not become a million strings).
pub const WRITE_REJECTIONS_KEPT: usize = 10;

/// What became of a write request's points, with a message for each of the first
/// [`WRITE_REJECTIONS_KEPT`] rejected points ("point 2: ..." for JSON, "line 3: ..."
/// for line protocol); `outcome.rejected` counts them all.
#[derive(Debug, Default)]
pub struct WriteOutcome {
    pub outcome: Outcome,
    pub rejections: Vec<String>,
    /// Set when decoding stopped before the end of the body (the deadline passed, or
    /// the request was abandoned): the first point not read ("line 7", "point 7").
    /// The points before it were handled as counted in `outcome`.
    pub stopped_at: Option<String>,
}

/// How many accepted points of a write request are handed to the sinks at a time: a
/// request never holds more decoded points than this, whatever its body expands to.
pub const WRITE_CHUNK_POINTS: usize = 4096;

/// How many chunks of one write request may be in the sinks' hands at once (handed
/// on, not yet written by every sink). Decoding waits for the oldest before handing on
/// more, so a request's decoded points stay bounded even when decoding outpaces the
/// sinks.
pub const WRITE_CHUNKS_IN_FLIGHT: usize = 4;

/// When a write request must stop decoding.
pub struct WriteLimits<'a> {
    /// The request's `request_timeout` deadline.
    pub deadline: Instant,
    /// Set when nobody waits for the answer any more (the connection went away).
    pub abandoned: &'a AtomicBool,
}

/// Why a write body was refused as a whole, before any of its points was taken.
#[derive(Debug, thiserror::Error)]
pub enum WriteBodyError {
    #[error("body is not valid JSON ({0})")]
    Json(serde_json::Error),
    #[error("body holds more than {limit} points, over [http] max_points_per_request")]
    TooManyPoints { limit: usize },
    #[error("request_timeout passed while checking the body ({checked} points counted)")]
    Timeout { checked: usize },
}

/// Refuses a body before any point is taken: JSON that does not parse, more points
/// than `limit`, or no time left. The JSON check is the very walk decoding takes, so
/// a body it lets through is walked to its end.
pub fn precheck_write_body(
    body: &WriteBody<'_>,
    limit: usize,
    limits: &WriteLimits<'_>,
) -> Result<(), WriteBodyError> {
    let mut count = 0usize;
    let mut stop = None;
    // Counts one more point; false when the count or the time is up.
    let mut one_more = || {
        count += 1;
        if count > limit {
            stop = Some(WriteBodyError::TooManyPoints { limit });
        } else if count % LIMITS_CHECK_EVERY == 0 && limits.exhausted() {
            stop = Some(WriteBodyError::Timeout { checked: count });
        }
        stop.is_none()
    };
    match body {
        WriteBody::Json(bytes) => {
            let walked = point::for_each_json_point_while(bytes, |_| one_more());
            if let Some(stop) = stop {
                return Err(stop);
            }
            walked.map_err(WriteBodyError::Json)?;
        }
        WriteBody::LineProtocol(text) => {
            // A point starts on a line of its own and takes at least a byte: a body
            // with no more bytes, or lines, than the limit has no more points
            // (no need to find them).
            if text.len() <= limit || memchr::memchr_iter(b'\n', text.as_bytes()).count() < limit {
                return Ok(());
            }
            for _ in point::line_protocol_lines(text) {
                if !one_more() {
                    break;
                }
            }
            if let Some(stop) = stop {
                return Err(stop);
            }
        }
    }
    Ok(())
}

impl WriteLimits<'_> {
    /// True once the deadline passed or the request was abandoned.
    fn exhausted(&self) -> bool {
        Instant::now() >= self.deadline || self.abandoned.load(Ordering::Relaxed)
    }
}

/// The single path every point takes into the sinks.
pub struct Ingest {
    stats: Arc<Stats>,
    global_tags: Arc<GlobalTags>,
    sinks: LiveSinks,
    tap: Tap,
    throttle: Mutex<HashMap<(String, String, &'static str), Instant>>,
    log_every_point: bool,
    /// Write requests' chunks, emptied: the next request's chunk reuses one.
    chunks: BatchPool,
}

impl Ingest {
    /// `global_tags` are added to every point unless a report sets `ignore_global_tags`.
    pub fn new(
        stats: Arc<Stats>,
        global_tags: BTreeMap<String, String>,
        sinks: impl Into<LiveSinks>,
    ) -> Self {
        let global = GlobalTags::default();
        global.set(global_tags);
        Self {
            stats,
            global_tags: Arc::new(global),
            sinks: sinks.into(),
            tap: Tap::default(),
            throttle: Mutex::new(HashMap::new()),
            log_every_point: false,
            chunks: BatchPool::default(),
        }
    }

    /// Logs every fix and rejection instead of once a minute per reason (for `check`,
    /// where each one matters and there are few).
    pub fn log_every_point(mut self) -> Self {
        self.log_every_point = true;
        self
    }

    /// Combines an input's own tags with the global ones (the input's win).
    pub fn input_tags(&self, input_tags: &BTreeMap<String, String>) -> InputTags {
        InputTags {
            own: input_tags.clone(),
            global: self.global_tags.clone(),
            merged: Arc::default(),
        }
    }

    /// Replaces the global tags: points decoded from now on carry `tags` (nothing is
    /// restarted).
    pub fn set_global_tags(&self, tags: BTreeMap<String, String>) {
        self.global_tags.set(tags);
    }

    /// The running sinks, for a reload of `[[sinks]]`.
    pub fn sinks(&self) -> &LiveSinks {
        &self.sinks
    }

    /// Where `GET /v1/tap` subscribers get a copy of every accepted point.
    pub fn tap(&self) -> &Tap {
        &self.tap
    }

    /// Validates a worker's report and forwards what is valid.
    pub async fn report(&self, origin: &Origin<'_>, report: Report) -> Outcome {
        let mut accepted = Vec::new();
        let outcome = self.validate(origin, report, &mut accepted);
        self.forward(accepted).await;
        outcome
    }

    /// Validates a worker's report, appending what is valid to `accepted` (counted and
    /// logged like [`Ingest::report`], but not yet forwarded). Callers that receive
    /// reports in bursts validate several and [`forward`](Ingest::forward) them as one
    /// batch, so the sinks are woken once per burst rather than once per report.
    pub fn validate(
        &self,
        origin: &Origin<'_>,
        report: Report,
        accepted: &mut Vec<Point>,
    ) -> Outcome {
        let mut outcome = Outcome::default();
        let first_new = accepted.len();
        for shim_rejection in &report.rejected {
            let category =
                Category::from_code(&shim_rejection.category).unwrap_or(Category::Metric);
            self.reject_from_shim(
                origin,
                category,
                shim_rejection.measurement.as_deref(),
                shim_rejection.label.as_deref(),
                &shim_rejection.reason,
            );
            outcome.rejected += 1;
        }

        let with_global;
        let extra_tags = if report.ignores_global_tags() {
            &origin.tags.own
        } else {
            with_global = origin.tags.with_global();
            &*with_global
        };
        let precision = match report.precision.as_deref().map(str::parse::<Precision>) {
            None => Ok(None),
            Some(Ok(p)) => Ok(Some(p)),
            Some(Err(e)) => Err(e.to_string()),
        };
        let now_ns = now_ns();
        for (code, points) in &report.data {
            let Some(category) = Category::from_code(code) else {
                for _ in points {
                    self.reject(
                        origin,
                        Category::Metric,
                        RejectReason::UnknownCategory.as_str(),
                        &format!(
                            "report key `{code}` is not a category (expected M, L, O, CO, E or R)"
                        ),
                    );
                    outcome.rejected += 1;
                }
                continue;
            };
            let precision = match &precision {
                Ok(p) => *p,
                Err(message) => {
                    for _ in points {
                        self.reject(
                            origin,
                            category,
                            RejectReason::BadPrecision.as_str(),
                            message,
                        );
                        outcome.rejected += 1;
                    }
                    continue;
                }
            };
            let ctx = DecodeContext {
                category,
                precision,
                now_ns,
                extra_tags,
            };
            self.decode_into(origin, &ctx, points, accepted, &mut outcome);
        }
        self.tap
            .publish(origin.input, origin.plugin, &accepted[first_new..]);
        outcome
    }

    /// Counts and logs a point the worker's shim could not send (not JSON-serializable),
    /// whether its report came over the pipe or over HTTP. `label` is the shim's reason
    /// label: it names NaN and infinities `invalid_field_value`, as the line-protocol
    /// path does for the same value (docs/POINTS.md); else `not_json_serializable`.
    pub fn reject_from_shim(
        &self,
        origin: &Origin<'_>,
        category: Category,
        measurement: Option<&str>,
        label: Option<&str>,
        reason: &str,
    ) {
        let what = measurement
            .map(|m| format!("point `{m}`"))
            .unwrap_or_else(|| "a point".to_string());
        let label = label
            .and_then(RejectReason::from_label)
            .unwrap_or(RejectReason::NotJsonSerializable);
        self.reject(
            origin,
            category,
            label.as_str(),
            &format!("{what} rejected by the shim: {reason}"),
        );
    }

    /// Validates the points of one HTTP write request and forwards what is valid, in
    /// chunks of [`WRITE_CHUNK_POINTS`]. Each rejection is counted and logged like a
    /// worker's, and its message (which point, why) is returned so the caller can
    /// answer with it. Runs on a blocking thread (decoding a large body takes a while);
    /// `runtime` is used to hand chunks to the sinks. Stops between chunks once
    /// `limits` says so. Call [`precheck_write_body`] first.
    pub fn write_blocking(
        &self,
        origin: &Origin<'_>,
        request: WriteRequest<'_>,
        limits: &WriteLimits<'_>,
        runtime: &tokio::runtime::Handle,
    ) -> WriteOutcome {
        let with_global;
        let extra_tags = if request.ignore_global_tags {
            &origin.tags.own
        } else {
            with_global = origin.tags.with_global();
            &*with_global
        };
        let ctx = DecodeContext {
            category: request.category,
            precision: request.precision,
            now_ns: now_ns(),
            extra_tags,
        };
        let mut chunker = Chunker {
            ingest: self,
            origin,
            category: ctx.category,
            limits,
            runtime,
            chunk: self.chunks.take(),
            in_flight: std::collections::VecDeque::new(),
            taken: 0,
            result: WriteOutcome::default(),
        };
        match request.body {
            WriteBody::Json(body) => {
                let mut index = 0;
                let walked = point::for_each_json_point(body, |raw| {
                    index += 1;
                    if chunker.result.stopped_at.is_some() {
                        return;
                    }
                    let decoded = point::decode_json_point(raw)
                        .and_then(|value| point::from_json(&value, &ctx))
                        .map(|ok| {
                            chunker.chunk.push_point(ok.point);
                            ok.fixes
                        });
                    chunker.take("point", index, decoded);
                });
                if let Err(error) = walked {
                    // precheck_write_body walked the same body without error.
                    tracing::error!(
                        input = origin.input,
                        "JSON body failed after its check (points after {index} not read): {error}"
                    );
                    chunker
                        .result
                        .stopped_at
                        .get_or_insert(format!("point {index}"));
                }
            }
            WriteBody::LineProtocol(text) => {
                // Straight into the chunk, strings borrowed from the body.
                let mut decoder = point::LineDecoder::new(&ctx);
                for (line_no, line) in point::line_protocol_lines(text) {
                    if chunker.result.stopped_at.is_some() {
                        break;
                    }
                    let decoded = decoder.decode(line, line_no, &mut chunker.chunk);
                    chunker.take("line", line_no, decoded);
                }
            }
        }
        chunker.flush();
        // Until the sinks have written every chunk, this request's points still take
        // memory: wait for them (within the deadline), so what the caller frees and
        // trims afterwards is the request's whole footprint (but for the emptied
        // chunk, kept for the next request within `BatchPool`'s bounds).
        chunker.wait_in_flight(0);
        self.chunks.give(chunker.chunk);
        chunker.result
    }

    fn decode_into(
        &self,
        origin: &Origin<'_>,
        ctx: &DecodeContext<'_>,
        points: &[serde_json::Value],
        accepted: &mut Vec<Point>,
        outcome: &mut Outcome,
    ) {
        let before = accepted.len();
        for value in points {
            let decoded = point::from_json(value, ctx);
            self.take(origin, ctx.category, None, decoded, accepted, outcome);
        }
        let n = (accepted.len() - before) as u64;
        self.count_accepted(origin, ctx.category, n, outcome);
    }

    /// Counts and logs one decoded point: its fixes, or its rejection (named by `what`,
    /// such as "point 3", in the message). A valid point goes into `accepted`; for a
    /// rejected one the message is returned.
    fn take(
        &self,
        origin: &Origin<'_>,
        category: Category,
        what: Option<&str>,
        decoded: Result<point::Accepted, point::Rejection>,
        accepted: &mut Vec<Point>,
        outcome: &mut Outcome,
    ) -> Option<String> {
        match decoded {
            Ok(ok) => {
                self.count_fixes(origin, category, &ok.fixes, outcome);
                accepted.push(ok.point);
                None
            }
            Err(rejection) => {
                Some(self.count_rejection(origin, category, what, rejection, outcome))
            }
        }
    }

    /// Counts and logs the fixes an accepted point needed.
    fn count_fixes(
        &self,
        origin: &Origin<'_>,
        category: Category,
        fixes: &[Fix],
        outcome: &mut Outcome,
    ) {
        for fix in fixes {
            self.fix(origin, category, fix.reason.as_str(), &fix.to_string());
            outcome.fixed += 1;
        }
    }

    /// Counts and logs a rejected point (named by `what` in the message, which is
    /// returned).
    fn count_rejection(
        &self,
        origin: &Origin<'_>,
        category: Category,
        what: Option<&str>,
        rejection: point::Rejection,
        outcome: &mut Outcome,
    ) -> String {
        let message = match what {
            Some(what) => format!("{what}: {rejection}"),
            None => rejection.to_string(),
        };
        self.reject(origin, category, rejection.reason.as_str(), &message);
        outcome.rejected += 1;
        message
    }

    /// Counts `n` points of `category` accepted, for the agent and the plugin.
    fn count_accepted(
        &self,
        origin: &Origin<'_>,
        category: Category,
        n: u64,
        outcome: &mut Outcome,
    ) {
        outcome.accepted += n;
        self.stats.points().add_accepted(category, n);
        if let Some(plugin) = origin.plugin_stats {
            plugin.add_points(category, n);
        }
    }

    /// Hands accepted points to the sinks (waiting while they are full).
    pub async fn forward(&self, points: Vec<Point>) {
        if !points.is_empty() {
            self.sinks.send(Arc::new(points)).await;
        }
    }

    /// Flushes and closes the sinks.
    pub async fn shutdown(&self) {
        self.sinks.shutdown().await;
    }

    fn fix(&self, origin: &Origin<'_>, category: Category, reason: &'static str, message: &str) {
        // The message quotes what a collector or client sent: no newline of it may start
        // a log line of its own (docs/OPERATIONS.md).
        let message = crate::log_text::escape(message);
        self.stats.points().add_fixed(category, reason);
        if let Some(plugin) = origin.plugin_stats {
            plugin.add_fixed();
        }
        if self.should_log(origin, reason) {
            tracing::info!(input = origin.input, plugin = origin.plugin, %category, reason, "point fixed: {message}");
        } else {
            tracing::debug!(input = origin.input, plugin = origin.plugin, %category, reason, "point fixed: {message}");
        }
    }

    fn reject(&self, origin: &Origin<'_>, category: Category, reason: &'static str, message: &str) {
        // The message quotes what a collector or client sent: no newline of it may start
        // a log line of its own (docs/OPERATIONS.md).
        let message = crate::log_text::escape(message);
        self.stats.points().add_rejected(category, reason);
        if let Some(plugin) = origin.plugin_stats {
            plugin.add_rejected();
        }
        if self.should_log(origin, reason) {
            tracing::warn!(input = origin.input, plugin = origin.plugin, %category, reason, "point rejected: {message}");
        } else {
            tracing::debug!(input = origin.input, plugin = origin.plugin, %category, reason, "point rejected: {message}");
        }
    }

    /// True at most once per [`LOG_REPEAT_EVERY`] for each (input, plugin, reason).
    fn should_log(&self, origin: &Origin<'_>, reason: &'static str) -> bool {
        if self.log_every_point {
            return true;
        }
        let mut seen = self.throttle.lock().unwrap_or_else(|p| p.into_inner());
        let key = (origin.input.to_string(), origin.plugin.to_string(), reason);
        let now = Instant::now();
        match seen.get(&key) {
            Some(last) if now.duration_since(*last) < LOG_REPEAT_EVERY => false,
            _ => {
                seen.insert(key, now);
                true
            }
        }
    }
}

/// The decoding state of one write request: the chunk being filled (its strings
/// borrowed from the body where they can be), and the outcome.
struct Chunker<'i, 'o, 'p> {
    ingest: &'i Ingest,
    origin: &'i Origin<'o>,
    category: Category,
    limits: &'i WriteLimits<'i>,
    runtime: &'i tokio::runtime::Handle,
    chunk: PointBatch<'p>,
    /// Owned copies of chunks handed to the sinks that keep points in memory; such a
    /// sink is done with a chunk once only this holds it.
    in_flight: std::collections::VecDeque<Arc<Vec<Point>>>,
    /// Points taken so far (accepted or not).
    taken: usize,
    result: WriteOutcome,
}

/// How often (in points taken) decoding looks at its [`WriteLimits`].
const LIMITS_CHECK_EVERY: usize = 1024;

impl Chunker<'_, '_, '_> {
    /// Takes the outcome of one decoded point (`kind` and `index` name it: "line 3",
    /// "point 3"; an accepted point is in the chunk already, its fixes here); hands
    /// the chunk on when it is full, then stops if the limits say so.
    fn take(&mut self, kind: &str, index: usize, decoded: Result<Vec<Fix>, point::Rejection>) {
        match decoded {
            Ok(fixes) => self.ingest.count_fixes(
                self.origin,
                self.category,
                &fixes,
                &mut self.result.outcome,
            ),
            Err(rejection) => {
                let message = self.ingest.count_rejection(
                    self.origin,
                    self.category,
                    Some(&format!("{kind} {index}")),
                    rejection,
                    &mut self.result.outcome,
                );
                if self.result.rejections.len() < WRITE_REJECTIONS_KEPT {
                    self.result.rejections.push(message);
                }
            }
        }
        if self.chunk.len() >= WRITE_CHUNK_POINTS {
            self.flush();
        }
        self.taken += 1;
        if self.taken % LIMITS_CHECK_EVERY == 0 && self.limits.exhausted() {
            self.result.stopped_at = Some(format!("{kind} {}", index + 1));
        }
    }

    /// Counts and hands on the accepted points of the chunk.
    fn flush(&mut self) {
        if self.chunk.is_empty() {
            return;
        }
        self.ingest.count_accepted(
            self.origin,
            self.category,
            self.chunk.len() as u64,
            &mut self.result.outcome,
        );
        if self.ingest.tap.subscribers() > 0 {
            self.ingest.tap.publish(
                self.origin.input,
                self.origin.plugin,
                &self.chunk.to_points(),
            );
        }
        self.wait_in_flight(WRITE_CHUNKS_IN_FLIGHT - 1);
        let kept = self
            .runtime
            .block_on(self.ingest.sinks.send_points(&self.chunk));
        self.in_flight.extend(kept);
        self.chunk.clear();
    }

    /// Waits until at most `most` handed-on chunks are still held by a sink, or the
    /// limits run out (then decoding stops at its next check).
    fn wait_in_flight(&mut self, most: usize) {
        loop {
            while self
                .in_flight
                .front()
                .is_some_and(|batch| Arc::strong_count(batch) == 1)
            {
                self.in_flight.pop_front();
            }
            if self.in_flight.len() <= most || self.limits.exhausted() {
                return;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

/// Wall-clock now in nanoseconds since the Unix epoch.
pub fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}
