//! Python worker processes: how one is launched (and which of an input's processes
//! it is), the embedded runtime, spawning and killing, the protocol frames, and the
//! session that listens to a running worker.

pub mod launch;
pub mod lines;
pub mod orphans;
pub mod process;
pub mod protocol;
pub mod runtime;
pub mod session;
pub mod slot;

pub use launch::Launch;
pub use process::{SpawnError, WorkerSpec};
pub use runtime::Runtime;
pub use session::{Event, Session, SessionContext};
pub use slot::ProcessSlot;
