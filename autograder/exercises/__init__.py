"""One module per coded exercise: its checks as data and the `check_*` function test cells call."""

from __future__ import annotations

import importlib
import pkgutil

from autograder.engine.spec import Exercise


def all_exercises() -> dict[str, Exercise]:
    """Every exercise, keyed by the name of its learner-facing `check_*` function."""
    found: dict[str, Exercise] = {}
    for info in pkgutil.iter_modules(__path__):
        module = importlib.import_module(f"{__name__}.{info.name}")
        exercise = getattr(module, "EXERCISE", None)
        if isinstance(exercise, Exercise):
            for attr in dir(module):
                if attr.startswith("check_") and callable(getattr(module, attr)):
                    found[attr] = exercise
    return found
