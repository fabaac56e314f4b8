//! Git-synced script repositories: clone, fetch, hard-reset, report.
//!
//! Owns the `[[git_repos.repo]]` checkouts under `<data_dir>/gitrepos/<name>`: each
//! enabled repository is cloned (into a temporary directory renamed into place, so a
//! half-finished clone never becomes the checkout), then fetched and hard-reset to
//! its branch every `pull_interval`. When the checked-out commit changes, a
//! [`Trigger::Git`] asks the agent to reload; what restarts is decided by
//! [`crate::reload`]. A failed pull (unreachable remote, rejected credentials, a
//! timeout) leaves the last good checkout in place; a checkout that cannot be opened
//! or reset (corrupt, half-deleted) is deleted and cloned again.
//!
//! Uses `git2` (libgit2, vendored) rather than the `git` command: no run-time
//! dependency on an installed git, credentials passed in memory instead of through
//! helpers or the environment, and progress callbacks that can abort a slow transfer.
//!
//! Credentials never reach logs, status or errors: URLs are shown with their
//! userinfo redacted ([`redact_url`](crate::config::git_url::redact_url)) and every message from libgit2 is scrubbed of
//! the configured secrets.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Once};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use git2::build::{CheckoutBuilder, RepoBuilder};
use git2::{Cred, CredentialType, FetchOptions, RemoteCallbacks, Repository, ResetType};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::config::git_url::{redact_url, repo_name, url_secrets, REDACTED};
use crate::config::{GitRepoConfig, GitReposConfig};
use crate::reload::Trigger;
use crate::stats::{GitRepoStatus, Stats};

/// Shortest and longest time one pull may take (the pull interval in between).
const MIN_PULL_TIMEOUT: Duration = Duration::from_secs(10);
const MAX_PULL_TIMEOUT: Duration = Duration::from_secs(300);

/// One enabled repository and where it is checked out.
#[derive(Clone, Debug)]
pub struct GitRepo {
    /// Unique name, from the URL's last path segment.
    pub name: String,
    pub config: GitRepoConfig,
    /// `<data_dir>/gitrepos/<name>`.
    pub dir: PathBuf,
    /// The URL with its userinfo redacted, for messages.
    pub shown_url: String,
    /// Strings to scrub from every message: passwords, tokens.
    secrets: Vec<String>,
    /// `(user, password)` for HTTP(S): from the URL's userinfo or `token_env`.
    userpass: Option<(String, String)>,
}

/// The enabled repositories of `config`, in precedence order (file order), each
/// with a unique checkout name under `<data_dir>/gitrepos/`.
pub fn repos(config: &GitReposConfig, data_dir: &Path) -> Vec<GitRepo> {
    let mut repos: Vec<GitRepo> = Vec::new();
    for repo in config.repos.iter().filter(|r| r.enable) {
        let base = repo_name(&repo.url);
        let mut name = base.clone();
        let mut n = 2;
        while repos.iter().any(|r| r.name == name) {
            name = format!("{base}-{n}");
            n += 1;
        }
        let (mut secrets, mut userpass) = url_secrets(&repo.url);
        if let Some(var) = &repo.token_env {
            match std::env::var(var) {
                Ok(token) if !token.is_empty() => {
                    let user = userpass
                        .as_ref()
                        .map(|(u, _)| u.clone())
                        .filter(|u| !u.is_empty())
                        .unwrap_or_else(|| "git".to_string());
                    secrets.push(token.clone());
                    userpass = Some((user, token));
                }
                _ => {
                    tracing::warn!(repo = %name, variable = %var, "token_env names an unset or empty environment variable; pulling without it")
                }
            }
        }
        if let Some(password) = &repo.ssh_private_key_password {
            secrets.push(password.clone());
        }
        secrets.retain(|s| !s.is_empty());
        repos.push(GitRepo {
            dir: data_dir.join("gitrepos").join(&name),
            shown_url: redact_url(&repo.url),
            name,
            config: repo.clone(),
            secrets,
            userpass,
        });
    }
    repos
}

impl GitRepo {
    /// `message` with every secret and the raw URL replaced by their redacted forms.
    pub fn scrub(&self, message: &str) -> String {
        let mut out = message.replace(&self.config.url, &self.shown_url);
        for secret in &self.secrets {
            out = out.replace(secret.as_str(), REDACTED);
        }
        out
    }

    fn status(&self) -> GitRepoStatus {
        GitRepoStatus {
            name: self.name.clone(),
            url: self.shown_url.clone(),
            branch: self.config.branch.clone(),
            ..GitRepoStatus::default()
        }
    }
}

/// The time budget of one pull for a given pull interval.
pub fn pull_timeout(interval: Duration) -> Duration {
    interval.clamp(MIN_PULL_TIMEOUT, MAX_PULL_TIMEOUT)
}

/// Where a pull ended up.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Synced {
    pub branch: String,
    pub commit: String,
}

/// Why a pull failed.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    /// Talking to the remote failed; the checkout is untouched.
    #[error("{0}")]
    Remote(String),
    /// The checkout is unusable (cannot be opened or reset).
    #[error("{0}")]
    Checkout(String),
}

/// Brings the checkout of `repo` to the tip of its branch: clone if there is no
/// checkout, else fetch and hard-reset (a checkout that cannot be opened or reset
/// is replaced by a fresh clone — once that clone succeeded). Blocking; bounded by
/// `timeout` for the transfer.
pub fn sync(repo: &GitRepo, timeout: Duration) -> Result<Synced, SyncError> {
    let deadline = Instant::now() + timeout;
    if repo.dir.exists() {
        match update(repo, deadline) {
            Ok(synced) => return Ok(synced),
            Err(SyncError::Checkout(why)) => {
                tracing::warn!(repo = %repo.name, dir = %repo.dir.display(), "checkout unusable ({}); cloning again", repo.scrub(&why));
            }
            Err(remote) => return Err(remote),
        }
    }
    clone(repo, deadline)
}

fn callbacks(repo: &GitRepo, deadline: Instant) -> RemoteCallbacks<'static> {
    let mut callbacks = RemoteCallbacks::new();
    let userpass = repo.userpass.clone();
    let key = repo.config.ssh_private_key_path.clone();
    let key_password = repo.config.ssh_private_key_password.clone();
    let mut attempts = 0;
    callbacks.credentials(move |_url, username_from_url, allowed| {
        attempts += 1;
        if attempts > 3 {
            return Err(git2::Error::from_str(
                "authentication failed: the remote rejected the configured credentials",
            ));
        }
        let user = username_from_url.unwrap_or("git");
        if allowed.contains(CredentialType::SSH_KEY) {
            return match &key {
                Some(key) => Cred::ssh_key(user, None, key, key_password.as_deref()),
                None => Cred::ssh_key_from_agent(user),
            };
        }
        if allowed.contains(CredentialType::USER_PASS_PLAINTEXT) {
            if let Some((user, password)) = &userpass {
                return Cred::userpass_plaintext(user, password);
            }
        }
        if allowed.contains(CredentialType::USERNAME) {
            return Cred::username(user);
        }
        Err(git2::Error::from_str(
            "authentication required, but no credentials are configured for this repository",
        ))
    });
    callbacks.transfer_progress(move |_| Instant::now() < deadline);
    callbacks.sideband_progress(move |_| Instant::now() < deadline);
    callbacks
}

fn fetch_options(repo: &GitRepo, deadline: Instant) -> FetchOptions<'static> {
    let mut options = FetchOptions::new();
    options.remote_callbacks(callbacks(repo, deadline));
    options.download_tags(git2::AutotagOption::None);
    options
}

fn remote_error(repo: &GitRepo, what: &str, error: git2::Error, deadline: Instant) -> SyncError {
    let message = if Instant::now() >= deadline {
        format!("{what}: timed out ({})", error.message())
    } else {
        format!("{what}: {}", error.message())
    };
    SyncError::Remote(repo.scrub(&message))
}

fn clone(repo: &GitRepo, deadline: Instant) -> Result<Synced, SyncError> {
    let parent = repo.dir.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent)
        .map_err(|e| SyncError::Checkout(format!("cannot create {}: {e}", parent.display())))?;
    let staging = tempfile::Builder::new()
        .prefix(&format!(".{}.clone-", repo.name))
        .tempdir_in(parent)
        .map_err(|e| {
            SyncError::Checkout(format!(
                "cannot create a staging directory in {}: {e}",
                parent.display()
            ))
        })?;
    let mut builder = RepoBuilder::new();
    builder.fetch_options(fetch_options(repo, deadline));
    if let Some(branch) = &repo.config.branch {
        builder.branch(branch);
    }
    let git = builder
        .clone(&repo.config.url, staging.path())
        .map_err(|e| remote_error(repo, "clone failed", e, deadline))?;
    let head = git.head().map_err(|e| {
        SyncError::Remote(repo.scrub(&format!("cloned, but HEAD is unusable: {}", e.message())))
    })?;
    let branch = head.shorthand().unwrap_or("HEAD").to_string();
    let commit = head
        .peel_to_commit()
        .map_err(|e| {
            SyncError::Remote(
                repo.scrub(&format!("cloned, but HEAD has no commit: {}", e.message())),
            )
        })?
        .id()
        .to_string();
    drop(head);
    drop(git);
    // Only a complete clone replaces the checkout: the old one (broken, or a stale
    // leftover) is moved aside first, then removed.
    if repo.dir.exists() {
        let aside = tempfile::Builder::new()
            .prefix(&format!(".{}.old-", repo.name))
            .tempdir_in(parent)
            .map_err(|e| {
                SyncError::Checkout(format!(
                    "cannot create a directory in {}: {e}",
                    parent.display()
                ))
            })?;
        let old = aside.path().join("checkout");
        std::fs::rename(&repo.dir, &old).map_err(|e| {
            SyncError::Checkout(format!(
                "cannot move the old checkout {} aside: {e}",
                repo.dir.display()
            ))
        })?;
        drop(aside);
    }
    let staged = staging.keep();
    std::fs::rename(&staged, &repo.dir).map_err(|e| {
        let _ = std::fs::remove_dir_all(&staged);
        SyncError::Checkout(format!(
            "cannot move the clone into {}: {e}",
            repo.dir.display()
        ))
    })?;
    Ok(Synced { branch, commit })
}

fn update(repo: &GitRepo, deadline: Instant) -> Result<Synced, SyncError> {
    let git = Repository::open(&repo.dir)
        .map_err(|e| SyncError::Checkout(format!("cannot open: {}", e.message())))?;
    git.remote_set_url("origin", &repo.config.url)
        .map_err(|e| SyncError::Checkout(format!("cannot set the remote: {}", e.message())))?;
    let mut remote = git
        .find_remote("origin")
        .map_err(|e| SyncError::Checkout(format!("no remote: {}", e.message())))?;
    let branch = match &repo.config.branch {
        Some(branch) => branch.clone(),
        None => {
            let connection = remote
                .connect_auth(
                    git2::Direction::Fetch,
                    Some(callbacks(repo, deadline)),
                    None,
                )
                .map_err(|e| remote_error(repo, "cannot reach the remote", e, deadline))?;
            let default = connection
                .default_branch()
                .map_err(|e| remote_error(repo, "the remote has no default branch", e, deadline))?;
            let default = default.as_str().unwrap_or("").to_string();
            drop(connection);
            default
                .strip_prefix("refs/heads/")
                .unwrap_or(&default)
                .to_string()
        }
    };
    let refspec = format!("+refs/heads/{branch}:refs/remotes/origin/{branch}");
    remote
        .fetch(
            &[refspec.as_str()],
            Some(&mut fetch_options(repo, deadline)),
            None,
        )
        .map_err(|e| remote_error(repo, "fetch failed", e, deadline))?;
    let oid = git
        .refname_to_id(&format!("refs/remotes/origin/{branch}"))
        .map_err(|e| {
            SyncError::Remote(format!(
                "branch {branch:?} not found on the remote: {}",
                e.message()
            ))
        })?;
    let target = git.find_object(oid, None).map_err(|e| {
        SyncError::Checkout(format!("fetched commit {oid} is missing: {}", e.message()))
    })?;
    git.set_head_detached(oid)
        .map_err(|e| SyncError::Checkout(format!("cannot move HEAD: {}", e.message())))?;
    let mut checkout = CheckoutBuilder::new();
    checkout.force().remove_untracked(true);
    git.reset(&target, ResetType::Hard, Some(&mut checkout))
        .map_err(|e| SyncError::Checkout(format!("hard reset to {oid} failed: {}", e.message())))?;
    Ok(Synced {
        branch,
        commit: oid.to_string(),
    })
}

/// Sets libgit2's connect and read timeouts once, before the first network operation.
fn set_network_timeouts(timeout: Duration) {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let ms = i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX);
        // SAFETY: called once, before any git operation of this process starts.
        unsafe {
            if let Err(error) = git2::opts::set_server_connect_timeout_in_milliseconds(ms) {
                tracing::warn!(%error, "cannot set the git connect timeout");
            }
            if let Err(error) = git2::opts::set_server_timeout_in_milliseconds(ms) {
                tracing::warn!(%error, "cannot set the git read timeout");
            }
        }
    });
}

/// Shared per-repository status, read by [`Stats::snapshot`].
pub type StatusBoard = std::sync::Mutex<Vec<GitRepoStatus>>;

fn unix_ms_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Pulls every repository every `interval` until `shutdown`, updating the status in
/// `stats` and sending a [`Trigger::Git`] when a checkout moves to another commit.
///
/// The first pulls happen at once, all together, and their triggers are sent only
/// when every one has finished: the first reload then sees every checkout, so the
/// precedence between repositories holds from the start.
pub fn spawn(
    repos: Vec<GitRepo>,
    interval: Duration,
    stats: Arc<Stats>,
    triggers: mpsc::UnboundedSender<Trigger>,
    shutdown: CancellationToken,
) {
    if repos.is_empty() {
        return;
    }
    let timeout = pull_timeout(interval);
    set_network_timeouts(timeout);
    stats.set_git_repos(repos.iter().map(GitRepo::status).collect());
    tokio::spawn(async move {
        let mut states: Vec<(Arc<GitRepo>, Arc<AtomicBool>, GitRepoStatus)> = repos
            .into_iter()
            .map(|repo| {
                let mut status = repo.status();
                status.commit = current_commit(&repo.dir);
                (Arc::new(repo), Arc::new(AtomicBool::new(false)), status)
            })
            .collect();
        let (first_tx, mut first_rx) = mpsc::unbounded_channel();
        let first_round = states.iter_mut().map(|(repo, busy, status)| {
            let first_tx = first_tx.clone();
            async move { pull_once(repo, busy, timeout, status, &first_tx).await }
        });
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = futures_util::future::join_all(first_round) => {}
        }
        while let Ok(trigger) = first_rx.try_recv() {
            let _ = triggers.send(trigger);
        }
        for (index, (repo, busy, mut status)) in states.into_iter().enumerate() {
            stats.update_git_repo(index, status.clone());
            let stats = stats.clone();
            let triggers = triggers.clone();
            let shutdown = shutdown.clone();
            tokio::spawn(async move {
                loop {
                    tokio::select! {
                        _ = shutdown.cancelled() => return,
                        _ = tokio::time::sleep(interval) => {}
                    }
                    pull_once(&repo, &busy, timeout, &mut status, &triggers).await;
                    stats.update_git_repo(index, status.clone());
                }
            });
        }
    });
}

async fn pull_once(
    repo: &Arc<GitRepo>,
    busy: &Arc<AtomicBool>,
    timeout: Duration,
    status: &mut GitRepoStatus,
    triggers: &mpsc::UnboundedSender<Trigger>,
) {
    if busy.swap(true, Ordering::SeqCst) {
        let error = "the previous pull is still running".to_string();
        tracing::warn!(repo = %repo.name, url = %repo.shown_url, "{error}; skipping this pull");
        status.last_error = Some(error);
        status.failures += 1;
        return;
    }
    let task = {
        let repo = repo.clone();
        let busy = busy.clone();
        tokio::task::spawn_blocking(move || {
            let result = sync(&repo, timeout);
            busy.store(false, Ordering::SeqCst);
            result
        })
    };
    // The transfer is bounded by libgit2's timeouts and the progress callbacks; this
    // outer bound also covers a stuck clone or checkout.
    let result = match tokio::time::timeout(timeout + Duration::from_secs(5), task).await {
        Ok(Ok(result)) => result,
        Ok(Err(join)) => Err(SyncError::Remote(format!("pull task failed: {join}"))),
        Err(_) => Err(SyncError::Remote(format!(
            "pull timed out after {}",
            humantime::format_duration(timeout)
        ))),
    };
    match result {
        Ok(synced) => {
            let changed = status.commit.as_deref() != Some(synced.commit.as_str());
            if changed {
                tracing::info!(repo = %repo.name, url = %repo.shown_url, branch = %synced.branch, commit = %synced.commit, "git repo updated");
            } else {
                tracing::debug!(repo = %repo.name, commit = %synced.commit, "git repo unchanged");
            }
            if status.last_error.is_some() {
                tracing::info!(repo = %repo.name, url = %repo.shown_url, "git pull works again");
            }
            status.branch = Some(synced.branch);
            status.commit = Some(synced.commit.clone());
            status.last_pull_unix_ms = Some(unix_ms_now());
            status.last_error = None;
            status.pulls += 1;
            if changed {
                let _ = triggers.send(Trigger::Git {
                    repo: repo.name.clone(),
                    commit: synced.commit,
                });
            }
        }
        Err(error) => {
            let error = repo.scrub(&error.to_string());
            let keeps = if status.commit.is_some() {
                "the last good checkout keeps running"
            } else {
                "no checkout yet; will retry"
            };
            tracing::error!(repo = %repo.name, url = %repo.shown_url, "git pull failed: {error}; {keeps}");
            status.last_error = Some(error);
            status.failures += 1;
        }
    }
}

/// The commit checked out in `dir`, if it is a usable checkout.
fn current_commit(dir: &Path) -> Option<String> {
    let git = Repository::open(dir).ok()?;
    let head = git.head().ok()?;
    head.target().map(|oid| oid.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_string_tokens_are_redacted_and_stay_out_of_names() {
        let url = "https://example.com/team/scripts.git?private_token=glpat-XYZ%2Babc&x=1";
        assert_eq!(
            redact_url(url),
            "https://example.com/team/scripts.git?private_token=***&x=***"
        );
        assert_eq!(repo_name(url), "scripts");
        assert_eq!(
            redact_url("https://me:pw@h/x.git?tok3n#frag"),
            "https://me:***@h/x.git?***"
        );
        let dir = tempfile::tempdir().expect("tempdir");
        let repo = one_repo(url, dir.path());
        assert_eq!(repo.name, "scripts");
        assert_eq!(repo.dir, dir.path().join("gitrepos/scripts"));
        let scrubbed = repo.scrub(&format!(
            "cannot fetch {url}: token glpat-XYZ+abc refused (also glpat-XYZ%2Babc)"
        ));
        assert!(!scrubbed.contains("glpat-XYZ"), "{scrubbed}");
        assert!(scrubbed.contains("private_token=***"), "{scrubbed}");
        assert!(
            !repo.status().url.contains("glpat"),
            "{}",
            repo.status().url
        );
    }

    fn one_repo(url: &str, data: &Path) -> GitRepo {
        let config = GitReposConfig {
            repos: vec![GitRepoConfig {
                enable: true,
                url: url.into(),
                branch: None,
                ssh_private_key_path: None,
                ssh_private_key_password: None,
                token_env: None,
            }],
            ..GitReposConfig::default()
        };
        repos(&config, data).remove(0)
    }

    /// A repository with one commit holding `conf.d/x.conf`; returns the commit id.
    fn commit(dir: &Path, content: &str) -> String {
        let git = Repository::open(dir)
            .or_else(|_| Repository::init(dir))
            .expect("init");
        std::fs::create_dir_all(dir.join("conf.d")).expect("mkdir");
        std::fs::write(dir.join("conf.d/x.conf"), content).expect("write");
        let mut index = git.index().expect("index");
        index.add_path(Path::new("conf.d/x.conf")).expect("add");
        index.write().expect("write index");
        let tree = git
            .find_tree(index.write_tree().expect("tree"))
            .expect("tree");
        let who = git2::Signature::now("t", "t@example.com").expect("signature");
        let parent = git.head().ok().and_then(|h| h.peel_to_commit().ok());
        let parents: Vec<&git2::Commit> = parent.iter().collect();
        git.commit(Some("HEAD"), &who, &who, "c", &tree, &parents)
            .expect("commit")
            .to_string()
    }

    #[tokio::test]
    async fn status_follows_pulls_and_failures() {
        let root = tempfile::tempdir().expect("tempdir");
        let origin = root.path().join("origin");
        let first = commit(&origin, "one");
        let repo = Arc::new(one_repo(
            &format!("file://{}", origin.display()),
            &root.path().join("data"),
        ));
        let busy = Arc::new(AtomicBool::new(false));
        let (tx, mut rx) = mpsc::unbounded_channel();
        let mut status = repo.status();

        pull_once(&repo, &busy, MIN_PULL_TIMEOUT, &mut status, &tx).await;
        assert_eq!(status.commit.as_deref(), Some(first.as_str()));
        assert!(status.last_pull_unix_ms.is_some() && status.last_error.is_none());
        assert!(matches!(rx.try_recv(), Ok(Trigger::Git { .. })));
        assert!(repo.dir.join("conf.d/x.conf").exists());

        // Same commit: no reload asked for.
        pull_once(&repo, &busy, MIN_PULL_TIMEOUT, &mut status, &tx).await;
        assert!(rx.try_recv().is_err());

        // A new commit moves the checkout and asks for a reload.
        let second = commit(&origin, "two");
        pull_once(&repo, &busy, MIN_PULL_TIMEOUT, &mut status, &tx).await;
        assert_eq!(status.commit.as_deref(), Some(second.as_str()));
        assert_eq!(
            std::fs::read_to_string(repo.dir.join("conf.d/x.conf")).expect("read"),
            "two"
        );
        assert!(rx.try_recv().is_ok());

        // The remote disappears: the error is recorded, the checkout stays.
        std::fs::remove_dir_all(&origin).expect("remove origin");
        pull_once(&repo, &busy, MIN_PULL_TIMEOUT, &mut status, &tx).await;
        assert!(status.last_error.is_some(), "{status:?}");
        assert_eq!((status.pulls, status.failures), (3, 1));
        assert_eq!(status.commit.as_deref(), Some(second.as_str()));
        assert!(repo.dir.join("conf.d/x.conf").exists());
    }

    #[test]
    fn secrets_are_scrubbed_from_messages() {
        let config = GitReposConfig {
            repos: vec![GitRepoConfig {
                enable: true,
                url: "https://me:p%40ss@example.com/x.git".into(),
                branch: None,
                ssh_private_key_path: None,
                ssh_private_key_password: None,
                token_env: None,
            }],
            ..GitReposConfig::default()
        };
        let repos = repos(&config, Path::new("/data"));
        let message = repos[0].scrub("failed for https://me:p%40ss@example.com/x.git with p@ss");
        assert!(
            !message.contains("p%40ss") && !message.contains("p@ss"),
            "{message}"
        );
        assert_eq!(repos[0].dir, Path::new("/data/gitrepos/x"));
    }
}
