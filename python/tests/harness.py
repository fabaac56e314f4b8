"""Test helpers: run the real worker runner the way the agent does, and read its frames.

``WorkerProcess`` starts ``python/pythond_worker.py`` in its own session with one end of
a ``socket.socketpair()`` passed as ``$PYTHOND_CHANNEL_FD``, exactly as the Rust agent
does, and collects every frame, plus fd 1 and fd 2 output, on background threads so
that a chatty worker never blocks. Tests wait on conditions with generous deadlines;
nothing here sleeps to make timing assertions.

Also: ``plugin_dir`` writes collector files into a temporary directory, and
``RecordingHTTPServer`` stands in for DataKit's (or pythond's) HTTP write API, and
``PipeCapture`` drives the shim's pipe transport in-process.
"""

import http.server
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import threading
import time

PYTHON_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RUNNER = os.path.join(PYTHON_DIR, "pythond_worker.py")
REPO = os.path.dirname(PYTHON_DIR)

# Long enough for a loaded CI machine; a passing test never waits this long.
DEADLINE = 30.0

if PYTHON_DIR not in sys.path:
    sys.path.insert(0, PYTHON_DIR)

import datakit_framework as dkf  # noqa: E402  (the shim under test, from python/)
import pythond_worker  # noqa: E402


def write_files(root, files):
    """Create ``{relative path: source}`` under ``root`` (sources are dedented)."""
    for relative, source in files.items():
        path = os.path.join(root, relative)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as f:
            f.write(textwrap.dedent(source).lstrip("\n"))
    return root


class TempPlugins(object):
    """A temporary plugin directory; use as a context manager or call cleanup()."""

    def __init__(self, files=None):
        self._tmp = tempfile.TemporaryDirectory(prefix="pythond-test-")
        self.root = os.path.realpath(self._tmp.name)
        if files:
            write_files(self.root, files)

    def path(self, *parts):
        return os.path.join(self.root, *parts)

    def write(self, files):
        write_files(self.root, files)

    def cleanup(self):
        self._tmp.cleanup()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.cleanup()


def process_alive(pid):
    """True if ``pid`` exists and is not a zombie (an unreaped corpse is gone for us)."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            stat = f.read()
        state = stat[stat.rindex(")") + 2:].split()[0]
        return state not in ("Z", "X")
    except (FileNotFoundError, ProcessLookupError):
        return False
    except OSError:
        try:
            os.kill(pid, 0)
            return True
        except ProcessLookupError:
            return False
        except PermissionError:
            return True


def read_lines(path):
    """The lines of a file a plugin writes notes to; none while it does not exist yet."""
    try:
        with open(path) as f:
            return f.read().splitlines()
    except FileNotFoundError:
        return []


def wait_until(predicate, timeout=DEADLINE, what="condition"):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("timed out after %.0fs waiting for %s" % (timeout, what))
        time.sleep(0.02)


class WorkerProcess(object):
    """One runner process and everything it sends."""

    def __init__(self, paths, args=(), env=None, max_frame=None, python=None):
        self.sock, child = socket.socketpair()
        environment = dict(os.environ)
        environment.update({
            "PYTHOND_CHANNEL_FD": str(child.fileno()),
            "PYTHOND_PROTOCOL": "1",
            "PYTHOND_INPUT": "test-input",
            "PYTHOND_MAX_FRAME": str(max_frame or 4 * 1024 * 1024),
            "PYTHONDONTWRITEBYTECODE": "1",
        })
        if env:
            environment.update(env)
        command = [python or sys.executable, RUNNER, "--input", "test-input"]
        if max_frame:
            command += ["--max-frame", str(max_frame)]
        command += list(args) + list(paths)
        self.proc = subprocess.Popen(
            command, pass_fds=[child.fileno()], start_new_session=True, env=environment,
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        child.close()
        self.frames = []        # decoded frames, in arrival order
        self.raw_sizes = []     # bytes of each frame, newline included
        self.bad_lines = []     # anything on the channel that is not a JSON object line
        self.stdout = bytearray()
        self.stderr = bytearray()
        self.channel_closed = False
        self._cond = threading.Condition()
        self._reading = threading.Event()
        self._reading.set()
        self._threads = [
            threading.Thread(target=self._read_channel, daemon=True),
            threading.Thread(target=self._drain, args=(self.proc.stdout, self.stdout), daemon=True),
            threading.Thread(target=self._drain, args=(self.proc.stderr, self.stderr), daemon=True),
        ]
        for thread in self._threads:
            thread.start()

    # -- readers

    def pause_reading(self):
        """Stop reading the channel (as an agent whose sinks are full does): the
        worker's writes block once the socket buffer is full."""
        self._reading.clear()

    def resume_reading(self):
        self._reading.set()

    def _read_channel(self):
        buffer = b""
        while True:
            self._reading.wait()
            try:
                chunk = self.sock.recv(1 << 20)
            except OSError:
                chunk = b""
            if not chunk:
                with self._cond:
                    self.channel_closed = True
                    self._cond.notify_all()
                return
            buffer += chunk
            lines = buffer.split(b"\n")
            buffer = lines.pop()
            decoded = []
            for line in lines:
                try:
                    frame = json.loads(line.decode("utf-8"))
                    if not isinstance(frame, dict) or "t" not in frame:
                        raise ValueError("not a frame")
                    decoded.append((frame, len(line) + 1))
                except ValueError:
                    decoded.append((None, line))
            with self._cond:
                for frame, extra in decoded:
                    if frame is None:
                        self.bad_lines.append(extra)
                    else:
                        self.frames.append(frame)
                        self.raw_sizes.append(extra)
                self._cond.notify_all()

    def _drain(self, pipe, sink):
        while True:
            chunk = pipe.read1(1 << 16) if hasattr(pipe, "read1") else pipe.read(1 << 16)
            if not chunk:
                return
            with self._cond:
                sink.extend(chunk)
                self._cond.notify_all()

    # -- waiting

    def wait_frame(self, predicate, timeout=DEADLINE, what="frame"):
        """The first frame (from the start) matching ``predicate``."""
        deadline = time.monotonic() + timeout
        # Each wake-up looks only at frames that arrived since the last one: a
        # collector that prints in a loop must not make waiting quadratic.
        checked = 0
        with self._cond:
            while True:
                while checked < len(self.frames):
                    frame = self.frames[checked]
                    checked += 1
                    if predicate(frame):
                        return frame
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError("timed out waiting for %s; frames so far: %s\nstderr: %s"
                                         % (what, _preview(self.frames), bytes(self.stderr[-2000:])))
                if self.channel_closed and self.proc.poll() is not None:
                    raise AssertionError("worker exited (%s) before %s; frames: %s\nstderr: %s"
                                         % (self.proc.returncode, what, _preview(self.frames),
                                            bytes(self.stderr[-2000:])))
                self._cond.wait(min(left, 0.2))

    def wait_output(self, predicate, timeout=DEADLINE, what="output"):
        deadline = time.monotonic() + timeout
        with self._cond:
            while not predicate():
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError("timed out waiting for %s" % what)
                self._cond.wait(min(left, 0.2))

    def hello(self):
        return self.wait_frame(lambda f: f["t"] == "hello", what="hello")

    def run(self, plugin, run):
        self.send({"t": "run", "plugin": plugin, "run": run})

    def done(self, plugin, run, timeout=DEADLINE):
        return self.wait_frame(lambda f: f["t"] == "done" and f.get("plugin") == plugin and f.get("run") == run,
                               timeout=timeout, what="done of %s run %s" % (plugin, run))

    def run_and_wait(self, plugin, run=1):
        self.run(plugin, run)
        return self.done(plugin, run)

    def send(self, obj):
        self.sock.sendall((json.dumps(obj) + "\n").encode())

    def frames_of(self, kind, plugin=Ellipsis):
        with self._cond:
            return [f for f in self.frames
                    if f["t"] == kind and (plugin is Ellipsis or f.get("plugin") == plugin)]

    def wait_exit(self, timeout=DEADLINE):
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError("worker did not exit within %.0fs" % timeout)

    def close(self):
        """Kill the worker's whole group and reap it (test cleanup)."""
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except OSError:
            pass
        try:
            self.proc.wait(DEADLINE)
        except subprocess.TimeoutExpired:
            pass
        try:
            self.sock.close()
        except OSError:
            pass
        for thread in self._threads:
            thread.join(5)
        for pipe in (self.proc.stdout, self.proc.stderr):
            try:
                pipe.close()
            except OSError:
                pass


def _preview(frames):
    text = json.dumps(frames[-10:])
    return text if len(text) < 3000 else text[:3000] + "..."


class Collector(dkf.DataKitFramework):
    name = "collector"
    interval = 10

    def run(self):
        pass


class PipeCapture(object):
    """In-process: the runner's real Channel and PipeTransport over a socketpair, installed
    as the shim's transport, with the agent's end read back frame by frame."""

    def __init__(self, max_frame=4 * 1024 * 1024):
        self.agent, worker_end = socket.socketpair()
        self.channel = pythond_worker.Channel(worker_end, max_frame)
        self.channel.open(b'{"t":"hello","v":1}\n')
        self._worker_end = worker_end
        self._buffer = b""
        self.agent.settimeout(10)
        self.previous = dkf._transport
        dkf._transport = pythond_worker.PipeTransport(dkf, self.channel)
        assert self.frame()["t"] == "hello"

    def frame(self):
        while b"\n" not in self._buffer:
            self._buffer += self.agent.recv(1 << 20)
        line, self._buffer = self._buffer.split(b"\n", 1)
        return json.loads(line.decode("ascii"))

    def pending(self):
        self.agent.setblocking(False)
        try:
            self._buffer += self.agent.recv(1 << 20)
        except BlockingIOError:
            pass
        finally:
            self.agent.settimeout(10)
        return self._buffer

    def close(self):
        dkf._transport = self.previous
        self.agent.close()
        self._worker_end.close()


class RecordingHTTPServer(object):
    """A loopback HTTP server that records each request and answers 200 ``answer``."""

    def __init__(self, status=200, answer=b"{}"):
        self.requests = []
        self.status = status
        self.answer = answer
        recorder = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                path, _, query = self.path.partition("?")
                with recorder.cond:
                    recorder.requests.append({"path": path, "query": query, "body": body,
                                              "content_type": self.headers.get("Content-Type"),
                                              "headers": dict(self.headers)})
                    recorder.cond.notify_all()
                self.send_response(recorder.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(recorder.answer)))
                self.end_headers()
                self.wfile.write(recorder.answer)

            def log_message(self, *args):
                pass

        self.cond = threading.Condition()
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.url = "http://127.0.0.1:%d" % self.port
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def wait_requests(self, count, timeout=DEADLINE):
        deadline = time.monotonic() + timeout
        with self.cond:
            while len(self.requests) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError("expected %d requests, got %r" % (count, self.requests))
                self.cond.wait(left)
            return list(self.requests)

    def close(self):
        self.server.shutdown()
        self.server.server_close()
