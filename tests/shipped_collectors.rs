//! The collectors shipped in python.d/, each run through the real `pythond check`
//! against real local targets: HTTP and HTTPS servers (a self-signed certificate made
//! by openssl), a process started for the test, the root file system, a log file that
//! is appended to, truncated and rotated, and a TCP listener that goes away and back.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use common::{parse_points, pythond, run_to_end, wait_until, DEADLINE};
use serde_json::Value;

fn collector(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("python.d")
        .join(name)
}

/// `pythond check python.d/<name>` with `envs`; panics unless it passes. Its points.
/// `--allow-empty`: some runs rightly report nothing (a tail at the end of its file);
/// the callers assert the points they expect.
fn check(name: &str, envs: &[(&str, &str)]) -> Vec<Value> {
    let mut command = pythond();
    command
        .arg("check")
        .arg("--allow-empty")
        .arg(collector(name));
    for (key, value) in envs {
        command.env(key, value);
    }
    let (code, stdout, stderr) = run_to_end(command);
    assert_eq!(code, 0, "check of {name} failed:\n{stdout}\n{stderr}");
    parse_points(&stdout)
}

fn of<'p>(points: &'p [Value], category: &str, measurement: &str) -> Vec<&'p Value> {
    points
        .iter()
        .filter(|p| p["category"] == category && p["measurement"] == measurement)
        .collect()
}

fn with_tag<'p>(points: &[&'p Value], tag: &str, value: &str) -> &'p Value {
    let matching: Vec<&&Value> = points.iter().filter(|p| p["tags"][tag] == value).collect();
    assert_eq!(
        matching.len(),
        1,
        "expected one point with {tag}={value}: {points:#?}"
    );
    matching[0]
}

/// A child process killed on drop.
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

const SERVER: &str = r#"
import http.server, os, ssl, sys
os.chdir(sys.argv[1])
class Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass
server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
if len(sys.argv) > 2:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(sys.argv[2], sys.argv[3])
    server.socket = context.wrap_socket(server.socket, server_side=True)
print(server.server_address[1], flush=True)
server.serve_forever()
"#;

/// A Python http.server serving `root` on an ephemeral port (TLS with `cert`/`key`).
fn http_server(root: &Path, tls: Option<(&Path, &Path)>) -> (Guard, u16) {
    let mut command = Command::new("python3");
    command.arg("-c").arg(SERVER).arg(root);
    if let Some((cert, key)) = tls {
        command.arg(cert).arg(key);
    }
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start python3 http.server");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("read the server's port");
    let port = line
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("server printed {line:?}, not a port"));
    (Guard(child), port)
}

/// A port nothing listens on: bound, then released.
fn closed_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr").port()
}

#[test]
fn http_probe_reports_status_latency_and_tls_days_left() {
    let dir = tempfile::tempdir().expect("tempdir");
    let www = dir.path().join("www");
    std::fs::create_dir(&www).expect("www");
    std::fs::write(www.join("index.html"), "hello").expect("index");
    let cert = dir.path().join("cert.pem");
    let key = dir.path().join("key.pem");
    let (code, out, err) = run_to_end({
        let mut openssl = Command::new("openssl");
        openssl
            .args([
                "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "30",
            ])
            .args(["-subj", "/CN=localhost"])
            .args(["-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"])
            .arg("-keyout")
            .arg(&key)
            .arg("-out")
            .arg(&cert);
        openssl
    });
    assert_eq!(
        code, 0,
        "openssl req failed (is openssl installed?):\n{out}\n{err}"
    );

    let (_http, http_port) = http_server(&www, None);
    let (_https, https_port) = http_server(&www, Some((&cert, &key)));
    let ok = format!("http://127.0.0.1:{http_port}/");
    let missing = format!("http://127.0.0.1:{http_port}/missing");
    let tls = format!("https://127.0.0.1:{https_port}/");
    let down = format!("http://127.0.0.1:{}/", closed_port());
    let urls = [ok.as_str(), missing.as_str(), tls.as_str(), down.as_str()].join(",");
    let points = check(
        "http_probe",
        &[
            ("HTTP_PROBE_URLS", &urls),
            ("HTTP_PROBE_CA_FILE", cert.to_str().expect("utf-8 path")),
            ("HTTP_PROBE_TIMEOUT", "10"),
        ],
    );
    let probes = of(&points, "metric", "http_probe");
    assert_eq!(probes.len(), 4, "one point per URL: {points:#?}");

    let p = with_tag(&probes, "url", &ok);
    assert_eq!(p["tags"]["result"], "ok");
    assert_eq!(p["fields"]["status_code"], 200);
    assert_eq!(p["fields"]["up"], 1);
    assert!(p["fields"]["latency_ms"].as_f64().expect("latency") >= 0.0);
    assert!(
        p["fields"].get("tls_days_left").is_none(),
        "plain http: {p}"
    );

    let p = with_tag(&probes, "url", &missing);
    assert_eq!(p["tags"]["result"], "http_error");
    assert_eq!(p["fields"]["status_code"], 404);
    assert_eq!(p["fields"]["up"], 0);

    let p = with_tag(&probes, "url", &tls);
    assert_eq!(p["tags"]["result"], "ok", "{p}");
    assert_eq!(p["fields"]["status_code"], 200);
    let days = p["fields"]["tls_days_left"]
        .as_f64()
        .expect("tls_days_left");
    assert!(
        days > 29.0 && days <= 30.0,
        "the certificate is valid for 30 days; reported {days}"
    );

    let p = with_tag(&probes, "url", &down);
    assert_eq!(p["tags"]["result"], "refused");
    assert_eq!(p["fields"]["up"], 0);
    assert!(p["fields"].get("status_code").is_none(), "{p}");
}

#[test]
fn http_probe_with_an_untrusted_certificate_reports_tls_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cert = dir.path().join("cert.pem");
    let key = dir.path().join("key.pem");
    let (code, out, err) = run_to_end({
        let mut openssl = Command::new("openssl");
        openssl
            .args([
                "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
            ])
            .args(["-subj", "/CN=localhost"])
            .arg("-keyout")
            .arg(&key)
            .arg("-out")
            .arg(&cert);
        openssl
    });
    assert_eq!(code, 0, "openssl req failed:\n{out}\n{err}");
    let (_https, port) = http_server(dir.path(), Some((&cert, &key)));
    let url = format!("https://127.0.0.1:{port}/");
    // No CA file: the system CAs do not trust a self-signed certificate.
    let points = check("http_probe", &[("HTTP_PROBE_URLS", &url)]);
    let p = with_tag(&of(&points, "metric", "http_probe"), "url", &url);
    assert_eq!(p["tags"]["result"], "tls_error", "{p}");
    assert_eq!(p["fields"]["up"], 0);

    // A CA file that does not exist: reported, the system CAs are used, the probe runs.
    let points = check(
        "http_probe",
        &[
            ("HTTP_PROBE_URLS", &url),
            ("HTTP_PROBE_CA_FILE", "/nonexistent/ca.pem"),
        ],
    );
    let p = with_tag(&of(&points, "metric", "http_probe"), "url", &url);
    assert_eq!(p["tags"]["result"], "tls_error", "{p}");
}

#[test]
fn procs_counts_a_named_process_and_its_memory() {
    let dir = tempfile::tempdir().expect("tempdir");
    // A copy of sleep under a name no other process has (comm is at most 15 bytes).
    let name = format!("pdsleep{}", std::process::id() % 100_000_000);
    let sleep = dir.path().join(&name);
    let system_sleep = ["/bin/sleep", "/usr/bin/sleep"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .expect("sleep binary");
    std::fs::copy(system_sleep, &sleep).expect("copy sleep");
    let child = Guard(
        Command::new(&sleep)
            .arg("300")
            .spawn()
            .expect("start the renamed sleep"),
    );
    let names = format!("{name},no-such-process-here");
    let points = check("procs", &[("PROCS_NAMES", &names)]);
    let procs = of(&points, "metric", "procs");
    let p = with_tag(&procs, "name", &name);
    assert_eq!(p["fields"]["count"], 1, "{p}");
    assert!(p["fields"]["rss_bytes"].as_i64().expect("rss") > 0, "{p}");
    assert!(
        p["fields"]["threads"].as_i64().expect("threads") >= 1,
        "{p}"
    );
    let none = with_tag(&procs, "name", "no-such-process-here");
    assert_eq!(none["fields"]["count"], 0);

    drop(child);
    let points = check("procs", &[("PROCS_NAMES", &name)]);
    let p = with_tag(&of(&points, "metric", "procs"), "name", &name);
    assert_eq!(p["fields"]["count"], 0, "the process is gone: {p}");
}

#[test]
fn disk_reports_the_root_file_system_as_statvfs_sees_it() {
    let points = check("disk", &[("DISK_MOUNTS", "/")]);
    let disks = of(&points, "metric", "disk");
    assert_eq!(disks.len(), 1, "only the mount asked for: {points:#?}");
    let p = disks[0];
    assert_eq!(p["tags"]["mount"], "/");

    // SAFETY: statvfs writes into the zeroed struct we own; the path is NUL-terminated.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::statvfs(c"/".as_ptr(), &mut st) };
    assert_eq!(rc, 0, "statvfs(/)");
    let total = st.f_blocks as i64 * st.f_frsize as i64;
    assert_eq!(p["fields"]["total_bytes"].as_i64(), Some(total), "{p}");
    assert_eq!(
        p["fields"]["inodes_total"].as_i64(),
        Some(st.f_files as i64)
    );
    let used = p["fields"]["used_bytes"].as_i64().expect("used");
    let free = p["fields"]["free_bytes"].as_i64().expect("free");
    assert!(used >= 0 && free >= 0 && used + free <= total, "{p}");
    let percent = p["fields"]["used_percent"].as_f64().expect("percent");
    assert!((0.0..=100.0).contains(&percent), "{p}");

    // Without a filter: real file systems only, never /proc or /sys.
    let all = check("disk", &[]);
    let disks = of(&all, "metric", "disk");
    assert!(disks.iter().any(|p| p["tags"]["mount"] == "/"), "{all:#?}");
    for p in disks {
        let fstype = p["tags"]["fstype"].as_str().unwrap_or("");
        assert!(
            !["proc", "sysfs", "cgroup2", "devpts", "tmpfs"].contains(&fstype),
            "pseudo file system reported: {p}"
        );
    }
}

/// The messages of the log_tail points, in order.
fn tail(log: &Path, state: &Path, from_beginning: bool) -> Vec<String> {
    let points = check(
        "log_tail",
        &[
            ("LOG_TAIL_FILES", log.to_str().expect("utf-8 path")),
            ("LOG_TAIL_STATE_DIR", state.to_str().expect("utf-8 path")),
            ("LOG_TAIL_SOURCE", "app"),
            (
                "LOG_TAIL_FROM_BEGINNING",
                if from_beginning { "1" } else { "0" },
            ),
        ],
    );
    assert!(
        points.iter().all(|p| p["category"] == "logging"
            && p["measurement"] == "app"
            && p["tags"]["filename"] == log.to_str().expect("utf-8")),
        "{points:#?}"
    );
    points
        .iter()
        .map(|p| {
            p["fields"]["message"]
                .as_str()
                .expect("message")
                .to_string()
        })
        .collect()
}

fn append(path: &Path, text: &str) {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .and_then(|mut f| f.write_all(text.as_bytes()))
        .expect("append to the log");
}

#[test]
fn log_tail_resumes_from_its_offset_across_runs_truncation_and_rotation() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("app.log");
    let state = dir.path().join("state");
    append(&log, "one\ntwo\n");
    assert_eq!(tail(&log, &state, true), ["one", "two"]);
    assert!(
        state.join("offsets.json").is_file(),
        "offset saved in the state dir"
    );
    // Each run is a new process: the offset comes from the state file.
    assert!(tail(&log, &state, true).is_empty(), "no line twice");

    append(&log, "three\nfour\nfive-still-being-wri");
    assert_eq!(tail(&log, &state, true), ["three", "four"]);
    append(&log, "tten\n");
    assert_eq!(tail(&log, &state, true), ["five-still-being-written"]);

    // Truncated in place (copytruncate): read again from the start.
    std::fs::write(&log, "six\n").expect("truncate");
    assert_eq!(tail(&log, &state, true), ["six"]);

    // Rotated: the rest of the old file (now app.log.1) first, then the new file.
    append(&log, "seven\n");
    std::fs::rename(&log, dir.path().join("app.log.1")).expect("rotate");
    append(&log, "eight\n");
    assert_eq!(tail(&log, &state, true), ["seven", "eight"]);
    assert!(tail(&log, &state, true).is_empty());
}

#[test]
fn log_tail_with_a_damaged_state_file_starts_afresh() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("app.log");
    let state = dir.path().join("state");
    append(&log, "one\n");
    assert_eq!(tail(&log, &state, true), ["one"]);
    std::fs::write(
        state.join("offsets.json"),
        format!(
            "{{{:?}: {{\"offset\": \"lots\"}}}}",
            log.display().to_string()
        ),
    )
    .expect("damage the state");
    assert_eq!(tail(&log, &state, true), ["one"], "read again, no crash");
    std::fs::write(state.join("offsets.json"), "not json").expect("damage the state");
    assert_eq!(tail(&log, &state, true), ["one"]);
    assert!(
        tail(&log, &state, true).is_empty(),
        "and the state is good again"
    );
}

#[test]
fn log_tail_starts_at_the_end_of_a_file_it_has_never_seen() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("old.log");
    let state = dir.path().join("state");
    append(&log, "history\n");
    assert!(tail(&log, &state, false).is_empty(), "history is skipped");
    append(&log, "news\n");
    assert_eq!(tail(&log, &state, false), ["news"]);
}

/// (up, events) of one tcp_check run against `target`.
fn tcp_check(target: &str, state: &Path) -> (i64, Vec<Value>) {
    let points = check(
        "tcp_check",
        &[
            ("TCP_CHECK_TARGETS", target),
            ("TCP_CHECK_STATE_DIR", state.to_str().expect("utf-8 path")),
        ],
    );
    let metric = with_tag(&of(&points, "metric", "tcp_check"), "target", target);
    let up = metric["fields"]["up"].as_i64().expect("up");
    if up == 1 {
        assert!(metric["fields"]["latency_ms"].as_f64().expect("latency") >= 0.0);
    }
    let events = of(&points, "keyevent", "measurement")
        .into_iter()
        .cloned()
        .collect();
    (up, events)
}

#[test]
fn tcp_check_emits_an_event_only_when_the_state_changes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let state = dir.path().join("state");
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    let target = addr.to_string();

    let (up, events) = tcp_check(&target, &state);
    assert_eq!(up, 1);
    assert!(
        events.is_empty(),
        "first sight and up: no event: {events:?}"
    );
    let (up, events) = tcp_check(&target, &state);
    assert_eq!((up, events.len()), (1, 0), "unchanged: no event");

    drop(listener);
    let (up, events) = tcp_check(&target, &state);
    assert_eq!(up, 0);
    assert_eq!(events.len(), 1, "went down: one event: {events:?}");
    let event = &events[0];
    assert_eq!(event["fields"]["df_status"], "error");
    assert_eq!(event["fields"]["df_source"], "system");
    assert_eq!(event["fields"]["df_title"], format!("{target} is down"));
    assert_eq!(event["tags"]["target"], target.as_str());
    let (up, events) = tcp_check(&target, &state);
    assert_eq!((up, events.len()), (0, 0), "still down: no new event");

    // Back on the same port.
    let mut back = None;
    assert!(
        wait_until(DEADLINE, || {
            back = TcpListener::bind(addr).ok();
            back.is_some()
        }),
        "could not listen on {addr} again"
    );
    let (up, events) = tcp_check(&target, &state);
    assert_eq!(up, 1);
    assert_eq!(events.len(), 1, "came back: one event: {events:?}");
    assert_eq!(events[0]["fields"]["df_status"], "ok");
    assert_eq!(events[0]["fields"]["df_title"], format!("{target} is up"));
}

#[test]
fn tcp_check_reports_a_target_down_from_the_start_and_a_malformed_one() {
    let dir = tempfile::tempdir().expect("tempdir");
    let target = format!("127.0.0.1:{}", closed_port());
    let (up, events) = tcp_check(&target, &dir.path().join("state"));
    assert_eq!(up, 0);
    assert_eq!(events.len(), 1, "down at first sight: an event: {events:?}");
    assert_eq!(events[0]["fields"]["df_status"], "error");

    let (up, _) = tcp_check("no-port-here", &dir.path().join("state"));
    assert_eq!(up, 0, "a malformed target is reported down, not a crash");

    // A malformed setting falls back to its default, with a message; the run still works.
    let mut command = pythond();
    command
        .arg("check")
        .arg(collector("tcp_check"))
        .env("TCP_CHECK_TARGETS", &target)
        .env("TCP_CHECK_STATE_DIR", dir.path().join("state"))
        .env("TCP_CHECK_TIMEOUT", "soon");
    let (code, stdout, stderr) = run_to_end(command);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert_eq!(of(&parse_points(&stdout), "metric", "tcp_check").len(), 1);
}

#[test]
fn a_shipped_collector_without_its_settings_fails_check_naming_what_to_set() {
    for (name, option, variable) in [
        ("http_probe", "urls", "HTTP_PROBE_URLS"),
        ("log_tail", "files", "LOG_TAIL_FILES"),
        ("procs", "names", "PROCS_NAMES"),
        ("tcp_check", "targets", "TCP_CHECK_TARGETS"),
    ] {
        let state = tempfile::tempdir().expect("tempdir");
        let mut command = pythond();
        command
            .arg("check")
            .arg(collector(name))
            .env_remove(variable)
            .env("STATE_DIRECTORY", state.path());
        let (code, stdout, stderr) = run_to_end(command);
        assert_ne!(
            code, 0,
            "{name} passed with nothing to report:\n{stdout}\n{stderr}"
        );
        assert!(
            stderr.contains(&format!("option `{option}`")) && stderr.contains(variable),
            "{name} does not say what to set:\n{stderr}"
        );
        assert!(stderr.contains("no point was reported"), "{stderr}");
    }
}
