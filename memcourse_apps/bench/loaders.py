"""Section 2: the course's reference `HDF5Dataset` through a `DataLoader`, 0 to 4 workers, and
notebook 05's fast path (one h5py request per batch, uint8) against the warm memmap ceiling.

Measured in a fresh process (`python -m memcourse_apps.bench.loaders H5 --repeats R --scratch
DIR`) so that nothing the benchmark holds makes forking workers dearer. The file is read once
first, so every figure here is warm. Two workloads for the reference dataset: as the course
writes it (light: read, convert to float), and the same with a CPU-bound transform (a random
rotation in NumPy, the stand-in for decoding and augmenting an image that notebook 02 uses).
The batch-request loader reads a copy of the file stored one row per sample, `(N, 3*H*W)`,
written into the scratch folder, and, for comparison, the file itself. The ceiling is copying
random samples, one by one, out of a memory map of the same file, every page already mapped.

As in notebook 02, every process uses one PyTorch thread, so 0 workers is not slowed by
threads contending for two busy cores, and the comparison is process against process.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
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
BATCH_REQUEST = 64  # notebook 05's fast path: indices per __getitem__
BATCH_WORKER_COUNTS = (0, 2)
BATCH_SAMPLES_MIN = 16384  # a batch-request pass is fast: at least this many samples


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


class BatchRequestDataset:
    """Notebook 05's fast path: `__getitem__(indices)` reads the whole batch in one sorted h5py
    request, straight into a new uint8 array, and returns it in file order, `(B, *shape)`,
    with int64 labels. Opens the file lazily, once per process, and pickles without it."""

    def __init__(self, h5_path):
        self.h5_path = str(h5_path)
        with h5py.File(self.h5_path, "r") as f:
            self.length = len(f["labels"])
            images = f["images"]
            self.sample_shape = tuple(images.attrs.get("sample_shape", images.shape[1:]))
        self._file = self._images = self._labels = None

    def __len__(self):
        return self.length

    def __getstate__(self):
        return {**self.__dict__, "_file": None, "_images": None, "_labels": None}

    def __getitem__(self, indices):
        import torch  # lazy: ~2 s, only in the measuring child

        if self._file is None:
            self._file = h5py.File(self.h5_path, "r")
            self._images, self._labels = self._file["images"], self._file["labels"][:]
        rows = np.unique(indices)  # sorted, no repeats: one request h5py accepts
        images = np.empty((len(rows), *self._images.shape[1:]), dtype=np.uint8)
        self._images.read_direct(images, np.s_[rows])
        images = torch.from_numpy(images).view(len(rows), *self.sample_shape)
        return images, torch.from_numpy(self._labels[rows])


class MappedBatchDataset(BatchRequestDataset):
    """`BatchRequestDataset` reading through a NumPy map of the contiguous, uncompressed
    `images` (`get_offset`, notebook 04), so a batch is one NumPy gather and HDF5 is not called.
    The map is opened lazily, once per process (a memmap kept on a dataset pickles whole)."""

    def __getitem__(self, indices):
        import torch  # lazy: ~2 s, only in the measuring child

        if self._images is None:
            self._images = fm.map_contiguous(self.h5_path, "images")
            with h5py.File(self.h5_path, "r") as f:
                self._labels = f["labels"][:]
        rows = np.unique(indices)
        images = torch.from_numpy(self._images[rows]).view(len(rows), *self.sample_shape)
        return images, torch.from_numpy(self._labels[rows])


def write_one_row_per_sample(h5_path: str, out_path: Path) -> Path:
    """Copy `images` (N, 3, H, W) to a contiguous (N, 3*H*W) dataset, the shape kept in an
    attribute, and `labels`; 256 images at a time."""
    with h5py.File(h5_path, "r") as src, h5py.File(out_path, "w") as dst:
        images = src["images"]
        n, shape = len(images), images.shape[1:]
        rows = dst.create_dataset("images", (n, int(np.prod(shape))), images.dtype)
        rows.attrs["sample_shape"] = shape
        for start in range(0, n, 256):
            block = images[start:start + 256]
            rows[start:start + len(block)] = block.reshape(len(block), -1)
        dst["labels"] = src["labels"][:]
    return out_path


# ----------------------------------------------------------------------------- in the fresh process


def _loader_rate(ds, num_workers: int, samples: int,
                 batch_request: bool = False) -> tuple[float, float]:
    """(seconds to the first batch, samples/s once running) of one shuffled pass; with
    `batch_request`, `__getitem__` gets BATCH_REQUEST indices at a time (no collating)."""
    # lazy: ~2 s, only in the measuring child; the bench parent imports every section
    from torch.utils.data import BatchSampler, DataLoader, RandomSampler

    sampler = RandomSampler(ds, num_samples=samples)
    kwargs = {"multiprocessing_context": "fork"} if num_workers else {}
    if batch_request:
        loader = DataLoader(ds, sampler=BatchSampler(sampler, BATCH_REQUEST, drop_last=False),
                            batch_size=None, num_workers=num_workers, **kwargs)
    else:
        loader = DataLoader(ds, batch_size=BATCH_SIZE, sampler=sampler,
                            num_workers=num_workers, **kwargs)
    start = time.perf_counter()
    it = iter(loader)
    # Each worker's first batch carries its start-up; time the steady state after them.
    skip = max(1, num_workers)
    counted, t0 = 0, None
    for k, (_images, labels) in enumerate(it):
        if k == 0:
            first = time.perf_counter() - start
        if k == skip - 1:
            t0 = time.perf_counter()
        elif k >= skip:
            counted += len(labels)
    elapsed = time.perf_counter() - t0 if t0 is not None else float("nan")
    return first, counted / elapsed if counted else float("nan")


def _open_ceiling(h5_path: str) -> np.memmap:
    """A memmap of the file's images with every page mapped once (so the ceiling is warm)."""
    with h5py.File(h5_path, "r") as f:
        dset = f["images"]
        offset, shape, dtype = dset.id.get_offset(), dset.shape, dset.dtype
    if offset is None:
        raise ValueError(f"{h5_path}: images are chunked; the memmap ceiling needs contiguous")
    mm = np.memmap(h5_path, mode="r", dtype=dtype, shape=shape, offset=offset)
    for i in range(len(mm)):
        mm[i].sum()
    return mm


def _memmap_ceiling(mm: np.memmap, rng: np.random.Generator, min_s: float = 0.3) -> float:
    """Samples/s copying random samples, one by one, out of the memmap (warm)."""
    done, start = 0, time.perf_counter()
    while time.perf_counter() - start < min_s:
        for i in rng.permutation(len(mm)).tolist():
            np.array(mm[i])
        done += len(mm)
    return done / (time.perf_counter() - start)


def measure(h5_path: str, repeats: int, scratch: str | None = None) -> dict:
    """All loader figures, interleaved over configurations so each sees the same load."""
    import torch  # lazy: ~2 s, only in the measuring child; the bench parent imports every section

    torch.set_num_threads(1)
    folder = Path(tempfile.mkdtemp(prefix="loaders-", dir=scratch))
    try:
        rows_path = str(write_one_row_per_sample(h5_path, folder / "one_row_per_sample.h5"))
        fm.warm(h5_path)
        fm.warm(rows_path)
        light = ReferenceHDF5Dataset(h5_path)
        heavy = ReferenceHDF5Dataset(h5_path, transform=random_rotation)
        batched, batched_nd = BatchRequestDataset(rows_path), BatchRequestDataset(h5_path)
        mapped = MappedBatchDataset(rows_path)
        n = len(light)
        light_samples = max(n, LIGHT_SAMPLES_MIN)
        heavy_samples = HEAVY_SAMPLES
        batch_samples = max(n, BATCH_SAMPLES_MIN)
        out: dict = {"n": n, "light_samples": light_samples, "heavy_samples": heavy_samples,
                     "batch_samples": batch_samples, "ceiling": [],
                     "light": {k: [] for k in WORKER_COUNTS},
                     "heavy": {k: [] for k in WORKER_COUNTS},
                     "startup": {k: [] for k in WORKER_COUNTS},
                     "batch": {k: [] for k in BATCH_WORKER_COUNTS}, "batch_nd": [],
                     "batch_mapped": []}
        mm, rng = _open_ceiling(h5_path), np.random.default_rng(0)
        for _ in range(repeats):
            out["ceiling"].append(_memmap_ceiling(mm, rng))
            for k in WORKER_COUNTS:
                first, rate = _loader_rate(light, k, light_samples)
                out["light"][k].append(rate)
                out["startup"][k].append(first)
                out["heavy"][k].append(_loader_rate(heavy, k, heavy_samples)[1])
            for k in BATCH_WORKER_COUNTS:
                out["batch"][k].append(_loader_rate(batched, k, batch_samples, True)[1])
            out["batch_nd"].append(_loader_rate(batched_nd, 0, batch_samples, True)[1])
            out["batch_mapped"].append(_loader_rate(mapped, 0, batch_samples, True)[1])
        del mm
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return out


# ----------------------------------------------------------------------------- the section


def run(h5_path: Path, repeats: int, scratch: Path | None = None) -> dict:
    """Run `measure` in a fresh process (its file copy in `scratch`) and turn its runs into
    Stats."""
    args = [str(h5_path), "--repeats", str(repeats)]
    if scratch is not None:
        Path(scratch).mkdir(parents=True, exist_ok=True)
        args += ["--scratch", str(scratch)]
    raw = run_measurement("memcourse_apps.bench.loaders", args, "the DataLoader benchmark", 1800)
    res = {"n": raw["n"], "light_samples": raw["light_samples"],
           "heavy_samples": raw["heavy_samples"], "batch_samples": raw["batch_samples"],
           "repeats": repeats, "ceiling": Stat(raw["ceiling"])}
    for kind in ("light", "heavy", "startup", "batch"):
        res[kind] = {int(k): Stat(v) for k, v in raw[kind].items()}
    res["batch_nd"] = Stat(raw["batch_nd"])
    res["batch_mapped"] = Stat(raw["batch_mapped"])
    res["batch_mapped_share"] = ratio(res["batch_mapped"], res["ceiling"])
    res["light_share"] = {k: ratio(s, res["ceiling"]) for k, s in res["light"].items()}
    res["heavy_share"] = {k: ratio(s, res["ceiling"]) for k, s in res["heavy"].items()}
    res["batch_share"] = {k: ratio(s, res["ceiling"]) for k, s in res["batch"].items()}
    res["batch_nd_share"] = ratio(res["batch_nd"], res["ceiling"])
    res["heavy_speedup_2v0"] = ratio(res["heavy"][2], res["heavy"][0])
    res["light_speedup_2v0"] = ratio(res["light"][2], res["light"][0])
    best = max(BATCH_WORKER_COUNTS, key=lambda k: res["batch_share"][k].median)
    res["batch_best_workers"] = best
    res["batch_over_light"] = ratio(res["batch"][best],
                                    res["light"][max(WORKER_COUNTS,
                                                     key=lambda k: res["light"][k].median)])
    return res


def markdown(res: dict) -> str:
    rows = []
    for k in WORKER_COUNTS:
        rows.append((k, res["light"][k].fmt(), res["light_share"][k].fmt(2),
                     res["heavy"][k].fmt(), res["heavy_share"][k].fmt(2),
                     res["startup"][k].fmt(2)))
    batch_rows = [("batch request, one row per sample", k, res["batch"][k].fmt(),
                   res["batch_share"][k].fmt(2)) for k in BATCH_WORKER_COUNTS]
    batch_rows.append(("batch request, (N, 3, H, W) file", 0, res["batch_nd"].fmt(),
                       res["batch_nd_share"].fmt(2)))
    batch_rows.append(("batch request, one row per sample, mapped with `get_offset`", 0,
                       res["batch_mapped"].fmt(), res["batch_mapped_share"].fmt(2)))
    best = res["batch_best_workers"]
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
        "**Compared with the warm memmap ceiling**: copying random samples of the same file, "
        "one by one (`np.array(mm[i])`), out of a memory map whose pages are all mapped: "
        f"{res['ceiling'].fmt()} samples/s. *Share of ceiling* = loader samples/s ÷ ceiling "
        "samples/s, paired pass by pass.",
        "",
        table(["num_workers", "light samples/s", "light share of ceiling", "heavy samples/s",
               "heavy share of ceiling", "s to first batch (light)"], rows),
        "",
        f"**Heavy transform, 2 workers over 0: {res['heavy_speedup_2v0'].fmt(2)}x** "
        "(paired by pass). Light, 2 workers over 0: "
        f"{res['light_speedup_2v0'].fmt(2)}x.",
        "",
        "### The fast path: one request per batch, uint8",
        "",
        "Notebook 05's batch-request loader: `sampler=BatchSampler(RandomSampler(ds), "
        f"{BATCH_REQUEST})` with `batch_size=None`, so `__getitem__` receives {BATCH_REQUEST} "
        "indices and reads them in one sorted h5py request (`read_direct` into a new uint8 "
        "array, rows in file order), returning uint8 `(B, 3, H, W)` images and int64 labels; "
        "the consumer converts to float. It reads a contiguous copy of the file stored one row "
        "per sample, `(N, 3·H·W)`, and, for comparison, the file itself, `(N, 3, H, W)`. "
        f"{res['batch_samples']} samples per pass, same ceiling, same pairing.",
        "",
        table(["loader", "num_workers", "samples/s", "share of ceiling"], batch_rows),
        "",
        f"**Best batch-request loader: {res['batch_share'][best].fmt(2)} of the warm memmap "
        f"ceiling** (num_workers={best}, one row per sample), "
        f"{res['batch_over_light'].fmt(2)}x the best reference loader (light). Mapped with "
        "`get_offset` (notebook 04), so that a batch is one NumPy gather and HDF5 is not "
        f"called: **{res['batch_mapped_share'].fmt(2)} of the ceiling**, the course's fastest "
        "loader (the ceiling copies one sample per call; a gather of a sorted batch pays that "
        "cost once per batch, so it can pass 1).",
    ]
    return "\n".join(lines)


def plot(res: dict, path: Path) -> None:
    # lazy: matplotlib (~0.7 s) only to plot; use("Agg") at import would change others' backend
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # lazy: must come after matplotlib.use("Agg")

    def series(ax, stats: dict, label: str) -> None:
        counts = sorted(stats)
        med = [stats[k].median for k in counts]
        err = [[m - stats[k].low for m, k in zip(med, counts, strict=True)],
               [stats[k].high - m for m, k in zip(med, counts, strict=True)]]
        ax.errorbar(counts, med, yerr=err, fmt="o-", capsize=3, label=label)

    fig, (light, heavy) = plt.subplots(1, 2, figsize=(10, 3.8))
    series(light, res["light"], f"reference HDF5Dataset, float32, batch {BATCH_SIZE}")
    series(light, res["batch"], f"batch request, uint8, {BATCH_REQUEST} a request")
    light.axhline(res["ceiling"].median, color="black", ls="--", lw=1,
                  label=f"warm memmap ceiling ({num(res['ceiling'].median)}/s)")
    light.axhline(res["ceiling"].median / 2, color="black", ls=":", lw=1,
                  label="half the ceiling")
    light.set_yscale("log")
    light.legend(fontsize=7, loc="center right")
    light.set_title("light: as is, and notebook 05's fast path (log scale)", fontsize=9)
    series(heavy, res["heavy"], f"reference HDF5Dataset, float32, batch {BATCH_SIZE}")
    heavy.set_ylim(bottom=0)
    heavy.set_title("heavy: CPU-bound transform")
    for ax in (light, heavy):
        ax.set_xticks(WORKER_COUNTS)
        ax.set_xlabel("num_workers")
        ax.set_ylabel("samples/s (median, bars = range)")
    fig.suptitle("HDF5 through DataLoader: the reference dataset and batch requests")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m memcourse_apps.bench.loaders")
    parser.add_argument("h5_path")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--scratch", default=None,
                        help="folder for the one-row-per-sample copy (default: the temp folder)")
    args = parser.parse_args(argv)
    print(json.dumps(measure(args.h5_path, args.repeats, args.scratch)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
