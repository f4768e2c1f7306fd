"""Does building never overwrite a learner's work in notebooks/, nor the instructor's sources?

`make notebooks` (`generate_notebooks`) must refuse to replace a release notebook a learner has
worked in, keep `scratch/` files always, and `stage_release` (what grading uses) must write
nothing into `solutions/` or `notebooks/` at all.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from autograder.grading import build

# A small assignment the other tests rarely touch; any assignment would do.
A = "03_on_the_fly_loading"
RELEASE = Path("notebooks") / A / f"{A}.ipynb"


def _edit(path: Path, change) -> None:
    """Apply `change` to the notebook at `path`, as a learner's saved edit."""
    nb = nbformat.read(path, as_version=4)
    change(nb)
    nbformat.write(nb, path)


def _answer_an_exercise(nb: nbformat.NotebookNode) -> None:
    cell = next(c for c in nb.cells if c.metadata.get("nbgrader", {}).get("solution"))
    cell.source = cell.source.replace("# YOUR CODE HERE", "x = 42  # my answer")
    assert "my answer" in cell.source


def _add_a_cell(nb: nbformat.NotebookNode) -> None:
    nb.cells.insert(3, nbformat.v4.new_markdown_cell("My notes: chunks are read whole."))


def _run_without_editing(nb: nbformat.NotebookNode) -> None:
    """What running every cell and leaving an empty cell does: outputs, counts, kernel info."""
    for n, cell in enumerate(c for c in nb.cells if c.cell_type == "code"):
        cell.execution_count = n + 1
        cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text="ran\n")]
        cell.metadata["execution"] = {"iopub.status.idle": "2026-01-01T00:00:00Z"}
    nb.metadata["language_info"]["version"] = "3.11.9"
    nb.cells.append(nbformat.v4.new_code_cell(""))


def _tree_state(tree: Path) -> dict[str, tuple]:
    """Every file and folder below `tree`: content hash, mode and modification time (ns)."""
    state = {}
    for path in sorted([tree, *tree.rglob("*")]):
        st = path.stat()
        digest = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else "dir"
        state[str(path.relative_to(tree))] = (digest, st.st_mode, st.st_mtime_ns)
    return state


# --- what counts as a learner's work (no nbgrader generation: fast) ---------------------------

def test_learner_work_finds_an_edited_answer(repo, tmp_path):
    """Is an answer cell whose checksum no longer matches reported, by its grade id?"""
    current = tmp_path / "current.ipynb"
    shutil.copy(repo / RELEASE, current)
    _edit(current, _answer_an_exercise)
    work = build.learner_work(current, repo / RELEASE)
    assert work and work[0].startswith("edited cells "), work


def test_learner_work_finds_an_added_cell(repo, tmp_path):
    """Is a cell the learner added (in no cell of the release) reported?"""
    current = tmp_path / "current.ipynb"
    shutil.copy(repo / RELEASE, current)
    _edit(current, _add_a_cell)
    assert build.learner_work(current, repo / RELEASE) == ["1 added cell"]


def test_outputs_and_empty_cells_are_not_work(repo, tmp_path):
    """Are outputs, execution counts, kernel metadata and an empty new cell left unreported?"""
    current = tmp_path / "current.ipynb"
    shutil.copy(repo / RELEASE, current)
    _edit(current, _run_without_editing)
    assert build.learner_work(current, repo / RELEASE) == []


def test_unreadable_release_notebook_counts_as_work(repo, tmp_path):
    """Is a release file that is no longer a notebook (a half-saved file) kept as work?"""
    current = tmp_path / "current.ipynb"
    current.write_text('{"cells": [', encoding="utf-8")
    assert build.learner_work(current, repo / RELEASE)


def test_stage_release_refuses_to_stage_into_the_course_trees(course_copy):
    """Does stage_release refuse a staging folder inside notebooks/ or solutions/?"""
    for tree in ("notebooks", "solutions"):
        with pytest.raises(build.BuildError, match="overlaps"):
            build.stage_release(course_copy, course_copy / tree / "stage", [A])
    assert not (course_copy / "notebooks" / "stage").exists()
    assert not (course_copy / "solutions" / "stage").exists()


# --- generate_notebooks (`make notebooks`) ------------------------------------------------------

@pytest.mark.parametrize("change", [_answer_an_exercise, _add_a_cell], ids=["answer", "cell"])
def test_generate_refuses_to_replace_a_learners_work(course_copy, change):
    """Is a release notebook with an edited answer or an added cell left as it is, and named?"""
    notebook = course_copy / RELEASE
    _edit(notebook, change)
    before = notebook.read_bytes()
    solutions = _tree_state(course_copy / "solutions")
    with pytest.raises(build.LearnerWorkError) as refused:
        build.generate_notebooks(course_copy, [A])
    message = str(refused.value)
    assert str(RELEASE) in message and "--force" in message and "\n" not in message
    assert notebook.read_bytes() == before
    assert _tree_state(course_copy / "solutions") == solutions


def _is_fresh_release(path: Path) -> bool:
    """True if `path` is a release notebook as generated: no outputs, no learner work.

    (The committed notebooks/ is not the reference: solutions/ may be mid-edit in a checkout.)
    """
    nb = nbformat.read(path, as_version=4)
    return not build.learner_work(path, path) and not any(
        c.get("outputs") or c.get("execution_count") for c in nb.cells if c.cell_type == "code")


def test_force_replaces_the_work_but_keeps_scratch(course_copy):
    """Does force restore the release notebook while scratch/ and other files stay?"""
    notebook = course_copy / RELEASE
    _edit(notebook, _answer_an_exercise)
    scratch = course_copy / "notebooks" / A / "scratch" / "my_dataset.py"
    scratch.parent.mkdir()
    scratch.write_text("class MyDataset: ...\n")
    notes = course_copy / "notebooks" / A / "notes.md"
    notes.write_text("what I learned\n")
    with pytest.raises(build.LearnerWorkError):
        build.generate_notebooks(course_copy, [A])
    assert scratch.read_text() == "class MyDataset: ...\n"
    build.generate_notebooks(course_copy, [A], force=True)
    assert "my answer" not in notebook.read_text() and _is_fresh_release(notebook)
    assert scratch.read_text() == "class MyDataset: ...\n"
    assert notes.read_text() == "what I learned\n"


def test_generate_keeps_scratch_and_regenerates_a_notebook_that_was_only_run(course_copy):
    """Without force: are outputs alone replaced silently, and scratch/ files kept?"""
    notebook = course_copy / RELEASE
    _edit(notebook, _run_without_editing)
    scratch = course_copy / "notebooks" / A / "scratch" / "loader.py"
    scratch.parent.mkdir()
    scratch.write_text("x = 1\n")
    build.generate_notebooks(course_copy, [A])
    assert _is_fresh_release(notebook)
    assert scratch.read_text() == "x = 1\n"


def test_instructor_edits_regenerate_without_force(course_copy):
    """Is an instructor's change to a cell in solutions/ released without a refusal?"""
    source = course_copy / "solutions" / A / f"{A}.ipynb"

    def reword(nb):
        cell = next(c for c in nb.cells if c.cell_type == "markdown" and "nbgrader" not in
                    c.metadata)
        cell.source += "\n\nA sentence the instructor added."

    _edit(source, reword)
    build.generate_notebooks(course_copy, [A])
    assert "A sentence the instructor added." in (course_copy / RELEASE).read_text()


def test_a_removed_assignment_keeps_its_scratch_and_its_work(course_copy):
    """Is a release folder whose assignment left solutions/ kept while it holds work?"""
    gone = course_copy / "notebooks" / "07_gone"
    (gone / "scratch").mkdir(parents=True)
    (gone / "scratch" / "mine.py").write_text("y = 2\n")
    shutil.copy(course_copy / RELEASE, gone / "07_gone.ipynb")
    with pytest.raises(build.LearnerWorkError, match="notebooks/07_gone/07_gone.ipynb"):
        build.generate_notebooks(course_copy)
    assert (gone / "07_gone.ipynb").is_file()
    build.generate_notebooks(course_copy, force=True)
    assert not (gone / "07_gone.ipynb").exists()
    assert (gone / "scratch" / "mine.py").read_text() == "y = 2\n"


def test_cli_refuses_in_one_sentence_and_force_overrides(course_copy):
    """Does `memcourse notebooks` exit 2 with one sentence naming the notebook; --force, 0?"""
    _edit(course_copy / RELEASE, _add_a_cell)
    command = [sys.executable, "-m", "memcourse_apps", "notebooks", "--course", str(course_copy),
               "--assignment", A]
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    refused = subprocess.run(command, cwd=course_copy, capture_output=True, text=True, env=env)
    assert refused.returncode == 2, refused.stderr
    lines = refused.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in refused.stderr, refused.stderr
    assert lines[0].startswith(f"memcourse: {RELEASE} (1 added cell) holds work")
    assert "memcourse notebooks --force" in lines[0]
    forced = subprocess.run([*command, "--force"], cwd=course_copy, capture_output=True,
                            text=True, env=env)
    assert forced.returncode == 0, forced.stderr
    assert "My notes" not in (course_copy / RELEASE).read_text()


# --- stage_release (what grading uses) ---------------------------------------------------------

def test_stage_release_writes_nothing_into_the_course(course_copy, tmp_path):
    """Are solutions/ and notebooks/ untouched (bytes, modes, mtimes), and is the release the
    same as `generate_notebooks` makes?"""
    source = course_copy / "solutions" / A / f"{A}.ipynb"
    _edit(source, _run_without_editing)  # uncleaned sources: cleaning in place would show
    _edit(course_copy / RELEASE, _answer_an_exercise)  # a learner's work: replacing it would
    (course_copy / "notebooks" / A / "scratch").mkdir()
    (course_copy / "notebooks" / A / "scratch" / "mine.py").write_text("z = 3\n")
    trees = {t: _tree_state(course_copy / t) for t in ("solutions", "notebooks")}

    staged = build.stage_release(course_copy, tmp_path / "stage", [A])

    for tree, state in trees.items():
        assert _tree_state(course_copy / tree) == state, f"stage_release wrote into {tree}/"
    assert staged[A].notebooks == (A,)
    assert staged.release_notebook(A) == (tmp_path / "stage" / "release" / A / f"{A}.ipynb")
    assert not list((tmp_path / "stage").rglob("scratch"))
    # The copies were cleaned (as `make notebooks` cleans solutions/), so the release is too.
    assert build.notebook_is_clean(staged[A].source_notebook(A))
    assert build.notebook_is_clean(staged.release_notebook(A))
    build.generate_notebooks(course_copy, [A], force=True)
    assert staged.release_notebook(A).read_bytes() == (course_copy / RELEASE).read_bytes()
    assert (course_copy / "grading" / "gradebook.db").is_file()


def test_stage_release_returns_every_notebook_of_an_assignment(course_copy, tmp_path):
    """With two notebooks in one assignment, are both staged and returned?"""
    folder = course_copy / "solutions" / A
    shutil.copy(folder / f"{A}.ipynb", folder / "part_2.ipynb")
    staged = build.stage_release(course_copy, tmp_path / "stage", [A])
    assert staged[A].notebooks == (A, "part_2")
    assert [p.name for p in staged[A].release_notebooks] == [f"{A}.ipynb", "part_2.ipynb"]
    assert all(p.is_file() for p in staged[A].release_notebooks)
    text = staged[A].release_notebook("part_2").read_text()
    assert "BEGIN SOLUTION" not in text and "# YOUR CODE HERE" in text
    assert not (course_copy / "notebooks" / A / "part_2.ipynb").exists()
