"""Section 2: the course's reference `HDF5Dataset` through a `DataLoader`, 0 to 4 workers.

Measured in a fresh process (`python -m memcourse_apps.bench.loaders H5 --repeats R`) so that
nothing the benchmark holds makes forking workers dearer. The file is read once first, so every
figure here is warm. Two workloads: the dataset as the course writes it (light: read, convert
to float), and the same with a CPU-bound transform (a random rotation in NumPy, the stand-in for
decoding and augmenting an image that notebook 02 uses). The ceiling is copying every sample
out of a memory map of the same file, in index order, from the page cache.

As in notebook 02, every process uses one PyTorch thread, so 0 workers is not slowed by
threads contending for two busy cores, and the comparison is process against process.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import h5py
import numpy as np

from autograder.exercises.hdf5_dataset import ReferenceHDF5Dataset
from memcourse import formats as fm
from memcourse_apps.bench.common import Stat, num, ratio, run_measurement, table

WORKER_COUNTS = (0, 1, 2, 4)
BATCH_SIZE = 32
LIGHT_SAMPLES_MIN = 1024  # at least this many samples per light pass (tiny has 256)
HEAVY_SAMPLES = 384


def random_rotation(image):
    """Rotate a (3, H, W) float tensor by a random angle, bilinear, in NumPy on one core.

    As costly as decoding and augmenting a small JPEG: the CPU-bound work workers exist for.
    """
    import torch  # lazy: ~2 s, only in the measuring child; the bench parent imports every section

    angle = float(torch.empty(()).uniform_(-0.5, 0.5))  # torch's RNG is seeded per worker
    img = image.numpy()
    _, h, w = img.shape
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    cy, cx = (h - 1) / 2, (w - 1) / 2
    cos, sin = np.cos(angle), np.sin(angle)
    sy = cos * (yy - cy) - sin * (xx - cx) + cy
    sx = sin * (yy - cy) + cos * (xx - cx) + cx
    y0 = np.clip(np.floor(sy).astype(np.int64), 0, h - 2)
    x0 = np.clip(np.floor(sx).astype(np.int64), 0, w - 2)
    fy, fx = np.clip(sy - y0, 0, 1), np.clip(sx - x0, 0, 1)
    top = img[:, y0, x0] * (1 - fx) + img[:, y0, x0 + 1] * fx
    bottom = img[:, y0 + 1, x0] * (1 - fx) + img[:, y0 + 1, x0 + 1] * fx
    return torch.from_numpy((top * (1 - fy) + bottom * fy).astype(np.float32))


# ----------------------------------------------------------------------------- in the fresh process


def _loader_rate(ds, num_workers: int, samples: int) -> tuple[float, float]:
    """(seconds to the first batch, samples/s once running) of one shuffled pass."""
    # lazy: ~2 s, only in the measuring child; the bench parent imports every section
    from torch.utils.data import DataLoader, RandomSampler

    sampler = RandomSampler(ds, num_samples=samples)
    kwargs = {"multiprocessing_context": "fork"} if num_workers else {}
    loader = DataLoader(ds, batch_size=BATCH_SIZE, sampler=sampler, num_workers=num_workers,
                        **kwargs)
    start = time.perf_counter()
    it = iter(loader)
    # Each worker's first batch carries its start-up; time the steady state after them.
    skip = max(1, num_workers)
    counted, t0 = 0, None
    for k, (images, _labels) in enumerate(it):
        if k == 0:
            first = time.perf_counter() - start
        if k == skip - 1:
            t0 = time.perf_counter()
        elif k >= skip:
            counted += len(images)
    elapsed = time.perf_counter() - t0 if t0 is not None else float("nan")
    return first, counted / elapsed if counted else float("nan")


def _memmap_ceiling(h5_path: str, min_s: float = 0.3) -> float:
    """Samples/s copying each sample, in index order, out of a memmap of the file (warm)."""
    with h5py.File(h5_path, "r") as f:
        dset = f["images"]
        offset, shape, dtype = dset.id.get_offset(), dset.shape, dset.dtype
    if offset is None:
        raise ValueError(f"{h5_path}: images are chunked; the memmap ceiling needs contiguous")
    mm = np.memmap(h5_path, mode="r", dtype=dtype, shape=shape, offset=offset)
    done, start = 0, time.perf_counter()
    while True:
        for i in range(len(mm)):
            np.array(mm[i])
        done += len(mm)
        if time.perf_counter() - start >= min_s:
            break
    rate = done / (time.perf_counter() - start)
    del mm
    return rate


def measure(h5_path: str, repeats: int) -> dict:
    """All loader figures, interleaved over configurations so each sees the same load."""
    import torch  # lazy: ~2 s, only in the measuring child; the bench parent imports every section

    torch.set_num_threads(1)
    fm.warm(h5_path)
    light = ReferenceHDF5Dataset(h5_path)
    heavy = ReferenceHDF5Dataset(h5_path, transform=random_rotation)
    n = len(light)
    light_samples = max(n, LIGHT_SAMPLES_MIN)
    heavy_samples = HEAVY_SAMPLES
    out: dict = {"n": n, "light_samples": light_samples, "heavy_samples": heavy_samples,
                 "ceiling": [], "light": {k: [] for k in WORKER_COUNTS},
                 "heavy": {k: [] for k in WORKER_COUNTS},
                 "startup": {k: [] for k in WORKER_COUNTS}}
    for _ in range(repeats):
        out["ceiling"].append(_memmap_ceiling(h5_path))
        for k in WORKER_COUNTS:
            first, rate = _loader_rate(light, k, light_samples)
            out["light"][k].append(rate)
            out["startup"][k].append(first)
            out["heavy"][k].append(_loader_rate(heavy, k, heavy_samples)[1])
    return out


# ----------------------------------------------------------------------------- the section


def run(h5_path: Path, repeats: int) -> dict:
    """Run `measure` in a fresh process and turn its runs into Stats."""
    raw = run_measurement("memcourse_apps.bench.loaders", [str(h5_path), "--repeats", str(repeats)],
                          "the DataLoader benchmark", 1800)
    res = {"n": raw["n"], "light_samples": raw["light_samples"],
           "heavy_samples": raw["heavy_samples"], "repeats": repeats,
           "ceiling": Stat(raw["ceiling"])}
    for kind in ("light", "heavy", "startup"):
        res[kind] = {int(k): Stat(v) for k, v in raw[kind].items()}
    res["light_share"] = {k: ratio(s, res["ceiling"]) for k, s in res["light"].items()}
    res["heavy_share"] = {k: ratio(s, res["ceiling"]) for k, s in res["heavy"].items()}
    res["heavy_speedup_2v0"] = ratio(res["heavy"][2], res["heavy"][0])
    res["light_speedup_2v0"] = ratio(res["light"][2], res["light"][0])
    return res


def markdown(res: dict) -> str:
    rows = []
    for k in WORKER_COUNTS:
        rows.append((k, res["light"][k].fmt(), res["light_share"][k].fmt(2),
                     res["heavy"][k].fmt(), res["heavy_share"][k].fmt(2),
                     res["startup"][k].fmt(2)))
    lines = [
        "## 2. The reference `HDF5Dataset` through `DataLoader`",
        "",
        "`autograder.exercises.hdf5_dataset.ReferenceHDF5Dataset` (notebook 05's solution: "
        "opens the file lazily per process, returns a float32 image / 255 and its label) over "
        f"the {res['n']}-image dataset, warm, `batch_size={BATCH_SIZE}`, shuffled, fork "
        "workers, one PyTorch thread per process (as notebook 02 does). *Light*: the dataset "
        f"as is, {res['light_samples']} samples per pass. *Heavy*: with a CPU-bound transform "
        f"(random rotation in NumPy), {res['heavy_samples']} samples per pass. Samples/s "
        "once running (each worker's first batch, which carries its start-up, is not timed); "
        f"median of {res['repeats']} passes (lowest–highest).",
        "",
        "**Compared with the warm memmap ceiling**: copying every sample of the same file, in "
        "index order, out of a memory map of the page cache: "
        f"{res['ceiling'].fmt()} samples/s. *Share of ceiling* = loader samples/s ÷ ceiling "
        "samples/s, paired pass by pass.",
        "",
        table(["num_workers", "light samples/s", "light share of ceiling", "heavy samples/s",
               "heavy share of ceiling", "s to first batch (light)"], rows),
        "",
        f"**Heavy transform, 2 workers over 0: {res['heavy_speedup_2v0'].fmt(2)}x** "
        "(paired by pass). Light, 2 workers over 0: "
        f"{res['light_speedup_2v0'].fmt(2)}x.",
    ]
    return "\n".join(lines)


def plot(res: dict, path: Path) -> None:
    # lazy: matplotlib (~0.7 s) only to plot; use("Agg") at import would change others' backend
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # lazy: must come after matplotlib.use("Agg")

    fig, axes = plt.subplots(1, 2, figsize=(9, 3.4))
    for ax, kind in zip(axes, ("light", "heavy"), strict=True):
        med = [res[kind][k].median for k in WORKER_COUNTS]
        err = [[m - res[kind][k].low for m, k in zip(med, WORKER_COUNTS, strict=True)],
               [res[kind][k].high - m for m, k in zip(med, WORKER_COUNTS, strict=True)]]
        ax.errorbar(WORKER_COUNTS, med, yerr=err, fmt="o-", capsize=3)
        ax.set_xticks(WORKER_COUNTS)
        ax.set_xlabel("num_workers")
        ax.set_ylabel("samples/s (median, bars = range)")
        ax.set_ylim(bottom=0)
        ax.set_title(f"{kind}: " + ("as is" if kind == "light" else "CPU-bound transform"))
    axes[0].set_title(f"light: as is (warm memmap ceiling: {num(res['ceiling'].median)}/s, "
                      "off the scale)", fontsize=9)
    fig.suptitle("ReferenceHDF5Dataset through DataLoader")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m memcourse_apps.bench.loaders")
    parser.add_argument("h5_path")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    print(json.dumps(measure(args.h5_path, args.repeats)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
