"""Grade a small class with `memcourse grade` and check every status, flag and score.

The class is built from 03_on_the_fly_loading (cheap to run): correct and blank work, crashes,
hangs and memory bombs, every integrity bypass nbgrader is known to fall for, and every kind of
bad input. One grading run serves all the tests; a second run checks that nothing is re-graded.
"""

from __future__ import annotations

import csv
import json
import re

import nbformat
import pytest

from autograder.grading import gradebook
from autograder.grading.pipeline import grade
from autograder.grading.sandbox import bwrap_path
from autograder.grading.settings import GradingSettings as Settings
from tests.helpers import ROOT, copy_course

pytestmark = pytest.mark.slow

A = "03_on_the_fly_loading"
FULL = 6.0  # 4 points for values (values, length, transform, random indices), 2 for memory
# Dividing by 256 keeps the length (1), memory (2) and transform (0.5: that check judges only
# that the transform's result is returned) points.
WRONG_SCORE = 3.5
WRONG_SCALE = ("image = torch.from_numpy(np.load(self.paths[idx])).float() / 255",
               "image = torch.from_numpy(np.load(self.paths[idx])).float() / 256")


def _solution():
    return nbformat.read(ROOT / "solutions" / A / f"{A}.ipynb", as_version=4)


def _release():
    return nbformat.read(ROOT / "notebooks" / A / f"{A}.ipynb", as_version=4)


def _cell(nb, grade_id):
    return next(c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") == grade_id)


def _answer(nb):
    return _cell(nb, "lazy_npy_dataset")


def _wrong():
    """A submission whose dataset divides by 256: WRONG_SCORE points."""
    nb = _release()
    source = re.sub(r"^[ \t]*### (BEGIN|END) SOLUTION[ \t]*\n", "",
                    _answer(_solution()).source, flags=re.M)
    _answer(nb).source = source.replace(*WRONG_SCALE)
    return nb


def _insert_after_answer(nb, source):
    index = nb.cells.index(_answer(nb))
    nb.cells.insert(index + 1, nbformat.v4.new_code_cell(source))
    return nb


def _append_to_answer(nb, source):
    _answer(nb).source += "\n" + source
    return nb


def _build_class(root):
    sol = _solution
    cases = {
        "reference": sol(),
        "blank": _release(),
        "kernel_crash": _insert_after_answer(sol(), "import os\nos._exit(1)"),
        "hang": _insert_after_answer(sol(), "total = sum(range(10**13))"),
        "answer_crash": _append_to_answer(sol(), "import os\nos._exit(1)"),
        "memory_bomb": _append_to_answer(sol(), "waste = np.ones(20_000_000_000, np.uint8)"),
        "print_flood": _insert_after_answer(sol(), "for i in range(10**6):\n    print('x' * 100)"),
        "process_flood": _insert_after_answer(sol(), (
            "import os, time\nfor _ in range(60):\n    if os.fork() == 0:\n"
            "        time.sleep(60)\n        os._exit(0)\ntime.sleep(60)")),
        "skip_tags": _wrong(),
        "input_transformer": _append_to_answer(
            _wrong(), "get_ipython().input_transformers_post.append(lambda lines: ['pass\\n'])"),
        "monkeypatch": _append_to_answer(_wrong(), (
            "import builtins, autograder.engine.check_report as fb\n"
            "import autograder.engine.runner as rn\n"
            "fb.run_exercise = lambda *a, **k: None\n"
            "rn.run_checks = lambda *a, **k: []\n"
            "builtins.AssertionError = Warning")),
        "always_equal": _release(),
        "steals_solution": _release(),
        "edited_tests": _wrong(),
        # Graded as nbgrader's autograde runs it (on `tiny`) only if the kernel and the
        # program both see NBGRADER_EXECUTION; otherwise the answer deletes itself.
        "grader_env": _append_to_answer(sol(), (
            "import os\n"
            "print('grader env:', os.environ.get('NBGRADER_EXECUTION'), H5_PATH.parent.name)\n"
            "if os.environ.get('NBGRADER_EXECUTION') != 'autograde' "
            "or H5_PATH.parent.name != 'tiny':\n"
            "    del LazyNpyDataset")),
    }
    for c in cases["skip_tags"].cells:
        if c.metadata.get("nbgrader", {}).get("grade"):
            c.metadata["tags"] = ["skip-execution"]
    _answer(cases["always_equal"]).source = """
class Same:
    def __eq__(self, other):
        return True

class LazyNpyDataset(Dataset):
    def __init__(self, folder, transform=None):
        self.n = len(list(folder.glob("[0-9]*.npy")))
    def __len__(self):
        return self.n
    def __getitem__(self, idx):
        return Same(), Same()
"""
    stolen = root / "solutions" / A / f"{A}.ipynb"
    _answer(cases["steals_solution"]).source = f"""
class LazyNpyDataset(Dataset):
    def __init__(self, folder, transform=None):
        raise NotImplementedError()
try:  # copy the instructor's solution at run time
    import json
    cells = json.load(open({str(stolen)!r}))["cells"]
    exec("".join(next(c["source"] for c in cells if c["metadata"].get("nbgrader", {{}})
                      .get("grade_id") == "lazy_npy_dataset")))
except Exception as e:
    print("could not steal:", e)
"""
    edited = cases["edited_tests"]
    _cell(edited, "lazy_npy_dataset_values").source = "pass"
    _cell(edited, "lazy_npy_dataset_values").metadata["nbgrader"]["points"] = 100
    edited.cells.remove(_cell(edited, "lazy_npy_dataset_stays_small"))

    subs = root / "submissions"
    for student, nb in cases.items():
        folder = subs / student / A
        folder.mkdir(parents=True)
        nbformat.write(nb, folder / f"{A}.ipynb")
    bad = {"invalid_json": b'{"cells": [', "non_utf8": b"\xff\xfe\x00not utf-8 at all"}
    for student, raw in bad.items():
        (subs / student / A).mkdir(parents=True)
        (subs / student / A / f"{A}.ipynb").write_bytes(raw)
    (subs / "misnamed" / A).mkdir(parents=True)
    nbformat.write(sol(), subs / "misnamed" / A / "my_notebook.ipynb")
    (subs / "empty" / A).mkdir(parents=True)
    (subs / "absent" / "05_hdf5_dataset").mkdir(parents=True)
    (subs / "extra_files" / A).mkdir(parents=True)
    nbformat.write(sol(), subs / "extra_files" / A / f"{A}.ipynb")
    (subs / "extra_files" / A / "notes.txt").write_text("my notes")
    (subs / "extra_files" / A / "autograder.py").write_text("raise SystemExit('shadowed')\n")
    huge = sol()
    huge.cells[1].outputs = [nbformat.v4.new_output("stream", name="stdout",
                                                    text="x" * (25 * 2**20))]
    (subs / "huge_output" / A).mkdir(parents=True)
    nbformat.write(huge, subs / "huge_output" / A / f"{A}.ipynb")
    return subs


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    root = copy_course(tmp_path_factory.mktemp("class") / "course")
    subs = _build_class(root)
    before = {p: p.read_bytes() for p in subs.rglob("*") if p.is_file()}
    out = root.parent / "out"
    settings = Settings(jobs=2, cell_timeout_s=20, notebook_timeout_s=240)
    records = grade(subs, out, assignment=A, root=root, settings=settings, progress=False)
    after = {p: p.read_bytes() for p in subs.rglob("*") if p.is_file()}
    return {"records": {r["student"]: r for r in records}, "out": out, "root": root,
            "subs": subs, "input_unchanged": before == after, "settings": settings}


def _record(graded, student):
    return graded["records"][student]


def test_outputs_exist_and_agree(graded):
    """Are grades.csv, results.json, report.md and feedback written, with one row per record?"""
    out = graded["out"]
    rows = list(csv.DictReader(open(out / "grades.csv")))
    assert [r["student"] for r in rows] == sorted(graded["records"])
    assert set(rows[0]) == {"student", "assignment", "score", "max_score", "status", "flags"}
    results = json.loads((out / "results.json").read_text())
    assert {r["student"] for r in results["submissions"]} == set(graded["records"])
    assert results["unmatched_files"] == []
    report = (out / "report.md").read_text()
    for heading in ("## Needs your attention", "## Scores", "### Score distribution",
                    "## Checks most often missed", "## Other flags"):
        assert heading in report
    assert (out / "feedback" / "reference" / A / f"{A}.html").is_file()


def test_input_is_never_modified(graded):
    """Is every file of the submissions folder byte-for-byte what it was?"""
    assert graded["input_unchanged"]


def test_correct_work_gets_full_marks_and_no_flags(graded):
    """Does the reference solution score full marks, unflagged, with every cell passed?"""
    r = _record(graded, "reference")
    assert (r["status"], r["score"], r["max_score"]) == ("graded", FULL, FULL)
    assert r["flags"] == []
    assert {c["status"] for c in r["cells"]} == {"passed"}
    assert {c["grade_id"] for c in r["cells"]} == {"lazy_npy_dataset_values",
                                                  "lazy_npy_dataset_stays_small"}


def test_kernel_and_program_run_as_nbgrader_autograde_on_tiny(graded):
    """Do the kernel and the graded program see NBGRADER_EXECUTION, and so use `tiny`?"""
    r = _record(graded, "grader_env")
    assert (r["status"], r["score"]) == ("graded", FULL), r["cells"]
    executed = graded["root"] / "grading" / "work" / "prepared" / "grader_env" / A / A / \
        "executed.ipynb"
    assert "grader env: autograde tiny" in executed.read_text()


def test_blank_work_is_not_attempted(graded):
    """Does the untouched release score 0 with every cell reported as not attempted?"""
    r = _record(graded, "blank")
    assert (r["status"], r["score"]) == ("graded", 0.0)
    assert {c["status"] for c in r["cells"]} == {"not_attempted"}


def test_a_kernel_crash_costs_only_its_cell(graded):
    """Does os._exit in one cell keep the credit of the others and flag kernel_died by name?"""
    r = _record(graded, "kernel_crash")
    assert r["score"] == FULL
    assert "kernel_died" in r["flags"]
    assert any("os._exit(1)" in p for p in r["problems"])


def test_a_crash_in_the_answer_cell_costs_what_that_cell_defines(graded):
    """If the answer cell itself kills Python, is the class it defines lost, flagged, and said?"""
    r = _record(graded, "answer_crash")
    assert (r["status"], r["score"]) == ("graded", 0.0)
    assert "kernel_died" in r["flags"]
    assert all("could not be found" in c["message"] for c in r["cells"])


def test_an_uninterruptible_cell_is_stopped_and_flagged(graded):
    """Is a cell that cannot be interrupted killed, flagged timeout, and grading continued?"""
    r = _record(graded, "hang")
    assert r["score"] == FULL
    assert "timeout" in r["flags"]
    assert any("sum(range(10**13))" in p for p in r["problems"])


def test_a_memory_bomb_is_a_labelled_failure_not_a_lost_submission(graded):
    """Does a huge allocation fail its cell cleanly and flag memory_limit, keeping the rest?"""
    r = _record(graded, "memory_bomb")
    assert r["status"] == "graded"
    assert r["score"] == FULL
    assert "memory_limit" in r["flags"]


@pytest.mark.parametrize("student,flag", [("print_flood", "huge_output"),
                                          ("process_flood", "process_limit")])
def test_floods_are_cut_and_flagged(graded, student, flag):
    """Is a print flood cut, or a process flood stopped, keeping the credit already earned?"""
    r = _record(graded, student)
    assert (r["status"], r["score"]) == ("graded", FULL)
    assert flag in r["flags"], r


@pytest.mark.parametrize("student", ["skip_tags", "input_transformer", "monkeypatch"])
def test_integrity_bypasses_earn_nothing(graded, student):
    """Do skip tags, input transformers and monkeypatching leave a wrong answer's score as is?"""
    r = _record(graded, student)
    assert r["score"] == WRONG_SCORE, r
    values = next(c for c in r["cells"] if c["grade_id"] == "lazy_npy_dataset_values")
    assert values["status"] == "failed"
    if student != "monkeypatch":
        assert "tampered" in r["flags"]


def test_an_object_equal_to_everything_fails(graded):
    """Does returning an object whose __eq__ is always True fail the value checks?"""
    r = _record(graded, "always_equal")
    values = next(c for c in r["cells"] if c["grade_id"] == "lazy_npy_dataset_values")
    assert values["status"] == "failed"
    assert values["score"] == 1.0  # only the length check can pass
    assert "is a Same" in values["message"]


@pytest.mark.skipif(bwrap_path() is None, reason="bubblewrap is not installed")
def test_solutions_cannot_be_read_while_grading(graded):
    """Does a submission that copies the solution file at run time still score 0?"""
    r = _record(graded, "steals_solution")
    assert r["score"] == 0.0
    assert "sandbox_unavailable" not in r["flags"]


def test_edited_and_deleted_test_cells_are_restored(graded):
    """Are edited, re-weighted and deleted test cells restored and graded at their own points?"""
    r = _record(graded, "edited_tests")
    assert (r["score"], r["max_score"]) == (WRONG_SCORE, FULL)
    assert "tampered" in r["flags"]
    assert {c["grade_id"] for c in r["cells"]} == {"lazy_npy_dataset_values",
                                                  "lazy_npy_dataset_stays_small"}


@pytest.mark.parametrize("student,words", [("invalid_json", "not valid JSON"),
                                           ("non_utf8", "not UTF-8")])
def test_unreadable_notebooks_are_invalid_with_a_reason(graded, student, words):
    """Is a broken notebook reported invalid with a sentence, not a silent zero?"""
    r = _record(graded, student)
    assert r["status"] == "invalid"
    assert any(words in p for p in r["problems"]), r["problems"]


def test_a_misnamed_notebook_is_graded_and_flagged(graded):
    """Is a lone notebook with the wrong name graded anyway, and flagged?"""
    r = _record(graded, "misnamed")
    assert (r["status"], r["score"]) == ("graded", FULL)
    assert "misnamed" in r["flags"]


@pytest.mark.parametrize("student,flag", [("empty", "empty_submission"), ("absent", None)])
def test_missing_work_is_not_submitted(graded, student, flag):
    """Is an empty folder, or no folder at all, reported as not submitted?"""
    r = _record(graded, student)
    assert r["status"] == "not_submitted"
    assert r["score"] == 0.0
    if flag:
        assert flag in r["flags"]


def test_extra_files_are_ignored_and_flagged(graded):
    """Are extra files (even one named autograder.py) ignored, flagged, and harmless?"""
    r = _record(graded, "extra_files")
    assert (r["status"], r["score"]) == ("graded", FULL)
    assert "extra_files" in r["flags"]


def test_huge_outputs_are_flagged_and_still_graded(graded):
    """Is a notebook with a 25 MB output graded normally, and flagged?"""
    r = _record(graded, "huge_output")
    assert (r["status"], r["score"]) == ("graded", FULL)
    assert "huge_output" in r["flags"]


def test_feedback_shows_messages_but_never_hidden_tests(graded):
    """Does feedback carry the failure message while hidden test code stays out of it?"""
    html = (graded["out"] / "feedback" / "skip_tags" / A / f"{A}.html").read_text()
    assert "divide by" in html or "divided by 256" in html
    assert "random_indices" not in html and "BEGIN HIDDEN" not in html
    assert "transform=flip" not in html
    # the partly passed values cell scored 1 of 4; its bare score is not shown as `Out[7]: 1`
    text = " ".join(re.sub(r"<[^>]+>", " ", html).split())
    assert not re.search(r"Out\[\d+\]: [\d.]+ In \[", text)


def test_the_partial_score_reaches_nbgrader_but_not_the_feedback(graded):
    """Does the autograded notebook keep the partly passed cell's score for nbgrader, while the
    feedback shows only the report?"""
    autograded = graded["root"] / "grading" / "autograded" / "skip_tags" / A / f"{A}.ipynb"
    cell = _cell(nbformat.read(autograded, as_version=4), "lazy_npy_dataset_values")
    assert [o["data"]["text/plain"] for o in cell.outputs
            if o["output_type"] == "execute_result"] == ["1.5"]


def test_rerun_grades_nothing_again_unless_forced(graded):
    """Does a second run reuse every record (same results) without re-running workers?"""
    logs = graded["root"] / "grading" / "work" / "logs"
    stamps = {p: p.stat().st_mtime_ns for p in logs.iterdir()}
    again = grade(graded["subs"], graded["out"], assignment=A, root=graded["root"],
                  settings=graded["settings"], progress=False)
    assert {p: p.stat().st_mtime_ns for p in logs.iterdir()} == stamps
    first = {r["student"]: (r["status"], r["score"]) for r in graded["records"].values()}
    assert {r["student"]: (r["status"], r["score"]) for r in again} == first
    said = (graded["out"] / "report.md").read_text()
    graded_before = sum(r["status"] == "graded" for r in again)
    assert f"({graded_before} of them unchanged since an earlier run" in said, said[:400]


def test_missing_submissions_folder_is_a_clear_error(tmp_path):
    """Does a submissions path that does not exist stop the batch with a sentence?"""
    from autograder.grading.pipeline import GradingError

    with pytest.raises(GradingError, match="does not exist"):
        grade(tmp_path / "nope", tmp_path / "out", root=copy_course(tmp_path / "c"))



def test_an_lms_zip_is_graded_like_a_folder(graded, tmp_path):
    """Is a Canvas-style bulk download (zip) collected by nbgrader and graded the same way?"""
    import zipfile

    archive = tmp_path / "canvas.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr(f"zipper_1001_2001_{A}.ipynb", nbformat.writes(_solution()))
        z.writestr(f"zapper_LATE_1002_2002_{A}-1.ipynb", nbformat.writes(_release()))
    records = grade(archive, tmp_path / "out", assignment=A, root=graded["root"],
                    settings=graded["settings"], progress=False)
    by_student = {r["student"]: r for r in records}
    assert (by_student["zipper"]["status"], by_student["zipper"]["score"]) == ("graded", FULL)
    assert (by_student["zapper"]["status"], by_student["zapper"]["score"]) == ("graded", 0.0)


def test_a_submission_nbgrader_cannot_score_is_an_error_not_a_crashed_batch(tmp_path,
                                                                             monkeypatch):
    """If scoring one submission raises, is it an `error` record while the others are graded?"""
    root = copy_course(tmp_path / "course")
    subs = tmp_path / "subs"
    for student in ("fine", "unlucky"):
        (subs / student / A).mkdir(parents=True)
        nbformat.write(_release(), subs / student / A / f"{A}.ipynb")
    real = gradebook.GradebookWriter.autograde

    def autograde(self, sub, attempts):
        if sub.student == "unlucky":
            raise RuntimeError("database is locked")
        return real(self, sub, attempts)

    monkeypatch.setattr(gradebook.GradebookWriter, "autograde", autograde)
    records = {r["student"]: r for r in grade(subs, tmp_path / "out", assignment=A, root=root,
                                               settings=Settings(jobs=2), progress=False)}
    assert records["fine"]["status"] == "graded"
    assert records["unlucky"]["status"] == "error"
    assert "the grader failed while scoring it in nbgrader (RuntimeError: database is locked)" \
        "; a rerun grades it again" in records["unlucky"]["problems"]
    assert "unlucky" in (tmp_path / "out" / "grades.csv").read_text()
