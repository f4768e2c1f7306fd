"""The child process: load the learner's objects, run each check's `act`, report plain data.

Run as `python -m autograder.engine.child JOBDIR EVENTS_FD CONTROL_FD`. The learner's objects
arrive as a cloudpickle blob (see `ship`) and are exposed as the module `_learner_code`, so classes
defined in a notebook can still be pickled by reference into `spawn` DataLoader workers.
"""

from __future__ import annotations

import gc
import importlib
import json
import os
import sys
import traceback
from pathlib import Path

import numpy as np

from autograder.engine.context import Context, LearnerRaised, NotAttempted
from autograder.engine.protocol import ChildChannel
from autograder.engine.ship import LEARNER_MODULE


def _describe(error: BaseException) -> dict:
    return {"type": type(error).__name__, "message": str(error)[:2000],
            "traceback": "".join(traceback.format_exception(error)[-8:])[-4000:]}


def resolve(dotted: str):
    """The function named `"package.module:function"`, its module imported if need be."""
    module, _, attr = dotted.partition(":")
    return getattr(importlib.import_module(module), attr)


def main(argv: list[str]) -> int:
    jobdir, events_fd, control_fd = Path(argv[0]), int(argv[1]), int(argv[2])
    channel = ChildChannel(events_fd, control_fd)
    job = json.loads((jobdir / "job.json").read_text())
    sys.path.insert(0, str(jobdir))
    os.chdir(jobdir / "work")
    try:
        learner = importlib.import_module(LEARNER_MODULE)
        submission = {name: getattr(learner, name) for name in job["names"]}
    except BaseException as e:  # a submission that cannot even be loaded fails every check
        channel.send(type="load_failed", error=_describe(e))
        return 0
    channel.send(type="ready", pid=os.getpid())
    for check in job["checks"]:
        name = check["name"]
        workdir = jobdir / "work" / name
        workdir.mkdir(parents=True, exist_ok=True)
        channel.send(type="start", check=name)
        ctx = Context(channel, name, check["fixtures"], workdir)
        try:
            act = resolve(check["act"])
            data = act(ctx, submission) or {}
            if ctx.arrays:
                np.savez(jobdir / "results" / f"{name}.npz", **ctx.arrays)
            channel.send(type="done", check=name, data=data, arrays=sorted(ctx.arrays))
        except NotAttempted as e:
            channel.send(type="not_attempted", check=name, op=e.operation)
        except LearnerRaised as e:
            channel.send(type="raised", check=name, op=e.operation,
                         error=_describe(e.error))
        except MemoryError as e:
            channel.send(type="raised", check=name, op="", error=_describe(e))
        except BaseException as e:  # a bug in the check itself, or SystemExit from learner code
            kind = "raised" if isinstance(e, (SystemExit, KeyboardInterrupt)) else "checker_error"
            channel.send(type=kind, check=name, op="", error=_describe(e))
        finally:
            del ctx
            gc.collect()
    channel.send(type="finished")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
