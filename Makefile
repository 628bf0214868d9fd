# Every target does its own set-up: a fresh clone needs only `make demo` or `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# statekeep[web]'s browser tests drive Debian's chromium (tests/web/conftest.py):
# playwright never downloads a browser of its own.
export PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD := 1

.PHONY: demo test bench docs lint format clean postgres chromium

# The install builds statekeep, whose hook (hatch_build.py) runs `npm ci` for the
# Datastar browser client when package-lock.json is newer than node_modules.
$(STAMP): pyproject.toml package.json package-lock.json hatch_build.py
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

# `make demo ARGS=--serve`: the demo, then its dashboard until Ctrl-C
demo: $(STAMP)
	$(BIN)/statekeep demo $(ARGS)

# The figures in docs/ drawn from real runs (docs/benchmarks.md: `make bench`).
docs: $(STAMP)
	$(BIN)/python docs/_timelines.py docs/flow.md

# The local PostgreSQL server the tests and benchmarks use, started if it is
# down (a server elsewhere: set STATEKEEP_TEST_POSTGRES_URL and this does nothing).
postgres:
	@if [ -z "$$STATEKEEP_TEST_POSTGRES_URL" ] && command -v pg_ctlcluster >/dev/null \
		&& ! pg_isready -q -h 127.0.0.1 -p 5432; then \
		echo "starting PostgreSQL"; \
		pg_ctlcluster --skip-systemctl-redirect $$(ls /etc/postgresql) main start || true; \
		for i in $$(seq 30); do pg_isready -q -h 127.0.0.1 -p 5432 && break; sleep 1; done; \
	fi

# Debian's chromium for the web benchmark's browser part, installed if missing
# where we may (root with apt-get; the test set-up does the same in
# tests/web/conftest.py). Elsewhere: STATEKEEP_CHROMIUM=/path/to/chromium.
chromium:
	@if [ -z "$$STATEKEEP_CHROMIUM" ] && [ ! -x /usr/bin/chromium ] && ! command -v chromium >/dev/null \
		&& [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "installing Debian's chromium"; \
		DEBIAN_FRONTEND=noninteractive apt-get install -y chromium >/dev/null \
			|| { apt-get update >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y chromium >/dev/null; } \
			|| echo "chromium could not be installed: the browser part of make bench is n/a"; \
	fi

test: $(STAMP) postgres
	$(BIN)/python -m pytest

bench: $(STAMP) postgres chromium
	$(BIN)/python -m benchmarks

# .ci/run runs `make lint` and then `make test`: CI lints exactly as this does.
lint: $(STAMP)
	$(BIN)/ruff format --check src tests benchmarks docs examples hatch_build.py
	$(BIN)/ruff check src tests benchmarks docs examples hatch_build.py
	$(BIN)/mypy src
	$(BIN)/mypy tests
	$(BIN)/mypy benchmarks docs/_timelines.py hatch_build.py examples/shared_todo/app.py

format: $(STAMP)
	$(BIN)/ruff format src tests benchmarks docs examples hatch_build.py
	$(BIN)/ruff check --fix src tests benchmarks docs examples hatch_build.py

clean:
	rm -rf $(VENV) build dist .pytest_cache .mypy_cache .ruff_cache node_modules
	rm -f src/statekeep/web/static/datastar.js src/statekeep/web/static/datastar.LICENSE.txt
	rmdir src/statekeep/web/static 2>/dev/null || true
