"""Shards for notebook 07: the course dataset as WebDataset tar files, and a streaming reader.

A shard is a POSIX tar file written by `webdataset.ShardWriter`: sample `i` is two members,
`{i:06d}.npy` (the image, (3, H, W) uint8, in NumPy's `.npy` format) and `{i:06d}.cls` (the label
as decimal text). Shards are read front to back, one member at a time, so reading one costs one
open (or one HTTP GET) and holds one sample in memory, whatever the shard's size.

`samples_in_shard` accepts a local path or any URL fsspec can open (`http://...`), which is how
the notebook reads the same shards from a local HTTP server standing in for object storage.

The measurements, each cheap enough for a notebook cell and returned as a frozen dataclass:
`shard_size_trial` (files, opens, bytes per sample and read speed per shard size),
`count_with_workers` (samples a DataLoader yields with and without a worker splitter) and
`shuffle_trial` (memory a shuffle buffer holds, and how well it shuffles).
`webdataset_loader` builds the same reading with WebDataset's own pipeline.

Pitfalls (checked with webdataset 1.0.2, torch 2.13, on the `tiny` dataset in 8 shards of 32):

- `split_by_node` and `split_by_worker` split the list of shard URLs, not the samples: with
  `RANK=1 WORLD_SIZE=2` in the environment a process reads shards 1, 3, 5, 7 (whole shards).
- Without a worker splitter every DataLoader worker reads every shard: 2 workers yielded 512
  samples, 256 of them unique (`count_with_workers(..., split_by_worker=False)` shows it).
- More workers than shards: a worker left without a shard raises `ValueError` ("No samples
  found in dataset") in the DataLoader unless the dataset was built with `empty_check=False`.
- `shardshuffle=N` seeds its generator afresh on every pass, from a seed drawn once per
  `WebDataset` object (or `seed=`): every epoch reads the shards in the same order.
- `detshuffle=True` counts epochs inside the dataset object; DataLoader workers that are not
  persistent get a fresh copy each epoch, so every epoch repeats the first epoch's order
  (webdataset#172); with `persistent_workers=True` or `num_workers=0` the order changes.
- `.shuffle(n)` holds up to n samples (it starts yielding at `initial`, 100 by default, and
  grows by one per sample). Placed before `.decode()` it holds each sample's undecoded member
  bytes: the compressed size for JPEG; for these `.npy` shards that is the image's own size.
- `http://` URLs are opened by starting a `curl` process per shard (without `curl` on `PATH`:
  `FileNotFoundError`); `webdataset_loader` takes local paths only, and `samples_in_shard`
  reads HTTP through fsspec instead.
"""

from __future__ import annotations

import io
import os
import random
import re
import statistics
import sys
import threading
import time
import weakref
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import fsspec
import numpy as np
import webdataset as wds
from webdataset.filters import _shuffle
from webdataset.tariterators import group_by_keys, tar_file_expander

from memcourse.forksafe import protect_event_loops_across_fork
from memcourse.formats import evict, page_cache_control

protect_event_loops_across_fork()

SHARD_PATTERN = "shard-%06d.tar"
_SHARD_NAME = re.compile(r"shard-\d{6}\.tar")
# Every member's timestamp: the same samples give byte-identical shards on every run.
SHARD_MTIME = 0


def shard_paths(folder: str | os.PathLike) -> list[Path]:
    """The shards `write_shards` wrote into `folder`, in order (none when it does not exist)."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if _SHARD_NAME.fullmatch(p.name))


def write_shards(h5_path: str | os.PathLike, folder: str | os.PathLike, samples_per_shard: int,
                 n: int | None = None) -> list[Path]:
    """Write the first `n` samples (default all) of a course HDF5 file as tar shards.

    Reads one sample at a time, so memory stays flat. Earlier shards in `folder` are removed
    first. Returns the shard paths, in order; `ceil(n / samples_per_shard)` of them.

    Raises ValueError when `samples_per_shard` is not a positive int.
    """
    import h5py  # lazy: a DataLoader worker that only reads shards never needs it

    if isinstance(samples_per_shard, bool) or int(samples_per_shard) != samples_per_shard \
            or samples_per_shard < 1:
        raise ValueError(f"samples_per_shard must be a positive whole number, "
                         f"not {samples_per_shard!r}")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for old in shard_paths(folder):
        old.unlink()
    with h5py.File(h5_path, "r") as f:
        images, labels = f["images"], f["labels"]
        total = images.shape[0] if n is None else min(int(n), images.shape[0])
        with wds.ShardWriter(str(folder / SHARD_PATTERN), maxcount=int(samples_per_shard),
                             maxsize=float("inf"), verbose=0, mtime=SHARD_MTIME) as sink:
            for i in range(total):
                sink.write({"__key__": f"{i:06d}", "npy": images[i], "cls": int(labels[i])})
    return shard_paths(folder)


def samples_in_shard(url: str | os.PathLike) -> Iterator[tuple[np.ndarray, int]]:
    """Yield `(image, label)` for each sample of one shard, in the order they were written.

    `image` is (3, H, W) uint8, `label` an int. The shard is opened once, read front to back in
    one pass and closed when the last sample has been yielded or the generator is closed. An
    `http://` URL costs one request: a GET that fsspec streams (`block_size=0`). By default
    fsspec first sends a HEAD to learn the file's size, which only block-wise reads use; the
    `size` hint below skips it.
    """
    url = os.fspath(url)
    fs, path = fsspec.core.url_to_fs(url)
    options = {}
    if url.startswith(("http://", "https://")):
        # A streamed file never reads `size`; any value stops fsspec asking the server for it.
        options = {"block_size": 0, "size": 1}
    with fs.open(path, "rb", **options) as raw:
        # webdataset reads the tar as a stream ("r|*"): no seeking back, one member at a time.
        members = tar_file_expander([{"url": url, "stream": raw}], eof_value=None)
        for sample in group_by_keys(members):
            yield np.load(io.BytesIO(sample["npy"])), int(sample["cls"])


# ----------------------------------------------------------------------------- counting opens

@dataclass
class OpenCount:
    """Files opened under `folder` while a `count_opens` block runs (`count` goes up)."""

    folder: str
    count: int = 0


_counters: list[OpenCount] = []
_counters_lock = threading.Lock()
_hook_installed = False


def _on_audit(event: str, args: tuple) -> None:
    # Runs for every audit event of the process once installed, so it returns at once unless
    # a count is running. "open" is raised by open()/io.open() and os.open() for every file.
    if event != "open" or not _counters or not isinstance(args[0], (str, bytes, os.PathLike)):
        return
    path = os.path.abspath(os.fsdecode(args[0]))
    for counter in _counters:
        if path.startswith(counter.folder):
            counter.count += 1


@contextmanager
def count_opens(folder: str | os.PathLike) -> Iterator[OpenCount]:
    """Count the files this process opens under `folder` while the block runs.

    Counts real opens (Python's `open` audit event: `open()`, `io.open`, `os.open`, so fsspec's
    local files too), not calls of any one function. Installs an audit hook on first use; it
    stays for the life of the process (Python cannot remove one) and does nothing outside a
    `count_opens` block. Opens made by C libraries (h5py) are not seen.
    """
    global _hook_installed
    with _counters_lock:
        if not _hook_installed:
            sys.addaudithook(_on_audit)
            _hook_installed = True
    counter = OpenCount(os.path.join(os.path.abspath(folder), ""))
    _counters.append(counter)
    try:
        yield counter
    finally:
        _counters.remove(counter)


# ----------------------------------------------------------------------------- shard size


@dataclass(frozen=True)
class ShardTrial:
    """Reading one epoch of the same samples written `samples_per_shard` to a shard.

    `opens` are the files opened during one timed epoch, counted (`count_opens`).
    `file_bytes_per_sample` is the shards' total size (`st_size`) over the samples;
    `overhead_bytes_per_sample` is that minus the image's own bytes: per member a 512-byte tar
    header and padding to a multiple of 512 bytes, the `.npy` header and the label's member,
    and per shard the end-of-archive blocks padded to tar's 10,240-byte record. `seconds` is the
    median of the timed epochs (`seconds_runs`, one per repeat), each reading every sample in
    order with `samples_in_shard`. `cold` says what was measured: True when the shards were
    dropped from the page cache before every epoch (so the first read of each file came from
    disk), False when they were read warm (the OS cannot drop pages, or `cold=False` was asked).
    """

    samples_per_shard: int
    samples: int
    shards: int
    opens: int
    file_bytes_per_sample: float
    overhead_bytes_per_sample: float
    write_seconds: float
    seconds: float
    seconds_runs: tuple[float, ...]
    samples_per_s: float
    cold: bool


def _read_epoch(paths: Sequence[Path]) -> int:
    count = 0
    for path in paths:
        for _image, _label in samples_in_shard(path):
            count += 1
    return count


def shard_size_trial(h5_path: str | os.PathLike, folder: str | os.PathLike,
                     samples_per_shard: Sequence[int], n: int | None = None, cold: bool = True,
                     repeats: int = 1) -> list[ShardTrial]:
    """Write the first `n` samples (default all) once per shard size and time reading them.

    Each size gets its own subfolder `folder/<size>-per-shard/` (left there; earlier shards in
    it are replaced). Epochs are interleaved over the sizes, `repeats` rounds, so every size
    sees the same machine load; with `cold` (default) every shard is evicted from the page
    cache before each epoch where the OS allows it (`formats.evict`), since warm reads of a
    few MB hide most of what an open costs. Include size 1 to see the one-file-per-sample
    case. The `small` dataset (2000 images of 76,800 bytes) takes about 1 s per size on
    2 cores; pass `n` (e.g. 1000) to keep a notebook cell short.

    Returns one `ShardTrial` per size, in the order given. Raises ValueError for an empty
    list, a size that is not a positive whole number (as `write_shards`) or `repeats` < 1.
    """
    sizes = list(samples_per_shard)
    if not sizes:
        raise ValueError("samples_per_shard must list at least one shard size")
    if repeats < 1:
        raise ValueError(f"repeats must be at least 1, not {repeats!r}")
    folder = Path(folder)
    written: dict[int, tuple[list[Path], float]] = {}
    for size in sizes:
        start = time.perf_counter()
        paths = write_shards(h5_path, folder / f"{size}-per-shard", size, n)
        written[size] = paths, time.perf_counter() - start
    first = next(iter(written.values()))[0][0]
    image_bytes = next(samples_in_shard(first))[0].nbytes
    cold = bool(cold) and page_cache_control()
    runs: dict[int, list[float]] = {size: [] for size in sizes}
    opens: dict[int, int] = {}
    counts: dict[int, int] = {}
    for _ in range(repeats):
        for size in sizes:
            paths = written[size][0]
            if cold:
                evict(paths[0].parent)
            with count_opens(paths[0].parent) as opened:
                start = time.perf_counter()
                counts[size] = _read_epoch(paths)
                runs[size].append(time.perf_counter() - start)
            opens[size] = opened.count
    trials = []
    for size in sizes:
        paths, write_s = written[size]
        total = counts[size]
        file_bytes = sum(p.stat().st_size for p in paths)
        seconds = statistics.median(runs[size])
        trials.append(ShardTrial(
            samples_per_shard=int(size), samples=total, shards=len(paths), opens=opens[size],
            file_bytes_per_sample=file_bytes / total,
            overhead_bytes_per_sample=file_bytes / total - image_bytes,
            write_seconds=write_s, seconds=seconds, seconds_runs=tuple(runs[size]),
            samples_per_s=total / seconds, cold=cold))
    return trials


# ----------------------------------------------------------------------------- WebDataset


def _local_urls(urls: str | os.PathLike | Iterable[str | os.PathLike]) -> str | list[str]:
    """Shard paths as WebDataset takes them, refusing anything with a URL scheme."""
    listed = [os.fspath(urls)] if isinstance(urls, (str, os.PathLike)) else [
        os.fspath(u) for u in urls]
    for url in listed:
        if re.match(r"[A-Za-z][A-Za-z0-9+.-]+:", url):
            raise ValueError(
                f"{url!r} is a URL: WebDataset opens http(s) URLs by starting a `curl` process "
                "per shard (and `pipe:` runs a shell command). Pass local shard paths; read "
                "shards over HTTP with `samples_in_shard(url)`.")
    if not listed:
        raise ValueError("no shard paths given")
    # A single string may be a brace pattern ("shard-{000000..000009}.tar"): WebDataset expands it.
    return listed[0] if isinstance(urls, (str, os.PathLike)) else listed


def _webdataset(urls: str | os.PathLike | Iterable[str | os.PathLike], shardshuffle: int | bool,
                split_by_worker: bool, seed: int | None) -> wds.WebDataset:
    return wds.WebDataset(
        _local_urls(urls), shardshuffle=shardshuffle, seed=seed,
        # Both splitters split the list of shards: each process and worker reads its own shards.
        nodesplitter=wds.split_by_node,
        workersplitter=wds.split_by_worker if split_by_worker else None,
        # A worker with no shard left yields nothing instead of raising in the DataLoader.
        empty_check=False)


def webdataset_loader(urls: str | os.PathLike | Iterable[str | os.PathLike], *,
                      shuffle_buffer: int = 0, shardshuffle: int | bool = False,
                      split_by_worker: bool = True, seed: int | None = None,
                      keys: bool = False) -> wds.WebDataset:
    """The shards as WebDataset's own pipeline: an IterableDataset of `(image, label)`.

    `image` is (3, H, W) uint8 (NumPy), `label` an int; with `keys` each sample starts with its
    key (`"000042"`). Shards are split by node (`RANK`, `WORLD_SIZE`) and, unless
    `split_by_worker=False` (to show the pitfall), by DataLoader worker; `shardshuffle=N`
    shuffles the shard order with a buffer of N shards (the same order every epoch: see the
    pitfalls above); `shuffle_buffer` samples are shuffled in a buffer before decoding (0: no
    shuffle), so the buffer holds undecoded bytes. Use it in a `DataLoader` with
    `batch_size=...` as usual; `len()` is not defined.

    Raises ValueError for a URL (http, pipe, ...): local paths only.
    """
    fields = ("__key__", "npy", "cls") if keys else ("npy", "cls")
    return (_webdataset(urls, shardshuffle, split_by_worker, seed)
            .shuffle(shuffle_buffer)
            .decode()
            .to_tuple(*fields))


def count_with_workers(urls: str | os.PathLike | Iterable[str | os.PathLike], num_workers: int,
                       split_by_worker: bool) -> tuple[int, int]:
    """Samples a `DataLoader` (fork, `num_workers` workers) yields over one epoch of the shards.

    Returns `(samples_yielded, unique_samples)`, samples told apart by key. With
    `split_by_worker=False` every worker reads every shard: `num_workers` times the samples.
    Reads only the keys (nothing is decoded), so an epoch of `tiny` takes well under a second
    plus the workers' start. Raises ValueError for a URL (local paths only).
    """
    # lazy: torch takes ~2 s to import; only this function of the module needs it
    from torch.utils.data import DataLoader

    dataset = _webdataset(urls, False, split_by_worker, None).to_tuple("__key__")
    context = "fork" if num_workers > 0 else None
    loader = DataLoader(dataset, batch_size=None, num_workers=num_workers,
                        multiprocessing_context=context)
    seen = [key for (key,) in loader]
    return len(seen), len(set(seen))


# ----------------------------------------------------------------------------- shuffle buffer


@dataclass(frozen=True)
class ShuffleTrial:
    """One epoch streamed shard by shard through WebDataset's shuffle with `buffer_size`.

    `peak_bytes` is measured, not computed: every image read is registered with
    `weakref.finalize`, so it is the most image bytes alive at once. It comes out at about one
    sample above `predicted_bytes` = `buffer_size` x `sample_bytes` (76,800 for `small`):
    the next sample is read while the shuffle still holds a reference to the last one.
    `mean_displacement`: how far a sample moved, |position out - position in|, averaged and
    divided by the epoch's length (0: not shuffled; a perfect shuffle gives about 1/3).
    `shards_per_batch`: distinct shards in a batch of `batch_size` consecutive samples,
    averaged over the full batches (1.0 when shards hold at least a batch and nothing is
    shuffled). The `perfect_` fields are the same measures for a uniform random permutation of
    the same samples.
    """

    buffer_size: int
    samples: int
    shards: int
    batch_size: int
    sample_bytes: int
    predicted_bytes: int
    peak_bytes: int
    mean_displacement: float
    shards_per_batch: float
    perfect_displacement: float
    perfect_shards_per_batch: float


class _LiveBytes:
    """Image bytes alive now and at most, kept by a finalizer on every image."""

    def __init__(self) -> None:
        self.now = self.peak = 0

    def add(self, image: np.ndarray) -> None:
        self.now += image.nbytes
        self.peak = max(self.peak, self.now)
        weakref.finalize(image, self._drop, image.nbytes)

    def _drop(self, nbytes: int) -> None:
        self.now -= nbytes


def _shuffle_quality(order: np.ndarray, shard_of: np.ndarray,
                     batch_size: int) -> tuple[float, float]:
    """(mean displacement over the epoch's length, mean distinct shards per full batch)."""
    n = len(order)
    displacement = float(np.abs(order - np.arange(n)).mean() / n)
    full = max(1, n // batch_size)
    batches = shard_of[order[:full * batch_size] if n >= batch_size else order]
    per_batch = [len(np.unique(b)) for b in batches.reshape(full, -1)]
    return displacement, float(np.mean(per_batch))


def _indexed(shards: Sequence[str], live: _LiveBytes,
             shard_sizes: list[int]) -> Iterator[tuple[int, np.ndarray]]:
    """`(position in the stream, image)` for every sample, shard by shard; each image is
    registered with `live`, and each shard's sample count appended to `shard_sizes`."""
    index = 0
    for path in shards:
        count = 0
        for image, _label in samples_in_shard(path):
            live.add(image)
            yield index, image
            del image  # a suspended generator would otherwise keep the last image alive
            index += 1
            count += 1
        shard_sizes.append(count)


def shuffle_trial(shards: Sequence[str | os.PathLike], buffer_sizes: Sequence[int],
                  batch_size: int = 32, seed: int = 0) -> list[ShuffleTrial]:
    """Stream the shards in order through `webdataset.filters._shuffle` once per buffer size.

    The shuffle is WebDataset's own (`_shuffle(stream, bufsize=B, initial=B)`: it yields only
    once B samples are buffered, as `.shuffle(B, initial=B)` does; B of 0 or 1 passes the
    stream through). Each pass reads every sample with `samples_in_shard`: about 0.4 s per
    1000 `small` samples on 2 cores, so 4 buffer sizes over 1000 samples take about 2 s.
    Returns one `ShuffleTrial` per buffer size, in order.

    Raises ValueError when `shards` or `buffer_sizes` is empty, a buffer size is negative or
    `batch_size` < 1.
    """
    shards = [os.fspath(s) for s in shards]
    if not shards or not buffer_sizes:
        raise ValueError("shuffle_trial needs at least one shard and one buffer size")
    if any(int(b) < 0 for b in buffer_sizes) or batch_size < 1:
        raise ValueError(f"buffer sizes must be >= 0 and batch_size >= 1, not "
                         f"{list(buffer_sizes)} and {batch_size}")
    trials = []
    for buffer_size in buffer_sizes:
        live = _LiveBytes()
        shard_sizes: list[int] = []
        positions: list[int] = []
        shuffled = _shuffle(_indexed(shards, live, shard_sizes), bufsize=int(buffer_size),
                            initial=int(buffer_size), rng=random.Random(seed))
        sample_bytes = 0
        for index, image in shuffled:
            positions.append(index)
            sample_bytes = image.nbytes
            del image  # dropped before the next sample is read: the loop holds none
        if not positions:
            raise ValueError(f"the shards hold no samples: {shards[:3]}")
        order = np.array(positions, dtype=np.int64)
        shard_of = np.repeat(np.arange(len(shard_sizes)), shard_sizes)
        displacement, per_batch = _shuffle_quality(order, shard_of, batch_size)
        perfect = np.random.default_rng(seed).permutation(len(order))
        perfect_displacement, perfect_per_batch = _shuffle_quality(perfect, shard_of, batch_size)
        trials.append(ShuffleTrial(
            buffer_size=int(buffer_size), samples=len(order), shards=len(shard_sizes),
            batch_size=batch_size, sample_bytes=sample_bytes,
            predicted_bytes=int(buffer_size) * sample_bytes, peak_bytes=live.peak,
            mean_displacement=displacement, shards_per_batch=per_batch,
            perfect_displacement=perfect_displacement,
            perfect_shards_per_batch=perfect_per_batch))
    return trials
