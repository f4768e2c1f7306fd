"""A submission's graded cells are put back in the shape of the release, every change named.

Each kind of change a real submission makes to nbgrader's cells (copies, lost or edited
metadata, deleted cells, hidden tracebacks) is tried in at least two variants on the release of
05_hdf5_dataset, without running anything.
"""

from __future__ import annotations

import copy

import nbformat
import pytest

from autograder.grading.reconcile import grade_id, is_unanswered
from autograder.grading.reconcile import reconcile as reconcile_
from tests.helpers import ROOT

A = "05_hdf5_dataset"


def _run(sub, release):
    """The reconciled notebook and the tampering found."""
    done = reconcile_(sub, release)
    return done.notebook, done.tampering


@pytest.fixture(scope="module")
def release():
    return nbformat.read(ROOT / "notebooks" / A / f"{A}.ipynb", as_version=4)


@pytest.fixture
def sub(release):
    """A worked submission: the release with both answer cells filled in."""
    nb = copy.deepcopy(release)
    _cell(nb, "hdf5_dataset").source = "class HDF5Dataset(Dataset):\n    pass  # my answer\n"
    _cell(nb, "read_batch").source = "def read_batch(images, indices):\n    return 1\n"
    return nb


def _cell(nb, gid):
    return next(c for c in nb.cells if grade_id(c) == gid)


def _ids(nb):
    return [grade_id(c) for c in nb.cells if grade_id(c)]


def _assert_like_release(nb, release):
    """One cell per grade id, in the release's order, with the release's grading metadata."""
    assert _ids(nb) == _ids(release)
    for gid in _ids(release):
        assert _cell(nb, gid).metadata["nbgrader"] == _cell(release, gid).metadata["nbgrader"]


def test_an_untouched_worked_notebook_has_no_changes(sub, release):
    """Does a notebook that only answered get through unchanged, with nothing flagged?"""
    nb, changes = _run(sub, release)
    assert changes == []
    assert nbformat.writes(nb) == nbformat.writes(sub)


@pytest.mark.parametrize("where", ["after", "at_end"])
def test_a_copied_test_cell_is_kept_once_and_named(sub, release, where):
    """Is a copied test cell (same grade id) kept once, in its place, and the copy named?"""
    test = _cell(sub, "hdf5_dataset_streams")
    i = sub.cells.index(test)
    sub.cells.insert(i + 1 if where == "after" else len(sub.cells), copy.deepcopy(test))
    nb, changes = _run(sub, release)
    _assert_like_release(nb, release)
    assert len(nb.cells) == len(release.cells)
    assert any("duplicated cell `hdf5_dataset_streams`" in c for c in changes)


@pytest.mark.parametrize("stub_first", [True, False])
def test_a_copied_answer_cell_grades_the_last_copy_with_an_answer(sub, release, stub_first):
    """With a stub copy and an answered copy of one answer cell, is the answer graded?"""
    answer = _cell(sub, "hdf5_dataset")
    stub = copy.deepcopy(_cell(release, "hdf5_dataset"))
    i = sub.cells.index(answer)
    sub.cells.insert(i if stub_first else i + 1, stub)
    nb, changes = _run(sub, release)
    assert "my answer" in _cell(nb, "hdf5_dataset").source
    assert _ids(nb) == _ids(release)
    assert len(nb.cells) == len(sub.cells)  # the other copy stays, as an ordinary cell
    assert any("duplicated cell `hdf5_dataset`" in c and "last copy with an answer" in c
               for c in changes)


@pytest.mark.parametrize("how", ["emptied", "removed", "all_cells"])
def test_lost_grading_metadata_is_found_again(sub, release, how):
    """Is an answer whose nbgrader metadata was emptied or removed found again and graded?"""
    cells = sub.cells if how == "all_cells" else [_cell(sub, "hdf5_dataset")]
    for cell in cells:
        if how == "emptied":
            cell.metadata["nbgrader"] = {}
        else:
            cell.metadata = {}
    nb, changes = _run(sub, release)
    _assert_like_release(nb, release)
    assert "my answer" in _cell(nb, "hdf5_dataset").source
    assert any("`hdf5_dataset` had lost its grading metadata" in c for c in changes)


@pytest.mark.parametrize("key,value", [("points", 100), ("grade", False), ("locked", False),
                                       ("solution", True)])
def test_changed_grading_metadata_is_restored_and_named(sub, release, key, value):
    """Are points or grade/solution/locked flags a student changed restored, and named?"""
    _cell(sub, "hdf5_dataset_handles").metadata["nbgrader"][key] = value
    nb, changes = _run(sub, release)
    _assert_like_release(nb, release)
    assert any(f"changed `{key}` in the grading metadata of `hdf5_dataset_handles`" in c
               for c in changes), changes


@pytest.mark.parametrize("gid", ["hdf5_dataset", "hdf5_dataset_handles"])
def test_a_renamed_grade_id_is_restored(sub, release, gid):
    """Is a cell whose grade id was renamed matched back (answer) or put back (test)?"""
    _cell(sub, gid).metadata["nbgrader"]["grade_id"] = "my_cell"
    nb, changes = _run(sub, release)
    _assert_like_release(nb, release)
    assert any("`my_cell`" in c for c in changes)
    if gid == "hdf5_dataset":
        assert "my answer" in _cell(nb, gid).source


@pytest.mark.parametrize("which", ["one_test", "all_tests", "setup"])
def test_deleted_test_and_read_only_cells_are_put_back(sub, release, which):
    """Are deleted test cells (one or all) and a deleted read-only setup cell put back?"""
    gone = {"one_test": {"hdf5_dataset_streams"}, "setup": {"setup"},
            "all_tests": {g for g in _ids(release)
                          if _cell(release, g).metadata["nbgrader"].get("grade")}}[which]
    sub.cells = [c for c in sub.cells if grade_id(c) not in gone]
    nb, changes = _run(sub, release)
    _assert_like_release(nb, release)
    for gid in gone:
        assert any(f"cell `{gid}` was deleted or lost its grading metadata; it was put back" in c
                   for c in changes), changes
    setup = _cell(nb, "setup")
    assert nb.cells.index(setup) == release.cells.index(_cell(release, "setup"))


def test_an_edited_test_cell_is_named(sub, release):
    """Is an edited read-only cell named (nbgrader then restores its source)?"""
    _cell(sub, "hdf5_dataset_streams").source = "pass"
    _, changes = _run(sub, release)
    assert "edited the read-only cell `hdf5_dataset_streams`" in changes


@pytest.mark.parametrize("cheat", [
    "import IPython.core.interactiveshell\n"
    "IPython.core.interactiveshell.InteractiveShell.showtraceback = lambda *a, **k: None",
    "import IPython.core.interactiveshell\n"
    "IPython.core.interactiveshell.InteractiveShell.showtraceback = None",
    "setattr(get_ipython(), 'showtraceback', print)",
    "ip = get_ipython()\nsetattr(ip, 'show' + 'traceback', lambda *a, **k: None)",
    "get_ipython().__dict__.update(_showtraceback=lambda *a: None)",
])
def test_hiding_tracebacks_is_tampering(sub, release, cheat):
    """Are nbgrader's two 'cheat attempts' (a replaced showtraceback), and setattr, named?"""
    _cell(sub, "read_batch").source += "\n" + cheat
    _, changes = _run(sub, release)
    assert any("showtraceback" in c for c in changes), changes


def test_reading_showtraceback_is_not_tampering(sub, release):
    """Is code that only compares or mentions showtraceback left alone?"""
    _cell(sub, "read_batch").source += "\nprint(get_ipython().showtraceback == None)"
    assert _run(sub, release)[1] == []


def test_the_input_is_not_modified(sub, release):
    """Does reconcile leave the notebook it was given unchanged?"""
    sub.cells.append(copy.deepcopy(_cell(sub, "hdf5_dataset_streams")))
    before = nbformat.writes(sub)
    _run(sub, release)
    assert nbformat.writes(sub) == before


def test_a_read_only_cell_from_an_earlier_release_is_not_tampering(sub, release):
    """Is a test cell unchanged since an earlier release (checksum matches) a note, not blame?"""
    from nbgrader.utils import compute_checksum

    old = _cell(sub, "hdf5_dataset_streams")
    old.source = '"""an earlier wording of this test"""\npass'
    old.metadata["nbgrader"]["checksum"] = compute_checksum(old)
    done = reconcile_(sub, release)
    assert done.tampering == []
    assert any("`hdf5_dataset_streams`" in n and "earlier release" in n for n in done.notes)
    old.source += "\n# and then edited by the learner"
    assert "edited the read-only cell `hdf5_dataset_streams`" in reconcile_(sub, release).tampering


def test_unanswered_means_no_answer_cell_and_no_added_code(sub, release):
    """Is only a notebook with every stub untouched and no code of its own unanswered?"""
    assert is_unanswered(copy.deepcopy(release), release)
    assert not is_unanswered(sub, release)
    added = copy.deepcopy(release)
    added.cells.append(nbformat.v4.new_code_cell("class HDF5Dataset:\n    pass"))
    assert not is_unanswered(added, release)
    empty = copy.deepcopy(release)
    empty.cells.append(nbformat.v4.new_code_cell("  "))
    assert is_unanswered(empty, release)


def test_learner_code_in_a_copy_of_a_read_only_cell_is_kept(sub, release):
    """Does a copy of a read-only cell that holds the learner's own code stay, as an ordinary
    cell, while a pure copy is removed?"""
    setup = _cell(sub, "setup")
    mine = copy.deepcopy(setup)
    mine.source += "\ndef my_helper():\n    return 1"
    sub.cells.insert(sub.cells.index(_cell(sub, "hdf5_dataset")), mine)
    sub.cells.insert(sub.cells.index(_cell(sub, "hdf5_dataset")), copy.deepcopy(setup))
    nb, changes = _run(sub, release)
    _assert_like_release(nb, release)
    assert len(nb.cells) == len(release.cells) + 1
    assert any("def my_helper" in c.source and grade_id(c) is None for c in nb.cells)
    assert any("duplicated cell `setup` (3 copies)" in c and "ordinary cells" in c
               for c in changes), changes


def test_an_answer_carrying_a_test_cells_metadata_is_found_again(sub, release):
    """Is an answer cell that carries a test cell's grading metadata graded as the answer,
    and the test cell kept?"""
    answer = _cell(sub, "hdf5_dataset")
    answer.metadata["nbgrader"] = copy.deepcopy(
        _cell(sub, "hdf5_dataset_returns_samples").metadata["nbgrader"])
    nb, changes = _run(sub, release)
    _assert_like_release(nb, release)
    assert "my answer" in _cell(nb, "hdf5_dataset").source
    assert not is_unanswered(nb, release)
