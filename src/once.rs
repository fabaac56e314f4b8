//! Running one worker's plugins once: the handshake, one `run` per enabled plugin,
//! and the answers, each within the plugin's own timeout.
//!
//! `pythond check` and `pythond run --once` both use it, so both run a plugin the way
//! the supervisor would on its schedule ([`crate::supervisor::plugin_timing`] for the
//! timeout, `[inputs.pythond.plugins.*] enabled` honoured), but exactly once and
//! without restarts. An input with `instances` is run the way `run` runs it: the
//! worker in pooled mode gets every enabled (plugin, instance) pair in one `instances`
//! command, each due now with its merged options, tags and timeout, and each pair's
//! run record ends it (docs/CONFIG.md, "Instances"). What happened comes back as data ([`OnceReport`]); printing it
//! (to a terminal, or to the log) is the caller's business.

use std::collections::HashMap;
use std::time::Duration;

use tokio::time::Instant;

use crate::config::InputConfig;
use crate::supervisor::plugin_timing;
use crate::worker::protocol::{instance_key, Command, Hello, PROTOCOL_VERSION};
use crate::worker::{Event, Launch, Runtime, Session};

/// How one plugin's run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunResult {
    Ok,
    Failed,
    TimedOut,
    /// A `long_running` plugin still going when the time was up: stopped, not a
    /// failure.
    StillRunning,
    /// `enabled = false` in its `[inputs.pythond.plugins.*]`: not run.
    Disabled,
}

/// Something worth telling the user, with the traceback when there is one.
#[derive(Debug, Clone)]
pub struct Finding {
    /// True for a problem that fails the check; false for a note.
    pub error: bool,
    pub message: String,
    pub traceback: Option<String>,
}

/// What running the plugins once gave.
#[derive(Debug, Default)]
pub struct OnceReport {
    /// Every plugin the worker reported, by id, in the worker's order.
    pub results: Vec<(String, RunResult)>,
    pub findings: Vec<Finding>,
}

impl OnceReport {
    /// True if nothing failed: modules loaded, the worker answered, every run ended
    /// well, and there was at least one plugin.
    pub fn passed(&self) -> bool {
        !self.findings.iter().any(|f| f.error)
            && !self.results.is_empty()
            && self
                .results
                .iter()
                .all(|(_, r)| !matches!(r, RunResult::Failed | RunResult::TimedOut))
    }

    /// Plugins whose run finished without an exception.
    pub fn ok(&self) -> usize {
        self.results
            .iter()
            .filter(|(_, r)| *r == RunResult::Ok)
            .count()
    }

    fn error(&mut self, message: String, traceback: Option<String>) {
        self.findings.push(Finding {
            error: true,
            message,
            traceback: traceback.filter(|t| !t.trim().is_empty()),
        });
    }

    fn note(&mut self, message: String) {
        self.findings.push(Finding {
            error: false,
            message,
            traceback: None,
        });
    }
}

/// Makes `launch` run its collectors as one bounded pass: the kinds' settings with
/// `once` set, so a syslog-ng fetcher stops at `FETCH_NO_DATA` instead of waiting for
/// more.
pub fn bounded_pass(launch: &mut Launch, input: &InputConfig, runtime: &Runtime) {
    launch.kinds = input.kinds.worker_json(runtime.state_dir(), true);
}

/// Waits for the worker's `hello` (at most `load_timeout`), runs each enabled plugin
/// once, and collects the answers. `long_running` plugins get `long_running_for`.
pub async fn run_plugins_once(
    session: &mut Session,
    input: &InputConfig,
    load_timeout: Duration,
    long_running_for: Duration,
) -> OnceReport {
    let mut report = OnceReport::default();
    let hello = match tokio::time::timeout(load_timeout, session.hello()).await {
        Ok(Some(hello)) => hello,
        Ok(None) => {
            report.error(
                "the worker exited before loading the collectors (see its output above)".into(),
                None,
            );
            return report;
        }
        Err(_) => {
            report.error(
                format!("the collectors did not finish loading within {load_timeout:?}"),
                None,
            );
            return report;
        }
    };
    if hello.v != PROTOCOL_VERSION {
        report.error(
            format!(
                "the worker speaks protocol v{}, the agent v{PROTOCOL_VERSION}",
                hello.v
            ),
            None,
        );
        return report;
    }
    for error in &hello.errors {
        report.error(error.to_string(), error.traceback.clone());
    }
    if hello.plugins.is_empty() {
        report.error(
            "no collectors found (subclasses of DataKitFramework, syslogng.LogFetcher, syslogng.LogSource or PythonDataSourcePlugin)".into(),
            None,
        );
        return report;
    }
    if input.has_instances() {
        run_instances_once(session, input, &hello, long_running_for, &mut report).await;
        return report;
    }
    let now = Instant::now();
    let mut deadlines: HashMap<String, (Instant, bool)> = HashMap::new();
    let mut results: HashMap<String, RunResult> = HashMap::new();
    for plugin in &hello.plugins {
        let enabled = input
            .plugin_override(&plugin.id, &plugin.name)
            .map_or(true, |o| o.enabled);
        if !enabled {
            report.note(format!("{}: disabled by configuration; not run", plugin.id));
            results.insert(plugin.id.clone(), RunResult::Disabled);
            continue;
        }
        let timeout = plugin_timing(input, plugin)
            .timeout
            .unwrap_or(long_running_for);
        deadlines.insert(plugin.id.clone(), (now + timeout, plugin.long_running));
        let sent = session
            .send(&Command::Run {
                plugin: &plugin.id,
                run: 1,
            })
            .await;
        if sent.is_err() {
            report.error(
                format!("the worker exited before running {}", plugin.id),
                None,
            );
            break;
        }
    }
    while results.len() < hello.plugins.len() {
        let earliest = deadlines
            .iter()
            .filter(|(id, _)| !results.contains_key(*id))
            .map(|(_, (at, _))| *at)
            .min();
        let Some(deadline) = earliest else { break };
        match tokio::time::timeout_at(deadline, session.next_event()).await {
            Ok(Some(Event::Done(done))) => {
                if results.contains_key(&done.plugin) {
                    continue;
                }
                let result = if done.ok {
                    RunResult::Ok
                } else {
                    let (message, traceback) = match done.error {
                        Some(error) => (error.to_string(), error.traceback.clone()),
                        None => ("failed".to_string(), None),
                    };
                    report.error(
                        format!("{}: run() raised {message}", done.plugin),
                        traceback,
                    );
                    RunResult::Failed
                };
                results.insert(done.plugin, result);
            }
            Ok(Some(Event::Hello(_) | Event::Runs(_) | Event::TimedOut(_))) => {}
            Ok(None) => {
                report.error(
                    "the worker died during the run (see its output above)".into(),
                    None,
                );
                break;
            }
            Err(_) => expire_deadlines(&deadlines, now, &mut results, &mut report),
        }
    }
    for plugin in &hello.plugins {
        // Not answered: the worker died or could not be told to run it.
        let result = results
            .get(&plugin.id)
            .copied()
            .unwrap_or(RunResult::Failed);
        report.results.push((plugin.id.clone(), result));
    }
    report
}

/// How long past a pooled run's own timeout the agent waits for the worker's
/// `timeout` frame before it calls the run timed out itself.
const POOLED_TIMEOUT_SLACK: Duration = Duration::from_secs(5);

/// The interval handed to the pool for a one-shot pass: long enough that no pair is
/// due a second time before the worker is stopped. A pair's timeout is still derived
/// from its real interval (three intervals by default).
const ONCE_INTERVAL: f64 = 365.0 * 24.0 * 3600.0;

/// An input with `instances`: every enabled (plugin, instance) pair runs once on the
/// worker's pool; results are keyed `plugin@instance`.
/// Ends every run whose deadline (started at `now`) has passed and that has no result
/// yet: a `long_running` one as still running (a note), any other as timed out.
fn expire_deadlines(
    deadlines: &HashMap<String, (Instant, bool)>,
    now: Instant,
    results: &mut HashMap<String, RunResult>,
    report: &mut OnceReport,
) {
    let late = Instant::now();
    for (key, (at, long_running)) in deadlines {
        if *at > late || results.contains_key(key) {
            continue;
        }
        let ran = at.saturating_duration_since(now);
        let result = if *long_running {
            report.note(format!(
                "{key} is long_running and was still running after {ran:?}; stopped"
            ));
            RunResult::StillRunning
        } else {
            report.error(format!("{key}: run() did not finish within {ran:?}"), None);
            RunResult::TimedOut
        };
        results.insert(key.clone(), result);
    }
}

async fn run_instances_once(
    session: &mut Session,
    input: &InputConfig,
    hello: &Hello,
    long_running_for: Duration,
    report: &mut OnceReport,
) {
    let unix_now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64());
    let (mut entries, disabled) = crate::supervisor::plan(
        input,
        &input.instances.iter().collect::<Vec<_>>(),
        &hello.plugins,
        unix_now,
        &mut crate::supervisor::PoolState::default(),
    );
    let long_running: HashMap<&str, bool> = hello
        .plugins
        .iter()
        .map(|p| (p.id.as_str(), p.long_running))
        .collect();
    let now = Instant::now();
    let mut order = Vec::new();
    let mut deadlines: HashMap<String, (Instant, bool)> = HashMap::new();
    for entry in &mut entries {
        entry.first = unix_now;
        entry.interval = ONCE_INTERVAL;
        let key = instance_key(&entry.plugin, &entry.instance);
        let is_long = long_running
            .get(entry.plugin.as_str())
            .copied()
            .unwrap_or(false);
        let deadline = match entry.timeout {
            Some(timeout) if !is_long => {
                now + Duration::try_from_secs_f64(timeout).unwrap_or(long_running_for)
                    + POOLED_TIMEOUT_SLACK
            }
            _ => now + long_running_for,
        };
        deadlines.insert(key.clone(), (deadline, is_long));
        order.push(key);
    }
    let mut results: HashMap<String, RunResult> = HashMap::new();
    for key in &disabled {
        report.note(format!("{key}: disabled by configuration; not run"));
        results.insert(key.clone(), RunResult::Disabled);
        order.push(key.clone());
    }
    if !entries.is_empty()
        && session
            .send(&Command::Instances {
                set: &entries,
                remove: &[],
            })
            .await
            .is_err()
    {
        report.error(
            "the worker exited before its instances could be run".into(),
            None,
        );
    } else {
        while results.len() < order.len() {
            let earliest = deadlines
                .iter()
                .filter(|(key, _)| !results.contains_key(*key))
                .map(|(_, (at, _))| *at)
                .min();
            let Some(deadline) = earliest else { break };
            match tokio::time::timeout_at(deadline, session.next_event()).await {
                Ok(Some(Event::Runs(runs))) => {
                    for record in runs.runs {
                        let key = instance_key(&record.plugin, &record.instance);
                        if results.contains_key(&key) || !deadlines.contains_key(&key) {
                            continue;
                        }
                        let result = match record.error {
                            None if record.ok => RunResult::Ok,
                            error => {
                                let (message, traceback) = match error {
                                    Some(error) => (error.to_string(), error.traceback.clone()),
                                    None => ("failed".to_string(), None),
                                };
                                report.error(format!("{key}: run() raised {message}"), traceback);
                                RunResult::Failed
                            }
                        };
                        results.insert(key, result);
                    }
                }
                Ok(Some(Event::TimedOut(timed_out))) => {
                    let key = instance_key(&timed_out.plugin, &timed_out.instance);
                    if results.contains_key(&key) {
                        continue;
                    }
                    let ran = Duration::try_from_secs_f64(timed_out.ran).unwrap_or_default();
                    report.error(format!("{key}: run() did not finish within {ran:?}"), None);
                    results.insert(key, RunResult::TimedOut);
                }
                Ok(Some(Event::Hello(_) | Event::Done(_))) => {}
                Ok(None) => {
                    report.error(
                        "the worker died during the run (see its output above)".into(),
                        None,
                    );
                    break;
                }
                Err(_) => expire_deadlines(&deadlines, now, &mut results, report),
            }
        }
    }
    for key in order {
        let result = results.get(&key).copied().unwrap_or(RunResult::Failed);
        report.results.push((key, result));
    }
}
