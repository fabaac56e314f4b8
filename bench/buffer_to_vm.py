#!/usr/bin/env python3
"""Sustained points per second through the disk buffer into VictoriaMetrics.

Starts VictoriaMetrics on a free loopback port and `pythond run` (release build) with
one input whose collector reports TOTAL metric points as fast as it can, in reports of
PER_REPORT points. Runs it twice:

  file  - a file sink (no disk buffer, no network): what one worker can produce;
  vm    - an influxdb sink to VictoriaMetrics: disk buffer (fdatasync'ed group
          commits) + gzip + HTTP delivery;
  vm-fsync-100ms - the same with fsync = "100ms" (acknowledged once written, synced
          in the background).

For each it prints the points/s from the first to the last point accepted by the sink
(file: lines written; vm: rows VictoriaMetrics reports as inserted), the agent's CPU
(user+sys seconds, and % of one core over the run) and peak RSS, and the Python
worker's CPU (when it is near 100 %, the collector, not the agent, is the limit).

Usage: cargo build --release && bench/buffer_to_vm.py [TOTAL] [PER_REPORT]
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

from benchlib import BIN, children, cpu_seconds, free_port, get, status_mib, vm_rows_inserted

TOTAL = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
PER_REPORT = int(sys.argv[2]) if len(sys.argv) > 2 else 1000

COLLECTOR = """
import os, time
from datakit_framework import DataKitFramework

class Flood(DataKitFramework):
    name = "flood"
    interval = 3600
    long_running = True

    def run(self):
        total, per = int(os.environ["TOTAL"]), int(os.environ["PER_REPORT"])
        base = int(time.time() * 1000) - 3_600_000
        sent = 0
        while sent < total:
            n = min(per, total - sent)
            self.report({"M": [{"measurement": "bench", "tags": {"host_id": str(i % 100)},
                                "fields": {"v": sent + i, "f": 0.5}, "time": base + sent + i}
                               for i in range(n)], "precision": "ms"})
            sent += n
        while True:
            time.sleep(3600)
"""


def run(mode, work):
    home = os.path.join(work, mode)
    os.makedirs(os.path.join(home, "python.d", "flood"))
    os.makedirs(os.path.join(home, "conf.d"))
    with open(os.path.join(home, "python.d", "flood", "flood.py"), "w") as f:
        f.write(COLLECTOR)
    with open(os.path.join(home, "conf.d", "flood.conf"), "w") as f:
        f.write('[[inputs.pythond]]\nname = "flood"\ncmd = "python3"\ndirs = ["flood"]\n'
                f'envs = ["TOTAL={TOTAL}", "PER_REPORT={PER_REPORT}"]\n')
    vm = None
    if mode.startswith("vm"):
        port = free_port()
        vm = subprocess.Popen(["victoria-metrics", f"-httpListenAddr=127.0.0.1:{port}",
                               f"-storageDataPath={os.path.join(work, mode + '-vm-data')}",
                               "-loggerLevel=ERROR"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(300):
            try:
                get(f"http://127.0.0.1:{port}/health")
                break
            except OSError:
                time.sleep(0.1)
        sink = (f'[[sinks]]\ntype = "influxdb"\nurl = "http://127.0.0.1:{port}"\n'
                'db = "bench"\n')
        if mode == "vm-fsync-100ms":
            sink += 'fsync = "100ms"\n'
        # Each point has two fields, which VictoriaMetrics stores as two rows.
        done = lambda: vm_rows_inserted(port, "influx") // 2  # noqa: E731
    else:
        sink = '[[sinks]]\ntype = "file"\npath = "points.ndjson"\n'
        points = os.path.join(home, "points.ndjson")
        seen = {"offset": 0, "lines": 0}

        def done():
            # Count only the new bytes: rereading the whole file would load the machine.
            if not os.path.exists(points):
                return 0
            with open(points, "rb") as f:
                f.seek(seen["offset"])
                chunk = f.read()
            seen["offset"] += len(chunk)
            seen["lines"] += chunk.count(b"\n")
            return seen["lines"]
    with open(os.path.join(home, "pythond.toml"), "w") as f:
        f.write(sink)
    agent = subprocess.Popen([BIN, "run", "--config", os.path.join(home, "pythond.toml")],
                             cwd=home, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                             env={**os.environ, "RUST_LOG": "warn"})
    try:
        first = None
        count = 0
        deadline = time.time() + 600
        while time.time() < deadline:
            count = done()
            if count > 0 and first is None:
                first = (time.time(), count, cpu_seconds(agent.pid),
                         sum(cpu_seconds(w) for w in children(agent.pid)))
            if count >= TOTAL:
                break
            time.sleep(0.05)
        end = time.time()
        cpu = cpu_seconds(agent.pid)
        workers = children(agent.pid)
        worker_cpu = sum(cpu_seconds(w) for w in workers)
        rss = status_mib(agent.pid, "VmHWM")
        buffer_dir = os.path.join(home, "data", "buffers")
        buffer_bytes = sum(os.path.getsize(os.path.join(d, f))
                           for d, _, fs in os.walk(buffer_dir) for f in fs) if os.path.isdir(buffer_dir) else 0
    finally:
        agent.send_signal(signal.SIGTERM)
        agent.wait(60)
        if vm:
            vm.send_signal(signal.SIGTERM)
            vm.wait(60)
    if first is None or count < TOTAL:
        return {"mode": mode, "error": f"only {count} of {TOTAL} points arrived"}
    t0, c0, cpu0, wcpu0 = first
    seconds = end - t0
    return {
        "mode": mode,
        "points": TOTAL,
        "seconds": round(seconds, 2),
        "points_per_s": round((TOTAL - c0) / seconds),
        "agent_cpu_s": round(cpu - cpu0, 2),
        "agent_cpu_pct_of_one_core": round(100 * (cpu - cpu0) / seconds),
        "agent_peak_rss_mib": round(rss, 1),
        "worker_cpu_pct_of_one_core": round(100 * (worker_cpu - wcpu0) / seconds),
        "buffer_bytes_left": buffer_bytes,
    }


def main():
    if not os.path.exists(BIN):
        sys.exit(f"{BIN} missing: run `cargo build --release` first")
    if not shutil.which("victoria-metrics"):
        sys.exit("victoria-metrics missing: apt-get install victoria-metrics")
    work = tempfile.mkdtemp(prefix="pythond-bench-")
    try:
        for mode in ("file", "vm", "vm-fsync-100ms"):
            print(json.dumps(run(mode, work)), flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
