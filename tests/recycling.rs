//! Worker recycling: `max_rss` restarts a worker whose memory grew past the limit,
//! `max_age` one that ran too long — gracefully, between runs (the plugin's `deinit`
//! runs, nothing is counted as a failure); `start_delay` holds an input's worker back
//! while the others start.

mod common;

use common::{wait_until, Agent, Home, DEADLINE};

/// Leaks 16 MiB per run, like a library that never frees its buffers.
const LEAKY: &str = r#"
import os
from datakit_framework import DataKitFramework

LEAK = []

class Leaky(DataKitFramework):
    name = "leaky"
    interval = 0.5

    def run(self):
        LEAK.append(bytearray(16 * 1024 * 1024))
        self.report({"M": [{"measurement": "leaky", "fields": {"pid": os.getpid(), "held": len(LEAK)}}]})

    def deinit(self):
        with open(self.options["journal"], "a") as f:
            f.write("deinit %d\n" % os.getpid())
"#;

fn pids(agent: &Agent) -> Vec<i64> {
    let mut pids: Vec<i64> = Vec::new();
    for point in agent.points_of("leaky") {
        if let Some(pid) = point["fields"]["pid"].as_i64() {
            if !pids.contains(&pid) {
                pids.push(pid);
            }
        }
    }
    pids
}

fn leaky_home(limit: &str) -> Home {
    let home = Home::new();
    home.write("python.d/leaky/leaky.py", LEAKY);
    let journal = home.path().join("journal.txt");
    home.input(
        "leaky",
        &["leaky"],
        &format!(
            "{limit}\n[inputs.pythond.options]\njournal = {:?}\n",
            journal.display().to_string()
        ),
    );
    home
}

#[test]
fn a_worker_over_max_rss_is_recycled_gracefully() {
    let home = leaky_home("max_rss = \"100MiB\"");
    let mut agent = home.start();
    assert!(
        wait_until(DEADLINE, || pids(&agent).len() >= 2),
        "the worker was never recycled; log:\n{}",
        agent.stderr()
    );
    agent.expect_log_line(&["worker recycled", "exceeds max_rss"]);
    // Graceful: the old worker ran deinit; and no run ever held more than the limit
    // allows by much (the leak restarts from zero in the new worker).
    let first = pids(&agent)[0];
    assert!(
        home.read("journal.txt")
            .contains(&format!("deinit {first}\n")),
        "journal: {}",
        home.read("journal.txt")
    );
    let held: Vec<i64> = agent
        .points_of("leaky")
        .iter()
        .filter_map(|p| p["fields"]["held"].as_i64())
        .collect();
    assert!(held.iter().all(|n| *n <= 8), "{held:?}");
    assert!(
        agent.log_lines(&["input=leaky", "restarting"]).is_empty(),
        "recycling is not a failure restart:\n{}",
        agent.stderr()
    );
    assert!(agent.stop().success());
}

#[test]
fn a_worker_older_than_max_age_is_recycled() {
    let home = leaky_home("max_age = \"2s\"");
    let mut agent = home.start();
    assert!(
        wait_until(DEADLINE, || pids(&agent).len() >= 2),
        "log:\n{}",
        agent.stderr()
    );
    agent.expect_log_line(&["worker recycled", "max_age"]);
    assert!(agent.stop().success());
}

#[test]
fn start_delay_holds_an_input_back_while_others_start() {
    let home = leaky_home("");
    home.write(
        "python.d/late/late.py",
        &LEAKY.replace("\"leaky\"", "\"late\""),
    );
    home.input(
        "late",
        &["late"],
        "start_delay = \"1h\"\n[inputs.pythond.options]\njournal = \"/dev/null\"\n",
    );
    let mut agent = home.start();
    assert!(
        wait_until(DEADLINE, || agent.points_of("leaky").len() >= 3),
        "log:\n{}",
        agent.stderr()
    );
    agent.expect_log_line(&["input=late", "waiting start_delay"]);
    assert!(agent.points_of("late").is_empty());
    assert_eq!(
        agent.workers().len(),
        1,
        "only the undelayed input has a worker"
    );
    // The wait is cut short by shutdown.
    assert!(agent.stop().success());
}
