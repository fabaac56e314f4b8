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
//! `WriteRequest` (field 1, `repeated TimeSeries`), and the record is stored
//! snappy-compressed: a record is a valid request body on its own, and a request is
//! the records' snappy blocks spliced into one ([`snappy_block`]), which decompresses
//! to the concatenation of their `WriteRequest`s — the merged request. So each point
//! is compressed once, and the buffer writes, syncs and reads its compressed size
//! (docs/BUFFER.md). Records an earlier release stored uncompressed are compressed
//! when read ([`BodyFormat::receive`]). The message structs below ([`proto`])
//! describe the same format for decoding and tests.

use std::cell::RefCell;
use std::cmp::Ordering;
use std::io;

use prost::encoding::{encode_varint, encoded_len_varint};
use reqwest::header::HeaderMap;

use super::body_format::BodyFormat;
use super::buffer::Record;
use super::protocol::{self, DeadLetterBody, Protocol, Request, Skipped, MAX_REQUEST_BYTES};
use super::read_context::ReadContext;
use super::snappy_block::{self, Block, Compressor};
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

/// What encoding a record reuses from one record to the next on the same thread:
/// the uncompressed body and the compressor's space (fresh memory for every record
/// would be paged in each time).
#[derive(Default)]
struct Scratch {
    plain: Vec<u8>,
    compressor: Compressor,
}

/// Uncompressed space kept between records at most; a larger record's is given back.
const KEPT_PLAIN: usize = 4 << 20;

thread_local! {
    static SCRATCH: RefCell<Scratch> = RefCell::default();
}

/// Appends the series of `points` to `out` as uncompressed `TimeSeries` entries;
/// returns how many points had a numeric field.
fn encode_series(points: &[PointRef<'_>], out: &mut Vec<u8>, skipped: &mut Skipped) -> u32 {
    // About what a point with a few tags and two fields takes, so that the body
    // is rarely copied while it grows.
    out.reserve(points.len() * 160);
    let mut encoder = SeriesEncoder::default();
    let mut sent = 0;
    for point in points {
        if encoder.point(point, out, skipped) {
            sent += 1;
        } else {
            skipped.points += 1;
        }
    }
    sent
}

/// Splices records (snappy blocks) into requests of at most [`MAX_REQUEST_BYTES`]
/// uncompressed (a larger record goes alone).
fn splice_requests(records: &[Record], url: &str) -> Vec<Request> {
    let mut requests = Vec::new();
    let mut group: Vec<(Block<'_>, &Record)> = Vec::with_capacity(records.len());
    let mut plain = 0u64;
    for record in records {
        match Block::parse(&record.body) {
            Ok(block) => {
                if !group.is_empty() && plain + block.plain_len > MAX_REQUEST_BYTES as u64 {
                    requests.extend(spliced(&group, url));
                    group.clear();
                    plain = 0;
                }
                plain += block.plain_len;
                group.push((block, record));
            }
            Err(error) => {
                // Bodies are checked (CRC) and were made by this sink; should one
                // not be a block after all, the backend refuses it and it is
                // dead-lettered rather than silently lost.
                tracing::error!(%error, points = record.points, "a buffered remote write record is not a snappy block; sending it as it is");
                requests.extend(spliced(&group, url));
                group.clear();
                plain = 0;
                requests.push(request(url, record.body.clone(), u64::from(record.points)));
            }
        }
    }
    requests.extend(spliced(&group, url));
    requests
}

/// The request of one group of records, spliced; if that fails, one request per
/// record, each as stored.
fn spliced(group: &[(Block<'_>, &Record)], url: &str) -> Vec<Request> {
    if group.is_empty() {
        return Vec::new();
    }
    let blocks: Vec<Block<'_>> = group.iter().map(|(block, _)| *block).collect();
    let mut body = Vec::new();
    match snappy_block::splice(&blocks, &mut body) {
        Ok(()) => {
            let points = group.iter().map(|(_, r)| u64::from(r.points)).sum();
            vec![request(url, body, points)]
        }
        Err(error) => {
            // Groups are cut far below what one block can hold.
            tracing::error!(%error, "cannot splice remote write records; sending them one by one");
            group
                .iter()
                .map(|(_, r)| request(url, r.body.clone(), u64::from(r.points)))
                .collect()
        }
    }
}

fn request(url: &str, body: Vec<u8>, points: u64) -> Request {
    Request {
        url: url.to_string(),
        category: Some(Category::Metric),
        body,
        points,
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
        SCRATCH.with(|scratch| {
            let scratch = &mut *scratch.borrow_mut();
            scratch.plain.clear();
            let sent = encode_series(points, &mut scratch.plain, skipped);
            if sent > 0 {
                if let Err(error) = scratch.compressor.compress(&scratch.plain, body) {
                    // Only a body of gigabytes is too large for a snappy block.
                    tracing::error!(%error, points = sent, "cannot compress remote write points; they are left out");
                    skipped.points += u64::from(sent);
                    body.clear();
                    return 0;
                }
            }
            if scratch.plain.capacity() > KEPT_PLAIN {
                scratch.plain = Vec::new();
            }
            sent
        })
    }

    fn requests(&self, records: &[Record]) -> Vec<Request> {
        splice_requests(records, &self.url)
    }

    fn wire(&self, body: &[u8]) -> io::Result<Vec<u8>> {
        // Spliced from compressed records: already what is sent.
        Ok(body.to_vec())
    }

    fn headers(&self) -> &HeaderMap {
        &self.headers
    }

    fn dead_letter_body(&self) -> DeadLetterBody {
        DeadLetterBody::Binary
    }

    fn body_format(&self) -> BodyFormat {
        BodyFormat::RemoteWriteSnappy
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
}

/// The start of the `__name__` label's contents: its name field.
const NAME_FIELD: [u8; 10] = [KEY_1_LEN, 8, b'_', b'_', b'n', b'a', b'm', b'e', b'_', b'_'];

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
        // The sample's timestamp field is the same for every series of the point.
        let timestamp_ms = point.time_ns.div_euclid(1_000_000);
        let mut stamp = [0u8; 11];
        let stamp_len = if timestamp_ms != 0 {
            stamp[0] = KEY_2_VARINT;
            let unused = {
                let mut rest = &mut stamp[1..];
                encode_varint(timestamp_ms as u64, &mut rest);
                rest.len()
            };
            stamp.len() - unused
        } else {
            0
        };
        let stamp = &stamp[..stamp_len];
        let measurement = point.measurement.as_bytes();
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
            let field = field.as_bytes();
            // `<measurement>_<field>`, written in place.
            let name_len = measurement.len() + usize::from(!measurement.is_empty()) + field.len();
            let name_label_len = NAME_FIELD.len() + string_field_len(name_len);
            let value_len = if value != 0.0 { 9 } else { 0 };
            let sample_len = value_len + stamp.len();
            let series_len = self.before.len()
                + 1
                + encoded_len_varint(name_label_len as u64)
                + name_label_len
                + self.after.len()
                + 1
                + encoded_len_varint(sample_len as u64)
                + sample_len;
            out.reserve(1 + encoded_len_varint(series_len as u64) + series_len);
            out.push(KEY_1_LEN);
            varint(series_len as u64, out);
            out.extend_from_slice(&self.before);
            out.push(KEY_1_LEN);
            varint(name_label_len as u64, out);
            out.extend_from_slice(&NAME_FIELD);
            if name_len > 0 {
                out.push(KEY_2_LEN);
                varint(name_len as u64, out);
                out.extend_from_slice(measurement);
                if !measurement.is_empty() {
                    out.push(b'_');
                }
                out.extend_from_slice(field);
            }
            out.extend_from_slice(&self.after);
            out.push(KEY_2_LEN);
            varint(sample_len as u64, out);
            if value != 0.0 {
                out.push(KEY_1_DOUBLE);
                out.extend_from_slice(&value.to_le_bytes());
            }
            out.extend_from_slice(stamp);
        }
        any
    }
}

/// The encoded length of a string field of `len` bytes (proto3 leaves out empty
/// strings).
fn string_field_len(len: usize) -> usize {
    if len == 0 {
        0
    } else {
        1 + encoded_len_varint(len as u64) + len
    }
}

/// The encoded length of a `Label` message's contents.
fn label_len(name: &[u8], value: &[u8]) -> usize {
    string_field_len(name.len()) + string_field_len(value.len())
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

    fn sink() -> RemoteWrite {
        RemoteWrite::new(&RemoteWriteConfig {
            net: crate::sink::tests_support::net("prw", "http://127.0.0.1:1/api/v1/write"),
            request: RequestOptions::default(),
        })
        .expect("sink")
    }

    /// The record body of `points`, as stored (a snappy block).
    fn stored(points: &[Point]) -> (Vec<u8>, u32, Skipped) {
        let batch = PointBatch::borrowing(points);
        let refs: Vec<_> = batch.iter().collect();
        let mut body = Vec::new();
        let mut skipped = Skipped::default();
        let n = sink().encode(Category::Metric, &refs, &mut body, &mut skipped);
        (body, n, skipped)
    }

    /// The record body of `points`, uncompressed.
    fn encode(points: &[Point]) -> (Vec<u8>, u32, Skipped) {
        let (body, n, skipped) = stored(points);
        let plain = snappy_block::decompress_body(&body).expect("a snappy block");
        (plain.into_owned(), n, skipped)
    }

    fn record_of(points: &[Point]) -> Record {
        let (body, n, _) = stored(points);
        Record {
            category: Category::Metric,
            points: n,
            enqueued_ms: 1,
            body,
        }
    }

    /// What the backend reads of a request: snappy decompressed, then decoded.
    fn received(request: &Request) -> WriteRequest {
        let wire = sink().wire(&request.body).expect("wire");
        let plain = snap::raw::Decoder::new()
            .decompress_vec(&wire)
            .expect("a snappy block");
        WriteRequest::decode(plain.as_slice()).expect("a WriteRequest")
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

        /// Points split into records (each compressed when buffered) arrive as one
        /// request: the merged `WriteRequest` of them all, in order.
        #[test]
        fn records_spliced_into_a_request_are_the_merged_write_request(
            points in prop::collection::vec(any_point(), 1..12),
            cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..4),
        ) {
            let mut at: Vec<usize> = cuts.iter().map(|c| c.index(points.len() + 1)).collect();
            at.extend([0, points.len()]);
            at.sort_unstable();
            let records: Vec<Record> = at
                .windows(2)
                .filter(|w| w[0] < w[1])
                .map(|w| record_of(&points[w[0]..w[1]]))
                .filter(|r| r.points > 0)
                .collect();
            let requests = sink().requests(&records);
            let expected = WriteRequest {
                timeseries: points.iter().flat_map(expected).collect(),
            };
            if expected.timeseries.is_empty() {
                prop_assert!(requests.is_empty());
            } else {
                prop_assert_eq!(requests.len(), 1);
                prop_assert_eq!(received(&requests[0]), expected.clone());
                let total: u64 = records.iter().map(|r| u64::from(r.points)).sum();
                prop_assert_eq!(requests[0].points, total);
                let dead = BodyFormat::plain_body(sink().body_format().code(), &requests[0].body)
                    .expect("decompresses");
                prop_assert_eq!(dead.into_owned(), expected.encode_to_vec());
            }
        }
    }

    fn numbered_point(i: i64) -> Point {
        Point {
            category: Category::Metric,
            measurement: "m".into(),
            tags: [("host".to_string(), "h1".to_string())]
                .into_iter()
                .collect(),
            fields: [("v".to_string(), FieldValue::Int(i))]
                .into_iter()
                .collect(),
            time_ns: 1_700_000_000_000_000_000 + i * 1_000_000,
        }
    }

    #[test]
    fn a_request_stays_under_the_uncompressed_limit_however_well_records_compress() {
        // Records of about 3.5 MiB uncompressed each, a small part of that compressed.
        let points: Vec<Point> = (0..30_000)
            .map(|i| {
                let mut point = numbered_point(i);
                point.tags.insert("note".into(), "x".repeat(300));
                point
            })
            .collect();
        let records: Vec<Record> = points.chunks(10_000).map(record_of).collect();
        let plain = |r: &Record| Block::parse(&r.body).expect("block").plain_len;
        assert!(records
            .iter()
            .all(|r| plain(r) > (MAX_REQUEST_BYTES / 3) as u64
                && plain(r) < (MAX_REQUEST_BYTES / 2) as u64
                && r.body.len() < MAX_REQUEST_BYTES / 8));
        let requests = sink().requests(&records);
        assert_eq!(
            requests.iter().map(|r| r.points).collect::<Vec<_>>(),
            [20_000, 10_000]
        );
        let mut values = Vec::new();
        for request in &requests {
            let plain = snappy_block::decompress(&request.body).expect("block");
            assert!(plain.len() <= MAX_REQUEST_BYTES);
            for series in received(request).timeseries {
                values.push(series.samples[0].value as i64);
            }
        }
        assert_eq!(values, (0..30_000).collect::<Vec<_>>());
    }

    #[test]
    fn a_stored_record_is_a_fraction_of_its_uncompressed_size() {
        let points: Vec<Point> = (0..1000).map(numbered_point).collect();
        let (stored, n, _) = stored(&points);
        let (plain, _, _) = encode(&points);
        assert_eq!(n, 1000);
        assert!(
            stored.len() * 3 < plain.len(),
            "{} of {} bytes",
            stored.len(),
            plain.len()
        );
    }
}
