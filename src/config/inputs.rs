//! Input configuration: the `[[inputs.pythond]]` tables found in `<conf_dir>/**/*.conf`.
//!
//! Owns [`InputConfig`] (one supervised worker each), the conf.d walk, and the rules
//! that keep one bad file from taking the others down: each file is parsed on its
//! own, a broken file contributes one error and no inputs, and input names must be
//! unique across all files. Tables for other DataKit inputs (`[[inputs.cpu]]`, ...)
//! are not errors — DataKit repositories hold such files — they come back as
//! [`SkippedTable`] notices for the caller to log.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::fs;
use std::hash::{Hash, Hasher};
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::error::{ConfigError, Origin};
use super::instances::{self, default_concurrency, InstanceConfig};
use super::json_value::{json_table, HashedJson};
use super::kinds::KindSettings;
use super::tree::{self, Doc, Node, Problem, Section, Span, Value};
use super::values;

/// The input kind this agent runs: `[[inputs.pythond]]`.
pub const INPUT_KIND: &str = "pythond";
/// File name suffix of input configuration files.
pub const CONF_SUFFIX: &str = ".conf";

const INPUT_KEYS: &[&str] = &[
    "name",
    "cmd",
    "dirs",
    "envs",
    "interval",
    "timeout",
    "tags",
    "transport",
    "options",
    "plugins",
    "emit_events",
    "isolation",
    "max_rss",
    "max_age",
    "start_delay",
    "time_reopen",
    "fetch_no_data_delay",
    "zenpython_devices",
    "instances",
    "concurrency",
    "processes",
    "instance_metrics",
];

/// Keys of one `[inputs.pythond.plugins.<plugin name>]` table.
const PLUGIN_KEYS: &[&str] = &["interval", "timeout", "enabled", "options"];

/// One `[[inputs.pythond]]`: a set of plugin directories run by one worker process.
///
/// Equality and hashing cover the settings only, not [`InputConfig::origin`]: an
/// input moved to another line or file is the same input, so a reload that diffs old
/// and new inputs with `==` restarts only the ones whose settings changed.
///
/// `Debug` shows the names of `envs` but not their values, which often hold secrets.
#[derive(Clone)]
pub struct InputConfig {
    /// Unique name of the input, used in logs, status and metrics.
    ///
    /// Key `name`, required, non-empty, unique across all conf files.
    pub name: String,
    /// The Python interpreter: an absolute path or a command looked up on `PATH`.
    ///
    /// Key `cmd`, required (e.g. `"python3"`).
    pub cmd: String,
    /// Plugin directories (or `.py` files), as written; the agent resolves them
    /// against `python_dir`.
    ///
    /// Key `dirs`, required, a non-empty list of non-empty strings.
    pub dirs: Vec<String>,
    /// Extra environment variables for the worker, in file order.
    ///
    /// Key `envs`, optional list of `"KEY=VALUE"` strings (split at the first `=`;
    /// `KEY` non-empty, each `KEY` at most once).
    pub envs: Vec<(String, String)>,
    /// Run interval for every plugin of the input, overriding their `interval` class
    /// attribute.
    ///
    /// Key `interval`, optional duration (`"10s"`, `"1m30s"`), greater than zero.
    pub interval: Option<Duration>,
    /// How long one run may take before the worker is killed and restarted.
    ///
    /// Key `timeout`, optional duration, greater than zero; when absent, 3 × the
    /// plugin's interval (see [`InputConfig::effective_timeout`]).
    pub timeout: Option<Duration>,
    /// Tags added to every point of this input.
    ///
    /// Key `tags`, optional table of strings, e.g. `tags = { team = "db" }`.
    pub tags: BTreeMap<String, String>,
    /// How the worker sends reports to the agent.
    ///
    /// Key `transport`, `"pipe"` (default) or `"http"`.
    pub transport: Transport,
    /// Parameters handed to every plugin of the input as `self.options` (a dict) and
    /// to its optional `init(self, options)` hook, before its first run.
    ///
    /// Key `options`, optional table of any TOML values (`[inputs.pythond.options]`);
    /// datetimes arrive as strings. Passed to the worker through its environment, never
    /// on its command line.
    pub options: serde_json::Map<String, serde_json::Value>,
    /// Per-plugin overrides, keyed by the plugin's `name` (its `name` class attribute,
    /// else its class name) or its id (`<module>.<Class>`).
    ///
    /// Key `plugins`, optional table of tables
    /// (`[inputs.pythond.plugins.<plugin name>]`), see [`PluginOverride`].
    pub plugins: BTreeMap<String, PluginOverride>,
    /// Whether the agent reports this input's collector failures (exception, timeout,
    /// quarantine) and recoveries as keyevent points ([`crate::events`]).
    ///
    /// Key `emit_events`, boolean, default `false`.
    pub emit_events: bool,
    /// How many workers the input's plugins share.
    ///
    /// Key `isolation`, `"input"` (default: one worker for all) or `"plugin"` (one
    /// worker per plugin class).
    pub isolation: Isolation,
    /// Recycle a worker whose resident memory exceeds this many bytes: stopped
    /// gracefully between runs and started again (to contain leaky libraries).
    ///
    /// Key `max_rss`, optional byte size (`"200MiB"`, `"1GB"`, or bytes).
    pub max_rss: Option<u64>,
    /// Recycle a worker that has run this long, gracefully, between runs.
    ///
    /// Key `max_age`, optional duration (`"6h"`).
    pub max_age: Option<Duration>,
    /// Wait this long after the agent (or a reload) starts the input before starting
    /// its worker, so a host's collectors do not all start at once.
    ///
    /// Key `start_delay`, optional duration.
    pub start_delay: Option<Duration>,
    /// The targets every plugin of the input runs for, one object per (plugin,
    /// instance); empty: one object per plugin, as DataKit does.
    ///
    /// Key `instances`, optional array of tables (`[[inputs.pythond.instances]]` or
    /// `instances = [{...}]`), see [`InstanceConfig`].
    pub instances: Vec<InstanceConfig>,
    /// Threads of the worker's run pool for an input with `instances`, per process.
    ///
    /// Key `concurrency`, optional whole number from 1 to 1024; default
    /// [`default_concurrency`] of the number of instances per process.
    pub concurrency: Option<u32>,
    /// Worker processes the input's instances are spread over, each instance always
    /// to the same one (docs/CONFIG.md).
    ///
    /// Key `processes`, optional whole number from 1 to 64, default 1; more than one
    /// only for an input with `instances`.
    pub processes: u16,
    /// Whether `/metrics` carries one series per instance (default: per plugin).
    ///
    /// Key `instance_metrics`, boolean, default `false`.
    pub instance_metrics: bool,
    /// Keys for syslog-ng fetchers and zenpython plugins (`time_reopen`,
    /// `fetch_no_data_delay`, `zenpython_devices`), see [`KindSettings`].
    pub kinds: KindSettings,
    /// Where the input was declared (file and line of its header). Not part of
    /// equality.
    pub origin: Origin,
}

impl InputConfig {
    /// The run timeout for a plugin that runs every `interval`: `timeout` if set,
    /// else 3 × `interval`.
    pub fn effective_timeout(&self, interval: Duration) -> Duration {
        self.timeout.unwrap_or_else(|| interval.saturating_mul(3))
    }

    /// The `[inputs.pythond.plugins.<key>]` for a plugin: the one keyed by its id
    /// (`<module>.<Class>`) if any, else the one keyed by its name.
    pub fn plugin_override(&self, id: &str, name: &str) -> Option<&PluginOverride> {
        self.plugins.get(id).or_else(|| self.plugins.get(name))
    }

    /// Whether `other` has the same settings (everything but `origin`); the same as
    /// `==`, spelled out for reload code.
    pub fn same_settings(&self, other: &InputConfig) -> bool {
        self == other
    }

    /// Whether the input runs instances (on the worker's pool) rather than one object
    /// per plugin.
    pub fn has_instances(&self) -> bool {
        !self.instances.is_empty()
    }

    /// The pool size of each of the input's worker processes: `concurrency`, else the
    /// documented default for one process's share of the instances.
    pub fn effective_concurrency(&self) -> u32 {
        self.concurrency.unwrap_or_else(|| {
            default_concurrency(
                self.instances
                    .len()
                    .div_ceil(usize::from(self.processes.max(1))),
            )
        })
    }
}

impl InputConfig {
    /// Every setting but `origin`, for `==` and `Hash` (one list for both, destructured
    /// so that a new field cannot be forgotten here).
    fn settings(&self) -> impl Eq + Hash + '_ {
        let InputConfig {
            name,
            cmd,
            dirs,
            envs,
            interval,
            timeout,
            tags,
            transport,
            options,
            plugins,
            emit_events,
            isolation,
            max_rss,
            max_age,
            start_delay,
            instances,
            concurrency,
            processes,
            instance_metrics,
            kinds,
            origin: _,
        } = self;
        (
            (
                kinds,
                processes,
                instance_metrics,
                instances,
                concurrency,
                max_rss,
                max_age,
                start_delay,
                isolation,
                emit_events,
                HashedJson(options),
            ),
            (
                plugins, name, cmd, dirs, envs, interval, timeout, tags, transport,
            ),
        )
    }
}

impl PartialEq for InputConfig {
    fn eq(&self, other: &Self) -> bool {
        self.settings() == other.settings()
    }
}

impl Eq for InputConfig {}

impl Hash for InputConfig {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.settings().hash(state);
    }
}

impl fmt::Debug for InputConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let env_names: Vec<String> = self
            .envs
            .iter()
            .map(|(key, _)| format!("{key}=<redacted>"))
            .collect();
        f.debug_struct("InputConfig")
            .field("name", &self.name)
            .field("cmd", &self.cmd)
            .field("dirs", &self.dirs)
            .field("envs", &env_names)
            .field("interval", &self.interval)
            .field("timeout", &self.timeout)
            .field("tags", &self.tags)
            .field("transport", &self.transport)
            .field("options", &self.options.keys().collect::<Vec<_>>())
            .field("plugins", &self.plugins.keys().collect::<Vec<_>>())
            .field("emit_events", &self.emit_events)
            .field("isolation", &self.isolation)
            .field("max_rss", &self.max_rss)
            .field("max_age", &self.max_age)
            .field("start_delay", &self.start_delay)
            .field("instances", &self.instances.len())
            .field("concurrency", &self.concurrency)
            .field("processes", &self.processes)
            .field("instance_metrics", &self.instance_metrics)
            .field("kinds", &self.kinds.time_reopen)
            .field("origin", &self.origin)
            .finish()
    }
}

/// `[inputs.pythond.plugins.<plugin name>]`: settings for one plugin of an input.
#[derive(Clone, Debug, PartialEq)]
pub struct PluginOverride {
    /// Key `interval`, optional duration: overrides the input's `interval` and the
    /// class attribute for this plugin.
    pub interval: Option<Duration>,
    /// Key `timeout`, optional duration: overrides the input's `timeout`.
    pub timeout: Option<Duration>,
    /// Key `enabled`, default `true`: `false` keeps the plugin from being initialised
    /// or run (it is still imported, and listed as `disabled` in status).
    pub enabled: bool,
    /// Key `options`, optional table: merged over the input's `options` (key by key)
    /// for this plugin.
    pub options: serde_json::Map<String, serde_json::Value>,
}

impl Default for PluginOverride {
    fn default() -> Self {
        Self {
            interval: None,
            timeout: None,
            enabled: true,
            options: serde_json::Map::new(),
        }
    }
}

impl Eq for PluginOverride {}

impl Hash for PluginOverride {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.interval.hash(state);
        self.timeout.hash(state);
        self.enabled.hash(state);
        HashedJson(&self.options).hash(state);
    }
}

/// How an input's plugins are spread over workers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Isolation {
    /// `"input"`: one worker runs every plugin of the input (default, as DataKit).
    #[default]
    Input,
    /// `"plugin"`: each plugin class gets a worker of its own, so a hang or a crash
    /// restarts only that plugin.
    Plugin,
}

/// How a worker delivers reports.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Transport {
    /// `"pipe"`: newline-delimited JSON frames over a dedicated pipe (default).
    #[default]
    Pipe,
    /// `"http"`: the shim posts to the agent's DataKit-compatible HTTP API, like
    /// DataKit's own pythond input.
    Http,
}

impl Transport {
    /// The configuration spelling: `"pipe"` or `"http"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Pipe => "pipe",
            Transport::Http => "http",
        }
    }
}

/// A table for another input kind (`[[inputs.cpu]]`, ...) that was ignored.
///
/// Displayed as `conf.d/cpu.conf:1: [[inputs.cpu]]`; the caller adds what it does
/// about it ("not a pythond input, ignored").
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SkippedTable {
    /// The conf file.
    pub file: PathBuf,
    /// 1-based line of the table's header.
    pub line: usize,
    /// The input kind, e.g. `cpu` for `[[inputs.cpu]]`.
    pub kind: String,
}

impl fmt::Display for SkippedTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}: [[inputs.{}]]",
            self.file.display(),
            self.line,
            self.kind
        )
    }
}

/// Everything found under a conf directory.
#[derive(Debug, Default)]
pub struct Inputs {
    /// Valid inputs, ordered by file path, then by position in the file.
    pub inputs: Vec<InputConfig>,
    /// One error per broken file or unreadable directory, plus one per duplicate
    /// input name.
    pub errors: Vec<ConfigError>,
    /// Tables for other input kinds, to be logged as ignored.
    pub skipped: Vec<SkippedTable>,
}

/// Loads every `*.conf` file under `conf_dir`, recursively, in path order.
///
/// A missing `conf_dir` yields no inputs and no error. Files and directories whose
/// name starts with `.` are ignored (editor backups, lock files). A file that cannot
/// be read or parsed contributes one error and no inputs; the other files still load.
/// An input whose name was already declared (in an earlier file) is dropped with an
/// error naming both places; the file's other inputs are kept.
pub fn load_inputs(conf_dir: &Path) -> Inputs {
    let mut found = Inputs::default();
    let mut files = Vec::new();
    let mut visited = HashSet::new();
    walk(conf_dir, true, &mut files, &mut found.errors, &mut visited);
    files.sort();

    let mut first_seen: HashMap<String, Origin> = HashMap::new();
    for file in files {
        let text = match fs::read_to_string(&file) {
            Ok(text) => text,
            Err(err) => {
                found.errors.push(ConfigError::io(&file, err));
                continue;
            }
        };
        match parse_inputs_all(&text, &file) {
            Ok((inputs, skipped)) => {
                found.skipped.extend(skipped);
                for input in inputs {
                    match first_seen.get(&input.name) {
                        Some(first) => found.errors.push(duplicate(&input, first)),
                        None => {
                            first_seen.insert(input.name.clone(), input.origin.clone());
                            found.inputs.push(input);
                        }
                    }
                }
            }
            Err(errors) => found.errors.extend(errors),
        }
    }
    found
}

/// Collects `*.conf` files under `dir`. Symbolic links are followed, each directory
/// visited once.
fn walk(
    dir: &Path,
    is_root: bool,
    files: &mut Vec<PathBuf>,
    errors: &mut Vec<ConfigError>,
    visited: &mut HashSet<PathBuf>,
) {
    let canonical = match fs::canonicalize(dir) {
        Ok(path) => path,
        Err(err) if is_root && err.kind() == io::ErrorKind::NotFound => return,
        Err(err) => {
            errors.push(ConfigError::io(dir, err));
            return;
        }
    };
    if !visited.insert(canonical) {
        return;
    }
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(err) => {
            errors.push(ConfigError::io(dir, err));
            return;
        }
    };
    for entry in entries {
        let entry = match entry {
            Ok(entry) => entry,
            Err(err) => {
                errors.push(ConfigError::io(dir, err));
                continue;
            }
        };
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with('.') {
            continue;
        }
        let path = entry.path();
        match fs::metadata(&path) {
            Ok(meta) if meta.is_dir() => walk(&path, false, files, errors, visited),
            Ok(meta) if meta.is_file() && name.ends_with(CONF_SUFFIX) => files.push(path),
            Ok(_) => {}
            // A dangling symlink that would have been a conf file is worth reporting.
            Err(err) if name.ends_with(CONF_SUFFIX) => errors.push(ConfigError::io(&path, err)),
            Err(_) => {}
        }
    }
}

fn duplicate(input: &InputConfig, first: &Origin) -> ConfigError {
    ConfigError::Invalid {
        file: input.origin.file.clone(),
        line: input.origin.line,
        key: "name".to_owned(),
        message: duplicate_message(&input.name, first),
    }
}

fn duplicate_message(name: &str, first: &Origin) -> String {
    format!("duplicate input name {name:?} in [[inputs.pythond]] (first declared at {first})")
}

/// Parses one conf file's text: its `[[inputs.pythond]]` tables, and notices for the
/// tables of other input kinds. `file` names the file in messages and origins.
/// Duplicate names within the file are an error.
pub fn parse_inputs(
    text: &str,
    file: &Path,
) -> Result<(Vec<InputConfig>, Vec<SkippedTable>), ConfigError> {
    read_inputs(text, file, |doc, found| doc.finish(found), |error| error)
}

/// [`parse_inputs`], with every problem of the file rather than the first only.
pub fn parse_inputs_all(
    text: &str,
    file: &Path,
) -> Result<(Vec<InputConfig>, Vec<SkippedTable>), Vec<ConfigError>> {
    read_inputs(
        text,
        file,
        |doc, found| doc.finish_all(found),
        |error| vec![error],
    )
}

type FoundTables = (Vec<InputConfig>, Vec<SkippedTable>);

/// Reads a conf file's tables; `finish` decides how many problems come back.
fn read_inputs<E>(
    text: &str,
    file: &Path,
    finish: fn(Doc<'_>, FoundTables) -> Result<FoundTables, E>,
    syntax: fn(ConfigError) -> E,
) -> Result<FoundTables, E> {
    let (doc, root) = Doc::parse(text, file).map_err(syntax)?;
    let mut top = Section::root(&doc, root, &["inputs"]);
    let mut inputs: Vec<InputConfig> = Vec::new();
    let mut skipped = Vec::new();
    if let Some(mut kinds) = top.table("inputs", "[inputs]", &[]) {
        for mut section in kinds.tables(INPUT_KIND, "[[inputs.pythond]]", INPUT_KEYS) {
            let Some(input) = read_input(&mut section) else {
                continue;
            };
            match inputs.iter().find(|i| i.name == input.name) {
                Some(first) => doc.report(
                    section.span(),
                    "name",
                    duplicate_message(&input.name, &first.origin),
                ),
                None => inputs.push(input),
            }
        }
        for entry in kinds.drain() {
            let spans: Vec<&Span> = match &entry.node.value {
                Value::Array(items) if !items.is_empty() => {
                    items.iter().map(|item| &item.span).collect()
                }
                _ => vec![&entry.node.span],
            };
            skipped.extend(spans.into_iter().map(|span| SkippedTable {
                file: file.to_path_buf(),
                line: doc.line(span),
                kind: entry.key.clone(),
            }));
        }
    }
    top.finish();
    finish(doc, (inputs, skipped))
}

fn read_input(section: &mut Section<'_, '_>) -> Option<InputConfig> {
    let name = section.require("name", tree::non_empty_string);
    let cmd = section.require("cmd", tree::non_empty_string);
    let dirs = section.require("dirs", |node| {
        Ok(tree::string_list(node)?
            .into_iter()
            .map(|(d, _)| d)
            .collect())
    });
    let envs = section.get("envs", envs).unwrap_or_default();
    let interval = section.get("interval", values::duration);
    let timeout = section.get("timeout", values::duration);
    let tags = section.get("tags", tree::string_map).unwrap_or_default();
    let transport = section.get("transport", transport).unwrap_or_default();
    let options = section.get("options", json_table).unwrap_or_default();
    let emit_events = section.get("emit_events", tree::boolean).unwrap_or(false);
    let isolation = section.get("isolation", isolation).unwrap_or_default();
    let max_rss = section.get("max_rss", values::byte_size);
    let max_age = section.get("max_age", values::duration);
    let start_delay = section.get("start_delay", values::duration);
    let instances = instances::read_instances(section);
    let concurrency = section.get("concurrency", instances::concurrency);
    let processes = instances::processes(section, &instances);
    let instance_metrics = section
        .get("instance_metrics", tree::boolean)
        .unwrap_or(false);
    let kinds = KindSettings {
        time_reopen: section.get("time_reopen", values::duration),
        fetch_no_data_delay: section.get("fetch_no_data_delay", values::duration),
        zenpython_devices: section
            .get("zenpython_devices", device_tables)
            .unwrap_or_default(),
    };
    let mut plugins = BTreeMap::new();
    if let Some(mut table) = section.table("plugins", "[inputs.pythond.plugins]", &[]) {
        for key in table.keys() {
            let name = format!("[inputs.pythond.plugins.{key}]");
            if let Some(mut plugin) = table.table(&key, &name, PLUGIN_KEYS) {
                plugins.insert(key, read_plugin(&mut plugin));
            }
        }
        table.finish();
    }
    let origin = Origin {
        file: section.doc().file().to_path_buf(),
        line: section.doc().line(section.span()),
    };
    section.finish();
    Some(InputConfig {
        name: name?,
        cmd: cmd?,
        dirs: dirs?,
        envs,
        interval,
        timeout,
        tags,
        transport,
        options,
        plugins,
        emit_events,
        isolation,
        max_rss,
        max_age,
        start_delay,
        instances,
        concurrency,
        processes,
        instance_metrics,
        kinds,
        origin,
    })
}

fn read_plugin(section: &mut Section<'_, '_>) -> PluginOverride {
    let plugin = PluginOverride {
        interval: section.get("interval", values::duration),
        timeout: section.get("timeout", values::duration),
        enabled: section.get("enabled", tree::boolean).unwrap_or(true),
        options: section.get("options", json_table).unwrap_or_default(),
    };
    section.finish();
    plugin
}

/// `zenpython_devices`: an array of tables, each with a non-empty string `id`.
fn device_tables(node: &Node) -> Result<Vec<serde_json::Map<String, serde_json::Value>>, Problem> {
    let Value::Array(items) = &node.value else {
        return Err(Problem::expected(
            "an array of device tables ([[inputs.pythond.zenpython_devices]])",
            node,
        ));
    };
    let mut devices = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let at = |message: String| Problem::at(&item.span, format!("device {}: {message}", i + 1));
        let device = json_table(item).map_err(|p| at(p.message))?;
        match device.get("id") {
            Some(serde_json::Value::String(id)) if !id.is_empty() => {}
            _ => return Err(at("needs `id`, a non-empty string".to_string())),
        }
        devices.push(device);
    }
    Ok(devices)
}

/// `["KEY=VALUE", ...]`.
fn envs(node: &Node) -> Result<Vec<(String, String)>, Problem> {
    let Value::Array(items) = &node.value else {
        return Err(Problem::expected("an array of \"KEY=VALUE\" strings", node));
    };
    let mut envs: Vec<(String, String)> = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let at = |message: String| Problem::at(&item.span, format!("element {}: {message}", i + 1));
        let text = tree::string(item).map_err(|p| at(p.message))?;
        let Some((key, value)) = text.split_once('=') else {
            return Err(at(format!("{text:?} is not of the form KEY=VALUE")));
        };
        if key.is_empty() {
            return Err(at(format!(
                "{text:?} has an empty KEY (expected KEY=VALUE)"
            )));
        }
        if text.contains('\0') {
            return Err(at(format!("{text:?} contains a NUL character")));
        }
        if envs.iter().any(|(k, _)| k == key) {
            return Err(at(format!("`{key}` is set more than once")));
        }
        envs.push((key.to_owned(), value.to_owned()));
    }
    Ok(envs)
}

fn isolation(node: &Node) -> Result<Isolation, Problem> {
    match tree::string(node)?.as_str() {
        "input" => Ok(Isolation::Input),
        "plugin" => Ok(Isolation::Plugin),
        other => {
            Err(format!("unknown isolation {other:?} (expected one of: input, plugin)").into())
        }
    }
}

fn transport(node: &Node) -> Result<Transport, Problem> {
    match tree::string(node)?.as_str() {
        "pipe" => Ok(Transport::Pipe),
        "http" => Ok(Transport::Http),
        other => Err(format!("unknown transport {other:?} (expected one of: pipe, http)").into()),
    }
}
