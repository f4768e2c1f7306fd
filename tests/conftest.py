"""Shared fixtures: the repository, a disposable copy of the course, and the tiny dataset."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.helpers import ROOT, copy_course


@pytest.fixture(scope="session")
def repo() -> Path:
    """The course repository under test."""
    return ROOT


@pytest.fixture
def course_copy(tmp_path: Path) -> Path:
    """A throwaway copy of the course: tests grade and regenerate here, never in the repo."""
    return copy_course(tmp_path / "course")


@pytest.fixture(scope="session")
def tiny_h5(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The `tiny` dataset, written once per test session into a temporary folder."""
    from memcourse.data import ensure_dataset

    return ensure_dataset("tiny", out_dir=tmp_path_factory.mktemp("tiny"), progress=False)


@pytest.fixture
def no_nbgrader_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Run as a learner would: not under nbgrader, no size override."""
    for var in ("NBGRADER_EXECUTION", "MEMCOURSE_SIZE"):
        monkeypatch.delenv(var, raising=False)
    assert "NBGRADER_EXECUTION" not in os.environ
