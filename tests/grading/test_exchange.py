"""Does the course's nbgrader exchange work end to end: release, list, fetch, submit, collect?

This is what the Assignment List panel does for each student on a shared JupyterHub; here two
students are simulated on one machine with their own folders and student ids.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import nbformat
import pytest

from autograder import course
from autograder.grading import build
from tests.helpers import copy_course

A = "03_on_the_fly_loading"


def _student_app(kind: str, exchange_root: Path, home: Path, student: str, assignment: str):
    """One of nbgrader's exchange apps configured as a student's nbgrader_config would be."""
    from nbgrader.auth import Authenticator
    from nbgrader.coursedir import CourseDirectory
    from nbgrader.exchange import ExchangeFactory
    from traitlets.config import Config

    course._avoid_slow_import()
    c = Config()
    c.CourseDirectory.course_id = "memcourse"
    c.CourseDirectory.root = str(home)
    c.CourseDirectory.student_id = student
    c.CourseDirectory.assignment_id = assignment
    c.Exchange.root = str(exchange_root)
    c.Exchange.cache = str(home / ".nbgrader_cache")
    c.Exchange.assignment_dir = str(home)
    coursedir = CourseDirectory(config=c)
    factory = ExchangeFactory(config=c)
    cls = {"fetch": factory.FetchAssignment, "submit": factory.Submit, "list": factory.List}[kind]
    return cls(coursedir=coursedir, authenticator=Authenticator(config=c), config=c)


@pytest.fixture
def released(tmp_path):
    root = copy_course(tmp_path / "course")
    build.generate_notebooks(root, [A])
    api = course.api(root)
    result = api.release_assignment(A)
    assert result["success"], result.get("log")
    return root, api, Path(api.exchange_root)


def test_the_course_config_sets_an_exchange_and_a_course_id(released):
    """Does nbgrader_config.py give the exchange a root inside grading/ and a course id?"""
    root, api, exchange = released
    assert api.course_id == "memcourse"
    assert exchange == root / "grading" / "exchange"
    assert api.exchange_is_functional


def test_students_list_fetch_and_submit_and_the_instructor_collects(released, tmp_path):
    """Can two students fetch, work and submit, and the instructor collect both?"""
    root, api, exchange = released
    for student in ("alice", "bob"):
        home = tmp_path / student
        home.mkdir()
        lister = _student_app("list", exchange, home, student, "")
        listed = lister.start()
        assert any(a["assignment_id"] == A for a in listed), listed
        _student_app("fetch", exchange, home, student, A).start()
        fetched = home / A / f"{A}.ipynb"
        assert fetched.is_file()
        nb = nbformat.read(fetched, as_version=4)
        nb.cells.append(nbformat.v4.new_markdown_cell(f"work of {student}"))
        nbformat.write(nb, fetched)
        _student_app("submit", exchange, home, student, A).start()
    result = api.collect(A)
    assert result["success"], result.get("log")
    for student in ("alice", "bob"):
        collected = root / "grading" / "submitted" / student / A / f"{A}.ipynb"
        assert collected.is_file()
        assert f"work of {student}" in collected.read_text()
        assert (collected.parent / "timestamp.txt").is_file()
    shutil.rmtree(exchange)
