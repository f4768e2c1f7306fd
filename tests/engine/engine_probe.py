"""A tiny exercise for testing the engine itself: its acts call whatever the submission holds.

It imports no torch, so a child starts in a fraction of a second.
"""

from __future__ import annotations

import json
import os

import numpy as np

from autograder.engine.spec import Check, Exercise, Fail


def act_call(ctx, submission):
    """Call the submitted function once and return what it returned."""
    return {"value": ctx.call("probe()", submission["probe"])}


def act_array(ctx, submission):
    ctx.save_array("values", ctx.call("probe()", submission["probe"]))
    return {}


def act_opens(ctx, submission):
    path = ctx.fixtures["file"]
    ctx.mark("before")
    kept = ctx.call("probe(path)", submission["probe"], path)
    ctx.mark("after")
    return {"kept": len(kept) if kept else 0}


def judge_value_is_42(trace) -> None:
    if trace.data["value"] != 42:
        raise Fail(f"probe() returned {trace.data['value']!r}, not 42.")


def judge_nothing(trace) -> None:
    return None


def judge_array(trace) -> None:
    if not np.array_equal(trace.arrays["values"], np.arange(5)):
        raise Fail("wrong array")


def make_fixtures() -> dict[str, str]:
    import tempfile
    from pathlib import Path

    path = Path(tempfile.gettempdir()) / "memcourse-engine-probe.bin"
    path.write_bytes(b"x" * 4096)
    return {"file": str(path)}


CALL = Check("probe_call", 1, "probe() returns 42", act_call, judge_value_is_42, timeout_s=5)
AFTER = Check("probe_after", 1, "a second check still runs", act_call, judge_nothing,
              timeout_s=5)
ARRAY = Check("probe_array", 1, "arrays come back", act_array, judge_array, timeout_s=5)
OPENS = Check("probe_opens", 1, "opens are counted", act_opens, judge_nothing,
              fixtures=("file",), timeout_s=5)
EXERCISE = Exercise("probe", "Probe", ("probe",), [CALL, AFTER, ARRAY, OPENS],
                    make_fixtures=make_fixtures)


# For the zygote: what its preload entries ran in it (a forked child inherits the list), and a
# target that reports it.
WARMED: list[str] = []


def warm_early() -> None:
    WARMED.append("early")


def warm_late() -> None:
    WARMED.append("late")


def warm_broken() -> None:
    raise RuntimeError("a preload that fails")


def target_report(args: list[str]) -> int:
    """A zygote target: print its arguments and WARMED, write to the passed descriptor, exit 7."""
    print(json.dumps({"args": args, "warmed": WARMED, "cwd": os.getcwd(),
                      "env": os.environ.get("PROBE_ENV")}), flush=True)
    os.write(int(args[-1]), b"through the passed pipe")
    return 7
