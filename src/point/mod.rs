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
//! - `precision.rs` — [`Precision`] and timestamp scaling
//! - `context.rs` — [`DecodeContext`]
//! - `outcome.rs` — [`Accepted`], [`Fix`], [`Rejection`] and their reason labels
//! - `rules.rs` — the checks and fixes, shared by both decoders
//! - `json.rs` — JSON decoding and [`Point::write_json`]
//! - `lp_encode.rs` / `lp_parse.rs` — line protocol out and in

mod category;
mod context;
mod json;
mod lp_encode;
mod lp_parse;
mod model;
mod outcome;
mod precision;
mod rules;
mod value;

pub use category::Category;
pub use context::{now_ns, DecodeContext};
pub use json::from_json;
pub use lp_parse::parse_line_protocol;
pub use model::Point;
pub use outcome::{Accepted, Fix, FixReason, RejectReason, Rejection};
pub use precision::{ParsePrecisionError, Precision};
pub use rules::{
    KEYEVENT_REQUIRED, KEYEVENT_STATUSES, MAX_FIELDS, MAX_FIELD_VALUE_LEN, MAX_KEY_LEN,
    MAX_MEASUREMENT_LEN, MAX_TAGS, MAX_TAG_VALUE_LEN,
};
pub use value::FieldValue;
