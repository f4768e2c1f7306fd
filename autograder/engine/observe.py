"""What the parent sees of a child process from outside: /proc, and inotify for file opens.

Nothing here asks the child anything; the learner's code cannot change these numbers.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import struct
from pathlib import Path

import psutil

MIB = 2**20
_STATUS_FIELDS = {"VmRSS": "rss_mib", "VmHWM": "hwm_mib", "RssAnon": "anon_mib",
                  "RssFile": "file_mib", "RssShmem": "shmem_mib"}


def status(pid: int) -> dict[str, float]:
    """Memory figures of one process from /proc/<pid>/status, in MiB (empty if it is gone)."""
    out: dict[str, float] = {}
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key in _STATUS_FIELDS:
                    out[_STATUS_FIELDS[key]] = int(value.split()[0]) / 1024
    except OSError:
        pass
    return out


def reset_peak(pid: int) -> None:
    """Reset a process's VmHWM to its current RSS, so the next reading is this phase's peak."""
    try:
        with open(f"/proc/{pid}/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass  # older kernels: the peak then covers the whole run, an upper bound


def tree(pid: int) -> list[psutil.Process]:
    """The process and all its descendants (DataLoader workers included).

    Read from each process's own `/proc/PID/task/TID/children` where the kernel offers it: a
    watcher that polls 50 times a second then reads only the tree it watches, where psutil's
    `children()` reads every process on the machine each time. Elsewhere, psutil.
    """
    try:
        root = psutil.Process(pid)
    except psutil.Error:
        return []
    if not os.path.exists(f"/proc/{pid}/task/{pid}/children"):
        try:
            return [root, *root.children(recursive=True)]
        except psutil.Error:
            return []
    found, todo = [root], [pid]
    while todo:
        parent = todo.pop()
        try:
            tasks = os.listdir(f"/proc/{parent}/task")
        except OSError:
            continue
        for tid in tasks:
            try:
                with open(f"/proc/{parent}/task/{tid}/children") as f:
                    kids = [int(k) for k in f.read().split()]
            except (OSError, ValueError):
                continue
            for kid in kids:
                try:
                    found.append(psutil.Process(kid))
                except psutil.Error:
                    continue
                todo.append(kid)
    return found


def tree_rss_mib(procs: list[psutil.Process]) -> float:
    """Summed RSS of a process tree (over-counts shared pages: an upper bound for a limit)."""
    total = 0
    for p in procs:
        try:
            total += p.memory_info().rss
        except psutil.Error:
            pass
    return total / MIB


def tree_pss_mib(procs: list[psutil.Process]) -> float:
    """Summed PSS of a process tree: shared pages counted once in total, not once per process.

    Forked workers share most of their parent's pages; summing their RSS would count those
    pages once per worker and stop honest code for memory it does not use. Falls back to RSS
    where PSS is unavailable (not Linux).
    """
    total = 0
    for p in procs:
        try:
            total += p.memory_full_info().pss
        except (psutil.Error, AttributeError):
            try:
                total += p.memory_info().rss
            except psutil.Error:
                pass
    return total / MIB


def tree_pss_above(procs: list[psutil.Process], limit_mib: float) -> float | None:
    """The tree's summed PSS in MiB when it exceeds `limit_mib`, else None.

    PSS costs a walk of every mapping (`/proc/PID/smaps_rollup`, about 1 ms for a process that
    imported torch, more with large mappings) while RSS is one read; a process's PSS never
    exceeds its RSS, so a tree whose summed RSS is within the limit is within it in PSS too, and
    PSS is read only when RSS alone cannot clear it. A watcher polling 50 times a second pays for
    PSS only while the tree is near its limit.
    """
    if tree_rss_mib(procs) <= limit_mib:
        return None
    used = tree_pss_mib(procs)
    return used if used > limit_mib else None


def open_files_under(procs: list[psutil.Process], root: Path) -> dict[str, int]:
    """How many file descriptors, over the tree, point at each file below `root`."""
    counts: dict[str, int] = {}
    prefix = str(root) + os.sep
    for p in procs:
        fd_dir = f"/proc/{p.pid}/fd"
        try:
            entries = os.listdir(fd_dir)
        except OSError:
            continue
        for fd in entries:
            try:
                target = os.readlink(f"{fd_dir}/{fd}")
            except OSError:
                continue
            if target.startswith(prefix):
                rel = target[len(prefix):]
                counts[rel] = counts.get(rel, 0) + 1
    return counts


class OpenCounter:
    """Counts open() calls on files below a folder, by any process, through Linux inotify.

    The kernel merges identical consecutive events that have not been read yet, so open and
    access events are watched together: an open followed by a read (what dataset code does) is
    never merged with the next open. Two opens with no read or close between them may count as
    one; held descriptors (`open_files_under`) catch that case.
    """

    IN_ACCESS, IN_CLOSE_WRITE, IN_CLOSE_NOWRITE, IN_OPEN = 0x1, 0x8, 0x10, 0x20
    IN_Q_OVERFLOW = 0x4000
    _MASK = IN_ACCESS | IN_CLOSE_WRITE | IN_CLOSE_NOWRITE | IN_OPEN

    def __init__(self, root: Path):
        self.root = Path(root)
        self.available = False
        self.overflowed = False
        self._fd = -1
        self._dirs: dict[int, str] = {}
        self._counts: dict[str, int] = {}
        libc_name = ctypes.util.find_library("c")
        if not libc_name or not hasattr(os, "O_NONBLOCK"):
            return
        try:
            self._libc = ctypes.CDLL(libc_name, use_errno=True)
            fd = self._libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
        except (OSError, AttributeError):
            return
        if fd < 0:
            return
        self._fd = fd
        for folder in [self.root, *(p for p in self.root.rglob("*") if p.is_dir())]:
            wd = self._libc.inotify_add_watch(fd, str(folder).encode(), self._MASK)
            if wd >= 0:
                self._dirs[wd] = str(folder.relative_to(self.root))
        self.available = bool(self._dirs)

    def fileno(self) -> int:
        """The inotify descriptor, for select(); -1 when unavailable."""
        return self._fd

    def poll(self) -> None:
        """Read pending events now, so the kernel has fewer chances to merge them."""
        self._read()

    def drain(self) -> dict[str, int]:
        """Return the opens per file (relative path) since the last drain."""
        self._read()
        counts, self._counts = self._counts, {}
        return counts

    def _read(self) -> None:
        if self._fd < 0:
            return
        while True:
            try:
                buf = os.read(self._fd, 65536)
            except BlockingIOError:
                return
            except OSError:
                return
            offset = 0
            while offset + 16 <= len(buf):
                wd, mask, _cookie, length = struct.unpack_from("iIII", buf, offset)
                name = buf[offset + 16: offset + 16 + length].rstrip(b"\0").decode()
                offset += 16 + length
                if mask & self.IN_Q_OVERFLOW:
                    self.overflowed = True
                if mask & self.IN_OPEN and name and wd in self._dirs:
                    folder = self._dirs[wd]
                    rel = name if folder == "." else f"{folder}/{name}"
                    self._counts[rel] = self._counts.get(rel, 0) + 1

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
