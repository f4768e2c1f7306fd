"""01_memory_footprint: `tree_pss_mib(pid)`, the PSS of a process and all its descendants, in MiB.

Each check starts a known process tree (a fresh Python that forks children, some sharing a large
array they inherited), calls the learner's function on its root, and compares the answer with the
truth read from /proc/<pid>/smaps_rollup of every process in the tree, before and after the call.
The tree is a separate program, not a fork of the checking process, so nothing the checking
process does changes how its pages are shared.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys

from autograder.engine.check_report import run_exercise
from autograder.engine.spec import Check, Exercise, Fail

SUBJECT = "tree_pss_mib"
MIB = 2**20

# Runs as `python -c TREE_PROGRAM SPEC`. Each process: fill its `shared` array (inherited, and so
# shared, by the children it forks next), fork its children, fill its `private` array (its own),
# print its pid and depth, then wait until stdin closes; it reaps its children before exiting.
TREE_PROGRAM = r"""
import json, os, sys
import numpy as np

def grow(spec, depth):
    shared = np.full(spec.get("shared_mib", 0) * 2**20, 7, np.uint8)
    kids = []
    for child in spec.get("children", []):
        pid = os.fork()
        if pid == 0:
            try:
                grow(child, depth + 1)
            finally:
                os._exit(0)
        kids.append(pid)
    private = np.full(spec.get("private_mib", 0) * 2**20, depth + 1, np.uint8)
    os.write(1, f"{os.getpid()} {depth}\n".encode())
    while os.read(0, 1):  # returns b"" when the checker closes our stdin
        pass
    for pid in kids:
        os.waitpid(pid, 0)
    del shared, private

grow(json.loads(sys.argv[1]), 0)
"""

TREES = {
    # One process, 48 MiB of its own: no sharing, no children.
    "single": {"private_mib": 48},
    # A root and three children that all share 96 MiB the root filled before forking them.
    "shared": {"shared_mib": 96, "private_mib": 2,
               "children": [{"private_mib": 2}, {"private_mib": 2}, {"private_mib": 2}]},
    # Children of children: root -> a -> b -> c, and root -> d; all share 80 MiB.
    "deep": {"shared_mib": 80, "private_mib": 2,
             "children": [{"private_mib": 2,
                           "children": [{"private_mib": 2,
                                         "children": [{"private_mib": 6}]}]},
                          {"private_mib": 2}]},
}


def _count(spec: dict) -> int:
    return 1 + sum(_count(c) for c in spec.get("children", []))


# ----------------------------------------------------------------------------- in the child


def _rollup(pid: int) -> dict[str, int]:
    """Rss, Pss and private (USS) kB of one process, read straight from the kernel."""
    out = {"rss": 0, "pss": 0, "uss": 0}
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            key, _, rest = line.partition(":")
            fields = rest.split()
            if not fields or not fields[0].isdigit():
                continue
            kb = int(fields[0])
            if key == "Rss":
                out["rss"] = kb
            elif key == "Pss":
                out["pss"] = kb
            elif key in ("Private_Clean", "Private_Dirty"):
                out["uss"] += kb
    return out


def _measure(ctx, submission, tree: str) -> dict:
    spec = TREES[tree]
    n = _count(spec)
    proc = subprocess.Popen([sys.executable, "-c", TREE_PROGRAM, json.dumps(spec)],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        members = []
        for _ in range(n):
            line = proc.stdout.readline().split()
            if len(line) != 2:
                raise RuntimeError(f"the test process tree did not start (exit {proc.poll()})")
            members.append({"pid": int(line[0]), "depth": int(line[1])})
        before = [_rollup(m["pid"]) for m in members]
        got = ctx.call(f"{SUBJECT}({proc.pid})", submission[SUBJECT], proc.pid)
        # The same question about the calling process (the tree is among its descendants): an
        # answer that does not change with `pid` shows the function measures something else.
        try:
            own = _plain_number(ctx.call(f"{SUBJECT}(os.getpid())", submission[SUBJECT],
                                         os.getpid()))
        except Exception:
            own = None
        try:
            after = [_rollup(m["pid"]) for m in members]
        except OSError:  # the learner's code ended a process of the tree: judge on `before`
            after = None
    finally:
        proc.stdin.close()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
    return {"tree": tree, "root": proc.pid, "members": members, "before": before,
            "after": after, "got": _plain_number(got), "got_type": type(got).__name__,
            "checker_pid": os.getpid(), "got_for_own_pid": own}


def _plain_number(value):
    """The learner's answer as a float, or None when it is not a number."""
    if isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def act_single_process(ctx, submission):
    return _measure(ctx, submission, "single")


def act_shared_pages(ctx, submission):
    return _measure(ctx, submission, "shared")


def act_grandchildren(ctx, submission):
    return _measure(ctx, submission, "deep")


# ----------------------------------------------------------------------------- in the parent


def _mib(rows: list[dict], key: str, keep=lambda i: True) -> float:
    return sum(r[key] for i, r in enumerate(rows) if keep(i)) / 1024


def _close(got: float, want: float) -> bool:
    """Within 3 MiB or 3 %: PSS drifts a little as other programs map the same libraries."""
    return abs(got - want) <= max(3.0, 0.03 * want)


def _judge(trace, hidden: bool) -> None:
    d = trace.data
    if d["tree"] not in TREES or len(d["members"]) != _count(TREES[d["tree"]]):
        raise RuntimeError("the checker's process tree is not the one it asked for")
    call = f"`{SUBJECT}(pid)`"
    got = d["got"]
    if got is None:
        raise Fail(f"{call} returned a {d['got_type']}, not a number: return the total PSS in "
                   "MiB as a float.")
    truths = [_mib(rows, "pss") for rows in (d["before"], d["after"]) if rows is not None]
    if any(_close(got, t) for t in truths):
        return
    truth = truths[0]
    depth = [m["depth"] for m in d["members"]]
    n = len(depth)
    if _close(got / MIB, truth) or _close(got / 1024, truth):
        unit = "bytes" if _close(got / MIB, truth) else "KiB"
        raise Fail(f"{call} returned {got:.4g}, which looks like a size in {unit}: divide by "
                   f"{'2**20' if unit == 'bytes' else '1024'} to return MiB.")
    if _close(got, _mib(d["before"], "rss")):
        if n == 1:
            raise Fail(f"{call} matches the process's RSS, not its PSS: RSS counts in full "
                       "every page it shares with other programs (Python, NumPy and C "
                       "libraries); PSS counts only its share of them.")
        raise Fail(f"{call} matches the tree's summed RSS, not its PSS: RSS counts each page "
                   f"shared by the {n} processes once per process, so the total over-counts.")
    if n > 1 and _close(got, _mib(d["before"], "uss")):
        raise Fail(f"{call} matches the tree's summed USS: USS leaves out every shared page, so "
                   "the memory the processes share is not counted at all. PSS counts each "
                   "shared page once, split between the processes sharing it.")
    if n > 1 and _close(got, _mib(d["before"], "pss", lambda i: depth[i] == 0)):
        raise Fail(f"{call} counts only the process `pid` itself; add the PSS of all its "
                   "descendants (`psutil.Process(pid).children(recursive=True)`).")
    if max(depth) > 1 and _close(got, _mib(d["before"], "pss", lambda i: depth[i] <= 1)):
        raise Fail(f"{call} counts the process and its direct children but not their "
                   "children: a tree can be deeper than one level, so include every "
                   "descendant.")
    own = d.get("got_for_own_pid")
    if own is not None and _close(got, own):
        raise Fail(f"{call} returned {got:.1f} MiB for the test tree ({truth:.1f} MiB of PSS) and "
                   f"{own:.1f} MiB for the calling process (`os.getpid()`, whose descendants "
                   "include the tree): about the same, so the answer does not depend on `pid`. "
                   "Measure `psutil.Process(pid)`, not `psutil.Process()`.")
    if hidden:
        raise Fail(f"{call} returned {got:.1f} MiB for a {n}-process tree, which is not the "
                   "PSS of the process and all its descendants.")
    what = "the process has" if n == 1 else f"the {n} processes of the tree have"
    raise Fail(f"{call} returned {got:.1f} MiB, but {what} {truth:.1f} MiB of PSS (read from "
               "/proc/<pid>/smaps_rollup).")


def judge_single_process(trace) -> None:
    _judge(trace, hidden=False)


def judge_shared_pages(trace) -> None:
    _judge(trace, hidden=False)


def judge_grandchildren(trace) -> None:
    _judge(trace, hidden=True)


CHECKS = [
    Check("tree_pss_single_process", 1,
          "the PSS of one process without children, in MiB",
          act_single_process, judge_single_process,
          hint="`psutil.Process(pid).memory_full_info().pss` is in bytes; divide by 2**20."),
    Check("tree_pss_shared_pages", 2,
          "a parent and three children sharing 96 MiB: shared pages counted once",
          act_shared_pages, judge_shared_pages,
          hint="Sum `memory_full_info().pss` over `[p, *p.children(recursive=True)]`; RSS "
               "would count the shared array four times, USS not at all."),
    Check("tree_pss_grandchildren", 1,
          "a tree several levels deep: every descendant counted", act_grandchildren,
          judge_grandchildren, hidden=True, extends="shared_pages",
          hint="`children(recursive=True)` returns children, grandchildren and so on; "
               "`children()` alone returns only the first level."),
]

EXERCISE = Exercise(
    name="tree_pss", title="tree_pss_mib", subjects=(SUBJECT,), checks=CHECKS,
    hints=[
        "Start from the one process you are given, find every process below it, and add up "
        "one number per process; convert bytes to MiB at the end.",
        "`psutil.Process(pid).children(recursive=True)` lists children, grandchildren and so "
        "on; `.memory_full_info().pss` is one process's PSS in bytes (section 1 says why PSS and "
        "not RSS). A worker that exits while you look raises `psutil.NoSuchProcess`.",
        "`root = psutil.Process(pid)`; for each `proc` in `[root, *root.children("
        "recursive=True)]` add `proc.memory_full_info().pss` inside `try: ... except "
        "psutil.NoSuchProcess: pass`; return `total / 2**20`.",
    ])


def check_tree_pss(tree_pss_mib, *checks: str) -> None:
    """Check the learner's `tree_pss_mib` on process trees started in a fresh process."""
    __tracebackhide__ = True
    run_exercise(EXERCISE, {SUBJECT: tree_pss_mib}, checks)
