"""Do the learner-facing memory helpers measure what they claim, and never hang?"""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from memcourse import memory


def test_measure_peak_sees_an_allocation_and_returns_the_result():
    """Does measure_peak report the growth of a 100 MiB allocation and the function's value?"""
    peak = memory.measure_peak(lambda: int(np.ones(100 * 2**20, dtype=np.uint8).sum()))
    assert peak.result == 100 * 2**20
    assert 90 < peak.growth_mib < 160


def test_measure_peak_re_raises_the_childs_exception_type():
    """Does a NotImplementedError in the measured function reach the caller as itself?"""
    def stub():
        raise NotImplementedError("not yet")

    with pytest.raises(NotImplementedError):
        memory.measure_peak(stub)


def test_measure_peak_does_not_hang_after_threaded_torch_work():
    """After a multi-threaded torch op in the parent, does a torch op in the child finish?"""
    code = (
        "import torch\n"
        "from memcourse.memory import measure_peak\n"
        "torch.set_num_threads(2)\n"
        "a = torch.randn(1500, 1500); float((a @ a).sum())\n"
        "p = measure_peak(lambda: float((torch.randn(400, 400) @ torch.randn(400, 400)).sum()))\n"
        "print('finished', p.result is not None)\n"
    )
    try:
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                              timeout=120)
    except subprocess.TimeoutExpired:
        pytest.fail("measure_peak hung: the child inherited OpenMP's threads across fork")
    assert "finished True" in proc.stdout, proc.stderr
