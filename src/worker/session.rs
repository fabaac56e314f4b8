//! One running worker and the tasks that listen to it.
//!
//! A [`Session`] starts a worker and three tasks: one reads the channel, one each
//! drains stdout and stderr. The channel reader handles what needs no decision
//! (reports go to ingest, printed lines and `set_lasterror` to the log and stats) and
//! passes only lifecycle events ([`Event`]) to whoever owns the session: the input
//! supervisor or `pythond check`. Reports are forwarded in order, before the `done` of
//! the run that made them.

use std::sync::Arc;
use std::time::{Duration, Instant};

use std::io::Write;
use std::os::unix::net::UnixStream as StdUnixStream;

use tokio::io::{AsyncRead, BufReader};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::lines::{Line, LineReader};
use super::process::{SpawnError, WorkerProcess, WorkerSpec};
use super::protocol::{Command, Done, Hello, Runs, TimedOut, WorkerFrame};
use crate::ingest::{Ingest, InputTags, Origin};
use crate::log_text::escape;
use crate::point::Point;
use crate::stats::InputStats;

/// Longest line of raw worker output (fd 1 and 2) logged as one line.
const MAX_OUTPUT_LINE: usize = 16 * 1024;
/// Lines of worker output logged per second per stream, and error lines per second
/// about bad frames; the rest are counted (status: `log_lines_suppressed`).
const OUTPUT_LINES_PER_SECOND: u32 = 200;
/// How long a command write may block before the worker counts as gone.
const COMMAND_WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a finished worker's readers get to hand on what it wrote last.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(2);
/// After the worker process exited, how long events it sent before dying are still
/// passed on: a process it forked may hold the channel open, so end of stream cannot
/// be waited for (docs/OPERATIONS.md, "Supervision").
const EXIT_EVENT_GRACE: Duration = Duration::from_millis(500);
/// How long the channel reader waits after a burst of reports before reading again.
/// A reporting loop then costs the agent one wake-up per millisecond instead of one
/// per report (see docs/BENCHMARKS.md); a lone report is forwarded at once.
const COALESCE: Duration = Duration::from_millis(1);

/// What the owner of a session must decide about.
#[derive(Debug)]
pub enum Event {
    Hello(Hello),
    Done(Done),
    /// Pooled inputs: a batch of finished runs.
    Runs(Runs),
    /// Pooled inputs: a run passed its timeout and was abandoned.
    TimedOut(TimedOut),
}

/// What a session needs to know about its input.
pub struct SessionContext {
    pub input: String,
    pub tags: InputTags,
    pub ingest: Arc<Ingest>,
    pub stats: Arc<InputStats>,
}

/// A started worker.
pub struct Session {
    process: WorkerProcess,
    /// The agent's end of the channel: commands are written to it here, frames are
    /// read from it by the reader thread.
    channel: Arc<StdUnixStream>,
    events: mpsc::Receiver<Event>,
    reader: JoinHandle<()>,
    drains: Vec<JoinHandle<()>>,
    /// When and how the worker process itself exited, once it did. Watched beside the
    /// channel: a child the worker forked inherits the channel and keeps it open after
    /// the worker is gone, so end of stream alone would notice the death only when
    /// that child exits (perhaps never).
    exited: Option<(Instant, std::io::Result<std::process::ExitStatus>)>,
}

impl Session {
    /// Starts the worker and its listeners.
    pub fn start(spec: &WorkerSpec, ctx: Arc<SessionContext>) -> Result<Self, SpawnError> {
        let spawned = WorkerProcess::spawn(spec)?;
        let process = spawned.process;
        let (events_tx, events) = mpsc::channel(64);
        let mut drains = Vec::new();
        if let Some(stdout) = spawned.stdout {
            drains.push(tokio::spawn(drain_output(
                stdout,
                ctx.input.clone(),
                ctx.stats.clone(),
                "stdout",
            )));
        }
        if let Some(stderr) = spawned.stderr {
            drains.push(tokio::spawn(drain_output(
                stderr,
                ctx.input.clone(),
                ctx.stats.clone(),
                "stderr",
            )));
        }
        let io_err = |source| SpawnError::Io {
            cmd: spec.cmd.clone(),
            source,
        };
        let channel = spawned.channel;
        channel
            .set_write_timeout(Some(COMMAND_WRITE_TIMEOUT))
            .map_err(io_err)?;
        let reader_end = channel.try_clone().map_err(io_err)?;
        let max_frame = spec.max_frame;
        let runtime = tokio::runtime::Handle::current();
        let reader = tokio::task::spawn_blocking(move || {
            read_channel(reader_end, max_frame, ctx, events_tx, runtime)
        });
        Ok(Self {
            process,
            channel: Arc::new(channel),
            events,
            reader,
            drains,
            exited: None,
        })
    }

    pub fn pid(&self) -> u32 {
        self.process.pid
    }

    /// The next lifecycle event; `None` once the worker is gone: it closed its channel,
    /// or its process exited (events it sent just before are still passed on for
    /// [`EXIT_EVENT_GRACE`]). Cancel-safe.
    pub async fn next_event(&mut self) -> Option<Event> {
        if self.exited.is_none() {
            tokio::select! {
                event = self.events.recv() => return event,
                status = self.process.wait() => {
                    tracing::debug!(pid = self.process.pid, "worker process exited");
                    self.exited = Some((Instant::now(), status));
                }
            }
        }
        let since = self.exited.as_ref().map(|(at, _)| *at)?;
        let left = EXIT_EVENT_GRACE.saturating_sub(since.elapsed());
        tokio::time::timeout(left, self.events.recv())
            .await
            .ok()
            .flatten()
    }

    /// Why the session ended on the worker's side, for the log and status: its process
    /// exited (the exit status is what [`Session::finish`] returns), or its channel
    /// closed.
    pub fn end_reason(&self) -> String {
        match &self.exited {
            Some((_, Ok(_))) => "its process exited".to_string(),
            Some((_, Err(error))) => format!("its process could not be waited for: {error}"),
            None => "it closed its channel".to_string(),
        }
    }

    /// Waits for the worker's `hello`; `None` if it exited first. No run has been
    /// sent before the handshake, so nothing else can arrive meanwhile.
    pub async fn hello(&mut self) -> Option<Hello> {
        loop {
            match self.next_event().await? {
                Event::Hello(hello) => return Some(hello),
                Event::Done(_) | Event::Runs(_) | Event::TimedOut(_) => continue,
            }
        }
    }

    /// Sends a command. An error means the worker is gone, or stopped reading its
    /// commands for [`COMMAND_WRITE_TIMEOUT`].
    pub async fn send(&mut self, command: &Command<'_>) -> std::io::Result<()> {
        let line = command.to_line();
        let channel = self.channel.clone();
        // Commands are a few bytes, a few per run: a blocking write off the reactor
        // keeps the socket unregistered (see `read_channel`) at no real cost.
        tokio::task::spawn_blocking(move || (&*channel).write_all(&line))
            .await
            .map_err(std::io::Error::other)?
    }

    /// SIGKILL to the worker's process group.
    pub fn kill(&self) {
        self.process.kill_group();
    }

    /// Waits up to `grace` for the worker to exit by itself, then kills its group;
    /// always reaps it and kills anything left in its group. Returns a description of
    /// how it ended.
    pub async fn finish(mut self, grace: Duration) -> String {
        let status = match tokio::time::timeout(grace, self.process.wait()).await {
            Ok(status) => status,
            Err(_) => {
                self.process.kill_group();
                self.process.wait().await
            }
        };
        // Subprocesses a collector left behind share the group: take them down too.
        self.process.kill_group();
        // The reader ends at end of stream, once it has handed on every frame the worker
        // wrote. Should something still hold the worker's end open, shutting ours down
        // ends the read all the same (frames already queued are still read first).
        if tokio::time::timeout(DRAIN_TIMEOUT, &mut self.reader)
            .await
            .is_err()
        {
            tracing::debug!("worker channel still open after the worker exited; closing it");
            let _ = self.channel.shutdown(std::net::Shutdown::Both);
            let _ = self.reader.await;
        }
        for task in self.drains {
            // The drains end when the pipes close; do not let a grandchild that still
            // holds a pipe open keep us here.
            if tokio::time::timeout(DRAIN_TIMEOUT, task).await.is_err() {
                tracing::debug!("worker output drain did not end in time");
            }
        }
        match status {
            Ok(status) => super::process::describe_exit(&status),
            Err(e) => format!("could not be reaped: {e}"),
        }
    }

    /// True if the worker process has already exited.
    pub fn has_exited(&mut self) -> bool {
        self.process.try_wait().is_some()
    }
}

/// Reads frames from the worker; handles data frames, forwards lifecycle events.
///
/// Runs on a thread of its own, blocked in `read(2)`, rather than as an async task:
/// a socket registered with the reactor wakes it for every frame that arrives, even
/// while the reader deliberately waits for a burst to pile up, and that wake-up per
/// report was most of the agent's CPU under a reporting loop (docs/BENCHMARKS.md).
fn read_channel(
    reader: StdUnixStream,
    max_frame: usize,
    ctx: Arc<SessionContext>,
    events: mpsc::Sender<Event>,
    runtime: tokio::runtime::Handle,
) {
    let forward = |points: Vec<Point>| runtime.block_on(ctx.ingest.forward(points));
    let mut lines = LineReader::new(
        std::io::BufReader::with_capacity(64 * 1024, reader),
        max_frame,
    );
    let mut plugin_log = RateLimit::new(&ctx.input, "plugin output", ctx.stats.clone());
    // A worker writing garbage into its channel gets as many error lines as a chatty
    // print loop gets output lines; every bad frame is counted all the same.
    let mut bad_frame_log = RateLimit::new(&ctx.input, "bad-frame errors", ctx.stats.clone());
    // Points validated since the last hand-off to the sinks. Every frame already read
    // is handled before they go (one batch per burst, not one per report); they always
    // go before a `done` or `hello` is passed on, and before this task ends.
    let mut pending: Vec<Point> = Vec::new();
    loop {
        if !lines.line_ready() && !pending.is_empty() {
            forward(std::mem::take(&mut pending));
            // The worker is reporting in a burst: let its next frames pile up in the
            // socket for a moment, so one wake-up and one read carry many of them.
            std::thread::sleep(COALESCE);
        }
        let line = match lines.next_line_blocking() {
            Ok(Some(Line::Complete(line))) => line,
            Ok(Some(Line::TooLong(n))) => {
                ctx.stats.add_bad_frame();
                if bad_frame_log.allow() {
                    tracing::error!(input = %ctx.input, bytes = n, limit = max_frame, "frame from worker exceeds the frame limit; dropped");
                }
                ctx.stats.set_last_error(format!(
                    "frame of {n} bytes exceeds the {max_frame}-byte limit"
                ));
                continue;
            }
            Ok(None) => break,
            Err(error) => {
                tracing::error!(input = %ctx.input, %error, "reading the worker channel failed");
                break;
            }
        };
        let frame = match WorkerFrame::parse(&line) {
            Ok(frame) => frame,
            Err(error) => {
                ctx.stats.add_bad_frame();
                if bad_frame_log.allow() {
                    let preview = crate::log_text::escape_bytes(&line[..line.len().min(200)]);
                    let error = crate::log_text::escape(&error.to_string()).into_owned();
                    tracing::error!(input = %ctx.input, %error, frame = %preview, "bad frame from worker; ignored");
                }
                ctx.stats
                    .set_last_error(format!("bad frame from worker: {error}"));
                continue;
            }
        };
        match frame {
            WorkerFrame::Report(report) => {
                let plugin_id = report.plugin.clone().unwrap_or_else(|| "-".to_string());
                let plugin_stats = report.plugin.as_deref().map(|id| ctx.stats.plugin(id));
                let origin = Origin {
                    input: &ctx.input,
                    plugin: &plugin_id,
                    tags: &ctx.tags,
                    plugin_stats: plugin_stats.as_deref(),
                };
                ctx.ingest.validate(&origin, report, &mut pending);
            }
            WorkerFrame::Log(log) => {
                if plugin_log.allow() {
                    let plugin = escape(log.plugin.as_deref().unwrap_or("-"));
                    let line = escape(&log.line);
                    if log.stream == "stderr" {
                        tracing::warn!(input = %ctx.input, %plugin, stream = "stderr", "{line}");
                    } else {
                        tracing::info!(input = %ctx.input, %plugin, stream = "stdout", "{line}");
                    }
                }
            }
            WorkerFrame::Lasterror(last) => {
                let plugin = escape(last.plugin.as_deref().unwrap_or("-"));
                let reported_input = escape(last.input.as_deref().unwrap_or(""));
                tracing::warn!(input = %ctx.input, %plugin, %reported_input, "set_lasterror: {}", escape(&last.message));
                match last.plugin.as_deref() {
                    Some(id) => ctx.stats.plugin(id).set_last_error(last.message),
                    None => ctx.stats.set_last_error(last.message),
                }
            }
            WorkerFrame::Hello(hello) => {
                forward(std::mem::take(&mut pending));
                if events.blocking_send(Event::Hello(hello)).is_err() {
                    break;
                }
            }
            WorkerFrame::Done(done) => {
                forward(std::mem::take(&mut pending));
                if events.blocking_send(Event::Done(done)).is_err() {
                    break;
                }
            }
            WorkerFrame::Runs(runs) => {
                forward(std::mem::take(&mut pending));
                if events.blocking_send(Event::Runs(runs)).is_err() {
                    break;
                }
            }
            WorkerFrame::Timeout(timed_out) => {
                if events.blocking_send(Event::TimedOut(timed_out)).is_err() {
                    break;
                }
            }
            WorkerFrame::Unknown => {
                tracing::debug!(input = %ctx.input, "frame of an unknown type from worker; ignored");
            }
        }
    }
    forward(pending);
}

/// Logs what the worker writes to fd 1 or 2 (C extensions, subprocesses, raw writes).
/// Reads continuously, so a chatty script never blocks on a full pipe.
async fn drain_output(
    pipe: impl AsyncRead + Unpin,
    input: String,
    stats: Arc<InputStats>,
    stream: &'static str,
) {
    let mut lines = LineReader::new(BufReader::new(pipe), MAX_OUTPUT_LINE);
    let mut limit = RateLimit::new(&input, stream, stats);
    while let Ok(Some(line)) = lines.next_line().await {
        if !limit.allow() {
            continue;
        }
        match line {
            Line::Complete(bytes) => {
                let text = crate::log_text::escape_bytes(&bytes);
                if stream == "stderr" {
                    tracing::warn!(input = %input, plugin = "-", stream, "{text}");
                } else {
                    tracing::info!(input = %input, plugin = "-", stream, "{text}");
                }
            }
            Line::TooLong(n) => {
                tracing::warn!(input = %input, plugin = "-", stream, "[a line of {n} bytes, too long to log]")
            }
        }
    }
}

/// Lets through at most [`OUTPUT_LINES_PER_SECOND`] lines a second and says how many
/// it held back (in the log, and counted in the input's stats), so a script printing
/// megabytes cannot flood the agent's log.
struct RateLimit {
    input: String,
    what: &'static str,
    stats: Arc<InputStats>,
    window_start: Instant,
    in_window: u32,
    suppressed: u64,
}

impl RateLimit {
    fn new(input: &str, what: &'static str, stats: Arc<InputStats>) -> Self {
        Self {
            input: input.to_string(),
            what,
            stats,
            window_start: Instant::now(),
            in_window: 0,
            suppressed: 0,
        }
    }

    fn allow(&mut self) -> bool {
        if self.window_start.elapsed() >= Duration::from_secs(1) {
            if self.suppressed > 0 {
                tracing::warn!(input = %self.input, "{} lines of {} not logged (over {OUTPUT_LINES_PER_SECOND}/s)", self.suppressed, self.what);
            }
            self.window_start = Instant::now();
            self.in_window = 0;
            self.suppressed = 0;
        }
        self.in_window += 1;
        if self.in_window > OUTPUT_LINES_PER_SECOND {
            self.suppressed += 1;
            self.stats.add_log_lines_suppressed(1);
            false
        } else {
            true
        }
    }
}
