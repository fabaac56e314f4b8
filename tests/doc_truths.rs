//! What the documentation states as a list or a rule, checked against the program:
//! POINTS.md names every reason label the agent can emit, and the same bad value gets
//! the same label on the worker pipe and on the HTTP write API.

mod common;

use std::collections::BTreeSet;

use common::http::{api_base, get, post};
use common::{wait_until, Home, DEADLINE};
use pythond::point::{FixReason, RejectReason};

const POINTS: &str = include_str!("../docs/POINTS.md");

/// The backquoted labels of the paragraph of POINTS.md that starts with `lead`.
fn documented(lead: &str) -> BTreeSet<String> {
    let section = POINTS
        .split("## Reason labels")
        .nth(1)
        .expect("POINTS.md has a Reason labels section");
    let paragraph = section
        .split("\n\n")
        .find(|p| p.trim_start().starts_with(lead))
        .unwrap_or_else(|| panic!("no paragraph starting {lead:?}"));
    paragraph
        .split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_string)
        .collect()
}

#[test]
fn points_md_lists_every_reason_label() {
    let fixes: BTreeSet<String> = FixReason::ALL
        .iter()
        .map(|r| r.as_str().to_string())
        .collect();
    assert_eq!(documented("Fixes:"), fixes);
    let rejections: BTreeSet<String> = RejectReason::ALL
        .iter()
        .map(|r| r.as_str().to_string())
        .collect();
    assert_eq!(documented("Rejections:"), rejections);
    assert!(rejections.contains("not_json_serializable"));
}

#[test]
fn a_nan_field_gets_the_same_reason_on_the_pipe_and_over_http() {
    let home = Home::new();
    home.write(
        "python.d/nan/nan.py",
        "from datakit_framework import DataKitFramework\n\n\
         class Nan(DataKitFramework):\n    name = \"nan\"\n    interval = 10\n\n\
         \x20   def run(self):\n        self.report({\"M\": [{\"measurement\": \"nan_m\", \"fields\": {\"v\": float(\"nan\")}}]})\n",
    );
    let (code, _, stderr) = home.check(&["python.d/nan"]);
    assert_ne!(code, 0, "{stderr}");
    assert!(
        stderr.contains("reason=\"invalid_field_value\""),
        "pipe: {stderr}"
    );

    // The same collector under transport = "http": its shim posts to the write API.
    home.input(
        "nan_http",
        &["nan"],
        "transport = \"http\"\ninterval = \"1h\"",
    );
    let agent = home.start();
    let base = api_base(&agent);
    let labelled = |input: &str| {
        get(&format!("{base}/metrics"), &[]).body.lines().any(|l| {
            l.starts_with("pythond_points_rejected_total")
                && l.contains("reason=\"invalid_field_value\"")
                && !l.ends_with(" 0")
                && (input.is_empty() || l.contains(input))
        })
    };
    assert!(
        wait_until(DEADLINE, || labelled("")),
        "http transport: no invalid_field_value rejection in /metrics:\n{}",
        agent.stderr()
    );
    assert!(
        !get(&format!("{base}/metrics"), &[])
            .body
            .lines()
            .any(|l| l.contains("not_json_serializable") && !l.ends_with(" 0")),
        "a NaN was counted as not_json_serializable"
    );
    let answer = post(&format!("{base}/v1/write/metric"), &[], b"nan_m v=NaN\n");
    assert!(answer.status >= 400, "{}: {}", answer.status, answer.body);
    assert!(
        wait_until(DEADLINE, || labelled("")),
        "HTTP: no invalid_field_value rejection in /metrics"
    );
}

const CONFIG: &str = include_str!("../docs/CONFIG.md");

/// The first ```toml block after `lead` in CONFIG.md.
fn toml_block_after(lead: &str) -> &'static str {
    CONFIG
        .split(lead)
        .nth(1)
        .and_then(|rest| rest.split("```toml\n").nth(1))
        .and_then(|block| block.split("```").next())
        .unwrap_or_else(|| panic!("CONFIG.md has no toml block after {lead:?}"))
}

/// The keys the config reader accepts in `table`, from its own unknown-key error.
fn known_keys(table_text: &str) -> BTreeSet<String> {
    let text = format!("{table_text}\nsurely_not_a_key = 1\n");
    let error = pythond::config::parse_main(&text, std::path::Path::new("probe.toml"))
        .expect_err("an unknown key is an error")
        .to_string();
    let list = error
        .split("expected one of: ")
        .nth(1)
        .and_then(|rest| rest.split(')').next())
        .unwrap_or_else(|| panic!("no key list in {error}"));
    list.split(", ").map(str::to_string).collect()
}

fn keys_of(table: &toml::Value) -> BTreeSet<String> {
    table
        .as_table()
        .map(|t| t.keys().cloned().collect())
        .unwrap_or_default()
}

#[test]
fn config_md_complete_example_parses_and_holds_every_key() {
    let example = toml_block_after("A complete example with every key:");
    pythond::config::parse_main(example, std::path::Path::new("/etc/pythond/pythond.toml"))
        .unwrap_or_else(|e| panic!("the complete example does not parse: {e}\n{example}"));
    let doc: toml::Value = toml::from_str(example).expect("toml");
    let missing = |what: &str, known: BTreeSet<String>, written: BTreeSet<String>| {
        let lacking: Vec<_> = known.difference(&written).collect();
        assert!(
            lacking.is_empty(),
            "the complete example's {what} lacks {lacking:?}"
        );
    };
    missing("[agent]", known_keys("[agent]"), keys_of(&doc["agent"]));
    missing("[http]", known_keys("[http]"), keys_of(&doc["http"]));
    missing(
        "[git_repos]",
        known_keys("[git_repos]"),
        keys_of(&doc["git_repos"]),
    );
    let repos = doc["git_repos"]["repo"]
        .as_array()
        .expect("[[git_repos.repo]]");
    missing(
        "[[git_repos.repo]]",
        known_keys("[[git_repos.repo]]\nurl = \"https://x/y.git\""),
        repos.iter().flat_map(keys_of).collect(),
    );
    let sinks = doc["sinks"].as_array().expect("[[sinks]]");
    for kind in ["stdout", "file", "datakit", "influxdb"] {
        let required = match kind {
            "file" => "\npath = \"p\"",
            "datakit" | "influxdb" => "\nurl = \"http://127.0.0.1:1\"",
            _ => "",
        };
        // `categories` is common to every type: shown once is enough.
        let mut written: BTreeSet<String> = sinks
            .iter()
            .flat_map(keys_of)
            .filter(|k| k == "categories")
            .collect();
        // datakit and influxdb share the network keys (one table in CONFIG.md).
        let network = ["datakit", "influxdb"];
        let same_family = |other: Option<&str>| {
            other == Some(kind)
                || (network.contains(&kind) && other.is_some_and(|o| network.contains(&o)))
        };
        for sink in sinks.iter().filter(|s| same_family(s["type"].as_str())) {
            written.extend(keys_of(sink));
        }
        missing(
            &format!("{kind} sinks"),
            known_keys(&format!("[[sinks]]\ntype = \"{kind}\"{required}")),
            written,
        );
    }
    assert!(
        !CONFIG.contains("http:// only"),
        "CONFIG.md still says network sinks are http:// only"
    );
}
