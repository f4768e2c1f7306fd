"""Is notebooks/ exactly what nbgrader generates from solutions/, and are both trees clean?"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import nbformat
import pytest

from autograder import course
from autograder.grading import build

ASSIGNMENT_NAME = re.compile(r"^\d\d_[a-z0-9_]+$")
GRADE_ID = re.compile(r"^[a-z][a-z0-9_]*$")


def _notebooks(root: Path, tree: str) -> list[Path]:
    return sorted((root / tree).glob("*/*.ipynb"))


def _nbgrader_cells(path: Path):
    nb = nbformat.read(path, as_version=4)
    return [(c, c.metadata["nbgrader"]) for c in nb.cells if "nbgrader" in c.metadata]


def test_notebooks_are_up_to_date_with_solutions(repo, course_copy):
    """Does regenerating notebooks/ from solutions/ reproduce the committed files byte for byte?"""
    build.generate_notebooks(course_copy)
    committed = {p.relative_to(repo / "notebooks"): p.read_bytes()
                 for p in (repo / "notebooks").rglob("*") if p.is_file()}
    regenerated = {p.relative_to(course_copy / "notebooks"): p.read_bytes()
                   for p in (course_copy / "notebooks").rglob("*") if p.is_file()}
    stale = sorted(str(k) for k in set(committed) | set(regenerated)
                   if committed.get(k) != regenerated.get(k))
    assert not stale, f"notebooks/ is out of date for {stale}: run `make notebooks` and commit"


def test_solutions_and_notebooks_hold_the_same_assignments(repo):
    """Do both trees hold the same assignment folders, named NN_topic?"""
    solutions = course.assignments(repo, "solutions")
    assert solutions, "solutions/ holds no assignment"
    assert solutions == course.assignments(repo, "notebooks")
    bad = [a for a in solutions if not ASSIGNMENT_NAME.match(a)]
    assert not bad, f"assignment folders must be named NN_topic: {bad}"


def test_each_assignment_is_one_notebook_of_the_same_name(repo):
    """Does every assignment folder hold exactly one notebook, named after the folder?"""
    for tree in ("solutions", "notebooks"):
        for name in course.assignments(repo, tree):
            found = sorted(p.name for p in (repo / tree / name).glob("*.ipynb"))
            assert found == [f"{name}.ipynb"], f"{tree}/{name} holds {found}"


@pytest.mark.parametrize("tree", ["solutions", "notebooks"])
def test_committed_notebooks_have_no_outputs(repo, tree):
    """Are all committed notebooks free of outputs and execution counts?"""
    dirty = []
    for path in _notebooks(repo, tree):
        nb = nbformat.read(path, as_version=4)
        if any(c.get("outputs") or c.get("execution_count") for c in nb.cells
               if c.cell_type == "code"):
            dirty.append(str(path.relative_to(repo)))
    assert not dirty, f"notebooks with outputs (run `make notebooks` to clean): {dirty}"


def test_solutions_are_in_cleaned_form(repo):
    """Are solution notebooks free of editor metadata and widget state (`make notebooks`)?"""
    unclean = [str(p.relative_to(repo)) for p in _notebooks(repo, "solutions")
               if not build.notebook_is_clean(p)]
    assert not unclean, f"run `make notebooks` to clean: {unclean}"


def test_grade_ids_are_descriptive_and_unique(repo):
    """Is every grade_id snake_case, unique in its notebook, and every graded cell worth points?"""
    for path in _notebooks(repo, "solutions"):
        ids = [meta["grade_id"] for _, meta in _nbgrader_cells(path)]
        assert len(ids) == len(set(ids)), f"{path.name}: duplicate grade_ids"
        assert all(GRADE_ID.match(i) for i in ids), f"{path.name}: grade_ids must be snake_case"
        assert not [i for i in ids if re.fullmatch(r"(test|cell|q)\d*", i)], \
            f"{path.name}: grade_ids must describe the check"
        for _cell, meta in _nbgrader_cells(path):
            if meta.get("grade"):
                assert meta.get("points", 0) > 0, f"{path.name}:{meta['grade_id']} has no points"


def test_test_cells_open_with_a_docstring(repo):
    """Does every autograded test cell open with a one-line docstring saying what it checks?"""
    for path in _notebooks(repo, "solutions"):
        for cell, meta in _nbgrader_cells(path):
            if cell.cell_type == "code" and meta.get("grade") and not meta.get("solution"):
                body = ast.parse(cell.source).body
                first = body[0] if body else None
                assert isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) \
                    and isinstance(first.value.value, str) and "\n" not in first.value.value, \
                    f"{path.name}:{meta['grade_id']} must open with a one-line docstring"


def test_release_notebooks_hide_solutions_and_hidden_tests(repo):
    """Do student notebooks contain no solution code and no hidden tests?"""
    for path in _notebooks(repo, "notebooks"):
        text = path.read_text()
        for marker in ("BEGIN SOLUTION", "END SOLUTION", "BEGIN HIDDEN TESTS", "MARK SCHEME"):
            assert marker not in text, f"{path.name} contains {marker!r}"


def _check_calls(source: str):
    """Yield (function name, [check names]) for each `check_*(...)` call in a cell."""
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) \
                and node.func.id.startswith("check_"):
            names = [a.value for a in node.args if isinstance(a, ast.Constant)
                     and isinstance(a.value, str)]
            yield node.func.id, names


def test_cell_points_match_the_checks_it_runs(repo):
    """Does each test cell's nbgrader points equal the points of the checks it calls?"""
    from autograder.exercises import all_exercises

    exercises = all_exercises()
    for path in _notebooks(repo, "solutions"):
        for cell, meta in _nbgrader_cells(path):
            if cell.cell_type != "code" or not meta.get("grade") or meta.get("solution"):
                continue
            calls = list(_check_calls(cell.source))
            if not calls:
                continue
            total = 0.0
            for func, names in calls:
                assert func in exercises, f"{path.name}:{meta['grade_id']} calls unknown {func}"
                exercise = exercises[func]
                checks = [exercise.check(n) for n in names] if names else exercise.checks
                total += sum(c.points for c in checks)
            assert total == meta["points"], (
                f"{path.name}:{meta['grade_id']} is worth {meta['points']} points but its checks "
                f"add up to {total}")


def _points_out_of(text: str) -> float:
    match = re.search(r"(?m)^[^\n]*: [\d.]+ / ([\d.]+) points", text)
    assert match, f"no 'X / Y points' in:\n{text}"
    return float(match.group(1))


def test_printed_points_equal_the_cells_points(repo):
    """Does each check cell print "X / Y points" with Y its nbgrader points, both in the
    learner's notebook (hidden tests removed) and in the feedback (every check graded)?"""
    from autograder.cells import check_calls, without_hidden_tests
    from autograder.engine.check_report import Report
    from autograder.engine.spec import PASSED, Verdict
    from autograder.exercises import all_exercises
    from autograder.grading.preprocessors import verdict_outputs

    exercises = all_exercises()
    checked = 0
    for path in _notebooks(repo, "solutions"):
        for cell, meta in _nbgrader_cells(path):
            if cell.cell_type != "code" or not meta.get("grade") or meta.get("solution"):
                continue
            graded = check_calls(cell.source)
            if not graded:
                continue
            where = f"{path.name}:{meta['grade_id']} ({meta['points']} points)"

            def passed(call):
                exercise = exercises[call["function"]]
                names = call["checks"] or [c.name for c in exercise.checks]
                return exercise, [Verdict.from_check(exercise.check(n), PASSED,
                                                     exercise.check(n).points, "ok")
                                  for n in names]

            for call in check_calls(without_hidden_tests(cell.source)):
                printed = str(Report(*passed(call)))
                assert _points_out_of(printed) == meta["points"], (
                    f"{where}: the learner's notebook prints\n{printed}")
            feedback = verdict_outputs(
                [{"function": c["function"],
                  "verdicts": [v.to_dict() for v in passed(c)[1]]} for c in graded],
                float(meta["points"]))
            texts = [o.data["text/plain"] for o in feedback if o.output_type == "display_data"]
            assert len(texts) == 1, f"{where}: {len(texts)} reports in the feedback"
            assert _points_out_of(texts[0]) == meta["points"], f"{where}: feedback {texts[0]}"
            checked += 1
    assert checked >= 15, f"only {checked} check cells found"


def test_every_hidden_check_extends_a_visible_one():
    """Does every hidden check name the visible check of its exercise that it reruns on other
    data (hidden checks only vary the data; a lesson's core point is checked visibly)?"""
    from autograder.exercises import all_exercises

    for exercise in {id(e): e for e in all_exercises().values()}.values():
        visible = {c.name.removeprefix(exercise.name + "_") for c in exercise.checks
                   if not c.hidden}
        for check in exercise.checks:
            if check.hidden:
                assert check.extends in visible, (
                    f"{check.name} is hidden but extends {check.extends!r}, not one of the "
                    f"visible checks {sorted(visible)}")
