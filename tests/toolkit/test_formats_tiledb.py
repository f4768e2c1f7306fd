"""Does the TileDB reader of the timing trials return each sample, in a fresh process too?"""

from __future__ import annotations

import numpy as np
import tiledb

from memcourse import formats


def _write_tiledb(path, images):
    """A dense array with one sample per tile, as notebook 04 writes it."""
    n, c, h, w = images.shape
    dims = [tiledb.Dim(name, domain=(0, size - 1), tile=tile, dtype=np.uint32)
            for name, size, tile in (("sample", n, 1), ("channel", c, c), ("y", h, h),
                                     ("x", w, w))]
    schema = tiledb.ArraySchema(domain=tiledb.Domain(*dims), sparse=False,
                                attrs=[tiledb.Attr("image", dtype=np.uint8)])
    tiledb.Array.create(str(path), schema)
    with tiledb.open(str(path), mode="w") as array:
        array[:] = images


def test_tiledb_reader_returns_writable_samples_and_times_in_a_fresh_process(tmp_path):
    """Does open_reader('tiledb') return sample i as a writable array, and does a trial run?"""
    images = np.random.default_rng(2).integers(0, 256, (12, 3, 8, 8), dtype=np.uint8)
    path = tmp_path / "x.tiledb"
    _write_tiledb(path, images)
    get, close = formats.open_reader(formats.TILEDB_READ_KIND, path)
    try:
        sample = get(7)
        assert np.array_equal(sample, images[7])
        assert sample.flags.writeable
    finally:
        close()
    result = formats.random_read_trial(formats.TILEDB_READ_KIND, path, [1, 5, 9], [2, 4],
                                       passes=2, warm_passes=2)
    assert result["cold_ms"] > 0 and result["warm_ms"] > 0, result
