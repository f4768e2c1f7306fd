"""The nbgrader course: where it is on disk and an NbGraderAPI bound to its configuration.

Everything that drives nbgrader goes through `api()`, one process and nbgrader's Python API,
because each `nbgrader` command-line call costs seconds of start-up.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

from memcourse.paths import repo_root

__all__ = ["repo_root", "api", "assignments", "copy_course", "load_config"]

CONFIG_FILENAME = "nbgrader_config.py"


def _avoid_slow_import() -> None:
    """Skip the optional `rfc3987_syntax` module, which adds ~3 s to importing nbgrader.

    jsonschema only uses it to validate the rarely used `iri` formats; without it those formats
    are simply not checked (see ../shared/research/toolchain-probe.md, section 3).
    """
    sys.modules.setdefault("rfc3987_syntax", None)


def interpreter_bin_on_path() -> None:
    """Make this interpreter's scripts (nbgrader calls `alembic` by name) findable on PATH.

    Running `.venv/bin/python` without activating the virtual environment leaves its bin/ off
    PATH, and nbgrader then fails to open a new gradebook (formgrader answers 500, `memcourse
    grade` stops). Processes started afterwards (JupyterLab) inherit the fixed PATH.
    """
    bin_dir = str(Path(sys.executable).parent)
    if bin_dir not in os.environ.get("PATH", "").split(os.pathsep):
        os.environ["PATH"] = bin_dir + os.pathsep + os.environ.get("PATH", "")


def load_config(root: Path | None = None):
    """Load `nbgrader_config.py` from the course root into a traitlets Config."""
    # lazy: traitlets.config (~40 ms); `memcourse --help` and autograder.hints import this module
    from traitlets.config.loader import PyFileConfigLoader

    root = Path(root or repo_root()).resolve()
    if not (root / CONFIG_FILENAME).is_file():
        raise FileNotFoundError(f"No {CONFIG_FILENAME} in {root}: is this the course root?")
    return PyFileConfigLoader(CONFIG_FILENAME, path=str(root)).load_config()


def api(root: Path | None = None, log_level: str = "WARN", extra=None):
    """Return an `NbGraderAPI` for the course at `root` (default: this repository).

    `extra` is a traitlets Config merged over the course's own configuration.
    """
    _avoid_slow_import()
    interpreter_bin_on_path()
    # lazy: nbgrader (~1.5 s) only after _avoid_slow_import(), and never at `memcourse --help`
    from nbgrader.apps.api import NbGraderAPI
    from nbgrader.coursedir import CourseDirectory  # lazy: nbgrader, as on the line above

    config = load_config(root)
    if extra is not None:
        config.merge(extra)
    config.NbGraderAPI.log_level = log_level
    coursedir = CourseDirectory(config=config)
    return NbGraderAPI(coursedir=coursedir, config=config)


def assignments(root: Path | None = None, tree: str = "solutions") -> list[str]:
    """Return the assignment folder names in `tree` (solutions/ or notebooks/), sorted."""
    base = Path(root or repo_root()) / tree
    return sorted(p.name for p in base.iterdir() if p.is_dir() and not p.name.startswith("."))


def copy_course(src: Path, dest: Path) -> Path:
    """Copy what nbgrader needs of the course (config, solutions, notebooks) into `dest`."""
    dest.mkdir(parents=True, exist_ok=True)
    shutil.copy2(src / "nbgrader_config.py", dest / "nbgrader_config.py")
    ignore = shutil.ignore_patterns("scratch", ".ipynb_checkpoints", "__pycache__")
    for tree in ("solutions", "notebooks"):
        if (src / tree).is_dir():
            shutil.copytree(src / tree, dest / tree, ignore=ignore)
    return dest
