//! Model-based property test of the disk buffer: random sequences of appends,
//! deliveries, crashes (the buffer dropped without a clean close, then reopened from
//! disk, as after a SIGKILL), writes torn by a crash and damaged bytes, checked after
//! every step against a model of what must come out (docs/BUFFER.md).
//!
//! The model holds every appended record in order, the delivery cursor (everything
//! before it was delivered and acknowledged) and the records whose frames were
//! damaged. After each step:
//! - a delivery returns exactly the next intact records after the cursor, in order:
//!   every intact acknowledged append arrives, nothing damaged or made up does, and a
//!   record comes twice only when it was delivered but not acknowledged before a crash
//!   (the at-least-once window);
//! - the points the buffer counts as lost equal the points of the damaged records,
//!   each counted every time a reader (recovery or delivery) passes it.
//!
//! Damage is aimed at frames that are not the last one of their segment, so an intact
//! frame follows each damaged one and the loss can be counted exactly; damage at the
//! very end of the buffer is a torn write, covered by the `TornWrite` step (bytes
//! only, the append never having been acknowledged).

use std::collections::BTreeSet;
use std::fs::{self, File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use proptest::prelude::*;

use super::frame::{self, Found};
use super::{list_segments, segment_path, BufferLimits, DiskBuffer, ReadBatch, Record};
use crate::point::Category;
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
        loop {
            match frame::read_at(&file, at, limit).expect("read") {
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
                Found::Damaged => match frame::resync(&file, at + 1, limit).expect("scan") {
                    Some(next) => at = next,
                    None => break,
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
    dir: tempfile::TempDir,
    buffer: Option<DiskBuffer>,
    stats: Arc<SinkStats>,
    /// (id, points), in append order.
    appended: Vec<(u64, u8)>,
    /// Index into `appended` of the first record not acknowledged.
    cursor: usize,
    /// Ids whose frames were damaged (never to be delivered after that).
    damaged: BTreeSet<u64>,
    /// Damaged ids still in the files (recovery repairs what it scans).
    unrepaired: BTreeSet<u64>,
    /// Ids delivered but not acknowledged before a crash: may come again.
    window: BTreeSet<u64>,
    delivered: BTreeSet<u64>,
    /// Lost points the buffer must have counted, over every run.
    expected_lost: u64,
    /// Lost points counted by the runs before the current one.
    counted_before: u64,
    next_id: u64,
}

const LIMITS: BufferLimits = BufferLimits {
    // 8 KiB segments; more than a whole test case ever holds, so nothing is dropped.
    max_bytes: 64 << 10,
    sync_every: None,
};

impl Model {
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let stats = Arc::new(SinkStats::new("model", "test"));
        let buffer = DiskBuffer::open(dir.path(), "model", LIMITS, stats.clone()).expect("open");
        Self {
            dir,
            buffer: Some(buffer),
            stats,
            appended: Vec::new(),
            cursor: 0,
            damaged: BTreeSet::new(),
            unrepaired: BTreeSet::new(),
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
            .find(|(i, _)| *i == id)
            .map_or(0, |(_, p)| u64::from(*p))
    }

    /// Damaged records from the cursor up to (not including) index `until`, still
    /// in the files: what a reader passing them counts.
    fn damaged_between(&self, until: usize) -> Vec<u64> {
        self.appended[self.cursor..until]
            .iter()
            .map(|(id, _)| *id)
            .filter(|id| self.unrepaired.contains(id))
            .collect()
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
        self.stats = Arc::new(SinkStats::new("model", "test"));
        self.buffer = Some(
            DiskBuffer::open(self.dir.path(), "model", LIMITS, self.stats.clone()).expect("reopen"),
        );
    }

    fn append(&mut self, rt: &tokio::runtime::Runtime, points: &[u8]) {
        let records: Vec<Record> = points
            .iter()
            .map(|p| {
                let id = self.next_id;
                self.next_id += 1;
                self.appended.push((id, *p));
                make_record(id, *p)
            })
            .collect();
        rt.block_on(self.buffer().append(records)).expect("append");
    }

    /// Reads up to `max` points and checks they are exactly the next intact records.
    fn deliver(&mut self, max: u8) -> Result<ReadBatch, TestCaseError> {
        let mut batch = ReadBatch::default();
        self.buffer()
            .read_more(&mut batch, u64::from(max), usize::MAX)
            .expect("read");
        let got: Vec<u64> = batch.records.iter().map(record_id).collect();
        let intact: Vec<u64> = self.appended[self.cursor..]
            .iter()
            .map(|(id, _)| *id)
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
        for (record, id) in batch.records.iter().zip(&got) {
            prop_assert_eq!(record, &make_record(*id, record.points as u8));
            prop_assert!(
                !self.delivered.contains(id) || self.window.contains(id),
                "record {} delivered twice outside the at-least-once window",
                id
            );
            self.delivered.insert(*id);
        }
        if let Some(last) = got.last() {
            let until = self
                .appended
                .iter()
                .position(|(id, _)| id == last)
                .expect("delivered id was appended");
            // The reader passed (and counted) the damage before the last record.
            for id in self.damaged_between(until) {
                self.expected_lost += self.points_of(id);
            }
        }
        Ok(batch)
    }

    fn acknowledge(&mut self, batch: &ReadBatch) {
        self.buffer().ack(batch).expect("ack");
        if let Some(last) = batch.records.last().map(record_id) {
            let until = self
                .appended
                .iter()
                .position(|(id, _)| *id == last)
                .expect("appended");
            for (id, _) in &self.appended[self.cursor..=until] {
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
        frame::encode(&make_record(1 << 40, 2), 0, &mut frame_bytes);
        let keep = 1 + usize::from(cut) % (frame_bytes.len() - 1);
        let mut file = OpenOptions::new().append(true).open(newest).expect("open");
        std::io::Write::write_all(&mut file, &frame_bytes[..keep]).expect("write");
        self.reopen();
    }

    fn damage(&mut self, pick: u16, at: u16, len: u8, live: bool, insert: bool) {
        let queued: BTreeSet<u64> = self.appended[self.cursor..]
            .iter()
            .map(|(id, _)| *id)
            .collect();
        let targets: Vec<Placed> = layout(self.dir.path())
            .into_iter()
            .filter(|p| !p.last_in_segment && queued.contains(&p.id))
            .collect();
        if targets.is_empty() {
            return;
        }
        let target = &targets[usize::from(pick) % targets.len()];
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
                for record in &batch.records {
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
            .map(|(id, _)| *id)
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
