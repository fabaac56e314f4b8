//! An input with `instances`: the worker runs the schedule, the agent keeps the rules.
//!
//! For such an input the agent does not send a `run` per run (at 10,000 instances that
//! would be 1,000 commands and answers a second). Once the worker said `hello`, the
//! agent computes every (plugin, instance) pair's merged options, interval, timeout
//! and first due time ([`plan`]) and hands them over in one `instances` command; the
//! worker's pool (python/pythond_pool.py) runs them and reports batches of finished
//! runs and every timeout (docs/PROTOCOL.md, "Pooled inputs"). The driver here turns
//! those into the lateness histogram and the machine's events ([`super::machine`]
//! decides on per-instance quarantine (`pause`) and, when abandoned threads pile up, a
//! graceful recycle; [`super::internal_events`] counts per instance and reports).
//!
//! First runs are spread evenly over the interval ([`plan`]), and a restarted worker
//! keeps each instance's phase ([`PoolState`]), so the load stays flat.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::handle::{WorkerHandle, WorkerStarter};
use super::internal_events::{load_errors, InternalEvent, LOG_TARGET};
use super::machine::{Action, Event, WorkerMachine};
use super::{InputSupervisor, DEFAULT_INTERVAL};
use crate::config::{InputConfig, InstanceConfig};
use crate::schedule::Timing;
use crate::stats::PluginState;
use crate::worker;
use crate::worker::protocol::{
    instance_key, Command, Hello, InstanceEntry, InstanceRef, PluginInfo,
};

/// What a pooled input remembers across worker restarts: each planned instance's
/// schedule anchor (Unix seconds of a due time) and interval (seconds). It is also the
/// set of planned instances: at 10,000 instances a second map of the same keys would
/// cost as much again (docs/BENCHMARKS.md, "Agent memory per instance").
#[derive(Debug, Default)]
pub struct PoolState {
    anchors: HashMap<String, (f64, f64)>,
}

impl PoolState {
    /// The interval of planned instance `key`; `None` if the plan has no such key
    /// (a reload removed it).
    fn interval(&self, key: &str) -> Option<Duration> {
        self.anchors
            .get(key)
            .map(|&(_, interval)| Duration::from_secs_f64(interval))
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
    let class_interval = super::class_interval(plugin);
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
///
/// `instances` are those of the input that this worker runs (all of them, or its
/// process's share, src/worker/slot.rs), from `config.instances` or a newer reload.
pub fn plan(
    config: &InputConfig,
    instances: &[&InstanceConfig],
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
        for &instance in instances {
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

/// Now, in Unix seconds (the protocol's clock for pooled schedules).
pub(super) fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// The driver's side of a pooled input, kept across worker restarts.
pub(super) struct Pool {
    state: PoolState,
    /// New `instances` from reloads; `None` once the input set is gone. They are read
    /// in place: the pool keeps no copy (docs/BENCHMARKS.md, "Agent memory per
    /// instance").
    updates: Option<tokio::sync::watch::Receiver<Vec<InstanceConfig>>>,
    /// The current worker's `hello`.
    pub(super) hello: Option<Hello>,
}

impl Pool {
    pub(super) fn new(updates: Option<tokio::sync::watch::Receiver<Vec<InstanceConfig>>>) -> Self {
        Self {
            state: PoolState::default(),
            updates,
            hello: None,
        }
    }

    /// Waits for new instances: `true` when they came, `false` when the sender is
    /// gone (never returns without updates).
    pub(super) async fn changed(&mut self) -> bool {
        match self.updates.as_mut() {
            Some(updates) => updates.changed().await.is_ok(),
            None => std::future::pending().await,
        }
    }
}

impl<S: WorkerStarter> InputSupervisor<S> {
    /// A pooled worker is ready: hands it the plan of every instance.
    pub(super) async fn start_pool(
        &self,
        machine: &mut WorkerMachine,
        handle: &mut S::Handle,
        pool: &mut Pool,
    ) -> Vec<Action> {
        let Some(hello) = pool.hello.take() else {
            return Vec::new();
        };
        self.report(InternalEvent::CollectorsLoaded {
            errors: load_errors(&hello.errors),
            plugins: hello.plugins.len(),
            dirs: self.config.dirs.clone(),
        })
        .await;
        self.stats()
            .set_instance_metrics(self.config.instance_metrics);
        // The latest instances (a reload may have changed them since the input started).
        let (entries, disabled) = {
            let latest = pool.updates.as_mut().map(|u| u.borrow_and_update());
            let all = latest.as_deref().unwrap_or(&self.config.instances);
            let own = self.own_instances(all);
            plan(
                &self.config,
                &own,
                &hello.plugins,
                unix_now(),
                &mut pool.state,
            )
        };
        self.adopt_entries(&entries, &disabled);
        let sent = handle
            .send(&Command::Instances {
                set: &entries,
                remove: &[],
            })
            .await;
        let ready = InternalEvent::PoolReady {
            pid: hello.pid,
            python: hello.python.clone(),
            plugins: hello.plugins.len(),
            instances: entries.len(),
            disabled: disabled.len(),
            concurrency: self.config.effective_concurrency(),
        };
        pool.hello = Some(hello);
        if let Err(error) = sent {
            return machine.handle(Event::SendFailed {
                command: "instances",
                error: error.to_string(),
            });
        }
        self.report(ready).await;
        Vec::new()
    }

    /// A reload changed the instances: the running worker gets the new plan and the
    /// list of removed pairs.
    pub(super) async fn update_instances(
        &self,
        machine: &mut WorkerMachine,
        handle: &mut S::Handle,
        pool: &mut Pool,
        changed: bool,
    ) -> Vec<Action> {
        let Some(receiver) = pool.updates.as_mut().filter(|_| changed) else {
            pool.updates = None; // the input set is gone: shutdown follows
            return Vec::new();
        };
        let plugins = pool.hello.as_ref().map_or(&[][..], |h| &h.plugins[..]);
        let before: Vec<String> = pool.state.anchors.keys().cloned().collect();
        let (entries, disabled) = {
            let latest = receiver.borrow_and_update();
            let own = self.own_instances(&latest);
            plan(&self.config, &own, plugins, unix_now(), &mut pool.state)
        };
        let remove: Vec<InstanceRef> = before
            .iter()
            .filter(|key| !pool.state.anchors.contains_key(*key))
            .filter_map(|key| {
                let (plugin, instance) = key.split_once('@')?;
                Some(InstanceRef {
                    plugin: plugin.to_string(),
                    instance: instance.to_string(),
                })
            })
            .collect();
        self.adopt_entries(&entries, &disabled);
        self.report(InternalEvent::InstancesUpdated {
            instances: entries.len(),
            removed: remove.len(),
            disabled: disabled.len(),
        })
        .await;
        let command = Command::Instances {
            set: &entries,
            remove: &remove,
        };
        match handle.send(&command).await {
            Ok(()) => Vec::new(),
            Err(error) => machine.handle(Event::SendFailed {
                command: "instances",
                error: error.to_string(),
            }),
        }
    }

    /// The instances this worker runs: with `processes = N`, those its process slot
    /// wins (src/worker/slot.rs); the other processes run the rest.
    fn own_instances<'a>(&self, instances: &'a [InstanceConfig]) -> Vec<&'a InstanceConfig> {
        instances
            .iter()
            .filter(|instance| self.launch.process.owns(&instance.name))
            .collect()
    }

    /// Makes the stats match a plan: entries kept for the planned and the disabled
    /// pairs only, disabled ones marked so (the other processes' pairs are theirs to
    /// keep).
    fn adopt_entries(&self, entries: &[InstanceEntry], disabled: &[String]) {
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
        for entry in entries {
            let stats = self
                .stats()
                .plugin(&instance_key(&entry.plugin, &entry.instance));
            if stats.state() != PluginState::Quarantined {
                stats.set_state(PluginState::Idle);
            }
        }
    }

    /// A frame of a running pooled worker: finished runs and timeouts of current
    /// instances go to the machine (a run of an instance a reload removed is dropped).
    pub(super) fn on_pool_event(
        &self,
        machine: &mut WorkerMachine,
        pool: &Pool,
        event: worker::Event,
    ) -> Vec<Action> {
        match event {
            worker::Event::Runs(runs) => {
                let mut actions = Vec::new();
                for record in runs.runs {
                    if !pool
                        .state
                        .anchors
                        .contains_key(&instance_key(&record.plugin, &record.instance))
                    {
                        continue;
                    }
                    self.stats().observe_lateness(record.lateness());
                    actions.extend(machine.handle(Event::PoolRun(record)));
                }
                actions
            }
            worker::Event::TimedOut(timed_out) => {
                let key = instance_key(&timed_out.plugin, &timed_out.instance);
                let interval = pool.state.interval(&key).unwrap_or(DEFAULT_INTERVAL);
                machine.handle(Event::PoolTimedOut {
                    timed_out,
                    interval,
                })
            }
            worker::Event::Done(done) => {
                tracing::debug!(target: LOG_TARGET, input = %self.config.name, plugin = %crate::log_text::escape(&done.plugin), "`done` from a pooled worker; ignored");
                Vec::new()
            }
            worker::Event::Hello(_) => Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(config: &InputConfig) -> Vec<&InstanceConfig> {
        config.instances.iter().collect()
    }

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
        let (entries, disabled) = plan(&config, &all(&config), &plugins, 1000.0, &mut state);
        let firsts: Vec<f64> = entries.iter().map(|e| e.first).collect();
        assert_eq!(firsts, [1000.0, 1002.5, 1005.0, 1007.5]);
        assert_eq!(disabled, ["m.P@off"]);
        // A worker restarted at 1031 keeps every instance on its grid.
        let (again, _) = plan(&config, &all(&config), &plugins, 1031.0, &mut state);
        let firsts: Vec<f64> = again.iter().map(|e| e.first).collect();
        assert_eq!(firsts, [1040.0, 1032.5, 1035.0, 1037.5]);
    }
}
