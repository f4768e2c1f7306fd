"""The parent side: ship the learner's objects, start and watch the child, judge what came back.

The child may crash, hang, allocate without bound or print forever; each of these ends the
current check with a labelled verdict, and the remaining checks run in a fresh child.
"""

from __future__ import annotations

import json
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from autograder.engine import observe
from autograder.engine.limits import Limits, apply_in_child
from autograder.engine.ship import LEARNER_MODULE, LEARNER_MODULE_SOURCE, ShipError, ship
from autograder.engine.spec import (
    ERROR,
    FAILED,
    LIMIT_EXCEEDED,
    NOT_ATTEMPTED,
    PASSED,
    Check,
    Exercise,
    Fail,
    Verdict,
)
from autograder.engine.zygote import CHECK_CHILD, Zygote
from memcourse.paths import repo_root

STARTUP_TIMEOUT_S = 90.0  # importing torch in a fresh process takes seconds on a busy laptop
POLL_S = 0.02


@dataclass
class Mark:
    """The parent's measurement of the child at one point of a check."""

    label: str
    wall_s: float
    rss_mib: float
    peak_mib: float  # highest RSS of the child since the previous mark (VmHWM)
    anon_mib: float
    file_mib: float
    tree_rss_mib: float
    processes: int
    fds: dict[str, int]  # fixture file -> descriptors open on it, over the child's tree
    opens: dict[str, int]  # fixture file -> open() calls since the previous mark


@dataclass
class Trace:
    """Everything known about one check's run: the data its act returned and what was observed."""

    check: str
    data: dict[str, Any] = field(default_factory=dict)
    arrays: dict[str, np.ndarray] = field(default_factory=dict)
    marks: list[Mark] = field(default_factory=list)
    outcome: str = "pending"  # done, not_attempted, raised, limit, checker_error, load_failed
    error: dict[str, Any] = field(default_factory=dict)
    operation: str = ""
    limit: str = ""
    limit_detail: str = ""
    wall_s: float = 0.0
    output_tail: str = ""
    opens_available: bool = True

    def mark(self, label: str) -> Mark:
        """The mark called `label` (KeyError if the act never reached it)."""
        for m in self.marks:
            if m.label == label:
                return m
        raise KeyError(label)

    def opens_between(self, first: str, last: str, fixture: str | None = None) -> int:
        """File opens counted after mark `first` up to and including mark `last`."""
        labels = [m.label for m in self.marks]
        i, j = labels.index(first), labels.index(last)
        return sum(n for m in self.marks[i + 1: j + 1] for f, n in m.opens.items()
                   if fixture is None or f.startswith(fixture))

    def growth_mib(self, first: str, last: str) -> float:
        """How far the child's memory rose above mark `first` at its peak up to mark `last`."""
        labels = [m.label for m in self.marks]
        i, j = labels.index(first), labels.index(last)
        peak = max(m.peak_mib for m in self.marks[i + 1: j + 1])
        return peak - self.marks[i].rss_mib

    def private_growth_mib(self, first: str, last: str) -> float:
        """Peak growth minus the growth of file-backed pages (RssFile) between the two marks.

        Pages of a memory-mapped file count in RSS but are page cache the kernel can reclaim;
        a dataset that maps its file and touches every page is not loading it into RAM.
        """
        file_growth = self.mark(last).file_mib - self.mark(first).file_mib
        return self.growth_mib(first, last) - max(0.0, file_growth)


def child_env() -> dict[str, str]:
    env = dict(os.environ)
    # Fewer malloc arenas and threads keep the address space small and timings steady.
    env.update(MALLOC_ARENA_MAX="2", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1",
               PYTHONDONTWRITEBYTECODE="1", PYTHONHASHSEED="0")
    env.pop("PYTHONSTARTUP", None)
    here = str(repo_root())
    env["PYTHONPATH"] = here + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


class _Child:
    """One child process running a list of checks, watched by the parent."""

    def __init__(self, jobdir: Path, checks: list[Check], limits: Limits, wrap=None):
        self.jobdir, self.checks, self.limits, self.wrap = jobdir, checks, limits, wrap
        self.pid = 0  # the Python process itself (a sandbox may start it as a grandchild)
        self.by_name = {c.name: c for c in checks}
        (jobdir / "job.json").write_text(json.dumps({
            "names": json.loads((jobdir / "names.json").read_text()),
            "checks": [{"name": c.name, "act": f"{c.act.__module__}:{c.act.__name__}",
                        "fixtures": {f: str(_fixture_copy(jobdir, c, f)) for f in c.fixtures}}
                       for c in checks]}))
        self.output = jobdir / f"output-{checks[0].name}.txt"

    def run(self) -> tuple[dict[str, Trace], str | None]:
        """Run until the child finishes or stops; return traces and the check it died in."""
        ev_r, ev_w = os.pipe()
        ctl_r, ctl_w = os.pipe()
        counter = observe.OpenCounter(self.jobdir / "fixtures")
        out = open(self.output, "wb")
        command = [sys.executable, "-m", "autograder.engine.child", str(self.jobdir), str(ev_w),
                   str(ctl_r)]
        env = child_env()
        # The modules of the checks' acts, imported in the zygote so the child finds them there.
        acts = tuple(dict.fromkeys(c.act.__module__ for c in self.checks))
        zygote = Zygote.get(env, self.wrap, preload=acts)
        proc = None
        try:
            if zygote is not None:  # a warm fork: no 3 s of importing torch again
                try:
                    proc = zygote.spawn_target(CHECK_CHILD, [str(self.jobdir)],
                                               str(self.jobdir / "work"), env,
                                               asdict(self.limits), str(self.output),
                                               fds=[ev_w, ctl_r])
                except (OSError, RuntimeError):
                    proc = None  # the zygote is gone: start a fresh interpreter instead
            if proc is None:
                if self.wrap is not None:
                    command = self.wrap(command, [self.jobdir])
                proc = subprocess.Popen(
                    command,
                    stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                    pass_fds=(ev_w, ctl_r), env=env, cwd=self.jobdir / "work",
                    preexec_fn=lambda: apply_in_child(self.limits))
        finally:
            os.close(ev_w)
            os.close(ctl_r)
        try:
            return self._watch(proc, ev_r, ctl_w, counter)
        finally:
            self._stop(proc)
            for fd in (ev_r, ctl_w):
                try:
                    os.close(fd)
                except OSError:
                    pass
            counter.close()
            out.close()

    def _stop(self, proc: subprocess.Popen) -> None:
        if proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except OSError:
                proc.kill()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass
        try:  # workers the child started in its process group
            os.killpg(proc.pid, signal.SIGKILL)
        except OSError:
            pass

    def _measure(self, pid: int, label: str, started: float, counter) -> Mark:
        procs = observe.tree(pid)
        st = observe.status(pid)
        return Mark(label=label, wall_s=time.monotonic() - started,
                    rss_mib=st.get("rss_mib", 0.0), peak_mib=st.get("hwm_mib", 0.0),
                    anon_mib=st.get("anon_mib", 0.0), file_mib=st.get("file_mib", 0.0),
                    tree_rss_mib=observe.tree_rss_mib(procs), processes=len(procs),
                    fds=_by_fixture(observe.open_files_under(procs, self.jobdir / "fixtures")),
                    opens=_by_fixture(counter.drain()))

    def _watch(self, proc, ev_r, ctl_w, counter) -> tuple[dict[str, Trace], str | None]:
        traces: dict[str, Trace] = {}
        current: Trace | None = None
        started = time.monotonic()
        deadline = started + STARTUP_TIMEOUT_S
        check_started = started
        buffer = b""
        finished = False

        def stop_current(limit: str, detail: str = "") -> str | None:
            nonlocal current
            if current is None:
                return None
            current.outcome, current.limit, current.limit_detail = "limit", limit, detail
            current.wall_s = time.monotonic() - check_started
            current.output_tail = self._tail()
            traces[current.check] = current
            name = current.check
            current = None
            return name

        watched = [ev_r] + ([counter.fileno()] if counter.available else [])
        while True:
            ready, _, _ = select.select(watched, [], [], POLL_S)
            if counter.available and counter.fileno() in ready:
                counter.poll()
            readable = ev_r in ready
            if readable:
                chunk = os.read(ev_r, 65536)
                buffer += chunk
                while b"\n" in buffer:
                    line, buffer = buffer.split(b"\n", 1)
                    try:
                        event = json.loads(line)
                    except ValueError:
                        continue
                    kind = event.get("type")
                    if kind == "ready":
                        deadline = float("inf")
                        reported = event.get("pid")
                        self.pid = reported if reported in {p.pid for p in observe.tree(
                            proc.pid)} else proc.pid
                    elif kind == "load_failed":
                        for c in self.checks:
                            traces[c.name] = Trace(c.name, outcome="load_failed",
                                                   error=event["error"], output_tail=self._tail())
                        return traces, None
                    elif kind == "start":
                        name = event["check"]
                        current = Trace(name, opens_available=counter.available)
                        check_started = time.monotonic()
                        deadline = check_started + self.by_name[name].timeout_s
                        counter.drain()
                        observe.reset_peak(self.pid)
                        current.marks.append(self._measure(self.pid, "start", check_started,
                                                           counter))
                    elif kind == "op" and current is not None:
                        current.operation = event["op"]
                    elif kind == "mark" and current is not None:
                        current.marks.append(self._measure(self.pid, event["label"],
                                                           check_started, counter))
                        observe.reset_peak(self.pid)
                        os.write(ctl_w, b"ok\n")
                    elif kind in ("done", "not_attempted", "raised", "checker_error") \
                            and current is not None:
                        current.marks.append(self._measure(self.pid, "end", check_started,
                                                           counter))
                        current.outcome = kind
                        current.wall_s = time.monotonic() - check_started
                        current.operation = event.get("op") or current.operation
                        current.error = event.get("error", {})
                        current.data = event.get("data", {})
                        if event.get("arrays"):
                            with np.load(self.jobdir / "results" / f"{current.check}.npz",
                                         allow_pickle=False) as z:
                                current.arrays = {k: z[k] for k in z.files}
                        if kind != "done":
                            current.output_tail = self._tail()
                        traces[current.check] = current
                        current = None
                    elif kind == "finished":
                        finished = True
                if readable and not chunk:  # the child closed its end: it has exited
                    proc.wait()
                    if finished:
                        return traces, None
                    return traces, self._crashed(proc, current, traces, started)
                continue
            # Nothing to read for POLL_S: check on the child from outside.
            if proc.poll() is not None and not readable:
                # Drain what is left, then decide.
                continue_reading = select.select([ev_r], [], [], 0)[0]
                if continue_reading:
                    continue
                if finished:
                    return traces, None
                return traces, self._crashed(proc, current, traces, started)
            now = time.monotonic()
            procs = observe.tree(proc.pid)
            if len(procs) > self.limits.processes:
                self._stop(proc)
                return traces, stop_current("processes", f"{len(procs)} processes were running")
            used = observe.tree_pss_above(procs, self.limits.memory_mib)
            if used is not None:
                self._stop(proc)
                return traces, stop_current(
                    "memory", f"the process and its workers reached {used / 1024:.1f} GB")
            if self.output.stat().st_size > self.limits.output_mib * 2**20:
                self._stop(proc)
                return traces, stop_current("output")
            if now > deadline:
                self._stop(proc)
                if current is None:  # still starting: count it against the next check
                    name = next((c.name for c in self.checks if c.name not in traces), None)
                    if name:
                        current = Trace(name)
                        check_started = started
                return traces, stop_current("time", f"{now - check_started:.0f} s")

    def _crashed(self, proc, current: Trace | None, traces, started) -> str | None:
        code = proc.returncode
        if code is not None and code < 0:
            sig = signal.Signals(-code)
            kind = "cpu" if sig == signal.SIGXCPU else "crash"
            detail = {signal.SIGSEGV: "a segmentation fault (SIGSEGV)",
                      signal.SIGBUS: "a bus error (SIGBUS)", signal.SIGABRT: "an abort (SIGABRT)",
                      signal.SIGKILL: "being killed (SIGKILL), usually by the out-of-memory "
                                      "killer"}.get(sig, sig.name)
        else:
            kind, detail = "exit", f"exit status {code}"
        if current is None:
            name = next((c.name for c in self.checks if c.name not in traces), None)
            if name is None:
                return None
            current = Trace(name)
        current.outcome, current.limit, current.limit_detail = "limit", kind, detail
        current.output_tail = self._tail()
        traces[current.check] = current
        return current.check

    def _tail(self, limit: int = 1500) -> str:
        try:
            with open(self.output, "rb") as f:
                f.seek(max(0, self.output.stat().st_size - limit))
                return f.read().decode(errors="replace")
        except OSError:
            return ""


def _by_fixture(counts: dict[str, int]) -> dict[str, int]:
    """Key counts by fixture name (the part after the check's folder)."""
    out: dict[str, int] = {}
    for rel, n in counts.items():
        parts = rel.split("/", 1)
        key = parts[1] if len(parts) == 2 else rel
        out[key] = out.get(key, 0) + n
    return out


def _fixture_copy(jobdir: Path, check: Check, name: str) -> Path:
    """Where a check's private copy of fixture `name` lives (so opens and fds are its own)."""
    return jobdir / "fixtures" / check.name / name


def _prepare_fixtures(jobdir: Path, checks: list[Check], fixtures: dict[str, str]) -> None:
    for check in checks:
        (jobdir / "fixtures" / check.name).mkdir(parents=True)
        for name in check.fixtures:
            source = Path(fixtures[name])
            target = _fixture_copy(jobdir, check, name)
            if source.is_dir():
                shutil.copytree(source, target)
            else:
                shutil.copy2(source, target)


def run_checks(exercise: Exercise, submission: dict[str, Any] | None, checks: list[Check],
               limits: Limits | None = None, shipped: Path | None = None,
               wrap: Callable[[list[str], list[Path]], list[str]] | None = None
               ) -> list[Verdict]:
    """Run `checks` on the learner's objects in child processes and return their verdicts.

    `submission` maps the exercise's subject names to the learner's objects; alternatively
    `shipped` is a blob `ship` already wrote (the grader ships objects from the learner's
    program and checks them in a process where no learner code ran). `wrap(command,
    writable)` may prefix the child's command, e.g. with a sandbox.
    """
    limits = limits or Limits()
    jobdir = Path(tempfile.mkdtemp(prefix="memcourse-check-"))
    try:
        for sub in ("work", "results", "fixtures"):
            (jobdir / sub).mkdir()
        if shipped is not None:
            shutil.copyfile(shipped, jobdir / "submission.pkl")
            names = list(exercise.subjects)
        else:
            names = sorted(submission or {})
            try:
                ship(submission or {}, jobdir / "submission.pkl")
            except ShipError as e:
                return [_verdict(c, Trace(c.name, outcome="ship_failed",
                                          error={"message": str(e)}), limits, exercise)
                        for c in checks]
        (jobdir / f"{LEARNER_MODULE}.py").write_text(LEARNER_MODULE_SOURCE)
        (jobdir / "names.json").write_text(json.dumps(names))
        needed = sorted({f for c in checks for f in c.fixtures})
        fixtures = exercise.make_fixtures() if needed and exercise.make_fixtures else {}
        _prepare_fixtures(jobdir, checks, fixtures)
        traces: dict[str, Trace] = {}
        pending = list(checks)
        while pending:
            child_traces, stopped_in = _Child(jobdir, pending, limits, wrap).run()
            traces.update(child_traces)
            if stopped_in is not None:
                traces.setdefault(stopped_in, Trace(stopped_in, outcome="limit", limit="crash"))
            done = [c for c in pending if c.name in traces]
            if not done:  # nothing progressed: the child cannot start at all
                for c in pending:
                    traces[c.name] = Trace(c.name, outcome="limit", limit="startup",
                                           output_tail=_Child(jobdir, [c], limits)._tail())
                break
            last = max(pending.index(c) for c in done)
            pending = pending[last + 1:]
        return [_verdict(c, traces[c.name], limits, exercise) for c in checks]
    finally:
        shutil.rmtree(jobdir, ignore_errors=True)


def _limit_message(trace: Trace, limits: Limits, check: Check) -> str:
    where = f" during `{trace.operation}`" if trace.operation else ""
    detail = f" ({trace.limit_detail})" if trace.limit_detail else ""
    return {
        "memory": f"exceeded the {limits.describe_memory()} memory limit{where}{detail}: the "
                  "code holds far more data in memory than this check needs.",
        "time": f"did not finish in {check.timeout_s:.0f} s{where}: look for a loop that never "
                "ends or work repeated for every sample.",
        "cpu": f"used more than {limits.cpu_s} s of CPU time{where}.",
        "output": f"printed more than {limits.output_mib:g} MB of output{where}; remove the "
                  "prints from your loop.",
        "processes": f"started too many processes{where}{detail}; the limit is "
                     f"{limits.processes}.",
        "crash": f"crashed the Python process running it{where}, by {trace.limit_detail}.",
        "exit": f"ended the Python process running it{where} ({trace.limit_detail}), for "
                "example with os._exit() or sys.exit().",
        "startup": "could not be started: the checker's Python process did not come up "
                   "(this is not your fault; tell your instructor).",
    }.get(trace.limit, f"stopped: {trace.limit}{where}.")


def _verdict(check: Check, trace: Trace, limits: Limits, exercise: Exercise) -> Verdict:
    def verdict(status: str, message: str) -> Verdict:
        points = check.points if status == PASSED else 0.0
        return Verdict.from_check(check, status, points, message,
                                  details={"wall_s": round(trace.wall_s, 3)})

    subject = " / ".join(exercise.subjects)
    if trace.outcome == "ship_failed":
        return verdict(FAILED, f"`{subject}` {trace.error['message']}")
    if trace.outcome == "load_failed":
        err = trace.error
        return verdict(FAILED, f"`{subject}` could not be loaded in a fresh Python process "
                               f"({err.get('type')}: {err.get('message')}).")
    if trace.outcome == "not_attempted":
        if exercise.not_attempted:
            return verdict(NOT_ATTEMPTED, exercise.not_attempted.format(op=trace.operation))
        return verdict(NOT_ATTEMPTED, f"Not attempted yet: `{trace.operation}` still raises "
                                      "NotImplementedError. Replace the "
                                      "`raise NotImplementedError()` lines with your code.")
    if trace.outcome == "limit":
        if trace.limit == "startup":
            return verdict(ERROR, _limit_message(trace, limits, check))
        return verdict(LIMIT_EXCEEDED, "Your code " + _limit_message(trace, limits, check))
    if trace.outcome == "checker_error":
        err = trace.error
        return verdict(ERROR, "The checker itself failed (this is not your fault; tell your "
                              f"instructor): {err.get('type')}: {err.get('message')}")
    if trace.outcome == "raised":
        err = trace.error
        if err.get("type") == "MemoryError":
            return verdict(LIMIT_EXCEEDED, f"Your code exceeded the {limits.describe_memory()} "
                                           f"memory limit during `{trace.operation}`: it asked "
                                           f"for more at once (MemoryError: "
                                           f"{err.get('message')}).")
        where = f"`{trace.operation}`" if trace.operation else "Your code"
        return verdict(FAILED, f"{where} raised {err.get('type')}: {err.get('message')}")
    try:
        check.judge(trace)
    except Fail as e:
        message = str(e)
        if check.why:
            message = f"{message} {check.why}"
        return verdict(FAILED, message)
    except Exception as e:  # a bug in the judge: say so rather than blame the learner
        return verdict(ERROR, f"The checker itself failed (tell your instructor): "
                              f"{type(e).__name__}: {e}")
    return verdict(PASSED, check.verifies)
