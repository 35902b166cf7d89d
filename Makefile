# make up   — create .venv from uv.lock and start everything on a local Ray (UI + API on :8000)
# make test — create .venv from uv.lock and run the whole test suite
SHELL := /bin/bash
PYTHON ?= python3
UV := $(shell command -v uv 2>/dev/null)
ifeq ($(UV),)
UV := .bootstrap/bin/uv
endif
PYTEST_ARGS ?=

.PHONY: up test venv lint bench clean

# bytecode compiled at install: first imports (pandas via pyarrow, ray) are much faster
venv: $(UV)
	$(UV) sync --frozen --compile-bytecode --python $(PYTHON)

# uv is pip-installed into a bootstrap venv when the machine has none
.bootstrap/bin/uv:
	$(PYTHON) -m venv .bootstrap
	.bootstrap/bin/pip install --quiet uv

up: venv
	.venv/bin/tg up

test: venv
	.venv/bin/pytest $(PYTEST_ARGS)

lint: venv
	.venv/bin/ruff check .
	.venv/bin/ruff format --check .
	.venv/bin/mypy

bench: venv
	.venv/bin/python bench/broker_bench.py

clean:
	rm -rf .venv .bootstrap .pytest_cache
