//! SIGHUP re-reads pythond.toml: what changed in it, and applying that to the running
//! agent while restarting only what a change affects (docs/RELOAD.md).
//!
//! [`Changes::between`] compares the running main configuration with the re-read one,
//! section by section. What applies live:
//! - `[global_tags]` and `[agent] hostname`: nothing restarts; points decoded from
//!   then on carry the new tags ([`crate::ingest::Ingest::set_global_tags`]).
//! - `[[sinks]]`: a sink with unchanged settings keeps its buffer and connection; the
//!   others stop, start or restart ([`crate::live_sinks`]).
//! - `[http]`: the API is restarted on its new address/token, and `transport = "http"`
//!   inputs with it.
//! - `[git_repos]`: the git sync restarts with the new repositories.
//! - `[agent] conf_dir`, `python_dir`, `watch`: the inputs are looked for in the new
//!   places and the watcher follows; `shutdown_timeout` applies to the next stop.
//!
//! `[agent] data_dir`, `log_level` and `log_format` cannot change in a running
//! process (the buffers, checkouts and runtime live under `data_dir`; the logger is
//! set up once): a change is named in a warning and keeps its old value until a
//! restart. A pythond.toml that does not load changes nothing; its error is reported
//! like a broken conf.d file.

use std::sync::Arc;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::config::{self, Config};
use crate::gitsync;
use crate::http::HttpServer;
use crate::ingest::Ingest;
use crate::inputs::InputSet;
use crate::reload::{Layout, Trigger};
use crate::stats::Stats;

/// Which sections of pythond.toml differ between two loads.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Changes {
    /// `[global_tags]` or `[agent] hostname` (the `host` tag).
    pub tags: bool,
    pub sinks: bool,
    pub http: bool,
    pub git_repos: bool,
    /// `[agent] conf_dir`, `python_dir` or `watch`.
    pub layout: bool,
    pub shutdown_timeout: bool,
    /// `[agent]` keys that only a restart applies, e.g. `"[agent] data_dir"`.
    pub need_restart: Vec<&'static str>,
}

impl Changes {
    /// What differs from `old` to `new`.
    pub fn between(old: &Config, new: &Config) -> Changes {
        let (a, b) = (&old.agent, &new.agent);
        let mut need_restart = Vec::new();
        if a.data_dir != b.data_dir {
            need_restart.push("[agent] data_dir");
        }
        if a.log_level != b.log_level {
            need_restart.push("[agent] log_level");
        }
        if a.log_format != b.log_format {
            need_restart.push("[agent] log_format");
        }
        Changes {
            tags: old.global_tags != new.global_tags || a.hostname != b.hostname,
            sinks: old.sinks != new.sinks,
            http: old.http != new.http,
            git_repos: old.git_repos != new.git_repos,
            layout: a.conf_dir != b.conf_dir || a.python_dir != b.python_dir || a.watch != b.watch,
            shutdown_timeout: a.shutdown_timeout != b.shutdown_timeout,
            need_restart,
        }
    }

    /// Whether anything at all changed.
    pub fn any(&self) -> bool {
        self != &Changes::default()
    }
}

/// `new`, except for the settings that cannot change live, which keep `old`'s values.
pub fn effective(old: &Config, new: Config) -> Config {
    let mut applied = new;
    applied.agent.data_dir = old.agent.data_dir.clone();
    applied.agent.log_level = old.agent.log_level.clone();
    applied.agent.log_format = old.agent.log_format;
    applied
}

/// The parts of the running agent a reload of pythond.toml may replace.
pub struct LiveAgent {
    /// The main configuration in effect.
    pub config: Config,
    pub ingest: Arc<Ingest>,
    pub stats: Arc<Stats>,
    pub http: Option<HttpServer>,
    pub layout: Layout,
    watcher: Option<crate::reload::DirWatch>,
    /// Cancels the git sync of the current `[git_repos]` (a child of `shutdown`).
    git: CancellationToken,
    triggers: mpsc::UnboundedSender<Trigger>,
    shutdown: CancellationToken,
}

impl LiveAgent {
    /// Starts what depends on the main configuration besides sinks, inputs and the API
    /// (given): the watcher (unless `[agent] watch = false`) and the git sync.
    pub fn start(
        config: Config,
        ingest: Arc<Ingest>,
        stats: Arc<Stats>,
        http: Option<HttpServer>,
        triggers: mpsc::UnboundedSender<Trigger>,
        shutdown: CancellationToken,
    ) -> LiveAgent {
        let mut live = LiveAgent {
            layout: Layout::default(),
            watcher: None,
            git: shutdown.child_token(),
            config,
            ingest,
            stats,
            http,
            triggers,
            shutdown,
        };
        live.start_git();
        live.start_watcher();
        live
    }

    /// Watches a replaced conf.d/python.d again (SIGHUP; see [`crate::reload::DirWatch`]).
    pub fn rewatch(&self) {
        if let Some(watcher) = &self.watcher {
            watcher.rewatch();
        }
    }

    /// Whether any git repository is configured (and so inputs may appear later).
    pub fn has_git_repos(&self) -> bool {
        self.config.git_repos.repos.iter().any(|r| r.enable)
    }

    /// Computes the layout from the current `[git_repos]` and starts their sync.
    fn start_git(&mut self) {
        let config = &self.config;
        let repos = gitsync::repos(&config.git_repos, &config.agent.data_dir);
        let checkouts: Vec<_> = repos.iter().map(|r| r.dir.clone()).collect();
        self.layout = Layout::new(&config.agent.conf_dir, &config.agent.python_dir, &checkouts);
        self.git = self.shutdown.child_token();
        if repos.is_empty() {
            self.stats.set_git_repos(Vec::new());
        }
        gitsync::spawn(
            repos,
            config.git_repos.pull_interval,
            self.stats.clone(),
            self.triggers.clone(),
            self.git.clone(),
        );
    }

    /// (Re)creates the watcher of the local conf and python directories, or none
    /// with `[agent] watch = false`.
    fn start_watcher(&mut self) {
        self.watcher = None;
        let agent = &self.config.agent;
        if !agent.watch {
            tracing::info!("[agent] watch = false: edits under conf.d/python.d apply on SIGHUP (systemctl reload)");
            return;
        }
        self.watcher = crate::reload::watch(
            &[agent.conf_dir.clone(), agent.python_dir.clone()],
            self.triggers.clone(),
        )
        .map_err(|error| tracing::error!(%error, "cannot watch conf.d/python.d for changes; reload with SIGHUP"))
        .ok();
    }

    /// Re-reads pythond.toml and applies what changed (see the module docs). Returns
    /// the errors to report as the reload's; on error nothing was changed, or (for a
    /// sink or the API that cannot start) only that part is missing.
    pub async fn reread(&mut self, inputs: &mut InputSet) -> Vec<String> {
        let Some(source) = self.config.source.clone() else {
            return Vec::new();
        };
        let loaded = {
            let source = source.clone();
            tokio::task::spawn_blocking(move || config::load(Some(&source))).await
        };
        let new = match loaded {
            Ok(Ok(new)) => new,
            Ok(Err(error)) => {
                tracing::error!(
                    "config: {error}; pythond.toml changes not applied, the agent runs as it was"
                );
                return vec![error.to_string()];
            }
            Err(error) => return vec![format!("{}: cannot be read: {error}", source.display())],
        };
        let changes = Changes::between(&self.config, &new);
        for key in &changes.need_restart {
            tracing::warn!("{key} changed in {}: it applies only when pythond restarts; running with the old value", source.display());
        }
        if !changes.any() {
            tracing::info!("pythond.toml unchanged");
            return Vec::new();
        }
        let applied = effective(&self.config, new);
        let old = std::mem::replace(&mut self.config, applied);
        let mut errors = Vec::new();
        if changes.tags {
            let tags = self.config.global_tags_with_host();
            tracing::info!(tags = ?tags, "global tags changed; points from now on carry them");
            self.ingest.set_global_tags(tags);
        }
        if changes.sinks {
            let (applied, failed) = self
                .ingest
                .sinks()
                .reconfigure(&self.config.sinks, &self.stats)
                .await;
            tracing::info!(started = ?applied.started, stopped = ?applied.stopped, unchanged = applied.unchanged, "sinks reloaded");
            for error in failed {
                tracing::error!("{error}; this sink does not run until the next reload");
                errors.push(format!("{}: {error}", source.display()));
            }
        }
        if changes.http {
            self.restart_http(&old, inputs, &mut errors).await;
        }
        if changes.shutdown_timeout {
            inputs.set_grace(self.config.agent.shutdown_timeout);
        }
        if changes.git_repos || changes.layout {
            self.git.cancel();
            self.start_git();
        }
        if changes.layout {
            self.start_watcher();
        }
        errors
    }

    /// Serves the API on the new `[http]`: a new address is bound before the old one is
    /// let go (so a failure keeps the old API); the same address is freed first.
    async fn restart_http(
        &mut self,
        old: &Config,
        inputs: &mut InputSet,
        errors: &mut Vec<String>,
    ) {
        let same_address = old.http.listen == self.config.http.listen;
        // Open taps would hold the old server's stop for its whole grace; their
        // clients see the stream end and can reconnect to the new API.
        self.ingest.tap().close();
        if same_address {
            if let Some(http) = self.http.take() {
                http.stop().await;
            }
        }
        let started = HttpServer::start(
            &self.config.http,
            self.ingest.clone(),
            self.stats.clone(),
            self.config.agent.hostname.clone(),
        )
        .await;
        match started {
            Ok(server) => {
                if let Some(previous) = self.http.replace(server) {
                    previous.stop().await;
                }
            }
            Err(error) if !same_address => {
                tracing::error!(
                    "the new [http] cannot be served ({error:#}); the API stays on {}",
                    old.http.listen
                );
                errors.push(format!("[http]: {error:#}"));
                self.config.http = old.http.clone();
                return;
            }
            Err(error) => {
                tracing::error!("{error:#}; running without the HTTP API");
                errors.push(format!("[http]: {error:#}"));
            }
        }
        let transport = self.http.as_ref().map(|server| server.transport());
        inputs.set_http(transport);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn parse(text: &str) -> Config {
        config::parse_main(text, Path::new("/etc/pythond/pythond.toml")).expect("valid")
    }

    #[test]
    fn names_each_changed_section() {
        let old = parse("[global_tags]\nregion = \"us\"\n");
        let new = parse("[global_tags]\nregion = \"eu\"\n[agent]\nwatch = false\n");
        let changes = Changes::between(&old, &new);
        assert!(changes.tags && changes.layout);
        assert!(!changes.sinks && !changes.http && !changes.git_repos);
        assert!(changes.need_restart.is_empty());
        assert!(!Changes::between(&old, &old.clone()).any());
    }

    #[test]
    fn settings_that_cannot_change_live_keep_their_old_value() {
        let old = parse("[agent]\ndata_dir = \"/a\"\nlog_level = \"info\"\n");
        let new =
            parse("[agent]\ndata_dir = \"/b\"\nlog_level = \"debug\"\n[global_tags]\nx = \"1\"\n");
        let changes = Changes::between(&old, &new);
        assert_eq!(
            changes.need_restart,
            ["[agent] data_dir", "[agent] log_level"]
        );
        let applied = effective(&old, new);
        assert_eq!(applied.agent.data_dir, Path::new("/a"));
        assert_eq!(applied.agent.log_level.as_deref(), Some("info"));
        assert_eq!(applied.global_tags["x"], "1");
    }
}
