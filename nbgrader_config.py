"""nbgrader configuration for memcourse: the repository root is the course root.

Only settings that differ from nbgrader's defaults are here; see CONTRIBUTING.md for why each is set.
"""

import os
from pathlib import Path

c = get_config()  # noqa: F821 (provided by traitlets when nbgrader loads this file)

ROOT = Path(__file__).resolve().parent
GRADING = ROOT / "grading"  # everything nbgrader writes while grading; gitignored
try:  # nbgrader neither creates the gradebook's folder nor the exchange
    (GRADING / "exchange").mkdir(parents=True, exist_ok=True)
except OSError:
    pass  # a read-only checkout can still generate notebooks to elsewhere

c.CourseDirectory.root = str(ROOT)
# A hub deployment (deploy/jupyterhub/class.toml) may name the course otherwise.
c.CourseDirectory.course_id = os.environ.get("MEMCOURSE_COURSE_ID") or "memcourse"
c.CourseDirectory.source_directory = "solutions"
c.CourseDirectory.release_directory = "notebooks"
c.CourseDirectory.submitted_directory = "grading/submitted"
c.CourseDirectory.autograded_directory = "grading/autograded"
c.CourseDirectory.feedback_directory = "grading/feedback"
c.CourseDirectory.solution_directory = "grading/solution"
c.CourseDirectory.source_with_tests_directory = "grading/source_with_tests"
c.CourseDirectory.db_url = f"sqlite:///{GRADING / 'gradebook.db'}"
# Files a notebook writes while it runs (scratch modules, temporary datasets) never ship.
c.CourseDirectory.ignore = [".ipynb_checkpoints", "*.pyc", "__pycache__", "feedback", "scratch"]

# A local exchange so that Assignment List, Fetch and Submit work on one machine. On a
# JupyterHub the deployment (deploy/jupyterhub/) sets MEMCOURSE_EXCHANGE to the class's shared
# exchange, so the instructor releases to and collects from the folder students use.
c.Exchange.root = os.environ.get("MEMCOURSE_EXCHANGE") or str(GRADING / "exchange")
# Release Feedback skips (with a warning) students who never submitted through the exchange
# (graded from an LMS download) instead of stopping for everyone (autograder/grading/exchange.py).
c.ExchangeFactory.release_feedback = "autograder.grading.exchange.ReleaseFeedback"

# Data-loading cells start worker processes; 30 s (nbgrader's default) is too tight on 2 cores.
# `memcourse grade` uses this cell time limit too.
c.Execute.timeout = 120
# nbclient skips cells tagged "skip-execution" by default, which lets a submission skip its tests.
c.Execute.skip_cells_with_tag = "memcourse-instructor-skip"

# nbgrader scores any stderr output in a test cell as a failure; library warnings are not errors.
c.IgnorePattern.enabled = True
c.IgnorePattern.pattern = r"Warning:|it/s\]"

# `memcourse grade` has settings of its own (autograder/grading/settings.py, GradingSettings),
# set here like nbgrader's; its flags override them. For example:
# c.GradingSettings.jobs = 4                  # submissions prepared at once (0: one per core)
# c.GradingSettings.notebook_timeout_s = 900  # seconds a whole notebook may run
# c.GradingSettings.kernel_memory_mib = 3072  # a notebook's kernel and its DataLoader workers
