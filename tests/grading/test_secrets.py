"""A grader's credentials never reach a submission's code, so no feedback can show them.

On a hub, `memcourse grade` runs in formgrader's terminal with the service's API token in its
environment; whatever a submission prints is in the feedback its author fetches.
"""

from __future__ import annotations

import nbformat
import pytest

from autograder.engine.environ import is_secret, remove_secrets
from tests.helpers import copy_course

A = "03_on_the_fly_loading"
SECRETS = {"JUPYTERHUB_API_TOKEN": "hub-token-4711", "AWS_SECRET_ACCESS_KEY": "aws-4711",
           "MY_SERVICE_PASSWORD": "pw-4711", "DATABASE_URL": "postgres://u:pw-0815@db/x"}


def test_credentials_are_recognised_and_ordinary_variables_kept():
    env = {**SECRETS, "PATH": "/usr/bin", "HOME": "/home/a", "MEMCOURSE_SIZE": "tiny",
           "LANG": "C.UTF-8", "PROXY_URL": "http://proxy:3128"}
    assert remove_secrets(env) == sorted(SECRETS)
    assert set(env) == {"PATH", "HOME", "MEMCOURSE_SIZE", "LANG", "PROXY_URL"}
    assert not any(is_secret(k, v) for k, v in env.items())


@pytest.mark.slow
def test_a_submission_cannot_print_the_graders_token(tmp_path, monkeypatch):
    """Grade a submission that prints credential variables from its answer cell: none of their
    values may appear in anything grading writes, and the work still gets full marks."""
    from autograder.grading import pipeline  # lazy: nbgrader, only the slow test
    from memcourse_apps.bench.grading import make_submission  # lazy: the bench fills answers

    root = copy_course(tmp_path / "course")
    solution = nbformat.read(root / "solutions" / A / f"{A}.ipynb", as_version=4)
    release = nbformat.read(root / "notebooks" / A / f"{A}.ipynb", as_version=4)
    nb = make_submission(release, solution, "correct")
    answer = next(c for c in nb.cells if c.cell_type == "code"
                  and c.get("metadata", {}).get("nbgrader", {}).get("solution"))
    names = ", ".join(repr(n) for n in SECRETS)
    answer.source = (f"import os\nfor _n in ({names},):\n    print(_n, os.environ.get(_n))\n"
                     + answer.source)
    folder = root / "grading" / "submitted" / "mallory" / A
    folder.mkdir(parents=True)
    nbformat.write(nb, folder / f"{A}.ipynb")
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)
    out = tmp_path / "out"
    records = pipeline.grade(root / "grading" / "submitted", out, jobs=1, assignment=A,
                             root=root, progress=False)
    mallory = next(r for r in records if r["student"] == "mallory")
    assert mallory["status"] == "graded" and mallory["score"] == mallory["max_score"], mallory
    values = [v.encode() for v in SECRETS.values()] + [b"pw-0815"]
    leaks = [str(p) for base in (root / "grading", out) for p in base.rglob("*")
             if p.is_file() and any(v in p.read_bytes() for v in values)]
    assert not leaks, leaks
    # The cell did run and print: the names are there, with None for each value.
    feedback = next(out.rglob(f"{A}.html")).read_text()
    assert "JUPYTERHUB_API_TOKEN None" in feedback
