"""Bubblewrap sandboxes: no network, a read-only view of the machine, private /tmp and /dev/shm.

Only the folders a process must write (its own scratch copy of one submission) are writable;
the course's solutions and everything nbgrader writes while grading (other students' work, the
gradebook) are hidden behind empty tmpfs mounts. Without bubblewrap, grading still runs with
resource limits, and results are flagged `sandbox_unavailable`.
"""

from __future__ import annotations

import functools
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
        return args + ["--", *command]


def _must_see() -> list[Path]:
    """The Python installation and the course code every sandboxed process needs."""
    repo = repo_root()
    found = {Path(p).resolve() for p in (sys.prefix, sys.base_prefix, sys.exec_prefix)}
    found.add(repo)
    return sorted(found)
