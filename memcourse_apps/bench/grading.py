"""Section 4: grading throughput. `memcourse grade --jobs 2` against plain `nbgrader autograde`.

Both grade the same submissions of every assignment in `solutions/`, each in its own temporary
copy of the course (never the real course's `grading/` folder), with the course's own
`nbgrader_config.py`:

- plain: nbgrader's `NbGraderAPI.autograde`, one submission after another in one process (the
  way `nbgrader autograde` works, without paying its start-up once per call), then, timed
  apart, `generate_feedback` so the outputs match what `memcourse grade` writes;
- memcourse: `autograder.grading.pipeline.grade(..., jobs=2)`, the function `memcourse grade`
  runs, timed end to end (it regenerates the assignments, grades in sandboxed workers, runs the
  checks outside the kernel, writes the gradebook, feedback and reports).

Submissions are made from the release and solution notebooks: every assignment answered
correctly, then variations (left blank, half answered, a cell that kills the kernel). Where
each worker of `memcourse grade` spent its time (kernel, program re-run, checks outside the
kernel) is read from the phase times in its prepared.json. CPU time is the whole machine's busy
time from /proc/stat: sandboxed processes never reach this process's rusage totals.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import sys
import threading
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import nbformat

from autograder import cells, course
from autograder.grading import build, slots
from autograder.grading.handoffs import Prepared
from memcourse_apps.bench.common import Stat, num, ratio, table

VARIATIONS = ("blank", "half answered", "kernel crash")


# ----------------------------------------------------------------------------- submissions


def _answer_cells(nb) -> list:
    return [c for c in nb.cells if cells.is_answer(c)]


def _answered(solution_cell) -> str:
    """What a student who got it right would have written: the solution without markers."""
    if solution_cell.cell_type == "markdown":
        return cells.without_mark_scheme(solution_cell.source, all_space_after=True).strip()
    return cells.without_solution_marker_lines(solution_cell.source)


def make_submission(release, solution, variation: str):
    """A student notebook: the release with its answer cells filled in as `variation` says."""
    nb = nbformat.from_dict(json.loads(json.dumps(release)))
    if variation == "blank":
        return nb
    answers = {cells.grade_id(c): c for c in _answer_cells(solution)}
    to_fill = _answer_cells(nb)
    fill = to_fill if variation != "half answered" else to_fill[: len(to_fill) // 2]
    for cell in fill:
        gid = cells.grade_id(cell)
        if gid in answers:
            cell.source = _answered(answers[gid])
    if variation == "kernel crash":
        first = next((c for c in to_fill if c.cell_type == "code"),
                     to_fill[0] if to_fill else None)
        at = nb.cells.index(first) + 1 if first is not None else len(nb.cells)
        nb.cells.insert(at, nbformat.v4.new_code_cell("import os\nos._exit(1)  # kills the kernel"))
    return nb


def plan(assignments: list[str], count: int) -> list[tuple[str, str, str]]:
    """(student, assignment, variation) for `count` submissions: every assignment answered
    correctly first, then the variations in turn over the assignments."""
    out = []
    for i in range(count):
        assignment = assignments[i % len(assignments)]
        variation = "correct" if i < len(assignments) else \
            VARIATIONS[(i - len(assignments)) % len(VARIATIONS)]
        out.append((f"s{i + 1:02d}", assignment, variation))
    return out


def write_submissions(root: Path, dest: Path, chosen: list[tuple[str, str, str]]) -> None:
    """Write the planned notebooks in nbgrader's submitted layout under `dest`."""
    for student, assignment, variation in chosen:
        release = nbformat.read(root / "notebooks" / assignment / f"{assignment}.ipynb", 4)
        solution = nbformat.read(root / "solutions" / assignment / f"{assignment}.ipynb", 4)
        folder = dest / student / assignment
        folder.mkdir(parents=True, exist_ok=True)
        nbformat.write(make_submission(release, solution, variation),
                       folder / f"{assignment}.ipynb")


# ----------------------------------------------------------------------------- the two graders


def _cpu_s() -> float:
    """CPU seconds the whole machine has been busy (user + system, all cores), from /proc/stat.

    Per-process accounting (getrusage of waited-for children) misses most of `memcourse
    grade`'s work: sandboxed processes are reaped inside their own PID namespace and never
    reach this process's totals. The bench runs alone, so the machine's busy time is the
    grader's, plus a little background that the load average lines report.
    """
    try:
        with open("/proc/stat") as f:
            fields = [int(x) for x in f.readline().split()[1:]]
        idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
        return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        me, kids = resource.getrusage(resource.RUSAGE_SELF), \
            resource.getrusage(resource.RUSAGE_CHILDREN)
        return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


ZYGOTE = "zygote: imports torch and the course, forks"
# What each kind of process is, from its name (/proc/PID/comm: the zygote names its children
# `mc-<module>`) or its command line; a forked DataLoader worker keeps its parent's name.
KINDS = (
    ("kernel: the notebook's cells", ("mc-warm_kernel",), ("ipykernel_launcher",)),
    ("graded program re-run", ("mc-rerun_answer",), ("-m autograder.grading.rerun_answers",)),
    ("checks (their processes and their DataLoader workers)", ("mc-child",),
     ("-m autograder.engine.child",)),
    ("spawned processes (spawn DataLoader workers, DDP ranks)", (),
     ("multiprocessing.spawn", "multiprocessing.forkserver", "multiprocessing.resource_tracker")),
    (ZYGOTE, (), ("autograder.engine.zygote",)),
    ("grading worker: sanitize, start, watch, clean up", (), ("autograder.grading.worker",)),
    ("kernel start without a zygote (launcher, sandbox)", (),
     ("autograder.grading.kernel_launcher", "bwrap")),
)
THIS_PROCESS = "this process: nbgrader's autograde and feedback, gradebook, reports"
OTHER = "other processes (short-lived ones included)"


class ProcessCpu:
    """CPU seconds by kind of process (`KINDS`) while a grader runs, sampled from /proc.

    Every `interval_s` it reads each process's CPU time (user + system, /proc/PID/stat) and
    keeps the last value seen, less what it had used before the block began; a process that
    lives less than one interval goes unseen, so the total is a little below the machine's
    busy time, and the difference is reported as `OTHER`.
    """

    def __init__(self, interval_s: float = 0.5):
        self.interval_s = interval_s
        self.by_kind: dict[str, float] = {}
        self._seen: dict[tuple[int, int], list] = {}  # (pid, start) -> [kind, first, last]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._tick = os.sysconf("SC_CLK_TCK")

    def __enter__(self) -> ProcessCpu:
        self._sweep(first=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self._sweep()
        totals: dict[str, float] = {}
        for kind, first, last in self._seen.values():
            totals[kind] = totals.get(kind, 0.0) + (last - first)
        self.by_kind = totals

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self._sweep()

    def _kind(self, pid: int) -> str:
        if pid == os.getpid():
            return THIS_PROCESS
        try:
            with open(f"/proc/{pid}/comm") as f:
                comm = f.read().strip()
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmdline = f.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            return OTHER
        # Names first: a forked child keeps its zygote's command line, which lists modules.
        for kind, names, _ in KINDS:
            if names and comm.startswith(names):
                return kind
        for kind, _, commands in KINDS:
            if any(c in cmdline for c in commands):
                return kind
        return OTHER

    def _sweep(self, first: bool = False) -> None:
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit():
                continue
            pid = int(entry.name)
            try:
                with open(f"/proc/{pid}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue
            cpu = (int(fields[11]) + int(fields[12])) / self._tick
            key = (pid, int(fields[19]))
            seen = self._seen.get(key)
            if seen is None:
                self._seen[key] = [self._kind(pid), cpu if first else 0.0, cpu]
            else:
                seen[2] = cpu
                if seen[0] in (ZYGOTE, OTHER):  # a fork not yet named, an exec not yet done
                    seen[0] = self._kind(pid)


def grade_plain(root: Path, subs: Path, chosen: list[tuple[str, str, str]]) -> dict:
    """nbgrader's own autograde, serially, in this process; then its feedback, timed apart."""
    warnings.filterwarnings("ignore", message=".*not in session.*")
    api = course.api(root)
    submitted = root / api.coursedir.submitted_directory
    for student, assignment, _ in chosen:
        dest = submitted / student / assignment
        shutil.rmtree(dest, ignore_errors=True)
        shutil.copytree(subs / student / assignment, dest)
    per, results = [], {}
    cpu = _cpu_s()
    started = time.perf_counter()
    with ProcessCpu() as by_kind:
        for student, assignment, _ in chosen:
            t = time.perf_counter()
            outcome = api.autograde(assignment, student, force=True)
            per.append(time.perf_counter() - t)
            results[student] = {"success": bool(outcome["success"])}
    autograde_s = time.perf_counter() - started
    cpu = _cpu_s() - cpu
    t = time.perf_counter()
    for student, assignment, _ in chosen:
        if results[student]["success"]:
            api.generate_feedback(assignment, student, force=True)
    feedback_s = time.perf_counter() - t
    with api.gradebook as gb:
        for student, assignment, _ in chosen:
            sub = gb.find_submission(assignment, student).to_dict()
            results[student].update(score=sub["score"], max_score=sub["max_score"])
    return {"total_s": autograde_s, "feedback_s": feedback_s, "per_submission_s": per,
            "cpu_s": cpu, "results": results, "cpu_by_kind": by_kind.by_kind}


def _phases(prepared: Path) -> dict | None:
    """Kernel / program re-run / checks seconds of one worker, as its prepared.json says."""
    result = Prepared.load(prepared)
    try:
        seconds = result.seconds
        return {"wall_s": float(result.wall_s), "kernel_s": float(seconds["kernel"]),
                "program_s": float(seconds["program"]), "checks_s": float(seconds["checks"])}
    except (AttributeError, KeyError, TypeError, ValueError):  # no result, or an older one
        return None


def grade_memcourse(root: Path, subs: Path, out: Path, jobs: int,
                    chosen: list[tuple[str, str, str]]) -> dict:
    """`memcourse grade --jobs N` on a copy of the course, end to end."""
    # lazy: the pipeline imports nbgrader (~2 s); only this grading run needs it
    from autograder.grading.pipeline import grade

    shutil.rmtree(out, ignore_errors=True)
    assignments = sorted({a for _, a, _ in chosen})
    cpu = _cpu_s()
    started = time.perf_counter()
    with ProcessCpu() as by_kind:
        records = grade(subs, out, jobs=jobs, root=root, force=True, progress=False,
                        assignment=assignments[0] if len(assignments) == 1 else None)
    total = time.perf_counter() - started
    cpu = _cpu_s() - cpu
    prepared = root / "grading" / "work" / "prepared"
    planned = {(s, a) for s, a, _ in chosen}
    results, phases = {}, {}
    for r in records:
        if (r["student"], r["assignment"]) not in planned:
            continue  # `grade` also lists, as not submitted, assignments a student skipped
        missed = [f"`{c['grade_id']}` {c['status']}: {c.get('message', '')[:300]}"
                  for c in r.get("cells", []) if c.get("status") != "passed"]
        results[r["student"]] = {"status": r["status"], "score": r["score"],
                                 "max_score": r["max_score"], "flags": r["flags"],
                                 "missed": missed}
        p = _phases(prepared / r["student"] / r["assignment"] / r["assignment"])
        if p is not None:
            phases[r["student"]] = p
    return {"total_s": total, "cpu_s": cpu, "results": results, "phases": phases,
            "cpu_by_kind": by_kind.by_kind}


# ----------------------------------------------------------------------------- the section


def run(repo: Path, scratch: Path, count: int, jobs: int, repeats: int,
        assignments: list[str] | None, progress) -> dict:
    """Grade `count` submissions both ways, `repeats` times (alternating which goes first)."""
    base = scratch / "grading"
    shutil.rmtree(base, ignore_errors=True)
    available = course.assignments(repo, "solutions")
    chosen_assignments = [a for a in available if not assignments or a in assignments]
    if not chosen_assignments:
        raise ValueError(f"no such assignment; the course has {', '.join(available)}")
    roots = {"plain": course.copy_course(repo, base / "plain"),
             "memcourse": course.copy_course(repo, base / "memcourse")}
    progress("grading: generating the assignments in the plain copy")
    build.generate_notebooks(roots["plain"], chosen_assignments)
    chosen = plan(chosen_assignments, count)
    subs = base / "submissions"
    write_submissions(roots["plain"], subs, chosen)
    # Datasets and check fixtures exist before either grader starts, so neither pays for them.
    slots.ensure_grading_data()
    plain_runs, mc_runs = [], []
    for r in range(repeats):
        order = ("plain", "memcourse") if r % 2 == 0 else ("memcourse", "plain")
        for which in order:
            how = f", jobs={jobs}" if which == "memcourse" else ", serial"
            progress(f"grading: run {r + 1}/{repeats}, {which} ({len(chosen)} submissions{how})")
            if which == "plain":
                with _stderr_to(base / f"plain-{r + 1}.log"):  # nbgrader's kernel chatter
                    plain_runs.append(grade_plain(roots["plain"], subs, chosen))
            else:
                mc_runs.append(grade_memcourse(roots["memcourse"], subs, base / "out", jobs,
                                               chosen))
    shutil.rmtree(base, ignore_errors=True)
    n = len(chosen)
    plain_total = Stat([p["total_s"] for p in plain_runs])
    mc_total = Stat([m["total_s"] for m in mc_runs])
    plain_full = Stat([p["total_s"] + p["feedback_s"] for p in plain_runs])
    phases = {k: Stat([ph[k] for m in mc_runs for ph in m["phases"].values()])
              for k in ("wall_s", "kernel_s", "program_s", "checks_s")}
    outside = Stat([ph["program_s"] + ph["checks_s"] for m in mc_runs
                    for ph in m["phases"].values()])
    outside_share = Stat([(ph["program_s"] + ph["checks_s"]) / ph["wall_s"]
                          for m in mc_runs for ph in m["phases"].values() if ph["wall_s"] > 0])
    return {
        "n": n, "jobs": jobs, "repeats": repeats, "assignments": chosen_assignments,
        "chosen": chosen, "plain_runs": plain_runs, "mc_runs": mc_runs,
        "plain_per_sub": Stat([t / n for t in plain_total.values]),
        "plain_full_per_sub": Stat([t / n for t in plain_full.values]),
        "mc_per_sub": Stat([t / n for t in mc_total.values]),
        "plain_each": Stat([t for p in plain_runs for t in p["per_submission_s"]]),
        "speedup": ratio(plain_total, mc_total),
        "plain_cpu_per_sub": Stat([p["cpu_s"] / n for p in plain_runs]),
        "mc_cpu_per_sub": Stat([m["cpu_s"] / n for m in mc_runs]),
        "speedup_full": ratio(plain_full, mc_total),
        "phases": phases, "outside": outside, "outside_share": outside_share,
        "cores": os.cpu_count(), "cpu_kinds": _cpu_kinds(plain_runs, mc_runs, n),
    }


def _cpu_kinds(plain_runs: list[dict], mc_runs: list[dict], n: int) -> dict[str, tuple]:
    """CPU seconds per submission of each kind of process, (plain, memcourse) Stats over runs;
    what the sampling missed of the machine's busy time is counted under `OTHER`."""
    def per_run(run: dict) -> dict[str, float]:
        kinds = dict(run.get("cpu_by_kind", {}))
        kinds[OTHER] = kinds.get(OTHER, 0.0) + max(0.0, run["cpu_s"] - sum(kinds.values()))
        return {k: v / n for k, v in kinds.items()}

    plain, mc = [per_run(r) for r in plain_runs], [per_run(r) for r in mc_runs]
    names = [k for k, _, _ in KINDS] + [THIS_PROCESS, OTHER]
    return {k: (Stat([r.get(k, 0.0) for r in plain]), Stat([r.get(k, 0.0) for r in mc]))
            for k in names if any(r.get(k, 0.0) >= 0.05 for r in plain + mc)}


@contextmanager
def _stderr_to(path: Path) -> Iterator[None]:
    """Send file descriptor 2 (this process's and its children's) to `path` for a block."""
    sys.stderr.flush()
    saved = os.dup(2)
    with open(path, "ab") as log:
        os.dup2(log.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)


def _disagreements(res: dict) -> list[str]:
    """Lines naming every submission the two graders scored differently, in any run, with the
    cells memcourse did not pass (a kernel crash is expected to differ: nbgrader drops it)."""
    lines = []
    for k, (plain, mc) in enumerate(zip(res["plain_runs"], res["mc_runs"], strict=False)):
        for student, assignment, variation in res["chosen"]:
            p, m = plain["results"].get(student, {}), mc["results"].get(student, {})
            if p.get("score") is None or m.get("score") is None or variation == "kernel crash":
                continue
            if abs(float(p["score"]) - float(m["score"])) > 1e-9:
                missed = "; ".join(m.get("missed", [])) or "no cell reported as missed"
                lines.append(f"- run {k + 1}, {student} ({assignment}, {variation}): plain "
                             f"{_score(p['score'])}, memcourse {_score(m['score'])}. Cells "
                             f"memcourse did not pass: {missed}")
    if not lines:
        return ["", "Both graders gave every submission the same score (the kernel crash "
                "aside)."]
    return ["", "**The graders disagreed** on these submissions (same notebook, same checks):",
            "", *lines]


def _busy(res: dict, which: str) -> float:
    """Busy CPU seconds over the wall seconds of all the machine's cores (median runs)."""
    cores = res["cores"] or 1
    if which == "plain":
        return res["plain_cpu_per_sub"].median / (res["plain_per_sub"].median * cores)
    return res["mc_cpu_per_sub"].median / (res["mc_per_sub"].median * cores)


CLASSES = (300 * 7, 3000 * 7)  # submissions: 300 and 3,000 students, 7 assignments each
MACHINES = (("this machine (the bench's laptop-sized run)", None),
            ("one 32-core server, `--jobs 32`", 32),
            ("a Dask cluster of 10 workers × 8 cores", 80),
            ("a Dask cluster of 50 workers × 8 cores", 400))


def capacity(res: dict) -> list[tuple[str, ...]]:
    """Hours to grade `CLASSES`, extrapolated from this run's measured costs (see `markdown`).

    Slots each keep a core busy with the measured CPU per submission; the single gradebook
    writer (`THIS_PROCESS`) scores one submission after another, so a class never goes faster
    than its measured seconds per submission, however many workers prepare them.
    """
    cpu = res["mc_cpu_per_sub"].median
    busy = _busy(res, "mc")
    writer = res["cpu_kinds"].get(THIS_PROCESS, (Stat(), Stat([0.0])))[1].median
    rows = []
    for label, cores in MACHINES:
        cells = []
        for n in CLASSES:
            if cores is None:
                seconds = n * res["mc_per_sub"].median
            else:
                seconds = max(n * cpu / (cores * busy), n * writer)
            cells.append(f"{seconds / 3600:.1f} h" if seconds >= 3600 else
                         f"{seconds / 60:.0f} min")
        rows.append((label, *cells))
    return rows


def _goal(res: dict) -> str:
    """One sentence: is issue 15's goal met, and by how much each part of it."""
    speed = res["speedup"].median
    cpu = ratio(res["mc_cpu_per_sub"], res["plain_cpu_per_sub"]).median
    parts = [f"speed {'met' if speed >= 2.0 else 'not met'} ({speed:.2f}x of 2.0x)",
             f"CPU {'met' if cpu <= 1.0 else 'not met'} ({cpu:.2f} of at most 1.00)"]
    cores = res["cores"] or 1
    bound = res["plain_per_sub"].median / (res["mc_cpu_per_sub"].median / cores)
    return ("; ".join(parts) + f". The bound on {cores} cores, were they busy all the time with "
            f"memcourse's measured CPU per submission, is {bound:.2f}x; they were "
            f"{_busy(res, 'mc'):.0%} busy (the first submissions wait for the slots' zygotes to "
            "import torch, the last ones leave a core idle, and the gradebook writer shares the "
            "cores with the slots).")


def _score(value) -> str:
    return "–" if value is None else num(float(value), 3)


def markdown(res: dict) -> str:
    last_plain, last_mc = res["plain_runs"][-1], res["mc_runs"][-1]
    rows = []
    for k, (student, assignment, variation) in enumerate(res["chosen"]):
        p = last_plain["results"].get(student, {})
        m = last_mc["results"].get(student, {})
        ph = last_mc["phases"].get(student)
        plain_cell = _score(p.get("score")) if p.get("success") else \
            f"{_score(p.get('score'))} (autograde failed)"
        mc_cell = f"{_score(m.get('score'))}" + (f" ({', '.join(m['flags'])})"
                                                 if m.get("flags") else "")
        rows.append((student, assignment, variation, _score(p.get("max_score")),
                     num(last_plain["per_submission_s"][k]), plain_cell,
                     num(ph["wall_s"]) if ph else "–", mc_cell))
    ph = res["phases"]
    phase_rows = [
        ("kernel: the notebook in a sandboxed kernel (checks skipped there)",
         ph["kernel_s"].fmt(), ratio(ph["kernel_s"], ph["wall_s"]).fmt(2)),
        ("program: setup and answer cells re-run in a fresh sandboxed process",
         ph["program_s"].fmt(), ratio(ph["program_s"], ph["wall_s"]).fmt(2)),
        ("checks: run outside the kernel on the shipped objects",
         ph["checks_s"].fmt(), ratio(ph["checks_s"], ph["wall_s"]).fmt(2)),
        ("whole worker", ph["wall_s"].fmt(), "1"),
    ]
    spread = ("One run of each grader (each takes minutes), so the batch figures have no "
              "spread over runs; `memcourse bench --only grading --grading-repeats 3` gives one."
              if res["repeats"] == 1 else
              f"Median of {res['repeats']} runs of each grader (lowest–highest), alternating "
              "which goes first.")
    lines = [
        "## 4. Grading throughput",
        "",
        f"{res['n']} submissions of the {len(res['assignments'])} assignments "
        f"({', '.join(res['assignments'])}): each assignment answered correctly (the release "
        "notebook with the solution's answers), then variations (blank, half answered, a cell "
        "that kills the kernel). Each grader works in its own temporary copy of the course "
        f"with the course's nbgrader_config.py, on {res['cores']} cores. {spread}",
        "",
        table(["grader (what is compared)", "seconds per submission", "batch seconds"], [
            ("plain nbgrader: `NbGraderAPI.autograde`, serial, one process",
             res["plain_per_sub"].fmt(),
             Stat([p["total_s"] for p in res["plain_runs"]]).fmt()),
            ("plain nbgrader: autograde + generate_feedback (the outputs memcourse writes)",
             res["plain_full_per_sub"].fmt(),
             Stat([p["total_s"] + p["feedback_s"] for p in res["plain_runs"]]).fmt()),
            (f"`memcourse grade --jobs {res['jobs']}` (end to end: regenerate, sandboxed "
             "workers, checks outside the kernel, gradebook, feedback, reports)",
             res["mc_per_sub"].fmt(), Stat([m["total_s"] for m in res["mc_runs"]]).fmt()),
        ]),
        "",
        f"Plain nbgrader, one submission at a time: {res['plain_each'].fmt()} s per "
        "submission (median over submissions, lowest–highest).",
        "",
        "**CPU seconds per submission** (the whole machine's busy time, user + system on all "
        "cores, from /proc/stat while each grader ran alone; per-process accounting would miss "
        "the sandboxed processes): plain autograde "
        f"{res['plain_cpu_per_sub'].fmt()}, `memcourse grade` {res['mc_cpu_per_sub'].fmt()}: "
        f"{ratio(res['mc_cpu_per_sub'], res['plain_cpu_per_sub']).fmt(2)} times as much. "
        f"Plain nbgrader kept the machine's {res['cores']} cores {_busy(res, 'plain'):.0%} busy "
        "(one notebook at a time; much of a kernel's time is waiting: start-up, sleeps, worker "
        f"processes); `memcourse grade --jobs {res['jobs']}` kept them "
        f"{_busy(res, 'mc'):.0%} busy.",
        "",
        f"**Goal** (issue 15): at least 2.0x plain nbgrader's speed with no more CPU per "
        f"submission. Measured: {res['speedup'].median:.2f}x, CPU ratio "
        f"{ratio(res['mc_cpu_per_sub'], res['plain_cpu_per_sub']).median:.2f}: "
        f"{_goal(res)}",
        "",
        "**Where the CPU goes**, per submission, by kind of process (sampled from /proc every "
        "0.5 s, median over runs, lowest–highest). Each memcourse slot is a worker process "
        "reused for every submission it grades, with one sandbox and one zygote that imported "
        "torch and the course once; the kernel, the graded program and every check process are "
        "forked from that zygote, so a submission pays for none of those imports, where plain "
        "nbgrader's kernel imports them, and the kernel's checks start a zygote of their own. "
        "Between two submissions the slot kills what the last one left running and empties its "
        "folders, /tmp and /dev/shm (tests/grading/test_slot_isolation.py).",
        "",
        table(["kind of process", "plain CPU s", "memcourse CPU s"],
              [(kind, plain.fmt(), mc.fmt()) for kind, (plain, mc)
               in res["cpu_kinds"].items()]),
        "",
        "**Capacity**: how long a class takes, extrapolated from this run: "
        f"{num(res['mc_cpu_per_sub'].median)} CPU s per submission with the cores "
        f"{_busy(res, 'mc'):.0%} busy, and the gradebook writer's "
        f"{num(res['cpu_kinds'].get(THIS_PROCESS, (Stat(), Stat([0.0])))[1].median)} s per "
        "submission, which no number of workers shortens (it scores one submission at a "
        "time). Submissions of the mix above; a class's own notebooks may cost more or less.",
        "",
        table(["where", *(f"{n // 7:,} students × 7 assignments" for n in CLASSES)],
              capacity(res)),
        "",
        "**Where a `memcourse grade` worker spends its time** (per submission, median over "
        "submissions, lowest–highest; from the phase times in each worker's prepared.json). "
        "Plain nbgrader runs the checks inside the kernel, so the *added* cost of checking "
        "outside it is the program re-run plus whatever the checks cost more out there; "
        f"together the two out-of-kernel phases take {res['outside'].fmt()} s per submission, "
        f"{res['outside_share'].fmt(2)} of the worker's time.",
        "",
        table(["phase", "seconds", "share of the worker"], phase_rows),
        "",
        "Scores, last run. *max* includes points for written answers graded by hand in "
        "formgrader, which neither grader gives; plain's *autograde failed* means nbgrader "
        "removed the submission and its export shows 0:",
        "",
        table(["student", "assignment", "submission", "max", "plain s", "plain score",
               "memcourse worker s", "memcourse score (flags)"], rows),
        *_disagreements(res),
        "",
        f"grading speed-up vs plain nbgrader: {res['speedup'].median:.1f}x",
    ]
    lines.append("")
    runs = (f"Median of {res['repeats']} runs: "
            f"{', '.join(f'{v:.1f}x' for v in res['speedup'].values)}. "
            if res["repeats"] > 1 else "")
    lines.append(f"{runs}Against plain autograde + generate_feedback: "
                 f"{res['speedup_full'].median:.1f}x.")
    return "\n".join(lines)


def plot(res: dict, path: Path) -> None:
    # lazy: matplotlib (~0.7 s) only to plot; use("Agg") at import would change others' backend
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # lazy: must come after matplotlib.use("Agg")

    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 3.4), gridspec_kw={"width_ratios": [1, 1.3]})
    labels = ["plain\nautograde", "plain autograde\n+ feedback", f"memcourse\n--jobs {res['jobs']}"]
    stats = [res["plain_per_sub"], res["plain_full_per_sub"], res["mc_per_sub"]]
    med = [s.median for s in stats]
    err = [[m - s.low for m, s in zip(med, stats, strict=True)],
           [s.high - m for m, s in zip(med, stats, strict=True)]]
    bars = a1.bar(labels, med, yerr=err, capsize=3, color=["tab:gray", "tab:gray", "tab:green"])
    a1.bar_label(bars, fmt="%.1f")
    a1.set_ylabel("seconds per submission")
    a1.set_title(f"speed-up vs plain: {res['speedup'].median:.1f}x")
    ph = res["phases"]
    names = ["kernel", "program re-run", "checks outside"]
    keys = ["kernel_s", "program_s", "checks_s"]
    a2.barh(names, [ph[k].median for k in keys],
            xerr=[[ph[k].median - ph[k].low for k in keys],
                  [ph[k].high - ph[k].median for k in keys]], capsize=3)
    a2.invert_yaxis()
    a2.set_xlabel("seconds per submission (median over submissions)")
    a2.set_title("memcourse worker phases")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
