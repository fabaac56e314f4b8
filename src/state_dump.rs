//! SIGUSR1 and SIGUSR2 files: the run log and the full state dump.
//!
//! Borrowed from pyzenkit's daemon, where SIGUSR1 writes the "run log" (what each
//! component did) and SIGUSR2 a dump of the daemon's whole state, so an operator can
//! look inside a running agent without an HTTP client or a restart. Both are JSON
//! files under `<data_dir>/state/`, named with the time they were written, written
//! atomically (temporary file, then rename) so a reader never sees half a file.

use std::path::{Path, PathBuf};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use serde::Serialize;

use crate::config::Config;
use crate::stats::Stats;

/// Which file a signal asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dump {
    /// SIGUSR1: per-input and per-plugin run statistics (`runlog-<ms>.json`).
    RunLog,
    /// SIGUSR2: everything the agent knows: configuration summary, inputs, plugins,
    /// sinks, git repositories, counters (`state-<ms>.json`).
    State,
}

impl Dump {
    fn prefix(self) -> &'static str {
        match self {
            Dump::RunLog => "runlog",
            Dump::State => "state",
        }
    }
}

/// The agent settings worth seeing in a state dump (no secrets: no tokens, no
/// sink URLs' credentials, no input options).
#[derive(Serialize)]
struct ConfigSummary<'a> {
    source: Option<&'a Path>,
    data_dir: &'a Path,
    conf_dir: &'a Path,
    python_dir: &'a Path,
    hostname: &'a str,
    shutdown_timeout_seconds: f64,
    sinks: usize,
    git_repos: usize,
}

/// Writes `dump` under `<data_dir>/state/` and returns its path.
pub fn write(
    dump: Dump,
    config: &Config,
    stats: &Stats,
    started: Instant,
) -> anyhow::Result<PathBuf> {
    let dir = config.agent.data_dir.join("state");
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or_default();
    let snapshot = stats.snapshot();
    let body = match dump {
        Dump::RunLog => serde_json::json!({
            "kind": "runlog",
            "written_at_unix_ms": now_ms,
            "pid": std::process::id(),
            "uptime_seconds": started.elapsed().as_secs_f64(),
            "inputs": snapshot.inputs,
        }),
        Dump::State => serde_json::json!({
            "kind": "state",
            "written_at_unix_ms": now_ms,
            "pid": std::process::id(),
            "version": env!("CARGO_PKG_VERSION"),
            "uptime_seconds": started.elapsed().as_secs_f64(),
            "config": ConfigSummary {
                source: config.source.as_deref(),
                data_dir: &config.agent.data_dir,
                conf_dir: &config.agent.conf_dir,
                python_dir: &config.agent.python_dir,
                hostname: &config.agent.hostname,
                shutdown_timeout_seconds: config.agent.shutdown_timeout.as_secs_f64(),
                sinks: config.sinks.len(),
                git_repos: config.git_repos.repos.len(),
            },
            "status": snapshot,
        }),
    };
    let text = serde_json::to_vec_pretty(&body).context("cannot serialize the dump")?;
    let path = dir.join(format!("{}-{now_ms}.json", dump.prefix()));
    let temp = dir.join(format!(".{}-{now_ms}.json.tmp", dump.prefix()));
    std::fs::write(&temp, text).with_context(|| format!("cannot write {}", temp.display()))?;
    std::fs::rename(&temp, &path)
        .with_context(|| format!("cannot rename {} to {}", temp.display(), path.display()))?;
    Ok(path)
}
