"""The graded program: the instructor's locked cells and the learner's answer cells, run again.

Run as `python -m autograder.grading.rerun_answers NOTEBOOK OUTDIR [--skip 3,7] [--also 5,9]`
inside the sandbox, or forked warm by the zygote as the target
`autograder.grading.rerun_answers:main`. `--also` names cells the learner added (helpers,
imports), which run in order with the others, as they did in the learner's kernel; `--skip`
names cells to pass over (one that killed an earlier run). Test cells are not executed: where
one calls `check_<exercise>(Obj, "check", ...)`, the objects it names are taken from the
namespace at that point and shipped (cloudpickle, by value) to OUTDIR, and the checks run later
in a process where no learner code ever ran. Progress is appended after every cell
(`progress.jsonl`, `calls.jsonl`), so the caller can restart past a cell that kills the process.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import nbformat
from IPython.core.interactiveshell import InteractiveShell

from autograder.cells import PROGRAM, SKIP, check_calls, role
from autograder.engine.ship import ShipError, ship
from autograder.exercises import all_exercises

PROGRESS = "progress.jsonl"
CALLS = "calls.jsonl"


def _append(path: Path, record: dict) -> None:
    with open(path, "a") as f:
        f.write(json.dumps(record) + "\n")
        f.flush()
        os.fsync(f.fileno())


def run(notebook: Path, outdir: Path, skip: set[int], also: frozenset[int] = frozenset()
        ) -> None:
    """Execute the program cells in order; ship each check call's objects as it is reached."""
    exercises = all_exercises()
    nb = nbformat.read(notebook, as_version=4)
    shell = InteractiveShell.instance()
    objects_dir = outdir / "objects"
    objects_dir.mkdir(parents=True, exist_ok=True)
    progress, calls_file = outdir / PROGRESS, outdir / CALLS
    for index, cell in enumerate(nb.cells):
        kind = role(cell)
        if kind == SKIP and index in also:
            kind = PROGRAM
        if kind == SKIP or index in skip:
            continue
        _append(progress, {"start": index})
        if kind == PROGRAM:
            result = shell.run_cell(cell.source, store_history=False)
            error = result.error_in_exec or result.error_before_exec
            _append(progress, {"done": index, "error": f"{type(error).__name__}: {error}"
                               if error else None})
            continue
        grade_id = cell.metadata["nbgrader"]["grade_id"]
        for k, call in enumerate(check_calls(cell.source)):
            record = {"cell": index, "grade_id": grade_id, "call": k, **call}
            exercise = exercises.get(call["function"])
            if exercise is None:
                record["error"] = f"unknown check function {call['function']}"
            elif len(call["objects"]) != len(exercise.subjects):
                record["error"] = (f"{call['function']} expects {len(exercise.subjects)} "
                                   "object(s)")
            else:
                try:
                    values = [eval(expr, shell.user_ns) for expr in call["objects"]]  # noqa: S307
                    blob = objects_dir / f"{index}-{k}.pkl"
                    ship(dict(zip(exercise.subjects, values, strict=True)), blob)
                    record["blob"] = str(blob)
                except ShipError as e:
                    record["ship_error"] = str(e)
                except Exception as e:  # the learner never defined it, or it raised
                    record["missing"] = f"{type(e).__name__}: {e}"
            _append(calls_file, record)
        _append(progress, {"done": index, "error": None})


def main(argv: list[str]) -> int:
    notebook, outdir = Path(argv[0]), Path(argv[1])
    options = dict(zip(argv[2::2], argv[3::2], strict=False))
    skip = {int(i) for i in options.get("--skip", "").split(",") if i}
    also = frozenset(int(i) for i in options.get("--also", "").split(",") if i)
    os.environ.setdefault("MPLBACKEND", "Agg")
    os.environ["MEMCOURSE_CHECKS"] = "outside"  # check calls in answer cells do nothing here
    os.chdir(notebook.parent)
    sys.path.insert(0, str(notebook.parent))
    run(notebook, outdir, skip, also)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
