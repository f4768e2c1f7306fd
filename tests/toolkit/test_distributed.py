"""memcourse.distributed: DistributedSampler's shares, and real gloo ranks measuring memory."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import torch

from memcourse import data
from memcourse.distributed import (
    RankReport,
    RanksError,
    run_ranks,
    sampler_shares,
    share_summary,
    shares_of,
)
from tests.helpers import ROOT


def _flat(share_lists: list[list[int]]) -> list[int]:
    return [i for share in share_lists for i in share]


# --- sampler_shares and share_summary: the real sampler, no processes ---------------------------


def test_divisible_shares_are_disjoint_and_cover_every_sample():
    """With n divisible by the world size, does each sample go to exactly one rank, each epoch?"""
    shares = sampler_shares(12, 3, epochs=2)
    for epoch in (0, 1):
        assert [len(s) for s in shares[epoch]] == [4, 4, 4]
        assert sorted(_flat(shares[epoch])) == list(range(12))
    summary = share_summary(shares, 12)
    assert summary.per_rank == (4, 4, 4)
    assert summary.repeated == ((), ()) and summary.missing == ((), ())
    assert "disjoint" in " ".join(summary.sentences())


def test_padding_repeats_the_first_samples_of_the_order():
    """10 samples on 4 ranks: are exactly the 2 padding samples seen twice, and are they 0 and 1?"""
    shares = sampler_shares(10, 4, epochs=1, shuffle=False)
    assert [len(s) for s in shares[0]] == [3, 3, 3, 3]
    summary = share_summary(shares, 10)
    assert summary.repeated == ((0, 1),)
    assert summary.missing == ((),)
    assert "Padding: 2 sample(s)" in " ".join(summary.sentences())


def test_padding_with_shuffle_repeats_the_first_samples_of_that_epochs_order():
    """Shuffled, are the repeated samples the first padding_size of the epoch's permutation?"""
    shares = sampler_shares(10, 4, epochs=2, seed=5)
    summary = share_summary(shares, 10)
    for epoch in (0, 1):
        order = torch.randperm(10, generator=torch.Generator().manual_seed(5 + epoch)).tolist()
        assert summary.repeated[epoch] == tuple(sorted(order[:2]))
        assert len(_flat(shares[epoch])) == 12


def test_drop_last_cuts_the_tail_so_some_samples_are_never_seen():
    """With drop_last, do 10 samples on 4 ranks give 2 each and leave samples 8 and 9 unseen?"""
    shares = sampler_shares(10, 4, epochs=1, shuffle=False, drop_last=True)
    assert [len(s) for s in shares[0]] == [2, 2, 2, 2]
    summary = share_summary(shares, 10)
    assert summary.missing == ((8, 9),)
    assert summary.repeated == ((),)
    assert "never seen" in " ".join(summary.sentences())


def test_forgetting_set_epoch_repeats_the_same_order_every_epoch():
    """Without set_epoch, does every epoch give every rank the very same list?"""
    shares = sampler_shares(100, 2, epochs=3, set_epoch=False)
    assert shares[0] == shares[1] == shares[2]
    summary = share_summary(shares, 100)
    assert summary.same_order is True
    assert "same order" in " ".join(summary.sentences())


def test_set_epoch_changes_the_order_and_keeps_the_shares_disjoint():
    """With set_epoch, does each epoch shuffle anew while still splitting the samples cleanly?"""
    shares = sampler_shares(100, 2, epochs=3)
    assert shares[0] != shares[1] != shares[2]
    for epoch in range(3):
        assert sorted(_flat(shares[epoch])) == list(range(100))
    assert share_summary(shares, 100).same_order is False
    assert share_summary(sampler_shares(100, 2, epochs=1), 100).same_order is None


def test_share_summary_rejects_indices_outside_the_dataset():
    """Is an index beyond n an error rather than a silently wrong summary?"""
    with pytest.raises(ValueError, match="outside"):
        share_summary({0: [[0, 1], [2, 9]]}, 4)
    with pytest.raises(ValueError):
        sampler_shares(0, 2)


def test_shares_of_reports_orders_ranks_and_epochs():
    """Does shares_of turn reports (in any order) into {epoch: [rank 0's, rank 1's]}?"""
    def report(rank: int, indices: tuple) -> RankReport:
        return RankReport(rank=rank, world_size=2, n=4, pid=rank, indices=indices,
                          group_pids=(0, 1), group_union=(4, 4), pss_baseline_bytes=0,
                          pss_lazy_bytes=0, pss_eager_bytes=0, start_s=0, init_s=0, lazy_s=0,
                          eager_s=0)

    reports = [report(1, ((3, 1), (0, 2))), report(0, ((0, 2), (3, 1)))]
    assert shares_of(reports) == {0: [[0, 2], [3, 1]], 1: [[3, 1], [0, 2]]}


# --- run_ranks: real processes -------------------------------------------------------------------

# Big enough that one copy of the images stands far out of PSS noise (a few MiB).
MID = data.DatasetSpec("ranks-test", n=800, height=128, width=128)
IMAGE_BYTES = MID.n * 3 * MID.height * MID.width  # 37.5 MiB

# Runs the way a notebook does: from a `__main__` that no rank can import.
RUN_FROM_C = """
import dataclasses, json, sys
from memcourse.distributed import run_ranks
reports = run_ranks(sys.argv[1], world_size=2, epochs=2, batch_size=16)
print(json.dumps([dataclasses.asdict(r) for r in reports]))
"""


def _rank_processes() -> list[psutil.Process]:
    """This process's live children that are spawned ranks (not multiprocessing's tracker)."""
    alive = []
    for child in psutil.Process().children(recursive=True):
        try:
            if "spawn_main" in " ".join(child.cmdline()) and child.is_running() \
                    and child.status() != psutil.STATUS_ZOMBIE:
                alive.append(child)
        except psutil.NoSuchProcess:
            pass
    return alive


@pytest.mark.slow
def test_two_real_ranks_split_the_data_and_each_eager_rank_holds_a_copy(tmp_path: Path):
    """From `python -c`, do 2 gloo ranks get disjoint shares and each pay a full eager copy?"""
    h5 = data.write_dataset(tmp_path / "images.h5", MID, progress=False)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", RUN_FROM_C, str(h5)], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=180)
    seconds = time.perf_counter() - start
    assert proc.returncode == 0, proc.stderr[-3000:]
    reports = [RankReport.from_dict(r) for r in json.loads(proc.stdout.strip().splitlines()[-1])]
    print(f"python -c with run_ranks: {seconds:.1f} s;", *(r.sentence() for r in reports))

    assert [r.rank for r in reports] == [0, 1]
    assert all(r.world_size == 2 and r.n == MID.n for r in reports)
    pids = tuple(r.pid for r in reports)
    assert len(set(pids)) == 2 and os.getpid() not in pids
    # all_gather_object really went between the two processes
    assert all(r.group_pids == pids for r in reports)
    assert all(r.group_union == (MID.n, MID.n) for r in reports)

    shares = shares_of(reports)
    for epoch in (0, 1):
        zero, one = shares[epoch]
        assert len(zero) == len(one) == MID.n // 2
        assert not set(zero) & set(one)
        assert sorted(zero + one) == list(range(MID.n))
    assert share_summary(shares, MID.n).same_order is False
    # the same shares the sampler gives without processes
    assert shares == sampler_shares(MID.n, 2, epochs=2)

    for r in reports:
        assert r.eager_over_lazy_mib * 2**20 >= 0.9 * IMAGE_BYTES, r.sentence()
        assert r.lazy_growth_mib * 2**20 < 0.5 * IMAGE_BYTES, r.sentence()
        assert 0 < r.start_s and 0 < r.lazy_s and 0 < r.eager_s


@pytest.mark.slow
def test_a_failing_rank_raises_its_error_in_the_parent_and_no_rank_survives(tiny_h5: Path):
    """When rank 1 raises, does the parent get its error at once, with no rank left running?"""
    start = time.perf_counter()
    with pytest.raises(RanksError) as caught:
        # A long timeout: if run_ranks waited for the other rank to time out, this would show.
        run_ranks(tiny_h5, fail_rank=1, timeout_s=120)
    seconds = time.perf_counter() - start
    assert caught.value.rank == 1
    assert "Rank 1 of 2 failed with RuntimeError: rank 1 failed on purpose" in str(caught.value)
    assert "_rank_main" in caught.value.child_traceback
    assert seconds < 60, f"run_ranks took {seconds:.0f} s to report a failed rank"
    assert not _rank_processes()


@pytest.mark.slow
def test_ranks_past_the_timeout_are_ended(tiny_h5: Path):
    """Does a launch that runs past timeout_s raise RanksError and leave no rank alive?"""
    start = time.perf_counter()
    with pytest.raises(RanksError, match="did not finish within 0.5 s") as caught:
        run_ranks(tiny_h5, timeout_s=0.5)
    assert caught.value.rank is None
    assert time.perf_counter() - start < 10
    assert not _rank_processes()


def test_run_ranks_refuses_a_missing_file_before_starting_anything(tmp_path: Path):
    """Is a missing dataset a FileNotFoundError at once, not an error inside two ranks?"""
    with pytest.raises(FileNotFoundError, match="ensure_dataset"):
        run_ranks(tmp_path / "nothing.h5")
