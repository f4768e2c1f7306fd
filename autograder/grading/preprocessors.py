"""nbgrader preprocessors that make grading trustworthy; nbgrader stays the engine.

- `RestoreSubmission` (sanitizing): drops cell tags and any metadata that could change how a cell
  runs or is graded (nbgrader's own OverwriteCells restores the source and grading metadata of
  read-only cells; `skip-execution` tags and the like are not covered by it).
- `UsePreparedRun` (replaces `Execute` when the gradebook writer autogrades): fills every cell's
  outputs from the worker's sandboxed run, and the outputs of check-based test cells from the
  verdicts computed outside the learner's kernel, shaped so nbgrader scores them exactly.
- `HideHiddenTests` (feedback): nbgrader's ClearHiddenTests, plus tracebacks reduced to their
  last line, so hidden test code shows neither in cell sources nor in error messages.
"""

from __future__ import annotations

import json
from pathlib import Path

import nbformat
from nbformat import NotebookNode
from nbgrader.preprocessors import ClearHiddenTests, NbGraderPreprocessor
from traitlets import Unicode

from autograder.grading.program import check_calls, role

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


def verdict_outputs(calls: list[dict], max_points: float) -> tuple[list[NotebookNode], float,
                                                                    list[dict]]:
    """The outputs that show a cell's verdicts and make nbgrader give exactly their score."""
    from autograder.engine.feedback import Report
    from autograder.engine.spec import NOT_ATTEMPTED, Verdict
    from autograder.exercises import all_exercises

    exercises = all_exercises()
    verdicts = [Verdict(**v) for call in calls for v in call["verdicts"]]
    outputs = []
    for call in calls:
        exercise = exercises.get(call["function"])
        if exercise is None or not call["verdicts"]:
            continue
        report = Report(exercise, [Verdict(**v) for v in call["verdicts"]])
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
    return outputs, score, [v.to_dict() for v in verdicts]


class UsePreparedRun(NbGraderPreprocessor):
    """Instead of executing, take outputs from the worker's sandboxed run and verdicts."""

    prepared_root = Unicode("", help="Folder holding <student>/<assignment>/<notebook>/"
                                     "prepared.json and executed.ipynb").tag(config=True)

    def preprocess(self, nb, resources):
        info = resources["nbgrader"]
        folder = Path(self.prepared_root) / info["student"] / info["assignment"] / \
            info["notebook"]
        try:
            prepared = json.loads((folder / "prepared.json").read_text())
        except (OSError, ValueError):
            prepared = {"status": "missing", "problems": [
                "the grading worker stopped before preparing this notebook (its log is under "
                "grading/work/logs/)"]}
        executed = None
        if (folder / "executed.ipynb").exists():
            executed = nbformat.read(folder / "executed.ipynb", as_version=4)
        if executed is not None and len(executed.cells) == len(nb.cells):
            for cell, ran in zip(nb.cells, executed.cells, strict=True):
                if cell.cell_type == "code" and ran.cell_type == "code":
                    cell.outputs = ran.outputs
                    cell.execution_count = ran.get("execution_count")
        calls_by_cell: dict[int, list[dict]] = {}
        for call in prepared.get("calls", []):
            calls_by_cell.setdefault(call["cell"], []).append(call)
        cell_results = {}
        for index, cell in enumerate(nb.cells):
            if role(cell) != "test" or not check_calls(cell.source):
                continue
            meta = cell.metadata["nbgrader"]
            outputs, score, verdicts = verdict_outputs(calls_by_cell.get(index, []),
                                                       float(meta.get("points", 0)))
            if prepared.get("status") != "prepared":
                outputs = [NotebookNode(output_type="error", ename="NotGraded",
                                        evalue="; ".join(prepared.get("problems", [])),
                                        traceback=["NotGraded: the submission could not be "
                                                   "prepared for grading"])]
                score = 0.0
            cell.outputs = outputs
            cell_results[meta["grade_id"]] = {"score": score, "verdicts": verdicts}
        if folder.is_dir():
            (folder / "cells.json").write_text(json.dumps(cell_results, indent=1))
        return nb, resources


class HideHiddenTests(ClearHiddenTests):
    """Remove hidden tests from cell sources and reduce tracebacks to one line."""

    def preprocess_cell(self, cell, resources, cell_index):
        cell, resources = super().preprocess_cell(cell, resources, cell_index)
        if cell.cell_type == "code" and "nbgrader" in cell.metadata:
            for output in cell.get("outputs", []):
                if output.get("output_type") == "error":
                    output["traceback"] = [f"{output.get('ename')}: {output.get('evalue')}"]
        return cell, resources
