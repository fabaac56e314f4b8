//! Throughput of the HTTP write API: points per second accepted by a running
//! `pythond` (release build, file sink), posted by keep-alive clients as JSON (what
//! DataKit's shim sends) and as line protocol, in batches of 1 and 1000 points.
//!
//! Run: `cargo bench --bench http_write` (options via env: `BENCH_SECONDS`, default 5;
//! `BENCH_CLIENTS`, default 4). Prints a Markdown table for docs/BENCHMARKS.md.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

struct AgentProcess(Child);

impl Drop for AgentProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts the agent on a scratch home; returns it and its API base URL.
fn start_agent(home: &std::path::Path) -> (AgentProcess, String) {
    std::fs::create_dir_all(home.join("conf.d")).expect("conf.d");
    std::fs::write(
        home.join("pythond.toml"),
        "[http]\nlisten = \"127.0.0.1:0\"\n\n[[sinks]]\ntype = \"file\"\npath = \"points.ndjson\"\n",
    )
    .expect("pythond.toml");
    let mut child = Command::new(env!("CARGO_BIN_EXE_pythond"))
        .arg("run")
        .arg("--config")
        .arg(home.join("pythond.toml"))
        .current_dir(home)
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start pythond");
    let stderr = child.stderr.take().expect("stderr");
    let mut lines = BufReader::new(stderr).lines();
    let base = loop {
        let line = lines
            .next()
            .expect("pythond exited before listening")
            .expect("read log");
        if let Some(at) = line.find("HTTP API listening on http://") {
            let url = &line[at + "HTTP API listening on ".len()..];
            break url
                .split(|c: char| c.is_whitespace() || c == '\u{1b}')
                .next()
                .expect("url")
                .to_string();
        }
    };
    // Keep draining the log so the agent never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    (AgentProcess(child), base)
}

fn body(format: &str, batch: usize, client: usize) -> (Vec<u8>, &'static str) {
    let mut out = String::new();
    if format == "json" {
        out.push('[');
        for i in 0..batch {
            if i > 0 {
                out.push_str(", ");
            }
            out.push_str(&format!(
                "{{\"measurement\": \"bench\", \"tags\": {{\"client\": \"{client}\", \"shard\": \"{}\"}}, \"fields\": {{\"value\": {i}, \"ratio\": 0.5, \"ok\": true}}, \"time\": null}}",
                i % 16
            ));
        }
        out.push(']');
        (out.into_bytes(), "application/json")
    } else {
        for i in 0..batch {
            out.push_str(&format!(
                "bench,client={client},shard={} value={i}i,ratio=0.5,ok=true\n",
                i % 16
            ));
        }
        (out.into_bytes(), "text/plain")
    }
}

fn run(base: &str, format: &str, batch: usize, clients: usize, seconds: u64) -> (f64, f64) {
    let stop = Arc::new(AtomicBool::new(false));
    let points = Arc::new(AtomicU64::new(0));
    let requests = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let handles: Vec<_> = (0..clients)
        .map(|client| {
            let (stop, points, requests) = (stop.clone(), points.clone(), requests.clone());
            let url = format!("{base}/v1/write/metric");
            let (payload, content_type) = body(format, batch, client);
            std::thread::spawn(move || {
                // One keep-alive connection per client thread.
                let agent = ureq::AgentBuilder::new()
                    .max_idle_connections_per_host(1)
                    .timeout(Duration::from_secs(30))
                    .build();
                while !stop.load(Ordering::Relaxed) {
                    let response = agent
                        .post(&url)
                        .set("Content-Type", content_type)
                        .send_bytes(&payload);
                    match response {
                        Ok(r) if r.status() == 200 => {
                            let _ = r.into_string();
                            points.fetch_add(batch as u64, Ordering::Relaxed);
                            requests.fetch_add(1, Ordering::Relaxed);
                        }
                        other => panic!("write failed: {other:?}"),
                    }
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_secs(seconds));
    stop.store(true, Ordering::Relaxed);
    for handle in handles {
        handle.join().expect("client thread");
    }
    let elapsed = started.elapsed().as_secs_f64();
    (
        points.load(Ordering::Relaxed) as f64 / elapsed,
        requests.load(Ordering::Relaxed) as f64 / elapsed,
    )
}

fn main() {
    // `cargo bench` passes --bench; `cargo test --benches` passes nothing useful: only
    // run when asked to benchmark.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let seconds = env_or("BENCH_SECONDS", 5);
    let clients = env_or("BENCH_CLIENTS", 4) as usize;
    let home = tempfile::tempdir().expect("tempdir");
    let (_agent, base) = start_agent(home.path());
    println!(
        "HTTP write API, {clients} keep-alive clients, {seconds} s per row, file sink, {} CPUs\n",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!("| body | points/request | points/s | requests/s |");
    println!("|---|---:|---:|---:|");
    for format in ["json", "lp"] {
        for batch in [1, 1000] {
            let (pps, rps) = run(&base, format, batch, clients, seconds);
            let name = if format == "json" {
                "JSON"
            } else {
                "line protocol"
            };
            println!("| {name} | {batch} | {pps:.0} | {rps:.0} |");
        }
    }
}
