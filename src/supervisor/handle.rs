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
