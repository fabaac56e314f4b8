//! Command-line conventions: completions and a man page generated from the command
//! definitions, `--log-level`/`-v`/`-q`, `NO_COLOR` on a terminal, and a log that says
//! each thing once (a repeated traceback, an ignored input kind, an input that did not
//! start).

mod common;

use std::process::Command;

use common::{pythond, run_to_end, wait_until, Home, DEADLINE};

fn pythond_output(args: &[&str]) -> (i32, String, String) {
    let mut command = pythond();
    command.args(args);
    run_to_end(command)
}

#[test]
fn completions_are_generated_for_each_shell_and_name_the_subcommands() {
    for shell in ["bash", "zsh", "fish"] {
        let (code, stdout, stderr) = pythond_output(&["completions", shell]);
        assert_eq!(code, 0, "{shell}: {stderr}");
        for word in ["check", "status", "allow-empty", "log-level"] {
            assert!(stdout.contains(word), "{shell} completion lacks {word}");
        }
    }
    // The bash script is valid bash and registers a completion for pythond.
    let (_, script, _) = pythond_output(&["completions", "bash"]);
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("pythond.bash");
    std::fs::write(&file, script).expect("write");
    let mut bash = Command::new("bash");
    bash.arg("-c")
        .arg(format!("source {} && complete -p pythond", file.display()));
    let (code, stdout, stderr) = run_to_end(bash);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("pythond"), "{stdout}");
}

#[test]
fn the_man_page_is_roff_naming_every_subcommand() {
    let (code, page, stderr) = pythond_output(&["man"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        page.starts_with(".ie") || page.contains(".TH pythond"),
        "{page}"
    );
    for word in [
        "run",
        "check",
        "status",
        "config",
        "completions",
        "\\-\\-log\\-level",
    ] {
        assert!(page.contains(word), "man page lacks {word}:\n{page}");
    }
}

const GOOD: &str = r#"
from datakit_framework import DataKitFramework

class Good(DataKitFramework):
    name = "good"
    interval = 10

    def run(self):
        print("good: about to report")
        self.report({"M": [{"measurement": "good", "tags": {}, "fields": {"v": 1}}]})
"#;

#[test]
fn log_level_flags_choose_what_is_logged() {
    let home = Home::new();
    home.write("python.d/good/good.py", GOOD);
    // check's default shows what the collector printed; -q hides it (warn and up).
    let (code, _, stderr) = home.check(&["python.d/good"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains("good: about to report"), "{stderr}");
    let (code, _, stderr) = home.check(&["-q", "python.d/good"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(!stderr.contains("good: about to report"), "{stderr}");
    // --log-level wins over RUST_LOG.
    let mut command = pythond();
    command
        .args(["check", "--log-level", "error", "python.d/good"])
        .env("RUST_LOG", "debug")
        .current_dir(home.path());
    let (code, _, stderr) = run_to_end(command);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        !stderr.contains(" DEBUG ") && !stderr.contains(" INFO "),
        "{stderr}"
    );
    // -v on check: info for everything.
    let (_, _, stderr) = home.check(&["-v", "python.d/good"]);
    assert!(
        stderr.contains("worker ready") || stderr.contains(" INFO "),
        "{stderr}"
    );
    // A bad level is refused by the command line, naming it.
    let (code, _, stderr) = home.check(&["--log-level", "verbose", "python.d/good"]);
    assert_ne!(code, 0);
    assert!(stderr.contains("verbose"), "{stderr}");
}

/// Runs `pythond check` under a pseudo-terminal (util-linux `script`); its output.
fn on_a_terminal(home: &Home, no_color: Option<&str>) -> String {
    let binary = env!("CARGO_BIN_EXE_pythond");
    let mut command = Command::new("script");
    command
        .args(["-q", "-e", "-c"])
        .arg(format!("{binary} check python.d/good"))
        .arg("/dev/null")
        .env_remove("NO_COLOR")
        .current_dir(home.path());
    if let Some(value) = no_color {
        command.env("NO_COLOR", value);
    }
    let (code, stdout, stderr) = run_to_end(command);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    stdout
}

#[test]
fn no_color_turns_colours_off_on_a_terminal() {
    let home = Home::new();
    home.write("python.d/good/good.py", GOOD);
    let coloured = on_a_terminal(&home, None);
    assert!(coloured.contains("good: about to report"), "{coloured}");
    assert!(
        coloured.contains('\u{1b}'),
        "no colours on a terminal:\n{coloured}"
    );
    let plain = on_a_terminal(&home, Some("1"));
    assert!(plain.contains("good: about to report"), "{plain}");
    assert!(
        !plain.contains('\u{1b}'),
        "colours despite NO_COLOR:\n{plain}"
    );
}

#[test]
fn a_repeated_traceback_is_logged_once_and_its_repeats_counted() {
    let home = Home::new();
    let runs = home.path().join("runs.txt");
    home.write(
        "python.d/flaky/flaky.py",
        &format!(
            "from datakit_framework import DataKitFramework\n\n\
             class Flaky(DataKitFramework):\n    name = \"flaky\"\n    interval = 0.2\n\n\
             \x20   def run(self):\n        with open({:?}, \"a\") as f:\n            f.write(\"x\")\n\
             \x20       raise ValueError(\"always the same\")\n",
            runs.display().to_string()
        ),
    );
    home.input("flaky", &["flaky"], "interval = \"200ms\"");
    let agent = home.start();
    assert!(
        wait_until(DEADLINE, || std::fs::read_to_string(&runs)
            .map_or(0, |s| s.len())
            >= 4),
        "the plugin did not run 4 times:\n{}",
        agent.stderr()
    );
    agent.expect_log("run failed");
    let log = agent.stderr();
    let full = log.matches("run failed: ").count();
    assert_eq!(full, 1, "the same failure was logged {full} times:\n{log}");
    assert!(
        !log.contains("run failed again"),
        "repeats logged at info:\n{log}"
    );
}

#[test]
fn other_input_kinds_are_noted_once_and_an_input_that_cannot_start_is_not_counted() {
    let home = Home::new();
    home.write("python.d/good/good.py", GOOD);
    home.write("conf.d/cpu.conf", "[[inputs.cpu]]\npercpu = true\n");
    home.input("lost", &["no-such-dir"], "");
    let agent = home.start();
    agent.expect_log("pythond running");
    let running = agent.expect_log_line(&["pythond running"]);
    assert!(
        running.contains("not_started") && running.contains("lost"),
        "a failed input is counted as running: {running}"
    );
    assert!(!running.contains("inputs=1"), "{running}");
    // Two reloads: the cpu table is not noted again.
    for round in 1..=2 {
        agent.signal(libc::SIGHUP);
        assert!(
            wait_until(DEADLINE, || agent
                .stderr()
                .matches("configuration reloaded")
                .count()
                >= round),
            "reload {round} not logged:\n{}",
            agent.stderr()
        );
    }
    let log = agent.stderr();
    assert_eq!(
        log.matches("not a pythond input, ignored").count(),
        1,
        "{log}"
    );
}

#[test]
fn each_command_has_its_own_man_page() {
    let (code, page, stderr) = pythond_output(&["man", "check"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(page.contains(".TH pythond-check 1"), "{page}");
    assert!(page.contains("\\-\\-allow\\-empty"), "{page}");
    let (code, _, stderr) = pythond_output(&["man", "nope"]);
    assert_ne!(code, 0);
    assert!(stderr.contains("check"), "{stderr}");
}
