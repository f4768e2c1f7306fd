"""The checking engine: run a learner's code in a limited child process and judge it from outside.

Exercises declare their checks as data (`spec.Check`); `runner.run_checks` ships the learner's
objects (`ship`) to a fresh Python process (`child`, forked warm by `zygote`), watches that
process (memory, open files, file opens, time, exit status), collects what the learner's code
returned as plain data, and judges it in the parent into `spec.Verdict`s. `check_report` turns
the verdicts into what a learner sees in the notebook, in the look `richtext` gives all of it.
"""
