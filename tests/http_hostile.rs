//! Hostile clients against a running agent's HTTP API: slow uploads, bodies whose
//! points would blow up memory, JSON the decoder cannot take, oversized lasterror
//! posts. Each attack must get a clear status, lose nothing silently and leave the
//! agent serving.

mod common;

use std::io::Write;
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::http::{api_base, get, post};
use common::Home;

fn home_with(http: &str) -> Home {
    let home = Home::new();
    home.write(
        "pythond.toml",
        &format!("[http]\n{http}\n\n[[sinks]]\ntype = \"file\"\npath = \"points.ndjson\"\n"),
    );
    home
}

/// The value of one sample in `/metrics` (0 when absent).
fn metric(base: &str, sample: &str) -> f64 {
    let text = get(&format!("{base}/metrics"), &[]).body;
    text.lines()
        .find_map(|l| l.strip_prefix(sample)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0.0)
}

/// A client uploading a body a few bytes at a time until told to stop (or cut off).
fn trickle(addr: &str, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<()> {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream
        .write_all(b"POST /v1/write/metric HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\n")
        .expect("send headers");
    std::thread::spawn(move || {
        while !stop.load(Ordering::Relaxed) {
            if stream.write_all(b"slow v=1i\n").is_err() {
                break;
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    })
}

const OVER_HTTP: &str = r#"
from datakit_framework import DataKitFramework

class OverHttp(DataKitFramework):
    name = "over_http"
    interval = 0.5
    def run(self):
        self.report({"M": [{"measurement": "via_http_metric", "fields": {"v": 2}}], "input": "over"})
"#;

#[test]
fn slow_uploads_are_cut_and_never_starve_probes_status_or_the_agents_workers() {
    // Two write slots; bodies must average 100 bytes/s after the first 5 s. The
    // tricklers send 40 bytes/s, so they hold both slots for about 8 s, then are cut.
    let home = home_with(
        "listen = \"127.0.0.1:0\"\nrequest_timeout = \"300s\"\nmax_concurrent_requests = 2\nmin_body_rate = 100",
    );
    home.write("python.d/over/over.py", OVER_HTTP);
    home.input("over", &["over"], "transport = \"http\"");
    let agent = home.start();
    let base = api_base(&agent);
    let addr = base.trim_start_matches("http://").to_string();
    agent.expect_points("the worker posts over HTTP", |points| {
        points.iter().any(|p| p["measurement"] == "via_http_metric")
    });

    let stop = Arc::new(AtomicBool::new(false));
    let tricklers: Vec<_> = (0..2).map(|_| trickle(&addr, stop.clone())).collect();
    let full = "pythond_http_requests_in_flight{pool=\"write\"}";
    assert!(
        common::wait_until(common::DEADLINE, || metric(&base, full) == 2.0),
        "the tricklers hold both write slots"
    );
    // While every write slot is held: probes, status and the agent's own worker are
    // served (the worker's points keep arriving), anonymous writers get 503.
    let before = agent.points_of("via_http_metric").len();
    assert_eq!(get(&format!("{base}/health"), &[]).status, 200);
    assert_eq!(get(&format!("{base}/v1/ping"), &[]).status, 200);
    assert_eq!(get(&format!("{base}/v1/status"), &[]).status, 200);
    let refused = post(&format!("{base}/v1/write/metric"), &[], b"anon v=1i\n");
    assert_eq!(refused.status, 503, "{refused:?}");
    assert!(
        common::wait_until(common::DEADLINE, || {
            agent.points_of("via_http_metric").len() > before
        }),
        "the worker's reports got through while anonymous writers held every slot"
    );

    // The tricklers are cut by the rate rule (request_timeout is 300 s), their slots
    // come back, and writing works again.
    let too_slow = "pythond_http_requests_total{route=\"/v1/write/{category}\",status=\"408\"}";
    assert!(
        common::wait_until(common::DEADLINE, || metric(&base, too_slow) >= 2.0),
        "both slow uploads answered 408"
    );
    assert!(common::wait_until(common::DEADLINE, || metric(&base, full) == 0.0));
    stop.store(true, Ordering::Relaxed);
    for trickler in tricklers {
        trickler.join().expect("trickler thread");
    }
    let answer = post(&format!("{base}/v1/write/metric"), &[], b"after v=1i\n");
    assert_eq!(answer.status, 200, "{answer:?}");
}
