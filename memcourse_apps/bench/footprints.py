"""Section 3: memory. Eager against lazy datasets at two sizes, and bytes in flight.

Peak memory is `memcourse.memory.measure_peak`: a forked child builds the dataset, reads every
sample once, and reports how far its resident memory rose (VmHWM minus the start). The eager
dataset loads all images in `__init__` (notebook 03's "eager way", over HDF5); the lazy one is the
course's reference `HDF5Dataset`. Bytes in flight compare the formula notebook 01 teaches,
`(num_workers x prefetch_factor + 1) x batch bytes`, with the shared memory a real DataLoader's
workers hold while the consumer stalls on its first batch (`footprint.held_batch_bytes`).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import h5py
import numpy as np

from autograder.exercises.bytes_in_flight import reference
from autograder.exercises.hdf5_dataset import ReferenceHDF5Dataset
from memcourse import formats as fm
from memcourse.memory import measure_peak
from memcourse_apps.bench.common import MIB, Stat, num, ratio, run_measurement, table

IN_FLIGHT = [(1, 2), (2, 2), (2, 4), (4, 2)]  # (num_workers, prefetch_factor)
BATCH_SIZE = 32


class EagerHDF5Dataset:
    """Loads every image and label in `__init__`: as big as the data (the anti-pattern)."""

    def __init__(self, h5_path, transform=None):
        with h5py.File(h5_path, "r") as f:
            self.images, self.labels = f["images"][:], f["labels"][:]
        self.transform = transform

    def __len__(self):
        return len(self.images)

    def __getitem__(self, idx):
        # lazy: ~2 s, only in the measuring child; the bench parent imports every section
        import torch

        image = torch.from_numpy(self.images[idx]).float() / 255
        if self.transform is not None:
            image = self.transform(image)
        return image, int(self.labels[idx])


def _build_and_read_all(cls, path: str) -> int:
    ds = cls(path)
    for i in range(len(ds)):
        ds[i]
    return len(ds)


def _build_and_read_first(cls, path: str) -> int:
    ds = cls(path)
    ds[0]
    return len(ds)


def measure(h5_path: str, scratch: str, repeats: int) -> dict:
    """In a fresh process: the raw runs of every memory figure (MiB, bytes)."""
    import torch  # lazy: ~2 s, only in the measuring child; the bench parent imports every section

    # lazy: memcourse.footprint imports torch (~2 s), like the line above; only this child does
    from memcourse.footprint import H5Images, held_batch_bytes

    # One thread: a forked child that runs a torch operation after its parent ran one on
    # several threads hangs forever in OpenMP (GNU libgomp is not fork-safe).
    torch.set_num_threads(1)
    with h5py.File(h5_path, "r") as f:
        n = len(f["labels"])
        half = max(2, n // 2)
        half_path = str(Path(scratch) / "half.h5")
        fm.write_h5(half_path, f["images"][:half], f["labels"][:half])
    sizes = {half: half_path, n: str(h5_path)}
    for p in sizes.values():
        fm.warm(p)
    # Import and touch everything once in this process, so no child pays first-use costs.
    _build_and_read_all(ReferenceHDF5Dataset, half_path)
    kinds = {"eager (loads all in __init__)": EagerHDF5Dataset,
             "lazy (reference HDF5Dataset)": ReferenceHDF5Dataset}
    floor_kind = "lazy, first sample only (the floor)"
    peaks: dict = {k: {s: [] for s in sizes} for k in (*kinds, floor_kind)}
    for _ in range(repeats):
        for kind, cls in kinds.items():
            for size, path in sizes.items():
                peaks[kind][size].append(
                    measure_peak(_build_and_read_all, cls, path).growth_mib)
        for size, path in sizes.items():
            peaks[floor_kind][size].append(
                measure_peak(_build_and_read_first, ReferenceHDF5Dataset, path).growth_mib)
    sample_shape = H5Images(h5_path).sample_shape
    ds = H5Images(h5_path, as_float=True)
    flight = []
    for nw, pf in IN_FLIGHT:
        measured = [held_batch_bytes(ds, BATCH_SIZE, nw, pf)["shm_bytes"]
                    for _ in range(min(3, repeats))]
        flight.append({"num_workers": nw, "prefetch_factor": pf, "measured": measured,
                       "predicted": reference(BATCH_SIZE, sample_shape, "float32", nw, pf)})
    return {"sizes": list(sizes), "kinds": list(kinds), "floor_kind": floor_kind,
            "peaks": {k: {str(s): v for s, v in d.items()} for k, d in peaks.items()},
            "data_mib": {str(s): s * float(np.prod(sample_shape)) / MIB for s in sizes},
            "flight": flight, "sample_shape": list(sample_shape)}


def run(h5_path: Path, scratch: Path, repeats: int) -> dict:
    """Run `measure` in a fresh process; return its runs as Stats, with the ratios."""
    raw = run_measurement("memcourse_apps.bench.footprints",
                          [str(h5_path), str(scratch), "--repeats", str(repeats)],
                          "the memory benchmark", 1800)
    half, n = raw["sizes"]
    peaks = {k: {int(s): Stat(v) for s, v in d.items()} for k, d in raw["peaks"].items()}
    flight = [{**f, "measured": Stat(f["measured"]),
               "ratio": Stat([m / f["predicted"] for m in f["measured"]])}
              for f in raw["flight"]]
    eager, lazy = raw["kinds"]
    return {"sizes": [half, n], "data_mib": {int(s): v for s, v in raw["data_mib"].items()},
            "peaks": peaks, "kinds": raw["kinds"], "floor_kind": raw["floor_kind"],
            "growth": {k: ratio(peaks[k][n], peaks[k][half]) for k in raw["kinds"]},
            "lazy_over_eager": ratio(peaks[lazy][n], peaks[eager][n]),
            "flight": flight, "repeats": repeats, "flight_repeats": min(3, repeats),
            "sample_shape": tuple(raw["sample_shape"])}


def markdown(res: dict) -> str:
    small, big = res["sizes"]
    eager, lazy = res["kinds"]
    rows = [(k, res["peaks"][k][small].fmt(), res["peaks"][k][big].fmt(),
             res["growth"][k].fmt(2)) for k in res["kinds"]]
    floor = res["peaks"][res["floor_kind"]]
    rows.append((res["floor_kind"], floor[small].fmt(), floor[big].fmt(), "–"))
    flight = [(f["num_workers"], f["prefetch_factor"], num(f["predicted"] / MIB),
               Stat([v / MIB for v in f["measured"].values]).fmt(), f["ratio"].fmt(3))
              for f in res["flight"]]
    shape = "×".join(map(str, res["sample_shape"]))
    lines = [
        "## 3. Memory",
        "",
        "Peak memory growth (MiB) of a forked child that builds the dataset and reads every "
        f"sample once (`memory.measure_peak`), at {small} and {big} images "
        f"({num(res['data_mib'][small])} and {num(res['data_mib'][big])} MiB of uint8 images). "
        f"Median of {res['repeats']} runs (lowest–highest). The last row is the floor every "
        "row includes: building the lazy dataset and reading one sample, which maps library "
        "code the forked child had not touched yet.",
        "",
        "**Compared with**: the same dataset at half the size (*growth with size*, should be "
        "about 2 for eager and about 1, flat, for lazy), and lazy with eager at the larger size.",
        "",
        table(["dataset", f"{small} images: MiB", f"{big} images: MiB",
               f"ratio {big} / {small}"], rows),
        "",
        f"**Lazy ÷ eager at {big} images: {res['lazy_over_eager'].fmt(2)}** "
        "(paired by run).",
        "",
        "**Bytes in flight.** Predicted by notebook 01's formula, (num_workers × "
        "prefetch_factor + 1) × batch bytes, against the shared memory (/dev/shm objects) "
        "the loader's process tree holds once the consumer has stalled on its first batch "
        f"(`footprint.held_batch_bytes`). Batches of {BATCH_SIZE} float32 images of {shape}; "
        f"median of {res['flight_repeats']} runs.",
        "",
        table(["num_workers", "prefetch_factor", "predicted MiB", "measured MiB",
               "measured ÷ predicted"], flight),
    ]
    return "\n".join(lines)


def plot(res: dict, path: Path) -> None:
    # lazy: matplotlib (~0.7 s) only to plot; use("Agg") at import would change others' backend
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # lazy: must come after matplotlib.use("Agg")

    fig, (a1, a2) = plt.subplots(1, 2, figsize=(9.5, 3.4))
    for kind, marker in zip(res["kinds"], "os", strict=True):
        med = [res["peaks"][kind][s].median for s in res["sizes"]]
        err = [[m - res["peaks"][kind][s].low for m, s in zip(med, res["sizes"], strict=True)],
               [res["peaks"][kind][s].high - m for m, s in zip(med, res["sizes"], strict=True)]]
        a1.errorbar(res["sizes"], med, yerr=err, fmt=marker + "-", capsize=3, label=kind)
    a1.set_xlabel("images in the dataset")
    a1.set_ylabel("peak memory growth (MiB)")
    a1.set_title("Eager grows with the data; lazy stays flat")
    a1.legend(fontsize=8)
    labels = [f"{f['num_workers']}w × pf {f['prefetch_factor']}" for f in res["flight"]]
    x = np.arange(len(labels))
    a2.bar(x - 0.2, [f["predicted"] / MIB for f in res["flight"]], 0.4, label="predicted")
    a2.bar(x + 0.2, [f["measured"].median / MIB for f in res["flight"]], 0.4, label="measured")
    a2.set_xticks(x, labels)
    a2.set_ylabel("MiB of batches in flight")
    a2.set_title("Bytes in flight: formula vs /dev/shm")
    a2.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    """`python -m memcourse_apps.bench.footprints H5 SCRATCH --repeats R`: the measuring process."""
    parser = argparse.ArgumentParser(prog="python -m memcourse_apps.bench.footprints")
    parser.add_argument("h5_path")
    parser.add_argument("scratch")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    print(json.dumps(measure(args.h5_path, args.scratch, args.repeats)))
    return 0


if __name__ == "__main__":
    import sys

    sys.exit(main())
