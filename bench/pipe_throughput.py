#!/usr/bin/env python3
"""Pipe throughput: what a report costs a collector, end to end, through pythond.

One worker runs a collector whose single run() calls ``self.report()`` in a tight loop
(REPORTS times, POINTS points each). The agent reads the frames from the worker's
channel, validates every point and writes it through a file sink. We measure:

* the script's side: wall and CPU time of the loop inside the worker;
* end to end: from the first report to the moment the last point is in the sink file
  (the file's modification time once it holds every point);
* the agent's CPU time (user + system, from /proc) while it does this.

The floor is the same loop done by hand in Python: ``json.dumps`` of the same report
plus ``os.write`` of it to a pipe drained by ``cat > /dev/null``. That is what any
transport must at least cost; pythond's promise is to stay within 3x of it.

Usage (from the repository root):

    cargo build --release
    python3 bench/pipe_throughput.py [--binary target/release/pythond] [--reports N]

It prints a Markdown table (the one in docs/BENCHMARKS.md).
"""

import argparse
import json
import os
import pathlib
import platform
import subprocess
import sys
import tempfile

from benchlib import cpu_seconds, wait_for

COLLECTOR = r'''
import json, os, time
from datakit_framework import DataKitFramework

REPORTS = int(os.environ["BENCH_REPORTS"])
POINTS = int(os.environ["BENCH_POINTS"])
RESULT = os.environ["BENCH_RESULT"]


class PipeBench(DataKitFramework):
    name = "pipe_bench"
    interval = 3600

    def run(self):
        points = [{"measurement": "bench", "tags": {"host_group": "a", "slot": str(j)},
                   "fields": {"seq": 0, "value": 1.5, "ok": True}} for j in range(POINTS)]
        start_wall, start_cpu, start_epoch = time.perf_counter(), time.process_time(), time.time()
        for i in range(REPORTS):
            for point in points:
                point["fields"]["seq"] = i
            self.report({"M": points})
        wall, cpu = time.perf_counter() - start_wall, time.process_time() - start_cpu
        with open(RESULT + ".tmp", "w") as f:
            json.dump({"wall": wall, "cpu": cpu, "start_epoch": start_epoch}, f)
        os.rename(RESULT + ".tmp", RESULT)
'''

FLOOR = r'''
import json, os, subprocess, sys, time
reports, points_per = int(sys.argv[1]), int(sys.argv[2])
sink = subprocess.Popen(["cat"], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL)
fd = sink.stdin.fileno()
points = [{"measurement": "bench", "tags": {"host_group": "a", "slot": str(j)},
           "fields": {"seq": 0, "value": 1.5, "ok": True}} for j in range(points_per)]
start_wall, start_cpu = time.perf_counter(), time.process_time()
for i in range(reports):
    for point in points:
        point["fields"]["seq"] = i
    os.write(fd, (json.dumps({"M": points}) + "\n").encode())
wall, cpu = time.perf_counter() - start_wall, time.process_time() - start_cpu
sink.stdin.close()
sink.wait()
print(json.dumps({"wall": wall, "cpu": cpu}))
'''


def count_lines(path):
    try:
        with open(path, "rb") as f:
            return sum(chunk.count(b"\n") for chunk in iter(lambda: f.read(1 << 20), b""))
    except FileNotFoundError:
        return 0


def run_pythond(binary, python, reports, points_per):
    with tempfile.TemporaryDirectory(prefix="pythond-bench-") as tmp:
        root = pathlib.Path(tmp)
        (root / "python.d" / "bench").mkdir(parents=True)
        (root / "python.d" / "bench" / "bench.py").write_text(COLLECTOR)
        (root / "conf.d").mkdir()
        (root / "conf.d" / "bench.conf").write_text(
            '[[inputs.pythond]]\n  name = "bench"\n  cmd = "%s"\n  dirs = ["bench"]\n'
            '  timeout = "1h"\n' % python)
        sink = root / "points.ndjson"
        (root / "pythond.toml").write_text(
            '[agent]\n  log_level = "warn,pythond::supervisor=info"\n'
            '[http]\n  listen = "127.0.0.1:0"\n'
            '[[sinks]]\n  type = "file"\n  path = "%s"\n' % sink)
        result = root / "result.json"
        env = dict(os.environ, BENCH_REPORTS=str(reports), BENCH_POINTS=str(points_per),
                   BENCH_RESULT=str(result))
        log = open(root / "agent.log", "w+")
        agent = subprocess.Popen([binary, "run", "--config", str(root / "pythond.toml")],
                                 cwd=root, env=env, stdout=subprocess.DEVNULL, stderr=log)
        try:
            wait_for(lambda: "worker ready" in (root / "agent.log").read_text(), 60, "the worker")
            agent_cpu_before = cpu_seconds(agent.pid)
            total = reports * points_per
            wait_for(result.exists, 3600, "the collector's loop")
            wait_for(lambda: count_lines(sink) >= total, 3600, "every point in the sink")
            agent_cpu = cpu_seconds(agent.pid) - agent_cpu_before
            last_write = sink.stat().st_mtime
            script = json.loads(result.read_text())
            return {
                "script_wall": script["wall"],
                "script_cpu": script["cpu"],
                "end_to_end": last_write - script["start_epoch"],
                "agent_cpu": agent_cpu,
                "points": count_lines(sink),
            }
        finally:
            agent.terminate()
            agent.wait(30)
            log.close()


def run_floor(python, reports, points_per):
    out = subprocess.run([python, "-c", FLOOR, str(reports), str(points_per)],
                         check=True, capture_output=True, text=True).stdout
    return json.loads(out)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--binary", default="target/release/pythond")
    parser.add_argument("--python", default="python3")
    parser.add_argument("--reports", type=int, default=200_000,
                        help="single-point reports in the first scenario (default 200000)")
    args = parser.parse_args()
    binary = os.path.abspath(args.binary)
    if not os.access(binary, os.X_OK):
        raise SystemExit("%s is not built: run `cargo build --release` first" % binary)

    scenarios = [(args.reports, 1), (max(1, args.reports // 50), 100)]
    print("machine: %s, %d cores, Python %s" % (platform.machine(), os.cpu_count(),
                                                platform.python_version()))
    print()
    print("| reports x points | floor µs/report | script µs/report | end-to-end µs/report "
          "| end-to-end ÷ floor | points/s end to end | worker CPU s | agent CPU s "
          "| agent ÷ worker CPU |")
    print("|---|---|---|---|---|---|---|---|---|")
    for reports, points_per in scenarios:
        floor = run_floor(args.python, reports, points_per)
        got = run_pythond(binary, args.python, reports, points_per)
        if got["points"] != reports * points_per:
            raise SystemExit("expected %d points in the sink, found %d"
                             % (reports * points_per, got["points"]))
        us = lambda seconds: seconds / reports * 1e6
        print("| %d x %d | %.1f | %.1f | %.1f | %.2fx | %.0f | %.2f | %.2f | %.2f |" % (
            reports, points_per, us(floor["wall"]), us(got["script_wall"]),
            us(got["end_to_end"]), got["end_to_end"] / floor["wall"],
            reports * points_per / got["end_to_end"], got["script_cpu"], got["agent_cpu"],
            got["agent_cpu"] / got["script_cpu"]))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
