"""Do the choose_num_workers checks fail wrong rules and pass other correct ones?"""

from __future__ import annotations

import pytest

from autograder.exercises.choose_num_workers import CASES, EXERCISE, reference_choose_num_workers
from tests.exercises.catalogue import (
    aimed,
    assert_deductions,
    define,
    describe,
    failing,
    verdicts,
)

pytestmark = pytest.mark.slow

REFERENCE = """
def choose_num_workers(measurements, tolerance=0.05):
    best = max(measurements.values())
    return min(n for n, rate in measurements.items() if rate >= (1 - tolerance) * best)
"""

# Each wrong rule has one defect, and the check expected to catch it.
WRONG = {
    "strictly_fastest": ("""
def choose_num_workers(measurements, tolerance=0.05):
    return max(measurements, key=measurements.get)
""", "choose_num_workers_prefers_fewer_workers"),
    "returns_the_throughput": ("""
def choose_num_workers(measurements, tolerance=0.05):
    best = max(measurements.values())
    return min(r for r in measurements.values() if r >= (1 - tolerance) * best)
""", "choose_num_workers_picks_the_fastest"),
    "never_zero": ("""
def choose_num_workers(measurements, tolerance=0.05):
    best = max(measurements.values())
    return min(n for n, r in measurements.items() if r >= (1 - tolerance) * best and n > 0)
""", "choose_num_workers_zero_workers_when_fastest"),
    "first_in_dict_order": ("""
def choose_num_workers(measurements, tolerance=0.05):
    best = max(measurements.values())
    for n, rate in measurements.items():
        if rate >= (1 - tolerance) * best:
            return n
""", "choose_num_workers_any_order"),
    "fixed_five_percent": ("""
def choose_num_workers(measurements, tolerance=0.05):
    best = max(measurements.values())
    return min(n for n, r in measurements.items() if r >= 0.95 * best)
""", "choose_num_workers_honours_tolerance"),
    "clamped_to_two_cores": ("""
def choose_num_workers(measurements, tolerance=0.05):
    cores = 2
    usable = {n: r for n, r in measurements.items() if n <= cores}
    best = max(usable.values())
    return min(n for n, r in usable.items() if r >= (1 - tolerance) * best)
""", "choose_num_workers_beyond_the_cores_only_when_faster"),
    "most_workers_within_tolerance": ("""
def choose_num_workers(measurements, tolerance=0.05):
    best = max(measurements.values())
    return max(n for n, r in measurements.items() if r >= (1 - tolerance) * best)
""", "choose_num_workers_prefers_fewer_workers"),
    "returns_a_float": ("""
def choose_num_workers(measurements, tolerance=0.05):
    best = max(measurements.values())
    return min(n for n, r in measurements.items() if r >= (1 - tolerance) * best) + 0.5
""", "choose_num_workers_picks_the_fastest"),
}

# One defect, one deduction, a true reason: name -> (implementation, the checks that lose
# points (every other check keeps them), words the message of each losing check must contain).
ONE_DEDUCTION = {
    # The right count as a float: the type is judged once, by the visible check; the others
    # judge the count.
    "returns_an_integral_float": ("""
def choose_num_workers(measurements, tolerance=0.05):
    best = max(measurements.values())
    return float(min(n for n, r in measurements.items() if r >= (1 - tolerance) * best))
""", {"choose_num_workers_picks_the_fastest"},
        {"choose_num_workers_picks_the_fastest": "(a float); return the number of workers as "
                                                 "an int"}),
}

CORRECT = {
    "reference": REFERENCE,
    "sorted_loop": """
def choose_num_workers(measurements, tolerance=0.05):
    threshold = (1.0 - tolerance) * max(measurements.values())
    for workers in sorted(measurements):
        if measurements[workers] >= threshold:
            return int(workers)
""",
    "numpy_relative": """
import numpy as np

def choose_num_workers(measurements, tolerance=0.05):
    counts = np.array(sorted(measurements))
    rates = np.array([measurements[c] for c in counts], dtype=float)
    good = rates / rates.max() >= 1 - tolerance
    return counts[np.argmax(good)]
""",
}


def test_the_cases_exercise_the_rule():
    """Does every case table have a unique answer that a strict maximum would not always give?"""
    strict_differs = 0
    for cases in CASES.values():
        for _description, table, tolerance in cases:
            tol = 0.05 if tolerance is None else tolerance
            answer = reference_choose_num_workers(table, tol)
            assert answer in table
            strict_differs += answer != max(table, key=table.get)
    assert strict_differs >= 5


@pytest.mark.parametrize("name", sorted(WRONG))
def test_wrong_rule_loses_points(name):
    """Is each defective rule caught, by the check aimed at its defect?"""
    source, expected = WRONG[name]
    submission = {"choose_num_workers": define(source, "choose_num_workers")}
    results = verdicts(EXERCISE, submission, aimed(expected))
    assert expected in failing(results), describe(results)
    assert sum(v.points for v in results.values()) < sum(c.points for c in EXERCISE.checks)


@pytest.mark.parametrize("name", sorted(ONE_DEDUCTION))
def test_one_defect_loses_only_its_own_points(name):
    """Does each defect lose exactly the checks that observe it, each saying what it saw?"""
    source, lose, says = ONE_DEDUCTION[name]
    assert_deductions(EXERCISE, {"choose_num_workers": define(source, "choose_num_workers")},
                      lose, None, says)


@pytest.mark.parametrize("name", sorted(CORRECT))
def test_correct_rule_gets_full_marks(name):
    """Does every correct rule, however written, pass every check?"""
    results = verdicts(EXERCISE, {"choose_num_workers": define(CORRECT[name],
                                                               "choose_num_workers")})
    assert not failing(results), describe(results)


def test_stub_is_not_attempted():
    """Is the release stub reported as not attempted, not as wrong?"""
    stub = define("""
def choose_num_workers(measurements, tolerance=0.05):
    raise NotImplementedError()
""", "choose_num_workers")
    results = verdicts(EXERCISE, {"choose_num_workers": stub})
    assert {v.status for v in results.values()} == {"not_attempted"}, describe(results)
