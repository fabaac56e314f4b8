//! Points: the shared vocabulary of the agent, and the rules every reported point
//! passes before it is forwarded.
//!
//! A collector's report arrives as JSON (from our worker, or DataKit's shim over HTTP)
//! or as line protocol (HTTP). [`from_json`] and [`parse_line_protocol`] decode it,
//! apply DataKit's wire semantics (time units, per-category rules, limits — see
//! `docs/POINTS.md`) and return, per point, either an [`Accepted`] point with the
//! [`Fix`]es that were needed, or a [`Rejection`]. Sinks then write accepted points
//! with [`Point::write_line_protocol`] or [`Point::write_json`].
//!
//! Files, one concept each:
//! - `category.rs` — [`Category`] and its code/name spellings
//! - `value.rs` — [`FieldValue`]
//! - `model.rs` — [`Point`]
//! - `batch.rs` — [`PointBatch`], [`PointRef`] and [`BatchPool`]: accepted points with
//!   borrowed strings, as the network sinks encode them, and batches' reused storage
//! - `precision.rs` — [`Precision`] and timestamp scaling
//! - `context.rs` — [`DecodeContext`]
//! - `outcome.rs` — [`Accepted`], [`Fix`], [`Rejection`] and their reason labels
//! - `rules.rs` — the checks and fixes, shared by both decoders
//! - `json.rs` — JSON decoding and [`Point::write_json`]
//! - `json_stream.rs` — visiting a JSON body's points one at a time
//! - `lp_encode.rs` / `lp_parse.rs` — line protocol out and in ([`LineDecoder`]: into
//!   a [`PointBatch`], the HTTP write API's path)
//! - `lp_number.rs` — line protocol's plain numbers, read fast with `str::parse`'s
//!   results

mod batch;
mod category;
mod context;
mod json;
mod json_stream;
mod lp_encode;
mod lp_number;
mod lp_parse;
mod model;
mod outcome;
mod precision;
mod rules;
mod value;

pub use batch::{key_order, BatchPool, Field, FieldRef, PointBatch, PointRef, Tag};
pub use category::Category;
pub use context::{now_ns, DecodeContext};
pub use json::from_json;
pub use json_stream::{decode_json_point, for_each_json_point, for_each_json_point_while};
pub use lp_parse::{line_protocol_lines, line_protocol_points, parse_line_protocol, LineDecoder};
pub use model::Point;
pub use outcome::{Accepted, Fix, FixReason, RejectReason, Rejection};
pub use precision::{ParsePrecisionError, Precision};
pub use rules::{
    KEYEVENT_REQUIRED, KEYEVENT_STATUSES, MAX_FIELDS, MAX_FIELD_VALUE_LEN, MAX_KEY_LEN,
    MAX_MEASUREMENT_LEN, MAX_TAGS, MAX_TAG_VALUE_LEN,
};
pub use value::FieldValue;

#[cfg(test)]
mod tests {
    //! The public surface other modules code against, exercised through the re-exports.
    use crate::point::{
        from_json, parse_line_protocol, Accepted, Category, DecodeContext, FieldValue, Fix,
        FixReason, Point, Precision, RejectReason, Rejection,
    };
    use std::collections::BTreeMap;

    #[test]
    fn public_api_end_to_end() {
        let extra: BTreeMap<String, String> = [("host".into(), "h".into())].into_iter().collect();
        let ctx = DecodeContext {
            category: Category::from_code("L").expect("L is logging"),
            precision: Some("s".parse::<Precision>().expect("s parses")),
            now_ns: 7,
            extra_tags: &extra,
        };
        let v = serde_json::json!([
            {"measurement": "app", "fields": {"message": "hi"}, "time": 2},
            {"measurement": "app", "fields": {"message": ["not", "scalar"]}}
        ]);
        let items = v.as_array().expect("array");
        let ok: Accepted = from_json(&items[0], &ctx).expect("first is fine");
        let fixes: &[Fix] = &ok.fixes;
        assert_eq!(fixes[0].reason, FixReason::DefaultStatus);
        let point: &Point = &ok.point;
        assert_eq!(point.time_ns, 2_000_000_000);
        assert_eq!(point.tags["host"], "h");
        assert_eq!(point.fields["message"], FieldValue::Str("hi".into()));
        let bad: Rejection = from_json(&items[1], &ctx).expect_err("second is not");
        assert_eq!(bad.reason, RejectReason::InvalidFieldValue);

        let mut line = String::new();
        point.write_line_protocol(&mut line);
        let parsed = parse_line_protocol(
            &line,
            &DecodeContext {
                precision: None,
                ..ctx
            },
        );
        assert_eq!(parsed.len(), 1);
        assert_eq!(parsed[0].1.as_ref().map(|a| &a.point), Ok(point));

        let mut json = Vec::new();
        point.write_json(&mut json);
        let back: serde_json::Value = serde_json::from_slice(&json).expect("valid JSON");
        assert_eq!(back["category"], "logging");
        assert_eq!(back["time"], 2_000_000_000i64);
    }
}
