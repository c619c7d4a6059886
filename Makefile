# Every target creates or reuses the virtual environment .venv first.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
export PATH := $(CURDIR)/$(BIN):$(PATH)

.PHONY: venv demo test test-fast bench lab clean

venv: $(STAMP)

$(STAMP): requirements.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.txt
	$(BIN)/python -m pip install --quiet --no-deps -e .
	touch $(STAMP)

demo: venv  ## FedAvg vs oracle vs local on rotated digits; writes runs/demo/
	$(BIN)/cflkit demo --out runs/demo

test: venv  ## the whole test suite (what CI runs)
	$(BIN)/python -m pytest -q

test-fast: venv  ## skip notebook runs and known-answer training tests
	$(BIN)/python -m pytest -q -m "not slow and not notebook"

bench: venv  ## seconds per FedAvg round: cflkit vs per-client loops
	$(BIN)/python bench/round_time.py --clients 10 50 200

lab: venv  ## open the teaching notebooks in JupyterLab
	$(BIN)/jupyter lab notebooks/

clean:
	rm -rf runs/ .pytest_cache/
