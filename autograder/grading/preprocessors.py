"""nbgrader preprocessors that make grading trustworthy; nbgrader stays the engine.

- `RestoreSubmission` (sanitizing): drops cell tags and any metadata that could change how a cell
  runs or is graded (nbgrader's own OverwriteCells restores the source and grading metadata of
  read-only cells; `skip-execution` tags and the like are not covered by it).
- `UsePreparedRun` (replaces `Execute` when the gradebook writer autogrades): fills every cell's
  outputs from the worker's sandboxed run, and the outputs of check-based test cells from the
  verdicts computed outside the learner's kernel, shaped so nbgrader scores them exactly.
- `HideHiddenTests` (feedback): nbgrader's ClearHiddenTests, plus tracebacks reduced to their
  last line, so hidden test code shows neither in cell sources nor in error messages.
- `NoteLateSubmission` (feedback): a first line saying the work came after the due date.
- `HideMarkSchemes` (feedback): nbgrader's ClearMarkScheme on task cells only. Autograde
  restores task cells from the gradebook, mark scheme included (formgrader shows it to the
  grader); the feedback shows the question as the release did, and the learner's cells whole.
"""

from __future__ import annotations

import nbformat
from nbformat import NotebookNode
from nbgrader.api import Gradebook, MissingEntry
from nbgrader.preprocessors import ClearHiddenTests, ClearMarkScheme, NbGraderPreprocessor
from traitlets import Dict

from autograder.cells import TEST, check_calls, is_task, role
from autograder.engine.check_report import Report
from autograder.engine.spec import NOT_ATTEMPTED, Exercise, Verdict
from autograder.exercises import all_exercises
from autograder.grading.handoffs import WORKER_STOPPED, Prepared

KEPT_CELL_METADATA = ("nbgrader", "deletable", "editable")


class RestoreSubmission(NbGraderPreprocessor):
    """Keep only the cell metadata nbgrader needs; drop tags and everything else."""

    def preprocess(self, nb, resources):
        for cell in nb.cells:
            cell.metadata = NotebookNode({k: v for k, v in cell.metadata.items()
                                          if k in KEPT_CELL_METADATA})
        nb.metadata = NotebookNode({k: v for k, v in nb.metadata.items()
                                    if k in ("kernelspec", "language_info")})
        return nb, resources


def verdict_outputs(calls: list[dict], max_points: float) -> list[NotebookNode]:
    """The outputs that show a cell's verdicts and make nbgrader give exactly their score."""
    exercises = all_exercises()
    verdicts = [Verdict.from_dict(v) for call in calls for v in call["verdicts"]]
    # One report per exercise, visible and hidden verdicts together: its points are the cell's.
    by_exercise: dict[str, tuple[Exercise, list[Verdict]]] = {}
    for call in calls:
        exercise = exercises.get(call["function"])
        if exercise is not None and call["verdicts"]:
            by_exercise.setdefault(exercise.name, (exercise, []))[1].extend(
                Verdict.from_dict(v) for v in call["verdicts"])
    outputs = []
    for exercise, its_verdicts in by_exercise.values():
        report = Report(exercise, its_verdicts)
        outputs.append(NotebookNode(output_type="display_data", metadata={}, data={
            "text/html": report._repr_html_(), "text/plain": str(report)}))
    score = round(sum(v.points for v in verdicts), 6)
    if not verdicts:
        outputs.append(NotebookNode(output_type="error", ename="NotGraded",
                                    evalue="the grader found no checks to run in this cell",
                                    traceback=["NotGraded: no checks ran"]))
        score = 0.0
    elif score >= max_points:
        score = max_points
    elif score <= 0:
        attempted = any(v.status != NOT_ATTEMPTED for v in verdicts)
        ename = "CheckFailed" if attempted else "NotImplementedError"
        evalue = ("no check in this cell passed (see above)" if attempted
                  else "not attempted yet")
        outputs.append(NotebookNode(output_type="error", ename=ename, evalue=evalue,
                                    traceback=[f"{ename}: {evalue}"]))
    else:
        outputs.append(NotebookNode(output_type="execute_result", execution_count=None,
                                    metadata={}, data={"text/plain": f"{score:g}"}))
    return outputs


class UsePreparedRun(NbGraderPreprocessor):
    """Instead of executing, take outputs from the worker's sandboxed run and verdicts."""

    prepared = Dict(help="Notebook name -> the worker's `Prepared` result as JSON (with its "
                         "`folder`), or None where the worker wrote none; set by the gradebook "
                         "writer before each autograde.").tag(config=True)

    def preprocess(self, nb, resources):
        info = resources["nbgrader"]
        data = self.prepared.get(info["notebook"]) or {}
        prepared = Prepared.from_json(data) if "status" in data else Prepared(
            info["student"], info["assignment"], info["notebook"], status="missing",
            problems=[WORKER_STOPPED.format(what="this notebook")])
        prepared.folder = data.get("folder", "")
        executed = prepared.executed
        executed = nbformat.read(executed, as_version=4) if executed is not None else None
        if executed is not None and len(executed.cells) == len(nb.cells):
            for cell, ran in zip(nb.cells, executed.cells, strict=True):
                if cell.cell_type == "code" and ran.cell_type == "code":
                    cell.outputs = ran.outputs
                    cell.execution_count = ran.get("execution_count")
        calls_by_cell: dict[int, list[dict]] = {}
        for call in prepared.calls:
            calls_by_cell.setdefault(call["cell"], []).append(call)
        for index, cell in enumerate(nb.cells):
            if role(cell) != TEST or not check_calls(cell.source):
                continue
            meta = cell.metadata["nbgrader"]
            outputs = verdict_outputs(calls_by_cell.get(index, []), float(meta.get("points", 0)))
            if prepared.status != "prepared":
                outputs = [NotebookNode(output_type="error", ename="NotGraded",
                                        evalue="; ".join(prepared.problems),
                                        traceback=["NotGraded: the submission could not be "
                                                   "prepared for grading"])]
            cell.outputs = outputs
        return nb, resources


class HideHiddenTests(ClearHiddenTests):
    """Remove hidden tests from cell sources, reduce tracebacks to one line, and drop the bare
    score a check cell carries for nbgrader's partial credit (the report above it says it)."""

    def preprocess_cell(self, cell, resources, cell_index):
        cell, resources = super().preprocess_cell(cell, resources, cell_index)
        if cell.cell_type == "code" and "nbgrader" in cell.metadata:
            for output in cell.get("outputs", []):
                if output.get("output_type") == "error":
                    output["traceback"] = [f"{output.get('ename')}: {output.get('evalue')}"]
            if role(cell) == TEST and check_calls(cell.source):
                # `verdict_outputs` ends a partly passed cell with its score as an execute
                # result, which nbgrader's autograde reads as partial credit; in the feedback
                # it would read `Out[11]: 2` under the report, a value no learner code made.
                cell.outputs = [o for o in cell.get("outputs", [])
                                if o.get("output_type") != "execute_result"]
        return cell, resources


class HideMarkSchemes(ClearMarkScheme):
    """Remove the mark scheme (model answer and rubric) from task cells, and touch no other cell.

    nbgrader's ClearMarkScheme, with the delimiters `generate_assignment` stripped from the
    release, but only on task cells: those are locked and restored from the gradebook, so they
    hold the instructor's text. On every cell, as nbgrader runs it, a learner's cell that
    mentions "BEGIN MARK SCHEME" would lose its text or make the feedback fail (RuntimeError).
    """

    def preprocess_cell(self, cell, resources, cell_index):
        if not is_task(cell):
            return cell, resources
        return super().preprocess_cell(cell, resources, cell_index)


def late_sentence(seconds_late: float, duedate) -> str:
    """'submitted 2 h 5 min after the due date (2026-11-30 12:00 UTC)': how late, in words.

    `seconds_late` as nbgrader's gradebook stores it (> 0); `duedate` a naive UTC datetime.
    """
    s = int(round(seconds_late))
    days, s = divmod(s, 86400)
    hours, s = divmod(s, 3600)
    minutes, s = divmod(s, 60)
    parts = [f"{days} d" if days else "", f"{hours} h" if hours else "",
             f"{minutes} min" if minutes else "", f"{s} s" if s and not days else ""]
    when = " ".join(p for p in parts if p) or "less than a second"
    due = f" ({duedate:%Y-%m-%d %H:%M} UTC)" if duedate is not None else ""
    return f"submitted {when} after the due date{due}"


def lateness(gb: Gradebook, assignment: str, student: str) -> str | None:
    """`late_sentence` for the student's submission when nbgrader found it late (its
    timestamp.txt against the assignment's due date), else None (on time, or not in `gb`)."""
    try:
        submission = gb.find_submission(assignment, student)
    except MissingEntry:
        return None
    late = submission.total_seconds_late or 0
    return late_sentence(late, submission.duedate) if late > 0 else None


class NoteLateSubmission(NbGraderPreprocessor):
    """Open the feedback with one line saying the submission came after the due date.

    nbgrader records lateness in the gradebook (from the submission's timestamp and the
    assignment's due date) but its feedback shows it only as a penalty, and this course
    applies none; without this line a student would not learn it was marked late.
    """

    def preprocess(self, nb, resources):
        info = resources["nbgrader"]
        with Gradebook(info["db_url"]) as gb:
            late = lateness(gb, info["assignment"], info["student"])
        if late:
            nb.cells.insert(0, nbformat.v4.new_markdown_cell(f"**Late:** this work was {late}."))
        return nb, resources
