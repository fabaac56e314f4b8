//! The running inputs, and how a new desired state is applied to them.
//!
//! An [`InputSet`] maps each input name to what runs it: its own cancellation token,
//! task and [`Fingerprint`], and one [`InputSupervisor`] per worker process (one, or
//! `processes = N`, each with its share of the instances). [`InputSet::apply`]
//! compares a [`Desired`] state with what runs: removed inputs are stopped (the same
//! graceful path as shutdown, for that input alone) and forgotten by the stats; inputs
//! whose fingerprint changed are stopped and started again — unless only their
//! `instances` changed, which go to the running workers; added ones are started; the
//! others are not touched at all — same worker process, no gap. Inputs declared in a
//! file that no longer parses are left as they run. Sinks and their buffers are never
//! involved.

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::config::Transport;
use crate::http::HttpTransport;
use crate::ingest::Ingest;
use crate::reload::{Desired, DesiredInput, Fingerprint};
use crate::stats::{InputState, Stats};
use crate::supervisor::InputSupervisor;
use crate::worker::{Launch, ProcessSlot, Runtime, SessionContext};

/// One input as it runs.
struct Running {
    fingerprint: Fingerprint,
    /// The fingerprint without `instances`: equal before and after a reload that only
    /// changed instances, which then go to the running supervisor instead of a restart.
    base: Fingerprint,
    /// Hands new `instances` to the running supervisor (inputs with instances only).
    instances: Option<tokio::sync::watch::Sender<Vec<crate::config::InstanceConfig>>>,
    /// The conf file that declares it.
    file: PathBuf,
    cancel: CancellationToken,
    /// `None` when the input could not start (bad `dirs`): nothing to stop.
    task: Option<JoinHandle<()>>,
    /// False when its interpreter could not be found or executed when it started.
    startable: bool,
    /// Reports through the HTTP API (`transport = "http"`): restarted when the API
    /// moves or changes its token.
    uses_http: bool,
}

/// What [`InputSet::apply`] did, for the log and the tests.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Applied {
    pub started: Vec<String>,
    pub restarted: Vec<String>,
    pub stopped: Vec<String>,
    pub unchanged: usize,
    /// Inputs whose instances changed and were updated inside the running worker.
    pub reconfigured: Vec<String>,
}

/// The fingerprint of `input` with its `instances` left out (its files included).
fn base_fingerprint(input: &DesiredInput) -> Fingerprint {
    let mut config = input.config.clone();
    config.instances.clear();
    crate::reload::fingerprint(&config, &input.paths)
}

/// Every running input of the agent.
pub struct InputSet {
    running: BTreeMap<String, Running>,
    runtime: Arc<Runtime>,
    ingest: Arc<Ingest>,
    stats: Arc<Stats>,
    /// How `transport = "http"` inputs reach the write API; `None` when it is not
    /// running (such inputs then start on the pipe, with an error logged).
    http: Option<HttpTransport>,
    /// Parent of every input's token: cancelling it stops them all.
    shutdown: CancellationToken,
    grace: Duration,
    /// The HTTP API changed since the last apply: `transport = "http"` inputs restart.
    http_changed: bool,
}

impl InputSet {
    /// An empty set; inputs start with the first [`InputSet::apply`].
    pub fn new(
        runtime: Arc<Runtime>,
        ingest: Arc<Ingest>,
        stats: Arc<Stats>,
        http: Option<HttpTransport>,
        shutdown: CancellationToken,
        grace: Duration,
    ) -> Self {
        InputSet {
            running: BTreeMap::new(),
            runtime,
            ingest,
            stats,
            http,
            shutdown,
            grace,
            http_changed: false,
        }
    }

    /// A new `[agent] shutdown_timeout`, for inputs stopped from now on.
    pub fn set_grace(&mut self, grace: Duration) {
        self.grace = grace;
    }

    /// The HTTP API restarted (another address or token): inputs with `transport =
    /// "http"` are restarted on the next [`InputSet::apply`] to report to it.
    pub fn set_http(&mut self, http: Option<HttpTransport>) {
        self.http = http;
        self.http_changed = true;
    }

    /// Number of inputs (running or failed to start).
    pub fn len(&self) -> usize {
        self.running.len()
    }

    pub fn is_empty(&self) -> bool {
        self.running.is_empty()
    }

    /// The inputs that could not start at all: `dirs` that do not resolve, or an
    /// interpreter (`cmd`) that is not there to start (its supervisor keeps retrying).
    pub fn not_started(&self) -> Vec<String> {
        self.running
            .iter()
            .filter(|(_, running)| running.task.is_none() || !running.startable)
            .map(|(name, _)| name.clone())
            .collect()
    }

    /// Brings the running inputs to `desired`, restarting only what changed.
    pub async fn apply(&mut self, desired: Desired) -> Applied {
        let mut applied = Applied::default();
        let wanted: HashSet<&str> = desired
            .inputs
            .iter()
            .map(|i| i.config.name.as_str())
            .collect();

        // Which running inputs go: removed (unless their file is broken) or changed.
        let mut to_stop = Vec::new();
        for (name, running) in &self.running {
            if !wanted.contains(name.as_str()) {
                if desired.broken_files.contains(&running.file) {
                    tracing::warn!(input = %name, file = %running.file.display(), "config file has errors; input kept as it runs");
                    continue;
                }
                to_stop.push((name.clone(), true));
            }
        }
        for input in &desired.inputs {
            if let Some(running) = self.running.get_mut(&input.config.name) {
                let api_moved = self.http_changed && running.uses_http;
                if api_moved {
                    to_stop.push((input.config.name.clone(), false));
                } else if running.fingerprint == input.fingerprint {
                    applied.unchanged += 1;
                } else if let Some(sender) = running
                    .instances
                    .as_ref()
                    .filter(|_| input.config.has_instances())
                    .filter(|_| running.base == base_fingerprint(input))
                {
                    // Only instances changed: the worker adds, removes and re-initialises
                    // just those (src/supervisor/pooled.rs); nothing restarts.
                    tracing::info!(input = %input.config.name, instances = input.config.instances.len(), "input instances changed; updating them in the running worker");
                    sender.send_replace(input.config.instances.clone());
                    running.fingerprint = input.fingerprint;
                    applied.reconfigured.push(input.config.name.clone());
                } else {
                    to_stop.push((input.config.name.clone(), false));
                }
            }
        }

        // Stop them all at once: each gets the shutdown grace, in parallel.
        let mut stopping = Vec::new();
        self.http_changed = false;
        for (name, removed) in &to_stop {
            if let Some(running) = self.running.remove(name) {
                tracing::info!(input = %name, "{}", if *removed { "input removed from config; stopping it" } else { "input config or files changed; restarting it" });
                running.cancel.cancel();
                if let Some(task) = running.task {
                    stopping.push((name.clone(), task));
                }
            }
        }
        for (name, task) in stopping {
            if let Err(error) = task.await {
                tracing::error!(input = %name, %error, "input supervisor ended abnormally");
            }
        }
        for (name, removed) in to_stop {
            if removed {
                self.stats.remove_input(&name);
                applied.stopped.push(name);
            } else {
                applied.restarted.push(name);
            }
        }

        for input in desired.inputs {
            if self.running.contains_key(&input.config.name) {
                continue;
            }
            let name = input.config.name.clone();
            if !applied.restarted.contains(&name) {
                applied.started.push(name.clone());
            }
            let running = self.start(input);
            self.running.insert(name, running);
        }
        applied
    }

    fn start(&self, input: DesiredInput) -> Running {
        let base = base_fingerprint(&input);
        let DesiredInput {
            config,
            paths,
            fingerprint,
        } = input;
        let input_stats = self.stats.input(&config.name);
        input_stats.clear_processes();
        let cancel = self.shutdown.child_token();
        let file = config.origin.file.clone();
        let uses_http = config.transport == Transport::Http;
        let paths = match paths {
            Ok(paths) => paths,
            Err(error) => {
                let reason = error.to_string();
                tracing::error!(input = %config.name, origin = %config.origin, "{reason}; this input will not run");
                input_stats.set_state(InputState::Failed { reason });
                return Running {
                    fingerprint,
                    base,
                    instances: None,
                    file,
                    cancel,
                    task: None,
                    startable: false,
                    uses_http,
                };
            }
        };
        let mut launch = Launch::for_input(&self.runtime, &config, &paths);
        if config.transport == Transport::Http {
            match &self.http {
                Some(http) => {
                    launch.transport =
                        http.configure(&config.name, self.ingest.input_tags(&config.tags))
                }
                None => {
                    tracing::error!(input = %config.name, "transport = \"http\" but the HTTP API is not running; this input reports over the pipe")
                }
            }
        }
        tracing::info!(input = %config.name, origin = %config.origin, processes = config.processes, "starting input");
        let startable = crate::config_check::interpreter(&config.cmd).is_ok();
        // Instance changes go to the running workers (src/supervisor/pooled.rs), to
        // every process and every plugin's worker alike.
        let (instances, updates) = if config.has_instances() {
            let (sender, receiver) = tokio::sync::watch::channel(config.instances.clone());
            (Some(sender), Some(receiver))
        } else {
            (None, None)
        };
        // `processes = N`: N supervisors, each of its own worker and its share of the
        // instances (src/worker/slot.rs); one input in status, one worker per process.
        let tasks: Vec<JoinHandle<()>> = ProcessSlot::all(config.processes)
            .map(|slot| {
                let stats = if slot.is_shared() {
                    input_stats.process(slot.index(), slot.count())
                } else {
                    input_stats.clone()
                };
                let ctx = Arc::new(SessionContext {
                    input: config.name.clone(),
                    tags: self.ingest.input_tags(&config.tags),
                    ingest: self.ingest.clone(),
                    stats,
                });
                let launch = launch.clone().in_process(slot);
                let mut supervisor =
                    InputSupervisor::new(config.clone(), launch, ctx, cancel.clone(), self.grace)
                        .isolated(self.stats.clone());
                if let Some(updates) = &updates {
                    supervisor = supervisor.instance_updates(updates.clone());
                }
                tokio::spawn(supervisor.run())
            })
            .collect();
        let task = tokio::spawn(async move {
            for task in tasks {
                if let Err(error) = task.await {
                    tracing::error!(%error, "supervisor of one of the input's processes ended abnormally");
                }
            }
        });
        Running {
            fingerprint,
            base,
            instances,
            file,
            cancel,
            task: Some(task),
            startable,
            uses_http,
        }
    }

    /// Waits until every supervisor has ended (after the shutdown token was cancelled).
    pub async fn join_all(&mut self) {
        for (name, running) in std::mem::take(&mut self.running) {
            if let Some(task) = running.task {
                if let Err(error) = task.await {
                    tracing::error!(input = %name, %error, "input supervisor ended abnormally");
                }
            }
        }
    }
}
