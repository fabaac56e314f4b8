//! Writing a point as one line of InfluxDB/DataKit line protocol.
//!
//! This is the hot path of the `datakit` and `influxdb` sinks, so it appends to a
//! caller-owned `String`, copies unescaped runs in one `push_str`, and never allocates.
//!
//! Escaping (shared with `lp_parse.rs`, which undoes exactly this):
//! - measurement: `,` and space are escaped with `\`;
//! - tag keys, tag values, field keys: `,`, `=` and space are escaped;
//! - in all of those a backslash is doubled only where a reader would otherwise take it
//!   as an escape (before `,` `=` space `\` or at the end), so Windows paths such as
//!   `C:\data` stay as InfluxDB writes and reads them;
//! - a newline (which the rules already replaced) is written as an escaped space, so a
//!   `Point` built by hand still yields exactly one line;
//! - string field values are quoted, with `"` and `\` escaped and newlines kept
//!   verbatim (multi-line log messages), as InfluxDB does.

use std::fmt::Write as _;

use super::{FieldRef, Point, PointRef};

/// Bytes that a backslash escapes in unquoted tokens (the parser's set). The encoder
/// doubles a backslash before any of these, before a newline (written as an escaped
/// space) and at the end of a token; everywhere else a backslash is just a backslash.
pub(crate) const ESCAPABLE: [u8; 4] = [b',', b'=', b' ', b'\\'];

/// Bytes escaped in a measurement (it ends at an unescaped `,` or space).
const MEASUREMENT_SPECIALS: &[u8] = b", ";
/// Bytes escaped in tag keys, tag values and field keys.
const KEY_SPECIALS: &[u8] = b",= ";

impl Point {
    /// Appends one line of line protocol plus `'\n'`:
    /// `measurement,tag=v field=1i,other="s" <time_ns>`. Tags and fields come in key
    /// order; ints carry the `i` suffix; floats always have a `.` or an exponent.
    ///
    /// A point from the decoders always encodes to a valid line. A hand-built point must
    /// have at least one field and finite floats, or the line will not parse.
    pub fn write_line_protocol(&self, out: &mut String) {
        write_line(
            out,
            &self.measurement,
            self.tags.iter().map(|(k, v)| (k.as_str(), v.as_str())),
            self.fields
                .iter()
                .map(|(k, v)| (k.as_str(), FieldRef::from(v))),
            self.time_ns,
        );
    }
}

impl PointRef<'_> {
    /// Appends the point as [`Point::write_line_protocol`] does.
    pub fn write_line_protocol(&self, out: &mut String) {
        write_line(
            out,
            self.measurement,
            self.tags.iter().map(|(k, v)| (k.as_ref(), v.as_ref())),
            self.fields.iter().map(|(k, v)| (k.as_ref(), v.reborrow())),
            self.time_ns,
        );
    }
}

fn write_line<'p>(
    out: &mut String,
    measurement: &str,
    tags: impl Iterator<Item = (&'p str, &'p str)>,
    fields: impl Iterator<Item = (&'p str, FieldRef<'p>)>,
    time_ns: i64,
) {
    write_token(out, measurement, MEASUREMENT_SPECIALS);
    for (key, value) in tags {
        out.push(',');
        write_token(out, key, KEY_SPECIALS);
        out.push('=');
        write_token(out, value, KEY_SPECIALS);
    }
    let mut sep = ' ';
    for (key, value) in fields {
        out.push(sep);
        sep = ',';
        write_token(out, key, KEY_SPECIALS);
        out.push('=');
        write_field_value(out, &value);
    }
    // Writing to a String cannot fail.
    let _ = writeln!(out, " {time_ns}");
}

fn write_field_value(out: &mut String, value: &FieldRef<'_>) {
    match value {
        FieldRef::Int(v) => {
            let _ = write!(out, "{v}i");
        }
        // Debug keeps "3.0" (Display prints "3": still a float in line protocol, but it
        // reads like an int) and is the shortest form that parses back to the same f64.
        FieldRef::Float(v) => {
            let _ = write!(out, "{v:?}");
        }
        FieldRef::Bool(true) => out.push_str("true"),
        FieldRef::Bool(false) => out.push_str("false"),
        FieldRef::Str(s) => {
            out.push('"');
            let mut start = 0;
            for (i, b) in s.bytes().enumerate() {
                let escaped = match b {
                    b'"' => "\\\"",
                    b'\\' => "\\\\",
                    _ => continue,
                };
                out.push_str(&s[start..i]);
                out.push_str(escaped);
                start = i + 1;
            }
            out.push_str(&s[start..]);
            out.push('"');
        }
    }
}

/// Writes a measurement, key or tag value with the escaping described at the top.
/// Only ASCII bytes are ever escaped, so slicing at their positions is always on a
/// char boundary.
fn write_token(out: &mut String, s: &str, specials: &[u8]) {
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let escaped = match b {
            b'\n' => "\\ ",
            b'\\' => match bytes.get(i + 1) {
                Some(next) if !ESCAPABLE.contains(next) && *next != b'\n' => continue,
                _ => "\\\\",
            },
            _ if !specials.contains(&b) => continue,
            b',' => "\\,",
            b'=' => "\\=",
            _ => "\\ ",
        };
        out.push_str(&s[start..i]);
        out.push_str(escaped);
        start = i + 1;
    }
    out.push_str(&s[start..]);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::point::{Category, FieldValue};
    use std::collections::BTreeMap;

    fn point(
        measurement: &str,
        tags: &[(&str, &str)],
        fields: &[(&str, FieldValue)],
        time_ns: i64,
    ) -> Point {
        Point {
            category: Category::Metric,
            measurement: measurement.to_owned(),
            tags: tags
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            fields: fields
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect(),
            time_ns,
        }
    }

    fn lp(p: &Point) -> String {
        let mut out = String::new();
        p.write_line_protocol(&mut out);
        out
    }

    #[test]
    fn basic_line() {
        let p = point(
            "cpu",
            &[("host", "a"), ("cpu", "cpu0")],
            &[
                ("usage", FieldValue::Float(1.5)),
                ("n", FieldValue::Int(-3)),
                ("ok", FieldValue::Bool(true)),
                ("bad", FieldValue::Bool(false)),
                ("s", FieldValue::Str("hi".into())),
            ],
            1_700_000_000_000_000_000,
        );
        assert_eq!(
            lp(&p),
            "cpu,cpu=cpu0,host=a bad=false,n=-3i,ok=true,s=\"hi\",usage=1.5 1700000000000000000\n"
        );
    }

    #[test]
    fn appends_without_clearing() {
        let p = point("m", &[], &[("v", FieldValue::Int(1))], 5);
        let mut out = String::from("x\n");
        p.write_line_protocol(&mut out);
        p.write_line_protocol(&mut out);
        assert_eq!(out, "x\nm v=1i 5\nm v=1i 5\n");
    }

    #[test]
    fn floats_never_look_like_ints() {
        let cases = [
            (3.0, "3.0"),
            (-0.0, "-0.0"),
            (0.1, "0.1"),
            (1e21, "1e21"),
            (1.5e-7, "1.5e-7"),
            (f64::MAX, "1.7976931348623157e308"),
        ];
        for (f, text) in cases {
            let p = point("m", &[], &[("f", FieldValue::Float(f))], 1);
            assert_eq!(lp(&p), format!("m f={text} 1\n"));
        }
        let p = point("m", &[], &[("i", FieldValue::Int(i64::MIN))], 1);
        assert_eq!(lp(&p), "m i=-9223372036854775808i 1\n");
    }

    #[test]
    fn measurement_escapes_comma_and_space_only() {
        let p = point("a,b c=d", &[], &[("v", FieldValue::Int(1))], 1);
        assert_eq!(lp(&p), "a\\,b\\ c=d v=1i 1\n");
    }

    #[test]
    fn keys_and_tag_values_escape_comma_equals_space() {
        let p = point(
            "m",
            &[("k,=  ", "v,= ")],
            &[("f,= ", FieldValue::Int(1))],
            1,
        );
        assert_eq!(lp(&p), "m,k\\,\\=\\ \\ =v\\,\\=\\  f\\,\\=\\ =1i 1\n");
    }

    #[test]
    fn backslashes_are_doubled_only_where_ambiguous() {
        let p = point(
            "m",
            &[("path", "C:\\data\\x")],
            &[("v", FieldValue::Int(1))],
            1,
        );
        assert_eq!(
            lp(&p),
            "m,path=C:\\data\\x v=1i 1\n",
            "Windows paths untouched"
        );
        let p = point(
            "m",
            &[("t", "a\\,b"), ("u", "end\\")],
            &[("v", FieldValue::Int(1))],
            1,
        );
        assert_eq!(lp(&p), "m,t=a\\\\\\,b,u=end\\\\ v=1i 1\n");
        let p = point("m\\=x\\", &[], &[("v", FieldValue::Int(1))], 1);
        assert_eq!(lp(&p), "m\\\\=x\\\\ v=1i 1\n");
        let p = point("m", &[("t", "a\\\\b")], &[("v", FieldValue::Int(1))], 1);
        assert_eq!(lp(&p), "m,t=a\\\\\\b v=1i 1\n");
    }

    #[test]
    fn string_fields_escape_quote_and_backslash_and_keep_newlines() {
        let p = point(
            "m",
            &[],
            &[("s", FieldValue::Str("say \"hi\"\\\nbye".into()))],
            1,
        );
        assert_eq!(lp(&p), "m s=\"say \\\"hi\\\"\\\\\nbye\" 1\n");
    }

    #[test]
    fn newlines_outside_strings_never_break_the_line() {
        let p = point(
            "a\nb",
            &[("k\n", "v\nw")],
            &[("f\n", FieldValue::Int(1))],
            1,
        );
        let line = lp(&p);
        assert_eq!(line.matches('\n').count(), 1, "{line:?}");
        assert_eq!(line, "a\\ b,k\\ =v\\ w f\\ =1i 1\n");
        let p = point("m", &[("t", "a\\\nb")], &[("v", FieldValue::Int(1))], 1);
        assert_eq!(lp(&p), "m,t=a\\\\\\ b v=1i 1\n");
    }

    #[test]
    fn unicode_passes_through() {
        let p = point(
            "温度",
            &[("城市", "北京 東京")],
            &[("值", FieldValue::Str("😀".into()))],
            1,
        );
        assert_eq!(lp(&p), "温度,城市=北京\\ 東京 值=\"😀\" 1\n");
    }

    #[test]
    fn empty_point_still_one_line() {
        let p = Point {
            category: Category::Metric,
            measurement: "m".into(),
            tags: BTreeMap::new(),
            fields: BTreeMap::new(),
            time_ns: 1,
        };
        assert_eq!(lp(&p), "m 1\n");
    }
}
