"""Does the `memcourse` command install and explain itself?"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest


def test_console_script_is_installed():
    """Is `memcourse` on PATH next to the interpreter (from `pip install -e .`)?"""
    assert shutil.which("memcourse", path=str(Path(sys.executable).parent))


@pytest.mark.parametrize("command", ["data", "notebooks", "lab", "grade", "bench"])
def test_help_lists_each_command(command):
    """Does `memcourse --help` list every subcommand, and does each have its own --help?"""
    top = subprocess.run([sys.executable, "-m", "memcourse_apps", "--help"], capture_output=True,
                         text=True)
    assert top.returncode == 0 and command in top.stdout
    sub = subprocess.run([sys.executable, "-m", "memcourse_apps", command, "--help"],
                         capture_output=True, text=True)
    assert sub.returncode == 0 and "usage: memcourse" in sub.stdout


@pytest.fixture
def full_disk(tmp_path):
    """A real 64 KiB filesystem, filled to the last byte."""
    if os.geteuid() != 0 or not shutil.which("mount"):
        pytest.skip("needs root to mount a tiny tmpfs")
    mnt = tmp_path / "full"
    mnt.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mnt)]).returncode:
        pytest.skip("mounting a tmpfs is not allowed here")
    try:
        fd = os.open(mnt / "filler", os.O_WRONLY | os.O_CREAT)
        try:
            while os.write(fd, b"\0" * 4096):
                pass
        except OSError:
            pass  # full
        finally:
            os.close(fd)
        yield mnt
    finally:
        subprocess.run(["umount", str(mnt)])


def test_a_full_disk_is_one_sentence_not_a_traceback(full_disk):
    """Does a command whose output folder is full say so in one sentence, exit 2, no traceback?"""
    done = subprocess.run(
        [sys.executable, "-m", "memcourse_apps", "bench", "--size", "tiny", "--only", "memory",
         "--repeats", "1", "--out", str(full_disk / "bench")],
        capture_output=True, text=True, timeout=300)
    assert done.returncode == 2, done.stderr[-2000:]
    assert "Traceback" not in done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("memcourse: the disk is full") and "--out" in last, done.stderr


def test_os_errors_read_as_sentences():
    """Are permission and other filesystem errors worded for a person, with the path?"""
    import errno

    from memcourse_apps.cli import describe_os_error

    denied = describe_os_error(PermissionError(errno.EACCES, "Permission denied", "/srv/out"))
    assert denied.startswith("no permission to write (/srv/out)")
    full = describe_os_error(OSError(errno.ENOSPC, "No space left on device", "/o"), "grade")
    assert "disk is full" in full and "resumes" in full
    gone = describe_os_error(FileNotFoundError(errno.ENOENT, "No such file or directory", "/x"))
    assert gone == "No such file or directory (/x)."


def test_grade_help_and_readme_name_the_same_zip_files():
    """Do `memcourse grade --help` and the README describe the same LMS zip naming?"""
    from memcourse_apps.cli import build_parser
    from tests.helpers import ROOT

    grade = next(a for a in build_parser()._subparsers._group_actions[0].choices.items()
                 if a[0] == "grade")[1]
    naming = "<student>_<userid>_<submissionid>_<file>.ipynb"
    assert naming in " ".join(grade.description.split())
    assert naming in (ROOT / "README.md").read_text()


@pytest.mark.parametrize("flag, value", [("--jobs", "-2"), ("--jobs", "two"),
                                         ("--cell-timeout", "0"), ("--notebook-timeout", "-1"),
                                         ("--memory", "0"), ("--memory", "1.5")])
def test_grade_refuses_limits_that_are_not_above_zero(tmp_path, capsys, flag, value):
    """Is `--jobs 0` (or a zero or negative limit) refused with one sentence, before grading?"""
    from memcourse_apps.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main(["grade", str(tmp_path), "--out", str(tmp_path / "out"), flag, value])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert f"argument {flag}: " in err and ("not above zero" in err or "not a whole" in err), err
    assert not (tmp_path / "out").exists()


def test_grade_flags_override_the_course_settings(tmp_path, monkeypatch):
    """Do `memcourse grade`'s flags reach the grading settings, the rest from the course?"""
    from autograder.grading import pipeline
    from memcourse_apps.cli import main

    seen = {}

    def fake_grade(submissions, out, settings=None, **kwargs):
        seen["settings"] = settings
        return []

    monkeypatch.setattr(pipeline, "grade", fake_grade)
    assert main(["grade", str(tmp_path), "--out", str(tmp_path / "out"), "--jobs", "3",
                 "--cell-timeout", "7", "--memory", "512"]) == 0
    settings = seen["settings"]
    assert (settings.workers, settings.cell_timeout_s) == (3, 7.0)
    assert settings.kernel_limits.memory_mib == 512
    assert settings.notebook_timeout_s == 900  # not given: the course's (here the default)
    main(["grade", str(tmp_path), "--out", str(tmp_path / "out"), "--jobs", "0"])
    assert seen["settings"].workers == (os.cpu_count() or 1)  # 0: one per core, as the config
    main(["grade", str(tmp_path), "--out", str(tmp_path / "out")])
    assert seen["settings"].cell_timeout_s == 120  # the course's c.Execute.timeout


def test_grade_course_names_the_course_folder_it_grades_for(tmp_path, monkeypatch, capsys):
    """Does --course reach the grader (and its settings), and is a folder that is not a
    course one sentence and exit 2, before anything is graded?"""
    from autograder.grading import pipeline
    from memcourse_apps.cli import main
    from tests.helpers import copy_course

    seen = {}

    def fake_grade(submissions, out, root=None, settings=None, **kwargs):
        seen["root"], seen["settings"] = root, settings
        return []

    monkeypatch.setattr(pipeline, "grade", fake_grade)
    course_dir = copy_course(tmp_path / "hub-course")
    config = course_dir / "nbgrader_config.py"
    config.write_text(config.read_text() + "\nc.Execute.timeout = 33\n")
    assert main(["grade", str(tmp_path), "--out", str(tmp_path / "out"),
                 "--course", str(course_dir)]) == 0
    assert seen["root"] == course_dir.resolve()
    assert seen["settings"].cell_timeout_s == 33  # that course's settings, not the repo's

    seen.clear()
    assert main(["grade", str(tmp_path), "--out", str(tmp_path / "out"),
                 "--course", str(tmp_path / "nowhere")]) == 2
    err = capsys.readouterr().err
    assert "is not a course folder" in err and "nbgrader_config.py" in err, err
    assert not seen
