"""Grading settings come from nbgrader_config.py with flags on top; hand-offs survive JSON."""

from __future__ import annotations

import json

from autograder.engine.limits import Limits
from autograder.engine.spec import FAILED, PASSED, Verdict
from autograder.grading.handoffs import Job, Prepared, Record
from autograder.grading.inputs import Submission
from autograder.grading.settings import GradingSettings, grading_config
from tests.helpers import ROOT


def _course(tmp_path, extra: str = "", timeout: str | None = "c.Execute.timeout = 77"):
    lines = ["c = get_config()", extra, timeout or ""]
    (tmp_path / "nbgrader_config.py").write_text("\n".join(lines) + "\n")
    return tmp_path


def test_the_course_config_sets_the_grading_settings(tmp_path):
    """Does `c.GradingSettings.*` in nbgrader_config.py reach the settings?"""
    root = _course(tmp_path, "c.GradingSettings.jobs = 5\n"
                             "c.GradingSettings.kernel_memory_mib = 999")
    settings = GradingSettings.for_course(root)
    assert (settings.jobs, settings.workers) == (5, 5)
    assert settings.kernel_limits.memory_mib == 999


def test_flags_override_the_config_and_none_leaves_it(tmp_path):
    """Does a flag win over nbgrader_config.py, and an absent flag (None) leave it?"""
    root = _course(tmp_path, "c.GradingSettings.jobs = 5\n"
                             "c.GradingSettings.notebook_timeout_s = 60")
    settings = GradingSettings.for_course(root, jobs=1, notebook_timeout_s=None)
    assert (settings.jobs, settings.notebook_timeout_s) == (1, 60)


def test_the_cell_time_limit_is_nbgraders_own(tmp_path):
    """Is the cell limit c.Execute.timeout, nbgrader's default when unset, or what is given?"""
    assert GradingSettings.for_course(_course(tmp_path)).cell_timeout_s == 77
    silent = GradingSettings.for_course(_course(tmp_path, timeout=None))
    assert silent.cell_timeout_s == 30  # nbclient's and nbgrader's default
    given = GradingSettings.for_course(_course(tmp_path), base=GradingSettings(cell_timeout_s=5))
    assert given.cell_timeout_s == 5


def test_the_repository_course_states_its_cell_limit_once():
    """Does the course's grading use the 120 s of nbgrader_config.py (written nowhere else)?"""
    assert GradingSettings.for_course(ROOT).cell_timeout_s == 120
    config = grading_config(GradingSettings.for_course(ROOT))
    assert config.ResilientExecute.timeout == 120
    assert [pp.__name__ for pp in config.Autograde.sanitize_preprocessors][-1] == \
        "RestoreSubmission"


def test_a_job_survives_json():
    """Does a Job come back from its JSON equal, its limits typed?"""
    job = Job("s", "a", "n", "/c/n.ipynb", "/c", "/r/n.ipynb", "/root", "sqlite:///db",
              "/o", ["/h"], 20.0, 240.0, Limits(memory_mib=3072), Limits())
    again = Job.from_json(json.loads(json.dumps(job.to_json())))
    assert again == job
    assert isinstance(again.kernel_limits, Limits)


def test_prepared_groups_verdicts_by_cell_in_call_order(tmp_path):
    """Are a cell's verdicts those of its calls, in order, whole (hint and verifies kept)?"""
    v1 = Verdict("x_values", PASSED, 2, 2, "ok", verifies="values", hint="h1")
    v2 = Verdict("x_small", FAILED, 0, 1, "grew", verifies="memory", hint="h2")
    prepared = Prepared("s", "a", "n", status="prepared", calls=[
        {"cell": 3, "grade_id": "x_test", "verdicts": [v1.to_dict()]},
        {"cell": 3, "grade_id": "x_test", "verdicts": [v2.to_dict()]}])
    prepared.save(tmp_path)
    loaded = Prepared.load(tmp_path)
    assert loaded.verdicts_by_cell() == {"x_test": [v1, v2]}
    assert loaded.folder == str(tmp_path)
    assert Prepared.load(tmp_path / "nowhere") is None


def test_a_record_from_an_earlier_version_still_loads():
    """Does a saved record with keys this version no longer writes load, defaults filled?"""
    verdict = Verdict("x_values", FAILED, 0, 2, "wrong scale").to_dict()
    old = {"student": "s", "assignment": "a", "status": "graded", "score": 3.0,
           "max_score": 6.0, "flags": ["late", "late"], "problems": [], "cells": [],
           "fingerprint": "f", "_verdict_cells": {"n": {"x_test": {"score": 0.0,
                                                                   "verdicts": [verdict]}}}}
    record = Record.from_json(old)
    assert (record.score, record.missing_notebooks, record.fingerprint) == (3.0, [], "f")
    # the verdicts an earlier version kept apart become the cell's, for refresh_scores
    assert record.cells == [{"notebook": "n", "grade_id": "x_test", "verdicts": [verdict]}]
    assert record.to_json()["flags"] == ["late"]
    assert "fingerprint" not in record.to_json(with_fingerprint=False)


def test_a_new_record_carries_what_reading_the_submission_found():
    """Does Record.of keep the submission's flags and sentences, as copies?"""
    sub = Submission("s", "a", {}, flags=["late"], problems=["uploaded late"])
    record = Record.of(sub, "invalid", "fp")
    record.flags.append("x")
    assert (record.status, record.fingerprint, sub.flags) == ("invalid", "fp", ["late"])
    assert record.problems == ["uploaded late"]


def test_settings_for_a_course_leave_the_callers_object_alone(tmp_path):
    """Does for_course copy `base` rather than change it, and read jobs <= 0 as all cores?"""
    base = GradingSettings(jobs=-1)
    settings = GradingSettings.for_course(_course(tmp_path), base=base, jobs=None)
    assert (base.cell_timeout_s, settings.cell_timeout_s) == (0, 77)
    assert settings.workers >= 1


def test_a_worker_that_stopped_early_still_gives_its_executed_outputs(tmp_path):
    """Without prepared.json, are the kernel's outputs in executed.ipynb still used, and the
    checked cells marked as not prepared, saying where the log is?"""
    import nbformat

    from autograder.grading.preprocessors import UsePreparedRun

    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell("print('hi')"),
        nbformat.v4.new_code_cell("check_x(X)", metadata={"nbgrader": {
            "grade": True, "solution": False, "grade_id": "x_test", "points": 2}})])
    executed = nbformat.reads(nbformat.writes(nb), 4)
    executed.cells[0].outputs = [nbformat.v4.new_output("stream", text="hi\n")]
    nbformat.write(executed, tmp_path / "executed.ipynb")
    pp = UsePreparedRun(prepared={"n": {"folder": str(tmp_path)}})
    out, _ = pp.preprocess(nb, {"nbgrader": {"student": "s", "assignment": "a",
                                             "notebook": "n"}})
    assert out.cells[0].outputs[0]["text"] == "hi\n"
    error = out.cells[1].outputs[0]
    assert error["ename"] == "NotGraded" and "grading/work/logs/" in error["evalue"]


def test_a_rerun_regrades_when_the_tests_or_the_limits_changed(tmp_path):
    """Does what a rerun compares change with the instructor's notebooks and every limit, so a
    new limit or a fixed test is not silently answered with the old grades?"""
    from autograder.grading.build import StagedAssignment, StagedCourse
    from autograder.grading.pipeline import _grading_conditions

    source = tmp_path / "source" / "01_x"
    source.mkdir(parents=True)
    (source / "01_x.ipynb").write_text('{"tests": 1}')
    staged = StagedCourse(tmp_path, tmp_path / "source", tmp_path / "release", {
        "01_x": StagedAssignment("01_x", source, tmp_path / "release" / "01_x", ("01_x",))})
    first = _grading_conditions(staged, "01_x", GradingSettings())
    assert _grading_conditions(staged, "01_x", GradingSettings()) == first
    for changed in ({"cell_timeout_s": 5.0}, {"notebook_timeout_s": 60.0},
                    {"kernel_memory_mib": 1024}, {"check_memory_mib": 256}):
        assert _grading_conditions(staged, "01_x", GradingSettings(**changed)) != first, changed
    (source / "01_x.ipynb").write_text('{"tests": 2}')
    assert _grading_conditions(staged, "01_x", GradingSettings()) != first


def test_the_report_counts_submissions_in_words():
    """Does the report's first line (and the CLI's last) count student-assignment submissions
    with the right number and plain status words, not 'records' or 'not_submitted'?"""
    from autograder.grading.report import count_line, report

    records = [{"status": "graded", "flags": [], "student": f"s{i}", "assignment": "01_x",
                "problems": [], "score": 1.0, "max_score": 2.0} for i in range(3)]
    records += [{"status": "not_submitted", "flags": [], "student": f"m{i}",
                 "assignment": "01_x", "problems": [], "score": 0.0, "max_score": 2.0}
                for i in range(15)]
    assert count_line(records) == ("18 submissions (one per student and assignment): "
                                   "3 graded, 15 not submitted")
    assert count_line(records[:1]).startswith("1 submission (")
    assert "18 submissions (one per student and assignment)" in report(records, 12.0)
    assert "unchanged since an earlier run" not in report(records, 12.0)
    assert "(3 of them unchanged since an earlier run" in report(records, 12.0, reused=3)


def test_the_report_lists_written_answers_waiting_for_hand_grading():
    """Does the report tell the instructor which graded submissions still hold written answers
    to grade by hand (their scores are autograded points only), and not the others?"""
    from autograder.grading.report import report

    def record(student, status, manual):
        return {"status": status, "flags": [], "student": student, "assignment": "07_x",
                "problems": [], "score": 20.0, "max_score": 24.0, "needs_manual_grade": manual}

    records = [record("ada", "graded", True), record("bo", "graded", False),
               record("cy", "not_submitted", True)]
    text = report(records, 3.0)
    assert "### Written answers to grade by hand: 1" in text
    assert "- 07_x: 1 — ada" in text
    assert "Nothing: every submission" not in text
    assert "Written answers to grade by hand" not in report(records[1:], 3.0)

