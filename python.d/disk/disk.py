#encoding: utf-8
"""Disk usage per mounted file system, from /proc/mounts and statvfs (Linux).

Every run reports one metric point per real mounted file system (pseudo file systems
such as proc, sysfs, cgroup, devtmpfs, tmpfs, overlay lower layers and squashfs snaps
are skipped, as are file systems with no blocks and mount points listed twice):

    measurement  disk
    tags         mount, device, fstype
    fields       total_bytes     size of the file system
                 free_bytes      space available to unprivileged users (what `df` shows)
                 used_bytes      total - blocks free (root's reserve counts as free)
                 used_percent    used / (used + free_bytes) * 100, as `df` computes it
                 inodes_total, inodes_free, inodes_used

A mount point that cannot be read (permissions) is skipped with a message in the
agent's log; the others are still reported. A hung network file system blocks statvfs
until the input's timeout: list such types (nfs, nfs4, cifs) in ignore_fs if that is
a risk on the host.

Settings (from the input's options, else the environment set with the input's `envs`):

    mounts      DISK_MOUNTS      comma-separated mount points to report (default: all)
    ignore_fs   DISK_IGNORE_FS   comma-separated extra file system types to skip

Example input (conf.d/disk.conf):

    [[inputs.pythond]]
      name = "disk"
      cmd  = "python3"
      dirs = ["/usr/lib/pythond/python.d/disk"]
      interval = "1m"
      # envs = ["DISK_MOUNTS=/,/var", "DISK_IGNORE_FS=nfs4"]

Standard library only; Python 3.8+.
"""

import os

from datakit_framework import DataKitFramework
from pythond_settings import as_list, setting

MOUNTS = "/proc/mounts"

PSEUDO_FS = {
    "autofs", "binfmt_misc", "bpf", "cgroup", "cgroup2", "configfs", "debugfs",
    "devpts", "devtmpfs", "efivarfs", "fusectl", "hugetlbfs", "mqueue", "nsfs",
    "proc", "pstore", "rpc_pipefs", "securityfs", "selinuxfs", "squashfs", "sysfs",
    "tmpfs", "tracefs", "ramfs", "fuse.gvfsd-fuse", "fuse.portal", "iso9660",
}


def _unescape(field):
    # /proc/mounts writes space, tab, newline and backslash as octal escapes.
    for code, char in (("\\040", " "), ("\\011", "\t"), ("\\012", "\n"), ("\\134", "\\")):
        field = field.replace(code, char)
    return field


def mounts():
    """(device, mount point, fstype) of every mount, in /proc/mounts order."""
    with open(MOUNTS) as f:
        for line in f:
            parts = line.split()
            if len(parts) >= 3:
                yield _unescape(parts[0]), _unescape(parts[1]), parts[2]


class Disk(DataKitFramework):
    name = "disk"
    interval = 60

    def run(self):
        only = set(as_list(setting(self, "mounts", "DISK_MOUNTS", "")))
        skip = PSEUDO_FS | set(as_list(setting(self, "ignore_fs", "DISK_IGNORE_FS", "")))
        points = []
        seen = set()
        for device, mount, fstype in mounts():
            if mount in seen or fstype in skip or (only and mount not in only):
                continue
            seen.add(mount)
            try:
                st = os.statvfs(mount)
            except OSError as e:
                print("disk: %s: %s" % (mount, e))
                continue
            if st.f_blocks == 0:
                continue
            total = st.f_blocks * st.f_frsize
            free = st.f_bavail * st.f_frsize
            used = (st.f_blocks - st.f_bfree) * st.f_frsize
            fields = {
                "total_bytes": total,
                "free_bytes": free,
                "used_bytes": used,
                "used_percent": round(used * 100.0 / (used + free), 3) if used + free else 0.0,
                "inodes_total": st.f_files,
                "inodes_free": st.f_ffree,
                "inodes_used": st.f_files - st.f_ffree,
            }
            points.append({"measurement": "disk",
                           "tags": {"mount": mount, "device": device, "fstype": fstype},
                           "fields": fields})
        for mount in sorted(only - seen):
            print("disk: %s is not a mounted file system (or its type is skipped)" % mount)
        if points:
            self.report({"M": points})
