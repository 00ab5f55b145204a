# The README's two commands: `make demo` (a sandbox deployment end to end) and `make test`.
# Both create .venv and install the project into it when needed.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint typecheck bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	RFS_DEPLOY_BACKEND=sim $(BIN)/rfs-deploy simulate

test: $(STAMP)
	$(BIN)/ruff check rfs_deploy tests benchmarks __main__.py
	$(BIN)/mypy
	$(BIN)/pytest -q

lint: $(STAMP)
	$(BIN)/ruff check rfs_deploy tests benchmarks __main__.py
	$(BIN)/ruff format --check rfs_deploy tests benchmarks __main__.py

typecheck: $(STAMP)
	$(BIN)/mypy

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_program.py

clean:
	rm -rf $(VENV) out .pytest_cache .mypy_cache .ruff_cache
