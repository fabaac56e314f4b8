#encoding: utf-8
"""pythond's instance pool: many (plugin, instance) objects on a bounded set of threads.

Used by the runner (``pythond_worker.py``) for an input with ``instances``
(docs/CONFIG.md, "Instances"; the frames are in docs/PROTOCOL.md, "Pooled inputs").
What this file owns, and why:

* **The schedule lives here, in the worker.** The agent hands over each instance's
  interval, timeout and first due time once (``instances`` command); from then on
  this module starts every run itself, at a fixed rate, and reports what happened in
  batched ``runs`` frames. At 10,000 instances a ``run``/``done`` frame pair per run
  would cost the agent a wake-up per run; a batch every 100 ms costs ten.
* **Pooled runs.** Timed runs go to a queue served by ``concurrency`` threads. When
  every thread is busy a due run waits in the queue, and its report says when it was
  due and when it started: that wait is lateness, measured, not hidden.
  ``long_running`` plugins get a thread of their own per instance.
* **Timeouts without restarts.** A run past its timeout is reported (``timeout``
  frame) and abandoned: its thread keeps the stuck call (Python cannot kill a
  thread), a fresh thread takes its place so the pool keeps its size, and the next
  run of that instance uses a fresh collector object. Nothing else is delayed. The
  number of abandoned threads still alive is in every ``timeout`` frame; the agent
  recycles the worker gracefully once it passes the documented bound.
* **Objects.** Each (plugin, instance) is its own collector object, created and
  ``init(options)``-ed on a pool thread before its first run (so 10,000 slow
  ``init`` calls never hold up ``hello``), with ``self.options`` (already merged by
  the agent), ``self.instance`` (the instance name) and the instance's tags added to
  its points by the shim. ``deinit()`` runs when the instance is removed, replaced or
  the worker shuts down.

Standard library only; the runner passes in what it owns (the channel, the output
writers, the error helpers) so this module imports nothing of it.
"""

import gc
import heapq
import json
import threading
import time

# Run records are sent in one ``runs`` frame this often (seconds).
BATCH_SECONDS = 0.1
# Collector objects created since the last gc.freeze() that trigger another one.
FREEZE_AFTER = 1000

_dumps = json.JSONEncoder(separators=(",", ":")).encode


def instance_key(plugin_id, instance):
    """The name of one (plugin, instance) in frames, stats and logs: ``<id>@<name>``."""
    return "%s@%s" % (plugin_id, instance)


class InitFailed(Exception):
    """``init()`` raised or returned False: the run is reported failed, init retried."""

    def __init__(self, message, cause=None):
        super(InitFailed, self).__init__(message)
        self.cause = cause


class Instance(object):
    """One (plugin, instance): its settings, its collector object, its schedule."""

    def __init__(self, plugin, name, options, tags, interval, timeout):
        self.plugin = plugin
        self.name = name
        self.key = instance_key(plugin.id, name)
        self.key_json = _dumps(self.key)
        self.options = options
        self.tags = tags
        self.interval = interval
        self.timeout = timeout
        self.obj = None  # created on a pool thread before the first run
        self.run_no = 0
        self.busy = False  # a run is queued or in flight
        self.skipped = 0  # due times passed over since the last reported run
        self.generation = 0  # bumped on pause: heap entries of older ones are stale
        self.removed = False

    def same_settings(self, other):
        return (self.options == other.options and self.tags == other.tags
                and self.interval == other.interval and self.timeout == other.timeout)


class _Slot(object):
    """A pool thread and the run it is in (for timeouts)."""

    __slots__ = ("inst", "run", "started", "abandoned")

    def __init__(self):
        self.inst = None
        self.run = 0
        self.started = 0.0
        self.abandoned = False


class Pool(object):
    """Runs the instances of one worker. All state is guarded by ``self._cond``."""

    def __init__(self, channel, plugins, concurrency, writers, plugin_of_thread, hooks):
        self.channel = channel
        self.plugins = dict((p.id, p) for p in plugins)
        self.concurrency = max(1, int(concurrency))
        self.writers = writers
        self.plugin_of_thread = plugin_of_thread
        # describe(error, plugin) -> error dict; call(obj, name, *args); hook(obj, name);
        # takes(hook, n) -> bool; stderr(text); make(plugin) -> a fresh collector object
        # (a DataKitFramework, or the adapter of another kind).
        self.hooks = hooks
        self.instances = {}
        # One lock, two conditions: the scheduler (and shutdown) wait on `_cond`, idle
        # pool threads on `_work`, so a queued run wakes one thread, not all of them.
        lock = threading.Lock()
        self._cond = threading.Condition(lock)
        self._work = threading.Condition(lock)
        self._heap = []
        self._seq = 0
        self._queue = []  # (inst, run, due) waiting for a pool thread, FIFO
        self._queue_head = 0
        self._idle_threads = 0
        self._batch = []
        self._in_flight = 0
        self._stopping = False
        self.abandoned = 0
        self._created = 0  # collector objects created since the last gc.freeze()
        self._last_created = 0.0
        # Monotonic internally; frames carry Unix time.
        self._wall_offset = time.time() - time.monotonic()

    # ------------------------------------------------------------------ commands

    def start(self):
        for _ in range(self.concurrency):
            self._add_pool_thread()
        threading.Thread(target=self._schedule_loop, name="pythond:scheduler", daemon=True).start()
        threading.Thread(target=self._flush_loop, name="pythond:runs", daemon=True).start()

    def set_instances(self, command):
        """``instances``: add or replace entries (``set``), drop others (``remove``)."""
        stderr = self.hooks["stderr"]
        deinit = []
        with self._cond:
            for entry in command.get("remove") or ():
                if not isinstance(entry, dict):
                    continue
                old = self.instances.pop(instance_key(entry.get("plugin"), entry.get("instance")), None)
                if old is not None:
                    old.removed = True
                    if not old.busy and old.obj is not None:
                        deinit.append(old.obj)
                        old.obj = None
            for entry in command.get("set") or ():
                if not isinstance(entry, dict):
                    continue
                plugin = self.plugins.get(entry.get("plugin"))
                name = entry.get("instance")
                if plugin is None or not isinstance(name, str):
                    stderr("instances: no plugin %r in this worker (or no instance name); ignored"
                           % (entry.get("plugin"),))
                    continue
                try:
                    interval = max(0.001, float(entry.get("interval")))
                    timeout = entry.get("timeout")
                    timeout = None if timeout is None else max(0.001, float(timeout))
                    first = float(entry.get("first"))
                except (TypeError, ValueError):
                    stderr("instances: bad interval, timeout or first for %s@%s; ignored" % (plugin.id, name))
                    continue
                options = entry.get("options") if isinstance(entry.get("options"), dict) else {}
                tags = entry.get("tags") if isinstance(entry.get("tags"), dict) else {}
                inst = Instance(plugin, name, options, tags, interval, timeout)
                old = self.instances.get(inst.key)
                if old is not None:
                    if old.same_settings(inst):
                        continue  # unchanged: keeps its object, schedule and counters
                    old.removed = True
                    if not old.busy and old.obj is not None:
                        deinit.append(old.obj)
                        old.obj = None
                self.instances[inst.key] = inst
                self._push(first - self._wall_offset, "due", inst, inst.generation)
        for obj in deinit:
            self._submit_deinit(obj)

    def pause(self, command):
        """``pause``: no runs of one instance before ``until`` (quarantine)."""
        with self._cond:
            inst = self.instances.get(instance_key(command.get("plugin"), command.get("instance")))
            if inst is None:
                return
            try:
                until = float(command.get("until")) - self._wall_offset
            except (TypeError, ValueError):
                return
            inst.generation += 1
            self._push(until, "due", inst, inst.generation)

    def shutdown(self, grace):
        """Stop scheduling; let runs in flight end within ``grace``; deinit; flush."""
        call = self.hooks["call"]
        deadline = time.monotonic() + grace
        with self._cond:
            self._stopping = True
            # Runs still queued never start: their instances are idle again.
            for item in self._queue[self._queue_head:]:
                if item[0] != "deinit":
                    item[0].busy = False
                    self._in_flight -= 1
            self._queue, self._queue_head = [], 0
            running = [inst for inst in self.instances.values() if inst.busy and inst.obj is not None]
            self._cond.notify_all()
            self._work.notify_all()
        for inst in running:
            call(inst.obj, inst.key, "request_exit")
        with self._cond:
            while self._in_flight > 0:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(left)
            idle = [inst for inst in self.instances.values() if not inst.busy and inst.obj is not None]
            still = [inst.key for inst in self.instances.values() if inst.busy]
        for inst in idle:
            call(inst.obj, inst.key, "deinit")
        for key in still:
            self.hooks["stderr"]("%s: run() still in flight after the grace period; deinit() skipped" % key)
        self._flush()

    # ------------------------------------------------------------------ scheduling

    def _push(self, when, kind, inst, token):
        """Adds a heap entry; wakes the scheduler only if it is now the earliest."""
        self._seq += 1
        entry = (when, self._seq, kind, inst, token)
        heapq.heappush(self._heap, entry)
        if self._heap[0] is entry:
            self._cond.notify()

    def _schedule_loop(self):
        while True:
            frames = []
            with self._cond:
                while not self._stopping:
                    now = time.monotonic()
                    if not self._heap or self._heap[0][0] > now:
                        if frames:
                            break  # send them without holding the lock
                        self._cond.wait(None if not self._heap else self._heap[0][0] - now)
                        continue
                    when, _, kind, target, token = heapq.heappop(self._heap)
                    if kind == "due":
                        self._on_due(target, token, when, now)
                    else:
                        frame = self._on_deadline(target, token, now)
                        if frame is not None:
                            frames.append(frame)
                stopping = self._stopping
            for frame in frames:
                self.channel.send_obj(frame)
            if stopping:
                return

    def _on_due(self, inst, generation, when, now):
        if inst.removed or generation != inst.generation:
            return
        if inst.busy:
            if not inst.plugin.long_running:
                inst.skipped += 1
        else:
            inst.busy = True
            inst.run_no += 1
            self._in_flight += 1
            if inst.plugin.long_running:
                threading.Thread(target=self._run, args=(inst, inst.run_no, when, None),
                                 name="pythond:" + inst.key, daemon=True).start()
            else:
                self._queue.append((inst, inst.run_no, when))
                self._work.notify()
        # Fixed rate: the next due time on the grid, passing over the ones already gone.
        next_due = when + inst.interval
        if next_due <= now:
            missed = int((now - next_due) // inst.interval) + 1
            next_due += missed * inst.interval
            if not inst.plugin.long_running:
                inst.skipped += missed
        self._push(next_due, "due", inst, generation)

    def _on_deadline(self, slot, run, now):
        """A run's timeout came: the ``timeout`` frame to send, or None if it ended."""
        inst = slot.inst
        if inst is None or slot.run != run or slot.abandoned:
            return None  # that run ended in time
        slot.abandoned = True
        self.abandoned += 1
        self._in_flight -= 1
        inst.busy = False
        # The stuck object stays with its thread; the next run gets a fresh one.
        inst.obj = None
        self._add_pool_thread()
        return {"t": "timeout", "plugin": inst.plugin.id, "instance": inst.name, "run": run,
                "ran": round(now - slot.started, 6), "abandoned": self.abandoned}

    # ------------------------------------------------------------------ pool threads

    def _add_pool_thread(self):
        slot = _Slot()
        threading.Thread(target=self._pool_loop, args=(slot,), name="pythond:pool", daemon=True).start()

    def _pool_loop(self, slot):
        while True:
            with self._cond:
                while self._queue_head >= len(self._queue):
                    if self._stopping:
                        return
                    self._work.wait()
                item = self._queue[self._queue_head]
                self._queue_head += 1
                if self._queue_head > 1024 and self._queue_head * 2 > len(self._queue):
                    del self._queue[:self._queue_head]
                    self._queue_head = 0
            if item[0] == "deinit":
                self.hooks["call"](item[1], "-", "deinit")
                continue
            self._run(item[0], item[1], item[2], slot)
            if slot.abandoned:
                return

    def _submit_deinit(self, obj):
        with self._cond:
            self._queue.append(("deinit", obj, None))
            self._work.notify()

    def _run(self, inst, run, due, slot):
        ident = threading.get_ident()
        started = time.monotonic()
        if slot is not None and inst.timeout is not None:
            with self._cond:
                slot.inst, slot.run, slot.started = inst, run, started
                self._push(started + inst.timeout, "deadline", slot, run)
        self.plugin_of_thread[ident] = inst.key
        error = None
        obj = inst.obj
        try:
            if obj is None:
                obj = self._create(inst)
            obj.run()
        except BaseException as e:  # SystemExit and KeyboardInterrupt included
            if isinstance(e, InitFailed):
                error = self.hooks["describe"](e.cause or e, inst.plugin)
                error["type"] = "InitFailed"
                error["message"] = str(e)
                obj = None
            else:
                error = self.hooks["describe"](e, inst.plugin)
                self.hooks["call"](obj, inst.key, "on_error", e)
        seconds = time.monotonic() - started
        for writer in self.writers:
            writer.flush_thread(ident)
        self.plugin_of_thread.pop(ident, None)
        deinit = None
        with self._cond:
            if slot is not None and slot.abandoned:
                self.abandoned -= 1
                self.hooks["stderr"]("%s: run %d finished %.1f s after it was abandoned; its result is dropped"
                                     % (inst.key, run, seconds))
                return
            if slot is not None:
                slot.inst = None
            self._in_flight -= 1
            inst.busy = False
            if inst.removed:
                deinit = obj
            elif obj is not None:
                if inst.obj is not obj:
                    self._created += 1
                    self._last_created = time.monotonic()
                inst.obj = obj
            record = {"plugin": inst.plugin.id, "instance": inst.name, "run": run,
                      "due": round(due + self._wall_offset, 6),
                      "started": round(started + self._wall_offset, 6),
                      "seconds": round(seconds, 6), "ok": error is None}
            if inst.skipped:
                record["skipped"] = inst.skipped
                inst.skipped = 0
            if error is not None:
                record["error"] = error
            self._batch.append(record)
            if self._stopping:
                self._cond.notify_all()  # shutdown waits for runs in flight
        if deinit is not None:
            self.hooks["call"](deinit, inst.key, "deinit")

    def _create(self, inst):
        """A fresh collector object for ``inst``, initialised; InitFailed if refused."""
        obj = self.hooks["make"](inst.plugin)
        obj._pythond_id_json = inst.key_json
        if inst.tags:
            obj._pythond_tags = inst.tags
        for attribute, value in (("options", dict(inst.options)), ("instance", inst.name)):
            try:
                setattr(obj, attribute, value)
            except Exception as e:  # a read-only property of the script's own
                self.hooks["stderr"]("%s: cannot set self.%s: %s" % (inst.key, attribute, e))
        init = self.hooks["hook"](obj, "init")
        if init is not None and self.hooks["takes"](init, 1):
            try:
                result = init(dict(inst.options))
            except BaseException as e:
                raise InitFailed("%s.init() failed: %s; retried at the next run"
                                 % (inst.plugin.cls.__name__, self.hooks["text"](e)), e)
            if result is False:
                raise InitFailed("%s.init() returned False; retried at the next run" % inst.plugin.cls.__name__)
        return obj

    # ------------------------------------------------------------------ run records

    def _flush_loop(self):
        while True:
            time.sleep(BATCH_SECONDS)
            self._flush()
            self._freeze_objects()

    def _freeze_objects(self):
        """Moves long-lived objects out of the garbage collector's sight.

        With tens of thousands of collector objects alive, every full collection walks
        them all while holding the GIL: a pause of every run, measured as 100-200 ms of
        p99 lateness at 50,000 instances (docs/BENCHMARKS.md). ``gc.freeze()`` (cheap:
        it moves lists) puts what exists now into the permanent generation; the garbage
        runs make is still freed by reference counting and by young collections."""
        with self._cond:
            created = self._created
            quiet = time.monotonic() - self._last_created >= 1.0
            settled = created >= FREEZE_AFTER or (created > 0 and quiet)
            if settled:
                self._created = 0
        if settled and hasattr(gc, "freeze"):
            gc.freeze()

    def _flush(self):
        with self._cond:
            batch, self._batch = self._batch, []
        # Reports first: the agent must see a run's points before its record.
        flush_reports = getattr(self.channel, "flush_reports", None)
        if flush_reports is not None:
            flush_reports()
        if not batch:
            return
        limit = max(1024, self.channel.max_frame // 2)
        parts, size = [], 0
        for record in batch:
            text = _dumps(record)
            if len(text) + 64 > limit and "error" in record:
                record["error"].pop("traceback", None)
                text = _dumps(record)
            if parts and size + len(text) + 64 > limit:
                self._send(parts)
                parts, size = [], 0
            parts.append(text)
            size += len(text) + 1
        if parts:
            self._send(parts)

    def _send(self, parts):
        self.channel.send(('{"t":"runs","runs":[' + ",".join(parts) + "]}\n").encode("utf-8"))
