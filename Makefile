# make up   — create .venv from uv.lock and start everything on a local Ray (UI + API on :8000)
# make test — create .venv from uv.lock and run the whole test suite (two pytest sessions)
# make lint — ruff, mypy, and the import contracts of pyproject.toml (lint-imports)
# make bench — every benchmark in its short mode, each printing its table
SHELL := /bin/bash
PYTHON ?= python3
UV := $(shell command -v uv 2>/dev/null)
ifeq ($(UV),)
UV := .bootstrap/bin/uv
endif
PYTEST_ARGS ?=

.PHONY: up test venv lint bench clean browser soak

# bytecode compiled at install: first imports (pandas via pyarrow, ray) are much faster
venv: $(UV)
	$(UV) sync --frozen --compile-bytecode --python $(PYTHON)

# uv is pip-installed into a bootstrap venv when the machine has none
.bootstrap/bin/uv:
	$(PYTHON) -m venv .bootstrap
	.bootstrap/bin/pip install --quiet uv

up: venv
	.venv/bin/tg up

# two sessions: the multi-node tests (tests/cluster) need a Ray cluster of their own
test: venv browser
	.venv/bin/pytest $(PYTEST_ARGS)
	.venv/bin/pytest --cluster tests/cluster

# the UI's browser test drives Debian's chromium (Playwright's own download is not used);
# installed here when missing and we may (root + apt-get), else the test skips and says why
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing Debian chromium for the browser test"; \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null \
	    || { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null; } \
	    || echo "chromium could not be installed: the browser test will be skipped"; \
	  else echo "no chromium and no way to install it here: the browser test will be skipped"; fi; }

# the run-lifecycle simulation over many more seeds than make test runs (SEEDS=N, STEPS=M)
SEEDS ?= 2000
STEPS ?= 300
JOBS ?= $(shell nproc)
soak: venv
	.venv/bin/python -m tests.sim --seeds $(SEEDS) --steps $(STEPS) --jobs $(JOBS)

lint: venv
	.venv/bin/ruff check .
	.venv/bin/ruff format --check .
	.venv/bin/mypy
	.venv/bin/lint-imports

# every benchmark in its short mode (--quick: small sizes, each well under a minute of work
# plus Ray's start-up), one after another, each printing its table; by hand: drop --quick
BENCHES := broker_bench convert_bench sync_bench sched_bench store_bench staging_bench api_bench scale_bench sql_bench fanout_bench formats_bench startup_bench
bench: venv
	@set -e; for b in $(BENCHES); do \
	  echo "== bench/$$b.py --quick"; start=$$(date +%s); \
	  .venv/bin/python bench/$$b.py --quick; \
	  echo "== bench/$$b.py: $$(( $$(date +%s) - start ))s"; echo; \
	done

clean:
	rm -rf .venv .bootstrap .pytest_cache
