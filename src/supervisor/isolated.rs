//! `isolation = "plugin"`: one worker per plugin, each under its own supervisor.
//!
//! A discovery worker (`--discover`: imports, no `init`) lists the input's plugins and
//! stops; it is retried with backoff like any worker ([`super::machine`], mode
//! `Discover`). Then every plugin gets a worker of its own (`--only <id>`, rendered by
//! [`crate::worker::launch`]) under a
//! child [`InputSupervisor`] shown in status as input `<input>/<plugin id>`, so a hang
//! or crash restarts only that plugin's worker (docs/CONFIG.md, `isolation`).

use std::sync::Arc;

use super::handle::WorkerStarter;
use super::internal_events::{load_errors, InternalEvent, LOG_TARGET};
use super::machine::{Mode, State, WorkerMachine};
use super::single::Work;
use super::InputSupervisor;
use crate::stats::{InputState, Stats};
use crate::worker::launch::Mode as LaunchMode;
use crate::worker::SessionContext;

impl<S: WorkerStarter> InputSupervisor<S> {
    /// Discovers the plugins, then supervises one worker per plugin until shutdown.
    pub(super) async fn run_isolated(self, stats: Arc<Stats>) {
        let input = self.config.name.clone();
        let spec = self.launch.with_mode(LaunchMode::Discover).render();
        let mut machine = WorkerMachine::new(Mode::Discover, self.policy());
        let mut work = Work::Discover { hello: None };
        self.drive(&mut machine, &mut work, &spec).await;
        let hello = match (machine.state(), work) {
            (State::Discovered, Work::Discover { hello: Some(hello) }) => hello,
            _ => {
                self.stats().set_state(InputState::Stopped);
                return;
            }
        };
        self.report(InternalEvent::CollectorsLoaded {
            errors: load_errors(&hello.errors),
            plugins: hello.plugins.len(),
            dirs: self.config.dirs.clone(),
        })
        .await;
        self.stats().retain_plugins(&[]);
        for event in super::unmatched_overrides(&self.config, &hello.plugins) {
            self.report(event).await;
        }
        let mut children = Vec::new();
        for plugin in &hello.plugins {
            let name = format!("{input}/{}", plugin.id);
            // `$PYTHOND_INPUT` stays the input's name: collectors may read it.
            let launch = self.launch.with_mode(LaunchMode::Only(plugin.id.clone()));
            let mut plugin_stats = stats.input(&name);
            if launch.process.is_shared() {
                plugin_stats = plugin_stats.process(launch.process.index(), launch.process.count());
            }
            let ctx = Arc::new(SessionContext {
                input: self.ctx.input.clone(),
                tags: self.ctx.tags.clone(),
                ingest: self.ctx.ingest.clone(),
                stats: plugin_stats,
            });
            // Logs and status name the worker `<input>/<plugin id>`; points and events
            // still belong to the input (`ctx.input`).
            let mut config = self.config.clone();
            config.name = name.clone();
            let mut child = InputSupervisor::with_starter(
                config,
                launch,
                ctx,
                self.shutdown.clone(),
                self.grace,
                self.starter.clone(),
            );
            // Instance changes go to every plugin's running worker (docs/RELOAD.md).
            child.updates = self.updates.clone();
            children.push((name, tokio::spawn(child.run_single())));
        }
        self.stats().set_state(InputState::Running);
        tracing::info!(target: LOG_TARGET, input = %input, workers = children.len(), "one worker per plugin (isolation = \"plugin\")");
        for (name, task) in children {
            if let Err(error) = task.await {
                tracing::error!(target: LOG_TARGET, input = %name, %error, "plugin supervisor ended abnormally");
            }
            stats.remove_input(&name);
        }
        self.stats().set_state(InputState::Stopped);
    }
}
