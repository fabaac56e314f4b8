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
/// stray writer would. Returns the most frames (points) those bytes can touch.
fn damage(segment: &Path) -> i64 {
    let len = std::fs::metadata(segment).expect("segment").len();
    assert!(len > 10_000, "segment too small to damage: {len} bytes");
    let file = OpenOptions::new()
        .write(true)
        .open(segment)
        .expect("open segment");
    file.write_all_at(&b"garbage!".repeat(19)[..150], len * 2 / 3)
        .expect("write garbage");
    let frame_len = len as i64 / N;
    150 / frame_len + 2
}

/// The seq values VictoriaMetrics holds, sorted (duplicates kept).
fn arrived(vm: &VictoriaMetrics) -> Vec<i64> {
    let mut seqs: Vec<i64> = vm.export("seq_v").iter().map(|s| s.value as i64).collect();
    seqs.sort_unstable();
    seqs
}

/// Waits until every point is either in VictoriaMetrics or counted as lost, then
/// checks that the lost ones are exactly those missing, few and contiguous (one
/// damaged region), that none arrived twice, and that `/metrics` agrees.
fn expect_only_the_damaged_points_lost(
    base: &str,
    vm: &VictoriaMetrics,
    agent: &common::Agent,
    most: i64,
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
    assert!(lost <= most, "lost {missing:?} to 150 bytes of damage");
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
    assert!(
        wait_until(DEADLINE, || setup.seq() == N - 1
            && count(&sink_status(&base), "buffered_points") == N),
        "the points were not all buffered (seq {}); log:\n{}",
        setup.seq(),
        agent.stderr()
    );
    let most = damage(&data_segment(setup.home.path()));

    let vm = VictoriaMetrics::start_on(scratch.path(), setup.port);
    expect_only_the_damaged_points_lost(&base, &vm, &agent, most);
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
    assert!(
        wait_until(DEADLINE, || setup.seq() == N - 1
            && count(&sink_status(&base), "buffered_points") == N),
        "the points were not all buffered (seq {}); log:\n{}",
        setup.seq(),
        agent.stderr()
    );
    agent.child.kill().expect("SIGKILL the agent");
    agent.child.wait().expect("reap the agent");
    drop(agent);
    let most = damage(&data_segment(setup.home.path()));

    let vm = VictoriaMetrics::start_on(scratch.path(), setup.port);
    let agent = setup.home.start();
    let base = api_base(&agent);
    expect_only_the_damaged_points_lost(&base, &vm, &agent, most);
}
