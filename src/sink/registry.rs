//! The sink types: the one list of what `type = "..."` in `[[sinks]]` may name, and
//! the one place that turns a sink's configuration into a running sink.
//!
//! Each type is one module holding its configuration model, its keys and reader
//! (unknown keys refused with file and line, like every table), its encoder and its
//! endpoint. This list gives each its name and maps what its reader returns onto its
//! [`SinkKind`] variant; the type modules know nothing of the list (they take only
//! [`ReadContext`]). The configuration reader looks types up here ([`find`]); the
//! sink set asks [`build`] for each configured sink. Adding a type is one module, one
//! [`SINK_TYPES`] entry and its [`SinkKind`] variant; every `match` on [`SinkKind`]
//! is exhaustive, so the compiler points at whatever else a new type must decide.

use std::sync::Arc;

use super::protocol::Protocol;
use super::read_context::ReadContext;
use super::{file, line_protocol, otlp, prometheus_remote_write, stdout, SinkError, Writer};
use crate::config::tree::Section;
use crate::config::SinkKind;

/// Reads one `[[sinks]]` table of a type (its `type` and `categories` already taken).
pub(crate) type ReadFn = fn(&mut Section<'_, '_>, &ReadContext<'_>) -> Option<SinkKind>;

/// One sink type.
pub struct SinkType {
    /// The `type` value.
    pub name: &'static str,
    /// The keys its table may hold beside `type` and `categories`, as groups: those it
    /// shares with other types (the network keys, the request options), each listed
    /// once beside the reader that reads them, then its own.
    pub keys: &'static [&'static [&'static str]],
    /// Its reader.
    pub(crate) read: ReadFn,
}

/// Every sink type, in the order the documentation lists them.
pub const SINK_TYPES: &[SinkType] = &[
    SinkType {
        name: stdout::NAME,
        keys: stdout::KEYS,
        read: |section, context| {
            stdout::read(section, context).map(|format| SinkKind::Stdout { format })
        },
    },
    SinkType {
        name: file::NAME,
        keys: file::KEYS,
        read: |section, context| file::read(section, context).map(|path| SinkKind::File { path }),
    },
    SinkType {
        name: line_protocol::DATAKIT_NAME,
        keys: line_protocol::DATAKIT_KEYS,
        read: |section, context| {
            line_protocol::read_datakit(section, context).map(|net| SinkKind::Datakit { net })
        },
    },
    SinkType {
        name: line_protocol::INFLUXDB_NAME,
        keys: line_protocol::INFLUXDB_KEYS,
        read: |section, context| {
            line_protocol::read_influxdb(section, context)
                .map(|(net, api)| SinkKind::Influxdb { net, api })
        },
    },
    SinkType {
        name: prometheus_remote_write::NAME,
        keys: prometheus_remote_write::KEYS,
        read: |section, context| {
            prometheus_remote_write::read(section, context).map(SinkKind::PrometheusRemoteWrite)
        },
    },
    SinkType {
        name: otlp::NAME,
        keys: otlp::KEYS,
        read: |section, context| otlp::read(section, context).map(SinkKind::Otlp),
    },
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

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::config::{parse_main, ConfigError, HttpAuth, SinkConfig};

    const MAIN: &str = "/etc/pythond/pythond.toml";

    fn sinks(text: &str) -> Result<Vec<SinkConfig>, ConfigError> {
        parse_main(text, Path::new(MAIN)).map(|c| c.sinks)
    }

    #[track_caller]
    fn error(text: &str, line: usize, key: &str, needle: &str) {
        let err = match sinks(text) {
            Ok(s) => panic!("expected an error, got {s:?}"),
            Err(e) => e,
        };
        let shown = err.to_string();
        assert_eq!((err.line(), err.key()), (Some(line), Some(key)), "{shown}");
        assert!(
            shown.contains(needle),
            "{shown:?} should contain {needle:?}"
        );
    }

    #[test]
    fn every_type_is_listed_once_and_found_by_name() {
        let names = names();
        for name in &names {
            assert_eq!(find(name).map(|t| t.name), Some(*name));
            assert_eq!(names.iter().filter(|n| *n == name).count(), 1, "{name}");
        }
        assert_eq!(find("kafka").map(|t| t.name), None);
    }

    #[test]
    fn a_remote_write_sink_reads_its_url_auth_and_headers() {
        std::env::set_var("PYTHOND_TEST_PRW_PASSWORD", "pw");
        let text = "[[sinks]]\ntype = \"prometheus_remote_write\"\nurl = \"http://mimir:9009/api/v1/push\"\nusername = \"u\"\npassword_env = \"PYTHOND_TEST_PRW_PASSWORD\"\nheaders = { \"X-Scope-OrgID\" = \"tenant-1\" }\n";
        let found = sinks(text).expect("valid");
        let SinkKind::PrometheusRemoteWrite(config) = &found[0].kind else {
            panic!("{found:?}")
        };
        assert_eq!(config.net.url, "http://mimir:9009/api/v1/push");
        assert!(config.net.name.starts_with("prometheus_remote_write-"));
        assert_eq!(
            config.request.auth,
            HttpAuth::Basic {
                username: "u".into(),
                password: "pw".into()
            }
        );
        assert_eq!(config.request.headers["X-Scope-OrgID"], "tenant-1");
        // Debug output never shows the password.
        assert!(!format!("{found:?}").contains("pw\""));
    }

    #[test]
    fn an_otlp_sink_puts_host_and_the_global_tags_on_the_resource_by_default() {
        let text = "[global_tags]\nregion = \"eu\"\nzone = \"a\"\n\n[[sinks]]\ntype = \"otlp\"\nurl = \"http://collector:4318\"\n\n[[sinks]]\ntype = \"otlp\"\nname = \"own\"\nurl = \"http://collector:4318\"\nresource_tags = [\"zone\", \"service\"]\n";
        let found = sinks(text).expect("valid");
        let tags: Vec<Vec<String>> = found
            .iter()
            .map(|s| match &s.kind {
                SinkKind::Otlp(c) => c.resource_tags.clone(),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(
            tags,
            [vec!["host", "region", "zone"], vec!["service", "zone"]]
        );
    }

    #[test]
    fn mistakes_in_the_new_sink_types_name_their_line_and_key() {
        error(
            "[[sinks]]\ntype = \"prometheus_remote_write\"\nurl = \"http://x/api/v1/write\"\ndb = \"x\"\n",
            4,
            "db",
            "unknown key `db` in [[sinks]] with type = \"prometheus_remote_write\"",
        );
        error(
            "[[sinks]]\ntype = \"otlp\"\nurl = \"http://x:4318\"\nbearer_token_env = \"PYTHOND_TEST_UNSET_VARIABLE\"\n",
            4,
            "bearer_token_env",
            "environment variable PYTHOND_TEST_UNSET_VARIABLE is not set",
        );
        error(
            "[[sinks]]\ntype = \"otlp\"\nurl = \"http://x:4318\"\nheaders = { \"Content-Encoding\" = \"br\" }\n",
            4,
            "headers",
            "is set by the sink itself",
        );
        error(
            "[[sinks]]\ntype = \"prometheus_remote_write\"\nurl = \"http://x/api/v1/write\"\nusername = \"u\"\n",
            4,
            "username",
            "needs `password_env` too",
        );
        error(
            "[[sinks]]\ntype = \"prometheus_remote_write\"\n",
            1,
            "url",
            "missing required key `url`",
        );
        error(
            "[[sinks]]\ntype = \"otlp\"\nurl = \"http://x:4318\"\nresource_tags = \"host\"\n",
            4,
            "resource_tags",
            "",
        );
    }

    #[test]
    fn every_network_type_builds() {
        let text = "[[sinks]]\ntype = \"datakit\"\nurl = \"http://dk:9529\"\n\n[[sinks]]\ntype = \"influxdb\"\nurl = \"http://i:8086\"\ndb = \"d\"\n\n[[sinks]]\ntype = \"prometheus_remote_write\"\nurl = \"http://vm:8428/api/v1/write\"\n\n[[sinks]]\ntype = \"otlp\"\nurl = \"http://c:4318\"\n";
        for sink in sinks(text).expect("valid") {
            assert!(
                matches!(build(&sink.kind), Ok(Built::Network(_))),
                "{sink:?}"
            );
        }
    }
}

/// The configurations of docs/BACKENDS.md are valid and build.
#[cfg(test)]
mod documented_backends {
    use std::path::Path;

    use super::{build, Built};
    use crate::config::parse_main;

    const DOC: &str = include_str!("../../docs/BACKENDS.md");

    #[test]
    fn every_documented_configuration_reads_and_builds() {
        for var in ["VMAUTH_TOKEN", "MIMIR_PASSWORD", "OTLP_TOKEN"] {
            std::env::set_var(var, "secret-from-the-environment");
        }
        let blocks: Vec<&str> = DOC
            .split("```toml\n")
            .skip(1)
            .filter_map(|rest| rest.split("```").next())
            .collect();
        assert!(blocks.len() >= 12, "{} blocks", blocks.len());
        for block in blocks {
            let config = parse_main(block, Path::new("/etc/pythond/pythond.toml"))
                .unwrap_or_else(|e| panic!("{e}\nin:\n{block}"));
            for sink in &config.sinks {
                assert!(
                    matches!(build(&sink.kind), Ok(Built::Network(_))),
                    "{block}"
                );
            }
        }
    }
}
