//! What every input, plugin and point counter currently says.
//!
//! Supervisors and the ingest path write here; `check` reads it for its exit code, and
//! the status and metrics endpoints render it. Input and point counters are atomics;
//! a plugin's or instance's entry is plain values under one lock (src/stats/plugin.rs);
//! the few other fields (states, last errors) sit behind short mutexes. No lock is
//! held across an await.
//!
//! A snapshot copies only what its [`Selection`] asks for: status with its default
//! filter at 10,000 instances copies the few entries with problems and counts the rest
//! ([`InstancesSummary`]); `/metrics` sums instances per plugin as it reads them.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use serde::Serialize;

use crate::point::Category;

mod git_repo;
mod histogram;
mod plugin;
mod sink;

pub use git_repo::GitRepoStatus;
use histogram::{Histogram, LATENESS_SLOTS};
pub use histogram::{HistogramSnapshot, LATENESS_SECONDS_BUCKETS, RUN_SECONDS_BUCKETS};
pub use plugin::{InstancesSummary, PluginSnapshot, PluginState, PluginStats};
pub use sink::{SinkSnapshot, SinkStats};

/// Every counter of the agent.
#[derive(Default)]
pub struct Stats {
    inputs: Mutex<BTreeMap<String, Arc<InputStats>>>,
    points: PointStats,
    sinks: Mutex<BTreeMap<String, Arc<SinkStats>>>,
    /// One entry per enabled git repository, in precedence order.
    git_repos: Mutex<Vec<GitRepoStatus>>,
    /// Why the last configuration reload found errors; `None` when it found none.
    reload_error: Mutex<Option<String>>,
    /// When a configuration load last found no error (Unix ms; 0: never).
    reload_success_unix_ms: AtomicU64,
}

impl Stats {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// The stats of input `name`, created on first use.
    pub fn input(&self, name: &str) -> Arc<InputStats> {
        lock(&self.inputs)
            .entry(name.to_string())
            .or_insert_with(|| Arc::new(InputStats::new(name)))
            .clone()
    }

    /// The stats of input `name` if it exists (never creates one: for lookups driven by
    /// what a peer claims).
    pub fn existing_input(&self, name: &str) -> Option<Arc<InputStats>> {
        lock(&self.inputs).get(name).cloned()
    }

    /// Forgets an input that is no longer configured.
    pub fn remove_input(&self, name: &str) {
        lock(&self.inputs).remove(name);
    }

    pub fn points(&self) -> &PointStats {
        &self.points
    }

    /// The state of network sink `name` (of type `kind`), created on first use.
    pub fn sink(&self, name: &str, kind: &str) -> Arc<SinkStats> {
        lock(&self.sinks)
            .entry(name.to_string())
            .or_insert_with(|| Arc::new(SinkStats::new(name, kind)))
            .clone()
    }

    /// Forgets the network sinks not named in `names` (removed from the config).
    pub fn retain_sinks(&self, names: &[&str]) {
        lock(&self.sinks).retain(|name, _| names.contains(&name.as_str()));
    }

    /// Sets the list of git repositories shown in status.
    pub fn set_git_repos(&self, repos: Vec<GitRepoStatus>) {
        *lock(&self.git_repos) = repos;
    }

    /// Replaces the status of the `index`-th git repository.
    pub fn update_git_repo(&self, index: usize, status: GitRepoStatus) {
        if let Some(slot) = lock(&self.git_repos).get_mut(index) {
            *slot = status;
        }
    }

    /// Records the errors of the last configuration reload (`None`: it had none).
    /// A load without errors also records when it happened.
    pub fn set_reload_error(&self, error: Option<String>) {
        if error.is_none() {
            self.reload_success_unix_ms
                .store(unix_ms(SystemTime::now()), Ordering::Relaxed);
        }
        *lock(&self.reload_error) = error;
    }

    /// Every counter, every entry of every input.
    pub fn snapshot(&self) -> StatsSnapshot {
        self.snapshot_with(&Everything)
    }

    /// The counters, with the inputs and entries `selection` asks for: what is not
    /// selected is never copied, so a status of a few problem instances among 10,000
    /// costs a few entries, not 10,000 (docs/HTTP.md, `/v1/status`).
    pub fn snapshot_with(&self, selection: &dyn Selection) -> StatsSnapshot {
        let inputs: Vec<Arc<InputStats>> = lock(&self.inputs)
            .iter()
            .filter(|(name, _)| selection.input(name))
            .map(|(_, input)| input.clone())
            .collect();
        let inputs = inputs.iter().map(|i| i.snapshot(selection)).collect();
        StatsSnapshot {
            inputs,
            points: self.points.snapshot(),
            sinks: lock(&self.sinks).values().map(|s| s.snapshot()).collect(),
            git_repos: lock(&self.git_repos).clone(),
            last_reload_error: lock(&self.reload_error).clone(),
            last_reload_success_unix_ms: match self.reload_success_unix_ms.load(Ordering::Relaxed) {
                0 => None,
                ms => Some(ms),
            },
        }
    }
}

/// What a snapshot carries of each input and its entries (plugins, and instances
/// `<plugin id>@<instance>`). The status filters (src/status_filter.rs) and `/metrics`
/// (src/http/metrics.rs) each are one.
pub trait Selection {
    /// Whether input `name` is in the snapshot.
    fn input(&self, _name: &str) -> bool {
        true
    }

    /// Whether entry `id` (a plugin id or an instance key) of a selected input is
    /// listed. Not asked for instance entries that are summed.
    fn entry(&self, _id: &str, _stats: &PluginStats) -> bool {
        true
    }

    /// Whether an input's instance entries are summed into one entry per plugin;
    /// `instance_metrics` is the input's key of that name.
    fn sum_instances(&self, _instance_metrics: bool) -> bool {
        false
    }
}

/// Every input and entry, as is.
pub struct Everything;

impl Selection for Everything {}

/// Point counters by category and by fix/rejection reason.
#[derive(Default)]
pub struct PointStats {
    accepted: [AtomicU64; 6],
    fixed: Mutex<BTreeMap<(Category, &'static str), u64>>,
    rejected: Mutex<BTreeMap<(Category, &'static str), u64>>,
}

impl PointStats {
    pub fn add_accepted(&self, category: Category, n: u64) {
        self.accepted[category_index(category)].fetch_add(n, Ordering::Relaxed);
    }

    pub fn add_fixed(&self, category: Category, reason: &'static str) {
        *lock(&self.fixed).entry((category, reason)).or_default() += 1;
    }

    pub fn add_rejected(&self, category: Category, reason: &'static str) {
        *lock(&self.rejected).entry((category, reason)).or_default() += 1;
    }

    pub fn rejected_total(&self) -> u64 {
        lock(&self.rejected).values().sum()
    }

    fn snapshot(&self) -> PointsSnapshot {
        let by_reason = |map: &Mutex<BTreeMap<(Category, &'static str), u64>>| {
            lock(map)
                .iter()
                .map(|((category, reason), count)| ReasonCount {
                    category: category.name(),
                    reason,
                    count: *count,
                })
                .collect()
        };
        PointsSnapshot {
            accepted: Category::ALL
                .iter()
                .map(|c| {
                    (
                        c.name(),
                        self.accepted[category_index(*c)].load(Ordering::Relaxed),
                    )
                })
                .collect(),
            fixed: by_reason(&self.fixed),
            rejected: by_reason(&self.rejected),
        }
    }
}

/// The lifecycle state of an input's worker, as shown to operators.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum InputState {
    /// The worker is being started or is loading its plugins.
    Starting,
    /// The worker answered its handshake and is running plugins.
    Running,
    /// The worker exited (or could not start) and will be restarted.
    Backoff {
        retry_in_ms: u64,
    },
    /// The input cannot run until its configuration changes.
    Failed {
        reason: String,
    },
    /// Shutdown in progress.
    Stopping,
    Stopped,
}

/// Counters and state of one input.
pub struct InputStats {
    name: String,
    state: Mutex<InputState>,
    restarts: AtomicU64,
    /// Graceful restarts for `max_rss`/`max_age` (not counted in `restarts`).
    recycles: AtomicU64,
    worker_pid: AtomicU32,
    /// Lines on the worker's channel that were not frames (or over the frame limit).
    bad_frames: AtomicU64,
    /// Lines of worker output and bad-frame errors not logged (over the rate limit).
    log_lines_suppressed: AtomicU64,
    last_error: Mutex<Option<String>>,
    load_errors: Mutex<Vec<String>>,
    plugins: Mutex<BTreeMap<String, Arc<PluginStats>>>,
    /// Pooled inputs: how late runs started (due time to actual start). Per input
    /// only, never per instance.
    lateness: Mutex<Histogram<LATENESS_SLOTS>>,
    instance_metrics: std::sync::atomic::AtomicBool,
    /// Set on the view of one process of an input with `processes = N`
    /// ([`InputStats::process`]).
    view: Option<ProcessView>,
    /// The input's processes (`processes = N > 1`), each with its own pid and state.
    processes: Mutex<Vec<Arc<ProcessStats>>>,
}

/// One worker process of an input with `processes = N > 1`: the supervisor of that
/// process writes its state, pid and restarts here; everything else (instances,
/// lateness, errors, counters) goes to the input's stats, so status shows one input.
struct ProcessView {
    input: Arc<InputStats>,
    own: Arc<ProcessStats>,
}

/// The worker-level part of one process of an input.
struct ProcessStats {
    index: u16,
    /// `2/4`: the slot (src/worker/slot.rs).
    process: String,
    state: Mutex<InputState>,
    worker_pid: AtomicU32,
    restarts: AtomicU64,
}

impl InputStats {
    fn new(name: &str) -> Self {
        Self {
            name: name.to_string(),
            state: Mutex::new(InputState::Starting),
            restarts: AtomicU64::new(0),
            recycles: AtomicU64::new(0),
            worker_pid: AtomicU32::new(0),
            bad_frames: AtomicU64::new(0),
            log_lines_suppressed: AtomicU64::new(0),
            last_error: Mutex::new(None),
            load_errors: Mutex::new(Vec::new()),
            plugins: Mutex::new(BTreeMap::new()),
            lateness: Mutex::default(),
            instance_metrics: std::sync::atomic::AtomicBool::new(false),
            view: None,
            processes: Mutex::new(Vec::new()),
        }
    }

    /// The stats that process `index` (from 0) of `count` of this input writes
    /// (`processes = N > 1`, src/worker/slot.rs): its own state, pid and restarts,
    /// shown in the input's `workers`; all the rest is the input's.
    pub fn process(self: &Arc<Self>, index: u16, count: u16) -> Arc<InputStats> {
        let own = {
            let mut processes = lock(&self.processes);
            match processes.iter().find(|p| p.index == index) {
                Some(own) => own.clone(),
                None => {
                    let own = Arc::new(ProcessStats {
                        index,
                        process: format!("{}/{count}", index + 1),
                        state: Mutex::new(InputState::Starting),
                        worker_pid: AtomicU32::new(0),
                        restarts: AtomicU64::new(0),
                    });
                    processes.push(own.clone());
                    processes.sort_by_key(|p| p.index);
                    own
                }
            }
        };
        let mut view = InputStats::new(&self.name);
        view.view = Some(ProcessView {
            input: self.clone(),
            own,
        });
        Arc::new(view)
    }

    /// Forgets the processes of a previous start of the input (before it starts
    /// again, with as many processes as its config now says).
    pub fn clear_processes(&self) {
        lock(&self.processes).clear();
    }

    /// The input's stats (these, unless this is the view of one process).
    fn shared(&self) -> &InputStats {
        self.view.as_ref().map_or(self, |view| &view.input)
    }

    pub fn set_state(&self, state: InputState) {
        match &self.view {
            Some(view) => *lock(&view.own.state) = state,
            None => *lock(&self.state) = state,
        }
    }

    /// The state of this worker or, for an input of several processes, the first
    /// process's that is not running (all running: running).
    pub fn state(&self) -> InputState {
        if let Some(view) = &self.view {
            return lock(&view.own.state).clone();
        }
        let processes = lock(&self.processes);
        if processes.is_empty() {
            return lock(&self.state).clone();
        }
        processes
            .iter()
            .map(|p| lock(&p.state).clone())
            .find(|state| *state != InputState::Running)
            .unwrap_or(InputState::Running)
    }

    pub fn add_restart(&self) {
        if let Some(view) = &self.view {
            view.own.restarts.fetch_add(1, Ordering::Relaxed);
        }
        self.shared().restarts.fetch_add(1, Ordering::Relaxed);
    }

    pub fn restarts(&self) -> u64 {
        self.shared().restarts.load(Ordering::Relaxed)
    }

    pub fn add_bad_frame(&self) {
        self.shared().bad_frames.fetch_add(1, Ordering::Relaxed);
    }

    pub fn add_log_lines_suppressed(&self, n: u64) {
        self.shared()
            .log_lines_suppressed
            .fetch_add(n, Ordering::Relaxed);
    }

    pub fn add_recycle(&self) {
        self.shared().recycles.fetch_add(1, Ordering::Relaxed);
    }

    pub fn set_worker_pid(&self, pid: u32) {
        match &self.view {
            Some(view) => view.own.worker_pid.store(pid, Ordering::Relaxed),
            None => self.worker_pid.store(pid, Ordering::Relaxed),
        }
    }

    pub fn set_last_error(&self, error: impl Into<String>) {
        *lock(&self.shared().last_error) = Some(error.into());
    }

    pub fn set_load_errors(&self, errors: Vec<String>) {
        *lock(&self.shared().load_errors) = errors;
    }

    pub fn load_errors(&self) -> Vec<String> {
        lock(&self.shared().load_errors).clone()
    }

    /// The stats of plugin `id`, created on first use (the key is copied only then:
    /// this runs for every pooled run and every report).
    pub fn plugin(&self, id: &str) -> Arc<PluginStats> {
        let mut plugins = lock(&self.shared().plugins);
        if let Some(stats) = plugins.get(id) {
            return stats.clone();
        }
        plugins.entry(id.to_string()).or_default().clone()
    }

    /// The stats of plugin `id` if it exists (never creates one).
    pub fn existing_plugin(&self, id: &str) -> Option<Arc<PluginStats>> {
        lock(&self.shared().plugins).get(id).cloned()
    }

    /// Drops the plugin entries `keep` says no to (for inputs with thousands of
    /// instances).
    pub fn retain_plugin_keys(&self, keep: impl Fn(&str) -> bool) {
        lock(&self.shared().plugins).retain(|id, _| keep(id));
    }

    /// Drops plugins that a new worker no longer has.
    pub fn retain_plugins(&self, keep: &[&str]) {
        lock(&self.shared().plugins).retain(|id, _| keep.contains(&id.as_str()));
    }

    /// Whether `/metrics` shows this input's instances one by one.
    pub fn set_instance_metrics(&self, on: bool) {
        self.shared().instance_metrics.store(on, Ordering::Relaxed);
    }

    /// Records how late a pooled run started.
    pub fn observe_lateness(&self, late: Duration) {
        lock(&self.shared().lateness).observe(&LATENESS_SECONDS_BUCKETS, late);
    }

    fn snapshot(&self, selection: &dyn Selection) -> InputSnapshot {
        let lateness_seconds = lock(&self.lateness).snapshot(&LATENESS_SECONDS_BUCKETS);
        let instance_metrics = self.instance_metrics.load(Ordering::Relaxed);
        let sum = selection.sum_instances(instance_metrics);
        let mut plugins: Vec<PluginSnapshot> = Vec::new();
        let mut summary = InstancesSummary::default();
        // Where each plugin's sum of instances is in `plugins`.
        let mut sums: HashMap<&str, usize> = HashMap::new();
        let entries = lock(&self.plugins);
        for (id, stats) in entries.iter() {
            let Some((plugin, _)) = id.split_once('@') else {
                if selection.entry(id, stats) {
                    plugins.push(stats.snapshot(id.clone()));
                }
                continue;
            };
            stats.count_into(&mut summary);
            if !sum {
                if selection.entry(id, stats) {
                    plugins.push(stats.snapshot(id.clone()));
                }
            } else if let Some(&at) = sums.get(plugin) {
                stats.add_into(&mut plugins[at]);
            } else {
                sums.insert(plugin, plugins.len());
                plugins.push(stats.start_sum(plugin));
            }
        }
        drop(entries);
        let instances_summary = (summary.instances > 0).then(|| InstancesSummary {
            lateness_p99_seconds: lateness_seconds.quantile_bound(0.99),
            ..summary
        });
        InputSnapshot {
            name: self.name.clone(),
            state: self.state(),
            // An input of several processes has one per worker (`workers`).
            worker_pid: pid(&self.worker_pid),
            restarts: self.restarts(),
            recycles: self.recycles.load(Ordering::Relaxed),
            bad_frames: self.bad_frames.load(Ordering::Relaxed),
            log_lines_suppressed: self.log_lines_suppressed.load(Ordering::Relaxed),
            last_error: lock(&self.last_error).clone(),
            load_errors: self.load_errors(),
            plugins,
            lateness_seconds,
            instance_metrics,
            instances_summary,
            workers: lock(&self.processes)
                .iter()
                .map(|p| WorkerSnapshot {
                    process: p.process.clone(),
                    state: lock(&p.state).clone(),
                    worker_pid: pid(&p.worker_pid),
                    restarts: p.restarts.load(Ordering::Relaxed),
                })
                .collect(),
        }
    }
}

fn pid(pid: &AtomicU32) -> Option<u32> {
    match pid.load(Ordering::Relaxed) {
        0 => None,
        pid => Some(pid),
    }
}

/// A serializable copy of every counter, for status output.
#[derive(Debug, Serialize)]
pub struct StatsSnapshot {
    pub inputs: Vec<InputSnapshot>,
    pub points: PointsSnapshot,
    /// Network sinks (datakit, influxdb): queue depth and delivery counters.
    pub sinks: Vec<SinkSnapshot>,
    /// Each git repository: URL (redacted), branch, commit, last pull, last error.
    pub git_repos: Vec<GitRepoStatus>,
    /// The configuration errors found by the last reload (file:line each), if any.
    pub last_reload_error: Option<String>,
    /// When a configuration load (the first one included) last found no error.
    pub last_reload_success_unix_ms: Option<u64>,
}

#[derive(Debug, Serialize)]
pub struct InputSnapshot {
    pub name: String,
    pub state: InputState,
    pub worker_pid: Option<u32>,
    pub restarts: u64,
    /// Graceful worker restarts for `max_rss` / `max_age`.
    pub recycles: u64,
    /// Lines on the worker's channel that were not valid frames; each is dropped.
    pub bad_frames: u64,
    /// Worker output lines and bad-frame errors not logged for the rate limit.
    pub log_lines_suppressed: u64,
    pub last_error: Option<String>,
    pub load_errors: Vec<String>,
    pub plugins: Vec<PluginSnapshot>,
    /// Pooled inputs: how late runs started (empty for other inputs).
    pub lateness_seconds: HistogramSnapshot,
    /// `/metrics` carries one series per instance (input key `instance_metrics`).
    pub instance_metrics: bool,
    /// Inputs with instances: how many there are and how many have problems (whether
    /// or not their entries are listed).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instances_summary: Option<InstancesSummary>,
    /// An input with `processes = N > 1`: one entry per worker process (then
    /// `worker_pid` is null and `state` the first one's that is not running).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub workers: Vec<WorkerSnapshot>,
}

impl InputSnapshot {
    /// The pids of the input's live workers (one, or one per process).
    pub fn worker_pids(&self) -> Vec<u32> {
        self.worker_pid
            .into_iter()
            .chain(self.workers.iter().filter_map(|w| w.worker_pid))
            .collect()
    }
}

/// One worker process of an input with `processes = N > 1`.
#[derive(Debug, Serialize)]
pub struct WorkerSnapshot {
    /// `2/4`: which of the input's processes (docs/CONFIG.md, `processes`).
    pub process: String,
    pub state: InputState,
    pub worker_pid: Option<u32>,
    /// Restarts of this process (the input's `restarts` counts them all).
    pub restarts: u64,
}

#[derive(Debug, Serialize)]
pub struct PointsSnapshot {
    pub accepted: BTreeMap<&'static str, u64>,
    pub fixed: Vec<ReasonCount>,
    pub rejected: Vec<ReasonCount>,
}

#[derive(Debug, Serialize)]
pub struct ReasonCount {
    pub category: &'static str,
    pub reason: &'static str,
    pub count: u64,
}

fn category_index(category: Category) -> usize {
    Category::ALL
        .iter()
        .position(|c| *c == category)
        .expect("Category::ALL lists every category")
}

/// Locks a mutex, recovering the data if a panicking thread poisoned it: counters stay
/// meaningful after a panic elsewhere, and status must keep working.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Milliseconds since the Unix epoch (0 for a time before it).
fn unix_ms(at: SystemTime) -> u64 {
    at.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Summed;

    impl Selection for Summed {
        fn sum_instances(&self, instance_metrics: bool) -> bool {
            !instance_metrics
        }
    }

    #[test]
    fn a_snapshot_that_sums_instances_has_one_entry_per_plugin() {
        let stats = Stats::new();
        let input = stats.input("probes");
        input.plugin("m.Plain").run_succeeded();
        for (key, ms) in [("p.P@a", 3), ("p.P@b", 40), ("q.Q@a", 3)] {
            input
                .plugin(key)
                .run_finished(Duration::from_millis(ms), None);
            input.plugin(key).add_points(Category::Metric, 2);
        }
        input.plugin("p.P@b").timed_out("hung".into());
        input.plugin("p.P@b").quarantined();

        let snapshot = stats.snapshot_with(&Summed);
        let plugins = &snapshot.inputs[0].plugins;
        let ids: Vec<&str> = plugins.iter().map(|p| p.id.as_str()).collect();
        assert_eq!(ids, ["m.Plain", "p.P", "q.Q"]);
        let p = &plugins[1];
        assert_eq!((p.runs, p.timeouts, p.points["metric"]), (2, 1, 4));
        assert_eq!(p.quarantined_instances, Some(1));
        assert!(p.failing);
        assert_eq!(p.run_seconds.count, 2);
        assert_eq!(p.run_seconds.buckets[0], (0.005, 1));
        assert_eq!(plugins[2].quarantined_instances, Some(0));
        assert_eq!(
            snapshot.inputs[0]
                .instances_summary
                .as_ref()
                .map(|s| s.instances),
            Some(3)
        );

        input.set_instance_metrics(true);
        let one_by_one = stats.snapshot_with(&Summed);
        assert_eq!(one_by_one.inputs[0].plugins.len(), 4, "instance_metrics");
    }
}
