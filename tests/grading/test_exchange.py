"""Does the course's nbgrader exchange work end to end: release, list, fetch, submit, collect,
grade with `memcourse grade`, release feedback and fetch it?

This is what the Assignment List panel does for each student on a shared JupyterHub; here two
students are simulated on one machine with their own folders and student ids.
"""

from __future__ import annotations

import datetime
import hashlib
import html
import re
import shutil
import time
from pathlib import Path

import nbformat
import pytest

from autograder import course
from autograder.grading import build
from tests.helpers import copy_course, hidden_and_visible_test_lines

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
    cls = {"fetch": factory.FetchAssignment, "submit": factory.Submit, "list": factory.List,
           "fetch_feedback": factory.FetchFeedback}[kind]
    return cls(coursedir=coursedir, authenticator=Authenticator(config=c), config=c)


def _release(dest: Path):
    """A copy of the course at `dest` with assignment A released to its exchange."""
    root = copy_course(dest)
    build.generate_notebooks(root, [A])
    api = course.api(root)
    result = api.release_assignment(A)
    assert result["success"], result.get("log")
    return root, api, Path(api.exchange_root)


@pytest.fixture
def released(tmp_path):
    return _release(tmp_path / "course")


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


# --- The rest of a class's cycle: grade what collect left, release feedback, students fetch it.

def _files(folder: Path) -> dict[str, str]:
    """sha256 of every file under `folder`, by path relative to it."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _submit(exchange: Path, home: Path, student: str, nb) -> str:
    """Save `nb` as the student's fetched notebook and submit it; return nbgrader's timestamp."""
    cache = home / ".nbgrader_cache" / "memcourse"
    before = set(cache.glob("*")) if cache.is_dir() else set()
    nbformat.write(nb, home / A / f"{A}.ipynb")
    _student_app("submit", exchange, home, student, A).start()
    (new,) = set(cache.glob("*")) - before
    return (new / "timestamp.txt").read_text().strip()


@pytest.fixture(scope="module")
def graded_class(tmp_path_factory):
    """A class's cycle up to grading, once for the tests below (~20 s on 2 cores).

    alice submits the reference answers on time. The due date passes. bob submits the
    reference answers too, then resubmits his notebook blank, as fetched: collect keeps his
    newest submission, so he must get 0 and be late.
    """
    from autograder.grading import pipeline  # lazy: the grader, for the slow tests only
    from memcourse_apps.bench.grading import make_submission  # lazy: as on the line above

    tmp = tmp_path_factory.mktemp("exchange")
    root, api, exchange = _release(tmp / "course")
    solution = nbformat.read(root / "solutions" / A / f"{A}.ipynb", as_version=4)
    stamps: dict[str, list[str]] = {}
    due = None
    for student, variations in (("alice", ["correct"]), ("bob", ["correct", "blank"])):
        home = tmp / student
        home.mkdir()
        _student_app("fetch", exchange, home, student, A).start()
        fetched = nbformat.read(home / A / f"{A}.ipynb", as_version=4)
        stamps[student] = [_submit(exchange, home, student,
                                   make_submission(fetched, solution, variation))
                           for variation in variations]
        if due is None:  # between alice's submission and bob's; the gradebook keeps naive UTC
            due = datetime.datetime.now(datetime.UTC).replace(tzinfo=None)
            time.sleep(0.01)
    with api.gradebook as gb:
        gb.update_or_create_assignment(A, duedate=due)
    result = api.collect(A)
    assert result["success"], result.get("log")
    submitted = root / "grading" / "submitted"
    collected = _files(submitted)
    records = pipeline.grade(submitted, tmp / "out", jobs=1, assignment=A, root=root,
                             progress=False)
    yield {"root": root, "api": api, "exchange": exchange, "tmp": tmp, "stamps": stamps,
           "collected": collected, "records": {r["student"]: r for r in records},
           "solution": solution}
    shutil.rmtree(exchange, ignore_errors=True)


@pytest.mark.slow
def test_the_grader_scores_what_collect_left_and_leaves_it_as_collected(graded_class):
    """alice's reference answers get full marks, bob's blank notebook 0, and every file that
    collect wrote is byte for byte the same after grading (feedback is matched to it)."""
    records, root = graded_class["records"], graded_class["root"]
    assert _files(root / "grading" / "submitted") == graded_class["collected"]
    assert set(records) == {"alice", "bob"}, records
    alice, bob = records["alice"], records["bob"]
    assert alice["status"] == "graded", alice
    assert alice["max_score"] > 0 and alice["score"] == alice["max_score"], alice
    assert bob["status"] == "graded", bob
    assert bob["score"] == 0 and bob["max_score"] == alice["max_score"], bob
    assert "unanswered" in bob["flags"], bob


@pytest.mark.slow
def test_nbgraders_own_files_in_a_submission_are_not_flagged(graded_class):
    """timestamp.txt and submission_secret.txt come with every exchange submission: they are
    not the student's extra files, so alice's clean submission carries no flag."""
    alice = graded_class["records"]["alice"]
    assert alice["flags"] == [], alice["problems"]


@pytest.mark.slow
def test_a_resubmission_replaces_the_first(graded_class):
    """bob's first submission (full answers) is superseded by his second (blank): collect
    keeps the newest, and the grade (0, in the test above) is the second's."""
    bob_stamps = graded_class["stamps"]["bob"]
    assert bob_stamps[0] < bob_stamps[1]
    folder = graded_class["root"] / "grading" / "submitted" / "bob" / A
    assert (folder / "timestamp.txt").read_text().strip() == bob_stamps[1]
    assert graded_class["records"]["bob"]["score"] == 0


@pytest.mark.slow
def test_the_gradebook_knows_who_submitted_after_the_due_date(graded_class):
    """nbgrader's autograde, run by the grader, records each submission's lateness from the
    timestamp collect kept: alice on time, bob late (his last submission came after)."""
    with graded_class["api"].gradebook as gb:
        alice = gb.find_submission(A, "alice")
        bob = gb.find_submission(A, "bob")
        assert alice.total_seconds_late == 0, (alice.timestamp, alice.duedate)
        assert bob.total_seconds_late > 0, (bob.timestamp, bob.duedate)


@pytest.mark.slow
def test_the_records_flag_a_late_exchange_submission(graded_class):
    """Is a submission after the due date flagged late, with how late in its problems?"""
    records = graded_class["records"]
    assert "late" in records["bob"]["flags"] and "late" not in records["alice"]["flags"]
    assert any("after the due date" in p for p in records["bob"]["problems"])


@pytest.mark.slow
def test_each_student_fetches_feedback_with_their_score_and_no_hidden_tests(graded_class):
    """release_feedback finds each student's submission, and fetch_feedback puts that
    submission's feedback in the student's home: their own score, no hidden test code."""
    api, exchange, tmp = graded_class["api"], graded_class["exchange"], graded_class["tmp"]
    result = api.release_feedback(A)
    assert result["success"], result.get("error") or result.get("log")
    hidden, visible = hidden_and_visible_test_lines(graded_class["solution"])
    assert hidden and visible
    max_score = graded_class["records"]["alice"]["max_score"]
    for student, score in (("alice", max_score), ("bob", 0.0)):
        home = tmp / student
        _student_app("fetch_feedback", exchange, home, student, A).start()
        # One folder per submission that has feedback: bob's first one has none.
        found = sorted(p.relative_to(home) for p in (home / A / "feedback").rglob("*")
                       if p.is_file())
        last = graded_class["stamps"][student][-1]
        assert found == [Path(A) / "feedback" / last / f"{A}.html"], found
        page = (home / found[0]).read_text()
        text = html.unescape(re.sub(r"<[^>]+>", "", page))
        assert f"{A} (Score: {score:.1f} / {max_score:.1f})" in text
        # The visible test lines are in the page as text, so the hidden ones would be too.
        assert all(line in text for line in visible), [v for v in visible if v not in text]
        assert not [line for line in hidden if line in text]
        assert "HIDDEN TESTS" not in text
        # Only bob's last submission came after the due date, and his feedback says so.
        assert ("Late: this work was submitted" in text) == (student == "bob"), student


@pytest.mark.slow
def test_feedback_without_an_exchange_submission_does_not_stop_the_release(graded_class):
    """A student graded from an LMS download has feedback but no submission secret: Release
    Feedback skips them and still releases everyone else's (nbgrader alone stops)."""
    api, root = graded_class["api"], graded_class["root"]
    feedback = root / "grading" / "feedback"
    alice = next((feedback / "alice" / A).glob("*.html"))
    (feedback / "zed" / A).mkdir(parents=True)
    shutil.copyfile(alice, feedback / "zed" / A / alice.name)
    released = graded_class["exchange"] / "memcourse" / "feedback"
    shutil.rmtree(released, ignore_errors=True)
    result = api.release_feedback(A)
    assert result["success"], result.get("error") or result.get("log")
    assert "Not releasing feedback for zed" in result["log"]
    assert len(list(released.glob("*.html"))) == 2  # alice's and bob's
    shutil.rmtree(feedback / "zed")


@pytest.mark.slow
def test_moving_the_due_date_regrades_lateness(graded_class):
    """After the instructor moves the due date past every submission, does a plain rerun (no
    --force) drop the `late` flag and the feedback's late line, keeping the scores? Runs last:
    it changes the shared class."""
    from autograder.grading import pipeline  # lazy: the grader, for the slow tests only

    api, root, tmp = graded_class["api"], graded_class["root"], graded_class["tmp"]
    with api.gradebook as gb:
        gb.update_or_create_assignment(A, duedate=datetime.datetime(2100, 1, 1))
    records = {r["student"]: r for r in pipeline.grade(
        root / "grading" / "submitted", tmp / "out", jobs=1, assignment=A, root=root,
        progress=False)}
    assert "late" not in records["bob"]["flags"]
    assert not any("after the due date" in p for p in records["bob"]["problems"])
    assert records["bob"]["score"] == graded_class["records"]["bob"]["score"]
    feedback = next((tmp / "out" / "feedback" / "bob").rglob(f"{A}.html")).read_text()
    assert "Late:" not in feedback
