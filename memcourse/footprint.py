"""Helpers for notebook 01: where RAM goes in a DataLoader pipeline, measured from outside.

They live in a module, not in notebook cells, for two reasons: `spawn` and `forkserver` workers
re-import the Dataset they run, so its class must be importable; and short cells keep the
notebook about the measurements rather than the bookkeeping. Linux only (they read /proc).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np
import psutil
import torch
from torch.utils.data import DataLoader, Dataset, RandomSampler

from memcourse.images import CLASS_NAMES
from memcourse.memory import status_mib

MIB = 2**20


# ----------------------------------------------------------------------------- the Dataset's state


class SyntheticPaths(Sequence):
    """`n` file paths shaped like a real image folder, made on demand (lengths vary by class)."""

    def __init__(self, n: int):
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> str:
        if not 0 <= i < self.n:
            raise IndexError(i)
        return f"/datasets/shapes/train/{CLASS_NAMES[i % len(CLASS_NAMES)]}/{i:08d}.png"


def paths_list(n: int) -> list[str]:
    """The usual way: a Python list of `n` path strings (one str object per path)."""
    return list(SyntheticPaths(n))


def paths_array(n: int) -> np.ndarray:
    """The same paths as one NumPy fixed-width bytes array (every entry padded to the longest)."""
    paths = SyntheticPaths(n)
    width = max(len(paths[i]) for i in range(min(n, len(CLASS_NAMES))))
    return np.fromiter((p.encode() for p in paths), dtype=f"S{width}", count=n)


class PackedStrings:
    """Strings packed into one uint8 tensor of bytes plus an int64 tensor of offsets.

    Two objects instead of N, no padding, and torch tensors travel to `spawn` workers through
    shared memory instead of being copied. `packed[i]` returns the i-th string.
    """

    def __init__(self, data: torch.Tensor, offsets: torch.Tensor):
        self.data, self.offsets = data, offsets
        self._views()

    def _views(self) -> None:
        # NumPy views of the same memory: indexing them is far cheaper than indexing tensors.
        self._data, self._offsets = self.data.numpy(), self.offsets.numpy()

    def __getstate__(self) -> dict:
        return {"data": self.data, "offsets": self.offsets}  # the views would pickle as copies

    def __setstate__(self, state: dict) -> None:
        self.data, self.offsets = state["data"], state["offsets"]
        self._views()

    @classmethod
    def from_strings(cls, strings: Sequence[str], block: int = 4096) -> PackedStrings:
        """Pack a sequence of strings in two passes: the lengths first, then the bytes.

        The two tensors are allocated once at their final size, and no list of all the encoded
        strings is ever built, so packing needs little more memory than the result.
        """
        n = len(strings)
        lengths = np.fromiter((len(s.encode()) for s in strings), dtype=np.int64, count=n)
        ends = np.zeros(n + 1, dtype=np.int64)
        np.cumsum(lengths, out=ends[1:])
        del lengths  # freed before the bytes are allocated, so the peak is the result's size
        data = np.empty(int(ends[-1]), dtype=np.uint8)
        for first in range(0, n, block):
            last = min(first + block, n)
            chunk = b"".join(strings[i].encode() for i in range(first, last))
            data[ends[first]:ends[last]] = np.frombuffer(chunk, dtype=np.uint8)
        return cls(torch.from_numpy(data), torch.from_numpy(ends))

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def __getitem__(self, i: int) -> str:
        return self._data[self._offsets[i]:self._offsets[i + 1]].tobytes().decode()

    @property
    def nbytes(self) -> int:
        return self.data.nbytes + self.offsets.nbytes


def paths_packed(n: int) -> PackedStrings:
    """The same paths as a `PackedStrings` (uint8 tensor of bytes + int64 offsets)."""
    return PackedStrings.from_strings(SyntheticPaths(n))


class PathsDataset(Dataset):
    """A Dataset that holds paths and reads them the way a real one would, in chunks.

    Item `k` visits every path of chunk `k` (as `__getitem__` does when it opens a file) and
    returns their total length, so one DataLoader pass touches every path once without the
    overhead of a million tiny batches.
    """

    def __init__(self, paths: Sequence, chunk: int = 10_000):
        self.paths, self.chunk = paths, chunk

    def __len__(self) -> int:
        return (len(self.paths) + self.chunk - 1) // self.chunk

    def __getitem__(self, k: int) -> int:
        start, stop = k * self.chunk, min((k + 1) * self.chunk, len(self.paths))
        return sum(len(self.paths[i]) for i in range(start, stop))


class Indices(Dataset):
    """The smallest possible Dataset: item i is i. Measures what a worker costs by itself."""

    def __init__(self, n: int = 1000):
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> int:
        return i


class SyntheticImages(Dataset):
    """`n` images of `shape` and `dtype`, made on demand; item i is filled with i % 251."""

    def __init__(self, n: int, shape: Sequence[int], dtype: torch.dtype = torch.uint8):
        self.n, self.shape, self.dtype = n, tuple(shape), dtype

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> torch.Tensor:
        return torch.full(self.shape, i % 251, dtype=self.dtype)


class H5Images(Dataset):
    """The course dataset read lazily: one image per `__getitem__`, the file opened per process.

    `as_float=True` returns float32 in [0, 1] (4 bytes a pixel) instead of the stored uint8.
    """

    def __init__(self, path: str | os.PathLike, as_float: bool = False):
        import h5py  # lazy: spawn workers re-import this module; only H5Images needs h5py

        self.path, self.as_float = str(path), as_float
        with h5py.File(self.path, "r") as f:  # read the metadata, then close the file
            self.n = len(f["labels"])
            self.sample_shape = tuple(f["images"].shape[1:])
        self._images = None

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_images": None}  # never ship an open file to a worker

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> torch.Tensor:
        if self._images is None:
            import h5py  # lazy: spawn workers re-import this module; only H5Images needs h5py

            self._images = h5py.File(self.path, "r")["images"]
        image = torch.from_numpy(self._images[i])
        return image.float() / 255 if self.as_float else image


# ----------------------------------------------------------------------------- processes


def process_tree(pid: int | None = None) -> list[psutil.Process]:
    """The process and all its descendants (its DataLoader workers, their children, ...)."""
    root = psutil.Process(pid)
    return [root, *root.children(recursive=True)]


def memory_of(procs: Iterable[psutil.Process]) -> list[dict[str, float]]:
    """RSS, PSS and USS (MiB) of each process, plus its RssAnon/RssFile/RssShmem."""
    rows = []
    for p in procs:
        try:
            full = p.memory_full_info()
            st = status_mib(p.pid)
        except (psutil.NoSuchProcess, FileNotFoundError, ProcessLookupError):
            continue  # it exited while we looked: nothing of it is left to count
        rows.append({"pid": p.pid, "rss": full.rss / MIB, "pss": full.pss / MIB,
                     "uss": full.uss / MIB, "anon": st.get("RssAnon", 0.0),
                     "file": st.get("RssFile", 0.0), "shmem": st.get("RssShmem", 0.0)})
    return rows


def available_mib() -> float:
    """What the kernel says new allocations could still get without swapping (MemAvailable)."""
    return psutil.virtual_memory().available / MIB


@contextmanager
def running_workers(dataset: Dataset, num_workers: int, context: str = "fork",
                    **loader_kwargs: Any) -> Iterator[tuple[DataLoader, list[psutil.Process]]]:
    """Start a DataLoader's workers, take one batch, and yield (loader, worker processes).

    The workers stay alive until the block ends; pass `persistent_workers=True` to iterate the
    loader again with the same workers.
    """
    before = {p.pid for p in psutil.Process().children()}
    loader = DataLoader(dataset, num_workers=num_workers, multiprocessing_context=context,
                        **loader_kwargs)
    iterator = iter(loader)
    try:
        next(iterator)
        workers = [p for p in psutil.Process().children() if p.pid not in before]
        yield loader, workers
    finally:
        _stop(getattr(loader, "_iterator", None) or iterator)


def _stop(iterator: Any) -> None:
    """Stop a DataLoader iterator's workers now, not whenever the garbage collector runs."""
    shutdown = getattr(iterator, "_shutdown_workers", None)
    if shutdown is not None:
        shutdown()


# ----------------------------------------------------------------------------- shared memory


def _shm_target(target: str) -> bool:
    # Data lives in /dev/shm files and memfds; /dev/shm/sem.* are the queues' semaphores.
    return target.startswith(("/dev/shm/", "/memfd:")) and not target.startswith("/dev/shm/sem.")


def shm_bytes(pid: int | None = None) -> int:
    """Bytes of shared memory (/dev/shm files, memfds) that a process tree holds open or mapped.

    Each shared-memory object is counted once, however many processes hold it, so this is what
    the tree's DataLoader batches occupy in /dev/shm; other programs' use of /dev/shm does not
    disturb it (unlike `shutil.disk_usage("/dev/shm")`).
    """
    seen: dict[int, int] = {}
    for p in process_tree(pid):
        fd_dir = f"/proc/{p.pid}/fd"
        try:
            fds = os.listdir(fd_dir)
        except OSError:
            continue
        for fd in fds:
            try:
                if _shm_target(os.readlink(f"{fd_dir}/{fd}")):
                    st = os.stat(f"{fd_dir}/{fd}")
                    seen[st.st_ino] = st.st_blocks * 512
            except OSError:
                continue  # closed while we looked
        try:
            with open(f"/proc/{p.pid}/maps") as f:
                for line in f:
                    fields = line.split(None, 5)
                    if len(fields) == 6 and _shm_target(fields[5]):
                        start, end = (int(x, 16) for x in fields[0].split("-"))
                        seen.setdefault(int(fields[4]), end - start)
        except OSError:
            continue
    return sum(seen.values())


def wait_until_steady(read: Callable[[], Any], settle_s: float = 1.0,
                      timeout_s: float = 30.0, poll_s: float = 0.05) -> Any:
    """Call `read()` until its value has not changed for `settle_s` seconds; return that value."""
    value, since = read(), time.monotonic()
    deadline = since + timeout_s
    while time.monotonic() < deadline:
        time.sleep(poll_s)
        new = read()
        if new != value:
            value, since = new, time.monotonic()
        elif time.monotonic() - since >= settle_s:
            break
    return value


def held_batch_bytes(dataset: Dataset, batch_size: int, num_workers: int,
                     prefetch_factor: int | None = None, settle_s: float = 1.0
                     ) -> dict[str, int]:
    """Stall a consumer on its first batch and measure the collated batches the loader holds.

    Returns the shared-memory bytes of this process tree once the workers have stopped filling
    it, the bytes of the batch in hand, and whether that batch itself lives in shared memory.
    """
    # Sample with replacement from a long stream, so even a small dataset never runs out of
    # batches before every prefetch slot is filled.
    sampler = RandomSampler(dataset, replacement=True, num_samples=1_000_000)
    kwargs: dict[str, Any] = {"batch_size": batch_size, "num_workers": num_workers,
                              "sampler": sampler}
    if num_workers > 0:
        kwargs.update(prefetch_factor=prefetch_factor, multiprocessing_context="fork")
    before = shm_bytes()
    loader = DataLoader(dataset, **kwargs)
    iterator = iter(loader)
    try:
        batch = next(iterator)  # the consumer takes one batch ... and stalls
        held = wait_until_steady(shm_bytes, settle_s=settle_s) - before
        return {"shm_bytes": held, "batch_bytes": batch.nbytes,
                "batch_in_shm": bool(batch.is_shared())}
    finally:
        _stop(iterator)
