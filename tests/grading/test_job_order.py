"""Does `memcourse grade` start the submissions expected to take longest first?"""

from __future__ import annotations

import json
from types import SimpleNamespace

import nbformat

from autograder.grading.pipeline import _expected_seconds


class _Staged:
    """A staged release of assignments whose one notebook holds `code` characters of code."""

    def __init__(self, folder, code: dict[str, int]):
        self.folder, self.code = folder, code
        for name, size in code.items():
            nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("x" * size)])
            nbformat.write(nb, folder / f"{name}.ipynb")

    def __getitem__(self, name):
        return SimpleNamespace(notebooks=[name])

    def release_notebook(self, assignment, name):
        return self.folder / f"{name}.ipynb"


def _prepared(root, student, assignment, wall_s):
    folder = root / student / assignment / f"{assignment}~0"
    folder.mkdir(parents=True)
    (folder / "prepared.json").write_text(json.dumps({"wall_s": wall_s}))


def test_measured_times_come_first_and_code_size_scales_the_rest(tmp_path):
    """An earlier run's median wins; an unmeasured assignment is guessed from its code size,
    at the seconds per character the measured ones took."""
    staged = _Staged(tmp_path, {"a": 1000, "b": 1000, "c": 4000})
    prepared = tmp_path / "prepared"
    for student, wall in (("s1", 10.0), ("s2", 30.0), ("s3", 20.0)):
        _prepared(prepared, student, "a", wall)
    _prepared(prepared, "s1", "b", 2.0)
    expected = _expected_seconds(prepared, staged, ["a", "b", "c"])
    assert expected["a"] == 20.0 and expected["b"] == 2.0
    # per character: median of 20/1000 and 2/1000 is 20/1000 (upper median of two)
    assert expected["c"] == 4000 * 0.02
    assert sorted(expected, key=lambda a: -expected[a]) == ["c", "a", "b"]


def test_without_history_the_larger_notebook_goes_first(tmp_path):
    """With no earlier run, the assignment with more code is expected to take longer."""
    staged = _Staged(tmp_path, {"small": 100, "large": 5000})
    expected = _expected_seconds(tmp_path / "none", staged, ["small", "large"])
    assert expected["large"] > expected["small"]
