"""Do written answers graded by hand in formgrader show up in grades.csv on the next run?"""

from __future__ import annotations

import csv

import nbformat
import pytest

from autograder.grading.pipeline import grade
from autograder.grading.settings import GradingSettings as Settings
from tests.helpers import ROOT, copy_course

pytestmark = pytest.mark.slow

A = "06_tradeoffs"


def test_manual_scores_reach_grades_csv(tmp_path):
    """After a grader scores the written answers (as formgrader does), does a re-run report them?"""
    root = copy_course(tmp_path / "course")
    subs = tmp_path / "subs"
    (subs / "maria" / A).mkdir(parents=True)
    nbformat.write(nbformat.read(ROOT / "solutions" / A / f"{A}.ipynb", as_version=4),
                   subs / "maria" / A / f"{A}.ipynb")
    settings = Settings(jobs=1)
    out = tmp_path / "out"
    first = grade(subs, out, assignment=A, root=root, settings=settings, progress=False)[0]
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

    second = grade(subs, out, assignment=A, root=root, settings=settings, progress=False)[0]
    assert second["score"] == pytest.approx(auto_score + awarded)
    assert {c["status"] for c in second["cells"] if c["grade_id"] in
            {m["grade_id"] for m in manual}} == {"manually_graded"}
    row = next(csv.DictReader(open(out / "grades.csv")))
    assert float(row["score"]) == pytest.approx(auto_score + awarded)
