//! Configuration errors and source locations.
//!
//! Owns [`ConfigError`] and [`Origin`]. Every problem found in a configuration file
//! is reported with the file and the 1-based line it concerns, and — when a key is
//! involved — the key, so that `pythond config check` and the agent's log can point
//! the user at the exact place to fix. Files that cannot be read at all are reported
//! with their path and the operating-system error.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

/// Where an input (or another configuration item) was declared: a file and the
/// 1-based line of its table header.
///
/// Displayed as `file:line`, the form editors and terminals recognise. The default
/// (empty path, line 0) stands for "not from a file", e.g. an input built by
/// `pythond check`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Origin {
    /// The configuration file, as it was given to the loader.
    pub file: PathBuf,
    /// 1-based line of the table header (e.g. `[[inputs.pythond]]`).
    pub line: usize,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.file.display(), self.line)
    }
}

/// A configuration problem.
///
/// The `Display` form always starts with the file, followed by the line when there
/// is one, e.g.
///
/// ```text
/// conf.d/x.conf:7: unknown key `intreval` in [[inputs.pythond]] (expected one of: name, cmd, dirs, envs, interval, timeout, tags, transport)
/// conf.d/x.conf:3: invalid value for key `interval` in [[inputs.pythond]]: must be greater than zero
/// pythond.toml:2: TOML syntax error at column 9: invalid string
/// /etc/pythond/pythond.toml: No such file or directory (os error 2)
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A file or directory could not be read (missing, permissions, not UTF-8, ...).
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or directory that could not be read.
        path: PathBuf,
        /// The underlying operating-system error.
        #[source]
        source: io::Error,
    },
    /// The text is not valid TOML (unterminated string, duplicate key, ...).
    #[error("{}:{line}: TOML syntax error at column {column}: {message}", file.display())]
    Syntax {
        /// The file the text came from.
        file: PathBuf,
        /// 1-based line of the error.
        line: usize,
        /// 1-based column (in characters) of the error.
        column: usize,
        /// The parser's description, on one line.
        message: String,
    },
    /// The TOML is well-formed but a key or value is not acceptable: unknown key,
    /// missing required key, wrong type, bad duration, duplicate input name, ...
    #[error("{}:{line}: {message}", file.display())]
    Invalid {
        /// The file the problem is in.
        file: PathBuf,
        /// 1-based line of the offending key or value (for a missing key: the
        /// header of the table that lacks it).
        line: usize,
        /// The key concerned, relative to the table named in `message` (for example
        /// `interval`, `tags.team`, or `region` in `[global_tags]`).
        key: String,
        /// Human-readable description; already names the key and the table.
        message: String,
    },
}

impl ConfigError {
    /// The file (or directory, for I/O errors) the error is about.
    pub fn file(&self) -> &Path {
        match self {
            ConfigError::Io { path, .. } => path,
            ConfigError::Syntax { file, .. } | ConfigError::Invalid { file, .. } => file,
        }
    }

    /// The 1-based line, when the error is about a place inside a file.
    pub fn line(&self) -> Option<usize> {
        match self {
            ConfigError::Io { .. } => None,
            ConfigError::Syntax { line, .. } | ConfigError::Invalid { line, .. } => Some(*line),
        }
    }

    /// The key concerned, when there is one.
    pub fn key(&self) -> Option<&str> {
        match self {
            ConfigError::Invalid { key, .. } => Some(key),
            _ => None,
        }
    }

    pub(crate) fn io(path: &Path, source: io::Error) -> Self {
        ConfigError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}
