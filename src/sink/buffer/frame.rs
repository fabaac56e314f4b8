//! The disk buffer's record frame: how one [`Record`] is laid out in a segment file,
//! how a frame is checked before it is trusted, and how a reader finds the next
//! intact frame after damaged bytes (docs/BUFFER.md, "Frame format").
//!
//! Kept apart from the segment log so the byte layout, the one thing that must stay
//! readable across releases, sits in one small place with its own tests.
//!
//! Version 2 (written by this release), little-endian, 40-byte header then the body:
//!
//! ```text
//!  0  magic        F7 50 42 D1
//!  4  version      2
//!  5  category     Category::buffer_code (1 metric .. 6 rum)
//!  6  body format  BodyFormat::code (1 line protocol, 2 remote write, 3 OTLP, 4 remote write snappy)
//!  7  flags        0, or 1 for a loss marker (category 0, body format 0, no body)
//!  8  body length  u32
//! 12  points       u32
//! 16  seq          u64  points appended to this buffer before this record
//! 24  enqueued ms  u64  Unix ms
//! 32  header crc   CRC-32 of bytes 0..32
//! 36  frame crc    CRC-32 of bytes 0..32 followed by the body
//! 40  body
//! ```
//!
//! Version 1 has the same layout with version `1` and a body-format byte that is
//! always `1` whatever the sink's type wrote: it does not say which encoding the
//! body is in, so a reader takes such a record as being in its sink's own format.
//!
//! The magic read as a version-0 length is far above any frame's size, so the
//! versions cannot be confused. The header CRC bounds the length before the body is
//! read (a damaged length never makes the reader allocate or skip blindly); a frame
//! found by scanning for the magic is only trusted once both CRCs match. `seq` lets
//! a reader that skipped damage count exactly how many points it lost. A loss marker
//! stands where recovery cut damaged frames out of a segment: its `seq` and `points`
//! say which points were lost (and already counted), so a later reader neither
//! delivers nor counts them again.
//!
//! Version 0 (written before the frame was versioned), still read:
//! `[len u32][crc32 of payload u32][payload]`, payload
//! `[category index u8][points u32][enqueued ms u64][body]`, the category being its
//! position in [`LEGACY_CATEGORIES`]; like version 1 it does not record the format.

use std::fs::File;
use std::io;

use super::fileio::read_up_to_at;
use super::Record;
use crate::point::Category;
use crate::sink::body_format::BodyFormat;

/// First bytes of every version-1 frame.
pub(super) const MAGIC: [u8; 4] = [0xF7, 0x50, 0x42, 0xD1];
/// The frame version this release writes.
const VERSION: u8 = 2;
/// The version before the body format was recorded.
const VERSION_1: u8 = 1;
/// The body-format byte of every version-1 frame, whatever its body.
const V1_FORMAT: u8 = 1;
/// Flag of a loss marker.
const FLAG_LOST: u8 = 1;
/// Size of a version-1 header.
pub(super) const HEADER: usize = 40;
/// A body claiming more than this is corruption, not data.
const MAX_BODY: u32 = 256 << 20;

/// Version 0: frame header (length, CRC) and payload header (category, points, ms).
const V0_FRAME_HEADER: usize = 8;
const V0_RECORD_HEADER: usize = 1 + 4 + 8;
/// Version 0 stored a category as its index in this list, which is frozen here
/// (it was `Category::ALL` when version 0 was written).
const LEGACY_CATEGORIES: [Category; 6] = [
    Category::Metric,
    Category::Logging,
    Category::Object,
    Category::CustomObject,
    Category::Keyevent,
    Category::Rum,
];

/// How far one read of the resynchronising scan looks ahead.
const SCAN_CHUNK: usize = 64 << 10;

/// One intact frame.
#[derive(Debug)]
pub(super) struct Frame {
    pub record: Record,
    /// Points appended to the buffer before this record; `None` for version 0.
    pub seq: Option<u64>,
    /// The body format's code; `None` where the frame does not record it
    /// (versions 0 and 1).
    pub format: Option<u8>,
    /// Bytes the frame takes in the segment.
    pub len: u64,
}

impl Frame {
    /// The `seq` the record after this one has.
    pub fn next_seq(&self) -> Option<u64> {
        self.seq.map(|s| s + u64::from(self.record.points))
    }
}

/// What is at an offset of a segment.
#[derive(Debug)]
pub(super) enum Found {
    Frame(Frame),
    /// A loss marker: points `seq..seq + points` were lost to damage and counted.
    Lost {
        seq: u64,
        points: u64,
        len: u64,
    },
    /// The offset is the end of the readable data.
    End,
    /// No intact frame starts here: damage, or a write cut short.
    Damaged,
}

/// Appends `record`'s frame to `out`, its body in `format`.
#[cfg(test)]
pub(super) fn encode(record: &Record, seq: u64, format: BodyFormat, out: &mut Vec<u8>) {
    encode_header(record, seq, format, out);
    out.extend_from_slice(&record.body);
}

/// Appends the header of `record`'s frame to `out` (both CRCs computed): the
/// body follows it on disk, written from the record itself.
pub(super) fn encode_header(record: &Record, seq: u64, format: BodyFormat, out: &mut Vec<u8>) {
    let start = out.len();
    out.extend_from_slice(&MAGIC);
    out.push(VERSION);
    out.push(record.category.buffer_code());
    out.push(format.code());
    out.push(0);
    out.extend_from_slice(&(record.body.len() as u32).to_le_bytes());
    out.extend_from_slice(&record.points.to_le_bytes());
    out.extend_from_slice(&seq.to_le_bytes());
    out.extend_from_slice(&record.enqueued_ms.to_le_bytes());
    let header_crc = crc32fast::hash(&out[start..start + 32]);
    out.extend_from_slice(&header_crc.to_le_bytes());
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&out[start..start + 32]);
    hasher.update(&record.body);
    out.extend_from_slice(&hasher.finalize().to_le_bytes());
}

/// Appends a loss marker for points `seq..seq + points` to `out`.
pub(super) fn encode_lost(seq: u64, points: u64, out: &mut Vec<u8>) {
    let start = out.len();
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&[VERSION, 0, 0, FLAG_LOST]);
    out.extend_from_slice(&0u32.to_le_bytes());
    out.extend_from_slice(&(points.min(u64::from(u32::MAX)) as u32).to_le_bytes());
    out.extend_from_slice(&seq.to_le_bytes());
    out.extend_from_slice(&0u64.to_le_bytes());
    let crc = crc32fast::hash(&out[start..start + 32]);
    out.extend_from_slice(&crc.to_le_bytes());
    out.extend_from_slice(&crc.to_le_bytes());
}

/// A checked version-1 or version-2 header.
struct Header {
    /// `None` for a loss marker.
    category: Option<Category>,
    /// `None` for version 1 (not recorded) and for a loss marker.
    format: Option<u8>,
    body_len: u32,
    points: u32,
    seq: u64,
    enqueued_ms: u64,
    frame_crc: u32,
}

impl Header {
    /// Bytes the frame takes: header and body.
    fn len(&self) -> u64 {
        HEADER as u64 + u64::from(self.body_len)
    }
}

fn parse_header(bytes: &[u8; HEADER]) -> Option<Header> {
    if bytes[..4] != MAGIC || bytes[7] > FLAG_LOST {
        return None;
    }
    let lost = bytes[7] == FLAG_LOST;
    let format = match (bytes[4], bytes[6]) {
        (VERSION_1, V1_FORMAT) => None,
        (VERSION, 0) if lost => None,
        (VERSION, code) if code != 0 && !lost => Some(code),
        _ => return None,
    };
    if crc32fast::hash(&bytes[..32]) != le_u32(&bytes[32..36]) {
        return None;
    }
    let body_len = le_u32(&bytes[8..12]);
    if body_len > MAX_BODY {
        return None;
    }
    let category = if lost {
        if bytes[5] != 0 || body_len != 0 {
            return None;
        }
        None
    } else {
        Some(Category::from_buffer_code(bytes[5])?)
    };
    Some(Header {
        category,
        format,
        body_len,
        points: le_u32(&bytes[12..16]),
        seq: le_u64(&bytes[16..24]),
        enqueued_ms: le_u64(&bytes[24..32]),
        frame_crc: le_u32(&bytes[36..40]),
    })
}

/// Reads the version-1 or version-2 frame at `offset`, which must end by `limit`.
pub(super) fn read_at(file: &File, offset: u64, limit: u64) -> io::Result<Found> {
    if offset >= limit {
        return Ok(Found::End);
    }
    if limit - offset < HEADER as u64 {
        return Ok(Found::Damaged);
    }
    let mut head = [0u8; HEADER];
    if !read_exact_at(file, &mut head, offset)? {
        return Ok(Found::Damaged);
    }
    let Some(header) = parse_header(&head) else {
        return Ok(Found::Damaged);
    };
    if header.len() > limit - offset {
        return Ok(Found::Damaged);
    }
    let mut body = vec![0u8; header.body_len as usize];
    if !read_exact_at(file, &mut body, offset + HEADER as u64)? {
        return Ok(Found::Damaged);
    }
    Ok(checked(&head, header, body))
}

/// The frame of a parsed `header` (its bytes `head`) with `body`, once the frame CRC
/// matches.
fn checked(head: &[u8; HEADER], header: Header, body: Vec<u8>) -> Found {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&head[..32]);
    hasher.update(&body);
    if hasher.finalize() != header.frame_crc {
        return Found::Damaged;
    }
    let len = header.len();
    let Some(category) = header.category else {
        return Found::Lost {
            seq: header.seq,
            points: u64::from(header.points),
            len,
        };
    };
    Found::Frame(Frame {
        record: Record {
            category,
            points: header.points,
            enqueued_ms: header.enqueued_ms,
            body,
        },
        seq: Some(header.seq),
        format: header.format,
        len,
    })
}

/// Smallest read of a [`Window`]: short of a frame's end, reading ahead is cheaper
/// than one more read.
const MIN_WINDOW_READ: usize = 64 << 10;
/// Largest read of a [`Window`] (a delivery batch is at most 8 MiB of bodies): a
/// frame larger than this is read on its own.
const MAX_WINDOW_READ: usize = 10 << 20;

/// A run of a segment's committed bytes read with one `pread` into one buffer, kept
/// from one read to the next, that version-1 and version-2 frames are parsed from:
/// reading a batch costs one read, not two per frame, and no fresh zeroed buffer
/// per frame (only the records' bodies are copied out). Holds bytes of one file;
/// [`Window::clear`] it before reading another or when its bytes may have changed.
#[derive(Debug, Default)]
pub(super) struct Window {
    bytes: Vec<u8>,
    /// The file offset of `bytes[0]`.
    start: u64,
    /// How much of `bytes` holds the file's bytes.
    len: usize,
}

impl Window {
    /// Forgets the bytes held (the buffer itself is kept for the next read).
    pub fn clear(&mut self) {
        self.len = 0;
    }

    /// [`read_at`] through the window: the frame at `offset`, which must end by
    /// `limit`, served from the bytes held, or from a refill that reads from
    /// `offset` at least `ahead` bytes (as far as `limit`; all of the frame).
    pub fn read_at(
        &mut self,
        file: &File,
        offset: u64,
        limit: u64,
        ahead: usize,
    ) -> io::Result<Found> {
        if offset >= limit {
            return Ok(Found::End);
        }
        if limit - offset < HEADER as u64 {
            return Ok(Found::Damaged);
        }
        if !self.holds(offset, HEADER as u64) {
            self.fill(file, offset, limit, ahead, HEADER)?;
        }
        let Some(head) = self.slice(offset, HEADER as u64) else {
            // The file ends before the header does.
            return Ok(Found::Damaged);
        };
        let head: [u8; HEADER] = head.try_into().unwrap_or([0; HEADER]);
        let Some(header) = parse_header(&head) else {
            return Ok(Found::Damaged);
        };
        let len = header.len();
        if len > limit - offset {
            return Ok(Found::Damaged);
        }
        if len > MAX_WINDOW_READ as u64 {
            return read_at(file, offset, limit);
        }
        if !self.holds(offset, len) {
            self.fill(file, offset, limit, ahead, len as usize)?;
        }
        let Some(frame) = self.slice(offset, len) else {
            return Ok(Found::Damaged);
        };
        Ok(checked(&head, header, frame[HEADER..].to_vec()))
    }

    fn holds(&self, offset: u64, len: u64) -> bool {
        offset >= self.start && offset + len <= self.start + self.len as u64
    }

    fn slice(&self, offset: u64, len: u64) -> Option<&[u8]> {
        if !self.holds(offset, len) {
            return None;
        }
        let at = (offset - self.start) as usize;
        Some(&self.bytes[at..at + len as usize])
    }

    /// Reads from `offset` at least `need` bytes, `ahead` if the limit allows. A
    /// read ahead that fails (a bad sector further on) is tried again for `need`
    /// alone, so that the frames before the fault are still read.
    fn fill(
        &mut self,
        file: &File,
        offset: u64,
        limit: u64,
        ahead: usize,
        need: usize,
    ) -> io::Result<()> {
        let left = usize::try_from(limit - offset).unwrap_or(usize::MAX);
        let want = ahead
            .clamp(MIN_WINDOW_READ, MAX_WINDOW_READ)
            .max(need)
            .min(left);
        self.len = 0;
        self.start = offset;
        if self.bytes.len() < want {
            // Zeroed once, when the buffer grows; reused after that.
            self.bytes.resize(want, 0);
        }
        let got = match read_up_to_at(file, &mut self.bytes[..want], offset) {
            Ok(got) => got,
            Err(_) if want > need => read_up_to_at(file, &mut self.bytes[..need], offset)?,
            Err(error) => return Err(error),
        };
        self.len = got;
        Ok(())
    }
}

/// Reads the version-0 frame at `offset`, which must end by `limit`.
pub(super) fn read_legacy_at(file: &File, offset: u64, limit: u64) -> io::Result<Found> {
    if offset >= limit {
        return Ok(Found::End);
    }
    let mut head = [0u8; V0_FRAME_HEADER];
    if !read_exact_at(file, &mut head, offset)? {
        return Ok(Found::Damaged);
    }
    let len = le_u32(&head[..4]);
    let crc = le_u32(&head[4..8]);
    if (len as usize) < V0_RECORD_HEADER || len > MAX_BODY {
        return Ok(Found::Damaged);
    }
    let frame_len = (V0_FRAME_HEADER as u64) + u64::from(len);
    if frame_len > limit - offset {
        return Ok(Found::Damaged);
    }
    let mut payload = vec![0u8; len as usize];
    if !read_exact_at(file, &mut payload, offset + V0_FRAME_HEADER as u64)? {
        return Ok(Found::Damaged);
    }
    if crc32fast::hash(&payload) != crc {
        return Ok(Found::Damaged);
    }
    let Some(category) = LEGACY_CATEGORIES.get(usize::from(payload[0])).copied() else {
        return Ok(Found::Damaged);
    };
    let points = le_u32(&payload[1..5]);
    let enqueued_ms = le_u64(&payload[5..13]);
    let body = payload.split_off(V0_RECORD_HEADER);
    Ok(Found::Frame(Frame {
        record: Record {
            category,
            points,
            enqueued_ms,
            body,
        },
        seq: None,
        format: None,
        len: frame_len,
    }))
}

/// Whether a segment holding `limit` bytes was written in version 0: it does not
/// start with the magic and its first frame is an intact version-0 frame.
pub(super) fn is_legacy(file: &File, limit: u64) -> io::Result<bool> {
    let mut start = [0u8; 4];
    if limit < 4 || !read_exact_at(file, &mut start, 0)? || start == MAGIC {
        return Ok(false);
    }
    Ok(matches!(read_legacy_at(file, 0, limit)?, Found::Frame(_)))
}

/// The offset of the first intact version-1 or version-2 frame at or after `from` that ends by
/// `limit`, if any: candidates are found by their magic and trusted only when both
/// CRCs match.
pub(super) fn resync(file: &File, from: u64, limit: u64) -> io::Result<Option<u64>> {
    let mut chunk = vec![0u8; SCAN_CHUNK];
    let mut at = from;
    while at < limit {
        let want = ((limit - at) as usize).min(SCAN_CHUNK);
        let got = read_up_to_at(file, &mut chunk[..want], at)?;
        if got < MAGIC.len() {
            return Ok(None);
        }
        let window = &chunk[..got];
        for i in 0..=got - MAGIC.len() {
            if window[i..i + MAGIC.len()] == MAGIC {
                let candidate = at + i as u64;
                if let Found::Frame(_) | Found::Lost { .. } = read_at(file, candidate, limit)? {
                    return Ok(Some(candidate));
                }
            }
        }
        if got < want {
            return Ok(None);
        }
        // Overlap so a magic split across two reads is still seen.
        at += (got - (MAGIC.len() - 1)) as u64;
    }
    Ok(None)
}

/// The enqueue time in the intact header at `offset`.
pub(super) fn peek_ms(file: &File, offset: u64, legacy: bool) -> Option<u64> {
    if legacy {
        let mut head = [0u8; V0_FRAME_HEADER + V0_RECORD_HEADER];
        read_exact_at(file, &mut head, offset).ok()?.then_some(())?;
        return Some(le_u64(&head[V0_FRAME_HEADER + 5..]));
    }
    let mut head = [0u8; HEADER];
    read_exact_at(file, &mut head, offset).ok()?.then_some(())?;
    parse_header(&head)
        .filter(|h| h.category.is_some())
        .map(|h| h.enqueued_ms)
}

/// Fills `buf` from `offset`; false if the file ends first.
fn read_exact_at(file: &File, buf: &mut [u8], offset: u64) -> io::Result<bool> {
    Ok(read_up_to_at(file, buf, offset)? == buf.len())
}

fn le_u32(bytes: &[u8]) -> u32 {
    let mut b = [0u8; 4];
    b.copy_from_slice(&bytes[..4]);
    u32::from_le_bytes(b)
}

fn le_u64(bytes: &[u8]) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&bytes[..8]);
    u64::from_le_bytes(b)
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use std::io::Write;

    fn record(i: u32, category: Category) -> Record {
        Record {
            category,
            points: i + 1,
            enqueued_ms: 1_700_000_000_000 + u64::from(i),
            body: format!("m v={i}i\n").repeat(i as usize + 1).into_bytes(),
        }
    }

    const FORMAT: BodyFormat = BodyFormat::LineProtocol;

    /// The writer of the release before the body format was recorded (version 1),
    /// frozen: byte 6 is `1` whatever the body.
    pub(in crate::sink::buffer) fn encode_v1(record: &Record, seq: u64, out: &mut Vec<u8>) {
        let start = out.len();
        out.extend_from_slice(&MAGIC);
        out.extend_from_slice(&[1, record.category.buffer_code(), 1, 0]);
        out.extend_from_slice(&(record.body.len() as u32).to_le_bytes());
        out.extend_from_slice(&record.points.to_le_bytes());
        out.extend_from_slice(&seq.to_le_bytes());
        out.extend_from_slice(&record.enqueued_ms.to_le_bytes());
        let header_crc = crc32fast::hash(&out[start..start + 32]);
        out.extend_from_slice(&header_crc.to_le_bytes());
        let mut hasher = crc32fast::Hasher::new();
        hasher.update(&out[start..start + 32]);
        hasher.update(&record.body);
        out.extend_from_slice(&hasher.finalize().to_le_bytes());
        out.extend_from_slice(&record.body);
    }

    /// The version-1 loss marker, frozen likewise.
    pub(in crate::sink::buffer) fn encode_lost_v1(seq: u64, points: u64, out: &mut Vec<u8>) {
        let start = out.len();
        out.extend_from_slice(&MAGIC);
        out.extend_from_slice(&[1, 0, 1, 1]);
        out.extend_from_slice(&0u32.to_le_bytes());
        out.extend_from_slice(&(points as u32).to_le_bytes());
        out.extend_from_slice(&seq.to_le_bytes());
        out.extend_from_slice(&0u64.to_le_bytes());
        let crc = crc32fast::hash(&out[start..start + 32]);
        out.extend_from_slice(&crc.to_le_bytes());
        out.extend_from_slice(&crc.to_le_bytes());
    }

    /// One version-1 frame as the previous release wrote it: a metric record of two
    /// points `m v=1i\n` (seq 7, enqueued at 1_700_000_000_000 ms).
    const V1_FIXTURE: &str = "f75042d1 01 01 01 00 07000000 02000000 0700000000000000 \
        0068e5cf8b010000 cdffa4c6 22a9beea 6d20763d31690a";

    fn hex(text: &str) -> Vec<u8> {
        let digits: Vec<u8> = text
            .bytes()
            .filter(u8::is_ascii_hexdigit)
            .map(|b| (b as char).to_digit(16).expect("hex") as u8)
            .collect();
        digits.chunks(2).map(|p| p[0] << 4 | p[1]).collect()
    }

    #[test]
    fn a_version_1_frame_is_read_without_a_format() {
        let record = Record {
            category: Category::Metric,
            points: 2,
            enqueued_ms: 1_700_000_000_000,
            body: b"m v=1i\n".to_vec(),
        };
        let fixture = hex(V1_FIXTURE);
        let mut frozen = Vec::new();
        encode_v1(&record, 7, &mut frozen);
        assert_eq!(frozen, fixture, "the frozen version-1 writer changed");
        let (file, limit) = file_with(&fixture);
        let Found::Frame(frame) = read_at(file.as_file(), 0, limit).expect("read") else {
            panic!("a version-1 frame is not read");
        };
        assert_eq!(
            (frame.record, frame.seq, frame.format),
            (record, Some(7), None)
        );
        let mut marker = Vec::new();
        encode_lost_v1(3, 2, &mut marker);
        let (file, limit) = file_with(&marker);
        assert!(matches!(
            read_at(file.as_file(), 0, limit).expect("read"),
            Found::Lost {
                seq: 3,
                points: 2,
                len: 40
            }
        ));
    }

    #[test]
    fn every_format_code_round_trips_and_an_unknown_one_is_kept() {
        let mut bytes = Vec::new();
        for format in BodyFormat::ALL {
            encode(&record(1, Category::Metric), 0, format, &mut bytes);
        }
        // A code a later release may use: still an intact frame, not damage.
        let mut later = Vec::new();
        encode(&record(1, Category::Metric), 0, FORMAT, &mut later);
        later[6] = 200;
        let crc = crc32fast::hash(&later[..32]);
        later[32..36].copy_from_slice(&crc.to_le_bytes());
        let mut hasher = crc32fast::Hasher::new();
        hasher.update(&later[..32]);
        hasher.update(&later[HEADER..]);
        later[36..40].copy_from_slice(&hasher.finalize().to_le_bytes());
        bytes.extend_from_slice(&later);
        let (file, limit) = file_with(&bytes);
        let formats: Vec<Option<u8>> = read_all(file.as_file(), limit)
            .iter()
            .map(|f| f.format)
            .collect();
        assert_eq!(formats, [Some(1), Some(2), Some(3), Some(4), Some(200)]);
    }

    fn file_with(bytes: &[u8]) -> (tempfile::NamedTempFile, u64) {
        let mut file = tempfile::NamedTempFile::new().expect("temp");
        file.write_all(bytes).expect("write");
        (file, bytes.len() as u64)
    }

    fn read_all(file: &File, limit: u64) -> Vec<Frame> {
        let mut out = Vec::new();
        let mut at = 0;
        while let Found::Frame(frame) = read_at(file, at, limit).expect("read") {
            at += frame.len;
            out.push(frame);
        }
        out
    }

    #[test]
    fn a_window_reads_what_read_at_reads_whatever_its_read_size() {
        let mut bytes = Vec::new();
        encode_lost(0, 0, &mut bytes);
        let mut seq = 0;
        for i in 0..40 {
            // Bodies from a few bytes to past the smallest window read.
            let mut record = record(i, Category::ALL[i as usize % 6]);
            record.body = record.body.repeat(1 + (i as usize * 97) % 400);
            encode(&record, seq, FORMAT, &mut bytes);
            seq += u64::from(record.points);
        }
        // A flipped body byte in one frame, and a frame cut short at the end.
        let damaged_at = bytes.len() - 3;
        let mut cut = Vec::new();
        encode(&record(1, Category::Metric), seq, FORMAT, &mut cut);
        bytes.extend_from_slice(&cut[..cut.len() - 1]);
        bytes[damaged_at] ^= 1;
        let (file, limit) = file_with(&bytes);
        let summary = |found: Found| match found {
            Found::Frame(frame) => format!("{:?} {:?} {}", frame.record, frame.seq, frame.len),
            other => format!("{other:?}"),
        };
        for ahead in [0, 100, MIN_WINDOW_READ + 1, 1 << 20, usize::MAX] {
            let mut window = Window::default();
            let mut at = 0;
            loop {
                let direct = read_at(file.as_file(), at, limit).expect("read");
                let through = window
                    .read_at(file.as_file(), at, limit, ahead)
                    .expect("read");
                let len = match &direct {
                    Found::Frame(frame) => frame.len,
                    Found::Lost { len, .. } => *len,
                    _ => 0,
                };
                assert_eq!(summary(through), summary(direct), "at {at}, ahead {ahead}");
                if len == 0 {
                    break;
                }
                at += len;
            }
            assert!(at < damaged_at as u64, "stopped at the damaged frame");
        }
    }

    #[test]
    fn magic_is_no_plausible_legacy_length() {
        assert!(u32::from_le_bytes(MAGIC) > MAX_BODY);
    }

    #[test]
    fn every_category_round_trips_with_its_seq() {
        let mut bytes = Vec::new();
        for (i, category) in Category::ALL.iter().enumerate() {
            encode(
                &record(i as u32, *category),
                100 * i as u64,
                FORMAT,
                &mut bytes,
            );
        }
        let (file, limit) = file_with(&bytes);
        let frames = read_all(file.as_file(), limit);
        assert_eq!(frames.len(), Category::ALL.len());
        for (i, frame) in frames.iter().enumerate() {
            assert_eq!(frame.record, record(i as u32, Category::ALL[i]));
            assert_eq!(frame.seq, Some(100 * i as u64));
        }
        assert!(!is_legacy(file.as_file(), limit).expect("detect"));
    }

    #[test]
    fn every_single_flipped_bit_is_detected() {
        let mut bytes = Vec::new();
        encode(&record(2, Category::Logging), 7, FORMAT, &mut bytes);
        for i in 0..bytes.len() * 8 {
            let mut damaged = bytes.clone();
            damaged[i / 8] ^= 1 << (i % 8);
            let (file, limit) = file_with(&damaged);
            assert!(
                matches!(
                    read_at(file.as_file(), 0, limit).expect("read"),
                    Found::Damaged
                ),
                "bit {i} flipped went unnoticed"
            );
        }
    }

    #[test]
    fn resync_finds_the_next_intact_frame_after_garbage() {
        let mut bytes = Vec::new();
        encode(&record(0, Category::Metric), 0, FORMAT, &mut bytes);
        let first = bytes.len() as u64;
        // Garbage that even contains the magic, and a frame cut short.
        bytes.extend_from_slice(b"garbage");
        bytes.extend_from_slice(&MAGIC);
        bytes.extend_from_slice(&[0xAB; 100]);
        let mut cut = Vec::new();
        encode(&record(1, Category::Metric), 1, FORMAT, &mut cut);
        bytes.extend_from_slice(&cut[..cut.len() - 3]);
        let next = bytes.len() as u64;
        encode(&record(2, Category::Rum), 3, FORMAT, &mut bytes);
        let (file, limit) = file_with(&bytes);
        assert!(matches!(
            read_at(file.as_file(), first, limit).expect("read"),
            Found::Damaged
        ));
        assert_eq!(
            resync(file.as_file(), first, limit).expect("scan"),
            Some(next)
        );
        // Not found when the only intact frame does not fit before the limit.
        assert_eq!(
            resync(file.as_file(), first, limit - 1).expect("scan"),
            None
        );
    }

    #[test]
    fn a_loss_marker_is_told_from_data() {
        let mut bytes = Vec::new();
        encode_lost(41, 3, &mut bytes);
        assert_eq!(bytes.len(), HEADER);
        encode(&record(0, Category::Metric), 44, FORMAT, &mut bytes);
        let (file, limit) = file_with(&bytes);
        assert!(matches!(
            read_at(file.as_file(), 0, limit).expect("read"),
            Found::Lost {
                seq: 41,
                points: 3,
                len: 40
            }
        ));
        assert_eq!(resync(file.as_file(), 0, limit).expect("scan"), Some(0));
        let mut flipped = bytes.clone();
        flipped[5] = 1; // a marker claiming a category is damage
        let (file, limit) = file_with(&flipped);
        assert!(matches!(
            read_at(file.as_file(), 0, limit).expect("read"),
            Found::Damaged
        ));
    }

    #[test]
    fn resync_sees_a_magic_split_across_reads() {
        for shift in 0..6 {
            let mut bytes = vec![0u8; SCAN_CHUNK - shift];
            let at = bytes.len() as u64;
            encode(&record(0, Category::Object), 0, FORMAT, &mut bytes);
            let (file, limit) = file_with(&bytes);
            assert_eq!(resync(file.as_file(), 0, limit).expect("scan"), Some(at));
        }
    }
}
