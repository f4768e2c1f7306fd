"""Does the repository keep the promises its README and CI make?"""

from __future__ import annotations

import re
import subprocess


def test_ci_runs_exactly_the_readme_test_command(repo):
    """Does .ci/run run `make test`, the command the README gives for testing?"""
    readme = (repo / "README.md").read_text()
    assert re.search(r"^make test\b", readme, re.M)
    ci = (repo / ".ci" / "run").read_text()
    commands = [line.strip() for line in ci.splitlines()
                if line.strip() and not line.lstrip().startswith("#")]
    assert commands[-1] == "exec make test"


def test_readme_puts_the_two_commands_first(repo):
    """Are `make lab` and `make test` the first commands a reader meets?"""
    blocks = re.findall(r"```bash\n(.*?)```", (repo / "README.md").read_text(), re.S)
    first = [line.split("#")[0].strip() for line in blocks[0].splitlines()]
    assert first[:2] == ["make lab", "make test"]


def test_generated_and_grading_output_is_ignored(repo):
    """Does git ignore datasets, grading output and the virtual environment?"""
    paths = ["data/small/images.h5", "grading/gradebook.db", "grading/submitted/a/b/c.ipynb",
             ".venv/bin/python", "notebooks/03_on_the_fly_loading/scratch/x.py"]
    ignored = subprocess.run(["git", "check-ignore", *paths], cwd=repo, capture_output=True,
                             text=True).stdout.split()
    assert sorted(ignored) == sorted(paths)
    for kept in ("data/README.md", "autograder/grading/pipeline.py"):
        assert subprocess.run(["git", "check-ignore", "-q", kept], cwd=repo).returncode == 1, kept


def test_code_is_ruff_clean(repo):
    """Do the packages and tests pass ruff with the project's settings?"""
    import sys
    from pathlib import Path

    ruff = Path(sys.executable).parent / "ruff"
    packages = ["memcourse", "autograder", "memcourse_apps", "tests"]
    proc = subprocess.run([str(ruff), "check", *packages],
                          cwd=repo, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout


def test_what_to_use_when_sheet_matches_the_notebook(repo):
    """Is docs/what_to_use_when.md's table the one in 06's closing section, and linked from the
    README, so the page learners keep says what the course taught?"""
    import nbformat

    def rows(text: str) -> list[str]:
        return [line.strip() for line in text.splitlines() if line.startswith("| ")]

    sheet = rows((repo / "docs" / "what_to_use_when.md").read_text())
    nb = nbformat.read(repo / "solutions" / "06_tradeoffs" / "06_tradeoffs.ipynb", as_version=4)
    tables = [rows(c.source) for c in nb.cells
              if c.cell_type == "markdown" and "| situation |" in c.source]
    assert len(tables) == 1 and len(sheet) > 10, (len(tables), len(sheet))
    assert tables[0] == sheet
    assert "docs/what_to_use_when.md" in (repo / "README.md").read_text()


def test_every_picture_the_readmes_show_is_in_the_repository(repo):
    """Do the images README.md and deploy/jupyterhub/README.md link to exist (the hub steps
    are screenshots from tests/apps/test_hub.py, copied into docs/hub/)?"""
    for readme in (repo / "README.md", repo / "deploy" / "jupyterhub" / "README.md"):
        pictures = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", readme.read_text())
        for picture in pictures:
            assert (readme.parent / picture).is_file(), f"{readme.name}: {picture} is missing"
    assert (repo / "docs" / "hub").is_dir()
