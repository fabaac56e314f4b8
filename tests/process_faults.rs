//! Process faults, observed from outside through `pythond run`: a worker that dies
//! while a child it forked still holds its channel, descendants that escape the
//! worker's process group (new sessions, double-forked daemons), and what a worker
//! writes into its channel that is not a frame.
//!
//! Collectors find the test's home directory in `PYTHOND_TEST_MARKER` and leave the
//! pids they start there.

mod common;

use common::{alive, http, wait_until, Home, DEADLINE};

/// Pids a collector wrote, one per line, to `file` under the home.
fn recorded_pids(home: &Home, file: &str) -> Vec<i32> {
    home.read(file)
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect()
}

/// The status entry of input `name` from `GET /v1/status`.
fn input_status(base: &str, name: &str) -> serde_json::Value {
    let status = http::get(&format!("{base}/v1/status"), &[]).json();
    status["inputs"]
        .as_array()
        .and_then(|inputs| inputs.iter().find(|i| i["name"] == name).cloned())
        .unwrap_or(serde_json::Value::Null)
}

/// Forks a child that sleeps for an hour holding the worker's channel, then ends the
/// worker itself: nothing but the worker's own exit says it is gone.
const FORK_THEN_EXIT: &str = r#"
import os, time
from datakit_framework import DataKitFramework

HOME = os.environ["PYTHOND_TEST_MARKER"]

class ForkExit(DataKitFramework):
    name = "forkexit"
    interval = 1

    def run(self):
        with open(os.path.join(HOME, "workers"), "a") as f:
            f.write("%d\n" % os.getpid())
        child = os.fork()
        if child == 0:
            time.sleep(3600)
            os._exit(0)
        with open(os.path.join(HOME, "children"), "a") as f:
            f.write("%d\n" % child)
        os._exit(0)
"#;

#[test]
fn a_worker_that_exits_while_its_forked_child_holds_the_channel_is_restarted() {
    let home = Home::new();
    home.write("python.d/forkexit/forkexit.py", FORK_THEN_EXIT);
    // A run timeout far beyond the deadline: the hang detector must not be what
    // notices the dead worker.
    home.input("forking", &["forkexit"], "timeout = \"10m\"");
    let agent = home.start();
    let base = http::api_base(&agent);

    assert!(
        wait_until(DEADLINE, || !recorded_pids(&home, "children").is_empty()),
        "the collector never forked; log:\n{}",
        agent.stderr()
    );
    // The child sleeps for an hour: only watching the worker's own exit notices it
    // within this deadline.
    assert!(
        wait_until(DEADLINE, || input_status(&base, "forking")["restarts"]
            .as_u64()
            .unwrap_or(0)
            >= 1),
        "the dead worker was never restarted; status: {}\nlog:\n{}",
        input_status(&base, "forking"),
        agent.stderr()
    );
    assert!(
        wait_until(DEADLINE, || recorded_pids(&home, "workers").len() >= 2),
        "no second worker ran; log:\n{}",
        agent.stderr()
    );
    // The first worker's forked child went down with its process group.
    let first_child = recorded_pids(&home, "children")[0];
    assert!(
        wait_until(DEADLINE, || !alive(first_child)),
        "the forked child {first_child} outlived its dead worker"
    );
    agent.expect_log_line(&["forking", "its process exited", "restarting"]);
}

/// Once per worker: a `sleep` in a session of its own, and a daemon that double-forks
/// with `setsid` in between; both pids are recorded.
const ESCAPES: &str = r#"
import os, subprocess, time
from datakit_framework import DataKitFramework

HOME = os.environ["PYTHOND_TEST_MARKER"]

def note(file, pid):
    with open(os.path.join(HOME, file), "a") as f:
        f.write("%d\n" % pid)

class Escape(DataKitFramework):
    name = "escape"
    interval = 3600

    def run(self):
        child = subprocess.Popen(["sleep", "3600"], start_new_session=True)
        note("session_children", child.pid)
        read, write = os.pipe()
        if os.fork() == 0:
            os.setsid()
            daemon = os.fork()
            if daemon == 0:
                os.execvp("sleep", ["sleep", "3601"])
            os.write(write, b"%d" % daemon)
            os._exit(0)
        os.close(write)
        daemon = int(os.read(read, 32))
        note("daemons", daemon)
        self.report({"M": [{"measurement": "escaped", "fields": {"child": child.pid, "daemon": daemon}}]})
        while True:
            time.sleep(1)
"#;

fn start_escapes(home: &Home) -> (common::Agent, i32, i32) {
    home.write("python.d/escape/escape.py", ESCAPES);
    // The run never ends: no timeout may kill the worker meanwhile.
    home.input("escaping", &["escape"], "timeout = \"10m\"");
    let agent = home.start();
    agent.expect_points("the escapes started", |points| {
        points.iter().any(|p| p["measurement"] == "escaped")
    });
    let child = recorded_pids(home, "session_children")[0];
    let daemon = recorded_pids(home, "daemons")[0];
    (agent, child, daemon)
}

/// Waits until `pid` is gone; panics naming `what` otherwise.
fn expect_gone(pid: i32, what: &str, agent: &common::Agent) {
    assert!(
        wait_until(DEADLINE, || !alive(pid)),
        "{what} {pid} is still alive ({}); log:\n{}",
        common::cmdline(pid),
        agent.stderr()
    );
}

#[test]
fn a_daemon_that_leaves_its_worker_is_killed_while_the_agent_runs() {
    let home = Home::new();
    let (agent, child, daemon) = start_escapes(&home);
    // Its parent exited at once: re-parented to the agent, it is killed there.
    expect_gone(daemon, "the double-forked daemon", &agent);
    // The child in a session of its own still has its worker for a parent.
    assert!(alive(child), "the worker's own child {child} was killed");
    agent.expect_log_line(&["left its worker"]);
}

#[test]
fn a_child_in_a_new_session_does_not_survive_sigterm_of_the_agent() {
    let home = Home::new();
    let (mut agent, child, daemon) = start_escapes(&home);
    assert!(agent.stop().success(), "log:\n{}", agent.stderr());
    expect_gone(child, "the child in a new session", &agent);
    expect_gone(daemon, "the double-forked daemon", &agent);
}

#[test]
fn a_child_in_a_new_session_does_not_survive_sigkill_of_the_agent() {
    let home = Home::new();
    let (mut agent, child, daemon) = start_escapes(&home);
    // A daemon is the agent's to kill as soon as it leaves its worker's tree (see
    // docs/OPERATIONS.md for the window in which a SIGKILL of the agent loses it).
    expect_gone(daemon, "the double-forked daemon", &agent);
    agent.signal(libc::SIGKILL);
    agent.wait_exit(DEADLINE).expect("the agent dies");
    // Still the worker's child: the worker, told by PDEATHSIG, kills it.
    expect_gone(child, "the child in a new session", &agent);
}

/// Writes 100,000 lines that are not frames into its own channel, then frames whose
/// text carries a newline followed by a forged agent log line, then fails a run with
/// such a message.
const GARBAGE: &str = r#"
import gc, json, os
from datakit_framework import DataKitFramework

FORGED = "2026-12-01T07:16:00Z ERROR pythond::agent: FORGED"

def channel():
    for obj in gc.get_objects():
        if type(obj).__name__ == "Channel" and hasattr(obj, "_sock"):
            return obj
    raise RuntimeError("no channel")

class Garbage(DataKitFramework):
    name = "garbage"
    interval = 3600

    def run(self):
        ch = channel()
        ch.send(b"".join(b"not a frame %d\n" % i for i in range(100000)))
        ch.send((json.dumps({"t": "log", "stream": "stdout", "plugin": "garbage.Garbage",
                             "line": "oops\n" + FORGED + " log"}) + "\n").encode())
        ch.send((json.dumps({"t": "lasterror", "plugin": "garbage.Garbage",
                             "message": "bad\n" + FORGED + " lasterror"}) + "\n").encode())
        os.write(1, b"raw\r" + FORGED.encode() + b" raw\n")
        self.report({"M": [{"measurement": "m\n" + FORGED + " shim", "fields": {"v": float("nan")}}]})
        raise RuntimeError("boom\n" + FORGED + " done")
"#;

/// The value of one sample (name and labels) in `/metrics`.
fn metric(base: &str, sample: &str) -> Option<f64> {
    let text = http::get(&format!("{base}/metrics"), &[]).body;
    text.lines()
        .find_map(|l| l.strip_prefix(sample)?.strip_prefix(' ')?.parse().ok())
}

#[test]
fn a_flood_of_bad_frames_is_counted_and_rate_limited_and_no_line_can_be_forged() {
    let home = Home::new();
    home.write("python.d/garbage/garbage.py", GARBAGE);
    home.input("garbage", &["garbage"], "");
    let agent = home.start();
    let base = http::api_base(&agent);

    assert!(
        wait_until(DEADLINE, || input_status(&base, "garbage")["bad_frames"]
            .as_u64()
            .unwrap_or(0)
            >= 100_000),
        "not every bad frame was counted; status: {}",
        input_status(&base, "garbage")
    );
    agent.expect_log_line(&["run failed", "boom"]);
    let status = input_status(&base, "garbage");
    assert_eq!(status["bad_frames"], 100_000, "{status}");
    // Every bad frame was either logged or counted as suppressed, and most were not
    // logged: the flood took far less than the 500 s that 200 lines a second allow.
    let logged = agent.log_lines(&["bad frame from worker"]).len() as u64;
    let suppressed = status["log_lines_suppressed"].as_u64().unwrap_or(0);
    assert_eq!(logged + suppressed, 100_000, "{status}");
    // /metrics carries the same counts as the status.
    let input = r#"{input="garbage"}"#;
    assert_eq!(
        metric(&base, &format!("pythond_input_bad_frames_total{input}")),
        Some(100_000.0)
    );
    assert_eq!(
        metric(
            &base,
            &format!("pythond_input_log_lines_suppressed_total{input}")
        ),
        Some(suppressed as f64)
    );
    assert!(
        logged < 20_000,
        "{logged} error lines for 100,000 bad frames"
    );

    // Each forged text stays inside the line of the message that carried it.
    for kind in ["log", "lasterror", "raw", "shim", "done"] {
        let needle = format!("FORGED {kind}");
        let lines = agent.log_lines(&[&needle]);
        assert!(
            !lines.is_empty(),
            "no line carries {needle:?}; log:\n{}",
            agent.stderr()
        );
        for line in lines {
            assert!(
                !line.starts_with("2026-12-01T07:16:00Z"),
                "a forged line of its own: {line:?}"
            );
            assert!(
                line.contains("\\n2026-12-01T07:16:00Z")
                    || line.contains("\\r2026-12-01T07:16:00Z"),
                "the forged text was not escaped: {line:?}"
            );
        }
    }
}

/// A run that takes a few seconds and notes when it starts and finishes.
const SLOW_RUN: &str = r#"
import os, time
from datakit_framework import DataKitFramework

JOURNAL = os.path.join(os.environ["PYTHOND_TEST_MARKER"], "journal")

class Slow(DataKitFramework):
    name = "slow"
    interval = 3600

    def run(self):
        with open(JOURNAL, "a") as f:
            f.write("started\n")
        time.sleep(4)
        with open(JOURNAL, "a") as f:
            f.write("finished\n")
"#;

#[test]
fn two_sigterms_arriving_together_count_as_one_and_the_stop_stays_graceful() {
    let home = Home::new();
    home.write("python.d/slow/slow.py", SLOW_RUN);
    home.input("slow", &["slow"], "");
    let mut agent = home.start();
    assert!(
        wait_until(DEADLINE, || home.read("journal") == "started\n"),
        "log:\n{}",
        agent.stderr()
    );
    // What GNU `timeout` does: the process, then its group, at once. The second one
    // goes once the agent has acted on the first, the worst case for telling them
    // apart; well within the one second that makes signals distinct.
    agent.signal(libc::SIGTERM);
    let first = std::time::Instant::now();
    agent.expect_log("shutting down");
    agent.signal(libc::SIGTERM);
    let gap = first.elapsed();
    let status = agent.wait_exit(DEADLINE).expect("the agent exits");
    assert!(status.success(), "{status:?}; log:\n{}", agent.stderr());
    assert_eq!(
        home.read("journal"),
        "started\nfinished\n",
        "the run in flight was cut short; log:\n{}",
        agent.stderr()
    );
    assert!(
        agent.log_lines(&["second signal"]).is_empty(),
        "two signals {gap:?} apart counted twice; log:\n{}",
        agent.stderr()
    );
}

/// Reports, over the HTTP transport, whether its worker's `/proc/<pid>/environ` still
/// shows the options or the token, and the option it got.
const ENVIRON: &str = r#"
import os
from datakit_framework import DataKitFramework

class Environ(DataKitFramework):
    name = "environ"
    interval = 3600

    def run(self):
        with open("/proc/%d/environ" % os.getpid(), "rb") as f:
            environ = f.read()
        self.report({"M": [{"measurement": "environ", "fields": {
            "options_shown": int(b"PYTHOND_OPTIONS" in environ or b"s3cret-option" in environ),
            "token_shown": int(b"PYTHOND_HTTP_TOKEN" in environ or b"t0ken-for-http" in environ),
            "option_received": int(self.options.get("word") == "s3cret-option")}}]})
"#;

#[test]
fn options_and_the_http_token_never_show_in_the_workers_environ() {
    let home = Home::new();
    home.write(
        "pythond.toml",
        "[http]\nlisten = \"127.0.0.1:0\"\ntoken = \"t0ken-for-http\"\n\n[[sinks]]\ntype = \"file\"\npath = \"points.ndjson\"\n",
    );
    home.write("python.d/environ/environ.py", ENVIRON);
    home.input(
        "environ",
        &["environ"],
        "transport = \"http\"\n[inputs.pythond.options]\nword = \"s3cret-option\"\n",
    );
    let agent = home.start();
    // The point arrived over HTTP: the token reached the worker.
    agent.expect_points("the environ report", |points| {
        points.iter().any(|p| p["measurement"] == "environ")
    });
    let point = agent.points_of("environ").remove(0);
    assert_eq!(point["fields"]["option_received"], 1, "{point}");
    assert_eq!(point["fields"]["options_shown"], 0, "{point}");
    assert_eq!(point["fields"]["token_shown"], 0, "{point}");
}
