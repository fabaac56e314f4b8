//! Configuration errors: `pythond config check` and `pythond run` name the file, the
//! line and the key of every problem, and a broken input file does not stop the inputs
//! of another file from running.

mod common;

use common::Home;

const GOOD_PLUGIN: &str = r#"
from datakit_framework import DataKitFramework

class Good(DataKitFramework):
    name = "good"
    interval = 1

    def run(self):
        self.report({"M": [{"measurement": "good", "tags": {}, "fields": {"v": 1}}]})
"#;

/// A home with `python.d/good` and one input file `conf.d/bad.conf` holding `conf`.
fn home_with(conf: &str) -> Home {
    let home = Home::new();
    home.write("python.d/good/good.py", GOOD_PLUGIN);
    home.write("conf.d/bad.conf", conf);
    home
}

/// Runs `config check`; asserts it fails and that one error line names all `needles`.
fn assert_config_error(home: &Home, needles: &[&str]) -> String {
    let (code, stdout, stderr) = home.config_check();
    assert_ne!(
        code, 0,
        "config check passed; stdout:\n{stdout}\nstderr:\n{stderr}"
    );
    assert!(
        stderr
            .lines()
            .any(|l| needles.iter().all(|n| l.contains(n))),
        "no error line names all of {needles:?}:\n{stderr}"
    );
    stderr
}

#[test]
fn a_valid_configuration_passes() {
    let home = Home::new();
    home.write("python.d/good/good.py", GOOD_PLUGIN);
    home.input(
        "fine",
        &["good"],
        "interval = \"1s\"\ntimeout = \"5s\"\ntags = { team = \"shop\" }",
    );
    let (code, stdout, stderr) = home.config_check();
    assert_eq!(code, 0, "stdout:\n{stdout}\nstderr:\n{stderr}");
}

#[test]
fn an_unknown_key_is_named_with_file_and_line() {
    let home = home_with(
        "[[inputs.pythond]]\nname = \"typo\"\ncmd = \"python3\"\ndirs = [\"good\"]\nintreval = \"1s\"\n",
    );
    assert_config_error(&home, &["bad.conf:5", "intreval"]);
}

#[test]
fn a_bad_duration_is_named_with_file_line_and_key() {
    let home = home_with(
        "[[inputs.pythond]]\nname = \"slowpoke\"\ncmd = \"python3\"\ndirs = [\"good\"]\n\ninterval = \"5 parsecs\"\n",
    );
    assert_config_error(&home, &["bad.conf:6", "interval"]);

    let home = home_with(
        "[[inputs.pythond]]\nname = \"n\"\ncmd = \"python3\"\ndirs = [\"good\"]\ntimeout = 5\n",
    );
    assert_config_error(&home, &["bad.conf:5", "timeout"]);
}

#[test]
fn processes_without_instances_or_out_of_range_is_named_with_file_and_line() {
    let home = home_with(
        "[[inputs.pythond]]\nname = \"n\"\ncmd = \"python3\"\ndirs = [\"good\"]\n\nprocesses = 3\n",
    );
    assert_config_error(
        &home,
        &["bad.conf:6", "processes", "processes needs instances"],
    );

    let home = home_with(
        "[[inputs.pythond]]\nname = \"n\"\ncmd = \"python3\"\ndirs = [\"good\"]\nprocesses = 65\n\
         [[inputs.pythond.instances]]\nname = \"a\"\n",
    );
    assert_config_error(&home, &["bad.conf:5", "processes", "out of range"]);

    // One process needs no instances; several with instances are fine.
    let home = home_with(
        "[[inputs.pythond]]\nname = \"n\"\ncmd = \"python3\"\ndirs = [\"good\"]\nprocesses = 1\n\
         [[inputs.pythond]]\nname = \"m\"\ncmd = \"python3\"\ndirs = [\"good\"]\nprocesses = 2\n\
         [[inputs.pythond.instances]]\nname = \"a\"\n",
    );
    let (code, stdout, stderr) = home.config_check();
    assert_eq!(code, 0, "stdout:\n{stdout}\nstderr:\n{stderr}");
}

#[test]
fn a_missing_required_key_is_named() {
    let home = home_with("\n[[inputs.pythond]]\nname = \"nocmd\"\ndirs = [\"good\"]\n");
    assert_config_error(&home, &["bad.conf:2", "cmd"]);

    let home = home_with("[[inputs.pythond]]\ncmd = \"python3\"\ndirs = [\"good\"]\n");
    assert_config_error(&home, &["bad.conf:1", "name"]);
}

#[test]
fn a_value_of_the_wrong_type_is_named() {
    let home = home_with("[[inputs.pythond]]\nname = \"n\"\ncmd = \"python3\"\ndirs = \"good\"\n");
    assert_config_error(&home, &["bad.conf:4", "dirs"]);
}

#[test]
fn duplicate_input_names_are_an_error() {
    let home = Home::new();
    home.write("python.d/good/good.py", GOOD_PLUGIN);
    home.write(
        "conf.d/a.conf",
        "[[inputs.pythond]]\nname = \"same\"\ncmd = \"python3\"\ndirs = [\"good\"]\n",
    );
    home.write(
        "conf.d/b.conf",
        "# the second one\n[[inputs.pythond]]\nname = \"same\"\ncmd = \"python3\"\ndirs = [\"good\"]\n",
    );
    let stderr = assert_config_error(&home, &["same"]);
    assert!(
        stderr.contains("b.conf:2") || stderr.contains("b.conf:3"),
        "the duplicate's file:line is not named:\n{stderr}"
    );
}

#[test]
fn a_toml_syntax_error_is_named_with_file_and_line() {
    let home = home_with("[[inputs.pythond]]\nname = \"n\"\ncmd = \"python3\ndirs = [\"good\"]\n");
    assert_config_error(&home, &["bad.conf:3"]);
}

#[test]
fn problems_in_the_main_file_are_named_and_stop_run() {
    let home = Home::new();
    home.write("python.d/good/good.py", GOOD_PLUGIN);
    home.input("fine", &["good"], "");
    home.write(
        "pythond.toml",
        "[agent]\ndata_dirr = \"data\"\n\n[[sinks]]\ntype = \"file\"\npath = \"points.ndjson\"\n",
    );
    assert_config_error(&home, &["pythond.toml:2", "data_dirr"]);

    let mut agent = home.start();
    let status = agent
        .wait_exit(common::DEADLINE)
        .expect("run must refuse a broken main file");
    assert!(!status.success(), "run started with a broken pythond.toml");
    assert!(
        agent.stderr().contains("pythond.toml:2") && agent.stderr().contains("data_dirr"),
        "run does not say what is wrong:\n{}",
        agent.stderr()
    );
}

#[test]
fn an_unknown_sink_key_is_named() {
    let home = Home::new();
    home.write(
        "pythond.toml",
        "[[sinks]]\ntype = \"file\"\npth = \"points.ndjson\"\n",
    );
    assert_config_error(&home, &["pythond.toml:3", "pth"]);
}

/// Every sink type refuses a key it does not have, naming the file, the line and the
/// key, and lists exactly the keys it accepts (docs/CONFIG.md, "[[sinks]]").
#[test]
fn every_sink_type_names_an_unknown_key_and_lists_its_own() {
    const NETWORK: &str = "name, url, max_bytes, batch_points, flush_interval, timeout, retry_max_interval, concurrency, fsync, ca_file";
    const REQUEST: &str = "bearer_token_env, username, password_env, headers";
    let cases = [
        ("stdout", "format = \"json\"", "format".to_string()),
        ("file", "path = \"points.ndjson\"", "path".to_string()),
        (
            "datakit",
            "url = \"http://127.0.0.1:9529\"",
            NETWORK.to_string(),
        ),
        (
            "influxdb",
            "url = \"http://127.0.0.1:8086\"\ndb = \"d\"",
            format!("{NETWORK}, db, org, bucket, token"),
        ),
        (
            "prometheus_remote_write",
            "url = \"http://127.0.0.1:8428/api/v1/write\"",
            format!("{NETWORK}, {REQUEST}"),
        ),
        (
            "otlp",
            "url = \"http://127.0.0.1:4318\"",
            format!("{NETWORK}, {REQUEST}, resource_tags"),
        ),
    ];
    for (kind, valid, keys) in cases {
        let home = Home::new();
        let lines = valid.lines().count();
        home.write(
            "pythond.toml",
            &format!("[[sinks]]\ntype = \"{kind}\"\n{valid}\nbogus = 1\n"),
        );
        assert_config_error(
            &home,
            &[
                &format!("pythond.toml:{}", lines + 3),
                &format!("unknown key `bogus` in [[sinks]] with type = \"{kind}\""),
                &format!("(expected one of: type, categories, {keys})"),
            ],
        );
    }
}

#[test]
fn config_check_names_missing_interpreters_and_dirs() {
    let home = Home::new();
    home.write("python.d/good/good.py", GOOD_PLUGIN);
    home.write(
        "conf.d/ghost.conf",
        "[[inputs.pythond]]\nname = \"ghost\"\ncmd = \"python3-no-such-interpreter\"\ndirs = [\"good\"]\n",
    );
    home.write(
        "conf.d/lost.conf",
        "[[inputs.pythond]]\nname = \"lost\"\ncmd = \"python3\"\ndirs = [\"no-such-dir\"]\n",
    );
    let stderr = assert_config_error(&home, &["ghost.conf:1", "python3-no-such-interpreter"]);
    assert!(
        stderr
            .lines()
            .any(|l| l.contains("lost.conf:1") && l.contains("no-such-dir")),
        "the missing dirs entry is not named:\n{stderr}"
    );
}

#[test]
fn run_reports_a_broken_input_file_and_runs_the_others() {
    let home = Home::new();
    home.write("python.d/good/good.py", GOOD_PLUGIN);
    home.input("fine", &["good"], "interval = \"1s\"");
    home.write(
        "conf.d/broken.conf",
        "[[inputs.pythond]]\nname = \"broken\"\ncmd = \"python3\"\ndirs = [\"good\"]\nintreval = \"1s\"\n",
    );
    home.write(
        "conf.d/garbled.conf",
        "[[inputs.pythond]\nname = \"garbled\"\n",
    );
    let agent = home.start();
    agent.expect_log_line(&["broken.conf:5", "intreval"]);
    agent.expect_log_line(&["garbled.conf:1"]);
    agent.expect_points("the good input's points", |points| points.len() >= 2);
    assert!(
        agent.log_lines(&["worker ready", "broken"]).is_empty(),
        "the broken input was started anyway:\n{}",
        agent.stderr()
    );
}

#[test]
fn config_check_reports_every_problem_of_a_file() {
    // Two problems in one table and one in another: all three are reported.
    let home = home_with(
        "[[inputs.pythond]]\nname = \"a\"\ndirs = [\"good\"]\ninterval = \"5 parsecs\"\n\n\
         [[inputs.pythond]]\nname = \"b\"\ncmd = \"python3\"\ndirs = [\"good\"]\ntimeout = 0\n",
    );
    let stderr = assert_config_error(&home, &["bad.conf:1", "`cmd`"]);
    assert!(
        stderr
            .lines()
            .any(|l| l.contains("bad.conf:4") && l.contains("interval")),
        "the bad interval is not reported next to the missing cmd:\n{stderr}"
    );
    assert!(
        stderr
            .lines()
            .any(|l| l.contains("bad.conf:10") && l.contains("timeout")),
        "the second table's problem is not reported:\n{stderr}"
    );
    assert!(stderr.contains("3 problem(s) found"), "{stderr}");
}

#[test]
fn config_check_reports_every_problem_of_the_main_file() {
    let home = Home::new();
    home.write(
        "pythond.toml",
        "[agent]\nshutdown_timeout = \"soon\"\nlog_formt = \"json\"\n\n[http]\nlisten = \"127.0.0.1:0\"\nmax_body = -1\n",
    );
    let (code, _, stderr) = home.config_check();
    assert_ne!(code, 0, "{stderr}");
    for needle in ["pythond.toml:2", "pythond.toml:3", "pythond.toml:7"] {
        assert!(stderr.contains(needle), "{needle} not reported:\n{stderr}");
    }
}

/// DataKit's own sample `[git_repos]` block (datakit.conf), written literally.
const DATAKIT_GIT_REPOS_SAMPLE: &str = r#"
[git_repos]
  pull_interval = "1m"

  [[git_repos.repo]]
    enable = false
    branch = "master"
    url = ""
    ssh_private_key_path = ""
    ssh_private_key_password = ""
"#;

#[test]
fn datakits_sample_git_repos_block_is_accepted_and_run_starts() {
    let home = Home::new();
    home.write("python.d/good/good.py", GOOD_PLUGIN);
    home.input("fine", &["good"], "");
    let main =
        format!("[[sinks]]\ntype = \"file\"\npath = \"points.ndjson\"\n{DATAKIT_GIT_REPOS_SAMPLE}");
    home.write("pythond.toml", &main);
    let (code, stdout, stderr) = home.config_check();
    assert_eq!(code, 0, "stdout:\n{stdout}\nstderr:\n{stderr}");
    let agent = home.start();
    agent.expect_points("the input's points", |points| {
        points.iter().any(|p| p["measurement"] == "good")
    });
}

#[test]
fn an_enabled_git_repo_still_needs_a_url() {
    let home = Home::new();
    home.write(
        "pythond.toml",
        "[[git_repos.repo]]\nenable = true\nurl = \"\"\nssh_private_key_path = \"\"\n",
    );
    let (code, _, stderr) = home.config_check();
    assert_ne!(code, 0, "{stderr}");
    assert!(
        stderr
            .lines()
            .any(|l| l.contains("pythond.toml:3") && l.contains("`url`")),
        "{stderr}"
    );
}

#[test]
fn config_check_lists_inputs_with_origins_including_git_checkouts() {
    let home = Home::new();
    home.write("python.d/good/good.py", GOOD_PLUGIN);
    home.input("local", &["good"], "");
    // A repository already pulled into data_dir/gitrepos/<name>: its inputs count.
    home.write(
        "pythond.toml",
        "[agent]\ndata_dir = \"data\"\n\n[[git_repos.repo]]\nurl = \"https://git.example/team/collectors.git\"\n",
    );
    home.write(
        "data/gitrepos/collectors/conf.d/remote.conf",
        "[[inputs.pythond]]\nname = \"remote\"\ncmd = \"python3\"\ndirs = [\"mine\"]\n",
    );
    home.write(
        "data/gitrepos/collectors/python.d/mine/mine.py",
        GOOD_PLUGIN,
    );
    let (code, stdout, stderr) = home.config_check();
    assert_eq!(code, 0, "stdout:\n{stdout}\nstderr:\n{stderr}");
    let line = |name: &str| {
        stdout
            .lines()
            .find(|l| l.starts_with(&format!("input {name:?} from ")))
            .unwrap_or_else(|| panic!("input {name} not listed:\n{stdout}"))
            .to_string()
    };
    assert!(
        line("remote").contains("gitrepos/collectors/conf.d/remote.conf:1"),
        "{stdout}"
    );
    assert!(line("local").contains("conf.d/local.conf:1"), "{stdout}");
    assert!(stdout.contains("2 input(s)"), "{stdout}");
}

#[test]
fn config_check_refuses_what_run_would_refuse() {
    use std::os::unix::fs::PermissionsExt;
    let home = Home::new();
    home.write("python.d/good/good.py", GOOD_PLUGIN);
    // An interpreter that exists but cannot be executed.
    let fake = home.write("bin/python-not-executable", "#!/bin/sh\nexit 0\n");
    std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    home.input_with_cmd("noexec", &fake.display().to_string(), &["good"], "");
    // A data_dir that cannot be created: its parent is a file (true even for root).
    home.write("occupied", "not a directory\n");
    home.write(
        "pythond.toml",
        "[agent]\ndata_dir = \"occupied/data\"\n\n[[sinks]]\ntype = \"stdout\"\n",
    );
    let (code, _, stderr) = home.config_check();
    assert_ne!(code, 0, "{stderr}");
    assert!(
        stderr
            .lines()
            .any(|l| l.contains("noexec.conf:1") && l.contains("not executable")),
        "{stderr}"
    );
    assert!(
        stderr
            .lines()
            .any(|l| l.contains("data_dir") && l.contains("occupied/data")),
        "{stderr}"
    );
}
