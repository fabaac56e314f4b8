//! `emit_events = true`: a plugin's exception, timeout and quarantine, and its
//! recovery, reach the sinks as keyevent points (`df_source = "system"`, a stable
//! `df_event_id` per plugin and kind), next to the data; without the key, nothing.

mod common;

use common::{wait_until, Agent, Home, DEADLINE};

/// Raises while the file named by option `fail` exists, else reports.
const FLAKY: &str = r#"
import os, time
from datakit_framework import DataKitFramework

class Flaky(DataKitFramework):
    name = "flaky"
    interval = 1

    def run(self):
        if os.path.exists(self.options["fail"]):
            raise RuntimeError("database refused the connection")
        if os.path.exists(self.options.get("hang", "/nonexistent")):
            time.sleep(3600)
        self.report({"M": [{"measurement": "flaky", "fields": {"ok": 1}}]})
"#;

/// The agent's events for `input`.
fn events(agent: &Agent, input: &str) -> Vec<serde_json::Value> {
    agent
        .points_of("measurement")
        .into_iter()
        .filter(|p| p["tags"]["pythond_input"] == input)
        .collect()
}

fn wait_event(agent: &Agent, input: &str, status: &str, event_id: &str) -> serde_json::Value {
    let mut found = None;
    let seen = wait_until(DEADLINE, || {
        found = events(agent, input)
            .into_iter()
            .find(|p| p["fields"]["df_status"] == status && p["fields"]["df_event_id"] == event_id);
        found.is_some()
    });
    assert!(
        seen,
        "no {status} event {event_id}; events: {:?}\nlog:\n{}",
        events(agent, input),
        agent.stderr()
    );
    found.unwrap_or_default()
}

#[test]
fn an_exception_and_its_recovery_become_events_only_where_enabled() {
    let home = Home::new();
    home.write("python.d/flaky/flaky.py", FLAKY);
    let fail = home.write("fail", "");
    let options = format!(
        "[inputs.pythond.options]\nfail = {:?}\n",
        fail.display().to_string()
    );
    home.input("ev", &["flaky"], &format!("emit_events = true\n{options}"));
    home.input("quiet", &["flaky"], &options);
    // Repeats of the same failure are logged at debug only: the test counts them.
    let mut command = common::pythond();
    command
        .args([
            "run",
            "--log-level",
            "info,pythond::supervisor=debug",
            "--config",
        ])
        .arg(home.path().join("pythond.toml"))
        .current_dir(home.path());
    let mut agent = Agent::spawn(command, home.path().join("points.ndjson"), &home.marker);

    let id = "pythond/ev/flaky.Flaky/exception";
    let failed = wait_event(&agent, "ev", "error", id);
    assert_eq!(failed["category"], "keyevent", "{failed}");
    assert_eq!(failed["fields"]["df_source"], "system");
    let message = failed["fields"]["df_message"].as_str().unwrap_or_default();
    assert!(
        message.contains("database refused the connection"),
        "{message}"
    );

    // Failing every second makes one event, not one per run.
    let ev_runs_failed = || agent.log_lines(&["input=ev", "run failed"]).len();
    assert!(wait_until(DEADLINE, || ev_runs_failed() >= 3));
    assert_eq!(events(&agent, "ev").len(), 1, "{:?}", events(&agent, "ev"));

    std::fs::remove_file(&fail).expect("remove the fail file");
    let recovered = wait_event(&agent, "ev", "ok", id);
    assert_eq!(recovered["fields"]["df_source"], "system");
    // The input without emit_events failed as often, and made no event.
    assert!(events(&agent, "quiet").is_empty());
    agent.stop();
}

#[test]
fn timeouts_and_quarantine_become_events_and_recover() {
    let home = Home::new();
    home.write("python.d/flaky/flaky.py", FLAKY);
    let hang = home.write("hang", "");
    home.input(
        "ev",
        &["flaky"],
        &format!(
            "emit_events = true\n[inputs.pythond.options]\nfail = {:?}\nhang = {:?}\n\
             [inputs.pythond.plugins.flaky]\ntimeout = \"1s\"\n",
            home.path().join("no-such-file").display().to_string(),
            hang.display().to_string()
        ),
    );
    let mut agent = home.start();
    let timeout = wait_event(&agent, "ev", "warning", "pythond/ev/flaky.Flaky/timeout");
    assert!(
        timeout["fields"]["df_message"]
            .as_str()
            .unwrap_or_default()
            .contains("did not finish within its timeout"),
        "{timeout}"
    );
    wait_event(&agent, "ev", "error", "pythond/ev/flaky.Flaky/quarantine");
    std::fs::remove_file(&hang).expect("remove the hang file");
    // After the cool-off the plugin runs again, and both open events recover.
    wait_event(&agent, "ev", "ok", "pythond/ev/flaky.Flaky/quarantine");
    wait_event(&agent, "ev", "ok", "pythond/ev/flaky.Flaky/timeout");
    agent.stop();
}
