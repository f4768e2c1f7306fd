"""What an exercise's `act` function gets in the child: fixtures, marks and labelled calls."""

from __future__ import annotations

import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from autograder.engine.protocol import ChildChannel


class NotAttempted(Exception):
    """The learner's code still raises NotImplementedError at `operation`."""

    def __init__(self, operation: str):
        super().__init__(operation)
        self.operation = operation


class LearnerRaised(Exception):
    """The learner's code raised an exception at `operation`."""

    def __init__(self, operation: str, error: BaseException):
        super().__init__(operation)
        self.operation = operation
        self.error = error
        self.trace = "".join(traceback.format_exception(error)[-6:])


class Context:
    """One check's view of the child: its fixture copies, a scratch folder, and the parent."""

    def __init__(self, channel: ChildChannel, check: str, fixtures: dict[str, str],
                 workdir: Path):
        self._channel = channel
        self.check = check
        self.fixtures = {name: Path(p) for name, p in fixtures.items()}
        self.workdir = workdir
        self.arrays: dict[str, np.ndarray] = {}
        self._last_op = None

    def mark(self, label: str) -> None:
        """Ask the parent to measure the process now (memory, open files, opens since last mark)."""
        self._channel.send(type="mark", check=self.check, label=label)
        self._channel.wait_ack()

    def call(self, operation: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Call the learner's code; label any exception with `operation` (e.g. "ds[3]")."""
        if operation != self._last_op:
            self._channel.send(type="op", check=self.check, op=operation)
            self._last_op = operation
        try:
            return fn(*args, **kwargs)
        except NotImplementedError:
            raise NotAttempted(operation) from None
        except Exception as e:
            raise LearnerRaised(operation, e) from None

    def save_array(self, key: str, value: Any) -> None:
        """Keep an array for the parent (sent as .npz, never as a pickle)."""
        arr = np.asarray(value)
        if arr.dtype == object:
            raise TypeError(f"{key}: object arrays cannot be sent as plain data")
        self.arrays[key] = arr
