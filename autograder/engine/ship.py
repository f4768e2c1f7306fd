"""Send the learner's objects to a fresh process: the cloudpickle blob and the module loading it.

Both ends live here because they must agree: `ship` writes the blob in the notebook (or in the
grader's program), and `LEARNER_MODULE_SOURCE`, written next to it, loads it in the check child.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import cloudpickle

from memcourse.paths import repo_root

# The module the child imports to get the learner's objects (a file in the job folder), so
# classes defined in a notebook can still be pickled by reference into `spawn` DataLoader workers.
LEARNER_MODULE = "_learner_code"
LEARNER_MODULE_SOURCE = '''"""The learner's objects, unpickled from the shipped blob."""
import os as _os

import cloudpickle as _cloudpickle

with open(_os.path.join(_os.path.dirname(__file__), "submission.pkl"), "rb") as _f:
    _objects = _cloudpickle.load(_f)
for _name, _obj in _objects.items():
    if isinstance(_obj, type) or callable(_obj) and hasattr(_obj, "__qualname__"):
        try:
            _obj.__module__ = __name__
            _obj.__qualname__ = _name
        except (AttributeError, TypeError):
            pass
    globals()[_name] = _obj
'''


class ShipError(Exception):
    """The learner's objects could not be sent to a fresh process."""


def ship(submission: dict[str, Any], dest: Path) -> None:
    """Write the learner's objects to `dest` with cloudpickle, by value where they are local.

    Objects from modules the learner wrote (a notebook, a file in the working folder) travel by
    value, so the child needs none of the learner's files; library objects travel by reference.
    """
    local = set()
    for obj in submission.values():
        module = sys.modules.get(getattr(obj, "__module__", None) or "")
        path = getattr(module, "__file__", None) or ""
        if module is not None and module.__name__ != "__main__" and _is_learner_file(path):
            local.add(module)
    for module in local:
        cloudpickle.register_pickle_by_value(module)
    try:
        blob = cloudpickle.dumps(submission)
    except Exception as e:
        raise ShipError(
            f"could not be sent to a fresh Python process ({type(e).__name__}: {e}). This "
            "usually means it holds an open file or a live connection, for example an "
            "h5py.File or lmdb.Environment opened outside its methods; open such things "
            "inside the methods instead.") from None
    finally:
        for module in local:
            cloudpickle.unregister_pickle_by_value(module)
    dest.write_bytes(blob)


def _is_learner_file(path: str) -> bool:
    """True for a module the learner wrote: not installed, not part of the course's packages."""
    if not path:
        return False
    real = os.path.realpath(path)
    for base in {sys.prefix, sys.base_prefix, sys.exec_prefix}:
        if real.startswith(os.path.realpath(base) + os.sep):
            return False
    repo = repo_root()
    return not any(real.startswith(str(repo / package) + os.sep)
                   for package in ("autograder", "memcourse", "memcourse_apps"))
