#!/usr/bin/env python3
"""Instances at scale: does the schedule hold with thousands of (plugin, instance) pairs?

One input, one trivial collector class, N instances, all at the same interval. The
agent hands the schedule to the worker's pool; every run reports one point carrying
the time the collector's ``run()`` started. For each scenario we measure, over a
window of SECONDS after every instance has run once:

* lateness from the collector's own timestamps: every run start against the ideal
  fixed-rate grid of the agent's plan, ``T0 + interval * i / n + k * interval`` for
  instance ``i`` of ``n`` (``T0`` is estimated as the earliest start on that grid, so
  the figure is drift and jitter, never negative);
* lateness from the agent's histogram (``pythond_input_run_lateness_seconds``: due
  time to actual start, as the worker reports it), as bucket bounds;
* agent and worker CPU in % of one core (user + system from /proc over the window);
* agent and worker RSS at the end of the window (and the worker's peak).

Scenarios: ``N@INTERVAL`` (e.g. ``10000@10``), and ``hung`` (10,000 at 10 s, one of
which hangs in every run: it must time out and be quarantined alone, with no worker
restart, while the others keep their schedule).

Usage (from the repository root):

    cargo build --release
    python3 bench/instances.py [--binary target/release/pythond] [--seconds 60]
                               [--scenarios 1000@10 10000@10 50000@60 hung]

It prints a Markdown table (the one in docs/BENCHMARKS.md).
"""

import argparse
import json
import os
import pathlib
import platform
import re
import subprocess
import sys
import tempfile
import time

from benchlib import cpu_seconds, get, status_mib

COLLECTOR = r'''
import time
from datakit_framework import DataKitFramework


class Tick(DataKitFramework):
    name = "tick"
    interval = 10

    def run(self):
        started = time.time()
        if self.instance == "hung":
            while True:
                time.sleep(3600)
        self.report({"M": [{"measurement": "tick", "tags": {"i": self.instance},
                            "fields": {"started": started}}]})
'''


def lateness_buckets(metrics_text, input_name):
    """{le: cumulative count} of the agent's lateness histogram for ``input_name``."""
    buckets = {}
    pattern = re.compile(r'^pythond_input_run_lateness_seconds_bucket\{input="%s",le="([^"]+)"\} (\S+)$'
                         % re.escape(input_name))
    for line in metrics_text.splitlines():
        m = pattern.match(line)
        if m:
            buckets[m.group(1)] = float(m.group(2))
    return buckets


def bucket_quantile(before, after, q):
    """Upper bound (as text) of the bucket holding quantile q of after - before."""
    les = sorted(after, key=lambda le: float("inf") if le == "+Inf" else float(le))
    total = after.get("+Inf", 0) - before.get("+Inf", 0)
    if total <= 0:
        return "-"
    rank = q * total
    for le in les:
        if after[le] - before.get(le, 0) >= rank:
            return "<= %s ms" % ("inf" if le == "+Inf" else "%g" % (float(le) * 1000))
    return "-"


def percentile(values, q):
    if not values:
        return float("nan")
    values = sorted(values)
    index = min(len(values) - 1, max(0, int(round(q * (len(values) - 1)))))
    return values[index]


def read_points(path, offset):
    """Points appended to the NDJSON sink file since byte ``offset``; new offset."""
    points = []
    with open(path, "rb") as f:
        f.seek(offset)
        data = f.read()
    end = data.rfind(b"\n") + 1
    for line in data[:end].splitlines():
        try:
            points.append(json.loads(line))
        except ValueError:
            pass
    return points, offset + end


def scenario(binary, work, name, instances, interval, seconds, hung):
    home = pathlib.Path(tempfile.mkdtemp(prefix="bench-%s-" % name.replace("@", "_"), dir=work))
    (home / "python.d" / "tick").mkdir(parents=True)
    (home / "conf.d").mkdir()
    (home / "python.d" / "tick" / "tick.py").write_text(COLLECTOR)
    lines = ['[[inputs.pythond]]', 'name = "ticks"', 'cmd = "python3"', 'dirs = ["tick"]',
             'interval = "%ds"' % interval]
    names = ["t%d" % i for i in range(instances)]
    if hung:
        names[instances // 2] = "hung"
    lines.append("instances = [")
    lines.extend('  { name = "%s" },' % n for n in names)
    lines.append("]")
    (home / "conf.d" / "ticks.conf").write_text("\n".join(lines) + "\n")
    (home / "pythond.toml").write_text(
        '[agent]\npython_dir = "python.d"\nconf_dir = "conf.d"\ndata_dir = "data"\n'
        '[http]\nlisten = "127.0.0.1:0"\n'
        '[[sinks]]\ntype = "file"\npath = "points.ndjson"\n')
    log = open(home / "agent.log", "w")
    agent = subprocess.Popen([binary, "run", "--config", str(home / "pythond.toml")], cwd=str(home),
                             stdout=log, stderr=subprocess.STDOUT)
    try:
        base = None
        deadline = time.time() + 120
        while base is None and time.time() < deadline:
            time.sleep(0.2)
            text = (home / "agent.log").read_text(errors="replace")
            m = re.search(r"HTTP API listening on (http://[0-9.:]+)", text)
            if m:
                base = m.group(1)
        if base is None:
            raise SystemExit("%s: the agent did not start its HTTP API:\n%s" % (name, (home / "agent.log").read_text()))
        worker = None
        while worker is None and time.time() < deadline:
            status = json.loads(get(base + "/v1/status"))
            inputs = status.get("inputs") or []
            if inputs and inputs[0].get("worker_pid") and inputs[0]["state"].get("state") == "running":
                worker = inputs[0]["worker_pid"]
            else:
                time.sleep(1.0)
        # Warm-up: one whole interval (every instance has run once, objects created).
        time.sleep(interval + 1)
        points_path = home / "points.ndjson"
        _, offset = read_points(points_path, 0)
        before_hist = lateness_buckets(get(base + "/metrics"), "ticks")
        agent_cpu0, worker_cpu0, t0 = cpu_seconds(agent.pid), cpu_seconds(worker), time.time()
        time.sleep(seconds)
        agent_cpu1, worker_cpu1, t1 = cpu_seconds(agent.pid), cpu_seconds(worker), time.time()
        after_hist = lateness_buckets(get(base + "/metrics"), "ticks")
        agent_rss, worker_rss, worker_peak = status_mib(agent.pid), status_mib(worker), status_mib(worker, "VmHWM")
        time.sleep(1.0)  # let the sink catch up with the window's last points
        points, _ = read_points(points_path, offset)
        status = json.loads(get(base + "/v1/status?all=true"))
    finally:
        agent.terminate()
        try:
            agent.wait(timeout=60)
        except subprocess.TimeoutExpired:
            agent.kill()
        log.close()
    starts = {}
    for p in points:
        started = p.get("fields", {}).get("started")
        if isinstance(started, (int, float)) and t0 <= started <= t1:
            starts.setdefault(p["tags"]["i"], []).append(started)
    # The ideal grid is the agent's plan: instance i of n is due at
    # T0 + interval * i / n + k * interval. Each start, minus its instance's offset, is
    # folded to within half an interval of a reference; T0 is the earliest of them.
    folded = []
    reference = None
    for instance, runs in starts.items():
        index = instances // 2 if instance == "hung" else int(instance[1:])
        for started in runs:
            value = started - interval * index / instances
            if reference is None:
                reference = value
            folded.append(value - round((value - reference) / interval) * interval)
    origin = min(folded) if folded else 0.0
    late = [value - origin for value in folded]
    wall = t1 - t0
    info = status["inputs"][0]
    hung_entry = next((p for p in info["plugins"] if p["id"].endswith("@hung")), None)
    expected = (instances - (1 if hung else 0)) * wall / interval
    return {
        "scenario": name, "instances": instances, "interval": interval, "seconds": round(wall),
        "runs": len(late), "expected": int(expected),
        "p50": percentile(late, 0.50) * 1000, "p99": percentile(late, 0.99) * 1000,
        "max": max(late) * 1000 if late else float("nan"),
        "agent_p50": bucket_quantile(before_hist, after_hist, 0.50),
        "agent_p99": bucket_quantile(before_hist, after_hist, 0.99),
        "agent_cpu": 100.0 * (agent_cpu1 - agent_cpu0) / wall,
        "worker_cpu": 100.0 * (worker_cpu1 - worker_cpu0) / wall,
        "agent_rss": agent_rss, "worker_rss": worker_rss, "worker_peak": worker_peak,
        "restarts": info["restarts"], "recycles": info["recycles"],
        "hung": None if hung_entry is None else "%s, %d timeouts" % (hung_entry["state"], hung_entry["timeouts"]),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--binary", default="target/release/pythond")
    parser.add_argument("--seconds", type=int, default=60, help="measured window per scenario")
    parser.add_argument("--scenarios", nargs="+", default=["1000@10", "10000@10", "50000@60", "hung"])
    args = parser.parse_args()
    binary = os.path.abspath(args.binary)
    work = tempfile.mkdtemp(prefix="pythond-bench-instances-")
    rows = []
    for spec in args.scenarios:
        if spec == "hung":
            n, interval, hung = 10000, 10, True
        else:
            n, interval = (int(x) for x in spec.split("@"))
            hung = False
        row = scenario(binary, work, spec, n, interval, args.seconds, hung)
        print(json.dumps(row), file=sys.stderr)
        rows.append(row)
    print("| scenario | window s | runs (expected) | p50 ms | p99 ms | max ms | agent p50 / p99 | "
          "agent CPU % | worker CPU % | agent RSS MB | worker RSS MB (peak) | restarts | hung instance |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print("| %s | %d | %d (%d) | %.1f | %.1f | %.1f | %s / %s | %.1f | %.1f | %.0f | %.0f (%.0f) | %d | %s |" % (
            r["scenario"], r["seconds"], r["runs"], r["expected"], r["p50"], r["p99"], r["max"],
            r["agent_p50"], r["agent_p99"], r["agent_cpu"], r["worker_cpu"], r["agent_rss"],
            r["worker_rss"], r["worker_peak"], r["restarts"], r["hung"] or "-"))
    load = os.getloadavg()
    print("\n(%s, Python %s, load average %.1f %.1f %.1f)" % (
        time.strftime("%Y-%m-%d"), platform.python_version(), load[0], load[1], load[2]))


if __name__ == "__main__":
    main()
