"""A forked child that uses fsspec over HTTP must not stall the parent's next reads.

The child drops the fsspec file system it inherited (as a `fork` DataLoader worker does when
it opens a URL), which, unguarded, removes the parent's kept-alive sockets from the shared
`epoll` and leaves the parent's next request on one of them waiting for aiohttp's timeout.
"""

from __future__ import annotations

import gc
import os
import threading
import time
from pathlib import Path

import aiohttp
import fsspec
import numpy as np
import pytest

from memcourse import forksafe
from memcourse import objectstore as ob

# Short, so an unguarded read fails in seconds rather than aiohttp's default 5 minutes.
CLIENT_TIMEOUT_S = 2.0


@pytest.fixture
def store(tmp_path: Path):
    (tmp_path / "blob.bin").write_bytes(np.arange(10_000, dtype=np.uint8).tobytes())
    with ob.serve(tmp_path) as s:
        yield s


def http_fs() -> fsspec.AbstractFileSystem:
    # A new instance each call, so one test's connections are not another's.
    return fsspec.filesystem("http", skip_instance_cache=True, client_kwargs={
        "timeout": aiohttp.ClientTimeout(total=CLIENT_TIMEOUT_S)})


def fork_a_child_that_opens_http(drop: list) -> None:
    """Fork; the child forgets `drop`, asks fsspec for an HTTP file system and exits."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover (the child's coverage is not collected)
        try:
            drop.clear()
            http_fs()
            gc.collect()
        finally:
            os._exit(0)
    os.waitpid(pid, 0)


def read_in_thread(read, seconds: float) -> tuple[bool, float]:
    """Run `read()` with a deadline; returns (finished without error, seconds taken)."""
    done: list[bool] = []

    def run() -> None:
        try:
            read()
            done.append(True)
        except Exception:  # noqa: BLE001 (a timeout of any kind is what this reports)
            done.append(False)

    start = time.perf_counter()
    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    return done == [True], time.perf_counter() - start


def parent_reads_after_a_fork(store: ob.HTTPStore) -> tuple[bool, float]:
    url = store.url_for("blob.bin")
    kept = [http_fs()]
    for _ in range(3):  # leaves kept-alive connections in aiohttp's pool
        kept[0].cat_file(url, start=0, end=10)
    fork_a_child_that_opens_http(kept)  # the parent's `kept` still holds its file system
    store.reset()
    fs = kept[0]
    ok, seconds = read_in_thread(
        lambda: [fs.cat_file(url, start=i, end=i + 10) for i in range(5)], 3 * CLIENT_TIMEOUT_S)
    return ok, seconds


def test_fsspec_reads_in_the_parent_are_not_stalled_by_a_forked_child(
        store: ob.HTTPStore) -> None:
    ok, seconds = parent_reads_after_a_fork(store)
    assert ok, f"the parent's reads after the fork failed or hung ({seconds:.1f} s)"
    assert seconds < CLIENT_TIMEOUT_S
    assert store.traffic().requests == 5  # each read once: none timed out and was re-sent


def test_without_the_guard_the_parent_stalls(store: ob.HTTPStore,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """The failure the guard exists for, so a library upgrade that fixes it shows up here."""
    monkeypatch.setattr(forksafe, "_running_loops", lambda: [])
    ok, seconds = parent_reads_after_a_fork(store)
    assert not ok and seconds >= CLIENT_TIMEOUT_S * 0.9


def test_zarr_reads_in_the_parent_are_not_stalled_by_a_forked_child(
        store: ob.HTTPStore, tmp_path: Path) -> None:
    import zarr  # lazy: as in the module under test

    z = zarr.create_array(tmp_path / "a.zarr", shape=(32, 100), chunks=(1, 100), dtype="u1")
    z[:] = np.arange(32, dtype=np.uint8)[:, None]
    kept = [ob.open_zarr_http(store.url_for(tmp_path / "a.zarr"))]
    assert int(kept[0][3][0]) == 3
    fork_a_child_that_opens_http(kept)  # the parent's `kept` still holds the array
    got: list[int] = []
    ok, seconds = read_in_thread(lambda: got.extend(int(kept[0][i][0]) for i in range(10, 20)),
                                 10.0)
    assert ok and got == list(range(10, 20)), f"zarr reads hung or failed ({seconds:.1f} s)"
