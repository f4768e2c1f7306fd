"""Do the course's widgets store what the grader reads, agree with the checks, and never block?"""

from __future__ import annotations

import json
import math
import shutil
import time
from types import SimpleNamespace

import nbformat
import pytest

from autograder import widgets
from autograder.cells import grade_id
from autograder.engine.spec import Fail
from autograder.exercises import bytes_in_flight, self_assessment
from tests.exercises.test_self_assessment import CORRECT, WRONG
from tests.helpers import ROOT

QUESTIONS = {q.variable: q for q in self_assessment.QUESTIONS}


@pytest.fixture(autouse=True)
def as_a_learner(monkeypatch):
    for var in ("NBGRADER_EXECUTION", "MEMCOURSE_SELF_STUDY"):
        monkeypatch.delenv(var, raising=False)


def _graded(variable: str, value) -> bool:
    """What the hidden self-assessment check says about `value`, asked as the grader asks it:
    the answer described by the checks' child, in a trace for the parent's judge."""
    trace = SimpleNamespace(check=f"self_assessment_{QUESTIONS[variable].topic}",
                            data=self_assessment._plain(value))
    try:
        self_assessment.judge_answer(trace)
    except Fail:
        return False
    return True


# ----------------------------------------------------------------------------- quizzes


ANSWERS = [(topic, answer) for topic, answer, _, _ in WRONG] + CORRECT


def _outcome(call) -> tuple[str, str | None]:
    try:
        call()
    except Fail as e:
        return "failed", str(e)
    return "passed", None


@pytest.mark.parametrize(("topic", "answer"), ANSWERS, ids=[f"{t}-{a!r}" for t, a in ANSWERS])
def test_the_quiz_api_gives_the_checks_verdicts_and_messages(topic, answer):
    """Do `normalise_answer` and `judge` (what the quiz calls) fail exactly where the form
    check and the hidden check fail, with the same messages?"""
    q = self_assessment.BY_TOPIC[topic]
    data = self_assessment._plain(answer)  # what the checks' child sends the judges
    form = SimpleNamespace(check=f"self_assessment_{topic}_form", data=data)
    hidden = SimpleNamespace(check=f"self_assessment_{topic}", data=data)
    assert _outcome(lambda: self_assessment.judge_form(form)) == \
        _outcome(lambda: self_assessment.normalise_answer(q, answer))
    assert _outcome(lambda: self_assessment.judge_answer(hidden)) == \
        _outcome(lambda: self_assessment.judge(q, answer))


def test_a_click_lands_in_the_variable_the_grader_reads():
    """Does choosing an option store it, as the checks read it, in the learner's variable?"""
    ns = {"q1_hotspot_choice": ...}
    q = widgets.quiz("hotspot", ns)
    q.input.value = "B"
    assert ns["q1_hotspot_choice"] == "B"
    q.input.value = "C"
    assert ns["q1_hotspot_choice"] == "C"


def test_letters_and_numbers_are_stored_in_the_form_the_checks_accept():
    """Do toggled letters become one sorted string, and a typed number an int?"""
    ns = {"q5_offline_steps": ..., "q4_hdf5_opens": ...}
    five = widgets.quiz("q5_offline_steps", ns)
    for letter in "GACE":
        five.toggles["ABCDEFG".index(letter)].value = True
    assert ns["q5_offline_steps"] == "ACEG"
    five.toggles[0].value = False
    assert ns["q5_offline_steps"] == "CEG"
    for toggle in five.toggles:
        toggle.value = False
    assert ns["q5_offline_steps"] is Ellipsis  # nothing chosen is "not answered", as in the stub
    four = widgets.quiz("hdf5_opens", ns)
    four.input.value = " 2 "
    assert ns["q4_hdf5_opens"] == 2 and isinstance(ns["q4_hdf5_opens"], int)
    four.input.value = "two"
    assert ns["q4_hdf5_opens"] == 2, "text that is not a number must not replace the answer"
    assert "is not a number" in four.feedback.value
    four.input.value = "inf"
    assert ns["q4_hdf5_opens"] == 2, "an answer the checks reject must not replace the answer"
    assert "give a finite number" in four.feedback.value


def test_the_quiz_starts_from_what_the_answer_cell_wrote():
    """Does a quiz shown after `q1_hotspot_choice = "c"` show C chosen, with nothing to copy?"""
    ns = {"q1_hotspot_choice": "c", "q5_offline_steps": "GA"}
    q = widgets.quiz("q1_hotspot_choice", ns, )
    assert q.input.value == "C"
    assert "Clicks are not saved" not in q.text()
    five = widgets.quiz("q5_offline_steps", ns)
    assert [t.value for t in five.toggles] == [c in "AG" for c in "ABCDEFG"]


def test_a_click_that_differs_from_the_answer_cell_says_what_to_write():
    """After a click, does the quiz give the exact line that makes the grader see it?"""
    ns = {"q2_benefits_choice": ...}
    q = widgets.quiz("loader_benefits", ns)
    q.input.value = "D"
    assert 'write `q2_benefits_choice = "D"` in the answer cell above' in q.text()
    assert "q2_benefits_choice = &quot;D&quot;" in q.feedback.value or \
        'q2_benefits_choice = "D"' in q.feedback.value


@pytest.mark.parametrize("variable", sorted(QUESTIONS))
def test_self_study_feedback_agrees_with_the_graded_check(variable):
    """For every option, does the quiz say right exactly when the hidden check gives the point?"""
    q = QUESTIONS[variable]
    if q.kind == "choice":
        answers = list(q.options)
    elif q.kind == "letters":
        answers = [q.answer, "A", q.answer + "B", "ABCDEFG"]
    else:
        answers = [0, 1, 2, 3, 1000]
    for answer in answers:
        ns = {variable: ...}
        quiz = widgets.Quiz(variable, ns, reveal=True)
        quiz.choose(answer)
        right = quiz.text().splitlines()[1].startswith("✔")
        assert right == _graded(variable, answer), (variable, answer, quiz.text())
        if not right:
            assert q.feedback.get(quiz.answer, q.otherwise)[:30] in quiz.text()


def test_in_a_class_release_the_quiz_only_confirms_what_was_recorded():
    """Without self-study, does a wrong click get no right/wrong verdict?"""
    ns = {"q3_format_choice": ...}
    q = widgets.Quiz("format_benefit", ns, reveal=False)
    q.input.value = "B"
    assert 'Recorded: `q3_format_choice = "B"`' in q.text()
    assert "✘" not in q.text() and "memory-mapped" not in q.text()
    assert ns["q3_format_choice"] == "B"


def test_self_study_means_solutions_present_and_no_grader(monkeypatch, tmp_path):
    """Is the answer revealed only where solutions/ is there and nbgrader is not running?"""
    monkeypatch.chdir(ROOT / "notebooks")
    assert widgets.self_study()
    monkeypatch.setenv("NBGRADER_EXECUTION", "autograde")
    assert not widgets.self_study()
    monkeypatch.delenv("NBGRADER_EXECUTION")
    (tmp_path / "notebooks").mkdir()
    shutil.copy2(ROOT / "nbgrader_config.py", tmp_path)
    monkeypatch.chdir(tmp_path / "notebooks")  # a release without solutions/
    assert not widgets.self_study()
    monkeypatch.setenv("MEMCOURSE_SELF_STUDY", "1")
    assert widgets.self_study()


def test_an_answer_the_checks_cannot_read_is_explained_not_stored():
    """Does `q1_hotspot_choice = "E"` from the answer cell show the form check's message?"""
    ns = {"q1_hotspot_choice": "E"}
    q = widgets.quiz("hotspot", ns)
    assert "choose exactly one of A, B, C, D" in q.text()
    assert q.input.value is None
    assert ns["q1_hotspot_choice"] == "E"


def test_quiz_names_the_questions_when_the_topic_is_wrong():
    with pytest.raises(ValueError, match='"hotspot"'):
        widgets.quiz("hot", {})


# ----------------------------------------------------------------------------- concept checks


def test_a_concept_check_explains_each_option():
    """Does choosing an option show why it is right or wrong, in a fixed order?"""
    options = {"question": "Which one?", "right": "this",
               "wrong": {"that": "because of X", "other": "because of Y"}}
    check = widgets.concept_check(**options, why="it is Z")
    assert sorted(check.options) == ["other", "that", "this"]
    assert check.options == widgets.concept_check(**options).options
    check.input.value = "that"
    assert "✘ Not quite. because of X" in check.text()
    assert "because of X" in check.feedback.value
    check.input.value = "this"
    assert "✔ Right. it is Z" in check.text()
    with pytest.raises(ValueError):
        widgets.concept_check(question="?", right="a", wrong={})
    with pytest.raises(ValueError, match="copy_on_read"):
        widgets.concept_check("copy_on_reed")


def test_the_notebooks_concept_checks_exist_and_do_not_show_their_answer():
    """Does each notebook's concept_check("name") exist, with the answer kept out of the cell?"""
    import re

    used = []
    for path in sorted((ROOT / "notebooks").glob("*/*.ipynb")):
        for cell in nbformat.read(path, 4).cells:
            if "concept_check(" in cell.source and "import" not in cell.source:
                names = re.findall(r'concept_check\("(\w+)"\)', cell.source)
                assert names and cell.source.strip() == f'concept_check("{names[0]}")', \
                    f"{path.name}: a concept check's cell shows more than its name"
                used += names
    assert sorted(used) == sorted(widgets.CONCEPTS), "every concept check is used once"
    for name, concept in widgets.CONCEPTS.items():
        assert len(concept.wrong) >= 2 and all(concept.wrong.values()), name
        check = widgets.concept_check(name)
        check.choose(concept.right)
        assert check.text().splitlines()[-1].startswith("✔"), name


# ----------------------------------------------------------------------------- memory calculator

CONFIGS = [(bs, shape, dtype, nw, pf, pin)
           for bs in (1, 32) for shape in ((3, 64, 64), (), (12, 5))
           for dtype in ("uint8", "float32", "bfloat16") for nw in (0, 1, 3)
           for pf in (1, 2) for pin in (False, True)]


def _reference_solution():
    """The course's own predict_bytes_in_flight, taken from the solution notebook."""
    nb = nbformat.read(ROOT / "solutions/01_memory_footprint/01_memory_footprint.ipynb", 4)
    source = next(c.source for c in nb.cells if grade_id(c) == "predict_bytes_in_flight")
    import torch

    namespace = {"math": math, "torch": torch}
    exec(source, namespace)  # noqa: S102 (the course's own reference solution)
    return namespace["predict_bytes_in_flight"]


def test_the_calculator_agrees_with_the_checks_formula_and_the_reference_solution():
    """For many configurations, is the calculator's number the checks' and the solution's?"""
    predict = _reference_solution()
    for bs, shape, dtype, nw, pf, pin in CONFIGS:
        r = widgets.in_flight(bs, shape, dtype, nw, pf, pin, predict=predict)
        assert r.reference_bytes == bytes_in_flight.reference(bs, shape, dtype, nw, pf, pin)
        assert r.batches * r.batch_bytes == r.reference_bytes
        assert r.agrees is True, (bs, shape, dtype, nw, pf, pin, r)


def test_the_calculator_shows_both_numbers_when_the_learner_disagrees():
    """Is a wrong prediction (one item per worker, as the guide has it) shown beside the formula?"""

    def one_item_per_worker(batch_size, sample_shape, dtype, num_workers, prefetch_factor=2,
                            pin_memory=False):
        import torch

        return num_workers * math.prod(sample_shape) * torch.tensor([], dtype=dtype).element_size()

    r = widgets.in_flight(32, (3, 64, 64), "uint8", 2, 2, predict=one_item_per_worker)
    assert r.agrees is False and r.learner_bytes == 2 * 3 * 64 * 64
    text = "\n".join(r.lines())
    assert f"{r.reference_bytes:,} (" in text and "says 24,576 (" in text and "disagrees" in text


@pytest.mark.parametrize("behaviour, note", [
    ("stub", "not written yet"), ("raises", "raised ZeroDivisionError"),
    ("string", "returned a str"), ("nan", "returned nan")])
def test_the_calculator_falls_back_to_the_formula_for_an_unfinished_function(behaviour, note):
    """Does a stub or a broken function leave the formula's number, with a note, not a crash?"""

    def predict(*args, **kwargs):
        if behaviour == "stub":
            raise NotImplementedError()
        if behaviour == "raises":
            return 1 / 0
        return "12" if behaviour == "string" else float("nan")

    r = widgets.in_flight(16, (3, 32, 32), "float32", 2, 3, True, predict=predict)
    assert r.learner_bytes is None and r.agrees is None and note in r.learner_note
    assert r.reference_bytes == bytes_in_flight.reference(16, (3, 32, 32), "float32", 2, 3, True)
    assert "come from the course's formula" in r.lines()[-1]


def test_moving_a_slider_recomputes_and_redraws():
    """Does the calculator widget follow its controls, and reject a malformed shape?"""
    calc = widgets.memory_calculator(_reference_solution(), sample_shape=(3, 32, 32))
    first_chart = bytes(calc.chart.value)
    assert first_chart.startswith(b"\x89PNG")
    calc.controls["num_workers"].value = 4
    calc.controls["prefetch_factor"].value = 3
    calc.controls["dtype"].value = "float32"
    assert calc.result.reference_bytes == 13 * 32 * 3 * 32 * 32 * 4
    assert bytes(calc.chart.value) != first_chart and "same number" in calc.summary.value
    calc.controls["num_workers"].value = 0
    assert calc.controls["prefetch_factor"].disabled and calc.result.batches == 1
    for bad in ("3, x, 64", "3, 0, 64"):
        calc.controls["sample_shape"].value = "3, 8, 8"
        calc.controls["sample_shape"].value = bad
        assert "whole numbers" in calc.summary.value, bad


# ----------------------------------------------------------------------------- headless


@pytest.mark.slow
def test_a_notebook_of_widgets_runs_headless_without_waiting(tmp_path):
    """Does nbclient run quiz, concept check, calculator, hint and tqdm cells straight through?"""
    from nbclient import NotebookClient

    cells = [
        "from autograder.hints import hint, solution\n"
        "from autograder.widgets import concept_check, memory_calculator, quiz\n"
        "from tqdm.auto import tqdm",
        "q1_hotspot_choice = ...",
        'quiz("hotspot")',
        'q4_hdf5_opens = 2\nquiz("hdf5_opens")',
        'concept_check("open_once")',
        "memory_calculator(sample_shape=(3, 8, 8))",
        'hint("HDF5Dataset")',
        'solution("read_batch")',
        "sum(1 for _ in tqdm(range(1000), desc='steps'))",
    ]
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells])
    start = time.monotonic()
    NotebookClient(nb, timeout=60, kernel_name="python3",
                   resources={"metadata": {"path": str(ROOT / "notebooks")}}).execute()
    assert time.monotonic() - start < 60
    outputs = [o for c in nb.cells for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    views = [o for o in outputs if "application/vnd.jupyter.widget-view+json" in o.get("data", {})]
    assert len(views) >= 5  # 2 quizzes, the concept check, the calculator, the progress bar
    state = nb.metadata["widgets"]["application/vnd.jupyter.widget-state+json"]["state"]
    assert any(m["state"].get("_dom_classes") == ["memcourse-quiz"] for m in state.values())
    quiz_text = nb.cells[3].outputs[0]["data"]["text/plain"]
    assert "Quiz: q4_hdf5_opens" in quiz_text and "✔ Right" in quiz_text
    html = [o["data"]["text/html"] for c in nb.cells[6:8] for o in c.outputs]
    assert "Hint 1 of 3" in html[0] and "memcourse-spoiler" in html[1]
    json.dumps(nb)  # the stored state is plain JSON


def test_the_calculator_widget_follows_its_controls():
    calc = widgets.scale_calculator("guide", nodes=1, ranks_per_node=2, workers_per_rank=2,
                            samples_per_shard=500)
    assert calc.plan.shards == 20 and "Scale calculator" in calc.text()
    calc.controls["samples_per_shard"].value = 10_000
    assert calc.plan.idle_workers == 3
    calc.controls["nodes"].value = 0  # below the control's minimum: clamped, never an error
    assert calc.plan is not None and calc.plan.nodes == 1
    with pytest.raises(ValueError, match="dataset must be one of"):
        widgets.scale_calculator("cifar")
