"""The two pipes between the parent and the child: JSON lines up, one-line acknowledgements down.

The child blocks at each mark until the parent has taken its measurements, so what the parent
records belongs exactly to the code that ran between two marks.
"""

from __future__ import annotations

import json
import os
from typing import Any

import numpy as np


def _plain(value: Any) -> Any:
    """Convert NumPy scalars and arrays (and tuples) to JSON types."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, (set, frozenset)):
        return sorted(value)
    raise TypeError(f"{type(value).__name__} is not plain data")


def encode(event: dict[str, Any]) -> bytes:
    return (json.dumps(event, default=_plain) + "\n").encode()


class ChildChannel:
    """The child's end: send events, wait for the parent's acknowledgement at marks."""

    def __init__(self, events_fd: int, control_fd: int):
        self._events = events_fd
        self._control = os.fdopen(control_fd, "rb", buffering=0)

    def send(self, **event: Any) -> None:
        data = encode(event)
        while data:
            written = os.write(self._events, data)
            data = data[written:]

    def wait_ack(self) -> None:
        line = b""
        while not line.endswith(b"\n"):
            chunk = self._control.read(1)
            if not chunk:
                raise SystemExit(3)  # the parent is gone: stop at once
            line += chunk
