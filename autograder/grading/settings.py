"""`memcourse grade`'s settings and the one nbgrader configuration it grades with.

`GradingSettings` is a traitlets `Configurable`, like nbgrader's own apps: an instructor sets
`c.GradingSettings.jobs = 4` (or a time or memory limit) in `nbgrader_config.py`, and the
command line's flags override it. The cell time limit is nbgrader's own `c.Execute.timeout`,
so the course states it once for nbgrader's Validate, plain `nbgrader autograde` and us.

`grading_config` builds every nbgrader setting grading changes (the sanitize chain, the
autograde chain with `UsePreparedRun` in place of execution, feedback without hidden tests or
mark schemes, the executor's limits); the workers and the gradebook writer both use it, over the
course's own configuration.
"""

from __future__ import annotations

import os
from pathlib import Path

from nbconvert.preprocessors import ClearMetadataPreprocessor, CSSHTMLHeaderPreprocessor
from nbgrader.preprocessors import (
    AssignLatePenalties,
    CheckCellMetadata,
    ClearOutput,
    DeduplicateIds,
    Execute,
    GetGrades,
    IgnorePattern,
    LimitOutput,
    OverwriteCells,
    OverwriteKernelspec,
    SaveAutoGrades,
)
from traitlets import Float, Integer
from traitlets.config import Config, Configurable

from autograder import course
from autograder.engine.limits import Limits
from autograder.grading.preprocessors import (
    HideHiddenTests,
    HideMarkSchemes,
    NoteLateSubmission,
    RestoreSubmission,
    UsePreparedRun,
)

# The one tag the executor would skip: nbclient's default, `skip-execution`, would let a
# submission skip its own tests; nothing in the course uses this one.
SKIP_TAG = "memcourse-instructor-skip"


class GradingSettings(Configurable):
    """How many submissions run at once, and the time and memory each may use."""

    jobs = Integer(0, help="Worker processes preparing submissions at once (0: one per core)."
                   ).tag(config=True)
    cell_timeout_s = Float(0.0, help="Seconds one cell may run (0: nbgrader's "
                           "c.Execute.timeout from nbgrader_config.py).").tag(config=True)
    notebook_timeout_s = Float(900.0, help="Seconds a whole notebook may run in its kernel."
                               ).tag(config=True)
    kernel_memory_mib = Integer(3072, help="Memory (MiB) of a notebook's kernel and its "
                                "DataLoader workers together.").tag(config=True)
    check_memory_mib = Integer(Limits().memory_mib, help="Memory (MiB) of one check process "
                               "and its workers together.").tag(config=True)

    @classmethod
    def for_course(cls, root: Path | None = None, base: GradingSettings | None = None,
                   **overrides: float | int | None) -> GradingSettings:
        """The settings for the course at `root`: `base` if given (a caller's own object),
        else what its `nbgrader_config.py` says; then `overrides` (the command line's flags,
        None where a flag was not given); a cell time limit of 0 becomes the course's
        `c.Execute.timeout` (nbgrader's default where the course sets none)."""
        config = course.load_config(root)
        settings = cls(config=config) if base is None else \
            cls(**{name: getattr(base, name) for name in base.trait_names(config=True)})
        for name, value in overrides.items():
            if value is not None:
                setattr(settings, name, value)
        if not settings.cell_timeout_s:
            settings.cell_timeout_s = float(config.Execute.get("timeout") or 0) or \
                float(Execute.class_traits()["timeout"].default_value)
        return settings

    @property
    def workers(self) -> int:
        """`jobs`, with 0 (or less) read as one per core."""
        return self.jobs if self.jobs > 0 else os.cpu_count() or 1

    @property
    def kernel_limits(self) -> Limits:
        """Limits of the sandboxed kernel and of the graded program (which re-runs its cells)."""
        return Limits(memory_mib=self.kernel_memory_mib, address_space_mib=8192, cpu_s=1200,
                      file_size_mib=1024)

    @property
    def check_limits(self) -> Limits:
        """Limits of each check process."""
        return Limits(memory_mib=self.check_memory_mib)


SANITIZE_CHAIN: list[type] = [
    ClearOutput, DeduplicateIds, OverwriteKernelspec, OverwriteCells, CheckCellMetadata,
    RestoreSubmission]
"""nbgrader's sanitizing preprocessors, and ours last: the order autograde runs them in."""


def grading_config(settings: GradingSettings | None = None) -> Config:
    """Every nbgrader setting `memcourse grade` changes, to merge over the course's config.

    Cell tags such as `skip-execution` are never honoured when grading: the executor skips only
    cells tagged `SKIP_TAG`, and `RestoreSubmission` removes every tag before it runs. (The
    course's nbgrader_config.py names the same tag for nbgrader's own Validate and autograde.)
    """
    c = Config()
    c.Execute.skip_cells_with_tag = SKIP_TAG
    c.OverwriteCells.add_missing_cells = True  # a deleted test cell comes back, worth its points
    c.Autograde.sanitize_preprocessors = SANITIZE_CHAIN
    c.Autograde.autograde_preprocessors = [
        UsePreparedRun, IgnorePattern, ClearMetadataPreprocessor, LimitOutput,
        SaveAutoGrades, AssignLatePenalties, CheckCellMetadata]
    c.GenerateFeedback.preprocessors = [GetGrades, HideHiddenTests, HideMarkSchemes,
                                        NoteLateSubmission, CSSHTMLHeaderPreprocessor]
    if settings is not None:
        c.ResilientExecute.timeout = settings.cell_timeout_s
        c.ResilientExecute.notebook_timeout = settings.notebook_timeout_s
    return c
