"""memcourse.workers: the usable-core count and the capture of what worker processes print."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from memcourse.workers import usable_cores, worker_output


def test_usable_cores_matches_the_affinity_mask():
    """Is the core count the one the DataLoader compares num_workers with?"""
    expected = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    assert usable_cores() == expected >= 1


def test_worker_output_captures_child_processes_and_restores_stderr(capfd):
    """Does text a child process writes to descriptor 2 land in the capture, and only there?"""
    with worker_output() as out:
        subprocess.run([sys.executable, "-c",
                        "import sys; sys.stderr.write('AttributeError: from the child\\n')"],
                       check=True)
    os.write(2, b"after the block\n")
    assert out.last_line("Error") == "AttributeError: from the child"
    assert out.last_line("nothing like this") == ""
    _, err = capfd.readouterr()
    assert "after the block" in err
    assert "from the child" not in err


def test_worker_output_restores_stderr_when_the_block_raises(capfd):
    """Is descriptor 2 restored, and the text kept, when the block raises?"""
    with pytest.raises(RuntimeError), worker_output() as out:
        os.write(2, b"written before the error\n")
        raise RuntimeError("worker exited unexpectedly")
    os.write(2, b"restored\n")
    assert out.text == "written before the error\n"
    assert "restored" in capfd.readouterr()[1]
