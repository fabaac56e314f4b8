//! Collector failures as keyevents (`emit_events = true` on an input).
//!
//! The supervisor knows when a plugin's run raised, timed out, got the plugin
//! quarantined, and when it works again; Zenoss turns such collector failures into
//! events next to the data (zenpython's `onError` → event), so that they reach the same
//! backends and alerting. [`FailureEvents`] decides *when* to emit — on a change of
//! state, not on every failed run, so a plugin failing every second makes one event,
//! not a flood — and [`keyevent`] shapes the point like DataKit's system events (the
//! shim's `feed_system_event`): measurement `measurement`, `df_source = "system"`,
//! `df_status`, a stable `df_event_id` per input, plugin and kind, `df_title`,
//! `df_message`. The points then go through [`crate::ingest::Ingest`] like any report,
//! so they get the same rules, tags and sinks.

use std::collections::{BTreeMap, HashMap};

use crate::worker::protocol::Report;

/// What happened to a plugin.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FailureKind {
    /// `run()` raised (or the worker refused the run).
    Exception,
    /// A run did not finish within its timeout.
    Timeout,
    /// The plugin hung too often in a row and is not run for a while.
    Quarantine,
}

impl FailureKind {
    fn as_str(self) -> &'static str {
        match self {
            FailureKind::Exception => "exception",
            FailureKind::Timeout => "timeout",
            FailureKind::Quarantine => "quarantine",
        }
    }

    fn status(self) -> &'static str {
        match self {
            FailureKind::Exception | FailureKind::Quarantine => "error",
            FailureKind::Timeout => "warning",
        }
    }
}

/// The stable `df_event_id` of a plugin's failures of one kind; its recovery event
/// reuses it, so a backend sees the same event go from error to ok.
pub fn event_id(input: &str, plugin: &str, kind: FailureKind) -> String {
    format!("pythond/{input}/{plugin}/{}", kind.as_str())
}

/// One keyevent point, as the shim's `feed_system_event` shapes it.
pub fn keyevent(
    input: &str,
    plugin: &str,
    kind: FailureKind,
    recovered: bool,
    message: &str,
) -> serde_json::Value {
    let (status, title) = if recovered {
        (
            "ok",
            format!("collector {plugin} of input {input} recovered"),
        )
    } else {
        let what = match kind {
            FailureKind::Exception => "failed",
            FailureKind::Timeout => "timed out",
            FailureKind::Quarantine => "quarantined",
        };
        (
            kind.status(),
            format!("collector {plugin} of input {input} {what}"),
        )
    };
    serde_json::json!({
        "measurement": "measurement",
        "tags": {"pythond_input": input, "pythond_plugin": plugin},
        "fields": {
            "df_date_range": 10,
            "df_source": "system",
            "df_status": status,
            "df_event_id": event_id(input, plugin, kind),
            "df_title": title,
            "df_message": message,
            "df_sub_status": kind.as_str(),
        },
    })
}

/// A report carrying `points` as keyevents, for [`crate::ingest::Ingest::report`].
pub fn report(plugin: &str, points: Vec<serde_json::Value>) -> Report {
    Report {
        plugin: Some(plugin.to_string()),
        input: None,
        precision: None,
        ignore_global_tags: serde_json::Value::Null,
        data: BTreeMap::from([("E".to_string(), points)]),
        rejected: Vec::new(),
    }
}

/// Which plugins are failing, and how: decides which transitions become events.
#[derive(Debug, Default)]
pub struct FailureEvents {
    /// Per plugin, the kinds of failure reported and not yet recovered, in order.
    failing: HashMap<String, Vec<FailureKind>>,
}

impl FailureEvents {
    /// A failure of `plugin`: `true` if it is news (no open failure of this kind) and
    /// should be emitted.
    pub fn failed(&mut self, plugin: &str, kind: FailureKind) -> bool {
        let open = self.failing.entry(plugin.to_string()).or_default();
        if open.contains(&kind) {
            return false;
        }
        open.push(kind);
        true
    }

    /// A successful run of `plugin`: the kinds of failure it recovered from (each gets
    /// an `ok` event under its own id).
    pub fn succeeded(&mut self, plugin: &str) -> Vec<FailureKind> {
        self.failing.remove(plugin).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_changes_of_state_are_news() {
        let mut events = FailureEvents::default();
        assert!(events.failed("p", FailureKind::Exception));
        assert!(!events.failed("p", FailureKind::Exception));
        assert!(events.failed("p", FailureKind::Timeout));
        assert!(!events.failed("p", FailureKind::Exception));
        assert_eq!(
            events.succeeded("p"),
            [FailureKind::Exception, FailureKind::Timeout]
        );
        assert!(events.succeeded("p").is_empty());
        assert!(events.failed("p", FailureKind::Exception));
    }

    #[test]
    fn recovery_reuses_the_failure_event_id() {
        let failed = keyevent("in", "m.C", FailureKind::Exception, false, "boom");
        let ok = keyevent("in", "m.C", FailureKind::Exception, true, "");
        assert_eq!(failed["fields"]["df_event_id"], ok["fields"]["df_event_id"]);
        assert_eq!(failed["fields"]["df_status"], "error");
        assert_eq!(ok["fields"]["df_status"], "ok");
        assert_eq!(failed["fields"]["df_source"], "system");
    }
}
