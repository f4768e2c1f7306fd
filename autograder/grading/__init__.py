"""Grade a whole class: parallel, sandboxed, crash-proof, over nbgrader's own pipeline.

`pipeline.grade` is the entry point (`memcourse grade`). Each submission is sanitized with
nbgrader's preprocessors, executed in a sandboxed kernel that survives crashes (`execute`), and
its check-based test cells are scored by running the checks outside the learner's kernel
(`program`, `verdicts`); one process then writes every score to the gradebook through nbgrader's
Autograde with a preprocessor that uses these prepared results (`preprocessors`).
"""
