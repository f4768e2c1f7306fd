"""Do the worker_seeding checks fail wrong `seed_worker`s and pass other correct ones?"""

from __future__ import annotations

import numpy as np
import pytest

from autograder.exercises.worker_seeding import EXERCISE, untouched_draws
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
import random
import numpy as np
import torch
from torch.utils.data import get_worker_info
"""

REFERENCE = HEADER + """
def seed_worker(worker_id):
    info = get_worker_info()
    info.dataset.rng = np.random.default_rng(info.seed)
"""

SPAWN = "worker_seeding_distinct_spawn_workers"
DISTINCT = "worker_seeding_distinct_workers"
FOLLOWS = "worker_seeding_follows_the_loader_seed"
EPOCHS = "worker_seeding_new_draws_each_epoch"
FORK_CHECKS = {c.name for c in EXERCISE.checks} - {SPAWN}

# Each wrong seed_worker has one defect, and the check expected to catch it.
WRONG = {
    "does_nothing": (HEADER + """
def seed_worker(worker_id):
    pass
""", DISTINCT),
    # Seeds NumPy's global state (which PyTorch already seeds per worker): the dataset's own
    # Generator, made in __init__, is untouched.
    "seeds_the_global_numpy_state_with_the_worker_id": (HEADER + """
def seed_worker(worker_id):
    np.random.seed(worker_id)
""", DISTINCT),
    "seeds_python_random_only": (HEADER + """
def seed_worker(worker_id):
    random.seed(get_worker_info().seed)
""", DISTINCT),
    "a_fixed_seed": (HEADER + """
def seed_worker(worker_id):
    get_worker_info().dataset.rng = np.random.default_rng(42)
""", DISTINCT),
    # Derives the new seed from the generator copied from __init__: the same in every worker.
    "seeded_from_the_copied_generator": (HEADER + """
def seed_worker(worker_id):
    ds = get_worker_info().dataset
    ds.rng = np.random.default_rng(int(ds.rng.integers(2**32)))
""", DISTINCT),
    "fresh_entropy": (HEADER + """
def seed_worker(worker_id):
    get_worker_info().dataset.rng = np.random.default_rng()
""", FOLLOWS),
    "the_worker_id_alone": (HEADER + """
def seed_worker(worker_id):
    get_worker_info().dataset.rng = np.random.default_rng(worker_id)
""", EPOCHS),
    # Seeded once in the main process (like seeding in __init__), then shifted per worker.
    "seeded_once_in_the_main_process": (HEADER + """
MAIN_SEED = int(torch.initial_seed() % 2**32)

def seed_worker(worker_id):
    get_worker_info().dataset.rng = np.random.default_rng(MAIN_SEED + worker_id)
""", EPOCHS),
    "a_lambda": (HEADER + """
seed_worker = lambda worker_id: setattr(get_worker_info().dataset, "rng",
                                        np.random.default_rng(get_worker_info().seed))
""", SPAWN),
    "made_inside_another_function": (HEADER + """
def make_seeder(offset):
    def seeder(worker_id):
        info = get_worker_info()
        info.dataset.rng = np.random.default_rng(info.seed + offset)
    return seeder

seed_worker = make_seeder(0)
""", SPAWN),
}

# One defect, one deduction, a true reason: name -> (implementation, the checks that lose
# points, the checks that must keep them, words the message of each losing check must contain).
ONE_DEDUCTION = {
    "does_nothing": (WRONG["does_nothing"][0], {DISTINCT, FOLLOWS, EPOCHS}, set(),
                     {DISTINCT: "left the worker's `dataset.rng` as it was"}),
    "seeds_the_global_numpy_state_with_the_worker_id": (
        WRONG["seeds_the_global_numpy_state_with_the_worker_id"][0], {DISTINCT}, set(),
        {DISTINCT: "does not change a `Generator` object"}),
    "a_fixed_seed": (WRONG["a_fixed_seed"][0], {DISTINCT}, set(),
                     {DISTINCT: "a generator with the same seed"}),
    # The classic: different per worker, but the same every epoch and for every loader seed.
    "the_worker_id_alone": (WRONG["the_worker_id_alone"][0], {FOLLOWS, EPOCHS}, {DISTINCT},
                            {EPOCHS: "epoch 2 of one loader", FOLLOWS: "ignore the loader's"}),
    "fresh_entropy": (WRONG["fresh_entropy"][0], {FOLLOWS}, {DISTINCT, EPOCHS},
                      {FOLLOWS: "cannot be repeated"}),
    # Works with fork workers; pickle cannot find a lambda by name for spawn workers.
    "a_lambda": (WRONG["a_lambda"][0], {SPAWN}, set(FORK_CHECKS),
                 {SPAWN: "attribute lookup <lambda>"}),
}

CORRECT = {
    "reference": REFERENCE,
    "modulo_2_32": HEADER + """
def seed_worker(worker_id):
    info = get_worker_info()
    info.dataset.rng = np.random.default_rng(info.seed % 2**32)
""",
    "torch_initial_seed": HEADER + """
def seed_worker(worker_id):
    # in a worker, torch's seed is the worker's seed
    np.random.seed(torch.initial_seed() % 2**32)
    get_worker_info().dataset.rng = np.random.default_rng(torch.initial_seed())
""",
    "seed_sequence": HEADER + """
def seed_worker(worker_id):
    info = get_worker_info()
    sequence = np.random.SeedSequence([info.seed % 2**32, info.seed >> 32])
    info.dataset.rng = np.random.Generator(np.random.PCG64(sequence))
""",
    # Draws a seed from Python's `random`, which PyTorch seeded for this worker and epoch.
    "from_python_random": HEADER + """
def seed_worker(worker_id):
    dataset = get_worker_info().dataset
    dataset.rng = np.random.default_rng(random.getrandbits(64))
""",
    "a_named_def_assigned": HEADER + """
def _reseed(worker_id):
    info = get_worker_info()
    info.dataset.rng = np.random.default_rng([worker_id, info.seed])

seed_worker = _reseed
""",
}


def test_untouched_draws_are_what_the_dataset_draws():
    """Is the parent's copy of the untouched stream the dataset's own, draw for draw?"""
    from autograder.exercises.worker_seeding import AugmentDraws

    ds = AugmentDraws(6)
    assert [int(ds[i][2]) for i in range(6)] == untouched_draws(6)
    assert np.all(np.array([ds[i][1] for i in range(2)]) == -1)


@pytest.mark.parametrize("name", sorted(WRONG))
def test_wrong_seed_worker_loses_points(name):
    """Is each defective seed_worker caught, by the check aimed at its defect?"""
    source, expected = WRONG[name]
    submission = {"seed_worker": define(source, "seed_worker")}
    results = verdicts(EXERCISE, submission, aimed(expected))
    assert expected in failing(results), describe(results)
    assert sum(v.points for v in results.values()) < sum(c.points for c in EXERCISE.checks)


@pytest.mark.parametrize("name", sorted(ONE_DEDUCTION))
def test_one_defect_loses_only_its_own_points(name):
    """Does each defect lose exactly the checks that observe it, each saying what it saw?"""
    source, lose, keep, says = ONE_DEDUCTION[name]
    assert_deductions(EXERCISE, {"seed_worker": define(source, "seed_worker")}, lose, keep,
                      says)


@pytest.mark.parametrize("name", sorted(CORRECT))
def test_correct_seed_worker_gets_full_marks(name):
    """Does every correct seed_worker, however written, pass every check?"""
    results = verdicts(EXERCISE, {"seed_worker": define(CORRECT[name], "seed_worker")})
    assert not failing(results), describe(results)


def test_stub_is_not_attempted():
    """Is the release stub reported as not attempted, not as wrong?"""
    stub = define("""
def seed_worker(worker_id):
    raise NotImplementedError()
""", "seed_worker")
    results = verdicts(EXERCISE, {"seed_worker": stub})
    assert {v.status for v in results.values()} == {"not_attempted"}, describe(results)
