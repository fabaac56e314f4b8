//! `type = "otlp"`: points sent as OTLP over HTTP with protobuf bodies, gzipped, to an
//! OpenTelemetry Collector (or any OTLP/HTTP receiver): metric points to
//! `<url>/v1/metrics`, logging points to `<url>/v1/logs`.
//!
//! - A metric point becomes gauges, one data point per numeric field, named
//!   `<measurement>_<field>` (as the other metric sinks name series), at the point's
//!   time; integers (and booleans, as 1 and 0) are `as_int`, floats `as_double`; its
//!   tags are the data point's attributes. String fields are left out and counted.
//! - A logging point becomes a log record: the `message` field is its body, the
//!   `status` tag (or field) its severity (DataKit's statuses mapped onto OTLP's
//!   severity numbers, the text kept as `severity_text`), and every other tag and
//!   field an attribute, with `source` = the measurement unless a tag or field of
//!   that name exists.
//! - The tags that describe the agent rather than the point — `resource_tags`,
//!   default `host` and the `[global_tags]` keys — go to the resource instead.
//!
//! Other categories have no OTLP signal here: they are not sent, and counted
//! (`skipped_points`). Points are encoded when buffered: a record is a complete
//! `Export*ServiceRequest` and a request is the concatenation of its records.

pub mod proto;

use std::collections::BTreeMap;
use std::io;

use prost::Message;
use reqwest::header::HeaderMap;

use super::buffer::Record;
use super::protocol::{self, DeadLetterBody, PartlyRejected, Protocol, Request, Skipped};
use super::read_context::ReadContext;
use crate::config::network_sink::{read_network, read_request_options, NETWORK_KEYS, REQUEST_KEYS};
use crate::config::tree::{self, Section};
use crate::config::{NetworkSinkConfig, RequestOptions};
use crate::point::{Category, FieldRef, PointRef};
use proto::{any_value, number_data_point, AnyValue, KeyValue};

/// The `type` value.
pub const NAME: &str = "otlp";

/// Keys of `type = "otlp"`: the network keys, the request options and
/// `resource_tags`.
pub const KEYS: &[&[&str]] = &[NETWORK_KEYS, REQUEST_KEYS, &["resource_tags"]];

/// An `otlp` sink's settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OtlpConfig {
    /// The settings every network sink has; `url` is the receiver's base URL
    /// (`http://collector:4318`): requests go to `<url>/v1/metrics` and `<url>/v1/logs`.
    /// A full signal path (`.../v1/metrics` or `.../v1/logs`) names the same base.
    pub net: NetworkSinkConfig,
    /// Authorization and extra `headers`.
    pub request: RequestOptions,
    /// Tags moved from each point to its resource.
    ///
    /// Key `resource_tags`, list of tag names; default `host` and every key of
    /// `[global_tags]`.
    pub resource_tags: Vec<String>,
}

/// Reads an `otlp` sink's settings.
pub(crate) fn read(section: &mut Section<'_, '_>, context: &ReadContext<'_>) -> Option<OtlpConfig> {
    let request = read_request_options(section);
    let resource_tags = section
        .get("resource_tags", |node| {
            Ok(tree::string_list(node)?
                .into_iter()
                .map(|(s, _)| s)
                .collect::<Vec<_>>())
        })
        .unwrap_or_else(|| context.agent_tags.to_vec());
    let net = read_network(section, NAME, "", context.base)?;
    let mut resource_tags = resource_tags;
    resource_tags.sort();
    resource_tags.dedup();
    Some(OtlpConfig {
        net,
        request,
        resource_tags,
    })
}

/// The resource tags a point carries, as (name, value) pairs.
type ResourceKey<'p> = Vec<(&'p str, &'p str)>;

/// The OTLP encoder and endpoint.
pub struct Otlp {
    metrics_url: String,
    logs_url: String,
    resource_tags: Vec<String>,
    headers: HeaderMap,
}

impl Otlp {
    pub fn new(config: &OtlpConfig) -> Result<Self, String> {
        let base = signal_base(&config.net.url);
        let headers = protocol::header_map(
            &[
                ("content-type", "application/x-protobuf".to_string()),
                ("content-encoding", "gzip".to_string()),
                (
                    "user-agent",
                    concat!("pythond/", env!("CARGO_PKG_VERSION")).to_string(),
                ),
            ],
            Some(&config.request),
        )?;
        Ok(Self {
            metrics_url: format!("{base}/v1/metrics"),
            logs_url: format!("{base}/v1/logs"),
            resource_tags: config.resource_tags.clone(),
            headers,
        })
    }

    /// Splits `points` by their resource: the values of the resource tags they carry.
    fn by_resource<'p>(&self, points: &[PointRef<'p>]) -> Vec<(Vec<KeyValue>, Vec<PointRef<'p>>)> {
        let mut groups: Vec<(ResourceKey<'_>, Vec<PointRef<'p>>)> = Vec::new();
        for point in points {
            let key: Vec<(&str, &str)> = self
                .resource_tags
                .iter()
                .filter_map(|t| point.tag(t).map(|v| (t.as_str(), v)))
                .collect();
            match groups.iter_mut().find(|(k, _)| *k == key) {
                Some((_, same)) => same.push(*point),
                None => groups.push((key, vec![*point])),
            }
        }
        groups
            .into_iter()
            .map(|(key, points)| {
                let attributes = key
                    .into_iter()
                    .map(|(k, v)| string_attribute(k, v))
                    .collect();
                (attributes, points)
            })
            .collect()
    }

    fn is_resource_tag(&self, key: &str) -> bool {
        self.resource_tags.iter().any(|t| t == key)
    }

    fn metrics(&self, points: &[PointRef<'_>], body: &mut Vec<u8>, skipped: &mut Skipped) -> u32 {
        let mut request = proto::ExportMetricsServiceRequest::default();
        let mut sent = 0;
        for (resource, points) in self.by_resource(points) {
            let mut metrics: BTreeMap<String, Vec<proto::NumberDataPoint>> = BTreeMap::new();
            for point in points {
                let attributes: Vec<KeyValue> = point
                    .tags
                    .iter()
                    .filter(|(k, _)| !self.is_resource_tag(k))
                    .map(|(k, v)| string_attribute(k, v))
                    .collect();
                let mut any = false;
                for (field, value) in point.fields {
                    let value = match value {
                        FieldRef::Int(i) => number_data_point::Value::AsInt(*i),
                        FieldRef::Bool(b) => number_data_point::Value::AsInt(i64::from(*b)),
                        FieldRef::Float(f) => number_data_point::Value::AsDouble(*f),
                        FieldRef::Str(_) => {
                            skipped.fields += 1;
                            continue;
                        }
                    };
                    any = true;
                    metrics
                        .entry(format!("{}_{field}", point.measurement))
                        .or_default()
                        .push(proto::NumberDataPoint {
                            time_unix_nano: unix_nanos(point.time_ns),
                            value: Some(value),
                            attributes: attributes.clone(),
                        });
                }
                if any {
                    sent += 1;
                } else {
                    skipped.points += 1;
                }
            }
            if metrics.is_empty() {
                continue;
            }
            request.resource_metrics.push(proto::ResourceMetrics {
                resource: Some(proto::Resource {
                    attributes: resource,
                }),
                scope_metrics: vec![proto::ScopeMetrics {
                    scope: Some(scope()),
                    metrics: metrics
                        .into_iter()
                        .map(|(name, data_points)| proto::Metric {
                            name,
                            gauge: Some(proto::Gauge { data_points }),
                        })
                        .collect(),
                }],
            });
        }
        request.encode(body).expect("a Vec grows as needed");
        sent
    }

    fn logs(&self, points: &[PointRef<'_>], body: &mut Vec<u8>) -> u32 {
        let observed = unix_nanos(crate::point::now_ns());
        let mut request = proto::ExportLogsServiceRequest::default();
        let mut sent = 0;
        for (resource, points) in self.by_resource(points) {
            let mut records = Vec::with_capacity(points.len());
            for point in points {
                records.push(self.log_record(&point, observed));
                sent += 1;
            }
            request.resource_logs.push(proto::ResourceLogs {
                resource: Some(proto::Resource {
                    attributes: resource,
                }),
                scope_logs: vec![proto::ScopeLogs {
                    scope: Some(scope()),
                    log_records: records,
                }],
            });
        }
        request.encode(body).expect("a Vec grows as needed");
        sent
    }

    fn log_record(&self, point: &PointRef<'_>, observed: u64) -> proto::LogRecord {
        let status_tag = point.tag("status");
        let status_field = match (status_tag, point.field("status")) {
            (None, Some(FieldRef::Str(s))) => Some(s.as_ref()),
            _ => None,
        };
        let status = status_tag.or(status_field);
        let mut attributes: Vec<KeyValue> = Vec::new();
        for (key, value) in point.tags {
            if self.is_resource_tag(key) || (key == "status" && status_tag.is_some()) {
                continue;
            }
            attributes.push(string_attribute(key, value));
        }
        for (key, value) in point.fields {
            if key == "message" || (key == "status" && status_field.is_some()) {
                continue;
            }
            attributes.push(KeyValue {
                key: key.to_string(),
                value: Some(any_value_of(value)),
            });
        }
        if !point.has_key("source") {
            attributes.push(string_attribute("source", point.measurement));
        }
        proto::LogRecord {
            time_unix_nano: unix_nanos(point.time_ns),
            observed_time_unix_nano: observed,
            severity_number: status.map_or(0, severity),
            severity_text: status.map(str::to_string).unwrap_or_default(),
            body: point.field("message").map(any_value_of),
            attributes,
        }
    }
}

impl Protocol for Otlp {
    fn encode(
        &self,
        category: Category,
        points: &[PointRef<'_>],
        body: &mut Vec<u8>,
        skipped: &mut Skipped,
    ) -> u32 {
        match category {
            Category::Metric => self.metrics(points, body, skipped),
            Category::Logging => self.logs(points, body),
            _ => {
                skipped.points += points.len() as u64;
                0
            }
        }
    }

    fn requests(&self, records: &[Record]) -> Vec<Request> {
        protocol::per_category(records, |category| match category {
            Category::Logging => self.logs_url.clone(),
            _ => self.metrics_url.clone(),
        })
    }

    fn wire(&self, body: &[u8]) -> io::Result<Vec<u8>> {
        protocol::gzip(body)
    }

    fn headers(&self) -> &HeaderMap {
        &self.headers
    }

    fn dead_letter_body(&self) -> DeadLetterBody {
        DeadLetterBody::Binary
    }

    fn body_format(&self) -> crate::sink::body_format::BodyFormat {
        crate::sink::body_format::BodyFormat::Otlp
    }

    fn reads_success_body(&self) -> bool {
        true
    }

    /// `Export*ServiceResponse.partial_success`: `rejected_data_points` (metrics) or
    /// `rejected_log_records` (logs), and the receiver's message.
    fn rejected_in_success(&self, _request: &Request, body: &[u8]) -> Option<PartlyRejected> {
        let response = proto::ExportResponse::decode(body).ok()?;
        let partial = response.partial_success?;
        (partial.rejected > 0).then(|| PartlyRejected {
            points: partial.rejected.unsigned_abs(),
            message: partial.error_message,
        })
    }
}

/// The base URL of the signal paths: `url` itself, or what precedes `/v1/metrics` or
/// `/v1/logs` when `url` is a full signal path (docs/CONFIG.md).
fn signal_base(url: &str) -> &str {
    let url = url.trim_end_matches('/');
    ["/v1/metrics", "/v1/logs"]
        .iter()
        .find_map(|signal| url.strip_suffix(signal))
        .unwrap_or(url)
}

fn scope() -> proto::InstrumentationScope {
    proto::InstrumentationScope {
        name: "pythond".to_string(),
        version: env!("CARGO_PKG_VERSION").to_string(),
    }
}

fn string_attribute(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.to_string(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(value.to_string())),
        }),
    }
}

fn any_value_of(value: &FieldRef<'_>) -> AnyValue {
    AnyValue {
        value: Some(match value {
            FieldRef::Int(i) => any_value::Value::IntValue(*i),
            FieldRef::Float(f) => any_value::Value::DoubleValue(*f),
            FieldRef::Bool(b) => any_value::Value::BoolValue(*b),
            FieldRef::Str(s) => any_value::Value::StringValue(s.to_string()),
        }),
    }
}

/// Nanoseconds since the epoch as OTLP holds them (times before 1970 become 0).
fn unix_nanos(time_ns: i64) -> u64 {
    u64::try_from(time_ns).unwrap_or(0)
}

/// OTLP `SeverityNumber` of a DataKit status (docs/CONFIG.md has the table);
/// 0 (unspecified) for a status it does not know.
pub fn severity(status: &str) -> i32 {
    match status.to_ascii_lowercase().as_str() {
        "trace" => 1,
        "debug" => 5,
        "info" | "ok" => 9,
        "notice" => 10,
        "warn" | "warning" => 13,
        "error" | "err" => 17,
        "critical" | "crit" => 21,
        "alert" => 22,
        "emerg" | "emergency" => 23,
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::point::{FieldValue, Point, PointBatch};
    use proptest::prelude::*;

    /// What the sink encodes for `points` of `category`.
    fn encode(
        otlp: &Otlp,
        category: Category,
        points: &[Point],
        body: &mut Vec<u8>,
        skipped: &mut Skipped,
    ) -> u32 {
        let batch = PointBatch::borrowing(points);
        let refs: Vec<_> = batch.iter().collect();
        otlp.encode(category, &refs, body, skipped)
    }

    fn sink(resource_tags: &[&str]) -> Otlp {
        Otlp::new(&OtlpConfig {
            net: crate::sink::tests_support::net("otlp", "http://127.0.0.1:1/"),
            request: RequestOptions::default(),
            resource_tags: resource_tags.iter().map(|s| s.to_string()).collect(),
        })
        .expect("sink")
    }

    fn point(category: Category, tags: &[(&str, &str)], fields: Vec<(&str, FieldValue)>) -> Point {
        Point {
            category,
            measurement: "m".into(),
            tags: tags
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            fields: fields
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect(),
            time_ns: 1_700_000_000_000_000_001,
        }
    }

    #[test]
    fn metric_fields_become_gauges_with_the_agent_tags_on_the_resource() {
        let otlp = sink(&["host", "region"]);
        let p = point(
            Category::Metric,
            &[("host", "h"), ("region", "eu"), ("cpu", "0")],
            vec![
                ("a", FieldValue::Int(3)),
                ("b", FieldValue::Float(0.5)),
                ("c", FieldValue::Bool(true)),
                ("s", FieldValue::Str("x".into())),
            ],
        );
        let mut body = Vec::new();
        let mut skipped = Skipped::default();
        assert_eq!(
            encode(&otlp, Category::Metric, &[p], &mut body, &mut skipped),
            1
        );
        assert_eq!(
            skipped,
            Skipped {
                points: 0,
                fields: 1
            }
        );
        let request = proto::ExportMetricsServiceRequest::decode(body.as_slice()).expect("decodes");
        let rm = &request.resource_metrics[0];
        let resource: Vec<&str> = rm
            .resource
            .as_ref()
            .expect("resource")
            .attributes
            .iter()
            .map(|a| a.key.as_str())
            .collect();
        assert_eq!(resource, ["host", "region"]);
        let metrics = &rm.scope_metrics[0].metrics;
        let names: Vec<&str> = metrics.iter().map(|m| m.name.as_str()).collect();
        assert_eq!(names, ["m_a", "m_b", "m_c"]);
        let dp = &metrics[2].gauge.as_ref().expect("gauge").data_points[0];
        assert_eq!(dp.value, Some(number_data_point::Value::AsInt(1)));
        assert_eq!(dp.time_unix_nano, 1_700_000_000_000_000_001);
        assert_eq!(dp.attributes, vec![string_attribute("cpu", "0")]);
    }

    #[test]
    fn a_full_signal_path_gives_the_base_of_both_signals() {
        for url in [
            "http://c:4318",
            "http://c:4318/",
            "http://c:4318/v1/metrics",
            "http://c:4318/v1/logs/",
        ] {
            assert_eq!(signal_base(url), "http://c:4318", "{url}");
        }
        assert_eq!(signal_base("https://gw/otlp/v1/metrics"), "https://gw/otlp");
    }

    #[test]
    fn a_partial_success_names_what_was_refused() {
        let otlp = sink(&[]);
        let request = Request {
            url: String::new(),
            category: Some(Category::Metric),
            body: Vec::new(),
            points: 10,
        };
        let answer = proto::ExportResponse {
            partial_success: Some(proto::PartialSuccess {
                rejected: 3,
                error_message: "bad names".into(),
            }),
        };
        assert_eq!(
            otlp.rejected_in_success(&request, &answer.encode_to_vec()),
            Some(PartlyRejected {
                points: 3,
                message: "bad names".into()
            })
        );
        assert_eq!(otlp.rejected_in_success(&request, b""), None);
        let all_taken = proto::ExportResponse {
            partial_success: Some(proto::PartialSuccess::default()),
        };
        assert_eq!(
            otlp.rejected_in_success(&request, &all_taken.encode_to_vec()),
            None
        );
    }

    #[test]
    fn statuses_map_onto_severity_numbers() {
        for (status, number) in [
            ("info", 9),
            ("WARNING", 13),
            ("error", 17),
            ("critical", 21),
            ("emerg", 23),
            ("debug", 5),
            ("whatever", 0),
        ] {
            assert_eq!(severity(status), number, "{status}");
        }
    }

    proptest! {
        /// Every log point decodes back to a record holding exactly its message,
        /// status, tags and fields.
        #[test]
        fn log_records_carry_everything(
            tags in prop::collection::btree_map("[a-z]{1,6}", "[a-z]{1,6}", 0..4),
            message in "[^\u{0}]{0,20}",
            n in any::<i64>(),
        ) {
            let otlp = sink(&["host"]);
            let mut p = point(Category::Logging, &[("host", "h")], vec![
                ("message", FieldValue::Str(message.clone())),
                ("n", FieldValue::Int(n)),
            ]);
            p.tags.extend(tags.clone());
            let mut body = Vec::new();
            let mut skipped = Skipped::default();
            prop_assert_eq!(encode(&otlp, Category::Logging, &[p], &mut body, &mut skipped), 1);
            let request = proto::ExportLogsServiceRequest::decode(body.as_slice()).expect("decodes");
            let record = &request.resource_logs[0].scope_logs[0].log_records[0];
            prop_assert_eq!(record.body.clone(), Some(any_value_of(&FieldRef::Str(message.into()))));
            let keys: Vec<&str> = record.attributes.iter().map(|a| a.key.as_str()).collect();
            for tag in tags.keys().filter(|k| *k != "host" && *k != "status") {
                prop_assert!(keys.contains(&tag.as_str()));
            }
            prop_assert!(keys.contains(&"n"));
            prop_assert!(!keys.contains(&"host"));
        }
    }
}
