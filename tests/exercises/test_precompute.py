"""Do the precompute checks fail wrong implementations and pass other correct ones?"""

from __future__ import annotations

import pytest

from autograder.exercises.precompute import EXERCISE
from tests.exercises.catalogue import define, describe, failing, verdicts

pytestmark = pytest.mark.slow

HEADER = """
import h5py, numpy as np
from tqdm.auto import tqdm
"""

REFERENCE = HEADER + """
def precompute(h5_in, h5_out, transform):
    with h5py.File(h5_in, "r") as src, h5py.File(h5_out, "w") as dst:
        images = src["images"]
        n = images.shape[0]
        first = np.asarray(transform(images[0]))
        out = dst.create_dataset("images", shape=(n, *first.shape), dtype=first.dtype,
                                 chunks=(1, *first.shape))
        out[0] = first
        for i in tqdm(range(1, n), desc="precompute", initial=1, total=n):
            out[i] = transform(images[i])
        dst.create_dataset("labels", data=src["labels"][:])
"""


def _variant(old: str, new: str) -> str:
    assert old in REFERENCE, old
    return REFERENCE.replace(old, new)


# name: (source, the check that must catch it). Only that check runs: it must fail on its own.
WRONG = {
    "reads_whole_input": (_variant('images = src["images"]', 'images = src["images"][:]'),
                          "precompute_streams"),
    "keeps_all_outputs": (HEADER + """
def precompute(h5_in, h5_out, transform):
    with h5py.File(h5_in, "r") as src, h5py.File(h5_out, "w") as dst:
        images = src["images"]
        outputs = [transform(images[i]) for i in range(images.shape[0])]
        stacked = np.stack(outputs)
        dst.create_dataset("images", data=stacked, chunks=(1, *stacked.shape[1:]))
        dst.create_dataset("labels", data=src["labels"][:])
""", "precompute_streams"),
    "output_file_in_memory": (_variant('h5py.File(h5_out, "w")',
                                       'h5py.File(h5_out, "w", driver="core")'),
                              "precompute_streams"),
    "float64_output": (_variant("dtype=first.dtype", "dtype=np.float64"),
                       "precompute_dtype_shape"),
    "float32_assumed": (_variant("dtype=first.dtype", 'dtype="float32"'),
                        "precompute_any_transform"),
    "half_size_assumed": (_variant(
        "shape=(n, *first.shape)", "shape=(n, 3, images.shape[2] // 2, images.shape[3] // 2)"),
        "precompute_any_transform"),
    "labels_missing": (_variant('        dst.create_dataset("labels", data=src["labels"][:])\n',
                                ""), "precompute_labels"),
    "labels_int32": (_variant('data=src["labels"][:]', 'data=src["labels"][:].astype(np.int32)'),
                     "precompute_labels"),
    "off_by_one": (_variant("out[i] = transform(images[i])",
                            "out[i] = transform(images[(i + 1) % n])"), "precompute_values"),
    "transform_ignored": (_variant("out[i] = transform(images[i])",
                                   "out[i] = images[i][:, ::2, ::2].astype(np.float32) / 255"),
                          "precompute_values"),
    "auto_chunks": (_variant("chunks=(1, *first.shape)", 'chunks=True, compression="gzip"'),
                    "precompute_layout"),
    "one_compressed_chunk_layout": (_variant("chunks=(1, *first.shape)",
                                             'chunks=(n, *first.shape), compression="gzip"'),
                                    "precompute_layout"),
    # Two big gzip chunks: each fits the chunk cache while it is written (quick to write), but
    # shuffled reads alternate between them and decompress one per sample.
    "two_compressed_chunks_speed": (_variant("chunks=(1, *first.shape)",
                                             'chunks=(max(1, n // 2), *first.shape), '
                                             'compression="gzip"'), "precompute_faster"),
}

CORRECT = {
    "reference": REFERENCE,
    "blocks_contiguous_str_paths": HEADER + """
def precompute(h5_in, h5_out, transform):
    src = h5py.File(str(h5_in), "r")
    try:
        images, labels = src["images"], src["labels"]
        n, block = len(images), 64
        with h5py.File(str(h5_out), "w") as dst:
            out = None
            for start in range(0, n, block):
                chunk = images[start:start + block]          # a small block, never all of it
                results = np.stack([transform(x) for x in chunk])
                if out is None:
                    out = dst.create_dataset("images", (n, *results.shape[1:]), results.dtype)
                out[start:start + len(results)] = results
            dst["labels"] = labels[()]
    finally:
        src.close()
""",
    "lzf_per_sample_require_dataset": HEADER + """
from pathlib import Path

def precompute(h5_in, h5_out, transform):
    h5_in, h5_out = Path(h5_in), Path(h5_out)
    with h5py.File(h5_in, "r") as src:
        n = src["images"].shape[0]
        sample = transform(src["images"][0])
        with h5py.File(h5_out, "a") as dst:
            labels = dst.require_dataset("labels", (n,), np.int64)
            labels[...] = src["labels"][...]
            out = dst.require_dataset("images", (n,) + sample.shape, sample.dtype,
                                      chunks=(1,) + sample.shape, compression="lzf",
                                      shuffle=True)
            images = src["images"]
            for i in range(n):
                out[i] = sample if i == 0 else transform(images[i])
""",
    "small_chunks_of_four": HEADER + """
def precompute(h5_in, h5_out, transform):
    with h5py.File(h5_in, "r") as src, h5py.File(h5_out, "w") as dst:
        x = src["images"]
        first = transform(x[0])
        out = dst.create_dataset("images", (len(x),) + first.shape, first.dtype,
                                 chunks=(min(4, len(x)),) + first.shape)
        for i in range(len(x)):
            out[i] = transform(x[i])
        dst.create_dataset("labels", data=np.asarray(src["labels"]), dtype="int64")
""",
}


@pytest.mark.parametrize("name", sorted(WRONG))
def test_wrong_implementation_loses_points(name):
    """Is each defective precompute caught, by the check aimed at its defect?"""
    source, expected = WRONG[name]
    results = verdicts(EXERCISE, {"precompute": define(source, "precompute")}, [expected])
    assert expected in failing(results), describe(results)
    assert results[expected].points == 0


@pytest.mark.parametrize("name", sorted(CORRECT))
def test_correct_implementation_gets_full_marks(name):
    """Does every correct precompute, however written, pass every check?"""
    results = verdicts(EXERCISE, {"precompute": define(CORRECT[name], "precompute")})
    assert not failing(results), describe(results)


def test_output_that_is_not_hdf5_is_told_so():
    """Is an output written with pickle told it is not HDF5, not told to close the file?"""
    source = """
import pickle
def precompute(h5_in, h5_out, transform):
    with open(h5_out, "wb") as f:
        pickle.dump("not hdf5", f)
"""
    results = verdicts(EXERCISE, {"precompute": define(source, "precompute")}, ["values"])
    message = results["precompute_values"].message
    assert "is not an HDF5 file" in message and "Close it" not in message, describe(results)


def test_stub_is_not_attempted():
    """Is the release stub reported as not attempted, not as wrong?"""
    stub = define(HEADER + """
def precompute(h5_in, h5_out, transform):
    raise NotImplementedError()
""", "precompute")
    results = verdicts(EXERCISE, {"precompute": stub})
    assert {v.status for v in results.values()} == {"not_attempted"}, describe(results)
