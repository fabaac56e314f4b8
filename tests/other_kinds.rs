//! syslog-ng drivers and zenpython plugins under the real agent: a fetcher paging a
//! local HTTP API with its cursor in `Persist` (kept across a kill -9 of its worker and
//! an agent restart, nothing fetched twice), a blocking `LogSource` stopped by
//! `request_exit()` on reload and shutdown, a zenpython plugin's values/events/maps in
//! the sink and its `cleanup()` on reload, each plugin's kind in `/v1/status`, and
//! `pythond check` running every kind once, and flow control end to end: a source
//! whose agent takes nothing (stopped) is suspended, blocks, and loses no message.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::http::{api_base, get};
use common::{alive, wait_until, Home, DEADLINE};

/// A paged audit-log API on loopback: `GET /events?after=N` answers the next (at most
/// 3) events with an id above N among the first `available` ones, as JSON.
struct AuditApi {
    addr: String,
    available: Arc<AtomicU64>,
    requests: Arc<AtomicU64>,
}

impl AuditApi {
    fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr").to_string();
        let available = Arc::new(AtomicU64::new(0));
        let requests = Arc::new(AtomicU64::new(0));
        let (avail, reqs) = (available.clone(), requests.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let mut reader = BufReader::new(stream.try_clone().expect("clone"));
                let mut request_line = String::new();
                if reader.read_line(&mut request_line).is_err() {
                    continue;
                }
                loop {
                    let mut header = String::new();
                    match reader.read_line(&mut header) {
                        Ok(0) | Err(_) => break,
                        Ok(_) if header == "\r\n" || header == "\n" => break,
                        Ok(_) => {}
                    }
                }
                reqs.fetch_add(1, Ordering::SeqCst);
                let after: u64 = request_line
                    .split_whitespace()
                    .nth(1)
                    .and_then(|target| target.split("after=").nth(1))
                    .and_then(|n| n.parse().ok())
                    .unwrap_or(0);
                let last = avail.load(Ordering::SeqCst);
                let events: Vec<serde_json::Value> = (after + 1..=last.min(after + 3))
                    .map(|id| serde_json::json!({"id": id, "actor": "alice", "action": format!("login {id}")}))
                    .collect();
                let body = serde_json::json!({ "events": events }).to_string();
                let _ = write!(
                    stream,
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
            }
        });
        Self {
            addr,
            available,
            requests,
        }
    }
}

/// Written the way public python-fetcher() drivers for SaaS audit logs are.
const AUDIT_FETCHER: &str = r#"
import json
import urllib.request

from syslogng import LogFetcher, LogMessage, Persist


class AuditLogFetcher(LogFetcher):
    def init(self, options):
        self.url = options["url"]
        self.persist = Persist("audit_cursor", defaults={"after": 0})
        self.page = []
        return True

    def open(self):
        return True

    def fetch(self):
        if not self.page:
            url = "%s/events?after=%d" % (self.url, self.persist["after"])
            try:
                with urllib.request.urlopen(url, timeout=10) as answer:
                    self.page = json.load(answer)["events"]
            except OSError:
                return LogFetcher.FETCH_NOT_CONNECTED, None
            if not self.page:
                return LogFetcher.FETCH_NO_DATA, None
        event = self.page.pop(0)
        self.persist["after"] = event["id"]
        msg = LogMessage(event["action"])
        msg["HOST"] = "audit.example"
        msg["PROGRAM"] = "audit"
        msg["event_id"] = event["id"]
        msg["actor"] = event["actor"]
        return LogFetcher.FETCH_SUCCESS, msg
"#;

fn event_ids(points: &[serde_json::Value]) -> Vec<u64> {
    points
        .iter()
        .filter(|p| p["measurement"] == "AuditLogFetcher")
        .filter_map(|p| p["fields"]["event_id"].as_u64())
        .collect()
}

fn plugin_status(agent: &common::Agent, id: &str) -> serde_json::Value {
    let status = get(&format!("{}/v1/status", api_base(agent)), &[]).json();
    status["inputs"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|input| input["plugins"].as_array().cloned().unwrap_or_default())
        .find(|p| p["id"] == id)
        .unwrap_or_else(|| panic!("no plugin {id} in {status}"))
}

#[test]
fn fetcher_cursor_survives_a_killed_worker_and_an_agent_restart() {
    let api = AuditApi::start();
    let home = Home::new();
    home.write("python.d/audit/audit.py", AUDIT_FETCHER);
    home.input(
        "audit",
        &["audit"],
        &format!(
            "time_reopen = \"100ms\"\nfetch_no_data_delay = \"100ms\"\n[inputs.pythond.options]\nurl = \"http://{}\"\n",
            api.addr
        ),
    );
    api.available.store(7, Ordering::SeqCst);
    let mut agent = home.start();
    agent.expect_points("the first 7 events", |points| event_ids(points).len() >= 7);
    let first = &agent.points_of("AuditLogFetcher")[0];
    assert_eq!(first["category"], "logging");
    assert_eq!(first["fields"]["message"], "login 1");
    assert_eq!(first["tags"]["program"], "audit");
    let status = plugin_status(&agent, "audit.AuditLogFetcher");
    assert_eq!(status["kind"], "syslogng_fetcher", "{status}");

    // kill -9 of the worker: the supervisor starts a new one, which continues
    // from the cursor on disk.
    let workers = agent.workers();
    assert_eq!(workers.len(), 1, "{workers:?}");
    // SAFETY: a pid of this test's own worker process.
    unsafe { libc::kill(workers[0], libc::SIGKILL) };
    assert!(wait_until(DEADLINE, || !alive(workers[0])));
    api.available.store(14, Ordering::SeqCst);
    agent.expect_points("the events after the kill", |points| {
        event_ids(points).len() >= 14
    });
    assert!(agent.stop().success());

    // A new agent on the same data_dir: still no event twice.
    api.available.store(20, Ordering::SeqCst);
    let mut agent = home.start();
    agent.expect_points("the events after the restart", |points| {
        event_ids(points).len() >= 20
    });
    // Give a duplicate the chance to show up: the fetcher polls again and again.
    let polled = api.requests.load(Ordering::SeqCst);
    assert!(wait_until(DEADLINE, || api.requests.load(Ordering::SeqCst)
        >= polled + 3));
    let ids = event_ids(&agent.points());
    assert_eq!(
        ids,
        (1..=20).collect::<Vec<u64>>(),
        "every event once, in order"
    );
    assert!(agent.stop().success());
    let cursor = home.read("data/state/audit/audit_cursor.json");
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&cursor).expect("persist file is JSON")["after"],
        20
    );
}

const BLOCKING_SOURCE: &str = r#"
import os
import threading

from syslogng import LogMessage, LogSource


class Listener(LogSource):
    """Blocks like a server loop until request_exit()."""

    def init(self, options):
        self.notes = options["notes"]
        self.generation = options.get("generation", 1)
        self.stop = threading.Event()
        return True

    def note(self, text):
        with open(self.notes, "a") as f:
            f.write(text + "\n")

    def run(self):
        self.note("run %s" % self.generation)
        msg = LogMessage("listening, generation %s" % self.generation)
        msg.set_pri(8 * 3 + 6)  # daemon.info
        self.post_message(msg)
        self.stop.wait()
        self.note("returned %s" % self.generation)

    def request_exit(self):
        self.note("request_exit %s" % self.generation)
        self.stop.set()
"#;

#[test]
fn blocking_source_is_stopped_by_request_exit_on_reload_and_shutdown() {
    let home = Home::new();
    home.write("python.d/listener/listener.py", BLOCKING_SOURCE);
    let notes = home.path().join("notes");
    let conf = |generation: u32| {
        format!(
            "[inputs.pythond.options]\nnotes = {:?}\ngeneration = {generation}\n",
            notes.display().to_string()
        )
    };
    home.input("listener", &["listener"], &conf(1));
    let mut agent = home.start();
    agent.expect_points("generation 1's message", |points| {
        points
            .iter()
            .any(|p| p["fields"]["message"] == "listening, generation 1")
    });
    let point = agent.points_of("Listener").remove(0);
    assert_eq!(point["tags"]["facility"], "daemon");
    assert_eq!(point["fields"]["status"], "info");
    assert_eq!(
        plugin_status(&agent, "listener.Listener")["kind"],
        "syslogng_source"
    );

    home.input("listener", &["listener"], &conf(2));
    agent.signal(libc::SIGHUP);
    agent.expect_points("generation 2's message", |points| {
        points
            .iter()
            .any(|p| p["fields"]["message"] == "listening, generation 2")
    });
    assert!(agent.stop().success());
    let lines = home.read("notes");
    let lines: Vec<&str> = lines.lines().collect();
    assert_eq!(
        lines,
        [
            "run 1",
            "request_exit 1",
            "returned 1",
            "run 2",
            "request_exit 2",
            "returned 2"
        ],
        "each run() ends through request_exit(), on reload and on shutdown"
    );
}

/// A ZenPack's dsplugins.py, as zenpython plugins are written.
const DSPLUGINS: &str = r#"
from Products.DataCollector.plugins.DataMaps import ObjectMap
from Products.ZenEvents.ZenEventClasses import Clear, Critical
from Products.ZenUtils.Utils import prepId
from ZenPacks.zenoss.PythonCollector.datasources.PythonDataSource import PythonDataSourcePlugin


class ServicePlugin(PythonDataSourcePlugin):
    proxy_attributes = ("zServiceName",)

    def collect(self, config):
        ds = config.datasources[0]
        data = self.new_data()
        data["values"][prepId(ds.zServiceName)]["requests"] = ds.params["base"] + 1
        severity = Critical if ds.params["base"] > 100 else Clear
        data["events"].append({"device": config.id, "component": prepId(ds.zServiceName),
                               "severity": severity, "eventKey": "svc-state",
                               "summary": "%s state" % ds.zServiceName})
        data["maps"].append(ObjectMap({"id": prepId(ds.zServiceName), "port": 8080},
                                      modname="ZenPacks.example.Service"))
        return data

    def cleanup(self, config):
        with open(config.datasources[0].params["notes"], "a") as f:
            f.write("cleanup %s\n" % config.id)
"#;

#[test]
fn zenpython_results_reach_the_sink_and_cleanup_runs_on_reload() {
    let home = Home::new();
    home.write("python.d/svc/dsplugins.py", DSPLUGINS);
    let notes = home.path().join("notes").display().to_string();
    let conf = |base: u32| {
        format!(
            "interval = \"1s\"\n[[inputs.pythond.zenpython_devices]]\nid = \"web01\"\n\
             manageIp = \"127.0.0.1\"\nzServiceName = \"http/api\"\n\
             [inputs.pythond.zenpython_devices.params]\nbase = {base}\nnotes = {notes:?}\n"
        )
    };
    home.input("zen", &["svc"], &conf(1));
    let mut agent = home.start();
    agent.expect_points("the first collection", |points| {
        points
            .iter()
            .any(|p| p["category"] == "metric" && p["fields"]["requests"] == 2)
    });
    let points = agent.points();
    let metric = points
        .iter()
        .find(|p| p["category"] == "metric" && p["measurement"] == "ServicePlugin")
        .expect("metric");
    assert_eq!(metric["tags"]["device"], "web01");
    assert_eq!(metric["tags"]["component"], "http_api");
    let event = points
        .iter()
        .find(|p| p["category"] == "keyevent")
        .expect("keyevent");
    assert_eq!(event["fields"]["df_status"], "ok");
    assert_eq!(event["fields"]["df_event_id"], "svc-state");
    assert_eq!(event["fields"]["df_title"], "http/api state");
    let object = points
        .iter()
        .find(|p| p["category"] == "object")
        .expect("object");
    assert_eq!(object["measurement"], "Service");
    assert_eq!(object["tags"]["name"], "http_api");
    assert_eq!(object["fields"]["port"], 8080);
    assert_eq!(
        plugin_status(&agent, "dsplugins.ServicePlugin")["kind"],
        "zenpython"
    );
    assert!(home.read("notes").is_empty(), "no cleanup before a stop");

    home.input("zen", &["svc"], &conf(500));
    agent.signal(libc::SIGHUP);
    agent.expect_points("the collection after the reload", |points| {
        points
            .iter()
            .any(|p| p["category"] == "keyevent" && p["fields"]["df_status"] == "critical")
    });
    assert_eq!(
        home.read("notes"),
        "cleanup web01\n",
        "cleanup(config) ran when the reload stopped the old worker"
    );
    assert!(agent.stop().success());
    assert_eq!(home.read("notes"), "cleanup web01\ncleanup web01\n");
}

#[test]
fn check_runs_each_kind_once() {
    let home = Home::new();
    home.write(
        "python.d/kinds/fetcher.py",
        r#"
from syslogng import LogFetcher, LogMessage

class Lines(LogFetcher):
    def init(self, options):
        self.lines = ["one", "two", "three"]
        return True

    def fetch(self):
        if not self.lines:
            return LogFetcher.FETCH_NO_DATA, None
        return LogFetcher.FETCH_SUCCESS, LogMessage.parse("<14>Oct 11 22:14:15 box app[7]: " + self.lines.pop(0))
"#,
    );
    home.write(
        "python.d/kinds/source.py",
        r#"
import threading
from syslogng import LogMessage, LogSource

class Pushed(LogSource):
    def init(self, options):
        self.stop = threading.Event()
        return True

    def run(self):
        self.post_message(LogMessage("pushed"))
        self.stop.wait()

    def request_exit(self):
        self.stop.set()
"#,
    );
    home.write(
        "python.d/kinds/dsplugins.py",
        &DSPLUGINS
            .replace("ds.zServiceName", "'svc'")
            .replace("ds.params[\"base\"]", "1")
            .replace("config.datasources[0].params[\"notes\"]", "'/dev/null'"),
    );
    home.write(
        "python.d/kinds/datakit.py",
        r#"
from datakit_framework import DataKitFramework

class Plain(DataKitFramework):
    name = "plain"

    def run(self):
        self.feed_metric(measurement="plain", fields={"v": 1})
"#,
    );
    let (code, stdout, stderr) = home.check(&["--timeout", "5s", "python.d/kinds"]);
    let lines: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON point per line"))
        .collect();
    let messages: Vec<&str> = lines
        .iter()
        .filter(|p| p["category"] == "logging")
        .filter_map(|p| p["fields"]["message"].as_str())
        .collect();
    assert_eq!(
        messages.iter().filter(|m| **m != "pushed").count(),
        3,
        "{stdout}\n{stderr}"
    );
    assert!(messages.contains(&"pushed"), "{stdout}\n{stderr}");
    let fetched = lines
        .iter()
        .find(|p| p["fields"]["message"] == "one")
        .expect("fetched line");
    assert_eq!(fetched["tags"]["program"], "app");
    assert_eq!(fetched["fields"]["pid"], "7");
    assert!(
        lines.iter().any(|p| p["category"] == "keyevent"),
        "{stdout}"
    );
    assert!(
        lines.iter().any(|p| p["measurement"] == "plain"),
        "{stdout}"
    );
    assert!(stderr.contains("4 plugin(s)"), "{stderr}");
    // The source is long-running: stopped at the timeout, which is not a failure.
    assert_eq!(code, 0, "{stdout}\n{stderr}");
}

#[test]
fn status_json_and_text_show_the_kind() {
    let home = Home::new();
    home.write(
        "python.d/svc/dsplugins.py",
        &DSPLUGINS
            .replace("ds.zServiceName", "'svc'")
            .replace("ds.params[\"base\"]", "1")
            .replace("config.datasources[0].params[\"notes\"]", "'/dev/null'"),
    );
    home.input(
        "zen",
        &["svc"],
        "interval = \"1s\"\n[inputs.pythond.options]\nbase = 1\nnotes = \"/dev/null\"\n",
    );
    let agent = home.start();
    agent.expect_points("a metric point", |points| {
        points.iter().any(|p| p["category"] == "metric")
    });
    let addr = common::http::api_addr(&agent);
    let mut command = common::pythond();
    command.args(["status", "--addr", &addr]);
    let (code, stdout, stderr) = common::run_to_end_within(command, Duration::from_secs(60));
    assert_eq!(code, 0, "{stderr}");
    let row = stdout
        .lines()
        .find(|l| l.contains("dsplugins.ServicePlugin"))
        .unwrap_or_else(|| panic!("{stdout}"));
    assert!(row.contains("zenpython"), "{row}");
}

#[test]
fn each_kind_runs_in_a_worker_of_its_own_under_plugin_isolation() {
    let home = Home::new();
    home.write(
        "python.d/mixed/lines.py",
        r#"
from syslogng import LogFetcher, LogMessage

class Lines(LogFetcher):
    def init(self, options):
        self.left = 2
        return True

    def fetch(self):
        if not self.left:
            return LogFetcher.FETCH_NO_DATA, None
        self.left -= 1
        return LogFetcher.FETCH_SUCCESS, LogMessage("line %d" % self.left)
"#,
    );
    home.write(
        "python.d/mixed/dsplugins.py",
        &DSPLUGINS
            .replace("ds.zServiceName", "'svc'")
            .replace("ds.params[\"base\"]", "1")
            .replace("config.datasources[0].params[\"notes\"]", "'/dev/null'"),
    );
    home.input(
        "mixed",
        &["mixed"],
        "isolation = \"plugin\"\ninterval = \"1s\"\nfetch_no_data_delay = \"1h\"\n",
    );
    let mut agent = home.start();
    agent.expect_points("both kinds' points", |points| {
        points
            .iter()
            .filter(|p| p["measurement"] == "Lines")
            .count()
            == 2
            && points.iter().any(|p| p["measurement"] == "ServicePlugin")
    });
    assert!(
        wait_until(DEADLINE, || agent.workers().len() == 2),
        "one worker per plugin: {:?}",
        agent.workers()
    );
    assert!(agent.stop().success());
}

const BURSTING_SOURCE: &str = r#"
import os
import threading
import time

from syslogng import LogMessage, LogSource

COUNT = 5000


class Burst(LogSource):
    """Posts one message, waits for the go file, then posts COUNT messages at once."""

    def init(self, options):
        self.dir = options["dir"]
        self.stop = threading.Event()
        return True

    def note(self, text):
        with open(os.path.join(self.dir, "notes"), "a") as f:
            f.write(text + "\n")

    def run(self):
        self.post_message(LogMessage("ready"))
        while not os.path.exists(os.path.join(self.dir, "go")) and not self.stop.is_set():
            time.sleep(0.05)
        for n in range(COUNT):
            msg = LogMessage("x" * 1000)
            msg["n"] = n
            self.post_message(msg)
        self.note("posted %d" % COUNT)
        self.stop.wait()

    def request_exit(self):
        self.stop.set()

    def suspend(self):
        self.note("suspend")

    def wakeup(self):
        self.note("wakeup")
"#;

#[test]
fn a_source_is_suspended_while_the_agent_takes_nothing_and_loses_no_message() {
    let home = Home::new();
    home.write("python.d/burst/burst.py", BURSTING_SOURCE);
    let dir = home.path().display().to_string();
    home.input(
        "burst",
        &["burst"],
        &format!("[inputs.pythond.options]\ndir = {dir:?}\n"),
    );
    let mut agent = home.start();
    agent.expect_points("the ready message", |points| {
        points.iter().any(|p| p["fields"]["message"] == "ready")
    });
    // The agent takes nothing while stopped: the worker's channel fills, then the
    // source's window; post_message() blocks and suspend() is called.
    agent.signal(libc::SIGSTOP);
    home.write("go", "");
    let suspended = wait_until(DEADLINE, || home.read("notes").contains("suspend"));
    let posted_while_stopped = home.read("notes").contains("posted");
    agent.signal(libc::SIGCONT);
    assert!(
        suspended,
        "suspend() was not called: {}",
        home.read("notes")
    );
    assert!(
        !posted_while_stopped,
        "post_message() did not block while the agent took nothing"
    );
    assert!(
        wait_until(DEADLINE, || home.read("notes").contains("wakeup")),
        "wakeup() was not called: {}",
        home.read("notes")
    );
    agent.expect_points("every message", |points| {
        points.iter().filter(|p| p["fields"]["n"].is_u64()).count() == 5000
    });
    let mut seen: Vec<u64> = agent
        .points()
        .iter()
        .filter_map(|p| p["fields"]["n"].as_u64())
        .collect();
    seen.sort_unstable();
    assert_eq!(seen, (0..5000).collect::<Vec<u64>>(), "each message once");
    assert!(agent.stop().success());
}
