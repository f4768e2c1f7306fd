"""Prepare submissions for grading: sanitize, execute in a sandbox, check outside the kernel.

A slot process (`python -m autograder.grading.worker --serve FD --slot DIR`, one per job slot,
started by `slots.LocalPreparer`) prepares one job after another, warm: one sandbox over its
folder, one zygote inside it that imported torch and the course, and every kernel, graded
program and check forked from that zygote. It runs no learner code itself, and between two jobs
it kills what the last one started and empties what it wrote (`Slot.reset`).
`python -m autograder.grading.worker JOB.json` prepares a single job in a slot of its own.
A worker never writes the gradebook: it reads a private copy of it (nbgrader's OverwriteCells
needs the source cells) and writes a prepared result that the single gradebook writer applies
afterwards.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from dataclasses import asdict
from pathlib import Path

import nbformat
import psutil
from traitlets.config import Config

from autograder import cells, course
from autograder.engine import observe
from autograder.engine.environ import remove_secrets
from autograder.engine.limits import Limits, apply_in_child
from autograder.engine.runner import child_env, run_checks
from autograder.engine.spec import ERROR, FAILED, Verdict
from autograder.engine.zygote import Zygote
from autograder.exercises import all_exercises
from autograder.grading import rerun_answers, warm_kernel
from autograder.grading.execute import (
    KERNEL_NAME,
    ResilientExecute,
    install_kernelspec,
    ipc_directory,
)
from autograder.grading.handoffs import (
    EXECUTED_FILE,
    PREPARED_FILE,
    Job,
    Prepared,
    step_failure,
)
from autograder.grading.sandbox import CLEAR_SANDBOX_TMP, Sandbox, mount_namespace
from autograder.grading.settings import SANITIZE_CHAIN, GradingSettings, grading_config

MAX_PROGRAM_RESTARTS = 4
# What the zygote imports once, so the graded program and every check process fork warm.
# What the notebooks' kernels and graded programs import (matplotlib alone is 1 s), imported
# once per slot; `sandbox` holds what the slot forks to clean up between jobs.
ZYGOTE_PRELOAD = ("autograder.exercises:all_exercises", "autograder.grading.rerun_answers",
                  "autograder.grading.sandbox", "matplotlib.pyplot", "torch._dynamo",
                  "fsspec.implementations.http", "zarr", *warm_kernel.PRELOAD)


def job_config(job: Job) -> Config:
    """The course's nbgrader configuration with grading's settings over it."""
    config = course.load_config(Path(job.course_root))
    config.merge(grading_config(GradingSettings(cell_timeout_s=job.cell_timeout_s,
                                                notebook_timeout_s=job.notebook_timeout_s)))
    return config


def sanitize(job: Job, config: Config, source: Path, dest: Path) -> nbformat.NotebookNode:
    """Run nbgrader's sanitizing preprocessors (and ours) on the submitted notebook.

    The notebook was reconciled with the release before it reached this worker (`reconcile`),
    so nbgrader finds one cell per grade id and restores sources and points as usual.
    """
    nb = nbformat.read(source, as_version=4)
    resources = {"nbgrader": {"notebook": job.notebook, "assignment": job.assignment,
                              "student": job.student, "db_url": job.db_url},
                 "metadata": {"path": str(dest.parent)}}
    for pp in SANITIZE_CHAIN:
        nb, resources = pp(config=config).preprocess(nb, resources)
    nbformat.write(nb, dest)
    return nb


class TreeWatchdog:
    """Watch this process's descendants from outside: too many, or too much memory, and the
    offending tree is killed (the executor then restarts the kernel past that cell)."""

    def __init__(self, limits: Limits, keep: set[int] = frozenset()):
        self.limits, self.tripped, self.keep = limits, [], set(keep)  # keep: the zygote
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> TreeWatchdog:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        me = psutil.Process()
        while not self._stop.wait(0.25):
            # A killed process this worker adopted (it is a subreaper) stays a zombie until
            # the job ends; it holds no memory and must not count as running.
            procs = [p for p in me.children(recursive=True) if _running(p)]
            reason = None
            if len(procs) > self.limits.processes:
                reason = "processes"
            elif observe.tree_pss_above(procs, self.limits.memory_mib) is not None:
                reason = "memory"
            if reason:
                self.tripped.append(reason)
                for p in procs:
                    if p.pid in self.keep:
                        continue
                    try:
                        p.kill()
                    except psutil.Error:
                        pass


def execute_in_kernel(job: Job, slot: Slot, config: Config, nb: nbformat.NotebookNode,
                      workdir: Path, zygote: Zygote | None = None
                      ) -> tuple[nbformat.NotebookNode, dict]:
    """Run the notebook in a sandboxed, limited kernel that survives crashes.

    With the slot's zygote the kernel is forked from it, warm, inside the slot's sandbox
    (`warm_kernel`); otherwise it starts as a new interpreter in a sandbox of its own.
    """
    spec_base = install_kernelspec(slot.tmp / "jupyter", json.dumps(asdict(job.kernel_limits)),
                                   provisioner=warm_kernel.PROVISIONER_NAME)
    os.environ["JUPYTER_PATH"] = str(spec_base)
    warm_kernel.register()
    if zygote is not None:
        # The kernel's sockets must be where the sandbox lets it write: the zygote's folder.
        ipc, own_ipc = Path(zygote.folder), False
        warm_kernel.use(zygote, job.kernel_limits, str(slot.out / "kernel.log"))
    else:
        ipc, own_ipc = ipc_directory(), True
    config.ResilientExecute.kernel_name = KERNEL_NAME
    config.KernelManager.transport = "ipc"
    config.KernelManager.ip = str(ipc / "k")
    try:
        executor = ResilientExecute(config=config)
        with TreeWatchdog(job.kernel_limits,
                          _kept(zygote)) as watchdog:
            nb, resources = executor.preprocess(nb, {"metadata": {"path": str(workdir)}})
    finally:
        warm_kernel.use(None)
        if own_ipc:
            shutil.rmtree(ipc, ignore_errors=True)
    report = resources["memcourse"]
    report["watchdog"] = sorted(set(watchdog.tripped))
    return nb, report


def added_cells(nb: nbformat.NotebookNode, release: nbformat.NotebookNode,
                kernel: dict) -> list[int]:
    """Code cells the learner added (not in the release), for the graded program to run too.

    A helper defined in a cell of the learner's own is part of the answer. Cells that the
    kernel run showed to hang, crash, flood the output or run out of memory are left out: the
    kernel already recorded what they did, and they would only cost the program its time.
    """
    released = {c.source.strip() for c in release.cells if c.cell_type == "code"}
    troubled = set()
    for key in ("timeout", "kernel_died", "output_cut", "memory_error"):
        troubled.update(kernel.get(key, []))
    return [i for i, c in enumerate(nb.cells)
            if c.cell_type == "code" and "nbgrader" not in c.metadata and c.source.strip()
            and c.source.strip() not in released and i not in troubled]


def run_program(job: Job, notebook: Path, outdir: Path, sandbox: Sandbox,
                zygote: Zygote | None = None, also: list[int] | None = None) -> dict:
    """Run the graded program, restarting past a cell that kills it or runs too long.

    With a (sandboxed) zygote the program is forked warm; otherwise it is a new interpreter
    inside the sandbox. `also` lists the learner's own cells to run with it (`added_cells`).
    """
    limits = job.kernel_limits
    skip: list[int] = []
    report: dict = {"died_in": [], "timed_out": [], "errors": {}}
    for _ in range(MAX_PROGRAM_RESTARTS + 1):
        for name in (rerun_answers.PROGRESS, rerun_answers.CALLS):
            (outdir / name).unlink(missing_ok=True)
        args = [str(notebook), str(outdir), "--skip", ",".join(map(str, skip)),
                "--also", ",".join(map(str, also or []))]
        proc = None
        if zygote is not None:
            try:
                proc = zygote.spawn_target(f"{rerun_answers.__name__}:main", args,
                                           str(notebook.parent), dict(os.environ),
                                           asdict(limits), str(outdir / "program.log"))
            except (OSError, RuntimeError):
                proc = None
        if proc is None:
            command = sandbox.wrap([sys.executable, "-m", "autograder.grading.rerun_answers",
                                    *args])
            with open(outdir / "program.log", "ab") as log:
                proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT,
                                        stdin=subprocess.DEVNULL, cwd=notebook.parent,
                                        preexec_fn=lambda: apply_in_child(limits))
        timed_out = _wait(proc, outdir, job.cell_timeout_s, job.notebook_timeout_s)
        done, started_cell = _progress(outdir)
        if proc.returncode == 0 and not timed_out:
            break
        if started_cell is None or started_cell in done:
            break  # it stopped between cells: nothing to skip
        (report["timed_out"] if timed_out else report["died_in"]).append(started_cell)
        skip.append(started_cell)
    path = outdir / rerun_answers.PROGRESS
    for line in path.read_text().splitlines() if path.exists() else []:
        record = json.loads(line)
        if record.get("error"):
            report["errors"][str(record["done"])] = record["error"]
    return report


def _wait(proc: subprocess.Popen, outdir: Path, cell_timeout: float,
          total_timeout: float) -> bool:
    """Wait for the program; kill it when one cell or the whole run takes too long."""
    started = time.monotonic()
    cell, cell_started = None, started
    while proc.poll() is None:
        time.sleep(0.2)
        _, current = _progress(outdir)
        now = time.monotonic()
        if current != cell:
            cell, cell_started = current, now
        if now - cell_started > cell_timeout or now - started > total_timeout:
            proc.kill()
            proc.wait()
            return True
    return False


def _progress(outdir: Path) -> tuple[set[int], int | None]:
    done, last = set(), None
    path = outdir / rerun_answers.PROGRESS
    if path.exists():
        for line in path.read_text().splitlines():
            record = json.loads(line)
            if "start" in record:
                last = record["start"]
            if "done" in record:
                done.add(record["done"])
    return done, last


def sandbox_wrapper(sandbox: Sandbox):
    """The one wrapper (one identity, so one zygote) for this submission's sandboxed processes."""

    def wrap(command: list[str], writable: list[Path]) -> list[str]:
        return Sandbox(writable=[*sandbox.writable, *writable],
                       hidden=sandbox.hidden).wrap(command)

    return wrap if sandbox.available else None


def check_outside(job: Job, outdir: Path, wrap) -> list[dict]:
    """Run the checks of every check call the program reached, in this clean process."""
    exercises = all_exercises()
    limits = job.check_limits

    calls = []
    path = outdir / rerun_answers.CALLS
    records = [json.loads(line) for line in path.read_text().splitlines()] \
        if path.exists() else []
    for record in records:
        exercise = exercises.get(record["function"])
        if exercise is None:
            calls.append({**record, "verdicts": []})
            continue
        try:
            checks = ([exercise.check(n) for n in record["checks"]] if record["checks"]
                      else list(exercise.checks))
        except KeyError as e:  # the test cell names a check the exercise does not have
            calls.append({**record, "verdicts": [], "error": str(e)})
            continue
        if "blob" in record:
            verdicts = run_checks(exercise, None, checks, limits, shipped=Path(record["blob"]),
                                  wrap=wrap)
        else:
            problem = record.get("ship_error") or record.get("missing") or record.get("error")
            status = FAILED if "ship_error" in record or "missing" in record else ERROR
            names = ", ".join(record["objects"])
            message = (f"`{names}` {problem}" if "ship_error" in record else
                       f"`{names}` could not be found after running your answer cells "
                       f"({problem})." if "missing" in record else problem)
            verdicts = [Verdict.from_check(c, status, 0.0, message) for c in checks]
        calls.append({**record, "verdicts": [v.to_dict() for v in verdicts]})
    return calls


def cell_names(nb) -> dict[str, str]:
    """How the report names each code cell: its grade_id, or its number and first line."""
    names = {}
    for i, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        grade_id = cells.grade_id(cell)
        # Line breaks shown as ⏎, so the excerpt never reads as code the learner did not write.
        code = " ⏎ ".join(line.strip() for line in cell.source.splitlines() if line.strip())
        code = code if len(code) <= 60 else code[:59] + "…"
        names[str(i)] = f"cell {i + 1} (`{grade_id}`)" if grade_id else f"cell {i + 1} (`{code}`)"
    return names


def _log_failure(result: Prepared, step: str, error: BaseException) -> None:
    result.problems.append(step_failure(step, error))
    result.failed_steps.append(step)
    print(f"--- {step} failed ---\n{traceback.format_exc()}", file=sys.stderr, flush=True)


class Slot:
    """A worker's lasting state: its folder, the sandbox over it, and that sandbox's zygote.

    Every job of the slot runs the notebook in `base/run`, writes its results to `base/out`
    and its temporary files to `base/tmp`; the sandbox may write nothing else, so one sandbox
    (and one zygote, which imported torch once) serves every job. `reset` then removes all
    that one job left before the next starts.
    """

    def __init__(self, base: Path):
        self.base = base
        shutil.rmtree(base, ignore_errors=True)  # what a slot killed mid-job left there
        self.run, self.out, self.tmp = base / "run", base / "out", base / "tmp"
        self.hide: tuple[str, ...] | None = None
        self.sandbox: Sandbox | None = None
        self.wrap = None

    def open(self, hide: list[str]) -> None:
        """Make the folders; (re)build the sandbox if the folders to hide changed.

        The sandbox may write the three folders, each bound on its own (so a sandboxed process
        can neither rename one nor write beside them); they are emptied between jobs, never
        replaced, for the sandbox's binds to keep pointing at them.
        """
        for folder in (self.run, self.out, self.tmp):
            if folder.is_symlink() or (folder.exists() and not folder.is_dir()):
                folder.unlink()
            folder.mkdir(parents=True, exist_ok=True)
        # Job folders and the sandboxed zygote's files go in the slot's own temporary folder.
        tempfile.tempdir = str(self.tmp)
        if self.hide != tuple(hide):
            Zygote.close_all()
            self.hide = tuple(hide)
            self.sandbox = Sandbox(writable=[self.run, self.out, self.tmp],
                                   hidden=[Path(p) for p in hide])
            self.wrap = sandbox_wrapper(self.sandbox)

    def reset(self) -> None:
        """Remove everything the last job left: its processes, files, and the sandbox's /tmp
        and /dev/shm (which the zygote's children share), keeping the zygote itself."""
        zygote = next(iter(Zygote.running()), None)
        kill_descendants(_kept(zygote))
        # Only a sandboxed zygote has a /tmp of its own: without bubblewrap its /tmp is the
        # machine's, which is never emptied (results are then flagged sandbox_unavailable).
        if zygote is not None and zygote.sandboxed and zygote.proc.poll() is None:
            try:
                cleaner = zygote.spawn_target(CLEAR_SANDBOX_TMP, [mount_namespace(),
                                                                  zygote.folder], "/", {},
                                              asdict(Limits()), os.devnull)
                cleared = cleaner.wait(timeout=60) == 0
            except (OSError, RuntimeError, subprocess.TimeoutExpired):
                cleared = False
            if cleared:
                zygote.clear_folder()
            else:
                Zygote.close_all()  # could not empty it: the next job gets a new sandbox
        for folder in (self.run, self.out, self.tmp):
            _empty(folder)
        left = [p for f in (self.run, self.out, self.tmp) for p in f.iterdir()]
        if left:  # never hand the next job a folder the last one could still write into
            raise RuntimeError(f"could not empty the slot's folders: {left[:3]}")

    def close(self) -> None:
        """Stop the zygote and every process left; remove the slot's folder."""
        Zygote.close_all()
        kill_descendants(set())
        shutil.rmtree(self.base, ignore_errors=True)
        tempfile.tempdir = None


def _empty(folder: Path) -> None:
    """Remove what `folder` holds, never following a link out of it; keep `folder` itself."""
    try:
        entries = list(folder.iterdir())
    except OSError:
        return
    for entry in entries:
        try:
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()
        except OSError:
            try:  # a read-only folder inside: make it writable, then try once more
                for path in [entry, *entry.rglob("*")] if entry.is_dir() else [entry]:
                    if not path.is_symlink():
                        path.chmod(0o700)
                shutil.rmtree(entry, ignore_errors=True)
            except OSError:
                pass


def _running(process: psutil.Process) -> bool:
    try:
        return process.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _kept(zygote: Zygote | None) -> set[int]:
    """What killing a job's processes spares: the zygote's own, which ran no learner code."""
    return zygote.own_pids if zygote is not None else set()


def kill_descendants(keep: set[int]) -> None:
    """Kill every descendant of this process except the processes in `keep` (the zygote's own).

    The slot is a child subreaper (`become_subreaper`), so a process a submission detached
    (double fork, new session) is still its descendant and is found here.
    """
    for _ in range(3):  # a process may fork while the tree is being killed
        victims = [p for p in psutil.Process().children(recursive=True) if p.pid not in keep]
        if not victims:
            break
        for p in victims:
            try:
                p.kill()
            except psutil.Error:
                pass
        psutil.wait_procs(victims, timeout=5)
    _reap()


def _reap() -> None:
    """Collect exited children that no Popen waits for (orphans this subreaper adopted)."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def become_subreaper() -> None:
    """Adopt every orphan of this process's tree (Linux PR_SET_CHILD_SUBREAPER), so nothing a
    submission starts can outlive its job unseen. Elsewhere a no-op."""
    try:
        import ctypes  # lazy: Linux only, and only for a worker

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER
    except (OSError, AttributeError):
        pass


def prepare(job: Job, slot: Slot) -> None:
    """Prepare `job` in `slot`: its `Prepared` result and outputs land in `job.outdir`."""
    slot.open(job.hide)
    workdir, outdir = slot.run / job.notebook, slot.out
    shutil.copytree(job.submission_dir, workdir)
    final = Path(job.outdir)
    if final.exists():
        shutil.rmtree(final)
    sanitized_path = workdir / f"{job.notebook}.ipynb"
    result = Prepared(job.student, job.assignment, job.notebook)
    started = time.monotonic()
    timings = result.seconds
    config = job_config(job)
    try:
        nb = sanitize(job, config, Path(job.submitted_notebook), sanitized_path)
    except Exception as e:  # a grader bug: run what was submitted, nbgrader scores it later
        _log_failure(result, "sanitizing the notebook", e)
        nb = nbformat.read(job.submitted_notebook, as_version=4)
        nbformat.write(nb, sanitized_path)
    result.cell_names = cell_names(nb)
    if not slot.sandbox.available:
        result.flags.append("sandbox_unavailable")
    os.environ["MEMCOURSE_SANDBOX_HIDE"] = os.pathsep.join(job.hide)
    os.environ["MPLBACKEND"] = "Agg"
    # What nbgrader's Autograde sets around execution, which this worker does itself:
    # notebooks read it to pick the `tiny` dataset and to keep widgets quiet.
    os.environ["NBGRADER_EXECUTION"] = "autograde"
    zygote = None
    try:
        # Started by the slot's first job, it imports torch while the kernel runs; the program
        # and every check process then fork from it, inside the slot's sandbox.
        zygote = Zygote.get(child_env(), slot.wrap, preload=ZYGOTE_PRELOAD)
    except Exception as e:
        _log_failure(result, "starting the warm check process", e)
    os.environ["MEMCOURSE_CHECKS"] = "outside"
    # Each step stands alone: one that fails costs only what it produces, so the checks of a
    # notebook whose kernel could not run still score from the graded program.
    mark = time.monotonic()
    try:
        executed, result.kernel = execute_in_kernel(job, slot, config,
                                                    nbformat.reads(nbformat.writes(nb), 4),
                                                    workdir, zygote)
        nbformat.write(executed, outdir / EXECUTED_FILE)
    except Exception as e:
        _log_failure(result, "running the notebook in its kernel", e)
    # Whatever the kernel left running (a detached process) ends here, before the program
    # and the checks use the slot's folders.
    kill_descendants(_kept(zygote))
    timings["kernel"], mark = round(time.monotonic() - mark, 2), time.monotonic()
    try:
        release = nbformat.read(job.release_notebook, as_version=4)
        also = added_cells(nb, release, result.kernel)
        result.program = run_program(job, sanitized_path, outdir, slot.sandbox, zygote, also)
    except Exception as e:
        _log_failure(result, "running the graded program", e)
    kill_descendants(_kept(zygote))
    timings["program"], mark = round(time.monotonic() - mark, 2), time.monotonic()
    os.environ.pop("MEMCOURSE_CHECKS", None)
    try:
        result.calls = check_outside(job, outdir, slot.wrap)
        result.status = "prepared"
    except Exception as e:
        _log_failure(result, "running the checks", e)
        result.status = "error"
    timings["checks"] = round(time.monotonic() - mark, 2)
    result.wall_s = round(time.monotonic() - started, 2)
    result.save(outdir)
    # The results leave the slot; the learner's shipped objects (objects/) do not.
    final.mkdir(parents=True, exist_ok=True)
    for name in RESULT_FILES:
        if (outdir / name).is_file():
            shutil.copyfile(outdir / name, final / name)


RESULT_FILES = (PREPARED_FILE, EXECUTED_FILE, rerun_answers.CALLS, "program.log")


def serve(reply_fd: int, slot_dir: Path) -> int:
    """Prepare job after job: each stdin line is `[job path, log path]`; `done` goes to
    `reply_fd` when the job's results are in place. Ends at end of input.

    The job's output (the kernel's, nbgrader's, tracebacks) goes to its log. Between two jobs
    the slot is reset (`Slot.reset`) and this process's environment restored.
    """
    become_subreaper()
    remove_secrets()  # before anything that could run a learner's code is started
    slot = Slot(slot_dir)
    environment = dict(os.environ)
    parent = os.getppid()

    def stop(signum, frame):  # asked to stop mid-job: take everything this slot started along
        try:
            slot.close()
        finally:
            os._exit(1)

    signal.signal(signal.SIGTERM, stop)
    threading.Thread(target=_exit_with_parent, args=(parent, slot), daemon=True).start()
    try:
        for line in sys.stdin:
            job_path, log_path = json.loads(line)
            with open(log_path, "ab") as log:
                sys.stdout.flush()
                sys.stderr.flush()
                os.dup2(log.fileno(), 1)
                os.dup2(log.fileno(), 2)
            try:
                prepare(Job.read(Path(job_path)), slot)
            except BaseException:  # the job's result then reads as a worker that stopped
                traceback.print_exc()
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                try:
                    slot.reset()
                except Exception:
                    traceback.print_exc()
                    slot.close()
                os.environ.clear()
                os.environ.update(environment)
            os.write(reply_fd, b"done\n")
    finally:
        slot.close()
    return 0


def _exit_with_parent(parent: int, slot: Slot) -> None:
    """If the process that sends the jobs dies, stop everything this slot started, and exit."""
    while True:
        time.sleep(1.0)
        if os.getppid() != parent:
            try:
                slot.close()
            finally:
                os._exit(1)


def main(job_path: str) -> int:
    """Prepare the single job at `job_path` in a slot of its own, then remove the slot."""
    become_subreaper()
    remove_secrets()
    job = Job.read(Path(job_path))
    slot = Slot(Path(tempfile.mkdtemp(prefix="mc-slot-")))
    try:
        prepare(job, slot)
    finally:
        slot.close()
    return 0


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--serve":
        parser = argparse.ArgumentParser(prog="python -m autograder.grading.worker")
        parser.add_argument("--serve", type=int, metavar="FD", required=True,
                            help="descriptor to write `done` to after each job")
        parser.add_argument("--slot", required=True, help="the slot's own folder")
        options = parser.parse_args()
        sys.exit(serve(options.serve, Path(options.slot)))
    sys.exit(main(sys.argv[1]))
