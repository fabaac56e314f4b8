//! The agent's data directory (`[agent] data_dir`), private to the agent's user.
//!
//! It holds the disk buffers (points not yet delivered), git checkouts that may carry
//! credentials in their config, state dumps and the Python runtime. Created under a
//! permissive umask (outside the package, whose unit sets `StateDirectoryMode=0750`) it
//! would be readable by every user. [`prepare`] creates it `0700` whatever the umask;
//! one that exists loses every permission for others and keeps its group's (the
//! package's `0750` gives the `pythond` group read access on purpose). Nothing below it
//! is then reachable by other users (docs/OPERATIONS.md, "Files").

use std::fs;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// The mode a new data directory is created with.
pub const DATA_DIR_MODE: u32 = 0o700;
/// The permission bits for others, taken off an existing data directory.
const OTHERS: u32 = 0o007;

/// Why the data directory could not be made private.
#[derive(Debug, thiserror::Error)]
pub enum DataDirError {
    #[error("cannot create the data directory {path}: {source}")]
    Create {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot take the permissions for others off the data directory {path}: {source}")]
    Restrict {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Creates `dir` (and missing parents) with mode 0700, or takes the permissions for
/// others off the existing one: then nothing below it is reachable by other users,
/// whatever the modes the umask gave the files in it.
pub fn prepare(dir: &Path) -> Result<(), DataDirError> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(DATA_DIR_MODE)
        .create(dir)
        .map_err(|source| DataDirError::Create {
            path: dir.to_path_buf(),
            source,
        })?;
    let mode = fs::metadata(dir)
        .map(|m| m.permissions().mode() & 0o7777)
        .unwrap_or(DATA_DIR_MODE);
    restrict(dir, mode & !OTHERS).map_err(|source| DataDirError::Restrict {
        path: dir.to_path_buf(),
        source,
    })
}

/// Sets `mode` on `path` unless it already has no more than that.
fn restrict(path: &Path, mode: u32) -> std::io::Result<()> {
    let current = fs::metadata(path)?.permissions().mode() & 0o7777;
    if current & !mode == 0 {
        return Ok(());
    }
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(path: &Path) -> u32 {
        fs::metadata(path).expect("stat").permissions().mode() & 0o777
    }

    #[test]
    fn a_new_data_dir_is_private() {
        let root = tempfile::tempdir().expect("tempdir");
        let dir = root.path().join("a/data");
        prepare(&dir).expect("prepare");
        assert_eq!(mode(&dir), 0o700);
    }

    #[test]
    fn an_existing_data_dir_is_closed_to_others_and_keeps_its_group() {
        let root = tempfile::tempdir().expect("tempdir");
        let dir = root.path().join("data");
        fs::create_dir(&dir).expect("mkdir");
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o775)).expect("chmod");
        prepare(&dir).expect("prepare");
        assert_eq!(mode(&dir), 0o770);
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o750)).expect("chmod");
        prepare(&dir).expect("prepare");
        assert_eq!(mode(&dir), 0o750);
    }
}
