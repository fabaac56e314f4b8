//! The agent's own `process_*` metrics, by the Prometheus client conventions
//! (docs/HTTP.md): CPU seconds, resident and virtual memory, open and maximum file
//! descriptors and start time, all read from `/proc/self` at scrape time so they cost
//! nothing between scrapes. A value /proc cannot give (another OS, a restricted
//! /proc) is left out rather than reported as 0.

use super::prom_text::PromWriter;
use crate::worker::process::rss_bytes;

/// Clock ticks per second of `/proc/<pid>/stat` times.
fn ticks_per_second() -> Option<f64> {
    // SAFETY: sysconf has no memory-safety preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    (ticks > 0).then_some(ticks as f64)
}

/// `/proc/self/stat` fields after the command name, so field 3 (state) is index 0.
fn stat_fields() -> Option<Vec<String>> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let (_, rest) = stat.rsplit_once(')')?;
    Some(rest.split_whitespace().map(str::to_string).collect())
}

/// Field `n` (1-based, as proc(5) numbers them) of `/proc/self/stat`.
fn stat_field(fields: &[String], n: usize) -> Option<f64> {
    fields.get(n.checked_sub(3)?)?.parse().ok()
}

/// Boot time in Unix seconds (`btime` of /proc/stat).
fn boot_time() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    stat.lines()
        .find_map(|l| l.strip_prefix("btime "))?
        .trim()
        .parse()
        .ok()
}

/// The soft limit on open files (`Max open files` of /proc/self/limits).
fn max_fds() -> Option<f64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

/// Writes the `process_*` families of the agent process itself.
pub fn write(w: &mut PromWriter) {
    let fields = stat_fields().unwrap_or_default();
    let ticks = ticks_per_second();
    let gauge = |w: &mut PromWriter, name: &str, help: &str, value: Option<f64>| {
        if let Some(value) = value {
            w.gauge(name, help, [(vec![], value)]);
        }
    };
    if let (Some(user), Some(system), Some(ticks)) =
        (stat_field(&fields, 14), stat_field(&fields, 15), ticks)
    {
        w.family(
            "process_cpu_seconds_total",
            "counter",
            "Total user and system CPU time spent in seconds.",
        );
        w.sample("process_cpu_seconds_total", &[], (user + system) / ticks);
    }
    gauge(
        w,
        "process_resident_memory_bytes",
        "Resident memory size in bytes.",
        rss_bytes(std::process::id()).map(|b| b as f64),
    );
    gauge(
        w,
        "process_virtual_memory_bytes",
        "Virtual memory size in bytes.",
        stat_field(&fields, 23),
    );
    gauge(
        w,
        "process_open_fds",
        "Number of open file descriptors.",
        std::fs::read_dir("/proc/self/fd")
            .ok()
            .map(|entries| entries.count() as f64),
    );
    gauge(
        w,
        "process_max_fds",
        "Maximum number of open file descriptors.",
        max_fds(),
    );
    let start = match (stat_field(&fields, 22), ticks, boot_time()) {
        (Some(since_boot), Some(ticks), Some(boot)) => Some(boot + since_boot / ticks),
        _ => None,
    };
    gauge(
        w,
        "process_start_time_seconds",
        "Start time of the process since unix epoch in seconds.",
        start,
    );
}
