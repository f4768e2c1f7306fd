"""Every notebook in a class folder is accounted for: graded under an assignment, or listed.

Near-match names that editors, browsers and LMSs produce are graded and flagged; anything else
is listed with the reason. Fast: nothing is graded here.
"""

from __future__ import annotations

import pytest

from autograder.grading.inputs import find_submissions, match_name, normalise_name

A = "05_hdf5_dataset"
COURSE = {A: [A], "03_on_the_fly_loading": ["03_on_the_fly_loading"],
          "99_parts": ["part1", "part2"]}


@pytest.mark.parametrize("name", [f"{A} (1)", f"{A}-Copy1", f"{A}-Copy2", f"Copy of {A}",
                                  f"{A}-Copy1-1", "05 HDF5 Dataset", "05-hdf5-dataset",
                                  "05_HDF5_Dataset (2)", "hdf5_dataset", f"Copy of {A} (1)"])
def test_near_match_names_match_the_assignment(name):
    """Do copies, LMS suffixes, case and separator changes name the same notebook?"""
    assert match_name(name, [A]) == (A, False)


@pytest.mark.parametrize("name", ["04_file_formats", "05_hdf5", "notes", "hdf5_dataset_v2",
                                  "my_05_hdf5_dataset"])
def test_other_names_do_not_match(name):
    """Are names of other work left unmatched rather than guessed?"""
    assert match_name(name, [A]) is None


def test_the_exact_name_is_exact():
    """Is the release's name, or it with Canvas's resubmission suffix, an exact match?"""
    assert match_name(A, [A]) == (A, True)
    assert match_name(f"{A}-1", [A]) == match_name(f"{A}-12", [A]) == (A, True)
    assert normalise_name("Copy of 05 HDF5-Dataset (1)") == A


def _touch(path, text="{}"):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def _by_key(found):
    return {(s.student, s.assignment): s for s in found}


def test_renamed_files_and_folders_are_candidates_flagged_misnamed(tmp_path):
    """Are ` (1)` files, `Copy of` files and near-match folders graded and flagged misnamed?"""
    _touch(tmp_path / "kim" / A / f"{A} (1).ipynb")
    _touch(tmp_path / "park" / A / f"Copy of {A}.ipynb")
    _touch(tmp_path / "lee" / "05_HDF5_dataset" / f"{A}.ipynb")
    found, unmatched = find_submissions(tmp_path, COURSE)
    subs = _by_key(found)
    for student in ("kim", "park", "lee"):
        sub = subs[student, A]
        assert sub.status == "ok", sub
        assert len(sub.notebooks[A]) == 1
    assert subs["kim", A].notebooks[A][0].misnamed == f"named `{A} (1).ipynb`, not `{A}.ipynb`"
    assert subs["park", A].notebooks[A][0].misnamed
    assert "misnamed" in subs["lee", A].flags  # the folder's name
    assert subs["lee", A].notebooks[A][0].misnamed is None
    assert unmatched == []


def test_several_candidates_are_all_kept(tmp_path):
    """Are the expected notebook and its copies all candidates (the best is chosen later)?"""
    _touch(tmp_path / "amy" / A / f"{A}.ipynb")
    _touch(tmp_path / "amy" / A / f"{A}-Copy1.ipynb")
    _touch(tmp_path / "bo" / A / f"{A}.ipynb")
    _touch(tmp_path / "bo" / f"{A} (1)" / f"{A}.ipynb")
    found, unmatched = find_submissions(tmp_path, COURSE)
    subs = _by_key(found)
    assert sorted(c.path.name for c in subs["amy", A].notebooks[A]) == [
        f"{A}-Copy1.ipynb", f"{A}.ipynb"]
    assert len(subs["bo", A].notebooks[A]) == 2
    assert unmatched == []


def test_notebooks_graded_nowhere_are_listed_with_the_reason(tmp_path):
    """Is every notebook that is not graded listed, with a reason, and nothing listed twice?"""
    _touch(tmp_path / "loose.ipynb")
    _touch(tmp_path / "amy" / "homework5" / "work.ipynb")
    _touch(tmp_path / "amy" / A / f"{A}.ipynb")
    _touch(tmp_path / "amy" / A / "scratchpad.ipynb")
    _touch(tmp_path / "amy" / "random.ipynb")
    _touch(tmp_path / "amy" / A / ".ipynb_checkpoints" / f"{A}-checkpoint.ipynb")
    found, unmatched = find_submissions(tmp_path, COURSE)
    reasons = {u.path: u.reason for u in unmatched}
    assert set(reasons) == {"loose.ipynb", "amy/homework5/work.ipynb",
                            f"amy/{A}/scratchpad.ipynb", "amy/random.ipynb"}
    assert "not inside a student's folder" in reasons["loose.ipynb"]
    assert "`homework5` matches no assignment" in reasons["amy/homework5/work.ipynb"]
    assert "matches no notebook of the assignment" in reasons[f"amy/{A}/scratchpad.ipynb"]
    graded = [c.path for s in found for cands in s.notebooks.values() for c in cands]
    assert len(graded) == 1


def test_a_lone_notebook_with_another_name_is_graded(tmp_path):
    """Is the only notebook of a one-notebook assignment graded whatever its name?"""
    _touch(tmp_path / "amy" / A / "my_notebook.ipynb")
    found, unmatched = find_submissions(tmp_path, COURSE)
    sub = _by_key(found)["amy", A]
    assert sub.status == "ok" and sub.notebooks[A][0].misnamed
    assert unmatched == []


def test_an_assignment_of_several_notebooks(tmp_path):
    """Are the notebooks of a several-notebook assignment matched by name, a missing one said?"""
    _touch(tmp_path / "amy" / "99_parts" / "part1.ipynb")
    _touch(tmp_path / "amy" / "99_parts" / "Part2 (1).ipynb")
    _touch(tmp_path / "bo" / "99_parts" / "part1.ipynb")
    found, _ = find_submissions(tmp_path, COURSE)
    subs = _by_key(found)
    assert [len(subs["amy", "99_parts"].notebooks[n]) for n in ("part1", "part2")] == [1, 1]
    bo = subs["bo", "99_parts"]
    assert bo.status == "ok" and bo.notebooks["part2"] == []
    assert any("no notebook `part2.ipynb`" in p for p in bo.problems)


def test_missing_and_empty_work(tmp_path):
    """Is no folder, or an empty one, not submitted, and a folder without notebooks invalid?"""
    (tmp_path / "amy" / A).mkdir(parents=True)
    _touch(tmp_path / "bo" / A / "notes.txt", "hi")
    (tmp_path / "cy").mkdir()
    # What `nbgrader collect` adds beside the notebooks, and nothing else, is empty too.
    _touch(tmp_path / "di" / A / "timestamp.txt", "2026-11-30 12:00:00 UTC")
    _touch(tmp_path / "di" / A / "submission_secret.txt", "x")
    subs = _by_key(find_submissions(tmp_path, COURSE)[0])
    assert subs["amy", A].status == "not_submitted"
    assert "empty_submission" in subs["amy", A].flags
    assert subs["bo", A].status == "invalid"
    assert subs["cy", A].status == "not_submitted"
    assert subs["di", A].status == "not_submitted"
    assert "empty_submission" in subs["di", A].flags
