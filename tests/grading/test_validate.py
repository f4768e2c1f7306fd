"""What a learner reads from nbgrader's Validate, the button they are told to use before
handing in: the failing checks' own messages, not only "1 of 2 checks did not pass"."""

from __future__ import annotations

import html
import re

import pytest

from autograder import course
from tests.grading.test_grade_class import A, _wrong
from tests.helpers import copy_course

pytestmark = pytest.mark.slow


def test_validate_shows_each_failing_checks_message(tmp_path):
    """Does Validate on a dataset that divides by 256 name the failing check and what it saw?"""
    import nbformat
    from nbgrader.validator import Validator

    root = copy_course(tmp_path / "course")
    folder = root / "notebooks" / A
    path = folder / f"{A}.ipynb"
    nbformat.write(_wrong(), path)
    config = course.load_config(root)
    course.interpreter_bin_on_path()
    results = Validator(config=config).validate(str(path))
    # nbgrader gives each failing cell's traceback as HTML with ANSI colour spans
    failed = html.unescape(re.sub(r"<[^>]+>", "", "\n".join(
        cell["error"] for cell in results.get("failed", []))))
    assert "checks did not pass" in failed, results
    # each failing check by name, with the sentence the notebook's report shows for it
    last = failed[failed.index("checks did not pass"):]
    assert "- values: " in last and "255" in last, last
