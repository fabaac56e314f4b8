#encoding: utf-8
"""Process count and memory by name, from /proc (Linux).

Every run reports one metric point per configured name, even when no process matches
(count=0 is what an alert on a dead daemon needs):

    measurement  procs
    tags         name
    fields       count        processes whose name matches
                 rss_bytes    their resident memory, summed (kernel threads: 0)
                 threads      their threads, summed

A process matches `name` when its command name (/proc/PID/comm, what `ps -e` and
`pgrep` show) equals it, or when the base name of its executable (first word of its
command line) does. Processes that exit while being read are skipped.

Settings (from the input's options, else the environment set with the input's `envs`):

    names   PROCS_NAMES   comma-separated process names (required; none = nothing reported)

Example input (conf.d/procs.conf):

    [[inputs.pythond]]
      name = "procs"
      cmd  = "python3"
      dirs = ["/usr/lib/pythond/python.d/procs"]
      interval = "15s"
      envs = ["PROCS_NAMES=sshd,nginx,postgres"]

Standard library only; Python 3.8+.
"""

import os

from datakit_framework import DataKitFramework
from pythond_settings import as_list, setting

PROC = "/proc"


def _read(path, mode="r"):
    with open(path, mode) as f:
        return f.read()


def _process(pid):
    """(names, rss_bytes, threads) of one process; raises OSError if it is gone."""
    base = os.path.join(PROC, pid)
    comm = _read(os.path.join(base, "comm")).strip()
    cmdline = _read(os.path.join(base, "cmdline"), "rb").split(b"\0", 1)[0]
    names = {comm}
    if cmdline:
        names.add(os.path.basename(cmdline.decode("utf-8", "replace")))
    rss = 0
    threads = 0
    for line in _read(os.path.join(base, "status")).splitlines():
        if line.startswith("VmRSS:"):
            rss = int(line.split()[1]) * 1024  # reported in kB
        elif line.startswith("Threads:"):
            threads = int(line.split()[1])
    return names, rss, threads


class Procs(DataKitFramework):
    name = "procs"
    interval = 15

    def run(self):
        wanted = as_list(setting(self, "names", "PROCS_NAMES", ""))
        if not wanted:
            print("procs: no process names configured: set option `names` (in [inputs.pythond.options]) or the variable PROCS_NAMES (in the input's envs); nothing to do")
            return
        totals = {name: {"count": 0, "rss_bytes": 0, "threads": 0} for name in wanted}
        for pid in os.listdir(PROC):
            if not pid.isdigit():
                continue
            try:
                names, rss, threads = _process(pid)
            except (OSError, ValueError, IndexError):
                continue  # exited meanwhile, or not ours to read
            for name in names & totals.keys():
                totals[name]["count"] += 1
                totals[name]["rss_bytes"] += rss
                totals[name]["threads"] += threads
        self.report({"M": [{"measurement": "procs", "tags": {"name": name}, "fields": fields}
                           for name, fields in totals.items()]})
