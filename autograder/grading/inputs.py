"""Find the submissions to grade, and account for every notebook in the input.

Input is nbgrader's submitted layout, `<student>/<assignment>/<notebook>.ipynb`, or an LMS zip
that nbgrader's `zip_collect` turns into that layout. Nothing in the input is ever modified.

Every notebook file ends up in exactly one place: as a candidate for one notebook of one
student's assignment, or in the list of unmatched files with the reason. Names that are near
matches of an assignment's notebook (` (1)`, `-Copy1`, `Copy of …`, an LMS resubmission suffix
`-1`, other case, spaces or hyphens for underscores, no `NN_` prefix) are candidates, flagged
`misnamed`. Whether a candidate can be read, and which of several is graded, is decided later
(`intake`, `pipeline`).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path

HUGE_NOTEBOOK_BYTES = 20 * 2**20
SKIPPED_PARTS = (".ipynb_checkpoints", "__MACOSX")
# What `nbgrader collect` puts beside a submission's notebooks: when it was submitted, and the
# secret `release_feedback` matches feedback to this submission by. Not the student's files.
NBGRADER_FILES = ("timestamp.txt", "submission_secret.txt")
# Suffixes that editors, browsers and LMSs add to a file's name, stripped one after another.
_NAME_NOISE = (r"\s*\(\d+\)$", r"[\s_-]*copy\d*$", r"-\d+$", r"^copy of\s+", r"^copy_of_")


def normalise_name(stem: str) -> str:
    """A file or folder name reduced to what identifies it: `Copy of 05 HDF5-Dataset (1)`
    and `05_hdf5_dataset` both become `05_hdf5_dataset`."""
    name = stem.strip().lower()
    changed = True
    while changed:
        changed = False
        for pattern in _NAME_NOISE:
            new = re.sub(pattern, "", name).strip()
            if new != name and new:
                name, changed = new, True
    return re.sub(r"[\s._-]+", "_", name).strip("_")


def match_name(stem: str, targets: list[str]) -> tuple[str, bool] | None:
    """The target `stem` names, and whether it names it exactly; None if it names none.

    An LMS's resubmission suffix (`-1`) is exact: the learner did not rename the file.
    A target also matches without its `NN_` number (`hdf5_dataset` for `05_hdf5_dataset`).
    """
    if stem in targets:
        return stem, True
    resubmitted = re.sub(r"-\d+$", "", stem)  # Canvas names a re-upload `<file>-1`, `-2`, ...
    if resubmitted in targets:
        return resubmitted, True
    key = normalise_name(stem)
    for target in targets:
        if key == normalise_name(target):
            return target, False
    for target in targets:
        bare = re.sub(r"^\d+_", "", normalise_name(target))
        if bare and key == bare:
            return target, False
    return None


@dataclass
class Candidate:
    """One file that may be a student's notebook for one notebook of an assignment."""

    path: Path
    misnamed: str | None = None  # why the name is not the expected one, if it is not


@dataclass
class Submission:
    """One student's work for one assignment, as found in the input."""

    student: str
    assignment: str
    notebooks: dict[str, list[Candidate]]  # the assignment's notebook names -> candidates
    status: str = "ok"  # ok, not_submitted, invalid
    flags: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    timestamp: Path | None = None

    @property
    def key(self) -> str:
        return f"{self.student}/{self.assignment}"

    def files(self) -> list[Path]:
        return [c.path for cands in self.notebooks.values() for c in cands]

    def fingerprint(self) -> str:
        """Hash of every candidate file's name and bytes: re-grading is skipped while it holds."""
        files = sorted(self.files())
        if not files:
            return self.status
        digest = hashlib.sha256()
        for path in files:
            digest.update(path.name.encode() + b"\0" + path.read_bytes())
        return digest.hexdigest()


@dataclass
class Unmatched:
    """A notebook in the input that is graded nowhere, and why."""

    path: str  # relative to the input folder
    reason: str


def _notebooks_under(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*.ipynb") if p.is_file()
                  and not any(part in SKIPPED_PARTS for part in p.relative_to(folder).parts))


def find_submissions(root: Path, assignments: dict[str, list[str]]
                     ) -> tuple[list[Submission], list[Unmatched]]:
    """Every (student, assignment) pair, and the notebooks that belong to none.

    `assignments` maps each assignment to the notebook names (without .ipynb) it expects.
    Students are the folders under `root`; an assignment folder may be a near-match name. A
    student with no folder and no notebook for an assignment is `not_submitted`; an assignment
    of one notebook whose folder holds other notebooks only grades them all (`misnamed`).
    """
    root = Path(root)
    unmatched: list[Unmatched] = []

    def rel(p: Path) -> str:
        return str(p.relative_to(root))

    for path in sorted(root.glob("*.ipynb")):
        unmatched.append(Unmatched(rel(path), "not inside a student's folder "
                                   "(<student>/<assignment>/<notebook>.ipynb)"))
    for path in sorted(p for p in root.rglob("*") if p.is_file() and p.suffix == ".ipynb"
                       and any(part in ("__MACOSX",) for part in p.relative_to(root).parts)):
        unmatched.append(Unmatched(rel(path), "a macOS resource file from the zip, not a "
                                   "notebook"))
    students = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")
                      and p.name not in SKIPPED_PARTS)
    found = []
    names = sorted(assignments)
    for student_dir in students:
        folders: dict[str, list[Path]] = {a: [] for a in names}
        loose: dict[str, list[Path]] = {a: [] for a in names}
        for child in sorted(student_dir.iterdir()):
            if child.name.startswith(".") or child.name in SKIPPED_PARTS:
                continue
            if child.is_dir():
                match = match_name(child.name, names)
                if match is None:
                    for nb in _notebooks_under(child):
                        unmatched.append(Unmatched(rel(nb), f"the folder `{child.name}` "
                                                   "matches no assignment of the course"))
                    continue
                folders[match[0]].append(child)
            elif child.suffix == ".ipynb":
                owner = next((a for a in names if match_name(child.stem, assignments[a])
                              or match_name(child.stem, [a])), None)
                if owner is None:
                    unmatched.append(Unmatched(rel(child), "directly in the student's folder, "
                                               "and its name matches no assignment"))
                else:
                    loose[owner].append(child)
        for assignment in names:
            expected = assignments[assignment]
            sub = Submission(student_dir.name, assignment, {n: [] for n in expected})
            found.append(sub)
            dirs, files = folders[assignment], []
            for folder in dirs:
                if folder.name != assignment:
                    sub.flags.append("misnamed")
                    sub.problems.append(f"the folder is called `{folder.name}`, not "
                                        f"`{assignment}`; it was graded anyway")
                files += [p for p in folder.rglob("*") if p.is_file()
                          and not any(part in SKIPPED_PARTS for part in p.parts)]
                if (folder / "timestamp.txt").is_file() and sub.timestamp is None:
                    sub.timestamp = folder / "timestamp.txt"
            notebooks = [p for p in files if p.suffix == ".ipynb"] + loose[assignment]
            if loose[assignment]:
                sub.flags.append("misnamed")
                sub.problems.append(f"{', '.join(p.name for p in loose[assignment])} lay in the "
                                    f"student's folder instead of `{assignment}/`")
            if not dirs and not notebooks:
                sub.status = "not_submitted"
                continue
            others = []
            for nb in notebooks:
                match = match_name(nb.stem, expected)
                if match is None:
                    others.append(nb)
                    continue
                note = None if match[1] else f"named `{nb.name}`, not `{match[0]}.ipynb`"
                sub.notebooks[match[0]].append(Candidate(nb, note))
            if others and len(expected) == 1 and not sub.notebooks[expected[0]]:
                # A lone notebook with another name is the work: grade it (and its siblings).
                sub.notebooks[expected[0]] = [
                    Candidate(nb, f"named `{nb.name}`, not `{expected[0]}.ipynb`")
                    for nb in others]
                others = []
            for nb in others:
                unmatched.append(Unmatched(rel(nb), f"in {sub.student}'s `{assignment}` folder, "
                                           "but its name matches no notebook of the assignment "
                                           f"({', '.join(e + '.ipynb' for e in expected)})"))
            graded = {c.path for cands in sub.notebooks.values() for c in cands}
            extra = sorted(str(p.relative_to(student_dir)) for p in files
                           if p not in graded and p.name not in NBGRADER_FILES)
            if extra:
                sub.flags.append("extra_files")
                sub.problems.append(f"ignored extra files: {', '.join(extra[:10])}"
                                    + (f" and {len(extra) - 10} more" if len(extra) > 10 else ""))
            if not graded:
                # nbgrader's own files alone (a submission with its notebook removed) are empty.
                files = [p for p in files if p.name not in NBGRADER_FILES]
                sub.status = "not_submitted" if not files else "invalid"
                if not files:
                    sub.flags.append("empty_submission")
                else:
                    sub.problems.append("no notebook in the submission (expected "
                                        f"{', '.join(e + '.ipynb' for e in expected)})")
                continue
            for name, cands in sub.notebooks.items():
                if not cands and len(expected) > 1:
                    sub.problems.append(f"no notebook `{name}.ipynb` in the submission; its "
                                        "cells score 0")
            big = [c.path for cands in sub.notebooks.values() for c in cands
                   if c.path.stat().st_size > HUGE_NOTEBOOK_BYTES]
            for path in big:
                sub.flags.append("huge_output")
                sub.problems.append(f"{path.name} is {path.stat().st_size / 2**20:.0f} MB "
                                    "(outputs are cleared before grading)")
            sub.flags = list(dict.fromkeys(sub.flags))
    return found, unmatched
