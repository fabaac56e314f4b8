//! Real backends for the sink tests, started and stopped by the tests on loopback:
//! VictoriaMetrics and InfluxDB 1.x (Debian packages `victoria-metrics`, `influxdb`),
//! and a small Python HTTP server that records what it receives (a stand-in DataKit,
//! or a backend that answers 400). Plus a minimal HTTP/1.1 client to query them.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::{wait_until, DEADLINE};

/// A port that was free a moment ago: bind :0, read the port, release it. The caller
/// starts its program on it right away and retries with another port on bind failure.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind 127.0.0.1:0")
        .port()
}

/// An HTTP answer: status and body.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub body: String,
}

/// One HTTP/1.1 request with `Connection: close`; `None` if the server is not there.
pub fn http(method: &str, addr: &str, path: &str, body: &[u8]) -> Option<Answer> {
    let mut stream = TcpStream::connect(addr).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .ok()?;
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).ok()?;
    stream.write_all(body).ok()?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).ok()?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, rest) = text.split_once("\r\n\r\n")?;
    let status = head.split_whitespace().nth(1)?.parse().ok()?;
    let chunked = head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked");
    let body = if chunked {
        dechunk(rest)
    } else {
        rest.to_string()
    };
    Some(Answer { status, body })
}

fn dechunk(mut text: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = text.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        text = rest[n..].trim_start_matches("\r\n");
    }
    out
}

/// Percent-encodes a query parameter value.
pub fn urlencode(text: &str) -> String {
    text.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

fn kill_and_reap(child: &mut Child) {
    // SAFETY: kill has no memory-safety preconditions.
    unsafe {
        libc::kill(child.id() as i32, libc::SIGTERM);
    }
    if !wait_until(Duration::from_secs(20), || {
        matches!(child.try_wait(), Ok(Some(_)))
    }) {
        let _ = child.kill();
    }
    let _ = child.wait();
}

/// A VictoriaMetrics single-node server on a loopback port, with its own storage.
pub struct VictoriaMetrics {
    pub port: u16,
    storage: PathBuf,
    log: PathBuf,
    child: Option<Child>,
}

impl VictoriaMetrics {
    /// Starts a server storing under `dir` on a free port.
    pub fn start(dir: &Path) -> Self {
        let mut vm = Self {
            port: 0,
            storage: dir.join("vm-data"),
            log: dir.join("vm.log"),
            child: None,
        };
        for _ in 0..10 {
            vm.port = free_port();
            if vm.try_start() {
                return vm;
            }
        }
        panic!("VictoriaMetrics did not start; log:\n{}", vm.log_text());
    }

    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr())
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Starts the process on `self.port`; false if it exited (port taken).
    fn try_start(&mut self) -> bool {
        let log = std::fs::File::create(&self.log).expect("vm log");
        let mut child = Command::new("victoria-metrics")
            .arg(format!("-httpListenAddr=127.0.0.1:{}", self.port))
            .arg(format!("-storageDataPath={}", self.storage.display()))
            .arg("-loggerLevel=WARN")
            .arg("-search.latencyOffset=0s")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log fd"))
            .stderr(log)
            .spawn()
            .expect("start victoria-metrics (apt-get install victoria-metrics)");
        let addr = self.addr();
        let up = wait_until(DEADLINE, || {
            if matches!(child.try_wait(), Ok(Some(_))) {
                return true;
            }
            http("GET", &addr, "/health", b"").is_some_and(|a| a.status == 200)
        });
        if up && matches!(child.try_wait(), Ok(None)) {
            self.child = Some(child);
            true
        } else {
            let _ = child.kill();
            let _ = child.wait();
            false
        }
    }

    /// Starts a server on `port` (for a test that configured the agent with it before
    /// the backend existed).
    pub fn start_on(dir: &Path, port: u16) -> Self {
        let mut vm = Self {
            port,
            storage: dir.join("vm-data"),
            log: dir.join("vm.log"),
            child: None,
        };
        vm.restart();
        vm
    }

    /// Stops the server (SIGTERM), keeping its data.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            kill_and_reap(&mut child);
        }
    }

    /// Starts it again on the same port (which the agent is configured with).
    pub fn restart(&mut self) {
        let started = wait_until(DEADLINE, || self.try_start());
        assert!(
            started,
            "VictoriaMetrics did not restart; log:\n{}",
            self.log_text()
        );
    }

    /// Every sample of the series matching `selector` (e.g. `{__name__=~"seq_.*"}`):
    /// (metric name and labels, value, timestamp in ms), sorted.
    pub fn export(&self, selector: &str) -> Vec<Sample> {
        let _ = http("GET", &self.addr(), "/internal/force_flush", b"");
        let path = format!("/api/v1/export?match[]={}", urlencode(selector));
        let answer = http("GET", &self.addr(), &path, b"").expect("VictoriaMetrics answers");
        assert_eq!(answer.status, 200, "export: {}", answer.body);
        let mut samples = Vec::new();
        for line in answer.body.lines().filter(|l| !l.trim().is_empty()) {
            let series: serde_json::Value =
                serde_json::from_str(line).unwrap_or_else(|e| panic!("export line {line}: {e}"));
            let labels: Vec<(String, String)> = series["metric"]
                .as_object()
                .expect("metric labels")
                .iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                .collect();
            let values = series["values"].as_array().expect("values");
            let stamps = series["timestamps"].as_array().expect("timestamps");
            for (value, stamp) in values.iter().zip(stamps) {
                samples.push(Sample {
                    labels: labels.clone(),
                    value: value.as_f64().expect("numeric value"),
                    timestamp_ms: stamp.as_i64().expect("timestamp"),
                });
            }
        }
        samples.sort_by(|a, b| {
            (&a.labels, a.timestamp_ms)
                .cmp(&(&b.labels, b.timestamp_ms))
                .then(a.value.total_cmp(&b.value))
        });
        samples
    }
}

impl Drop for VictoriaMetrics {
    fn drop(&mut self) {
        self.stop();
    }
}

/// One sample exported by VictoriaMetrics.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    /// `__name__` and every label, sorted by name.
    pub labels: Vec<(String, String)>,
    pub value: f64,
    pub timestamp_ms: i64,
}

impl Sample {
    pub fn label(&self, name: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// An InfluxDB 1.x server (`influxd`) with every port on loopback.
pub struct Influxdb {
    pub port: u16,
    child: Child,
    log: PathBuf,
}

impl Influxdb {
    pub fn start(dir: &Path) -> Self {
        let log = dir.join("influxd.log");
        for _ in 0..10 {
            let (http_port, rpc_port) = (free_port(), free_port());
            let config = dir.join("influxd.conf");
            let root = dir.join("influxdb");
            std::fs::write(
                &config,
                format!(
                    "reporting-disabled = true\nbind-address = \"127.0.0.1:{rpc_port}\"\n\
                     [meta]\n  dir = \"{root}/meta\"\n\
                     [data]\n  dir = \"{root}/data\"\n  wal-dir = \"{root}/wal\"\n  query-log-enabled = false\n\
                     [monitor]\n  store-enabled = false\n\
                     [http]\n  enabled = true\n  bind-address = \"127.0.0.1:{http_port}\"\n  log-enabled = false\n\
                     [continuous_queries]\n  enabled = false\n",
                    root = root.display()
                ),
            )
            .expect("influxd config");
            let file = std::fs::File::create(&log).expect("influxd log");
            let mut child = Command::new("influxd")
                .arg("-config")
                .arg(&config)
                .stdin(Stdio::null())
                .stdout(file.try_clone().expect("log fd"))
                .stderr(file)
                .spawn()
                .expect("start influxd (apt-get install influxdb)");
            let addr = format!("127.0.0.1:{http_port}");
            let up = wait_until(DEADLINE, || {
                matches!(child.try_wait(), Ok(Some(_)))
                    || http("GET", &addr, "/ping", b"").is_some_and(|a| a.status == 204)
            });
            if up && matches!(child.try_wait(), Ok(None)) {
                return Self {
                    port: http_port,
                    child,
                    log,
                };
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!(
            "influxd did not start; log:\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
    }

    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr())
    }

    /// Runs an InfluxQL statement (POST /query); returns the JSON answer.
    pub fn query(&self, db: &str, q: &str) -> serde_json::Value {
        let path = format!("/query?db={}&epoch=ns&q={}", urlencode(db), urlencode(q));
        let answer = http("POST", &self.addr(), &path, b"").expect("influxd answers");
        assert_eq!(answer.status, 200, "{q}: {}", answer.body);
        serde_json::from_str(&answer.body).expect("influx JSON")
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Influxdb {
    fn drop(&mut self) {
        kill_and_reap(&mut self.child);
    }
}

/// A recording HTTP server in Python: every POST is appended to `requests.ndjson` as
/// `{"path", "headers", "body"}` (body gunzipped), and answered with `status` and
/// `message`.
pub struct Recorder {
    pub port: u16,
    child: Child,
    requests: PathBuf,
}

const RECORDER: &str = r#"
import gzip, http.server, json, sys
out, status, message = sys.argv[1], int(sys.argv[2]), sys.argv[3]
class H(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        if self.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        with open(out, "a") as f:
            f.write(json.dumps({"path": self.path, "headers": {k.lower(): v for k, v in self.headers.items()},
                                "body": body.decode()}) + "\n")
        data = message.encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
    def log_message(self, *args):
        pass
server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
if len(sys.argv) > 5:  # certificate and key: serve https
    import ssl
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(sys.argv[4], sys.argv[5])
    server.socket = context.wrap_socket(server.socket, server_side=True)
print(server.server_address[1], flush=True)
server.serve_forever()
"#;

impl Recorder {
    /// Starts a recorder writing `dir/<name>.ndjson`.
    pub fn start(dir: &Path, name: &str, status: u16, message: &str) -> Self {
        Self::start_with(dir, name, status, message, None)
    }

    /// The same over https, with a certificate made by [`self_signed_cert`].
    pub fn start_tls(dir: &Path, name: &str, status: u16, cert: &SelfSigned) -> Self {
        Self::start_with(dir, name, status, "{}", Some(cert))
    }

    fn start_with(
        dir: &Path,
        name: &str,
        status: u16,
        message: &str,
        tls: Option<&SelfSigned>,
    ) -> Self {
        let script = dir.join("recorder.py");
        std::fs::write(&script, RECORDER).expect("recorder script");
        let requests = dir.join(format!("{name}.ndjson"));
        let mut command = Command::new("python3");
        command
            .arg(&script)
            .arg(&requests)
            .arg(status.to_string())
            .arg(message);
        if let Some(tls) = tls {
            command.arg(&tls.cert).arg(&tls.key);
        }
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .expect("start python3");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("recorder port");
        let port = line.trim().parse().expect("recorder prints its port");
        Self {
            port,
            child,
            requests,
        }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn https_url(&self) -> String {
        format!("https://127.0.0.1:{}", self.port)
    }

    /// Every request received so far.
    pub fn requests(&self) -> Vec<serde_json::Value> {
        super::read_points(&self.requests)
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A certificate for 127.0.0.1 that signs itself, and its key (PEM files).
pub struct SelfSigned {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// Makes a self-signed certificate for 127.0.0.1 with `openssl` (apt: openssl).
pub fn self_signed_cert(dir: &Path) -> SelfSigned {
    let cert = dir.join("cert.pem");
    let key = dir.join("key.pem");
    let status = Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
        ])
        .args(["-subj", "/CN=127.0.0.1"])
        .args(["-addext", "subjectAltName=IP:127.0.0.1"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("run openssl (apt-get install openssl)");
    assert!(status.success(), "openssl could not make a certificate");
    SelfSigned { cert, key }
}

/// Another VictoriaMetrics program (`vmagent`, `vmauth`, from the same Debian package)
/// on a free loopback port, with the given flags; stopped on drop.
pub struct VmTool {
    pub port: u16,
    program: String,
    flags: Vec<String>,
    log: PathBuf,
    child: Option<Child>,
}

impl VmTool {
    /// vmagent accepting remote write and line protocol, forwarding to `remote_write`
    /// (a full write URL) with its persistent queue under `dir`.
    pub fn vmagent(dir: &Path, remote_write: &str) -> Self {
        Self::start(
            dir,
            "vmagent",
            vec![
                format!("-remoteWrite.url={remote_write}"),
                format!(
                    "-remoteWrite.tmpDataPath={}",
                    dir.join("vmagent-queue").display()
                ),
                "-remoteWrite.flushInterval=100ms".to_string(),
            ],
        )
    }

    /// vmauth with the auth configuration `config` (YAML).
    pub fn vmauth(dir: &Path, config: &str) -> Self {
        let path = dir.join("vmauth.yml");
        std::fs::write(&path, config).expect("vmauth config");
        Self::start(
            dir,
            "vmauth",
            vec![format!("-auth.config={}", path.display())],
        )
    }

    fn start(dir: &Path, program: &str, flags: Vec<String>) -> Self {
        let mut tool = Self {
            port: 0,
            program: program.to_string(),
            flags,
            log: dir.join(format!("{program}.log")),
            child: None,
        };
        for _ in 0..10 {
            tool.port = free_port();
            if tool.try_start() {
                return tool;
            }
        }
        panic!("{program} did not start; log:\n{}", tool.log_text());
    }

    fn try_start(&mut self) -> bool {
        let log = std::fs::File::create(&self.log).expect("log");
        let mut child = Command::new(&self.program)
            .arg(format!("-httpListenAddr=127.0.0.1:{}", self.port))
            .arg("-loggerLevel=WARN")
            .args(&self.flags)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log fd"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "start {} (apt-get install victoria-metrics): {e}",
                    self.program
                )
            });
        let addr = self.addr();
        let up = wait_until(DEADLINE, || {
            matches!(child.try_wait(), Ok(Some(_)))
                || http("GET", &addr, "/health", b"").is_some_and(|a| a.status == 200)
        });
        if up && matches!(child.try_wait(), Ok(None)) {
            self.child = Some(child);
            true
        } else {
            let _ = child.kill();
            let _ = child.wait();
            false
        }
    }

    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr())
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The process id, for CPU accounting.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }
}

impl Drop for VmTool {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            kill_and_reap(&mut child);
        }
    }
}
