#encoding: utf-8
"""TCP port check: can a connection be opened, how long does it take, and an event
when that changes.

Every run tries to connect to each target and reports one metric point per target:

    measurement  tcp_check
    tags         target     "host:port" as configured
    fields       up          1 if the connection was accepted, else 0
                 latency_ms  time to connect (only when up)

and, only when a target's state differs from the last one seen, one keyevent
(`feed_system_event`) -- df_status "error" when it goes down, "ok" when it comes back,
with df_title "<target> is down" / "<target> is up" and the error in df_message. A
target seen for the first time raises an event only if it is down. The last state is
saved in a state file, so an agent restart does not repeat events.

Settings (from the input's options, else the environment set with the input's `envs`):

    targets    TCP_CHECK_TARGETS    comma-separated host:port ([v6addr]:port), required
    timeout    TCP_CHECK_TIMEOUT    seconds per connection attempt, default 3
    state_dir  TCP_CHECK_STATE_DIR  where the last states are saved; default
                                    $STATE_DIRECTORY/tcp_check (the service's
                                    /var/lib/pythond/tcp_check), else
                                    ~/.local/state/pythond/tcp_check

Example input (conf.d/tcp_check.conf):

    [[inputs.pythond]]
      name = "tcp_check"
      cmd  = "python3"
      dirs = ["/usr/lib/pythond/python.d/tcp_check"]
      interval = "30s"
      envs = ["TCP_CHECK_TARGETS=db.internal:5432,127.0.0.1:6379"]

Standard library only; Python 3.8+.
"""

import os
import socket
import time

from datakit_framework import DataKitFramework
from pythond_settings import as_list, load_state, positive_number, save_state, setting, state_dir


def split_target(target):
    """("host", port) from "host:port" or "[v6]:port"; ValueError if malformed."""
    host, sep, port = target.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ValueError("%r is not host:port" % target)
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host, int(port)


def connect(target, timeout):
    """(up, latency_ms or None, error message or "")."""
    try:
        host, port = split_target(target)
    except ValueError as e:
        return False, None, str(e)
    start = time.monotonic()
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True, round((time.monotonic() - start) * 1000.0, 3), ""
    except OSError as e:
        return False, None, str(e) or type(e).__name__


class TcpCheck(DataKitFramework):
    name = "tcp_check"
    interval = 30

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.state = None

    def run(self):
        targets = as_list(setting(self, "targets", "TCP_CHECK_TARGETS", ""))
        if not targets:
            print("tcp_check: no targets configured: set option `targets` (in [inputs.pythond.options]) or the variable TCP_CHECK_TARGETS (in the input's envs); nothing to do")
            return
        timeout = positive_number(setting(self, "timeout", "TCP_CHECK_TIMEOUT", 3), 3.0,
                                  "tcp_check: timeout")
        state_file = os.path.join(
            state_dir(setting(self, "state_dir", "TCP_CHECK_STATE_DIR", ""), "tcp_check"),
            "states.json")
        if self.state is None:
            self.state = load_state(state_file)

        new_state = dict(self.state)
        points = []
        for target in targets:
            up, latency, error = connect(target, timeout)
            fields = {"up": 1 if up else 0}
            if latency is not None:
                fields["latency_ms"] = latency
            points.append({"measurement": "tcp_check", "tags": {"target": target}, "fields": fields})
            now = "up" if up else "down"
            before = self.state.get(target)
            new_state[target] = now
            if now != before and (before is not None or not up):
                self.feed_system_event(
                    tags={"target": target},
                    df_status="ok" if up else "error",
                    df_event_id="tcp_check-%s-%d" % (target, time.time_ns()),
                    df_title="%s is %s" % (target, now),
                    df_message=("connection accepted" if up else "cannot connect: " + error),
                )
        self.report({"M": points})
        if new_state != self.state:
            save_state(state_file, new_state)
            self.state = new_state
