#!/usr/bin/env python3
"""Forwarding speed side by side: pythond (prometheus_remote_write sink), pythond
(influxdb sink) and vmagent, each relaying the same line protocol into one
VictoriaMetrics on this machine.

Per round and agent: a fresh VictoriaMetrics and a fresh agent; CLIENTS keep-alive
client threads POST TOTAL points (2 fields each) in bodies of PER_BODY points
(pythond: POST /v1/write/metric?precision=ns; vmagent: POST /write?precision=ns). The
clock runs from the first request until VictoriaMetrics has counted every row
(`vm_rows_inserted_total`, two rows per point). Printed per agent: points/s delivered,
the agent's CPU seconds (user + system, /proc) per million points over that span,
its peak RSS, and the rate at which the clients got their answers (acknowledged).

Durability differs: pythond acknowledges a write only once it is in its disk buffer
and fdatasync'ed (default fsync = "always"); vmagent acknowledges once the rows are in
its memory queue, spilling to its on-disk queue (-remoteWrite.tmpDataPath) without a
sync when the remote is slow or down. FSYNC=100ms runs pythond with fsync = "100ms"
as well (acknowledged once written to the buffer file: survives kill -9, not a power
loss), the closest match to vmagent.

Usage: cargo build --release && bench/forward_vs_vmagent.py [--rounds N] [--points N] [--only AGENT]
Environment: BENCH_CLIENTS (4), BENCH_PER_BODY (1000), FSYNC (unset: default only),
BENCH_PERF=<path prefix> to record a `perf` profile of each pythond run (profiling
only: its CPU figures then include perf), BENCH_BASELINE=<path to another pythond
binary> to run it too, as `baseline-<agent>` rows of the same run (a build of an
earlier commit, to compare before and after on one machine at one time),
BENCH_CONCURRENCY=<N> to give every pythond sink `concurrency = N` (requests in
flight at once; unset: the default, 2).

After the rounds, one summary line per agent gives the figures of every round (the
columns of the table in docs/BENCHMARKS.md) and the load average seen meanwhile.
"""

import argparse
import http.client
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

from benchlib import BIN, cpu_seconds, free_port, status_mib, vm_rows_inserted, wait_health

CLIENTS = int(os.environ.get("BENCH_CLIENTS", "4"))
PER_BODY = int(os.environ.get("BENCH_PER_BODY", "1000"))


def bodies(total, client, start_ns):
    """This client's share of the points as line protocol bodies, built before the
    clock starts. Every point is its own (series, timestamp)."""
    out = []
    share = total // CLIENTS
    base = client * share
    for first in range(0, share, PER_BODY):
        lines = []
        for i in range(first, min(first + PER_BODY, share)):
            n = base + i
            lines.append(f"bench,client={client},host_id={n % 100} v={n}i,f={n * 0.5} "
                         f"{start_ns + n * 1000}")
        out.append(("\n".join(lines) + "\n").encode())
    return out


def post_all(port, path, my_bodies, acked, errors):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    for body in my_bodies:
        try:
            conn.request("POST", path, body, {"Content-Type": "text/plain"})
            answer = conn.getresponse()
            answer.read()
            if answer.status >= 300:
                errors.append(f"HTTP {answer.status}")
        except (OSError, http.client.HTTPException) as e:
            errors.append(str(e))
            conn.close()
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    conn.close()
    acked.append(time.time())


def start_agent(kind, work, vm_port):
    port = free_port()
    binary, label = BIN, kind
    if kind.startswith("baseline-"):
        binary = os.environ["BENCH_BASELINE"]
        kind = kind[len("baseline-"):]
    if kind == "vmagent":
        proc = subprocess.Popen(
            ["vmagent", f"-httpListenAddr=127.0.0.1:{port}", "-loggerLevel=ERROR",
             f"-remoteWrite.url=http://127.0.0.1:{vm_port}/api/v1/write",
             f"-remoteWrite.tmpDataPath={os.path.join(work, 'vmagent-queue')}"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_health(port, "vmagent")
        return proc, port, "/write?precision=ns"
    home = os.path.join(work, "pythond")
    os.makedirs(os.path.join(home, "conf.d"))
    os.makedirs(os.path.join(home, "python.d"))
    if kind.startswith("pythond-prw"):
        sink = ('[[sinks]]\ntype = "prometheus_remote_write"\n'
                f'url = "http://127.0.0.1:{vm_port}/api/v1/write"\n')
    else:
        sink = f'[[sinks]]\ntype = "influxdb"\nurl = "http://127.0.0.1:{vm_port}"\nbucket = "bench"\n'
    if kind.endswith("-fsync100ms"):
        sink += 'fsync = "100ms"\n'
    if os.environ.get("BENCH_CONCURRENCY"):
        sink += f'concurrency = {int(os.environ["BENCH_CONCURRENCY"])}\n'
    with open(os.path.join(home, "pythond.toml"), "w") as f:
        f.write(f'[http]\nlisten = "127.0.0.1:{port}"\n\n{sink}')
    command = [binary, "run", "--config", os.path.join(home, "pythond.toml")]
    if os.environ.get("BENCH_PERF"):
        # Profiling only: `perf report -i <BENCH_PERF>.<kind>` afterwards; the CPU
        # figures of such a run include perf's own overhead.
        command = ["perf", "record", "-q", "-F", os.environ.get("BENCH_PERF_HZ", "1999")] + os.environ.get("BENCH_PERF_ARGS", "").split() + ["-o",
                   f"{os.environ['BENCH_PERF']}.{label}", "--"] + command
    proc = subprocess.Popen(command,
                            cwd=home, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env={**os.environ, "RUST_LOG": "warn"})
    wait_health(port, "pythond")
    return proc, port, "/v1/write/metric?precision=ns"


def run(kind, total, work):
    work = os.path.join(work, kind)
    os.makedirs(work)
    vm_port = free_port()
    vm = subprocess.Popen(["victoria-metrics", f"-httpListenAddr=127.0.0.1:{vm_port}",
                           f"-storageDataPath={os.path.join(work, 'vm-data')}",
                           "-loggerLevel=ERROR"],
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_health(vm_port, "victoria-metrics")
    agent, port, path = start_agent(kind, work, vm_port)
    start_ns = (int(time.time()) - 1800) * 1_000_000_000
    shares = [bodies(total, c, start_ns) for c in range(CLIENTS)]
    sent = sum(b.count(b"\n") for share in shares for b in share)
    acked, errors = [], []
    try:
        cpu0 = cpu_seconds(agent.pid)
        t0 = time.time()
        threads = [threading.Thread(target=post_all, args=(port, path, share, acked, errors))
                   for share in shares]
        for t in threads:
            t.start()
        rows = 0
        deadline = t0 + 900
        while time.time() < deadline:
            rows = vm_rows_inserted(vm_port)
            if rows >= 2 * sent:
                break
            time.sleep(0.05)
        end = time.time()
        cpu = cpu_seconds(agent.pid)
        for t in threads:
            t.join()
        rss = status_mib(agent.pid, "VmHWM")
    finally:
        agent.send_signal(signal.SIGTERM)
        agent.wait(60)
        vm.send_signal(signal.SIGTERM)
        vm.wait(60)
    if rows < 2 * sent or errors:
        return {"agent": kind, "error": f"{rows // 2} of {sent} points arrived; "
                                        f"{len(errors)} client errors {errors[:3]}"}
    seconds = end - t0
    return {
        "agent": kind,
        "points": sent,
        "seconds": round(seconds, 2),
        "points_per_s_delivered": round(sent / seconds),
        "points_per_s_acknowledged": round(sent / (max(acked) - t0)),
        "agent_cpu_s_per_million_points": round((cpu - cpu0) / (sent / 1e6), 2),
        "agent_peak_rss_mib": round(rss, 1),
    }


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--points", type=int, default=1_000_000)
    parser.add_argument("--only", help="run only this agent (pythond-prw, pythond-influxdb, vmagent, ...)")
    args = parser.parse_args()
    if not os.path.exists(BIN):
        sys.exit(f"{BIN} missing: run `cargo build --release` first")
    for tool in ("victoria-metrics", "vmagent"):
        if not shutil.which(tool):
            sys.exit(f"{tool} missing: apt-get install victoria-metrics")
    kinds = ["pythond-prw", "pythond-influxdb", "vmagent"]
    if os.environ.get("FSYNC") == "100ms":
        kinds += ["pythond-prw-fsync100ms", "pythond-influxdb-fsync100ms"]
    if args.only:
        kinds = [args.only]
    if os.environ.get("BENCH_BASELINE"):
        kinds += ["baseline-" + k for k in kinds if k.startswith("pythond")]
    results = []
    loads = [os.getloadavg()[0]]
    for round_ in range(1, args.rounds + 1):
        for kind in kinds:
            work = tempfile.mkdtemp(prefix="pythond-fwd-")
            try:
                result = run(kind, args.points, work)
            finally:
                shutil.rmtree(work, ignore_errors=True)
            result["round"] = round_
            loads.append(os.getloadavg()[0])
            results.append(result)
            print(json.dumps(result), flush=True)
    summarize(kinds, results, loads)


def summarize(kinds, results, loads):
    """One line per agent with every round's figures, as the table lists them."""
    print(f"# load average (1 min) during the run: {min(loads):.1f}-{max(loads):.1f}")
    columns = [("delivered/s", "points_per_s_delivered", "{:,.0f}"),
               ("cpu s/M", "agent_cpu_s_per_million_points", "{:.2f}"),
               ("acked/s", "points_per_s_acknowledged", "{:,.0f}"),
               ("peak rss MiB", "agent_peak_rss_mib", "{:.0f}")]
    for kind in kinds:
        rows = [r for r in results if r["agent"] == kind]
        failed = [r["error"] for r in rows if "error" in r]
        rows = [r for r in rows if "error" not in r]
        parts = [f"{name} " + " · ".join(fmt.format(r[key]) for r in rows)
                 for name, key, fmt in columns]
        line = f"# {kind}: " + " | ".join(parts)
        if failed:
            line += f" | {len(failed)} round(s) failed: {failed[0]}"
        print(line, flush=True)


if __name__ == "__main__":
    main()
