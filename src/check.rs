//! `pythond check`: load collectors, run each once, print the points.
//!
//! The points come out of the very same path `run` uses (worker, protocol, ingest,
//! rules, sink encoding), so what `check` prints is what `run` would forward, minus
//! `[global_tags]` and `host`, which belong to an agent's configuration. The exit code
//! is for CI pipelines: 0 only if every module loaded, every plugin ran without an
//! exception or timeout, at least one plugin was found, and no point was rejected.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::time::Instant;

use crate::config::{InputConfig, OutputFormat, SinkConfig, SinkKind, Transport};
use crate::ingest::Ingest;
use crate::sink::Sinks;
use crate::stats::Stats;
use crate::worker::protocol::Command;
use crate::worker::{Event, Runtime, Session, SessionContext};

/// What to check and how.
#[derive(Debug, Clone)]
pub struct CheckOptions {
    pub paths: Vec<PathBuf>,
    pub cmd: String,
    pub timeout: Duration,
    pub format: OutputFormat,
}

/// How one plugin's run ended.
#[derive(Debug, PartialEq, Eq)]
enum RunResult {
    Ok,
    Failed,
    TimedOut,
    StillRunning,
}

/// Runs the check; `Ok(true)` if it passed.
pub async fn check(options: CheckOptions) -> anyhow::Result<bool> {
    let mut passed = true;
    let mut paths = Vec::new();
    for path in &options.paths {
        match std::fs::canonicalize(path) {
            Ok(p) => paths.push(p),
            Err(e) => {
                eprintln!("error: {}: {e}", path.display());
                passed = false;
            }
        }
    }
    if paths.is_empty() {
        return Ok(false);
    }

    let stats = Stats::new();
    let sinks = Sinks::start(&[SinkConfig {
        kind: SinkKind::Stdout {
            format: options.format,
        },
        categories: None,
    }])?;
    let ingest = Arc::new(Ingest::new(stats.clone(), BTreeMap::new(), sinks).log_every_point());
    let runtime =
        Runtime::temporary().context("cannot write the Python runtime to a temporary directory")?;
    let input = InputConfig {
        name: "check".to_string(),
        cmd: options.cmd.clone(),
        dirs: paths.iter().map(|p| p.display().to_string()).collect(),
        envs: Vec::new(),
        interval: None,
        timeout: Some(options.timeout),
        tags: BTreeMap::new(),
        transport: Transport::Pipe,
        options: Default::default(),
        plugins: Default::default(),
        emit_events: false,
        isolation: Default::default(),
        max_rss: None,
        max_age: None,
        start_delay: None,
        instances: Vec::new(),
        concurrency: None,
        instance_metrics: false,
        kinds: Default::default(),
        origin: Default::default(),
    };
    let mut spec = crate::agent::worker_spec(&runtime, &input, &paths);
    // One bounded pass: a syslog-ng fetcher stops at FETCH_NO_DATA (docs/MIGRATING.md).
    spec.envs.push((
        crate::agent::KINDS_ENV.to_string(),
        input
            .kinds
            .worker_json(runtime.state_dir(), true)
            .to_string(),
    ));
    let input_stats = stats.input(&input.name);
    let ctx = Arc::new(SessionContext {
        input: input.name.clone(),
        tags: ingest.input_tags(&input.tags),
        ingest: ingest.clone(),
        stats: input_stats.clone(),
    });
    let mut session = Session::start(&spec, ctx).map_err(|e| anyhow::anyhow!("{e}"))?;

    let results = run_once(&mut session, &options, &mut passed).await;
    let _ = session.send(&Command::Shutdown { grace: 0.0 }).await;
    session.finish(Duration::from_secs(2)).await;
    ingest.shutdown().await;

    for result in results.values() {
        if matches!(result, RunResult::Failed | RunResult::TimedOut) {
            passed = false;
        }
    }
    let snapshot = stats.snapshot();
    let rejected = stats.points().rejected_total();
    if rejected > 0 {
        passed = false;
    }
    let accepted: u64 = snapshot.points.accepted.values().sum();
    let by_category: Vec<String> = snapshot
        .points
        .accepted
        .iter()
        .filter(|(_, n)| **n > 0)
        .map(|(c, n)| format!("{c} {n}"))
        .collect();
    eprintln!(
        "check: {} plugin(s), {} ok, {accepted} point(s) accepted{}{}, {rejected} rejected: {}",
        results.len(),
        results.values().filter(|r| **r == RunResult::Ok).count(),
        if by_category.is_empty() { "" } else { " (" },
        if by_category.is_empty() {
            String::new()
        } else {
            by_category.join(", ") + ")"
        },
        if passed { "PASS" } else { "FAIL" },
    );
    Ok(passed)
}

/// Handshake, one `run` per plugin, then collect the answers until the timeout.
async fn run_once(
    session: &mut Session,
    options: &CheckOptions,
    passed: &mut bool,
) -> HashMap<String, RunResult> {
    let mut results = HashMap::new();
    let deadline = Instant::now() + options.timeout;
    let hello = match tokio::time::timeout_at(deadline, session.hello()).await {
        Ok(Some(hello)) => hello,
        Ok(None) => {
            eprintln!(
                "error: the worker exited before loading the collectors (see its output above)"
            );
            *passed = false;
            return results;
        }
        Err(_) => {
            eprintln!(
                "error: the collectors did not finish loading within {:?}",
                options.timeout
            );
            *passed = false;
            return results;
        }
    };
    for error in &hello.errors {
        eprintln!("error: {error}");
        if let Some(traceback) = error.traceback.as_deref().filter(|t| !t.is_empty()) {
            eprintln!("{}", traceback.trim_end());
        }
        *passed = false;
    }
    if hello.plugins.is_empty() {
        eprintln!("error: no collectors found (subclasses of DataKitFramework, syslogng.LogFetcher, syslogng.LogSource or PythonDataSourcePlugin)");
        *passed = false;
        return results;
    }
    let mut long_running = HashMap::new();
    for plugin in &hello.plugins {
        long_running.insert(plugin.id.clone(), plugin.long_running);
        if session
            .send(&Command::Run {
                plugin: &plugin.id,
                run: 1,
            })
            .await
            .is_err()
        {
            eprintln!("error: the worker exited before running {}", plugin.id);
            *passed = false;
            return results;
        }
    }
    while results.len() < hello.plugins.len() {
        match tokio::time::timeout_at(deadline, session.next_event()).await {
            Ok(Some(Event::Done(done))) => {
                let result = if done.ok {
                    RunResult::Ok
                } else {
                    let error = done
                        .error
                        .as_ref()
                        .map(ToString::to_string)
                        .unwrap_or_default();
                    eprintln!("error: {}: run() raised {error}", done.plugin);
                    if let Some(traceback) = done
                        .error
                        .and_then(|e| e.traceback)
                        .filter(|t| !t.is_empty())
                    {
                        eprintln!("{}", traceback.trim_end());
                    }
                    RunResult::Failed
                };
                results.insert(done.plugin, result);
            }
            Ok(Some(Event::Hello(_) | Event::Runs(_) | Event::TimedOut(_))) => {}
            Ok(None) => {
                eprintln!("error: the worker died during the run (see its output above)");
                *passed = false;
                break;
            }
            Err(_) => break,
        }
    }
    for plugin in &hello.plugins {
        if results.contains_key(&plugin.id) {
            continue;
        }
        if long_running.get(&plugin.id).copied().unwrap_or(false) {
            eprintln!(
                "note: {} is long_running and was still running after {:?}; stopped",
                plugin.id, options.timeout
            );
            results.insert(plugin.id.clone(), RunResult::StillRunning);
        } else {
            eprintln!(
                "error: {}: run() did not finish within {:?}",
                plugin.id, options.timeout
            );
            results.insert(plugin.id.clone(), RunResult::TimedOut);
        }
    }
    results
}
