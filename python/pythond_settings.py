"""Settings and saved state for the collectors shipped with pythond (python.d/).

Every shipped collector reads its settings the same way — the input's `options` key
first, then an environment variable, then a default (docs/COLLECTORS.md, "The shipped
collectors") — and the ones that remember where they stopped keep a small JSON file
they replace atomically. This module is that one way, so a fix lands in every
collector at once. The agent ships it next to `datakit_framework` in every worker's
runtime directory; user collectors may import it too.

Standard library only; Python 3.8+.
"""

import json
import os


def setting(plugin, key, env, default):
    """`plugin.options[key]` if set and not empty, else `$env` if set and not empty,
    else `default`."""
    options = getattr(plugin, "options", None)
    if isinstance(options, dict) and options.get(key) not in (None, ""):
        return options[key]
    value = os.environ.get(env, "")
    return value if value != "" else default


def as_list(value):
    """A list of non-empty stripped strings from a list or a comma-separated string."""
    if isinstance(value, (list, tuple)):
        return [str(v).strip() for v in value if str(v).strip()]
    return [part.strip() for part in str(value).split(",") if part.strip()]


def truthy(value):
    """True for 1/true/yes/on in any case."""
    return str(value).strip().lower() in ("1", "true", "yes", "on")


def positive_number(value, default, what):
    """`value` as a positive float; `default` (with a message naming `what`) if it is
    not one."""
    try:
        number = float(value)
        if number > 0:
            return number
    except (TypeError, ValueError):
        pass
    print("%s is %r, not a positive number; using %s" % (what, value, default))
    return default


def state_dir(configured, name):
    """Where collector `name` keeps its state: `configured` if given, else under
    systemd's `$STATE_DIRECTORY`, else `$XDG_STATE_HOME/pythond/<name>` (default
    `~/.local/state/pythond/<name>`)."""
    if configured:
        return str(configured)
    systemd = os.environ.get("STATE_DIRECTORY", "").split(":")[0]
    if systemd:
        return os.path.join(systemd, name)
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return os.path.join(base, "pythond", name)


def load_state(path):
    """The JSON object saved at `path`; `{}` when it is missing, unreadable or not an
    object (a collector then starts afresh rather than failing)."""
    try:
        with open(path) as f:
            state = json.load(f)
        return state if isinstance(state, dict) else {}
    except (OSError, ValueError):
        return {}


def save_state(path, state):
    """Writes `state` to `path` atomically and durably: a temporary file, fsync, then
    `os.replace`, so a crash leaves the old state or the new one, never half of one."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = "%s.tmp.%d" % (path, os.getpid())
    with open(tmp, "w") as f:
        json.dump(state, f, sort_keys=True)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
