"""Checks declared as data, and the verdicts they produce."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field, fields
from typing import Any

# Statuses a check can end in; the same words appear in the grader's results.json.
PASSED = "passed"
FAILED = "failed"
NOT_ATTEMPTED = "not_attempted"
LIMIT_EXCEEDED = "limit_exceeded"
ERROR = "error"  # the checker itself could not run: not the learner's fault


class Fail(Exception):
    """Raised by a judge: the observed behaviour is wrong; the message says what was seen."""


@dataclass(frozen=True)
class Check:
    """One property of the learner's code, checked in a child process and judged in the parent.

    `act(ctx, submission)` runs in the child: it exercises the learner's objects and returns
    plain data (JSON-able values, and NumPy arrays through `ctx.save_array`). `judge(trace)`
    runs in the parent on that data and on what the parent observed; it raises `Fail` with a
    message that says what was observed and why it matters, or returns to pass.
    """

    name: str
    points: float
    verifies: str
    act: Callable[..., Any]
    judge: Callable[..., None]
    hint: str = ""
    why: str = ""
    hidden: bool = False
    # A hidden check reruns a visible one on other data: `extends` names that visible check
    # (short name), so the visible call can say how many of its cell's points wait for hand-in.
    extends: str = ""
    fixtures: tuple[str, ...] = ()
    timeout_s: float = 30.0


@dataclass
class Exercise:
    """A coded exercise: the names the learner defines, and the checks on them."""

    name: str
    title: str
    subjects: tuple[str, ...]
    checks: list[Check]
    make_fixtures: Callable[[], dict[str, str]] | None = None
    hints: list[str] = field(default_factory=list)
    solution: str = ""
    # How to say "not attempted" when the default ("`op` still raises NotImplementedError")
    # reads oddly, e.g. for a variable; `{op}` is replaced by the operation.
    not_attempted: str = ""

    def check(self, short_name: str) -> Check:
        """Return the check called `short_name` (with or without the exercise prefix)."""
        for check in self.checks:
            if check.name in (short_name, f"{self.name}_{short_name}"):
                return check
        known = ", ".join(c.name for c in self.checks)
        raise KeyError(f"{self.name} has no check {short_name!r}; it has {known}")


@dataclass
class Verdict:
    """The outcome of one check, as the learner and the grader see it."""

    check: str
    status: str
    points: float
    max_points: float
    message: str
    verifies: str = ""
    hidden: bool = False
    hint: str = ""
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return self.status == PASSED

    @classmethod
    def from_check(cls, check: Check, status: str, points: float, message: str,
                   details: dict[str, Any] | None = None) -> Verdict:
        """The verdict on `check`: its name, maximum points, sentence, visibility and hint."""
        return cls(check=check.name, status=status, points=points, max_points=check.points,
                   message=message, verifies=check.verifies, hidden=check.hidden,
                   hint=check.hint, details={} if details is None else details)

    def to_dict(self) -> dict[str, Any]:
        """Plain data for results files: every field, so `from_dict` gives the verdict back."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Verdict:
        """The verdict `to_dict` wrote; optional fields missing from `data` take defaults, and
        keys this version does not know (a results file from another version) are ignored."""
        return cls(**{k: v for k, v in data.items() if k in _VERDICT_FIELDS})


_VERDICT_FIELDS = frozenset(f.name for f in fields(Verdict))


def overall_status(statuses: Iterable[str]) -> str:
    """The status of several verdicts together (a test cell, a call): passed only if all passed.

    All not attempted stays not attempted; otherwise the worst present wins, an error of the
    checker first, then a limit, then a failure (also for mixed passed / not attempted, and for
    no verdicts at all).
    """
    found = set(statuses)
    if found == {PASSED}:
        return PASSED
    if found == {NOT_ATTEMPTED}:
        return NOT_ATTEMPTED
    for status in (ERROR, LIMIT_EXCEEDED, FAILED):
        if status in found:
            return status
    return FAILED
