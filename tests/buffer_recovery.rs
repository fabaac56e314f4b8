//! The disk buffer heals (docs/BUFFER.md): garbage written into the middle of a
//! queued segment, while the agent runs or while it is down, costs only the damaged
//! points. A real agent buffers numbered points while its VictoriaMetrics is away;
//! the test damages the segment on disk, brings the backend up and checks that every
//! intact point arrives once, that delivery never stops, and that `/v1/status` and
//! `/metrics` report exactly the points that did not arrive.

mod common;

use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use common::backends::{free_port, VictoriaMetrics};
use common::http::{api_base, get};
use common::{wait_until, Home, DEADLINE};

/// Reports `seq` = 0..SEQ_MAX, one point per report, timestamped START_MS + seq. The
/// last number reported is persisted (SEQ_FILE) so a restarted worker does not
/// report again.
const SEQ: &str = r#"
import os, time
from datakit_framework import DataKitFramework

class Seq(DataKitFramework):
    name = "seq"
    interval = 1
    long_running = True

    def run(self):
        path = os.environ["SEQ_FILE"]
        end = int(os.environ["SEQ_MAX"])
        start_ms = int(os.environ["START_MS"])
        try:
            with open(path) as f:
                seq = int(f.read()) + 1
        except (FileNotFoundError, ValueError):
            seq = 0
        while seq < end:
            self.report({"M": [{"measurement": "seq", "tags": {"pad": "p" * 40},
                                "fields": {"v": seq}, "time": start_ms + seq}],
                         "precision": "ms"})
            with open(path + ".tmp", "w") as f:
                f.write(str(seq))
            os.replace(path + ".tmp", path)
            seq += 1
            time.sleep(0.002)
        while True:
            time.sleep(3600)
"#;

const N: i64 = 400;

struct Setup {
    home: Home,
    port: u16,
}

impl Setup {
    /// An agent home whose `vm` sink points at a port where nothing listens yet.
    fn new() -> Self {
        let home = Home::new();
        let port = free_port();
        let start_ms = common::now_ns() / 1_000_000 - 3_600_000;
        // Small batches: the delivery side holds only the first one while the
        // backend is away, so the damage lies in data it has not read yet.
        home.write(
            "pythond.toml",
            &format!(
                "[[sinks]]\nname = \"vm\"\ntype = \"influxdb\"\nurl = \"http://127.0.0.1:{port}\"\ndb = \"pythond\"\nbatch_points = 20\nflush_interval = \"100ms\"\nretry_max_interval = \"500ms\"\n"
            ),
        );
        home.write("python.d/seq/seq.py", SEQ);
        let seq_file = home.path().join("seq.txt");
        home.write(
            "conf.d/seq.conf",
            &format!(
                "[[inputs.pythond]]\nname = \"seq\"\ncmd = \"python3\"\ndirs = [\"seq\"]\nenvs = [\"PYTHOND_TEST_MARKER={}\", \"SEQ_FILE={}\", \"SEQ_MAX={N}\", \"START_MS={start_ms}\"]\n",
                home.marker,
                seq_file.display()
            ),
        );
        Self { home, port }
    }

    fn seq(&self) -> i64 {
        self.home.read("seq.txt").trim().parse().unwrap_or(-1)
    }

    /// Waits until the collector has reported every number and the `vm` sink holds all
    /// N points in its buffer (the backend is away, so none can have been sent).
    fn wait_all_buffered(&self, agent: &common::Agent, base: &str) {
        assert!(
            wait_until(DEADLINE, || self.seq() == N - 1
                && count(&sink_status(base), "buffered_points") == N),
            "the points were not all buffered (seq {}); log:\n{}",
            self.seq(),
            agent.stderr()
        );
    }
}

/// The `vm` sink's entry in `/v1/status`.
fn sink_status(base: &str) -> serde_json::Value {
    let status = get(&format!("{base}/v1/status"), &[]).json();
    status["sinks"]
        .as_array()
        .and_then(|sinks| sinks.iter().find(|s| s["name"] == "vm"))
        .cloned()
        .unwrap_or_else(|| panic!("no sink vm in {status}"))
}

fn count(sink: &serde_json::Value, key: &str) -> i64 {
    sink[key]
        .as_i64()
        .unwrap_or_else(|| panic!("no {key} in {sink}"))
}

/// The sample value of `name` for the `vm` sink in `/metrics`.
fn metric(base: &str, name: &str) -> Option<f64> {
    let text = get(&format!("{base}/metrics"), &[]).body;
    text.lines()
        .filter(|line| line.starts_with(&format!("{name}{{")) && line.contains("sink=\"vm\""))
        .find_map(|line| line.rsplit(' ').next()?.parse().ok())
}

/// The largest segment of the `vm` sink's buffer.
fn data_segment(home: &Path) -> PathBuf {
    let dir = home.join("data").join("buffers").join("vm");
    std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| path.extension().is_some_and(|ext| ext == "seg"))
        .max_by_key(|path| std::fs::metadata(path).map(|m| m.len()).unwrap_or(0))
        .expect("a segment")
}

/// Overwrites 150 bytes two thirds into the segment, in place, as a bad disk or a
/// stray writer would. Returns the points in the frames those bytes touch: a frame
/// holds a whole batch, and how many points a batch gathers depends on timing.
fn damage(segment: &Path) -> i64 {
    let bytes = std::fs::read(segment).expect("read segment");
    let len = bytes.len();
    assert!(len > 10_000, "segment too small to damage: {len} bytes");
    let (start, end) = (len * 2 / 3, len * 2 / 3 + 150);
    let touched = points_in_frames_overlapping(&bytes, start, end);
    let file = OpenOptions::new()
        .write(true)
        .open(segment)
        .expect("open segment");
    file.write_all_at(&b"garbage!".repeat(19)[..150], start as u64)
        .expect("write garbage");
    touched
}

/// Walks a version-1 segment frame by frame (docs/BUFFER.md, "Frame format": a
/// 40-byte header with the body length at 8 and the point count at 12) and sums the
/// points of the frames overlapping `start..end`.
fn points_in_frames_overlapping(segment: &[u8], start: usize, end: usize) -> i64 {
    let u32_at = |at: usize| u32::from_le_bytes(segment[at..at + 4].try_into().expect("4 bytes"));
    let mut points = 0;
    let mut at = 0;
    while at + 40 <= segment.len() {
        assert_eq!(
            segment[at..at + 4],
            [0xF7, 0x50, 0x42, 0xD1],
            "frame magic at {at}"
        );
        let frame_end = at + 40 + u32_at(at + 8) as usize;
        if at < end && start < frame_end {
            points += i64::from(u32_at(at + 12));
        }
        at = frame_end;
    }
    assert_eq!(at, segment.len(), "the segment ends inside a frame");
    points
}

/// The seq values VictoriaMetrics holds, sorted (duplicates kept).
fn arrived(vm: &VictoriaMetrics) -> Vec<i64> {
    let mut seqs: Vec<i64> = vm.export("seq_v").iter().map(|s| s.value as i64).collect();
    seqs.sort_unstable();
    seqs
}

/// Waits until every point is either in VictoriaMetrics or counted as lost, then
/// checks that the lost ones are exactly those missing, exactly the points of the
/// damaged frames and contiguous (one damaged region), that none arrived twice, and
/// that `/metrics` agrees.
fn expect_only_the_damaged_points_lost(
    base: &str,
    vm: &VictoriaMetrics,
    agent: &common::Agent,
    damaged_points: i64,
) {
    let mut seqs = Vec::new();
    let mut sink = serde_json::Value::Null;
    let settled = wait_until(DEADLINE, || {
        seqs = arrived(vm);
        sink = sink_status(base);
        count(&sink, "queued_points") == 0
            && count(&sink, "corrupt_points") > 0
            && seqs.len() as i64 + count(&sink, "corrupt_points") == N
    });
    assert!(
        settled,
        "{} arrived, sink {sink}; log:\n{}",
        seqs.len(),
        agent.stderr()
    );
    let mut unique = seqs.clone();
    unique.dedup();
    assert_eq!(unique, seqs, "a point arrived twice");
    let missing: Vec<i64> = (0..N).filter(|s| seqs.binary_search(s).is_err()).collect();
    let lost = count(&sink, "corrupt_points");
    assert_eq!(
        missing.len() as i64,
        lost,
        "missing {missing:?}, sink {sink}"
    );
    assert_eq!(
        lost, damaged_points,
        "lost {missing:?} to 150 bytes of damage over frames of {damaged_points} points"
    );
    assert_eq!(missing.last().unwrap_or(&0) - missing[0], lost - 1);
    assert!(count(&sink, "corrupt_bytes") >= 150, "sink {sink}");
    assert_eq!(
        metric(base, "pythond_sink_buffer_corrupt_points_total"),
        Some(lost as f64)
    );
    assert_eq!(
        metric(base, "pythond_sink_buffer_corrupt_bytes_total"),
        Some(count(&sink, "corrupt_bytes") as f64)
    );
}

#[test]
fn damage_found_while_the_agent_runs_costs_only_the_damaged_points() {
    let scratch = tempfile::tempdir().expect("tempdir");
    let setup = Setup::new();
    let agent = setup.home.start();
    let base = api_base(&agent);
    setup.wait_all_buffered(&agent, &base);
    let damaged_points = damage(&data_segment(setup.home.path()));

    let vm = VictoriaMetrics::start_on(scratch.path(), setup.port);
    expect_only_the_damaged_points_lost(&base, &vm, &agent, damaged_points);
    // No restart was needed: this agent delivered every intact point itself.
    let sink = sink_status(&base);
    assert_eq!(
        count(&sink, "sent_points"),
        N - count(&sink, "corrupt_points")
    );
}

#[test]
fn damage_found_after_a_kill_costs_only_the_damaged_points() {
    let scratch = tempfile::tempdir().expect("tempdir");
    let setup = Setup::new();
    let mut agent = setup.home.start();
    let base = api_base(&agent);
    setup.wait_all_buffered(&agent, &base);
    agent.child.kill().expect("SIGKILL the agent");
    agent.child.wait().expect("reap the agent");
    drop(agent);
    let damaged_points = damage(&data_segment(setup.home.path()));

    let vm = VictoriaMetrics::start_on(scratch.path(), setup.port);
    let agent = setup.home.start();
    let base = api_base(&agent);
    expect_only_the_damaged_points_lost(&base, &vm, &agent, damaged_points);
}
