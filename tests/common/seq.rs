//! The numbered-report collector the sink tests share, and helpers around it: an
//! agent home with that collector and given sinks, the agent's log without colours,
//! and the series VictoriaMetrics holds for it.

use super::backends::Sample;
use super::{wait_until, Agent, Home, DEADLINE};

/// A long-running collector reporting `seq` points numbered 0..SEQ_MAX, one report
/// per number (SEQ_POINTS points, tag `part`), timestamped START_MS + seq (ms). The
/// number is persisted (SEQ_FILE) before each report, so a restarted worker goes on
/// where the last one stopped.
pub const SEQ: &str = r#"
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
        pause = float(os.environ.get("SEQ_PAUSE", "0.01"))
        per = int(os.environ.get("SEQ_POINTS", "1"))
        try:
            with open(path) as f:
                seq = int(f.read()) + 1
        except (FileNotFoundError, ValueError):
            seq = 0
        while seq < end:
            with open(path + ".tmp", "w") as f:
                f.write(str(seq))
            os.replace(path + ".tmp", path)
            self.report({"M": [{"measurement": "seq", "tags": {"part": str(i)},
                                "fields": {"v": seq, "x": seq * 0.5}, "time": start_ms + seq}
                               for i in range(per)],
                         "precision": "ms"})
            seq += 1
            time.sleep(pause)
        if os.environ.get("SEQ_NOGLOBAL"):
            self.report({"M": [{"measurement": "noglobal", "tags": {}, "fields": {"v": 7}, "time": start_ms}],
                         "precision": "ms", "ignore_global_tags": True})
        while True:
            time.sleep(3600)
"#;

/// The agent's log without terminal colour codes.
pub fn plain_log(agent: &Agent) -> String {
    let mut out = String::new();
    let log = agent.stderr();
    let mut chars = log.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Log lines (colours removed) containing every one of `needles`.
pub fn log_lines(agent: &Agent, needles: &[&str]) -> Vec<String> {
    plain_log(agent)
        .lines()
        .filter(|line| needles.iter().all(|n| line.contains(n)))
        .map(str::to_string)
        .collect()
}

/// Waits for a log line containing every one of `needles`.
pub fn expect_log_line(agent: &Agent, needles: &[&str]) -> String {
    let mut found = None;
    let seen = wait_until(DEADLINE, || {
        found = log_lines(agent, needles).into_iter().next();
        found.is_some()
    });
    assert!(
        seen,
        "no log line with {needles:?}; log:\n{}",
        plain_log(agent)
    );
    found.unwrap_or_default()
}

/// A test's agent home with the seq collector and the given sinks.
pub struct Setup {
    pub home: Home,
    pub start_ms: i64,
    extra_env: Vec<String>,
}

impl Setup {
    pub fn new(sinks: &str, seq_max: u64, extra_env: &[&str]) -> Self {
        let home = Home::new();
        let start_ms = super::now_ns() / 1_000_000 - 3_600_000;
        home.write(
            "pythond.toml",
            &format!("[global_tags]\nregion = \"eu\"\n\n{sinks}"),
        );
        home.write("python.d/seq/seq.py", SEQ);
        let setup = Self {
            home,
            start_ms,
            extra_env: extra_env.iter().map(|e| e.to_string()).collect(),
        };
        setup.write_input(seq_max);
        setup
    }

    /// (Re)writes the seq input to report numbers below `seq_max`; a collector
    /// started after this goes on from the last number it persisted.
    pub fn write_input(&self, seq_max: u64) {
        let seq_file = self.home.path().join("seq.txt");
        let mut envs = vec![
            format!("SEQ_FILE={}", seq_file.display()),
            format!("SEQ_MAX={seq_max}"),
            format!("START_MS={}", self.start_ms),
        ];
        envs.extend(self.extra_env.iter().cloned());
        let envs: Vec<String> = envs.iter().map(|e| format!("{e:?}")).collect();
        // The harness writes `envs` with its marker; add ours through a second file
        // would duplicate the input, so write the input table here.
        self.home.write(
            "conf.d/seq.conf",
            &format!(
                "[[inputs.pythond]]\nname = \"seq\"\ncmd = \"python3\"\ndirs = [\"seq\"]\nenvs = [\"PYTHOND_TEST_MARKER={}\", {}]\n",
                self.home.marker,
                envs.join(", ")
            ),
        );
    }

    /// The last number the collector persisted (-1 before the first).
    pub fn seq(&self) -> i64 {
        self.home.read("seq.txt").trim().parse().unwrap_or(-1)
    }

    pub fn wait_seq(&self, at_least: i64) {
        assert!(
            wait_until(DEADLINE, || self.seq() >= at_least),
            "the collector never reached {at_least} (at {})",
            self.seq()
        );
    }
}

/// VictoriaMetrics samples of `seq_v`, as seq numbers (the value), per sample.
pub fn seq_values(samples: &[Sample]) -> Vec<i64> {
    let mut seqs: Vec<i64> = samples
        .iter()
        .filter(|s| s.label("__name__") == Some("seq_v"))
        .map(|s| s.value as i64)
        .collect();
    seqs.sort_unstable();
    seqs
}

pub fn labels(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut labels: Vec<(String, String)> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    labels.sort();
    labels
}

/// Reports that may sit in the worker's pipe at the instant of a kill.
pub const IN_FLIGHT: usize = 100;
