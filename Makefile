# Two commands on a fresh machine with Python 3.8-3.11 and make:
#   make demo   virtual environment + package with extras + the seed example
#   make test   the same set-up + the test suite (slow tests: make test-slow)
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test test-slow bench bench-torch long-run distributed clean

$(STAMP): setup.py
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[test,examples,onnx]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/python examples/ode_seed.py --plot ode_seed.png

test: $(STAMP)
	OMP_NUM_THREADS=2 $(BIN)/python -m pytest -q tests

test-slow: $(STAMP)
	OMP_NUM_THREADS=2 $(BIN)/python -m pytest -q -m slow --runslow tests

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache

bench: $(STAMP)
	$(BIN)/python benchmarks/run.py --threads 2

# PyTorch side by side: torch is installed into .venv for benchmarking only
bench-torch: $(STAMP)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check torch==2.13.0
	$(BIN)/python benchmarks/run.py --threads 2 --torch --repeat 3

# 10,000 steps of the Poisson workload; fails if resident memory grows after warm-up
long-run: $(STAMP)
	OMP_NUM_THREADS=2 $(BIN)/python benchmarks/run.py --long-run 10000

# two workers, a server and a scheduler on loopback, compared with one process
distributed: $(STAMP)
	$(BIN)/python examples/distributed/launch.py --check
