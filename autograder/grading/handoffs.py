"""What crosses a process boundary in `memcourse grade`, typed: a `Job`, a `Prepared`, a `Record`.

- `Job`: what the pipeline asks one worker process to prepare (one candidate notebook of one
  submission); written as `grading/work/jobs/<name>.json`, read by `worker.main`.
- `Prepared`: what the worker returns, `prepared.json` beside `executed.ipynb` in the job's
  output folder: the kernel run, the graded program's run, and every check call's verdicts.
  The gradebook writer reads it once and hands it to nbgrader's autograde (`UsePreparedRun`).
- `Record`: one (student, assignment) as `grades.csv`, `results.json` and the report show it;
  saved under `grading/work/records/` so that a rerun skips what is already graded.

Each has `to_json()` (plain JSON data) and `from_json(data)`; `from_json` fills fields an
older file lacks with their defaults, so records written by an earlier version still load.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from autograder.engine.limits import Limits
from autograder.engine.spec import Verdict
from autograder.grading.inputs import Submission

PREPARED_FILE = "prepared.json"
EXECUTED_FILE = "executed.ipynb"
WORKER_STOPPED = ("the grading worker stopped before preparing {what} (its log is under "
                  "grading/work/logs/)")


def prepared_folder(root: Path, student: str, assignment: str, notebook: str, index: int
                    ) -> Path:
    """Where the worker leaves its result for candidate `index` of one notebook."""
    return root / student / assignment / f"{notebook}~{index}"


def _known(cls: type, data: dict[str, Any]) -> dict[str, Any]:
    names = {f.name for f in fields(cls)}
    return {k: v for k, v in data.items() if k in names}


@dataclass
class Job:
    """One candidate notebook for a worker to prepare; every path is absolute."""

    student: str
    assignment: str
    notebook: str  # the assignment's notebook name this candidate stands for
    submitted_notebook: str  # the reconciled candidate (grading/work/candidates/...)
    submission_dir: str  # its folder, copied whole into the folder the notebook runs in
    release_notebook: str  # the staged release notebook it is compared with
    course_root: str  # where nbgrader_config.py is: the course's own nbgrader settings
    db_url: str  # a snapshot of the gradebook (OverwriteCells reads the source cells)
    outdir: str  # where prepared.json, executed.ipynb, calls.jsonl and program.log land
    hide: list[str]  # folders the sandbox hides (solutions, other submissions, the gradebook)
    cell_timeout_s: float
    notebook_timeout_s: float
    kernel_limits: Limits
    check_limits: Limits

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Job:
        data = dict(data)
        data["kernel_limits"] = Limits(**data["kernel_limits"])
        data["check_limits"] = Limits(**data["check_limits"])
        return cls(**_known(cls, data))

    def write(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_json()))

    @classmethod
    def read(cls, path: Path) -> Job:
        return cls.from_json(json.loads(Path(path).read_text()))


@dataclass
class Prepared:
    """A worker's result for one candidate notebook (`prepared.json`).

    `kernel` is `execute.ResilientExecute`'s report (cells that timed out, died, were cut or ran
    out of memory, and the tree watchdog's trips); `program` is `worker.run_program`'s report
    (cells it died in or timed out in, and each cell's error); `calls` is one entry per check
    call the graded program reached, as `rerun_answers` recorded it plus its `verdicts`.
    """

    student: str
    assignment: str
    notebook: str
    status: str = "error"  # "prepared" once the checks ran; "error" otherwise
    flags: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    failed_steps: list[str] = field(default_factory=list)
    cell_names: dict[str, str] = field(default_factory=dict)  # cell index -> how to name it
    kernel: dict[str, Any] = field(default_factory=dict)
    program: dict[str, Any] = field(default_factory=dict)
    calls: list[dict[str, Any]] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)  # per step
    wall_s: float = 0.0
    folder: str = ""  # where it was read from: `executed.ipynb` is beside it (not saved)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("folder")
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Prepared:
        return cls(**_known(cls, data))

    def save(self, folder: Path) -> None:
        (folder / PREPARED_FILE).write_text(json.dumps(self.to_json(), indent=1))

    @classmethod
    def load(cls, folder: Path) -> Prepared | None:
        """The result in `folder`, or None where the worker stopped before writing one."""
        try:
            prepared = cls.from_json(json.loads((folder / PREPARED_FILE).read_text()))
        except (OSError, ValueError, TypeError):
            return None
        prepared.folder = str(folder)
        return prepared

    @property
    def executed(self) -> Path | None:
        """The notebook as the sandboxed kernel ran it, if that step got so far."""
        path = Path(self.folder) / EXECUTED_FILE if self.folder else None
        return path if path is not None and path.is_file() else None

    def verdicts_by_cell(self) -> dict[str, list[Verdict]]:
        """Each test cell's verdicts (by grade_id), in the order its check calls ran."""
        cells: dict[str, list[Verdict]] = {}
        for call in self.calls:
            cells.setdefault(call["grade_id"], []).extend(
                Verdict.from_dict(v) for v in call.get("verdicts", []))
        return cells


@dataclass
class Record:
    """One (student, assignment): what grades.csv, results.json and report.md show.

    `status` is graded, not_submitted, invalid or error (a rerun grades an error again);
    `cells` holds one entry per graded cell (grade_id, score, status, message, verdicts).
    """

    student: str
    assignment: str
    status: str = "graded"
    score: float = 0.0
    max_score: float | None = None
    flags: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    cells: list[dict[str, Any]] = field(default_factory=list)
    missing_notebooks: list[str] = field(default_factory=list)
    needs_manual_grade: bool = False
    fingerprint: str = ""  # what was graded; kept in grading/work/records/, not in results

    @classmethod
    def of(cls, sub: Submission, status: str = "graded", fingerprint: str = "") -> Record:
        """A new record for `sub`, carrying what reading it found (its flags and sentences)."""
        return cls(sub.student, sub.assignment, status, flags=list(sub.flags),
                   problems=list(sub.problems), fingerprint=fingerprint)

    def to_json(self, with_fingerprint: bool = True) -> dict[str, Any]:
        data = asdict(self)
        data["flags"] = list(dict.fromkeys(self.flags))
        if not with_fingerprint:
            data.pop("fingerprint")
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Record:
        record = cls(**_known(cls, data))
        # A record saved before this version kept its verdicts apart, by notebook and grade_id.
        for notebook, by_cell in (data.get("_verdict_cells") or {}).items():
            for gid, cell in (by_cell or {}).items():
                if not any(c.get("grade_id") == gid and c.get("notebook") == notebook
                           for c in record.cells):
                    record.cells.append({"notebook": notebook, "grade_id": gid,
                                         "verdicts": cell.get("verdicts", [])})
        return record


WORKER_STEP_TAIL = ("the other steps went on, and the full traceback is in the worker's log "
                    "under grading/work/logs/")


def step_failure(step: str, error: BaseException, tail: str = WORKER_STEP_TAIL) -> str:
    """One complete sentence for an exception in one grading step: never a cut path.

    The exception's last line is kept whole up to 300 characters, cut at a word; `tail` says
    what happened next.
    """
    text = str(error).strip().splitlines()
    detail = text[-1] if text else ""
    if len(detail) > 300:
        detail = detail[:300].rsplit(" ", 1)[0] + " …"
    return (f"the grader failed while {step} ({type(error).__name__}"
            f"{': ' + detail if detail else ''}); {tail}")
