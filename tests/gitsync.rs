//! Git-synced script repositories with real git: a `file://` repository and one
//! served by `git daemon` on loopback. Pushed collectors and inputs start without an
//! agent restart while other inputs keep their worker; bad pushes are contained; a
//! force-push, a removed input, an unreachable remote and a damaged checkout are
//! handled; credentials never reach the log.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::git::{Daemon, Remote, Sshd};
use common::versioned::{next_pid, reporter, wait_version};
use common::{alive, wait_until, Agent, Home, DEADLINE};

/// An input conf for a repository: `dirs` relative (resolved in the repo's python.d).
fn repo_input(home: &Home, name: &str, dir: &str) -> String {
    format!(
        "[[inputs.pythond]]\nname = {name:?}\ncmd = \"python3\"\ndirs = [{dir:?}]\nenvs = [\"PYTHOND_TEST_MARKER={}\"]\n",
        home.marker
    )
}

/// Points `pythond.toml` at `url` (branch `main`), pulling every second.
fn use_repo(home: &Home, url: &str) {
    use_repo_with(home, url, "branch = \"main\"\n");
}

/// Points `pythond.toml` at `url` with `extra` keys in `[[git_repos.repo]]`.
fn use_repo_with(home: &Home, url: &str, extra: &str) {
    home.write(
        "pythond.toml",
        &format!(
            "[[sinks]]\ntype = \"file\"\npath = \"points.ndjson\"\n\n[git_repos]\npull_interval = \"1s\"\n\n[[git_repos.repo]]\nurl = {url:?}\n{extra}"
        ),
    );
}

/// A loopback HTTP server that answers every request with `status_line` (and asks
/// for Basic credentials), or, with `None`, accepts connections and never answers.
/// Returns its port and the requests it received.
fn fake_http(status_line: Option<&'static str>) -> (u16, Arc<Mutex<Vec<String>>>) {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let requests = Arc::new(Mutex::new(Vec::new()));
    let seen = requests.clone();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            match status_line {
                Some(status) => {
                    let mut buf = [0u8; 4096];
                    let n = stream.read(&mut buf).unwrap_or(0);
                    if let Ok(mut seen) = seen.lock() {
                        seen.push(String::from_utf8_lossy(&buf[..n]).into_owned());
                    }
                    let _ = write!(
                        stream,
                        "HTTP/1.1 {status}\r\nWWW-Authenticate: Basic realm=\"git\"\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                    );
                }
                None => held.push(stream),
            }
        }
    });
    (port, requests)
}

#[test]
fn a_pushed_collector_runs_without_a_restart_and_others_keep_their_worker() {
    let home = Home::new();
    let remote = Remote::new(home.path(), "scripts");
    remote.write("python.d/first/p.py", &reporter("first", 1));
    remote.write("conf.d/first.conf", &repo_input(&home, "first", "first"));
    remote.commit_and_push("first collector");
    home.write("python.d/local/p.py", &reporter("local", 1));
    home.input("local", &["local"], "");
    // No branch: the remote's default branch is followed.
    use_repo_with(&home, &remote.file_url(), "");

    let mut agent = home.start();
    let first = wait_version(&agent, "first", 1);
    let local = wait_version(&agent, "local", 1);
    assert!(home
        .path()
        .join("data/gitrepos/scripts/conf.d/first.conf")
        .exists());

    remote.write("python.d/second/p.py", &reporter("second", 1));
    remote.write("conf.d/second.conf", &repo_input(&home, "second", "second"));
    remote.commit_and_push("second collector");
    wait_version(&agent, "second", 1);
    assert_eq!(
        next_pid(&agent, "first"),
        first,
        "unchanged repo input kept"
    );
    assert_eq!(next_pid(&agent, "local"), local, "local input kept");

    // A changed collector restarts its input only.
    remote.write("python.d/first/p.py", &reporter("first", 2));
    remote.commit_and_push("first v2");
    let first2 = wait_version(&agent, "first", 2);
    assert_ne!(first2, first);
    assert_eq!(next_pid(&agent, "local"), local);

    // A removed input is stopped.
    let second = next_pid(&agent, "second");
    remote.remove("conf.d/second.conf");
    remote.commit_and_push("drop second");
    assert!(
        wait_until(DEADLINE, || !alive(second as i32)),
        "removed input's worker stopped; log:\n{}",
        agent.stderr()
    );
    assert_eq!(next_pid(&agent, "first"), first2);
    assert!(agent.stop().success());
}

#[test]
fn over_git_daemon_bad_pushes_are_contained_and_force_pushes_followed() {
    let home = Home::new();
    let base = home.path().join("served");
    let remote = Remote::new(&base, "collectors");
    remote.write("python.d/svc/p.py", &reporter("svc", 1));
    remote.write("conf.d/svc.conf", &repo_input(&home, "svc", "svc"));
    let good = remote.commit_and_push("svc");
    let daemon = Daemon::start(&base);
    use_repo(&home, &daemon.url("collectors"));

    let mut agent = home.start();
    let svc = wait_version(&agent, "svc", 1);

    // A broken config: the running input stays, the error names file and line.
    remote.write(
        "conf.d/svc.conf",
        "[[inputs.pythond]]\nname = \"svc\"\ncmd = \n",
    );
    remote.write("python.d/svc/p.py", &reporter("svc", 2));
    let broken = remote.commit_and_push("broken");
    let line = agent.expect_log_line(&["svc.conf:3", "TOML syntax error"]);
    // `pythond status` shows the pulled commit and the configuration error.
    let mut status = String::new();
    let shown = wait_until(Duration::from_secs(30), || {
        let mut command = common::pythond();
        command.args(["status", "--addr", &common::http::api_addr(&agent)]);
        status = common::run_to_end(command).1;
        status.contains(&broken[..12])
            && status
                .lines()
                .any(|l| l.starts_with("configuration errors") && l.contains("svc.conf:3"))
    });
    assert!(
        shown,
        "status does not show commit {broken} and the error:\n{status}"
    );
    assert!(
        line.contains("gitrepos/collectors/conf.d/svc.conf"),
        "{line}"
    );
    assert_eq!(
        next_pid(&agent, "svc"),
        svc,
        "the running input keeps running"
    );
    assert!(agent
        .points_of("svc")
        .iter()
        .all(|p| p["fields"]["version"] == 1));

    // A force-push that rewrites the broken commit away is followed.
    remote.write("conf.d/svc.conf", &repo_input(&home, "svc", "svc"));
    remote.write("python.d/svc/p.py", &reporter("svc", 3));
    remote.force_push_from(&good, "svc v3, history rewritten");
    let svc3 = wait_version(&agent, "svc", 3);
    assert_ne!(svc3, svc);
    assert!(agent.stop().success());
}

#[test]
fn an_unreachable_remote_and_a_damaged_checkout_keep_the_last_good_one_running() {
    let home = Home::new();
    let base = home.path().join("served");
    let remote = Remote::new(&base, "ops");
    remote.write("python.d/ops/p.py", &reporter("ops", 1));
    remote.write("conf.d/ops.conf", &repo_input(&home, "ops", "ops"));
    remote.commit_and_push("ops");
    let mut daemon = Daemon::start(&base);
    use_repo(&home, &daemon.url("ops"));

    let mut agent = home.start();
    let ops = wait_version(&agent, "ops", 1);
    let checkout = home.path().join("data/gitrepos/ops");

    // A local edit in the checkout is reset by the next pull.
    let plugin = checkout.join("python.d/ops/p.py");
    std::fs::write(&plugin, "broken on purpose").expect("edit checkout");
    assert!(
        wait_until(DEADLINE, || std::fs::read_to_string(&plugin)
            .map(|t| t.contains("Reporter"))
            .unwrap_or(false)),
        "checkout reset; log:\n{}",
        agent.stderr()
    );

    // The remote goes away: reported, the input keeps running.
    daemon.stop();
    agent.expect_log_line(&["git pull failed", "ops", "last good checkout keeps running"]);
    assert_eq!(next_pid(&agent, "ops"), ops);

    // A damaged checkout (no usable .git) is cloned again once the remote is back.
    std::fs::remove_dir_all(checkout.join(".git/refs")).expect("damage checkout");
    std::fs::write(checkout.join(".git/HEAD"), "garbage").expect("damage checkout");
    let daemon = Daemon::start_on(&base, daemon.port);
    remote.write("python.d/ops/p.py", &reporter("ops", 2));
    remote.commit_and_push("ops v2");
    agent.expect_log_line(&["checkout unusable", "cloning again"]);
    wait_version(&agent, "ops", 2);
    drop(daemon);
    assert!(agent.stop().success());
}

#[test]
fn rejected_credentials_are_reported_without_showing_them() {
    let home = Home::new();
    let (port, _) = fake_http(Some("401 Unauthorized"));
    use_repo_with(
        &home,
        &format!("http://alice:hunter2secret@127.0.0.1:{port}/scripts.git"),
        "branch = \"main\"\n",
    );
    home.write("python.d/local/p.py", &reporter("local", 1));
    home.input("local", &["local"], "");
    let mut agent = home.start();
    let line = agent.expect_log_line(&["git pull failed", "alice:***@127.0.0.1"]);
    assert!(line.to_lowercase().contains("auth"), "says why: {line}");
    wait_version(&agent, "local", 1);
    assert!(agent.stop().success());
    let log = agent.stderr();
    assert!(!log.contains("hunter2secret"), "secret leaked:\n{log}");
}

#[test]
fn a_token_from_the_environment_is_used_and_never_shown() {
    let home = Home::new();
    let (port, requests) = fake_http(Some("401 Unauthorized"));
    use_repo_with(
        &home,
        &format!("http://127.0.0.1:{port}/scripts.git"),
        "token_env = \"PYTHOND_TEST_GIT_TOKEN\"\n",
    );
    let mut command = common::pythond();
    command
        .arg("run")
        .arg("--config")
        .arg(home.path().join("pythond.toml"))
        .current_dir(home.path())
        .env("PYTHOND_TEST_GIT_TOKEN", "tok3n-from-env");
    let mut agent = Agent::spawn(command, home.path().join("points.ndjson"), &home.marker);
    agent.expect_log_line(&["git pull failed", "127.0.0.1"]);
    // "git:tok3n-from-env", as HTTP Basic credentials.
    let sent = requests.lock().map(|r| r.join("\n")).unwrap_or_default();
    assert!(
        sent.contains("Basic Z2l0OnRvazNuLWZyb20tZW52"),
        "the token was offered: {sent}"
    );
    assert!(agent.stop().success());
    let log = agent.stderr();
    assert!(!log.contains("tok3n-from-env"), "token leaked:\n{log}");
    assert!(
        !log.contains("token_env names an unset"),
        "token not found:\n{log}"
    );
}

#[test]
fn a_pull_that_hangs_times_out_and_is_reported() {
    let home = Home::new();
    let (port, _) = fake_http(None);
    use_repo(&home, &format!("http://127.0.0.1:{port}/slow.git"));
    home.write("python.d/local/p.py", &reporter("local", 1));
    home.input("local", &["local"], "");
    let mut agent = home.start();
    agent.expect_log_line(&["git pull failed", "timed out"]);
    wait_version(&agent, "local", 1);
    assert!(agent.stop().success());
}

#[test]
fn several_repos_run_side_by_side_and_the_first_declaration_wins() {
    let home = Home::new();
    let one = Remote::new(home.path(), "one");
    one.write("python.d/shared/p.py", &reporter("from_one", 1));
    one.write("conf.d/shared.conf", &repo_input(&home, "shared", "shared"));
    one.commit_and_push("one");
    let two = Remote::new(home.path(), "two");
    two.write("python.d/shared/p.py", &reporter("from_two", 1));
    two.write("python.d/own/p.py", &reporter("own", 1));
    // Same name as in `one`: ignored, with an error naming both places.
    two.write("conf.d/shared.conf", &repo_input(&home, "shared", "shared"));
    two.write("conf.d/own.conf", &repo_input(&home, "own", "own"));
    two.commit_and_push("two");
    home.write(
        "pythond.toml",
        &format!(
            "[[sinks]]\ntype = \"file\"\npath = \"points.ndjson\"\n\n[git_repos]\npull_interval = \"1s\"\n\n[[git_repos.repo]]\nurl = {:?}\n\n[[git_repos.repo]]\nurl = {:?}\n",
            one.file_url(),
            two.file_url()
        ),
    );
    let mut agent = home.start();
    wait_version(&agent, "from_one", 1);
    wait_version(&agent, "own", 1);
    agent.expect_log_line(&["two/conf.d/shared.conf", "already declared"]);
    assert!(
        agent.points_of("from_two").is_empty(),
        "the first repo's input wins"
    );
    assert!(agent.stop().success());
}

/// Starts `pythond run` on `home` with `HOME` set to `user_home` (for known_hosts).
fn start_with_home(home: &Home, user_home: &std::path::Path) -> Agent {
    let mut command = common::pythond();
    command
        .arg("run")
        .arg("--config")
        .arg(home.path().join("pythond.toml"))
        .current_dir(home.path())
        .env("HOME", user_home);
    Agent::spawn(command, home.path().join("points.ndjson"), &home.marker)
}

#[test]
fn ssh_with_an_encrypted_key_works_and_a_wrong_passphrase_is_reported() {
    let home = Home::new();
    let remote = Remote::new(home.path(), "viassh");
    remote.write("python.d/viassh/p.py", &reporter("viassh", 1));
    remote.write("conf.d/viassh.conf", &repo_input(&home, "viassh", "viassh"));
    remote.commit_and_push("over ssh");
    let sshd = Sshd::start(&home.path().join("sshd"));
    let key = sshd.client_key.display().to_string();

    use_repo_with(
        &home,
        &sshd.url(&remote.bare),
        &format!(
            "branch = \"main\"\nssh_private_key_path = {key:?}\nssh_private_key_password = \"wrong-passphrase-77\"\n"
        ),
    );
    let mut agent = start_with_home(&home, &sshd.home);
    agent.expect_log_line(&["git pull failed", "ssh://"]);
    assert!(agent.stop().success());
    assert!(
        !agent.stderr().contains("wrong-passphrase-77"),
        "{}",
        agent.stderr()
    );

    use_repo_with(
        &home,
        &sshd.url(&remote.bare),
        &format!(
            "branch = \"main\"\nssh_private_key_path = {key:?}\nssh_private_key_password = {:?}\n",
            Sshd::PASSPHRASE
        ),
    );
    let mut agent = start_with_home(&home, &sshd.home);
    wait_version(&agent, "viassh", 1);
    assert!(agent.stop().success());
    assert!(
        !agent.stderr().contains(Sshd::PASSPHRASE),
        "{}",
        agent.stderr()
    );
}
