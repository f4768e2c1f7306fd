"""Does the engine turn every way learner code can go wrong into a labelled verdict, fast?"""

from __future__ import annotations

import time

import pytest

from autograder.engine.limits import Limits
from autograder.engine.runner import run_checks
from tests.engine import engine_probe as probe
from tests.exercises.catalogue import define

LIMITS = Limits(memory_mib=600, cpu_s=20)


def run(source: str, checks=(probe.CALL, probe.AFTER), limits: Limits = LIMITS):
    """Define `probe` from source as a notebook would, run the checks, time the run."""
    fn = define(source, "probe")
    start = time.monotonic()
    verdicts = run_checks(probe.EXERCISE, {"probe": fn}, list(checks), limits)
    return {v.check: v for v in verdicts}, time.monotonic() - start


def test_a_correct_function_passes():
    """Does a function returning the right value pass, with plain data back from the child?"""
    results, _ = run("def probe():\n    return 42\n")
    assert results["probe_call"].status == "passed"
    assert results["probe_after"].status == "passed"


def test_arrays_come_back_as_arrays():
    """Are NumPy arrays returned through .npz intact?"""
    results, _ = run("import numpy as np\ndef probe():\n    return np.arange(5)\n",
                     checks=[probe.ARRAY])
    assert results["probe_array"].status == "passed", results["probe_array"].message


def test_a_wrong_value_fails_with_the_judges_message():
    """Does a wrong value fail with the judge's sentence?"""
    results, _ = run("def probe():\n    return 41\n")
    assert results["probe_call"].status == "failed"
    assert "returned 41, not 42" in results["probe_call"].message


def test_a_stub_is_not_attempted():
    """Does NotImplementedError give not_attempted, not failed?"""
    results, _ = run("def probe():\n    raise NotImplementedError()\n")
    assert results["probe_call"].status == "not_attempted"


def test_an_exception_names_the_operation():
    """Does an exception in learner code say which call raised what?"""
    results, _ = run("def probe():\n    return {}['missing']\n")
    assert results["probe_call"].status == "failed"
    assert results["probe_call"].message.startswith("`probe()` raised KeyError")


LIMIT_CASES = {
    "memory_bomb": ("import numpy as np\ndef probe():\n"
                    "    return int(np.ones(20_000_000_000, np.uint8).sum())\n", "memory limit"),
    "gradual_growth": ("import numpy as np\ndef probe():\n    kept = []\n    while True:\n"
                       "        kept.append(np.ones(2_000_000))\n", "memory limit"),
    "infinite_loop": ("def probe():\n    while True:\n        pass\n", "did not finish in 5 s"),
    "segfault": ("import ctypes\ndef probe():\n    return ctypes.string_at(0)\n",
                 "segmentation fault"),
    "os_exit": ("import os\ndef probe():\n    os._exit(1)\n", "ended the Python process"),
    "print_flood": ("def probe():\n    while True:\n        print('x' * 1000)\n",
                    "printed more than"),
    "process_flood": ("import os, time\ndef probe():\n    for _ in range(40):\n"
                      "        if os.fork() == 0:\n"
                      "            time.sleep(30)\n            os._exit(0)\n"
                      "    time.sleep(30)\n", "too many processes"),
}


@pytest.mark.parametrize("case", sorted(LIMIT_CASES))
def test_runaway_code_is_a_labelled_limit_and_the_next_check_still_runs(case):
    """Does each runaway end only its check, with a label, in time, while the parent survives?"""
    source, words = LIMIT_CASES[case]
    results, elapsed = run(source)
    verdict = results["probe_call"]
    assert verdict.status == "limit_exceeded", verdict.message
    assert words in verdict.message, verdict.message
    assert results["probe_after"].status in ("limit_exceeded", "passed")
    assert elapsed < 5 + 30, f"took {elapsed:.0f} s"


def test_sys_exit_is_a_failure_not_a_crash():
    """Does sys.exit() in learner code fail the check with a sentence?"""
    results, _ = run("import sys\ndef probe():\n    sys.exit(3)\n")
    assert results["probe_call"].status == "failed"
    assert "SystemExit" in results["probe_call"].message
    assert results["probe_after"].status == "failed"


def test_unpicklable_submission_is_explained():
    """Does an object holding an open file fail with advice instead of a traceback?"""
    results, _ = run("import tempfile\nHANDLE = tempfile.TemporaryFile()\n"
                     "def probe():\n    return HANDLE\n")
    assert results["probe_call"].status == "failed"
    assert "could not be sent to a fresh Python process" in results["probe_call"].message


def test_file_opens_and_descriptors_are_observed_from_outside():
    """Does the parent count opens (inotify) and held descriptors (/proc) on fixture files?"""
    from autograder.engine import runner

    captured = {}
    original = probe.OPENS.judge

    def keep(trace):
        captured["trace"] = trace

    check = probe.Check(**{**probe.OPENS.__dict__, "judge": keep})
    # Each open is followed by a read, as in dataset code (see OpenCounter on merged events).
    fn = define("def probe(path):\n    kept = []\n    for _ in range(3):\n"
                "        kept.append(open(path, 'rb'))\n        kept[-1].read(1)\n"
                "    with open(path, 'rb') as f:\n        f.read(1)\n    return kept\n", "probe")
    runner.run_checks(probe.EXERCISE, {"probe": fn}, [check], LIMITS)
    trace = captured["trace"]
    assert original is not keep
    if trace.opens_available:
        assert trace.opens_between("before", "after", "file") == 4
    assert sum(trace.mark("after").fds.values()) == 3
    assert sum(trace.mark("before").fds.values()) == 0


def test_learner_warnings_never_reach_the_caller(capfd):
    """Do warnings and prints from learner code stay out of the notebook's stderr?"""
    results, _ = run("import warnings, sys\ndef probe():\n    warnings.warn('noisy')\n"
                     "    print('to stderr', file=sys.stderr)\n    return 42\n")
    assert results["probe_call"].status == "passed"
    captured = capfd.readouterr()
    assert "noisy" not in captured.err and "to stderr" not in captured.err
