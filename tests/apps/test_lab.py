"""Does `make lab` serve JupyterLab on the course with the nbgrader extensions working?"""

from __future__ import annotations

import json
import re
import urllib.request
from urllib.parse import urlparse

import pytest

from autograder import course
from tests.helpers import ROOT, RunningLab

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def lab():
    server = RunningLab(ROOT)
    yield server
    server.stop()


def test_lab_lists_the_student_notebooks(lab):
    """Does the server's contents API show every assignment in notebooks/?"""
    status, body = lab.get("/api/contents/notebooks")
    assert status == 200
    listing = json.loads(body)["content"]
    names = sorted(item["name"] for item in listing if item["type"] == "directory")
    assert names == course.assignments(ROOT, "notebooks")


def test_lab_opens_on_the_notebooks_folder(lab):
    """Does the server's front page redirect a learner into notebooks/?"""
    with urllib.request.urlopen(lab.url("/"), timeout=30) as response:
        assert urlparse(response.url).path == "/lab/tree/notebooks"
        assert response.status == 200


def test_lab_loads_the_nbgrader_extension(lab):
    """Is the nbgrader JupyterLab extension (the Nbgrader menu) served and not disabled?"""
    status, body = lab.get("/lab")
    assert status == 200
    config = json.loads(re.search(
        r'<script id="jupyter-config-data" type="application/json">(.*?)</script>', body,
        re.S).group(1))
    names = [ext["name"] for ext in config["federated_extensions"]]
    assert "@jupyter/nbgrader" in names
    disabled = config.get("disabledExtensions", [])
    assert not [d for d in disabled if "nbgrader" in str(d)], disabled


def test_formgrader_sees_the_course(lab):
    """Does the formgrader server extension read nbgrader_config.py and list the assignments?"""
    status, body = lab.get("/formgrader/api/assignments")
    assert status == 200
    listed = sorted(a["name"] for a in json.loads(body))
    assert listed == course.assignments(ROOT, "solutions")
    assert all(a["source_path"].startswith("solutions/") for a in json.loads(body))


def test_assignment_list_has_a_working_exchange(lab):
    """Does the Assignment List server extension answer without an exchange error?"""
    status, body = lab.get("/assignments?course_id=memcourse")
    assert status == 200
    assert json.loads(body)["success"] is True


def test_learners_are_not_asked_about_jupyter_news(lab):
    """Do the course's settings overrides turn off the first-run question about Jupyter news?"""
    status, body = lab.get("/lab/api/settings/@jupyterlab/apputils-extension:notification")
    assert status == 200
    defaults = json.loads(body)["schema"]["properties"]
    # "none", JupyterLab's own default, is what makes it ask.
    assert defaults["fetchNews"]["default"] == "false", defaults["fetchNews"]
    assert defaults["checkForUpdates"]["default"] is False
