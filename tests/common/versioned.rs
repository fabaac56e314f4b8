//! A collector that reports its worker's pid and a version number every second, and
//! the waits built on it: the reload and git tests tell a restarted input (new pid),
//! an untouched one (same pid) and a changed collector (new version) apart with them.

use super::{wait_until, Agent, DEADLINE};

/// A plugin reporting `measurement` every second with the worker's pid and `version`.
pub fn reporter(measurement: &str, version: u32) -> String {
    format!(
        r#"
import os
from datakit_framework import DataKitFramework

class Reporter(DataKitFramework):
    name = "reporter"
    interval = 1

    def run(self):
        self.report({{"M": [{{"measurement": {measurement:?}, "tags": {{}}, "fields": {{"pid": os.getpid(), "version": {version}}}}}]}})
"#
    )
}

/// The pid of the worker that sent the last point of `measurement`.
pub fn last_pid(agent: &Agent, measurement: &str) -> Option<i64> {
    agent
        .points_of(measurement)
        .last()
        .and_then(|p| p["fields"]["pid"].as_i64())
}

/// Waits for a point of `measurement` with `version`; returns its worker pid.
pub fn wait_version(agent: &Agent, measurement: &str, version: i64) -> i64 {
    let mut pid = None;
    let seen = wait_until(DEADLINE, || {
        pid = agent
            .points_of(measurement)
            .iter()
            .rev()
            .find(|p| p["fields"]["version"].as_i64() == Some(version))
            .and_then(|p| p["fields"]["pid"].as_i64());
        pid.is_some()
    });
    assert!(
        seen,
        "no {measurement} point with version {version}; log:\n{}",
        agent.stderr()
    );
    pid.unwrap_or_default()
}

/// Waits until `measurement` gets a point newer than the ones seen now, and returns
/// the pid it carries.
pub fn next_pid(agent: &Agent, measurement: &str) -> i64 {
    let before = agent.points_of(measurement).len();
    assert!(
        wait_until(DEADLINE, || agent.points_of(measurement).len() > before),
        "{measurement} stopped reporting; log:\n{}",
        agent.stderr()
    );
    last_pid(agent, measurement).unwrap_or_default()
}
