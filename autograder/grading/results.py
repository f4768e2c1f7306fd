"""The gradebook writer and the files a grading run leaves: grades.csv, results.json,
report.md and feedback/.

Scores are read back from nbgrader's gradebook, so manual grades given in formgrader appear in
grades.csv the next time `memcourse grade` runs (already graded submissions are not re-run).
"""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import statistics
from collections import Counter, defaultdict
from pathlib import Path

from traitlets.config import Config

from autograder import course
from autograder.engine.spec import ERROR, FAILED, LIMIT_EXCEEDED, NOT_ATTEMPTED, PASSED
from autograder.grading.inputs import Submission


def new_record(sub: Submission, status: str = "graded") -> dict:
    """The record of one (student, assignment): what grades.csv and results.json show."""
    return {"student": sub.student, "assignment": sub.assignment, "status": status,
            "score": 0.0, "max_score": None, "flags": list(sub.flags),
            "problems": list(sub.problems), "cells": []}


def unsubmitted_record(sub: Submission, fingerprint: str) -> dict:
    """A record for a submission that could not be graded: it says why, and scores nothing."""
    return {**new_record(sub, sub.status), "fingerprint": fingerprint}


def error_record(sub: Submission, step: str, error: BaseException) -> dict:
    """A record for a submission whose grading failed in `step`: a rerun grades it again."""
    from autograder.grading.worker import step_failure

    record = new_record(sub, "error")
    record["problems"].append(step_failure(step, error, "a rerun grades it again"))
    return record


class ScoringError(RuntimeError):
    """nbgrader's autograde reported a failure; the message is its last error line."""


def _last_error_line(log: str) -> str:
    """The last line of a log that names an exception: what went wrong, whole."""
    lines = [line.strip() for line in (log or "").splitlines() if line.strip()]
    named = [line for line in lines if re.match(r"^[\w.]+(Error|Exception|Exit)\b", line)]
    return (named or lines or ["no message"])[-1][:400]


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
    return " ".join(dict.fromkeys(v["message"] for v in verdicts if v["status"] != PASSED))


class GradebookWriter:
    """The only process that writes the gradebook: nbgrader's autograde and feedback."""

    def __init__(self, root: Path, prepared_root: Path, submitted_root: Path, extra=None):
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
        self.submitted_root = submitted_root
        config = Config()
        if extra is not None:
            config.merge(extra)
        config.OverwriteCells.add_missing_cells = True
        config.Autograde.sanitize_preprocessors = [
            ClearOutput, DeduplicateIds, OverwriteKernelspec, OverwriteCells, CheckCellMetadata,
            RestoreSubmission]
        config.Autograde.autograde_preprocessors = [
            UsePreparedRun, IgnorePattern, ClearMetadataPreprocessor, LimitOutput,
            SaveAutoGrades, AssignLatePenalties, CheckCellMetadata]
        config.UsePreparedRun.prepared_root = str(prepared_root)
        config.GenerateFeedback.preprocessors = [GetGrades, HideHiddenTests,
                                                 CSSHTMLHeaderPreprocessor]
        self.api = course.api(root, extra=config)
        coursedir = self.api.coursedir
        self.feedback_root = Path(coursedir.root) / coursedir.feedback_directory

    def _score(self, sub: Submission, choice: dict) -> dict[str, float]:
        """Autograde `sub` with one attempt per notebook; return each notebook's score."""
        from nbgrader.api import MissingEntry

        dest = self.submitted_root / sub.student / sub.assignment
        shutil.rmtree(dest, ignore_errors=True)
        dest.mkdir(parents=True)
        if sub.timestamp:
            shutil.copyfile(sub.timestamp, dest / "timestamp.txt")
        base = self.prepared_root / sub.student / sub.assignment
        base.mkdir(parents=True, exist_ok=True)
        for name, attempt in choice.items():
            shutil.copyfile(attempt.staged, dest / f"{name}.ipynb")
            link = base / name
            if link.is_symlink() or link.is_file():
                link.unlink()
            elif link.is_dir():
                shutil.rmtree(link)
            os.symlink(f"{name}~{attempt.index}", link)
        outcome = self.api.autograde(sub.assignment, sub.student, force=True, create=True)
        if not outcome["success"]:
            raise ScoringError(_last_error_line(outcome.get("error") or outcome.get("log")))
        with self.api.gradebook as gb:
            try:
                found = gb.find_submission(sub.assignment, sub.student)
            except MissingEntry:
                return {}
            return {nb.name: float(nb.score) for nb in found.notebooks}

    def autograde(self, sub: Submission, attempts: list) -> dict:
        """Score one prepared submission into the gradebook and build its record.

        With several candidate files for one notebook, each is autograded in turn and the
        best-scoring one (on a tie, the one with the expected name, then the first) is kept
        in the gradebook and in the feedback; the record names every file and its score.
        """
        record = new_record(sub)
        record["missing_notebooks"] = [n for n, cands in sub.notebooks.items() if not cands]
        ran: dict[str, list] = {}
        for a in attempts:
            if a.staged is not None and a.run:
                ran.setdefault(a.notebook, []).append(a)
        scores: dict[tuple[str, int], float] = {}
        rounds = max((len(v) for v in ran.values()), default=0)
        choice: dict = {}
        for r in range(rounds):
            choice = {nb: cands[min(r, len(cands) - 1)] for nb, cands in ran.items()}
            got = self._score(sub, choice)
            for nb, a in choice.items():
                scores[(nb, a.index)] = got.get(nb, 0.0)
        best = {nb: max(cands, key=lambda a: (scores.get((a.notebook, a.index), 0.0),
                                              a.misnamed is None, -a.index))
                for nb, cands in ran.items()}
        if best and best != choice:
            self._score(sub, best)
        self._describe_candidates(record, attempts, best, scores)
        for name, attempt in best.items():
            folder = self.prepared_root / sub.student / sub.assignment / f"{name}~{attempt.index}"
            try:
                prepared = json.loads((folder / "prepared.json").read_text())
            except (OSError, ValueError):
                record["status"] = "error"
                record["problems"].append(f"the grading worker stopped before preparing "
                                          f"{attempt.label} (its log is under "
                                          "grading/work/logs/); a rerun grades it again")
                continue
            record["flags"] += [f for f in prepared.get("flags", []) if f not in record["flags"]]
            record["problems"] += prepared.get("problems", [])
            prefix = f"{name}.ipynb: " if len(sub.notebooks) > 1 else ""
            self._flag_run(record, prepared, prefix)
            cells_path = folder / "cells.json"
            record.setdefault("_verdict_cells", {})[name] = (
                json.loads(cells_path.read_text()) if cells_path.exists() else {})
        if best:
            feedback = self.api.generate_feedback(sub.assignment, sub.student, force=True)
            if not feedback["success"]:
                record["problems"].append("nbgrader could not generate feedback ("
                                          f"{_last_error_line(feedback.get('error'))})")
        record["flags"] = list(dict.fromkeys(record["flags"]))
        return record

    @staticmethod
    def _describe_candidates(record: dict, attempts: list, best: dict, scores: dict) -> None:
        """Flag and describe several files for one notebook: each name and its score."""
        by_notebook: dict[str, list] = {}
        for a in attempts:
            by_notebook.setdefault(a.notebook, []).append(a)
        for name, cands in by_notebook.items():
            if len(cands) < 2:
                continue
            record["flags"].append("several_notebooks")
            parts = []
            for a in cands:
                if a.staged is None:
                    parts.append(f"{a.label}: not gradable")
                elif not a.run:
                    parts.append(f"{a.label}: 0 (identical to the release, not run)")
                else:
                    parts.append(f"{a.label}: {scores.get((name, a.index), 0.0):g}"
                                 + (" (identical to the release)" if a.unanswered else ""))
            kept = best.get(name)
            if kept is not None and kept.misnamed:
                record["flags"].append("misnamed")
                record["problems"].append(f"the graded notebook is {kept.misnamed}")
            record["problems"].append(
                f"{len(cands)} files for {name}.ipynb were graded and the best kept"
                f"{' (' + kept.label + ')' if kept else ''}: " + "; ".join(parts))

    @staticmethod
    def _flag_run(record: dict, prepared: dict, prefix: str = "") -> None:
        """Flags and sentences for every limit a cell hit, wherever the learner wrote it."""
        kernel = prepared.get("kernel", {})
        program = prepared.get("program", {})
        died = sorted(set(kernel.get("kernel_died", [])) | set(program.get("died_in", [])))
        slow = sorted(set(kernel.get("timeout", [])) | set(program.get("timed_out", [])))
        names = prepared.get("cell_names", {})

        def named(cells) -> str:
            return prefix + ", ".join(names.get(str(i), f"cell {int(i) + 1}") for i in cells)

        if kernel.get("kernel_failed"):
            record["status"] = "error"
            record["problems"].append(f"{prefix}the grader could not start a kernel for this "
                                      f"notebook: {kernel['kernel_failed']}")
        if died:
            record["flags"].append("kernel_died")
            record["problems"].append(f"the kernel died in {named(died)}; grading restarted it "
                                      "and went on after it, keeping the credit already earned")
        if slow or kernel.get("notebook_timeout"):
            record["flags"].append("timeout")
            record["problems"].append(f"{named(slow)} ran past the time limit and was stopped"
                                      if slow else f"{prefix}the notebook ran past its time "
                                      "limit")
        out_of_memory = sorted(set(kernel.get("memory_error", [])) | {
            int(i) for i, e in program.get("errors", {}).items() if "MemoryError" in e})
        if out_of_memory:
            record["flags"].append("memory_limit")
            record["problems"].append(f"{named(out_of_memory)} ran out of memory (MemoryError "
                                      "at the grader's memory limit)")
        checks = sorted({v.get("check", "?") for call in prepared.get("calls", [])
                         for v in call.get("verdicts", []) if "memory limit" in
                         v.get("message", "")})
        if checks:
            record["flags"].append("memory_limit")
            record["problems"].append(f"{prefix}the check(s) {', '.join(checks)} stopped the "
                                      "learner's code at the memory limit")
        watchdog = kernel.get("watchdog", [])
        if "memory" in watchdog:
            record["flags"].append("memory_limit")
            record["problems"].append(f"{prefix}the notebook's processes used more memory "
                                      "than allowed; the grader stopped them")
        if "processes" in watchdog:
            record["flags"].append("process_limit")
            record["problems"].append(f"{prefix}the notebook started more processes than "
                                      "allowed; the grader stopped them")
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
                        cells.append(self._cell(notebook.name, grade, (verdict_cells or {})
                                                .get(notebook.name), record))
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
                          and c.get("notebook") == notebook and "verdicts" in c), None)
        if notebook in record.get("missing_notebooks", []):
            cell["status"] = "not_submitted"
            cell["message"] = f"no notebook {notebook}.ipynb was submitted"
        elif known is not None and known.get("verdicts"):
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
                  elapsed: float, unmatched: list | None = None) -> None:
    """grades.csv, results.json, report.md and the feedback HTML files.

    results.json is `{"submissions": [records], "unmatched_files": [{"path", "reason"}]}`.
    """
    out.mkdir(parents=True, exist_ok=True)
    clean = [{k: v for k, v in r.items() if k not in ("fingerprint", "_verdict_cells")}
             for r in records]
    for r in clean:
        r["flags"] = list(dict.fromkeys(r["flags"]))
    files = [{"path": u.path, "reason": u.reason} for u in unmatched or []]
    (out / "results.json").write_text(json.dumps({"submissions": clean,
                                                  "unmatched_files": files}, indent=1))
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
    (out / "report.md").write_text(report(clean, elapsed, files))


# What needs the instructor, in the order the report lists it: (heading, status or flag).
ATTENTION = (
    ("Grading errors (a rerun grades them again)", "error"),
    ("Not gradable (invalid)", "invalid"),
    ("Nothing answered (identical to the release)", "unanswered"),
    ("Several notebooks for one assignment (the best was kept)", "several_notebooks"),
    ("A notebook of the assignment is missing", "missing_notebook"),
    ("Changed grading cells (restored before grading)", "tampered"),
    ("Stopped at a time limit", "timeout"),
    ("Stopped at the memory limit", "memory_limit"),
    ("Crashed the kernel", "kernel_died"),
    ("Started too many processes", "process_limit"),
    ("Output cut", "huge_output"),
)


def report(records: list[dict], elapsed: float, unmatched: list[dict] | None = None) -> str:
    """A Markdown summary that opens with what needs the instructor, then the scores."""
    unmatched = unmatched or []
    lines = ["# Grading report", ""]
    statuses = Counter(r["status"] for r in records)
    lines += [f"{len(records)} submission records in {elapsed:.0f} s: " + ", ".join(
        f"{n} {s}" for s, n in sorted(statuses.items())), ""]
    lines += ["## Needs your attention", ""]
    attention = 0
    for heading, key in ATTENTION:
        hits = [r for r in records if r["status"] == key or key in r["flags"]]
        if not hits:
            continue
        attention += len(hits)
        lines += [f"### {heading}: {len(hits)}", ""]
        for r in hits:
            out_of = "" if r["max_score"] is None else f"/{r['max_score']:g}"
            lines.append(f"- **{r['student']} / {r['assignment']}** ({r['status']}, "
                         f"{r['score']:g}{out_of}): " + ("; ".join(r["problems"]) or r["status"]))
        lines.append("")
    if unmatched:
        attention += len(unmatched)
        lines += [f"### Notebooks graded nowhere: {len(unmatched)}", ""]
        lines += [f"- `{u['path']}`: {u['reason']}" for u in unmatched]
        lines.append("")
    if not attention:
        lines += ["Nothing: every submission was graded without a problem.", ""]
    by_assignment = defaultdict(list)
    for r in records:
        by_assignment[r["assignment"]].append(r)
    missing = {a: sorted(r["student"] for r in rs if r["status"] == "not_submitted")
               for a, rs in sorted(by_assignment.items())}
    if any(missing.values()):
        lines += ["### Not submitted", ""]
        lines += [f"- {a}: {len(names)} — {', '.join(names)}" for a, names in missing.items()
                  if names]
        lines.append("")
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
    other = [r for r in records if r["status"] in ("graded",) and r["flags"] and not any(
        r["status"] == key or key in r["flags"] for _, key in ATTENTION)]
    lines += ["", "## Other flags", ""]
    lines += [f"- **{r['student']} / {r['assignment']}** [{', '.join(r['flags'])}]: "
              + ("; ".join(r["problems"]) or "–") for r in other] or ["None."]
    return "\n".join(lines) + "\n"
