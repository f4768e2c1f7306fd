"""Through nbgrader's own API: does each solution score full marks and each release score zero?"""

from __future__ import annotations

import shutil

import nbformat
import pytest

from autograder import course
from autograder.grading import build
from tests.helpers import ROOT, copy_course

pytestmark = pytest.mark.slow
ASSIGNMENTS = course.assignments(ROOT, "solutions")


class Roundtrip:
    """A copy of the course in which each assignment is generated and graded on first use."""

    def __init__(self, root):
        self.root = root
        self.api = course.api(root)
        self.results: dict = {}

    def __getitem__(self, key: tuple[str, str]) -> dict:
        name, _student = key
        if key not in self.results:
            self._grade(name)
        return self.results[key]

    def _grade(self, name: str) -> None:
        build.generate_notebooks(self.root, [name])
        submitted = self.root / self.api.coursedir.submitted_directory
        for student, tree in (("reference", "solutions"), ("blank", "notebooks")):
            dest = submitted / student / name
            dest.mkdir(parents=True, exist_ok=True)
            shutil.copy2(self.root / tree / name / f"{name}.ipynb", dest / f"{name}.ipynb")
            outcome = self.api.autograde(name, student)
            assert outcome["success"], f"autograde of {student}/{name} failed:\n{outcome['log']}"
            with self.api.gradebook as gb:
                self.results[name, student] = gb.find_submission(name, student).to_dict()
            autograded = self.root / self.api.coursedir.autograded_directory / student / name
            self.results[name, student]["notebook"] = nbformat.read(
                autograded / f"{name}.ipynb", as_version=4)


@pytest.fixture(scope="module")
def graded(tmp_path_factory) -> Roundtrip:
    """Solutions submitted as student `reference`, releases as `blank`, graded by nbgrader."""
    return Roundtrip(copy_course(tmp_path_factory.mktemp("roundtrip") / "course"))


def _error_names(nb) -> set[str]:
    return {o.ename for c in nb.cells if c.cell_type == "code" for o in c.outputs
            if o.output_type == "error"}


@pytest.mark.parametrize("name", ASSIGNMENTS)
def test_solution_scores_full_marks(graded, name):
    """Does the instructor's solution, submitted as a student, earn every autograded point?"""
    sub = graded[name, "reference"]
    assert sub["max_code_score"] > 0
    assert sub["code_score"] == sub["max_code_score"], sub
    assert _error_names(sub["notebook"]) == set()


@pytest.mark.parametrize("name", ASSIGNMENTS)
def test_release_scores_zero_and_fails_only_on_stubs(graded, name):
    """Does the untouched student notebook score 0, failing only with NotImplementedError?"""
    sub = graded[name, "blank"]
    assert sub["score"] == 0, sub
    assert _error_names(sub["notebook"]) == {"NotImplementedError"}


@pytest.mark.parametrize("name", ASSIGNMENTS)
def test_release_check_cells_say_not_attempted(graded, name):
    """Does every check-based test cell of the untouched notebook say "not attempted"?"""
    nb = graded[name, "blank"]["notebook"]
    cells = [c for c in nb.cells if c.cell_type == "code"
             and c.metadata.get("nbgrader", {}).get("grade") and "check_" in c.source]
    assert cells
    for cell in cells:
        text = " ".join(str(o.get("data", {}).get("text/plain", "")) + o.get("text", "")
                        + str(o.get("evalue", "")) for o in cell.outputs).lower()
        assert "not attempted" in text, (cell.metadata["nbgrader"]["grade_id"], text[:300])
