"""What a course notebook's cells are: their nbgrader role, check calls, markers and mark schemes.

The graded program, the grading preprocessors, the reconciler, the hints and the benchmarks all
read cells the same way, so they read them here. Roles come from nbgrader's own `is_grade`,
`is_solution` and `is_locked`, so a cell means to us what it means to nbgrader.
"""

from __future__ import annotations

import ast
import re
from typing import Any

# nbgrader's markers (nbgrader.preprocessors.ClearSolutions and ClearHiddenTests use the same).
_SOLUTION_MARKER = r"### (BEGIN|END) SOLUTION"
SOLUTION_MARKERS = re.compile(rf"^[ \t]*{_SOLUTION_MARKER}[ \t]*\n?", re.M)
HIDDEN_TESTS = re.compile(r"[ \t]*### BEGIN HIDDEN TESTS.*?### END HIDDEN TESTS[ \t]*\n?", re.S)
MARK_SCHEME = re.compile(r"=== BEGIN MARK SCHEME ===(.*?)=== END MARK SCHEME ===[ \t]*\n?",
                         re.S)
# One line that is a solution marker and nothing else (any whitespace around it).
_SOLUTION_MARKER_LINE = re.compile(rf"\s*{_SOLUTION_MARKER}\s*")
# A mark scheme block and all the whitespace after it, blank lines included.
_MARK_SCHEME_AND_SPACE = re.compile(MARK_SCHEME.pattern + r"\s*", MARK_SCHEME.flags)

TEST, PROGRAM, SKIP = "test", "program", "skip"


def role(cell: Any) -> str:
    """TEST (an autograded test cell), PROGRAM (locked setup or answer code) or SKIP.

    `cell` is a NotebookNode or plain JSON. A PROGRAM cell is what the graded program re-runs;
    a TEST cell is scored from its check calls; everything else (markdown, the learner's own
    cells) is SKIP. These are nbgrader's rules (`nbgrader.utils.is_grade`, `is_solution`,
    `is_locked`): tests/exercises/test_cells.py holds them equal to nbgrader's functions on
    every combination of flags and every cell of the course. They are written here because
    importing nbgrader costs about 2.6 s and 49 MiB in every graded program.
    """
    if cell.get("cell_type") != "code":
        return SKIP
    meta = nbgrader_metadata(cell)
    if meta.get("grade") and not meta.get("solution"):
        return TEST
    if meta.get("solution") or meta.get("locked"):
        return PROGRAM
    return SKIP


def nbgrader_metadata(cell: Any) -> dict:
    """The cell's nbgrader metadata, or {} when it has none (or none that is a mapping).

    `cell` is a NotebookNode or a cell of a notebook file's plain JSON.
    """
    meta = cell.get("metadata", {}).get("nbgrader")
    return meta if isinstance(meta, dict) else {}


# The three readers below need no nbgrader, so a learner's `hint()` never pays for importing
# it; tests/exercises/test_cells.py checks them against nbgrader's own (and `role`) on every
# cell of the course.


def is_answer(cell: Any) -> bool:
    """Whether the learner writes this cell (code or Markdown): nbgrader's `solution` flag."""
    return bool(nbgrader_metadata(cell).get("solution"))


def is_test(cell: Any) -> bool:
    """Whether `role(cell)` is TEST: a graded code cell the learner does not write."""
    meta = nbgrader_metadata(cell)
    return cell.get("cell_type") == "code" and bool(meta.get("grade")) \
        and not meta.get("solution")


def is_task(cell: Any) -> bool:
    """Whether the cell is nbgrader's `task` cell: a written question, graded by hand."""
    return bool(nbgrader_metadata(cell).get("task"))


def grade_id(cell: Any) -> str | None:
    """The cell's nbgrader `grade_id`, or None when it has no usable grading metadata."""
    gid = nbgrader_metadata(cell).get("grade_id")
    return gid if isinstance(gid, str) and gid else None


def check_calls(source: str) -> list[dict]:
    """The `check_*(objects..., "check", ...)` calls in a test cell's source, in line order.

    Each is `{"function", "objects" (expressions), "checks" (names), "line"}`; a source that
    does not parse has none.
    """
    calls = []
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return calls
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) \
                and node.func.id.startswith("check_"):
            objects = [ast.unparse(a) for a in node.args
                       if not (isinstance(a, ast.Constant) and isinstance(a.value, str))]
            names = [a.value for a in node.args
                     if isinstance(a, ast.Constant) and isinstance(a.value, str)]
            calls.append({"function": node.func.id, "objects": objects, "checks": names,
                          "line": node.lineno})
    return sorted(calls, key=lambda c: c["line"])


def without_solution_markers(source: str) -> str:
    """The source with nbgrader's `### BEGIN/END SOLUTION` lines removed."""
    return SOLUTION_MARKERS.sub("", source)


def without_solution_marker_lines(source: str) -> str:
    """The source's lines less those that hold a solution marker alone, joined with newlines.

    What a learner who got the answer right would have typed (the benchmark's submissions).
    Unlike `without_solution_markers`, a marker counts only as a whole line (any whitespace
    around it), every line ends in a newline, and the last line's end is dropped.
    """
    return "\n".join(line for line in source.splitlines()
                     if not _SOLUTION_MARKER_LINE.fullmatch(line))


def without_hidden_tests(source: str) -> str:
    """The source as a release shows it: hidden tests removed."""
    return HIDDEN_TESTS.sub("", source)


def mark_scheme(source: str) -> str | None:
    """The mark scheme a written answer's source holds, or None."""
    found = MARK_SCHEME.search(source)
    return found.group(1) if found else None


def without_mark_scheme(source: str, *, all_space_after: bool = False) -> str:
    """The source with its mark scheme block removed, and the spaces and line end after it.

    With `all_space_after`, all the whitespace after the block goes too, blank lines included
    (the benchmark's written answers).
    """
    return (_MARK_SCHEME_AND_SPACE if all_space_after else MARK_SCHEME).sub("", source)
