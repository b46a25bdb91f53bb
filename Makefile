# Gatecord: `make run` and `make test` bootstrap .venv themselves.
# The venv's Python must load SQLite extensions (sqlite-vec, the knowledge base's search): pyenv's builds
# cannot (no --enable-loadable-sqlite-extensions), Debian's python3.11 can, so it is preferred when present.
LOADS_EXTENSIONS := import sqlite3; sqlite3.Connection.enable_load_extension
PYTHON ?= $(or $(shell for p in /usr/bin/python3.11 python3.11; do \
  $$p -c '$(LOADS_EXTENSIONS)' >/dev/null 2>&1 && { echo $$p; break; }; done),python3.11)
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
TEST_STAMP := $(VENV)/.installed-test

# A .venv made earlier by a Python that cannot load SQLite extensions (say pyenv's, before sqlite-vec came)
# is made again with $(PYTHON), at once, so that no step is left to guess.
ifneq ($(wildcard $(PY)),)
ifneq ($(shell $(PY) -c '$(LOADS_EXTENSIONS)' >/dev/null 2>&1 || { $(PYTHON) -c '$(LOADS_EXTENSIONS)' >/dev/null 2>&1 && echo stale; }),)
$(info make: .venv's Python cannot load SQLite extensions (sqlite-vec: the knowledge base's search); making .venv again with $(PYTHON))
$(shell rm -rf $(VENV))
endif
endif

.PHONY: run test bench check migrate clean browser postgres lock

$(PY):
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "make: $(PYTHON) not found; install Python 3.11 (or run make PYTHON=/path/to/python3.11)"; exit 2; }
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

# Dependencies come from the hash-checked locks (`make lock` refreshes them), then Gatecord itself.
$(STAMP): $(PY) pyproject.toml requirements.lock
	$(PY) -m pip install --quiet --require-hashes -r requirements.lock
	$(PY) -m pip install --quiet --no-deps -e .
	@touch $@

$(TEST_STAMP): $(PY) pyproject.toml requirements-test.lock
	$(PY) -m pip install --quiet --require-hashes -r requirements-test.lock
	$(PY) -m pip install --quiet --no-deps -e .
	@touch $@ $(STAMP)

# With a Discord token (config.toml or GATECORD_DISCORD__TOKEN): the bot, which migrates its database
# as it starts. Without one: the local sandbox (the same settings loading decides, inside gatecord).
run: $(STAMP)
	$(VENV)/bin/gatecord run --sandbox-if-no-token

# The browser tests drive Debian's Chromium (never a downloaded browser); installed here when missing.
CHROMIUM := /usr/bin/chromium
browser:
	@if [ ! -x $(CHROMIUM) ]; then \
	  if command -v apt-get >/dev/null 2>&1; then \
	    SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	    echo "make: installing Debian's chromium for the browser tests"; \
	    $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium >/dev/null; \
	  else \
	    echo "make: $(CHROMIUM) is missing and apt-get is not available: install Chromium, or the browser tests fail"; \
	  fi; \
	fi

# The PostgreSQL tests start their own throwaway server (tests/pg_server.py) from Debian's postgresql
# package (never a container or a download); installed here when missing, with pgvector (the knowledge
# base's search; tests/install_pgvector.sh: Debian's package, or built from Debian's source package).
POSTGRES_BINS := /usr/lib/postgresql/*/bin/postgres
postgres:
	@if ! ls $(POSTGRES_BINS) >/dev/null 2>&1 && [ ! -x "$$(pg_config --bindir 2>/dev/null)/postgres" ]; then \
	  if command -v apt-get >/dev/null 2>&1; then \
	    SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	    echo "make: installing Debian's postgresql for the PostgreSQL tests"; \
	    $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq postgresql >/dev/null; \
	  else \
	    echo "make: no $(POSTGRES_BINS) and apt-get is not available: install PostgreSQL 15, or the PostgreSQL tests fail"; \
	  fi; \
	fi
	@if command -v apt-get >/dev/null 2>&1; then sh tests/install_pgvector.sh; \
	elif ! ls /usr/share/postgresql/*/extension/vector.control >/dev/null 2>&1; then \
	  echo "make: pgvector is missing and apt-get is not available: install pgvector, or its tests fail"; \
	fi

# Lint, type check, then the tests (import contract included); the scopes are in pyproject.toml.
# Two test workers (pytest-xdist): each has its own PostgreSQL server and temporary folders.
# The tests include a short schemathesis pass against the web server (tests/test_relay_schemathesis.py:
# requests generated from /openapi.json, 0 server errors allowed).
test: $(TEST_STAMP) browser postgres
	$(VENV)/bin/ruff check
	$(VENV)/bin/mypy
	$(PY) -m pytest -q -p no:cacheprovider -n 2

bench: $(TEST_STAMP) postgres
	@for b in $$(ls bench/*.py | grep -v "/_"); do echo "== $$b"; $(PY) $$b || exit $$?; done

check: $(STAMP)
	$(VENV)/bin/gatecord check

migrate: $(STAMP)
	$(VENV)/bin/gatecord migrate

clean:
	rm -rf $(VENV) *.egg-info

# Re-resolve the locks from pyproject.toml (the newest releases its ranges allow), with hashes.
# pip-tools runs from its own venv; commit the two .lock files it writes.
PIP_COMPILE := $(VENV)/tools/bin/pip-compile
LOCK_FLAGS  := --quiet --strip-extras --generate-hashes --allow-unsafe --no-emit-index-url --no-emit-find-links --upgrade
lock:
	@[ -x $(PIP_COMPILE) ] || { $(PYTHON) -m venv $(VENV)/tools && $(VENV)/tools/bin/pip install --quiet "pip-tools>=7.7,<8"; }
	CUSTOM_COMPILE_COMMAND="make lock" $(PIP_COMPILE) $(LOCK_FLAGS) -o requirements.lock pyproject.toml
	CUSTOM_COMPILE_COMMAND="make lock" $(PIP_COMPILE) $(LOCK_FLAGS) --extra test -o requirements-test.lock pyproject.toml
