//! Tests of the configuration module as its users see it: the public functions, the
//! values they produce and the exact `file:line` and key of every error.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::point::Category;

use super::main_config::{load_in, parse_main_in};
use super::*;

const MAIN: &str = "/etc/pythond/pythond.toml";
const CONF: &str = "conf.d/x.conf";

fn main_ok(text: &str) -> Config {
    parse_main(text, Path::new(MAIN)).unwrap_or_else(|e| panic!("unexpected error: {e}"))
}

fn main_err(text: &str) -> ConfigError {
    match parse_main(text, Path::new(MAIN)) {
        Ok(config) => panic!("expected an error, got {config:?}"),
        Err(e) => e,
    }
}

fn inputs_ok(text: &str) -> (Vec<InputConfig>, Vec<SkippedTable>) {
    parse_inputs(text, Path::new(CONF)).unwrap_or_else(|e| panic!("unexpected error: {e}"))
}

fn inputs_err(text: &str) -> ConfigError {
    match parse_inputs(text, Path::new(CONF)) {
        Ok(found) => panic!("expected an error, got {found:?}"),
        Err(e) => e,
    }
}

/// Asserts file, line, key and that the message contains `needle`.
#[track_caller]
fn assert_error(err: &ConfigError, file: &str, line: usize, key: &str, needle: &str) {
    let shown = err.to_string();
    assert_eq!(err.file(), Path::new(file), "{shown}");
    assert_eq!(err.line(), Some(line), "{shown}");
    assert_eq!(err.key(), Some(key), "{shown}");
    assert!(
        shown.starts_with(&format!("{file}:{line}: ")),
        "{shown:?} should start with {file}:{line}"
    );
    assert!(
        shown.contains(needle),
        "{shown:?} should contain {needle:?}"
    );
}

/// A valid input with `extra` lines appended to its table.
fn input_with(extra: &str) -> String {
    format!("[[inputs.pythond]]\nname = \"a\"\ncmd = \"python3\"\ndirs = [\"d\"]\n{extra}")
}

fn write(path: &Path, text: &str) {
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).expect("create dir");
    }
    fs::write(path, text).expect("write file");
}

// ---------------------------------------------------------------------------------
// Main file: defaults and sections.

#[test]
fn defaults_with_no_file() {
    let cwd = tempfile::tempdir().expect("tempdir");
    let config = load_in(None, cwd.path()).expect("defaults");
    assert_eq!(config.source, None);
    assert_eq!(config.agent.data_dir, cwd.path().join("data"));
    assert_eq!(config.agent.conf_dir, cwd.path().join("conf.d"));
    assert_eq!(config.agent.python_dir, cwd.path().join("python.d"));
    assert_eq!(config.agent.hostname, system_hostname());
    assert!(!config.agent.hostname.is_empty());
    assert_eq!(config.agent.log_level, None);
    assert_eq!(config.agent.log_format, LogFormat::Text);
    assert!(config.global_tags.is_empty());
    assert_eq!(config.http.listen, "127.0.0.1:9529");
    assert_eq!(config.http.token, None);
    assert_eq!(config.http.max_body_bytes, 32 * 1024 * 1024);
    assert_eq!(config.http.request_timeout, Duration::from_secs(30));
    assert_eq!(config.http.max_concurrent_requests, 64);
    assert!(config.http.is_loopback());
    assert_eq!(
        config.sinks,
        vec![SinkConfig {
            kind: SinkKind::Stdout {
                format: OutputFormat::LineProtocol
            },
            categories: None,
        }]
    );
    assert_eq!(config.git_repos.pull_interval, Duration::from_secs(60));
    assert!(config.git_repos.repos.is_empty());
    assert_eq!(config, Config::defaults(cwd.path()));
}

#[test]
fn empty_file_means_defaults_rooted_at_its_directory() {
    let config = main_ok("");
    let mut expected = Config::defaults(Path::new("/etc/pythond"));
    expected.source = Some(PathBuf::from(MAIN));
    assert_eq!(config, expected);
}

#[test]
fn load_reads_pythond_toml_from_the_working_directory() {
    let cwd = tempfile::tempdir().expect("tempdir");
    write(
        &cwd.path().join("pythond.toml"),
        "[agent]\nhostname = \"from-file\"\n",
    );
    let config = load_in(None, cwd.path()).expect("load");
    assert_eq!(config.agent.hostname, "from-file");
    assert_eq!(config.source, Some(cwd.path().join("pythond.toml")));
    assert_eq!(config.agent.data_dir, cwd.path().join("data"));
}

#[test]
fn load_with_explicit_path() {
    let cwd = tempfile::tempdir().expect("tempdir");
    write(
        &cwd.path().join("etc/agent.toml"),
        "[agent]\ndata_dir = \"state\"\n",
    );
    let config = load_in(Some(Path::new("etc/agent.toml")), cwd.path()).expect("load");
    assert_eq!(config.source, Some(cwd.path().join("etc/agent.toml")));
    assert_eq!(config.agent.data_dir, cwd.path().join("etc/state"));
    assert_eq!(config.agent.conf_dir, cwd.path().join("etc/conf.d"));

    let absolute = cwd.path().join("etc/agent.toml");
    let config = load(Some(&absolute)).expect("load absolute");
    assert_eq!(config.agent.data_dir, cwd.path().join("etc/state"));
}

#[test]
fn load_of_a_missing_explicit_file_is_an_error() {
    let cwd = tempfile::tempdir().expect("tempdir");
    let err = load_in(Some(Path::new("nope.toml")), cwd.path()).expect_err("missing");
    assert_eq!(err.file(), Path::new("nope.toml"));
    assert_eq!(err.line(), None);
    assert!(matches!(err, ConfigError::Io { .. }));
    assert!(err.to_string().starts_with("nope.toml: "), "{err}");
}

#[test]
fn relative_paths_resolve_against_the_config_file_directory() {
    let config = main_ok(
        r#"
[agent]
data_dir = "state"
conf_dir = "./inputs/conf.d"
python_dir = "/opt/collectors"

[[sinks]]
type = "file"
path = "out/points.ndjson"

[[git_repos.repo]]
url = "git@example.com:ops/collectors.git"
ssh_private_key_path = "keys/id_ed25519"
"#,
    );
    assert_eq!(config.agent.data_dir, Path::new("/etc/pythond/state"));
    assert_eq!(
        config.agent.conf_dir,
        Path::new("/etc/pythond/inputs/conf.d")
    );
    assert_eq!(config.agent.python_dir, Path::new("/opt/collectors"));
    assert_eq!(
        config.sinks[0].kind,
        SinkKind::File {
            path: PathBuf::from("/etc/pythond/out/points.ndjson")
        }
    );
    assert_eq!(
        config.git_repos.repos[0].ssh_private_key_path,
        Some(PathBuf::from("/etc/pythond/keys/id_ed25519"))
    );

    let cwd = Path::new("/home/me");
    let config = parse_main_in("", Path::new("pythond.toml"), cwd).expect("parse");
    assert_eq!(config.agent.data_dir, Path::new("/home/me/data"));
    assert_eq!(config.source, Some(PathBuf::from("/home/me/pythond.toml")));
}

#[test]
fn every_section() {
    let config = main_ok(
        r#"
[agent]
data_dir = "/var/lib/pythond"
conf_dir = "/etc/pythond/conf.d"
python_dir = "/etc/pythond/python.d"
hostname = "web-1"
log_level = "info,pythond::worker=debug"
log_format = "json"
shutdown_timeout = "45s"
watch = false

[global_tags]
region = "eu"
"cluster name" = "main"

[http]
listen = "0.0.0.0:9529"
token = "s3cret"
max_body = "8MiB"
request_timeout = "5s"
max_concurrent_requests = 8

[[sinks]]
type = "stdout"
format = "json"
categories = ["metric", "logging"]

[[sinks]]
type = "file"
path = "/var/log/points.ndjson"

[git_repos]
pull_interval = "5m"

[[git_repos.repo]]
enable = false
url = "https://example.com/ops/collectors.git"
branch = "main"

[[git_repos.repo]]
url = "ssh://git@example.com/ops/more.git"
ssh_private_key_path = "/root/.ssh/id_rsa"
ssh_private_key_password = "hunter2"
"#,
    );
    assert_eq!(config.source, Some(PathBuf::from(MAIN)));
    assert_eq!(
        config.agent,
        AgentConfig {
            data_dir: "/var/lib/pythond".into(),
            conf_dir: "/etc/pythond/conf.d".into(),
            python_dir: "/etc/pythond/python.d".into(),
            hostname: "web-1".into(),
            log_level: Some("info,pythond::worker=debug".into()),
            log_format: LogFormat::Json,
            shutdown_timeout: Duration::from_secs(45),
            watch: false,
        }
    );
    assert_eq!(
        config.global_tags,
        BTreeMap::from([
            ("region".to_owned(), "eu".to_owned()),
            ("cluster name".to_owned(), "main".to_owned()),
        ])
    );
    assert_eq!(config.http.listen, "0.0.0.0:9529");
    assert_eq!(config.http.token.as_deref(), Some("s3cret"));
    assert_eq!(config.http.max_body_bytes, 8 * 1024 * 1024);
    assert_eq!(config.http.request_timeout, Duration::from_secs(5));
    assert_eq!(config.http.max_concurrent_requests, 8);
    assert!(!config.http.is_loopback());
    assert_eq!(
        config.sinks,
        vec![
            SinkConfig {
                kind: SinkKind::Stdout {
                    format: OutputFormat::Json
                },
                categories: Some(vec![Category::Metric, Category::Logging]),
            },
            SinkConfig {
                kind: SinkKind::File {
                    path: "/var/log/points.ndjson".into()
                },
                categories: None,
            },
        ]
    );
    assert!(config.sinks[0].accepts(&Category::Metric));
    assert!(!config.sinks[0].accepts(&Category::Object));
    assert!(config.sinks[1].accepts(&Category::Object));
    assert_eq!(config.sinks[1].kind.type_name(), "file");
    assert_eq!(config.git_repos.pull_interval, Duration::from_secs(300));
    assert_eq!(
        config.git_repos.repos,
        vec![
            GitRepoConfig {
                enable: false,
                url: "https://example.com/ops/collectors.git".into(),
                branch: Some("main".into()),
                ssh_private_key_path: None,
                ssh_private_key_password: None,
                token_env: None,
            },
            GitRepoConfig {
                enable: true,
                url: "ssh://git@example.com/ops/more.git".into(),
                branch: None,
                ssh_private_key_path: Some("/root/.ssh/id_rsa".into()),
                ssh_private_key_password: Some("hunter2".into()),
                token_env: None,
            },
        ]
    );
}

#[test]
fn dotted_and_inline_forms_are_accepted() {
    let config = main_ok(
        "agent.hostname = \"h\"\nhttp = { listen = \"localhost:0\" }\nsinks = [{ type = \"stdout\" }]\n",
    );
    assert_eq!(config.agent.hostname, "h");
    assert_eq!(config.http.listen, "localhost:0");
    assert_eq!(config.sinks, vec![SinkConfig::default()]);
}

#[test]
fn max_body_accepts_integers_and_units() {
    assert_eq!(
        main_ok("[http]\nmax_body = 1000\n").http.max_body_bytes,
        1000
    );
    assert_eq!(
        main_ok("[http]\nmax_body = \"2KB\"\n").http.max_body_bytes,
        2000
    );
    assert_eq!(
        main_ok("[http]\nmax_body = \"1 GiB\"\n")
            .http
            .max_body_bytes,
        1 << 30
    );
}

#[test]
fn secrets_are_redacted_in_debug_output() {
    let config = main_ok(
        "[http]\ntoken = \"tok-123\"\n[[git_repos.repo]]\nurl = \"u\"\nssh_private_key_path = \"k\"\nssh_private_key_password = \"pw-456\"\n",
    );
    let shown = format!("{config:?} {:#?}", config);
    assert!(!shown.contains("tok-123"), "{shown}");
    assert!(!shown.contains("pw-456"), "{shown}");
    assert!(shown.contains("<redacted>"), "{shown}");

    let (inputs, _) = inputs_ok(&input_with("envs = [\"API_KEY=abc-789\"]\n"));
    let shown = format!("{:?}", inputs[0]);
    assert!(!shown.contains("abc-789"), "{shown}");
    assert!(shown.contains("API_KEY"), "{shown}");
}

// ---------------------------------------------------------------------------------
// Main file: errors.

#[test]
fn unknown_keys_in_every_main_section() {
    let cases: &[(&str, usize, &str, &str)] = &[
        (
            "[agent]\nhostname = \"h\"\ndatadir = \"d\"\n",
            3,
            "datadir",
            "unknown key `datadir` in [agent] (expected one of: data_dir, conf_dir, python_dir, hostname, log_level, log_format, shutdown_timeout, watch)",
        ),
        (
            "\n[http]\nlisten = \"127.0.0.1:1\"\ntokne = \"t\"\n",
            4,
            "tokne",
            "unknown key `tokne` in [http] (expected one of: listen, token, max_body, request_timeout, max_concurrent_requests, min_body_rate, max_points_per_request)",
        ),
        (
            "[[sinks]]\ntype = \"stdout\"\npath = \"x\"\n",
            3,
            "path",
            "unknown key `path` in [[sinks]] with type = \"stdout\" (expected one of: type, categories, format)",
        ),
        (
            "[[sinks]]\ntype = \"file\"\npath = \"x\"\nformat = \"lp\"\n",
            4,
            "format",
            "unknown key `format` in [[sinks]] with type = \"file\" (expected one of: type, categories, path)",
        ),
        (
            "[git_repos]\npull_interval = \"1m\"\npull = \"1m\"\n",
            3,
            "pull",
            "unknown key `pull` in [git_repos] (expected one of: pull_interval, repo)",
        ),
        (
            "[[git_repos.repo]]\nurl = \"u\"\n\nbranche = \"main\"\n",
            4,
            "branche",
            "unknown key `branche` in [[git_repos.repo]] (expected one of: enable, url, branch, ssh_private_key_path, ssh_private_key_password, token_env)",
        ),
        (
            "# top\nlisten = \"x\"\n",
            2,
            "listen",
            "unknown key `listen` at the top level (expected one of: agent, global_tags, http, sinks, git_repos)",
        ),
        (
            "[agent]\n[agent.extra]\nx = 1\n",
            2,
            "extra",
            "unknown key `extra` in [agent]",
        ),
        (
            "[inputs.pythond]\nname = \"x\"\n",
            1,
            "inputs",
            "unknown key `inputs` at the top level",
        ),
    ];
    for (text, line, key, message) in cases {
        let err = main_err(text);
        assert_error(&err, MAIN, *line, key, message);
        if message.ends_with(')') {
            // The complete message was given: it must match exactly.
            assert_eq!(err.to_string(), format!("{MAIN}:{line}: {message}"));
        }
    }
}

#[test]
fn bad_values_in_the_main_file() {
    let cases: &[(&str, usize, &str, &str)] = &[
        (
            "[agent]\nhostname = 5\n",
            2,
            "hostname",
            "invalid value for key `hostname` in [agent]: expected a string, found integer 5",
        ),
        (
            "[agent]\nhostname = \"\"\n",
            2,
            "hostname",
            "invalid value for key `hostname` in [agent]: must not be empty",
        ),
        (
            "[agent]\ndata_dir = \"\"\n",
            2,
            "data_dir",
            "invalid value for key `data_dir` in [agent]: must not be empty",
        ),
        (
            "[agent]\nconf_dir = [\"a\"]\n",
            2,
            "conf_dir",
            "expected a string, found an array",
        ),
        (
            "[agent]\nlog_format = \"xml\"\n",
            2,
            "log_format",
            "invalid value for key `log_format` in [agent]: unknown log format \"xml\" (expected one of: text, json)",
        ),
        (
            "[agent]\nlog_level = \"verbose\"\n",
            2,
            "log_level",
            "invalid log level \"verbose\"",
        ),
        ("agent = 1\n", 1, "agent", "expected a table, found integer 1"),
        (
            "[[agent]]\n",
            1,
            "agent",
            "expected a table, found an array (write [agent], not [[agent]])",
        ),
        (
            "[global_tags]\nregion = \"eu\"\nzone = 3\n",
            3,
            "zone",
            "invalid value for key `zone` in [global_tags]: expected a string, found integer 3",
        ),
        (
            "[global_tags]\nregion = \"\"\n",
            2,
            "region",
            "tag values must not be empty",
        ),
        (
            "[http]\nlisten = \"9529\"\n",
            2,
            "listen",
            "invalid listen address \"9529\": missing port",
        ),
        (
            "[http]\nlisten = \"localhost:http\"\n",
            2,
            "listen",
            "the port must be a number",
        ),
        (
            "[http]\nlisten = \"0.0.0.0:9529\"\n",
            2,
            "listen",
            "invalid value for key `listen` in [http]: \"0.0.0.0:9529\" is not a loopback address, so `token` must be set",
        ),
        ("[http]\ntoken = \"\"\n", 2, "token", "must not be empty"),
        (
            "[http]\nmax_body = \"32 parsecs\"\n",
            2,
            "max_body",
            "invalid size \"32 parsecs\"",
        ),
        (
            "[http]\nmax_body = 0\n",
            2,
            "max_body",
            "must be greater than zero",
        ),
        (
            "[[sinks]]\ntype = \"influxdb\"\nurl = \"http://vm:8428\"\ndb = \"d\"\nconcurrency = 0\n",
            5,
            "concurrency",
            "0 is out of range (expected a number of requests from 1 to 16)",
        ),
        (
            "[[sinks]]\ntype = \"influxdb\"\nurl = \"http://vm:8428\"\ndb = \"d\"\nconcurrency = 17\n",
            5,
            "concurrency",
            "17 is out of range (expected a number of requests from 1 to 16)",
        ),
        (
            "[[sinks]]\ntype = \"kafka\"\n",
            2,
            "type",
            "invalid value for key `type` in [[sinks]]: unknown sink type \"kafka\" (expected one of: stdout, file, datakit, influxdb, prometheus_remote_write, otlp)",
        ),
        (
            "[[sinks]]\nformat = \"lp\"\n",
            1,
            "type",
            "missing required key `type` in [[sinks]]",
        ),
        (
            "[[sinks]]\ntype = \"file\"\n",
            1,
            "path",
            "missing required key `path` in [[sinks]] with type = \"file\"",
        ),
        (
            "[[sinks]]\ntype = \"stdout\"\nformat = \"csv\"\n",
            3,
            "format",
            "unknown format \"csv\" (expected one of: lp, json)",
        ),
        (
            "[[sinks]]\ntype = \"stdout\"\ncategories = [\n  \"metric\",\n  \"metricz\",\n]\n",
            5,
            "categories",
            "invalid value for key `categories` in [[sinks]] with type = \"stdout\": element 2: unknown category",
        ),
        (
            "[[sinks]]\ntype = \"stdout\"\ncategories = []\n",
            3,
            "categories",
            "must not be empty",
        ),
        (
            "[[sinks]]\ntype = \"stdout\"\ncategories = \"metric\"\n",
            3,
            "categories",
            "expected an array of category names, found string \"metric\"",
        ),
        (
            "[[sinks]]\ntype = \"file\"\npath = \"a\"\n\n[[sinks]]\ntype = \"file\"\npath = \"./a\"\n",
            7,
            "path",
            "/etc/pythond/a is already written by the file sink at line 3",
        ),
        ("sinks = 1\n", 1, "sinks", "expected an array of tables ([[sinks]])"),
        (
            "[git_repos]\npull_interval = \"5 parsecs\"\n",
            2,
            "pull_interval",
            "invalid value for key `pull_interval` in [git_repos]: invalid duration \"5 parsecs\": unknown time unit \"parsecs\"",
        ),
        (
            "[git_repos]\npull_interval = 60\n",
            2,
            "pull_interval",
            "expected a duration string such as \"10s\" or \"1m30s\", found integer 60 (add a unit)",
        ),
        (
            "[[git_repos.repo]]\nenable = true\n",
            1,
            "url",
            "missing required key `url` in [[git_repos.repo]]",
        ),
        (
            "[[git_repos.repo]]\nurl = \"u\"\nenable = \"yes\"\n",
            3,
            "enable",
            "expected a boolean (true or false), found string \"yes\"",
        ),
        (
            "[[git_repos.repo]]\nurl = \"u\"\nssh_private_key_password = \"pw\"\n",
            3,
            "ssh_private_key_password",
            "is set but `ssh_private_key_path` is not",
        ),
    ];
    for (text, line, key, message) in cases {
        assert_error(&main_err(text), MAIN, *line, key, message);
    }
}

#[test]
fn syntax_errors_name_line_and_column() {
    let err = main_err("[agent]\nhostname = \"unterminated\n");
    assert!(matches!(err, ConfigError::Syntax { .. }), "{err:?}");
    assert_eq!(err.line(), Some(2));
    assert_eq!(err.key(), None);
    assert_eq!(
        err.to_string(),
        format!("{MAIN}:2: TOML syntax error at column 25: invalid basic string")
    );
    assert!(!err.to_string().contains('\n'));

    let err = main_err("[agent]\nhostname = \"a\"\nhostname = \"b\"\n");
    assert_eq!(err.line(), Some(3));
    assert!(
        err.to_string().contains("duplicate key `hostname`"),
        "{err}"
    );
}

#[test]
fn the_first_problem_reported_is_an_unknown_key_then_the_earliest_line() {
    // `cmdd` explains the missing `cmd`, so it is the one shown.
    let err = inputs_err("[[inputs.pythond]]\nname = \"a\"\ncmdd = \"python3\"\ndirs = [\"d\"]\n");
    assert_error(&err, CONF, 3, "cmdd", "unknown key `cmdd`");
    // Otherwise, document order.
    let err = main_err("[agent]\nhostname = 1\n[http]\nlisten = 2\n");
    assert_error(&err, MAIN, 2, "hostname", "expected a string");
}

// ---------------------------------------------------------------------------------
// Inputs.

#[test]
fn a_full_input() {
    let (inputs, skipped) = inputs_ok(
        r#"
# my collectors
[[inputs.pythond]]
  name = "my-inputs"
  cmd  = "/usr/bin/python3"
  dirs = ["mytest", "other/one.py"]
  envs = ["PYTHONPATH=/opt/lib", "EMPTY=", "URL=http://x/?a=b"]
  interval = "1m30s"
  timeout = "500ms"
  tags = { team = "db", env = "prod" }
  transport = "http"
"#,
    );
    assert!(skipped.is_empty());
    assert_eq!(inputs.len(), 1);
    let input = &inputs[0];
    assert_eq!(input.name, "my-inputs");
    assert_eq!(input.cmd, "/usr/bin/python3");
    assert_eq!(input.dirs, vec!["mytest", "other/one.py"]);
    assert_eq!(
        input.envs,
        vec![
            ("PYTHONPATH".to_owned(), "/opt/lib".to_owned()),
            ("EMPTY".to_owned(), String::new()),
            ("URL".to_owned(), "http://x/?a=b".to_owned()),
        ]
    );
    assert_eq!(input.interval, Some(Duration::from_secs(90)));
    assert_eq!(input.timeout, Some(Duration::from_millis(500)));
    assert_eq!(
        input.tags,
        BTreeMap::from([
            ("env".to_owned(), "prod".to_owned()),
            ("team".to_owned(), "db".to_owned()),
        ])
    );
    assert_eq!(input.transport, Transport::Http);
    assert_eq!(
        input.origin,
        Origin {
            file: PathBuf::from(CONF),
            line: 3
        }
    );
    assert_eq!(input.origin.to_string(), "conf.d/x.conf:3");
}

#[test]
fn input_defaults() {
    let (inputs, _) = inputs_ok(&input_with(""));
    let input = &inputs[0];
    assert!(input.envs.is_empty());
    assert_eq!(input.interval, None);
    assert_eq!(input.timeout, None);
    assert!(input.tags.is_empty());
    assert_eq!(input.transport, Transport::Pipe);
    assert_eq!(
        input.effective_timeout(Duration::from_secs(10)),
        Duration::from_secs(30)
    );
    let (inputs, _) = inputs_ok(&input_with("timeout = \"7s\"\n"));
    assert_eq!(
        inputs[0].effective_timeout(Duration::from_secs(10)),
        Duration::from_secs(7)
    );
}

#[test]
fn several_inputs_in_one_file_keep_their_order_and_lines() {
    let text = "[[inputs.pythond]]\nname = \"one\"\ncmd = \"python3\"\ndirs = [\"a\"]\n\n\
                [[inputs.pythond]]\nname = \"two\"\ncmd = \"python3\"\ndirs = [\"b\"]\n\
                [inputs.pythond.tags]\nteam = \"x\"\n";
    let (inputs, _) = inputs_ok(text);
    let names: Vec<_> = inputs
        .iter()
        .map(|i| (i.name.as_str(), i.origin.line))
        .collect();
    assert_eq!(names, vec![("one", 1), ("two", 6)]);
    assert_eq!(inputs[1].tags["team"], "x");
}

#[test]
fn a_single_table_input_is_accepted() {
    let (inputs, _) =
        inputs_ok("[inputs.pythond]\nname = \"a\"\ncmd = \"python3\"\ndirs = [\"d\"]\n");
    assert_eq!(inputs.len(), 1);
    assert_eq!(inputs[0].origin.line, 1);
}

#[test]
fn durations() {
    let cases = [
        ("500ms", Duration::from_millis(500)),
        ("1s", Duration::from_secs(1)),
        ("1m30s", Duration::from_secs(90)),
        ("2h", Duration::from_secs(7200)),
        ("1m", Duration::from_secs(60)),
    ];
    for (text, expected) in cases {
        let (inputs, _) = inputs_ok(&input_with(&format!("interval = \"{text}\"\n")));
        assert_eq!(inputs[0].interval, Some(expected), "{text}");
    }
    let bad = [
        ("\"5 parsecs\"", "invalid duration \"5 parsecs\": unknown time unit \"parsecs\""),
        ("\"0s\"", "duration \"0s\" must be greater than zero"),
        ("\"-1s\"", "duration \"-1s\" must be greater than zero"),
        ("\"\"", "invalid duration \"\""),
        (
            "10",
            "expected a duration string such as \"10s\" or \"1m30s\", found integer 10 (add a unit)",
        ),
        (
            "1.5",
            "expected a duration string such as \"10s\" or \"1m30s\", found float 1.5 (add a unit)",
        ),
        ("true", "expected a duration string such as \"10s\" or \"1m30s\", found boolean true"),
    ];
    for key in ["interval", "timeout"] {
        for (value, message) in bad {
            let err = inputs_err(&input_with(&format!("\n{key} = {value}\n")));
            assert_error(
                &err,
                CONF,
                6,
                key,
                &format!("invalid value for key `{key}` in [[inputs.pythond]]: {message}"),
            );
        }
    }
}

#[test]
fn envs_parsing() {
    let (inputs, _) = inputs_ok(&input_with("envs = [\"A=1\", \"B==2\", \"C=\"]\n"));
    assert_eq!(
        inputs[0].envs,
        vec![
            ("A".to_owned(), "1".to_owned()),
            ("B".to_owned(), "=2".to_owned()),
            ("C".to_owned(), String::new()),
        ]
    );
    let (inputs, _) = inputs_ok(&input_with("envs = []\n"));
    assert!(inputs[0].envs.is_empty());

    let bad = [
        (
            "[\"NOEQUALS\"]",
            5,
            "element 1: \"NOEQUALS\" is not of the form KEY=VALUE",
        ),
        (
            "[\"A=1\",\n  \"=x\"]",
            6,
            "element 2: \"=x\" has an empty KEY",
        ),
        (
            "[\"A=1\", \"A=2\"]",
            5,
            "element 2: `A` is set more than once",
        ),
        (
            "[\n  1]",
            6,
            "element 1: expected a string, found integer 1",
        ),
        (
            "\"A=1\"",
            5,
            "expected an array of \"KEY=VALUE\" strings, found string \"A=1\"",
        ),
    ];
    for (value, line, message) in bad {
        let err = inputs_err(&input_with(&format!("envs = {value}\n")));
        assert_error(
            &err,
            CONF,
            line,
            "envs",
            &format!("invalid value for key `envs` in [[inputs.pythond]]: {message}"),
        );
    }
}

#[test]
fn options_and_plugin_overrides() {
    let (inputs, _) = inputs_ok(&input_with(
        "[inputs.pythond.options]\nhost = \"db\"\nport = 5432\nratio = 0.5\nlist = [1, \"a\"]\nwhen = 1979-05-27\n\
         [inputs.pythond.plugins.locks]\ninterval = \"1m\"\ntimeout = \"20s\"\noptions = { host = \"replica\" }\n\
         [inputs.pythond.plugins.\"pg.Vacuum\"]\nenabled = false\n",
    ));
    let input = &inputs[0];
    assert_eq!(
        serde_json::Value::Object(input.options.clone()),
        serde_json::json!({"host": "db", "port": 5432, "ratio": 0.5, "list": [1, "a"], "when": "1979-05-27"})
    );
    let locks = input.plugin_override("x.Locks", "locks").expect("by name");
    assert_eq!(locks.interval, Some(Duration::from_secs(60)));
    assert_eq!(locks.timeout, Some(Duration::from_secs(20)));
    assert!(locks.enabled);
    assert_eq!(locks.options["host"], "replica");
    let vacuum = input.plugin_override("pg.Vacuum", "vacuum").expect("by id");
    assert!(!vacuum.enabled);

    // Options are part of the settings: a change restarts the input on reload.
    let (other, _) = inputs_ok(&input_with("[inputs.pythond.options]\nhost = \"db2\"\n"));
    assert_ne!(inputs[0], other[0]);

    let err = inputs_err(&input_with(
        "[inputs.pythond.plugins.locks]\nintreval = \"1s\"\n",
    ));
    assert_error(&err, CONF, 6, "intreval", "unknown key `intreval` in [inputs.pythond.plugins.locks] (expected one of: interval, timeout, enabled, options)");
    let err = inputs_err(&input_with("options = 3\n"));
    assert_error(&err, CONF, 5, "options", "expected a table");
    let err = inputs_err(&input_with("[inputs.pythond.options]\nx = nan\n"));
    assert_error(&err, CONF, 6, "options", "not a finite number");
}

#[test]
fn unknown_keys_in_inputs() {
    let err = inputs_err(&input_with("\nintreval = \"1s\"\n"));
    assert_eq!(
        err.to_string(),
        "conf.d/x.conf:6: unknown key `intreval` in [[inputs.pythond]] (expected one of: \
         name, cmd, dirs, envs, interval, timeout, tags, transport, options, plugins, emit_events, isolation, max_rss, max_age, start_delay, time_reopen, fetch_no_data_delay, zenpython_devices, instances, concurrency, processes, instance_metrics)"
    );
    assert_error(&err, CONF, 6, "intreval", "unknown key");

    let err = inputs_err(&input_with("[inputs.pythond.extra]\nx = 1\n"));
    assert_error(
        &err,
        CONF,
        5,
        "extra",
        "unknown key `extra` in [[inputs.pythond]]",
    );

    let err = inputs_err("version = 2\n");
    assert_error(
        &err,
        CONF,
        1,
        "version",
        "unknown key `version` at the top level (expected one of: inputs)",
    );
}

#[test]
fn bad_values_in_inputs() {
    let header = "[[inputs.pythond]]\n";
    let cases: Vec<(String, usize, &str, &str)> = vec![
        (
            format!("{header}cmd = \"python3\"\ndirs = [\"d\"]\n"),
            1,
            "name",
            "missing required key `name` in [[inputs.pythond]]",
        ),
        (
            format!("{header}name = \"a\"\ndirs = [\"d\"]\n"),
            1,
            "cmd",
            "missing required key `cmd` in [[inputs.pythond]]",
        ),
        (
            format!("{header}name = \"a\"\ncmd = \"python3\"\n"),
            1,
            "dirs",
            "missing required key `dirs` in [[inputs.pythond]]",
        ),
        (
            format!("{header}name = \"\"\ncmd = \"python3\"\ndirs = [\"d\"]\n"),
            2,
            "name",
            "invalid value for key `name` in [[inputs.pythond]]: must not be empty",
        ),
        (
            format!("{header}name = \"  \"\ncmd = \"python3\"\ndirs = [\"d\"]\n"),
            2,
            "name",
            "must not be empty",
        ),
        (
            format!("{header}name = 7\ncmd = \"python3\"\ndirs = [\"d\"]\n"),
            2,
            "name",
            "expected a string, found integer 7",
        ),
        (
            format!("{header}name = \"a\"\ncmd = \"\"\ndirs = [\"d\"]\n"),
            3,
            "cmd",
            "invalid value for key `cmd` in [[inputs.pythond]]: must not be empty",
        ),
        (
            format!("{header}name = \"a\"\ncmd = \"python3\"\ndirs = []\n"),
            4,
            "dirs",
            "invalid value for key `dirs` in [[inputs.pythond]]: must not be empty",
        ),
        (
            format!("{header}name = \"a\"\ncmd = \"python3\"\ndirs = \"d\"\n"),
            4,
            "dirs",
            "expected an array of strings, found string \"d\"",
        ),
        (
            format!("{header}name = \"a\"\ncmd = \"python3\"\ndirs = [\n  \"d\",\n  \"\",\n]\n"),
            6,
            "dirs",
            "element 2 must not be empty",
        ),
        (
            format!("{header}name = \"a\"\ncmd = \"python3\"\ndirs = [\"d\", 5]\n"),
            4,
            "dirs",
            "element 2 must be a string, found integer 5",
        ),
        (
            input_with("transport = \"grpc\"\n"),
            5,
            "transport",
            "unknown transport \"grpc\" (expected one of: pipe, http)",
        ),
        (
            input_with("tags = { team = 1 }\n"),
            5,
            "tags.team",
            "invalid value for key `tags.team` in [[inputs.pythond]]: expected a string, found integer 1",
        ),
        (
            input_with("[inputs.pythond.tags]\nteam = \"db\"\n\nenv = false\n"),
            8,
            "tags.env",
            "expected a string, found boolean false",
        ),
        (
            input_with("tags = { team = \"\" }\n"),
            5,
            "tags.team",
            "tag values must not be empty",
        ),
        (
            input_with("tags = [\"team=db\"]\n"),
            5,
            "tags",
            "expected a table of strings, found an array",
        ),
        (
            "[inputs]\npythond = 3\n".to_owned(),
            2,
            "pythond",
            "expected an array of tables ([[inputs.pythond]]), found integer 3",
        ),
        (
            "inputs = 3\n".to_owned(),
            1,
            "inputs",
            "expected a table, found integer 3",
        ),
    ];
    for (text, line, key, message) in &cases {
        assert_error(&inputs_err(text), CONF, *line, key, message);
    }
}

#[test]
fn duplicate_names_in_one_file() {
    let text = format!("{}\n{}", input_with(""), input_with(""));
    let err = inputs_err(&text);
    assert_eq!(
        err.to_string(),
        "conf.d/x.conf:6: duplicate input name \"a\" in [[inputs.pythond]] (first declared at conf.d/x.conf:1)"
    );
    assert_error(&err, CONF, 6, "name", "duplicate input name");
}

#[test]
fn other_inputs_are_skipped_with_their_lines() {
    let text = format!(
        "[[inputs.cpu]]\n  percpu = true\n\n[[inputs.cpu]]\n\n[inputs.mem]\nx = 1\n\n{}\n[[inputs.disk]]\n",
        input_with("")
    );
    let (inputs, skipped) = inputs_ok(&text);
    assert_eq!(inputs.len(), 1);
    assert_eq!(inputs[0].origin.line, 9);
    let found: Vec<(usize, &str)> = skipped.iter().map(|s| (s.line, s.kind.as_str())).collect();
    assert_eq!(
        found,
        vec![(1, "cpu"), (4, "cpu"), (6, "mem"), (14, "disk")]
    );
    assert_eq!(skipped[0].file, Path::new(CONF));
    assert_eq!(skipped[0].to_string(), "conf.d/x.conf:1: [[inputs.cpu]]");

    // A file with only other inputs is fine and yields nothing.
    let (inputs, skipped) = inputs_ok("[[inputs.cpu]]\n");
    assert!(inputs.is_empty());
    assert_eq!(skipped.len(), 1);
    let (inputs, skipped) = inputs_ok("# nothing here\n");
    assert!(inputs.is_empty() && skipped.is_empty());
}

#[test]
fn input_equality_ignores_origin() {
    use std::collections::hash_map::DefaultHasher;
    use std::hash::{Hash, Hasher};

    let hash = |input: &InputConfig| {
        let mut hasher = DefaultHasher::new();
        input.hash(&mut hasher);
        hasher.finish()
    };
    let (a, _) = inputs_ok(&input_with("interval = \"1s\"\n"));
    let (b, _) = parse_inputs(
        &format!("\n\n{}", input_with("interval = \"1s\"\n")),
        Path::new("conf.d/other.conf"),
    )
    .expect("parse");
    assert_ne!(a[0].origin, b[0].origin);
    assert_eq!(a[0], b[0]);
    assert!(a[0].same_settings(&b[0]));
    assert_eq!(hash(&a[0]), hash(&b[0]));

    let (c, _) = inputs_ok(&input_with("interval = \"2s\"\n"));
    assert_ne!(a[0], c[0]);
    assert!(!a[0].same_settings(&c[0]));
}

// ---------------------------------------------------------------------------------
// conf.d loading.

#[test]
fn missing_conf_dir_is_empty_not_an_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let found = load_inputs(&dir.path().join("conf.d"));
    assert!(found.inputs.is_empty());
    assert!(found.errors.is_empty());
    assert!(found.skipped.is_empty());
}

fn conf(name: &str) -> String {
    format!("[[inputs.pythond]]\nname = \"{name}\"\ncmd = \"python3\"\ndirs = [\"{name}\"]\n")
}

#[test]
fn conf_dir_is_walked_recursively_in_path_order() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    write(&root.join("b.conf"), &conf("b"));
    write(&root.join("a.conf"), &conf("a"));
    write(&root.join("sub/deeper/c.conf"), &conf("c"));
    write(
        &root.join("sub/d.conf"),
        &format!("{}\n{}", conf("d1"), conf("d2")),
    );
    write(&root.join("notes.txt"), "not toml at all [[[");
    write(&root.join("e.conf.sample"), "not toml at all [[[");
    write(&root.join(".hidden.conf"), "not toml at all [[[");
    write(&root.join(".git/x.conf"), "not toml at all [[[");
    write(&root.join("cpu.conf"), "[[inputs.cpu]]\n");

    let found = load_inputs(root);
    assert!(found.errors.is_empty(), "{:?}", found.errors);
    let names: Vec<&str> = found.inputs.iter().map(|i| i.name.as_str()).collect();
    // Path order compares component by component: sub/d.conf < sub/deeper/c.conf.
    assert_eq!(names, vec!["a", "b", "d1", "d2", "c"]);
    assert_eq!(found.inputs[4].origin.file, root.join("sub/deeper/c.conf"));
    assert_eq!(found.inputs[3].origin.line, 6);
    assert_eq!(
        found.skipped,
        vec![SkippedTable {
            file: root.join("cpu.conf"),
            line: 1,
            kind: "cpu".into()
        }]
    );
}

#[test]
fn a_broken_file_does_not_prevent_the_others() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    write(&root.join("a.conf"), &conf("a"));
    // Valid TOML, one good input and one bad: the whole file is rejected.
    write(
        &root.join("b.conf"),
        &format!("{}\n{}interval = \"soon\"\n", conf("b1"), conf("b2")),
    );
    write(&root.join("c.conf"), "[[inputs.pythond]\n");
    write(&root.join("d.conf"), &conf("d"));

    let found = load_inputs(root);
    let names: Vec<&str> = found.inputs.iter().map(|i| i.name.as_str()).collect();
    assert_eq!(names, vec!["a", "d"]);
    assert_eq!(found.errors.len(), 2, "{:?}", found.errors);
    let b = root.join("b.conf");
    assert_error(
        &found.errors[0],
        &b.display().to_string(),
        10,
        "interval",
        "invalid duration \"soon\"",
    );
    assert_eq!(found.errors[1].file(), root.join("c.conf"));
    assert_eq!(found.errors[1].line(), Some(1));
    assert!(matches!(found.errors[1], ConfigError::Syntax { .. }));
}

#[test]
fn duplicate_names_across_files_name_both_places() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    write(&root.join("a.conf"), &conf("same"));
    write(
        &root.join("b.conf"),
        &format!("{}\n{}", conf("other"), conf("same")),
    );

    let found = load_inputs(root);
    let names: Vec<&str> = found.inputs.iter().map(|i| i.name.as_str()).collect();
    assert_eq!(names, vec!["same", "other"]);
    assert_eq!(found.inputs[0].origin.file, root.join("a.conf"));
    assert_eq!(found.errors.len(), 1);
    let err = &found.errors[0];
    let b = root.join("b.conf").display().to_string();
    assert_error(err, &b, 6, "name", "duplicate input name \"same\"");
    assert_eq!(
        err.to_string(),
        format!(
            "{b}:6: duplicate input name \"same\" in [[inputs.pythond]] (first declared at {}:1)",
            root.join("a.conf").display()
        )
    );
}

#[test]
fn unreadable_conf_files_are_reported_by_path() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    write(&root.join("a.conf"), &conf("a"));
    fs::write(root.join("bad.conf"), [0xff, 0xfe, b'\n']).expect("write");
    let found = load_inputs(root);
    assert_eq!(found.inputs.len(), 1);
    assert_eq!(found.errors.len(), 1);
    assert!(matches!(found.errors[0], ConfigError::Io { .. }));
    assert_eq!(found.errors[0].file(), root.join("bad.conf"));

    // A conf_dir that is a file cannot be listed.
    let found = load_inputs(&root.join("a.conf"));
    assert_eq!(found.errors.len(), 1);
    assert_eq!(found.errors[0].file(), root.join("a.conf"));
}

#[cfg(unix)]
#[test]
fn symlink_loops_are_walked_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    write(&root.join("sub/a.conf"), &conf("a"));
    std::os::unix::fs::symlink(root, root.join("sub/loop")).expect("symlink");
    let found = load_inputs(root);
    assert!(found.errors.is_empty(), "{:?}", found.errors);
    assert_eq!(found.inputs.len(), 1);
}

// ---------------------------------------------------------------------------------
// Documentation.

#[test]
fn every_example_in_the_reference_is_valid() {
    check_toml_examples(include_str!("../../docs/CONFIG.md"), 4);
}

#[test]
fn every_example_in_the_migration_guide_is_valid() {
    check_toml_examples(include_str!("../../docs/MIGRATING.md"), 3);
}

fn check_toml_examples(doc: &str, at_least: usize) {
    let mut blocks = 0;
    for block in doc.split("```toml\n").skip(1) {
        let Some((text, _)) = block.split_once("```") else {
            panic!("unterminated toml block");
        };
        blocks += 1;
        if text.contains("[inputs.pythond]") {
            let (inputs, _) = parse_inputs(text, Path::new("CONFIG.md"))
                .unwrap_or_else(|e| panic!("{e}\n{text}"));
            assert!(!inputs.is_empty());
        } else {
            parse_main(text, Path::new("/etc/pythond/pythond.toml"))
                .unwrap_or_else(|e| panic!("{e}\n{text}"));
        }
    }
    assert!(blocks >= at_least, "only {blocks} toml blocks found");
}

#[test]
fn syslog_ng_and_zenpython_keys() {
    let (inputs, _) = inputs_ok(&input_with(
        "time_reopen = \"5s\"\nfetch_no_data_delay = \"1m\"\n\
         [[inputs.pythond.zenpython_devices]]\nid = \"web01\"\nmanageIp = \"10.0.0.5\"\n\
         zCommandUsername = \"zenoss\"\n[inputs.pythond.zenpython_devices.params]\nport = 8080\n",
    ));
    let kinds = &inputs[0].kinds;
    assert_eq!(kinds.time_reopen, Some(Duration::from_secs(5)));
    assert_eq!(kinds.fetch_no_data_delay, Some(Duration::from_secs(60)));
    assert_eq!(kinds.zenpython_devices.len(), 1);
    assert_eq!(kinds.zenpython_devices[0]["manageIp"], "10.0.0.5");
    assert_eq!(kinds.zenpython_devices[0]["params"]["port"], 8080);
    let json = kinds.worker_json(Path::new("/var/lib/pythond/state"), false);
    assert_eq!(json["time_reopen"], 5.0);
    assert_eq!(json["fetch_no_data_delay"], 60.0);
    assert_eq!(json["state_dir"], "/var/lib/pythond/state");
    assert_eq!(json["zenpython_devices"][0]["zCommandUsername"], "zenoss");
    // Defaults: syslog-ng's time-reopen of 1 s; no delay of its own; no devices.
    let (plain, _) = inputs_ok(&input_with(""));
    let json = plain[0].kinds.worker_json(Path::new("/s"), true);
    assert_eq!(json["time_reopen"], 1.0);
    assert!(json["fetch_no_data_delay"].is_null());
    assert!(json["zenpython_devices"].is_null());
    assert_eq!(json["once"], true);
    // They are settings: a change restarts the input on reload.
    assert_ne!(inputs[0], plain[0]);

    let err = inputs_err(&input_with(
        "[[inputs.pythond.zenpython_devices]]\nmanageIp = \"10.0.0.5\"\n",
    ));
    assert_error(&err, CONF, 5, "zenpython_devices", "device 1: needs `id`");
    let err = inputs_err(&input_with("time_reopen = \"soon\"\n"));
    assert_error(&err, CONF, 5, "time_reopen", "");
}

// ---------------------------------------------------------------------------------
// Instances.

#[test]
fn instances_as_tables_and_inline_read_every_key() {
    let (inputs, _) = inputs_ok(&input_with(
        "options = { port = 80 }\nconcurrency = 8\n\
         [[inputs.pythond.instances]]\nname = \"web-1\"\noptions = { host = \"a\" }\n\
         tags = { site = \"eu\" }\ninterval = \"5s\"\ntimeout = \"2s\"\n\
         [[inputs.pythond.instances]]\nenabled = false\n",
    ));
    let input = &inputs[0];
    assert!(input.has_instances());
    assert_eq!(input.effective_concurrency(), 8);
    let [first, second] = &input.instances[..] else {
        panic!("two instances: {:?}", input.instances);
    };
    assert_eq!(first.name, "web-1");
    assert_eq!(first.options["host"], "a");
    assert_eq!(first.tags["site"], "eu");
    assert_eq!(first.interval, Some(Duration::from_secs(5)));
    assert_eq!(first.timeout, Some(Duration::from_secs(2)));
    assert!(first.enabled);
    assert_eq!(first.line, 7);
    // Unnamed: its position.
    assert_eq!(second.name, "1");
    assert!(!second.enabled);

    let (inline, _) = inputs_ok(&input_with(
        "instances = [{ name = \"x\", options = { url = \"http://a\" } }, {}]\n",
    ));
    let names: Vec<&str> = inline[0]
        .instances
        .iter()
        .map(|i| i.name.as_str())
        .collect();
    assert_eq!(names, ["x", "1"]);
    assert_eq!(
        inline[0].effective_concurrency(),
        4,
        "default for two instances"
    );

    let (plain, _) = inputs_ok(&input_with(""));
    assert!(!plain[0].has_instances());
}

#[test]
fn instance_errors_name_file_line_and_key() {
    let err = inputs_err(&input_with(
        "[[inputs.pythond.instances]]\nname = \"a\"\n[[inputs.pythond.instances]]\nname = \"a\"\n",
    ));
    assert_error(
        &err,
        CONF,
        8,
        "name",
        "duplicate instance name \"a\" (first used by the instance at line 5)",
    );

    let err = inputs_err(&input_with(
        "[[inputs.pythond.instances]]\nname = \"a\"\nintreval = \"1s\"\n",
    ));
    assert_error(&err, CONF, 7, "intreval", "unknown key `intreval` in [[inputs.pythond.instances]] (expected one of: name, options, tags, interval, timeout, enabled)");

    let err = inputs_err(&input_with(
        "[[inputs.pythond.instances]]\ninterval = \"soon\"\n",
    ));
    assert_error(&err, CONF, 6, "interval", "in [[inputs.pythond.instances]]");

    let err = inputs_err(&input_with("concurrency = 0\n"));
    assert_error(&err, CONF, 5, "concurrency", "out of range");

    let err = inputs_err(&input_with("instances = 3\n"));
    assert_error(&err, CONF, 5, "instances", "expected an array of tables");
}

#[test]
fn ten_thousand_instances_parse_quickly_and_changes_are_seen() {
    let mut text = input_with("");
    for i in 0..10_000 {
        text.push_str(&format!(
            "[[inputs.pythond.instances]]\nname = \"t{i}\"\noptions = {{ url = \"http://10.0.0.1/{i}\" }}\n"
        ));
    }
    let started = std::time::Instant::now();
    let (first, _) = inputs_ok(&text);
    let took = started.elapsed();
    assert_eq!(first[0].instances.len(), 10_000);
    // Generous: the target is well under a second in release builds on a busy host.
    assert!(took < Duration::from_secs(30), "took {took:?}");
    let changed = text.replace("http://10.0.0.1/77\"", "http://10.0.0.2/77\"");
    let (second, _) = inputs_ok(&changed);
    assert_ne!(first[0], second[0]);
    let moved = format!("\n\n{text}");
    let (third, _) = inputs_ok(&moved);
    assert_eq!(first[0], third[0], "lines are not settings");
}

#[test]
fn a_network_sinks_concurrency_is_read_and_defaults_to_two() {
    let concurrency = |extra: &str| {
        let config = main_ok(&format!(
            "[[sinks]]\ntype = \"influxdb\"\nurl = \"http://vm:8428\"\ndb = \"d\"\n{extra}"
        ));
        config.sinks[0].kind.network().map(|net| net.concurrency)
    };
    assert_eq!(concurrency(""), Some(2));
    assert_eq!(concurrency("concurrency = 1\n"), Some(1));
    assert_eq!(concurrency("concurrency = 16\n"), Some(16));
}
