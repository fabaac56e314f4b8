//! Property tests of the decoders that read hostile input: line protocol, JSON write
//! bodies and worker frames. They never panic, never take a point and then lose it
//! (every point of a body comes out accepted or rejected), agree with each other on
//! the same points, and the line-protocol parser agrees with the `influxdb-line-protocol`
//! crate on input both dialects define alike.

use std::collections::BTreeMap;

use proptest::prelude::*;
use pythond::ingest::{precheck_write_body, WriteBody, WriteLimits};
use pythond::point::{
    decode_json_point, for_each_json_point, from_json, line_protocol_lines, parse_line_protocol,
    Accepted, Category, DecodeContext, FieldRef, FieldValue, LineDecoder, Point, PointBatch,
    Precision, Rejection,
};
use pythond::worker::protocol::WorkerFrame;

/// Rum points have no category-specific rules (no dropped string fields, no
/// disabled keys, no default fields), so a decoded point is exactly what was written.
fn ctx(extra: &BTreeMap<String, String>) -> DecodeContext<'_> {
    DecodeContext {
        category: Category::from_name("rum").expect("rum"),
        precision: Some(Precision::Nanoseconds),
        now_ns: 1_700_000_000_000_000_000,
        extra_tags: extra,
    }
}

/// A field value both dialects spell alike.
#[derive(Clone, Debug)]
enum Value {
    Int(i64),
    Float(f64),
    Bool(bool),
    Str(String),
}

/// A point both dialects spell alike: plain names, escapes only where both define them.
#[derive(Clone, Debug)]
struct Generated {
    measurement: String,
    tags: BTreeMap<String, String>,
    fields: BTreeMap<String, Value>,
    time: Option<i64>,
}

fn value() -> impl Strategy<Value = Value> {
    prop_oneof![
        any::<i64>().prop_map(Value::Int),
        (-1.0e9f64..1.0e9).prop_map(Value::Float),
        any::<bool>().prop_map(Value::Bool),
        "[a-zA-Z0-9 ,=\"\\\\]{0,12}".prop_map(Value::Str),
    ]
}

fn generated() -> impl Strategy<Value = Generated> {
    (
        "[a-z][a-z0-9_]{0,6}( [a-z]{1,3})?",
        prop::collection::btree_map("t[a-z]{1,4}", "[a-zA-Z0-9]{1,4}([ ,=][a-z]{1,3})?", 0..4),
        prop::collection::btree_map("f[a-z]{1,4}", value(), 1..4),
        prop::option::of(1i64..4_000_000_000_000_000_000),
    )
        .prop_map(|(measurement, tags, fields, time)| Generated {
            measurement,
            tags,
            fields,
            time,
        })
}

fn escape(text: &str, special: &[char]) -> String {
    let mut out = String::new();
    for c in text.chars() {
        if special.contains(&c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

impl Generated {
    fn line_protocol(&self) -> String {
        let mut line = escape(&self.measurement, &[',', ' ']);
        for (k, v) in &self.tags {
            line.push_str(&format!(",{k}={}", escape(v, &[',', '=', ' '])));
        }
        let fields: Vec<String> = self
            .fields
            .iter()
            .map(|(k, v)| match v {
                Value::Int(n) => format!("{k}={n}i"),
                Value::Float(x) => format!("{k}={x:?}"),
                Value::Bool(b) => format!("{k}={b}"),
                Value::Str(s) => format!("{k}=\"{}\"", escape(s, &['"', '\\'])),
            })
            .collect();
        line.push(' ');
        line.push_str(&fields.join(","));
        if let Some(time) = self.time {
            line.push_str(&format!(" {time}"));
        }
        line
    }

    fn json(&self) -> serde_json::Value {
        let fields: serde_json::Map<String, serde_json::Value> = self
            .fields
            .iter()
            .map(|(k, v)| {
                let v = match v {
                    Value::Int(n) => serde_json::json!(n),
                    Value::Float(x) => serde_json::json!(x),
                    Value::Bool(b) => serde_json::json!(b),
                    Value::Str(s) => serde_json::json!(s),
                };
                (k.clone(), v)
            })
            .collect();
        serde_json::json!({
            "measurement": self.measurement,
            "tags": self.tags,
            "fields": fields,
            "time": self.time,
        })
    }

    fn expected(&self) -> Point {
        Point {
            category: Category::from_name("rum").expect("rum"),
            measurement: self.measurement.clone(),
            tags: self.tags.clone(),
            fields: self
                .fields
                .iter()
                .map(|(k, v)| {
                    let v = match v {
                        Value::Int(n) => FieldValue::Int(*n),
                        Value::Float(x) => FieldValue::Float(*x),
                        Value::Bool(b) => FieldValue::Bool(*b),
                        Value::Str(s) => FieldValue::Str(s.clone()),
                    };
                    (k.clone(), v)
                })
                .collect(),
            time_ns: self.time.unwrap_or(1_700_000_000_000_000_000),
        }
    }
}

/// A line-protocol body's points as the `influxdb-line-protocol` crate reads them.
fn influx_points(body: &str) -> Vec<Point> {
    influxdb_line_protocol::parse_lines(body)
        .map(|line| {
            let line =
                line.unwrap_or_else(|e| panic!("the reference parser refused {body:?}: {e}"));
            Point {
                category: Category::from_name("rum").expect("rum"),
                measurement: line.series.measurement.to_string(),
                tags: line
                    .series
                    .tag_set
                    .iter()
                    .flatten()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
                fields: line
                    .field_set
                    .iter()
                    .map(|(k, v)| {
                        let v = match v {
                            influxdb_line_protocol::FieldValue::I64(n) => FieldValue::Int(*n),
                            influxdb_line_protocol::FieldValue::U64(n) => {
                                FieldValue::Int(i64::try_from(*n).expect("small"))
                            }
                            influxdb_line_protocol::FieldValue::F64(x) => FieldValue::Float(*x),
                            influxdb_line_protocol::FieldValue::Boolean(b) => FieldValue::Bool(*b),
                            influxdb_line_protocol::FieldValue::String(s) => {
                                FieldValue::Str(s.to_string())
                            }
                        };
                        (k.to_string(), v)
                    })
                    .collect(),
                time_ns: line.timestamp.unwrap_or(1_700_000_000_000_000_000),
            }
        })
        .collect()
}

fn accepted(
    results: Vec<(
        usize,
        Result<pythond::point::Accepted, pythond::point::Rejection>,
    )>,
) -> Vec<Point> {
    results
        .into_iter()
        .map(|(line, r)| {
            r.unwrap_or_else(|e| panic!("line {line} rejected: {e}"))
                .point
        })
        .collect()
}

/// Every point of a JSON body, decoded as the write API does.
fn json_points(body: &[u8], ctx: &DecodeContext<'_>) -> Option<Vec<Result<Point, String>>> {
    let mut out = Vec::new();
    for_each_json_point(body, |raw| {
        out.push(
            decode_json_point(raw)
                .and_then(|v| from_json(&v, ctx))
                .map(|a| a.point)
                .map_err(|e| e.to_string()),
        )
    })
    .ok()?;
    Some(out)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn line_protocol_agrees_with_the_reference_parser(points in prop::collection::vec(generated(), 1..5)) {
        let body: String = points.iter().map(|p| p.line_protocol() + "\n").collect();
        let extra = BTreeMap::new();
        let ours = accepted(parse_line_protocol(&body, &ctx(&extra)));
        let expected: Vec<Point> = points.iter().map(Generated::expected).collect();
        prop_assert_eq!(&ours, &expected, "body: {:?}", body);
        prop_assert_eq!(influx_points(&body), expected, "body: {:?}", body);
    }

    #[test]
    fn json_and_line_protocol_decode_the_same_points_alike(points in prop::collection::vec(generated(), 1..5)) {
        let extra = BTreeMap::new();
        let lp: String = points.iter().map(|p| p.line_protocol() + "\n").collect();
        let from_lp = accepted(parse_line_protocol(&lp, &ctx(&extra)));
        let json = serde_json::Value::Array(points.iter().map(Generated::json).collect()).to_string();
        let from_json: Vec<Point> = json_points(json.as_bytes(), &ctx(&extra))
            .expect("valid JSON")
            .into_iter()
            .map(|r| r.expect("accepted"))
            .collect();
        prop_assert_eq!(from_lp, from_json);
    }

    #[test]
    fn line_protocol_never_panics_and_answers_for_every_line(body in "(\\PC|[\n\r\t\"\\\\ ,=#])*") {
        let extra = BTreeMap::new();
        let results = parse_line_protocol(&body, &ctx(&extra));
        // One result, accepted or rejected, for every logical line that holds a point.
        prop_assert_eq!(results.len(), line_protocol_lines(&body).count());
        for (line, result) in &results {
            prop_assert!(*line >= 1);
            if let Ok(accepted) = result {
                prop_assert!(!accepted.point.measurement.is_empty());
                prop_assert!(!accepted.point.fields.is_empty());
            }
        }
    }

    #[test]
    fn a_json_body_the_check_lets_through_is_decoded_to_its_end(body in json_body()) {
        let extra = BTreeMap::new();
        let abandoned = std::sync::atomic::AtomicBool::new(false);
        let limits = WriteLimits {
            deadline: std::time::Instant::now() + std::time::Duration::from_secs(3600),
            abandoned: &abandoned,
        };
        let checked = precheck_write_body(&WriteBody::Json(body.as_bytes()), usize::MAX, &limits);
        let decoded = json_points(body.as_bytes(), &ctx(&extra));
        // The check and the decoding pass agree on whether the body is readable...
        prop_assert_eq!(checked.is_ok(), decoded.is_some(), "body: {}", body);
        // ...and every element of a readable array comes out, accepted or rejected.
        if let (Some(decoded), Ok(serde_json::Value::Array(items))) =
            (decoded, serde_json::from_str::<serde_json::Value>(&body))
        {
            prop_assert_eq!(decoded.len(), items.len());
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic_the_json_walk_or_the_frame_decoder(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        let extra = BTreeMap::new();
        let _ = json_points(&bytes, &ctx(&extra));
        let _ = WorkerFrame::parse(&bytes);
        let mut framed = br#"{"t":"report","#.to_vec();
        framed.extend_from_slice(&bytes);
        let _ = WorkerFrame::parse(&framed);
    }

    #[test]
    fn worker_frames_decode_alike_on_the_fast_and_the_general_path(frame in worker_frame()) {
        let fast = WorkerFrame::parse(frame.as_bytes());
        let general: serde_json::Result<WorkerFrame> = serde_json::from_str(&frame);
        prop_assert_eq!(
            fast.as_ref().map(|f| format!("{f:?}")).map_err(|_| ()),
            general.as_ref().map(|f| format!("{f:?}")).map_err(|_| ()),
            "frame: {}", frame
        );
    }
}

/// A line's number and what became of its point.
type LineOutcome = (usize, Result<Accepted, Rejection>);

/// What the HTTP write API's decoder makes of `body`: per line, the accepted point
/// (read back from the batch) with its fixes, or the rejection; and whether each
/// accepted point kept every tag and field string borrowed from the body.
fn batch_decoded(body: &str, ctx: &DecodeContext<'_>) -> (Vec<LineOutcome>, Vec<bool>) {
    let mut decoder = LineDecoder::new(ctx);
    let mut batch = PointBatch::new();
    let mut outcomes = Vec::new();
    for (line_no, line) in line_protocol_lines(body) {
        outcomes.push((line_no, decoder.decode(line, line_no, &mut batch)));
    }
    let borrowed: Vec<bool> = batch
        .iter()
        .map(|p| {
            p.tags.iter().all(|(k, v)| {
                matches!(k, std::borrow::Cow::Borrowed(_))
                    && matches!(v, std::borrow::Cow::Borrowed(_))
            }) && p.fields.iter().all(|(k, v)| {
                matches!(k, std::borrow::Cow::Borrowed(_))
                    && !matches!(v, FieldRef::Str(std::borrow::Cow::Owned(_)))
            })
        })
        .collect();
    let mut points = batch.to_points().into_iter();
    let results = outcomes
        .into_iter()
        .map(|(line_no, outcome)| {
            let result = outcome.map(|fixes| Accepted {
                point: points.next().expect("a point for every accepted line"),
                fixes,
            });
            (line_no, result)
        })
        .collect();
    assert!(points.next().is_none(), "a point in the batch for no line");
    (results, borrowed)
}

/// Lines made of the pieces the rules care about: reserved and dotted keys, trailing
/// backslashes, empty tag values, repeated keys, tag/field clashes, strings in metrics,
/// `status`/`name`/keyevent keys, big unsigned ints, odd timestamps, escapes.
fn rule_line() -> impl Strategy<Value = String> {
    let key = prop_oneof![
        "[a-c]{1,2}",
        Just("status".to_string()),
        Just("name".to_string()),
        Just("source".to_string()),
        Just("class".to_string()),
        Just("date".to_string()),
        Just("host".to_string()),
        Just("a.b".to_string()),
        Just("k\\\\".to_string()),
        Just("sp\\ ace".to_string()),
        Just("df_status".to_string()),
        Just("df_event_id".to_string()),
        Just("df_title".to_string()),
        Just("df_source".to_string()),
        Just("__name__".to_string()),
    ];
    let tag_value = prop_oneof![
        "[a-c]{0,2}",
        Just("ok".to_string()),
        Just("x.y".to_string()),
        Just("v\\\\".to_string()),
        Just("c\\,d".to_string()),
    ];
    let field_value = prop_oneof![
        Just("1i".to_string()),
        Just("-7i".to_string()),
        Just("2.5".to_string()),
        Just("3u".to_string()),
        Just("18446744073709551615u".to_string()),
        Just("t".to_string()),
        Just("\"s\"".to_string()),
        Just("\"ok\"".to_string()),
        Just("\"info\"".to_string()),
        Just("\"a\\\"b\"".to_string()),
        Just("\"multi\nline\"".to_string()),
        Just("\"\"".to_string()),
        Just("nan".to_string()),
        Just("zz".to_string()),
    ];
    let measurement = prop_oneof![
        "[a-c]{1,3}",
        Just("m\\ x".to_string()),
        Just("m.x".to_string()),
    ];
    let time = prop_oneof![
        Just(String::new()),
        Just(" 0".to_string()),
        Just(" -5".to_string()),
        Just(" 1700000000000000000".to_string()),
        Just(" 99999999999999999".to_string()),
    ];
    (
        measurement,
        prop::collection::vec((key.clone(), tag_value), 0..4),
        prop::collection::vec((key, field_value), 1..4),
        time,
    )
        .prop_map(|(measurement, tags, fields, time)| {
            let mut line = measurement;
            for (k, v) in tags {
                line.push_str(&format!(",{k}={v}"));
            }
            let fields: Vec<String> = fields.iter().map(|(k, v)| format!("{k}={v}")).collect();
            line.push(' ');
            line.push_str(&fields.join(","));
            line.push_str(&time);
            line
        })
}

fn any_category() -> impl Strategy<Value = Category> {
    prop::sample::select(Category::ALL.to_vec())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// The write API's borrowing decoder accepts, fixes and rejects exactly as the
    /// `Point` decoder does, line for line, whatever the category, precision and
    /// extra tags; and a point that needed no fix keeps its strings in the body
    /// unless the line escaped something.
    #[test]
    fn the_batch_decoder_decodes_as_the_point_decoder_does(
        lines in prop::collection::vec(rule_line(), 1..6),
        category in any_category(),
        precision in prop::option::of(prop::sample::select(vec![Precision::Nanoseconds, Precision::Seconds])),
        extra in prop::collection::btree_map(
            prop_oneof![Just("host".to_string()), Just("a".to_string()), Just("g.k".to_string()), Just("status".to_string())],
            prop_oneof![Just("h".to_string()), Just(String::new()), Just("v.w".to_string())],
            0..3,
        ),
    ) {
        let body = lines.join("\n");
        let ctx = DecodeContext {
            category,
            precision,
            now_ns: 1_700_000_000_000_000_000,
            extra_tags: &extra,
        };
        let (ours, borrowed) = batch_decoded(&body, &ctx);
        let reference = parse_line_protocol(&body, &ctx);
        prop_assert_eq!(&ours, &reference, "body: {:?}", body);
        let clean: Vec<bool> = reference
            .iter()
            .zip(&lines)
            .filter_map(|((_, r), line)| r.as_ref().ok().map(|a| {
                a.fixes.is_empty() && category != Category::Keyevent && !line.contains('\\')
            }))
            .collect();
        for (kept, clean) in borrowed.iter().zip(&clean) {
            prop_assert!(!clean || *kept, "a clean point was copied; body: {:?}", body);
        }
    }

    /// On arbitrary text too, the two decoders agree.
    #[test]
    fn the_batch_decoder_agrees_on_arbitrary_text(body in "(\\PC|[\n\r\t\"\\\\ ,=#.])*", category in any_category()) {
        let extra: BTreeMap<String, String> = [("host".to_string(), "h".to_string())].into_iter().collect();
        let ctx = DecodeContext { category, ..ctx(&extra) };
        prop_assert_eq!(batch_decoded(&body, &ctx).0, parse_line_protocol(&body, &ctx));
    }
}

/// JSON texts, mostly arrays of point-like objects, with hostile pieces mixed in:
/// lone surrogates, deep nesting, huge numbers, truncation.
fn json_body() -> impl Strategy<Value = String> {
    let leaf = prop_oneof![
        Just("null".to_string()),
        any::<i64>().prop_map(|n| n.to_string()),
        (-1.0e300f64..1.0e300).prop_map(|x| format!("{x:e}")),
        Just("9".repeat(400)),
        Just(r#""\ud800""#.to_string()),
        Just(r#""\udc00\ud800""#.to_string()),
        "[a-z]{0,5}".prop_map(|s| format!("{s:?}")),
        (1usize..300).prop_map(|depth| format!("{}0{}", "[".repeat(depth), "]".repeat(depth))),
    ];
    let point = (
        "[a-z]{1,5}",
        prop::collection::vec(("[a-z]{1,3}", leaf.clone()), 0..3),
    )
        .prop_map(|(m, fields)| {
            let fields: Vec<String> = fields.iter().map(|(k, v)| format!("{k:?}: {v}")).collect();
            format!(
                r#"{{"measurement": {m:?}, "fields": {{{}}}}}"#,
                fields.join(", ")
            )
        });
    let element = prop_oneof![4 => point, 1 => leaf];
    (
        prop::collection::vec(element, 0..5),
        any::<bool>(),
        0usize..8,
    )
        .prop_map(|(elements, truncate, cut)| {
            let body = format!("[{}]", elements.join(", "));
            if truncate {
                body[..body.len().saturating_sub(cut)].to_string()
            } else {
                body
            }
        })
}

/// Frames the worker writes (`"t"` first), with arbitrary values in their fields.
fn worker_frame() -> impl Strategy<Value = String> {
    let scalar = prop_oneof![
        Just("null".to_string()),
        any::<i64>().prop_map(|n| n.to_string()),
        any::<bool>().prop_map(|b| b.to_string()),
        "[a-zA-Z ]{0,6}".prop_map(|s| format!("{s:?}")),
    ];
    let report = (
        scalar.clone(),
        prop::collection::vec(("[MLOER]{1,2}", scalar.clone()), 0..3),
    )
        .prop_map(|(plugin, data)| {
            let data: Vec<String> = data
                .iter()
                .map(|(k, v)| format!(r#"{k:?}: [{{"measurement": "m", "fields": {{"v": {v}}}}}]"#))
                .collect();
            format!(
                r#"{{"t":"report","plugin":{plugin},"data":{{{}}}}}"#,
                data.join(",")
            )
        });
    let done = (scalar.clone(), scalar.clone(), scalar.clone()).prop_map(|(plugin, run, ok)| {
        format!(r#"{{"t":"done","plugin":{plugin},"run":{run},"ok":{ok}}}"#)
    });
    let log = (scalar.clone(), scalar).prop_map(|(level, message)| {
        format!(r#"{{"t":"log","level":{level},"message":{message}}}"#)
    });
    prop_oneof![report, done, log]
}
