//! The `prometheus_remote_write` sink against real backends on loopback:
//! VictoriaMetrics (single node), vmagent forwarding to it, and vmauth checking a
//! bearer token in front of it. Series are compared exactly with what
//! VictoriaMetrics makes of the same points written as line protocol; outages, an
//! agent SIGKILL and a refusing backend (401, into the dead-letter file) are
//! exercised with the numbered-report collector.

mod common;

use std::collections::BTreeSet;

use base64::Engine;
use common::backends::{Sample, VictoriaMetrics, VmTool};
use common::http::{sink_metric, sink_status};
use common::seq::{labels, seq_values, Setup, IN_FLIGHT};
use common::{hostname, wait_until, DEADLINE};
use prost::Message;
use pythond::sink::prometheus_remote_write::proto::WriteRequest;

fn prw_sink(url: &str, extra: &str) -> String {
    format!(
        "[[sinks]]\ntype = \"prometheus_remote_write\"\nurl = \"{url}\"\nflush_interval = \"100ms\"\nretry_max_interval = \"1s\"\n{extra}\n"
    )
}

/// Reports one point with fields of every type, once.
const KINDS: &str = r#"
import time
from datakit_framework import DataKitFramework

class Kinds(DataKitFramework):
    name = "kinds"
    interval = 3600

    def run(self):
        self.report({"M": [{"measurement": "kinds", "tags": {"unit": "u1"},
                            "fields": {"yes": True, "no": False, "text": "hello", "n": 5, "f": -0.25},
                            "time": int(time.time() * 1000)}],
                     "L": [{"measurement": "kinds_log", "tags": {}, "fields": {"message": "hi"},
                            "time": int(time.time() * 1000)}],
                     "precision": "ms"})
"#;

fn add_kinds(setup: &Setup) {
    setup.home.write("python.d/kinds/kinds.py", KINDS);
    setup.home.write(
        "conf.d/kinds.conf",
        &format!(
            "[[inputs.pythond]]\nname = \"kinds\"\ncmd = \"python3\"\ndirs = [\"kinds\"]\nenvs = [\"PYTHOND_TEST_MARKER={}\"]\n",
            setup.home.marker
        ),
    );
}

/// The samples VictoriaMetrics should hold for seq numbers 0..n with two parts.
fn expected_seq(setup: &Setup, n: i64) -> Vec<Sample> {
    let host = hostname();
    let mut expected = Vec::new();
    for seq in 0..n {
        for part in ["0", "1"] {
            for (field, value) in [("v", seq as f64), ("x", seq as f64 * 0.5)] {
                let name = format!("seq_{field}");
                expected.push(Sample {
                    labels: labels(&[
                        ("__name__", name.as_str()),
                        ("host", host.as_str()),
                        ("part", part),
                        ("region", "eu"),
                    ]),
                    value,
                    timestamp_ms: setup.start_ms + seq,
                });
            }
        }
    }
    sort(&mut expected);
    expected
}

fn sort(samples: &mut [Sample]) {
    samples.sort_by(|a, b| {
        (&a.labels, a.timestamp_ms)
            .cmp(&(&b.labels, b.timestamp_ms))
            .then(a.value.total_cmp(&b.value))
    });
}

fn assert_same(got: &[Sample], expected: &[Sample]) {
    assert_eq!(got.len(), expected.len(), "sample count");
    if let Some(i) = (0..got.len()).find(|i| got[*i] != expected[*i]) {
        panic!(
            "sample {i} differs: got {:?}, expected {:?}",
            got[i], expected[i]
        );
    }
}

#[test]
fn remote_write_series_are_the_series_victoria_metrics_makes_of_line_protocol() {
    let scratch = tempfile::tempdir().expect("tempdir");
    let lp_dir = scratch.path().join("lp");
    let prw_dir = scratch.path().join("prw");
    std::fs::create_dir_all(&lp_dir).expect("dir");
    std::fs::create_dir_all(&prw_dir).expect("dir");
    let vm_lp = VictoriaMetrics::start(&lp_dir);
    let vm_prw = VictoriaMetrics::start(&prw_dir);
    let n = 100;
    // The same points both ways: line protocol (v2 API, which adds no `db` label)
    // into one VictoriaMetrics, remote write into another.
    let sinks = format!(
        "{}[[sinks]]\ntype = \"influxdb\"\nurl = \"{}\"\nbucket = \"b\"\nflush_interval = \"100ms\"\ncategories = [\"metric\"]\n",
        prw_sink(&format!("{}/api/v1/write", vm_prw.url()), "name = \"prw\""),
        vm_lp.url()
    );
    let setup = Setup::new(&sinks, n, &["SEQ_PAUSE=0.002", "SEQ_POINTS=2"]);
    add_kinds(&setup);
    let agent = setup.home.start();
    let selector = r#"{__name__=~"seq_.*|kinds_.*"}"#;
    // 100 numbers x 2 parts x 2 fields, plus kinds' four numeric fields (the string
    // field never reaches a sink: metric fields must be numbers or booleans).
    let complete = wait_until(DEADLINE, || {
        vm_prw.export(selector).len() >= 400 + 4 && vm_lp.export(selector).len() >= 400 + 4
    });
    assert!(
        complete,
        "{} and {} samples arrived; log:\n{}",
        vm_prw.export(selector).len(),
        vm_lp.export(selector).len(),
        agent.stderr()
    );
    let prw = vm_prw.export(selector);
    let lp = vm_lp.export(selector);
    // Same series, values and timestamps, whichever sink wrote them.
    assert_same(&prw, &lp);

    let (kinds, seqs): (Vec<Sample>, Vec<Sample>) = prw
        .into_iter()
        .partition(|s| s.label("__name__").is_some_and(|n| n.starts_with("kinds_")));
    assert_same(&seqs, &expected_seq(&setup, n as i64));
    let host = hostname();
    let stamp = kinds[0].timestamp_ms;
    let mut expected_kinds: Vec<Sample> = [("f", -0.25), ("n", 5.0), ("no", 0.0), ("yes", 1.0)]
        .into_iter()
        .map(|(field, value)| Sample {
            labels: labels(&[
                ("__name__", &format!("kinds_{field}")),
                ("host", &host),
                ("region", "eu"),
                ("unit", "u1"),
            ]),
            value,
            timestamp_ms: stamp,
        })
        .collect();
    sort(&mut expected_kinds);
    assert_same(&kinds, &expected_kinds);

    // The logging point has no place in remote write: not sent, and counted.
    let status = sink_status(&agent, "prw");
    assert_eq!(status["type"], "prometheus_remote_write");
    assert_eq!(status["skipped_points"], 1, "{status}");
    assert_eq!(status["sent_points"], 201, "{status}");
    assert_eq!(status["buffered_points"], 201, "{status}");
    // /metrics carries the same counts as the status.
    let sink = r#"{sink="prw",type="prometheus_remote_write"}"#;
    assert_eq!(
        sink_metric(&agent, &format!("pythond_sink_skipped_points_total{sink}")),
        Some(1.0)
    );
    assert_eq!(
        sink_metric(&agent, &format!("pythond_sink_skipped_fields_total{sink}")),
        status["skipped_fields"].as_f64()
    );
}

#[test]
fn remote_write_through_vmagent_arrives_exactly() {
    let scratch = tempfile::tempdir().expect("tempdir");
    let vm = VictoriaMetrics::start(scratch.path());
    let vmagent = VmTool::vmagent(scratch.path(), &format!("{}/api/v1/write", vm.url()));
    let n = 100;
    let setup = Setup::new(
        &prw_sink(&format!("{}/api/v1/write", vmagent.url()), ""),
        n,
        &["SEQ_PAUSE=0.002", "SEQ_POINTS=2"],
    );
    let agent = setup.home.start();
    let selector = r#"{__name__=~"seq_.*"}"#;
    let mut samples = Vec::new();
    let complete = wait_until(DEADLINE, || {
        samples = vm.export(selector);
        samples.len() >= 400
    });
    assert!(
        complete,
        "{} of 400 samples arrived; agent log:\n{}\nvmagent log:\n{}",
        samples.len(),
        agent.stderr(),
        vmagent.log_text()
    );
    assert_same(&vm.export(selector), &expected_seq(&setup, n as i64));
}

#[test]
fn remote_write_points_queued_during_an_outage_all_arrive_once() {
    let scratch = tempfile::tempdir().expect("tempdir");
    let mut vm = VictoriaMetrics::start(scratch.path());
    let n = 300;
    let setup = Setup::new(
        &prw_sink(&format!("{}/api/v1/write", vm.url()), ""),
        n,
        &["SEQ_PAUSE=0.01"],
    );
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
    setup.wait_seq(during + 80);
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
    assert_eq!(seqs, expected);
}

#[test]
fn a_sigkilled_agent_loses_none_of_the_remote_write_points_it_buffered() {
    let scratch = tempfile::tempdir().expect("tempdir");
    let mut vm = VictoriaMetrics::start(scratch.path());
    let n = 400;
    let setup = Setup::new(
        &prw_sink(&format!("{}/api/v1/write", vm.url()), ""),
        n,
        &["SEQ_PAUSE=0.01"],
    );
    let mut agent = setup.home.start();
    setup.wait_seq(50);
    vm.stop();
    agent.expect_log("backend unavailable");
    setup.wait_seq(setup.seq() + 120);
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
    // Only reports in flight at the instant of the kill may be missing.
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
fn bearer_tokens_come_from_the_environment_and_a_refusal_goes_to_the_dead_letter_file() {
    let scratch = tempfile::tempdir().expect("tempdir");
    let vm = VictoriaMetrics::start(scratch.path());
    let vmauth = VmTool::vmauth(
        scratch.path(),
        &format!(
            "users:\n- bearer_token: \"s3cret\"\n  url_prefix: \"{}/\"\n",
            vm.url()
        ),
    );
    let n = 40;
    let url = format!("{}/api/v1/write", vmauth.url());
    let sinks = format!(
        "{}{}",
        prw_sink(&url, "name = \"good\"\nbearer_token_env = \"PRW_GOOD_TOKEN\"\nheaders = { \"X-Scope-OrgID\" = \"t1\" }"),
        prw_sink(&url, "name = \"bad\"\nbearer_token_env = \"PRW_BAD_TOKEN\"")
    );
    let setup = Setup::new(&sinks, n, &["SEQ_PAUSE=0.01"]);
    let mut command = common::pythond();
    command
        .arg("run")
        .arg("--config")
        .arg(setup.home.path().join("pythond.toml"))
        .env("PRW_GOOD_TOKEN", "s3cret")
        .env("PRW_BAD_TOKEN", "wrong")
        .current_dir(setup.home.path());
    let agent = common::Agent::spawn(
        command,
        setup.home.path().join("points.ndjson"),
        &setup.home.marker,
    );
    let expected: Vec<i64> = (0..n as i64).collect();
    let mut seqs = Vec::new();
    let arrived = wait_until(DEADLINE, || {
        seqs = seq_values(&vm.export("seq_v"));
        seqs.len() >= expected.len()
    });
    assert!(
        arrived,
        "{} of {n} arrived; log:\n{}",
        seqs.len(),
        agent.stderr()
    );
    assert_eq!(seqs, expected, "the good token's points, once each");

    // vmauth answers 400 to the wrong token: not worth retrying, so the requests
    // are in the dead-letter file, their protobuf bodies intact, the token not
    // repeated in the backend's message.
    let deadletter = setup.home.path().join("data/deadletter/bad.ndjson");
    let mut dead = BTreeSet::new();
    let all = wait_until(DEADLINE, || {
        dead = dead_seqs(&deadletter);
        dead.len() == n as usize
    });
    assert!(all, "dead-lettered {dead:?}; log:\n{}", agent.stderr());
    for entry in common::read_points(&deadletter) {
        assert_eq!(entry["status"], 400, "{entry}");
        assert_eq!(entry["sink"], "bad");
        let message = entry["message"].as_str().unwrap_or_default();
        assert!(message.contains("auth token"), "{entry}");
        assert!(!message.contains("wrong"), "the token leaked: {entry}");
    }
    let bad = sink_status(&agent, "bad");
    assert_eq!(bad["dead_lettered_points"], n, "{bad}");
    assert_eq!(bad["sent_points"], 0, "{bad}");
}

/// The `seq_v` values in the remote write bodies of a dead-letter file.
fn dead_seqs(path: &std::path::Path) -> BTreeSet<i64> {
    let mut seqs = BTreeSet::new();
    for entry in common::read_points(path) {
        let body = base64::engine::general_purpose::STANDARD
            .decode(entry["body_base64"].as_str().unwrap_or_default())
            .expect("base64 body");
        let request = WriteRequest::decode(body.as_slice()).expect("a WriteRequest");
        for series in request.timeseries {
            if series
                .labels
                .iter()
                .any(|l| l.name == "__name__" && l.value == "seq_v")
            {
                seqs.extend(series.samples.iter().map(|s| s.value as i64));
            }
        }
    }
    seqs
}

/// The remote write requests the release before this one queued: records of
/// uncompressed `WriteRequest`s (body format 2), one series `upgrade_v` per value.
fn queue_uncompressed_records(dir: &std::path::Path, start_ms: i64, values: std::ops::Range<i64>) {
    use pythond::sink::body_format::BodyFormat;
    use pythond::sink::buffer::{BufferLimits, DiskBuffer, Record};
    use pythond::sink::prometheus_remote_write::proto::{Label, Sample as PromSample, TimeSeries};
    let stats = std::sync::Arc::new(pythond::sink::SinkStats::new(
        "prw",
        "prometheus_remote_write",
    ));
    let limits = BufferLimits {
        max_bytes: 64 << 20,
        sync_every: None,
    };
    let buffer =
        DiskBuffer::open(dir, "prw", BodyFormat::RemoteWrite, limits, stats).expect("buffer");
    let series = |v: i64| TimeSeries {
        labels: vec![
            Label {
                name: "__name__".into(),
                value: "upgrade_v".into(),
            },
            Label {
                name: "n".into(),
                value: v.to_string(),
            },
        ],
        samples: vec![PromSample {
            value: v as f64,
            timestamp: start_ms + v,
        }],
    };
    let values: Vec<i64> = values.collect();
    let records: Vec<Record> = values
        .chunks(70)
        .map(|chunk| Record {
            category: pythond::point::Category::Metric,
            points: chunk.len() as u32,
            enqueued_ms: start_ms as u64,
            body: WriteRequest {
                timeseries: chunk.iter().copied().map(series).collect(),
            }
            .encode_to_vec(),
        })
        .collect();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    runtime
        .block_on(buffer.append(records))
        .expect("queued before the upgrade");
    buffer.close();
}

/// Records queued uncompressed by the release before (which stored remote write
/// uncompressed) are delivered exactly once by this one, which stores them
/// compressed, beside the points it buffers itself (docs/BUFFER.md, "Frame format").
#[test]
fn remote_write_records_queued_before_the_upgrade_are_delivered_exactly() {
    let scratch = tempfile::tempdir().expect("tempdir");
    let vm = VictoriaMetrics::start(scratch.path());
    let n = 30;
    let setup = Setup::new(
        &prw_sink(&format!("{}/api/v1/write", vm.url()), "name = \"prw\""),
        n,
        &["SEQ_PAUSE=0.01"],
    );
    let old: i64 = 500;
    queue_uncompressed_records(
        &setup.home.path().join("data/buffers/prw"),
        setup.start_ms,
        0..old,
    );
    let agent = setup.home.start();
    let mut upgraded = Vec::new();
    let mut seqs = Vec::new();
    let complete = wait_until(DEADLINE, || {
        upgraded = vm.export("upgrade_v");
        seqs = seq_values(&vm.export("seq_v"));
        upgraded.len() >= old as usize && seqs.len() >= n as usize
    });
    assert!(
        complete,
        "{} of {} old and {} of {n} new points arrived; log:\n{}",
        upgraded.len(),
        old,
        seqs.len(),
        agent.stderr()
    );
    let mut values: Vec<i64> = upgraded.iter().map(|s| s.value as i64).collect();
    values.sort_unstable();
    assert_eq!(values, (0..old).collect::<Vec<_>>(), "each old point once");
    for sample in &upgraded {
        let v = sample.value as i64;
        assert_eq!(sample.timestamp_ms, setup.start_ms + v);
        assert_eq!(sample.label("n"), Some(v.to_string().as_str()));
    }
    assert_eq!(seqs, (0..n as i64).collect::<Vec<_>>());
    let status = sink_status(&agent, "prw");
    assert_eq!(status["foreign_points"], 0, "{status}");
    assert_eq!(status["corrupt_points"], 0, "{status}");
}
