//! The Python half of pythond, embedded in the binary.
//!
//! The shim (`datakit_framework.py`), the runner (`pythond_worker.py`) and its instance
//! pool (`pythond_pool.py`) are compiled
//! into the agent so that the two ends of the protocol always match and
//! `cargo install` alone gives a working agent. At start-up they are written to a
//! runtime directory (rewritten only when their content differs, atomically, so a
//! worker starting concurrently never imports a half-written file).

use std::path::{Path, PathBuf};

const SHIM: &str = include_str!("../../python/datakit_framework.py");
const RUNNER: &str = include_str!("../../python/pythond_worker.py");
/// The instance pool the runner loads for inputs with `instances`.
const POOL: &str = include_str!("../../python/pythond_pool.py");

/// The file name of the runner script inside the runtime directory.
pub const RUNNER_FILE: &str = "pythond_worker.py";

/// A directory holding the shim and the runner.
#[derive(Debug)]
pub struct Runtime {
    dir: PathBuf,
    // Keeps a temporary runtime directory alive (and removes it on drop).
    _temp: Option<tempfile::TempDir>,
}

impl Runtime {
    /// Installs the runtime into `dir` (created if needed).
    pub fn install(dir: &Path) -> std::io::Result<Self> {
        std::fs::create_dir_all(dir).map_err(|e| with_path(e, dir))?;
        write_if_changed(&dir.join("datakit_framework.py"), SHIM)?;
        write_if_changed(&dir.join("pythond_pool.py"), POOL)?;
        write_if_changed(&dir.join(RUNNER_FILE), RUNNER)?;
        Ok(Self {
            dir: dir.to_path_buf(),
            _temp: None,
        })
    }

    /// Installs the runtime into a fresh private temporary directory, removed on drop.
    /// Used by `pythond check`, which must not need a writable data directory.
    pub fn temporary() -> std::io::Result<Self> {
        let temp = tempfile::Builder::new()
            .prefix("pythond-runtime-")
            .tempdir()?;
        let mut runtime = Self::install(temp.path())?;
        runtime._temp = Some(temp);
        Ok(runtime)
    }

    /// The runner script to hand to the interpreter.
    pub fn runner(&self) -> PathBuf {
        self.dir.join(RUNNER_FILE)
    }
}

fn write_if_changed(path: &Path, content: &str) -> std::io::Result<()> {
    if std::fs::read(path).is_ok_and(|current| current == content.as_bytes()) {
        return Ok(());
    }
    let tmp = path.with_extension(format!("tmp.{}", std::process::id()));
    std::fs::write(&tmp, content).map_err(|e| with_path(e, &tmp))?;
    std::fs::rename(&tmp, path).map_err(|e| with_path(e, path))
}

fn with_path(error: std::io::Error, path: &Path) -> std::io::Error {
    std::io::Error::new(error.kind(), format!("{}: {error}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn installs_both_files_and_repairs_a_modified_one() {
        let dir = tempfile::tempdir().expect("tempdir");
        let runtime = Runtime::install(dir.path()).expect("install");
        assert_eq!(
            std::fs::read_to_string(runtime.runner()).expect("runner"),
            RUNNER
        );
        std::fs::write(dir.path().join("datakit_framework.py"), "broken").expect("write");
        Runtime::install(dir.path()).expect("reinstall");
        let shim = std::fs::read_to_string(dir.path().join("datakit_framework.py")).expect("shim");
        assert_eq!(shim, SHIM);
    }
}
