//! The few things a supervisor does to a worker, as traits.
//!
//! The drivers ([`super::single`], [`super::isolated`]) carry out the state machine's
//! actions through [`WorkerStarter`] and [`WorkerHandle`]: start a worker, read its
//! lifecycle events, send it commands, kill it, reap it, ask its pid and resident
//! memory. The agent uses [`Processes`], whose handle is a real
//! [`crate::worker::Session`]; the drivers' unit tests use a scripted fake, so the
//! driving itself is tested without Python (the supervision rules are tested in
//! [`super::machine`]; real workers in tests/supervision.rs and its neighbours).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use crate::worker::protocol::Command;
use crate::worker::{Event, Session, SessionContext, SpawnError, WorkerSpec};

/// One started worker.
pub trait WorkerHandle: Send + 'static {
    fn pid(&self) -> u32;
    /// Its resident memory in bytes, if it can be read.
    fn rss(&self) -> Option<u64>;
    /// The next lifecycle event; `None` once the worker is gone. Cancel-safe.
    fn next_event(&mut self) -> impl Future<Output = Option<Event>> + Send;
    /// Writes a command; an error means the worker is gone or stopped reading.
    fn send(&mut self, command: &Command<'_>) -> impl Future<Output = std::io::Result<()>> + Send;
    /// SIGKILL to its process group.
    fn kill(&self);
    /// Why it went away, once [`WorkerHandle::next_event`] said so.
    fn end_reason(&self) -> String;
    /// Waits up to `grace` for it to exit, kills what is left, reaps it; says how it
    /// ended.
    fn finish(self, grace: Duration) -> impl Future<Output = String> + Send;
}

/// Starts workers.
pub trait WorkerStarter: Clone + Send + Sync + 'static {
    type Handle: WorkerHandle;
    fn start(
        &self,
        spec: &WorkerSpec,
        ctx: &Arc<SessionContext>,
    ) -> Result<Self::Handle, SpawnError>;
}

/// Real worker processes.
#[derive(Clone, Copy, Debug, Default)]
pub struct Processes;

impl WorkerStarter for Processes {
    type Handle = Session;

    fn start(&self, spec: &WorkerSpec, ctx: &Arc<SessionContext>) -> Result<Session, SpawnError> {
        Session::start(spec, ctx.clone())
    }
}

impl WorkerHandle for Session {
    fn pid(&self) -> u32 {
        Session::pid(self)
    }

    fn rss(&self) -> Option<u64> {
        crate::worker::process::rss_bytes(Session::pid(self))
    }

    fn next_event(&mut self) -> impl Future<Output = Option<Event>> + Send {
        Session::next_event(self)
    }

    fn send(&mut self, command: &Command<'_>) -> impl Future<Output = std::io::Result<()>> + Send {
        Session::send(self, command)
    }

    fn kill(&self) {
        Session::kill(self);
    }

    fn end_reason(&self) -> String {
        Session::end_reason(self)
    }

    fn finish(self, grace: Duration) -> impl Future<Output = String> + Send {
        Session::finish(self, grace)
    }
}

/// A scripted stand-in for a worker, for the drivers' unit tests.
#[cfg(test)]
pub mod fake {
    use std::collections::VecDeque;
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::{Arc, Mutex};

    use tokio::sync::mpsc;

    use super::*;
    use crate::worker::protocol::{Done, Hello, PluginInfo, PROTOCOL_VERSION};

    /// What the next started worker does.
    #[derive(Clone, Debug)]
    pub enum Script {
        /// Its interpreter cannot be started.
        FailToStart,
        /// It exits before saying `hello`.
        ExitAtOnce,
        /// It says `hello` with these plugins; runs of the plugins named in `hang`
        /// never answer, the others succeed at once.
        Hello {
            plugins: Vec<&'static str>,
            hang: Vec<&'static str>,
        },
    }

    /// Starts fake workers following a script; the last entry repeats.
    #[derive(Clone, Default)]
    pub struct FakeStarter {
        script: Arc<Mutex<VecDeque<Script>>>,
        /// Workers started (and attempts that failed), and kills.
        pub starts: Arc<AtomicU32>,
        pub kills: Arc<AtomicU32>,
    }

    impl FakeStarter {
        pub fn new(script: impl IntoIterator<Item = Script>) -> Self {
            Self {
                script: Arc::new(Mutex::new(script.into_iter().collect())),
                ..Self::default()
            }
        }

        fn next(&self) -> Script {
            let mut script = self.script.lock().expect("script");
            match script.len() {
                0 => Script::ExitAtOnce,
                1 => script[0].clone(),
                _ => script.pop_front().unwrap_or(Script::ExitAtOnce),
            }
        }
    }

    pub fn plugin(id: &str) -> PluginInfo {
        PluginInfo {
            id: id.to_string(),
            name: id.rsplit('.').next().unwrap_or(id).to_lowercase(),
            file: String::new(),
            interval: 1.0,
            long_running: false,
            kind: "datakit".to_string(),
        }
    }

    pub struct FakeWorker {
        pid: u32,
        events: mpsc::UnboundedReceiver<Event>,
        tx: mpsc::UnboundedSender<Event>,
        hang: Vec<&'static str>,
        gone: bool,
        kills: Arc<AtomicU32>,
    }

    impl WorkerStarter for FakeStarter {
        type Handle = FakeWorker;

        fn start(
            &self,
            spec: &WorkerSpec,
            _: &Arc<SessionContext>,
        ) -> Result<FakeWorker, SpawnError> {
            let n = self.starts.fetch_add(1, Ordering::SeqCst) + 1;
            let (tx, events) = mpsc::unbounded_channel();
            let mut worker = FakeWorker {
                pid: 1000 + n,
                events,
                tx,
                hang: Vec::new(),
                gone: false,
                kills: self.kills.clone(),
            };
            match self.next() {
                Script::FailToStart => {
                    return Err(SpawnError::InterpreterNotFound(spec.cmd.clone()))
                }
                Script::ExitAtOnce => worker.gone = true,
                Script::Hello { plugins, hang } => {
                    worker.hang = hang;
                    let _ = worker.tx.send(Event::Hello(Hello {
                        v: PROTOCOL_VERSION,
                        pid: worker.pid,
                        python: "3.fake".to_string(),
                        plugins: plugins.into_iter().map(plugin).collect(),
                        errors: Vec::new(),
                    }));
                }
            }
            Ok(worker)
        }
    }

    impl WorkerHandle for FakeWorker {
        fn pid(&self) -> u32 {
            self.pid
        }

        fn rss(&self) -> Option<u64> {
            None
        }

        async fn next_event(&mut self) -> Option<Event> {
            if self.gone {
                return None;
            }
            self.events.recv().await
        }

        async fn send(&mut self, command: &Command<'_>) -> std::io::Result<()> {
            if self.gone {
                return Err(std::io::ErrorKind::BrokenPipe.into());
            }
            if let Command::Run { plugin, run } = command {
                if !self.hang.iter().any(|h| h == plugin) {
                    let _ = self.tx.send(Event::Done(Done {
                        plugin: plugin.to_string(),
                        run: *run,
                        ok: true,
                        seconds: 0.0,
                        error: None,
                    }));
                }
            }
            Ok(())
        }

        fn kill(&self) {
            self.kills.fetch_add(1, Ordering::SeqCst);
        }

        fn end_reason(&self) -> String {
            "its process exited".to_string()
        }

        async fn finish(self, _grace: Duration) -> String {
            if self.gone {
                "exited with status 1".to_string()
            } else {
                "exited with status 0".to_string()
            }
        }
    }
}
