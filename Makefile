# Every target creates or reuses the virtual environment .venv first.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
FLOWER := $(VENV)/.installed-flower
export PATH := $(CURDIR)/$(BIN):$(PATH)

# The article: `make paper` (laptop scale), `make paper EXPERIMENT=experiments/paper-full.yaml`.
EXPERIMENT ?= experiments/paper.yaml
WORKERS    ?= 2
TEX_PACKAGES := latexmk texlive-latex-recommended texlive-fonts-recommended texlive-publishers

.PHONY: venv venv-flower demo lint test test-fast bench bench-flower flower-demo lab clean figures paper all

venv: $(STAMP)

# The optional Flower extra (flwr + Ray): the tests need it, the teaching install does not.
venv-flower: $(FLOWER)

$(FLOWER): $(STAMP) requirements-flower.txt
	$(BIN)/python -m pip install --quiet -r requirements-flower.txt
	touch $(FLOWER)

$(STAMP): requirements.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.txt
	$(BIN)/python -m pip install --quiet --no-deps -e .
	touch $(STAMP)

demo: venv  ## FedAvg vs oracle vs local on rotated digits; writes runs/demo/
	$(BIN)/cflkit demo --out runs/demo

lint: venv  ## ruff (pyflakes, pycodestyle, import order; settings in pyproject.toml)
	$(BIN)/ruff check cflkit tests bench

test: venv-flower lint  ## lint, then the whole test suite (what CI runs), with the Flower extra installed
	$(BIN)/python -m pytest -q

test-fast: venv-flower  ## skip notebook runs and known-answer training tests
	$(BIN)/python -m pytest -q -m "not slow and not notebook"

bench: venv  ## seconds per FedAvg round: cflkit vs per-client loops
	$(BIN)/python bench/round_time.py --clients 10 50 200

bench-flower: venv-flower  ## seconds per round: cflkit in-process vs Flower's simulation engine
	$(BIN)/python bench/flower_round_time.py --clients 50 200 --rounds 3

flower-demo: venv-flower  ## a real localhost Flower federation of the four heart-disease hospitals
	$(BIN)/cflkit flower demo

figures: venv  ## run what is not done yet of $(EXPERIMENT) (papermill), then paper/figures, tables, macros.tex
	$(BIN)/cflkit batch $(EXPERIMENT) --workers $(WORKERS)

paper: figures  ## the figures, then paper/main.pdf with latexmk (needs TeX Live)
	@command -v latexmk >/dev/null 2>&1 || { \
	  echo "make paper: the figures and tables are in paper/, but latexmk is not installed, so no PDF."; \
	  echo "Install LaTeX, then run make paper again (Debian/Ubuntu):"; \
	  echo "  sudo apt-get install $(TEX_PACKAGES)"; exit 1; } >&2
	cd paper && latexmk -pdf -silent -interaction=nonstopmode -halt-on-error -outdir=build main.tex
	cp -p paper/build/main.pdf paper/main.pdf
	@echo "wrote paper/main.pdf"

all: paper  ## the whole chain: experiment runs -> figures and tables -> paper/main.pdf

lab: venv  ## open the teaching notebooks in JupyterLab
	$(BIN)/jupyter lab notebooks/

clean:
	rm -rf runs/ .pytest_cache/ paper/build/ paper/figures/ paper/tables/ paper/macros.tex paper/main.pdf \
	  paper/.aggregate-stamp
