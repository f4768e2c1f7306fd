"""Helpers for notebook 02 (workers and pinning): usable cores, and what worker processes print.

DataLoader workers are separate processes. When one dies, it prints its traceback straight to
file descriptor 2, which Jupyter shows in whichever cell happens to be running, sometimes late;
`worker_output` captures that descriptor for a block of code so the cell can show it in place.
"""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass


def usable_cores() -> int:
    """CPU cores this process may run on (respects CPU affinity and cpusets where Linux has them).

    This is the number the DataLoader compares `num_workers` with before it warns.
    """
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


@dataclass
class CapturedOutput:
    """Text written to file descriptor 2 inside a `worker_output()` block (filled in on exit)."""

    text: str = ""

    def last_line(self, containing: str = "") -> str:
        """The last non-empty line that contains `containing` (any line if empty), or ''."""
        lines = [line for line in self.text.splitlines() if line.strip() and containing in line]
        return lines[-1].strip() if lines else ""


@contextmanager
def worker_output() -> Iterator[CapturedOutput]:
    """Capture what this process and the processes it starts write to stderr (descriptor 2).

    Worker processes inherit descriptor 2 when they start, so their tracebacks land here too.
    The original descriptor is restored on exit, even if the block raised.
    """
    captured = CapturedOutput()
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile(mode="w+b") as tmp:
        os.dup2(tmp.fileno(), 2)
        try:
            yield captured
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            tmp.seek(0)
            captured.text = tmp.read().decode(errors="replace")
