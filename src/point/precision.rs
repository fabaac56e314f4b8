//! Timestamp units, and turning a reported timestamp into nanoseconds.
//!
//! Scripts send `time` as seconds (`time.time()`, a float), milliseconds, or whatever
//! their source gave them; the write API's `precision` says which, and without it the
//! unit is guessed from the magnitude exactly as DataKit does. Every point leaves this
//! module with `time_ns`, so nothing downstream ever has to think about units again.

use std::fmt;
use std::str::FromStr;

/// The unit of a reported timestamp (`precision=` on the write API, `precision` in
/// `report()`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Precision {
    Nanoseconds,
    Microseconds,
    Milliseconds,
    Seconds,
    Minutes,
    Hours,
}

/// A `precision` string that names no unit.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown precision {0:?}, expected one of: n, ns, u, us, µs, ms, s, m, h")]
pub struct ParsePrecisionError(pub String);

impl FromStr for Precision {
    type Err = ParsePrecisionError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "n" | "ns" => Precision::Nanoseconds,
            // "µ" is U+00B5 (micro sign), "μ" is U+03BC (Greek mu); people type both.
            "u" | "us" | "µs" | "μs" => Precision::Microseconds,
            "ms" => Precision::Milliseconds,
            "s" => Precision::Seconds,
            "m" => Precision::Minutes,
            "h" => Precision::Hours,
            other => return Err(ParsePrecisionError(other.to_owned())),
        })
    }
}

impl Precision {
    /// The canonical short name, as InfluxDB's and DataKit's `precision=` take it.
    pub fn name(self) -> &'static str {
        match self {
            Precision::Nanoseconds => "n",
            Precision::Microseconds => "u",
            Precision::Milliseconds => "ms",
            Precision::Seconds => "s",
            Precision::Minutes => "m",
            Precision::Hours => "h",
        }
    }

    /// Nanoseconds in one unit.
    pub fn nanos(self) -> i64 {
        match self {
            Precision::Nanoseconds => 1,
            Precision::Microseconds => 1_000,
            Precision::Milliseconds => 1_000_000,
            Precision::Seconds => 1_000_000_000,
            Precision::Minutes => 60_000_000_000,
            Precision::Hours => 3_600_000_000_000,
        }
    }

    /// DataKit's guess for a timestamp without `precision`: below 1e10 it is seconds
    /// (that is until year 2286), below 1e13 milliseconds, below 1e16 microseconds,
    /// else nanoseconds. Integer comparisons, because `i64 as f64` rounds
    /// 9_999_999_999_999_999 up to 1e16 and would misfile it.
    pub fn detect_int(t: i64) -> Precision {
        if t < 10_000_000_000 {
            Precision::Seconds
        } else if t < 10_000_000_000_000 {
            Precision::Milliseconds
        } else if t < 10_000_000_000_000_000 {
            Precision::Microseconds
        } else {
            Precision::Nanoseconds
        }
    }

    /// Same thresholds as [`Precision::detect_int`], for float timestamps.
    pub fn detect_float(t: f64) -> Precision {
        if t < 1e10 {
            Precision::Seconds
        } else if t < 1e13 {
            Precision::Milliseconds
        } else if t < 1e16 {
            Precision::Microseconds
        } else {
            Precision::Nanoseconds
        }
    }
}

impl fmt::Display for Precision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Why a reported timestamp cannot become nanoseconds since the epoch.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub(crate) enum TimeError {
    #[error("is negative")]
    Negative,
    #[error("is not a finite number")]
    NotFinite,
    // i64 nanoseconds end in April 2262; anything later is a unit mix-up, not a date.
    #[error("is out of range (later than 2262-04-11 in nanoseconds)")]
    Overflow,
}

/// An integer timestamp in nanoseconds. `0` means "now" (DataKit and the shim both use
/// it as "no time"); without `precision` the unit is detected from the magnitude.
pub(crate) fn int_time_to_ns(
    t: i64,
    precision: Option<Precision>,
    now_ns: i64,
) -> Result<i64, TimeError> {
    if t == 0 {
        return Ok(now_ns);
    }
    if t < 0 {
        return Err(TimeError::Negative);
    }
    let unit = precision.unwrap_or_else(|| Precision::detect_int(t));
    t.checked_mul(unit.nanos()).ok_or(TimeError::Overflow)
}

/// A float timestamp (Python's `time.time()`) in nanoseconds.
///
/// Multiplying the float by 1e9 would be off by up to a few hundred ns (1.7e18 is far
/// beyond f64's 53-bit mantissa). Instead we take the shortest decimal that reads back
/// as the same float — what Python printed, `1700000000.123` — and scale those decimal
/// digits exactly, so `1700000000.123` s becomes `1700000000123000000` ns.
pub(crate) fn float_time_to_ns(
    t: f64,
    precision: Option<Precision>,
    now_ns: i64,
) -> Result<i64, TimeError> {
    if !t.is_finite() {
        return Err(TimeError::NotFinite);
    }
    if t == 0.0 {
        return Ok(now_ns);
    }
    if t < 0.0 {
        return Err(TimeError::Negative);
    }
    let unit = precision
        .unwrap_or_else(|| Precision::detect_float(t))
        .nanos();
    // i64::MAX as f64 rounds up to 2^63, so `>=` is the exact overflow test.
    if t * unit as f64 >= i64::MAX as f64 {
        return Err(TimeError::Overflow);
    }
    // `Display` for f64 never uses an exponent and gives the shortest round-trip digits.
    let text = t.to_string();
    let (int_part, frac_part) = text.split_once('.').unwrap_or((&text, ""));
    let int_value: i128 = int_part.parse().map_err(|_| TimeError::NotFinite)?;

    // Keep 18 fractional digits: finer than 1 ns even for hours (3.6e12 ns/unit).
    const FRAC_DIGITS: usize = 18;
    const FRAC_SCALE: i128 = 1_000_000_000_000_000_000;
    let mut frac_value: i128 = 0;
    for b in frac_part.bytes().take(FRAC_DIGITS) {
        // Display only ever writes ASCII digits here.
        frac_value = frac_value * 10 + i128::from(b.wrapping_sub(b'0') % 10);
    }
    let taken = frac_part.len().min(FRAC_DIGITS);
    for _ in taken..FRAC_DIGITS {
        frac_value *= 10;
    }

    let unit = i128::from(unit);
    // Round half up to the nearest nanosecond.
    let frac_ns = (frac_value * unit + FRAC_SCALE / 2) / FRAC_SCALE;
    let ns = int_value * unit + frac_ns;
    i64::try_from(ns).map_err(|_| TimeError::Overflow)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_234;

    #[test]
    fn parses_every_spelling() {
        let cases = [
            ("n", Precision::Nanoseconds),
            ("ns", Precision::Nanoseconds),
            ("u", Precision::Microseconds),
            ("us", Precision::Microseconds),
            ("µs", Precision::Microseconds),
            ("μs", Precision::Microseconds),
            ("ms", Precision::Milliseconds),
            ("s", Precision::Seconds),
            ("m", Precision::Minutes),
            ("h", Precision::Hours),
        ];
        for (s, p) in cases {
            assert_eq!(s.parse::<Precision>(), Ok(p), "{s}");
        }
    }

    #[test]
    fn unknown_precision_error_names_valid_values() {
        let err = "sec".parse::<Precision>().unwrap_err();
        assert_eq!(err, ParsePrecisionError("sec".into()));
        let msg = err.to_string();
        assert!(msg.contains("\"sec\""), "{msg}");
        assert!(msg.contains("n, ns, u, us, µs, ms, s, m, h"), "{msg}");
        assert!("S".parse::<Precision>().is_err());
        assert!("".parse::<Precision>().is_err());
    }

    #[test]
    fn names_round_trip_and_units_are_right() {
        for p in [
            Precision::Nanoseconds,
            Precision::Microseconds,
            Precision::Milliseconds,
            Precision::Seconds,
            Precision::Minutes,
            Precision::Hours,
        ] {
            assert_eq!(p.name().parse::<Precision>(), Ok(p));
            assert_eq!(p.to_string(), p.name());
        }
        assert_eq!(Precision::Minutes.nanos(), 60 * Precision::Seconds.nanos());
        assert_eq!(Precision::Hours.nanos(), 60 * Precision::Minutes.nanos());
        assert_eq!(
            Precision::Seconds.nanos(),
            1000 * Precision::Milliseconds.nanos()
        );
        assert_eq!(
            Precision::Milliseconds.nanos(),
            1000 * Precision::Microseconds.nanos()
        );
    }

    #[test]
    fn auto_detect_boundaries_int() {
        let cases = [
            (1, Precision::Seconds),
            (9_999_999_999, Precision::Seconds),
            (10_000_000_000, Precision::Milliseconds),
            (9_999_999_999_999, Precision::Milliseconds),
            (10_000_000_000_000, Precision::Microseconds),
            (9_999_999_999_999_999, Precision::Microseconds),
            (10_000_000_000_000_000, Precision::Nanoseconds),
            (i64::MAX, Precision::Nanoseconds),
        ];
        for (t, p) in cases {
            assert_eq!(Precision::detect_int(t), p, "{t}");
        }
    }

    #[test]
    fn auto_detect_boundaries_float() {
        assert_eq!(Precision::detect_float(9_999_999_999.9), Precision::Seconds);
        assert_eq!(Precision::detect_float(1e10), Precision::Milliseconds);
        assert_eq!(Precision::detect_float(1e13 - 1.0), Precision::Milliseconds);
        assert_eq!(Precision::detect_float(1e13), Precision::Microseconds);
        assert_eq!(Precision::detect_float(1e16 - 2.0), Precision::Microseconds);
        assert_eq!(Precision::detect_float(1e16), Precision::Nanoseconds);
    }

    #[test]
    fn int_times_auto_detected() {
        let secs = 1_700_000_000;
        let ns = 1_700_000_000_000_000_000;
        assert_eq!(int_time_to_ns(secs, None, NOW), Ok(ns));
        assert_eq!(int_time_to_ns(secs * 1_000, None, NOW), Ok(ns));
        assert_eq!(int_time_to_ns(secs * 1_000_000, None, NOW), Ok(ns));
        assert_eq!(int_time_to_ns(ns, None, NOW), Ok(ns));
    }

    #[test]
    fn int_times_with_each_explicit_precision() {
        assert_eq!(int_time_to_ns(5, Some(Precision::Nanoseconds), NOW), Ok(5));
        assert_eq!(
            int_time_to_ns(5, Some(Precision::Microseconds), NOW),
            Ok(5_000)
        );
        assert_eq!(
            int_time_to_ns(5, Some(Precision::Milliseconds), NOW),
            Ok(5_000_000)
        );
        assert_eq!(
            int_time_to_ns(5, Some(Precision::Seconds), NOW),
            Ok(5_000_000_000)
        );
        assert_eq!(
            int_time_to_ns(5, Some(Precision::Minutes), NOW),
            Ok(300_000_000_000)
        );
        assert_eq!(
            int_time_to_ns(5, Some(Precision::Hours), NOW),
            Ok(18_000_000_000_000)
        );
        // An explicit precision wins over the magnitude guess.
        assert_eq!(
            int_time_to_ns(1_700_000_000_000, Some(Precision::Nanoseconds), NOW),
            Ok(1_700_000_000_000)
        );
    }

    #[test]
    fn zero_means_now_and_bad_values_fail() {
        assert_eq!(int_time_to_ns(0, None, NOW), Ok(NOW));
        assert_eq!(int_time_to_ns(0, Some(Precision::Seconds), NOW), Ok(NOW));
        assert_eq!(float_time_to_ns(0.0, None, NOW), Ok(NOW));
        assert_eq!(int_time_to_ns(-1, None, NOW), Err(TimeError::Negative));
        assert_eq!(float_time_to_ns(-0.5, None, NOW), Err(TimeError::Negative));
        assert_eq!(
            float_time_to_ns(f64::NAN, None, NOW),
            Err(TimeError::NotFinite)
        );
        assert_eq!(
            float_time_to_ns(f64::INFINITY, None, NOW),
            Err(TimeError::NotFinite)
        );
    }

    #[test]
    fn overflow_is_an_error_not_a_wrap() {
        // Auto-detected seconds just under 1e10 overflow i64 nanoseconds.
        assert_eq!(
            int_time_to_ns(9_999_999_999, None, NOW),
            Err(TimeError::Overflow)
        );
        assert_eq!(
            int_time_to_ns(i64::MAX / 1000 + 1, Some(Precision::Microseconds), NOW),
            Err(TimeError::Overflow)
        );
        assert_eq!(int_time_to_ns(i64::MAX, None, NOW), Ok(i64::MAX));
        assert_eq!(float_time_to_ns(9.5e9, None, NOW), Err(TimeError::Overflow));
        assert_eq!(
            float_time_to_ns(1e300, Some(Precision::Nanoseconds), NOW),
            Err(TimeError::Overflow)
        );
        // The last representable second is fine.
        assert_eq!(
            int_time_to_ns(9_223_372_036, None, NOW),
            Ok(9_223_372_036_000_000_000)
        );
    }

    #[test]
    fn float_seconds_are_scaled_exactly() {
        assert_eq!(
            float_time_to_ns(1_700_000_000.123, None, NOW),
            Ok(1_700_000_000_123_000_000)
        );
        assert_eq!(
            float_time_to_ns(1_700_000_000.123456, None, NOW),
            Ok(1_700_000_000_123_456_000)
        );
        assert_eq!(
            float_time_to_ns(1_700_000_000.5, Some(Precision::Seconds), NOW),
            Ok(1_700_000_000_500_000_000)
        );
        assert_eq!(
            float_time_to_ns(1_700_000_000.0, None, NOW),
            Ok(1_700_000_000_000_000_000)
        );
    }

    #[test]
    fn float_times_in_other_units() {
        // Milliseconds with a fraction (JavaScript-style Date.now() / performance.now()).
        assert_eq!(
            float_time_to_ns(1_700_000_000_123.5, None, NOW),
            Ok(1_700_000_000_123_500_000)
        );
        assert_eq!(
            float_time_to_ns(1.5, Some(Precision::Minutes), NOW),
            Ok(90_000_000_000)
        );
        assert_eq!(
            float_time_to_ns(0.25, Some(Precision::Hours), NOW),
            Ok(900_000_000_000)
        );
        assert_eq!(
            float_time_to_ns(2.6, Some(Precision::Nanoseconds), NOW),
            Ok(3)
        );
        assert_eq!(
            float_time_to_ns(2.4, Some(Precision::Nanoseconds), NOW),
            Ok(2)
        );
        // Very small values still work (no exponent confusion).
        assert_eq!(
            float_time_to_ns(1e-7, Some(Precision::Seconds), NOW),
            Ok(100)
        );
        // Large float nanoseconds stay within float precision.
        let got = float_time_to_ns(1.7e18, None, NOW).unwrap();
        assert_eq!(got, 1_700_000_000_000_000_000);
    }
}
