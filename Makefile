# Two commands matter: `make demo` (the whole pipeline on this machine) and
# `make test` (the whole test suite, as CI runs it). Both bootstrap what they need
# on first use: a virtualenv in .venv with tox, and the Node packages of the local
# Kinesis emulator. Only Python 3.11+, Node.js and make are assumed.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.bootstrapped
NODE_STAMP := local_pipeline/node/node_modules/.installed
export JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION := 20

# `make test` runs every env of tox's env_list at the same time (`tox run-parallel
# --parallel all`; each env's output is printed when it ends). The list of suites
# lives in tox.ini only.

.PHONY: help bootstrap test synth demo lint fmt bench clean
help:
	@echo "make demo   - run the pipeline locally end to end and print a summary"
	@echo "make test   - run the full test suite (tox.ini's env_list, as CI does)"
	@echo "make synth  - synthesize the CDKTF stack into cdktf.out/"
	@echo "make bench  - run the benchmarks (figures for docs/BENCHMARKS.md)"
	@echo "make fmt    - format the code with ruff"

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11+ is required")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip uv tox tox-uv
	VIRTUAL_ENV=$(abspath $(VENV)) $(BIN)/uv pip install --quiet -e '.[dev]'
	@touch $@

$(NODE_STAMP): local_pipeline/node/package.json
	cd local_pipeline/node && npm install --no-audit --no-fund --loglevel=error
	@touch $@

bootstrap: $(STAMP) $(NODE_STAMP)

test: bootstrap
	$(BIN)/tox run-parallel --parallel all --parallel-no-spinner

synth: $(STAMP)
	$(BIN)/python main.py

demo: bootstrap
	$(BIN)/tap demo

bench: bootstrap
	$(BIN)/tap bench

lint: $(STAMP)
	$(BIN)/tox run -e lint

fmt: $(STAMP)
	$(BIN)/ruff format . && $(BIN)/ruff check --fix .

clean:
	rm -rf $(VENV) .tox cdktf.out local_pipeline/node/node_modules
