//! The `otlp` sink against a receiver that decodes each request with the official
//! `opentelemetry-proto` Python package (pip `opentelemetry-proto`): every value,
//! attribute, timestamp, severity and the resource are checked, as are the request
//! headers, retries after the receiver refuses with 503, a partial success, and what
//! is not sent.

mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use common::{hostname, wait_until, Home, DEADLINE};
use serde_json::{json, Value};

/// An OTLP/HTTP receiver: gunzips, decodes with opentelemetry-proto, appends
/// `{"path", "headers", "request"}` (the request as protobuf's JSON mapping, field
/// names as in the .proto, enums as numbers) to a file. The first `fail` requests
/// get 503 with `Retry-After: 1`; logs are answered with a partial success refusing
/// one record.
const RECEIVER: &str = r#"
import gzip, http.server, json, sys, threading
from google.protobuf.json_format import MessageToDict
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2
out, fail = sys.argv[1], int(sys.argv[2])
lock = threading.Lock()
seen = [0]
class H(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        with lock:
            seen[0] += 1
            refuse = seen[0] <= fail
        if refuse:
            self.send_response(503)
            self.send_header("Retry-After", "1")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if self.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        if self.path == "/v1/metrics":
            request, response = metrics_service_pb2.ExportMetricsServiceRequest(), metrics_service_pb2.ExportMetricsServiceResponse()
        elif self.path == "/v1/logs":
            request, response = logs_service_pb2.ExportLogsServiceRequest(), logs_service_pb2.ExportLogsServiceResponse()
        else:
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        request.ParseFromString(body)
        with lock, open(out, "a") as f:
            f.write(json.dumps({"path": self.path,
                                "headers": {k.lower(): v for k, v in self.headers.items()},
                                "request": MessageToDict(request, preserving_proto_field_name=True,
                                                         use_integers_for_enums=True)}) + "\n")
        if self.path == "/v1/logs":
            # Refuse one log record inside a successful answer (OTLP partial success).
            response.partial_success.rejected_log_records = 1
            response.partial_success.error_message = "one record too many"
        data = response.SerializeToString()
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
    def log_message(self, *args):
        pass
server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
print(server.server_address[1], flush=True)
server.serve_forever()
"#;

struct Receiver {
    port: u16,
    child: Child,
    requests: PathBuf,
}

impl Receiver {
    fn start(dir: &Path, fail: u32) -> Self {
        let script = dir.join("otlp_receiver.py");
        std::fs::write(&script, RECEIVER).expect("receiver script");
        let requests = dir.join("otlp.ndjson");
        let mut child = Command::new("python3")
            .arg(&script)
            .arg(&requests)
            .arg(fail.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .expect("start python3");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("receiver port");
        let port = line
            .trim()
            .parse()
            .expect("the receiver prints its port (pip install opentelemetry-proto)");
        Self {
            port,
            child,
            requests,
        }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn requests(&self, path: &str) -> Vec<Value> {
        common::read_points(&self.requests)
            .into_iter()
            .filter(|r| r["path"] == path)
            .collect()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One report of metrics, logs and an object, at fixed times.
const MIXED: &str = r#"
from datakit_framework import DataKitFramework

class Mixed(DataKitFramework):
    name = "mixed"
    interval = 3600

    def run(self):
        self.report({"M": [{"measurement": "cpu", "tags": {"core": "0"},
                            "fields": {"idle": 97.5, "n": -3, "up": True}, "time": 1700000000000},
                           {"measurement": "cpu", "tags": {"core": "1"},
                            "fields": {"idle": 12.25}, "time": 1700000000001}],
                     "L": [{"measurement": "nginx", "tags": {"status": "error", "path": "/x"},
                            "fields": {"message": "GET /x 500", "bytes": 512, "slow": False, "ratio": 0.5},
                            "time": 1700000000002},
                           {"measurement": "app", "tags": {},
                            "fields": {"message": "started", "status": "warning"}, "time": 1700000000003}],
                     "precision": "ms"})
        self.feed_object(cls="proc", name="nginx", tags={}, fields={"threads": 4}, time=1700000000004000000)
"#;

fn string_attributes(attributes: &Value) -> Vec<(String, Value)> {
    let mut out: Vec<(String, Value)> = attributes
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .map(|kv| {
            (
                kv["key"].as_str().unwrap_or_default().to_string(),
                kv["value"].clone(),
            )
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

fn s(value: &str) -> Value {
    json!({ "string_value": value })
}

#[test]
fn otlp_metrics_and_logs_decode_with_the_official_protos_exactly() {
    let scratch = tempfile::tempdir().expect("tempdir");
    // The first two requests are refused with 503 and Retry-After: they are retried.
    let receiver = Receiver::start(scratch.path(), 2);
    let home = Home::new();
    home.write(
        "pythond.toml",
        &format!(
            "[global_tags]\nregion = \"eu\"\n\n[[sinks]]\ntype = \"otlp\"\nname = \"otel\"\nurl = \"{}\"\nflush_interval = \"100ms\"\nretry_max_interval = \"1s\"\nbearer_token_env = \"OTLP_TOKEN\"\nheaders = {{ \"X-Tenant\" = \"t1\" }}\n",
            receiver.url()
        ),
    );
    home.write("python.d/mixed/mixed.py", MIXED);
    home.write(
        "conf.d/mixed.conf",
        &format!(
            "[[inputs.pythond]]\nname = \"mixed\"\ncmd = \"python3\"\ndirs = [\"mixed\"]\nenvs = [\"PYTHOND_TEST_MARKER={}\"]\n",
            home.marker
        ),
    );
    let mut command = common::pythond();
    command
        .arg("run")
        .arg("--config")
        .arg(home.path().join("pythond.toml"))
        .env("OTLP_TOKEN", "otlp-secret")
        .current_dir(home.path());
    let agent = common::Agent::spawn(command, home.path().join("points.ndjson"), &home.marker);
    let arrived = wait_until(DEADLINE, || {
        !receiver.requests("/v1/metrics").is_empty() && !receiver.requests("/v1/logs").is_empty()
    });
    assert!(arrived, "nothing decoded; log:\n{}", agent.stderr());

    let metrics = receiver.requests("/v1/metrics");
    let logs = receiver.requests("/v1/logs");
    assert_eq!((metrics.len(), logs.len()), (1, 1), "{metrics:?} {logs:?}");
    for request in metrics.iter().chain(&logs) {
        let headers = &request["headers"];
        assert_eq!(headers["content-type"], "application/x-protobuf");
        assert_eq!(headers["content-encoding"], "gzip");
        assert_eq!(headers["authorization"], "Bearer otlp-secret");
        assert_eq!(headers["x-tenant"], "t1");
    }
    let host = hostname();
    let resource = vec![
        ("host".to_string(), s(&host)),
        ("region".to_string(), s("eu")),
    ];

    let resource_metrics = metrics[0]["request"]["resource_metrics"]
        .as_array()
        .expect("resource_metrics");
    assert_eq!(resource_metrics.len(), 1);
    assert_eq!(
        string_attributes(&resource_metrics[0]["resource"]["attributes"]),
        resource
    );
    let scope = &resource_metrics[0]["scope_metrics"][0];
    assert_eq!(scope["scope"]["name"], "pythond");
    let gauges: Vec<(String, Vec<Value>)> = scope["metrics"]
        .as_array()
        .expect("metrics")
        .iter()
        .map(|m| {
            assert!(
                m.get("sum").is_none() && m.get("histogram").is_none(),
                "{m}"
            );
            (
                m["name"].as_str().unwrap_or_default().to_string(),
                m["gauge"]["data_points"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default(),
            )
        })
        .collect();
    let core = |c: &str| json!([{ "key": "core", "value": { "string_value": c } }]);
    assert_eq!(
        gauges,
        vec![
            (
                "cpu_idle".to_string(),
                vec![
                    json!({"attributes": core("0"), "time_unix_nano": "1700000000000000000", "as_double": 97.5}),
                    json!({"attributes": core("1"), "time_unix_nano": "1700000000001000000", "as_double": 12.25}),
                ]
            ),
            (
                "cpu_n".to_string(),
                vec![
                    json!({"attributes": core("0"), "time_unix_nano": "1700000000000000000", "as_int": "-3"})
                ]
            ),
            (
                "cpu_up".to_string(),
                vec![
                    json!({"attributes": core("0"), "time_unix_nano": "1700000000000000000", "as_int": "1"})
                ]
            ),
        ]
    );

    let resource_logs = logs[0]["request"]["resource_logs"]
        .as_array()
        .expect("resource_logs");
    assert_eq!(resource_logs.len(), 1);
    assert_eq!(
        string_attributes(&resource_logs[0]["resource"]["attributes"]),
        resource
    );
    let records = resource_logs[0]["scope_logs"][0]["log_records"]
        .as_array()
        .expect("log_records");
    assert_eq!(records.len(), 2);
    let nginx = &records[0];
    assert_eq!(nginx["time_unix_nano"], "1700000000002000000");
    assert!(
        nginx["observed_time_unix_nano"].as_str().is_some(),
        "{nginx}"
    );
    assert_eq!(nginx["severity_number"], 17);
    assert_eq!(nginx["severity_text"], "error");
    assert_eq!(nginx["body"], s("GET /x 500"));
    assert_eq!(
        string_attributes(&nginx["attributes"]),
        vec![
            ("bytes".to_string(), json!({"int_value": "512"})),
            ("path".to_string(), s("/x")),
            ("ratio".to_string(), json!({"double_value": 0.5})),
            ("slow".to_string(), json!({"bool_value": false})),
            ("source".to_string(), s("nginx")),
        ]
    );
    let app = &records[1];
    assert_eq!(app["time_unix_nano"], "1700000000003000000");
    assert_eq!(app["severity_number"], 13);
    assert_eq!(app["severity_text"], "warning");
    assert_eq!(app["body"], s("started"));
    assert_eq!(
        string_attributes(&app["attributes"]),
        vec![("source".to_string(), s("app"))]
    );

    // The object has no OTLP signal: counted, not sent; the 503s were retried; the
    // record refused in the partial success is counted and dead-lettered.
    let addr = common::http::api_addr(&agent);
    let mut sink = Value::Null;
    let settled = wait_until(DEADLINE, || {
        let body = common::http::get(&format!("http://{addr}/v1/status"), &[]).body;
        let status: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
        sink = status["sinks"][0].clone();
        sink["sent_points"] == 3 && sink["dead_lettered_points"] == 1
    });
    assert!(settled, "{sink}");
    assert_eq!(sink["name"], "otel");
    assert_eq!(sink["type"], "otlp");
    assert_eq!(sink["skipped_points"], 1, "{sink}");
    assert!(sink["retries"].as_u64().unwrap_or(0) >= 2, "{sink}");
    let dead = common::read_points(&home.path().join("data/deadletter/otel.ndjson"));
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_eq!(dead[0]["status"], 200);
    assert_eq!(dead[0]["category"], "logging");
    assert_eq!(dead[0]["points"], 2);
    let message = dead[0]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("partial success: 1 of 2 points rejected: one record too many"),
        "{message}"
    );
}
