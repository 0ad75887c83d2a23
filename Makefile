# Everyday commands. `make test` is scripts/test.sh, the one test command of README.md and CI;
# the other targets are quicker slices of it for a developer loop. See docs/development.md.

VENV ?= .venv
PY := $(VENV)/bin/python
LINT_PATHS := app tests alembic/env.py scripts bench
COV := --cov=app --cov-report=term

.PHONY: lint test-fast test test-mysql bench

lint:  ## ruff, ruff format, mypy (strict on app/, not strict on tests/), typos
	$(VENV)/bin/ruff check $(LINT_PATHS)
	$(VENV)/bin/ruff format --check $(LINT_PATHS)
	$(VENV)/bin/mypy
	$(VENV)/bin/mypy tests
	$(VENV)/bin/typos

# test-fast: on every core (pytest-xdist; each worker has its own SQLite file and redis-server), and
# without coverage, which doubles its CPU time: <= 60 s on 2 cores. `make test` reports coverage.
test-fast:  ## the SQLite leg without the slow tests (processes, servers, builds, fuzzing, soaks)
	$(PY) -m pytest -q -m "not slow" --db sqlite -n auto

test:  ## everything CI runs: installs, lint, both database legs, with coverage
	bash scripts/test.sh

test-mysql:  ## the MariaDB leg alone
	$(PY) -m pytest -q --db mysql $(COV)

bench:  ## the pixel benchmark (needs MariaDB, Redis and wrk); results in bench/results/
	$(PY) -m bench.pixel_bench
