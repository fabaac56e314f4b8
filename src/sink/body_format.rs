//! The encodings a network sink stores its records in, each with the code the disk
//! buffer writes into every frame (docs/BUFFER.md, "Frame format").
//!
//! A record's body is ready to send in its sink type's encoding. The code lets a
//! buffer tell records written by a sink of another type under the same `name`
//! (the same buffer directory) from its own, so they are set aside instead of being
//! sent to a backend that cannot read them. The codes are written to disk: they are
//! fixed forever, and a new encoding takes a new number (never an enum position).

/// One body encoding.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BodyFormat {
    /// Line protocol, one point per line (`datakit`, `influxdb`).
    LineProtocol,
    /// Protobuf `WriteRequest` of Prometheus remote write 1.0, uncompressed
    /// (`prometheus_remote_write`).
    RemoteWrite,
    /// Protobuf OTLP export request, uncompressed: metrics for the metric category,
    /// logs for logging (`otlp`).
    Otlp,
}

impl BodyFormat {
    pub const ALL: [BodyFormat; 3] = [
        BodyFormat::LineProtocol,
        BodyFormat::RemoteWrite,
        BodyFormat::Otlp,
    ];

    /// The code in a frame's body-format byte.
    pub const fn code(self) -> u8 {
        match self {
            BodyFormat::LineProtocol => 1,
            BodyFormat::RemoteWrite => 2,
            BodyFormat::Otlp => 3,
        }
    }

    pub fn from_code(code: u8) -> Option<Self> {
        Self::ALL.into_iter().find(|f| f.code() == code)
    }

    /// Its name in logs and in the foreign-records file.
    pub const fn name(self) -> &'static str {
        match self {
            BodyFormat::LineProtocol => "line_protocol",
            BodyFormat::RemoteWrite => "prometheus_remote_write",
            BodyFormat::Otlp => "otlp",
        }
    }

    /// Whether a body is text (kept as text in files people read) or binary.
    pub const fn is_text(self) -> bool {
        matches!(self, BodyFormat::LineProtocol)
    }

    /// The name of the format with `code`, also for a code this release does not
    /// know (written by a later one).
    pub fn name_of(code: u8) -> String {
        match Self::from_code(code) {
            Some(format) => format.name().to_string(),
            None => format!("unknown format {code}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_fixed_and_distinct() {
        // Written to disk: changing one would misread every buffer written before.
        let codes: Vec<u8> = BodyFormat::ALL.iter().map(|f| f.code()).collect();
        assert_eq!(codes, [1, 2, 3]);
        for format in BodyFormat::ALL {
            assert_eq!(BodyFormat::from_code(format.code()), Some(format));
        }
        assert_eq!(BodyFormat::from_code(0), None);
        assert_eq!(BodyFormat::name_of(9), "unknown format 9");
    }
}
