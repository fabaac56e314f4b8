//! The Python half of pythond, embedded in the binary.
//!
//! The shim (`datakit_framework.py`), the runner (`pythond_worker.py`), its instance
//! pool (`pythond_pool.py`) and the compatibility modules for the other collector kinds
//! (`pythond_kinds.py`, `syslogng.py`, the `ZenPacks`/`Products` import paths of
//! zenpython plugins; see docs/MIGRATING.md) are compiled into the agent so that the two
//! ends of the protocol always match and `cargo install` alone gives a working agent.
//! At start-up they are written to a
//! runtime directory (rewritten only when their content differs, atomically, so a
//! worker starting concurrently never imports a half-written file).

use std::path::{Path, PathBuf};

/// `(path in the runtime directory, content)` of a file under `python/`.
macro_rules! module {
    ($path:literal) => {
        ($path, include_str!(concat!("../../python/", $path)))
    };
}

const SHIM: &str = include_str!("../../python/datakit_framework.py");
const RUNNER: &str = include_str!("../../python/pythond_worker.py");

/// The modules besides the shim and the runner, by their path in the runtime directory.
const MODULES: &[(&str, &str)] = &[
    module!("pythond_pool.py"),
    module!("pythond_kinds.py"),
    module!("pythond_settings.py"),
    module!("syslogng.py"),
    module!("ZenPacks/__init__.py"),
    module!("ZenPacks/zenoss/__init__.py"),
    module!("ZenPacks/zenoss/PythonCollector/__init__.py"),
    module!("ZenPacks/zenoss/PythonCollector/datasources/__init__.py"),
    module!("ZenPacks/zenoss/PythonCollector/datasources/PythonDataSource.py"),
    module!("Products/__init__.py"),
    module!("Products/ZenEvents/__init__.py"),
    module!("Products/ZenEvents/ZenEventClasses.py"),
    module!("Products/DataCollector/__init__.py"),
    module!("Products/DataCollector/plugins/__init__.py"),
    module!("Products/DataCollector/plugins/DataMaps.py"),
    module!("Products/ZenUtils/__init__.py"),
    module!("Products/ZenUtils/Utils.py"),
];

/// The file name of the runner script inside the runtime directory.
pub const RUNNER_FILE: &str = "pythond_worker.py";

/// A directory holding the shim and the runner.
#[derive(Debug)]
pub struct Runtime {
    dir: PathBuf,
    /// Where collectors keep durable state (`syslogng.Persist`), one directory per input.
    state_dir: PathBuf,
    // Keeps a temporary runtime directory alive (and removes it on drop).
    _temp: Option<tempfile::TempDir>,
}

impl Runtime {
    /// Installs the runtime into `dir` (created if needed).
    pub fn install(dir: &Path) -> std::io::Result<Self> {
        std::fs::create_dir_all(dir).map_err(|e| with_path(e, dir))?;
        write_if_changed(&dir.join("datakit_framework.py"), SHIM)?;
        write_if_changed(&dir.join(RUNNER_FILE), RUNNER)?;
        for (relative, content) in MODULES {
            let path = dir.join(relative);
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent).map_err(|e| with_path(e, parent))?;
            }
            write_if_changed(&path, content)?;
        }
        Ok(Self {
            dir: dir.to_path_buf(),
            state_dir: dir.join("state"),
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

    /// Keeps collectors' durable state in `dir` (the agent's `data_dir/state`, see
    /// docs/CONFIG.md) instead of inside the runtime directory.
    pub fn with_state_dir(mut self, dir: PathBuf) -> Self {
        self.state_dir = dir;
        self
    }

    /// Where collectors keep durable state.
    pub fn state_dir(&self) -> &Path {
        &self.state_dir
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

    #[test]
    fn installs_every_module_of_the_other_collector_kinds() {
        let dir = tempfile::tempdir().expect("tempdir");
        Runtime::install(dir.path()).expect("install");
        for (relative, content) in MODULES {
            let written = std::fs::read_to_string(dir.path().join(relative)).expect(relative);
            assert_eq!(&written, content, "{relative}");
        }
        // Every .py under python/ that is not a test ships in the binary.
        let python = Path::new(env!("CARGO_MANIFEST_DIR")).join("python");
        let mut missing = Vec::new();
        let mut stack = vec![python.clone()];
        while let Some(dir) = stack.pop() {
            for entry in std::fs::read_dir(&dir).expect("read python/") {
                let path = entry.expect("entry").path();
                let relative = path.strip_prefix(&python).expect("under python/");
                if path.is_dir() {
                    if relative != Path::new("tests") && !relative.ends_with("__pycache__") {
                        stack.push(path);
                    }
                    continue;
                }
                let name = relative.to_string_lossy().into_owned();
                let shipped = name == "datakit_framework.py"
                    || name == RUNNER_FILE
                    || MODULES.iter().any(|(m, _)| *m == name);
                if name.ends_with(".py") && !shipped {
                    missing.push(name);
                }
            }
        }
        assert!(
            missing.is_empty(),
            "not embedded in the runtime: {missing:?}"
        );
    }
}
