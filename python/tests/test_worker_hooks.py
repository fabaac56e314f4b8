"""Options and lifecycle hooks in the runner: ``$PYTHOND_OPTIONS`` becomes
``self.options`` (and leaves the environment), ``init`` decides whether a plugin
starts, disabled plugins refuse runs, ``--only`` and ``--discover`` for
``isolation = "plugin"``, and ``request_exit``/``deinit`` at ``shutdown``."""

import json
import unittest

from harness import TempPlugins, WorkerProcess

PLUGINS = """
import os
from datakit_framework import DataKitFramework

class Good(DataKitFramework):
    name = "good"

    def init(self, options):
        self.inited = options

    def run(self):
        self.feed_metric(measurement="good", fields={
            "inited": int(hasattr(self, "inited")),
            "env_has_options": int("PYTHOND_OPTIONS" in os.environ),
            "port": self.options["port"]})

class Refuses(DataKitFramework):
    name = "refuses"

    def init(self, options):
        raise RuntimeError("no port configured")

    def run(self):
        pass

class Off(DataKitFramework):
    name = "off"

    def run(self):
        pass
"""

OPTIONS = json.dumps({"options": {"port": 5432},
                      "plugins": {"off": {"enabled": False, "options": {}},
                                  "plugins.Good": {"enabled": True, "options": {"port": 6543}}}})


class HooksTest(unittest.TestCase):

    def start(self, *args):
        tmp = TempPlugins({"plugins.py": PLUGINS})
        self.addCleanup(tmp.cleanup)
        worker = WorkerProcess([tmp.root], args=args, env={"PYTHOND_OPTIONS": OPTIONS})
        self.addCleanup(worker.close)
        return worker, worker.hello()

    def test_options_init_and_disabled_plugins(self):
        worker, hello = self.start()
        ids = [p["id"] for p in hello["plugins"]]
        self.assertEqual(ids, ["plugins.Good", "plugins.Off"])
        self.assertTrue(any("no port configured" in e["message"] and "Refuses.init() failed" in e["message"]
                            for e in hello["errors"]), hello["errors"])
        self.assertTrue(worker.run_and_wait("plugins.Good", 1)["ok"])
        fields = worker.frames_of("report", "plugins.Good")[0]["data"]["M"][0]["fields"]
        self.assertEqual(fields, {"inited": 1, "env_has_options": 0, "port": 6543})
        done = worker.run_and_wait("plugins.Off", 1)
        self.assertEqual(done["error"]["type"], "Disabled")

    def test_only_serves_one_plugin_and_discover_calls_no_init(self):
        worker, hello = self.start("--only", "plugins.Off")
        self.assertEqual([p["id"] for p in hello["plugins"]], ["plugins.Off"])
        worker, hello = self.start("--discover")
        self.assertEqual([p["id"] for p in hello["plugins"]], ["plugins.Good", "plugins.Refuses", "plugins.Off"])
        self.assertEqual(hello["errors"], [])


if __name__ == "__main__":
    unittest.main()
