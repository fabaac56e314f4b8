//! `pythond tap`: prints the points a running agent accepts, live, from its
//! `GET /v1/tap` stream (docs/HTTP.md), until interrupted or the agent stops.
//!
//! Like `pythond status`, one plain HTTP/1.0 request over a `TcpStream`: the agent
//! streams NDJSON and closes the connection when it stops. Points go to stdout (as
//! the agent sent them with `--format json`, one line of line protocol each with
//! `--format lp`); what the tap missed because this reader was too slow goes to
//! stderr, so piping the points elsewhere stays clean.

use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

use serde_json::Value;

use crate::api_target::ApiTarget;

/// How long to wait for the agent to accept the connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// A stream silent this long is dead (the agent sends a heartbeat every 5 s).
const SILENCE_LIMIT: Duration = Duration::from_secs(30);

/// What to tap.
#[derive(Clone, Debug, Default)]
pub struct TapRequest {
    pub input: Option<String>,
    /// A category name (`metric`, `logging`, ...), checked by the agent.
    pub category: Option<String>,
    /// `json` or `lp`.
    pub format: String,
}

/// Why the tap ended abnormally.
#[derive(Debug, thiserror::Error)]
pub enum TapError {
    #[error("no pythond agent is answering on {addr} ({source}); is `pythond run` running, and is [http] listen this address? (use --addr HOST:PORT or --config FILE)")]
    NotRunning {
        addr: String,
        source: std::io::Error,
    },
    #[error("{addr} refused the tap: HTTP {status}: {message}")]
    Refused {
        addr: String,
        status: u16,
        message: String,
    },
    #[error("{addr} is not a pythond agent: {detail}")]
    NotPythond { addr: String, detail: String },
    #[error("the tap on {addr} broke off: {source}")]
    Broken {
        addr: String,
        source: std::io::Error,
    },
    #[error("cannot write the points: {0}")]
    Output(std::io::Error),
}

/// Streams the points to `out` and missed-point notices to `notices` until the agent
/// closes the stream (then `Ok`).
pub fn run(
    target: &ApiTarget,
    request: &TapRequest,
    out: &mut dyn Write,
    notices: &mut dyn Write,
) -> Result<(), TapError> {
    let addr = target.addr.clone();
    let not_running = |source| TapError::NotRunning {
        addr: addr.clone(),
        source,
    };
    let socket = addr
        .to_socket_addrs()
        .map_err(not_running)?
        .next()
        .ok_or_else(|| not_running(std::io::Error::other("the address resolves to nothing")))?;
    let stream = TcpStream::connect_timeout(&socket, CONNECT_TIMEOUT).map_err(not_running)?;
    stream
        .set_read_timeout(Some(SILENCE_LIMIT))
        .map_err(not_running)?;
    let mut query = format!("format={}", encode(&request.format));
    if let Some(input) = &request.input {
        let _ = write!(query, "&input={}", encode(input));
    }
    if let Some(category) = &request.category {
        let _ = write!(query, "&category={}", encode(category));
    }
    let mut head =
        format!("GET /v1/tap?{query} HTTP/1.0\r\nHost: {addr}\r\nAccept: application/x-ndjson\r\n");
    if let Some(token) = &target.token {
        let _ = write!(head, "Authorization: Bearer {token}\r\n");
    }
    head.push_str("\r\n");
    (&stream).write_all(head.as_bytes()).map_err(not_running)?;

    let broken = |source| TapError::Broken {
        addr: addr.clone(),
        source,
    };
    let mut reader = BufReader::new(stream);
    let mut status_line = String::new();
    reader.read_line(&mut status_line).map_err(broken)?;
    let status: Option<u16> = status_line
        .strip_prefix("HTTP/")
        .and_then(|rest| rest.split_whitespace().nth(1))
        .and_then(|code| code.parse().ok());
    let Some(status) = status else {
        return Err(TapError::NotPythond {
            addr: addr.clone(),
            detail: "it does not speak HTTP".into(),
        });
    };
    let mut content_type = String::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).map_err(broken)? == 0 || line.trim().is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            if name.eq_ignore_ascii_case("content-type") {
                content_type = value.trim().to_string();
            }
        }
    }
    if status != 200 {
        let mut body = String::new();
        let _ = std::io::Read::read_to_string(&mut reader, &mut body);
        let message = serde_json::from_str::<Value>(&body)
            .ok()
            .and_then(|v| v["message"].as_str().map(str::to_string));
        return Err(match message {
            Some(message) => TapError::Refused {
                addr: addr.clone(),
                status,
                message,
            },
            None => TapError::NotPythond {
                addr: addr.clone(),
                detail: format!(
                    "it answered HTTP {status} with {content_type:?}, not a tap stream"
                ),
            },
        });
    }
    if !content_type.starts_with("application/x-ndjson") {
        return Err(TapError::NotPythond {
            addr: addr.clone(),
            detail: format!("it answered {content_type:?}, not a tap stream"),
        });
    }
    let mut line = String::new();
    loop {
        line.clear();
        if reader.read_line(&mut line).map_err(broken)? == 0 {
            return Ok(());
        }
        let Ok(event) = serde_json::from_str::<Value>(&line) else {
            continue;
        };
        if let Some(dropped) = event["dropped"].as_u64() {
            let _ = writeln!(notices, "tap: {dropped} points missed (this reader was too slow; the agent's sinks got them)");
        } else if event.get("tap").is_some() {
            let _ = writeln!(
                notices,
                "tap: streaming accepted points from {addr} (Ctrl-C to stop)"
            );
        } else if let Some(lp) = event["lp"].as_str() {
            writeln!(out, "{lp}").map_err(TapError::Output)?;
        } else if event.get("measurement").is_some() {
            out.write_all(line.as_bytes()).map_err(TapError::Output)?;
        }
        out.flush().map_err(TapError::Output)?;
    }
}

/// Percent-encodes a query value.
fn encode(text: &str) -> String {
    let mut out = String::new();
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-_.~".contains(&byte) {
            out.push(byte as char);
        } else {
            let _ = write!(out, "%{byte:02X}");
        }
    }
    out
}
