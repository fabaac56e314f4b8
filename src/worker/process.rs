//! Starting, signalling and reaping one Python worker process.
//!
//! Every worker is started so that nothing it does can outlive or corrupt the agent:
//! - its own process group, so a timeout kill takes its subprocesses too;
//! - `PR_SET_PDEATHSIG` = SIGTERM, on which the runner kills its own group, so an
//!   agent killed with SIGKILL leaves no orphans behind (the runner also kills the
//!   descendants that left its group);
//! - registered with [`super::orphans`] while it spawns, so the agent's sweep for
//!   adopted processes never takes a worker for one;
//! - the report channel is a private socket (`PYTHOND_CHANNEL_FD`), separate from
//!   fd 1 and 2, which are pipes the agent drains into its log.
//!
//! PDEATHSIG fires when the *thread* that forked the child exits. Workers must
//! therefore be spawned from tokio's long-lived runtime threads, never from
//! `spawn_blocking`, whose threads are retired when idle.

use std::ffi::OsString;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixStream as StdUnixStream;
use std::process::{ExitStatus, Stdio};

use tokio::process::{Child, ChildStderr, ChildStdout, Command};

/// Everything needed to start a worker, rendered from a [`super::launch::Launch`]
/// (which alone knows the runner's flags and variables); spawning adds only the
/// descriptors, `$PYTHOND_CHANNEL_FD` and `$PYTHOND_PRIVATE_FD`.
#[derive(Clone, Debug)]
pub struct WorkerSpec {
    /// Input name, for the environment and for messages.
    pub input: String,
    /// The interpreter, absolute or looked up on `PATH`.
    pub cmd: String,
    /// Arguments after the interpreter: the runner script and its options.
    pub args: Vec<OsString>,
    /// Added to the agent's own environment (DataKit replaced it, losing PATH and HOME),
    /// in order: a later entry wins over an earlier one of the same name.
    pub envs: Vec<(String, String)>,
    /// Variables the runner needs but its environment must not carry, because
    /// `/proc/<pid>/environ` keeps showing them after the runner removed them (input
    /// options, the HTTP token). They reach the runner as one JSON object in an
    /// inherited, already-rewound memory file, `$PYTHOND_PRIVATE_FD`, which it reads
    /// and closes before importing collectors (docs/PROTOCOL.md).
    pub private_env: Vec<(String, String)>,
    /// Largest frame the worker may send.
    pub max_frame: usize,
}

/// Why a worker could not be started.
#[derive(Debug, thiserror::Error)]
pub enum SpawnError {
    #[error("interpreter `{0}` not found (not an existing file and not on PATH)")]
    InterpreterNotFound(String),
    #[error("interpreter `{0}` is not executable: permission denied")]
    InterpreterNotExecutable(String),
    #[error("cannot start `{cmd}`: {source}")]
    Io { cmd: String, source: std::io::Error },
}

/// A running worker process.
pub struct WorkerProcess {
    pub pid: u32,
    child: Child,
}

/// A just-started worker with the agent's ends of its channel and output pipes.
pub struct Spawned {
    pub process: WorkerProcess,
    /// The agent's end of the channel, in blocking mode: it is served by threads of its
    /// own, not by the async reactor (see `session`).
    pub channel: StdUnixStream,
    pub stdout: Option<ChildStdout>,
    pub stderr: Option<ChildStderr>,
}

impl WorkerProcess {
    /// Starts the worker. Must be called from a runtime thread (see module docs).
    pub fn spawn(spec: &WorkerSpec) -> Result<Spawned, SpawnError> {
        let io_err = |source| SpawnError::Io {
            cmd: spec.cmd.clone(),
            source,
        };
        let (agent_end, worker_end) = StdUnixStream::pair().map_err(io_err)?;
        let worker_fd: RawFd = worker_end.as_raw_fd();
        let private = private_env_file(&spec.private_env).map_err(io_err)?;
        let private_fd: Option<RawFd> = private.as_ref().map(|f| f.as_raw_fd());
        // SAFETY: getpid has no preconditions.
        let agent_pid = unsafe { libc::getpid() };

        let mut command = Command::new(&spec.cmd);
        command
            .args(&spec.args)
            .envs(spec.envs.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .env("PYTHOND_CHANNEL_FD", worker_fd.to_string())
            .envs(private_fd.map(|fd| ("PYTHOND_PRIVATE_FD", fd.to_string())))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(false);
        // SAFETY: the closure runs between fork and exec and only makes
        // async-signal-safe calls (fcntl, prctl, getppid, _exit).
        unsafe {
            command.pre_exec(move || {
                // Keep the worker's end of the channel open across exec.
                if libc::fcntl(worker_fd, libc::F_SETFD, 0) == -1 {
                    return Err(std::io::Error::last_os_error());
                }
                if let Some(fd) = private_fd {
                    if libc::fcntl(fd, libc::F_SETFD, 0) == -1 {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                if libc::prctl(
                    libc::PR_SET_PDEATHSIG,
                    libc::SIGTERM as libc::c_ulong,
                    0,
                    0,
                    0,
                ) == -1
                {
                    return Err(std::io::Error::last_os_error());
                }
                // The agent may have died between fork and prctl: then nobody would
                // ever send the death signal, so do not start at all.
                if libc::getppid() != agent_pid {
                    libc::_exit(1);
                }
                Ok(())
            });
        }
        // Registered before any sweep can list it among the agent's children.
        let mut registry = super::orphans::workers();
        let mut child = command.spawn().map_err(|source| match source.kind() {
            std::io::ErrorKind::NotFound => SpawnError::InterpreterNotFound(spec.cmd.clone()),
            std::io::ErrorKind::PermissionDenied => {
                SpawnError::InterpreterNotExecutable(spec.cmd.clone())
            }
            _ => io_err(source),
        })?;
        let pid = child.id().unwrap_or_default();
        super::orphans::register(&mut registry, pid);
        drop(registry);
        drop(worker_end);
        drop(private);
        let stdout = child.stdout.take();
        let stderr = child.stderr.take();
        Ok(Spawned {
            process: WorkerProcess { pid, child },
            channel: agent_end,
            stdout,
            stderr,
        })
    }

    /// Kills the worker's whole process group: the runner and anything it started.
    pub fn kill_group(&self) {
        kill_group(self.pid);
    }

    /// Waits for the worker to exit and reaps it.
    pub async fn wait(&mut self) -> std::io::Result<ExitStatus> {
        let status = self.child.wait().await;
        if status.is_ok() {
            super::orphans::unregister(self.pid);
        }
        status
    }

    /// The exit status if the worker has already exited (reaping it), else `None`.
    pub fn try_wait(&mut self) -> Option<ExitStatus> {
        let status = self.child.try_wait().ok().flatten();
        if status.is_some() {
            super::orphans::unregister(self.pid);
        }
        status
    }
}

/// A memory file holding `vars` as a JSON object, rewound, close-on-exec (the spawn
/// clears that for the worker alone); `None` when there is nothing to pass.
fn private_env_file(vars: &[(String, String)]) -> std::io::Result<Option<std::fs::File>> {
    use std::io::{Seek, Write};
    use std::os::fd::FromRawFd;
    if vars.is_empty() {
        return Ok(None);
    }
    let object: serde_json::Map<String, serde_json::Value> = vars
        .iter()
        .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
        .collect();
    // SAFETY: the name is a NUL-terminated literal; the flags are valid.
    let fd = unsafe { libc::memfd_create(c"pythond-private".as_ptr(), libc::MFD_CLOEXEC) };
    if fd == -1 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `fd` was just created and is owned by nothing else.
    let mut file = unsafe { std::fs::File::from_raw_fd(fd) };
    file.write_all(serde_json::Value::Object(object).to_string().as_bytes())?;
    file.rewind()?;
    Ok(Some(file))
}

/// SIGKILL to process group `pgid` (the worker's pid, as it leads its own group).
/// A group that is already gone is not an error.
pub fn kill_group(pgid: u32) {
    let Ok(pgid) = libc::pid_t::try_from(pgid) else {
        return;
    };
    if pgid <= 1 {
        return;
    }
    // SAFETY: killpg has no memory-safety preconditions; ESRCH is fine.
    unsafe {
        libc::killpg(pgid, libc::SIGKILL);
    }
}

/// Describes an exit status the way an operator wants to read it.
pub fn describe_exit(status: &ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exited with status {code}"),
        (None, Some(sig)) => format!("killed by signal {sig}{}", signal_name(sig)),
        _ => "exited".to_string(),
    }
}

fn signal_name(sig: i32) -> &'static str {
    match sig {
        libc::SIGKILL => " (SIGKILL)",
        libc::SIGTERM => " (SIGTERM)",
        libc::SIGSEGV => " (SIGSEGV)",
        libc::SIGABRT => " (SIGABRT)",
        libc::SIGINT => " (SIGINT)",
        _ => "",
    }
}

/// Resident memory of process `pid` in bytes (`VmRSS` of `/proc/<pid>/status`);
/// `None` if the process is gone or the file cannot be read (not Linux).
pub fn rss_bytes(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line
        .trim_start_matches("VmRSS:")
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kib.saturating_mul(1024))
}
