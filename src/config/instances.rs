//! Collector instances: the `[[inputs.pythond.instances]]` tables of one input.
//!
//! An instance is one target a collector polls (a URL, a database server, a device).
//! Every plugin class of the input runs once per instance, as an object of its own
//! whose `self.options` is the input's options merged with the instance's
//! (docs/CONFIG.md, "Instances"). This module owns the instance keys, their
//! validation (unique names, no control characters), the `concurrency` key that
//! sizes the worker's pool of run threads and the `processes` key that spreads the
//! instances over worker processes; everything else about an input stays in
//! `inputs.rs`.

use std::collections::{BTreeMap, HashMap};
use std::hash::{Hash, Hasher};
use std::time::Duration;

use super::json_value::{json_table, HashedJson};
use super::tree::{self, Node, Problem, Section, Value};
use super::values;

/// Keys of one `[[inputs.pythond.instances]]` table.
pub(super) const INSTANCE_KEYS: &[&str] =
    &["name", "options", "tags", "interval", "timeout", "enabled"];

/// Longest instance name accepted (it is part of every status entry and log line).
const MAX_INSTANCE_NAME: usize = 200;

/// Largest `concurrency` accepted: more threads only add GIL contention.
pub const MAX_CONCURRENCY: u32 = 1024;

/// Largest `processes` accepted: more worker processes than cores only add memory.
pub const MAX_PROCESSES: u16 = 64;

/// One `[[inputs.pythond.instances]]` entry (or an element of `instances = [...]`).
///
/// Equality and hashing cover the settings only, not [`InstanceConfig::line`].
#[derive(Clone, Debug)]
pub struct InstanceConfig {
    /// Key `name`, optional, unique in the input; default: the entry's position,
    /// counted from 0 (`"0"`, `"1"`, ...).
    pub name: String,
    /// Key `options`, optional table merged over the input's `options` (key by key)
    /// and over the plugin's `[inputs.pythond.plugins.<name>] options`.
    pub options: serde_json::Map<String, serde_json::Value>,
    /// Key `tags`, optional table of strings added to this instance's points (a tag
    /// the point sets itself wins, as with the input's `tags`).
    pub tags: BTreeMap<String, String>,
    /// Key `interval`, optional duration: this instance's run interval.
    pub interval: Option<Duration>,
    /// Key `timeout`, optional duration: how long one run of this instance may take.
    pub timeout: Option<Duration>,
    /// Key `enabled`, default `true`.
    pub enabled: bool,
    /// 1-based line where the entry starts. Not part of equality.
    pub line: usize,
}

impl PartialEq for InstanceConfig {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name
            && self.options == other.options
            && self.tags == other.tags
            && self.interval == other.interval
            && self.timeout == other.timeout
            && self.enabled == other.enabled
    }
}

impl Eq for InstanceConfig {}

impl Hash for InstanceConfig {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.name.hash(state);
        HashedJson(&self.options).hash(state);
        self.tags.hash(state);
        self.interval.hash(state);
        self.timeout.hash(state);
        self.enabled.hash(state);
    }
}

/// The worker's pool size when `concurrency` is not set: one thread per 50 instances,
/// at least 4, at most 64 (docs/OPERATIONS.md, "Sizing a host").
pub fn default_concurrency(instances: usize) -> u32 {
    let wanted = instances.div_ceil(50);
    u32::try_from(wanted).unwrap_or(u32::MAX).clamp(4, 64)
}

/// Reads `instances` (array of tables or inline array) from an input's section.
/// Problems are recorded in the document; a bad entry is left out.
pub(super) fn read_instances(section: &mut Section<'_, '_>) -> Vec<InstanceConfig> {
    let mut instances: Vec<InstanceConfig> = Vec::new();
    let mut seen: HashMap<String, usize> = HashMap::new();
    let tables = section.tables("instances", "[[inputs.pythond.instances]]", INSTANCE_KEYS);
    for (position, mut table) in tables.into_iter().enumerate() {
        let line = table.doc().line(table.span());
        let name = match table.get_located("name", instance_name) {
            Some((name, span)) => {
                if let Some(first) = seen.get(&name) {
                    table.invalid(
                        &span,
                        "name",
                        &format!(
                            "duplicate instance name {name:?} (first used by the instance at line {first})"
                        ),
                    );
                }
                name
            }
            None => position.to_string(),
        };
        seen.entry(name.clone()).or_insert(line);
        let instance = InstanceConfig {
            name,
            options: table.get("options", json_table).unwrap_or_default(),
            tags: table.get("tags", tree::string_map).unwrap_or_default(),
            interval: table.get("interval", values::duration),
            timeout: table.get("timeout", values::duration),
            enabled: table.get("enabled", tree::boolean).unwrap_or(true),
            line,
        };
        table.finish();
        instances.push(instance);
    }
    instances
}

/// `concurrency`: a whole number from 1 to [`MAX_CONCURRENCY`].
pub(super) fn concurrency(node: &Node) -> Result<u32, Problem> {
    count_up_to(node, MAX_CONCURRENCY, "threads")
}

/// A whole number of `what` from 1 to `max`.
pub(super) fn count_up_to<T>(node: &Node, max: T, what: &str) -> Result<T, Problem>
where
    T: Copy + std::fmt::Display + Into<i64> + TryFrom<i64>,
{
    match node.value {
        Value::Integer(n) if (1..=max.into()).contains(&n) => Ok(T::try_from(n).unwrap_or(max)),
        Value::Integer(n) => {
            Err(format!("{n} is out of range (expected a number of {what} from 1 to {max})").into())
        }
        _ => Err(Problem::expected(&format!("a number of {what}"), node)),
    }
}

/// `processes`: a whole number from 1 to [`MAX_PROCESSES`], more than one only for an
/// input with `instances` (a process runs whole instances). Default 1; problems are
/// recorded in the document.
pub(super) fn processes(section: &mut Section<'_, '_>, instances: &[InstanceConfig]) -> u16 {
    let Some((processes, span)) = section.get_located("processes", process_count) else {
        return 1;
    };
    if processes > 1 && instances.is_empty() {
        section.invalid(
            &span,
            "processes",
            &format!("processes needs instances: `processes = {processes}` spreads an input's instances over worker processes, and this input has none"),
        );
        return 1;
    }
    processes
}

fn process_count(node: &Node) -> Result<u16, Problem> {
    count_up_to(node, MAX_PROCESSES, "worker processes")
}

fn instance_name(node: &Node) -> Result<String, Problem> {
    let name = tree::non_empty_string(node)?;
    if name.chars().any(char::is_control) {
        return Err("must not contain control characters".to_owned().into());
    }
    if name.len() > MAX_INSTANCE_NAME {
        return Err(format!(
            "is {} bytes long; at most {MAX_INSTANCE_NAME} are allowed",
            name.len()
        )
        .into());
    }
    Ok(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_concurrency_grows_with_instances_within_bounds() {
        assert_eq!(default_concurrency(0), 4);
        assert_eq!(default_concurrency(1), 4);
        assert_eq!(default_concurrency(1_000), 20);
        assert_eq!(default_concurrency(10_000), 64);
    }
}
