"""Build the student notebooks: clean `solutions/`, then let nbgrader generate `notebooks/`.

`solutions/` is the only hand-edited tree. Cleaning strips outputs, execution counts and
editor noise so the committed files diff cleanly; generation is nbgrader's own
`generate_assignment`, driven through its Python API.

nbgrader never writes into `notebooks/` itself: its `--force` deletes the whole release folder,
a learner's answers and `scratch/` files with it. It generates into a staging folder instead
(`stage_release`, which grading uses too), and `generate_notebooks` copies the result over only
the release notebooks that hold no learner work.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import nbformat
from nbgrader.utils import compute_checksum
from traitlets.config import Config

from autograder import cells, course
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
# Where notebooks write while they run; a learner's files there are never deleted or replaced.
SCRATCH = "scratch"
# What JupyterLab and Python leave beside a notebook: neither released nor a learner's work.
EDITOR_LITTER = (".ipynb_checkpoints", "__pycache__")
# nbgrader reads the source and release paths as glob and regex patterns without escaping them.
PATTERN_CHARACTERS = set("[]*?+(){}^$|\\")


class BuildError(CourseError):
    """nbgrader could not generate an assignment; the message carries its log."""


class LearnerWorkError(CourseError):
    """Regenerating would replace a learner's work in `notebooks/`; nothing was written.

    `work` maps each notebook or file (relative to the course root) to what it holds.
    """

    def __init__(self, message: str, work: dict[str, str]):
        super().__init__(message)
        self.work = work


@dataclass(frozen=True)
class StagedAssignment:
    """One assignment as `stage_release` left it: nbgrader's source and release copies."""

    name: str
    source: Path  # staging/source/<name>: the cleaned copy of solutions/<name>
    release: Path  # staging/release/<name>: what learners receive, as nbgrader generated it
    notebooks: tuple[str, ...]  # notebook names without ".ipynb", sorted; any number of them

    def source_notebook(self, notebook: str) -> Path:
        """The staged instructor notebook `notebook` (a name without `.ipynb`)."""
        return self.source / f"{notebook}.ipynb"

    def release_notebook(self, notebook: str) -> Path:
        """The staged release notebook `notebook` (a name without `.ipynb`)."""
        return self.release / f"{notebook}.ipynb"

    @property
    def release_notebooks(self) -> list[Path]:
        """Every staged release notebook of the assignment, in notebook-name order."""
        return [self.release_notebook(n) for n in self.notebooks]


@dataclass(frozen=True)
class StagedCourse:
    """What `stage_release` built: nbgrader's source and release trees outside the course."""

    staging: Path
    source_directory: Path  # staging/source, absolute
    release_directory: Path  # staging/release, absolute
    assignments: dict[str, StagedAssignment]

    def __getitem__(self, assignment: str) -> StagedAssignment:
        return self.assignments[assignment]

    def release_notebook(self, assignment: str, notebook: str | None = None) -> Path:
        """The staged release notebook `notebook` of `assignment` (default: the same name)."""
        return self.assignments[assignment].release_notebook(notebook or assignment)

    def nbgrader_config(self):
        """A traitlets Config pointing nbgrader's source and release directories at the stage.

        Pass it as `course.api(root, extra=...)` so that later nbgrader steps (autograde copies
        the assignment's other files from the source directory) read the staged trees too.
        """
        config = Config()
        # Absolute paths: nbgrader joins them with the course root, and an absolute one wins.
        config.CourseDirectory.source_directory = str(self.source_directory)
        config.CourseDirectory.release_directory = str(self.release_directory)
        return config


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


def _overlaps(a: Path, b: Path) -> bool:
    return a == b or a in b.parents or b in a.parents


def _check_sources(root: Path, assignments: list[str]) -> None:
    """Raise BuildError unless each assignment is a folder of notebooks in `solutions/`."""
    for name in assignments:
        folder = root / "solutions" / name
        if not folder.is_dir() or not any(folder.glob("*.ipynb")):
            known = ", ".join(course.assignments(root, "solutions")) or "none"
            raise BuildError(f"solutions/ has no assignment {name!r} with a notebook "
                             f"(the assignments are: {known}).")


def stage_release(root: Path, staging: Path, assignments: list[str]) -> StagedCourse:
    """Generate the release of `assignments` under `staging`; return where everything is.

    Each `solutions/<a>` is copied to `staging/source/<a>` (without scratch/ and editor
    litter), the copy is cleaned, and nbgrader's `generate_assignment` writes
    `staging/release/<a>`; like `make notebooks`, it also records the assignment's cells in the
    gradebook under `root/grading/`, which grading needs. Nothing is written into
    `root/solutions` or `root/notebooks`, so grading can run in a clone where a learner works.
    Earlier staged copies of these assignments are replaced.

    Raises BuildError when an assignment is not in `solutions/`, when `staging` overlaps those
    trees or has a path nbgrader would read as a pattern, or when nbgrader fails.
    """
    root = Path(root).resolve()
    staging = Path(staging).resolve()
    source_dir, release_dir = staging / "source", staging / "release"
    for tree in (root / "solutions", root / "notebooks"):
        if any(_overlaps(d, tree) for d in (source_dir, release_dir)):
            raise BuildError(f"cannot stage a release in {staging}: it overlaps {tree}, which "
                             "staging must never write into; choose a folder outside it.")
    if PATTERN_CHARACTERS & set(str(staging)):
        raise BuildError(f"cannot stage a release in {staging}: nbgrader reads that path as a "
                         "pattern because of one of the characters [ ] * ? + ( ) { } ^ $ | \\; "
                         "choose a folder without them.")
    _check_sources(root, assignments)

    ignore = shutil.ignore_patterns(SCRATCH, *EDITOR_LITTER)
    for name in assignments:
        for old in (source_dir / name, release_dir / name):
            if old.exists():
                shutil.rmtree(old)
        # copyfile, not copy2: the copies are cleaned below even if the sources are read-only.
        shutil.copytree(root / "solutions" / name, source_dir / name, ignore=ignore,
                        copy_function=shutil.copyfile)
        clean_tree(source_dir, [name])
    release_dir.mkdir(parents=True, exist_ok=True)

    found: dict[str, StagedAssignment] = {}
    nbgrader = course.api(root, extra=StagedCourse(staging, source_dir, release_dir, found)
                          .nbgrader_config())
    for name in assignments:
        result = nbgrader.generate_assignment(name, force=True, create=True)
        if not result["success"]:
            raise BuildError(f"nbgrader could not generate {name}:\n{result.get('log', '')}"
                             f"\n{result.get('error', '')}")
        notebooks = tuple(sorted(p.stem for p in (release_dir / name).glob("*.ipynb")))
        found[name] = StagedAssignment(name, source_dir / name, release_dir / name, notebooks)
    return StagedCourse(staging, source_dir, release_dir, found)


def _is_litter(relative: Path) -> bool:
    return any(part in EDITOR_LITTER for part in relative.parts)


def _content_key(cell) -> tuple[str, str]:
    return cell.cell_type, cell.source


def learner_work(current: Path, fresh: Path) -> list[str]:
    """Say what learner work release notebook `current` holds that `fresh` would discard.

    Work is (1) a cell nbgrader checksummed (answer, test and read-only cells) whose checksum
    no longer matches, i.e. an edited answer, and (2) a non-empty cell of `current` that matches
    no cell of `fresh`, the release nbgrader generates now, by cell id or by type and source,
    i.e. a cell the learner added. A cell the instructor deleted from `solutions/` also counts
    as (2): after checking, the instructor regenerates with `force`. Outputs are not work, nor
    are edits to the instructor's plain cells, which cannot be told from the instructor's own.
    Returns short descriptions, empty when nothing would be lost.
    """
    try:
        nb = nbformat.read(current, as_version=4)
    except Exception:  # a learner's half-saved or hand-edited file: keep it, whatever it is
        return ["content that cannot be read as a notebook"]
    edited = []
    for cell in nb.cells:
        meta = cells.nbgrader_metadata(cell)
        if "checksum" not in meta:
            continue
        try:
            changed = compute_checksum(cell) != meta["checksum"]
        except Exception:  # nbgrader metadata the learner broke: the cell was edited
            changed = True
        if changed:
            edited.append(str(meta.get("grade_id") or cell.get("id") or "?"))

    reference = nbformat.read(fresh, as_version=4).cells
    ids = Counter(c.get("id") for c in reference if c.get("id"))
    contents = Counter(_content_key(c) for c in reference)
    added = 0
    for cell in nb.cells:
        # Matching by id keeps the instructor's edits to a cell from looking like additions;
        # matching by content covers cells whose id changed (a copy, an nbformat upgrade).
        if cell.get("id") and ids[cell.get("id")] > 0:
            ids[cell.get("id")] -= 1
        elif contents[_content_key(cell)] > 0:
            contents[_content_key(cell)] -= 1
        elif cell.source.strip():
            added += 1
    work = []
    if edited:
        work.append(f"edited cells {_and(edited)}")
    if added:
        work.append(f"{added} added cell{'s' if added > 1 else ''}")
    return work


def _and(items: list[str]) -> str:
    return items[0] if len(items) == 1 else f"{', '.join(items[:-1])} and {items[-1]}"


def _release_files(folder: Path) -> list[Path]:
    """Every file below `folder`, relative to it, except editor litter."""
    return sorted(p.relative_to(folder) for p in folder.rglob("*")
                  if p.is_file() and not _is_litter(p.relative_to(folder)))


def _stale_work(folder: Path) -> list[Path]:
    """What a release folder whose assignment left `solutions/` holds, except scratch/ files.

    Without a release to compare with, an added cell cannot be told from the instructor's, so
    every notebook and other file counts as possible work.
    """
    return [p for p in _release_files(folder) if p.parts[0] != SCRATCH]


def _refusal(work: dict[str, str]) -> str:
    paths = [f"{path} ({what})" for path, what in work.items()]
    one = len(paths) == 1
    it = "it" if one else "them"
    return (f"{_and(paths)} {'holds' if one else 'hold'} work that regenerating would discard, "
            f"so notebooks/ was left as it is: copy {it} elsewhere, or run "
            f"`memcourse notebooks --force` to discard {it} (files in scratch/ are always kept).")


def _replace_file(src: Path, dest: Path) -> None:
    """Put a copy of `src` at `dest` in one step, so no reader ever sees half a notebook."""
    if dest.is_file() and dest.read_bytes() == src.read_bytes():
        return  # unchanged: keep its timestamp, so an open JupyterLab tab sees no change
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".tmp")
    os.close(fd)
    try:
        shutil.copyfile(src, tmp)
        os.chmod(tmp, src.stat().st_mode & 0o777)
        os.replace(tmp, dest)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def generate_notebooks(root: Path | None = None, assignments: list[str] | None = None,
                       force: bool = False) -> list[str]:
    """Clean `solutions/` and regenerate `notebooks/` from it; return the assignments built.

    nbgrader generates into a temporary stage; its files then replace those in `notebooks/`.
    A release notebook that holds a learner's work (`learner_work`) is never replaced unless
    `force`; files in `notebooks/*/scratch/` and other files the release does not contain are
    never touched. When all assignments are built, release folders whose assignment left
    `solutions/` are removed, except their scratch/ files; one holding any other file counts
    as work. Raises LearnerWorkError (`notebooks/` and `solutions/` left as they were) when work
    would be lost, BuildError when an assignment is missing or nbgrader fails.
    """
    root = Path(root or course.repo_root()).resolve()
    names = assignments or course.assignments(root, "solutions")
    _check_sources(root, names)
    release = root / "notebooks"
    stale = [] if assignments or not release.is_dir() else \
        sorted(set(course.assignments(root, "notebooks")) - set(names))
    with tempfile.TemporaryDirectory(prefix="memcourse-release-") as tmp:
        staged = stage_release(root, Path(tmp), names)

        work: dict[str, str] = {}
        for name in names:
            for notebook in staged[name].release_notebooks:
                current = release / name / notebook.name
                if current.is_file():
                    found = learner_work(current, notebook)
                    if found:
                        work[str(current.relative_to(root))] = "; ".join(found)
        for name in stale:
            for path in _stale_work(release / name):
                work[f"notebooks/{name}/{path}"] = "its assignment is no longer in solutions/"
        if work and not force:
            raise LearnerWorkError(_refusal(work), work)

        clean_tree(root / "solutions", names)  # the instructor's own sources, cleaned in place
        for name in names:
            for path in _release_files(staged[name].release):
                _replace_file(staged[name].release / path, release / name / path)
    for name in stale:  # only scratch/ survives; --force has been given if anything else was
        folder = release / name
        for path in sorted(folder.iterdir()):
            if path.name == SCRATCH and path.is_dir():
                continue
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink()
        if not any(folder.iterdir()):
            folder.rmdir()
    return names
