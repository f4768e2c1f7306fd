"""Section 1: random single-sample reads per storage format, warm and cold, against the ceiling.

The same images are written in seven formats. Each trial runs in a fresh Python process: the
files are dropped from the page cache first (`posix_fadvise(DONTNEED)` on closed files), the
process times random reads from disk (cold), then reads the files once start to end and times
other random reads from the page cache (warm), reopening the format so library caches start
empty. The ceiling, measured in the same run, reads the same bytes in index order, one `pread`
per sample, from disk and then from the page cache: no random-access format can beat it by
much. Trials are interleaved over formats, so every format sees the same machine load.

The fresh processes run `python -m memcourse_apps.bench.reads trial|sequential ...`.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from memcourse import formats as fm
from memcourse_apps.bench.common import MIB, Stat, num, ratio, run_measurement, table

# Reads per timed pass, and the seconds after which a pass stops early (slow layouts).
READS_PER_PASS = 200
PASS_BUDGET_S = 1.5


@dataclass(frozen=True)
class Format:
    """One way of storing the images: a name for the table, a reader kind, a writer."""

    name: str
    kind: str  # memcourse.formats.open_reader kind
    filename: str
    write: Callable[[Path, np.ndarray, np.ndarray], float]


def _formats(shape: tuple[int, ...]) -> list[Format]:
    one = (1, *shape)
    return [
        Format("NumPy .npy, memmap", "npy_memmap", "images.npy",
               lambda p, x, y: fm.write_npy(p, x)),
        Format("HDF5 contiguous", "h5", "contiguous.h5",
               lambda p, x, y: fm.write_h5(p, x, y)),
        Format("HDF5 one sample per chunk", "h5", "chunk1.h5",
               lambda p, x, y: fm.write_h5(p, x, y, chunks=one)),
        Format("HDF5 one sample per chunk, gzip-4", "h5", "chunk1_gzip4.h5",
               lambda p, x, y: fm.write_h5(p, x, y, chunks=one, compression="gzip",
                                           compression_opts=4)),
        Format("HDF5 chunks=True (auto-chunked)", "h5", "auto.h5",
               lambda p, x, y: fm.write_h5(p, x, y, chunks=True)),
        Format("LMDB (readahead on)", "lmdb", "images.lmdb",
               lambda p, x, y: fm.write_lmdb(p, x, y)),
        Format("Zarr v3, one sample per chunk, raw", "zarr", "images.zarr",
               lambda p, x, y: fm.write_zarr(p, x, chunks=one, compressors=None)),
    ]


def _layout(fmt: Format, path: Path) -> str:
    """The chunk shape of an HDF5 layout (what `chunks=True` chose matters), else ''."""
    if fmt.kind != "h5":
        return ""
    import h5py  # lazy: the timing children run this module; each loads only the format it times

    with h5py.File(path, "r") as f:
        chunks = f["images"].chunks
    return "contiguous" if chunks is None else "chunks " + "x".join(map(str, chunks))


# ----------------------------------------------------------------------------- in the fresh process


def _time_reads(get: Callable[[int], Any], indices: list[int]) -> float:
    """Mean seconds per `get(i)` over `indices`, stopping early once the pass budget is spent."""
    done = 0
    start = time.perf_counter()
    for i in indices:
        get(i)
        done += 1
        if done >= 20 and time.perf_counter() - start > PASS_BUDGET_S:
            break
    return (time.perf_counter() - start) / done


def _trial(kind: str, path: str, cold: list[int], warm_idx: list[int]) -> dict:
    get, close = fm.open_reader(kind, path)
    try:
        cold_s = _time_reads(get, cold)
    finally:
        close()  # closed before anything else: the parent evicts again for the next trial
    fm.warm(path)
    get, close = fm.open_reader(kind, path)
    try:
        warm_s = _time_reads(get, warm_idx)
    finally:
        close()
    return {"cold_ms": cold_s * 1e3, "warm_ms": warm_s * 1e3}


def _sequential(path: str, offset: int, sample_bytes: int, count: int) -> dict:
    """Every sample in index order, one `pread` each: first as the cache was left, then warm."""
    out = {}
    fd = os.open(path, os.O_RDONLY)
    try:
        for label in ("cold_ms", "warm_ms"):
            if label == "warm_ms":
                fm.warm(path)
            start = time.perf_counter()
            for i in range(count):
                os.pread(fd, sample_bytes, offset + i * sample_bytes)
            out[label] = (time.perf_counter() - start) / count * 1e3
    finally:
        os.close(fd)
    return out


def _fresh(args: list[str]) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return run_measurement("memcourse_apps.bench.reads", args, "a timing process", 600, env)


# ----------------------------------------------------------------------------- the section


def run(h5_path: Path, scratch: Path, repeats: int, max_samples: int,
        progress: Callable[[str], None]) -> dict:
    """Write the formats, time every one `repeats` times, and return the results."""
    images, labels = fm.load_subset(h5_path, max_samples)
    n, shape = len(images), images.shape[1:]
    sample_bytes = images[0].nbytes
    scratch.mkdir(parents=True, exist_ok=True)
    formats = _formats(shape)
    paths, write_s = {}, {}
    for f in formats:
        progress(f"writing {f.name}")
        paths[f.name] = scratch / f.filename
        write_s[f.name] = f.write(paths[f.name], images, labels)
    del images, labels
    npy = paths[formats[0].name]
    mm = np.load(npy, mmap_mode="r")
    offset = mm.offset
    del mm  # unmapped: a mapped file cannot be evicted
    can_evict = fm.page_cache_control()

    reads = min(READS_PER_PASS, max(20, n // 4))
    cold = {f.name: Stat() for f in formats}
    warm = {f.name: Stat() for f in formats}
    ceiling = {"cold": Stat(), "warm": Stat()}
    residency: list[float] = []
    for r in range(repeats):
        order = np.random.default_rng(100 + r).permutation(n)
        cold_idx = ",".join(map(str, order[:reads]))
        warm_idx = ",".join(map(str, order[reads:2 * reads] if n >= 2 * reads else order[:reads]))
        progress(f"reads: trial {r + 1}/{repeats}, sequential ceiling")
        if can_evict:
            fm.evict(npy)
        seq = _fresh(["sequential", str(npy), str(offset), str(sample_bytes), str(n)])
        ceiling["cold"].add(seq["cold_ms"])
        ceiling["warm"].add(seq["warm_ms"])
        for f in formats:
            progress(f"reads: trial {r + 1}/{repeats}, {f.name}")
            if can_evict:
                fm.evict(paths[f.name])
                frac = fm.resident_fraction(paths[f.name])
                if frac is not None:
                    residency.append(frac)
            res = _fresh(["trial", f.kind, str(paths[f.name]), "--cold", cold_idx,
                          "--warm", warm_idx])
            cold[f.name].add(res["cold_ms"])
            warm[f.name].add(res["warm_ms"])

    rows = []
    for f in formats:
        rows.append({
            "format": f.name, "layout": _layout(f, paths[f.name]),
            "disk_mib": fm.disk_bytes(paths[f.name]) / MIB, "files": fm.file_count(paths[f.name]),
            "write_s": write_s[f.name],
            "warm_ms": warm[f.name], "cold_ms": cold[f.name],
            # share of the ceiling's speed: ceiling time / format time, paired by trial
            "warm_share": ratio(ceiling["warm"], warm[f.name]),
            "cold_share": ratio(ceiling["cold"], cold[f.name]),
        })
    return {"rows": rows, "ceiling": ceiling, "n": n, "sample_bytes": sample_bytes,
            "reads_per_pass": reads, "repeats": repeats, "cold_available": can_evict,
            "max_residency": max(residency) if residency else None,
            "readahead_kib": fm.readahead_kib(scratch)}


def markdown(res: dict) -> str:
    """The section's table and the sentences that say what was compared with what."""
    ceil = res["ceiling"]
    cold_note = ("" if res["cold_available"] else
                 " **This OS cannot drop files from the page cache (no posix_fadvise), so the "
                 "cold columns are first reads of files that may still be cached.**")
    residency = res["max_residency"]
    lines = [
        "## 1. Random single-sample reads per format",
        "",
        f"{res['n']} images of {res['sample_bytes'] / 1024:.0f} KiB (uint8, 3×H×W) in each "
        f"format. Each trial is a fresh Python process: {res['reads_per_pass']} random "
        "single-sample reads right after the files were evicted from the page cache "
        "(`posix_fadvise(DONTNEED)` on closed files: **cold**), then the files are read once "
        "start to end, the format is reopened and other random samples are read (**warm**). "
        f"Median of {res['repeats']} trials (lowest–highest), interleaved over the formats."
        + cold_note,
        "",
        "**Compared with the ceiling**, measured in the same run: the same bytes per read, in "
        "index order, one `os.pread` per sample of the `.npy` file, "
        f"{ceil['warm'].fmt()} ms per sample from the page cache (warm) and "
        f"{ceil['cold'].fmt()} ms from disk (cold). *Share of ceiling* = ceiling time ÷ format "
        "time, paired trial by trial: 1.0 is as fast as streaming the file, 0.1 is ten times "
        "slower.",
        "",
    ]
    if residency is not None:
        lines += [f"Page-cache residency right before each cold trial: at most "
                  f"{residency:.0%} of the file (measured with `mincore`).", ""]
    if res.get("readahead_kib"):
        lines += [f"Disk readahead window: {res['readahead_kib']} KiB.", ""]
    rows = [(r["format"], r["layout"] or "–", num(r["disk_mib"]), r["files"],
             num(r["write_s"], 2), r["warm_ms"].fmt(), r["warm_share"].fmt(2),
             r["cold_ms"].fmt(), r["cold_share"].fmt(2)) for r in res["rows"]]
    lines.append(table(["format", "layout", "MiB on disk", "files", "write s",
                        "warm ms/sample", "warm share of ceiling", "cold ms/sample",
                        "cold share of ceiling"], rows))
    return "\n".join(lines)


def plot(res: dict, path: Path) -> None:
    """Bars of ms per sample, warm and cold, log scale, with the two ceilings as lines."""
    # lazy: matplotlib (~0.7 s) only to plot; use("Agg") at import would change others' backend
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # lazy: must come after matplotlib.use("Agg")

    rows = res["rows"]
    y = np.arange(len(rows))
    fig, ax = plt.subplots(figsize=(8.5, 4.5))
    for shift, key, label in ((-0.2, "cold_ms", "cold (evicted)"), (0.2, "warm_ms", "warm")):
        med = np.array([r[key].median for r in rows])
        err = np.array([[m - r[key].low for m, r in zip(med, rows, strict=True)],
                        [r[key].high - m for m, r in zip(med, rows, strict=True)]])
        ax.barh(y + shift, med, 0.4, xerr=err, label=label, capsize=2)
    ax.axvline(res["ceiling"]["cold"].median, color="tab:blue", ls="--", lw=1,
               label="ceiling: sequential, cold")
    ax.axvline(res["ceiling"]["warm"].median, color="tab:orange", ls="--", lw=1,
               label="ceiling: sequential, warm")
    ax.set_yticks(y, [r["format"] for r in rows])
    ax.invert_yaxis()
    ax.set_xscale("log")
    ax.set_xlabel("ms per random single-sample read (log scale; median, bars = range)")
    ax.set_title(f"Random reads of {res['sample_bytes'] / 1024:.0f} KiB samples, "
                 f"fresh process per trial")
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    """`python -m memcourse_apps.bench.reads trial|sequential ...`: one timing process."""
    parser = argparse.ArgumentParser(prog="python -m memcourse_apps.bench.reads")
    sub = parser.add_subparsers(dest="what", required=True)
    p = sub.add_parser("trial")
    p.add_argument("kind")
    p.add_argument("path")
    p.add_argument("--cold", required=True)
    p.add_argument("--warm", required=True)
    p = sub.add_parser("sequential")
    p.add_argument("path")
    p.add_argument("offset", type=int)
    p.add_argument("sample_bytes", type=int)
    p.add_argument("count", type=int)
    args = parser.parse_args(argv)
    if args.what == "trial":
        out = _trial(args.kind, args.path, [int(i) for i in args.cold.split(",")],
                     [int(i) for i in args.warm.split(",")])
    else:
        out = _sequential(args.path, args.offset, args.sample_bytes, args.count)
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
