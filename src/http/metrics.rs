//! `GET /metrics`: every counter of the agent in Prometheus text format (0.0.4).
//!
//! [`render`] lays out the families of inputs, plugins, points, sinks, git sync and
//! the HTTP API itself (docs/HTTP.md, "/metrics"), each one call of the text writer
//! ([`PromWriter`]). Worker RSS is read from /proc at scrape time.

use std::collections::BTreeMap;
use std::sync::Mutex;

use super::process_metrics;
use super::prom_text::PromWriter;
use crate::stats::{InputState, StatsSnapshot};
use crate::worker::process::rss_bytes;

/// HTTP requests served, by route and status (the API's own health).
#[derive(Default)]
pub struct HttpStats {
    requests: Mutex<BTreeMap<(&'static str, u16), u64>>,
}

impl HttpStats {
    pub fn add(&self, route: &'static str, status: u16) {
        let mut map = self.requests.lock().unwrap_or_else(|p| p.into_inner());
        *map.entry((route, status)).or_default() += 1;
    }

    pub fn snapshot(&self) -> Vec<(&'static str, u16, u64)> {
        let map = self.requests.lock().unwrap_or_else(|p| p.into_inner());
        map.iter().map(|((r, s), n)| (*r, *s, *n)).collect()
    }
}

/// What `/metrics` reads of the stats: every input; an input's instances summed into
/// one entry per plugin unless it sets `instance_metrics` (docs/HTTP.md).
pub struct MetricsView;

impl crate::stats::Selection for MetricsView {
    fn sum_instances(&self, instance_metrics: bool) -> bool {
        !instance_metrics
    }
}

/// The whole exposition, of a snapshot taken with [`MetricsView`].
pub fn render(stats: &StatsSnapshot, http: &HttpStats) -> String {
    let mut w = PromWriter::default();
    w.gauge(
        "pythond_build_info",
        "Always 1; the labels say which pythond build is running.",
        [(vec![("version", env!("CARGO_PKG_VERSION"))], 1.0)],
    );
    process_metrics::write(&mut w);

    let inputs = &stats.inputs;
    w.gauge(
        "pythond_input_up",
        "1 while the input's worker is running, else 0.",
        inputs.iter().map(|i| {
            let up = matches!(i.state, InputState::Running);
            (vec![("input", i.name.as_str())], if up { 1.0 } else { 0.0 })
        }),
    );
    w.counter(
        "pythond_input_restarts_total",
        "Times the input's worker was restarted.",
        inputs
            .iter()
            .map(|i| (vec![("input", i.name.as_str())], i.restarts)),
    );
    w.counter(
        "pythond_input_bad_frames_total",
        "Lines on the worker's channel that were not valid frames (each is dropped).",
        inputs
            .iter()
            .map(|i| (vec![("input", i.name.as_str())], i.bad_frames)),
    );
    w.counter(
        "pythond_input_log_lines_suppressed_total",
        "Worker output lines and bad-frame errors not logged because of the rate limit.",
        inputs
            .iter()
            .map(|i| (vec![("input", i.name.as_str())], i.log_lines_suppressed)),
    );
    // An input of several processes (`processes = N`): their sum.
    let rss: Vec<(&str, u64)> = inputs
        .iter()
        .filter_map(|i| {
            let each: Vec<u64> = i.worker_pids().into_iter().filter_map(rss_bytes).collect();
            (!each.is_empty()).then(|| (i.name.as_str(), each.iter().sum()))
        })
        .collect();
    w.gauge(
        "pythond_worker_rss_bytes",
        "Resident memory of the input's worker processes.",
        rss.iter()
            .map(|(input, bytes)| (vec![("input", *input)], *bytes as f64)),
    );

    // Inputs with instances: one series per plugin, not per instance, unless the input
    // asks for `instance_metrics` (docs/HTTP.md): the snapshot ([`MetricsView`]) summed them.
    let plugins: Vec<(&str, &crate::stats::PluginSnapshot)> = inputs
        .iter()
        .flat_map(|i| i.plugins.iter().map(move |p| (i.name.as_str(), p)))
        .collect();
    let per_plugin = |f: fn(&crate::stats::PluginSnapshot) -> u64| {
        plugins
            .iter()
            .map(move |(input, p)| (vec![("input", *input), ("plugin", p.id.as_str())], f(p)))
    };
    w.counter(
        "pythond_plugin_runs_total",
        "Runs started.",
        per_plugin(|p| p.runs),
    );
    w.counter(
        "pythond_plugin_failures_total",
        "Runs that raised an exception.",
        per_plugin(|p| p.failures),
    );
    w.counter(
        "pythond_plugin_timeouts_total",
        "Runs that did not finish within the timeout.",
        per_plugin(|p| p.timeouts),
    );
    w.counter(
        "pythond_plugin_skipped_runs_total",
        "Runs skipped because the previous one was still going.",
        per_plugin(|p| p.skipped),
    );
    w.counter(
        "pythond_plugin_quarantines_total",
        "Times the plugin was quarantined after hanging repeatedly.",
        per_plugin(|p| p.quarantines),
    );
    w.gauge(
        "pythond_plugin_quarantined",
        "1 while the plugin is quarantined, else 0 (with instances: how many are).",
        plugins.iter().map(|(input, p)| {
            let q = matches!(p.state, crate::stats::PluginState::Quarantined);
            (
                vec![("input", *input), ("plugin", p.id.as_str())],
                p.quarantined_instances
                    .map_or(if q { 1.0 } else { 0.0 }, |n| n as f64),
            )
        }),
    );
    w.gauge(
        "pythond_plugin_last_success_timestamp_seconds",
        "When the plugin last finished a run without error (Unix time).",
        plugins.iter().filter_map(|(input, p)| {
            let ms = p.last_success_unix_ms?;
            Some((
                vec![("input", *input), ("plugin", p.id.as_str())],
                ms as f64 / 1000.0,
            ))
        }),
    );
    w.histogram(
        "pythond_plugin_run_duration_seconds",
        "How long finished runs took.",
        plugins.iter().map(|(input, p)| {
            (
                vec![("input", *input), ("plugin", p.id.as_str())],
                &p.run_seconds,
            )
        }),
    );
    w.histogram(
        "pythond_input_run_lateness_seconds",
        "How long after its due time a run started (inputs with instances).",
        inputs
            .iter()
            .filter(|i| i.lateness_seconds.count > 0)
            .map(|i| (vec![("input", i.name.as_str())], &i.lateness_seconds)),
    );
    w.counter(
        "pythond_plugin_points_total",
        "Points the plugin reported that were accepted, by category.",
        plugins.iter().flat_map(|(input, p)| {
            p.points.iter().map(move |(category, n)| {
                (
                    vec![
                        ("input", *input),
                        ("plugin", p.id.as_str()),
                        ("category", *category),
                    ],
                    *n,
                )
            })
        }),
    );

    w.counter(
        "pythond_points_accepted_total",
        "Points accepted (from workers and the HTTP API), by category.",
        stats
            .points
            .accepted
            .iter()
            .map(|(category, n)| (vec![("category", *category)], *n)),
    );
    w.counter(
        "pythond_points_fixed_total",
        "Points accepted after an automatic fix, by category and reason.",
        stats.points.fixed.iter().map(|r| {
            (
                vec![("category", r.category), ("reason", r.reason)],
                r.count,
            )
        }),
    );
    w.counter(
        "pythond_points_rejected_total",
        "Points rejected, by category and reason.",
        stats.points.rejected.iter().map(|r| {
            (
                vec![("category", r.category), ("reason", r.reason)],
                r.count,
            )
        }),
    );

    sink_families(&mut w, stats);
    git_families(&mut w, stats);

    let requests = http.snapshot();
    let statuses: Vec<String> = requests.iter().map(|(_, s, _)| s.to_string()).collect();
    w.counter(
        "pythond_http_requests_total",
        "HTTP API requests answered, by route and status.",
        requests
            .iter()
            .zip(&statuses)
            .map(|((route, _, n), status)| {
                (vec![("route", *route), ("status", status.as_str())], *n)
            }),
    );
    w.finish()
}

/// Per network sink: what waits in its disk buffer and what became of what it held.
fn sink_families(w: &mut PromWriter, stats: &StatsSnapshot) {
    use crate::stats::SinkSnapshot;
    let sinks = &stats.sinks;
    fn label(s: &SinkSnapshot) -> Vec<(&str, &str)> {
        vec![("sink", s.name.as_str()), ("type", s.kind.as_str())]
    }
    w.gauge(
        "pythond_sink_queued_points",
        "Points in the sink's disk buffer that the backend has not accepted yet.",
        sinks.iter().map(|s| (label(s), s.queued_points as f64)),
    );
    w.gauge(
        "pythond_sink_queued_bytes",
        "Bytes those queued points take in the disk buffer.",
        sinks.iter().map(|s| (label(s), s.queued_bytes as f64)),
    );
    w.gauge(
        "pythond_sink_oldest_queued_age_seconds",
        "How long the oldest queued point has waited (0 when the queue is empty).",
        sinks.iter().map(|s| {
            let age = s.oldest_queued_age_ms.unwrap_or(0) as f64 / 1000.0;
            (label(s), age)
        }),
    );
    for (name, help, value) in [
        (
            "pythond_sink_sent_points_total",
            "Points the backend accepted.",
            (|s: &SinkSnapshot| s.sent_points) as fn(&SinkSnapshot) -> u64,
        ),
        (
            "pythond_sink_retries_total",
            "Failed delivery attempts that were retried.",
            |s| s.retries,
        ),
        (
            "pythond_sink_dropped_points_total",
            "Points dropped, oldest first, because the disk buffer was full.",
            |s| s.dropped_points,
        ),
        (
            "pythond_sink_dead_lettered_points_total",
            "Points the backend refused for good, written to the dead-letter file.",
            |s| s.dead_lettered_points,
        ),
        (
            "pythond_sink_buffer_corrupt_points_total",
            "Points lost to damaged data in the disk buffer (docs/BUFFER.md).",
            |s| s.corrupt_points,
        ),
        (
            "pythond_sink_buffer_corrupt_bytes_total",
            "Bytes of damaged or torn data skipped in the disk buffer.",
            |s| s.corrupt_bytes,
        ),
        (
            "pythond_sink_buffer_foreign_points_total",
            "Points found in the disk buffer in another body format than the sink's, set aside unsent (docs/BUFFER.md).",
            |s| s.foreign_points,
        ),
        (
            "pythond_sink_skipped_points_total",
            "Points not sent because the sink's backend has no place for them (never buffered).",
            |s| s.skipped_points,
        ),
        (
            "pythond_sink_skipped_fields_total",
            "String fields left out of metric points the sink's backend cannot carry.",
            |s| s.skipped_fields,
        ),
    ] {
        w.counter(name, help, sinks.iter().map(|s| (label(s), value(s))));
    }
}

/// Per git repository: pulls and failures, when the last pull succeeded; and whether
/// and when the last configuration load succeeded.
fn git_families(w: &mut PromWriter, stats: &StatsSnapshot) {
    let repos = &stats.git_repos;
    w.counter(
        "pythond_git_pulls_total",
        "Successful pulls of the repository.",
        repos
            .iter()
            .map(|r| (vec![("repo", r.name.as_str())], r.pulls)),
    );
    w.counter(
        "pythond_git_pull_failures_total",
        "Failed pulls of the repository (the last good checkout keeps running).",
        repos
            .iter()
            .map(|r| (vec![("repo", r.name.as_str())], r.failures)),
    );
    w.gauge(
        "pythond_git_last_pull_timestamp_seconds",
        "When the last pull succeeded, in Unix seconds.",
        repos.iter().filter_map(|r| {
            let at = r.last_pull_unix_ms? as f64 / 1000.0;
            Some((vec![("repo", r.name.as_str())], at))
        }),
    );
    w.gauge(
        "pythond_config_last_reload_successful",
        "1 if the last configuration load (pythond.toml, conf.d, git repos) found no error, else 0.",
        [(vec![], if stats.last_reload_error.is_none() { 1.0 } else { 0.0 })],
    );
    w.gauge(
        "pythond_config_last_reload_success_timestamp_seconds",
        "When a configuration load last found no error, in Unix seconds.",
        stats
            .last_reload_success_unix_ms
            .map(|ms| (vec![], ms as f64 / 1000.0)),
    );
    w.gauge(
        "pythond_config_reload_errors",
        "Deprecated, use pythond_config_last_reload_successful: 1 while the last configuration reload found errors, else 0.",
        [(
            vec![],
            if stats.last_reload_error.is_some() {
                1.0
            } else {
                0.0
            },
        )],
    );
}
