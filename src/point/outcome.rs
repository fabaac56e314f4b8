//! What decoding one point can end in: accepted (perhaps with fixes) or rejected.
//!
//! Every fix and rejection carries a stable snake_case reason label. The labels are
//! part of the operator-facing contract (Prometheus label values, log fields and the
//! table in POINTS.md), so renaming one is a breaking change.

use std::fmt;

use super::Point;

/// A point that passed the rules, and what had to be changed to make it pass.
#[derive(Clone, Debug, PartialEq)]
pub struct Accepted {
    pub point: Point,
    /// Empty for a point that needed no change.
    pub fixes: Vec<Fix>,
}

/// One automatic change made to an otherwise acceptable point (DataKit calls these
/// "warnings": the point is kept, the change is counted and logged).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fix {
    pub reason: FixReason,
    /// Names the key or value involved, e.g. `field "msg" dropped: metrics take no strings`.
    pub message: String,
}

/// A point that was dropped, and why. Its neighbours are unaffected.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rejection {
    pub reason: RejectReason,
    /// Says which point (its measurement, when known) and what was wrong.
    pub message: String,
}

impl Fix {
    pub(crate) fn new(reason: FixReason, message: impl Into<String>) -> Fix {
        Fix {
            reason,
            message: message.into(),
        }
    }
}

impl Rejection {
    pub(crate) fn new(reason: RejectReason, message: impl Into<String>) -> Rejection {
        Rejection {
            reason,
            message: message.into(),
        }
    }
}

impl fmt::Display for Fix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.reason, self.message)
    }
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.reason, self.message)
    }
}

/// Declares a reason enum with its label table, `as_str`, `ALL` and `Display`, so a
/// variant cannot be added without a label.
macro_rules! reasons {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident => $label:literal,)+ }) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum $name {
            $($(#[$vmeta])* $variant,)+
        }

        impl $name {
            /// Every reason, e.g. to pre-register Prometheus counters at zero.
            pub const ALL: &'static [$name] = &[$($name::$variant,)+];

            /// The stable snake_case label (Prometheus label value, log field).
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $label,)+
                }
            }

            /// The reason with label `label`, if there is one.
            pub fn from_label(label: &str) -> Option<$name> {
                $name::ALL.iter().copied().find(|r| r.as_str() == label)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

reasons! {
    /// Why a point was changed. See POINTS.md for the rule behind each.
    FixReason {
        /// A JSON `null` tag or field value was dropped.
        NullValue => "null_value",
        /// A string field on a metric was dropped (metrics are numeric).
        MetricStringField => "metric_string_field",
        /// An integer beyond i64 (JSON, or line protocol `u`) became a float.
        IntToFloat => "int_to_float",
        /// A field (or a renamed key) clashed with an existing key and was dropped.
        KeyConflict => "key_conflict",
        /// A tag or field with an empty key was dropped.
        EmptyKey => "empty_key",
        /// A tag whose value is empty was dropped (line protocol cannot carry it).
        EmptyTagValue => "empty_tag_value",
        /// A newline in the measurement, a key or a tag value became a space.
        NewlineReplaced => "newline_replaced",
        /// Trailing backslashes were removed from a key or tag value.
        TrailingBackslash => "trailing_backslash",
        /// `.` in a key became `_` (logging and object categories).
        DotInKey => "dot_in_key",
        /// A key reserved by the category (`source`/`date` on logging, `class`/`date` on
        /// objects) was dropped.
        DisabledKey => "disabled_key",
        /// The measurement was cut to 1024 bytes.
        MeasurementTooLong => "measurement_too_long",
        /// Tags beyond the 256th (in key order) were dropped.
        TooManyTags => "too_many_tags",
        /// Fields beyond the 1024th (in key order) were dropped.
        TooManyFields => "too_many_fields",
        /// A key was cut to 256 bytes.
        KeyTooLong => "key_too_long",
        /// A tag value was cut to 1024 bytes.
        TagValueTooLong => "tag_value_too_long",
        /// A string field was cut to 32 MiB.
        FieldValueTooLong => "field_value_too_long",
        /// A logging point without `status` got field `status="info"`.
        DefaultStatus => "default_status",
        /// An object point without `name` got tag `name="default"`.
        DefaultName => "default_name",
    }
}

reasons! {
    /// Why a point was dropped. See POINTS.md for the rule behind each.
    RejectReason {
        /// The JSON point is not an object.
        NotAnObject => "not_an_object",
        /// `measurement` is absent, null or empty.
        MissingMeasurement => "missing_measurement",
        /// `measurement` is not a string.
        InvalidMeasurement => "invalid_measurement",
        /// `tags` is not an object.
        InvalidTags => "invalid_tags",
        /// A tag value is not a string.
        InvalidTagValue => "invalid_tag_value",
        /// `fields` is not an object.
        InvalidFields => "invalid_fields",
        /// A field value is an array, an object, NaN or infinite.
        InvalidFieldValue => "invalid_field_value",
        /// No field is left (none given, or all dropped by fixes).
        NoFields => "no_fields",
        /// `time` is negative, not a number, or out of the nanosecond range.
        InvalidTime => "invalid_time",
        /// A line-protocol line could not be parsed.
        Syntax => "syntax",
        /// A JSON point is well-formed but cannot be decoded (a lone surrogate escape,
        /// nesting deeper than 128 levels, a number beyond the float range).
        UndecodableJson => "undecodable_json",
        /// A keyevent lacks `df_status`, `df_event_id`, `df_title` or `df_source`.
        MissingEventKey => "keyevent_missing_key",
        /// A keyevent's `df_status` is not ok/info/warning/error/critical/nodata.
        InvalidEventStatus => "keyevent_invalid_status",
        /// The worker's shim could not encode the point as JSON (bytes, a datetime, a
        /// set...; NaN and infinities are `invalid_field_value`, as on HTTP).
        NotJsonSerializable => "not_json_serializable",
        /// A `report()` key that is not a category code.
        UnknownCategory => "unknown_category",
        /// A `report()` `precision` that is not a precision.
        BadPrecision => "bad_precision",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    fn is_snake_case(s: &str) -> bool {
        !s.is_empty()
            && s.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')
            && !s.starts_with('_')
            && !s.ends_with('_')
    }

    #[test]
    fn labels_are_unique_snake_case() {
        let mut seen = HashSet::new();
        for r in FixReason::ALL {
            assert!(is_snake_case(r.as_str()), "{r:?}");
            assert!(seen.insert(r.as_str()), "duplicate label {}", r.as_str());
        }
        let mut seen = HashSet::new();
        for r in RejectReason::ALL {
            assert!(is_snake_case(r.as_str()), "{r:?}");
            assert!(seen.insert(r.as_str()), "duplicate label {}", r.as_str());
        }
        assert_eq!(FixReason::ALL.len(), 18);
        assert_eq!(RejectReason::ALL.len(), 16);
        assert_eq!(
            RejectReason::from_label("not_json_serializable"),
            Some(RejectReason::NotJsonSerializable)
        );
        assert_eq!(RejectReason::from_label("nope"), None);
    }

    #[test]
    fn display_shows_reason_then_message() {
        let fix = Fix::new(FixReason::NullValue, "field \"x\" dropped: null");
        assert_eq!(fix.to_string(), "null_value: field \"x\" dropped: null");
        let rej = Rejection::new(RejectReason::NoFields, "point \"cpu\": no fields");
        assert_eq!(rej.to_string(), "no_fields: point \"cpu\": no fields");
        assert_eq!(RejectReason::Syntax.to_string(), "syntax");
    }
}
