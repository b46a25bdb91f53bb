# Gatecord: `make run` and `make test` bootstrap .venv themselves.
PYTHON ?= python3.11
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
TEST_STAMP := $(VENV)/.installed-test

.PHONY: run test bench check migrate clean

$(PY):
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "make: $(PYTHON) not found; install Python 3.11 (or run make PYTHON=/path/to/python3.11)"; exit 2; }
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

$(STAMP): $(PY) pyproject.toml
	$(PY) -m pip install --quiet -e .
	@touch $@

$(TEST_STAMP): $(PY) pyproject.toml
	$(PY) -m pip install --quiet -e '.[test]'
	@touch $@ $(STAMP)

run: $(STAMP)
	$(VENV)/bin/gatecord migrate
	$(VENV)/bin/gatecord run

test: $(TEST_STAMP)
	$(PY) -m pytest -q -p no:cacheprovider

bench: $(TEST_STAMP)
	@for b in bench/*.py; do echo "== $$b"; $(PY) $$b || exit $$?; done

check: $(STAMP)
	$(VENV)/bin/gatecord check

migrate: $(STAMP)
	$(VENV)/bin/gatecord migrate

clean:
	rm -rf $(VENV) *.egg-info
