//! What status shows about one git-synced script repository (docs/OPERATIONS.md).
//!
//! src/gitsync.rs fills these in as it clones and pulls; [`crate::stats::Stats`] keeps
//! the list for status. The value type lives with the stats so that the stats depend
//! on no git code.

use serde::Serialize;

/// What status shows about one repository.
#[derive(Clone, Debug, Default, Serialize, PartialEq, Eq)]
pub struct GitRepoStatus {
    /// Checkout name (directory under `<data_dir>/gitrepos/`).
    pub name: String,
    /// The URL, userinfo redacted.
    pub url: String,
    /// The branch followed (the remote's default branch when not configured).
    pub branch: Option<String>,
    /// The commit checked out, as a hex id.
    pub commit: Option<String>,
    /// When the last pull succeeded, in Unix milliseconds.
    pub last_pull_unix_ms: Option<u64>,
    /// Why the last pull failed; `None` after a successful pull.
    pub last_error: Option<String>,
    /// Pulls that succeeded since the agent started.
    pub pulls: u64,
    /// Pulls that failed since the agent started.
    pub failures: u64,
}
