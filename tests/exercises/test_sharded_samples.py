"""Do the ShardedSamples checks catch every defect in the catalogue and pass every correct style?"""

from __future__ import annotations

import pytest

from autograder.exercises.sharded_samples import (
    EXERCISE,
    SMALL_LAYOUT,
    ReferenceShardedSamples,
    fixture_image,
    make_fixtures,
)
from tests.exercises.catalogue import (
    aimed,
    assert_deductions,
    define,
    describe,
    failing,
    verdicts,
)

pytestmark = pytest.mark.slow

HEADER = """
import itertools, random
import numpy as np
from torch.utils.data import IterableDataset, get_worker_info
from memcourse.shards import samples_in_shard
"""

# The notebook's solution, word for word.
REFERENCE = HEADER + """
class ShardedSamples(IterableDataset):
    def __init__(self, shards, rank=0, world_size=1, seed=0):
        self.shards, self.rank, self.world_size, self.seed = list(shards), rank, world_size, seed
        self.epoch = 0
    def set_epoch(self, epoch):
        self.epoch = epoch
    def __iter__(self):
        info = get_worker_info()
        worker, num_workers = (0, 1) if info is None else (info.id, info.num_workers)
        order = np.random.default_rng([self.seed, self.epoch]).permutation(len(self.shards))
        consumer, consumers = self.rank * num_workers + worker, self.world_size * num_workers
        for s in order[consumer::consumers]:
            yield from samples_in_shard(self.shards[s])
"""


def variant(old: str, new: str) -> str:
    """The reference with exactly one change."""
    assert REFERENCE.count(old) == 1, old
    return REFERENCE.replace(old, new)


WORKER = "worker, num_workers = (0, 1) if info is None else (info.id, info.num_workers)"
CONSUMER = ("consumer, consumers = self.rank * num_workers + worker, self.world_size * "
            "num_workers")
PERMUTATION = "np.random.default_rng([self.seed, self.epoch])"
LOOP = """for s in order[consumer::consumers]:
            yield from samples_in_shard(self.shards[s])"""

TAR_READER = "import io\nfrom webdataset.tariterators import group_by_keys, tar_file_expander\n"

ONCE = "sharded_samples_once"
GRID = "sharded_samples_ranks_and_workers"
GRIDS = "sharded_samples_other_grids"
MORE = "sharded_samples_more_consumers_than_shards"
ONE_READER = "sharded_samples_one_reader_per_shard"
ORDER = "sharded_samples_new_order_each_epoch"
STREAMS = "sharded_samples_streams"
ONE_OPEN = "sharded_samples_one_shard_open"
FORK = "sharded_samples_fork_workers"
SPAWN = "sharded_samples_spawn_workers"

# name: (implementation with one defect, the check or checks that must catch it)
WRONG = {
    # Ignores get_worker_info(): every worker of a rank reads the rank's whole share.
    "every_worker_reads_every_shard": (variant(WORKER, "worker, num_workers = 0, 1"), GRID),
    "ignores_the_rank": (variant(CONSUMER, "consumer, consumers = worker, num_workers"), GRID),
    # Seeded without the epoch: one order forever.
    "same_order_every_epoch": (variant(PERMUTATION, "np.random.default_rng(self.seed)"),
                               ORDER),
    # Each rank permutes with its own seed, so the ranks' shares overlap and leave gaps.
    "seed_plus_rank": (variant(PERMUTATION, "np.random.default_rng([self.seed + self.rank, "
                                            "self.epoch])"), GRID),
    # Each worker permutes with its own worker seed.
    "permutation_from_the_worker_seed": (variant(
        PERMUTATION, "np.random.default_rng(info.seed if info else self.seed)"), GRID),
    "loads_all_then_shuffles": (variant(LOOP, """mine = order[consumer::consumers]
        samples = [sample for s in mine for sample in samples_in_shard(self.shards[s])]
        random.Random(self.seed * 1000 + self.epoch).shuffle(samples)
        yield from samples"""), STREAMS),
    # Interleaves its shards round robin: every shard of its share is open at once.
    "opens_all_shards_at_once": (variant(LOOP, """streams = [samples_in_shard(self.shards[s])
                   for s in order[consumer::consumers]]
        for group in itertools.zip_longest(*streams):
            yield from (item for item in group if item is not None)"""), ONE_OPEN),
    # Splits samples, not shards: every reader opens every shard and keeps every n-th sample.
    # Each sample arrives once, but each shard is read (over HTTP: requested) n times.
    "every_nth_sample_of_every_shard": (variant(LOOP, """every = itertools.chain.from_iterable(
            samples_in_shard(self.shards[s]) for s in order)
        yield from itertools.islice(every, consumer, None, consumers)"""), ONE_READER),
    "raises_when_its_share_is_empty": (variant(LOOP, """mine = order[consumer::consumers]
        assert len(mine) > 0, "no shards for this worker"
        for s in mine:
            yield from samples_in_shard(self.shards[s])"""), MORE),
    # Contiguous blocks of len // consumers shards: the remainder shards are never read.
    "contiguous_chunks_drop_the_remainder": (variant(LOOP, """per = len(self.shards) // consumers
        for s in order[consumer * per:(consumer + 1) * per]:
            yield from samples_in_shard(self.shards[s])"""), GRID),
    # Counts epochs itself: works in one process, but each epoch's workers get a fresh copy.
    "epoch_counter_in_iter": (variant("""self.epoch = epoch
    def __iter__(self):""", """pass
    def __iter__(self):
        self.epoch += 1"""), FORK),
    "not_an_iterable_dataset": (variant("class ShardedSamples(IterableDataset):",
                                        "class ShardedSamples:"), FORK),
    # A lambda on the instance: fine in one process and in fork workers, but spawn pickles.
    "a_lambda_on_the_instance": (variant(
        "self.epoch = 0",
        "self.epoch = 0\n        self.order_of = lambda epoch: np.random.default_rng("
        "[seed, epoch]).permutation(len(self.shards))"), SPAWN),
}

# The epoch kept on the class: fork workers inherit it, spawn workers import the class afresh.
EPOCH_ON_THE_CLASS = variant("""        self.epoch = 0
    def set_epoch(self, epoch):
        self.epoch = epoch""", """    def set_epoch(self, epoch):
        ShardedSamples.epoch = epoch""").replace(
    "class ShardedSamples(IterableDataset):\n", "class ShardedSamples(IterableDataset):\n"
                                                "    epoch = 0\n")

# One defect, one deduction, a true reason: name -> (implementation, the checks that lose
# points, the checks that must keep them, words the message of each losing check must contain).
ONE_DEDUCTION = {
    "loads_all_then_shuffles": (WRONG["loads_all_then_shuffles"][0], {STREAMS},
                                {ONCE, GRID, MORE, ORDER, ONE_OPEN},
                                {STREAMS: "memory grew by"}),
    "opens_all_shards_at_once": (WRONG["opens_all_shards_at_once"][0], {ONE_OPEN},
                                 {ONCE, GRID, ORDER, STREAMS},
                                 {ONE_OPEN: "shard files were open at once"}),
    "every_nth_sample_of_every_shard": (WRONG["every_nth_sample_of_every_shard"][0],
                                        {ONE_READER}, {ONCE, GRID, GRIDS, MORE, ORDER, ONE_OPEN,
                                                      FORK},
                                        {ONE_READER: "each of the 13 shard files was opened "
                                                     "by all 4 readers"}),
    # Duplicated samples are the grid checks' deduction: the opens check judges only epochs
    # where every sample arrived once.
    "every_worker_reads_every_shard": (WRONG["every_worker_reads_every_shard"][0],
                                       {GRID, MORE, FORK},
                                       {ONCE, ORDER, STREAMS, ONE_OPEN, ONE_READER},
                                       {GRID: "The 2 workers of rank 0 yielded the same",
                                        FORK: "75 seen more than once"}),
    "ignores_the_rank": (WRONG["ignores_the_rank"][0], {GRID, MORE}, {ONCE, ORDER, FORK},
                         {GRID: "Every rank yielded the same 75 samples"}),
    "same_order_every_epoch": (WRONG["same_order_every_epoch"][0], {ORDER, FORK},
                               {ONCE, GRID, MORE},
                               {ORDER: "same order after set_epoch(0) and after set_epoch(1)",
                                FORK: "the same order at epoch 1"}),
    "seed_plus_rank": (WRONG["seed_plus_rank"][0], {GRID}, {ONCE, ORDER, FORK},
                       {GRID: "4 consumers over 13 shards), epoch 0 yielded"}),
    "contiguous_chunks_drop_the_remainder": (WRONG["contiguous_chunks_drop_the_remainder"][0],
                                             {GRID, MORE, FORK}, {ONCE, ORDER},
                                             {GRID: "No rank or worker yielded any sample of "
                                                    "1 shard (shard-"}),
    "raises_when_its_share_is_empty": (WRONG["raises_when_its_share_is_empty"][0],
                                       {MORE, GRIDS}, {ONCE, GRID, FORK},
                                       {MORE: "AssertionError: no shards for this worker"}),
    "epoch_counter_in_iter": (WRONG["epoch_counter_in_iter"][0], {ORDER, FORK}, {ONCE, GRID},
                              {ORDER: "yielded different orders",
                               FORK: "the same order at epoch 1"}),
    "a_lambda_on_the_instance": (WRONG["a_lambda_on_the_instance"][0], {SPAWN},
                                 {ONCE, GRID, FORK}, {SPAWN: "`order_of`"}),
    # Reads the tar itself and keeps "the handle" on the instance, as notebook 05 taught for
    # HDF5: one shard open at a time (rebinding closes the last one), but the last stays open.
    "keeps_the_last_shard_open": (TAR_READER + variant(LOOP, LOOP.splitlines()[0] + """
            self.file = open(self.shards[s], "rb")
            members = tar_file_expander([{"url": self.shards[s], "stream": self.file}])
            for sample in group_by_keys(members):
                yield np.load(io.BytesIO(sample["npy"])), int(sample["cls"])"""), {ONE_OPEN},
                                  {ONCE, GRID, STREAMS},
                                  {ONE_OPEN: "after the epoch's last sample"}),
    "epoch_on_the_class": (EPOCH_ON_THE_CLASS, {SPAWN}, {ONCE, ORDER, FORK},
                           {SPAWN: "the same order at epoch 1"}),
}

CORRECT = {
    "reference": REFERENCE,
    "array_split_blocks": variant(LOOP, """for s in np.array_split(order, consumers)[consumer]:
            yield from samples_in_shard(self.shards[s])"""),
    # A small shuffle buffer inside each shard, seeded from (seed, epoch, shard).
    "shuffles_within_each_shard": variant(LOOP, """for s in order[consumer::consumers]:
            rng = np.random.default_rng([self.seed, self.epoch, int(s)])
            buffer = []
            for sample in samples_in_shard(self.shards[s]):
                buffer.append(sample)
                if len(buffer) == 4:
                    yield buffer.pop(int(rng.integers(len(buffer))))
            rng.shuffle(buffer)
            yield from buffer"""),
    "random_shuffle_of_a_copy": HEADER + """
class ShardedSamples(IterableDataset):
    def __init__(self, shards, rank=0, world_size=1, seed=0):
        self.shards = [str(s) for s in shards]
        self.rank, self.world_size, self.seed, self.epoch = rank, world_size, seed, 0
    def set_epoch(self, epoch):
        self.epoch = int(epoch)
    def __iter__(self):
        info = get_worker_info()
        workers = 1 if info is None else info.num_workers
        me = self.rank * workers + (0 if info is None else info.id)
        shards = list(self.shards)
        random.Random(self.seed * 1000 + self.epoch).shuffle(shards)
        for shard in shards[me::self.world_size * workers]:
            for image, label in samples_in_shard(shard):
                yield image, label
""",
    # `tarfile.open(path)` opens each file four times (probing gzip, bz2 and xz first): still
    # one reader per shard, which is what ONE_READER counts.
    "tarfile_open_of_its_own_shards": "import io, tarfile\n" + variant(
        LOOP, LOOP.splitlines()[0] + """
            with tarfile.open(self.shards[s]) as tar:
                parts = {}
                for member in tar:
                    key, ext = member.name.split(".", 1)
                    parts.setdefault(key, {})[ext] = tar.extractfile(member).read()
                    if len(parts[key]) == 2:
                        sample = parts.pop(key)
                        yield np.load(io.BytesIO(sample["npy"])), int(sample["cls"])"""),
    "islice_share": variant(LOOP, """for s in itertools.islice(order, consumer, None, consumers):
            yield from samples_in_shard(self.shards[s])"""),
}
# Spawn workers cost seconds per epoch: the reference goes through them, every style through
# all the other checks.
CORRECT_IN_SPAWN = ("reference",)


def _submission(source: str) -> dict:
    return {"ShardedSamples": define(source, "ShardedSamples")}


def test_fixture_shards_hold_each_sample_under_its_index():
    """Does the small fixture hold sample i, with its own image, under label i, in order?"""
    from memcourse.shards import samples_in_shard, shard_paths

    n, per, height, width = SMALL_LAYOUT
    paths = shard_paths(make_fixtures()["shards"])
    assert len(paths) == -(-n // per)
    seen = [(image, label) for path in paths for image, label in samples_in_shard(path)]
    assert [label for _, label in seen] == list(range(n))
    for image, label in seen:
        assert image.dtype == "uint8" and (image == fixture_image(label, height, width)).all()


def test_module_reference_yields_what_the_notebook_solution_yields():
    """Does the module's torch-free reference split and order shards as the solution does?"""
    from torch.utils.data._utils import worker as torch_worker

    from memcourse.shards import shard_paths

    shards = [str(p) for p in shard_paths(make_fixtures()["shards"])]
    solution = define(REFERENCE, "ShardedSamples")
    for rank, world, worker, workers, epoch in [(0, 1, 0, 0, 0), (1, 2, 1, 2, 3), (2, 5, 0, 2, 1)]:
        got = []
        for cls in (ReferenceShardedSamples, solution):
            ds = cls(shards, rank=rank, world_size=world, seed=3)
            ds.set_epoch(epoch)
            if workers:
                torch_worker._worker_info = torch_worker.WorkerInfo(
                    id=worker, num_workers=workers, seed=0, dataset=ds)
            try:
                got.append([label for _, label in ds])
            finally:
                torch_worker._worker_info = None
        assert got[0] == got[1] and got[0], (rank, world, worker, workers, epoch)


@pytest.mark.parametrize("name", sorted(WRONG))
def test_wrong_sharded_samples_loses_points(name):
    """Is each defective ShardedSamples caught, by the check aimed at its defect?"""
    source, expected = WRONG[name]
    results = verdicts(EXERCISE, _submission(source), aimed(expected))
    assert expected in failing(results), describe(results)


@pytest.mark.parametrize("name", sorted(ONE_DEDUCTION))
def test_one_defect_loses_only_its_own_points(name):
    """Does each defect lose exactly the checks that observe it, each saying what it saw?"""
    source, lose, keep, says = ONE_DEDUCTION[name]
    assert_deductions(EXERCISE, _submission(source), lose, keep, says)


@pytest.mark.parametrize("name", sorted(CORRECT))
def test_correct_sharded_samples_gets_full_marks(name):
    """Does every correct ShardedSamples, however written, pass every check (spawn workers for
    the styles in CORRECT_IN_SPAWN)?"""
    checks = None if name in CORRECT_IN_SPAWN else [
        c.name for c in EXERCISE.checks if c.name != SPAWN]
    results = verdicts(EXERCISE, _submission(CORRECT[name]), checks)
    assert not failing(results), describe(results)


def test_stub_is_not_attempted():
    """Is the release stub reported as not attempted, not as wrong?"""
    stub = define(HEADER + """
class ShardedSamples(IterableDataset):
    def __init__(self, shards, rank=0, world_size=1, seed=0):
        raise NotImplementedError()
    def set_epoch(self, epoch):
        raise NotImplementedError()
    def __iter__(self):
        raise NotImplementedError()
""", "ShardedSamples")
    results = verdicts(EXERCISE, {"ShardedSamples": stub})
    assert {v.status for v in results.values()} == {"not_attempted"}, describe(results)
