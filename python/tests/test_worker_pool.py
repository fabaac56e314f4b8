"""The instance pool (``pythond_pool.py``) driven through the real runner: the agent's
``instances`` command schedules (plugin, instance) objects that run on their own,
report batched ``runs`` with due and start times, time out without stopping the
others, obey ``pause``, and get ``init``/``deinit`` per object."""

import json
import time
import unittest

from harness import TempPlugins, WorkerProcess, wait_until

PLUGINS = """
import os, time
from datakit_framework import DataKitFramework

class Probe(DataKitFramework):
    name = "probe"

    def init(self, options):
        self.host = options["host"]
        self.count = 0

    def run(self):
        self.count += 1
        if self.instance == "stuck":
            while True:
                time.sleep(1)
        self.report({"M": [{"measurement": "probe", "tags": {"host": self.host},
                            "fields": {"count": self.count}}]})

    def deinit(self):
        print("deinit %s" % self.instance)
"""

POOL = json.dumps({"options": {}, "plugins": {}, "pool": {"concurrency": 2}})


def entry(name, interval=0.2, timeout=5.0, first=None, host=None):
    return {"plugin": "probe.Probe", "instance": name, "options": {"host": host or name},
            "tags": {"site": name.upper()}, "interval": interval, "timeout": timeout,
            "first": time.time() if first is None else first}


class PoolTest(unittest.TestCase):

    def start(self):
        tmp = TempPlugins({"probe.py": PLUGINS})
        self.addCleanup(tmp.cleanup)
        worker = WorkerProcess([tmp.root], env={"PYTHOND_OPTIONS": POOL})
        self.addCleanup(worker.close)
        hello = worker.hello()
        self.assertEqual([p["id"] for p in hello["plugins"]], ["probe.Probe"])
        self.assertEqual(hello["errors"], [], "no init before hello in a pooled worker")
        return worker

    def records(self, worker, name):
        return [r for f in worker.frames_of("runs") for r in f["runs"] if r["instance"] == name]

    def test_instances_run_on_their_own_with_their_options_tags_and_times(self):
        worker = self.start()
        worker.send({"t": "instances", "set": [entry("a"), entry("b", host="db-b")], "remove": []})
        wait_until(lambda: len(self.records(worker, "a")) >= 3 and len(self.records(worker, "b")) >= 3,
                   what="three runs of each instance")
        reports = worker.frames_of("report", "probe.Probe@b")
        point = reports[0]["data"]["M"][0]
        self.assertEqual(point["tags"], {"host": "db-b", "site": "B"})
        # One object per instance: its counter counts its own runs.
        self.assertEqual([r["data"]["M"][0]["fields"]["count"] for r in reports[:3]], [1, 2, 3])
        for record in self.records(worker, "a"):
            self.assertTrue(record["ok"], record)
            self.assertGreaterEqual(record["started"], record["due"])
        dues = [r["due"] for r in self.records(worker, "a")[:3]]
        self.assertAlmostEqual(dues[1] - dues[0], 0.2, places=3, msg="fixed rate")

        # Removing one instance deinits it; the other keeps running.
        worker.send({"t": "instances", "set": [], "remove": [{"plugin": "probe.Probe", "instance": "a"}]})
        worker.wait_frame(lambda f: f["t"] == "log" and f["line"] == "deinit a", what="deinit of a")
        seen = len(self.records(worker, "b"))
        wait_until(lambda: len(self.records(worker, "b")) >= seen + 2, what="b keeps running")

    def test_a_stuck_run_times_out_alone_and_pause_holds_an_instance(self):
        worker = self.start()
        worker.send({"t": "instances", "set": [entry("stuck", interval=0.5, timeout=0.3), entry("ok")],
                     "remove": []})
        timeout = worker.wait_frame(lambda f: f["t"] == "timeout", what="a timeout frame")
        self.assertEqual((timeout["instance"], timeout["abandoned"]), ("stuck", 1))
        # The pool keeps its size: with two threads and one abandoned, ok still runs.
        seen = len(self.records(worker, "ok"))
        wait_until(lambda: len(self.records(worker, "ok")) >= seen + 3, what="ok keeps running")
        worker.wait_frame(lambda f: f["t"] == "timeout" and f["run"] == 2, what="the next run hangs too")

        worker.send({"t": "pause", "plugin": "probe.Probe", "instance": "ok", "until": time.time() + 3600})
        paused_at = len(self.records(worker, "ok"))
        timeouts = len(worker.frames_of("timeout"))
        wait_until(lambda: len(worker.frames_of("timeout")) > timeouts, what="the stuck one goes on")
        # At most the run already under way when the pause arrived.
        self.assertLessEqual(len(self.records(worker, "ok")), paused_at + 1, "no runs while paused")


if __name__ == "__main__":
    unittest.main()
