#encoding: utf-8
"""Log-file tail: new lines of log files as logging points, with a saved offset.

Every run reads what was appended to each file since the last run and reports one
logging point per complete line, in file order:

    measurement  the source (default "log_tail")
    tags         filename   the file's path
    fields       message    the line, without its line ending
                 status     "info"

Where each file was read up to is saved after every run in a state file, so an agent
restart neither repeats nor skips lines. A line still being written (no newline yet)
waits for the next run. Rotation and truncation are handled:

  * truncated (the file is shorter than the saved offset): read again from the start;
  * rotated (the path now names another file): the rest of the old file is read first
    when it is still at `<path>.1` (logrotate's default), then the new file from the
    start.

A file seen for the first time is read from its end (only lines written from now on),
unless from_beginning is set. A file that does not exist or cannot be read is
reported in the agent's log and retried next run.

Settings (from the input's options, else the environment set with the input's `envs`):

    files           LOG_TAIL_FILES           comma-separated paths (required)
    source          LOG_TAIL_SOURCE          measurement of the points, default "log_tail"
    from_beginning  LOG_TAIL_FROM_BEGINNING  1/true: read new files from their start
    max_lines       LOG_TAIL_MAX_LINES       most lines per file per run (rest: next
                                             run), default 10000
    state_dir       LOG_TAIL_STATE_DIR       where the offsets are saved; default
                                             $STATE_DIRECTORY/log_tail (the service's
                                             /var/lib/pythond/log_tail), else
                                             ~/.local/state/pythond/log_tail

The service user must be able to read the files: most of /var/log needs the `adm`
group (see OPERATIONS.md, "Permissions").

Example input (conf.d/log_tail.conf):

    [[inputs.pythond]]
      name = "log_tail"
      cmd  = "python3"
      dirs = ["/usr/lib/pythond/python.d/log_tail"]
      interval = "10s"
      envs = ["LOG_TAIL_FILES=/var/log/syslog,/var/log/nginx/error.log",
              "LOG_TAIL_SOURCE=syslog"]

Standard library only; Python 3.8+.
"""

import os

from datakit_framework import DataKitFramework
from pythond_settings import as_list, load_state, positive_number, save_state, setting, state_dir, truthy


def _read_lines(path, offset, limit):
    """Complete lines of `path` from `offset`: (lines, new offset)."""
    lines = []
    with open(path, "rb") as f:
        f.seek(offset)
        while len(lines) < limit:
            raw = f.readline()
            if not raw.endswith(b"\n"):
                break  # end of file, or a line still being written
            offset += len(raw)
            lines.append(raw.rstrip(b"\r\n").decode("utf-8", "replace"))
    return lines, offset


class LogTail(DataKitFramework):
    name = "log_tail"
    interval = 10

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.state = None

    def run(self):
        files = as_list(setting(self, "files", "LOG_TAIL_FILES", ""))
        if not files:
            print("log_tail: no files configured: set option `files` (in [inputs.pythond.options]) or the variable LOG_TAIL_FILES (in the input's envs); nothing to do")
            return
        source = str(setting(self, "source", "LOG_TAIL_SOURCE", "log_tail"))
        from_beginning = truthy(setting(self, "from_beginning", "LOG_TAIL_FROM_BEGINNING", "0"))
        limit = max(1, int(positive_number(setting(self, "max_lines", "LOG_TAIL_MAX_LINES", 10000),
                                            10000, "log_tail: max_lines")))
        state_file = os.path.join(
            state_dir(setting(self, "state_dir", "LOG_TAIL_STATE_DIR", ""), "log_tail"),
            "offsets.json")
        if self.state is None:
            self.state = load_state(state_file)

        new_state = dict(self.state)
        for path in files:
            lines, entry = self.tail(path, self.state.get(path), from_beginning, limit)
            if entry is not None:
                new_state[path] = entry
            if lines:
                self.report({"L": [{"measurement": source, "tags": {"filename": path},
                                    "fields": {"message": line, "status": "info"}}
                                   for line in lines]})
        # Saved only after the lines were handed over: at worst a crash repeats a run's
        # lines, it never loses them.
        if new_state != self.state:
            save_state(state_file, new_state)
            self.state = new_state

    def tail(self, path, saved, from_beginning, limit):
        """New lines of `path` and its new state entry (None: leave as it was)."""
        try:
            st = os.stat(path)
        except OSError as e:
            print("log_tail: %s: %s" % (path, e))
            return [], None
        identity = [st.st_dev, st.st_ino]
        lines = []
        try:
            saved_offset = int(saved["offset"])
        except (TypeError, KeyError, ValueError):
            saved = None  # never seen, or an entry we cannot use: start afresh
        if saved is None:
            offset = 0 if from_beginning else st.st_size
        elif saved.get("file") != identity:
            # Rotated: finish the old file if logrotate left it next door.
            old = path + ".1"
            try:
                ost = os.stat(old)
                if [ost.st_dev, ost.st_ino] == saved.get("file"):
                    lines, _ = _read_lines(old, saved_offset, limit)
            except OSError:
                pass
            offset = 0
        elif st.st_size < saved_offset:
            print("log_tail: %s was truncated; reading it from the start" % path)
            offset = 0
        else:
            offset = saved_offset
        try:
            more, offset = _read_lines(path, offset, limit - len(lines))
        except OSError as e:
            print("log_tail: %s: %s" % (path, e))
            return lines, None
        return lines + more, {"file": identity, "offset": offset}
