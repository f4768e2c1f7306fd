"""memcourse.shards: tar shards of the course dataset, the streaming reader, and notebook 07's
measurements (shard size, worker splitting, shuffle buffer)."""

from __future__ import annotations

import math
import os
from pathlib import Path

import h5py
import numpy as np
import psutil
import pytest

from memcourse import shards
from memcourse.formats import page_cache_control
from memcourse.shards import (
    count_opens,
    count_with_workers,
    samples_in_shard,
    shard_paths,
    shard_size_trial,
    shuffle_trial,
    webdataset_loader,
    write_shards,
)

PER_SHARD = 32  # tiny has 256 samples: 8 shards


@pytest.fixture(scope="module")
def tiny_arrays(tiny_h5: Path) -> tuple[np.ndarray, np.ndarray]:
    with h5py.File(tiny_h5, "r") as f:
        return f["images"][:], f["labels"][:]


@pytest.fixture(scope="module")
def tiny_shards(tiny_h5: Path, tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """The tiny dataset in 8 shards of 32; tests only read them."""
    return write_shards(tiny_h5, tmp_path_factory.mktemp("shards"), PER_SHARD)


def _open_paths() -> set[str]:
    return {f.path for f in psutil.Process().open_files()}


# ----------------------------------------------------------------------------- the three basics


def test_shards_give_back_the_hdf5_images_and_labels_in_order(tiny_shards, tiny_arrays):
    """Does reading every shard in order give exactly the HDF5 file's images (uint8) and
    labels?"""
    images, labels = tiny_arrays
    got = [(image, label) for path in tiny_shards for image, label in samples_in_shard(path)]
    assert len(got) == len(images)
    assert all(image.dtype == np.uint8 for image, _ in got)
    np.testing.assert_array_equal(np.stack([image for image, _ in got]), images)
    assert [label for _, label in got] == labels.tolist()
    assert all(type(label) is int for _, label in got)


def test_a_second_write_gives_byte_identical_shards(tiny_h5, tiny_shards, tmp_path):
    """Are shards written again (at another time) byte for byte the same, so that a rerun of
    the notebook does not change them?"""
    again = write_shards(tiny_h5, tmp_path / "again", PER_SHARD)
    assert [p.name for p in again] == [p.name for p in tiny_shards]
    for first, second in zip(tiny_shards, again, strict=True):
        assert first.read_bytes() == second.read_bytes(), first.name


@pytest.mark.parametrize(("size", "n"), [(32, None), (100, None), (1000, None), (16, 50),
                                         (1, 5)])
def test_shard_count_is_n_over_size_rounded_up(tiny_h5, tmp_path, size, n):
    """Are there ceil(n / samples_per_shard) shards, holding n samples in all?"""
    paths = write_shards(tiny_h5, tmp_path, size, n)
    total = 256 if n is None else n
    assert len(paths) == math.ceil(total / size)
    assert paths == shard_paths(tmp_path)
    counts = [sum(1 for _ in samples_in_shard(p)) for p in paths]
    assert sum(counts) == total and all(c == size for c in counts[:-1])


def test_a_rewrite_replaces_the_earlier_shards(tiny_h5, tmp_path):
    """Does writing fewer, larger shards into the same folder leave no stale shard behind?"""
    write_shards(tiny_h5, tmp_path, 16)
    paths = write_shards(tiny_h5, tmp_path, 128)
    assert len(shard_paths(tmp_path)) == len(paths) == 2


def test_streaming_holds_one_shard_open_and_closes_it(tiny_shards):
    """While a shard is read, is it the one shard file open, and is it closed after its last
    sample?"""
    shard_names = {os.path.realpath(p) for p in tiny_shards}
    for path in tiny_shards[:3]:
        seen = []
        for _ in samples_in_shard(path):
            seen.append(shard_names & _open_paths())
        assert seen and all(s == {os.path.realpath(path)} for s in seen)
        assert not shard_names & _open_paths()


def test_closing_the_generator_early_closes_its_file(tiny_shards):
    """Does a reader abandoned after one sample (generator closed) release its file?"""
    path = os.path.realpath(tiny_shards[0])
    reader = samples_in_shard(tiny_shards[0])
    next(reader)
    assert path in _open_paths()
    reader.close()
    assert path not in _open_paths()


@pytest.mark.parametrize("bad", [0, -3, 2.5, True, "3"])
def test_bad_samples_per_shard_raises_value_error(tiny_h5, tmp_path, bad):
    """Is a shard size that is not a positive whole number refused with ValueError?"""
    with pytest.raises(ValueError, match="positive whole number"):
        write_shards(tiny_h5, tmp_path, bad)


# ----------------------------------------------------------------------------- shard size trial


def test_count_opens_counts_files_opened_under_the_folder_only(tmp_path):
    """Does the counter see every open under its folder (Python and os.open), and none
    elsewhere or after the block?"""
    inside, outside = tmp_path / "in", tmp_path / "out"
    inside.mkdir(), outside.mkdir()
    (inside / "a").write_bytes(b"x")
    (outside / "b").write_bytes(b"x")
    with count_opens(inside) as opened:
        for _ in range(3):
            with open(inside / "a", "rb"):
                pass
        os.close(os.open(inside / "a", os.O_RDONLY))
        with open(outside / "b", "rb"):
            pass
    (inside / "a").read_bytes()
    assert opened.count == 4


def test_shard_size_trial_counts_one_open_per_shard(tiny_h5, tmp_path):
    """Does the trial count one open per shard file (128 for size 1), read every sample, and
    report the shards' real bytes per sample?"""
    trials = shard_size_trial(tiny_h5, tmp_path, [1, 32, 1000], n=128, repeats=2)
    assert [t.samples_per_shard for t in trials] == [1, 32, 1000]
    for t in trials:
        folder = tmp_path / f"{t.samples_per_shard}-per-shard"
        files = shard_paths(folder)
        assert t.shards == len(files) == math.ceil(128 / t.samples_per_shard)
        assert t.opens == t.shards
        assert t.samples == 128
        assert t.file_bytes_per_sample * 128 == pytest.approx(sum(p.stat().st_size for p in files))
        assert t.overhead_bytes_per_sample == pytest.approx(t.file_bytes_per_sample - 3 * 32 * 32)
        assert len(t.seconds_runs) == 2 and t.samples_per_s == pytest.approx(128 / t.seconds)
        assert t.cold is page_cache_control()
    # every file costs at least a 10,240-byte tar record: one sample per file costs the most
    assert trials[0].overhead_bytes_per_sample > trials[1].overhead_bytes_per_sample


def test_shard_size_trial_says_when_it_read_warm(tiny_h5, tmp_path):
    """Is a trial asked to read warm reported as warm?"""
    (trial,) = shard_size_trial(tiny_h5, tmp_path, [64], n=128, cold=False)
    assert (trial.cold, trial.samples, trial.shards, trial.opens) == (False, 128, 2, 2)


@pytest.mark.parametrize("bad", [[], [0], [4, -1]])
def test_shard_size_trial_refuses_bad_sizes(tiny_h5, tmp_path, bad):
    with pytest.raises(ValueError):
        shard_size_trial(tiny_h5, tmp_path, bad)


# ----------------------------------------------------------------------------- WebDataset


def test_webdataset_loader_reads_the_samples_in_order(tiny_shards, tiny_arrays):
    """Without shuffling, does the WebDataset pipeline give the HDF5 images and labels in
    order, decoded to uint8 arrays and ints?"""
    images, labels = tiny_arrays
    got = list(webdataset_loader(tiny_shards))
    np.testing.assert_array_equal(np.stack([image for image, _ in got]), images)
    assert [label for _, label in got] == labels.tolist()
    keyed = list(webdataset_loader(tiny_shards[:1], keys=True))
    assert [k for k, _, _ in keyed] == [f"{i:06d}" for i in range(PER_SHARD)]


def test_webdataset_loader_shuffle_buffer_reorders_and_keeps_every_sample(tiny_shards):
    """Does a shuffle buffer change the order but neither lose nor repeat a sample?"""
    keys = [k for k, _, _ in webdataset_loader(tiny_shards, shuffle_buffer=64, keys=True)]
    assert sorted(keys) == [f"{i:06d}" for i in range(256)]
    assert keys != sorted(keys)


def test_shardshuffle_repeats_the_same_shard_order_every_epoch(tiny_shards):
    """Pitfall: does `shardshuffle=N` read the shards in one order, the same every epoch?"""
    dataset = webdataset_loader(tiny_shards, shardshuffle=8, keys=True)
    orders = [[int(k) // PER_SHARD for k, _, _ in dataset][::PER_SHARD] for _ in range(3)]
    assert sorted(orders[0]) == list(range(8)) and orders[0] != list(range(8))
    assert orders[0] == orders[1] == orders[2]


@pytest.mark.parametrize("url", ["http://127.0.0.1:1/shard-000000.tar", "pipe:cat x.tar",
                                 "s3://bucket/shard.tar"])
def test_webdataset_loader_refuses_urls(url):
    """Are http (which WebDataset hands to curl) and other URLs refused with a sentence?"""
    with pytest.raises(ValueError, match="local shard paths"):
        webdataset_loader([url])
    with pytest.raises(ValueError, match="local shard paths"):
        count_with_workers(url, 0, True)


def test_workers_without_a_splitter_read_every_shard_twice(tiny_shards):
    """The pitfall, measured: 2 workers without a worker splitter yield each sample twice;
    with it, once; and 4 workers on 2 shards run (empty_check=False) without loss."""
    assert count_with_workers(tiny_shards, 2, split_by_worker=True) == (256, 256)
    assert count_with_workers(tiny_shards, 2, split_by_worker=False) == (512, 256)
    assert count_with_workers(tiny_shards[:2], 4, split_by_worker=True) == (64, 64)
    assert count_with_workers(tiny_shards[:2], 0, split_by_worker=False) == (64, 64)


def test_split_by_node_reads_rank_and_world_size(tiny_shards, monkeypatch):
    """Does the node splitter give rank 1 of 2 every other shard, whole?"""
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    keys = [int(k) for k, _, _ in webdataset_loader(tiny_shards, keys=True)]
    assert sorted({k // PER_SHARD for k in keys}) == [1, 3, 5, 7]
    assert len(keys) == 4 * PER_SHARD


# ----------------------------------------------------------------------------- shuffle buffer


def test_shuffle_memory_grows_with_the_buffer_and_quality_improves(tiny_shards):
    """Does the measured peak follow buffer size x sample bytes (plus about one sample in
    flight), while samples move further and batches draw from more shards?"""
    trials = shuffle_trial(tiny_shards, [0, 10, 100], batch_size=32)
    sample = 3 * 32 * 32
    assert [t.buffer_size for t in trials] == [0, 10, 100]
    for t in trials:
        assert (t.samples, t.shards, t.sample_bytes) == (256, 8, sample)
        assert t.predicted_bytes == t.buffer_size * sample
        assert t.predicted_bytes <= t.peak_bytes <= t.predicted_bytes + 2 * sample
        assert t.perfect_displacement == pytest.approx(1 / 3, abs=0.05)
        assert t.perfect_shards_per_batch > 6
    none, small, big = trials
    assert (none.mean_displacement, none.shards_per_batch) == (0.0, 1.0)
    assert none.peak_bytes < small.peak_bytes < big.peak_bytes
    assert 0 < small.mean_displacement < big.mean_displacement < 1 / 3
    assert none.shards_per_batch < small.shards_per_batch < big.shards_per_batch


def test_shuffle_peak_agrees_with_tracemalloc(tiny_shards):
    """Does the allocator (tracemalloc) see the memory grow with the buffer as the counted
    image bytes do? (Each 3 KiB tiny image also costs its array, tuple and finalizer.)"""
    import tracemalloc  # lazy: only this test traces allocations

    shuffle_trial(tiny_shards[:1], [0])  # first-use allocations (caches) before tracing
    counted, traced = [], []
    for buffer_size in (0, 100):
        tracemalloc.start()
        try:
            base = tracemalloc.get_traced_memory()[0]
            (trial,) = shuffle_trial(tiny_shards, [buffer_size])
            traced.append(tracemalloc.get_traced_memory()[1] - base)
        finally:
            tracemalloc.stop()
        counted.append(trial.peak_bytes)
    growth = counted[1] - counted[0]
    assert counted[1] >= 100 * 3 * 32 * 32
    assert growth <= traced[1] - traced[0] <= 1.5 * growth, (counted, traced)


def test_shuffle_trial_refuses_empty_input(tiny_shards):
    with pytest.raises(ValueError):
        shuffle_trial([], [10])
    with pytest.raises(ValueError):
        shuffle_trial(tiny_shards, [-1])


def test_the_module_documents_its_checked_pitfalls():
    """Does the module say which webdataset version its pitfalls were checked with?"""
    assert "Pitfalls (checked with webdataset 1.0.2" in shards.__doc__
