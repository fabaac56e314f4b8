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
//! Each segment is a sequence of frames, `[len: u32 LE][crc32: u32 LE][payload]`, the
//! payload being `[category: u8][points: u32 LE][enqueued unix ms: u64 LE][body]` with
//! the body in line protocol, ready to send. `ack` holds `"<segment> <offset>\n"`: the
//! position up to which the backend has accepted everything.
//!
//! Durability: an append is acknowledged to the caller only after its frames are
//! written and `fdatasync`ed (and, for a new segment, the directory too). Appends that
//! wait at the same time share one sync (group commit), so throughput does not
//! collapse to one sync per report. With `fsync = "<duration>"` an append is
//! acknowledged once written (the page cache survives a crash or SIGKILL of the agent)
//! and synced in the background at most that long later. The `ack` file is replaced atomically (write,
//! rename) without a sync: after a power loss it can only lag, which means some points
//! are sent twice, never that one is lost (at-least-once).
//!
//! Recovery: on open every segment is scanned; a frame that is short or whose CRC does
//! not match (a torn write at the instant of a crash) ends that segment: the file is
//! truncated there and the loss is logged. Writing always resumes in a fresh segment.
//!
//! Bounds: when the segments' total size exceeds `max_bytes`, whole segments are
//! deleted oldest first (segments are at most an eighth of `max_bytes`, so at most
//! that share is lost at once); the points they held that were not yet delivered are
//! counted as dropped and logged with the sink's name.

use std::collections::VecDeque;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, watch};

use super::state::SinkStats;
use crate::point::Category;

/// Frame header: length and CRC of the payload.
const FRAME_HEADER: usize = 8;
/// Payload header: category, point count, enqueue time.
const RECORD_HEADER: usize = 1 + 4 + 8;
/// A frame claiming more than this is corruption, not data.
const MAX_FRAME: u32 = 256 << 20;
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
    /// Line protocol, one point per line.
    pub body: Vec<u8>,
}

/// A place in the log: a segment and a byte offset in it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Pos {
    pub segment: u64,
    pub offset: u64,
}

/// Records read but not yet acknowledged, and where they end.
#[derive(Debug, Default)]
pub struct ReadBatch {
    pub records: Vec<Record>,
    /// The segment each record was read from.
    segments: Vec<u64>,
    /// Points per segment, to settle the counts on ack.
    per_segment: Vec<(u64, u64)>,
    /// Position after the last record.
    end: Pos,
}

impl ReadBatch {
    pub fn points(&self) -> u64 {
        self.records.iter().map(|r| u64::from(r.points)).sum()
    }

    pub fn bytes(&self) -> usize {
        self.records.iter().map(|r| r.body.len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    pub fn oldest_ms(&self) -> Option<u64> {
        self.records.first().map(|r| r.enqueued_ms)
    }
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
    committed: watch::Receiver<u64>,
}

struct Append {
    records: Vec<Record>,
    done: oneshot::Sender<Result<(), String>>,
}

struct Shared {
    dir: PathBuf,
    sink: String,
    limits: BufferLimits,
    state: Mutex<State>,
    stats: Arc<SinkStats>,
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
}

#[derive(Debug)]
struct State {
    segments: VecDeque<Segment>,
    ack: Pos,
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
    file: Option<(u64, BufReader<File>)>,
}

impl DiskBuffer {
    /// Opens (or creates) the buffer in `dir`, recovering what a previous run left.
    pub fn open(
        dir: &Path,
        sink: &str,
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
        let ack = read_ack(dir).map_err(err("cannot read the ack file"))?;
        let mut ids = list_segments(dir).map_err(err("cannot list segments"))?;
        ids.sort_unstable();
        let mut segments = VecDeque::new();
        for id in ids {
            let path = segment_path(dir, id);
            if id < ack.segment {
                // Fully delivered before the last stop.
                fs::remove_file(&path).map_err(err("cannot remove a delivered segment"))?;
                continue;
            }
            let from = if id == ack.segment { ack.offset } else { 0 };
            let scan = scan_segment(&path, from).map_err(err("cannot scan a segment"))?;
            if let Some(lost) = scan.torn_bytes {
                tracing::warn!(sink = sink, segment = %path.display(), valid_bytes = scan.valid_bytes, lost_bytes = lost,
                    "disk buffer: incomplete or corrupt data at the end of a segment (an interrupted write); truncated there");
                stats.add_corrupt_bytes(lost);
                let file = OpenOptions::new()
                    .write(true)
                    .open(&path)
                    .map_err(err("cannot open a segment to truncate it"))?;
                file.set_len(scan.valid_bytes)
                    .and_then(|()| file.sync_all())
                    .map_err(err("cannot truncate a segment"))?;
            }
            segments.push_back(Segment {
                id,
                bytes: scan.valid_bytes,
                unacked_points: scan.points_after,
                oldest_ms: scan.oldest_ms_after,
            });
        }
        let next_id = segments.back().map_or(1, |s| s.id + 1);
        let ack = match segments.front() {
            Some(first) if first.id == ack.segment => Pos {
                segment: ack.segment,
                offset: ack.offset.min(first.bytes),
            },
            Some(first) => Pos {
                segment: first.id,
                offset: 0,
            },
            None => Pos {
                segment: next_id,
                offset: 0,
            },
        };
        let current = create_segment(dir, next_id).map_err(err("cannot create a segment"))?;
        segments.push_back(Segment {
            id: next_id,
            bytes: 0,
            unacked_points: 0,
            oldest_ms: None,
        });
        let state = State { segments, ack };
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
            limits,
            state: Mutex::new(state),
            stats,
        });
        shared.publish(&lock(&shared.state));

        let (tx, rx) = mpsc::channel(APPEND_QUEUE);
        let (committed_tx, committed_rx) = watch::channel(0u64);
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
                    bytes: 0,
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
            }),
            committed: committed_rx,
        })
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

    /// A receiver that changes whenever new records are committed.
    pub fn watch(&self) -> watch::Receiver<u64> {
        self.committed.clone()
    }

    /// Points not yet acknowledged.
    pub fn queued_points(&self) -> u64 {
        lock(&self.shared.state).queued_points()
    }

    /// Reads committed records after what `batch` (and earlier reads) already hold,
    /// until the batch has `max_points` points or `max_bytes` bytes. Blocking I/O.
    pub fn read_more(
        &self,
        batch: &mut ReadBatch,
        max_points: u64,
        max_bytes: usize,
    ) -> Result<(), BufferError> {
        let mut reader = lock(&self.reader);
        let mut points = batch.points();
        let mut bytes = batch.bytes();
        loop {
            if points >= max_points || bytes >= max_bytes {
                return Ok(());
            }
            // Where may we read, and is our segment still there?
            let (end, next) = {
                let state = lock(&self.shared.state);
                let Some(first) = state.segments.front() else {
                    return Ok(());
                };
                if reader.pos.segment < first.id {
                    // Dropped while we were behind; those points were counted.
                    reader.pos = Pos {
                        segment: first.id,
                        offset: 0,
                    };
                    reader.file = None;
                }
                let current = state.segments.iter().find(|s| s.id == reader.pos.segment);
                let Some(current) = current else {
                    return Ok(());
                };
                let next = state
                    .segments
                    .iter()
                    .find(|s| s.id > reader.pos.segment)
                    .map(|s| s.id);
                (current.bytes, next)
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
                    None => return Ok(()),
                }
            }
            let pos = reader.pos;
            let file = match &mut reader.file {
                Some((id, file)) if *id == pos.segment => file,
                _ => {
                    let path = segment_path(&self.shared.dir, pos.segment);
                    let mut file = File::open(&path).map_err(|source| BufferError::Io {
                        dir: self.shared.dir.clone(),
                        context: format!("cannot open {}", path.display()),
                        source,
                    })?;
                    file.seek(SeekFrom::Start(pos.offset))
                        .map_err(|source| BufferError::Io {
                            dir: self.shared.dir.clone(),
                            context: "cannot seek".to_string(),
                            source,
                        })?;
                    &mut reader.file.insert((pos.segment, BufReader::new(file))).1
                }
            };
            let frame = read_frame(file).map_err(|source| BufferError::Io {
                dir: self.shared.dir.clone(),
                context: format!("cannot read segment {} at {}", pos.segment, pos.offset),
                source,
            })?;
            let Some((record, len)) = frame else {
                // Committed data is complete and checked; this is a bug or tampering.
                return Err(BufferError::Io {
                    dir: self.shared.dir.clone(),
                    context: format!("bad frame in segment {} at {}", pos.segment, pos.offset),
                    source: io::Error::from(io::ErrorKind::InvalidData),
                });
            };
            reader.pos.offset += len;
            points += u64::from(record.points);
            bytes += record.body.len();
            match batch.per_segment.last_mut() {
                Some((id, n)) if *id == pos.segment => *n += u64::from(record.points),
                _ => batch
                    .per_segment
                    .push((pos.segment, u64::from(record.points))),
            }
            batch.records.push(record);
            batch.segments.push(pos.segment);
            batch.end = reader.pos;
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
        }
        let ack = state.ack;
        while state.segments.len() > 1 && state.segments.front().is_some_and(|s| s.id < ack.segment)
        {
            if let Some(done) = state.segments.pop_front() {
                let _ = fs::remove_file(segment_path(&self.shared.dir, done.id));
            }
        }
        // The oldest queued time is kept per segment: refresh it for the segment the
        // ack position is in from the record at that position.
        if let Some(first) = state.segments.front_mut() {
            if first.id == ack.segment {
                first.oldest_ms = if first.unacked_points == 0 {
                    None
                } else {
                    peek_ms(&segment_path(&self.shared.dir, first.id), ack.offset)
                };
            }
        }
        write_ack(&self.shared.dir, ack).map_err(|source| BufferError::Io {
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
    committed: watch::Sender<u64>,
    /// The background sync of `sync_every`; `None` when every append is synced.
    lazy: Option<LazySync>,
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
        let mut frames = Vec::new();
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
            let result = self.write_group(&group, &mut frames);
            if let Err(error) = &result {
                tracing::error!(sink = %self.shared.sink, dir = %self.shared.dir.display(), %error, "disk buffer: append failed; these points are not buffered");
                self.shared
                    .stats
                    .set_last_error(format!("disk buffer: {error}"));
            }
            let reply = result.map_err(|e| e.to_string());
            for append in group {
                let _ = append.done.send(reply.clone());
            }
            self.committed.send_modify(|n| *n += 1);
        }
        let _ = self.file.sync_data();
    }

    fn write_group(&mut self, group: &[Append], frames: &mut Vec<u8>) -> io::Result<()> {
        let segment_bytes = self.shared.limits.segment_bytes();
        frames.clear();
        let mut points = 0u64;
        let mut oldest = None;
        for record in group.iter().flat_map(|a| a.records.iter()) {
            encode_frame(record, frames);
            points += u64::from(record.points);
            oldest.get_or_insert(record.enqueued_ms);
            if self.bytes + frames.len() as u64 >= segment_bytes {
                self.flush(frames, points, oldest)?;
                points = 0;
                oldest = None;
                self.roll()?;
            }
        }
        if !frames.is_empty() {
            self.flush(frames, points, oldest)?;
        }
        Ok(())
    }

    /// Writes and syncs `frames`, then makes them visible to the reader and enforces
    /// `max_bytes`.
    fn flush(&mut self, frames: &mut Vec<u8>, points: u64, oldest: Option<u64>) -> io::Result<()> {
        self.file.write_all(frames)?;
        match &self.lazy {
            None => self.file.sync_data()?,
            Some(lazy) => lazy.mark_dirty(),
        }
        self.bytes += frames.len() as u64;
        frames.clear();
        let mut state = lock(&self.shared.state);
        if let Some(segment) = state.segments.iter_mut().find(|s| s.id == self.id) {
            segment.bytes = self.bytes;
            segment.unacked_points += points;
            if segment.oldest_ms.is_none() {
                segment.oldest_ms = oldest;
            }
        }
        self.shared.stats.add_buffered(points);
        self.enforce_limit(&mut state);
        self.shared.publish(&state);
        Ok(())
    }

    /// Starts the next segment.
    fn roll(&mut self) -> io::Result<()> {
        let id = self.id + 1;
        if self.lazy.is_some() {
            // A finished segment is always on disk.
            self.file.sync_data()?;
        }
        self.file = create_segment(&self.shared.dir, id)?;
        if let Some(lazy) = &self.lazy {
            lazy.switch_to(&self.file)?;
        }
        self.id = id;
        self.bytes = 0;
        lock(&self.shared.state).segments.push_back(Segment {
            id,
            bytes: 0,
            unacked_points: 0,
            oldest_ms: None,
        });
        Ok(())
    }

    /// Deletes the oldest segments while the buffer is over `max_bytes`.
    fn enforce_limit(&self, state: &mut State) {
        let max = self.shared.limits.max_bytes;
        while state.total_bytes() > max && state.segments.len() > 1 {
            let Some(oldest) = state.segments.pop_front() else {
                break;
            };
            let _ = fs::remove_file(segment_path(&self.shared.dir, oldest.id));
            if state.ack.segment <= oldest.id {
                if let Some(next) = state.segments.front() {
                    state.ack = Pos {
                        segment: next.id,
                        offset: 0,
                    };
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

/// What a scan of one segment found.
struct Scan {
    valid_bytes: u64,
    torn_bytes: Option<u64>,
    points_after: u64,
    oldest_ms_after: Option<u64>,
}

fn scan_segment(path: &Path, from: u64) -> io::Result<Scan> {
    let total = fs::metadata(path)?.len();
    let mut file = BufReader::new(File::open(path)?);
    let mut offset = 0u64;
    let mut points_after = 0;
    let mut oldest_ms_after = None;
    while let Some((record, len)) = read_frame(&mut file)? {
        if offset >= from {
            points_after += u64::from(record.points);
            oldest_ms_after.get_or_insert(record.enqueued_ms);
        }
        offset += len;
    }
    Ok(Scan {
        valid_bytes: offset,
        torn_bytes: (offset < total).then_some(total - offset),
        points_after,
        oldest_ms_after,
    })
}

/// The enqueue time of the record at `offset` of a segment, if one is there.
fn peek_ms(path: &Path, offset: u64) -> Option<u64> {
    let mut file = File::open(path).ok()?;
    file.seek(SeekFrom::Start(offset)).ok()?;
    let mut head = [0u8; FRAME_HEADER + RECORD_HEADER];
    file.read_exact(&mut head).ok()?;
    Some(u64::from_le_bytes(
        head[FRAME_HEADER + 5..].try_into().ok()?,
    ))
}

fn encode_frame(record: &Record, out: &mut Vec<u8>) {
    let len = RECORD_HEADER + record.body.len();
    let start = out.len();
    out.extend_from_slice(&(len as u32).to_le_bytes());
    out.extend_from_slice(&[0; 4]);
    out.push(category_byte(record.category));
    out.extend_from_slice(&record.points.to_le_bytes());
    out.extend_from_slice(&record.enqueued_ms.to_le_bytes());
    out.extend_from_slice(&record.body);
    let crc = crc32fast::hash(&out[start + FRAME_HEADER..]);
    out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
}

/// Reads one frame: `Ok(None)` at a clean end or at a torn/corrupt frame.
fn read_frame(file: &mut impl Read) -> io::Result<Option<(Record, u64)>> {
    let mut header = [0u8; FRAME_HEADER];
    if !read_full(file, &mut header)? {
        return Ok(None);
    }
    let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]);
    let crc = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
    if (len as usize) < RECORD_HEADER || len > MAX_FRAME {
        return Ok(None);
    }
    let mut payload = vec![0u8; len as usize];
    if !read_full(file, &mut payload)? {
        return Ok(None);
    }
    if crc32fast::hash(&payload) != crc {
        return Ok(None);
    }
    let Some(category) = byte_category(payload[0]) else {
        return Ok(None);
    };
    let points = u32::from_le_bytes([payload[1], payload[2], payload[3], payload[4]]);
    let mut ms = [0u8; 8];
    ms.copy_from_slice(&payload[5..13]);
    let body = payload.split_off(RECORD_HEADER);
    Ok(Some((
        Record {
            category,
            points,
            enqueued_ms: u64::from_le_bytes(ms),
            body,
        },
        (FRAME_HEADER + len as usize) as u64,
    )))
}

/// Fills `buf`; false if the file ended first (a torn frame or a clean end).
fn read_full(file: &mut impl Read, buf: &mut [u8]) -> io::Result<bool> {
    let mut filled = 0;
    while filled < buf.len() {
        match file.read(&mut buf[filled..]) {
            Ok(0) => return Ok(false),
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(true)
}

fn category_byte(category: Category) -> u8 {
    Category::ALL
        .iter()
        .position(|c| *c == category)
        .map_or(0, |i| i as u8)
}

fn byte_category(byte: u8) -> Option<Category> {
    Category::ALL.get(usize::from(byte)).copied()
}

fn segment_path(dir: &Path, id: u64) -> PathBuf {
    dir.join(format!("{id:020}.seg"))
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

/// Creates an empty segment and syncs the directory so the file survives power loss.
fn create_segment(dir: &Path, id: u64) -> io::Result<File> {
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(segment_path(dir, id))?;
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

fn read_ack(dir: &Path) -> io::Result<Pos> {
    let text = match fs::read_to_string(dir.join("ack")) {
        Ok(text) => text,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Pos::default()),
        Err(e) => return Err(e),
    };
    let mut parts = text.split_whitespace().map(str::parse::<u64>);
    match (parts.next(), parts.next()) {
        (Some(Ok(segment)), Some(Ok(offset))) => Ok(Pos { segment, offset }),
        _ => {
            tracing::warn!(dir = %dir.display(), "disk buffer: unreadable ack file; delivering everything buffered (some points may be sent twice)");
            Ok(Pos::default())
        }
    }
}

fn write_ack(dir: &Path, pos: Pos) -> io::Result<()> {
    let tmp = dir.join("ack.tmp");
    fs::write(&tmp, format!("{} {}\n", pos.segment, pos.offset))?;
    fs::rename(tmp, dir.join("ack"))
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

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
        {
            let (buffer, _) = open(dir.path(), 1 << 20);
            for i in 0..5 {
                rt.block_on(buffer.append(vec![record(i)])).expect("append");
            }
            buffer.close();
        }
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
                    > 0
            })
            .copied()
            .expect("a segment with data");
        let path = segment_path(dir.path(), last_with_data);
        let mut frame = Vec::new();
        encode_frame(&record(99), &mut frame);
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
        let rt = rt();
        {
            let (buffer, _) = open(dir.path(), 1 << 20);
            for i in 0..3 {
                rt.block_on(buffer.append(vec![record(i)])).expect("append");
            }
            buffer.close();
        }
        let ids = list_segments(dir.path()).expect("list");
        let path = ids
            .iter()
            .map(|id| segment_path(dir.path(), *id))
            .find(|p| fs::metadata(p).expect("meta").len() > 0)
            .expect("data segment");
        let mut bytes = fs::read(&path).expect("read");
        let last = bytes.len() - 2;
        bytes[last] ^= 0xff; // flip a bit in the last record's body
        fs::write(&path, &bytes).expect("write");
        let (buffer, _) = open(dir.path(), 1 << 20);
        let batch = read_all(&buffer);
        assert_eq!(batch.records, (0..2).map(record).collect::<Vec<_>>());
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
            let buffer = DiskBuffer::open(dir.path(), "t", limits, stats.clone()).expect("open");
            // Enough to roll several segments (each is synced when it is finished).
            for i in 0..2000 {
                rt.block_on(buffer.append(vec![record(i)])).expect("append");
            }
            buffer.close();
        }
        let buffer = DiskBuffer::open(dir.path(), "t", limits, stats.clone()).expect("open");
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
            BufferLimits {
                max_bytes: 1 << 20,
                sync_every: None,
            },
            Arc::new(SinkStats::new("t", "test")),
        );
        assert!(matches!(second, Err(BufferError::Locked(_))));
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
