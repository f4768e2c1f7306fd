"""`memcourse grade --scheduler ADDRESS`: prepare submissions on a Dask cluster's workers.

The command's process keeps everything that writes: the gradebook writer, the records, the
report. Only the preparing step (`worker`: sanitize, run the notebook in its sandbox, run the
checks) moves to the cluster, one Dask task per candidate notebook (`prepare_remote`). A task
carries its inputs as bytes (the reconciled candidate, the release notebook; the gradebook
snapshot is scattered to every worker once) and returns the prepared files as bytes, so a
worker needs no shared filesystem, only the same course installed (`pip install -e
'.[cluster]'`).

On each Dask worker process, one `slots.LocalPreparer` (as many warm slots as the worker has
threads) prepares the tasks exactly as `memcourse grade` does on one machine, in a private
temporary folder the sandbox hides; nothing the task wrote stays there afterwards.

A worker lost mid-task costs nothing: Dask's scheduler runs the task again on another worker,
and `DaskPreparer` completes each submission's future once, when a result arrives, so the
gradebook writer scores each submission once. A worker whose course differs from the client's
(`course_fingerprint`) is refused with one sentence: at start-up (`ClusterError`, nothing is
graded) or, if it joins later, for each task it is handed (`CourseMismatch`: that notebook
reads as a worker that stopped, and a rerun grades it again).

Dask (`dask`, `distributed`: the `cluster` extra) is imported only here and only when a
cluster is used; `memcourse grade` without `--scheduler` never imports it.
"""

from __future__ import annotations

import atexit
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import uuid
from concurrent.futures import Future
from functools import partial
from pathlib import Path
from typing import Any

from autograder.grading import slots
from autograder.grading.handoffs import Job
from memcourse.errors import CourseError
from memcourse.paths import repo_root

EXCLUDED_RESULTS = ("objects",)  # the learner's pickled objects stay on the worker
INSTALL_HINT = "install the same commit of the course on every worker (pip install -e '.[cluster]')"


class ClusterError(CourseError):
    """The cluster cannot grade at all: no scheduler, no worker, or a worker with another
    course. The message is one sentence; nothing was graded."""


class CourseMismatch(Exception):
    """A Dask worker was handed a task while its course differs from the client's.

    Raised on the worker by `prepare_remote`; the message is one sentence naming both
    courses' labels. It is never retried: the same worker would refuse again.
    """


# --- what identifies a course -------------------------------------------------------------


def _code_root(root: Path) -> Path:
    """Where the code that grades `root` lives: `root` itself when it holds the packages (a
    checkout), else the installed course (a course folder holding only its notebooks)."""
    return root if (root / "autograder" / "__init__.py").is_file() else repo_root()


def _course_files(root: Path) -> list[tuple[str, Path]]:
    """(name in the fingerprint, path) of every file that decides a grade, sorted by name."""
    code = _code_root(root)
    found: list[tuple[str, Path]] = []
    for package in ("autograder", "memcourse"):
        found += [(f"{package}/{p.relative_to(code / package).as_posix()}", p)
                  for p in (code / package).rglob("*.py")]
    skip = {".ipynb_checkpoints", "scratch"}
    found += [(f"solutions/{p.relative_to(root / 'solutions').as_posix()}", p)
              for p in (root / "solutions").rglob("*.ipynb")
              if not skip & set(p.relative_to(root / "solutions").parts)]
    for name, base in (("pyproject.toml", code), ("nbgrader_config.py", root)):
        if (base / name).is_file():
            found.append((name, base / name))
    return sorted(found)


def course_fingerprint(root: Path) -> str:
    """sha256 (64 hex) of what decides a grade in the course at `root`: the `.py` files of
    `autograder/` and `memcourse/`, the `.ipynb` of `solutions/`, `pyproject.toml` and
    `nbgrader_config.py`, by path. Two machines grade alike only if theirs are equal."""
    digest = hashlib.sha256()
    for name, path in _course_files(Path(root)):
        data_ = path.read_bytes()
        digest.update(f"{name}\0{len(data_)}\0".encode() + data_)
    return digest.hexdigest()


def course_label(root: Path, fingerprint: str | None = None) -> str:
    """A short name for the course at `root` that a person can compare: its git commit when
    `root` is a git checkout, and the first 12 hex of its fingerprint (which differ when the
    files differ, committed or not), e.g. "commit 1a2b3c4d5e6f, course files 0f1e2d3c4b5a"."""
    root = Path(root)
    fingerprint = fingerprint or course_fingerprint(root)
    files = f"course files {fingerprint[:12]}"
    try:
        top = subprocess.run(["git", "-C", str(root), "rev-parse", "--show-toplevel", "HEAD"],
                             capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return files
    lines = top.stdout.split()
    # A course folder inside some other repository is not that repository's commit.
    if top.returncode != 0 or len(lines) != 2 or Path(lines[0]).resolve() != root.resolve():
        return files
    return f"commit {lines[1][:12]}, {files}"


_identity_lock = threading.Lock()
_identity: tuple[str, str] | None = None


def worker_identity() -> tuple[str, str]:
    """(fingerprint, label) of the course this process runs (`memcourse.paths.repo_root`),
    computed once per process: the code it imported does not change while it runs."""
    global _identity
    with _identity_lock:
        if _identity is None:
            fingerprint = course_fingerprint(repo_root())
            _identity = (fingerprint, course_label(repo_root(), fingerprint))
        return _identity


# --- on a Dask worker ---------------------------------------------------------------------


class _WorkerState:
    """This worker process's preparer, its folder, and whether the datasets exist yet."""

    lock = threading.Lock()
    preparer: slots.LocalPreparer | None = None
    home: Path | None = None


def _worker_threads() -> int:
    """The number of threads of the Dask worker this runs in (1 outside one)."""
    try:
        # lazy: distributed is the optional `cluster` extra; this runs only on a Dask worker
        from distributed import get_worker

        return max(1, int(get_worker().state.nthreads))
    except (ImportError, ValueError, AttributeError):
        return 1


def _worker_scratch() -> str | None:
    """The Dask worker's local directory: Dask removes it when the worker closes, and purges
    what a killed worker left there when the next one starts (None outside a worker)."""
    try:
        # lazy: distributed is the optional `cluster` extra; this runs only on a Dask worker
        from distributed import get_worker

        return str(get_worker().local_directory)
    except (ImportError, ValueError, AttributeError):
        return None


def _worker_address() -> str:
    try:
        # lazy: distributed is the optional `cluster` extra; this runs only on a Dask worker
        from distributed import get_worker

        return str(get_worker().address)
    except (ImportError, ValueError, AttributeError):
        return f"process {os.getpid()}"


def _close_worker_state() -> None:
    with _WorkerState.lock:
        if _WorkerState.preparer is not None:
            _WorkerState.preparer.close()
            _WorkerState.preparer = None
        if _WorkerState.home is not None:
            shutil.rmtree(_WorkerState.home, ignore_errors=True)
            _WorkerState.home = None


def _worker_preparer(timeout_s: float) -> tuple[slots.LocalPreparer, Path]:
    """This process's preparer (made on first use, stopped at exit) and its private folder."""
    with _WorkerState.lock:
        if _WorkerState.preparer is None:
            slots.ensure_grading_data()
            home = Path(tempfile.mkdtemp(prefix="memcourse-", dir=_worker_scratch()))
            _WorkerState.home = home
            _WorkerState.preparer = slots.LocalPreparer(repo_root(), home, _worker_threads(),
                                                        timeout_s=timeout_s)
            atexit.register(_close_worker_state)
        # One preparer serves every client; the longest time limit asked for holds.
        _WorkerState.preparer.timeout_s = max(_WorkerState.preparer.timeout_s, timeout_s)
        return _WorkerState.preparer, _WorkerState.home


def _safe_relative(name: str) -> Path:
    path = Path(name)
    if path.is_absolute() or ".." in path.parts or not path.parts:
        raise ValueError(f"refusing the file name {name!r}")
    return path


def _write_files(base: Path, files: dict[str, bytes]) -> None:
    for name, content in files.items():
        path = base / _safe_relative(name)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)


def _read_results(outdir: Path) -> dict[str, bytes]:
    """The regular files under `outdir` but `objects/`, by relative path (links are skipped:
    the sandbox could have left one pointing anywhere)."""
    found = {}
    if not outdir.is_dir():
        return found
    for path in sorted(outdir.rglob("*")):
        rel = path.relative_to(outdir)
        if rel.parts[0] in EXCLUDED_RESULTS or path.is_symlink() or not path.is_file():
            continue
        if any(p.is_symlink() for p in list(path.parents)[: len(rel.parts) - 1]):
            continue
        found[rel.as_posix()] = path.read_bytes()
    return found


def prepare_remote(payload: dict[str, Any]) -> dict[str, Any]:
    """Prepare one candidate notebook on this Dask worker; the task `DaskPreparer` submits.

    `payload` (built by `DaskPreparer`): `fingerprint`, `label` (the client's course), `name`,
    `job` (`Job.to_json()`; its paths are the client's and are not used), `submission` (the
    candidate's folder as {relative path: bytes}), `notebook` (the candidate's path in it),
    `release` (bytes of the release notebook), `snapshot` (bytes of the gradebook snapshot),
    `timeout_s`. Returns {"files": {relative path: bytes} of the prepared folder but
    `objects/`, "log": the worker's log text, "worker": this worker's address, "wall_s"}.
    Raises CourseMismatch when this worker's course differs from the client's.
    """
    fingerprint, label = worker_identity()
    worker = _worker_address()
    if fingerprint != payload["fingerprint"]:
        raise CourseMismatch(
            f"Dask worker {worker} runs another version of the course ({label}) than the "
            f"grading command ({payload['label']}), so it grades nothing; {INSTALL_HINT}.")
    started = time.monotonic()
    preparer, home = _worker_preparer(float(payload["timeout_s"]))
    root = repo_root()
    inbox = home / "inbox"
    inbox.mkdir(exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix="job-", dir=inbox))
    local = f"{payload['name']}~{uuid.uuid4().hex[:8]}"
    try:
        submission, release = folder / "submission", folder / "release"
        _write_files(submission, payload["submission"])
        release_path = release / _safe_relative(Path(payload["job"]["release_notebook"]).name)
        _write_files(release, {release_path.name: payload["release"]})
        snapshot = folder / "gradebook-snapshot.db"
        snapshot.write_bytes(payload["snapshot"])
        outdir = folder / "prepared"
        # Never the client's paths: this worker's solutions, its course's grading folder, and
        # every Dask worker's folder on this machine (inputs, results others spilled to disk).
        # The same list for every job, so the slot's sandbox and zygote serve them all.
        hidden = {str(root / "solutions"), str(root / "grading"), str(home)}
        scratch = _worker_scratch()
        if scratch:
            hidden.add(str(Path(scratch).parent))
        spec = dict(payload["job"])
        spec.update(submitted_notebook=str(submission / _safe_relative(payload["notebook"])),
                    submission_dir=str(submission), release_notebook=str(release_path),
                    course_root=str(root), db_url=f"sqlite:///{snapshot}", outdir=str(outdir),
                    hide=sorted(hidden))
        job = Job.from_json(spec)
        preparer.submit(job, local).result()
        log_path = home / "logs" / f"{local}.log"
        log = log_path.read_text(errors="replace") if log_path.is_file() else ""
        return {"files": _read_results(outdir), "log": log, "worker": worker,
                "wall_s": time.monotonic() - started}
    finally:
        shutil.rmtree(folder, ignore_errors=True)
        for leftover in (home / "jobs" / f"{local}.json", home / "logs" / f"{local}.log"):
            leftover.unlink(missing_ok=True)


# --- in the grading command's process -----------------------------------------------------


def _identity_on_worker() -> tuple[str, str]:
    """`client.run` target: the worker's (fingerprint, label)."""
    return worker_identity()


class _Task:
    """One job on its way through the cluster: the future the pipeline waits on, the payload,
    how many times it was submitted."""

    def __init__(self, job: Job, name: str, payload: dict[str, Any]):
        self.job, self.name, self.payload = job, name, payload
        self.future: Future = Future()
        self.tries = 0
        self.notes: list[str] = []


class DaskPreparer:
    """Prepare jobs as tasks on the Dask cluster at `address`; same interface as
    `slots.LocalPreparer` (`submit(job, name) -> Future`, `close()`).

    `address`: a scheduler address (tcp://host:8786), a scheduler file (JSON, as `dask
    scheduler --scheduler-file` writes), or a connected `distributed.Client` (left open by
    `close`). `root`: the course being graded; `work`: grading/work/ (logs are written to
    `work/logs/<name>.log`); `snapshot`: the gradebook snapshot every task reads; `timeout_s`:
    the longest one job may take on its worker. `retries`: how many times a task that raised
    is submitted again (a lost worker is Dask's own affair and costs no retry; a
    `CourseMismatch` is never retried). Raises ClusterError (one sentence) when the scheduler
    cannot be reached, no worker joins within `wait_s` seconds, or any worker's course differs.
    """

    task = staticmethod(prepare_remote)  # what runs on the workers (tests swap in their own)

    def __init__(self, address: Any, root: Path, work: Path, snapshot: Path, timeout_s: float,
                 retries: int = 2, wait_s: float = 60.0):
        try:
            # lazy: distributed (the `cluster` extra, ~1 s) only for `memcourse grade --scheduler`
            import distributed
        except ImportError:
            raise ClusterError("Grading on a Dask cluster needs Dask on this machine: "
                               "pip install -e '.[cluster]' (make venv does).") from None

        self._distributed = distributed
        self.root, self.work, self.timeout_s, self.retries = Path(root), Path(work), \
            timeout_s, retries
        self._owns_client = not isinstance(address, distributed.Client)
        self.client = self._connect(address, wait_s) if self._owns_client else address
        self.address = str(self.client.scheduler.address)
        self._run_id = uuid.uuid4().hex[:8]
        self._lock = threading.Lock()
        self._tasks: dict[str, _Task] = {}
        self._futures: dict[str, Any] = {}
        self._closing = False
        self._refused: set[str] = set()
        try:
            self._wait_for_a_worker(wait_s)
            self.fingerprint = course_fingerprint(self.root)
            self.label = course_label(self.root, self.fingerprint)
            self.workers = self._check_workers()
            self._snapshot_bytes = Path(snapshot).read_bytes()
            self._snapshot = self.client.scatter(self._snapshot_bytes, broadcast=True,
                                                 hash=False)
        except BaseException:
            self.close()
            raise
        try:
            self.dashboard_link: str | None = self.client.dashboard_link
        except (KeyError, AttributeError, TypeError):
            self.dashboard_link = None

    def _connect(self, address: str, wait_s: float):
        distributed = self._distributed
        try:
            if Path(address).is_file():
                client = distributed.Client(scheduler_file=address, timeout=min(wait_s, 30))
            else:
                client = distributed.Client(address, timeout=min(wait_s, 30))
        except (OSError, TimeoutError, ValueError) as e:
            raise ClusterError(f"Cannot reach the Dask scheduler at {address} "
                               f"({type(e).__name__}: {e}); check the address "
                               "(tcp://host:8786 or a scheduler file) and that the scheduler "
                               "runs.") from None
        return client

    def _wait_for_a_worker(self, wait_s: float) -> None:
        try:
            self.client.wait_for_workers(1, timeout=wait_s)
        except (TimeoutError, OSError):
            raise ClusterError(f"No Dask worker joined the scheduler at {self.address} within "
                               f"{wait_s:.0f} s; start the workers (or scale the cluster) "
                               "before grading.") from None

    def _check_workers(self) -> dict[str, tuple[str, str]]:
        """Every worker's (fingerprint, label); ClusterError unless all equal the client's."""
        found = self.client.run(_identity_on_worker, on_error="return")
        if not found:
            raise ClusterError(f"No Dask worker is connected to the scheduler at "
                               f"{self.address}; start the workers before grading.")
        bad = []
        for address, got in sorted(found.items()):
            if isinstance(got, BaseException):
                first = (str(got).strip().splitlines() or [""])[0]
                bad.append(f"{address} (which cannot load the course: "
                           f"{type(got).__name__}: {first})")
            elif tuple(got)[0] != self.fingerprint:
                bad.append(f"{address} ({tuple(got)[1]})")
        if bad:
            which = "worker" if len(bad) == 1 else "workers"
            raise ClusterError(f"Dask {which} {', '.join(bad)} of the scheduler at "
                               f"{self.address} {'runs' if len(bad) == 1 else 'run'} another "
                               f"version of the course than this one ({self.label}); "
                               f"{INSTALL_HINT}.")
        return dict(found)

    def describe(self) -> str:
        """One line for the progress display: where the cluster is, and its dashboard."""
        info = self.client.scheduler_info(n_workers=-1)
        workers = info.get("workers", {})
        threads = sum(w.get("nthreads", 0) for w in workers.values())
        where = f"Dask cluster {self.address}: {len(workers)} workers, {threads} threads"
        return where + (f"; dashboard {self.dashboard_link}" if self.dashboard_link else "")

    def _payload(self, job: Job, name: str) -> dict[str, Any]:
        folder = Path(job.submission_dir)
        submission = {p.relative_to(folder).as_posix(): p.read_bytes()
                      for p in sorted(folder.rglob("*")) if p.is_file()}
        return {"fingerprint": self.fingerprint, "label": self.label, "name": name,
                "job": job.to_json(), "submission": submission,
                "notebook": Path(job.submitted_notebook).relative_to(folder).as_posix(),
                "release": Path(job.release_notebook).read_bytes(),
                "snapshot": self._snapshot, "timeout_s": self.timeout_s}

    def submit(self, job: Job, name: str) -> Future:
        """Send `job` to the cluster; the future completes (once) when `job.outdir` holds what
        the worker prepared, or holds nothing when no worker could prepare it."""
        outdir = Path(job.outdir)
        shutil.rmtree(outdir, ignore_errors=True)  # an earlier run's result must not count
        task = _Task(job, name, self._payload(job, name))
        with self._lock:
            self._tasks[name] = task
        self._launch(task)
        return task.future

    def _launch(self, task: _Task) -> None:
        key = f"memcourse-prepare-{task.name}-{self._run_id}-{task.tries}"
        task.tries += 1
        future = self.client.submit(self.task, task.payload, key=key, pure=False)
        with self._lock:
            self._futures[task.name] = future
        future.add_done_callback(partial(self._done, task))

    def _done(self, task: _Task, future: Any) -> None:
        """A task ended on the cluster: write its files and complete its future, or submit it
        again (an exception other than CourseMismatch, while retries are left)."""
        if task.future.done():
            return
        result = None
        try:
            if future.status == "finished":
                result = future.result()
            elif future.status == "error":
                error = future.exception()
                if isinstance(error, CourseMismatch):
                    self._refuse(str(error))
                    task.notes.append(str(error))
                elif isinstance(error, self._distributed.KilledWorker):
                    task.notes.append(f"every Dask worker that tried it was lost ({error}); "
                                      "Dask does not try it again")
                elif task.tries <= self.retries and not self._closing:
                    task.notes.append(f"try {task.tries} raised on a Dask worker; submitted "
                                      f"again:\n{_format(error)}")
                    self._launch(task)
                    return
                else:
                    task.notes.append(f"try {task.tries} raised on a Dask worker; no retry "
                                      f"left:\n{_format(error)}")
            elif not self._closing and task.tries <= self.retries:
                # The scattered snapshot went with every worker holding it: scatter it again.
                task.notes.append(f"try {task.tries} was {future.status} on the cluster; "
                                  "submitted again")
                self._rescatter()
                self._launch(task)
                return
            else:
                task.notes.append(f"the task was {future.status} on the cluster")
        except Exception as e:  # whatever goes wrong here, the pipeline must not wait forever
            task.notes.append(f"reading the task's result failed:\n{_format(e)}")
        try:
            if result is not None:
                _write_files(Path(task.job.outdir), result["files"])
            self._write_log(task, result)
        except Exception as e:
            print(f"memcourse: could not save {task.name}'s result: {e}", file=sys.stderr)
        finally:
            with self._lock:
                self._futures.pop(task.name, None)
                self._tasks.pop(task.name, None)
            if not task.future.done():
                task.future.set_result(None)

    def _rescatter(self) -> None:
        with self._lock:
            if self._snapshot.status != "finished":
                self._snapshot = self.client.scatter(self._snapshot_bytes, broadcast=True,
                                                     hash=False)
            snapshot = self._snapshot
        for task in list(self._tasks.values()):
            task.payload["snapshot"] = snapshot

    def _refuse(self, sentence: str) -> None:
        """Say once per worker that it was refused (a worker that joined after the check)."""
        with self._lock:
            if sentence in self._refused:
                return
            self._refused.add(sentence)
        print(f"memcourse: {sentence}", file=sys.stderr)

    def _write_log(self, task: _Task, result: dict[str, Any] | None) -> None:
        log = self.work / "logs" / f"{task.name}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        head = [f"prepared on Dask worker {result['worker']} in {result['wall_s']:.1f} s"
                if result else "no Dask worker prepared it"] + task.notes
        log.write_text("\n".join(f"--- {line}" for line in head) + "\n"
                       + (result["log"] if result else ""))

    def close(self, now: bool = False) -> None:
        """Cancel what is still running, complete every future, and disconnect (a client
        passed in stays open). `now` changes nothing: what runs on the cluster is cancelled
        either way (the local preparer's interface)."""
        self._closing = True
        with self._lock:
            futures = list(self._futures.values())
            tasks = list(self._tasks.values())
            self._futures.clear()
            self._tasks.clear()
        if futures:
            self.client.cancel(futures)
        for task in tasks:
            task.future.cancel() or task.future.done() or task.future.set_result(None)
        if self._owns_client:
            self.client.close()


def _format(error: BaseException) -> str:
    return "".join(traceback.format_exception(type(error), error, error.__traceback__)).rstrip()
