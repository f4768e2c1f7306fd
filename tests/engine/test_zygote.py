"""Does the zygote fork a named target warm, with what its client asked it to preload?"""

from __future__ import annotations

import json
import os
from dataclasses import asdict

import pytest

from autograder.engine.limits import Limits
from autograder.engine.runner import child_env
from autograder.engine.zygote import Zygote


def _own_wrap(command: list[str], writable: list) -> list[str]:
    """A wrapper that changes nothing: a zygote of this test's own, not the runner's."""
    return command


def test_a_dotted_target_runs_warm_and_a_failing_preload_does_not_stop_the_zygote(
        tmp_path, capfd):
    """Is `module:function` called with its args and passed descriptors, after the preloads
    that worked (including one added later), while the ones that failed were only reported?"""
    preload = ("tests.engine.no_such_module", "tests.engine.engine_probe:warm_broken",
               "tests.engine.engine_probe:warm_early")
    zygote = Zygote.get(child_env(), _own_wrap, preload=preload)
    if zygote is None:
        pytest.skip("the zygote is disabled here (MEMCOURSE_ZYGOTE=0 or no fork)")
    try:
        assert Zygote.get(child_env(), _own_wrap,
                          preload=("tests.engine.engine_probe:warm_late",)) is zygote
        read_end, write_end = os.pipe()
        output = tmp_path / "out.txt"
        try:
            proc = zygote.spawn_target("tests.engine.engine_probe:target_report", ["a", "b c"],
                                       str(tmp_path), {**child_env(), "PROBE_ENV": "set"},
                                       asdict(Limits()), str(output), fds=[write_end])
        finally:
            os.close(write_end)
        assert proc.wait(timeout=30) == 7, output.read_text()
        with os.fdopen(read_end, "rb") as pipe:
            assert pipe.read() == b"through the passed pipe"
        report = json.loads(output.read_text().splitlines()[0])
        assert report["args"][:2] == ["a", "b c"] and len(report["args"]) == 3
        assert report["warmed"] == ["early", "late"]
        assert report["cwd"] == str(tmp_path) and report["env"] == "set"
        err = capfd.readouterr().err
        assert "could not preload tests.engine.no_such_module" in err
        assert "could not preload tests.engine.engine_probe:warm_broken" in err
    finally:
        zygote.proc.kill()
        zygote.proc.wait()
