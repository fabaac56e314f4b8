"""The ``syslogng`` module and the runner's syslog-ng adapters: drivers written the way
public ``python()`` / ``python-fetcher()`` drivers are, run by the real worker runner.

Covered: LogMessage name-value access, priority, timestamp and parse(); Persist
durability (a new process sees what the last one wrote, atomically); discovery with
kind; a fetcher's result codes and their delays; a LogSource stopped by
request_exit() at shutdown; the flow-control window (post_message blocks, suspend()
and wakeup() are called) while the channel is not read; ack trackers; the http
transport; messages -> logging points.
"""

import datetime
import json
import os
import subprocess
import sys
import tempfile
import unittest

from harness import PYTHON_DIR, RecordingHTTPServer, TempPlugins, WorkerProcess, read_lines, wait_until

import syslogng  # noqa: E402  (python/ is on sys.path through harness)


def kinds_env(state_dir, **settings):
    settings.setdefault("state_dir", state_dir)
    return {"PYTHOND_KINDS": json.dumps(settings)}


def logging_points(worker, plugin=Ellipsis):
    points = []
    for frame in worker.frames_of("report", plugin):
        points.extend(frame["data"].get("L", []))
    return points


class LogMessageTest(unittest.TestCase):

    def test_name_value_pairs_priority_and_timestamp(self):
        msg = syslogng.LogMessage(b"disk full")
        msg["HOST"] = "web01"
        msg["PROGRAM"] = b"kernel"
        msg["custom.key"] = 42
        self.assertEqual(msg["MESSAGE"], "disk full")
        self.assertEqual(msg["PROGRAM"], "kernel")
        self.assertEqual(msg["custom.key"], 42)
        self.assertEqual(msg["NOT_SET"], "")
        self.assertIsNone(msg.get("NOT_SET"))
        self.assertIn("HOST", msg)
        msg.set_pri(8 * 4 + 3)  # auth.err
        self.assertEqual((msg.facility, msg.severity), ("auth", "err"))
        with self.assertRaises(ValueError):
            msg.set_pri(1000)
        stamp = datetime.datetime(2024, 5, 1, 12, 0, 0, 250000, tzinfo=datetime.timezone.utc)
        msg.set_timestamp(stamp)
        self.assertEqual(msg.get_timestamp(), stamp)
        with self.assertRaises(TypeError):
            msg["bad"] = object()

    def test_parse_rfc5424_and_rfc3164(self):
        msg = syslogng.LogMessage.parse(
            b'<165>1 2024-05-01T12:00:00.5Z host1 app 1234 ID47 [ex@32473 iut="3" src="a\\"b"] hello there')
        self.assertEqual(msg.get_pri(), 165)
        self.assertEqual((msg["HOST"], msg["PROGRAM"], msg["PID"], msg["MSGID"]), ("host1", "app", "1234", "ID47"))
        self.assertEqual(msg["MESSAGE"], "hello there")
        self.assertEqual(msg[".SDATA.ex@32473.src"], 'a"b')
        self.assertEqual(msg.get_timestamp().timestamp(), 1714564800.5)
        old = syslogng.LogMessage.parse("<34>Oct 11 22:14:15 mymachine su[230]: 'su root' failed")
        self.assertEqual((old["HOST"], old["PROGRAM"], old["PID"]), ("mymachine", "su", "230"))
        self.assertEqual(old["MESSAGE"], "'su root' failed")
        self.assertEqual(old.severity, "crit")
        bare = syslogng.LogMessage.parse("no header at all")
        self.assertEqual((bare["MESSAGE"], bare.get_pri()), ("no header at all", 13))


class PersistTest(unittest.TestCase):

    def test_values_survive_a_new_process_and_defaults_do_not_overwrite(self):
        state = tempfile.mkdtemp(prefix="pythond-persist-")
        script = (
            "import sys; sys.path.insert(0, %r)\n"
            "import syslogng\n"
            "syslogng._persist_dir = %r; syslogng._input_name = 'in'\n"
            "p = syslogng.Persist('okta/cursor', defaults={'cursor': 'start', 'n': 0})\n"
            "print(p['cursor'], p['n'])\n"
            "p['cursor'] = sys.argv[1]; p['n'] = p['n'] + 1; p['raw'] = b'\\x00\\xff'\n"
        ) % (PYTHON_DIR, state)
        first = subprocess.run([sys.executable, "-c", script, "page-2"], capture_output=True, text=True, check=True)
        self.assertEqual(first.stdout.strip(), "start 0")
        second = subprocess.run([sys.executable, "-c", script, "page-3"], capture_output=True, text=True, check=True)
        self.assertEqual(second.stdout.strip(), "page-2 1")
        files = [os.path.join(d, f) for d, _, fs in os.walk(state) for f in fs]
        self.assertEqual(len(files), 1, files)  # no temporary file left behind
        self.assertTrue(files[0].startswith(os.path.join(state, "in", "okta_cursor-")))
        syslogng._persist_dir, syslogng._input_name = state, "in"
        try:
            p = syslogng.Persist("okta/cursor")
            self.assertEqual((p["cursor"], p["n"], p["raw"]), ("page-3", 2, b"\x00\xff"))
            with self.assertRaises(TypeError):
                p["x"] = [1]
        finally:
            syslogng._persist_dir, syslogng._input_name = None, "default"


    def test_a_damaged_store_is_an_error_naming_its_file(self):
        state = tempfile.mkdtemp(prefix="pythond-persist-")
        os.makedirs(os.path.join(state, "in"))
        path = os.path.join(state, "in", "cursor.json")
        with open(path, "w") as f:
            f.write('{"after": 3')  # cut short
        syslogng._persist_dir, syslogng._input_name = state, "in"
        try:
            with self.assertRaises(RuntimeError) as caught:
                syslogng.Persist("cursor")
            self.assertIn(path, str(caught.exception))
        finally:
            syslogng._persist_dir, syslogng._input_name = None, "default"


FETCHER = '''
import syslogng
from syslogng import LogFetcher, LogMessage, Persist

class Counter(LogFetcher):
    """Fetches a finite list, keeping its position in Persist."""

    def init(self, options):
        self.total = int(options.get("total", 5))
        self.persist = Persist("counter", defaults={"next": 0})
        return True

    def open(self):
        return True

    def fetch(self):
        n = self.persist["next"]
        if n >= self.total:
            return LogFetcher.FETCH_NO_DATA, None
        self.persist["next"] = n + 1
        msg = LogMessage("event %d" % n)
        msg["HOST"] = "api.example"
        msg["PROGRAM"] = "counter"
        msg["seq"] = n
        msg.set_pri(8 * 1 + 4)  # user.warning
        msg.set_timestamp(1700000000 + n)
        return LogFetcher.FETCH_SUCCESS, msg
'''

FLAKY = '''
import os
from syslogng import LogFetcher, LogMessage

LOG = os.environ["FLAKY_LOG"]

def note(text):
    with open(LOG, "a") as f:
        f.write(text + "\\n")

class Flaky(LogFetcher):
    """open() fails once, then fetch() walks through every result code."""

    def init(self, options):
        self.opens = 0
        self.codes = [LogFetcher.FETCH_TRY_AGAIN, LogFetcher.FETCH_NOT_CONNECTED,
                      LogFetcher.FETCH_ERROR, "bogus", "raise", LogFetcher.FETCH_NO_DATA]
        return True

    def open(self):
        self.opens += 1
        note("open %d" % self.opens)
        return self.opens > 1

    def close(self):
        note("close")

    def fetch(self):
        if self.codes:
            code = self.codes.pop(0)
            note("fetch %s" % code)
            if code == "raise":
                raise ValueError("boom")
            return code
        if self.opens < 100:
            self.opens = 100
            note("fetch success")
            return LogFetcher.FETCH_SUCCESS, LogMessage("finally")
        return LogFetcher.FETCH_NO_DATA

    def request_exit(self):
        note("request_exit")

    def deinit(self):
        note("deinit")
'''

SOURCE = '''
import os
import threading
from syslogng import LogSource, LogMessage

LOG = os.environ["SOURCE_LOG"]

def note(text):
    with open(LOG, "a") as f:
        f.write(text + "\\n")

class Listener(LogSource):
    """Posts messages until told to stop; blocks in between, as a server would."""

    def init(self, options):
        self.stop = threading.Event()
        self.posted = 0
        return True

    def run(self):
        note("run")
        while not self.stop.is_set():
            msg = LogMessage("x" * int(os.environ.get("SOURCE_SIZE", "10")))
            msg["PROGRAM"] = "listener"
            self.post_message(msg)
            self.posted += 1
            if self.posted >= int(os.environ.get("SOURCE_COUNT", "3")):
                self.stop.wait()
        note("run returned after %d" % self.posted)

    def request_exit(self):
        note("request_exit")
        self.stop.set()

    def suspend(self):
        note("suspend")

    def wakeup(self):
        note("wakeup")
'''


class FetcherTest(unittest.TestCase):

    def setUp(self):
        self.state = tempfile.mkdtemp(prefix="pythond-state-")

    def start(self, files, env=None, total=4, **settings):
        tmp = TempPlugins(files)
        self.addCleanup(tmp.cleanup)
        environment = kinds_env(self.state, **settings)
        environment.update(env or {})
        environment["PYTHOND_OPTIONS"] = json.dumps({"options": {"total": total}, "plugins": {}})
        worker = WorkerProcess([tmp.root], env=environment)
        self.addCleanup(worker.close)
        return worker, worker.hello()

    def test_fetcher_is_discovered_with_its_kind_and_its_messages_become_logging_points(self):
        worker, hello = self.start({"counter.py": FETCHER}, fetch_no_data_delay=60)
        self.assertEqual(hello["errors"], [])
        [plugin] = hello["plugins"]
        self.assertEqual((plugin["id"], plugin["kind"], plugin["long_running"]),
                         ("counter.Counter", "syslogng_fetcher", True))
        worker.run("counter.Counter", 1)
        wait_until(lambda: len(logging_points(worker)) >= 4, what="4 logging points")
        points = logging_points(worker)
        self.assertEqual(len(points), 4)
        first = points[0]
        self.assertEqual(first["measurement"], "Counter")
        self.assertEqual(first["tags"], {"host": "api.example", "program": "counter", "facility": "user"})
        self.assertEqual(first["fields"], {"message": "event 0", "status": "warning", "seq": 0})
        self.assertEqual(first["time"], 1700000000 * 10 ** 9)
        report = worker.frames_of("report")[0]
        self.assertEqual(report["precision"], "ns")
        # The cursor is on disk: a second worker on the same state continues, nothing twice.
        worker.send({"t": "shutdown", "grace": 5.0})
        worker.wait_exit()
        again, _ = self.start({"counter.py": FETCHER}, total=6, fetch_no_data_delay=60)
        again.run("counter.Counter", 1)
        wait_until(lambda: len(logging_points(again)) >= 2, what="the 2 new messages")
        again.send({"t": "shutdown", "grace": 5.0})
        again.wait_exit()
        self.assertEqual([p["fields"]["message"] for p in logging_points(again)], ["event 4", "event 5"])

    def test_result_codes_open_retry_and_exit(self):
        log = os.path.join(self.state, "flaky.log")
        worker, hello = self.start({"flaky.py": FLAKY}, env={"FLAKY_LOG": log},
                                   time_reopen=0.05, fetch_no_data_delay=0.05)
        self.assertEqual([p["kind"] for p in hello["plugins"]], ["syslogng_fetcher"])
        worker.run("flaky.Flaky", 1)
        wait_until(lambda: len(logging_points(worker)) >= 1, what="the message after the failures")
        lines = read_lines(log)
        # open fails -> retried; TRY_AGAIN -> fetch again at once; NOT_CONNECTED and
        # ERROR -> close, then open again; an unknown code or an exception counts as
        # an error.
        self.assertEqual(lines[:15], [
            "open 1", "open 2", "fetch 3", "fetch 1", "close", "open 3", "fetch 0", "close",
            "open 4", "fetch bogus", "close", "open 5", "fetch raise", "close", "open 6"], lines)
        self.assertIn("fetch success", lines)
        errors = worker.frames_of("lasterror")
        self.assertTrue(any("open() failed" in e["message"] for e in errors), errors)
        worker.send({"t": "shutdown", "grace": 5.0})
        self.assertEqual(worker.wait_exit(), 0)
        lines = read_lines(log)
        self.assertEqual(lines[-3:], ["request_exit", "close", "deinit"])

    def test_check_mode_fetches_until_no_data_and_finishes(self):
        worker, _ = self.start({"counter.py": FETCHER}, once=True)
        done = worker.run_and_wait("counter.Counter")
        self.assertTrue(done["ok"], done)
        self.assertEqual([p["fields"]["message"] for p in logging_points(worker)],
                         ["event 0", "event 1", "event 2", "event 3"])

    def test_messages_go_to_the_write_api_under_the_http_transport(self):
        server = RecordingHTTPServer()
        self.addCleanup(server.close)
        tmp = TempPlugins({"counter.py": FETCHER})
        self.addCleanup(tmp.cleanup)
        environment = kinds_env(self.state, once=True)
        environment["PYTHOND_OPTIONS"] = json.dumps({"options": {"total": 2}, "plugins": {}})
        worker = WorkerProcess([tmp.root], args=("--transport", "http", "--http-url", server.url), env=environment)
        self.addCleanup(worker.close)
        worker.hello()
        self.assertTrue(worker.run_and_wait("counter.Counter")["ok"])
        # run() returned only after everything it posted was handed over.
        requests = list(server.requests)
        for request in requests:
            self.assertEqual(request["path"], "/v1/write/logging")
            self.assertIn("precision=ns", request["query"])
            self.assertEqual(request["headers"].get("X-Pythond-Plugin"), "counter.Counter")
        self.assertEqual([p["fields"]["message"] for r in requests for p in json.loads(r["body"])],
                         ["event 0", "event 1"])

    def test_init_false_keeps_the_fetcher_out(self):
        source = FETCHER.replace("return True\n\n    def open", "return False\n\n    def open")
        _, hello = self.start({"counter.py": source})
        self.assertEqual(hello["plugins"], [])
        self.assertIn("init() returned False", hello["errors"][0]["message"])


ACKED = '''
import os
import threading
from syslogng import BatchedAckTracker, ConsecutiveAckTracker, LogMessage, LogSource

class Acked(LogSource):
    """Keeps its position in an ack callback, as queue consumers do."""

    def init(self, options):
        self.stop = threading.Event()
        self.ack_tracker = ConsecutiveAckTracker(ack_callback=self.acked)
        return True

    def acked(self, bookmark):
        with open(os.environ["SOURCE_LOG"], "a") as f:
            f.write("ack %s\\n" % bookmark)

    def run(self):
        for n in range(3):
            msg = LogMessage("m%d" % n)
            msg.set_bookmark("offset-%d" % n)
            self.post_message(msg)
        self.stop.wait()

    def request_exit(self):
        self.stop.set()
'''


class SourceTest(unittest.TestCase):

    def setUp(self):
        self.state = tempfile.mkdtemp(prefix="pythond-state-")
        self.log = os.path.join(self.state, "source.log")

    def start(self, env=None):
        tmp = TempPlugins({"listener.py": SOURCE})
        self.addCleanup(tmp.cleanup)
        environment = kinds_env(self.state)
        environment["SOURCE_LOG"] = self.log
        environment.update(env or {})
        worker = WorkerProcess([tmp.root], env=environment)
        self.addCleanup(worker.close)
        return worker, worker.hello()

    def test_bookmarks_are_acknowledged_once_delivered(self):
        tmp = TempPlugins({"acked.py": ACKED})
        self.addCleanup(tmp.cleanup)
        environment = kinds_env(self.state)
        environment["SOURCE_LOG"] = self.log
        worker = WorkerProcess([tmp.root], env=environment)
        self.addCleanup(worker.close)
        worker.hello()
        worker.run("acked.Acked", 1)
        wait_until(lambda: len(read_lines(self.log)) >= 3, what="3 acks")
        self.assertEqual(read_lines(self.log), ["ack offset-0", "ack offset-1", "ack offset-2"])
        self.assertEqual([p["fields"]["message"] for p in logging_points(worker)], ["m0", "m1", "m2"])

    def test_blocking_source_is_stopped_by_request_exit_at_shutdown(self):
        worker, hello = self.start()
        self.assertEqual([(p["kind"], p["long_running"]) for p in hello["plugins"]], [("syslogng_source", True)])
        worker.run("listener.Listener", 1)
        wait_until(lambda: len(logging_points(worker)) >= 3, what="3 posted messages")
        self.assertEqual(logging_points(worker)[0]["tags"], {"program": "listener", "facility": "user"})
        self.assertEqual(logging_points(worker)[0]["fields"]["status"], "info")  # user.notice
        worker.send({"t": "shutdown", "grace": 10.0})
        self.assertEqual(worker.wait_exit(), 0)
        done = worker.frames_of("done")
        self.assertEqual(len(done), 1)
        self.assertTrue(done[0]["ok"])
        self.assertEqual(read_lines(self.log), ["run", "request_exit", "run returned after 3"])

    def test_post_message_blocks_and_suspends_while_the_channel_is_not_read(self):
        # Far more than the window (1000 messages) plus what the socket buffers hold.
        worker, _ = self.start(env={"SOURCE_COUNT": "5000", "SOURCE_SIZE": "2000"})
        worker.pause_reading()
        worker.run("listener.Listener", 1)
        wait_until(lambda: "suspend" in read_lines(self.log), what="suspend()")
        self.assertNotIn("run returned after 5000", read_lines(self.log))
        # Nothing is lost while the channel is full: everything posted arrives.
        worker.resume_reading()
        wait_until(lambda: "wakeup" in read_lines(self.log), what="wakeup()")
        worker.send({"t": "shutdown", "grace": 10.0})
        self.assertEqual(worker.wait_exit(), 0)
        self.assertIn("run returned after 5000", read_lines(self.log))
        self.assertEqual(len(logging_points(worker)), 5000)


if __name__ == "__main__":
    unittest.main()
