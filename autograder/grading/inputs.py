"""Find the submissions to grade and say clearly what is wrong with the ones that cannot be.

Input is nbgrader's submitted layout, `<student>/<assignment>/<notebook>.ipynb`, or an LMS zip
that nbgrader's `zip_collect` turns into that layout. Nothing in the input is ever modified.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

HUGE_NOTEBOOK_BYTES = 20 * 2**20


@dataclass
class Submission:
    """One student's work for one assignment, as found in the input."""

    student: str
    assignment: str
    notebook_name: str  # the name the assignment expects, without .ipynb
    notebook: Path | None = None  # the file to grade, if any
    status: str = "ok"  # ok, not_submitted, invalid
    flags: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    timestamp: Path | None = None

    @property
    def key(self) -> str:
        return f"{self.student}/{self.assignment}"

    def fingerprint(self) -> str:
        """Hash of the submitted notebook's bytes: re-grading is skipped while it is unchanged."""
        if self.notebook is None:
            return self.status
        return hashlib.sha256(self.notebook.read_bytes()).hexdigest()


def _validate(path: Path) -> str | None:
    """Return why `path` is not a gradable notebook, or None if it is."""
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        return f"{path.name} is not UTF-8 text (byte {e.start}); re-save it from Jupyter"
    try:
        json.loads(text)
    except json.JSONDecodeError as e:
        return f"{path.name} is not valid JSON (line {e.lineno}, column {e.colno}): the file " \
               "is damaged or was edited outside Jupyter"
    try:
        nb = nbformat.reads(text, as_version=4)
        nbformat.validate(nb)
    except Exception as e:  # nbformat raises several kinds for a JSON that is not a notebook
        return f"{path.name} is JSON but not a Jupyter notebook ({type(e).__name__})"
    return None


def find_submissions(root: Path, assignments: dict[str, str]) -> list[Submission]:
    """Every (student, assignment) pair: students are the folders under `root`.

    `assignments` maps each assignment to the notebook name it expects. A student with no
    folder for an assignment is `not_submitted`; a lone notebook with another name is graded
    and flagged `misnamed`; files other than the notebook are ignored and flagged.
    """
    students = sorted(p.name for p in Path(root).iterdir()
                      if p.is_dir() and not p.name.startswith("."))
    found = []
    for student in students:
        for assignment, expected in sorted(assignments.items()):
            sub = Submission(student, assignment, expected)
            folder = Path(root) / student / assignment
            found.append(sub)
            if not folder.is_dir():
                sub.status = "not_submitted"
                continue
            files = [p for p in folder.rglob("*") if p.is_file()
                     and ".ipynb_checkpoints" not in p.parts]
            notebooks = [p for p in files if p.suffix == ".ipynb" and p.parent == folder]
            if (folder / "timestamp.txt").is_file():
                sub.timestamp = folder / "timestamp.txt"
            target = folder / f"{expected}.ipynb"
            if target in notebooks:
                sub.notebook = target
            elif len(notebooks) == 1:
                sub.notebook = notebooks[0]
                sub.flags.append("misnamed")
                sub.problems.append(f"the notebook is called {notebooks[0].name}, not "
                                    f"{expected}.ipynb; it was graded anyway")
            elif not notebooks:
                sub.status = "not_submitted"
                if not files:
                    sub.flags.append("empty_submission")
                else:
                    sub.status = "invalid"
                    sub.problems.append(f"no notebook in the submission (expected "
                                        f"{expected}.ipynb)")
                continue
            else:
                sub.status = "invalid"
                sub.problems.append(f"several notebooks and none called {expected}.ipynb: "
                                    f"{', '.join(sorted(p.name for p in notebooks))}")
                continue
            extra = sorted(str(p.relative_to(folder)) for p in files
                           if p != sub.notebook and p.name != "timestamp.txt")
            if extra:
                sub.flags.append("extra_files")
                sub.problems.append(f"ignored extra files: {', '.join(extra[:10])}")
            problem = _validate(sub.notebook)
            if problem:
                sub.status = "invalid"
                sub.problems.append(problem)
            elif sub.notebook.stat().st_size > HUGE_NOTEBOOK_BYTES:
                sub.flags.append("huge_output")
                sub.problems.append(f"the notebook is {sub.notebook.stat().st_size / 2**20:.0f} "
                                    "MB (outputs are cleared before grading)")
    return found
