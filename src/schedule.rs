//! When each plugin runs: fixed rate, no overlap, timeouts and quarantine.
//!
//! This is pure bookkeeping on instants, kept apart from processes and I/O so the
//! rules can be tested exactly. The supervisor asks [`PluginSchedule::next_wakeup`],
//! sleeps until then, and feeds the outcome back ([`PluginSchedule::due`],
//! [`PluginSchedule::overdue`], [`PluginSchedule::finished`], ...).
//!
//! Rules (DESIGN §4):
//! - fixed rate: run `k` is due at `first + k·interval`, however long runs take;
//! - a due run whose previous run is still going is skipped and counted;
//! - a run longer than `timeout` is a hang; [`HANGS_BEFORE_QUARANTINE`] hangs in a row
//!   quarantine the plugin for [`quarantine_cooloff`]; after it, one more hang sends it
//!   straight back, a completed run clears the record;
//! - `long_running` plugins have no timeout, and their still-running "runs" are not
//!   counted as skipped: they are meant to stay in `run()`.

use std::time::Duration;

use tokio::time::Instant;

/// Hangs in a row that quarantine a plugin.
pub const HANGS_BEFORE_QUARANTINE: u32 = 3;

/// How long a quarantined plugin rests: ten intervals, at least 30 s, at most 10 min.
pub fn quarantine_cooloff(interval: Duration) -> Duration {
    (interval * 10).clamp(Duration::from_secs(30), Duration::from_secs(600))
}

/// How often a plugin runs and how long a run may take.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timing {
    pub interval: Duration,
    /// `None` for `long_running` plugins.
    pub timeout: Option<Duration>,
}

/// Where a plugin is in its cycle.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    Idle,
    Running { run: u64, started: Instant },
    Quarantined { until: Instant },
}

/// What the supervisor should do for a plugin whose time has come.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Due {
    /// Send `run` with this id; `skipped` due times passed unused before it.
    Start { run: u64, skipped: u64 },
    /// The previous run is still going: these due times were skipped.
    Skipped(u64),
}

/// What a hang leads to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HangVerdict {
    /// Restart the worker; the plugin runs again at its next due time.
    Retry { hangs_in_a_row: u32 },
    /// Restart the worker; the plugin rests until `until`.
    Quarantine { until: Instant },
}

/// The schedule of one plugin.
#[derive(Clone, Debug)]
pub struct PluginSchedule {
    timing: Timing,
    next_due: Instant,
    phase: Phase,
    hangs_in_a_row: u32,
    last_run_id: u64,
}

impl PluginSchedule {
    /// A plugin whose first run is due at `first_due`.
    pub fn new(timing: Timing, first_due: Instant) -> Self {
        Self {
            timing,
            next_due: first_due,
            phase: Phase::Idle,
            hangs_in_a_row: 0,
            last_run_id: 0,
        }
    }

    pub fn timing(&self) -> Timing {
        self.timing
    }

    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// Applies a (possibly) new timing, keeping the run history.
    pub fn retime(&mut self, timing: Timing) {
        self.timing = timing;
    }

    /// A fresh worker is up: a run that was in flight is gone, and due times missed
    /// while no worker was there are not "skipped" — the next run comes at `resume_at`
    /// if it was already overdue.
    pub fn resume(&mut self, resume_at: Instant) {
        if let Phase::Running { .. } = self.phase {
            self.phase = Phase::Idle;
        }
        if self.next_due < resume_at {
            self.next_due = resume_at;
        }
    }

    /// The next instant at which something may happen to this plugin.
    pub fn next_wakeup(&self) -> Instant {
        match self.phase {
            Phase::Idle => self.next_due,
            Phase::Running { started, .. } => match self.timing.timeout {
                Some(timeout) => self.next_due.min(started + timeout),
                None => self.next_due,
            },
            Phase::Quarantined { until } => until,
        }
    }

    /// The running run that has exceeded its timeout at `now`, with how long it ran.
    pub fn overdue(&self, now: Instant) -> Option<(u64, Duration)> {
        match (self.phase, self.timing.timeout) {
            (Phase::Running { run, started }, Some(timeout)) if now >= started + timeout => {
                Some((run, now - started))
            }
            _ => None,
        }
    }

    /// What is due at `now`, if anything. Ends a quarantine whose time is up.
    pub fn due(&mut self, now: Instant) -> Option<Due> {
        if let Phase::Quarantined { until } = self.phase {
            if now < until {
                return None;
            }
            self.phase = Phase::Idle;
            self.next_due = now;
        }
        if now < self.next_due {
            return None;
        }
        let missed = self.advance_past(now);
        match self.phase {
            Phase::Idle => {
                self.last_run_id += 1;
                self.phase = Phase::Running {
                    run: self.last_run_id,
                    started: now,
                };
                Some(Due::Start {
                    run: self.last_run_id,
                    skipped: missed,
                })
            }
            Phase::Running { .. } if self.timing.timeout.is_none() => None,
            Phase::Running { .. } => Some(Due::Skipped(missed + 1)),
            Phase::Quarantined { .. } => None,
        }
    }

    /// Run `run` answered. Returns false for an answer that is not about the current
    /// run (a stale or unknown id), which must be ignored.
    pub fn finished(&mut self, run: u64) -> bool {
        match self.phase {
            Phase::Running { run: current, .. } if current == run => {
                self.phase = Phase::Idle;
                self.hangs_in_a_row = 0;
                true
            }
            _ => false,
        }
    }

    /// The running run hung (it was overdue and its worker is being killed).
    pub fn hung(&mut self, now: Instant) -> HangVerdict {
        self.hangs_in_a_row += 1;
        if self.hangs_in_a_row >= HANGS_BEFORE_QUARANTINE {
            // One more hang after the cool-off quarantines again at once.
            self.hangs_in_a_row = HANGS_BEFORE_QUARANTINE - 1;
            let until = now + quarantine_cooloff(self.timing.interval);
            self.phase = Phase::Quarantined { until };
            HangVerdict::Quarantine { until }
        } else {
            self.phase = Phase::Idle;
            HangVerdict::Retry {
                hangs_in_a_row: self.hangs_in_a_row,
            }
        }
    }

    /// Moves `next_due` to the first due time after `now`; returns how many due
    /// times strictly between the current one and that were passed over.
    fn advance_past(&mut self, now: Instant) -> u64 {
        let interval = self.timing.interval.max(Duration::from_millis(1));
        self.next_due += interval;
        let mut missed = 0;
        if self.next_due <= now {
            let behind = now - self.next_due;
            let steps = (behind.as_nanos() / interval.as_nanos()) as u64 + 1;
            missed = steps;
            self.next_due += interval * u32::try_from(steps).unwrap_or(u32::MAX);
        }
        missed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    fn timing(interval: u64, timeout: Option<u64>) -> Timing {
        Timing {
            interval: S * interval as u32,
            timeout: timeout.map(|t| S * t as u32),
        }
    }

    #[test]
    fn runs_at_a_fixed_rate_regardless_of_run_length() {
        let t0 = Instant::now();
        let mut s = PluginSchedule::new(timing(10, Some(30)), t0);
        assert_eq!(s.due(t0), Some(Due::Start { run: 1, skipped: 0 }));
        assert!(s.finished(1));
        // The run took 4 s; the next is still due at t0 + 10 s, not t0 + 14 s.
        assert_eq!(s.next_wakeup(), t0 + 10 * S);
        assert_eq!(s.due(t0 + 9 * S), None);
        assert_eq!(s.due(t0 + 10 * S), Some(Due::Start { run: 2, skipped: 0 }));
    }

    #[test]
    fn overlapping_runs_are_skipped_and_counted() {
        let t0 = Instant::now();
        let mut s = PluginSchedule::new(timing(1, Some(100)), t0);
        assert_eq!(s.due(t0), Some(Due::Start { run: 1, skipped: 0 }));
        assert_eq!(s.due(t0 + S), Some(Due::Skipped(1)));
        // Woken late: three due times (2 s, 3 s, 4 s) passed while still running.
        assert_eq!(s.due(t0 + 4 * S), Some(Due::Skipped(3)));
        assert!(s.finished(1));
        assert_eq!(s.due(t0 + 5 * S), Some(Due::Start { run: 2, skipped: 0 }));
    }

    #[test]
    fn stale_answers_are_ignored() {
        let t0 = Instant::now();
        let mut s = PluginSchedule::new(timing(1, Some(3)), t0);
        s.due(t0);
        assert!(!s.finished(7));
        assert!(matches!(s.phase(), Phase::Running { run: 1, .. }));
    }

    #[test]
    fn a_run_past_its_timeout_is_overdue() {
        let t0 = Instant::now();
        let mut s = PluginSchedule::new(timing(10, Some(3)), t0);
        s.due(t0);
        assert_eq!(s.next_wakeup(), t0 + 3 * S);
        assert_eq!(s.overdue(t0 + 2 * S), None);
        assert_eq!(s.overdue(t0 + 3 * S), Some((1, 3 * S)));
    }

    #[test]
    fn three_hangs_in_a_row_quarantine_and_one_more_after_cooloff_requarantines() {
        let t0 = Instant::now();
        let mut s = PluginSchedule::new(timing(1, Some(1)), t0);
        let mut now = t0;
        for expected in 1..HANGS_BEFORE_QUARANTINE {
            s.due(now);
            now += S;
            assert_eq!(
                s.hung(now),
                HangVerdict::Retry {
                    hangs_in_a_row: expected
                }
            );
            s.resume(now);
        }
        s.due(now);
        now += S;
        let until = now + quarantine_cooloff(S);
        assert_eq!(s.hung(now), HangVerdict::Quarantine { until });
        assert_eq!(s.next_wakeup(), until);
        assert_eq!(s.due(until - S), None, "no runs while quarantined");
        assert!(
            matches!(s.due(until), Some(Due::Start { skipped: 0, .. })),
            "runs again after the cool-off"
        );
        assert!(matches!(s.hung(until + S), HangVerdict::Quarantine { .. }));
    }

    #[test]
    fn a_completed_run_clears_the_hang_record() {
        let t0 = Instant::now();
        let mut s = PluginSchedule::new(timing(1, Some(1)), t0);
        for i in 0..5u32 {
            let now = t0 + S * (2 * i);
            let Some(Due::Start { run, .. }) = s.due(now) else {
                panic!("run due at {i}");
            };
            if i % 2 == 0 {
                assert!(matches!(
                    s.hung(now + S),
                    HangVerdict::Retry { hangs_in_a_row: 1 }
                ));
                s.resume(now + S);
            } else {
                assert!(s.finished(run));
            }
        }
    }

    #[test]
    fn long_running_plugins_never_time_out_or_skip() {
        let t0 = Instant::now();
        let mut s = PluginSchedule::new(timing(1, None), t0);
        s.due(t0);
        assert_eq!(s.overdue(t0 + 3600 * S), None);
        assert_eq!(s.due(t0 + 5 * S), None);
    }

    #[test]
    fn resuming_after_an_outage_does_not_count_skips() {
        let t0 = Instant::now();
        let mut s = PluginSchedule::new(timing(1, Some(3)), t0);
        s.due(t0);
        s.resume(t0 + 30 * S);
        assert_eq!(s.due(t0 + 30 * S), Some(Due::Start { run: 2, skipped: 0 }));
    }

    #[test]
    fn cooloff_is_bounded() {
        assert_eq!(quarantine_cooloff(Duration::from_millis(100)), 30 * S);
        assert_eq!(quarantine_cooloff(10 * S), 100 * S);
        assert_eq!(quarantine_cooloff(3600 * S), 600 * S);
    }
}
