"""Do the measure_throughput checks fail wrong benchmarks and pass other correct ones?"""

from __future__ import annotations

import pytest

from autograder.exercises.measure_throughput import EXERCISE
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
import time
from torch.utils.data import DataLoader
"""

REFERENCE = HEADER + """
def measure_throughput(dataset, num_workers, batch_size=32, num_batches=20):
    batches = iter(DataLoader(dataset, batch_size=batch_size, num_workers=num_workers))
    for _ in range(max(1, num_workers)):
        next(batches)
    samples, start = 0, time.perf_counter()
    for _, (images, labels) in zip(range(num_batches), batches):
        samples += len(images)
    return samples / (time.perf_counter() - start)
"""


def _variant(old: str, new: str) -> str:
    assert old in REFERENCE, old
    return REFERENCE.replace(old, new)


# Each wrong benchmark has one defect, and the check expected to catch it.
WRONG = {
    "batches_per_second": (_variant("samples += len(images)", "samples += 1"),
                           "measure_throughput_samples_per_second"),
    "seconds_per_sample": (_variant("return samples / (time.perf_counter() - start)",
                                    "return (time.perf_counter() - start) / samples"),
                           "measure_throughput_samples_per_second"),
    "ignores_num_workers": (_variant("num_workers=num_workers", "num_workers=0"),
                            "measure_throughput_uses_num_workers"),
    "times_the_warm_up": (HEADER + """
def measure_throughput(dataset, num_workers, batch_size=32, num_batches=20):
    start, samples = time.perf_counter(), 0
    loader = DataLoader(dataset, batch_size=batch_size, num_workers=num_workers)
    for _, (images, labels) in zip(range(num_batches + 1), loader):
        samples += len(images)
    return samples / (time.perf_counter() - start)
""", "measure_throughput_skips_start_up"),
    "assumes_every_batch_arrived": (_variant(
        "return samples / (time.perf_counter() - start)",
        "return num_batches * batch_size / (time.perf_counter() - start)"),
        "measure_throughput_stops_at_the_end"),
    "ignores_batch_size": (_variant("batch_size=batch_size,", "batch_size=32,"),
                           "measure_throughput_reads_what_it_is_asked"),
    "reads_the_whole_dataset": (_variant("for _, (images, labels) in zip(range(num_batches), "
                                         "batches):", "for images, labels in batches:"),
                                "measure_throughput_reads_what_it_is_asked"),
}

# One defect, one deduction, a true reason: name -> (implementation, the checks that lose
# points, the checks that must keep them, words the message of each losing check must contain).
ONE_DEDUCTION = {
    # The worker check says what it saw: no item read outside the calling process...
    "ignores_num_workers": (WRONG["ignores_num_workers"][0],
                            {"measure_throughput_uses_num_workers"},
                            {"measure_throughput_samples_per_second"},
                            {"measure_throughput_uses_num_workers": "by no worker"}),
    # ...or workers that ran, with a rate wrong for another reason: not "pass num_workers".
    "rate_per_worker": (_variant("return samples / (time.perf_counter() - start)",
                                 "return samples / (time.perf_counter() - start) / "
                                 "max(1, num_workers)"),
                        {"measure_throughput_uses_num_workers"},
                        {"measure_throughput_samples_per_second"},
                        {"measure_throughput_uses_num_workers": "workers did run"}),
    "rounds_to_int": (_variant("return samples / (time.perf_counter() - start)",
                               "return int(samples / (time.perf_counter() - start))"),
                      {"measure_throughput_samples_per_second"},
                      {"measure_throughput_uses_num_workers",
                       "measure_throughput_stops_at_the_end"},
                      {"measure_throughput_samples_per_second": "as an int"}),
}

CORRECT = {
    "reference": REFERENCE,
    "counter_and_break": HEADER + """
def measure_throughput(dataset, num_workers, batch_size=32, num_batches=20):
    loader = DataLoader(dataset, batch_size=batch_size, num_workers=num_workers)
    warm_up, start = max(1, num_workers), None
    seen = timed = fetched = 0
    for batch in loader:
        fetched += 1
        if fetched <= warm_up:     # each worker's first batch includes its start-up
            if fetched == warm_up:
                start = time.monotonic()
            continue
        seen += batch[0].shape[0]
        timed += 1
        if timed == num_batches:
            break
    return float(seen / (time.monotonic() - start))
""",
    # One warm-up batch whatever the worker count: a little less careful, still accepted.
    "explicit_next_with_stop": HEADER + """
def measure_throughput(dataset, num_workers, batch_size=32, num_batches=20):
    it = iter(DataLoader(dataset, batch_size=batch_size, shuffle=False,
                         num_workers=num_workers))
    next(it)
    t0 = time.perf_counter_ns()
    n = 0
    for _ in range(num_batches):
        try:
            x, y = next(it)
        except StopIteration:
            break
        n += len(y)
    return n / ((time.perf_counter_ns() - t0) / 1e9)
""",
}


@pytest.mark.parametrize("name", sorted(WRONG))
def test_wrong_benchmark_loses_points(name):
    """Is each defective benchmark caught, by the check aimed at its defect?"""
    source, expected = WRONG[name]
    submission = {"measure_throughput": define(source, "measure_throughput")}
    results = verdicts(EXERCISE, submission, aimed(expected))
    assert expected in failing(results), describe(results)
    assert sum(v.points for v in results.values()) < sum(c.points for c in EXERCISE.checks)


@pytest.mark.parametrize("name", sorted(ONE_DEDUCTION))
def test_one_defect_loses_only_its_own_points(name):
    """Does each defect lose exactly the checks that observe it, each saying what it saw?"""
    source, lose, keep, says = ONE_DEDUCTION[name]
    assert_deductions(EXERCISE, {"measure_throughput": define(source, "measure_throughput")},
                      lose, keep, says)


@pytest.mark.parametrize("name", sorted(CORRECT))
def test_correct_benchmark_gets_full_marks(name):
    """Does every correct benchmark, however written, pass every check?"""
    results = verdicts(EXERCISE, {"measure_throughput": define(CORRECT[name],
                                                               "measure_throughput")})
    assert not failing(results), describe(results)


def test_stub_is_not_attempted():
    """Is the release stub reported as not attempted, not as wrong?"""
    stub = define("""
def measure_throughput(dataset, num_workers, batch_size=32, num_batches=20):
    raise NotImplementedError()
""", "measure_throughput")
    results = verdicts(EXERCISE, {"measure_throughput": stub})
    assert {v.status for v in results.values()} == {"not_attempted"}, describe(results)
