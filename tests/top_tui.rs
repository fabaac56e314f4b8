//! `pythond top` as a user sees it: started in a real terminal (a detached tmux
//! session), it shows the running agent's plugins with live rates, an error, a
//! network sink's queue, and quits on `q`.

mod common;

use std::process::Command;

use common::http::api_addr;
use common::{wait_until, Home, DEADLINE};

const PLUGINS: &str = r#"
from datakit_framework import DataKitFramework

class Steady(DataKitFramework):
    name = "steady"
    interval = 0.2

    def run(self):
        self.report({"M": [{"measurement": "steady", "tags": {}, "fields": {"n": 1}}]})

class Broken(DataKitFramework):
    name = "broken"
    interval = 0.2

    def run(self):
        raise RuntimeError("sensor unplugged")
"#;

/// A tmux server of its own (its own socket), killed on drop.
struct Tmux {
    socket: String,
}

impl Tmux {
    fn new() -> Tmux {
        Tmux {
            socket: format!("pythond-top-test-{}", std::process::id()),
        }
    }

    fn run(&self, args: &[&str]) -> std::process::Output {
        Command::new("tmux")
            .arg("-L")
            .arg(&self.socket)
            .args(args)
            .output()
            .expect("tmux (scripts/test-deps installs it)")
    }

    fn screen(&self) -> String {
        String::from_utf8_lossy(&self.run(&["capture-pane", "-p", "-t", "top"]).stdout).into_owned()
    }

    fn alive(&self) -> bool {
        self.run(&["has-session", "-t", "top"]).status.success()
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.run(&["kill-server"]);
    }
}

#[test]
fn top_shows_live_plugin_rates_errors_and_sinks_and_quits_on_q() {
    let home = Home::new();
    // A network sink whose backend is down, so it has a queue to show.
    let port = common::backends::free_port();
    home.write(
        "pythond.toml",
        &format!(
            "[[sinks]]\ntype = \"file\"\npath = \"points.ndjson\"\n\n[[sinks]]\ntype = \"influxdb\"\nname = \"vm\"\nurl = \"http://127.0.0.1:{port}\"\ndb = \"pythond\"\nretry_max_interval = \"1s\"\n"
        ),
    );
    home.write("python.d/demo/demo.py", PLUGINS);
    home.input("demo", &["demo"], "");
    let mut agent = home.start();
    let addr = api_addr(&agent);

    let tmux = Tmux::new();
    let command = format!(
        "{} top --addr {addr} --interval 500ms",
        env!("CARGO_BIN_EXE_pythond")
    );
    let started = tmux.run(&[
        "new-session",
        "-d",
        "-s",
        "top",
        "-x",
        "160",
        "-y",
        "40",
        &command,
    ]);
    assert!(started.status.success(), "{started:?}");

    let mut screen = String::new();
    let shown = wait_until(DEADLINE, || {
        screen = tmux.screen();
        let steady = screen.lines().find(|l| l.contains("demo.Steady"));
        let rate_shown = steady.is_some_and(|line| {
            // RUNS/S and POINTS/S are the 4th and 5th columns; a live plugin's are > 0.
            let cells: Vec<&str> = line.trim_matches('│').split_whitespace().collect();
            cells.len() >= 5
                && cells[3].parse::<f64>().is_ok_and(|r| r > 0.0)
                && cells[4].parse::<f64>().is_ok_and(|r| r > 0.0)
        });
        rate_shown
            && screen.contains("POINTS/S")
            && screen
                .lines()
                .any(|l| l.contains("demo.Broken") && l.contains("sensor unplugged"))
            && screen
                .lines()
                .any(|l| l.contains("vm") && l.contains("influxdb"))
    });
    assert!(
        shown,
        "top never showed the live plugins and the sink:\n{screen}"
    );
    let queued = screen
        .lines()
        .find(|l| l.contains("vm") && l.contains("influxdb"))
        .and_then(|l| l.trim_matches('│').split_whitespace().nth(2))
        .and_then(|n| n.parse::<u64>().ok());
    assert!(
        queued.is_some(),
        "the sink's queue depth is a number:\n{screen}"
    );

    tmux.run(&["send-keys", "-t", "top", "q"]);
    assert!(
        wait_until(DEADLINE, || !tmux.alive()),
        "top did not quit on q:\n{}",
        tmux.screen()
    );
    assert!(agent.stop().success());
}
