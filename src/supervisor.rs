//! One input's worker, kept alive and on schedule.
//!
//! An [`InputSupervisor`] owns a worker process from start to end of the agent (or of
//! the input): it starts it, waits for its `hello`, sends `run` commands as the
//! plugins' schedules say, kills the worker's process group when a run hangs, restarts
//! a worker that died with capped, jittered exponential backoff, and stops it
//! gracefully on shutdown. Every state change is logged and mirrored in [`InputStats`].

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::config::{InputConfig, Isolation};
use crate::events::{self, FailureEvents, FailureKind};
use crate::log_dedupe::{Failure, RepeatedFailures};
use crate::log_text::escape;
use crate::schedule::{Due, HangVerdict, PluginSchedule, Timing};
use crate::stats::{InputState, InputStats, PluginState, Stats};
use crate::worker::launch::Mode;
use crate::worker::protocol::{Command, Done, Hello, PluginInfo, PROTOCOL_VERSION};
use crate::worker::{Event, Launch, Session, SessionContext};

mod pooled;
pub use pooled::{instance_options, instance_timing, plan, PoolState};

/// Interval of a plugin whose class gives none (DataKit would have crashed).
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(10);
/// How long a worker may take to import its plugins and say `hello`.
pub const HELLO_TIMEOUT: Duration = Duration::from_secs(60);
/// First runs are spread over this much time (or one interval, if shorter).
const MAX_FIRST_RUN_JITTER: Duration = Duration::from_secs(1);
/// A worker that ran this long without dying resets the restart backoff.
const HEALTHY_AFTER: Duration = Duration::from_secs(60);

/// Supervises the worker of one input.
pub struct InputSupervisor {
    config: InputConfig,
    /// How its workers start; the process slot in it says which instances are its own.
    launch: Launch,
    ctx: Arc<SessionContext>,
    shutdown: CancellationToken,
    grace: Duration,
    /// Open failures per plugin, for `emit_events` (kept across worker restarts).
    events: Mutex<FailureEvents>,
    /// Each plugin's last run error, so a repeat is counted rather than logged in
    /// full ([`crate::log_dedupe`]).
    repeats: Mutex<RepeatedFailures>,
    /// The agent's stats, where each plugin's worker gets an entry `<input>/<plugin>`
    /// under `isolation = "plugin"` (see [`InputSupervisor::isolated`]).
    isolated: Option<Arc<Stats>>,
    /// New `instances` from a reload, applied inside the running worker
    /// (src/supervisor/pooled.rs); `None` when the input has none.
    updates: Option<tokio::sync::watch::Receiver<Vec<crate::config::InstanceConfig>>>,
}

/// Why a worker's session ended.
enum SessionEnd {
    /// Shutdown was asked for; the worker was told to stop.
    Shutdown,
    /// A run hung; the worker's group was killed on purpose.
    Hung,
    /// The worker exited or broke the protocol on its own.
    Died(String),
    /// `max_rss` or `max_age` was reached between runs; the worker was told to stop.
    Recycled(String),
}

impl InputSupervisor {
    /// `launch` starts the worker with the input's resolved plugin paths.
    pub fn new(
        config: InputConfig,
        launch: Launch,
        ctx: Arc<SessionContext>,
        shutdown: CancellationToken,
        grace: Duration,
    ) -> Self {
        Self {
            config,
            launch,
            ctx,
            shutdown,
            grace,
            events: Mutex::new(FailureEvents::default()),
            repeats: Mutex::new(RepeatedFailures::default()),
            isolated: None,
            updates: None,
        }
    }

    /// Takes an input's new `instances` from `updates` while it runs: a reload that only
    /// changes instances then touches only those, inside the running worker.
    pub fn instance_updates(
        mut self,
        updates: tokio::sync::watch::Receiver<Vec<crate::config::InstanceConfig>>,
    ) -> Self {
        self.updates = Some(updates);
        self
    }

    /// Honours the input's `isolation = "plugin"`: a discovery worker lists the
    /// plugins, then each runs in a worker of its own under its own supervisor, shown
    /// in status as input `<input>/<plugin id>`. No effect with `isolation = "input"`.
    pub fn isolated(mut self, stats: Arc<Stats>) -> Self {
        self.isolated = Some(stats);
        self
    }

    fn stats(&self) -> &InputStats {
        &self.ctx.stats
    }

    /// Runs until shutdown.
    pub async fn run(self) {
        if let Some(delay) = self.config.start_delay {
            tracing::info!(input = %self.config.name, ?delay, "waiting start_delay before starting the worker");
            tokio::select! {
                _ = self.shutdown.cancelled() => {
                    self.stats().set_state(InputState::Stopped);
                    return;
                }
                _ = tokio::time::sleep(delay) => {}
            }
        }
        match self.isolated.clone() {
            Some(stats) if self.config.isolation == Isolation::Plugin => {
                self.run_isolated(stats).await
            }
            _ => self.run_single().await,
        }
    }

    /// `isolation = "plugin"`: discovers the plugins, then supervises one worker per
    /// plugin (`--only <id>`) until shutdown. A hang or crash restarts only its worker.
    async fn run_isolated(self, stats: Arc<Stats>) {
        let input = self.config.name.clone();
        let mut backoff = Backoff::default();
        let hello = loop {
            self.stats().set_state(InputState::Starting);
            match self.discover().await {
                Ok(Some(hello)) => break hello,
                Ok(None) => {
                    self.stats().set_state(InputState::Stopped);
                    return;
                }
                Err(why) => {
                    let delay = backoff.next_delay();
                    self.stats().add_restart();
                    self.stats()
                        .set_last_error(format!("discovery worker: {why}"));
                    tracing::error!(input = %input, retry_in = ?delay, "discovery worker: {why}; retrying");
                    if !self.wait_before_restart(delay).await {
                        self.stats().set_state(InputState::Stopped);
                        return;
                    }
                }
            }
        };
        let load_errors: Vec<String> = hello.errors.iter().map(ToString::to_string).collect();
        for error in &hello.errors {
            tracing::error!(input = %input, module = %escape(error.module.as_deref().unwrap_or("-")), "cannot load collector: {}", escape(&error.to_string()));
        }
        self.stats().set_load_errors(load_errors);
        self.stats().retain_plugins(&[]);
        let ids: Vec<&str> = hello.plugins.iter().map(|p| p.id.as_str()).collect();
        for key in self.config.plugins.keys() {
            if !hello.plugins.iter().any(|p| p.id == *key || p.name == *key) {
                tracing::warn!(input = %input, plugin = %key, plugins = ?ids, "[inputs.pythond.plugins.{key}] matches no plugin of this input (use a plugin's name or id)");
            }
        }
        if hello.plugins.is_empty() {
            tracing::warn!(input = %input, dirs = ?self.config.dirs, "no DataKitFramework subclasses found");
        }
        let mut children = Vec::new();
        for plugin in &hello.plugins {
            let name = format!("{input}/{}", plugin.id);
            // `$PYTHOND_INPUT` stays the input's name: collectors may read it.
            let launch = self.launch.with_mode(Mode::Only(plugin.id.clone()));
            let mut plugin_stats = stats.input(&name);
            if launch.process.is_shared() {
                plugin_stats = plugin_stats.process(launch.process.index(), launch.process.count());
            }
            let ctx = Arc::new(SessionContext {
                input: self.ctx.input.clone(),
                tags: self.ctx.tags.clone(),
                ingest: self.ctx.ingest.clone(),
                stats: plugin_stats,
            });
            // Logs and status name the worker `<input>/<plugin id>`; points and events
            // still belong to the input (`ctx.input`).
            let mut config = self.config.clone();
            config.name = name.clone();
            let mut child =
                InputSupervisor::new(config, launch, ctx, self.shutdown.clone(), self.grace);
            // Instance changes go to every plugin's running worker (docs/RELOAD.md).
            child.updates = self.updates.clone();
            children.push((name, tokio::spawn(child.run_single())));
        }
        self.stats().set_state(InputState::Running);
        tracing::info!(input = %input, workers = children.len(), "one worker per plugin (isolation = \"plugin\")");
        for (name, task) in children {
            if let Err(error) = task.await {
                tracing::error!(input = %name, %error, "plugin supervisor ended abnormally");
            }
            stats.remove_input(&name);
        }
        self.stats().set_state(InputState::Stopped);
    }

    /// Starts a worker with `--discover` (imports, no `init`), returns its `hello`
    /// and stops it. `Ok(None)`: shutdown came first.
    async fn discover(&self) -> Result<Option<Hello>, String> {
        let spec = self.launch.with_mode(Mode::Discover).render();
        let mut session = Session::start(&spec, self.ctx.clone()).map_err(|e| e.to_string())?;
        let hello = tokio::select! {
            _ = self.shutdown.cancelled() => None,
            hello = wait_for_hello(&mut session) => Some(hello),
        };
        let _ = session.send(&Command::Shutdown { grace: 0.0 }).await;
        session.finish(Duration::from_secs(1)).await;
        match hello {
            None => Ok(None),
            Some(Ok(hello)) if hello.v != PROTOCOL_VERSION => Err(format!(
                "worker speaks protocol v{}, the agent v{PROTOCOL_VERSION}",
                hello.v
            )),
            Some(hello) => hello.map(Some),
        }
    }

    /// One worker for the whole input, restarted until shutdown.
    async fn run_single(self) {
        let input = self.config.name.clone();
        let mut backoff = Backoff::default();
        let mut schedules: HashMap<String, PluginSchedule> = HashMap::new();
        let mut pool = PoolState::default();
        let mut updates = self.updates.clone();
        let spec = self.launch.render();
        while !self.shutdown.is_cancelled() {
            self.stats().set_state(InputState::Starting);
            let mut session = match Session::start(&spec, self.ctx.clone()) {
                Ok(session) => session,
                Err(error) => {
                    let delay = backoff.next_delay();
                    tracing::error!(input = %input, %error, retry_in = ?delay, "cannot start worker");
                    self.stats().set_last_error(error.to_string());
                    if !self.wait_before_restart(delay).await {
                        break;
                    }
                    continue;
                }
            };
            let started = Instant::now();
            self.stats().set_worker_pid(session.pid());
            tracing::debug!(input = %input, pid = session.pid(), "worker started");
            let end = if self.config.has_instances() {
                self.drive_instances(&mut session, &mut pool, &mut updates, started)
                    .await
            } else {
                self.drive(&mut session, &mut schedules, started).await
            };
            let grace = match end {
                SessionEnd::Shutdown | SessionEnd::Recycled(_) => {
                    self.grace + Duration::from_secs(1)
                }
                _ => Duration::ZERO,
            };
            let how = session.finish(grace).await;
            self.stats().set_worker_pid(0);
            match end {
                SessionEnd::Shutdown => {
                    tracing::info!(input = %input, "worker stopped ({how})");
                    break;
                }
                SessionEnd::Recycled(why) => {
                    self.stats().add_recycle();
                    tracing::info!(input = %input, "worker recycled ({how}): {why}; starting a fresh one");
                }
                SessionEnd::Hung => {
                    self.stats().add_restart();
                    tracing::warn!(input = %input, "worker killed after a hang ({how}); restarting");
                }
                SessionEnd::Died(why) => {
                    if started.elapsed() >= HEALTHY_AFTER {
                        backoff.reset();
                    }
                    let delay = backoff.next_delay();
                    self.stats().add_restart();
                    self.stats().set_last_error(format!("worker {how}: {why}"));
                    tracing::error!(input = %input, retry_in = ?delay, "worker {how}: {why}; restarting");
                    if !self.wait_before_restart(delay).await {
                        break;
                    }
                }
            }
        }
        self.stats().set_state(InputState::Stopped);
    }

    /// Sleeps for a restart delay; false if shutdown came first.
    async fn wait_before_restart(&self, delay: Duration) -> bool {
        self.stats().set_state(InputState::Backoff {
            retry_in_ms: delay.as_millis() as u64,
        });
        tokio::select! {
            _ = self.shutdown.cancelled() => false,
            _ = tokio::time::sleep(delay) => true,
        }
    }

    /// One worker session: handshake, then the scheduling loop.
    async fn drive(
        &self,
        session: &mut Session,
        schedules: &mut HashMap<String, PluginSchedule>,
        started: Instant,
    ) -> SessionEnd {
        let hello = tokio::select! {
            _ = self.shutdown.cancelled() => {
                let _ = session.send(&Command::Shutdown { grace: 0.0 }).await;
                return SessionEnd::Shutdown;
            }
            hello = wait_for_hello(session) => match hello {
                Ok(hello) => hello,
                Err(why) => return SessionEnd::Died(why),
            },
        };
        if hello.v != PROTOCOL_VERSION {
            return SessionEnd::Died(format!(
                "worker speaks protocol v{}, the agent v{PROTOCOL_VERSION}",
                hello.v
            ));
        }
        self.adopt_plugins(&hello, schedules);

        loop {
            if let Some(why) = self.recycle_reason(session, started, schedules) {
                self.stats().set_state(InputState::Stopping);
                let _ = session
                    .send(&Command::Shutdown {
                        grace: self.grace.as_secs_f64(),
                    })
                    .await;
                return SessionEnd::Recycled(why);
            }
            let wake = schedules
                .values()
                .map(PluginSchedule::next_wakeup)
                .min()
                .unwrap_or_else(|| Instant::now() + Duration::from_secs(3600));
            tokio::select! {
                biased;
                _ = self.shutdown.cancelled() => {
                    self.stats().set_state(InputState::Stopping);
                    let _ = session.send(&Command::Shutdown { grace: self.grace.as_secs_f64() }).await;
                    return SessionEnd::Shutdown;
                }
                event = session.next_event() => match event {
                    Some(Event::Done(done)) => self.on_done(done, schedules).await,
                    Some(Event::Hello(_)) => tracing::warn!(input = %self.config.name, "worker said hello twice; ignored"),
                    Some(Event::Runs(_) | Event::TimedOut(_)) => tracing::debug!(input = %self.config.name, "pool frame from a worker without instances; ignored"),
                    None => return SessionEnd::Died(session.end_reason()),
                },
                _ = tokio::time::sleep_until(wake) => {
                    if let Some(end) = self.on_tick(session, schedules).await {
                        return end;
                    }
                }
            }
        }
    }

    /// One worker session of an input with `instances`: handshake, then the worker's
    /// pool runs the schedule (src/supervisor/pooled.rs).
    async fn drive_instances(
        &self,
        session: &mut Session,
        pool: &mut PoolState,
        updates: &mut Option<tokio::sync::watch::Receiver<Vec<crate::config::InstanceConfig>>>,
        started: Instant,
    ) -> SessionEnd {
        let hello = tokio::select! {
            _ = self.shutdown.cancelled() => {
                let _ = session.send(&Command::Shutdown { grace: 0.0 }).await;
                return SessionEnd::Shutdown;
            }
            hello = wait_for_hello(session) => match hello {
                Ok(hello) => hello,
                Err(why) => return SessionEnd::Died(why),
            },
        };
        if hello.v != PROTOCOL_VERSION {
            return SessionEnd::Died(format!(
                "worker speaks protocol v{}, the agent v{PROTOCOL_VERSION}",
                hello.v
            ));
        }
        self.drive_pooled(session, &hello, pool, updates, started)
            .await
    }

    /// Logs and records what a fresh worker could not load.
    fn record_load_errors(&self, hello: &Hello) {
        let input = &self.config.name;
        let load_errors: Vec<String> = hello.errors.iter().map(ToString::to_string).collect();
        for error in &hello.errors {
            tracing::error!(input = %input, module = %escape(error.module.as_deref().unwrap_or("-")), "cannot load collector: {}", escape(&error.to_string()));
        }
        self.stats().set_load_errors(load_errors);
        if hello.plugins.is_empty() {
            tracing::warn!(input = %input, dirs = ?self.config.dirs, "no DataKitFramework subclasses found");
        }
    }

    /// Registers the plugins a fresh worker reported and logs what failed to load.
    fn adopt_plugins(&self, hello: &Hello, schedules: &mut HashMap<String, PluginSchedule>) {
        let input = &self.config.name;
        self.record_load_errors(hello);
        let now = Instant::now();
        let ids: Vec<&str> = hello.plugins.iter().map(|p| p.id.as_str()).collect();
        schedules.retain(|id, _| ids.contains(&id.as_str()));
        self.stats().retain_plugins(&ids);
        // A plugin's own worker (isolation = "plugin") sees only its plugin; the
        // discovery worker already had all of them.
        let whole_input = self.config.name == self.ctx.input;
        for key in self.config.plugins.keys().filter(|_| whole_input) {
            if !hello.plugins.iter().any(|p| p.id == *key || p.name == *key) {
                tracing::warn!(input = %input, plugin = %key, plugins = ?ids, "[inputs.pythond.plugins.{key}] matches no plugin of this input (use a plugin's name or id)");
            }
        }
        for plugin in &hello.plugins {
            self.stats().plugin(&plugin.id).set_kind(&plugin.kind);
            let enabled = self
                .config
                .plugin_override(&plugin.id, &plugin.name)
                .map_or(true, |o| o.enabled);
            if !enabled {
                schedules.remove(&plugin.id);
                self.stats()
                    .plugin(&plugin.id)
                    .set_state(PluginState::Disabled);
                tracing::info!(input = %input, plugin = %plugin.id, "plugin disabled by configuration; not run");
                continue;
            }
            let timing = plugin_timing(&self.config, plugin);
            let schedule = schedules.entry(plugin.id.clone()).or_insert_with(|| {
                PluginSchedule::new(timing, now + first_run_jitter(timing.interval))
            });
            schedule.retime(timing);
            schedule.resume(now);
            let stats = self.stats().plugin(&plugin.id);
            if !matches!(schedule.phase(), crate::schedule::Phase::Quarantined { .. }) {
                stats.set_state(PluginState::Idle);
            }
        }
        self.stats().set_state(InputState::Running);
        tracing::info!(
            input = %input,
            pid = hello.pid,
            python = %hello.python,
            plugins = ?ids,
            "worker ready"
        );
    }

    async fn on_done(&self, done: Done, schedules: &mut HashMap<String, PluginSchedule>) {
        let input = &self.config.name;
        let Some(schedule) = schedules.get_mut(&done.plugin) else {
            tracing::warn!(input = %input, plugin = %done.plugin, "`done` for an unknown plugin; ignored");
            return;
        };
        if !schedule.finished(done.run) {
            tracing::debug!(input = %input, plugin = %done.plugin, run = done.run, "stale `done`; ignored");
            return;
        }
        let stats = self.stats().plugin(&done.plugin);
        match (done.ok, done.error) {
            (true, _) => {
                stats.run_succeeded();
                tracing::debug!(input = %input, plugin = %done.plugin, run = done.run, seconds = done.seconds, "run finished");
                if let Some(failed) = self.repeats().succeeded(&done.plugin) {
                    tracing::info!(input = %input, plugin = %done.plugin, run = done.run, "run succeeded after {failed} failed run(s) in a row");
                }
                let recovered = self.failure_events().succeeded(&done.plugin);
                for kind in recovered {
                    self.emit(&done.plugin, kind, true, "a run finished successfully")
                        .await;
                }
            }
            (false, error) => {
                let message = error
                    .as_ref()
                    .map(ToString::to_string)
                    .unwrap_or_else(|| "failed".to_string());
                let traceback = error.and_then(|e| e.traceback).unwrap_or_default();
                let error_text = format!("{message}\n{traceback}");
                match self.repeats().failed(&done.plugin, &error_text) {
                    Failure::New { after: 0 } => {
                        tracing::warn!(input = %input, plugin = %escape(&done.plugin), run = done.run, traceback = %escape(&traceback), "run failed: {}", escape(&message))
                    }
                    Failure::New { after } => {
                        tracing::warn!(input = %input, plugin = %escape(&done.plugin), run = done.run, traceback = %escape(&traceback), "run failed with a new error (the previous one repeated {after} more time(s)): {}", escape(&message))
                    }
                    Failure::Repeat { count } => {
                        tracing::debug!(input = %input, plugin = %escape(&done.plugin), run = done.run, repeats = count, "run failed again with the same error: {}", escape(&message))
                    }
                }
                if self
                    .failure_events()
                    .failed(&done.plugin, FailureKind::Exception)
                {
                    let text = if traceback.is_empty() {
                        message.clone()
                    } else {
                        format!("{message}\n{traceback}")
                    };
                    self.emit(&done.plugin, FailureKind::Exception, false, &text)
                        .await;
                }
                stats.run_failed(message);
            }
        }
    }

    /// Timeouts first (they end the session), then due runs.
    async fn on_tick(
        &self,
        session: &mut Session,
        schedules: &mut HashMap<String, PluginSchedule>,
    ) -> Option<SessionEnd> {
        let input = &self.config.name;
        let now = Instant::now();
        let hung: Vec<(String, u64, Duration)> = schedules
            .iter()
            .filter_map(|(id, s)| s.overdue(now).map(|(run, ran)| (id.clone(), run, ran)))
            .collect();
        if !hung.is_empty() {
            for (id, run, ran) in &hung {
                let Some(schedule) = schedules.get_mut(id) else {
                    continue;
                };
                let timeout = schedule.timing().timeout.unwrap_or_default();
                let stats = self.stats().plugin(id);
                let message = format!(
                    "run {run} did not finish within its timeout of {timeout:?} (ran {ran:?})"
                );
                stats.timed_out(message.clone());
                let mut news = Vec::new();
                if self.failure_events().failed(id, FailureKind::Timeout) {
                    news.push((FailureKind::Timeout, message.clone()));
                }
                match schedule.hung(now) {
                    HangVerdict::Retry { hangs_in_a_row } => {
                        tracing::error!(input = %input, plugin = %id, hangs_in_a_row, "{message}; killing the worker's process group and restarting it");
                    }
                    HangVerdict::Quarantine { until } => {
                        stats.quarantined();
                        let cooloff = until - now;
                        tracing::error!(input = %input, plugin = %id, cooloff = ?cooloff, "{message}; it hung {} times in a row and is quarantined", crate::schedule::HANGS_BEFORE_QUARANTINE);
                        if self.failure_events().failed(id, FailureKind::Quarantine) {
                            news.push((
                                FailureKind::Quarantine,
                                format!("{message}; it hung {} times in a row and is not run for {cooloff:?}", crate::schedule::HANGS_BEFORE_QUARANTINE),
                            ));
                        }
                    }
                }
                for (kind, text) in news {
                    self.emit(id, kind, false, &text).await;
                }
            }
            session.kill();
            return Some(SessionEnd::Hung);
        }
        let mut ids: Vec<&String> = schedules.keys().collect();
        ids.sort();
        let mut starts = Vec::new();
        for id in ids.into_iter().cloned().collect::<Vec<_>>() {
            let Some(schedule) = schedules.get_mut(&id) else {
                continue;
            };
            let was_quarantined =
                matches!(schedule.phase(), crate::schedule::Phase::Quarantined { .. });
            let due = schedule.due(now);
            if was_quarantined
                && !matches!(schedule.phase(), crate::schedule::Phase::Quarantined { .. })
            {
                tracing::info!(input = %input, plugin = %id, "quarantine over; running again");
                self.stats().plugin(&id).set_state(PluginState::Idle);
            }
            match due {
                Some(Due::Start { run, skipped }) => starts.push((id, run, skipped)),
                Some(Due::Skipped(n)) => {
                    self.stats().plugin(&id).add_skipped(n);
                    tracing::warn!(input = %input, plugin = %id, skipped = n, "run skipped: the previous run is still going");
                }
                None => {}
            }
        }
        for (id, run, skipped) in starts {
            let stats = self.stats().plugin(&id);
            if skipped > 0 {
                stats.add_skipped(skipped);
            }
            stats.run_started();
            if let Err(error) = session.send(&Command::Run { plugin: &id, run }).await {
                return Some(SessionEnd::Died(format!("cannot send `run`: {error}")));
            }
        }
        None
    }
}

impl InputSupervisor {
    /// Why the worker should be recycled now, if `max_age` or `max_rss` is reached
    /// and no timed run is in flight (`long_running` plugins are always "running";
    /// they get `request_exit` from the worker's graceful shutdown).
    fn recycle_reason(
        &self,
        session: &Session,
        started: Instant,
        schedules: &HashMap<String, PluginSchedule>,
    ) -> Option<String> {
        if self.config.max_rss.is_none() && self.config.max_age.is_none() {
            return None;
        }
        let busy = schedules.values().any(|s| {
            matches!(s.phase(), crate::schedule::Phase::Running { .. })
                && s.timing().timeout.is_some()
        });
        if busy {
            return None;
        }
        if let Some(max) = self.config.max_age {
            if started.elapsed() >= max {
                return Some(format!("it ran longer than max_age ({max:?})"));
            }
        }
        if let Some(max) = self.config.max_rss {
            if let Some(rss) = crate::worker::process::rss_bytes(session.pid()) {
                if rss > max {
                    return Some(format!(
                        "its resident memory, {rss} bytes, exceeds max_rss ({max} bytes)"
                    ));
                }
            }
        }
        None
    }

    fn repeats(&self) -> std::sync::MutexGuard<'_, RepeatedFailures> {
        // Plain bookkeeping; a panic elsewhere cannot leave it inconsistent.
        self.repeats
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn failure_events(&self) -> std::sync::MutexGuard<'_, FailureEvents> {
        // The tracker holds plain data; a panic elsewhere cannot leave it inconsistent.
        self.events
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Reports a failure or recovery of `plugin` as a keyevent when the input has
    /// `emit_events = true`; through [`crate::ingest::Ingest`], like the plugin's points.
    async fn emit(&self, plugin: &str, kind: FailureKind, recovered: bool, message: &str) {
        if !self.config.emit_events {
            return;
        }
        let input = &self.ctx.input;
        let point = events::keyevent(input, plugin, kind, recovered, message);
        let origin = crate::ingest::Origin {
            input,
            plugin,
            tags: &self.ctx.tags,
            plugin_stats: None,
        };
        let outcome = self
            .ctx
            .ingest
            .report(&origin, events::report(plugin, vec![point]))
            .await;
        tracing::info!(
            input = %input,
            plugin = %plugin,
            kind = ?kind,
            recovered,
            accepted = outcome.accepted,
            "collector event emitted"
        );
    }
}

/// Waits for the worker's `hello`, at most [`HELLO_TIMEOUT`].
async fn wait_for_hello(session: &mut Session) -> Result<Hello, String> {
    match tokio::time::timeout(HELLO_TIMEOUT, session.hello()).await {
        Ok(Some(hello)) => Ok(hello),
        Ok(None) => Err("it exited before loading its plugins (see its output above)".to_string()),
        Err(_) => Err(format!(
            "it did not finish loading its plugins within {HELLO_TIMEOUT:?}"
        )),
    }
}

/// The plugin's `[inputs.pythond.plugins.<name>]` `interval`/`timeout` override the
/// input's, which override the class attribute; the default timeout is three
/// intervals; `long_running` plugins have none.
pub fn plugin_timing(config: &InputConfig, plugin: &PluginInfo) -> Timing {
    let class_interval = Duration::try_from_secs_f64(plugin.interval)
        .ok()
        .filter(|d| !d.is_zero())
        .unwrap_or(DEFAULT_INTERVAL);
    let own = config.plugin_override(&plugin.id, &plugin.name);
    let interval = own
        .and_then(|o| o.interval)
        .or(config.interval)
        .unwrap_or(class_interval);
    let timeout = own.and_then(|o| o.timeout).or(config.timeout);
    Timing {
        interval,
        timeout: (!plugin.long_running).then(|| timeout.unwrap_or(interval * 3)),
    }
}

fn first_run_jitter(interval: Duration) -> Duration {
    MAX_FIRST_RUN_JITTER.min(interval).mul_f64(fastrand::f64())
}

/// Capped exponential backoff with jitter: about 1 s, 2 s, 4 s ... up to 60 s.
#[derive(Debug, Default)]
pub struct Backoff {
    attempt: u32,
}

impl Backoff {
    const BASE: Duration = Duration::from_secs(1);
    const CAP: Duration = Duration::from_secs(60);

    pub fn next_delay(&mut self) -> Duration {
        let base = Self::BASE
            .saturating_mul(1u32 << self.attempt.min(6))
            .min(Self::CAP);
        self.attempt = self.attempt.saturating_add(1);
        // ±25 % so that inputs that died together do not restart together.
        base.mul_f64(0.75 + 0.5 * fastrand::f64())
            .clamp(Self::BASE, Self::CAP)
    }

    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

/// Resolves an input's `dirs` against the python directory; a missing entry is an
/// error naming the path that was looked for.
pub fn resolve_dirs(python_dir: &std::path::Path, dirs: &[String]) -> Result<Vec<PathBuf>, String> {
    dirs.iter()
        .map(|entry| {
            let path = std::path::Path::new(entry);
            let resolved = if path.is_absolute() {
                path.to_path_buf()
            } else {
                python_dir.join(path)
            };
            if resolved.exists() {
                Ok(resolved)
            } else {
                Err(format!(
                    "dirs entry `{entry}` not found: {} does not exist",
                    resolved.display()
                ))
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_to_its_cap_and_resets() {
        let mut b = Backoff::default();
        let first = b.next_delay();
        assert!(
            first >= Duration::from_secs(1) && first <= Duration::from_millis(1250),
            "{first:?}"
        );
        for _ in 0..10 {
            b.next_delay();
        }
        let capped = b.next_delay();
        assert!(
            capped >= Duration::from_secs(45) && capped <= Duration::from_secs(60),
            "{capped:?}"
        );
        b.reset();
        assert!(b.next_delay() <= Duration::from_millis(1250));
    }

    #[test]
    fn plugin_overrides_win_over_the_input_and_the_class() {
        let (inputs, _) = crate::config::parse_inputs(
            "[[inputs.pythond]]\nname = \"a\"\ncmd = \"python3\"\ndirs = [\"d\"]\n\
             interval = \"5s\"\ntimeout = \"7s\"\n\
             [inputs.pythond.plugins.fast]\ninterval = \"1s\"\n\
             [inputs.pythond.plugins.\"m.Slow\"]\ntimeout = \"1m\"\n",
            std::path::Path::new("x.conf"),
        )
        .expect("parses");
        let config = &inputs[0];
        let plugin = |id: &str, name: &str| PluginInfo {
            id: id.to_string(),
            name: name.to_string(),
            file: String::new(),
            interval: 30.0,
            long_running: false,
            kind: "datakit".to_string(),
        };
        let fast = plugin_timing(config, &plugin("m.Fast", "fast"));
        assert_eq!(fast.interval, Duration::from_secs(1));
        assert_eq!(fast.timeout, Some(Duration::from_secs(7)));
        let slow = plugin_timing(config, &plugin("m.Slow", "slow"));
        assert_eq!(slow.interval, Duration::from_secs(5));
        assert_eq!(slow.timeout, Some(Duration::from_secs(60)));
        let other = plugin_timing(config, &plugin("m.Other", "other"));
        assert_eq!(other.interval, Duration::from_secs(5));
    }

    #[test]
    fn missing_dirs_entry_names_the_path() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir(dir.path().join("ok")).expect("mkdir");
        assert_eq!(
            resolve_dirs(dir.path(), &["ok".to_string()]).expect("resolves"),
            vec![dir.path().join("ok")]
        );
        let error =
            resolve_dirs(dir.path(), &["ok".to_string(), "nope".to_string()]).expect_err("missing");
        assert!(
            error.contains("`nope`")
                && error.contains(&dir.path().join("nope").display().to_string()),
            "{error}"
        );
    }
}
