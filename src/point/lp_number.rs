//! Line protocol's numbers (`12345i`, `6172.5`, timestamps) in their plain
//! spellings, read without the general parsers' overhead and with exactly their
//! results: what [`str::parse`] gives, the spellings these fast paths do not cover
//! are left to it.
//!
//! They are the bulk of a metrics body (docs/BENCHMARKS.md, "Forwarding side by side
//! with vmagent"), and the general parsers pay for cases such bodies rarely have:
//! overflow checks on every digit of a 19-digit timestamp, exponents, `inf`/`NaN`.

/// `s` read as `s.parse::<i64>()` reads it; `None` where that fails.
pub(crate) fn parse_i64(s: &str) -> Option<i64> {
    let bytes = s.as_bytes();
    let (negative, digits) = match bytes.first() {
        Some(b'-') => (true, &bytes[1..]),
        Some(b'+') => (false, &bytes[1..]),
        _ => (false, bytes),
    };
    // Up to 19 digits fit a u64 (10^19 - 1 < 2^64): no step below can overflow.
    if digits.is_empty() || digits.len() > 19 {
        return s.parse().ok();
    }
    let mut n: u64 = 0;
    let mut rest = digits;
    while let Some((eight, tail)) = rest.split_first_chunk::<8>() {
        let eight = u64::from_le_bytes(*eight);
        if !eight_digits(eight) {
            return None;
        }
        n = n * 100_000_000 + eight_digits_value(eight);
        rest = tail;
    }
    for &b in rest {
        let digit = b.wrapping_sub(b'0');
        if digit > 9 {
            return None;
        }
        n = n * 10 + u64::from(digit);
    }
    if negative {
        // -2^63 is i64::MIN, the most negative there is.
        (n <= 1 << 63).then(|| 0i64.wrapping_sub_unsigned(n))
    } else {
        i64::try_from(n).ok()
    }
}

/// Whether the eight bytes of `chunk` (read little-endian) are all ASCII digits.
fn eight_digits(chunk: u64) -> bool {
    // A byte below b'0' borrows in the subtraction, one above b'9' carries into its
    // top bit in the addition (0x46 + 0x3A = 0x80).
    let below = chunk.wrapping_sub(0x3030_3030_3030_3030);
    let above = chunk.wrapping_add(0x4646_4646_4646_4646);
    (below | above) & 0x8080_8080_8080_8080 == 0
}

/// The number eight ASCII digits spell, the first in the lowest byte of `chunk`:
/// pairs, then fours, then all eight combined by multiplications.
fn eight_digits_value(chunk: u64) -> u64 {
    const LOW_BYTES: u64 = 0x0000_00FF_0000_00FF;
    const BY_100_AND_1000000: u64 = 100 + (1_000_000 << 32);
    const BY_1_AND_10000: u64 = 1 + (10_000 << 32);
    let digits = chunk - 0x3030_3030_3030_3030;
    // Each byte pair becomes its two-digit value in its low byte.
    let pairs = (digits * 10) + (digits >> 8);
    let high = (pairs & LOW_BYTES).wrapping_mul(BY_100_AND_1000000);
    let low = ((pairs >> 16) & LOW_BYTES).wrapping_mul(BY_1_AND_10000);
    u64::from((high.wrapping_add(low) >> 32) as u32)
}

/// `s` read as `s.parse::<f64>()` reads it; `None` where that fails.
pub(crate) fn parse_f64(s: &str) -> Option<f64> {
    plain_f64(s.as_bytes()).or_else(|| s.parse().ok())
}

/// The powers of ten [`plain_f64`] divides by, each exact in an f64.
const POWERS_OF_TEN: [f64; 16] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
];

/// Most digits [`plain_f64`] takes: their integer stays below 2^53, exact in an f64.
const PLAIN_DIGITS: usize = 15;

/// `-?digits` or `-?digits.digits` with at most [`PLAIN_DIGITS`] digits in all, else
/// `None`. Such a number is an integer (exact in an f64) divided by a power of ten
/// (exact too), and one IEEE division rounds that quotient correctly: the nearest
/// f64 to the decimal, which is what `str::parse` returns for it (Clinger's fast path).
fn plain_f64(bytes: &[u8]) -> Option<f64> {
    let (negative, rest) = match bytes.first() {
        Some(b'-') => (true, &bytes[1..]),
        _ => (false, bytes),
    };
    let mut mantissa: u64 = 0;
    let mut digits = 0;
    let mut dot = None;
    for (i, &b) in rest.iter().enumerate() {
        match b {
            b'0'..=b'9' => {
                digits += 1;
                if digits > PLAIN_DIGITS {
                    return None;
                }
                mantissa = mantissa * 10 + u64::from(b - b'0');
            }
            b'.' if dot.is_none() && i > 0 => dot = Some(i),
            _ => return None,
        }
    }
    let decimals = match dot {
        None => 0,
        // `5.` is left to `str::parse`.
        Some(at) if at + 1 == rest.len() => return None,
        Some(at) => rest.len() - at - 1,
    };
    if digits == 0 {
        return None;
    }
    let value = mantissa as f64 / POWERS_OF_TEN[decimals];
    Some(if negative { -value } else { value })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers_read_as_std_reads_them() {
        for s in [
            "0",
            "-0",
            "+0",
            "12345",
            "-12345",
            "+7",
            "1700000000000000000",
            "9223372036854775807",
            "9223372036854775808",
            "-9223372036854775808",
            "-9223372036854775809",
            "9999999999999999999",
            "00000000000000000000001",
            "-00000000000000000000001",
            "12345678",
            "123456789",
            "1234567/",
            "1234567:",
            "/2345678",
            ":2345678",
            "1234\u{0}678",
            "12345678901234567",
            "99999999999999999999",
            "",
            "-",
            "+",
            "+-1",
            "1_000",
            "12a",
            " 1",
            "١٢",
        ] {
            assert_eq!(parse_i64(s), s.parse::<i64>().ok(), "{s:?}");
        }
    }

    #[test]
    fn floats_read_as_std_reads_them() {
        for s in [
            "0",
            "-0",
            "0.0",
            "-0.0",
            "6172.5",
            "0.1",
            "0.3",
            "-2.5",
            "123456789012345",
            "1234567890123456",
            "12345678901234.5",
            "0.000000000000001",
            "9007199254740993",
            ".5",
            "5.",
            ".",
            "-",
            "",
            "1e3",
            "+2",
            "1.2.3",
            "inf",
            "NaN",
            "1,5",
        ] {
            let ours = parse_f64(s).map(f64::to_bits);
            let std = s.parse::<f64>().ok().map(f64::to_bits);
            assert_eq!(ours, std, "{s:?}");
        }
    }

    proptest::proptest! {
        #[test]
        fn any_integer_text_reads_as_std_reads_it(s in "[-+]?[0-9]{0,21}|[-+0-9a ]{0,6}") {
            proptest::prop_assert_eq!(parse_i64(&s), s.parse::<i64>().ok(), "{:?}", s);
        }

        #[test]
        fn any_i64_reads_back(n in proptest::num::i64::ANY) {
            proptest::prop_assert_eq!(parse_i64(&n.to_string()), Some(n));
        }

        #[test]
        fn any_float_text_reads_as_std_reads_it(
            s in "-?[0-9]{0,17}(\\.[0-9]{0,17})?|[-+.0-9eE]{0,8}"
        ) {
            let ours = parse_f64(&s).map(f64::to_bits);
            let std = s.parse::<f64>().ok().map(f64::to_bits);
            proptest::prop_assert_eq!(ours, std, "{:?}", s);
        }

        #[test]
        fn any_printed_float_reads_back(x in proptest::num::f64::NORMAL | proptest::num::f64::ZERO) {
            let s = format!("{x:?}");
            let ours = parse_f64(&s).map(f64::to_bits);
            proptest::prop_assert_eq!(ours, s.parse::<f64>().ok().map(f64::to_bits));
            let short = format!("{:.3}", x % 1e9);
            let ours = parse_f64(&short).map(f64::to_bits);
            proptest::prop_assert_eq!(ours, short.parse::<f64>().ok().map(f64::to_bits), "{:?}", short);
        }
    }
}
