//! Shared harness for the integration tests: a scratch agent home (conf.d, python.d,
//! pythond.toml), a running `pythond` with its output captured, polling with
//! deadlines, and /proc inspection to prove that no worker process outlives the agent.
#![allow(dead_code)]

pub mod backends;
pub mod git;
pub mod http;
pub mod seq;
pub mod versioned;

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// Generous: CI machines are small and shared.
pub const DEADLINE: Duration = Duration::from_secs(60);

/// SIGINT/SIGTERMs closer together than this count as one signal (docs/OPERATIONS.md,
/// "Signals"), plus a margin: a test that means a *second* signal waits this long
/// after the first.
pub const DISTINCT_SIGNAL_GAP: Duration = Duration::from_millis(1300);

/// The binary under test.
pub fn pythond() -> Command {
    Command::new(env!("CARGO_BIN_EXE_pythond"))
}

/// Polls `condition` every 50 ms until it holds or `within` passes.
pub fn wait_until(within: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + within;
    loop {
        if condition() {
            return true;
        }
        if Instant::now() >= end {
            return false;
        }
        thread::sleep(Duration::from_millis(50));
    }
}

/// A scratch agent home: `pythond.toml`, `conf.d/`, `python.d/`, `data/`, and a file
/// sink at `points.ndjson`. Every worker started from it carries a unique marker in
/// its environment so the test can find its processes (and their children) in /proc.
pub struct Home {
    pub dir: tempfile::TempDir,
    pub marker: String,
}

impl Home {
    pub fn new() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("pythond-test-")
            .tempdir()
            .expect("tempdir");
        let marker = format!("{}", dir.path().display());
        let home = Self { dir, marker };
        std::fs::create_dir_all(home.path().join("conf.d")).expect("conf.d");
        std::fs::create_dir_all(home.path().join("python.d")).expect("python.d");
        home.write(
            "pythond.toml",
            "[http]\nlisten = \"127.0.0.1:0\"\n\n[[sinks]]\ntype = \"file\"\npath = \"points.ndjson\"\n",
        );
        home
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Writes `content` to `relative`, creating parent directories.
    ///
    /// A `pythond.toml` without an `[http]` section gets `listen = "127.0.0.1:0"`:
    /// tests run in parallel, and two agents on the default port would collide (the
    /// second then runs without its HTTP API).
    pub fn write(&self, relative: &str, content: &str) -> PathBuf {
        let path = self.path().join(relative);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).expect("parent dir");
        }
        let has_http = content.lines().any(|l| l.trim() == "[http]");
        let content = if relative == "pythond.toml" && !has_http {
            format!("{content}\n[http]\nlisten = \"127.0.0.1:0\"\n")
        } else {
            content.to_string()
        };
        std::fs::write(&path, content).expect("write fixture");
        path
    }

    /// Declares an input in `conf.d/<name>.conf`; `extra` is appended inside the table.
    /// The marker env lets [`processes_with_marker`] find the worker and its children.
    pub fn input(&self, name: &str, dirs: &[&str], extra: &str) {
        self.input_with_cmd(name, "python3", dirs, extra);
    }

    /// Like [`Home::input`], with another interpreter than `python3`.
    pub fn input_with_cmd(&self, name: &str, cmd: &str, dirs: &[&str], extra: &str) {
        let dirs: Vec<String> = dirs.iter().map(|d| format!("{d:?}")).collect();
        self.write(
            &format!("conf.d/{name}.conf"),
            &format!(
                "[[inputs.pythond]]\nname = {name:?}\ncmd = {cmd:?}\ndirs = [{}]\nenvs = [\"PYTHOND_TEST_MARKER={}\"]\n{extra}\n",
                dirs.join(", "),
                self.marker
            ),
        );
    }

    /// Reads a file under the home (empty if it does not exist yet).
    pub fn read(&self, relative: &str) -> String {
        std::fs::read_to_string(self.path().join(relative)).unwrap_or_default()
    }

    /// Starts `pythond run` on this home.
    pub fn start(&self) -> Agent {
        self.start_with_env(&[])
    }

    /// Starts `pythond run` on this home with `env` added to its environment.
    pub fn start_with_env(&self, env: &[(&str, &str)]) -> Agent {
        let mut command = pythond();
        command
            .arg("run")
            .arg("--config")
            .arg(self.path().join("pythond.toml"))
            .current_dir(self.path())
            .envs(env.iter().copied());
        Agent::spawn(command, self.path().join("points.ndjson"), &self.marker)
    }

    /// Runs `pythond check` in this home (relative paths resolve against it).
    pub fn check(&self, args: &[&str]) -> (i32, String, String) {
        let mut command = pythond();
        command.arg("check").args(args).current_dir(self.path());
        run_to_end(command)
    }

    /// Runs `pythond config check --config <home>/pythond.toml`.
    pub fn config_check(&self) -> (i32, String, String) {
        let mut command = pythond();
        command
            .args(["config", "check", "--config"])
            .arg(self.path().join("pythond.toml"))
            .current_dir(self.path());
        run_to_end(command)
    }
}

fn capture(pipe: impl Read + Send + 'static) -> Arc<Mutex<String>> {
    let buf = Arc::new(Mutex::new(String::new()));
    let sink = buf.clone();
    thread::spawn(move || {
        let mut reader = BufReader::new(pipe);
        let mut line = Vec::new();
        while reader
            .read_until(b'\n', &mut line)
            .map(|n| n > 0)
            .unwrap_or(false)
        {
            sink.lock()
                .expect("capture lock")
                .push_str(&String::from_utf8_lossy(&line));
            line.clear();
        }
    });
    buf
}

/// A running agent. Killed (SIGKILL) on drop if the test did not stop it.
pub struct Agent {
    pub child: Child,
    stdout: Arc<Mutex<String>>,
    stderr: Arc<Mutex<String>>,
    points_file: PathBuf,
    marker: String,
}

impl Agent {
    /// Starts `command` (a `pythond run ...`) with RUST_LOG=info and its output captured.
    /// `points_file` is where its file sink writes; `marker` finds its processes.
    pub fn spawn(mut command: Command, points_file: PathBuf, marker: &str) -> Agent {
        let mut child = command
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start pythond");
        let stdout = capture(child.stdout.take().expect("stdout"));
        let stderr = capture(child.stderr.take().expect("stderr"));
        Agent {
            child,
            stdout,
            stderr,
            points_file,
            marker: marker.to_string(),
        }
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    pub fn stderr(&self) -> String {
        self.stderr.lock().expect("stderr lock").clone()
    }

    pub fn stdout(&self) -> String {
        self.stdout.lock().expect("stdout lock").clone()
    }

    /// Every point the file sink has written so far.
    pub fn points(&self) -> Vec<serde_json::Value> {
        read_points(&self.points_file)
    }

    /// Points of one measurement.
    pub fn points_of(&self, measurement: &str) -> Vec<serde_json::Value> {
        self.points()
            .into_iter()
            .filter(|p| p["measurement"] == measurement)
            .collect()
    }

    /// Log lines that contain every one of `needles`.
    pub fn log_lines(&self, needles: &[&str]) -> Vec<String> {
        self.stderr()
            .lines()
            .filter(|line| needles.iter().all(|n| line.contains(n)))
            .map(str::to_string)
            .collect()
    }

    /// Waits until one log line contains every one of `needles`; returns that line,
    /// panics with the log otherwise.
    pub fn expect_log_line(&self, needles: &[&str]) -> String {
        let mut found = None;
        let seen = wait_until(DEADLINE, || {
            found = self.log_lines(needles).into_iter().next();
            found.is_some()
        });
        assert!(
            seen,
            "no log line contained all of {needles:?}; log was:\n{}",
            self.stderr()
        );
        found.unwrap_or_default()
    }

    /// Waits until the log contains `needle`; panics with the log otherwise.
    pub fn expect_log(&self, needle: &str) {
        assert!(
            wait_until(DEADLINE, || self.stderr().contains(needle)),
            "log never contained {needle:?}; log was:\n{}",
            self.stderr()
        );
    }

    /// Waits until `condition(points)` holds; panics with the log otherwise.
    pub fn expect_points(
        &self,
        what: &str,
        mut condition: impl FnMut(&[serde_json::Value]) -> bool,
    ) {
        assert!(
            wait_until(DEADLINE, || condition(&self.points())),
            "{what}: not seen; points: {:?}\nlog:\n{}",
            self.points(),
            self.stderr()
        );
    }

    /// Sends a signal to the agent.
    pub fn signal(&self, signal: i32) {
        // SAFETY: kill has no memory-safety preconditions.
        unsafe {
            libc::kill(self.pid(), signal);
        }
    }

    /// SIGTERM, then waits for the agent to exit; returns its exit status.
    pub fn stop(&mut self) -> std::process::ExitStatus {
        self.signal(libc::SIGTERM);
        self.wait_exit(DEADLINE).expect("agent exits after SIGTERM")
    }

    pub fn wait_exit(&mut self, within: Duration) -> Option<std::process::ExitStatus> {
        let end = Instant::now() + within;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            if Instant::now() >= end {
                return None;
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// Pids of live processes started for this agent's inputs (workers and anything
    /// they started), found by the marker in their environment.
    pub fn worker_processes(&self) -> Vec<i32> {
        processes_with_marker(&self.marker)
            .into_iter()
            .filter(|pid| *pid != self.pid())
            .collect()
    }

    /// The live worker processes themselves (the runner, not what collectors started).
    pub fn workers(&self) -> Vec<i32> {
        self.worker_processes()
            .into_iter()
            .filter(|pid| cmdline(*pid).contains("pythond_worker"))
            .collect()
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        for pid in processes_with_marker(&self.marker) {
            // SAFETY: as above; cleaning up after a failed test.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
            }
        }
    }
}

/// Reads an NDJSON points file (missing file: no points yet). A last line still being
/// written (no newline yet) is left for the next read.
pub fn read_points(path: &Path) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let complete = text.rfind('\n').map(|end| &text[..=end]).unwrap_or("");
    complete
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad NDJSON line {l:?}: {e}")))
        .collect()
}

/// Live (non-zombie) processes whose environment contains `PYTHOND_TEST_MARKER=<marker>`.
pub fn processes_with_marker(marker: &str) -> Vec<i32> {
    let needle = format!("PYTHOND_TEST_MARKER={marker}");
    let mut pids = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return pids;
    };
    for entry in entries.flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(environ) = std::fs::read(entry.path().join("environ")) else {
            continue;
        };
        if !environ.split(|b| *b == 0).any(|kv| kv == needle.as_bytes()) {
            continue;
        }
        let state = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
        // Field 3 of /proc/<pid>/stat is the state; Z is a zombie (exited, not reaped).
        let is_zombie = state
            .rsplit_once(')')
            .map(|(_, rest)| rest.trim_start().starts_with('Z'))
            .unwrap_or(false);
        if !is_zombie {
            pids.push(pid);
        }
    }
    pids
}

/// The command line of a process, arguments joined by spaces ("" if it is gone).
pub fn cmdline(pid: i32) -> String {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|raw| {
            raw.split(|b| *b == 0)
                .map(|arg| String::from_utf8_lossy(arg).into_owned())
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_default()
}

/// True while `pid` exists and is not a zombie.
pub fn alive(pid: i32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    !stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.trim_start().starts_with('Z'))
        .unwrap_or(false)
}

/// This machine's hostname, as `run` should put it in the `host` tag.
pub fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its length; gethostname NUL-terminates within it.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    assert_eq!(rc, 0, "gethostname failed");
    let end = buf.iter().position(|b| *b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}

/// Nanoseconds since the Unix epoch, now.
pub fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_nanos() as i64
}

/// Runs `command` to completion within [`DEADLINE`] (killing it and panicking if it
/// hangs); returns (exit code, stdout, stderr).
pub fn run_to_end(command: Command) -> (i32, String, String) {
    run_to_end_within(command, DEADLINE)
}

/// [`run_to_end`] with another deadline.
pub fn run_to_end_within(mut command: Command, deadline: Duration) -> (i32, String, String) {
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start pythond");
    let stdout = capture(child.stdout.take().expect("stdout"));
    let stderr = capture(child.stderr.take().expect("stderr"));
    let end = Instant::now() + deadline;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for pythond") {
            break status;
        }
        if Instant::now() >= end {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "{command:?} did not finish within {deadline:?}; stdout:\n{}\nstderr:\n{}",
                stdout.lock().expect("stdout lock"),
                stderr.lock().expect("stderr lock")
            );
        }
        thread::sleep(Duration::from_millis(20));
    };
    // The capture threads end (dropping their handle) at EOF, which follows the exit
    // unless a grandchild still holds the pipes; give them a moment.
    wait_until(Duration::from_secs(5), || {
        Arc::strong_count(&stdout) == 1 && Arc::strong_count(&stderr) == 1
    });
    let out = stdout.lock().expect("stdout lock").clone();
    let err = stderr.lock().expect("stderr lock").clone();
    (status.code().unwrap_or(-1), out, err)
}

/// Runs `pythond check` with `args`; returns (exit code, stdout, stderr).
pub fn check(args: &[&str]) -> (i32, String, String) {
    let mut command = pythond();
    command.arg("check").args(args);
    run_to_end(command)
}

/// Parses `check --format json` output.
pub fn parse_points(stdout: &str) -> Vec<serde_json::Value> {
    stdout
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad JSON line {l:?}: {e}")))
        .collect()
}

/// The one point of `measurement` (and `category`) in `points`; panics unless there is
/// exactly one.
pub fn the_point<'p>(
    points: &'p [serde_json::Value],
    category: &str,
    measurement: &str,
) -> &'p serde_json::Value {
    let matching: Vec<&serde_json::Value> = points
        .iter()
        .filter(|p| p["category"] == category && p["measurement"] == measurement)
        .collect();
    assert_eq!(
        matching.len(),
        1,
        "expected exactly one {category} point `{measurement}`; points: {points:#?}"
    );
    matching[0]
}

/// Asserts a point's tags and fields, each compared as a whole.
pub fn assert_tags_fields(
    point: &serde_json::Value,
    tags: serde_json::Value,
    fields: serde_json::Value,
) {
    assert_eq!(point["tags"], tags, "tags of {point}");
    assert_eq!(point["fields"], fields, "fields of {point}");
}
