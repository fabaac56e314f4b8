//! `pythond check`: every report key and `feed_*` helper compared field by field with
//! the payloads DataKit's own pythond integration test expects, time precision, the
//! line-protocol output, plugin discovery, and exit codes a CI pipeline can trust.

mod common;

use common::{assert_tags_fields, now_ns, parse_points, the_point, Home};
use serde_json::json;

/// DataKit's test tags and kwargs (internal/plugins/inputs/pythond/integrate_test.go).
const DK_COMMON: &str = r#"
from datakit_framework import DataKitFramework

TAGS = {"tag1": "val1", "tag2": "val2"}
FIELDS = {"custom_field1": "val1", "custom_field2": 1000}
KWARGS = {"custom_key1": "custom_value1", "custom_key2": "custom_value2", "custom_key3": "custom_value3"}
"#;

fn dk_plugin(class: &str, body: &str) -> String {
    format!("{DK_COMMON}\n\nclass {class}(DataKitFramework):\n    name = {class:?}\n    interval = 10\n\n    def run(self):\n{body}\n")
}

/// Points with a `time` within [before, after] (the "now" rule).
fn assert_time_now(point: &serde_json::Value, before: i64, after: i64) {
    let time = point["time"]
        .as_i64()
        .unwrap_or_else(|| panic!("time is not an integer: {point}"));
    assert!(
        time >= before && time <= after,
        "time {time} of {point} is not now (between {before} and {after})"
    );
}

fn dk_kwargs_fields(mut fields: serde_json::Value) -> serde_json::Value {
    for (k, v) in [
        ("custom_key1", "custom_value1"),
        ("custom_key2", "custom_value2"),
        ("custom_key3", "custom_value3"),
    ] {
        fields[k] = json!(v);
    }
    fields
}

#[test]
fn every_report_key_gives_datakits_point_shapes() {
    let home = Home::new();
    home.write(
        "python.d/keys/report_keys.py",
        r#"
from datakit_framework import DataKitFramework

class ReportKeys(DataKitFramework):
    name = "report_keys"
    interval = 10

    def run(self):
        # DataKit's test: a metric with input "py_from_docker".
        self.report({
            "M": [{"measurement": "measurement1", "tags": {"tag_name": "tag_value"}, "fields": {"count": 1}}],
            "input": "py_from_docker",
        })
        self.report({"L": [{"measurement": "nginx_log", "tags": {"host_ip": "10.0.0.1"},
                            "fields": {"message": "GET / 200", "status": "warning"}}]})
        self.report({"O": [{"measurement": "host_object", "tags": {"name": "web01", "os": "linux"},
                            "fields": {"cpu_cores": 8, "load": 0.5}}]})
        self.report({"CO": [{"measurement": "mysql_instance", "tags": {"name": "db1"},
                             "fields": {"version": "8.0", "up": True}}]})
        self.report({"E": [{"measurement": "deploy", "tags": {"service": "shop"},
                            "fields": {"df_status": "ok", "df_event_id": "ev-1", "df_title": "deployed",
                                       "df_source": "user", "df_message": "v2 is live"}}]})
        self.report({"R": [{"measurement": "view", "tags": {"app_id": "app1"},
                            "fields": {"view_load": 120, "view_url": "/home"}}]})
        # Several categories in one report.
        self.report({
            "M": [{"measurement": "multi_m", "tags": {}, "fields": {"v": 2.5}}],
            "L": [{"measurement": "multi_l", "tags": {}, "fields": {"message": "both"}}],
        })
"#,
    );
    let before = now_ns();
    let (code, stdout, stderr) = home.check(&["python.d/keys"]);
    let after = now_ns();
    assert_eq!(
        code, 0,
        "check failed; stderr:\n{stderr}\nstdout:\n{stdout}"
    );
    let points = parse_points(&stdout);
    assert_eq!(points.len(), 8, "points: {points:#?}\nstderr:\n{stderr}");

    let m = the_point(&points, "metric", "measurement1");
    assert_tags_fields(m, json!({"tag_name": "tag_value"}), json!({"count": 1}));
    let l = the_point(&points, "logging", "nginx_log");
    assert_tags_fields(
        l,
        json!({"host_ip": "10.0.0.1"}),
        json!({"message": "GET / 200", "status": "warning"}),
    );
    let o = the_point(&points, "object", "host_object");
    assert_tags_fields(
        o,
        json!({"name": "web01", "os": "linux"}),
        json!({"cpu_cores": 8, "load": 0.5}),
    );
    let co = the_point(&points, "custom_object", "mysql_instance");
    assert_tags_fields(
        co,
        json!({"name": "db1"}),
        json!({"version": "8.0", "up": true}),
    );
    let e = the_point(&points, "keyevent", "deploy");
    assert_tags_fields(
        e,
        json!({"service": "shop"}),
        json!({"df_status": "ok", "df_event_id": "ev-1", "df_title": "deployed", "df_source": "user", "df_message": "v2 is live"}),
    );
    let r = the_point(&points, "rum", "view");
    assert_tags_fields(
        r,
        json!({"app_id": "app1"}),
        json!({"view_load": 120, "view_url": "/home"}),
    );
    assert_tags_fields(
        the_point(&points, "metric", "multi_m"),
        json!({}),
        json!({"v": 2.5}),
    );
    assert_tags_fields(
        the_point(&points, "logging", "multi_l"),
        json!({}),
        json!({"message": "both", "status": "info"}),
    );
    for point in &points {
        assert_time_now(point, before, after);
    }
}

#[test]
fn category_defaults_and_metric_string_fields() {
    let home = Home::new();
    home.write(
        "python.d/defaults/defaults.py",
        r#"
from datakit_framework import DataKitFramework

class Defaults(DataKitFramework):
    name = "defaults"
    interval = 10

    def run(self):
        # DataKit's documentation example: f3 is a string, which metrics do not keep.
        self.report({"M": [{"measurement": "abc", "tags": {"t1": "b", "t2": "d"},
                            "fields": {"f1": 123, "f2": 3.4, "f3": "strval"}}],
                     "input": "datakitpy"})
        self.report({"L": [{"measurement": "no_status", "tags": {}, "fields": {"message": "m"}}]})
        self.report({"O": [{"measurement": "no_name", "tags": {"k": "v"}, "fields": {"f": 1}}]})
        self.report({"CO": [{"measurement": "co_no_name", "tags": {}, "fields": {"f": 1}}]})
"#,
    );
    let (code, stdout, stderr) = home.check(&["python.d/defaults"]);
    assert_eq!(code, 0, "fixes are not failures; stderr:\n{stderr}");
    let points = parse_points(&stdout);
    assert_eq!(points.len(), 4, "points: {points:#?}");
    assert_tags_fields(
        the_point(&points, "metric", "abc"),
        json!({"t1": "b", "t2": "d"}),
        json!({"f1": 123, "f2": 3.4}),
    );
    assert_tags_fields(
        the_point(&points, "logging", "no_status"),
        json!({}),
        json!({"message": "m", "status": "info"}),
    );
    assert_tags_fields(
        the_point(&points, "object", "no_name"),
        json!({"k": "v", "name": "default"}),
        json!({"f": 1}),
    );
    assert_tags_fields(
        the_point(&points, "custom_object", "co_no_name"),
        json!({"name": "default"}),
        json!({"f": 1}),
    );
    // The dropped string field is a fix the user is told about.
    assert!(
        stderr.contains("f3"),
        "the dropped metric string field f3 is not mentioned:\n{stderr}"
    );
}

#[test]
fn feed_helpers_give_datakits_payloads() {
    let home = Home::new();
    let dir = "python.d/feeds";
    home.write(
        &format!("{dir}/feed_metric_plugin.py"),
        &dk_plugin(
            "FeedMetric",
            r#"        self.feed_metric(measurement="measurement2", tags=TAGS, fields=FIELDS, **KWARGS)
        # Same call with numeric kwargs, which a metric keeps.
        self.feed_metric(input="in2", measurement="measurement2_num", tags=TAGS,
                         fields={"custom_field2": 1000}, time=None, extra_int=7, extra_float=0.25)"#,
        ),
    );
    home.write(
        &format!("{dir}/feed_logging_plugin.py"),
        &dk_plugin(
            "FeedLogging",
            r#"        self.feed_logging(source="measurement3", tags=TAGS, message="This is the message for testing", **KWARGS)"#,
        ),
    );
    home.write(
        &format!("{dir}/feed_object_plugin.py"),
        &dk_plugin(
            "FeedObject",
            r#"        self.feed_object(cls="measurement4", name="name", tags=TAGS, fields=FIELDS, **KWARGS)"#,
        ),
    );
    home.write(
        &format!("{dir}/feed_user_event_plugin.py"),
        &dk_plugin(
            "FeedUserEvent",
            r#"        self.feed_user_event("user_id", TAGS, 10, "info", "event_id", "title", "message", **KWARGS)"#,
        ),
    );
    home.write(
        &format!("{dir}/feed_monitor_event_plugin.py"),
        &dk_plugin(
            "FeedMonitorEvent",
            r#"        self.feed_monitor_event(df_dimension_tags='{"host":"web01"}', tags=TAGS, df_date_range=10,
                                df_status="info", df_event_id="event_id", df_title="title",
                                df_message="message", **KWARGS)"#,
        ),
    );
    home.write(
        &format!("{dir}/feed_system_event_plugin.py"),
        &dk_plugin(
            "FeedSystemEvent",
            r#"        self.feed_system_event(tags=TAGS, df_date_range=10, df_status="info", df_event_id="event_id",
                               df_title="feed_system_event", df_message="message", **KWARGS)"#,
        ),
    );
    let before = now_ns();
    let (code, stdout, stderr) = home.check(&[dir]);
    let after = now_ns();
    assert_eq!(code, 0, "stderr:\n{stderr}\nstdout:\n{stdout}");
    let points = parse_points(&stdout);
    assert_eq!(points.len(), 7, "points: {points:#?}\nstderr:\n{stderr}");
    let tags = json!({"tag1": "val1", "tag2": "val2"});

    // DataKit sends {"custom_field1": "val1", "custom_field2": 1000, custom_key1..3};
    // a metric keeps only the non-string fields.
    assert_tags_fields(
        the_point(&points, "metric", "measurement2"),
        tags.clone(),
        json!({"custom_field2": 1000}),
    );
    assert_tags_fields(
        the_point(&points, "metric", "measurement2_num"),
        tags.clone(),
        json!({"custom_field2": 1000, "extra_int": 7, "extra_float": 0.25}),
    );
    assert_tags_fields(
        the_point(&points, "logging", "measurement3"),
        tags.clone(),
        dk_kwargs_fields(json!({"message": "This is the message for testing", "status": "info"})),
    );
    assert_tags_fields(
        the_point(&points, "object", "measurement4"),
        json!({"tag1": "val1", "tag2": "val2", "name": "name"}),
        dk_kwargs_fields(json!({"custom_field1": "val1", "custom_field2": 1000})),
    );

    let events: Vec<&serde_json::Value> = points
        .iter()
        .filter(|p| p["category"] == "keyevent")
        .collect();
    assert_eq!(events.len(), 3, "points: {points:#?}");
    let event = |source: &str| {
        let found: Vec<&&serde_json::Value> = events
            .iter()
            .filter(|p| p["fields"]["df_source"] == source)
            .collect();
        assert_eq!(found.len(), 1, "one {source} event expected: {events:#?}");
        assert_eq!(found[0]["measurement"], "measurement", "{}", found[0]);
        *found[0]
    };
    assert_tags_fields(
        event("user"),
        tags.clone(),
        dk_kwargs_fields(json!({
            "df_date_range": 10, "df_source": "user", "df_user_id": "user_id", "df_status": "info",
            "df_event_id": "event_id", "df_title": "title", "df_message": "message"
        })),
    );
    assert_tags_fields(
        event("monitor"),
        tags.clone(),
        dk_kwargs_fields(json!({
            "df_date_range": 10, "df_source": "monitor", "df_dimension_tags": "{\"host\":\"web01\"}",
            "df_status": "info", "df_event_id": "event_id", "df_title": "title", "df_message": "message"
        })),
    );
    assert_tags_fields(
        event("system"),
        tags,
        dk_kwargs_fields(json!({
            "df_date_range": 10, "df_source": "system", "df_status": "info",
            "df_event_id": "event_id", "df_title": "feed_system_event", "df_message": "message"
        })),
    );
    for point in &points {
        assert_time_now(point, before, after);
    }
}

#[test]
fn feed_helpers_keep_datakits_argument_checks() {
    let home = Home::new();
    home.write(
        "python.d/argcheck/argcheck.py",
        r#"
from datakit_framework import DataKitFramework

class ArgCheck(DataKitFramework):
    name = "argcheck"

    def run(self):
        # df_status is required: DataKit raises ValueError('arguments missing "df_status"').
        self.feed_user_event(df_user_id="u1", tags={}, df_event_id="e1", df_title="t")
"#,
    );
    let (code, stdout, stderr) = home.check(&["python.d/argcheck"]);
    assert_ne!(
        code, 0,
        "a run that raised must fail the check; stderr:\n{stderr}"
    );
    assert!(stdout.trim().is_empty(), "no point expected: {stdout}");
    assert!(
        stderr.contains("ValueError") && stderr.contains("df_status"),
        "the ValueError naming df_status is not shown:\n{stderr}"
    );
}

#[test]
fn time_units_are_detected_or_scaled_by_precision() {
    let home = Home::new();
    home.write(
        "python.d/times/times.py",
        r#"
import time
from datakit_framework import DataKitFramework

def p(name, t, **extra):
    point = {"measurement": name, "tags": {}, "fields": {"v": 1}}
    if t != "missing":
        point["time"] = t
    return point

class Times(DataKitFramework):
    name = "times"

    def run(self):
        # No precision: the unit is detected from the magnitude.
        self.report({"M": [
            p("auto_s", 1700000000),
            p("auto_ms", 1700000000123),
            p("auto_us", 1700000000123456),
            p("auto_ns", 1700000000123456789),
            p("auto_s_now", int(time.time())),
            p("edge_1e10_is_ms", 10000000000),
            p("edge_1e13_is_us", 10000000000000),
            p("edge_1e16_is_ns", 10000000000000000),
            p("missing", "missing"),
            p("null", None),
            p("zero", 0),
        ]})
        # With precision, the number is taken in that unit, whatever its size.
        self.report({"M": [p("prec_s", 1700000000)], "precision": "s"})
        self.report({"M": [p("prec_ms", 1700000000123)], "precision": "ms"})
        self.report({"M": [p("prec_ms_small", 1000)], "precision": "ms"})
        self.report({"M": [p("prec_u", 1700000000123456)], "precision": "u"})
        self.report({"M": [p("prec_n", 1700000000123456789)], "precision": "n"})
        self.report({"M": [p("prec_n_small", 1700000000)], "precision": "n"})
        self.report({"M": [p("prec_m", 28333333)], "precision": "m"})
        self.report({"M": [p("prec_h", 472222)], "precision": "h"})
        self.report({"M": [p("prec_s_null", None)], "precision": "s"})
        # feed_* helpers take the time too (DataKit scripts pass int(time.time())).
        self.feed_metric(measurement="feed_s", tags={}, fields={"v": 1}, time=1700000000)
        self.feed_logging(source="feed_log_ms", tags={}, message="m", time=1700000000123)
        self.feed_object(cls="feed_obj_ns", name="o", tags={}, fields={"v": 1}, time=1700000000123456789)
"#,
    );
    let before = now_ns();
    let (code, stdout, stderr) = home.check(&["python.d/times"]);
    let after = now_ns();
    assert_eq!(code, 0, "stderr:\n{stderr}");
    let points = parse_points(&stdout);
    let time_of = |category: &str, m: &str| {
        the_point(&points, category, m)["time"]
            .as_i64()
            .unwrap_or(-1)
    };
    let expected: &[(&str, i64)] = &[
        ("auto_s", 1_700_000_000_000_000_000),
        ("auto_ms", 1_700_000_000_123_000_000),
        ("auto_us", 1_700_000_000_123_456_000),
        ("auto_ns", 1_700_000_000_123_456_789),
        ("edge_1e10_is_ms", 10_000_000_000_000_000),
        ("edge_1e13_is_us", 10_000_000_000_000_000),
        ("edge_1e16_is_ns", 10_000_000_000_000_000),
        ("prec_s", 1_700_000_000_000_000_000),
        ("prec_ms", 1_700_000_000_123_000_000),
        ("prec_ms_small", 1_000_000_000),
        ("prec_u", 1_700_000_000_123_456_000),
        ("prec_n", 1_700_000_000_123_456_789),
        ("prec_n_small", 1_700_000_000),
        ("prec_m", 28_333_333 * 60_000_000_000),
        ("prec_h", 472_222 * 3_600_000_000_000),
        ("feed_s", 1_700_000_000_000_000_000),
    ];
    for (measurement, ns) in expected {
        assert_eq!(time_of("metric", measurement), *ns, "time of {measurement}");
    }
    assert_eq!(time_of("logging", "feed_log_ms"), 1_700_000_000_123_000_000);
    assert_eq!(time_of("object", "feed_obj_ns"), 1_700_000_000_123_456_789);
    for now in ["missing", "null", "zero", "prec_s_null"] {
        assert_time_now(the_point(&points, "metric", now), before, after);
    }
    // int(time.time()) is seconds: a whole second, this second.
    let s_now = time_of("metric", "auto_s_now");
    assert_eq!(
        s_now % 1_000_000_000,
        0,
        "seconds were not scaled to ns: {s_now}"
    );
    assert!(
        s_now >= before - 1_000_000_000 && s_now <= after,
        "int(time.time()) gave {s_now}"
    );
    assert_eq!(
        points.len(),
        expected.len() + 2 + 4 + 1,
        "points: {points:#?}"
    );
}

/// Splits `text` at `sep` where it is neither backslash-escaped nor inside double quotes.
fn split_lp(text: &str, sep: char) -> Vec<String> {
    let mut parts = vec![String::new()];
    let mut escaped = false;
    let mut quoted = false;
    for c in text.chars() {
        if escaped {
            escaped = false;
        } else if c == '\\' {
            escaped = true;
        } else if c == '"' {
            quoted = !quoted;
        } else if c == sep && !quoted {
            parts.push(String::new());
            continue;
        }
        parts.last_mut().expect("a part").push(c);
    }
    parts
}

/// (measurement, sorted tags, sorted fields, time) of one line-protocol line, each
/// element still escaped as written.
fn parse_lp(line: &str) -> (String, Vec<String>, Vec<String>, String) {
    let sections = split_lp(line, ' ');
    assert_eq!(
        sections.len(),
        3,
        "not `measurement,tags fields time`: {line:?}"
    );
    let mut series = split_lp(&sections[0], ',');
    let measurement = series.remove(0);
    series.sort();
    let mut fields = split_lp(&sections[1], ',');
    fields.sort();
    (measurement, series, fields, sections[2].clone())
}

#[test]
fn line_protocol_output_escapes_what_it_must() {
    let home = Home::new();
    home.write(
        "python.d/lp/lp.py",
        r#"
from datakit_framework import DataKitFramework

class Lp(DataKitFramework):
    name = "lp"

    def run(self):
        self.report({"M": [{"measurement": "cpu", "tags": {"host": "h1"},
                            "fields": {"usage": 12.5, "cores": 4, "on": True}, "time": 1700000000}]})
        self.report({"L": [{"measurement": "my log,1", "tags": {"t k": "v=1,2", "b": "x y"},
                            "fields": {"message": 'he said "hi" \\ ok', "n": -3}, "time": 1700000000}]})
"#,
    );
    let (code, stdout, stderr) = home.check(&["python.d/lp", "--format", "lp"]);
    assert_eq!(code, 0, "stderr:\n{stderr}");
    let mut lines: Vec<(String, Vec<String>, Vec<String>, String)> = stdout
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(parse_lp)
        .collect();
    lines.sort();
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    assert_eq!(
        lines,
        vec![
            (
                "cpu".to_string(),
                s(&["host=h1"]),
                s(&["cores=4i", "on=true", "usage=12.5"]),
                "1700000000000000000".to_string()
            ),
            (
                r"my\ log\,1".to_string(),
                s(&[r"b=x\ y", r"t\ k=v\=1\,2"]),
                s(&[
                    r#"message="he said \"hi\" \\ ok""#,
                    "n=-3i",
                    r#"status="info""#
                ]),
                "1700000000000000000".to_string()
            ),
        ],
        "stdout:\n{stdout}"
    );
}

#[test]
fn a_good_directory_passes_and_prints_only_points_on_stdout() {
    let home = Home::new();
    home.write(
        "python.d/noisy/noisy.py",
        r#"
import os, sys
from datakit_framework import DataKitFramework

print("printed at import time")

class Noisy(DataKitFramework):
    name = "noisy"

    def run(self):
        print("printed by run")
        sys.stdout.write("no newline")
        os.write(1, b'{"category": "metric", "measurement": "fake", "tags": {}, "fields": {"v": 1}, "time": 1}\n')
        os.system("echo from a shell")
        self.report({"M": [{"measurement": "real", "tags": {}, "fields": {"v": 1}}]})
        print("printed after the report")
"#,
    );
    let (code, stdout, stderr) = home.check(&["python.d/noisy"]);
    assert_eq!(code, 0, "stderr:\n{stderr}");
    let points = parse_points(&stdout);
    assert_eq!(
        points.len(),
        1,
        "stdout must hold the points and nothing else:\n{stdout}"
    );
    assert_eq!(points[0]["measurement"], "real");
}

#[test]
fn a_single_py_file_and_several_paths_can_be_checked() {
    let home = Home::new();
    home.write(
        "python.d/a/one.py",
        r#"
from datakit_framework import DataKitFramework

class One(DataKitFramework):
    name = "one"
    def run(self):
        self.report({"M": [{"measurement": "from_one", "tags": {}, "fields": {"v": 1}}]})
"#,
    );
    home.write(
        "python.d/b/two.py",
        r#"
from datakit_framework import DataKitFramework

class Two(DataKitFramework):
    name = "two"
    def run(self):
        self.report({"M": [{"measurement": "from_two", "tags": {}, "fields": {"v": 2}}]})
"#,
    );
    let (code, stdout, stderr) = home.check(&["python.d/a/one.py"]);
    assert_eq!(code, 0, "stderr:\n{stderr}");
    let points = parse_points(&stdout);
    assert_eq!(points.len(), 1, "{points:?}");
    assert_eq!(points[0]["measurement"], "from_one");

    let (code, stdout, stderr) = home.check(&["python.d/a", "python.d/b"]);
    assert_eq!(code, 0, "stderr:\n{stderr}");
    let mut names: Vec<String> = parse_points(&stdout)
        .iter()
        .map(|p| p["measurement"].as_str().unwrap_or_default().to_string())
        .collect();
    names.sort();
    assert_eq!(names, ["from_one", "from_two"]);
}

#[test]
fn a_syntax_error_beside_a_good_module_fails_but_the_good_one_runs() {
    let home = Home::new();
    home.write(
        "python.d/mixed/good.py",
        r#"
from datakit_framework import DataKitFramework

class Good(DataKitFramework):
    name = "good"
    def run(self):
        self.report({"M": [{"measurement": "good_point", "tags": {}, "fields": {"v": 1}}]})
"#,
    );
    home.write(
        "python.d/mixed/broken.py",
        "from datakit_framework import DataKitFramework\n\ndef oops(:\n    pass\n",
    );
    home.write(
        "python.d/mixed/needs_pkg.py",
        "import os\nimport no_such_package_for_pythond_tests\n",
    );
    let (code, stdout, stderr) = home.check(&["python.d/mixed"]);
    assert_ne!(
        code, 0,
        "a module that fails to import must fail the check:\n{stderr}"
    );
    assert!(
        stderr.contains("broken.py:3"),
        "the syntax error's file:line is not named:\n{stderr}"
    );
    assert!(stderr.contains("SyntaxError"), "{stderr}");
    assert!(
        stderr.contains("needs_pkg.py:2"),
        "the failed import's file:line is not named:\n{stderr}"
    );
    assert!(
        stderr.contains("no_such_package_for_pythond_tests"),
        "{stderr}"
    );
    let points = parse_points(&stdout);
    assert_eq!(
        points.len(),
        1,
        "the good module's point must still be printed: {stdout}"
    );
    assert_eq!(points[0]["measurement"], "good_point");
}

#[test]
fn run_raising_fails_the_check_and_shows_the_exception() {
    let home = Home::new();
    home.write(
        "python.d/raising/raising.py",
        r#"
from datakit_framework import DataKitFramework

class Raising(DataKitFramework):
    name = "raising"
    def run(self):
        self.report({"M": [{"measurement": "before_raise", "tags": {}, "fields": {"v": 1}}]})
        raise RuntimeError("collector exploded on purpose")

class Fine(DataKitFramework):
    name = "fine"
    def run(self):
        self.report({"M": [{"measurement": "fine_point", "tags": {}, "fields": {"v": 1}}]})
"#,
    );
    let (code, stdout, stderr) = home.check(&["python.d/raising"]);
    assert_ne!(code, 0, "stderr:\n{stderr}");
    assert!(
        stderr.contains("RuntimeError") && stderr.contains("collector exploded on purpose"),
        "the exception is not shown:\n{stderr}"
    );
    assert!(
        stderr.contains("raising.py"),
        "the exception's file is not shown:\n{stderr}"
    );
    let mut names: Vec<String> = parse_points(&stdout)
        .iter()
        .map(|p| p["measurement"].as_str().unwrap_or_default().to_string())
        .collect();
    names.sort();
    assert_eq!(
        names,
        ["before_raise", "fine_point"],
        "points reported before the exception are kept"
    );
}

#[test]
fn a_rejected_point_fails_the_check_and_keeps_its_neighbours() {
    let home = Home::new();
    home.write(
        "python.d/rejects/rejects.py",
        r#"
from datakit_framework import DataKitFramework

class Rejects(DataKitFramework):
    name = "rejects"
    def run(self):
        self.report({"M": [
            {"measurement": "ok_first", "tags": {}, "fields": {"v": 1}},
            {"measurement": "nan_point", "tags": {}, "fields": {"nan_field": float("nan")}},
            {"measurement": "inf_point", "tags": {}, "fields": {"inf_field": float("inf")}},
            {"measurement": "nested_point", "tags": {}, "fields": {"nested_field": {"a": 1}}},
            {"measurement": "list_point", "tags": {}, "fields": {"list_field": [1, 2]}},
            {"measurement": "bytes_point", "tags": {}, "fields": {"bytes_field": b"raw"}},
            {"tags": {}, "fields": {"v": 1}},
            {"measurement": "strings_only", "tags": {}, "fields": {"s": "text"}},
            {"measurement": "ok_last", "tags": {}, "fields": {"v": 2}},
        ]})
        self.report({"E": [
            {"measurement": "bad_event", "tags": {}, "fields": {"df_status": "fine", "df_event_id": "e",
                                                             "df_title": "t", "df_source": "user"}},
            {"measurement": "event_without_title", "tags": {}, "fields": {"df_status": "ok", "df_event_id": "e",
                                                                       "df_source": "user"}},
            {"measurement": "good_event", "tags": {}, "fields": {"df_status": "ok", "df_event_id": "e",
                                                              "df_title": "t", "df_source": "user"}},
        ]})
"#,
    );
    let (code, stdout, stderr) = home.check(&["python.d/rejects"]);
    assert_ne!(code, 0, "rejected points must fail the check:\n{stderr}");
    let mut names: Vec<String> = parse_points(&stdout)
        .iter()
        .map(|p| p["measurement"].as_str().unwrap_or_default().to_string())
        .collect();
    names.sort();
    assert_eq!(
        names,
        ["good_event", "ok_first", "ok_last"],
        "stderr:\n{stderr}"
    );
    for field in [
        "nan_field",
        "inf_field",
        "nested_field",
        "list_field",
        "bytes_field",
    ] {
        assert!(
            stderr
                .lines()
                .any(|l| l.contains("rejected") && l.contains(field)),
            "no rejection naming {field}:\n{stderr}"
        );
    }
    for measurement in ["strings_only", "bad_event", "event_without_title"] {
        assert!(
            stderr
                .lines()
                .any(|l| l.contains("rejected") && l.contains(measurement)),
            "no rejection naming {measurement}:\n{stderr}"
        );
    }
    assert!(
        stderr
            .lines()
            .any(|l| l.contains("rejected") && l.contains("measurement")),
        "the point without a measurement is not reported:\n{stderr}"
    );
    assert!(
        stderr.contains("df_title"),
        "the missing df_title is not named:\n{stderr}"
    );
}

#[test]
fn a_run_that_times_out_fails_the_check_naming_the_plugin() {
    let home = Home::new();
    home.write(
        "python.d/slow/slow.py",
        r#"
import time
from datakit_framework import DataKitFramework

class Sleepy(DataKitFramework):
    name = "sleepy"
    def run(self):
        time.sleep(1000)

class Quick(DataKitFramework):
    name = "quick"
    def run(self):
        self.report({"M": [{"measurement": "quick_point", "tags": {}, "fields": {"v": 1}}]})
"#,
    );
    let started = std::time::Instant::now();
    let (code, stdout, stderr) = home.check(&["python.d/slow", "--timeout", "2s"]);
    assert_ne!(code, 0, "stderr:\n{stderr}");
    assert!(
        stderr
            .lines()
            .any(|l| l.contains("Sleepy") && l.contains("did not finish")),
        "the plugin that timed out is not named:\n{stderr}"
    );
    let points = parse_points(&stdout);
    assert_eq!(points.len(), 1, "{stdout}");
    assert_eq!(points[0]["measurement"], "quick_point");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(30),
        "check took {:?} with --timeout 2s",
        started.elapsed()
    );
}

#[test]
fn a_path_that_does_not_exist_fails_naming_it() {
    let home = Home::new();
    let (code, stdout, stderr) = home.check(&["python.d/not_there"]);
    assert_ne!(code, 0);
    assert!(stdout.trim().is_empty(), "{stdout}");
    assert!(
        stderr.contains("not_there"),
        "the missing path is not named:\n{stderr}"
    );
}

#[test]
fn a_directory_without_collectors_fails() {
    let home = Home::new();
    home.write("python.d/empty/helper.py", "VALUE = 1\n");
    let (code, _stdout, stderr) = home.check(&["python.d/empty"]);
    assert_ne!(
        code, 0,
        "nothing was checked, that is not a pass:\n{stderr}"
    );
}

#[test]
fn sibling_imports_subdirectories_and_shared_classes() {
    let home = Home::new();
    let dir = "python.d/layout";
    home.write(
        &format!("{dir}/__init__.py"),
        "raise RuntimeError('__init__.py must not be loaded')\n",
    );
    home.write(
        &format!("{dir}/helper.py"),
        "SHOP = 'eu'\n\ndef double(x):\n    return 2 * x\n",
    );
    home.write(
        &format!("{dir}/base_plugin.py"),
        r#"
from datakit_framework import DataKitFramework
from helper import SHOP, double

class Shared(DataKitFramework):
    name = "shared"
    def run(self):
        self.report({"M": [{"measurement": "shared_point", "tags": {"shop": SHOP}, "fields": {"v": double(21)}}]})
"#,
    );
    // Imports the collector class: it must still run once, not once per module.
    home.write(
        &format!("{dir}/reuses_base.py"),
        r#"
from datakit_framework import DataKitFramework
from base_plugin import Shared

class Own(DataKitFramework):
    name = "own"
    def run(self):
        self.report({"M": [{"measurement": "own_point", "tags": {}, "fields": {"v": 1}}]})
"#,
    );
    home.write(
        &format!("{dir}/sub/inner.py"),
        r#"
from datakit_framework import DataKitFramework
import helper

class Inner(DataKitFramework):
    name = "inner"
    def run(self):
        self.report({"M": [{"measurement": "inner_point", "tags": {"module": __name__}, "fields": {"v": helper.double(2)}}]})
"#,
    );
    home.write(&format!("{dir}/sub/__init__.py"), "");
    // Two levels down is out of DataKit's reach.
    home.write(
        &format!("{dir}/sub/deeper/too_deep.py"),
        r#"
from datakit_framework import DataKitFramework

class TooDeep(DataKitFramework):
    def run(self):
        self.report({"M": [{"measurement": "too_deep", "tags": {}, "fields": {"v": 1}}]})
"#,
    );
    let (code, stdout, stderr) = home.check(&[dir]);
    assert_eq!(code, 0, "stderr:\n{stderr}");
    let points = parse_points(&stdout);
    assert_eq!(
        points.len(),
        3,
        "each collector exactly once: {points:#?}\nstderr:\n{stderr}"
    );
    assert_tags_fields(
        the_point(&points, "metric", "shared_point"),
        json!({"shop": "eu"}),
        json!({"v": 42}),
    );
    the_point(&points, "metric", "own_point");
    assert_tags_fields(
        the_point(&points, "metric", "inner_point"),
        json!({"module": "sub.inner"}),
        json!({"v": 4}),
    );
}

#[test]
fn missing_or_falsy_interval_still_runs() {
    let home = Home::new();
    home.write(
        "python.d/intervals/intervals.py",
        r#"
from datakit_framework import DataKitFramework

class NoInterval(DataKitFramework):
    name = "no_interval"
    def run(self):
        self.report({"M": [{"measurement": "no_interval", "tags": {}, "fields": {"v": 1}}]})

class ZeroInterval(DataKitFramework):
    name = "zero_interval"
    interval = 0
    def run(self):
        self.report({"M": [{"measurement": "zero_interval", "tags": {}, "fields": {"v": 1}}]})

class NoneInterval(DataKitFramework):
    name = "none_interval"
    interval = None
    def run(self):
        self.report({"M": [{"measurement": "none_interval", "tags": {}, "fields": {"v": 1}}]})
"#,
    );
    let (code, stdout, stderr) = home.check(&["python.d/intervals"]);
    assert_eq!(code, 0, "stderr:\n{stderr}");
    let mut names: Vec<String> = parse_points(&stdout)
        .iter()
        .map(|p| p["measurement"].as_str().unwrap_or_default().to_string())
        .collect();
    names.sort();
    assert_eq!(names, ["no_interval", "none_interval", "zero_interval"]);
}

#[test]
fn set_lasterror_is_shown() {
    let home = Home::new();
    home.write(
        "python.d/lasterror/lasterror.py",
        r#"
from datakit_framework import DataKitFramework

class LastError(DataKitFramework):
    name = "lasterror"
    def run(self):
        self.set_lasterror("lasterror", "disk /data is gone")
        self.report({"M": [{"measurement": "after_lasterror", "tags": {}, "fields": {"v": 1}}]})
"#,
    );
    let (_code, stdout, stderr) = home.check(&["python.d/lasterror"]);
    assert!(
        stderr.contains("disk /data is gone"),
        "set_lasterror's message is not shown:\n{stderr}"
    );
    let points = parse_points(&stdout);
    assert_eq!(points.len(), 1, "{stdout}");
}

/// Collectors written the way DataKit's documentation shows them
/// (tests/fixtures/datakit_style): exact points, exit 0.
#[test]
fn datakit_documentation_style_collectors() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/datakit_style");
    let before = now_ns();
    let (code, stdout, stderr) = common::check(&[dir]);
    let after = now_ns();
    assert_eq!(code, 0, "stderr:\n{stderr}\nstdout:\n{stdout}");
    let points = parse_points(&stdout);
    let second = |point: &serde_json::Value| {
        let t = point["time"].as_i64().unwrap_or(-1);
        assert_eq!(t % 1_000_000_000, 0, "time in seconds expected: {point}");
        assert!(
            t >= before - 1_000_000_000 && t <= after,
            "time is not now: {point}"
        );
    };

    // orders.py: old-style `__name`, helper class, several report() calls.
    let abc = the_point(&points, "metric", "abc");
    assert_tags_fields(
        abc,
        json!({"t1": "b", "t2": "d"}),
        json!({"f1": 123, "f2": 3.4}),
    );
    let def = the_point(&points, "metric", "def");
    assert_tags_fields(
        def,
        json!({"t1": "b", "t2": "d"}),
        json!({"f1": 123, "f2": 3.4}),
    );
    let orders = the_point(&points, "metric", "orders");
    assert_tags_fields(
        orders,
        json!({"shop": "eu", "currency": "EUR"}),
        json!({"count": 3, "total": 59.5}),
    );
    second(orders);
    let order_log = the_point(&points, "logging", "orders_log");
    assert_tags_fields(
        order_log,
        json!({"shop": "eu"}),
        json!({"message": "3 orders, biggest 30.0", "status": "info"}),
    );
    second(order_log);
    let shop = the_point(&points, "object", "shop");
    assert_tags_fields(
        shop,
        json!({"name": "shop-eu", "region": "eu-west"}),
        json!({"open": true, "orders_seen": 3}),
    );

    // disk_usage.py: subprocess calls and feed_* helpers with int(time.time()).
    let disk = the_point(&points, "metric", "disk_usage");
    assert_tags_fields(
        disk,
        json!({"mount": "/data"}),
        json!({"total": 4096, "used": 1024, "ratio": 0.25}),
    );
    second(disk);
    let disk_log = the_point(&points, "logging", "disk_usage_log");
    assert_tags_fields(
        disk_log,
        json!({"mount": "/data"}),
        json!({"message": "disk /data is 25% full", "status": "info", "checker": "df"}),
    );
    second(disk_log);
    let disk_obj = the_point(&points, "object", "disk");
    assert_tags_fields(
        disk_obj,
        json!({"name": "/data", "fs": "ext4"}),
        json!({"total": 4096, "kernel": "Linux"}),
    );

    // events.py: the keyevent helpers called positionally as in DataKit's demo.
    let events: Vec<&serde_json::Value> = points
        .iter()
        .filter(|p| p["category"] == "keyevent")
        .collect();
    assert_eq!(events.len(), 3, "{events:#?}");
    for source in ["user", "monitor", "system"] {
        let event = events
            .iter()
            .find(|e| e["fields"]["df_source"] == source)
            .unwrap_or_else(|| panic!("no {source} event: {events:#?}"));
        assert_eq!(event["measurement"], "measurement");
        assert_eq!(event["tags"], json!({"tag1": "val1", "tag2": "val2"}));
        assert_eq!(event["fields"]["df_status"], "info");
        assert_eq!(event["fields"]["df_event_id"], "event_id");
        assert_eq!(event["fields"]["df_title"], "title");
        assert_eq!(event["fields"]["df_date_range"], 10);
        assert_eq!(event["fields"]["df_message"], "message");
        assert_eq!(event["fields"]["custom_key1"], "custom_value1");
    }
    assert_eq!(
        points.len(),
        11,
        "exactly the documented points: {points:#?}"
    );
}

#[test]
fn the_cmd_option_picks_the_interpreter() {
    let home = Home::new();
    home.write(
        "python.d/interp/which_python.py",
        r#"
import sys
from datakit_framework import DataKitFramework

class Cmd(DataKitFramework):
    name = "cmd"
    def run(self):
        self.report({"L": [{"measurement": "interpreter", "tags": {}, "fields": {"message": sys.executable}}]})
"#,
    );
    let (code, stdout, stderr) =
        home.check(&["python.d/interp", "--cmd", "python3-no-such-interpreter"]);
    assert_ne!(code, 0);
    assert!(stdout.trim().is_empty(), "{stdout}");
    assert!(
        stderr.contains("interpreter `python3-no-such-interpreter` not found"),
        "the missing interpreter is not named:\n{stderr}"
    );

    // An absolute path to a Python, found the way a user would.
    let (_, which, _) = common::run_to_end({
        let mut c = std::process::Command::new("python3");
        c.args(["-c", "import sys; print(sys.executable)"]);
        c
    });
    let python = which.trim().to_string();
    let (code, stdout, stderr) = home.check(&["python.d/interp", "--cmd", &python]);
    assert_eq!(code, 0, "stderr:\n{stderr}");
    let points = parse_points(&stdout);
    assert_eq!(points.len(), 1, "{stdout}");
    assert_eq!(points[0]["fields"]["message"], python.as_str());
}

/// A collector that prints why it reports nothing, as the shipped ones do.
const SILENT: &str = r#"
from datakit_framework import DataKitFramework

class Silent(DataKitFramework):
    name = "silent"
    interval = 10

    def run(self):
        print("silent: no targets configured (set option `targets` or SILENT_TARGETS); nothing to do")
"#;

#[test]
fn check_fails_when_nothing_was_reported_and_shows_what_the_collector_printed() {
    let home = Home::new();
    home.write("python.d/silent/silent.py", SILENT);
    let (code, stdout, stderr) = home.check(&["python.d/silent"]);
    assert_ne!(code, 0, "an empty check passed:\n{stdout}\n{stderr}");
    assert!(
        stderr.contains("no targets configured (set option `targets` or SILENT_TARGETS)"),
        "what the collector printed is not shown:\n{stderr}"
    );
    assert!(stderr.contains("no point was reported"), "{stderr}");
    assert!(stderr.contains("FAIL"), "{stderr}");
    let (code, _, stderr) = home.check(&["--allow-empty", "python.d/silent"]);
    assert_eq!(code, 0, "--allow-empty did not pass:\n{stderr}");
    assert!(stderr.contains("PASS"), "{stderr}");
}

/// Reports what its configuration gave it; its sibling must never run.
const CONFIGURED: &str = r#"
import os
from datakit_framework import DataKitFramework

class Configured(DataKitFramework):
    name = "configured"
    interval = 10

    def run(self):
        self.report({"M": [{"measurement": "configured",
                            "tags": {"greeting": self.options.get("greeting", "none"),
                                     "env": os.environ.get("CHECK_ENV", "unset")},
                            "fields": {"v": 1}}]})

class Disabled(DataKitFramework):
    name = "disabled"
    interval = 10

    def run(self):
        raise RuntimeError("a disabled plugin ran")
"#;

#[test]
fn check_input_runs_the_configured_input_with_its_settings_and_global_tags() {
    let home = Home::new();
    home.write("python.d/configured/configured.py", CONFIGURED);
    home.write(
        "pythond.toml",
        "[agent]\nhostname = \"checked-host\"\n\n[global_tags]\nregion = \"eu\"\n\n[[sinks]]\ntype = \"file\"\npath = \"points.ndjson\"\n",
    );
    home.write(
        "conf.d/mine.conf",
        "[[inputs.pythond]]\nname = \"mine\"\ncmd = \"python3\"\ndirs = [\"configured\"]\n\
         envs = [\"CHECK_ENV=from-envs\"]\ntags = { team = \"shop\" }\n\
         [inputs.pythond.options]\ngreeting = \"hello\"\n\
         [inputs.pythond.plugins.disabled]\nenabled = false\n",
    );
    let config = home.path().join("pythond.toml");
    let config = config.to_str().expect("utf-8 path");
    let (code, stdout, stderr) = home.check(&["--input", "mine", "--config", config]);
    assert_eq!(code, 0, "stdout:\n{stdout}\nstderr:\n{stderr}");
    let points = parse_points(&stdout);
    let point = the_point(&points, "metric", "configured");
    assert_eq!(point["tags"]["greeting"], "hello", "{point}");
    assert_eq!(point["tags"]["env"], "from-envs", "{point}");
    assert_eq!(point["tags"]["team"], "shop", "{point}");
    assert_eq!(point["tags"]["region"], "eu", "{point}");
    assert_eq!(point["tags"]["host"], "checked-host", "{point}");
    assert!(!stderr.contains("a disabled plugin ran"), "{stderr}");
    assert!(stderr.contains("disabled by configuration"), "{stderr}");
    // Nothing reached the configured sinks: check prints, it does not forward.
    assert!(home.read("points.ndjson").is_empty());
}

const PER_INSTANCE: &str = r#"
from datakit_framework import DataKitFramework

class Probe(DataKitFramework):
    name = "probe"
    interval = 10

    def run(self):
        self.report({"M": [{"measurement": "probed",
                            "tags": {"seen_instance": self.instance},
                            "fields": {"port": self.options["port"],
                                       "shared": self.options["shared"]}}]})
"#;

#[test]
fn check_input_runs_every_instance_once_with_its_options_and_tags() {
    let home = Home::new();
    home.write("python.d/probe/probe.py", PER_INSTANCE);
    home.input(
        "probes",
        &["probe"],
        "[inputs.pythond.options]\nshared = 7\n\
         [[inputs.pythond.instances]]\nname = \"east\"\noptions = { port = 9101 }\n\
         tags = { site = \"east\" }\n\
         [[inputs.pythond.instances]]\nname = \"west\"\noptions = { port = 9102 }\n\
         tags = { site = \"west\" }\n",
    );
    let config = home.path().join("pythond.toml");
    let config = config.to_str().expect("utf-8 path");
    let (code, stdout, stderr) = home.check(&["--input", "probes", "--config", config]);
    assert_eq!(code, 0, "stdout:\n{stdout}\nstderr:\n{stderr}");
    let points = parse_points(&stdout);
    let mut seen: Vec<(String, String, i64, i64)> = points
        .iter()
        .filter(|p| p["measurement"] == "probed")
        .map(|p| {
            let text = |v: &serde_json::Value| v.as_str().unwrap_or("?").to_string();
            (
                text(&p["tags"]["site"]),
                text(&p["tags"]["seen_instance"]),
                p["fields"]["port"].as_i64().unwrap_or(-1),
                p["fields"]["shared"].as_i64().unwrap_or(-1),
            )
        })
        .collect();
    seen.sort();
    let expected = |site: &str, port: i64| (site.to_string(), site.to_string(), port, 7);
    assert_eq!(
        seen,
        [expected("east", 9101), expected("west", 9102)],
        "one point per instance, with its tags and merged options:\n{stdout}\n{stderr}"
    );
}

#[test]
fn check_input_applies_the_configured_timeout_and_names_unknown_inputs() {
    let home = Home::new();
    home.write(
        "python.d/slow/slow.py",
        "import time\nfrom datakit_framework import DataKitFramework\n\n\
         class Slow(DataKitFramework):\n    name = \"slow\"\n    interval = 10\n\n\
         \x20   def run(self):\n        time.sleep(30)\n",
    );
    home.input(
        "slow",
        &["slow"],
        "[inputs.pythond.plugins.slow]\ntimeout = \"1s\"\n",
    );
    let config = home.path().join("pythond.toml");
    let config = config.to_str().expect("utf-8 path");
    let (code, _, stderr) = home.check(&["--input", "slow", "--config", config]);
    assert_ne!(code, 0, "{stderr}");
    assert!(
        stderr.contains("did not finish within 1s"),
        "the input's plugin timeout was not used:\n{stderr}"
    );
    let (code, _, stderr) = home.check(&["--input", "nope", "--config", config]);
    assert_ne!(code, 0, "{stderr}");
    assert!(stderr.contains("no input named \"nope\""), "{stderr}");
}

#[test]
fn check_input_finds_an_input_of_a_pulled_git_repository() {
    let home = Home::new();
    home.write(
        "pythond.toml",
        "[agent]\ndata_dir = \"data\"\n\n[[git_repos.repo]]\nurl = \"https://git.example/team/collectors.git\"\n",
    );
    // Already pulled into data_dir/gitrepos/<name>: run would load it from there.
    home.write(
        "data/gitrepos/collectors/conf.d/remote.conf",
        "[[inputs.pythond]]\nname = \"remote\"\ncmd = \"python3\"\ndirs = [\"mine\"]\ntags = { from = \"git\" }\n",
    );
    home.write(
        "data/gitrepos/collectors/python.d/mine/mine.py",
        "from datakit_framework import DataKitFramework\n\n\
         class Mine(DataKitFramework):\n    name = \"mine\"\n    interval = 10\n\n\
         \x20   def run(self):\n        self.report({\"M\": [{\"measurement\": \"remote\", \"fields\": {\"v\": 1}}]})\n",
    );
    let config = home.path().join("pythond.toml");
    let config = config.to_str().expect("utf-8 path");
    let (code, stdout, stderr) = home.check(&["--input", "remote", "--config", config]);
    assert_eq!(code, 0, "stdout:\n{stdout}\nstderr:\n{stderr}");
    let points = parse_points(&stdout);
    assert_eq!(
        the_point(&points, "metric", "remote")["tags"]["from"],
        "git"
    );
    assert!(
        stderr.contains("gitrepos/collectors/conf.d/remote.conf:1"),
        "{stderr}"
    );
}
