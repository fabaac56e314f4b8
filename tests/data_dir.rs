//! The data directory is private to the agent's user whatever the umask: it holds
//! undelivered points, git checkouts and state dumps.

mod common;

use std::os::unix::fs::PermissionsExt;

use common::{wait_until, Home, DEADLINE};

#[test]
fn the_data_dir_the_agent_creates_is_0700_whatever_the_umask() {
    let home = Home::new();
    home.write(
        "python.d/tick/tick.py",
        &common::versioned::reporter("tick", 1),
    );
    home.input("tick", &["tick"], "");
    let mut agent = home.start();
    let data = home.path().join("data");
    // Up and listening for signals: the data directory was prepared before that.
    agent.expect_log("pythond running");
    assert!(
        wait_until(DEADLINE, || data.join("runtime").is_dir()),
        "no data directory; log:\n{}",
        agent.stderr()
    );
    let mode = |path: &std::path::Path| {
        std::fs::metadata(path).expect("stat").permissions().mode() & 0o777
    };
    assert_eq!(mode(&data), 0o700, "data_dir mode");
    // The directory exists before the agent handles signals; stop it once it runs.
    agent.expect_points("a point of tick", |_| !agent.points_of("tick").is_empty());
    assert!(agent.stop().success());
}
