#encoding: utf-8
"""The demo collector shipped with pythond.

`pythond run` from the repository root loads conf.d/demo.conf, which runs every
collector in python.d/demo/ -- this file -- every 10 seconds. It reports the host's
load averages and a few facts about this worker process as metrics, and one log line.

Writing your own collector is the same as for DataKit's pythond input:

1. Create python.d/<dir>/<anything>.py (helpers next to it can be imported by name).
2. Subclass DataKitFramework, set `name` and `interval` (seconds), implement run().
3. In run(), call self.report({'M': [...points...]}) -- 'L' for logging, 'O' object,
   'CO' custom object, 'E' keyevent, 'R' rum -- or a helper such as
   self.feed_metric(measurement=..., tags={...}, fields={...}).
   A point is {"measurement": str, "tags": {str: str}, "fields": {str: int|float|bool|str},
   "time": optional timestamp}; leave "time" out to mean "now".
4. Try it with `pythond check python.d/<dir>`, then add an [[inputs.pythond]] with
   dirs = ["<dir>"] to conf.d/.

Anything run() prints ends up in the agent's log, tagged with the collector.
"""

import os
import platform
import socket
import time

from datakit_framework import DataKitFramework


class Demo(DataKitFramework):
    name = "demo"
    interval = 10  # seconds between runs

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.runs = 0
        self.started = time.time()
        self.host = socket.gethostname()

    def run(self):
        self.runs += 1
        tags = {"host": self.host, "os": platform.system().lower()}
        points = []

        if hasattr(os, "getloadavg"):  # not on Windows
            load1, load5, load15 = os.getloadavg()
            cpus = os.cpu_count() or 1
            points.append({
                "measurement": "demo_load",
                "tags": tags,
                "fields": {
                    "load1": round(load1, 3),
                    "load5": round(load5, 3),
                    "load15": round(load15, 3),
                    "cpus": cpus,
                    # Load per CPU is what tells a busy host from a big one.
                    "load1_per_cpu": round(load1 / cpus, 3),
                },
            })

        points.append({
            "measurement": "demo_worker",
            "tags": tags,
            "fields": {
                "runs": self.runs,
                "uptime_seconds": round(time.time() - self.started, 3),
                "pid": os.getpid(),
            },
        })

        self.report({"M": points})
        self.feed_logging(
            source="demo",
            tags=tags,
            message="demo collector run %d on %s" % (self.runs, self.host),
            status="info",
        )
        print("demo: reported %d metric points (run %d)" % (len(points), self.runs))
