"""What every benchmark in bench/ needs: the release binary, loopback ports, HTTP
gets, waiting for a server, and a process's CPU and memory read from /proc.

The benchmarks measure processes from the outside, as an operator would (see
docs/BENCHMARKS.md); these helpers are that outside view, written once.
Standard library only.
"""

import os
import socket
import sys
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join(ROOT, "target", "release", "pythond")
CLK_TCK = os.sysconf("SC_CLK_TCK")


def free_port():
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(url, timeout=60):
    """The body of a GET, as text."""
    with urllib.request.urlopen(url, timeout=timeout) as answer:
        return answer.read().decode("utf-8")


def wait_for(condition, within, what):
    """Polls `condition` until it is true; exits naming `what` after `within` s."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise SystemExit("timed out waiting for " + what)


def wait_health(port, what, within=60):
    """Waits until `http://127.0.0.1:<port>/health` answers (pythond and
    VictoriaMetrics both serve it)."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            get("http://127.0.0.1:%d/health" % port)
            return
        except OSError:
            time.sleep(0.1)
    sys.exit("%s did not come up on port %d" % (what, port))


def cpu_seconds(pid):
    """User + system CPU seconds of a live process, from /proc/<pid>/stat."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def status_mib(pid, key="VmRSS"):
    """A memory line of /proc/<pid>/status (`VmRSS`, `VmHWM`, ...) in MiB; 0 if gone."""
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return 0.0


def children(pid):
    """Direct children of every thread of `pid` (the agent's worker processes)."""
    found = []
    try:
        tasks = os.listdir("/proc/%d/task" % pid)
    except OSError:
        return found
    for task in tasks:
        try:
            with open("/proc/%d/task/%s/children" % (pid, task)) as f:
                found += [int(c) for c in f.read().split()]
        except OSError:
            pass
    return found


def dir_bytes(path):
    """Bytes of every file below `path`."""
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(path) for f in fs)


def vm_rows_inserted(port, kind=None):
    """VictoriaMetrics' `vm_rows_inserted_total`, of one `type` or of all."""
    prefix = 'vm_rows_inserted_total{type="%s"}' % kind if kind else "vm_rows_inserted_total{"
    total = 0
    for line in get("http://127.0.0.1:%d/metrics" % port).splitlines():
        if line.startswith(prefix):
            total += int(float(line.split()[-1]))
    return total
