//! Real git for the tests: a bare repository the agent pulls from, a work tree the
//! test commits and pushes from (with the `git` command), and `git daemon` serving
//! the bare repositories on a loopback port.

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::wait_until;

/// Runs `git args...` in `dir`; panics with git's output if it fails.
pub fn git(dir: &Path, args: &[&str]) -> String {
    let output = Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_AUTHOR_NAME", "test")
        .env("GIT_AUTHOR_EMAIL", "test@example.com")
        .env("GIT_COMMITTER_NAME", "test")
        .env("GIT_COMMITTER_EMAIL", "test@example.com")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("HOME", dir)
        .output()
        .expect("run git");
    assert!(
        output.status.success(),
        "git {args:?} in {} failed:\n{}{}",
        dir.display(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).trim().to_string()
}

/// A bare repository (`<root>/<name>.git`) and a work tree cloned from it.
pub struct Remote {
    pub bare: PathBuf,
    pub work: PathBuf,
}

impl Remote {
    /// Creates `<root>/<name>.git` (default branch `main`) and its work tree.
    pub fn new(root: &Path, name: &str) -> Remote {
        let bare = root.join(format!("{name}.git"));
        let work = root.join(format!("{name}-work"));
        std::fs::create_dir_all(&bare).expect("bare dir");
        std::fs::create_dir_all(&work).expect("work dir");
        git(&bare, &["init", "--bare", "--initial-branch=main"]);
        git(&work, &["init", "--initial-branch=main"]);
        git(
            &work,
            &[
                "remote",
                "add",
                "origin",
                bare.to_str().expect("utf-8 path"),
            ],
        );
        Remote { bare, work }
    }

    /// `file://` URL of the bare repository.
    pub fn file_url(&self) -> String {
        format!("file://{}", self.bare.display())
    }

    /// Writes `content` to `relative` in the work tree.
    pub fn write(&self, relative: &str, content: &str) {
        let path = self.work.join(relative);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(path, content).expect("write");
    }

    /// Removes `relative` from the work tree.
    pub fn remove(&self, relative: &str) {
        std::fs::remove_file(self.work.join(relative)).expect("remove");
    }

    /// Commits everything and pushes `main`; returns the commit id.
    pub fn commit_and_push(&self, message: &str) -> String {
        git(&self.work, &["add", "-A"]);
        git(&self.work, &["commit", "-q", "-m", message]);
        git(&self.work, &["push", "-q", "origin", "main"]);
        git(&self.work, &["rev-parse", "HEAD"])
    }

    /// Rewrites history: resets the work tree to `commit`, commits what is written
    /// since, and force-pushes. Returns the new commit id.
    pub fn force_push_from(&self, commit: &str, message: &str) -> String {
        git(&self.work, &["reset", "-q", "--soft", commit]);
        git(&self.work, &["add", "-A"]);
        git(&self.work, &["commit", "-q", "-m", message]);
        git(&self.work, &["push", "-q", "--force", "origin", "main"]);
        git(&self.work, &["rev-parse", "HEAD"])
    }
}

/// `git daemon` serving every repository under a base path on 127.0.0.1, pushes
/// allowed. Killed on drop.
pub struct Daemon {
    child: Child,
    pub port: u16,
}

impl Daemon {
    /// Starts a daemon for `base` on a free port; retries with another port if the
    /// one picked was taken in the meantime.
    pub fn start(base: &Path) -> Daemon {
        for _ in 0..10 {
            let port = TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .expect("free port")
                .port();
            if let Some(daemon) = Daemon::spawn(base, port) {
                return daemon;
            }
        }
        panic!("git daemon did not start");
    }

    /// Starts a daemon for `base` on `port` again (after [`Daemon::stop`]).
    pub fn start_on(base: &Path, port: u16) -> Daemon {
        for _ in 0..10 {
            if let Some(daemon) = Daemon::spawn(base, port) {
                return daemon;
            }
        }
        panic!("git daemon did not start on port {port}");
    }

    fn spawn(base: &Path, port: u16) -> Option<Daemon> {
        // `git daemon` would run `git-daemon` as a child of its own, which killing
        // `git` leaves behind: start the daemon itself.
        let exec_path = git(base, &["--exec-path"]);
        let mut child = Command::new(Path::new(&exec_path).join("git-daemon"))
            .arg("--reuseaddr")
            .arg(format!("--base-path={}", base.display()))
            .arg("--export-all")
            .arg("--enable=receive-pack")
            .arg("--listen=127.0.0.1")
            .arg(format!("--port={port}"))
            .arg(base)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start git daemon");
        let up = wait_until(Duration::from_secs(10), || {
            matches!(child.try_wait(), Ok(None)) && TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        if up {
            return Some(Daemon { child, port });
        }
        let _ = child.kill();
        let _ = child.wait();
        None
    }

    /// `git://` URL of the repository `<name>.git` under the base path.
    pub fn url(&self, name: &str) -> String {
        format!("git://127.0.0.1:{}/{name}.git", self.port)
    }

    /// Stops the daemon (the remote becomes unreachable).
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A throw-away `sshd` on a loopback port that lets the current user in with one
/// client key (encrypted with a passphrase), and a `HOME` whose `known_hosts`
/// knows its host key. Killed on drop.
pub struct Sshd {
    child: Child,
    pub port: u16,
    /// The private key to use (passphrase [`Sshd::PASSPHRASE`]).
    pub client_key: PathBuf,
    /// A home directory with `.ssh/known_hosts`, for the agent's `HOME`.
    pub home: PathBuf,
    pub user: String,
}

impl Sshd {
    pub const PASSPHRASE: &'static str = "key-passphrase-42";

    /// Starts sshd with its keys and config under `dir`.
    pub fn start(dir: &Path) -> Sshd {
        std::fs::create_dir_all(dir).expect("sshd dir");
        let keygen = |file: &str, passphrase: &str| {
            let status = Command::new("ssh-keygen")
                .args(["-q", "-t", "ed25519", "-N", passphrase, "-f"])
                .arg(dir.join(file))
                .status()
                .expect("run ssh-keygen");
            assert!(status.success(), "ssh-keygen failed");
        };
        keygen("host_key", "");
        keygen("client_key", Self::PASSPHRASE);
        std::fs::copy(dir.join("client_key.pub"), dir.join("authorized_keys"))
            .expect("authorized_keys");
        // sshd insists on its privilege separation directory, even for one test.
        let _ = std::fs::create_dir_all("/run/sshd");
        let user = String::from_utf8_lossy(
            &Command::new("id")
                .arg("-un")
                .output()
                .expect("run id")
                .stdout,
        )
        .trim()
        .to_string();
        let host_key = std::fs::read_to_string(dir.join("host_key.pub")).expect("host key");
        let host_key: Vec<&str> = host_key.split_whitespace().take(2).collect();
        let sshd = ["/usr/sbin/sshd", "/usr/bin/sshd"]
            .into_iter()
            .find(|p| Path::new(p).exists())
            .unwrap_or("sshd");
        for _ in 0..10 {
            let port = TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .expect("free port")
                .port();
            let config = dir.join("sshd_config");
            std::fs::write(
                &config,
                format!(
                    "Port {port}\nListenAddress 127.0.0.1\nHostKey {}\nAuthorizedKeysFile {}\nPidFile {}\nStrictModes no\nUsePAM no\nPasswordAuthentication no\nKbdInteractiveAuthentication no\nPubkeyAuthentication yes\nPermitRootLogin yes\n",
                    dir.join("host_key").display(),
                    dir.join("authorized_keys").display(),
                    dir.join("sshd.pid").display(),
                ),
            )
            .expect("sshd_config");
            let mut child = Command::new(sshd)
                .arg("-D")
                .arg("-f")
                .arg(&config)
                .arg("-E")
                .arg(dir.join("sshd.log"))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("start sshd (openssh-server)");
            let up = wait_until(Duration::from_secs(10), || {
                matches!(child.try_wait(), Ok(None))
                    && TcpStream::connect(("127.0.0.1", port)).is_ok()
            });
            if up {
                let home = dir.join("home");
                std::fs::create_dir_all(home.join(".ssh")).expect("home");
                std::fs::write(
                    home.join(".ssh/known_hosts"),
                    format!("[127.0.0.1]:{port} {}\n", host_key.join(" ")),
                )
                .expect("known_hosts");
                return Sshd {
                    child,
                    port,
                    client_key: dir.join("client_key"),
                    home,
                    user,
                };
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!(
            "sshd did not start; its log:\n{}",
            std::fs::read_to_string(dir.join("sshd.log")).unwrap_or_default()
        );
    }

    /// `ssh://` URL of a repository at an absolute path on this machine.
    pub fn url(&self, path: &Path) -> String {
        format!(
            "ssh://{}@127.0.0.1:{}{}",
            self.user,
            self.port,
            path.display()
        )
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
