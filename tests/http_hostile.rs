//! Hostile clients against a running agent's HTTP API: slow uploads, bodies whose
//! points would blow up memory, JSON the decoder cannot take, oversized lasterror
//! posts. Each attack must get a clear status, lose nothing silently and leave the
//! agent serving.

mod common;

use std::io::Write;
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::http::{api_base, get, post};
use common::Home;

fn home_with(http: &str) -> Home {
    let home = Home::new();
    home.write(
        "pythond.toml",
        &format!("[http]\n{http}\n\n[[sinks]]\ntype = \"file\"\npath = \"points.ndjson\"\n"),
    );
    home
}

/// The value of one sample in `/metrics` (0 when absent).
fn metric(base: &str, sample: &str) -> f64 {
    let text = get(&format!("{base}/metrics"), &[]).body;
    text.lines()
        .find_map(|l| l.strip_prefix(sample)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0.0)
}

/// A client uploading a body a few bytes at a time until told to stop (or cut off).
fn trickle(addr: &str, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<()> {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream
        .write_all(b"POST /v1/write/metric HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\n")
        .expect("send headers");
    std::thread::spawn(move || {
        while !stop.load(Ordering::Relaxed) {
            if stream.write_all(b"slow v=1i\n").is_err() {
                break;
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    })
}

const OVER_HTTP: &str = r#"
from datakit_framework import DataKitFramework

class OverHttp(DataKitFramework):
    name = "over_http"
    interval = 0.5
    def run(self):
        self.report({"M": [{"measurement": "via_http_metric", "fields": {"v": 2}}], "input": "over"})
"#;

#[test]
fn slow_uploads_are_cut_and_never_starve_probes_status_or_the_agents_workers() {
    // Two write slots; bodies must average 100 bytes/s after the first 5 s. The
    // tricklers send 40 bytes/s, so they hold both slots for about 8 s, then are cut.
    let home = home_with(
        "listen = \"127.0.0.1:0\"\nrequest_timeout = \"300s\"\nmax_concurrent_requests = 2\nmin_body_rate = 100",
    );
    home.write("python.d/over/over.py", OVER_HTTP);
    home.input("over", &["over"], "transport = \"http\"");
    let agent = home.start();
    let base = api_base(&agent);
    let addr = base.trim_start_matches("http://").to_string();
    agent.expect_points("the worker posts over HTTP", |points| {
        points.iter().any(|p| p["measurement"] == "via_http_metric")
    });

    let stop = Arc::new(AtomicBool::new(false));
    let tricklers: Vec<_> = (0..2).map(|_| trickle(&addr, stop.clone())).collect();
    let full = "pythond_http_requests_in_flight{pool=\"write\"}";
    assert!(
        common::wait_until(common::DEADLINE, || metric(&base, full) == 2.0),
        "the tricklers hold both write slots"
    );
    // While every write slot is held: probes, status and the agent's own worker are
    // served (the worker's points keep arriving), anonymous writers get 503.
    let before = agent.points_of("via_http_metric").len();
    assert_eq!(get(&format!("{base}/health"), &[]).status, 200);
    assert_eq!(get(&format!("{base}/v1/ping"), &[]).status, 200);
    assert_eq!(get(&format!("{base}/v1/status"), &[]).status, 200);
    let refused = post(&format!("{base}/v1/write/metric"), &[], b"anon v=1i\n");
    assert_eq!(refused.status, 503, "{refused:?}");
    assert!(
        common::wait_until(common::DEADLINE, || {
            agent.points_of("via_http_metric").len() > before
        }),
        "the worker's reports got through while anonymous writers held every slot"
    );

    // The tricklers are cut by the rate rule (request_timeout is 300 s), their slots
    // come back, and writing works again.
    let too_slow = "pythond_http_requests_total{route=\"/v1/write/{category}\",status=\"408\"}";
    assert!(
        common::wait_until(common::DEADLINE, || metric(&base, too_slow) >= 2.0),
        "both slow uploads answered 408"
    );
    assert!(common::wait_until(common::DEADLINE, || metric(&base, full) == 0.0));
    stop.store(true, Ordering::Relaxed);
    for trickler in tricklers {
        trickler.join().expect("trickler thread");
    }
    let answer = post(&format!("{base}/v1/write/metric"), &[], b"after v=1i\n");
    assert_eq!(answer.status, 200, "{answer:?}");
}

/// `n` lines of `m v=1`.
fn tiny_lines(n: usize) -> Vec<u8> {
    b"m v=1\n".repeat(n)
}

#[test]
fn json_points_the_decoder_cannot_hold_are_rejected_and_counted_never_dropped() {
    let home = Home::new();
    let agent = home.start();
    let base = api_base(&agent);
    let deep = format!("{}1{}", "[".repeat(100_000), "]".repeat(100_000));
    let huge = "9".repeat(5000);
    let bad_values = [r#""\ud800""#.to_string(), deep, huge];
    for (i, bad) in bad_values.iter().enumerate() {
        let body = format!(
            r#"[{{"measurement": "before_{i}", "fields": {{"v": 1}}}},
                {{"measurement": "bad_{i}", "fields": {{"v": {bad}}}}},
                {{"measurement": "after_{i}", "fields": {{"v": 1}}}}]"#
        );
        let answer = post(
            &format!("{base}/v1/write/metric"),
            &[("Content-Type", "application/json")],
            body.as_bytes(),
        );
        assert_eq!(answer.status, 400, "{answer:?}");
        let json = answer.json();
        assert_eq!(json["error_code"], "datakit.invalidPoint", "{json}");
        let message = json["message"].as_str().unwrap_or_default();
        assert!(
            message.contains("1 of 3") && message.contains("point 2"),
            "{message}"
        );
        // The neighbours of the bad point went through, on both sides.
        agent.expect_points("the valid neighbours", |points| {
            points
                .iter()
                .any(|p| p["measurement"] == format!("after_{i}").as_str())
                && points
                    .iter()
                    .any(|p| p["measurement"] == format!("before_{i}").as_str())
        });
    }
    let rejected = "pythond_points_rejected_total{category=\"metric\",reason=\"undecodable_json\"}";
    assert_eq!(metric(&base, rejected), 3.0);
    assert_eq!(
        metric(&base, "pythond_points_accepted_total{category=\"metric\"}"),
        6.0
    );
}

#[test]
fn a_body_over_the_point_cap_is_refused_before_any_point_is_taken() {
    let home = home_with("listen = \"127.0.0.1:0\"\nmax_points_per_request = 100");
    let agent = home.start();
    let base = api_base(&agent);
    let answer = post(&format!("{base}/v1/write/metric"), &[], &tiny_lines(101));
    assert_eq!(answer.status, 413, "{answer:?}");
    assert!(answer.body.contains("max_points_per_request"), "{answer:?}");
    let points: Vec<String> = (0..101)
        .map(|i| format!(r#"{{"measurement": "j{i}", "fields": {{"v": 1}}}}"#))
        .collect();
    let answer = post(
        &format!("{base}/v1/write/metric"),
        &[("Content-Type", "application/json")],
        format!("[{}]", points.join(",")).as_bytes(),
    );
    assert_eq!(answer.status, 413, "{answer:?}");
    // At the cap is fine.
    let answer = post(&format!("{base}/v1/write/metric"), &[], &tiny_lines(100));
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(answer.json()["accepted"], 100);
    assert_eq!(
        metric(&base, "pythond_points_accepted_total{category=\"metric\"}"),
        100.0,
        "nothing of the refused bodies was taken"
    );
}

#[test]
fn a_gzip_body_inflating_to_a_million_points_is_decoded_with_memory_bounded() {
    // Metric points are accepted and counted but not written anywhere: this measures
    // the request's own memory, not a sink's.
    let home = Home::new();
    home.write(
        "pythond.toml",
        "[http]\nlisten = \"127.0.0.1:0\"\nrequest_timeout = \"300s\"\nmax_points_per_request = 2000000\n\n[[sinks]]\ntype = \"file\"\npath = \"points.ndjson\"\ncategories = [\"logging\"]\n",
    );
    let agent = home.start();
    let base = api_base(&agent);
    // 8 MiB of `m v=1` lines: 1,398,101 points in about 16 KiB of gzip.
    let lines = (8 << 20) / 6;
    let body = common::http::gzip(&tiny_lines(lines));
    assert!(body.len() < 64 << 10, "{} bytes", body.len());
    let answer = post(
        &format!("{base}/v1/write/metric"),
        &[("Content-Encoding", "gzip")],
        &body,
    );
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(answer.json()["accepted"], lines as u64);
    // docs/BENCHMARKS.md: the peak is the inflated body plus one chunk of points
    // (about 40 MiB in all); 1.4 KB per point (2 GB) before points were streamed.
    let peak = common::http::peak_rss_bytes(agent.pid());
    assert!(
        peak < 150 << 20,
        "the agent's peak memory stayed bounded: {} MiB",
        peak >> 20
    );
    assert_eq!(get(&format!("{base}/health"), &[]).status, 200);
}

#[test]
fn decoding_stops_at_request_timeout_and_says_what_was_taken() {
    // 5.6 million points take far longer than 2 s to decode; the request must stop
    // at its deadline, not answer 200 long after it.
    let home = Home::new();
    home.write(
        "pythond.toml",
        "[http]\nlisten = \"127.0.0.1:0\"\nrequest_timeout = \"2s\"\nmax_points_per_request = 10000000\n\n[[sinks]]\ntype = \"file\"\npath = \"points.ndjson\"\ncategories = [\"logging\"]\n",
    );
    let agent = home.start();
    let base = api_base(&agent);
    let lines = (32 << 20) / 6 - 1;
    let answer = post(&format!("{base}/v1/write/metric"), &[], &tiny_lines(lines));
    assert_eq!(answer.status, 408, "{answer:?}");
    let message = answer.json()["message"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    // Stopped while counting the points (nothing taken) or while decoding them (the
    // answer says how many were accepted): either way what the answer says is what
    // was counted, and nothing more is taken after the answer.
    let accepted: f64 = if message.contains("nothing was written") {
        0.0
    } else {
        assert!(message.contains("decoding stopped at line"), "{message}");
        message
            .split(" accepted")
            .next()
            .and_then(|head| head.rsplit('(').next())
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or_else(|| panic!("accepted count in {message}"))
    };
    assert!(accepted < lines as f64);
    let counted = "pythond_points_accepted_total{category=\"metric\"}";
    assert_eq!(metric(&base, counted), accepted, "{message}");
    assert_eq!(get(&format!("{base}/health"), &[]).status, 200);
}

#[test]
fn lasterror_is_bounded_throttled_and_cannot_forge_log_lines() {
    let home = Home::new();
    let agent = home.start();
    let base = api_base(&agent);
    let url = format!("{base}/v1/lasterror");
    let json = [("Content-Type", "application/json")];

    // A forged log line inside the content stays inside the one logged line.
    let forged = "oops\n2026-12-01T07:16:00Z ERROR pythond::agent: FORGED";
    let body = serde_json::json!({"input": "forger", "err_content": forged}).to_string();
    assert_eq!(post(&url, &json, body.as_bytes()).status, 200);
    agent.expect_log("FORGED");
    for line in agent.log_lines(&["FORGED"]) {
        assert!(
            line.contains("last error reported: oops"),
            "forged line: {line}"
        );
    }

    // An oversized post is refused; a large one is kept cut.
    let huge = serde_json::json!({"input": "big", "err_content": "x".repeat(1 << 20)});
    let answer = post(&url, &json, huge.to_string().as_bytes());
    assert_eq!(answer.status, 413, "{answer:?}");
    let large = serde_json::json!({"input": "big", "err_content": "y".repeat(20_000)});
    assert_eq!(post(&url, &json, large.to_string().as_bytes()).status, 200);
    let status = get(&format!("{base}/v1/status"), &[]);
    assert!(status.body.len() < 64 << 10, "{} bytes", status.body.len());
    let kept = status.json()["lasterrors"]
        .as_array()
        .and_then(|all| all.iter().find(|e| e["input"] == "big").cloned())
        .unwrap_or_else(|| panic!("big in {}", status.body));
    let message = kept["message"].as_str().unwrap_or_default();
    assert!(
        message.len() <= 4200 && message.contains("more bytes cut"),
        "{}",
        message.len()
    );

    // A flood of reports is throttled: a few log lines, every report still answered.
    for i in 0..500 {
        let body = serde_json::json!({"input": "flood", "err_content": format!("e{i}")});
        assert_eq!(post(&url, &json, body.to_string().as_bytes()).status, 200);
    }
    let lines = agent.log_lines(&["last error reported", "flood"]).len();
    assert!(
        (1..=5).contains(&lines),
        "{lines} log lines for 500 reports"
    );
}

const REJECTS_OVER_HTTP: &str = r#"
from datakit_framework import DataKitFramework

class Rejects(DataKitFramework):
    name = "rejects"
    interval = 0.5
    def run(self):
        self.report({
            "M": [{"measurement": "good", "fields": {"v": 1}},
                  {"measurement": "bad_metric", "fields": {"v": object()}}],
            "L": [{"measurement": "bad_log", "fields": {"message": object()}}],
        })
"#;

#[test]
fn points_the_shim_cannot_send_over_http_are_counted_like_over_the_pipe() {
    let home = Home::new();
    home.write("python.d/rej/rej.py", REJECTS_OVER_HTTP);
    home.input("rej", &["rej"], "transport = \"http\"");
    let agent = home.start();
    let base = api_base(&agent);
    agent.expect_points("the good point", |points| {
        points.iter().any(|p| p["measurement"] == "good")
    });
    let metric_rejected =
        "pythond_points_rejected_total{category=\"metric\",reason=\"not_json_serializable\"}";
    let logging_rejected =
        "pythond_points_rejected_total{category=\"logging\",reason=\"not_json_serializable\"}";
    assert!(
        common::wait_until(common::DEADLINE, || {
            metric(&base, metric_rejected) >= 1.0 && metric(&base, logging_rejected) >= 1.0
        }),
        "both refused points are counted, the one of the category with no point sent too"
    );
    let status = get(&format!("{base}/v1/status"), &[]).json();
    let plugin = &status["inputs"][0]["plugins"][0];
    assert!(plugin["rejected"].as_u64().unwrap_or(0) >= 2, "{status:#}");
}
