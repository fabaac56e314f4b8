//! `pythond run`: the long-lived agent.
//!
//! Wires config to supervisors to sinks, then waits for signals. SIGINT/SIGTERM stop
//! scheduling and give runs in flight a grace period before their workers are killed;
//! a second SIGINT/SIGTERM kills every worker at once.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::signal::unix::{signal, SignalKind};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::config::{self, Config, InputConfig, Transport};
use crate::http::HttpServer;
use crate::ingest::Ingest;
use crate::sink::Sinks;
use crate::stats::{InputState, Stats};
use crate::supervisor::{resolve_dirs, InputSupervisor};
use crate::worker::{Runtime, SessionContext, WorkerSpec};

/// How long runs in flight may take to finish after SIGINT/SIGTERM.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
/// Largest frame a worker may send on its channel.
pub const MAX_FRAME: usize = 4 * 1024 * 1024;

/// Runs the agent until SIGINT or SIGTERM.
pub async fn run(config: Config) -> anyhow::Result<()> {
    let stats = Stats::new();
    let sinks =
        Sinks::open(&config.sinks, &config.agent.data_dir, &stats).context("cannot open sinks")?;
    let ingest = Arc::new(Ingest::new(stats.clone(), global_tags(&config), sinks));
    let runtime_dir = config.agent.data_dir.join("runtime");
    let runtime = Arc::new(Runtime::install(&runtime_dir).with_context(|| {
        format!(
            "cannot install the Python runtime into {}",
            runtime_dir.display()
        )
    })?);

    let http = start_http(&config, &ingest, &stats).await?;

    let loaded = config::load_inputs(&config.agent.conf_dir);
    for error in &loaded.errors {
        tracing::error!("config: {error}");
    }
    for skipped in &loaded.skipped {
        tracing::info!("config: {skipped}; not a pythond input, ignored");
    }
    if loaded.inputs.is_empty() {
        tracing::warn!(conf_dir = %config.agent.conf_dir.display(), "no [[inputs.pythond]] configured; nothing to run");
    }

    let shutdown = CancellationToken::new();
    let mut supervisors = JoinSet::new();
    for input in loaded.inputs {
        let input_stats = stats.input(&input.name);
        let paths = match resolve_dirs(&config.agent.python_dir, &input.dirs) {
            Ok(paths) => paths,
            Err(reason) => {
                tracing::error!(input = %input.name, origin = %input.origin, "{reason}; this input will not run");
                input_stats.set_state(InputState::Failed { reason });
                continue;
            }
        };
        let mut spec = worker_spec(&runtime, &input, &paths);
        if input.transport == Transport::Http {
            let tags = ingest.input_tags(&input.tags);
            use_http_transport(
                &mut spec,
                &input,
                http.as_ref(),
                config.http.token.as_deref(),
                tags,
            );
        }
        let ctx = Arc::new(SessionContext {
            input: input.name.clone(),
            tags: ingest.input_tags(&input.tags),
            ingest: ingest.clone(),
            stats: input_stats,
        });
        let supervisor =
            InputSupervisor::new(input, spec, ctx, shutdown.child_token(), SHUTDOWN_GRACE);
        supervisors.spawn(supervisor.run());
    }
    tracing::info!(inputs = supervisors.len(), "pythond running");

    let mut terminate = signal(SignalKind::terminate()).context("cannot listen for SIGTERM")?;
    let mut interrupt = signal(SignalKind::interrupt()).context("cannot listen for SIGINT")?;
    let mut hangup = signal(SignalKind::hangup()).context("cannot listen for SIGHUP")?;
    loop {
        tokio::select! {
            _ = terminate.recv() => break,
            _ = interrupt.recv() => break,
            _ = hangup.recv() => tracing::warn!("SIGHUP received, but configuration reload is not available yet; restart pythond to apply changes"),
        }
    }
    tracing::info!(grace = ?SHUTDOWN_GRACE, "shutting down: no new runs; waiting for runs in flight");
    shutdown.cancel();
    let all_stopped = async { while supervisors.join_next().await.is_some() {} };
    tokio::pin!(all_stopped);
    tokio::select! {
        _ = &mut all_stopped => {}
        _ = async { tokio::select! { _ = terminate.recv() => {}, _ = interrupt.recv() => {} } } => {
            tracing::warn!("second signal: killing every worker now");
            for input in stats.snapshot().inputs {
                if let Some(pid) = input.worker_pid {
                    crate::worker::process::kill_group(pid);
                }
            }
            all_stopped.await;
        }
    }
    if let Some(http) = http {
        http.stop().await;
    }
    ingest.shutdown().await;
    tracing::info!("pythond stopped");
    Ok(())
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

/// Makes the worker's `report()` post to the agent's write API (`transport = "http"`),
/// passing the URL as `--http-url` and the token, if any, as `PYTHOND_HTTP_TOKEN`, and
/// tells the API the input's tags.
fn use_http_transport(
    spec: &mut WorkerSpec,
    input: &InputConfig,
    http: Option<&HttpServer>,
    token: Option<&str>,
    tags: crate::ingest::InputTags,
) {
    let Some(http) = http else {
        tracing::error!(input = %input.name, "transport = \"http\" but the HTTP API is not running; this input's reports will fail");
        return;
    };
    http.register_input(&input.name, tags);
    let url = http.local_url();
    spec.args.splice(
        1..1,
        [
            "--transport".into(),
            "http".into(),
            "--http-url".into(),
            url.into(),
        ],
    );
    if let Some(token) = token {
        spec.envs.push(("PYTHOND_HTTP_TOKEN".into(), token.into()));
    }
}

/// `[global_tags]` plus `host` (unless `[global_tags]` sets it), as DataKit adds them.
fn global_tags(config: &Config) -> BTreeMap<String, String> {
    let mut tags = config.global_tags.clone();
    tags.entry("host".to_string())
        .or_insert_with(|| config.agent.hostname.clone());
    tags
}

/// How to start the worker of `input` on the resolved plugin `paths`.
pub fn worker_spec(
    runtime: &Runtime,
    input: &InputConfig,
    paths: &[std::path::PathBuf],
) -> WorkerSpec {
    let mut args: Vec<OsString> = vec![
        runtime.runner().into_os_string(),
        "--input".into(),
        input.name.clone().into(),
        "--max-frame".into(),
        MAX_FRAME.to_string().into(),
    ];
    args.extend(paths.iter().map(|p| p.clone().into_os_string()));
    WorkerSpec {
        input: input.name.clone(),
        cmd: input.cmd.clone(),
        args,
        envs: input.envs.clone(),
        max_frame: MAX_FRAME,
    }
}
