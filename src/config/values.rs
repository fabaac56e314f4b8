//! Parsers for the value syntaxes the configuration uses beyond plain TOML types:
//! durations (`"1m30s"`), byte sizes (`"32MiB"`), listen addresses (`host:port`),
//! log levels, and relative paths.
//!
//! They are kept apart from the table readers so each syntax is defined (and unit
//! tested) in one place and gives the same message wherever it is used.

use std::net::SocketAddr;
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use super::tree::{Node, Problem, Value};

/// Durations in humantime syntax: `"500ms"`, `"10s"`, `"1m30s"`, `"2h"`. Must be
/// greater than zero.
pub(crate) fn duration(node: &Node) -> Result<Duration, Problem> {
    match &node.value {
        Value::String(s) => parse_duration(s).map_err(Problem::from),
        Value::Integer(_) | Value::Float(_) => Err(format!(
            "expected a duration string such as \"10s\" or \"1m30s\", found {} (add a unit)",
            node.describe()
        )
        .into()),
        _ => Err(Problem::expected(
            "a duration string such as \"10s\" or \"1m30s\"",
            node,
        )),
    }
}

/// Parses a positive humantime duration.
pub(crate) fn parse_duration(text: &str) -> Result<Duration, String> {
    let trimmed = text.trim();
    if trimmed.starts_with('-') {
        return Err(format!("duration {text:?} must be greater than zero"));
    }
    let value = humantime::parse_duration(trimmed).map_err(|e| {
        format!("invalid duration {text:?}: {e} (examples: \"500ms\", \"10s\", \"1m30s\")")
    })?;
    if value.is_zero() {
        return Err(format!("duration {text:?} must be greater than zero"));
    }
    Ok(value)
}

/// A byte size: an integer number of bytes, or a string with a unit (`"512KiB"`,
/// `"32MiB"`, `"1GB"`). Must be greater than zero.
pub(crate) fn byte_size(node: &Node) -> Result<u64, Problem> {
    match &node.value {
        Value::Integer(n) if *n > 0 => Ok(n.unsigned_abs()),
        Value::Integer(_) => Err("must be greater than zero".into()),
        Value::String(s) => parse_byte_size(s).map_err(Problem::from),
        _ => Err(Problem::expected(
            "a size such as \"32MiB\" or a number of bytes",
            node,
        )),
    }
}

/// Units accepted by [`parse_byte_size`], matched case-insensitively.
const SIZE_UNITS: &[(&str, u64)] = &[
    ("b", 1),
    ("kb", 1_000),
    ("mb", 1_000_000),
    ("gb", 1_000_000_000),
    ("kib", 1 << 10),
    ("mib", 1 << 20),
    ("gib", 1 << 30),
];

/// Parses `"<integer> [unit]"`; units B, KB, MB, GB (powers of 1000) and KiB, MiB,
/// GiB (powers of 1024), case-insensitive; no unit means bytes.
pub(crate) fn parse_byte_size(text: &str) -> Result<u64, String> {
    let trimmed = text.trim();
    let digits_end = trimmed
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(trimmed.len());
    let (number, unit) = trimmed.split_at(digits_end);
    let unit = unit.trim().to_ascii_lowercase();
    let bad = || {
        format!(
            "invalid size {text:?}: expected an integer with an optional unit \
             (B, KB, MB, GB, KiB, MiB, GiB), e.g. \"32MiB\""
        )
    };
    let number: u64 = number.parse().map_err(|_| bad())?;
    let factor = if unit.is_empty() {
        1
    } else {
        SIZE_UNITS
            .iter()
            .find(|(name, _)| *name == unit)
            .map(|(_, factor)| *factor)
            .ok_or_else(bad)?
    };
    let bytes = number
        .checked_mul(factor)
        .ok_or_else(|| format!("size {text:?} is too large"))?;
    if bytes == 0 {
        return Err(format!("size {text:?} must be greater than zero"));
    }
    Ok(bytes)
}

/// Checks a listen address: `IP:PORT` (`127.0.0.1:9529`, `[::1]:9529`) or
/// `HOSTNAME:PORT` (`localhost:9529`). Port 0 (any free port) is allowed.
pub(crate) fn check_listen(text: &str) -> Result<(), String> {
    if text.parse::<SocketAddr>().is_ok() {
        return Ok(());
    }
    let bad = |why: &str| {
        format!(
            "invalid listen address {text:?}: {why} (expected HOST:PORT, e.g. \"127.0.0.1:9529\")"
        )
    };
    let Some((host, port)) = text.rsplit_once(':') else {
        return Err(bad("missing port"));
    };
    if port.parse::<u16>().is_err() {
        return Err(bad("the port must be a number from 0 to 65535"));
    }
    let valid_host = !host.is_empty()
        && host.len() <= 253
        && host.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        });
    if !valid_host {
        return Err(bad("the host is neither an IP address nor a host name"));
    }
    Ok(())
}

/// Whether a (valid) listen address only accepts local connections: a loopback IP or
/// the name `localhost`.
pub(crate) fn listen_is_loopback(text: &str) -> bool {
    if let Ok(addr) = text.parse::<SocketAddr>() {
        return addr.ip().is_loopback();
    }
    text.rsplit_once(':')
        .is_some_and(|(host, _)| host.eq_ignore_ascii_case("localhost"))
}

const LEVELS: &[&str] = &["trace", "debug", "info", "warn", "error", "off"];

/// Checks `log_level`: a level (`trace`, `debug`, `info`, `warn`, `error`, `off`) or
/// `tracing` filter directives such as `"info,pythond::worker=debug"`. A bare word
/// that is not a level is rejected: as a directive it would silently mean "every
/// level of the target named like that word".
pub fn check_log_level(text: &str) -> Result<(), String> {
    if text.trim().is_empty() {
        return Err("must not be empty".to_owned());
    }
    for directive in text.split(',').map(str::trim) {
        if directive.is_empty() {
            return Err(format!("log level {text:?} has an empty directive"));
        }
        let level = match directive.rsplit_once('=') {
            Some((_, level)) => level,
            None if directive.contains("::") || directive.contains('[') => continue,
            None => directive,
        };
        if !LEVELS.iter().any(|l| l.eq_ignore_ascii_case(level.trim())) {
            return Err(format!(
                "invalid log level {level:?} in {text:?} (expected one of: {}, or \
                 directives like \"info,pythond=debug\")",
                LEVELS.join(", ")
            ));
        }
    }
    Ok(())
}

/// `path` if absolute, else `base.join(path)`; `.` components are dropped (`..` are
/// kept: resolving them lexically would be wrong across symlinks).
pub(crate) fn resolve(base: &Path, path: impl AsRef<Path>) -> PathBuf {
    let joined = base.join(path);
    joined
        .components()
        .filter(|c| !matches!(c, Component::CurDir))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("1s"), Ok(Duration::from_secs(1)));
        assert_eq!(parse_duration("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration(" 2h "), Ok(Duration::from_secs(7200)));
        let err = parse_duration("5 parsecs").unwrap_err();
        assert!(
            err.starts_with("invalid duration \"5 parsecs\": unknown time unit"),
            "{err}"
        );
        assert_eq!(
            parse_duration("0s").unwrap_err(),
            "duration \"0s\" must be greater than zero"
        );
        assert_eq!(
            parse_duration("-1s").unwrap_err(),
            "duration \"-1s\" must be greater than zero"
        );
        assert!(parse_duration("").is_err());
        assert!(parse_duration("10").is_err());
    }

    #[test]
    fn byte_sizes() {
        assert_eq!(parse_byte_size("1024"), Ok(1024));
        assert_eq!(parse_byte_size("32MiB"), Ok(32 << 20));
        assert_eq!(parse_byte_size("32 mib"), Ok(32 << 20));
        assert_eq!(parse_byte_size("2KB"), Ok(2000));
        assert_eq!(parse_byte_size("1GiB"), Ok(1 << 30));
        assert_eq!(parse_byte_size("7B"), Ok(7));
        assert!(parse_byte_size("32 parsecs").is_err());
        assert!(parse_byte_size("MiB").is_err());
        assert!(parse_byte_size("-1").is_err());
        assert!(parse_byte_size("1.5MiB").is_err());
        assert_eq!(
            parse_byte_size("0MiB").unwrap_err(),
            "size \"0MiB\" must be greater than zero"
        );
        assert!(parse_byte_size("99999999999999GiB")
            .unwrap_err()
            .contains("too large"));
    }

    #[test]
    fn listen_addresses() {
        for ok in [
            "127.0.0.1:9529",
            "0.0.0.0:0",
            "[::1]:9529",
            "localhost:9529",
            "agent-1.example.com:80",
        ] {
            assert_eq!(check_listen(ok), Ok(()), "{ok}");
        }
        for bad in [
            "127.0.0.1",
            "9529",
            ":9529",
            "localhost:http",
            "localhost:70000",
            "bad host:1",
            "::1:9529",
            "-x:1",
        ] {
            assert!(check_listen(bad).is_err(), "{bad}");
        }
        assert!(listen_is_loopback("127.0.0.1:9529"));
        assert!(listen_is_loopback("[::1]:1"));
        assert!(listen_is_loopback("LOCALHOST:1"));
        assert!(!listen_is_loopback("0.0.0.0:9529"));
        assert!(!listen_is_loopback("10.1.2.3:9529"));
        assert!(!listen_is_loopback("example.com:9529"));
    }

    #[test]
    fn log_levels() {
        for ok in [
            "info",
            "DEBUG",
            "warn,pythond=trace",
            "pythond::worker",
            "off",
        ] {
            assert_eq!(check_log_level(ok), Ok(()), "{ok}");
        }
        for bad in ["", "verbose", "info,", "pythond=loud"] {
            assert!(check_log_level(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn resolving_paths() {
        let base = Path::new("/etc/pythond");
        assert_eq!(resolve(base, "data"), PathBuf::from("/etc/pythond/data"));
        assert_eq!(resolve(base, "./a/./b"), PathBuf::from("/etc/pythond/a/b"));
        assert_eq!(resolve(base, "../x"), PathBuf::from("/etc/pythond/../x"));
        assert_eq!(resolve(base, "/var/lib/p"), PathBuf::from("/var/lib/p"));
    }
}
