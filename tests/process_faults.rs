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
