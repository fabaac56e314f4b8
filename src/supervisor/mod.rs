//! One input's workers, kept alive and on schedule.
//!
//! An [`InputSupervisor`] owns an input's worker process from start to end of the
//! agent (or of the input): it starts it, waits for its `hello`, sends `run` commands
//! as the plugins' schedules say (or hands a pooled worker its instances), kills the
//! worker's process group when a run hangs, restarts a worker that died with capped,
//! jittered exponential backoff, and stops it gracefully on shutdown
//! (docs/OPERATIONS.md, "Supervision").
//!
//! The parts: [`machine`] decides (a pure state machine, tested without Python),
//! [`internal_events`] logs, counts and reports what happened, [`handle`] is what a
//! driver does to a worker; the drivers are [`single`] (one worker of a plain input),
//! [`pooled`] (the running phase of an input with `instances`) and [`isolated`]
//! (`isolation = "plugin"`: discovery, then one supervisor per plugin).

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::config::{InputConfig, InstanceConfig, Isolation};
use crate::stats::{InputState, InputStats, Stats};
use crate::worker::protocol::PluginInfo;
use crate::worker::{Launch, SessionContext};

pub mod backoff;
pub mod handle;
pub mod internal_events;
mod isolated;
pub mod machine;
mod pooled;
mod single;

pub use backoff::Backoff;
pub use handle::{Processes, WorkerHandle, WorkerStarter};
pub use machine::HELLO_TIMEOUT;
pub use pooled::{instance_options, instance_timing, plan, PoolState};

use crate::schedule::Timing;
use internal_events::{InternalEvent, Reporter, LOG_TARGET};

/// Interval of a plugin whose class gives none (DataKit would have crashed).
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(10);

/// Supervises the worker(s) of one input.
pub struct InputSupervisor<S: WorkerStarter = Processes> {
    config: InputConfig,
    /// How its workers start; the process slot in it says which instances are its own.
    launch: Launch,
    ctx: Arc<SessionContext>,
    shutdown: CancellationToken,
    grace: Duration,
    starter: S,
    /// Where supervision facts go (log, stats, keyevents).
    reporter: Reporter,
    /// The agent's stats, where each plugin's worker gets an entry `<input>/<plugin>`
    /// under `isolation = "plugin"` (see [`InputSupervisor::isolated`]).
    isolated: Option<Arc<Stats>>,
    /// New `instances` from a reload, applied inside the running worker
    /// (src/supervisor/pooled.rs); `None` when the input has none.
    updates: Option<tokio::sync::watch::Receiver<Vec<InstanceConfig>>>,
}

impl InputSupervisor<Processes> {
    /// `launch` starts the worker with the input's resolved plugin paths.
    pub fn new(
        config: InputConfig,
        launch: Launch,
        ctx: Arc<SessionContext>,
        shutdown: CancellationToken,
        grace: Duration,
    ) -> Self {
        Self::with_starter(config, launch, ctx, shutdown, grace, Processes)
    }
}

impl<S: WorkerStarter> InputSupervisor<S> {
    /// Like [`InputSupervisor::new`], with workers started by `starter`.
    pub fn with_starter(
        config: InputConfig,
        launch: Launch,
        ctx: Arc<SessionContext>,
        shutdown: CancellationToken,
        grace: Duration,
        starter: S,
    ) -> Self {
        let reporter = Reporter::new(config.name.clone(), ctx.clone(), config.emit_events);
        Self {
            config,
            launch,
            ctx,
            shutdown,
            grace,
            starter,
            reporter,
            isolated: None,
            updates: None,
        }
    }

    /// Takes an input's new `instances` from `updates` while it runs: a reload that only
    /// changes instances then touches only those, inside the running worker.
    pub fn instance_updates(
        mut self,
        updates: tokio::sync::watch::Receiver<Vec<InstanceConfig>>,
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
            tracing::info!(target: LOG_TARGET, input = %self.config.name, ?delay, "waiting start_delay before starting the worker");
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
}

/// The plugin's `[inputs.pythond.plugins.<name>]` `interval`/`timeout` override the
/// input's, which override the class attribute; the default timeout is three
/// intervals; `long_running` plugins have none.
pub fn plugin_timing(config: &InputConfig, plugin: &PluginInfo) -> Timing {
    let class_interval = class_interval(plugin);
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

/// The interval the plugin's class gives, or [`DEFAULT_INTERVAL`] if none.
fn class_interval(plugin: &PluginInfo) -> Duration {
    Duration::try_from_secs_f64(plugin.interval)
        .ok()
        .filter(|d| !d.is_zero())
        .unwrap_or(DEFAULT_INTERVAL)
}

/// A `[inputs.pythond.plugins.<key>]` table for each key that names none of `plugins`.
fn unmatched_overrides(config: &InputConfig, plugins: &[PluginInfo]) -> Vec<InternalEvent> {
    let ids: Vec<String> = plugins.iter().map(|p| p.id.clone()).collect();
    config
        .plugins
        .keys()
        .filter(|key| !plugins.iter().any(|p| p.id == **key || p.name == **key))
        .map(|key| InternalEvent::UnmatchedOverride {
            key: key.clone(),
            plugins: ids.clone(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
