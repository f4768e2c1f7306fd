"""02_workers_and_pinning: `choose_num_workers`, a rule that picks a worker count from a table.

Contract: `choose_num_workers(measurements, tolerance=0.05)` takes a dict {num_workers:
samples per second} in any order and returns, as an int, the smallest `num_workers` whose
throughput is at least `(1 - tolerance)` times the best one: the fastest setting, unless fewer
workers (less memory, faster start-up) come within the tolerance of it.

The checks call it on synthetic tables, shaped like real measurements (CPU-bound, I/O-bound,
light work), and compare with the rule computed in the parent.
"""

from __future__ import annotations

import numpy as np

from autograder.engine.check_report import run_exercise
from autograder.engine.spec import Check, Exercise, Fail

SUBJECT = "choose_num_workers"

# Each case: (what the table is like, the table, the tolerance to pass or None for the default).
CASES: dict[str, list[tuple[str, dict[int, float], float | None]]] = {
    "picks_the_fastest": [
        ("a CPU-bound transform on 2 cores, clear peak",
         {0: 210.0, 1: 395.0, 2: 720.0, 3: 655.0, 4: 610.0}, None),
        ("a transform that keeps scaling", {0: 100.0, 1: 180.0, 2: 260.0, 3: 330.0, 4: 420.0},
         None),
    ],
    "prefers_fewer_workers": [
        ("a plateau after 2 workers", {0: 200.0, 1: 380.0, 2: 702.0, 3: 715.0, 4: 690.0}, None),
        ("a plateau after 1 worker", {0: 150.0, 1: 500.0, 2: 505.0, 3: 510.0}, None),
    ],
    "zero_workers_when_fastest": [
        ("a light transform", {0: 25000.0, 1: 3500.0, 2: 3300.0, 3: 3100.0, 4: 2900.0}, None),
        ("a light transform with a near tie", {0: 980.0, 1: 1000.0, 2: 1010.0}, None),
    ],
    "any_order": [
        ("a table not sorted by worker count",
         {4: 700.0, 2: 690.0, 0: 200.0, 3: 710.0, 1: 380.0}, None),
        ("a table sorted from most to fewest workers",
         {8: 390.0, 6: 392.0, 4: 400.0, 3: 399.0, 2: 396.0, 1: 200.0, 0: 120.0}, None),
    ],
    "honours_tolerance": [
        ("a table with tolerance=0 (only the fastest counts)",
         {0: 200.0, 1: 560.0, 2: 690.0, 3: 710.0, 4: 700.0}, 0.0),
        ("a table with tolerance=0.25 (a quarter slower is close enough)",
         {0: 200.0, 1: 560.0, 2: 690.0, 3: 710.0, 4: 700.0}, 0.25),
    ],
    "beyond_the_cores_only_when_faster": [
        ("flat past the core count", {0: 100.0, 1: 190.0, 2: 370.0, 3: 375.0, 4: 380.0,
                                      6: 383.0, 8: 385.0}, None),
        ("I/O-bound: 8 workers clearly faster", {0: 100.0, 1: 190.0, 2: 370.0, 4: 520.0,
                                                 8: 900.0}, None),
    ],
}


def reference_choose_num_workers(measurements: dict[int, float], tolerance: float = 0.05) -> int:
    """The rule, as the parent computes it."""
    best = max(measurements.values())
    return min(n for n, rate in measurements.items() if rate >= (1 - tolerance) * best)


# ----------------------------------------------------------------------------- in the child


def _run(ctx, submission, name: str) -> dict:
    results = []
    for description, table, tolerance in CASES[name]:
        kwargs = {} if tolerance is None else {"tolerance": tolerance}
        shown = f"choose_num_workers({{...{description}...}}" + (
            f", tolerance={tolerance})" if tolerance is not None else ")")
        value = ctx.call(shown, submission[SUBJECT], dict(table), **kwargs)
        results.append(_plain(value))
    return {"results": results}


def _plain(value) -> dict:
    """The learner's return value as JSON-able data: an int, or what else it was.

    Kind "int" is an int (Python or NumPy); a float with an integral value keeps its kind, so
    that only the check that judges the type (`picks_the_fastest`) deducts for it.
    """
    if isinstance(value, (bool, np.bool_)):
        return {"kind": "bool", "value": None}
    if isinstance(value, (int, np.integer)):
        return {"kind": "int", "value": int(value)}
    try:
        return {"kind": type(value).__name__, "value": float(value)}
    except (TypeError, ValueError, OverflowError):
        return {"kind": type(value).__name__, "value": None}


def act_picks_the_fastest(ctx, submission):
    return _run(ctx, submission, "picks_the_fastest")


def act_prefers_fewer_workers(ctx, submission):
    return _run(ctx, submission, "prefers_fewer_workers")


def act_zero_workers_when_fastest(ctx, submission):
    return _run(ctx, submission, "zero_workers_when_fastest")


def act_any_order(ctx, submission):
    return _run(ctx, submission, "any_order")


def act_honours_tolerance(ctx, submission):
    return _run(ctx, submission, "honours_tolerance")


def act_beyond_the_cores_only_when_faster(ctx, submission):
    return _run(ctx, submission, "beyond_the_cores_only_when_faster")


# ----------------------------------------------------------------------------- in the parent


def _judge(name: str, hidden: bool, why: str, judges_type: bool = False):
    """The judge of one case list; only the check with `judges_type` deducts for a number of
    workers returned as another type (a float 2.0): the others judge the number."""
    def judge(trace) -> None:
        for (description, table, tolerance), got in zip(CASES[name], trace.data["results"],
                                                    strict=True):
            tol = 0.05 if tolerance is None else tolerance
            want = reference_choose_num_workers(table, tol)
            value = got["value"]
            if value is not None and value not in table and value in table.values():
                raise Fail(f"for {description}, it returned {value:g}, a throughput from the "
                           "table; return the number of workers (a key) instead.")
            if got["kind"] != "int" and (judges_type or value is None):
                shown = f"{value:g} (a {got['kind']})" if value is not None else \
                    f"a {got['kind']}"
                raise Fail(f"for {description}, it returned {shown}; return the number of "
                           "workers as an int.")
            if value not in table:
                raise Fail(f"for {description}, it returned {value}, which is not a worker count "
                           "that was measured.")
            if value != want:
                rate, best = table[value], max(table.values())
                seen = (f"for {description}, it chose {value} workers ({rate:g} samples/s, "
                        f"{rate / best:.0%} of the fastest)")
                if hidden:
                    raise Fail(f"{seen}. {why}")
                raise Fail(f"{seen}, but the rule picks {want}. {why}")
    judge.__name__ = f"judge_{name}"
    return judge


CHECKS = [
    Check("choose_num_workers_picks_the_fastest", 1,
          "picks the fastest worker count when it stands clear of the others",
          act_picks_the_fastest, _judge("picks_the_fastest", False,
                                        "Find the best throughput with `max` over the values.",
                                        judges_type=True),
          hint="`best = max(measurements.values())`, then the smallest count within the "
               "tolerance of `best`."),
    Check("choose_num_workers_prefers_fewer_workers", 1,
          "prefers fewer workers when they come within the tolerance of the fastest",
          act_prefers_fewer_workers,
          _judge("prefers_fewer_workers", False,
                 "Fewer workers within 5% of the best are as good and cost less memory."),
          hint="Among counts with `rate >= (1 - tolerance) * best`, return the smallest."),
    Check("choose_num_workers_zero_workers_when_fastest", 1,
          "chooses 0 workers when loading in the main process is (nearly) fastest",
          act_zero_workers_when_fastest,
          _judge("zero_workers_when_fastest", True,
                 "0 is a worker count like any other: the main process loads the data itself."),
          hint="Do not skip the key 0, and do not start counting at 1."),
    Check("choose_num_workers_any_order", 1,
          "gives the same answer whatever order the table is in",
          act_any_order, _judge("any_order", True,
                                "Do not rely on the order of the dict: compare the keys."),
          hidden=True, extends="picks_the_fastest",
          hint="Use `min(...)` over the qualifying keys, not the first qualifying key you meet."),
    Check("choose_num_workers_honours_tolerance", 1,
          "uses the `tolerance` argument",
          act_honours_tolerance, _judge("honours_tolerance", True,
                                        "Use the `tolerance` argument, not a fixed 5%."),
          hint="The threshold is `(1 - tolerance) * best`."),
    Check("choose_num_workers_beyond_the_cores_only_when_faster", 1,
          "goes past the core count only when that is clearly faster",
          act_beyond_the_cores_only_when_faster,
          _judge("beyond_the_cores_only_when_faster", True,
                 "Let the measurement decide: no fixed cap on the count, and no preference "
                 "for more workers when they are not clearly faster."),
          hint="The tolerance rule already stays at the core count when more workers barely "
               "help, and goes further when they help a lot; do not clamp to `os.cpu_count()`."),
]

EXERCISE = Exercise(
    name="choose_num_workers", title="choose_num_workers", subjects=(SUBJECT,), checks=CHECKS,
    hints=[
        "Two steps: find the best throughput measured, then, among the worker counts that come "
        "close enough to it, take the smallest.",
        "`max(measurements.values())` is the best rate; a count qualifies when its rate is at "
        "least `(1 - tolerance) * best`. The dict may come in any order, so do not rely on it, "
        "and return an int.",
        "`best = max(measurements.values())`, then `return min(n for n, rate in "
        "measurements.items() if rate >= (1 - tolerance) * best)`.",
    ],
)


def check_choose_num_workers(choose_num_workers, *checks: str) -> None:
    """Check the learner's `choose_num_workers` in a fresh process (all checks, or those named)."""
    __tracebackhide__ = True
    run_exercise(EXERCISE, {SUBJECT: choose_num_workers}, checks)
