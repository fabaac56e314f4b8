//! Text from outside the agent, made safe to log.
//!
//! What a worker writes (its `log` frames, raw output, `set_lasterror`, error messages
//! and tracebacks in `done` and `hello`) ends up inside the agent's own log lines. A
//! newline in it would start a line of its own that looks like the agent's (a forged
//! `ERROR pythond::agent: ...`), and a terminal escape could rewrite what an operator
//! sees. [`escape`] turns every control character into a visible escape, so one message
//! from outside is always exactly one log line (docs/OPERATIONS.md, "Logs").

use std::borrow::Cow;
use std::fmt::Write;

/// `text` with every control character written as an escape: `\n`, `\r` and `\t`;
/// other C0 and C1 controls, DEL and the Unicode line and paragraph separators as
/// `\u{..}`. Everything else, backslashes included, is left as it is. Borrowed when
/// there is nothing to escape (the common case costs no copy).
pub fn escape(text: &str) -> Cow<'_, str> {
    if !text.chars().any(needs_escape) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if needs_escape(c) => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// Bytes from outside (raw worker output) as escaped text: invalid UTF-8 becomes
/// U+FFFD, then [`escape`].
pub fn escape_bytes(bytes: &[u8]) -> String {
    escape(&String::from_utf8_lossy(bytes)).into_owned()
}

fn needs_escape(c: char) -> bool {
    c.is_control() || c == '\u{2028}' || c == '\u{2029}'
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_forged_line_stays_on_the_line_it_came_in() {
        let forged =
            "oops\n2026-12-01T07:16:00Z ERROR pythond::agent: FORGED\r\x1b[2J\u{2028}\u{85}";
        assert_eq!(
            escape(forged),
            "oops\\n2026-12-01T07:16:00Z ERROR pythond::agent: FORGED\\r\\u{1b}[2J\\u{2028}\\u{85}"
        );
    }

    #[test]
    fn plain_text_is_borrowed_unchanged() {
        assert!(matches!(escape("cpu load=1.5 ünïcode"), Cow::Borrowed(_)));
        assert_eq!(escape_bytes(b"ok\xff\x00"), "ok\u{fffd}\\u{0}");
    }

    proptest! {
        #[test]
        fn escaped_text_never_holds_a_control_character(text in any::<String>()) {
            let escaped = escape(&text);
            prop_assert!(!escaped.chars().any(needs_escape));
            // Text without control characters is left exactly as it was.
            if !text.chars().any(needs_escape) {
                prop_assert_eq!(escaped.as_ref(), text.as_str());
            }
        }
    }
}
