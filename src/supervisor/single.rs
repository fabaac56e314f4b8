//! The driver of one worker: carries out the state machine's actions.
//!
//! [`InputSupervisor::drive`] owns the worker handle and loops: it takes the next
//! [`Action`] of the [`WorkerMachine`] and does it (start, send, kill, reap, wait,
//! report), and when there is nothing left to do it waits for whichever comes first —
//! shutdown, an event from the worker, the machine's next wake-up, a `max_age` /
//! `max_rss` check, a reload's new instances — and feeds it to the machine. What is
//! particular to a plain input (its plugins' stats when a worker is ready) is here;
//! what is particular to an input with `instances` is in [`super::pooled`], to
//! discovery in [`super::isolated`]. The driver decides nothing itself.

use std::collections::VecDeque;
use std::time::Duration;

use tokio::time::Instant;

use super::handle::{WorkerHandle, WorkerStarter};
use super::internal_events::{load_errors, InternalEvent, LOG_TARGET};
use super::machine::{Action, Event, Mode, PluginPlan, Policy, State, WorkerMachine};
use super::pooled::{abandoned_bound, Pool};
use super::{plugin_timing, InputSupervisor};
use crate::stats::{InputState, PluginState};
use crate::worker::protocol::{Command, Hello};
use crate::worker::{self, WorkerSpec};

/// How often `max_age` / `max_rss` are checked while nothing else happens.
const RECYCLE_CHECK: Duration = Duration::from_secs(1);

/// What a driver keeps about its kind of worker.
pub(super) enum Work {
    /// A plain input: the `hello` of the current worker.
    Plain { hello: Option<Hello> },
    /// An input with `instances`.
    Pooled(Box<Pool>),
    /// The discovery worker of `isolation = "plugin"`: its `hello`, once it came.
    Discover { hello: Option<Hello> },
}

/// What ended a wait.
enum Woke {
    Shutdown,
    Tick,
    RecycleCheck,
    Update(bool),
    Worker(Option<worker::Event>),
}

impl<S: WorkerStarter> InputSupervisor<S> {
    /// One worker for the whole input, restarted until shutdown.
    pub(super) async fn run_single(self) {
        let (mode, mut work) = if self.config.has_instances() {
            let pool = Pool::new(self.updates.clone());
            (Mode::Pooled, Work::Pooled(Box::new(pool)))
        } else {
            (Mode::Plain, Work::Plain { hello: None })
        };
        let mut machine = WorkerMachine::new(mode, self.policy());
        let spec = self.launch.render();
        self.drive(&mut machine, &mut work, &spec).await;
        self.stats().set_state(InputState::Stopped);
    }

    pub(super) fn policy(&self) -> Policy {
        Policy {
            grace: self.grace,
            max_age: self.config.max_age,
            max_rss: self.config.max_rss,
            abandoned_bound: abandoned_bound(&self.config),
        }
    }

    pub(super) async fn report(&self, event: InternalEvent) {
        event.emit(&self.reporter).await;
    }

    /// Runs `machine` against workers started from `spec` until it says stop.
    pub(super) async fn drive(
        &self,
        machine: &mut WorkerMachine,
        work: &mut Work,
        spec: &WorkerSpec,
    ) {
        let mut worker: Option<S::Handle> = None;
        let mut queue: VecDeque<Action> = machine.start().into();
        loop {
            if let Some(state) = machine.input_state() {
                self.stats().set_state(state);
            }
            let Some(action) = queue.pop_front() else {
                let Some(handle) = worker.as_mut() else {
                    // The machine waits for a worker that is not there: nothing can
                    // happen any more (not reached with a consistent machine).
                    return;
                };
                queue.extend(self.wait(machine, handle, work).await);
                continue;
            };
            match action {
                Action::Spawn => {
                    let event = if self.shutdown.is_cancelled() {
                        Event::ShutdownAsked
                    } else {
                        match self.starter.start(spec, &self.ctx) {
                            Ok(handle) => {
                                let pid = handle.pid();
                                worker = Some(handle);
                                Event::Spawned {
                                    at: Instant::now(),
                                    pid,
                                }
                            }
                            Err(error) => Event::SpawnFailed {
                                at: Instant::now(),
                                error: error.to_string(),
                            },
                        }
                    };
                    queue.extend(machine.handle(event));
                }
                Action::Ready => {
                    if let Some(handle) = worker.as_mut() {
                        queue.extend(self.ready(machine, handle, work).await);
                    }
                }
                Action::SendRun { plugin, run } => {
                    let command = Command::Run {
                        plugin: &plugin,
                        run,
                    };
                    if let Err(error) = send(worker.as_mut(), &command).await {
                        // The rest of this round is moot: the session is over.
                        queue.clear();
                        queue.extend(machine.handle(Event::SendFailed {
                            command: "run",
                            error: error.to_string(),
                        }));
                    }
                }
                Action::Pause {
                    plugin,
                    instance,
                    cooloff,
                } => {
                    let command = Command::Pause {
                        plugin: &plugin,
                        instance: &instance,
                        until: super::pooled::unix_now() + cooloff.as_secs_f64(),
                    };
                    if let Err(error) = send(worker.as_mut(), &command).await {
                        queue.clear();
                        queue.extend(machine.handle(Event::SendFailed {
                            command: "pause",
                            error: error.to_string(),
                        }));
                    }
                }
                Action::SendShutdown { grace } => {
                    let command = Command::Shutdown {
                        grace: grace.as_secs_f64(),
                    };
                    let _ = send(worker.as_mut(), &command).await;
                }
                Action::Kill => {
                    if let Some(handle) = worker.as_ref() {
                        handle.kill();
                    }
                }
                Action::Finish { grace } => {
                    let how = match worker.take() {
                        Some(handle) => handle.finish(grace).await,
                        None => "not running".to_string(),
                    };
                    queue.extend(machine.handle(Event::Finished {
                        at: Instant::now(),
                        how,
                    }));
                }
                Action::WaitRestart(_) => {
                    let until = machine.next_wakeup().unwrap_or_else(Instant::now);
                    let event = tokio::select! {
                        _ = self.shutdown.cancelled() => Event::ShutdownAsked,
                        _ = tokio::time::sleep_until(until) => Event::Tick(Instant::now().max(until)),
                    };
                    queue.extend(machine.handle(event));
                }
                Action::Emit(event) => self.report(event).await,
                Action::Stop => {
                    if let Some(state) = machine.input_state() {
                        self.stats().set_state(state);
                    }
                    return;
                }
            }
        }
    }

    /// Waits for the next thing that happens to a live worker and feeds it to the
    /// machine.
    async fn wait(
        &self,
        machine: &mut WorkerMachine,
        handle: &mut S::Handle,
        work: &mut Work,
    ) -> Vec<Action> {
        if machine.checks_recycling() {
            let rss = self.config.max_rss.and_then(|_| handle.rss());
            let actions = machine.handle(Event::RecycleCheck {
                at: Instant::now(),
                rss,
            });
            if !actions.is_empty() {
                return actions;
            }
        }
        let running = machine.state() == &State::Running;
        let wake = machine.next_wakeup();
        let recycle = machine.checks_recycling();
        let woke = {
            let update = async {
                match work {
                    Work::Pooled(pool) if running => pool.changed().await,
                    _ => std::future::pending().await,
                }
            };
            tokio::select! {
                biased;
                _ = self.shutdown.cancelled() => Woke::Shutdown,
                changed = update => Woke::Update(changed),
                event = handle.next_event() => Woke::Worker(event),
                _ = sleep_until(wake) => Woke::Tick,
                _ = sleep_until(recycle.then(|| Instant::now() + RECYCLE_CHECK)) => Woke::RecycleCheck,
            }
        };
        match woke {
            Woke::Shutdown => machine.handle(Event::ShutdownAsked),
            Woke::Tick => machine.handle(Event::Tick(Instant::now())),
            // The check is made when the driver comes back here.
            Woke::RecycleCheck => Vec::new(),
            Woke::Update(changed) => match work {
                Work::Pooled(pool) => self.update_instances(machine, handle, pool, changed).await,
                _ => Vec::new(),
            },
            Woke::Worker(None) => machine.handle(Event::Exited {
                reason: handle.end_reason(),
            }),
            Woke::Worker(Some(event)) => self.on_worker_event(machine, work, event),
        }
    }

    /// An event from the worker: a `hello` becomes the machine's [`Event::Hello`],
    /// answers go to the machine (plain) or the pool's bookkeeping (pooled).
    fn on_worker_event(
        &self,
        machine: &mut WorkerMachine,
        work: &mut Work,
        event: worker::Event,
    ) -> Vec<Action> {
        let input = &self.config.name;
        let waiting = matches!(machine.state(), State::WaitingHello { .. });
        match event {
            worker::Event::Hello(hello) if waiting => {
                let version = hello.v;
                let plugins = match work {
                    Work::Plain { hello: slot } => {
                        let plans = hello
                            .plugins
                            .iter()
                            .map(|plugin| PluginPlan {
                                id: plugin.id.clone(),
                                timing: plugin_timing(&self.config, plugin),
                                enabled: self
                                    .config
                                    .plugin_override(&plugin.id, &plugin.name)
                                    .map_or(true, |o| o.enabled),
                            })
                            .collect();
                        *slot = Some(hello);
                        plans
                    }
                    Work::Pooled(pool) => {
                        pool.hello = Some(hello);
                        Vec::new()
                    }
                    Work::Discover { hello: slot } => {
                        *slot = Some(hello);
                        Vec::new()
                    }
                };
                machine.handle(Event::Hello {
                    at: Instant::now(),
                    version,
                    plugins,
                })
            }
            // Before the handshake nothing else is expected; a stray frame is dropped.
            _ if waiting => Vec::new(),
            worker::Event::Hello(_) => {
                tracing::warn!(target: LOG_TARGET, input = %input, "worker said hello twice; ignored");
                Vec::new()
            }
            event => match work {
                Work::Pooled(pool) => self.on_pool_event(machine, pool, event),
                Work::Plain { .. } | Work::Discover { .. } => match event {
                    worker::Event::Done(done) => machine.handle(Event::Done(done)),
                    _ => {
                        tracing::debug!(target: LOG_TARGET, input = %input, "pool frame from a worker without instances; ignored");
                        Vec::new()
                    }
                },
            },
        }
    }

    /// The machine took a worker's `hello`: register what it runs.
    async fn ready(
        &self,
        machine: &mut WorkerMachine,
        handle: &mut S::Handle,
        work: &mut Work,
    ) -> Vec<Action> {
        match work {
            Work::Plain { hello: Some(hello) } => {
                self.adopt_plugins(machine, hello).await;
                Vec::new()
            }
            Work::Pooled(pool) => self.start_pool(machine, handle, pool).await,
            Work::Plain { hello: None } | Work::Discover { .. } => Vec::new(),
        }
    }

    /// A plain worker said `hello`: its plugins' stats, what failed to load, and the
    /// overrides that match nothing.
    async fn adopt_plugins(&self, machine: &WorkerMachine, hello: &Hello) {
        self.report(InternalEvent::CollectorsLoaded {
            errors: load_errors(&hello.errors),
            plugins: hello.plugins.len(),
            dirs: self.config.dirs.clone(),
        })
        .await;
        let ids: Vec<&str> = hello.plugins.iter().map(|p| p.id.as_str()).collect();
        self.stats().retain_plugins(&ids);
        // A plugin's own worker (isolation = "plugin") sees only its plugin; the
        // discovery worker already had all of them.
        if self.config.name == self.ctx.input {
            for event in super::unmatched_overrides(&self.config, &hello.plugins) {
                self.report(event).await;
            }
        }
        for plugin in &hello.plugins {
            let stats = self.stats().plugin(&plugin.id);
            stats.set_kind(&plugin.kind);
            let enabled = self
                .config
                .plugin_override(&plugin.id, &plugin.name)
                .map_or(true, |o| o.enabled);
            if !enabled {
                self.report(InternalEvent::PluginDisabled {
                    plugin: plugin.id.clone(),
                })
                .await;
            } else if !machine.is_quarantined(&plugin.id) {
                stats.set_state(PluginState::Idle);
            }
        }
        self.report(InternalEvent::WorkerReady {
            pid: hello.pid,
            python: hello.python.clone(),
            plugins: ids.iter().map(ToString::to_string).collect(),
        })
        .await;
    }
}

/// Sends `command` to the worker, if there is one.
pub(super) async fn send<H: WorkerHandle>(
    handle: Option<&mut H>,
    command: &Command<'_>,
) -> std::io::Result<()> {
    match handle {
        Some(handle) => handle.send(command).await,
        None => Err(std::io::Error::from(std::io::ErrorKind::NotConnected)),
    }
}

/// Sleeps until `at`; never returns for `None`.
async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::atomic::Ordering;
    use std::sync::Arc;

    use tokio_util::sync::CancellationToken;

    use super::super::handle::fake::{FakeStarter, Script};
    use super::*;
    use crate::ingest::Ingest;
    use crate::stats::{InputStats, Stats};
    use crate::worker::SessionContext;

    /// Generous: the fake answers at once; only the input's own timing takes time.
    const DEADLINE: Duration = Duration::from_secs(30);

    struct Rig {
        stats: Arc<Stats>,
        shutdown: CancellationToken,
        starter: FakeStarter,
        task: tokio::task::JoinHandle<()>,
    }

    fn start(extra: &str, script: Vec<Script>) -> Rig {
        let text = format!(
            "[[inputs.pythond]]\nname = \"in\"\ncmd = \"python3\"\ndirs = [\"d\"]\n{extra}"
        );
        let (mut inputs, _) =
            crate::config::parse_inputs(&text, std::path::Path::new("x.conf")).expect("parses");
        let config = inputs.remove(0);
        let stats = Stats::new();
        let sinks = crate::sink::Sinks::start(&[]).expect("no sinks");
        let ingest = Arc::new(Ingest::new(stats.clone(), BTreeMap::new(), sinks));
        let ctx = Arc::new(SessionContext {
            input: "in".to_string(),
            tags: ingest.input_tags(&config.tags),
            ingest,
            stats: stats.input("in"),
        });
        let launch = crate::worker::Launch {
            input: "in".to_string(),
            cmd: "python3".to_string(),
            runner: "runner.py".into(),
            max_frame: 1 << 20,
            paths: Vec::new(),
            transport: crate::worker::launch::Transport::Pipe,
            mode: crate::worker::launch::Mode::All,
            process: crate::worker::slot::ProcessSlot::SINGLE,
            envs: Vec::new(),
            options: serde_json::Value::Null,
            kinds: serde_json::Value::Null,
        };
        let shutdown = CancellationToken::new();
        let starter = FakeStarter::new(script);
        let supervisor = InputSupervisor::with_starter(
            config,
            launch,
            ctx,
            shutdown.clone(),
            Duration::from_secs(1),
            starter.clone(),
        )
        .isolated(stats.clone());
        Rig {
            stats,
            shutdown,
            starter,
            task: tokio::spawn(supervisor.run()),
        }
    }

    impl Rig {
        fn input(&self) -> Arc<InputStats> {
            self.stats.input("in")
        }

        async fn until(&self, what: &str, done: impl Fn(&Rig) -> bool) {
            let deadline = Instant::now() + DEADLINE;
            while !done(self) {
                assert!(Instant::now() < deadline, "timed out waiting for {what}");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }

        async fn stop(self) -> Arc<Stats> {
            self.shutdown.cancel();
            tokio::time::timeout(DEADLINE, self.task)
                .await
                .expect("stops")
                .expect("no panic");
            self.stats
        }
    }

    #[tokio::test]
    async fn hangs_kill_and_restart_the_worker_until_the_plugin_is_quarantined() {
        let rig = start(
            "interval = \"100ms\"\ntimeout = \"100ms\"\n",
            vec![Script::Hello {
                plugins: vec!["m.Stuck", "m.Fine"],
                hang: vec!["m.Stuck"],
            }],
        );
        rig.until("the quarantine", |r| {
            r.input().plugin("m.Stuck").state() == PluginState::Quarantined
        })
        .await;
        let input = rig.input();
        assert_eq!(input.plugin("m.Stuck").timeouts(), 3);
        assert_eq!(rig.starter.kills.load(Ordering::SeqCst), 3);
        assert_eq!(input.restarts(), 3, "restarted after each hang");
        // The fourth worker stays up and runs the other plugin.
        let runs = input.plugin("m.Fine").runs();
        rig.until("more runs of the healthy plugin", |r| {
            r.input().plugin("m.Fine").runs() > runs + 2
        })
        .await;
        assert_eq!(rig.starter.starts.load(Ordering::SeqCst), 4);
        assert_eq!(input.state(), InputState::Running);
        let stats = rig.stop().await;
        assert_eq!(stats.input("in").state(), InputState::Stopped);
    }

    #[tokio::test]
    async fn shutdown_during_the_backoff_of_a_dying_worker_stops_it_there() {
        let rig = start("", vec![Script::ExitAtOnce]);
        rig.until("a backoff", |r| {
            matches!(r.input().state(), InputState::Backoff { .. })
        })
        .await;
        assert_eq!(rig.input().restarts(), 1);
        let starts = rig.starter.starts.load(Ordering::SeqCst);
        let starter = rig.starter.clone();
        let stats = rig.stop().await;
        assert_eq!(stats.input("in").state(), InputState::Stopped);
        assert_eq!(starter.starts.load(Ordering::SeqCst), starts, "no restart");
    }

    #[tokio::test]
    async fn a_failed_discovery_is_retried_then_each_plugin_gets_its_worker() {
        let rig = start(
            "isolation = \"plugin\"\n",
            vec![
                Script::FailToStart,
                Script::ExitAtOnce,
                Script::Hello {
                    plugins: vec!["m.A", "m.B"],
                    hang: vec![],
                },
            ],
        );
        rig.until("both plugins' workers running", |r| {
            ["in/m.A", "in/m.B"].iter().all(|name| {
                r.stats
                    .existing_input(name)
                    .is_some_and(|s| s.state() == InputState::Running)
            })
        })
        .await;
        let input = rig.input();
        assert_eq!(input.restarts(), 2, "two failed discoveries");
        assert_eq!(input.state(), InputState::Running);
        let shown = rig.stats.snapshot();
        let entry = shown.inputs.iter().find(|i| i.name == "in");
        assert!(
            entry.is_some_and(|i| i.plugins.is_empty()),
            "plugins are shown per worker"
        );
        let stats = rig.stop().await;
        assert_eq!(stats.input("in").state(), InputState::Stopped);
    }
}
