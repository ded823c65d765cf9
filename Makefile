# prmforge: `make demo` runs the main job on built-in data; `make test` passes the tests.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install system-deps demo test test-fast lint bench clean

install: system-deps $(STAMP)

# Debian packages for the sandbox and compilers (bubblewrap, seccomp, system python3, gcc); idempotent.
system-deps:
	bash scripts/install-system-deps.sh

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

demo: install
	$(VENV)/bin/prmforge build configs/quickstart.yaml --output out/quickstart

# Every test, slow end-to-end ones included (that is what CI runs).
test: install
	$(VENV)/bin/pytest -q -n 2

# Everything but the tests marked slow.
test-fast: install
	$(VENV)/bin/pytest -q -n 2 -m "not slow"

lint: install
	$(VENV)/bin/ruff check prmforge tests bench
	$(VENV)/bin/ruff format --check prmforge tests bench
	$(VENV)/bin/mypy

bench: install
	$(PY) bench/bench_spine.py
	$(PY) bench/bench_scale.py
	$(PY) bench/bench_simulated.py
	$(PY) bench/bench_sandbox.py
	$(PY) bench/bench_verifiers.py
	$(PY) bench/bench_code.py
	$(PY) bench/bench_code_build.py
	$(PY) bench/bench_engine.py
	$(PY) bench/bench_search.py
	$(PY) bench/bench_recipe.py
	$(PY) bench/bench_runners.py
	$(PY) bench/bench_train.py

clean:
	rm -rf out .bench .pytest_cache .mypy_cache .ruff_cache
