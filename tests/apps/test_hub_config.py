"""deploy/jupyterhub/jupyterhub_config.py read with odd class files: what the hub would get.

Fast: the configuration is only loaded (as JupyterHub loads it), no hub is started; the
end-to-end walk through a class is tests/apps/test_hub.py.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from jupyterhub.roles import _role_name_pattern
from traitlets.config.loader import PyFileConfigLoader

from tests.helpers import ROOT

CONFIG = ROOT / "deploy" / "jupyterhub" / "jupyterhub_config.py"


def load(tmp_path: Path, monkeypatch, text: str, name: str = "class.toml"):
    (tmp_path / name).write_text(text)
    monkeypatch.setenv("MEMCOURSE_CLASS", str(tmp_path / name))
    return PyFileConfigLoader(CONFIG.name, path=str(CONFIG.parent)).load_config()


BASE = (f'course_directory = "{ROOT}"\nexchange = "exchange"\nstudents = ["alice"]\n'
        'instructors = ["ina"]\nformgrader_unix_account = "grader"\n')


@pytest.mark.parametrize("course_id", ["memcourse", "CS101", "6.s081", "ml-", "Data_Loading"])
def test_every_role_name_is_one_jupyterhub_accepts(tmp_path, monkeypatch, course_id):
    """Course ids the file accepts make role names JupyterHub accepts (it refuses to start
    otherwise), and the groups and service keep the id as written."""
    c = load(tmp_path, monkeypatch, f'course_id = "{course_id}"\n' + BASE)
    for role in c.JupyterHub.load_roles:
        assert _role_name_pattern.match(role["name"]), role["name"]
    assert f"nbgrader-{course_id}" in c.JupyterHub.load_groups
    assert c.JupyterHub.services[0]["name"] == course_id


def test_no_role_hands_out_admin_rights_or_every_group(tmp_path, monkeypatch):
    c = load(tmp_path, monkeypatch, 'course_id = "memcourse"\n' + BASE)
    scopes = [s for role in c.JupyterHub.load_roles for s in role["scopes"]]
    assert "inherit" not in scopes and "groups" not in scopes and "admin:users" not in scopes
    assert "groups!group=nbgrader-memcourse" in scopes


def test_a_relative_exchange_is_read_from_the_class_files_folder(tmp_path, monkeypatch):
    c = load(tmp_path, monkeypatch, 'course_id = "memcourse"\n' + BASE)
    assert c.Spawner.environment["MEMCOURSE_EXCHANGE"] == str(tmp_path / "exchange")


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0, reason="needs root")
def test_formgrader_never_runs_as_root_unless_the_class_file_says_so(tmp_path, monkeypatch):
    """Formgrader's terminal is a shell for every grader: as root, only when asked for."""
    text = 'course_id = "memcourse"\n' + BASE.replace('"grader"', '""')
    with pytest.raises(ValueError, match="root terminal"):
        load(tmp_path, monkeypatch, text)
    c = load(tmp_path, monkeypatch, text.replace('formgrader_unix_account = ""',
                                                 'formgrader_unix_account = "root"'))
    assert c.JupyterHub.services[0]["user"] == "root"


@pytest.mark.parametrize(("text", "says"), [
    (None, "MEMCOURSE_CLASS"),
    ("course_id = [", "not valid TOML"),
    (BASE, "course_id ''"),
    ('course_id = "a b"\n' + BASE, "use letters, digits"),
    ('course_id = "x"\nformgrader_port = "high"\n' + BASE, "port number"),
    ('course_id = "x"\ncourse_directory = "/nowhere"\n', "has no nbgrader_config.py"),
])
def test_a_bad_class_file_is_one_sentence(tmp_path, monkeypatch, text, says):
    if text is None:
        monkeypatch.setenv("MEMCOURSE_CLASS", str(tmp_path / "missing.toml"))
        with pytest.raises(ValueError, match=says):
            PyFileConfigLoader(CONFIG.name, path=str(CONFIG.parent)).load_config()
        return
    with pytest.raises(ValueError, match=says):
        load(tmp_path, monkeypatch, text)
