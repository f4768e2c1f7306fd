"""Do the self-assessment checks grade answers, not spellings, and explain wrong ones?"""

from __future__ import annotations

import numpy as np
import pytest

from autograder.exercises.self_assessment import EXERCISE, QUESTIONS, check_self_assessment
from tests.exercises.catalogue import describe, failing, verdicts

pytestmark = pytest.mark.slow

# (topic, answer, the check that must fail, a phrase its message must contain)
WRONG = [
    ("hotspot", "A", "self_assessment_hotspot", "lean Dataset"),
    ("hotspot", "B", "self_assessment_hotspot", "summing the workers' RSS"),
    ("hotspot", "D", "self_assessment_hotspot", "host"),
    ("loader_benefits", "C", "self_assessment_loader_benefits", "without an accelerator"),
    ("loader_benefits", "B", "self_assessment_loader_benefits", "RAM use goes up"),
    ("format_benefit", "B", "self_assessment_format_benefit", "HDF5 is not memory-mapped"),
    ("format_benefit", "A", "self_assessment_format_benefit", "not* loaded whole"),
    ("hdf5_opens", 1000, "self_assessment_hdf5_opens", "JPEG folder"),
    ("hdf5_opens", 1, "self_assessment_hdf5_opens", "separate processes"),
    ("hdf5_opens", 7, "self_assessment_hdf5_opens", "Count the processes"),
    ("video_offline", "ACE", "self_assessment_video_offline", "1 of the 7 steps"),
    ("video_offline", "ABCDEFG", "self_assessment_video_offline", "3 of the 7 steps"),
    # 07_beyond_one_machine
    ("sampler_padding", 10, "self_assessment_sampler_padding", "repeats indices"),
    ("sampler_padding", 8, "self_assessment_sampler_padding", "drop_last=True"),
    ("sampler_padding", 11, "self_assessment_sampler_padding", "ceil(N / world_size)"),
    ("iterable_workers", "A", "self_assessment_iterable_workers", "has no indices"),
    ("iterable_workers", "D", "self_assessment_iterable_workers", "any `num_workers`"),
    ("epoch_requests", 38_400, "self_assessment_epoch_requests", "every shard"),
    ("epoch_requests", 1_200_000, "self_assessment_epoch_requests", "one request per sample"),
    # Malformed answers fail the visible form check, with a sentence saying how to write them.
    ("hotspot", "E", "self_assessment_hotspot_form", "choose exactly one of A, B, C, D"),
    ("hotspot", "AB", "self_assessment_hotspot_form", "choose exactly one"),
    ("hotspot", 3, "self_assessment_hotspot_form", "letter in quotes"),
    ("hdf5_opens", "2", "self_assessment_hdf5_opens_form", "without quotes"),
    ("hdf5_opens", True, "self_assessment_hdf5_opens_form", "should be a number"),
    ("hdf5_opens", float("nan"), "self_assessment_hdf5_opens_form", "finite"),
    ("video_offline", "ACEH", "self_assessment_video_offline_form", "among A, B, C, D, E, F, G"),
    ("video_offline", [1, 3], "self_assessment_video_offline_form", "letter in quotes"),
]

# Right answers, written the ways a learner might write them.
CORRECT = [
    ("hotspot", "C"), ("hotspot", " c "), ("hotspot", "(C)"), ("hotspot", ["C"]),
    ("loader_benefits", "A"), ("format_benefit", "d"),
    ("hdf5_opens", 2), ("hdf5_opens", 2.0), ("hdf5_opens", np.int64(2)),
    ("video_offline", "ACEG"), ("video_offline", "g, e, c, a"),
    ("video_offline", ["A", "C", "E", "G"]), ("video_offline", {"G", "A", "C", "E"}),
    ("sampler_padding", 12), ("iterable_workers", "b"), ("epoch_requests", 1200.0),
]


@pytest.mark.parametrize(("topic", "answer", "check", "phrase"), WRONG,
                         ids=[f"{t}-{a!r}" for t, a, _, _ in WRONG])
def test_wrong_answer_is_caught_and_explained(topic, answer, check, phrase):
    """Does a wrong or malformed answer fail its check, with a message that teaches?"""
    short = check.removeprefix("self_assessment_")
    results = verdicts(EXERCISE, {"answer": answer}, [short])
    assert check in failing(results), describe(results)
    assert results[check].status == "failed"
    assert phrase in results[check].message, describe(results)


@pytest.mark.parametrize(("topic", "answer"), CORRECT,
                         ids=[f"{t}-{a!r}" for t, a in CORRECT])
def test_right_answer_gets_the_point(topic, answer):
    """Does a right answer pass both checks of its question, however it is written?"""
    results = verdicts(EXERCISE, {"answer": answer}, [f"{topic}_form", topic])
    assert not failing(results), describe(results)
    assert sum(v.points for v in results.values()) == 1


@pytest.mark.parametrize("stub", [..., None])
def test_stub_is_not_attempted(stub):
    """Is an answer still set to `...` (or None) reported as not attempted, not as wrong?"""
    results = verdicts(EXERCISE, {"answer": stub}, ["hotspot_form", "hotspot"])
    assert {v.status for v in results.values()} == {"not_attempted"}, describe(results)


def test_wrong_feedback_never_names_the_right_letter():
    """Does no wrong-answer message reveal the key of its question?"""
    for q in QUESTIONS:
        for text in [*q.feedback.values(), q.otherwise]:
            if q.kind == "choice":
                assert f"{q.answer}." not in text and f" {q.answer} " not in text, (q.topic, text)


def test_every_question_has_a_free_form_check_and_a_graded_one():
    """Does each question have a 0-point visible form check and a 1-point hidden one?"""
    for q in QUESTIONS:
        form, graded = EXERCISE.check(f"{q.topic}_form"), EXERCISE.check(q.topic)
        assert (form.points, form.hidden) == (0, False)
        assert (graded.points, graded.hidden) == (1, True)


def test_calling_without_a_check_name_is_refused():
    """Is a test cell that forgets to name its question told so, instead of grading everything?"""
    with pytest.raises(TypeError, match="name the checks"):
        check_self_assessment("C")
