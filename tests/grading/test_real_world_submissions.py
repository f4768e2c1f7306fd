"""Submissions shaped like the ones instructors really receive are graded right, and named.

The field cases (tests/fixtures/field_cases/, one per kind of fault found in public bug reports)
and variants of each kind written here are graded with `memcourse grade` in a copy of the
course: schema nits that Jupyter tolerates, copied and stripped nbgrader cells, renamed files
and folders, several notebooks for one assignment, limits hit in a cell the learner added, and
every notebook that is graded nowhere listed. A second run grades the field cases' LMS zip, and
a third an assignment an instructor adds: several notebooks of plain nbgrader asserts.
"""

from __future__ import annotations

import copy
import csv
import json
import re
import shutil
import zipfile

import nbformat
import pytest

from autograder.engine.limits import Limits
from autograder.grading.handoffs import Job
from autograder.grading.pipeline import grade
from autograder.grading.settings import GradingSettings as Settings
from tests.helpers import ROOT, copy_course

pytestmark = pytest.mark.slow

FIELD = ROOT / "tests" / "fixtures" / "field_cases"
H = "05_hdf5_dataset"
L = "03_on_the_fly_loading"
FULL_L = 6.0
SETTINGS = Settings(jobs=2, cell_timeout_s=20, notebook_timeout_s=240)


def _nb(tree, a):
    return nbformat.read(ROOT / tree / a / f"{a}.ipynb", as_version=4)


def _cell(nb, gid):
    return next(c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") == gid)


def _wrong_l():
    """03 answered with a dataset that divides by 256: 3 of 6 points."""
    nb = _nb("solutions", L)
    _cell(nb, "lazy_npy_dataset").source = _cell(nb, "lazy_npy_dataset").source.replace(
        ".float() / 255", ".float() / 256")
    return nb


def _uses_my_load(nb):
    """The reference answer, reading its labels through a helper `my_load` defined elsewhere."""
    answer = _cell(nb, "lazy_npy_dataset")
    answer.source = answer.source.replace('np.load(folder / "labels.npy")',
                                          'my_load(folder / "labels.npy")')
    assert "my_load(" in answer.source
    return nb


def _write(path, nb):
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, path)


def _after_answer(nb, source):
    nb.cells.insert(nb.cells.index(_cell(nb, "lazy_npy_dataset")) + 1,
                    nbformat.v4.new_code_cell(source))
    return nb


def _build_class(subs):
    for case in ("copied-test-cell", "editor-extra-cell-keys",
                 "untouched-release-plus-worked-copy", "whole-file-read-in-init"):
        shutil.copytree(FIELD / case, subs / case)
    sol, rel = (lambda: _nb("solutions", L)), (lambda: _nb("notebooks", L))
    # Schema nits: nbformat 4.4 with cell ids, markdown cells with outputs, no cell metadata.
    v44 = json.loads(nbformat.writes(sol()))
    v44["nbformat_minor"] = 4
    for cell in v44["cells"]:
        if cell["cell_type"] == "markdown":
            cell["outputs"], cell["execution_count"] = [], None
        if cell["cell_type"] == "code" and "nbgrader" not in cell["metadata"]:
            del cell["metadata"]
    (subs / "v_schema_nits" / L).mkdir(parents=True)
    (subs / "v_schema_nits" / L / f"{L}.ipynb").write_text(json.dumps(v44))
    bad = json.loads(nbformat.writes(sol()))
    bad["cells"][3]["cell_type"] = "codee"
    (subs / "v_bad_cell_type" / L).mkdir(parents=True)
    (subs / "v_bad_cell_type" / L / f"{L}.ipynb").write_text(json.dumps(bad))
    # Copied and stripped nbgrader cells.
    copied = sol()
    stub = copy.deepcopy(_cell(rel(), "lazy_npy_dataset"))
    copied.cells.insert(copied.cells.index(_cell(copied, "lazy_npy_dataset")), stub)
    _write(subs / "v_copied_answer" / L / f"{L}.ipynb", copied)
    stripped = sol()
    for cell in stripped.cells:
        cell.metadata = {}
    _write(subs / "v_stripped_metadata" / L / f"{L}.ipynb", stripped)
    deleted = sol()
    deleted.cells = [c for c in deleted.cells if c.metadata.get("nbgrader", {}).get("grade_id")
                     not in ("eager_dataset", "lazy_npy_dataset_stays_small")]
    _write(subs / "v_deleted_cells" / L / f"{L}.ipynb", deleted)
    # Learner code in a copy of a read-only cell, in a cell of its own, and an answer cell
    # that carries a test cell's grading metadata.
    helper_copy = _uses_my_load(sol())
    setup = copy.deepcopy(_cell(helper_copy, "setup"))
    setup.source += "\n\ndef my_load(path):\n    return np.load(path)\n"
    helper_copy.cells.insert(helper_copy.cells.index(_cell(helper_copy, "lazy_npy_dataset")),
                             setup)
    _write(subs / "v_helper_in_setup_copy" / L / f"{L}.ipynb", helper_copy)
    own_cell = _uses_my_load(sol())
    own_cell.cells.insert(own_cell.cells.index(_cell(own_cell, "lazy_npy_dataset")),
                          nbformat.v4.new_code_cell("def my_load(path):\n"
                                                    "    return np.load(path)"))
    _write(subs / "v_helper_in_own_cell" / L / f"{L}.ipynb", own_cell)
    wrong_meta = sol()
    _cell(wrong_meta, "lazy_npy_dataset").metadata["nbgrader"] = copy.deepcopy(
        _cell(wrong_meta, "lazy_npy_dataset_values").metadata["nbgrader"])
    _write(subs / "v_answer_with_test_metadata" / L / f"{L}.ipynb", wrong_meta)
    # Renamed files and folders; several notebooks for one assignment.
    _write(subs / "v_renamed" / "03_On_The_Fly_Loading" / f"Copy of {L}.ipynb", sol())
    _write(subs / "v_release_plus_copy" / L / f"{L}.ipynb", rel())
    _write(subs / "v_release_plus_copy" / L / f"{L} (1).ipynb", sol())
    _write(subs / "v_two_answers" / L / f"{L}.ipynb", _wrong_l())
    _write(subs / "v_two_answers" / L / f"{L}-Copy1.ipynb", sol())
    _write(subs / "v_unanswered" / L / f"{L}.ipynb", rel())
    # Limits hit in a cell the learner added.
    _write(subs / "v_endless_loop" / L / f"{L}.ipynb",
           _after_answer(sol(), "while True:\n    pass"))
    _write(subs / "v_huge_allocation" / L / f"{L}.ipynb",
           _after_answer(sol(), "waste = np.ones(20_000_000_000, np.uint8)"))
    # Notebooks that belong nowhere.
    _write(subs / "stray.ipynb", rel())
    _write(subs / "v_unanswered" / "homework5" / "work.ipynb", rel())
    _write(subs / "v_unanswered" / L / "scratchpad.ipynb", rel())
    return subs


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    root = copy_course(tmp_path_factory.mktemp("class") / "course")
    subs = _build_class(root.parent / "submissions")
    # A learner worked in this clone's notebooks/, and the instructor's solutions/ hold outputs.
    mine = root / "notebooks" / L / f"{L}.ipynb"
    _write(mine, _after_answer(_nb("notebooks", L), "print('my own exploration')"))
    (mine.parent / "scratch").mkdir(exist_ok=True)
    (mine.parent / "scratch" / "notes.txt").write_text("mine")
    unclean = _nb("solutions", L)
    unclean.cells[1].outputs = [nbformat.v4.new_output("stream", text="instructor's run\n")]
    _write(root / "solutions" / L / f"{L}.ipynb", unclean)
    watched = [subs, root / "notebooks", root / "solutions"]
    before = {p: p.read_bytes() for d in watched for p in d.rglob("*") if p.is_file()}
    out = root.parent / "out"
    records = grade(subs, out, root=root, settings=SETTINGS, progress=False)
    after = {p: p.read_bytes() for d in watched for p in d.rglob("*") if p.is_file()}
    keep = {(r["student"], r["assignment"]): r for r in records
            if r["status"] != "not_submitted"}
    return {"records": keep, "out": out, "root": root, "unchanged": before == after,
            "results": json.loads((out / "results.json").read_text()),
            "report": (out / "report.md").read_text()}


def _rec(graded, student, assignment=L):
    return graded["records"][student, assignment]


def _cells(record):
    return {c["grade_id"]: c for c in record["cells"]}


def test_nothing_is_modified_not_the_input_nor_a_learners_work(graded):
    """Is every input file, every file in notebooks/ (a learner's edits and scratch/ files)
    and in solutions/ (outputs included) byte-for-byte what it was after grading?"""
    assert graded["unchanged"]
    assert "my own exploration" in (graded["root"] / "notebooks" / L / f"{L}.ipynb").read_text()


def test_a_failing_grader_step_is_one_sentence_and_keeps_the_credit(graded, tmp_path):
    """When nbgrader's sanitizing raises on a notebook, is the step named in a whole sentence
    while the kernel, the program and the checks still run and score?"""
    import subprocess
    import sys

    nb = _nb("solutions", L)
    _cell(nb, "lazy_npy_dataset_stays_small").metadata["nbgrader"]["points"] = "two"
    _write(tmp_path / "in" / f"{L}.ipynb", nb)
    root = graded["root"]
    job = Job(student="s", assignment=L, notebook=L,
              submitted_notebook=str(tmp_path / "in" / f"{L}.ipynb"),
              submission_dir=str(tmp_path / "in"), release_notebook=str(
                  root / "grading" / "work" / "release" / "release" / L / f"{L}.ipynb"),
              course_root=str(root), db_url=f"sqlite:///{root / 'grading' / 'gradebook.db'}",
              outdir=str(tmp_path / "out"), hide=[str(root / "solutions")],
              cell_timeout_s=60, notebook_timeout_s=240,
              kernel_limits=Limits(memory_mib=3072, address_space_mib=8192, cpu_s=600,
                                   file_size_mib=1024),
              check_limits=Limits())
    job.write(tmp_path / "job.json")
    subprocess.run([sys.executable, "-m", "autograder.grading.worker",
                    str(tmp_path / "job.json")], cwd=ROOT, check=True, capture_output=True,
                   timeout=600)
    prepared = json.loads((tmp_path / "out" / "prepared.json").read_text())
    assert prepared["status"] == "prepared"
    problem = next(p for p in prepared["problems"] if "sanitizing" in p)
    assert problem.startswith("the grader failed while sanitizing the notebook (ValueError")
    assert problem.endswith("could not convert string to float: 'two'); the other steps went "
                            "on, and the full traceback is in the worker's log under "
                            "grading/work/logs/")
    verdicts = [v for call in prepared["calls"] for v in call["verdicts"]]
    assert verdicts and all(v["status"] == "passed" for v in verdicts)


@pytest.mark.parametrize("student,assignment,flags,words", [
    ("copied-test-cell", H, {"tampered"}, "duplicated cell `hdf5_dataset_returns_samples`"),
    ("editor-extra-cell-keys", H, {"repaired"}, "removed `outputs` from"),
    ("v_schema_nits", L, {"repaired"}, "repaired as Jupyter reads it"),
    ("v_copied_answer", L, {"tampered"}, "duplicated cell `lazy_npy_dataset`"),
    ("v_stripped_metadata", L, {"tampered"}, "`lazy_npy_dataset` had lost its grading metadata"),
    ("v_deleted_cells", L, {"tampered"}, "it was put back from the release"),
    ("v_renamed", L, {"misnamed"}, "Copy of 03_on_the_fly_loading.ipynb"),
    ("v_helper_in_setup_copy", L, {"tampered"}, "holding other code ran as ordinary cells"),
    ("v_helper_in_own_cell", L, set(), ""),
    ("v_answer_with_test_metadata", L, {"tampered"},
     "`lazy_npy_dataset` had lost its grading metadata"),
])
def test_correct_work_with_a_quirk_gets_full_marks_and_a_named_flag(graded, student,
                                                                    assignment, flags, words):
    """Does a correct answer in an odd notebook keep every point, flagged with the reason?"""
    r = _rec(graded, student, assignment)
    assert (r["status"], r["score"]) == ("graded", r["max_score"]), r
    assert flags <= set(r["flags"]), r["flags"]
    assert "unanswered" not in r["flags"]
    if words:
        assert any(words in p for p in r["problems"]), r["problems"]
    else:
        assert r["flags"] == [], r["flags"]


def test_a_cell_type_the_schema_forbids_is_invalid_with_the_path(graded):
    """Is a notebook nbformat cannot repair invalid, with the failing cell named?"""
    r = _rec(graded, "v_bad_cell_type")
    assert r["status"] == "invalid"
    assert any("cells[3]" in p and "codee" in p for p in r["problems"]), r["problems"]


def test_the_worked_copy_beside_an_untouched_release_is_graded(graded):
    """Are the untouched notebook and the worked copy both considered, the best kept, named?"""
    # The field case's untouched file is from an earlier release of 05 (the current one has
    # changed since): seen as "nothing attempted" once run; the variant's is the current one.
    for student, assignment, untouched in (
            ("untouched-release-plus-worked-copy", H, "(nothing attempted)"),
            ("v_release_plus_copy", L, "(identical to the release, not run)")):
        r = _rec(graded, student, assignment)
        assert (r["status"], r["score"]) == ("graded", r["max_score"]), r
        assert "several_notebooks" in r["flags"]
        text = " ".join(r["problems"])
        assert untouched in text and "the best kept" in text, text


def test_of_two_answered_copies_the_better_is_kept_and_both_scores_shown(graded):
    """With a wrong answer and a right one, is the right one graded and each score listed?"""
    r = _rec(graded, "v_two_answers")
    assert (r["score"], r["max_score"]) == (FULL_L, FULL_L)
    problem = next(p for p in r["problems"] if "were graded and the best kept" in p)
    assert f"{L}.ipynb: 3" in problem and f"{L}-Copy1.ipynb: 6" in problem
    assert "misnamed" in r["flags"]  # the better one is the copy
    assert f"the graded notebook is named `{L}-Copy1.ipynb`" in " ".join(r["problems"])
    kept_expected = _rec(graded, "v_release_plus_copy")
    assert "misnamed" in kept_expected["flags"]  # there too the graded one is the copy


def test_an_untouched_release_is_flagged_unanswered(graded):
    """Is a notebook identical to the release flagged unanswered, never mistaken for work?"""
    r = _rec(graded, "v_unanswered")
    assert (r["status"], r["score"]) == ("graded", 0.0)
    assert "unanswered" in r["flags"]


def test_whole_file_read_loses_only_the_streaming_points(graded):
    """Does a dataset that reads the file whole in __init__ lose streaming points only?"""
    r = _rec(graded, "whole-file-read-in-init", H)
    cells = _cells(r)
    lost = {gid for gid, c in cells.items() if c["score"] < c["max_score"]}
    assert lost == {"hdf5_dataset_streams"}, {g: cells[g]["message"] for g in lost}
    assert "kept" not in cells["hdf5_dataset_handles"]["message"]


@pytest.mark.parametrize("student,flag,words", [
    ("v_endless_loop", "timeout", "while True"),
    ("v_huge_allocation", "memory_limit", "np.ones(20_000_000_000"),
])
def test_a_limit_hit_in_an_added_cell_is_flagged_and_named(graded, student, flag, words):
    """Is a time or memory limit hit in a cell the learner added flagged, named, and free?"""
    r = _rec(graded, student)
    assert (r["status"], r["score"]) == ("graded", FULL_L), r
    assert flag in r["flags"], r["flags"]
    assert any(words in p for p in r["problems"]), r["problems"]
    assert f"**{student} / {L}**" in graded["report"]


def test_every_notebook_is_graded_or_listed(graded):
    """Is each notebook not graded listed in results.json and report.md with the reason?"""
    listed = {u["path"]: u["reason"] for u in graded["results"]["unmatched_files"]}
    assert set(listed) == {"stray.ipynb", "v_unanswered/homework5/work.ipynb",
                           f"v_unanswered/{L}/scratchpad.ipynb"}
    for path in listed:
        assert f"`{path}`" in graded["report"]


def test_the_report_opens_with_what_needs_the_instructor(graded):
    """Does report.md list problems first, and fold the not-submitted into one line each?"""
    report = graded["report"]
    assert report.index("## Needs your attention") < report.index("## Scores")
    for heading in ("Not gradable (invalid)", "Nothing answered", "Several notebooks",
                    "Changed grading cells", "Stopped at a time limit",
                    "Stopped at the memory limit", "Notebooks graded nowhere"):
        assert heading in report, heading
    line = next(x for x in report.splitlines() if x.startswith(f"- {H}: "))
    assert "v_two_answers" in line and len(re.findall(r"v_\w+", line)) >= 10
    rows = list(csv.DictReader(open(graded["out"] / "grades.csv")))
    assert {"repaired", "tampered"} <= {f for r in rows for f in r["flags"].split(";")}


def test_a_zip_with_renamed_files_grades_everyone(graded, tmp_path):
    """Is every file of an LMS zip (normal, late, -1, ' (1)', -Copy1) graded, renamed ones
    flagged misnamed, and a file that follows no naming listed?"""
    archive = tmp_path / "canvas.zip"
    shutil.copyfile(FIELD / "lms-zip-renamed-files" / "canvas_submissions.zip", archive)
    with zipfile.ZipFile(archive, "a") as z:
        z.writestr("my homework.ipynb", nbformat.writes(_nb("notebooks", H)))
        z.writestr(f"zipper_1001_2001_{H} (2).ipynb", nbformat.writes(_nb("solutions", H)))
    records = grade(archive, tmp_path / "out", assignment=H, root=graded["root"],
                    settings=SETTINGS, progress=False)
    by = {r["student"]: r for r in records}
    assert set(by) == {"smithjane", "doejohn", "leeann", "kimbo", "parkmin", "zipper"}
    assert (by["zipper"]["status"], by["zipper"]["score"]) == ("graded", 18.0)
    # The field case's files are an untouched earlier release: graded, 0, and said to be
    # unanswered (seen after the run: nothing was attempted).
    for student in ("smithjane", "doejohn", "leeann", "kimbo", "parkmin"):
        assert (by[student]["status"], by[student]["score"]) == ("graded", 0.0)
        assert "unanswered" in by[student]["flags"]
    for student in ("kimbo", "parkmin", "zipper"):
        assert "misnamed" in by[student]["flags"]
    assert "misnamed" not in by["smithjane"]["flags"]
    assert "misnamed" not in by["leeann"]["flags"]  # `-1`: Canvas's resubmission, not a rename
    assert "late" in by["doejohn"]["flags"]
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    assert [u["path"] for u in results["unmatched_files"]] == ["my homework.ipynb"]


def _squares_course(root):
    """Add an instructor's assignment of two notebooks with plain nbgrader test cells."""
    def meta(gid, *, grade=False, solution=False, points=None):
        m = {"grade": grade, "grade_id": gid, "locked": False, "schema_version": 3,
             "solution": solution}
        if points is not None:
            m["points"] = points
        return {"nbgrader": m}

    def cell(kind, source, **kw):
        make = nbformat.v4.new_code_cell if kind == "code" else nbformat.v4.new_markdown_cell
        return make(source, metadata=meta(**kw) if kw else {})

    part1 = nbformat.v4.new_notebook(cells=[
        cell("markdown", "Write `squares(n)`: `[1, 4, ..., n**2]`; ValueError for n < 1."),
        cell("code", "def squares(n):\n    ### BEGIN SOLUTION\n    if n < 1:\n"
             "        raise ValueError(n)\n    return [i * i for i in range(1, n + 1)]\n"
             "    ### END SOLUTION", gid="squares", solution=True),
        cell("code", '"""squares returns the squares"""\nassert squares(3) == [1, 4, 9]',
             gid="correct_squares", grade=True, points=1),
        cell("code", '"""squares rejects n < 1"""\ntry:\n    squares(0)\nexcept ValueError:\n'
             '    pass\nelse:\n    raise AssertionError("no ValueError")',
             gid="squares_invalid_input", grade=True, points=1),
    ])
    part2 = nbformat.v4.new_notebook(cells=[
        cell("code", "def sum_of_squares(n):\n    ### BEGIN SOLUTION\n"
             "    return sum(i * i for i in range(1, n + 1))\n    ### END SOLUTION",
             gid="sum_of_squares", solution=True),
        cell("code", '"""sum_of_squares adds the squares"""\nassert sum_of_squares(3) == 14',
             gid="correct_sum_of_squares", grade=True, points=1),
        cell("markdown", "Explain in one sentence.", gid="explain_task"),
        cell("markdown", "YOUR ANSWER HERE", gid="explain", grade=True, solution=True,
             points=1),
    ])
    part2.cells[2].metadata["nbgrader"].update(locked=True)
    folder = root / "solutions" / "99_squares"
    folder.mkdir(parents=True)
    nbformat.write(part1, folder / "part1.ipynb")
    nbformat.write(part2, folder / "part2.ipynb")
    return part1, part2


def _answered(nb, gid, source):
    out = copy.deepcopy(nb)
    _cell(out, gid).source = source
    return out


def test_an_instructors_assignment_of_several_notebooks(tmp_path):
    """Are plain nbgrader asserts in two notebooks scored as nbgrader scores them, a missing
    notebook scored 0 and said, and a replaced showtraceback flagged tampered?"""
    root = copy_course(tmp_path / "course")
    part1, part2 = _squares_course(root)
    subs = tmp_path / "subs"
    wrong = "def squares(n):\n    return []"
    cheat = wrong + ("\nimport IPython.core.interactiveshell\n"
                     "IPython.core.interactiveshell.InteractiveShell.showtraceback = None")
    written = _answered(part2, "explain", "It adds the squares of 1 to n.")
    cases = {"full": (part1, written), "only_part1": (part1, None),
             "cheat": (_answered(part1, "squares", cheat), part2),
             "wrong": (_answered(part1, "squares", wrong), part2)}
    for student, (p1, p2) in cases.items():
        _write(subs / student / "99_squares" / "part1.ipynb", p1)
        if p2 is not None:
            _write(subs / student / "99_squares" / "part2.ipynb", p2)
    records = {r["student"]: r for r in grade(subs, tmp_path / "out", assignment="99_squares",
                                              root=root, settings=SETTINGS, progress=False)}
    scores = {s: (r["status"], r["score"], r["max_score"]) for s, r in records.items()}
    assert scores == {"full": ("graded", 3.0, 4.0), "only_part1": ("graded", 2.0, 4.0),
                      "cheat": ("graded", 1.0, 4.0), "wrong": ("graded", 1.0, 4.0)}
    assert records["full"]["needs_manual_grade"]
    only = records["only_part1"]
    assert any("no notebook `part2.ipynb`" in p for p in only["problems"])
    assert "missing_notebook" in only["flags"]
    assert {c["status"] for c in only["cells"] if c["notebook"] == "part2"} == {"not_submitted"}
    assert "**only_part1 / 99_squares**" in (tmp_path / "out" / "report.md").read_text()
    assert "tampered" in records["cheat"]["flags"]
    assert any("showtraceback" in p for p in records["cheat"]["problems"])
    assert "tampered" not in records["wrong"]["flags"]
    notebooks = {c["notebook"] for c in records["full"]["cells"]}
    assert notebooks == {"part1", "part2"}
    for student in ("full", "cheat"):
        feedback = tmp_path / "out" / "feedback" / student / "99_squares"
        assert {p.name for p in feedback.glob("*.html")} == {"part1.html", "part2.html"}
