"""`memcourse grade`: grade a class in one command, through nbgrader, in parallel and sandboxed.

1. Stage the release the grader needs in its own folder (`build.stage_release`: nothing is
   written into `solutions/` or `notebooks/`), find the submissions (`inputs`), read each
   candidate notebook as Jupyter would, repairing schema nits (`intake`), and put its graded
   cells back in the shape of the release (`reconcile`). The input is never modified.
2. Prepare every candidate notebook in parallel worker processes (`worker`): sanitize, run in
   a sandboxed kernel that survives crashes, run the graded program and the checks outside it.
3. One thread of this process, the only gradebook writer, autogrades each submission with
   nbgrader as soon as all its notebooks are prepared (`UsePreparedRun` stands in for
   execution): with several candidate files for one notebook, each is scored and the best kept.
4. Write grades.csv, results.json, report.md and feedback/ (`report`).

What crosses each process boundary is typed (`handoffs`): a `Job` to each worker, a `Prepared`
back, a `Record` per (student, assignment). The notebook exists as: the learner's file (never
touched), the reconciled candidate (`grading/work/candidates/`, the one copy every later step
reads), the worker's sanitized copy in its run folder (nbgrader's chain rewrites it, and the
kernel runs in that folder), and the executed notebook the kernel leaves;
nbgrader's autograde copies the candidate into `submitted/` as its own layout requires.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import re
import shutil
import subprocess
import sys
import time
import warnings
import zipfile
from concurrent.futures import as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import nbformat
from tqdm.auto import tqdm

from autograder import course
from autograder.grading import build, intake, reconcile, report, slots
from autograder.grading.gradebook import GradebookWriter, error_record
from autograder.grading.handoffs import PREPARED_FILE, Job, Record, prepared_folder
from autograder.grading.inputs import Submission, Unmatched, find_submissions, match_name
from autograder.grading.settings import GradingSettings
from memcourse.errors import CourseError

if TYPE_CHECKING:  # only a type: Dask is the optional `cluster` extra
    from distributed import Client


class GradingError(CourseError):
    """The batch itself could not run (not one submission's problem)."""


# Canvas's bulk download names each file <lastfirst>_[LATE_]<userid>_<submissionid>_<file>,
# where <file> is the name the student uploaded (Canvas adds -1, -2 to a re-upload); set
# c.FileNameCollectorPlugin.named_regexp in nbgrader_config.py for another LMS.
DEFAULT_ZIP_REGEXP = (r"^(?:.*/)?(?P<student_id>[^_/]+)_(?:LATE_|late_)?\d+_\d+_"
                      r"(?P<file_id>[^/]+\.ipynb)$")
ZIP_EXAMPLE = "smithjane_12345_67890_05_hdf5_dataset.ipynb"


@dataclass
class Collected:
    """An LMS zip turned into the submitted layout, and what could not be placed."""

    layout: Path
    unmatched: list[Unmatched] = field(default_factory=list)
    late: set[tuple[str, str]] = field(default_factory=set)  # (student, assignment)


def _collect_zip(zip_path: Path, root: Path, staging: Path,
                 notebooks: dict[str, list[str]]) -> Collected:
    """Turn an LMS bulk download into nbgrader's submitted layout with nbgrader's zip_collect.

    Each collected notebook keeps the name the student gave it, in the folder of the
    assignment its name matches (near matches included), so that `find_submissions` sees every
    file; names that match no assignment, and entries that do not follow the LMS naming, are
    listed as unmatched.
    """
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
        last = (proc.stderr.strip().splitlines() or ["no message"])[-1]
        raise GradingError(f"nbgrader zip_collect could not read {zip_path.name} ({last}); "
                           f"expected files named like {ZIP_EXAMPLE}.")
    result = Collected(staging / "layout")
    try:
        with zipfile.ZipFile(zip_path) as z:
            entries = [n for n in z.namelist() if n.endswith(".ipynb")]
    except (zipfile.BadZipFile, OSError) as e:
        raise GradingError(f"{zip_path.name} is not a readable zip file ({e}).") from None
    names = sorted(notebooks)
    for entry in entries:
        base = entry.rsplit("/", 1)[-1]
        if "__MACOSX" in entry or base.startswith("._"):
            result.unmatched.append(Unmatched(entry, "a macOS resource file, not a notebook"))
            continue
        m = re.match(regexp, entry)
        if not m:
            result.unmatched.append(Unmatched(entry, "its name does not follow the LMS "
                                              f"naming (like {ZIP_EXAMPLE})"))
            continue
        student, file_id = m.group("student_id"), m.group("file_id")
        source = collected / student / "upload" / file_id
        stem = Path(file_id).stem
        owner = next((a for a in names if match_name(stem, notebooks[a])
                      or match_name(stem, [a])), None)
        if owner is None:
            result.unmatched.append(Unmatched(entry, f"`{file_id}` matches no assignment of "
                                              "the course"))
            continue
        if not source.is_file():
            result.unmatched.append(Unmatched(entry, "nbgrader's zip_collect did not collect "
                                              "it"))
            continue
        dest = result.layout / student / owner
        dest.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, dest / Path(file_id).name)
        if re.search(r"_late_", base, flags=re.I):
            result.late.add((student, owner))
    result.layout.mkdir(parents=True, exist_ok=True)
    return result


def _grading_conditions(staged: build.StagedCourse, assignment: str,
                        settings: GradingSettings, duedate: object = None) -> str:
    """What besides the learner's files decides a grade: the instructor's notebooks (tests,
    hidden tests and points), the limits and the due date (lateness, in the record and the
    feedback). A rerun re-grades a submission when any changed."""
    digest = hashlib.sha256(f"due {duedate}\n".encode())
    for path in sorted(staged[assignment].source.rglob("*.ipynb")):
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    limits = (settings.cell_timeout_s, settings.notebook_timeout_s, settings.kernel_limits,
              settings.check_limits)
    digest.update(repr(limits).encode())
    return digest.hexdigest()


def _duedate(api, assignment: str) -> object:
    """The assignment's due date in the gradebook (set in formgrader), or None."""
    from nbgrader.api import MissingEntry  # lazy: nbgrader, already loaded by `api`

    with api.gradebook as gb:
        try:
            return gb.find_assignment(assignment).duedate
        except MissingEntry:
            return None


def _expected_seconds(prepared_root: Path, staged: build.StagedCourse,
                      assignments: list[str]) -> dict[str, float]:
    """How long preparing one submission of each assignment is expected to take, in seconds.

    The median of what earlier runs measured (their prepared.json) where there is one; else a
    guess from the size of the release's code, scaled by the measured assignments when any.
    Only the order of the work depends on it.
    """
    measured: dict[str, float] = {}
    for assignment in assignments:
        times = []
        # A sample is enough for a median, and keeps a large class's start quick.
        for path in itertools.islice(prepared_root.glob(f"*/{assignment}/*~*/{PREPARED_FILE}"),
                                     50):
            try:
                times.append(float(json.loads(path.read_text())["wall_s"]))
            except (OSError, ValueError, KeyError, TypeError):
                continue
        if times:
            measured[assignment] = sorted(times)[len(times) // 2]
    size = {}
    for assignment in assignments:
        code = 0
        for name in staged[assignment].notebooks:
            nb = nbformat.read(staged.release_notebook(assignment, name), as_version=4)
            code += sum(len(c.source) for c in nb.cells if c.cell_type == "code")
        size[assignment] = max(code, 1)
    known = [measured[a] / size[a] for a in measured]
    per_char = sorted(known)[len(known) // 2] if known else 1e-3
    return {a: measured.get(a, size[a] * per_char) for a in assignments}


def _prepare_course(root: Path, staging: Path, assignments: list[str]) -> build.StagedCourse:
    """Stage the assignments' release for grading and make every dataset and fixture exist."""
    staged = build.stage_release(root, staging, assignments)
    slots.ensure_grading_data()
    return staged


@dataclass
class Attempt:
    """One candidate file for one notebook of a submission, as read and reconciled."""

    notebook: str  # the assignment's notebook name it stands for
    index: int  # its number among that notebook's candidates
    file: Path  # the file in the input
    misnamed: str | None
    repairs: list[str]
    problem: str | None  # why it cannot be graded
    unanswered: bool = False
    changes: list[str] = field(default_factory=list)  # what the learner changed, restored
    notes: list[str] = field(default_factory=list)  # what was restored that no one changed
    staged: Path | None = None  # the reconciled notebook the worker and nbgrader read
    run: bool = True  # False: scored 0 without running (unanswered beside an answered copy)

    @property
    def label(self) -> str:
        return self.file.name


def _read_attempts(sub: Submission, staged: build.StagedCourse, folder: Path
                   ) -> list[Attempt]:
    """Read, repair and reconcile every candidate of `sub`; write each under `folder`."""
    attempts = []
    for name, candidates in sub.notebooks.items():
        release = nbformat.read(staged.release_notebook(sub.assignment, name), as_version=4)
        for k, cand in enumerate(candidates):
            read = intake.read_submission(cand.path)
            attempt = Attempt(name, k, cand.path, cand.misnamed, list(read.repairs),
                              read.problem)
            attempts.append(attempt)
            if read.notebook is None:
                continue
            try:
                done = reconcile.reconcile(read.notebook, release)
                nb, attempt.changes, attempt.notes = done.notebook, done.tampering, done.notes
                attempt.unanswered = reconcile.is_unanswered(nb, release)
            except Exception as e:  # a grader bug must not cost the submission: say so, go on
                nb = read.notebook
                attempt.notes = [f"the grader could not compare it with the release "
                                 f"({type(e).__name__}: {e}); nbgrader's own sanitizing was "
                                 "used alone"]
            attempt.staged = folder / name / str(k) / f"{name}.ipynb"
            attempt.staged.parent.mkdir(parents=True, exist_ok=True)
            nbformat.write(nb, attempt.staged)
        answered = [a for a in attempts if a.notebook == name and a.staged and not a.unanswered]
        if answered:
            for a in attempts:
                if a.notebook == name and a.unanswered:
                    a.run = False
    return attempts


def _note_attempts(sub: Submission, attempts: list[Attempt]) -> None:
    """Flags and sentences for what reading the candidates found."""
    several = {a.notebook for a in attempts if sum(b.notebook == a.notebook
                                                   for b in attempts) > 1}
    for a in attempts:
        where = a.label
        if a.misnamed and a.notebook not in several:  # else said once the best is known
            sub.flags.append("misnamed")
            sub.problems.append(f"the notebook is {a.misnamed}; it was graded anyway")
        if a.problem:
            sub.problems.append(a.problem)
        if a.repairs:
            sub.flags.append("repaired")
            sub.problems.append(f"{where} did not follow the notebook format and was repaired "
                                f"as Jupyter reads it: {'; '.join(a.repairs)}")
        if a.changes:
            sub.flags.append("tampered")
            sub.problems.append(f"{where}: " + "; ".join(a.changes))
        if a.notes:
            sub.flags.append("earlier_release")
            sub.problems.append(f"{where}: " + "; ".join(a.notes))
    gradable = [a for a in attempts if a.staged]
    if gradable and all(a.unanswered for a in gradable):
        sub.flags.append("unanswered")
        sub.problems.append("nothing was answered: every answer cell is still the released "
                            "stub, and no code was added")
    missing = [name for name, cands in sub.notebooks.items() if not cands]
    if missing and gradable:
        sub.flags.append("missing_notebook")
    if not gradable:
        sub.status = "invalid"
    sub.flags = list(dict.fromkeys(sub.flags))


def grade(submissions: Path, out: Path, jobs: int | None = None,
          assignment: str | None = None, force: bool = False, root: Path | None = None,
          settings: GradingSettings | None = None, progress: bool = True,
          scheduler: str | Client | None = None) -> list[dict]:
    """Grade every submission under `submissions` (a folder or a .zip); write results to `out`.

    `settings` default to what the course's nbgrader_config.py says (`GradingSettings`);
    `jobs` overrides theirs. `scheduler`: prepare the notebooks as tasks on the Dask cluster
    at this address (tcp://host:8786, a scheduler file, or a `distributed.Client`) instead of
    in `jobs` local worker processes (`cluster.DaskPreparer`); everything else is the same.
    Returns the records as results.json holds them. Raises GradingError only when the batch
    cannot run at all (`cluster.ClusterError`, one, when the cluster cannot grade).
    """
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
    settings = GradingSettings.for_course(root, base=settings, jobs=jobs)
    api = course.api(root)
    grading_root = Path(api.coursedir.submitted_directory)
    grading_root = (root / grading_root) if not grading_root.is_absolute() else grading_root
    work = grading_root.parent / "work"
    # nbgrader's own submitted folder while autograding; the course's is left as collected.
    nbgrader_submitted = work / "submitted"
    work.mkdir(parents=True, exist_ok=True)
    for legacy in ("run", "scratch"):  # learners' files an older version left after grading
        shutil.rmtree(work / legacy, ignore_errors=True)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise GradingError(f"Cannot create the output folder {out}: {e.strerror}.") from None
    staged = _prepare_course(root, work / "release", chosen)
    notebooks = {a: list(staged[a].notebooks) for a in chosen}
    collected = None
    if submissions.is_file() and submissions.suffix == ".zip":
        collected = _collect_zip(submissions, root, work / "zip", notebooks)
        submissions = collected.layout
    elif not submissions.is_dir():
        raise GradingError(f"{submissions} is neither a folder nor a .zip file.")

    found, unmatched = find_submissions(submissions, notebooks)
    if collected is not None:
        unmatched = collected.unmatched + unmatched
        for sub in found:
            if (sub.student, sub.assignment) in collected.late:
                sub.flags.append("late")
                sub.problems.append("the LMS marked the upload late")
    records_dir = work / "records"
    records_dir.mkdir(exist_ok=True)
    todo: list[tuple[Submission, list[Attempt]]] = []
    records: dict[str, Record] = {}
    fingerprints: dict[str, str] = {}  # what each record graded: a rerun skips it if unchanged
    conditions = {a: _grading_conditions(staged, a, settings, _duedate(api, a)) for a in chosen}
    reused = 0  # records an earlier run graded from the same files, tests and limits
    for sub in found:
        record_path = records_dir / f"{sub.student}__{sub.assignment}.json"
        fingerprint = fingerprints[sub.key] = hashlib.sha256(
            (sub.fingerprint() + conditions[sub.assignment]).encode()).hexdigest()
        if not force and record_path.exists():
            old = Record.from_json(json.loads(record_path.read_text()))
            if old.fingerprint == fingerprint and old.status != "error":
                records[sub.key] = old
                reused += 1
                continue
        attempts = []
        if sub.status == "ok":
            folder = work / "candidates" / sub.student / sub.assignment
            shutil.rmtree(folder, ignore_errors=True)
            attempts = _read_attempts(sub, staged, folder)
            _note_attempts(sub, attempts)
        if sub.status == "ok":
            todo.append((sub, attempts))
        else:
            records[sub.key] = Record.of(sub, sub.status, fingerprint)

    # Longest first: the last submissions then end together instead of leaving slots idle.
    expected = _expected_seconds(work / "prepared", staged, chosen)
    todo.sort(key=lambda item: -expected[item[0].assignment])
    snapshot = work / "gradebook-snapshot.db"
    db_path = Path(api.coursedir.db_url.replace("sqlite:///", ""))
    if todo:
        shutil.copyfile(db_path, snapshot)
    hide = sorted({str(root / "solutions"), str(course.repo_root() / "solutions"),
                   str(staged.source_directory), str(grading_root.parent), str(submissions)})
    prepared_root = work / "prepared"

    def job_for(sub: Submission, attempt: Attempt) -> tuple[Job, str]:
        name = f"{sub.student}__{sub.assignment}__{attempt.notebook}__{attempt.index}"
        outdir = prepared_folder(prepared_root, sub.student, sub.assignment, attempt.notebook,
                                 attempt.index)
        job = Job(
            student=sub.student, assignment=sub.assignment, notebook=attempt.notebook,
            submitted_notebook=str(attempt.staged), submission_dir=str(attempt.staged.parent),
            release_notebook=str(staged.release_notebook(sub.assignment, attempt.notebook)),
            course_root=str(root), db_url=f"sqlite:///{snapshot}",
            outdir=str(outdir),
            hide=hide, cell_timeout_s=settings.cell_timeout_s,
            notebook_timeout_s=settings.notebook_timeout_s,
            kernel_limits=settings.kernel_limits, check_limits=settings.check_limits)
        return job, name

    # nbgrader 0.9.6 with SQLAlchemy 2.1 warns on every autograde; harmless (toolchain probe).
    warnings.filterwarnings("ignore", message=".*not in session.*")
    writer = GradebookWriter(root, prepared_root, nbgrader_submitted,
                             extra=staged.nbgrader_config())
    started = time.monotonic()
    waiting = {sub.key: sum(a.run and a.staged is not None for a in attempts)
               for sub, attempts in todo}
    timeout_s = settings.notebook_timeout_s * 3 + 600
    if scheduler is not None and todo:
        # lazy: cluster imports Dask only for --scheduler (the optional `cluster` extra)
        from autograder.grading.cluster import DaskPreparer

        preparer = DaskPreparer(scheduler, root, work, snapshot, timeout_s=timeout_s)
        if progress:
            print(f"grading on the {preparer.describe()}", file=sys.stderr, flush=True)
    else:
        preparer = slots.LocalPreparer(root, work, settings.workers, timeout_s=timeout_s)
    try:
        futures = {}
        for sub, attempts in todo:
            for a in attempts:
                if a.run and a.staged is not None:
                    futures[preparer.submit(*job_for(sub, a))] = sub
        bar = tqdm(total=len(todo), desc="grading", unit=" submissions",
                   disable=not progress or not todo)

        def finish(sub: Submission, attempts: list[Attempt]) -> None:
            try:
                records[sub.key] = writer.autograde(sub, attempts)
            except Exception as e:  # one submission nbgrader cannot score must not stop the rest
                records[sub.key] = error_record(sub, "scoring it in nbgrader", e)
            records[sub.key].fingerprint = fingerprints[sub.key]
            (records_dir / f"{sub.student}__{sub.assignment}.json").write_text(
                json.dumps(records[sub.key].to_json(), indent=1))
            bar.update(1)

        by_key = {sub.key: (sub, attempts) for sub, attempts in todo}
        for key, count in waiting.items():
            if count == 0:  # nothing to run (every candidate unanswered beside none answered)
                finish(*by_key[key])
        # This thread is the gradebook's only writer; it scores each submission as soon as all
        # its notebooks are prepared, while the other workers run, and saves the record so a
        # rerun resumes.
        for future in as_completed(futures):
            sub = futures[future]
            waiting[sub.key] -= 1
            if waiting[sub.key] == 0:
                finish(*by_key[sub.key])
        bar.close()
    except BaseException:  # Ctrl-C or a bug: stop the slots now, not after their jobs
        preparer.close(now=True)
        raise
    else:
        preparer.close()
    ordered = [records[s.key] for s in found if s.key in records]
    ordered = writer.refresh_scores(ordered)
    report.write_outputs(out, ordered, writer.feedback_root, elapsed=time.monotonic() - started,
                         unmatched=unmatched, reused=reused)
    return [r.to_json() for r in ordered]
