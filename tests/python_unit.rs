//! The Python unit tests of the shim and the worker runner (python/tests), run by the
//! same `cargo test` as everything else.

mod common;

use std::process::Command;
use std::time::Duration;

#[test]
fn python_unit_tests_pass() {
    let repo = env!("CARGO_MANIFEST_DIR");
    let mut command = Command::new("python3");
    command
        .args(["-m", "unittest", "discover", "-s", "python/tests", "-v"])
        .current_dir(repo)
        .env("PYTHONDONTWRITEBYTECODE", "1");
    // The suite starts real workers and waits on them with its own deadlines.
    let (code, stdout, stderr) = common::run_to_end_within(command, Duration::from_secs(600));
    let output = format!("{stdout}\n{stderr}");
    assert_eq!(code, 0, "python unit tests failed:\n{output}");
    // unittest reports "Ran N tests"; zero tests found is a broken suite, not a pass.
    let ran: u32 = output
        .lines()
        .find_map(|l| {
            l.strip_prefix("Ran ")?
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        })
        .unwrap_or(0);
    assert!(ran > 0, "no Python unit tests were found:\n{output}");
}
