//! `isolation = "plugin"`: each plugin class runs in a worker of its own, so a plugin
//! that hangs (and gets its worker killed and restarted) leaves its siblings' worker
//! alone; status lists each plugin's worker as `<input>/<plugin id>`.

mod common;

use common::{wait_until, Home, DEADLINE};

const PLUGINS: &str = r#"
import os, time
from datakit_framework import DataKitFramework

class Steady(DataKitFramework):
    name = "steady"
    interval = 1

    def run(self):
        self.report({"M": [{"measurement": "steady", "fields": {"pid": os.getpid()}}]})

class Hangs(DataKitFramework):
    name = "hangs"
    interval = 1

    def run(self):
        time.sleep(3600)
"#;

#[test]
fn a_hanging_plugin_does_not_restart_its_siblings() {
    let home = Home::new();
    // The hanging run is still in flight at the end: do not wait 30 s for it.
    home.write(
        "pythond.toml",
        "[agent]\nshutdown_timeout = \"2s\"\n\n[http]\nlisten = \"127.0.0.1:0\"\n\n[[sinks]]\ntype = \"file\"\npath = \"points.ndjson\"\n",
    );
    home.write("python.d/iso/iso.py", PLUGINS);
    home.input(
        "iso",
        &["iso"],
        "isolation = \"plugin\"\n[inputs.pythond.plugins.hangs]\ntimeout = \"1s\"\n",
    );
    let mut agent = home.start();
    let pids = || -> Vec<i64> {
        agent
            .points_of("steady")
            .iter()
            .filter_map(|p| p["fields"]["pid"].as_i64())
            .collect()
    };
    assert!(
        wait_until(DEADLINE, || !pids().is_empty()),
        "log:\n{}",
        agent.stderr()
    );
    let steady_pid = pids()[0];

    // The hanging plugin's worker is killed and restarted, twice...
    assert!(
        wait_until(DEADLINE, || agent
            .log_lines(&["input=iso/iso.Hangs", "worker killed after a hang"])
            .len()
            >= 2),
        "log:\n{}",
        agent.stderr()
    );
    // ...while its sibling kept one worker, still reporting.
    let seen = pids().len();
    assert!(wait_until(DEADLINE, || pids().len() > seen + 1));
    assert!(
        pids().iter().all(|pid| *pid == steady_pid),
        "the sibling's worker was restarted: pids {:?}",
        pids()
    );
    assert!(
        agent
            .log_lines(&["input=iso/iso.Steady", "worker killed"])
            .is_empty(),
        "{}",
        agent.stderr()
    );
    assert!(agent.stop().success());
    assert!(
        wait_until(DEADLINE, || agent.workers().is_empty()),
        "workers left behind"
    );
}
