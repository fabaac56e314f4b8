//! What an operator sees of a running agent, through the real CLI and API: `pythond
//! tap` streams accepted points (filtered, as JSON or line protocol; written by workers
//! or over HTTP) while the sinks still get every point; `pythond status` shows
//! plugins' last errors (in full with `--wide`), finds the agent through `--config`,
//! and says plainly when the address is not a pythond; `/metrics` follows the
//! Prometheus conventions (build info, the agent's process_* metrics, reload success
//! and its time), checked by prometheus_client's own parser.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use common::http::{api_addr, api_base, get, parsed_metrics, post};
use common::{wait_until, Home, DEADLINE};

const TWO_INPUTS: &str = r#"
from datakit_framework import DataKitFramework

class Beat(DataKitFramework):
    name = "beat"
    interval = 0.2

    def run(self):
        self.report({"M": [{"measurement": "beat", "tags": {"t": "v"}, "fields": {"n": 1}}],
                     "L": [{"measurement": "beat_log", "tags": {}, "fields": {"message": "hi"}}]})
"#;

const FAILING: &str = r#"
from datakit_framework import DataKitFramework

class Failing(DataKitFramework):
    name = "failing"
    interval = 0.2

    def run(self):
        raise RuntimeError("disk /data is full\nsecond line of the story")
"#;

/// A running `pythond tap` whose stdout lines arrive on a channel.
struct Tap {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Tap {
    fn start(args: &[&str]) -> Tap {
        let mut child = common::pythond()
            .arg("tap")
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start pythond tap");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        Tap { child, lines }
    }

    /// The next `n` lines (panics after the deadline).
    fn take(&self, n: usize) -> Vec<String> {
        (0..n)
            .map(|_| {
                self.lines
                    .recv_timeout(DEADLINE)
                    .expect("a tapped line in time")
            })
            .collect()
    }
}

impl Drop for Tap {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn tap_streams_filtered_points_and_the_sinks_still_get_them() {
    let home = Home::new();
    home.write("python.d/beat/beat.py", TWO_INPUTS);
    home.write(
        "python.d/other/other.py",
        &TWO_INPUTS.replace("\"beat", "\"other"),
    );
    home.input("beat", &["beat"], "");
    home.input("other", &["other"], "");
    let mut agent = home.start();
    let addr = api_addr(&agent);

    let json = Tap::start(&["--addr", &addr, "--input", "beat", "--category", "metric"]);
    for line in json.take(5) {
        let point: serde_json::Value = serde_json::from_str(&line).expect("JSON line");
        assert_eq!(point["input"], "beat", "{line}");
        assert_eq!(point["category"], "metric", "{line}");
        assert_eq!(point["measurement"], "beat", "{line}");
        assert_eq!(point["tags"]["t"], "v", "{line}");
        assert_eq!(point["fields"]["n"], 1, "{line}");
        assert!(point["plugin"].as_str().is_some_and(|p| p.contains("Beat")));
    }

    let lp = Tap::start(&["--addr", &addr, "--format", "lp", "--category", "logging"]);
    let lines = lp.take(6);
    assert!(
        lines
            .iter()
            .all(|l| l.contains("_log,") && l.contains("message=\"hi\"")),
        "{lines:?}"
    );
    assert!(
        lines.iter().any(|l| l.starts_with("beat_log,")),
        "{lines:?}"
    );
    assert!(
        lines.iter().any(|l| l.starts_with("other_log,")),
        "{lines:?}"
    );

    // The sinks are not touched: the file sink keeps getting both inputs' points.
    let seen = agent.points().len();
    agent.expect_points("points in the file sink while tapping", |points| {
        points.len() > seen + 8
            && points.iter().any(|p| p["measurement"] == "other")
            && points.iter().any(|p| p["measurement"] == "beat_log")
    });
    drop(json);
    drop(lp);
    assert!(agent.stop().success());
}

#[test]
fn line_protocol_written_over_http_reaches_the_tap_and_the_sinks_alike() {
    // The write API keeps clean points borrowed from the body and copies them only
    // for what holds points (the tap, the file sink); a point the rules fix takes the
    // other path. Both must arrive, as the rules left them, in order.
    let home = Home::new();
    let mut agent = home.start();
    let addr = api_addr(&agent);
    let url = format!("{}/v1/write/metric?input=lp", api_base(&agent));
    let body = b"web,zone=a\\ b v=1i,f=0.5 1700000000000000000\nweb s=\"dropped\",v=2i 1700000000000000001\n";
    let tap = Tap::start(&["--addr", &addr, "--input", "lp"]);
    // The tap sees points accepted after it connected: write until it has two.
    let (tx, rx) = mpsc::channel();
    let writer = std::thread::spawn(move || {
        while rx.try_recv().is_err() {
            assert_eq!(post(&url, &[], body).status, 200);
            std::thread::sleep(Duration::from_millis(100));
        }
    });
    let tapped: Vec<serde_json::Value> = tap
        .take(2)
        .iter()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect();
    let _ = tx.send(());
    writer.join().expect("writer");
    let pair = if tapped[0]["fields"]["v"] == 1 {
        [&tapped[0], &tapped[1]]
    } else {
        [&tapped[1], &tapped[0]]
    };
    assert_eq!(pair[0]["measurement"], "web", "{tapped:?}");
    assert_eq!(pair[0]["tags"]["zone"], "a b", "{tapped:?}");
    assert_eq!(pair[0]["fields"]["f"], 0.5, "{tapped:?}");
    assert_eq!(pair[0]["time"], 1_700_000_000_000_000_000i64, "{tapped:?}");
    assert_eq!(pair[1]["fields"]["v"], 2, "{tapped:?}");
    assert!(pair[1]["fields"].get("s").is_none(), "{tapped:?}");

    agent.expect_points("both points in the file sink", |points| {
        let web: Vec<_> = points
            .iter()
            .filter(|p| p["measurement"] == "web")
            .collect();
        web.len() >= 2
            && web[0]["fields"]["v"] == 1
            && web[0]["tags"]["zone"] == "a b"
            && web[1]["fields"]["v"] == 2
            && web[1]["fields"].get("s").is_none()
    });
    drop(tap);
    assert!(agent.stop().success());
}

#[test]
fn tap_refuses_unknown_categories_clearly() {
    let home = Home::new();
    let mut agent = home.start();
    let out = common::pythond()
        .args(["tap", "--addr", &api_addr(&agent), "--category", "metrix"])
        .output()
        .expect("pythond tap");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("unknown category \"metrix\""), "{stderr}");
    assert!(agent.stop().success());
}

#[test]
fn status_shows_plugin_errors_and_finds_the_agent_through_its_config() {
    let home = Home::new();
    let port = common::backends::free_port();
    home.write(
        "pythond.toml",
        &format!(
            "[http]\nlisten = \"127.0.0.1:{port}\"\ntoken = \"t0k\"\n\n[[sinks]]\ntype = \"file\"\npath = \"points.ndjson\"\n"
        ),
    );
    home.write("python.d/failing/failing.py", FAILING);
    home.input("failing", &["failing"], "");
    let mut agent = home.start();
    api_base(&agent);
    let config = home.path().join("pythond.toml");
    let status = |extra: &[&str]| {
        let out = common::pythond()
            .arg("status")
            .arg("--config")
            .arg(&config)
            .args(extra)
            .env_remove("PYTHOND_TOKEN")
            .output()
            .expect("pythond status");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let mut shown = (false, String::new(), String::new());
    assert!(
        wait_until(DEADLINE, || {
            shown = status(&[]);
            shown.0 && shown.1.contains("disk /data is full")
        }),
        "status --config shows the plugin's last error: {shown:?}"
    );
    let table = &shown.1;
    let header = table
        .lines()
        .find(|l| l.contains("PLUGIN") && l.contains("LAST ERROR"))
        .unwrap_or_else(|| panic!("a LAST ERROR column for plugins:\n{table}"));
    assert!(header.starts_with("INPUT"), "{header}");
    assert!(!table.contains("second line of the story"), "{table}");

    let (ok, wide, _) = status(&["--wide"]);
    assert!(ok);
    assert!(wide.contains("second line of the story"), "{wide}");
    assert!(wide.contains("RuntimeError"), "the whole traceback: {wide}");
    assert!(agent.stop().success());
}

#[test]
fn status_says_plainly_when_the_address_is_not_a_pythond() {
    // A real web server that is not a pythond: Python's http.server answers 404 HTML.
    let dir = tempfile::tempdir().expect("tempdir");
    let port = common::backends::free_port();
    let mut server = Command::new("python3")
        .args([
            "-m",
            "http.server",
            "--bind",
            "127.0.0.1",
            &port.to_string(),
        ])
        .current_dir(dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("python3 -m http.server");
    let addr = format!("127.0.0.1:{port}");
    assert!(wait_until(DEADLINE, || std::net::TcpStream::connect(&addr).is_ok()));
    let out = common::pythond()
        .args(["status", "--addr", &addr])
        .output()
        .expect("pythond status");
    let _ = server.kill();
    let _ = server.wait();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("is not a pythond agent"), "{stderr}");
    assert!(
        !stderr.contains("<html") && !stderr.contains("<!DOCTYPE"),
        "{stderr}"
    );
}

fn value(samples: &[serde_json::Value], name: &str) -> Option<f64> {
    samples
        .iter()
        .find(|s| s["name"] == name)
        .and_then(|s| s["value"].as_f64())
}

#[test]
fn metrics_follow_prometheus_conventions() {
    let home = Home::new();
    let mut agent = home.start();
    let base = api_base(&agent);
    let samples = parsed_metrics(&base);
    let build = samples
        .iter()
        .find(|s| s["name"] == "pythond_build_info")
        .expect("pythond_build_info");
    assert_eq!(build["value"], 1.0);
    assert_eq!(build["labels"]["version"], env!("CARGO_PKG_VERSION"));

    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs_f64();
    let start = value(&samples, "process_start_time_seconds").expect("start time");
    assert!(
        start <= now + 1.0 && start > now - 600.0,
        "{start} vs {now}"
    );
    let rss = value(&samples, "process_resident_memory_bytes").expect("rss");
    assert!(rss > 1_000_000.0, "{rss}");
    let fds = value(&samples, "process_open_fds").expect("fds");
    assert!(fds >= 3.0, "{fds}");
    assert!(value(&samples, "process_max_fds").expect("max fds") >= fds);
    let cpu = samples
        .iter()
        .find(|s| s["family"] == "process_cpu_seconds")
        .expect("process_cpu_seconds_total");
    assert_eq!(cpu["type"], "counter");

    assert_eq!(
        value(&samples, "pythond_config_last_reload_successful"),
        Some(1.0)
    );
    let reloaded = value(
        &samples,
        "pythond_config_last_reload_success_timestamp_seconds",
    )
    .expect("reload timestamp");
    assert!(
        reloaded >= start - 1.0 && reloaded <= now + 1.0,
        "{reloaded}"
    );

    // A conf file that does not parse: the reload fails, its time stays.
    home.write("conf.d/bad.conf", "[[inputs.pythond]]\nname = \n");
    let mut after = Vec::new();
    assert!(wait_until(Duration::from_secs(60), || {
        after = parsed_metrics(&base);
        value(&after, "pythond_config_last_reload_successful") == Some(0.0)
    }));
    assert_eq!(
        value(
            &after,
            "pythond_config_last_reload_success_timestamp_seconds"
        ),
        Some(reloaded)
    );
    assert!(agent.stop().success());
}

#[test]
fn a_sinks_last_error_names_its_url_plainly_and_clears_once_it_delivers() {
    let home = Home::new();
    let port = common::backends::free_port();
    home.write(
        "pythond.toml",
        &format!(
            "[[sinks]]\ntype = \"influxdb\"\nurl = \"http://127.0.0.1:{port}\"\ndb = \"pythond\"\nflush_interval = \"100ms\"\nretry_max_interval = \"1s\"\n"
        ),
    );
    home.write("python.d/beat/beat.py", TWO_INPUTS);
    home.input("beat", &["beat"], "");
    let mut agent = home.start();
    let base = api_base(&agent);
    let sink = || get(&format!("{base}/v1/status"), &[]).json()["sinks"][0].clone();
    let mut seen = serde_json::Value::Null;
    assert!(
        wait_until(DEADLINE, || {
            seen = sink();
            seen["last_error"].as_str().is_some()
        }),
        "the unreachable backend shows as the sink's last error: {seen:#}"
    );
    let error = seen["last_error"].as_str().unwrap_or_default().to_string();
    assert!(
        error.contains(&format!("127.0.0.1:{port}/write?db=pythond&precision=")),
        "{error}"
    );
    assert!(!error.contains("?<redacted>"), "{error}");

    let scratch = tempfile::tempdir().expect("tempdir");
    let _vm = common::backends::VictoriaMetrics::start_on(scratch.path(), port);
    assert!(
        wait_until(DEADLINE, || {
            seen = sink();
            seen["sent_points"].as_u64().unwrap_or(0) > 0 && seen["last_error"].is_null()
        }),
        "once the backend accepts points, the last error is gone: {seen:#}"
    );
    assert!(agent.stop().success());
}

const FLOOD: &str = r#"
from datakit_framework import DataKitFramework

class Flood(DataKitFramework):
    name = "flood"
    interval = 0.1

    def run(self):
        self.report({"M": [{"measurement": "flood", "tags": {"k": "v"}, "fields": {"i": i}}
                           for i in range(2000)]})
"#;

#[test]
fn a_tap_too_slow_to_read_is_told_what_it_missed_and_the_sinks_get_everything() {
    let home = Home::new();
    home.write("python.d/flood/flood.py", FLOOD);
    home.input("flood", &["flood"], "");
    let mut agent = home.start();
    let base = api_base(&agent);
    let mut tap = common::pythond()
        .args(["tap", "--addr", &api_addr(&agent), "--format", "lp"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("pythond tap");
    let stderr = tap.stderr.take().expect("stderr");
    let (notices_tx, notices) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if notices_tx.send(line).is_err() {
                return;
            }
        }
    });
    // Nobody reads the tap's stdout: it stalls, and the agent's queue for it fills.
    let dropped = |base: &str| {
        get(&format!("{base}/metrics"), &[])
            .body
            .lines()
            .find_map(|l| l.strip_prefix("pythond_tap_dropped_points_total "))
            .and_then(|v| v.trim().parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    assert!(
        wait_until(DEADLINE, || dropped(&base) > 0.0),
        "a stalled tap misses points, counted in /metrics"
    );
    // The sinks lose nothing meanwhile: every run's 2000 points are in the file.
    agent.expect_points("whole runs in the file sink", |points| {
        points
            .iter()
            .filter(|p| p["measurement"] == "flood")
            .count()
            >= 6000
    });
    let stdout = tap.stdout.take().expect("stdout");
    std::thread::spawn(move || {
        let mut sink = std::io::sink();
        let _ = std::io::copy(&mut BufReader::new(stdout), &mut sink);
    });
    let told = (0..100).find_map(|_| {
        let line = notices.recv_timeout(DEADLINE).ok()?;
        line.contains("points missed").then_some(line)
    });
    assert!(
        told.is_some(),
        "the tap says on stderr how many points it missed"
    );
    let _ = tap.kill();
    let _ = tap.wait();
    assert!(agent.stop().success());
}
