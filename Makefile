# Lockgate: `make run` starts it on embedded defaults, `make test` sets up and runs the tests.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.DEFAULT_GOAL := help
.PHONY: help setup system-deps run test test-unit test-integration lint format protos protos-check bench clean

help: ## list the targets
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-18s %s\n", $$1, $$2}'

system-deps: ## install the OS packages the tests need (idempotent; apt on Debian)
	@scripts/system-deps.sh

$(STAMP): pyproject.toml data_plane/protocols/postgres/_fastpath.c \
		data_plane/protocols/postgres/_rows.c lockgate/_auditwire.c \
		data_plane/audit/_spoolio.c data_plane/_busypoll.c lockgate/_buf.h
	@scripts/build-deps.sh
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

setup: $(STAMP) ## create the virtual environment and install Lockgate with its dev tools

run: setup ## start a control plane and one node on embedded defaults (Ctrl-C stops both)
	$(VENV)/bin/lockgate up

test: system-deps setup protos-check ## set up what the tests need and run them all
	$(PY) -m pytest -q -p no:cacheprovider tests

test-unit: setup ## the socket-free tests only
	$(PY) -m pytest -q tests/unit

test-integration: system-deps setup ## real servers and clients through a real node
	$(PY) -m pytest -q tests/integration

lint: setup ## ruff and mypy
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy lockgate control_plane data_plane

format: setup ## apply ruff's formatting and fixes
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

protos: setup ## regenerate the gRPC modules from protos/
	$(PY) scripts/gen_protos.py

protos-check: setup ## fail when the committed generated modules are stale
	$(PY) scripts/gen_protos.py --check

bench: system-deps setup ## run the benchmarks and write docs/benchmarks.md
	$(PY) -m bench

clean: ## remove the virtual environment and local state
	rm -rf $(VENV) .lockgate .pytest_cache .mypy_cache .ruff_cache build
	rm -f data_plane/protocols/postgres/_fastpath.*.so \
		data_plane/protocols/postgres/_rows.*.so lockgate/_auditwire.*.so \
		data_plane/audit/_spoolio.*.so data_plane/_busypoll.*.so
