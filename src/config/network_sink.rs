//! `[[sinks]]` of the network types, `datakit` and `influxdb`: their model and the
//! reader that validates one table into it.
//!
//! Network sinks sit behind a disk buffer, so each needs a stable `name` (the buffer
//! lives in `data_dir/buffers/<name>/`): when `name` is not set it is derived from the
//! type and the destination (URL plus database or bucket), so reordering `[[sinks]]`
//! keeps every buffer with its sink, while pointing a sink elsewhere starts a new one.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::tree::{self, Node, Problem, Section, Value};
use super::values;

/// Keys every network sink accepts (beside `type` and `categories`): those
/// [`read_network`] reads.
pub(crate) const NETWORK_KEYS: &[&str] = &[
    "name",
    "url",
    "max_bytes",
    "batch_points",
    "flush_interval",
    "timeout",
    "retry_max_interval",
    "concurrency",
    "fsync",
    "ca_file",
];

/// Keys of an `influxdb` sink's write API: those [`read_influx_api`] reads.
pub(crate) const INFLUX_API_KEYS: &[&str] = &["db", "org", "bucket", "token"];

/// Keys of a sink's authorization and extra headers: those [`read_request_options`]
/// reads.
pub(crate) const REQUEST_KEYS: &[&str] =
    &["bearer_token_env", "username", "password_env", "headers"];

/// Default `max_bytes`: 512 MiB of disk buffer per sink.
pub const DEFAULT_BUFFER_MAX_BYTES: u64 = 512 << 20;
/// Default `batch_points`.
pub const DEFAULT_BATCH_POINTS: u64 = 5000;
/// Default `flush_interval`.
pub const DEFAULT_FLUSH_INTERVAL: Duration = Duration::from_secs(1);
/// Default `timeout`.
pub const DEFAULT_SINK_TIMEOUT: Duration = Duration::from_secs(30);
/// Default `retry_max_interval`.
pub const DEFAULT_RETRY_MAX_INTERVAL: Duration = Duration::from_secs(30);
/// Default `concurrency`: requests in flight at once per sink.
pub const DEFAULT_SINK_CONCURRENCY: usize = 2;
/// Largest `concurrency`.
pub const MAX_SINK_CONCURRENCY: u32 = 16;

/// Settings shared by the network sinks. `Debug` hides the URL's query (which may
/// hold a Dataway token).
#[derive(Clone, PartialEq, Eq)]
pub struct NetworkSinkConfig {
    /// Identity of the sink and of its buffer directory `data_dir/buffers/<name>/`.
    ///
    /// Key `name`, optional: letters, digits, `.`, `_`, `-`; unique among sinks.
    /// Default `<type>-<8 hex digits>`, a hash of the URL and the database/bucket.
    pub name: String,
    /// Base URL of the backend, `http://HOST:PORT` or `https://HOST:PORT` (a path
    /// prefix and, for DataKit or Dataway, a `?token=...` query may follow).
    ///
    /// Key `url`, required.
    pub url: String,
    /// Largest size of the disk buffer; beyond it the oldest points are dropped.
    ///
    /// Key `max_bytes`, size, default 512 MiB.
    pub max_bytes: u64,
    /// Largest number of points per request.
    ///
    /// Key `batch_points`, positive integer, default 5000.
    pub batch_points: u64,
    /// How long a partly filled batch may wait for more points before it is sent.
    ///
    /// Key `flush_interval`, duration, default `"1s"`.
    pub flush_interval: Duration,
    /// Time limit of one request (connect, send, answer).
    ///
    /// Key `timeout`, duration, default `"30s"`.
    pub timeout: Duration,
    /// Cap of the exponential backoff between retries of a failed request.
    ///
    /// Key `retry_max_interval`, duration, default `"30s"`.
    pub retry_max_interval: Duration,
    /// How many batches may be in flight at once, each retried on its own; the
    /// buffer acknowledges them in order (docs/BUFFER.md, "Delivery").
    ///
    /// Key `concurrency`, integer 1 to 16, default 2.
    pub concurrency: usize,
    /// When buffered points are synced to disk: `None` before each append is
    /// acknowledged (group commit); `Some(d)` in the background at most `d` after it
    /// (acknowledged appends then survive an agent crash or SIGKILL, but a power loss
    /// may lose the last `d`).
    ///
    /// Key `fsync`, `"always"` (default) or a duration such as `"100ms"`.
    pub fsync_every: Option<Duration>,
    /// Extra certificate authorities (PEM) trusted for `https://` URLs, beside the
    /// system's: for a backend with a private or self-signed certificate.
    ///
    /// Key `ca_file`, optional path, relative to the configuration file's directory.
    pub ca_file: Option<PathBuf>,
}

impl fmt::Debug for NetworkSinkConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NetworkSinkConfig")
            .field("name", &self.name)
            .field("url", &redact_query(&self.url))
            .field("max_bytes", &self.max_bytes)
            .field("batch_points", &self.batch_points)
            .field("flush_interval", &self.flush_interval)
            .field("timeout", &self.timeout)
            .field("retry_max_interval", &self.retry_max_interval)
            .field("concurrency", &self.concurrency)
            .field("fsync_every", &self.fsync_every)
            .field("ca_file", &self.ca_file)
            .finish()
    }
}

/// Query parameters whose values are never secret, shown as they are.
const PLAIN_QUERY_KEYS: &[&str] = &["db", "precision", "bucket", "org", "rp", "consistency"];

/// The URL with the value of every query parameter that may be a secret (a Dataway
/// `token`, InfluxDB v1 `u`/`p`, anything not in [`PLAIN_QUERY_KEYS`]) replaced by
/// `<redacted>`, for logs, status and debug output. A URL without a query is shown
/// as it is.
pub fn redact_query(url: &str) -> String {
    // A bare `?word` parameter may be the secret itself: it is redacted too.
    let Some((base, query)) = url.split_once('?') else {
        return url.to_string();
    };
    let pairs: Vec<String> = query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((key, _)) if PLAIN_QUERY_KEYS.contains(&key) => pair.to_string(),
            Some((key, _)) => format!("{key}=<redacted>"),
            None if pair.is_empty() => String::new(),
            None => "<redacted>".to_string(),
        })
        .collect();
    format!("{base}?{}", pairs.join("&"))
}

/// Which InfluxDB write API an `influxdb` sink uses. `Debug` hides the token.
#[derive(Clone, PartialEq, Eq)]
pub enum InfluxApi {
    /// v1: `POST <url>/write?db=<db>&precision=ns` (key `db`).
    V1 { db: String },
    /// v2: `POST <url>/api/v2/write?org=<org>&bucket=<bucket>&precision=ns` with
    /// `Authorization: Token <token>` (keys `bucket`, required; `org`, `token`,
    /// optional — VictoriaMetrics needs neither).
    V2 {
        org: Option<String>,
        bucket: String,
        token: Option<String>,
    },
}

impl fmt::Debug for InfluxApi {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InfluxApi::V1 { db } => f.debug_struct("V1").field("db", db).finish(),
            InfluxApi::V2 { org, bucket, token } => f
                .debug_struct("V2")
                .field("org", org)
                .field("bucket", bucket)
                .field("token", &token.as_ref().map(|_| "<redacted>"))
                .finish(),
        }
    }
}

/// Reads the keys every network sink has. `destination` (database or bucket) goes into
/// the default name.
pub(crate) fn read_network(
    section: &mut Section<'_, '_>,
    kind: &str,
    destination: &str,
    base: &Path,
) -> Option<NetworkSinkConfig> {
    let name = section.get("name", |node| {
        let name = tree::non_empty_string(node)?;
        if name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
            && !name.starts_with('.')
        {
            Ok(name)
        } else {
            Err(Problem::from(format!(
                "{name:?} is not a valid sink name (letters, digits, '.', '_' and '-'; not starting with '.')"
            )))
        }
    });
    let url = section.require("url", |node| {
        let url = tree::non_empty_string(node)?;
        if url.starts_with("http://") || url.starts_with("https://") {
            Ok(url)
        } else {
            Err(Problem::from(format!(
                "{url:?} is not an http:// or https:// URL"
            )))
        }
    })?;
    let max_bytes = section
        .get("max_bytes", values::byte_size)
        .unwrap_or(DEFAULT_BUFFER_MAX_BYTES);
    let batch_points = section
        .get("batch_points", positive_integer)
        .unwrap_or(DEFAULT_BATCH_POINTS);
    let flush_interval = section
        .get("flush_interval", values::duration)
        .unwrap_or(DEFAULT_FLUSH_INTERVAL);
    let timeout = section
        .get("timeout", values::duration)
        .unwrap_or(DEFAULT_SINK_TIMEOUT);
    let retry_max_interval = section
        .get("retry_max_interval", values::duration)
        .unwrap_or(DEFAULT_RETRY_MAX_INTERVAL);
    let concurrency = section
        .get("concurrency", |node| {
            super::instances::count_up_to(node, MAX_SINK_CONCURRENCY, "requests")
        })
        .map_or(DEFAULT_SINK_CONCURRENCY, |n| n as usize);
    let fsync_every = section
        .get("fsync", |node| {
            let text = tree::string(node)?;
            if text == "always" {
                Ok(None)
            } else {
                values::parse_duration(&text)
                    .map(Some)
                    .map_err(|e| Problem::from(format!("{e} (expected \"always\" or a duration)")))
            }
        })
        .flatten();
    let ca_file = section.get("ca_file", |node| {
        let path = values::resolve(base, tree::non_empty_string(node)?);
        let pem = std::fs::read_to_string(&path)
            .map_err(|e| Problem::from(format!("cannot read {}: {e}", path.display())))?;
        if !pem.contains("-----BEGIN CERTIFICATE-----") {
            return Err(Problem::from(format!(
                "{} holds no PEM certificate (-----BEGIN CERTIFICATE-----)",
                path.display()
            )));
        }
        Ok(path)
    });
    let name = name.unwrap_or_else(|| default_name(kind, &url, destination));
    Some(NetworkSinkConfig {
        name,
        url,
        max_bytes,
        batch_points,
        flush_interval,
        timeout,
        retry_max_interval,
        concurrency,
        fsync_every,
        ca_file,
    })
}

/// Reads an `influxdb` sink's API keys: `db` for v1, or `bucket` (with optional `org`
/// and `token`) for v2.
pub(crate) fn read_influx_api(section: &mut Section<'_, '_>) -> Option<InfluxApi> {
    let db = section.get_located("db", tree::non_empty_string);
    let org = section.get("org", tree::non_empty_string);
    let bucket = section.get("bucket", tree::non_empty_string);
    let token = section.get("token", tree::non_empty_string);
    match (db, bucket) {
        (Some((db, span)), bucket) => {
            if bucket.is_some() || org.is_some() || token.is_some() {
                section.invalid(
                    &span,
                    "db",
                    "`db` selects the v1 API; `org`, `bucket` and `token` belong to the v2 API: set one or the other",
                );
                return None;
            }
            Some(InfluxApi::V1 { db })
        }
        (None, Some(bucket)) => Some(InfluxApi::V2 { org, bucket, token }),
        (None, None) => {
            let span = section.span().clone();
            section.invalid(
                &span,
                "db",
                "missing `db` (v1 API) or `bucket` (v2 API) in [[sinks]] with type = \"influxdb\"",
            );
            None
        }
    }
}

impl InfluxApi {
    /// The database or bucket, for the default sink name.
    pub(crate) fn destination(&self) -> &str {
        match self {
            InfluxApi::V1 { db } => db,
            InfluxApi::V2 { bucket, .. } => bucket,
        }
    }
}

fn positive_integer(node: &Node) -> Result<u64, Problem> {
    match node.value {
        Value::Integer(n) if n > 0 => Ok(n.unsigned_abs()),
        _ => Err(Problem::expected("a positive integer", node)),
    }
}

/// `<kind>-<fnv1a32(url + " " + destination) in hex>`: stable across versions.
pub(crate) fn default_name(kind: &str, url: &str, destination: &str) -> String {
    let mut hash: u32 = 0x811c_9dc5;
    for byte in url
        .bytes()
        .chain(std::iter::once(b' '))
        .chain(destination.bytes())
    {
        hash ^= u32::from(byte);
        hash = hash.wrapping_mul(0x0100_0193);
    }
    format!("{kind}-{hash:08x}")
}

/// How a sink authenticates to its backend. The secrets come from environment
/// variables named in the file, read when the configuration is read. `Debug` hides
/// them.
#[derive(Clone, Default, PartialEq, Eq)]
pub enum HttpAuth {
    /// No `Authorization` header.
    #[default]
    None,
    /// `Authorization: Bearer <token>` (key `bearer_token_env`: the variable's name).
    Bearer(String),
    /// `Authorization: Basic base64(<username>:<password>)` (keys `username` and
    /// `password_env`: the variable holding the password).
    Basic { username: String, password: String },
}

impl fmt::Debug for HttpAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HttpAuth::None => f.write_str("None"),
            HttpAuth::Bearer(_) => f.write_str("Bearer(<redacted>)"),
            HttpAuth::Basic { username, .. } => f
                .debug_struct("Basic")
                .field("username", username)
                .field("password", &"<redacted>")
                .finish(),
        }
    }
}

/// Authentication and extra headers of a sink's requests.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RequestOptions {
    /// Keys `bearer_token_env`, or `username` with `password_env`; default none.
    pub auth: HttpAuth,
    /// Extra headers sent with every request, e.g. a tenant header
    /// (`X-Scope-OrgID` for Mimir and Cortex, `THANOS-TENANT` for Thanos receive).
    ///
    /// Key `headers`, optional table of strings. Headers the sink sets itself
    /// (`Content-Type`, `Content-Encoding`, `Authorization`, ...) are refused.
    pub headers: BTreeMap<String, String>,
}

/// Headers a sink sets itself, which `headers` may not override.
const RESERVED_HEADERS: &[&str] = &[
    "authorization",
    "content-type",
    "content-encoding",
    "content-length",
    "host",
    "transfer-encoding",
    "x-prometheus-remote-write-version",
];

/// Reads `bearer_token_env`, `username`, `password_env` and `headers`.
pub(crate) fn read_request_options(section: &mut Section<'_, '_>) -> RequestOptions {
    let from_env = |node: &Node| {
        let var = tree::non_empty_string(node)?;
        match std::env::var(&var) {
            Ok(value) if !value.is_empty() => Ok(value),
            Ok(_) => Err(Problem::from(format!(
                "environment variable {var} is empty"
            ))),
            Err(_) => Err(Problem::from(format!(
                "environment variable {var} is not set"
            ))),
        }
    };
    let bearer = section.get_located("bearer_token_env", from_env);
    let username = section.get_located("username", tree::non_empty_string);
    let password = section.get_located("password_env", from_env);
    let headers = section
        .get("headers", |node| {
            let headers = tree::string_map(node)?;
            for name in headers.keys() {
                if !name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
                {
                    return Err(Problem::from(format!(
                        "{name:?} is not a valid HTTP header name"
                    )));
                }
                if RESERVED_HEADERS.contains(&name.to_ascii_lowercase().as_str()) {
                    return Err(Problem::from(format!(
                        "header {name:?} is set by the sink itself (use bearer_token_env or username/password_env for authorization)"
                    )));
                }
            }
            for (name, value) in &headers {
                if value.bytes().any(|b| b < 0x20 && b != b'\t' || b == 0x7f) {
                    return Err(Problem::from(format!(
                        "the value of header {name:?} holds a control character"
                    )));
                }
            }
            Ok(headers)
        })
        .unwrap_or_default();
    let auth = match (bearer, username, password) {
        (None, None, None) => HttpAuth::None,
        (Some((token, _)), None, None) => HttpAuth::Bearer(token),
        (None, Some((username, _)), Some((password, _))) => HttpAuth::Basic { username, password },
        (Some((_, span)), Some(_), _) | (Some((_, span)), _, Some(_)) => {
            section.invalid(
                &span,
                "bearer_token_env",
                "set either `bearer_token_env` or `username` with `password_env`, not both",
            );
            HttpAuth::None
        }
        (None, Some((_, span)), None) => {
            section.invalid(&span, "username", "needs `password_env` too");
            HttpAuth::None
        }
        (None, None, Some((_, span))) => {
            section.invalid(&span, "password_env", "needs `username` too");
            HttpAuth::None
        }
    };
    RequestOptions { auth, headers }
}

#[cfg(test)]
mod redaction_tests {
    use super::redact_query;

    #[test]
    fn only_secret_query_values_are_redacted() {
        assert_eq!(redact_query("http://h:8086/write"), "http://h:8086/write");
        assert_eq!(
            redact_query("http://h/write?db=x&precision=ns&u=me&p=pw"),
            "http://h/write?db=x&precision=ns&u=<redacted>&p=<redacted>"
        );
        assert_eq!(
            redact_query("https://openway/v1/write/metric?token=tkn_1"),
            "https://openway/v1/write/metric?token=<redacted>"
        );
        assert_eq!(redact_query("http://h/?s3cret"), "http://h/?<redacted>");
    }
}
