"""`memcourse grade`: grade a class in one command, through nbgrader, in parallel and sandboxed.

1. Find the submissions (`inputs`), copy the gradable notebooks into the course's
   `grading/submitted/` (the input is never modified), and make sure nbgrader knows the
   assignments, the datasets and the check fixtures exist.
2. Prepare every submission in parallel worker processes (`worker`): sanitize, run in a
   sandboxed kernel that survives crashes, run the graded program and the checks outside it.
3. One thread of this process, the only gradebook writer, autogrades each submission with
   nbgrader as soon as its worker has prepared it (`UsePreparedRun` stands in for execution)
   and generates its feedback, while the other workers go on.
4. Write grades.csv, results.json, report.md and feedback/ (`results`).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import asdict, dataclass
from pathlib import Path

from autograder import course
from autograder.engine.limits import Limits
from autograder.grading.inputs import Submission, find_submissions
from memcourse.errors import CourseError


class GradingError(CourseError):
    """The batch itself could not run (not one submission's problem)."""


@dataclass
class Settings:
    """Limits and time budgets for one grading run."""

    jobs: int = os.cpu_count() or 1
    cell_timeout_s: float = 120.0
    notebook_timeout_s: float = 900.0
    kernel_limits: Limits = Limits(memory_mib=3072, address_space_mib=8192, cpu_s=1200,
                                   file_size_mib=1024)
    check_limits: Limits = Limits()


# Canvas's bulk download names each file <lastfirst>_[LATE_]<userid>_<submissionid>_<file>;
# set c.FileNameCollectorPlugin.named_regexp in nbgrader_config.py for another LMS.
DEFAULT_ZIP_REGEXP = (r"^(?:.*/)?(?P<student_id>[^_/]+)_(?:LATE_|late_)?\d+_\d+_"
                      r"(?P<file_id>[^/]+\.ipynb)$")


def _collect_zip(zip_path: Path, root: Path, staging: Path) -> Path:
    """Turn an LMS bulk download into nbgrader's submitted layout with nbgrader's zip_collect."""
    import re

    config = course.load_config(root)
    regexp = config.FileNameCollectorPlugin.get("named_regexp") or DEFAULT_ZIP_REGEXP
    shutil.rmtree(staging, ignore_errors=True)
    archive = staging / "downloaded" / "upload" / "archive"
    archive.mkdir(parents=True)
    shutil.copy2(zip_path, archive / zip_path.name)
    (staging / "nbgrader_config.py").write_text(
        "c = get_config()\n"
        f"c.CourseDirectory.root = {str(staging)!r}\n"
        "c.CourseDirectory.submitted_directory = 'submitted'\n"
        f"c.FileNameCollectorPlugin.named_regexp = {regexp!r}\n")
    proc = subprocess.run([sys.executable, "-m", "nbgrader", "zip_collect", "upload",
                           "--force"], cwd=staging, capture_output=True, text=True,
                          env={**os.environ, "PATH": f"{Path(sys.executable).parent}"
                                                     f"{os.pathsep}{os.environ['PATH']}"})
    collected = staging / "submitted"
    if proc.returncode != 0 or not collected.is_dir():
        raise GradingError(f"nbgrader zip_collect could not read {zip_path.name}; expected "
                           "files named like alice_1234_5678_05_hdf5_dataset.ipynb:\n"
                           f"{proc.stderr[-1500:]}")
    # zip_collect puts every file under <student>/upload/; each notebook's name (minus an LMS
    # "-1" resubmission suffix) says which assignment it belongs to.
    layout = staging / "layout"
    for student_dir in sorted(collected.iterdir()):
        for nb in sorted((student_dir / "upload").glob("*.ipynb")):
            assignment = re.sub(r"-\d+$", "", nb.stem)
            dest = layout / student_dir.name / assignment
            dest.mkdir(parents=True, exist_ok=True)
            shutil.copy2(nb, dest / f"{assignment}.ipynb")
    if not layout.is_dir():
        raise GradingError(f"{zip_path.name} holds no notebook named like "
                           "alice_1234_5678_05_hdf5_dataset.ipynb.")
    return layout


def _prepare_course(root: Path, assignments: list[str]) -> None:
    """Generate the assignments in nbgrader and make every dataset and fixture exist."""
    from autograder.build import generate_notebooks
    from autograder.exercises import all_exercises
    from memcourse import data

    generate_notebooks(root, assignments)
    os.environ.setdefault("MEMCOURSE_DATA", str(data.data_dir()))
    data.ensure_dataset("tiny", progress=False)
    data.ensure_npy_folder("tiny", progress=False)
    exercises = {e.name: e for e in all_exercises().values()}
    for exercise in exercises.values():
        if exercise.make_fixtures:
            exercise.make_fixtures()


def _stage(sub: Submission, submitted_root: Path) -> None:
    """Copy the notebook (and timestamp) into the course's submitted folder, renamed."""
    dest = submitted_root / sub.student / sub.assignment
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir(parents=True)
    shutil.copyfile(sub.notebook, dest / f"{sub.notebook_name}.ipynb")
    if sub.timestamp:
        shutil.copyfile(sub.timestamp, dest / "timestamp.txt")


def grade(submissions: Path, out: Path, jobs: int | None = None,
          assignment: str | None = None, force: bool = False, root: Path | None = None,
          settings: Settings | None = None, progress: bool = True) -> list[dict]:
    """Grade every submission under `submissions` (a folder or a .zip); write results to `out`.

    Returns the result records. Raises GradingError only when the batch cannot run at all.
    """
    from tqdm.auto import tqdm

    from autograder.grading import results as results_mod

    settings = settings or Settings()
    jobs = jobs or settings.jobs
    root = Path(root or course.repo_root()).resolve()
    out = Path(out).resolve()
    submissions = Path(submissions).resolve()
    if not submissions.exists():
        raise GradingError(f"{submissions} does not exist.")
    available = course.assignments(root, "solutions")
    if assignment and assignment not in available:
        raise GradingError(f"Unknown assignment {assignment!r}; the course has "
                           f"{', '.join(available)}.")
    chosen = [assignment] if assignment else available
    api = course.api(root)
    grading_root = Path(api.coursedir.submitted_directory)
    grading_root = (root / grading_root) if not grading_root.is_absolute() else grading_root
    work = grading_root.parent / "work"
    work.mkdir(parents=True, exist_ok=True)
    if submissions.is_file() and submissions.suffix == ".zip":
        submissions = _collect_zip(submissions, root, work / "zip")
    elif not submissions.is_dir():
        raise GradingError(f"{submissions} is neither a folder nor a .zip file.")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise GradingError(f"Cannot create the output folder {out}: {e.strerror}.") from None

    _prepare_course(root, chosen)
    found = find_submissions(submissions, {a: a for a in chosen})
    records_dir = work / "records"
    records_dir.mkdir(exist_ok=True)
    todo, records = [], {}
    for sub in found:
        record_path = records_dir / f"{sub.student}__{sub.assignment}.json"
        fingerprint = sub.fingerprint()
        if not force and record_path.exists():
            old = json.loads(record_path.read_text())
            if old.get("fingerprint") == fingerprint and old.get("status") != "error":
                records[sub.key] = old
                continue
        if sub.status == "ok":
            _stage(sub, grading_root)
            todo.append(sub)
        else:
            records[sub.key] = results_mod.unsubmitted_record(sub, fingerprint)

    snapshot = work / "gradebook-snapshot.db"
    db_path = Path(api.coursedir.db_url.replace("sqlite:///", ""))
    if todo:
        shutil.copyfile(db_path, snapshot)
    hide = sorted({str(root / "solutions"), str(course.repo_root() / "solutions"),
                   str(grading_root.parent), str(submissions)})
    prepared_root = work / "prepared"

    def prepare(sub: Submission) -> Submission:
        outdir = prepared_root / sub.student / sub.assignment / sub.notebook_name
        job = {
            "student": sub.student, "assignment": sub.assignment, "notebook": sub.notebook_name,
            "submitted_notebook": str(grading_root / sub.student / sub.assignment /
                                      f"{sub.notebook_name}.ipynb"),
            "submission_dir": str(grading_root / sub.student / sub.assignment),
            "release_notebook": str(root / "notebooks" / sub.assignment /
                                    f"{sub.notebook_name}.ipynb"),
            "db_url": f"sqlite:///{snapshot}",
            "workdir": str(work / "run" / sub.student / sub.assignment),
            "outdir": str(outdir), "scratch": str(work / "scratch" / sub.student),
            "hide": hide, "cell_timeout_s": settings.cell_timeout_s,
            "notebook_timeout_s": settings.notebook_timeout_s,
            "kernel_limits": asdict(settings.kernel_limits),
            "check_limits": asdict(settings.check_limits),
        }
        job_path = work / "jobs" / f"{sub.student}__{sub.assignment}.json"
        job_path.parent.mkdir(parents=True, exist_ok=True)
        job_path.write_text(json.dumps(job))
        log = work / "logs" / f"{sub.student}__{sub.assignment}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        with open(log, "wb") as f:
            try:
                subprocess.run([sys.executable, "-m", "autograder.grading.worker", str(job_path)],
                               stdout=f, stderr=subprocess.STDOUT, cwd=root,
                               timeout=settings.notebook_timeout_s * 3 + 600)
            except subprocess.TimeoutExpired:
                pass
        return sub

    import warnings

    # nbgrader 0.9.6 with SQLAlchemy 2.1 warns on every autograde; harmless (toolchain probe).
    warnings.filterwarnings("ignore", message=".*not in session.*")
    writer = results_mod.GradebookWriter(root, prepared_root)
    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        futures = [pool.submit(prepare, sub) for sub in todo]
        bar = tqdm(total=len(futures), desc="grading", unit="submission", disable=not progress)
        # This thread is the gradebook's only writer; it scores each submission as its worker
        # finishes, while the other workers run, and saves the record so a rerun resumes.
        for future in as_completed(futures):
            sub = future.result()
            try:
                records[sub.key] = writer.autograde(sub)
            except Exception as e:  # one submission nbgrader cannot score must not stop the rest
                records[sub.key] = {
                    "student": sub.student, "assignment": sub.assignment, "status": "error",
                    "score": 0.0, "max_score": None, "flags": list(sub.flags), "cells": [],
                    "problems": [*sub.problems, "nbgrader could not score this submission "
                                 f"({type(e).__name__}: {e}); a rerun grades it again"]}
            records[sub.key]["fingerprint"] = sub.fingerprint()
            (records_dir / f"{sub.student}__{sub.assignment}.json").write_text(
                json.dumps(records[sub.key], indent=1))
            bar.update(1)
        bar.close()
    ordered = [records[s.key] for s in found if s.key in records]
    ordered = writer.refresh_scores(ordered)
    results_mod.write_outputs(out, ordered, writer, elapsed=time.monotonic() - started)
    return ordered
