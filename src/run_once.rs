//! `pythond run --once`: every input's plugins run once through the real sinks, then
//! the agent delivers what they reported and exits with a code a cron job or a CI
//! pipeline can trust.
//!
//! Same configuration, same workers, same ingest and sinks (disk buffers included) as
//! `run`; what differs: each enabled plugin (each (plugin, instance) pair of an
//! input with instances) runs exactly once (within its timeout), no
//! restarts, no watcher, no git pulls (the repositories already checked out under
//! `data_dir` are used), no HTTP API (`transport = "http"` inputs report over the
//! pipe). After the runs the network sinks get up to `[agent] shutdown_timeout` to
//! deliver their queues. The exit code is 0 only if every input started, every run
//! ended without exception or timeout, no point was rejected, and every sink
//! delivered everything it was given: nothing dropped, dead-lettered or left queued
//! (docs/OPERATIONS.md).

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;

use crate::config::{Config, InputConfig};
use crate::ingest::Ingest;
use crate::once::{run_plugins_once, OnceReport, RunResult};
use crate::reload::{self, Layout};
use crate::sink::Sinks;
use crate::stats::Stats;
use crate::worker::protocol::Command;
use crate::worker::{Launch, Runtime, Session, SessionContext};

/// How long a worker may take to load its plugins: as under `run`.
const LOAD_TIMEOUT: Duration = crate::supervisor::HELLO_TIMEOUT;
/// How often the sinks' queues are looked at while waiting for delivery.
const DELIVERY_POLL: Duration = Duration::from_millis(50);

/// Runs every input once and delivers; `Ok(true)` if everything went well.
pub async fn run(config: Config) -> anyhow::Result<bool> {
    let grace = config.agent.shutdown_timeout;
    let stats = Stats::new();
    let sinks =
        Sinks::open(&config.sinks, &config.agent.data_dir, &stats).context("cannot open sinks")?;
    let ingest = Arc::new(Ingest::new(
        stats.clone(),
        config.global_tags_with_host(),
        sinks,
    ));
    let runtime_dir = config.agent.data_dir.join("runtime");
    let runtime = Arc::new(Runtime::install(&runtime_dir).with_context(|| {
        format!(
            "cannot install the Python runtime into {}",
            runtime_dir.display()
        )
    })?);

    let checkouts: Vec<_> = crate::gitsync::repos(&config.git_repos, &config.agent.data_dir)
        .into_iter()
        .filter_map(|repo| {
            if repo.dir.is_dir() {
                Some(repo.dir)
            } else {
                tracing::warn!(repo = %repo.shown_url, "git repo not cloned yet; its inputs are not run (`run` pulls it)");
                None
            }
        })
        .collect();
    let layout = Layout::new(&config.agent.conf_dir, &config.agent.python_dir, &checkouts);
    let desired = {
        let layout = layout.clone();
        tokio::task::spawn_blocking(move || reload::desired(&layout)).await?
    };
    let mut passed = desired.errors.is_empty();
    for error in &desired.errors {
        tracing::error!("config: {error}");
    }
    if desired.inputs.is_empty() {
        tracing::warn!(conf_dir = %config.agent.conf_dir.display(), "no [[inputs.pythond]] configured; nothing to run");
    }

    let mut tasks = Vec::new();
    for input in desired.inputs {
        let config = input.config;
        let paths = match input.paths {
            Ok(paths) => paths,
            Err(reason) => {
                tracing::error!(input = %config.name, origin = %config.origin, "{reason}; this input does not run");
                passed = false;
                continue;
            }
        };
        let runtime = runtime.clone();
        let ingest = ingest.clone();
        let stats = stats.clone();
        tasks.push(tokio::spawn(async move {
            let report = run_input(&runtime, &ingest, &stats, &config, &paths, grace).await;
            (config.name, report)
        }));
    }
    let (mut runs_ok, mut runs_failed) = (0usize, 0usize);
    for task in tasks {
        let (name, report) = task.await.context("an input's run ended abnormally")?;
        log_report(&name, &report);
        passed &= report.passed();
        runs_ok += report.ok();
        runs_failed += report
            .results
            .iter()
            .filter(|(_, r)| matches!(r, RunResult::Failed | RunResult::TimedOut))
            .count();
    }

    wait_for_delivery(&stats, grace).await;
    ingest.shutdown().await;

    let snapshot = stats.snapshot();
    let accepted: u64 = snapshot.points.accepted.values().sum();
    let rejected = stats.points().rejected_total();
    if rejected > 0 {
        passed = false;
    }
    for sink in &snapshot.sinks {
        let undelivered = sink.queued_points + sink.dropped_points + sink.dead_lettered_points;
        if undelivered > 0 {
            passed = false;
            tracing::error!(
                sink = %sink.name,
                queued = sink.queued_points,
                dropped = sink.dropped_points,
                dead_lettered = sink.dead_lettered_points,
                last_error = sink.last_error.as_deref().unwrap_or("-"),
                "sink did not deliver every point"
            );
        } else {
            tracing::info!(sink = %sink.name, sent = sink.sent_points, "sink delivered every point");
        }
    }
    let verdict = if passed { "ok" } else { "FAILED" };
    tracing::info!(
        runs_ok,
        runs_failed,
        accepted,
        rejected,
        "run --once finished: {verdict}"
    );
    Ok(passed)
}

/// One input: start its worker, run its plugins once, stop it.
async fn run_input(
    runtime: &Runtime,
    ingest: &Arc<Ingest>,
    stats: &Stats,
    config: &InputConfig,
    paths: &[std::path::PathBuf],
    grace: Duration,
) -> OnceReport {
    let mut launch = Launch::for_input(runtime, config, paths);
    crate::once::bounded_pass(&mut launch, config, runtime);
    let spec = launch.render();
    let ctx = Arc::new(SessionContext {
        input: config.name.clone(),
        tags: ingest.input_tags(&config.tags),
        ingest: ingest.clone(),
        stats: stats.input(&config.name),
    });
    tracing::info!(input = %config.name, origin = %config.origin, "running input once");
    let mut session = match Session::start(&spec, ctx) {
        Ok(session) => session,
        Err(error) => {
            let mut report = OnceReport::default();
            report.findings.push(crate::once::Finding {
                error: true,
                message: format!("cannot start worker: {error}"),
                traceback: None,
            });
            return report;
        }
    };
    let report = run_plugins_once(&mut session, config, LOAD_TIMEOUT, grace).await;
    let _ = session
        .send(&Command::Shutdown {
            grace: grace.as_secs_f64(),
        })
        .await;
    session.finish(grace + Duration::from_secs(1)).await;
    report
}

fn log_report(input: &str, report: &OnceReport) {
    for finding in &report.findings {
        let traceback = finding.traceback.as_deref().unwrap_or("");
        if finding.error {
            tracing::error!(input = %input, traceback = %traceback, "{}", finding.message);
        } else {
            tracing::info!(input = %input, "{}", finding.message);
        }
    }
    tracing::info!(
        input = %input,
        plugins = report.results.len(),
        ok = report.ok(),
        "input ran once"
    );
}

/// Waits until every network sink's queue is empty, at most `within`.
async fn wait_for_delivery(stats: &Stats, within: Duration) {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let queued: u64 = stats.snapshot().sinks.iter().map(|s| s.queued_points).sum();
        if queued == 0 {
            return;
        }
        if tokio::time::Instant::now() >= deadline {
            tracing::warn!(
                points = queued,
                "sinks still hold points after {within:?} ([agent] shutdown_timeout); they stay in the disk buffers"
            );
            return;
        }
        tokio::time::sleep(DELIVERY_POLL).await;
    }
}
