//! How the process logs: which filter wins, and whether it is coloured.
//!
//! One rule for every command (docs/OPERATIONS.md, "Logs"): `--log-level` wins; else
//! `-v`/`-q` move the command's default level up or down (`-v` info → debug, `-vv`
//! trace; `-q` warn, `-qq` error, `-qqq` off); else `RUST_LOG`; else the config's
//! `[agent] log_level`; else the command's default. Logs go to stderr; colours only
//! on a terminal and never when `NO_COLOR` is set to anything non-empty
//! (<https://no-color.org>).

use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

/// The levels `-v` and `-q` step through, quietest first.
const LEVELS: [&str; 6] = ["off", "error", "warn", "info", "debug", "trace"];

/// What the command line said about logging.
#[derive(Clone, Debug, Default)]
pub struct LogFlags {
    /// `--log-level`: a level or filter directives, already validated.
    pub level: Option<String>,
    /// How many `-v`.
    pub verbose: u8,
    /// How many `-q`.
    pub quiet: u8,
}

/// A command's own default: its filter directives and the plain level `-v`/`-q`
/// start from.
#[derive(Clone, Copy, Debug)]
pub struct Defaults {
    pub filter: &'static str,
    pub level: &'static str,
}

/// The filter directives in force, by the precedence in the module documentation.
/// `rust_log` is the `RUST_LOG` environment variable, if set.
pub fn filter(
    flags: &LogFlags,
    rust_log: Option<&str>,
    configured: Option<&str>,
    defaults: Defaults,
) -> String {
    if let Some(level) = &flags.level {
        return level.clone();
    }
    if flags.verbose > 0 || flags.quiet > 0 {
        let base = LEVELS
            .iter()
            .position(|l| *l == defaults.level)
            .unwrap_or(3) as i32;
        let index = (base + i32::from(flags.verbose) - i32::from(flags.quiet))
            .clamp(0, LEVELS.len() as i32 - 1);
        return LEVELS[index as usize].to_string();
    }
    rust_log
        .filter(|s| !s.trim().is_empty())
        .or(configured)
        .unwrap_or(defaults.filter)
        .to_string()
}

/// Whether to colour: a terminal, and no non-empty `NO_COLOR`.
pub fn use_colour(is_terminal: bool, no_color: Option<&std::ffi::OsStr>) -> bool {
    is_terminal && no_color.map_or(true, |v| v.is_empty())
}

/// Installs the process's logger on stderr.
pub fn init(flags: &LogFlags, configured: Option<&str>, defaults: Defaults, format: LogFormat) {
    let rust_log = std::env::var("RUST_LOG").ok();
    let directives = filter(flags, rust_log.as_deref(), configured, defaults);
    let filter = EnvFilter::try_new(&directives).unwrap_or_else(|error| {
        eprintln!(
            "warning: log filter {directives:?} is not valid ({error}); using {:?}",
            defaults.filter
        );
        EnvFilter::new(defaults.filter)
    });
    let ansi = use_colour(
        std::io::IsTerminal::is_terminal(&std::io::stderr()),
        std::env::var_os("NO_COLOR").as_deref(),
    );
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RUN: Defaults = Defaults {
        filter: "info",
        level: "info",
    };

    fn flags(level: Option<&str>, verbose: u8, quiet: u8) -> LogFlags {
        LogFlags {
            level: level.map(str::to_string),
            verbose,
            quiet,
        }
    }

    #[test]
    fn the_flag_wins_then_verbosity_then_rust_log_then_the_config() {
        let all = |f: &LogFlags| filter(f, Some("warn"), Some("error"), RUN);
        assert_eq!(all(&flags(Some("trace"), 0, 2)), "trace");
        assert_eq!(all(&flags(None, 1, 0)), "debug");
        assert_eq!(all(&flags(None, 0, 0)), "warn");
        assert_eq!(
            filter(&flags(None, 0, 0), None, Some("error"), RUN),
            "error"
        );
        assert_eq!(filter(&flags(None, 0, 0), Some(""), None, RUN), "info");
    }

    #[test]
    fn verbosity_steps_from_the_default_and_stops_at_the_ends() {
        let level = |v, q| filter(&flags(None, v, q), None, None, RUN);
        assert_eq!(level(2, 0), "trace");
        assert_eq!(level(9, 0), "trace");
        assert_eq!(level(0, 1), "warn");
        assert_eq!(level(0, 2), "error");
        assert_eq!(level(0, 9), "off");
        let check = Defaults {
            filter: "warn,pythond::ingest=info",
            level: "warn",
        };
        assert_eq!(filter(&flags(None, 1, 0), None, None, check), "info");
    }

    #[test]
    fn no_color_turns_colours_off_even_on_a_terminal() {
        use std::ffi::OsStr;
        assert!(use_colour(true, None));
        assert!(use_colour(true, Some(OsStr::new(""))));
        assert!(!use_colour(true, Some(OsStr::new("1"))));
        assert!(!use_colour(false, None));
    }
}
