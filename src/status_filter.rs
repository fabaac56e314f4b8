//! Status that stays readable at 10,000 instances: per-input instance summaries and
//! the filters `--input`, `--plugin`, `--all` of `pythond status` (and the same query
//! parameters of `GET /v1/status`, docs/HTTP.md).
//!
//! Works on the status JSON itself, so the agent (serving `/v1/status`) and the CLI
//! (rendering it) apply the very same rules: an input with instances gets an
//! `instances_summary` (how many instances, failing, quarantined, disabled, and the
//! p99 of its lateness), and its instance entries (`<plugin id>@<instance>`) are listed
//! only when something is wrong with them, unless `all` is asked for. Entries of
//! inputs without instances are always listed, as before.

use serde_json::{json, Value};

/// Which inputs and plugins to show.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StatusFilter {
    /// Only this input (and its `isolation = "plugin"` workers `<input>/<plugin>`).
    pub input: Option<String>,
    /// Only this plugin id, or this one instance key `<plugin id>@<instance>`.
    pub plugin: Option<String>,
    /// List every instance, not only those with problems.
    pub all: bool,
}

impl StatusFilter {
    /// Reads `input`, `plugin` and `all` from URL query pairs (already decoded).
    pub fn from_pairs<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        let mut filter = Self::default();
        for (key, value) in pairs {
            match key {
                "input" if !value.is_empty() => filter.input = Some(value.to_string()),
                "plugin" if !value.is_empty() => filter.plugin = Some(value.to_string()),
                "all" => filter.all = matches!(value, "" | "1" | "true" | "yes"),
                _ => {}
            }
        }
        filter
    }

    /// The query string for `GET /v1/status` (empty, or starting with `?`).
    pub fn query(&self) -> String {
        let mut parts = Vec::new();
        if let Some(input) = &self.input {
            parts.push(format!("input={}", percent_encode(input)));
        }
        if let Some(plugin) = &self.plugin {
            parts.push(format!("plugin={}", percent_encode(plugin)));
        }
        if self.all {
            parts.push("all=true".to_string());
        }
        if parts.is_empty() {
            String::new()
        } else {
            format!("?{}", parts.join("&"))
        }
    }

    fn input_matches(&self, name: &str) -> bool {
        match &self.input {
            None => true,
            Some(wanted) => {
                name == wanted
                    || name
                        .strip_prefix(wanted.as_str())
                        .is_some_and(|rest| rest.starts_with('/'))
            }
        }
    }

    fn plugin_matches(&self, id: &str) -> bool {
        match &self.plugin {
            None => true,
            Some(wanted) => id == wanted || plugin_of(id) == wanted,
        }
    }
}

/// The plugin id of a status entry: the part before `@` of an instance key.
fn plugin_of(id: &str) -> &str {
    id.split_once('@').map_or(id, |(plugin, _)| plugin)
}

fn is_instance(entry: &Value) -> bool {
    entry["id"].as_str().is_some_and(|id| id.contains('@'))
}

fn has_problem(entry: &Value) -> bool {
    entry["failing"].as_bool().unwrap_or(false) || entry["state"] == "quarantined"
}

/// Adds instance summaries and applies `filter` to a `/v1/status` document.
pub fn apply(status: &mut Value, filter: &StatusFilter) {
    let Some(inputs) = status.get_mut("inputs").and_then(Value::as_array_mut) else {
        return;
    };
    inputs.retain(|input| filter.input_matches(input["name"].as_str().unwrap_or("")));
    for input in inputs {
        let p99 = lateness_quantile(&input["lateness_seconds"], 0.99);
        let Some(plugins) = input.get_mut("plugins").and_then(Value::as_array_mut) else {
            continue;
        };
        let instances: Vec<&Value> = plugins.iter().filter(|p| is_instance(p)).collect();
        let summary = (!instances.is_empty()).then(|| {
            let count = |f: &dyn Fn(&Value) -> bool| instances.iter().filter(|p| f(p)).count();
            json!({
                "instances": instances.len(),
                "failing": count(&|p| p["failing"].as_bool().unwrap_or(false)),
                "quarantined": count(&|p| p["state"] == "quarantined"),
                "disabled": count(&|p| p["state"] == "disabled"),
                "lateness_p99_seconds": p99,
            })
        });
        plugins.retain(|p| {
            let id = p["id"].as_str().unwrap_or("");
            filter.plugin_matches(id)
                && (!is_instance(p)
                    || filter.all
                    || filter.plugin.as_deref() == Some(id)
                    || has_problem(p))
        });
        if let (Some(summary), Some(object)) = (summary, input.as_object_mut()) {
            object.insert("instances_summary".into(), summary);
        }
    }
}

/// The upper bound of the histogram bucket holding quantile `q` of a serialized
/// histogram (`{"buckets": [[bound, cumulative], ...], "count": n}`); `null` if empty,
/// `"+Inf"` above the last bound.
fn lateness_quantile(histogram: &Value, q: f64) -> Value {
    let count = histogram["count"].as_u64().unwrap_or(0);
    if count == 0 {
        return Value::Null;
    }
    let rank = (q * count as f64).ceil().max(1.0) as u64;
    histogram["buckets"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|bucket| bucket[1].as_u64().unwrap_or(0) >= rank)
        .map_or(json!("+Inf"), |bucket| bucket[0].clone())
}

fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status() -> Value {
        json!({"inputs": [
            {"name": "probes", "lateness_seconds": {"buckets": [[0.001, 90], [0.05, 99], [0.1, 100]], "count": 100},
             "plugins": [
                {"id": "p.Probe@a", "state": "idle", "failing": false},
                {"id": "p.Probe@b", "state": "idle", "failing": true},
                {"id": "p.Probe@c", "state": "quarantined", "failing": true},
                {"id": "p.Probe@d", "state": "disabled", "failing": false},
                {"id": "q.Other@a", "state": "idle", "failing": false}]},
            {"name": "plain", "lateness_seconds": {"buckets": [], "count": 0},
             "plugins": [{"id": "m.Plain", "state": "idle", "failing": false}]},
            {"name": "plain/m.Iso", "plugins": []}
        ]})
    }

    fn ids(status: &Value, input: usize) -> Vec<String> {
        status["inputs"][input]["plugins"]
            .as_array()
            .map(|ps| {
                ps.iter()
                    .map(|p| p["id"].as_str().unwrap_or("").to_string())
                    .collect()
            })
            .unwrap_or_default()
    }

    #[test]
    fn by_default_only_instances_with_problems_are_listed_under_a_summary() {
        let mut s = status();
        apply(&mut s, &StatusFilter::default());
        assert_eq!(ids(&s, 0), ["p.Probe@b", "p.Probe@c"]);
        assert_eq!(
            ids(&s, 1),
            ["m.Plain"],
            "inputs without instances are unchanged"
        );
        assert_eq!(
            s["inputs"][0]["instances_summary"],
            json!({"instances": 5, "failing": 2, "quarantined": 1, "disabled": 1, "lateness_p99_seconds": 0.05})
        );
        assert!(s["inputs"][1].get("instances_summary").is_none());
    }

    #[test]
    fn input_plugin_and_all_filters() {
        let mut s = status();
        apply(
            &mut s,
            &StatusFilter {
                input: Some("plain".into()),
                ..Default::default()
            },
        );
        let names: Vec<&str> = s["inputs"]
            .as_array()
            .expect("inputs")
            .iter()
            .map(|i| i["name"].as_str().unwrap_or(""))
            .collect();
        assert_eq!(names, ["plain", "plain/m.Iso"]);

        let mut s = status();
        apply(
            &mut s,
            &StatusFilter {
                plugin: Some("p.Probe".into()),
                all: true,
                ..Default::default()
            },
        );
        assert_eq!(
            ids(&s, 0),
            ["p.Probe@a", "p.Probe@b", "p.Probe@c", "p.Probe@d"]
        );
        assert!(ids(&s, 1).is_empty());

        let mut s = status();
        apply(
            &mut s,
            &StatusFilter {
                plugin: Some("p.Probe@a".into()),
                ..Default::default()
            },
        );
        assert_eq!(
            ids(&s, 0),
            ["p.Probe@a"],
            "one instance asked for by its key is shown"
        );
    }

    #[test]
    fn query_round_trips() {
        let filter = StatusFilter {
            input: Some("a b".into()),
            plugin: Some("p.P@x".into()),
            all: true,
        };
        assert_eq!(filter.query(), "?input=a%20b&plugin=p.P%40x&all=true");
        assert_eq!(
            StatusFilter::from_pairs([("input", "a b"), ("plugin", "p.P@x"), ("all", "true")]),
            filter
        );
        assert_eq!(StatusFilter::default().query(), "");
    }
}
