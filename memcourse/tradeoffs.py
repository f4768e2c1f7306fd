"""Helpers for notebook 06 (choosing a strategy): a sample reader over HDF5 and an epoch timer.

They live in a module, not in the notebook, so DataLoader workers started with `spawn` or
`forkserver` can import them, and so the notebook's cells stay short.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import h5py
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm


class H5Samples(Dataset):
    """Reads `images[i]` and `labels[i]` from an HDF5 file, optionally through `transform`.

    The file is opened lazily, once per process, and the handle is dropped when the dataset is
    pickled, so the same object works in the notebook and in any kind of worker (notebook 05).
    """

    def __init__(self, h5_path: str | Path, transform: Callable[[np.ndarray], np.ndarray] | None
                 = None):
        self.h5_path = str(h5_path)
        self.transform = transform
        with h5py.File(self.h5_path, "r") as f:
            self.n = int(f["images"].shape[0])
        self._images = self._labels = None

    def __len__(self) -> int:
        return self.n

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_images"] = state["_labels"] = None  # never ship an open handle to a worker
        return state

    def __getitem__(self, idx: int) -> tuple[torch.Tensor, int]:
        if self._images is None:
            f = h5py.File(self.h5_path, "r")
            self._images, self._labels = f["images"], f["labels"]
        image = self._images[idx]
        if self.transform is not None:
            image = self.transform(image)
        return torch.from_numpy(np.ascontiguousarray(image)), int(self._labels[idx])


def epoch_seconds(dataset: Dataset, batch_size: int = 64, num_workers: int = 0, seed: int = 0,
                  desc: str = "epoch") -> float:
    """Wall-clock seconds to iterate once over `dataset` in shuffled batches, as training would."""
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=True, num_workers=num_workers,
                        generator=torch.Generator().manual_seed(seed))
    start = time.perf_counter()
    for _images, _labels in tqdm(loader, desc=desc, unit="batch", leave=False):
        pass
    return time.perf_counter() - start


def seconds_per_sample(fn: Callable[[int], object], n: int) -> float:
    """Average seconds of `fn(i)` over i = 0 .. n-1, after one untimed warm-up call."""
    fn(0)
    start = time.perf_counter()
    for i in range(n):
        fn(i)
    return (time.perf_counter() - start) / n
