//! Hot reload: what should be running, and when to look again.
//!
//! Owns the *desired state* computation — load the inputs of every conf directory
//! (the git repositories' `conf.d/` in `[[git_repos.repo]]` order, then the local
//! `conf_dir`), resolve their `dirs`, and give each input a [`Fingerprint`] of its
//! settings plus the content of every file under its resolved dirs — and the triggers
//! that ask for a new computation: a file-system watcher on the local `conf_dir` and
//! `python_dir` with a quiet period ([`watch`]), SIGHUP, and a pulled git commit (sent
//! by [`crate::gitsync`]). Applying a desired state belongs to [`crate::inputs`], which
//! restarts only the inputs whose fingerprint changed.
//!
//! Why fingerprints over file contents rather than modification times: a git hard
//! reset rewrites files with new times but possibly the same content, and workers
//! write `__pycache__` next to their plugins; neither should restart anything.

use std::collections::hash_map::DefaultHasher;
use std::collections::{HashMap, HashSet};
use std::fs;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::mpsc;

use crate::config::{self, InputConfig, Origin};

/// How long the file system must stay quiet after a change before a reload runs:
/// an editor's save or a `cp -r` is several events.
pub const DEBOUNCE: Duration = Duration::from_millis(500);

/// Why a reload was asked for (for the log).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Trigger {
    /// SIGHUP.
    Signal,
    /// A change under the local conf or python directory.
    Files,
    /// A git repository moved to a new commit.
    Git { repo: String, commit: String },
}

impl std::fmt::Display for Trigger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Trigger::Signal => write!(f, "SIGHUP"),
            Trigger::Files => write!(f, "a change under conf.d/python.d"),
            Trigger::Git { repo, commit } => write!(f, "git repo {repo} at commit {commit}"),
        }
    }
}

/// Where inputs and plugins are looked for, in precedence order.
#[derive(Clone, Debug, Default)]
pub struct Layout {
    /// Conf directories: each git checkout's `conf.d/` (repo order), then the local
    /// `conf_dir`. The first declaration of an input name wins.
    pub conf_dirs: Vec<PathBuf>,
    /// Python directories relative `dirs` entries resolve against, first hit wins:
    /// each git checkout's `python.d/` (repo order), then the local `python_dir`.
    pub python_dirs: Vec<PathBuf>,
}

impl Layout {
    /// The layout for the local directories plus the given git checkouts.
    pub fn new(conf_dir: &Path, python_dir: &Path, checkouts: &[PathBuf]) -> Self {
        let mut layout = Layout::default();
        for checkout in checkouts {
            layout.conf_dirs.push(checkout.join("conf.d"));
            layout.python_dirs.push(checkout.join("python.d"));
        }
        layout.conf_dirs.push(conf_dir.to_path_buf());
        layout.python_dirs.push(python_dir.to_path_buf());
        layout
    }
}

/// A digest of everything that, when it changes, requires a new worker.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Fingerprint(pub u64);

/// One input as it should run.
#[derive(Clone, Debug)]
pub struct DesiredInput {
    pub config: InputConfig,
    /// The resolved plugin paths, or why they could not be resolved.
    pub paths: Result<Vec<PathBuf>, DirsError>,
    pub fingerprint: Fingerprint,
}

/// The inputs that should run, and what got in the way.
#[derive(Debug, Default)]
pub struct Desired {
    /// Valid inputs, in precedence order, names unique.
    pub inputs: Vec<DesiredInput>,
    /// Configuration errors, each naming file and line.
    pub errors: Vec<String>,
    /// Files with an error: the inputs running from them are left alone.
    pub broken_files: HashSet<PathBuf>,
    /// Tables of other input kinds, to log as ignored.
    pub skipped: Vec<String>,
}

/// Loads and fingerprints every input of `layout`. Blocking (reads files).
pub fn desired(layout: &Layout) -> Desired {
    let mut desired = Desired::default();
    let mut first_seen: HashMap<String, Origin> = HashMap::new();
    for conf_dir in &layout.conf_dirs {
        let loaded = config::load_inputs(conf_dir);
        for error in loaded.errors {
            desired.broken_files.insert(error.file().to_path_buf());
            desired.errors.push(error.to_string());
        }
        desired
            .skipped
            .extend(loaded.skipped.iter().map(|s| s.to_string()));
        for input in loaded.inputs {
            if let Some(first) = first_seen.get(&input.name) {
                desired.errors.push(format!(
                    "{}: input {:?} is already declared at {first}; this declaration is ignored",
                    input.origin, input.name
                ));
                continue;
            }
            first_seen.insert(input.name.clone(), input.origin.clone());
            let paths = resolve_dirs(&layout.python_dirs, &input.dirs);
            let fingerprint = fingerprint(&input, &paths);
            desired.inputs.push(DesiredInput {
                config: input,
                paths,
                fingerprint,
            });
        }
    }
    desired
}

/// A `dirs` entry that exists nowhere it was looked for.
#[derive(Clone, Debug, PartialEq, Eq, Hash, thiserror::Error)]
#[error("dirs entry `{entry}` not found: {} does not exist", joined(.looked))]
pub struct DirsError {
    pub entry: String,
    /// Every place looked at, in order.
    pub looked: Vec<PathBuf>,
}

fn joined(paths: &[PathBuf]) -> String {
    let shown: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
    shown.join(" nor ")
}

/// Resolves `dirs` entries: absolute ones as given; relative ones against each of
/// `python_dirs` in order, the first that exists wins. A missing entry is an error
/// naming every place that was looked at.
pub fn resolve_dirs(python_dirs: &[PathBuf], dirs: &[String]) -> Result<Vec<PathBuf>, DirsError> {
    dirs.iter()
        .map(|entry| {
            let path = Path::new(entry);
            let candidates: Vec<PathBuf> = if path.is_absolute() {
                vec![path.to_path_buf()]
            } else {
                python_dirs.iter().map(|d| d.join(path)).collect()
            };
            match candidates.iter().find(|c| c.exists()) {
                Some(found) => Ok(found.clone()),
                None => Err(DirsError {
                    entry: entry.clone(),
                    looked: candidates,
                }),
            }
        })
        .collect()
}

/// The fingerprint of an input: its settings, its resolved paths, and the name and
/// content of every file under them (caches and hidden files excepted).
pub fn fingerprint(input: &InputConfig, paths: &Result<Vec<PathBuf>, DirsError>) -> Fingerprint {
    let mut hasher = DefaultHasher::new();
    input.hash(&mut hasher);
    match paths {
        Ok(paths) => {
            for path in paths {
                path.hash(&mut hasher);
                hash_tree(path, &mut hasher, 0);
            }
        }
        Err(reason) => reason.hash(&mut hasher),
    }
    Fingerprint(hasher.finish())
}

/// Deepest directory level looked at (symlink loops end here).
const MAX_DEPTH: usize = 16;

fn hash_tree(path: &Path, hasher: &mut DefaultHasher, depth: usize) {
    if depth > MAX_DEPTH {
        return;
    }
    match fs::metadata(path) {
        Ok(meta) if meta.is_dir() => {
            let mut entries: Vec<PathBuf> = match fs::read_dir(path) {
                Ok(entries) => entries.flatten().map(|e| e.path()).collect(),
                Err(err) => {
                    err.to_string().hash(hasher);
                    return;
                }
            };
            entries.sort();
            for entry in entries {
                let noise = entry
                    .file_name()
                    .map(|n| is_noise(Path::new(n)))
                    .unwrap_or(false);
                if noise {
                    continue;
                }
                entry.hash(hasher);
                hash_tree(&entry, hasher, depth + 1);
            }
        }
        Ok(_) => match fs::read(path) {
            Ok(content) => content.hash(hasher),
            Err(err) => err.to_string().hash(hasher),
        },
        Err(err) => err.to_string().hash(hasher),
    }
}

/// Paths that never matter to a worker: byte-code caches (workers write them), hidden
/// files (`.git`, editor swap files) and editor backups.
pub fn is_noise(path: &Path) -> bool {
    path.components().any(|c| {
        let name = c.as_os_str().to_string_lossy();
        name == "__pycache__"
            || (name.starts_with('.') && name != "." && name != "..")
            || name.starts_with('#')
            || name.ends_with('~')
            || name.ends_with(".pyc")
            || name.ends_with(".pyo")
            || name.ends_with(".swp")
            || name.ends_with(".swx")
            || name.ends_with(".tmp")
    })
}

/// A running watch of the local conf and python directories ([`watch`]); it ends
/// when dropped.
pub struct DirWatch {
    state: Arc<Mutex<WatchState>>,
}

struct WatchState {
    watcher: notify::RecommendedWatcher,
    /// Each root and the identity (device, inode) of the directory watched under its
    /// name, `None` while nothing is watched there.
    roots: Vec<(PathBuf, Option<(u64, u64)>)>,
}

impl DirWatch {
    /// Watches every root afresh (SIGHUP): whatever happened to the directories,
    /// the ones that exist now are the ones watched.
    pub fn rewatch(&self) {
        let mut state = self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        state.rewatch(true);
    }
}

impl WatchState {
    /// Watches again every root whose directory was replaced or has appeared since;
    /// with `force`, every root. Identity alone cannot tell a directory removed and
    /// recreated at once (the inode number is often reused), so an event on a root
    /// itself forces it.
    fn rewatch(&mut self, force: bool) {
        use notify::{RecursiveMode, Watcher};
        let WatchState { watcher, roots } = self;
        for (root, watched) in roots.iter_mut() {
            let current = dir_identity(root);
            if current == *watched && !force {
                continue;
            }
            if watched.is_some() {
                // The old directory may live on elsewhere (after `mv`): stop following it.
                let _ = watcher.unwatch(root);
            }
            *watched = None;
            if current.is_none() {
                tracing::warn!(dir = %root.display(), "watched directory is gone; watching for it to reappear");
                continue;
            }
            match watcher.watch(root, RecursiveMode::Recursive) {
                Ok(()) => {
                    *watched = current;
                    tracing::info!(dir = %root.display(), "watching for changes");
                }
                Err(error) => {
                    tracing::warn!(dir = %root.display(), %error, "cannot watch for changes; reload with SIGHUP")
                }
            }
        }
    }
}

/// Device and inode of the directory at `path`, `None` if there is none.
fn dir_identity(path: &Path) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    let meta = fs::metadata(path).ok()?;
    meta.is_dir().then(|| (meta.dev(), meta.ino()))
}

/// Watches `dirs` recursively and sends [`Trigger::Files`] once the file system has
/// been quiet for [`DEBOUNCE`] after a relevant change. The parent of each directory is
/// watched too (not recursively), so a directory that is removed and recreated, or
/// replaced with `mv`, is watched again as soon as it is back; one that does not exist
/// yet is watched from the moment it appears. The watch lives as long as the returned
/// value.
pub fn watch(
    dirs: &[PathBuf],
    triggers: mpsc::UnboundedSender<Trigger>,
) -> Result<DirWatch, notify::Error> {
    use notify::{EventKind, RecursiveMode, Watcher};

    // `true` when the event was about a root itself (removed, created, renamed).
    let (raw_tx, mut raw_rx) = mpsc::unbounded_channel::<bool>();
    let roots: Vec<PathBuf> = dirs.to_vec();
    let watcher =
        notify::recommended_watcher(move |event: notify::Result<notify::Event>| match event {
            Ok(event) => {
                if matches!(event.kind, EventKind::Access(_)) {
                    return;
                }
                // Only what is under a root counts: the parents' other entries
                // (pythond.toml, data/) are none of this watch's business.
                let relevant = event.paths.iter().any(|p| {
                    roots
                        .iter()
                        .find_map(|root| p.strip_prefix(root).ok())
                        .is_some_and(|relative| !is_noise(relative))
                });
                if relevant {
                    let root_itself = event.paths.iter().any(|p| roots.contains(p));
                    let _ = raw_tx.send(root_itself);
                }
            }
            Err(error) => tracing::warn!(%error, "file watcher error"),
        })?;
    let mut state = WatchState {
        watcher,
        roots: dirs.iter().map(|d| (d.clone(), None)).collect(),
    };
    for dir in dirs {
        let parent = dir.parent().filter(|p| !p.as_os_str().is_empty());
        let parent = parent.unwrap_or_else(|| Path::new("."));
        if let Err(error) = state.watcher.watch(parent, RecursiveMode::NonRecursive) {
            tracing::warn!(dir = %parent.display(), %error, "cannot watch for {} to be replaced; reload with SIGHUP", dir.display());
        }
    }
    state.rewatch(false);
    let state = Arc::new(Mutex::new(state));
    // Weak: dropping the DirWatch drops the watcher, whose callback holds `raw_tx`,
    // and that ends this task.
    let rewatcher = Arc::downgrade(&state);
    tokio::spawn(async move {
        while let Some(mut root_touched) = raw_rx.recv().await {
            // Wait for a quiet period: every further event restarts it.
            loop {
                match tokio::time::timeout(DEBOUNCE, raw_rx.recv()).await {
                    Ok(Some(root_itself)) => root_touched |= root_itself,
                    Ok(None) => return,
                    Err(_) => break,
                }
            }
            match rewatcher.upgrade() {
                Some(state) => state
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .rewatch(root_touched),
                None => return,
            }
            if triggers.send(Trigger::Files).is_err() {
                return;
            }
        }
    });
    Ok(DirWatch { state })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(dir: &Path, name: &str, dirs: &str) {
        fs::create_dir_all(dir).expect("conf dir");
        fs::write(
            dir.join(format!("{name}.conf")),
            format!("[[inputs.pythond]]\nname = {name:?}\ncmd = \"python3\"\ndirs = [{dirs:?}]\n"),
        )
        .expect("write conf");
    }

    #[test]
    fn fingerprint_follows_file_content_not_caches() {
        let home = tempfile::tempdir().expect("tempdir");
        let conf = home.path().join("conf.d");
        let py = home.path().join("python.d");
        fs::create_dir_all(py.join("a")).expect("mkdir");
        fs::write(py.join("a/x.py"), "X = 1\n").expect("write");
        input(&conf, "a", "a");
        let layout = Layout::new(&conf, &py, &[]);
        let first = desired(&layout).inputs[0].fingerprint;
        fs::create_dir_all(py.join("a/__pycache__")).expect("mkdir");
        fs::write(py.join("a/__pycache__/x.cpython-311.pyc"), "junk").expect("write");
        fs::write(py.join("a/.x.py.swp"), "junk").expect("write");
        assert_eq!(desired(&layout).inputs[0].fingerprint, first);
        fs::write(py.join("a/x.py"), "X = 2\n").expect("write");
        assert_ne!(desired(&layout).inputs[0].fingerprint, first);
    }

    #[test]
    fn repos_come_first_for_inputs_and_dirs() {
        let home = tempfile::tempdir().expect("tempdir");
        let local_conf = home.path().join("conf.d");
        let local_py = home.path().join("python.d");
        let repo = home.path().join("repo");
        fs::create_dir_all(local_py.join("shared")).expect("mkdir");
        fs::create_dir_all(local_py.join("local_only")).expect("mkdir");
        fs::create_dir_all(repo.join("python.d/shared")).expect("mkdir");
        input(&repo.join("conf.d"), "dup", "shared");
        input(&local_conf, "dup", "local_only");
        input(&local_conf, "mine", "local_only");
        let got = desired(&Layout::new(
            &local_conf,
            &local_py,
            std::slice::from_ref(&repo),
        ));
        let names: Vec<&str> = got.inputs.iter().map(|i| i.config.name.as_str()).collect();
        assert_eq!(names, ["dup", "mine"]);
        assert_eq!(
            got.inputs[0].paths.as_ref().expect("resolved"),
            &vec![repo.join("python.d/shared")]
        );
        assert_eq!(
            got.inputs[1].paths.as_ref().expect("resolved"),
            &vec![local_py.join("local_only")]
        );
        assert_eq!(got.errors.len(), 1, "{:?}", got.errors);
        assert!(
            got.errors[0].contains("already declared"),
            "{:?}",
            got.errors
        );
    }

    #[test]
    fn a_broken_file_is_reported_with_its_line() {
        let home = tempfile::tempdir().expect("tempdir");
        let conf = home.path().join("conf.d");
        fs::create_dir_all(&conf).expect("mkdir");
        fs::write(conf.join("bad.conf"), "[[inputs.pythond]]\nname = \n").expect("write");
        let got = desired(&Layout::new(&conf, &home.path().join("py"), &[]));
        assert!(got.inputs.is_empty());
        assert!(got.broken_files.contains(&conf.join("bad.conf")));
        assert!(got.errors[0].contains("bad.conf:2"), "{:?}", got.errors);
    }

    #[test]
    fn a_missing_dirs_entry_names_every_place_looked_at() {
        let first = tempfile::tempdir().expect("tempdir");
        let second = tempfile::tempdir().expect("tempdir");
        fs::create_dir(second.path().join("ok")).expect("mkdir");
        let roots = [first.path().to_path_buf(), second.path().to_path_buf()];
        assert_eq!(
            resolve_dirs(&roots, &["ok".to_string()]).expect("resolves"),
            vec![second.path().join("ok")]
        );
        let error =
            resolve_dirs(&roots, &["ok".to_string(), "nope".to_string()]).expect_err("missing");
        assert_eq!(error.entry, "nope");
        assert_eq!(
            error.to_string(),
            format!(
                "dirs entry `nope` not found: {} nor {} does not exist",
                first.path().join("nope").display(),
                second.path().join("nope").display()
            )
        );
        let absolute = first.path().join("gone").display().to_string();
        let error = resolve_dirs(&roots, std::slice::from_ref(&absolute)).expect_err("missing");
        assert_eq!(error.looked, [PathBuf::from(&absolute)]);
    }

    #[test]
    fn noise_is_caches_hidden_and_backup_files() {
        assert!(is_noise(Path::new("a/__pycache__/x.pyc")));
        assert!(is_noise(Path::new("a/.x.swp")));
        assert!(is_noise(Path::new("a/x.py~")));
        assert!(!is_noise(Path::new("a/x.py")));
        assert!(!is_noise(Path::new("/tmp/x/conf.d/a.conf")));
        assert!(is_noise(Path::new("x/.git/index")));
    }
}
