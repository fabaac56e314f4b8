#encoding: utf-8
"""pythond's worker runner: loads DataKit-style collectors and runs them on command.

The agent starts one worker per input (see docs/PROTOCOL.md):

    python3 pythond_worker.py --input NAME [--max-frame BYTES]
                              [--transport pipe|http] [--http-url URL] PATH...

What this file owns, and why it is arranged the way it is:

* **Discovery** (``discover``), DataKit-compatible: every ``*.py`` directly in a PATH
  directory or one level below (not ``__init__.py``), imported as ``stem`` or
  ``subdir.stem`` with the directories on ``sys.path``; a PATH that is a ``.py`` file
  is loaded on its own. Every ``DataKitFramework`` subclass is instantiated once; so
  is every syslog-ng driver (``syslogng.LogFetcher``/``LogSource`` subclass) and
  zenpython plugin (``PythonDataSourcePlugin`` subclass), each wrapped in the adapter
  of its kind from ``pythond_kinds.py`` (the ``kind`` in ``hello``), which the rest of
  this runner drives like any other collector.
  Unlike DataKit, a module that fails to import is an entry in ``hello.errors`` (with
  file and line) instead of a silently missing collector, and a class imported into
  several modules runs once.
* **The channel** (``Channel``): the socket inherited as ``$PYTHOND_CHANNEL_FD``. Every
  frame goes through one lock, so frames never interleave; frames produced before
  ``hello`` are held back so that ``hello`` is first. A broken channel means the agent
  is gone, and then so is everything this worker started.
* **Dispatch**: one daemon thread per plugin, fed by a queue, so a ``run()`` that
  blocks forever only ever delays its own plugin.
* **Output capture** (``LineWriter``): ``sys.stdout``/``sys.stderr`` become line writers
  that send ``log`` frames tagged with the plugin whose run thread wrote them. Raw
  writes to fd 1/2 (C code, subprocesses) still go to the agent's pipes, never into
  the channel.
* **Lifecycle**: SIGTERM, SIGINT and EOF on the channel kill the whole process group
  and every other descendant, found through /proc (nothing a collector started, not
  even in a session of its own, may outlive the agent); ``shutdown`` lets runs in flight
  finish within the grace period and exits 0.
* **Options and hooks** (all optional, so DataKit scripts are untouched): the input's
  ``options`` (``PYTHOND_OPTIONS``, a private variable read from the memory file
  ``$PYTHOND_PRIVATE_FD``, never in the environment) become
  ``self.options``; ``init(self, options)`` runs before ``hello`` (returning False or
  raising keeps the plugin out, reported in ``hello.errors``); ``on_error(self, exc)``
  runs when ``run()`` raises; at ``shutdown``, ``request_exit(self)`` is called from
  the command thread for plugins whose ``run()`` is in flight, then ``deinit(self)``
  for every started plugin. The hook names come from Zenoss zenpython and
  syslog-ng's Python fetchers (``init``/``deinit``/``request_exit``).

The shim (``datakit_framework.py``) lives next to this file and is loaded from there
explicitly, so the module collectors import is always the one this runner patches.
Standard library only; runs on Python 3.8+.
"""

import argparse
import codecs
import importlib
import importlib.util
import inspect
import io
import json
import math
import os
import platform
import queue
import re
import signal
import socket
import sys
import threading
import time
import traceback
import urllib.parse

PROTOCOL_VERSION = 1
DEFAULT_MAX_FRAME = 4 * 1024 * 1024
# Smaller limits could not even carry a hello; a bad flag must not make frames unsendable.
MIN_MAX_FRAME = 1024
LOG_LINE_LIMIT = 16 * 1024
DEFAULT_INTERVAL = 10.0
# Frames the worker builds itself (done, hello) carry tracebacks; keep them readable.
TRACEBACK_LIMIT = 32 * 1024
MESSAGE_LIMIT = 8 * 1024
# Frames produced before hello (prints and reports at import time) are held in memory.
HELD_LIMIT = 4 * 1024 * 1024
# Pooled inputs: report frames held for one write at most this many bytes.
BATCH_LIMIT = 256 * 1024

RUNNER_DIR = os.path.dirname(os.path.abspath(__file__))
SHIM_FILE = os.path.join(RUNNER_DIR, "datakit_framework.py")

# The other collector kinds (syslog-ng drivers, zenpython plugins) and their adapters.
# The runtime directory is this script's, first on sys.path: ``syslogng``, ``ZenPacks``
# and ``Products`` import from there too.
if RUNNER_DIR not in sys.path:
    sys.path.insert(0, RUNNER_DIR)
import pythond_kinds as kinds  # noqa: E402
KIND_DATAKIT = kinds.KIND_DATAKIT

_dumps = json.JSONEncoder(separators=(",", ":")).encode


def _descendants(root):
    """Pids of every live process below ``root`` in the process tree (from /proc)."""
    children = {}
    try:
        names = os.listdir("/proc")
    except OSError:
        return []
    for name in names:
        if not name.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % name, "rb") as f:
                stat = f.read()
            fields = stat[stat.rindex(b")") + 2:].split()
            if fields[0] in (b"Z", b"X"):
                continue
            children.setdefault(int(fields[1]), []).append(int(name))
        except (OSError, ValueError, IndexError):
            continue
    found, todo = [], [root]
    while todo:
        for pid in children.get(todo.pop(), ()):
            found.append(pid)
            todo.append(pid)
    return found


def _kill_descendants():
    """SIGKILL everything this worker started, wherever its session or group.

    Children in a new session (``start_new_session=True``) or a daemon's own session
    escape ``killpg``. Each is stopped first, so it cannot fork while the tree is
    walked; the walk repeats until it finds nothing new, then everything dies."""
    me = os.getpid()
    stopped = set()
    for _ in range(8):
        fresh = [pid for pid in _descendants(me) if pid not in stopped]
        if not fresh:
            break
        for pid in fresh:
            try:
                os.kill(pid, signal.SIGSTOP)
            except OSError:
                pass
            stopped.add(pid)
    for pid in stopped:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass


def _die_with_group():
    """Kill this worker's process group and every other descendant, then us."""
    try:
        _kill_descendants()
    except Exception:  # never let the walk keep the worker from dying
        pass
    try:
        os.killpg(os.getpgid(0), signal.SIGKILL)
    except OSError:
        pass
    os._exit(1)


def _on_terminate(signum, frame):
    _die_with_group()


def _install_signal_handlers():
    signal.signal(signal.SIGTERM, _on_terminate)
    signal.signal(signal.SIGINT, _on_terminate)
    # Python's default, restored in case a collector changed it at import: a write to
    # a closed pipe must raise EPIPE, not kill the worker silently.
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)


def _after_fork_in_child(channel, writers):
    """Make a forked child (multiprocessing, os.fork) a normal process again.

    The child has one thread. Locks another thread held at fork time would stay locked
    forever (its first print would hang), and the runner's SIGTERM handler would make
    ``Pool.terminate()`` -- which SIGTERMs its children -- kill the whole worker.
    """
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    channel.reset_after_fork()
    for writer in writers:
        writer.reset_after_fork()


def _ensure_own_process_group():
    """Make sure killpg(getpgid(0)) can only ever hit this worker and its children.

    The agent starts workers as process-group leaders. Run by hand (or by a careless
    harness) the worker could share its parent's group, and killing "our" group would
    then kill the parent: become a group leader first.
    """
    if os.getpgid(0) != os.getpid():
        try:
            os.setpgid(0, 0)
        except OSError:
            pass


def _clean(text):
    """``text`` as a str JSON parsers accept (lone surrogates replaced)."""
    if not isinstance(text, str):
        text = str(text)
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return text.encode("utf-8", "replace").decode("utf-8")


def _cut(text, limit):
    if len(text) <= limit:
        return text
    head = limit // 8
    return text[:head] + "\n…[%d characters cut]…\n" % (len(text) - limit) + text[-(limit - head):]


def _stderr(message):
    """Runner diagnostics: straight to fd 2, which the agent logs for this input."""
    try:
        os.write(2, ("pythond_worker: " + message + "\n").encode("utf-8", "replace"))
    except OSError:
        pass


# ---------------------------------------------------------------------- channel

class Channel(object):
    """The frame socket. One lock for every write; held frames until ``hello``."""

    def __init__(self, sock, max_frame):
        self.max_frame = max_frame
        self._sock = sock
        self._lock = threading.Lock()
        self._open = False
        self._held = []
        self._held_bytes = 0
        self._held_dropped = 0
        # Pooled inputs: report frames held for one write (see send_report).
        self.batch_reports = False
        self._batch = []
        self._batch_bytes = 0

    def send(self, frame):
        """Send one frame (bytes, newline-terminated)."""
        with self._lock:
            if self._open:
                try:
                    self._sock.sendall(frame)
                except OSError:
                    _die_with_group()  # the agent is gone
            elif self._held_bytes + len(frame) <= HELD_LIMIT:
                self._held.append(frame)
                self._held_bytes += len(frame)
            else:
                self._held_dropped += 1

    def send_report(self, frame):
        """A ``report`` frame. With ``batch_reports`` (pooled inputs) it is held until
        the next ``flush_reports`` (the pool's run records flush, every 100 ms) or
        until ``BATCH_LIMIT`` bytes are held: the agent then reads a hundred reports per
        wake-up instead of one (docs/PROTOCOL.md, "Pooled inputs")."""
        if not self.batch_reports:
            self.send(frame)
            return
        with self._lock:
            if not self._open:
                held = True
            else:
                held = False
                self._batch.append(frame)
                self._batch_bytes += len(frame)
                if self._batch_bytes >= BATCH_LIMIT:
                    self._send_batch_locked()
        if held:
            self.send(frame)

    def flush_reports(self):
        with self._lock:
            if self._open:
                self._send_batch_locked()

    def _send_batch_locked(self):
        if not self._batch:
            return
        data, self._batch, self._batch_bytes = b"".join(self._batch), [], 0
        try:
            self._sock.sendall(data)
        except OSError:
            _die_with_group()  # the agent is gone

    def send_obj(self, obj):
        frame = _dumps(obj) + "\n"
        if len(frame) > self.max_frame:
            frame = _shrink(obj, self.max_frame)
            if frame is None:
                _stderr("a %s frame is larger than the frame limit and was dropped" % obj.get("t"))
                return
        self.send(frame.encode("utf-8"))

    def open(self, hello):
        """Send ``hello`` first, then everything held back while importing."""
        with self._lock:
            try:
                self._sock.sendall(hello)
                for frame in self._held:
                    self._sock.sendall(frame)
            except OSError:
                _die_with_group()
            self._open = True
            dropped, self._held, self._held_bytes = self._held_dropped, [], 0
        if dropped:
            self.send_obj({"t": "log", "plugin": None, "stream": "stderr",
                           "line": "pythond_worker: %d frames written while importing were dropped "
                                   "(more than %d bytes before hello)" % (dropped, HELD_LIMIT)})

    def reset_after_fork(self):
        self._lock = threading.Lock()

    def try_lock(self, timeout):
        return self._lock.acquire(timeout=timeout)

    def unlock(self):
        self._lock.release()


def _shrink(obj, limit):
    """Make an oversized done/hello/lasterror frame fit: tracebacks go first."""
    obj = json.loads(_dumps(obj))
    for holder in [obj.get("error") or {}] + list(obj.get("errors") or []):
        holder.pop("traceback", None)
    frame = _dumps(obj) + "\n"
    if len(frame) <= limit:
        return frame
    for key in ("message", "line"):
        if isinstance(obj.get(key), str):
            obj[key] = obj[key][:limit // 4]
    if isinstance(obj.get("error"), dict):
        obj["error"]["message"] = str(obj["error"].get("message", ""))[:limit // 4]
    errors = obj.get("errors")
    while errors and len(_dumps(obj)) + 1 > limit:
        errors.pop()
    frame = _dumps(obj) + "\n"
    return frame if len(frame) <= limit else None


# ---------------------------------------------------------------------- output capture

class LineWriter(io.TextIOBase):
    """A ``sys.stdout``/``sys.stderr`` that turns each written line into a ``log`` frame.

    Partial lines are kept per thread (so two plugins printing at once never splice
    their lines together) and sent on newline, on ``flush()`` and at the end of each
    run. A line longer than 16 KiB keeps its first 16 KiB and says how much was cut;
    the rest is counted, not stored, so a newline-free megabyte costs no memory.
    """

    encoding = "utf-8"
    errors = "replace"
    newlines = None
    line_buffering = True

    def __init__(self, channel, stream, fd, plugin_of_thread):
        super(LineWriter, self).__init__()
        self._channel = channel
        self._stream = stream
        self._fd = fd
        self._plugin_of_thread = plugin_of_thread
        self._prefix_by_plugin = {}
        # thread ident -> [pending text, bytes cut from the pending line]
        self._pending = {}
        self.buffer = _BinaryWriter(self)
        self.name = "<%s>" % stream
        self.mode = "w"

    # -- the file API collectors use

    def write(self, text):
        if not isinstance(text, str):
            raise TypeError("write() argument must be str, not %s" % type(text).__name__)
        if not text:
            return 0
        ident = threading.get_ident()
        state = self._pending.get(ident)
        if "\n" not in text:
            if state is None:
                state = self._pending[ident] = ["", 0]
            self._append(state, text)
            return len(text)
        lines = text.split("\n")
        first = lines[0]
        if state is not None:
            self._append(state, first)
            first, cut = state
            del self._pending[ident]
        else:
            cut = 0
        plugin = self._plugin_of_thread.get(ident)
        self._emit(plugin, first, cut)
        for line in lines[1:-1]:
            self._emit(plugin, line, 0)
        tail = lines[-1]
        if tail:
            state = self._pending[ident] = ["", 0]
            self._append(state, tail)
        return len(text)

    def writelines(self, lines):
        for line in lines:
            self.write(line)

    def flush(self):
        self.flush_thread(threading.get_ident())

    def isatty(self):
        return False

    def fileno(self):
        # The real descriptor, so subprocess(stdout=sys.stdout) and faulthandler work;
        # what is written there reaches the agent's stdout/stderr pipes.
        return self._fd

    def readable(self):
        return False

    def writable(self):
        return True

    def seekable(self):
        return False

    def close(self):
        # Collectors sometimes close sys.stdout; the next print must still work.
        pass

    @property
    def closed(self):
        return False

    # -- used by the runner

    def flush_thread(self, ident):
        state = self._pending.pop(ident, None)
        if state is not None and (state[0] or state[1]):
            self._emit(self._plugin_of_thread.get(ident), state[0], state[1])

    def flush_all(self):
        for ident in list(self._pending):
            self.flush_thread(ident)

    def reset_after_fork(self):
        # Other threads' partial lines belong to the parent.
        ident = threading.get_ident()
        self._pending = dict((k, v) for k, v in self._pending.items() if k == ident)
        self.buffer._lock = threading.Lock()

    # -- internals

    @staticmethod
    def _append(state, text):
        if state[1]:
            state[1] += len(text.encode("utf-8", "replace"))
            return
        pending = state[0] + text
        if len(pending) > LOG_LINE_LIMIT:
            raw = pending.encode("utf-8", "replace")
            if len(raw) > LOG_LINE_LIMIT:
                kept = raw[:LOG_LINE_LIMIT].decode("utf-8", "ignore")
                state[1] = len(raw) - len(kept.encode("utf-8"))
                pending = kept
        state[0] = pending

    def _emit(self, plugin, line, cut):
        if line.endswith("\r"):
            line = line[:-1]
        if len(line) * 4 > LOG_LINE_LIMIT or not line.isascii():
            raw = line.encode("utf-8", "replace")
            if len(raw) > LOG_LINE_LIMIT:
                kept = raw[:LOG_LINE_LIMIT].decode("utf-8", "ignore")
                cut += len(raw) - len(kept.encode("utf-8"))
                line = kept
            else:
                line = raw.decode("utf-8")  # lone surrogates became '?'
        if cut:
            line += "…[truncated %d bytes]" % cut
        prefix = self._prefix_by_plugin.get(plugin)
        if prefix is None:
            prefix = self._prefix_by_plugin[plugin] = (
                '{"t":"log","plugin":' + _dumps(plugin) + ',"stream":"' + self._stream + '","line":')
        frame = prefix + _dumps(line) + "}\n"
        if len(frame) > self._channel.max_frame:
            budget = max(0, (self._channel.max_frame - len(prefix) - 64) // 6)
            frame = prefix + _dumps(line[:budget] + "…[truncated]") + "}\n"
        self._channel.send(frame.encode("ascii"))


class _BinaryWriter(object):
    """``sys.stdout.buffer``: bytes decoded as UTF-8 and passed to the text writer."""

    def __init__(self, text_writer):
        self._text = text_writer
        self._decoder = codecs.getincrementaldecoder("utf-8")("replace")
        self._lock = threading.Lock()

    def write(self, data):
        with self._lock:
            text = self._decoder.decode(bytes(data))
        self._text.write(text)
        return len(data)

    def flush(self):
        self._text.flush()

    def fileno(self):
        return self._text.fileno()

    def isatty(self):
        return False

    def writable(self):
        return True


# ---------------------------------------------------------------------- transport

class PipeTransport(object):
    """What ``datakit_framework.report()`` calls under the runner: frames on the channel."""

    def __init__(self, shim, channel):
        self._frames = shim._report_frames
        self._channel = channel

    def report(self, instance, data):
        send = self._channel.send_report
        for frame in self._frames(instance._pythond_id_json, data, self._channel.max_frame):
            send(frame.encode("ascii"))
        return ""

    def lasterror(self, instance, input_name, err_msg):
        plugin = json.loads(instance._pythond_id_json)
        self._channel.send_obj({
            "t": "lasterror", "plugin": plugin,
            "input": None if input_name is None else _clean(input_name),
            "message": _cut(_clean(err_msg), MESSAGE_LIMIT),
        })
        return ""


# ---------------------------------------------------------------------- errors and tracebacks

class UserCode(object):
    """Which files are the collectors' (for "where did it fail")."""

    def __init__(self):
        self.dirs = []
        self.files = set()

    def add_dir(self, path):
        self.dirs.append(os.path.join(path, ""))

    def add_file(self, path):
        self.files.add(path)

    def owns(self, filename):
        if not filename:
            return False
        if filename in self.files:
            return True
        return any(filename.startswith(d) for d in self.dirs)


def _deepest(tb_frames, predicate):
    for frame in reversed(tb_frames):
        if predicate(frame.filename):
            return frame
    return None


def _exception_text(error):
    try:
        return "%s: %s" % (type(error).__name__, error) if str(error) else type(error).__name__
    except Exception:
        return type(error).__name__


def _format_traceback(error):
    try:
        text = "".join(traceback.format_exception(type(error), error, error.__traceback__))
    except Exception:
        text = _exception_text(error)
    return _cut(_clean(text), TRACEBACK_LIMIT)


def _where(error, user, prefer_file=None):
    """(file, line) of the deepest frame in ``prefer_file``, else in any user file."""
    frames = traceback.extract_tb(error.__traceback__)
    frame = None
    if prefer_file is not None:
        frame = _deepest(frames, lambda f: f == prefer_file)
    if frame is None:
        frame = _deepest(frames, user.owns)
    if frame is None:
        return prefer_file, None
    return frame.filename, frame.lineno


def _import_error(module, path, error, user):
    if isinstance(error, SyntaxError):
        # The line of the error itself, possibly in a helper module it imported.
        file = error.filename or path
        line = error.lineno
        message = "%s: %s" % (type(error).__name__, error.msg)
    else:
        file, line = _where(error, user, path)
        message = _exception_text(error)
    return {"module": module, "file": _clean(file) if file else None, "line": line,
            "message": _cut(_clean(message), MESSAGE_LIMIT), "traceback": _format_traceback(error)}


# ---------------------------------------------------------------------- discovery

class Plugin(object):
    """One collector instance, its run thread and its queue of run numbers."""

    def __init__(self, plugin_id, instance, cls, file, interval, long_running, kind=KIND_DATAKIT):
        self.id = plugin_id
        self.kind = kind
        self.instance = instance
        self.cls = cls
        self.file = file
        self.interval = interval
        self.long_running = long_running
        self.queue = queue.Queue()
        self.running = False  # a run was dispatched and its done is not sent yet
        self.enabled = True  # false: [inputs.pythond.plugins.<name>] enabled = false

    def new_object(self):
        """A fresh collector object of this plugin (its adapter for a non-DataKit kind)."""
        return kinds.new_collector(self.cls, None if self.kind == KIND_DATAKIT else self.kind)

    def hello_entry(self):
        return {"id": self.id, "name": _clean(_plugin_name(self.cls)), "class": self.cls.__name__,
                "module": self.cls.__module__, "file": _clean(self.file) if self.file else None,
                "interval": self.interval, "long_running": self.long_running, "kind": self.kind}


def _plugin_name(cls):
    """The collector's ``name``: the plain attribute, an old-style ``__name``, else the
    class name (the base class's own 'DataKitFramework' is never a useful name)."""
    base = sys.modules["datakit_framework"].DataKitFramework
    for klass in cls.__mro__:
        if klass is base or klass is object:
            break
        if "name" in klass.__dict__:
            value = klass.__dict__["name"]
            if isinstance(value, str) and value:
                return value
        mangled = "_%s__name" % klass.__name__.lstrip("_")
        if mangled in klass.__dict__:
            value = klass.__dict__[mangled]
            if isinstance(value, str) and value:
                return value
    return cls.__name__


def _interval_of(instance, cls):
    """(seconds, problem): missing or falsy -> 10 s; not a positive number -> 10 s and a
    problem to report (DataKit's runner thread would have crashed on it)."""
    value = getattr(instance, "interval", None)
    if isinstance(value, bool):
        if not value:
            return DEFAULT_INTERVAL, None
        return DEFAULT_INTERVAL, "interval = True is not a number of seconds; using %g s" % DEFAULT_INTERVAL
    if isinstance(value, (int, float)):
        if not value:
            return DEFAULT_INTERVAL, None
        if math.isfinite(value) and value > 0:
            return float(value), None
        return DEFAULT_INTERVAL, "interval = %r is not a positive number of seconds; using %g s" % (value, DEFAULT_INTERVAL)
    try:
        falsy = not value
    except Exception:
        falsy = False
    if falsy:
        return DEFAULT_INTERVAL, None
    return DEFAULT_INTERVAL, "interval = %s is %s, not a number of seconds; using %g s" % (
        _safe_repr(value), type(value).__name__, DEFAULT_INTERVAL)


def _attribute_line(cls, attribute):
    """Line of ``attribute = ...`` in the class body, else of the class statement."""
    try:
        lines, start = inspect.getsourcelines(cls)
    except Exception:
        return None
    pattern = re.compile(r"\s*%s\s*[:=]" % re.escape(attribute))
    for offset, text in enumerate(lines):
        if pattern.match(text):
            return start + offset
    return start


def _safe_repr(value):
    try:
        text = repr(value)
    except Exception:
        text = "<unprintable>"
    return text[:200]


def _module_file(module_name):
    module = sys.modules.get(module_name)
    file = getattr(module, "__file__", None)
    return os.path.abspath(file) if isinstance(file, str) else None


def _candidates(path, user, errors):
    """(module name, file) pairs for one PATH, DataKit's way, and the dirs for sys.path."""
    path = os.path.abspath(path)
    if os.path.isdir(path):
        user.add_dir(path)
        found = []
        search_dirs = [path]
        entries = _listdir(path, errors)
        for entry in entries:
            full = os.path.join(path, entry)
            if _is_plugin_file(entry) and os.path.isfile(full):
                found.append((entry[:-3], full))
        for entry in entries:
            full = os.path.join(path, entry)
            if entry.startswith(".") or entry == "__pycache__" or not os.path.isdir(full):
                continue
            search_dirs.append(full)
            for sub_entry in _listdir(full, errors):
                sub_full = os.path.join(full, sub_entry)
                if _is_plugin_file(sub_entry) and os.path.isfile(sub_full):
                    found.append(("%s.%s" % (entry, sub_entry[:-3]), sub_full))
        return found, search_dirs
    if os.path.isfile(path):
        base = os.path.basename(path)
        if not base.endswith(".py"):
            errors.append({"module": None, "file": _clean(path), "line": None,
                           "message": "not a directory or a .py file"})
            return [], []
        user.add_file(path)
        if base == "__init__.py":
            errors.append({"module": None, "file": _clean(path), "line": None,
                           "message": "__init__.py initialises a package; it is not a collector file"})
            return [], []
        return [(base[:-3], path)], [os.path.dirname(path)]
    errors.append({"module": None, "file": _clean(path), "line": None,
                   "message": "no such file or directory"})
    return [], []


def _is_plugin_file(name):
    # datakit_framework.py: collectors often ship a copy of DataKit's framework next to
    # them for local testing; it is the framework, not a collector (and ours wins).
    return (name.endswith(".py") and name != "__init__.py" and not name.startswith(".")
            and name != "datakit_framework.py")


def discover(paths, shim, user):
    """Import every collector module and instantiate every collector class once.

    Returns (plugins, errors) for ``hello``.
    """
    base = shim.DataKitFramework
    errors = []
    candidates = []
    search_dirs = []
    for path in paths:
        found, dirs = _candidates(path, user, errors)
        candidates.extend(found)
        for d in dirs:
            if d not in search_dirs:
                search_dirs.append(d)
    # Appended, as DataKit does: a collector file can never shadow a stdlib or installed
    # module for the other collectors of this worker. A collector file named like one
    # is reported below ("already taken") instead of being silently replaced by it.
    sys.path.extend(d for d in search_dirs if d not in sys.path)

    plugins = []
    seen_classes = set()
    seen_sources = set()
    seen_modules = {}
    for module_name, file in candidates:
        previous = seen_modules.get(module_name)
        if previous is not None:
            if os.path.realpath(previous) != os.path.realpath(file):
                errors.append({"module": module_name, "file": _clean(file), "line": None,
                               "message": "module name %r is already used by %s; rename one of them"
                                          % (module_name, previous)})
            continue
        seen_modules[module_name] = file
        try:
            module = _import(module_name, file)
        except BaseException as e:  # SyntaxError, ImportError, SystemExit at import...
            errors.append(_import_error(module_name, file, e, user))
            continue
        loaded = getattr(module, "__file__", None)
        if not isinstance(loaded, str) or os.path.realpath(loaded) != os.path.realpath(file):
            errors.append({"module": module_name, "file": _clean(file), "line": None,
                           "message": "module name %r is already taken by %s; rename %s"
                                      % (module_name, loaded or "a built-in module", os.path.basename(file))})
            continue
        for value in list(vars(module).values()):
            if not isinstance(value, type):
                continue
            # A syslog-ng driver or a zenpython plugin (pythond_kinds.py), else DataKit's.
            kind = kinds.kind_of(value)
            if kind is None and (not issubclass(value, base) or value is base):
                continue
            if value in seen_classes:
                continue
            seen_classes.add(value)
            source = _module_file(value.__module__)
            # The same file imported under two names (``sub.x`` by discovery and ``x``
            # by a sibling's import) gives two class objects for one collector.
            source_key = (os.path.realpath(source) if source else None, value.__qualname__)
            if source is not None and source_key in seen_sources:
                continue
            seen_sources.add(source_key)
            if kind is None and (value.run is base.run or inspect.isabstract(value)):
                # A shared base class, not a collector: DataKit would run it and log a
                # NotImplementedError every interval.
                continue
            plugin, problem = _instantiate(value, source or file, user, plugins, kind)
            if problem is not None:
                errors.append(problem)
            if plugin is not None:
                plugins.append(plugin)
    return plugins, errors


def _import(module_name, file):
    """Import a collector module by name, as DataKit does.

    A subdirectory named like an installed or stdlib package (``mysql/``, ``email/``)
    loses to that package when ``subdir.stem`` is resolved, and the collector inside
    (which may well ``import mysql.connector`` itself) would never load. Such a module
    is then loaded from its file under the same dotted name, leaving the real package
    alone.
    """
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        missing = getattr(e, "name", None) or ""
        ours = "." in module_name and (module_name == missing or module_name.startswith(missing + "."))
        if not ours or module_name in sys.modules:
            raise
    spec = importlib.util.spec_from_file_location(module_name, file)
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(module_name, None)
        raise
    return module


def _listdir(path, errors):
    try:
        return sorted(os.listdir(path))
    except OSError as e:
        errors.append({"module": None, "file": _clean(path), "line": None,
                       "message": "cannot list directory: %s" % (e.strerror or e)})
        return []


def _instantiate(cls, file, user, plugins, kind=None):
    """One plugin of class ``cls``; a non-DataKit ``kind`` is wrapped in its adapter,
    which the runner drives like any DataKitFramework (see pythond_kinds.py)."""
    try:
        instance = kinds.new_collector(cls, kind)
    except BaseException as e:
        where_file, line = _where(e, user, file)
        return None, {"module": cls.__module__, "file": _clean(where_file or file), "line": line,
                      "message": _cut(_clean("%s() failed: %s" % (cls.__name__, _exception_text(e))), MESSAGE_LIMIT),
                      "traceback": _format_traceback(e)}
    interval, problem = _interval_of(instance, cls)
    error = None
    if problem is not None:
        line = _attribute_line(cls, "interval")
        error = {"module": cls.__module__, "file": _clean(file), "line": line,
                 "message": "%s.%s" % (cls.__name__, problem)}
    plugin_id = "%s.%s" % (cls.__module__, cls.__name__)
    taken = set(p.id for p in plugins)
    if plugin_id in taken:
        n = 2
        while "%s~%d" % (plugin_id, n) in taken:
            n += 1
        plugin_id = "%s~%d" % (plugin_id, n)
    instance._pythond_id_json = _dumps(plugin_id)
    plugin = Plugin(plugin_id, instance, cls, file, interval, bool(getattr(instance, "long_running", False)),
                    kind or KIND_DATAKIT)
    return plugin, error


# ---------------------------------------------------------------------- options and hooks

OPTIONS_ENV = "PYTHOND_OPTIONS"
PRIVATE_FD_ENV = "PYTHOND_PRIVATE_FD"
# What the agent passed through $PYTHOND_PRIVATE_FD (see _read_private).
_PRIVATE = {}


def _read_private():
    """Read the agent's private variables: a JSON object of strings in the inherited
    memory file ``$PYTHOND_PRIVATE_FD``, then close it.

    Options and the HTTP token come this way, not in the environment, because
    ``/proc/<pid>/environ`` keeps showing a variable even after it is removed."""
    fd_text = os.environ.pop(PRIVATE_FD_ENV, None)
    if not fd_text:
        return {}
    try:
        fd = int(fd_text)
    except ValueError:
        _stderr("ignoring $%s: not a file descriptor" % PRIVATE_FD_ENV)
        return {}
    chunks = []
    try:
        while True:
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            chunks.append(chunk)
    except OSError as e:
        _stderr("cannot read $%s: %s" % (PRIVATE_FD_ENV, e))
        return {}
    finally:
        try:
            os.close(fd)
        except OSError:
            pass
    try:
        value = json.loads(b"".join(chunks).decode("utf-8"))
    except ValueError:
        value = None
    if not isinstance(value, dict):
        _stderr("ignoring $%s: not the JSON object the agent writes" % PRIVATE_FD_ENV)
        return {}
    return dict((k, v) for k, v in value.items() if isinstance(v, str))


def _private(name):
    """A private variable, else (an older agent) the environment's, removed from it."""
    from_env = os.environ.pop(name, None)
    return _PRIVATE.get(name, from_env)


def _load_options():
    """The agent's ``{"options": {...}, "plugins": {name: {"enabled", "options"}},
    "pool": {"concurrency": N}}`` as (options, plugins, pool or None).

    A private variable (see _read_private): collectors' subprocesses never see it."""
    text = _private(OPTIONS_ENV)
    if not text:
        return {}, {}, None
    try:
        value = json.loads(text)
        options = value.get("options") or {}
        plugins = value.get("plugins") or {}
        pool = value.get("pool")
        if isinstance(options, dict) and isinstance(plugins, dict):
            return options, plugins, pool if isinstance(pool, dict) else None
    except (ValueError, AttributeError):
        pass
    _stderr("ignoring $%s: not the JSON object the agent writes" % OPTIONS_ENV)
    return {}, {}, None


def _hook(instance, name):
    """The plugin's own ``name`` method, or None (the shim defines none of the hooks)."""
    hook = getattr(instance, name, None)
    return hook if callable(hook) else None


def _takes_args(hook, count):
    """Whether ``hook`` can be called with ``count`` positional arguments: a
    same-named method of another shape is the script's own business, not a hook."""
    try:
        inspect.signature(hook).bind(*([None] * count))
        return True
    except (TypeError, ValueError):
        return False


def configure(plugins, options, overrides, user, plugin_of_thread):
    """Give each plugin its options and run its ``init``; returns (started, errors).

    A plugin keyed in ``overrides`` by its id, else by its name, gets that entry's
    options merged over the input's. Disabled plugins stay listed (their ids are
    stable) but are neither initialised nor run."""
    started, errors = [], []
    ident = threading.get_ident()
    for plugin in plugins:
        own = overrides.get(plugin.id)
        if not isinstance(own, dict):
            own = overrides.get(_clean(_plugin_name(plugin.cls)))
        if not isinstance(own, dict):
            own = {}
        merged = dict(options)
        if isinstance(own.get("options"), dict):
            merged.update(own["options"])
        if merged or not hasattr(plugin.instance, "options"):
            try:
                plugin.instance.options = merged
            except Exception as e:  # a read-only property of the script's own
                _stderr("%s: cannot set self.options: %s" % (plugin.id, _exception_text(e)))
        if own.get("enabled") is False:
            plugin.enabled = False
            started.append(plugin)
            continue
        init = _hook(plugin.instance, "init")
        if init is not None and _takes_args(init, 1):
            plugin_of_thread[ident] = plugin.id
            try:
                result = init(dict(merged))
                reason = "%s.init() returned False; the plugin is not started" % plugin.cls.__name__ \
                    if result is False else None
            except BaseException as e:
                where_file, line = _where(e, user, plugin.file)
                errors.append({"module": plugin.cls.__module__, "file": _clean(where_file or plugin.file),
                               "line": line, "traceback": _format_traceback(e),
                               "message": _cut(_clean("%s.init() failed: %s; the plugin is not started"
                                                      % (plugin.cls.__name__, _exception_text(e))), MESSAGE_LIMIT)})
                continue
            finally:
                plugin_of_thread.pop(ident, None)
            if reason is not None:
                errors.append({"module": plugin.cls.__module__, "file": _clean(plugin.file) if plugin.file else None,
                               "line": _attribute_line(plugin.cls, "init"), "message": reason})
                continue
        started.append(plugin)
    return started, errors


def _call_hook(plugin, name, *args):
    """Call an optional hook; its failure is written to stderr, never raised."""
    hook = _hook(plugin.instance, name)
    if hook is None or not _takes_args(hook, len(args)):
        return
    try:
        hook(*args)
    except BaseException as e:
        _stderr("%s.%s() failed: %s" % (plugin.id, name, _exception_text(e)))


# ---------------------------------------------------------------------- the worker

class Worker(object):
    def __init__(self, channel, plugins, user, writers, pool=None):
        self.channel = channel
        self.plugins = dict((p.id, p) for p in plugins)
        self.user = user
        self.writers = writers
        self.plugin_of_thread = {}
        self._in_flight = 0
        self._cond = threading.Condition()
        self._stopping = False
        # An input with instances: its plugins run on this pool (pythond_pool.py),
        # on the schedule the agent hands over, instead of on `run` commands.
        self.pool = pool

    def start_threads(self, plugin_of_thread):
        self.plugin_of_thread = plugin_of_thread
        for plugin in self.plugins.values():
            thread = threading.Thread(target=self._run_loop, args=(plugin,),
                                      name="pythond:" + plugin.id, daemon=True)
            thread.start()

    def _run_loop(self, plugin):
        ident = threading.get_ident()
        self.plugin_of_thread[ident] = plugin.id
        while True:
            run = plugin.queue.get()
            started = time.perf_counter()
            error = None
            try:
                plugin.instance.run()
            except BaseException as e:  # SystemExit and KeyboardInterrupt included
                error = self._run_error(e, plugin)
                # Before `done`, so what on_error reports is counted for this run.
                _call_hook(plugin, "on_error", e)
            seconds = time.perf_counter() - started
            for writer in self.writers:
                writer.flush_thread(ident)
            done = {"t": "done", "plugin": plugin.id, "run": run, "ok": error is None,
                    "seconds": round(seconds, 6)}
            if error is not None:
                done["error"] = error
            # Free the plugin before the agent can see the done: it may send the next
            # run at once, and that run must not be answered "Busy".
            plugin.running = False
            self.channel.send_obj(done)
            with self._cond:
                self._in_flight -= 1
                self._cond.notify_all()

    def _run_error(self, e, plugin):
        file, line = _where(e, self.user, None)
        if file is None:
            file = plugin.file
        return {"type": type(e).__name__, "message": _cut(_clean(_message_of(e)), MESSAGE_LIMIT),
                "file": _clean(file) if file else None, "line": line,
                "traceback": _format_traceback(e)}

    def dispatch(self, command):
        kind = command.get("t")
        if kind == "run":
            self._dispatch_run(command)
        elif kind == "instances" and self.pool is not None:
            self.pool.set_instances(command)
        elif kind == "pause" and self.pool is not None:
            self.pool.pause(command)
        elif kind == "shutdown":
            grace = command.get("grace", 5.0)
            try:
                grace = max(0.0, float(grace))
            except (TypeError, ValueError):
                grace = 5.0
            self.shutdown(grace)
        else:
            _stderr("ignoring a command of unknown type %r" % (kind,))

    def _dispatch_run(self, command):
        plugin_id = command.get("plugin")
        run = command.get("run")
        plugin = self.plugins.get(plugin_id)
        refusal = None
        if plugin is None:
            refusal = ("UnknownPlugin", "no plugin %r in this worker" % (plugin_id,))
        elif self._stopping:
            refusal = ("ShuttingDown", "the worker is shutting down")
        elif not plugin.enabled:
            refusal = ("Disabled", "%s is disabled by configuration" % plugin_id)
        elif plugin.running:
            refusal = ("Busy", "the previous run of %s has not finished" % plugin_id)
        if refusal is not None:
            self.channel.send_obj({"t": "done", "plugin": plugin_id, "run": run, "ok": False, "seconds": 0.0,
                                   "error": {"type": refusal[0], "message": refusal[1], "file": None,
                                             "line": None, "traceback": None}})
            return
        plugin.running = True
        with self._cond:
            self._in_flight += 1
        plugin.queue.put(run)

    def shutdown(self, grace):
        self._stopping = True
        if self.pool is not None:
            self.pool.shutdown(grace)
        deadline = time.monotonic() + grace
        # A run() blocked in a long_running loop is told to stop, from this thread.
        for plugin in self.plugins.values():
            if plugin.running:
                _call_hook(plugin, "request_exit")
        with self._cond:
            while self._in_flight > 0:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(left)
        for plugin in self.plugins.values():
            if plugin.enabled and not plugin.running:
                _call_hook(plugin, "deinit")
            elif plugin.enabled:
                _stderr("%s: run() still in flight after the grace period; deinit() skipped" % plugin.id)
        # Partial lines still buffered; never wait on a channel the agent stopped reading.
        if self.channel.try_lock(1.0):
            self.channel.unlock()
            for writer in self.writers:
                writer.flush_all()
        os._exit(0)

    def serve(self, sock):
        """Read commands until EOF (the agent is gone: take everything down)."""
        buffer = b""
        while True:
            try:
                chunk = sock.recv(65536)
            except InterruptedError:
                continue
            except OSError:
                chunk = b""
            if not chunk:
                _die_with_group()
            buffer += chunk
            while b"\n" in buffer:
                line, buffer = buffer.split(b"\n", 1)
                line = line.strip()
                if not line:
                    continue
                try:
                    command = json.loads(line.decode("utf-8"))
                except ValueError:
                    _stderr("ignoring a line that is not JSON: %r" % line[:200])
                    continue
                if not isinstance(command, dict):
                    _stderr("ignoring a frame that is not an object: %r" % line[:200])
                    continue
                try:
                    self.dispatch(command)
                except Exception as e:  # a bad command must not stop the worker
                    _stderr("cannot handle %r: %s" % (line[:200], _exception_text(e)))


def _message_of(error):
    try:
        return str(error)
    except Exception:
        return "<unprintable %s>" % type(error).__name__


def _load_shim():
    """Import our datakit_framework.py by path, under the name collectors import."""
    existing = sys.modules.get("datakit_framework")
    if existing is not None and os.path.realpath(getattr(existing, "__file__", "") or "") == os.path.realpath(SHIM_FILE):
        return existing
    spec = importlib.util.spec_from_file_location("datakit_framework", SHIM_FILE)
    module = importlib.util.module_from_spec(spec)
    sys.modules["datakit_framework"] = module
    spec.loader.exec_module(module)
    return module


def _parse_args(argv):
    parser = argparse.ArgumentParser(prog="pythond_worker.py",
                                     description="Run DataKit-style Python collectors for the pythond agent.")
    parser.add_argument("--input", default=os.environ.get("PYTHOND_INPUT", ""), help="input name (for messages)")
    parser.add_argument("--max-frame", type=int, default=None, help="largest frame in bytes")
    parser.add_argument("--transport", choices=("pipe", "http"), default="pipe",
                        help="how report() sends points: frames on the channel, or DataKit's HTTP API")
    parser.add_argument("--http-url", default="http://127.0.0.1:9529",
                        help="base URL of the HTTP write API for --transport http")
    parser.add_argument("--only", default=None, metavar="ID",
                        help="serve only the plugin with this id (isolation = \"plugin\")")
    parser.add_argument("--discover", action="store_true",
                        help="import and list the plugins in hello, without calling init()")
    parser.add_argument("paths", nargs="*", metavar="PATH", help="plugin directories or .py files")
    return parser.parse_args(argv)


def _max_frame(args):
    value = args.max_frame
    if value is None:
        try:
            value = int(os.environ.get("PYTHOND_MAX_FRAME", DEFAULT_MAX_FRAME))
        except ValueError:
            value = DEFAULT_MAX_FRAME
    return max(MIN_MAX_FRAME, value)


def _configure_http(shim, url):
    parsed = urllib.parse.urlsplit(url)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise ValueError("--http-url must look like http://HOST:PORT, not %r" % url)
    shim._http_scheme = parsed.scheme
    # Class-level defaults: a collector that passes ip=/port= to DataKitFramework's
    # constructor still overrides them, as it would override DataKit's 127.0.0.1:9529.
    shim.DataKitFramework._DataKitFramework__dk_host = parsed.hostname
    shim.DataKitFramework._DataKitFramework__dk_port = parsed.port or (443 if parsed.scheme == "https" else 80)
    # The agent's [http] token, if it has one: a private variable, so neither the
    # processes collectors start nor /proc/<pid>/environ show the secret.
    token = _private("PYTHOND_HTTP_TOKEN")
    if token:
        shim._http_token = token


def main(argv=None):
    protocol = os.environ.get("PYTHOND_PROTOCOL")
    if protocol is not None and protocol != str(PROTOCOL_VERSION):
        sys.stderr.write("pythond_worker: the agent speaks protocol %r but this runner speaks %d; "
                         "the agent and its Python runtime files do not match\n" % (protocol, PROTOCOL_VERSION))
        sys.stderr.flush()
        os._exit(2)
    args = _parse_args(sys.argv[1:] if argv is None else argv)
    fd_text = os.environ.get("PYTHOND_CHANNEL_FD")
    try:
        fd = int(fd_text)
        sock = socket.socket(fileno=fd)
    except (TypeError, ValueError, OSError) as e:
        sys.stderr.write("pythond_worker: PYTHOND_CHANNEL_FD must name an inherited socket (%s); "
                         "this script is started by the pythond agent\n" % e)
        sys.stderr.flush()
        os._exit(2)
    # Collectors' subprocesses must not inherit (and hold open, or write into) the channel.
    os.set_inheritable(fd, False)
    os.environ.pop("PYTHOND_CHANNEL_FD", None)
    _PRIVATE.update(_read_private())

    _ensure_own_process_group()
    _install_signal_handlers()
    try:
        devnull = os.open(os.devnull, os.O_RDONLY)
        os.dup2(devnull, 0)
        os.close(devnull)
    except OSError:
        pass

    channel = Channel(sock, _max_frame(args))
    shim = _load_shim()
    if args.transport == "http":
        try:
            _configure_http(shim, args.http_url)
            shim._http_input = args.input or None
        except ValueError as e:
            sys.stderr.write("pythond_worker: %s\n" % e)
            sys.stderr.flush()
            os._exit(2)
    else:
        shim._transport = PipeTransport(shim, channel)

    plugin_of_thread = {}
    stdout = LineWriter(channel, "stdout", 1, plugin_of_thread)
    stderr = LineWriter(channel, "stderr", 2, plugin_of_thread)
    sys.stdout = stdout
    sys.stderr = stderr
    if hasattr(os, "register_at_fork"):
        os.register_at_fork(after_in_child=lambda: _after_fork_in_child(channel, (stdout, stderr)))

    user = UserCode()
    options, overrides, pool_settings = _load_options()
    kinds.load_settings(args.input)
    plugins, errors = discover(args.paths, shim, user)
    if args.only is not None:
        # Ids are assigned in discovery order, so they are the same as in the
        # discovery worker that named this one.
        plugins = [p for p in plugins if p.id == args.only]
    if not args.discover and pool_settings is None:
        plugins, init_errors = configure(plugins, options, overrides, user, plugin_of_thread)
        errors.extend(init_errors)
    _install_signal_handlers()  # a collector may have installed its own at import

    hello = {"t": "hello", "v": PROTOCOL_VERSION, "pid": os.getpid(), "python": platform.python_version(),
             "plugins": [p.hello_entry() for p in plugins], "errors": errors}
    frame = _dumps(hello) + "\n"
    if len(frame) > channel.max_frame:
        frame = _shrink(hello, channel.max_frame) or _dumps(dict(hello, errors=[])) + "\n"
    writers = (stdout, stderr)
    if pool_settings is not None and not args.discover:
        pool = _make_pool(channel, plugins, pool_settings, user, writers, plugin_of_thread)
        worker = Worker(channel, [], user, writers, pool)
        channel.open(frame.encode("utf-8"))
        pool.start()
    else:
        worker = Worker(channel, plugins, user, writers)
        worker.start_threads(plugin_of_thread)
        channel.open(frame.encode("utf-8"))
    worker.serve(sock)


def _load_pool_module():
    """pythond_pool.py from next to this file (like the shim: never another copy)."""
    path = os.path.join(RUNNER_DIR, "pythond_pool.py")
    spec = importlib.util.spec_from_file_location("_pythond_pool", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _make_pool(channel, plugins, settings, user, writers, plugin_of_thread):
    """The instance pool of an input with instances (docs/PROTOCOL.md, "Pooled inputs")."""
    def describe(error, plugin):
        file, line = _where(error, user, None)
        if file is None:
            file = plugin.file
        return {"type": type(error).__name__, "message": _cut(_clean(_message_of(error)), MESSAGE_LIMIT),
                "file": _clean(file) if file else None, "line": line,
                "traceback": _format_traceback(error)}

    def call(obj, key, name, *args):
        hook = _hook(obj, name)
        if hook is None or not _takes_args(hook, len(args)):
            return
        try:
            hook(*args)
        except BaseException as e:
            _stderr("%s.%s() failed: %s" % (key, name, _exception_text(e)))

    def make(plugin):
        # Other kinds (syslog-ng drivers, zenpython plugins) run through their adapter.
        if plugin.kind == KIND_DATAKIT:
            return plugin.cls()
        return kinds.adapter_class(plugin.kind)(plugin.cls)

    hooks = {"describe": describe, "call": call, "hook": _hook, "takes": _takes_args,
             "text": _exception_text, "stderr": _stderr, "make": make}
    try:
        concurrency = int(settings.get("concurrency") or 4)
    except (TypeError, ValueError):
        concurrency = 4
    channel.batch_reports = True
    return _load_pool_module().Pool(channel, plugins, concurrency, writers, plugin_of_thread, hooks)


if __name__ == "__main__":
    main()
