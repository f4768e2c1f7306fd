"""Does the `memcourse` command install and explain itself?"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest


def test_console_script_is_installed():
    """Is `memcourse` on PATH next to the interpreter (from `pip install -e .`)?"""
    assert shutil.which("memcourse", path=str(Path(sys.executable).parent))


@pytest.mark.parametrize("command", ["data", "notebooks", "lab"])
def test_help_lists_each_command(command):
    """Does `memcourse --help` list every subcommand, and does each have its own --help?"""
    top = subprocess.run([sys.executable, "-m", "memcourse", "--help"], capture_output=True,
                         text=True)
    assert top.returncode == 0 and command in top.stdout
    sub = subprocess.run([sys.executable, "-m", "memcourse", command, "--help"],
                         capture_output=True, text=True)
    assert sub.returncode == 0 and "usage: memcourse" in sub.stdout
