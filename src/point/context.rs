//! The per-request settings a decoder needs: which category the points are, which
//! time unit they use, what "now" is, and which tags the agent adds.
//!
//! "Now" is passed in rather than read inside the decoder so that all points of one
//! report share one timestamp (as DataKit does per request) and tests are exact.

use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

use super::{Category, Precision};

/// Settings shared by all points of one report / one write request.
#[derive(Clone, Copy, Debug)]
pub struct DecodeContext<'a> {
    pub category: Category,
    /// `None` => JSON times are auto-detected (s/ms/µs/ns by magnitude) and
    /// line-protocol times are nanoseconds, as in InfluxDB and DataKit.
    pub precision: Option<Precision>,
    /// Nanoseconds since the epoch; used for a missing, null or 0 `time`.
    pub now_ns: i64,
    /// Tags added to every point unless the point already has that key (input tags,
    /// global tags, host). Applied before the limits are checked.
    pub extra_tags: &'a BTreeMap<String, String>,
}

impl<'a> DecodeContext<'a> {
    /// A context with auto-detected precision and `now_ns` read from the clock.
    pub fn new(category: Category, extra_tags: &'a BTreeMap<String, String>) -> Self {
        DecodeContext {
            category,
            precision: None,
            now_ns: now_ns(),
            extra_tags,
        }
    }
}

/// The wall clock in nanoseconds since the Unix epoch (0 if the clock is before 1970,
/// saturating in 2262).
pub fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_reads_the_clock_and_auto_detects() {
        let tags = BTreeMap::new();
        let before = now_ns();
        let ctx = DecodeContext::new(Category::Logging, &tags);
        let after = now_ns();
        assert!(before <= ctx.now_ns && ctx.now_ns <= after);
        // Sanity: after 2020-01-01.
        assert!(ctx.now_ns > 1_577_836_800_000_000_000);
        assert_eq!(ctx.precision, None);
        assert_eq!(ctx.category, Category::Logging);
    }
}
