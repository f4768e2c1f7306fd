"""Resource limits for the child that runs a learner's code.

Kernel limits (rlimits) make a runaway allocation fail inside the child with MemoryError, an
endless loop die of SIGXCPU, and a flood of output stop; the parent adds what rlimits cannot do
per process tree: a memory ceiling over the child and its workers, and a process count.
"""

from __future__ import annotations

import os
import resource
import signal
from dataclasses import dataclass

MIB = 2**20


@dataclass(frozen=True)
class Limits:
    """Ceilings for one child; defaults fit a 2-core laptop and the course's fixtures."""

    memory_mib: int = 1536  # resident memory of the child and its workers together
    address_space_mib: int = 6144  # per process; torch maps ~1 GiB of libraries and arenas
    cpu_s: int = 120  # CPU seconds per process
    open_files: int = 512
    file_size_mib: int = 1024  # largest file the child may write, its captured output included
    output_mib: float = 2.0  # stdout + stderr the parent keeps reading before it stops the child
    processes: int = 24  # the child and its descendants

    def describe_memory(self) -> str:
        gb = self.memory_mib / 1024
        return f"{gb:.1f} GB" if gb >= 1 else f"{self.memory_mib} MB"


def apply_in_child(limits: Limits) -> None:
    """Set the rlimits; runs in the child between fork and exec (subprocess `preexec_fn`)."""
    try:
        os.setsid()  # own process group: the parent can stop the child and all its workers
    except OSError:
        pass  # already a session leader (started with start_new_session)

    def cap(which: int, value: int) -> None:
        _soft, hard = resource.getrlimit(which)
        if hard != resource.RLIM_INFINITY:
            value = min(value, hard)
        try:
            resource.setrlimit(which, (value, value if hard == resource.RLIM_INFINITY else hard))
        except (ValueError, OSError):
            pass

    cap(resource.RLIMIT_AS, limits.address_space_mib * MIB)
    cap(resource.RLIMIT_CPU, limits.cpu_s)
    cap(resource.RLIMIT_NOFILE, limits.open_files)
    cap(resource.RLIMIT_FSIZE, limits.file_size_mib * MIB)
    cap(resource.RLIMIT_CORE, 0)
    # Writing past the size limit then fails with an error instead of killing silently.
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
