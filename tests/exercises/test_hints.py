"""Do `hint()` and `solution()` help a learner who studies alone, without a traceback in sight?"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from autograder import hints
from autograder.cells import grade_id
from autograder.exercises import all_exercises
from tests.helpers import ROOT

COURSE_NOTEBOOKS = ("01_memory_footprint", "02_workers_and_pinning", "03_on_the_fly_loading",
                    "04_file_formats", "05_hdf5_dataset", "06_tradeoffs", "07_beyond_one_machine")


@pytest.fixture(autouse=True)
def fresh_ladder(monkeypatch):
    """Each test starts with no hint shown yet, as a learner (not a grader) in the course root."""
    monkeypatch.setattr(hints, "_next_level", {})
    for var in ("NBGRADER_EXECUTION", "MEMCOURSE_CHECKS"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.chdir(ROOT / "notebooks")


def _exercise(name):
    return next(e for e in all_exercises().values() if e.name == name)


def _check_calls_in(notebook: Path) -> set[str]:
    cells = json.loads(notebook.read_text())["cells"]
    return {m for c in cells for m in re.findall(r"\b(check_\w+)\(", "".join(c["source"]))
            if c["metadata"].get("nbgrader", {}).get("grade")}


def test_every_exercise_in_the_notebooks_has_a_ladder_of_three_hints():
    """Does each exercise a notebook checks give three distinct, non-empty hints?"""
    exercises = all_exercises()
    used = set()
    for path in sorted((ROOT / "solutions").glob("*/*.ipynb")):
        used |= _check_calls_in(path)
    assert used, "no check calls found in solutions/"
    for function in sorted(used):
        ladder = exercises[function].hints
        assert len(ladder) == 3, f"{function}: {len(ladder)} hints, want 3"
        assert all(h.strip() for h in ladder) and len(set(ladder)) == 3, function


def test_hint_gives_the_next_hint_on_each_call(capsys):
    """Do three calls show hints 1, 2, 3 in order, and a fourth say there are no more?"""
    ladder = _exercise("hdf5_dataset").hints
    for number in (1, 2, 3):
        hints.hint("HDF5Dataset")
        shown = capsys.readouterr().out
        assert f"Hint {number} of 3 for HDF5Dataset" in shown
        assert ladder[number - 1][:40] in shown
    assert "again for hint 2" not in shown and 'solution("HDF5Dataset")' in shown
    hints.hint("HDF5Dataset")
    shown = capsys.readouterr().out
    assert "That was the last hint" in shown and ladder[2][:40] in shown


def test_level_shows_that_hint_and_the_ladder_goes_on_from_there(capsys):
    """Does hint(x, level=2) show hint 2, and the next hint(x) hint 3?"""
    ladder = _exercise("read_batch").hints
    hints.hint("read_batch", level=2)
    assert ladder[1][:40] in capsys.readouterr().out
    hints.hint("read_batch")
    assert "Hint 3 of 3" in capsys.readouterr().out


def test_ladders_are_kept_per_exercise(capsys):
    """Does working through one exercise's hints leave another's at hint 1?"""
    hints.hint("HDF5Dataset")
    hints.hint("HDF5Dataset")
    capsys.readouterr()
    hints.hint("read_batch")
    assert "Hint 1 of 3 for read_batch" in capsys.readouterr().out
    hints.hint("HDF5Dataset")
    assert "Hint 3 of 3 for HDF5Dataset" in capsys.readouterr().out


def test_each_question_of_the_self_assessment_has_its_own_ladder(capsys):
    """Does hint("q4...") after hint("q1...") start at hint 1, and q1's go on at hint 2?"""
    hints.hint("q1_hotspot_choice")
    capsys.readouterr()
    hints.hint("q4_hdf5_opens")
    assert "Hint 1 of" in capsys.readouterr().out
    hints.hint("q1_hotspot_choice")
    assert "Hint 2 of" in capsys.readouterr().out


@pytest.mark.parametrize("level", [0, 4, -1, "2", 2.0, True])
def test_a_bad_level_gets_a_sentence_not_a_traceback(capsys, level):
    """Does a level outside 1..3 (or not a whole number) get a message naming the range?"""
    hints.hint("HDF5Dataset", level=level)
    shown = capsys.readouterr().out
    assert "a whole number from 1 to 3" in shown
    assert "Hint " not in shown


class HDF5Dataset:  # stands in for the learner's class of that name
    pass


@pytest.mark.parametrize("name", ["HDF5Dataset", "hdf5_dataset", "check_hdf5_dataset",
                                  "hdf5dataset", HDF5Dataset, "  HDF5Dataset "])
def test_every_documented_way_of_naming_an_exercise_finds_it(name):
    """Do the learner's name, the exercise name, the check function and the object all work?"""
    from autograder.exercises.hdf5_dataset import check_hdf5_dataset

    assert hints.resolve(name).exercise is hints.resolve(check_hdf5_dataset).exercise
    assert hints.resolve(name).exercise.name == "hdf5_dataset"


def test_question_variables_name_the_self_assessment():
    """Does `hint("q4_hdf5_opens")` find the self-assessment, and solution() that one answer?"""
    target = hints.resolve("q4_hdf5_opens")
    assert target.exercise.name == "self_assessment"
    assert target.objects == ("q4_hdf5_opens",)


def test_an_unknown_name_gets_a_suggestion_not_a_traceback(capsys):
    """Does a misspelt name get a sentence with the closest real name and the list of names?"""
    hints.hint("HDF5Datset")
    shown = capsys.readouterr().out
    assert 'Did you mean "HDF5Dataset"?' in shown
    assert "predict_bytes_in_flight" in shown and "Traceback" not in shown
    hints.solution(42)
    assert "take the name of an exercise in quotes" in capsys.readouterr().out


def test_every_hint_line_in_the_notebooks_names_a_real_exercise():
    """Does each `hint("...")` the notebooks tell learners to run resolve to hints?"""
    for name in COURSE_NOTEBOOKS:
        text = (ROOT / "notebooks" / name / f"{name}.ipynb").read_text()
        named = set(re.findall(r'(?:hint|solution)\(\\"(\w+)\\"\)', text))
        assert named, f"{name} tells learners about no hint"
        for exercise in named:
            try:
                target = hints.resolve(exercise)
            except hints.UnknownExercise as e:
                pytest.fail(f"{name}: {e}")
            assert len(target.exercise.hints) == 3, (name, exercise)


def test_each_notebook_imports_hint_and_solution_in_a_locked_cell():
    """Can a learner call hint() in any of these notebooks without importing it?"""
    for name in COURSE_NOTEBOOKS:
        cells = json.loads((ROOT / "notebooks" / name / f"{name}.ipynb").read_text())["cells"]
        assert any("from autograder.hints import hint, solution" in "".join(c["source"])
                   and c["metadata"].get("nbgrader", {}).get("locked") for c in cells), name


def test_the_check_cells_are_followed_by_a_hint_line():
    """Is there a hint line after the last check cell of every coded exercise in each notebook?"""
    for name in COURSE_NOTEBOOKS:
        cells = json.loads((ROOT / "notebooks" / name / f"{name}.ipynb").read_text())["cells"]
        for function in _check_calls_in(ROOT / "notebooks" / name / f"{name}.ipynb"):
            if function == "check_self_assessment":
                continue  # one line in the self-assessment's introduction serves five questions
            last = max(i for i, c in enumerate(cells)
                       if f"{function}(" in "".join(c["source"]))
            after = "".join(cells[last + 1]["source"])
            assert cells[last + 1]["cell_type"] == "markdown" and "hint(" in after, \
                f"{name}: no hint line after the last {function} cell"
            assert "nbgrader" not in cells[last + 1]["metadata"], "the hint line is not graded"


def test_solution_shows_the_answer_cell_without_markers(capsys):
    """Does solution() print the reference answer cell, markers stripped, marked as a spoiler?"""
    hints.solution("read_batch")
    shown = capsys.readouterr().out
    assert shown.startswith("Spoiler: the reference solution for read_batch")
    assert "np.unique" in shown and "answer cell `read_batch`" in shown
    assert "BEGIN SOLUTION" not in shown and "END SOLUTION" not in shown
    assert "solutions/05_hdf5_dataset/05_hdf5_dataset.ipynb" in shown


def test_every_exercise_has_a_reference_solution():
    """Does solution() find an answer cell for every exercise the notebooks check?"""
    used = set()
    for path in sorted((ROOT / "solutions").glob("*/*.ipynb")):
        used |= _check_calls_in(path)
    for function in sorted(used):
        panel = hints.solution_panel(function)
        assert panel.kind == "solution" and panel.code, f"{function}: {panel}"


def test_a_question_solution_includes_the_model_written_answer():
    """Does solution("q1_hotspot_choice") show the letter and the written part's mark scheme?"""
    panel = hints.solution_panel("q1_hotspot_choice")
    assert [caption for caption, _ in panel.code] == [
        "`q1_hotspot_choice`, from the answer cell `q1_hotspot_answer`"]
    assert 'q1_hotspot_choice = "C"' in panel.code[0][1]
    assert len(panel.extra) == 1 and "Model answer" in panel.extra[0][1]
    assert "Rubric" in panel.extra[0][1]


def _course_copy(tmp_path: Path, with_solutions: bool) -> Path:
    root = tmp_path / "course"
    (root / "notebooks").mkdir(parents=True)
    shutil.copy2(ROOT / "nbgrader_config.py", root / "nbgrader_config.py")
    shutil.copytree(ROOT / "notebooks" / "05_hdf5_dataset", root / "notebooks" / "05_hdf5_dataset")
    if with_solutions:
        shutil.copytree(ROOT / "solutions" / "05_hdf5_dataset",
                        root / "solutions" / "05_hdf5_dataset")
    return root


def test_solution_is_read_from_the_solution_notebook_of_this_course(tmp_path, monkeypatch):
    """Does solution() show what the course's solutions/ holds now (one source of truth)?"""
    root = _course_copy(tmp_path, with_solutions=True)
    path = root / "solutions" / "05_hdf5_dataset" / "05_hdf5_dataset.ipynb"
    nb = json.loads(path.read_text())
    cell = next(c for c in nb["cells"] if grade_id(c) == "read_batch")
    cell["source"] = "".join(cell["source"]).replace("np.unique", "np.unique  # edited copy")
    path.write_text(json.dumps(nb))
    monkeypatch.chdir(root / "notebooks" / "05_hdf5_dataset")
    code = hints.solution_panel("read_batch").code[0][1]
    assert "# edited copy" in code


def test_without_solutions_folder_solution_says_so(tmp_path, monkeypatch, capsys):
    """Does a student with only the release get a sentence, and hints still work?"""
    root = _course_copy(tmp_path, with_solutions=False)
    monkeypatch.chdir(root / "notebooks" / "05_hdf5_dataset")
    hints.solution("HDF5Dataset")
    shown = capsys.readouterr().out
    assert "No reference solution for HDF5Dataset here" in shown
    assert "has none" in shown and "Traceback" not in shown
    hints.hint("HDF5Dataset")
    assert "Hint 1 of 3" in capsys.readouterr().out


@pytest.mark.parametrize("var, value", [("NBGRADER_EXECUTION", "autograde"),
                                        ("MEMCOURSE_CHECKS", "outside")])
def test_the_grader_never_shows_a_solution(monkeypatch, capsys, var, value):
    """Under nbgrader or `memcourse grade`, does solution() show no reference code?"""
    monkeypatch.setenv(var, value)
    hints.solution("read_batch")
    shown = capsys.readouterr().out
    assert "being run by the grader" in shown and "np.unique" not in shown


def test_html_forms_render_code_and_fold_the_spoiler():
    """In JupyterLab, is a hint HTML with code spans, and a solution folded in <details>?"""
    hint_html = hints.hint_panel("HDF5Dataset")._repr_html_()
    assert "class='memcourse-hint'" in hint_html and "<code>" in hint_html
    solution_html = hints.solution_panel("read_batch")._repr_html_()
    assert "<details class='memcourse-spoiler'>" in solution_html
    assert "unique" in solution_html and "BEGIN SOLUTION" not in solution_html
    scheme_html = hints.solution_panel("q2_benefits_choice")._repr_html_()
    assert "<strong>Model answer.</strong>" in scheme_html
