//! SIGHUP re-reads pythond.toml, observed through `pythond run`: `[global_tags]`
//! change the points from then on without restarting a worker; a changed sink
//! restarts alone while an unchanged one keeps its open file; `[http]` moves the API
//! to its new token; `[git_repos]` starts the inputs of an added repository;
//! `[agent] watch = false` holds conf.d edits back until SIGHUP; and a broken
//! pythond.toml changes nothing and is reported in status and /metrics.

mod common;

use common::git::Remote;
use common::http::{api_base, get};
use common::versioned::{next_pid, reporter, wait_version};
use common::{wait_until, Home, DEADLINE};

/// The base URL of the API's most recent `HTTP API listening on` log line.
fn latest_api_base(agent: &common::Agent, skip: usize) -> Option<String> {
    let lines = agent.log_lines(&["HTTP API listening on http://"]);
    let line = lines.get(skip)?;
    let start = line.find("http://")?;
    line[start..]
        .split(|c: char| c.is_whitespace() || c == '\u{1b}' || c == '"')
        .next()
        .map(str::to_string)
}

#[test]
fn global_tags_apply_to_new_points_without_restarting_anything() {
    let home = Home::new();
    home.write("python.d/tagged/p.py", &reporter("tagged", 1));
    home.input("tagged", &["tagged"], "");
    let mut agent = home.start();
    let pid = wait_version(&agent, "tagged", 1);
    assert!(agent.points_of("tagged")[0]["tags"].get("region").is_none());

    home.write(
        "pythond.toml",
        "[global_tags]\nregion = \"eu\"\n\n[[sinks]]\ntype = \"file\"\npath = \"points.ndjson\"\n",
    );
    agent.signal(libc::SIGHUP);
    agent.expect_points("a point tagged region=eu after SIGHUP", |points| {
        points
            .iter()
            .any(|p| p["measurement"] == "tagged" && p["tags"]["region"] == "eu")
    });
    assert_eq!(
        next_pid(&agent, "tagged"),
        pid,
        "a global tag change restarts no worker"
    );
    let last = agent.points_of("tagged").pop().expect("a point");
    assert_eq!(last["tags"]["region"], "eu");
    assert_eq!(last["tags"]["host"], common::hostname(), "host stays");
    assert!(agent.stop().success());
}

#[test]
fn a_changed_sink_restarts_alone_and_an_unchanged_one_keeps_its_file() {
    let home = Home::new();
    home.write("python.d/flow/p.py", &reporter("flow", 1));
    home.input("flow", &["flow"], "");
    let sinks = |second: &str| {
        format!(
            "[[sinks]]\ntype = \"file\"\npath = \"points.ndjson\"\n\n[[sinks]]\ntype = \"file\"\npath = \"{second}\"\n"
        )
    };
    home.write("pythond.toml", &sinks("first.ndjson"));
    let mut agent = home.start();
    wait_version(&agent, "flow", 1);
    let second_has_points = |file: &str| !common::read_points(&home.path().join(file)).is_empty();
    assert!(wait_until(DEADLINE, || second_has_points("first.ndjson")));

    // Move the unchanged sink's file away: a sink that is kept writes on into the
    // file it has open; one that was restarted would create points.ndjson anew.
    std::fs::rename(
        home.path().join("points.ndjson"),
        home.path().join("moved.ndjson"),
    )
    .expect("rename");
    home.write("pythond.toml", &sinks("second.ndjson"));
    agent.signal(libc::SIGHUP);
    assert!(
        wait_until(DEADLINE, || second_has_points("second.ndjson")),
        "the changed sink writes to its new path; log:\n{}",
        agent.stderr()
    );
    let moved_before = common::read_points(&home.path().join("moved.ndjson")).len();
    assert!(
        wait_until(DEADLINE, || {
            common::read_points(&home.path().join("moved.ndjson")).len() > moved_before
        }),
        "the unchanged sink keeps writing to the file it had open"
    );
    assert!(
        !home.path().join("points.ndjson").exists(),
        "the unchanged sink was not reopened"
    );
    let first_len = common::read_points(&home.path().join("first.ndjson")).len();
    let second_len = common::read_points(&home.path().join("second.ndjson")).len();
    assert!(wait_until(DEADLINE, || {
        common::read_points(&home.path().join("second.ndjson")).len() > second_len + 1
    }));
    assert_eq!(
        common::read_points(&home.path().join("first.ndjson")).len(),
        first_len,
        "the replaced sink's old file gets nothing more"
    );
    assert!(agent.stop().success());
}

#[test]
fn a_new_http_token_applies_on_sighup() {
    let home = Home::new();
    let mut agent = home.start();
    let before = api_base(&agent);
    assert_eq!(get(&format!("{before}/v1/status"), &[]).status, 200);

    home.write(
        "pythond.toml",
        "[http]\nlisten = \"127.0.0.1:0\"\ntoken = \"n3w-t0ken\"\n\n[[sinks]]\ntype = \"file\"\npath = \"points.ndjson\"\n",
    );
    agent.signal(libc::SIGHUP);
    let mut after = None;
    assert!(
        wait_until(DEADLINE, || {
            after = latest_api_base(&agent, 1);
            after.is_some()
        }),
        "the API restarts; log:\n{}",
        agent.stderr()
    );
    let after = after.unwrap_or_default();
    assert_eq!(get(&format!("{after}/v1/status"), &[]).status, 401);
    let auth = [("Authorization", "Bearer n3w-t0ken")];
    assert_eq!(get(&format!("{after}/v1/status"), &auth).status, 200);
    assert!(agent.stop().success());
}

#[test]
fn watch_false_holds_edits_back_until_sighup() {
    let home = Home::new();
    home.write(
        "pythond.toml",
        "[agent]\nwatch = false\n\n[[sinks]]\ntype = \"file\"\npath = \"points.ndjson\"\n",
    );
    home.write("python.d/held/p.py", &reporter("held", 1));
    home.input("held", &["held"], "");
    let mut agent = home.start();
    let pid = wait_version(&agent, "held", 1);

    home.write("python.d/held/p.py", &reporter("held", 2));
    // Several more runs of the old version prove the edit was not picked up (the
    // watcher would have restarted the input about a second after the write).
    for _ in 0..4 {
        assert_eq!(next_pid(&agent, "held"), pid, "edit applied without SIGHUP");
    }
    assert!(agent
        .points_of("held")
        .iter()
        .all(|p| p["fields"]["version"] == 1));
    agent.signal(libc::SIGHUP);
    assert_ne!(wait_version(&agent, "held", 2), pid);
    assert!(agent.stop().success());
}

#[test]
fn a_broken_pythond_toml_changes_nothing_and_is_reported() {
    let home = Home::new();
    home.write("python.d/steady/p.py", &reporter("steady", 1));
    home.input("steady", &["steady"], "");
    let mut agent = home.start();
    let pid = wait_version(&agent, "steady", 1);
    let base = api_base(&agent);

    home.write(
        "pythond.toml",
        "[global_tags]\nregion = \"eu\"\n[[sinks]]\ntype = \"nope\"\n",
    );
    agent.signal(libc::SIGHUP);
    let mut status = serde_json::Value::Null;
    assert!(
        wait_until(DEADLINE, || {
            status = get(&format!("{base}/v1/status"), &[]).json();
            status["last_reload_error"]
                .as_str()
                .is_some_and(|e| e.contains("pythond.toml"))
        }),
        "status names the broken pythond.toml: {status:#}"
    );
    let metrics = get(&format!("{base}/metrics"), &[]).body;
    assert!(
        metrics.contains("\npythond_config_last_reload_successful 0\n"),
        "{metrics}"
    );
    assert_eq!(next_pid(&agent, "steady"), pid, "the input runs on");
    assert!(
        agent.points_of("steady").last().expect("point")["tags"]
            .get("region")
            .is_none(),
        "nothing of the broken file applied"
    );
    assert!(agent.stop().success());
}

#[test]
fn an_added_git_repo_starts_its_inputs_on_sighup() {
    let home = Home::new();
    let remote = Remote::new(home.path(), "collectors");
    remote.write("python.d/fromgit/p.py", &reporter("fromgit", 1));
    remote.write(
        "conf.d/fromgit.conf",
        "[[inputs.pythond]]\nname = \"fromgit\"\ncmd = \"python3\"\ndirs = [\"fromgit\"]\n",
    );
    remote.commit_and_push("collector");
    let mut agent = home.start();
    common::http::api_base(&agent);
    assert!(agent.points_of("fromgit").is_empty());

    home.write(
        "pythond.toml",
        &format!(
            "[[sinks]]\ntype = \"file\"\npath = \"points.ndjson\"\n\n[git_repos]\npull_interval = \"1s\"\n\n[[git_repos.repo]]\nurl = {:?}\n",
            remote.file_url()
        ),
    );
    agent.signal(libc::SIGHUP);
    wait_version(&agent, "fromgit", 1);
    assert!(agent.stop().success());
}

#[test]
fn a_network_sink_moved_to_another_backend_delivers_what_it_had_queued() {
    let home = Home::new();
    let scratch = tempfile::tempdir().expect("tempdir");
    let vm = common::backends::VictoriaMetrics::start(scratch.path());
    let nobody = common::backends::free_port();
    let config = |url: &str| {
        format!(
            "[[sinks]]\ntype = \"file\"\npath = \"points.ndjson\"\n\n[[sinks]]\ntype = \"influxdb\"\nname = \"vm\"\nurl = \"{url}\"\ndb = \"pythond\"\nflush_interval = \"100ms\"\nretry_max_interval = \"1s\"\n"
        )
    };
    home.write(
        "pythond.toml",
        &config(&format!("http://127.0.0.1:{nobody}")),
    );
    home.write("python.d/queued/p.py", &reporter("queued", 1));
    home.input("queued", &["queued"], "");
    let mut agent = home.start();
    let base = api_base(&agent);
    assert!(
        wait_until(DEADLINE, || {
            get(&format!("{base}/v1/status"), &[]).json()["sinks"][0]["queued_points"]
                .as_u64()
                .unwrap_or(0)
                >= 3
        }),
        "points queue while the backend is unreachable"
    );
    // Every point accepted so far waits in the sink's disk buffer.
    let queued_ms: Vec<i64> = agent
        .points_of("queued")
        .iter()
        .filter_map(|p| p["time"].as_i64())
        .map(|ns| ns / 1_000_000)
        .collect();
    assert!(queued_ms.len() >= 3);

    home.write("pythond.toml", &config(&vm.url()));
    agent.signal(libc::SIGHUP);
    let mut delivered = Vec::new();
    assert!(
        wait_until(DEADLINE, || {
            delivered = vm
                .export("{__name__=\"queued_version\"}")
                .iter()
                .map(|s| s.timestamp_ms)
                .collect();
            queued_ms.iter().all(|t| delivered.contains(t))
        }),
        "the points queued before the reload reach the new backend: queued {queued_ms:?}, delivered {delivered:?}; log:\n{}",
        agent.stderr()
    );
    assert!(agent.stop().success());
}

#[test]
fn a_setting_that_needs_a_restart_is_named_and_keeps_its_old_value() {
    let home = Home::new();
    home.write("python.d/kept/p.py", &reporter("kept", 1));
    home.input("kept", &["kept"], "");
    let mut agent = home.start();
    let pid = wait_version(&agent, "kept", 1);
    let base = api_base(&agent);

    home.write(
        "pythond.toml",
        "[agent]\ndata_dir = \"elsewhere\"\nlog_format = \"json\"\n\n[global_tags]\nregion = \"eu\"\n\n[[sinks]]\ntype = \"file\"\npath = \"points.ndjson\"\n",
    );
    agent.signal(libc::SIGHUP);
    agent.expect_log_line(&["[agent] data_dir", "only when pythond restarts"]);
    agent.expect_log_line(&["[agent] log_format", "only when pythond restarts"]);
    // What can change did: the tag; what cannot kept its old value: logs stay text,
    // and nothing was created under the new data_dir.
    agent.expect_points("a point tagged region=eu", |points| {
        points
            .iter()
            .any(|p| p["measurement"] == "kept" && p["tags"]["region"] == "eu")
    });
    assert_eq!(next_pid(&agent, "kept"), pid);
    assert!(!home.path().join("elsewhere").exists());
    assert!(
        !agent
            .stderr()
            .lines()
            .any(|l| l.trim_start().starts_with('{')),
        "log lines stay text until a restart"
    );
    let status = get(&format!("{base}/v1/status"), &[]).json();
    assert!(status["last_reload_error"].is_null(), "{status:#}");
    assert!(agent.stop().success());
}

#[test]
fn the_api_moves_to_a_new_listen_and_stays_put_when_it_cannot() {
    let home = Home::new();
    let config = |port: u16| {
        format!(
            "[http]\nlisten = \"127.0.0.1:{port}\"\n\n[[sinks]]\ntype = \"file\"\npath = \"points.ndjson\"\n"
        )
    };
    let first = common::backends::free_port();
    home.write("pythond.toml", &config(first));
    let mut agent = home.start();
    api_base(&agent);
    let old = format!("http://127.0.0.1:{first}");
    assert_eq!(get(&format!("{old}/v1/status"), &[]).status, 200);

    // A port someone else holds: the API stays where it is, and the reload says why.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let busy = taken.local_addr().expect("addr").port();
    home.write("pythond.toml", &config(busy));
    agent.signal(libc::SIGHUP);
    let mut status = serde_json::Value::Null;
    assert!(
        wait_until(DEADLINE, || {
            status = get(&format!("{old}/v1/status"), &[]).json();
            status["last_reload_error"]
                .as_str()
                .is_some_and(|e| e.contains("[http]"))
        }),
        "the old API answers and reports the failed move: {status:#}"
    );

    let second = common::backends::free_port();
    home.write("pythond.toml", &config(second));
    agent.signal(libc::SIGHUP);
    let new = format!("http://127.0.0.1:{second}");
    assert!(
        wait_until(DEADLINE, || std::net::TcpStream::connect((
            "127.0.0.1",
            second
        ))
        .is_ok()),
        "the API moves; log:\n{}",
        agent.stderr()
    );
    assert_eq!(get(&format!("{new}/v1/status"), &[]).status, 200);
    assert!(
        wait_until(DEADLINE, || std::net::TcpStream::connect((
            "127.0.0.1",
            first
        ))
        .is_err()),
        "the old address is let go"
    );
    drop(taken);
    assert!(agent.stop().success());
}
