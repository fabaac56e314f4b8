//! An input's settings for the collector kinds other than DataKit's: syslog-ng
//! fetchers (`time_reopen`, `fetch_no_data_delay`) and zenpython plugins
//! (`zenpython_devices`). Kept apart from [`crate::config::InputConfig`]'s own keys so
//! the input struct gains one field, and handed to the worker as one JSON document
//! (`$PYTHOND_KINDS`, read by `python/pythond_kinds.py`). docs/CONFIG.md documents the
//! keys, docs/MIGRATING.md what they mean to a driver or plugin.

use std::hash::{Hash, Hasher};
use std::path::Path;
use std::time::Duration;

/// Settings of the non-DataKit collector kinds of one input.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KindSettings {
    /// How long a syslog-ng fetcher waits before `open()` again after a failed open,
    /// `FETCH_NOT_CONNECTED` or `FETCH_ERROR`.
    ///
    /// Key `time_reopen`, optional duration, default 1 s (syslog-ng's default).
    pub time_reopen: Option<Duration>,
    /// How long a syslog-ng fetcher waits after `FETCH_NO_DATA` before fetching again.
    ///
    /// Key `fetch_no_data_delay`, optional duration, default `time_reopen`.
    pub fetch_no_data_delay: Option<Duration>,
    /// One table per device a zenpython plugin collects for (`id`, `manageIp`,
    /// `params`, `cycletime`, ...; any other key is a `proxy_attributes` value).
    ///
    /// Key `zenpython_devices`, optional array of tables (`[[inputs.pythond.zenpython_devices]]`).
    pub zenpython_devices: Vec<serde_json::Map<String, serde_json::Value>>,
}

impl Hash for KindSettings {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.time_reopen.hash(state);
        self.fetch_no_data_delay.hash(state);
        // JSON values have no `Hash`; their canonical text (maps are sorted) does.
        serde_json::to_string(&self.zenpython_devices)
            .unwrap_or_default()
            .hash(state);
    }
}

impl KindSettings {
    /// The `$PYTHOND_KINDS` document for a worker whose collectors keep their durable
    /// state (`syslogng.Persist`) under `state_dir`; `once` is `pythond check`'s
    /// single bounded pass.
    pub fn worker_json(&self, state_dir: &Path, once: bool) -> serde_json::Value {
        let seconds = |d: Option<Duration>| d.map(|d| d.as_secs_f64());
        serde_json::json!({
            "time_reopen": seconds(self.time_reopen).unwrap_or(1.0),
            "fetch_no_data_delay": seconds(self.fetch_no_data_delay),
            "zenpython_devices": (!self.zenpython_devices.is_empty()).then_some(&self.zenpython_devices),
            "state_dir": state_dir.display().to_string(),
            "once": once,
        })
    }
}
