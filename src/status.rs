//! `pythond status`: asks a running agent for `GET /v1/status` and prints it as tables.
//!
//! The request is one plain HTTP/1.0 GET over a `TcpStream` (the answer ends when the
//! agent closes the connection), so the CLI needs no HTTP client library and no async
//! runtime. The JSON is read loosely (missing keys render as `-`), so a newer agent
//! with more fields still renders.

use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::{Duration, SystemTime};

use serde_json::Value;

/// How long to wait for the agent to connect and answer.
const TIMEOUT: Duration = Duration::from_secs(5);

/// Why status could not be shown.
#[derive(Debug, thiserror::Error)]
pub enum StatusError {
    #[error("no pythond agent is answering on {addr} ({source}); is `pythond run` running, and is [http] listen this address? (use --addr HOST:PORT)")]
    NotRunning {
        addr: String,
        source: std::io::Error,
    },
    #[error("{addr} refused the request: HTTP {status}: {body}")]
    Refused {
        addr: String,
        status: u16,
        body: String,
    },
    #[error("{addr} is not a pythond agent: {detail}")]
    Garbled { addr: String, detail: String },
}

/// Fetches `/v1/status` from `addr` (`HOST:PORT`), sending `token` if given.
pub fn fetch(addr: &str, token: Option<&str>) -> Result<Value, StatusError> {
    fetch_filtered(addr, token, &crate::status_filter::StatusFilter::default())
}

/// Like [`fetch`], asking the agent to apply `filter` (src/status_filter.rs).
pub fn fetch_filtered(
    addr: &str,
    token: Option<&str>,
    filter: &crate::status_filter::StatusFilter,
) -> Result<Value, StatusError> {
    let not_running = |source| StatusError::NotRunning {
        addr: addr.to_string(),
        source,
    };
    let garbled = |detail: String| StatusError::Garbled {
        addr: addr.to_string(),
        detail,
    };
    let target = addr
        .to_socket_addrs()
        .map_err(not_running)?
        .next()
        .ok_or_else(|| not_running(std::io::Error::other("the address resolves to nothing")))?;
    let mut stream = TcpStream::connect_timeout(&target, TIMEOUT).map_err(not_running)?;
    stream
        .set_read_timeout(Some(TIMEOUT))
        .map_err(not_running)?;
    stream
        .set_write_timeout(Some(TIMEOUT))
        .map_err(not_running)?;
    let mut request = format!(
        "GET /v1/status{} HTTP/1.0\r\nHost: {addr}\r\nAccept: application/json\r\n",
        filter.query()
    );
    if let Some(token) = token {
        let _ = write!(request, "Authorization: Bearer {token}\r\n");
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).map_err(not_running)?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).map_err(not_running)?;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| garbled("no HTTP header".into()))?;
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| garbled(format!("bad status line {:?}", head.lines().next())))?;
    if status != 200 {
        // A pythond answers errors in DataKit's JSON shape; anything else (an HTML
        // page, say) means another server listens there.
        let message = serde_json::from_str::<Value>(body)
            .ok()
            .and_then(|v| v["message"].as_str().map(str::to_string));
        return Err(match message {
            Some(message) => StatusError::Refused {
                addr: addr.to_string(),
                status,
                body: message,
            },
            None => garbled(format!(
                "it answered HTTP {status} with {}, not pythond's JSON; is --addr the agent's [http] listen?",
                content_type(head)
            )),
        });
    }
    let document: Value = serde_json::from_str(body).map_err(|_| {
        garbled(format!(
            "it answered {} instead of pythond's status JSON; is --addr the agent's [http] listen?",
            content_type(head)
        ))
    })?;
    if document.get("inputs").is_none() {
        return Err(garbled(
            "its JSON has no `inputs`: not a pythond status; is --addr the agent's [http] listen?"
                .into(),
        ));
    }
    Ok(document)
}

/// The Content-Type of an HTTP head, for messages ("no Content-Type" if absent).
fn content_type(head: &str) -> String {
    head.lines()
        .find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.eq_ignore_ascii_case("content-type")
                .then(|| value.trim().to_string())
        })
        .unwrap_or_else(|| "no Content-Type".into())
}

/// Renders a status document as text tables: inputs, plugins, points, last errors
/// (each cut to one line of 80 characters).
pub fn render(status: &Value) -> String {
    render_with(status, false)
}

/// [`render`]; `wide` prints every last error in full after the tables (`status
/// --wide`).
pub fn render_with(status: &Value, wide: bool) -> String {
    let now_ms = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    let cut = |text: &str| {
        if wide {
            text.lines().next().unwrap_or("").to_string()
        } else {
            one_line(text)
        }
    };
    let mut out = String::new();
    let _ = writeln!(
        out,
        "pythond {}  up {}  API {}",
        text(&status["version"]),
        status["uptime_seconds"]
            .as_u64()
            .map(|s| human_age(s * 1000))
            .unwrap_or_else(|| "-".into()),
        text(&status["http"]["listen"]),
    );
    let empty = Vec::new();
    let inputs = status["inputs"].as_array().unwrap_or(&empty);

    let mut rows = vec![vec![
        "INPUT".to_string(),
        "STATE".into(),
        "PID".into(),
        "RESTARTS".into(),
        "PLUGINS".into(),
        "LAST ERROR".into(),
    ]];
    for input in inputs {
        let state = match input["state"]["state"].as_str() {
            Some("backoff") => format!(
                "backoff ({})",
                human_age(input["state"]["retry_in_ms"].as_u64().unwrap_or(0))
            ),
            Some(s) => s.to_string(),
            None => "-".into(),
        };
        let last_error = input["state"]["reason"]
            .as_str()
            .or(input["last_error"].as_str())
            .unwrap_or("");
        rows.push(vec![
            text(&input["name"]),
            state,
            pids(input),
            text(&input["restarts"]),
            input["plugins"]
                .as_array()
                .map(|p| p.len().to_string())
                .unwrap_or_else(|| "0".into()),
            cut(last_error),
        ]);
    }
    out.push('\n');
    out.push_str(&table(&rows));
    out.push_str(&instance_summaries(inputs));

    let mut rows = vec![vec![
        "INPUT".to_string(),
        "PLUGIN".into(),
        "KIND".into(),
        "STATE".into(),
        "RUNS".into(),
        "ERRORS".into(),
        "TIMEOUTS".into(),
        "SKIPPED".into(),
        "LAST SUCCESS".into(),
        "POINTS".into(),
        "REJECTED".into(),
        "LAST ERROR".into(),
    ]];
    let mut full_errors: Vec<(String, String)> = Vec::new();
    for input in inputs {
        for plugin in input["plugins"].as_array().unwrap_or(&empty) {
            let last = plugin["last_success_unix_ms"]
                .as_u64()
                .map(|ms| format!("{} ago", human_age(now_ms.saturating_sub(ms))))
                .unwrap_or_else(|| "never".into());
            rows.push(vec![
                text(&input["name"]),
                text(&plugin["id"]),
                text(&plugin["kind"]),
                text(&plugin["state"]),
                text(&plugin["runs"]),
                text(&plugin["failures"]),
                text(&plugin["timeouts"]),
                text(&plugin["skipped"]),
                last,
                per_category(&plugin["points"]),
                text(&plugin["rejected"]),
                cut(plugin["last_error"].as_str().unwrap_or("")),
            ]);
            if let Some(error) = plugin["last_error"].as_str() {
                full_errors.push((
                    format!("{} {}", text(&input["name"]), text(&plugin["id"])),
                    error.to_string(),
                ));
            }
        }
    }
    if rows.len() > 1 {
        out.push('\n');
        out.push_str(&table(&rows));
    }

    let sinks = status["sinks"].as_array().unwrap_or(&empty);
    if !sinks.is_empty() {
        let mut rows = vec![vec![
            "SINK".to_string(),
            "TYPE".into(),
            "QUEUED".into(),
            "QUEUED BYTES".into(),
            "OLDEST".into(),
            "SENT".into(),
            "RETRIES".into(),
            "DROPPED".into(),
            "DEAD-LETTERED".into(),
            "LAST ERROR".into(),
        ]];
        for sink in sinks {
            rows.push(vec![
                text(&sink["name"]),
                text(&sink["type"]),
                text(&sink["queued_points"]),
                text(&sink["queued_bytes"]),
                sink["oldest_queued_age_ms"]
                    .as_u64()
                    .map(human_age)
                    .unwrap_or_else(|| "-".into()),
                text(&sink["sent_points"]),
                text(&sink["retries"]),
                text(&sink["dropped_points"]),
                text(&sink["dead_lettered_points"]),
                cut(sink["last_error"].as_str().unwrap_or("")),
            ]);
        }
        out.push('\n');
        out.push_str(&table(&rows));
    }

    let repos = status["git_repos"].as_array().unwrap_or(&empty);
    if !repos.is_empty() {
        let mut rows = vec![vec![
            "GIT REPO".to_string(),
            "URL".into(),
            "BRANCH".into(),
            "COMMIT".into(),
            "LAST PULL".into(),
            "LAST ERROR".into(),
        ]];
        for repo in repos {
            let commit = repo["commit"]
                .as_str()
                .map(|c| c.chars().take(12).collect());
            rows.push(vec![
                text(&repo["name"]),
                text(&repo["url"]),
                text(&repo["branch"]),
                commit.unwrap_or_else(|| "-".into()),
                repo["last_pull_unix_ms"]
                    .as_u64()
                    .map(|ms| format!("{} ago", human_age(now_ms.saturating_sub(ms))))
                    .unwrap_or_else(|| "never".into()),
                cut(repo["last_error"].as_str().unwrap_or("")),
            ]);
        }
        out.push('\n');
        out.push_str(&table(&rows));
    }
    if let Some(error) = status["last_reload_error"].as_str() {
        let _ = writeln!(
            out,
            "\nconfiguration errors (running inputs left as they were): {error}"
        );
    }

    let points = &status["points"];
    let _ = writeln!(
        out,
        "\npoints accepted: {}",
        per_category(&points["accepted"])
    );
    for (label, key) in [("fixed", "fixed"), ("rejected", "rejected")] {
        let reasons: Vec<String> = points[key]
            .as_array()
            .unwrap_or(&empty)
            .iter()
            .map(|r| {
                format!(
                    "{}/{}={}",
                    text(&r["category"]),
                    text(&r["reason"]),
                    text(&r["count"])
                )
            })
            .collect();
        if !reasons.is_empty() {
            let _ = writeln!(out, "points {label}: {}", reasons.join(" "));
        }
    }
    if wide && !full_errors.is_empty() {
        out.push_str("\nlast errors of plugins in full:\n");
        for (who, error) in &full_errors {
            let _ = writeln!(out, "--- {who}\n{}", error.trim_end());
        }
    }
    let lasterrors = status["lasterrors"].as_array().unwrap_or(&empty);
    if !lasterrors.is_empty() {
        out.push_str("\nlast errors reported by inputs:\n");
        for e in lasterrors {
            let message = text(&e["message"]);
            let shown = if wide { message } else { cut(&message) };
            let _ = writeln!(out, "  {}: {}", text(&e["input"]), shown);
        }
    }
    out
}

/// The inputs with instances: how many, how many have problems, lateness p99 (only
/// instances with problems are listed in the plugin table unless `--all`).
fn instance_summaries(inputs: &[Value]) -> String {
    let mut rows = vec![vec![
        "INPUT".to_string(),
        "INSTANCES".into(),
        "FAILING".into(),
        "QUARANTINED".into(),
        "DISABLED".into(),
        "LATENESS P99".into(),
    ]];
    for input in inputs {
        let summary = &input["instances_summary"];
        if summary.is_null() {
            continue;
        }
        let p99 = match &summary["lateness_p99_seconds"] {
            Value::Number(n) => format!("<= {} ms", n.as_f64().unwrap_or(0.0) * 1000.0),
            Value::Null => "-".into(),
            other => format!("> {}", text(other)),
        };
        rows.push(vec![
            text(&input["name"]),
            text(&summary["instances"]),
            text(&summary["failing"]),
            text(&summary["quarantined"]),
            text(&summary["disabled"]),
            p99,
        ]);
    }
    if rows.len() == 1 {
        return String::new();
    }
    format!("\n{}", table(&rows))
}

/// `metric=3 logging=1` (categories with points only; `0` if none).
fn per_category(points: &Value) -> String {
    let parts: Vec<String> = points
        .as_object()
        .map(|m| {
            m.iter()
                .filter(|(_, n)| n.as_u64().unwrap_or(0) > 0)
                .map(|(c, n)| format!("{c}={n}"))
                .collect()
        })
        .unwrap_or_default();
    if parts.is_empty() {
        "0".into()
    } else {
        parts.join(" ")
    }
}

/// The input's worker pid, or those of its processes (`processes = N`), `-` for none.
fn pids(input: &Value) -> String {
    let Some(workers) = input["workers"].as_array() else {
        return text(&input["worker_pid"]);
    };
    let pids: Vec<String> = workers.iter().map(|w| text(&w["worker_pid"])).collect();
    pids.join(",")
}

fn text(value: &Value) -> String {
    match value {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn one_line(text: &str) -> String {
    let line = text.lines().next().unwrap_or("");
    let mut shown: String = line.chars().take(80).collect();
    if shown.len() < line.len() || text.lines().nth(1).is_some() {
        shown.push('…');
    }
    shown
}

fn human_age(ms: u64) -> String {
    let s = ms / 1000;
    match s {
        0 => format!("{ms}ms"),
        1..=119 => format!("{s}s"),
        120..=7199 => format!("{}m", s / 60),
        7200..=172_799 => format!("{}h", s / 3600),
        _ => format!("{}d", s / 86_400),
    }
}

/// Left-aligned columns separated by two spaces.
fn table(rows: &[Vec<String>]) -> String {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(|cell| cell.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for row in rows {
        let mut line = String::new();
        for (c, cell) in row.iter().enumerate() {
            line.push_str(cell);
            if c + 1 < row.len() {
                let pad = widths[c] - cell.chars().count() + 2;
                line.extend(std::iter::repeat(' ').take(pad));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::render;

    #[test]
    fn renders_inputs_and_plugins() {
        let status = serde_json::json!({
            "version": "0.1.0", "uptime_seconds": 5, "http": {"listen": "127.0.0.1:9529"},
            "inputs": [{"name": "shop", "state": {"state": "running"}, "worker_pid": 42,
                        "restarts": 1, "last_error": null, "plugins": [
                {"id": "orders.Orders", "kind": "zenpython", "state": "idle", "runs": 3, "failures": 1, "timeouts": 0,
                 "skipped": 0, "last_success_unix_ms": null, "points": {"metric": 6, "logging": 0},
                 "rejected": 0}]}],
            "points": {"accepted": {"metric": 6}, "fixed": [], "rejected": []},
            "lasterrors": [{"input": "shop", "message": "db down"}]
        });
        let text = render(&status);
        assert!(text.contains("shop   running  42"), "{text}");
        assert!(text.contains("orders.Orders  zenpython"), "{text}");
        assert!(text.contains("metric=6"), "{text}");
        assert!(text.contains("never"), "{text}");
        assert!(text.contains("shop: db down"), "{text}");
    }

    #[test]
    fn renders_sinks_git_repos_and_reload_errors() {
        let status = serde_json::json!({
            "inputs": [], "points": {"accepted": {}, "fixed": [], "rejected": []},
            "sinks": [{"name": "vm", "type": "influxdb", "queued_points": 120,
                       "queued_bytes": 4096, "oldest_queued_age_ms": 65000, "sent_points": 900,
                       "retries": 3, "dropped_points": 0, "dead_lettered_points": 2,
                       "last_error": "connection refused"}],
            "git_repos": [{"name": "collectors", "url": "https://***@git.example/c.git",
                           "branch": "main", "commit": "0123456789abcdef0123",
                           "last_pull_unix_ms": null, "last_error": "timed out"}],
            "last_reload_error": "conf.d/x.conf:3: unknown key `intervl`"
        });
        let text = render(&status);
        let sink_row = text
            .lines()
            .find(|l| l.starts_with("vm "))
            .unwrap_or_default();
        for cell in [
            "influxdb",
            "120",
            "4096",
            "65s",
            "900",
            "3",
            "2",
            "connection refused",
        ] {
            assert!(
                sink_row.contains(cell),
                "{cell:?} missing from {sink_row:?}\n{text}"
            );
        }
        let repo_row = text
            .lines()
            .find(|l| l.starts_with("collectors "))
            .unwrap_or_default();
        for cell in [
            "https://***@git.example/c.git",
            "main",
            "0123456789ab",
            "never",
            "timed out",
        ] {
            assert!(
                repo_row.contains(cell),
                "{cell:?} missing from {repo_row:?}\n{text}"
            );
        }
        assert!(
            !repo_row.contains("0123456789abc"),
            "commit not shortened: {repo_row}"
        );
        assert!(
            text.contains("conf.d/x.conf:3: unknown key `intervl`"),
            "{text}"
        );
    }
}
