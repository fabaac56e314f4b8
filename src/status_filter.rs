//! Status that stays readable at 10,000 instances: the filters `--input`, `--plugin`,
//! `--all` of `pythond status`, which the CLI sends as the query parameters of
//! `GET /v1/status` (docs/HTTP.md).
//!
//! The agent applies them while it takes the stats snapshot ([`crate::stats::Selection`]),
//! so what is not shown is never copied: an input's instance entries
//! (`<plugin id>@<instance>`) are listed only when something is wrong with them
//! (failing or quarantined), unless `all` is asked for, and every input with instances
//! carries an `instances_summary` of all of them (how many, failing, quarantined,
//! disabled, the p99 of its lateness). Entries of inputs without instances are always
//! listed, as before.

use crate::stats::{PluginStats, Selection};

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

impl Selection for StatusFilter {
    fn input(&self, name: &str) -> bool {
        self.input_matches(name)
    }

    fn entry(&self, id: &str, stats: &PluginStats) -> bool {
        let instance = id.contains('@');
        self.plugin_matches(id)
            && (!instance || self.all || self.plugin.as_deref() == Some(id) || stats.has_problem())
    }
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
    use crate::stats::{PluginState, Stats};
    use std::time::Duration;

    /// Input `probes` with instances a (fine), b (failing), c (quarantined), d
    /// (disabled) of `p.Probe` and a of `q.Other`; input `plain` without instances, and
    /// `plain/m.Iso`, a worker of its own.
    fn stats() -> std::sync::Arc<Stats> {
        let stats = Stats::new();
        let probes = stats.input("probes");
        for key in [
            "p.Probe@a",
            "p.Probe@b",
            "p.Probe@c",
            "p.Probe@d",
            "q.Other@a",
        ] {
            probes
                .plugin(key)
                .run_finished(Duration::from_millis(1), None);
        }
        probes
            .plugin("p.Probe@b")
            .run_finished(Duration::from_millis(1), Some("boom".into()));
        probes.plugin("p.Probe@c").timed_out("hung".into());
        probes.plugin("p.Probe@c").quarantined();
        probes.plugin("p.Probe@d").set_state(PluginState::Disabled);
        for i in 0..100 {
            let late = if i < 90 { 1 } else { 40 };
            probes.observe_lateness(Duration::from_millis(late));
        }
        stats.input("plain").plugin("m.Plain").run_succeeded();
        stats.input("plain/m.Iso");
        stats
    }

    fn status(filter: &StatusFilter) -> serde_json::Value {
        serde_json::to_value(stats().snapshot_with(filter)).expect("serializes")
    }

    fn input<'a>(status: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
        status["inputs"]
            .as_array()
            .and_then(|inputs| inputs.iter().find(|i| i["name"] == name))
            .unwrap_or(&serde_json::Value::Null)
    }

    fn ids(status: &serde_json::Value, name: &str) -> Vec<String> {
        input(status, name)["plugins"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|p| p["id"].as_str().unwrap_or("").to_string())
            .collect()
    }

    #[test]
    fn by_default_only_instances_with_problems_are_listed_under_a_summary() {
        let s = status(&StatusFilter::default());
        assert_eq!(ids(&s, "probes"), ["p.Probe@b", "p.Probe@c"]);
        assert_eq!(
            ids(&s, "plain"),
            ["m.Plain"],
            "inputs without instances are unchanged"
        );
        assert_eq!(
            input(&s, "probes")["instances_summary"],
            serde_json::json!({"instances": 5, "failing": 2, "quarantined": 1, "disabled": 1, "lateness_p99_seconds": 0.05})
        );
        assert!(input(&s, "plain").get("instances_summary").is_none());
    }

    #[test]
    fn input_plugin_and_all_filters() {
        let s = status(&StatusFilter {
            input: Some("plain".into()),
            ..Default::default()
        });
        let names: Vec<&str> = s["inputs"]
            .as_array()
            .expect("inputs")
            .iter()
            .map(|i| i["name"].as_str().unwrap_or(""))
            .collect();
        assert_eq!(names, ["plain", "plain/m.Iso"]);

        let s = status(&StatusFilter {
            plugin: Some("p.Probe".into()),
            all: true,
            ..Default::default()
        });
        assert_eq!(
            ids(&s, "probes"),
            ["p.Probe@a", "p.Probe@b", "p.Probe@c", "p.Probe@d"]
        );
        assert!(ids(&s, "plain").is_empty());

        let s = status(&StatusFilter {
            plugin: Some("p.Probe@a".into()),
            ..Default::default()
        });
        assert_eq!(
            ids(&s, "probes"),
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
