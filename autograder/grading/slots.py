"""Where prepared submissions come from: warm worker processes on this machine, one per slot.

A slot is a long-lived `python -m autograder.grading.worker --serve` process. It imports
nbgrader and the course once, then prepares one job after another (`worker.serve`): its first
job starts the slot's sandbox and, inside it, a zygote that imports torch once; every job of
the slot forks its kernel, graded program and checks from that zygote (`worker.Slot`). Between
two jobs the slot kills every process the previous one left, empties the sandbox's /tmp and
/dev/shm and the job's folders, so nothing one submission wrote, started or changed reaches
the next.

`LocalPreparer.submit(job, name)` returns a `concurrent.futures.Future` that completes when
the job's `outdir` holds what the worker wrote; the cluster preparer (`cluster`) has the same
interface, so the pipeline does not know where a submission was prepared.
"""

from __future__ import annotations

import json
import os
import queue
import select
import signal
import subprocess
import sys
import threading
import time
import traceback
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

from autograder.exercises import all_exercises
from autograder.grading.handoffs import Job
from memcourse import data

DONE = b"done\n"


def ensure_grading_data() -> None:
    """Make what every job needs on this machine: the `tiny` dataset (HDF5 and .npy files) and
    every exercise's check fixtures. Written atomically, so processes may race to make them."""
    os.environ.setdefault("MEMCOURSE_DATA", str(data.data_dir()))
    data.ensure_dataset("tiny", progress=False)
    data.ensure_npy_folder("tiny", progress=False)
    for exercise in {e.name: e for e in all_exercises().values()}.values():
        if exercise.make_fixtures:
            exercise.make_fixtures()


class SlotProcess:
    """One warm worker process and the pipe it answers on."""

    def __init__(self, root: Path, index: int, base: Path):
        self.index = index
        self.base = base  # the slot's own folder: its sandbox writes only run/, out/, tmp/ in it
        base.mkdir(parents=True, exist_ok=True)
        reply_r, reply_w = os.pipe()
        self._log = open(base.parent / f"slot-{index}.log", "ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "autograder.grading.worker", "--serve", str(reply_w),
             "--slot", str(base)],
            stdin=subprocess.PIPE, stdout=self._log, stderr=subprocess.STDOUT, cwd=root,
            pass_fds=(reply_w,), start_new_session=True)
        os.close(reply_w)
        self._reply = reply_r

    def run(self, job_path: Path, log: Path, timeout_s: float) -> bool:
        """Send one job; wait for the slot to finish it. False: it died or ran out of time."""
        try:
            self.proc.stdin.write(json.dumps([str(job_path), str(log)]).encode() + b"\n")
            self.proc.stdin.flush()
        except OSError:
            return False
        deadline = time.monotonic() + timeout_s
        got = b""
        while time.monotonic() < deadline:
            ready, _, _ = select.select([self._reply], [], [], 1.0)
            if ready:
                chunk = os.read(self._reply, 64)
                if not chunk:
                    return False  # the slot exited
                got += chunk
                if got.endswith(DONE):
                    return True
            elif self.proc.poll() is not None:
                return False
        return False

    def close(self, now: bool = False) -> None:
        """Stop the slot and everything it started: at the end of its input, or at once when
        `now` (SIGTERM: the slot kills its descendants, sandboxes and zygote included, then
        exits); what is still running after that is killed with its session."""
        try:
            self.proc.stdin.close()
        except OSError:
            pass
        if now and self.proc.poll() is None:
            self.proc.terminate()
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except OSError:
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass
        os.close(self._reply)
        self._log.close()


class LocalPreparer:
    """Prepare jobs on this machine in `workers` warm slots (see the module's docstring)."""

    def __init__(self, root: Path, work: Path, workers: int, timeout_s: float):
        self.root, self.work, self.timeout_s = root, work, timeout_s
        self.workers = max(1, workers)
        self._pool = ThreadPoolExecutor(max_workers=self.workers)
        self._free: queue.Queue[int] = queue.Queue()
        self._slots: dict[int, SlotProcess | None] = {}
        self._lock = threading.Lock()
        for k in range(self.workers):
            self._slots[k] = None
            self._free.put(k)

    def _slot(self, k: int) -> SlotProcess:
        with self._lock:
            slot = self._slots[k]
            if slot is None or slot.proc.poll() is not None:
                slot = self._slots[k] = SlotProcess(self.root, k, self.work / "slots" / str(k))
            return slot

    def _run(self, job: Job, name: str) -> None:
        job_path = self.work / "jobs" / f"{name}.json"
        job.write(job_path)
        log = self.work / "logs" / f"{name}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        log.write_bytes(b"")
        k = self._free.get()
        try:
            slot = self._slot(k)
            if not slot.run(job_path, log, self.timeout_s):
                # It hung past every limit of its own, or died: replace it; the job's missing
                # result then reads as a worker that stopped (`handoffs.WORKER_STOPPED`).
                with self._lock:
                    self._slots[k] = None
                slot.close(now=True)
        except Exception:  # e.g. no slot could start: say why in the job's log
            with open(log, "a") as f:
                f.write(f"--- preparing the job failed ---\n{traceback.format_exc()}")
        finally:
            self._free.put(k)

    def submit(self, job: Job, name: str) -> Future:
        """Prepare `job` in the next free slot; the future completes when it is done."""
        return self._pool.submit(self._run, job, name)

    def close(self, now: bool = False) -> None:
        """Stop every slot: after the jobs already running, or at once when `now` (an
        interrupted run: their jobs then read as stopped, and a rerun prepares them again).
        Jobs not yet started are cancelled."""
        if now:
            with self._lock:
                for slot in self._slots.values():
                    if slot is not None:
                        slot.close(now=True)
        self._pool.shutdown(wait=True, cancel_futures=True)
        for k, slot in self._slots.items():
            if slot is not None:
                slot.close()
            self._slots[k] = None
