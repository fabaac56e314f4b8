//! Model-based property test of the disk buffer: random sequences of appends,
//! deliveries, crashes (the buffer dropped without a clean close, then reopened from
//! disk, as after a SIGKILL), writes torn by a crash, damaged bytes, segments that
//! cannot be read (EIO), appends cut short (ENOSPC) and restarts as a sink of
//! another type (another body format), checked after every step against a model of
//! what must come out (docs/BUFFER.md).
//!
//! The model holds every appended record in order with the format it was written in,
//! the delivery cursor (everything before it was delivered and acknowledged) and the
//! records whose frames were damaged or made unreadable. After each step:
//! - a delivery returns exactly the next intact records after the cursor, in order:
//!   those in the buffer's current format to send, the others apart as foreign;
//!   every intact acknowledged append arrives, nothing damaged, failed or made up
//!   does, and a record comes twice only when it was delivered but not acknowledged
//!   before a crash (the at-least-once window);
//! - the points the buffer counts as lost equal the points of the damaged records,
//!   each counted every time a reader (recovery or delivery) passes it.
//!
//! Damage is aimed at frames that are not the last one of their segment, and read
//! errors at segments that are not the newest, so an intact frame follows each loss
//! and it can be counted exactly; damage at the very end of the buffer is a torn
//! write, covered by the `TornWrite` step (bytes only, the append never having been
//! acknowledged). Read errors and failed writes are injected in the buffer's file
//! I/O layer (`fileio::faults`): no test can make a disk fail portably.

use std::collections::BTreeSet;
use std::fs::{self, File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use proptest::prelude::*;

use super::fileio::faults;
use super::frame::{self, Found};
use super::{list_segments, segment_path, BufferLimits, DiskBuffer, ReadBatch, Record};
use crate::point::Category;
use crate::sink::body_format::BodyFormat;
use crate::stats::SinkStats;

#[derive(Clone, Debug)]
enum Op {
    /// One append (one group commit) of records with 1..=3 points each.
    Append(Vec<u8>),
    /// Read up to this many points, deliver them, acknowledge.
    Deliver(u8),
    /// Read and deliver, then crash before the acknowledgement.
    DeliverThenCrash(u8),
    /// Drop the buffer without closing it and reopen it from disk.
    Crash,
    /// Crash in the middle of a write: part of a frame at the end of the newest
    /// segment, then reopen.
    TornWrite(u16),
    /// Damage a queued frame: overwrite (while the buffer runs, or while stopped)
    /// or insert garbage (while stopped) at a place inside it.
    Damage {
        pick: u16,
        at: u16,
        len: u8,
        live: bool,
        insert: bool,
    },
    /// Reads of a queued frame's segment fail (EIO) from that frame on, found by
    /// the running buffer or by the next start.
    ReadError { pick: u16, live: bool },
    /// An append whose write stops after some bytes (ENOSPC).
    FailedAppend { keep: u16, points: u8 },
    /// Restart as a sink of another type: another body format.
    Retype,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => prop::collection::vec(1u8..=3, 1..=3).prop_map(Op::Append),
        3 => (1u8..=12).prop_map(Op::Deliver),
        1 => (1u8..=12).prop_map(Op::DeliverThenCrash),
        1 => Just(Op::Crash),
        1 => any::<u16>().prop_map(Op::TornWrite),
        3 => (any::<u16>(), any::<u16>(), 1u8..=64, any::<bool>(), any::<bool>()).prop_map(
            |(pick, at, len, live, insert)| Op::Damage { pick, at, len, live, insert }
        ),
        1 => (any::<u16>(), any::<bool>()).prop_map(|(pick, live)| Op::ReadError { pick, live }),
        1 => (any::<u16>(), 1u8..=3).prop_map(|(keep, points)| Op::FailedAppend { keep, points }),
        1 => Just(Op::Retype),
    ]
}

/// A point line large enough that the 8 KiB segments roll every few appends.
fn body(id: u64, points: u8) -> Vec<u8> {
    let mut out = String::new();
    for p in 0..points {
        out.push_str(&format!(
            "m,r={id} p={p}i,pad=\"{}\" {id}\n",
            "x".repeat(60)
        ));
    }
    out.into_bytes()
}

fn record_id(record: &Record) -> u64 {
    let text = String::from_utf8_lossy(&record.body);
    text.strip_prefix("m,r=")
        .and_then(|rest| rest.split(' ').next())
        .and_then(|id| id.parse().ok())
        .unwrap_or(u64::MAX)
}

fn make_record(id: u64, points: u8) -> Record {
    Record {
        category: Category::ALL[(id % 6) as usize],
        points: u32::from(points),
        enqueued_ms: 1_700_000_000_000 + id,
        body: body(id, points),
    }
}

/// An intact frame on disk, by record id.
struct Placed {
    path: PathBuf,
    offset: u64,
    len: u64,
    id: u64,
    last_in_segment: bool,
}

/// Every intact frame in the segments (damage skipped the way a reader skips it).
fn layout(dir: &Path) -> Vec<Placed> {
    let mut ids = list_segments(dir).expect("list");
    ids.sort_unstable();
    let mut out = Vec::new();
    for id in ids {
        let path = segment_path(dir, id);
        let file = File::open(&path).expect("open");
        let limit = file.metadata().expect("meta").len();
        let first = out.len();
        let mut at = 0;
        // A segment made unreadable is listed up to the failing read.
        while let Ok(found) = frame::read_at(&file, at, limit) {
            match found {
                Found::Frame(frame) => {
                    out.push(Placed {
                        path: path.clone(),
                        offset: at,
                        len: frame.len,
                        id: record_id(&frame.record),
                        last_in_segment: false,
                    });
                    at += frame.len;
                }
                Found::Lost { len, .. } => at += len,
                Found::End => break,
                Found::Damaged => match frame::resync(&file, at + 1, limit) {
                    Ok(Some(next)) => at = next,
                    _ => break,
                },
            }
        }
        if out.len() > first {
            if let Some(last) = out.last_mut() {
                last.last_in_segment = true;
            }
        }
    }
    out
}

struct Model {
    /// Injected faults, removed (first, before the files go) when the model drops.
    faults: Vec<faults::Guard>,
    dir: tempfile::TempDir,
    buffer: Option<DiskBuffer>,
    stats: Arc<SinkStats>,
    /// The format the buffer is open with.
    format: BodyFormat,
    /// (id, points, format written in), in append order.
    appended: Vec<(u64, u8, BodyFormat)>,
    /// Index into `appended` of the first record not acknowledged.
    cursor: usize,
    /// Ids whose frames were damaged (never to be delivered after that).
    damaged: BTreeSet<u64>,
    /// Damaged ids still in the files (recovery repairs what it scans).
    unrepaired: BTreeSet<u64>,
    /// Segments with damage or a read fault the files still hold (recovery repairs
    /// both): damage and faults are not mixed in one segment, where a read error
    /// met while scanning past damage would lose the intact frames in between.
    spoiled: BTreeSet<PathBuf>,
    /// Damaged ids the running buffer's reader passed (and counted) already.
    passed: BTreeSet<u64>,
    /// Ids delivered but not acknowledged before a crash: may come again.
    window: BTreeSet<u64>,
    delivered: BTreeSet<u64>,
    /// Lost points the buffer must have counted, over every run.
    expected_lost: u64,
    /// Lost points counted by the runs before the current one.
    counted_before: u64,
    next_id: u64,
}

const FORMAT: BodyFormat = BodyFormat::LineProtocol;

const LIMITS: BufferLimits = BufferLimits {
    // 8 KiB segments; more than a whole test case ever holds, so nothing is dropped.
    max_bytes: 64 << 10,
    sync_every: None,
};

impl Model {
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let stats = Arc::new(SinkStats::new("model", "test"));
        let buffer =
            DiskBuffer::open(dir.path(), "model", FORMAT, LIMITS, stats.clone()).expect("open");
        Self {
            faults: Vec::new(),
            dir,
            buffer: Some(buffer),
            stats,
            format: FORMAT,
            appended: Vec::new(),
            cursor: 0,
            damaged: BTreeSet::new(),
            unrepaired: BTreeSet::new(),
            spoiled: BTreeSet::new(),
            passed: BTreeSet::new(),
            window: BTreeSet::new(),
            delivered: BTreeSet::new(),
            expected_lost: 0,
            counted_before: 0,
            next_id: 0,
        }
    }

    fn buffer(&self) -> &DiskBuffer {
        self.buffer.as_ref().expect("open buffer")
    }

    fn points_of(&self, id: u64) -> u64 {
        self.appended
            .iter()
            .find(|(i, _, _)| *i == id)
            .map_or(0, |(_, p, _)| u64::from(*p))
    }

    /// Damaged records from the cursor up to (not including) index `until`, still
    /// in the files: what a reader passing them counts.
    fn damaged_between(&self, until: usize) -> Vec<u64> {
        self.appended[self.cursor..until]
            .iter()
            .map(|(id, _, _)| *id)
            .filter(|id| self.unrepaired.contains(id))
            .collect()
    }

    fn index_of(&self, id: u64) -> usize {
        self.appended
            .iter()
            .position(|(i, _, _)| *i == id)
            .expect("delivered id was appended")
    }

    /// Drops the buffer without a clean close.
    fn crash(&mut self) {
        self.counted_before += self.stats.snapshot().corrupt_points;
        self.buffer = None;
    }

    /// Opens the buffer again: recovery counts and repairs the damage it scans.
    fn reopen(&mut self) {
        let scanned = self.damaged_between(self.appended.len());
        for id in &scanned {
            self.expected_lost += self.points_of(*id);
            self.unrepaired.remove(id);
        }
        self.spoiled.clear();
        self.passed.clear();
        self.stats = Arc::new(SinkStats::new("model", "test"));
        self.buffer = Some(
            DiskBuffer::open(
                self.dir.path(),
                "model",
                self.format,
                LIMITS,
                self.stats.clone(),
            )
            .expect("reopen"),
        );
    }

    fn append(&mut self, rt: &tokio::runtime::Runtime, points: &[u8]) {
        let result = self.try_append(rt, points);
        result.expect("append");
    }

    /// Appends; the records count as appended only if the append succeeds.
    fn try_append(
        &mut self,
        rt: &tokio::runtime::Runtime,
        points: &[u8],
    ) -> Result<(), super::BufferError> {
        let first = self.next_id;
        self.next_id += points.len() as u64;
        let records: Vec<Record> = (first..)
            .zip(points)
            .map(|(id, p)| make_record(id, *p))
            .collect();
        rt.block_on(self.buffer().append(records))?;
        for (id, p) in (first..).zip(points) {
            self.appended.push((id, *p, self.format));
        }
        Ok(())
    }

    /// Reads up to `max` points and checks they are exactly the next intact records,
    /// those in another format than the buffer's apart.
    fn deliver(&mut self, max: u8) -> Result<ReadBatch, TestCaseError> {
        let mut batch = ReadBatch::default();
        self.buffer()
            .read_more(&mut batch, u64::from(max), usize::MAX)
            .expect("read");
        let own: Vec<u64> = batch.records.iter().map(record_id).collect();
        let foreign: Vec<u64> = batch.foreign.iter().map(|f| record_id(&f.record)).collect();
        let mut got: Vec<u64> = own.iter().chain(&foreign).copied().collect();
        got.sort_by_key(|id| self.index_of(*id));
        let intact: Vec<u64> = self.appended[self.cursor..]
            .iter()
            .map(|(id, _, _)| *id)
            .filter(|id| !self.damaged.contains(id))
            .collect();
        prop_assert!(
            got.len() <= intact.len() && got[..] == intact[..got.len()],
            "delivered {got:?}, expected a prefix of {intact:?}"
        );
        prop_assert!(
            !got.is_empty() || intact.is_empty(),
            "nothing delivered though {intact:?} is queued"
        );
        let records = batch.records.iter().map(|r| (r, self.format.code()));
        let foreign_records = batch.foreign.iter().map(|f| (&f.record, f.format));
        for (record, format) in records.chain(foreign_records) {
            let id = record_id(record);
            prop_assert_eq!(record, &make_record(id, record.points as u8));
            let written = self.appended[self.index_of(id)].2;
            prop_assert_eq!(format, written.code(), "record {} in the wrong list", id);
            prop_assert!(
                !self.delivered.contains(&id) || self.window.contains(&id),
                "record {} delivered twice outside the at-least-once window",
                id
            );
            self.delivered.insert(id);
        }
        // The reader passed (and counted) the damage before the last record; when
        // the batch is not full it read all that is committed, and every loss in it
        // is followed by an intact frame.
        let full = batch.points()
            + batch
                .foreign
                .iter()
                .map(|f| u64::from(f.record.points))
                .sum::<u64>()
            >= u64::from(max);
        let until = match got.last() {
            _ if !full => self.appended.len(),
            Some(last) => self.index_of(*last),
            None => self.cursor,
        };
        for id in self.damaged_between(until) {
            if self.passed.insert(id) {
                self.expected_lost += self.points_of(id);
            }
        }
        Ok(batch)
    }

    fn acknowledge(&mut self, batch: &ReadBatch) {
        self.buffer().ack(batch).expect("ack");
        let own = batch.records.iter();
        let last = own
            .chain(batch.foreign.iter().map(|f| &f.record))
            .map(|r| self.index_of(record_id(r)))
            .max();
        if let Some(until) = last {
            for (id, _, _) in &self.appended[self.cursor..=until] {
                self.window.remove(id);
                self.unrepaired.remove(id);
            }
            self.cursor = until + 1;
        }
    }

    fn torn_write(&mut self, cut: u16) {
        self.crash();
        let mut ids = list_segments(self.dir.path()).expect("list");
        ids.sort_unstable();
        let newest = segment_path(self.dir.path(), *ids.last().expect("a segment"));
        let mut frame_bytes = Vec::new();
        frame::encode(&make_record(1 << 40, 2), 0, FORMAT, &mut frame_bytes);
        let keep = 1 + usize::from(cut) % (frame_bytes.len() - 1);
        let mut file = OpenOptions::new().append(true).open(newest).expect("open");
        std::io::Write::write_all(&mut file, &frame_bytes[..keep]).expect("write");
        self.reopen();
    }

    fn damage(&mut self, pick: u16, at: u16, len: u8, live: bool, insert: bool) {
        let queued = self.queued();
        let targets: Vec<Placed> = layout(self.dir.path())
            .into_iter()
            .filter(|p| !p.last_in_segment && queued.contains(&p.id) && !self.is_faulted(&p.path))
            .collect();
        if targets.is_empty() {
            return;
        }
        let target = &targets[usize::from(pick) % targets.len()];
        self.spoiled.insert(target.path.clone());
        let inside = u64::from(at) % target.len;
        let live = live && !insert;
        if !live {
            self.crash();
        }
        let start = target.offset + inside;
        if insert {
            let mut bytes = fs::read(&target.path).expect("read");
            let garbage: Vec<u8> = (0..len).map(|i| i.wrapping_mul(37) ^ 0x5a).collect();
            bytes.splice(start as usize..start as usize, garbage);
            fs::write(&target.path, &bytes).expect("write");
            // Garbage before a frame leaves the frame intact.
            if inside > 0 {
                self.mark_damaged(target.id);
            }
        } else {
            // In place, as a bad disk or a stray writer would (the buffer may be
            // running).
            let n = u64::from(len).min(target.offset + target.len - start) as usize;
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .open(&target.path)
                .expect("open");
            let mut bytes = vec![0u8; n];
            file.read_exact_at(&mut bytes, start).expect("read");
            for b in &mut bytes {
                *b ^= 0xa5;
            }
            file.write_all_at(&bytes, start).expect("write");
            self.mark_damaged(target.id);
        }
        if !live {
            self.reopen();
        }
    }

    fn mark_damaged(&mut self, id: u64) {
        self.damaged.insert(id);
        self.unrepaired.insert(id);
    }

    fn queued(&self) -> BTreeSet<u64> {
        self.appended[self.cursor..]
            .iter()
            .map(|(id, _, _)| *id)
            .collect()
    }

    /// Whether reads of the segment at `path` fail (or it holds damage).
    fn is_faulted(&self, path: &Path) -> bool {
        self.spoiled.contains(path)
    }

    /// Makes reads of a queued frame's segment fail from that frame on: it and the
    /// frames after it in that segment are lost.
    fn read_error(&mut self, pick: u16, live: bool) {
        let newest = list_segments(self.dir.path())
            .expect("list")
            .into_iter()
            .max();
        let newest = newest.map(|id| segment_path(self.dir.path(), id));
        let queued = self.queued();
        let placed = layout(self.dir.path());
        let targets: Vec<&Placed> = placed
            .iter()
            .filter(|p| {
                queued.contains(&p.id)
                    && Some(&p.path) != newest.as_ref()
                    && !self.is_faulted(&p.path)
            })
            .collect();
        if targets.is_empty() {
            return;
        }
        let target = targets[usize::from(pick) % targets.len()];
        let (path, offset) = (target.path.clone(), target.offset);
        // Lost: everything from that frame to the end of the segment, damaged
        // records recovery had already cut out there included (their loss markers
        // are unreadable now, so the next reader counts them again).
        let last = placed
            .iter()
            .filter(|p| p.path == path)
            .map(|p| p.id)
            .next_back()
            .expect("the target's segment");
        let lost: Vec<u64> = self.appended[self.index_of(target.id)..=self.index_of(last)]
            .iter()
            .map(|(id, _, _)| *id)
            .collect();
        if !live {
            self.crash();
        }
        self.faults.push(faults::fail_reads(&path, offset));
        for id in lost {
            self.mark_damaged(id);
        }
        self.spoiled.insert(path);
        if !live {
            self.reopen();
        }
    }

    /// An append whose write fails midway: not buffered, and in the way of nothing.
    fn failed_append(&mut self, rt: &tokio::runtime::Runtime, keep: u16, points: &[u8]) {
        let newest = list_segments(self.dir.path())
            .expect("list")
            .into_iter()
            .max();
        let path = segment_path(self.dir.path(), newest.expect("a segment"));
        let guard = faults::fail_next_write(&path, usize::from(keep));
        // It succeeds only when the writer had left that segment for a new one (a
        // failed append before this one).
        let _ = self.try_append(rt, points);
        drop(guard);
    }

    fn retype(&mut self) {
        self.crash();
        self.format = match self.format {
            BodyFormat::LineProtocol => BodyFormat::Otlp,
            _ => BodyFormat::LineProtocol,
        };
        self.reopen();
    }

    fn check_counts(&self) -> Result<(), TestCaseError> {
        let counted = self.counted_before + self.stats.snapshot().corrupt_points;
        prop_assert_eq!(counted, self.expected_lost, "lost points counted");
        prop_assert_eq!(self.stats.snapshot().dropped_points, 0);
        Ok(())
    }

    fn step(&mut self, rt: &tokio::runtime::Runtime, op: &Op) -> Result<(), TestCaseError> {
        match op {
            Op::Append(points) => self.append(rt, points),
            Op::Deliver(max) => {
                let batch = self.deliver(*max)?;
                self.acknowledge(&batch);
            }
            Op::DeliverThenCrash(max) => {
                let batch = self.deliver(*max)?;
                let foreign = batch.foreign.iter().map(|f| &f.record);
                for record in batch.records.iter().chain(foreign) {
                    self.window.insert(record_id(record));
                }
                self.crash();
                self.reopen();
            }
            Op::Crash => {
                self.crash();
                self.reopen();
            }
            Op::TornWrite(cut) => self.torn_write(*cut),
            Op::Damage {
                pick,
                at,
                len,
                live,
                insert,
            } => self.damage(*pick, *at, *len, *live, *insert),
            Op::ReadError { pick, live } => self.read_error(*pick, *live),
            Op::FailedAppend { keep, points } => {
                let points = vec![1, *points];
                self.failed_append(rt, *keep, &points);
            }
            Op::Retype => self.retype(),
        }
        self.check_counts()
    }

    /// After a last crash, everything intact that is queued comes out.
    fn drain(&mut self) -> Result<(), TestCaseError> {
        self.crash();
        self.reopen();
        loop {
            let batch = self.deliver(u8::MAX)?;
            if batch.is_empty() {
                break;
            }
            self.acknowledge(&batch);
        }
        let missing: Vec<u64> = self
            .appended
            .iter()
            .map(|(id, _, _)| *id)
            .filter(|id| !self.damaged.contains(id) && !self.delivered.contains(id))
            .collect();
        prop_assert!(missing.is_empty(), "never delivered: {missing:?}");
        prop_assert_eq!(self.buffer().queued_points(), 0);
        self.check_counts()
    }
}

proptest! {
    // Every step syncs to disk: a few dozen cases by default (PROPTEST_CASES for more).
    #![proptest_config(ProptestConfig::with_cases(
        std::env::var("PROPTEST_CASES").ok().and_then(|n| n.parse().ok()).unwrap_or(32)
    ))]

    #[test]
    fn the_buffer_delivers_every_intact_record_and_counts_the_damaged(
        ops in prop::collection::vec(op(), 1..40)
    ) {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        let mut model = Model::new();
        for op in &ops {
            model.step(&rt, op)?;
        }
        model.drain()?;
    }
}
