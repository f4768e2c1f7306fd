"""The course's datasets: where they live, how big they are, and how to write them safely.

`images.h5` holds `images` (N, 3, H, W) uint8 and `labels` (N,) int64, the layout of the guide the
course follows. Files are written under a temporary name and renamed when complete, so an
interrupted or failed run never leaves a half-written dataset that looks finished.
"""

from __future__ import annotations

import errno
import os
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

import h5py
import numpy as np
from tqdm.auto import tqdm

from memcourse.errors import CourseError
from memcourse.images import CLASS_NAMES, iter_blocks
from memcourse.paths import repo_root

GENERATOR_VERSION = 1
DATASET_FILENAME = "images.h5"
SEED = 2024


@dataclass(frozen=True)
class DatasetSpec:
    """The parameters that fully determine a generated dataset."""

    name: str
    n: int
    height: int
    width: int
    seed: int = SEED

    @property
    def nbytes(self) -> int:
        """Bytes of image and label data (the file is a few KiB larger)."""
        return self.n * (3 * self.height * self.width + 8)


SIZES: dict[str, DatasetSpec] = {
    # For tests and for notebooks under the grader: generated in well under a second.
    "tiny": DatasetSpec("tiny", n=256, height=32, width=32),
    # The default for notebooks: loading it all is clearly visible, yet quick on 2 cores.
    "small": DatasetSpec("small", n=2000, height=160, width=160),
    # The guide's own dummy dataset, 10000 x 3 x 256 x 256 uint8 (1.97 GB).
    "seed": DatasetSpec("seed", n=10000, height=256, width=256),
}
DEFAULT_SIZE = "small"


class DatasetError(CourseError):
    """A dataset could not be written or found; the message says why and what to do."""


def data_dir() -> Path:
    """Return where datasets live: $MEMCOURSE_DATA, else the repository's data/ folder."""
    env = os.environ.get("MEMCOURSE_DATA")
    return Path(env).expanduser() if env else repo_root() / "data"


def default_size() -> str:
    """Return the size notebooks use: $MEMCOURSE_SIZE, `tiny` under nbgrader, else `small`."""
    if os.environ.get("MEMCOURSE_SIZE"):
        return os.environ["MEMCOURSE_SIZE"]
    return "tiny" if os.environ.get("NBGRADER_EXECUTION") else DEFAULT_SIZE


def spec_for(size: str) -> DatasetSpec:
    """Return the spec of a named size, or raise DatasetError listing the valid names."""
    try:
        return SIZES[size]
    except KeyError:
        valid = ", ".join(SIZES)
        raise DatasetError(f"Unknown dataset size {size!r}: choose one of {valid}.") from None


def _matches(path: Path, spec: DatasetSpec) -> bool:
    """True if `path` is a complete dataset written by this generator with these parameters."""
    try:
        with h5py.File(path, "r") as f:
            attrs = dict(f.attrs)
            return (
                attrs.get("generator_version") == GENERATOR_VERSION
                and attrs.get("complete") == 1
                and all(attrs.get(k) == v for k, v in asdict(spec).items())
                and f["images"].shape == (spec.n, 3, spec.height, spec.width)
                and f["labels"].shape == (spec.n,)
            )
    except (OSError, KeyError):
        return False


def _check_writable(out_dir: Path, needed: int) -> None:
    """Fail early, with a sentence, if out_dir cannot take a file of `needed` bytes."""
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise DatasetError(
            f"Cannot create the folder {out_dir}: {e.strerror}. Choose another folder with --out."
        ) from None
    if not out_dir.is_dir() or not os.access(out_dir, os.W_OK):
        raise DatasetError(f"Cannot write to {out_dir}. Choose another folder with --out.")
    free = shutil.disk_usage(out_dir).free
    if free < needed * 1.05:
        raise DatasetError(
            f"Not enough free disk space in {out_dir}: the dataset needs {needed / 2**20:.0f} MiB "
            f"and only {free / 2**20:.0f} MiB are free. Free some space or choose another folder "
            "with --out."
        )


def write_dataset(path: Path, spec: DatasetSpec, progress: bool = True) -> Path:
    """Write the dataset for `spec` to `path` atomically (temp file, then rename) and return it."""
    path = Path(path)
    _check_writable(path.parent, spec.nbytes)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.partial")
    try:
        with h5py.File(tmp, "w") as f:
            images = f.create_dataset(
                "images", shape=(spec.n, 3, spec.height, spec.width), dtype=np.uint8
            )
            labels = f.create_dataset("labels", shape=(spec.n,), dtype=np.int64)
            f.attrs.update(asdict(spec))
            f.attrs["generator_version"] = GENERATOR_VERSION
            f.attrs["class_names"] = list(CLASS_NAMES)
            with tqdm(total=spec.n, unit="img", desc=f"writing {spec.name} dataset",
                      disable=not progress) as bar:
                for start, block, block_labels in iter_blocks(
                    spec.n, spec.height, spec.width, spec.seed
                ):
                    images[start : start + len(block)] = block
                    labels[start : start + len(block)] = block_labels
                    bar.update(len(block))
            f.attrs["complete"] = 1
        os.replace(tmp, path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        if e.errno == errno.ENOSPC or "No space left" in str(e):
            raise DatasetError(
                f"The disk filled up while writing {path}; nothing was left behind. Free some "
                "space or choose another folder with --out."
            ) from None
        raise DatasetError(f"Could not write {path}: {e}") from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def ensure_dataset(size: str | None = None, out_dir: Path | str | None = None,
                   progress: bool = True) -> Path:
    """Return the path of the dataset of this size, writing it first if it is missing or stale.

    Idempotent: an existing complete file with the same parameters is reused as is.
    """
    spec = spec_for(size or default_size())
    out = Path(out_dir) if out_dir is not None else data_dir() / spec.name
    path = out / DATASET_FILENAME
    if path.exists() and _matches(path, spec):
        return path
    return write_dataset(path, spec, progress=progress)


def ensure_npy_folder(size: str | None = None, out_dir: Path | str | None = None,
                      progress: bool = True) -> Path:
    """Return a folder holding the dataset as one `NNNNNN.npy` file per image plus `labels.npy`.

    This is the "many small files" layout (like a folder of JPEGs, but undecoded). It is derived
    from `images.h5` and rebuilt only when that file changes.
    """
    h5_path = ensure_dataset(size, progress=progress)
    out = Path(out_dir) if out_dir is not None else h5_path.parent / "npy"
    stamp = out / ".source"
    source_id = f"{h5_path.stat().st_size}:{h5_path.stat().st_mtime_ns}"
    if stamp.exists() and stamp.read_text() == source_id:
        return out
    with h5py.File(h5_path, "r") as f:
        n = f["images"].shape[0]
        _check_writable(out, f["images"].nbytes // max(1, n) * n)
        for old in out.glob("*.npy"):
            old.unlink()
        for i in tqdm(range(n), unit="file", desc="writing .npy files", disable=not progress):
            np.save(out / f"{i:06d}.npy", f["images"][i])
        np.save(out / "labels.npy", f["labels"][:])
    stamp.write_text(source_id)
    return out
