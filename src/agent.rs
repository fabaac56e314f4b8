//! `pythond run`: the long-lived agent.
//!
//! Wires config to supervisors to sinks, then waits for signals, as pyzenkit's daemon
//! does: SIGINT/SIGTERM stop scheduling and give runs in flight `[agent]
//! shutdown_timeout` (30 s) before their workers are killed; a second SIGINT/SIGTERM
//! kills every worker at once (points already received are still flushed); a third
//! exits the process immediately. Signals less than a second apart count as one. SIGUSR1 writes the run log and SIGUSR2 a full state
//! dump under `<data_dir>/state/` ([`crate::state_dump`]). SIGHUP, a change under the
//! local conf/python directories (unless `[agent] watch = false`), or a pulled git
//! commit reload the inputs ([`crate::reload`]): only inputs whose config or files
//! changed are restarted ([`crate::inputs`]). SIGHUP also re-reads pythond.toml and
//! applies what changed in it ([`crate::main_reload`]).

use std::sync::Arc;

use anyhow::Context;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::http::HttpServer;
use crate::ingest::Ingest;
use crate::inputs::InputSet;
use crate::live_sinks::LiveSinks;
use crate::log_dedupe::SeenOnce;
use crate::main_reload::LiveAgent;
use crate::reload::{self, Layout, Trigger};
use crate::state_dump::{self, Dump};
use crate::stats::Stats;
use crate::worker::{orphans, Runtime};

/// Exit status after a third SIGINT/SIGTERM (128 + SIGINT, as a shell reports it).
const FORCED_EXIT_STATUS: i32 = 130;
/// SIGINT/SIGTERMs this close to the one before count as one (docs/OPERATIONS.md).
const SIGNAL_BURST: std::time::Duration = std::time::Duration::from_secs(1);
/// How long the shutdown waits for the processes workers left behind to be reaped.
const ORPHAN_SWEEP_AT_EXIT: std::time::Duration = std::time::Duration::from_secs(5);

/// Runs the agent until SIGINT or SIGTERM.
pub async fn run(config: Config) -> anyhow::Result<()> {
    let started = std::time::Instant::now();
    let grace = config.agent.shutdown_timeout;
    // Listen before anything else: a signal that arrives while the agent is still
    // starting (a SIGHUP right after the API answers, a SIGTERM from a quick
    // `systemctl stop`) waits here and is handled once start-up is done, instead of
    // killing the process with the signal's default action.
    let mut terminate = signal(SignalKind::terminate()).context("cannot listen for SIGTERM")?;
    let mut interrupt = signal(SignalKind::interrupt()).context("cannot listen for SIGINT")?;
    let mut hangup = signal(SignalKind::hangup()).context("cannot listen for SIGHUP")?;
    let mut user1 = signal(SignalKind::user_defined1()).context("cannot listen for SIGUSR1")?;
    let mut user2 = signal(SignalKind::user_defined2()).context("cannot listen for SIGUSR2")?;
    // Descendants that leave their worker's process group come back to the agent to
    // be killed, instead of to init (docs/OPERATIONS.md, "No orphans").
    if let Err(error) = orphans::become_subreaper() {
        tracing::warn!(%error, "cannot become a child subreaper; processes that leave their worker's group may outlive it");
    }
    let stats = Stats::new();
    // Private before anything is written into it: buffers, checkouts, state dumps.
    crate::data_dir::prepare(&config.agent.data_dir)?;
    let sinks = LiveSinks::open(&config.sinks, &config.agent.data_dir, &stats)
        .context("cannot open sinks")?;
    let ingest = Arc::new(Ingest::new(
        stats.clone(),
        config.global_tags_with_host(),
        sinks,
    ));
    let runtime_dir = config.agent.data_dir.join("runtime");
    let runtime = Arc::new(
        Runtime::install(&runtime_dir)
            .with_context(|| {
                format!(
                    "cannot install the Python runtime into {}",
                    runtime_dir.display()
                )
            })?
            // syslogng.Persist files, kept across restarts and reloads (docs/CONFIG.md).
            .with_state_dir(config.agent.data_dir.join("state")),
    );

    let http = start_http(&config, &ingest, &stats).await?;
    let http_transport = http.as_ref().map(|server| server.transport());

    let shutdown = CancellationToken::new();
    let sweeper = CancellationToken::new();
    orphans::spawn_sweeper(sweeper.clone());
    let mut inputs = InputSet::new(
        runtime.clone(),
        ingest.clone(),
        stats.clone(),
        http_transport,
        shutdown.clone(),
        grace,
    );
    let (triggers, mut triggered) = mpsc::unbounded_channel();
    let mut live = LiveAgent::start(
        config,
        ingest.clone(),
        stats.clone(),
        http,
        triggers,
        shutdown.clone(),
    );
    let mut skipped_noted = SeenOnce::default();
    reload(
        &mut inputs,
        &live.layout,
        &stats,
        None,
        Vec::new(),
        &mut skipped_noted,
    )
    .await;
    if inputs.is_empty() && !live.has_git_repos() {
        tracing::warn!(conf_dir = %live.config.agent.conf_dir.display(), "no [[inputs.pythond]] configured; nothing to run");
    }
    let not_started = inputs.not_started();
    if not_started.is_empty() {
        tracing::info!(inputs = inputs.len(), "pythond running");
    } else {
        tracing::warn!(inputs = inputs.len() - not_started.len(), not_started = ?not_started, "pythond running; some inputs could not start (see above)");
    }

    let last_signal = loop {
        let trigger = tokio::select! {
            _ = terminate.recv() => break std::time::Instant::now(),
            _ = interrupt.recv() => break std::time::Instant::now(),
            _ = hangup.recv() => {
                // A replaced conf.d/python.d is watched again, whatever the watch saw.
                live.rewatch();
                Trigger::Signal
            }
            _ = user1.recv() => { dump(Dump::RunLog, &live.config, &stats, started); continue }
            _ = user2.recv() => { dump(Dump::State, &live.config, &stats, started); continue }
            Some(trigger) = triggered.recv() => trigger,
        };
        // SIGHUP re-reads pythond.toml too (docs/RELOAD.md); files and git commits
        // concern the inputs only.
        let main_errors = if trigger == Trigger::Signal {
            live.reread(&mut inputs).await
        } else {
            Vec::new()
        };
        reload(
            &mut inputs,
            &live.layout,
            &stats,
            Some(trigger),
            main_errors,
            &mut skipped_noted,
        )
        .await;
    };
    let grace = live.config.agent.shutdown_timeout;
    tracing::info!(grace = ?grace, "shutting down: no new runs; waiting for runs in flight (signal again to kill the workers now)");
    shutdown.cancel();
    // Later signals are watched for the whole shutdown, flushing included.
    let escalation = tokio::spawn(escalate(terminate, interrupt, stats.clone(), last_signal));
    inputs.join_all().await;
    sweeper.cancel();
    let killed = orphans::sweep_until_gone(ORPHAN_SWEEP_AT_EXIT).await;
    if killed > 0 {
        tracing::info!(killed, "killed processes the workers left behind");
    }
    ingest.tap().close();
    if let Some(http) = live.http.take() {
        http.stop().await;
    }
    ingest.shutdown().await;
    escalation.abort();
    tracing::info!("pythond stopped");
    Ok(())
}

/// After the first SIGINT/SIGTERM (received at `first`): a second kills every worker
/// now, a third exits the process at once. Signals within [`SIGNAL_BURST`] of the one
/// counted before are the same signal sent twice (GNU `timeout`, a `kill` of the
/// process group, an init system signalling the process and its group) and count once.
async fn escalate(
    mut terminate: tokio::signal::unix::Signal,
    mut interrupt: tokio::signal::unix::Signal,
    stats: Arc<Stats>,
    first: std::time::Instant,
) {
    let second = next_distinct_signal(&mut terminate, &mut interrupt, first).await;
    tracing::warn!(
        "second signal: killing every worker now (signal a third time to exit without flushing)"
    );
    kill_all_workers(&stats);
    next_distinct_signal(&mut terminate, &mut interrupt, second).await;
    tracing::error!(
        "third signal: exiting now; points not yet handed to a sink or its disk buffer are lost"
    );
    kill_all_workers(&stats);
    orphans::sweep();
    std::process::exit(FORCED_EXIT_STATUS);
}

/// Waits for a SIGINT/SIGTERM that arrives at least [`SIGNAL_BURST`] after `previous`;
/// returns when it arrived. Earlier ones are ignored (logged at debug).
async fn next_distinct_signal(
    terminate: &mut tokio::signal::unix::Signal,
    interrupt: &mut tokio::signal::unix::Signal,
    previous: std::time::Instant,
) -> std::time::Instant {
    loop {
        tokio::select! { _ = terminate.recv() => {}, _ = interrupt.recv() => {} }
        let now = std::time::Instant::now();
        if now.duration_since(previous) >= SIGNAL_BURST {
            return now;
        }
        tracing::debug!("a signal right after the previous one; counted as the same");
    }
}

/// Kills the process group of every live worker.
fn kill_all_workers(stats: &Stats) {
    for input in stats.snapshot().inputs {
        for pid in input.worker_pids() {
            crate::worker::process::kill_group(pid);
        }
    }
}

/// Writes a SIGUSR1/SIGUSR2 file and logs where it went (or why it could not).
fn dump(kind: Dump, config: &Config, stats: &Stats, started: std::time::Instant) {
    match state_dump::write(kind, config, stats, started) {
        Ok(path) => {
            tracing::info!(path = %path.display(), "{kind:?} written to {}", path.display())
        }
        Err(error) => tracing::error!("cannot write the {kind:?}: {error:#}"),
    }
}

/// Starts the HTTP API. An address that cannot be bound (in use, say) is logged and the
/// agent runs without the API, so collectors on the pipe keep working; a non-loopback
/// address without a token stops the agent.
async fn start_http(
    config: &Config,
    ingest: &Arc<Ingest>,
    stats: &Arc<Stats>,
) -> anyhow::Result<Option<HttpServer>> {
    let is_bind_error = |e: &anyhow::Error| e.chain().any(|c| c.is::<std::io::Error>());
    match HttpServer::start(
        &config.http,
        ingest.clone(),
        stats.clone(),
        config.agent.hostname.clone(),
    )
    .await
    {
        Ok(server) => Ok(Some(server)),
        Err(error) if is_bind_error(&error) => {
            tracing::error!("{error:#}; running without the HTTP API");
            Ok(None)
        }
        Err(error) => Err(error),
    }
}

/// Computes the inputs `layout` asks for and applies them to `inputs` (restarting
/// only what changed); logs and records configuration errors. `trigger` is `None` for
/// the first load.
async fn reload(
    inputs: &mut InputSet,
    layout: &Layout,
    stats: &Stats,
    trigger: Option<Trigger>,
    main_errors: Vec<String>,
    skipped_noted: &mut SeenOnce,
) {
    if let Some(trigger) = &trigger {
        tracing::info!("reloading configuration after {trigger}");
    }
    let computed = {
        let layout = layout.clone();
        tokio::task::spawn_blocking(move || reload::desired(&layout)).await
    };
    let desired = match computed {
        Ok(desired) => desired,
        Err(error) => {
            tracing::error!(%error, "configuration reload failed; running inputs left as they are");
            stats.set_reload_error(Some(format!("reload failed: {error}")));
            return;
        }
    };
    let mut all_errors = main_errors;
    all_errors.extend(desired.errors.iter().cloned());
    for error in &desired.errors {
        tracing::error!("config: {error}");
    }
    for skipped in skipped_noted.new_items(&desired.skipped) {
        tracing::info!("config: {skipped}; not a pythond input, ignored");
    }
    stats.set_reload_error(if all_errors.is_empty() {
        None
    } else {
        Some(all_errors.join("; "))
    });
    let applied = inputs.apply(desired).await;
    if trigger.is_some() {
        tracing::info!(
            started = ?applied.started,
            restarted = ?applied.restarted,
            stopped = ?applied.stopped,
            unchanged = applied.unchanged,
            reconfigured = ?applied.reconfigured,
            "configuration reloaded"
        );
    }
}
