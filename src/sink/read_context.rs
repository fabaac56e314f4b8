//! What a sink type's configuration reader receives beside its own `[[sinks]]` table
//! (docs/CONFIG.md, "[[sinks]]"): the configuration file's directory, the agent's own
//! tags, and the paths the file sinks read so far.
//!
//! A module of its own so that the type modules (`stdout.rs`, `file.rs`,
//! `line_protocol.rs`, `prometheus_remote_write.rs`, `otlp/`) depend on it alone,
//! while the registry, which lists them and maps each onto its `SinkKind` variant,
//! depends on them: no type module imports the list it is part of.

use std::cell::RefCell;
use std::path::{Path, PathBuf};

/// What a sink type's reader may need beside its own table.
pub struct ReadContext<'a> {
    /// Directory of the configuration file: relative paths start there.
    pub base: &'a Path,
    /// `host` and the `[global_tags]` keys: the tags every point of this agent
    /// carries, which describe the agent rather than the point.
    pub agent_tags: &'a [String],
    /// Paths of the file sinks read so far, with their lines (two file sinks must
    /// not write the same file).
    pub file_paths: RefCell<Vec<(PathBuf, usize)>>,
}
