#encoding: utf-8
"""The collector kinds pythond runs besides ``DataKitFramework`` subclasses, and the
adapters that drive them.

The runner (``pythond_worker.py``) asks ``kind_of(cls)`` for every class it finds in
a collector module. For a syslog-ng driver (a ``syslogng.LogFetcher`` or
``syslogng.LogSource`` subclass) or a zenpython plugin (a ``PythonDataSourcePlugin``
subclass) it instantiates ``adapter_class(kind)(cls)`` instead of the class itself.
The adapter is a ``DataKitFramework`` like any other collector, so the runner needs to
know nothing more: it calls the same hooks on it --

* ``init(options)`` once before the first run (False keeps the plugin out, reported);
* ``run()`` -- one zenpython collection cycle, or a syslog-ng driver's whole life
  (``long_running``), or, under ``pythond check`` (``once``), one bounded pass;
* ``request_exit()`` from the command thread at stop and reload;
* ``deinit()`` when the worker stops (zenpython's ``cleanup(config)``).

The driver's results become points through ``self.report()``, hence through the same
transport, validation and sinks as every DataKit point. The mapping tables are in
docs/MIGRATING.md; the input keys (``time_reopen``, ``fetch_no_data_delay``,
``zenpython_devices``) in docs/CONFIG.md. They arrive as ``$PYTHOND_KINDS`` (JSON),
which ``load_settings()`` takes out of the environment.

Standard library only; Twisted is used when the collector's interpreter has it (for
zenpython plugins whose ``collect`` returns a ``Deferred``).
"""

import collections
import inspect
import json
import numbers
import os
import socket
import sys
import threading
import time
import traceback

SETTINGS_ENV = "PYTHOND_KINDS"

KIND_DATAKIT = "datakit"
KIND_FETCHER = "syslogng_fetcher"
KIND_SOURCE = "syslogng_source"
KIND_ZENPYTHON = "zenpython"

ZENPYTHON_MODULE = "ZenPacks.zenoss.PythonCollector.datasources.PythonDataSource"

# Messages a LogSource may have posted but the agent not yet taken (its flow-control
# window, syslog-ng's log-iw-size). At most this many points per report frame.
SOURCE_WINDOW = 1000
REPORT_BATCH = 500
# Under `pythond check` a fetcher stops after this many messages if it never says
# FETCH_NO_DATA.
CHECK_MESSAGE_CAP = 1000
# zenpython's default cycle time.
ZENPYTHON_CYCLETIME = 300.0
# How long deinit() waits for one zenpython cleanup() (it may return a Deferred).
CLEANUP_WAIT = 5.0

_settings = {"time_reopen": 1.0, "fetch_no_data_delay": None, "zenpython_devices": None,
             "state_dir": None, "once": False}


def load_settings(input_name):
    """Read ``$PYTHOND_KINDS`` (and remove it from the environment) and point
    ``syslogng.Persist`` at this input's state directory."""
    text = os.environ.pop(SETTINGS_ENV, None)
    if text:
        try:
            value = json.loads(text)
            if isinstance(value, dict):
                _settings.update((k, v) for k, v in value.items() if k in _settings)
        except ValueError:
            _stderr("ignoring $%s: not the JSON object the agent writes" % SETTINGS_ENV)
    import syslogng
    syslogng._input_name = input_name or "default"
    if _settings.get("state_dir"):
        syslogng._persist_dir = _settings["state_dir"]


def _stderr(message):
    try:
        os.write(2, ("pythond_worker: " + message + "\n").encode("utf-8", "replace"))
    except OSError:
        pass


def _seconds(key, default):
    value = _settings.get(key)
    if isinstance(value, numbers.Real) and not isinstance(value, bool) and value >= 0:
        return float(value)
    return default


def kind_of(cls):
    """The kind of collector class ``cls`` is, or None. Only modules a collector
    already imported are consulted: nothing is imported here."""
    slng = sys.modules.get("syslogng")
    if slng is not None:
        if issubclass(cls, slng.LogFetcher) and cls is not slng.LogFetcher:
            return KIND_FETCHER if cls.fetch is not slng.LogFetcher.fetch else None
        if issubclass(cls, slng.LogSource) and cls is not slng.LogSource:
            return KIND_SOURCE if cls.run is not slng.LogSource.run else None
    zen = sys.modules.get(ZENPYTHON_MODULE)
    if zen is not None:
        base = zen.PythonDataSourcePlugin
        if issubclass(cls, base) and cls is not base:
            # A shared base class (no collect of its own) is not a plugin.
            return KIND_ZENPYTHON if cls.collect is not base.collect else None
    return None


def adapter_class(kind):
    """The DataKitFramework subclass that drives collectors of ``kind``."""
    classes = _adapter_classes()
    return classes[kind]


def new_collector(cls, kind):
    """A collector object for class ``cls`` of ``kind`` (None: a DataKit class, made
    with no arguments). Whoever creates collector objects -- one per plugin, or one
    per instance -- creates them here, so every kind gets its adapter."""
    if kind is None or kind == KIND_DATAKIT:
        return cls()
    return adapter_class(kind)(cls)


_classes = {}


def _adapter_classes():
    if not _classes:
        base = sys.modules["datakit_framework"].DataKitFramework
        _classes[KIND_FETCHER] = type("SyslogNgFetcherAdapter", (_FetcherAdapter, base), {})
        _classes[KIND_SOURCE] = type("SyslogNgSourceAdapter", (_SourceAdapter, base), {})
        _classes[KIND_ZENPYTHON] = type("ZenPythonAdapter", (_ZenPythonAdapter, base), {})
    return _classes


def _source_name(cls):
    value = cls.__dict__.get("name") or getattr(cls, "name", None)
    return value if isinstance(value, str) and value else cls.__name__


def _takes(function, count):
    try:
        inspect.signature(function).bind(*([None] * count))
        return True
    except (TypeError, ValueError):
        return False


def _error_text(error):
    try:
        text = str(error)
    except Exception:
        text = ""
    return "%s: %s" % (type(error).__name__, text) if text else type(error).__name__


# ---------------------------------------------------------------------- syslog-ng

# syslog-ng severity (0..7) -> a logging point's status.
SEVERITY_STATUS = ("critical", "critical", "critical", "error", "warning", "info", "info", "debug")
_NAMED = {"MESSAGE": None, "HOST": "host", "PROGRAM": "program", "PID": "pid", "MSGID": "msgid"}


def message_point(msg, measurement):
    """A ``LogMessage`` as a logging point (docs/MIGRATING.md has the table)."""
    tags = {"facility": msg.facility}
    fields = {"message": msg.get_as_str("MESSAGE", "") or "",
              "status": SEVERITY_STATUS[msg.get_pri() & 7]}
    for name, value in msg.items():
        if name == "MESSAGE" or value is None:
            continue
        if name in ("HOST", "PROGRAM"):
            if value != "":
                tags[_NAMED[name]] = str(value)
            continue
        key = _NAMED.get(name) or name.lstrip(".")
        if not key:
            continue
        fields[key] = value
    point = {"measurement": measurement, "tags": tags, "fields": fields}
    if msg._timestamp is not None:
        point["time"] = msg._timestamp
    return point


class _SyslogNgAdapter(object):
    """What the fetcher and source adapters share: the driver, its measurement and the
    window of posted messages the agent has not taken yet."""

    long_running = True

    def __init__(self, cls):
        super(_SyslogNgAdapter, self).__init__()
        self.driver = cls()
        self.driver._pythond_host = self
        self.measurement = _source_name(cls)
        self.exiting = threading.Event()
        self._cond = threading.Condition()
        self._window = collections.deque()
        self._closed = 0  # posted messages up to the last batch end
        self._in_report = 0
        self._suspended = False
        self._forwarder = None
        self.once = bool(_settings.get("once"))
        self.dropped = 0

    def init(self, options):
        if isinstance(options.get("measurement"), str) and options["measurement"]:
            self.measurement = options["measurement"]
        hook = getattr(self.driver, "init", None)
        if callable(hook) and _takes(hook, 1):
            with self.scope():
                return hook(options)
        return True

    def scope(self):
        """While the driver runs: Persist stores of this collector object's instance
        (set as ``self.instance`` by an input with instances) are its own."""
        return sys.modules["syslogng"]._instance_scope(getattr(self, "instance", None))

    def deinit(self):
        hook = getattr(self.driver, "deinit", None)
        if callable(hook):
            hook()

    def request_exit(self):
        # The driver first (it may have to unblock a fetch() or its run loop), then
        # the adapter's own waits and a post_message() blocked on a full window.
        hook = getattr(self.driver, "request_exit", None)
        try:
            if callable(hook):
                hook()
        finally:
            self.exiting.set()
            with self._cond:
                self._cond.notify_all()

    # -- the window (flow control)

    def post(self, msg):
        point = message_point(msg, self.measurement)
        suspend = None
        with self._cond:
            if len(self._window) >= SOURCE_WINDOW and not self._suspended:
                self._suspended = True
                suspend = getattr(self.driver, "suspend", None)
        if callable(suspend):
            suspend()
        with self._cond:
            while len(self._window) >= SOURCE_WINDOW and not self.exiting.is_set():
                self._cond.wait(0.5)
            if self.exiting.is_set() and len(self._window) >= SOURCE_WINDOW:
                self.dropped += 1
                _stderr("%s: message dropped at stop: the agent is not taking messages (%d dropped)"
                        % (self.measurement, self.dropped))
                return
            self._window.append((point, getattr(msg, "_bookmark", None)))
            if getattr(self.driver, "auto_close_batches", True):
                self._closed = len(self._window)
            self._cond.notify_all()

    def close_batch(self):
        with self._cond:
            self._closed = len(self._window)
            self._cond.notify_all()

    def start_forwarder(self):
        self._forwarder = threading.Thread(target=self._forward, name="pythond:%s:forward" % self.measurement,
                                           daemon=True)
        self._forwarder.start()

    def _forward(self):
        while True:
            with self._cond:
                while not self._closed and len(self._window) < SOURCE_WINDOW:
                    self._cond.wait()
                count = min(REPORT_BATCH, max(self._closed, len(self._window) if
                                              len(self._window) >= SOURCE_WINDOW else 0))
                batch = [self._window.popleft() for _ in range(count)]
                self._closed = max(0, self._closed - count)
                self._in_report += 1
            try:
                self.report({"L": [point for point, _ in batch], "precision": "ns"})
                self._acknowledge([bookmark for _, bookmark in batch if bookmark is not None])
            except Exception as e:
                _stderr("%s: report failed: %s" % (self.measurement, _error_text(e)))
            wakeup = None
            with self._cond:
                self._in_report -= 1
                if self._suspended and len(self._window) <= SOURCE_WINDOW // 2:
                    self._suspended = False
                    wakeup = getattr(self.driver, "wakeup", None)
                self._cond.notify_all()
            if callable(wakeup):
                wakeup()

    def _acknowledge(self, bookmarks):
        """Give delivered messages' bookmarks to the source's ack tracker, if any."""
        tracker = getattr(self.driver, "ack_tracker", None)
        if not bookmarks or tracker is None or not hasattr(tracker, "_ack"):
            return
        try:
            tracker._ack(bookmarks)
        except Exception as e:
            _stderr("%s: the ack callback raised %s" % (self.measurement, _error_text(e)))

    def drain(self, timeout=None):
        """Wait until everything posted so far was handed to the agent."""
        self.close_batch()
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while self._window or self._in_report:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return False
                self._cond.wait(0.5 if left is None else min(0.5, left))
        return True


class _FetcherAdapter(_SyslogNgAdapter):
    """Drives a ``syslogng.LogFetcher``: open, fetch in a loop, close; the delays of
    each result code are syslog-ng's (docs/MIGRATING.md)."""

    def __init__(self, cls):
        super(_FetcherAdapter, self).__init__(cls)
        self.time_reopen = _seconds("time_reopen", 1.0)
        self.no_data_delay = _seconds("fetch_no_data_delay", self.time_reopen)
        self.opened = False
        self._troubled = False
        if self.once:
            self.long_running = False

    def run(self):
        if self._forwarder is None:
            self.start_forwarder()
        with self.scope():
            if self.once:
                self._run_once()
            else:
                self._run_forever()
        self.drain()

    def _open(self):
        ok = self.driver.open()
        self.opened = ok is not False
        return self.opened

    def _close(self):
        if self.opened:
            self.opened = False
            self.driver.close()

    def _fetch(self):
        """(code, message) from one fetch(); an exception is FETCH_ERROR."""
        slng = sys.modules["syslogng"]
        try:
            result = self.driver.fetch()
        except Exception as e:
            _stderr("%s: fetch() raised %s; closing and reopening after %gs"
                    % (self.measurement, _error_text(e), self.time_reopen))
            traceback.print_exc()
            return slng.FETCH_ERROR, None
        if isinstance(result, tuple):
            code = result[0] if result else None
            msg = result[1] if len(result) > 1 else None
        else:
            code, msg = result, None
        if code == slng.FETCH_SUCCESS and not isinstance(msg, slng.LogMessage):
            _stderr("%s: fetch() returned FETCH_SUCCESS without a LogMessage (%s); treated as FETCH_ERROR"
                    % (self.measurement, type(msg).__name__))
            return slng.FETCH_ERROR, None
        if code not in (slng.FETCH_ERROR, slng.FETCH_NOT_CONNECTED, slng.FETCH_SUCCESS,
                        slng.FETCH_TRY_AGAIN, slng.FETCH_NO_DATA):
            _stderr("%s: fetch() returned %r, not a FETCH_* code; treated as FETCH_ERROR"
                    % (self.measurement, result))
            return slng.FETCH_ERROR, None
        return code, msg

    def _run_forever(self):
        slng = sys.modules["syslogng"]
        while not self.exiting.is_set():
            if not self.opened:
                try:
                    opened = self._open()
                except Exception as e:
                    _stderr("%s: open() raised %s" % (self.measurement, _error_text(e)))
                    opened = False
                if not opened:
                    self._trouble("%s: open() failed; retrying in %gs (time_reopen)"
                                       % (self.measurement, self.time_reopen))
                    self.exiting.wait(self.time_reopen)
                    continue
            code, msg = self._fetch()
            if code == slng.FETCH_SUCCESS:
                self._troubled = False
                self.post(msg)
            elif code == slng.FETCH_NO_DATA:
                self._troubled = False
                self.exiting.wait(self.no_data_delay)
            elif code == slng.FETCH_TRY_AGAIN:
                continue
            else:
                what = "FETCH_NOT_CONNECTED" if code == slng.FETCH_NOT_CONNECTED else "FETCH_ERROR"
                self._trouble("%s: fetch() returned %s; reopening in %gs (time_reopen)"
                                   % (self.measurement, what, self.time_reopen))
                self._safe_close()
                self.exiting.wait(self.time_reopen)
        self._safe_close()

    def _trouble(self, message):
        """Report a failed open/fetch as the plugin's last error, once per failing
        stretch (each retry is still a line on stderr)."""
        _stderr(message)
        if not self._troubled:
            self._troubled = True
            self.set_lasterror(None, message)

    def _safe_close(self):
        try:
            self._close()
        except Exception as e:
            _stderr("%s: close() raised %s" % (self.measurement, _error_text(e)))

    def _run_once(self):
        slng = sys.modules["syslogng"]
        if not self._open():
            raise RuntimeError("%s.open() returned False" % type(self.driver).__name__)
        try:
            fetched = 0
            while fetched < CHECK_MESSAGE_CAP and not self.exiting.is_set():
                code, msg = self._fetch()
                if code == slng.FETCH_SUCCESS:
                    self.post(msg)
                    fetched += 1
                elif code == slng.FETCH_TRY_AGAIN:
                    continue
                elif code == slng.FETCH_NO_DATA:
                    break
                else:
                    raise RuntimeError("%s.fetch() returned %s after %d messages" % (
                        type(self.driver).__name__,
                        "FETCH_NOT_CONNECTED" if code == slng.FETCH_NOT_CONNECTED else "FETCH_ERROR", fetched))
        finally:
            self._close()


class _SourceAdapter(_SyslogNgAdapter):
    """Drives a ``syslogng.LogSource``: its ``run()`` in this plugin's run thread,
    ``post_message()`` through the flow-control window."""

    def run(self):
        if self._forwarder is None:
            self.start_forwarder()
        try:
            with self.scope():
                self.driver.run()
        finally:
            self.drain()


# ---------------------------------------------------------------------- zenpython

# Zenoss severity (0 Clear .. 5 Critical) -> a keyevent's df_status.
ZENOSS_STATUS = ("ok", "info", "info", "warning", "error", "critical")


class _Failure(object):
    """A failed call, shaped like Twisted's ``Failure`` for plugins' ``onError``
    (used when Twisted is not installed)."""

    def __init__(self, error):
        self.value = error
        self.type = type(error)
        self.tb = error.__traceback__

    def getErrorMessage(self):
        return str(self.value)

    def getTraceback(self):
        return "".join(traceback.format_exception(self.type, self.value, self.tb))

    def check(self, *types):
        for t in types:
            if isinstance(self.value, t):
                return t
        return None

    def trap(self, *types):
        found = self.check(*types)
        if found is None:
            raise self.value
        return found

    def raiseException(self):
        raise self.value

    def __repr__(self):
        return "<Failure %s: %s>" % (self.type.__name__, self.value)


def _twisted():
    """Twisted's (defer, failure, threads, reactor) with its reactor running on a
    daemon thread, or None when the interpreter has no Twisted."""
    global _TWISTED
    if _TWISTED is not None:
        return _TWISTED or None
    with _TWISTED_LOCK:
        if _TWISTED is None:
            try:
                from twisted.internet import defer, reactor, threads
                from twisted.python import failure
            except ImportError:
                _TWISTED = False
                return None
            if not reactor.running:
                thread = threading.Thread(target=reactor.run, kwargs={"installSignalHandlers": False},
                                          name="pythond:twisted-reactor", daemon=True)
                thread.start()
            _TWISTED = (defer, failure, threads, reactor)
    return _TWISTED or None


_TWISTED = None
_TWISTED_LOCK = threading.Lock()


class _Bag(object):
    """An attribute bag: zenpython's config, datasource and datapoint objects."""

    def __init__(self, **kwargs):
        self.__dict__.update(kwargs)

    def __repr__(self):
        return "<%s>" % ", ".join("%s=%r" % kv for kv in sorted(self.__dict__.items()))


def instance_device_config(cls, name, interval, instance, options):
    """The config of the one device an input instance stands for: the instance's
    options are the device table (``id`` defaults to the instance name), and the
    options without the documented device keys are the datasource's params."""
    device = dict(options)
    device.setdefault("id", instance)
    params = dict((k, v) for k, v in options.items() if k not in _DEVICE_KEYS)
    own = device.get("params")
    if isinstance(own, dict):
        params.update(own)
    device["params"] = params
    return _device_config(cls, name, interval, device, {})


_DEVICE_KEYS = ("id", "manageIp", "component", "template", "datasource", "cycletime", "params", "points")


def device_configs(cls, name, interval, params):
    """The zenpython ``config`` of each device this plugin collects for.

    Devices come from the input key ``zenpython_devices`` (one table per device); an
    input without it collects for one device named after this host. Everything in a
    device's table besides the documented keys is an attribute of its config and its
    datasource (the ``proxy_attributes`` values). Kept separate so that a device per
    input instance can replace the key without touching the adapter.
    """
    devices = _settings.get("zenpython_devices")
    if not isinstance(devices, list) or not devices:
        devices = [{"id": socket.gethostname(), "manageIp": "127.0.0.1"}]
    return [_device_config(cls, name, interval, device, params) for device in devices if isinstance(device, dict)]


def _device_config(cls, name, interval, device, params):
    """One device table (docs/MIGRATING.md) as zenpython's config object."""
    device = dict(device)
    device_id = str(device.pop("id", "") or socket.gethostname())
    manage_ip = str(device.pop("manageIp", "") or device_id)
    component = str(device.pop("component", "") or "")
    template = str(device.pop("template", "") or "")
    datasource = str(device.pop("datasource", "") or name)
    cycletime = device.pop("cycletime", None)
    if not isinstance(cycletime, numbers.Real) or isinstance(cycletime, bool) or cycletime <= 0:
        cycletime = interval
    own_params = device.pop("params", None)
    merged = dict(params)
    if isinstance(own_params, dict):
        merged.update(own_params)
    points = device.pop("points", None) or []
    extra = dict((k, v) for k, v in device.items())
    ds = _Bag(device=device_id, component=component, template=template, datasource=datasource,
              plugin_classname="%s.%s" % (cls.__module__, cls.__name__), cycletime=float(cycletime),
              params=merged, eventClass="", eventKey="", severity=3,
              points=[_Bag(id=str(p), dpName="%s_%s" % (datasource, p), component=component,
                           rrdType="GAUGE", rrdmin=None, rrdmax=None, metadata={})
                      for p in points if isinstance(p, (str, int))])
    for key, value in extra.items():
        setattr(ds, key, value)
    config = _Bag(id=device_id, manageIp=manage_ip, datasources=[ds])
    for key, value in extra.items():
        setattr(config, key, value)
    return config


class _ZenPythonAdapter(object):
    """Drives a zenpython ``PythonDataSourcePlugin``: one plugin object per device,
    each ``run()`` one collection cycle for every device."""

    long_running = False

    def __init__(self, cls):
        super(_ZenPythonAdapter, self).__init__()
        self.cls = cls
        self.name = _source_name(cls)
        cycletime = getattr(cls, "cycletime", None)
        self.interval = float(cycletime) if isinstance(cycletime, numbers.Real) and cycletime > 0 \
            else ZENPYTHON_CYCLETIME
        configs = device_configs(cls, self.name, self.interval, {})
        if configs:
            self.interval = configs[0].datasources[0].cycletime
        self.devices = []  # (plugin object, config)

    def init(self, options):
        instance = getattr(self, "instance", None)
        if isinstance(instance, str) and instance:
            configs = [instance_device_config(self.cls, self.name, self.interval, instance, options)]
        else:
            configs = device_configs(self.cls, self.name, self.interval, options)
        for config in configs:
            plugin = self.cls(config=config) if _takes(self.cls, 1) else self.cls()
            self.devices.append((plugin, config))
        return True

    def run(self):
        """One cycle for every device: on the reactor all devices at once (as zenpython
        does), else one after the other in this thread."""
        failures = []
        tw = _twisted()
        on_reactor = [(p, c) for p, c in self.devices if tw is not None and not getattr(p, "is_blocking", False)]
        if on_reactor:
            outcomes = tw[2].blockingCallFromThread(tw[3], self._deferred_cycles, tw, on_reactor)
            for (plugin, config), (ok, value) in zip(on_reactor, outcomes):
                if ok:
                    self.report_result(value, config)
                else:
                    failures.append((config.id, value.value))
        reactor_objects = set(id(plugin) for plugin, _ in on_reactor)
        for plugin, config in self.devices:
            if id(plugin) in reactor_objects:
                continue
            try:
                result = self._plain_cycle(tw, plugin, config)
            except Exception as e:
                failures.append((config.id, e))
                continue
            self.report_result(result, config)
        if failures:
            if len(failures) == 1:
                raise failures[0][1]
            raise RuntimeError("; ".join("%s: %s" % (d, _error_text(e)) for d, e in failures))

    @classmethod
    def _deferred_cycles(cls, tw, devices):
        """In the reactor thread: every device's chain, as zenpython runs them there;
        fires with [(ok, result or Failure)] once all have ended."""
        defer = tw[0]
        return defer.DeferredList([cls._deferred_cycle(tw, p, c) for p, c in devices], consumeErrors=True)

    @staticmethod
    def _deferred_cycle(tw, plugin, config):
        defer = tw[0]
        d = defer.maybeDeferred(plugin.collect, config)
        d.addBoth(plugin.onResult, config)
        d.addCallback(plugin.onSuccess, config)
        d.addErrback(plugin.onError, config)
        d.addBoth(plugin.onComplete, config)
        return d

    @staticmethod
    def _plain_cycle(tw, plugin, config):
        """The same callback chain without a reactor: collect() in this thread."""
        failure_type = tw[1].Failure if tw is not None else None

        def fail(error):
            return failure_type(error) if failure_type is not None else _Failure(error)

        def is_failure(value):
            return isinstance(value, _Failure) or (failure_type is not None and isinstance(value, failure_type))

        def call(function, value):
            try:
                return function(value, config)
            except Exception as e:
                return fail(e)

        try:
            value = plugin.collect(config)
        except Exception as e:
            value = fail(e)
        if hasattr(value, "addCallbacks") and not is_failure(value):
            value = fail(TypeError("collect() returned a Deferred, but Twisted is not installed "
                                   "in this interpreter (or the plugin says is_blocking)"))
        value = call(plugin.onResult, value)
        if not is_failure(value):
            value = call(plugin.onSuccess, value)
        if is_failure(value):
            value = call(plugin.onError, value)
        value = call(plugin.onComplete, value)
        if is_failure(value):
            value.raiseException()
        return value

    def deinit(self):
        for plugin, config in self.devices:
            try:
                tw = _twisted()
                if tw is not None:
                    done = threading.Event()

                    def start(plugin=plugin, config=config):
                        d = tw[0].maybeDeferred(plugin.cleanup, config)
                        d.addErrback(lambda f: _stderr("%s: cleanup() failed: %s"
                                                       % (self.name, f.getErrorMessage())))
                        d.addBoth(lambda _: done.set())
                    tw[3].callFromThread(start)
                    if not done.wait(CLEANUP_WAIT):
                        _stderr("%s: cleanup(%s) did not finish within %gs" % (self.name, config.id, CLEANUP_WAIT))
                else:
                    plugin.cleanup(config)
            except Exception as e:
                _stderr("%s: cleanup(%s) failed: %s" % (self.name, config.id, _error_text(e)))

    # -- results -> points

    def report_result(self, result, config):
        if result is None:
            return
        if not isinstance(result, dict):
            _stderr("%s: the result for %s is a %s, not a dict with values/events/maps; ignored"
                    % (self.name, config.id, type(result).__name__))
            return
        data = {"M": self.metric_points(result.get("values"), config),
                "E": self.event_points(result.get("events"), config),
                "O": self.object_points(result.get("maps"), config),
                "precision": "ns"}
        if data["M"] or data["E"] or data["O"]:
            self.report(data)

    def metric_points(self, values, config):
        measurement = config.datasources[0].datasource if config.datasources else self.name
        groups = collections.OrderedDict()
        if values is not None and not isinstance(values, dict):
            _stderr("%s: result values for %s are a %s, not a dict; dropped" % (self.name, config.id, type(values).__name__))
            values = None
        for component, datapoints in (values or {}).items():
            if not isinstance(datapoints, dict):
                _stderr("%s: values[%r] for %s is a %s, not a dict of datapoints; dropped"
                        % (self.name, component, config.id, type(datapoints).__name__))
                continue
            for datapoint, value in datapoints.items():
                stamp = None
                if isinstance(value, (tuple, list)) and len(value) == 2:
                    value, stamp = value
                time_ns = _zenoss_time(stamp)
                key = (component or "", time_ns)
                groups.setdefault(key, {})[str(datapoint)] = value
        points = []
        for (component, time_ns), fields in groups.items():
            tags = {"device": str(config.id)}
            if component:
                tags["component"] = str(component)
            point = {"measurement": measurement, "tags": tags, "fields": fields}
            if time_ns is not None:
                point["time"] = time_ns
            points.append(point)
        return points

    def event_points(self, events, config):
        measurement = config.datasources[0].datasource if config.datasources else self.name
        points = []
        for event in events or []:
            if not isinstance(event, dict):
                _stderr("%s: an event for %s is a %s, not a dict; dropped" % (self.name, config.id, type(event).__name__))
                continue
            event = dict(event)
            severity = event.pop("severity", 3)
            try:
                severity = int(severity)
            except (TypeError, ValueError):
                severity = 3
            status = ZENOSS_STATUS[min(max(severity, 0), 5)]
            summary = str(event.pop("summary", "") or "")
            message = str(event.pop("message", "") or "")
            title = summary or message or str(event.get("eventClass") or "zenpython event")
            event_id = str(event.get("eventKey") or event.get("eventClassKey") or title)
            tags = {"device": str(event.pop("device", None) or config.id)}
            component = event.pop("component", None)
            if component:
                tags["component"] = str(component)
            fields = {"df_status": status, "df_event_id": event_id, "df_title": title,
                      "df_message": message or summary, "df_source": "monitor", "severity": severity}
            for key, value in event.items():
                if value is None:
                    continue
                fields[str(key)] = value if isinstance(value, (str, bool, int, float)) else _json_text(value)
            point = {"measurement": measurement, "tags": tags, "fields": fields}
            stamp = _zenoss_time(fields.pop("rcvtime", None))
            if stamp is not None:
                point["time"] = stamp
            points.append(point)
        return points

    def object_points(self, maps, config):
        points = []
        for item in maps or []:
            if isinstance(item, list) and hasattr(item, "relname"):
                for objmap in item:
                    points.append(self._object_point(objmap, config, relname=item.relname,
                                                     compname=getattr(item, "compname", ""),
                                                     modname=getattr(item, "modname", "")))
            elif hasattr(item, "items"):
                points.append(self._object_point(item, config))
            else:
                _stderr("%s: a map for %s is a %s, not an ObjectMap or RelationshipMap; dropped"
                        % (self.name, config.id, type(item).__name__))
        return [p for p in points if p is not None]

    def _object_point(self, objmap, config, relname="", compname="", modname=""):
        if not hasattr(objmap, "items"):
            return None
        attrs = dict(objmap.items())
        modname = getattr(objmap, "modname", "") or modname
        relname = getattr(objmap, "relname", "") or relname
        compname = getattr(objmap, "compname", "") or compname
        klass = getattr(objmap, "classname", "") or (modname.rsplit(".", 1)[-1] if modname else "Device")
        tags = {"name": str(attrs.get("id") or config.id), "device": str(config.id)}
        if relname:
            tags["relname"] = str(relname)
        if compname:
            tags["compname"] = str(compname)
        fields = {}
        for key, value in attrs.items():
            if value is None:
                continue
            fields[str(key)] = value if isinstance(value, (str, bool, int, float)) else _json_text(value)
        if modname:
            fields["modname"] = modname
        return {"measurement": klass, "tags": tags, "fields": fields}


def _json_text(value):
    try:
        return json.dumps(value, default=str, sort_keys=True)
    except (TypeError, ValueError):
        return str(value)


def _zenoss_time(stamp):
    """A zenpython timestamp (seconds since the epoch, or 'N' for now) in nanoseconds."""
    if stamp is None or stamp == "N" or isinstance(stamp, bool):
        return None
    try:
        return int(round(float(stamp) * 1e6)) * 1000
    except (TypeError, ValueError):
        return None
