//! The main configuration file, `pythond.toml`: the model ([`Config`] and its
//! sections), the built-in defaults, and the reader that validates a file into it.
//!
//! Every section is optional; an absent file means "all defaults, rooted at the
//! working directory", which is what makes `pythond run` work from a checkout with no
//! configuration at all. Relative paths are resolved here, once, against the
//! directory of the file, so the rest of the agent only ever sees absolute paths.
//!
//! `[[sinks]]` tables are read here too, each by its type's reader found in the sink
//! registry; their model is in `sinks.rs`.

use std::collections::BTreeMap;
use std::fmt;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use serde::de::value::{Error as ValueError, StrDeserializer};
use serde::Deserialize;

use crate::point::Category;

use super::error::ConfigError;
use super::sinks::{SinkConfig, SinkKind};
use super::tree::{self, Doc, Node, Problem, Section, Value};
use super::values;
use crate::sink::read_context::ReadContext;
use crate::sink::registry;

/// Name of the main configuration file looked for in the working directory.
pub const DEFAULT_CONFIG_FILE: &str = "pythond.toml";
/// Default `[http] listen`.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:9529";
/// Default `[http] max_body`: 32 MiB.
pub const DEFAULT_MAX_BODY_BYTES: u64 = 32 << 20;
/// Default `[http] request_timeout`: 30 seconds.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Default `[http] max_concurrent_requests`.
pub const DEFAULT_MAX_CONCURRENT_REQUESTS: usize = 64;
/// Default `[http] min_body_rate`: 1 KiB per second (after a grace period).
pub const DEFAULT_MIN_BODY_RATE: u64 = 1024;
/// Default `[http] max_points_per_request`.
pub const DEFAULT_MAX_POINTS_PER_REQUEST: usize = 1_000_000;
/// Default `[git_repos] pull_interval`: one minute.
pub const DEFAULT_PULL_INTERVAL: Duration = Duration::from_secs(60);

const TOP_KEYS: &[&str] = &["agent", "global_tags", "http", "sinks", "git_repos"];
const AGENT_KEYS: &[&str] = &[
    "data_dir",
    "conf_dir",
    "python_dir",
    "hostname",
    "log_level",
    "log_format",
    "shutdown_timeout",
    "watch",
];
const HTTP_KEYS: &[&str] = &[
    "listen",
    "token",
    "max_body",
    "request_timeout",
    "max_concurrent_requests",
    "min_body_rate",
    "max_points_per_request",
];
const SINK_COMMON_KEYS: &[&str] = &["type", "categories"];
const GIT_KEYS: &[&str] = &["pull_interval", "repo"];
const GIT_REPO_KEYS: &[&str] = &[
    "enable",
    "url",
    "branch",
    "ssh_private_key_path",
    "ssh_private_key_password",
    "token_env",
];

/// The whole main configuration, validated, with defaults applied and every path
/// absolute.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// The main configuration file this was read from (absolute), or `None` when the
    /// built-in defaults are in use.
    pub source: Option<PathBuf>,
    /// `[agent]`: directories, host name, logging.
    pub agent: AgentConfig,
    /// `[global_tags]`: tags added to every point (unless a report sets
    /// `ignore_global_tags`). Default: none.
    pub global_tags: BTreeMap<String, String>,
    /// `[http]`: the DataKit-compatible HTTP API.
    pub http: HttpConfig,
    /// `[[sinks]]`: where points go. Never empty: with no `[[sinks]]` in the file, a
    /// single stdout sink in line protocol.
    pub sinks: Vec<SinkConfig>,
    /// `[git_repos]`: repositories holding `conf.d/` and `python.d/` to pull.
    pub git_repos: GitReposConfig,
}

/// `[agent]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AgentConfig {
    /// Where the agent keeps its state (disk buffers, git checkouts).
    ///
    /// Key `data_dir`, default `"data"`; relative to the configuration file's
    /// directory (or the working directory without a file). Always absolute here.
    pub data_dir: PathBuf,
    /// Directory scanned recursively for `*.conf` input files.
    ///
    /// Key `conf_dir`, default `"conf.d"`; resolved like `data_dir`.
    pub conf_dir: PathBuf,
    /// Directory that inputs' `dirs` are relative to.
    ///
    /// Key `python_dir`, default `"python.d"`; resolved like `data_dir`.
    pub python_dir: PathBuf,
    /// The `host` this agent reports as.
    ///
    /// Key `hostname`, default: the machine's host name (`gethostname`).
    pub hostname: String,
    /// Log filter: a level (`info`) or `tracing` directives (`info,pythond=debug`).
    /// `RUST_LOG` overrides it.
    ///
    /// Key `log_level`, optional (the agent's default applies when `None`).
    pub log_level: Option<String>,
    /// Log line format.
    ///
    /// Key `log_format`, `"text"` (default) or `"json"`.
    pub log_format: LogFormat,
    /// How long runs in flight may take to finish after SIGINT/SIGTERM before their
    /// workers are killed (and how long a reloaded input's old worker gets).
    ///
    /// Key `shutdown_timeout`, duration, default [`DEFAULT_SHUTDOWN_TIMEOUT`] (30 s),
    /// greater than zero.
    pub shutdown_timeout: Duration,
    /// Whether edits under `conf_dir` and `python_dir` apply at once (a file-system
    /// watcher reloads about a second after a change). `false` is for "edit, check,
    /// reload" operators: edits then wait for SIGHUP (`systemctl reload`).
    ///
    /// Key `watch`, boolean, default `true`.
    pub watch: bool,
}

/// Default of `[agent] shutdown_timeout`.
pub const DEFAULT_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(30);

/// How the agent writes its own log lines.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum LogFormat {
    /// Human-readable lines (`"text"`).
    #[default]
    Text,
    /// One JSON object per line (`"json"`).
    Json,
}

impl LogFormat {
    /// The configuration spelling: `"text"` or `"json"`.
    pub fn as_str(self) -> &'static str {
        match self {
            LogFormat::Text => "text",
            LogFormat::Json => "json",
        }
    }
}

impl FromStr for LogFormat {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            _ => Err(format!(
                "unknown log format {s:?} (expected one of: text, json)"
            )),
        }
    }
}

/// `[http]`. `Debug` never shows the token.
#[derive(Clone, PartialEq, Eq)]
pub struct HttpConfig {
    /// Address of the HTTP API, `HOST:PORT` (an IP or a host name; port 0 picks a
    /// free port). A non-loopback address requires `token`.
    ///
    /// Key `listen`, default `"127.0.0.1:9529"`.
    pub listen: String,
    /// Bearer token required by the API (header `Authorization: Bearer <token>` or
    /// query `token=`).
    ///
    /// Key `token`, optional; required when `listen` is not loopback.
    pub token: Option<String>,
    /// Largest accepted request body (after decompression); larger bodies get 413.
    ///
    /// Key `max_body`: bytes as an integer, or a string with a unit (`"32MiB"`,
    /// `"512KB"`). Default 32 MiB.
    pub max_body_bytes: u64,
    /// Longest a request may take, body upload included; slower ones get 408.
    ///
    /// Key `request_timeout`, a duration. Default `"30s"`.
    pub request_timeout: Duration,
    /// Requests served at the same time; more get 503 at once instead of queueing.
    ///
    /// Key `max_concurrent_requests`, a positive integer. Default 64.
    pub max_concurrent_requests: usize,
    /// Slowest a request body may arrive, in bytes per second, once the first few
    /// seconds have passed (docs/HTTP.md); a slower upload gets 408. 0 turns it off.
    ///
    /// Key `min_body_rate`, a size per second. Default `"1KiB"`.
    pub min_body_rate: u64,
    /// Most points one write request may carry; a larger body gets 413 before any of
    /// its points is accepted.
    ///
    /// Key `max_points_per_request`, a positive integer. Default 1,000,000.
    pub max_points_per_request: usize,
}

impl HttpConfig {
    /// Whether `listen` only accepts connections from this machine (a loopback IP
    /// or `localhost`).
    pub fn is_loopback(&self) -> bool {
        values::listen_is_loopback(&self.listen)
    }
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            listen: DEFAULT_LISTEN.to_owned(),
            token: None,
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            max_concurrent_requests: DEFAULT_MAX_CONCURRENT_REQUESTS,
            min_body_rate: DEFAULT_MIN_BODY_RATE,
            max_points_per_request: DEFAULT_MAX_POINTS_PER_REQUEST,
        }
    }
}

impl fmt::Debug for HttpConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpConfig")
            .field("listen", &self.listen)
            .field("token", &self.token.as_ref().map(|_| REDACTED))
            .field("max_body_bytes", &self.max_body_bytes)
            .field("request_timeout", &self.request_timeout)
            .field("max_concurrent_requests", &self.max_concurrent_requests)
            .field("min_body_rate", &self.min_body_rate)
            .field("max_points_per_request", &self.max_points_per_request)
            .finish()
    }
}

/// Shown by `Debug` instead of secrets.
const REDACTED: &str = "<redacted>";

/// `[git_repos]`: used by the git sync.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GitReposConfig {
    /// How often every enabled repository is fetched.
    ///
    /// Key `pull_interval`, duration, default `"1m"`.
    pub pull_interval: Duration,
    /// The `[[git_repos.repo]]` entries, in file order (disabled ones included).
    pub repos: Vec<GitRepoConfig>,
}

impl Default for GitReposConfig {
    fn default() -> Self {
        GitReposConfig {
            pull_interval: DEFAULT_PULL_INTERVAL,
            repos: Vec::new(),
        }
    }
}

/// One `[[git_repos.repo]]`. `Debug` never shows the key password, nor a password
/// in the URL.
#[derive(Clone, PartialEq, Eq)]
pub struct GitRepoConfig {
    /// Whether to sync this repository.
    ///
    /// Key `enable`, boolean, default `true`.
    pub enable: bool,
    /// Clone URL: `https://...`, `ssh://...` or `git@host:path`.
    ///
    /// Key `url`, required.
    pub url: String,
    /// Branch to follow.
    ///
    /// Key `branch`, optional (the remote's default branch when `None`).
    pub branch: Option<String>,
    /// Private key for SSH URLs; relative to the configuration file's directory.
    ///
    /// Key `ssh_private_key_path`, optional.
    pub ssh_private_key_path: Option<PathBuf>,
    /// Passphrase of that key.
    ///
    /// Key `ssh_private_key_password`, optional; needs `ssh_private_key_path`.
    pub ssh_private_key_password: Option<String>,
    /// Name of an environment variable holding the password or access token for an
    /// `http(s)://` URL (user: the URL's user name, else `git`). Keeps the secret out
    /// of the file. Not a DataKit key.
    ///
    /// Key `token_env`, optional.
    pub token_env: Option<String>,
}

impl fmt::Debug for GitRepoConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GitRepoConfig")
            .field("enable", &self.enable)
            .field("url", &super::git_url::redact_url(&self.url))
            .field("branch", &self.branch)
            .field("ssh_private_key_path", &self.ssh_private_key_path)
            .field(
                "ssh_private_key_password",
                &self.ssh_private_key_password.as_ref().map(|_| REDACTED),
            )
            .field("token_env", &self.token_env)
            .finish()
    }
}

impl Config {
    /// The built-in defaults, with relative paths rooted at `base_dir` (which should
    /// be absolute): `data/`, `conf.d/`, `python.d/`, the machine's host name,
    /// `127.0.0.1:9529`, one stdout sink in line protocol, no git repositories.
    pub fn defaults(base_dir: &Path) -> Config {
        Config {
            source: None,
            agent: AgentConfig {
                data_dir: values::resolve(base_dir, "data"),
                conf_dir: values::resolve(base_dir, "conf.d"),
                python_dir: values::resolve(base_dir, "python.d"),
                hostname: system_hostname(),
                log_level: None,
                log_format: LogFormat::Text,
                shutdown_timeout: DEFAULT_SHUTDOWN_TIMEOUT,
                watch: true,
            },
            global_tags: BTreeMap::new(),
            http: HttpConfig::default(),
            sinks: vec![SinkConfig::default()],
            git_repos: GitReposConfig::default(),
        }
    }

    /// `[global_tags]` plus `host` (unless `[global_tags]` sets it), as DataKit adds
    /// them to every point.
    pub fn global_tags_with_host(&self) -> BTreeMap<String, String> {
        let mut tags = self.global_tags.clone();
        tags.entry("host".to_string())
            .or_insert_with(|| self.agent.hostname.clone());
        tags
    }
}

/// The machine's host name (`gethostname(2)`), or `"localhost"` if it has none.
pub fn system_hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: `buf` is valid for writes of `buf.len()` bytes, and gethostname writes
    // at most that many.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return "localhost".to_owned();
    }
    let len = buf.iter().position(|b| *b == 0).unwrap_or(buf.len());
    let name = String::from_utf8_lossy(&buf[..len]).trim().to_owned();
    if name.is_empty() {
        "localhost".to_owned()
    } else {
        name
    }
}

/// Loads the main configuration: `path` if given (a missing file is an error), else
/// `./pythond.toml` if it exists, else the built-in defaults rooted at the working
/// directory.
pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
    load_in(path, &current_dir()?)
}

/// [`load`] with an explicit working directory (relative paths are taken from it).
pub(crate) fn load_in(path: Option<&Path>, cwd: &Path) -> Result<Config, ConfigError> {
    let file = path.unwrap_or(Path::new(DEFAULT_CONFIG_FILE));
    match fs::read_to_string(cwd.join(file)) {
        Ok(text) => parse_main_in(&text, file, cwd),
        Err(err) if path.is_none() && err.kind() == io::ErrorKind::NotFound => {
            Ok(Config::defaults(cwd))
        }
        Err(err) => Err(ConfigError::io(file, err)),
    }
}

fn current_dir() -> Result<PathBuf, ConfigError> {
    std::env::current_dir().map_err(|e| ConfigError::io(Path::new("."), e))
}

/// Parses the text of a main configuration file. `file` names the file in error
/// messages, and its directory is the base of relative paths; `Config::source` is
/// set to its absolute form.
pub fn parse_main(text: &str, file: &Path) -> Result<Config, ConfigError> {
    parse_main_in(text, file, &current_dir()?)
}

/// [`parse_main`] with an explicit working directory (for a relative `file`).
pub(crate) fn parse_main_in(text: &str, file: &Path, cwd: &Path) -> Result<Config, ConfigError> {
    read_main(text, file, cwd, |doc, config| doc.finish(config), |e| e)
}

/// Loads the main configuration like [`load`], with every problem of the file rather
/// than the first only (for `pythond config check`).
pub fn load_all(path: Option<&Path>) -> Result<Config, Vec<ConfigError>> {
    let cwd = current_dir().map_err(|e| vec![e])?;
    let file = path.unwrap_or(Path::new(DEFAULT_CONFIG_FILE));
    match fs::read_to_string(cwd.join(file)) {
        Ok(text) => read_main(
            &text,
            file,
            &cwd,
            |doc, config| doc.finish_all(config),
            |e| vec![e],
        ),
        Err(err) if path.is_none() && err.kind() == io::ErrorKind::NotFound => {
            Ok(Config::defaults(&cwd))
        }
        Err(err) => Err(vec![ConfigError::io(file, err)]),
    }
}

/// Reads the main file's sections; `finish` decides how many problems come back.
fn read_main<E>(
    text: &str,
    file: &Path,
    cwd: &Path,
    finish: impl FnOnce(Doc<'_>, Config) -> Result<Config, E>,
    syntax: fn(ConfigError) -> E,
) -> Result<Config, E> {
    let source = values::resolve(cwd, file);
    let base = source
        .parent()
        .map_or_else(|| PathBuf::from("/"), Path::to_path_buf);
    let (doc, root) = Doc::parse(text, file).map_err(syntax)?;

    let mut config = Config::defaults(&base);
    config.source = Some(source);

    let mut top = Section::root(&doc, root, TOP_KEYS);
    if let Some(mut section) = top.table("agent", "[agent]", AGENT_KEYS) {
        read_agent(&mut section, &base, &mut config.agent);
        section.finish();
    }
    if let Some(mut section) = top.table("global_tags", "[global_tags]", &[]) {
        config.global_tags = read_global_tags(&mut section);
    }
    if let Some(mut section) = top.table("http", "[http]", HTTP_KEYS) {
        read_http(&mut section, &mut config.http);
        section.finish();
    }
    let mut agent_tags: Vec<String> = config.global_tags.keys().cloned().collect();
    if !agent_tags.iter().any(|t| t == "host") {
        agent_tags.push("host".to_string());
    }
    let context = ReadContext {
        base: &base,
        agent_tags: &agent_tags,
        file_paths: Default::default(),
    };
    let sinks = read_sinks(top.tables("sinks", "[[sinks]]", SINK_COMMON_KEYS), &context);
    if !sinks.is_empty() {
        config.sinks = sinks;
    }
    if let Some(mut section) = top.table("git_repos", "[git_repos]", GIT_KEYS) {
        read_git_repos(&mut section, &base, &mut config.git_repos);
        section.finish();
    }
    top.finish();
    finish(doc, config)
}

fn read_agent(section: &mut Section<'_, '_>, base: &Path, agent: &mut AgentConfig) {
    let path = |node: &Node| tree::non_empty_string(node).map(|p| values::resolve(base, &p));
    if let Some(dir) = section.get("data_dir", path) {
        agent.data_dir = dir;
    }
    if let Some(dir) = section.get("conf_dir", path) {
        agent.conf_dir = dir;
    }
    if let Some(dir) = section.get("python_dir", path) {
        agent.python_dir = dir;
    }
    if let Some(hostname) = section.get("hostname", tree::non_empty_string) {
        agent.hostname = hostname;
    }
    if let Some(timeout) = section.get("shutdown_timeout", values::duration) {
        agent.shutdown_timeout = timeout;
    }
    if let Some(watch) = section.get("watch", tree::boolean) {
        agent.watch = watch;
    }
    agent.log_level = section.get("log_level", |node| {
        let level = tree::string(node)?;
        values::check_log_level(&level)?;
        Ok(level)
    });
    if let Some(format) = section.get("log_format", |node| {
        Ok(tree::string(node)?.parse::<LogFormat>()?)
    }) {
        agent.log_format = format;
    }
}

fn read_global_tags(section: &mut Section<'_, '_>) -> BTreeMap<String, String> {
    let mut tags = BTreeMap::new();
    for entry in section.drain() {
        match tree::check_tag(&entry) {
            Ok(()) => {
                if let Value::String(value) = entry.node.value {
                    tags.insert(entry.key, value);
                }
            }
            Err(message) => section.invalid(&entry.node.span, &entry.key, &message),
        }
    }
    tags
}

fn read_http(section: &mut Section<'_, '_>, http: &mut HttpConfig) {
    let listen = section.get_located("listen", |node| {
        let listen = tree::string(node)?;
        values::check_listen(&listen)?;
        Ok(listen)
    });
    http.token = section.get("token", tree::non_empty_string);
    if let Some(bytes) = section.get("max_body", values::byte_size) {
        http.max_body_bytes = bytes;
    }
    if let Some(timeout) = section.get("request_timeout", values::duration) {
        http.request_timeout = timeout;
    }
    if let Some(n) = section.get("max_concurrent_requests", positive_count) {
        http.max_concurrent_requests = n;
    }
    if let Some(rate) = section.get("min_body_rate", size_or_zero) {
        http.min_body_rate = rate;
    }
    if let Some(n) = section.get("max_points_per_request", positive_count) {
        http.max_points_per_request = n;
    }
    if let Some((listen, span)) = listen {
        http.listen = listen;
        if !http.is_loopback() && http.token.is_none() {
            section.invalid(
                &span,
                "listen",
                &format!(
                    "{:?} is not a loopback address, so `token` must be set",
                    http.listen
                ),
            );
        }
    }
}

/// A size (as [`values::byte_size`]), or the integer 0 meaning "off".
fn size_or_zero(node: &Node) -> Result<u64, Problem> {
    match &node.value {
        Value::Integer(0) => Ok(0),
        _ => values::byte_size(node),
    }
}

/// A positive integer that fits a `usize` (a count of things).
fn positive_count(node: &Node) -> Result<usize, Problem> {
    match &node.value {
        Value::Integer(n) if *n > 0 => usize::try_from(*n).map_err(|_| "is too large".into()),
        Value::Integer(_) => Err("must be greater than zero".into()),
        _ => Err(Problem::expected("a positive integer", node)),
    }
}

fn read_sinks(sections: Vec<Section<'_, '_>>, context: &ReadContext<'_>) -> Vec<SinkConfig> {
    let mut sinks = Vec::new();
    let mut names: Vec<(String, usize)> = Vec::new();
    for mut section in sections {
        // Without a valid `type` the accepted keys are unknown: skip the key check.
        let Some(sink_type) = section.require("type", sink_type) else {
            continue;
        };
        section.set_name(format!("[[sinks]] with type = {:?}", sink_type.name));
        let categories = section.get("categories", categories);
        section.set_expected(&[&[SINK_COMMON_KEYS], sink_type.keys].concat());
        let kind = (sink_type.read)(&mut section, context);
        if let Some(net) = kind.as_ref().and_then(SinkKind::network) {
            let line = section.doc().line(section.span());
            match names.iter().find(|(n, _)| *n == net.name) {
                Some((_, first)) => {
                    let span = section.span().clone();
                    section.invalid(
                        &span,
                        "name",
                        &format!(
                            "sink name {:?} is already used by the sink at line {first} (set `name` to tell them apart)",
                            net.name
                        ),
                    );
                }
                None => names.push((net.name.clone(), line)),
            }
        }
        section.finish();
        if let Some(kind) = kind {
            sinks.push(SinkConfig { kind, categories });
        }
    }
    sinks
}

fn sink_type(node: &Node) -> Result<&'static registry::SinkType, Problem> {
    let name = tree::string(node)?;
    registry::find(&name).ok_or_else(|| {
        format!(
            "unknown sink type {name:?} (expected one of: {})",
            registry::names().join(", ")
        )
        .into()
    })
}

fn categories(node: &Node) -> Result<Vec<Category>, Problem> {
    let Value::Array(items) = &node.value else {
        return Err(Problem::expected("an array of category names", node));
    };
    if items.is_empty() {
        return Err("must not be empty (leave `categories` out to receive every category)".into());
    }
    items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            let name = tree::string(item).map_err(|p| {
                Problem::at(&item.span, format!("element {}: {}", i + 1, p.message))
            })?;
            Category::deserialize(StrDeserializer::<ValueError>::new(&name)).map_err(|e| {
                let message = e.to_string().replace("unknown variant", "unknown category");
                Problem::at(&item.span, format!("element {}: {message}", i + 1))
            })
        })
        .collect()
}

fn read_git_repos(section: &mut Section<'_, '_>, base: &Path, git: &mut GitReposConfig) {
    if let Some(interval) = section.get("pull_interval", values::duration) {
        git.pull_interval = interval;
    }
    // DataKit's own sample writes every key with `""` for "not set" and a disabled
    // repo with an empty `url`: empty strings mean unset, and a disabled repo's values
    // are not required to make sense (docs/CONFIG.md).
    let optional =
        |node: &Node| tree::string(node).map(|s| Some(s).filter(|s| !s.trim().is_empty()));
    for mut repo in section.tables("repo", "[[git_repos.repo]]", GIT_REPO_KEYS) {
        let enable = repo.get("enable", tree::boolean).unwrap_or(true);
        let url = repo.get_located("url", optional);
        let branch = repo.get("branch", optional).flatten();
        let key_path = repo
            .get("ssh_private_key_path", optional)
            .flatten()
            .map(|p| values::resolve(base, &p));
        let password = repo.get_located("ssh_private_key_password", optional);
        let token_env = repo.get("token_env", optional).flatten();
        let password = match password {
            Some((Some(password), span)) => Some((password, span)),
            _ => None,
        };
        let url = match url {
            Some((Some(url), _)) => Some(url),
            Some((None, span)) if enable => {
                repo.invalid(&span, "url", "must not be empty (or set `enable = false`)");
                None
            }
            None if enable => {
                repo.require("url", optional);
                None
            }
            _ => None,
        };
        if enable {
            if let (Some((_, span)), None) = (&password, &key_path) {
                repo.invalid(
                    span,
                    "ssh_private_key_password",
                    "is set but `ssh_private_key_path` is not",
                );
            }
        }
        repo.finish();
        if url.is_some() || !enable {
            git.repos.push(GitRepoConfig {
                enable,
                url: url.unwrap_or_default(),
                branch,
                ssh_private_key_path: key_path,
                ssh_private_key_password: password.map(|(p, _)| p),
                token_env,
            });
        }
    }
}
