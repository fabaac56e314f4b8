//! Network sinks against real backends on loopback: VictoriaMetrics (influxdb sink,
//! v1 and v2 APIs), InfluxDB 1.x, and a recording HTTP server standing in for DataKit
//! or for a backend that refuses points. The points are queried back and compared
//! exactly; outages, agent SIGKILLs, a full buffer and refused batches are exercised
//! with a collector that numbers its reports.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use common::backends::{free_port, Influxdb, Recorder, Sample, VictoriaMetrics};
use common::http::{sink_metric, sink_status};
use common::seq::{expect_log_line, labels, log_lines, seq_values, Setup, IN_FLIGHT};
use common::{hostname, wait_until, Home, DEADLINE};

fn influx_sink(url: &str, extra: &str) -> String {
    format!(
        "[[sinks]]\ntype = \"influxdb\"\nurl = \"{url}\"\ndb = \"pythond\"\nflush_interval = \"100ms\"\nretry_max_interval = \"1s\"\n{extra}\n"
    )
}

#[test]
fn influxdb_sinks_deliver_a_steady_stream_to_victoria_metrics_exactly() {
    let scratch = tempfile::tempdir().expect("tempdir");
    let vm = VictoriaMetrics::start(scratch.path());
    let n = 200;
    // Two sinks on the same backend: the v1 API (db) and the v2 API (bucket), each with
    // its own buffer; VictoriaMetrics labels the series with the db or bucket.
    let sinks = format!(
        "{}[[sinks]]\ntype = \"influxdb\"\nurl = \"{}\"\nbucket = \"v2bucket\"\nflush_interval = \"100ms\"\n",
        influx_sink(&vm.url(), ""),
        vm.url()
    );
    let setup = Setup::new(
        &sinks,
        n,
        &["SEQ_PAUSE=0.002", "SEQ_POINTS=2", "SEQ_NOGLOBAL=1"],
    );
    let agent = setup.home.start();
    let selector = r#"{__name__=~"seq_.*|noglobal_.*"}"#;
    // 200 numbers x 2 parts x 2 fields x 2 sinks, plus the point without global tags.
    let expected_count = (n * 2 * 2 * 2 + 2) as usize;
    let mut samples = Vec::new();
    let complete = wait_until(DEADLINE, || {
        samples = vm.export(selector);
        samples.len() >= expected_count
    });
    assert!(
        complete,
        "{} of {expected_count} samples arrived; log:\n{}",
        samples.len(),
        agent.stderr()
    );

    let host = hostname();
    let mut expected = Vec::new();
    // VictoriaMetrics labels v1 writes with `db`; this version does not label v2
    // writes with their bucket, so the two sinks' series differ by that label only.
    for db in [Some("pythond"), None] {
        for seq in 0..n as i64 {
            for part in ["0", "1"] {
                for (field, value) in [("v", seq as f64), ("x", seq as f64 * 0.5)] {
                    let name = format!("seq_{field}");
                    let mut pairs = vec![
                        ("__name__", name.as_str()),
                        ("host", host.as_str()),
                        ("part", part),
                        ("region", "eu"),
                    ];
                    pairs.extend(db.map(|db| ("db", db)));
                    expected.push(Sample {
                        labels: labels(&pairs),
                        value,
                        timestamp_ms: setup.start_ms + seq,
                    });
                }
            }
        }
    }
    expected.sort_by(|a, b| {
        (&a.labels, a.timestamp_ms)
            .cmp(&(&b.labels, b.timestamp_ms))
            .then(a.value.total_cmp(&b.value))
    });
    let (noglobal, samples): (Vec<Sample>, Vec<Sample>) = vm
        .export(selector)
        .into_iter()
        .partition(|s| s.label("__name__") == Some("noglobal_v"));
    assert_eq!(samples.len(), expected.len());
    if let Some(i) = (0..samples.len()).find(|i| samples[*i] != expected[*i]) {
        panic!(
            "sample {i} differs: got {:?}, expected {:?}",
            samples[i], expected[i]
        );
    }
    // ignore_global_tags: neither `region` nor `host` (VictoriaMetrics may add `db`).
    assert_eq!(noglobal.len(), 2, "{noglobal:?}");
    for sample in &noglobal {
        assert!(
            sample
                .labels
                .iter()
                .all(|(k, _)| k == "__name__" || k == "db"),
            "{sample:?}"
        );
        assert_eq!((sample.value, sample.timestamp_ms), (7.0, setup.start_ms));
    }
}

#[test]
fn points_queued_during_a_backend_outage_all_arrive_once() {
    let scratch = tempfile::tempdir().expect("tempdir");
    let mut vm = VictoriaMetrics::start(scratch.path());
    let n = 400;
    let setup = Setup::new(&influx_sink(&vm.url(), ""), n, &["SEQ_PAUSE=0.01"]);
    let agent = setup.home.start();
    setup.wait_seq(50);
    assert!(
        wait_until(DEADLINE, || !seq_values(&vm.export("seq_v")).is_empty()),
        "nothing arrived before the outage; log:\n{}",
        agent.stderr()
    );
    vm.stop();
    agent.expect_log("backend unavailable");
    let during = setup.seq();
    setup.wait_seq(during + 100);
    vm.restart();
    agent.expect_log("backend accepts points again");
    setup.wait_seq(n as i64 - 1);
    let expected: Vec<i64> = (0..n as i64).collect();
    let mut seqs = Vec::new();
    let complete = wait_until(DEADLINE, || {
        seqs = seq_values(&vm.export("seq_v"));
        seqs.len() >= expected.len()
    });
    assert!(
        complete,
        "{} of {n} arrived; log:\n{}",
        seqs.len(),
        agent.stderr()
    );
    // Every number exactly once: none lost, none sent twice.
    assert_eq!(seqs, expected);
}

#[test]
fn a_sigkilled_agent_loses_none_of_the_points_it_buffered() {
    let scratch = tempfile::tempdir().expect("tempdir");
    let mut vm = VictoriaMetrics::start(scratch.path());
    let n = 500;
    let setup = Setup::new(&influx_sink(&vm.url(), ""), n, &["SEQ_PAUSE=0.01"]);
    let mut agent = setup.home.start();
    setup.wait_seq(50);
    // With the backend down, what the agent accepted exists only in its disk buffer.
    vm.stop();
    agent.expect_log("backend unavailable");
    setup.wait_seq(setup.seq() + 150);
    agent.child.kill().expect("SIGKILL the agent");
    agent.child.wait().expect("reap the agent");
    assert!(
        wait_until(DEADLINE, || common::processes_with_marker(
            &setup.home.marker
        )
        .is_empty()),
        "the worker outlived its agent"
    );
    let killed_at = setup.seq();
    drop(agent);

    vm.restart();
    let agent = setup.home.start();
    setup.wait_seq(n as i64 - 1);
    let mut seqs = BTreeSet::new();
    wait_until(DEADLINE, || {
        seqs = seq_values(&vm.export("seq_v")).into_iter().collect();
        (killed_at + 1..n as i64).all(|s| seqs.contains(&s))
            && (0..n as i64).filter(|s| !seqs.contains(s)).count() <= IN_FLIGHT
    });
    // Only reports in flight at the instant of the kill (written to the pipe, not yet
    // appended to the buffer) may be missing; everything before them was acknowledged.
    let missing: Vec<i64> = (0..n as i64).filter(|s| !seqs.contains(s)).collect();
    assert!(
        missing
            .iter()
            .all(|s| *s > killed_at - IN_FLIGHT as i64 && *s <= killed_at),
        "lost {missing:?} (killed at {killed_at}); log:\n{}",
        agent.stderr()
    );
}

#[test]
fn a_full_buffer_drops_the_oldest_points_and_counts_them() {
    let scratch = tempfile::tempdir().expect("tempdir");
    // Nothing listens there yet: every attempt is refused and points pile up.
    let port = free_port();
    let n: i64 = 3000;
    let setup = Setup::new(
        &influx_sink(
            &format!("http://127.0.0.1:{port}"),
            "max_bytes = \"64KiB\"\nname = \"small\"",
        ),
        n as u64,
        &["SEQ_PAUSE=0.0005"],
    );
    let agent = setup.home.start();
    setup.wait_seq(n - 1);
    agent.expect_log("disk buffer full");
    let vm = VictoriaMetrics::start_on(scratch.path(), port);

    let dropped = |agent: &common::Agent| -> i64 {
        log_lines(agent, &["disk buffer full", "sink=small"])
            .iter()
            .map(|line| field(line, "points"))
            .sum()
    };
    let mut seqs = Vec::new();
    let accounted = wait_until(DEADLINE, || {
        seqs = seq_values(&vm.export("seq_v"));
        seqs.len() as i64 + dropped(&agent) == n
    });
    assert!(
        accounted,
        "{} arrived + {} dropped != {n}; log:\n{}",
        seqs.len(),
        dropped(&agent),
        agent.stderr()
    );
    // What was dropped is the oldest: the newest points arrived, contiguous.
    let first = n - seqs.len() as i64;
    assert!(first > 0, "nothing was dropped");
    assert_eq!(seqs, (first..n).collect::<Vec<_>>());
}

/// The value of `key=<integer>` in a text log line.
fn field(line: &str, key: &str) -> i64 {
    let needle = format!("{key}=");
    line.split_whitespace()
        .find_map(|word| word.strip_prefix(&needle))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {key}= in {line}"))
}

#[test]
fn records_left_by_a_sink_of_another_type_are_set_aside_not_sent() {
    let scratch = tempfile::tempdir().expect("tempdir");
    // Nothing listens there yet: the influxdb sink's points wait in its buffer.
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    let old: i64 = 40;
    let setup = Setup::new(
        &influx_sink(&url, "name = \"vm\""),
        old as u64,
        &["SEQ_PAUSE=0.005"],
    );
    let mut agent = setup.home.start();
    let buffered = wait_until(DEADLINE, || {
        sink_status(&agent, "vm")["buffered_points"].as_i64() == Some(old)
    });
    assert!(
        buffered,
        "the points were not buffered; log:\n{}",
        agent.stderr()
    );
    agent.stop();

    // The same name (so the same buffer) as a remote write sink, backend up.
    let vm = VictoriaMetrics::start_on(scratch.path(), port);
    setup.home.write(
        "pythond.toml",
        &format!(
            "[global_tags]\nregion = \"eu\"\n\n[[sinks]]\nname = \"vm\"\ntype = \"prometheus_remote_write\"\nurl = \"{url}/api/v1/write\"\nflush_interval = \"100ms\"\nretry_max_interval = \"1s\"\n"
        ),
    );
    let n: i64 = 80;
    setup.write_input(n as u64);
    let agent = setup.home.start();
    let mut seqs = Vec::new();
    let arrived = wait_until(DEADLINE, || {
        seqs = seq_values(&vm.export("seq_v"));
        seqs.len() as i64 >= n - old
            && sink_status(&agent, "vm")["foreign_points"].as_i64() == Some(old)
    });
    assert!(
        arrived,
        "got {seqs:?}, sink {}; log:\n{}",
        sink_status(&agent, "vm"),
        agent.stderr()
    );
    // Only the new points reached the backend, each once; the old ones were not
    // sent (a remote write backend refuses line protocol) but counted and kept.
    assert_eq!(seqs, (old..n).collect::<Vec<_>>());
    let sink = sink_status(&agent, "vm");
    assert_eq!(sink["dead_lettered_points"], 0, "{sink}");
    assert_eq!(sink["queued_points"], 0, "{sink}");
    assert_eq!(
        sink_metric(
            &agent,
            "pythond_sink_buffer_foreign_points_total{sink=\"vm\",type=\"prometheus_remote_write\"}"
        ),
        Some(old as f64)
    );
    let foreign = setup.home.path().join("data/foreign/vm.ndjson");
    assert_eq!(dead_seqs(&foreign), (0..old).collect::<BTreeSet<_>>());
    for entry in common::read_points(&foreign) {
        assert_eq!(
            (entry["format"].as_str(), entry["sink_format"].as_str()),
            (
                Some("line_protocol"),
                Some("prometheus_remote_write_snappy")
            ),
            "{entry}"
        );
    }
    let warning = expect_log_line(
        &agent,
        &["sink=vm", "another body format", "format=line_protocol"],
    );
    assert!(
        warning.contains("sink_format=\"prometheus_remote_write_snappy\"")
            && warning.contains(&format!("points={old}")),
        "{warning}"
    );
}

#[test]
fn points_a_backend_refuses_go_to_the_dead_letter_file() {
    let scratch = tempfile::tempdir().expect("tempdir");
    let refusing = Recorder::start(
        scratch.path(),
        "refused",
        400,
        r#"{"error":"partial write: field type conflict"}"#,
    );
    let n = 30;
    let setup = Setup::new(
        &influx_sink(&refusing.url(), "name = \"refusing\""),
        n,
        &["SEQ_PAUSE=0.01"],
    );
    let agent = setup.home.start();
    let deadletter = setup.home.path().join("data/deadletter/refusing.ndjson");
    let mut seqs = BTreeSet::new();
    let all = wait_until(DEADLINE, || {
        seqs = dead_seqs(&deadletter);
        seqs.len() == n as usize
    });
    assert!(all, "dead-lettered {seqs:?}; log:\n{}", agent.stderr());
    assert_eq!(seqs, (0..n as i64).collect::<BTreeSet<_>>());
    let entries = common::read_points(&deadletter);
    for entry in &entries {
        assert_eq!(entry["status"], 400, "{entry}");
        assert_eq!(
            entry["message"], r#"{"error":"partial write: field type conflict"}"#,
            "{entry}"
        );
        assert_eq!(entry["sink"], "refusing");
    }
    expect_log_line(
        &agent,
        &["sink=refusing", "field type conflict", "dead-letter"],
    );
    // Operators see it in /metrics and in `pythond status`.
    let addr = common::http::api_addr(&agent);
    let metrics = common::http::get(&format!("http://{addr}/metrics"), &[]).body;
    let line = format!(
        "pythond_sink_dead_lettered_points_total{{sink=\"refusing\",type=\"influxdb\"}} {n}"
    );
    assert!(
        metrics.lines().any(|l| l == line),
        "no {line:?} in:\n{metrics}"
    );
    let mut status = common::pythond();
    status.args(["status", "--addr", &addr]);
    let (code, out, err) = common::run_to_end(status);
    assert_eq!(code, 0, "{err}");
    let row = out
        .lines()
        .find(|l| l.starts_with("refusing "))
        .unwrap_or_default();
    assert!(
        row.contains(&format!(" {n} ")) && row.contains("field type conflict"),
        "no dead-lettered count and error in the sink row {row:?}:\n{out}"
    );
    // Refused batches are not retried: each number was posted once.
    let posted: usize = refusing
        .requests()
        .iter()
        .map(|r| r["body"].as_str().unwrap_or_default().lines().count())
        .sum();
    assert_eq!(posted, n as usize);
}

/// The `v` of every `seq` line in a dead-letter file.
fn dead_seqs(path: &Path) -> BTreeSet<i64> {
    common::read_points(path)
        .iter()
        .flat_map(|entry| {
            entry["lines"]
                .as_str()
                .unwrap_or_default()
                .lines()
                .map(str::to_string)
                .collect::<Vec<_>>()
        })
        .filter_map(|line| {
            let fields = line.split(' ').nth(1)?;
            let v = fields.split(',').find_map(|f| f.strip_prefix("v="))?;
            v.trim_end_matches('i').parse().ok()
        })
        .collect()
}

const CATEGORIES: &str = r#"
from datakit_framework import DataKitFramework

class Mixed(DataKitFramework):
    name = "mixed"
    interval = 3600

    def run(self):
        self.report({"M": [{"measurement": "cpu", "tags": {"core": "0"}, "fields": {"idle": 97.5, "n": 3}, "time": 1700000000000}],
                     "L": [{"measurement": "nginx", "tags": {}, "fields": {"message": "GET / 200"}, "time": 1700000000001}],
                     "precision": "ms"})
        self.feed_object(cls="proc", name="nginx", tags={}, fields={"threads": 4}, time=1700000000002000000)
"#;

#[test]
fn datakit_sink_posts_line_protocol_per_category_with_the_token() {
    let scratch = tempfile::tempdir().expect("tempdir");
    let datakit = Recorder::start(scratch.path(), "datakit", 200, "{}");
    let metrics_only = Recorder::start(scratch.path(), "influx", 204, "");
    let home = Home::new();
    home.write(
        "pythond.toml",
        &format!(
            "[agent]\nhostname = \"web-1\"\n\n\
             [[sinks]]\ntype = \"datakit\"\nurl = \"{}?token=tkn_123\"\nflush_interval = \"100ms\"\n\n\
             [[sinks]]\ntype = \"influxdb\"\nurl = \"{}\"\ndb = \"m\"\ncategories = [\"metric\"]\nflush_interval = \"100ms\"\n",
            datakit.url(),
            metrics_only.url()
        ),
    );
    home.write("python.d/mixed/mixed.py", CATEGORIES);
    home.input("mixed", &["mixed"], "");
    let agent = home.start();

    let mut by_path: BTreeMap<String, String> = BTreeMap::new();
    let all = wait_until(DEADLINE, || {
        by_path.clear();
        for request in datakit.requests() {
            by_path
                .entry(request["path"].as_str().unwrap_or_default().to_string())
                .or_default()
                .push_str(request["body"].as_str().unwrap_or_default());
        }
        by_path.len() == 3
    });
    assert!(all, "requests: {by_path:?}; log:\n{}", agent.stderr());
    let expected: BTreeMap<String, String> = [
        (
            "/v1/write/metric?token=tkn_123&precision=n",
            "cpu,core=0,host=web-1 idle=97.5,n=3i 1700000000000000000\n",
        ),
        (
            "/v1/write/logging?token=tkn_123&precision=n",
            "nginx,host=web-1 message=\"GET / 200\",status=\"info\" 1700000000001000000\n",
        ),
        (
            "/v1/write/object?token=tkn_123&precision=n",
            "proc,host=web-1,name=nginx threads=4i 1700000000002000000\n",
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    assert_eq!(by_path, expected);
    for request in datakit.requests() {
        assert_eq!(request["headers"]["content-encoding"], "gzip", "{request}");
    }

    // The sink with `categories = ["metric"]` got the metric only.
    assert!(
        wait_until(DEADLINE, || !metrics_only.requests().is_empty()),
        "the metric sink got nothing; log:\n{}",
        agent.stderr()
    );
    let bodies: String = metrics_only
        .requests()
        .iter()
        .map(|r| r["body"].as_str().unwrap_or_default().to_string())
        .collect();
    assert_eq!(
        bodies,
        "cpu,core=0,host=web-1 idle=97.5,n=3i 1700000000000000000\n"
    );
    assert_eq!(
        metrics_only.requests()[0]["path"],
        "/write?db=m&precision=ns"
    );
}

#[test]
fn influxdb_sink_writes_to_influxdb_1x_exactly() {
    let scratch = tempfile::tempdir().expect("tempdir");
    let influx = Influxdb::start(scratch.path());
    influx.query("", "CREATE DATABASE pythond");
    let n = 50;
    let setup = Setup::new(&influx_sink(&influx.url(), ""), n, &["SEQ_PAUSE=0.005"]);
    let agent = setup.home.start();
    let mut rows = Vec::new();
    let complete = wait_until(DEADLINE, || {
        let answer = influx.query("pythond", "SELECT * FROM seq");
        rows = answer["results"][0]["series"][0]["values"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        rows.len() >= n as usize
    });
    assert!(
        complete,
        "{} of {n} rows; agent log:\n{}\ninfluxd log:\n{}",
        rows.len(),
        agent.stderr(),
        influx.log()
    );
    let answer = influx.query("pythond", "SELECT * FROM seq");
    let series = &answer["results"][0]["series"][0];
    let columns: Vec<&str> = series["columns"]
        .as_array()
        .expect("columns")
        .iter()
        .map(|c| c.as_str().unwrap_or_default())
        .collect();
    assert_eq!(columns, ["time", "host", "part", "region", "v", "x"]);
    let host = hostname();
    let got: Vec<(i64, String, String, String, i64, f64)> = series["values"]
        .as_array()
        .expect("values")
        .iter()
        .map(|row| {
            (
                row[0].as_i64().expect("time"),
                row[1].as_str().unwrap_or_default().to_string(),
                row[2].as_str().unwrap_or_default().to_string(),
                row[3].as_str().unwrap_or_default().to_string(),
                row[4].as_i64().expect("integer v"),
                row[5].as_f64().expect("float x"),
            )
        })
        .collect();
    let expected: Vec<(i64, String, String, String, i64, f64)> = (0..n as i64)
        .map(|seq| {
            (
                (setup.start_ms + seq) * 1_000_000,
                host.clone(),
                "0".to_string(),
                "eu".to_string(),
                seq,
                seq as f64 * 0.5,
            )
        })
        .collect();
    assert_eq!(got, expected);
}

#[test]
fn network_sink_settings_are_checked() {
    let home = Home::new();
    let cases = [
        (
            "[[sinks]]\ntype = \"influxdb\"\nurl = \"http://127.0.0.1:8428\"\n",
            "pythond.toml:1: invalid value for key `db`",
        ),
        (
            "[[sinks]]\ntype = \"influxdb\"\nurl = \"http://127.0.0.1:8428\"\ndb = \"x\"\nbucket = \"y\"\n",
            "pythond.toml:4: invalid value for key `db`",
        ),
        (
            "[[sinks]]\ntype = \"datakit\"\nurl = \"http://127.0.0.1:9529\"\ndb = \"x\"\n",
            "pythond.toml:4: unknown key `db` in [[sinks]] with type = \"datakit\"",
        ),
        (
            "[[sinks]]\ntype = \"datakit\"\nurl = \"127.0.0.1:9529\"\n",
            "pythond.toml:3: invalid value for key `url`",
        ),
        (
            "[[sinks]]\ntype = \"datakit\"\nurl = \"http://a\"\nname = \"x\"\n\n[[sinks]]\ntype = \"datakit\"\nurl = \"http://b\"\nname = \"x\"\n",
            "sink name \"x\" is already used by the sink at line 1",
        ),
        (
            "[[sinks]]\ntype = \"datakit\"\nurl = \"http://a\"\nfsync = \"sometimes\"\n",
            "pythond.toml:4: invalid value for key `fsync`",
        ),
        (
            "[[sinks]]\ntype = \"datakit\"\nurl = \"http://a\"\nname = \"../x\"\n",
            "pythond.toml:4: invalid value for key `name`",
        ),
        (
            "[[sinks]]\ntype = \"datakit\"\nurl = \"https://a\"\nca_file = \"no-such-ca.pem\"\n",
            "pythond.toml:4: invalid value for key `ca_file`",
        ),
        (
            "[[sinks]]\ntype = \"datakit\"\nurl = \"https://a\"\nca_file = \"pythond.toml\"\n",
            "holds no PEM certificate",
        ),
    ];
    for (config, error) in cases {
        home.write("pythond.toml", config);
        let (code, stdout, stderr) = home.config_check();
        assert_ne!(code, 0, "{config} accepted: {stdout}");
        assert!(
            stderr.contains(error) || stdout.contains(error),
            "{config}: expected {error:?}; got:\n{stdout}{stderr}"
        );
    }
    home.write(
        "pythond.toml",
        "[[sinks]]\ntype = \"influxdb\"\nurl = \"http://127.0.0.1:8428\"\nbucket = \"b\"\norg = \"o\"\ntoken = \"t\"\nmax_bytes = \"1GiB\"\nbatch_points = 1000\nflush_interval = \"2s\"\ntimeout = \"5s\"\nretry_max_interval = \"10s\"\nconcurrency = 4\nfsync = \"100ms\"\ncategories = [\"metric\"]\n",
    );
    let (code, stdout, stderr) = home.config_check();
    assert_eq!(code, 0, "{stdout}{stderr}");
}

#[test]
fn an_https_backend_is_reached_with_its_ca_file_and_refused_without_it() {
    let scratch = tempfile::tempdir().expect("tempdir");
    let cert = common::backends::self_signed_cert(scratch.path());
    let trusted = Recorder::start_tls(scratch.path(), "trusted", 200, &cert);
    let untrusted = Recorder::start_tls(scratch.path(), "untrusted", 200, &cert);
    let home = Home::new();
    home.write(
        "pythond.toml",
        &format!(
            "[agent]\nhostname = \"web-1\"\n\n\
             [[sinks]]\ntype = \"datakit\"\nname = \"trusted\"\nurl = \"{}?token=tkn_tls\"\nca_file = \"{}\"\nflush_interval = \"100ms\"\n\n\
             [[sinks]]\ntype = \"datakit\"\nname = \"untrusted\"\nurl = \"{}?token=tkn_secret_42\"\nflush_interval = \"100ms\"\nretry_max_interval = \"1s\"\n",
            trusted.https_url(),
            cert.cert.display(),
            untrusted.https_url(),
        ),
    );
    home.write("python.d/mixed/mixed.py", CATEGORIES);
    home.input("mixed", &["mixed"], "");
    let agent = home.start();

    // With the CA file, the points arrive over TLS exactly as over plain HTTP.
    let metric = "/v1/write/metric?token=tkn_tls&precision=n";
    let arrived = wait_until(DEADLINE, || {
        trusted.requests().iter().any(|r| r["path"] == metric)
    });
    assert!(arrived, "nothing over https; log:\n{}", agent.stderr());
    let body: String = trusted
        .requests()
        .iter()
        .filter(|r| r["path"] == metric)
        .map(|r| r["body"].as_str().unwrap_or_default().to_string())
        .collect();
    assert_eq!(
        body,
        "cpu,core=0,host=web-1 idle=97.5,n=3i 1700000000000000000\n"
    );

    // Without it the certificate is refused: reported with the reason, retried, never
    // dead-lettered, and the URL's token never shown.
    let line = expect_log_line(&agent, &["sink=untrusted", "retry"]);
    assert!(line.contains("certificate verify failed"), "{line}");
    assert!(
        !agent.stderr().contains("tkn_secret_42"),
        "the sink's token was logged:\n{}",
        agent.stderr()
    );
    assert!(
        untrusted.requests().is_empty(),
        "a request got through an untrusted certificate"
    );
    assert!(
        !home
            .path()
            .join("data/deadletter/untrusted.ndjson")
            .exists(),
        "a TLS failure was dead-lettered instead of retried: {line}"
    );
}
