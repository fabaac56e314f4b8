//! Daemon control by signals, as pyzenkit's daemon does it: SIGUSR1 writes the run
//! log and SIGUSR2 a full state dump (JSON under `data_dir/state/`, path logged);
//! SIGTERM gives runs in flight `[agent] shutdown_timeout`; a third SIGINT exits at
//! once even while the agent is still stopping.

mod common;

use std::io::Write;
use std::path::PathBuf;

use common::{wait_until, Home, DEADLINE};

const TICKER: &str = r#"
from datakit_framework import DataKitFramework

class Ticker(DataKitFramework):
    name = "ticker"
    interval = 1

    def run(self):
        self.report({"M": [{"measurement": "ticks", "fields": {"n": 1}}]})
"#;

/// The files in `data/state/` whose name starts with `prefix`.
fn state_files(home: &Home, prefix: &str) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(home.path().join("data/state")) else {
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(prefix) && n.ends_with(".json"))
        })
        .collect()
}

fn wait_ticks(agent: &common::Agent, at_least: usize) {
    assert!(
        wait_until(DEADLINE, || agent.points_of("ticks").len() >= at_least),
        "fewer than {at_least} ticks; log:\n{}",
        agent.stderr()
    );
}

fn read_json(path: &PathBuf) -> serde_json::Value {
    let text = std::fs::read_to_string(path).expect("read dump");
    serde_json::from_str(&text).expect("dump is JSON")
}

#[test]
fn sigusr1_writes_the_run_log_and_sigusr2_a_state_dump() {
    let home = Home::new();
    home.write("python.d/ticker/ticker.py", TICKER);
    home.input("ticks", &["ticker"], "");
    let mut agent = home.start();
    wait_ticks(&agent, 1);

    agent.signal(libc::SIGUSR1);
    assert!(
        wait_until(DEADLINE, || state_files(&home, "runlog-").len() == 1),
        "no run log; log:\n{}",
        agent.stderr()
    );
    let path = &state_files(&home, "runlog-")[0];
    agent.expect_log_line(&["RunLog written", &path.display().to_string()]);
    let runlog = read_json(path);
    assert_eq!(runlog["kind"], "runlog");
    let input = &runlog["inputs"][0];
    assert_eq!(input["name"], "ticks");
    assert_eq!(input["plugins"][0]["id"], "ticker.Ticker");
    assert!(
        input["plugins"][0]["runs"].as_u64().unwrap_or(0) >= 1,
        "{runlog}"
    );

    agent.signal(libc::SIGUSR2);
    assert!(
        wait_until(DEADLINE, || state_files(&home, "state-").len() == 1),
        "no state dump; log:\n{}",
        agent.stderr()
    );
    let path = &state_files(&home, "state-")[0];
    agent.expect_log_line(&["State written", &path.display().to_string()]);
    let state = read_json(path);
    assert_eq!(state["kind"], "state");
    assert_eq!(state["config"]["shutdown_timeout_seconds"], 30.0);
    assert_eq!(state["status"]["inputs"][0]["name"], "ticks");
    assert!(state["status"]["points"].is_object(), "{state}");

    // The agent keeps running after a dump.
    let before = agent.points_of("ticks").len();
    wait_ticks(&agent, before + 1);
    assert!(agent.stop().success());
}

/// A run that outlasts the old fixed 10 s grace finishes within the configured one.
const SLOW: &str = r#"
import time
from datakit_framework import DataKitFramework

class Slow(DataKitFramework):
    name = "slow"
    interval = 60

    def run(self):
        with open(self.options["journal"], "a") as f:
            f.write("started\n")
        time.sleep(12)
        with open(self.options["journal"], "a") as f:
            f.write("finished\n")
"#;

#[test]
fn sigterm_gives_runs_in_flight_the_configured_shutdown_timeout() {
    let home = Home::new();
    home.write(
        "pythond.toml",
        "[agent]\nshutdown_timeout = \"50s\"\n\n[http]\nlisten = \"127.0.0.1:0\"\n\n[[sinks]]\ntype = \"file\"\npath = \"points.ndjson\"\n",
    );
    home.write("python.d/slow/slow.py", SLOW);
    let journal = home.path().join("journal.txt");
    home.input(
        "slow",
        &["slow"],
        &format!(
            "timeout = \"2m\"\n[inputs.pythond.options]\njournal = {:?}\n",
            journal.display().to_string()
        ),
    );
    let mut agent = home.start();
    assert!(
        wait_until(DEADLINE, || home.read("journal.txt") == "started\n"),
        "log:\n{}",
        agent.stderr()
    );
    agent.signal(libc::SIGTERM);
    let status = agent.wait_exit(DEADLINE).expect("agent exits");
    assert!(status.success(), "{status:?}; log:\n{}", agent.stderr());
    assert_eq!(home.read("journal.txt"), "started\nfinished\n");
}

#[test]
fn a_third_sigint_exits_at_once_while_the_agent_is_stopping() {
    let home = Home::new();
    home.write(
        "pythond.toml",
        "[http]\nlisten = \"127.0.0.1:0\"\nrequest_timeout = \"5m\"\n\n[[sinks]]\ntype = \"file\"\npath = \"points.ndjson\"\n",
    );
    home.write("python.d/ticker/ticker.py", TICKER);
    home.input("ticks", &["ticker"], "");
    let mut agent = home.start();
    wait_ticks(&agent, 1);

    // A request whose body never completes keeps the HTTP API busy, so the agent is
    // still stopping when the later signals arrive.
    let addr = common::http::api_addr(&agent);
    let mut stuck = std::net::TcpStream::connect(&addr).expect("connect");
    write!(
        stuck,
        "POST /v1/write/metric HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 1000\r\n\r\nm,a=b"
    )
    .expect("send a partial request");
    stuck.flush().expect("flush");

    agent.signal(libc::SIGINT);
    agent.expect_log_line(&["shutting down"]);
    // Closer signals count as one (GNU `timeout` sends two at once).
    std::thread::sleep(common::DISTINCT_SIGNAL_GAP);
    agent.signal(libc::SIGINT);
    agent.expect_log_line(&["second signal"]);
    std::thread::sleep(common::DISTINCT_SIGNAL_GAP);
    agent.signal(libc::SIGINT);
    let status = agent.wait_exit(DEADLINE).expect("agent exits");
    assert_eq!(status.code(), Some(130), "log:\n{}", agent.stderr());
    agent.expect_log_line(&["third signal"]);
    assert!(
        wait_until(DEADLINE, || agent.workers().is_empty()),
        "workers left behind"
    );
    drop(stuck);
}

#[test]
fn a_sighup_while_the_agent_is_still_starting_does_not_kill_it() {
    let home = Home::new();
    home.write("python.d/ticker/ticker.py", TICKER);
    home.input("ticks", &["ticker"], "");
    let mut agent = home.start();
    // The runtime directory is written early in start-up, before the HTTP API and the
    // inputs: a SIGHUP now must wait for start-up, not end the process.
    let runtime = home.path().join("data/runtime");
    let mut spins = 0u64;
    while !runtime.is_dir() {
        spins += 1;
        assert!(
            spins < 20_000_000,
            "no runtime dir; log:\n{}",
            agent.stderr()
        );
        std::hint::spin_loop();
    }
    agent.signal(libc::SIGHUP);
    wait_ticks(&agent, 2);
    assert!(agent.stop().success(), "log:\n{}", agent.stderr());
}
