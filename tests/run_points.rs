//! The points `pythond run` writes: `host`, `[global_tags]` and input `tags` added,
//! `ignore_global_tags` honoured, the same points `check` prints, the schedule taken
//! from the config, and `envs` added to (not replacing) the inherited environment.

mod common;

use common::{hostname, parse_points, the_point, Home};
use serde_json::json;

const TAGGED: &str = r#"
from datakit_framework import DataKitFramework

class Tagged(DataKitFramework):
    name = "tagged"
    interval = 3600

    def run(self):
        self.report({"M": [{"measurement": "plain", "tags": {"k": "v"}, "fields": {"v": 1}}]})
        self.report({"M": [{"measurement": "no_globals", "tags": {"k": "v"}, "fields": {"v": 1}}],
                     "ignore_global_tags": True})
        self.feed_logging(source="log_line", tags={"k": "v"}, message="hello")
"#;

#[test]
fn run_adds_host_global_and_input_tags() {
    let home = Home::new();
    home.write(
        "pythond.toml",
        "[global_tags]\nregion = \"eu\"\n\n[[sinks]]\ntype = \"file\"\npath = \"points.ndjson\"\n",
    );
    home.write("python.d/tagged/tagged.py", TAGGED);
    home.input("tagging", &["tagged"], "tags = { team = \"shop\" }");
    let agent = home.start();

    agent.expect_points("three points", |points| points.len() >= 3);
    let points = agent.points();
    let host = hostname();
    let plain = the_point(&points, "metric", "plain");
    assert_eq!(
        plain["tags"],
        json!({"k": "v", "host": host, "region": "eu", "team": "shop"}),
        "{plain}"
    );
    assert_eq!(plain["fields"], json!({"v": 1}));
    let log = the_point(&points, "logging", "log_line");
    assert_eq!(
        log["tags"],
        json!({"k": "v", "host": host, "region": "eu", "team": "shop"}),
        "{log}"
    );
    assert_eq!(log["fields"], json!({"message": "hello", "status": "info"}));

    let no_globals = the_point(&points, "metric", "no_globals");
    assert_eq!(no_globals["tags"]["k"], "v");
    assert!(
        no_globals["tags"].get("region").is_none(),
        "ignore_global_tags ignored: {no_globals}"
    );
    assert_eq!(
        no_globals["tags"]["team"], "shop",
        "the input's own tags are not global: {no_globals}"
    );
}

#[test]
fn the_agent_hostname_setting_names_the_host() {
    let home = Home::new();
    home.write(
        "pythond.toml",
        "[agent]\nhostname = \"web-1\"\n\n[[sinks]]\ntype = \"file\"\npath = \"points.ndjson\"\n",
    );
    home.write("python.d/tagged/tagged.py", TAGGED);
    home.input("tagging", &["tagged"], "");
    let agent = home.start();
    agent.expect_points("a point", |points| {
        points.iter().any(|p| p["measurement"] == "plain")
    });
    assert_eq!(agent.points_of("plain")[0]["tags"]["host"], "web-1");
}

#[test]
fn check_prints_the_points_run_writes_minus_the_agent_tags() {
    let home = Home::new();
    home.write(
        "python.d/same/same.py",
        r#"
from datakit_framework import DataKitFramework

class Same(DataKitFramework):
    name = "same"
    interval = 3600

    def run(self):
        self.report({"M": [{"measurement": "cpu", "tags": {"core": "0"}, "fields": {"idle": 97.5, "s": "dropped"}, "time": 1700000000}],
                     "L": [{"measurement": "syslog", "tags": {}, "fields": {"message": "hi"}, "time": 1700000000123}]})
        self.feed_object(cls="proc", name="nginx", tags={}, fields={"threads": 4}, time=1700000000123456789)
        self.feed_system_event(tags={}, df_status="warning", df_event_id="e1", df_title="disk")
"#,
    );
    home.input("same", &["same"], "");
    let (code, stdout, stderr) = home.check(&["python.d/same"]);
    assert_eq!(code, 0, "stderr:\n{stderr}");
    let mut checked = parse_points(&stdout);

    let agent = home.start();
    agent.expect_points("four points", |points| points.len() >= 4);
    let mut written = agent.points();
    for point in &mut written {
        let tags = point["tags"].as_object_mut().expect("tags object");
        assert_eq!(
            tags.remove("host"),
            Some(json!(hostname())),
            "run adds host"
        );
    }
    // The event has no time of its own: it is "now", which differs between the two.
    for point in checked.iter_mut().chain(written.iter_mut()) {
        if point["category"] == "keyevent" {
            point.as_object_mut().expect("point object").remove("time");
        }
    }
    let key = |p: &serde_json::Value| format!("{}/{}", p["category"], p["measurement"]);
    checked.sort_by_key(key);
    written.sort_by_key(key);
    assert_eq!(checked, written, "check and run disagree");
}

#[test]
fn the_config_interval_overrides_the_class_and_the_first_run_comes_soon() {
    let home = Home::new();
    home.write(
        "python.d/hourly/hourly.py",
        r#"
from datakit_framework import DataKitFramework

class Hourly(DataKitFramework):
    name = "hourly"
    interval = 3600

    def run(self):
        self.report({"M": [{"measurement": "hourly", "tags": {}, "fields": {"v": 1}}]})
"#,
    );
    home.write(
        "python.d/slow_class/slow_class.py",
        r#"
from datakit_framework import DataKitFramework

class SlowClass(DataKitFramework):
    name = "slow_class"
    interval = 3600

    def run(self):
        self.report({"M": [{"measurement": "slow_class", "tags": {}, "fields": {"v": 1}}]})
"#,
    );
    home.input("overridden", &["hourly"], "interval = \"1s\"");
    home.input("class_interval", &["slow_class"], "");
    let agent = home.start();
    // The class says an hour; the first run still comes right after start.
    agent.expect_points("the first run of an hourly plugin", |points| {
        points.iter().any(|p| p["measurement"] == "slow_class")
    });
    // The config says 1 s.
    agent.expect_points("three runs at the configured interval", |points| {
        points
            .iter()
            .filter(|p| p["measurement"] == "hourly")
            .count()
            >= 3
    });
    assert_eq!(agent.points_of("slow_class").len(), 1);
}

#[test]
fn envs_add_to_the_inherited_environment() {
    let home = Home::new();
    home.write(
        "python.d/env/env.py",
        r#"
import os
from datakit_framework import DataKitFramework

class Env(DataKitFramework):
    name = "env"
    interval = 3600

    def run(self):
        self.report({"L": [{"measurement": "env", "tags": {}, "fields": {
            "marker": os.environ.get("PYTHOND_TEST_MARKER", ""),
            "path": os.environ.get("PATH", ""),
            "home": os.environ.get("HOME", ""),
        }}]})
"#,
    );
    home.input("env", &["env"], "");
    let agent = home.start();
    agent.expect_points("the env point", |points| {
        points.iter().any(|p| p["category"] == "logging")
    });
    let points = agent.points();
    let env = the_point(&points, "logging", "env");
    assert_eq!(
        env["fields"]["marker"],
        home.marker.as_str(),
        "the input's envs are missing"
    );
    // Interpreter shims (pyenv) may prepend to PATH; the inherited one must remain.
    let path = std::env::var("PATH").unwrap_or_default();
    let worker_path = env["fields"]["path"].as_str().unwrap_or_default();
    assert!(
        worker_path.ends_with(&path),
        "PATH was not inherited: {worker_path:?}"
    );
    if let Ok(user_home) = std::env::var("HOME") {
        assert_eq!(
            env["fields"]["home"],
            user_home.as_str(),
            "HOME was not inherited"
        );
    }
}
