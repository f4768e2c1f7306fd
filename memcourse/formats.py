"""Storage formats for notebook 04: write one dataset several ways, read it back, time it honestly.

The writers store the same images (N, 3, H, W) uint8 and labels (N,) int64 as `.npy`, HDF5 (any
layout), LMDB and Zarr; `open_reader` also reads a TileDB dense array. The page-cache helpers
(`evict`, `resident_fraction`) make cold reads possible without root, and `random_read_trial`
times random single-sample reads in a fresh Python process so that nothing the notebook has
open or cached colours the result.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

# LMDB layout written by `write_lmdb` (and read by the LMDBDataset exercise):
#   key lmdb_key(i) = i as 8 big-endian bytes  ->  the raw bytes of image i (C order, uint8)
#   key LMDB_LABELS_KEY                         ->  all labels as little-endian int64 bytes
#   key LMDB_META_KEY                           ->  JSON {"length", "shape", "dtype"}
# Big-endian fixed-width keys sort in index order; both metadata keys start with "_" (0x5f),
# which sorts after every sample key whose first byte is 0x00 (any index below 2**56).
LMDB_META_KEY = b"__meta__"
LMDB_LABELS_KEY = b"__labels__"

READ_KINDS = ("npy_memmap", "h5", "h5_memmap", "lmdb", "lmdb_no_readahead", "zarr")
# One more kind that `open_reader` and the timing trials accept: a TileDB dense array whose only
# attribute holds the images (notebook 04 writes it; `memcourse bench` does not time it).
TILEDB_READ_KIND = "tiledb"


def lmdb_key(index: int) -> bytes:
    """The LMDB key of sample `index`: 8 bytes, big-endian, so keys sort in index order."""
    return int(index).to_bytes(8, "big")


# ----------------------------------------------------------------------------- sizes and data


def disk_bytes(path: str | os.PathLike) -> int:
    """Bytes a file or folder really occupies on disk (allocated blocks; sparse holes are free)."""
    path = Path(path)
    files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
    return sum(p.stat().st_blocks * 512 for p in files)


def file_count(path: str | os.PathLike) -> int:
    """How many files a format stored (1 for a single file)."""
    path = Path(path)
    return 1 if path.is_file() else sum(1 for p in path.rglob("*") if p.is_file())


def load_subset(h5_path: str | os.PathLike, n: int) -> tuple[np.ndarray, np.ndarray]:
    """The first `n` images and labels of a course dataset, as in-memory arrays."""
    import h5py  # lazy: each timing process loads only the format it times

    with h5py.File(h5_path, "r") as f:
        n = min(n, f["images"].shape[0])
        return f["images"][:n], f["labels"][:n]


# ----------------------------------------------------------------------------- writers


def _fresh(path: Path) -> Path:
    """Remove an earlier copy so each run writes from scratch."""
    if path.is_dir():
        shutil.rmtree(path)
    elif path.exists():
        path.unlink()
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def write_npy(path: str | os.PathLike, images: np.ndarray) -> float:
    """Write `images` as one `.npy` file; return the seconds it took."""
    path = _fresh(Path(path))
    start = time.perf_counter()
    np.save(path, images)
    return time.perf_counter() - start


def write_h5(path: str | os.PathLike, images: np.ndarray, labels: np.ndarray,
             **layout: Any) -> float:
    """Write `images` and `labels` to HDF5, passing `layout` (chunks, compression, ...) to the
    images dataset; return the seconds it took."""
    import h5py  # lazy: each timing process loads only the format it times

    path = _fresh(Path(path))
    start = time.perf_counter()
    with h5py.File(path, "w") as f:
        f.create_dataset("images", data=images, **layout)
        f.create_dataset("labels", data=labels.astype(np.int64))
    return time.perf_counter() - start


def default_map_size(images: np.ndarray) -> int:
    """A generous LMDB map size: twice the data plus 16 MiB (unused map space costs nothing)."""
    return int(2 * images.nbytes + 16 * 2**20)


def write_lmdb(path: str | os.PathLike, images: np.ndarray, labels: np.ndarray,
               map_size: int | None = None) -> float:
    """Write the dataset to an LMDB folder in the layout described at the top of this module.

    Every sample goes in one write transaction with `append=True`, which is allowed (and fast)
    because the big-endian keys arrive in sorted order. Returns the seconds it took.
    """
    import lmdb  # lazy: each timing process loads only the format it times

    path = _fresh(Path(path))
    start = time.perf_counter()
    env = lmdb.open(str(path), map_size=map_size or default_map_size(images), subdir=True)
    try:
        with env.begin(write=True) as txn:
            for i, image in enumerate(images):
                txn.put(lmdb_key(i), np.ascontiguousarray(image).tobytes(), append=True)
            txn.put(LMDB_LABELS_KEY, labels.astype("<i8").tobytes(), append=True)
            meta = {"length": len(images), "shape": list(images.shape[1:]),
                    "dtype": str(images.dtype)}
            txn.put(LMDB_META_KEY, json.dumps(meta).encode(), append=True)
    finally:
        env.close()
    return time.perf_counter() - start


def write_zarr(path: str | os.PathLike, images: np.ndarray, chunks: Sequence[int],
               compressors: Any = "auto", shards: Sequence[int] | None = None) -> float:
    """Write `images` as a Zarr v3 array with the given chunks (and shards); return seconds."""
    import zarr  # lazy: each timing process loads only the format it times

    path = _fresh(Path(path))
    start = time.perf_counter()
    z = zarr.create_array(store=str(path), shape=images.shape, dtype=images.dtype,
                          chunks=tuple(chunks), shards=None if shards is None else tuple(shards),
                          compressors=compressors)
    z[:] = images
    return time.perf_counter() - start


def filter_names(dset: Any) -> list[str]:
    """The HDF5 filters of an h5py dataset, in pipeline order (e.g. ['deflate'], ['blosc'])."""
    dcpl = dset.id.get_create_plist()
    return [dcpl.get_filter(i)[3].decode() for i in range(dcpl.get_nfilters())]


def layout_info(dset: Any) -> dict:
    """How an h5py images dataset (N, ...) is laid out, as seen by a per-sample read."""
    shape = dset.shape
    if dset.chunks is None:
        return {"chunks": "contiguous", "samples_per_chunk": "-", "chunks_per_sample": "-",
                "chunk_kib": "-", "filters": "none"}
    chunks = dset.chunks
    pieces = [-(-s // c) for s, c in zip(shape[1:], chunks[1:], strict=True)]  # ceil division
    return {"chunks": str(chunks), "samples_per_chunk": chunks[0],
            "chunks_per_sample": int(np.prod(pieces)),
            "chunk_kib": round(float(np.prod(chunks)) * dset.dtype.itemsize / 1024),
            "filters": "+".join(filter_names(dset)) or "none"}


def describe_layout(dset: Any) -> str:
    """Say in words how an h5py images dataset (N, ...) is laid out for per-sample reads."""
    if dset.chunks is None:
        return f"contiguous, starting {dset.id.get_offset()} bytes into the file"
    info = layout_info(dset)
    return (f"chunks {info['chunks']} ({info['chunk_kib']} KiB); {info['samples_per_chunk']} "
            f"sample(s) per chunk, {info['chunks_per_sample']} chunk(s) per sample; filters: "
            f"{info['filters']}")


# ----------------------------------------------------------------------------- the page cache


def page_cache_control() -> bool:
    """True where `os.posix_fadvise` can drop a file's pages from the page cache (Linux)."""
    return hasattr(os, "posix_fadvise") and hasattr(os, "POSIX_FADV_DONTNEED")


def _files(path: Path) -> list[Path]:
    return [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())


def evict(path: str | os.PathLike) -> bool:
    """Ask the kernel to drop a file's (or a folder's files') pages from the page cache.

    Works without root. Pages that a live process still maps stay resident, so close memmaps
    and LMDB environments first. Returns False where the OS has no `posix_fadvise` (macOS).
    """
    if not page_cache_control():
        return False
    for p in _files(Path(path)):
        fd = os.open(p, os.O_RDONLY)
        try:
            os.fdatasync(fd)  # dirty pages are never dropped; written files must be flushed
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)
    return True


def warm(path: str | os.PathLike) -> int:
    """Read a file (or a folder's files) once, sequentially, so it sits in the page cache."""
    total = 0
    buf = bytearray(8 * 2**20)
    for p in _files(Path(path)):
        with open(p, "rb", buffering=0) as f:
            while n := f.readinto(buf):
                total += n
    return total


def resident_fraction(path: str | os.PathLike) -> float | None:
    """Fraction of a file's (or folder's) bytes in the page cache now, via mincore(2).

    Maps each file without touching it, asks the kernel which pages are resident, and unmaps.
    Returns None where this is not available (not Linux).
    """
    if not sys.platform.startswith("linux"):
        return None
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mmap.restype = ctypes.c_void_p
    libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int,
                          ctypes.c_int, ctypes.c_long]
    libc.mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p]
    libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
    page = os.sysconf("SC_PAGE_SIZE")
    resident = total = 0
    for p in _files(Path(path)):
        size = p.stat().st_size
        if size == 0:
            continue
        fd = os.open(p, os.O_RDONLY)
        try:
            addr = libc.mmap(None, size, 1, 1, fd, 0)  # PROT_READ, MAP_SHARED
            if addr in (None, ctypes.c_void_p(-1).value):
                return None
            try:
                pages = (size + page - 1) // page
                vec = (ctypes.c_ubyte * pages)()
                if libc.mincore(addr, size, vec) != 0:
                    return None
                resident += int(np.count_nonzero(np.frombuffer(vec, np.uint8) & 1))
                total += pages
            finally:
                libc.munmap(addr, size)
        finally:
            os.close(fd)
    return resident / total if total else 0.0


def readahead_kib(path: str | os.PathLike) -> int | None:
    """The kernel's readahead window (KiB) for the disk holding `path`, or None if unknown."""
    try:
        dev = os.stat(path).st_dev
        base = Path(f"/sys/dev/block/{os.major(dev)}:{os.minor(dev)}")
        for q in (base / "queue" / "read_ahead_kb", base.parent / "queue" / "read_ahead_kb"):
            if q.exists():
                return int(q.read_text())
    except (OSError, ValueError):
        pass
    return None


# ----------------------------------------------------------------------------- readers


def map_contiguous(path: str | os.PathLike, name: str = "images") -> np.memmap:
    """A read-only NumPy map of HDF5 dataset `name` in `path`, bypassing HDF5 (notebook 04).

    Only a contiguous, uncompressed dataset is one block of bytes in the file; `get_offset`
    says where it starts. Raises ValueError for a chunked or compressed one. Open it lazily in
    each process: a memmap kept on a Dataset is pickled whole into spawn workers.
    """
    import h5py  # lazy: each timing process loads only the format it times

    with h5py.File(path, "r") as f:
        dset = f[name]
        offset, shape, dtype = dset.id.get_offset(), dset.shape, dset.dtype
    if offset is None:
        raise ValueError(f"{path}: {name} is chunked or compressed; only a contiguous, "
                         "uncompressed dataset can be memory-mapped")
    return np.memmap(path, mode="r", dtype=dtype, shape=shape, offset=offset)


def open_reader(kind: str, path: str | os.PathLike) -> tuple[Callable[[int], np.ndarray],
                                                               Callable[[], None]]:
    """Open `path` for single-sample reads; return (get(i) -> a new array, close()).

    Each reader returns a fresh, writable array per sample, as a Dataset's `__getitem__` must.
    """
    path = str(path)
    if kind == "npy_memmap":
        arr = np.load(path, mmap_mode="r")
        return (lambda i: np.array(arr[i])), arr._mmap.close
    if kind == "h5":
        import h5py  # lazy: each timing process loads only the format it times

        f = h5py.File(path, "r")
        dset = f["images"]
        if any(str(fid).isdigit() for fid in dset._filters):  # h5py names only its own filters
            # lazy: ~0.3 s, for files that use its filters; a trial loads only what it times
            import hdf5plugin  # noqa: F401  (registers Blosc & co.; every reader needs it)
        return (lambda i: dset[i]), f.close
    if kind == "h5_memmap":
        arr = map_contiguous(path, "images")
        return (lambda i: np.array(arr[i])), arr._mmap.close
    if kind in ("lmdb", "lmdb_no_readahead"):
        import lmdb  # lazy: each timing process loads only the format it times

        env = lmdb.open(path, readonly=True, lock=False, readahead=kind == "lmdb")
        with env.begin() as txn:
            shape = tuple(json.loads(txn.get(LMDB_META_KEY))["shape"])

        def get(i: int) -> np.ndarray:
            with env.begin() as txn:
                raw = txn.get(lmdb_key(i))
            return np.frombuffer(raw, np.uint8).reshape(shape).copy()

        return get, env.close
    if kind == "zarr":
        import zarr  # lazy: each timing process loads only the format it times

        z = zarr.open_array(path, mode="r")
        return (lambda i: z[i]), (lambda: None)
    if kind == TILEDB_READ_KIND:
        import tiledb  # lazy: a heavy library; each timing process loads only the format it times

        array = tiledb.open(path, mode="r")
        attr = array.schema.attr(0).name
        return (lambda i: array[i][attr]), array.close
    raise ValueError(f"unknown reader {kind!r}; choose one of "
                     f"{', '.join((*READ_KINDS, TILEDB_READ_KIND))}")


def time_reads(get: Callable[[int], Any], indices: Iterable[int],
               budget_s: float = 0.3, min_reads: int = 10) -> np.ndarray:
    """Seconds per call of `get(i)` over `indices`, stopping once `budget_s` is spent."""
    times = []
    started = time.perf_counter()
    for i in indices:
        t = time.perf_counter()
        get(int(i))
        times.append(time.perf_counter() - t)
        if len(times) >= min_reads and time.perf_counter() - started > budget_s:
            break
    return np.array(times)


def _trial(kind: str, path: str, cold_indices: list[int], warm_indices: list[int],
           budget_s: float, passes: int, warm_passes: int, cold: bool) -> dict:
    """In the fresh process: `passes` passes as the cache was left (evicting again between them
    when `cold`), then `warm_passes` warm passes, each on a newly opened reader."""

    def one_pass(indices: list[int]) -> np.ndarray:
        get, close = open_reader(kind, path)
        try:
            return time_reads(get, indices, budget_s)
        finally:
            close()  # closed before any eviction: mapped pages would stay cached

    first = []
    for p in range(passes):
        if p and cold:
            evict(path)
        first.append(one_pass(cold_indices))
    warm(path)
    second = [one_pass(warm_indices) for _ in range(warm_passes)]
    return {"first_ms": [float(t.mean() * 1e3) for t in first],
            "warm_ms": [float(t.mean() * 1e3) for t in second],
            "reads": [len(t) for t in first + second]}


def _sequential(path: str, offset: int, sample_bytes: int, count: int, cold: bool,
                passes: int = 2, warm_passes: int = 4) -> dict:
    """In the fresh process: read `count` samples in order with one `os.pread` each; `passes`
    passes as the cache was left (evicting again between them when `cold`), then `warm_passes`
    from the page cache. Returns ms per sample of the best pass of each kind."""

    def one_pass() -> float:
        fd = os.open(path, os.O_RDONLY)
        try:
            start = time.perf_counter()
            for i in range(count):
                os.pread(fd, sample_bytes, offset + i * sample_bytes)
            return (time.perf_counter() - start) / count * 1e3
        finally:
            os.close(fd)

    first = []
    for p in range(passes):
        if p and cold:
            evict(path)
        first.append(one_pass())
    return {"first_ms": min(first), "warm_ms": min(one_pass() for _ in range(warm_passes))}


def _run_fresh(args: list[str]) -> dict:
    cmd = [sys.executable, "-m", "memcourse.formats", *args]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    if done.returncode != 0:
        raise RuntimeError(f"the timing process failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def random_read_trial(kind: str, path: str | os.PathLike, cold_indices: Sequence[int],
                      warm_indices: Sequence[int], cold: bool = True, passes: int = 2,
                      warm_passes: int = 4, budget_s: float = 0.15) -> dict:
    """Time random single-sample reads of one format in a fresh Python process.

    With `cold=True` the files are evicted from the page cache first (where the OS allows), so
    the first passes read from disk; the process then reads the files once and times warm
    passes. Every pass opens the format anew, so library caches start empty. Returns the mean
    ms per read of the best pass of each kind (a busy machine only ever adds time), and whether
    the cold passes were really cold.
    """
    evicted = evict(path) if cold else False
    result = _run_fresh(["trial", kind, str(path), "--budget", str(budget_s),
                         "--passes", str(passes), "--warm-passes", str(warm_passes),
                         *(["--evict"] if evicted else []),
                         "--cold", ",".join(map(str, cold_indices)),
                         "--warm", ",".join(map(str, warm_indices))])
    return {"cold_ms": min(result["first_ms"]), "warm_ms": min(result["warm_ms"]),
            "reads": result["reads"], "cold": bool(evicted)}


def sequential_read_trial(npy_path: str | os.PathLike, cold: bool = True) -> dict:
    """The ceiling for per-sample reads: every sample of a `.npy` file read in order, one plain
    `pread` per sample, in a fresh process (the file evicted first when `cold`).

    Returns ms per sample of the best cold and the best warm pass. Reading in order lets the
    kernel's readahead stream the file, and no library stands between the reads and the disk.
    """
    arr = np.load(npy_path, mmap_mode="r")
    offset, sample_bytes, count = arr.offset, arr[0].nbytes, len(arr)
    arr._mmap.close()
    del arr
    evicted = evict(npy_path) if cold else False
    result = _run_fresh(["sequential", str(npy_path), str(offset), str(sample_bytes), str(count),
                         *(["--evict"] if evicted else [])])
    return {"cold_ms": result["first_ms"], "warm_ms": result["warm_ms"], "cold": bool(evicted)}


# ----------------------------------------------------------------------------- output


def format_table(rows: Sequence[Sequence[Any]], headers: Sequence[str]) -> str:
    """Rows as an aligned text table (numbers right-aligned)."""
    cells = [[str(h) for h in headers]] + [[_fmt(v) for v in row] for row in rows]
    widths = [max(len(r[c]) for r in cells) for c in range(len(headers))]
    numeric = [all(isinstance(row[c], (int, float)) for row in rows) for c in range(len(headers))]
    lines = []
    for k, r in enumerate(cells):
        lines.append("  ".join(v.rjust(w) if numeric[c] else v.ljust(w)
                               for c, (v, w) in enumerate(zip(r, widths, strict=True))).rstrip())
        if k == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.3g}" if abs(v) < 100 else f"{v:.0f}"
    return str(v)


def main(argv: list[str] | None = None) -> int:
    """`python -m memcourse.formats trial|sequential ...`: the fresh process of a timing trial."""
    parser = argparse.ArgumentParser(prog="python -m memcourse.formats")
    sub = parser.add_subparsers(dest="what", required=True)
    p = sub.add_parser("trial")
    p.add_argument("kind", choices=(*READ_KINDS, TILEDB_READ_KIND))
    p.add_argument("path")
    p.add_argument("--cold", required=True)
    p.add_argument("--warm", required=True)
    p.add_argument("--budget", type=float, default=0.15)
    p.add_argument("--passes", type=int, default=2)
    p.add_argument("--warm-passes", type=int, default=4)
    p.add_argument("--evict", action="store_true", help="evict again before each cold pass")
    p = sub.add_parser("sequential")
    p.add_argument("path")
    p.add_argument("offset", type=int)
    p.add_argument("sample_bytes", type=int)
    p.add_argument("count", type=int)
    p.add_argument("--evict", action="store_true", help="evict again before each cold pass")
    args = parser.parse_args(argv)
    if args.what == "trial":
        result = _trial(args.kind, args.path, [int(i) for i in args.cold.split(",")],
                        [int(i) for i in args.warm.split(",")], args.budget, args.passes,
                        args.warm_passes, args.evict)
    else:
        result = _sequential(args.path, args.offset, args.sample_bytes, args.count, args.evict)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
