# Two commands on a fresh machine: `make plan` and `make test`. Both create ./venv first,
# the same virtualenv that `pulumi up` uses (Pulumi.yaml: toolchain pip, virtualenv venv).
PYTHON ?= python3
VENV := venv
PY := $(VENV)/bin/python
STACK ?= big-chat

.PHONY: plan test lint install clean bench

$(VENV)/.installed: requirements.txt requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $@

install: $(VENV)/.installed

plan: $(VENV)/.installed
	$(PY) -m components.plan $(STACK)

lint: $(VENV)/.installed
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy
	$(VENV)/bin/actionlint

test: lint
	$(PY) -m pytest

bench: $(VENV)/.installed
	$(PY) bench/planner_error.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
