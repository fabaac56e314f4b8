//! `type = "prometheus_remote_write"`: metric points sent as Prometheus remote write
//! 1.0 — a protobuf `WriteRequest`, snappy block compressed, with the spec's headers
//! (`Content-Encoding: snappy`, `Content-Type: application/x-protobuf`,
//! `X-Prometheus-Remote-Write-Version: 0.1.0`) — to VictoriaMetrics (single node or
//! vminsert), vmagent, Prometheus, Mimir, Cortex or Thanos receive.
//!
//! Series are named as VictoriaMetrics names the same point written as line
//! protocol, so dashboards work whichever sink wrote the data: one series per
//! numeric field, `__name__` = `<measurement>_<field>`, every tag a label (`host` and
//! the global tags included), the sample's timestamp the point's time in
//! milliseconds. Booleans are 1 and 0. String fields have no place in a sample: they
//! are left out and counted (`skipped_fields`), and a point with nothing else is not
//! sent (`skipped_points`), as are points of other categories than `metric`.
//!
//! Points are encoded when they are buffered, straight into the wire format of
//! `WriteRequest` (field 1, `repeated TimeSeries`): a record is a valid request on
//! its own and a request is the concatenation of its records. The message structs
//! below ([`proto`]) describe the same format for decoding and tests.

use std::cmp::Ordering;
use std::io;

use prost::encoding::{encode_varint, encoded_len_varint};
use reqwest::header::HeaderMap;

use super::buffer::Record;
use super::protocol::{self, DeadLetterBody, Protocol, Request, Skipped};
use super::read_context::ReadContext;
use crate::config::network_sink::{read_network, read_request_options, NETWORK_KEYS, REQUEST_KEYS};
use crate::config::tree::Section;
use crate::config::{NetworkSinkConfig, RequestOptions};
use crate::point::{key_order, Category, FieldRef, PointRef};

/// The `type` value.
pub const NAME: &str = "prometheus_remote_write";

/// Keys of `type = "prometheus_remote_write"`: the network keys (`url` is the full
/// write URL) plus the request options.
pub const KEYS: &[&[&str]] = &[NETWORK_KEYS, REQUEST_KEYS];

/// A `prometheus_remote_write` sink's settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RemoteWriteConfig {
    /// The settings every network sink has; `url` is the full write URL, e.g.
    /// `http://vm:8428/api/v1/write`, `http://vminsert:8480/insert/0/prometheus/api/v1/write`,
    /// `http://mimir:9009/api/v1/push`, `http://prometheus:9090/api/v1/write`.
    pub net: NetworkSinkConfig,
    /// Authorization (`bearer_token_env`, or `username` + `password_env`) and extra
    /// `headers` such as `X-Scope-OrgID`.
    pub request: RequestOptions,
}

/// Reads a `prometheus_remote_write` sink's settings.
pub(crate) fn read(
    section: &mut Section<'_, '_>,
    context: &ReadContext<'_>,
) -> Option<RemoteWriteConfig> {
    let request = read_request_options(section);
    let net = read_network(section, NAME, "", context.base)?;
    Some(RemoteWriteConfig { net, request })
}

/// The remote write encoder and endpoint.
pub struct RemoteWrite {
    url: String,
    headers: HeaderMap,
}

impl RemoteWrite {
    pub fn new(config: &RemoteWriteConfig) -> Result<Self, String> {
        let headers = protocol::header_map(
            &[
                ("content-type", "application/x-protobuf".to_string()),
                ("content-encoding", "snappy".to_string()),
                ("x-prometheus-remote-write-version", "0.1.0".to_string()),
                (
                    "user-agent",
                    concat!("pythond/", env!("CARGO_PKG_VERSION")).to_string(),
                ),
            ],
            Some(&config.request),
        )?;
        Ok(Self {
            url: config.net.url.clone(),
            headers,
        })
    }
}

impl Protocol for RemoteWrite {
    fn encode(
        &self,
        category: Category,
        points: &[PointRef<'_>],
        body: &mut Vec<u8>,
        skipped: &mut Skipped,
    ) -> u32 {
        if category != Category::Metric {
            skipped.points += points.len() as u64;
            return 0;
        }
        // About what a point with a few tags and two fields takes, so that the body
        // is rarely copied while it grows.
        body.reserve(points.len() * 160);
        let mut encoder = SeriesEncoder::default();
        let mut sent = 0;
        for point in points {
            if encoder.point(point, body, skipped) {
                sent += 1;
            } else {
                skipped.points += 1;
            }
        }
        sent
    }

    fn requests(&self, records: &[Record]) -> Vec<Request> {
        let all: Vec<&Record> = records.iter().collect();
        protocol::concatenate(&all, &self.url, Some(Category::Metric))
    }

    fn wire(&self, body: &[u8]) -> io::Result<Vec<u8>> {
        snap::raw::Encoder::new()
            .compress_vec(body)
            .map_err(io::Error::other)
    }

    fn headers(&self) -> &HeaderMap {
        &self.headers
    }

    fn dead_letter_body(&self) -> DeadLetterBody {
        DeadLetterBody::Binary
    }

    fn body_format(&self) -> crate::sink::body_format::BodyFormat {
        crate::sink::body_format::BodyFormat::RemoteWrite
    }
}

/// Protobuf key bytes: (field number << 3) | wire type.
const KEY_1_LEN: u8 = 0x0a;
const KEY_2_LEN: u8 = 0x12;
const KEY_1_DOUBLE: u8 = 0x09;
const KEY_2_VARINT: u8 = 0x10;
const NAME_LABEL: &str = "__name__";

/// Writes points as `TimeSeries` entries of a `WriteRequest`, reusing its scratch
/// buffers from point to point.
#[derive(Default)]
struct SeriesEncoder {
    /// The encoded labels sorting before `__name__`.
    before: Vec<u8>,
    /// The encoded labels sorting after it.
    after: Vec<u8>,
    name: Vec<u8>,
}

impl SeriesEncoder {
    /// Appends one series per numeric field of `point`; false if it had none.
    fn point(&mut self, point: &PointRef<'_>, out: &mut Vec<u8>, skipped: &mut Skipped) -> bool {
        self.before.clear();
        self.after.clear();
        for (key, value) in point.tags {
            let labels = match key_order(key, NAME_LABEL) {
                Ordering::Less => &mut self.before,
                Ordering::Greater => &mut self.after,
                // A tag spelled like the name label would make a second `__name__`.
                Ordering::Equal => continue,
            };
            label(labels, key.as_bytes(), value.as_bytes());
        }
        let timestamp_ms = point.time_ns.div_euclid(1_000_000);
        let mut any = false;
        for (field, value) in point.fields {
            let value = match value {
                FieldRef::Int(i) => *i as f64,
                FieldRef::Float(f) => *f,
                FieldRef::Bool(b) => f64::from(u8::from(*b)),
                FieldRef::Str(_) => {
                    skipped.fields += 1;
                    continue;
                }
            };
            any = true;
            self.name.clear();
            self.name.extend_from_slice(point.measurement.as_bytes());
            if !self.name.is_empty() {
                self.name.push(b'_');
            }
            self.name.extend_from_slice(field.as_bytes());
            let name_label_len = label_len(NAME_LABEL.as_bytes(), &self.name);
            let sample_len = sample_len(value, timestamp_ms);
            let series_len = self.before.len()
                + 1
                + encoded_len_varint(name_label_len as u64)
                + name_label_len
                + self.after.len()
                + 1
                + encoded_len_varint(sample_len as u64)
                + sample_len;
            out.push(KEY_1_LEN);
            varint(series_len as u64, out);
            out.extend_from_slice(&self.before);
            label(out, NAME_LABEL.as_bytes(), &self.name);
            out.extend_from_slice(&self.after);
            out.push(KEY_2_LEN);
            varint(sample_len as u64, out);
            if value != 0.0 {
                out.push(KEY_1_DOUBLE);
                out.extend_from_slice(&value.to_le_bytes());
            }
            if timestamp_ms != 0 {
                out.push(KEY_2_VARINT);
                varint(timestamp_ms as u64, out);
            }
        }
        any
    }
}

/// The encoded length of a `Label` message's contents (proto3 leaves out empty
/// strings).
fn label_len(name: &[u8], value: &[u8]) -> usize {
    let field = |s: &[u8]| {
        if s.is_empty() {
            0
        } else {
            1 + encoded_len_varint(s.len() as u64) + s.len()
        }
    };
    field(name) + field(value)
}

/// Appends a `labels` entry (field 1 of `TimeSeries`).
fn label(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.push(KEY_1_LEN);
    varint(label_len(name, value) as u64, out);
    for (key, s) in [(KEY_1_LEN, name), (KEY_2_LEN, value)] {
        if !s.is_empty() {
            out.push(key);
            varint(s.len() as u64, out);
            out.extend_from_slice(s);
        }
    }
}

/// Appends a varint; lengths of labels and names fit one byte, written inline.
#[inline]
fn varint(value: u64, out: &mut Vec<u8>) {
    if value < 0x80 {
        out.push(value as u8);
    } else {
        encode_varint(value, out);
    }
}

/// The encoded length of a `Sample` message's contents (zeros are left out).
fn sample_len(value: f64, timestamp_ms: i64) -> usize {
    let value_len = if value != 0.0 { 9 } else { 0 };
    let stamp_len = if timestamp_ms != 0 {
        1 + encoded_len_varint(timestamp_ms as u64)
    } else {
        0
    };
    value_len + stamp_len
}

/// The remote write 1.0 messages (`prometheus/prompb/remote.proto`, `types.proto`),
/// as far as a writer uses them.
pub mod proto {
    /// A batch of series.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct WriteRequest {
        #[prost(message, repeated, tag = "1")]
        pub timeseries: Vec<TimeSeries>,
    }

    /// One series: its labels (sorted by name, `__name__` among them) and samples.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct TimeSeries {
        #[prost(message, repeated, tag = "1")]
        pub labels: Vec<Label>,
        #[prost(message, repeated, tag = "2")]
        pub samples: Vec<Sample>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Label {
        #[prost(string, tag = "1")]
        pub name: String,
        #[prost(string, tag = "2")]
        pub value: String,
    }

    /// A value at a time in milliseconds since the Unix epoch.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Sample {
        #[prost(double, tag = "1")]
        pub value: f64,
        #[prost(int64, tag = "2")]
        pub timestamp: i64,
    }
}

#[cfg(test)]
mod tests {
    use super::proto::{Label, Sample, TimeSeries, WriteRequest};
    use super::*;
    use crate::point::{FieldValue, Point, PointBatch};
    use proptest::prelude::*;
    use prost::Message;
    use std::collections::BTreeMap;

    fn encode(points: &[Point]) -> (Vec<u8>, u32, Skipped) {
        let sink = RemoteWrite::new(&RemoteWriteConfig {
            net: crate::sink::tests_support::net("prw", "http://127.0.0.1:1/api/v1/write"),
            request: RequestOptions::default(),
        })
        .expect("sink");
        let batch = PointBatch::borrowing(points);
        let refs: Vec<_> = batch.iter().collect();
        let mut body = Vec::new();
        let mut skipped = Skipped::default();
        let n = sink.encode(Category::Metric, &refs, &mut body, &mut skipped);
        (body, n, skipped)
    }

    /// The series a point should become, built with the message structs.
    fn expected(point: &Point) -> Vec<TimeSeries> {
        point
            .fields
            .iter()
            .filter_map(|(field, value)| {
                let value = match value {
                    FieldValue::Int(i) => *i as f64,
                    FieldValue::Float(f) => *f,
                    FieldValue::Bool(b) => f64::from(u8::from(*b)),
                    FieldValue::Str(_) => return None,
                };
                let mut labels: Vec<Label> = point
                    .tags
                    .iter()
                    .filter(|(k, _)| *k != "__name__")
                    .map(|(k, v)| Label {
                        name: k.clone(),
                        value: v.clone(),
                    })
                    .collect();
                labels.push(Label {
                    name: "__name__".into(),
                    value: format!("{}_{field}", point.measurement),
                });
                labels.sort_by(|a, b| a.name.cmp(&b.name));
                Some(TimeSeries {
                    labels,
                    samples: vec![Sample {
                        value,
                        timestamp: point.time_ns.div_euclid(1_000_000),
                    }],
                })
            })
            .collect()
    }

    #[test]
    fn a_point_becomes_one_series_per_numeric_field_named_like_victoria_metrics_does() {
        let point = Point {
            category: Category::Metric,
            measurement: "cpu".into(),
            tags: [("host", "h1"), ("Zone", "A"), ("core", "0")]
                .into_iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            fields: [
                ("usage", FieldValue::Float(12.5)),
                ("count", FieldValue::Int(-3)),
                ("up", FieldValue::Bool(true)),
                ("down", FieldValue::Bool(false)),
                ("state", FieldValue::Str("ok".into())),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect(),
            time_ns: 1_700_000_000_123_456_789,
        };
        let (body, n, skipped) = encode(std::slice::from_ref(&point));
        assert_eq!(n, 1);
        assert_eq!(
            skipped,
            Skipped {
                points: 0,
                fields: 1
            }
        );
        let request = WriteRequest::decode(body.as_slice()).expect("decodes");
        let names: Vec<(String, f64)> = request
            .timeseries
            .iter()
            .map(|ts| {
                let name = ts
                    .labels
                    .iter()
                    .find(|l| l.name == "__name__")
                    .expect("name");
                (name.value.clone(), ts.samples[0].value)
            })
            .collect();
        assert_eq!(
            names,
            [
                ("cpu_count".to_string(), -3.0),
                ("cpu_down".to_string(), 0.0),
                ("cpu_up".to_string(), 1.0),
                ("cpu_usage".to_string(), 12.5),
            ]
        );
        let first = &request.timeseries[0];
        let label_names: Vec<&str> = first.labels.iter().map(|l| l.name.as_str()).collect();
        assert_eq!(label_names, ["Zone", "__name__", "core", "host"]);
        assert_eq!(first.samples[0].timestamp, 1_700_000_000_123);
    }

    #[test]
    fn a_point_of_strings_only_and_other_categories_are_skipped_and_counted() {
        let point = Point {
            category: Category::Metric,
            measurement: "m".into(),
            tags: BTreeMap::new(),
            fields: [("s".to_string(), FieldValue::Str("x".into()))]
                .into_iter()
                .collect(),
            time_ns: 1,
        };
        let (body, n, skipped) = encode(std::slice::from_ref(&point));
        assert_eq!((body.len(), n), (0, 0));
        assert_eq!(
            skipped,
            Skipped {
                points: 1,
                fields: 1
            }
        );
        let sink = RemoteWrite::new(&RemoteWriteConfig {
            net: crate::sink::tests_support::net("prw", "http://127.0.0.1:1/api/v1/write"),
            request: RequestOptions::default(),
        })
        .expect("sink");
        let mut skipped = Skipped::default();
        let mut body = Vec::new();
        let points = [point.clone(), point];
        let batch = PointBatch::borrowing(&points);
        let refs: Vec<_> = batch.iter().collect();
        assert_eq!(
            sink.encode(Category::Logging, &refs, &mut body, &mut skipped),
            0
        );
        assert_eq!(skipped.points, 2);
    }

    fn any_point() -> impl Strategy<Value = Point> {
        let key = "[A-Za-z_][A-Za-z0-9_.:-]{0,12}";
        let value = prop_oneof![
            any::<i64>().prop_map(FieldValue::Int),
            (-1e300f64..1e300).prop_map(FieldValue::Float),
            Just(FieldValue::Float(0.0)),
            any::<bool>().prop_map(FieldValue::Bool),
            "[a-z]{0,5}".prop_map(FieldValue::Str),
        ];
        (
            "[a-z][a-z0-9_]{0,10}",
            prop::collection::btree_map(key, "[^\n]{1,10}", 0..5),
            prop::collection::btree_map(key, value, 1..5),
            prop_oneof![any::<i64>(), Just(0i64), -10_000_000i64..10_000_000],
        )
            .prop_map(|(measurement, tags, fields, time_ns)| Point {
                category: Category::Metric,
                measurement,
                tags,
                fields,
                time_ns,
            })
    }

    proptest! {
        /// The hand-written encoder produces exactly what the message structs encode to.
        #[test]
        fn the_wire_encoding_is_what_prost_encodes(points in prop::collection::vec(any_point(), 1..6)) {
            let (body, _, _) = encode(&points);
            let expected = WriteRequest {
                timeseries: points.iter().flat_map(expected).collect(),
            };
            prop_assert_eq!(&body, &expected.encode_to_vec());
            prop_assert_eq!(WriteRequest::decode(body.as_slice()).expect("decodes"), expected);
        }
    }
}
