# The README's two commands: `make demo` (a sandbox deployment end to end) and `make test`.
# Both create .venv and install the project into it when needed.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint typecheck bench clean engine lock

# Every install is pinned by constraints.txt, so CI, `make` and `pulumi install` (requirements.txt)
# get the same versions. Since pip 26 forwards the build backend's warnings, every editable install
# prints setuptools' notice that it is one ("Editable installation."), which says nothing to act
# on: it is silenced, and any other warning still shows.
$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	PYTHONWARNINGS="ignore:Editable installation" $(BIN)/pip install --quiet -c constraints.txt -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	RFS_DEPLOY_BACKEND=sim $(BIN)/rfs-deploy simulate

test: $(STAMP)
	$(BIN)/ruff check rfs_deploy tests benchmarks __main__.py
	$(BIN)/mypy
	$(BIN)/pytest -q -n auto --maxprocesses=4 --dist loadfile --durations=30

lint: $(STAMP)
	$(BIN)/ruff check rfs_deploy tests benchmarks __main__.py
	$(BIN)/ruff format --check rfs_deploy tests benchmarks __main__.py

typecheck: $(STAMP)
	$(BIN)/mypy

# The real Pulumi engine for tests/engine: the CLI built from its Go modules into bin/ (skipped
# when built), and moto's server extra (the tests run moto as a server for the engine's processes).
engine: $(STAMP)
	$(BIN)/pip install --quiet -c constraints.txt 'moto[server]'
	bash tools/build-engine.sh

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_program.py

# Refresh constraints.txt: resolve the newest versions pyproject.toml allows (test extras and moto's
# server extra included) in a scratch virtualenv, and pin exactly what was installed. Commit the result.
LOCK_VENV := build/lock-venv
lock:
	rm -rf $(LOCK_VENV)
	$(PYTHON) -m venv $(LOCK_VENV)
	$(LOCK_VENV)/bin/pip install --quiet --upgrade pip
	$(LOCK_VENV)/bin/pip install --quiet -e '.[test]' 'moto[server]'
	{ sed -n '/^#/p;/^#/!q' constraints.txt; \
	  $(LOCK_VENV)/bin/pip freeze --exclude-editable --exclude rfs-deploy; } > constraints.txt.new
	mv constraints.txt.new constraints.txt
	rm -rf $(LOCK_VENV)
	@echo "lock: constraints.txt refreshed; review with git diff constraints.txt"

clean:
	rm -rf $(VENV) out .pytest_cache .mypy_cache .ruff_cache
