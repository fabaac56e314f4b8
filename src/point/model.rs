//! The validated point: what every decoder produces and every sink consumes.
//!
//! Tags and fields live in `BTreeMap`s so that output is sorted by key — the order
//! InfluxDB recommends for line protocol, and a stable one for tests and diffs. The
//! encoders are `impl Point` blocks in `lp_encode.rs` and `json.rs`.

use std::collections::BTreeMap;

use super::{Category, FieldValue};

/// One data point. A `Point` returned by [`from_json`](super::from_json) or
/// [`parse_line_protocol`](super::parse_line_protocol) has passed every rule in
/// POINTS.md: a non-empty measurement, at least one field, finite floats, keys and
/// values within limits and without newlines.
#[derive(Clone, Debug, PartialEq)]
pub struct Point {
    pub category: Category,
    pub measurement: String,
    pub tags: BTreeMap<String, String>,
    pub fields: BTreeMap<String, FieldValue>,
    /// Nanoseconds since the Unix epoch.
    pub time_ns: i64,
}
