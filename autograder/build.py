"""Build the student notebooks: clean `solutions/`, then let nbgrader generate `notebooks/`.

`solutions/` is the only hand-edited tree. Cleaning strips outputs, execution counts and
editor noise so the committed files diff cleanly; generation is nbgrader's own
`generate_assignment`, driven through its Python API.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import nbformat

from autograder import course
from memcourse.errors import CourseError

# Cell metadata that only records an editing session; nbgrader's own keys and tags stay.
VOLATILE_CELL_METADATA = (
    "collapsed", "scrolled", "execution", "ExecuteTime", "trusted", "lines_to_next_cell",
)
KERNELSPEC = {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"}
# What ipykernel reports for the course's Python; stored as is, so that JupyterLab, which writes
# the kernel's language_info into the notebook when it connects, finds nothing to change.
LANGUAGE_INFO = {"codemirror_mode": {"name": "ipython", "version": 3}, "file_extension": ".py",
                 "mimetype": "text/x-python", "name": "python", "nbconvert_exporter": "python",
                 "pygments_lexer": "ipython3", "version": "3.11.7"}


class BuildError(CourseError):
    """nbgrader could not generate an assignment; the message carries its log."""


def clean_notebook(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """Return `nb` without outputs, execution counts, widget state or session metadata."""
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
        for key in VOLATILE_CELL_METADATA:
            cell.metadata.pop(key, None)
    nb.metadata = nbformat.NotebookNode(
        kernelspec=nbformat.NotebookNode(KERNELSPEC),
        language_info=nbformat.NotebookNode(LANGUAGE_INFO),
    )
    return nb


def notebook_is_clean(path: Path) -> bool:
    """True if the notebook file at `path` is already in its cleaned, committed form."""
    text = Path(path).read_text(encoding="utf-8")
    nb = nbformat.reads(text, as_version=4)
    return nbformat.writes(clean_notebook(nb)) + "\n" == text


def clean_file(path: Path) -> bool:
    """Clean one notebook file in place; return True if it changed."""
    path = Path(path)
    text = path.read_text(encoding="utf-8")
    cleaned = nbformat.writes(clean_notebook(nbformat.reads(text, as_version=4))) + "\n"
    if cleaned == text:
        return False
    path.write_text(cleaned, encoding="utf-8")
    return True


def clean_tree(tree: Path, assignments: list[str] | None = None) -> list[Path]:
    """Clean every notebook below `tree` (or only those assignments); return what changed."""
    paths = sorted(Path(tree).glob("*/*.ipynb"))
    if assignments is not None:
        paths = [p for p in paths if p.parent.name in assignments]
    return [p for p in paths if clean_file(p)]


def generate_notebooks(root: Path | None = None, assignments: list[str] | None = None) -> list[str]:
    """Clean `solutions/` and regenerate `notebooks/` from it; return the assignments built.

    Release folders whose assignment no longer exists in `solutions/` are removed, so the two
    trees always hold the same assignments.
    """
    root = Path(root or course.repo_root()).resolve()
    clean_tree(root / "solutions", assignments)
    names = assignments or course.assignments(root, "solutions")
    nbgrader = course.api(root)
    for name in names:
        result = nbgrader.generate_assignment(name, force=True, create=True)
        if not result["success"]:
            raise BuildError(f"nbgrader could not generate {name}:\n{result.get('log', '')}"
                             f"\n{result.get('error', '')}")
    if assignments is None:
        release = root / "notebooks"
        for stale in sorted(set(course.assignments(root, "notebooks")) - set(names)):
            shutil.rmtree(release / stale)
    return names
