//! Collector instances, observed through `pythond run`: every (plugin, instance) is
//! its own object with its own options, tags and schedule, runs on the worker's pool,
//! and a hung instance is timed out and quarantined on its own without the worker
//! being restarted (docs/CONFIG.md, "Instances"; docs/PROTOCOL.md, "Pooled inputs").

mod common;

use std::collections::{BTreeMap, BTreeSet};

use common::http::{api_base, get};
use common::{wait_until, Agent, Home, DEADLINE};

/// Reports one point per run naming its instance (as a tag: metric fields must be
/// numeric), the option `host` its `init` saw, a per-object run counter and the pid.
const PROBE: &str = r#"
import os, time
from datakit_framework import DataKitFramework

class Probe(DataKitFramework):
    name = "probe"
    interval = 3600

    def init(self, options):
        self.seen_host = options.get("host", "-")
        self.runs = 0

    def run(self):
        self.runs += 1
        if self.instance == "stuck":
            while True:
                time.sleep(1)
        self.report({"M": [{"measurement": "probe",
                            "tags": {"instance": self.instance, "seen_host": self.seen_host,
                                     "options_host": str(self.options.get("host", "-")),
                                     "own": "point"},
                            "fields": {"object_runs": self.runs, "pid": os.getpid()}}]})
"#;

/// `/v1/status?all=true`: every instance listed.
fn status(agent: &Agent) -> serde_json::Value {
    status_with(agent, "?all=true")
}

fn status_with(agent: &Agent, query: &str) -> serde_json::Value {
    get(&format!("{}/v1/status{query}", api_base(agent)), &[]).json()
}

/// The status entry of `key` in the first input.
fn entry(status: &serde_json::Value, key: &str) -> serde_json::Value {
    status["inputs"][0]["plugins"]
        .as_array()
        .and_then(|plugins| plugins.iter().find(|p| p["id"] == key).cloned())
        .unwrap_or(serde_json::Value::Null)
}

/// What `pythond status --input <input>` prints (it must succeed).
fn status_table(agent: &Agent, input: &str) -> String {
    let mut command = common::pythond();
    command.args([
        "status",
        "--addr",
        &common::http::api_addr(agent),
        "--input",
        input,
    ]);
    let (code, table, _) = common::run_to_end(command);
    assert_eq!(code, 0, "{table}");
    table
}

fn by_instance(points: &[serde_json::Value]) -> BTreeMap<String, Vec<serde_json::Value>> {
    let mut map: BTreeMap<String, Vec<serde_json::Value>> = BTreeMap::new();
    for point in points {
        if let Some(name) = point["tags"]["instance"].as_str() {
            map.entry(name.to_string()).or_default().push(point.clone());
        }
    }
    map
}

#[test]
fn each_instance_is_its_own_object_with_its_options_tags_and_interval() {
    let home = Home::new();
    home.write("python.d/probe/probe.py", PROBE);
    home.input(
        "probes",
        &["probe"],
        "options = { host = \"default\" }\ntags = { team = \"db\" }\n\
         [[inputs.pythond.instances]]\nname = \"slow\"\n\
         [[inputs.pythond.instances]]\nname = \"fast\"\ninterval = \"1s\"\n\
         options = { host = \"db-1\" }\ntags = { site = \"eu\", own = \"instance\" }\n\
         [[inputs.pythond.instances]]\nname = \"off\"\nenabled = false\n",
    );
    let agent = home.start();
    agent.expect_points("three runs of the fast instance", |points| {
        by_instance(points).get("fast").map_or(0, Vec::len) >= 3
    });
    let points = agent.points_of("probe");
    let instances = by_instance(&points);
    let fast = &instances["fast"];
    // One object per instance: its own counter keeps counting across runs.
    let counts: Vec<i64> = fast
        .iter()
        .map(|p| p["fields"]["object_runs"].as_i64().unwrap_or(-1))
        .collect();
    assert_eq!(counts[..3], [1, 2, 3], "{fast:?}");
    for point in fast {
        assert_eq!(
            point["tags"]["seen_host"], "db-1",
            "init got the merged options"
        );
        assert_eq!(
            point["tags"]["options_host"], "db-1",
            "self.options is merged"
        );
        assert_eq!(point["tags"]["site"], "eu", "instance tags are added");
        assert_eq!(point["tags"]["team"], "db", "input tags are added too");
        assert_eq!(point["tags"]["own"], "point", "the point's own tag wins");
    }
    // The slow instance (interval from the class: an hour) ran once, first; the
    // disabled one never did.
    let slow = &instances["slow"];
    assert_eq!(slow.len(), 1, "{slow:?}");
    assert_eq!(slow[0]["tags"]["seen_host"], "default");
    assert!(slow[0]["tags"].get("site").is_none(), "{slow:?}");
    assert!(!instances.contains_key("off"));

    // Run records follow the points (batched every 100 ms).
    let mut status = serde_json::Value::Null;
    assert!(
        wait_until(DEADLINE, || {
            status = self::status(&agent);
            entry(&status, "probe.Probe@fast")["runs"].as_u64() >= Some(3)
        }),
        "{status:#}"
    );
    assert_eq!(entry(&status, "probe.Probe@off")["state"], "disabled");
    assert_eq!(entry(&status, "probe.Probe@slow")["runs"], 1);
    let lateness = &status["inputs"][0]["lateness_seconds"];
    assert!(lateness["count"].as_u64() >= Some(4), "{lateness}");

    // /metrics: one series per plugin, not per instance, and the lateness histogram.
    let metrics = get(&format!("{}/metrics", api_base(&agent)), &[]).body;
    assert!(
        metrics.contains(r#"pythond_plugin_runs_total{input="probes",plugin="probe.Probe"}"#),
        "{metrics}"
    );
    assert!(!metrics.contains("probe.Probe@"), "{metrics}");
    assert!(
        metrics.contains(r#"pythond_input_run_lateness_seconds_count{input="probes"}"#),
        "{metrics}"
    );
}

#[test]
fn a_hung_instance_among_many_is_quarantined_alone_and_the_worker_keeps_running() {
    let home = Home::new();
    home.write("python.d/probe/probe.py", PROBE);
    let mut conf = String::from("interval = \"1s\"\ntimeout = \"1s\"\nconcurrency = 8\n");
    conf.push_str("[[inputs.pythond.instances]]\nname = \"stuck\"\n");
    for i in 0..20 {
        conf.push_str(&format!("[[inputs.pythond.instances]]\nname = \"ok{i}\"\n"));
    }
    home.input("many", &["probe"], &conf);
    let agent = home.start();

    let mut last = serde_json::Value::Null;
    let quarantined = wait_until(DEADLINE, || {
        last = status(&agent);
        entry(&last, "probe.Probe@stuck")["state"] == "quarantined"
    });
    assert!(
        quarantined,
        "the stuck instance is not quarantined: {last:#}"
    );
    let stuck = entry(&last, "probe.Probe@stuck");
    assert_eq!(stuck["timeouts"], 3, "{stuck}");
    assert_eq!(stuck["quarantines"], 1, "{stuck}");
    let input = &last["inputs"][0];
    assert_eq!(
        input["restarts"], 0,
        "no restart for a pooled hang: {input}"
    );
    assert_eq!(input["recycles"], 0, "{input}");
    let pid = input["worker_pid"].as_u64().expect("worker pid");

    // Every other instance kept its schedule meanwhile, in the same worker.
    let before: BTreeMap<String, u64> = (0..20)
        .map(|i| {
            let key = format!("probe.Probe@ok{i}");
            let runs = entry(&last, &key)["runs"].as_u64().unwrap_or(0);
            (key, runs)
        })
        .collect();
    for (key, runs) in &before {
        assert!(
            *runs >= 3,
            "{key} ran {runs} times while the stuck one hung"
        );
        assert_eq!(entry(&last, key)["timeouts"], 0, "{key}");
    }
    assert!(
        wait_until(DEADLINE, || {
            let now = status(&agent);
            before
                .iter()
                .all(|(key, runs)| entry(&now, key)["runs"].as_u64() > Some(runs + 1))
        }),
        "the others stopped running after the quarantine"
    );
    // Without `all`, only the instance with a problem is listed, under a summary; the
    // CLI shows the same.
    let default = status_with(&agent, "");
    let listed: Vec<&str> = default["inputs"][0]["plugins"]
        .as_array()
        .map(|ps| ps.iter().filter_map(|p| p["id"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(listed, ["probe.Probe@stuck"], "{default:#}");
    let summary = &default["inputs"][0]["instances_summary"];
    assert_eq!(summary["instances"], 21, "{summary}");
    assert_eq!(summary["quarantined"], 1, "{summary}");
    assert!(summary["lateness_p99_seconds"].is_number(), "{summary}");
    let filtered = status_with(&agent, "?plugin=probe.Probe%40ok3");
    assert_eq!(
        entry(&filtered, "probe.Probe@ok3")["timeouts"],
        0,
        "{filtered:#}"
    );
    let table = status_table(&agent, "many");
    assert!(
        table.contains("probe.Probe@stuck") && !table.contains("probe.Probe@ok3"),
        "{table}"
    );
    assert!(table.contains("LATENESS P99"), "{table}");

    let pids: BTreeSet<i64> = agent
        .points_of("probe")
        .iter()
        .map(|p| p["fields"]["pid"].as_i64().unwrap_or(-1))
        .collect();
    assert_eq!(pids, BTreeSet::from([pid as i64]), "one worker throughout");
}

#[test]
fn abandoned_threads_past_the_pool_size_recycle_the_worker_gracefully() {
    let home = Home::new();
    home.write("python.d/probe/probe.py", PROBE);
    home.input(
        "recycled",
        &["probe"],
        "interval = \"1s\"\ntimeout = \"1s\"\nconcurrency = 1\n\
         [[inputs.pythond.instances]]\nname = \"stuck\"\n\
         [[inputs.pythond.instances]]\nname = \"fine\"\n",
    );
    let agent = home.start();
    let mut last = serde_json::Value::Null;
    assert!(
        wait_until(DEADLINE, || {
            last = status(&agent);
            last["inputs"][0]["recycles"].as_u64() >= Some(1)
        }),
        "not recycled: {last:#}"
    );
    assert_eq!(last["inputs"][0]["restarts"], 0, "{last:#}");
    // The fresh worker runs the healthy instance again.
    let pid_of = |p: &serde_json::Value| p["fields"]["pid"].as_i64().unwrap_or(-1);
    agent.expect_points("points from a second worker", |points| {
        let pids: BTreeSet<i64> = points.iter().map(pid_of).collect();
        pids.len() >= 2
    });
}

/// Writes `<instance> <pid>` to `$PYTHOND_TEST_MARKER/inits` from `init`.
const COUNTED_INIT: &str = r#"
import os
from datakit_framework import DataKitFramework

HOME = os.environ["PYTHOND_TEST_MARKER"]

class Probe(DataKitFramework):
    name = "probe"
    interval = 1

    def init(self, options):
        with open(os.path.join(HOME, "inits"), "a") as f:
            f.write("%s %d\n" % (self.instance, os.getpid()))

    def run(self):
        self.report({"M": [{"measurement": "probe",
                            "tags": {"instance": self.instance, "host": str(self.options.get("host"))},
                            "fields": {"pid": os.getpid()}}]})
"#;

fn instances_conf(entries: &[(&str, &str)]) -> String {
    entries
        .iter()
        .map(|(name, host)| {
            format!("[[inputs.pythond.instances]]\nname = \"{name}\"\noptions = {{ host = \"{host}\" }}\n")
        })
        .collect()
}

#[test]
fn a_reload_that_changes_instances_touches_only_those_inside_the_running_worker() {
    let home = Home::new();
    home.write("python.d/probe/probe.py", COUNTED_INIT);
    home.input(
        "reloaded",
        &["probe"],
        &instances_conf(&[("a", "h1"), ("b", "h1"), ("c", "h1")]),
    );
    let agent = home.start();
    let mut before = serde_json::Value::Null;
    assert!(
        wait_until(DEADLINE, || {
            before = status(&agent);
            ["a", "b", "c"]
                .iter()
                .all(|i| entry(&before, &format!("probe.Probe@{i}"))["runs"].as_u64() >= Some(2))
        }),
        "{before:#}"
    );
    let pid = before["inputs"][0]["worker_pid"].as_u64().expect("pid");
    let runs_of_a = entry(&before, "probe.Probe@a")["runs"]
        .as_u64()
        .unwrap_or(0);

    // b changes, c goes, d comes; a is untouched.
    home.input(
        "reloaded",
        &["probe"],
        &instances_conf(&[("a", "h1"), ("b", "h2"), ("d", "h1")]),
    );
    agent.signal(libc::SIGHUP);
    let mut after = serde_json::Value::Null;
    assert!(
        wait_until(DEADLINE, || {
            after = status(&agent);
            entry(&after, "probe.Probe@d")["runs"].as_u64() >= Some(1)
                && entry(&after, "probe.Probe@c").is_null()
        }),
        "{after:#}"
    );
    agent.expect_points("b with its new options", |points| {
        points
            .iter()
            .any(|p| p["tags"]["instance"] == "b" && p["tags"]["host"] == "h2")
    });
    let input = &after["inputs"][0];
    assert_eq!(
        input["worker_pid"].as_u64(),
        Some(pid),
        "same worker: {input}"
    );
    assert_eq!(input["restarts"], 0, "{input}");
    // a's counters were not reset and keep counting.
    assert!(
        entry(&after, "probe.Probe@a")["runs"].as_u64() >= Some(runs_of_a),
        "{after:#}"
    );
    assert!(
        wait_until(DEADLINE, || {
            entry(&status(&agent), "probe.Probe@a")["runs"].as_u64() > Some(runs_of_a + 1)
        }),
        "a stopped running after the reload"
    );
    let mut inits: Vec<String> = home
        .read("inits")
        .lines()
        .map(|l| l.split(' ').next().unwrap_or("").to_string())
        .collect();
    inits.sort();
    assert_eq!(
        inits,
        ["a", "b", "b", "c", "d"],
        "only b was re-initialised"
    );
}

/// Reports, per run, its instance and process (`$PYTHOND_PROCESS`) as tags and its
/// worker's pid as a field.
const SPREAD: &str = r#"
import os
from datakit_framework import DataKitFramework

class Probe(DataKitFramework):
    name = "probe"
    interval = 1

    def run(self):
        self.report({"M": [{"measurement": "probe",
                            "tags": {"instance": self.instance,
                                     "process": os.environ.get("PYTHOND_PROCESS", "-")},
                            "fields": {"pid": os.getpid()}}]})
"#;

fn named_instances(names: &[String]) -> String {
    let mut conf = String::from("processes = 3\n");
    for name in names {
        conf.push_str(&format!(
            "[[inputs.pythond.instances]]\nname = \"{name}\"\n"
        ));
    }
    conf
}

/// The pid of each process (`"1/3"` ...) of the first input, from `workers`.
fn worker_pids(status: &serde_json::Value) -> BTreeMap<String, u64> {
    status["inputs"][0]["workers"]
        .as_array()
        .map(|workers| {
            workers
                .iter()
                .filter_map(|w| {
                    Some((
                        w["process"].as_str()?.to_string(),
                        w["worker_pid"].as_u64()?,
                    ))
                })
                .collect()
        })
        .unwrap_or_default()
}

fn runs(status: &serde_json::Value, instance: &str) -> u64 {
    entry(status, &format!("probe.Probe@{instance}"))["runs"]
        .as_u64()
        .unwrap_or(0)
}

/// The process (`"2/3"`) the agent gives `instance`: rendezvous hashing of its name.
fn process_of(instance: &str) -> String {
    format!("{}/3", pythond::worker::slot::assign(instance, 3) + 1)
}

#[test]
fn processes_spread_instances_over_supervised_workers_that_keep_them_across_reloads_and_kills() {
    let home = Home::new();
    home.write("python.d/probe/probe.py", SPREAD);
    let mut names: Vec<String> = (0..12).map(|i| format!("target-{i}")).collect();
    home.input("spread", &["probe"], &named_instances(&names));
    let slots: BTreeSet<String> = names.iter().map(|n| process_of(n)).collect();
    assert_eq!(slots.len(), 3, "every process has instances: {slots:?}");
    let agent = home.start();

    // Three workers, each running every instance it was assigned.
    let mut status = serde_json::Value::Null;
    assert!(
        wait_until(DEADLINE, || {
            status = self::status(&agent);
            worker_pids(&status).len() == 3 && names.iter().all(|n| runs(&status, n) >= 2)
        }),
        "{status:#}"
    );
    let pids = worker_pids(&status);
    assert_eq!(
        pids.values().collect::<BTreeSet<_>>().len(),
        3,
        "three distinct workers: {pids:?}"
    );
    let input = &status["inputs"][0];
    assert_eq!(input["name"], "spread", "one input in status: {status:#}");
    assert_eq!(input["state"]["state"], "running", "{input}");
    assert_eq!(input["instances_summary"]["instances"], 12, "{input}");
    let points = agent.points_of("probe");
    for (name, points) in by_instance(&points) {
        let process = process_of(&name);
        for point in &points {
            assert_eq!(point["tags"]["process"], process.as_str(), "{point}");
            assert_eq!(
                point["fields"]["pid"].as_u64(),
                Some(pids[&process]),
                "{point}"
            );
        }
    }

    // A reload that adds one instance: it runs in its own process; the workers and the
    // other instances are untouched and keep counting.
    let before = status.clone();
    names.push("target-new".to_string());
    home.input("spread", &["probe"], &named_instances(&names));
    agent.signal(libc::SIGHUP);
    assert!(
        wait_until(DEADLINE, || {
            status = self::status(&agent);
            runs(&status, "target-new") >= 1
        }),
        "{status:#}"
    );
    assert_eq!(
        worker_pids(&status),
        pids,
        "no worker restarted: {status:#}"
    );
    assert_eq!(status["inputs"][0]["restarts"], 0, "{status:#}");
    assert!(
        wait_until(DEADLINE, || {
            status = self::status(&agent);
            names[..12]
                .iter()
                .all(|n| runs(&status, n) > runs(&before, n) + 1)
        }),
        "the other instances did not keep running: {status:#}"
    );
    let new_pid = pids[&process_of("target-new")];
    agent.expect_points("the new instance in its process", |points| {
        points.iter().any(|p| {
            p["tags"]["instance"] == "target-new" && p["fields"]["pid"].as_u64() == Some(new_pid)
        })
    });

    // kill -9 one worker: only it is restarted; the others keep their pid and their
    // instances keep running meanwhile.
    let victim = process_of("target-0");
    // SAFETY: kill(2) with a pid read from the agent's status; no memory involved.
    unsafe { libc::kill(pids[&victim] as i32, libc::SIGKILL) };
    let killed_at = status.clone();
    assert!(
        wait_until(DEADLINE, || {
            status = self::status(&agent);
            let now = worker_pids(&status);
            now.len() == 3 && now[&victim] != pids[&victim]
        }),
        "the killed worker was not restarted: {status:#}"
    );
    let now = worker_pids(&status);
    for (process, pid) in &pids {
        if *process != victim {
            assert_eq!(
                now[process], *pid,
                "{process} was restarted too: {status:#}"
            );
        }
    }
    assert_eq!(status["inputs"][0]["restarts"], 1, "{status:#}");
    let victim_worker = status["inputs"][0]["workers"]
        .as_array()
        .and_then(|ws| ws.iter().find(|w| w["process"] == victim.as_str()).cloned())
        .unwrap_or_default();
    assert_eq!(victim_worker["restarts"], 1, "{victim_worker}");
    assert!(
        wait_until(DEADLINE, || {
            status = self::status(&agent);
            names
                .iter()
                .all(|n| runs(&status, n) > runs(&killed_at, n) + 1)
        }),
        "not every instance runs again after the kill: {status:#}"
    );
    let restarted = now[&victim];
    agent.expect_points("target-0 in the restarted worker", |points| {
        points.iter().any(|p| {
            p["tags"]["instance"] == "target-0" && p["fields"]["pid"].as_u64() == Some(restarted)
        })
    });

    // `pythond status --input` still finds the input and shows all three pids.
    let table = status_table(&agent, "spread");
    let shown = worker_pids(&status)
        .values()
        .map(u64::to_string)
        .collect::<Vec<_>>()
        .join(",");
    assert!(table.contains(&shown), "{table}");
}

#[test]
fn an_instances_only_reload_reaches_every_plugin_worker_under_isolation_plugin() {
    let home = Home::new();
    home.write("python.d/probe/probe.py", SPREAD);
    home.input(
        "isolated",
        &["probe"],
        "isolation = \"plugin\"\n[[inputs.pythond.instances]]\nname = \"a\"\n",
    );
    let agent = home.start();
    let worker = |status: &serde_json::Value| {
        status["inputs"]
            .as_array()
            .and_then(|inputs| {
                inputs
                    .iter()
                    .find(|i| i["name"] == "isolated/probe.Probe")
                    .cloned()
            })
            .unwrap_or_default()
    };
    let key = |status: &serde_json::Value, key: &str| {
        worker(status)["plugins"]
            .as_array()
            .and_then(|ps| ps.iter().find(|p| p["id"] == key).cloned())
            .unwrap_or_default()
    };
    let mut status = serde_json::Value::Null;
    assert!(
        wait_until(DEADLINE, || {
            status = self::status(&agent);
            key(&status, "probe.Probe@a")["runs"].as_u64() >= Some(2)
        }),
        "{status:#}"
    );
    let pid = worker(&status)["worker_pid"].as_u64().expect("pid");
    home.input(
        "isolated",
        &["probe"],
        "isolation = \"plugin\"\n[[inputs.pythond.instances]]\nname = \"a\"\n\
         [[inputs.pythond.instances]]\nname = \"b\"\n",
    );
    agent.signal(libc::SIGHUP);
    assert!(
        wait_until(DEADLINE, || {
            status = self::status(&agent);
            key(&status, "probe.Probe@b")["runs"].as_u64() >= Some(1)
        }),
        "{status:#}"
    );
    let after = worker(&status);
    assert_eq!(
        after["worker_pid"].as_u64(),
        Some(pid),
        "restarted: {after}"
    );
    assert_eq!(after["restarts"], 0, "{after}");
}

/// Fails every run of the instances named `bad…`; the others report one point.
const FLAKY: &str = r#"
from datakit_framework import DataKitFramework

class Probe(DataKitFramework):
    name = "probe"
    interval = 3600

    def run(self):
        if self.instance.startswith("bad"):
            raise RuntimeError("target unreachable")
        self.report({"M": [{"measurement": "probe", "tags": {"instance": self.instance},
                            "fields": {"ok": 1}}]})
"#;

#[test]
fn at_two_thousand_instances_status_lists_the_failing_ones_and_metrics_stay_per_plugin() {
    let home = Home::new();
    home.write("python.d/probe/probe.py", FLAKY);
    let mut conf = String::from("interval = \"3s\"\ninstances = [\n");
    for i in 0..2000 {
        let name = match i {
            7 | 1000 | 1999 => format!("bad{i}"),
            _ => format!("ok{i}"),
        };
        conf.push_str(&format!("  {{ name = \"{name}\" }},\n"));
    }
    conf.push_str("]\n");
    home.input("many", &["probe"], &conf);
    let agent = home.start();

    // Default filters: only the three failing instances are listed, and the summary
    // counts all 2,000.
    let failing = [
        "probe.Probe@bad1000",
        "probe.Probe@bad1999",
        "probe.Probe@bad7",
    ];
    let mut default = serde_json::Value::Null;
    let listed_them = wait_until(DEADLINE, || {
        default = status_with(&agent, "");
        let listed: Vec<&str> = default["inputs"][0]["plugins"]
            .as_array()
            .map(|ps| ps.iter().filter_map(|p| p["id"].as_str()).collect())
            .unwrap_or_default();
        listed == failing
    });
    assert!(listed_them, "{default:#}");
    let summary = &default["inputs"][0]["instances_summary"];
    assert_eq!(summary["instances"], 2000, "{summary}");
    assert_eq!(summary["failing"], 3, "{summary}");
    assert_eq!(summary["quarantined"], 0, "{summary}");
    assert_eq!(summary["disabled"], 0, "{summary}");
    let bad = entry(&default, "probe.Probe@bad7");
    assert!(
        bad["last_error"]
            .as_str()
            .is_some_and(|e| e.starts_with("RuntimeError: target unreachable")),
        "{bad}"
    );
    assert_eq!(
        status(&agent)["inputs"][0]["plugins"]
            .as_array()
            .map(Vec::len),
        Some(2000),
        "`all` lists every instance"
    );

    // /metrics: per-input and per-plugin series only, however many instances.
    let base = api_base(&agent);
    let mut samples = Vec::new();
    assert!(
        wait_until(DEADLINE, || {
            samples = common::http::parsed_metrics(&base);
            samples.iter().any(|s| {
                s["name"] == "pythond_plugin_runs_total" && s["value"].as_f64() >= Some(2000.0)
            })
        }),
        "every instance ran once: {samples:?}"
    );
    let per_instance: Vec<&serde_json::Value> = samples
        .iter()
        .filter(|s| {
            s["labels"]["plugin"]
                .as_str()
                .is_some_and(|p| p.contains('@'))
        })
        .collect();
    assert!(per_instance.is_empty(), "{per_instance:?}");
    let plugins: BTreeSet<&str> = samples
        .iter()
        .filter_map(|s| s["labels"]["plugin"].as_str())
        .collect();
    assert_eq!(plugins, BTreeSet::from(["probe.Probe"]));
    assert!(
        samples.len() < 300,
        "{} samples for 2,000 instances: not bounded by the plugins",
        samples.len()
    );
}
