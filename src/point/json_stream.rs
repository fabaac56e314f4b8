//! Walking a JSON body of points one at a time.
//!
//! A write-API body may hold up to `[http] max_body` of JSON. Parsed whole into
//! `serde_json::Value`s it can take many times its size (`[0,0,0,...]` costs 16 bytes of
//! memory per 2 bytes of input), so the array is visited element by element: only one
//! point's `Value` exists at a time, and the accepted points are all that is kept.

use std::fmt;

use serde::de::{DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::Value;

/// Calls `each` with every point of `body`: the elements of a top-level array, or the
/// top-level object itself. Errors on invalid JSON or another top-level type (`each`
/// may already have been called for the elements before a syntax error: validate the
/// body first if that matters).
pub fn for_each_json_point(body: &[u8], each: impl FnMut(Value)) -> Result<(), serde_json::Error> {
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    deserializer.deserialize_any(PointsVisitor { each })?;
    deserializer.end()
}

struct PointsVisitor<F> {
    each: F,
}

impl<'de, F: FnMut(Value)> Visitor<'de> for PointsVisitor<F> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON array of points (or a single point object)")
    }

    fn visit_seq<A: SeqAccess<'de>>(mut self, mut seq: A) -> Result<(), A::Error> {
        while let Some(value) = seq.next_element::<Value>()? {
            (self.each)(value);
        }
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(mut self, map: A) -> Result<(), A::Error> {
        let value = ObjectSeed.deserialize(serde::de::value::MapAccessDeserializer::new(map))?;
        (self.each)(value);
        Ok(())
    }
}

/// Deserializes a map into a `Value::Object`.
struct ObjectSeed;

impl<'de> DeserializeSeed<'de> for ObjectSeed {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        serde::Deserialize::deserialize(deserializer)
    }
}

#[cfg(test)]
mod tests {
    use super::for_each_json_point;
    use serde_json::json;

    fn collect(body: &str) -> Result<Vec<serde_json::Value>, String> {
        let mut seen = Vec::new();
        for_each_json_point(body.as_bytes(), |v| seen.push(v)).map_err(|e| e.to_string())?;
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
    }
}
