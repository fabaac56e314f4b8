//! Keeping the log readable when the same thing happens again and again.
//!
//! [`RepeatedFailures`]: a plugin that fails every interval with the same exception
//! is logged (with its traceback) when the error first appears and whenever it
//! changes; identical repeats are only counted (and logged at debug by the caller),
//! and the first success reports how many failed runs it ends. [`SeenOnce`]: notes
//! such as "not a pythond input, ignored" are logged the first time an item is seen
//! rather than at every reload, and again only after it went away and came back.
//! Both are plain bookkeeping, free of I/O, so a supervisor or the agent can hold
//! one behind a lock (docs/OPERATIONS.md, "Logs").

use std::collections::{HashMap, HashSet};

/// What a failure is, as far as the log is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// A new error (or a changed one): log it in full. `after` same-error repeats of
    /// the previous error were not logged.
    New { after: u64 },
    /// The same error as last time, for the `count`-th time in a row (2 = the first
    /// repeat).
    Repeat { count: u64 },
}

/// The last error of each key (a plugin id) and how often it came in a row.
#[derive(Debug, Default)]
pub struct RepeatedFailures {
    last: HashMap<String, (String, u64)>,
}

impl RepeatedFailures {
    /// Records a failure of `key` with `error` (message and traceback).
    pub fn failed(&mut self, key: &str, error: &str) -> Failure {
        match self.last.get_mut(key) {
            Some((last, count)) if last == error => {
                *count += 1;
                Failure::Repeat { count: *count }
            }
            Some((last, count)) => {
                let after = count.saturating_sub(1);
                *last = error.to_string();
                *count = 1;
                Failure::New { after }
            }
            None => {
                self.last.insert(key.to_string(), (error.to_string(), 1));
                Failure::New { after: 0 }
            }
        }
    }

    /// Records a success of `key`; the number of failed runs in a row it ends, if any.
    pub fn succeeded(&mut self, key: &str) -> Option<u64> {
        self.last.remove(key).map(|(_, count)| count)
    }
}

/// Items already noted.
#[derive(Debug, Default)]
pub struct SeenOnce {
    seen: HashSet<String>,
}

impl SeenOnce {
    /// Of `current` (everything there is now), the items not noted before, in order.
    /// Items no longer present are forgotten, so they are noted again if they return.
    pub fn new_items<'a>(&mut self, current: &'a [String]) -> Vec<&'a String> {
        let fresh: Vec<&String> = current
            .iter()
            .filter(|item| !self.seen.contains(item.as_str()))
            .collect();
        self.seen = current.iter().cloned().collect();
        fresh
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_error_is_counted_a_changed_one_is_new() {
        let mut failures = RepeatedFailures::default();
        assert_eq!(failures.failed("p", "boom"), Failure::New { after: 0 });
        assert_eq!(failures.failed("p", "boom"), Failure::Repeat { count: 2 });
        assert_eq!(failures.failed("p", "boom"), Failure::Repeat { count: 3 });
        assert_eq!(failures.failed("other", "boom"), Failure::New { after: 0 });
        assert_eq!(failures.failed("p", "bang"), Failure::New { after: 2 });
        assert_eq!(failures.succeeded("p"), Some(1));
        assert_eq!(failures.succeeded("p"), None);
        assert_eq!(failures.failed("p", "bang"), Failure::New { after: 0 });
    }

    #[test]
    fn items_are_noted_once_until_they_go_away() {
        let mut seen = SeenOnce::default();
        let a = vec!["a".to_string(), "b".to_string()];
        assert_eq!(seen.new_items(&a), vec!["a", "b"]);
        assert!(seen.new_items(&a).is_empty());
        let only_b = vec!["b".to_string()];
        assert!(seen.new_items(&only_b).is_empty());
        assert_eq!(seen.new_items(&a), vec!["a"]);
    }
}
