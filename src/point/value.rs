//! The value of one field: the four scalar types every backend we write to understands.
//!
//! InfluxDB, VictoriaMetrics and DataKit all store int, float, bool and string fields;
//! unsigned ints are folded into `Int` (or `Float` when they do not fit, see
//! POINTS.md) so that a field never changes type between backends.

use std::fmt;

/// One field value. `Float` is never NaN or infinite in a point that passed the rules.
#[derive(Clone, Debug, PartialEq)]
pub enum FieldValue {
    Int(i64),
    Float(f64),
    Bool(bool),
    Str(String),
}

impl FieldValue {
    /// A short word for the type, for messages ("field 'x' is a string").
    pub fn type_name(&self) -> &'static str {
        match self {
            FieldValue::Int(_) => "integer",
            FieldValue::Float(_) => "float",
            FieldValue::Bool(_) => "boolean",
            FieldValue::Str(_) => "string",
        }
    }

    /// The string, if this is a string field.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            FieldValue::Str(s) => Some(s),
            _ => None,
        }
    }
}

/// Human-readable rendering for logs and `check` output; not line protocol.
impl fmt::Display for FieldValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FieldValue::Int(i) => write!(f, "{i}"),
            FieldValue::Float(x) => write!(f, "{x:?}"),
            FieldValue::Bool(b) => write!(f, "{b}"),
            FieldValue::Str(s) => write!(f, "{s:?}"),
        }
    }
}

impl From<i64> for FieldValue {
    fn from(v: i64) -> Self {
        FieldValue::Int(v)
    }
}

impl From<f64> for FieldValue {
    fn from(v: f64) -> Self {
        FieldValue::Float(v)
    }
}

impl From<bool> for FieldValue {
    fn from(v: bool) -> Self {
        FieldValue::Bool(v)
    }
}

impl From<String> for FieldValue {
    fn from(v: String) -> Self {
        FieldValue::Str(v)
    }
}

impl From<&str> for FieldValue {
    fn from(v: &str) -> Self {
        FieldValue::Str(v.to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conversions_pick_the_right_variant() {
        assert_eq!(FieldValue::from(3i64), FieldValue::Int(3));
        assert_eq!(FieldValue::from(3.0), FieldValue::Float(3.0));
        assert_eq!(FieldValue::from(true), FieldValue::Bool(true));
        assert_eq!(FieldValue::from("a"), FieldValue::Str("a".into()));
        assert_eq!(
            FieldValue::from(String::from("b")),
            FieldValue::Str("b".into())
        );
    }

    #[test]
    fn display_keeps_floats_distinct_from_ints() {
        assert_eq!(FieldValue::Int(3).to_string(), "3");
        assert_eq!(FieldValue::Float(3.0).to_string(), "3.0");
        assert_eq!(FieldValue::Str("a\"b".into()).to_string(), "\"a\\\"b\"");
        assert_eq!(FieldValue::Bool(false).to_string(), "false");
    }

    #[test]
    fn type_names_and_as_str() {
        assert_eq!(FieldValue::Int(1).type_name(), "integer");
        assert_eq!(FieldValue::Float(1.0).type_name(), "float");
        assert_eq!(FieldValue::Bool(true).type_name(), "boolean");
        assert_eq!(FieldValue::Str(String::new()).type_name(), "string");
        assert_eq!(FieldValue::Str("x".into()).as_str(), Some("x"));
        assert_eq!(FieldValue::Int(1).as_str(), None);
    }
}
