//! The README's first command: `pythond run` with no configuration, in a directory
//! laid out like the repository (conf.d/ and python.d/), runs the shipped demo and
//! prints its points on stdout as line protocol; SIGTERM stops it cleanly.

mod common;

use std::path::Path;

use common::{hostname, now_ns, pythond, wait_until, Agent, DEADLINE};

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read_dir") {
        let entry = entry.expect("entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("file type").is_dir() {
            if entry.file_name() != "__pycache__" {
                copy_dir(&entry.path(), &target);
            }
        } else {
            std::fs::copy(entry.path(), &target).expect("copy");
        }
    }
}

#[test]
fn run_without_config_runs_the_shipped_demo_on_stdout() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = tempfile::Builder::new()
        .prefix("pythond-demo-")
        .tempdir()
        .expect("tempdir");
    copy_dir(&repo.join("conf.d"), &dir.path().join("conf.d"));
    copy_dir(&repo.join("python.d"), &dir.path().join("python.d"));
    let marker = dir.path().display().to_string();

    let mut command = pythond();
    command
        .arg("run")
        .current_dir(dir.path())
        // Inherited by the workers, so the test can find them.
        .env("PYTHOND_TEST_MARKER", &marker);
    let before = now_ns();
    let mut agent = Agent::spawn(command, dir.path().join("no-file-sink"), &marker);

    let lp_lines = |agent: &Agent| -> Vec<String> {
        agent
            .stdout()
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(str::to_string)
            .collect()
    };
    assert!(
        wait_until(DEADLINE, || lp_lines(&agent).len() >= 2),
        "the demo printed no points; stdout:\n{}\nlog:\n{}",
        agent.stdout(),
        agent.stderr()
    );
    let host = format!(
        "host={}",
        hostname().replace(' ', "\\ ").replace(',', "\\,")
    );
    for line in lp_lines(&agent) {
        // measurement[,tags] fields time — the time is now, in nanoseconds.
        let time: i64 = line
            .rsplit(' ')
            .next()
            .and_then(|t| t.parse().ok())
            .unwrap_or_else(|| panic!("not line protocol: {line:?}"));
        assert!(
            time >= before - 1_000_000_000 && time <= now_ns(),
            "time {time} is not now: {line}"
        );
        assert!(line.contains(&host), "no host tag in {line:?}");
        assert!(line.split(' ').count() >= 3, "not line protocol: {line:?}");
    }
    assert!(!agent.worker_processes().is_empty(), "no demo worker found");

    let status = agent.stop();
    assert_eq!(status.code(), Some(0), "log:\n{}", agent.stderr());
    assert!(
        wait_until(std::time::Duration::from_secs(5), || agent
            .worker_processes()
            .is_empty()),
        "processes left after shutdown: {:?}",
        agent.worker_processes()
    );
    assert!(
        dir.path().join("data").is_dir(),
        "the default data dir is data/ under the working directory"
    );
}
