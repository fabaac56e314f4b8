//! Points as text for the local sinks: line protocol or NDJSON, one point per line
//! ([`OutputFormat`]; docs/CONFIG.md, "[[sinks]]"). `stdout` writes either, `file`
//! always NDJSON, in the shape `pythond check --format json` prints.

use crate::config::OutputFormat;
use crate::point::Point;

/// Appends `points` to `out` in `format`: one line per point.
pub(crate) fn encode(format: OutputFormat, points: &[&Point], out: &mut Vec<u8>) {
    match format {
        OutputFormat::LineProtocol => {
            let mut text = String::new();
            for point in points {
                point.write_line_protocol(&mut text);
            }
            out.extend_from_slice(text.as_bytes());
        }
        OutputFormat::Json => {
            for point in points {
                point.write_json(out);
            }
        }
    }
}
