"""Written answers, graded by hand: their scores reach grades.csv on the next run, and the
learner's feedback shows their own answer but never the instructor's mark scheme."""

from __future__ import annotations

import copy
import csv
import re

import nbformat
import pytest

from autograder import cells
from autograder.grading.pipeline import grade
from autograder.grading.preprocessors import HideMarkSchemes
from autograder.grading.settings import GradingSettings as Settings
from tests.helpers import ROOT, copy_course

A = "06_tradeoffs"
# What maria writes under the first written question (the cell after its task cell).
WRITTEN = "Mostly the batches in flight held in shared memory by each worker"


def _with_written_answer(nb):
    """The notebook with WRITTEN in the answer cell that follows the first task cell."""
    task = next(i for i, c in enumerate(nb.cells) if cells.is_task(c))
    nb.cells[task + 1].source = WRITTEN
    return nb


@pytest.mark.parametrize("assignment", ["06_tradeoffs", "07_beyond_one_machine"])
def test_the_feedback_preprocessor_removes_only_task_cells_mark_schemes(assignment):
    """Does HideMarkSchemes strip every task cell's scheme, keep its question, and leave every
    other cell whole, a learner's cell quoting the delimiter included (no RuntimeError)?"""
    nb = nbformat.read(ROOT / "solutions" / assignment / f"{assignment}.ipynb", as_version=4)
    nb.cells.append(nbformat.v4.new_markdown_cell("I did not copy the BEGIN MARK SCHEME part."))
    before = copy.deepcopy(nb)
    after, _ = HideMarkSchemes().preprocess(nb, {})
    tasks = [(b.source, a.source) for b, a in zip(before.cells, after.cells, strict=True)
             if cells.is_task(b)]
    assert tasks and all(cells.mark_scheme(b) for b, _ in tasks)
    for b, a in tasks:
        assert "MARK SCHEME" not in a and "Model answer" not in a and "Rubric" not in a
        assert a.strip() and b.startswith(a.rstrip())  # the question, as the release shows it
    assert [c for c in after.cells if not cells.is_task(c)] == \
        [c for c in before.cells if not cells.is_task(c)]


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    """06 graded once for maria (the solutions, one written answer filled in): the course root,
    the submissions, the output folder and maria's first record."""
    tmp = tmp_path_factory.mktemp("manual")
    root = copy_course(tmp / "course")
    subs = tmp / "subs"
    (subs / "maria" / A).mkdir(parents=True)
    nb = _with_written_answer(nbformat.read(ROOT / "solutions" / A / f"{A}.ipynb", as_version=4))
    nbformat.write(nb, subs / "maria" / A / f"{A}.ipynb")
    out = tmp / "out"
    first = grade(subs, out, assignment=A, root=root, settings=Settings(jobs=1),
                  progress=False)[0]
    return {"root": root, "subs": subs, "out": out, "first": first}


@pytest.mark.slow
def test_feedback_shows_the_written_answer_but_never_the_mark_scheme(graded):
    """Does the feedback show the question and maria's written answer without the mark scheme,
    while the autograded notebook (what formgrader shows the grader) keeps the scheme?"""
    html = (graded["out"] / "feedback" / "maria" / A / f"{A}.html").read_text()
    text = " ".join(re.sub(r"<[^>]+>", " ", html).split())
    assert WRITTEN in text
    assert "Question 1, written (2 points)." in text
    assert "BEGIN MARK SCHEME" not in html and "END MARK SCHEME" not in html
    assert "Model answer" not in html and "Rubric (2 points)" not in html
    autograded = graded["root"] / "grading" / "autograded" / "maria" / A / f"{A}.ipynb"
    tasks = [c for c in nbformat.read(autograded, as_version=4).cells if cells.is_task(c)]
    assert tasks and all(cells.mark_scheme(c.source) for c in tasks)


@pytest.mark.slow
def test_manual_scores_reach_grades_csv(graded):
    """After a grader scores the written answers (as formgrader does), does a re-run report them?"""
    root, subs, out, first = graded["root"], graded["subs"], graded["out"], graded["first"]
    assert first["status"] == "graded" and first["needs_manual_grade"]
    manual = [c for c in first["cells"] if c["status"] == "manual"]
    assert manual, first["cells"]
    auto_score = first["score"]

    from autograder import course

    api = course.api(root)
    with api.gradebook as gb:  # what formgrader's "save" does for each manual grade
        notebook = gb.find_submission_notebook(A, A, "maria")
        for g in notebook.grades:
            if g.needs_manual_grade:
                g.manual_score = g.max_score / 2
        gb.db.commit()
    awarded = sum(c["max_score"] / 2 for c in manual)

    second = grade(subs, out, assignment=A, root=root, settings=Settings(jobs=1), progress=False)[0]
    assert second["score"] == pytest.approx(auto_score + awarded)
    assert {c["status"] for c in second["cells"] if c["grade_id"] in
            {m["grade_id"] for m in manual}} == {"manually_graded"}
    row = next(csv.DictReader(open(out / "grades.csv")))
    assert float(row["score"]) == pytest.approx(auto_score + awarded)
