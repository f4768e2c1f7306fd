"""Do the tree_pss_mib checks fail wrong implementations and pass other correct ones?"""

from __future__ import annotations

import pytest

from autograder.exercises.tree_pss import EXERCISE
from tests.exercises.catalogue import aimed, define, describe, failing, verdicts

pytestmark = pytest.mark.slow

REFERENCE = """
import psutil

def tree_pss_mib(pid):
    root = psutil.Process(pid)
    total = 0
    for proc in [root, *root.children(recursive=True)]:
        try:
            total += proc.memory_full_info().pss
        except psutil.NoSuchProcess:
            pass
    return total / 2**20
"""


def _variant(old: str, new: str) -> str:
    assert old in REFERENCE, old
    return REFERENCE.replace(old, new)


# Each wrong implementation has one defect, and the check expected to catch it.
WRONG = {
    "sums_rss": (_variant("memory_full_info().pss", "memory_info().rss"),
                 "tree_pss_shared_pages"),
    "sums_uss": (_variant("memory_full_info().pss", "memory_full_info().uss"),
                 "tree_pss_shared_pages"),
    "root_only": (_variant("[root, *root.children(recursive=True)]", "[root]"),
                  "tree_pss_shared_pages"),
    "direct_children_only": (_variant("children(recursive=True)", "children()"),
                             "tree_pss_grandchildren"),
    "returns_bytes": (_variant("return total / 2**20", "return total"),
                      "tree_pss_single_process"),
    "measures_itself": (_variant("root = psutil.Process(pid)", "root = psutil.Process()"),
                        "tree_pss_single_process"),
    "returns_kib": (_variant("return total / 2**20", "return total / 1024"),
                    "tree_pss_single_process"),
    "returns_text": (_variant("return total / 2**20", "return f'{total / 2**20:.1f} MiB'"),
                     "tree_pss_single_process"),
}

SUMS_VMS = _variant("memory_full_info().pss", "memory_info().vms")

CORRECT = {
    "reference": REFERENCE,
    # Straight from /proc: descendants through the kernel's `children` lists, PSS from
    # smaps_rollup (kB), walked with an explicit stack instead of psutil.
    "proc_files": """
import os

def _children(pid):
    kids = []
    for tid in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{tid}/children") as f:
            kids += [int(x) for x in f.read().split()]
    return kids

def tree_pss_mib(pid):
    total_kb, stack = 0, [pid]
    while stack:
        p = stack.pop()
        try:
            with open(f"/proc/{p}/smaps_rollup") as f:
                total_kb += next(int(line.split()[1]) for line in f if line.startswith("Pss:"))
            stack += _children(p)
        except FileNotFoundError:
            continue
    return total_kb / 1024
""",
    # Builds the tree from every process's parent id, then recurses; returns a NumPy float.
    "parent_map_recursive": """
import numpy as np
import psutil

def tree_pss_mib(pid):
    by_parent = {}
    for proc in psutil.process_iter(["pid", "ppid"]):
        by_parent.setdefault(proc.info["ppid"], []).append(proc.info["pid"])

    def pss(p):
        own = psutil.Process(p).memory_full_info().pss
        return own + sum(pss(child) for child in by_parent.get(p, []))

    return np.float64(pss(pid)) / np.float64(1024 * 1024)
""",
}


@pytest.mark.parametrize("name", sorted(WRONG))
def test_wrong_implementation_loses_points(name):
    """Is each defective tree_pss_mib caught, by the check aimed at its defect?"""
    source, expected = WRONG[name]
    results = verdicts(EXERCISE, {"tree_pss_mib": define(source, "tree_pss_mib")}, aimed(expected))
    assert expected in failing(results), describe(results)
    assert sum(v.points for v in results.values()) < sum(c.points for c in EXERCISE.checks)


@pytest.mark.parametrize("name", sorted(CORRECT))
def test_correct_implementation_gets_full_marks(name):
    """Does every correct tree_pss_mib, however written, pass every check?"""
    results = verdicts(EXERCISE, {"tree_pss_mib": define(CORRECT[name], "tree_pss_mib")})
    assert not failing(results), describe(results)


def test_failure_messages_say_what_was_seen():
    """Do the visible checks name the mistake (summed RSS, USS) instead of only 'wrong'?"""
    rss = verdicts(EXERCISE, {"tree_pss_mib": define(WRONG["sums_rss"][0], "tree_pss_mib")},
                   ["shared_pages"])
    assert "summed RSS" in rss["tree_pss_shared_pages"].message, describe(rss)
    uss = verdicts(EXERCISE, {"tree_pss_mib": define(WRONG["sums_uss"][0], "tree_pss_mib")},
                   ["shared_pages"])
    assert "USS" in uss["tree_pss_shared_pages"].message, describe(uss)


@pytest.mark.parametrize("name,says,avoids", [
    ("measures_itself", "does not depend on `pid`", ""),
    # A wrong number that is not the calling process's PSS is not blamed on os.getpid().
    ("sums_vms", "MiB of PSS", "os.getpid()"),
])
def test_fallback_message_says_what_was_seen(name, says, avoids):
    """Is `os.getpid()` named only when the answer is the calling process's PSS?"""
    source = WRONG[name][0] if name in WRONG else SUMS_VMS
    results = verdicts(EXERCISE, {"tree_pss_mib": define(source, "tree_pss_mib")},
                       ["single_process"])
    message = results["tree_pss_single_process"].message
    assert says in message and (not avoids or avoids not in message), describe(results)


def test_stub_is_not_attempted():
    """Is the release stub reported as not attempted, not as wrong?"""
    stub = define("""
def tree_pss_mib(pid):
    raise NotImplementedError()
""", "tree_pss_mib")
    results = verdicts(EXERCISE, {"tree_pss_mib": stub})
    assert {v.status for v in results.values()} == {"not_attempted"}, describe(results)
