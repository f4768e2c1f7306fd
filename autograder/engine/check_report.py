"""What the learner sees: one line per passing check, a message and a hint per failing one.

The report is shown as HTML in JupyterLab (and in nbgrader's feedback), as text elsewhere. A test
cell passes when every check in it passed; otherwise the call raises, which is how nbgrader and
the learner both know the cell failed.
"""

from __future__ import annotations

import html
import os
from collections.abc import Iterable
from typing import Any

from autograder.engine import richtext, runner
from autograder.engine.limits import Limits
from autograder.engine.richtext import GREY, STATUS_COLOUR, STATUS_ICON, STATUS_LABEL, inline_code
from autograder.engine.spec import NOT_ATTEMPTED, PASSED, Exercise, Verdict, overall_status


class CheckFailed(AssertionError):
    """At least one check in this cell did not pass; the report above says which and why."""


class Report:
    """The verdicts of one call, renderable as HTML or plain text.

    Its points are out of the whole test cell's: a visible call counts, besides its own checks,
    the hidden checks that rerun them on other data at hand-in (`Check.extends`), so "3 / 6
    points" in the notebook is the same 6 that nbgrader gives the cell.
    """

    def __init__(self, exercise: Exercise, verdicts: list[Verdict]):
        self.exercise = exercise
        self.verdicts = verdicts

    @property
    def score(self) -> float:
        return sum(v.points for v in self.verdicts)

    @property
    def decided_at_hand_in(self) -> float:
        """Points of the hidden checks that extend this call's visible checks and did not run."""
        ran = {v.check for v in self.verdicts}
        shown = {v.check for v in self.verdicts if not v.hidden}
        return sum(c.points for c in self.exercise.checks
                   if c.hidden and c.extends and c.name not in ran
                   and f"{self.exercise.name}_{c.extends}" in shown)

    @property
    def max_score(self) -> float:
        """The cell's points: this call's checks plus those decided at hand-in."""
        return sum(v.max_points for v in self.verdicts) + self.decided_at_hand_in

    def _rows(self) -> Iterable[tuple[Verdict, str, str]]:
        if self.status == NOT_ATTEMPTED:  # one line, not the same sentence once per check
            yield self.verdicts[0], self.verdicts[0].message, ""
            return
        for v in self.verdicts:
            if v.status == PASSED:
                yield v, v.verifies, ""
            elif v.status == NOT_ATTEMPTED:
                yield v, v.message, ""
            else:
                yield v, v.message, v.hint

    def _points(self) -> str:
        if self.max_score == 0:  # format checks that give feedback but no points
            return "feedback only"
        later = self.decided_at_hand_in
        if not later:
            return f"{self.score:g} / {self.max_score:g} points"
        return (f"{self.score:g} / {self.max_score:g} points ({later:g} of them decided when you "
                "hand in, by hidden checks)")

    def __str__(self) -> str:
        lines = [f"{self.exercise.title}: {self._points()}"]
        for v, text, hint in self._rows():
            tag = " (hidden check)" if v.hidden else ""
            lines.append(f"  {STATUS_ICON[v.status]} {STATUS_LABEL[v.status]}{tag}: {text}")
            if hint:
                lines.append(f"      hint: {hint}")
        return "\n".join(lines)

    __repr__ = __str__  # the text a notebook shows where HTML is not rendered

    def _repr_html_(self) -> str:
        rows = []
        for v, text, hint in self._rows():
            tag = " <em>(hidden check)</em>" if v.hidden else ""
            hint_html = (f"<div style='margin-left:1.6em;color:{GREY}'>Hint: "
                         f"{inline_code(hint)}</div>") if hint else ""
            rows.append(
                f"<div style='margin:2px 0'><span style='color:{STATUS_COLOUR[v.status]};"
                f"font-weight:bold'>{STATUS_ICON[v.status]} {STATUS_LABEL[v.status]}</span>"
                f"{tag}: {inline_code(text)}{hint_html}</div>")
        return (f"<div class='memcourse-check' style='border-left:4px solid "
                f"{STATUS_COLOUR[self.status]};padding:4px 10px'><strong>"
                f"{html.escape(self.exercise.title)}</strong> — {self._points()}"
                f"{''.join(rows)}</div>")

    @property
    def status(self) -> str:
        return overall_status(v.status for v in self.verdicts)

    def raise_for_status(self) -> None:
        """Raise unless every check passed: NotImplementedError when nothing was attempted."""
        __tracebackhide__ = True  # IPython hides this frame: the learner sees only their cell
        if self.status == PASSED:
            return
        if self.status == NOT_ATTEMPTED:
            raise NotImplementedError(
                f"{self.exercise.title}: not attempted yet. Write your code in place of "
                "`raise NotImplementedError()`, run that cell, then run this one again.")
        failed = [v for v in self.verdicts if v.status != PASSED]
        # The messages again, in the error itself: nbgrader's Validate shows a failing cell's
        # error and nothing it displayed, so this is all a learner who validates gets to read.
        lines = [f"- {v.check.removeprefix(self.exercise.name + '_')}: {v.message}"
                 for v in failed]
        raise CheckFailed(f"{len(failed)} of {len(self.verdicts)} checks did not pass:\n"
                          + "\n".join(lines))


class _Progress:
    """A one-line "checking..." note in the notebook, replaced by the report when it is ready."""

    def __init__(self, exercise: Exercise, count: int):
        self._handle = None
        text = (f"Checking {exercise.title}: {count} check(s) in a separate Python process, "
                "watched from outside...")
        try:  # IPython is optional outside the course's environment
            # lazy: IPython (~70 ms) only to show in a notebook, whose kernel has it loaded
            from IPython import get_ipython
            from IPython.display import HTML  # lazy: IPython, as above
            from IPython.display import display as ipy_display  # lazy: IPython, as above

            if get_ipython() is not None:
                self._handle = ipy_display(
                    HTML(f"<div class='memcourse-check' style='color:{GREY}'>"
                         f"{html.escape(text)}</div>"), display_id=True)
        except ImportError:
            pass

    def done(self, report: Report) -> None:
        if self._handle is not None:
            self._handle.update(report)
        else:
            richtext.show(report)


def run_exercise(exercise: Exercise, submission: dict[str, Any], only: Iterable[str] = (),
                 limits: Limits | None = None, show: bool = True) -> Report:
    """Run the exercise's checks (all, or the named ones), show the report, raise on failure."""
    __tracebackhide__ = True
    if os.environ.get("MEMCOURSE_CHECKS") == "outside":
        # Under `memcourse grade` the checks run outside the learner's kernel; the score of
        # this cell comes from there, whatever the kernel does.
        print("checked by the grader outside this notebook")
        return Report(exercise, [])
    names = list(only)
    checks = [exercise.check(n) for n in names] if names else list(exercise.checks)
    progress = _Progress(exercise, len(checks)) if show else None
    verdicts = runner.run_checks(exercise, submission, checks, limits)
    report = Report(exercise, verdicts)
    if progress is not None:
        progress.done(report)
    report.raise_for_status()
    return report

