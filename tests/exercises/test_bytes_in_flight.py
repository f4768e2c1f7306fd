"""Do the predict_bytes_in_flight checks fail wrong predictions and pass other correct ones?"""

from __future__ import annotations

import pytest

from autograder.exercises import bytes_in_flight
from autograder.exercises.bytes_in_flight import EXERCISE
from tests.exercises.catalogue import aimed, define, describe, failing, verdicts

NAME = "predict_bytes_in_flight"

REFERENCE = """
import math, torch

def predict_bytes_in_flight(batch_size, sample_shape, dtype, num_workers, prefetch_factor=2,
                            pin_memory=False):
    one_batch = batch_size * math.prod(sample_shape) * torch.tensor([], dtype=dtype).element_size()
    prefetched = num_workers * prefetch_factor if num_workers > 0 else 0
    return (prefetched + 1 + (1 if pin_memory else 0)) * one_batch
"""


def _variant(old: str, new: str) -> str:
    assert old in REFERENCE, old
    return REFERENCE.replace(old, new)


# Each wrong implementation has one defect, and the check expected to catch it.
WRONG = {
    # The guide: one item per worker.
    "guide_arithmetic": ("""
import math, torch

def predict_bytes_in_flight(batch_size, sample_shape, dtype, num_workers, prefetch_factor=2,
                            pin_memory=False):
    return num_workers * math.prod(sample_shape) * dtype.itemsize
""", "bytes_in_flight_values"),
    "forgets_batch_in_use": (_variant("(prefetched + 1 +", "(prefetched +"),
                             "bytes_in_flight_values"),
    "one_byte_per_element": (_variant(" * torch.tensor([], dtype=dtype).element_size()", ""),
                             "bytes_in_flight_values"),
    "prefetch_factor_fixed_at_2": (_variant("num_workers * prefetch_factor if",
                                            "num_workers * 2 if"), "bytes_in_flight_values"),
    "returns_mib": (_variant("return (prefetched + 1 + (1 if pin_memory else 0)) * one_batch",
                             "return (prefetched + 1 + (1 if pin_memory else 0)) * one_batch "
                             "/ 2**20"), "bytes_in_flight_values"),
    "ignores_pin_memory": (_variant(" + (1 if pin_memory else 0)", ""),
                           "bytes_in_flight_edge_cases"),
    "prefetches_without_workers": (_variant(
        "num_workers * prefetch_factor if num_workers > 0 else 0",
        "max(num_workers, 1) * prefetch_factor"), "bytes_in_flight_edge_cases"),
    "nothing_without_workers": (_variant(
        "return (prefetched", "if num_workers == 0:\n        return 0\n    return (prefetched"),
        "bytes_in_flight_edge_cases"),
    # Right on the visible configurations only (as if tuned to them), wrong elsewhere: the
    # measurement against real DataLoaders catches it.
    "tuned_to_visible_values": (_variant(
        "prefetched = num_workers * prefetch_factor if num_workers > 0 else 0",
        "prefetched = num_workers * prefetch_factor if num_workers > 0 else 0\n"
        "    if (num_workers, prefetch_factor) not in ((2, 2), (4, 3), (1, 1)):\n"
        "        prefetched = num_workers * 2"), "bytes_in_flight_matches_measurement"),
}

CORRECT = {
    "reference": REFERENCE,
    # NumPy for the arithmetic, the dtype's size from its name, a float answer.
    "numpy_style": """
import numpy as np

def predict_bytes_in_flight(batch_size, sample_shape, dtype, num_workers, prefetch_factor=2,
                            pin_memory=False):
    itemsize = np.dtype(str(dtype).removeprefix("torch.")).itemsize
    per_batch = float(batch_size) * float(np.prod(sample_shape)) * itemsize
    batches = 1.0
    if num_workers:
        batches += num_workers * prefetch_factor
    if pin_memory:
        batches += 1
    return per_batch * batches
""",
    # Measures one sample with torch itself and counts the batches in a list.
    "empty_tensor_style": """
import torch

def predict_bytes_in_flight(batch_size, sample_shape, dtype, num_workers, prefetch_factor=2,
                            pin_memory=False):
    sample = torch.empty(sample_shape, dtype=dtype)
    batch = sample.element_size() * sample.numel() * batch_size
    held = ["in use"]
    if num_workers > 0:
        held += ["prefetched"] * (num_workers * prefetch_factor)
    if pin_memory:
        held.append("pinned copy")
    return torch.tensor(len(held) * batch)
""",
}


def test_reference_formula_is_the_documented_one():
    """Does the judge's own formula give (workers x prefetch + 1 [+1 pinned]) batches?"""
    batch = bytes_in_flight.batch_bytes(32, (3, 64, 64), "float32")
    assert batch == 32 * 3 * 64 * 64 * 4
    assert bytes_in_flight.reference(32, (3, 64, 64), "float32", 2, 2) == 5 * batch
    assert bytes_in_flight.reference(32, (3, 64, 64), "float32", 0, 2) == batch
    assert bytes_in_flight.reference(32, (3, 64, 64), "float32", 0, 2, True) == 2 * batch
    assert bytes_in_flight.reference(32, (3, 64, 64), "float32", 3, 1, True) == 5 * batch


def test_shm_bytes_counts_a_shared_tensor_once():
    """Does footprint.shm_bytes see a tensor moved to shared memory, counted once?"""
    import torch

    from memcourse import footprint

    before = footprint.shm_bytes()
    shared = torch.ones(3 * 2**20, dtype=torch.uint8).share_memory_()
    view = shared[10:]  # a second reference to the same storage must not count twice
    grown = footprint.shm_bytes() - before
    assert 3 * 2**20 <= grown < 3 * 2**20 + 2**16, grown
    del shared, view


def test_stalled_loader_without_workers_holds_one_ordinary_batch():
    """With num_workers=0 is the held batch outside shared memory and nothing else held?"""
    import torch

    from memcourse import footprint

    held = footprint.held_batch_bytes(footprint.SyntheticImages(100, (3, 8, 8), torch.float32),
                                      4, 0, settle_s=0.1)
    assert held == {"shm_bytes": 0, "batch_bytes": 4 * 3 * 8 * 8 * 4, "batch_in_shm": False}


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(WRONG))
def test_wrong_implementation_loses_points(name):
    """Is each wrong prediction caught, by the check aimed at its defect?"""
    source, expected = WRONG[name]
    results = verdicts(EXERCISE, {NAME: define(source, NAME)}, aimed(expected))
    assert expected in failing(results), describe(results)
    assert sum(v.points for v in results.values()) < sum(c.points for c in EXERCISE.checks)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(CORRECT))
def test_correct_implementation_gets_full_marks(name):
    """Does every correct prediction, however written, pass every check?"""
    results = verdicts(EXERCISE, {NAME: define(CORRECT[name], NAME)})
    assert not failing(results), describe(results)


@pytest.mark.slow
def test_measurement_failure_reports_the_measured_batches():
    """Does the measurement check say how many batches a real DataLoader held?"""
    results = verdicts(EXERCISE, {NAME: define(WRONG["forgets_batch_in_use"][0], NAME)},
                       ["matches_measurement"])
    message = results["bytes_in_flight_matches_measurement"].message
    assert "held" in message and "batches of" in message, describe(results)


@pytest.mark.slow
def test_edge_case_message_says_what_the_answer_shows():
    """Is a prediction right but for the pinned copy told about pin_memory, even on the row
    that also has num_workers=0 (not told that nothing is prefetched without workers)?"""
    results = verdicts(EXERCISE, {NAME: define(WRONG["ignores_pin_memory"][0], NAME)},
                       ["edge_cases"])
    message = results["bytes_in_flight_edge_cases"].message
    assert "without `pin_memory`" in message and "nothing is prefetched" not in message, \
        describe(results)


@pytest.mark.slow
def test_stub_is_not_attempted():
    """Is the release stub reported as not attempted, not as wrong?"""
    stub = define("""
def predict_bytes_in_flight(batch_size, sample_shape, dtype, num_workers, prefetch_factor=2,
                            pin_memory=False):
    raise NotImplementedError()
""", NAME)
    results = verdicts(EXERCISE, {NAME: stub})
    assert {v.status for v in results.values()} == {"not_attempted"}, describe(results)
