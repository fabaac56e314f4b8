//! TOML values as JSON: how `options` tables (of an input, a plugin, an instance) and
//! `zenpython_devices` reach the Python side, which receives them as dicts
//! (docs/CONFIG.md, "Input files", key `options`).
//!
//! One conversion for every table that carries free-form values, so they all accept
//! the same values and refuse the same ones (a non-finite float has no JSON
//! spelling); datetimes become strings.

use std::hash::{Hash, Hasher};

use super::tree::{Node, Problem, Value};

/// A table of any TOML values, as a JSON object (datetimes become strings).
pub(super) fn json_table(
    node: &Node,
) -> Result<serde_json::Map<String, serde_json::Value>, Problem> {
    match json(node)? {
        serde_json::Value::Object(map) => Ok(map),
        _ => Err(Problem::expected("a table", node)),
    }
}

/// Any TOML value, as JSON.
fn json(node: &Node) -> Result<serde_json::Value, Problem> {
    use serde_json::Value as J;
    Ok(match &node.value {
        Value::String(s) => J::String(s.clone()),
        Value::Integer(i) => J::from(*i),
        Value::Float(f) => match serde_json::Number::from_f64(*f) {
            Some(n) => J::Number(n),
            None => {
                return Err(Problem::at(
                    &node.span,
                    format!("{f} cannot be passed to Python options (not a finite number)"),
                ))
            }
        },
        Value::Boolean(b) => J::Bool(*b),
        Value::Datetime(d) => J::String(d.clone()),
        Value::Array(items) => J::Array(items.iter().map(json).collect::<Result<_, _>>()?),
        Value::Table(entries) => J::Object(
            entries
                .iter()
                .map(|e| Ok((e.key.clone(), json(&e.node)?)))
                .collect::<Result<_, Problem>>()?,
        ),
    })
}

/// A JSON object compared and hashed by its canonical text (maps are sorted), for the
/// `Hash` of the settings that hold `options`: JSON values have no `Hash` of their own.
#[derive(PartialEq, Eq)]
pub(super) struct HashedJson<'a>(pub(super) &'a serde_json::Map<String, serde_json::Value>);

impl Hash for HashedJson<'_> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        serde_json::to_string(self.0)
            .unwrap_or_default()
            .hash(state);
    }
}
