# The README's two commands: `make demo` (a sandbox deployment end to end) and `make test`.
# Both create .venv and install the project into it when needed.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint typecheck bench clean engine

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

# The real Pulumi engine for tests/engine: the CLI built from its Go modules into bin/ (skipped
# when built), and moto's server extra (the tests run moto as a server for the engine's processes).
engine: $(STAMP)
	$(BIN)/pip install --quiet "moto[server]==$$($(BIN)/python -c 'import moto; print(moto.__version__)')"
	bash tools/build-engine.sh

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_program.py

clean:
	rm -rf $(VENV) out .pytest_cache .mypy_cache .ruff_cache
