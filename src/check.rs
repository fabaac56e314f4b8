//! `pythond check`: run collectors once and print their points.
//!
//! Two targets. `check PATH...` loads the collectors in those directories or files
//! with a plain input (`--cmd`, `--timeout`, no options, no tags). `check --input
//! NAME` finds input NAME in the configuration exactly as `run` would (local conf
//! directory and pulled git repositories, same precedence) and starts its worker with
//! the same description: its `cmd`, `envs`, `options`, `tags`, plugin settings and
//! timeouts, plus `[global_tags]` and `host`.
//!
//! The points come out of the very same path `run` uses (worker, protocol, ingest,
//! rules, sink encoding), so what `check` prints is what `run` would forward. The
//! exit code is for CI pipelines: 0 only if every module loaded, every plugin ran
//! without an exception or timeout, at least one plugin was found, no point was
//! rejected, and at least one point was reported (unless `allow_empty`): a collector
//! that is missing its settings usually reports nothing and says why on stdout, which
//! `check` shows by default (docs/COLLECTORS.md).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;

use crate::config::{self, InputConfig, OutputFormat, SinkConfig, SinkKind, Transport};
use crate::ingest::Ingest;
use crate::once::{run_plugins_once, OnceReport};
use crate::reload::{self, Layout};
use crate::sink::Sinks;
use crate::stats::Stats;
use crate::worker::protocol::Command;
use crate::worker::{Launch, Runtime, Session, SessionContext};

/// What to check.
#[derive(Debug, Clone)]
pub enum Target {
    /// Collector directories or files, run with interpreter `cmd`.
    Paths { paths: Vec<PathBuf>, cmd: String },
    /// A configured input, from the main file `config` (else `./pythond.toml`, else
    /// the built-in defaults).
    Input {
        name: String,
        config: Option<PathBuf>,
    },
}

/// What to check and how.
#[derive(Debug, Clone)]
pub struct CheckOptions {
    pub target: Target,
    /// Longest a run of a `Paths` target may take (an input's runs have their own
    /// timeouts), and how long a `long_running` plugin is given. Loading may take as
    /// long as under `run` (a minute), or this, if longer.
    pub timeout: Duration,
    /// Pass even if no point was reported.
    pub allow_empty: bool,
    pub format: OutputFormat,
}

/// The input to run, its resolved plugin paths, and the agent-wide tags.
struct Prepared {
    input: InputConfig,
    paths: Vec<PathBuf>,
    global_tags: BTreeMap<String, String>,
}

/// Runs the check; `Ok(true)` if it passed.
pub async fn check(options: CheckOptions) -> anyhow::Result<bool> {
    let prepared = match &options.target {
        Target::Paths { paths, cmd } => prepare_paths(paths, cmd, options.timeout),
        Target::Input { name, config } => prepare_input(name, config.as_deref()),
    };
    let Some(prepared) = prepared else {
        return Ok(false);
    };
    let Prepared {
        input,
        paths,
        global_tags,
    } = prepared;

    let stats = Stats::new();
    let sinks = Sinks::start(&[SinkConfig {
        kind: SinkKind::Stdout {
            format: options.format,
        },
        categories: None,
    }])?;
    let ingest = Arc::new(Ingest::new(stats.clone(), global_tags, sinks).log_every_point());
    let runtime =
        Runtime::temporary().context("cannot write the Python runtime to a temporary directory")?;
    let mut launch = Launch::for_input(&runtime, &input, &paths);
    // One bounded pass: a syslog-ng fetcher stops at FETCH_NO_DATA (docs/MIGRATING.md).
    crate::once::bounded_pass(&mut launch, &input, &runtime);
    let spec = launch.render();
    let ctx = Arc::new(SessionContext {
        input: input.name.clone(),
        tags: ingest.input_tags(&input.tags),
        ingest: ingest.clone(),
        stats: stats.input(&input.name),
    });
    let mut session = Session::start(&spec, ctx).map_err(|e| anyhow::anyhow!("{e}"))?;
    // Loading gets what `run` gives it (or more): `--timeout` bounds the runs.
    let load_timeout = options.timeout.max(crate::supervisor::HELLO_TIMEOUT);
    let report = run_plugins_once(&mut session, &input, load_timeout, options.timeout).await;
    let _ = session.send(&Command::Shutdown { grace: 0.0 }).await;
    session.finish(Duration::from_secs(2)).await;
    ingest.shutdown().await;

    print_findings(&report);
    let snapshot = stats.snapshot();
    let rejected = stats.points().rejected_total();
    let accepted: u64 = snapshot.points.accepted.values().sum();
    let empty = accepted == 0 && rejected == 0;
    if empty && report.passed() {
        if options.allow_empty {
            eprintln!("note: no point was reported (allowed by --allow-empty)");
        } else {
            eprintln!(
                "error: no point was reported; what the collectors printed is above (pass --allow-empty if none is expected)"
            );
        }
    }
    let passed = report.passed() && rejected == 0 && (!empty || options.allow_empty);
    let by_category: Vec<String> = snapshot
        .points
        .accepted
        .iter()
        .filter(|(_, n)| **n > 0)
        .map(|(c, n)| format!("{c} {n}"))
        .collect();
    eprintln!(
        "check: {} plugin(s), {} ok, {accepted} point(s) accepted{}, {rejected} rejected: {}",
        report.results.len(),
        report.ok(),
        if by_category.is_empty() {
            String::new()
        } else {
            format!(" ({})", by_category.join(", "))
        },
        if passed { "PASS" } else { "FAIL" },
    );
    Ok(passed)
}

/// Errors and notes on stderr, tracebacks below their error.
fn print_findings(report: &OnceReport) {
    for finding in &report.findings {
        let label = if finding.error { "error" } else { "note" };
        eprintln!("{label}: {}", finding.message);
        if let Some(traceback) = &finding.traceback {
            eprintln!("{}", traceback.trim_end());
        }
    }
}

/// `check PATH...`: a plain input over the given paths.
fn prepare_paths(paths: &[PathBuf], cmd: &str, timeout: Duration) -> Option<Prepared> {
    let mut resolved = Vec::new();
    let mut ok = true;
    for path in paths {
        match std::fs::canonicalize(path) {
            Ok(p) => resolved.push(p),
            Err(e) => {
                eprintln!("error: {}: {e}", path.display());
                ok = false;
            }
        }
    }
    if !ok || resolved.is_empty() {
        return None;
    }
    let input = InputConfig {
        name: "check".to_string(),
        cmd: cmd.to_string(),
        dirs: resolved.iter().map(|p| p.display().to_string()).collect(),
        envs: Vec::new(),
        interval: None,
        timeout: Some(timeout),
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
        processes: 1,
        instance_metrics: false,
        kinds: Default::default(),
        origin: Default::default(),
    };
    Some(Prepared {
        input,
        paths: resolved,
        global_tags: BTreeMap::new(),
    })
}

/// `check --input NAME`: the input as `run` would find and start it.
fn prepare_input(name: &str, config_path: Option<&std::path::Path>) -> Option<Prepared> {
    let config = match config::load(config_path) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("error: {error}");
            return None;
        }
    };
    let checkouts: Vec<PathBuf> = crate::gitsync::repos(&config.git_repos, &config.agent.data_dir)
        .into_iter()
        .map(|repo| repo.dir)
        .filter(|dir| dir.is_dir())
        .collect();
    let layout = Layout::new(&config.agent.conf_dir, &config.agent.python_dir, &checkouts);
    let desired = reload::desired(&layout);
    let Some(found) = desired.inputs.into_iter().find(|i| i.config.name == name) else {
        for error in &desired.errors {
            eprintln!("error: {error}");
        }
        eprintln!(
            "error: no input named {name:?} in {} (see `pythond config check`)",
            layout
                .conf_dirs
                .iter()
                .map(|d| d.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        );
        return None;
    };
    let input = found.config;
    let paths = match found.paths {
        Ok(paths) => paths,
        Err(reason) => {
            eprintln!("error: {}: input `{name}`: {reason}", input.origin);
            return None;
        }
    };
    eprintln!("note: input {name:?} from {}", input.origin);
    if input.transport == Transport::Http {
        eprintln!(
            "note: transport = \"http\": check reports over the pipe; the points are the same"
        );
    }
    if input.isolation == crate::config::Isolation::Plugin {
        eprintln!("note: isolation = \"plugin\": check runs every plugin once in one worker");
    }
    Some(Prepared {
        global_tags: config.global_tags_with_host(),
        input,
        paths,
    })
}
