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

use tokio::io::{AsyncRead, AsyncWriteExt, BufReader};
use tokio::net::unix::OwnedWriteHalf;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::lines::{Line, LineReader};
use super::process::{SpawnError, WorkerProcess, WorkerSpec};
use super::protocol::{Command, Done, Hello, WorkerFrame};
use crate::ingest::{Ingest, InputTags, Origin};
use crate::stats::InputStats;

/// Longest line of raw worker output (fd 1 and 2) logged as one line.
const MAX_OUTPUT_LINE: usize = 16 * 1024;
/// Lines of worker output logged per second per stream; the rest are counted.
const OUTPUT_LINES_PER_SECOND: u32 = 200;

/// What the owner of a session must decide about.
#[derive(Debug)]
pub enum Event {
    Hello(Hello),
    Done(Done),
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
    writer: OwnedWriteHalf,
    events: mpsc::Receiver<Event>,
    tasks: Vec<JoinHandle<()>>,
}

impl Session {
    /// Starts the worker and its listeners.
    pub fn start(spec: &WorkerSpec, ctx: Arc<SessionContext>) -> Result<Self, SpawnError> {
        let spawned = WorkerProcess::spawn(spec)?;
        let process = spawned.process;
        let (events_tx, events) = mpsc::channel(64);
        let mut tasks = Vec::new();
        if let Some(stdout) = spawned.stdout {
            tasks.push(tokio::spawn(drain_output(
                stdout,
                ctx.input.clone(),
                "stdout",
            )));
        }
        if let Some(stderr) = spawned.stderr {
            tasks.push(tokio::spawn(drain_output(
                stderr,
                ctx.input.clone(),
                "stderr",
            )));
        }
        let (reader, writer) = spawned.channel.into_split();
        tasks.push(tokio::spawn(read_channel(
            reader,
            spec.max_frame,
            ctx,
            events_tx,
        )));
        Ok(Self {
            process,
            writer,
            events,
            tasks,
        })
    }

    pub fn pid(&self) -> u32 {
        self.process.pid
    }

    /// The next lifecycle event; `None` once the worker closed its channel (it exited).
    /// Cancel-safe.
    pub async fn next_event(&mut self) -> Option<Event> {
        self.events.recv().await
    }

    /// Waits for the worker's `hello`; `None` if it exited first. No run has been
    /// sent before the handshake, so nothing else can arrive meanwhile.
    pub async fn hello(&mut self) -> Option<Hello> {
        loop {
            match self.next_event().await? {
                Event::Hello(hello) => return Some(hello),
                Event::Done(_) => continue,
            }
        }
    }

    /// Sends a command. An error means the worker is gone.
    pub async fn send(&mut self, command: &Command<'_>) -> std::io::Result<()> {
        self.writer.write_all(&command.to_line()).await
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
        for task in self.tasks {
            // The drains end when the pipes close; do not let a grandchild that still
            // holds a pipe open keep us here.
            if tokio::time::timeout(Duration::from_secs(2), task)
                .await
                .is_err()
            {
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
async fn read_channel(
    reader: tokio::net::unix::OwnedReadHalf,
    max_frame: usize,
    ctx: Arc<SessionContext>,
    events: mpsc::Sender<Event>,
) {
    let mut lines = LineReader::new(BufReader::with_capacity(64 * 1024, reader), max_frame);
    let mut plugin_log = RateLimit::new(&ctx.input, "plugin output");
    loop {
        let line = match lines.next_line().await {
            Ok(Some(Line::Complete(line))) => line,
            Ok(Some(Line::TooLong(n))) => {
                tracing::error!(input = %ctx.input, bytes = n, limit = max_frame, "frame from worker exceeds the frame limit; dropped");
                ctx.stats.set_last_error(format!(
                    "frame of {n} bytes exceeds the {max_frame}-byte limit"
                ));
                continue;
            }
            Ok(None) => return,
            Err(error) => {
                tracing::error!(input = %ctx.input, %error, "reading the worker channel failed");
                return;
            }
        };
        let frame: WorkerFrame = match serde_json::from_slice(&line) {
            Ok(frame) => frame,
            Err(error) => {
                let preview = String::from_utf8_lossy(&line[..line.len().min(200)]).into_owned();
                tracing::error!(input = %ctx.input, %error, frame = %preview, "bad frame from worker; ignored");
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
                ctx.ingest.report(&origin, report).await;
            }
            WorkerFrame::Log(log) => {
                if plugin_log.allow() {
                    let plugin = log.plugin.as_deref().unwrap_or("-");
                    if log.stream == "stderr" {
                        tracing::warn!(input = %ctx.input, plugin, stream = "stderr", "{}", log.line);
                    } else {
                        tracing::info!(input = %ctx.input, plugin, stream = "stdout", "{}", log.line);
                    }
                }
            }
            WorkerFrame::Lasterror(last) => {
                let plugin = last.plugin.as_deref().unwrap_or("-");
                tracing::warn!(input = %ctx.input, plugin, reported_input = last.input.as_deref().unwrap_or(""), "set_lasterror: {}", last.message);
                match last.plugin.as_deref() {
                    Some(id) => ctx.stats.plugin(id).set_last_error(last.message),
                    None => ctx.stats.set_last_error(last.message),
                }
            }
            WorkerFrame::Hello(hello) => {
                if events.send(Event::Hello(hello)).await.is_err() {
                    return;
                }
            }
            WorkerFrame::Done(done) => {
                if events.send(Event::Done(done)).await.is_err() {
                    return;
                }
            }
            WorkerFrame::Unknown => {
                tracing::debug!(input = %ctx.input, "frame of an unknown type from worker; ignored");
            }
        }
    }
}

/// Logs what the worker writes to fd 1 or 2 (C extensions, subprocesses, raw writes).
/// Reads continuously, so a chatty script never blocks on a full pipe.
async fn drain_output(pipe: impl AsyncRead + Unpin, input: String, stream: &'static str) {
    let mut lines = LineReader::new(BufReader::new(pipe), MAX_OUTPUT_LINE);
    let mut limit = RateLimit::new(&input, stream);
    while let Ok(Some(line)) = lines.next_line().await {
        if !limit.allow() {
            continue;
        }
        match line {
            Line::Complete(bytes) => {
                let text = String::from_utf8_lossy(&bytes);
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
/// it held back, so a script printing megabytes cannot flood the agent's log.
struct RateLimit {
    input: String,
    what: &'static str,
    window_start: Instant,
    in_window: u32,
    suppressed: u64,
}

impl RateLimit {
    fn new(input: &str, what: &'static str) -> Self {
        Self {
            input: input.to_string(),
            what,
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
            false
        } else {
            true
        }
    }
}
