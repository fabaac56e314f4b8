//! Hot reload of local configuration, observed through `pythond run`: SIGHUP and
//! edits under conf.d/python.d restart only the inputs whose config or files
//! changed (their worker gets a new pid), leave the others' workers alone (same pid),
//! start added inputs, stop removed ones, and keep everything running when a config
//! file no longer parses.

mod common;

use common::versioned::{last_pid, next_pid, reporter, wait_version};
use common::{alive, wait_until, Home, DEADLINE};

#[test]
fn sighup_restarts_only_what_changed_starts_added_and_stops_removed_inputs() {
    let home = Home::new();
    // Plugins outside python.d (absolute dirs): the file watcher does not see them,
    // so only SIGHUP can make the agent notice a change.
    let outside = home.path().join("outside");
    for (name, version) in [("keep", 1), ("change", 1), ("gone", 1)] {
        home.write(&format!("outside/{name}/p.py"), &reporter(name, version));
        let dir = outside.join(name).display().to_string();
        home.input(name, &[dir.as_str()], "");
    }
    let mut agent = home.start();
    let keep = wait_version(&agent, "keep", 1);
    let change = wait_version(&agent, "change", 1);
    let gone = wait_version(&agent, "gone", 1);

    // Only SIGHUP can reveal this change.
    home.write("outside/change/p.py", &reporter("change", 2));
    agent.signal(libc::SIGHUP);
    let changed = wait_version(&agent, "change", 2);
    assert_ne!(changed, change, "a changed input gets a new worker");
    assert_eq!(next_pid(&agent, "keep"), keep);
    assert_eq!(next_pid(&agent, "gone"), gone);

    home.write("outside/added/p.py", &reporter("added", 1));
    let added_dir = outside.join("added").display().to_string();
    home.input("added", &[added_dir.as_str()], "");
    std::fs::remove_file(home.path().join("conf.d/gone.conf")).expect("remove conf");
    agent.signal(libc::SIGHUP);
    wait_version(&agent, "added", 1);
    assert!(
        wait_until(DEADLINE, || !alive(gone as i32)),
        "the worker of a removed input is stopped"
    );
    assert_eq!(
        next_pid(&agent, "keep"),
        keep,
        "an unchanged input keeps its worker"
    );
    assert!(alive(keep as i32));
    // (Field values only: the log may be coloured between name and value.)
    agent.expect_log_line(&["configuration reloaded", "[\"change\"]"]);
    agent.expect_log_line(&["configuration reloaded", "[\"gone\"]"]);
    assert!(agent.stop().success());
}

#[test]
fn editing_a_local_plugin_restarts_its_input_without_a_signal() {
    let home = Home::new();
    home.write("python.d/edited/p.py", &reporter("edited", 1));
    home.write("python.d/steady/p.py", &reporter("steady", 1));
    home.input("edited", &["edited"], "");
    home.input("steady", &["steady"], "");
    let mut agent = home.start();
    let edited = wait_version(&agent, "edited", 1);
    let steady = wait_version(&agent, "steady", 1);

    home.write("python.d/edited/p.py", &reporter("edited", 2));
    let restarted = wait_version(&agent, "edited", 2);
    assert_ne!(restarted, edited);
    assert_eq!(next_pid(&agent, "steady"), steady);

    // A new conf file is picked up the same way.
    home.write("python.d/fresh/p.py", &reporter("fresh", 1));
    home.input("fresh", &["fresh"], "");
    wait_version(&agent, "fresh", 1);
    assert_eq!(next_pid(&agent, "steady"), steady);
    assert_eq!(next_pid(&agent, "edited"), restarted);
    assert!(agent.stop().success());
}

#[test]
fn a_config_that_no_longer_parses_leaves_the_running_inputs_alone() {
    let home = Home::new();
    home.write("python.d/a/p.py", &reporter("a", 1));
    home.write("python.d/b/p.py", &reporter("b", 1));
    home.input("a", &["a"], "");
    home.input("b", &["b"], "");
    let mut agent = home.start();
    let a = wait_version(&agent, "a", 1);
    let b = wait_version(&agent, "b", 1);

    home.write(
        "conf.d/a.conf",
        "[[inputs.pythond]]\nname = \"a\"\ncmd = \ndirs = [\"a\"]\n",
    );
    agent.signal(libc::SIGHUP);
    let line = agent.expect_log_line(&["a.conf:", "TOML syntax error"]);
    assert!(line.contains("a.conf:3"), "names file and line: {line}");
    agent.expect_log_line(&["configuration reloaded"]);
    assert_eq!(
        next_pid(&agent, "a"),
        a,
        "the broken file's input keeps running"
    );
    assert_eq!(next_pid(&agent, "b"), b, "the other input keeps running");

    // Fixed again with a change: the input restarts with the new settings.
    home.input("a", &["a"], "interval = \"1s\"");
    assert!(
        wait_until(DEADLINE, || last_pid(&agent, "a") != Some(a)),
        "the fixed input restarts; log:\n{}",
        agent.stderr()
    );
    assert_eq!(next_pid(&agent, "b"), b);
    assert!(agent.stop().success());
}

#[test]
fn cache_files_like_the_ones_workers_write_do_not_restart_anything() {
    let home = Home::new();
    home.write("python.d/lib/p.py", &reporter("cached", 1));
    home.input("cached", &["lib"], "");
    let agent = home.start();
    let pid = wait_version(&agent, "cached", 1);
    // What Python and editors leave next to plugins.
    home.write("python.d/lib/__pycache__/p.cpython-311.pyc", "x");
    home.write("python.d/lib/.p.py.swp", "x");
    home.write("python.d/lib/p.py~", "x");
    for _ in 0..3 {
        assert_eq!(next_pid(&agent, "cached"), pid);
    }
    assert!(
        agent.log_lines(&["reloading configuration"]).is_empty(),
        "{}",
        agent.stderr()
    );
}
