"""Does `autograder.cells` read a course notebook's cells the way nbgrader does?"""

from __future__ import annotations

import json

import nbformat
import pytest
from nbgrader.utils import is_solution, is_task

from autograder import cells
from tests.helpers import ROOT

NOTEBOOKS = sorted((ROOT / "solutions").glob("*/*.ipynb")) + \
    sorted((ROOT / "notebooks").glob("*/*.ipynb"))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: f"{p.parent.parent.name}/{p.stem}")
def test_the_light_readers_agree_with_nbgrader_on_every_course_cell(path):
    """Do is_answer, is_test and is_task (no nbgrader import) say what nbgrader and `role` say,
    on a NotebookNode and on the file's plain JSON alike?"""
    nodes = nbformat.read(path, as_version=4).cells
    plain = json.loads(path.read_text())["cells"]
    assert len(nodes) == len(plain)
    seen = set()
    for node, raw in zip(nodes, plain, strict=True):
        for cell in (node, raw):
            assert cells.is_answer(cell) == bool(is_solution(node))
            assert cells.is_test(cell) == (cells.role(node) == cells.TEST)
            assert cells.is_task(cell) == bool(is_task(node))
            assert cells.grade_id(cell) == node.metadata.get("nbgrader", {}).get("grade_id")
        seen |= {name for name, says in (("answer", cells.is_answer(node)),
                                         ("test", cells.is_test(node)),
                                         ("task", cells.is_task(node))) if says}
    assert {"answer", "test"} <= seen, "every notebook has answer and test cells"


def test_a_cell_without_usable_grading_metadata_is_nothing():
    """Is a cell with no nbgrader metadata, or metadata that is not a mapping, no role at all?"""
    for metadata in ({}, {"nbgrader": None}, {"nbgrader": "solution"}):
        cell = {"cell_type": "code", "metadata": metadata, "source": ""}
        assert cells.nbgrader_metadata(cell) == {}
        assert not (cells.is_answer(cell) or cells.is_test(cell) or cells.is_task(cell))
        assert cells.grade_id(cell) is None
    graded_answer = {"cell_type": "code", "metadata": {"nbgrader": {"grade": True,
                                                                    "solution": True}}}
    assert cells.is_answer(graded_answer) and not cells.is_test(graded_answer)
    markdown = {"cell_type": "markdown", "metadata": {"nbgrader": {"grade": True}}}
    assert not cells.is_test(markdown)


def test_solution_markers_removed_as_nbgrader_and_as_whole_lines():
    """Does each marker remover keep what it promises: nbgrader's (markers at a line's start,
    line ends kept) and the whole-line one (any whitespace, newlines joined, no last newline)?"""
    source = "def f():\n    ### BEGIN SOLUTION\n    return 1\n    ### END SOLUTION\n"
    assert cells.without_solution_markers(source) == "def f():\n    return 1\n"
    assert cells.without_solution_marker_lines(source) == "def f():\n    return 1"
    crlf = "a\r\n  ### END SOLUTION \r\nb"
    assert cells.without_solution_marker_lines(crlf) == "a\nb"
    assert cells.without_solution_markers(crlf) == "a\r\n\r\nb"
    assert cells.without_solution_marker_lines("\xa0### END SOLUTION\nw") == "w"
    assert cells.without_solution_marker_lines("### END SOLUTIONS\nq") == \
        "### END SOLUTIONS\nq", "only a whole marker line goes"
    assert cells.without_solution_marker_lines("") == ""


def test_mark_scheme_is_read_and_removed():
    """Is the mark scheme found, and removed with its line end, or with all space after it?"""
    source = ("Explain.\n=== BEGIN MARK SCHEME ===\nModel answer.\n=== END MARK SCHEME ===  \n"
              "\n\n  Then more.")
    assert cells.mark_scheme(source) == "\nModel answer.\n"
    assert cells.mark_scheme("no scheme") is None
    assert cells.without_mark_scheme(source) == "Explain.\n\n\n  Then more."
    assert cells.without_mark_scheme(source, all_space_after=True) == "Explain.\nThen more."
    two = "=== BEGIN MARK SCHEME ===x=== END MARK SCHEME ===\t\n\nz" \
          "=== BEGIN MARK SCHEME ===y=== END MARK SCHEME ==="
    assert cells.without_mark_scheme(two, all_space_after=True) == "z"
    assert cells.without_mark_scheme(two) == "\nz"


def test_role_follows_nbgraders_own_rules_for_every_combination_of_flags():
    """Is `role` what nbgrader's is_grade/is_solution/is_locked say, for every flag mix?"""
    import itertools

    import nbformat
    from nbgrader.utils import is_grade, is_locked, is_solution

    for kind, grade, solution, locked in itertools.product(
            ("code", "markdown"), (None, False, True), (None, False, True), (None, False, True)):
        meta = {k: v for k, v in (("grade", grade), ("solution", solution),
                                  ("locked", locked)) if v is not None}
        cell = nbformat.from_dict({"cell_type": kind, "metadata": {"nbgrader": meta},
                                   "source": ""})
        if kind != "code":
            expected = cells.SKIP
        elif is_grade(cell) and not is_solution(cell):
            expected = cells.TEST
        elif is_solution(cell) or is_locked(cell):
            expected = cells.PROGRAM
        else:
            expected = cells.SKIP
        assert cells.role(cell) == expected, meta
        assert cells.role(dict(cell)) == expected, meta
