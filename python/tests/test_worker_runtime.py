"""The real runner at work: dispatch, output capture, errors, shutdown and death.

Each test starts ``pythond_worker.py`` as the agent does (own session, socketpair
channel) with collectors written into a temporary directory, and checks what comes
back on the channel, on fd 1/2, and what is left running afterwards.
"""

import json
import urllib.parse
import os
import signal
import unittest

from harness import RecordingHTTPServer, TempPlugins, WorkerProcess, process_alive, wait_until

BLOCKER_AND_QUICK = """
import threading
from datakit_framework import DataKitFramework

class Blocker(DataKitFramework):
    def run(self):
        print("blocker started")
        threading.Event().wait()          # never returns

class Quick(DataKitFramework):
    def run(self):
        self.feed_metric(measurement="quick", fields={"v": 1})
"""

SPAWNS_SLEEP = """
import subprocess
from datakit_framework import DataKitFramework

class Spawner(DataKitFramework):
    def run(self):
        child = subprocess.Popen(["sleep", "1000"])
        self.feed_metric(measurement="child", fields={"pid": child.pid})
"""


class RuntimeTest(unittest.TestCase):

    def start(self, files, *args, **kwargs):
        tmp = TempPlugins(files)
        self.addCleanup(tmp.cleanup)
        worker = WorkerProcess([tmp.root], args=args, **kwargs)
        self.addCleanup(worker.close)
        worker.hello()
        return tmp, worker

    # -- dispatch

    def test_a_blocked_run_does_not_delay_another_plugin(self):
        tmp, worker = self.start({"plugins.py": BLOCKER_AND_QUICK})
        worker.run("plugins.Blocker", 1)
        worker.wait_frame(lambda f: f["t"] == "log" and f["line"] == "blocker started")
        for run in (1, 2, 3):
            done = worker.run_and_wait("plugins.Quick", run)
            self.assertTrue(done["ok"])
            self.assertGreaterEqual(done["seconds"], 0.0)
        self.assertEqual(len(worker.frames_of("report", "plugins.Quick")), 3)
        self.assertEqual(worker.frames_of("done", "plugins.Blocker"), [])

    def test_run_while_running_is_answered_busy(self):
        tmp, worker = self.start({"plugins.py": BLOCKER_AND_QUICK})
        worker.run("plugins.Blocker", 1)
        worker.wait_frame(lambda f: f["t"] == "log" and f["line"] == "blocker started")
        done = worker.run_and_wait("plugins.Blocker", 2)
        self.assertFalse(done["ok"])
        self.assertEqual(done["error"]["type"], "Busy")

    def test_unknown_plugin_is_answered(self):
        tmp, worker = self.start({"plugins.py": BLOCKER_AND_QUICK})
        done = worker.run_and_wait("nope.Nope", 9)
        self.assertFalse(done["ok"])
        self.assertEqual(done["error"]["type"], "UnknownPlugin")

    def test_consecutive_runs_reuse_the_instance_and_never_report_busy(self):
        tmp, worker = self.start({"counter.py": """
            from datakit_framework import DataKitFramework

            class Counter(DataKitFramework):
                count = 0

                def run(self):
                    self.count += 1
                    self.feed_metric(measurement="count", fields={"n": self.count})
        """})
        for run in range(1, 51):
            self.assertTrue(worker.run_and_wait("counter.Counter", run)["ok"], run)
        counts = [f["data"]["M"][0]["fields"]["n"] for f in worker.frames_of("report")]
        self.assertEqual(counts, list(range(1, 51)))
        # Reports of a run are sent before its done.
        order = [(f["t"], f.get("run")) for f in worker.frames if f["t"] in ("report", "done")]
        self.assertEqual(order[:4], [("report", None), ("done", 1), ("report", None), ("done", 2)])

    def test_run_errors_point_at_user_code(self):
        tmp, worker = self.start({"failing.py": """
            from datakit_framework import DataKitFramework

            def parse(text):
                return int(text)

            class Failing(DataKitFramework):
                def run(self):
                    self.feed_metric(measurement="before_error", fields={"v": 1})
                    parse("not a number")

            class Exits(DataKitFramework):
                def run(self):
                    raise SystemExit(4)
        """})
        done = worker.run_and_wait("failing.Failing")
        self.assertFalse(done["ok"])
        error = done["error"]
        self.assertEqual(error["type"], "ValueError")
        self.assertIn("not a number", error["message"])
        self.assertEqual((error["file"], error["line"]), (tmp.path("failing.py"), 4))
        self.assertIn("Traceback (most recent call last)", error["traceback"])
        self.assertEqual(len(worker.frames_of("report", "failing.Failing")), 1, "points before the error are kept")
        exits = worker.run_and_wait("failing.Exits")
        self.assertEqual((exits["ok"], exits["error"]["type"], exits["error"]["line"]), (False, "SystemExit", 13))
        self.assertTrue(worker.run_and_wait("failing.Failing", 2)["error"], "the plugin keeps serving runs")

    def test_set_lasterror(self):
        tmp, worker = self.start({"le.py": """
            from datakit_framework import DataKitFramework

            class LastError(DataKitFramework):
                def run(self):
                    self.set_lasterror("le-input", "disk gone")
        """})
        worker.run_and_wait("le.LastError")
        self.assertEqual(worker.frames_of("lasterror"),
                         [{"t": "lasterror", "plugin": "le.LastError", "input": "le-input", "message": "disk gone"}])

    # -- output

    def test_prints_become_log_frames_and_raw_fd_writes_stay_off_the_channel(self):
        tmp, worker = self.start({"noisy.py": """
            import os, subprocess, sys, logging
            from datakit_framework import DataKitFramework

            print("printed at import")
            logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")

            class Noisy(DataKitFramework):
                def run(self):
                    print('{"t": "done", "plugin": "forged", "run": 1, "ok": true}')
                    print("flushed", flush=True)
                    print("progress", end="", flush=True)    # flush sends a partial line
                    sys.stdout.write("partial ")
                    sys.stdout.write("line\\nsecond\\n")
                    print("to stderr", file=sys.stderr)
                    sys.stdout.buffer.write("bytes \\u00e9\\n".encode())
                    logging.info("via logging")
                    os.write(1, b"raw fd write\\n")
                    subprocess.run(["echo", "from a child"], stdout=sys.stdout, check=True)
                    assert not sys.stdout.isatty() and sys.stdout.fileno() == 1 and sys.stderr.fileno() == 2
                    assert sys.stdout.encoding == "utf-8"
                    sys.stdout.write("no newline at the end")
        """})
        self.assertTrue(worker.run_and_wait("noisy.Noisy")["ok"])
        self.assertEqual(worker.bad_lines, [])
        logs = [(f["plugin"], f["stream"], f["line"]) for f in worker.frames_of("log")]
        plugin = "noisy.Noisy"
        self.assertEqual(logs, [
            (None, "stdout", "printed at import"),
            (plugin, "stdout", '{"t": "done", "plugin": "forged", "run": 1, "ok": true}'),
            (plugin, "stdout", "flushed"),
            (plugin, "stdout", "progress"),
            (plugin, "stdout", "partial line"),
            (plugin, "stdout", "second"),
            (plugin, "stderr", "to stderr"),
            (plugin, "stdout", "bytes \u00e9"),
            (plugin, "stderr", "INFO via logging"),
            (plugin, "stdout", "no newline at the end"),
        ])
        self.assertEqual(len(worker.frames_of("done")), 1, "a printed frame is only text")
        worker.wait_output(lambda: b"from a child" in worker.stdout, what="child output on fd 1")
        self.assertIn(b"raw fd write\n", bytes(worker.stdout))

    def test_a_collector_that_swaps_sys_stdout_cannot_break_the_channel(self):
        tmp, worker = self.start({"swapper.py": """
            import io, sys
            from datakit_framework import DataKitFramework

            class Swapper(DataKitFramework):
                def run(self):
                    sys.stdout.close()
                    sys.stdout = io.StringIO()
                    print("into the void")
                    self.feed_metric(measurement="still", fields={"v": 1})
        """})
        self.assertTrue(worker.run_and_wait("swapper.Swapper")["ok"])
        self.assertEqual(len(worker.frames_of("report", "swapper.Swapper")), 1)

    def test_megabytes_of_output_complete_and_long_lines_are_cut(self):
        tmp, worker = self.start({"chatty.py": """
            import sys
            from datakit_framework import DataKitFramework

            class Chatty(DataKitFramework):
                def run(self):
                    for i in range(20000):
                        print("%05d " % i + "x" * 200)
                    print("L" * (1024 * 1024))
                    for _ in range(1000):
                        sys.stdout.write("y" * 1000)   # 1 MB without a newline
                    sys.stdout.write("\\n")
                    self.feed_metric(measurement="after_output", fields={"v": 1})
        """})
        done = worker.run_and_wait("chatty.Chatty")
        self.assertTrue(done["ok"])
        logs = [f["line"] for f in worker.frames_of("log", "chatty.Chatty")]
        self.assertEqual(len(logs), 20002)
        self.assertEqual(logs[0], "00000 " + "x" * 200)
        self.assertEqual(logs[19999], "19999 " + "x" * 200)
        limit = 16 * 1024
        self.assertEqual(logs[20000], "L" * limit + "…[truncated %d bytes]" % (1024 * 1024 - limit))
        self.assertEqual(logs[20001], "y" * limit + "…[truncated %d bytes]" % (1000 * 1000 - limit))
        self.assertEqual(len(worker.frames_of("report", "chatty.Chatty")), 1)

    # -- frames

    def test_reports_are_split_at_the_frame_limit_and_bad_points_rejected_alone(self):
        tmp, worker = self.start({"big.py": """
            from datakit_framework import DataKitFramework

            class Big(DataKitFramework):
                def run(self):
                    points = [{"measurement": "p%03d" % i, "tags": {"t": "v" * 30}, "fields": {"i": i}}
                              for i in range(300)]
                    points[10]["fields"]["i"] = float("nan")
                    points[20] = {"measurement": "huge", "fields": {"blob": "z" * 20000}}
                    self.report({"M": points, "input": "big"})
        """}, max_frame=4096)
        self.assertTrue(worker.run_and_wait("big.Big")["ok"])
        reports = worker.frames_of("report", "big.Big")
        self.assertGreater(len(reports), 1)
        self.assertTrue(all(size <= 4096 for size in worker.raw_sizes))
        sent = [p["measurement"] for f in reports for p in f["data"].get("M", [])]
        self.assertEqual(sent, ["p%03d" % i for i in range(300) if i not in (10, 20)])
        rejected = sorted((r["index"], r["measurement"]) for f in reports for r in f["rejected"])
        self.assertEqual(rejected, [(10, "p010"), (20, "huge")])
        self.assertTrue(all(f["input"] == "big" for f in reports))

    # -- lifecycle

    def test_shutdown_waits_for_runs_in_flight_then_exits_0(self):
        tmp, worker = self.start({"slow.py": """
            import time
            from datakit_framework import DataKitFramework

            class Slow(DataKitFramework):
                def run(self):
                    print("slow started")
                    time.sleep(1.0)
                    self.feed_metric(measurement="slow_finished", fields={"v": 1})
        """})
        worker.run("slow.Slow", 1)
        worker.wait_frame(lambda f: f["t"] == "log" and f["line"] == "slow started")
        worker.send({"t": "shutdown", "grace": 30.0})
        self.assertEqual(worker.wait_exit(), 0)
        done = worker.done("slow.Slow", 1)
        self.assertTrue(done["ok"])
        self.assertEqual(len(worker.frames_of("report", "slow.Slow")), 1)

    def test_shutdown_grace_bounds_the_wait_for_a_stuck_run(self):
        tmp, worker = self.start({"plugins.py": BLOCKER_AND_QUICK})
        worker.run("plugins.Blocker", 1)
        worker.wait_frame(lambda f: f["t"] == "log" and f["line"] == "blocker started")
        worker.send({"t": "shutdown", "grace": 0.3})
        self.assertEqual(worker.wait_exit(), 0)
        self.assertEqual(worker.frames_of("done"), [])

    def test_eof_on_the_channel_kills_the_process_group(self):
        tmp, worker = self.start({"spawner.py": SPAWNS_SLEEP})
        self.assertTrue(worker.run_and_wait("spawner.Spawner")["ok"])
        child = worker.frames_of("report")[0]["data"]["M"][0]["fields"]["pid"]
        self.assertTrue(process_alive(child))
        worker.sock.shutdown(2)  # the agent is gone
        self.assertEqual(worker.wait_exit(), -signal.SIGKILL)
        wait_until(lambda: not process_alive(child), what="the collector's child to die")

    def test_sigterm_kills_the_process_group_even_if_a_collector_ignored_it(self):
        tmp, worker = self.start({"spawner.py": SPAWNS_SLEEP + """
import signal
signal.signal(signal.SIGTERM, signal.SIG_IGN)
"""})
        self.assertTrue(worker.run_and_wait("spawner.Spawner")["ok"])
        child = worker.frames_of("report")[0]["data"]["M"][0]["fields"]["pid"]
        worker.proc.send_signal(signal.SIGTERM)
        self.assertEqual(worker.wait_exit(), -signal.SIGKILL)
        wait_until(lambda: not process_alive(child), what="the collector's child to die")

    def test_the_channel_is_not_inherited_by_collector_subprocesses(self):
        tmp, worker = self.start({"fds.py": """
            import os, subprocess
            from datakit_framework import DataKitFramework

            class Fds(DataKitFramework):
                def run(self):
                    fds = subprocess.check_output(["ls", "/proc/self/fd"], close_fds=False).split()
                    self.feed_metric(measurement="fds", fields={"n": len(fds),
                                     "env": "PYTHOND_CHANNEL_FD" in os.environ})
        """})
        self.assertTrue(worker.run_and_wait("fds.Fds")["ok"])
        fields = worker.frames_of("report")[0]["data"]["M"][0]["fields"]
        # stdin, stdout, stderr and the directory fd of ls itself.
        self.assertEqual(fields, {"n": 4, "env": False})

    def test_forked_children_are_ordinary_processes(self):
        # multiprocessing forks while another thread may hold the channel lock, and
        # Pool.terminate() SIGTERMs its children: neither may hang or kill the worker.
        tmp, worker = self.start({"pooled.py": """
            import multiprocessing, threading
            from datakit_framework import DataKitFramework

            def work(x):
                print("child %d" % x)
                return x * 2

            class Pooled(DataKitFramework):
                def run(self):
                    stop = threading.Event()
                    def chatter():
                        while not stop.is_set():
                            print("parent chatter")
                    thread = threading.Thread(target=chatter)
                    thread.start()
                    try:
                        pool = multiprocessing.get_context("fork").Pool(4)
                        results = pool.map(work, range(40))
                        pool.terminate()
                        pool.join()
                    finally:
                        stop.set()
                        thread.join()
                    self.feed_metric(measurement="pool", fields={"sum": sum(results)})
        """})
        for run in (1, 2, 3):
            self.assertTrue(worker.run_and_wait("pooled.Pooled", run)["ok"])
        sums = [f["data"]["M"][0]["fields"]["sum"] for f in worker.frames_of("report")]
        self.assertEqual(sums, [1560] * 3)
        children = [f["line"] for f in worker.frames_of("log", "pooled.Pooled") if f["line"].startswith("child")]
        self.assertEqual(len(children), 120)
        self.assertIsNone(worker.proc.poll())

    def test_stdin_is_dev_null(self):
        tmp, worker = self.start({"reader.py": """
            import sys
            from datakit_framework import DataKitFramework

            class Reader(DataKitFramework):
                def run(self):
                    self.feed_metric(measurement="stdin", fields={"data": sys.stdin.read()})
        """})
        self.assertTrue(worker.run_and_wait("reader.Reader")["ok"])
        self.assertEqual(worker.frames_of("report")[0]["data"]["M"][0]["fields"]["data"], "")


class HttpTransportTest(unittest.TestCase):
    """``--transport http``: points go to the write API like DataKit's framework."""

    def test_reports_are_posted_and_constructor_ip_port_override_the_url(self):
        default_server = RecordingHTTPServer()
        self.addCleanup(default_server.close)
        own_server = RecordingHTTPServer()
        self.addCleanup(own_server.close)
        tmp = TempPlugins({"web.py": """
            from datakit_framework import DataKitFramework

            class ToDefault(DataKitFramework):
                def run(self):
                    self.feed_metric(input="web", measurement="m", tags={"a": "b"}, fields={"v": 1})
                    self.report({"M": [{"measurement": "bad", "fields": {"v": float("nan")}}]})

            class ToOwn(DataKitFramework):
                def __init__(self):
                    super().__init__(ip="127.0.0.1", port=%d)

                def run(self):
                    self.feed_logging(source="s", message="hello")
                    self.set_lasterror("web", "oops")
        """ % own_server.port})
        self.addCleanup(tmp.cleanup)
        worker = WorkerProcess([tmp.root], args=("--transport", "http", "--http-url", default_server.url))
        self.addCleanup(worker.close)
        worker.hello()
        self.assertTrue(worker.run_and_wait("web.ToDefault")["ok"])
        self.assertTrue(worker.run_and_wait("web.ToOwn")["ok"])
        metric, refused = default_server.wait_requests(2)
        self.assertEqual((metric["path"], metric["query"]), ("/v1/write/metric", "input=web"))
        self.assertEqual(metric["body"], b'[{"measurement": "m", "tags": {"a": "b"}, "fields": {"v": 1}, "time": null}]')
        # A report whose only point could not be sent still tells the agent, so it
        # counts the point as it would over the pipe.
        self.assertEqual((refused["path"], refused["body"]), ("/v1/write/metric", b"[]"))
        header = {k.lower(): v for k, v in refused["headers"].items()}["x-pythond-rejected"]
        detail = json.loads(urllib.parse.unquote(header))
        self.assertEqual(detail["count"], 1)
        self.assertEqual(detail["first"][0]["measurement"], "bad")
        self.assertIn("NaN", detail["first"][0]["reason"])
        logging_request, lasterror = own_server.wait_requests(2)
        self.assertEqual(logging_request["path"], "/v1/write/logging")
        self.assertEqual(json.loads(logging_request["body"])[0]["fields"], {"message": "hello"})
        self.assertEqual((lasterror["path"], json.loads(lasterror["body"])),
                         ("/v1/lasterror", {"input": "web", "err_content": "oops"}))
        self.assertEqual(worker.frames_of("report"), [])
        warning = worker.wait_frame(lambda f: f["t"] == "log" and "not sent" in f["line"])
        self.assertEqual((warning["plugin"], warning["stream"]), ("web.ToDefault", "stderr"))
        self.assertIn("field 'v' is NaN", warning["line"])


if __name__ == "__main__":
    unittest.main()
