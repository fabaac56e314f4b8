//! An input with `instances`: the worker runs the schedule, the agent keeps the rules.
//!
//! For such an input the agent does not send a `run` per run (at 10,000 instances that
//! would be 1,000 commands and answers a second). Once the worker said `hello`, the
//! agent computes every (plugin, instance) pair's merged options, interval, timeout
//! and first due time ([`plan`]) and hands them over in one `instances` command; the
//! worker's pool (python/pythond_pool.py) runs them and reports batches of finished
//! runs and every timeout (docs/PROTOCOL.md, "Pooled inputs"). The agent turns those
//! into per-instance stats, the input's lateness histogram, failure events, quarantine
//! (`pause`) and, when abandoned threads pile up, a graceful recycle.
//!
//! First runs are spread evenly over the interval ([`plan`]), and a restarted worker
//! keeps each instance's phase ([`PoolState`]), so the load stays flat.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::config::{InputConfig, InstanceConfig};
use crate::events::FailureKind;
use crate::schedule::{quarantine_cooloff, Timing, HANGS_BEFORE_QUARANTINE};
use crate::stats::{InputState, PluginState};
use crate::worker::protocol::{
    instance_key, Command, Hello, InstanceEntry, InstanceRef, PluginInfo, RunRecord, TimedOut,
};
use crate::worker::{Event, Session};

use super::{InputSupervisor, SessionEnd, DEFAULT_INTERVAL};

/// What a pooled input remembers across worker restarts.
#[derive(Debug, Default)]
pub struct PoolState {
    /// Each instance's schedule anchor (Unix seconds of a due time) and interval.
    anchors: HashMap<String, (f64, f64)>,
    health: HashMap<String, InstanceHealth>,
}

/// Consecutive hangs of one (plugin, instance).
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

    /// A run finished (well or not, but in time): the hang record is cleared.
    pub fn finished(&mut self) {
        self.hangs_in_a_row = 0;
    }
}

/// Abandoned threads a worker may hold before it is recycled: as many as its pool has.
pub fn abandoned_bound(config: &InputConfig) -> u64 {
    u64::from(config.effective_concurrency())
}

/// The timing of one (plugin, instance): the instance's `interval`/`timeout` win over
/// the plugin's `[inputs.pythond.plugins.<name>]`, which win over the input's, which
/// win over the class attribute; the default timeout is three intervals;
/// `long_running` plugins have none (docs/CONFIG.md, "Instances").
pub fn instance_timing(
    config: &InputConfig,
    plugin: &PluginInfo,
    instance: &InstanceConfig,
) -> Timing {
    let class_interval = Duration::try_from_secs_f64(plugin.interval)
        .ok()
        .filter(|d| !d.is_zero())
        .unwrap_or(DEFAULT_INTERVAL);
    let own = config.plugin_override(&plugin.id, &plugin.name);
    let interval = instance
        .interval
        .or(own.and_then(|o| o.interval))
        .or(config.interval)
        .unwrap_or(class_interval);
    let timeout = instance
        .timeout
        .or(own.and_then(|o| o.timeout))
        .or(config.timeout);
    Timing {
        interval,
        timeout: (!plugin.long_running).then(|| timeout.unwrap_or(interval * 3)),
    }
}

/// Options of one (plugin, instance): the input's, then the plugin's, then the
/// instance's, merged key by key (the later wins).
pub fn instance_options(
    config: &InputConfig,
    plugin: &PluginInfo,
    instance: &InstanceConfig,
) -> serde_json::Map<String, serde_json::Value> {
    let mut options = config.options.clone();
    if let Some(own) = config.plugin_override(&plugin.id, &plugin.name) {
        options.extend(own.options.clone());
    }
    options.extend(instance.options.clone());
    options
}

/// The instances to hand to a fresh worker, and the keys that are disabled.
///
/// First due times: an instance seen before keeps its phase (the next due time on its
/// old grid after `now`); a new one is placed at `now + interval × i / n`, `i` its
/// position among the `n` new ones, so first runs are spread evenly over the interval.
pub fn plan(
    config: &InputConfig,
    plugins: &[PluginInfo],
    now: f64,
    state: &mut PoolState,
) -> (Vec<InstanceEntry>, Vec<String>) {
    let mut entries = Vec::new();
    let mut disabled = Vec::new();
    let mut fresh = Vec::new();
    for plugin in plugins {
        let plugin_enabled = config
            .plugin_override(&plugin.id, &plugin.name)
            .map_or(true, |o| o.enabled);
        for instance in &config.instances {
            let key = instance_key(&plugin.id, &instance.name);
            if !plugin_enabled || !instance.enabled {
                disabled.push(key);
                continue;
            }
            let timing = instance_timing(config, plugin, instance);
            let interval = timing.interval.as_secs_f64().max(0.001);
            let first = match state.anchors.get(&key) {
                Some(&(anchor, old)) if old == interval => {
                    let steps = ((now - anchor) / interval).ceil().max(0.0);
                    anchor + steps * interval
                }
                _ => {
                    fresh.push(entries.len());
                    now
                }
            };
            entries.push(InstanceEntry {
                plugin: plugin.id.clone(),
                instance: instance.name.clone(),
                options: instance_options(config, plugin, instance),
                tags: instance.tags.clone(),
                interval,
                timeout: timing.timeout.map(|t| t.as_secs_f64()),
                first,
            });
        }
    }
    let n = fresh.len().max(1) as f64;
    for (i, index) in fresh.into_iter().enumerate() {
        let entry = &mut entries[index];
        entry.first = now + entry.interval * (i as f64 / n);
    }
    state.anchors = entries
        .iter()
        .map(|e| (instance_key(&e.plugin, &e.instance), (e.first, e.interval)))
        .collect();
    (entries, disabled)
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// How often a pooled session checks `max_age` / `max_rss`.
const RECYCLE_CHECK: Duration = Duration::from_secs(1);

impl InputSupervisor {
    /// The session of a worker that runs the input's instances on its pool.
    pub(super) async fn drive_pooled(
        &self,
        session: &mut Session,
        hello: &Hello,
        state: &mut PoolState,
        updates: &mut Option<tokio::sync::watch::Receiver<Vec<InstanceConfig>>>,
        started: tokio::time::Instant,
    ) -> SessionEnd {
        let input = &self.config.name;
        self.record_load_errors(hello);
        self.stats()
            .set_instance_metrics(self.config.instance_metrics);
        // The latest instances (a reload may have changed them since the input started).
        let mut config = self.config.clone();
        if let Some(updates) = updates.as_mut() {
            config.instances = updates.borrow_and_update().clone();
        }
        config.instances = self.own_instances(config.instances);
        let (entries, disabled) = plan(&config, &hello.plugins, unix_now(), state);
        let mut timings = self.adopt_entries(&entries, &disabled);
        if let Err(error) = session
            .send(&Command::Instances {
                set: &entries,
                remove: &[],
            })
            .await
        {
            return SessionEnd::Died(format!("cannot send `instances`: {error}"));
        }
        self.stats().set_state(InputState::Running);
        tracing::info!(
            input = %input,
            pid = hello.pid,
            python = %hello.python,
            plugins = hello.plugins.len(),
            instances = entries.len(),
            disabled = disabled.len(),
            concurrency = self.config.effective_concurrency(),
            "worker ready; instances handed to its pool"
        );
        loop {
            let update = async {
                match updates.as_mut() {
                    Some(updates) => updates.changed().await.is_ok(),
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                biased;
                _ = self.shutdown.cancelled() => {
                    self.stats().set_state(InputState::Stopping);
                    let _ = session.send(&Command::Shutdown { grace: self.grace.as_secs_f64() }).await;
                    return SessionEnd::Shutdown;
                }
                changed = update => {
                    let Some(receiver) = updates.as_mut().filter(|_| changed) else {
                        *updates = None; // the input set is gone: shutdown follows
                        continue;
                    };
                    config.instances = self.own_instances(receiver.borrow_and_update().clone());
                    let (entries, disabled) = plan(&config, &hello.plugins, unix_now(), state);
                    let active: HashSet<String> = entries.iter().map(|e| instance_key(&e.plugin, &e.instance)).collect();
                    let remove: Vec<InstanceRef> = timings
                        .keys()
                        .filter(|key| !active.contains(*key))
                        .filter_map(|key| {
                            let (plugin, instance) = key.split_once('@')?;
                            Some(InstanceRef { plugin: plugin.to_string(), instance: instance.to_string() })
                        })
                        .collect();
                    timings = self.adopt_entries(&entries, &disabled);
                    tracing::info!(input = %input, instances = entries.len(), removed = remove.len(), disabled = disabled.len(), "instances updated in the running worker");
                    if let Err(error) = session.send(&Command::Instances { set: &entries, remove: &remove }).await {
                        return SessionEnd::Died(format!("cannot send `instances`: {error}"));
                    }
                }
                event = session.next_event() => match event {
                    Some(Event::Runs(runs)) => {
                        for record in runs.runs {
                            self.on_pooled_run(record, &timings, state).await;
                        }
                    }
                    Some(Event::TimedOut(timed_out)) => {
                        if let Some(end) = self.on_pooled_timeout(session, timed_out, &timings, state).await {
                            return end;
                        }
                    }
                    Some(Event::Done(done)) => tracing::debug!(input = %input, plugin = %done.plugin, "`done` from a pooled worker; ignored"),
                    Some(Event::Hello(_)) => tracing::warn!(input = %input, "worker said hello twice; ignored"),
                    None => return SessionEnd::Died("it closed its channel".to_string()),
                },
                _ = tokio::time::sleep(RECYCLE_CHECK) => {
                    if let Some(why) = self.recycle_reason(session, started, &HashMap::new()) {
                        self.stats().set_state(InputState::Stopping);
                        let _ = session.send(&Command::Shutdown { grace: self.grace.as_secs_f64() }).await;
                        return SessionEnd::Recycled(why);
                    }
                }
            }
        }
    }

    /// The instances this worker runs: with `processes = N`, those its process slot
    /// wins (src/worker/slot.rs); the other processes run the rest.
    fn own_instances(&self, mut instances: Vec<InstanceConfig>) -> Vec<InstanceConfig> {
        instances.retain(|instance| self.launch.process.owns(&instance.name));
        instances
    }

    /// Makes the stats match a plan: entries kept for the planned and the disabled
    /// pairs only, disabled ones marked so (the other processes' pairs are theirs to
    /// keep). Returns each planned pair's interval.
    fn adopt_entries(
        &self,
        entries: &[InstanceEntry],
        disabled: &[String],
    ) -> HashMap<String, Duration> {
        let mut keep: HashSet<String> = entries
            .iter()
            .map(|e| instance_key(&e.plugin, &e.instance))
            .collect();
        keep.extend(disabled.iter().cloned());
        let slot = self.launch.process;
        self.stats().retain_plugin_keys(|key| {
            keep.contains(key)
                || key
                    .split_once('@')
                    .is_some_and(|(_, instance)| !slot.owns(instance))
        });
        for key in disabled {
            self.stats().plugin(key).set_state(PluginState::Disabled);
        }
        let timings: HashMap<String, Duration> = entries
            .iter()
            .map(|e| {
                (
                    instance_key(&e.plugin, &e.instance),
                    Duration::from_secs_f64(e.interval),
                )
            })
            .collect();
        for key in timings.keys() {
            let stats = self.stats().plugin(key);
            if stats.state() != PluginState::Quarantined {
                stats.set_state(PluginState::Idle);
            }
        }
        timings
    }

    async fn on_pooled_run(
        &self,
        record: RunRecord,
        timings: &HashMap<String, Duration>,
        state: &mut PoolState,
    ) {
        let key = instance_key(&record.plugin, &record.instance);
        if !timings.contains_key(&key) {
            // A run of an instance a reload removed, finished after the removal.
            return;
        }
        let stats = self.stats().plugin(&key);
        self.stats().observe_lateness(record.lateness());
        if record.skipped > 0 {
            stats.add_skipped(record.skipped);
        }
        state.health.entry(key.clone()).or_default().finished();
        let took = Duration::try_from_secs_f64(record.seconds).unwrap_or_default();
        match record.error {
            None => {
                stats.run_finished(took, None);
                let recovered = self.failure_events().succeeded(&key);
                for kind in recovered {
                    self.emit(&key, kind, true, "a run finished successfully")
                        .await;
                }
            }
            Some(error) => {
                let message = error.to_string();
                let traceback = error.traceback.unwrap_or_default();
                tracing::warn!(input = %self.config.name, plugin = %key, run = record.run, traceback = %traceback, "run failed: {message}");
                if self.failure_events().failed(&key, FailureKind::Exception) {
                    let text = if traceback.is_empty() {
                        message.clone()
                    } else {
                        format!("{message}\n{traceback}")
                    };
                    self.emit(&key, FailureKind::Exception, false, &text).await;
                }
                stats.run_finished(took, Some(message));
            }
        }
    }

    /// A pooled run timed out: counted, maybe quarantined; the worker goes on, unless
    /// abandoned threads passed [`abandoned_bound`] (then it is recycled gracefully).
    async fn on_pooled_timeout(
        &self,
        session: &mut Session,
        timed_out: TimedOut,
        timings: &HashMap<String, Duration>,
        state: &mut PoolState,
    ) -> Option<SessionEnd> {
        let input = &self.config.name;
        let key = instance_key(&timed_out.plugin, &timed_out.instance);
        let interval = timings.get(&key).copied().unwrap_or(DEFAULT_INTERVAL);
        let stats = self.stats().plugin(&key);
        let message = format!(
            "run {} did not finish within its timeout (ran {:.3} s); its thread was abandoned",
            timed_out.run, timed_out.ran
        );
        stats.add_run();
        stats.timed_out(message.clone());
        let mut news = Vec::new();
        if self.failure_events().failed(&key, FailureKind::Timeout) {
            news.push((FailureKind::Timeout, message.clone()));
        }
        match state
            .health
            .entry(key.clone())
            .or_default()
            .timed_out(interval)
        {
            PooledHang::Retry { hangs_in_a_row } => {
                tracing::error!(input = %input, plugin = %key, hangs_in_a_row, "{message}; the next run gets a fresh object");
            }
            PooledHang::Quarantine { cooloff } => {
                stats.quarantined();
                tracing::error!(input = %input, plugin = %key, ?cooloff, "{message}; it hung {HANGS_BEFORE_QUARANTINE} times in a row and is quarantined");
                if self.failure_events().failed(&key, FailureKind::Quarantine) {
                    news.push((
                        FailureKind::Quarantine,
                        format!("{message}; it hung {HANGS_BEFORE_QUARANTINE} times in a row and is not run for {cooloff:?}"),
                    ));
                }
                let until = unix_now() + cooloff.as_secs_f64();
                if let Err(error) = session
                    .send(&Command::Pause {
                        plugin: &timed_out.plugin,
                        instance: &timed_out.instance,
                        until,
                    })
                    .await
                {
                    return Some(SessionEnd::Died(format!("cannot send `pause`: {error}")));
                }
            }
        }
        for (kind, text) in news {
            self.emit(&key, kind, false, &text).await;
        }
        let bound = abandoned_bound(&self.config);
        if timed_out.abandoned > bound {
            self.stats().set_state(InputState::Stopping);
            let _ = session
                .send(&Command::Shutdown {
                    grace: self.grace.as_secs_f64(),
                })
                .await;
            return Some(SessionEnd::Recycled(format!(
                "{} abandoned run threads (more than concurrency = {bound})",
                timed_out.abandoned
            )));
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(extra: &str) -> InputConfig {
        let text =
            format!("[[inputs.pythond]]\nname = \"a\"\ncmd = \"python3\"\ndirs = [\"d\"]\n{extra}");
        let (mut inputs, _) =
            crate::config::parse_inputs(&text, std::path::Path::new("x.conf")).expect("parses");
        inputs.remove(0)
    }

    fn plugin(id: &str, name: &str, interval: f64) -> PluginInfo {
        PluginInfo {
            id: id.to_string(),
            name: name.to_string(),
            file: String::new(),
            interval,
            long_running: false,
            kind: "datakit".to_string(),
        }
    }

    #[test]
    fn instance_settings_win_over_plugin_input_and_class() {
        let config = input(
            "interval = \"20s\"\noptions = { a = 1, b = 1, c = 1 }\n\
             [inputs.pythond.plugins.probe]\ntimeout = \"7s\"\noptions = { b = 2, c = 2 }\n\
             [[inputs.pythond.instances]]\nname = \"x\"\ninterval = \"5s\"\noptions = { c = 3 }\n\
             [[inputs.pythond.instances]]\nname = \"y\"\ntimeout = \"1s\"\n",
        );
        let probe = plugin("m.Probe", "probe", 60.0);
        let other = plugin("m.Other", "other", 60.0);
        let [x, y] = &config.instances[..] else {
            panic!("two instances")
        };
        let timing = instance_timing(&config, &probe, x);
        assert_eq!(timing.interval, Duration::from_secs(5));
        assert_eq!(timing.timeout, Some(Duration::from_secs(7)));
        assert_eq!(
            instance_timing(&config, &probe, y).timeout,
            Some(Duration::from_secs(1))
        );
        assert_eq!(
            instance_timing(&config, &other, y).interval,
            Duration::from_secs(20)
        );
        assert_eq!(
            instance_timing(&config, &other, x).timeout,
            Some(Duration::from_secs(15)),
            "three intervals by default"
        );
        let options = instance_options(&config, &probe, x);
        assert_eq!(
            serde_json::Value::Object(options),
            serde_json::json!({"a": 1, "b": 2, "c": 3})
        );
    }

    #[test]
    fn first_runs_are_spread_over_the_interval_and_phases_survive_a_restart() {
        let mut text = String::from("interval = \"10s\"\n");
        for i in 0..4 {
            text.push_str(&format!("[[inputs.pythond.instances]]\nname = \"i{i}\"\n"));
        }
        text.push_str("[[inputs.pythond.instances]]\nname = \"off\"\nenabled = false\n");
        let config = input(&text);
        let plugins = [plugin("m.P", "p", 10.0)];
        let mut state = PoolState::default();
        let (entries, disabled) = plan(&config, &plugins, 1000.0, &mut state);
        let firsts: Vec<f64> = entries.iter().map(|e| e.first).collect();
        assert_eq!(firsts, [1000.0, 1002.5, 1005.0, 1007.5]);
        assert_eq!(disabled, ["m.P@off"]);
        // A worker restarted at 1031 keeps every instance on its grid.
        let (again, _) = plan(&config, &plugins, 1031.0, &mut state);
        let firsts: Vec<f64> = again.iter().map(|e| e.first).collect();
        assert_eq!(firsts, [1040.0, 1032.5, 1035.0, 1037.5]);
    }

    #[test]
    fn three_hangs_in_a_row_quarantine_and_a_run_in_time_clears_them() {
        let mut health = InstanceHealth::default();
        let s = Duration::from_secs(1);
        assert_eq!(health.timed_out(s), PooledHang::Retry { hangs_in_a_row: 1 });
        health.finished();
        assert_eq!(health.timed_out(s), PooledHang::Retry { hangs_in_a_row: 1 });
        assert_eq!(health.timed_out(s), PooledHang::Retry { hangs_in_a_row: 2 });
        assert_eq!(
            health.timed_out(s),
            PooledHang::Quarantine {
                cooloff: quarantine_cooloff(s)
            }
        );
        assert!(matches!(health.timed_out(s), PooledHang::Quarantine { .. }));
    }
}
