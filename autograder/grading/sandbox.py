"""Bubblewrap sandboxes: no network, a read-only view of the machine, private /tmp and /dev/shm.

Only the folders a process must write (its own scratch copy of one submission) are writable;
the course's solutions and everything nbgrader writes while grading (other students' work, the
gradebook) are hidden behind empty tmpfs mounts. Without bubblewrap, grading still runs with
resource limits, and results are flagged `sandbox_unavailable`.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from memcourse.paths import repo_root


@functools.lru_cache(maxsize=1)
def bwrap_path() -> str | None:
    """Return the bwrap executable if it exists and can create a sandbox here, else None."""
    path = shutil.which("bwrap")
    if not path:
        return None
    try:
        ok = subprocess.run([path, "--unshare-net", "--ro-bind", "/", "/", "--dev", "/dev",
                             "--proc", "/proc", "true"], capture_output=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return path if ok.returncode == 0 else None


@dataclass
class Sandbox:
    """What a sandboxed process may see and write."""

    writable: list[Path] = field(default_factory=list)
    hidden: list[Path] = field(default_factory=list)
    readable: list[Path] = field(default_factory=list)  # re-exposed inside a hidden folder
    unshare_pid: bool = False

    @property
    def available(self) -> bool:
        return bwrap_path() is not None

    def wrap(self, command: Iterable[str]) -> list[str]:
        """Prefix `command` with bubblewrap; return it unchanged when bwrap is unavailable."""
        command = list(command)
        bwrap = bwrap_path()
        if bwrap is None:
            return command
        args = [bwrap, "--unshare-net", "--die-with-parent",
                "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc",
                "--tmpfs", "/tmp", "--tmpfs", "/dev/shm"]
        if self.unshare_pid:
            args += ["--unshare-pid"]
        if os.geteuid() == 0:
            # As root, bubblewrap keeps every capability: a sandboxed process could unmount
            # what hides the solutions, or write another process's memory. Without them, root
            # inside is only a uid.
            args += ["--cap-drop", "ALL"]
        # The private /tmp must not hide the interpreter or the course when they live in /tmp
        # (a CI checkout often does); they come back read-only, before anything is hidden.
        for path in _must_see():
            if str(path).startswith("/tmp/") or str(path) == "/tmp":
                args += ["--ro-bind", str(path), str(path)]
        for path in self.hidden:
            if Path(path).exists():
                args += ["--tmpfs", str(path)]
        for path in self.readable:
            args += ["--ro-bind", str(path), str(path)]
        for path in self.writable:
            args += ["--bind", str(path), str(path)]
        # What hides a folder is an empty tmpfs, writable unless made read-only: a process
        # could otherwise leave files there for every later process of the same sandbox (a
        # grading slot's next submission). The writable folders bound inside stay writable.
        for path in self.hidden:
            if Path(path).exists():
                args += ["--remount-ro", str(path)]
        return args + ["--", *command]


def _must_see() -> list[Path]:
    """The Python installation and the course code every sandboxed process needs."""
    repo = repo_root()
    found = {Path(p).resolve() for p in (sys.prefix, sys.base_prefix, sys.exec_prefix)}
    found.add(repo)
    return sorted(found)


# What a slot's zygote forks to empty its sandbox's /tmp between two jobs: in this light module,
# which the zygote imports beforehand, so the child imports nothing.
CLEAR_SANDBOX_TMP = "autograder.grading.sandbox:clear_sandbox_tmp"


def mount_namespace() -> str:
    """This process's mount namespace (`mnt:[N]`), or "" where it cannot be read."""
    try:
        return os.readlink("/proc/self/ns/mnt")
    except OSError:
        return ""


def clear_sandbox_tmp(args: list[str]) -> int:
    """Inside the slot's sandbox: empty its private /tmp and /dev/shm.

    `args[0]` is the worker's mount namespace: a process that shares it is not in a sandbox,
    and clears nothing. Paths mounted from outside (the zygote's socket folder `args[1]`, and
    the interpreter, the course and the slot when they live under /tmp) are kept: only what a
    sandboxed process wrote there goes.
    """
    outside, *kept = args
    if not outside or mount_namespace() in ("", outside):
        print("not in a sandbox of its own: /tmp left alone", file=sys.stderr)
        return 1
    keep = [Path(a) for a in kept] + [Path(p) for p in _bound_under_tmp()]
    for top in (Path("/tmp"), Path("/dev/shm")):
        _clear(top, keep)
    return 0


def _bound_under_tmp() -> list[str]:
    """Mount points under /tmp and /dev/shm in this process's view (binds from outside)."""
    points = []
    try:
        with open("/proc/self/mounts") as f:
            for line in f:
                where = line.split()[1].replace("\\040", " ").replace("\\011", "\t")
                if where.startswith(("/tmp/", "/dev/shm/")):
                    points.append(where)
    except OSError:
        pass
    return points


def _clear(folder: Path, keep: list[Path]) -> None:
    try:
        entries = list(folder.iterdir())
    except OSError:
        return
    for entry in entries:
        if any(entry == k for k in keep):
            continue
        if any(k.is_relative_to(entry) for k in keep):
            _clear(entry, keep)  # holds something mounted from outside: clear around it
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            try:
                entry.unlink()
            except OSError:
                pass
