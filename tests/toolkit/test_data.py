"""Does `memcourse data` write the right datasets, idempotently, and fail cleanly on bad input?"""

from __future__ import annotations

import errno
import gzip
import os
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from memcourse import data
from memcourse.images import NUM_CLASSES


def test_tiny_dataset_has_the_guides_layout(tiny_h5):
    """Does images.h5 hold images (N,3,H,W) uint8 and labels (N,) int64, balanced over classes?"""
    spec = data.SIZES["tiny"]
    with h5py.File(tiny_h5, "r") as f:
        assert f["images"].shape == (spec.n, 3, spec.height, spec.width)
        assert f["images"].dtype == np.uint8
        assert f["labels"].shape == (spec.n,)
        assert f["labels"].dtype == np.int64
        counts = np.bincount(f["labels"][:], minlength=NUM_CLASSES)
    assert counts.max() - counts.min() <= 1


def test_images_are_structured_not_random(tmp_path):
    """Do the images compress and does their class show in the pixels (unlike random bytes)?"""
    spec = data.DatasetSpec("check", n=200, height=96, width=96)
    path = data.write_dataset(tmp_path / "images.h5", spec, progress=False)
    with h5py.File(path, "r") as f:
        images, labels = f["images"][:], f["labels"][:]
    raw = images.tobytes()
    assert len(gzip.compress(raw)) < 0.85 * len(raw)
    # Stripes and checkerboards have far more edges than disks: the class changes the picture.
    edges = np.abs(np.diff(images.astype(np.int16), axis=-1)).mean(axis=(1, 2, 3))
    by_class = np.array([edges[labels == c].mean() for c in range(NUM_CLASSES)])
    assert by_class.max() > 2 * by_class.min()


def test_same_seed_gives_same_bytes(tmp_path):
    """Is generation deterministic: two writes of the same size hold identical data?"""
    a = data.ensure_dataset("tiny", out_dir=tmp_path / "a", progress=False)
    b = data.ensure_dataset("tiny", out_dir=tmp_path / "b", progress=False)
    with h5py.File(a, "r") as fa, h5py.File(b, "r") as fb:
        assert np.array_equal(fa["images"][:], fb["images"][:])
        assert np.array_equal(fa["labels"][:], fb["labels"][:])


def test_existing_dataset_is_reused(tmp_path):
    """Is a second run a no-op when a complete file with the same parameters exists?"""
    path = data.ensure_dataset("tiny", out_dir=tmp_path, progress=False)
    before = path.stat().st_mtime_ns
    assert data.ensure_dataset("tiny", out_dir=tmp_path, progress=False) == path
    assert path.stat().st_mtime_ns == before


def test_stale_or_broken_dataset_is_rewritten(tmp_path):
    """Is a file with other parameters, or one that is not HDF5, replaced by a correct one?"""
    path = tmp_path / data.DATASET_FILENAME
    path.write_bytes(b"not an hdf5 file")
    data.ensure_dataset("tiny", out_dir=tmp_path, progress=False)
    with h5py.File(path, "r") as f:
        assert f.attrs["complete"] == 1
        assert f["images"].shape[0] == data.SIZES["tiny"].n


def test_small_is_the_notebook_default_and_sized_as_promised(no_nbgrader_env, monkeypatch):
    """Is `small` the default (tiny under nbgrader), 100-200 MB, and `seed` the guide's 1.97 GB?"""
    assert data.default_size() == "small"
    monkeypatch.setenv("NBGRADER_EXECUTION", "autograde")
    assert data.default_size() == "tiny"
    assert 100e6 <= data.SIZES["small"].nbytes <= 200e6
    seed = data.SIZES["seed"]
    assert (seed.n, seed.height, seed.width) == (10000, 256, 256)


def test_unknown_size_is_a_clear_error():
    """Does an unknown size name list the valid ones?"""
    with pytest.raises(data.DatasetError, match="choose one of tiny, small, seed"):
        data.ensure_dataset("huge")


def test_unwritable_folder_is_a_clear_error(tmp_path):
    """Does a folder that cannot be created give a sentence, not a traceback?"""
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    with pytest.raises(data.DatasetError, match="Cannot create the folder"):
        data.ensure_dataset("tiny", out_dir=blocker / "sub", progress=False)


def test_not_enough_space_is_refused_before_writing(tmp_path, monkeypatch):
    """Is a disk without room for the dataset refused up front, leaving nothing behind?"""
    monkeypatch.setattr(data.shutil, "disk_usage", lambda path: _Usage(free=1000))
    with pytest.raises(data.DatasetError, match="Not enough free disk space"):
        data.ensure_dataset("tiny", out_dir=tmp_path, progress=False)
    assert list(tmp_path.iterdir()) == []


class _Usage:
    def __init__(self, free: int):
        self.free = free


def test_disk_full_while_writing_leaves_no_partial_file(tmp_path, monkeypatch):
    """If the disk fills mid-write, is the half-written file removed and the error explained?"""
    real_blocks = data.iter_blocks

    def blocks_then_full_disk(*args, **kwargs):
        for i, block in enumerate(real_blocks(*args, block_bytes=4096, **kwargs)):
            if i == 3:
                raise OSError(errno.ENOSPC, "No space left on device")
            yield block

    monkeypatch.setattr(data, "iter_blocks", blocks_then_full_disk)
    with pytest.raises(data.DatasetError, match="disk filled up"):
        data.ensure_dataset("tiny", out_dir=tmp_path, progress=False)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.skipif(os.geteuid() != 0 or not Path("/bin/mount").exists(),
                    reason="needs root to mount a tiny tmpfs")
def test_really_full_disk_leaves_no_partial_file(tmp_path, monkeypatch):
    """On a real 2 MiB filesystem, does writing `small` fail cleanly with nothing left behind?"""
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mnt)]).returncode:
        pytest.skip("mounting a tmpfs is not allowed here")
    try:
        # Bypass the up-front space check so the write itself runs out of room.
        monkeypatch.setattr(data, "_check_writable", lambda folder, needed: None)
        spec = data.DatasetSpec("tiny", n=512, height=64, width=64)
        with pytest.raises(data.DatasetError, match="disk filled up"):
            data.write_dataset(mnt / "images.h5", spec, progress=False)
        assert list(mnt.iterdir()) == []
    finally:
        subprocess.run(["umount", str(mnt)])


def test_cli_reports_errors_in_one_sentence(tmp_path):
    """Does `memcourse data` print a one-line error and exit 2 instead of a traceback?"""
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    proc = subprocess.run([sys.executable, "-m", "memcourse_apps", "data", "--size", "tiny",
                           "--out", str(blocker / "x")], capture_output=True, text=True)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert proc.stderr.startswith("memcourse: Cannot create the folder")


def test_cli_writes_the_dataset(tmp_path):
    """Does `memcourse data --size tiny --out DIR` write DIR/images.h5?"""
    proc = subprocess.run([sys.executable, "-m", "memcourse_apps", "data", "--size", "tiny",
                           "--out", str(tmp_path)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "images.h5").is_file()


def test_npy_folder_matches_the_hdf5_file(tmp_path, monkeypatch):
    """Does the per-sample .npy folder hold the same images and labels as images.h5?"""
    monkeypatch.setenv("MEMCOURSE_DATA", str(tmp_path))
    folder = data.ensure_npy_folder("tiny", progress=False)
    h5 = data.ensure_dataset("tiny", progress=False)
    with h5py.File(h5, "r") as f:
        assert np.array_equal(np.load(folder / "000005.npy"), f["images"][5])
        assert np.array_equal(np.load(folder / "labels.npy"), f["labels"][:])
    assert len(list(folder.glob("[0-9]*.npy"))) == data.SIZES["tiny"].n
