//! Collector parameters and lifecycle hooks, observed through `pythond run` with real
//! workers: `[inputs.pythond.options]` and `[inputs.pythond.plugins.<name>]` reach the
//! plugins as `self.options`; `init`/`deinit` run in order on start, reload and stop;
//! `request_exit` lets a blocked `long_running` `run()` end cleanly; `on_error` sees
//! the exception of a failed run and may report points of its own.

mod common;

use common::{wait_until, Home, DEADLINE};

/// Reports its `self.options` (as JSON text) every second as measurement `opts`.
const OPTIONS_PLUGINS: &str = r#"
import json
from datakit_framework import DataKitFramework

class First(DataKitFramework):
    name = "first"
    interval = 1

    def run(self):
        self.report({"L": [{"measurement": "opts", "tags": {"plugin": "first"},
                            "fields": {"options": json.dumps(self.options, sort_keys=True)}}]})

class Second(First):
    name = "second"

    def run(self):
        self.report({"L": [{"measurement": "opts", "tags": {"plugin": "second"},
                            "fields": {"options": json.dumps(self.options, sort_keys=True)}}]})

class Third(First):
    name = "third"

    def run(self):
        self.report({"L": [{"measurement": "opts", "tags": {"plugin": "third"},
                            "fields": {"options": json.dumps(self.options, sort_keys=True)}}]})
"#;

fn options_of(points: &[serde_json::Value], plugin: &str) -> Option<serde_json::Value> {
    points
        .iter()
        .rev()
        .find(|p| p["tags"]["plugin"] == plugin)
        .and_then(|p| p["fields"]["options"].as_str())
        .and_then(|text| serde_json::from_str(text).ok())
}

#[test]
fn options_and_per_plugin_overrides_reach_the_plugins() {
    let home = Home::new();
    home.write("python.d/opts/opts.py", OPTIONS_PLUGINS);
    home.input(
        "opts",
        &["opts"],
        "[inputs.pythond.options]\ntarget = \"db-1\"\nport = 5432\nweights = [1.5, 2]\nnested = { deep = true }\n\n\
         [inputs.pythond.plugins.second.options]\ntarget = \"db-2\"\n\n\
         [inputs.pythond.plugins.third]\nenabled = false\n",
    );
    let mut agent = home.start();
    let seen = wait_until(DEADLINE, || {
        let points = agent.points_of("opts");
        options_of(&points, "first").is_some() && options_of(&points, "second").is_some()
    });
    assert!(seen, "no options reported; log:\n{}", agent.stderr());
    let points = agent.points_of("opts");
    assert_eq!(
        options_of(&points, "first"),
        Some(
            serde_json::json!({"target": "db-1", "port": 5432, "weights": [1.5, 2], "nested": {"deep": true}})
        )
    );
    assert_eq!(
        options_of(&points, "second"),
        Some(
            serde_json::json!({"target": "db-2", "port": 5432, "weights": [1.5, 2], "nested": {"deep": true}})
        ),
        "the plugin's own options are merged over the input's"
    );
    agent.expect_log_line(&["opts.Third", "disabled by configuration"]);
    // Several runs of the others later, the disabled plugin has still not run.
    let before = points.len();
    assert!(wait_until(DEADLINE, || agent.points_of("opts").len() >= before + 4));
    assert!(
        options_of(&agent.points_of("opts"), "third").is_none(),
        "a disabled plugin ran"
    );
    agent.stop();
}

/// Appends each hook call to the file named by the `journal` option.
const HOOKS_PLUGIN: &str = r#"
from datakit_framework import DataKitFramework

class Hooks(DataKitFramework):
    name = "hooks"
    interval = 1

    def _log(self, line):
        with open(self.options["journal"], "a") as f:
            f.write(line + "\n")

    def init(self, options):
        self._log("init " + options["version"])

    def run(self):
        self._log("run")

    def deinit(self):
        self._log("deinit")

class Refuses(DataKitFramework):
    name = "refuses"
    interval = 1

    def init(self, options):
        return False

    def run(self):
        with open(self.options["journal"], "a") as f:
            f.write("refused plugin ran\n")
"#;

/// The journal without repeated `run` lines, so the test does not depend on how many
/// runs happened between two hooks.
fn journal(home: &Home) -> Vec<String> {
    let mut lines: Vec<String> = Vec::new();
    for line in home.read("journal.txt").lines() {
        if lines.last().map(String::as_str) != Some(line) {
            lines.push(line.to_string());
        }
    }
    lines
}

#[test]
fn init_and_deinit_run_in_order_on_start_reload_and_stop() {
    let home = Home::new();
    home.write("python.d/hooks/hooks.py", HOOKS_PLUGIN);
    let journal_path = home.path().join("journal.txt");
    let conf = |version: &str| {
        format!(
            "[inputs.pythond.options]\njournal = {:?}\nversion = {version:?}\n",
            journal_path.display().to_string()
        )
    };
    home.input("hooks", &["hooks"], &conf("v1"));
    let mut agent = home.start();
    assert!(
        wait_until(DEADLINE, || journal(&home) == ["init v1", "run"]),
        "journal: {:?}; log:\n{}",
        journal(&home),
        agent.stderr()
    );
    agent.expect_log_line(&["Refuses.init() returned False"]);

    home.input("hooks", &["hooks"], &conf("v2"));
    agent.signal(libc::SIGHUP);
    assert!(
        wait_until(DEADLINE, || journal(&home)
            == ["init v1", "run", "deinit", "init v2", "run"]),
        "journal after reload: {:?}; log:\n{}",
        journal(&home),
        agent.stderr()
    );

    let status = agent.stop();
    assert!(status.success(), "{status:?}");
    assert_eq!(
        journal(&home),
        ["init v1", "run", "deinit", "init v2", "run", "deinit"]
    );
}

const BLOCKING_PLUGIN: &str = r#"
import threading
from datakit_framework import DataKitFramework

class Blocking(DataKitFramework):
    name = "blocking"
    long_running = True

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.stop = threading.Event()

    def run(self):
        with open(self.options["journal"], "a") as f:
            f.write("started\n")
        self.stop.wait()  # blocks until request_exit, like a socket loop would
        with open(self.options["journal"], "a") as f:
            f.write("exited cleanly\n")

    def request_exit(self):
        self.stop.set()
"#;

#[test]
fn request_exit_stops_a_blocked_long_running_run() {
    let home = Home::new();
    home.write("python.d/blocking/blocking.py", BLOCKING_PLUGIN);
    let journal_path = home.path().join("journal.txt");
    home.input(
        "blocking",
        &["blocking"],
        &format!(
            "[inputs.pythond.options]\njournal = {:?}\n",
            journal_path.display().to_string()
        ),
    );
    let mut agent = home.start();
    assert!(
        wait_until(DEADLINE, || home.read("journal.txt") == "started\n"),
        "log:\n{}",
        agent.stderr()
    );
    let status = agent.stop();
    assert!(status.success(), "{status:?}");
    assert_eq!(home.read("journal.txt"), "started\nexited cleanly\n");
}

const FAILING_PLUGIN: &str = r#"
from datakit_framework import DataKitFramework

class Failing(DataKitFramework):
    name = "failing"
    interval = 1

    def run(self):
        raise ValueError("backend unreachable")

    def on_error(self, exc):
        self.report({"L": [{"measurement": "collector_errors", "tags": {"type": type(exc).__name__},
                            "fields": {"message": str(exc)}}]})
"#;

#[test]
fn on_error_sees_the_exception_and_may_report() {
    let home = Home::new();
    home.write("python.d/failing/failing.py", FAILING_PLUGIN);
    home.input("failing", &["failing"], "");
    let mut agent = home.start();
    assert!(
        wait_until(DEADLINE, || !agent.points_of("collector_errors").is_empty()),
        "log:\n{}",
        agent.stderr()
    );
    let point = &agent.points_of("collector_errors")[0];
    assert_eq!(point["tags"]["type"], "ValueError");
    assert_eq!(point["fields"]["message"], "backend unreachable");
    // The run still counts as failed, as without the hook.
    agent.expect_log_line(&["failing.Failing", "backend unreachable"]);
    agent.stop();
}

/// A DataKit script with methods that happen to share the hooks' names but not their
/// shape, and a class attribute `options` of its own.
const DATAKIT_STYLE: &str = r#"
from datakit_framework import DataKitFramework

class Legacy(DataKitFramework):
    name = "legacy"
    interval = 1
    options = "mine"

    def init(self):
        self.called_init = True

    def run(self):
        self.report({"L": [{"measurement": "legacy", "fields": {
            "message": "init called: %s, options: %s" % (getattr(self, "called_init", False), self.options)}}]})
"#;

#[test]
fn datakit_scripts_with_look_alike_methods_behave_as_before() {
    let home = Home::new();
    home.write("python.d/legacy/legacy.py", DATAKIT_STYLE);
    home.input("legacy", &["legacy"], "");
    let mut agent = home.start();
    assert!(
        wait_until(DEADLINE, || !agent.points_of("legacy").is_empty()),
        "log:\n{}",
        agent.stderr()
    );
    assert_eq!(
        agent.points_of("legacy")[0]["fields"]["message"],
        "init called: False, options: mine"
    );
    agent.stop();
}
