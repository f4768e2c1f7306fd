"""Do the write_for_random_access checks fail wrong HDF5 layouts and pass other correct ones?"""

from __future__ import annotations

import pytest

from autograder.exercises.write_for_random_access import EXERCISE
from tests.exercises.catalogue import aimed, define, describe, failing, verdicts

pytestmark = pytest.mark.slow

HEADER = """
import h5py, numpy as np
"""

REFERENCE = HEADER + """
def write_for_random_access(images, labels, path):
    with h5py.File(path, "w") as f:
        f.create_dataset("images", data=images, chunks=(1, *images.shape[1:]))
        f.create_dataset("labels", data=labels)
"""


def _variant(old: str, new: str) -> str:
    assert old in REFERENCE, old
    return REFERENCE.replace(old, new)


# Each wrong implementation has one defect, and the checks expected to catch it.
WRONG = {
    "auto_chunks": (_variant("chunks=(1, *images.shape[1:])", "chunks=True"),
                    {"write_for_random_access_chunks", "write_for_random_access_read_time"}),
    "compression_without_chunks": (_variant("chunks=(1, *images.shape[1:])",
                                            'compression="gzip"'),
                                   {"write_for_random_access_chunks",
                                    "write_for_random_access_read_time"}),
    "big_gzip_chunks": (_variant("chunks=(1, *images.shape[1:])",
                                 'chunks=(64, *images.shape[1:]), compression="gzip"'),
                        {"write_for_random_access_chunks", "write_for_random_access_read_time"}),
    "one_channel_per_chunk": (_variant("chunks=(1, *images.shape[1:])",
                                       "chunks=(1, 1, *images.shape[2:])"),
                              {"write_for_random_access_chunks"}),
    "hwc_transposed": (_variant('data=images, chunks=(1, *images.shape[1:])',
                                'data=images.transpose(0, 2, 3, 1), '
                                'chunks=(1, *images.transpose(0, 2, 3, 1).shape[1:])'),
                       {"write_for_random_access_values"}),
    "float32_images": (_variant("data=images,", "data=images.astype(np.float32) / 255,"),
                       {"write_for_random_access_values"}),
    "labels_missing": (_variant('        f.create_dataset("labels", data=labels)\n', ""),
                       {"write_for_random_access_values"}),
    "hard_coded_shape": (_variant("chunks=(1, *images.shape[1:])", "chunks=(1, 3, 40, 40)"),
                         {"write_for_random_access_other_shape"}),
    "file_left_open": (HEADER + """
def write_for_random_access(images, labels, path):
    global _open_file
    _open_file = h5py.File(path, "w")
    _open_file.create_dataset("images", data=images, chunks=(1, *images.shape[1:]))
    _open_file.create_dataset("labels", data=labels)
""", {"write_for_random_access_values"}),
}

CORRECT = {
    "reference": REFERENCE,
    "contiguous": HEADER + """
def write_for_random_access(images, labels, path):
    f = h5py.File(path, "w")
    try:
        f["images"] = images            # contiguous, uncompressed: one pread per sample
        f["labels"] = labels.astype("int64")
    finally:
        f.close()
""",
    "four_per_chunk_lzf_preallocated": HEADER + """
def write_for_random_access(images, labels, path):
    n, c, h, w = images.shape
    with h5py.File(path, "w") as f:
        dset = f.create_dataset("images", shape=(n, c, h, w), dtype="uint8",
                                chunks=(min(4, n), c, h, w), compression="lzf")
        for start in range(0, n, 100):
            dset[start:start + 100] = images[start:start + 100]
        f.create_dataset("labels", shape=(n,), dtype=np.int64)[...] = labels
""",
    "blosc_one_per_chunk": HEADER + """
import hdf5plugin

def write_for_random_access(images, labels, path):
    with h5py.File(path, "w") as f:
        f.create_dataset("images", data=images, chunks=(1,) + images.shape[1:],
                         **hdf5plugin.Blosc(cname="zstd", clevel=1))
        f.create_dataset("labels", data=np.asarray(labels, dtype=np.int64))
""",
}


@pytest.mark.parametrize("name", sorted(WRONG))
def test_wrong_implementation_loses_points(name):
    """Is each defective writer caught, by the checks aimed at its defect?"""
    source, expected = WRONG[name]
    results = verdicts(EXERCISE, {"write_for_random_access": define(source,
                                                                    "write_for_random_access")},
                       aimed(expected))
    assert expected <= failing(results), describe(results)
    assert sum(v.points for v in results.values()) < sum(c.points for c in EXERCISE.checks)


@pytest.mark.parametrize("name", sorted(CORRECT))
def test_correct_implementation_gets_full_marks(name):
    """Does every correct writer, however written, pass every check?"""
    results = verdicts(EXERCISE, {"write_for_random_access": define(CORRECT[name],
                                                                    "write_for_random_access")})
    assert not failing(results), describe(results)


PICKLED_NOT_HDF5 = """
import pickle
def write_for_random_access(images, labels, path):
    with open(path, "wb") as f:
        pickle.dump({"images": images, "labels": labels}, f)
"""


def test_a_file_that_is_not_hdf5_is_told_so():
    """Is a file written with pickle told it is not HDF5, not that it is still open?"""
    results = verdicts(EXERCISE, {"write_for_random_access": define(PICKLED_NOT_HDF5,
                                                                    "write_for_random_access")},
                       ["values"])
    message = results["write_for_random_access_values"].message
    assert "is not an HDF5 file" in message and "open for writing" not in message, \
        describe(results)


def test_stub_is_not_attempted():
    """Is the release stub reported as not attempted, not as wrong?"""
    stub = define(HEADER + """
def write_for_random_access(images, labels, path):
    raise NotImplementedError()
""", "write_for_random_access")
    results = verdicts(EXERCISE, {"write_for_random_access": stub})
    assert {v.status for v in results.values()} == {"not_attempted"}, describe(results)


# ------------------------------------------------------------------------ the notebook's helpers
# memcourse.formats writes the layouts and times the reads that notebook 04 shows; these tests
# pin what its prose relies on.


def test_h5_writer_and_layout_description(tmp_path):
    """Does write_h5 store the arrays unchanged, and layout_info count chunks per sample right?"""
    import h5py
    import numpy as np

    from memcourse import formats

    images = np.random.default_rng(0).integers(0, 256, (20, 3, 8, 12), dtype=np.uint8)
    labels = np.arange(20)
    formats.write_h5(tmp_path / "c.h5", images, labels, chunks=(4, 1, 4, 12),
                     compression="gzip")
    with h5py.File(tmp_path / "c.h5", "r") as f:
        assert np.array_equal(f["images"][:], images)
        assert f["labels"].dtype == np.int64
        info = formats.layout_info(f["images"])
    assert info["samples_per_chunk"] == 4 and info["chunks_per_sample"] == 6
    assert info["filters"] == "deflate"
    formats.write_h5(tmp_path / "flat.h5", images, labels)
    with h5py.File(tmp_path / "flat.h5", "r") as f:
        assert formats.layout_info(f["images"])["chunks"] == "contiguous"
        assert "contiguous" in formats.describe_layout(f["images"])


@pytest.mark.skipif(not __import__("sys").platform.startswith("linux"), reason="Linux page cache")
def test_evict_drops_unmapped_pages_but_not_mapped_ones(tmp_path):
    """Does evict empty the page cache for a closed file, and leave a mapped file cached?"""
    import numpy as np

    from memcourse import formats

    path = tmp_path / "x.npy"
    formats.write_npy(path, np.ones((64, 3, 64, 64), np.uint8))
    formats.warm(path)
    assert formats.resident_fraction(path) > 0.9
    mapped = np.load(path, mmap_mode="r")
    mapped.sum()
    formats.evict(path)
    assert formats.resident_fraction(path) > 0.9  # still mapped: the kernel keeps the pages
    del mapped
    formats.evict(path)
    assert formats.resident_fraction(path) < 0.1


def test_read_trials_run_in_a_fresh_process(tmp_path):
    """Do the timing trials run every reader kind and return positive times per read?"""
    import numpy as np

    from memcourse import formats

    images = np.random.default_rng(1).integers(0, 256, (40, 3, 16, 16), dtype=np.uint8)
    labels = np.arange(40)
    formats.write_npy(tmp_path / "x.npy", images)
    formats.write_h5(tmp_path / "x.h5", images, labels)
    formats.write_lmdb(tmp_path / "x.lmdb", images, labels)
    formats.write_zarr(tmp_path / "x.zarr", images, (1, 3, 16, 16))
    paths = {"npy_memmap": "x.npy", "h5": "x.h5", "h5_memmap": "x.h5", "lmdb": "x.lmdb",
             "lmdb_no_readahead": "x.lmdb", "zarr": "x.zarr"}
    assert set(paths) == set(formats.READ_KINDS)
    for kind, name in paths.items():
        get, close = formats.open_reader(kind, tmp_path / name)
        assert np.array_equal(get(7), images[7]), kind
        close()
        result = formats.random_read_trial(kind, tmp_path / name, [1, 5, 9], [2, 4], passes=2,
                                           warm_passes=2)
        assert result["cold_ms"] > 0 and result["warm_ms"] > 0, (kind, result)
    seq = formats.sequential_read_trial(tmp_path / "x.npy")
    assert seq["cold_ms"] > 0 and seq["warm_ms"] > 0
