"""Start JupyterLab on the course, the way `make lab` does."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from autograder.course import interpreter_bin_on_path
from memcourse.data import ensure_dataset
from memcourse.paths import repo_root

# Jupyter configuration the course ships for its learners' servers, local and on a hub:
# labconfig/default_setting_overrides.json turns off JupyterLab's first-run question about
# Jupyter news, which otherwise covers a corner of the first notebook.
COURSE_JUPYTER_CONFIG = Path(__file__).resolve().parents[1] / "jupyter-config"


def course_jupyter_config_on_path() -> None:
    """Put `COURSE_JUPYTER_CONFIG` first on this process's JUPYTER_CONFIG_PATH (inherited by
    the server it starts), keeping whatever the user already had there after it."""
    current = [p for p in os.environ.get("JUPYTER_CONFIG_PATH", "").split(os.pathsep) if p]
    if str(COURSE_JUPYTER_CONFIG) not in current:
        os.environ["JUPYTER_CONFIG_PATH"] = os.pathsep.join([str(COURSE_JUPYTER_CONFIG),
                                                             *current])


def lab_command(port: int | None = None, open_browser: bool = True,
                token: str | None = None) -> list[str]:
    """Return the command that serves the course root and opens `notebooks/` in JupyterLab.

    The server's root is the course root, so the nbgrader extensions (formgrader, assignment
    list) find `nbgrader_config.py`; learners land in `notebooks/`. The interpreter's bin/ is
    put on this process's PATH, which the server inherits: formgrader creates the gradebook
    with nbgrader's `alembic` script, found by name; the course's Jupyter configuration is
    put on its JUPYTER_CONFIG_PATH (`course_jupyter_config_on_path`).
    """
    interpreter_bin_on_path()
    course_jupyter_config_on_path()
    cmd = [sys.executable, "-m", "jupyterlab", f"--ServerApp.root_dir={repo_root()}",
           "--LabApp.default_url=/lab/tree/notebooks"]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        cmd.append("--allow-root")  # containers and CI run as root; JupyterLab refuses otherwise
    if port is not None:
        cmd.append(f"--ServerApp.port={port}")
    if not open_browser:
        cmd.append("--no-browser")
    if token is not None:
        cmd.append(f"--IdentityProvider.token={token}")
    return cmd


def run_lab(port: int | None = None, open_browser: bool = True) -> None:
    """Make sure the default dataset exists, then replace this process with JupyterLab."""
    ensure_dataset()
    cmd = lab_command(port=port, open_browser=open_browser)
    os.chdir(Path(repo_root()))
    os.execv(cmd[0], cmd)
