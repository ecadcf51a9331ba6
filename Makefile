# EMS — developer entry points. `make` alone lists the targets.
# Everything Python runs from the project virtualenv, never an activated shell.

SHELL := /bin/bash

VENV        ?= .venv
PYTHON      := $(VENV)/bin/python
DATA_DIR    ?= var
PYTEST_ARGS ?=
BENCH_ARGS  ?=
# If set, `make test` writes pytest's exit code to this file (.ci/run uses it
# to tell "no tests ran" (5) from other failures, which make folds into 2).
PYTEST_RC_FILE ?=

INSTALL := installer/install.sh --venv $(VENV)

.DEFAULT_GOAL := help
.PHONY: help install dev up test bench chaos screenshots clean clean-data

help: ## list the targets
	@echo "EMS make targets:"
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  %-11s %s\n", $$1, $$2}' $(MAKEFILE_LIST)
	@echo
	@echo "Variables: VENV=$(VENV) DATA_DIR=$(DATA_DIR) PYTEST_ARGS='$(PYTEST_ARGS)' BENCH_ARGS='$(BENCH_ARGS)'"
	@echo "Example:   make test PYTEST_ARGS='-x -k broker'"

install: ## system packages + .venv with EMS (runtime deps only)
	$(INSTALL)

dev: ## like install, plus test/dev tools (Xvfb, MariaDB, Chromium, pytest...)
	$(INSTALL) --dev

up: install ## start EMS: .venv/bin/ems up --data-dir var
	$(VENV)/bin/ems up --data-dir $(DATA_DIR)

test: dev ## run the tests: .venv/bin/python -m pytest (+ PYTEST_ARGS)
	@rc=0; $(PYTHON) -m pytest $(PYTEST_ARGS) || rc=$$?; \
	if [ -n "$(PYTEST_RC_FILE)" ]; then echo $$rc > "$(PYTEST_RC_FILE)"; fi; \
	exit $$rc

bench: dev ## run every benchmark beside its peers and write docs/benchmarks.md (~25 min, 12 of them the 1k-10k agent fleet, 5 the web UI at 10k clients / 1M log rows)
	$(PYTHON) -m bench.report $(BENCH_ARGS)

chaos: dev ## faults -> docs/reliability.md: kill -9 loop (100,000 events, 20+20 kills), stopped consumer, idle connections + flood, 10 min fuzz (header, dispatch, persister ingest + queries), 60 s network cut (root)
	$(PYTHON) -m bench.reliability

screenshots: dev ## PNGs of the operator console (demo stack, offscreen), the employee's indicator and consent prompt (Xvfb) and the web UI (headless Chromium) in docs/screenshots/
	$(PYTHON) -m bench.harness.screenshots docs/screenshots
	EMS_SCREENSHOT_DIR=docs/screenshots $(PYTHON) -m pytest -q tests/test_indicator.py tests/test_access_log_window.py tests/test_gui_operations.py tests/test_web_ui.py tests/test_web_servers.py tests/test_web_history.py tests/test_web_tour.py tests/test_web_frames.py tests/test_web_fleet.py tests/test_web_history_gate.py

clean: ## remove .venv, build artefacts and caches (keeps var/)
	rm -rf $(VENV) build dist .eggs .pytest_cache .hypothesis .mypy_cache .ruff_cache
	find . \( -path ./.git -o -path ./$(DATA_DIR) \) -prune -o \
	    \( -name __pycache__ -o -name '*.egg-info' \) -type d -prune -exec rm -rf {} +
	find . \( -path ./.git -o -path ./$(DATA_DIR) \) -prune -o -name '*.py[co]' -type f -exec rm -f {} +

clean-data: ## remove var/ (user data: runtime state, databases, logs)
	rm -rf $(DATA_DIR)
