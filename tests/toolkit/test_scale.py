"""Does the scale calculator derive what notebook 07 says it does?"""

from __future__ import annotations

import pytest

from memcourse import scale


def small(**kw) -> scale.ScalePlan:
    dataset = scale.DatasetSize("test", samples=1000, sample_bytes=100, decoded_bytes=400)
    return scale.plan(dataset, **kw)


def test_shards_are_dealt_to_every_reading_process():
    p = small(nodes=2, ranks_per_node=2, workers_per_rank=3, samples_per_shard=40)
    assert p.world_size == 4 and p.consumers == 12
    assert p.shards == 25  # ceil(1000 / 40)
    assert p.shards_per_worker == (2, 3)
    assert p.idle_workers == 0
    assert p.samples_per_reader == 120  # three shards of 40


def test_too_few_shards_leave_processes_idle_and_one_reader_slow():
    p = small(nodes=1, ranks_per_node=2, workers_per_rank=4, samples_per_shard=1000,
              read_s=0.01, step_s=0.0)
    assert p.shards == 1 and p.idle_workers == 7
    assert p.samples_per_reader == 1000
    assert p.data_s_per_epoch == pytest.approx(10.0)
    assert p.bound == "data"
    assert any("7 processes get none" in line for line in p.lines())


def test_bytes_in_flight_count_decoded_batches_and_stored_shuffle_buffers():
    p = small(workers_per_rank=2, prefetch_factor=3, batch_size=10, shuffle_buffer=50,
              ranks_per_node=2)
    batch = 10 * 400  # decoded bytes per sample
    per_rank = (2 * 3 + 1) * batch + 2 * 50 * 100  # prefetched + in use, buffers as stored
    assert p.in_flight_per_rank_bytes == per_rank
    assert (p.batches_per_rank_bytes, p.buffers_per_rank_bytes) == (7 * batch, 2 * 50 * 100)
    assert "MiB of shuffle buffers" in p.lines()[5]
    assert p.in_flight_per_node_bytes == 2 * per_rank


def test_no_workers_means_the_rank_reads_then_trains():
    p = small(workers_per_rank=0, batch_size=100, samples_per_shard=100, read_s=0.001,
              step_s=0.5, shuffle_buffer=0)
    assert p.consumers == 1 and p.in_flight_per_rank_bytes == 100 * 400  # the batch in use
    assert p.epoch_s == pytest.approx(p.data_s_per_epoch + p.compute_s_per_epoch)
    with_workers = small(workers_per_rank=2, batch_size=100, samples_per_shard=100,
                         read_s=0.001, step_s=0.5)
    assert with_workers.epoch_s == pytest.approx(max(with_workers.data_s_per_epoch,
                                                     with_workers.compute_s_per_epoch))


def test_page_cache_fit_for_the_whole_dataset_and_a_nodes_share():
    gib = scale.GIB
    p = scale.plan(scale.DatasetSize("d", 4, gib), nodes=4, workers_per_rank=0, batch_size=1,
                   shuffle_buffer=0, node_ram_gib=2)
    assert not p.fits_whole  # 4 GiB on a 2 GiB node
    assert p.fits_share  # 1 GiB share + one 1 GiB batch in use
    assert p.node_share_bytes == gib


def test_the_two_datasets_the_notebook_fills_in():
    assert scale.GUIDE_FILE.samples * scale.GUIDE_FILE.sample_bytes == 1_966_080_000
    assert scale.IMAGENET.samples == 1_281_167
    p = scale.plan(scale.IMAGENET, nodes=4, ranks_per_node=8, workers_per_rank=8)
    assert p.world_size == 32 and p.consumers == 256


@pytest.mark.parametrize("bad", [{"nodes": 0}, {"samples_per_shard": 0}, {"batch_size": 1.5},
                                 {"workers_per_rank": -1}, {"read_s": -1.0},
                                 {"nodes": True}, {"step_s": float("nan")}])
def test_bad_inputs_name_themselves(bad):
    name = next(iter(bad))
    with pytest.raises(ValueError, match=name):
        small(**bad)

