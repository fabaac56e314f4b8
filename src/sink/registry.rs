//! The sink types: the one list of what `type = "..."` in `[[sinks]]` may name, and
//! the one place that turns a sink's configuration into a running sink.
//!
//! Each type is one module holding its configuration model and reader (unknown keys
//! refused with file and line, like every table), its encoder and its endpoint. The
//! configuration reader looks types up here ([`find`]); the sink set asks [`build`]
//! for each configured sink. Adding a type is one module, one [`SINK_TYPES`] line
//! and its [`SinkKind`] variant; every `match` on [`SinkKind`] is exhaustive, so the
//! compiler points at whatever else a new type must decide.

use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::protocol::Protocol;
use super::{file, line_protocol, otlp, prometheus_remote_write, stdout, SinkError, Writer};
use crate::config::tree::Section;
use crate::config::SinkKind;

/// What a sink type's reader may need beside its own table.
pub struct ReadContext<'a> {
    /// Directory of the configuration file: relative paths start there.
    pub base: &'a Path,
    /// `host` and the `[global_tags]` keys: the tags every point of this agent
    /// carries, which describe the agent rather than the point.
    pub agent_tags: &'a [String],
    /// Paths of the file sinks read so far, with their lines (two file sinks must
    /// not write the same file).
    pub file_paths: RefCell<Vec<(PathBuf, usize)>>,
}

/// Reads one `[[sinks]]` table of a type (its `type` and `categories` already taken).
pub(crate) type ReadFn = fn(&mut Section<'_, '_>, &ReadContext<'_>) -> Option<SinkKind>;

/// One sink type.
pub struct SinkType {
    /// The `type` value.
    pub name: &'static str,
    /// Every key its table may hold (`type` and `categories` included).
    pub keys: &'static [&'static str],
    /// Its reader.
    pub(crate) read: ReadFn,
}

/// Every sink type, in the order the documentation lists them.
pub const SINK_TYPES: &[SinkType] = &[
    stdout::SINK_TYPE,
    file::SINK_TYPE,
    line_protocol::DATAKIT_SINK_TYPE,
    line_protocol::INFLUXDB_SINK_TYPE,
    prometheus_remote_write::SINK_TYPE,
    otlp::SINK_TYPE,
];

/// The type called `name`.
pub fn find(name: &str) -> Option<&'static SinkType> {
    SINK_TYPES.iter().find(|t| t.name == name)
}

/// The names of every type, for messages.
pub fn names() -> Vec<&'static str> {
    SINK_TYPES.iter().map(|t| t.name).collect()
}

/// A sink ready to run: a local writer fed by a queue, or a network sink's protocol
/// (its delivery, buffer and counters are the same for every type).
pub(crate) enum Built {
    Local(Writer),
    Network(Arc<dyn Protocol>),
}

/// Builds the sink `kind` describes.
pub(crate) fn build(kind: &SinkKind) -> Result<Built, SinkError> {
    let protocol = |name: &str, made: Result<Arc<dyn Protocol>, String>| {
        made.map(Built::Network)
            .map_err(|message| SinkError::Setup {
                name: name.to_string(),
                message,
            })
    };
    match kind {
        SinkKind::Stdout { format } => Ok(Built::Local(Writer::Stdout(stdout::StdoutSink::new(
            *format,
        )))),
        SinkKind::File { path } => file::FileSink::open(path)
            .map(|f| Built::Local(Writer::File(f)))
            .map_err(|source| SinkError::File {
                path: path.clone(),
                source,
            }),
        SinkKind::Datakit { net } => protocol(
            &net.name,
            line_protocol::LineProtocol::datakit(&net.url).map(|p| Arc::new(p) as _),
        ),
        SinkKind::Influxdb { net, api } => protocol(
            &net.name,
            line_protocol::LineProtocol::influx(&net.url, api).map(|p| Arc::new(p) as _),
        ),
        SinkKind::PrometheusRemoteWrite(config) => protocol(
            &config.net.name,
            prometheus_remote_write::RemoteWrite::new(config).map(|p| Arc::new(p) as _),
        ),
        SinkKind::Otlp(config) => protocol(
            &config.net.name,
            otlp::Otlp::new(config).map(|p| Arc::new(p) as _),
        ),
    }
}
