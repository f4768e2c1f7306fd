"""Grade a whole class: parallel, sandboxed, crash-proof, over nbgrader's own pipeline.

`pipeline.grade` is the entry point (`memcourse grade`). Submissions are found (`inputs`), read
as Jupyter reads them (`intake`) and matched to the release (`reconcile`); each candidate
notebook is prepared by a worker process (`worker`: nbgrader's sanitizing chain, a sandboxed
kernel that survives crashes in `execute`, the graded program in `rerun_answers`, the checks
outside the learner's kernel); the one gradebook writer (`gradebook`) then scores it with
nbgrader's autograde, using the prepared results (`preprocessors.UsePreparedRun`), and `report`
writes grades.csv, results.json, report.md and feedback/. What crosses a process boundary is
typed in `handoffs`; the settings and nbgrader's configuration for grading are in `settings`.
"""
