"""Do verdicts travel as plain data without loss, and do several verdicts add up to one status?"""

from __future__ import annotations

import json

import pytest

from autograder.engine.spec import Check, Verdict, overall_status
from tests.engine import engine_probe as probe


def test_a_verdict_survives_to_dict_and_from_dict():
    """Does every field, hint and verifies included, come back through JSON?"""
    verdict = Verdict("probe_call", "failed", 0.0, 2.0, "returned 41", verifies="returns 42",
                      hidden=True, hint="add one", details={"wall_s": 0.25})
    assert Verdict.from_dict(json.loads(json.dumps(verdict.to_dict()))) == verdict


def test_from_dict_gives_missing_optional_fields_their_defaults():
    data = {"check": "c", "status": "passed", "points": 1, "max_points": 1, "message": "m"}
    assert Verdict.from_dict(data) == Verdict("c", "passed", 1, 1, "m")


def test_from_check_takes_what_the_check_declares():
    check = Check("probe_hint", 3, "it works", probe.act_call, probe.judge_nothing,
                  hint="look again", hidden=True)
    verdict = Verdict.from_check(check, "failed", 0.0, "it did not", {"wall_s": 1.0})
    assert verdict == Verdict("probe_hint", "failed", 0.0, 3, "it did not", verifies="it works",
                              hidden=True, hint="look again", details={"wall_s": 1.0})
    assert Verdict.from_check(check, "passed", 3, "ok").details == {}


@pytest.mark.parametrize("statuses, expected", [
    (["passed", "passed"], "passed"),
    (["not_attempted"], "not_attempted"),
    (["passed", "not_attempted"], "failed"),
    (["passed", "failed", "limit_exceeded"], "limit_exceeded"),
    (["limit_exceeded", "error", "failed"], "error"),
    (["failed", "not_attempted"], "failed"),
    ([], "failed"),
])
def test_overall_status(statuses, expected):
    assert overall_status(statuses) == expected


def test_a_verdict_from_another_version_loads_without_the_keys_it_does_not_know():
    """Does from_dict ignore a key this version does not have (a results file from later)?"""
    data = {"check": "c", "status": "passed", "points": 1.0, "max_points": 1.0,
            "message": "ok", "severity": "high"}
    assert Verdict.from_dict(data) == Verdict("c", "passed", 1.0, 1.0, "ok")


def test_a_failed_check_cell_raises_with_every_failing_message():
    """Does the error a failed check cell raises (all that nbgrader's Validate shows) carry
    each failing check's message, and no passing one's?"""
    from autograder.engine.check_report import CheckFailed, Report
    from autograder.engine.spec import Exercise

    exercise = Exercise("ds", "Dataset", ("Ds",), [])
    report = Report(exercise, [
        Verdict("ds_values", "failed", 0, 2, "`ds[0]` was 1/256 of the stored image"),
        Verdict("ds_length", "passed", 1, 1, "fine"),
        Verdict("ds_small", "limit_exceeded", 0, 1, "grew by 300 MiB")])
    with pytest.raises(CheckFailed) as raised:
        report.raise_for_status()
    text = str(raised.value)
    assert text.startswith("2 of 3 checks did not pass")
    assert "- values: `ds[0]` was 1/256 of the stored image" in text
    assert "- small: grew by 300 MiB" in text and "fine" not in text
