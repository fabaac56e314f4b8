//! What collectors print never corrupts what they report: `print()`, `sys.stdout`
//! swaps and raw writes to fd 1 end up in the agent's log (tagged with the input, and
//! the plugin for Python-level prints), megabytes of output never block reporting, and
//! a bad point never takes its good neighbours down.

mod common;

use common::Home;

#[test]
fn prints_swaps_and_raw_writes_do_not_corrupt_reports() {
    let home = Home::new();
    home.write(
        "python.d/talk/talker.py",
        r#"
import io, os, sys
from datakit_framework import DataKitFramework

class Talker(DataKitFramework):
    name = "talker"
    interval = 1

    def __init__(self):
        super().__init__()
        self.n = 0

    def run(self):
        self.n += 1
        print("hello-from-print run %d" % self.n)

        # A collector capturing its own output (contextlib.redirect_stdout does this).
        saved = sys.stdout
        buf = io.StringIO()
        sys.stdout = buf
        print("swallowed by StringIO")
        self.report({"M": [{"measurement": "talk", "tags": {"phase": "swapped"},
                            "fields": {"n": self.n}}]})
        sys.stdout = saved
        captured = buf.getvalue() == "swallowed by StringIO\n"

        # Raw writes to fd 1, including one that looks like a protocol frame.
        os.write(1, b'{"t": "report", "plugin": "talker.Talker", "data": {"M": [{"measurement": "forged", "tags": {}, "fields": {"v": 1}}]}}\n')
        os.write(1, b"hello-from-os-write run %d\n" % self.n)
        os.write(2, b"hello-from-fd2 run %d\n" % self.n)
        os.system("echo hello-from-a-shell")
        sys.stdout.write("no newline yet ")

        self.report({"M": [{"measurement": "talk", "tags": {"phase": "after"},
                            "fields": {"n": self.n, "captured": captured}}]})
        print("hello-after-report run %d" % self.n)
"#,
    );
    home.input("isolation_in", &["talk"], "interval = \"1s\"");
    let agent = home.start();

    agent.expect_points("three runs", |points| {
        points
            .iter()
            .any(|p| p["fields"]["n"].as_i64() >= Some(3) && p["tags"]["phase"] == "after")
    });
    let points = agent.points();
    assert!(
        points.iter().all(|p| p["measurement"] == "talk"),
        "a forged or garbled point got through: {points:#?}"
    );
    for n in 1..=3 {
        for phase in ["swapped", "after"] {
            let count = points
                .iter()
                .filter(|p| p["tags"]["phase"] == phase && p["fields"]["n"] == n)
                .count();
            assert_eq!(count, 1, "run {n} phase {phase}: {points:#?}");
        }
        let after = points
            .iter()
            .find(|p| p["tags"]["phase"] == "after" && p["fields"]["n"] == n)
            .expect("checked above");
        assert_eq!(
            after["fields"]["captured"], true,
            "print() did not go to the collector's own sys.stdout"
        );
    }

    agent.expect_log_line(&["hello-from-print run 1", "isolation_in", "talker.Talker"]);
    agent.expect_log_line(&["hello-after-report run 1", "isolation_in", "talker.Talker"]);
    agent.expect_log_line(&["hello-from-os-write run 1", "isolation_in"]);
    agent.expect_log_line(&["hello-from-fd2 run 1", "isolation_in"]);
    agent.expect_log_line(&["hello-from-a-shell", "isolation_in"]);
    assert!(
        !agent.stderr().contains("swallowed by StringIO"),
        "output the collector captured itself leaked into the log"
    );
}

#[test]
fn a_collector_printing_megabytes_keeps_running_and_reporting() {
    let home = Home::new();
    home.write(
        "python.d/flood/flood.py",
        r#"
import os, sys
from datakit_framework import DataKitFramework

class Flood(DataKitFramework):
    name = "flood"
    interval = 2

    def __init__(self):
        super().__init__()
        self.n = 0

    def run(self):
        self.n += 1
        line = "x" * 99
        for _ in range(30000):             # 3 MB of print() lines
            print(line)
        print("y" * 1000000)               # one 1 MB line through print()
        os.write(1, b"z" * 1000000 + b"\n") # one 1 MB line straight to fd 1
        sys.stderr.write("w" * 100 + "\n")
        self.report({"M": [{"measurement": "flood", "tags": {}, "fields": {"n": self.n}}]})
"#,
    );
    home.input(
        "flooding",
        &["flood"],
        "interval = \"2s\"\ntimeout = \"60s\"",
    );
    let agent = home.start();

    agent.expect_points("three runs of ~5 MB of output each", |points| {
        points
            .iter()
            .any(|p| p["measurement"] == "flood" && p["fields"]["n"].as_i64() >= Some(3))
    });
    assert!(
        agent
            .log_lines(&["did not finish within its timeout"])
            .is_empty()
            && agent.log_lines(&["restarting"]).is_empty(),
        "the flooding worker was killed or restarted:\n{}",
        agent
            .log_lines(&["flooding"])
            .into_iter()
            .filter(|l| l.len() < 2000)
            .collect::<Vec<_>>()
            .join("\n")
    );
}

/// One plugin per kind of bad point, so each rejection is the first of its kind for its
/// plugin (repeats may be rate-limited in the log).
fn bad_point_plugin(class: &str, kind: &str, bad: &str) -> String {
    format!(
        r#"
from datakit_framework import DataKitFramework

class {class}(DataKitFramework):
    name = {class:?}
    interval = 3600

    def run(self):
        self.report({{"M": [
            {{"measurement": "{kind}_before", "tags": {{}}, "fields": {{"v": 1}}}},
            {bad},
            {{"measurement": "{kind}_after", "tags": {{}}, "fields": {{"v": 2}}}},
        ]}})
"#
    )
}

#[test]
fn bad_points_are_rejected_with_a_reason_and_their_neighbours_arrive() {
    let home = Home::new();
    let cases: &[(&str, &str, &str, &str)] = &[
        // (module/class, kind, bad point, what the log must name)
        (
            "Nan",
            "nan",
            r#"{"measurement": "nan_bad", "tags": {}, "fields": {"nan_field": float("nan")}}"#,
            "nan_field",
        ),
        (
            "Inf",
            "inf",
            r#"{"measurement": "inf_bad", "tags": {}, "fields": {"inf_field": float("-inf")}}"#,
            "inf_field",
        ),
        (
            "Nested",
            "nested",
            r#"{"measurement": "nested_bad", "tags": {}, "fields": {"nested_field": {"a": {"b": 1}}}}"#,
            "nested_field",
        ),
        (
            "Bytes",
            "bytes",
            r#"{"measurement": "bytes_bad", "tags": {}, "fields": {"bytes_field": b"\x00\xff"}}"#,
            "bytes_field",
        ),
        (
            "Unnamed",
            "unnamed",
            r#"{"tags": {"t": "v"}, "fields": {"v": 1}}"#,
            "measurement",
        ),
        (
            "Strings",
            "strings",
            r#"{"measurement": "strings_only_bad", "tags": {}, "fields": {"s": "text"}}"#,
            "strings_only_bad",
        ),
    ];
    for (class, kind, bad, _) in cases {
        home.write(
            &format!("python.d/mixed/{}.py", kind),
            &bad_point_plugin(class, kind, bad),
        );
    }
    home.input("mixed_in", &["mixed"], "");
    let agent = home.start();

    agent.expect_points("every good neighbour", |points| {
        points.len() >= 2 * cases.len()
    });
    for (class, kind, _, named) in cases {
        assert_eq!(
            agent.points_of(&format!("{kind}_before")).len(),
            1,
            "{kind}"
        );
        assert_eq!(agent.points_of(&format!("{kind}_after")).len(), 1, "{kind}");
        let plugin = format!("{kind}.{class}");
        agent.expect_log_line(&["rejected", "mixed_in", &plugin, named]);
    }
    assert_eq!(
        agent.points().len(),
        2 * cases.len(),
        "a bad point got through: {:#?}",
        agent.points()
    );
}

#[test]
fn a_report_bigger_than_a_frame_arrives_whole() {
    let home = Home::new();
    home.write(
        "python.d/big/big.py",
        r#"
from datakit_framework import DataKitFramework

class Big(DataKitFramework):
    name = "big"
    interval = 3600

    def run(self):
        # About 6 MB of points in one report: more than one frame can carry.
        self.report({"L": [{"measurement": "bulk", "tags": {"i": str(i)},
                            "fields": {"message": "%05d " % i + "m" * 300}} for i in range(20000)]})
        self.report({"L": [
            {"measurement": "huge_neighbour_before", "tags": {}, "fields": {"message": "small"}},
            {"measurement": "huge", "tags": {}, "fields": {"message": "h" * (6 * 1024 * 1024)}},
            {"measurement": "huge_neighbour_after", "tags": {}, "fields": {"message": "small"}},
        ]})
"#,
    );
    home.input("bigger", &["big"], "");
    let agent = home.start();

    agent.expect_points("both neighbours of the huge point", |points| {
        points
            .iter()
            .filter(|p| {
                p["measurement"]
                    .as_str()
                    .unwrap_or("")
                    .starts_with("huge_neighbour")
            })
            .count()
            == 2
    });
    let bulk = agent.points_of("bulk");
    assert_eq!(bulk.len(), 20000, "points of a large report were lost");
    let distinct: std::collections::BTreeSet<String> = bulk
        .iter()
        .map(|p| p["tags"]["i"].as_str().unwrap_or_default().to_string())
        .collect();
    assert_eq!(distinct.len(), 20000, "points were duplicated or garbled");
    // A 6 MiB string is within DataKit's field limit (32 MiB) but over the frame
    // limit: it must either arrive intact or be rejected with a reason, never vanish.
    let huge = agent.points_of("huge");
    let delivered = huge.len() == 1
        && huge[0]["fields"]["message"].as_str().map(str::len) == Some(6 * 1024 * 1024);
    assert!(
        delivered || !agent.log_lines(&["rejected", "bigger", "huge"]).is_empty(),
        "the huge point neither arrived nor was reported rejected; log:\n{}",
        agent.log_lines(&["bigger"]).join("\n")
    );
    assert!(
        agent.log_lines(&["restarting"]).is_empty(),
        "{}",
        agent.stderr()
    );
}
