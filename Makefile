# Two commands do all the set-up on a fresh machine:
#   make demo   - create .venv, install liverec, run the offline demo (train, evaluate, compress, serve)
#   make test   - create .venv, install liverec with test extras, run the default test suite
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# torch is pinned here (not in the library): this version's CPU build is what the set-up
# path installs; bring your own CUDA build by installing torch first.
TORCH  ?= torch==2.13.0

.PHONY: demo test test-all test-realdata lint bench-beauty clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q $(TORCH)
	$(BIN)/pip install -q -e '.[all,dev]'
	touch $@

demo: $(VENV)/.installed
	$(BIN)/liverec demo $(DEMO_ARGS)

test: $(VENV)/.installed
	$(BIN)/python -m pytest $(PYTEST_ARGS)

test-realdata: $(VENV)/.installed
	LIVEREC_DATA=$${LIVEREC_DATA:-../shared/data} $(BIN)/python -m pytest -m realdata $(PYTEST_ARGS)

test-all: $(VENV)/.installed
	LIVEREC_DATA=$${LIVEREC_DATA:-../shared/data} $(BIN)/python -m pytest -m "" $(PYTEST_ARGS)

lint: $(VENV)/.installed
	$(BIN)/ruff check src tests benchmarks

bench-beauty: $(VENV)/.installed
	LIVEREC_DATA=$${LIVEREC_DATA:-../shared/data} $(BIN)/python benchmarks/quality.py configs/beauty/sasrec.json --out runs/beauty

clean:
	rm -rf $(VENV) runs .pytest_cache
