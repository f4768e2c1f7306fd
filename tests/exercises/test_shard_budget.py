"""Do the shard_budget checks fail wrong `choose_samples_per_shard`s and pass correct ones?

The rule's own tests (against a brute-force search, and the case tables) are fast; the
catalogue runs the checks, which write shards and stream them from a real HTTP server in the
check child, and is marked slow.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from autograder.engine.runner import Trace
from autograder.engine.spec import Fail
from autograder.exercises._fixtures import fixture_labels
from autograder.exercises.shard_budget import (
    EXERCISE,
    FIXTURE_SEED,
    FIXTURE_SHAPE,
    IMPOSSIBLE,
    OTHER_CASES,
    OTHER_IMPOSSIBLE,
    VISIBLE,
    Case,
    _plain,
    judge_meets_request_budget,
    judge_most_shards,
    reference_for,
    reference_samples_per_shard,
)
from tests.exercises.catalogue import (
    aimed,
    assert_deductions,
    define,
    describe,
    failing,
    verdicts,
)

SUBJECT = "choose_samples_per_shard"
BUDGET = "shard_budget_meets_request_budget"
BUSY = "shard_budget_keeps_every_worker_busy"
MOST = "shard_budget_most_shards"
REFUSES = "shard_budget_refuses_impossible"
OTHER = "shard_budget_other_cases"
REFUSES_OTHER = "shard_budget_refuses_other_impossible"
ALL = {c.name for c in EXERCISE.checks}
VISIBLE_CHECKS = {BUDGET, BUSY, MOST, REFUSES}

HEADER = """
import math
import numpy as np
"""

REFERENCE = HEADER + """
def choose_samples_per_shard(n_samples, world_size, num_workers, max_requests):
    consumers = world_size * max(1, num_workers)
    per_shard = math.ceil(n_samples / min(max_requests, n_samples))
    shards = math.ceil(n_samples / per_shard)
    if shards < consumers:
        raise ValueError(f"{consumers} consumers need {consumers} shards, but only {shards} "
                         f"fit within {max_requests} requests")
    return per_shard
"""


def _variant(consumers: str = "world_size * max(1, num_workers)",
             refuse: str = "math.ceil(n_samples / best) < consumers",
             error: str = 'ValueError(f"{consumers} consumers, too few shards")',
             answer: str = "best") -> str:
    """The reference with one part replaced: how consumers are counted, when it refuses, what
    it raises, what it returns (`best`: the reference's size)."""
    return HEADER + f"""
def choose_samples_per_shard(n_samples, world_size, num_workers, max_requests):
    consumers = {consumers}
    best = math.ceil(n_samples / min(max_requests, n_samples))
    if {refuse}:
        raise {error}
    return {answer}
"""


# Each wrong implementation has one defect, and the check expected to catch it.
WRONG = {
    # Rounds down: the remainder spills into shards past the budget.
    "floor_division": (_variant(refuse="min(max_requests, n_samples) < consumers",
                                answer="max(1, n_samples // max_requests)"), BUDGET),
    "returns_a_float": (_variant(answer="np.ceil(n_samples / min(max_requests, n_samples))"),
                        BUDGET),
    # Counts one consumer per rank: its workers are forgotten, so it never refuses for them.
    "ignores_workers": (_variant(consumers="world_size"), REFUSES),
    "one_shard_for_everything": (_variant(answer="n_samples"), BUSY),
    "one_shard_per_rank": (_variant(answer="math.ceil(n_samples / world_size)"), BUSY),
    "a_fixed_1000": (_variant(answer="1000"), BUSY),
    "one_shard_per_consumer": (_variant(answer="math.ceil(n_samples / consumers)"), MOST),
    # Returns how many shards, not how many samples in each.
    "returns_the_shard_count": (_variant(answer="math.ceil(n_samples / best)"), MOST),
    "no_value_error": (_variant(refuse="False"), REFUSES),
    "raises_another_type": (_variant(error='RuntimeError("too many consumers")'), REFUSES),
    "value_error_without_a_message": (_variant(error="ValueError()"), REFUSES),
    "returns_none_when_impossible": (HEADER + """
def choose_samples_per_shard(n_samples, world_size, num_workers, max_requests):
    consumers = world_size * max(1, num_workers)
    best = math.ceil(n_samples / min(max_requests, n_samples))
    if math.ceil(n_samples / best) < consumers:
        return None
    return best
""", REFUSES),
    # Raises for the wrong reason: a budget exactly equal to the consumers is enough.
    "refuses_a_budget_equal_to_the_consumers": (
        _variant(refuse="math.ceil(n_samples / best) <= consumers"), OTHER),
    # Divides by the workers: ZeroDivisionError when the main process reads.
    "divides_by_the_workers": (
        _variant(refuse="math.ceil(n_samples / best) / (world_size * num_workers) < 1"), OTHER),
    # Compares the consumers with the shards it planned, min(max_requests, n_samples), not
    # with those its rounded-up size writes.
    "checks_the_planned_shards": (
        _variant(refuse="min(max_requests, n_samples) < consumers"), REFUSES_OTHER),
    # num_workers=0 counted as no consumer at all.
    "no_workers_means_no_consumers": (_variant(consumers="world_size * num_workers"),
                                      REFUSES_OTHER),
}

# One defect, one deduction, a true reason: name -> (the checks that lose points, the checks
# that must keep them, words the message of each losing check must contain).
ONE_DEDUCTION = {
    "floor_division": ({BUDGET, OTHER, REFUSES_OTHER}, {BUSY, MOST, REFUSES},
                       {BUDGET: "22 GET requests (counted by the server) against a budget of 20"}),
    "returns_a_float": ({BUDGET}, ALL - {BUDGET}, {BUDGET: "returned 7.0, a float64"}),
    "ignores_workers": ({REFUSES, REFUSES_OTHER}, {BUDGET, BUSY, MOST, OTHER},
                        {REFUSES: "2 of them got no shard"}),
    "one_shard_per_consumer": ({MOST, OTHER}, {BUDGET, BUSY, REFUSES, REFUSES_OTHER},
                               {MOST: "7 per shard makes 19 shards"}),
    "refuses_a_budget_equal_to_the_consumers": ({OTHER}, ALL - {OTHER},
                                                {OTHER: "raised ValueError"}),
    "checks_the_planned_shards": ({REFUSES_OTHER}, ALL - {REFUSES_OTHER},
                                  {REFUSES_OTHER: "returned 2 instead of raising ValueError"}),
}

CORRECT = {
    "reference": REFERENCE,
    "negative_floor_division": """
def choose_samples_per_shard(n_samples, world_size, num_workers, max_requests):
    consumers = world_size * (num_workers or 1)
    per_shard = -(-n_samples // max_requests)
    shards = -(-n_samples // per_shard)
    if shards < consumers:
        raise ValueError("more consumers than shards within the budget")
    return per_shard
""",
    "a_loop_searching_upward": """
def choose_samples_per_shard(n_samples, world_size, num_workers, max_requests):
    consumers = world_size * max(1, num_workers)
    for per_shard in range(1, n_samples + 1):
        shards = (n_samples + per_shard - 1) // per_shard
        if shards <= max_requests:
            if shards < consumers:
                break
            return per_shard
    raise ValueError(f"no shard size gives {consumers} consumers a shard each within "
                     f"{max_requests} requests")
""",
    # Returns a NumPy integer, which counts as a whole number.
    "numpy": HEADER + """
def choose_samples_per_shard(n_samples, world_size, num_workers, max_requests):
    sizes = np.arange(1, n_samples + 1)
    shards = -(-n_samples // sizes)
    ok = (shards <= max_requests) & (shards >= world_size * max(1, num_workers))
    if not ok.any():
        raise ValueError("no shard size meets both the request budget and the consumers")
    return sizes[ok].min()
""",
}


# ----------------------------------------------------------------------------- the rule


def brute_force(case: Case) -> int | None:
    """The smallest size whose shards fit the budget and reach every consumer, by trying all."""
    for k in range(1, case.n_samples + 1):
        if case.consumers <= math.ceil(case.n_samples / k) <= case.max_requests:
            return k
    return None


def test_reference_is_the_smallest_size_that_meets_both():
    """Does the reference agree with trying every size, uneven counts and tight budgets
    included?"""
    for n in range(1, 41):
        for budget in range(1, 46):
            for world in (1, 2, 3):
                for workers in (0, 1, 2, 3):
                    case = Case(n, world, workers, budget)
                    assert reference_for(case) == brute_force(case), case


def test_the_edge_the_shards_actually_written_decide():
    """10 samples, 6 consumers, 6 requests: the budget equals the consumers, yet no size works
    (2 per shard write 5 shards); 48 samples with 8 consumers and 8 requests work exactly."""
    with pytest.raises(ValueError, match="6 consumers"):
        reference_samples_per_shard(10, 2, 3, 6)
    assert reference_samples_per_shard(48, 2, 4, 8) == 6
    assert reference_samples_per_shard(60, 1, 2, 18) == 4  # 15 shards: no size gives 18


def test_the_case_tables_are_what_they_say():
    """Are the answerable cases answerable, the impossible ones impossible, and every case
    within the fixture?"""
    for case in [VISIBLE, *OTHER_CASES]:
        assert reference_for(case) is not None, case
    for case in [*IMPOSSIBLE, *OTHER_IMPOSSIBLE]:
        assert reference_for(case) is None, case
    assert max(c.n_samples for c in [VISIBLE, *OTHER_CASES, *IMPOSSIBLE, *OTHER_IMPOSSIBLE]) \
        <= FIXTURE_SHAPE[0]
    # The visible case is uneven: floor division goes over the budget there.
    assert math.ceil(VISIBLE.n_samples / (VISIBLE.n_samples // VISIBLE.max_requests)) \
        > VISIBLE.max_requests
    assert any(c.num_workers == 0 for c in OTHER_CASES) \
        and any(c.num_workers == 0 for c in OTHER_IMPOSSIBLE)
    assert any(c.max_requests == c.consumers for c in OTHER_CASES) \
        and any(c.max_requests == c.consumers for c in OTHER_IMPOSSIBLE)


def test_return_values_are_read_as_whole_numbers_or_not():
    """NumPy integers count as ints; bools, floats and other objects do not."""
    assert _plain(np.int64(7))["kind"] == "int" and _plain(7)["value"] == 7
    assert _plain(True)["kind"] == "bool" and _plain(True)["value"] is None
    assert _plain(np.float64(7.0)) == {"kind": "float64", "value": 7.0, "shown": "7.0"}
    assert _plain("7")["value"] is None and _plain(None)["value"] is None


def _trace(answer: dict, measured: dict | None, labels: np.ndarray | None = None) -> Trace:
    trace = Trace("x", data={"results": [{"answer": answer, "measured": measured}]})
    if labels is not None:
        trace.arrays = {"labels_0": labels, "consumer_0": np.zeros_like(labels)}
    return trace


def test_a_lost_sample_is_the_checkers_error_not_a_failure():
    """Does a judge blame the checker (not Fail) when the epoch did not bring every sample
    once, and fail a learner who returned a float only in the check that judges the type?"""
    labels = fixture_labels(FIXTURE_SHAPE[0], FIXTURE_SEED)[:VISIBLE.n_samples]
    measured = {"shards": 19, "gets": 19, "requests": 38, "samples_per_consumer": [1] * 6}
    seven = {"kind": "int", "value": 7, "shown": "7"}
    judge_meets_request_budget(_trace(seven, measured, labels))
    with pytest.raises(RuntimeError, match="not each sample once"):
        judge_meets_request_budget(_trace(seven, measured, labels[1:]))
    as_float = {"kind": "float", "value": 7.0, "shown": "7.0"}
    with pytest.raises(Fail, match="a float"):
        judge_meets_request_budget(_trace(as_float, measured, labels))
    judge_most_shards(_trace(as_float, measured, labels))


# ----------------------------------------------------------------------------- the catalogue


def _submission(source: str) -> dict:
    return {SUBJECT: define(source, SUBJECT)}


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(set(WRONG) - set(ONE_DEDUCTION)))
def test_wrong_choose_samples_per_shard_loses_points(name):
    """Is each defective rule caught, by the check aimed at its defect? (Those in
    ONE_DEDUCTION are tested there, more strictly.)"""
    source, expected = WRONG[name]
    results = verdicts(EXERCISE, _submission(source), aimed(expected))
    assert expected in failing(results), describe(results)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(ONE_DEDUCTION))
def test_one_defect_loses_only_its_own_points(name):
    """Does each defect lose exactly the checks that observe it, each saying what it saw?"""
    lose, keep, says = ONE_DEDUCTION[name]
    source, expected = WRONG[name]
    assert expected in lose
    assert_deductions(EXERCISE, _submission(source), lose, keep, says)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(CORRECT))
def test_correct_choose_samples_per_shard_gets_full_marks(name):
    """Does every correct rule, however written, pass every check?"""
    results = verdicts(EXERCISE, _submission(CORRECT[name]))
    assert not failing(results), describe(results)


@pytest.mark.slow
def test_stub_is_not_attempted():
    """Is the release stub reported as not attempted, not as wrong?"""
    stub = """
def choose_samples_per_shard(n_samples, world_size, num_workers, max_requests):
    raise NotImplementedError()
"""
    results = verdicts(EXERCISE, _submission(stub))
    assert {v.status for v in results.values()} == {"not_attempted"}, describe(results)
