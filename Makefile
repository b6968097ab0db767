# Two commands on a fresh machine: `make plan` and `make test`. Both create ./venv first,
# the same virtualenv that `pulumi up` uses (Pulumi.yaml: toolchain pip, virtualenv venv).
PYTHON ?= python3
VENV := venv
PY := $(VENV)/bin/python
STACK ?= big-chat

.PHONY: plan test lint install clean bench verify schema

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
	$(PY) bench/plan_speed.py
	$(PY) bench/llamacpp_memory.py --quick

# After `pulumi up`: does the deployment answer as planned? (make verify STACK=big-chat WAIT=1)
verify: $(VENV)/.installed
	$(PY) -m components.verify $(STACK) $(if $(WAIT),--wait)

# The stack files' JSON schema for editors, from the settings models (tests/test_schema.py checks it).
schema: $(VENV)/.installed
	$(PY) -m components.settings.schema > stack.schema.json

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
