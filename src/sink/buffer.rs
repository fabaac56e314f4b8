//! The disk buffer in front of each network sink: a segment log under
//! `data_dir/buffers/<sink name>/`.
//!
//! Why a hand-written segment log rather than an embedded key-value store: the buffer
//! is a FIFO with one writer and one reader, and its two hard requirements — group
//! commit (one `fdatasync` for every append waiting at that instant) and "drop the
//! oldest data when over `max_bytes`" — map onto append-only files and deleting the
//! oldest file directly. A B-tree store would add write amplification, compaction and
//! a dependency without buying anything a FIFO needs.
//!
//! Layout: `NNNNNNNNNNNNNNNNNNNN.seg` segment files (ids increase) and an `ack` file.
//! Each segment is a sequence of frames (the versioned layout is in [`frame`] and
//! docs/BUFFER.md), each holding one [`Record`]: category, point count, enqueue time
//! and the body in line protocol, ready to send. `ack` holds
//! `"<segment> <offset> <seq>\n"`: the position up to which the backend has accepted
//! everything, and the running point number there (`seq`, absent in files written
//! before frames carried it).
//!
//! Durability: an append is acknowledged to the caller only after its frames are
//! written and `fdatasync`ed (and, for a new segment, the directory too). Appends that
//! wait at the same time share one sync (group commit), so throughput does not
//! collapse to one sync per report. With `fsync = "<duration>"` an append is
//! acknowledged once written (the page cache survives a crash or SIGKILL of the agent)
//! and synced in the background at most that long later. The `ack` file is rewritten
//! in place (one fixed-length line with a CRC) without a sync: after a power loss it
//! can only lag, or fail its CRC and be ignored, which means some points are sent
//! twice, never that one is lost (at-least-once).
//!
//! Reading (docs/BUFFER.md, "Delivery"): the writer publishes what it committed as
//! running totals (points, frame bytes) on a watch that wakes the reader only once
//! the totals reach a target the reader set — enough to fill its batch — so that
//! group commits of a few records do not each cost a read. A read fetches the run
//! of frames it needs with one `pread` into a buffer kept from read to read and
//! parses the frames out of it.
//!
//! Recovery (docs/BUFFER.md): on open every queued segment is scanned. Damaged bytes
//! (a torn write at the instant of a crash, flipped bits, garbage) are skipped up to
//! the next frame that validates fully, so only the damaged frames are lost; the
//! segment is then rewritten without them (or truncated, for damage at its end) so
//! the next start does not report them again. The delivery side does the same when it
//! meets damage while the agent runs, and goes on delivering. Every loss is logged
//! with the segment and offset and counted in bytes and, from the running point
//! numbers (`seq`) of the intact frames around it, in points. Writing always resumes
//! in a fresh segment.
//!
//! Bounds: when the segments' total size exceeds `max_bytes`, whole segments are
//! deleted oldest first (segments are at most an eighth of `max_bytes`, so at most
//! that share is lost at once); the points they held that were not yet delivered are
//! counted as dropped and logged with the sink's name.

mod fileio;
mod frame;
#[cfg(test)]
mod model_tests;

use std::collections::VecDeque;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, watch};

use super::body_format::{BodyFormat, Received};
use crate::point::Category;
use crate::stats::SinkStats;
use frame::Found;
/// Largest segment, whatever `max_bytes` says.
const MAX_SEGMENT_BYTES: u64 = 32 << 20;
/// Smallest segment.
const MIN_SEGMENT_BYTES: u64 = 4 << 10;
/// Append requests that may wait for the writer before callers wait to enqueue.
const APPEND_QUEUE: usize = 64;
/// At most this many bytes go into one group commit.
const GROUP_BYTES: usize = 16 << 20;

/// The buffer could not be opened or written.
#[derive(Debug, thiserror::Error)]
pub enum BufferError {
    #[error("disk buffer {dir}: {context}: {source}")]
    Io {
        dir: PathBuf,
        context: String,
        source: io::Error,
    },
    #[error("disk buffer {0} is closed")]
    Closed(PathBuf),
    #[error(
        "disk buffer {0} is in use by another process (another pythond with the same data_dir?)"
    )]
    Locked(PathBuf),
}

/// One batch of points of one category, as stored and as sent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    pub category: Category,
    /// How many points `body` holds.
    pub points: u32,
    /// When the record was appended (Unix ms): the age of queued data.
    pub enqueued_ms: u64,
    /// The points in the sink's body format ([`BodyFormat`]).
    pub body: Vec<u8>,
}

/// A place in the log: a segment and a byte offset in it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Pos {
    pub segment: u64,
    pub offset: u64,
}

/// A record written in another body format than the sink's (by a sink of another
/// type with the same name): it is not sent (docs/BUFFER.md, "Records in another
/// format").
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Foreign {
    pub record: Record,
    /// The code of the format its body is in ([`BodyFormat::code`]).
    pub format: u8,
}

/// What opening the buffer found queued in one foreign format.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ForeignQueued {
    pub format: u8,
    pub records: u64,
    pub points: u64,
    pub bytes: u64,
}

/// Records read but not yet acknowledged, and where they end.
#[derive(Debug, Default)]
pub struct ReadBatch {
    /// Records in the sink's format, to send.
    pub records: Vec<Record>,
    /// Records in another format, read in the same stretch: to be set aside before
    /// the batch is acknowledged, never sent.
    pub foreign: Vec<Foreign>,
    /// The segment each record was read from.
    segments: Vec<u64>,
    /// Points per segment, to settle the counts on ack.
    per_segment: Vec<(u64, u64)>,
    /// Position after the last record.
    end: Pos,
    /// The running point number after the last record, when its frame has one.
    end_seq: Option<u64>,
    /// Set when the last read reached the end of what was committed: the writer's
    /// totals at that moment, from which [`ReadBatch::full_at`] tells when enough
    /// more is committed to fill the batch. `None` when the read stopped at the
    /// batch's limits.
    caught_up: Option<Committed>,
}

impl ReadBatch {
    pub fn points(&self) -> u64 {
        self.records.iter().map(|r| u64::from(r.points)).sum()
    }

    pub fn bytes(&self) -> usize {
        self.records.iter().map(|r| r.body.len()).sum()
    }

    /// Nothing was read: neither records to send nor foreign ones.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty() && self.foreign.is_empty()
    }

    pub fn oldest_ms(&self) -> Option<u64> {
        self.records.first().map(|r| r.enqueued_ms)
    }

    /// The writer's totals ([`DiskBuffer::watch`]) at which enough is committed
    /// after this batch to fill it to `max_points` points or `max_bytes` bytes, or,
    /// for an empty batch, at which anything more is: the next read is worth its
    /// cost only then (or when the batch's oldest record is old enough to go
    /// partial). `None` when the last read stopped before the end of what was
    /// committed: reading again finds more at once.
    pub fn full_at(&self, max_points: u64, max_bytes: usize) -> Option<Committed> {
        let at = self.caught_up?;
        if self.is_empty() {
            return Some(Committed {
                points: at.points + 1,
                bytes: at.bytes + 1,
                ..at
            });
        }
        let (points, bytes) = self.held();
        let more_bytes = max_bytes.saturating_sub(bytes).max(1) as u64;
        Some(Committed {
            points: at.points + max_points.saturating_sub(points).max(1),
            bytes: at.bytes.saturating_add(more_bytes),
            ..at
        })
    }

    /// Points and body bytes read into the batch, foreign records included.
    fn held(&self) -> (u64, usize) {
        let foreign = self.foreign.iter().map(|f| &f.record);
        foreign.fold((self.points(), self.bytes()), |(p, b), r| {
            (p + u64::from(r.points), b + r.body.len())
        })
    }
}

/// What the writer has committed since the buffer was opened: running totals, only
/// ever growing, published through [`DiskBuffer::watch`] after group commits.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Committed {
    /// Group commits (each one write and, with `fsync = "always"`, one sync).
    pub groups: u64,
    /// Points in the records committed.
    pub points: u64,
    /// Bytes of the frames committed (headers and bodies).
    pub bytes: u64,
}

impl Committed {
    /// Whether these totals reach `target` in points or in bytes.
    pub fn reached(&self, target: &Committed) -> bool {
        self.points >= target.points || self.bytes >= target.bytes
    }
}

/// The totals at which the writer notifies the watch ([`DiskBuffer::wake_when`]):
/// until delivery can use more, a commit does not wake it.
#[derive(Debug, Default)]
struct WakeAt {
    points: AtomicU64,
    bytes: AtomicU64,
}

/// How large the buffer may grow, and when it syncs.
#[derive(Clone, Copy, Debug)]
pub struct BufferLimits {
    /// Total size of the segments; over it the oldest segments are dropped.
    pub max_bytes: u64,
    /// `None`: every append is synced before it is acknowledged (group commit).
    /// `Some(d)`: appends are acknowledged once written (they survive a crash or
    /// SIGKILL of the agent, which leaves the page cache intact) and a background
    /// thread syncs at most `d` later, so a power loss can lose up to `d` of points.
    pub sync_every: Option<Duration>,
}

impl BufferLimits {
    fn segment_bytes(&self) -> u64 {
        (self.max_bytes / 8).clamp(MIN_SEGMENT_BYTES, MAX_SEGMENT_BYTES)
    }
}

/// A durable FIFO of records. One writer thread appends (with group commit); one
/// reader (the sink's delivery task) reads and acknowledges.
pub struct DiskBuffer {
    /// Holds an exclusive `flock` on `<dir>/lock` while the buffer is open.
    _lock: File,
    shared: Arc<Shared>,
    appends: Mutex<Option<mpsc::Sender<Append>>>,
    writer: Mutex<Option<JoinHandle<()>>>,
    reader: Mutex<Reader>,
    /// The `ack` file, opened at the first acknowledgement and rewritten in place.
    ack_file: Mutex<Option<File>>,
    /// The segment the ack position is in, kept open to read the enqueue time of
    /// the oldest queued record there at each acknowledgement.
    ack_segment: Mutex<Option<(u64, File)>>,
    committed: watch::Receiver<Committed>,
    /// How many times [`DiskBuffer::read_more`] ran.
    reads: AtomicU64,
    /// Records in another format found queued when the buffer was opened.
    foreign_at_open: Vec<ForeignQueued>,
}

struct Append {
    records: Vec<Record>,
    done: oneshot::Sender<Result<(), String>>,
}

struct Shared {
    dir: PathBuf,
    sink: String,
    /// The format the sink writes (and the one it can send).
    format: BodyFormat,
    limits: BufferLimits,
    state: Mutex<State>,
    stats: Arc<SinkStats>,
    wake_at: WakeAt,
}

#[derive(Debug)]
struct Segment {
    id: u64,
    /// Committed (synced) length.
    bytes: u64,
    /// Points in this segment not yet acknowledged.
    unacked_points: u64,
    /// Enqueue time (Unix ms) of the oldest unacknowledged record in this segment.
    oldest_ms: Option<u64>,
    /// Written in frame version 0 (before an upgrade).
    legacy: bool,
    /// A read of it failed: it is read no further than `bytes`, the writer leaves
    /// it, and it is kept as `<name>.corrupt` when it is removed.
    failed: bool,
}

impl Segment {
    /// A segment just created, holding only its start marker.
    fn fresh(id: u64) -> Self {
        Self {
            bytes: frame::HEADER as u64,
            ..Self::new(id)
        }
    }

    fn new(id: u64) -> Self {
        Self {
            id,
            bytes: 0,
            unacked_points: 0,
            oldest_ms: None,
            legacy: false,
            failed: false,
        }
    }
}

#[derive(Debug)]
struct State {
    segments: VecDeque<Segment>,
    ack: Pos,
    /// The running point number at `ack`, when known.
    ack_seq: Option<u64>,
    /// What the writer committed so far (the watch may lag it a little).
    committed: Committed,
}

impl State {
    fn total_bytes(&self) -> u64 {
        self.segments.iter().map(|s| s.bytes).sum()
    }

    fn queued_bytes(&self) -> u64 {
        let acked_in_first = match self.segments.front() {
            Some(first) if first.id == self.ack.segment => self.ack.offset.min(first.bytes),
            _ => 0,
        };
        self.total_bytes() - acked_in_first
    }

    fn queued_points(&self) -> u64 {
        self.segments.iter().map(|s| s.unacked_points).sum()
    }

    fn oldest_ms(&self) -> Option<u64> {
        self.segments
            .iter()
            .find(|s| s.unacked_points > 0)
            .and_then(|s| s.oldest_ms)
    }
}

struct Reader {
    pos: Pos,
    file: Option<(u64, File)>,
    /// The running point number the next intact frame should carry.
    expect_seq: Option<u64>,
    /// Damage being skipped, settled (counted in points) at the next intact frame.
    loss: Option<Loss>,
    /// Looking for the next intact frame from `pos` on.
    scanning: bool,
    /// The bytes of the reader's segment last read, frames being parsed from it.
    window: frame::Window,
    /// Frame bytes per point of the last frame read: how far a read looks ahead.
    frame_bytes_per_point: u64,
}

/// How far reads look ahead before the first frame says how large frames are.
const FIRST_BYTES_PER_POINT: u64 = 128;

/// A run of damaged bytes, from where it was found.
#[derive(Clone, Copy, Debug)]
struct Loss {
    segment: u64,
    offset: u64,
    bytes: u64,
}

impl DiskBuffer {
    /// Opens (or creates) the buffer in `dir`, recovering what a previous run left.
    /// `format` is what the sink writes: records it does not take
    /// ([`BodyFormat::takes`]) are not returned for sending but as
    /// [`ReadBatch::foreign`]; those in an older encoding it takes are converted.
    pub fn open(
        dir: &Path,
        sink: &str,
        format: BodyFormat,
        limits: BufferLimits,
        stats: Arc<SinkStats>,
    ) -> Result<Self, BufferError> {
        let err = |context: &str| {
            let dir = dir.to_path_buf();
            let context = context.to_string();
            move |source| BufferError::Io {
                dir,
                context,
                source,
            }
        };
        fs::create_dir_all(dir).map_err(err("cannot create the directory"))?;
        let lock_file = lock_dir(dir).map_err(|source| match source.kind() {
            io::ErrorKind::WouldBlock => BufferError::Locked(dir.to_path_buf()),
            _ => BufferError::Io {
                dir: dir.to_path_buf(),
                context: "cannot lock the directory".to_string(),
                source,
            },
        })?;
        let saved = read_ack(dir).map_err(err("cannot read the ack file"))?;
        remove_leftovers(dir).map_err(err("cannot remove an unfinished repair"))?;
        let mut ids = list_segments(dir).map_err(err("cannot list segments"))?;
        ids.sort_unstable();
        let mut recovery = Recovery {
            sink,
            format,
            foreign: Vec::new(),
            stats: &stats,
            expect_seq: None,
            last_seq: saved.seq,
            loss: None,
        };
        let mut segments = VecDeque::new();
        for id in ids {
            let path = segment_path(dir, id);
            if id < saved.pos.segment {
                // Fully delivered before the last stop.
                fs::remove_file(&path).map_err(err("cannot remove a delivered segment"))?;
                continue;
            }
            let from = if id == saved.pos.segment {
                recovery.expect_seq = saved.seq;
                saved.pos.offset
            } else {
                0
            };
            let segment = recover_segment(dir, id, from, &mut recovery)
                .map_err(err("cannot recover a segment"))?;
            segments.push_back(segment);
        }
        recovery.finish(dir);
        let foreign_at_open = std::mem::take(&mut recovery.foreign);
        let next_id = segments.back().map_or(1, |s| s.id + 1);
        let (ack, ack_seq) = match segments.front() {
            Some(first) if first.id == saved.pos.segment => (
                Pos {
                    segment: saved.pos.segment,
                    offset: saved.pos.offset.min(first.bytes),
                },
                saved.seq,
            ),
            Some(first) => (
                Pos {
                    segment: first.id,
                    offset: 0,
                },
                None,
            ),
            None => (
                Pos {
                    segment: next_id,
                    offset: 0,
                },
                saved.seq,
            ),
        };
        let next_seq = recovery.last_seq.unwrap_or(0);
        let current =
            create_segment(dir, next_id, next_seq).map_err(err("cannot create a segment"))?;
        segments.push_back(Segment::fresh(next_id));
        let state = State {
            segments,
            ack,
            ack_seq,
            committed: Committed::default(),
        };
        let queued = state.queued_points();
        if queued > 0 {
            tracing::info!(
                sink = sink,
                points = queued,
                bytes = state.queued_bytes(),
                "disk buffer: resuming delivery of points queued before the last stop"
            );
        }
        let shared = Arc::new(Shared {
            dir: dir.to_path_buf(),
            sink: sink.to_string(),
            format,
            limits,
            state: Mutex::new(state),
            stats,
            wake_at: WakeAt::default(),
        });
        shared.publish(&lock(&shared.state));

        let (tx, rx) = mpsc::channel(APPEND_QUEUE);
        let (committed_tx, committed_rx) = watch::channel(Committed::default());
        let lazy = match limits.sync_every {
            Some(every) => Some(
                LazySync::start(&current, every, sink)
                    .map_err(err("cannot start the sync thread"))?,
            ),
            None => None,
        };
        let writer_shared = shared.clone();
        let writer = std::thread::Builder::new()
            .name(format!("buffer-{sink}"))
            .spawn(move || {
                SegmentWriter {
                    shared: writer_shared,
                    id: next_id,
                    file: current,
                    bytes: frame::HEADER as u64,
                    seq: next_seq,
                    torn: false,
                    committed: committed_tx,
                    lazy,
                }
                .run(rx)
            })
            .map_err(err("cannot start the writer thread"))?;
        Ok(Self {
            _lock: lock_file,
            shared,
            appends: Mutex::new(Some(tx)),
            writer: Mutex::new(Some(writer)),
            reader: Mutex::new(Reader {
                pos: ack,
                file: None,
                expect_seq: ack_seq,
                loss: None,
                scanning: false,
                window: frame::Window::default(),
                frame_bytes_per_point: FIRST_BYTES_PER_POINT,
            }),
            ack_file: Mutex::new(None),
            ack_segment: Mutex::new(None),
            committed: committed_rx,
            reads: AtomicU64::new(0),
            foreign_at_open,
        })
    }

    /// Records in another format than the sink's that were queued when the buffer
    /// was opened, per format: delivery sets them aside as it meets them.
    pub fn foreign_at_open(&self) -> &[ForeignQueued] {
        &self.foreign_at_open
    }

    /// Appends records; returns once they are durably on disk. Waits while the
    /// writer is busy (backpressure).
    pub async fn append(&self, records: Vec<Record>) -> Result<(), BufferError> {
        let done = self.start_append(records).await?;
        self.finish_append(done).await
    }

    /// Queues an append; await the returned receiver with [`Self::finish_append`].
    pub(crate) async fn start_append(
        &self,
        records: Vec<Record>,
    ) -> Result<oneshot::Receiver<Result<(), String>>, BufferError> {
        let sender = lock(&self.appends).clone();
        let sender = sender.ok_or_else(|| BufferError::Closed(self.shared.dir.clone()))?;
        let (done, rx) = oneshot::channel();
        sender
            .send(Append { records, done })
            .await
            .map_err(|_| BufferError::Closed(self.shared.dir.clone()))?;
        Ok(rx)
    }

    pub(crate) async fn finish_append(
        &self,
        done: oneshot::Receiver<Result<(), String>>,
    ) -> Result<(), BufferError> {
        match done.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(message)) => Err(BufferError::Io {
                dir: self.shared.dir.clone(),
                context: "cannot append".to_string(),
                source: io::Error::other(message),
            }),
            Err(_) => Err(BufferError::Closed(self.shared.dir.clone())),
        }
    }

    /// The writer's running totals ([`Committed`]), updated after every group
    /// commit; it is marked changed only once they reach the target of
    /// [`DiskBuffer::wake_when`] (at first: every commit).
    pub fn watch(&self) -> watch::Receiver<Committed> {
        self.committed.clone()
    }

    /// Marks the watch changed only once the writer's totals reach `target` (points
    /// or bytes), so that a reader waiting for a full batch is not woken by every
    /// group commit. Set it, then look at the watch's current value (marking it
    /// seen), then wait for a change: a commit that reaches `target` meanwhile is
    /// either in that value or wakes the wait.
    pub fn wake_when(&self, target: Committed) {
        let wake = &self.shared.wake_at;
        wake.points.store(target.points, Ordering::SeqCst);
        wake.bytes.store(target.bytes, Ordering::SeqCst);
    }

    /// How many reads ([`DiskBuffer::read_more`]) there were: what delivering a
    /// batch costs besides sending it.
    pub fn reads(&self) -> u64 {
        self.reads.load(Ordering::Relaxed)
    }

    /// The target [`DiskBuffer::wake_when`] set last, and what is committed now.
    #[cfg(test)]
    pub(crate) fn wake_target(&self) -> (Committed, Committed) {
        let wake = &self.shared.wake_at;
        let target = Committed {
            groups: 0,
            points: wake.points.load(Ordering::SeqCst),
            bytes: wake.bytes.load(Ordering::SeqCst),
        };
        (target, lock(&self.shared.state).committed)
    }

    /// Points not yet acknowledged.
    pub fn queued_points(&self) -> u64 {
        lock(&self.shared.state).queued_points()
    }

    /// Reads committed records after what `batch` (and earlier reads) already hold,
    /// until the batch has `max_points` points or `max_bytes` bytes. Blocking I/O.
    ///
    /// Damage and read errors do not end delivery: damaged bytes are skipped to the
    /// next intact frame, and a segment that cannot be read is skipped from the
    /// failed read on (docs/BUFFER.md); both are logged and counted.
    pub fn read_more(
        &self,
        batch: &mut ReadBatch,
        max_points: u64,
        max_bytes: usize,
    ) -> Result<(), BufferError> {
        self.reads.fetch_add(1, Ordering::Relaxed);
        let mut guard = lock(&self.reader);
        let reader = &mut *guard;
        // What the window holds may have been read before a repair or a test's
        // damage: each read starts afresh.
        reader.window.clear();
        batch.caught_up = None;
        let (mut points, mut bytes) = batch.held();
        loop {
            if points >= max_points || bytes >= max_bytes {
                return Ok(());
            }
            // Where may we read, and is our segment still there?
            let (end, legacy, next, committed) = {
                let state = lock(&self.shared.state);
                let committed = state.committed;
                let Some(first) = state.segments.front() else {
                    batch.caught_up = Some(committed);
                    return Ok(());
                };
                if reader.pos.segment < first.id {
                    // Dropped while we were behind; those points were counted, and
                    // so were the bytes of any damage being skipped there.
                    reader.pos = Pos {
                        segment: first.id,
                        offset: 0,
                    };
                    reader.file = None;
                    reader.expect_seq = None;
                    reader.loss = None;
                    reader.scanning = false;
                }
                let current = state.segments.iter().find(|s| s.id == reader.pos.segment);
                let Some(current) = current else {
                    batch.caught_up = Some(committed);
                    return Ok(());
                };
                let next = state
                    .segments
                    .iter()
                    .find(|s| s.id > reader.pos.segment)
                    .map(|s| s.id);
                (current.bytes, current.legacy, next, committed)
            };
            if reader.pos.offset >= end {
                match next {
                    Some(id) => {
                        reader.pos = Pos {
                            segment: id,
                            offset: 0,
                        };
                        reader.file = None;
                        continue;
                    }
                    None => {
                        // All that was committed is read.
                        batch.caught_up = Some(committed);
                        return Ok(());
                    }
                }
            }
            let pos = reader.pos;
            let file = match &reader.file {
                Some((id, file)) if *id == pos.segment => file,
                _ => {
                    let path = segment_path(&self.shared.dir, pos.segment);
                    reader.window.clear();
                    match File::open(&path) {
                        Ok(file) => &reader.file.insert((pos.segment, file)).1,
                        Err(e) if e.kind() == io::ErrorKind::NotFound => {
                            // Removed behind our back: all of it is lost.
                            self.skip_damage(reader, end - pos.offset);
                            reader.scanning = false;
                            continue;
                        }
                        Err(error) => {
                            self.read_failed(reader, &error);
                            continue;
                        }
                    }
                }
            };
            if reader.scanning {
                // Committed data is whole frames, so an intact frame starting before
                // `end` ends before it: when there is none, the scan goes on from
                // `end` once more is committed (or in the next segment).
                match frame::resync(file, pos.offset, end) {
                    Ok(found) => {
                        reader.scanning = found.is_none();
                        self.skip_damage(reader, found.unwrap_or(end) - pos.offset);
                    }
                    Err(error) => self.read_failed(reader, &error),
                }
                continue;
            }
            let found = if legacy {
                frame::read_legacy_at(file, pos.offset, end)
            } else {
                let ahead = read_ahead(
                    max_points - points,
                    max_bytes - bytes,
                    reader.frame_bytes_per_point,
                );
                reader.window.read_at(file, pos.offset, end, ahead)
            };
            let frame = match found {
                Ok(Found::Frame(frame)) => frame,
                Ok(Found::Lost { seq, points, len }) => {
                    // Points recovery cut out and counted: skip, count nothing more.
                    if let Some(loss) = reader.loss.take() {
                        let lost = reader.expect_seq.map(|e| seq.saturating_sub(e));
                        self.settle_loss(loss, lost, batch);
                    }
                    reader.expect_seq = Some(seq + points);
                    reader.pos.offset += len;
                    continue;
                }
                Ok(Found::End) => {
                    reader.pos.offset = end;
                    continue;
                }
                Ok(Found::Damaged) => {
                    tracing::warn!(sink = %self.shared.sink, segment = %segment_path(&self.shared.dir, pos.segment).display(), offset = pos.offset,
                        "disk buffer: damaged data in a queued segment; skipping to the next intact frame");
                    reader.loss.get_or_insert(Loss {
                        segment: pos.segment,
                        offset: pos.offset,
                        bytes: 0,
                    });
                    if legacy {
                        // Version 0 frames cannot be found by scanning: the rest of
                        // this segment is lost.
                        reader.expect_seq = None;
                        self.skip_damage(reader, end - pos.offset);
                    } else {
                        self.skip_damage(reader, 1);
                        reader.scanning = true;
                    }
                    continue;
                }
                Err(error) => {
                    self.read_failed(reader, &error);
                    continue;
                }
            };
            if let Some(loss) = reader.loss.take() {
                let lost = match (reader.expect_seq, frame.seq) {
                    (Some(expected), Some(seq)) => Some(seq.saturating_sub(expected)),
                    _ => None,
                };
                self.settle_loss(loss, lost, batch);
            }
            reader.expect_seq = frame.next_seq();
            reader.pos.offset += frame.len;
            reader.frame_bytes_per_point =
                frame.len.div_ceil(u64::from(frame.record.points).max(1));
            let mut record = frame.record;
            points += u64::from(record.points);
            bytes += record.body.len();
            match batch.per_segment.last_mut() {
                Some((id, n)) if *id == pos.segment => *n += u64::from(record.points),
                _ => batch
                    .per_segment
                    .push((pos.segment, u64::from(record.points))),
            }
            let body = std::mem::take(&mut record.body);
            match self.shared.format.receive(frame.format, body) {
                Received::Foreign(format, body) => {
                    record.body = body;
                    batch.foreign.push(Foreign { record, format });
                }
                Received::Own(body) => {
                    record.body = body;
                    batch.records.push(record);
                    batch.segments.push(pos.segment);
                }
            }
            batch.end = reader.pos;
            batch.end_seq = reader.expect_seq;
        }
    }

    /// A read of the reader's segment failed (EIO, say): the segment is read no
    /// further. What follows in it is skipped as damage — counted in bytes now and
    /// in points at the next intact frame, the next segment's start marker at the
    /// latest — the writer leaves it for a new segment, and once delivery passes it
    /// the file is kept as `<name>.corrupt` (docs/BUFFER.md).
    fn read_failed(&self, reader: &mut Reader, error: &io::Error) {
        let pos = reader.pos;
        let rest = {
            let mut state = lock(&self.shared.state);
            let Some(segment) = state.segments.iter_mut().find(|s| s.id == pos.segment) else {
                return;
            };
            let rest = segment.bytes.saturating_sub(pos.offset);
            segment.failed = true;
            segment.bytes = segment.bytes.min(pos.offset);
            self.shared.publish(&state);
            rest
        };
        let path = segment_path(&self.shared.dir, pos.segment);
        tracing::error!(sink = %self.shared.sink, segment = %path.display(), offset = pos.offset, bytes = rest, %error,
            "disk buffer: cannot read a queued segment; skipping the rest of it and delivering the next (the file is kept aside as .corrupt once delivery passes it)");
        self.shared.stats.set_last_error(format!(
            "disk buffer: cannot read {} at {}: {error}",
            path.display(),
            pos.offset
        ));
        reader.loss.get_or_insert(Loss {
            segment: pos.segment,
            offset: pos.offset,
            bytes: 0,
        });
        reader.file = None;
        reader.scanning = false;
        self.skip_damage(reader, rest);
    }

    /// Skips `bytes` damaged bytes at the reader's position and counts them.
    fn skip_damage(&self, reader: &mut Reader, bytes: u64) {
        if let Some(loss) = &mut reader.loss {
            loss.bytes += bytes;
        } else {
            reader.loss = Some(Loss {
                segment: reader.pos.segment,
                offset: reader.pos.offset,
                bytes,
            });
        }
        self.shared.stats.add_corrupt_bytes(bytes);
        reader.pos.offset += bytes;
    }

    /// Damage was skipped and delivery resumed at an intact frame: log and count
    /// what was lost, and take the lost points out of the queue.
    fn settle_loss(&self, loss: Loss, points: Option<u64>, batch: &ReadBatch) {
        let segment = segment_path(&self.shared.dir, loss.segment);
        match points {
            Some(points) => {
                tracing::warn!(sink = %self.shared.sink, segment = %segment.display(), offset = loss.offset, bytes = loss.bytes, points,
                    "disk buffer: skipped damaged data; delivery resumed at the next intact frame");
                self.shared.stats.add_corrupt_points(points);
                let mut state = lock(&self.shared.state);
                let mut left = points;
                for segment in state.segments.iter_mut().filter(|s| s.id >= loss.segment) {
                    let in_batch = batch
                        .per_segment
                        .iter()
                        .find(|(id, _)| *id == segment.id)
                        .map_or(0, |(_, n)| *n);
                    let take = left.min(segment.unacked_points.saturating_sub(in_batch));
                    segment.unacked_points -= take;
                    left -= take;
                    if left == 0 {
                        break;
                    }
                }
                self.shared.publish(&state);
            }
            None => {
                tracing::warn!(sink = %self.shared.sink, segment = %segment.display(), offset = loss.offset, bytes = loss.bytes,
                    "disk buffer: skipped damaged data; delivery resumed at the next intact frame; its points cannot be counted (no numbered frame just before it)");
            }
        }
    }

    /// Removes from `batch` the records of segments dropped (buffer full) since they
    /// were read: they were counted as dropped and must not be delivered after all.
    /// Returns how many points were removed.
    pub fn prune_dropped(&self, batch: &mut ReadBatch) -> u64 {
        let first = match lock(&self.shared.state).segments.front() {
            Some(first) => first.id,
            None => return 0,
        };
        if batch.segments.first().map_or(true, |s| *s >= first) {
            return 0;
        }
        let mut removed = 0;
        let mut kept_records = Vec::new();
        let mut kept_segments = Vec::new();
        for (record, segment) in batch.records.drain(..).zip(batch.segments.drain(..)) {
            if segment < first {
                removed += u64::from(record.points);
            } else {
                kept_records.push(record);
                kept_segments.push(segment);
            }
        }
        batch.records = kept_records;
        batch.segments = kept_segments;
        batch.per_segment.retain(|(id, _)| *id >= first);
        removed
    }

    /// The backend has what `batch` holds: move the ack position past it, delete the
    /// segments wholly delivered, and persist the position.
    pub fn ack(&self, batch: &ReadBatch) -> Result<(), BufferError> {
        if batch.end == Pos::default() {
            return Ok(());
        }
        let mut state = lock(&self.shared.state);
        for (id, n) in &batch.per_segment {
            if let Some(segment) = state.segments.iter_mut().find(|s| s.id == *id) {
                segment.unacked_points = segment.unacked_points.saturating_sub(*n);
            }
        }
        if batch.end > state.ack {
            state.ack = batch.end;
            state.ack_seq = batch.end_seq;
        }
        let ack = state.ack;
        while state.segments.len() > 1 && state.segments.front().is_some_and(|s| s.id < ack.segment)
        {
            if let Some(done) = state.segments.pop_front() {
                retire(&self.shared.dir, &done);
            }
        }
        // The oldest queued time is kept per segment: refresh it for the segment the
        // ack position is in from the record at that position.
        if let Some(first) = state.segments.front_mut() {
            if first.id == ack.segment {
                first.oldest_ms = if first.unacked_points == 0 {
                    None
                } else {
                    let mut open = lock(&self.ack_segment);
                    let file = match &*open {
                        Some((id, file)) if *id == first.id => Some(file),
                        _ => File::open(segment_path(&self.shared.dir, first.id))
                            .ok()
                            .map(|file| &open.insert((first.id, file)).1),
                    };
                    file.and_then(|file| frame::peek_ms(file, ack.offset, first.legacy))
                };
            }
        }
        let written = write_ack(
            &mut lock(&self.ack_file),
            &self.shared.dir,
            ack,
            state.ack_seq,
        );
        written.map_err(|source| BufferError::Io {
            dir: self.shared.dir.clone(),
            context: "cannot write the ack file".to_string(),
            source,
        })?;
        self.shared.publish(&state);
        Ok(())
    }

    /// Stops accepting appends and waits until every accepted append is on disk.
    pub fn close(&self) {
        lock(&self.appends).take();
        if let Some(writer) = lock(&self.writer).take() {
            let _ = writer.join();
        }
    }
}

impl Shared {
    /// Copies queue depth into the sink's stats.
    fn publish(&self, state: &State) {
        self.stats.set_queue(
            state.queued_points(),
            state.queued_bytes(),
            state.oldest_ms(),
        );
    }
}

/// The writer thread's side: the open segment, group commit, rolling, dropping.
struct SegmentWriter {
    shared: Arc<Shared>,
    id: u64,
    file: File,
    bytes: u64,
    /// The running point number of the next record (points appended before it).
    seq: u64,
    /// An append to `file` failed midway: the next one starts a new segment, so
    /// that whatever the failed write left at the end of this one stays out of the
    /// way of later frames.
    torn: bool,
    /// Publishes `State::committed` after each group.
    committed: watch::Sender<Committed>,
    /// The background sync of `sync_every`; `None` when every append is synced.
    lazy: Option<LazySync>,
}

/// Frames written together: headers and bodies, and what they hold.
struct Chunk<'a> {
    parts: &'a [&'a [u8]],
    bytes: u64,
    points: u64,
    /// Enqueue time of the first record.
    oldest: Option<u64>,
    /// Running number of the first record.
    first_seq: u64,
}

/// Syncs the current segment in the background at most every `every`.
struct LazySync {
    shared: Arc<LazyShared>,
    thread: Option<JoinHandle<()>>,
}

struct LazyShared {
    file: Mutex<File>,
    dirty: AtomicBool,
    stop: AtomicBool,
}

impl LazySync {
    fn start(file: &File, every: Duration, sink: &str) -> io::Result<Self> {
        let shared = Arc::new(LazyShared {
            file: Mutex::new(file.try_clone()?),
            dirty: AtomicBool::new(false),
            stop: AtomicBool::new(false),
        });
        let worker = shared.clone();
        let name = sink.to_string();
        let thread = std::thread::Builder::new()
            .name(format!("bufsync-{sink}"))
            .spawn(move || loop {
                std::thread::park_timeout(every);
                if worker.dirty.swap(false, Ordering::AcqRel) {
                    if let Err(error) = lock(&worker.file).sync_data() {
                        tracing::error!(sink = %name, %error, "disk buffer: background sync failed");
                    }
                }
                if worker.stop.load(Ordering::Acquire) {
                    return;
                }
            })?;
        Ok(Self {
            shared,
            thread: Some(thread),
        })
    }

    fn mark_dirty(&self) {
        self.shared.dirty.store(true, Ordering::Release);
    }

    fn switch_to(&self, file: &File) -> io::Result<()> {
        *lock(&self.shared.file) = file.try_clone()?;
        Ok(())
    }
}

impl Drop for LazySync {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Release);
        if let Some(thread) = self.thread.take() {
            thread.thread().unpark();
            let _ = thread.join();
        }
    }
}

impl SegmentWriter {
    fn run(mut self, mut rx: mpsc::Receiver<Append>) {
        let mut headers = Vec::new();
        while let Some(first) = rx.blocking_recv() {
            let mut group = vec![first];
            let mut size: usize = group[0].records.iter().map(|r| r.body.len()).sum();
            while size < GROUP_BYTES {
                match rx.try_recv() {
                    Ok(more) => {
                        size += more.records.iter().map(|r| r.body.len()).sum::<usize>();
                        group.push(more);
                    }
                    Err(_) => break,
                }
            }
            let result = self.write_group(&group, &mut headers);
            if let Err(error) = &result {
                tracing::error!(sink = %self.shared.sink, dir = %self.shared.dir.display(), %error, "disk buffer: append failed; these points are not buffered");
                self.shared
                    .stats
                    .set_last_error(format!("disk buffer: {error}"));
            }
            // Readers learn of the records before their appenders hear they are
            // buffered.
            self.publish_totals();
            let reply = result.map_err(|e| e.to_string());
            for append in group {
                let _ = append.done.send(reply.clone());
            }
        }
        let _ = fileio::sync(&self.file);
    }

    /// Publishes the totals committed through the watch, marking it changed only
    /// when they reach the reader's target ([`DiskBuffer::wake_when`]).
    fn publish_totals(&self) {
        let wake = &self.shared.wake_at;
        let totals = lock(&self.shared.state).committed;
        self.committed.send_if_modified(|published| {
            *published = Committed {
                groups: published.groups + 1,
                ..totals
            };
            // Read under the watch's lock, after the reader set its target: see
            // `wake_when`.
            let target = Committed {
                points: wake.points.load(Ordering::SeqCst),
                bytes: wake.bytes.load(Ordering::SeqCst),
                ..totals
            };
            totals.reached(&target)
        });
    }

    /// Writes the records of `group` as frames: each chunk that fits the current
    /// segment in one `writev` of headers (built in `headers`) and the records' own
    /// bodies, one sync per chunk (usually one for the group).
    fn write_group(&mut self, group: &[Append], headers: &mut Vec<u8>) -> io::Result<()> {
        let segment_bytes = self.shared.limits.segment_bytes();
        let records: Vec<&Record> = group.iter().flat_map(|a| a.records.iter()).collect();
        let mut start = 0;
        while start < records.len() {
            // The records going into the current segment: up to the one filling it.
            headers.clear();
            let first_seq = self.seq;
            let (mut seq, mut bytes, mut points, mut end) = (first_seq, 0u64, 0u64, start);
            let mut full = false;
            while end < records.len() && !full {
                let record = records[end];
                frame::encode_header(record, seq, self.shared.format, headers);
                seq += u64::from(record.points);
                points += u64::from(record.points);
                bytes += (frame::HEADER + record.body.len()) as u64;
                end += 1;
                full = self.bytes + bytes >= segment_bytes;
            }
            let mut parts: Vec<&[u8]> = Vec::with_capacity(2 * (end - start));
            for (k, record) in records[start..end].iter().enumerate() {
                parts.push(&headers[k * frame::HEADER..][..frame::HEADER]);
                parts.push(&record.body);
            }
            let chunk = Chunk {
                parts: &parts,
                bytes,
                points,
                oldest: Some(records[start].enqueued_ms),
                first_seq,
            };
            self.seq = seq;
            self.flush(&chunk)?;
            if full {
                self.roll(self.seq)?;
            }
            start = end;
        }
        Ok(())
    }

    /// Writes and syncs a chunk of frames, then makes them visible to the reader and
    /// enforces `max_bytes`. On failure the frames are not buffered: the segment is
    /// cut back to its committed length where the disk allows, the next append
    /// starts a new segment, and the running number goes back to the chunk's first.
    fn flush(&mut self, chunk: &Chunk<'_>) -> io::Result<()> {
        // A second try only when the reader gave up on the segment meanwhile.
        for _ in 0..2 {
            if self.torn || self.segment_failed() {
                self.roll(chunk.first_seq)?;
            }
            let written =
                fileio::append_parts(&mut self.file, chunk.parts).and_then(|()| match &self.lazy {
                    None => fileio::sync(&self.file),
                    Some(lazy) => {
                        lazy.mark_dirty();
                        Ok(())
                    }
                });
            if let Err(error) = written {
                self.torn = true;
                self.seq = chunk.first_seq;
                let _ = self.file.set_len(self.bytes);
                return Err(error);
            }
            let mut state = lock(&self.shared.state);
            let Some(segment) = state.segments.iter_mut().find(|s| s.id == self.id) else {
                break;
            };
            if segment.failed {
                // The reader could not read this segment and skips the rest of it:
                // these frames go into the next one (the copy left here is never
                // read).
                continue;
            }
            self.bytes += chunk.bytes;
            segment.bytes = self.bytes;
            segment.unacked_points += chunk.points;
            if segment.oldest_ms.is_none() {
                segment.oldest_ms = chunk.oldest;
            }
            state.committed.points += chunk.points;
            state.committed.bytes += chunk.bytes;
            self.shared.stats.add_buffered(chunk.points);
            self.enforce_limit(&mut state);
            self.shared.publish(&state);
            return Ok(());
        }
        self.seq = chunk.first_seq;
        Err(io::Error::other(
            "the segment being written became unreadable",
        ))
    }

    /// Whether the reader gave up on the segment being written (a read failed).
    fn segment_failed(&self) -> bool {
        lock(&self.shared.state)
            .segments
            .iter()
            .any(|s| s.id == self.id && s.failed)
    }

    /// Starts the next segment, whose first record has running number `seq`.
    fn roll(&mut self, seq: u64) -> io::Result<()> {
        let id = self.id + 1;
        if self.lazy.is_some() {
            // A finished segment is always on disk. Its appends were acknowledged
            // already: a failure is logged, and the new segment is started anyway.
            if let Err(error) = fileio::sync(&self.file) {
                tracing::error!(sink = %self.shared.sink, dir = %self.shared.dir.display(), %error, "disk buffer: cannot sync a finished segment");
            }
        }
        self.file = create_segment(&self.shared.dir, id, seq)?;
        if let Some(lazy) = &self.lazy {
            lazy.switch_to(&self.file)?;
        }
        self.id = id;
        self.bytes = frame::HEADER as u64;
        self.torn = false;
        lock(&self.shared.state)
            .segments
            .push_back(Segment::fresh(id));
        Ok(())
    }

    /// Deletes the oldest segments while the buffer is over `max_bytes`.
    fn enforce_limit(&self, state: &mut State) {
        let max = self.shared.limits.max_bytes;
        while state.total_bytes() > max && state.segments.len() > 1 {
            let Some(oldest) = state.segments.pop_front() else {
                break;
            };
            retire(&self.shared.dir, &oldest);
            if state.ack.segment <= oldest.id {
                if let Some(next) = state.segments.front() {
                    state.ack = Pos {
                        segment: next.id,
                        offset: 0,
                    };
                    state.ack_seq = None;
                }
            }
            if oldest.unacked_points > 0 {
                self.shared.stats.add_dropped(oldest.unacked_points);
                tracing::warn!(sink = %self.shared.sink, points = oldest.unacked_points, segment_bytes = oldest.bytes, max_bytes = max,
                    "disk buffer full: dropped the oldest undelivered points");
            }
        }
    }
}

/// The recovery scan's running view across segments, oldest first.
struct Recovery<'a> {
    sink: &'a str,
    /// The sink's format, and what is queued in others.
    format: BodyFormat,
    foreign: Vec<ForeignQueued>,
    stats: &'a SinkStats,
    /// The running point number the next intact frame should carry.
    expect_seq: Option<u64>,
    /// The highest running point number after any intact frame: where the writer
    /// goes on.
    last_seq: Option<u64>,
    /// Damage not yet followed by an intact frame.
    loss: Option<Loss>,
}

impl Recovery<'_> {
    /// An intact frame carrying `seq` follows: settles (logs and counts) the damage
    /// before it. Returns the lost points' range (first seq, count) when known.
    fn settle(&mut self, dir: &Path, seq: Option<u64>) -> Option<(u64, u64)> {
        let mut lost = None;
        if let Some(loss) = self.loss.take() {
            let points = match (self.expect_seq, seq) {
                (Some(expected), Some(seq)) => {
                    lost = Some((expected, seq.saturating_sub(expected)));
                    Some(seq.saturating_sub(expected))
                }
                _ => None,
            };
            let segment = segment_path(dir, loss.segment);
            match points {
                Some(points) => {
                    self.stats.add_corrupt_points(points);
                    tracing::warn!(sink = self.sink, segment = %segment.display(), offset = loss.offset, bytes = loss.bytes, points,
                        "disk buffer: damaged data skipped on recovery; the intact frames after it are kept");
                }
                None => {
                    tracing::warn!(sink = self.sink, segment = %segment.display(), offset = loss.offset, bytes = loss.bytes,
                        "disk buffer: damaged data skipped on recovery; the intact frames after it are kept; its points cannot be counted (no numbered frame just before it)");
                }
            }
        }
        lost
    }

    /// A queued frame: counted when its body is in another format than the sink's.
    fn queued(&mut self, frame: &frame::Frame) {
        if self.format.takes(frame.format) {
            return;
        }
        let Some(format) = frame.format else {
            return;
        };
        let at = match self.foreign.iter().position(|f| f.format == format) {
            Some(at) => at,
            None => {
                self.foreign.push(ForeignQueued {
                    format,
                    ..ForeignQueued::default()
                });
                self.foreign.len() - 1
            }
        };
        let entry = &mut self.foreign[at];
        entry.records += 1;
        entry.points += u64::from(frame.record.points);
        entry.bytes += frame.record.body.len() as u64;
    }

    /// Reading goes on after a frame (or loss marker) whose successor has `next`.
    fn advance(&mut self, next: Option<u64>) {
        self.expect_seq = next;
        if let Some(next) = next {
            self.last_seq = Some(self.last_seq.map_or(next, |last| last.max(next)));
        }
    }

    fn damaged(&mut self, segment: u64, offset: u64, bytes: u64) {
        self.stats.add_corrupt_bytes(bytes);
        match &mut self.loss {
            Some(loss) => loss.bytes += bytes,
            None => {
                self.loss = Some(Loss {
                    segment,
                    offset,
                    bytes,
                })
            }
        }
    }

    /// Damage after the last intact frame of the buffer: a write cut short by a
    /// crash (never acknowledged when every append is synced), or damage nothing
    /// intact follows. Its points cannot be known.
    fn finish(&mut self, dir: &Path) {
        if let Some(loss) = self.loss.take() {
            tracing::warn!(sink = self.sink, segment = %segment_path(dir, loss.segment).display(), offset = loss.offset, bytes = loss.bytes,
                "disk buffer: incomplete or damaged data at the end of the buffer (an interrupted write); cut off");
        }
    }
}

/// Scans segment `id` from `from` (the delivered part before it is not read),
/// skipping damage to the next intact frame, and repairs the file: rewritten without
/// damaged runs in its middle, truncated after its last intact frame. A read that
/// fails (EIO) ends the scan there: what follows is counted as damage, the file is
/// kept as `<name>.corrupt` and the segment rewritten with what was read.
fn recover_segment(
    dir: &Path,
    id: u64,
    from: u64,
    recovery: &mut Recovery<'_>,
) -> io::Result<Segment> {
    let path = segment_path(dir, id);
    let file = File::open(&path)?;
    let total = file.metadata()?.len();
    let from = from.min(total);
    // The offset and error of a read that failed.
    let mut failed: Option<(u64, io::Error)> = None;
    let legacy = frame::is_legacy(&file, total).unwrap_or_else(|error| {
        failed = Some((from, error));
        false
    });
    let mut segment = Segment {
        legacy,
        ..Segment::new(id)
    };
    // What stays after `from`: runs of intact frames and markers for lost points.
    let mut kept: Vec<Piece> = Vec::new();
    let mut holes = false;
    let mut offset = from;
    while failed.is_none() {
        let found = if legacy {
            frame::read_legacy_at(&file, offset, total)
        } else {
            frame::read_at(&file, offset, total)
        };
        let found = match found {
            Ok(found) => found,
            Err(error) => {
                failed = Some((offset, error));
                break;
            }
        };
        match found {
            Found::Frame(frame) => {
                if let Some((seq, points)) = recovery.settle(dir, frame.seq) {
                    holes = true;
                    kept.push(Piece::Lost { seq, points });
                }
                recovery.advance(frame.next_seq());
                recovery.queued(&frame);
                segment.unacked_points += u64::from(frame.record.points);
                segment.oldest_ms.get_or_insert(frame.record.enqueued_ms);
                keep(&mut kept, offset, frame.len);
                offset += frame.len;
            }
            Found::Lost { seq, points, len } => {
                if let Some((seq, points)) = recovery.settle(dir, Some(seq)) {
                    holes = true;
                    kept.push(Piece::Lost { seq, points });
                }
                recovery.advance(Some(seq + points));
                keep(&mut kept, offset, len);
                offset += len;
            }
            Found::End => break,
            Found::Damaged => {
                let next = if legacy {
                    Ok(None)
                } else {
                    frame::resync(&file, offset + 1, total)
                };
                let next = match next {
                    Ok(next) => next,
                    Err(error) => {
                        failed = Some((offset, error));
                        break;
                    }
                };
                let end = next.unwrap_or(total);
                recovery.damaged(id, offset, end - offset);
                if legacy {
                    recovery.expect_seq = None;
                }
                match next {
                    Some(next) => {
                        holes = true;
                        offset = next;
                    }
                    None => break,
                }
            }
        }
    }
    if let Some((at, error)) = failed {
        tracing::error!(sink = recovery.sink, segment = %path.display(), offset = at, bytes = total - at, %error,
            "disk buffer: cannot read a queued segment; the rest of it is skipped, the file kept as .corrupt");
        recovery.stats.set_last_error(format!(
            "disk buffer: cannot read {} at {at}: {error}",
            path.display()
        ));
        recovery.damaged(id, at, total - at);
        if legacy {
            recovery.expect_seq = None;
        }
        segment.bytes = match set_aside(dir, id, &file, from, &kept) {
            Ok(len) => len,
            Err(error) => {
                // Read it in place up to the failure, and keep it when done.
                tracing::error!(sink = recovery.sink, segment = %path.display(), %error,
                    "disk buffer: cannot copy the readable part of the segment; reading it in place");
                segment.failed = true;
                at
            }
        };
        return Ok(segment);
    }
    let intact_end = match kept.last() {
        Some(Piece::Copy { end, .. }) => *end,
        _ => from,
    };
    if holes {
        segment.bytes = rewrite_segment(dir, id, &file, from, &kept)?;
    } else if intact_end < total {
        let file = OpenOptions::new().write(true).open(&path)?;
        file.set_len(intact_end)?;
        file.sync_all()?;
        segment.bytes = intact_end;
    } else {
        segment.bytes = total;
    }
    Ok(segment)
}

/// Keeps segment `id`, which could not be read to its end, as `<name>.corrupt` (a
/// second name for the same file) and rewrites the segment with what was read: its
/// first `prefix` bytes and the `kept` pieces. Returns the new length.
fn set_aside(dir: &Path, id: u64, file: &File, prefix: u64, kept: &[Piece]) -> io::Result<u64> {
    let aside = corrupt_path(dir, id);
    match fs::remove_file(&aside) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    fs::hard_link(segment_path(dir, id), &aside)?;
    rewrite_segment(dir, id, file, prefix, kept)
}

/// What recovery keeps of a segment.
enum Piece {
    /// Bytes `start..end`: intact frames.
    Copy { start: u64, end: u64 },
    /// A loss marker for points `seq..seq + points`, cut out and counted.
    Lost { seq: u64, points: u64 },
}

/// Adds the intact bytes `offset..offset + len` to `kept`.
fn keep(kept: &mut Vec<Piece>, offset: u64, len: u64) {
    match kept.last_mut() {
        Some(Piece::Copy { end, .. }) if *end == offset => *end += len,
        _ => kept.push(Piece::Copy {
            start: offset,
            end: offset + len,
        }),
    }
}

/// Replaces segment `id` by its first `prefix` bytes (delivered, so the ack offset
/// stays valid) followed by the `kept` pieces; returns the new length. Crash-safe: a
/// temporary file, synced, renamed over the segment, the directory synced.
fn rewrite_segment(
    dir: &Path,
    id: u64,
    file: &File,
    prefix: u64,
    kept: &[Piece],
) -> io::Result<u64> {
    let tmp = dir.join(format!("{id:020}{REPAIR_SUFFIX}"));
    let mut out = File::create(&tmp)?;
    let copy = |out: &mut File, start: u64, end: u64| -> io::Result<()> {
        let mut buf = vec![0u8; 1 << 16];
        let mut at = start;
        while at < end {
            let n = ((end - at) as usize).min(buf.len());
            if fileio::read_up_to_at(file, &mut buf[..n], at)? < n {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            out.write_all(&buf[..n])?;
            at += n as u64;
        }
        Ok(())
    };
    copy(&mut out, 0, prefix)?;
    for piece in kept {
        match piece {
            Piece::Copy { start, end } => copy(&mut out, *start, *end)?,
            Piece::Lost { seq, points } => {
                let mut marker = Vec::new();
                frame::encode_lost(*seq, *points, &mut marker);
                out.write_all(&marker)?;
            }
        }
    }
    out.sync_all()?;
    let len = out.metadata()?.len();
    fs::rename(&tmp, segment_path(dir, id))?;
    File::open(dir)?.sync_all()?;
    Ok(len)
}

/// Suffix of a segment being rewritten by recovery; one left by a crash is removed.
const REPAIR_SUFFIX: &str = ".repair";

fn remove_leftovers(dir: &Path) -> io::Result<()> {
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_name().to_string_lossy().ends_with(REPAIR_SUFFIX) {
            fs::remove_file(entry.path())?;
        }
    }
    Ok(())
}

fn segment_path(dir: &Path, id: u64) -> PathBuf {
    dir.join(format!("{id:020}.seg"))
}

/// Where a segment that could not be read is kept: beside the segments, under a
/// name no reader lists.
fn corrupt_path(dir: &Path, id: u64) -> PathBuf {
    dir.join(format!("{id:020}.seg.corrupt"))
}

/// Removes a segment the buffer is done with; one that could not be read is kept
/// as `<name>.corrupt` instead, for whoever looks into the disk.
fn retire(dir: &Path, segment: &Segment) {
    let path = segment_path(dir, segment.id);
    if segment.failed {
        let _ = fs::rename(&path, corrupt_path(dir, segment.id));
    } else {
        let _ = fs::remove_file(&path);
    }
}

fn list_segments(dir: &Path) -> io::Result<Vec<u64>> {
    let mut ids = Vec::new();
    for entry in fs::read_dir(dir)? {
        let name = entry?.file_name();
        let name = name.to_string_lossy();
        if let Some(id) = name.strip_suffix(".seg").and_then(|s| s.parse().ok()) {
            ids.push(id);
        }
    }
    Ok(ids)
}

/// Creates a segment and syncs the directory so the file survives power loss. The
/// segment starts with a loss marker for no points that carries `seq`, the running
/// point number of its first record: damage at the very start of a segment can then
/// be counted in points too. It is synced with the segment's first append.
///
/// A file already there under the new id holds nothing: it is what an earlier
/// attempt that failed (a full disk) left, and is started over.
fn create_segment(dir: &Path, id: u64, seq: u64) -> io::Result<File> {
    let mut file = OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .open(segment_path(dir, id))?;
    let mut start = Vec::with_capacity(frame::HEADER);
    frame::encode_lost(seq, 0, &mut start);
    fileio::append(&mut file, &start)?;
    File::open(dir)?.sync_all()?;
    Ok(file)
}

/// Takes an exclusive, non-blocking `flock` on `<dir>/lock`: two agents must never
/// write one buffer. The lock goes with the returned file (and with the process).
fn lock_dir(dir: &Path) -> io::Result<File> {
    use std::os::fd::AsRawFd;
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(dir.join("lock"))?;
    // SAFETY: flock on a descriptor we own; no memory is involved.
    let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if rc == 0 {
        Ok(file)
    } else {
        Err(io::Error::last_os_error())
    }
}

/// The delivery position saved in the `ack` file.
#[derive(Debug, Default)]
struct SavedAck {
    pos: Pos,
    /// The running point number there; absent in files written before frames were
    /// numbered.
    seq: Option<u64>,
}

fn read_ack(dir: &Path) -> io::Result<SavedAck> {
    let text = match fs::read_to_string(dir.join("ack")) {
        Ok(text) => text,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(SavedAck::default()),
        Err(e) => return Err(e),
    };
    let tokens: Vec<&str> = text.split_whitespace().collect();
    // Four fields: this release's line, checked by its CRC (a line torn by a power
    // loss must not point past undelivered points). Two or three: earlier ones.
    let intact = match tokens.as_slice() {
        [fields @ .., crc] if fields.len() == 3 => u32::from_str_radix(crc, 16)
            .is_ok_and(|crc| crc == crc32fast::hash(fields.join(" ").as_bytes())),
        _ => true,
    };
    let number = |i: usize| tokens.get(i).and_then(|t| t.parse::<u64>().ok());
    match (intact, number(0), number(1)) {
        (true, Some(segment), Some(offset)) => Ok(SavedAck {
            pos: Pos { segment, offset },
            seq: number(2),
        }),
        _ => {
            tracing::warn!(dir = %dir.display(), "disk buffer: unreadable ack file; delivering everything buffered (some points may be sent twice)");
            Ok(SavedAck::default())
        }
    }
}

/// Length of an `ack` line: `<segment> <offset> <seq> <crc>\n`, the numbers
/// zero-padded to 20 digits (`seq` dashes when unknown), the CRC-32 of the first
/// three fields in 8 hex digits. Fixed, so that each write covers the last.
const ACK_LINE: usize = 3 * 21 + 9;

fn ack_line(pos: Pos, seq: Option<u64>) -> String {
    let seq = seq.map_or_else(|| "-".repeat(20), |seq| format!("{seq:020}"));
    let fields = format!("{:020} {:020} {seq}", pos.segment, pos.offset);
    format!("{fields} {:08x}\n", crc32fast::hash(fields.as_bytes()))
}

/// Records the delivery position: one positioned write over the `ack` file
/// (opened into `file` the first time), without a sync. No temporary file and no
/// rename, which on ext4 would also start writing the new file out; a write torn by
/// a power loss fails its CRC and makes the next start deliver everything again.
fn write_ack(file: &mut Option<File>, dir: &Path, pos: Pos, seq: Option<u64>) -> io::Result<()> {
    use std::os::unix::fs::FileExt;
    let file = match file {
        Some(file) => file,
        None => {
            let opened = OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(false)
                .open(dir.join("ack"))?;
            // A longer line left by an earlier release must not show past ours.
            if opened.metadata()?.len() > ACK_LINE as u64 {
                opened.set_len(ACK_LINE as u64)?;
            }
            file.insert(opened)
        }
    };
    file.write_all_at(ack_line(pos, seq).as_bytes(), 0)
}

/// How many bytes a read should fetch to fill a batch that lacks `points` points
/// and `bytes` bytes of bodies, frames taking `per_point` bytes per point: a little
/// more than that, so that one read usually does.
fn read_ahead(points: u64, bytes: usize, per_point: u64) -> usize {
    let by_points = points.saturating_mul(per_point.max(1));
    let by_points = usize::try_from(by_points.saturating_add(by_points / 8)).unwrap_or(usize::MAX);
    by_points.min(bytes.saturating_add(bytes / 8))
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::FileExt;

    const FORMAT: BodyFormat = BodyFormat::LineProtocol;

    fn record(i: u32) -> Record {
        Record {
            category: if i % 2 == 0 {
                Category::Metric
            } else {
                Category::Logging
            },
            points: 1,
            enqueued_ms: 1_700_000_000_000 + u64::from(i),
            body: format!("m v={i}i {i}\n").into_bytes(),
        }
    }

    fn open(dir: &Path, max_bytes: u64) -> (DiskBuffer, Arc<SinkStats>) {
        let stats = Arc::new(SinkStats::new("t", "test"));
        let buffer = DiskBuffer::open(
            dir,
            "t",
            FORMAT,
            BufferLimits {
                max_bytes,
                sync_every: None,
            },
            stats.clone(),
        )
        .expect("open");
        (buffer, stats)
    }

    fn read_all(buffer: &DiskBuffer) -> ReadBatch {
        let mut batch = ReadBatch::default();
        buffer
            .read_more(&mut batch, u64::MAX, usize::MAX)
            .expect("read");
        batch
    }

    fn rt() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime")
    }

    /// A buffer in `dir` holding records `0..n`, appended one by one.
    fn filled(dir: &Path, max_bytes: u64, n: u32) -> (DiskBuffer, Arc<SinkStats>) {
        let rt = rt();
        let (buffer, stats) = open(dir, max_bytes);
        for i in 0..n {
            rt.block_on(buffer.append(vec![record(i)])).expect("append");
        }
        (buffer, stats)
    }

    #[test]
    fn appended_records_come_back_in_order_and_survive_reopen() {
        let dir = tempfile::tempdir().expect("tempdir");
        let rt = rt();
        {
            let (buffer, _) = open(dir.path(), 1 << 20);
            for i in 0..10 {
                rt.block_on(buffer.append(vec![record(i)])).expect("append");
            }
            let batch = read_all(&buffer);
            assert_eq!(batch.records, (0..10).map(record).collect::<Vec<_>>());
            buffer.close();
        }
        // Nothing was acknowledged: all of it comes back after a restart.
        let (buffer, stats) = open(dir.path(), 1 << 20);
        assert_eq!(buffer.queued_points(), 10);
        assert_eq!(stats.snapshot().queued_points, 10);
        let mut batch = ReadBatch::default();
        buffer.read_more(&mut batch, 4, usize::MAX).expect("read");
        assert_eq!(batch.records, (0..4).map(record).collect::<Vec<_>>());
        buffer.ack(&batch).expect("ack");
        buffer.close();
        drop(buffer);

        // Acknowledged records are not delivered again.
        let (buffer, _) = open(dir.path(), 1 << 20);
        assert_eq!(buffer.queued_points(), 6);
        let batch = read_all(&buffer);
        assert_eq!(batch.records, (4..10).map(record).collect::<Vec<_>>());
    }

    #[test]
    fn a_torn_tail_is_truncated_and_earlier_records_kept() {
        let dir = tempfile::tempdir().expect("tempdir");
        let rt = rt();
        filled(dir.path(), 1 << 20, 5).0.close();
        // Simulate a crash in the middle of a write: half a frame at the end.
        let mut ids = list_segments(dir.path()).expect("list");
        ids.sort_unstable();
        let last_with_data = ids
            .iter()
            .rev()
            .find(|id| {
                fs::metadata(segment_path(dir.path(), **id))
                    .expect("meta")
                    .len()
                    > frame::HEADER as u64
            })
            .copied()
            .expect("a segment with data");
        let path = segment_path(dir.path(), last_with_data);
        let mut frame = Vec::new();
        frame::encode(&record(99), 5, FORMAT, &mut frame);
        let mut file = OpenOptions::new().append(true).open(&path).expect("open");
        file.write_all(&frame[..frame.len() / 2]).expect("write");
        drop(file);
        let before = fs::metadata(&path).expect("meta").len();

        let (buffer, stats) = open(dir.path(), 1 << 20);
        let batch = read_all(&buffer);
        assert_eq!(batch.records, (0..5).map(record).collect::<Vec<_>>());
        assert!(
            fs::metadata(&path).expect("meta").len() < before,
            "torn tail truncated"
        );
        assert_eq!(stats.snapshot().corrupt_bytes, (frame.len() / 2) as u64);
        // And writing goes on after recovery.
        rt.block_on(buffer.append(vec![record(5)])).expect("append");
        let mut more = batch;
        buffer
            .read_more(&mut more, u64::MAX, usize::MAX)
            .expect("read");
        assert_eq!(more.records.len(), 6);
    }

    #[test]
    fn a_corrupt_frame_ends_the_segment() {
        let dir = tempfile::tempdir().expect("tempdir");
        filled(dir.path(), 1 << 20, 3).0.close();
        let ids = list_segments(dir.path()).expect("list");
        let path = ids
            .iter()
            .map(|id| segment_path(dir.path(), *id))
            .find(|p| fs::metadata(p).expect("meta").len() > frame::HEADER as u64)
            .expect("data segment");
        let mut bytes = fs::read(&path).expect("read");
        let last = bytes.len() - 2;
        bytes[last] ^= 0xff; // flip a bit in the last record's body
        fs::write(&path, &bytes).expect("write");
        let (buffer, _) = open(dir.path(), 1 << 20);
        let batch = read_all(&buffer);
        assert_eq!(batch.records, (0..2).map(record).collect::<Vec<_>>());
    }

    /// The one segment holding data, and the offset of each of its frames.
    fn data_segment(dir: &Path) -> (PathBuf, Vec<u64>) {
        let mut ids = list_segments(dir).expect("list");
        ids.sort_unstable();
        let path = ids
            .iter()
            .map(|id| segment_path(dir, *id))
            .find(|p| fs::metadata(p).expect("meta").len() > frame::HEADER as u64)
            .expect("data segment");
        let file = File::open(&path).expect("open");
        let limit = file.metadata().expect("meta").len();
        let mut offsets = Vec::new();
        let mut at = 0;
        loop {
            match frame::read_at(&file, at, limit).expect("read") {
                Found::Frame(frame) => {
                    offsets.push(at);
                    at += frame.len;
                }
                Found::Lost { len, .. } => at += len,
                _ => break,
            }
        }
        (path, offsets)
    }

    fn overwrite(path: &Path, offset: u64, bytes: &[u8]) {
        let file = OpenOptions::new().write(true).open(path).expect("open");
        file.write_all_at(bytes, offset).expect("write");
    }

    #[test]
    fn damage_in_the_middle_loses_only_the_damaged_frames_and_counts_them() {
        let dir = tempfile::tempdir().expect("tempdir");
        filled(dir.path(), 1 << 20, 10).0.close();
        let (path, offsets) = data_segment(dir.path());
        // Garbage over the end of frame 2 and the start of frame 3; a flipped
        // body byte in frame 6; garbage inserted between frames 7 and 8.
        overwrite(&path, offsets[3] - 5, b"0123456789");
        let mut bytes = fs::read(&path).expect("read");
        bytes[offsets[7] as usize - 3] ^= 0x40;
        bytes.splice(
            offsets[8] as usize..offsets[8] as usize,
            b"GARBAGE".iter().copied(),
        );
        fs::write(&path, &bytes).expect("write");

        let (buffer, stats) = open(dir.path(), 1 << 20);
        let expected: Vec<Record> = [0, 1, 4, 5, 7, 8, 9].into_iter().map(record).collect();
        assert_eq!(buffer.queued_points(), 7);
        let batch = read_all(&buffer);
        assert_eq!(batch.records, expected);
        let snap = stats.snapshot();
        assert_eq!(snap.corrupt_points, 3, "{snap:?}");
        let damaged = (offsets[4] - offsets[2]) + (offsets[7] - offsets[6]) + 7;
        assert_eq!(snap.corrupt_bytes, damaged, "{snap:?}");
        buffer.close();
        drop(buffer);

        // Repaired on recovery: the next start neither finds nor reports it again.
        let (buffer, stats) = open(dir.path(), 1 << 20);
        assert_eq!(read_all(&buffer).records, expected);
        let snap = stats.snapshot();
        assert_eq!((snap.corrupt_points, snap.corrupt_bytes), (0, 0));
    }

    #[test]
    fn damage_found_while_running_is_skipped_and_delivery_goes_on() {
        let dir = tempfile::tempdir().expect("tempdir");
        let rt = rt();
        let (buffer, stats) = filled(dir.path(), 1 << 20, 6);
        let (path, offsets) = data_segment(dir.path());
        overwrite(&path, offsets[2] + 3, b"garbage");
        let mut batch = read_all(&buffer);
        let expected: Vec<Record> = [0, 1, 3, 4, 5].into_iter().map(record).collect();
        assert_eq!(batch.records, expected);
        assert_eq!(stats.snapshot().corrupt_points, 1);
        assert_eq!(stats.snapshot().corrupt_bytes, offsets[3] - offsets[2]);
        buffer.ack(&batch).expect("ack");
        assert_eq!(buffer.queued_points(), 0);

        // Damage at the end of what is committed: found now, settled when the next
        // append arrives.
        rt.block_on(buffer.append(vec![record(6)])).expect("append");
        let sixth = offsets[5] + (frame::HEADER + record(5).body.len()) as u64;
        overwrite(&path, sixth + 10, b"XX");
        batch = ReadBatch::default();
        buffer
            .read_more(&mut batch, u64::MAX, usize::MAX)
            .expect("read");
        assert!(batch.is_empty());
        rt.block_on(buffer.append(vec![record(7), record(8)]))
            .expect("append");
        buffer
            .read_more(&mut batch, u64::MAX, usize::MAX)
            .expect("read");
        assert_eq!(batch.records, vec![record(7), record(8)]);
        buffer.ack(&batch).expect("ack");
        let snap = stats.snapshot();
        assert_eq!(
            (snap.corrupt_points, snap.queued_points),
            (2, 0),
            "{snap:?}"
        );
    }

    /// Today's writer before frames were versioned (version 0), frozen: the exact
    /// bytes the previous release put on disk, category as its position in the
    /// category list of that release.
    fn legacy_frame(record: &Record) -> Vec<u8> {
        let legacy_index = |c: Category| match c {
            Category::Metric => 0u8,
            Category::Logging => 1,
            Category::Object => 2,
            Category::CustomObject => 3,
            Category::Keyevent => 4,
            Category::Rum => 5,
        };
        let mut out = Vec::new();
        let len = 1 + 4 + 8 + record.body.len();
        out.extend_from_slice(&(len as u32).to_le_bytes());
        out.extend_from_slice(&[0; 4]);
        out.push(legacy_index(record.category));
        out.extend_from_slice(&record.points.to_le_bytes());
        out.extend_from_slice(&record.enqueued_ms.to_le_bytes());
        out.extend_from_slice(&record.body);
        let crc = crc32fast::hash(&out[8..]);
        out[4..8].copy_from_slice(&crc.to_le_bytes());
        out
    }

    #[test]
    fn a_buffer_written_before_the_upgrade_is_read_back() {
        let dir = tempfile::tempdir().expect("tempdir");
        let rt = rt();
        let old: Vec<Record> = Category::ALL
            .iter()
            .enumerate()
            .map(|(i, category)| Record {
                category: *category,
                points: i as u32 + 1,
                enqueued_ms: 1_700_000_000_000 + i as u64,
                body: format!("m,k=v f={i}i {i}\n").repeat(i + 1).into_bytes(),
            })
            .collect();
        // Two segments and an ack file as the previous release leaves them: the
        // first record of segment 1 delivered, the rest queued.
        let mut first = Vec::new();
        for record in &old[..3] {
            first.extend(legacy_frame(record));
        }
        fs::write(segment_path(dir.path(), 1), &first).expect("write");
        let second: Vec<u8> = old[3..].iter().flat_map(legacy_frame).collect();
        fs::write(segment_path(dir.path(), 2), &second).expect("write");
        fs::write(segment_path(dir.path(), 3), b"").expect("write");
        let delivered = legacy_frame(&old[0]).len();
        fs::write(dir.path().join("ack"), format!("1 {delivered}\n")).expect("ack");

        let (buffer, stats) = open(dir.path(), 1 << 20);
        let queued: u64 = old[1..].iter().map(|r| u64::from(r.points)).sum();
        assert_eq!(buffer.queued_points(), queued);
        rt.block_on(buffer.append(vec![record(0)])).expect("append");
        let mut batch = read_all(&buffer);
        let mut expected = old[1..].to_vec();
        expected.push(record(0));
        assert_eq!(batch.records, expected);
        assert_eq!(stats.snapshot().corrupt_bytes, 0);

        // Acknowledge part of it; the rest, old and new, survives the next restart.
        let rest = batch.records.split_off(2);
        drop(buffer);
        let (buffer, _) = open(dir.path(), 1 << 20);
        let mut first_two = ReadBatch::default();
        buffer
            .read_more(&mut first_two, queued.min(5), usize::MAX)
            .expect("read");
        assert_eq!(first_two.records, expected[..2].to_vec());
        buffer.ack(&first_two).expect("ack");
        buffer.close();
        drop(buffer);
        let (buffer, _) = open(dir.path(), 1 << 20);
        assert_eq!(read_all(&buffer).records, rest);
    }

    #[test]
    fn over_max_bytes_the_oldest_records_are_dropped_and_counted() {
        let dir = tempfile::tempdir().expect("tempdir");
        let rt = rt();
        let (buffer, stats) = open(dir.path(), 64 << 10);
        let n = 4000u32;
        for i in 0..n {
            rt.block_on(buffer.append(vec![record(i)])).expect("append");
        }
        let snap = stats.snapshot();
        assert!(snap.dropped_points > 0, "{snap:?}");
        assert!(snap.queued_bytes <= 64 << 10, "{snap:?}");
        let batch = read_all(&buffer);
        // What is left is the newest, in order, and nothing is both dropped and kept.
        let kept: Vec<Record> = batch.records;
        assert_eq!(kept.last(), Some(&record(n - 1)));
        let first = n - kept.len() as u32;
        assert_eq!(kept, (first..n).map(record).collect::<Vec<_>>());
        assert_eq!(snap.dropped_points + kept.len() as u64, u64::from(n));
    }

    #[test]
    fn with_background_sync_appends_are_acknowledged_and_kept() {
        let dir = tempfile::tempdir().expect("tempdir");
        let rt = rt();
        let limits = BufferLimits {
            max_bytes: 64 << 10,
            sync_every: Some(Duration::from_millis(20)),
        };
        let stats = Arc::new(SinkStats::new("t", "test"));
        {
            let buffer =
                DiskBuffer::open(dir.path(), "t", FORMAT, limits, stats.clone()).expect("open");
            // Enough to roll several segments (each is synced when it is finished).
            for i in 0..2000 {
                rt.block_on(buffer.append(vec![record(i)])).expect("append");
            }
            buffer.close();
        }
        let buffer =
            DiskBuffer::open(dir.path(), "t", FORMAT, limits, stats.clone()).expect("open");
        let batch = read_all(&buffer);
        let dropped = stats.snapshot().dropped_points;
        assert_eq!(batch.records.len() as u64 + dropped, 2000);
        assert_eq!(batch.records.last(), Some(&record(1999)));
    }

    #[test]
    fn a_buffer_cannot_be_opened_twice() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (_first, _) = open(dir.path(), 1 << 20);
        let second = DiskBuffer::open(
            dir.path(),
            "t",
            FORMAT,
            BufferLimits {
                max_bytes: 1 << 20,
                sync_every: None,
            },
            Arc::new(SinkStats::new("t", "test")),
        );
        assert!(matches!(second, Err(BufferError::Locked(_))));
    }

    fn open_as(dir: &Path, format: BodyFormat) -> (DiskBuffer, Arc<SinkStats>) {
        let stats = Arc::new(SinkStats::new("t", "test"));
        let limits = BufferLimits {
            max_bytes: 1 << 20,
            sync_every: None,
        };
        let buffer = DiskBuffer::open(dir, "t", format, limits, stats.clone()).expect("open");
        (buffer, stats)
    }

    /// The segment the writer appends to: the newest.
    fn newest_segment(dir: &Path) -> PathBuf {
        let ids = list_segments(dir).expect("list");
        segment_path(dir, ids.into_iter().max().expect("a segment"))
    }

    #[test]
    fn records_in_another_format_are_kept_apart_and_never_returned_to_send() {
        let dir = tempfile::tempdir().expect("tempdir");
        let rt = rt();
        {
            let (buffer, _) = open_as(dir.path(), BodyFormat::LineProtocol);
            for i in 0..3 {
                rt.block_on(buffer.append(vec![record(i)])).expect("append");
            }
            buffer.close();
        }
        // The sink's type changed, its name (and buffer) kept.
        let (buffer, _) = open_as(dir.path(), BodyFormat::RemoteWrite);
        let old_bytes: usize = (0..3).map(|i| record(i).body.len()).sum();
        assert_eq!(
            buffer.foreign_at_open(),
            [ForeignQueued {
                format: BodyFormat::LineProtocol.code(),
                records: 3,
                points: 3,
                bytes: old_bytes as u64,
            }]
        );
        rt.block_on(buffer.append(vec![record(3), record(4)]))
            .expect("append");
        let batch = read_all(&buffer);
        assert_eq!(batch.records, vec![record(3), record(4)]);
        let foreign: Vec<Foreign> = (0..3)
            .map(|i| Foreign {
                record: record(i),
                format: BodyFormat::LineProtocol.code(),
            })
            .collect();
        assert_eq!(batch.foreign, foreign);
        buffer.ack(&batch).expect("ack");
        assert_eq!(buffer.queued_points(), 0);
        buffer.close();
        drop(buffer);
        let (buffer, _) = open_as(dir.path(), BodyFormat::RemoteWrite);
        assert!(buffer.foreign_at_open().is_empty());
        assert!(read_all(&buffer).is_empty());
    }

    #[test]
    fn a_version_1_buffer_is_read_as_the_sinks_own_format() {
        // Segments exactly as the release before this one left them (version 1:
        // no body format recorded), queued by what was a remote write sink.
        let dir = tempfile::tempdir().expect("tempdir");
        let mut first = Vec::new();
        frame::tests::encode_lost_v1(0, 0, &mut first);
        for i in 0..4 {
            frame::tests::encode_v1(&record(i), u64::from(i), &mut first);
        }
        fs::write(segment_path(dir.path(), 1), &first).expect("write");
        let mut second = Vec::new();
        frame::tests::encode_lost_v1(4, 0, &mut second);
        fs::write(segment_path(dir.path(), 2), &second).expect("write");
        let skip = frame::HEADER + frame::HEADER + record(0).body.len();
        fs::write(dir.path().join("ack"), format!("1 {skip} 1\n")).expect("ack");

        let rt = rt();
        let (buffer, stats) = open_as(dir.path(), BodyFormat::RemoteWrite);
        assert!(buffer.foreign_at_open().is_empty());
        assert_eq!(buffer.queued_points(), 3);
        rt.block_on(buffer.append(vec![record(4)])).expect("append");
        let batch = read_all(&buffer);
        assert_eq!(batch.records, (1..5).map(record).collect::<Vec<_>>());
        assert!(batch.foreign.is_empty());
        let snap = stats.snapshot();
        assert_eq!((snap.corrupt_points, snap.corrupt_bytes), (0, 0));
    }

    // A disk that answers EIO cannot be had portably: the read errors below are
    // injected in the buffer's file I/O layer (`fileio::faults`, tests only).
    #[test]
    fn a_read_error_skips_the_rest_of_that_segment_and_delivery_goes_on() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (buffer, stats) = filled(dir.path(), 32 << 10, 300);
        let (path, offsets) = data_segment(dir.path());
        let in_first = offsets.len() as u32;
        let end = fs::metadata(&path).expect("meta").len();
        let _fault = fileio::faults::fail_reads(&path, offsets[10]);
        let batch = read_all(&buffer);
        let expected: Vec<Record> = (0..10).chain(in_first..300).map(record).collect();
        assert_eq!(batch.records, expected);
        let snap = stats.snapshot();
        assert_eq!(snap.corrupt_points, u64::from(in_first - 10), "{snap:?}");
        assert_eq!(snap.corrupt_bytes, end - offsets[10], "{snap:?}");
        assert!(snap.last_error.unwrap_or_default().contains("cannot read"));
        buffer.ack(&batch).expect("ack");
        assert_eq!(buffer.queued_points(), 0);
        // Delivered past: kept aside, out of the buffer's way.
        let aside = path.with_extension("seg.corrupt");
        assert_eq!(fs::metadata(&aside).expect("kept aside").len(), end);
        assert!(!path.exists());
        buffer.close();
        drop(buffer);
        let (buffer, stats) = open(dir.path(), 32 << 10);
        assert!(read_all(&buffer).is_empty());
        assert_eq!(stats.snapshot().corrupt_bytes, 0);
    }

    #[test]
    fn a_read_error_in_the_segment_being_written_moves_the_writer_on() {
        let dir = tempfile::tempdir().expect("tempdir");
        let rt = rt();
        let (buffer, stats) = filled(dir.path(), 1 << 20, 5);
        let (path, offsets) = data_segment(dir.path());
        assert_eq!(path, newest_segment(dir.path()));
        let _fault = fileio::faults::fail_reads(&path, offsets[2]);
        let mut batch = read_all(&buffer);
        assert_eq!(batch.records, vec![record(0), record(1)]);
        // The next append goes to a new segment, which delivery reads; the points
        // skipped are counted at its start.
        rt.block_on(buffer.append(vec![record(5)])).expect("append");
        assert_ne!(newest_segment(dir.path()), path);
        buffer
            .read_more(&mut batch, u64::MAX, usize::MAX)
            .expect("read");
        assert_eq!(batch.records, vec![record(0), record(1), record(5)]);
        buffer.ack(&batch).expect("ack");
        let snap = stats.snapshot();
        assert_eq!(
            (snap.corrupt_points, snap.queued_points),
            (3, 0),
            "{snap:?}"
        );
        assert!(path.with_extension("seg.corrupt").exists());
    }

    #[test]
    fn a_read_error_found_on_open_keeps_the_file_aside_and_what_was_read() {
        let dir = tempfile::tempdir().expect("tempdir");
        filled(dir.path(), 1 << 20, 10).0.close();
        // A later run that wrote nothing: its empty segment follows the data.
        drop(open(dir.path(), 1 << 20));
        let (path, offsets) = data_segment(dir.path());
        let end = fs::metadata(&path).expect("meta").len();
        let fault = fileio::faults::fail_reads(&path, offsets[6]);
        let (buffer, stats) = open(dir.path(), 1 << 20);
        let snap = stats.snapshot();
        assert_eq!(
            (snap.corrupt_points, snap.corrupt_bytes),
            (4, end - offsets[6]),
            "{snap:?}"
        );
        assert_eq!(buffer.queued_points(), 6);
        assert_eq!(
            read_all(&buffer).records,
            (0..6).map(record).collect::<Vec<_>>()
        );
        let aside = path.with_extension("seg.corrupt");
        assert_eq!(fs::metadata(&aside).expect("kept aside").len(), end);
        buffer.close();
        drop(buffer);
        drop(fault);
        // Repaired: the next start reads what was kept and reports nothing again.
        let (buffer, stats) = open(dir.path(), 1 << 20);
        assert_eq!(
            read_all(&buffer).records,
            (0..6).map(record).collect::<Vec<_>>()
        );
        assert_eq!(stats.snapshot().corrupt_bytes, 0);
    }

    // A full disk needs a tiny filesystem only root can mount: the write cut short
    // by ENOSPC is injected in the buffer's file I/O layer (tests only).
    #[test]
    fn an_append_cut_short_leaves_nothing_in_the_way_of_the_next() {
        let dir = tempfile::tempdir().expect("tempdir");
        let rt = rt();
        let (buffer, stats) = filled(dir.path(), 1 << 20, 3);
        let fault = fileio::faults::fail_next_write(&newest_segment(dir.path()), 25);
        let failed = rt.block_on(buffer.append(vec![record(3)]));
        assert!(failed.is_err(), "the append reports the failure");
        drop(fault);
        for i in 4..6 {
            rt.block_on(buffer.append(vec![record(i)])).expect("append");
        }
        let kept: Vec<Record> = [0, 1, 2, 4, 5].into_iter().map(record).collect();
        assert_eq!(read_all(&buffer).records, kept);
        assert_eq!(buffer.queued_points(), 5);
        buffer.close();
        drop(buffer);
        assert_eq!(stats.snapshot().corrupt_bytes, 0);
        let (buffer, stats) = open(dir.path(), 1 << 20);
        assert_eq!(read_all(&buffer).records, kept);
        let snap = stats.snapshot();
        assert_eq!(
            (snap.corrupt_points, snap.corrupt_bytes),
            (0, 0),
            "{snap:?}"
        );
    }

    #[test]
    fn appends_waiting_during_a_sync_share_the_next_one() {
        let dir = tempfile::tempdir().expect("tempdir");
        let rt = rt();
        let (buffer, _) = open(dir.path(), 1 << 20);
        let held = fileio::faults::hold_syncs(&newest_segment(dir.path()));
        let gate = held.gate.clone().expect("a gate");
        let mut pending = vec![rt
            .block_on(buffer.start_append(vec![record(0)]))
            .expect("queued")];
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while gate.held() == 0 {
            assert!(
                std::time::Instant::now() < deadline,
                "the writer never synced"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        // Seven appends arrive while the first one's sync is under way.
        for i in 1..8 {
            pending.push(
                rt.block_on(buffer.start_append(vec![record(i)]))
                    .expect("queued"),
            );
        }
        gate.open();
        for done in pending {
            rt.block_on(buffer.finish_append(done)).expect("append");
        }
        assert_eq!(gate.held(), 2, "one sync for the first, one for the seven");
        assert_eq!(
            read_all(&buffer).records,
            (0..8).map(record).collect::<Vec<_>>()
        );
    }

    #[test]
    fn the_ack_file_is_checked_and_read_in_every_format() {
        let dir = tempfile::tempdir().expect("tempdir");
        let pos = Pos {
            segment: 7,
            offset: 1234,
        };
        let mut file = None;
        write_ack(&mut file, dir.path(), pos, Some(99)).expect("write");
        let line = fs::read_to_string(dir.path().join("ack")).expect("read");
        assert_eq!(line.len(), ACK_LINE);
        let saved = read_ack(dir.path()).expect("read");
        assert_eq!((saved.pos, saved.seq), (pos, Some(99)));
        write_ack(&mut file, dir.path(), Pos::default(), None).expect("write");
        let saved = read_ack(dir.path()).expect("read");
        assert_eq!((saved.pos, saved.seq), (Pos::default(), None));
        // A digit changed (a write torn by a power loss): not trusted, everything
        // buffered is delivered again rather than points skipped.
        let torn = ack_line(pos, Some(99)).replacen("1234", "9234", 1);
        fs::write(dir.path().join("ack"), torn).expect("write");
        assert_eq!(read_ack(dir.path()).expect("read").pos, Pos::default());
        // The lines of earlier releases.
        for (text, seq) in [("7 1234 99\n", Some(99)), ("7 1234\n", None)] {
            fs::write(dir.path().join("ack"), text).expect("write");
            let saved = read_ack(dir.path()).expect("read");
            assert_eq!((saved.pos, saved.seq), (pos, seq), "{text:?}");
        }
        // Rewritten in place over a line of an earlier release.
        let long = format!("{} {} {}\n", u64::MAX, u64::MAX, u64::MAX);
        fs::write(dir.path().join("ack"), &long).expect("write");
        write_ack(&mut None, dir.path(), pos, Some(1)).expect("write");
        let saved = read_ack(dir.path()).expect("read");
        assert_eq!((saved.pos, saved.seq), (pos, Some(1)));
    }

    #[test]
    fn commits_wake_a_reader_only_once_its_batch_can_be_filled() {
        let dir = tempfile::tempdir().expect("tempdir");
        let rt = rt();
        let (buffer, _) = open(dir.path(), 1 << 20);
        let mut watch = buffer.watch();
        let mut batch = ReadBatch::default();
        // Each step: read, wait for what would fill the batch of five, append.
        let wait_for_more = |batch: &mut ReadBatch, watch: &mut watch::Receiver<Committed>| {
            buffer.read_more(batch, 5, usize::MAX).expect("read");
            let target = batch
                .full_at(5, usize::MAX)
                .expect("all committed was read");
            buffer.wake_when(target);
            assert!(!watch.borrow_and_update().reached(&target));
            target
        };
        // An empty batch wants anything.
        let target = wait_for_more(&mut batch, &mut watch);
        rt.block_on(buffer.append(vec![record(0)])).expect("append");
        assert!(watch.has_changed().expect("open"));
        // With one record it wants four more points: three commits do not wake it.
        let target_after_one = wait_for_more(&mut batch, &mut watch);
        assert_eq!(target_after_one.points, target.points - 1 + 5);
        for i in 1..4 {
            rt.block_on(buffer.append(vec![record(i)])).expect("append");
            assert!(!watch.has_changed().expect("open"), "woken by commit {i}");
        }
        rt.block_on(buffer.append(vec![record(4)])).expect("append");
        assert!(watch.has_changed().expect("open"));
        buffer.read_more(&mut batch, 5, usize::MAX).expect("read");
        assert_eq!(batch.records, (0..5).map(record).collect::<Vec<_>>());
        // Read to its limit: whether more is committed is not known.
        assert_eq!(batch.full_at(5, usize::MAX), None);
    }

    #[test]
    fn concurrent_appends_share_syncs_and_all_arrive() {
        let dir = tempfile::tempdir().expect("tempdir");
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .build()
            .expect("runtime");
        let (buffer, _) = open(dir.path(), 64 << 20);
        let buffer = Arc::new(buffer);
        rt.block_on(async {
            let mut tasks = Vec::new();
            for t in 0..8u32 {
                let buffer = buffer.clone();
                tasks.push(tokio::spawn(async move {
                    for i in 0..100u32 {
                        buffer
                            .append(vec![record(t * 1000 + i)])
                            .await
                            .expect("append");
                    }
                }));
            }
            for task in tasks {
                task.await.expect("task");
            }
        });
        let batch = read_all(&buffer);
        assert_eq!(batch.records.len(), 800);
    }
}
