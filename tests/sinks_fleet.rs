//! A small fleet: several agents with distinct host names write through vmauth into
//! one VictoriaMetrics with `prometheus_remote_write`; VictoriaMetrics goes away
//! while every agent keeps accepting points, then comes back. Every point of every
//! agent must arrive exactly once (docs/BENCHMARKS.md has the large version,
//! bench/fleet.py).

mod common;

use std::collections::BTreeMap;

use common::backends::{VictoriaMetrics, VmTool};
use common::{wait_until, Agent, Home, DEADLINE};

const AGENTS: usize = 4;
const PER_PHASE: usize = 200;

/// `PER_PHASE` points of this agent's phase (0: before, 1: during, 2: after the
/// outage), as line protocol with distinct timestamps.
fn body(phase: usize, start_ms: i64) -> String {
    (0..PER_PHASE)
        .map(|i| {
            let n = phase * PER_PHASE + i;
            format!(
                "fleet,part={} v={n}i {}\n",
                n % 3,
                (start_ms + n as i64) * 1_000_000
            )
        })
        .collect()
}

fn write(agent: &Agent, body: &str) {
    let url = format!(
        "{}/v1/write/metric?precision=ns",
        common::http::api_base(agent)
    );
    let answer = common::http::post(&url, &[], body.as_bytes());
    assert_eq!(answer.status, 200, "{}", answer.body);
}

/// `fleet_v` values per host.
fn per_host(vm: &VictoriaMetrics) -> BTreeMap<String, Vec<i64>> {
    let mut hosts: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    for sample in vm.export("fleet_v") {
        hosts
            .entry(sample.label("host").unwrap_or_default().to_string())
            .or_default()
            .push(sample.value as i64);
    }
    for values in hosts.values_mut() {
        values.sort_unstable();
    }
    hosts
}

#[test]
fn a_fleet_behind_vmauth_loses_and_repeats_nothing_across_a_backend_outage() {
    let scratch = tempfile::tempdir().expect("tempdir");
    let mut vm = VictoriaMetrics::start(scratch.path());
    let vmauth = VmTool::vmauth(
        scratch.path(),
        &format!(
            "users:\n- bearer_token: \"fleet-token\"\n  url_prefix: \"{}/\"\n",
            vm.url()
        ),
    );
    let start_ms = common::now_ns() / 1_000_000 - 3_600_000;
    let homes: Vec<Home> = (0..AGENTS)
        .map(|i| {
            let home = Home::new();
            home.write(
                "pythond.toml",
                &format!(
                    "[agent]\nhostname = \"fleet-{i:02}\"\n\n[global_tags]\nfleet = \"test\"\n\n[[sinks]]\ntype = \"prometheus_remote_write\"\nname = \"vm\"\nurl = \"{}/api/v1/write\"\nbearer_token_env = \"FLEET_TOKEN\"\nflush_interval = \"100ms\"\nretry_max_interval = \"1s\"\n",
                    vmauth.url()
                ),
            );
            home
        })
        .collect();
    let agents: Vec<Agent> = homes
        .iter()
        .map(|home| {
            let mut command = common::pythond();
            command
                .arg("run")
                .arg("--config")
                .arg(home.path().join("pythond.toml"))
                .env("FLEET_TOKEN", "fleet-token")
                .current_dir(home.path());
            Agent::spawn(command, home.path().join("points.ndjson"), &home.marker)
        })
        .collect();
    for agent in &agents {
        write(agent, &body(0, start_ms));
    }
    let first: Vec<i64> = (0..PER_PHASE as i64).collect();
    assert!(
        wait_until(DEADLINE, || {
            let hosts = per_host(&vm);
            hosts.len() == AGENTS && hosts.values().all(|v| *v == first)
        }),
        "before the outage: {:?}",
        per_host(&vm)
            .iter()
            .map(|(h, v)| (h.clone(), v.len()))
            .collect::<Vec<_>>()
    );

    vm.stop();
    for agent in &agents {
        write(agent, &body(1, start_ms));
    }
    // vmauth answers 502 while its backend is gone: every agent retries and keeps
    // the points in its buffer.
    for agent in &agents {
        agent.expect_log("backend unavailable");
    }
    for agent in &agents {
        write(agent, &body(2, start_ms));
    }
    vm.restart();

    let all: Vec<i64> = (0..3 * PER_PHASE as i64).collect();
    let mut hosts = BTreeMap::new();
    let complete = wait_until(DEADLINE, || {
        hosts = per_host(&vm);
        hosts.len() == AGENTS && hosts.values().all(|v| v.len() >= all.len())
    });
    assert!(
        complete,
        "after the outage: {:?}",
        hosts
            .iter()
            .map(|(h, v): (&String, &Vec<i64>)| (h.clone(), v.len()))
            .collect::<Vec<_>>()
    );
    let expected_hosts: Vec<String> = (0..AGENTS).map(|i| format!("fleet-{i:02}")).collect();
    assert_eq!(hosts.keys().cloned().collect::<Vec<_>>(), expected_hosts);
    for (host, values) in &hosts {
        // Each value once: nothing lost, nothing sent twice.
        assert_eq!(values, &all, "{host}");
    }
}
