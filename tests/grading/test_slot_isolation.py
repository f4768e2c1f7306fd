"""Does a warm grading slot carry nothing from one submission to the next?

One slot (`jobs=1`) grades two submissions of 03_on_the_fly_loading in turn, both correct. The
first also writes files wherever a sandboxed process may (the sandbox's /tmp and /dev/shm, its
temporary folder, beside its notebook), leaves a detached process running, and changes module
state (torch, memcourse, the environment); it also tries to write above them (the slot's folder,
the grader's hidden folders) and to replace its run folder with a link. The second, graded in the
same slot, looks for every one of them and prints what it found. Afterwards nothing either
wrote is left on disk, and no process either started is running.
"""

from __future__ import annotations

import json
import re

import nbformat
import psutil
import pytest

from autograder.grading.pipeline import grade
from autograder.grading.settings import GradingSettings as Settings
from tests.helpers import ROOT, copy_course

pytestmark = pytest.mark.slow

A = "03_on_the_fly_loading"
MARK = "memcourse_leak"

# Places a sandboxed process might write besides its own folders: the slot's folder above
# them, and the grader's folders that the sandbox hides (an empty tmpfs each).
ELSEWHERE = ("../..", "../../..", "../../../..")

LEAVE = f'''
import os, pathlib, subprocess, sys, tempfile
import torch, memcourse
for where in ("/tmp", "/dev/shm", tempfile.gettempdir(), ".."):
    pathlib.Path(where, "{MARK}.txt").write_text("first")
for where in {ELSEWHERE!r}:
    try:
        pathlib.Path(where, "{MARK}.txt").write_text("first")
    except OSError:
        pass
try:  # replace the slot's run folder with a link, for the next job to write through
    run = pathlib.Path.cwd().parent
    run.rename(run.with_name("{MARK}_moved"))
    run.symlink_to("/nonexistent")
except OSError:
    pass
subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)  # {MARK}"],
                 start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
torch.{MARK} = memcourse.{MARK} = "first"
os.environ["{MARK.upper()}"] = "first"
print("LEFT", sorted(str(p) for where in ("/tmp", "/dev/shm", tempfile.gettempdir(), "..")
                     for p in pathlib.Path(where).glob("{MARK}*")))
'''

LOOK = f'''
import glob, os, tempfile
import psutil, torch, memcourse
found = []
for where in ("/tmp", "/dev/shm", tempfile.gettempdir(), "..", os.path.expanduser("~"),
              *{ELSEWHERE!r}):
    found += glob.glob(os.path.join(where, "**", "{MARK}*"), recursive=True)
found += [m.__name__ for m in (torch, memcourse) if hasattr(m, "{MARK}")]
found += ["environment"] if "{MARK.upper()}" in os.environ else []
found += [f"process {{p.pid}}" for p in psutil.process_iter(["cmdline"])
          if "{MARK}" in " ".join(p.info["cmdline"] or []) and p.pid != os.getpid()]
print("FOUND", sorted(set(found)))
'''


def _submission(extra: str) -> nbformat.NotebookNode:
    nb = nbformat.read(ROOT / "solutions" / A / f"{A}.ipynb", as_version=4)
    answer = next(c for c in nb.cells
                  if c.metadata.get("nbgrader", {}).get("grade_id") == "lazy_npy_dataset")
    nb.cells.insert(nb.cells.index(answer) + 1, nbformat.v4.new_code_cell(extra))
    return nb


def _printed(executed, word: str) -> list[str]:
    for cell in executed.cells:
        for out in cell.get("outputs", []):
            text = out.get("text", "")
            m = re.search(rf"^{word} (.*)$", text, flags=re.M)
            if m:
                return eval(m.group(1))  # a list literal the cell printed  # noqa: S307
    raise AssertionError(f"no cell printed {word}")


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    root = copy_course(tmp_path_factory.mktemp("isolation") / "course")
    subs = root.parent / "submitted"
    for student, extra in (("s1_leaves", LEAVE), ("s2_looks", LOOK)):
        folder = subs / student / A
        folder.mkdir(parents=True)
        nbformat.write(_submission(extra), folder / f"{A}.ipynb")
    out = root.parent / "out"
    settings = Settings(jobs=1, cell_timeout_s=30, notebook_timeout_s=240)
    records = grade(subs, out, assignment=A, root=root, settings=settings, progress=False)
    prepared = root / "grading" / "work" / "prepared"
    executed = {s: nbformat.read(prepared / s / A / A / "executed.ipynb", as_version=4)
                for s in ("s1_leaves", "s2_looks")}
    return {"records": {r["student"]: r for r in records}, "root": root,
            "executed": executed, "prepared": prepared}


def test_both_submissions_get_full_marks(graded):
    """Is each submission graded on its own merit (6 of 6), whatever the first left?"""
    for student in ("s1_leaves", "s2_looks"):
        record = graded["records"][student]
        assert (record["status"], record["score"]) == ("graded", 6.0), record


def test_the_first_submission_left_its_traces(graded):
    """Did the first submission write its four files (so the second had something to find)?"""
    assert len(_printed(graded["executed"]["s1_leaves"], "LEFT")) == 4


def test_the_next_submission_in_the_slot_sees_nothing_of_the_first(graded):
    """No file, process, module attribute or variable of the first reaches the second."""
    assert _printed(graded["executed"]["s2_looks"], "FOUND") == []


def test_nothing_a_submission_wrote_or_started_stays_behind(graded):
    """After grading: no process left running, no slot folder, no learner objects, no traces."""
    running = [p.pid for p in psutil.process_iter(["cmdline"])
               if MARK in " ".join(p.info["cmdline"] or [])]
    assert running == []
    work = graded["root"] / "grading" / "work"
    assert not any((work / "slots").glob("*/*")), "a slot folder was left behind"
    leftovers = [p for p in work.rglob(f"{MARK}*")]
    assert leftovers == []
    kept = {p.name for p in graded["prepared"].rglob("*") if p.is_file()}
    assert kept <= {"prepared.json", "executed.ipynb", "calls.jsonl", "program.log"}, kept
    calls = (graded["prepared"] / "s2_looks" / A / A / "calls.jsonl").read_text()
    assert all("blob" in json.loads(line) for line in calls.splitlines())
