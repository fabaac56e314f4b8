//! The frames of the agent ⇄ worker protocol (docs/PROTOCOL.md) as Rust types.
//!
//! Decoding is lenient where the protocol says so (unknown keys ignored, unknown frame
//! types surfaced as [`WorkerFrame::Unknown`]) and strict about what the agent relies
//! on (ids, run numbers), so a malformed frame is one logged error, never a crash.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The protocol version this agent speaks; the worker announces its own in `hello`.
pub const PROTOCOL_VERSION: u32 = 1;

/// A frame sent by the worker.
#[derive(Debug, Deserialize)]
#[serde(tag = "t", rename_all = "lowercase")]
pub enum WorkerFrame {
    Hello(Hello),
    Report(Report),
    Done(Done),
    Log(LogLine),
    Lasterror(LastError),
    /// Runs of a pooled input's instances, batched (docs/PROTOCOL.md, "Pooled inputs").
    Runs(Runs),
    /// A pooled run passed its timeout and was abandoned.
    Timeout(TimedOut),
    #[serde(other)]
    Unknown,
}

impl WorkerFrame {
    /// Decodes one frame.
    ///
    /// `#[serde(tag = "t")]` buffers the whole frame into an intermediate tree before
    /// building the variant, which doubles the agent's cost per point. The worker always
    /// writes `"t"` first, so the frequent frames that start with it are decoded straight
    /// into their variant (the `"t"` key is then ignored as an unknown key); anything
    /// else takes the general path.
    pub fn parse(frame: &[u8]) -> serde_json::Result<Self> {
        if frame.starts_with(br#"{"t":"report","#) {
            serde_json::from_slice(frame).map(WorkerFrame::Report)
        } else if frame.starts_with(br#"{"t":"done","#) {
            serde_json::from_slice(frame).map(WorkerFrame::Done)
        } else if frame.starts_with(br#"{"t":"log","#) {
            serde_json::from_slice(frame).map(WorkerFrame::Log)
        } else {
            serde_json::from_slice(frame)
        }
    }
}

/// First frame of every worker: what it loaded and what it could not.
#[derive(Debug, Deserialize)]
pub struct Hello {
    pub v: u32,
    #[serde(default)]
    pub pid: u32,
    #[serde(default)]
    pub python: String,
    #[serde(default)]
    pub plugins: Vec<PluginInfo>,
    #[serde(default)]
    pub errors: Vec<LoadError>,
}

/// One collector class the worker instantiated.
#[derive(Clone, Debug, Deserialize, PartialEq)]
pub struct PluginInfo {
    /// `<module>.<ClassName>`: the key of every later frame about this plugin.
    pub id: String,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub file: String,
    /// The class attribute, in seconds (the worker already applied the 10 s default).
    pub interval: f64,
    #[serde(default)]
    pub long_running: bool,
    /// What the collector is: `datakit` (a `DataKitFramework` subclass, also what an
    /// older runner's hello means), `syslogng_fetcher`, `syslogng_source` or
    /// `zenpython` (docs/PROTOCOL.md).
    #[serde(default = "datakit_kind")]
    pub kind: String,
}

fn datakit_kind() -> String {
    "datakit".to_string()
}

/// A module that failed to load, with where it failed.
#[derive(Debug, Deserialize)]
pub struct LoadError {
    #[serde(default)]
    pub module: Option<String>,
    #[serde(default)]
    pub file: Option<String>,
    #[serde(default)]
    pub line: Option<u64>,
    pub message: String,
    #[serde(default)]
    pub traceback: Option<String>,
}

impl std::fmt::Display for LoadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (&self.file, self.line) {
            (Some(file), Some(line)) => write!(f, "{file}:{line}: {}", self.message),
            (Some(file), None) => write!(f, "{file}: {}", self.message),
            _ => write!(f, "{}", self.message),
        }
    }
}

/// One `report()` (or `feed_*`) call's points, as the script gave them.
#[derive(Debug, Deserialize)]
pub struct Report {
    #[serde(default)]
    pub plugin: Option<String>,
    #[serde(default)]
    pub input: Option<String>,
    #[serde(default)]
    pub precision: Option<String>,
    #[serde(default)]
    pub ignore_global_tags: serde_json::Value,
    /// Category code (`M`, `L`, `O`, `CO`, `E`, `R`) to points.
    #[serde(default)]
    pub data: BTreeMap<String, Vec<serde_json::Value>>,
    /// Points the worker could not serialize (NaN, bytes, ...).
    #[serde(default)]
    pub rejected: Vec<ShimRejection>,
}

impl Report {
    /// DataKit accepts `ignore_global_tags` as a bool or a string such as "true".
    pub fn ignores_global_tags(&self) -> bool {
        match &self.ignore_global_tags {
            serde_json::Value::Bool(b) => *b,
            serde_json::Value::String(s) => {
                matches!(s.to_ascii_lowercase().as_str(), "true" | "1" | "yes")
            }
            serde_json::Value::Number(n) => n.as_f64().is_some_and(|v| v != 0.0),
            _ => false,
        }
    }
}

/// A point the worker refused to serialize, with the reason.
#[derive(Debug, Deserialize)]
pub struct ShimRejection {
    #[serde(default)]
    pub category: String,
    #[serde(default)]
    pub index: Option<u64>,
    #[serde(default)]
    pub measurement: Option<String>,
    pub reason: String,
    /// The rejection's reason label, when the shim knows it (`invalid_field_value`
    /// for NaN and infinities); else `not_json_serializable`.
    #[serde(default)]
    pub label: Option<String>,
}

/// The end of one run.
#[derive(Debug, Deserialize)]
pub struct Done {
    pub plugin: String,
    pub run: u64,
    pub ok: bool,
    #[serde(default)]
    pub seconds: f64,
    #[serde(default)]
    pub error: Option<RunError>,
}

/// Why a run failed.
#[derive(Debug, Deserialize)]
pub struct RunError {
    #[serde(rename = "type", default)]
    pub kind: String,
    #[serde(default)]
    pub message: String,
    #[serde(default)]
    pub file: Option<String>,
    #[serde(default)]
    pub line: Option<u64>,
    #[serde(default)]
    pub traceback: Option<String>,
}

impl std::fmt::Display for RunError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.kind, self.message)?;
        match (&self.file, self.line) {
            (Some(file), Some(line)) => write!(f, " (at {file}:{line})"),
            (Some(file), None) => write!(f, " (in {file})"),
            _ => Ok(()),
        }
    }
}

/// A line a plugin printed through Python's `sys.stdout` / `sys.stderr`.
#[derive(Debug, Deserialize)]
pub struct LogLine {
    #[serde(default)]
    pub plugin: Option<String>,
    #[serde(default)]
    pub stream: String,
    pub line: String,
}

/// `set_lasterror(input_name, err_msg)`.
#[derive(Debug, Deserialize)]
pub struct LastError {
    #[serde(default)]
    pub plugin: Option<String>,
    #[serde(default)]
    pub input: Option<String>,
    pub message: String,
}

/// `runs`: what the instance pool ran since its last `runs` frame.
#[derive(Debug, Deserialize)]
pub struct Runs {
    #[serde(default)]
    pub runs: Vec<RunRecord>,
}

/// One finished run of one (plugin, instance).
#[derive(Debug, Deserialize)]
pub struct RunRecord {
    pub plugin: String,
    pub instance: String,
    pub run: u64,
    /// When the run was due on its fixed-rate schedule (Unix seconds).
    pub due: f64,
    /// When a pool thread actually started it (Unix seconds).
    pub started: f64,
    #[serde(default)]
    pub seconds: f64,
    pub ok: bool,
    /// Due times passed over (the previous run was still going) since the last record.
    #[serde(default)]
    pub skipped: u64,
    #[serde(default)]
    pub error: Option<RunError>,
}

impl RunRecord {
    /// How late the run started, never negative.
    pub fn lateness(&self) -> std::time::Duration {
        std::time::Duration::try_from_secs_f64(self.started - self.due).unwrap_or_default()
    }
}

/// `timeout`: a pooled run passed its timeout; its thread was abandoned.
#[derive(Debug, Deserialize)]
pub struct TimedOut {
    pub plugin: String,
    pub instance: String,
    pub run: u64,
    /// How long it had run, in seconds.
    #[serde(default)]
    pub ran: f64,
    /// Abandoned threads still alive in the worker, this one included.
    #[serde(default)]
    pub abandoned: u64,
}

/// One (plugin, instance) handed to the worker's pool, with its schedule.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct InstanceEntry {
    pub plugin: String,
    pub instance: String,
    /// The merged options (`self.options`, `init(options)`).
    pub options: serde_json::Map<String, serde_json::Value>,
    /// The instance's own tags, added to its points by the worker.
    pub tags: BTreeMap<String, String>,
    /// Seconds.
    pub interval: f64,
    /// Seconds; `None` for `long_running` plugins.
    pub timeout: Option<f64>,
    /// Unix seconds of the first due time.
    pub first: f64,
}

/// Names one (plugin, instance) in a command.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct InstanceRef {
    pub plugin: String,
    pub instance: String,
}

/// A command sent to the worker.
#[derive(Debug, Serialize)]
#[serde(tag = "t", rename_all = "lowercase")]
pub enum Command<'a> {
    Run {
        plugin: &'a str,
        run: u64,
    },
    Shutdown {
        grace: f64,
    },
    /// Pooled inputs: add or replace (`set`) and drop (`remove`) instances.
    Instances {
        set: &'a [InstanceEntry],
        remove: &'a [InstanceRef],
    },
    /// Pooled inputs: no run of this instance before `until` (Unix seconds).
    Pause {
        plugin: &'a str,
        instance: &'a str,
        until: f64,
    },
}

/// The name of one (plugin, instance) in stats, logs and `report` frames:
/// `<plugin id>@<instance name>` (the worker builds the same).
pub fn instance_key(plugin: &str, instance: &str) -> String {
    format!("{plugin}@{instance}")
}

impl Command<'_> {
    /// The command as one protocol line, newline included.
    pub fn to_line(&self) -> Vec<u8> {
        let mut line = serde_json::to_vec(self).expect("commands contain only strings and numbers");
        line.push(b'\n');
        line
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_each_frame_kind() {
        let hello: WorkerFrame = serde_json::from_str(
            r#"{"t":"hello","v":1,"pid":7,"python":"3.11","plugins":[{"id":"demo.Demo","name":"demo","class":"Demo","module":"demo","file":"/x/demo.py","interval":10.0,"long_running":false}],"errors":[{"module":"bad","file":"/x/bad.py","line":3,"message":"SyntaxError: invalid syntax"}]}"#,
        )
        .expect("hello decodes");
        match hello {
            WorkerFrame::Hello(h) => {
                assert_eq!(h.plugins[0].id, "demo.Demo");
                assert_eq!(
                    h.errors[0].to_string(),
                    "/x/bad.py:3: SyntaxError: invalid syntax"
                );
            }
            other => panic!("expected hello, got {other:?}"),
        }
        let done: WorkerFrame = serde_json::from_str(
            r#"{"t":"done","plugin":"p","run":3,"ok":false,"seconds":0.5,"error":{"type":"ValueError","message":"boom","file":"/x.py","line":9}}"#,
        )
        .expect("done decodes");
        match done {
            WorkerFrame::Done(d) => {
                assert_eq!(d.run, 3);
                assert_eq!(
                    d.error.expect("error").to_string(),
                    "ValueError: boom (at /x.py:9)"
                );
            }
            other => panic!("expected done, got {other:?}"),
        }
        let runs: WorkerFrame = serde_json::from_str(
            r#"{"t":"runs","runs":[{"plugin":"p.P","instance":"a","run":2,"due":100.0,"started":100.25,"seconds":0.1,"ok":true,"skipped":1}]}"#,
        )
        .expect("runs decodes");
        match runs {
            WorkerFrame::Runs(r) => {
                assert_eq!(r.runs[0].lateness(), std::time::Duration::from_millis(250));
                assert_eq!(r.runs[0].skipped, 1);
            }
            other => panic!("expected runs, got {other:?}"),
        }
        let timeout: WorkerFrame = serde_json::from_str(
            r#"{"t":"timeout","plugin":"p.P","instance":"a","run":2,"ran":3.5,"abandoned":1}"#,
        )
        .expect("timeout decodes");
        assert!(matches!(timeout, WorkerFrame::Timeout(t) if t.abandoned == 1 && t.run == 2));
        let unknown: WorkerFrame =
            serde_json::from_str(r#"{"t":"future","x":1}"#).expect("unknown decodes");
        assert!(matches!(unknown, WorkerFrame::Unknown));
    }

    #[test]
    fn the_fast_path_decodes_frames_as_the_general_path_does() {
        for frame in [
            r#"{"t":"report","plugin":"a.B","input":null,"precision":"s","data":{"M":[{"measurement":"m","fields":{"v":1}}]},"rejected":[]}"#,
            r#"{"t":"done","plugin":"a.B","run":3,"ok":true,"seconds":0.5}"#,
            r#"{"t":"log","plugin":null,"stream":"stderr","line":"hi"}"#,
            // Not `"t"` first, or spaced: the general path.
            r#"{"plugin":"a.B","t":"done","run":3,"ok":false,"seconds":0.5}"#,
            r#"{"t": "report", "data": {}}"#,
        ] {
            let fast = WorkerFrame::parse(frame.as_bytes()).expect("fast path decodes");
            let general: WorkerFrame = serde_json::from_str(frame).expect("general path decodes");
            assert_eq!(format!("{fast:?}"), format!("{general:?}"), "{frame}");
        }
        // A broken frame is an error on either path, never a panic.
        assert!(WorkerFrame::parse(br#"{"t":"report","data":{"M":[}"#).is_err());
        assert!(WorkerFrame::parse(br#"{"t":"done","run":"x"}"#).is_err());
    }

    #[test]
    fn ignore_global_tags_accepts_datakit_spellings() {
        for (raw, expected) in [
            ("true", true),
            ("\"true\"", true),
            ("false", false),
            ("null", false),
            ("1", true),
        ] {
            let report: Report =
                serde_json::from_str(&format!(r#"{{"ignore_global_tags":{raw}}}"#))
                    .expect("report decodes");
            assert_eq!(report.ignores_global_tags(), expected, "{raw}");
        }
    }

    #[test]
    fn commands_are_single_lines() {
        assert_eq!(
            Command::Run {
                plugin: "a.B",
                run: 4
            }
            .to_line(),
            b"{\"t\":\"run\",\"plugin\":\"a.B\",\"run\":4}\n".to_vec()
        );
    }
}
