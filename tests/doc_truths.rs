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

    let agent = home.start();
    let base = api_base(&agent);
    let answer = post(&format!("{base}/v1/write/metric"), &[], b"nan_m v=NaN\n");
    assert!(answer.status >= 400, "{}: {}", answer.status, answer.body);
    assert!(
        wait_until(DEADLINE, || {
            get(&format!("{base}/metrics"), &[]).body.lines().any(|l| {
                l.starts_with("pythond_points_rejected_total")
                    && l.contains("reason=\"invalid_field_value\"")
            })
        }),
        "HTTP: no invalid_field_value rejection in /metrics"
    );
}
