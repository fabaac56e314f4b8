//! `[[sinks]]`, validated: [`SinkConfig`] (a sink's categories and its type's
//! settings), [`SinkKind`] (one variant per sink type) and [`OutputFormat`] (the text
//! the local sinks and `pythond check` write). docs/CONFIG.md, "[[sinks]]", is the
//! reference.
//!
//! The model only: the tables are read in `main_config.rs` through the sink registry,
//! whose type modules own each type's keys and reader. Kept apart from both so that
//! the registry can map every type onto its variant here without the model or the
//! reader importing each other in a circle.

use std::path::PathBuf;
use std::str::FromStr;

use super::network_sink::{InfluxApi, NetworkSinkConfig};
use crate::point::Category;
use crate::sink::otlp::OtlpConfig;
use crate::sink::prometheus_remote_write::RemoteWriteConfig;

/// One `[[sinks]]` entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SinkConfig {
    /// The sink type and its own settings (key `type` selects the variant).
    pub kind: SinkKind,
    /// Only points of these categories go to this sink.
    ///
    /// Key `categories`, optional list of `"metric"`, `"logging"`, `"object"`,
    /// `"custom_object"`, `"keyevent"`, `"rum"`; absent means every category.
    pub categories: Option<Vec<Category>>,
}

impl SinkConfig {
    /// Whether points of `category` go to this sink.
    pub fn accepts(&self, category: &Category) -> bool {
        self.categories
            .as_ref()
            .map_or(true, |wanted| wanted.contains(category))
    }
}

impl Default for SinkConfig {
    /// Line protocol on stdout, every category: the sink used when none is configured.
    fn default() -> Self {
        SinkConfig {
            kind: SinkKind::Stdout {
                format: OutputFormat::LineProtocol,
            },
            categories: None,
        }
    }
}

/// The sink types, selected by `type = "..."` in `[[sinks]]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SinkKind {
    /// `type = "stdout"`: one point per line on standard output.
    Stdout {
        /// Key `format`: `"lp"` (line protocol, default) or `"json"`.
        format: OutputFormat,
    },
    /// `type = "file"`: appends NDJSON, one point per line, in the same shape as
    /// `pythond check --format json`.
    File {
        /// Key `path`, required; relative to the configuration file's directory.
        path: PathBuf,
    },
    /// `type = "datakit"`: line protocol POSTed to `<url>/v1/write/<category>`, behind
    /// a disk buffer.
    Datakit { net: NetworkSinkConfig },
    /// `type = "influxdb"`: line protocol to InfluxDB's (or VictoriaMetrics') v1 or v2
    /// write API, behind a disk buffer.
    Influxdb {
        net: NetworkSinkConfig,
        api: InfluxApi,
    },
    /// `type = "prometheus_remote_write"`: metric points as Prometheus remote write
    /// 1.0 (protobuf, snappy), behind a disk buffer.
    PrometheusRemoteWrite(RemoteWriteConfig),
    /// `type = "otlp"`: metrics and logs as OTLP/HTTP protobuf (gzip), behind a disk
    /// buffer.
    Otlp(OtlpConfig),
}

impl SinkKind {
    /// The `type` value that selects this variant.
    pub fn type_name(&self) -> &'static str {
        match self {
            SinkKind::Stdout { .. } => "stdout",
            SinkKind::File { .. } => "file",
            SinkKind::Datakit { .. } => "datakit",
            SinkKind::Influxdb { .. } => "influxdb",
            SinkKind::PrometheusRemoteWrite(_) => "prometheus_remote_write",
            SinkKind::Otlp(_) => "otlp",
        }
    }

    /// The network settings of a buffered sink; `None` for stdout and file.
    pub fn network(&self) -> Option<&NetworkSinkConfig> {
        match self {
            SinkKind::Datakit { net } | SinkKind::Influxdb { net, .. } => Some(net),
            SinkKind::PrometheusRemoteWrite(config) => Some(&config.net),
            SinkKind::Otlp(config) => Some(&config.net),
            SinkKind::Stdout { .. } | SinkKind::File { .. } => None,
        }
    }
}

/// How points are written as text.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum OutputFormat {
    /// InfluxDB line protocol (`"lp"`).
    #[default]
    LineProtocol,
    /// One JSON object per point (`"json"`):
    /// `{"category","measurement","tags","fields","time"}`.
    Json,
}

impl OutputFormat {
    /// The configuration / command-line spelling: `"lp"` or `"json"`.
    pub fn as_str(self) -> &'static str {
        match self {
            OutputFormat::LineProtocol => "lp",
            OutputFormat::Json => "json",
        }
    }
}

impl FromStr for OutputFormat {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "lp" => Ok(OutputFormat::LineProtocol),
            "json" => Ok(OutputFormat::Json),
            _ => Err(format!("unknown format {s:?} (expected one of: lp, json)")),
        }
    }
}
