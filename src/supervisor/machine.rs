//! What the supervisor of one worker decides, as a pure state machine.
//!
//! [`WorkerMachine`] holds every supervision rule of docs/OPERATIONS.md
//! ("Supervision"): restart a dead worker after a capped, jittered backoff that resets
//! after a healthy run ([`HEALTHY_AFTER`]); kill the process group of a worker whose
//! run hung and restart it at once; quarantine a plugin (or a pooled instance) after
//! [`HANGS_BEFORE_QUARANTINE`] hangs in a row; recycle the worker on `max_age` /
//! `max_rss` only while no timed run is in flight, and when a pooled worker's abandoned
//! threads pass their bound; stop gracefully on shutdown. It is fed [`Event`]s (the
//! worker started, said `hello`, answered, died; time passed; shutdown was asked) and
//! answers with [`Action`]s (spawn, send, kill, finish, wait, and the
//! [`InternalEvent`]s to report). Time is passed in: the machine never reads a clock,
//! sleeps or touches a process, so the rules are unit-tested exactly, without Python
//! (the instants are `tokio::time::Instant` only so that they compare with
//! [`crate::schedule`]'s). The drivers in [`super::single`] and [`super::isolated`]
//! carry the actions out against a real worker.
//!
//! States, as in watchexec's supervisor: `Starting` (a spawn was asked for),
//! `WaitingHello`, `Running`, `Stopping` (told to stop or killed; waiting for the
//! process to be reaped), `Backoff` (waiting to restart), `Stopped`, and `Discovered`
//! for the worker that only lists an input's plugins (`isolation = "plugin"`).

use std::collections::HashMap;
use std::time::Duration;

use tokio::time::Instant;

use super::backoff::Backoff;
use super::internal_events::{AfterTimeout, InternalEvent, RunClock};
use crate::schedule::{
    quarantine_cooloff, Due, HangVerdict, Phase, PluginSchedule, Timing, HANGS_BEFORE_QUARANTINE,
};
use crate::stats::InputState;
use crate::worker::protocol::{instance_key, Done, RunRecord, TimedOut, PROTOCOL_VERSION};

/// How long a worker may take to import its plugins and say `hello`.
pub const HELLO_TIMEOUT: Duration = Duration::from_secs(60);
/// A worker that ran this long without dying resets the restart backoff.
pub const HEALTHY_AFTER: Duration = Duration::from_secs(60);
/// First runs are spread over this much time (or one interval, if shorter).
const MAX_FIRST_RUN_JITTER: Duration = Duration::from_secs(1);
/// Grace of the discovery worker's `shutdown`, and how long it gets to exit.
const DISCOVERY_EXIT: Duration = Duration::from_secs(1);

/// What the worker is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// The agent schedules each plugin's runs (`run` per run).
    Plain,
    /// The worker's pool runs the input's instances (src/supervisor/pooled.rs).
    Pooled,
    /// Lists the input's plugins (`--discover`) and stops: `isolation = "plugin"`.
    Discover,
}

/// The input's limits that the machine enforces.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Policy {
    /// The `grace` a worker's `shutdown` gives its plugins.
    pub grace: Duration,
    pub max_age: Option<Duration>,
    pub max_rss: Option<u64>,
    /// Pooled inputs: abandoned threads a worker may hold before it is recycled.
    pub abandoned_bound: u64,
}

/// Why a worker session failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum WorkerFailure {
    #[error("it exited before loading its plugins (see its output above)")]
    ExitedBeforeHello,
    #[error("it did not finish loading its plugins within {0:?}")]
    HelloTimeout(Duration),
    #[error("worker speaks protocol v{worker}, the agent v{PROTOCOL_VERSION}")]
    Protocol { worker: u32 },
    #[error("cannot send `{command}`: {error}")]
    Send {
        command: &'static str,
        error: String,
    },
    /// The worker went away while running (its process exited, its channel closed).
    #[error("{0}")]
    Gone(String),
}

/// Why a session is ending.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum End {
    /// Shutdown was asked for.
    Shutdown,
    /// A run hung; the worker's group is killed on purpose.
    Hung,
    /// The worker failed on its own.
    Died(WorkerFailure),
    /// `max_age`, `max_rss` or abandoned threads: replaced by a fresh worker.
    Recycled(String),
    /// The discovery worker said `hello`.
    Discovered,
}

/// Where the supervised worker is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum State {
    Starting,
    WaitingHello { deadline: Instant },
    Running,
    Stopping(End),
    Backoff { until: Instant, delay: Duration },
    Stopped,
    Discovered,
}

/// A plugin of a fresh worker, as the configuration makes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PluginPlan {
    pub id: String,
    pub timing: Timing,
    pub enabled: bool,
}

/// What the driver tells the machine.
#[derive(Debug)]
pub enum Event {
    /// The worker process is up.
    Spawned {
        at: Instant,
        pid: u32,
    },
    /// The worker process could not be started.
    SpawnFailed {
        at: Instant,
        error: String,
    },
    /// The worker said `hello` (`plugins`: for plain inputs; empty otherwise).
    Hello {
        at: Instant,
        version: u32,
        plugins: Vec<PluginPlan>,
    },
    /// The worker went away on its own; `reason` says how.
    Exited {
        reason: String,
    },
    /// A command could not be written: the worker is gone or stopped reading.
    SendFailed {
        command: &'static str,
        error: String,
    },
    /// A plain worker answered a run.
    Done(Done),
    /// A pooled worker finished a run of a current instance.
    PoolRun(RunRecord),
    /// A pooled run passed its timeout; `interval` is its instance's.
    PoolTimedOut {
        timed_out: TimedOut,
        interval: Duration,
    },
    /// Time to check `max_age` / `max_rss`; `rss`: the worker's, when measured.
    RecycleCheck {
        at: Instant,
        rss: Option<u64>,
    },
    ShutdownAsked,
    /// The worker process was reaped; `how` describes its exit.
    Finished {
        at: Instant,
        how: String,
    },
    /// Time passed (the driver slept until [`WorkerMachine::next_wakeup`]).
    Tick(Instant),
}

/// What the driver must do, in order.
#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    /// Start a worker process; answer [`Event::Spawned`] or [`Event::SpawnFailed`].
    Spawn,
    /// The worker is ready: register its plugins, or hand a pooled worker its
    /// instances.
    Ready,
    /// Send `run`.
    SendRun { plugin: String, run: u64 },
    /// Send `pause` for a quarantined pooled instance.
    Pause {
        plugin: String,
        instance: String,
        cooloff: Duration,
    },
    /// Send `shutdown` with this grace.
    SendShutdown { grace: Duration },
    /// SIGKILL the worker's process group.
    Kill,
    /// Wait up to `grace` for the worker to exit, kill what is left, reap it; answer
    /// [`Event::Finished`].
    Finish { grace: Duration },
    /// Wait this long (or for shutdown), then answer [`Event::Tick`].
    WaitRestart(Duration),
    /// Report a supervision fact.
    Emit(InternalEvent),
    /// Supervision is over (stopped, or the plugins were discovered).
    Stop,
}

/// Consecutive hangs of one pooled (plugin, instance).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct InstanceHealth {
    hangs_in_a_row: u32,
}

/// What a pooled timeout leads to. The worker is never restarted for it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PooledHang {
    /// The instance runs again at its next due time (with a fresh object).
    Retry { hangs_in_a_row: u32 },
    /// The instance rests for `cooloff`.
    Quarantine { cooloff: Duration },
}

impl InstanceHealth {
    /// A run timed out. [`HANGS_BEFORE_QUARANTINE`] in a row quarantine; after the
    /// cool-off one more hang quarantines again (as for plugins, src/schedule.rs).
    pub fn timed_out(&mut self, interval: Duration) -> PooledHang {
        self.hangs_in_a_row += 1;
        if self.hangs_in_a_row >= HANGS_BEFORE_QUARANTINE {
            self.hangs_in_a_row = HANGS_BEFORE_QUARANTINE - 1;
            PooledHang::Quarantine {
                cooloff: quarantine_cooloff(interval),
            }
        } else {
            PooledHang::Retry {
                hangs_in_a_row: self.hangs_in_a_row,
            }
        }
    }
}

/// The supervision of one worker slot, across every restart of its worker.
#[derive(Debug)]
pub struct WorkerMachine {
    mode: Mode,
    policy: Policy,
    state: State,
    backoff: Backoff,
    rng: fastrand::Rng,
    /// When the current worker was spawned.
    spawned: Option<Instant>,
    /// Shutdown came while a session was ending for another reason.
    shutdown_asked: bool,
    /// Plain inputs: each plugin's schedule (kept across worker restarts).
    schedules: HashMap<String, PluginSchedule>,
    /// Pooled inputs: each (plugin, instance)'s hang record.
    health: HashMap<String, InstanceHealth>,
}

impl WorkerMachine {
    pub fn new(mode: Mode, policy: Policy) -> Self {
        Self::with_rng(mode, policy, fastrand::Rng::new())
    }

    /// A machine whose jitter (first runs, backoff) comes from `rng`.
    pub fn with_rng(mode: Mode, policy: Policy, mut rng: fastrand::Rng) -> Self {
        Self {
            mode,
            policy,
            state: State::Starting,
            backoff: Backoff::with_rng(rng.fork()),
            rng,
            spawned: None,
            shutdown_asked: false,
            schedules: HashMap::new(),
            health: HashMap::new(),
        }
    }

    pub fn state(&self) -> &State {
        &self.state
    }

    /// The first action: start the worker.
    pub fn start(&mut self) -> Vec<Action> {
        self.state = State::Starting;
        vec![Action::Spawn]
    }

    /// What `/v1/status` should show for the input now; `None`: leave it as it is.
    pub fn input_state(&self) -> Option<InputState> {
        match &self.state {
            State::Starting | State::WaitingHello { .. } => Some(InputState::Starting),
            State::Running => Some(InputState::Running),
            State::Stopping(End::Shutdown | End::Recycled(_)) if self.mode != Mode::Discover => {
                Some(InputState::Stopping)
            }
            State::Stopping(_) | State::Discovered => None,
            State::Backoff { delay, .. } => Some(InputState::Backoff {
                retry_in_ms: delay.as_millis() as u64,
            }),
            State::Stopped => Some(InputState::Stopped),
        }
    }

    /// When the driver must feed [`Event::Tick`] at the latest, if ever.
    pub fn next_wakeup(&self) -> Option<Instant> {
        match &self.state {
            State::WaitingHello { deadline } => Some(*deadline),
            State::Backoff { until, .. } => Some(*until),
            State::Running => self
                .schedules
                .values()
                .map(PluginSchedule::next_wakeup)
                .min(),
            _ => None,
        }
    }

    /// True while `max_age` / `max_rss` are to be checked ([`Event::RecycleCheck`]).
    pub fn checks_recycling(&self) -> bool {
        self.state == State::Running
            && (self.policy.max_age.is_some() || self.policy.max_rss.is_some())
    }

    /// True if `plugin` is quarantined (plain inputs).
    pub fn is_quarantined(&self, plugin: &str) -> bool {
        self.schedules
            .get(plugin)
            .is_some_and(|s| matches!(s.phase(), Phase::Quarantined { .. }))
    }

    /// Feeds one event; returns what to do, in order.
    pub fn handle(&mut self, event: Event) -> Vec<Action> {
        match event {
            Event::Spawned { at, pid } => self.spawned(at, pid),
            Event::SpawnFailed { at, error } => self.spawn_failed(at, error),
            Event::Hello {
                at,
                version,
                plugins,
            } => self.hello(at, version, plugins),
            Event::Exited { reason } => match self.state {
                State::WaitingHello { .. } => self.fail(WorkerFailure::ExitedBeforeHello),
                State::Running => self.fail(WorkerFailure::Gone(reason)),
                _ => Vec::new(),
            },
            Event::SendFailed { command, error } => match self.state {
                State::WaitingHello { .. } | State::Running => {
                    self.fail(WorkerFailure::Send { command, error })
                }
                _ => Vec::new(),
            },
            Event::Done(done) => self.done(done),
            Event::PoolRun(record) => self.pool_run(record),
            Event::PoolTimedOut {
                timed_out,
                interval,
            } => self.pool_timed_out(timed_out, interval),
            Event::RecycleCheck { at, rss } => self.recycle_check(at, rss),
            Event::ShutdownAsked => self.shutdown(),
            Event::Finished { at, how } => self.finished(at, how),
            Event::Tick(now) => self.tick(now),
        }
    }

    fn spawned(&mut self, at: Instant, pid: u32) -> Vec<Action> {
        if self.state != State::Starting {
            return Vec::new();
        }
        self.spawned = Some(at);
        self.state = State::WaitingHello {
            deadline: at + HELLO_TIMEOUT,
        };
        if self.mode == Mode::Discover {
            return Vec::new();
        }
        vec![Action::Emit(InternalEvent::WorkerStarted { pid })]
    }

    fn spawn_failed(&mut self, at: Instant, error: String) -> Vec<Action> {
        if self.state != State::Starting {
            return Vec::new();
        }
        let delay = self.backoff.next_delay();
        self.state = State::Backoff {
            until: at + delay,
            delay,
        };
        let event = match self.mode {
            Mode::Discover => InternalEvent::DiscoveryFailed {
                why: error,
                retry_in: delay,
            },
            Mode::Plain | Mode::Pooled => InternalEvent::WorkerStartFailed {
                error,
                retry_in: delay,
            },
        };
        vec![Action::Emit(event), Action::WaitRestart(delay)]
    }

    fn hello(&mut self, at: Instant, version: u32, plugins: Vec<PluginPlan>) -> Vec<Action> {
        if !matches!(self.state, State::WaitingHello { .. }) {
            return Vec::new();
        }
        if version != PROTOCOL_VERSION {
            return self.fail(WorkerFailure::Protocol { worker: version });
        }
        match self.mode {
            Mode::Discover => self.end(End::Discovered),
            Mode::Pooled => {
                self.state = State::Running;
                vec![Action::Ready]
            }
            Mode::Plain => {
                self.adopt(at, plugins);
                self.state = State::Running;
                vec![Action::Ready]
            }
        }
    }

    /// Schedules the plugins of a fresh worker: new ones with a jittered first run,
    /// known ones on their old schedule; gone and disabled ones dropped.
    fn adopt(&mut self, now: Instant, plugins: Vec<PluginPlan>) {
        self.schedules
            .retain(|id, _| plugins.iter().any(|p| p.id == *id && p.enabled));
        for plan in plugins.into_iter().filter(|p| p.enabled) {
            let jitter = MAX_FIRST_RUN_JITTER
                .min(plan.timing.interval)
                .mul_f64(self.rng.f64());
            let schedule = self
                .schedules
                .entry(plan.id)
                .or_insert_with(|| PluginSchedule::new(plan.timing, now + jitter));
            schedule.retime(plan.timing);
            schedule.resume(now);
        }
    }

    /// The session failed: reap the worker (a discovery worker is told to stop first).
    fn fail(&mut self, failure: WorkerFailure) -> Vec<Action> {
        self.end(End::Died(failure))
    }

    /// Ends the session for `end`: the commands that stop the worker, then
    /// [`Action::Finish`].
    fn end(&mut self, end: End) -> Vec<Action> {
        let grace = self.policy.grace;
        let actions = match (&end, self.mode) {
            (_, Mode::Discover) => vec![
                Action::SendShutdown {
                    grace: Duration::ZERO,
                },
                Action::Finish {
                    grace: DISCOVERY_EXIT,
                },
            ],
            (End::Shutdown, _) if !matches!(self.state, State::Running) => vec![
                Action::SendShutdown {
                    grace: Duration::ZERO,
                },
                Action::Finish {
                    grace: grace + Duration::from_secs(1),
                },
            ],
            (End::Shutdown | End::Recycled(_), _) => vec![
                Action::SendShutdown { grace },
                Action::Finish {
                    grace: grace + Duration::from_secs(1),
                },
            ],
            (End::Hung, _) => vec![
                Action::Kill,
                Action::Finish {
                    grace: Duration::ZERO,
                },
            ],
            (End::Died(_) | End::Discovered, _) => vec![Action::Finish {
                grace: Duration::ZERO,
            }],
        };
        self.state = State::Stopping(end);
        actions
    }

    fn shutdown(&mut self) -> Vec<Action> {
        match self.state {
            State::Starting | State::Backoff { .. } => {
                self.state = State::Stopped;
                vec![Action::Stop]
            }
            State::WaitingHello { .. } | State::Running => self.end(End::Shutdown),
            State::Stopping(_) => {
                self.shutdown_asked = true;
                Vec::new()
            }
            State::Stopped | State::Discovered => Vec::new(),
        }
    }

    fn finished(&mut self, at: Instant, how: String) -> Vec<Action> {
        let State::Stopping(end) = std::mem::replace(&mut self.state, State::Starting) else {
            return Vec::new();
        };
        let ran = self.spawned.take().map_or(Duration::ZERO, |spawned| {
            at.saturating_duration_since(spawned)
        });
        let mut actions = Vec::new();
        match (end, self.mode) {
            (End::Shutdown, mode) => {
                if mode != Mode::Discover {
                    actions.push(Action::Emit(InternalEvent::WorkerStopped { how }));
                }
                self.state = State::Stopped;
                actions.push(Action::Stop);
                return actions;
            }
            (End::Discovered, _) => {
                self.state = State::Discovered;
                return vec![Action::Stop];
            }
            (End::Recycled(why), _) => {
                actions.push(Action::Emit(InternalEvent::WorkerRecycled { how, why }));
                actions.push(Action::Spawn);
            }
            (End::Hung, _) => {
                actions.push(Action::Emit(InternalEvent::WorkerKilled { how }));
                actions.push(Action::Spawn);
            }
            (End::Died(failure), mode) => {
                if ran >= HEALTHY_AFTER {
                    self.backoff.reset();
                }
                let delay = self.backoff.next_delay();
                let why = failure.to_string();
                actions.push(Action::Emit(match mode {
                    Mode::Discover => InternalEvent::DiscoveryFailed {
                        why,
                        retry_in: delay,
                    },
                    Mode::Plain | Mode::Pooled => InternalEvent::WorkerDied {
                        how,
                        why,
                        retry_in: delay,
                    },
                }));
                self.state = State::Backoff {
                    until: at + delay,
                    delay,
                };
                actions.push(Action::WaitRestart(delay));
            }
        }
        if self.shutdown_asked {
            // Shutdown came while the worker was being stopped: no restart.
            actions.retain(|a| matches!(a, Action::Emit(_)));
            self.state = State::Stopped;
            actions.push(Action::Stop);
        }
        actions
    }

    fn tick(&mut self, now: Instant) -> Vec<Action> {
        match self.state {
            State::Backoff { until, .. } if now >= until => self.start(),
            State::WaitingHello { deadline } if now >= deadline => {
                self.fail(WorkerFailure::HelloTimeout(HELLO_TIMEOUT))
            }
            State::Running if self.mode == Mode::Plain => self.plain_tick(now),
            _ => Vec::new(),
        }
    }

    /// Timeouts first (they end the session), then due runs.
    fn plain_tick(&mut self, now: Instant) -> Vec<Action> {
        let mut ids: Vec<String> = self.schedules.keys().cloned().collect();
        ids.sort();
        let mut actions = Vec::new();
        for id in &ids {
            let Some(schedule) = self.schedules.get_mut(id) else {
                continue;
            };
            let Some((run, ran)) = schedule.overdue(now) else {
                continue;
            };
            let timeout = schedule.timing().timeout.unwrap_or_default();
            let message =
                format!("run {run} did not finish within its timeout of {timeout:?} (ran {ran:?})");
            let then = match schedule.hung(now) {
                HangVerdict::Retry { hangs_in_a_row } => {
                    AfterTimeout::RestartWorker { hangs_in_a_row }
                }
                HangVerdict::Quarantine { until } => AfterTimeout::Quarantine {
                    cooloff: until - now,
                },
            };
            actions.extend(timeout_events(id.clone(), message, then, false));
        }
        if !actions.is_empty() {
            actions.extend(self.end(End::Hung));
            return actions;
        }
        let mut starts = Vec::new();
        for id in ids {
            let Some(schedule) = self.schedules.get_mut(&id) else {
                continue;
            };
            let was_quarantined = matches!(schedule.phase(), Phase::Quarantined { .. });
            let due = schedule.due(now);
            if was_quarantined && !matches!(schedule.phase(), Phase::Quarantined { .. }) {
                actions.push(Action::Emit(InternalEvent::QuarantineOver {
                    plugin: id.clone(),
                }));
            }
            match due {
                Some(Due::Start { run, skipped }) => {
                    starts.push(Action::Emit(InternalEvent::RunStarted {
                        plugin: id.clone(),
                        skipped,
                    }));
                    starts.push(Action::SendRun { plugin: id, run });
                }
                Some(Due::Skipped(n)) => actions.push(Action::Emit(InternalEvent::RunsSkipped {
                    plugin: id,
                    skipped: n,
                    quietly: false,
                })),
                None => {}
            }
        }
        actions.extend(starts);
        actions
    }

    fn done(&mut self, done: Done) -> Vec<Action> {
        if self.state != State::Running {
            return Vec::new();
        }
        let Some(schedule) = self.schedules.get_mut(&done.plugin) else {
            return vec![Action::Emit(InternalEvent::AnswerIgnored {
                plugin: done.plugin,
                run: done.run,
                known: false,
            })];
        };
        if !schedule.finished(done.run) {
            return vec![Action::Emit(InternalEvent::AnswerIgnored {
                plugin: done.plugin,
                run: done.run,
                known: true,
            })];
        }
        let event = if done.ok {
            InternalEvent::RunSucceeded {
                plugin: done.plugin,
                run: done.run,
                seconds: done.seconds,
                clock: RunClock::Agent,
            }
        } else {
            let message = done
                .error
                .as_ref()
                .map_or_else(|| "failed".to_string(), ToString::to_string);
            let traceback = done.error.and_then(|e| e.traceback).unwrap_or_default();
            InternalEvent::RunFailed {
                plugin: done.plugin,
                run: done.run,
                message,
                traceback,
                clock: RunClock::Agent,
            }
        };
        vec![Action::Emit(event)]
    }

    fn pool_run(&mut self, record: RunRecord) -> Vec<Action> {
        let key = instance_key(&record.plugin, &record.instance);
        // A run in time clears the hang record; none is kept for the instances that do
        // not hang (10,000 of them, docs/BENCHMARKS.md, "Agent memory per instance").
        self.health.remove(&key);
        let mut actions = Vec::new();
        if record.skipped > 0 {
            actions.push(Action::Emit(InternalEvent::RunsSkipped {
                plugin: key.clone(),
                skipped: record.skipped,
                quietly: true,
            }));
        }
        let clock =
            RunClock::Worker(Duration::try_from_secs_f64(record.seconds).unwrap_or_default());
        actions.push(Action::Emit(match record.error {
            None => InternalEvent::RunSucceeded {
                plugin: key,
                run: record.run,
                seconds: record.seconds,
                clock,
            },
            Some(error) => InternalEvent::RunFailed {
                plugin: key,
                run: record.run,
                message: error.to_string(),
                traceback: error.traceback.unwrap_or_default(),
                clock,
            },
        }));
        actions
    }

    /// A pooled run timed out: counted, maybe quarantined (`pause`); the worker goes
    /// on, unless abandoned threads passed their bound (then it is recycled).
    fn pool_timed_out(&mut self, timed_out: TimedOut, interval: Duration) -> Vec<Action> {
        if self.state != State::Running {
            return Vec::new();
        }
        let key = instance_key(&timed_out.plugin, &timed_out.instance);
        let message = format!(
            "run {} did not finish within its timeout (ran {:.3} s); its thread was abandoned",
            timed_out.run, timed_out.ran
        );
        let then = match self
            .health
            .entry(key.clone())
            .or_default()
            .timed_out(interval)
        {
            PooledHang::Retry { hangs_in_a_row } => AfterTimeout::FreshObject { hangs_in_a_row },
            PooledHang::Quarantine { cooloff } => AfterTimeout::Quarantine { cooloff },
        };
        let mut actions = timeout_events(key, message, then.clone(), true);
        if let AfterTimeout::Quarantine { cooloff } = then {
            actions.push(Action::Pause {
                plugin: timed_out.plugin,
                instance: timed_out.instance,
                cooloff,
            });
        }
        let bound = self.policy.abandoned_bound;
        if timed_out.abandoned > bound {
            actions.extend(self.end(End::Recycled(format!(
                "{} abandoned run threads (more than concurrency = {bound})",
                timed_out.abandoned
            ))));
        }
        actions
    }

    /// Recycles the worker if `max_age` or `max_rss` is reached and no timed run is in
    /// flight (`long_running` plugins are always "running"; they get `request_exit`
    /// from the worker's graceful shutdown).
    fn recycle_check(&mut self, at: Instant, rss: Option<u64>) -> Vec<Action> {
        if !self.checks_recycling() {
            return Vec::new();
        }
        let busy = self
            .schedules
            .values()
            .any(|s| matches!(s.phase(), Phase::Running { .. }) && s.timing().timeout.is_some());
        if busy {
            return Vec::new();
        }
        let age = self.spawned.map_or(Duration::ZERO, |spawned| {
            at.saturating_duration_since(spawned)
        });
        let why = match (self.policy.max_age, self.policy.max_rss, rss) {
            (Some(max), _, _) if age >= max => format!("it ran longer than max_age ({max:?})"),
            (_, Some(max), Some(rss)) if rss > max => {
                format!("its resident memory, {rss} bytes, exceeds max_rss ({max} bytes)")
            }
            _ => return Vec::new(),
        };
        self.end(End::Recycled(why))
    }
}

/// The events of a run that passed its timeout: [`InternalEvent::RunTimedOut`], and
/// [`InternalEvent::Quarantined`] when that is what follows.
fn timeout_events(
    plugin: String,
    message: String,
    then: AfterTimeout,
    pooled: bool,
) -> Vec<Action> {
    let quarantine = match then {
        AfterTimeout::Quarantine { cooloff } => Some(InternalEvent::Quarantined {
            plugin: plugin.clone(),
            message: message.clone(),
            cooloff,
        }),
        _ => None,
    };
    let mut actions = vec![Action::Emit(InternalEvent::RunTimedOut {
        plugin,
        message,
        then,
        pooled,
    })];
    actions.extend(quarantine.map(Action::Emit));
    actions
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::worker::protocol::RunError;

    const S: Duration = Duration::from_secs(1);

    fn machine(mode: Mode, policy: Policy) -> WorkerMachine {
        WorkerMachine::with_rng(mode, policy, fastrand::Rng::with_seed(7))
    }

    fn policy() -> Policy {
        Policy {
            grace: 5 * S,
            ..Policy::default()
        }
    }

    fn plan(id: &str, interval: u32, timeout: Option<u32>) -> PluginPlan {
        PluginPlan {
            id: id.to_string(),
            timing: Timing {
                interval: S * interval,
                timeout: timeout.map(|t| S * t),
            },
            enabled: true,
        }
    }

    fn done(plugin: &str, run: u64, ok: bool) -> Done {
        Done {
            plugin: plugin.to_string(),
            run,
            ok,
            seconds: 0.1,
            error: (!ok).then(|| RunError {
                kind: "ValueError".to_string(),
                message: "boom".to_string(),
                file: None,
                line: None,
                traceback: None,
            }),
        }
    }

    fn emitted(actions: &[Action]) -> Vec<&InternalEvent> {
        actions
            .iter()
            .filter_map(|a| match a {
                Action::Emit(e) => Some(e),
                _ => None,
            })
            .collect()
    }

    fn worker_actions(actions: &[Action]) -> Vec<&Action> {
        actions
            .iter()
            .filter(|a| !matches!(a, Action::Emit(_)))
            .collect()
    }

    /// Starts a worker at `at` and takes its hello.
    fn up(m: &mut WorkerMachine, at: Instant, plugins: Vec<PluginPlan>) {
        assert_eq!(m.start(), [Action::Spawn]);
        m.handle(Event::Spawned { at, pid: 42 });
        let actions = m.handle(Event::Hello {
            at,
            version: PROTOCOL_VERSION,
            plugins,
        });
        assert_eq!(actions, [Action::Ready]);
        assert_eq!(m.state(), &State::Running);
    }

    /// A fresh machine whose first spawn fails; returns the failure's actions.
    fn failed_first_spawn(m: &mut WorkerMachine, at: Instant) -> Vec<Action> {
        m.start();
        m.handle(Event::SpawnFailed {
            at,
            error: "interpreter `nope` not found".to_string(),
        })
    }

    /// The worker dies at `at`; returns the restart delay.
    fn die(m: &mut WorkerMachine, at: Instant) -> Duration {
        let actions = m.handle(Event::Exited {
            reason: "its process exited".to_string(),
        });
        assert_eq!(
            actions,
            [Action::Finish {
                grace: Duration::ZERO
            }]
        );
        let actions = m.handle(Event::Finished {
            at,
            how: "exited with status 1".to_string(),
        });
        let Some(Action::WaitRestart(delay)) = actions.last() else {
            panic!("{actions:?}");
        };
        assert!(matches!(
            emitted(&actions)[..],
            [InternalEvent::WorkerDied { .. }]
        ));
        assert!(matches!(m.state(), State::Backoff { .. }));
        assert_eq!(
            m.input_state(),
            Some(InputState::Backoff {
                retry_in_ms: delay.as_millis() as u64
            })
        );
        *delay
    }

    #[test]
    fn backoff_grows_while_the_worker_keeps_dying_and_resets_after_a_healthy_run() {
        let mut m = machine(Mode::Plain, policy());
        let mut now = Instant::now();
        let mut delays = Vec::new();
        for _ in 0..4 {
            up(&mut m, now, vec![]);
            now += S;
            let delay = die(&mut m, now);
            delays.push(delay);
            now += delay;
            assert_eq!(
                m.handle(Event::Tick(now - S / 2)),
                [],
                "not before its time"
            );
            assert_eq!(m.handle(Event::Tick(now)), [Action::Spawn]);
        }
        for pair in delays.windows(2) {
            assert!(pair[1] > pair[0], "{delays:?}");
        }
        assert!(delays[3] >= 6 * S, "{delays:?}");
        // This one stays up for longer than HEALTHY_AFTER: the backoff starts over.
        m.handle(Event::Spawned { at: now, pid: 43 });
        m.handle(Event::Hello {
            at: now,
            version: PROTOCOL_VERSION,
            plugins: vec![],
        });
        let delay = die(&mut m, now + HEALTHY_AFTER);
        assert!(delay <= S * 5 / 4, "{delay:?}");
    }

    #[test]
    fn a_failed_spawn_waits_and_retries() {
        let mut m = machine(Mode::Plain, policy());
        let now = Instant::now();
        let actions = failed_first_spawn(&mut m, now);
        let [Action::Emit(InternalEvent::WorkerStartFailed { retry_in, .. }), Action::WaitRestart(delay)] =
            &actions[..]
        else {
            panic!("{actions:?}");
        };
        assert_eq!(retry_in, delay);
        assert_eq!(m.handle(Event::Tick(now + *delay)), [Action::Spawn]);
    }

    #[test]
    fn a_hung_run_kills_the_worker_and_it_restarts_at_once() {
        let mut m = machine(Mode::Plain, policy());
        let t0 = Instant::now();
        up(&mut m, t0, vec![plan("m.P", 10, Some(3))]);
        let first = m.next_wakeup().expect("a first run");
        assert!(first <= t0 + S);
        let actions = m.handle(Event::Tick(first));
        assert_eq!(
            worker_actions(&actions),
            [&Action::SendRun {
                plugin: "m.P".to_string(),
                run: 1
            }]
        );
        assert_eq!(m.next_wakeup(), Some(first + 3 * S), "wakes at the timeout");
        let actions = m.handle(Event::Tick(first + 3 * S));
        assert!(matches!(
            emitted(&actions)[..],
            [InternalEvent::RunTimedOut {
                then: AfterTimeout::RestartWorker { hangs_in_a_row: 1 },
                pooled: false,
                ..
            }]
        ));
        assert_eq!(
            worker_actions(&actions),
            [
                &Action::Kill,
                &Action::Finish {
                    grace: Duration::ZERO
                }
            ]
        );
        let actions = m.handle(Event::Finished {
            at: first + 3 * S,
            how: "killed by signal 9".to_string(),
        });
        assert!(matches!(
            emitted(&actions)[..],
            [InternalEvent::WorkerKilled { .. }]
        ));
        assert_eq!(worker_actions(&actions), [&Action::Spawn], "no backoff");
    }

    #[test]
    fn three_hangs_in_a_row_quarantine_the_plugin_for_its_cooloff() {
        let mut m = machine(Mode::Plain, policy());
        let mut now = Instant::now();
        let mut quarantined = None;
        for hang in 1..=HANGS_BEFORE_QUARANTINE {
            up(&mut m, now, vec![plan("m.P", 1, Some(1))]);
            now = m.next_wakeup().expect("due");
            let actions = m.handle(Event::Tick(now));
            assert!(actions.contains(&Action::SendRun {
                plugin: "m.P".to_string(),
                run: u64::from(hang)
            }));
            now += S;
            let actions = m.handle(Event::Tick(now));
            let events = emitted(&actions);
            if hang < HANGS_BEFORE_QUARANTINE {
                assert_eq!(events.len(), 1, "{events:?}");
            } else {
                let [InternalEvent::RunTimedOut {
                    then: AfterTimeout::Quarantine { cooloff },
                    ..
                }, InternalEvent::Quarantined { .. }] = events[..]
                else {
                    panic!("{events:?}");
                };
                quarantined = Some(*cooloff);
            }
            m.handle(Event::Finished {
                at: now,
                how: "killed by signal 9".to_string(),
            });
        }
        let cooloff = quarantined.expect("quarantined");
        assert_eq!(cooloff, quarantine_cooloff(S));
        // The fresh worker does not run it until the cool-off is over.
        up(&mut m, now, vec![plan("m.P", 1, Some(1))]);
        assert!(m.is_quarantined("m.P"));
        assert_eq!(m.next_wakeup(), Some(now + cooloff));
        assert_eq!(m.handle(Event::Tick(now + cooloff - S)), []);
        let actions = m.handle(Event::Tick(now + cooloff));
        assert!(matches!(
            emitted(&actions)[..],
            [
                InternalEvent::QuarantineOver { .. },
                InternalEvent::RunStarted { .. }
            ]
        ));
        assert!(!m.is_quarantined("m.P"));
    }

    #[test]
    fn recycling_waits_for_the_timed_run_in_flight() {
        let mut m = machine(
            Mode::Plain,
            Policy {
                max_age: Some(10 * S),
                ..policy()
            },
        );
        let t0 = Instant::now();
        up(&mut m, t0, vec![plan("m.P", 60, Some(30))]);
        let first = m.next_wakeup().expect("due");
        m.handle(Event::Tick(first));
        let late = t0 + 20 * S;
        assert_eq!(
            m.handle(Event::RecycleCheck {
                at: late,
                rss: None
            }),
            [],
            "a timed run is in flight"
        );
        m.handle(Event::Done(done("m.P", 1, true)));
        assert_eq!(
            m.handle(Event::RecycleCheck {
                at: late,
                rss: None
            }),
            [
                Action::SendShutdown { grace: 5 * S },
                Action::Finish { grace: 6 * S }
            ]
        );
        assert_eq!(m.input_state(), Some(InputState::Stopping));
        let actions = m.handle(Event::Finished {
            at: late,
            how: "exited with status 0".to_string(),
        });
        assert!(matches!(
            emitted(&actions)[..],
            [InternalEvent::WorkerRecycled { .. }]
        ));
        assert_eq!(worker_actions(&actions), [&Action::Spawn]);
    }

    #[test]
    fn max_rss_recycles_a_worker_that_grew() {
        let mut m = machine(
            Mode::Pooled,
            Policy {
                max_rss: Some(1000),
                ..policy()
            },
        );
        let t0 = Instant::now();
        up(&mut m, t0, vec![]);
        let check = |m: &mut WorkerMachine, rss| m.handle(Event::RecycleCheck { at: t0, rss });
        assert_eq!(check(&mut m, Some(1000)), []);
        assert_eq!(check(&mut m, Some(1001)).len(), 2);
        assert!(
            matches!(m.state(), State::Stopping(End::Recycled(why)) if why.contains("1001 bytes"))
        );
    }

    #[test]
    fn shutdown_during_backoff_stops_without_a_restart() {
        let mut m = machine(Mode::Plain, policy());
        let now = Instant::now();
        up(&mut m, now, vec![]);
        die(&mut m, now);
        assert_eq!(m.handle(Event::ShutdownAsked), [Action::Stop]);
        assert_eq!(m.state(), &State::Stopped);
        assert_eq!(m.input_state(), Some(InputState::Stopped));
        assert_eq!(m.handle(Event::Tick(now + 3600 * S)), []);
    }

    #[test]
    fn shutdown_stops_a_running_worker_gracefully() {
        let mut m = machine(Mode::Plain, policy());
        let now = Instant::now();
        up(&mut m, now, vec![]);
        assert_eq!(
            m.handle(Event::ShutdownAsked),
            [
                Action::SendShutdown { grace: 5 * S },
                Action::Finish { grace: 6 * S }
            ]
        );
        let actions = m.handle(Event::Finished {
            at: now,
            how: "exited with status 0".to_string(),
        });
        assert!(matches!(
            actions[..],
            [
                Action::Emit(InternalEvent::WorkerStopped { .. }),
                Action::Stop
            ]
        ));
    }

    #[test]
    fn shutdown_while_a_hung_worker_is_killed_does_not_restart_it() {
        let mut m = machine(Mode::Plain, policy());
        let t0 = Instant::now();
        up(&mut m, t0, vec![plan("m.P", 10, Some(1))]);
        let first = m.next_wakeup().expect("due");
        m.handle(Event::Tick(first));
        m.handle(Event::Tick(first + S));
        assert_eq!(m.handle(Event::ShutdownAsked), []);
        let actions = m.handle(Event::Finished {
            at: first + S,
            how: "killed by signal 9".to_string(),
        });
        assert_eq!(actions.last(), Some(&Action::Stop));
        assert!(!actions.contains(&Action::Spawn));
    }

    #[test]
    fn a_worker_that_never_says_hello_is_restarted_with_backoff() {
        let mut m = machine(Mode::Plain, policy());
        let t0 = Instant::now();
        m.start();
        m.handle(Event::Spawned { at: t0, pid: 1 });
        assert_eq!(m.next_wakeup(), Some(t0 + HELLO_TIMEOUT));
        assert_eq!(
            m.handle(Event::Tick(t0 + HELLO_TIMEOUT)),
            [Action::Finish {
                grace: Duration::ZERO
            }]
        );
        assert_eq!(
            m.state(),
            &State::Stopping(End::Died(WorkerFailure::HelloTimeout(HELLO_TIMEOUT)))
        );
        let actions = m.handle(Event::Finished {
            at: t0 + HELLO_TIMEOUT,
            how: "killed by signal 9".to_string(),
        });
        assert!(matches!(actions.last(), Some(Action::WaitRestart(_))));
    }

    #[test]
    fn a_worker_of_another_protocol_version_is_refused() {
        let mut m = machine(Mode::Plain, policy());
        let t0 = Instant::now();
        m.start();
        m.handle(Event::Spawned { at: t0, pid: 1 });
        m.handle(Event::Hello {
            at: t0,
            version: PROTOCOL_VERSION + 1,
            plugins: vec![],
        });
        let State::Stopping(End::Died(failure)) = m.state() else {
            panic!("{:?}", m.state());
        };
        assert!(failure.to_string().contains("protocol v"), "{failure}");
    }

    #[test]
    fn discovery_failures_are_retried_with_backoff_until_hello() {
        let mut m = machine(Mode::Discover, policy());
        let mut now = Instant::now();
        // The interpreter is missing at first.
        let actions = failed_first_spawn(&mut m, now);
        let [Action::Emit(InternalEvent::DiscoveryFailed { retry_in, .. }), Action::WaitRestart(_)] =
            &actions[..]
        else {
            panic!("{actions:?}");
        };
        now += *retry_in;
        assert_eq!(m.handle(Event::Tick(now)), [Action::Spawn]);
        // Then the worker exits before its hello: told to stop, reaped, retried.
        assert_eq!(m.handle(Event::Spawned { at: now, pid: 2 }), []);
        let stop = [
            Action::SendShutdown {
                grace: Duration::ZERO,
            },
            Action::Finish {
                grace: DISCOVERY_EXIT,
            },
        ];
        assert_eq!(
            m.handle(Event::Exited {
                reason: String::new()
            }),
            stop
        );
        let actions = m.handle(Event::Finished {
            at: now,
            how: "exited with status 1".to_string(),
        });
        let [Action::Emit(InternalEvent::DiscoveryFailed { why, retry_in }), Action::WaitRestart(_)] =
            &actions[..]
        else {
            panic!("{actions:?}");
        };
        assert_eq!(why, &WorkerFailure::ExitedBeforeHello.to_string());
        now += *retry_in;
        assert_eq!(m.handle(Event::Tick(now)), [Action::Spawn]);
        m.handle(Event::Spawned { at: now, pid: 3 });
        assert_eq!(
            m.handle(Event::Hello {
                at: now,
                version: PROTOCOL_VERSION,
                plugins: vec![]
            }),
            stop
        );
        assert_eq!(
            m.handle(Event::Finished {
                at: now,
                how: "exited with status 0".to_string()
            }),
            [Action::Stop]
        );
        assert_eq!(m.state(), &State::Discovered);
    }

    #[test]
    fn pooled_hangs_quarantine_the_instance_and_abandoned_threads_recycle_the_worker() {
        let mut m = machine(
            Mode::Pooled,
            Policy {
                abandoned_bound: 4,
                ..policy()
            },
        );
        up(&mut m, Instant::now(), vec![]);
        let timeout = |run, abandoned| Event::PoolTimedOut {
            timed_out: TimedOut {
                plugin: "m.P".to_string(),
                instance: "a".to_string(),
                run,
                ran: 1.5,
                abandoned,
            },
            interval: S,
        };
        for run in 1..HANGS_BEFORE_QUARANTINE {
            let actions = m.handle(timeout(u64::from(run), u64::from(run)));
            assert!(matches!(
                emitted(&actions)[..],
                [InternalEvent::RunTimedOut {
                    then: AfterTimeout::FreshObject { .. },
                    pooled: true,
                    ..
                }]
            ));
            assert_eq!(
                worker_actions(&actions),
                Vec::<&Action>::new(),
                "the worker goes on"
            );
        }
        let actions = m.handle(timeout(3, 3));
        assert_eq!(
            worker_actions(&actions),
            [&Action::Pause {
                plugin: "m.P".to_string(),
                instance: "a".to_string(),
                cooloff: quarantine_cooloff(S)
            }]
        );
        assert_eq!(m.state(), &State::Running);
        let actions = m.handle(timeout(4, 5));
        assert!(actions.contains(&Action::SendShutdown { grace: 5 * S }));
        assert!(
            matches!(m.state(), State::Stopping(End::Recycled(why)) if why.contains("5 abandoned"))
        );
    }

    #[test]
    fn a_pooled_run_in_time_clears_the_hang_record() {
        let mut health = InstanceHealth::default();
        assert_eq!(health.timed_out(S), PooledHang::Retry { hangs_in_a_row: 1 });
        health = InstanceHealth::default(); // a run in time: the record is dropped
        assert_eq!(health.timed_out(S), PooledHang::Retry { hangs_in_a_row: 1 });
        assert_eq!(health.timed_out(S), PooledHang::Retry { hangs_in_a_row: 2 });
        assert_eq!(
            health.timed_out(S),
            PooledHang::Quarantine {
                cooloff: quarantine_cooloff(S)
            }
        );
        assert!(matches!(health.timed_out(S), PooledHang::Quarantine { .. }));
    }

    #[test]
    fn answers_for_other_runs_are_ignored() {
        let mut m = machine(Mode::Plain, policy());
        let t0 = Instant::now();
        up(&mut m, t0, vec![plan("m.P", 10, Some(5))]);
        let first = m.next_wakeup().expect("due");
        m.handle(Event::Tick(first));
        assert!(matches!(
            emitted(&m.handle(Event::Done(done("m.P", 9, true))))[..],
            [InternalEvent::AnswerIgnored { known: true, .. }]
        ));
        assert!(matches!(
            emitted(&m.handle(Event::Done(done("m.Q", 1, true))))[..],
            [InternalEvent::AnswerIgnored { known: false, .. }]
        ));
        assert!(matches!(
            emitted(&m.handle(Event::Done(done("m.P", 1, false))))[..],
            [InternalEvent::RunFailed { message, .. }] if message == "ValueError: boom"
        ));
    }
}
