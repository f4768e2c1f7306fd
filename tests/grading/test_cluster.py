"""`memcourse grade --scheduler`: grading through a real Dask cluster on 127.0.0.1.

The slow tests start a scheduler and workers as separate processes with the venv's `dask`
command, grade a small class of 03_on_the_fly_loading once locally and once through the
cluster while one worker is killed mid-task, and compare; a worker whose course differs is
refused. The fast tests drive `DaskPreparer`'s retry and once-only logic with an in-process
cluster and stand-in tasks.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import nbformat
import psutil
import pytest

from autograder.grading import cluster
from autograder.grading.gradebook import GradebookWriter
from autograder.grading.handoffs import Job
from autograder.grading.pipeline import grade
from autograder.grading.settings import GradingSettings as Settings
from tests.helpers import ROOT, copy_course

distributed = pytest.importorskip("distributed")

A = "03_on_the_fly_loading"
DASK = Path(sys.executable).parent / "dask"
WRONG_SCALE = ("image = torch.from_numpy(np.load(self.paths[idx])).float() / 255",
               "image = torch.from_numpy(np.load(self.paths[idx])).float() / 256")


# --- processes ----------------------------------------------------------------------------


class Cluster:
    """A Dask scheduler and its workers, each a process in its own process group."""

    def __init__(self, folder: Path):
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self.scheduler_file = folder / "scheduler.json"
        self.procs: list[subprocess.Popen] = []
        self.workers: list[subprocess.Popen] = []
        self._logs = []
        self._start("scheduler", [str(DASK), "scheduler", "--host", "127.0.0.1", "--port", "0",
                                  "--dashboard-address", "127.0.0.1:0",
                                  "--scheduler-file", str(self.scheduler_file)])
        deadline = time.monotonic() + 60
        while not self.scheduler_file.is_file():
            if time.monotonic() > deadline or self.procs[0].poll() is not None:
                raise RuntimeError(f"the Dask scheduler did not start: {self.log('scheduler')}")
            time.sleep(0.2)
        time.sleep(0.2)  # the file is written whole, but give the writer its close
        self.address = json.loads(self.scheduler_file.read_text())["address"]

    def _start(self, name: str, command: list[str], cwd: Path = ROOT,
               env: dict | None = None) -> subprocess.Popen:
        log = open(self.folder / f"{name}.log", "wb")
        self._logs.append(log)
        proc = subprocess.Popen(command, cwd=cwd, stdout=log, stderr=subprocess.STDOUT,
                                env=env or os.environ.copy(), start_new_session=True)
        self.procs.append(proc)
        return proc

    def log(self, name: str) -> str:
        return (self.folder / f"{name}.log").read_text(errors="replace")[-3000:]

    def add_worker(self, cwd: Path = ROOT, env: dict | None = None) -> subprocess.Popen:
        name = f"worker-{len(self.workers)}"
        proc = self._start(name, [str(DASK), "worker", self.address, "--nthreads", "1",
                                  "--nworkers", "1", "--no-nanny", "--host", "127.0.0.1",
                                  "--no-dashboard", "--name", name,
                                  "--local-directory", str(self.folder / name)],
                           cwd=cwd, env=env)
        self.workers.append(proc)
        return proc

    def wait_for_workers(self, n: int) -> None:
        with distributed.Client(self.address, timeout=30) as client:
            client.wait_for_workers(n, timeout=90)

    def close(self) -> None:
        """Stop the workers gently (so they stop their slots), then kill whatever is left."""
        everything = []
        for proc in self.procs:
            try:
                everything += [proc.pid] + [c.pid for c in
                                            psutil.Process(proc.pid).children(recursive=True)]
            except psutil.NoSuchProcess:
                pass
        for proc in reversed(self.procs):
            _signal_group(proc.pid, signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                pass
        for proc in self.procs:
            _signal_group(proc.pid, signal.SIGKILL)
            proc.wait()
        for pid in everything:  # the slots run in sessions of their own
            _kill(pid)
        for log in self._logs:
            log.close()


def _signal_group(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)
    except OSError:
        pass


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except OSError:
        pass


def _grading_worker_below(pid: int) -> bool:
    """Has the process `pid` a grading worker (a slot) among its descendants?"""
    try:
        children = psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return False
    for child in children:
        try:
            if "autograder.grading.worker" in " ".join(child.cmdline()):
                return True
        except psutil.Error:
            continue
    return False


def _kill_tree(pid: int) -> None:
    """Kill a worker the way a lost machine goes: its group and everything it started."""
    try:
        below = [c.pid for c in psutil.Process(pid).children(recursive=True)]
    except psutil.NoSuchProcess:
        below = []
    _signal_group(pid, signal.SIGKILL)
    for child in below:
        _kill(child)


# --- the class ----------------------------------------------------------------------------


def _answer(nb):
    return next(c for c in nb.cells
                if c.metadata.get("nbgrader", {}).get("grade_id") == "lazy_npy_dataset")


def _build_class(root: Path) -> Path:
    """Five submissions: two correct, two dividing by 256, one blank."""
    solution = nbformat.read(ROOT / "solutions" / A / f"{A}.ipynb", as_version=4)
    release = nbformat.read(ROOT / "notebooks" / A / f"{A}.ipynb", as_version=4)
    answer = re.sub(r"^[ \t]*### (BEGIN|END) SOLUTION[ \t]*\n", "", _answer(solution).source,
                    flags=re.M)
    correct = nbformat.from_dict(json.loads(json.dumps(release)))
    _answer(correct).source = answer
    wrong = nbformat.from_dict(json.loads(json.dumps(release)))
    _answer(wrong).source = answer.replace(*WRONG_SCALE)
    assert _answer(wrong).source != answer
    cases = {"ada": correct, "bob": wrong, "cyd": release, "dee": correct, "eve": wrong}
    subs = root / "submissions"
    for student, nb in cases.items():
        (subs / student / A).mkdir(parents=True)
        nbformat.write(nb, subs / student / A / f"{A}.ipynb")
    return subs


SETTINGS = dict(jobs=2, cell_timeout_s=20, notebook_timeout_s=240)
DEADLINE_S = 240  # the cluster run takes ~45 s on 2 cores


def _graded_once_each(monkeypatch) -> dict[str, int]:
    """Count how often the gradebook writer scores each (student, assignment)."""
    counts: dict[str, int] = {}
    original = GradebookWriter.autograde

    def counting(self, sub, attempts):
        counts[sub.key] = counts.get(sub.key, 0) + 1
        return original(self, sub, attempts)

    monkeypatch.setattr(GradebookWriter, "autograde", counting)
    return counts


def _gradebook_submissions(root: Path) -> list[tuple[str, str]]:
    with sqlite3.connect(root / "grading" / "gradebook.db") as db:
        return db.execute("SELECT student_id, assignment.name FROM submitted_assignment "
                          "JOIN assignment ON assignment.id = assignment_id").fetchall()


def _comparable(records: list[dict]) -> dict[str, tuple]:
    return {r["student"]: (r["status"], r["score"], r["max_score"], sorted(r["flags"]),
                           [(c.get("grade_id"), c.get("score"), c.get("status"))
                            for c in r["cells"]]) for r in records}


@pytest.fixture(scope="module")
def dask_cluster(tmp_path_factory):
    running = Cluster(tmp_path_factory.mktemp("dask"))
    try:
        for _ in range(2):
            running.add_worker()
        running.wait_for_workers(2)
        yield running
    finally:
        running.close()


@pytest.mark.slow
def test_a_class_graded_on_the_cluster_matches_a_local_run_despite_a_lost_worker(
        dask_cluster, tmp_path, monkeypatch):
    """With one of two workers killed while it prepares a submission, is every submission
    scored once, with the scores and flags of a local run, and does a rerun resume?"""
    local_root = copy_course(tmp_path / "local" / "course")
    local = grade(_build_class(local_root), tmp_path / "local" / "out", assignment=A,
                  root=local_root, settings=Settings(**SETTINGS), progress=False)
    assert {r["student"]: r["score"] for r in local} == {
        "ada": 6.0, "bob": 3.5, "cyd": 0.0, "dee": 6.0, "eve": 3.5}

    root = copy_course(tmp_path / "cluster" / "course")
    subs = _build_class(root)
    out = tmp_path / "cluster" / "out"
    workers = list(dask_cluster.workers)
    killed: list[int] = []
    stop = threading.Event()

    def watch() -> None:
        while not stop.is_set():
            for proc in workers:
                if _grading_worker_below(proc.pid):
                    _kill_tree(proc.pid)
                    killed.append(proc.pid)
                    return
            time.sleep(0.1)

    counts = _graded_once_each(monkeypatch)
    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    done: list = []

    def run() -> None:
        try:
            done.append(grade(subs, out, assignment=A, root=root, settings=Settings(**SETTINGS),
                              progress=False, scheduler=str(dask_cluster.scheduler_file)))
        except BaseException as e:
            done.append(e)

    # A task lost with its worker and never run again would wait forever: fail instead.
    runner = threading.Thread(target=run, daemon=True)
    runner.start()
    runner.join(timeout=DEADLINE_S)
    stop.set()
    watcher.join()
    assert len(killed) == 1, "no worker was killed: the test proved nothing"
    assert done, f"the cluster run did not finish within {DEADLINE_S} s"
    if isinstance(done[0], BaseException):
        raise done[0]
    remote = done[0]
    assert len(counts) == 5 and set(counts.values()) == {1}, counts
    results = json.loads((out / "results.json").read_text())["submissions"]
    assert sorted(r["student"] for r in results) == ["ada", "bob", "cyd", "dee", "eve"]
    assert _comparable(remote) == _comparable(local)
    assert sorted(_gradebook_submissions(root)) == [(s, A) for s in
                                                    ["ada", "bob", "cyd", "dee", "eve"]]
    # The killed worker finished nothing (a job takes seconds; it died as its first began):
    # its job, like every other, was prepared by the survivor.
    logs = root / "grading" / "work" / "logs"
    heads = [(logs / f"{s}__{A}__{A}__0.log").read_text().splitlines()[0]
             for s in ["ada", "bob", "cyd", "dee", "eve"]]
    assert all(h.startswith("--- prepared on Dask worker tcp://") for h in heads), heads
    assert len({h.split()[5] for h in heads}) == 1, heads
    assert not list((root / "grading" / "work" / "prepared").rglob("objects"))

    # A rerun reuses every record and submits nothing.
    again = grade(subs, out, assignment=A, root=root, settings=Settings(**SETTINGS),
                  progress=False, scheduler=str(dask_cluster.scheduler_file))
    assert _comparable(again) == _comparable(remote)
    assert set(counts.values()) == {1}


def _course_checkout(dest: Path, changed_solution: bool) -> Path:
    """A copy of this checkout's code and course (no git), its solutions changed if asked."""
    ignore = shutil.ignore_patterns("__pycache__", "scratch", ".ipynb_checkpoints")
    for tree in ("autograder", "memcourse", "memcourse_apps", "solutions", "notebooks"):
        shutil.copytree(ROOT / tree, dest / tree, ignore=ignore)
    for name in ("pyproject.toml", "nbgrader_config.py"):
        shutil.copy2(ROOT / name, dest / name)
    if changed_solution:
        path = dest / "solutions" / A / f"{A}.ipynb"
        nb = nbformat.read(path, as_version=4)
        nb.cells.append(nbformat.v4.new_markdown_cell("An instructor's late edit."))
        nbformat.write(nb, path)
    return dest


@pytest.mark.slow
def test_a_worker_with_another_course_is_refused_in_one_sentence(tmp_path):
    """Is a worker running a course whose solutions differ refused, naming both versions?"""
    other = _course_checkout(tmp_path / "other", changed_solution=True)
    running = Cluster(tmp_path / "dask")
    try:
        env = {**os.environ, "PYTHONPATH": str(other)}
        running.add_worker(cwd=other, env=env)
        running.wait_for_workers(1)
        root = copy_course(tmp_path / "course")
        snapshot = tmp_path / "snapshot.db"
        snapshot.write_bytes(b"")
        with pytest.raises(cluster.ClusterError) as refused:
            cluster.DaskPreparer(running.address, root, tmp_path / "work", snapshot,
                                 timeout_s=60)
    finally:
        running.close()
    sentence = str(refused.value)
    ours = cluster.course_label(root)
    theirs = cluster.course_label(other)
    assert ours != theirs
    assert ours in sentence and theirs in sentence, sentence
    assert "tcp://127.0.0.1:" in sentence
    assert sentence.endswith(".") and sentence.count(". ") == 0 and "\n" not in sentence


# --- DaskPreparer's own logic, with an in-process cluster and stand-in tasks -----------------

CALLS: dict[str, int] = {}


def flaky_task(payload: dict) -> dict:
    """Raise on the first try of each job, then return a prepared folder."""
    CALLS[payload["name"]] = CALLS.get(payload["name"], 0) + 1
    if CALLS[payload["name"]] == 1:
        raise RuntimeError("a passing hiccup")
    return {"files": {"prepared.json": b"{}", "executed.ipynb": payload["release"]},
            "log": "worker log\n", "worker": "inproc", "wall_s": 0.1}


def refusing_task(payload: dict) -> dict:
    CALLS[payload["name"]] = CALLS.get(payload["name"], 0) + 1
    raise cluster.CourseMismatch("Dask worker X runs another version of the course (a) than "
                                 "the grading command (b), so it grades nothing.")


def failing_task(payload: dict) -> dict:
    CALLS[payload["name"]] = CALLS.get(payload["name"], 0) + 1
    raise OSError("the disk is full")


@pytest.fixture(scope="module")
def inproc_client():
    with distributed.LocalCluster(n_workers=1, threads_per_worker=2, processes=False,
                                  dashboard_address="127.0.0.1:0") as local, \
            distributed.Client(local) as client:
        yield client


def _job(tmp_path: Path, name: str) -> Job:
    from autograder.engine.limits import Limits

    folder = tmp_path / "candidates" / name
    folder.mkdir(parents=True)
    (folder / "nb.ipynb").write_text("{}")
    (tmp_path / "release.ipynb").write_text('{"release": true}')
    outdir = tmp_path / "prepared" / name
    outdir.mkdir(parents=True)
    (outdir / "prepared.json").write_text('{"stale": true}')  # an earlier run's
    return Job(student=name, assignment=A, notebook="nb", submitted_notebook=str(folder /
               "nb.ipynb"), submission_dir=str(folder),
               release_notebook=str(tmp_path / "release.ipynb"), course_root=str(ROOT),
               db_url="", outdir=str(outdir), hide=[], cell_timeout_s=1,
               notebook_timeout_s=1, kernel_limits=Limits(), check_limits=Limits())


def _preparer(client, tmp_path: Path, task) -> cluster.DaskPreparer:
    (tmp_path / "snapshot.db").write_bytes(b"db")
    preparer = cluster.DaskPreparer(client, ROOT, tmp_path / "work", tmp_path / "snapshot.db",
                                    timeout_s=60, retries=2)
    preparer.task = staticmethod(task)
    return preparer


def test_a_task_that_raises_is_retried_and_its_result_written_once(inproc_client, tmp_path):
    """Does a job whose first try raises complete once, with the second try's files?"""
    preparer = _preparer(inproc_client, tmp_path, flaky_task)
    try:
        futures = [preparer.submit(_job(tmp_path, n), n) for n in ("f1", "f2")]
        for f in futures:
            assert f.result(timeout=60) is None
    finally:
        preparer.close()
    assert CALLS["f1"] == CALLS["f2"] == 2
    outdir = tmp_path / "prepared" / "f1"
    assert json.loads((outdir / "prepared.json").read_text()) == {}
    assert (outdir / "executed.ipynb").read_text() == '{"release": true}'
    log = (tmp_path / "work" / "logs" / "f1.log").read_text()
    assert "a passing hiccup" in log and "worker log" in log


def test_a_refusing_worker_is_not_retried_and_leaves_no_result(inproc_client, tmp_path,
                                                               capsys):
    """Is a CourseMismatch tried once, said once, and the job left without a result?"""
    preparer = _preparer(inproc_client, tmp_path, refusing_task)
    try:
        for n in ("r1", "r2"):
            preparer.submit(_job(tmp_path, n), n).result(timeout=60)
    finally:
        preparer.close()
    assert CALLS["r1"] == CALLS["r2"] == 1
    assert not (tmp_path / "prepared" / "r1" / "prepared.json").exists()
    assert "another version of the course" in (tmp_path / "work" / "logs" / "r1.log").read_text()
    assert capsys.readouterr().err.count("another version of the course") == 1


def test_a_task_that_always_raises_stops_after_its_retries(inproc_client, tmp_path):
    """Does a job that raises every time complete (empty) after 1 + retries tries?"""
    preparer = _preparer(inproc_client, tmp_path, failing_task)
    try:
        preparer.submit(_job(tmp_path, "x1"), "x1").result(timeout=60)
    finally:
        preparer.close()
    assert CALLS["x1"] == 3
    assert not (tmp_path / "prepared" / "x1" / "prepared.json").exists()
    assert "no retry left" in (tmp_path / "work" / "logs" / "x1.log").read_text()


def test_no_worker_is_one_sentence(tmp_path):
    """Is a scheduler without workers refused with one sentence, not a hang?"""
    with distributed.LocalCluster(n_workers=0, processes=False,
                                  dashboard_address="127.0.0.1:0") as c:
        (tmp_path / "snapshot.db").write_bytes(b"")
        with pytest.raises(cluster.ClusterError, match="No Dask worker joined"):
            cluster.DaskPreparer(c.scheduler_address, ROOT, tmp_path, tmp_path / "snapshot.db",
                                 timeout_s=60, wait_s=1)


def test_the_fingerprint_follows_solutions_and_code(tmp_path):
    """Does changing a solution notebook or a grader module change the fingerprint?"""
    course = _course_checkout(tmp_path / "c", changed_solution=False)
    base = cluster.course_fingerprint(course)
    assert base == cluster.course_fingerprint(ROOT)
    (course / "solutions" / A / f"{A}.ipynb").write_text(
        (course / "solutions" / A / f"{A}.ipynb").read_text() + " ")
    changed_solution = cluster.course_fingerprint(course)
    (course / "autograder" / "hints.py").write_text(
        (course / "autograder" / "hints.py").read_text() + "\n")
    changed_code = cluster.course_fingerprint(course)
    assert len({base, changed_solution, changed_code}) == 3
    assert cluster.course_label(course) == f"course files {changed_code[:12]}"
