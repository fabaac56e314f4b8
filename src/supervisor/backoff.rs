//! How long to wait before restarting a worker that died.
//!
//! Capped exponential backoff with jitter (docs/OPERATIONS.md, "Supervision"): about
//! 1 s, 2 s, 4 s ... up to 60 s, each ±25 % so that inputs that died together do not
//! restart together. Pure arithmetic on a seedable random source, so the state machine
//! that uses it ([`super::machine`]) stays testable.

use std::time::Duration;

/// Capped exponential backoff with jitter.
#[derive(Debug)]
pub struct Backoff {
    attempt: u32,
    rng: fastrand::Rng,
}

impl Default for Backoff {
    fn default() -> Self {
        Self::with_rng(fastrand::Rng::new())
    }
}

impl Backoff {
    const BASE: Duration = Duration::from_secs(1);
    const CAP: Duration = Duration::from_secs(60);

    /// A backoff drawing its jitter from `rng` (a seeded one in tests).
    pub fn with_rng(rng: fastrand::Rng) -> Self {
        Self { attempt: 0, rng }
    }

    /// The delay before the next restart; each call doubles the base, up to the cap.
    pub fn next_delay(&mut self) -> Duration {
        let base = Self::BASE
            .saturating_mul(1u32 << self.attempt.min(6))
            .min(Self::CAP);
        self.attempt = self.attempt.saturating_add(1);
        base.mul_f64(0.75 + 0.5 * self.rng.f64())
            .clamp(Self::BASE, Self::CAP)
    }

    /// Back to the first delay (after a worker that stayed up long enough).
    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_to_its_cap_and_resets() {
        let mut b = Backoff::default();
        let first = b.next_delay();
        assert!(
            first >= Duration::from_secs(1) && first <= Duration::from_millis(1250),
            "{first:?}"
        );
        for _ in 0..10 {
            b.next_delay();
        }
        let capped = b.next_delay();
        assert!(
            capped >= Duration::from_secs(45) && capped <= Duration::from_secs(60),
            "{capped:?}"
        );
        b.reset();
        assert!(b.next_delay() <= Duration::from_millis(1250));
    }
}
