//! Supervision as DESIGN §4 fixes it, observed from outside through `pythond run`:
//! hung runs, quarantine, dead workers, backoff, bad inputs beside good ones,
//! overlapping runs, long-running plugins, graceful shutdown and no orphans.
//!
//! Collectors find the test's home directory in `PYTHOND_TEST_MARKER` (the harness
//! sets it to the home path) and leave evidence there.

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use common::{alive, wait_until, Home, DEADLINE};

/// A plugin that reports `measurement` with the worker's pid on every run.
fn pid_reporter(class: &str, measurement: &str, interval: u32) -> String {
    format!(
        r#"
import os
from datakit_framework import DataKitFramework

class {class}(DataKitFramework):
    name = {class:?}
    interval = {interval}

    def run(self):
        self.report({{"M": [{{"measurement": {measurement:?}, "tags": {{}}, "fields": {{"pid": os.getpid()}}}}]}})
"#
    )
}

/// Distinct worker pids seen in the points of `measurement`, in order of arrival.
fn pids_of(agent: &common::Agent, measurement: &str) -> Vec<i64> {
    let mut pids = Vec::new();
    for point in agent.points_of(measurement) {
        let pid = point["fields"]["pid"].as_i64().unwrap_or(-1);
        if !pids.contains(&pid) {
            pids.push(pid);
        }
    }
    pids
}

/// A plugin whose run never returns, after starting a `sleep 1000` it records.
const HANG: &str = r#"
import os, subprocess, time
from datakit_framework import DataKitFramework

HOME = os.environ["PYTHOND_TEST_MARKER"]

class Hang(DataKitFramework):
    name = "hang"
    interval = 1

    def run(self):
        child = subprocess.Popen(["sleep", "1000"])
        with open(os.path.join(HOME, "hang_children"), "a") as f:
            f.write("%d\n" % child.pid)
        while True:
            time.sleep(1)
"#;

fn recorded_pids(home: &Home, file: &str) -> Vec<i32> {
    home.read(file)
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect()
}

#[test]
fn a_hung_run_is_timed_out_and_its_worker_restarted_while_others_keep_reporting() {
    let home = Home::new();
    home.write("python.d/hang/hang.py", HANG);
    home.write("python.d/hang/quick.py", &pid_reporter("Quick", "quick", 1));
    home.input("hanging", &["hang"], "interval = \"1s\"\ntimeout = \"2s\"");
    let agent = home.start();

    agent.expect_log_line(&["did not finish within its timeout", "hanging", "hang.Hang"]);
    // The quick plugin reports from a new worker: the old one was killed and replaced.
    agent.expect_points("quick points from a restarted worker", |_| {
        pids_of(&agent, "quick").len() >= 2
    });
    let old_worker = pids_of(&agent, "quick")[0];
    assert!(
        wait_until(DEADLINE, || !Path::new(&format!("/proc/{old_worker}"))
            .exists()),
        "the killed worker {old_worker} was never reaped (zombie)"
    );
    // What the hung run started died with the worker's process group.
    let first_child = recorded_pids(&home, "hang_children")[0];
    assert!(
        wait_until(DEADLINE, || !alive(first_child)),
        "the hung run's subprocess {first_child} outlived its worker"
    );
}

#[test]
fn three_hangs_in_a_row_quarantine_the_plugin_and_the_worker_stays_up() {
    let home = Home::new();
    home.write("python.d/hang/hang.py", HANG);
    home.write("python.d/hang/quick.py", &pid_reporter("Quick", "quick", 1));
    home.input(
        "quarantining",
        &["hang"],
        "interval = \"1s\"\ntimeout = \"1s\"",
    );
    let agent = home.start();

    agent.expect_log_line(&["quarantined", "quarantining", "hang.Hang"]);
    // While the hanging plugin sits out its cool-off, its worker is no longer killed:
    // the quick plugin reports run after run from one process.
    agent.expect_points(
        "six quick points from one worker after the quarantine",
        |points| {
            let last_pid = points
                .iter()
                .rev()
                .find(|p| p["measurement"] == "quick")
                .map(|p| p["fields"]["pid"].clone());
            let Some(last_pid) = last_pid else {
                return false;
            };
            points
                .iter()
                .filter(|p| p["measurement"] == "quick" && p["fields"]["pid"] == last_pid)
                .count()
                >= 6
        },
    );
    let timeouts = agent
        .log_lines(&["did not finish within its timeout", "hang.Hang"])
        .len();
    assert_eq!(
        timeouts,
        3,
        "a quarantined plugin must not be run (and time out) again:\n{}",
        agent.stderr()
    );
}

#[test]
fn a_sigkilled_worker_is_restarted_and_points_resume() {
    let home = Home::new();
    home.write("python.d/beat/beat.py", &pid_reporter("Beat", "beat", 1));
    home.input("beating", &["beat"], "interval = \"1s\"");
    let agent = home.start();

    agent.expect_points("a first beat", |_| !pids_of(&agent, "beat").is_empty());
    let first = pids_of(&agent, "beat")[0] as i32;
    assert!(
        agent.workers().contains(&first),
        "the reporting pid {first} is not a worker: {:?}",
        agent.workers()
    );
    // SAFETY: signalling a process this test's agent started.
    unsafe {
        libc::kill(first, libc::SIGKILL);
    }
    agent.expect_points("beats from a new worker", |_| {
        pids_of(&agent, "beat").len() >= 2
    });
    assert!(
        wait_until(DEADLINE, || !Path::new(&format!("/proc/{first}")).exists()),
        "the killed worker {first} was never reaped (zombie)"
    );
    agent.expect_log_line(&["beating", "restarting"]);
}

#[test]
fn a_worker_that_exits_is_restarted_with_exponential_backoff() {
    let home = Home::new();
    home.write(
        "python.d/crash/crash.py",
        r#"
import os, time
from datakit_framework import DataKitFramework

LOG = os.path.join(os.environ["PYTHOND_TEST_MARKER"], "lifecycle")

def note(what):
    with open(LOG, "a") as f:
        f.write("%s %f\n" % (what, time.time()))

note("start")

class Crash(DataKitFramework):
    name = "crash"
    interval = 1

    def run(self):
        self.report({"M": [{"measurement": "crash", "tags": {}, "fields": {"pid": os.getpid()}}]})
        note("exit")
        os._exit(1)
"#,
    );
    home.input("crashing", &["crash"], "");
    let agent = home.start();

    let events = || -> Vec<(String, f64)> {
        home.read("lifecycle")
            .lines()
            .filter_map(|l| {
                let (what, at) = l.split_once(' ')?;
                Some((what.to_string(), at.parse().ok()?))
            })
            .collect()
    };
    assert!(
        wait_until(Duration::from_secs(90), || events()
            .iter()
            .filter(|(w, _)| w == "start")
            .count()
            >= 4),
        "the worker was not restarted three times; lifecycle: {:?}\nlog:\n{}",
        events(),
        agent.stderr()
    );
    // Delay between a worker's exit and the start of the next one.
    let events = events();
    let mut gaps = Vec::new();
    for pair in events.windows(2) {
        if pair[0].0 == "exit" && pair[1].0 == "start" {
            gaps.push(pair[1].1 - pair[0].1);
        }
    }
    assert!(gaps.len() >= 3, "lifecycle: {events:?}");
    assert!(
        gaps[0] >= 0.8 && gaps[0] < 10.0,
        "the first restart should come after about 1 s, came after {:.2} s",
        gaps[0]
    );
    assert!(
        gaps[2] >= 2.5 && gaps[2] > gaps[0],
        "restart delays do not grow: {gaps:?}"
    );
    agent.expect_log_line(&["crashing", "restarting"]);
    // Each worker reported, then exited at once: its report must still arrive.
    let exits = events.iter().filter(|(w, _)| w == "exit").count();
    assert!(
        wait_until(Duration::from_secs(30), || agent.points_of("crash").len()
            >= exits),
        "{exits} workers reported and exited, but only {} points arrived",
        agent.points_of("crash").len()
    );
}

#[test]
fn a_missing_interpreter_is_a_clear_error_and_other_inputs_run() {
    let home = Home::new();
    home.write("python.d/good/good.py", &pid_reporter("Good", "good", 1));
    home.input_with_cmd(
        "ghost",
        "python3-no-such-interpreter",
        &["good"],
        "interval = \"1s\"",
    );
    home.input("fine", &["good"], "interval = \"1s\"");
    let agent = home.start();

    agent.expect_log_line(&[
        "ghost",
        "interpreter `python3-no-such-interpreter` not found",
    ]);
    agent.expect_points("the good input reports", |points| {
        points.iter().filter(|p| p["measurement"] == "good").count() >= 2
    });
}

#[test]
fn a_bad_dirs_entry_is_a_clear_error_and_other_inputs_run() {
    let home = Home::new();
    home.write("python.d/good/good.py", &pid_reporter("Good", "good", 1));
    home.input("lost", &["no-such-dir"], "interval = \"1s\"");
    home.input("fine", &["good"], "interval = \"1s\"");
    let agent = home.start();

    agent.expect_log_line(&["lost", "no-such-dir"]);
    agent.expect_points("the good input reports", |points| {
        points.iter().filter(|p| p["measurement"] == "good").count() >= 2
    });
}

#[test]
fn a_run_longer_than_the_interval_is_skipped_not_overlapped() {
    let home = Home::new();
    home.write(
        "python.d/slow/slow.py",
        r#"
import os, time
from datakit_framework import DataKitFramework

HOME = os.environ["PYTHOND_TEST_MARKER"]
RUNNING = os.path.join(HOME, "running")

class Slow(DataKitFramework):
    name = "slow"
    interval = 1

    def run(self):
        if os.path.exists(RUNNING):
            open(os.path.join(HOME, "overlap"), "w").close()
        open(RUNNING, "w").close()
        time.sleep(2.5)
        os.remove(RUNNING)
        self.report({"M": [{"measurement": "slow", "tags": {}, "fields": {"v": 1}}]})
"#,
    );
    home.input(
        "overlapping",
        &["slow"],
        "interval = \"1s\"\ntimeout = \"30s\"",
    );
    let agent = home.start();

    agent.expect_log_line(&["run skipped", "overlapping", "slow.Slow"]);
    agent.expect_points("three slow runs", |points| points.len() >= 3);
    assert!(
        !home.path().join("overlap").exists(),
        "two runs of one plugin overlapped"
    );
    assert!(
        agent
            .log_lines(&["did not finish within its timeout"])
            .is_empty(),
        "{}",
        agent.stderr()
    );
}

#[test]
fn a_long_running_plugin_is_not_timed_out() {
    let home = Home::new();
    home.write(
        "python.d/server/server.py",
        r#"
import os, time
from datakit_framework import DataKitFramework

class Server(DataKitFramework):
    name = "server"
    interval = 1
    long_running = True

    def run(self):
        n = 0
        while True:
            n += 1
            self.report({"M": [{"measurement": "served", "tags": {}, "fields": {"n": n, "pid": os.getpid()}}]})
            time.sleep(0.2)
"#,
    );
    home.input(
        "serving",
        &["server"],
        "interval = \"1s\"\ntimeout = \"1s\"",
    );
    let agent = home.start();

    // 25 reports take about 5 s, five times the timeout.
    agent.expect_points("25 reports from the long-running run", |points| {
        points
            .iter()
            .any(|p| p["measurement"] == "served" && p["fields"]["n"].as_i64() >= Some(25))
    });
    let pids: BTreeSet<i64> = agent
        .points_of("served")
        .iter()
        .map(|p| p["fields"]["pid"].as_i64().unwrap_or(-1))
        .collect();
    assert_eq!(
        pids.len(),
        1,
        "the long-running plugin's worker was restarted: {pids:?}"
    );
    assert!(
        agent
            .log_lines(&["did not finish within its timeout"])
            .is_empty(),
        "a long_running plugin was timed out:\n{}",
        agent.stderr()
    );
}

#[test]
fn sigterm_lets_runs_in_flight_finish_and_leaves_no_process_behind() {
    let home = Home::new();
    home.write(
        "python.d/inflight/slow.py",
        r#"
import os, time
from datakit_framework import DataKitFramework

HOME = os.environ["PYTHOND_TEST_MARKER"]

class Slow(DataKitFramework):
    name = "slow"
    interval = 60

    def run(self):
        open(os.path.join(HOME, "slow_started"), "w").close()
        # Still in flight when the agent is told to stop: the test releases it after
        # sending SIGTERM.
        while not os.path.exists(os.path.join(HOME, "release")):
            time.sleep(0.05)
        time.sleep(1)
        self.report({"M": [{"measurement": "finished_in_flight", "tags": {}, "fields": {"v": 1}}]})
"#,
    );
    home.write(
        "python.d/inflight/stuck.py",
        r#"
import os, subprocess, time
from datakit_framework import DataKitFramework

HOME = os.environ["PYTHOND_TEST_MARKER"]

class Stuck(DataKitFramework):
    name = "stuck"
    interval = 60

    def run(self):
        child = subprocess.Popen(["sleep", "1000"])
        with open(os.path.join(HOME, "stuck_child"), "w") as f:
            f.write("%d\n" % child.pid)
        while True:
            time.sleep(1)
"#,
    );
    home.input("inflight", &["inflight"], "");
    let mut agent = home.start();

    assert!(
        wait_until(DEADLINE, || home.path().join("slow_started").exists()
            && !recorded_pids(&home, "stuck_child").is_empty()),
        "the runs did not start; log:\n{}",
        agent.stderr()
    );
    let stuck_child = recorded_pids(&home, "stuck_child")[0];
    agent.signal(libc::SIGTERM);
    agent.expect_log("shutting down");
    home.write("release", "");
    let status = agent
        .wait_exit(DEADLINE)
        .expect("agent exits after SIGTERM");
    assert_eq!(
        status.code(),
        Some(0),
        "exit after SIGTERM; log:\n{}",
        agent.stderr()
    );
    assert_eq!(
        agent.points_of("finished_in_flight").len(),
        1,
        "the run in flight did not finish and get written; log:\n{}",
        agent.stderr()
    );
    assert!(
        wait_until(Duration::from_secs(5), || agent
            .worker_processes()
            .is_empty()),
        "processes left after shutdown: {:?}",
        agent.worker_processes()
    );
    assert!(
        !alive(stuck_child),
        "the stuck run's subprocess survived shutdown"
    );
}

#[test]
fn sigkill_of_the_agent_takes_its_workers_and_their_children_down() {
    let home = Home::new();
    home.write(
        "python.d/orphan/orphan.py",
        r#"
import os, subprocess
from datakit_framework import DataKitFramework

HOME = os.environ["PYTHOND_TEST_MARKER"]

class Orphan(DataKitFramework):
    name = "orphan"
    interval = 60

    def run(self):
        child = subprocess.Popen(["sleep", "1000"])
        with open(os.path.join(HOME, "child"), "w") as f:
            f.write("%d\n" % child.pid)
        self.report({"M": [{"measurement": "orphan", "tags": {}, "fields": {"child": child.pid}}]})
"#,
    );
    home.input("orphaning", &["orphan"], "");
    let mut agent = home.start();

    agent.expect_points("the collector started its child", |points| {
        !points.is_empty()
    });
    let child = recorded_pids(&home, "child")[0];
    assert!(alive(child));
    assert!(!agent.workers().is_empty(), "no worker found");
    agent.signal(libc::SIGKILL);
    let _ = agent.wait_exit(DEADLINE);
    assert!(
        wait_until(DEADLINE, || agent.worker_processes().is_empty()),
        "processes outlived the SIGKILLed agent: {:?}",
        agent
            .worker_processes()
            .iter()
            .map(|p| format!("{p}: {}", common::cmdline(*p)))
            .collect::<Vec<_>>()
    );
    assert!(
        !alive(child),
        "the collector's `sleep 1000` outlived the agent"
    );
}

#[test]
fn a_falsy_interval_means_ten_seconds() {
    let home = Home::new();
    home.write("python.d/rates/fast.py", &pid_reporter("Fast", "fast", 1));
    home.write(
        "python.d/rates/zero.py",
        r#"
from datakit_framework import DataKitFramework

class Zero(DataKitFramework):
    name = "zero"
    interval = 0

    def run(self):
        self.report({"M": [{"measurement": "zero", "tags": {}, "fields": {"v": 1}}]})
"#,
    );
    home.input("rates", &["rates"], "");
    let agent = home.start();

    // Five runs of the 1 s plugin span about 4 s; a 10 s plugin ran once by then.
    agent.expect_points("five fast runs", |points| {
        points.iter().filter(|p| p["measurement"] == "fast").count() >= 5
    });
    assert_eq!(
        agent.points_of("zero").len(),
        1,
        "interval = 0 must mean 10 s (one run so far); points: {:?}",
        agent.points()
    );
}

#[test]
fn a_module_that_fails_to_import_is_logged_and_its_neighbours_run() {
    let home = Home::new();
    home.write("python.d/mixed/good.py", &pid_reporter("Good", "good", 1));
    home.write(
        "python.d/mixed/broken.py",
        "from datakit_framework import DataKitFramework\n\nclass Broken(DataKitFramework)\n    pass\n",
    );
    home.input("half_broken", &["mixed"], "interval = \"1s\"");
    let agent = home.start();

    agent.expect_log_line(&["half_broken", "broken.py:3", "SyntaxError"]);
    agent.expect_points("the good module's points", |points| points.len() >= 2);
}

#[test]
fn a_run_that_raises_is_logged_and_the_plugin_keeps_its_schedule() {
    let home = Home::new();
    home.write(
        "python.d/flaky/flaky.py",
        r#"
from datakit_framework import DataKitFramework

class Flaky(DataKitFramework):
    name = "flaky"
    interval = 1

    def __init__(self):
        super().__init__()
        self.n = 0

    def run(self):
        self.n += 1
        self.report({"M": [{"measurement": "flaky", "tags": {}, "fields": {"n": self.n}}]})
        if self.n % 2 == 1:
            raise KeyError("odd run %d" % self.n)
"#,
    );
    home.input("flakes", &["flaky"], "interval = \"1s\"");
    let agent = home.start();

    agent.expect_log_line(&["flakes", "flaky.Flaky", "KeyError", "odd run 1"]);
    agent.expect_points("runs after the failures", |points| {
        points.iter().any(|p| p["fields"]["n"].as_i64() >= Some(4))
    });
    let runs: Vec<i64> = agent
        .points_of("flaky")
        .iter()
        .map(|p| p["fields"]["n"].as_i64().unwrap_or(-1))
        .collect();
    assert_eq!(
        &runs[..4],
        &[1, 2, 3, 4],
        "the same instance runs again after an exception"
    );
    assert!(
        agent.log_lines(&["restarting"]).is_empty(),
        "an exception is not a reason to restart the worker"
    );
}

#[test]
fn sigint_stops_the_agent_gracefully() {
    let home = Home::new();
    home.write("python.d/beat/beat.py", &pid_reporter("Beat", "beat", 1));
    home.input("interrupted", &["beat"], "");
    let mut agent = home.start();
    agent.expect_points("a beat", |points| !points.is_empty());
    agent.signal(libc::SIGINT);
    let status = agent.wait_exit(DEADLINE).expect("agent exits after SIGINT");
    assert_eq!(status.code(), Some(0), "log:\n{}", agent.stderr());
    assert!(
        wait_until(Duration::from_secs(5), || agent
            .worker_processes()
            .is_empty()),
        "processes left after SIGINT: {:?}",
        agent.worker_processes()
    );
}

#[test]
fn a_second_signal_stops_at_once() {
    let home = Home::new();
    home.write(
        "python.d/stuck/stuck.py",
        r#"
import os, time
from datakit_framework import DataKitFramework

HOME = os.environ["PYTHOND_TEST_MARKER"]

class Stuck(DataKitFramework):
    name = "stuck"
    interval = 60

    def run(self):
        open(os.path.join(HOME, "stuck_started"), "w").close()
        while True:
            time.sleep(1)
"#,
    );
    home.input("impatient", &["stuck"], "");
    let mut agent = home.start();
    assert!(
        wait_until(DEADLINE, || home.path().join("stuck_started").exists()),
        "the run did not start; log:\n{}",
        agent.stderr()
    );
    agent.signal(libc::SIGTERM);
    agent.expect_log("shutting down");
    // Closer signals count as one (GNU `timeout` sends two at once).
    std::thread::sleep(common::DISTINCT_SIGNAL_GAP);
    let second = std::time::Instant::now();
    agent.signal(libc::SIGTERM);
    // The grace for the stuck run is 10 s; a second signal must not wait for it.
    let status = agent
        .wait_exit(DEADLINE)
        .expect("agent exits after a second signal");
    assert!(
        second.elapsed() < Duration::from_secs(7),
        "the second signal took {:?} to stop the agent (exit {status:?})",
        second.elapsed()
    );
    assert!(
        wait_until(Duration::from_secs(5), || agent
            .worker_processes()
            .is_empty()),
        "processes left after the second signal: {:?}",
        agent.worker_processes()
    );
}

#[test]
fn the_default_timeout_is_three_intervals() {
    let home = Home::new();
    home.write("python.d/hang/hang.py", HANG);
    home.input("defaulted", &["hang"], "interval = \"1s\"");
    let agent = home.start();
    let line = agent.expect_log_line(&[
        "did not finish within its timeout",
        "defaulted",
        "hang.Hang",
    ]);
    assert!(
        line.contains("timeout of 3s"),
        "the default timeout is not 3 x 1s: {line}"
    );
}

/// PDEATHSIG fires when the *thread* that started a worker exits; an agent that starts
/// workers from short-lived threads loses healthy workers after a while. Watch a first
/// worker and a restarted one for longer than such threads live (tokio: 10 s idle).
#[test]
fn healthy_workers_are_left_alone() {
    let home = Home::new();
    home.write("python.d/beat/beat.py", &pid_reporter("Beat", "beat", 1));
    home.input("steady", &["beat"], "interval = \"1s\"");
    let agent = home.start();
    let beats_from = |pid: i64| {
        agent
            .points_of("beat")
            .iter()
            .filter(|p| p["fields"]["pid"] == pid)
            .count()
    };

    agent.expect_points("a first beat", |_| !pids_of(&agent, "beat").is_empty());
    let first = pids_of(&agent, "beat")[0];
    agent.expect_points("13 beats from the first worker", |_| {
        beats_from(first) >= 13
    });
    assert_eq!(
        pids_of(&agent, "beat"),
        [first],
        "a healthy worker was replaced:\n{}",
        agent.stderr()
    );

    // SAFETY: signalling a process this test's agent started.
    unsafe {
        libc::kill(first as i32, libc::SIGKILL);
    }
    agent.expect_points("beats from a second worker", |_| {
        pids_of(&agent, "beat").len() >= 2
    });
    let second = pids_of(&agent, "beat")[1];
    agent.expect_points("13 beats from the second worker", |_| {
        beats_from(second) >= 13
    });
    assert_eq!(
        pids_of(&agent, "beat"),
        [first, second],
        "a healthy restarted worker was replaced:\n{}",
        agent.stderr()
    );
}
