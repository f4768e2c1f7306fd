"""Measure memory the honest way: per process, per kind of page, and at its peak.

RSS counts every resident page a process maps, shared or not, file-backed or not, so summing it
over processes over-counts. These helpers read the finer numbers Linux keeps in /proc and return
MiB, so a notebook can print exactly what it measured.
"""

from __future__ import annotations

import os
import pickle
import shutil
import sys
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import psutil

MIB = 2**20


def status_mib(pid: int | None = None) -> dict[str, float]:
    """Return the memory lines of /proc/<pid>/status (VmRSS, VmHWM, RssAnon, RssFile, RssShmem).

    RssAnon is private data the process allocated; RssFile is pages of mapped files (reclaimable
    page cache); RssShmem is shared memory such as DataLoader batches in /dev/shm.
    """
    path = f"/proc/{pid or os.getpid()}/status"
    fields = ("VmRSS", "VmHWM", "RssAnon", "RssFile", "RssShmem")
    out: dict[str, float] = {}
    with open(path) as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in fields:
                out[key] = int(value.split()[0]) / 1024  # the kernel reports kB
    return out


def rss_mib(pid: int | None = None) -> float:
    """Resident set size in MiB: every resident page the process maps, shared ones included."""
    return psutil.Process(pid).memory_info().rss / MIB


def uss_mib(pid: int | None = None) -> float:
    """Unique set size in MiB: what would be freed if the process exited now."""
    return psutil.Process(pid).memory_full_info().uss / MIB


def pss_mib(pid: int | None = None) -> float:
    """Proportional set size in MiB: private pages plus an equal share of each shared page."""
    return psutil.Process(pid).memory_full_info().pss / MIB


def shm_used_mib() -> float:
    """MiB in use in /dev/shm, where DataLoader workers put the batches they have collated."""
    return shutil.disk_usage("/dev/shm").used / MIB if os.path.isdir("/dev/shm") else 0.0


@dataclass
class Peak:
    """What `measure_peak` saw in the child process that ran the function."""

    start_mib: float  # resident memory when the function started
    peak_mib: float  # highest resident memory while it ran (VmHWM)
    result: Any  # the function's return value

    @property
    def growth_mib(self) -> float:
        """How far memory rose above where it started: the function's own peak footprint."""
        return self.peak_mib - self.start_mib


def measure_peak(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Peak:
    """Run fn(*args, **kwargs) in a forked child and return its peak memory and result.

    A fresh child has a fresh high-water mark, so the peak belongs to this call alone and
    nothing the function allocates stays behind in the caller. Linux only (needs fork and /proc).
    """
    if not hasattr(os, "fork") or not os.path.exists("/proc/self/status"):
        raise RuntimeError("measure_peak needs Linux (fork and /proc); run this cell on Linux.")
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: measure, report through the pipe, never return
        os.close(read_fd)
        if "torch" in sys.modules:
            # GNU OpenMP's thread pool does not survive fork: if the parent ran a threaded
            # torch operation, the child's first one would wait forever. DataLoader workers
            # avoid it the same way.
            sys.modules["torch"].set_num_threads(1)
        try:
            start = status_mib()["VmRSS"]
            _reset_peak()
            result = fn(*args, **kwargs)
            payload = ("ok", start, status_mib()["VmHWM"], result)
        except BaseException as e:  # report any failure to the parent instead of dying silently
            payload = ("error", e, traceback.format_exc(), None)
        try:
            data = pickle.dumps(payload)
        except Exception as e:
            error = RuntimeError(f"the result could not be sent back: {e}")
            data = pickle.dumps(("error", error, "", None))
        with os.fdopen(write_fd, "wb") as w:
            w.write(data)
        os._exit(0)
    os.close(write_fd)
    with os.fdopen(read_fd, "rb") as r:
        data = r.read()
    os.waitpid(pid, 0)
    if not data:
        raise RuntimeError("The measured function killed its process before it could report.")
    status, a, b, result = pickle.loads(data)
    if status == "error":
        # The same exception type as in the child, so callers can tell "not implemented yet"
        # from a real failure; the child's traceback says where it happened.
        raise a from RuntimeError(f"in the measuring process:\n{b}")
    return Peak(start_mib=a, peak_mib=b, result=result)


def _reset_peak() -> None:
    """Reset this process's VmHWM to its current RSS where the kernel allows it (Linux >= 4.0)."""
    try:
        with open(f"/proc/{os.getpid()}/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass  # the high-water mark then includes the parent's peak: still an upper bound
