"""nbgrader's exchange, with one step made safe for a class graded by `memcourse grade`.

`ReleaseFeedback` is nbgrader's file-based `release_feedback` (formgrader's **Release Feedback**
button, `nbgrader release_feedback`), except that feedback for a submission that never went
through the exchange (an LMS download, a notebook put into grading/submitted by hand: no
`submission_secret.txt` beside it) is skipped with a warning. nbgrader would stop at the first
such student with FileNotFoundError and release nobody's feedback; there is nowhere to release
theirs to anyway. `nbgrader_config.py` selects it (`c.ExchangeFactory.release_feedback`).
"""

from __future__ import annotations

import glob
import os

from nbgrader.exchange.default.release_feedback import ExchangeReleaseFeedback

from autograder.grading.inputs import NBGRADER_FILES


class ReleaseFeedback(ExchangeReleaseFeedback):
    """nbgrader's ExchangeReleaseFeedback, skipping feedback that has no exchange submission."""

    def copy_files(self) -> None:
        skipped = set()
        for html_file in glob.glob(os.path.join(self.src_path, "*.html")):
            folder = os.path.dirname(html_file)
            if not all(os.path.isfile(os.path.join(folder, n)) for n in NBGRADER_FILES):
                # feedback/<student>/<assignment>/<notebook>.html
                skipped.add(os.path.basename(os.path.dirname(folder)))
        if skipped:
            self.log.warning(
                "Not releasing feedback for %s: not submitted through the exchange (no "
                "submission_secret.txt), so there is no one to release it to.",
                ", ".join(sorted(skipped)))
            excluded = {s for s in (self.coursedir.student_id_exclude or "").split(",") if s}
            self.coursedir.student_id_exclude = ",".join(sorted(excluded | skipped))
        super().copy_files()
