//! `pythond run --once`: every input runs once through the configured sinks, the
//! points are delivered (a real VictoriaMetrics behind an influxdb sink), and the
//! exit code says whether a run failed or delivery did not complete.

mod common;

use common::backends::{free_port, VictoriaMetrics};
use common::{pythond, run_to_end, wait_until, Home, DEADLINE};

const GOOD: &str = r#"
from datakit_framework import DataKitFramework

class Good(DataKitFramework):
    name = "good"
    interval = 3600

    def run(self):
        self.report({"M": [{"measurement": "once_good", "tags": {"k": "v"}, "fields": {"value": 7}}]})
"#;

const BROKEN: &str = r#"
from datakit_framework import DataKitFramework

class Broken(DataKitFramework):
    name = "broken"
    interval = 3600

    def run(self):
        raise ValueError("broken on purpose")
"#;

fn run_once(home: &Home) -> (i32, String, String) {
    let mut command = pythond();
    command
        .args(["run", "--once", "--config"])
        .arg(home.path().join("pythond.toml"))
        .current_dir(home.path());
    run_to_end(command)
}

#[test]
fn run_once_delivers_to_a_real_backend_and_exits_zero() {
    let home = Home::new();
    let vm = VictoriaMetrics::start(home.path());
    home.write("python.d/good/good.py", GOOD);
    home.input("good", &["good"], "");
    home.write(
        "pythond.toml",
        &format!(
            "[agent]\nshutdown_timeout = \"30s\"\n\n[[sinks]]\ntype = \"file\"\npath = \"points.ndjson\"\n\n\
             [[sinks]]\ntype = \"influxdb\"\nurl = \"{}\"\ndb = \"pythond\"\nflush_interval = \"100ms\"\n",
            vm.url()
        ),
    );
    let (code, stdout, stderr) = run_once(&home);
    assert_eq!(code, 0, "stdout:\n{stdout}\nstderr:\n{stderr}");
    // Delivered before the exit, not merely buffered: the agent is gone, and the
    // backend has the point (once its index shows it).
    let mut samples = Vec::new();
    wait_until(DEADLINE, || {
        samples = vm.export("{__name__=~\"once_good.*\"}");
        !samples.is_empty()
    });
    assert_eq!(samples.len(), 1, "{samples:?}\n{stderr}");
    assert_eq!(samples[0].value, 7.0);
    assert!(home.read("points.ndjson").contains("once_good"));
}

#[test]
fn run_once_fails_when_a_run_fails_and_still_delivers_the_others() {
    let home = Home::new();
    home.write("python.d/good/good.py", GOOD);
    home.write("python.d/broken/broken.py", BROKEN);
    home.input("good", &["good"], "");
    home.input("broken", &["broken"], "");
    let (code, _, stderr) = run_once(&home);
    assert_ne!(code, 0, "a failed run exited 0:\n{stderr}");
    assert!(stderr.contains("broken on purpose"), "{stderr}");
    assert!(home.read("points.ndjson").contains("once_good"), "{stderr}");
}

#[test]
fn run_once_fails_when_a_sink_cannot_deliver() {
    let home = Home::new();
    home.write("python.d/good/good.py", GOOD);
    home.input("good", &["good"], "");
    // Nothing listens there: the points stay in the disk buffer.
    home.write(
        "pythond.toml",
        &format!(
            "[agent]\nshutdown_timeout = \"2s\"\n\n[[sinks]]\ntype = \"influxdb\"\nurl = \"http://127.0.0.1:{}\"\n\
             db = \"pythond\"\nflush_interval = \"100ms\"\nretry_max_interval = \"1s\"\n",
            free_port()
        ),
    );
    let (code, _, stderr) = run_once(&home);
    assert_ne!(code, 0, "undelivered points exited 0:\n{stderr}");
    assert!(stderr.contains("did not deliver every point"), "{stderr}");
}

const PER_INSTANCE: &str = r#"
from datakit_framework import DataKitFramework

class Probe(DataKitFramework):
    name = "probe"
    interval = 3600

    def run(self):
        self.report({"M": [{"measurement": "once_probed",
                            "tags": {"seen_instance": self.instance},
                            "fields": {"port": self.options["port"]}}]})
"#;

#[test]
fn run_once_runs_every_instance_once_with_its_options_and_tags() {
    let home = Home::new();
    home.write("python.d/probe/probe.py", PER_INSTANCE);
    home.input(
        "probes",
        &["probe"],
        "[[inputs.pythond.instances]]\nname = \"east\"\noptions = { port = 9101 }\n\
         tags = { site = \"east\" }\n\
         [[inputs.pythond.instances]]\nname = \"west\"\noptions = { port = 9102 }\n\
         tags = { site = \"west\" }\n",
    );
    let (code, stdout, stderr) = run_once(&home);
    assert_eq!(code, 0, "stdout:\n{stdout}\nstderr:\n{stderr}");
    let written = home.read("points.ndjson");
    let mut seen: Vec<(String, String, i64)> = written
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|p| p["measurement"] == "once_probed")
        .map(|p| {
            (
                p["tags"]["site"].as_str().unwrap_or("?").to_string(),
                p["tags"]["seen_instance"]
                    .as_str()
                    .unwrap_or("?")
                    .to_string(),
                p["fields"]["port"].as_i64().unwrap_or(-1),
            )
        })
        .collect();
    seen.sort();
    let expected = |site: &str, port: i64| (site.to_string(), site.to_string(), port);
    assert_eq!(
        seen,
        [expected("east", 9101), expected("west", 9102)],
        "one point per instance, with its tags and merged options:\n{written}\n{stderr}"
    );
}
