//! The DataKit-compatible HTTP API of a running agent, driven by real HTTP clients:
//! every category in JSON and line protocol, gzip, DataKit's own client requests,
//! errors in DataKit's shape, the token, size limits (with the agent's memory
//! bounded), status, `pythond status` and `/metrics` read by Prometheus' parser.

mod common;

use std::process::Command;

use common::http::{
    api_addr, api_base, get, gzip, parsed_metrics, peak_rss_bytes, post, post_json, post_stream,
    rss_bytes, Filler,
};
use common::{hostname, run_to_end, Home};
use serde_json::json;

/// A JSON point of each category that passes DataKit's rules (keyevent needs its df_*).
fn json_point(category: &str, measurement: &str) -> serde_json::Value {
    let mut fields = json!({"value": 1, "message": "hello"});
    if category == "keyevent" {
        fields = json!({"df_status": "info", "df_event_id": "e1", "df_title": "t",
                        "df_source": "user", "value": 1});
    }
    json!({"measurement": measurement, "tags": {"t": "v"}, "fields": fields, "time": null})
}

const CATEGORIES: [&str; 6] = [
    "metric",
    "logging",
    "object",
    "custom_object",
    "keyevent",
    "rum",
];

fn home_with(http: &str) -> Home {
    let home = Home::new();
    home.write(
        "pythond.toml",
        &format!("[http]\n{http}\n\n[[sinks]]\ntype = \"file\"\npath = \"points.ndjson\"\n"),
    );
    home
}

#[test]
fn every_category_is_written_as_json_and_line_protocol() {
    let home = Home::new();
    let agent = home.start();
    let base = api_base(&agent);
    for category in CATEGORIES {
        let body = json!([json_point(category, &format!("j_{category}"))]).to_string();
        let answer = post_json(&format!("{base}/v1/write/{category}"), &body);
        assert_eq!(answer.status, 200, "JSON {category}: {answer:?}");

        let fields = if category == "keyevent" {
            "df_status=\"info\",df_event_id=\"e1\",df_title=\"t\",df_source=\"user\",value=1i"
        } else {
            "value=1i,message=\"hello\""
        };
        let line = format!("lp_{category},t=v {fields} 1700000000\n");
        let answer = post(
            &format!("{base}/v1/write/{category}?precision=s"),
            &[],
            line.as_bytes(),
        );
        assert_eq!(answer.status, 200, "LP {category}: {answer:?}");
    }
    agent.expect_points("12 points", |points| points.len() >= 12);
    let points = agent.points();
    for category in CATEGORIES {
        for measurement in [format!("j_{category}"), format!("lp_{category}")] {
            let point = common::the_point(&points, category, &measurement);
            assert_eq!(point["tags"]["t"], "v", "{point}");
            assert_eq!(
                point["tags"]["host"],
                hostname(),
                "global tags added: {point}"
            );
        }
        let lp = common::the_point(&points, category, &format!("lp_{category}"));
        assert_eq!(
            lp["time"], 1_700_000_000_000_000_000i64,
            "precision=s: {lp}"
        );
    }
    // DataKit's per-category rules apply to HTTP points too.
    let metric = common::the_point(&points, "metric", "j_metric");
    assert!(
        metric["fields"].get("message").is_none(),
        "metrics take no strings: {metric}"
    );
    let logging = common::the_point(&points, "logging", "j_logging");
    assert_eq!(logging["fields"]["status"], "info", "{logging}");
}

#[test]
fn query_parameters_and_gzip_bodies_are_honoured() {
    let home = Home::new();
    let agent = home.start();
    let base = api_base(&agent);
    let body = json!([json_point("metric", "zipped_json")]).to_string();
    let answer = post(
        &format!("{base}/v1/write/metric?input=zipper&ignore_global_tags=true"),
        &[
            ("Content-Type", "application/json"),
            ("Content-Encoding", "gzip"),
        ],
        &gzip(body.as_bytes()),
    );
    assert_eq!(answer.status, 200, "{answer:?}");
    let answer = post(
        &format!("{base}/v1/write/logging?precision=ms"),
        &[("Content-Encoding", "gzip")],
        &gzip(b"zipped_lp message=\"hi\" 1700000000123\n"),
    );
    assert_eq!(answer.status, 200, "{answer:?}");

    agent.expect_points("both gzip points", |points| points.len() >= 2);
    let points = agent.points();
    let json_point = common::the_point(&points, "metric", "zipped_json");
    assert!(
        json_point["tags"].get("host").is_none(),
        "ignore_global_tags=true: {json_point}"
    );
    let lp_point = common::the_point(&points, "logging", "zipped_lp");
    assert_eq!(lp_point["time"], 1_700_000_000_123_000_000i64);
    assert_eq!(lp_point["tags"]["host"], hostname());
}

#[test]
fn bad_requests_get_datakit_errors_naming_the_problem() {
    let home = Home::new();
    let agent = home.start();
    let base = api_base(&agent);

    let truncated = post_json(
        &format!("{base}/v1/write/metric"),
        r#"[{"measurement": "m", "fields": {"v": 1}"#,
    );
    assert_eq!(truncated.status, 400, "{truncated:?}");
    assert_eq!(truncated.json()["error_code"], "datakit.badBody");
    assert!(
        truncated.json()["message"]
            .as_str()
            .unwrap_or_default()
            .contains("not valid JSON"),
        "{truncated:?}"
    );

    let broken = post(
        &format!("{base}/v1/write/metric"),
        &[],
        b"good_lp v=1i\nbroken_lp,t=1 v=\nalso_good v=2i\n",
    );
    assert_eq!(broken.status, 400, "{broken:?}");
    let message = broken.json()["message"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert_eq!(broken.json()["error_code"], "datakit.invalidPoint");
    assert!(message.contains("line 2"), "names the line: {message}");
    assert!(message.contains("1 of 3"), "says how many: {message}");

    let bad_point = post_json(
        &format!("{base}/v1/write/metric"),
        r#"[{"measurement": "ok_json", "fields": {"v": 1}}, {"measurement": "nested", "fields": {"v": {"x": 1}}}]"#,
    );
    assert_eq!(bad_point.status, 400, "{bad_point:?}");
    let message = bad_point.json()["message"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        message.contains("point 2") && message.contains("nested"),
        "{message}"
    );

    let untyped = post(
        &format!("{base}/v1/write/metric"),
        &[],
        br#"[{"measurement": "m", "fields": {"v": 1}}]"#,
    );
    assert_eq!(untyped.status, 400, "{untyped:?}");
    assert!(
        untyped.body.contains("Content-Type: application/json"),
        "{untyped:?}"
    );

    let category = post_json(&format!("{base}/v1/write/tracing"), "[]");
    assert_eq!(category.status, 400, "{category:?}");
    assert_eq!(category.json()["error_code"], "datakit.invalidCategory");
    assert!(
        category.body.contains("custom_object"),
        "lists valid ones: {category:?}"
    );

    let precision = post(
        &format!("{base}/v1/write/metric?precision=days"),
        &[],
        b"m v=1i\n",
    );
    assert_eq!(precision.status, 400, "{precision:?}");

    let bad_gzip = post(
        &format!("{base}/v1/write/metric"),
        &[("Content-Encoding", "gzip")],
        b"this is not gzip",
    );
    assert_eq!(bad_gzip.status, 400, "{bad_gzip:?}");

    // The valid neighbours of the bad points were kept, and the agent goes on serving.
    agent.expect_points("the good neighbours", |points| {
        ["good_lp", "also_good", "ok_json"]
            .iter()
            .all(|m| points.iter().any(|p| p["measurement"] == *m))
    });
    assert!(agent.points_of("broken_lp").is_empty());
    assert_eq!(get(&format!("{base}/v1/ping"), &[]).status, 200);
    agent.expect_log_line(&["point rejected", "line 2", "\"http\""]);
}

#[test]
fn the_token_is_required_when_configured() {
    let home = home_with("listen = \"127.0.0.1:0\"\ntoken = \"s3cret-token\"");
    let agent = home.start();
    let base = api_base(&agent);
    let url = format!("{base}/v1/write/metric");

    let missing = post(&url, &[], b"no_token v=1i\n");
    assert_eq!(missing.status, 401, "{missing:?}");
    assert_eq!(missing.json()["error_code"], "datakit.authFailed");
    let wrong = post(
        &url,
        &[("Authorization", "Bearer nope")],
        b"wrong_token v=1i\n",
    );
    assert_eq!(wrong.status, 401, "{wrong:?}");
    let wrong_query = post(&format!("{url}?token=s3cret-tokeN"), &[], b"wrong_q v=1i\n");
    assert_eq!(wrong_query.status, 401, "{wrong_query:?}");
    assert_eq!(get(&format!("{base}/metrics"), &[]).status, 401);
    assert_eq!(get(&format!("{base}/v1/status"), &[]).status, 401);

    let bearer = post(
        &url,
        &[("Authorization", "Bearer s3cret-token")],
        b"bearer v=1i\n",
    );
    assert_eq!(bearer.status, 200, "{bearer:?}");
    let query = post(&format!("{url}?token=s3cret-token"), &[], b"query v=1i\n");
    assert_eq!(query.status, 200, "{query:?}");
    // Liveness probes stay open.
    assert_eq!(get(&format!("{base}/health"), &[]).status, 200);
    assert_eq!(get(&format!("{base}/v1/ping"), &[]).status, 200);

    agent.expect_points("the authorised points", |points| points.len() >= 2);
    let names: Vec<String> = agent
        .points()
        .iter()
        .map(|p| p["measurement"].as_str().unwrap_or_default().to_string())
        .collect();
    assert_eq!(names.len(), 2, "only authorised writes landed: {names:?}");
    assert!(
        !agent.stderr().contains("s3cret-token"),
        "the token is never logged:\n{}",
        agent.stderr()
    );
}

#[test]
fn a_public_address_without_a_token_is_refused() {
    let home = home_with("listen = \"0.0.0.0:0\"");
    let mut agent = home.start();
    let status = agent
        .wait_exit(common::DEADLINE)
        .expect("the agent refuses to start");
    assert!(!status.success());
    let log = agent.stderr();
    assert!(
        log.contains("not a loopback address") && log.contains("token"),
        "says why:\n{log}"
    );
}

#[test]
fn oversized_bodies_and_gzip_bombs_get_413_with_memory_bounded() {
    let home = Home::new();
    let agent = home.start();
    let base = api_base(&agent);
    let url = format!("{base}/v1/write/logging");

    // 200 MB, streamed chunked (the test never holds it).
    let huge = post_stream(&url, &[], Filler { left: 200_000_000 });
    assert_eq!(huge.status, 413, "{huge:?}");
    assert_eq!(huge.json()["error_code"], "datakit.bodyTooLarge");

    // 64 MiB of zeros gzip to ~64 KiB: small on the wire, over the 32 MiB limit inflated.
    let bomb = gzip(&vec![0u8; 64 << 20]);
    assert!(bomb.len() < 1 << 20);
    let answer = post(&url, &[("Content-Encoding", "gzip")], &bomb);
    assert_eq!(answer.status, 413, "{answer:?}");
    assert!(answer.body.contains("inflates"), "{answer:?}");

    // Many tiny bad points within the limit: decoded one at a time, counted, and the
    // answer names the first few only.
    let mut tiny = Vec::with_capacity(4 << 20);
    tiny.push(b'[');
    for i in 0..1_000_000 {
        if i > 0 {
            tiny.push(b',');
        }
        tiny.push(b'0');
    }
    tiny.push(b']');
    let answer = post(&url, &[("Content-Type", "application/json")], &tiny);
    assert_eq!(answer.status, 400, "{answer:?}");
    let message = answer.json()["message"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        message.starts_with("1000000 of 1000000") && message.contains("and 999995 more"),
        "{message}"
    );

    let peak = peak_rss_bytes(agent.pid());
    assert!(
        peak < 200 << 20,
        "the agent's peak memory stayed bounded: {} MiB",
        peak >> 20
    );
    // And it keeps serving.
    let after = post(&url, &[], b"after_limits message=\"still here\"\n");
    assert_eq!(after.status, 200, "{after:?}");
    agent.expect_points("the point after", |points| {
        points.iter().any(|p| p["measurement"] == "after_limits")
    });
    let metrics = get(&format!("{base}/metrics"), &[]).body;
    assert!(
        metrics.contains(
            "pythond_http_requests_total{route=\"/v1/write/{category}\",status=\"413\"} 2"
        ),
        "413s counted:\n{metrics}"
    );
}

/// Sends one write request on a keep-alive `stream` and reads its answer: status and
/// body (the answer's Content-Length says where it ends).
fn write_on(stream: &mut std::net::TcpStream, body: &[u8]) -> (u16, String) {
    use std::io::{BufRead, Read, Write};
    let head = format!(
        "POST /v1/write/metric?precision=ns HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).expect("send head");
    stream.write_all(body).expect("send body");
    let mut reader = std::io::BufReader::new(&mut *stream);
    let mut status_line = String::new();
    reader.read_line(&mut status_line).expect("status line");
    let status = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("status line {status_line:?}"));
    let mut length = 0;
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).expect("header line");
        if line.trim().is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            if name.eq_ignore_ascii_case("content-length") {
                length = value.trim().parse().expect("Content-Length");
            }
        }
    }
    let mut answer = vec![0u8; length];
    reader.read_exact(&mut answer).expect("answer body");
    (status, String::from_utf8_lossy(&answer).into_owned())
}

/// Bodies like a forwarding client's, by request number: 1,000 metric points each,
/// about 60 KB, every point its own (series, time).
fn forwarding_bodies() -> impl Fn(usize) -> Vec<u8> {
    let start_ns = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_nanos() as u64
        - 1_800_000_000_000;
    move |request| {
        let mut text = String::new();
        for i in 0..1000 {
            let n = request * 1000 + i;
            text.push_str(&format!(
                "stream,client=c{},host_id={} v={n}i,f={} {}\n",
                request % 4,
                n % 100,
                n as f64 * 0.5,
                start_ns + n as u64 * 1000
            ));
        }
        text.into_bytes()
    }
}

/// An agent (with `env` added to its environment) whose metric points are accepted
/// and counted but written nowhere, so that what is measured is the requests' own
/// memory, not a sink's; and a keep-alive connection to its API.
fn writing_agent(env: &[(&str, &str)]) -> (Home, common::Agent, std::net::TcpStream) {
    let home = Home::new();
    home.write(
        "pythond.toml",
        "[http]\nlisten = \"127.0.0.1:0\"\n\n[[sinks]]\ntype = \"file\"\npath = \"points.ndjson\"\ncategories = [\"logging\"]\n",
    );
    let agent = home.start_with_env(env);
    let stream = std::net::TcpStream::connect(api_addr(&agent)).expect("connect");
    stream
        .set_read_timeout(Some(common::DEADLINE))
        .expect("read timeout");
    (home, agent, stream)
}

/// Page faults the process has taken without reading from disk (`minflt`, the tenth
/// field of `/proc/<pid>/stat`).
fn minor_faults(pid: i32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("/proc stat");
    let (_, after_name) = stat.rsplit_once(')').expect("stat: (comm)");
    after_name
        .split_whitespace()
        .nth(7)
        .and_then(|v| v.parse().ok())
        .expect("minflt")
}

/// docs/HTTP.md: what a write request frees stays in the heap for the next one
/// instead of going back to the system and being faulted in again. Measured against
/// the same agent with glibc's default trim threshold (an operator's
/// `MALLOC_TRIM_THRESHOLD_` is left as it is): fewer than half its page faults per
/// request once warm.
#[test]
fn freed_request_memory_is_reused_instead_of_faulted_in_again() {
    let faults_per_request = |env: &[(&str, &str)]| {
        let (_home, agent, mut stream) = writing_agent(env);
        let body = forwarding_bodies();
        let mut before = 0;
        for request in 0..200 {
            if request == 50 {
                before = minor_faults(agent.pid());
            }
            let (status, answer) = write_on(&mut stream, &body(request));
            assert_eq!(status, 200, "request {request}: {answer}");
        }
        (minor_faults(agent.pid()) - before) as f64 / 150.0
    };
    let kept = faults_per_request(&[]);
    let glibc_default = faults_per_request(&[("MALLOC_TRIM_THRESHOLD_", "131072")]);
    assert!(
        kept * 2.0 < glibc_default,
        "page faults per request: {kept:.1} with freed memory kept, {glibc_default:.1} with glibc's default"
    );
}

#[test]
fn a_stream_of_writes_on_one_connection_keeps_memory_flat() {
    let (_home, agent, mut stream) = writing_agent(&[]);
    let body = forwarding_bodies();
    let mut warm = 0;
    for request in 0..200 {
        let (status, answer) = write_on(&mut stream, &body(request));
        assert_eq!(status, 200, "request {request}: {answer}");
        assert_eq!(
            answer, r#"{"accepted":1000,"fixed":0}"#,
            "request {request}"
        );
        if request == 49 {
            warm = rss_bytes(agent.pid());
        }
    }
    // docs/HTTP.md: what a request frees is kept for the next one, never piled up.
    let after = rss_bytes(agent.pid());
    assert!(
        after < warm + (8 << 20),
        "memory stayed flat over 150 more requests: {} MiB, then {} MiB",
        warm >> 20,
        after >> 20
    );
    // A body of 1 MiB or more is followed by giving free memory back (docs/HTTP.md).
    let large: Vec<u8> = b"m v=1\n".repeat((2 << 20) / 6);
    let (status, answer) = write_on(&mut stream, &large);
    assert_eq!(status, 200, "{answer}");
    let after_large = rss_bytes(agent.pid());
    assert!(
        after_large < warm + (16 << 20),
        "the large body's memory was given back: {} MiB before, {} MiB after",
        warm >> 20,
        after_large >> 20
    );
    assert_eq!(
        get(&format!("{}/health", api_base(&agent)), &[]).status,
        200
    );
}

#[test]
fn datakits_own_client_requests_land_in_the_sinks() {
    let home = Home::new();
    let agent = home.start();
    let addr = api_addr(&agent);
    let (host, port) = addr.rsplit_once(':').expect("host:port");
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/datakit_client/send_like_datakit.py"
    );
    let mut command = Command::new("python3");
    command.arg(script).arg(host).arg(port);
    let (code, stdout, stderr) = run_to_end(command);
    assert_eq!(code, 0, "client failed:\n{stdout}\n{stderr}");
    let answers = common::parse_points(&stdout);
    assert_eq!(answers.len(), 8, "{stdout}");
    for answer in &answers {
        assert_eq!(answer["status"], 200, "{answer}");
    }

    agent.expect_points("DataKit's seven points", |points| points.len() >= 7);
    let points = agent.points();
    let m1 = common::the_point(&points, "metric", "measurement1");
    assert_eq!(m1["fields"], json!({"count": 1}));
    let m2 = common::the_point(&points, "metric", "measurement2");
    assert_eq!(m2["fields"]["custom_field2"], 1000);
    assert!(
        m2["fields"].get("custom_field1").is_none(),
        "metric strings dropped like DataKit"
    );
    let l = common::the_point(&points, "logging", "measurement3");
    assert_eq!(l["fields"]["message"], "This is the message for testing");
    let o = common::the_point(&points, "object", "measurement4");
    assert_eq!(o["tags"]["name"], "name");
    let mut sources: Vec<String> = points
        .iter()
        .filter(|p| p["category"] == "keyevent")
        .map(|p| {
            p["fields"]["df_source"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        })
        .collect();
    sources.sort();
    assert_eq!(sources, ["monitor", "system", "user"]);

    let status = get(&format!("http://{addr}/v1/status"), &[]).json();
    assert_eq!(
        status["lasterrors"][0],
        json!({"input": "py_from_docker", "message": "db unreachable",
               "unix_ms": status["lasterrors"][0]["unix_ms"]})
    );
}

const FLAKY: &str = r#"
from datakit_framework import DataKitFramework

class Steady(DataKitFramework):
    name = "steady"
    interval = 0.2
    def run(self):
        self.report({"M": [{"measurement": "steady", "fields": {"v": 1}}]})

class Broken(DataKitFramework):
    name = "broken"
    interval = 0.2
    def run(self):
        raise RuntimeError("always fails")
"#;

fn sample<'a>(
    samples: &'a [serde_json::Value],
    name: &str,
    labels: &[(&str, &str)],
) -> Option<&'a serde_json::Value> {
    samples
        .iter()
        .find(|s| s["name"] == name && labels.iter().all(|(k, v)| s["labels"][*k] == *v))
}

#[test]
fn metrics_and_status_show_what_the_plugins_did() {
    let home = Home::new();
    home.write("python.d/flaky/flaky.py", FLAKY);
    home.input("flaky", &["flaky"], "");
    let agent = home.start();
    let base = api_base(&agent);
    let value = |samples: &[serde_json::Value], name: &str, labels: &[(&str, &str)]| {
        sample(samples, name, labels)
            .and_then(|s| s["value"].as_f64())
            .unwrap_or(-1.0)
    };
    let steady = [("input", "flaky"), ("plugin", "flaky.Steady")];
    let broken = [("input", "flaky"), ("plugin", "flaky.Broken")];
    let mut samples = Vec::new();
    assert!(
        common::wait_until(common::DEADLINE, || {
            samples = parsed_metrics(&base);
            value(&samples, "pythond_plugin_runs_total", &steady) >= 3.0
                && value(&samples, "pythond_plugin_failures_total", &broken) >= 3.0
        }),
        "runs and failures never showed: {samples:#?}"
    );
    assert_eq!(
        value(&samples, "pythond_plugin_failures_total", &steady),
        0.0
    );
    assert!(
        value(
            &samples,
            "pythond_plugin_run_duration_seconds_count",
            &steady
        ) >= 2.0
    );
    assert!(value(&samples, "pythond_worker_rss_bytes", &[("input", "flaky")]) > 1e6);
    assert_eq!(
        value(&samples, "pythond_input_up", &[("input", "flaky")]),
        1.0
    );
    assert!(
        value(
            &samples,
            "pythond_plugin_points_total",
            &[("plugin", "flaky.Steady"), ("category", "metric")]
        ) >= 2.0
    );
    assert!(
        value(
            &samples,
            "pythond_points_accepted_total",
            &[("category", "metric")]
        ) >= 2.0
    );
    assert!(
        value(
            &samples,
            "pythond_http_requests_total",
            &[("route", "/metrics"), ("status", "200")]
        ) >= 1.0
    );

    // The same story in /v1/status and the `pythond status` table.
    let status = get(&format!("{base}/v1/status"), &[]).json();
    let input = &status["inputs"][0];
    assert_eq!(input["name"], "flaky");
    let plugins = input["plugins"].as_array().expect("plugins");
    let broken_plugin = plugins
        .iter()
        .find(|p| p["id"] == "flaky.Broken")
        .expect("Broken in status");
    assert!(broken_plugin["failures"].as_u64().unwrap_or(0) >= 3);
    assert!(broken_plugin["last_error"]
        .as_str()
        .unwrap_or_default()
        .contains("always fails"));

    let mut command = common::pythond();
    command.args(["status", "--addr", &api_addr(&agent)]);
    let (code, stdout, stderr) = run_to_end(command);
    assert_eq!(code, 0, "{stderr}");
    let row = stdout
        .lines()
        .find(|l| l.contains("flaky.Broken"))
        .unwrap_or_else(|| panic!("no Broken row:\n{stdout}"));
    assert!(row.contains("never"), "Broken never succeeded: {row}");
    let row = stdout
        .lines()
        .find(|l| l.contains("flaky.Steady"))
        .unwrap_or_else(|| panic!("no Steady row:\n{stdout}"));
    assert!(row.contains("ago") && row.contains("metric="), "{row}");
    assert!(stdout.contains("running"), "{stdout}");
}

#[test]
fn status_without_an_agent_says_so() {
    // A port that was just free: nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let mut command = common::pythond();
    command.args(["status", "--addr", &format!("127.0.0.1:{port}")]);
    let (code, stdout, stderr) = run_to_end(command);
    assert_ne!(code, 0);
    assert!(stdout.is_empty(), "{stdout}");
    assert!(
        stderr.contains("no pythond agent is answering") && stderr.contains("--addr"),
        "{stderr}"
    );
}

const OVER_HTTP: &str = r#"
import os
from datakit_framework import DataKitFramework

class OverHttp(DataKitFramework):
    name = "over_http"
    interval = 0.5
    def run(self):
        seen = "present" if "PYTHOND_HTTP_TOKEN" in os.environ else "absent"
        self.feed_logging(source="via_http", message="posted", tags={"k": "v", "token_env": seen})
        self.report({"M": [{"measurement": "via_http_metric", "fields": {"v": 2}}], "input": "over"})
"#;

#[test]
fn the_http_transport_posts_reports_to_the_write_api() {
    let home = home_with("listen = \"127.0.0.1:0\"\ntoken = \"t0ken\"");
    home.write("python.d/over/over.py", OVER_HTTP);
    home.input(
        "over",
        &["over"],
        "transport = \"http\"\ntags = { team = \"web\" }",
    );
    let agent = home.start();
    let base = api_base(&agent);
    agent.expect_points("both points over HTTP", |points| {
        points.iter().any(|p| p["measurement"] == "via_http")
            && points.iter().any(|p| p["measurement"] == "via_http_metric")
    });
    // The input's own tags are added, as over the pipe.
    let logged = agent.points_of("via_http");
    assert_eq!(logged[0]["tags"]["team"], "web", "{}", logged[0]);
    assert_eq!(logged[0]["tags"]["k"], "v");
    assert_eq!(
        logged[0]["tags"]["token_env"], "absent",
        "collectors do not inherit the token"
    );
    assert_eq!(logged[0]["tags"]["host"], hostname());
    // And the points are counted for the plugin that reported them.
    let status = get(
        &format!("{base}/v1/status"),
        &[("Authorization", "Bearer t0ken")],
    )
    .json();
    let plugin = &status["inputs"][0]["plugins"][0];
    assert_eq!(plugin["id"], "over.OverHttp", "{status:#}");
    assert!(
        plugin["points"]["logging"].as_u64().unwrap_or(0) >= 1,
        "{status:#}"
    );
    assert!(
        plugin["points"]["metric"].as_u64().unwrap_or(0) >= 1,
        "{status:#}"
    );
    let metrics = get(
        &format!("{base}/metrics"),
        &[("Authorization", "Bearer t0ken")],
    )
    .body;
    assert!(
        metrics
            .contains("pythond_http_requests_total{route=\"/v1/write/{category}\",status=\"200\"}"),
        "the points came over HTTP:\n{metrics}"
    );
    assert!(
        !metrics.contains("status=\"401\""),
        "the worker sent the token:\n{metrics}"
    );
}

/// Opens a request whose body never completes (a slow or stalled client).
fn stalled_request(addr: &str) -> std::net::TcpStream {
    use std::io::Write;
    let mut stream = std::net::TcpStream::connect(addr).expect("connect");
    stream
        .write_all(
            b"POST /v1/write/metric HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\nstalled v=1",
        )
        .expect("send a partial request");
    stream
}

/// Reads whatever the server answers on `stream` until it closes (or 60 s pass).
fn read_answer(stream: &mut std::net::TcpStream) -> String {
    use std::io::Read;
    stream
        .set_read_timeout(Some(common::DEADLINE))
        .expect("read timeout");
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    while let Ok(n) = stream.read(&mut buf) {
        if n == 0 {
            break;
        }
        answer.extend_from_slice(&buf[..n]);
        if String::from_utf8_lossy(&answer).contains("\"message\"") {
            break;
        }
    }
    String::from_utf8_lossy(&answer).into_owned()
}

#[test]
fn stalled_and_excess_requests_are_refused_and_the_agent_recovers() {
    // min_body_rate = 0: only request_timeout ends the stall here (the rate cut has a
    // test of its own in tests/http_hostile.rs).
    let home = home_with(
        "listen = \"127.0.0.1:0\"\nrequest_timeout = \"30s\"\nmax_concurrent_requests = 1\nmin_body_rate = 0",
    );
    let agent = home.start();
    let addr = api_addr(&agent);
    let base = format!("http://{addr}");

    let mut stalled = stalled_request(&addr);
    // Wait until the stalled request holds the only write slot: /metrics draws from a
    // pool of its own, so watching it never competes with the request it watches.
    assert!(
        common::wait_until(common::DEADLINE, || {
            get(&format!("{base}/metrics"), &[])
                .body
                .contains("pythond_http_requests_in_flight{pool=\"write\"} 1")
        }),
        "the stalled request takes the write slot"
    );
    // Probes and status are never refused because writers hold every write slot.
    let health = get(&format!("{base}/health"), &[]);
    assert_eq!(health.status, 200, "{health:?}");
    let status = get(&format!("{base}/v1/status"), &[]);
    assert_eq!(status.status, 200, "{status:?}");
    // Another writer gets 503 at once.
    let refused = post(&format!("{base}/v1/write/metric"), &[], b"refused v=1i\n");
    assert_eq!(refused.status, 503, "{refused:?}");
    assert_eq!(refused.json()["error_code"], "datakit.tooManyRequests");

    // The stalled request itself ends with 408 once request_timeout passes.
    let answer = read_answer(&mut stalled);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("datakit.requestTimeout"), "{answer}");

    // A client that never finishes its headers is disconnected (header read timeout).
    let mut slow_headers = std::net::TcpStream::connect(&addr).expect("connect");
    {
        use std::io::Write;
        slow_headers
            .write_all(b"POST /v1/write/metric HTTP/1.1\r\nHost: x\r\n")
            .expect("send partial headers");
    }
    slow_headers
        .set_read_timeout(Some(common::DEADLINE))
        .expect("read timeout");
    let mut received = Vec::new();
    let closed = loop {
        use std::io::Read;
        let mut buf = [0u8; 1024];
        match slow_headers.read(&mut buf) {
            Ok(0) => break true,
            Ok(n) => received.extend_from_slice(&buf[..n]),
            Err(_) => break false,
        }
    };
    assert!(
        closed,
        "the agent closed a connection whose headers never completed"
    );
    assert!(
        !String::from_utf8_lossy(&received).contains("200 OK"),
        "a half-sent request is never served"
    );

    // The slot is free again.
    assert!(common::wait_until(common::DEADLINE, || {
        post(&format!("{base}/v1/write/metric"), &[], b"recovered v=1i\n").status == 200
    }));
    agent.expect_points("the point after recovery", |points| {
        points.iter().any(|p| p["measurement"] == "recovered")
    });
}

#[test]
fn logs_are_plain_when_piped_and_json_when_configured() {
    let home = Home::new();
    let agent = home.start();
    api_base(&agent);
    assert!(
        !agent.stderr().contains('\u{1b}'),
        "no colour codes in a piped log:\n{}",
        agent.stderr()
    );

    let home = home_with("listen = \"127.0.0.1:0\"\n\n[agent]\nlog_format = \"json\"");
    let agent = home.start();
    let base = api_base(&agent);
    assert_eq!(
        post(&format!("{base}/v1/write/metric"), &[], b"bad line\n").status,
        400
    );
    agent.expect_log("point rejected");
    for line in agent.stderr().lines().filter(|l| !l.trim().is_empty()) {
        let parsed: serde_json::Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("log line is not JSON ({e}): {line}"));
        assert!(parsed["level"].is_string(), "{line}");
    }
    let rejected = agent.expect_log_line(&["point rejected"]);
    let rejected: serde_json::Value = serde_json::from_str(&rejected).expect("JSON");
    assert_eq!(rejected["fields"]["input"], "http", "{rejected}");
}
