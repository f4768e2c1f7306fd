"""Where the course is on disk: the one lookup of the repository root.

Kept apart from `memcourse.data` (which imports h5py) so that the grader, the hints and the
benchmarks' measuring children can find the course without loading any data library.
"""

from __future__ import annotations

from pathlib import Path


def repo_root() -> Path:
    """Return the course repository this package was installed from (an editable install)."""
    return Path(__file__).resolve().parents[1]
