//! What `pythond top` shows, computed from successive `GET /v1/status` documents:
//! per plugin the runs and points per second since the previous document, its
//! errors, its lateness when the agent reports one, and a history of points per
//! second for the sparklines; per sink its queue depth and send rate. Pure (no
//! terminal), so the arithmetic is tested on its own.

use std::collections::{HashMap, VecDeque};
use std::time::Instant;

use serde_json::Value;

/// Rates kept per row for its sparkline (one per refresh).
pub const HISTORY: usize = 60;

/// One plugin of one input.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PluginRow {
    pub input: String,
    pub plugin: String,
    pub state: String,
    pub runs_per_s: f64,
    pub points_per_s: f64,
    /// Failures plus timeouts, since the input started.
    pub errors: u64,
    /// How late the input's runs started lately, when the agent reports it.
    pub lateness: Option<String>,
    pub last_error: Option<String>,
    /// Points per second at each refresh, oldest first.
    pub history: Vec<u64>,
}

/// One network sink.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SinkRow {
    pub name: String,
    pub kind: String,
    pub queued_points: u64,
    pub sent_per_s: f64,
    pub dropped: u64,
    pub last_error: Option<String>,
}

/// Counters of the previous document, by (input, plugin) or ("\0sink", sink).
type CountersByKey = HashMap<(String, String), Counters>;

#[derive(Clone, Copy, Default)]
struct Counters {
    runs: u64,
    points: u64,
    sent: u64,
    /// The input's lateness histogram (`lateness_seconds`): count and sum.
    late_runs: u64,
    late_seconds: f64,
}

/// The state of the view.
#[derive(Default)]
pub struct Top {
    pub version: String,
    pub uptime_seconds: u64,
    pub listen: String,
    pub plugins: Vec<PluginRow>,
    pub sinks: Vec<SinkRow>,
    /// Points accepted per second by the whole agent, oldest first.
    pub total_history: VecDeque<u64>,
    pub points_per_s: f64,
    /// Why the last refresh failed (the rows then show the last good document).
    pub error: Option<String>,
    pub reload_error: Option<String>,
    previous: Option<(Instant, CountersByKey, u64)>,
    histories: HashMap<(String, String), VecDeque<u64>>,
}

fn sum_points(points: &Value) -> u64 {
    points
        .as_object()
        .map(|m| m.values().filter_map(Value::as_u64).sum())
        .unwrap_or(0)
}

fn rate(now: u64, before: Option<u64>, seconds: f64) -> f64 {
    match before {
        Some(before) if seconds > 0.0 => now.saturating_sub(before) as f64 / seconds,
        _ => 0.0,
    }
}

fn push(history: &mut VecDeque<u64>, value: f64) {
    history.push_back(value.round() as u64);
    while history.len() > HISTORY {
        history.pop_front();
    }
}

impl Top {
    /// Takes a new status document fetched at `at`.
    pub fn update(&mut self, at: Instant, status: &Value) {
        self.error = None;
        self.version = status["version"].as_str().unwrap_or("-").to_string();
        self.uptime_seconds = status["uptime_seconds"].as_u64().unwrap_or(0);
        self.listen = status["http"]["listen"].as_str().unwrap_or("-").to_string();
        self.reload_error = status["last_reload_error"].as_str().map(str::to_string);
        let seconds = self
            .previous
            .as_ref()
            .map(|(then, _, _)| at.duration_since(*then).as_secs_f64())
            .unwrap_or(0.0);
        let before = self.previous.take();
        let mut counters = HashMap::new();
        let mut plugins = Vec::new();
        let empty = Vec::new();
        for input in status["inputs"].as_array().unwrap_or(&empty) {
            let input_name = input["name"].as_str().unwrap_or("-").to_string();
            let late_key = ("\0late".to_string(), input_name.clone());
            let late_now = Counters {
                late_runs: input["lateness_seconds"]["count"].as_u64().unwrap_or(0),
                late_seconds: input["lateness_seconds"]["sum"].as_f64().unwrap_or(0.0),
                ..Counters::default()
            };
            let late_then = before
                .as_ref()
                .and_then(|(_, c, _)| c.get(&late_key))
                .copied();
            let lateness = lateness(late_now, late_then);
            counters.insert(late_key, late_now);
            for plugin in input["plugins"].as_array().unwrap_or(&empty) {
                let id = plugin["id"].as_str().unwrap_or("-").to_string();
                let key = (input_name.clone(), id.clone());
                let now = Counters {
                    runs: plugin["runs"].as_u64().unwrap_or(0),
                    points: sum_points(&plugin["points"]),
                    ..Counters::default()
                };
                let then = before.as_ref().and_then(|(_, c, _)| c.get(&key)).copied();
                let points_per_s = rate(now.points, then.map(|c| c.points), seconds);
                let history = self.histories.entry(key.clone()).or_default();
                if before.is_some() {
                    push(history, points_per_s);
                }
                plugins.push(PluginRow {
                    input: input_name.clone(),
                    plugin: id,
                    state: plugin["state"].as_str().unwrap_or("-").to_string(),
                    runs_per_s: rate(now.runs, then.map(|c| c.runs), seconds),
                    points_per_s,
                    errors: plugin["failures"].as_u64().unwrap_or(0)
                        + plugin["timeouts"].as_u64().unwrap_or(0),
                    lateness: lateness.clone(),
                    last_error: plugin["last_error"].as_str().map(str::to_string),
                    history: history.iter().copied().collect(),
                });
                counters.insert(key, now);
            }
        }
        self.histories.retain(|key, _| counters.contains_key(key));
        let mut sinks = Vec::new();
        for sink in status["sinks"].as_array().unwrap_or(&empty) {
            let name = sink["name"].as_str().unwrap_or("-").to_string();
            let key = ("\0sink".to_string(), name.clone());
            let sent = sink["sent_points"].as_u64().unwrap_or(0);
            let then = before.as_ref().and_then(|(_, c, _)| c.get(&key)).copied();
            sinks.push(SinkRow {
                name,
                kind: sink["type"].as_str().unwrap_or("-").to_string(),
                queued_points: sink["queued_points"].as_u64().unwrap_or(0),
                sent_per_s: rate(sent, then.map(|c| c.sent), seconds),
                dropped: sink["dropped_points"].as_u64().unwrap_or(0),
                last_error: sink["last_error"].as_str().map(str::to_string),
            });
            counters.insert(
                key,
                Counters {
                    sent,
                    ..Counters::default()
                },
            );
        }
        let total = sum_points(&status["points"]["accepted"]);
        self.points_per_s = rate(total, before.as_ref().map(|(_, _, t)| *t), seconds);
        if before.is_some() {
            push(&mut self.total_history, self.points_per_s);
        }
        self.plugins = plugins;
        self.sinks = sinks;
        self.previous = Some((at, counters, total));
    }

    /// A refresh failed: keep the last rows, say why.
    pub fn fail(&mut self, error: String) {
        self.error = Some(error);
    }
}

/// How late the input's runs started on average since the previous document, from
/// its `lateness_seconds` histogram (inputs whose runs the worker schedules report
/// one); `None` without runs in between or without the histogram.
fn lateness(now: Counters, then: Option<Counters>) -> Option<String> {
    let then = then?;
    let runs = now
        .late_runs
        .checked_sub(then.late_runs)
        .filter(|n| *n > 0)?;
    let mean = (now.late_seconds - then.late_seconds).max(0.0) / runs as f64;
    Some(if mean >= 1.0 {
        format!("{mean:.1}s")
    } else {
        format!("{:.0}ms", mean * 1000.0)
    })
}

/// `values` as a one-line sparkline of `width` cells (the most recent ones).
pub fn spark(values: &[u64], width: usize) -> String {
    const BARS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];
    let shown = &values[values.len().saturating_sub(width)..];
    let max = shown.iter().copied().max().unwrap_or(0);
    shown
        .iter()
        .map(|v| match (*v * 7).checked_div(max) {
            Some(level) => BARS[level.min(7) as usize],
            None => BARS[0],
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::time::Duration;

    fn status(runs: u64, points: u64, sent: u64) -> Value {
        json!({
            "version": "1", "uptime_seconds": 5, "http": {"listen": "127.0.0.1:9529"},
            "inputs": [{"name": "a",
                "lateness_seconds": {"count": runs, "sum": runs as f64 * 0.75},
                "plugins": [{
                "id": "a.P", "state": "idle", "runs": runs, "failures": 1, "timeouts": 2,
                "points": {"metric": points, "logging": 0}, "last_error": "boom"
            }]}],
            "sinks": [{"name": "vm", "type": "influxdb", "queued_points": 7, "sent_points": sent}],
            "points": {"accepted": {"metric": points}}
        })
    }

    #[test]
    fn rates_come_from_the_difference_between_two_documents() {
        let mut top = Top::default();
        let t0 = Instant::now();
        top.update(t0, &status(10, 100, 50));
        assert_eq!(
            top.plugins[0].points_per_s, 0.0,
            "no rate from one document"
        );
        top.update(t0 + Duration::from_secs(2), &status(14, 140, 90));
        let row = &top.plugins[0];
        assert_eq!(row.runs_per_s, 2.0);
        assert_eq!(row.points_per_s, 20.0);
        assert_eq!(row.errors, 3);
        assert_eq!(row.lateness.as_deref(), Some("750ms"));
        assert_eq!(row.history, vec![20]);
        assert_eq!(top.sinks[0].sent_per_s, 20.0);
        assert_eq!(top.sinks[0].queued_points, 7);
        assert_eq!(top.points_per_s, 20.0);
    }

    #[test]
    fn sparklines_scale_to_their_largest_value() {
        assert_eq!(spark(&[0, 7, 14], 10), "▁▄█");
        assert_eq!(spark(&[5, 5, 0, 0], 2), "▁▁");
        assert_eq!(spark(&[], 4), "");
    }
}
