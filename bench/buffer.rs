//! CPU cost of the disk buffer alone: appending records of 1,000-point line-protocol
//! bodies from concurrent appenders (group commit, `fdatasync`), then reading them
//! back and acknowledging them in delivery-sized batches, as a network sink does.
//!
//! Run: `cargo bench --bench buffer` (options via env: `BENCH_POINTS`, default
//! 1,000,000; `BENCH_PER_RECORD`, default 1000; `BENCH_APPENDERS`, default 4;
//! `BENCH_FSYNC`, `always` (default) or a duration such as `100ms`; `BENCH_DIR`, where
//! the buffer is written, default the system's temporary directory — put it on the
//! disk to be measured). Prints one Markdown table row per phase for
//! docs/BENCHMARKS.md: points/s and the process's CPU seconds (user, system) per
//! million points, and for appends how many shared one sync.

use std::sync::Arc;
use std::time::{Duration, Instant};

use pythond::point::Category;
use pythond::sink::body_format::BodyFormat;
use pythond::sink::buffer::{BufferLimits, DiskBuffer, ReadBatch, Record};
use pythond::sink::SinkStats;

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// User and system CPU seconds of this process so far.
fn cpu() -> (f64, f64) {
    // SAFETY: getrusage fills the struct it is given; no other memory is touched.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut usage);
        usage
    };
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    (secs(usage.ru_utime), secs(usage.ru_stime))
}

/// A body like the forwarding benchmark's: `per` points, two fields each.
fn body(first: u64, per: u64) -> Vec<u8> {
    let mut out = String::new();
    for i in first..first + per {
        out.push_str(&format!(
            "bench,host=bench-host,host_id={} v={i}i,f=0.5 {}\n",
            i % 100,
            1_700_000_000_000_000_000 + i
        ));
    }
    out.into_bytes()
}

struct Phase {
    name: &'static str,
    points: u64,
    wall: Duration,
    user: f64,
    sys: f64,
    note: String,
}

impl Phase {
    fn row(&self) -> String {
        let millions = self.points as f64 / 1e6;
        format!(
            "| {} | {:.0} | {:.2} | {:.2} | {} |",
            self.name,
            self.points as f64 / self.wall.as_secs_f64(),
            self.user / millions,
            self.sys / millions,
            self.note
        )
    }
}

fn measure(name: &'static str, points: u64, run: impl FnOnce() -> String) -> Phase {
    let (user0, sys0) = cpu();
    let start = Instant::now();
    let note = run();
    let wall = start.elapsed();
    let (user1, sys1) = cpu();
    Phase {
        name,
        points,
        wall,
        user: user1 - user0,
        sys: sys1 - sys0,
        note,
    }
}

fn main() {
    let total = env_or("BENCH_POINTS", 1_000_000);
    let per = env_or("BENCH_PER_RECORD", 1000).max(1);
    let appenders = env_or("BENCH_APPENDERS", 4).max(1);
    let sync_every = match std::env::var("BENCH_FSYNC").as_deref() {
        Ok("always") | Err(_) => None,
        Ok(text) => Some(
            text.strip_suffix("ms")
                .and_then(|ms| ms.parse().ok())
                .map(Duration::from_millis)
                .expect("BENCH_FSYNC: `always` or `<n>ms`"),
        ),
    };
    let parent = std::env::var_os("BENCH_DIR").map_or_else(std::env::temp_dir, Into::into);
    let dir = tempfile::tempdir_in(parent).expect("scratch directory");
    let records_total = total / per;
    let limits = BufferLimits {
        max_bytes: 64 << 30,
        sync_every,
    };
    let stats = Arc::new(SinkStats::new("bench", "influxdb"));
    let buffer = Arc::new(
        DiskBuffer::open(dir.path(), "bench", BodyFormat::LineProtocol, limits, stats)
            .expect("open the buffer"),
    );
    // Bodies are made before the clock starts: the agent encodes them elsewhere.
    let mut bodies: Vec<Vec<Record>> = (0..appenders).map(|_| Vec::new()).collect();
    for r in 0..records_total {
        bodies[(r % appenders) as usize].push(Record {
            category: Category::Metric,
            points: per as u32,
            enqueued_ms: 1_700_000_000_000,
            body: body(r * per, per),
        });
    }
    let points = records_total * per;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .expect("runtime");
    let groups = buffer.watch();

    let append = measure("append", points, || {
        runtime.block_on(async {
            let mut tasks = Vec::new();
            for records in bodies.drain(..) {
                let buffer = buffer.clone();
                tasks.push(tokio::spawn(async move {
                    for record in records {
                        buffer.append(vec![record]).await.expect("append");
                    }
                }));
            }
            for task in tasks {
                task.await.expect("appender");
            }
        });
        let syncs = groups.borrow().groups;
        format!(
            "{records_total} appends in {syncs} group commits ({:.1} per sync)",
            records_total as f64 / syncs.max(1) as f64
        )
    });

    let read = measure("read back + ack", points, || {
        let mut read = 0u64;
        let mut batches = 0u64;
        while read < points {
            let mut batch = ReadBatch::default();
            buffer
                .read_more(&mut batch, 5000, 8 << 20)
                .expect("read the buffer");
            assert!(!batch.is_empty(), "the buffer ran dry at {read} points");
            read += batch.points();
            batches += 1;
            buffer.ack(&batch).expect("ack");
        }
        format!("{batches} batches of up to 5000 points")
    });
    buffer.close();

    println!(
        "{} points in {per}-point records, {appenders} appenders, fsync {}",
        points,
        std::env::var("BENCH_FSYNC").unwrap_or_else(|_| "always".into())
    );
    println!("| Phase | Points/s | User CPU s per M points | System CPU s per M points | Notes |");
    println!("|---|---|---|---|---|");
    for phase in [append, read] {
        println!("{}", phase.row());
    }
}
