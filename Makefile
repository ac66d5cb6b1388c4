# The two commands a newcomer needs: `make demo` and `make test`. Both bootstrap .venv first.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: demo test lint bench clean venv

venv: $(STAMP)

$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "$(PYTHON) not found (Python 3.11 is required)"; exit 1; }
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

# SEED=n picks the simulated market (README, "make demo").
demo: $(STAMP)
	@DJANGO_DEBUG=true SEED="$(SEED)" $(PY) scripts/demo.py

test: $(STAMP)
	@$(PY) scripts/run_tests.py $(ARGS)

lint: $(STAMP)
	$(PY) -m ruff check .
	$(VENV)/bin/lint-imports --no-cache --no-logo

bench: $(STAMP)
	$(PY) bench/import_bench.py

clean:
	rm -rf $(VENV) var db.sqlite3 db.sqlite3-wal db.sqlite3-shm
