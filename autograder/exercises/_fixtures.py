"""Fixture datasets for checks, written once and cached on disk.

Fixture labels are unique and unrelated to the index (a shuffled range, times 3, plus 1), so a
check can tell exactly which sample arrived and catch `labels[idx + 1]` or `label = idx` mistakes
that the course dataset's ten repeating classes would hide.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import h5py
import numpy as np

from memcourse.data import data_dir
from memcourse.images import iter_blocks

FIXTURE_VERSION = 1


def fixture_dir() -> Path:
    """Where fixtures are cached: $MEMCOURSE_FIXTURES, else data/fixtures/."""
    env = os.environ.get("MEMCOURSE_FIXTURES")
    path = Path(env) if env else data_dir() / "fixtures"
    path.mkdir(parents=True, exist_ok=True)
    return path


def fixture_labels(n: int, seed: int = 7) -> np.ndarray:
    """Unique int64 labels that are not the index."""
    return np.random.default_rng(seed).permutation(n).astype(np.int64) * 3 + 1


def _atomic(path: Path, write) -> Path:
    if path.exists():
        return path
    tmp = path.with_name(f".{path.name}.{os.getpid()}.partial")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            if tmp.is_dir():
                shutil.rmtree(tmp)
            else:
                tmp.unlink()
    return path


def images_h5(n: int, height: int, width: int, chunks: tuple | None = None,
              seed: int = 11) -> Path:
    """An HDF5 file with `images` (n,3,H,W) uint8 and unique `labels` (n,) int64."""
    tag = "contig" if chunks is None else "c" + "x".join(map(str, chunks))
    path = fixture_dir() / f"v{FIXTURE_VERSION}_images_{n}x{height}x{width}_{tag}_{seed}.h5"

    def write(tmp: Path) -> None:
        with h5py.File(tmp, "w") as f:
            images = f.create_dataset("images", (n, 3, height, width), np.uint8, chunks=chunks)
            for start, block, _ in iter_blocks(n, height, width, seed):
                images[start: start + len(block)] = block
            f.create_dataset("labels", data=fixture_labels(n, seed))

    return _atomic(path, write)


def npy_folder(n: int, height: int, width: int, seed: int = 13) -> Path:
    """A folder of `NNNNNN.npy` images (3,H,W) uint8 plus `labels.npy` with unique labels."""
    path = fixture_dir() / f"v{FIXTURE_VERSION}_npy_{n}x{height}x{width}_{seed}"

    def write(tmp: Path) -> None:
        tmp.mkdir()
        for start, block, _ in iter_blocks(n, height, width, seed):
            for i, image in enumerate(block, start):
                np.save(tmp / f"{i:06d}.npy", image)
        np.save(tmp / "labels.npy", fixture_labels(n, seed))

    return _atomic(path, write)
