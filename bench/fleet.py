#!/usr/bin/env python3
"""A fleet of agents on one host across a backend outage.

Starts one VictoriaMetrics, vmauth in front of it (bearer token), and AGENTS pythond
agents (release build), each with its own host name (`fleet-NN`) and a
prometheus_remote_write sink to vmauth. A feeder thread per agent POSTs a line
protocol body of BATCH points every 0.5 s (each point numbered, its own timestamp).
After BEFORE seconds VictoriaMetrics is stopped for OUTAGE seconds (vmauth answers
502 meanwhile), then started again; feeding goes on for AFTER seconds. Then it waits
until VictoriaMetrics holds every point and checks, per host, that every number is
there exactly once.

Printed: whether every point of every agent arrived once, how long the backlog took to
drain, and each agent's memory (RSS) and disk buffer size at the end of the outage.

Usage: cargo build --release && bench/fleet.py [--agents 20] [--outage 30]
"""

import argparse
import http.client
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse

from benchlib import BIN, dir_bytes, free_port, get, status_mib, wait_health

TOKEN = "fleet-bench-token"


class VictoriaMetrics:
    def __init__(self, work):
        self.port = free_port()
        self.data = os.path.join(work, "vm-data")
        self.proc = None
        self.start()

    def start(self):
        self.proc = subprocess.Popen(
            ["victoria-metrics", f"-httpListenAddr=127.0.0.1:{self.port}",
             f"-storageDataPath={self.data}", "-loggerLevel=ERROR", "-search.latencyOffset=0s"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_health(self.port, "victoria-metrics")

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(60)

    def values(self, host):
        get(f"http://127.0.0.1:{self.port}/internal/force_flush")
        query = urllib.parse.urlencode({"match[]": f'fleet_v{{host="{host}"}}'})
        values = []
        for line in get(f"http://127.0.0.1:{self.port}/api/v1/export?{query}").splitlines():
            if line.strip():
                values += [int(v) for v in json.loads(line)["values"]]
        return values


def feed(port, host_index, stop, counter, start_ms, batch):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    n = 0
    while not stop.is_set():
        lines = [f"fleet,part={(n + i) % 5} v={n + i}i {(start_ms + n + i) * 1_000_000}"
                 for i in range(batch)]
        body = ("\n".join(lines) + "\n").encode()
        conn.request("POST", "/v1/write/metric?precision=ns", body)
        answer = conn.getresponse()
        answer.read()
        if answer.status != 200:
            sys.exit(f"agent {host_index}: HTTP {answer.status}")
        n += batch
        counter[host_index] = n
        stop.wait(0.5)
    conn.close()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--agents", type=int, default=20)
    parser.add_argument("--batch", type=int, default=100, help="points per body, every 0.5 s")
    parser.add_argument("--before", type=float, default=10)
    parser.add_argument("--outage", type=float, default=30)
    parser.add_argument("--after", type=float, default=10)
    args = parser.parse_args()
    if not os.path.exists(BIN):
        sys.exit(f"{BIN} missing: run `cargo build --release` first")
    work = tempfile.mkdtemp(prefix="pythond-fleet-")
    agents = []
    vmauth = None
    vm = None
    try:
        vm = VictoriaMetrics(work)
        auth_port = free_port()
        config = os.path.join(work, "vmauth.yml")
        with open(config, "w") as f:
            f.write(f'users:\n- bearer_token: "{TOKEN}"\n  url_prefix: "http://127.0.0.1:{vm.port}/"\n')
        vmauth = subprocess.Popen(["vmauth", f"-httpListenAddr=127.0.0.1:{auth_port}",
                                   f"-auth.config={config}", "-loggerLevel=ERROR"],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_health(auth_port, "vmauth")
        for i in range(args.agents):
            home = os.path.join(work, f"agent-{i:02}")
            os.makedirs(os.path.join(home, "conf.d"))
            os.makedirs(os.path.join(home, "python.d"))
            port = free_port()
            with open(os.path.join(home, "pythond.toml"), "w") as f:
                f.write(f'[agent]\nhostname = "fleet-{i:02}"\n\n[http]\nlisten = "127.0.0.1:{port}"\n\n'
                        '[[sinks]]\ntype = "prometheus_remote_write"\nname = "vm"\n'
                        f'url = "http://127.0.0.1:{auth_port}/api/v1/write"\n'
                        'bearer_token_env = "FLEET_TOKEN"\nretry_max_interval = "5s"\n')
            proc = subprocess.Popen([BIN, "run", "--config", os.path.join(home, "pythond.toml")],
                                    cwd=home, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                    env={**os.environ, "RUST_LOG": "warn", "FLEET_TOKEN": TOKEN})
            agents.append((proc, port, home))
        for _, port, _ in agents:
            wait_health(port, "pythond")
        start_ms = int(time.time() * 1000) - 1_800_000
        stop = threading.Event()
        counter = [0] * args.agents
        feeders = [threading.Thread(target=feed, args=(port, i, stop, counter, start_ms, args.batch))
                   for i, (_, port, _) in enumerate(agents)]
        for t in feeders:
            t.start()
        time.sleep(args.before)
        vm.stop()
        outage_start = time.time()
        time.sleep(args.outage)
        during = [{"rss_mib": round(status_mib(p.pid), 1),
                   "buffer_bytes": dir_bytes(os.path.join(home, "data", "buffers"))}
                  for p, _, home in agents]
        vm.start()
        outage = time.time() - outage_start
        time.sleep(args.after)
        stop.set()
        for t in feeders:
            t.join()
        fed_done = time.time()
        expected = list(counter)
        complete = False
        deadline = time.time() + 600
        while time.time() < deadline:
            got = [vm.values(f"fleet-{i:02}") for i in range(args.agents)]
            if all(len(g) >= e for g, e in zip(got, expected)):
                complete = True
                break
            time.sleep(1)
        drained = time.time() - fed_done
        once = complete and all(sorted(g) == list(range(e)) for g, e in zip(got, expected))
        rss = [d["rss_mib"] for d in during]
        disk = [d["buffer_bytes"] for d in during]
        print(json.dumps({
            "agents": args.agents,
            "points_per_agent": expected[0] if len(set(expected)) == 1 else expected,
            "outage_s": round(outage, 1),
            "every_point_once": once,
            "missing_or_extra": [len(g) - e for g, e in zip(got, expected) if len(g) != e],
            "drained_s_after_feeding_stopped": round(drained, 1),
            "rss_mib_during_outage_min_median_max": [min(rss), statistics.median(rss), max(rss)],
            "buffer_bytes_during_outage_min_median_max": [min(disk), statistics.median(disk), max(disk)],
        }), flush=True)
    finally:
        for proc, _, _ in agents:
            proc.send_signal(signal.SIGTERM)
        for proc, _, _ in agents:
            proc.wait(60)
        if vmauth:
            vmauth.send_signal(signal.SIGTERM)
            vmauth.wait(60)
        if vm and vm.proc.poll() is None:
            vm.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
