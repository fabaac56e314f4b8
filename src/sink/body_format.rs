//! The encodings a network sink stores its records in, each with the code the disk
//! buffer writes into every frame (docs/BUFFER.md, "Frame format").
//!
//! A record's body is ready to send in its sink type's encoding. The code lets a
//! buffer tell records written by a sink of another type under the same `name`
//! (the same buffer directory) from its own, so they are set aside instead of being
//! sent to a backend that cannot read them. The codes are written to disk: they are
//! fixed forever, and a new encoding takes a new number (never an enum position).
//!
//! A sink may also take records in an encoding its type wrote before (remote write
//! records stored uncompressed by an earlier release): [`BodyFormat::receive`]
//! converts those when they are read, so a buffer queued before an upgrade is still
//! delivered.

use std::borrow::Cow;

use super::snappy_block::{self, BlockError, Compressor};

/// One body encoding.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BodyFormat {
    /// Line protocol, one point per line (`datakit`, `influxdb`).
    LineProtocol,
    /// Protobuf `WriteRequest` of Prometheus remote write 1.0, uncompressed
    /// (`prometheus_remote_write` before it stored records compressed; still read).
    RemoteWrite,
    /// Protobuf OTLP export request, uncompressed: metrics for the metric category,
    /// logs for logging (`otlp`).
    Otlp,
    /// Protobuf `WriteRequest` of Prometheus remote write 1.0 as one snappy block
    /// (`prometheus_remote_write`): records are spliced into a request without
    /// being decompressed ([`snappy_block`]).
    RemoteWriteSnappy,
}

/// What a sink makes of a record read from its buffer ([`BodyFormat::receive`]).
#[derive(Debug, PartialEq, Eq)]
pub enum Received {
    /// The body, in the sink's format (converted if it was stored in an older one).
    Own(Vec<u8>),
    /// The body as stored, in another format (its code): not to be sent.
    Foreign(u8, Vec<u8>),
}

impl BodyFormat {
    pub const ALL: [BodyFormat; 4] = [
        BodyFormat::LineProtocol,
        BodyFormat::RemoteWrite,
        BodyFormat::Otlp,
        BodyFormat::RemoteWriteSnappy,
    ];

    /// The code in a frame's body-format byte.
    pub const fn code(self) -> u8 {
        match self {
            BodyFormat::LineProtocol => 1,
            BodyFormat::RemoteWrite => 2,
            BodyFormat::Otlp => 3,
            BodyFormat::RemoteWriteSnappy => 4,
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
            BodyFormat::RemoteWriteSnappy => "prometheus_remote_write_snappy",
        }
    }

    /// Whether a body is text (kept as text in files people read) or binary.
    pub const fn is_text(self) -> bool {
        matches!(self, BodyFormat::LineProtocol)
    }

    /// The format a record stored with format code `stored` is in, for a sink
    /// writing `self`: frames from before the format was recorded (`None`) hold
    /// what the sink's type wrote then (docs/BUFFER.md, "Records in another format").
    fn stored_as(self, stored: Option<u8>) -> Option<BodyFormat> {
        match stored {
            None if self == BodyFormat::RemoteWriteSnappy => Some(BodyFormat::RemoteWrite),
            None => Some(self),
            Some(code) => Self::from_code(code),
        }
    }

    /// Whether a sink writing `self` sends records stored with format code
    /// `stored` (its own, or one it converts); the others are foreign.
    pub fn takes(self, stored: Option<u8>) -> bool {
        match self.stored_as(stored) {
            Some(format) if format == self => true,
            Some(BodyFormat::RemoteWrite) => self == BodyFormat::RemoteWriteSnappy,
            _ => false,
        }
    }

    /// A record's body, stored with format code `stored`, as a sink writing `self`
    /// sends it: converted from an older encoding of its type (uncompressed remote
    /// write is compressed), or foreign. A body that cannot be converted (too large
    /// for a snappy block) is kept as foreign rather than lost.
    pub fn receive(self, stored: Option<u8>, body: Vec<u8>) -> Received {
        let code = stored.unwrap_or(self.code());
        if !self.takes(stored) {
            return Received::Foreign(code, body);
        }
        if self.stored_as(stored) == Some(self) {
            return Received::Own(body);
        }
        let mut compressed = Vec::new();
        match Compressor::default().compress(&body, &mut compressed) {
            Ok(()) => Received::Own(compressed),
            Err(_) => Received::Foreign(BodyFormat::RemoteWrite.code(), body),
        }
    }

    /// A body stored with format `code` as people read it in the foreign and
    /// dead-letter files: snappy blocks decompressed, anything else as it is.
    pub fn plain_body(code: u8, body: &[u8]) -> Result<Cow<'_, [u8]>, BlockError> {
        match Self::from_code(code) {
            Some(BodyFormat::RemoteWriteSnappy) => snappy_block::decompress_body(body),
            _ => Ok(Cow::Borrowed(body)),
        }
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
        assert_eq!(codes, [1, 2, 3, 4]);
        for format in BodyFormat::ALL {
            assert_eq!(BodyFormat::from_code(format.code()), Some(format));
        }
        assert_eq!(BodyFormat::from_code(0), None);
        assert_eq!(BodyFormat::name_of(9), "unknown format 9");
    }

    #[test]
    fn a_remote_write_sink_takes_the_uncompressed_records_of_the_release_before() {
        let plain = b"\x0a\x05hello".repeat(40);
        let sink = BodyFormat::RemoteWriteSnappy;
        // Recorded as uncompressed remote write (code 2), or not recorded at all
        // (frame versions 0 and 1, written when that was the only encoding).
        for stored in [Some(2), None] {
            assert!(sink.takes(stored));
            let Received::Own(body) = sink.receive(stored, plain.clone()) else {
                panic!("{stored:?} is taken");
            };
            assert_eq!(snappy_block::decompress(&body).expect("a block"), plain);
            let shown = BodyFormat::plain_body(sink.code(), &body).expect("plain");
            assert_eq!(shown.as_ref(), plain.as_slice());
        }
        let own = b"already a block".to_vec();
        assert_eq!(
            sink.receive(Some(4), own.clone()),
            Received::Own(own.clone())
        );
        for other in [1, 3, 200] {
            assert!(!sink.takes(Some(other)));
            assert_eq!(
                sink.receive(Some(other), own.clone()),
                Received::Foreign(other, own.clone())
            );
        }
    }

    #[test]
    fn other_sinks_take_only_their_own_format() {
        for sink in [
            BodyFormat::LineProtocol,
            BodyFormat::RemoteWrite,
            BodyFormat::Otlp,
        ] {
            assert!(sink.takes(None));
            for other in BodyFormat::ALL {
                assert_eq!(
                    sink.takes(Some(other.code())),
                    sink == other,
                    "{sink:?} {other:?}"
                );
            }
            let body = b"m v=1i\n".to_vec();
            assert_eq!(
                sink.receive(None, body.clone()),
                Received::Own(body.clone())
            );
            assert_eq!(
                sink.receive(Some(4), body.clone()),
                Received::Foreign(4, body.clone())
            );
        }
    }
}
