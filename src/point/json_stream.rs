//! Walking a JSON body of points one at a time.
//!
//! A write-API body may hold up to `[http] max_body` of JSON. Parsed whole into
//! `serde_json::Value`s it can take many times its size (`[0,0,0,...]` costs 16 bytes of
//! memory per 2 bytes of input), so the array is visited element by element, each
//! element as its raw text: only one point's `Value` exists at a time.
//!
//! The walk only checks the body's syntax (it does not build values), so the same walk
//! serves as the write API's pre-check and as its decoding pass: the two cannot
//! disagree. What the walk lets through but a `Value` cannot hold (a lone surrogate
//! `"\ud800"`, nesting deeper than serde_json's 128 levels, a number beyond `f64`) is
//! one point's problem: [`decode_json_point`] rejects that point with a reason, and its
//! neighbours go on.

use std::fmt;

use serde::de::{Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;
use serde_json::Value;

use super::outcome::RejectReason;
use super::Rejection;

/// Calls `each` with the raw text of every point of `body`: the elements of a
/// top-level array, or the top-level object itself. Errors on invalid JSON or another
/// top-level type. The walk has no side effects besides `each`, so running it twice
/// on the same body gives the same elements and the same error at the same place.
pub fn for_each_json_point<'a>(
    body: &'a [u8],
    mut each: impl FnMut(&'a RawValue),
) -> Result<(), serde_json::Error> {
    for_each_json_point_while(body, |raw| {
        each(raw);
        true
    })
}

/// Like [`for_each_json_point`], stopping (with an error) as soon as `each` returns
/// false; the caller knows why it stopped.
pub fn for_each_json_point_while<'a>(
    body: &'a [u8],
    mut each: impl FnMut(&'a RawValue) -> bool,
) -> Result<(), serde_json::Error> {
    match body.iter().find(|b| !b.is_ascii_whitespace()) {
        Some(b'{') => {
            let raw: &RawValue = serde_json::from_slice(body)?;
            each(raw);
            Ok(())
        }
        _ => {
            let mut deserializer = serde_json::Deserializer::from_slice(body);
            deserializer.deserialize_any(PointsVisitor { each })?;
            deserializer.end()
        }
    }
}

/// One point's raw JSON as a `Value`, or the rejection saying why it cannot be one.
pub fn decode_json_point(raw: &RawValue) -> Result<Value, Rejection> {
    serde_json::from_str(raw.get()).map_err(|e| {
        Rejection::new(
            RejectReason::UndecodableJson,
            format!("point is not decodable JSON: {e}"),
        )
    })
}

struct PointsVisitor<F> {
    each: F,
}

impl<'de, F: FnMut(&'de RawValue) -> bool> Visitor<'de> for PointsVisitor<F> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON array of points (or a single point object)")
    }

    fn visit_seq<A: SeqAccess<'de>>(mut self, mut seq: A) -> Result<(), A::Error> {
        while let Some(raw) = seq.next_element::<&'de RawValue>()? {
            if !(self.each)(raw) {
                return Err(serde::de::Error::custom("stopped by the caller"));
            }
        }
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, _map: A) -> Result<(), A::Error> {
        // A top-level object is taken whole by `for_each_json_point`.
        Err(serde::de::Error::custom("unexpected object"))
    }
}

#[cfg(test)]
mod tests {
    use super::{decode_json_point, for_each_json_point};
    use serde_json::json;

    fn collect(body: &str) -> Result<Vec<serde_json::Value>, String> {
        let mut seen = Vec::new();
        for_each_json_point(body.as_bytes(), |raw| {
            seen.push(
                decode_json_point(raw)
                    .map_err(|r| r.message)
                    .unwrap_or_default(),
            )
        })
        .map_err(|e| e.to_string())?;
        Ok(seen)
    }

    #[test]
    fn visits_array_elements_or_a_single_object() {
        assert_eq!(
            collect(r#"[{"a": 1}, 2, {"b": [3]}]"#).expect("array"),
            vec![json!({"a": 1}), json!(2), json!({"b": [3]})]
        );
        assert_eq!(
            collect(r#" {"m": "x"} "#).expect("object"),
            vec![json!({"m": "x"})]
        );
        assert_eq!(
            collect("[]").expect("empty"),
            Vec::<serde_json::Value>::new()
        );
        assert!(collect("3").is_err());
        assert!(collect(r#"[{"a": 1}"#).is_err());
        assert!(collect("[1] x").is_err());
        assert!(collect(r#"{"a": 1} x"#).is_err());
    }

    #[test]
    fn what_the_walk_accepts_but_a_value_cannot_hold_is_one_points_rejection() {
        let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        let huge = "9".repeat(5000);
        for bad in [r#"{"s": "\ud800"}"#.to_string(), deep, huge] {
            let body = format!(r#"[{{"m": 1}}, {bad}, {{"m": 2}}]"#);
            let mut seen = Vec::new();
            for_each_json_point(body.as_bytes(), |raw| seen.push(decode_json_point(raw)))
                .expect("the walk takes it");
            assert_eq!(seen.len(), 3, "{}", &body[..body.len().min(80)]);
            assert!(seen[0].is_ok() && seen[2].is_ok());
            let rejection = seen[1].as_ref().expect_err("the middle one is rejected");
            assert_eq!(rejection.reason.as_str(), "undecodable_json");
        }
    }
}
