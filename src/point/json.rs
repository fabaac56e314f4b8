//! Points as JSON: decoding what DataKit's shim (and our worker) sends, and writing the
//! NDJSON shape of `pythond check --format json` and the `file` sink.
//!
//! Input: `{"measurement": str, "tags": {str: str}|null, "fields": {str: scalar},
//! "time": int|float|null}` — other keys are ignored, as DataKit's Go struct ignores
//! them. The decoder only rejects what has no sensible reading (wrong JSON types) and
//! leaves every repairable problem to `rules.rs`, so JSON and line protocol get
//! exactly the same treatment.

use std::collections::BTreeMap;
use std::fmt::Display;
use std::io::Write as _;

use serde_json::{Map, Value};

use super::outcome::{FixReason, RejectReason};
use super::precision::{float_time_to_ns, int_time_to_ns, TimeError};
use super::rules::{self, preview, Preview};
use super::{Accepted, DecodeContext, FieldValue, Fix, Point, Rejection};

/// Decodes and validates one JSON point. See POINTS.md for every rule.
pub fn from_json(value: &Value, ctx: &DecodeContext<'_>) -> Result<Accepted, Rejection> {
    let Some(obj) = value.as_object() else {
        return Err(Rejection::new(
            RejectReason::NotAnObject,
            format!("point is {}, not a JSON object", json_type(value)),
        ));
    };
    let measurement = match obj.get("measurement") {
        None | Some(Value::Null) => {
            return Err(Rejection::new(
                RejectReason::MissingMeasurement,
                "point without a measurement: \"measurement\" is missing",
            ))
        }
        Some(Value::String(m)) => m.clone(),
        Some(other) => {
            return Err(Rejection::new(
                RejectReason::InvalidMeasurement,
                format!(
                    "point's \"measurement\" is {}, not a string",
                    json_type(other)
                ),
            ))
        }
    };
    let who = Preview(&measurement);
    let mut fixes = Vec::new();
    let tags = decode_tags(obj.get("tags"), who, &mut fixes)?;
    let fields = decode_fields(obj.get("fields"), who, &mut fixes)?;
    let time_ns = decode_time(obj.get("time"), ctx, who)?;
    let point = Point {
        category: ctx.category,
        measurement,
        tags,
        fields,
        time_ns,
    };
    let point = rules::apply(point, ctx, &mut fixes)?;
    Ok(Accepted { point, fixes })
}

/// "a string", "an array", ... for messages.
fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// `tags` absent or null means no tags (the shim sends `{}` or `null` for "none").
fn object_or_empty<'v>(
    v: Option<&'v Value>,
    what: &str,
    reason: RejectReason,
    who: Preview<'_>,
) -> Result<Option<&'v Map<String, Value>>, Rejection> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Object(map)) => Ok(Some(map)),
        Some(other) => Err(Rejection::new(
            reason,
            format!(
                "point {who}: \"{what}\" is {}, not an object",
                json_type(other)
            ),
        )),
    }
}

fn decode_tags(
    v: Option<&Value>,
    who: Preview<'_>,
    fixes: &mut Vec<Fix>,
) -> Result<BTreeMap<String, String>, Rejection> {
    let mut tags = BTreeMap::new();
    let Some(map) = object_or_empty(v, "tags", RejectReason::InvalidTags, who)? else {
        return Ok(tags);
    };
    for (key, value) in map {
        match value {
            Value::String(s) => {
                tags.insert(key.clone(), s.clone());
            }
            // `tags={"zone": os.getenv("ZONE")}` is a common way to say "no value".
            Value::Null => fixes.push(Fix::new(
                FixReason::NullValue,
                format!("tag {} dropped: its value is null", preview(key)),
            )),
            other => {
                return Err(Rejection::new(
                    RejectReason::InvalidTagValue,
                    format!(
                        "point {who}: tag {} is {}; tag values must be strings",
                        preview(key),
                        json_type(other)
                    ),
                ))
            }
        }
    }
    Ok(tags)
}

fn decode_fields(
    v: Option<&Value>,
    who: Preview<'_>,
    fixes: &mut Vec<Fix>,
) -> Result<BTreeMap<String, FieldValue>, Rejection> {
    let mut fields = BTreeMap::new();
    // No `fields` at all is left to the rules, which reject it as `no_fields`.
    let Some(map) = object_or_empty(v, "fields", RejectReason::InvalidFields, who)? else {
        return Ok(fields);
    };
    for (key, value) in map {
        let decoded = match value {
            Value::Bool(b) => FieldValue::Bool(*b),
            Value::String(s) => FieldValue::Str(s.clone()),
            Value::Number(n) => {
                if let Some(i) = n.as_i64() {
                    FieldValue::Int(i)
                } else if let Some(u) = n.as_u64() {
                    // Beyond i64: no backend we write to has u64 everywhere, and
                    // dropping a counter is worse than losing its last digits.
                    fixes.push(Fix::new(
                        FixReason::IntToFloat,
                        format!(
                            "field {}: integer {u} exceeds i64, stored as a float",
                            preview(key)
                        ),
                    ));
                    FieldValue::Float(u as f64)
                } else {
                    match n.as_f64() {
                        Some(f) if f.is_finite() => FieldValue::Float(f),
                        _ => return Err(invalid_field(who, key, "not a finite number")),
                    }
                }
            }
            // DataKit keeps nil fields but never writes them out; we drop them openly.
            Value::Null => {
                fixes.push(Fix::new(
                    FixReason::NullValue,
                    format!("field {} dropped: its value is null", preview(key)),
                ));
                continue;
            }
            Value::Array(_) => return Err(invalid_field(who, key, "an array")),
            Value::Object(_) => return Err(invalid_field(who, key, "an object")),
        };
        fields.insert(key.clone(), decoded);
    }
    Ok(fields)
}

fn invalid_field(who: Preview<'_>, key: &str, what: &str) -> Rejection {
    Rejection::new(
        RejectReason::InvalidFieldValue,
        format!(
            "point {who}: field {} is {what}; fields must be integers, floats, booleans or strings",
            preview(key)
        ),
    )
}

fn decode_time(
    v: Option<&Value>,
    ctx: &DecodeContext<'_>,
    who: Preview<'_>,
) -> Result<i64, Rejection> {
    let n = match v {
        None | Some(Value::Null) => return Ok(ctx.now_ns),
        Some(Value::Number(n)) => n,
        Some(other) => {
            return Err(Rejection::new(
                RejectReason::InvalidTime,
                format!(
                    "point {who}: \"time\" is {}, not a number",
                    json_type(other)
                ),
            ))
        }
    };
    let result = if let Some(i) = n.as_i64() {
        int_time_to_ns(i, ctx.precision, ctx.now_ns)
    } else if n.as_u64().is_some() {
        Err(TimeError::Overflow)
    } else {
        let f = n.as_f64().unwrap_or(f64::NAN);
        float_time_to_ns(f, ctx.precision, ctx.now_ns)
    };
    result.map_err(|e| {
        Rejection::new(
            RejectReason::InvalidTime,
            format!("point {who}: time {n} {e}"),
        )
    })
}

impl Point {
    /// Appends `{"category":..,"measurement":..,"tags":{..},"fields":{..},"time":<ns>}`
    /// and `'\n'`. Ints are JSON integers, floats always carry a `.` or an exponent
    /// (`3.0`, `1e21`) so they read back as floats.
    pub fn write_json(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(b"{\"category\":\"");
        out.extend_from_slice(self.category.name().as_bytes());
        out.extend_from_slice(b"\",\"measurement\":");
        write_json_str(out, &self.measurement);
        out.extend_from_slice(b",\"tags\":{");
        for (i, (key, value)) in self.tags.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            write_json_str(out, key);
            out.push(b':');
            write_json_str(out, value);
        }
        out.extend_from_slice(b"},\"fields\":{");
        for (i, (key, value)) in self.fields.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            write_json_str(out, key);
            out.push(b':');
            match value {
                FieldValue::Int(v) => push_display(out, v),
                // Debug, unlike Display, keeps the ".0" and uses exponents for
                // huge/tiny values: both are valid JSON numbers.
                FieldValue::Float(v) if v.is_finite() => push_display(out, format_args!("{v:?}")),
                // Cannot come out of the rules; JSON has no NaN, so say "no value".
                FieldValue::Float(_) => out.extend_from_slice(b"null"),
                FieldValue::Bool(true) => out.extend_from_slice(b"true"),
                FieldValue::Bool(false) => out.extend_from_slice(b"false"),
                FieldValue::Str(s) => write_json_str(out, s),
            }
        }
        out.extend_from_slice(b"},\"time\":");
        push_display(out, self.time_ns);
        out.extend_from_slice(b"}\n");
    }
}

fn push_display(out: &mut Vec<u8>, v: impl Display) {
    // Writing to a Vec<u8> cannot fail.
    let _ = write!(out, "{v}");
}

/// Writes `s` as a JSON string. Copies runs of plain bytes in one go; only `"`, `\`
/// and control characters are escaped (UTF-8 passes through, as JSON allows).
fn write_json_str(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let escape: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0x00..=0x1f => b"",
            _ => continue,
        };
        out.extend_from_slice(&bytes[start..i]);
        if escape.is_empty() {
            push_display(out, format_args!("\\u{:04x}", b));
        } else {
            out.extend_from_slice(escape);
        }
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::point::{Category, Precision};
    use serde_json::json;

    const NOW: i64 = 1_700_000_000_000_000_000;

    fn ctx_with<'a>(
        category: Category,
        precision: Option<Precision>,
        extra: &'a BTreeMap<String, String>,
    ) -> DecodeContext<'a> {
        DecodeContext {
            category,
            precision,
            now_ns: NOW,
            extra_tags: extra,
        }
    }

    fn decode(category: Category, v: Value) -> Result<Accepted, Rejection> {
        let extra = BTreeMap::new();
        from_json(&v, &ctx_with(category, None, &extra))
    }

    fn decode_prec(p: Option<Precision>, v: Value) -> Result<Accepted, Rejection> {
        let extra = BTreeMap::new();
        from_json(&v, &ctx_with(Category::Metric, p, &extra))
    }

    fn reasons(a: &Accepted) -> Vec<FixReason> {
        a.fixes.iter().map(|f| f.reason).collect()
    }

    fn to_json(p: &Point) -> String {
        let mut out = Vec::new();
        p.write_json(&mut out);
        String::from_utf8(out).expect("utf8")
    }

    #[test]
    fn demo_payload_from_datakit_docs() {
        // The example in DataKit's pythond documentation.
        let a = decode(
            Category::Metric,
            json!({"measurement": "abc", "tags": {"t1": "b", "t2": "d"},
                   "fields": {"f1": 123, "f2": 3.4, "f3": "strval"}}),
        )
        .unwrap();
        assert_eq!(a.point.measurement, "abc");
        assert_eq!(a.point.tags.len(), 2);
        assert_eq!(a.point.fields["f1"], FieldValue::Int(123));
        assert_eq!(a.point.fields["f2"], FieldValue::Float(3.4));
        assert!(!a.point.fields.contains_key("f3"), "metric drops strings");
        assert_eq!(reasons(&a), [FixReason::MetricStringField]);
        assert_eq!(a.point.time_ns, NOW);
        assert_eq!(a.point.category, Category::Metric);
    }

    #[test]
    fn feed_metric_shape() {
        // feed_metric(input, measurement, tags, fields, time, **kw): kwargs join fields.
        let a = decode(
            Category::Metric,
            json!({"measurement": "cpu", "tags": {"host": "a"},
                   "fields": {"usage": 1.5, "cores": 8, "ok": true, "extra_kw": 2},
                   "time": 1_700_000_000}),
        )
        .unwrap();
        assert_eq!(a.point.fields.len(), 4);
        assert_eq!(a.point.fields["ok"], FieldValue::Bool(true));
        assert_eq!(a.point.time_ns, 1_700_000_000_000_000_000);
        assert!(a.fixes.is_empty());
    }

    #[test]
    fn feed_logging_shape() {
        // feed_logging(input, source, tags, message, time): measurement = source.
        let a = decode(
            Category::Logging,
            json!({"measurement": "nginx", "tags": {"service": "web"},
                   "fields": {"message": "GET / 200\nsecond line"}, "time": null}),
        )
        .unwrap();
        assert_eq!(a.point.measurement, "nginx");
        assert_eq!(
            a.point.fields["message"],
            FieldValue::Str("GET / 200\nsecond line".into())
        );
        assert_eq!(a.point.fields["status"], FieldValue::Str("info".into()));
        assert_eq!(reasons(&a), [FixReason::DefaultStatus]);
    }

    #[test]
    fn feed_object_shape() {
        // feed_object(input, cls, name, tags, fields, time): measurement = cls, tag name.
        let a = decode(
            Category::Object,
            json!({"measurement": "host_obj", "tags": {"name": "web01", "region": "eu"},
                   "fields": {"cpu_cores": 4, "os": "linux"}}),
        )
        .unwrap();
        assert_eq!(a.point.tags["name"], "web01");
        assert_eq!(a.point.fields["os"], FieldValue::Str("linux".into()));
        assert!(a.fixes.is_empty());
        let a = decode(
            Category::CustomObject,
            json!({"measurement": "db", "tags": {}, "fields": {"size": 1}}),
        )
        .unwrap();
        assert_eq!(a.point.tags["name"], "default");
    }

    fn event_fields(source: &str) -> Value {
        json!({"df_date_range": 10, "df_source": source, "df_status": "info",
               "df_event_id": "event_id", "df_title": "title", "df_message": ""})
    }

    #[test]
    fn feed_user_monitor_system_event_shapes() {
        let mut user = event_fields("user");
        user["df_user_id"] = json!("u1");
        user["custom_key1"] = json!("custom_value1");
        let mut monitor = event_fields("monitor");
        monitor["df_dimension_tags"] = json!("{\"host\":\"web01\"}");
        let system = event_fields("system");
        for fields in [user, monitor, system] {
            let a = decode(
                Category::Keyevent,
                json!({"measurement": "measurement", "tags": {"tag1": "val1"}, "fields": fields}),
            )
            .unwrap();
            assert_eq!(a.point.measurement, "measurement");
            assert_eq!(a.point.fields["df_date_range"], FieldValue::Int(10));
            assert_eq!(a.point.fields["df_message"], FieldValue::Str(String::new()));
            assert!(a.fixes.is_empty(), "{:?}", a.fixes);
        }
    }

    #[test]
    fn keyevent_without_source_is_rejected() {
        let mut f = event_fields("user");
        f.as_object_mut().unwrap().remove("df_source");
        let err = decode(
            Category::Keyevent,
            json!({"measurement": "measurement", "fields": f}),
        )
        .unwrap_err();
        assert_eq!(err.reason, RejectReason::MissingEventKey);
        assert!(err.message.contains("df_source"));
    }

    #[test]
    fn not_an_object() {
        for v in [json!([1]), json!("x"), json!(null), json!(3)] {
            let err = decode(Category::Metric, v).unwrap_err();
            assert_eq!(err.reason, RejectReason::NotAnObject);
        }
    }

    #[test]
    fn measurement_must_be_a_non_empty_string() {
        let err = decode(Category::Metric, json!({"fields": {"v": 1}})).unwrap_err();
        assert_eq!(err.reason, RejectReason::MissingMeasurement);
        let err = decode(
            Category::Metric,
            json!({"measurement": null, "fields": {"v": 1}}),
        )
        .unwrap_err();
        assert_eq!(err.reason, RejectReason::MissingMeasurement);
        let err = decode(
            Category::Metric,
            json!({"measurement": "", "fields": {"v": 1}}),
        )
        .unwrap_err();
        assert_eq!(err.reason, RejectReason::MissingMeasurement);
        let err = decode(
            Category::Metric,
            json!({"measurement": 5, "fields": {"v": 1}}),
        )
        .unwrap_err();
        assert_eq!(err.reason, RejectReason::InvalidMeasurement);
        assert!(err.message.contains("a number"), "{}", err.message);
    }

    #[test]
    fn tags_may_be_absent_or_null_but_not_other_types() {
        for tags in [None, Some(json!(null)), Some(json!({}))] {
            let mut v = json!({"measurement": "m", "fields": {"v": 1}});
            if let Some(t) = tags {
                v["tags"] = t;
            }
            let a = decode(Category::Metric, v).unwrap();
            assert!(a.point.tags.is_empty());
        }
        let err = decode(
            Category::Metric,
            json!({"measurement": "m", "tags": ["a"], "fields": {"v": 1}}),
        )
        .unwrap_err();
        assert_eq!(err.reason, RejectReason::InvalidTags);
        assert!(err.message.contains("\"m\""));
    }

    #[test]
    fn non_string_tag_values_are_rejected_by_name() {
        for bad in [json!(1), json!(true), json!(1.5), json!([]), json!({})] {
            let err = decode(
                Category::Metric,
                json!({"measurement": "m", "tags": {"port": bad}, "fields": {"v": 1}}),
            )
            .unwrap_err();
            assert_eq!(err.reason, RejectReason::InvalidTagValue);
            assert!(err.message.contains("tag \"port\""), "{}", err.message);
        }
    }

    #[test]
    fn null_tags_and_fields_are_dropped_as_fixes() {
        let a = decode(
            Category::Metric,
            json!({"measurement": "m", "tags": {"zone": null, "a": "b"}, "fields": {"x": null, "v": 1}}),
        )
        .unwrap();
        assert_eq!(a.point.tags.len(), 1);
        assert_eq!(a.point.fields.len(), 1);
        assert_eq!(reasons(&a), [FixReason::NullValue, FixReason::NullValue]);
        assert!(a.fixes[0].message.contains("\"zone\""));
        assert!(a.fixes[1].message.contains("\"x\""));
    }

    #[test]
    fn only_null_fields_means_rejection() {
        let err = decode(
            Category::Metric,
            json!({"measurement": "m", "fields": {"x": null}}),
        )
        .unwrap_err();
        assert_eq!(err.reason, RejectReason::NoFields);
    }

    #[test]
    fn fields_must_be_an_object_of_scalars() {
        let err = decode(Category::Metric, json!({"measurement": "m", "fields": [1]})).unwrap_err();
        assert_eq!(err.reason, RejectReason::InvalidFields);
        let err = decode(Category::Metric, json!({"measurement": "m"})).unwrap_err();
        assert_eq!(err.reason, RejectReason::NoFields);
        let err = decode(
            Category::Metric,
            json!({"measurement": "m", "fields": null}),
        )
        .unwrap_err();
        assert_eq!(err.reason, RejectReason::NoFields);
        for (bad, what) in [(json!([1, 2]), "an array"), (json!({"a": 1}), "an object")] {
            let err = decode(
                Category::Logging,
                json!({"measurement": "m", "fields": {"ok": 1, "nested": bad}}),
            )
            .unwrap_err();
            assert_eq!(err.reason, RejectReason::InvalidFieldValue);
            assert!(err.message.contains("field \"nested\""), "{}", err.message);
            assert!(err.message.contains(what), "{}", err.message);
        }
    }

    #[test]
    fn integers_beyond_i64_become_floats() {
        let a = decode(
            Category::Metric,
            json!({"measurement": "m", "fields": {"big": u64::MAX, "max": i64::MAX, "min": i64::MIN}}),
        )
        .unwrap();
        assert_eq!(a.point.fields["big"], FieldValue::Float(u64::MAX as f64));
        assert_eq!(a.point.fields["max"], FieldValue::Int(i64::MAX));
        assert_eq!(a.point.fields["min"], FieldValue::Int(i64::MIN));
        assert_eq!(reasons(&a), [FixReason::IntToFloat]);
        assert!(a.fixes[0].message.contains("\"big\""));
    }

    #[test]
    fn time_missing_null_zero_is_now() {
        for t in [None, Some(json!(null)), Some(json!(0)), Some(json!(0.0))] {
            let mut v = json!({"measurement": "m", "fields": {"v": 1}});
            if let Some(t) = t {
                v["time"] = t;
            }
            assert_eq!(decode(Category::Metric, v).unwrap().point.time_ns, NOW);
        }
    }

    #[test]
    fn time_auto_detected_at_boundaries() {
        // Each unit's range [lower, upper) meets i64 overflow before its upper bound
        // (year 2262), so the high end of each range is probed just below that.
        let cases: [(i64, i64); 7] = [
            (1_700_000_000, 1_700_000_000_000_000_000),
            (9_000_000_000, 9_000_000_000_000_000_000),
            (10_000_000_000, 10_000_000_000_000_000),
            (9_000_000_000_000, 9_000_000_000_000_000_000),
            (10_000_000_000_000, 10_000_000_000_000_000),
            (9_000_000_000_000_000, 9_000_000_000_000_000_000),
            (10_000_000_000_000_000, 10_000_000_000_000_000),
        ];
        for (t, ns) in cases {
            let a = decode_prec(
                None,
                json!({"measurement": "m", "fields": {"v": 1}, "time": t}),
            )
            .unwrap();
            assert_eq!(a.point.time_ns, ns, "{t}");
        }
    }

    #[test]
    fn time_with_explicit_precision() {
        let cases = [
            (Precision::Nanoseconds, 1_700_000_000_000_000_000),
            (Precision::Microseconds, 1_700_000_000_000_000),
            (Precision::Milliseconds, 1_700_000_000_000),
            (Precision::Seconds, 1_700_000_000),
            (Precision::Minutes, 28_333_333),
            (Precision::Hours, 472_222),
        ];
        for (p, t) in cases {
            let a = decode_prec(
                Some(p),
                json!({"measurement": "m", "fields": {"v": 1}, "time": t}),
            )
            .unwrap();
            assert_eq!(a.point.time_ns, t * p.nanos(), "{p}");
        }
    }

    #[test]
    fn float_time_from_python_time_time() {
        let a = decode_prec(
            None,
            json!({"measurement": "m", "fields": {"v": 1}, "time": 1_700_000_000.123}),
        )
        .unwrap();
        assert_eq!(a.point.time_ns, 1_700_000_000_123_000_000);
        let a = decode_prec(
            Some(Precision::Seconds),
            json!({"measurement": "m", "fields": {"v": 1}, "time": 1_700_000_000.000_001}),
        )
        .unwrap();
        assert_eq!(a.point.time_ns, 1_700_000_000_000_001_000);
    }

    #[test]
    fn bad_times_are_rejected() {
        let cases = [
            (json!(-1), "negative"),
            (json!(-1.5), "negative"),
            (json!("1700000000"), "a string"),
            (json!(true), "a boolean"),
            (json!([1]), "an array"),
            (json!(9_999_999_999i64), "out of range"),
            (json!(u64::MAX), "out of range"),
            (json!(1e300), "out of range"),
        ];
        for (t, what) in cases {
            let err = decode_prec(
                None,
                json!({"measurement": "cpu", "fields": {"v": 1}, "time": t}),
            )
            .unwrap_err();
            assert_eq!(err.reason, RejectReason::InvalidTime, "{what}");
            assert!(err.message.contains(what), "{}", err.message);
            assert!(err.message.contains("\"cpu\""), "{}", err.message);
        }
    }

    #[test]
    fn extra_tags_are_applied() {
        let extra: BTreeMap<String, String> = [("host".to_string(), "agent-host".to_string())]
            .into_iter()
            .collect();
        let v = json!({"measurement": "m", "fields": {"v": 1}});
        let a = from_json(&v, &ctx_with(Category::Metric, None, &extra)).unwrap();
        assert_eq!(a.point.tags["host"], "agent-host");
    }

    #[test]
    fn unknown_top_level_keys_are_ignored() {
        let a = decode(
            Category::Metric,
            json!({"measurement": "m", "fields": {"v": 1}, "foo": [1]}),
        )
        .unwrap();
        assert_eq!(a.point.fields.len(), 1);
    }

    #[test]
    fn write_json_shape() {
        let a = decode(
            Category::Metric,
            json!({"measurement": "cpu", "tags": {"host": "a", "b": "x"},
                   "fields": {"usage": 1.5, "n": 3, "whole": 3.0, "ok": false}, "time": 123}),
        )
        .unwrap();
        let mut p = a.point;
        p.time_ns = 123;
        assert_eq!(
            to_json(&p),
            "{\"category\":\"metric\",\"measurement\":\"cpu\",\"tags\":{\"b\":\"x\",\"host\":\"a\"},\
             \"fields\":{\"n\":3,\"ok\":false,\"usage\":1.5,\"whole\":3.0},\"time\":123}\n"
        );
    }

    #[test]
    fn write_json_round_trips_through_serde() {
        let p = Point {
            category: Category::Logging,
            measurement: "m\"\\\u{1}é😀".into(),
            tags: [("k \"q\"".to_string(), "\t\r".to_string())]
                .into_iter()
                .collect(),
            fields: [
                ("i".to_string(), FieldValue::Int(i64::MIN)),
                ("f".to_string(), FieldValue::Float(1e21)),
                ("g".to_string(), FieldValue::Float(-1e-7)),
                ("z".to_string(), FieldValue::Float(-0.0)),
                (
                    "s".to_string(),
                    FieldValue::Str("line1\nline2 \u{7f} \u{2028}".into()),
                ),
            ]
            .into_iter()
            .collect(),
            time_ns: i64::MAX,
        };
        let text = to_json(&p);
        assert!(text.ends_with("}\n"));
        assert_eq!(text.matches('\n').count(), 1, "one line: {text}");
        let v: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["category"], "logging");
        assert_eq!(v["measurement"], p.measurement.as_str());
        assert_eq!(v["tags"]["k \"q\""], "\t\r");
        assert_eq!(v["fields"]["i"].as_i64(), Some(i64::MIN));
        assert!(v["fields"]["f"].is_f64());
        assert_eq!(v["fields"]["f"].as_f64(), Some(1e21));
        assert_eq!(v["fields"]["g"].as_f64(), Some(-1e-7));
        assert!(v["fields"]["z"].is_f64());
        assert_eq!(v["fields"]["s"], "line1\nline2 \u{7f} \u{2028}");
        assert_eq!(v["time"].as_i64(), Some(i64::MAX));

        // And back through from_json to the same point.
        let extra = BTreeMap::new();
        let ctx = ctx_with(Category::Logging, Some(Precision::Nanoseconds), &extra);
        let mut again = from_json(&v, &ctx).unwrap().point;
        // Logging adds status; the rest must be identical.
        again.fields.remove("status");
        assert_eq!(again, p);
    }

    #[test]
    fn write_json_non_finite_float_is_null() {
        let p = Point {
            category: Category::Metric,
            measurement: "m".into(),
            tags: BTreeMap::new(),
            fields: [("x".to_string(), FieldValue::Float(f64::NAN))]
                .into_iter()
                .collect(),
            time_ns: 1,
        };
        let v: Value = serde_json::from_str(&to_json(&p)).unwrap();
        assert!(v["fields"]["x"].is_null());
    }
}
