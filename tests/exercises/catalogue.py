"""Run an exercise's checks on implementations written as source text, as a notebook would.

Each implementation is executed in a namespace named `__main__`, so its classes and functions
travel to the child by value exactly like those a learner defines in a notebook cell.
"""

from __future__ import annotations

import textwrap

from autograder.engine.runner import run_checks
from autograder.engine.spec import PASSED, Exercise, Verdict


def define(source: str, name: str):
    """Execute `source` as notebook code and return the object it defines as `name`."""
    namespace: dict = {"__name__": "__main__"}
    exec(compile(textwrap.dedent(source), f"<notebook:{name}>", "exec"), namespace)
    return namespace[name]


def verdicts(exercise: Exercise, submission: dict, checks: list[str] | None = None
             ) -> dict[str, Verdict]:
    """Run the named checks (default all) and return verdicts keyed by check name."""
    chosen = [exercise.check(c) for c in checks] if checks else list(exercise.checks)
    return {v.check: v for v in run_checks(exercise, submission, chosen)}


def failing(results: dict[str, Verdict]) -> set[str]:
    """Names of the checks that did not pass."""
    return {name for name, v in results.items() if v.status != PASSED}


def describe(results: dict[str, Verdict]) -> str:
    """One line per verdict, for assertion messages."""
    return "\n".join(f"{v.check}: {v.status}: {v.message}" for v in results.values())


def aimed(expected: str | tuple[str, ...] | list[str]) -> list[str]:
    """The check(s) a wrong implementation is aimed at, as a list for `verdicts`.

    Wrong implementations run only the checks aimed at their defect: failing one is losing
    points, and skipping the others keeps the catalogues fast.
    """
    return [expected] if isinstance(expected, str) else list(expected)


def assert_deductions(exercise: Exercise, submission: dict, lose: set[str],
                      keep: set[str] | None = None, says: dict[str, str] | None = None
                      ) -> dict[str, Verdict]:
    """One defect, one deduction, a true reason.

    Runs the checks in `lose` and `keep` (every check of the exercise when `keep` is None) and
    asserts that exactly those in `lose` fail, and that each message named in `says` contains
    its words (what the run observed).
    """
    __tracebackhide__ = True
    names = None if keep is None else sorted(lose | keep)
    results = verdicts(exercise, submission, names)
    assert failing(results) == set(lose), describe(results)
    for check, words in (says or {}).items():
        assert words in results[check].message, describe(results)
    return results
