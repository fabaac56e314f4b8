"""Collector discovery by the real runner, as seen in its ``hello`` frame.

DataKit's rules (``*.py`` in a dir or one level below, not ``__init__.py``, module
``stem`` / ``subdir.stem``, dirs on ``sys.path``, every DataKitFramework subclass
instantiated once) plus pythond's improvements: a class imported into several modules
runs once, a missing or falsy interval means 10 s, and a module that cannot be loaded
becomes an error entry with file and line while its neighbours load.
"""

import os
import unittest

from harness import TempPlugins, WorkerProcess

GOOD = """
from datakit_framework import DataKitFramework

class Good(DataKitFramework):
    name = "good"
    interval = 5

    def run(self):
        self.feed_metric(measurement="good", fields={"v": 1})
"""


class DiscoveryTest(unittest.TestCase):

    def start(self, *paths, **kwargs):
        worker = WorkerProcess(paths, **kwargs)
        self.addCleanup(worker.close)
        return worker

    def plugins(self, tmp_files, *extra_paths):
        tmp = TempPlugins(tmp_files)
        self.addCleanup(tmp.cleanup)
        worker = self.start(tmp.root, *extra_paths)
        hello = worker.hello()
        return tmp, worker, hello

    def test_hello_is_the_first_frame_and_describes_plugins(self):
        tmp, worker, hello = self.plugins({"good.py": GOOD})
        self.assertIs(worker.frames[0], hello)
        self.assertEqual(hello["v"], 1)
        self.assertEqual(hello["pid"], worker.proc.pid)
        self.assertTrue(hello["python"].startswith("3."))
        self.assertEqual(hello["errors"], [])
        self.assertEqual(hello["plugins"], [{
            "id": "good.Good", "name": "good", "class": "Good", "module": "good",
            "file": tmp.path("good.py"), "interval": 5.0, "long_running": False,
            "kind": "datakit"}])

    def test_sibling_imports_and_subdir_modules(self):
        tmp, worker, hello = self.plugins({
            "helper.py": "VALUE = 42\n",
            "main.py": """
                from datakit_framework import DataKitFramework
                from helper import VALUE

                class Main(DataKitFramework):
                    def run(self):
                        self.feed_metric(measurement="main", fields={"v": VALUE})
            """,
            "sub/tool.py": "FACTOR = 3\n",
            "sub/nested.py": """
                from datakit_framework import DataKitFramework
                from tool import FACTOR          # a sibling inside the subdirectory

                class Nested(DataKitFramework):
                    interval = 7

                    def run(self):
                        self.feed_metric(measurement="nested", fields={"v": FACTOR})
            """,
            "sub/deeper/too_deep.py": """
                from datakit_framework import DataKitFramework

                class TooDeep(DataKitFramework):
                    def run(self):
                        pass
            """,
        })
        self.assertEqual(hello["errors"], [])
        by_id = {p["id"]: p for p in hello["plugins"]}
        self.assertEqual(sorted(by_id), ["main.Main", "sub.nested.Nested"])
        self.assertEqual(by_id["sub.nested.Nested"]["module"], "sub.nested")
        self.assertEqual(by_id["sub.nested.Nested"]["file"], tmp.path("sub", "nested.py"))
        self.assertEqual(by_id["sub.nested.Nested"]["interval"], 7.0)
        for plugin_id, measurement, value in (("main.Main", "main", 42), ("sub.nested.Nested", "nested", 3)):
            self.assertTrue(worker.run_and_wait(plugin_id)["ok"])
            report = worker.wait_frame(lambda f: f["t"] == "report" and f["plugin"] == plugin_id)
            self.assertEqual(report["data"]["M"][0]["measurement"], measurement)
            self.assertEqual(report["data"]["M"][0]["fields"], {"v": value})

    def test_init_files_are_not_collector_modules(self):
        tmp, worker, hello = self.plugins({
            "__init__.py": "raise RuntimeError('the root __init__.py must not be imported')\n",
            "pkg/__init__.py": """
                from datakit_framework import DataKitFramework

                class FromInit(DataKitFramework):
                    def run(self):
                        pass
            """,
            "pkg/mod.py": GOOD,
        })
        self.assertEqual(hello["errors"], [])
        self.assertEqual([p["id"] for p in hello["plugins"]], ["pkg.mod.Good"])

    def test_a_class_imported_into_several_modules_runs_once(self):
        tmp, worker, hello = self.plugins({
            "common.py": """
                from datakit_framework import DataKitFramework

                class Shared(DataKitFramework):
                    def run(self):
                        print("shared ran")
            """,
            "a.py": "from common import Shared\n",
            "b.py": "from common import Shared\nimport common\n",
            # sub/x.py imports its sibling by plain name, so sub/y.py is loaded twice
            # (as "y" and as "sub.y"): still one collector.
            "sub/x.py": "import y\n",
            "sub/y.py": """
                from datakit_framework import DataKitFramework

                class Twice(DataKitFramework):
                    def run(self):
                        pass
            """,
        })
        self.assertEqual(hello["errors"], [])
        classes = sorted(p["class"] for p in hello["plugins"])
        self.assertEqual(classes, ["Shared", "Twice"])
        shared = [p for p in hello["plugins"] if p["class"] == "Shared"][0]
        self.assertEqual(shared["id"], "common.Shared")

    def test_shared_base_classes_without_run_are_not_collectors(self):
        tmp, worker, hello = self.plugins({
            "base.py": """
                from datakit_framework import DataKitFramework

                class Base(DataKitFramework):
                    def helper(self):
                        return 1
            """,
            "impl.py": """
                from base import Base

                class Impl(Base):
                    def run(self):
                        pass
            """,
        })
        self.assertEqual([p["id"] for p in hello["plugins"]], ["impl.Impl"])

    def test_intervals(self):
        tmp, worker, hello = self.plugins({
            "intervals.py": """
                from datakit_framework import DataKitFramework

                class Missing(DataKitFramework):
                    def run(self): pass

                class Zero(DataKitFramework):
                    interval = 0
                    def run(self): pass

                class Nothing(DataKitFramework):
                    interval = None
                    def run(self): pass

                class Fractional(DataKitFramework):
                    interval = 2.5
                    def run(self): pass

                class Words(DataKitFramework):
                    interval = "often"
                    def run(self): pass

                class Negative(DataKitFramework):
                    interval = -3
                    def run(self): pass

                class LongRunning(DataKitFramework):
                    long_running = True
                    def run(self): pass
            """,
        })
        intervals = {p["class"]: p["interval"] for p in hello["plugins"]}
        self.assertEqual(intervals, {"Missing": 10.0, "Zero": 10.0, "Nothing": 10.0, "Fractional": 2.5,
                                     "Words": 10.0, "Negative": 10.0, "LongRunning": 10.0})
        self.assertTrue(all(isinstance(v, float) for v in intervals.values()))
        self.assertEqual([p["long_running"] for p in hello["plugins"] if p["class"] == "LongRunning"], [True])
        problems = sorted(e["message"] for e in hello["errors"])
        self.assertEqual(len(problems), 2)
        self.assertTrue(problems[0].startswith("Negative.interval = -3"))
        self.assertTrue(problems[1].startswith("Words.interval = 'often' is str"))
        words = [e for e in hello["errors"] if e["message"].startswith("Words")][0]
        self.assertEqual((words["file"], words["line"]), (tmp.path("intervals.py"), 19))  # the "interval =" line

    def test_old_style_names_and_metaclasses(self):
        tmp, worker, hello = self.plugins({
            "old.py": """
                import abc
                from datakit_framework import DataKitFramework

                class Demo(DataKitFramework):
                    __name = 'Demo'
                    interval = 10

                    def run(self):
                        self.feed_metric(measurement=self.__name, fields={"v": 1})

                class WithMeta(DataKitFramework, metaclass=abc.ABCMeta):
                    name = "with-meta"

                    def run(self):
                        pass
            """,
        })
        names = {p["class"]: p["name"] for p in hello["plugins"]}
        self.assertEqual(names, {"Demo": "Demo", "WithMeta": "with-meta"})
        self.assertTrue(worker.run_and_wait("old.Demo")["ok"])
        report = worker.wait_frame(lambda f: f["t"] == "report")
        self.assertEqual(report["data"]["M"][0]["measurement"], "Demo")

    def test_broken_modules_are_errors_with_file_and_line_beside_good_ones(self):
        tmp, worker, hello = self.plugins({
            "good.py": GOOD,
            "syntax.py": "import os\n\ndef broken(:\n    pass\n",
            "missing.py": "import os\nimport no_such_package_for_pythond_tests\n",
            "raises.py": """
                import os

                def configure():
                    raise KeyError("DB_HOST")

                configure()
            """,
            "exits.py": "import sys\nsys.exit(3)\n",
            "ctor.py": """
                from datakit_framework import DataKitFramework

                class Ctor(DataKitFramework):
                    def __init__(self):
                        super().__init__()
                        self.conn = open("/nonexistent/pythond/config")

                    def run(self):
                        pass
            """,
        })
        self.assertEqual([p["id"] for p in hello["plugins"]], ["good.Good"])
        errors = {e["module"]: e for e in hello["errors"]}
        self.assertEqual(sorted(errors), ["ctor", "exits", "missing", "raises", "syntax"])
        expected = {
            "syntax": (tmp.path("syntax.py"), 3, "SyntaxError: "),
            "missing": (tmp.path("missing.py"), 2, "ModuleNotFoundError: No module named "
                                                   "'no_such_package_for_pythond_tests'"),
            "raises": (tmp.path("raises.py"), 4, "KeyError: 'DB_HOST'"),
            "exits": (tmp.path("exits.py"), 2, "SystemExit: 3"),
            "ctor": (tmp.path("ctor.py"), 6, "Ctor() failed: FileNotFoundError: "),
        }
        for module, (file, line, message) in expected.items():
            with self.subTest(module):
                error = errors[module]
                self.assertEqual((error["file"], error["line"]), (file, line))
                self.assertTrue(error["message"].startswith(message), error["message"])
                self.assertIn("Traceback" if module != "syntax" else "SyntaxError", error["traceback"])
        # The worker still serves its good plugin.
        self.assertTrue(worker.run_and_wait("good.Good")["ok"])

    def test_syntax_error_in_an_imported_helper_points_at_the_helper(self):
        tmp, worker, hello = self.plugins({
            "uses_helper.py": "import os\nimport badhelper\n",
            "sub/badhelper.py": "x = (\n",
        })
        error = [e for e in hello["errors"] if e["module"] == "uses_helper"][0]
        self.assertEqual((error["file"], error["line"]), (tmp.path("sub", "badhelper.py"), 1))

    def test_paths_files_and_missing_paths(self):
        tmp = TempPlugins({"single/solo.py": GOOD.replace("Good", "Solo"), "dir/good.py": GOOD,
                           "single/ignored.py": GOOD.replace("Good", "Ignored"), "notes.txt": "hi\n"})
        self.addCleanup(tmp.cleanup)
        missing = tmp.path("does", "not", "exist")
        worker = self.start(tmp.path("single", "solo.py"), missing, tmp.path("dir"), tmp.path("notes.txt"))
        hello = worker.hello()
        self.assertEqual(sorted(p["id"] for p in hello["plugins"]), ["good.Good", "solo.Solo"])
        errors = {e["file"]: e["message"] for e in hello["errors"]}
        self.assertEqual(errors, {missing: "no such file or directory",
                                  tmp.path("notes.txt"): "not a directory or a .py file"})
        self.assertTrue(worker.run_and_wait("solo.Solo")["ok"])

    def test_module_names_that_clash(self):
        tmp, worker, hello = self.plugins({
            "json.py": GOOD,                  # the runner already imported the stdlib json
            "datakit_framework.py": "raise RuntimeError('a copy of the framework must not load')\n",
            "uses_framework.py": GOOD.replace("Good", "UsesFramework"),
        })
        self.assertEqual([p["id"] for p in hello["plugins"]], ["uses_framework.UsesFramework"])
        self.assertEqual(len(hello["errors"]), 1)
        self.assertEqual(hello["errors"][0]["module"], "json")
        self.assertIn("already taken", hello["errors"][0]["message"])

    def test_collector_files_never_shadow_stdlib_modules(self):
        tmp, worker, hello = self.plugins({
            "csv.py": GOOD,                   # not imported by the runner: still the stdlib's
            "reader.py": """
                import csv, io
                from datakit_framework import DataKitFramework

                class Reader(DataKitFramework):
                    def run(self):
                        rows = list(csv.reader(io.StringIO("a,b\\n")))
                        self.feed_metric(measurement="csv", fields={"cells": len(rows[0])})
            """,
        })
        self.assertEqual([p["id"] for p in hello["plugins"]], ["reader.Reader"])
        self.assertEqual([(e["module"], e["file"]) for e in hello["errors"]], [("csv", tmp.path("csv.py"))])
        self.assertIn("already taken", hello["errors"][0]["message"])
        self.assertTrue(worker.run_and_wait("reader.Reader")["ok"])
        report = worker.wait_frame(lambda f: f["t"] == "report")
        self.assertEqual(report["data"]["M"][0]["fields"], {"cells": 2})

    def test_subdir_named_like_a_real_package(self):
        tmp, worker, hello = self.plugins({
            "email/collector.py": """
                import email.utils
                from datakit_framework import DataKitFramework

                class Mail(DataKitFramework):
                    def run(self):
                        name, addr = email.utils.parseaddr("Ops <ops@example.com>")
                        self.feed_metric(measurement="mail", fields={"addr": addr})
            """,
        })
        self.assertEqual(hello["errors"], [])
        self.assertEqual([(p["id"], p["file"]) for p in hello["plugins"]],
                         [("email.collector.Mail", tmp.path("email", "collector.py"))])
        self.assertTrue(worker.run_and_wait("email.collector.Mail")["ok"])
        report = worker.wait_frame(lambda f: f["t"] == "report")
        self.assertEqual(report["data"]["M"][0]["fields"], {"addr": "ops@example.com"})

    def test_an_empty_worker_still_says_hello(self):
        worker = self.start()
        self.assertEqual(worker.hello()["plugins"], [])

    def test_protocol_mismatch_exits_2_with_a_clear_message(self):
        tmp = TempPlugins({"good.py": GOOD})
        self.addCleanup(tmp.cleanup)
        worker = self.start(tmp.root, env={"PYTHOND_PROTOCOL": "2"})
        self.assertEqual(worker.wait_exit(), 2)
        worker.wait_output(lambda: b"protocol" in worker.stderr, what="error message")
        self.assertIn(b"protocol '2'", bytes(worker.stderr))
        self.assertEqual(worker.frames, [])


if __name__ == "__main__":
    unittest.main()
