"""The gradebook writer: the one process that writes nbgrader's gradebook, and the records.

Each prepared submission is autograded by nbgrader with `UsePreparedRun` in place of
execution (the worker's `Prepared` result, read once here, is handed to it through the
config), then its feedback is generated. Scores are read back from the gradebook, so manual
grades given in formgrader appear in grades.csv the next time `memcourse grade` runs.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

from nbgrader.api import MissingEntry
from traitlets.config import Config

from autograder import course
from autograder.engine.spec import FAILED, NOT_ATTEMPTED, PASSED, Verdict, overall_status
from autograder.grading.handoffs import (
    WORKER_STOPPED,
    Prepared,
    Record,
    prepared_folder,
    step_failure,
)
from autograder.grading.inputs import NBGRADER_FILES, Submission
from autograder.grading.preprocessors import lateness
from autograder.grading.settings import grading_config


def error_record(sub: Submission, step: str, error: BaseException) -> Record:
    """A record for a submission whose grading failed in `step`: a rerun grades it again."""
    record = Record.of(sub, "error")
    record.problems.append(step_failure(step, error, "a rerun grades it again"))
    return record


class ScoringError(RuntimeError):
    """nbgrader's autograde reported a failure; the message is its last error line."""


def _last_error_line(log: str) -> str:
    """The last line of a log that names an exception: what went wrong, whole."""
    lines = [line.strip() for line in (log or "").splitlines() if line.strip()]
    named = [line for line in lines if re.match(r"^[\w.]+(Error|Exception|Exit)\b", line)]
    return (named or lines or ["no message"])[-1][:400]


def _cell_message(verdicts: list[Verdict]) -> str:
    """One sentence for a test cell: all passed, why it was not attempted, or what failed."""
    if all(v.status == PASSED for v in verdicts):
        return "all checks passed"
    if all(v.status == NOT_ATTEMPTED for v in verdicts):
        return verdicts[0].message
    return " ".join(dict.fromkeys(v.message for v in verdicts if v.status != PASSED))


class GradebookWriter:
    """The only process that writes the gradebook: nbgrader's autograde and feedback.

    nbgrader autogrades what it finds in its submitted directory; the writer gives it a folder
    of its own, `submitted_root` (emptied per submission), never the course's
    `grading/submitted/`. That one holds what `nbgrader collect` left, often the very input
    being graded, and must stay as collected. nbgrader's `submission_secret.txt` is copied
    with `timestamp.txt`: `release_feedback` matches feedback to a student's submission by it.
    """

    def __init__(self, root: Path, prepared_root: Path, submitted_root: Path,
                 extra: Config | None = None):
        self.root, self.prepared_root = root, prepared_root
        self.submitted_root = submitted_root
        config = Config()
        if extra is not None:
            config.merge(extra)
        config.merge(grading_config())
        config.CourseDirectory.submitted_directory = str(submitted_root)
        self.api = course.api(root, extra=config)
        coursedir = self.api.coursedir
        self.feedback_root = Path(coursedir.root) / coursedir.feedback_directory

    def _score(self, sub: Submission, choice: dict, prepared: dict[str, Prepared | None]
               ) -> dict[str, float]:
        """Autograde `sub` with one attempt per notebook; return each notebook's score."""
        dest = self.submitted_root / sub.student / sub.assignment
        shutil.rmtree(dest, ignore_errors=True)
        dest.mkdir(parents=True)
        if sub.timestamp:
            for name in NBGRADER_FILES:  # the secret: release_feedback needs it (see class doc)
                if (sub.timestamp.parent / name).is_file():
                    shutil.copyfile(sub.timestamp.parent / name, dest / name)
        for name, attempt in choice.items():
            shutil.copyfile(attempt.staged, dest / f"{name}.ipynb")
            self._link_scored(sub, name, attempt.index)
        # nbgrader builds its preprocessors from the API's config at each call: this is how
        # UsePreparedRun gets the results read here, without reading prepared.json again.
        # A worker that stopped before writing its result may still have left executed.ipynb.
        self.api.config.UsePreparedRun.prepared = {
            name: (p.to_json() if (p := prepared[(name, a.index)]) else {})
            | {"folder": str(self._folder(sub, name, a.index))} for name, a in choice.items()}
        outcome = self.api.autograde(sub.assignment, sub.student, force=True, create=True)
        if not outcome["success"]:
            raise ScoringError(_last_error_line(outcome.get("error") or outcome.get("log")))
        with self.api.gradebook as gb:
            try:
                found = gb.find_submission(sub.assignment, sub.student)
            except MissingEntry:
                return {}
            return {nb.name: float(nb.score) for nb in found.notebooks}

    def _note_lateness(self, sub: Submission, record: Record) -> None:
        """Flag `late` what nbgrader found submitted after the due date (its timestamp.txt
        against the assignment's due date, set in formgrader); the feedback says so too."""
        with self.api.gradebook as gb:
            late = lateness(gb, sub.assignment, sub.student)
        if late and "late" not in record.flags:
            record.flags.append("late")
            record.problems.append(late)

    def _link_scored(self, sub: Submission, name: str, index: int) -> None:
        """Point prepared/<student>/<assignment>/<notebook> at the candidate being scored."""
        base = self._folder(sub, name, index).parent
        base.mkdir(parents=True, exist_ok=True)
        link = base / name
        if link.is_symlink() or link.is_file():
            link.unlink()
        elif link.is_dir():
            shutil.rmtree(link)
        os.symlink(f"{name}~{index}", link)

    def _folder(self, sub: Submission, notebook: str, index: int) -> Path:
        return prepared_folder(self.prepared_root, sub.student, sub.assignment, notebook, index)

    def autograde(self, sub: Submission, attempts: list) -> Record:
        """Score one prepared submission into the gradebook and build its record.

        With several candidate files for one notebook, each is autograded in turn and the
        best-scoring one (on a tie, the one with the expected name, then the first) is kept
        in the gradebook and in the feedback; the record names every file and its score.
        """
        record = Record.of(sub)
        record.missing_notebooks = [n for n, cands in sub.notebooks.items() if not cands]
        ran: dict[str, list] = {}
        for a in attempts:
            if a.staged is not None and a.run:
                ran.setdefault(a.notebook, []).append(a)
        prepared = {(a.notebook, a.index): Prepared.load(self._folder(sub, a.notebook, a.index))
                    for cands in ran.values() for a in cands}
        scores: dict[tuple[str, int], float] = {}
        rounds = max((len(v) for v in ran.values()), default=0)
        choice: dict = {}
        for r in range(rounds):
            choice = {nb: cands[min(r, len(cands) - 1)] for nb, cands in ran.items()}
            got = self._score(sub, choice, prepared)
            for nb, a in choice.items():
                scores[(nb, a.index)] = got.get(nb, 0.0)
        best = {nb: max(cands, key=lambda a: (scores.get((a.notebook, a.index), 0.0),
                                              a.misnamed is None, -a.index))
                for nb, cands in ran.items()}
        if best and best != choice:
            self._score(sub, best, prepared)
        self._describe_candidates(record, attempts, best, scores, prepared)
        for name, attempt in best.items():
            result = prepared[(name, attempt.index)]
            if result is None:
                record.status = "error"
                record.problems.append(WORKER_STOPPED.format(what=attempt.label)
                                       + "; a rerun grades it again")
                continue
            record.flags += [f for f in result.flags if f not in record.flags]
            record.problems += result.problems
            prefix = f"{name}.ipynb: " if len(sub.notebooks) > 1 else ""
            self._flag_run(record, result, prefix)
            for grade_id, verdicts in result.verdicts_by_cell().items():
                record.cells.append(_verdict_cell(name, grade_id, verdicts))
        if best:
            self._note_lateness(sub, record)
            feedback = self.api.generate_feedback(sub.assignment, sub.student, force=True)
            if not feedback["success"]:
                record.problems.append("nbgrader could not generate feedback ("
                                       f"{_last_error_line(feedback.get('error'))})")
        if record.status == "graded" and best and "unanswered" not in record.flags and all(
                nothing_attempted(prepared[(name, a.index)]) for name, a in best.items()):
            # Seen only after the run: an untouched notebook from an earlier release differs
            # from the current one, so reading it could not tell.
            record.flags.append("unanswered")
            record.problems.append("nothing was attempted: every check found the answers still "
                                   "raising NotImplementedError (an untouched notebook, perhaps "
                                   "from an earlier release)")
        record.flags = list(dict.fromkeys(record.flags))
        return record

    @staticmethod
    def _describe_candidates(record: Record, attempts: list, best: dict, scores: dict,
                             prepared: dict) -> None:
        """Flag and describe several files for one notebook: each name and its score."""
        by_notebook: dict[str, list] = {}
        for a in attempts:
            by_notebook.setdefault(a.notebook, []).append(a)
        for name, cands in by_notebook.items():
            if len(cands) < 2:
                continue
            record.flags.append("several_notebooks")
            parts = []
            for a in cands:
                if a.staged is None:
                    parts.append(f"{a.label}: not gradable")
                elif not a.run:
                    parts.append(f"{a.label}: 0 (identical to the release, not run)")
                else:
                    untouched = " (identical to the release)" if a.unanswered else \
                        " (nothing attempted)" if nothing_attempted(
                            prepared.get((a.notebook, a.index))) else ""
                    parts.append(f"{a.label}: {scores.get((name, a.index), 0.0):g}{untouched}")
            kept = best.get(name)
            if kept is not None and kept.misnamed:
                record.flags.append("misnamed")
                record.problems.append(f"the graded notebook is {kept.misnamed}")
            record.problems.append(
                f"{len(cands)} files for {name}.ipynb were graded and the best kept"
                f"{' (' + kept.label + ')' if kept else ''}: " + "; ".join(parts))

    @staticmethod
    def _flag_run(record: Record, prepared: Prepared, prefix: str = "") -> None:
        """Flags and sentences for every limit a cell hit, wherever the learner wrote it."""
        kernel, program = prepared.kernel, prepared.program
        died = sorted(set(kernel.get("kernel_died", [])) | set(program.get("died_in", [])))
        slow = sorted(set(kernel.get("timeout", [])) | set(program.get("timed_out", [])))
        names = prepared.cell_names
        flags, problems = record.flags, record.problems

        def named(cells) -> str:
            return prefix + ", ".join(names.get(str(i), f"cell {int(i) + 1}") for i in cells)

        if kernel.get("kernel_failed"):
            record.status = "error"
            problems.append(f"{prefix}the grader could not start a kernel for this "
                            f"notebook: {kernel['kernel_failed']}")
        if died:
            flags.append("kernel_died")
            problems.append(f"the kernel died in {named(died)}; grading restarted it "
                            "and went on after it, keeping the credit already earned")
        if slow or kernel.get("notebook_timeout"):
            flags.append("timeout")
            problems.append(f"{named(slow)} ran past the time limit and was stopped"
                            if slow else f"{prefix}the notebook ran past its time "
                            "limit")
        out_of_memory = sorted(set(kernel.get("memory_error", [])) | {
            int(i) for i, e in program.get("errors", {}).items() if "MemoryError" in e})
        if out_of_memory:
            flags.append("memory_limit")
            problems.append(f"{named(out_of_memory)} ran out of memory (MemoryError "
                            "at the grader's memory limit)")
        checks = sorted({v.get("check", "?") for call in prepared.calls
                         for v in call.get("verdicts", []) if "memory limit" in
                         v.get("message", "")})
        if checks:
            flags.append("memory_limit")
            problems.append(f"{prefix}the check(s) {', '.join(checks)} stopped the "
                            "learner's code at the memory limit")
        watchdog = kernel.get("watchdog", [])
        if "memory" in watchdog:
            flags.append("memory_limit")
            problems.append(f"{prefix}the notebook's processes used more memory "
                            "than allowed; the grader stopped them")
        if "processes" in watchdog:
            flags.append("process_limit")
            problems.append(f"{prefix}the notebook started more processes than "
                            "allowed; the grader stopped them")
        if kernel.get("output_cut"):
            flags.append("huge_output")
            problems.append(f"output of {named(kernel['output_cut'])} was cut")

    def refresh_scores(self, records: list[Record]) -> list[Record]:
        """Fill scores and per-cell results from the gradebook (manual grades included)."""
        with self.api.gradebook as gb:
            max_scores = {a.name: a.max_score for a in gb.assignments}
            for record in records:
                record.max_score = max_scores.get(record.assignment, record.max_score)
                if record.status != "graded":
                    # verdicts kept for scoring that never happened: not results of a cell
                    record.cells = [c for c in record.cells if "status" in c]
                    continue
                try:
                    sub = gb.find_submission(record.assignment, record.student)
                except MissingEntry:
                    record.status = "error"
                    record.cells = [c for c in record.cells if "status" in c]
                    continue
                # nbgrader's score less its late penalty (when the course sets a policy).
                record.score = max(0.0, float(sub.score) - float(sub.late_submission_penalty or 0))
                record.needs_manual_grade = bool(sub.needs_manual_grade)
                cells = [self._cell(notebook.name, grade, record)
                         for notebook in sub.notebooks for grade in notebook.grades]
                record.cells = cells or [c for c in record.cells if "status" in c]
        return records

    @staticmethod
    def _cell(notebook: str, grade, record: Record) -> dict:
        """One graded cell as results.json shows it, from the gradebook and the verdicts."""
        name = grade.name
        cell = {"notebook": notebook, "grade_id": name,
                "score": float(grade.score) if grade.score is not None else None,
                "max_score": float(grade.max_score)}
        # The verdicts this run's autograde kept, or an earlier run's (a resumed record).
        known = next((c for c in record.cells if c["grade_id"] == name
                      and c.get("notebook") == notebook and "verdicts" in c), None)
        verdicts = [Verdict.from_dict(v) for v in (known or {}).get("verdicts", [])]
        if notebook in record.missing_notebooks:
            cell["status"] = "not_submitted"
            cell["message"] = f"no notebook {notebook}.ipynb was submitted"
        elif verdicts:
            cell["status"] = overall_status(v.status for v in verdicts)
            cell["message"] = _cell_message(verdicts)
            cell["verdicts"] = [v.to_dict() for v in verdicts]
        elif grade.cell.cell_type == "markdown" or grade.needs_manual_grade or \
                grade.manual_score is not None:
            cell["status"] = "manual" if grade.manual_score is None else "manually_graded"
            cell["message"] = "written answer: graded by hand in formgrader"
        else:
            cell["status"] = PASSED if grade.score == grade.max_score else FAILED
            cell["message"] = "passed" if cell["status"] == PASSED else "the cell's tests failed"
        return cell


def nothing_attempted(prepared: Prepared | None) -> bool:
    """True when the run's checks ran and every one found its answer not attempted."""
    if prepared is None:
        return False
    verdicts = [v for vs in prepared.verdicts_by_cell().values() for v in vs]
    return bool(verdicts) and all(v.status == NOT_ATTEMPTED for v in verdicts)


def _verdict_cell(notebook: str, grade_id: str, verdicts: list[Verdict]) -> dict:
    """A test cell's verdicts, kept in the record until `refresh_scores` adds its score."""
    return {"notebook": notebook, "grade_id": grade_id,
            "verdicts": [v.to_dict() for v in verdicts]}
