"""Keep a forked DataLoader worker from stalling the main process's fsspec and Zarr reads.

fsspec (and Zarr, which reads remote stores through it) runs its HTTP requests on an asyncio
event loop in a background thread. That loop watches its sockets, including idle keep-alive
connections kept for the next request, with one Linux `epoll` instance. A forked child (a
`fork` DataLoader worker, a `multiprocessing` fork) inherits that `epoll` as the *same* kernel
object, not a copy. When the child next uses fsspec's HTTP file system, fsspec throws the
inherited instance away and aiohttp closes its connections in the child, which removes their
sockets from the shared `epoll`: in the parent too. The parent's next request on one of those
kept connections gets its answer, but its loop is never told, and the read hangs until
aiohttp's timeout (5 minutes by default), then is sent again. Measured here: a one-sample read
took 300 s after a fork (`tests/toolkit/test_forksafe.py` shows it in 3 s with a short timeout).

`protect_event_loops_across_fork()` gives each forked child a fresh, private selector for the
inherited loops of fsspec and Zarr, so whatever the child closes is removed from its own
`epoll` only. The parent's loops are untouched. `memcourse.objectstore` and `memcourse.shards`
call it on import; call it yourself if you use fsspec over HTTP and fork without them.
"""

from __future__ import annotations

import asyncio
import os
import selectors
import sys

# The modules whose background IO loop lives in `module.loop[0]`.
_LOOP_MODULES = ("fsspec.asyn", "zarr.core.sync")

_registered = False
_loops_at_fork: list[asyncio.AbstractEventLoop] = []


def _running_loops() -> list[asyncio.AbstractEventLoop]:
    loops = []
    for name in _LOOP_MODULES:
        module = sys.modules.get(name)
        holder = getattr(module, "loop", None)
        loop = holder[0] if isinstance(holder, list) and holder else None
        if loop is not None and hasattr(loop, "_selector"):
            loops.append(loop)
    return loops


def _before_fork() -> None:
    # The libraries' own after-fork hooks forget their loop before ours could look it up.
    _loops_at_fork[:] = _running_loops()


def _after_fork_in_parent() -> None:
    _loops_at_fork.clear()


def _after_fork_in_child() -> None:
    for loop in _loops_at_fork:
        inherited = loop._selector  # noqa: SLF001 (asyncio keeps its selector here, 3.4 on)
        loop._selector = selectors.DefaultSelector()  # noqa: SLF001
        try:
            # Closes only this process's descriptor; the parent's epoll lives on.
            inherited.close()
        except OSError:
            pass
    _loops_at_fork.clear()


def protect_event_loops_across_fork() -> None:
    """Register the fork hooks described above, once per process (later calls do nothing).

    Does nothing where `os.register_at_fork` does not exist (Windows, which cannot fork).
    """
    global _registered
    if _registered or not hasattr(os, "register_at_fork"):
        return
    os.register_at_fork(before=_before_fork, after_in_parent=_after_fork_in_parent,
                        after_in_child=_after_fork_in_child)
    _registered = True
