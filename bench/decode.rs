//! CPU cost of decoding line protocol as the HTTP write API does, alone: each body is
//! split into lines and every line goes through [`LineDecoder::decode`] into one
//! chunk's [`PointBatch`] (taken from a [`BatchPool`] and given back), with the global
//! tags (`host`) as extra tags, as `Ingest::write_blocking` does for
//! `POST /v1/write/<category>`. No HTTP, no sinks.
//!
//! Three shapes of 1,000-point bodies:
//! - `forward`: the bodies of bench/forward_vs_vmagent.py (metric, two tags, an
//!   integer and a float field, a nanosecond timestamp);
//! - `escaped`: logging lines with escapes in the measurement and tag values and a
//!   quoted string field with escaped quotes;
//! - `tags8`: metric lines with eight tags, as a Kubernetes exporter sends them.
//!
//! Run: `cargo bench --bench decode` (options via env: `BENCH_BODIES`, bodies per
//! shape, default 100; `BENCH_RUNS`, default 9; `BENCH_SHAPES`, the shapes to run,
//! comma-separated, default all). Prints, per shape, the median CPU
//! nanoseconds (of the decoding thread) per point over the runs, and the fastest and
//! slowest run: CPU time, not wall time, so a busy machine slows the figures less.

use std::collections::BTreeMap;

use pythond::point::{line_protocol_lines, BatchPool, Category, DecodeContext, LineDecoder};

/// CPU time of the calling thread, in nanoseconds.
fn thread_cpu_ns() -> u128 {
    // SAFETY: clock_gettime writes only the timespec it is given.
    let t = unsafe {
        let mut t: libc::timespec = std::mem::zeroed();
        libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut t);
        t
    };
    t.tv_sec as u128 * 1_000_000_000 + t.tv_nsec as u128
}

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

const PER_BODY: usize = 1000;
const START_NS: u64 = 1_700_000_000_000_000_000;

/// The body bench/forward_vs_vmagent.py's `bodies()` makes for points `first..`.
fn forward_body(client: usize, first: usize) -> String {
    let mut out = String::new();
    for n in first..first + PER_BODY {
        out.push_str(&format!(
            "bench,client={client},host_id={} v={n}i,f={:?} {}\n",
            n % 100,
            n as f64 * 0.5,
            START_NS + n as u64 * 1000
        ));
    }
    out
}

fn escaped_body(first: usize) -> String {
    let mut out = String::new();
    for n in first..first + PER_BODY {
        out.push_str(&format!(
            "nginx\\ access,path=/api/v{}/items\\,list,service=shop\\ web message=\"GET \\\"/item/{n}\\\" 200\",status=\"info\",bytes={}i,took={:?} {}\n",
            n % 3,
            n % 5000,
            (n % 977) as f64 / 1000.0,
            START_NS + n as u64 * 1000
        ));
    }
    out
}

fn tags8_body(first: usize) -> String {
    let mut out = String::new();
    for n in first..first + PER_BODY {
        out.push_str(&format!(
            "http_requests,az=eu-west-1{},cluster=prod-3,code={},container=cart,method=GET,namespace=shop,pod=cart-7d9f8b-{:05},region=eu-west-1 count={}i,sum={:?} {}\n",
            ["a", "b", "c"][n % 3],
            [200, 404, 500][n % 3],
            n % 300,
            n,
            n as f64 * 0.25,
            START_NS + n as u64 * 1000
        ));
    }
    out
}

/// Decodes every body once, one chunk per body as a request of that body gets, and
/// returns the points accepted (so that nothing is optimised away).
fn decode_all(bodies: &[String], ctx: &DecodeContext<'_>, pool: &BatchPool) -> usize {
    let mut accepted = 0;
    for body in bodies {
        let mut decoder = LineDecoder::new(ctx);
        let mut chunk = pool.take();
        for (line_no, line) in line_protocol_lines(body) {
            if decoder.decode(line, line_no, &mut chunk).is_ok() {
                accepted += 1;
            }
        }
        std::hint::black_box(&chunk);
        pool.give(chunk);
    }
    accepted
}

fn main() {
    let bodies_per_shape = env_or("BENCH_BODIES", 100).max(1);
    let runs = env_or("BENCH_RUNS", 9).max(1);
    let extra: BTreeMap<String, String> = [("host".to_string(), "bench-host".to_string())]
        .into_iter()
        .collect();
    let shapes: [(&str, Category, Vec<String>); 3] = [
        (
            "forward",
            Category::Metric,
            (0..bodies_per_shape)
                .map(|b| forward_body(b % 4, b * PER_BODY))
                .collect(),
        ),
        (
            "escaped",
            Category::Logging,
            (0..bodies_per_shape)
                .map(|b| escaped_body(b * PER_BODY))
                .collect(),
        ),
        (
            "tags8",
            Category::Metric,
            (0..bodies_per_shape)
                .map(|b| tags8_body(b * PER_BODY))
                .collect(),
        ),
    ];
    println!(
        "line protocol decode, {bodies_per_shape} bodies of {PER_BODY} points per shape, {runs} runs"
    );
    println!("| Shape | CPU ns per point (median) | fastest | slowest |");
    println!("|---|---|---|---|");
    let only = std::env::var("BENCH_SHAPES").ok();
    for (name, category, bodies) in &shapes {
        if only
            .as_deref()
            .is_some_and(|only| !only.split(',').any(|s| s == *name))
        {
            continue;
        }
        let ctx = DecodeContext {
            category: *category,
            precision: None,
            now_ns: START_NS as i64,
            extra_tags: &extra,
        };
        let points = bodies.len() * PER_BODY;
        let pool = BatchPool::default();
        // One run untimed: the allocator and caches as a running agent has them.
        assert_eq!(
            decode_all(bodies, &ctx, &pool),
            points,
            "{name}: every point accepted"
        );
        let mut per_point: Vec<f64> = (0..runs)
            .map(|_| {
                let start = thread_cpu_ns();
                let accepted = decode_all(bodies, &ctx, &pool);
                let elapsed = thread_cpu_ns() - start;
                assert_eq!(accepted, points);
                elapsed as f64 / points as f64
            })
            .collect();
        per_point.sort_by(f64::total_cmp);
        println!(
            "| {name} | {:.0} | {:.0} | {:.0} |",
            per_point[per_point.len() / 2],
            per_point[0],
            per_point[per_point.len() - 1]
        );
    }
}
