# memcourse: the two commands are `make lab` and `make test`; each sets up everything it needs.
# Every target is a thin layer over the `memcourse` command or pytest.

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-pyproject
PYTEST_ARGS ?=

.PHONY: help lab test test-fast notebooks data clean lint venv grade system-packages hub-proxy

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | expand -t 18

venv:  ## create .venv, or reuse it if pyproject.toml has not changed since it was installed
	@scripts/ensure-venv "$(PYTHON)" "$(VENV)"

lab: venv  ## start JupyterLab on the course (writes the default dataset first if missing)
	$(PY) -m memcourse_apps lab

test: venv system-packages hub-proxy  ## run the whole test suite (slow tests included)
	$(PY) -m memcourse_apps data --size tiny
	$(PY) -m pytest $(PYTEST_ARGS)

system-packages:  ## install bubblewrap and chromium when missing (root on Debian), else say so
	@scripts/ensure-system-packages

hub-proxy: venv  ## install JupyterHub's proxy (configurable-http-proxy, npm) into .venv/hub-proxy/
	@scripts/ensure-hub-proxy "$(VENV)"

test-fast: venv  ## the inner loop: every test not marked slow
	$(PY) -m pytest -m "not slow" $(PYTEST_ARGS)

notebooks: venv  ## clean solutions/ and regenerate notebooks/ from it with nbgrader
	$(PY) -m memcourse_apps notebooks

data: venv  ## write the default (small) dataset into data/small/
	$(PY) -m memcourse_apps data

grade: venv  ## grade a class: make grade SUBMISSIONS=path OUT=dir [COURSE=dir] [JOBS=n] [ASSIGNMENT=name] [SCHEDULER=tcp://host:8786]
	@test -n "$(SUBMISSIONS)" -a -n "$(OUT)" || { echo "usage: make grade SUBMISSIONS=path OUT=dir"; exit 2; }
	$(PY) -m memcourse_apps grade "$(SUBMISSIONS)" --out "$(OUT)" $(if $(COURSE),--course "$(COURSE)") $(if $(JOBS),--jobs $(JOBS)) $(if $(ASSIGNMENT),--assignment $(ASSIGNMENT)) $(if $(SCHEDULER),--scheduler $(SCHEDULER))

.PHONY: bench
bench: venv  ## measure what each technique costs (20–25 min on 2 cores): bench/results.md, README table
	$(PY) -m memcourse_apps bench

lint: venv  ## ruff over the Python packages and tests
	$(PY) -m ruff check memcourse autograder memcourse_apps tests

clean:  ## remove generated data, grading output and caches (keeps .venv)
	rm -rf grading data/*/ .pytest_cache
	find . -name __pycache__ -type d -prune -not -path './.venv/*' -exec rm -rf {} +
	find solutions notebooks -name scratch -type d -prune -exec rm -rf {} +
