"""zenpython data source plugins under the real worker runner: import paths, the
collect -> onResult -> onSuccess/onError -> onComplete chain (plain and with a Twisted
Deferred on the reactor thread), cleanup() at stop, and results -> points."""

import json
import os
import tempfile
import unittest

from harness import TempPlugins, WorkerProcess, read_lines

DSPLUGINS = '''
import logging
import os
import time

from Products.DataCollector.plugins.DataMaps import ObjectMap, RelationshipMap
from Products.ZenEvents import ZenEventClasses
from Products.ZenUtils.Utils import prepId
from ZenPacks.zenoss.PythonCollector.datasources.PythonDataSource import PythonDataSourcePlugin

log = logging.getLogger("zen.MyZenPack")
NOTES = os.environ["ZEN_NOTES"]


def note(text):
    with open(NOTES, "a") as f:
        f.write(text + "\\n")


class DiskPlugin(PythonDataSourcePlugin):
    """Synchronous: values, an event and maps, straight from collect()."""

    proxy_attributes = ("zDiskWarn",)

    @classmethod
    def params(cls, datasource, context):
        return {"mount": "/"}

    def collect(self, config):
        ds = config.datasources[0]
        note("collect %s %s %s" % (config.id, ds.params.get("mount"), ds.zDiskWarn))
        data = self.new_data()
        data["values"][None]["load"] = 0.5
        data["values"][prepId("/var/log")]["used"] = (81.5, 1700000000)
        data["events"].append({"device": config.id, "component": prepId("/var/log"),
                               "severity": ZenEventClasses.Warning, "eventKey": "disk-used",
                               "eventClassKey": "DiskUsage", "summary": "/var/log is 81% full"})
        data["maps"].append(ObjectMap({"id": "var_log", "mount": "/var/log", "total": 1024}, modname="ZenPacks.x.FileSystem"))
        data["maps"].append(RelationshipMap(relname="interfaces", modname="ZenPacks.x.Interface",
                                            objmaps=[{"id": "eth0", "speed": 1000}]))
        return data

    def onSuccess(self, result, config):
        note("onSuccess")
        result["events"].append({"device": config.id, "severity": ZenEventClasses.Clear,
                                 "eventKey": "collect", "summary": "collected"})
        return result

    def onComplete(self, result, config):
        note("onComplete")
        return result

    def cleanup(self, config):
        note("cleanup %s" % config.id)


class FailingPlugin(PythonDataSourcePlugin):
    """collect() raises: onError turns the failure into an error event."""

    def collect(self, config):
        raise IOError("connection refused by %s" % config.manageIp)

    def onError(self, result, config):
        note("onError %s" % result.getErrorMessage())
        data = self.new_data()
        data["events"].append({"device": config.id, "severity": ZenEventClasses.Error,
                               "eventKey": "collect", "summary": "failed: %s" % result.getErrorMessage()})
        return data
'''

DEFERRED = '''
import os
from twisted.internet import reactor, task
from twisted.python import threadable
from ZenPacks.zenoss.PythonCollector.datasources.PythonDataSource import PythonDataSourcePlugin


class LaterPlugin(PythonDataSourcePlugin):
    """collect() returns a Deferred that fires later on the reactor."""

    def collect(self, config):
        assert threadable.isInIOThread(), "collect() must run on the reactor thread"
        data = self.new_data()
        data["values"][""]["answer"] = 42
        return task.deferLater(reactor, 0.05, lambda: data)

    def onSuccess(self, result, config):
        with open(os.environ["ZEN_NOTES"], "a") as f:
            f.write("deferred onSuccess in reactor: %s\\n" % threadable.isInIOThread())
        return result
'''


class ZenPythonTest(unittest.TestCase):

    def setUp(self):
        self.state = tempfile.mkdtemp(prefix="pythond-zen-")
        self.notes = os.path.join(self.state, "notes")

    def start(self, files, devices=None, env=None):
        tmp = TempPlugins(files)
        self.addCleanup(tmp.cleanup)
        environment = {"ZEN_NOTES": self.notes,
                       "PYTHOND_KINDS": json.dumps({"zenpython_devices": devices, "state_dir": self.state}),
                       "PYTHOND_OPTIONS": json.dumps({"options": {"mount": "/"}, "plugins": {}})}
        environment.update(env or {})
        worker = WorkerProcess([tmp.root], env=environment)
        self.addCleanup(worker.close)
        return worker, worker.hello()

    def points(self, worker, category, plugin):
        out = []
        for frame in worker.frames_of("report", plugin):
            out.extend(frame["data"].get(category, []))
        return out

    def check_sync_results(self, worker, hello):
        self.assertEqual(hello["errors"], [])
        kinds = dict((p["id"], (p["kind"], p["interval"])) for p in hello["plugins"])
        self.assertEqual(kinds, {"mypack.dsplugins.DiskPlugin": ("zenpython", 60.0),
                                 "mypack.dsplugins.FailingPlugin": ("zenpython", 60.0)})
        done = worker.run_and_wait("mypack.dsplugins.DiskPlugin")
        self.assertTrue(done["ok"], done)
        metrics = self.points(worker, "M", "mypack.dsplugins.DiskPlugin")
        self.assertEqual(metrics, [
            {"measurement": "disk", "tags": {"device": "web01"}, "fields": {"load": 0.5}},
            {"measurement": "disk", "tags": {"device": "web01", "component": "var_log"},
             "fields": {"used": 81.5}, "time": 1700000000 * 10 ** 9},
        ])
        events = self.points(worker, "E", "mypack.dsplugins.DiskPlugin")
        self.assertEqual([(e["fields"]["df_status"], e["fields"]["df_event_id"], e["fields"]["df_title"])
                          for e in events],
                         [("warning", "disk-used", "/var/log is 81% full"), ("ok", "collect", "collected")])
        self.assertEqual(events[0]["tags"], {"device": "web01", "component": "var_log"})
        objects = self.points(worker, "O", "mypack.dsplugins.DiskPlugin")
        self.assertEqual([(o["measurement"], o["tags"]) for o in objects], [
            ("FileSystem", {"name": "var_log", "device": "web01"}),
            ("Interface", {"name": "eth0", "device": "web01", "relname": "interfaces"}),
        ])
        self.assertEqual(objects[0]["fields"]["mount"], "/var/log")
        failed = worker.run_and_wait("mypack.dsplugins.FailingPlugin", 2)
        self.assertTrue(failed["ok"], failed)  # onError handled it
        [error] = self.points(worker, "E", "mypack.dsplugins.FailingPlugin")
        self.assertEqual(error["fields"]["df_status"], "error")
        self.assertEqual(error["fields"]["df_title"], "failed: connection refused by 10.0.0.5")
        worker.send({"t": "shutdown", "grace": 5.0})
        self.assertEqual(worker.wait_exit(), 0)
        lines = read_lines(self.notes)
        self.assertEqual(lines[:3], ["collect web01 /var zDiskWarn-90", "onSuccess", "onComplete"])
        self.assertIn("onError connection refused by 10.0.0.5", lines)
        self.assertEqual(lines[-1], "cleanup web01")

    DEVICES = [{"id": "web01", "manageIp": "10.0.0.5", "datasource": "disk", "cycletime": 60,
                "params": {"mount": "/var"}, "zDiskWarn": "zDiskWarn-90"}]

    def test_sync_plugin_with_twisted_installed(self):
        worker, hello = self.start({"mypack/dsplugins.py": DSPLUGINS}, devices=self.DEVICES)
        self.check_sync_results(worker, hello)

    def test_sync_plugin_without_twisted(self):
        # A twisted package that cannot be imported, first on the path: the runner
        # falls back to its own callback chain and Failure.
        hide = tempfile.mkdtemp(prefix="pythond-no-twisted-")
        os.makedirs(os.path.join(hide, "twisted"))
        with open(os.path.join(hide, "twisted", "__init__.py"), "w") as f:
            f.write("raise ImportError('twisted is hidden for this test')\n")
        worker, hello = self.start({"mypack/dsplugins.py": DSPLUGINS}, devices=self.DEVICES,
                                   env={"PYTHONPATH": hide})
        self.check_sync_results(worker, hello)

    def test_unhandled_failure_fails_the_run(self):
        source = DSPLUGINS.replace("    def onError(self, result, config):", "    def _unused(self, result, config):")
        worker, _ = self.start({"mypack/dsplugins.py": source}, devices=self.DEVICES)
        done = worker.run_and_wait("mypack.dsplugins.FailingPlugin")
        self.assertFalse(done["ok"])
        self.assertIn("connection refused by 10.0.0.5", done["error"]["message"])

    def test_deferred_collect_runs_on_the_reactor(self):
        worker, hello = self.start({"later.py": DEFERRED})
        self.assertEqual([p["kind"] for p in hello["plugins"]], ["zenpython"])
        self.assertEqual(hello["plugins"][0]["interval"], 300.0)  # zenpython's default cycle
        done = worker.run_and_wait("later.LaterPlugin")
        self.assertTrue(done["ok"], done)
        [point] = self.points(worker, "M", "later.LaterPlugin")
        self.assertEqual(point["fields"], {"answer": 42})
        self.assertEqual(point["measurement"], "LaterPlugin")
        self.assertEqual(read_lines(self.notes), ["deferred onSuccess in reactor: True"])

    def test_every_device_is_collected_in_one_cycle(self):
        worker, _ = self.start({"later.py": DEFERRED}, devices=[{"id": "a"}, {"id": "b"}])
        done = worker.run_and_wait("later.LaterPlugin")
        self.assertTrue(done["ok"], done)
        points = self.points(worker, "M", "later.LaterPlugin")
        self.assertEqual(sorted(p["tags"]["device"] for p in points), ["a", "b"])


class InstanceMappingTest(unittest.TestCase):
    """Under an input with instances every collector object has ``self.instance``
    (its instance's name) and that instance's options: a zenpython plugin then
    collects for the one device the instance describes, and a syslog-ng driver's
    Persist stores are the instance's own."""

    def test_one_device_per_instance(self):
        import pythond_kinds
        from ZenPacks.zenoss.PythonCollector.datasources.PythonDataSource import PythonDataSourcePlugin

        class Probe(PythonDataSourcePlugin):
            def collect(self, config):
                return self.new_data()

        adapter = pythond_kinds.new_collector(Probe, pythond_kinds.KIND_ZENPYTHON)
        adapter.instance = "db-2"
        self.assertTrue(adapter.init({"manageIp": "10.0.0.2", "port": 5432, "zDbUser": "mon"}))
        [(plugin, config)] = adapter.devices
        self.assertIsInstance(plugin, Probe)
        self.assertEqual((config.id, config.manageIp), ("db-2", "10.0.0.2"))
        ds = config.datasources[0]
        self.assertEqual(ds.params, {"port": 5432, "zDbUser": "mon"})
        self.assertEqual((ds.zDbUser, config.zDbUser), ("mon", "mon"))

    def test_persist_of_an_instance_is_its_own(self):
        import syslogng
        state = tempfile.mkdtemp(prefix="pythond-persist-")
        syslogng._persist_dir, syslogng._input_name = state, "in"
        try:
            with syslogng._instance_scope("db-2"):
                mine = syslogng.Persist("cursor", defaults={"after": 1})
            other = syslogng.Persist("cursor", defaults={"after": 7})
            self.assertEqual((mine["after"], other["after"]), (1, 7))
            self.assertEqual(mine.path, os.path.join(state, "in", "@db-2", "cursor.json"))
            self.assertEqual(other.path, os.path.join(state, "in", "cursor.json"))
        finally:
            syslogng._persist_dir, syslogng._input_name = None, "default"


if __name__ == "__main__":
    unittest.main()
