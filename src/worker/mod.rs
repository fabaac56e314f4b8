//! Python worker processes: how one is launched, the embedded runtime, spawning and killing, the protocol frames, and the
//! session that listens to a running worker.

pub mod launch;
pub mod lines;
pub mod orphans;
pub mod process;
pub mod protocol;
pub mod runtime;
pub mod session;

pub use launch::Launch;
pub use process::{SpawnError, WorkerSpec};
pub use runtime::Runtime;
pub use session::{Event, Session, SessionContext};
