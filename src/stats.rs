//! What every input, plugin and point counter currently says.
//!
//! Supervisors and the ingest path write here; `check` reads it for its exit code, and
//! the status and metrics endpoints render it. Counters are atomics so the hot path
//! never waits; the few non-counter fields (states, last errors) sit behind short
//! mutexes that are never held across an await.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use serde::Serialize;

use crate::point::Category;
use crate::sink::{SinkSnapshot, SinkStats};

/// Every counter of the agent.
#[derive(Default)]
pub struct Stats {
    inputs: Mutex<BTreeMap<String, Arc<InputStats>>>,
    points: PointStats,
    sinks: Mutex<BTreeMap<String, Arc<SinkStats>>>,
    /// One entry per enabled git repository, in precedence order.
    git_repos: Mutex<Vec<crate::gitsync::GitRepoStatus>>,
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
    pub fn set_git_repos(&self, repos: Vec<crate::gitsync::GitRepoStatus>) {
        *lock(&self.git_repos) = repos;
    }

    /// Replaces the status of the `index`-th git repository.
    pub fn update_git_repo(&self, index: usize, status: crate::gitsync::GitRepoStatus) {
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

    pub fn snapshot(&self) -> StatsSnapshot {
        let inputs = lock(&self.inputs).values().map(|i| i.snapshot()).collect();
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
    /// Pooled inputs: how late runs started (due time to actual start).
    lateness: Histogram,
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
            lateness: Histogram::with_bounds(&LATENESS_SECONDS_BUCKETS),
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

    /// The stats of plugin `id`, created on first use.
    pub fn plugin(&self, id: &str) -> Arc<PluginStats> {
        lock(&self.shared().plugins)
            .entry(id.to_string())
            .or_insert_with(|| Arc::new(PluginStats::default()))
            .clone()
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
        self.shared().lateness.observe(late);
    }

    pub fn plugins(&self) -> Vec<(String, Arc<PluginStats>)> {
        lock(&self.shared().plugins)
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    fn snapshot(&self) -> InputSnapshot {
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
            plugins: self
                .plugins()
                .into_iter()
                .map(|(id, p)| p.snapshot(id))
                .collect(),
            lateness_seconds: self.lateness.snapshot(),
            instance_metrics: self.instance_metrics.load(Ordering::Relaxed),
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

/// What a plugin is doing now.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PluginState {
    /// Waiting for its next scheduled run.
    #[default]
    Idle,
    Running,
    /// Hung too often in a row; not run until the cool-off ends.
    Quarantined,
    /// Turned off by `enabled = false` in its `[inputs.pythond.plugins.<name>]`.
    Disabled,
}

/// Counters and state of one plugin (one collector class).
#[derive(Default)]
pub struct PluginStats {
    runs: AtomicU64,
    failures: AtomicU64,
    timeouts: AtomicU64,
    skipped: AtomicU64,
    quarantines: AtomicU64,
    points: [AtomicU64; 6],
    fixed: AtomicU64,
    rejected: AtomicU64,
    state: Mutex<PluginState>,
    /// Whether the most recent run failed or timed out (cleared by a success).
    failing: std::sync::atomic::AtomicBool,
    /// The collector kind from the worker's hello (`datakit`, `zenpython`, ...).
    kind: Mutex<String>,
    last_success: Mutex<Option<SystemTime>>,
    last_error: Mutex<Option<String>>,
    /// When the run in flight started; its end feeds `durations`.
    run_start: Mutex<Option<Instant>>,
    durations: Histogram,
}

impl PluginStats {
    pub fn run_started(&self) {
        self.runs.fetch_add(1, Ordering::Relaxed);
        *lock(&self.run_start) = Some(Instant::now());
        self.set_state(PluginState::Running);
    }

    /// Records how long the run in flight took (once per run).
    fn run_ended(&self) {
        if let Some(started) = lock(&self.run_start).take() {
            self.durations.observe(started.elapsed());
        }
    }

    pub fn run_succeeded(&self) {
        self.run_ended();
        self.failing.store(false, Ordering::Relaxed);
        *lock(&self.last_success) = Some(SystemTime::now());
        self.set_state(PluginState::Idle);
    }

    pub fn run_failed(&self, error: String) {
        self.run_ended();
        self.failing.store(true, Ordering::Relaxed);
        self.failures.fetch_add(1, Ordering::Relaxed);
        *lock(&self.last_error) = Some(error);
        self.set_state(PluginState::Idle);
    }

    /// A finished run reported afterwards (pooled inputs: the worker ran it on its own
    /// schedule and says how long it took). `error` is `None` for a success.
    pub fn run_finished(&self, took: Duration, error: Option<String>) {
        self.runs.fetch_add(1, Ordering::Relaxed);
        self.durations.observe(took);
        self.failing.store(error.is_some(), Ordering::Relaxed);
        match error {
            None => *lock(&self.last_success) = Some(SystemTime::now()),
            Some(error) => {
                self.failures.fetch_add(1, Ordering::Relaxed);
                *lock(&self.last_error) = Some(error);
            }
        }
        let mut state = lock(&self.state);
        if *state != PluginState::Disabled {
            *state = PluginState::Idle;
        }
    }

    pub fn timed_out(&self, error: String) {
        self.run_ended();
        self.failing.store(true, Ordering::Relaxed);
        self.timeouts.fetch_add(1, Ordering::Relaxed);
        *lock(&self.last_error) = Some(error);
        self.set_state(PluginState::Idle);
    }

    /// Counts a run whose outcome is recorded separately (a pooled run that timed out).
    pub fn add_run(&self) {
        self.runs.fetch_add(1, Ordering::Relaxed);
    }

    pub fn quarantined(&self) {
        self.quarantines.fetch_add(1, Ordering::Relaxed);
        self.set_state(PluginState::Quarantined);
    }

    pub fn add_skipped(&self, n: u64) {
        self.skipped.fetch_add(n, Ordering::Relaxed);
    }

    pub fn add_points(&self, category: Category, n: u64) {
        self.points[category_index(category)].fetch_add(n, Ordering::Relaxed);
    }

    pub fn add_fixed(&self) {
        self.fixed.fetch_add(1, Ordering::Relaxed);
    }

    pub fn add_rejected(&self) {
        self.rejected.fetch_add(1, Ordering::Relaxed);
    }

    pub fn set_last_error(&self, error: String) {
        *lock(&self.last_error) = Some(error);
    }

    pub fn set_state(&self, state: PluginState) {
        *lock(&self.state) = state;
    }

    pub fn set_kind(&self, kind: &str) {
        kind.clone_into(&mut lock(&self.kind));
    }

    pub fn state(&self) -> PluginState {
        lock(&self.state).clone()
    }

    pub fn runs(&self) -> u64 {
        self.runs.load(Ordering::Relaxed)
    }

    pub fn failures(&self) -> u64 {
        self.failures.load(Ordering::Relaxed)
    }

    pub fn timeouts(&self) -> u64 {
        self.timeouts.load(Ordering::Relaxed)
    }

    pub fn rejected(&self) -> u64 {
        self.rejected.load(Ordering::Relaxed)
    }

    fn snapshot(&self, id: String) -> PluginSnapshot {
        PluginSnapshot {
            id,
            kind: Some(lock(&self.kind).clone()).filter(|k| !k.is_empty()),
            state: self.state(),
            failing: self.failing.load(Ordering::Relaxed),
            runs: self.runs(),
            failures: self.failures(),
            timeouts: self.timeouts(),
            skipped: self.skipped.load(Ordering::Relaxed),
            quarantines: self.quarantines.load(Ordering::Relaxed),
            last_success_unix_ms: lock(&self.last_success).and_then(|t| {
                t.duration_since(SystemTime::UNIX_EPOCH)
                    .ok()
                    .map(|d| d.as_millis() as u64)
            }),
            last_error: lock(&self.last_error).clone(),
            points: Category::ALL
                .iter()
                .map(|c| {
                    (
                        c.name(),
                        self.points[category_index(*c)].load(Ordering::Relaxed),
                    )
                })
                .collect(),
            fixed: self.fixed.load(Ordering::Relaxed),
            rejected: self.rejected(),
            run_seconds: self.durations.snapshot(),
            quarantined_instances: None,
        }
    }
}

/// Upper bounds (seconds) of the run-duration histogram buckets.
pub const RUN_SECONDS_BUCKETS: [f64; 14] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
];

/// Upper bounds (seconds) of the lateness histogram: how long after its due time a
/// run started (docs/OPERATIONS.md, "Lateness").
pub const LATENESS_SECONDS_BUCKETS: [f64; 15] = [
    0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0,
];

/// A fixed-bucket histogram of durations (Prometheus style, lock-free).
struct Histogram {
    bounds: &'static [f64],
    /// Per-bucket counts (not cumulative); the last slot is above every bound.
    buckets: Box<[AtomicU64]>,
    sum_micros: AtomicU64,
}

impl Default for Histogram {
    fn default() -> Self {
        Self::with_bounds(&RUN_SECONDS_BUCKETS)
    }
}

impl Histogram {
    fn with_bounds(bounds: &'static [f64]) -> Self {
        Self {
            bounds,
            buckets: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum_micros: AtomicU64::new(0),
        }
    }

    fn observe(&self, took: Duration) {
        let seconds = took.as_secs_f64();
        let slot = self
            .bounds
            .iter()
            .position(|bound| seconds <= *bound)
            .unwrap_or(self.bounds.len());
        self.buckets[slot].fetch_add(1, Ordering::Relaxed);
        let micros = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        self.sum_micros.fetch_add(micros, Ordering::Relaxed);
    }

    fn snapshot(&self) -> HistogramSnapshot {
        let mut cumulative = 0;
        let mut buckets = Vec::with_capacity(self.bounds.len());
        for (bound, count) in self.bounds.iter().zip(self.buckets.iter()) {
            cumulative += count.load(Ordering::Relaxed);
            buckets.push((*bound, cumulative));
        }
        let count = cumulative + self.buckets[self.bounds.len()].load(Ordering::Relaxed);
        HistogramSnapshot {
            buckets,
            count,
            sum: self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6,
        }
    }
}

/// A histogram's cumulative buckets `(upper bound, count <= bound)`, total count and sum.
#[derive(Clone, Debug, Serialize)]
pub struct HistogramSnapshot {
    pub buckets: Vec<(f64, u64)>,
    pub count: u64,
    pub sum: f64,
}

impl HistogramSnapshot {
    /// The upper bound of the bucket holding quantile `q` (0..=1): "p99 ≤ this". `None`
    /// without observations, `f64::INFINITY` when it lies above every bound.
    pub fn quantile_bound(&self, q: f64) -> Option<f64> {
        if self.count == 0 {
            return None;
        }
        let rank = (q.clamp(0.0, 1.0) * self.count as f64).ceil().max(1.0) as u64;
        Some(
            self.buckets
                .iter()
                .find(|(_, count)| *count >= rank)
                .map_or(f64::INFINITY, |(bound, _)| *bound),
        )
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
    pub git_repos: Vec<crate::gitsync::GitRepoStatus>,
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

#[derive(Clone, Debug, Serialize)]
pub struct PluginSnapshot {
    pub id: String,
    /// `datakit`, `syslogng_fetcher`, `syslogng_source` or `zenpython`; null until the
    /// worker's hello named it.
    pub kind: Option<String>,
    pub state: PluginState,
    /// The most recent run failed or timed out.
    pub failing: bool,
    pub runs: u64,
    pub failures: u64,
    pub timeouts: u64,
    pub skipped: u64,
    pub quarantines: u64,
    pub last_success_unix_ms: Option<u64>,
    pub last_error: Option<String>,
    pub points: BTreeMap<&'static str, u64>,
    pub fixed: u64,
    pub rejected: u64,
    /// How long finished runs took (successes, failures and timeouts).
    pub run_seconds: HistogramSnapshot,
    /// Set on entries that sum a plugin's instances ([`per_plugin`]): how many are
    /// quarantined. Never serialized.
    #[serde(skip)]
    pub quarantined_instances: Option<u64>,
}

/// One entry per plugin: instance entries (`<plugin id>@<instance>`) summed into their
/// plugin's (counters and histograms added, the latest success kept, the quarantined
/// ones counted); other entries copied. For `/metrics` at thousands of instances.
pub fn per_plugin(plugins: &[PluginSnapshot]) -> Vec<PluginSnapshot> {
    let mut out: Vec<PluginSnapshot> = Vec::new();
    let mut index: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
    for p in plugins {
        let Some((plugin, _)) = p.id.split_once('@') else {
            out.push(p.clone());
            continue;
        };
        let quarantined = u64::from(p.state == PluginState::Quarantined);
        let Some(&at) = index.get(plugin) else {
            index.insert(plugin, out.len());
            let mut first = p.clone();
            first.id = plugin.to_string();
            first.quarantined_instances = Some(quarantined);
            out.push(first);
            continue;
        };
        let sum = &mut out[at];
        sum.runs += p.runs;
        sum.failures += p.failures;
        sum.timeouts += p.timeouts;
        sum.skipped += p.skipped;
        sum.quarantines += p.quarantines;
        sum.fixed += p.fixed;
        sum.rejected += p.rejected;
        sum.failing |= p.failing;
        sum.last_success_unix_ms = sum.last_success_unix_ms.max(p.last_success_unix_ms);
        for (category, n) in &p.points {
            *sum.points.entry(category).or_default() += n;
        }
        for (bucket, (_, n)) in sum
            .run_seconds
            .buckets
            .iter_mut()
            .zip(&p.run_seconds.buckets)
        {
            bucket.1 += n;
        }
        sum.run_seconds.count += p.run_seconds.count;
        sum.run_seconds.sum += p.run_seconds.sum;
        sum.quarantined_instances = Some(sum.quarantined_instances.unwrap_or(0) + quarantined);
    }
    out
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
