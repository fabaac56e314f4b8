//! Supervision facts, each logged, counted and reported from one place.
//!
//! A worker started, became ready, died, was restarted, recycled or killed after a
//! hang; a run started, failed, recovered, timed out or was skipped; a plugin (or a
//! pooled instance) was quarantined and came back. Each such fact is one variant of
//! [`InternalEvent`], and [`InternalEvent::emit`] is the only code that writes its log
//! line (text from the worker escaped, docs/OPERATIONS.md "Logs"), bumps its counters
//! in [`InputStats`] (what `/v1/status` and `/metrics` show) and, for inputs with
//! `emit_events = true`, sends the keyevent of a failure or recovery
//! (docs/COLLECTORS.md, [`crate::events`]). The state machine ([`super::machine`])
//! and the drivers only say *which* fact happened.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use crate::events::{self, FailureEvents, FailureKind};
use crate::log_dedupe::{Failure, RepeatedFailures};
use crate::log_text::escape;
use crate::schedule::HANGS_BEFORE_QUARANTINE;
use crate::stats::{InputStats, PluginState};
use crate::worker::protocol::LoadError;
use crate::worker::SessionContext;

/// The target of every supervision log line, whichever module writes it: the one
/// operators know from the log (docs/OPERATIONS.md, "A collector hangs") and filter
/// on (`RUST_LOG=pythond::supervisor=debug`).
pub const LOG_TARGET: &str = "pythond::supervisor";

/// What becomes of a plugin whose run timed out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AfterTimeout {
    /// Plain inputs: the worker's process group is killed and the worker restarted.
    RestartWorker { hangs_in_a_row: u32 },
    /// Pooled inputs: the thread is abandoned; the next run gets a fresh object.
    FreshObject { hangs_in_a_row: u32 },
    /// It hung [`HANGS_BEFORE_QUARANTINE`] times in a row: not run for `cooloff`.
    Quarantine { cooloff: Duration },
}

/// Who timed a finished run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RunClock {
    /// The agent sent `run` and timed it (plain inputs).
    Agent,
    /// The worker's pool ran it on its own schedule and says how long it took.
    Worker(Duration),
}

/// One supervision fact about an input's worker or one of its plugins. `plugin` is a
/// plugin id, or `<plugin id>@<instance>` for inputs with `instances`.
#[derive(Clone, Debug, PartialEq)]
pub enum InternalEvent {
    WorkerStarted {
        pid: u32,
    },
    /// The worker process could not be started at all.
    WorkerStartFailed {
        error: String,
        retry_in: Duration,
    },
    /// What a fresh worker could not import, and whether it found any plugin.
    CollectorsLoaded {
        /// `(module, error)` of each file or module that failed to load.
        errors: Vec<(String, String)>,
        plugins: usize,
        dirs: Vec<String>,
    },
    /// A `[inputs.pythond.plugins.<key>]` table names no plugin the worker has.
    UnmatchedOverride {
        key: String,
        plugins: Vec<String>,
    },
    PluginDisabled {
        plugin: String,
    },
    /// A worker of a plain input said `hello`; its plugins are scheduled.
    WorkerReady {
        pid: u32,
        python: String,
        plugins: Vec<String>,
    },
    /// A pooled worker said `hello` and got its instances.
    PoolReady {
        pid: u32,
        python: String,
        plugins: usize,
        instances: usize,
        disabled: usize,
        concurrency: u32,
    },
    /// A reload changed the instances of a running pooled worker.
    InstancesUpdated {
        instances: usize,
        removed: usize,
        disabled: usize,
    },
    /// `run` was sent; `skipped` due times passed unused before it.
    RunStarted {
        plugin: String,
        skipped: u64,
    },
    RunSucceeded {
        plugin: String,
        run: u64,
        seconds: f64,
        clock: RunClock,
    },
    RunFailed {
        plugin: String,
        run: u64,
        message: String,
        traceback: String,
        clock: RunClock,
    },
    /// A run passed its timeout (`message` says which and how long it ran).
    RunTimedOut {
        plugin: String,
        message: String,
        then: AfterTimeout,
        /// The worker's pool ran it (the agent did not count it when it started).
        pooled: bool,
    },
    /// Follows a [`InternalEvent::RunTimedOut`] whose `then` is a quarantine.
    Quarantined {
        plugin: String,
        message: String,
        cooloff: Duration,
    },
    QuarantineOver {
        plugin: String,
    },
    /// Due times passed while the previous run was still going. `quietly`: counted
    /// only (a pooled worker's record, or the ones before a run that did start).
    RunsSkipped {
        plugin: String,
        skipped: u64,
        quietly: bool,
    },
    /// A `done` that is not about the plugin's current run.
    AnswerIgnored {
        plugin: String,
        run: u64,
        known: bool,
    },
    /// The worker stopped on shutdown.
    WorkerStopped {
        how: String,
    },
    /// The worker was stopped gracefully to be replaced (`max_age`, `max_rss`,
    /// abandoned threads).
    WorkerRecycled {
        how: String,
        why: String,
    },
    /// The worker's process group was killed after a hang; it restarts at once.
    WorkerKilled {
        how: String,
    },
    /// The worker died on its own (or broke the protocol); it restarts after
    /// `retry_in`.
    WorkerDied {
        how: String,
        why: String,
        retry_in: Duration,
    },
    /// `isolation = "plugin"`: the worker listing the plugins failed.
    DiscoveryFailed {
        why: String,
        retry_in: Duration,
    },
}

/// Where events of one supervised worker go: its log name, stats and keyevents, and
/// the bookkeeping that keeps repeats out of the log and the event stream.
pub struct Reporter {
    /// The worker's name in logs and status (`<input>/<plugin id>` under
    /// `isolation = "plugin"`).
    name: String,
    ctx: Arc<SessionContext>,
    emit_events: bool,
    /// Open failures per plugin, for `emit_events` (kept across worker restarts).
    failures: Mutex<FailureEvents>,
    /// Each plugin's last run error, so a repeat is counted rather than logged in
    /// full ([`crate::log_dedupe`]).
    repeats: Mutex<RepeatedFailures>,
}

/// A collector's load errors as [`InternalEvent::CollectorsLoaded`] wants them.
pub fn load_errors(errors: &[LoadError]) -> Vec<(String, String)> {
    errors
        .iter()
        .map(|e| {
            (
                e.module.clone().unwrap_or_else(|| "-".to_string()),
                e.to_string(),
            )
        })
        .collect()
}

impl Reporter {
    pub fn new(name: String, ctx: Arc<SessionContext>, emit_events: bool) -> Self {
        Self {
            name,
            ctx,
            emit_events,
            failures: Mutex::new(FailureEvents::default()),
            repeats: Mutex::new(RepeatedFailures::default()),
        }
    }

    pub fn stats(&self) -> &InputStats {
        &self.ctx.stats
    }

    fn failures(&self) -> MutexGuard<'_, FailureEvents> {
        // Plain data; a panic elsewhere cannot leave it inconsistent.
        self.failures.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn repeats(&self) -> MutexGuard<'_, RepeatedFailures> {
        self.repeats.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Sends a failure's keyevent if it is news (none of this kind is open).
    async fn failed(&self, plugin: &str, kind: FailureKind, message: &str) {
        let news = self.failures().failed(plugin, kind);
        if news {
            self.keyevent(plugin, kind, false, message).await;
        }
    }

    /// Reports a failure or recovery of `plugin` as a keyevent when the input has
    /// `emit_events = true`; through [`crate::ingest::Ingest`], like the plugin's points.
    async fn keyevent(&self, plugin: &str, kind: FailureKind, recovered: bool, message: &str) {
        if !self.emit_events {
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
        tracing::info!(target: LOG_TARGET,
            input = %input,
            plugin = %escape(plugin),
            kind = ?kind,
            recovered,
            accepted = outcome.accepted,
            "collector event emitted"
        );
    }
}

impl InternalEvent {
    /// Logs, counts and reports this fact.
    pub async fn emit(self, to: &Reporter) {
        let input = to.name.as_str();
        let stats = to.stats();
        match self {
            InternalEvent::WorkerStarted { pid } => {
                stats.set_worker_pid(pid);
                tracing::debug!(target: LOG_TARGET, input = %input, pid, "worker started");
            }
            InternalEvent::WorkerStartFailed { error, retry_in } => {
                tracing::error!(target: LOG_TARGET, input = %input, error = %escape(&error), ?retry_in, "cannot start worker");
                stats.set_last_error(error);
            }
            InternalEvent::CollectorsLoaded {
                errors,
                plugins,
                dirs,
            } => {
                for (module, error) in &errors {
                    tracing::error!(target: LOG_TARGET, input = %input, module = %escape(module), "cannot load collector: {}", escape(error));
                }
                stats.set_load_errors(errors.into_iter().map(|(_, error)| error).collect());
                if plugins == 0 {
                    tracing::warn!(target: LOG_TARGET, input = %input, ?dirs, "no DataKitFramework subclasses found");
                }
            }
            InternalEvent::UnmatchedOverride { key, plugins } => {
                tracing::warn!(target: LOG_TARGET, input = %input, plugin = %key, ?plugins, "[inputs.pythond.plugins.{key}] matches no plugin of this input (use a plugin's name or id)");
            }
            InternalEvent::PluginDisabled { plugin } => {
                stats.plugin(&plugin).set_state(PluginState::Disabled);
                tracing::info!(target: LOG_TARGET, input = %input, plugin = %escape(&plugin), "plugin disabled by configuration; not run");
            }
            InternalEvent::WorkerReady {
                pid,
                python,
                plugins,
            } => {
                tracing::info!(target: LOG_TARGET, input = %input, pid, python = %escape(&python), ?plugins, "worker ready");
            }
            InternalEvent::PoolReady {
                pid,
                python,
                plugins,
                instances,
                disabled,
                concurrency,
            } => {
                tracing::info!(target: LOG_TARGET,
                    input = %input,
                    pid,
                    python = %escape(&python),
                    plugins,
                    instances,
                    disabled,
                    concurrency,
                    "worker ready; instances handed to its pool"
                );
            }
            InternalEvent::InstancesUpdated {
                instances,
                removed,
                disabled,
            } => {
                tracing::info!(target: LOG_TARGET, input = %input, instances, removed, disabled, "instances updated in the running worker");
            }
            InternalEvent::RunStarted { plugin, skipped } => {
                let stats = stats.plugin(&plugin);
                if skipped > 0 {
                    stats.add_skipped(skipped);
                }
                stats.run_started();
            }
            InternalEvent::RunSucceeded {
                plugin,
                run,
                seconds,
                clock,
            } => {
                match clock {
                    RunClock::Agent => stats.plugin(&plugin).run_succeeded(),
                    RunClock::Worker(took) => stats.plugin(&plugin).run_finished(took, None),
                }
                let shown = escape(&plugin);
                tracing::debug!(target: LOG_TARGET, input = %input, plugin = %shown, run, seconds, "run finished");
                let ended = to.repeats().succeeded(&plugin);
                if let Some(failed) = ended {
                    tracing::info!(target: LOG_TARGET, input = %input, plugin = %shown, run, "run succeeded after {failed} failed run(s) in a row");
                }
                let recovered = to.failures().succeeded(&plugin);
                for kind in recovered {
                    to.keyevent(&plugin, kind, true, "a run finished successfully")
                        .await;
                }
            }
            InternalEvent::RunFailed {
                plugin,
                run,
                message,
                traceback,
                clock,
            } => {
                let error_text = format!("{message}\n{traceback}");
                let seen = to.repeats().failed(&plugin, &error_text);
                let shown = escape(&plugin);
                match seen {
                    Failure::New { after: 0 } => {
                        tracing::warn!(target: LOG_TARGET, input = %input, plugin = %shown, run, traceback = %escape(&traceback), "run failed: {}", escape(&message))
                    }
                    Failure::New { after } => {
                        tracing::warn!(target: LOG_TARGET, input = %input, plugin = %shown, run, traceback = %escape(&traceback), "run failed with a new error (the previous one repeated {after} more time(s)): {}", escape(&message))
                    }
                    Failure::Repeat { count } => {
                        tracing::debug!(target: LOG_TARGET, input = %input, plugin = %shown, run, repeats = count, "run failed again with the same error: {}", escape(&message))
                    }
                }
                let text = if traceback.is_empty() {
                    message.clone()
                } else {
                    error_text
                };
                to.failed(&plugin, FailureKind::Exception, &text).await;
                match clock {
                    RunClock::Agent => stats.plugin(&plugin).run_failed(message),
                    RunClock::Worker(took) => {
                        stats.plugin(&plugin).run_finished(took, Some(message))
                    }
                }
            }
            InternalEvent::RunTimedOut {
                plugin,
                message,
                then,
                pooled,
            } => {
                let plugin_stats = stats.plugin(&plugin);
                if pooled {
                    // A plain run was counted when `run` was sent; a pooled one here.
                    plugin_stats.add_run();
                }
                plugin_stats.timed_out(message.clone());
                let shown = escape(&plugin);
                let logged = escape(&message);
                match then {
                    AfterTimeout::RestartWorker { hangs_in_a_row } => {
                        tracing::error!(target: LOG_TARGET, input = %input, plugin = %shown, hangs_in_a_row, "{logged}; killing the worker's process group and restarting it");
                    }
                    AfterTimeout::FreshObject { hangs_in_a_row } => {
                        tracing::error!(target: LOG_TARGET, input = %input, plugin = %shown, hangs_in_a_row, "{logged}; the next run gets a fresh object");
                    }
                    AfterTimeout::Quarantine { cooloff } => {
                        tracing::error!(target: LOG_TARGET, input = %input, plugin = %shown, ?cooloff, "{logged}; it hung {HANGS_BEFORE_QUARANTINE} times in a row and is quarantined");
                    }
                }
                to.failed(&plugin, FailureKind::Timeout, &message).await;
            }
            InternalEvent::Quarantined {
                plugin,
                message,
                cooloff,
            } => {
                stats.plugin(&plugin).quarantined();
                let text = format!("{message}; it hung {HANGS_BEFORE_QUARANTINE} times in a row and is not run for {cooloff:?}");
                to.failed(&plugin, FailureKind::Quarantine, &text).await;
            }
            InternalEvent::QuarantineOver { plugin } => {
                tracing::info!(target: LOG_TARGET, input = %input, plugin = %escape(&plugin), "quarantine over; running again");
                stats.plugin(&plugin).set_state(PluginState::Idle);
            }
            InternalEvent::RunsSkipped {
                plugin,
                skipped,
                quietly,
            } => {
                stats.plugin(&plugin).add_skipped(skipped);
                if !quietly {
                    tracing::warn!(target: LOG_TARGET, input = %input, plugin = %escape(&plugin), skipped, "run skipped: the previous run is still going");
                }
            }
            InternalEvent::AnswerIgnored { plugin, run, known } => {
                if known {
                    tracing::debug!(target: LOG_TARGET, input = %input, plugin = %escape(&plugin), run, "stale `done`; ignored");
                } else {
                    tracing::warn!(target: LOG_TARGET, input = %input, plugin = %escape(&plugin), "`done` for an unknown plugin; ignored");
                }
            }
            InternalEvent::WorkerStopped { how } => {
                stats.set_worker_pid(0);
                tracing::info!(target: LOG_TARGET, input = %input, "worker stopped ({how})");
            }
            InternalEvent::WorkerRecycled { how, why } => {
                stats.set_worker_pid(0);
                stats.add_recycle();
                tracing::info!(target: LOG_TARGET, input = %input, "worker recycled ({how}): {why}; starting a fresh one");
            }
            InternalEvent::WorkerKilled { how } => {
                stats.set_worker_pid(0);
                stats.add_restart();
                tracing::warn!(target: LOG_TARGET, input = %input, "worker killed after a hang ({how}); restarting");
            }
            InternalEvent::WorkerDied { how, why, retry_in } => {
                stats.set_worker_pid(0);
                stats.add_restart();
                tracing::error!(target: LOG_TARGET, input = %input, ?retry_in, "worker {how}: {}; restarting", escape(&why));
                stats.set_last_error(format!("worker {how}: {why}"));
            }
            InternalEvent::DiscoveryFailed { why, retry_in } => {
                stats.add_restart();
                tracing::error!(target: LOG_TARGET, input = %input, ?retry_in, "discovery worker: {}; retrying", escape(&why));
                stats.set_last_error(format!("discovery worker: {why}"));
            }
        }
    }
}
