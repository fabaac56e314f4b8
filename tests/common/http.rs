//! HTTP helpers for the integration tests: the agent's API address (from its log), a
//! real blocking HTTP client (ureq), and /proc memory readings.

use std::io::Read;
use std::time::Duration;

use super::Agent;

/// The base URL the agent's HTTP API bound, from its `HTTP API listening on` log line.
pub fn api_base(agent: &Agent) -> String {
    let line = agent.expect_log_line(&["HTTP API listening on http://"]);
    let start = line.find("http://").expect("URL in the log line");
    line[start..]
        .split(|c: char| c.is_whitespace() || c == '\u{1b}' || c == '"')
        .next()
        .expect("URL")
        .to_string()
}

/// `host:port` of [`api_base`].
pub fn api_addr(agent: &Agent) -> String {
    api_base(agent).trim_start_matches("http://").to_string()
}

/// The agent's sink snapshot named `name`, from /v1/status.
pub fn sink_status(agent: &Agent, name: &str) -> serde_json::Value {
    let addr = api_addr(agent);
    let body = get(&format!("http://{addr}/v1/status"), &[]).body;
    let status: serde_json::Value = serde_json::from_str(&body).expect("status JSON");
    status["sinks"]
        .as_array()
        .and_then(|sinks| sinks.iter().find(|s| s["name"] == name).cloned())
        .unwrap_or_else(|| panic!("no sink {name} in {status}"))
}

/// The value of one sample (name and labels) in the agent's `/metrics`.
pub fn sink_metric(agent: &Agent, sample: &str) -> Option<f64> {
    let addr = api_addr(agent);
    let text = get(&format!("http://{addr}/metrics"), &[]).body;
    text.lines()
        .find_map(|l| l.strip_prefix(sample)?.strip_prefix(' ')?.parse().ok())
}

fn agent() -> ureq::Agent {
    ureq::AgentBuilder::new()
        .timeout(Duration::from_secs(60))
        .build()
}

/// An answer: status and body text.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub body: String,
}

impl Answer {
    /// The body as JSON (panics with the body otherwise).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("answer is not JSON ({e}): {}", self.body))
    }
}

fn answer(result: Result<ureq::Response, ureq::Error>) -> Answer {
    let response = match result {
        Ok(response) => response,
        Err(ureq::Error::Status(_, response)) => response,
        Err(error) => panic!("HTTP request failed: {error}"),
    };
    let status = response.status();
    let body = response.into_string().unwrap_or_default();
    Answer { status, body }
}

/// POSTs `body` to `url` with the given headers.
pub fn post(url: &str, headers: &[(&str, &str)], body: &[u8]) -> Answer {
    let mut request = agent().post(url);
    for (k, v) in headers {
        request = request.set(k, v);
    }
    answer(request.send_bytes(body))
}

/// POSTs a streamed body (sent chunked: never held in the test's memory).
pub fn post_stream(url: &str, headers: &[(&str, &str)], body: impl Read) -> Answer {
    let mut request = agent().post(url);
    for (k, v) in headers {
        request = request.set(k, v);
    }
    answer(request.send(body))
}

/// GETs `url` with the given headers.
pub fn get(url: &str, headers: &[(&str, &str)]) -> Answer {
    let mut request = agent().get(url);
    for (k, v) in headers {
        request = request.set(k, v);
    }
    answer(request.call())
}

/// POSTs JSON points like the shim (Content-Type: application/json).
pub fn post_json(url: &str, body: &str) -> Answer {
    post(
        url,
        &[("Content-Type", "application/json")],
        body.as_bytes(),
    )
}

/// gzip of `data`.
pub fn gzip(data: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(data).expect("gzip in memory");
    enc.finish().expect("gzip in memory")
}

/// Peak resident memory of `pid` (VmHWM), in bytes.
pub fn peak_rss_bytes(pid: i32) -> u64 {
    memory_bytes(pid, "VmHWM:")
}

/// Resident memory of `pid` now (VmRSS), in bytes.
pub fn rss_bytes(pid: i32) -> u64 {
    memory_bytes(pid, "VmRSS:")
}

/// One memory line of `/proc/<pid>/status` (`VmHWM:`, `VmRSS:`), in bytes.
fn memory_bytes(pid: i32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc status");
    let line = status
        .lines()
        .find(|l| l.starts_with(field))
        .unwrap_or_else(|| panic!("{field} line"));
    let kib: u64 = line
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("{field} value"));
    kib * 1024
}

/// A reader of `len` bytes of line protocol-ish filler, produced on the fly.
pub struct Filler {
    pub left: u64,
}

impl Read for Filler {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = (buf.len() as u64).min(self.left) as usize;
        buf[..n].fill(b'x');
        self.left -= n as u64;
        Ok(n)
    }
}

/// Samples of `/metrics` as parsed by prometheus_client's parser (the reference one),
/// each `{"family", "type", "name", "labels", "value"}`; a malformed exposition fails.
pub fn parsed_metrics(base: &str) -> Vec<serde_json::Value> {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let text = get(&format!("{base}/metrics"), &[]).body;
    let mut child = Command::new("python3")
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/parse_metrics.py"
        ))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("feed the parser");
    let out = child.wait_with_output().expect("parser output");
    assert!(
        out.status.success(),
        "prometheus_client could not parse /metrics: {}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    super::parse_points(&String::from_utf8_lossy(&out.stdout))
}
