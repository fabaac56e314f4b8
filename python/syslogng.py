#encoding: utf-8
"""pythond's ``syslogng`` module: the Python API of syslog-ng's ``python()`` and
``python-fetcher()`` sources, so their drivers run under pythond unchanged.

What it owns (see docs/MIGRATING.md, "From syslog-ng / AxoSyslog"):

* ``LogMessage``: a message as a set of name-value pairs (``MESSAGE``, ``HOST``,
  ``PROGRAM``, ``PID``, any custom name), its priority and timestamp, and
  ``LogMessage.parse()`` for RFC 3164 / RFC 5424 lines;
* ``LogSource`` and ``LogFetcher``: the base classes drivers subclass. They define the
  documented defaults; the driving (threads, delays, flow control, turning messages
  into logging points) belongs to the runner's adapter (``pythond_kinds.py``), which
  attaches itself to each driver instance as ``_pythond_host``;
* ``Persist``: a durable dict under the agent's ``data_dir`` (one JSON file per input
  and persist name, rewritten atomically on every change), so a fetcher's paging
  cursor survives worker restarts, agent restarts and reloads -- which syslog-ng's own
  Python persist state does not;
* ``Logger``: syslog-ng's logger, writing to the worker's stderr (a log line the agent
  tags with input and plugin).

Standard library only; runs on Python 3.8+.
"""

import datetime as _datetime
import json
import os
import re
import sys
import tempfile
import threading
import time as _time

LTZ_LOCAL = 0
LTZ_SEND = 1

# Set by the runner: where Persist files live (docs/CONFIG.md, data_dir) and the input
# they belong to. Without a runner (a driver imported on its own) Persist keeps its
# files in the current directory's ``.pythond-persist``.
_persist_dir = None
_input_name = "default"

_FACILITIES = ("kern", "user", "mail", "daemon", "auth", "syslog", "lpr", "news", "uucp",
               "cron", "authpriv", "ftp", "ntp", "security", "console", "solaris-cron",
               "local0", "local1", "local2", "local3", "local4", "local5", "local6", "local7")
_SEVERITIES = ("emerg", "alert", "crit", "err", "warning", "notice", "info", "debug")
# syslog-ng's default-priority for a message that carries none: user.notice.
DEFAULT_PRI = 13


def _text(value):
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return value


class LogMessage(object):
    """A log message: name-value pairs plus priority and timestamp.

    ``LogMessage("text")`` or ``LogMessage(b"text")`` sets ``MESSAGE``. Names are
    case-sensitive, as in syslog-ng; reading a missing name gives ``""`` (syslog-ng
    expands an unset macro to an empty string), ``get(name, default)`` tells them apart.
    Values are kept as given (str, int, float, bool); bytes are decoded as UTF-8.
    """

    def __init__(self, message=None):
        self._values = {}
        self._pri = DEFAULT_PRI
        self._timestamp = None  # nanoseconds since the epoch, or None: "when received"
        self._source = None
        if message is not None:
            self._values["MESSAGE"] = _text(message)

    # -- name-value pairs

    def __getitem__(self, name):
        name = _text(name)
        if name in self._values:
            return self._values[name]
        return ""

    def __setitem__(self, name, value):
        name = _text(name)
        if not isinstance(name, str) or not name:
            raise KeyError("a name-value pair needs a non-empty name, not %r" % (name,))
        if isinstance(value, _datetime.datetime):
            value = value.isoformat()
        elif value is not None and not isinstance(value, (str, bytes, int, float, bool)):
            raise TypeError("value of %s must be str, bytes, int, float, bool or datetime, not %s"
                            % (name, type(value).__name__))
        self._values[name] = _text(value)

    def __delitem__(self, name):
        self._values.pop(_text(name), None)

    def __contains__(self, name):
        return _text(name) in self._values

    def get(self, name, default=None):
        return self._values.get(_text(name), default)

    def get_as_str(self, name, default=None, encoding="utf-8", errors="strict", repr="internal"):
        value = self._values.get(_text(name))
        if value is None:
            return default
        if isinstance(value, bool):
            return "true" if value else "false"
        return str(value)

    def keys(self):
        return list(self._values.keys())

    def items(self):
        return list(self._values.items())

    def __iter__(self):
        return iter(list(self._values))

    def __len__(self):
        return len(self._values)

    def __repr__(self):
        return "LogMessage(%r)" % (self._values.get("MESSAGE", ""),)

    # -- priority, timestamp, source

    def set_pri(self, pri):
        """``facility * 8 + severity``, as in the syslog header."""
        pri = int(pri)
        if not 0 <= pri < 24 * 8:
            raise ValueError("priority %d is out of range (0..191)" % pri)
        self._pri = pri

    def get_pri(self):
        return self._pri

    def set_timestamp(self, timestamp):
        """A ``datetime`` (naive means local time) or seconds since the epoch."""
        if isinstance(timestamp, _datetime.datetime):
            if timestamp.tzinfo is None:
                seconds = _time.mktime(timestamp.timetuple()) + timestamp.microsecond / 1e6
            else:
                seconds = timestamp.timestamp()
            self._timestamp = int(round(seconds * 1e6)) * 1000
        elif isinstance(timestamp, (int, float)) and not isinstance(timestamp, bool):
            self._timestamp = int(round(float(timestamp) * 1e6)) * 1000
        else:
            raise TypeError("set_timestamp() takes a datetime or a number of seconds, not %s"
                            % type(timestamp).__name__)

    def get_timestamp(self):
        if self._timestamp is None:
            return None
        return _datetime.datetime.fromtimestamp(self._timestamp / 1e9, _datetime.timezone.utc)

    def set_source_ipaddress(self, ip, port=0):
        self._source = (str(ip), int(port))
        self._values.setdefault("SOURCEIP", str(ip))

    def set_recvd_rawmsg_size(self, size):
        pass  # a receive counter of syslog-ng's; nothing here reads it

    def set_bookmark(self, bookmark):
        """What the source's ``ack_tracker`` gets back once the message is delivered."""
        self._bookmark = bookmark

    @property
    def facility(self):
        return _FACILITIES[self._pri >> 3] if (self._pri >> 3) < len(_FACILITIES) else str(self._pri >> 3)

    @property
    def severity(self):
        return _SEVERITIES[self._pri & 7]

    @classmethod
    def parse(cls, raw, parse_options=None):
        """Parse a syslog line (RFC 5424, RFC 3164, or no header at all) into a message."""
        text = _text(raw)
        if not isinstance(text, str):
            raise TypeError("LogMessage.parse() takes str or bytes, not %s" % type(raw).__name__)
        text = text.rstrip("\r\n")
        msg = cls()
        rest = text
        m = re.match(r"<(\d{1,3})>", rest)
        if m and int(m.group(1)) < 192:
            msg._pri = int(m.group(1))
            rest = rest[m.end():]
        m = _RFC5424.match(rest)
        if m:
            _set_unless_nil(msg, "HOST", m.group("host"))
            _set_unless_nil(msg, "PROGRAM", m.group("app"))
            _set_unless_nil(msg, "PID", m.group("pid"))
            _set_unless_nil(msg, "MSGID", m.group("msgid"))
            if m.group("ts") != "-":
                _set_iso_time(msg, m.group("ts"))
            sd = m.group("sd") or "-"
            for sd_id, params in _SD_ELEMENT.findall(sd):
                for key, value in _SD_PARAM.findall(params):
                    msg[".SDATA.%s.%s" % (sd_id, key)] = re.sub(r'\\(["\\\]])', r"\1", value)
            body = m.group("msg") or ""
            if body.startswith("\ufeff"):
                body = body[1:]
            msg["MESSAGE"] = body
            return msg
        m = _RFC3164.match(rest)
        if m:
            _set_bsd_time(msg, m.group("ts"))
            msg["HOST"] = m.group("host")
            msg["PROGRAM"] = m.group("prog")
            if m.group("pid"):
                msg["PID"] = m.group("pid")
            msg["MESSAGE"] = m.group("msg")
            return msg
        msg["MESSAGE"] = rest
        return msg


_RFC5424 = re.compile(
    r"1 (?P<ts>\S+) (?P<host>\S+) (?P<app>\S+) (?P<pid>\S+) (?P<msgid>\S+) "
    r"(?P<sd>-|(?:\[(?:[^\]\\]|\\.)*\])+)(?: (?P<msg>.*))?$", re.S)
_SD_ELEMENT = re.compile(r"\[([^\s\]=]+)((?:[^\]\\]|\\.)*)\]")
_SD_PARAM = re.compile(r'([^\s=\]]+)="((?:[^"\\]|\\.)*)"')
_RFC3164 = re.compile(
    r"(?P<ts>[A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d) (?P<host>\S+) "
    r"(?P<prog>[^:\[\s]+)(?:\[(?P<pid>[^\]]*)\])?: ?(?P<msg>.*)$", re.S)
_MONTHS = dict((name, i + 1) for i, name in enumerate(
    ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")))


def _set_unless_nil(msg, name, value):
    if value and value != "-":
        msg[name] = value


def _set_iso_time(msg, text):
    value = text.replace("Z", "+00:00")
    m = re.match(r"(.*T\d\d:\d\d:\d\d)(\.\d+)?(.*)$", value)
    if not m:
        return
    fraction = (m.group(2) or "")[:7]  # fromisoformat takes at most microseconds
    try:
        stamp = _datetime.datetime.fromisoformat(m.group(1) + fraction[:7] + m.group(3))
    except ValueError:
        return
    msg.set_timestamp(stamp)


def _set_bsd_time(msg, text):
    month = _MONTHS.get(text[:3])
    if month is None:
        return
    now = _datetime.datetime.now()
    try:
        day, clock = int(text[4:6]), text[7:]
        hour, minute, second = (int(x) for x in clock.split(":"))
        stamp = _datetime.datetime(now.year, month, day, hour, minute, second)
    except ValueError:
        return
    if stamp - now > _datetime.timedelta(days=1):  # December's line read in January
        stamp = stamp.replace(year=now.year - 1)
    msg.set_timestamp(stamp)


# ---------------------------------------------------------------------- drivers

class LogSource(object):
    """Base of an asynchronous source: ``run()`` runs in its own thread and calls
    ``post_message()`` until ``request_exit()`` asks it to return.

    ``post_message()`` blocks while the agent cannot take more (flow control); a driver
    that defines ``suspend()`` and ``wakeup()`` is told when that starts and ends.
    ``auto_close_batches = False`` lets the driver group messages and end each group
    with ``close_batch()``.
    """

    auto_close_batches = True

    def init(self, options):
        return True

    def deinit(self):
        pass

    def run(self):
        pass

    def request_exit(self):
        pass

    def post_message(self, msg):
        if not isinstance(msg, LogMessage):
            raise TypeError("post_message() takes a LogMessage, not %s" % type(msg).__name__)
        host = getattr(self, "_pythond_host", None)
        if host is None:
            raise RuntimeError("post_message() called on a source that pythond is not running")
        host.post(msg)

    def close_batch(self):
        host = getattr(self, "_pythond_host", None)
        if host is not None:
            host.close_batch()


class LogFetcher(object):
    """Base of a blocking source: the runner calls ``open()``, then ``fetch()`` in a
    loop, acting on its result code (see docs/MIGRATING.md for the delays)."""

    FETCH_ERROR = 0
    FETCH_NOT_CONNECTED = 1
    FETCH_SUCCESS = 2
    FETCH_TRY_AGAIN = 3
    FETCH_NO_DATA = 4

    def init(self, options):
        return True

    def deinit(self):
        pass

    def open(self):
        return True

    def close(self):
        pass

    def fetch(self):
        return LogFetcher.FETCH_TRY_AGAIN, None


class _AckTracker(object):
    """Base of the ack trackers a ``LogSource`` may set as ``self.ack_tracker``: the
    runner acknowledges a message's bookmark once the message was handed to the agent
    (written to its channel, or accepted by its HTTP API)."""

    def __init__(self, ack_callback=None):
        self.ack_callback = ack_callback

    def _ack(self, bookmarks):
        if self.ack_callback is not None:
            for bookmark in bookmarks:
                self.ack_callback(bookmark)


class InstantAckTracker(_AckTracker):
    """Calls ``ack_callback(bookmark)`` for every delivered message."""


class ConsecutiveAckTracker(_AckTracker):
    """Calls ``ack_callback(bookmark)`` in posting order (deliveries are in order)."""


class BatchedAckTracker(_AckTracker):
    """Calls ``batched_ack_callback([bookmarks])`` once per delivered batch."""

    def __init__(self, timeout=None, batch_size=None, batched_ack_callback=None):
        super(BatchedAckTracker, self).__init__(None)
        self.timeout = timeout
        self.batch_size = batch_size
        self.batched_ack_callback = batched_ack_callback

    def _ack(self, bookmarks):
        if self.batched_ack_callback is not None and bookmarks:
            self.batched_ack_callback(list(bookmarks))


# Also importable as module constants, as some drivers do.
FETCH_ERROR = LogFetcher.FETCH_ERROR
FETCH_NOT_CONNECTED = LogFetcher.FETCH_NOT_CONNECTED
FETCH_SUCCESS = LogFetcher.FETCH_SUCCESS
FETCH_TRY_AGAIN = LogFetcher.FETCH_TRY_AGAIN
FETCH_NO_DATA = LogFetcher.FETCH_NO_DATA


class Logger(object):
    """syslog-ng's internal logger: each call is one line on the worker's stderr."""

    def _log(self, level, message):
        try:
            sys.stderr.write("%s: %s\n" % (level, message))
            sys.stderr.flush()
        except Exception:
            pass

    def error(self, message):
        self._log("error", message)

    def warning(self, message):
        self._log("warning", message)

    def info(self, message):
        self._log("info", message)

    def debug(self, message):
        self._log("debug", message)

    def trace(self, message):
        self._log("trace", message)


# ---------------------------------------------------------------------- persist

_PERSIST_LOCK = threading.Lock()
# The input instance whose driver is running on this thread (set by the runner's
# adapter); its Persist stores live in a directory of their own.
_scope = threading.local()


class _instance_scope(object):
    def __init__(self, instance):
        self._instance = instance

    def __enter__(self):
        self._previous = getattr(_scope, "instance", None)
        _scope.instance = self._instance

    def __exit__(self, *exc):
        _scope.instance = self._previous


def _safe(name):
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", name) or "_"
    if safe != name or safe in (".", ".."):
        # Two names that differ only in unsafe characters must not share a file.
        safe += "-%08x" % (_stable_hash(name) & 0xffffffff)
    return safe


def _persist_file(name):
    base = _persist_dir or os.path.join(os.getcwd(), ".pythond-persist")
    parts = [base, _safe(_input_name)]
    instance = getattr(_scope, "instance", None)
    if instance:
        parts.append("@" + _safe(instance))
    return os.path.join(*(parts + [_safe(name) + ".json"]))


def _stable_hash(text):
    value = 2166136261
    for byte in text.encode("utf-8"):
        value = ((value ^ byte) * 16777619) & 0xffffffff
    return value


class Persist(object):
    """A durable dict of str keys to str, bytes, int (or float, bool) values.

    ``Persist(name, defaults={...})`` opens the store ``name`` of this input (the
    defaults fill in only keys it does not have yet). Every assignment or deletion is
    written to disk at once, atomically (a temporary file, fsync, rename), so a value
    set before a crash is there after it, and a crash never leaves half a file.
    """

    def __init__(self, persist_name, defaults=None):
        if not isinstance(persist_name, str) or not persist_name:
            raise ValueError("Persist needs a non-empty name")
        self._name = persist_name
        self._path = _persist_file(persist_name)
        self._lock = threading.RLock()
        self._data = self._load()
        if defaults:
            changed = False
            for key, value in dict(defaults).items():
                if key not in self._data:
                    self._data[self._key(key)] = self._encode(key, value)
                    changed = True
            if changed:
                self._save()

    @property
    def path(self):
        return self._path

    def _load(self):
        try:
            with open(self._path, "r", encoding="utf-8") as f:
                raw = json.load(f)
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as e:
            raise RuntimeError("Persist %r: cannot read %s: %s" % (self._name, self._path, e))
        if not isinstance(raw, dict):
            raise RuntimeError("Persist %r: %s does not hold a JSON object" % (self._name, self._path))
        return raw

    def _save(self):
        directory = os.path.dirname(self._path)
        with _PERSIST_LOCK:
            os.makedirs(directory, mode=0o700, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=directory)
            try:
                with os.fdopen(fd, "w", encoding="utf-8") as f:
                    json.dump(self._data, f, sort_keys=True)
                    f.flush()
                    os.fsync(f.fileno())
                os.replace(tmp, self._path)
            except BaseException:
                try:
                    os.unlink(tmp)
                except OSError:
                    pass
                raise
            try:
                dir_fd = os.open(directory, os.O_RDONLY)
                try:
                    os.fsync(dir_fd)
                finally:
                    os.close(dir_fd)
            except OSError:
                pass

    @staticmethod
    def _key(key):
        key = _text(key)
        if not isinstance(key, str):
            raise TypeError("Persist keys are str, not %s" % type(key).__name__)
        return key

    @staticmethod
    def _encode(key, value):
        if isinstance(value, bytes):
            return {"bytes": value.decode("latin-1")}
        if isinstance(value, (str, int, float, bool)):
            return value
        raise TypeError("Persist value of %r must be str, bytes or int, not %s" % (key, type(value).__name__))

    @staticmethod
    def _decode(value):
        if isinstance(value, dict) and "bytes" in value:
            return value["bytes"].encode("latin-1")
        return value

    def __getitem__(self, key):
        with self._lock:
            return self._decode(self._data[self._key(key)])

    def __setitem__(self, key, value):
        with self._lock:
            self._data[self._key(key)] = self._encode(key, value)
            self._save()

    def __delitem__(self, key):
        with self._lock:
            del self._data[self._key(key)]
            self._save()

    def __contains__(self, key):
        with self._lock:
            return self._key(key) in self._data

    def __iter__(self):
        with self._lock:
            return iter(list(self._data))

    def __len__(self):
        with self._lock:
            return len(self._data)

    def get(self, key, default=None):
        with self._lock:
            key = self._key(key)
            return self._decode(self._data[key]) if key in self._data else default

    def keys(self):
        return list(self)

    def items(self):
        with self._lock:
            return [(k, self._decode(v)) for k, v in self._data.items()]
