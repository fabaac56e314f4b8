//! Counters and state of one plugin (one collector class), or of one instance of it
//! (entry `<plugin id>@<instance>`, docs/CONFIG.md, "Instances").
//!
//! An input may hold 10,000 such entries, so one is plain values under a single short
//! lock (never held across an await): a few hundred bytes, where a set of atomics,
//! mutexes and a boxed histogram took twice that (docs/BENCHMARKS.md, "Instances at
//! scale"). Every write is one uncontended lock; the status and metrics snapshots read
//! an entry in one lock too, so they see its counters consistently.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use serde::Serialize;

use super::histogram::{Histogram, HistogramSnapshot, RUN_SECONDS_BUCKETS, RUN_SLOTS};
use super::{category_index, lock, unix_ms};
use crate::point::Category;

/// What a plugin is doing now.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
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

/// Counters and state of one plugin or instance.
#[derive(Default)]
pub struct PluginStats(Mutex<Counters>);

#[derive(Default)]
struct Counters {
    runs: u64,
    failures: u64,
    timeouts: u64,
    skipped: u64,
    quarantines: u64,
    points: [u64; 6],
    fixed: u64,
    rejected: u64,
    state: PluginState,
    /// Whether the most recent run failed or timed out (cleared by a success).
    failing: bool,
    /// The collector kind from the worker's hello (`datakit`, `zenpython`, ...).
    kind: Option<Box<str>>,
    /// When the last run succeeded (Unix ms).
    last_success_unix_ms: Option<u64>,
    last_error: Option<Box<str>>,
    /// When the run in flight started; its end feeds `durations`.
    run_start: Option<Instant>,
    durations: Histogram<RUN_SLOTS>,
}

impl Counters {
    /// Records how long the run in flight took (once per run).
    fn run_ended(&mut self) {
        if let Some(started) = self.run_start.take() {
            self.durations
                .observe(&RUN_SECONDS_BUCKETS, started.elapsed());
        }
    }

    fn succeeded(&mut self) {
        self.failing = false;
        self.last_success_unix_ms = Some(unix_ms(SystemTime::now()));
    }

    fn failed(&mut self, error: String) {
        self.failing = true;
        self.last_error = Some(error.into_boxed_str());
    }

    fn snapshot(&self, id: String) -> PluginSnapshot {
        PluginSnapshot {
            id,
            kind: self.kind.as_deref().map(str::to_string),
            state: self.state,
            failing: self.failing,
            runs: self.runs,
            failures: self.failures,
            timeouts: self.timeouts,
            skipped: self.skipped,
            quarantines: self.quarantines,
            last_success_unix_ms: self.last_success_unix_ms,
            last_error: self.last_error.as_deref().map(str::to_string),
            points: Category::ALL
                .iter()
                .map(|c| (c.name(), self.points[category_index(*c)]))
                .collect(),
            fixed: self.fixed,
            rejected: self.rejected,
            run_seconds: self.durations.snapshot(&RUN_SECONDS_BUCKETS),
            quarantined_instances: None,
        }
    }
}

impl PluginStats {
    fn counters(&self) -> std::sync::MutexGuard<'_, Counters> {
        lock(&self.0)
    }

    pub fn run_started(&self) {
        let mut c = self.counters();
        c.runs += 1;
        c.run_start = Some(Instant::now());
        c.state = PluginState::Running;
    }

    pub fn run_succeeded(&self) {
        let mut c = self.counters();
        c.run_ended();
        c.succeeded();
        c.state = PluginState::Idle;
    }

    pub fn run_failed(&self, error: String) {
        let mut c = self.counters();
        c.run_ended();
        c.failures += 1;
        c.failed(error);
        c.state = PluginState::Idle;
    }

    /// A finished run reported afterwards (pooled inputs: the worker ran it on its own
    /// schedule and says how long it took). `error` is `None` for a success.
    pub fn run_finished(&self, took: Duration, error: Option<String>) {
        let mut c = self.counters();
        c.runs += 1;
        c.durations.observe(&RUN_SECONDS_BUCKETS, took);
        match error {
            None => c.succeeded(),
            Some(error) => {
                c.failures += 1;
                c.failed(error);
            }
        }
        if c.state != PluginState::Disabled {
            c.state = PluginState::Idle;
        }
    }

    pub fn timed_out(&self, error: String) {
        let mut c = self.counters();
        c.run_ended();
        c.timeouts += 1;
        c.failed(error);
        c.state = PluginState::Idle;
    }

    /// Counts a run whose outcome is recorded separately (a pooled run that timed out).
    pub fn add_run(&self) {
        self.counters().runs += 1;
    }

    pub fn quarantined(&self) {
        let mut c = self.counters();
        c.quarantines += 1;
        c.state = PluginState::Quarantined;
    }

    pub fn add_skipped(&self, n: u64) {
        self.counters().skipped += n;
    }

    pub fn add_points(&self, category: Category, n: u64) {
        self.counters().points[category_index(category)] += n;
    }

    pub fn add_fixed(&self) {
        self.counters().fixed += 1;
    }

    pub fn add_rejected(&self) {
        self.counters().rejected += 1;
    }

    pub fn set_last_error(&self, error: String) {
        self.counters().last_error = Some(error.into_boxed_str());
    }

    pub fn set_state(&self, state: PluginState) {
        self.counters().state = state;
    }

    pub fn set_kind(&self, kind: &str) {
        let mut c = self.counters();
        if c.kind.as_deref() != Some(kind) {
            c.kind = Some(kind.into());
        }
    }

    pub fn state(&self) -> PluginState {
        self.counters().state
    }

    pub fn runs(&self) -> u64 {
        self.counters().runs
    }

    pub fn failures(&self) -> u64 {
        self.counters().failures
    }

    pub fn timeouts(&self) -> u64 {
        self.counters().timeouts
    }

    pub fn rejected(&self) -> u64 {
        self.counters().rejected
    }

    /// What status counts as a problem: the last run failed or timed out, or the
    /// entry is quarantined.
    pub fn has_problem(&self) -> bool {
        let c = self.counters();
        c.failing || c.state == PluginState::Quarantined
    }

    /// Counts this instance entry in an input's instance summary.
    pub(super) fn count_into(&self, summary: &mut InstancesSummary) {
        let c = self.counters();
        summary.instances += 1;
        summary.failing += usize::from(c.failing);
        summary.quarantined += usize::from(c.state == PluginState::Quarantined);
        summary.disabled += usize::from(c.state == PluginState::Disabled);
    }

    pub(super) fn snapshot(&self, id: String) -> PluginSnapshot {
        self.counters().snapshot(id)
    }

    /// Starts the entry of `plugin` that sums its instances, from its first instance.
    pub(super) fn start_sum(&self, plugin: &str) -> PluginSnapshot {
        let c = self.counters();
        let mut first = c.snapshot(plugin.to_string());
        first.quarantined_instances = Some(u64::from(c.state == PluginState::Quarantined));
        first
    }

    /// Adds this instance entry to `sum`, the entry of its plugin: counters and
    /// histograms added, the latest success kept, the quarantined ones counted.
    pub(super) fn add_into(&self, sum: &mut PluginSnapshot) {
        let c = self.counters();
        sum.runs += c.runs;
        sum.failures += c.failures;
        sum.timeouts += c.timeouts;
        sum.skipped += c.skipped;
        sum.quarantines += c.quarantines;
        sum.fixed += c.fixed;
        sum.rejected += c.rejected;
        sum.failing |= c.failing;
        sum.last_success_unix_ms = sum.last_success_unix_ms.max(c.last_success_unix_ms);
        for category in Category::ALL {
            *sum.points.entry(category.name()).or_default() += c.points[category_index(category)];
        }
        c.durations.add_to(&mut sum.run_seconds);
        let quarantined = u64::from(c.state == PluginState::Quarantined);
        sum.quarantined_instances = Some(sum.quarantined_instances.unwrap_or(0) + quarantined);
    }
}

/// How an input's instances are doing, for status at thousands of instances
/// (docs/HTTP.md, `/v1/status`).
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct InstancesSummary {
    pub instances: usize,
    pub failing: usize,
    pub quarantined: usize,
    pub disabled: usize,
    /// The upper bound of the lateness bucket holding the 99th percentile: a number of
    /// seconds, `"+Inf"` above the last bound, null before any run.
    #[serde(serialize_with = "serialize_bound")]
    pub lateness_p99_seconds: Option<f64>,
}

fn serialize_bound<S: serde::Serializer>(bound: &Option<f64>, s: S) -> Result<S::Ok, S::Error> {
    match bound {
        Some(b) if b.is_infinite() => s.serialize_str("+Inf"),
        Some(b) => s.serialize_f64(*b),
        None => s.serialize_none(),
    }
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
    /// Set on entries that sum a plugin's instances (a snapshot that sums them,
    /// [`super::Selection::sum_instances`]): how many are quarantined. Never
    /// serialized.
    #[serde(skip)]
    pub quarantined_instances: Option<u64>,
}
