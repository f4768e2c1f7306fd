"""The gradebook writer and the files a grading run leaves: grades.csv, results.json,
report.md and feedback/.

Scores are read back from nbgrader's gradebook, so manual grades given in formgrader appear in
grades.csv the next time `memcourse grade` runs (already graded submissions are not re-run).
"""

from __future__ import annotations

import csv
import json
import shutil
import statistics
from collections import Counter, defaultdict
from pathlib import Path

from traitlets.config import Config

from autograder import course
from autograder.engine.spec import ERROR, FAILED, LIMIT_EXCEEDED, NOT_ATTEMPTED, PASSED
from autograder.grading.inputs import Submission


def unsubmitted_record(sub: Submission, fingerprint: str) -> dict:
    """A record for a submission that could not be graded: it says why, and scores nothing."""
    return {"student": sub.student, "assignment": sub.assignment, "status": sub.status,
            "score": 0.0, "max_score": None, "flags": list(sub.flags),
            "problems": list(sub.problems), "cells": [], "fingerprint": fingerprint}


def _cell_status(verdicts: list[dict]) -> str:
    statuses = {v["status"] for v in verdicts}
    if statuses == {PASSED}:
        return PASSED
    if statuses == {NOT_ATTEMPTED}:
        return NOT_ATTEMPTED
    for status in (ERROR, LIMIT_EXCEEDED):
        if status in statuses:
            return status
    return FAILED


def _cell_message(verdicts: list[dict]) -> str:
    if all(v["status"] == PASSED for v in verdicts):
        return "all checks passed"
    if all(v["status"] == NOT_ATTEMPTED for v in verdicts):
        return verdicts[0]["message"]
    return " ".join(v["message"] for v in verdicts if v["status"] != PASSED)


class GradebookWriter:
    """The only process that writes the gradebook: nbgrader's autograde and feedback."""

    def __init__(self, root: Path, prepared_root: Path):
        from nbconvert.preprocessors import ClearMetadataPreprocessor, CSSHTMLHeaderPreprocessor
        from nbgrader.preprocessors import (
            AssignLatePenalties,
            CheckCellMetadata,
            ClearOutput,
            DeduplicateIds,
            GetGrades,
            IgnorePattern,
            LimitOutput,
            OverwriteCells,
            OverwriteKernelspec,
            SaveAutoGrades,
        )

        from autograder.grading.preprocessors import (
            HideHiddenTests,
            RestoreSubmission,
            UsePreparedRun,
        )

        self.root, self.prepared_root = root, prepared_root
        extra = Config()
        extra.OverwriteCells.add_missing_cells = True
        extra.Autograde.sanitize_preprocessors = [
            ClearOutput, DeduplicateIds, OverwriteKernelspec, OverwriteCells, CheckCellMetadata,
            RestoreSubmission]
        extra.Autograde.autograde_preprocessors = [
            UsePreparedRun, IgnorePattern, ClearMetadataPreprocessor, LimitOutput,
            SaveAutoGrades, AssignLatePenalties, CheckCellMetadata]
        extra.UsePreparedRun.prepared_root = str(prepared_root)
        extra.GenerateFeedback.preprocessors = [GetGrades, HideHiddenTests,
                                                CSSHTMLHeaderPreprocessor]
        self.api = course.api(root, extra=extra)
        coursedir = self.api.coursedir
        self.feedback_root = Path(coursedir.root) / coursedir.feedback_directory

    def autograde(self, sub: Submission) -> dict:
        """Score one prepared submission into the gradebook and build its record."""
        folder = self.prepared_root / sub.student / sub.assignment / sub.notebook_name
        prepared_path = folder / "prepared.json"
        record = {"student": sub.student, "assignment": sub.assignment, "status": "graded",
                  "score": 0.0, "max_score": None, "flags": list(sub.flags),
                  "problems": list(sub.problems), "cells": []}
        if not prepared_path.exists():
            record["status"] = "error"
            record["problems"].append("the grading worker stopped before preparing this "
                                      "submission (see grading/work/logs/)")
            return record
        prepared = json.loads(prepared_path.read_text())
        record["flags"] += [f for f in prepared.get("flags", []) if f not in record["flags"]]
        record["problems"] += prepared.get("problems", [])
        if prepared.get("tampering"):
            record["problems"].append("tampering neutralised: " + "; ".join(
                prepared["tampering"]))
        self._flag_run(record, prepared, sub)
        if prepared.get("status") != "prepared":
            record["status"] = "error"
        outcome = self.api.autograde(sub.assignment, sub.student, force=True, create=True)
        if not outcome["success"]:
            record["status"] = "error"
            record["problems"].append("nbgrader could not autograde this submission: "
                                      + (outcome.get("error") or "")[-500:])
            return record
        feedback = self.api.generate_feedback(sub.assignment, sub.student, force=True)
        if not feedback["success"]:
            record["problems"].append("nbgrader could not generate feedback")
        cells_path = folder / "cells.json"
        verdict_cells = json.loads(cells_path.read_text()) if cells_path.exists() else {}
        record["_verdict_cells"] = verdict_cells
        return record

    @staticmethod
    def _flag_run(record: dict, prepared: dict, sub: Submission) -> None:
        kernel = prepared.get("kernel", {})
        program = prepared.get("program", {})
        died = sorted(set(kernel.get("kernel_died", [])) | set(program.get("died_in", [])))
        slow = sorted(set(kernel.get("timeout", [])) | set(program.get("timed_out", [])))
        names = prepared.get("cell_names", {})

        def named(cells: list[int]) -> str:
            return ", ".join(names.get(str(i), f"cell {i + 1}") for i in cells)

        if kernel.get("kernel_failed"):
            record["status"] = "error"
            record["problems"].append("the grader could not start a kernel for this notebook: "
                                      f"{kernel['kernel_failed']}")
        if died:
            record["flags"].append("kernel_died")
            record["problems"].append(f"the kernel died in {named(died)}; grading restarted it "
                                      "and went on after it, keeping the credit already earned")
        if slow or kernel.get("notebook_timeout"):
            record["flags"].append("timeout")
            record["problems"].append(f"{named(slow)} ran past the time limit and was stopped"
                                      if slow else "the notebook ran past its time limit")
        messages = [v.get("message", "") for call in prepared.get("calls", [])
                    for v in call.get("verdicts", [])]
        watchdog = kernel.get("watchdog", [])
        if any("memory limit" in m for m in messages) or "memory" in watchdog or any(
                "MemoryError" in e for e in program.get("errors", {}).values()):
            record["flags"].append("memory_limit")
        if "processes" in watchdog:
            record["flags"].append("process_limit")
            record["problems"].append("the notebook started more processes than allowed; the "
                                      "grader stopped them")
        if kernel.get("output_cut"):
            record["flags"].append("huge_output")
            record["problems"].append(f"output of {named(kernel['output_cut'])} was cut")

    def refresh_scores(self, records: list[dict]) -> list[dict]:
        """Fill scores and per-cell results from the gradebook (manual grades included)."""
        from nbgrader.api import MissingEntry

        with self.api.gradebook as gb:
            max_scores = {a.name: a.max_score for a in gb.assignments}
            for record in records:
                record["max_score"] = max_scores.get(record["assignment"], record["max_score"])
                verdict_cells = record.pop("_verdict_cells", None)
                if record["status"] != "graded":
                    continue
                try:
                    sub = gb.find_submission(record["assignment"], record["student"])
                except MissingEntry:
                    record["status"] = "error"
                    continue
                record["score"] = float(sub.score)
                record["needs_manual_grade"] = bool(sub.needs_manual_grade)
                cells = []
                for notebook in sub.notebooks:
                    for grade in notebook.grades:
                        cells.append(self._cell(notebook.name, grade, verdict_cells, record))
                if cells:
                    record["cells"] = cells
        return records

    @staticmethod
    def _cell(notebook: str, grade, verdict_cells: dict | None, record: dict) -> dict:
        name = grade.name
        cell = {"notebook": notebook, "grade_id": name,
                "score": float(grade.score) if grade.score is not None else None,
                "max_score": float(grade.max_score)}
        known = (verdict_cells or {}).get(name)
        if known is None:  # kept from an earlier run's record
            known = next((c for c in record.get("cells", []) if c["grade_id"] == name
                          and "verdicts" in c), None)
        if known is not None and known.get("verdicts"):
            cell["status"] = _cell_status(known["verdicts"])
            cell["message"] = _cell_message(known["verdicts"])
            cell["verdicts"] = known["verdicts"]
        elif grade.cell.cell_type == "markdown" or grade.needs_manual_grade or \
                grade.manual_score is not None:
            cell["status"] = "manual" if grade.manual_score is None else "manually_graded"
            cell["message"] = "written answer: graded by hand in formgrader"
        else:
            cell["status"] = PASSED if grade.score == grade.max_score else FAILED
            cell["message"] = "passed" if cell["status"] == PASSED else "the cell's tests failed"
        return cell


def write_outputs(out: Path, records: list[dict], writer: GradebookWriter,
                  elapsed: float) -> None:
    """grades.csv, results.json, report.md and the feedback HTML files."""
    out.mkdir(parents=True, exist_ok=True)
    clean = [{k: v for k, v in r.items() if k not in ("fingerprint", "_verdict_cells")}
             for r in records]
    for r in clean:
        r["flags"] = list(dict.fromkeys(r["flags"]))
    (out / "results.json").write_text(json.dumps(clean, indent=1))
    with open(out / "grades.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["student", "assignment", "score", "max_score", "status", "flags"])
        for r in clean:
            w.writerow([r["student"], r["assignment"], f"{r['score']:g}",
                        "" if r["max_score"] is None else f"{r['max_score']:g}", r["status"],
                        ";".join(r["flags"])])
    for r in clean:
        source = writer.feedback_root / r["student"] / r["assignment"]
        if source.is_dir():
            dest = out / "feedback" / r["student"] / r["assignment"]
            dest.mkdir(parents=True, exist_ok=True)
            for html in source.glob("*.html"):
                shutil.copyfile(html, dest / html.name)
    (out / "report.md").write_text(report(clean, elapsed))


def report(records: list[dict], elapsed: float) -> str:
    """A Markdown summary: totals, score distribution, per-check pass rates, flagged work."""
    lines = ["# Grading report", ""]
    statuses = Counter(r["status"] for r in records)
    lines += [f"{len(records)} submission records in {elapsed:.0f} s: " + ", ".join(
        f"{n} {s}" for s, n in sorted(statuses.items())), ""]
    by_assignment = defaultdict(list)
    for r in records:
        by_assignment[r["assignment"]].append(r)
    lines += ["## Scores", "", "| assignment | graded | mean | median | min | max | out of |",
              "|---|---|---|---|---|---|---|"]
    for assignment, rs in sorted(by_assignment.items()):
        scores = [r["score"] for r in rs if r["status"] == "graded"]
        top = next((r["max_score"] for r in rs if r["max_score"] is not None), None)
        out_of = "–" if top is None else f"{top:g}"
        if scores:
            lines.append(f"| {assignment} | {len(scores)} | {statistics.mean(scores):.2f} | "
                         f"{statistics.median(scores):.2f} | {min(scores):g} | {max(scores):g} "
                         f"| {out_of} |")
        else:
            lines.append(f"| {assignment} | 0 | – | – | – | – | – |")
    lines += ["", "### Score distribution", ""]
    for assignment, rs in sorted(by_assignment.items()):
        graded = [r for r in rs if r["status"] == "graded" and r["max_score"]]
        if not graded:
            continue
        buckets = Counter(min(4, int(5 * r["score"] / r["max_score"])) for r in graded)
        bars = ", ".join(f"{20 * b}-{20 * b + 20}%: {buckets.get(b, 0)}" for b in range(5))
        lines.append(f"- {assignment}: {bars}")
    lines += ["", "## Checks most often missed", "",
              "| assignment | check | passed | of | pass rate |", "|---|---|---|---|---|"]
    tally: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0])
    for r in records:
        for cell in r.get("cells", []):
            for v in cell.get("verdicts", []):
                t = tally[r["assignment"], v["check"]]
                t[0] += v["status"] == PASSED
                t[1] += 1
    for (assignment, check), (passed, total) in sorted(
            tally.items(), key=lambda kv: kv[1][0] / max(1, kv[1][1])):
        lines.append(f"| {assignment} | {check} | {passed} | {total} | "
                     f"{passed / max(1, total):.0%} |")
    flagged = [r for r in records if r["flags"] or r["status"] not in ("graded",)]
    lines += ["", "## Flagged submissions", ""]
    if not flagged:
        lines.append("None.")
    for r in flagged:
        why = "; ".join(r["problems"]) or r["status"]
        lines.append(f"- **{r['student']} / {r['assignment']}** — {r['status']}"
                     f"{' [' + ', '.join(r['flags']) + ']' if r['flags'] else ''}: {why}")
    return "\n".join(lines) + "\n"
